//! The JSON-RPC request parser against an independent reading of the
//! specification.

use crate::Tape;
use crate::json::{scalar, string, value};
use madrpc::rpc::{Entry, Incoming, codes};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A JSON text built from the tape: mostly request-shaped, sometimes broken.
pub fn request_body(tape: &mut Tape) -> String {
    match tape.below(8) {
        0 => String::from_utf8_lossy(tape.take(64)).into_owned(),
        1 | 2 => {
            let entries: Vec<String> = (0..tape.below(6)).map(|_| entry_text(tape)).collect();
            format!("[{}]", entries.join(tape.pick(&[",", " , ", ",\n"])))
        }
        3 => {
            let body = entry_text(tape);
            let cut = tape.below(body.len() + 1);
            String::from_utf8_lossy(&body.as_bytes()[..cut]).into_owned()
        }
        _ => entry_text(tape),
    }
}

fn entry_text(tape: &mut Tape) -> String {
    if tape.below(6) == 0 {
        return scalar(tape);
    }
    let mut members = Vec::new();
    for _ in 0..tape.below(6) + 1 {
        let member = match tape.below(6) {
            0 => format!(
                r#""jsonrpc":{}"#,
                tape.pick(&[r#""2.0""#, r#""1.0""#, "2", "null", r#""2.0\u0000""#])
            ),
            1 => format!(
                r#""method":{}"#,
                tape.pick(&[
                    r#""add""#,
                    r#""rpc.discover""#,
                    r#""rpc.x""#,
                    r#""""#,
                    r#""\u00e9\ud83d\ude00""#,
                    "1",
                    "null",
                    "[]"
                ])
            ),
            2 => format!(r#""params":{}"#, value(tape, 3)),
            3 => format!(r#""id":{}"#, value(tape, 2)),
            4 => format!("{}:{}", string(tape), value(tape, 2)),
            _ => String::from(r#""jsonrpc":"2.0","method":"add""#),
        };
        members.push(member);
    }
    format!("{{{}}}", members.join(","))
}

/// The members of an object in order, duplicates kept.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// What the specification says an entry is: a call, an invalid request, or
/// a request with invalid params.
#[derive(Debug, PartialEq)]
enum Verdict {
    Call { id: Option<String>, method: String },
    InvalidRequest,
    InvalidParams { id: Option<String> },
}

fn verdict(raw: &RawValue) -> Verdict {
    let Ok(Members(members)) = serde_json::from_str::<Members>(raw.get()) else {
        return Verdict::InvalidRequest;
    };
    // A member of the protocol given twice makes the request ambiguous.
    let twice = |name: &str| members.iter().filter(|(n, _)| n == name).count() > 1;
    if ["jsonrpc", "method", "params", "id"].into_iter().any(twice) {
        return Verdict::InvalidRequest;
    }
    let get = |name: &str| {
        members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.get())
    };
    let string = |json: Option<&str>| json.and_then(|j| serde_json::from_str::<String>(j).ok());
    if string(get("jsonrpc")).as_deref() != Some("2.0") {
        return Verdict::InvalidRequest;
    }
    let id = get("id");
    let id_ok = id.is_none_or(|id| {
        id == "null"
            || id.starts_with('"')
            || id.starts_with('-')
            || id.starts_with(|c: char| c.is_ascii_digit())
    });
    if !id_ok {
        return Verdict::InvalidRequest;
    }
    let Some(method) = string(get("method")) else {
        return Verdict::InvalidRequest;
    };
    let id = id.map(str::to_owned);
    match get("params") {
        Some(p) if !(p.starts_with('[') || p.starts_with('{')) => Verdict::InvalidParams { id },
        _ => Verdict::Call { id, method },
    }
}

fn parsed_verdict(entry: &Entry) -> Verdict {
    match entry {
        Entry::Call(call) => Verdict::Call {
            id: call.id.map(|id| id.get().to_owned()),
            method: call.method.clone().into_owned(),
        },
        Entry::Invalid { error, id } if error.code == codes::INVALID_PARAMS => {
            Verdict::InvalidParams {
                id: id.map(|id| id.get().to_owned()),
            }
        }
        Entry::Invalid { error, id } => {
            assert_eq!(error.code, codes::INVALID_REQUEST, "{error:?}");
            assert!(
                id.is_none(),
                "an invalid request is answered with a null id"
            );
            Verdict::InvalidRequest
        }
    }
}

/// The parser's answer agrees with the specification read independently.
fn check_parse(body: &[u8]) {
    let root = std::str::from_utf8(body)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    match (madrpc::rpc::parse(body), root) {
        (Err(error), None) => assert_eq!(error.code, codes::PARSE_ERROR),
        (Err(error), Some(_)) => panic!("valid JSON refused: {error:?}"),
        (Ok(_), None) => panic!("a body that is not JSON was accepted"),
        (Ok(Incoming::Single(entry)), Some(root)) => {
            let expected = if root.get().starts_with('[') {
                Verdict::InvalidRequest // only the empty batch is a single entry
            } else {
                verdict(root)
            };
            assert_eq!(parsed_verdict(&entry), expected, "{}", root.get());
        }
        (Ok(Incoming::Batch(entries)), Some(root)) => {
            let members: Vec<&RawValue> =
                serde_json::from_str(root.get()).expect("a batch is an array");
            assert_eq!(entries.len(), members.len());
            for (entry, member) in entries.iter().zip(members) {
                assert_eq!(parsed_verdict(entry), verdict(member), "{}", member.get());
            }
        }
    }
}

#[test]
fn request_parser_on_arbitrary_bytes() {
    bolero::check!().for_each(check_parse);
}

#[test]
fn request_parser_on_request_shaped_json() {
    bolero::check!().for_each(|input: &[u8]| {
        let body = request_body(&mut Tape::new(input));
        check_parse(body.as_bytes());
    });
}
