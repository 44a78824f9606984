//! The Monitor screen: connections against the usable maximum, live health with its sparkline,
//! long-running queries (sorted, filtered, idle transactions shown or not), the lock queue with
//! DDL flagged, the largest tables. Either list can be focused, a row opened in a detail view
//! (the full query, every lock of that backend, its blocking chain) and cancelled or
//! terminated. pgdeck's own sessions are marked. While the server is away it keeps the last
//! sample, dimmed and marked with its age.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};

use crate::monitor::watch::Update;
use crate::monitor::{Backend, Blocker, LongQuery, Pane, Signal, Snapshot, Victim};
use crate::release::SignalRequest;
use crate::tui::app::{App, Effect};
use crate::tui::deploying::session_state;
use crate::tui::jobs::{Job, Origin};
use crate::tui::keymap::{Binding, Command, bind};
use crate::tui::modal::{Choice, Input, Modal, Then};
use crate::tui::screens::Screen;
use crate::tui::theme::Theme;
use crate::tui::widgets::{self, pane_state};
use crate::units::human_bytes;

pub const BINDINGS: &[Binding] = &[
    bind(
        &[KeyCode::Enter],
        "Enter",
        "details: the full query, its locks, its blocking chain",
        Command::Activate,
        "details",
    ),
    bind(
        &[KeyCode::Char('c')],
        "c",
        "cancel the selected session's query",
        Command::Cancel,
        "cancel",
    ),
    bind(
        &[KeyCode::Char('K')],
        "K",
        "terminate the selected session (its transaction rolls back)",
        Command::Terminate,
        "terminate",
    ),
    bind(
        &[KeyCode::Left, KeyCode::Char('h')],
        "h/l",
        "focus the long-running list / the lock queue",
        Command::Left,
        "focus",
    ),
    bind(
        &[KeyCode::Right, KeyCode::Char('l')],
        "l / Right",
        "focus the lock queue",
        Command::Right,
        "",
    ),
    bind(
        &[KeyCode::Char('s')],
        "s",
        "sort long-running by age, user or state",
        Command::Sort,
        "sort",
    ),
    bind(
        &[KeyCode::Char('i')],
        "i",
        "show / hide idle-in-transaction sessions",
        Command::ToggleIdle,
        "",
    ),
    bind(
        &[KeyCode::Char('H')],
        "H",
        "health in the background: on / off (on by itself from the Deploy step)",
        Command::ToggleLiveHealth,
        "",
    ),
    bind(
        &[KeyCode::Char('p')],
        "p",
        "pause / resume sampling",
        Command::Pause,
        "",
    ),
    bind(
        &[KeyCode::Char('+')],
        "+",
        "sample more often (down to every 0.5 s)",
        Command::Faster,
        "",
    ),
    bind(
        &[KeyCode::Char('-')],
        "-",
        "sample less often (up to every 30 s)",
        Command::Slower,
        "",
    ),
    bind(
        &[KeyCode::Char('r')],
        "r",
        "to the Rollback screen",
        Command::ToRollback,
        "",
    ),
];

/// How the long-running list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Age,
    User,
    State,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Age => Sort::User,
            Sort::User => Sort::State,
            Sort::State => Sort::Age,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::Age => "age",
            Sort::User => "user",
            Sort::State => "state",
        }
    }
}

/// The monitor could not sample: since when, and why.
#[derive(Debug, Clone)]
pub struct Unreachable {
    /// How old the last good sample was when this was heard (none: never had one).
    pub age_seconds: Option<f64>,
    pub heard: Instant,
    pub cause: String,
}

impl Unreachable {
    /// Seconds since the last good sample, as of `now`.
    pub fn age(&self, now: Instant) -> Option<f64> {
        self.age_seconds
            .map(|a| a + now.saturating_duration_since(self.heard).as_secs_f64())
    }

    /// `server unreachable for 12s`, for the header and the panes.
    pub fn said(&self, now: Instant) -> String {
        match self.age(now) {
            Some(a) => format!("server unreachable for {a:.0}s"),
            None => "server unreachable".into(),
        }
    }
}

/// The detail view of one backend.
#[derive(Debug, Clone)]
pub enum Detail {
    Loading { pid: i32 },
    Loaded(Box<Backend>),
    Failed { pid: i32, cause: String },
}

impl Detail {
    pub fn pid(&self) -> i32 {
        match self {
            Detail::Loading { pid } | Detail::Failed { pid, .. } => *pid,
            Detail::Loaded(b) => b.pid,
        }
    }
}

/// The monitor pane's view of the collector.
#[derive(Debug, Clone)]
pub struct MonitorView {
    pub last: Option<Box<Snapshot>>,
    pub unreachable: Option<Unreachable>,
    pub selected: usize,
    /// The lock queue has the focus.
    pub on_locks: bool,
    pub lock_selected: usize,
    pub sort: Sort,
    pub hide_idle: bool,
    pub detail: Option<Detail>,
    /// When the detail view's backend was read.
    pub detail_at: Option<DateTime<Utc>>,
    pub detail_scroll: usize,
    pub paused: bool,
    pub interval: Duration,
}

impl Default for MonitorView {
    fn default() -> Self {
        MonitorView {
            last: None,
            unreachable: None,
            selected: 0,
            on_locks: false,
            lock_selected: 0,
            sort: Sort::default(),
            hide_idle: false,
            detail: None,
            detail_at: None,
            detail_scroll: 0,
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
                self.unreachable = None;
            }
            Update::Stale {
                age_seconds, cause, ..
            } => {
                self.unreachable = Some(Unreachable {
                    age_seconds,
                    heard: Instant::now(),
                    cause,
                });
            }
        }
    }

    /// `STALE 12s` while the data on show is old; none while it is fresh.
    pub fn stale_label(&self, now: Instant) -> Option<String> {
        let u = self.unreachable.as_ref()?;
        Some(match u.age(now) {
            Some(a) => format!("STALE {a:.0}s"),
            None => "NO DATA".into(),
        })
    }
}

/// A row of the lock queue: a session at the head, or one waiting behind it.
pub struct LockRow<'a> {
    pub root: &'a Blocker,
    pub victim: Option<&'a Victim>,
}

impl LockRow<'_> {
    pub fn pid(&self) -> i32 {
        self.victim.map_or(self.root.pid, |v| v.pid)
    }

    fn backend_start(&self) -> DateTime<Utc> {
        self.victim
            .map_or(self.root.backend_start, |v| v.backend_start)
    }

    fn application(&self) -> &str {
        self.victim
            .map_or(self.root.application.as_str(), |v| v.application.as_str())
    }

    /// How deep in the queue a waiter is: 1 behind the head itself, 2 behind one of those
    /// (readers queued behind a waiting ALTER are behind the ALTER, not the head).
    fn depth(&self) -> usize {
        let Some(v) = self.victim else { return 0 };
        let mut depth = 1;
        let mut at = v;
        while depth < 6 && !at.blocked_by.contains(&self.root.pid) {
            match self
                .root
                .victims
                .iter()
                .find(|w| at.blocked_by.contains(&w.pid))
            {
                Some(w) => {
                    at = w;
                    depth += 1;
                }
                None => break,
            }
        }
        depth
    }

    fn text(&self) -> String {
        match self.victim {
            None => format!(
                "pid {} {} ({} {:.0}s) blocks {}: {}",
                self.root.pid,
                self.root.user,
                self.root.state,
                self.root.state_seconds,
                self.root.victims.len(),
                self.root.query
            ),
            Some(v) => format!(
                "{}└ pid {} {} waits {:.0}s {}{}: {}",
                "  ".repeat(self.depth()),
                v.pid,
                v.user,
                v.waiting_seconds,
                v.lock_mode.clone().unwrap_or_default(),
                if v.ddl_access_exclusive {
                    format!(" DDL, {} queued behind", v.queued_behind)
                } else {
                    String::new()
                },
                v.query
            ),
        }
    }
}

fn matches(filter: &str, fields: &[&str]) -> bool {
    filter.is_empty()
        || fields
            .iter()
            .any(|f| f.to_lowercase().contains(&filter.to_lowercase()))
}

/// The long-running list as shown: idle transactions hidden or not, filtered, sorted.
pub fn rows(app: &App) -> Vec<&LongQuery> {
    let filter = app.filter_of(Screen::Monitor);
    let mut rows: Vec<&LongQuery> = app
        .long_queries()
        .iter()
        .filter(|q| !(app.monitor.hide_idle && q.state.starts_with("idle")))
        .filter(|q| {
            matches(
                filter,
                &[
                    &q.pid.to_string(),
                    &q.user,
                    &q.application,
                    &q.state,
                    &q.query_line,
                ],
            )
        })
        .collect();
    let age = |q: &LongQuery| q.query_seconds.max(q.transaction_seconds);
    match app.monitor.sort {
        Sort::Age => rows.sort_by(|a, b| age(b).total_cmp(&age(a))),
        Sort::User => rows.sort_by(|a, b| a.user.cmp(&b.user).then(age(b).total_cmp(&age(a)))),
        Sort::State => rows.sort_by(|a, b| {
            session_state(&a.state, a.wait_event.as_deref())
                .cmp(&session_state(&b.state, b.wait_event.as_deref()))
                .then(age(b).total_cmp(&age(a)))
        }),
    }
    rows
}

/// The lock queue as shown, filtered: each head with the sessions behind it.
pub fn lock_rows(app: &App) -> Vec<LockRow<'_>> {
    let filter = app.filter_of(Screen::Monitor);
    let Some(Pane::Ok(b)) = app.monitor.last.as_deref().map(|s| &s.blocking) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for root in &b.data.roots {
        out.push(LockRow { root, victim: None });
        out.extend(root.victims.iter().map(|v| LockRow {
            root,
            victim: Some(v),
        }));
    }
    out.retain(|r| matches(filter, &[&r.text(), r.application()]));
    out
}

/// Whether a session is one of pgdeck's: the deploy running from this console, or one of its
/// named sessions (monitor, health, watchdog, backup).
pub fn pgdecks(app: &App, pid: i32, application: &str) -> Option<&'static str> {
    let deploying = app
        .deploying
        .as_ref()
        .and_then(|(_, d)| d.backend_pid)
        .is_some_and(|p| p == pid);
    if deploying {
        Some("pgdeck deploy")
    } else if application.starts_with("pgdeck") {
        Some("pgdeck")
    } else {
        None
    }
}

/// The session an action is aimed at: the selected row of the list in focus, or the one in the
/// detail view. (pid, backend_start, state)
fn aimed(app: &App) -> Option<(i32, DateTime<Utc>, String)> {
    if let Some(d) = &app.monitor.detail {
        return match d {
            Detail::Loaded(b) => b.backend_start.map(|s| (b.pid, s, b.state.clone())),
            _ => None,
        };
    }
    if app.monitor.on_locks {
        let rows = lock_rows(app);
        let r = rows.get(app.monitor.lock_selected)?;
        let state = match r.victim {
            None => r.root.state.clone(),
            Some(_) => "active".into(),
        };
        return Some((r.pid(), r.backend_start(), state));
    }
    let rows = rows(app);
    let q = rows.get(app.monitor.selected)?;
    Some((q.pid, q.backend_start, q.state.clone()))
}

fn signal(pid: i32, backend_start: DateTime<Utc>, signal: Signal) -> Job {
    Job::Signal(SignalRequest {
        pid,
        backend_start,
        signal,
        confirmation: None,
        read_only: false,
    })
}

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    match command {
        Command::Move(motion) => {
            if app.monitor.detail.is_some() {
                app.monitor.detail_scroll = motion.apply(app.monitor.detail_scroll, 500);
            } else if app.monitor.on_locks {
                let n = lock_rows(app).len();
                app.monitor.lock_selected = motion.apply(app.monitor.lock_selected, n);
            } else {
                let n = rows(app).len();
                app.monitor.selected = motion.apply(app.monitor.selected, n);
            }
        }
        Command::Left | Command::Right => app.monitor.on_locks = command == Command::Right,
        Command::Activate => {
            let Some((pid, _, _)) = aimed(app) else {
                app.flash = Some("no session selected".into());
                return Vec::new();
            };
            app.monitor.detail = Some(Detail::Loading { pid });
            app.monitor.detail_scroll = 0;
            return app.run(Origin::Inspect, Job::Inspect { pid });
        }
        Command::Back => {
            // The detail view closes first; then the filter goes.
            let closed = app.monitor.detail.take();
            if closed.is_none() {
                app.clear_filter();
            }
        }
        Command::Cancel | Command::Terminate => {
            let Some((pid, start, state)) = aimed(app) else {
                app.flash = Some("no session selected".into());
                return Vec::new();
            };
            if command == Command::Cancel && state.starts_with("idle") {
                // A cancel would be answered "sent" and change nothing: say so, offer the one
                // thing that helps.
                let stale = stale_note(app);
                let mut lines = vec![format!(
                    "pid {pid} is {state}: it runs no query, so a cancel has nothing to stop and \
                     its locks stay held. Only terminating the session ends its transaction."
                )];
                lines.extend(stale);
                app.modal = Some(Modal::new(
                    format!("Cancel cannot help pid {pid}"),
                    lines,
                    Input::Choice(vec![Choice {
                        key: 'K',
                        label: "terminate it instead (its transaction rolls back)".into(),
                        then: Then::Run {
                            origin: Origin::Monitor,
                            job: Box::new(signal(pid, start, Signal::Terminate)),
                        },
                        input: Input::Yes,
                        title: String::new(),
                        lines: Vec::new(),
                    }]),
                    Then::Close,
                ));
                return Vec::new();
            }
            let which = if command == Command::Cancel {
                Signal::Cancel
            } else {
                Signal::Terminate
            };
            // The workflow looks the backend up now and asks with what it finds.
            return app.run(Origin::Monitor, signal(pid, start, which));
        }
        Command::Sort => {
            app.monitor.sort = app.monitor.sort.next();
            app.monitor.selected = 0;
            app.flash = Some(format!(
                "long-running sorted by {}",
                app.monitor.sort.label()
            ));
        }
        Command::ToggleIdle => {
            app.monitor.hide_idle = !app.monitor.hide_idle;
            app.monitor.selected = 0;
        }
        Command::ToggleLiveHealth => {
            app.health_live = !app.health_live;
            return vec![Effect::LiveHealth(app.health_live)];
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

/// A line for a modal shown over old data, if the data is old.
pub fn stale_note(app: &App) -> Option<String> {
    let u = app.monitor.unreachable.as_ref()?;
    Some(format!(
        "What the Monitor shows is stale: {} ({}). The session may have changed since.",
        u.said(Instant::now()),
        u.cause
    ))
}

/// Every line and span of a stale pane, dimmed.
fn dim_all(lines: &mut [Line<'_>], theme: Theme) {
    for l in lines {
        l.style = theme.dim();
        for s in &mut l.spans {
            s.style = theme.dim();
        }
    }
}

pub fn draw(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let now = Instant::now();
    let Some(s) = &app.monitor.last else {
        let text = match &app.monitor.unreachable {
            Some(u) => Line::styled(format!("{}: {}", u.said(now), u.cause), theme.bad()),
            None => Line::raw("loading: connecting the monitor…"),
        };
        f.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" Monitor ")),
            area,
        );
        return;
    };
    if let Some(d) = &app.monitor.detail {
        draw_detail(app, d, theme, f, area);
        return;
    }
    let stale = app.monitor.stale_label(now);
    let tag = stale.as_ref().map(|s| format!(" {s} ")).unwrap_or_default();
    // Standbys, slots and pools take a strip of their own when there are any.
    let replication = replication_lines(s, theme);
    let pool_lines = s.pools.as_ref().map(|p| pool_lines(p, theme));
    let strip = replication
        .len()
        .max(pool_lines.as_ref().map_or(0, Vec::len));
    let (area, strip_area) = if strip == 0 {
        (area, None)
    } else {
        let height = (strip.min(6) + 2) as u16;
        let [rest, strip_area] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(height)]).areas(area);
        (rest, Some(strip_area))
    };
    if let Some(strip_area) = strip_area {
        draw_replication(
            replication,
            pool_lines,
            stale.is_some(),
            &tag,
            theme,
            f,
            strip_area,
        );
    }
    let locks = lock_rows(app);
    let table_rows = match &s.tables {
        Pane::Ok(t) => t.data.len(),
        _ => 1,
    };
    // The lock queue grows with its victims, up to what leaves the long-running list its
    // header and a few rows.
    let room = area.height.saturating_sub(5 + 6);
    let bottom = ((locks.len().max(table_rows).max(2) + 2) as u16).clamp(4.min(room), room);
    let [top, queries, bottom] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(6),
        Constraint::Length(bottom),
    ])
    .areas(area);
    let [conn_area, health_area] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);

    // Connections.
    let paused = if app.monitor.paused { " PAUSED" } else { "" };
    let conn_block = Block::bordered().title(format!(
        " Connections · {} · every {:.1}s{paused}{tag}",
        s.at.format("%H:%M:%S"),
        app.monitor.interval.as_secs_f64()
    ));
    let inner = conn_block.inner(conn_area);
    f.render_widget(conn_block, conn_area);
    match &s.connections {
        Pane::Ok(c) => {
            let c = &c.data;
            let [g, t] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
            let style = if stale.is_some() {
                theme.dim()
            } else if c.utilisation > 0.8 {
                theme.bad()
            } else {
                theme.good()
            };
            f.render_widget(
                Gauge::default()
                    .ratio(c.utilisation.clamp(0.0, 1.0))
                    .label(format!(
                        "{} connections of {} usable ({:.0} %)",
                        c.total,
                        c.usable_max,
                        c.utilisation * 100.0
                    ))
                    .gauge_style(style),
                g,
            );
            let states: Vec<String> = c.by_state.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let mut lines = vec![
                Line::raw(states.join(", ")),
                Line::raw(format!("waiting on locks: {}", c.waiting_on_locks)),
            ];
            if stale.is_some() {
                dim_all(&mut lines, theme);
            }
            f.render_widget(Paragraph::new(lines), t);
        }
        other => f.render_widget(Paragraph::new(pane_state(other).unwrap_or_default()), inner),
    }

    widgets::draw_health(app, theme, f, health_area);

    // Long-running queries.
    let shown = rows(app);
    let mut lines = Vec::new();
    match &s.long_running {
        Pane::Ok(_) => {
            lines.push(Line::styled(
                format!(
                    "{:>7} {:<12} {:>7} {:<22} query",
                    "pid", "user", "age", "state / wait"
                ),
                theme.dim(),
            ));
            let visible = queries.height.saturating_sub(3) as usize;
            let start = app
                .monitor
                .selected
                .saturating_sub(visible.saturating_sub(1));
            for (i, q) in shown.iter().enumerate().skip(start).take(visible) {
                let state = session_state(&q.state, q.wait_event.as_deref());
                let mine = pgdecks(app, q.pid, &q.application)
                    .map(|m| format!("[{m}] "))
                    .unwrap_or_default();
                let line = format!(
                    "{:>7} {:<12} {:>6.0}s {:<22} {mine}{}",
                    q.pid,
                    q.user.chars().take(12).collect::<String>(),
                    q.query_seconds.max(q.transaction_seconds),
                    state.chars().take(22).collect::<String>(),
                    q.query_line
                );
                let style = if i == app.monitor.selected && !app.monitor.on_locks {
                    theme.selected()
                } else if !mine.is_empty() {
                    theme.warn()
                } else {
                    Style::new()
                };
                lines.push(Line::styled(line, style));
            }
            if shown.is_empty() {
                lines.push(Line::styled(
                    if app.long_queries().is_empty() {
                        "nothing running longer than the threshold"
                    } else {
                        "no session matches the filter"
                    },
                    theme.dim(),
                ));
            }
        }
        other => lines.push(Line::raw(pane_state(other).unwrap_or_default())),
    }
    if stale.is_some() {
        dim_all(&mut lines, theme);
    }
    let filter = app.filter_of(Screen::Monitor);
    let title = format!(
        " Long-running ({}{}) · by {}{}{}{tag}",
        shown.len(),
        if shown.len() == app.long_queries().len() {
            String::new()
        } else {
            format!(" of {}", app.long_queries().len())
        },
        app.monitor.sort.label(),
        if app.monitor.hide_idle {
            " · idle hidden"
        } else {
            ""
        },
        if filter.is_empty() {
            String::new()
        } else {
            format!(" · /{filter}")
        },
    );
    let focus = |on: bool| {
        if on { theme.bold() } else { Style::new() }
    };
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(title)
                .border_style(focus(!app.monitor.on_locks)),
        ),
        queries,
    );

    let [locks_area, tables_area] =
        Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(bottom);
    let mut lines = Vec::new();
    match &s.blocking {
        Pane::Ok(_) => {
            if locks.is_empty() {
                lines.push(Line::styled("no lock queue", theme.dim()));
            }
            let visible = locks_area.height.saturating_sub(2) as usize;
            let start = if app.monitor.on_locks {
                app.monitor
                    .lock_selected
                    .saturating_sub(visible.saturating_sub(2))
            } else {
                0
            };
            let more = locks.len().saturating_sub(start + visible);
            let take = if more > 0 {
                visible.saturating_sub(1)
            } else {
                visible
            };
            for (i, r) in locks.iter().enumerate().skip(start).take(take) {
                let mine = pgdecks(app, r.pid(), r.application())
                    .map(|m| format!(" [{m}]"))
                    .unwrap_or_default();
                let style = if app.monitor.on_locks && i == app.monitor.lock_selected {
                    theme.selected()
                } else if r.victim.is_none() {
                    theme.warn()
                } else if r.victim.is_some_and(|v| v.ddl_access_exclusive) {
                    theme.bad()
                } else {
                    Style::new()
                };
                let text = r.text();
                // The mark goes after the pid, where it cannot be cut off.
                let text = match text.find(&format!("pid {}", r.pid())) {
                    Some(at) => {
                        let end = at + format!("pid {}", r.pid()).len();
                        format!("{}{mine}{}", &text[..end], &text[end..])
                    }
                    None => text,
                };
                lines.push(Line::styled(text, style));
            }
            let hidden = locks.len().saturating_sub(start + take);
            if hidden > 0 {
                lines.push(Line::styled(
                    format!("+{hidden} more (l: focus, j/k: scroll)"),
                    theme.bold(),
                ));
            }
        }
        other => lines.push(Line::raw(pane_state(other).unwrap_or_default())),
    }
    if stale.is_some() {
        dim_all(&mut lines, theme);
    }
    let waiting = match &s.blocking {
        Pane::Ok(b) => b.data.waiting,
        _ => 0,
    };
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(format!(" Lock queue ({waiting} waiting){tag}"))
                .border_style(focus(app.monitor.on_locks)),
        ),
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
                // A locked table's catalog estimate is 0 until it was vacuumed or analyzed:
                // not "empty", but unknown.
                let size = if t.estimated && t.total_bytes == 0 {
                    "?".to_owned()
                } else {
                    human_bytes(t.total_bytes)
                };
                lines.push(Line::raw(format!(
                    "{size:>9} {}{growth}{}",
                    t.name,
                    if t.estimated {
                        " (locked: estimate)"
                    } else {
                        ""
                    }
                )));
            }
        }
        other => lines.push(Line::raw(pane_state(other).unwrap_or_default())),
    }
    if stale.is_some() {
        dim_all(&mut lines, theme);
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" Largest tables{tag}"))),
        tables_area,
    );
}

/// The replication pane's lines: the server's own recovery when it is a standby, each standby
/// with its lags, each slot; none when nothing replicates (the strip is then left out).
fn replication_lines(s: &Snapshot, theme: Theme) -> Vec<Line<'static>> {
    let bytes = |b: Option<i64>| b.map(human_bytes).unwrap_or_else(|| "?".into());
    let secs = |t: Option<f64>| t.map(|t| format!("{t:.0}s")).unwrap_or_else(|| "-".into());
    let alerting =
        |kind: &str, name: &str| s.alerts.iter().any(|a| a.kind == kind && a.name == name);
    let r = match &s.replication {
        Pane::Ok(r) => &r.data,
        // Only worth a strip when something replicates; an error here says so.
        Pane::Error { .. } => {
            return vec![Line::raw(pane_state(&s.replication).unwrap_or_default())];
        }
        Pane::Unavailable { .. } => return Vec::new(),
    };
    let mut lines = Vec::new();
    if let Some(rec) = &r.recovery {
        lines.push(Line::styled(
            format!(
                "this server is a STANDBY (read-only): {} received, not replayed; last replayed commit {} ago{}",
                bytes(rec.replay_behind_bytes),
                secs(rec.last_replay_seconds),
                if rec.replay_paused { " · replay PAUSED" } else { "" }
            ),
            theme.warn(),
        ));
    }
    for st in &r.standbys {
        let style = if alerting("replica", &st.name) {
            theme.bad()
        } else if st.state != "streaming" {
            theme.warn()
        } else {
            Style::new()
        };
        lines.push(Line::styled(
            format!(
                "{} {}/{} · replay lag {} / {} · sent {} write {} flush {}",
                st.name,
                st.state,
                st.sync_state,
                bytes(st.replay_lag_bytes),
                secs(st.replay_lag_seconds),
                bytes(st.sent_lag_bytes),
                bytes(st.write_lag_bytes),
                bytes(st.flush_lag_bytes),
            ),
            style,
        ));
    }
    for slot in &r.slots {
        let style = if alerting("slot", &slot.name) {
            theme.bad()
        } else if !slot.active {
            theme.warn()
        } else {
            Style::new()
        };
        lines.push(Line::styled(
            format!(
                "slot {} ({}) {} · retains {}{}",
                slot.name,
                slot.slot_type,
                if slot.active { "active" } else { "INACTIVE" },
                bytes(slot.retained_bytes),
                slot.wal_status
                    .as_deref()
                    .map(|w| format!(" · WAL {w}"))
                    .unwrap_or_default()
            ),
            style,
        ));
    }
    lines
}

/// PgBouncer's pools, one line each.
fn pool_lines(p: &Pane<crate::monitor::Pools>, theme: Theme) -> Vec<Line<'static>> {
    let Pane::Ok(p) = p else {
        return vec![Line::raw(pane_state(p).unwrap_or_default())];
    };
    if p.data.pools.is_empty() {
        return vec![Line::styled("no pools in use", theme.dim())];
    }
    p.data
        .pools
        .iter()
        .map(|pool| {
            Line::styled(
                format!(
                    "{:>3.0}% {}/{} {} · cl {} active {} waiting · sv {} active {} idle of {} · max wait {:.1}s",
                    pool.utilisation * 100.0,
                    pool.database,
                    pool.user,
                    pool.pool_mode,
                    pool.clients_active,
                    pool.clients_waiting,
                    pool.servers_active,
                    pool.servers_idle,
                    pool.pool_size,
                    pool.max_wait_seconds
                ),
                if pool.utilisation > 0.8 || pool.clients_waiting > 0 {
                    theme.bad()
                } else {
                    Style::new()
                },
            )
        })
        .collect()
}

fn draw_replication(
    mut replication: Vec<Line<'static>>,
    pools: Option<Vec<Line<'static>>>,
    stale: bool,
    tag: &str,
    theme: Theme,
    f: &mut Frame,
    area: Rect,
) {
    if replication.is_empty() {
        replication.push(Line::styled("no standbys, no slots", theme.dim()));
    }
    if stale {
        dim_all(&mut replication, theme);
    }
    let block = Block::bordered().title(format!(" Replication{tag}"));
    let Some(mut pools) = pools else {
        f.render_widget(Paragraph::new(replication).block(block), area);
        return;
    };
    if stale {
        dim_all(&mut pools, theme);
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    f.render_widget(Paragraph::new(replication).block(block), left);
    f.render_widget(
        Paragraph::new(pools).block(Block::bordered().title(format!(" PgBouncer pools{tag}"))),
        right,
    );
}

/// The chain of sessions `pid` waits behind, from the lock queue: its blockers, theirs, up to
/// the head.
fn chain_of(app: &App, pid: i32) -> Vec<String> {
    let Some(Pane::Ok(b)) = app.monitor.last.as_deref().map(|s| &s.blocking) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = pid;
    for _ in 0..8 {
        let Some((root, v)) = b
            .data
            .roots
            .iter()
            .find_map(|r| r.victims.iter().find(|v| v.pid == at).map(|v| (r, v)))
        else {
            break;
        };
        let Some(next) = v.blocked_by.first().copied() else {
            break;
        };
        if next == root.pid {
            out.push(format!(
                "waits for pid {} {} ({} {:.0}s): {}",
                root.pid, root.user, root.state, root.state_seconds, root.query
            ));
            break;
        }
        out.push(format!("waits for pid {next}, itself waiting"));
        at = next;
    }
    if let Some(root) = b.data.roots.iter().find(|r| r.pid == pid) {
        out.push(format!(
            "heads a queue of {} session(s)",
            root.victims.len()
        ));
    }
    out
}

fn draw_detail(app: &App, d: &Detail, theme: Theme, f: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = Vec::new();
    match d {
        Detail::Loading { pid } => lines.push(Line::raw(format!("reading backend {pid}…"))),
        Detail::Failed { cause, .. } => lines.push(Line::styled(cause.clone(), theme.bad())),
        Detail::Loaded(b) => {
            let mine = pgdecks(app, b.pid, &b.application)
                .map(|m| format!("  [{m}]"))
                .unwrap_or_default();
            let secs = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.0}s"));
            lines.push(Line::styled(format!("{}{mine}", b.who()), theme.bold()));
            let query = if b.state.starts_with("idle") {
                "last query started"
            } else {
                "query running"
            };
            lines.push(Line::raw(format!(
                "state: {}  {query} {}  transaction open {}",
                session_state(&b.state, b.wait_event.as_deref()),
                secs(b.query_seconds),
                secs(b.transaction_seconds)
            )));
            if b.state.starts_with("idle in transaction") {
                lines.push(Line::styled(
                    "idle in its transaction: c (cancel) cannot help, K (terminate) ends it",
                    theme.warn(),
                ));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled("Query", theme.bold()));
            for l in b.query.lines() {
                lines.push(Line::raw(l.to_owned()));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                format!("Locks ({})", b.locks.len()),
                theme.bold(),
            ));
            for l in &b.locks {
                lines.push(Line::styled(
                    format!(
                        "  {:<8} {:<24} {:<10} {}",
                        if l.granted { "held" } else { "WAITING" },
                        l.mode,
                        l.locktype,
                        l.relation.clone().unwrap_or_default()
                    ),
                    if l.granted { Style::new() } else { theme.bad() },
                ));
            }
            lines.push(Line::raw(""));
            lines.push(Line::styled("Blocking chain", theme.bold()));
            if b.blocked_by.is_empty() && b.blocking.is_empty() {
                lines.push(Line::raw("  waits for no one, and no one waits for it"));
            }
            if !b.blocked_by.is_empty() {
                lines.push(Line::raw(format!("  waits for: {}", pids(&b.blocked_by))));
            }
            for c in chain_of(app, b.pid) {
                lines.push(Line::raw(format!("  {c}")));
            }
            if !b.blocking.is_empty() {
                lines.push(Line::raw(format!("  waited for by: {}", pids(&b.blocking))));
            }
        }
    }
    if let Some(note) = stale_note(app) {
        lines.insert(0, Line::styled(note, theme.bad()));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((app.monitor.detail_scroll.min(u16::MAX as usize) as u16, 0))
            .block(Block::bordered().title(vec![
                Span::raw(format!(
                    " Backend {}{} ",
                    d.pid(),
                    app.monitor
                        .detail_at
                        .map(|t| format!(" · as of {}", t.format("%H:%M:%S")))
                        .unwrap_or_default()
                )),
                Span::styled("· c cancel · K terminate · Esc back ", theme.dim()),
            ])),
        area,
    );
}

fn pids(list: &[i32]) -> String {
    list.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
