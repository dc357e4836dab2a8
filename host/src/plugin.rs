//! The guest plugin (QuickJS plus the madrpc guest ABI), built from
//! `guest-sdk/` by the build script and embedded in the binary.

/// The plugin module that `madrpc build` initializes with a user's script.
pub const PLUGIN_WASM: &[u8] = include_bytes!(env!("MADRPC_PLUGIN_WASM"));
