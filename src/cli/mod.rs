//! The command line: clap definitions, and the headless commands that turn flags into requests
//! for the core, print its events and outcomes, and ask on the terminal what the core says needs
//! confirming. No policy lives here. Progress goes to stderr, results to stdout (`--json` makes
//! them machine-readable). SIGINT and SIGTERM stop the running work: a statement running on the
//! server is cancelled there and rolled back.

mod backup;
mod demo;
mod fleet;
mod health;
mod hooks;
mod init;
mod lint;
mod logs;
mod manual;
mod migrations;
mod monitor;
mod output;
mod report;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Overrides, limits};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{self, CommandJournal, Recorder};
use crate::release::{self, Environment};
use crate::target::ProcessVars;

/// Exit codes, documented in the README. 0 always means all is well.
pub mod exit {
    pub const OK: u8 = 0;
    /// The server, the network or the file system failed.
    pub const RUNTIME: u8 = 1;
    /// Bad arguments, configuration, URL or migrations folder.
    pub const USAGE: u8 = 2;
    /// `status`: migrations are pending.
    pub const PENDING: u8 = 3;
    /// A migration failed, or a failed migration needs resolving.
    pub const FAILED: u8 = 4;
    /// `status`: a migration was edited after it was applied, or is missing locally.
    pub const DRIFT: u8 = 5;
    /// Gave up waiting for the migration lock or a table lock; or the console session to
    /// resume is open in another console.
    pub const LOCK: u8 = 6;
    /// A guard refused: protected environment, missing confirmation, non-empty schema,
    /// unacknowledged DANGEROUS findings on a protected environment.
    pub const REFUSED: u8 = 7;
    /// `lint`: findings that need care, none dangerous.
    pub const LINT_WARNINGS: u8 = 8;
    /// `lint` / `plan`: DANGEROUS findings nobody acknowledged.
    pub const LINT_DANGEROUS: u8 = 9;
    /// `backup verify` / `restore`: the backup failed verification (checksum, contents, row counts).
    pub const VERIFY_FAILED: u8 = 10;
    /// `health`: a check is above its warning threshold, none in alert.
    pub const HEALTH_WARN: u8 = 11;
    /// `health`: a check is in alert (runbook thresholds), or an endpoint or probe failed.
    pub const HEALTH_ALERT: u8 = 12;
    /// Stopped by SIGINT or SIGTERM: what ran on the server was cancelled and rolled back; the
    /// error says what was applied and what was not.
    pub const CANCELLED: u8 = 13;
    /// The server stopped a migration for a reason outside its SQL (statement_timeout, a cancel
    /// or termination by another session, an idle timeout, a shutdown, exhausted resources).
    pub const INTERRUPTED: u8 = 14;
    /// `verify`: the target's schema differs from what its applied migrations build.
    pub const SCHEMA_DRIFT: u8 = 15;
    /// `verify`, `plan --rehearse`: the rehearsal could not be set up (the scratch server lacks
    /// an extension, or is older than the target).
    pub const SCRATCH_UNFIT: u8 = 16;
    /// `deploy`: gave up waiting for a standby's replay lag to come under `max_replica_lag`
    /// (after `replica_lag_wait`).
    pub const REPLICA_LAG: u8 = 17;
    /// `deploy --fleet`: not every database got the release (one failed or was refused, and
    /// the ones after the failure limit were not started).
    pub const FLEET_INCOMPLETE: u8 = 18;

    /// Every code with what it means, for the man page.
    pub const MEANINGS: &[(u8, &str)] = &[
        (
            OK,
            "All is well: status up to date, deploy applied or had nothing to do.",
        ),
        (
            RUNTIME,
            "Runtime error: the server unreachable, the connection lost, the file system failing.",
        ),
        (
            USAGE,
            "Usage error: bad arguments, configuration, URL or migrations folder.",
        ),
        (PENDING, "status: migrations are pending."),
        (
            FAILED,
            "A migration failed, or a failed migration must be resolved first.",
        ),
        (
            DRIFT,
            "status: a migration was edited after it was applied, or is in the database but missing locally.",
        ),
        (
            LOCK,
            "Gave up waiting: for the migration lock, a table lock, or the lock-queue watchdog stopped the migration on every attempt.",
        ),
        (
            REFUSED,
            "Refused by a guard: protected environment without the database name, no recent verified backup, unacknowledged DANGEROUS findings, and the like.",
        ),
        (
            LINT_WARNINGS,
            "lint: findings that need care, none dangerous.",
        ),
        (
            LINT_DANGEROUS,
            "lint, plan: DANGEROUS findings nobody acknowledged.",
        ),
        (
            VERIFY_FAILED,
            "backup verify / restore: the backup failed verification.",
        ),
        (
            HEALTH_WARN,
            "health: a check is above its warning threshold.",
        ),
        (HEALTH_ALERT, "health: a check is in alert."),
        (
            CANCELLED,
            "Interrupted by SIGINT, SIGTERM or SIGHUP: the running statement was cancelled on the server and rolled back.",
        ),
        (
            INTERRUPTED,
            "The server stopped a migration for a reason outside its SQL (a timeout, a termination, a shutdown).",
        ),
        (
            SCHEMA_DRIFT,
            "verify: the database's schema differs from what its applied migrations build.",
        ),
        (
            SCRATCH_UNFIT,
            "verify, plan --rehearse: the rehearsal could not be set up on the scratch server.",
        ),
        (
            REPLICA_LAG,
            "deploy: gave up waiting for a standby's replay lag to come under max_replica_lag (after replica_lag_wait).",
        ),
        (
            FLEET_INCOMPLETE,
            "deploy --fleet: a database failed or was refused, or was not started after the failure limit.",
        ),
    ];
}

#[derive(Debug, Parser)]
#[command(
    name = "pgdeck",
    version,
    about = "PostgreSQL release console: Prisma-compatible migrations, backups, monitoring, rollback"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Without a command: the console for the configured environment
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Environment from the config file (development, staging, production, ...)
    #[arg(long = "env", global = true, value_name = "NAME")]
    pub env: Option<String>,
    /// Config file (default: $PGDECK_CONFIG, ./pgdeck.toml, ./config/pgdeck.toml, user config dir)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Database URL (overrides the environment's; Prisma style, ?schema= supported)
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Migrations folder (Prisma layout)
    #[arg(long, global = true, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Applied, pending, failed, edited-after-apply and in-database-only migrations
    #[command(after_help = STATUS_EXIT_CODES)]
    Status(StatusArgs),
    /// Apply pending migrations (advisory lock, one transaction per migration, lock_timeout)
    Deploy(DeployCommand),
    /// Forward rollback: write a migration from the down.sql of applied migrations (newest
    /// first), show its plan, and with --deploy apply it under the usual guards
    Revert(RevertArgs),
    /// The console (the default in a terminal)
    Console,
    /// Record a failed migration as applied or rolled back (Prisma's `migrate resolve`)
    Resolve(ResolveArgs),
    /// Safety lint of migration SQL: squawk's rules weighed by the runbook, lock and rewrite per statement
    Lint(lint::LintArgs),
    /// Dry run: what deploy would run, statement by statement, with locks, findings, sizes and a verdict
    Plan(lint::PlanArgs),
    /// Rehearse the pending migrations on a copy of the target's schema in a scratch cluster
    /// (the locks and rewrites each statement really takes), and report drift between the
    /// target and what its migrations build. Writes nothing to the target
    Verify(verify::VerifyArgs),
    /// Backups with pg_dump / pg_restore: create, verify, list, restore, prune
    Backup(backup::BackupArgs),
    /// One snapshot of the live panes: connections, long-running queries, lock queue, table sizes,
    /// progress; or cancel / terminate a backend
    Monitor(monitor::MonitorArgs),
    /// HTTP endpoints, Prometheus metrics (error rate, 5xx/min, p95), database probes and
    /// connections against the runbook's thresholds and a baseline: ok / warn / alert
    Health(health::HealthArgs),
    /// The environment's hooks: list them, or run one now
    Hooks(hooks::HooksArgs),
    /// The release report (Markdown) of a console session, from its journal
    Report(report::ReportArgs),
    /// Create <UTC timestamp>_<name>/ with migration.sql and down.sql
    New {
        /// Migration name: letters, digits, '_' or '-'
        name: String,
    },
    /// Drop and recreate the schema, then deploy every migration (never on a protected environment)
    Reset(ResetArgs),
    /// Start (or reuse) a local sandbox PostgreSQL with the sample migrations deployed
    Demo(demo::DemoArgs),
    /// Write a commented pgdeck.toml for this project (at --config PATH, default ./pgdeck.toml)
    /// from its Prisma folder, schema.prisma's url / directUrl and .env: development, staging
    /// and production (protected), each naming the variable its URL is read from. Never
    /// replaces an existing file
    Init,
    /// Shell completions on stdout (e.g. `pgdeck completions bash > /etc/bash_completion.d/pgdeck`)
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page (roff) on stdout: pgdeck(1), or one command's page
    /// (`pgdeck man | man -l -`)
    Man {
        /// A command, for its own page (pgdeck-deploy(1), ...)
        command: Option<String>,
    },
}

const STATUS_EXIT_CODES: &str = "Exit codes: 0 up to date, 3 pending, 4 a migration failed, \
5 drift (edited after apply, or missing locally), 1 the server could not be reached; the worst wins \
(4, then 5, then 3). With --all-environments, the worst over every environment: 4, then 5, then 1 \
when an environment could not be read (settings unresolved, server unreachable, ledger unreadable), \
then 3, else 0.";

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Every environment of the config file side by side, read in parallel (read-only): each
    /// migration's state in each environment, and each environment's verdict; one that cannot
    /// be read says why and the others still show
    #[arg(long, conflicts_with = "fleet")]
    pub all_environments: bool,
    /// Every database of fleet NAME ([fleets.NAME] in the config file), read in parallel
    #[arg(long, value_name = "NAME")]
    pub fleet: Option<String>,
}

/// `pgdeck deploy`: one environment's flags, and a fleet's.
#[derive(Debug, Clone, Args)]
pub struct DeployCommand {
    #[command(flatten)]
    pub args: DeployArgs,
    #[command(flatten)]
    pub fleet: fleet::FleetArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ConfirmArgs {
    /// Answer yes to what asks first (destructive work), for scripts; a protected environment
    /// needs --confirm DBNAME instead
    #[arg(long)]
    pub yes: bool,
    /// The database name, typed out: needed on a protected environment, checked on any
    #[arg(long, value_name = "DBNAME")]
    pub confirm: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub confirm: ConfirmArgs,
    #[command(flatten)]
    pub allow: lint::AllowArgs,
    #[command(flatten)]
    pub lock: LockWaitArgs,
    /// On a protected environment: deploy without a recent verified backup, for this reason
    #[arg(long, value_name = "REASON")]
    pub without_backup: Option<String>,
    /// On a protected environment: let a verified backup of another environment, server or
    /// database of the same name satisfy the backup gate, for this reason
    #[arg(long, value_name = "REASON")]
    pub accept_foreign_backup: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LockWaitArgs {
    /// Seconds to wait for another deploy's migration lock (default from config, else 60)
    #[arg(long, value_name = "SECS", value_parser = limits::whole_in(limits::LOCK_WAIT_SECS))]
    pub lock_wait: Option<u64>,
}

impl LockWaitArgs {
    pub fn wait(&self) -> Option<std::time::Duration> {
        self.lock_wait.map(std::time::Duration::from_secs)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub confirm: ConfirmArgs,
    #[command(flatten)]
    pub lock: LockWaitArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RevertArgs {
    /// Applied migrations to undo (folder names)
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Deploy the rollback migration right away
    #[arg(long)]
    pub deploy: bool,
    #[command(flatten)]
    pub deploy_args: DeployArgs,
}

#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false, id = "resolution")]
pub struct ResolveArgs {
    /// Record the migration as applied (its changes are in the database)
    #[arg(long, value_name = "NAME", group = "resolution")]
    pub applied: Option<String>,
    /// Record the failed migration as rolled back (its changes were undone)
    #[arg(long, value_name = "NAME", group = "resolution")]
    pub rolled_back: Option<String>,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
    #[command(flatten)]
    pub lock: LockWaitArgs,
}

/// Parses the command line, runs the command, prints errors as cause + hint, returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(output::clap_error(e)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::error(&Error::runtime(
                format!("cannot start the async runtime: {e}"),
                "check system limits (threads, memory)",
            ));
            return ExitCode::from(exit::RUNTIME);
        }
    };
    let json = cli.global.json;
    let result = runtime.block_on(run_until_signalled(cli));
    // A question left open on the terminal (SIGINT while asking) is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            if json {
                output::error_json(&e);
            }
            output::error(&e);
            exit_code(&e)
        }
    };
    ExitCode::from(code)
}

/// Runs the command; the first SIGINT, SIGTERM or SIGHUP (the terminal gone, an SSH session
/// dropped) cancels its work, which then stops the way its room stops it (a deploy cancels its
/// statement on the server and rolls back; the console cancels its jobs and closes). A command
/// that cannot stop cleanly is abandoned a few seconds later, its children killed on drop.
async fn run_until_signalled(cli: Cli) -> Result<u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = CancellationToken::new();
    let console = matches!(
        cli.command,
        None | Some(Command::Console) | Some(Command::Demo(_))
    );
    let (mut int, mut term, mut hup) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(i), Ok(t), Ok(h)) => (i, t, h),
        _ => return run(cli, cancel).await,
    };
    let work = run(cli, cancel.clone());
    tokio::pin!(work);
    let which = tokio::select! {
        r = &mut work => return r,
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    };
    if !console {
        // The console says it on its own screen, then restores the terminal.
        output::stderr(&format!(
            "{which}: stopping (a statement running on the server is cancelled there and rolled back)"
        ));
    }
    cancel.cancel();
    // The console waits up to 10 s for its jobs to stop on the server.
    let grace = tokio::time::sleep(std::time::Duration::from_secs(15));
    tokio::select! {
        r = &mut work => match r {
            Err(e) => Err(e),
            // It finished before it noticed.
            Ok(code) => Ok(code),
        },
        _ = grace => Err(Error::cancelled(
            format!("{which}: the command did not stop within 15 s and was abandoned"),
            "check what it left with `pgdeck status` and the Monitor",
        )),
        _ = int.recv() => Err(Error::cancelled(format!("{which} twice: abandoned"), "check what it left with `pgdeck status`")),
        _ = term.recv() => Err(Error::cancelled(format!("{which} twice: abandoned"), "check what it left with `pgdeck status`")),
        _ = hup.recv() => Err(Error::cancelled(format!("{which} twice: abandoned"), "check what it left with `pgdeck status`")),
    }
}

/// What a headless command runs release workflows with: its environment, its journal (one for
/// the whole command) and its cancellation.
pub struct Job {
    pub env: Environment,
    journal: Arc<dyn Recorder>,
    pub cancel: CancellationToken,
}

impl Job {
    pub fn new(env: Environment, cancel: CancellationToken, command: &str) -> Job {
        let journal = Arc::new(CommandJournal::new(
            &journal::default_dir(),
            &env.name,
            &env.target.to_string(),
            command,
        ));
        Job {
            env,
            journal,
            cancel,
        }
    }

    /// A context whose events go to `events`.
    pub fn context(&self, events: UnboundedSender<release::Event>) -> release::Context {
        release::Context::new(
            self.env.clone(),
            self.journal.clone(),
            events,
            self.cancel.clone(),
        )
    }
}

async fn run(cli: Cli, cancel: CancellationToken) -> Result<u8> {
    let g = &cli.global;
    let Some(command) = &cli.command else {
        return console(g, &cancel).await;
    };
    let job = || environment(g).map(|env| Job::new(env, cancel.clone(), command.name()));
    let stoppable = |work| stop_on(work, &cancel);
    match command {
        Command::Status(args) if args.all_environments => {
            stoppable(Box::pin(migrations::status_matrix(
                environments(g)?,
                g.json,
            )))
            .await
        }
        Command::Status(StatusArgs {
            fleet: Some(name), ..
        }) => stoppable(Box::pin(fleet::status(&fleet::fleet(g, name)?, g.json))).await,
        Command::Status(_) => {
            stoppable(Box::pin(migrations::status(&environment(g)?, g.json))).await
        }
        Command::Deploy(DeployCommand {
            args,
            fleet: fleet_args,
        }) => match &fleet_args.fleet {
            Some(name) => fleet::deploy(g, args, fleet_args, name, &cancel).await,
            None => migrations::deploy(&job()?, args, g.json).await,
        },
        Command::Revert(args) => migrations::revert(&job()?, args, g.json).await,
        Command::Console => open_console(environment(g)?, console_environments(g), &cancel).await,
        Command::Resolve(args) => migrations::resolve(&job()?, args, g.json).await,
        Command::Lint(args) => {
            stoppable(Box::pin(lint::lint(&environment(g)?, args, g.json))).await
        }
        Command::Plan(args) if args.rehearse => lint::plan(&job()?, args, g.json).await,
        Command::Plan(args) => stoppable(Box::pin(lint::plan(&job()?, args, g.json))).await,
        Command::Verify(args) => verify::run(&job()?, args, g.json).await,
        Command::Backup(args) if args.stops_itself() => backup::run(&job()?, args, g.json).await,
        Command::Backup(args) => stoppable(Box::pin(backup::run(&job()?, args, g.json))).await,
        Command::Monitor(args) => monitor::run(&job()?, args, g.json).await,
        Command::Health(args) => health::run(&job()?, args, g.json).await,
        Command::Hooks(args) => hooks::run(&job()?, args, g.json).await,
        Command::Report(args) => report::run(g, args),
        Command::New { name } => migrations::new(&environment(g)?, name, g.json),
        Command::Reset(args) => migrations::reset(&job()?, args, g.json).await,
        Command::Demo(args) => demo::run(g, args, &cancel).await,
        Command::Init => init::run(g),
        Command::Completions { shell } => manual::completions(*shell),
        Command::Man { command } => manual::man(command.as_deref()),
    }
}

impl Command {
    /// The subcommand's name, for the journal of what it did.
    fn name(&self) -> &'static str {
        match self {
            Command::Status(_) => "status",
            Command::Deploy(_) => "deploy",
            Command::Revert(_) => "revert",
            Command::Console => "console",
            Command::Resolve(_) => "resolve",
            Command::Lint(_) => "lint",
            Command::Plan(_) => "plan",
            Command::Verify(_) => "verify",
            Command::Backup(_) => "backup",
            Command::Monitor(_) => "monitor",
            Command::Health(_) => "health",
            Command::Hooks(_) => "hooks",
            Command::Report(_) => "report",
            Command::New { .. } => "new",
            Command::Reset(_) => "reset",
            Command::Demo(_) => "demo",
            Command::Init => "init",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }
}

/// Work that only reads: on cancellation it is simply dropped.
pub(crate) async fn stop_on<'a>(
    work: std::pin::Pin<Box<dyn std::future::Future<Output = Result<u8>> + 'a>>,
    cancel: &CancellationToken,
) -> Result<u8> {
    tokio::select! {
        r = work => r,
        () = cancel.cancelled() => Err(Error::cancelled(
            "interrupted; nothing was changed",
            "run it again when ready",
        )),
    }
}

/// `pgdeck` alone: the console on the configured environment, in a terminal; help otherwise.
async fn console(g: &GlobalArgs, stop: &CancellationToken) -> Result<u8> {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return Ok(exit::USAGE);
    }
    open_console(environment(g)?, console_environments(g), stop).await
}

/// The environments of the config file for the console's matrix; none (only the console's
/// own) without a config file.
fn console_environments(g: &GlobalArgs) -> Vec<release::Candidate> {
    let overrides = Overrides {
        config: g.config.clone(),
        migrations: g.migrations.clone(),
        ..Overrides::default()
    };
    config::resolve_all(&overrides, &ProcessVars)
        .map(|all| all.into_iter().map(candidate).collect())
        .unwrap_or_default()
}

/// The console on `env`, its journal in the default folder, asking about unfinished sessions;
/// `environments` for its matrix. `stop` (SIGTERM) closes it as `q` would, the terminal
/// restored.
async fn open_console(
    env: Environment,
    environments: Vec<release::Candidate>,
    stop: &CancellationToken,
) -> Result<u8> {
    crate::tui::run(
        env,
        crate::tui::Options {
            journal_dir: crate::journal::default_dir(),
            resume: None,
            stop: stop.clone(),
            environments,
        },
    )
    .await?;
    Ok(exit::OK)
}

fn environment(g: &GlobalArgs) -> Result<Environment> {
    let overrides = Overrides {
        env: g.env.clone(),
        config: g.config.clone(),
        database_url: g.database_url.clone(),
        migrations: g.migrations.clone(),
    };
    config::resolve(&overrides, &ProcessVars).map(release_environment)
}

/// Every environment of the config file, for `status --all-environments`: each resolved as
/// `--env NAME` would be, or the error that stopped it. An environment or a database URL on the
/// command line would make them all one, and is refused.
fn environments(g: &GlobalArgs) -> Result<Vec<release::Candidate>> {
    let named = match (&g.env, &g.database_url) {
        (Some(_), _) => Some("--env"),
        (None, Some(_)) => Some("--database-url"),
        (None, None) => None,
    };
    if let Some(flag) = named {
        return Err(Error::input(
            format!("--all-environments reads every configured environment, and {flag} names one"),
            format!("drop {flag}, or drop --all-environments to read only that one"),
        ));
    }
    let overrides = Overrides {
        config: g.config.clone(),
        migrations: g.migrations.clone(),
        ..Overrides::default()
    };
    Ok(config::resolve_all(&overrides, &ProcessVars)?
        .into_iter()
        .map(candidate)
        .collect())
}

/// The release room's candidate of a listed environment.
pub fn candidate(listed: config::Listed) -> release::Candidate {
    match listed.resolved {
        Ok(r) => release::Candidate::Ready(Box::new(release_environment(r))),
        Err(error) => release::Candidate::Unresolved {
            name: listed.name,
            protected: listed.protected,
            error,
        },
    }
}

/// The release room's environment of what the config resolved.
pub fn release_environment(r: config::Resolved) -> Environment {
    Environment {
        name: r.name,
        protected: r.protected,
        target: r.target,
        connection: Some(r.connection),
        migrations_dir: r.migrations_dir,
        migrations_source: r.migrations_source,
        deploy: r.deploy,
        lint: r.lint,
        backup: r.backup,
        health: r.health,
        checklist: r.checklist,
        hooks: r.hooks,
        logs: r.logs,
        read_only: r.read_only,
        rehearsed_on: r
            .rehearsed_on
            .map(|(name, target)| release::RehearsedOn { name, target }),
        source: r.source,
    }
}

pub fn exit_code(e: &Error) -> u8 {
    match e.kind {
        ErrorKind::Input => exit::USAGE,
        ErrorKind::Runtime => exit::RUNTIME,
        ErrorKind::MigrationFailed => exit::FAILED,
        ErrorKind::LockTimeout | ErrorKind::SessionHeld => exit::LOCK,
        ErrorKind::Refused => exit::REFUSED,
        ErrorKind::VerifyFailed => exit::VERIFY_FAILED,
        ErrorKind::Cancelled => exit::CANCELLED,
        ErrorKind::Interrupted => exit::INTERRUPTED,
        ErrorKind::ScratchUnfit => exit::SCRATCH_UNFIT,
        ErrorKind::ReplicaLag => exit::REPLICA_LAG,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
