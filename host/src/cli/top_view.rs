//! What `madrpc top` draws: a header with the grid's state, calls per
//! second over the last minute, the nodes, the methods and the last
//! errors. It keeps the previous reading to turn counts into rates.

use super::top_status::{MethodCalls, Status};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use std::collections::BTreeMap;
use std::time::Instant;

/// Seconds of calls the sparkline shows.
const SPARK_SECONDS: u64 = 60;

/// The screen's state between redraws.
pub(super) struct Screen {
    url: String,
    status: Option<Status>,
    error: Option<String>,
    previous: Option<(Instant, BTreeMap<String, MethodCalls>)>,
    rates: BTreeMap<String, f64>,
}

impl Screen {
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            status: None,
            error: None,
            previous: None,
            rates: BTreeMap::new(),
        }
    }

    /// Takes a new reading; a failed one keeps the last good reading on
    /// screen under the error.
    pub(super) fn update(&mut self, reading: Result<Status, String>) {
        match reading {
            Ok(status) => {
                let now = Instant::now();
                if let Some((at, before)) = &self.previous {
                    let seconds = now.duration_since(*at).as_secs_f64().max(0.001);
                    self.rates = status
                        .calls
                        .methods
                        .iter()
                        .map(|(name, m)| {
                            let was = before.get(name).map_or(0, |b| b.call_count);
                            (
                                name.clone(),
                                m.call_count.saturating_sub(was) as f64 / seconds,
                            )
                        })
                        .collect();
                }
                self.previous = Some((now, status.calls.methods.clone()));
                self.status = Some(status);
                self.error = None;
            }
            Err(error) => self.error = Some(error),
        }
    }
}

fn latency(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Draws the whole screen.
pub(super) fn draw(frame: &mut Frame, screen: &Screen) {
    let [header, spark, middle, errors] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(5),
        Constraint::Min(6),
        Constraint::Length(7),
    ])
    .areas(frame.area());
    let dim = Style::default().fg(Color::DarkGray);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let Some(status) = &screen.status else {
        let text = screen
            .error
            .clone()
            .unwrap_or_else(|| "connecting…".to_owned());
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(vec![
                    Span::styled("madrpc top ", bold),
                    Span::raw(&screen.url),
                ]),
                Line::from(Span::styled(text, Style::default().fg(Color::Red))),
                Line::from(Span::styled("q quits", dim)),
            ]),
            header,
        );
        return;
    };

    let (state, color) = if status.draining {
        ("draining", Color::Yellow)
    } else if status.ready {
        ("ready", Color::Green)
    } else {
        ("not ready", Color::Red)
    };
    let last: Vec<u64> = (0..10)
        .map(|back| {
            let at = status.history.now.saturating_sub(back);
            status
                .history
                .seconds
                .iter()
                .find(|s| s.at == at)
                .map_or(0, |s| s.calls)
        })
        .collect();
    let rate = last.iter().sum::<u64>() as f64 / last.len() as f64;
    let failed = status.calls.failed_requests;
    let total = status.calls.total_requests;
    let up = status.nodes.iter().filter(|n| n.available).count();
    let module = status
        .modules
        .iter()
        .map(|m| m.get(..12).unwrap_or(m))
        .collect::<Vec<_>>()
        .join(" ");
    let mut lines = vec![
        Line::from(vec![
            Span::styled("madrpc top ", bold),
            Span::raw(format!("{}  ", screen.url)),
            Span::styled(
                format!(" {state} "),
                Style::default().fg(Color::Black).bg(color),
            ),
            Span::styled(
                format!(
                    "  v{}  up {}  module {}",
                    status.version,
                    uptime(status.uptime_ms),
                    if module.is_empty() { "-" } else { &module }
                ),
                dim,
            ),
        ]),
        Line::from(vec![
            Span::styled(format!("{rate:.1}"), bold),
            Span::raw(" calls/s   "),
            Span::styled(format!("{total}"), bold),
            Span::raw(" calls   "),
            Span::styled(
                format!("{failed}"),
                if failed > 0 {
                    bold.fg(Color::Red)
                } else {
                    bold
                },
            ),
            Span::raw(" errors   "),
            Span::styled(format!("{up}/{}", status.nodes.len()), bold),
            Span::raw(" nodes up   "),
            Span::styled("q quits", dim),
        ]),
    ];
    if let Some(error) = &screen.error {
        lines.push(Line::from(Span::styled(
            error.clone(),
            Style::default().fg(Color::Red),
        )));
    }
    frame.render_widget(Paragraph::new(lines), header);

    let history: Vec<u64> = (0..SPARK_SECONDS)
        .rev()
        .map(|back| {
            let at = status.history.now.saturating_sub(back);
            status
                .history
                .seconds
                .iter()
                .find(|s| s.at == at)
                .map_or(0, |s| s.calls)
        })
        .collect();
    let peak = history.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Sparkline::default()
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" calls/s, last {SPARK_SECONDS} s (peak {peak}) ")),
            )
            .data(&history)
            .style(Style::default().fg(Color::Cyan)),
        spark,
    );

    let [nodes_area, methods_area] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(middle);
    let node_rows = status.nodes.iter().map(|n| {
        let (text, color) = if n.available {
            ("up", Color::Green)
        } else {
            ("out", Color::Red)
        };
        Row::new(vec![
            Cell::from(n.url.clone()),
            Cell::from(text).style(Style::default().fg(color)),
            Cell::from(n.origin.clone()),
            Cell::from(n.in_flight.to_string()),
            Cell::from(n.consecutive_failures.to_string()),
        ])
    });
    frame.render_widget(
        Table::new(
            node_rows,
            [
                Constraint::Min(16),
                Constraint::Length(5),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Length(8),
            ],
        )
        .header(Row::new(["node", "state", "origin", "in flight", "failures"]).style(dim))
        .block(Block::default().borders(Borders::ALL).title(" nodes ")),
        nodes_area,
    );

    let empty = MethodCalls::default();
    let method_rows = status.methods.iter().map(|name| {
        let m = status.calls.methods.get(name).unwrap_or(&empty);
        let rate = screen.rates.get(name).copied().unwrap_or(0.0);
        let timed = |us: u64| {
            if m.call_count > 0 {
                latency(us)
            } else {
                "-".to_owned()
            }
        };
        Row::new(vec![
            Cell::from(name.clone()),
            Cell::from(m.call_count.to_string()),
            Cell::from(format!("{rate:.1}")),
            Cell::from(m.failure_count.to_string()).style(if m.failure_count > 0 {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            }),
            Cell::from(timed(m.avg_latency_us)),
            Cell::from(timed(m.p50_latency_us)),
            Cell::from(timed(m.p95_latency_us)),
            Cell::from(timed(m.p99_latency_us)),
        ])
    });
    frame.render_widget(
        Table::new(
            method_rows,
            [
                Constraint::Min(12),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(7),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
            ],
        )
        .header(
            Row::new([
                "method", "calls", "calls/s", "errors", "avg", "p50", "p95", "p99",
            ])
            .style(dim),
        )
        .block(Block::default().borders(Borders::ALL).title(" methods ")),
        methods_area,
    );

    let now_ms = status.history.now * 1000;
    let error_lines: Vec<Line> = status
        .history
        .errors
        .iter()
        .take(5)
        .map(|e| {
            let ago = now_ms.saturating_sub(e.at_ms) / 1000;
            Line::from(vec![
                Span::styled(format!("{ago:>4}s ago "), dim),
                Span::styled(format!("{:<20} ", e.kind), Style::default().fg(Color::Red)),
                Span::styled(format!("{:<16} ", e.method), bold),
                Span::raw(e.message.clone().unwrap_or_default()),
            ])
        })
        .collect();
    let error_lines = if error_lines.is_empty() {
        vec![Line::from(Span::styled("no errors recently", dim))]
    } else {
        error_lines
    };
    frame.render_widget(
        Paragraph::new(error_lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" recent errors "),
        ),
        errors,
    );
}
