//! A property of batches, checked over HTTP against `madrpc serve`: for any
//! mix of requests, notifications and invalid entries, the responses match
//! the entries that get one, one to one, each with the right id and outcome.

mod support;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::HashMap;
use support::grid::{Process, client, rpc};

/// One member of a batch.
#[derive(Debug, Clone)]
enum Member {
    /// A call of `echo` with these params; `id` is its raw JSON id.
    Echo { id: String, params: Value },
    /// A call of a method that does not exist.
    Unknown { id: String },
    /// A request whose params are a scalar: invalid params, answered with
    /// its id.
    ScalarParams { id: String },
    /// A notification: run, never answered.
    Notification { params: Value },
    /// Not a request at all: answered with -32600 and a null id.
    Invalid(&'static str),
}

const INVALID: &[&str] = &[
    "1",
    r#""text""#,
    "null",
    "[]",
    "{}",
    r#"{"jsonrpc":"1.0","method":"echo","id":9}"#,
    r#"{"jsonrpc":"2.0","method":7,"id":9}"#,
    r#"{"jsonrpc":"2.0","method":"echo","id":{}}"#,
    r#"{"jsonrpc":"2.0","method":"echo","id":true}"#,
    r#"{"method":"echo","id":9}"#,
];

fn params() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        any::<i32>().prop_map(Value::from),
        prop::collection::vec(
            prop::sample::select(vec!['a', 'é', ' ', '"', '\\', '\u{1F600}']),
            0..8
        )
        .prop_map(|chars| Value::from(String::from_iter(chars))),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    prop_oneof![
        scalar.clone().prop_map(|v| json!([v])),
        prop::collection::vec(scalar.clone(), 0..3).prop_map(|v| json!({"items": v})),
        Just(json!({})),
    ]
}

fn member() -> impl Strategy<Value = Member> {
    prop_oneof![
        4 => params().prop_map(|params| Member::Echo { id: String::new(), params }),
        1 => Just(Member::Unknown { id: String::new() }),
        1 => Just(Member::ScalarParams { id: String::new() }),
        2 => params().prop_map(|params| Member::Notification { params }),
        2 => prop::sample::select(INVALID).prop_map(Member::Invalid),
    ]
}

/// Gives every request a distinct id, in one of JSON-RPC's id forms.
fn with_ids(mut members: Vec<Member>, forms: Vec<u8>) -> Vec<Member> {
    for (i, (member, form)) in members.iter_mut().zip(forms).enumerate() {
        let text = match form % 4 {
            0 => format!("{i}"),
            1 => format!("\"id-{i}\""),
            2 => format!("{i}.50"),
            _ => format!("-{i}e0"),
        };
        if let Member::Echo { id, .. } | Member::Unknown { id } | Member::ScalarParams { id } =
            member
        {
            *id = text;
        }
    }
    members
}

fn batch() -> impl Strategy<Value = Vec<Member>> {
    prop::collection::vec(member(), 1..24).prop_flat_map(|members| {
        let n = members.len();
        (Just(members), prop::collection::vec(any::<u8>(), n)).prop_map(|(m, f)| with_ids(m, f))
    })
}

fn entry_text(member: &Member) -> String {
    match member {
        Member::Echo { id, params } => {
            format!(r#"{{"jsonrpc":"2.0","method":"echo","params":{params},"id":{id}}}"#)
        }
        Member::Unknown { id } => {
            format!(r#"{{"jsonrpc":"2.0","method":"no_such_function","id":{id}}}"#)
        }
        Member::ScalarParams { id } => {
            format!(r#"{{"jsonrpc":"2.0","method":"echo","params":3,"id":{id}}}"#)
        }
        Member::Notification { params } => {
            format!(r#"{{"jsonrpc":"2.0","method":"echo","params":{params}}}"#)
        }
        Member::Invalid(text) => (*text).to_owned(),
    }
}

/// What `echo` returns: an array's single element is spread as the argument.
fn echoed(params: &Value) -> Value {
    match params {
        Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    }
}

#[derive(serde::Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
}

/// `Some` for a member that is present, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

fn check(members: &[Member], status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    let answered = members
        .iter()
        .filter(|m| !matches!(m, Member::Notification { .. }))
        .count();
    if answered == 0 {
        prop_assert_eq!(status, 204);
        prop_assert!(body.is_empty());
        return Ok(());
    }
    prop_assert_eq!(status, 200);
    let responses: Vec<Response> = serde_json::from_slice(body)
        .map_err(|e| TestCaseError::fail(format!("not an array of responses ({e})")))?;
    prop_assert_eq!(responses.len(), answered);
    let mut by_id: HashMap<&str, &Response> = HashMap::new();
    let mut null_ids = 0;
    for response in &responses {
        prop_assert!(response.result.is_some() != response.error.is_some());
        if response.id.get() == "null" {
            null_ids += 1;
            prop_assert_eq!(
                &response.error.as_ref().map(|e| e["code"].clone()),
                &Some(json!(-32600))
            );
        } else {
            prop_assert!(
                by_id.insert(response.id.get(), response).is_none(),
                "id {} answered twice",
                response.id.get()
            );
        }
    }
    let invalid = members
        .iter()
        .filter(|m| matches!(m, Member::Invalid(_)))
        .count();
    prop_assert_eq!(null_ids, invalid);
    for member in members {
        let (id, expected_result, expected_code) = match member {
            Member::Echo { id, params } => (id, Some(echoed(params)), None),
            Member::Unknown { id } => (id, None, Some(-32601)),
            Member::ScalarParams { id } => (id, None, Some(-32602)),
            _ => continue,
        };
        let response = by_id
            .get(id.as_str())
            .ok_or_else(|| TestCaseError::fail(format!("no response with id {id}")))?;
        prop_assert_eq!(&response.result, &expected_result, "id {}", id);
        prop_assert_eq!(
            response.error.as_ref().map(|e| e["code"].clone()),
            expected_code.map(Value::from),
            "id {}",
            id
        );
    }
    Ok(())
}

#[test]
fn batch_responses_match_the_requests_one_to_one() {
    let script = support::script("sandbox.js");
    let serve = Process::start(
        &support::grid::serve_args(&script, &["--nodes", "1"]),
        "madrpc is serving at ",
    );
    let url = format!("{}/", serve.url);
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let http = client();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(&batch(), |members| {
        let body = format!(
            "[{}]",
            members.iter().map(entry_text).collect::<Vec<_>>().join(",")
        );
        let reply = tokio.block_on(rpc(&http, &url, &body));
        check(&members, reply.status, &reply.body)
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
