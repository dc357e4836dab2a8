//! The error codes madrpc answers with. The first five are the JSON-RPC 2.0
//! specification's; the rest are madrpc's own, in the range the
//! specification reserves for implementations (-32000 to -32099). The README
//! documents the table.

/// The body is not valid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// No function is registered under that name.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The params are not an array or object, or the function cannot take them.
pub const INVALID_PARAMS: i64 = -32602;
/// A failure inside madrpc itself.
pub const INTERNAL_ERROR: i64 = -32603;

/// The JavaScript function threw, or its Promise rejected.
pub const GUEST_THREW: i64 = -32000;
/// The call used up its CPU budget (fuel).
pub const FUEL_EXHAUSTED: i64 = -32001;
/// The call exceeded its memory limit.
pub const MEMORY_EXCEEDED: i64 = -32002;
/// The call exceeded its deadline.
pub const DEADLINE_EXCEEDED: i64 = -32003;
/// The call recursed too deeply.
pub const STACK_OVERFLOW: i64 = -32004;
/// The result has no JSON form, or its Promise can never settle.
pub const BAD_RESULT: i64 = -32005;
/// The guest stopped abnormally for another reason.
pub const GUEST_CRASHED: i64 = -32006;
/// The body, params or result is larger than allowed.
pub const PAYLOAD_TOO_LARGE: i64 = -32007;
/// The batch has more entries than allowed.
pub const BATCH_TOO_LARGE: i64 = -32008;
/// Every node that could take the call is busy; retry after a moment.
pub const OVERLOADED: i64 = -32010;
/// The gateway has no healthy node to send the call to.
pub const NO_HEALTHY_NODE: i64 = -32011;
/// The node running the call failed, and so did the retry.
pub const NODE_FAILED: i64 = -32012;
/// A `madrpc.call` chain went deeper than allowed.
pub const CALL_DEPTH_EXCEEDED: i64 = -32020;
/// A call made more sub-calls than allowed.
pub const TOO_MANY_SUBCALLS: i64 = -32021;
/// A call tree used up the calls or fuel it shares.
pub const TREE_BUDGET_EXCEEDED: i64 = -32022;
/// The request carries no valid credential: an API key at the gateway, the
/// cluster token at a node (HTTP 401).
pub const UNAUTHORIZED: i64 = -32030;
/// The caller went over its rate or concurrency limit; retry after the
/// number of seconds in `Retry-After` (HTTP 429).
pub const RATE_LIMITED: i64 = -32031;
