//! The producers. Every effect the loop starts becomes a tokio task that runs a release workflow
//! (or a read of a room) and only sends small typed messages back. Jobs are cancellable: the
//! token reaches the workflow, which cancels what runs on the server. Refreshes are single
//! flight: one running, one pending, and each result carries its generation so an older one
//! never overwrites a newer one. Nothing here touches the terminal, runs SQL or starts a
//! process itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::app::{Effect, Msg};
use crate::backup::{self, BackupEntry, BackupEvent, BackupFormat, CreateOptions};
use crate::checklist::{Facts, Operation};
use crate::error::{Error, Result};
use crate::events::with_events;
use crate::health::{Baseline, Level};
use crate::journal::Recorder;
use crate::lint::plan::{Allow, Plan};
use crate::migrate::{self, DeployEvent, MigrationsDir, StatusReport, Verdict};
use crate::monitor::watch::Watch;
use crate::release::{
    self, BackupGate, Confirmation, DeployRequest, Environment, HookRequest, PitrState,
    ResolveRequest, RestoreRequest, RevertRequest, SideRestoreRequest, SignalRequest,
};
use crate::units::human_bytes;

/// Where a job was started, and so where its progress and its end are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A checklist step.
    Step(usize),
    /// An action of the Rollback screen.
    Rollback,
    /// Cancel / terminate on the Monitor screen.
    Monitor,
    /// The Journal screen's report.
    Journal,
    /// The Monitor's detail view reading a backend.
    Inspect,
    /// The Migrations screen reading every environment's status.
    Matrix,
}

/// What a job does: a checklist operation, or a release workflow with its request.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    Rehearse,
    CheckRehearsed,
    Backup,
    VerifyBackup,
    BaseBackupRecent,
    ArchivingHealthy,
    RestorePoint,
    Plan,
    RollbackPlan,
    CaptureBaseline,
    Deploy(DeployRequest),
    Status,
    Health,
    SampleQueries,
    BackupRetained,
    WriteReport,
    Hook(HookRequest),
    Revert(RevertRequest),
    Restore(RestoreRequest),
    /// PITR: the stanza restored to a restore point into a side cluster, started read-only.
    SideRestore(SideRestoreRequest),
    /// PITR: the in-place recovery procedure to a restore point, printed; it changes nothing.
    InPlaceProcedure {
        point: String,
    },
    Resolve(ResolveRequest),
    Signal(SignalRequest),
    /// Read a backend for the Monitor's detail view: its query, its locks, who it waits for.
    Inspect {
        pid: i32,
    },
    /// Read every environment's status, for the matrix.
    Matrix,
}

/// An override a refusal can be answered with, a reason given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// Deploy without a recent verified backup.
    WithoutBackup,
    /// Use a backup of another environment, server or database.
    ForeignBackup,
    /// Restore a backup that was never verified.
    Unverified,
}

impl Job {
    /// The job a checklist operation runs.
    pub fn of(operation: Operation) -> Job {
        match operation {
            Operation::Rehearse => Job::Rehearse,
            Operation::CheckRehearsed => Job::CheckRehearsed,
            Operation::Backup => Job::Backup,
            Operation::VerifyBackup => Job::VerifyBackup,
            Operation::BaseBackupRecent => Job::BaseBackupRecent,
            Operation::ArchivingHealthy => Job::ArchivingHealthy,
            Operation::RestorePoint => Job::RestorePoint,
            Operation::Plan => Job::Plan,
            Operation::RollbackPlan => Job::RollbackPlan,
            Operation::CaptureBaseline => Job::CaptureBaseline,
            Operation::Deploy => Job::Deploy(DeployRequest::default()),
            Operation::Status => Job::Status,
            Operation::Health => Job::Health,
            Operation::SampleQueries => Job::SampleQueries,
            Operation::BackupRetained => Job::BackupRetained,
            Operation::WriteReport => Job::WriteReport,
            Operation::Hook(step) => Job::Hook(HookRequest {
                name: step.hook_name().to_owned(),
                ..HookRequest::default()
            }),
        }
    }

    /// What it is, for the log and the journal.
    pub fn title(&self) -> String {
        match self {
            Job::Rehearse => "rehearsal and drift check".into(),
            Job::CheckRehearsed => "rehearsed-on check".into(),
            Job::Backup => "backup".into(),
            Job::VerifyBackup => "backup verification".into(),
            Job::BaseBackupRecent => "base backup check".into(),
            Job::ArchivingHealthy => "archiving check".into(),
            Job::RestorePoint => "restore point".into(),
            Job::Plan => "lint and plan".into(),
            Job::RollbackPlan => "rollback plan".into(),
            Job::CaptureBaseline => "baseline".into(),
            Job::Deploy(_) => "deploy".into(),
            Job::Status => "status".into(),
            Job::Health => "health checks".into(),
            Job::SampleQueries => "sample queries".into(),
            Job::BackupRetained => "backup retained".into(),
            Job::WriteReport => "report".into(),
            Job::Hook(r) => format!("hook {}", r.name),
            Job::Revert(r) => format!("forward rollback of {}", r.names.join(", ")),
            Job::Restore(r) => format!("restore of {}", r.backup),
            Job::SideRestore(r) => format!("side restore to {}", r.point),
            Job::InPlaceProcedure { point } => format!("in-place recovery to {point}"),
            Job::Resolve(r) => format!("resolve {}", r.name),
            Job::Signal(r) => format!("{:?} backend {}", r.signal, r.pid).to_lowercase(),
            Job::Inspect { pid } => format!("reading backend {pid}"),
            Job::Matrix => "reading every environment".into(),
        }
    }

    fn deploy_request(&mut self) -> Option<&mut DeployRequest> {
        match self {
            Job::Deploy(r) => Some(r),
            Job::Revert(r) => r.deploy.as_mut(),
            _ => None,
        }
    }

    /// The same job, confirmed.
    pub fn confirmed(mut self, c: Confirmation) -> Job {
        match &mut self {
            Job::Hook(r) => r.confirmation = Some(c),
            Job::Restore(r) => r.confirmation = Some(c),
            Job::Resolve(r) => r.confirmation = Some(c),
            Job::Signal(r) => r.confirmation = Some(c),
            other => {
                if let Some(d) = other.deploy_request() {
                    d.confirmation = Some(c);
                }
            }
        }
        self
    }

    /// The same job with an override and its reason.
    pub fn overridden(mut self, o: Override, reason: String) -> Job {
        match (&mut self, o) {
            (Job::Restore(r), Override::ForeignBackup) => r.foreign_backup = Some(reason),
            (Job::Restore(r), Override::Unverified) => r.unverified = Some(reason),
            (other, o) => {
                if let Some(d) = other.deploy_request() {
                    match o {
                        Override::WithoutBackup => d.without_backup = Some(reason),
                        Override::ForeignBackup => d.foreign_backup = Some(reason),
                        Override::Unverified => {}
                    }
                }
            }
        }
        self
    }

    /// The same job with these findings acknowledged.
    pub fn acknowledged(mut self, allows: Vec<Allow>) -> Job {
        if let Some(d) = self.deploy_request() {
            d.acknowledgements.extend(allows);
        }
        self
    }

    /// The same restore, terminating the other sessions first.
    pub fn terminating_sessions(mut self) -> Job {
        if let Job::Restore(r) = &mut self {
            r.terminate_sessions = true;
        }
        self
    }
}

/// The whole plan in words, for the plan view.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanText {
    pub text: String,
    pub verdict: crate::lint::plan::Verdict,
}

/// The migrations screen's data, loaded off the loop.
#[derive(Debug, Clone)]
pub struct MigrationsView {
    pub dir: MigrationsDir,
    pub status: StatusReport,
    pub plan: Plan,
    /// Each down.sql's own findings, by migration.
    pub down_lints: std::collections::HashMap<String, crate::lint::FileLint>,
}

/// One refresh of what the gates and the screens show.
#[derive(Debug)]
pub struct Refreshed {
    pub generation: u64,
    pub migrations: Result<Box<MigrationsView>, String>,
    pub facts: Facts,
    /// The newest verified backup of this environment's database, for the Rollback screen.
    pub backup: Option<Box<BackupEntry>>,
    /// PITR mode: the stanza's base backup, archiving and the newest restore point; else why
    /// they could not be read.
    pub pitr: Option<Result<Box<PitrState>, String>>,
    /// The session as the console that holds it has written it (a read-only console only).
    pub session: Option<Vec<crate::journal::Entry>>,
}

/// What the tasks share.
#[derive(Clone)]
pub struct Runner {
    pub env: Environment,
    /// What the matrix reads: every configured environment, this one as the console has it.
    pub environments: Vec<release::Candidate>,
    pub journal: Arc<dyn Recorder>,
    pub tx: UnboundedSender<Msg>,
    /// Where this session's baseline and report go (beside its journal).
    pub session_file: PathBuf,
    /// Another console holds the session: each refresh reads what it wrote.
    pub watch_session: bool,
    pub interval: watch::Sender<Duration>,
    /// Cancelled when the console closes: every job stops.
    pub root: CancellationToken,
}

impl Runner {
    pub fn baseline_path(&self) -> PathBuf {
        self.session_file.with_extension("baseline.json")
    }

    pub fn report_path(&self) -> PathBuf {
        self.session_file.with_extension("md")
    }

    /// The journal folder this session's file is in (`<folder>/<environment>/<file>`).
    pub fn journal_dir(&self) -> PathBuf {
        self.session_file
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// The running jobs and the refresh in flight.
pub struct Jobs {
    runner: Runner,
    running: HashMap<Origin, (CancellationToken, JoinHandle<()>)>,
    refresh_running: bool,
    refresh_pending: bool,
    generation: u64,
    /// The background health sampling, while it runs.
    live_health: Option<CancellationToken>,
}

impl Jobs {
    pub fn new(runner: Runner) -> Jobs {
        Jobs {
            runner,
            running: HashMap::new(),
            refresh_running: false,
            refresh_pending: false,
            generation: 0,
            live_health: None,
        }
    }

    /// Starts what an effect asks for. `Quit` is the loop's own business.
    pub fn apply(&mut self, effect: Effect) {
        self.running.retain(|_, (_, h)| !h.is_finished());
        match effect {
            Effect::Run { origin, job } => {
                if self.running.contains_key(&origin) {
                    // The screens start one job at a time; this is a last line of defence.
                    let _ = self.runner.tx.send(Msg::Line {
                        origin,
                        line: format!(
                            "{} not started: another job is still running there",
                            job.title()
                        ),
                    });
                    return;
                }
                let token = self.runner.root.child_token();
                let handle = spawn_job(self.runner.clone(), origin, job, token.clone());
                self.running.insert(origin, (token, handle));
            }
            Effect::Cancel(origin) => {
                if let Some((token, _)) = self.running.get(&origin) {
                    token.cancel();
                }
            }
            Effect::Refresh => {
                if self.refresh_running {
                    self.refresh_pending = true;
                } else {
                    self.start_refresh();
                }
            }
            Effect::SetInterval(d) => {
                let _ = self.runner.interval.send(d);
            }
            Effect::LiveHealth(true) if self.live_health.is_none() => {
                let token = self.runner.root.child_token();
                live_health(self.runner.clone(), token.clone());
                self.live_health = Some(token);
            }
            Effect::LiveHealth(false) => {
                if let Some(t) = self.live_health.take() {
                    t.cancel();
                }
            }
            Effect::LiveHealth(true) => {}
            Effect::Quit => {}
        }
    }

    /// The job at `origin` sent its end: another may start there (its task is about to exit).
    pub fn ended(&mut self, origin: Origin) {
        self.running.remove(&origin);
    }

    /// A refresh ended: the pending one, if any, starts now.
    pub fn refreshed(&mut self) {
        self.refresh_running = false;
        if std::mem::take(&mut self.refresh_pending) {
            self.start_refresh();
        }
    }

    /// Whether a job runs at `origin`.
    pub fn is_running(&self, origin: Origin) -> bool {
        self.running
            .get(&origin)
            .is_some_and(|(_, h)| !h.is_finished())
    }

    /// Cancels every job and waits, at most `grace`, for them to stop: a deploy's statement is
    /// cancelled on the server and rolled back before the console goes.
    pub async fn shutdown(self, grace: Duration) {
        self.runner.root.cancel();
        let handles: Vec<JoinHandle<()>> = self.running.into_values().map(|(_, h)| h).collect();
        let _ = tokio::time::timeout(grace, futures_util::future::join_all(handles)).await;
    }

    fn start_refresh(&mut self) {
        self.refresh_running = true;
        self.generation += 1;
        let generation = self.generation;
        let runner = self.runner.clone();
        tokio::spawn(async move {
            let mut refreshed = refresh(&runner.env, &runner.journal_dir(), generation).await;
            if runner.watch_session {
                refreshed.session = crate::journal::read(&runner.session_file).ok();
            }
            let _ = runner.tx.send(Msg::Refreshed(Box::new(refreshed)));
        });
    }
}

/// A workflow's context whose events reach the loop as `origin`'s messages, and the task
/// that forwards them (it ends once the context is dropped).
fn context(
    runner: &Runner,
    origin: Origin,
    token: CancellationToken,
) -> (release::Context, JoinHandle<()>) {
    let (etx, mut erx) = unbounded_channel::<release::Event>();
    let tx = runner.tx.clone();
    let forward = tokio::spawn(async move {
        while let Some(event) = erx.recv().await {
            for msg in messages(origin, event) {
                let _ = tx.send(msg);
            }
        }
    });
    let ctx = release::Context::new(runner.env.clone(), runner.journal.clone(), etx, token);
    (ctx, forward)
}

fn spawn_job(runner: Runner, origin: Origin, job: Job, token: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (ctx, forward) = context(&runner, origin, token);
        let result = run(&ctx, &runner, origin, &job).await;
        // Every event it sent is shown before its end.
        drop(ctx);
        let _ = forward.await;
        let _ = runner.tx.send(Msg::Done {
            origin,
            job: Box::new(job),
            result,
        });
    })
}

/// The loop's messages for one event of a workflow.
fn messages(origin: Origin, event: release::Event) -> Vec<Msg> {
    use release::Event as E;
    // Shown escaped: the terminal would drop a control character without a trace.
    let shown = |text: String| crate::units::printable(&text).into_owned();
    let progress = |detail: String, fraction: Option<f64>| Msg::Progress {
        origin,
        detail: shown(detail),
        fraction,
    };
    let line = |line: String| Msg::Line {
        origin,
        line: shown(line),
    };
    match event {
        E::Started { .. } => vec![Msg::Started { origin }],
        E::Checked(what) | E::Note(what) => vec![line(what)],
        E::Verify(e) => vec![progress(e.said(), None), line(e.said())],
        E::Warning(what) => vec![line(format!("warning: {what}"))],
        E::HookStarted { name, command } => vec![
            progress(format!("hook {name}"), None),
            line(format!("hook {name}: {command}")),
        ],
        E::HookOutput { line: l, .. } => vec![line(format!("  | {l}"))],
        E::HookFinished(o) => vec![line(format!(
            "hook {}: {} in {:.1}s",
            o.name,
            o.describe(),
            o.duration_ms as f64 / 1000.0
        ))],
        E::Journaled(entry) => vec![Msg::Journaled(Box::new(entry))],
        E::Backup(e) => match e {
            BackupEvent::Progress {
                bytes_written,
                estimated_bytes,
                tables_done,
                tables_total,
                fraction,
                eta_ms,
                ..
            } => vec![progress(
                format!(
                    "{} of ~{} written, {tables_done}/{tables_total} tables done{}",
                    human_bytes(bytes_written as i64),
                    human_bytes(estimated_bytes as i64),
                    eta_ms
                        .map(|ms| format!(", about {}s left", ms.div_ceil(1000)))
                        .unwrap_or_default()
                ),
                Some(fraction),
            )],
            BackupEvent::Step { what } => vec![progress(what.clone(), None), line(what)],
            BackupEvent::Started { file, .. } => {
                vec![progress(format!("pg_dump into {file}"), Some(0.0))]
            }
            BackupEvent::Finished { elapsed_ms, .. } => vec![line(format!(
                "finished in {:.1}s",
                elapsed_ms as f64 / 1000.0
            ))],
        },
        E::Deploy(e) => {
            let state = Msg::Deploy {
                origin,
                event: Box::new(e.clone()),
            };
            let mut out = deploy_messages(e, progress, line);
            out.insert(0, state);
            out
        }
    }
}

/// The progress and log lines of a deploy event (its state goes separately, as `Msg::Deploy`).
fn deploy_messages(
    e: DeployEvent,
    progress: impl Fn(String, Option<f64>) -> Msg,
    line: impl Fn(String) -> Msg,
) -> Vec<Msg> {
    match e {
        DeployEvent::MigrationStarted {
            name, index, total, ..
        } => vec![progress(
            format!("[{index}/{total}] {name}"),
            Some((index - 1) as f64 / total.max(1) as f64),
        )],
        DeployEvent::Waiting {
            holders, changed, ..
        } => {
            if !changed {
                return Vec::new();
            }
            let each: Vec<String> = holders.iter().map(|h| h.describe()).collect();
            vec![line(format!(
                "waiting for a lock held by {}",
                each.join("; ")
            ))]
        }
        DeployEvent::StatementStarted {
            name,
            index,
            total,
            preview,
            ..
        } => vec![progress(
            format!("{name} statement {index}/{total}: {preview}"),
            None,
        )],
        DeployEvent::WaitingForLock { holder } => {
            let text = format!(
                "waiting for the migration lock{}",
                holder.map(|h| format!(" held by {h}")).unwrap_or_default()
            );
            vec![progress(text.clone(), None), line(text)]
        }
        DeployEvent::LockTimeout {
            name,
            attempt,
            attempts,
            retry_in_ms,
        } => {
            let text =
                format!("{name}: lock_timeout, retry {attempt}/{attempts} in {retry_in_ms} ms");
            vec![progress(text.clone(), None), line(text)]
        }
        DeployEvent::MigrationApplied { name, duration_ms } => {
            vec![line(format!("applied {name} in {duration_ms} ms"))]
        }
        DeployEvent::MigrationFailed { name, error } => {
            vec![line(format!("{name} FAILED: {error}"))]
        }
        d @ (DeployEvent::LockDisabled
        | DeployEvent::WatchdogOff
        | DeployEvent::WatchdogLost { .. }) => vec![line(d.said().unwrap_or_default())],
        d @ DeployEvent::Blocking { .. } => {
            let text = d.said().unwrap_or_default();
            vec![progress(text.clone(), None), line(text)]
        }
        d @ DeployEvent::WaitingForReplica { waited_ms, .. } => {
            let text = d.said().unwrap_or_default();
            // The log says it once, when the wait begins; the progress line keeps counting.
            if waited_ms < crate::migrate::replicas::POLL.as_millis() as u64 {
                vec![progress(text.clone(), None), line(text)]
            } else {
                vec![progress(text, None)]
            }
        }
        d @ DeployEvent::ReplicaCaughtUp { .. } => vec![line(d.said().unwrap_or_default())],
        DeployEvent::AlreadyApplied { name } => vec![line(format!(
            "{name} was applied by another deploy meanwhile: not run again"
        ))],
        DeployEvent::EditedAfterApply { name } => vec![line(format!(
            "warning: {name} was edited after it was applied"
        ))],
        DeployEvent::LockAcquired { .. }
        | DeployEvent::LedgerCreated
        | DeployEvent::Pending { .. }
        | DeployEvent::Observed(_) => Vec::new(),
    }
}

/// The application log (when the environment names one) and the server's log, followed until
/// the console closes; their news reaches the loop as `Msg::Log`.
pub fn follow_logs(runner: &Runner) {
    use super::screens::logs::Which;
    use crate::monitor::logs::{self, LogSource};
    let mut sources = vec![(Which::Server, LogSource::Server(runner.env.target.clone()))];
    if let Some(app_log) = &runner.env.logs.app_log {
        sources.push((Which::App, LogSource::App(app_log.clone())));
    }
    for (which, source) in sources {
        let (utx, mut urx) = unbounded_channel();
        let settings = runner.env.logs.clone();
        let cancel = runner.root.child_token();
        // A follower that gave up (a FIFO at the path, the server's log not readable) is
        // started again now and then: a path put right is followed without a restart.
        tokio::spawn(async move {
            loop {
                logs::follow(
                    source.clone(),
                    settings.clone(),
                    utx.clone(),
                    cancel.clone(),
                )
                .await;
                tokio::select! {
                    () = tokio::time::sleep(FOLLOW_AGAIN) => {}
                    () = cancel.cancelled() => return,
                }
                if utx.is_closed() {
                    return;
                }
            }
        });
        let tx = runner.tx.clone();
        tokio::spawn(async move {
            while let Some(first) = urx.recv().await {
                // A flood (a crash-looping app) reaches the loop at most a few times a second,
                // as the newest lines that a pane can show and a count of the rest: neither
                // the loop's queue nor the follower's grows without bound.
                let mut batch = vec![first];
                while batch.len() < LOG_BATCH
                    && let Ok(more) = urx.try_recv()
                {
                    batch.push(more);
                }
                for update in coalesce(batch) {
                    let msg = Msg::Log {
                        which,
                        update: Box::new(update),
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
                tokio::time::sleep(LOG_PACE).await;
            }
        });
    }
}

/// How long a log follower that gave up waits before it looks again.
const FOLLOW_AGAIN: Duration = Duration::from_secs(10);

/// Updates a log follower's batch may merge.
const LOG_BATCH: usize = 100_000;
/// Lines of a batch that reach the pane; the rest are counted in a notice.
const LOG_KEPT: usize = 500;
/// The pause between batches.
const LOG_PACE: Duration = Duration::from_millis(100);

/// One batch of a follower's updates as few: its states in order, its lines merged into one
/// update of the newest [`LOG_KEPT`], with a notice of how many were skipped and how many of
/// those were errors (a flood that large is far past any alert threshold all the same).
fn coalesce(batch: Vec<crate::monitor::logs::LogUpdate>) -> Vec<crate::monitor::logs::LogUpdate> {
    use crate::monitor::logs::{LogLine, LogUpdate};
    let mut out = Vec::new();
    let mut lines: Vec<LogLine> = Vec::new();
    for update in batch {
        match update {
            LogUpdate::Lines { lines: l } => lines.extend(l),
            state => {
                if !lines.is_empty() {
                    out.push(LogUpdate::Lines {
                        lines: keep_newest(std::mem::take(&mut lines)),
                    });
                }
                out.push(state);
            }
        }
    }
    if !lines.is_empty() {
        out.push(LogUpdate::Lines {
            lines: keep_newest(lines),
        });
    }
    out
}

fn keep_newest(
    mut lines: Vec<crate::monitor::logs::LogLine>,
) -> Vec<crate::monitor::logs::LogLine> {
    use crate::monitor::logs::LogLine;
    if lines.len() <= LOG_KEPT {
        return lines;
    }
    let skipped = lines.len() - LOG_KEPT;
    let errors = lines[..skipped]
        .iter()
        .filter(|l| l.class.is_error() && !l.context)
        .count();
    let newest = lines.split_off(skipped);
    let mut out = vec![LogLine::notice(&format!(
        "{skipped} lines skipped, too many to show ({errors} of them errors, not in the counts)"
    ))];
    out.extend(newest);
    out
}

/// Pause between background health samples (each spans the health window itself).
const LIVE_HEALTH_PAUSE: Duration = Duration::from_secs(5);

/// Health sampled in the background during the release, compared with the session's baseline.
fn live_health(runner: Runner, token: CancellationToken) {
    tokio::spawn(async move {
        let (ctx, forward) = context(&runner, Origin::Monitor, token);
        let baseline = Baseline::load(&runner.baseline_path()).ok();
        let tx = runner.tx.clone();
        release::watch_health(&ctx, baseline.as_ref(), LIVE_HEALTH_PAUSE, |sample| {
            let _ = tx.send(match sample {
                Ok(report) => Msg::Health(Box::new(report)),
                Err(e) => Msg::HealthFailed(e.cause),
            });
        })
        .await;
        drop(ctx);
        let _ = forward.await;
    });
}

/// New and edited migrations appear without a restart: the folder is watched, and a change
/// asks for a refresh (refreshes are single flight, so a burst of writes costs one or two
/// reads). None when the folder cannot be watched: the periodic refresh still sees changes.
pub fn watch_folder(runner: &Runner) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let tx = runner.tx.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(e) = res
            && !matches!(e.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(Msg::FolderChanged);
        }
    })
    .ok()?;
    watcher
        .watch(&runner.env.migrations_dir, notify::RecursiveMode::Recursive)
        .ok()?;
    Some(watcher)
}

/// The monitor: one Watch, sampled at the chosen interval, until the console closes.
pub fn monitor(runner: &Runner) {
    let runner = runner.clone();
    let mut interval = runner.interval.subscribe();
    tokio::spawn(async move {
        let mut watcher = Watch::new(&runner.env.target, runner.env.health.monitor.clone());
        loop {
            let update = tokio::select! {
                u = watcher.tick() => u,
                () = runner.root.cancelled() => return,
            };
            if runner.tx.send(Msg::Monitor(Box::new(update))).is_err() {
                return;
            }
            let every = *interval.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep(watcher.next_delay(every)) => {}
                _ = interval.changed() => {}
                () = runner.root.cancelled() => return,
            }
        }
    });
}

/// What the gates and the screens show, read now.
async fn refresh(env: &Environment, journal_dir: &Path, generation: u64) -> Refreshed {
    let view = load_view(env).await;
    let unacknowledged = match &view {
        Ok(v) => v.plan.unacknowledged_dangerous_keys(),
        Err(_) => Vec::new(),
    };
    let pitr = match release::pitr_state(env, journal_dir).await {
        Ok(state) => state.map(|s| Ok(Box::new(s))),
        Err(e) => Some(Err(e.cause)),
    };
    let verified_backup = match &pitr {
        Some(Ok(state)) => match (&state.refusal, &state.backup) {
            (Some(why), _) => Err(why.clone()),
            (None, Some(b)) => Ok(format!(
                "base backup {} of stanza {}",
                b.label, state.stanza
            )),
            (None, None) => Err(format!("stanza {} holds no base backup", state.stanza)),
        },
        Some(Err(e)) => Err(e.clone()),
        None => match release::backup_gate(env).await {
            Ok(BackupGate::Found(entries)) => Ok(entries[0].file.clone()),
            Ok(BackupGate::OnlyForeign { why, .. }) => Err(why),
            Ok(BackupGate::Missing(why)) => Err(why),
            Err(e) => Err(e.cause),
        },
    };
    Refreshed {
        generation,
        migrations: view.map(Box::new).map_err(|e| e.cause),
        facts: Facts {
            protected: env.protected,
            verified_backup,
            pitr: pitr.is_some(),
            unacknowledged,
        },
        pitr,
        backup: release::newest_backup(env, true)
            .ok()
            .flatten()
            .map(Box::new),
        session: None,
    }
}

async fn load_view(env: &Environment) -> Result<MigrationsView> {
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (status, _) = migrate::status(&env.target, &dir).await?;
    let pending: Vec<String> = status
        .pending_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names: Vec<&str> = pending.iter().map(String::as_str).collect();
    let plan = Plan::build(
        Some(&env.target),
        &dir,
        &names,
        &env.lint,
        &[],
        env.protected,
    )
    .await;
    let down_lints = dir
        .migrations
        .iter()
        .filter_map(|m| {
            let down = m.down.as_ref()?;
            let path = m.script_path().with_file_name("down.sql");
            let lint = crate::lint::lint_sql(
                &path.display().to_string(),
                down,
                &env.lint,
                &crate::lint::Sizes::default(),
            );
            Some((m.name.clone(), lint))
        })
        .collect();
    Ok(MigrationsView {
        dir,
        status,
        plan,
        down_lints,
    })
}

/// Runs one job; its summary, or why it did not run or failed.
async fn run(ctx: &release::Context, runner: &Runner, origin: Origin, job: &Job) -> Result<String> {
    let started = || {
        let _ = runner.tx.send(Msg::Started { origin });
    };
    // Reads and the room operations have no guards: they start at once, and a cancellation
    // drops them (a backup's partial file is removed, its pg_dump killed).
    let stoppable = |work| stop_on(work, &ctx.cancel);
    match job {
        Job::Deploy(req) => {
            let report = release::deploy(ctx, req).await?;
            Ok(match report.applied.len() {
                0 => "nothing to deploy".into(),
                n => {
                    let each: Vec<String> = report
                        .applied
                        .iter()
                        .map(|a| format!("{} ({} ms)", a.name, a.duration_ms))
                        .collect();
                    format!("{n} applied: {}", each.join(", "))
                }
            })
        }
        Job::Revert(req) => {
            let report = release::revert(ctx, req).await?;
            Ok(format!(
                "{} applied; {} undone",
                report.name,
                req.names.join(", ")
            ))
        }
        Job::Restore(req) => {
            let report = release::restore(ctx, req).await?;
            let _ = runner.tx.send(Msg::Restored {
                pending_again: report.pending_again.clone(),
                left_in_place: report.left_in_place.clone(),
            });
            let failed = report.checks.iter().filter(|c| !c.ok).count();
            let mut summary = format!(
                "{} restored; {} check(s), {failed} failed",
                report.backup.file,
                report.checks.len()
            );
            if !report.pending_again.is_empty() {
                summary.push_str(&format!(
                    "; PENDING AGAIN: {} (the next deploy applies them again)",
                    report.pending_again.join(", ")
                ));
            }
            if !report.left_in_place.is_empty() {
                summary.push_str(&format!(
                    "; LEFT IN PLACE (made after the backup, not replaced): {}",
                    report.left_in_place.join(", ")
                ));
            }
            Ok(summary)
        }
        Job::Resolve(req) => {
            release::resolve(ctx, req).await?;
            Ok(match req.how {
                migrate::Resolution::Applied => format!("{} recorded as applied", req.name),
                migrate::Resolution::RolledBack => {
                    format!("{} recorded as rolled back; deploy runs it again", req.name)
                }
            })
        }
        Job::Inspect { pid } => {
            let found = crate::monitor::backend(&ctx.env.target, *pid).await;
            let said = match &found {
                Ok(Some(_)) => Ok(format!("backend {pid} read")),
                Ok(None) => Ok(format!("backend {pid} no longer exists")),
                Err(e) => Err(e.clone()),
            };
            let _ = runner.tx.send(Msg::Inspected(
                found.map(|b| b.map(Box::new)).map_err(|e| e.cause),
            ));
            said
        }
        Job::Matrix => {
            // A read: a console that quits does not wait for a server that does not answer.
            stoppable(Box::pin(async {
                let matrix = release::status_matrix(runner.environments.clone()).await;
                let said = match &matrix {
                    Ok(m) => Ok(format!("{} environment(s) read", m.columns.len())),
                    Err(e) => Err(e.clone()),
                };
                let _ = runner.tx.send(Msg::Matrix(
                    matrix
                        .map(Box::new)
                        .map_err(|e| super::widgets::error_text(&e)),
                ));
                said
            }))
            .await
        }
        Job::Signal(req) => {
            release::signal_backend(ctx, req).await?;
            Ok(match req.signal {
                crate::monitor::Signal::Cancel => {
                    format!("the query of backend {} was cancelled", req.pid)
                }
                crate::monitor::Signal::Terminate => format!("backend {} ended", req.pid),
            })
        }
        Job::Hook(req) => {
            let outcome = release::run_hook(ctx, req).await?;
            if outcome.success() {
                Ok(format!(
                    "hook {}: exit 0 in {:.1}s",
                    req.name,
                    outcome.duration_ms as f64 / 1000.0
                ))
            } else {
                Err(Error::runtime(
                    format!("hook {} ended: {}", req.name, outcome.describe()),
                    "its output is in the log and the journal",
                ))
            }
        }
        Job::Rehearse => {
            let req = release::RehearsalRequest {
                scratch: None,
                drift: true,
            };
            let report = release::rehearse(ctx, &req).await?;
            for line in rehearsal_lines(&report) {
                let _ = runner.tx.send(Msg::Line {
                    origin,
                    line: crate::units::printable(&line).into_owned(),
                });
            }
            let summary = release::rehearsal_summary(&report);
            if report.rehearsal_passed() && !report.build_failed() && !report.drifted() {
                Ok(summary)
            } else {
                Err(Error::runtime(
                    summary,
                    "the log has each statement and difference; `pgdeck verify` prints the whole report",
                ))
            }
        }
        Job::CheckRehearsed => {
            started();
            let check = release::check_rehearsed(ctx).await?;
            if check.passed() {
                Ok(check.said())
            } else {
                Err(Error::runtime(
                    check.said(),
                    format!(
                        "deploy them on {} first, then run this step again",
                        check.environment
                    ),
                ))
            }
        }
        Job::CaptureBaseline => {
            started();
            let capture = release::capture_baseline(ctx, None, &runner.baseline_path()).await?;
            let verdict = capture.report.verdict;
            let _ = runner.tx.send(Msg::Health(Box::new(capture.report)));
            capture
                .saved
                .map(|_| format!("baseline saved ({})", verdict.label()))
        }
        Job::Health => {
            started();
            let baseline = Baseline::load(&runner.baseline_path()).ok();
            let report = release::health(ctx, None, baseline.as_ref()).await?;
            let verdict = report.verdict;
            let worst: Vec<String> = report
                .checks
                .iter()
                .filter(|c| c.level == verdict && verdict != Level::Ok)
                .map(|c| format!("{} {}", c.name, c.value))
                .collect();
            let _ = runner.tx.send(Msg::Health(Box::new(report)));
            match verdict {
                Level::Alert => Err(Error::runtime(
                    format!("health ALERT: {}", worst.join("; ")),
                    "see the Monitor screen; the Rollback screen has the options",
                )),
                Level::Warn => Ok(format!("health WARN: {}", worst.join("; "))),
                Level::Ok => Ok("health ok".into()),
            }
        }
        Job::SideRestore(req) => {
            started();
            let side = release::side_restore(ctx, req).await?;
            let mut lines = vec![
                format!(
                    "restore point {} restored into {}, running read-only on port {}",
                    side.point,
                    side.dir.display(),
                    side.port
                ),
                format!("reach it: psql '{}'", side.url),
                format!(
                    "migration head there: {}",
                    side.migration_head.as_deref().unwrap_or("none")
                ),
            ];
            lines.extend(
                side.tables
                    .iter()
                    .map(|(table, rows)| format!("{table}: {rows} row(s)")),
            );
            lines.push(format!("stop it when done: {}", side.stop));
            Ok(lines.join("\n"))
        }
        Job::InPlaceProcedure { point } => {
            let procedure = release::in_place_procedure(ctx, point).await?;
            let mut lines = vec![format!(
                "recovering in place to {} (stanza {}) loses {}",
                procedure.point, procedure.stanza, procedure.loses
            )];
            for (n, (what, command)) in procedure.steps.iter().enumerate() {
                lines.push(format!("{}. {what}", n + 1));
                lines.push(format!("   {command}"));
            }
            lines.push(format!(
                "the console does not run it: on the database host, pgdeck --env {} backup restore --point {} --in-place --confirm {} --yes runs it guarded and journaled; or recover into a side cluster (s)",
                ctx.env.name, procedure.point, ctx.env.target.dbname
            ));
            Ok(lines.join("\n"))
        }
        Job::SampleQueries => {
            started();
            let checks = release::sample_queries(ctx).await?;
            if checks.is_empty() {
                return Ok("no sample queries configured (restore_checks)".into());
            }
            let text: Vec<String> = checks
                .iter()
                .map(|c| format!("{} = {}", c.check, c.result))
                .collect();
            if checks.iter().any(|c| !c.ok) {
                Err(Error::runtime(
                    format!("a sample query failed: {}", text.join("; ")),
                    "see the Monitor screen and the server log",
                ))
            } else {
                Ok(text.join("; "))
            }
        }
        other => {
            started();
            stoppable(Box::pin(read(ctx, runner, other))).await
        }
    }
}

/// A rehearsal's report for the step's log: what each statement did, what failed, and the
/// drift as a to-do list.
fn rehearsal_lines(r: &crate::verify::VerifyReport) -> Vec<String> {
    let mut out = Vec::new();
    for p in &r.pending {
        if let crate::verify::Outcome::Failed { error } = &p.outcome {
            out.push(format!("{} FAILED on the copy: {error}", p.name));
        }
        for s in &p.statements {
            out.push(format!(
                "{} {}:{} observed: {}",
                p.name,
                s.statement,
                s.line,
                s.said()
            ));
        }
    }
    if let Some(d) = &r.drift {
        for x in &d.differences {
            out.push(format!(
                "drift: {} {}: {}",
                x.kind.word(),
                x.name,
                x.side.words()
            ));
        }
    }
    out
}

async fn stop_on(
    work: std::pin::Pin<Box<dyn std::future::Future<Output = Result<String>> + Send + '_>>,
    cancel: &CancellationToken,
) -> Result<String> {
    tokio::select! {
        r = work => r,
        () = cancel.cancelled() => Err(Error::cancelled(
            "cancelled by the operator",
            "run it again when ready",
        )),
    }
}

/// The checklist's operations that only read, or that a room does on its own.
async fn read(ctx: &release::Context, runner: &Runner, job: &Job) -> Result<String> {
    let env = &ctx.env;
    match job {
        Job::Backup => {
            let opts = CreateOptions {
                dir: env.backup.dir.clone(),
                environment: env.name.clone(),
                count_rows: true,
                format: BackupFormat::Custom,
                jobs: 1,
                cancel: ctx.cancel.clone(),
            };
            let entry = with_events(
                |e| ctx.events.send(release::Event::Backup(e)).unwrap_or(()),
                |tx| {
                    let (target, opts) = (&env.target, &opts);
                    async move { backup::create(target, opts, &tx).await }
                },
            )
            .await?;
            Ok(format!(
                "{} ({})",
                entry.file,
                human_bytes(entry.size_bytes as i64)
            ))
        }
        Job::BaseBackupRecent => release::base_backup_recent(ctx).await,
        Job::ArchivingHealthy => release::archiving_healthy(ctx).await,
        Job::RestorePoint => {
            let point = release::create_restore_point(ctx).await?;
            Ok(format!("{} at {} ({})", point.name, point.lsn, point.wal))
        }
        Job::BackupRetained if env.backup.pgbackrest.is_some() => {
            release::point_retained(ctx, &runner.journal_dir()).await
        }
        Job::VerifyBackup | Job::BackupRetained => {
            let newest = release::newest_backup(env, false)?.ok_or_else(|| {
                Error::input(
                    format!(
                        "no backup of {} from environment '{}' in {}",
                        env.target.dbname,
                        env.name,
                        env.backup.dir.display()
                    ),
                    "run the backup step first",
                )
            })?;
            if *job == Job::BackupRetained {
                return if newest.is_verified() {
                    Ok(format!(
                        "{} kept, verified {}",
                        newest.file,
                        newest
                            .verification
                            .as_ref()
                            .map(|v| v.at.format("%Y-%m-%d %H:%M UTC").to_string())
                            .unwrap_or_default()
                    ))
                } else {
                    Err(Error::runtime(
                        format!("{} is not verified", newest.file),
                        "verify it before the session ends",
                    ))
                };
            }
            let path = env.backup.dir.join(&newest.file);
            let entry = with_events(
                |e| ctx.events.send(release::Event::Backup(e)).unwrap_or(()),
                |tx| {
                    let (target, path) = (&env.target, &path);
                    async move { backup::verify(target, path, None, &tx).await }
                },
            )
            .await?;
            Ok(format!(
                "{}: {}",
                entry.file,
                entry.verification.map(|v| v.details).unwrap_or_default()
            ))
        }
        Job::Plan => {
            let view = load_view(env).await?;
            let verdict = view.plan.verdict();
            let open = view.plan.unacknowledged_dangerous();
            let findings: usize = view
                .plan
                .migrations
                .iter()
                .map(|m| m.lint.findings.len())
                .sum();
            let heading = format!(
                "Plan for {} (environment {}{})",
                env.target,
                env.name,
                if env.protected { ", protected" } else { "" }
            );
            let text = crate::lint::report::render_plan(&heading, &view.plan, &view.dir);
            let _ = runner
                .tx
                .send(Msg::Plan(Box::new(PlanText { text, verdict })));
            if verdict == crate::lint::plan::Verdict::Refused {
                let why: Vec<String> = view
                    .plan
                    .migrations
                    .iter()
                    .filter_map(|m| m.refusal.as_ref().map(|r| format!("{}: {r}", m.name)))
                    .collect();
                return Err(Error::runtime(
                    format!("the plan is refused: {}", why.join("; ")),
                    "deploy would refuse it: fix the migration, then review the plan again",
                ));
            }
            Ok(format!(
                "{} pending, {findings} finding(s), verdict {}{}",
                view.plan.migrations.len(),
                verdict.label(),
                if open.is_empty() {
                    String::new()
                } else {
                    format!("; DANGEROUS to acknowledge: {}", open.join(", "))
                }
            ))
        }
        Job::RollbackPlan => {
            let dir = MigrationsDir::load(&env.migrations_dir)?;
            let (status, _) = migrate::status(&env.target, &dir).await?;
            let pending = status.pending_names();
            let missing: Vec<&str> = pending
                .iter()
                .copied()
                .filter(|n| dir.get(n).is_none_or(|m| m.down.is_none()))
                .collect();
            if missing.is_empty() {
                Ok(format!(
                    "{} pending migration(s), each with a down.sql",
                    pending.len()
                ))
            } else {
                Err(Error::input(
                    format!("no down.sql for: {}", missing.join(", ")),
                    "write one, or tick this step with where the rollback plan is",
                ))
            }
        }
        Job::Status => {
            let dir = MigrationsDir::load(&env.migrations_dir)?;
            let (status, version) = migrate::status(&env.target, &dir).await?;
            match status.verdict() {
                Verdict::UpToDate => Ok(format!(
                    "{} migrations applied, none pending (PostgreSQL {version})",
                    status.migrations.len()
                )),
                v => Err(Error::runtime(
                    format!("status: {}", v.label()),
                    "see the Migrations screen",
                )),
            }
        }
        Job::WriteReport => {
            let target = runner.report_path();
            crate::journal::write_report(&runner.session_file, &target)?;
            Ok(format!("written to {}", target.display()))
        }
        other => Err(Error::runtime(
            format!("{} is not a read", other.title()),
            "report this as a bug",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::logs::{LogLine, LogUpdate};

    #[test]
    fn a_flood_of_log_lines_reaches_the_loop_as_the_newest_with_a_count_of_the_rest() {
        let batch: Vec<LogUpdate> = (0..3)
            .map(|b| LogUpdate::Lines {
                lines: (0..1000)
                    .map(|i| LogLine::read(&format!("ERROR flood {b} {i}"), false))
                    .collect(),
            })
            .collect();
        let out = coalesce(batch);
        let [LogUpdate::Lines { lines }] = &out[..] else {
            panic!("{out:?}");
        };
        assert_eq!(lines.len(), LOG_KEPT + 1);
        assert!(
            lines[0].text.starts_with("2500 lines skipped")
                && lines[0].text.contains("2500 of them errors"),
            "{}",
            lines[0].text
        );
        assert_eq!(lines.last().unwrap().text, "ERROR flood 2 999");
    }
}
