//! Reply validation: decides, for every call sent, whether the server
//! answered it correctly, with a JSON-RPC error, or wrongly.
//!
//! Nothing here trusts the server: any body, status or shape is turned into
//! verdicts, never into a panic.

use std::collections::HashMap;

use hyper::StatusCode;
use serde_json::{Map, Value};

use crate::workload::{Call, Expect};

/// How one call sent was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Correct reply carrying exactly the expected result.
    Ok,
    /// Well-formed reply with a `result` that the workload cannot verify
    /// (methods other than `add` and `noop`).
    Unchecked,
    /// The reply carried a JSON-RPC `error` member.
    Error {
        /// `error.code`.
        code: i64,
        /// `error.message` (empty when absent).
        message: String,
    },
    /// Bad or missing id, wrong result, malformed body, missing batch entry.
    Wrong(String),
}

/// What an HTTP reply amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The reply carried no JSON-RPC body (e.g. a bare non-2xx status): the
    /// calls failed below JSON-RPC.
    Transport(String),
    /// One verdict per call sent, in the order the calls were sent, followed
    /// by one [`Verdict::Wrong`] per reply entry that matched no call.
    Verdicts(Vec<Verdict>),
}

/// Checks an HTTP reply to a request that carried `calls`.
///
/// A 2xx reply is always checked as JSON-RPC. Any other status counts as a
/// transport failure unless its body is JSON-RPC, in which case that body
/// is checked like any other.
pub fn check_reply(status: StatusCode, body: &[u8], calls: &[Call], batched: bool) -> Checked {
    let parsed = serde_json::from_slice::<Value>(body);
    if !status.is_success() && !parsed.as_ref().is_ok_and(looks_like_jsonrpc) {
        return Checked::Transport(format!("HTTP status {status}"));
    }
    Checked::Verdicts(check_parsed(parsed, calls, batched))
}

/// Checks a response body against the calls of the request.
#[cfg(test)]
pub fn check_body(body: &[u8], calls: &[Call], batched: bool) -> Vec<Verdict> {
    check_parsed(serde_json::from_slice(body), calls, batched)
}

fn check_parsed(parsed: serde_json::Result<Value>, calls: &[Call], batched: bool) -> Vec<Verdict> {
    let value = match parsed {
        Ok(value) => value,
        Err(e) => return all_wrong(calls, &format!("malformed body: {e}")),
    };
    match (batched, value) {
        (false, Value::Object(reply)) => calls.iter().map(|c| check_entry(&reply, c)).collect(),
        (true, Value::Array(entries)) => check_batch(&entries, calls),
        // A batch rejected as a whole is answered with one error object.
        (true, Value::Object(reply)) if reply.contains_key("error") => {
            calls.iter().map(|c| check_entry(&reply, c)).collect()
        }
        (false, other) => all_wrong(
            calls,
            &format!("expected one reply object, got {}", brief(&other)),
        ),
        (true, other) => all_wrong(
            calls,
            &format!("expected a batch array, got {}", brief(&other)),
        ),
    }
}

/// Matches batch entries to calls by id; order does not matter but every id
/// must come back exactly once.
fn check_batch(entries: &[Value], calls: &[Call]) -> Vec<Verdict> {
    let position: HashMap<u64, usize> = calls.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    let mut slots: Vec<Option<Verdict>> = vec![None; calls.len()];
    let mut anonymous_errors = Vec::new();
    let mut strays = Vec::new();

    for entry in entries {
        let Some(reply) = entry.as_object() else {
            strays.push(Verdict::Wrong(format!(
                "batch entry is not an object: {}",
                brief(entry)
            )));
            continue;
        };
        let id = reply.get("id").unwrap_or(&Value::Null);
        match id.as_u64().and_then(|id| position.get(&id)) {
            Some(&i) if slots[i].is_some() => {
                slots[i] = Some(Verdict::Wrong(format!(
                    "id {} came back more than once",
                    calls[i].id
                )));
            }
            Some(&i) => slots[i] = Some(check_entry(reply, &calls[i])),
            // The server could not tell which call failed: it is one of the
            // calls left without a reply.
            None if id.is_null() && reply.contains_key("error") => anonymous_errors.push(reply),
            None => strays.push(Verdict::Wrong(format!(
                "reply entry with unknown id {}",
                brief(id)
            ))),
        }
    }

    let mut anonymous_errors = anonymous_errors.into_iter();
    let mut verdicts: Vec<Verdict> = slots
        .into_iter()
        .zip(calls)
        .map(|(slot, call)| match slot {
            Some(verdict) => verdict,
            None => match anonymous_errors.next() {
                Some(reply) => check_entry(reply, call),
                None => Verdict::Wrong(format!("id {} missing from batch reply", call.id)),
            },
        })
        .collect();
    verdicts.extend(
        anonymous_errors
            .map(|_| Verdict::Wrong("error entry with null id matches no call".to_owned())),
    );
    verdicts.extend(strays);
    verdicts
}

/// Checks one reply object against the call it answers.
fn check_entry(reply: &Map<String, Value>, call: &Call) -> Verdict {
    if reply.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Verdict::Wrong("`jsonrpc` member is not \"2.0\"".to_owned());
    }
    let id = reply.get("id");
    let id_matches = id.and_then(Value::as_u64) == Some(call.id);

    if let Some(error) = reply.get("error") {
        if reply.contains_key("result") {
            return Verdict::Wrong(format!("reply to id {} has both result and error", call.id));
        }
        // A null id is allowed on errors: the server may not have read it.
        if !id_matches && id != Some(&Value::Null) {
            return wrong_id(id, call);
        }
        let verdict = error_verdict(error);
        return match (verdict, call.expect) {
            (Verdict::Error { code, .. }, Expect::Error(expected)) if code == expected => {
                Verdict::Ok
            }
            (verdict, _) => verdict,
        };
    }
    if !id_matches {
        return wrong_id(id, call);
    }
    let Some(result) = reply.get("result") else {
        return Verdict::Wrong(format!(
            "reply to id {} has neither result nor error",
            call.id
        ));
    };
    let correct = match call.expect {
        Expect::Number(expected) => number_equals(result, expected),
        Expect::Null => result.is_null(),
        Expect::AnyResult => return Verdict::Unchecked,
        Expect::Error(_) => false,
    };
    if correct {
        Verdict::Ok
    } else {
        Verdict::Wrong(format!(
            "id {}: result {}, expected {}",
            call.id,
            brief(result),
            expected_text(call.expect)
        ))
    }
}

fn error_verdict(error: &Value) -> Verdict {
    match error.get("code").and_then(Value::as_i64) {
        Some(code) => Verdict::Error {
            code,
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        None => Verdict::Wrong(format!(
            "error member without an integer code: {}",
            brief(error)
        )),
    }
}

fn wrong_id(id: Option<&Value>, call: &Call) -> Verdict {
    let got = id.map_or_else(|| "no id".to_owned(), |id| format!("id {}", brief(id)));
    Verdict::Wrong(format!("{got}, expected id {}", call.id))
}

/// Integer equality, also accepting a float spelling of the same integer.
fn number_equals(value: &Value, expected: u64) -> bool {
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(n) => n == expected,
            None => n
                .as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f == expected as f64),
        },
        _ => false,
    }
}

fn expected_text(expect: Expect) -> String {
    match expect {
        Expect::Number(n) => n.to_string(),
        Expect::Null => "null".to_owned(),
        Expect::AnyResult => "any result".to_owned(),
        Expect::Error(code) => format!("error {code}"),
    }
}

/// Whether a non-2xx body still is a JSON-RPC reply worth checking.
fn looks_like_jsonrpc(value: &Value) -> bool {
    match value {
        Value::Object(reply) => reply.contains_key("jsonrpc"),
        Value::Array(entries) => entries.iter().any(|e| e.get("jsonrpc").is_some()),
        _ => false,
    }
}

fn all_wrong(calls: &[Call], reason: &str) -> Vec<Verdict> {
    calls
        .iter()
        .map(|_| Verdict::Wrong(reason.to_owned()))
        .collect()
}

/// A short rendering of server data for diagnostics.
fn brief(value: &Value) -> String {
    const LIMIT: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Method;

    fn add_call(id: u64) -> Call {
        Call {
            id,
            expect: Method::Add.expect(id),
        }
    }

    fn is_wrong(verdict: &Verdict) -> bool {
        matches!(verdict, Verdict::Wrong(_))
    }

    #[test]
    fn correct_single_reply() {
        let body = br#"{"jsonrpc":"2.0","result":1000007,"id":7}"#;
        assert_eq!(check_body(body, &[add_call(7)], false), [Verdict::Ok]);
    }

    #[test]
    fn float_spelling_of_the_result_is_accepted() {
        let body = br#"{"jsonrpc":"2.0","result":1000007.0,"id":7}"#;
        assert_eq!(check_body(body, &[add_call(7)], false), [Verdict::Ok]);
    }

    #[test]
    fn wrong_result() {
        let body = br#"{"jsonrpc":"2.0","result":1000008,"id":7}"#;
        let verdicts = check_body(body, &[add_call(7)], false);
        assert_eq!(verdicts.len(), 1);
        assert!(is_wrong(&verdicts[0]), "{verdicts:?}");

        let string_result = br#"{"jsonrpc":"2.0","result":"1000007","id":7}"#;
        assert!(is_wrong(
            &check_body(string_result, &[add_call(7)], false)[0]
        ));
    }

    #[test]
    fn wrong_id() {
        for body in [
            &br#"{"jsonrpc":"2.0","result":1000007,"id":8}"#[..],
            br#"{"jsonrpc":"2.0","result":1000007,"id":"7"}"#,
            br#"{"jsonrpc":"2.0","result":1000007,"id":null}"#,
            br#"{"jsonrpc":"2.0","result":1000007}"#,
        ] {
            let verdicts = check_body(body, &[add_call(7)], false);
            assert!(
                is_wrong(&verdicts[0]),
                "{}: {verdicts:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn wrong_version_or_missing_result() {
        for body in [
            &br#"{"jsonrpc":"1.0","result":1000007,"id":7}"#[..],
            br#"{"result":1000007,"id":7}"#,
            br#"{"jsonrpc":"2.0","id":7}"#,
            br#"{"jsonrpc":"2.0","result":1000007,"error":{"code":1,"message":"x"},"id":7}"#,
        ] {
            assert!(is_wrong(&check_body(body, &[add_call(7)], false)[0]));
        }
    }

    #[test]
    fn noop_expects_null_and_other_methods_are_unchecked() {
        let noop = Call {
            id: 3,
            expect: Method::Noop.expect(3),
        };
        assert_eq!(
            check_body(br#"{"jsonrpc":"2.0","result":null,"id":3}"#, &[noop], false),
            [Verdict::Ok]
        );
        assert!(is_wrong(
            &check_body(br#"{"jsonrpc":"2.0","result":0,"id":3}"#, &[noop], false)[0]
        ));

        let other = Call {
            id: 3,
            expect: Method::from_name("echo").expect(3),
        };
        assert_eq!(
            check_body(
                br#"{"jsonrpc":"2.0","result":{"any":1},"id":3}"#,
                &[other],
                false
            ),
            [Verdict::Unchecked]
        );
    }

    #[test]
    fn an_expected_error_is_correct_and_anything_else_is_not() {
        let refused = Call {
            id: 7,
            expect: Method::Refused("nope".to_owned(), -32601).expect(7),
        };
        let body =
            br#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":7}"#;
        assert_eq!(check_body(body, &[refused], false), [Verdict::Ok]);
        let other = br#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"x"},"id":7}"#;
        assert!(matches!(
            check_body(other, &[refused], false)[0],
            Verdict::Error { code: -32000, .. }
        ));
        let result = br#"{"jsonrpc":"2.0","result":1,"id":7}"#;
        assert!(is_wrong(&check_body(result, &[refused], false)[0]));
    }

    #[test]
    fn error_reply() {
        let body =
            br#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":7}"#;
        assert_eq!(
            check_body(body, &[add_call(7)], false),
            [Verdict::Error {
                code: -32601,
                message: "Method not found".to_owned()
            }]
        );
        // The server may answer with a null id when it could not read it.
        let null_id =
            br#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#;
        assert!(matches!(
            check_body(null_id, &[add_call(7)], false)[0],
            Verdict::Error { code: -32700, .. }
        ));
        // An error for another call is wrong, and so is an error without a code.
        let other_id = br#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"x"},"id":8}"#;
        assert!(is_wrong(&check_body(other_id, &[add_call(7)], false)[0]));
        let no_code = br#"{"jsonrpc":"2.0","error":{"message":"x"},"id":7}"#;
        assert!(is_wrong(&check_body(no_code, &[add_call(7)], false)[0]));
    }

    #[test]
    fn batch_with_reordered_entries() {
        let calls = [add_call(1), add_call(2), add_call(3)];
        let body = br#"[
            {"jsonrpc":"2.0","result":1000003,"id":3},
            {"jsonrpc":"2.0","result":1000001,"id":1},
            {"jsonrpc":"2.0","error":{"code":-32000,"message":"boom"},"id":2}
        ]"#;
        assert_eq!(
            check_body(body, &calls, true),
            [
                Verdict::Ok,
                Verdict::Error {
                    code: -32000,
                    message: "boom".to_owned()
                },
                Verdict::Ok
            ]
        );
    }

    #[test]
    fn batch_with_a_missing_entry() {
        let calls = [add_call(1), add_call(2), add_call(3)];
        let body = br#"[
            {"jsonrpc":"2.0","result":1000003,"id":3},
            {"jsonrpc":"2.0","result":1000001,"id":1}
        ]"#;
        let verdicts = check_body(body, &calls, true);
        assert_eq!(verdicts.len(), 3);
        assert_eq!(verdicts[0], Verdict::Ok);
        assert!(is_wrong(&verdicts[1]), "{verdicts:?}");
        assert_eq!(verdicts[2], Verdict::Ok);
    }

    #[test]
    fn batch_with_duplicate_and_unknown_ids() {
        let calls = [add_call(1), add_call(2)];
        let body = br#"[
            {"jsonrpc":"2.0","result":1000001,"id":1},
            {"jsonrpc":"2.0","result":1000001,"id":1},
            {"jsonrpc":"2.0","result":1000002,"id":2},
            {"jsonrpc":"2.0","result":1000009,"id":9}
        ]"#;
        let verdicts = check_body(body, &calls, true);
        assert_eq!(verdicts.len(), 3, "{verdicts:?}");
        assert!(is_wrong(&verdicts[0]), "duplicate id");
        assert_eq!(verdicts[1], Verdict::Ok);
        assert!(is_wrong(&verdicts[2]), "stray entry");
    }

    #[test]
    fn batch_rejected_as_a_whole_or_answered_with_an_object() {
        let calls = [add_call(1), add_call(2)];
        let rejected =
            br#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"no batches"},"id":null}"#;
        let verdicts = check_body(rejected, &calls, true);
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, Verdict::Error { code: -32600, .. }))
        );

        let single = br#"{"jsonrpc":"2.0","result":1000001,"id":1}"#;
        assert!(check_body(single, &calls, true).iter().all(is_wrong));

        let anonymous = br#"[
            {"jsonrpc":"2.0","result":1000001,"id":1},
            {"jsonrpc":"2.0","error":{"code":-32603,"message":"internal"},"id":null}
        ]"#;
        let verdicts = check_body(anonymous, &calls, true);
        assert_eq!(verdicts[0], Verdict::Ok);
        assert!(matches!(verdicts[1], Verdict::Error { code: -32603, .. }));
    }

    #[test]
    fn malformed_body() {
        for body in [&b""[..], b"{", b"not json", b"42", b"[]"] {
            let verdicts = check_body(body, &[add_call(1)], false);
            assert_eq!(verdicts.len(), 1);
            assert!(
                is_wrong(&verdicts[0]),
                "{}: {verdicts:?}",
                String::from_utf8_lossy(body)
            );
        }
        let calls = [add_call(1), add_call(2)];
        assert!(
            check_body(b"{\"jsonrpc\":", &calls, true)
                .iter()
                .all(is_wrong)
        );
        assert!(check_body(b"[1, 2]", &calls, true).iter().all(is_wrong));
        assert!(check_body(b"[]", &calls, true).iter().all(is_wrong));
    }

    #[test]
    fn non_success_status_is_transport_unless_it_carries_jsonrpc() {
        let calls = [add_call(1)];
        assert!(matches!(
            check_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                b"overloaded",
                &calls,
                false
            ),
            Checked::Transport(_)
        ));
        let body = br#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"busy"},"id":1}"#;
        assert_eq!(
            check_reply(StatusCode::INTERNAL_SERVER_ERROR, body, &calls, false),
            Checked::Verdicts(vec![Verdict::Error {
                code: -32000,
                message: "busy".to_owned()
            }])
        );
        let ok = br#"{"jsonrpc":"2.0","result":1000001,"id":1}"#;
        assert_eq!(
            check_reply(StatusCode::OK, ok, &calls, false),
            Checked::Verdicts(vec![Verdict::Ok])
        );
        assert!(matches!(
            check_reply(StatusCode::OK, b"oops", &calls, false),
            Checked::Verdicts(v) if is_wrong(&v[0])
        ));
    }
}
