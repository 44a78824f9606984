//! The console's state and the one place it changes: `App::update` folds a message (a key, a
//! tick, a collector update, a step's progress) into the state and returns the effects the loop
//! must start. No I/O here but the journal append, so every key path is testable without a
//! terminal or a server.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::keymap::{self, Command};
use crate::backup::BackupEntry;
use crate::checklist::{Checklist, Facts, Operation, State};
use crate::config::Environment;
use crate::health::{Level, Report};
use crate::journal::{Entry, Event, Journal, Outcome};
use crate::lint::plan::Plan;
use crate::migrate::{MigrationState, MigrationsDir, StatusReport};
use crate::monitor::watch::Update;
use crate::monitor::{LongQuery, Pane, Signal, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Checklist,
    Monitor,
    Migrations,
    Rollback,
    Journal,
}

impl Screen {
    pub const ALL: [Screen; 5] = [
        Screen::Checklist,
        Screen::Monitor,
        Screen::Migrations,
        Screen::Rollback,
        Screen::Journal,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Checklist => "Checklist",
            Screen::Monitor => "Monitor",
            Screen::Migrations => "Migrations",
            Screen::Rollback => "Rollback",
            Screen::Journal => "Journal",
        }
    }
}

/// What a running step reports.
#[derive(Debug, Clone)]
pub enum StepEvent {
    Progress {
        detail: String,
        fraction: Option<f64>,
    },
    Health(Box<Report>),
    Done(Result<String, String>),
    /// The operator cancelled it; the task was stopped.
    Cancelled,
}

/// Everything that reaches the loop, from any producer.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Resize,
    Tick,
    Monitor(Box<Update>),
    Step {
        index: usize,
        event: StepEvent,
    },
    Migrations(Result<Box<MigrationsView>, String>),
    Facts(Facts),
    /// The result of cancel / terminate.
    Signalled(Result<String, String>),
    /// The newest verified backup of the database, for the Rollback screen.
    Backup(Option<Box<BackupEntry>>),
    Rollback(RollbackEvent),
    /// Something a task did that belongs in the journal.
    Journal(Event),
}

/// What a rollback action reports.
#[derive(Debug, Clone)]
pub enum RollbackEvent {
    /// A line of progress or hook output.
    Log(String),
    /// A restore is ready to be confirmed: the backup and what restoring it loses.
    RestoreOffer { file: String, loss: String },
    Done {
        what: String,
        result: Result<String, String>,
    },
}

/// What the loop must start after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    RunStep {
        index: usize,
        operation: Operation,
    },
    Signal {
        pid: i32,
        backend_start: DateTime<Utc>,
        signal: Signal,
    },
    /// Stop a running step's task.
    CancelStep(usize),
    /// Write and deploy a forward rollback of these migrations.
    Revert(Vec<String>),
    /// Work out what restoring the newest verified backup would lose.
    PrepareRestore,
    Restore(String),
    RunHook(String),
    ResolveRolledBack(String),
    /// Reload migrations, status, plan and gate facts.
    Refresh,
    SetInterval(Duration),
    Quit,
}

impl Effect {
    /// Whether it is one of the Rollback screen's actions (shown there as running until done).
    pub fn is_rollback_action(&self) -> bool {
        matches!(
            self,
            Effect::Revert(_)
                | Effect::Restore(_)
                | Effect::RunHook(_)
                | Effect::ResolveRolledBack(_)
        )
    }
}

/// The migrations screen's data, loaded off the loop.
#[derive(Debug, Clone)]
pub struct MigrationsView {
    pub dir: MigrationsDir,
    pub status: StatusReport,
    pub plan: Plan,
}

/// Something that asks before it happens, naming exactly what.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// Run a step that needs the database name typed.
    RunStep {
        index: usize,
        operation: Operation,
    },
    /// An effect that happens once the operator confirms it (cancel, terminate, stop a step,
    /// a rollback action).
    Effect(Effect),
    /// A note for a ticked manual item.
    Tick {
        index: usize,
    },
    /// A note for a skipped optional item.
    Skip {
        index: usize,
    },
    /// The reason for acknowledging DANGEROUS findings.
    Acknowledge,
    EmergencyTick {
        index: usize,
    },
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Modal {
    pub ask: Ask,
    pub title: String,
    /// What will happen to what.
    pub lines: Vec<String>,
    /// Text the operator must type exactly (the database name), if any.
    pub expect: Option<String>,
    /// Whether free text is asked for (a note or a reason).
    pub text: bool,
    /// Whether the text may be empty.
    pub optional_text: bool,
    pub input: String,
    pub error: Option<String>,
}

/// The monitor pane's view of the collector.
impl Modal {
    /// Asks y / Esc.
    fn confirm(ask: Ask, title: String, lines: Vec<String>) -> Modal {
        Modal {
            ask,
            title,
            lines,
            expect: None,
            text: false,
            optional_text: false,
            input: String::new(),
            error: None,
        }
    }

    /// Asks for `expect` (the database name) typed out.
    fn typed(ask: Ask, title: String, lines: Vec<String>, expect: String) -> Modal {
        Modal {
            expect: Some(expect),
            text: true,
            ..Modal::confirm(ask, title, lines)
        }
    }

    /// Asks for a note or a reason.
    fn text(ask: Ask, title: String, prompt: &str, optional: bool) -> Modal {
        Modal {
            text: true,
            optional_text: optional,
            ..Modal::confirm(ask, title, vec![prompt.to_owned()])
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct MonitorView {
    pub last: Option<Box<Snapshot>>,
    pub stale: Option<String>,
    pub selected: usize,
    pub paused: bool,
    pub interval: Duration,
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
    pub running: Option<String>,
    pub backup: Option<Box<BackupEntry>>,
}

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

pub struct App {
    pub env: Environment,
    pub screen: Screen,
    pub checklist: Checklist,
    pub selected: usize,
    pub monitor: MonitorView,
    pub migrations: Result<Option<Box<MigrationsView>>, String>,
    pub migration_selected: usize,
    pub show_down: bool,
    pub health: Option<Box<Report>>,
    /// Recent p95 latencies (ms) of the database probes and error rates, for sparklines.
    pub probe_history: VecDeque<u64>,
    pub journal: Vec<Entry>,
    pub journal_path: Option<std::path::PathBuf>,
    pub modal: Option<Modal>,
    pub help: bool,
    pub flash: Option<String>,
    pub started: Vec<Option<Instant>>,
    pub acknowledged: Option<String>,
    pub rollback: RollbackView,
    pub should_quit: bool,
    /// Repaint needed.
    pub dirty: bool,
    journal_file: Option<Journal>,
}

impl App {
    pub fn new(env: Environment, checklist: Checklist, journal: Option<Journal>) -> App {
        let n = checklist.items.len();
        let journal_path = journal.as_ref().map(|j| j.path().to_owned());
        let entries = journal_path
            .as_deref()
            .and_then(|p| crate::journal::read(p).ok())
            .unwrap_or_default();
        App {
            env,
            screen: Screen::Checklist,
            checklist,
            selected: 0,
            monitor: MonitorView {
                interval: Duration::from_secs(2),
                ..Default::default()
            },
            migrations: Ok(None),
            migration_selected: 0,
            show_down: false,
            health: None,
            probe_history: VecDeque::new(),
            journal: entries,
            journal_path,
            modal: None,
            help: false,
            flash: None,
            started: vec![None; n],
            acknowledged: None,
            rollback: RollbackView {
                emergency: EMERGENCY.iter().map(|t| (t.to_string(), None)).collect(),
                ..Default::default()
            },
            should_quit: false,
            dirty: true,
            journal_file: journal,
        }
    }

    /// Records an event in the journal file and the Journal screen.
    pub fn record(&mut self, event: Event) {
        let entry = match self.journal_file.as_mut() {
            Some(j) => match j.append(event) {
                Ok(e) => e,
                Err(e) => {
                    self.flash = Some(format!("journal: {}", e.cause));
                    return;
                }
            },
            None => Entry {
                at: Utc::now(),
                operator: crate::journal::operator(),
                event,
            },
        };
        self.journal.push(entry);
    }

    /// Alerts for the header: a health check in alert, connections over the threshold, a
    /// migration waiting for ACCESS EXCLUSIVE with sessions queued behind it.
    pub fn alerts(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = &self.monitor.last {
            if let Pane::Ok(c) = &s.connections
                && c.data.utilisation > 0.8
            {
                out.push(format!(
                    "connections {:.0} % of usable",
                    c.data.utilisation * 100.0
                ));
            }
            if let Pane::Ok(b) = &s.blocking {
                for root in &b.data.roots {
                    for v in root.victims.iter().filter(|v| v.ddl_access_exclusive) {
                        out.push(format!(
                            "DDL pid {} waits for ACCESS EXCLUSIVE, {} queued",
                            v.pid, v.queued_behind
                        ));
                    }
                }
            }
        }
        if let Some(h) = &self.health
            && h.verdict == Level::Alert
        {
            out.push("health ALERT".into());
        }
        out
    }

    pub fn long_queries(&self) -> &[LongQuery] {
        match self.monitor.last.as_deref().map(|s| &s.long_running) {
            Some(Pane::Ok(s)) => &s.data,
            _ => &[],
        }
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        self.dirty = true;
        match msg {
            Msg::Key(key) => self.key(key),
            Msg::Resize => Vec::new(),
            Msg::Tick => {
                // Ages and clocks move; repaint only when something shows them.
                self.dirty = self.checklist.running().is_some() || self.monitor.stale.is_some();
                Vec::new()
            }
            Msg::Monitor(update) => {
                if !self.monitor.paused {
                    match *update {
                        Update::Fresh { snapshot } => {
                            self.monitor.last = Some(snapshot);
                            self.monitor.stale = None;
                        }
                        Update::Stale {
                            age_seconds, cause, ..
                        } => {
                            self.monitor.stale = Some(match age_seconds {
                                Some(a) => format!("STALE {a:.0}s: {cause}"),
                                None => format!("no data: {cause}"),
                            });
                        }
                    }
                    let n = self.long_queries().len();
                    self.monitor.selected = self.monitor.selected.min(n.saturating_sub(1));
                }
                Vec::new()
            }
            Msg::Step { index, event } => self.step_event(index, event),
            Msg::Migrations(result) => {
                match result {
                    Ok(view) => {
                        self.migrations = Ok(Some(view));
                    }
                    Err(e) => self.migrations = Err(e),
                }
                Vec::new()
            }
            Msg::Facts(mut facts) => {
                if self.acknowledged.is_some() {
                    facts.unacknowledged.clear();
                }
                self.checklist.set_facts(facts);
                Vec::new()
            }
            Msg::Backup(b) => {
                self.rollback.backup = b;
                Vec::new()
            }
            Msg::Rollback(event) => self.rollback_event(event),
            Msg::Journal(event) => {
                self.record(event);
                Vec::new()
            }
            Msg::Signalled(r) => {
                self.flash = Some(match r {
                    Ok(s) | Err(s) => s,
                });
                Vec::new()
            }
        }
    }

    fn step_event(&mut self, index: usize, event: StepEvent) -> Vec<Effect> {
        match event {
            StepEvent::Progress { detail, fraction } => {
                self.checklist.progress_of(index, detail, fraction);
                Vec::new()
            }
            StepEvent::Health(report) => {
                if let Some(p) = report
                    .measured
                    .probes_p95_ms
                    .get("SELECT 1")
                    .or_else(|| report.measured.probes_p95_ms.values().next())
                {
                    self.probe_history.push_back((p * 1000.0) as u64);
                    if self.probe_history.len() > 60 {
                        self.probe_history.pop_front();
                    }
                }
                self.health = Some(report);
                Vec::new()
            }
            StepEvent::Cancelled
                if matches!(self.checklist.state(index), State::Running { .. }) =>
            {
                self.finish_step(
                    index,
                    Outcome::Cancelled,
                    "cancelled by the operator".into(),
                )
            }
            // It finished before the cancel reached it.
            StepEvent::Cancelled => Vec::new(),
            StepEvent::Done(Ok(summary)) => self.finish_step(index, Outcome::Ok, summary),
            StepEvent::Done(Err(cause)) => self.finish_step(index, Outcome::Failed, cause),
        }
    }

    fn rollback_event(&mut self, event: RollbackEvent) -> Vec<Effect> {
        match event {
            RollbackEvent::Log(line) => {
                self.rollback.log.push(line);
                let excess = self.rollback.log.len().saturating_sub(200);
                self.rollback.log.drain(..excess);
                Vec::new()
            }
            RollbackEvent::RestoreOffer { file, loss } => {
                self.rollback.running = None;
                self.modal = Some(Modal::typed(
                    Ask::Effect(Effect::Restore(file.clone())),
                    format!("Restore {file} into {}", self.env.target.dbname),
                    vec![
                        format!("REPLACES the database's contents with the backup. Lost: {loss}."),
                        "Other sessions on the database are terminated first; the maintenance \
                        hooks run if configured."
                            .into(),
                        format!(
                            "Type the database name ({}) and press Enter.",
                            self.env.target.dbname
                        ),
                    ],
                    self.env.target.dbname.clone(),
                ));
                Vec::new()
            }
            RollbackEvent::Done { what, result } => {
                self.rollback.running = None;
                let (outcome, summary) = match &result {
                    Ok(s) => (Outcome::Ok, s.clone()),
                    Err(e) => (Outcome::Failed, e.clone()),
                };
                self.rollback.log.push(format!(
                    "{what}: {}",
                    if outcome == Outcome::Ok {
                        "done"
                    } else {
                        "FAILED"
                    }
                ));
                self.rollback.log.push(format!("  {summary}"));
                self.flash = Some(format!("{what}: {summary}"));
                if outcome == Outcome::Ok {
                    if what.starts_with("forward rollback") {
                        self.tick_emergency(1, &summary);
                        self.tick_emergency(5, &summary);
                        self.rollback.marked.clear();
                    } else if what.starts_with("restore") {
                        self.tick_emergency(5, &summary);
                    }
                }
                self.record(Event::StepFinished {
                    step: "rollback".into(),
                    title: what,
                    outcome,
                    summary,
                    duration_ms: 0,
                });
                vec![Effect::Refresh]
            }
        }
    }

    fn tick_emergency(&mut self, index: usize, note: &str) {
        if let Some(item) = self.rollback.emergency.get_mut(index)
            && item.1.is_none()
        {
            item.1 = Some(note.chars().take(120).collect());
        }
    }

    /// Applied migrations that have a down.sql, newest first: what a forward rollback can undo.
    pub fn revertible(&self) -> Vec<String> {
        match &self.migrations {
            Ok(Some(v)) => v
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
            _ => Vec::new(),
        }
    }

    /// Failed migrations waiting for `resolve`.
    pub fn failed_migrations(&self) -> Vec<(String, Option<String>)> {
        match &self.migrations {
            Ok(Some(v)) => v
                .status
                .migrations
                .iter()
                .filter_map(|m| match &m.state {
                    MigrationState::Failed { logs, .. } => Some((m.name.clone(), logs.clone())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn rollback_command(&mut self, command: Command) -> Vec<Effect> {
        use Command as C;
        if self.rollback.running.is_some()
            && !matches!(command, C::Down | C::Up | C::Left | C::Right)
        {
            self.flash = Some(format!(
                "{} is running",
                self.rollback.running.clone().unwrap_or_default()
            ));
            return Vec::new();
        }
        let confirm = |app: &mut App, effect: Effect, title: String, lines: Vec<String>| {
            let typed = app.env.protected;
            let mut lines = lines;
            if typed {
                lines.push(format!(
                    "Type the database name ({}) and press Enter.",
                    app.env.target.dbname
                ));
            } else {
                lines.push("y to go ahead, Esc to stop.".into());
            }
            let ask = Ask::Effect(effect);
            app.modal = Some(if typed {
                Modal::typed(ask, title, lines, app.env.target.dbname.clone())
            } else {
                Modal::confirm(ask, title, lines)
            });
        };
        match command {
            C::Left | C::Right => self.rollback.on_checklist = command == C::Right,
            C::Down | C::Up => {
                let (sel, len) = if self.rollback.on_checklist {
                    (
                        &mut self.rollback.emergency_selected,
                        self.rollback.emergency.len(),
                    )
                } else {
                    let n = self.revertible().len();
                    (&mut self.rollback.selected, n)
                };
                if len > 0 {
                    *sel = if command == C::Down {
                        (*sel + 1).min(len - 1)
                    } else {
                        sel.saturating_sub(1)
                    };
                }
            }
            C::Mark => {
                if self.rollback.on_checklist {
                    let i = self.rollback.emergency_selected;
                    if self.rollback.emergency[i].1.is_some() {
                        self.rollback.emergency[i].1 = None;
                    } else {
                        self.modal = Some(self.text_modal(
                            Ask::EmergencyTick { index: i },
                            format!("Tick '{}'", self.rollback.emergency[i].0),
                            "A note for the journal (optional)",
                            true,
                        ));
                    }
                } else if let Some(name) = self.revertible().get(self.rollback.selected).cloned() {
                    if let Some(p) = self.rollback.marked.iter().position(|n| *n == name) {
                        self.rollback.marked.remove(p);
                    } else {
                        self.rollback.marked.push(name);
                    }
                }
            }
            C::ForwardRollback => {
                let names = if self.rollback.marked.is_empty() {
                    self.revertible().into_iter().take(1).collect()
                } else {
                    self.rollback.marked.clone()
                };
                if names.is_empty() {
                    self.flash = Some("no applied migration with a down.sql to revert".into());
                    return Vec::new();
                }
                confirm(
                    self,
                    Effect::Revert(names.clone()),
                    "Forward rollback (recommended)".into(),
                    vec![
                        format!(
                            "Writes a rollback migration from the down.sql of: {} (newest first),",
                            names.join(", ")
                        ),
                        "lints and plans it, then deploys it under lock_timeout like any \
                        migration."
                            .into(),
                    ],
                );
            }
            C::Restore => {
                if self.rollback.backup.is_none() {
                    self.flash = Some("no verified backup of this database".into());
                    return Vec::new();
                }
                self.rollback.running = Some("checking what a restore loses".into());
                return vec![Effect::PrepareRestore];
            }
            C::CodeRollback => {
                let Some(command) = self.env.hooks.commands.get("code_rollback").cloned() else {
                    self.flash = Some(
                        "no code_rollback hook configured ([environments.<env>.hooks])".into(),
                    );
                    return Vec::new();
                };
                confirm(
                    self,
                    Effect::RunHook("code_rollback".into()),
                    "Code rollback".into(),
                    vec![
                        format!("Runs: {command}"),
                        format!(
                            "(timeout {})",
                            humantime::format_duration(self.env.hooks.timeout)
                        ),
                    ],
                );
            }
            C::Resolve => {
                let Some((name, _)) = self.failed_migrations().into_iter().next() else {
                    self.flash = Some("no failed migration to resolve".into());
                    return Vec::new();
                };
                confirm(
                    self,
                    Effect::ResolveRolledBack(name.clone()),
                    format!("Record {name} as rolled back"),
                    vec![
                        "Only once its partial changes are undone (or were never made): the \
                        ledger then lets deploy run it again."
                            .into(),
                        "If it was finished by hand instead, use `pgdeck resolve --applied \
                        NAME`."
                            .into(),
                    ],
                );
            }
            _ => {}
        }
        Vec::new()
    }

    /// Ends a running step: its state, its journal entry, the cursor on to the next one.
    fn finish_step(&mut self, index: usize, outcome: Outcome, summary: String) -> Vec<Effect> {
        let item = self.checklist.items[index].clone();
        let took = self.started[index]
            .take()
            .map(|t| t.elapsed().as_millis() as u64)
            .unwrap_or(0);
        let result = match outcome {
            Outcome::Ok => Ok(summary.clone()),
            _ => Err(summary.clone()),
        };
        self.checklist.finish(index, result);
        self.record(Event::StepFinished {
            step: item.id,
            title: item.title,
            outcome,
            summary,
            duration_ms: took,
        });
        if outcome == Outcome::Ok {
            self.selected = (index + 1).min(self.checklist.items.len() - 1);
        }
        // Backups, deploys and status change what the gates and the migrations screen show.
        vec![Effect::Refresh]
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        self.flash = None;
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return self.ask_quit();
        }
        if self.modal.is_some() {
            return self.modal_key(key);
        }
        if self.help {
            self.help = false;
            return Vec::new();
        }
        let Some(command) = keymap::lookup(self.screen, &key) else {
            return Vec::new();
        };
        self.command(command)
    }

    fn ask_quit(&mut self) -> Vec<Effect> {
        match self.checklist.running() {
            Some(i) => {
                self.modal = Some(Modal::confirm(
                    Ask::Quit,
                    "Quit while a step runs?".into(),
                    vec![
                        format!("'{}' is still running.", self.checklist.items[i].title),
                        "Quitting stops the console; a deploy in flight finishes or rolls back \
                        its current migration on the server."
                            .into(),
                        "Press y to quit, Esc to stay.".into(),
                    ],
                ));
                Vec::new()
            }
            None => self.quit(),
        }
    }

    fn quit(&mut self) -> Vec<Effect> {
        self.should_quit = true;
        vec![Effect::Quit]
    }

    pub fn command(&mut self, command: Command) -> Vec<Effect> {
        use Command as C;
        if self.screen == Screen::Rollback
            && matches!(
                command,
                C::Up
                    | C::Down
                    | C::Left
                    | C::Right
                    | C::Mark
                    | C::ForwardRollback
                    | C::Restore
                    | C::CodeRollback
                    | C::Resolve
            )
        {
            return self.rollback_command(command);
        }
        match command {
            C::Quit => return self.ask_quit(),
            C::Help => self.help = true,
            C::Screen(n) => self.screen = Screen::ALL[n],
            C::NextScreen | C::PrevScreen => {
                let i = Screen::ALL
                    .iter()
                    .position(|s| *s == self.screen)
                    .unwrap_or(0);
                let n = Screen::ALL.len();
                let next = if command == C::NextScreen {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.screen = Screen::ALL[next];
            }
            C::Down | C::Up => {
                let down = command == C::Down;
                let long = self.long_queries().len();
                let (sel, len) = match self.screen {
                    Screen::Checklist => (&mut self.selected, self.checklist.items.len()),
                    Screen::Monitor => (&mut self.monitor.selected, long),
                    Screen::Migrations => (
                        &mut self.migration_selected,
                        self.migrations
                            .as_ref()
                            .ok()
                            .and_then(|m| m.as_ref())
                            .map(|m| m.status.migrations.len())
                            .unwrap_or(0),
                    ),
                    _ => return Vec::new(),
                };
                if len > 0 {
                    *sel = if down {
                        (*sel + 1).min(len - 1)
                    } else {
                        sel.saturating_sub(1)
                    };
                }
            }
            C::Activate => return self.activate(),
            C::Skip => {
                let i = self.selected;
                if !self.checklist.items[i].optional {
                    self.flash = Some("only optional steps can be skipped".into());
                } else if let Some(why) = self.checklist.gate(i) {
                    self.flash = Some(format!("locked: {why}"));
                } else {
                    self.modal = Some(self.text_modal(
                        Ask::Skip { index: i },
                        format!("Skip '{}'", self.checklist.items[i].title),
                        "Why is it not needed this time?",
                        false,
                    ));
                }
            }
            C::Acknowledge => {
                if self.checklist.facts.unacknowledged.is_empty() {
                    self.flash = Some("no DANGEROUS findings wait for acknowledgement".into());
                } else {
                    let list = self.checklist.facts.unacknowledged.join(", ");
                    self.modal = Some(self.text_modal(
                        Ask::Acknowledge,
                        "Acknowledge DANGEROUS findings".into(),
                        &format!(
                            "{list}: the reason (a change ticket, who agreed) goes in the journal"
                        ),
                        false,
                    ));
                }
            }
            C::Cancel | C::Terminate => {
                let signal = if command == C::Cancel {
                    Signal::Cancel
                } else {
                    Signal::Terminate
                };
                if self.env.read_only {
                    self.flash = Some("read-only mode: cancel and terminate are off".into());
                    return Vec::new();
                }
                let Some(q) = self.long_queries().get(self.monitor.selected).cloned() else {
                    self.flash = Some("no long-running query selected".into());
                    return Vec::new();
                };
                let verb = if signal == Signal::Cancel {
                    "Cancel the query of"
                } else {
                    "Terminate (its transaction rolls back)"
                };
                self.modal = Some(Modal::confirm(
                    Ask::Effect(Effect::Signal {
                        pid: q.pid,
                        backend_start: q.backend_start,
                        signal,
                    }),
                    format!("{verb} backend {}", q.pid),
                    vec![
                        format!(
                            "pid {}  user {}  application {}",
                            q.pid,
                            q.user,
                            if q.application.is_empty() {
                                "-"
                            } else {
                                &q.application
                            }
                        ),
                        format!("running for {:.0}s, state {}", q.query_seconds, q.state),
                        format!(
                            "query: {}",
                            q.query_line.chars().take(200).collect::<String>()
                        ),
                        "Re-checked against pid + backend_start before it is sent. y to go \
                        ahead, Esc to keep it."
                            .into(),
                    ],
                ));
            }
            C::CancelStep => {
                let Some(i) = self.checklist.running() else {
                    self.flash = Some("no step is running".into());
                    return Vec::new();
                };
                let title = self.checklist.items[i].title.clone();
                self.modal = Some(Modal::confirm(
                    Ask::Effect(Effect::CancelStep(i)),
                    format!("Cancel '{title}'"),
                    vec![
                        "Stops the step now. Its session to the server closes: an open \
                        transaction rolls back (a deploy keeps the migrations already applied; \
                        the one in flight is undone or, outside a transaction, left failed for \
                        `resolve`), a partial backup file is deleted."
                            .into(),
                        "y to cancel it, Esc to let it run.".into(),
                    ],
                ));
            }
            C::Pause => {
                self.monitor.paused = !self.monitor.paused;
            }
            C::Faster | C::Slower => {
                let secs = self.monitor.interval.as_secs_f64();
                let next = if command == C::Faster {
                    (secs / 2.0).max(0.5)
                } else {
                    (secs * 2.0).min(30.0)
                };
                self.monitor.interval = Duration::from_secs_f64(next);
                return vec![Effect::SetInterval(self.monitor.interval)];
            }
            C::ToRollback => self.screen = Screen::Rollback,
            C::ToggleDown => self.show_down = !self.show_down,
            // Only the Rollback screen binds these.
            C::Left
            | C::Right
            | C::Mark
            | C::ForwardRollback
            | C::Restore
            | C::CodeRollback
            | C::Resolve => {}
            C::WriteReport => {
                if let Some(i) = self.checklist.index_of("report") {
                    return vec![Effect::RunStep {
                        index: i,
                        operation: Operation::WriteReport,
                    }];
                }
            }
        }
        Vec::new()
    }

    fn text_modal(&self, ask: Ask, title: String, prompt: &str, optional: bool) -> Modal {
        Modal::text(ask, title, prompt, optional)
    }

    /// Enter on the checklist: run an automated item, tick a manual one.
    fn activate(&mut self) -> Vec<Effect> {
        if self.screen != Screen::Checklist {
            return Vec::new();
        }
        let i = self.selected;
        if let Some(why) = self.checklist.gate(i) {
            self.flash = Some(format!("locked: {why}"));
            return Vec::new();
        }
        let item = self.checklist.items[i].clone();
        if self.checklist.state(i).is_complete() && item.operation.is_none() {
            self.flash = Some("already ticked".into());
            return Vec::new();
        }
        let tick_by_hand = item.operation == Some(Operation::RollbackPlan)
            && matches!(self.checklist.state(i), State::Failed { .. });
        match item.operation {
            _ if tick_by_hand => {
                self.modal = Some(self.text_modal(
                    Ask::Tick { index: i },
                    format!("Tick '{}' by hand", item.title),
                    "Where is the rollback plan for the migrations without down.sql?",
                    false,
                ));
                Vec::new()
            }
            None => {
                self.modal = Some(self.text_modal(
                    Ask::Tick { index: i },
                    format!("Tick '{}'", item.title),
                    "A note for the journal (optional): a link, a ticket, who checked",
                    true,
                ));
                Vec::new()
            }
            Some(op @ Operation::Deploy) if self.env.protected => {
                self.modal = Some(Modal::typed(
                    Ask::RunStep {
                        index: i,
                        operation: op,
                    },
                    format!("Deploy to protected environment '{}'", self.env.name),
                    vec![
                        format!("Applies the pending migrations to {}.", self.env.target),
                        format!(
                            "Type the database name ({}) and press Enter.",
                            self.env.target.dbname
                        ),
                    ],
                    self.env.target.dbname.clone(),
                ));
                Vec::new()
            }
            Some(op) => self.run_step(i, op),
        }
    }

    fn run_step(&mut self, index: usize, operation: Operation) -> Vec<Effect> {
        match self.checklist.start(index) {
            Ok(()) => {
                self.started[index] = Some(Instant::now());
                let item = &self.checklist.items[index];
                let (step, title) = (item.id.clone(), item.title.clone());
                self.record(Event::StepStarted { step, title });
                vec![Effect::RunStep { index, operation }]
            }
            Err(why) => {
                self.flash = Some(why);
                Vec::new()
            }
        }
    }

    fn modal_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(modal) = self.modal.as_mut() else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Esc => {
                self.modal = None;
                return Vec::new();
            }
            KeyCode::Char('y') if !modal.text => {}
            KeyCode::Enter if modal.text => {}
            KeyCode::Backspace if modal.text => {
                modal.input.pop();
                return Vec::new();
            }
            KeyCode::Char(c) if modal.text => {
                if modal.input.chars().count() < 500 {
                    modal.input.push(c);
                }
                return Vec::new();
            }
            _ => return Vec::new(),
        }
        // Confirmed.
        let input = modal.input.trim().to_owned();
        if let Some(expect) = &modal.expect
            && input != *expect
        {
            modal.error = Some(format!("that is not {expect}"));
            return Vec::new();
        }
        if modal.text && modal.expect.is_none() && !modal.optional_text && input.is_empty() {
            modal.error = Some("a reason is required".into());
            return Vec::new();
        }
        let Some(modal) = self.modal.take() else {
            return Vec::new();
        };
        match modal.ask {
            Ask::Quit => self.quit(),
            Ask::Effect(effect) => {
                self.record(Event::Confirmed {
                    what: modal.title.clone(),
                });
                if effect.is_rollback_action() {
                    self.rollback.running = Some(modal.title.clone());
                }
                vec![effect]
            }
            Ask::EmergencyTick { index } => {
                let note = (!input.is_empty()).then_some(input);
                let title = self.rollback.emergency[index].0.clone();
                self.rollback.emergency[index].1 =
                    Some(note.clone().unwrap_or_else(|| "ticked".into()));
                self.record(Event::StepTicked {
                    step: format!("emergency_{}", index + 1),
                    title,
                    note,
                });
                Vec::new()
            }
            Ask::RunStep { index, operation } => {
                self.record(Event::Confirmed {
                    what: modal.title.clone(),
                });
                self.run_step(index, operation)
            }
            Ask::Tick { index } => {
                let note = (!input.is_empty()).then_some(input);
                if let Err(e) = self.checklist.tick(index, note.clone()) {
                    self.flash = Some(e);
                    return Vec::new();
                }
                let item = &self.checklist.items[index];
                let (step, title) = (item.id.clone(), item.title.clone());
                self.record(Event::StepTicked { step, title, note });
                self.selected = (index + 1).min(self.checklist.items.len() - 1);
                Vec::new()
            }
            Ask::Skip { index } => {
                if let Err(e) = self.checklist.skip(index, input.clone()) {
                    self.flash = Some(e);
                    return Vec::new();
                }
                let item = &self.checklist.items[index];
                let (step, title) = (item.id.clone(), format!("{} (skipped)", item.title));
                self.record(Event::StepTicked {
                    step,
                    title,
                    note: Some(input),
                });
                self.selected = (index + 1).min(self.checklist.items.len() - 1);
                Vec::new()
            }
            Ask::Acknowledge => {
                let what = format!(
                    "deploy with DANGEROUS findings: {}",
                    self.checklist.facts.unacknowledged.join(", ")
                );
                self.record(Event::Override {
                    what,
                    reason: input.clone(),
                });
                self.acknowledged = Some(input);
                let mut facts = self.checklist.facts.clone();
                facts.unacknowledged.clear();
                self.checklist.set_facts(facts);
                Vec::new()
            }
        }
    }

    /// Rebuilds the checklist state from a resumed session's journal.
    pub fn restore_from(&mut self, entries: &[Entry]) {
        for e in entries {
            match &e.event {
                Event::StepFinished {
                    step,
                    outcome: Outcome::Ok,
                    summary,
                    ..
                } => self.checklist.restore(
                    step,
                    State::Done {
                        summary: summary.clone(),
                    },
                ),
                Event::StepTicked { step, note, title } => self.checklist.restore(
                    step,
                    if title.ends_with("(skipped)") {
                        State::Skipped {
                            note: note.clone().unwrap_or_default(),
                        }
                    } else {
                        State::Ticked { note: note.clone() }
                    },
                ),
                Event::Override { reason, .. } => self.acknowledged = Some(reason.clone()),
                _ => {}
            }
        }
        let (done, _) = self.checklist.progress();
        self.selected = done.min(self.checklist.items.len() - 1);
    }
}
