//! TLS trust shared by every HTTP client of the process (gateway to node,
//! node to gateway, `madrpc call`) and the PEM reading the listeners use:
//! rustls on the `ring` provider, which needs no C toolchain beyond what the
//! build already has (unlike aws-lc).

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Why a certificate, key or CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file holds no PEM certificate.
    #[error("{}: no PEM certificate found ({detail}); pass a PEM file with -----BEGIN CERTIFICATE-----", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader reported.
        detail: String,
    },
    /// The file holds no PEM private key.
    #[error("{}: no PEM private key found ({detail}); pass a PKCS#8, PKCS#1 or SEC1 key in PEM", .path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM reader reported.
        detail: String,
    },
    /// rustls refused the certificate and key together.
    #[error("the certificate {} and key {} do not make a TLS configuration: {source}", .cert.display(), .key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// A CA certificate could not be added to the trust roots.
    #[error("{}: not a usable CA certificate: {source}", .path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// The rustls crypto provider: `ring`, which needs no C toolchain beyond
/// what the build already has (unlike aws-lc).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let no_cert = |detail: String| TlsError::NoCertificate {
        path: path.to_owned(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| no_cert(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| no_cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(no_cert("the file is empty".into()));
    }
    Ok(certs)
}

/// A client configuration trusting the system's roots, plus `ca` when
/// given (for a private CA or a self-signed certificate).
pub fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system CA certificate could not be read");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(ca) = ca {
        for cert in certificates(ca)? {
            roots.add(cert).map_err(|source| TlsError::BadCa {
                path: ca.to_owned(),
                source,
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::BadCa {
            path: ca.map(Path::to_owned).unwrap_or_default(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The client configuration of this process, set once by [`trust_ca`].
static CLIENT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Makes every HTTP client of this process also trust the CA in `ca`.
/// Call it at start, before the first client is made; later calls change
/// nothing.
pub fn trust_ca(ca: &Path) -> Result<(), TlsError> {
    let config = Arc::new(client_config(Some(ca))?);
    if CLIENT.set(config).is_err() {
        tracing::warn!(ca = %ca.display(), "the TLS trust roots were already set; ignoring --ca");
    }
    Ok(())
}

/// The TLS client configuration every HTTP client of this process uses.
pub fn client_tls() -> Arc<rustls::ClientConfig> {
    CLIENT
        .get_or_init(|| {
            Arc::new(
                client_config(None).expect("the ring provider supports the default TLS versions"),
            )
        })
        .clone()
}
