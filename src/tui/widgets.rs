//! What every screen shares: the header, the footer, the help overlay, small layout helpers, and
//! how the console words the core's remedies (a key or a step here, where the CLI names a flag).

use ratatui::Frame;
use ratatui::layout::{Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::app::App;
use super::keymap;
use super::screens::Screen;
use super::theme::Theme;
use crate::error::{Error, Remedy};
use crate::health::Level;
use crate::migrate::MigrationState;
use crate::monitor::Pane;

pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    Rect {
        x: area.x + (area.width.saturating_sub(width)) / 2,
        y: area.y + (area.height.saturating_sub(height)) / 2,
        width,
        height,
    }
}

pub fn level_style(theme: Theme, level: Level) -> Style {
    match level {
        Level::Ok => theme.good(),
        Level::Warn => theme.warn(),
        Level::Alert => theme.bad(),
    }
}

pub fn pane_state<T>(pane: &Pane<T>) -> Option<String> {
    match pane {
        Pane::Ok(_) => None,
        Pane::Unavailable { reason } => Some(reason.clone()),
        Pane::Error { cause } => Some(format!("error: {cause}")),
    }
}

/// A remedy as the console offers it.
pub fn remedy(r: &Remedy) -> String {
    match r {
        Remedy::Confirm(_) => "confirm it".into(),
        Remedy::TakeVerifiedBackup => "run the checklist's Backup and Verify steps".into(),
        Remedy::TakeBackup => "run the checklist's Backup step".into(),
        Remedy::DeployWithoutBackup => "o: go ahead without a backup, with a reason".into(),
        Remedy::VerifyBackup { .. } => "run the checklist's Verify step".into(),
        Remedy::RestoreUnverified => "o: restore it anyway, with a reason".into(),
        Remedy::AcceptForeignBackup => "f: use that backup all the same, with a reason".into(),
        Remedy::Acknowledge { .. } => "a: acknowledge them, with a reason".into(),
        Remedy::ReviewPlan => "the Migrations screen (3) shows each finding".into(),
        Remedy::Resolve { migration } => format!(
            "undone: Rollback screen (4), u records {migration} as rolled back; finished by hand: `pgdeck resolve --applied {migration}`"
        ),
        Remedy::ResolveRolledBack { migration } => {
            format!("Rollback screen (4), u records {migration} as rolled back")
        }
        Remedy::Deploy => "run the Deploy step again".into(),
        Remedy::Status => "the Migrations screen (3) shows the migrations".into(),
        Remedy::Revert { .. } => "Rollback screen (4), f: a forward rollback".into(),
        Remedy::ListBackups => "the Rollback screen (4) shows the newest verified backup".into(),
        Remedy::BackupDir => "set backup_dir for the environment in pgdeck.toml".into(),
        Remedy::TerminateSessions => "t: terminate them as part of the restore".into(),
        Remedy::WaitLonger => "raise lock_wait for the environment in pgdeck.toml".into(),
        Remedy::Monitor => "the Monitor screen (2) shows who holds the lock".into(),
        Remedy::EndSession { pid, idle, .. } => format!(
            "K on the Monitor (2) terminates pid {pid}{}",
            if *idle {
                " (idle in its transaction: a cancel would not help)"
            } else {
                ""
            }
        ),
        Remedy::SaveBaseline => "run the checklist's baseline step".into(),
        Remedy::MigrationsFolder => "set migrations for the environment in pgdeck.toml".into(),
        Remedy::NewMigration => "create one with `pgdeck new NAME`".into(),
        Remedy::OtherEnvironment => "open the console on another environment (--env)".into(),
        Remedy::LeaveReadOnly => "this environment is read_only in pgdeck.toml".into(),
        Remedy::DirectoryFormat => "take a directory-format backup".into(),
        Remedy::SingleWorker => "restore with one worker".into(),
        Remedy::UsePrimary => "point the environment at the primary".into(),
        Remedy::UseDirectUrl => "give the environment its direct_url (not the pooler's)".into(),
    }
}

/// The hint of an error with its remedies worded for the console.
pub fn hint(e: &Error) -> String {
    let remedies: Vec<String> = e
        .remedies
        .iter()
        .filter(|r| !matches!(r, Remedy::Confirm(_)))
        .map(remedy)
        .collect();
    match (e.hint.is_empty(), remedies.is_empty()) {
        (_, true) => e.hint.clone(),
        (true, false) => remedies.join("; "),
        (false, false) => format!("{} ({})", e.hint, remedies.join("; ")),
    }
}

/// An error as the console shows it: the cause, then the hint on a line of its own.
pub fn error_text(e: &Error) -> String {
    let hint = hint(e);
    if hint.is_empty() {
        e.cause.clone()
    } else {
        format!("{}\nhint: {hint}", e.cause)
    }
}

pub fn draw_header(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let now = std::time::Instant::now();
    let env_style = if app.env.protected {
        theme.bad().add_modifier(Modifier::REVERSED)
    } else {
        theme.good().add_modifier(Modifier::BOLD)
    };
    let mut first = Vec::new();
    // Unreachable goes first: at 80 columns the end of the line is cut off.
    if let Some(u) = &app.monitor.unreachable {
        first.push(Span::styled(
            format!(" {} ", u.said(now)),
            theme.bad().add_modifier(Modifier::REVERSED),
        ));
        first.push(Span::raw(" "));
    }
    first.push(Span::styled(format!(" {} ", app.env.name), env_style));
    if app.read_only.is_some() {
        first.push(Span::styled(
            " READ-ONLY ",
            theme.warn().add_modifier(Modifier::REVERSED),
        ));
    }
    first.push(Span::raw(format!(" {}  ", app.env.target)));
    first.push(match (&app.monitor.last, &app.monitor.unreachable) {
        (_, Some(u)) => Span::styled(u.cause.clone(), theme.bad()),
        (Some(s), None) => Span::styled(
            format!("connected, PostgreSQL {}", s.server_version),
            theme.good(),
        ),
        (None, None) => Span::styled("connecting…", theme.dim()),
    });
    let migrations = match &app.migrations.data {
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
        let mut spans = vec![Span::styled(migrations, theme.dim())];
        if let Some((said, healthy)) = backup_state(app) {
            spans.push(Span::styled(
                format!(" · {said}"),
                if healthy { theme.dim() } else { theme.warn() },
            ));
        }
        Line::from(spans)
    } else {
        Line::from(vec![
            Span::styled(" ALERT ", theme.bad().add_modifier(Modifier::REVERSED)),
            Span::styled(format!(" {}", alerts.join(" · ")), theme.bad()),
        ])
    };
    let lines = vec![Line::from(first), alert_line, Line::from(tabs)];
    f.render_widget(Paragraph::new(lines), area);
}

/// The backup state for the header: in PITR mode the newest base backup's age, the last
/// archived WAL's and the newest restore point; else the newest verified backup's age. With
/// whether it would satisfy a protected deploy's gate.
fn backup_state(app: &App) -> Option<(String, bool)> {
    let ago = |d: std::time::Duration| crate::units::human_duration(d);
    match (&app.rollback.pitr, &app.rollback.backup) {
        (Some(Ok(state)), _) => {
            let (backup, archived) = state.ages();
            let mut said = vec![
                match backup {
                    Some(d) => format!("base backup {} old", ago(d)),
                    None => "no base backup".into(),
                },
                match archived {
                    Some(d) => format!("WAL archived {} ago", ago(d)),
                    None => "no WAL archived".into(),
                },
            ];
            if let Some(p) = &state.restore_point {
                said.push(format!("restore point {}", p.name));
            }
            Some((said.join(" · "), state.refusal.is_none()))
        }
        (Some(Err(_)), _) => Some(("pgBackRest stanza not read".into(), false)),
        (None, Some(b)) => Some((
            format!(
                "verified backup {} old",
                ago((chrono::Utc::now() - b.finished_at)
                    .to_std()
                    .unwrap_or_default())
            ),
            true,
        )),
        (None, None) => None,
    }
}

/// The Health pane: the verdict and when it was measured, the probe's sparkline, and the
/// checks a release watches (error rate, 5xx, p95 against the baseline, the probe).
pub fn draw_health(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let now = chrono::Utc::now();
    let title = match (&app.health, &app.health_failed) {
        (_, Some((cause, at))) => vec![
            Span::styled(" Health: NO SAMPLE ", theme.bad()),
            Span::raw(format!(
                "· {} · last one failed: {} ",
                at.format("%H:%M:%S"),
                cause.chars().take(60).collect::<String>()
            )),
        ],
        (Some(h), None) => {
            let age = (now - h.at).num_seconds().max(0);
            vec![
                Span::raw(" Health: "),
                Span::styled(h.verdict.label(), level_style(theme, h.verdict)),
                Span::raw(format!(" · {} ({age}s ago)", h.at.format("%H:%M:%S"))),
                Span::styled(
                    if app.health_live {
                        " · live "
                    } else {
                        " · one run "
                    },
                    theme.dim(),
                ),
            ]
        }
        (None, None) => vec![Span::raw(if app.health_live {
            " Health: first sample running… "
        } else {
            " Health: not checked yet "
        })],
    };
    // Old news stays readable, dimmed: the server is away or the last sample failed.
    let stale = app.health_failed.is_some() || app.monitor.unreachable.is_some();
    let block = Block::bordered().title(Line::from(title));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(h) = &app.health else {
        f.render_widget(
            Paragraph::new(
                "runs in the background from the Deploy step on; the health step runs it once",
            )
            .wrap(ratatui::widgets::Wrap { trim: false })
            .style(theme.dim()),
            inner,
        );
        return;
    };
    // What is not ok first, whatever it is; then what a release watches.
    let watched = [
        "db_probe",
        "error_rate",
        "errors_5xx",
        "latency_p95",
        "endpoint",
    ];
    let mut checks: Vec<&crate::health::Check> = h
        .checks
        .iter()
        .filter(|c| c.level != Level::Ok || watched.contains(&c.kind))
        .collect();
    checks.sort_by_key(|c| std::cmp::Reverse(c.level));
    let mut lines: Vec<Line> = checks
        .iter()
        .map(|c| {
            Line::styled(
                format!("{} {}", c.name, c.value),
                if stale {
                    theme.dim()
                } else {
                    level_style(theme, c.level)
                },
            )
        })
        .collect();
    let history: Vec<u64> = app.probe_history.iter().copied().collect();
    let spark_rows = u16::from(!history.is_empty() && inner.height > lines.len() as u16);
    let [text, spark] = Layout::vertical([
        ratatui::layout::Constraint::Min(0),
        ratatui::layout::Constraint::Length(spark_rows),
    ])
    .areas(inner);
    if lines.is_empty() {
        lines.push(Line::styled("no checks configured", theme.dim()));
    }
    f.render_widget(Paragraph::new(lines), text);
    if spark_rows > 0 {
        f.render_widget(
            ratatui::widgets::Sparkline::default()
                .data(&history)
                .style(theme.good()),
            spark,
        );
    }
}

/// The whole plan, over the screen's body: findings wrapped, DANGEROUS and refusals marked.
pub fn draw_plan(pv: &super::app::PlanView, theme: Theme, f: &mut Frame, area: Rect) {
    let lines: Vec<Line> = pv
        .lines
        .iter()
        .map(|l| {
            let style = if l.contains("DANGEROUS") || l.contains("REFUSED") {
                theme.bad()
            } else if l.contains("NEEDS") || l.contains("needs care") {
                theme.warn()
            } else if l.starts_with('[') || l.starts_with("Plan for") {
                theme.bold()
            } else {
                Style::new()
            };
            Line::styled(l.clone(), style)
        })
        .collect();
    let title = if pv.pending.is_some() {
        " Plan · j/k PgUp/PgDn scroll · Enter: reviewed · Esc: close unreviewed "
    } else {
        " Plan · j/k PgUp/PgDn scroll · Esc or Enter closes "
    };
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .scroll((pv.scroll.min(u16::MAX as usize) as u16, 0))
            .block(Block::bordered().title(title).border_style(theme.warn())),
        area,
    );
}

/// A key as the help names it.
pub fn key_name(k: &ratatui::crossterm::event::KeyCode) -> String {
    use ratatui::crossterm::event::KeyCode as K;
    match k {
        K::Char(' ') => "Space".into(),
        K::Char(c) => c.to_string(),
        K::BackTab => "S-Tab".into(),
        K::PageUp => "PgUp".into(),
        K::PageDown => "PgDn".into(),
        other => format!("{other:?}"),
    }
}

pub fn draw_footer(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    if let Some(flash) = &app.flash {
        f.render_widget(
            Paragraph::new(Line::styled(flash.clone(), theme.warn())),
            area,
        );
        return;
    }
    if app.plan_view.is_some() {
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(" j/k ", theme.selected()),
                Span::raw(" scroll  "),
                Span::styled(" PgUp/PgDn ", theme.selected()),
                Span::raw(" a page  "),
                Span::styled(" Enter ", theme.selected()),
                Span::raw(" reviewed  "),
                Span::styled(" Esc ", theme.selected()),
                Span::raw(" close"),
            ])),
            area,
        );
        return;
    }
    if app.filtering {
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(" / ", theme.selected()),
                Span::raw(format!(" {}_", app.filter_of(app.screen))),
                Span::styled("  Enter keep · Esc clear", theme.dim()),
            ])),
            area,
        );
        return;
    }
    // The screen's most important keys first, as many as fit; `?` lists them all.
    let help = [
        Span::styled(" ? ", theme.selected()),
        Span::raw(" all keys "),
    ];
    let room = (area.width as usize).saturating_sub(help.iter().map(Span::width).sum());
    let mut spans: Vec<Span> = Vec::new();
    let mut used = 0;
    for b in app
        .screen
        .bindings()
        .iter()
        .chain(keymap::nav_bindings())
        .chain(keymap::global_bindings())
        .filter(|b| !b.footer.is_empty() && b.command != keymap::Command::Help)
    {
        let key = Span::styled(format!(" {} ", b.label), theme.selected());
        let text = Span::raw(format!(" {}  ", b.footer));
        let w = key.width() + text.width();
        if used + w > room {
            break;
        }
        used += w;
        spans.push(key);
        spans.push(text);
    }
    spans.extend(help);
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn draw_help(app: &App, f: &mut Frame, area: Rect) {
    let mut lines = vec![Line::styled(
        format!("{} screen", app.screen.title()),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let row = |b: &keymap::Binding| {
        let keys: Vec<String> = b.keys.iter().map(key_name).collect();
        Line::raw(format!("  {:<12} {}", keys.join(" / "), b.description))
    };
    lines.extend(app.screen.bindings().iter().map(row));
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Lists and text",
        Style::new().add_modifier(Modifier::BOLD),
    ));
    for l in [
        "  j/k Down/Up  move · PgDn/PgUp a page · g/G Home/End top / bottom",
        "  /            filter the list (Enter keeps it, Esc clears it)",
        "  Esc          back: close the detail, the plan or the filter",
        "  wheel        scroll · a click on a tab opens its screen",
    ] {
        lines.push(Line::raw(l));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Everywhere",
        Style::new().add_modifier(Modifier::BOLD),
    ));
    for l in [
        "  1-6          Checklist, Monitor, Migrations, Rollback, Journal, Logs",
        "  Tab / S-Tab  next / previous screen",
        "  q  Ctrl-C    quit (asks while work runs)",
        "  ?            this help",
    ] {
        lines.push(Line::raw(l));
    }
    let rect = centered(
        area,
        76.min(area.width),
        (lines.len() as u16 + 2).min(area.height),
    );
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(Block::bordered().title(" Help · any key closes ")),
        rect,
    );
}

/// A one-line notice over the screen's last row (the console closing).
pub fn draw_notice(f: &mut Frame, text: &str) {
    let area = f.area();
    if area.height == 0 {
        return;
    }
    let row = Rect {
        y: area.y + area.height - 1,
        height: 1,
        ..area
    };
    f.render_widget(Clear, row);
    f.render_widget(
        Paragraph::new(Line::styled(
            text.to_owned(),
            Style::new().add_modifier(Modifier::REVERSED),
        )),
        row,
    );
}
