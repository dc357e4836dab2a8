//! Waiting for Ctrl-C or SIGTERM: the first one starts a drain, a second
//! one ends the process at once.

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM, and from then on
/// exits the process on the next one.
pub async fn shutdown_requested() {
    signalled().await;
    tracing::info!(
        "shutting down: no new calls; letting calls in flight finish (signal again to exit at once)"
    );
    tokio::spawn(async {
        signalled().await;
        tracing::warn!("second signal: exiting without waiting for calls in flight");
        std::process::exit(130);
    });
}

/// Completes on the next SIGINT or SIGTERM.
async fn signalled() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
