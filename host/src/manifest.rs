//! The metadata a madrpc module carries in a custom section, so a host can
//! recognize a module and list its methods without running guest code.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the custom section holding the JSON manifest.
pub const SECTION_NAME: &str = "madrpc.manifest";

/// Version of the guest ABI (exports, imports and their data layout). A host
/// refuses modules built for another ABI instead of failing at call time.
pub const ABI_VERSION: u32 = 1;

/// What a module says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The guest ABI the module was built for.
    pub abi: u32,
    /// The script the module was built from (its file name, for messages).
    pub script: String,
    /// The registered function names, in registration order.
    pub methods: Vec<String>,
    /// The functions registered with `{ cache: '60s' }`, and for how many
    /// milliseconds the gateway may serve their results from its cache.
    /// Modules built before the option existed have none, so no ABI change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache: BTreeMap<String, u64>,
}

/// What a gateway needs to know of a node's module to cache its results:
/// which build it is, and which of its functions are cacheable. Nodes send
/// it with their heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleSummary {
    /// Hex SHA-256 of the module's bytes: a new build (a new version) has
    /// another hash, so its calls never match the old one's cached results.
    pub hash: String,
    /// Cacheable methods and their time to live in milliseconds.
    #[serde(default)]
    pub cache: BTreeMap<String, u64>,
    /// The module's functions (absent from older nodes' announcements).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

impl ModuleSummary {
    /// The summary of the module `wasm`, whose manifest is `manifest`.
    pub fn of(wasm: &[u8], manifest: &Manifest) -> Self {
        use sha2::{Digest, Sha256};
        Self {
            hash: Sha256::digest(wasm)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
            cache: manifest.cache.clone(),
            methods: manifest.methods.clone(),
        }
    }

    /// Whether the hash is one (64 lowercase hex digits): a summary from
    /// the network that is not is ignored, and its node's results are not
    /// cached.
    pub fn is_well_formed(&self) -> bool {
        self.hash.len() == 64
            && self
                .hash
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

/// Why a module's manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a WebAssembly binary.
    #[error("not a WebAssembly module: {0}")]
    NotWasm(String),
    /// A valid module, but not one `madrpc build` produced.
    #[error(
        "not a madrpc module (it has no `{SECTION_NAME}` section); build one with `madrpc build script.js`"
    )]
    Missing,
    /// The section exists but does not decode.
    #[error("the module's madrpc manifest is corrupt: {0}")]
    Corrupt(String),
}

impl Manifest {
    /// Appends this manifest to `wasm` as a custom section.
    pub fn append_to(&self, wasm: &mut Vec<u8>) {
        let payload = serde_json::to_vec(self).expect("a manifest always serializes");
        let section = wasm_encoder::CustomSection {
            name: SECTION_NAME.into(),
            data: payload.into(),
        };
        wasm.push(wasm_encoder::SectionId::Custom as u8);
        wasm_encoder::Encode::encode(&section, wasm);
    }

    /// An empty module carrying the manifest of `script`, with the one
    /// method `m`: enough for code that reads manifests; it never runs.
    #[cfg(test)]
    pub(crate) fn test_module(script: &str) -> Vec<u8> {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        Manifest {
            abi: ABI_VERSION,
            script: script.into(),
            methods: vec!["m".into()],
            cache: Default::default(),
        }
        .append_to(&mut wasm);
        wasm
    }

    /// Reads the manifest of a module, checking on the way that the bytes are
    /// a WebAssembly binary.
    pub fn read(wasm: &[u8]) -> Result<Manifest, ManifestError> {
        if !wasmparser::Parser::is_core_wasm(wasm) {
            return Err(ManifestError::NotWasm(
                "it does not start with the WebAssembly magic number and version".into(),
            ));
        }
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            let payload = payload.map_err(|e| ManifestError::NotWasm(e.to_string()))?;
            if let wasmparser::Payload::CustomSection(section) = payload
                && section.name() == SECTION_NAME
            {
                return serde_json::from_slice(section.data())
                    .map_err(|e| ManifestError::Corrupt(e.to_string()));
            }
        }
        Err(ManifestError::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn round_trips_through_a_custom_section() {
        let manifest = Manifest {
            abi: ABI_VERSION,
            script: "app.js".into(),
            methods: vec!["add".into(), "echo".into()],
            cache: BTreeMap::from([("add".into(), 60_000)]),
        };
        let mut wasm = EMPTY_MODULE.to_vec();
        manifest.append_to(&mut wasm);
        assert_eq!(Manifest::read(&wasm).unwrap(), manifest);
    }

    #[test]
    fn a_manifest_without_cache_options_still_reads() {
        let manifest: Manifest =
            serde_json::from_str(r#"{"abi":1,"script":"a.js","methods":["x"]}"#).unwrap();
        assert!(manifest.cache.is_empty());
    }

    #[test]
    fn a_plain_module_is_not_a_madrpc_module() {
        assert!(matches!(
            Manifest::read(EMPTY_MODULE),
            Err(ManifestError::Missing)
        ));
    }

    #[test]
    fn text_is_not_wasm() {
        assert!(matches!(
            Manifest::read(b"console.log(1)"),
            Err(ManifestError::NotWasm(_))
        ));
    }

    #[test]
    fn a_truncated_module_is_reported() {
        let mut wasm = EMPTY_MODULE.to_vec();
        Manifest {
            abi: 1,
            script: "a.js".into(),
            methods: vec!["x".into()],
            cache: BTreeMap::new(),
        }
        .append_to(&mut wasm);
        wasm.truncate(wasm.len() - 3);
        assert!(matches!(
            Manifest::read(&wasm),
            Err(ManifestError::NotWasm(_))
        ));
    }
}
