//! The Rollback screen, for when a release goes wrong: the situation first (the last release,
//! the newest verified backup, failed and pending migrations, alerts), then the ways back:
//! forward rollback from down.sql, restore, the code rollback hook, resolve; and the runbook's
//! emergency checklist beside them. Each way back is a release workflow: the screen builds its
//! request, and what the workflow asks or refuses comes back as a modal.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::backup::BackupEntry;
use crate::journal::Event;
use crate::migrate::{MigrationState, Resolution};
use crate::release::{
    DeployRequest, HookRequest, PitrState, ResolveRequest, RestoreRequest, RevertRequest,
    SideRestoreRequest,
};
use crate::tui::app::{App, Effect};
use crate::tui::jobs::{Job, Origin};
use crate::tui::keymap::{Binding, Command, bind};
use crate::tui::modal::{Choice, Input, Modal, Then};
use crate::tui::theme::Theme;
use crate::units::human_bytes;

pub const BINDINGS: &[Binding] = &[
    bind(
        &[KeyCode::Left, KeyCode::Char('h')],
        "h/l",
        "migrations / emergency checklist",
        Command::Left,
        "",
    ),
    bind(
        &[KeyCode::Right, KeyCode::Char('l')],
        "",
        "emergency checklist",
        Command::Right,
        "",
    ),
    bind(
        &[KeyCode::Char(' ')],
        "Space",
        "mark a migration / tick an item",
        Command::Mark,
        "mark/tick",
    ),
    bind(
        &[KeyCode::Char('f')],
        "f",
        "forward rollback of the marked (or newest) migrations",
        Command::ForwardRollback,
        "forward",
    ),
    bind(
        &[KeyCode::Char('b')],
        "b",
        "restore the newest verified backup",
        Command::Restore,
        "restore",
    ),
    bind(
        &[KeyCode::Char('s')],
        "s",
        "PITR: restore the newest restore point into a side cluster (production untouched)",
        Command::SideRestore,
        // Shown in the output box's title in PITR mode, where they apply.
        "",
    ),
    bind(
        &[KeyCode::Char('p')],
        "p",
        "PITR: print the in-place recovery procedure to the newest restore point",
        Command::InPlaceProcedure,
        // Shown in the output box's title in PITR mode, where they apply.
        "",
    ),
    bind(
        &[KeyCode::Char('c')],
        "c",
        "code rollback hook",
        Command::CodeRollback,
        "code",
    ),
    bind(
        &[KeyCode::Char('u')],
        "u",
        "resolve a failed migration (undone, or finished by hand)",
        Command::Resolve,
        "resolve",
    ),
    bind(
        &[KeyCode::Char('x')],
        "x",
        "cancel the running action",
        Command::CancelAction,
        "",
    ),
];

/// The runbook's emergency rollback checklist.
pub const EMERGENCY: [&str; 10] = [
    "Backup verified and accessible",
    "Rollback SQL prepared and tested (its plan ran)",
    "Code rollback plan ready",
    "Team notified of the rollback decision",
    "Customer support notified",
    "Restore or forward rollback executed",
    "Previous application version deployed",
    "Health checks passing",
    "Critical user flows verified",
    "Post-mortem scheduled",
];

/// How an emergency item is named in the journal.
pub fn emergency_id(index: usize) -> String {
    format!("emergency_{}", index + 1)
}

/// The emergency item a journal step id names, if it names one.
pub fn emergency_index(step: &str) -> Option<usize> {
    step.strip_prefix("emergency_")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1))
        .filter(|i| *i < EMERGENCY.len())
}

/// The Rollback screen's state.
#[derive(Debug, Clone, Default)]
pub struct RollbackView {
    /// Focus: false the migrations list, true the emergency checklist.
    pub on_checklist: bool,
    pub selected: usize,
    /// Applied migrations marked for a forward rollback.
    pub marked: Vec<String>,
    pub emergency: Vec<(String, Option<String>)>,
    pub emergency_selected: usize,
    pub log: Vec<String>,
    /// The action running, and what it does now.
    pub running: Option<String>,
    pub running_detail: Option<String>,
    pub backup: Option<Box<BackupEntry>>,
    /// PITR mode: the stanza, archiving and the newest restore point; else why not read.
    pub pitr: Option<Result<Box<PitrState>, String>>,
}

impl RollbackView {
    pub fn new() -> RollbackView {
        RollbackView {
            emergency: EMERGENCY.iter().map(|t| (t.to_string(), None)).collect(),
            ..Default::default()
        }
    }

    pub fn log(&mut self, line: String) {
        self.log.push(line);
        let excess = self.log.len().saturating_sub(200);
        self.log.drain(..excess);
    }
}

/// Applied migrations that have a down.sql, newest first: what a forward rollback can undo.
pub fn revertible(app: &App) -> Vec<String> {
    match app.migrations.view() {
        Some(v) => v
            .status
            .migrations
            .iter()
            .rev()
            .filter(|m| {
                m.has_down_sql
                    && matches!(
                        m.state,
                        MigrationState::Applied { .. } | MigrationState::Edited { .. }
                    )
            })
            .map(|m| m.name.clone())
            .collect(),
        None => Vec::new(),
    }
}

/// The revertible migrations the filter (`/`) lets through, as the list shows them.
fn listed(app: &App) -> Vec<String> {
    let filter = app
        .filter_of(crate::tui::screens::Screen::Rollback)
        .to_lowercase();
    revertible(app)
        .into_iter()
        .filter(|n| filter.is_empty() || n.to_lowercase().contains(&filter))
        .collect()
}

/// Failed migrations waiting for `resolve`.
pub fn failed_migrations(app: &App) -> Vec<(String, Option<String>)> {
    match app.migrations.view() {
        Some(v) => v
            .status
            .migrations
            .iter()
            .filter_map(|m| match &m.state {
                MigrationState::Failed { logs, .. } => Some((m.name.clone(), logs.clone())),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    }
}

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    use Command as C;
    let acts = matches!(
        command,
        C::ForwardRollback | C::Restore | C::CodeRollback | C::Resolve
    );
    if acts && let Some(running) = &app.rollback.running {
        app.flash = Some(format!("{running} is running (x cancels it)"));
        return Vec::new();
    }
    match command {
        C::Left | C::Right => app.rollback.on_checklist = command == C::Right,
        C::Move(motion) => {
            let n = listed(app).len();
            let r = &mut app.rollback;
            let (sel, len) = if r.on_checklist {
                (&mut r.emergency_selected, r.emergency.len())
            } else {
                (&mut r.selected, n)
            };
            *sel = motion.apply(*sel, len);
        }
        C::Mark => {
            if app.rollback.on_checklist {
                let i = app.rollback.emergency_selected;
                if app.rollback.emergency[i].1.is_none() {
                    app.modal = Some(Modal::new(
                        format!("Tick '{}'", app.rollback.emergency[i].0),
                        vec!["A note for the journal (optional)".into()],
                        Input::Note,
                        Then::EmergencyTick { index: i },
                    ));
                } else {
                    app.flash = Some("already ticked (the journal keeps it)".into());
                }
            } else if let Some(name) = listed(app).get(app.rollback.selected).cloned() {
                let marked = &mut app.rollback.marked;
                match marked.iter().position(|n| *n == name) {
                    Some(p) => {
                        marked.remove(p);
                    }
                    None => marked.push(name),
                }
            }
        }
        C::ForwardRollback => {
            let names: Vec<String> = if app.rollback.marked.is_empty() {
                revertible(app).into_iter().take(1).collect()
            } else {
                app.rollback.marked.clone()
            };
            if names.is_empty() {
                app.flash = Some("no applied migration with a down.sql to revert".into());
                return Vec::new();
            }
            // The workflow shows the down.sql and what it cannot bring back, and asks.
            return app.run(
                Origin::Rollback,
                Job::Revert(RevertRequest {
                    names,
                    deploy: Some(DeployRequest::default()),
                }),
            );
        }
        C::Restore => {
            let Some(backup) = app.rollback.backup.as_ref().map(|b| b.file.clone()) else {
                app.flash = Some(if app.rollback.pitr.is_some() {
                    "PITR mode: s recovers the restore point into a side cluster, p prints the in-place procedure".into()
                } else {
                    "no verified backup of this database".into()
                });
                return Vec::new();
            };
            return app.run(
                Origin::Rollback,
                Job::Restore(RestoreRequest {
                    backup,
                    jobs: 1,
                    ..RestoreRequest::default()
                }),
            );
        }
        C::SideRestore | C::InPlaceProcedure => {
            let point = match &app.rollback.pitr {
                None => {
                    app.flash = Some(
                        "no pgBackRest stanza for this environment: restore a backup (b)".into(),
                    );
                    return Vec::new();
                }
                Some(Err(e)) => {
                    app.flash = Some(format!("the stanza could not be read: {e}"));
                    return Vec::new();
                }
                Some(Ok(state)) => match &state.restore_point {
                    Some(p) => p.name.clone(),
                    None => {
                        app.flash =
                            Some("no restore point in the journal: a deploy creates one".into());
                        return Vec::new();
                    }
                },
            };
            let job = if command == C::SideRestore {
                Job::SideRestore(SideRestoreRequest {
                    dir: app.env.backup.dir.join(format!("side-{point}")),
                    point,
                })
            } else {
                Job::InPlaceProcedure { point }
            };
            return app.run(Origin::Rollback, job);
        }
        C::CodeRollback => {
            if !app.env.hooks.commands.contains_key("code_rollback") {
                app.flash =
                    Some("no code_rollback hook configured ([environments.<env>.hooks])".into());
                return Vec::new();
            }
            return app.run(
                Origin::Rollback,
                Job::Hook(HookRequest {
                    name: "code_rollback".into(),
                    ..HookRequest::default()
                }),
            );
        }
        C::Resolve => {
            let Some((name, logs)) = failed_migrations(app).into_iter().next() else {
                app.flash = Some("no failed migration to resolve".into());
                return Vec::new();
            };
            // Only the operator knows which it is: pgdeck cannot tell undone from finished.
            let choice = |key: char, how: Resolution, label: &str, what: &str| Choice {
                key,
                label: label.to_owned(),
                title: format!("Record {name} as {what}"),
                lines: vec![label.to_owned()],
                input: Input::Yes,
                then: Then::Run {
                    origin: Origin::Rollback,
                    job: Box::new(Job::Resolve(ResolveRequest {
                        name: name.clone(),
                        how,
                        confirmation: None,
                        lock_wait: None,
                    })),
                },
            };
            let mut lines: Vec<String> = logs
                .as_deref()
                .unwrap_or("it failed part-way; its logs are empty")
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("Migration:"))
                .take(8)
                .map(|l| format!("  {l}"))
                .collect();
            lines.push(
                "Statements before the failing one ran outside a transaction and stay applied. \
                 What became of them?"
                    .into(),
            );
            app.modal = Some(Modal::new(
                format!("Resolve {name}"),
                lines,
                Input::Choice(vec![
                    choice(
                        'r',
                        Resolution::RolledBack,
                        "they were undone (or never ran): deploy runs it again",
                        "rolled back",
                    ),
                    choice(
                        'a',
                        Resolution::Applied,
                        "it was finished by hand: deploy treats it as done",
                        "applied",
                    ),
                ]),
                Then::Close,
            ));
        }
        C::CancelAction => {
            let Some(running) = app.rollback.running.clone() else {
                app.flash = Some("nothing is running".into());
                return Vec::new();
            };
            app.modal = Some(Modal::new(
                format!("Cancel {running}"),
                vec![
                    "Stops it now: a statement running on the server is cancelled and rolled back, \
                     a restore's pg_restore is stopped (its transaction rolls back), a hook is \
                     stopped with what it started."
                        .into(),
                ],
                Input::Yes,
                Then::Cancel(Origin::Rollback),
            ));
        }
        _ => {}
    }
    Vec::new()
}

pub fn draw(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let r = &app.rollback;

    // The situation first.
    let mut lines = Vec::new();
    if !app.left_in_place.is_empty() {
        lines.push(Line::styled(
            format!(
                "LEFT IN PLACE by the restore (made after its backup): {}. A migration pending \
                 again that creates them will fail: save what they hold and drop them, or \
                 resolve that migration (u).",
                app.left_in_place.join(", ")
            ),
            theme.bad(),
        ));
    }
    if !app.pending_again.is_empty() {
        lines.push(Line::styled(
            format!(
                "AFTER THE RESTORE, PENDING AGAIN: {}. The next deploy applies them again: fix or \
                 remove them from the folder first (the Migrations screen shows them).",
                app.pending_again.join(", ")
            ),
            theme.bad(),
        ));
    }
    let last_release = app.journal.iter().rev().find_map(|e| match &e.event {
        Event::Released {
            workflow,
            outcome,
            summary,
            ..
        } if workflow != "signal a backend" => Some(format!(
            "last {workflow} {} at {}: {summary}",
            outcome.label(),
            e.at.format("%H:%M:%S")
        )),
        _ => None,
    });
    lines.push(Line::raw(
        last_release.unwrap_or_else(|| "no deploy or rollback in this session".into()),
    ));
    match (&r.pitr, &r.backup) {
        (Some(pitr), _) => lines.extend(pitr_lines(pitr, theme)),
        (None, Some(b)) => {
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
        (None, None) => lines.push(Line::styled(
            "no verified backup of this database",
            theme.warn(),
        )),
    }
    for (name, logs) in failed_migrations(app) {
        lines.push(Line::styled(
            format!(
                "FAILED {name}: {} (u: resolve it, once undone or finished by hand)",
                error_of(logs.as_deref())
            ),
            theme.bad(),
        ));
    }
    if let Some(view) = app.migrations.view() {
        let pending = view.status.pending_names();
        if !pending.is_empty() {
            lines.push(Line::styled(
                format!(
                    "{} migration(s) pending: {} (a deploy would apply them)",
                    pending.len(),
                    pending.join(", ")
                ),
                theme.warn(),
            ));
        }
    }
    let alerts = app.alerts();
    if !alerts.is_empty() {
        lines.push(Line::styled(
            format!("alerts: {}", alerts.join(" · ")),
            theme.bad(),
        ));
    }
    if let Some(running) = &r.running {
        lines.push(Line::styled(
            format!(
                "running: {running}…{}",
                r.running_detail
                    .as_ref()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default()
            ),
            theme.warn(),
        ));
    }
    let situation = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::bordered().title(" Rollback: the situation "));
    // As tall as it needs, leaving the lists five rows and the output four.
    let wanted = situation.line_count(area.width) as u16;
    let room = area
        .height
        .saturating_sub(5 + (area.height / 4).clamp(4, 10));
    let [situation_area, lists_area, log_area] = Layout::vertical([
        Constraint::Length(wanted.clamp(3, room.max(3))),
        Constraint::Min(5),
        Constraint::Length((area.height / 4).clamp(4, 10)),
    ])
    .areas(area);
    f.render_widget(situation, situation_area);

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
    let revertible = listed(app);
    if revertible.is_empty() {
        lines.push(Line::styled(
            "no applied migration has a down.sql: restore a backup (b) or write a migration by hand",
            theme.warn(),
        ));
    }
    let visible = left.height.saturating_sub(2) as usize;
    let skip = if r.on_checklist {
        0
    } else {
        r.selected.saturating_sub(visible.saturating_sub(1))
    };
    for (i, name) in revertible.iter().enumerate().skip(skip).take(visible) {
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
    let visible = right.height.saturating_sub(2) as usize;
    let skip = if r.on_checklist {
        r.emergency_selected
            .saturating_sub(visible.saturating_sub(1))
    } else {
        0
    };
    let done = r.emergency.iter().filter(|(_, n)| n.is_some()).count();
    for (i, (title, note)) in r.emergency.iter().enumerate().skip(skip).take(visible) {
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
                .title(format!(
                    " Emergency checklist {done}/{} ",
                    r.emergency.len()
                ))
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
        Paragraph::new(lines).block(Block::bordered().title(
            if r.pitr.is_some() {
                " s side restore · p in-place procedure · c code rollback hook · u resolve failed · x cancel · output "
            } else {
                " b restore backup · c code rollback hook · u resolve failed · x cancel · output "
            },
        )),
        log_area,
    );
}

/// The error line of a failed migration's logs.
fn error_of(logs: Option<&str>) -> &str {
    let logs = logs.unwrap_or_default();
    logs.lines()
        .find_map(|l| l.strip_prefix("ERROR: "))
        .or_else(|| logs.lines().find(|l| !l.starts_with("Migration:")))
        .unwrap_or("")
}

/// PITR mode's situation: the newest base backup and the last archived WAL with their ages,
/// what a deploy would refuse, and the restore point to recover to.
fn pitr_lines(pitr: &Result<Box<PitrState>, String>, theme: Theme) -> Vec<Line<'static>> {
    let state = match pitr {
        Ok(s) => s,
        Err(e) => {
            return vec![Line::styled(
                format!("pgBackRest stanza not read: {e}"),
                theme.bad(),
            )];
        }
    };
    let ago = |d: Option<std::time::Duration>| {
        d.map(crate::units::human_duration)
            .unwrap_or_else(|| "-".into())
    };
    let (backup_age, archived_age) = state.ages();
    let mut lines = vec![match &state.backup {
        Some(b) => Line::styled(
            format!(
                "stanza {}: newest base backup {} ({}, {} old)",
                state.stanza,
                b.label,
                b.kind,
                ago(backup_age)
            ),
            theme.good(),
        ),
        None => Line::styled(
            format!("stanza {}: no base backup", state.stanza),
            theme.bad(),
        ),
    }];
    lines.push(Line::styled(
        format!(
            "WAL archiving: last segment {} archived {} ago, {} failure(s)",
            state
                .archiver
                .last_archived_wal
                .as_deref()
                .unwrap_or("none"),
            ago(archived_age),
            state.archiver.failed_count
        ),
        if state.refusal.is_some() {
            theme.warn()
        } else {
            theme.good()
        },
    ));
    if let Some(why) = &state.refusal {
        lines.push(Line::styled(
            format!("a deploy would be refused: {why}"),
            theme.bad(),
        ));
    }
    lines.push(match &state.restore_point {
        Some(p) => Line::styled(
            format!(
                "restore point {} at {} ({} UTC, from base backup {}): s recovers it into a side cluster, p prints the in-place procedure",
                p.name,
                p.lsn,
                p.at.format("%Y-%m-%d %H:%M:%S"),
                p.base_backup
            ),
            theme.good(),
        ),
        None => Line::styled(
            "no restore point in the journal yet: a deploy creates one when it starts",
            theme.warn(),
        ),
    });
    lines
}
