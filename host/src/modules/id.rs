//! The name of a module version: the SHA-256 of its bytes. Two builds of
//! the same script are byte-identical, so they get the same id; any change
//! gives another.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The header that pins a call to a module version (the id in hex). The
/// gateway sets it on every call it forwards once a version is deployed,
/// and a node sets it on the sub-calls of a call, so a call and all its
/// sub-calls run on the version the call started on.
pub const MODULE_HEADER: &str = "x-madrpc-module";

/// A module version: the SHA-256 of the module's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId([u8; 32]);

impl ModuleId {
    /// The id of the module `wasm`.
    pub fn of(wasm: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        Self(Sha256::digest(wasm).into())
    }

    /// Reads an id written as 64 lowercase hex digits.
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            *byte = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Self(bytes))
    }

    /// The first 12 hex digits, as people see a version.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleId({})", self.short())
    }
}

impl Serialize for ModuleId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModuleId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("a module id is 64 lowercase hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_hex() {
        let id = ModuleId::of(b"module");
        let hex = id.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(ModuleId::parse(&hex), Some(id));
        assert_eq!(id.short(), hex[..12]);
        assert_eq!(ModuleId::parse(&hex.to_uppercase()), None);
        assert_eq!(ModuleId::parse(&hex[1..]), None);
        assert_eq!(ModuleId::parse(&format!("{}g", &hex[1..])), None);
    }
}
