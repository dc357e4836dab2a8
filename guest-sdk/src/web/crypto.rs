//! The native half of `crypto`: bytes from host entropy, and digests from
//! the RustCrypto `sha1` and `sha2` crates.

use crate::host;
use javy_plugin_api::javy::quickjs::{ArrayBuffer, Ctx, Exception, Result, TypedArray};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// `len` bytes of entropy the host supplies at call time (the snapshot
/// never holds a generator for these).
pub fn random_bytes<'js>(ctx: Ctx<'js>, len: usize) -> Result<ArrayBuffer<'js>> {
    let mut bytes = vec![0u8; len];
    if !host::random_fill(&mut bytes) {
        return Err(Exception::throw_internal(
            &ctx,
            "the host supplied no entropy for crypto.getRandomValues",
        ));
    }
    ArrayBuffer::new(ctx, bytes)
}

/// The digest of `data` under `algorithm` (already normalized to one of
/// `SHA-1`, `SHA-256`, `SHA-384`, `SHA-512`).
pub fn digest<'js>(
    ctx: Ctx<'js>,
    algorithm: String,
    data: TypedArray<'js, u8>,
) -> Result<ArrayBuffer<'js>> {
    let Some(bytes) = data.as_bytes() else {
        return Err(Exception::throw_type(&ctx, "the data's buffer is detached"));
    };
    let hash = match algorithm.as_str() {
        "SHA-1" => Sha1::digest(bytes).to_vec(),
        "SHA-256" => Sha256::digest(bytes).to_vec(),
        "SHA-384" => Sha384::digest(bytes).to_vec(),
        "SHA-512" => Sha512::digest(bytes).to_vec(),
        other => {
            return Err(Exception::throw_type(
                &ctx,
                &format!("unsupported digest algorithm {other}"),
            ));
        }
    };
    ArrayBuffer::new(ctx, hash)
}
