//! The OpenRPC document `rpc.discover` returns.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// An OpenRPC 1.2 document listing `methods`. Guest functions take any JSON
/// and return any JSON, so params and results are described as such. A
/// cacheable method (in `cache`, with its time to live in milliseconds)
/// says so in the `x-madrpc-cache` extension field, and the module version
/// serving them (its SHA-256) is `info.x-madrpc-module`.
pub fn document(methods: &[String], cache: &BTreeMap<String, u64>, module: Option<&str>) -> Value {
    let methods: Vec<Value> = methods
        .iter()
        .map(|name| {
            let mut method = json!({
                "name": name,
                "paramStructure": "either",
                "params": [],
                "result": { "name": "result", "schema": {} },
            });
            if let Some(ttl_ms) = cache.get(name) {
                method["x-madrpc-cache"] = json!({ "ttl_ms": ttl_ms });
            }
            method
        })
        .collect();
    let mut document = json!({
        "openrpc": "1.2.6",
        "info": {
            "title": "madrpc",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JavaScript functions served by madrpc",
        },
        "methods": methods,
    });
    if let Some(module) = module {
        document["info"]["x-madrpc-module"] = json!(module);
    }
    document
}
