//! Writing JSON-RPC responses. Results are spliced in as the raw JSON the
//! guest produced, never parsed and re-encoded.

use super::RpcError;
use serde_json::value::RawValue;

/// The outcome of one call that gets a reply.
#[derive(Debug)]
pub struct Reply<'a> {
    /// The id to echo; `None` writes `null`.
    pub id: Option<&'a RawValue>,
    /// The raw JSON result, or the error.
    pub outcome: Result<bytes::Bytes, RpcError>,
}

/// Appends one response object to `out`.
pub fn write_reply(out: &mut Vec<u8>, reply: &Reply<'_>) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    match &reply.outcome {
        Ok(result) => {
            out.extend_from_slice(br#""result":"#);
            out.extend_from_slice(result);
        }
        Err(error) => {
            out.extend_from_slice(br#""error":"#);
            // An RpcError is plain data; serializing it cannot fail.
            let _ = serde_json::to_writer(&mut *out, error);
        }
    }
    out.extend_from_slice(br#","id":"#);
    out.extend_from_slice(reply.id.map_or("null", |id| id.get()).as_bytes());
    out.push(b'}');
}

/// The body for a batch: an array of the replies, or `None` when every
/// member was a notification (the specification says: return nothing).
pub fn write_batch(replies: &[Reply<'_>]) -> Option<Vec<u8>> {
    if replies.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(64 * replies.len());
    out.push(b'[');
    for (i, reply) in replies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_reply(&mut out, reply);
    }
    out.push(b']');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_ids_are_spliced_verbatim() {
        let id = RawValue::from_string("1.0".into()).unwrap();
        let mut out = Vec::new();
        write_reply(
            &mut out,
            &Reply {
                id: Some(&id),
                outcome: Ok(bytes::Bytes::from_static(b"{\"x\":1.50}")),
            },
        );
        assert_eq!(out, br#"{"jsonrpc":"2.0","result":{"x":1.50},"id":1.0}"#);
    }

    #[test]
    fn errors_carry_code_message_data_and_a_null_id() {
        let mut out = Vec::new();
        write_reply(
            &mut out,
            &Reply {
                id: None,
                outcome: Err(RpcError::invalid_request("bad")),
            },
        );
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["error"]["code"], -32600);
        assert_eq!(value["error"]["data"]["kind"], "invalid_request");
        assert!(value["id"].is_null());
        assert!(value.get("result").is_none());
    }

    #[test]
    fn an_all_notification_batch_has_no_body() {
        assert!(write_batch(&[]).is_none());
    }
}
