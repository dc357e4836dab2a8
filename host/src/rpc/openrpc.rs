//! The OpenRPC document `rpc.discover` returns.

use serde_json::{Value, json};

/// An OpenRPC 1.2 document listing `methods`. Guest functions take any JSON
/// and return any JSON, so params and results are described as such.
pub fn document(methods: &[String]) -> Value {
    let methods: Vec<Value> = methods
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "paramStructure": "either",
                "params": [],
                "result": { "name": "result", "schema": {} },
            })
        })
        .collect();
    json!({
        "openrpc": "1.2.6",
        "info": {
            "title": "madrpc",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JavaScript functions served by madrpc",
        },
        "methods": methods,
    })
}
