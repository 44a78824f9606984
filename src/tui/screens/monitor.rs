//! The Monitor screen: connections against the usable maximum, the health probe's sparkline,
//! long-running queries (cancel, terminate), the lock queue with DDL flagged, the largest
//! tables. It keeps showing the last sample, marked stale, while the server is away.

use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, Paragraph, Sparkline};

use crate::monitor::watch::Update;
use crate::monitor::{Pane, Signal, Snapshot};
use crate::release::SignalRequest;
use crate::tui::app::{App, Effect};
use crate::tui::jobs::{Job, Origin};
use crate::tui::keymap::{Binding, Command, MOVE, bind};
use crate::tui::screens::Screen;
use crate::tui::theme::Theme;
use crate::tui::widgets::pane_state;
use crate::units::human_bytes;

pub const BINDINGS: &[Binding] = &[
    MOVE[0],
    MOVE[1],
    bind(
        &[KeyCode::Char('c')],
        "c",
        "cancel the selected query",
        Command::Cancel,
        true,
    ),
    bind(
        &[KeyCode::Char('K')],
        "K",
        "terminate the selected backend",
        Command::Terminate,
        true,
    ),
    bind(
        &[KeyCode::Char('p')],
        "p",
        "pause / resume",
        Command::Pause,
        true,
    ),
    bind(
        &[KeyCode::Char('+')],
        "+/-",
        "refresh faster / slower",
        Command::Faster,
        true,
    ),
    bind(
        &[KeyCode::Char('-')],
        "",
        "refresh slower",
        Command::Slower,
        false,
    ),
    bind(
        &[KeyCode::Char('r')],
        "r",
        "to the Rollback screen",
        Command::ToRollback,
        true,
    ),
];

/// The monitor pane's view of the collector.
#[derive(Debug, Clone)]
pub struct MonitorView {
    pub last: Option<Box<Snapshot>>,
    pub stale: Option<String>,
    pub selected: usize,
    pub paused: bool,
    pub interval: Duration,
}

impl Default for MonitorView {
    fn default() -> Self {
        MonitorView {
            last: None,
            stale: None,
            selected: 0,
            paused: false,
            interval: Duration::from_secs(2),
        }
    }
}

impl MonitorView {
    /// Folds a collector update in (nothing while paused).
    pub fn fold(&mut self, update: Update) {
        if self.paused {
            return;
        }
        match update {
            Update::Fresh { snapshot } => {
                self.last = Some(snapshot);
                self.stale = None;
            }
            Update::Stale {
                age_seconds, cause, ..
            } => {
                self.stale = Some(match age_seconds {
                    Some(a) => format!("STALE {a:.0}s: {cause}"),
                    None => format!("no data: {cause}"),
                });
            }
        }
        let n = match self.last.as_deref().map(|s| &s.long_running) {
            Some(Pane::Ok(s)) => s.data.len(),
            _ => 0,
        };
        self.selected = self.selected.min(n.saturating_sub(1));
    }
}

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    let n = app.long_queries().len();
    match command {
        Command::Down => app.monitor.selected = (app.monitor.selected + 1).min(n.saturating_sub(1)),
        Command::Up => app.monitor.selected = app.monitor.selected.saturating_sub(1),
        Command::Cancel | Command::Terminate => {
            let signal = if command == Command::Cancel {
                Signal::Cancel
            } else {
                Signal::Terminate
            };
            let Some(q) = app.long_queries().get(app.monitor.selected).cloned() else {
                app.flash = Some("no long-running query selected".into());
                return Vec::new();
            };
            // The workflow looks the backend up now and asks with what it finds.
            return app.run(
                Origin::Monitor,
                Job::Signal(SignalRequest {
                    pid: q.pid,
                    backend_start: q.backend_start,
                    signal,
                    confirmation: None,
                    read_only: false,
                }),
            );
        }
        Command::Pause => app.monitor.paused = !app.monitor.paused,
        Command::Faster | Command::Slower => {
            let secs = app.monitor.interval.as_secs_f64();
            let next = if command == Command::Faster {
                (secs / 2.0).max(0.5)
            } else {
                (secs * 2.0).min(30.0)
            };
            app.monitor.interval = Duration::from_secs_f64(next);
            return vec![Effect::SetInterval(app.monitor.interval)];
        }
        Command::ToRollback => app.screen = Screen::Rollback,
        _ => {}
    }
    Vec::new()
}

pub fn draw(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let Some(s) = &app.monitor.last else {
        let text = app
            .monitor
            .stale
            .clone()
            .unwrap_or_else(|| "loading: connecting the monitor…".into());
        f.render_widget(
            Paragraph::new(text).block(Block::bordered().title(" Monitor ")),
            area,
        );
        return;
    };
    let [top, queries, bottom] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(6),
        Constraint::Length(8),
    ])
    .areas(area);
    let [conn_area, health_area] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);

    // Connections.
    let stale = app
        .monitor
        .stale
        .as_ref()
        .map(|s| format!(" {s} "))
        .unwrap_or_default();
    let paused = if app.monitor.paused { " PAUSED " } else { "" };
    let conn_block = Block::bordered().title(format!(
        " Connections · every {:.1}s{paused}{stale}",
        app.monitor.interval.as_secs_f64()
    ));
    let inner = conn_block.inner(conn_area);
    f.render_widget(conn_block, conn_area);
    match &s.connections {
        Pane::Ok(c) => {
            let c = &c.data;
            let [g, t] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
            let style = if c.utilisation > 0.8 {
                theme.bad()
            } else {
                theme.good()
            };
            f.render_widget(
                Gauge::default()
                    .ratio(c.utilisation.clamp(0.0, 1.0))
                    .label(format!(
                        "{} of {} usable ({:.0} %)",
                        c.total,
                        c.usable_max,
                        c.utilisation * 100.0
                    ))
                    .gauge_style(style),
                g,
            );
            let states: Vec<String> = c.by_state.iter().map(|(k, v)| format!("{k} {v}")).collect();
            f.render_widget(
                Paragraph::new(vec![
                    Line::raw(states.join(", ")),
                    Line::raw(format!("waiting on locks: {}", c.waiting_on_locks)),
                ]),
                t,
            );
        }
        other => f.render_widget(Paragraph::new(pane_state(other).unwrap_or_default()), inner),
    }

    // Health.
    let health_block = Block::bordered().title(match &app.health {
        Some(h) => format!(" Health: {} ", h.verdict.label()),
        None => " Health: not checked yet ".into(),
    });
    let inner = health_block.inner(health_area);
    f.render_widget(health_block, health_area);
    let history: Vec<u64> = app.probe_history.iter().copied().collect();
    if history.is_empty() {
        f.render_widget(
            Paragraph::new("run the health step to start the probe history").style(theme.dim()),
            inner,
        );
    } else {
        let [l, sp] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        let last = history.last().copied().unwrap_or(0) as f64 / 1000.0;
        f.render_widget(Paragraph::new(format!("probe p95 {last:.2} ms")), l);
        f.render_widget(Sparkline::default().data(&history).style(theme.good()), sp);
    }

    // Long-running queries.
    let mut lines = Vec::new();
    match &s.long_running {
        Pane::Ok(q) => {
            lines.push(Line::styled(
                format!(
                    "{:>7} {:<12} {:>7} {:<22} query",
                    "pid", "user", "age", "state/wait"
                ),
                theme.dim(),
            ));
            let visible = queries.height.saturating_sub(3) as usize;
            let start = app
                .monitor
                .selected
                .saturating_sub(visible.saturating_sub(1));
            for (i, q) in q.data.iter().enumerate().skip(start).take(visible) {
                let wait = q.wait_event.clone().unwrap_or_else(|| q.state.clone());
                let line = format!(
                    "{:>7} {:<12} {:>6.0}s {:<22} {}",
                    q.pid,
                    q.user.chars().take(12).collect::<String>(),
                    q.query_seconds.max(q.transaction_seconds),
                    wait.chars().take(22).collect::<String>(),
                    q.query_line
                );
                let style = if i == app.monitor.selected {
                    theme.selected()
                } else {
                    Style::new()
                };
                lines.push(Line::styled(line, style));
            }
            if q.data.is_empty() {
                lines.push(Line::styled(
                    "nothing running longer than the threshold",
                    theme.dim(),
                ));
            }
        }
        other => lines.push(Line::raw(pane_state(other).unwrap_or_default())),
    }
    let n = app.long_queries().len();
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" Long-running ({n}) "))),
        queries,
    );

    let [locks_area, tables_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    let mut lines = Vec::new();
    match &s.blocking {
        Pane::Ok(b) => {
            if b.data.roots.is_empty() {
                lines.push(Line::styled("no lock queue", theme.dim()));
            }
            for root in &b.data.roots {
                lines.push(Line::styled(
                    format!(
                        "pid {} ({}) blocks {}: {}",
                        root.pid,
                        root.state,
                        root.victims.len(),
                        root.query
                    ),
                    theme.warn(),
                ));
                for v in &root.victims {
                    let style = if v.ddl_access_exclusive {
                        theme.bad()
                    } else {
                        Style::new()
                    };
                    let ddl = if v.ddl_access_exclusive {
                        format!(" DDL, {} queued behind", v.queued_behind)
                    } else {
                        String::new()
                    };
                    lines.push(Line::styled(
                        format!(
                            "  └ pid {} waits {:.0}s {}{ddl}: {}",
                            v.pid,
                            v.waiting_seconds,
                            v.lock_mode.clone().unwrap_or_default(),
                            v.query
                        ),
                        style,
                    ));
                }
            }
        }
        other => lines.push(Line::raw(pane_state(other).unwrap_or_default())),
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Lock queue ")),
        locks_area,
    );
    let mut lines = Vec::new();
    match &s.tables {
        Pane::Ok(t) => {
            for t in &t.data {
                let growth = t
                    .growth_bytes
                    .filter(|g| *g != 0)
                    .map(|g| {
                        format!(
                            " {}{}",
                            if g > 0 { "+" } else { "-" },
                            human_bytes(g.unsigned_abs() as i64)
                        )
                    })
                    .unwrap_or_default();
                lines.push(Line::raw(format!(
                    "{:>9} {}{growth}{}",
                    human_bytes(t.total_bytes),
                    t.name,
                    if t.estimated {
                        " (estimate: locked)"
                    } else {
                        ""
                    }
                )));
            }
        }
        other => lines.push(Line::raw(pane_state(other).unwrap_or_default())),
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Largest tables ")),
        tables_area,
    );
}
