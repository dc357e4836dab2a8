//! A loaded module: compiled, linked and ready to instantiate per call.

use super::error::LoadError;
use super::state::CallState;
use crate::manifest::{ABI_VERSION, Manifest};
use wasmtime::{InstancePre, ModuleExport};

/// A module ready to serve calls. Cheap to share between threads.
#[derive(Clone)]
pub struct LoadedModule {
    pub(crate) manifest: Manifest,
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) exports: GuestExports,
}

impl LoadedModule {
    /// What the module says about itself (script name, methods).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The registered function names.
    pub fn methods(&self) -> &[String] {
        &self.manifest.methods
    }
}

/// Pre-resolved handles of the guest ABI exports, so a call does not look
/// them up by name.
#[derive(Clone)]
pub(crate) struct GuestExports {
    pub(crate) memory: ModuleExport,
    pub(crate) alloc: ModuleExport,
    pub(crate) call: ModuleExport,
}

impl GuestExports {
    pub(crate) fn resolve(module: &wasmtime::Module) -> Result<Self, LoadError> {
        let find = |name: &str| {
            module.get_export_index(name).ok_or_else(|| {
                LoadError::Invalid(format!(
                    "it does not export `{name}`; rebuild it with `madrpc build`"
                ))
            })
        };
        Ok(Self {
            memory: find("memory")?,
            alloc: find("madrpc_alloc")?,
            call: find("madrpc_call")?,
        })
    }
}

/// Checks the manifest before anything is compiled.
pub(crate) fn check_manifest(wasm: &[u8]) -> Result<Manifest, LoadError> {
    let manifest = Manifest::read(wasm)?;
    if manifest.abi != ABI_VERSION {
        return Err(LoadError::AbiMismatch {
            found: manifest.abi,
            expected: ABI_VERSION,
        });
    }
    Ok(manifest)
}
