//! `serve --watch`: rebuild the script when it changes and deploy the new
//! version to the grid the way `madrpc deploy` does, so calls switch
//! without failing. A build error is printed with its `file:line:column`
//! and the version serving stays.
//!
//! The script is polled (its bytes, four times a second) rather than
//! watched through inotify: editors save by writing in place, by renaming
//! a new file over the old one, or in several writes, and comparing the
//! content catches all of them with no dependency and no false rebuild on
//! a mere touch.

use madrpc::gateway::{Deployments, Registry};
use madrpc::modules::{ModuleId, Version};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the script is read.
const POLL: Duration = Duration::from_millis(250);

/// How long the script must stay unchanged before it is built: an editor
/// writing in several steps has finished by then.
const SETTLE: Duration = Duration::from_millis(100);

/// Watches `script` until the task is aborted.
pub async fn run(script: PathBuf, deployments: Arc<Deployments>, registry: Arc<Registry>) {
    let mut served = read(&script).await;
    loop {
        tokio::time::sleep(POLL).await;
        let Some(seen) = read(&script).await else {
            // Missing for a moment while an editor renames a file over it.
            continue;
        };
        if Some(seen) == served {
            continue;
        }
        tokio::time::sleep(SETTLE).await;
        if read(&script).await != Some(seen) {
            continue;
        }
        served = Some(seen);
        rebuild(&script, &deployments, &registry).await;
    }
}

/// The id of the script's bytes now, or `None` when it cannot be read.
async fn read(script: &Path) -> Option<ModuleId> {
    tokio::fs::read(script)
        .await
        .ok()
        .map(|bytes| ModuleId::of(&bytes))
}

/// Builds the script and deploys it; on a build error the old version
/// keeps serving.
async fn rebuild(script: &Path, deployments: &Deployments, registry: &Registry) {
    eprintln!("{} changed; rebuilding", script.display());
    let path = script.to_owned();
    let built = match tokio::task::spawn_blocking(move || madrpc::build::build_file(&path)).await {
        Ok(Ok(built)) => built,
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            eprintln!("the previous version keeps serving; save the script again to retry");
            return;
        }
        Err(error) => {
            eprintln!("error: the build stopped: {error}");
            return;
        }
    };
    let version = match Version::check(built.wasm.into()) {
        Ok(version) => Arc::new(version),
        Err(error) => {
            eprintln!("error: {error}");
            return;
        }
    };
    match deployments.activate(version, registry, "watch").await {
        Ok(done) => println!(
            "deployed {} ({}): methods: {}",
            done.id.short(),
            done.script,
            done.methods.join(", ")
        ),
        Err(error) => eprintln!("error: {error}; the previous version keeps serving"),
    }
}
