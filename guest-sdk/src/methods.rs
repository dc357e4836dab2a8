//! The registered functions, looked up by name from Rust.
//!
//! A call finds its function here instead of through a JS property lookup,
//! which would intern the name in QuickJS's atom table: for a large script
//! that table is big and far from the rest of what a call touches, and
//! every page a call touches is a page to check when the sandbox's memory
//! is reset after the call. For the same reason the table's memory is
//! reserved before the script is compiled, so it sits beside the runtime's
//! own data rather than in whatever gap the script leaves in the heap.

use crate::error::GuestError;
use javy_plugin_api::javy::quickjs::{Ctx, Function, Object, Persistent, Value};
use std::ops::Range;

/// Methods the reserved table holds before it must grow.
const RESERVED_METHODS: usize = 256;
/// Bytes of names the reserved table holds before it must grow.
const RESERVED_NAME_BYTES: usize = 8 << 10;

/// Every registered function, by name.
pub struct Methods {
    /// All names back to back, in registration order.
    names: String,
    /// Each function and where its name is in `names`, in registration
    /// order.
    entries: Vec<(Range<usize>, Persistent<Function<'static>>)>,
    /// Indices into `entries`, sorted by name.
    by_name: Vec<usize>,
}

impl Methods {
    /// An empty table with its memory reserved; call before the script is
    /// compiled (see the module docs).
    pub fn reserve() -> Self {
        Self {
            names: String::with_capacity(RESERVED_NAME_BYTES),
            entries: Vec::with_capacity(RESERVED_METHODS),
            by_name: Vec::with_capacity(RESERVED_METHODS),
        }
    }

    /// Fills the table from the prelude's registry once the script has run.
    pub fn fill<'js>(&mut self, ctx: &Ctx<'js>, registry: &Object<'js>) -> Result<(), GuestError> {
        for entry in registry.props::<String, Value<'js>>() {
            let (name, value) = entry.map_err(|e| GuestError::from_js(ctx, e))?;
            let function = value.into_function().ok_or_else(|| {
                GuestError::internal(format!("'{name}' is registered but is not a function"))
            })?;
            let start = self.names.len();
            self.names.push_str(&name);
            self.entries
                .push((start..self.names.len(), Persistent::save(ctx, function)));
        }
        self.by_name = (0..self.entries.len()).collect();
        let names = &self.names;
        let entries = &self.entries;
        self.by_name
            .sort_unstable_by_key(|&i| &names[entries[i].0.clone()]);
        Ok(())
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(range, _)| self.names[range.clone()].to_owned())
            .collect()
    }

    /// Whether no function is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The function registered as `method`, in `ctx`.
    pub fn get<'js>(&self, ctx: &Ctx<'js>, method: &str) -> Result<Function<'js>, GuestError> {
        let found = self
            .by_name
            .binary_search_by(|&i| self.names[self.entries[i].0.clone()].cmp(method))
            .map_err(|_| GuestError::method_not_found(method, self.names()))?;
        self.entries[self.by_name[found]]
            .1
            .clone()
            .restore(ctx)
            .map_err(|e| GuestError::from_js(ctx, e))
    }
}

/// The cacheable functions and their time to live in milliseconds, from
/// the prelude's record of `madrpc.register(name, fn, { cache })`.
pub fn cache_ttls<'js>(
    ctx: &Ctx<'js>,
    ttls: &Object<'js>,
) -> Result<std::collections::BTreeMap<String, u64>, GuestError> {
    ttls.props::<String, f64>()
        .map(|entry| {
            let (name, ms) = entry.map_err(|e| GuestError::from_js(ctx, e))?;
            Ok((name, ms as u64))
        })
        .collect()
}
