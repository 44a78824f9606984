//! Drawing: pure functions of the state. Nothing here changes the state or does I/O.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Clear, Gauge, Paragraph, Sparkline, Wrap};

use super::app::{App, Screen};
use super::keymap;
use crate::checklist::{Phase, State};
use crate::health::Level;
use crate::journal::Event;
use crate::migrate::MigrationState;
use crate::monitor::Pane;
use crate::units::human_bytes;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Colours, or none with `NO_COLOR`: then emphasis is bold and reverse only.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    fn good(self) -> Style {
        self.fg(Color::Green)
    }

    fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
}

pub fn draw(app: &App, theme: Theme, f: &mut Frame) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small: {}x{}, pgdeck needs at least {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(app, theme, f, header);
    match app.screen {
        Screen::Checklist => draw_checklist(app, theme, f, body),
        Screen::Monitor => draw_monitor(app, theme, f, body),
        Screen::Migrations => draw_migrations(app, theme, f, body),
        Screen::Rollback => draw_rollback(app, theme, f, body),
        Screen::Journal => draw_journal(app, theme, f, body),
    }
    draw_footer(app, theme, f, footer);
    if app.help {
        draw_help(app, f, area);
    }
    if let Some(m) = &app.modal {
        let width = 72.min(area.width);
        // Lines wrap inside the border: count the rows they take.
        let rows: usize = m
            .lines
            .iter()
            .map(|l| {
                l.chars()
                    .count()
                    .div_ceil(width.saturating_sub(2).max(1) as usize)
                    .max(1)
            })
            .sum();
        let height = (rows as u16 + if m.text { 5 } else { 3 }).min(area.height);
        let rect = centered(area, width, height);
        f.render_widget(Clear, rect);
        let mut lines: Vec<Line> = m.lines.iter().map(|l| Line::raw(l.clone())).collect();
        if m.text {
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                Span::styled("> ", theme.dim()),
                Span::raw(m.input.clone()),
                Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            ]));
        }
        if let Some(e) = &m.error {
            lines.push(Line::styled(e.clone(), theme.bad()));
        }
        let hint = if m.text {
            " Enter confirm · Esc cancel "
        } else {
            " y confirm · Esc cancel "
        };
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::bordered()
                    .title(format!(" {} ", m.title))
                    .title_bottom(hint)
                    .border_style(theme.warn()),
            ),
            rect,
        );
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    Rect {
        x: area.x + (area.width.saturating_sub(width)) / 2,
        y: area.y + (area.height.saturating_sub(height)) / 2,
        width,
        height,
    }
}

fn draw_header(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let env_style = if app.env.protected {
        theme.bad().add_modifier(Modifier::REVERSED)
    } else {
        theme.good().add_modifier(Modifier::BOLD)
    };
    let connection = match (&app.monitor.last, &app.monitor.stale) {
        (_, Some(s)) => Span::styled(s.clone(), theme.bad()),
        (Some(s), None) => Span::styled(
            format!("connected, PostgreSQL {}", s.server_version),
            theme.good(),
        ),
        (None, None) => Span::styled("connecting…", theme.dim()),
    };
    let migrations = match &app.migrations {
        Ok(Some(m)) => {
            let applied = m
                .status
                .count(|s| matches!(s, MigrationState::Applied { .. }));
            let pending = m.status.pending_names().len();
            let failed = m
                .status
                .count(|s| matches!(s, MigrationState::Failed { .. }));
            format!("migrations: {applied} applied, {pending} pending, {failed} failed")
        }
        Ok(None) => "migrations: loading…".into(),
        Err(e) => format!("migrations: {e}"),
    };
    let tabs: Vec<Span> = Screen::ALL
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let style = if *s == app.screen {
                theme.selected()
            } else {
                Style::new()
            };
            [
                Span::styled(format!(" {} {} ", i + 1, s.title()), style),
                Span::raw(" "),
            ]
        })
        .collect();
    let alerts = app.alerts();
    let alert_line = if alerts.is_empty() {
        Line::styled(migrations, theme.dim())
    } else {
        Line::from(vec![
            Span::styled(" ALERT ", theme.bad().add_modifier(Modifier::REVERSED)),
            Span::styled(format!(" {}", alerts.join(" · ")), theme.bad()),
        ])
    };
    let lines = vec![
        Line::from(vec![
            Span::styled(format!(" {} ", app.env.name), env_style),
            Span::raw(format!(" {}  ", app.env.target)),
            connection,
        ]),
        alert_line,
        Line::from(tabs),
    ];
    f.render_widget(Paragraph::new(lines), area);
}

fn draw_footer(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    if let Some(flash) = &app.flash {
        f.render_widget(
            Paragraph::new(Line::styled(flash.clone(), theme.warn())),
            area,
        );
        return;
    }
    let spans: Vec<Span> = keymap::screen_bindings(app.screen)
        .iter()
        .chain(keymap::global_bindings())
        .filter(|b| b.footer)
        .flat_map(|b| {
            [
                Span::styled(format!(" {} ", b.label), theme.selected()),
                Span::raw(format!(
                    " {}  ",
                    b.description.split(" (").next().unwrap_or("")
                )),
            ]
        })
        .collect();
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_help(app: &App, f: &mut Frame, area: Rect) {
    let mut lines = vec![Line::styled(
        format!("{} screen", app.screen.title()),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let row = |b: &keymap::Binding| {
        let keys: Vec<String> = b
            .keys
            .iter()
            .map(|k| match k {
                ratatui::crossterm::event::KeyCode::Char(c) => c.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        Line::raw(format!("  {:<12} {}", keys.join(" / "), b.description))
    };
    lines.extend(keymap::screen_bindings(app.screen).iter().map(row));
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Everywhere",
        Style::new().add_modifier(Modifier::BOLD),
    ));
    lines.extend(keymap::global_bindings().iter().map(row));
    lines.push(Line::raw("  Ctrl-C       quit (asks while a step runs)"));
    let rect = centered(
        area,
        70.min(area.width),
        (lines.len() as u16 + 2).min(area.height),
    );
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Help · any key closes ")),
        rect,
    );
}

fn icon(state: &State) -> &'static str {
    match state {
        State::Locked(_) => "[·]",
        State::Ready => "[ ]",
        State::Running { .. } => "[>]",
        State::Done { .. } | State::Ticked { .. } => "[x]",
        State::Skipped { .. } => "[-]",
        State::Failed { .. } => "[!]",
    }
}

fn draw_checklist(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let [list_area, detail_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let c = &app.checklist;
    let mut lines = Vec::new();
    let mut selected_line = 0;
    let mut phase = None;
    for (i, item) in c.items.iter().enumerate() {
        if phase != Some(item.phase) {
            phase = Some(item.phase);
            lines.push(Line::styled(
                item.phase.title(),
                Style::new().add_modifier(Modifier::BOLD),
            ));
        }
        let state = c.state(i);
        let style = match state {
            State::Done { .. } | State::Ticked { .. } => theme.good(),
            State::Failed { .. } => theme.bad(),
            State::Running { .. } => theme.warn().add_modifier(Modifier::BOLD),
            State::Locked(_) | State::Skipped { .. } => theme.dim(),
            State::Ready => Style::new(),
        };
        let style = if i == app.selected {
            selected_line = lines.len();
            style.add_modifier(Modifier::REVERSED)
        } else {
            style
        };
        let kind = if item.operation.is_some() {
            ""
        } else {
            " (tick)"
        };
        lines.push(Line::styled(
            format!(" {} {}{kind}", icon(state), item.title),
            style,
        ));
    }
    let (done, total) = c.progress();
    let inner_height = list_area.height.saturating_sub(2) as usize;
    let scroll = selected_line.saturating_sub(inner_height.saturating_sub(1)) as u16;
    f.render_widget(
        Paragraph::new(lines)
            .scroll((scroll, 0))
            .block(Block::bordered().title(format!(" Checklist {done}/{total} "))),
        list_area,
    );

    let item = &c.items[app.selected];
    let state = c.state(app.selected);
    let mut detail = vec![
        Line::styled(
            item.title.clone(),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Line::styled(
            match item.operation {
                Some(_) => "runs by itself: Enter",
                None => "ticked by the operator: Enter (with an optional note)",
            },
            theme.dim(),
        ),
        Line::raw(""),
    ];
    let mut gauge = None;
    match state {
        State::Locked(why) => {
            detail.push(Line::styled("LOCKED", theme.warn()));
            detail.push(Line::raw(why.clone()));
        }
        State::Ready => detail.push(Line::raw("ready")),
        State::Running {
            detail: d,
            fraction,
        } => {
            detail.push(Line::styled("running…", theme.warn()));
            detail.push(Line::raw(d.clone()));
            gauge = *fraction;
        }
        State::Done { summary } => {
            detail.push(Line::styled("done", theme.good()));
            detail.push(Line::raw(summary.clone()));
        }
        State::Ticked { note } => {
            detail.push(Line::styled("ticked", theme.good()));
            if let Some(n) = note {
                detail.push(Line::raw(format!("note: {n}")));
            }
        }
        State::Skipped { note } => {
            detail.push(Line::styled("skipped", theme.dim()));
            detail.push(Line::raw(format!("note: {note}")));
        }
        State::Failed { cause } => {
            detail.push(Line::styled("FAILED (Enter runs it again)", theme.bad()));
            detail.push(Line::raw(cause.clone()));
        }
    }
    if (item.phase == Phase::During || item.id == "baseline" || item.id == "performance")
        && let Some(h) = &app.health
    {
        detail.push(Line::raw(""));
        detail.push(Line::styled(
            format!("health: {}", h.verdict.label()),
            level_style(theme, h.verdict),
        ));
        for check in h.checks.iter().take(8) {
            detail.push(Line::styled(
                format!(
                    "  {:<5} {} {}",
                    check.level.label(),
                    check.name,
                    check.value
                ),
                level_style(theme, check.level),
            ));
        }
    }
    if !c.facts.unacknowledged.is_empty() {
        detail.push(Line::raw(""));
        detail.push(Line::styled(
            format!(
                "DANGEROUS, not acknowledged: {} (a: acknowledge)",
                c.facts.unacknowledged.join(", ")
            ),
            theme.bad(),
        ));
    }
    if let Some(reason) = &app.acknowledged {
        detail.push(Line::styled(
            format!("acknowledged: {reason}"),
            theme.warn(),
        ));
    }
    let block = Block::bordered().title(" Step ");
    let inner = block.inner(detail_area);
    f.render_widget(block, detail_area);
    let [text_area, gauge_area] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(if gauge.is_some() { 1 } else { 0 }),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(detail).wrap(Wrap { trim: false }), text_area);
    if let Some(fr) = gauge {
        f.render_widget(
            Gauge::default()
                .ratio(fr.clamp(0.0, 1.0))
                .gauge_style(theme.good()),
            gauge_area,
        );
    }
}

fn level_style(theme: Theme, level: Level) -> Style {
    match level {
        Level::Ok => theme.good(),
        Level::Warn => theme.warn(),
        Level::Alert => theme.bad(),
    }
}

fn pane_state<T>(pane: &Pane<T>) -> Option<String> {
    match pane {
        Pane::Ok(_) => None,
        Pane::Unavailable { reason } => Some(reason.clone()),
        Pane::Error { cause } => Some(format!("error: {cause}")),
    }
}

fn draw_monitor(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
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

fn draw_migrations(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let view = match &app.migrations {
        Ok(Some(v)) => v,
        Ok(None) => {
            f.render_widget(
                Paragraph::new("loading migrations…")
                    .block(Block::bordered().title(" Migrations ")),
                area,
            );
            return;
        }
        Err(e) => {
            f.render_widget(
                Paragraph::new(Line::styled(format!("error: {e}"), theme.bad()))
                    .block(Block::bordered().title(" Migrations ")),
                area,
            );
            return;
        }
    };
    let [list_area, sql_area] =
        Layout::horizontal([Constraint::Length(46), Constraint::Min(0)]).areas(area);
    let mut lines = Vec::new();
    for (i, m) in view.status.migrations.iter().enumerate() {
        let (icon, style) = match &m.state {
            MigrationState::Applied { .. } => ("✓", theme.good()),
            MigrationState::Pending => ("·", Style::new()),
            MigrationState::RolledBack { .. } => ("↺", theme.warn()),
            MigrationState::Failed { .. } => ("✗", theme.bad()),
            MigrationState::Edited { .. } => ("≠", theme.warn()),
            MigrationState::MissingLocally { .. } => ("?", theme.warn()),
        };
        let style = if i == app.migration_selected {
            style.add_modifier(Modifier::REVERSED)
        } else {
            style
        };
        lines.push(Line::styled(
            format!("{icon} {}", m.name.chars().take(42).collect::<String>()),
            style,
        ));
    }
    let verdict = format!(" Migrations · plan: {:?} ", view.plan.verdict());
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(verdict)),
        list_area,
    );

    let Some(selected) = view.status.migrations.get(app.migration_selected) else {
        f.render_widget(Block::bordered(), sql_area);
        return;
    };
    let local = view.dir.get(&selected.name);
    let plan = view
        .plan
        .migrations
        .iter()
        .find(|p| p.name == selected.name);
    let mut text = Text::default();
    if let Some(p) = plan {
        for finding in &p.lint.findings {
            let style = match finding.severity {
                crate::lint::Severity::Dangerous => theme.bad(),
                _ => theme.warn(),
            };
            text.push_line(Line::styled(
                format!(
                    "{}:{} {:?} {}: {}",
                    finding.line, finding.column, finding.severity, finding.rule, finding.message
                ),
                style,
            ));
        }
        if !p.lint.findings.is_empty() {
            text.push_line(Line::raw(""));
        }
    }
    let (title, sql) = match (app.show_down, local) {
        (false, Some(l)) => ("migration.sql", l.sql().to_owned()),
        (true, Some(l)) => (
            "down.sql",
            l.down.clone().unwrap_or_else(|| {
                "-- no down.sql: a rollback needs a restore or a hand-written migration".into()
            }),
        ),
        (_, None) => ("", "-- not in the local folder".into()),
    };
    for line in sql.lines() {
        text.push_line(highlight(line, theme));
    }
    f.render_widget(
        Paragraph::new(text).block(Block::bordered().title(format!(" {} {title} ", selected.name))),
        sql_area,
    );
}

/// SQL keywords bold, comments dim.
fn highlight(line: &str, theme: Theme) -> Line<'static> {
    const KEYWORDS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "CREATE",
        "TABLE",
        "ALTER",
        "ADD",
        "DROP",
        "COLUMN",
        "INDEX",
        "CONCURRENTLY",
        "ON",
        "NOT",
        "NULL",
        "DEFAULT",
        "PRIMARY",
        "KEY",
        "REFERENCES",
        "UNIQUE",
        "CONSTRAINT",
        "INSERT",
        "INTO",
        "VALUES",
        "UPDATE",
        "SET",
        "DELETE",
        "BEGIN",
        "COMMIT",
        "IF",
        "EXISTS",
        "TYPE",
        "RENAME",
        "TO",
        "FOREIGN",
        "CASCADE",
        "USING",
    ];
    if line.trim_start().starts_with("--") {
        return Line::styled(line.to_owned(), theme.dim());
    }
    let mut spans = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, spans: &mut Vec<Span<'static>>| {
        if word.is_empty() {
            return;
        }
        let style = if KEYWORDS.contains(&word.to_ascii_uppercase().as_str()) {
            theme.fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(std::mem::take(word), style));
    };
    for c in line.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut spans);
            spans.push(Span::raw(c.to_string()));
        }
    }
    flush(&mut word, &mut spans);
    Line::from(spans)
}

fn draw_rollback(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let r = &app.rollback;
    let [situation_area, lists_area, log_area] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Min(6),
        Constraint::Length(8),
    ])
    .areas(area);

    // The situation first.
    let mut lines = Vec::new();
    let last_deploy = app.journal.iter().rev().find_map(|e| match &e.event {
        Event::StepFinished {
            step,
            outcome,
            summary,
            ..
        } if step == "deploy" => Some(format!(
            "last deploy {} at {}: {summary}",
            match outcome {
                crate::journal::Outcome::Ok => "ok",
                crate::journal::Outcome::Failed => "FAILED",
                crate::journal::Outcome::Cancelled => "cancelled",
            },
            e.at.format("%H:%M:%S")
        )),
        _ => None,
    });
    lines.push(Line::raw(
        last_deploy.unwrap_or_else(|| "no deploy in this session".into()),
    ));
    match &r.backup {
        Some(b) => {
            let age = (chrono::Utc::now() - b.finished_at).num_seconds().max(0) as u64;
            lines.push(Line::styled(
                format!(
                    "newest verified backup: {} ({} old, {}, migration head {})",
                    b.file,
                    humantime::format_duration(std::time::Duration::from_secs(age)),
                    human_bytes(b.size_bytes as i64),
                    b.migration_head.as_deref().unwrap_or("none")
                ),
                theme.good(),
            ));
        }
        None => lines.push(Line::styled(
            "no verified backup of this database",
            theme.warn(),
        )),
    }
    for (name, logs) in app.failed_migrations() {
        lines.push(Line::styled(
            format!(
                "FAILED {name}: {} (u: resolve as rolled back once undone; or `pgdeck resolve --applied`)",
                logs.unwrap_or_default().lines().next().unwrap_or("")
            ),
            theme.bad(),
        ));
    }
    let alerts = app.alerts();
    if !alerts.is_empty() {
        lines.push(Line::styled(
            format!("alerts: {}", alerts.join(" · ")),
            theme.bad(),
        ));
    }
    if let Some(running) = &r.running {
        lines.push(Line::styled(format!("running: {running}…"), theme.warn()));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Rollback: the situation ")),
        situation_area,
    );

    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(lists_area);
    let focus = |on: bool| {
        if on {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            theme.dim()
        }
    };
    let mut lines = Vec::new();
    let revertible = app.revertible();
    if revertible.is_empty() {
        lines.push(Line::styled(
            "no applied migration has a down.sql: restore a backup (b) or write a migration by hand",
            theme.warn(),
        ));
    }
    for (i, name) in revertible.iter().enumerate() {
        let mark = if r.marked.contains(name) {
            "[x]"
        } else {
            "[ ]"
        };
        let style = if !r.on_checklist && i == r.selected {
            theme.selected()
        } else {
            Style::new()
        };
        lines.push(Line::styled(format!("{mark} {name}"), style));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" Forward rollback (recommended): f ")
                .title_style(focus(!r.on_checklist)),
        ),
        left,
    );
    let mut lines = Vec::new();
    for (i, (title, note)) in r.emergency.iter().enumerate() {
        let mark = if note.is_some() { "[x]" } else { "[ ]" };
        let style = if r.on_checklist && i == r.emergency_selected {
            theme.selected()
        } else if note.is_some() {
            theme.good()
        } else {
            Style::new()
        };
        lines.push(Line::styled(format!("{mark} {title}"), style));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" Emergency checklist ")
                .title_style(focus(r.on_checklist)),
        ),
        right,
    );

    let visible = log_area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = r
        .log
        .iter()
        .skip(r.log.len().saturating_sub(visible))
        .map(|l| Line::raw(l.clone()))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" b restore backup · c code rollback hook · u resolve failed · output "),
        ),
        log_area,
    );
}

fn draw_journal(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let mut lines = Vec::new();
    let visible = area.height.saturating_sub(2) as usize;
    let skip = app.journal.len().saturating_sub(visible);
    for e in app.journal.iter().skip(skip) {
        let (text, style) = match &e.event {
            Event::SessionStarted {
                environment,
                database,
                ..
            } => (
                format!("session started on {environment} ({database})"),
                Style::new(),
            ),
            Event::SessionResumed => ("session resumed".into(), Style::new()),
            Event::StepStarted { title, .. } => (format!("{title}: started"), theme.dim()),
            Event::StepFinished {
                title,
                outcome,
                summary,
                duration_ms,
                ..
            } => (
                format!(
                    "{title}: {outcome:?} in {:.1}s: {summary}",
                    *duration_ms as f64 / 1000.0
                ),
                if *outcome == crate::journal::Outcome::Ok {
                    theme.good()
                } else {
                    theme.bad()
                },
            ),
            Event::StepTicked { title, note, .. } => (
                format!(
                    "{title}: ticked{}",
                    note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
                ),
                theme.good(),
            ),
            Event::Confirmed { what } => (format!("confirmed: {what}"), theme.warn()),
            Event::Override { what, reason } => (format!("OVERRIDE {what}: {reason}"), theme.bad()),
            Event::HookRan {
                name,
                exit_code,
                timed_out,
                ..
            } => (
                format!(
                    "hook {name}: {}",
                    crate::hooks::describe(*exit_code, *timed_out)
                ),
                if *exit_code == Some(0) {
                    theme.good()
                } else {
                    theme.bad()
                },
            ),
            Event::SessionFinished => ("session finished".into(), Style::new()),
        };
        lines.push(Line::styled(
            format!("{} {:<10} {text}", e.at.format("%H:%M:%S"), e.operator),
            style,
        ));
    }
    let title = match &app.journal_path {
        Some(p) => format!(" Journal · {} ", p.display()),
        None => " Journal ".into(),
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}
