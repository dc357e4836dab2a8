//! Fuzz targets, on stable Rust with `bolero`: the JSON-RPC request parser,
//! the node protocol (a node's `POST /v1/call/{method}`, a gateway in front
//! of a node, and the gateway's reading of whatever a node replies), and
//! module loading. Under `cargo test` each target runs
//! random inputs for `BOLERO_RANDOM_TEST_TIME_MS` (default 1 s);
//! `scripts/fuzz SECONDS` runs each for longer.

#[path = "../support/mod.rs"]
mod support;

mod gateway;
mod json;
mod module;
mod node;
mod parser;

use std::sync::OnceLock;

/// Reads choices and bytes off a fuzz input; past its end it reads zeros.
pub struct Tape<'a> {
    bytes: &'a [u8],
}

impl<'a> Tape<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn byte(&mut self) -> u8 {
        let (first, rest) = self.bytes.split_first().unwrap_or((&0, &[]));
        self.bytes = rest;
        *first
    }

    pub fn below(&mut self, n: usize) -> usize {
        let wide = u16::from_le_bytes([self.byte(), self.byte()]);
        usize::from(wide) % n.max(1)
    }

    pub fn take(&mut self, max: usize) -> &'a [u8] {
        let len = self.below(max + 1).min(self.bytes.len());
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        taken
    }

    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }
}

/// The data kinds the error table names.
pub const KINDS: &[&str] = &[
    "parse_error",
    "invalid_request",
    "method_not_found",
    "invalid_params",
    "internal",
    "guest_threw",
    "fuel_exhausted",
    "memory_exceeded",
    "deadline_exceeded",
    "stack_overflow",
    "not_serializable",
    "never_settled",
    "guest_crashed",
    "params_too_large",
    "result_too_large",
    "body_too_large",
    "batch_too_large",
    "overloaded",
    "no_healthy_node",
    "node_failed",
    "call_depth_exceeded",
    "too_many_subcalls",
    "unauthorized",
];

pub fn fuzz_tokio() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"))
}

/// One HTTP client for the targets that talk to processes.
pub fn fuzz_http() -> &'static madrpc::http::HttpClient {
    static HTTP: OnceLock<madrpc::http::HttpClient> = OnceLock::new();
    HTTP.get_or_init(support::grid::client)
}
