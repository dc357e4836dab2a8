//! How a sub-call's budget travels over HTTP: request headers that the
//! gateway forwards and nodes honor. They can only tighten a call's limits.
//! With them travel the name of the API key a call tree is attributed to,
//! and the request id and W3C trace context every hop logs.

use super::RpcError;
use crate::modules::{MODULE_HEADER, ModuleId};
use crate::telemetry::{REQUEST_ID_HEADER, RequestId, TRACEPARENT_HEADER, TraceParent};
use axum::http::HeaderMap;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The call's depth in a `madrpc.call` tree (absent: 0).
pub const DEPTH_HEADER: &str = "x-madrpc-depth";
/// Milliseconds left before the parent's deadline (absent: no inherited
/// deadline).
pub const DEADLINE_HEADER: &str = "x-madrpc-deadline-ms";

/// The name of the API key a call (and its sub-calls) is attributed to. The
/// gateway sends it to nodes, and nodes send it back with their sub-calls;
/// it is believed only on requests that carry the cluster token.
pub const KEY_NAME_HEADER: &str = "x-madrpc-key-name";

/// The call tree a sub-call belongs to and what the tree had left when
/// the sub-call was sent: `ID,CALLS,FUEL`. A receiving process never gives
/// the tree more than its own `--max-tree-*` limits.
pub const TREE_HEADER: &str = "x-madrpc-tree";

/// Larger limits a job's call is granted: `DEADLINE_MS,FUEL`. Only the
/// gateway's job worker sets it, and nodes believe it only on requests that
/// carry the cluster token; a client's header is never read.
pub const GRANT_HEADER: &str = "x-madrpc-job-grant";

/// Deepest depth a header may claim: far above any `--max-depth`, and far
/// below where adding one could wrap.
pub const MAX_DEPTH_HEADER: u32 = 1024;

/// Most distinct key names kept (see [`KeyName`]).
const MAX_KEY_NAMES: usize = 4096;

/// The name of an API key, kept once for the life of the process so that a
/// budget stays a small `Copy` value. Key names come from the keys file or
/// from member nodes, and are few; past [`MAX_KEY_NAMES`] new names are not
/// attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyName(&'static str);

impl KeyName {
    /// The interned name, or `None` for a name that is not a key name
    /// (1 to 64 letters, digits, '-', '_' or '.').
    pub fn intern(name: &str) -> Option<Self> {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return None;
        }
        static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
        let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
        let names = names.get_or_insert_with(HashSet::new);
        if let Some(known) = names.get(name) {
            return Some(Self(known));
        }
        if names.len() >= MAX_KEY_NAMES {
            return None;
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(leaked);
        Some(Self(leaked))
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// The key a request was admitted with, as the edge layer attaches it to
/// the request for the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct CallerKey(pub KeyName);

/// Attached by the edge layer to a request whose sender may speak for a
/// call tree: a node of the cluster (it presented the cluster token), or
/// any sender where membership is open. Without it, the depth, tree and
/// module headers are checked and then set aside: a client's call starts
/// a tree at depth 0 on the current module version, so it cannot claim a
/// sub-call's place in admission or spend another tree's budget.
#[derive(Debug, Clone, Copy)]
pub struct TreeMember;

/// The deadline and fuel a job's call runs under instead of the node's
/// per-call ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The call's own deadline.
    pub deadline: Duration,
    /// The call's own fuel.
    pub fuel: u64,
}

/// A tree's identity and what it had left, as it travels with a sub-call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRef {
    /// Random identity of the tree.
    pub id: u64,
    /// Calls the tree may still make.
    pub calls: u64,
    /// Fuel the tree may still burn.
    pub fuel: u64,
}

/// The budget a call arrives with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallBudget {
    /// Depth in the call tree.
    pub depth: u32,
    /// Inherited absolute deadline.
    pub deadline: Option<Instant>,
    /// The API key the call tree is attributed to, if any.
    pub key: Option<KeyName>,
    /// The call tree the call belongs to (absent: it starts a new one).
    pub tree: Option<TreeRef>,
    /// The client's request id, shared by every call of the tree.
    pub request_id: Option<RequestId>,
    /// The W3C trace context, with the sending hop as parent.
    pub trace: Option<TraceParent>,
    /// Larger limits granted to a job's call (never to its sub-calls).
    pub grant: Option<Grant>,
    /// The module version the call runs on; its sub-calls run on it too.
    /// Absent: whatever the node serves (a grid without deploys).
    pub module: Option<ModuleId>,
}

impl CallBudget {
    /// Reads the depth and deadline headers. A value that is not a number,
    /// or a depth past [`MAX_DEPTH_HEADER`], is refused rather than ignored
    /// or wrapped: ignoring a depth would reset it, raising the budget.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, RpcError> {
        let number = |name: &str| -> Result<Option<u64>, RpcError> {
            let Some(value) = headers.get(name) else {
                return Ok(None);
            };
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| {
                    RpcError::invalid_request(format!("the {name} header must be a whole number"))
                })
        };
        let depth = match number(DEPTH_HEADER)? {
            None => 0,
            Some(depth) if depth <= u64::from(MAX_DEPTH_HEADER) => depth as u32,
            Some(depth) => {
                return Err(RpcError::invalid_request(format!(
                    "the {DEPTH_HEADER} header says {depth}, past the largest depth of {MAX_DEPTH_HEADER}"
                )));
            }
        };
        let deadline = number(DEADLINE_HEADER)?.map(|ms| {
            // A deadline past any call's own is as good as none; capping it
            // keeps the addition from overflowing.
            Instant::now() + Duration::from_millis(ms.min(86_400_000))
        });
        let tree = match headers.get(TREE_HEADER) {
            None => None,
            Some(value) => Some(parse_tree(value.to_str().unwrap_or("")).ok_or_else(|| {
                RpcError::invalid_request(format!(
                    "the {TREE_HEADER} header must be three whole numbers: ID,CALLS,FUEL"
                ))
            })?),
        };
        // The edge normalizes both before a handler sees them; one that is
        // not valid here is left out rather than refusing the call.
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Ok(Self {
            depth,
            deadline,
            key: None,
            tree,
            request_id: text(REQUEST_ID_HEADER).and_then(RequestId::parse),
            trace: text(TRACEPARENT_HEADER).and_then(TraceParent::parse),
            grant: None,
            module: match text(MODULE_HEADER) {
                None => None,
                Some(id) => Some(ModuleId::parse(id).ok_or_else(|| {
                    RpcError::invalid_request(format!(
                        "the {MODULE_HEADER} header must be a module id: 64 lowercase hex digits"
                    ))
                })?),
            },
        })
    }

    /// Takes the grant a gateway sent with [`GRANT_HEADER`]. Only for
    /// requests that carried the cluster token.
    pub fn with_grant_from(mut self, headers: &HeaderMap) -> Self {
        self.grant = headers
            .get(GRANT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(','))
            .and_then(|(ms, fuel)| {
                Some(Grant {
                    deadline: Duration::from_millis(ms.trim().parse::<u64>().ok()?.min(86_400_000)),
                    fuel: fuel.trim().parse().ok()?,
                })
            });
        self
    }

    /// Takes the key name a member sent with [`KEY_NAME_HEADER`]. Only for
    /// requests that carried the cluster token.
    pub fn with_key_from(mut self, headers: &HeaderMap) -> Self {
        self.key = headers
            .get(KEY_NAME_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(KeyName::intern);
        self
    }

    /// The headers that carry this budget onward, the deadline as the time
    /// left now.
    pub fn to_headers(self) -> Vec<(&'static str, String)> {
        if self == Self::default() {
            return Vec::new();
        }
        let mut headers = vec![(DEPTH_HEADER, self.depth.to_string())];
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            headers.push((DEADLINE_HEADER, left.as_millis().to_string()));
        }
        if let Some(key) = self.key {
            headers.push((KEY_NAME_HEADER, key.as_str().to_owned()));
        }
        if let Some(grant) = self.grant {
            headers.push((
                GRANT_HEADER,
                format!("{},{}", grant.deadline.as_millis(), grant.fuel),
            ));
        }
        if let Some(tree) = self.tree {
            headers.push((
                TREE_HEADER,
                format!("{},{},{}", tree.id, tree.calls, tree.fuel),
            ));
        }
        if let Some(id) = self.request_id {
            headers.push((REQUEST_ID_HEADER, id.as_str().to_owned()));
        }
        if let Some(trace) = self.trace {
            headers.push((TRACEPARENT_HEADER, trace.to_string()));
        }
        if let Some(module) = self.module {
            headers.push((MODULE_HEADER, module.to_string()));
        }
        headers
    }

    /// Time left, if a deadline was inherited.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

fn parse_tree(text: &str) -> Option<TreeRef> {
    let mut numbers = text.split(',').map(|n| n.trim().parse::<u64>().ok());
    let tree = TreeRef {
        id: numbers.next()??,
        calls: numbers.next()??,
        fuel: numbers.next()??,
    };
    numbers.next().is_none().then_some(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_headers() {
        let budget = CallBudget {
            depth: 3,
            deadline: Some(Instant::now() + Duration::from_millis(500)),
            key: KeyName::intern("alice"),
            tree: Some(TreeRef {
                id: 42,
                calls: 9,
                fuel: 1000,
            }),
            request_id: RequestId::parse("req-1"),
            trace: TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            grant: None,
            module: Some(ModuleId::of(b"v1")),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in budget.to_headers() {
            headers.insert(name, value.parse().unwrap());
        }
        let read = CallBudget::from_headers(&headers).unwrap();
        assert_eq!(read.depth, 3);
        assert_eq!(read.tree, budget.tree);
        assert_eq!(read.request_id, budget.request_id);
        assert_eq!(read.trace, budget.trace);
        assert_eq!(read.module, budget.module);
        assert_eq!(read.key, None, "a key name is believed only on request");
        assert_eq!(read.with_key_from(&headers).key.unwrap().as_str(), "alice");
        let left = read.remaining().unwrap();
        assert!(left <= Duration::from_millis(500) && left > Duration::from_millis(400));
    }

    #[test]
    fn absent_headers_mean_no_budget_and_bad_ones_are_refused() {
        assert_eq!(
            CallBudget::from_headers(&HeaderMap::new()).unwrap(),
            CallBudget::default()
        );
        for (name, value) in [
            (DEPTH_HEADER, "lots"),
            (DEPTH_HEADER, "4294967295"),
            (DEPTH_HEADER, "-1"),
            (DEADLINE_HEADER, "soon"),
            (TREE_HEADER, "1,2"),
            (TREE_HEADER, "1,2,3,4"),
            (TREE_HEADER, "a,b,c"),
            (MODULE_HEADER, "v2"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name, value.parse().unwrap());
            let error = CallBudget::from_headers(&headers).unwrap_err();
            assert_eq!(error.kind(), Some("invalid_request"), "{name}: {value}");
        }
    }

    #[test]
    fn key_names_are_interned_and_checked() {
        let a = KeyName::intern("team-a").unwrap();
        assert_eq!(KeyName::intern("team-a"), Some(a));
        assert!(std::ptr::eq(
            a.as_str(),
            KeyName::intern("team-a").unwrap().as_str()
        ));
        assert_eq!(KeyName::intern("no spaces"), None);
        assert_eq!(KeyName::intern(""), None);
    }
}
