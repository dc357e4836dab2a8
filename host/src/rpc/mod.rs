//! JSON-RPC 2.0 as gateway, node and client speak it: the request codec,
//! the response writer, the error table and the HTTP endpoint.

mod budget;
mod cache_hint;
pub mod codes;
mod endpoint;
mod error;
pub mod openrpc;
mod request;
mod response;

pub use budget::{
    CallBudget, CallerKey, DEADLINE_HEADER, DEPTH_HEADER, GRANT_HEADER, Grant, KEY_NAME_HEADER,
    KeyName, TreeMember, TreeRef,
};
pub use cache_hint::{CACHE_HEADER, CacheHint, CacheOutcome, Claim};
pub use endpoint::{CallRequest, Dispatch, EndpointLimits, router};
pub(crate) use endpoint::{body_error, error_response};
pub use error::RpcError;
pub use request::{Call, Entry, Incoming, parse};
pub use response::{Reply, write_batch, write_reply};
