//! Content-addressed module versions: what `madrpc deploy` ships. A
//! version is named by the SHA-256 of its bytes ([`ModuleId`]); the
//! gateway keeps the versions it has served on disk ([`Store`]) with the
//! current one and the ones before it, so a restart serves the deployed
//! version and a rollback has somewhere to go. Nodes fetch versions from
//! their gateway by id.

mod id;
mod store;

pub use id::{MODULE_HEADER, ModuleId};
pub use store::{KEPT_VERSIONS, Store, StoreError, Version};
