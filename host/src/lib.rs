//! madrpc: plain JavaScript functions, precompiled to WebAssembly and run in
//! fresh sandboxes under hard limits, on one machine or a grid of them.
//!
//! - [`build`] turns a script into a pre-initialized module.
//! - [`runtime`] loads modules and runs every call in a fresh instance.
//! - [`manifest`] is the metadata a module carries about itself.

pub mod build;
pub mod manifest;
pub mod plugin;
pub mod runtime;
