//! API keys: the keys file (names, SHA-256 digests of the secrets, and
//! each key's limits) and looking a presented secret up in constant time.
//! The file never holds a secret, so reading it gives no access.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// What is wrong with a keys file, or with a change to it.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is not a valid keys file.
    #[error("{}: not a valid keys file: {detail}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A key with that name exists already.
    #[error("a key named '{0}' exists already; revoke it first or choose another name")]
    Duplicate(String),
    /// No key has that name.
    #[error("no key is named '{0}'")]
    Unknown(String),
    /// The name cannot be used.
    #[error("invalid key name '{0}': use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName(String),
}

/// One key as the file stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Who holds the key; logged and used as its identity, never secret.
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    /// Calls per second on average (absent: no rate limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Calls allowed at once above the average rate (default: one
    /// second's worth of `rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Calls running at once (absent: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// The keys file: `[[key]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Every key.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyEntry>,
}

impl KeysFile {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Self, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Io {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |detail: String| KeysError::Invalid {
            path: path.to_owned(),
            detail,
        };
        let file: KeysFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let mut names = std::collections::HashSet::new();
        for key in &file.keys {
            check_name(&key.name).map_err(|e| invalid(e.to_string()))?;
            if !names.insert(key.name.as_str()) {
                return Err(invalid(format!("the name '{}' appears twice", key.name)));
            }
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "key '{}': sha256 must be 64 hex digits",
                    key.name
                )));
            }
            if key.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                return Err(invalid(format!(
                    "key '{}': rate must be a positive number of calls per second",
                    key.name
                )));
            }
            if key.burst == Some(0) || key.concurrency == Some(0) {
                return Err(invalid(format!(
                    "key '{}': burst and concurrency must be at least 1",
                    key.name
                )));
            }
        }
        Ok(file)
    }

    /// Reads `path`, or an empty file when it does not exist yet.
    pub fn read_or_empty(path: &Path) -> Result<Self, KeysError> {
        if path.exists() {
            Self::read(path)
        } else {
            Ok(Self::default())
        }
    }

    /// Writes the file atomically (a temporary file renamed over it),
    /// readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), KeysError> {
        let io = |source| KeysError::Io {
            path: path.to_owned(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| KeysError::Invalid {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut temp, text.as_bytes()).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        temp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Adds a key for a new random secret and returns the secret.
    pub fn add(
        &mut self,
        name: &str,
        rate: Option<f64>,
        burst: Option<u32>,
        concurrency: Option<u32>,
    ) -> Result<String, KeysError> {
        check_name(name)?;
        if self.keys.iter().any(|k| k.name == name) {
            return Err(KeysError::Duplicate(name.to_owned()));
        }
        let secret = new_secret();
        self.keys.push(KeyEntry {
            name: name.to_owned(),
            sha256: digest_hex(&secret),
            rate,
            burst,
            concurrency,
        });
        Ok(secret)
    }

    /// Removes the key named `name`.
    pub fn revoke(&mut self, name: &str) -> Result<(), KeysError> {
        let before = self.keys.len();
        self.keys.retain(|k| k.name != name);
        if self.keys.len() == before {
            return Err(KeysError::Unknown(name.to_owned()));
        }
        Ok(())
    }

    /// The key whose digest matches `secret`. Every digest is compared,
    /// each in constant time, so the time taken says nothing about which
    /// key, or how much of one, matched.
    pub fn find(&self, secret: &str) -> Option<&KeyEntry> {
        let presented = Sha256::digest(secret.as_bytes());
        let mut found = None;
        for key in &self.keys {
            let mut stored = [0u8; 32];
            if decode_hex(&key.sha256, &mut stored).is_none() {
                continue;
            }
            if bool::from(stored.ct_eq(presented.as_slice())) {
                found = Some(key);
            }
        }
        found
    }
}

fn check_name(name: &str) -> Result<(), KeysError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(KeysError::BadName(name.to_owned()))
    }
}

/// A new secret: 32 random bytes as hex, after a prefix that makes it
/// easy to spot in a leaked file or log.
fn new_secret() -> String {
    use rand::RngExt;
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    format!("mk_{}", hex(&bytes))
}

/// Hex SHA-256 of a secret, as the keys file stores it.
pub fn digest_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str, out: &mut [u8; 32]) -> Option<()> {
    if text.len() != 64 {
        return None;
    }
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_found_by_its_secret_only() {
        let mut file = KeysFile::default();
        let alice = file.add("alice", Some(5.0), None, None).unwrap();
        let bob = file.add("bob", None, None, Some(2)).unwrap();
        assert_ne!(alice, bob);
        assert_eq!(file.find(&alice).unwrap().name, "alice");
        assert_eq!(file.find(&bob).unwrap().name, "bob");
        assert!(file.find("mk_wrong").is_none());
        assert!(file.find("").is_none());
        assert!(!file.keys.iter().any(|k| k.sha256.contains(&alice[3..])));
    }

    #[test]
    fn names_are_unique_and_plain() {
        let mut file = KeysFile::default();
        file.add("ci-bot", None, None, None).unwrap();
        assert!(matches!(
            file.add("ci-bot", None, None, None),
            Err(KeysError::Duplicate(_))
        ));
        assert!(matches!(
            file.add("a b", None, None, None),
            Err(KeysError::BadName(_))
        ));
        assert!(matches!(file.revoke("nobody"), Err(KeysError::Unknown(_))));
        file.revoke("ci-bot").unwrap();
        assert!(file.keys.is_empty());
    }

    #[test]
    fn the_file_round_trips_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let mut file = KeysFile::default();
        let secret = file.add("alice", Some(2.5), Some(10), Some(3)).unwrap();
        file.write(&path).unwrap();
        let read = KeysFile::read(&path).unwrap();
        assert_eq!(read, file);
        assert_eq!(read.find(&secret).unwrap().burst, Some(10));
        std::fs::write(&path, "[[key]]\nname = \"x\"\nsha256 = \"abc\"\n").unwrap();
        let error = KeysFile::read(&path).unwrap_err().to_string();
        assert!(error.contains("64 hex digits"), "{error}");
        std::fs::write(&path, "[[key]]\nname = \"x\"\n").unwrap();
        assert!(KeysFile::read(&path).is_err());
    }
}
