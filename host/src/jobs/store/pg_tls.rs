//! TLS to PostgreSQL: what the `sslmode` and `sslrootcert` of a
//! `--jobs-store` URL ask for, on rustls with the `ring` provider (no
//! OpenSSL). The server's certificate is always verified, chain and name,
//! against the system's CA roots plus the `sslrootcert` file: encryption
//! without knowing who answers would hand the job queue to whoever sits on
//! the path.

use crate::jobs::model::StoreError;
use percent_encoding::percent_decode_str;
use std::path::PathBuf;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A `--jobs-store` URL made ready for `tokio_postgres::connect`.
#[derive(Clone)]
pub(super) struct Target {
    /// The URL without the parameters tokio-postgres does not know.
    pub url: String,
    /// The TLS connector with the trusted roots.
    pub tls: MakeRustlsConnect,
}

fn bad(message: String) -> StoreError {
    StoreError::Postgres(message)
}

impl Target {
    /// Reads `sslmode` and `sslrootcert` from `url`'s query, and loads the
    /// trusted roots.
    pub(super) fn parse(url: &str) -> Result<Self, StoreError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let mut root_cert = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(value).decode_utf8_lossy();
            match key {
                // `system` (libpq's name for the system's roots) adds
                // nothing: they are always trusted.
                "sslrootcert" if value == "system" => {}
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                "sslmode" => {
                    // tokio-postgres knows three modes; rustls always
                    // verifies the chain and the name, so libpq's two
                    // verifying modes are its `require`.
                    let mode = match value.as_ref() {
                        "disable" => "disable",
                        "allow" | "prefer" => "prefer",
                        "require" | "verify-ca" | "verify-full" => "require",
                        other => {
                            return Err(bad(format!(
                                "--jobs-store: sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                            )));
                        }
                    };
                    kept.push(format!("sslmode={mode}"));
                }
                _ => kept.push(pair.to_owned()),
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let config = crate::trust::client_config(root_cert.as_deref())
            .map_err(|e| bad(format!("--jobs-store sslrootcert: {e}")))?;
        Ok(Self {
            url,
            tls: MakeRustlsConnect::new(config),
        })
    }

    /// Why a connection failed, and what to do about it.
    pub(super) fn explain(&self, error: &tokio_postgres::Error) -> String {
        let reason = match (error.as_db_error(), std::error::Error::source(error)) {
            (Some(db), _) => db.message().to_owned(),
            (None, Some(source)) => format!("{error}: {source}"),
            (None, None) => error.to_string(),
        };
        let hint = if reason.contains("no encryption") {
            "the server takes only TLS connections; use sslmode=require (and sslrootcert=CA.pem for a private CA)"
        } else if reason.contains("does not support TLS") {
            "the server has TLS off; turn ssl on in postgresql.conf, or leave sslmode=require out on a private network"
        } else if reason.to_ascii_lowercase().contains("certificate") {
            "the server's TLS certificate is not trusted; name its CA with sslrootcert=/path/to/ca.pem in the URL"
        } else {
            "check --jobs-store and that the server runs"
        };
        format!("{reason}; {hint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_parameters_are_taken_out_and_the_rest_kept() {
        let target = Target::parse(
            "postgres://u@h:5432/db?application_name=a%20b&sslmode=verify-full&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            target.url,
            "postgres://u@h:5432/db?application_name=a%20b&sslmode=require&connect_timeout=5"
        );
        let plain = Target::parse("postgres://u@h/db?sslrootcert=system").unwrap();
        assert_eq!(plain.url, "postgres://u@h/db");
        assert!(Target::parse("postgres://u@h/db?sslmode=sometimes").is_err());
        let missing = Target::parse("postgres://u@h/db?sslrootcert=/nonexistent/ca.pem");
        assert!(
            matches!(missing, Err(StoreError::Postgres(m)) if m.contains("/nonexistent/ca.pem")),
            "a missing CA file is named"
        );
    }
}
