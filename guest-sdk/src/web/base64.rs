//! `atob` and `btoa`: forgiving-base64 as the HTML standard defines it,
//! with the `base64` crate doing the decoding and encoding.

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Decodes with the padding already removed and stray bits ignored, as the
/// forgiving-base64 algorithm asks.
const FORGIVING: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// `atob`: the bytes `data` encodes, one character per byte, or `None` when
/// it is not valid forgiving-base64 (the caller throws
/// `InvalidCharacterError`).
pub fn decode(data: String) -> Option<String> {
    let mut text: Vec<u8> = data
        .bytes()
        .filter(|b| !matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' '))
        .collect();
    if text.len() % 4 == 0 {
        for _ in 0..2 {
            if text.last() == Some(&b'=') {
                text.pop();
            }
        }
    }
    if text.len() % 4 == 1 {
        return None;
    }
    let bytes = FORGIVING.decode(&text).ok()?;
    Some(bytes.into_iter().map(char::from).collect())
}

/// `btoa`: the base64 of `data`, whose characters the caller has checked
/// are all in U+0000..=U+00FF.
pub fn encode(data: String) -> Option<String> {
    let bytes = data
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}
