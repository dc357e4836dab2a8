//! The fixed workload: which JSON-RPC calls are sent and what each one must
//! return, so that the checker can prove every reply correct.
//!
//! Every call carries a unique, increasing integer id `I` taken from one
//! counter shared by all clients; `add` sends `params: [I, 1000000]` and
//! expects exactly `I + 1000000`, so a reply swapped between calls or
//! connections cannot pass.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// Second operand of every `add` call.
pub const ADD_OPERAND: u64 = 1_000_000;

/// Objects in the params of every `sum_field` call (about 125 KB of JSON).
pub const SUM_FIELD_ITEMS: u64 = 2_500;

/// The `qty` of item `k` of a `sum_field` call, but the first, whose `qty`
/// is the call's id.
fn item_qty(k: u64) -> u64 {
    k % 7 + 1
}

/// The `sum_field` items after the first, the same in every call.
fn sum_field_tail() -> String {
    let mut tail = String::with_capacity(SUM_FIELD_ITEMS as usize * 52);
    for k in 1..SUM_FIELD_ITEMS {
        tail.push_str(&format!(
            r#",{{"id":{k},"name":"item-{k}","qty":{},"price":{}.{:02}}}"#,
            item_qty(k),
            k % 100,
            k * 37 % 100
        ));
    }
    tail
}

/// The JSON-RPC method driven by the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `add` with params `[I, 1000000]`; the result must be `I + 1000000`.
    Add,
    /// `noop` without params; the result must be `null`.
    Noop,
    /// `sum_field` with params `{"items": [...]}`: 2,500 small objects,
    /// the first with `qty` I; the result must be the sum of their `qty`.
    SumField,
    /// Any other method, sent without params; only the presence of a
    /// `result` is checked.
    Other(String),
    /// A method sent without params that must be answered with this
    /// JSON-RPC error code (an unknown method measures the server's floor:
    /// HTTP and JSON-RPC without running anything).
    Refused(String, i64),
}

impl Method {
    /// Maps a method name from the command line to its workload.
    pub fn from_name(name: &str) -> Self {
        match name {
            "add" => Self::Add,
            "noop" => Self::Noop,
            "sum_field" => Self::SumField,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The method name as sent on the wire.
    pub fn name(&self) -> &str {
        match self {
            Self::Add => "add",
            Self::Noop => "noop",
            Self::SumField => "sum_field",
            Self::Other(name) | Self::Refused(name, _) => name,
        }
    }

    /// What the call with this id must return.
    pub fn expect(&self, id: u64) -> Expect {
        match self {
            Self::Add => Expect::Number(id + ADD_OPERAND),
            Self::Noop => Expect::Null,
            Self::SumField => Expect::Number(id + (1..SUM_FIELD_ITEMS).map(item_qty).sum::<u64>()),
            Self::Other(_) => Expect::AnyResult,
            Self::Refused(_, code) => Expect::Error(*code),
        }
    }
}

/// The result a call must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this integer.
    Number(u64),
    /// JSON `null`.
    Null,
    /// Any value: the result is not checked, only its presence.
    AnyResult,
    /// A JSON-RPC error with this code.
    Error(i64),
}

/// One JSON-RPC call that was sent: its id and the result it must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The `id` member sent with the call.
    pub id: u64,
    /// The result the reply must carry.
    pub expect: Expect,
}

/// One HTTP request body with the calls it carries.
#[derive(Debug, Clone)]
pub struct Request {
    /// The JSON body to POST.
    pub body: Bytes,
    /// The calls in the body, in the order they were written.
    pub calls: Vec<Call>,
    /// Whether the body is a batch array (as opposed to a single object).
    pub batched: bool,
}

/// Hands out requests with globally unique call ids; shared by all clients.
#[derive(Debug)]
pub struct Workload {
    method: Method,
    /// `{"jsonrpc":"2.0","method":"<name>"`, with the name JSON-escaped.
    prefix: String,
    batched: bool,
    next_id: AtomicU64,
    /// The items after the first of a `sum_field` call, built once.
    sum_field_tail: String,
}

impl Workload {
    /// A workload calling `method`; when `batched`, every request body is a
    /// JSON-RPC batch array (even if it carries a single call).
    pub fn new(method: Method, batched: bool) -> Self {
        let escaped = serde_json::Value::String(method.name().to_owned());
        Self {
            prefix: format!(r#"{{"jsonrpc":"2.0","method":{escaped}"#),
            sum_field_tail: match method {
                Method::SumField => sum_field_tail(),
                _ => String::new(),
            },
            method,
            batched,
            next_id: AtomicU64::new(1),
        }
    }

    /// Builds the next request, carrying `count` calls with fresh ids.
    pub fn request(&self, count: u32) -> Request {
        let count = u64::from(count.max(1));
        let first = self.next_id.fetch_add(count, Ordering::Relaxed);
        let calls: Vec<Call> = (first..first + count)
            .map(|id| Call {
                id,
                expect: self.method.expect(id),
            })
            .collect();

        let per_call = self.prefix.len() + self.sum_field_tail.len() + 100;
        let mut body = String::with_capacity(calls.len() * per_call + 2);
        if self.batched {
            body.push('[');
        }
        for (index, call) in calls.iter().enumerate() {
            if index > 0 {
                body.push(',');
            }
            self.write_call(&mut body, call.id);
        }
        if self.batched {
            body.push(']');
        }

        Request {
            body: Bytes::from(body),
            calls,
            batched: self.batched,
        }
    }

    /// Appends one call object to `out`.
    fn write_call(&self, out: &mut String, id: u64) {
        out.push_str(&self.prefix);
        if self.method == Method::Add {
            out.push_str(",\"params\":[");
            out.push_str(&id.to_string());
            out.push(',');
            out.push_str(&ADD_OPERAND.to_string());
            out.push(']');
        }
        if self.method == Method::SumField {
            out.push_str(r#","params":{"items":[{"id":0,"name":"item-0","qty":"#);
            out.push_str(&id.to_string());
            out.push_str(r#","price":0.5}"#);
            out.push_str(&self.sum_field_tail);
            out.push_str("]}");
        }
        out.push_str(",\"id\":");
        out.push_str(&id.to_string());
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(body: &Bytes) -> Value {
        serde_json::from_slice(body).expect("request body is JSON")
    }

    #[test]
    fn add_call_has_params_and_expected_sum() {
        let workload = Workload::new(Method::Add, false);
        let request = workload.request(1);
        assert!(!request.batched);
        assert_eq!(
            parse(&request.body),
            json!({"jsonrpc": "2.0", "method": "add", "params": [1, 1_000_000], "id": 1})
        );
        assert_eq!(
            request.calls,
            [Call {
                id: 1,
                expect: Expect::Number(1_000_001)
            }]
        );
    }

    #[test]
    fn sum_field_calls_carry_2500_items_summing_to_the_expected_result() {
        let request = Workload::new(Method::from_name("sum_field"), false).request(1);
        assert!(
            (120_000..135_000).contains(&request.body.len()),
            "{} bytes",
            request.body.len()
        );
        let body = parse(&request.body);
        let items = body["params"]["items"].as_array().expect("items");
        assert_eq!(items.len(), 2_500);
        let sum: u64 = items.iter().map(|item| item["qty"].as_u64().unwrap()).sum();
        assert_eq!(request.calls[0].expect, Expect::Number(sum));
        assert_eq!(items[0]["qty"], json!(1));
    }

    #[test]
    fn noop_and_other_methods_send_no_params() {
        let noop = Workload::new(Method::from_name("noop"), false).request(1);
        assert_eq!(
            parse(&noop.body),
            json!({"jsonrpc": "2.0", "method": "noop", "id": 1})
        );
        assert_eq!(noop.calls[0].expect, Expect::Null);

        let other = Workload::new(Method::from_name("say \"hi\""), false).request(1);
        assert_eq!(
            parse(&other.body),
            json!({"jsonrpc": "2.0", "method": "say \"hi\"", "id": 1})
        );
        assert_eq!(other.calls[0].expect, Expect::AnyResult);
    }

    #[test]
    fn batches_are_arrays_with_unique_increasing_ids() {
        let workload = Workload::new(Method::Add, true);
        let first = workload.request(3);
        let second = workload.request(2);
        let body = parse(&first.body);
        let entries = body.as_array().expect("batch is an array");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2]["params"], json!([3, 1_000_000]));
        let ids: Vec<u64> = first
            .calls
            .iter()
            .chain(&second.calls)
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);

        let single = workload.request(1);
        assert!(
            parse(&single.body).is_array(),
            "batch mode always sends arrays"
        );
    }
}
