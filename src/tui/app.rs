//! The console's state and the one place it changes: `App::update` folds a message (a key, a
//! tick, a collector update, a job's progress or end) into the state and returns the effects
//! the loop must start. Keys go to the screen on show; the screens build the requests of the
//! release workflows, and a refusal comes back here to become the modal that answers it. No I/O
//! here but the journal append, so every key path is testable without a terminal or a server.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::Utc;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};

use super::deploying::Deploying;
use super::jobs::{Job, Origin, Override, PlanText, Refreshed};
use super::keymap::{self, Command};
use super::modal::{Choice, Input, Modal, Then};
use super::screens::checklist::{Acknowledgement, ChecklistView};
use super::screens::logs::{LogsView, Which};
use super::screens::migrations::MigrationsScreen;
use super::screens::monitor::MonitorView;
use super::screens::rollback::{self, RollbackView};
use super::screens::{self, Screen};
use crate::checklist::{Checklist, State};
use crate::error::{Error, ErrorKind, Remedy};
use crate::health::{Level, Report};
use crate::journal::{Entry, Event, Outcome, Recorder, SharedJournal};
use crate::lint::plan::Allow;
use crate::monitor::watch::Update;
use crate::monitor::{LongQuery, Pane};
use crate::release::{Confirmation, Environment};

/// The loop ticks once a second; the facts are read again this often.
const REFRESH_EVERY_TICKS: u64 = 10;

/// Everything that reaches the loop, from any producer.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    /// The wheel, or a left click.
    Mouse(MouseEvent),
    Resize,
    Tick,
    Monitor(Box<Update>),
    Refreshed(Box<Refreshed>),
    /// What a job is doing now.
    Progress {
        origin: Origin,
        detail: String,
        fraction: Option<f64>,
    },
    /// A deploy's event, for the state of what it does (`Deploying`).
    Deploy {
        origin: Origin,
        event: Box<crate::migrate::DeployEvent>,
    },
    /// The backend the Monitor's detail view asked for (none: it is gone).
    Inspected(Result<Option<Box<crate::monitor::Backend>>, String>),
    /// Every environment's status, for the Migrations screen's matrix, or why it was not read.
    Matrix(Result<Box<crate::release::Matrix>, String>),
    /// A log follower's news.
    Log {
        which: Which,
        update: Box<crate::monitor::logs::LogUpdate>,
    },
    /// Something changed in the migrations folder.
    FolderChanged,
    /// A restore ended: the migrations it made pending again.
    Restored {
        pending_again: Vec<String>,
        /// Tables made after the backup, which the restore left as they are.
        left_in_place: Vec<String>,
    },
    /// The plan, worded, for the plan view.
    Plan(Box<PlanText>),
    /// A line of a job's output (a check that held, a hook's output, a retry).
    Line {
        origin: Origin,
        line: String,
    },
    /// The job's guards held; its work starts.
    Started {
        origin: Origin,
    },
    Health(Box<Report>),
    /// A background health sample could not be taken.
    HealthFailed(String),
    /// An entry a workflow appended to the session's journal.
    Journaled(Box<Entry>),
    /// A job ended: its summary, or the error (a refusal says what would satisfy it).
    Done {
        origin: Origin,
        job: Box<Job>,
        result: Result<String, Error>,
    },
    /// SIGTERM: close as `q` would.
    Stop,
}

/// What the loop must start after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Run {
        origin: Origin,
        job: Job,
    },
    /// Cancel the job running there: its statement is cancelled on the server.
    Cancel(Origin),
    /// Reload migrations, status, plan, gate facts and the newest backup.
    Refresh,
    SetInterval(Duration),
    /// Sample health in the background (true) or stop (false).
    LiveHealth(bool),
    Quit,
}

pub struct App {
    pub env: Environment,
    pub screen: Screen,
    pub checklist: Checklist,
    pub steps: ChecklistView,
    pub monitor: MonitorView,
    pub migrations: MigrationsScreen,
    pub rollback: RollbackView,
    pub health: Option<Box<Report>>,
    /// Why the last background health sample failed, and when (cleared by the next report).
    pub health_failed: Option<(String, chrono::DateTime<Utc>)>,
    /// Tables the last restore left in place (made after its backup).
    pub left_in_place: Vec<String>,
    /// The pending migrations when the plan was read: another set needs another review.
    /// Each as `name@checksum`: an edited migration is another one to review.
    pub reviewed_pending: Option<Vec<String>>,
    /// A resumed session's plan was reviewed before: what is pending at the first refresh is
    /// taken as what was read.
    adopt_review: bool,
    /// Migrations a restore made pending again (the next deploy would apply them again).
    pub pending_again: Vec<String>,
    /// The whole plan on screen, over the screen on show.
    pub plan_view: Option<PlanView>,
    /// Health is sampled in the background (from the Deploy step until the report).
    pub health_live: bool,
    /// Another console holds this session: nothing is run or recorded from this one.
    pub read_only: Option<String>,
    /// The application and server logs.
    pub logs: LogsView,
    /// The deploy or forward rollback running, and where it was started.
    pub deploying: Option<(Origin, Deploying)>,
    /// Recent p95 latencies (µs) of the database probe, for the sparkline.
    pub probe_history: VecDeque<u64>,
    pub journal: Vec<Entry>,
    /// The Journal screen's window ends at this entry (none: it follows the newest).
    pub journal_selected: Option<usize>,
    pub journal_path: Option<std::path::PathBuf>,
    pub modal: Option<Modal>,
    pub help: bool,
    /// The filter typed for each screen's list (`/`), by `Screen::ALL` index.
    pub filters: [String; 6],
    /// Keys go to the filter of the screen on show.
    pub filtering: bool,
    pub flash: Option<String>,
    pub should_quit: bool,
    /// Repaint needed.
    pub dirty: bool,
    /// The generation of the newest refresh folded in.
    refreshed: u64,
    ticks: u64,
    recorder: Option<SharedJournal>,
}

impl App {
    pub fn new(env: Environment, checklist: Checklist, journal: Option<SharedJournal>) -> App {
        let n = checklist.items.len();
        let journal_path = journal.as_ref().map(|j| j.path());
        let logs = LogsView::new(env.logs.app_log.is_some(), env.logs.alert_per_minute);
        let entries = journal_path
            .as_deref()
            .and_then(|p| crate::journal::read(p).ok())
            .unwrap_or_default();
        App {
            env,
            screen: Screen::Checklist,
            checklist,
            steps: ChecklistView::new(n),
            monitor: MonitorView::default(),
            migrations: MigrationsScreen::default(),
            rollback: RollbackView::new(),
            health: None,
            health_failed: None,
            logs,
            deploying: None,
            plan_view: None,
            pending_again: Vec::new(),
            reviewed_pending: None,
            adopt_review: false,
            left_in_place: Vec::new(),
            health_live: false,
            read_only: None,
            probe_history: VecDeque::new(),
            journal: entries,
            journal_selected: None,
            journal_path,
            modal: None,
            help: false,
            filters: Default::default(),
            filtering: false,
            flash: None,
            should_quit: false,
            dirty: true,
            refreshed: 0,
            ticks: 0,
            recorder: journal,
        }
    }

    /// Records an event in the journal file and the Journal screen.
    pub fn record(&mut self, event: Event) {
        let entry = match &self.recorder {
            Some(j) => match j.record(event) {
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

    /// Alerts for the header: the server unreachable; connections over the threshold, a
    /// migration waiting for ACCESS EXCLUSIVE with sessions queued behind it (marked stale when
    /// they come from an old sample); this console's deploy waiting for a lock; health in
    /// alert, with the time of its sample.
    pub fn alerts(&self) -> Vec<String> {
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        let stale = self
            .monitor
            .stale_label(now)
            .map(|s| format!("({s}) "))
            .unwrap_or_default();
        let own_pid = self.deploying.as_ref().and_then(|(_, d)| d.backend_pid);
        if let Some((_, d)) = &self.deploying
            && (d.waits_for(now).is_some() || d.attempt > 1)
        {
            // Steady across its retries: the deploy is in trouble until it ends.
            out.push(match d.root_blocker(now) {
                Some(h) => format!(
                    "deploy waits for a lock held by pid {} (attempt {} of {})",
                    h.pid, d.attempt, d.attempts
                ),
                None => format!(
                    "deploy retrying for its locks (attempt {} of {})",
                    d.attempt, d.attempts
                ),
            });
        }
        if let Some((_, d)) = &self.deploying
            && let Some(w) = &d.replica_wait
        {
            out.push(format!("deploy paused: {w}"));
        }
        if !self.pending_again.is_empty() {
            out.push(format!(
                "after the restore, pending again: {}",
                self.pending_again.join(", ")
            ));
        }
        if let Some(s) = &self.monitor.last {
            if let Pane::Ok(c) = &s.connections
                && c.data.utilisation > 0.8
            {
                out.push(format!(
                    "{stale}connections {:.0} % of usable",
                    c.data.utilisation * 100.0
                ));
            }
            if let Pane::Ok(b) = &s.blocking {
                for root in &b.data.roots {
                    for v in root
                        .victims
                        .iter()
                        .filter(|v| v.ddl_access_exclusive && Some(v.pid) != own_pid)
                    {
                        out.push(format!(
                            "{stale}DDL pid {} waits for ACCESS EXCLUSIVE, {} queued",
                            v.pid, v.queued_behind
                        ));
                    }
                }
            }
        }
        if let Some(s) = &self.monitor.last {
            out.extend(s.alerts.iter().map(|a| format!("{stale}{}", a.text)));
        }
        out.extend(self.logs.alerts());
        if let Some(h) = &self.health
            && h.verdict == Level::Alert
        {
            let worst: Vec<String> = h
                .checks
                .iter()
                .filter(|c| c.level == Level::Alert)
                .map(|c| c.name.clone())
                .collect();
            out.push(format!(
                "health ALERT at {}: {}",
                h.at.format("%H:%M:%S"),
                worst.join(", ")
            ));
        }
        out
    }

    /// The pending migrations as last read, each as `name@checksum` of its local file.
    pub fn pending_names(&self) -> Option<Vec<String>> {
        self.migrations.view().map(|v| {
            v.status
                .pending_names()
                .iter()
                .map(|n| {
                    let sum = v.dir.get(n).map(|m| m.checksum.as_str()).unwrap_or("");
                    format!("{n}@{sum}")
                })
                .collect()
        })
    }

    /// Reads every environment's status in the background, for the matrix.
    pub fn read_environments(&mut self) -> Vec<Effect> {
        self.run(Origin::Matrix, Job::Matrix)
    }

    /// Says in the journal and the footer that steps were opened again, and why.
    fn record_reopened(&mut self, from: usize, why: &str) {
        let title = self.checklist.items[from].title.clone();
        let text = format!("{why}: '{title}' and the steps after it are open again");
        self.flash = Some(text.clone());
        self.steps.selected = from;
        self.steps.log(text);
    }

    /// The filter typed for `screen`'s list, or "".
    pub fn filter_of(&self, screen: Screen) -> &str {
        let i = Screen::ALL.iter().position(|s| *s == screen).unwrap_or(0);
        &self.filters[i]
    }

    fn filter_mut(&mut self) -> &mut String {
        let i = Screen::ALL
            .iter()
            .position(|s| *s == self.screen)
            .unwrap_or(0);
        &mut self.filters[i]
    }

    /// Esc on a screen with nothing open: the filter goes.
    pub fn clear_filter(&mut self) {
        self.filter_mut().clear();
        self.filtering = false;
    }

    /// A key while the filter is typed.
    fn filter_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc => self.clear_filter(),
            KeyCode::Enter => self.filtering = false,
            KeyCode::Backspace => {
                self.filter_mut().pop();
            }
            KeyCode::Char(c)
                if !key.modifiers.contains(KeyModifiers::CONTROL)
                    && self.filter_mut().chars().count() < 100 =>
            {
                self.filter_mut().push(c);
            }
            _ => {}
        }
        // The selections start over on the filtered list.
        self.monitor.selected = 0;
        self.monitor.lock_selected = 0;
        self.migrations.selected = 0;
        self.rollback.selected = 0;
        let filter = self.filter_of(Screen::Checklist).to_lowercase();
        if self.screen == Screen::Checklist
            && let Some(i) = self
                .checklist
                .items
                .iter()
                .position(|i| i.title.to_lowercase().contains(&filter))
        {
            self.steps.selected = i;
        }
        Vec::new()
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
            Msg::Mouse(m) => self.mouse(m),
            Msg::Resize => Vec::new(),
            Msg::Tick => {
                // Ages and clocks move; repaint only when something shows them.
                self.dirty = self.checklist.running().is_some()
                    || self.screen == Screen::Logs
                    || !self.logs.alerts().is_empty()
                    || self.monitor.unreachable.is_some()
                    || self.deploying.is_some()
                    || self.rollback.running.is_some();
                // What the gates and screens show is read again now and then: a backup moved,
                // a deploy by someone else, a migration that failed elsewhere.
                self.ticks += 1;
                if self.ticks.is_multiple_of(REFRESH_EVERY_TICKS) {
                    let mut effects = vec![Effect::Refresh];
                    // The matrix on show is read again with the rest.
                    if self.screen == Screen::Migrations
                        && self.migrations.environments_shown
                        && !self.migrations.environments.reading
                    {
                        effects.extend(self.read_environments());
                    }
                    return effects;
                }
                Vec::new()
            }
            Msg::Monitor(update) => {
                let fresh = matches!(*update, Update::Fresh { .. });
                self.monitor.fold(*update);
                // An open detail view is read again with each sample: it never shows a
                // backend as it was minutes ago.
                match &self.monitor.detail {
                    Some(d) if fresh && self.screen == Screen::Monitor => {
                        let pid = d.pid();
                        self.run(Origin::Inspect, Job::Inspect { pid })
                    }
                    _ => Vec::new(),
                }
            }
            Msg::Refreshed(r) => {
                // Single flight keeps them in order; this keeps an older one from ever winning.
                if r.generation < self.refreshed {
                    return Vec::new();
                }
                self.refreshed = r.generation;
                let Refreshed {
                    migrations,
                    mut facts,
                    backup,
                    pitr,
                    session,
                    ..
                } = *r;
                // A read-only console follows what the holding console does.
                if self.read_only.is_some()
                    && let Some(entries) = session
                    && entries.len() != self.journal.len()
                {
                    let selected = self.steps.selected;
                    self.checklist =
                        Checklist::new(self.checklist.items.clone(), self.checklist.facts.clone());
                    self.restore_from(&entries);
                    self.steps.selected = selected;
                    self.journal = entries;
                }
                if let Some(a) = &self.steps.acknowledged {
                    facts.unacknowledged.retain(|f| !a.findings.contains(f));
                }
                self.checklist.set_facts(facts);
                self.migrations.data = migrations.map(Some);
                self.rollback.backup = backup;
                self.rollback.pitr = pitr;
                if std::mem::take(&mut self.adopt_review) && self.reviewed_pending.is_none() {
                    self.reviewed_pending = self.pending_names();
                }
                // A migration pending now that was not in the plan read (new, or edited since)
                // needs another review; the reviewed ones being applied does not.
                if let (Some(reviewed), Some(now), Some(plan)) = (
                    &self.reviewed_pending,
                    self.pending_names(),
                    self.checklist.index_of("plan"),
                ) && self.checklist.state(plan).is_complete()
                {
                    let new: Vec<String> = now
                        .iter()
                        .filter(|n| !reviewed.contains(n))
                        .cloned()
                        .collect();
                    let deploying = self
                        .checklist
                        .running()
                        .is_some_and(|r| Some(r) == self.checklist.index_of("deploy"));
                    if !new.is_empty() && !deploying {
                        self.reviewed_pending = None;
                        let names: Vec<&str> = new
                            .iter()
                            .map(|n| n.split('@').next().unwrap_or(n))
                            .collect();
                        if self.checklist.reopen_from(plan) > 0 {
                            self.record_reopened(
                                plan,
                                &format!(
                                    "not in the plan you read (new or edited): {}",
                                    names.join(", ")
                                ),
                            );
                        }
                    }
                }
                Vec::new()
            }
            Msg::Progress {
                origin,
                detail,
                fraction,
            } => {
                match origin {
                    Origin::Step(i) => self.checklist.progress_of(i, detail, fraction),
                    Origin::Rollback => self.rollback.running_detail = Some(detail),
                    Origin::Monitor | Origin::Journal | Origin::Inspect | Origin::Matrix => {}
                }
                Vec::new()
            }
            Msg::FolderChanged => vec![Effect::Refresh],
            Msg::Log { which, update } => {
                if let Some(t) = self.logs.tail_mut(which) {
                    t.apply(*update);
                }
                // Lines arrive often: drawn when on show or when they change the alerts.
                self.dirty = self.screen == Screen::Logs || !self.logs.alerts().is_empty();
                Vec::new()
            }
            Msg::Restored {
                pending_again,
                left_in_place,
            } => {
                self.left_in_place = left_in_place;
                // What the deploy and the checks after it saw is gone with the restore.
                if !pending_again.is_empty()
                    && let Some(d) = self.checklist.index_of("deploy")
                    && self.checklist.reopen_from(d) > 0
                {
                    self.record_reopened(d, "the restore undid the deploy");
                }
                self.pending_again = pending_again;
                Vec::new()
            }
            Msg::Plan(plan) => {
                self.plan_view = Some(PlanView::of(&plan.text));
                Vec::new()
            }
            Msg::Matrix(result) => {
                self.migrations.environments.fold(result, Utc::now());
                Vec::new()
            }
            Msg::Inspected(result) => {
                use super::screens::monitor::Detail;
                if let Some(d) = &self.monitor.detail {
                    let pid = d.pid();
                    self.monitor.detail_at = Some(Utc::now());
                    self.monitor.detail = Some(match result {
                        Ok(Some(b)) if b.pid == pid => Detail::Loaded(b),
                        Ok(Some(_)) => return Vec::new(),
                        Ok(None) => Detail::Failed {
                            pid,
                            cause: format!("backend {pid} no longer exists"),
                        },
                        Err(cause) => Detail::Failed { pid, cause },
                    });
                }
                Vec::new()
            }
            Msg::Deploy { origin, event } => {
                match &mut self.deploying {
                    Some((o, d)) if *o == origin => d.fold(&event),
                    other => {
                        let mut d = Deploying::default();
                        d.fold(&event);
                        *other = Some((origin, d));
                    }
                }
                Vec::new()
            }
            Msg::Line { origin, line } => {
                match origin {
                    Origin::Step(_) => self.steps.log(line),
                    Origin::Rollback | Origin::Monitor | Origin::Journal => self.rollback.log(line),
                    Origin::Inspect | Origin::Matrix => {}
                }
                Vec::new()
            }
            Msg::Started { origin } => {
                if let Origin::Step(i) = origin {
                    let item = &self.checklist.items[i];
                    let (step, title) = (item.id.clone(), item.title.clone());
                    self.record(Event::StepStarted { step, title });
                }
                Vec::new()
            }
            Msg::HealthFailed(cause) => {
                self.health_failed = Some((cause, Utc::now()));
                Vec::new()
            }
            Msg::Health(report) => {
                self.health_failed = None;
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
            Msg::Journaled(entry) => {
                self.journal.push(*entry);
                Vec::new()
            }
            Msg::Done {
                origin,
                job,
                result,
            } => {
                let deploy_ended = matches!(*job, Job::Deploy(_) | Job::Revert(_));
                let effects = self.done(origin, *job, result);
                self.refresh_quit_modal();
                if deploy_ended
                    && let Some(m) = self.modal.as_mut()
                    && m.lines
                        .first()
                        .is_some_and(|l| l.starts_with("The deploy waits for it"))
                {
                    m.lines[0] = "The deploy has ended since: terminating this session no \
                                  longer helps it (Esc leaves it be)."
                        .into();
                }
                effects
            }
            Msg::Stop => self.quit(),
        }
    }

    /// Starts a job; a checklist step shows it running.
    pub fn run(&mut self, origin: Origin, job: Job) -> Vec<Effect> {
        if let Some(holder) = &self.read_only
            && !matches!(job, Job::Inspect { .. } | Job::Matrix)
        {
            self.flash = Some(format!("read-only: {holder} drives this session"));
            return Vec::new();
        }
        let mut effects = Vec::new();
        if matches!(job, Job::Restore(_)) && self.health_live {
            // Its session would be one of those in the restore's way.
            effects.push(Effect::LiveHealth(false));
        }
        if matches!(job, Job::Deploy(_)) && matches!(origin, Origin::Step(_)) && !self.health_live {
            // From the deploy until the report, health is watched without being asked.
            self.health_live = true;
            effects.push(Effect::LiveHealth(true));
        }
        match origin {
            Origin::Step(i) => {
                if let Err(why) = self.checklist.start(i) {
                    self.flash = Some(why);
                    return Vec::new();
                }
                self.steps.started(i);
                self.checklist
                    .progress_of(i, "checking the guards".into(), None);
            }
            Origin::Rollback => {
                self.rollback.running = Some(job.title());
                self.rollback.running_detail = None;
            }
            Origin::Matrix => self.migrations.environments.reading = true,
            Origin::Monitor | Origin::Journal | Origin::Inspect => {}
        }
        effects.push(Effect::Run { origin, job });
        effects
    }

    /// A key while the plan is on screen: it scrolls, and closing it ends the review.
    fn plan_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(pv) = self.plan_view.as_mut() else {
            return Vec::new();
        };
        match keymap::lookup(self.screen, &key) {
            Some(Command::Move(m)) => {
                pv.scroll = m.apply(pv.scroll, pv.lines.len());
                Vec::new()
            }
            Some(Command::Activate) => {
                if let Some(pv) = self.plan_view.take()
                    && let Some((i, outcome, text)) = pv.pending
                {
                    self.finish_step(i, outcome, text);
                }
                Vec::new()
            }
            Some(Command::Back | Command::Quit) => {
                // Closed unread: the review step is not done.
                if let Some(pv) = self.plan_view.take()
                    && let Some((i, _, _)) = pv.pending
                {
                    self.checklist.abandon(i);
                    self.steps.stopped(i);
                    self.flash =
                        Some("plan closed without review: Enter on the step shows it again".into());
                }
                Vec::new()
            }
            _ => {
                self.flash = Some("the plan is open: j/k scroll it, Esc or Enter closes it".into());
                Vec::new()
            }
        }
    }

    /// A job ended. A refusal for want of a confirmation asks for it; a refusal an override,
    /// an acknowledgement or terminating sessions can answer offers that; anything else is
    /// shown with its hint and journaled.
    fn done(&mut self, origin: Origin, job: Job, result: Result<String, Error>) -> Vec<Effect> {
        if self.deploying.as_ref().is_some_and(|(o, _)| *o == origin) {
            self.deploying = None;
        }
        if let Err(e) = &result
            && let Some(ask) = e.ask()
        {
            self.abandon(origin);
            let signalled = match &job {
                Job::Signal(r) => Some(r.pid),
                _ => None,
            };
            let mut modal = Modal::confirmation(origin, job, ask.clone());
            if origin == Origin::Monitor
                && let Some(note) = super::screens::monitor::stale_note(self)
            {
                modal.lines.insert(0, note);
            }
            if let Some(pid) = signalled
                && let Some((_, d)) = &self.deploying
                && d.root_blocker(std::time::Instant::now())
                    .is_some_and(|h| h.pid == pid)
            {
                modal.lines.insert(
                    0,
                    format!(
                        "The deploy waits for it, on attempt {} of {}.",
                        d.attempt, d.attempts
                    ),
                );
            }
            if let Some(pid) = signalled
                && self
                    .deploying
                    .as_ref()
                    .and_then(|(_, d)| d.backend_pid)
                    .is_some_and(|p| p == pid)
            {
                modal.lines.insert(
                    0,
                    "This is this console's own deploy: ending its session stops the deploy \
                     (x on its step cancels it cleanly, its migration rolled back)."
                        .into(),
                );
            }
            self.modal = Some(modal);
            return Vec::new();
        }
        let answers = match &result {
            Err(e) if e.kind == ErrorKind::Refused => answers(origin, &job, e),
            _ => Vec::new(),
        };
        let text = match &result {
            Ok(s) => s.clone(),
            Err(e) => super::widgets::error_text(e),
        };
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        let mut effects = vec![Effect::Refresh];
        if matches!(job, Job::Deploy(_)) && outcome == Outcome::Ok {
            self.pending_again.clear();
        }
        if matches!(job, Job::Deploy(_))
            && outcome != Outcome::Ok
            && let Origin::Step(i) = origin
            && i + 1 < self.checklist.items.len()
            && self.checklist.reopen_from(i + 1) > 0
        {
            self.record_reopened(i + 1, "the deploy did not complete");
        }
        if matches!(job, Job::Restore(_)) && self.health_live {
            // Its own health session was paused for the restore.
            effects.push(Effect::LiveHealth(true));
        }
        if job == Job::WriteReport && outcome == Outcome::Ok && self.health_live {
            self.health_live = false;
            effects.push(Effect::LiveHealth(false));
        }
        match origin {
            Origin::Step(i) if job == Job::Plan && self.plan_view.is_some() => {
                self.reviewed_pending = self.pending_names();
                // Reviewed once it was shown: the step ends when the plan is closed.
                if let Some(pv) = self.plan_view.as_mut() {
                    pv.pending = Some((i, outcome, text));
                }
                self.checklist.progress_of(
                    i,
                    "the plan is on screen: read it; Esc or Enter closes it and ends this step"
                        .into(),
                    None,
                );
            }
            Origin::Step(i) => self.finish_step(i, outcome, text),
            Origin::Rollback => self.rollback_done(&job, outcome, &text),
            Origin::Matrix => {
                // Its matrix came as `Msg::Matrix`; a read that never sent one was stopped.
                if let Err(e) = &result
                    && self.migrations.environments.reading
                {
                    self.migrations
                        .environments
                        .fold(Err(super::widgets::error_text(e)), Utc::now());
                }
                return Vec::new();
            }
            Origin::Inspect => {
                if let (Err(e), Some(d)) = (&result, &self.monitor.detail) {
                    self.monitor.detail = Some(super::screens::monitor::Detail::Failed {
                        pid: d.pid(),
                        cause: super::widgets::error_text(e),
                    });
                }
                return Vec::new();
            }
            Origin::Monitor | Origin::Journal => {
                // The footer has one line: cause and hint both on it, and in the log.
                self.flash = Some(text.replace('\n', " · "));
                for line in text.lines() {
                    self.rollback.log(format!("{}: {line}", job.title()));
                }
            }
        }
        if let Err(e) = &result
            && !answers.is_empty()
        {
            let mut lines = vec![e.cause.clone()];
            let hint = super::widgets::hint(e);
            if !hint.is_empty() {
                lines.push(format!("hint: {hint}"));
            }
            self.modal = Some(Modal::new(
                "Refused",
                lines,
                Input::Choice(answers),
                Then::Close,
            ));
        }
        effects
    }

    /// A job that asked for a confirmation is no longer running.
    fn abandon(&mut self, origin: Origin) {
        match origin {
            Origin::Step(i) => {
                self.checklist.abandon(i);
                self.steps.stopped(i);
            }
            Origin::Rollback => {
                self.rollback.running = None;
                self.rollback.running_detail = None;
            }
            Origin::Monitor | Origin::Journal | Origin::Inspect | Origin::Matrix => {}
        }
    }

    fn rollback_done(&mut self, job: &Job, outcome: Outcome, text: &str) {
        self.rollback.running = None;
        self.rollback.running_detail = None;
        let what = job.title();
        self.rollback.log(format!(
            "{what}: {}",
            match outcome {
                Outcome::Ok => "done",
                Outcome::Failed => "FAILED",
                Outcome::Cancelled => "cancelled",
            }
        ));
        for line in text.lines() {
            self.rollback.log(format!("  {line}"));
        }
        self.flash = Some(format!("{what}: {}", text.lines().next().unwrap_or("")));
        if outcome == Outcome::Ok {
            match job {
                Job::Revert(_) => {
                    self.tick_emergency(1, text);
                    self.tick_emergency(5, text);
                    self.rollback.marked.clear();
                }
                Job::Restore(_) => self.tick_emergency(5, text),
                _ => {}
            }
        }
    }

    /// Ticks an emergency item (journaled, so a resumed session has it).
    pub fn tick_emergency(&mut self, index: usize, note: &str) {
        let Some(item) = self.rollback.emergency.get_mut(index) else {
            return;
        };
        if item.1.is_some() {
            return;
        }
        let note: String = note
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect();
        item.1 = Some(note.clone());
        let title = item.0.clone();
        self.record(Event::StepTicked {
            step: rollback::emergency_id(index),
            title,
            note: Some(note),
        });
    }

    /// Ends a running step: its state, its journal entry, the cursor on to the next one.
    fn finish_step(&mut self, index: usize, outcome: Outcome, summary: String) {
        if !matches!(self.checklist.state(index), State::Running { .. }) {
            return;
        }
        let item = self.checklist.items[index].clone();
        let took = self.steps.stopped(index);
        let result = match outcome {
            Outcome::Ok => Ok(summary.clone()),
            Outcome::Cancelled => Err(format!("cancelled: {summary}")),
            Outcome::Failed => Err(summary.clone()),
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
            self.steps.selected = (index + 1).min(self.checklist.items.len() - 1);
        }
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
        if self.filtering {
            return self.filter_key(key);
        }
        if self.plan_view.is_some() {
            return self.plan_key(key);
        }
        let Some(command) = keymap::lookup(self.screen, &key) else {
            return Vec::new();
        };
        self.command(command)
    }

    /// The wheel moves the list in focus; a click on a tab opens its screen.
    fn mouse(&mut self, m: MouseEvent) -> Vec<Effect> {
        if self.modal.is_some() || self.help {
            return Vec::new();
        }
        match m.kind {
            MouseEventKind::ScrollDown => self.command(Command::Move(keymap::Motion::Down)),
            MouseEventKind::ScrollUp => self.command(Command::Move(keymap::Motion::Up)),
            _ if m.row == 2 => {
                // The tabs as the header draws them: " 1 Checklist " and a space.
                let mut x = 0u16;
                for (i, s) in Screen::ALL.iter().enumerate() {
                    let w = format!(" {} {} ", i + 1, s.title()).chars().count() as u16;
                    if m.column >= x && m.column < x + w {
                        return self.command(Command::Screen(i));
                    }
                    x += w + 1;
                }
                Vec::new()
            }
            _ => {
                self.dirty = false;
                Vec::new()
            }
        }
    }

    pub fn command(&mut self, command: Command) -> Vec<Effect> {
        use Command as C;
        // A read-only console looks: it ticks, skips, acknowledges, signals and runs nothing.
        let acts = match command {
            C::Activate => !matches!(self.screen, Screen::Monitor | Screen::Migrations),
            C::Skip
            | C::Acknowledge
            | C::CancelStep
            | C::Cancel
            | C::Terminate
            | C::Mark
            | C::ForwardRollback
            | C::Restore
            | C::CodeRollback
            | C::Resolve
            | C::CancelAction
            | C::WriteReport
            | C::ToggleLiveHealth => true,
            _ => false,
        };
        if acts && let Some(holder) = &self.read_only {
            self.flash = Some(format!("read-only: {holder} drives this session"));
            return Vec::new();
        }
        match command {
            C::Quit => self.ask_quit(),
            C::Help => {
                self.help = true;
                Vec::new()
            }
            C::Filter => {
                self.filtering = true;
                Vec::new()
            }
            C::Screen(n) => {
                self.screen = Screen::ALL[n];
                Vec::new()
            }
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
                Vec::new()
            }
            C::Back if self.screen != Screen::Monitor => {
                self.clear_filter();
                Vec::new()
            }
            other => match self.screen {
                Screen::Checklist => screens::checklist::command(self, other),
                Screen::Monitor => screens::monitor::command(self, other),
                Screen::Migrations => screens::migrations::command(self, other),
                Screen::Rollback => screens::rollback::command(self, other),
                Screen::Journal => screens::journal::command(self, other),
                Screen::Logs => screens::logs::command(self, other),
            },
        }
    }

    /// What runs now, by name: a step (not one whose plan waits to be closed), a Rollback
    /// action.
    fn running_work(&self) -> Vec<String> {
        let reviewing = self
            .plan_view
            .as_ref()
            .and_then(|p| p.pending.as_ref())
            .map(|(i, _, _)| *i);
        self.checklist
            .running()
            .filter(|i| Some(*i) != reviewing)
            .map(|i| self.checklist.items[i].title.clone())
            .into_iter()
            .chain(self.rollback.running.clone())
            .collect()
    }

    /// The quit modal, kept true while it is open: work that ends meanwhile is no longer named.
    fn refresh_quit_modal(&mut self) {
        if self.modal.as_ref().is_some_and(|m| m.then == Then::Quit) {
            let running = self.running_work();
            if let Some(m) = self.modal.as_mut() {
                m.lines = quit_lines(&running);
            }
        }
    }

    fn ask_quit(&mut self) -> Vec<Effect> {
        let running = self.running_work();
        if running.is_empty() {
            return self.quit();
        }
        self.modal = Some(Modal::new(
            "Quit while work runs?",
            quit_lines(&running),
            Input::Yes,
            Then::Quit,
        ));
        Vec::new()
    }

    fn quit(&mut self) -> Vec<Effect> {
        self.should_quit = true;
        vec![Effect::Quit]
    }

    fn modal_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(modal) = self.modal.as_mut() else {
            return Vec::new();
        };
        if key.code == KeyCode::Esc {
            self.modal = None;
            return Vec::new();
        }
        let typed = match (&modal.input, key.code) {
            (Input::Yes, KeyCode::Char('y' | 'Y')) => None,
            (Input::Yes, _) => {
                modal.error = Some("press y to go ahead, or Esc to leave it".into());
                return Vec::new();
            }
            (Input::Choice(choices), KeyCode::Char(c)) => {
                let Some(choice) = choices.iter().find(|ch| ch.key == c).cloned() else {
                    modal.error = Some(format!("'{c}' is not one of the keys above; Esc closes"));
                    return Vec::new();
                };
                if choice.lines.is_empty() {
                    // Nothing more to ask here: the workflow asks what it needs.
                    self.modal = None;
                    return self.answered(choice.then, String::new());
                }
                self.modal = Some(Modal::new(
                    choice.title,
                    choice.lines,
                    choice.input,
                    choice.then,
                ));
                return Vec::new();
            }
            (Input::Choice(_), _) => return Vec::new(),
            (_, KeyCode::Backspace) => {
                modal.text.pop();
                return Vec::new();
            }
            (_, KeyCode::Char(c)) => {
                if modal.text.chars().count() < 500 {
                    modal.text.push(c);
                }
                modal.error = None;
                return Vec::new();
            }
            (_, KeyCode::Enter) => Some(modal.text.trim().to_owned()),
            _ => return Vec::new(),
        };
        match (&modal.input, &typed) {
            (Input::Name(expect), Some(t)) if t != expect => {
                modal.error = Some(format!(
                    "'{t}' is not the database name: type {expect} exactly"
                ));
                return Vec::new();
            }
            (Input::Reason, Some(t)) if t.is_empty() => {
                modal.error = Some("a reason is required: it goes in the journal".into());
                return Vec::new();
            }
            _ => {}
        }
        let Some(modal) = self.modal.take() else {
            return Vec::new();
        };
        self.answered(modal.then, typed.unwrap_or_default())
    }

    /// The operator answered a modal.
    fn answered(&mut self, then: Then, text: String) -> Vec<Effect> {
        match then {
            Then::Close => Vec::new(),
            Then::Quit => self.quit(),
            Then::Cancel(origin) => vec![Effect::Cancel(origin)],
            Then::Confirm { origin, job, ask } => {
                let typed = ask.expect.as_ref().map(|_| text);
                self.run(origin, job.confirmed(Confirmation::answering(&ask, typed)))
            }
            Then::Override { origin, job, which } => self.run(origin, job.overridden(which, text)),
            Then::Terminate { origin, job } => self.run(origin, job.terminating_sessions()),
            Then::Run { origin, job } => self.run(origin, *job),
            Then::Acknowledge {
                origin,
                job,
                findings,
            } => {
                let allows = findings.iter().map(|f| Allow::finding(f, &text)).collect();
                self.acknowledge(findings, text);
                self.run(origin, job.acknowledged(allows))
            }
            Then::AcknowledgeFindings { findings } => {
                self.acknowledge(findings, text);
                Vec::new()
            }
            Then::Tick { index } => {
                let note = (!text.is_empty()).then_some(text);
                if let Err(e) = self.checklist.tick(index, note.clone()) {
                    self.flash = Some(e);
                    return Vec::new();
                }
                let item = &self.checklist.items[index];
                let (step, title) = (item.id.clone(), item.title.clone());
                self.record(Event::StepTicked { step, title, note });
                self.steps.selected = (index + 1).min(self.checklist.items.len() - 1);
                Vec::new()
            }
            Then::Skip { index } => {
                if let Err(e) = self.checklist.skip(index, text.clone()) {
                    self.flash = Some(e);
                    return Vec::new();
                }
                let item = &self.checklist.items[index];
                let (step, title) = (item.id.clone(), item.title.clone());
                self.record(Event::StepSkipped {
                    step,
                    title,
                    note: text,
                });
                self.steps.selected = (index + 1).min(self.checklist.items.len() - 1);
                Vec::new()
            }
            Then::EmergencyTick { index } => {
                let note = if text.is_empty() {
                    "ticked".into()
                } else {
                    text
                };
                self.tick_emergency(index, &note);
                Vec::new()
            }
        }
    }

    /// Remembers an acknowledgement for the deploy, and journals it.
    fn acknowledge(&mut self, findings: Vec<String>, reason: String) {
        self.record(Event::Acknowledged {
            findings: findings.clone(),
            reason: reason.clone(),
        });
        let mut facts = self.checklist.facts.clone();
        facts.unacknowledged.retain(|f| !findings.contains(f));
        self.checklist.set_facts(facts);
        match &mut self.steps.acknowledged {
            Some(a) if a.reason == reason => a.findings.extend(findings),
            other => *other = Some(Acknowledgement { findings, reason }),
        }
    }

    /// The acknowledgements the next deploy carries.
    pub fn acknowledgements(&self) -> Vec<Allow> {
        self.steps
            .acknowledged
            .iter()
            .flat_map(|a| a.findings.iter().map(|f| Allow::finding(f, &a.reason)))
            .collect()
    }

    /// Rebuilds the checklist, the acknowledgement and the emergency ticks from a resumed
    /// session's journal.
    pub fn restore_from(&mut self, entries: &[Entry]) {
        for e in entries {
            if let Some(skip) = e.event.skipped() {
                self.checklist.restore(
                    skip.step,
                    State::Skipped {
                        note: skip.note.to_owned(),
                    },
                );
                continue;
            }
            match &e.event {
                // A later run that failed or was cancelled undoes what an earlier one did: a
                // cancelled deploy is not done, nor is what was checked after it.
                Event::StepFinished {
                    step,
                    outcome: Outcome::Failed | Outcome::Cancelled,
                    ..
                } => {
                    if let Some(i) = self.checklist.index_of(step) {
                        self.checklist.reopen_from(i);
                    }
                }
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
                Event::StepTicked { step, note, .. } => {
                    if let Some(i) = rollback::emergency_index(step) {
                        if let Some(item) = self.rollback.emergency.get_mut(i) {
                            item.1 = Some(note.clone().unwrap_or_else(|| "ticked".into()));
                        }
                        continue;
                    }
                    self.checklist
                        .restore(step, State::Ticked { note: note.clone() })
                }
                Event::Acknowledged { findings, reason } => match &mut self.steps.acknowledged {
                    Some(a) if a.reason == *reason => a.findings.extend(findings.clone()),
                    other => {
                        *other = Some(Acknowledgement {
                            findings: findings.clone(),
                            reason: reason.clone(),
                        })
                    }
                },
                _ => {}
            }
        }
        let (done, _) = self.checklist.progress();
        self.steps.selected = done.min(self.checklist.items.len() - 1);
        self.adopt_review = self
            .checklist
            .index_of("plan")
            .is_some_and(|p| self.checklist.state(p).is_complete());
    }
}

fn quit_lines(running: &[String]) -> Vec<String> {
    if running.is_empty() {
        return vec!["Nothing runs any more: y quits.".into()];
    }
    vec![
        format!("{} is still running.", running.join(" and ")),
        "Quitting cancels it: a statement running on the server is cancelled and its \
         migration rolled back before the console closes."
            .into(),
    ]
}

/// The plan on screen, and the step its closing ends.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanView {
    pub lines: Vec<String>,
    pub scroll: usize,
    /// The Lint and plan step, its outcome and summary: recorded once the plan was closed.
    pub pending: Option<(usize, Outcome, String)>,
}

impl PlanView {
    pub fn of(text: &str) -> PlanView {
        PlanView {
            lines: text.lines().map(str::to_owned).collect(),
            scroll: 0,
            pending: None,
        }
    }
}

/// What the console can answer a refusal with, from the remedies it names.
fn answers(origin: Origin, job: &Job, e: &Error) -> Vec<Choice> {
    let reason = |key: char, label: &str, which: Override| Choice {
        key,
        label: label.to_owned(),
        title: format!("Override: {label}"),
        lines: vec![
            e.cause.clone(),
            "Why? The reason goes in the journal and the release report.".into(),
        ],
        input: Input::Reason,
        then: Then::Override {
            origin,
            job: Box::new(job.clone()),
            which,
        },
    };
    e.remedies
        .iter()
        .filter_map(|r| match r {
            Remedy::DeployWithoutBackup => Some(reason(
                'o',
                "go ahead without a recent verified backup",
                Override::WithoutBackup,
            )),
            Remedy::RestoreUnverified => Some(reason(
                'o',
                "restore the backup although it was never verified",
                Override::Unverified,
            )),
            Remedy::AcceptForeignBackup => Some(reason(
                'f',
                "use the backup of another origin all the same",
                Override::ForeignBackup,
            )),
            Remedy::Acknowledge { findings, details } => Some(Choice {
                key: 'a',
                label: "acknowledge the DANGEROUS findings, with a reason".into(),
                title: "Acknowledge DANGEROUS findings".into(),
                lines: details
                    .iter()
                    .map(|f| format!("  {f}"))
                    .chain(std::iter::once(
                        "The reason (a change ticket, who agreed) goes in the journal.".into(),
                    ))
                    .collect(),
                input: Input::Reason,
                then: Then::Acknowledge {
                    origin,
                    job: Box::new(job.clone()),
                    findings: findings.clone(),
                },
            }),
            Remedy::TerminateSessions => Some(Choice {
                key: 't',
                label: "terminate those sessions as part of the restore".into(),
                title: "Terminate the other sessions".into(),
                lines: vec![
                    e.cause.clone(),
                    "They are terminated just before pg_restore starts; their open transactions roll back."
                        .into(),
                ],
                input: Input::Yes,
                then: Then::Terminate {
                    origin,
                    job: Box::new(job.clone()),
                },
            }),
            _ => None,
        })
        .collect()
}
