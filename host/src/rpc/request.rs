//! Parsing a JSON-RPC 2.0 body into calls, to the letter of the
//! specification. Params and ids stay raw JSON text: params go to the
//! guest untouched, and ids are echoed byte for byte.

use super::RpcError;
use super::codes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A parsed body: one entry or a batch.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A single request object (or a single invalid value).
    Single(Entry<'a>),
    /// A non-empty batch.
    Batch(Vec<Entry<'a>>),
}

/// One member of a body: a call to run, or why it is not one.
#[derive(Debug)]
pub enum Entry<'a> {
    /// A valid request or notification.
    Call(Call<'a>),
    /// Not a valid request; answered with this error and a null id, or
    /// with the id when the error concerns only the params.
    Invalid {
        /// The error to answer with.
        error: RpcError,
        /// The id to echo (null when it could not be determined).
        id: Option<&'a RawValue>,
    },
}

/// A valid request.
#[derive(Debug)]
pub struct Call<'a> {
    /// The id to echo, or `None` for a notification (no `id` member).
    pub id: Option<&'a RawValue>,
    /// The method name.
    pub method: Cow<'a, str>,
    /// The params as raw JSON (an array or an object), if present.
    pub params: Option<&'a RawValue>,
}

/// The members of a request object as they appear, before validation.
/// `Some` means present (even when `null`), `None` absent.
#[derive(Deserialize)]
struct Members<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses a body. Fails only when the body is not JSON at all (-32700);
/// every other problem becomes an [`Entry::Invalid`] answered in place.
pub fn parse(body: &[u8]) -> Result<Incoming<'_>, RpcError> {
    let text = std::str::from_utf8(body).map_err(RpcError::parse_error)?;
    if text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        // A single request is read in one pass: its params can be large,
        // and checking the whole body first read them twice.
        match serde_json::from_str::<Members>(text) {
            Ok(members) => return Ok(Incoming::Single(call(members))),
            Err(e) if e.is_syntax() || e.is_eof() => return Err(RpcError::parse_error(e)),
            // A well-formed body whose members are wrong: answered below.
            Err(_) => {}
        }
    }
    let root: &RawValue = serde_json::from_str(text).map_err(RpcError::parse_error)?;
    let json = root.get();
    if json.starts_with('[') {
        let members: Vec<&RawValue> = serde_json::from_str(json).map_err(RpcError::parse_error)?;
        if members.is_empty() {
            return Ok(Incoming::Single(invalid(
                "an empty batch has no request in it",
            )));
        }
        return Ok(Incoming::Batch(members.into_iter().map(entry).collect()));
    }
    Ok(Incoming::Single(entry(root)))
}

fn invalid(detail: &str) -> Entry<'static> {
    Entry::Invalid {
        error: RpcError::invalid_request(detail),
        id: None,
    }
}

fn entry(raw: &RawValue) -> Entry<'_> {
    if !raw.get().starts_with('{') {
        return invalid("a request must be a JSON object");
    }
    match serde_json::from_str(raw.get()) {
        Ok(members) => call(members),
        Err(e) => invalid(&format!("malformed request object ({e})")),
    }
}

fn call(members: Members<'_>) -> Entry<'_> {
    match members
        .jsonrpc
        .map(|v| serde_json::from_str::<Cow<str>>(v.get()))
    {
        Some(Ok(version)) if version == "2.0" => {}
        _ => return invalid(r#"the "jsonrpc" member must be exactly "2.0""#),
    }
    let id = match members.id {
        Some(id) if !is_valid_id(id) => {
            return invalid(r#"the "id" member must be a string, a number or null"#);
        }
        other => other,
    };
    let method = match members
        .method
        .map(|m| serde_json::from_str::<Cow<str>>(m.get()))
    {
        Some(Ok(method)) => method,
        _ => return invalid(r#"the "method" member must be a string"#),
    };
    if let Some(params) = members.params {
        let json = params.get();
        if !(json.starts_with('[') || json.starts_with('{')) {
            return Entry::Invalid {
                error: RpcError::new(
                    codes::INVALID_PARAMS,
                    "invalid_params",
                    r#"Invalid params: "params" must be an array (positional arguments) or an object (one argument)"#,
                ),
                id,
            };
        }
    }
    Entry::Call(Call {
        id,
        method,
        params: members.params,
    })
}

fn is_valid_id(id: &RawValue) -> bool {
    let json = id.get();
    json == "null"
        || json.starts_with('"')
        || json.starts_with('-')
        || json.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(body: &str) -> Entry<'_> {
        match parse(body.as_bytes()).unwrap() {
            Incoming::Single(entry) => entry,
            Incoming::Batch(_) => panic!("expected a single entry"),
        }
    }

    fn invalid_code(entry: &Entry) -> i64 {
        match entry {
            Entry::Invalid { error, .. } => error.code,
            Entry::Call(call) => panic!("expected invalid, got {call:?}"),
        }
    }

    #[test]
    fn a_request_keeps_raw_params_and_id() {
        let Entry::Call(call) =
            single(r#"{"jsonrpc":"2.0","method":"add","params":[1, 2.50],"id":1.0}"#)
        else {
            panic!("expected a call");
        };
        assert_eq!(call.method, "add");
        assert_eq!(call.params.unwrap().get(), "[1, 2.50]");
        assert_eq!(call.id.unwrap().get(), "1.0");
    }

    #[test]
    fn a_missing_id_is_a_notification_and_a_null_id_is_not() {
        let Entry::Call(call) = single(r#"{"jsonrpc":"2.0","method":"x"}"#) else {
            panic!()
        };
        assert!(call.id.is_none());
        let Entry::Call(call) = single(r#"{"jsonrpc":"2.0","method":"x","id":null}"#) else {
            panic!()
        };
        assert_eq!(call.id.unwrap().get(), "null");
    }

    #[test]
    fn malformed_json_is_a_parse_error() {
        for body in [
            r#"{"jsonrpc":"2.0","method":"foo","params":"bar","baz]"#,
            "",
            "[",
            "\u{0}",
        ] {
            assert_eq!(
                parse(body.as_bytes()).unwrap_err().code,
                codes::PARSE_ERROR,
                "{body:?}"
            );
        }
        assert_eq!(parse(&[0xff, 0xfe]).unwrap_err().code, codes::PARSE_ERROR);
    }

    #[test]
    fn invalid_request_objects_are_reported_per_entry() {
        for body in [
            r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#,
            r#"{"method":"x","id":1}"#,
            r#"{"jsonrpc":"1.0","method":"x","id":1}"#,
            r#"{"jsonrpc":"2.0","method":"x","id":{}}"#,
            r#"{"jsonrpc":"2.0","method":"x","id":true}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            "1",
            r#""text""#,
            "[]",
        ] {
            assert_eq!(
                invalid_code(&single(body)),
                codes::INVALID_REQUEST,
                "{body}"
            );
        }
    }

    #[test]
    fn scalar_params_are_invalid_params_and_keep_the_id() {
        let entry = single(r#"{"jsonrpc":"2.0","method":"x","params":3,"id":"a"}"#);
        let Entry::Invalid { error, id } = entry else {
            panic!()
        };
        assert_eq!(error.code, codes::INVALID_PARAMS);
        assert_eq!(id.unwrap().get(), r#""a""#);
    }

    #[test]
    fn a_batch_is_parsed_member_by_member() {
        let Incoming::Batch(entries) =
            parse(br#"[1, {"jsonrpc":"2.0","method":"a","id":1}, {"foo":"boo"}]"#).unwrap()
        else {
            panic!("expected a batch");
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(invalid_code(&entries[0]), codes::INVALID_REQUEST);
        assert!(matches!(entries[1], Entry::Call(_)));
        assert_eq!(invalid_code(&entries[2]), codes::INVALID_REQUEST);
    }
}
