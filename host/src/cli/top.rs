//! `madrpc top [--url URL]`: a live view of a grid in the terminal. It
//! reads the gateway's (or `serve`'s) `/v1/status` every interval and
//! redraws in place: nodes and their state, calls per second, errors, and
//! a table of methods with their latency percentiles. `q` quits.

use super::edge::TrustArgs;
use super::top_status::Status;
use super::top_view::{self, Screen};
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `madrpc top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The gateway, or `serve`, to watch.
    #[arg(long, env = "MADRPC_URL", default_value = "http://127.0.0.1:8080/")]
    url: String,
    /// How often to refresh.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    interval: humantime::Duration,
    #[command(flatten)]
    trust: TrustArgs,
}

/// Watches the grid until `q`, Esc or Ctrl-C.
pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    if !(args.url.starts_with("http://") || args.url.starts_with("https://")) {
        anyhow::bail!(
            "--url must be an http:// or https:// URL, for example http://127.0.0.1:8080/ (got '{}')",
            args.url
        );
    }
    args.trust.apply()?;
    let status_url = format!("{}/v1/status", args.url.trim_end_matches('/'));
    let interval: Duration = args.interval.into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = runtime.block_on(async { madrpc::http::client() });
    let mut screen = Screen::new(args.url.clone());
    let mut terminal = ratatui::try_init()?;
    let outcome = (|| -> anyhow::Result<()> {
        let mut next_fetch = Instant::now();
        loop {
            if Instant::now() >= next_fetch {
                let fetched = runtime.block_on(fetch(&http, &status_url));
                screen.update(fetched);
                next_fetch = Instant::now() + interval;
            }
            terminal.draw(|frame| top_view::draw(frame, &screen))?;
            let wait = next_fetch.saturating_duration_since(Instant::now());
            if event::poll(wait)?
                && let Event::Key(key) = event::read()?
                && key.kind == KeyEventKind::Press
            {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                    return Ok(());
                }
            }
        }
    })();
    ratatui::restore();
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// One reading of `/v1/status`, or why there is none.
async fn fetch(http: &madrpc::http::HttpClient, url: &str) -> Result<Status, String> {
    let (status, _, body) = madrpc::http::get(http, url, Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "{url} answered HTTP {status}; is this a madrpc gateway or serve?"
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} did not answer a madrpc status ({e})"))
}
