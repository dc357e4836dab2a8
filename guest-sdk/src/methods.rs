//! The registered functions, looked up by name from Rust.
//!
//! The table is built once at the end of initialization and snapshotted
//! with the heap. A call finds its function here instead of through a JS
//! property lookup, which would intern the name in QuickJS's atom table:
//! for a large script that table is big and far from the rest of what a
//! call touches, and every page a call touches is a page to check when the
//! sandbox's memory is reset.

use crate::error::GuestError;
use javy_plugin_api::javy::quickjs::{Ctx, Function, Object, Persistent, Value};
use std::collections::BTreeMap;

/// Every registered function, by name.
pub struct Methods {
    /// Names in registration order, for listings and error messages.
    names: Vec<String>,
    functions: BTreeMap<String, Persistent<Function<'static>>>,
}

impl Methods {
    /// Reads the prelude's registry once the script has run.
    pub fn from_registry<'js>(ctx: &Ctx<'js>, registry: &Object<'js>) -> Result<Self, GuestError> {
        let mut names = Vec::new();
        let mut functions = BTreeMap::new();
        for entry in registry.props::<String, Value<'js>>() {
            let (name, value) = entry.map_err(|e| GuestError::from_js(ctx, e))?;
            let function = value.into_function().ok_or_else(|| {
                GuestError::internal(format!("'{name}' is registered but is not a function"))
            })?;
            functions.insert(name.clone(), Persistent::save(ctx, function));
            names.push(name);
        }
        Ok(Self { names, functions })
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The function registered as `method`, in `ctx`.
    pub fn get<'js>(&self, ctx: &Ctx<'js>, method: &str) -> Result<Function<'js>, GuestError> {
        let function = self
            .functions
            .get(method)
            .ok_or_else(|| GuestError::method_not_found(method, self.names.clone()))?;
        function
            .clone()
            .restore(ctx)
            .map_err(|e| GuestError::from_js(ctx, e))
    }
}
