//! The release workflows both front ends run: deploy with its guards, hooks, notifications and
//! journal; forward rollback; restore; hook runs; baseline capture; sample queries; the status
//! of every environment side by side (read-only, so no guards). Each is one
//! async function taking a [`Context`] and a typed request carrying the operator's decisions, and
//! returns a typed outcome or an error that names the guard that refused and what would satisfy
//! it. Guards are evaluated inside the workflow when its work starts, never from what a screen
//! showed earlier. Nothing here prints, draws or prompts.

mod checks;
mod deploy;
mod fleet;
mod hooks;
mod matrix;
mod pitr;
mod primary;
mod rehearsal;
mod restore;
mod revert;
mod sessions;
mod side;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::backup::{BackupEvent, BackupSettings};
use crate::checklist::ChecklistSettings;
use crate::error::{Ask, Error, Guard, Remedy, Result};
use crate::health::HealthSettings;
use crate::hooks::{HookOutcome, HookSettings};
use crate::journal::{self, Recorder};
use crate::lint::LintSettings;
use crate::migrate::{DeployEvent, DeploySettings, FolderSource};
use crate::monitor::logs::LogSettings;
use crate::target::DbTarget;
use crate::target::source::UrlSource;
use crate::verify::VerifyEvent;
pub use checks::{BaselineCapture, capture_baseline, health, sample_queries, watch_health};
pub use deploy::{BackupGate, DeployReport, DeployRequest, backup_gate, deploy};
pub use fleet::{
    Fleet, FleetContext, FleetEvent, FleetReport, FleetRequest, MemberOutcome, MemberReport, Phase,
    Planned, deploy_fleet, fleet_status, migration_progress,
};
pub use hooks::{HookRequest, run_hook};
pub use matrix::{Candidate, Cell, Column, Matrix, Overall, Reading, Row, status_matrix};
pub use pitr::{
    NamedPoint, PitrState, archiving_healthy, base_backup_recent, create_restore_point,
    newest_point, pitr_state, point_retained,
};
pub use rehearsal::{
    RehearsalRequest, RehearsedCheck, check_rehearsed, rehearse, summary as rehearsal_summary,
};
pub use restore::{Maintenance, RestoreReport, RestoreRequest, newest_backup, restore};
pub use revert::{
    ResetRequest, ResolveRequest, RevertReport, RevertRequest, reset, resolve, revert,
};
pub use sessions::{SignalRequest, signal_backend};
pub use side::{
    InPlaceProcedure, InPlaceRecovered, InPlaceRequest, SideRestoreRequest, SideRestored,
    in_place_procedure, in_place_recover, side_restore,
};

/// One environment, resolved and validated: everything a command needs to act on it.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    pub protected: bool,
    pub target: DbTarget,
    /// Where the target's URL came from; None when the program chose it (the demo, tests).
    pub connection: Option<UrlSource>,
    pub migrations_dir: PathBuf,
    /// Why `migrations_dir` is the migrations folder.
    pub migrations_source: FolderSource,
    pub deploy: DeploySettings,
    pub lint: LintSettings,
    pub backup: BackupSettings,
    pub health: HealthSettings,
    pub checklist: ChecklistSettings,
    pub hooks: HookSettings,
    /// The application log the log pane follows, and its alert.
    pub logs: LogSettings,
    /// The monitor never cancels or terminates sessions here.
    pub read_only: bool,
    /// The environment its releases are rehearsed on first.
    pub rehearsed_on: Option<RehearsedOn>,
    /// The config file it came from, if any.
    pub source: Option<PathBuf>,
}

impl Environment {
    /// An environment with every setting at its default, for places that build one without a
    /// config file (the demo, tests, benchmarks).
    pub fn new(name: &str, target: DbTarget) -> Environment {
        Environment {
            name: name.to_owned(),
            protected: false,
            target,
            connection: None,
            migrations_dir: PathBuf::from("migrations"),
            migrations_source: FolderSource::Given,
            deploy: DeploySettings::default(),
            lint: LintSettings::default(),
            backup: BackupSettings::default(),
            health: HealthSettings::default(),
            checklist: ChecklistSettings::default(),
            hooks: HookSettings::default(),
            logs: LogSettings::default(),
            read_only: false,
            rehearsed_on: None,
            source: None,
        }
    }
}

/// The environment a release is rehearsed on before this one (production's staging): its
/// target, or why it could not be resolved (said when it is checked, so that a staging URL
/// missing here does not stop work on production).
#[derive(Debug, Clone)]
pub struct RehearsedOn {
    pub name: String,
    pub target: std::result::Result<DbTarget, Error>,
}

/// The release workflows, by name: what the journal and the events say ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workflow {
    Deploy,
    Revert,
    Restore,
    Resolve,
    Reset,
    Hook,
    /// Cancel or terminate a backend.
    Signal,
    /// The pending migrations rehearsed on a copy, and the drift check.
    Rehearsal,
    /// A pgBackRest stanza restored to a point beside the environment's server.
    SideRestore,
    InPlaceRecovery,
}

impl Workflow {
    pub fn name(self) -> &'static str {
        match self {
            Workflow::Deploy => "deploy",
            Workflow::Revert => "forward rollback",
            Workflow::Restore => "restore",
            Workflow::Resolve => "resolve",
            Workflow::Reset => "reset",
            Workflow::Hook => "hook",
            Workflow::Signal => "signal a backend",
            Workflow::Rehearsal => "rehearsal",
            Workflow::SideRestore => "side restore",
            Workflow::InPlaceRecovery => "in-place recovery",
        }
    }
}

/// What a running workflow reports, in order, for the CLI to print and the console to render.
#[derive(Debug, Clone)]
pub enum Event {
    /// A guard held: what it found.
    Checked(String),
    /// Every guard held; the work itself starts now.
    Started {
        workflow: Workflow,
        what: String,
    },
    Deploy(DeployEvent),
    Backup(BackupEvent),
    Verify(VerifyEvent),
    HookStarted {
        name: String,
        command: String,
    },
    HookOutput {
        name: String,
        line: String,
    },
    HookFinished(HookOutcome),
    /// Something the operator should read (a file written, a status after a restore).
    Note(String),
    /// Something went wrong that does not stop the work (a notification, the journal).
    Warning(String),
    /// An entry this workflow appended to the journal.
    Journaled(journal::Entry),
}

/// What every workflow runs with.
#[derive(Clone)]
pub struct Context {
    pub env: Environment,
    /// Where it journals what it does: the console's session, or the command's own.
    pub journal: Arc<dyn Recorder>,
    pub events: UnboundedSender<Event>,
    /// Stops the work; what is running on the server is cancelled there.
    pub cancel: CancellationToken,
    /// When the work began (its `Started` event), for the duration its journal entry records.
    work_started: Arc<Mutex<Option<Instant>>>,
}

impl Context {
    pub fn new(
        env: Environment,
        journal: Arc<dyn Recorder>,
        events: UnboundedSender<Event>,
        cancel: CancellationToken,
    ) -> Context {
        Context {
            env,
            journal,
            events,
            cancel,
            work_started: Arc::default(),
        }
    }

    fn emit(&self, event: Event) {
        if matches!(event, Event::Started { .. }) {
            *self.work_started.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        // Nobody listening is no reason to stop.
        let _ = self.events.send(event);
    }

    /// How long the work has run since its `Started` event; None before it started.
    fn work_duration(&self) -> Option<std::time::Duration> {
        self.work_started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    fn note(&self, text: impl Into<String>) {
        self.emit(Event::Note(text.into()));
    }

    fn warn(&self, text: impl Into<String>) {
        self.emit(Event::Warning(text.into()));
    }

    /// Appends to the journal. A journal that cannot be written does not stop a release; the
    /// operator is told.
    fn record(&self, event: journal::Event) {
        match self.journal.record(event) {
            Ok(entry) => self.emit(Event::Journaled(entry)),
            Err(e) => self.warn(format!("the journal was not written: {}", e.cause)),
        }
    }

    /// Shows a deploy engine event; a migration the watchdog stopped is journaled too.
    fn deploy_event(&self, e: DeployEvent) {
        if let DeployEvent::Blocking {
            name,
            attempt,
            attempts,
            victims,
            longest_wait_ms,
            blocking_timeout_ms,
            ..
        } = &e
        {
            self.record(journal::Event::MigrationStopped {
                migration: name.clone(),
                attempt: *attempt,
                attempts: *attempts,
                victims: *victims,
                longest_wait_ms: *longest_wait_ms,
                blocking_timeout_ms: *blocking_timeout_ms,
            });
        }
        if let DeployEvent::ReplicaCaughtUp {
            next,
            replica,
            waited_ms,
        } = &e
        {
            self.record(journal::Event::ReplicaWaited {
                before: next.clone(),
                replica: replica.clone(),
                waited_ms: *waited_ms,
            });
        }
        self.emit(Event::Deploy(e));
    }

    fn record_override(&self, what: impl Into<String>, reason: &str) {
        self.record(journal::Event::Override {
            what: what.into(),
            reason: reason.to_owned(),
        });
    }

    /// Tells the team through the webhook, if one is configured; a failure is a warning, never
    /// an error: the release goes on.
    async fn notify(&self, text: &str) {
        if let Err(e) = crate::hooks::notify(&self.env.hooks, text).await {
            self.warn(e.cause);
        }
    }

    /// Stops with a cancellation when the operator asked for one.
    fn check_cancelled(&self, what: &str) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::cancelled(
                format!("{what} cancelled before it started: nothing was done"),
                "run it again when ready",
            ));
        }
        Ok(())
    }
}

/// What changes the schema or takes the migration lock runs on the direct connection when
/// Prisma's `directUrl` names one: a pooler in transaction mode keeps neither the session's
/// advisory lock nor its settings, so a deploy through it could run twice or with another
/// session's `search_path`. When that variable is unset, the URL the environment fell back to
/// is the pooled one, and such work refuses.
fn direct_connection(ctx: &Context, workflow: Workflow) -> Result<()> {
    let unset = ctx
        .env
        .connection
        .as_ref()
        .and_then(|c| c.direct_unset.as_deref());
    match unset {
        Some(var) => Err(Error::input(
            format!(
                "{} needs the direct connection: Prisma's directUrl names ${var}, which is not set, and the URL left may go through a pooler; nothing was done",
                workflow.name()
            ),
            format!(
                "set {var} (in the environment, or in .env) to the database's direct URL, not the pooler's"
            ),
        )),
        None => Ok(()),
    }
}

/// The operator's confirmation, as a request carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// What they typed: the database name on a protected environment. None is a plain yes.
    pub typed: Option<String>,
    /// What they saw when they confirmed ([`Ask::scope`]); empty means whatever the work is
    /// when it starts, as a script's `--yes` or `--confirm DBNAME` means.
    pub scope: Vec<String>,
}

impl Confirmation {
    pub fn yes() -> Confirmation {
        Confirmation::default()
    }

    pub fn typed(text: &str) -> Confirmation {
        Confirmation {
            typed: Some(text.to_owned()),
            scope: Vec::new(),
        }
    }

    /// The answer to `ask`: bound to what it showed.
    pub fn answering(ask: &Ask, typed: Option<String>) -> Confirmation {
        Confirmation {
            typed,
            scope: ask.scope.clone(),
        }
    }
}

/// What a workflow needs before it changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Nothing: a forward deploy on an unprotected environment just runs, as `prisma migrate
    /// deploy` does.
    Nothing,
    /// A yes.
    Yes,
    /// The database name typed out: every change to a protected environment.
    Name,
}

impl Needs {
    /// Destructive work (restore, forward rollback, reset) asks everywhere; on a protected
    /// environment everything that changes the database needs the name.
    fn for_change(env: &Environment, destructive: bool) -> Needs {
        match (env.protected, destructive) {
            (true, _) => Needs::Name,
            (false, true) => Needs::Yes,
            (false, false) => Needs::Nothing,
        }
    }
}

/// A confirmation that held, to journal when the work starts (not before: a guard evaluated
/// after it may still refuse).
#[must_use]
struct Confirmed(Option<String>);

impl Confirmed {
    fn record(self, ctx: &Context) {
        if let Some(what) = self.0 {
            ctx.record(journal::Event::Confirmed { what });
        }
    }
}

/// Checks the confirmation a request carries against what the work is now. Without one, or
/// with one that does not fit, it refuses and says what to confirm: the front end asks and
/// tries again. A name typed is checked on every environment: typing another database's name
/// is a mistake worth stopping for.
fn confirm(
    ctx: &Context,
    needs: Needs,
    ask: Ask,
    given: Option<&Confirmation>,
) -> Result<Confirmed> {
    let db = ctx.env.target.dbname.clone();
    if let Some(Confirmation {
        typed: Some(typed), ..
    }) = given
        && *typed != db
        && needs != Needs::Name
    {
        return Err(Error::guarded(
            Guard::Confirmation,
            format!(
                "the confirmation '{typed}' does not match the database '{db}'; nothing was done"
            ),
            "name the database this environment points at, or check the environment",
        ));
    }
    if needs == Needs::Nothing {
        return Ok(Confirmed(None));
    }
    let env = &ctx.env;
    let ask = Ask {
        expect: (needs == Needs::Name).then(|| db.clone()),
        ..ask
    };
    let refuse = |cause: String, hint: &str, ask: Ask| {
        Error::guarded(Guard::Confirmation, cause, hint).with(Remedy::Confirm(ask))
    };
    let Some(given) = given else {
        let cause = if needs == Needs::Name {
            format!(
                "environment '{}' is protected; about to {}",
                env.name,
                lowercase_first(&ask.title)
            )
        } else {
            format!(
                "about to {}, and it is not confirmed",
                lowercase_first(&ask.title)
            )
        };
        return Err(refuse(
            cause,
            "nothing was done; confirm it to go ahead",
            ask,
        ));
    };
    if needs == Needs::Name && given.typed.as_deref() != Some(db.as_str()) {
        let cause = match &given.typed {
            Some(t) => format!(
                "the confirmation '{t}' does not match the database '{db}' of protected environment '{}'; nothing was done",
                env.name
            ),
            None => format!(
                "environment '{}' is protected: a yes is not enough, the database name must be typed; nothing was done",
                env.name
            ),
        };
        return Err(refuse(cause, "type the database name exactly", ask));
    }
    if !given.scope.is_empty() && given.scope != ask.scope {
        return Err(refuse(
            format!(
                "what was confirmed changed: confirmed {}, now {}; nothing was done",
                given.scope.join(", "),
                ask.scope.join(", ")
            ),
            "look at what it would do now and confirm again",
            ask,
        ));
    }
    // The journal says what exactly was confirmed: the work's title and what it is bound to.
    Ok(Confirmed(Some(if ask.scope.is_empty() {
        ask.title
    } else {
        format!("{} ({})", ask.title, ask.scope.join(", "))
    })))
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A reason an operator gave for `what`, trimmed. Given but empty is an input error: an
/// override is never made without saying why.
fn reason(given: Option<&str>, what: &str) -> Result<Option<String>> {
    match given.map(str::trim) {
        None => Ok(None),
        Some("") => Err(Error::input(
            format!("{what} needs a reason, and the one given is empty"),
            "say why, e.g. \"INC-42: the only backup before the incident\": it goes in the journal",
        )),
        Some(r) => Ok(Some(r.to_owned())),
    }
}
