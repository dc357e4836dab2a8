//! The job stores, one file each, chosen by `--jobs-store`.

mod embedded;
mod pg_tls;
mod postgres;

pub use embedded::Embedded;
pub use postgres::Postgres;

use super::model::{JobStore, StoreError, StoreResult};
use std::path::Path;
use std::sync::Arc;

/// Opens the store `spec` names: a `postgres://` URL, or (none) the
/// embedded store under `data_dir`.
pub async fn open(spec: Option<&str>, data_dir: &Path) -> StoreResult<Arc<dyn JobStore>> {
    match spec {
        None | Some("embedded") => {
            let dir = data_dir.to_owned();
            let store = tokio::task::spawn_blocking(move || Embedded::open(&dir))
                .await
                .map_err(|e| StoreError::Embedded(e.to_string()))??;
            Ok(Arc::new(store))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(Postgres::connect(url).await?))
        }
        Some(other) => Err(StoreError::Postgres(format!(
            "--jobs-store '{other}' is neither 'embedded' nor a postgres:// URL"
        ))),
    }
}
