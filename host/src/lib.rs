//! madrpc: plain JavaScript functions, precompiled to WebAssembly and run in
//! fresh sandboxes under hard limits, on one machine or a grid of them.
//!
//! - [`build`] turns a script into a pre-initialized module.
//! - [`runtime`] loads modules and runs every call in a fresh instance.
//! - [`manifest`] is the metadata a module carries about itself.
//! - [`node`] serves calls over HTTP on a bounded worker pool.
//! - [`gateway`] balances JSON-RPC calls across nodes.
//! - [`edge`] is what every listener does before JSON-RPC: TLS, timeouts,
//!   connection caps, API keys, rate limits, CORS.
//! - [`rpc`] is JSON-RPC 2.0 as all of them speak it.
//! - [`telemetry`] is metrics, request ids, log format and access log.
//! - [`modules`] names module versions by hash and keeps the deployed ones.
//! - [`cluster`] is the credential a gateway and its nodes share, and
//!   [`wire`] the frames of the call channel between them.
//! - [`jobs`] keeps long work in a durable store and runs it through the
//!   gateway's dispatch.
//! - [`progress`] shows long steps on a terminal.

pub mod build;
pub mod client;
pub mod cluster;
pub mod edge;
pub mod gateway;
pub mod http;
pub mod jobs;
pub mod manifest;
pub mod modules;
pub mod node;
pub mod plugin;
pub mod progress;
pub mod rpc;
pub mod runtime;
pub mod telemetry;
pub mod trust;
pub mod wire;
