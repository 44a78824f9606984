//! Applying pending migrations.
//!
//! A transactional migration runs in one explicit transaction holding `SET LOCAL lock_timeout`,
//! its statements and its ledger row (inserted already finished: inside the transaction nobody
//! can see the difference from an insert followed by an update, and it saves a round trip):
//! whatever happens, it is either applied and recorded or neither. When it fails it is rolled back and the attempt is
//! recorded with `rolled_back_at` set, so a fixed file simply deploys again. A migration with
//! statements PostgreSQL refuses in a transaction runs statement by statement with Prisma's
//! semantics: a started row that stays failed until resolved if anything goes wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng as _;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use super::failure::failed_blocks_deploy;
use super::failure::{
    FirstStatement, ServerStop, blocking_failure, blocking_logs, cancelled_before,
    cancelled_in_transaction, cancelled_statement_by_statement, describe, failure_logs,
    index_failure_fix, is_lock_conflict, list_or_none, lock_lost, sql_failure,
};
use super::folder::{LocalMigration, MigrationsDir};
use super::ledger::{self, Ledger};
use super::observe::{Observation, Snapshot};
use super::replicas;
use super::script::{Script, Statement, TxMode};
use super::watchdog::{Blocked, Holder, Waiting, Watchdog};
use crate::db::{self, query_error};
use crate::error::{Error, ErrorKind, Guard, Remedy, Result};
use crate::target::DbTarget;

/// How `deploy` behaves on this environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploySettings {
    /// `lock_timeout` for every migration's DDL; zero (`"off"` in the file) sets none.
    pub lock_timeout: Duration,
    /// How many times a migration that hit `lock_timeout` is tried again.
    pub lock_retries: u32,
    /// How long to wait for another deploy's migration lock before giving up.
    pub lock_wait: Duration,
    /// The lock-queue watchdog's bound: the longest an application session may wait behind a
    /// migration's locks before its statement is cancelled, the migration rolled back and
    /// retried like a lock timeout. `None` turns the watchdog off (warned on every deploy).
    pub blocking_timeout: Option<Duration>,
    /// Before each migration (and each statement of one run statement by statement) the deploy
    /// waits while a standby's replay lag is above this many bytes. `None` ("off") never waits.
    pub max_replica_lag: Option<i64>,
    /// How long it waits for its standbys before it gives up (exit code 17).
    pub replica_lag_wait: Duration,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            lock_timeout: Duration::from_secs(5),
            lock_retries: 3,
            lock_wait: Duration::from_secs(60),
            blocking_timeout: Some(Duration::from_secs(5)),
            max_replica_lag: Some(64 * 1024 * 1024),
            replica_lag_wait: Duration::from_secs(300),
        }
    }
}

/// Prisma's advisory lock key, so pgdeck and `prisma migrate deploy` exclude each other.
pub const ADVISORY_LOCK_KEY: i64 = 72707369;

/// The appliers' lock: taken inside each migration's own transaction before its first
/// statement (and by `resolve` and `reset` around their writes), so that two appliers never
/// both find a migration unapplied and both run it, even when the session holding
/// [`ADVISORY_LOCK_KEY`] was lost. Prisma's key in the two-key space, which never collides with
/// the one-key lock held on the deploy's other session.
pub const APPLIERS_LOCK: (i32, i32) = (ADVISORY_LOCK_KEY as i32, 1);

/// `SELECT pg_advisory_xact_lock(...)` of [`APPLIERS_LOCK`], for inside a transaction.
pub fn appliers_lock_sql() -> String {
    format!(
        "SELECT pg_advisory_xact_lock({}, {})",
        APPLIERS_LOCK.0, APPLIERS_LOCK.1
    )
}

/// How a deploy behaves.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub settings: DeploySettings,
    /// Take the advisory lock (Prisma's `PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK` turns it off).
    pub advisory_lock: bool,
    /// First backoff after a lock timeout; doubled per attempt, with jitter.
    pub retry_backoff: Duration,
    /// Stops the deploy: the running statement is cancelled on the server and its migration
    /// rolled back; nothing after it starts.
    pub cancel: CancellationToken,
    /// Apply only these pending migrations (what the guards checked and the operator
    /// confirmed): refuse if anything else is pending once the lock is held.
    pub expect_pending: Option<Vec<String>>,
    /// Ask the server after every statement what it locked and rewrote, and send it as
    /// [`DeployEvent::Observed`]: for a rehearsal on a copy, never for production (it costs a
    /// catalog query per statement).
    pub observe: bool,
    /// Sessions the guards opened already, which the lock and the deploy take before opening
    /// their own.
    pub spares: Arc<db::Spares>,
}

impl DeployOptions {
    pub fn new(settings: DeploySettings) -> Self {
        DeployOptions {
            settings,
            advisory_lock: std::env::var_os("PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK").is_none(),
            retry_backoff: Duration::from_millis(500),
            cancel: CancellationToken::new(),
            expect_pending: None,
            observe: false,
            spares: Arc::default(),
        }
    }
}

/// How long to wait, after the cancel request, for the server to stop the statement and roll
/// back before giving up on the session.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// The session holding the migration lock, as seen while waiting for it.
#[derive(Debug, Clone, Serialize)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: String,
    pub user: String,
    pub client: String,
    pub since: Option<DateTime<Utc>>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let app = if self.application_name.is_empty() {
            "no application_name"
        } else {
            &self.application_name
        };
        write!(f, "pid {} ({app}, {}@{})", self.pid, self.user, self.client)?;
        if let Some(since) = self.since {
            write!(f, " since {}", since.format("%Y-%m-%d %H:%M:%S UTC"))?;
        }
        Ok(())
    }
}

/// Progress of a deploy, for the CLI to print and the console to render.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeployEvent {
    /// `PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK` is set: the migration lock is not taken.
    LockDisabled,
    WaitingForLock {
        holder: Option<LockHolder>,
    },
    LockAcquired {
        waited_ms: u64,
    },
    LedgerCreated,
    EditedAfterApply {
        name: String,
    },
    Pending {
        names: Vec<String>,
    },
    MigrationStarted {
        name: String,
        index: usize,
        total: usize,
        transactional: bool,
        statements: usize,
        /// Attempts it gets (lock timeouts and watchdog stops are retried).
        attempts: u32,
        /// The deploy session's backend: the one that takes the migration's locks.
        backend_pid: i32,
    },
    StatementStarted {
        name: String,
        index: usize,
        total: usize,
        line: usize,
        preview: String,
    },
    /// The statement waits for a lock; who holds it (the head of the queue first). Sent when
    /// that changes and about once a second while it waits, when the watchdog is on.
    Waiting {
        waited_ms: u64,
        holders: Vec<Holder>,
        /// Not the holders of the previous event.
        changed: bool,
    },
    LockTimeout {
        name: String,
        attempt: u32,
        attempts: u32,
        retry_in_ms: u64,
    },
    /// `blocking_timeout = "off"`: nothing bounds how long traffic queues behind a migration.
    WatchdogOff,
    /// The watchdog lost its session and could not open another: the rest of the deploy is
    /// unwatched.
    WatchdogLost {
        cause: String,
    },
    /// The watchdog cancelled a migration's statement: application sessions had queued behind
    /// its locks past `blocking_timeout`. Rolled back; retried in `retry_in_ms` unless that was
    /// the last attempt.
    Blocking {
        name: String,
        attempt: u32,
        attempts: u32,
        victims: usize,
        longest_wait_ms: u64,
        blocking_timeout_ms: u64,
        retry_in_ms: Option<u64>,
    },
    MigrationApplied {
        name: String,
        duration_ms: u64,
    },
    /// Found applied when its turn came (another deploy applied it meanwhile): not run again.
    AlreadyApplied {
        name: String,
    },
    MigrationFailed {
        name: String,
        error: String,
    },
    /// What a statement locked and rewrote, when the deploy observes (a rehearsal).
    Observed(Observation),
    /// Paused before `next` (a migration, or "statement N of M" of one): a standby's replay
    /// lag is above `max_replica_lag`. Sent about once a second while it waits.
    WaitingForReplica {
        next: String,
        replica: String,
        replay_lag_bytes: i64,
        replay_lag_seconds: Option<f64>,
        waited_ms: u64,
        max_lag_bytes: i64,
        wait_limit_ms: u64,
    },
    /// The standbys caught up after a wait; the deploy goes on.
    ReplicaCaughtUp {
        next: String,
        replica: String,
        waited_ms: u64,
    },
}

impl DeployEvent {
    /// The words of the events both front ends say alike: the warnings, and a watchdog stop.
    pub fn said(&self) -> Option<String> {
        Some(match self {
            DeployEvent::LockDisabled => format!("warning: {LOCK_DISABLED}"),
            DeployEvent::WatchdogOff => format!("warning: {WATCHDOG_OFF}"),
            DeployEvent::WatchdogLost { cause } => format!("warning: {WATCHDOG_LOST}: {cause}"),
            DeployEvent::Blocking {
                name,
                attempt,
                attempts,
                victims,
                longest_wait_ms,
                blocking_timeout_ms,
                retry_in_ms,
            } => describe_blocking(
                name,
                *victims,
                *longest_wait_ms,
                *blocking_timeout_ms,
                *attempt,
                *attempts,
                *retry_in_ms,
            ),
            DeployEvent::WaitingForReplica {
                replica,
                replay_lag_bytes,
                replay_lag_seconds,
                waited_ms,
                max_lag_bytes,
                wait_limit_ms,
                ..
            } => super::replicas::describe_wait(
                replica,
                *replay_lag_bytes,
                *replay_lag_seconds,
                *waited_ms,
                *max_lag_bytes,
                *wait_limit_ms,
            ),
            DeployEvent::ReplicaCaughtUp {
                next,
                replica,
                waited_ms,
            } => format!(
                "replica {replica} caught up after {}: {next} starts",
                crate::units::human_duration(Duration::from_millis(*waited_ms))
            ),
            _ => return None,
        })
    }

    fn statement_started(m: &LocalMigration, i: usize, total: usize, s: &Statement) -> Self {
        DeployEvent::StatementStarted {
            name: m.name.clone(),
            index: i + 1,
            total,
            line: s.line,
            preview: s.preview(72),
        }
    }

    fn blocking(
        m: &LocalMigration,
        b: &Blocked,
        attempt: u32,
        attempts: u32,
        retry: Option<Duration>,
    ) -> Self {
        DeployEvent::Blocking {
            name: m.name.clone(),
            attempt,
            attempts,
            victims: b.victims,
            longest_wait_ms: b.longest.as_millis() as u64,
            blocking_timeout_ms: b.bound.as_millis() as u64,
            retry_in_ms: retry.map(|d| d.as_millis() as u64),
        }
    }

    fn lock_timeout(m: &LocalMigration, attempt: u32, attempts: u32, delay: Duration) -> Self {
        DeployEvent::LockTimeout {
            name: m.name.clone(),
            attempt,
            attempts,
            retry_in_ms: delay.as_millis() as u64,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppliedMigration {
    pub name: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct DeployOutcome {
    pub applied: Vec<AppliedMigration>,
}

impl DeployOutcome {
    /// The applied migrations' names, comma-separated.
    pub fn applied_names(&self) -> String {
        names_of(&self.applied)
    }
}

/// Applied migrations' names, comma-separated.
pub fn names_of(applied: &[AppliedMigration]) -> String {
    applied
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

type Events<'a> = &'a UnboundedSender<DeployEvent>;

fn emit(events: Events<'_>, event: DeployEvent) {
    // A closed receiver means nobody is watching; the deploy goes on.
    let _ = events.send(event);
}

/// What [`DeployEvent::LockDisabled`] means, in words.
pub const LOCK_DISABLED: &str = "PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK is set: the migration lock \
    is not taken, so another deploy may run at the same time; each migration still checks, just \
    before it runs, that it is not applied yet";

/// What [`DeployEvent::WatchdogOff`] means, in words.
pub const WATCHDOG_OFF: &str = "blocking_timeout is off: nothing bounds how long application \
    sessions queue behind a migration's locks (lock_timeout bounds each single wait only)";

/// What [`DeployEvent::WatchdogLost`] means, in words.
pub const WATCHDOG_LOST: &str = "the lock-queue watchdog lost its session and could not open \
    another, so the rest of this deploy is unwatched (lock_timeout still bounds each wait)";

/// A [`DeployEvent::Blocking`] in words, for the CLI and the console alike.
pub fn describe_blocking(
    name: &str,
    victims: usize,
    longest_wait_ms: u64,
    blocking_timeout_ms: u64,
    attempt: u32,
    attempts: u32,
    retry_in_ms: Option<u64>,
) -> String {
    let then = match retry_in_ms {
        Some(ms) => format!("retrying in {:.1}s", ms as f64 / 1000.0),
        None => "no attempts left".into(),
    };
    format!(
        "{name} stopped and rolled back (attempt {attempt} of {attempts}): {victims} session(s) queued behind its locks, the longest {:.1}s, past blocking_timeout {:.1}s; {then}",
        longest_wait_ms as f64 / 1000.0,
        blocking_timeout_ms as f64 / 1000.0
    )
}

/// Takes the migration lock for a deploy, `resolve` or `reset`, waiting as `opts` says and
/// naming the holder meanwhile; held until the returned session drops. None when
/// `PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK` turned it off, which is said as an event.
pub async fn lock(
    target: &DbTarget,
    opts: &DeployOptions,
    events: Events<'_>,
) -> Result<Option<MigrationLock>> {
    if !opts.advisory_lock {
        emit(events, DeployEvent::LockDisabled);
        return Ok(None);
    }
    acquire_lock(target, opts, events).await.map(Some)
}

/// Applies every pending migration of `dir` to `target`, under the migration lock.
pub async fn deploy(
    target: &DbTarget,
    dir: &MigrationsDir,
    opts: &DeployOptions,
    events: Events<'_>,
) -> Result<DeployOutcome> {
    let lock = lock(target, opts, events).await?;
    deploy_holding(target, dir, opts, lock.as_ref(), events).await
}

/// [`deploy`] for a caller that holds the migration lock already (`reset`).
pub async fn deploy_holding(
    target: &DbTarget,
    dir: &MigrationsDir,
    opts: &DeployOptions,
    lock: Option<&MigrationLock>,
    events: Events<'_>,
) -> Result<DeployOutcome> {
    let session = opts.spares.take(target).await?;
    let client = &session.client;
    let schema = target.schema.as_str();
    // The watchdog's session opens while this one reads the ledger.
    let watchdog = async {
        match opts.settings.blocking_timeout {
            Some(bound) => Watchdog::start(target, bound).await.map(Some),
            None => {
                emit(events, DeployEvent::WatchdogOff);
                Ok(None)
            }
        }
    };
    let ledger = async {
        match Ledger::read(client, schema).await? {
            Some(l) => Ok(l),
            None => create_ledger(client, schema, events).await,
        }
    };
    let (watchdog, ledger) = tokio::join!(watchdog, ledger);
    let (watchdog, ledger) = (watchdog?, ledger?);
    // Sent together: one round trip.
    let (row, set_search_path, queries) = futures_util::future::try_join3(
        client.query_one(
            "SELECT current_setting('statement_timeout'), current_setting('server_version_num')::int",
            &[],
        ),
        client.prepare("SELECT pg_catalog.set_config('search_path', $1, false)"),
        Queries::prepare(client, schema),
    )
    .await
    .map_err(|e| query_error("preparing the session", &e))?;
    let statement_timeout: String = row.get(0);
    let reset_sql = reset_session_sql(row.get(1));
    let run = Runner {
        client,
        canceller: db::Canceller::of(&session, target),
        cancel: &opts.cancel,
        backend_pid: session.backend_pid,
        unwatched: AtomicBool::new(false),
        waited_for: std::sync::Mutex::new(Vec::new()),
        events,
        target,
        ended: session.ended.clone(),
        statement_timeout,
        reset_sql,
        watchdog: watchdog.as_ref(),
        lock_pid: lock.map(|l| l.pid),
        search_path: db::quote_ident(schema),
        set_search_path,
        queries,
    };

    if let Some(failed) = ledger.failed().next() {
        return Err(failed_blocks_deploy(
            &failed.migration_name,
            failed.started_at,
        ));
    }
    for m in &dir.migrations {
        if let Some(row) = ledger.applied(&m.name)
            && !m.checksum_matches(&row.checksum)
        {
            emit(
                events,
                DeployEvent::EditedAfterApply {
                    name: m.name.clone(),
                },
            );
        }
    }
    let live: Vec<&str> = ledger.live_names().collect();
    let pending: Vec<&LocalMigration> = dir
        .migrations
        .iter()
        .filter(|m| !live.contains(&m.name.as_str()))
        .collect();
    let names: Vec<String> = pending.iter().map(|m| m.name.clone()).collect();
    // Under the lock: nothing may run that the guards and the operator did not see. Fewer is
    // fine (a concurrent deploy applied some of them).
    if let Some(expected) = &opts.expect_pending {
        let unseen: Vec<String> = names
            .iter()
            .filter(|n| !expected.contains(n))
            .cloned()
            .collect();
        if !unseen.is_empty() {
            return Err(Error::guarded(
                Guard::Confirmation,
                format!(
                    "the pending migrations changed since they were checked and confirmed: confirmed {}, now also pending {}",
                    list_or_none(expected),
                    unseen.join(", ")
                ),
                "nothing was deployed; look at what is pending now and deploy again",
            )
            .with(Remedy::Status)
            .with(Remedy::Deploy));
        }
    }
    emit(events, DeployEvent::Pending { names });

    // Every script is checked before the first one runs.
    let plans = pending
        .iter()
        .map(|m| statements_for(m))
        .collect::<Result<Vec<_>>>()?;

    let record = client
        .prepare(&ledger::insert_finished_sql(schema))
        .await
        .map_err(|e| query_error("preparing the ledger insert", &e))?;
    let mut outcome = DeployOutcome::default();
    let total = plans.len();
    for (index, (m, statements)) in pending.iter().zip(plans).enumerate() {
        if opts.cancel.is_cancelled() {
            return Err(cancelled_before(m, &outcome, &pending[index..]));
        }
        match run.wait_for_replicas(opts, &m.name).await {
            replicas::Ended::CaughtUp { .. } => {}
            replicas::Ended::Cancelled => {
                return Err(cancelled_before(m, &outcome, &pending[index..]));
            }
            replicas::Ended::GaveUp(mut e) => {
                if !outcome.applied.is_empty() {
                    e.hint = format!("applied before it: {}; {}", outcome.applied_names(), e.hint);
                }
                return Err(e);
            }
        }
        let transactional = statements.iter().all(|s| s.mode == TxMode::Transaction);
        emit(
            events,
            DeployEvent::MigrationStarted {
                name: m.name.clone(),
                index: index + 1,
                total,
                transactional,
                statements: statements.len(),
                attempts: opts.settings.lock_retries + 1,
                backend_pid: run.backend_pid,
            },
        );
        let started = Instant::now();
        let result = if transactional {
            apply_in_transaction(&run, schema, &record, m, &statements, opts, events).await
        } else {
            apply_statement_by_statement(&run, schema, m, &statements, opts, events).await
        };
        match result {
            Ok(Applied::Already) => {
                emit(
                    events,
                    DeployEvent::AlreadyApplied {
                        name: m.name.clone(),
                    },
                );
            }
            Ok(Applied::Now) => {
                let duration_ms = started.elapsed().as_millis() as u64;
                emit(
                    events,
                    DeployEvent::MigrationApplied {
                        name: m.name.clone(),
                        duration_ms,
                    },
                );
                outcome.applied.push(AppliedMigration {
                    name: m.name.clone(),
                    duration_ms,
                });
            }
            Err(mut e) => {
                emit(
                    events,
                    DeployEvent::MigrationFailed {
                        name: m.name.clone(),
                        error: e.cause.clone(),
                    },
                );
                if matches!(
                    e.kind,
                    ErrorKind::Cancelled
                        | ErrorKind::Runtime
                        | ErrorKind::Interrupted
                        | ErrorKind::LockTimeout
                ) && !outcome.applied.is_empty()
                {
                    e.hint = format!("applied before it: {}; {}", outcome.applied_names(), e.hint);
                }
                return Err(e);
            }
        }
    }
    Ok(outcome)
}

/// Creates the ledger under the appliers' lock, so that deploys started together without the
/// migration lock do not race to create it (the second would find the first one's table and
/// refuse the schema as not empty); one that finds it made meanwhile reads it.
async fn create_ledger(client: &Client, schema: &str, events: Events<'_>) -> Result<Ledger> {
    client
        .batch_execute(&format!("BEGIN; {}", appliers_lock_sql()))
        .await
        .map_err(|e| query_error("creating _prisma_migrations", &e))?;
    let made = async {
        if ledger::exists(client, schema).await? {
            return Ok(false);
        }
        ledger::create(client, schema).await.map(|()| true)
    }
    .await;
    let end = if made.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client
        .batch_execute(end)
        .await
        .map_err(|e| query_error("creating _prisma_migrations", &e))?;
    if made? {
        emit(events, DeployEvent::LedgerCreated);
        return Ok(Ledger::default());
    }
    Ok(Ledger::read(client, schema).await?.unwrap_or_default())
}

/// The statements deploy will run for a migration, or why it refuses to run it.
pub fn statements_for(m: &LocalMigration) -> Result<Vec<Statement>> {
    let sql = m.sql();
    let script = Script::parse(sql);
    let file = m.script_path();
    // Statements refused before anything runs: what each would do, and what to do instead.
    type Refusal = (
        fn(&Statement) -> bool,
        fn(&Statement) -> String,
        &'static str,
    );
    let refusals: [Refusal; 3] = [
        (
            |s| s.two_phase,
            |s| {
                format!(
                    "two-phase commit in a migration ({}) would move its work out of the migration's transaction, or end another transaction",
                    s.preview(40)
                )
            },
            "remove it: a migration is applied and recorded in one transaction of its own; nothing was run",
        ),
        (
            |s| s.copy_from_stdin,
            |_| "COPY ... FROM STDIN waits for data that a migration cannot send".into(),
            "write the rows as INSERT statements, or COPY from a file on the database server; nothing was run",
        ),
        (
            |s| s.aborts_transaction,
            |_| "ROLLBACK in a migration would discard the migration itself".into(),
            "remove it: pgdeck already runs each migration in one transaction and rolls it back on any error",
        ),
    ];
    for (refused, why, hint) in refusals {
        if let Some(s) = script.statements.iter().find(|s| refused(s)) {
            return Err(Error::input(
                format!("{}:{}:{}: {}", file.display(), s.line, s.column, why(s)),
                hint,
            ));
        }
    }
    if script.problems.is_empty() {
        return Ok(script.statements);
    }
    let p = &script.problems[0];
    let has_tx_control = script.statements.iter().any(|s| s.transaction_control);
    if script.mentions_non_transactional || has_tx_control {
        return Err(Error::input(
            format!(
                "{}:{}:{}: cannot parse the script: {}",
                file.display(),
                p.line,
                p.column,
                p.message
            ),
            "fix the syntax; a script with CONCURRENTLY, VACUUM, BEGIN/COMMIT or two-phase commit must parse so pgdeck can run it safely",
        ));
    }
    // The parser did not understand everything, but nothing needs special handling: let the
    // server, the real judge of syntax, run the file as one batch inside the transaction.
    Ok(vec![Script::whole(sql)])
}

async fn apply_in_transaction(
    run: &Runner<'_>,
    schema: &str,
    record: &tokio_postgres::Statement,
    m: &LocalMigration,
    statements: &[Statement],
    opts: &DeployOptions,
    events: Events<'_>,
) -> Result<Applied> {
    let client = run.client;
    let attempts = opts.settings.lock_retries + 1;
    let mut attempt = 1;
    loop {
        let started_at = Utc::now();
        let (error, statement) = match try_transaction(run, record, m, statements, opts, events)
            .await
        {
            Ok(applied) => return Ok(applied),
            Err(Failure::Stop(e)) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
            Err(Failure::Cancelled {
                statement,
                session_lost,
            }) => {
                if !session_lost {
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                return Err(cancelled_in_transaction(
                    m,
                    statement.as_ref(),
                    session_lost,
                ));
            }
            Err(Failure::Blocking { blocked, statement }) => {
                // The cancel aborted the transaction; this ends it.
                let _ = client.batch_execute("ROLLBACK").await;
                if attempt < attempts {
                    let delay = backoff(opts.retry_backoff, attempt);
                    emit(
                        events,
                        DeployEvent::blocking(m, &blocked, attempt, attempts, Some(delay)),
                    );
                    if !run.pause(delay).await {
                        return Err(cancelled_in_transaction(m, None, false));
                    }
                    attempt += 1;
                    continue;
                }
                emit(
                    events,
                    DeployEvent::blocking(m, &blocked, attempt, attempts, None),
                );
                let mut err = blocking_failure(m, Some(&statement), &blocked, attempt);
                let logs = blocking_logs(m, Some(&statement), &blocked, attempt);
                if let Err(record) = ledger::insert_rolled_back_attempt(
                    client,
                    schema,
                    &m.name,
                    &m.checksum,
                    started_at,
                    &logs,
                )
                .await
                {
                    err.hint = format!(
                        "{} (the failed attempt could not be recorded: {})",
                        err.hint, record.cause
                    );
                }
                return Err(err);
            }
            Err(Failure::Commit(error)) => {
                let stop = run.server_stop(&error).await;
                // An idle-in-transaction timeout ended the session before the COMMIT came; any
                // other end may have come after the COMMIT reached the server.
                if stop.is_some_and(|s| s.ends_session() && s != ServerStop::IdleInTransaction) {
                    return Err(Error::runtime(
                            format!(
                                "the deploy's session ended while {} was committing ({}): it may or may not be applied",
                                m.name,
                                describe(&error).1
                            ),
                            "check `status`: it shows the migration as applied if the commit went through; deploy again either way",
                        )
                        .with(Remedy::Status)
                        .with(Remedy::Deploy));
                }
                (error, None)
            }
            Err(Failure::Sql { error, statement }) => (error, statement),
        };
        let _ = client.batch_execute("ROLLBACK").await;
        if is_lock_conflict(&error) && attempt < attempts {
            let delay = backoff(opts.retry_backoff, attempt);
            emit(
                events,
                DeployEvent::lock_timeout(m, attempt, attempts, delay),
            );
            if !run.pause(delay).await {
                return Err(cancelled_in_transaction(m, None, false));
            }
            attempt += 1;
            continue;
        }
        let stop = run.server_stop(&error).await;
        let mut err = sql_failure(m, statement.as_ref(), &error, attempt, true, stop, run);
        let logs = failure_logs(m, statement.as_ref(), &error, attempt);
        // The failure is what matters; if recording it fails too, say so in the hint. A
        // session the server ended is replaced by a new one for the record.
        let recorded = async {
            let ledger = run.ledger_session(stop).await?;
            ledger::insert_rolled_back_attempt(
                ledger.client(),
                schema,
                &m.name,
                &m.checksum,
                started_at,
                &logs,
            )
            .await
        };
        if let Err(record) = recorded.await {
            err.hint = format!(
                "{} (the failed attempt could not be recorded: {})",
                err.hint, record.cause
            );
        }
        return Err(err);
    }
}

/// The rehearsal's eyes on one migration: the relations there when it began, and the last
/// snapshot, each statement's observation being the difference to the next.
struct Observer {
    existing: Snapshot,
    last: Snapshot,
}

impl Observer {
    /// `None` unless the deploy observes.
    async fn start(
        run: &Runner<'_>,
        opts: &DeployOptions,
    ) -> Result<Option<Observer>, tokio_postgres::Error> {
        if !opts.observe {
            return Ok(None);
        }
        let existing = Snapshot::take(run.client, &run.target.schema).await?;
        Ok(Some(Observer {
            last: existing.clone(),
            existing,
        }))
    }

    async fn statement(
        &mut self,
        run: &Runner<'_>,
        m: &LocalMigration,
        i: usize,
        s: &Statement,
        in_transaction: bool,
    ) -> Result<Observation, tokio_postgres::Error> {
        let now = Snapshot::take_locked(run.client, &run.target.schema).await?;
        let (locks, rewrites) = self.last.changes(
            &now,
            &self.existing,
            ledger::TABLE,
            in_transaction,
            s.truncates,
        );
        self.last = now;
        Ok(Observation {
            migration: m.name.clone(),
            statement: i + 1,
            line: s.line,
            preview: s.preview(72),
            locks,
            rewrites,
        })
    }
}

/// Whether a migration ran now or was found applied when its turn came.
enum Applied {
    Now,
    Already,
}

async fn try_transaction(
    run: &Runner<'_>,
    record: &tokio_postgres::Statement,
    m: &LocalMigration,
    statements: &[Statement],
    opts: &DeployOptions,
    events: Events<'_>,
) -> Result<Applied, Failure> {
    let client = run.client;
    if !claim(run, m).await? {
        let _ = client.batch_execute("ROLLBACK").await;
        return Ok(Applied::Already);
    }
    // The timeout is a number from the config, not user text.
    client
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            opts.settings.lock_timeout.as_millis()
        ))
        .await
        .map_err(Failure::sql(None))?;
    let total = statements.len();
    let mut observer = Observer::start(run, opts)
        .await
        .map_err(Failure::sql(None))?;
    for (i, s) in statements.iter().enumerate() {
        if s.transaction_control {
            continue;
        }
        emit(events, DeployEvent::statement_started(m, i, total, s));
        match run.exec(&s.text, true).await {
            Ran::Done(result) => {
                result.map_err(Failure::sql(Some(s)))?;
                if let Some(o) = &mut observer {
                    let seen = o.statement(run, m, i, s, true).await;
                    emit(
                        events,
                        DeployEvent::Observed(seen.map_err(Failure::sql(Some(s)))?),
                    );
                }
            }
            Ran::Blocking(blocked) => {
                return Err(Failure::Blocking {
                    blocked,
                    statement: s.clone(),
                });
            }
            Ran::Cancelled => {
                return Err(Failure::Cancelled {
                    statement: Some(s.clone()),
                    session_lost: false,
                });
            }
            Ran::Abandoned => {
                return Err(Failure::Cancelled {
                    statement: Some(s.clone()),
                    session_lost: true,
                });
            }
        }
    }
    if run.cancel.is_cancelled() {
        return Err(Failure::Cancelled {
            statement: None,
            session_lost: false,
        });
    }
    // Past this point the migration commits: a cancellation arriving now waits for the next one.
    // Sent together (the driver pipelines concurrent requests): if the INSERT fails the
    // transaction is aborted and the COMMIT behind it only rolls back.
    // The row is written as the connecting role and without a statement_timeout, whatever the
    // migration set (the INSERT names its table and functions by schema, so search_path does
    // not matter).
    let id = Uuid::new_v4().to_string();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&id, &m.checksum, &m.name];
    let own_role = client
        .batch_execute("SET LOCAL SESSION AUTHORIZATION DEFAULT; SET LOCAL statement_timeout = 0");
    let insert = client.execute(record, &params);
    let commit = client.batch_execute("COMMIT");
    futures_util::future::try_join3(own_role, insert, commit)
        .await
        .map_err(Failure::Commit)?;
    Ok(Applied::Now)
}

/// Opens the transaction a migration starts in and proves, before its first statement, that it
/// is this deploy's to apply: under the appliers' lock, the deploy still holds the migration
/// lock, and the migration's row, read now rather than when the deploy began, says it is not
/// applied. False: another deploy applied it meanwhile. The transaction stays open either way.
async fn claim(run: &Runner<'_>, m: &LocalMigration) -> Result<bool, Failure> {
    // READ COMMITTED whatever the database's default: the row is read in a snapshot taken after
    // the lock is granted, so it sees what the applier before committed. The session is reset
    // first, in a request of its own (sent together), so that the reset outlives this
    // migration's transaction whether it commits or not.
    let begin = format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; {}",
        appliers_lock_sql()
    );
    let (reset, began) = tokio::join!(biased; run.reset_session(), run.exec(&begin, false));
    if let Err(e) = reset {
        return Err(Failure::Stop(query_error(
            &format!("resetting the session before {}", m.name),
            &e,
        )));
    }
    match began {
        Ran::Done(r) => r.map_err(Failure::sql(None))?,
        Ran::Cancelled | Ran::Blocking(_) => {
            return Err(Failure::Cancelled {
                statement: None,
                session_lost: false,
            });
        }
        Ran::Abandoned => {
            return Err(Failure::Cancelled {
                statement: None,
                session_lost: true,
            });
        }
    }
    // Both read together (the driver pipelines them): one round trip.
    let held = async {
        match run.lock_pid {
            Some(pid) => holds_lock(run, pid).await,
            None => Ok(true),
        }
    };
    let standing = ledger::standing(run.client, &run.queries.standing, &m.name);
    let (held, standing) = futures_util::future::try_join(held, standing)
        .await
        .map_err(Failure::Stop)?;
    if let (false, Some(pid)) = (held, run.lock_pid) {
        return Err(Failure::Stop(lock_lost(m, pid)));
    }
    match standing {
        ledger::Standing::Unapplied => Ok(true),
        ledger::Standing::Applied => Ok(false),
        ledger::Standing::Unfinished { started_at } => Err(Failure::Stop(Error::new(
            ErrorKind::MigrationFailed,
            format!(
                "migration {} was started at {} by another deploy while this one ran, and is not finished: this deploy did not apply it",
                m.name,
                started_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            "another deploy is applying it, or it failed there: wait, look at its status, and resolve it if it failed",
        )
        .with(Remedy::Status))),
    }
}

/// Whether the session `pid` still holds the migration lock.
async fn holds_lock(run: &Runner<'_>, pid: i32) -> Result<bool> {
    Ok(run
        .client
        .query_one(
            &run.queries.holds_lock,
            &[&pid, &(ADVISORY_LOCK_KEY as u32)],
        )
        .await
        .map_err(|e| query_error("checking the migration lock", &e))?
        .get(0))
}

/// Why a statement of a migration without a transaction did not complete.
enum Stop {
    Sql(tokio_postgres::Error),
    /// The watchdog stopped it on every attempt.
    Blocking(Blocked),
    Cancelled,
    /// Cancelled, but it would not stop: its backend was terminated, and the session with it.
    Abandoned,
    /// Gave up waiting for the standbys before it: it never ran.
    ReplicaLag(Error),
}

async fn apply_statement_by_statement(
    run: &Runner<'_>,
    schema: &str,
    m: &LocalMigration,
    statements: &[Statement],
    opts: &DeployOptions,
    events: Events<'_>,
) -> Result<Applied> {
    let client = run.client;
    let total = statements.len();
    // Its started row is written under the same proof as a transactional migration's.
    let claimed = claim(run, m).await;
    if !matches!(claimed, Ok(true)) {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    match claimed {
        Ok(true) => {}
        Ok(false) => return Ok(Applied::Already),
        Err(Failure::Stop(e)) => return Err(e),
        Err(Failure::Cancelled { .. } | Failure::Blocking { .. }) => {
            return Err(cancelled_statement_by_statement(m, 0, total, true));
        }
        Err(Failure::Sql { error, .. } | Failure::Commit(error)) => {
            let stop = run.server_stop(&error).await;
            return Err(sql_failure(m, None, &error, 1, true, stop, run));
        }
    }
    let id = ledger::insert_started(client, schema, &m.name, &m.checksum).await?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| query_error("recording the migration start", &e))?;
    let lock_timeout = format!("{}ms", opts.settings.lock_timeout.as_millis());
    let set_lock_timeout = |value: &str| {
        let value = value.to_owned();
        async move {
            client
                .query_one("SELECT set_config('lock_timeout', $1, false)", &[&value])
                .await
                .map(drop)
                .map_err(|e| query_error("setting lock_timeout", &e))
        }
    };
    let attempts = opts.settings.lock_retries + 1;
    let mut observer = Observer::start(run, opts)
        .await
        .map_err(|e| query_error("observing the rehearsal", &e))?;
    for (i, s) in statements.iter().enumerate() {
        emit(events, DeployEvent::statement_started(m, i, total, s));
        let invalid_before = match &s.concurrent_index_on {
            Some(table) => invalid_indexes(client, table).await?,
            None => Vec::new(),
        };
        // A CONCURRENTLY form waits for every older transaction, which lock_timeout would turn
        // into a failure (and an INVALID index); it blocks no one, so it is not watched either.
        set_lock_timeout(if s.concurrently { "0" } else { &lock_timeout }).await?;
        let mut attempt = 1;
        // Between statements too: the one before may have sent the standbys a table's worth of
        // WAL.
        let lagging = if i == 0 {
            None
        } else {
            let next = format!("statement {} of {total} of {}", i + 1, m.name);
            match run.wait_for_replicas(opts, &next).await {
                replicas::Ended::CaughtUp { .. } => None,
                replicas::Ended::Cancelled => Some(Stop::Cancelled),
                replicas::Ended::GaveUp(e) => Some(Stop::ReplicaLag(e)),
            }
        };
        let result = if let Some(stop) = lagging {
            Err(stop)
        } else {
            loop {
                let ran = run.exec(&s.text, !s.concurrently).await;
                // A plain statement that timed out waiting for its lock, or that the watchdog
                // stopped, did nothing and can be retried. (A concurrent build that failed may have
                // left an INVALID index: never retried.)
                let retryable = match &ran {
                    Ran::Done(Err(e)) => is_lock_conflict(e) && !s.concurrently,
                    Ran::Blocking(_) => true,
                    _ => false,
                };
                if retryable && attempt < attempts {
                    let delay = backoff(opts.retry_backoff, attempt);
                    emit(
                        events,
                        match &ran {
                            Ran::Blocking(b) => {
                                DeployEvent::blocking(m, b, attempt, attempts, Some(delay))
                            }
                            _ => DeployEvent::lock_timeout(m, attempt, attempts, delay),
                        },
                    );
                    if !run.pause(delay).await {
                        break Err(Stop::Cancelled);
                    }
                    attempt += 1;
                    continue;
                }
                break match ran {
                    Ran::Blocking(b) => {
                        emit(
                            events,
                            DeployEvent::blocking(m, &b, attempt, attempts, None),
                        );
                        Err(Stop::Blocking(b))
                    }
                    Ran::Done(r) => r.map_err(Stop::Sql),
                    Ran::Cancelled => Err(Stop::Cancelled),
                    Ran::Abandoned => Err(Stop::Abandoned),
                };
            }
        };
        if matches!(result, Err(Stop::Abandoned)) {
            // Nothing more can be said on a terminated session: the ledger keeps the row as
            // started and not finished, a failed migration for `resolve`.
            return Err(Error::cancelled(
                format!(
                    "deploy cancelled during {} (no transaction) at statement {} of {total}: it did not stop within 10 s of the cancel request, so its session was terminated",
                    m.name,
                    i + 1
                ),
                "the statements before it were applied; check what the terminated one left, then record which",
            )
            .with(Remedy::Status)
            .with(Remedy::Resolve {
                migration: m.name.clone(),
            }));
        }
        let server_stop = match &result {
            Err(Stop::Sql(e)) => run.server_stop(e).await,
            _ => None,
        };
        let mut left_invalid = Vec::new();
        let mut unchecked = None;
        if let Some(table) = &s.concurrent_index_on {
            // On a new session when the server ended this one.
            let found = async {
                let ledger = run.ledger_session(server_stop).await?;
                invalid_indexes(ledger.client(), table).await
            };
            match found.await {
                Ok(found) => {
                    left_invalid = found
                        .into_iter()
                        .filter(|i| !invalid_before.contains(i))
                        .collect();
                }
                Err(e) => unchecked = Some(format!("{table}: {}", e.cause)),
            }
        }
        if result.is_ok()
            && let Some(o) = &mut observer
        {
            let seen = o.statement(run, m, i, s, false).await;
            emit(
                events,
                DeployEvent::Observed(
                    seen.map_err(|e| query_error("observing the rehearsal", &e))?,
                ),
            );
        }
        let problem = match result {
            Err(stop) => Some((Some(stop), left_invalid)),
            Ok(()) if !left_invalid.is_empty() => Some((None, left_invalid)),
            Ok(()) => None,
        };
        if let Some((stop, invalid)) = problem {
            let nothing_applied = i == 0 && invalid.is_empty() && unchecked.is_none();
            // Nothing of it ran, stopped by something other than its SQL, and surely stopped
            // (a lost connection leaves the statement maybe running): recorded as a rolled-back
            // attempt, it simply deploys again.
            let undone = nothing_applied
                && (matches!(stop, Some(Stop::Cancelled | Stop::Blocking(_)))
                    || server_stop.is_some_and(|s| s != ServerStop::Lost));
            let (mut logs, mut err) = match &stop {
                Some(Stop::Blocking(b)) => (
                    blocking_logs(m, Some(s), b, attempt),
                    if nothing_applied {
                        blocking_failure(m, Some(s), b, attempt)
                    } else {
                        let mut e = blocking_failure(m, Some(s), b, attempt);
                        e.hint = format!(
                            "the statements before it were applied; {}; then record the migration as applied once it is finished by hand",
                            e.hint
                        );
                        e.remedies = vec![Remedy::Resolve {
                            migration: m.name.clone(),
                        }];
                        e
                    },
                ),
                Some(Stop::Sql(e)) => {
                    let err = sql_failure(m, Some(s), e, attempt, undone, server_stop, run);
                    (
                        failure_logs(m, Some(s), e, attempt),
                        if undone {
                            err
                        } else {
                            err.first_statement(i == 0, &m.name)
                        },
                    )
                }
                Some(Stop::ReplicaLag(e)) => (
                    format!(
                        "Migration: {}\nStopped before statement {} of {} (line {}): {}\n",
                        m.name,
                        i + 1,
                        total,
                        s.line,
                        e.cause
                    ),
                    Error {
                        hint: format!(
                            "the statements before it were applied; run the rest by hand once the standby caught up and record the migration as applied, or undo them and record it as rolled back; {}",
                            e.hint
                        ),
                        remedies: vec![
                            Remedy::Monitor,
                            Remedy::Resolve {
                                migration: m.name.clone(),
                            },
                        ],
                        ..e.clone()
                    },
                ),
                Some(Stop::Cancelled | Stop::Abandoned) => (
                    format!(
                        "Migration: {}\nCancelled by the operator at statement {} of {} (line {}).\n",
                        m.name,
                        i + 1,
                        total,
                        s.line
                    ),
                    cancelled_statement_by_statement(m, i, total, nothing_applied),
                ),
                None => (
                    format!(
                        "Migration: {}\nStatement {} left an invalid index behind.\n",
                        m.name,
                        i + 1
                    ),
                    Error::new(
                        ErrorKind::MigrationFailed,
                        format!(
                            "migration {} left an invalid index at {}:{}",
                            m.name,
                            m.script_path().display(),
                            s.line
                        ),
                        "",
                    ),
                ),
            };
            if !invalid.is_empty() {
                let drops: Vec<String> = invalid
                    .iter()
                    .map(|i| format!("DROP INDEX CONCURRENTLY {i};"))
                    .collect();
                logs.push_str(&format!(
                    "\nInvalid index left behind: {}\nClean up with: {}\n",
                    invalid.join(", "),
                    drops.join(" ")
                ));
                err.cause
                    .push_str(&format!("; index {} is left INVALID", invalid.join(", ")));
                err.hint = match &stop {
                    Some(Stop::Sql(e)) => format!(
                        "run `{}`, {}, then record the migration as rolled back and deploy again",
                        drops.join(" "),
                        index_failure_fix(e)
                    ),
                    _ => format!(
                        "run `{}`, then record the migration as rolled back and deploy again",
                        drops.join(" "),
                    ),
                };
                err.remedies = vec![Remedy::ResolveRolledBack {
                    migration: m.name.clone(),
                }];
            }
            if let Some(why) = &unchecked {
                err.hint = format!(
                    "{} (whether it left an INVALID index could not be checked: {why})",
                    err.hint
                );
            }
            logs.push_str(&format!("\nStatements applied before it: {i} of {total}\n"));
            let recorded = async {
                let ledger = run.ledger_session(server_stop).await?;
                ledger::record_failure(ledger.client(), schema, &id, &logs).await?;
                if undone {
                    ledger::mark_rolled_back(ledger.client(), schema, &id).await?;
                }
                Ok::<(), Error>(())
            };
            if let Err(record) = recorded.await {
                err.hint = format!(
                    "{} (the failure could not be recorded: {}; the ledger shows the migration as started)",
                    err.hint, record.cause
                );
            }
            return Err(err);
        }
    }
    run.reset_session()
        .await
        .map_err(|e| query_error("resetting the session", &e))?;
    ledger::finish(client, schema, &id, 1).await?;
    Ok(Applied::Now)
}

/// Invalid indexes on a table (as written in the script), as qualified names.
async fn invalid_indexes(client: &Client, table: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT i.indexrelid::regclass::text FROM pg_index i \
             WHERE i.indrelid = to_regclass($1) AND NOT i.indisvalid ORDER BY 1",
            &[&table],
        )
        .await
        .map_err(|e| query_error("checking for invalid indexes", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Why a transactional migration did not commit, and the statement it stopped at.
enum Failure {
    Sql {
        error: tokio_postgres::Error,
        statement: Option<Statement>,
    },
    Cancelled {
        statement: Option<Statement>,
        /// The statement would not stop and its backend was terminated.
        session_lost: bool,
    },
    /// Writing its row and committing failed.
    Commit(tokio_postgres::Error),
    /// The watchdog stopped it: sessions queued behind its locks past `blocking_timeout`.
    Blocking {
        blocked: Blocked,
        statement: Statement,
    },
    /// It is not this deploy's to apply (the lock was lost, another deploy started it): nothing
    /// of it ran, and there is no attempt to record.
    Stop(Error),
}

impl Failure {
    fn sql(statement: Option<&Statement>) -> impl FnOnce(tokio_postgres::Error) -> Failure + '_ {
        move |error| Failure::Sql {
            error,
            statement: statement.cloned(),
        }
    }
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let capped = exp.min(Duration::from_secs(30));
    // ±25% jitter so several deploys retrying at once do not collide again.
    let jitter = rand::rng().random_range(0.75..1.25);
    capped.mul_f64(jitter)
}

/// The session holding the migration lock for a whole deploy; dropping it releases the lock.
pub struct MigrationLock {
    _client: Client,
    /// Its backend, which each migration's transaction checks still holds the lock.
    pid: i32,
}

/// A role's or database's `statement_timeout`, `idle_in_transaction_session_timeout` or
/// `idle_session_timeout` would end the lock's session while the deploy runs (it sits idle
/// between checks), and the lock with it: this session sets them off for itself. A server too
/// old for one of them has nothing to turn off.
pub(super) async fn immune_to_timeouts(client: &Client) -> Result<()> {
    for setting in [
        "statement_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
    ] {
        match client
            .query_one("SELECT set_config($1, '0', false)", &[&setting])
            .await
        {
            Ok(_) => {}
            Err(e) if db::sqlstate(&e) == Some(&SqlState::UNDEFINED_OBJECT) => {}
            Err(e) => return Err(query_error("preparing the migration lock's session", &e)),
        }
    }
    Ok(())
}

/// Session-level advisory lock on its own connection, polled so the wait can be bounded and the
/// holder named.
async fn acquire_lock(
    target: &DbTarget,
    opts: &DeployOptions,
    events: Events<'_>,
) -> Result<MigrationLock> {
    let (wait, cancel) = (opts.settings.lock_wait, &opts.cancel);
    let session = opts.spares.take(target).await?;
    let pid = session.backend_pid;
    let client = session.client;
    immune_to_timeouts(&client).await?;
    let started = Instant::now();
    let mut announced: Option<Option<i32>> = None;
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&ADVISORY_LOCK_KEY])
            .await
            .map_err(|e| query_error("taking the migration lock", &e))?
            .get(0);
        if got {
            if announced.is_some() {
                emit(
                    events,
                    DeployEvent::LockAcquired {
                        waited_ms: started.elapsed().as_millis() as u64,
                    },
                );
            }
            return Ok(MigrationLock {
                _client: client,
                pid,
            });
        }
        let holder = lock_holder(&client).await?;
        let pid = holder.as_ref().map(|h| h.pid);
        if announced != Some(pid) {
            emit(
                events,
                DeployEvent::WaitingForLock {
                    holder: holder.clone(),
                },
            );
            announced = Some(pid);
        }
        if started.elapsed() >= wait {
            let who = holder
                .map(|h| h.to_string())
                .unwrap_or_else(|| "another session".into());
            return Err(Error::new(
                ErrorKind::LockTimeout,
                format!(
                    "gave up after {}s waiting for the migration lock held by {who}",
                    wait.as_secs()
                ),
                "another deploy (pgdeck or prisma migrate) is running: wait for it",
            )
            .with(Remedy::WaitLonger));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = cancel.cancelled() => {
                return Err(Error::cancelled(
                    "deploy cancelled while waiting for the migration lock: nothing was applied",
                    "deploy again once the other deploy is done",
                )
                .with(Remedy::Deploy));
            }
        }
    }
}

async fn lock_holder(client: &Client) -> Result<Option<LockHolder>> {
    let row = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
                    coalesce(host(a.client_addr), 'local socket'), a.backend_start \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1 \
               AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             LIMIT 1",
            &[&(ADVISORY_LOCK_KEY as u32)],
        )
        .await
        .map_err(|e| query_error("looking up the migration lock holder", &e))?;
    Ok(row.map(|r| LockHolder {
        pid: r.get(0),
        application_name: r.get(1),
        user: r.get(2),
        client: r.get(3),
        since: r.get(4),
    }))
}

/// The deploy's session, and how to stop what it runs.
pub(super) struct Runner<'a> {
    client: &'a Client,
    canceller: db::Canceller,
    cancel: &'a CancellationToken,
    /// The deploy session's backend, which the watchdog watches.
    backend_pid: i32,
    /// Set once the watchdog lost its session for good.
    unwatched: AtomicBool,
    /// Who the last statement waited for, as the watchdog last saw it: a lock timeout names
    /// them.
    pub(super) waited_for: std::sync::Mutex<Vec<Holder>>,
    events: Events<'a>,
    target: &'a DbTarget,
    /// What the server said when it ended the session, if it did.
    pub(super) ended: db::Ended,
    /// The role's or database's statement_timeout, as the session started with it ("0": none).
    pub(super) statement_timeout: String,
    /// [`reset_session_sql`] for this server.
    reset_sql: String,
    watchdog: Option<&'a Watchdog>,
    /// The backend holding the migration lock for this deploy, when it takes one.
    lock_pid: Option<i32>,
    /// The target's schema, quoted, as the session's search_path.
    search_path: String,
    set_search_path: tokio_postgres::Statement,
    queries: Queries,
}

/// What the deploy asks before every migration, prepared once for the whole deploy: a query
/// parsed and planned afresh each time costs the server more than it takes to answer.
struct Queries {
    /// [`replicas::WORST_SQL`].
    replica_lag: tokio_postgres::Statement,
    /// Whether a backend ($1) holds the migration lock (key $2).
    holds_lock: tokio_postgres::Statement,
    /// [`ledger::standing_sql`].
    standing: tokio_postgres::Statement,
}

impl Queries {
    async fn prepare(client: &Client, schema: &str) -> Result<Queries, tokio_postgres::Error> {
        let standing = ledger::standing_sql(schema);
        let (replica_lag, holds_lock, standing) = futures_util::future::try_join3(
            client.prepare(replicas::WORST_SQL),
            client.prepare(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                   AND classid = 0 AND objid = $2 AND objsubid = 1 AND pid = $1 \
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            ),
            client.prepare(&standing),
        )
        .await?;
        Ok(Queries {
            replica_lag,
            holds_lock,
            standing,
        })
    }
}

/// Undoes whatever a migration left in its session: the role, every setting (RESET ALL goes
/// back to the role's and database's defaults), temporary tables, sequence caches, LISTENs,
/// cursors held open and session advisory locks (the migration lock is held on a session of
/// its own). [`Runner::reset_session`] then sets the target's search_path again.
///
/// The deploy's session also keeps out of the role's `idle_session_timeout` (PostgreSQL 14 and
/// later): it sits idle between attempts, for up to half a minute of backoff.
fn reset_session_sql(server_version_num: i32) -> String {
    let mut sql = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DISCARD TEMP; DISCARD SEQUENCES; \
                   UNLISTEN *; CLOSE ALL; SELECT pg_catalog.pg_advisory_unlock_all()"
        .to_owned();
    if server_version_num >= 140000 {
        sql.push_str("; SET idle_session_timeout = 0");
    }
    sql
}

/// The session a failure is recorded with.
enum LedgerSession<'a> {
    Same(&'a Client),
    Fresh(db::Session),
}

impl LedgerSession<'_> {
    fn client(&self) -> &Client {
        match self {
            LedgerSession::Same(c) => c,
            LedgerSession::Fresh(s) => &s.client,
        }
    }
}

/// How a statement ended.
enum Ran {
    /// It ran to its end (also when a cancellation came too late to stop it: it counts).
    Done(Result<(), tokio_postgres::Error>),
    /// The operator cancelled it and the server stopped it, or it never started.
    Cancelled,
    /// The watchdog found sessions queued behind it past the bound; the server stopped it.
    Blocking(Blocked),
    /// It did not stop within [`CANCEL_GRACE`] of the cancel request: its backend was
    /// terminated, so the server rolled its transaction back, and the session is gone.
    Abandoned,
}

impl Runner<'_> {
    /// Runs one statement; a cancellation sends PostgreSQL's cancel request and waits for the
    /// server to stop the statement, so it never keeps running (or waiting for its lock) after
    /// pgdeck has given up on it. A statement that finished before the request reached it is
    /// done, and said so.
    ///
    /// `watched`: the lock-queue watchdog (when on) stops it the same way once a session has
    /// queued behind the migration's locks past the bound.
    async fn exec(&self, sql: &str, watched: bool) -> Ran {
        if self.cancel.is_cancelled() {
            return Ran::Cancelled;
        }
        let run = self.client.batch_execute(sql);
        tokio::pin!(run);
        let watchdog = self
            .watchdog
            .filter(|_| watched && !self.unwatched.load(Ordering::Relaxed));
        if let Ok(mut w) = self.waited_for.lock() {
            w.clear();
        }
        let on_wait = |w: Waiting| {
            if let Ok(mut last) = self.waited_for.lock() {
                last.clone_from(&w.holders);
            }
            emit(
                self.events,
                DeployEvent::Waiting {
                    waited_ms: w.waited.as_millis() as u64,
                    holders: w.holders,
                    changed: w.changed,
                },
            );
        };
        let watch = async {
            match watchdog {
                Some(w) => match w.watch(self.backend_pid, &on_wait).await {
                    Ok(blocked) => blocked,
                    Err(cause) => {
                        // Said once; the deploy goes on as with the watchdog off.
                        self.unwatched.store(true, Ordering::Relaxed);
                        emit(self.events, DeployEvent::WatchdogLost { cause });
                        std::future::pending().await
                    }
                },
                None => std::future::pending().await,
            }
        };
        let stopped = tokio::select! {
            biased;
            r = &mut run => return Ran::Done(r),
            () = self.cancel.cancelled() => None,
            blocked = watch => Some(blocked),
        };
        // The watchdog's own session cancels with pg_cancel_backend, which has signalled the
        // backend when it returns; else a session of its own does (see db::Canceller).
        let cancelled = match self.watchdog {
            Some(w) => w.cancel(self.backend_pid).await,
            None => false,
        };
        if !cancelled {
            let _ = self.canceller.cancel().await;
        }
        match tokio::time::timeout(CANCEL_GRACE, run).await {
            Ok(Err(e)) if db::sqlstate(&e) == Some(&SqlState::QUERY_CANCELED) => match stopped {
                Some(blocked) => Ran::Blocking(blocked),
                None => Ran::Cancelled,
            },
            Ok(done) => Ran::Done(done),
            Err(_) => {
                let _ = self.canceller.terminate().await;
                Ran::Abandoned
            }
        }
    }

    /// Why the server stopped a statement, when it is not the SQL's fault.
    async fn server_stop(&self, e: &tokio_postgres::Error) -> Option<ServerStop> {
        let closed = e.is_closed() || self.client.is_closed();
        if e.as_db_error().is_none() && closed {
            self.ended.settled().await;
        }
        let (code, message) = match e.as_db_error() {
            Some(db) => (db.code().clone(), db.message().to_owned()),
            // The request after the server's last word only sees a closed connection.
            None => match self.ended.reason() {
                Some(said) => said,
                None if closed => {
                    return Some(ServerStop::Lost);
                }
                // A client-side error on a live connection (an unexpected message): no cause
                // from the server to name.
                None => return None,
            },
        };
        let class = &code.code()[..2];
        Some(match code {
            c if c == SqlState::QUERY_CANCELED => {
                // PostgreSQL's message (unless translated) says which; a translated one with a
                // statement_timeout in force is taken as the timeout.
                if message.contains("statement timeout") {
                    ServerStop::StatementTimeout
                } else if message.contains("user request") || self.statement_timeout == "0" {
                    ServerStop::CancelledElsewhere
                } else {
                    ServerStop::StatementTimeout
                }
            }
            c if c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => {
                ServerStop::IdleInTransaction
            }
            c if c == SqlState::ADMIN_SHUTDOWN || c == SqlState::IDLE_SESSION_TIMEOUT => {
                ServerStop::Terminated
            }
            // Class 58 also holds "file not found" for a COPY or a function: that is the SQL's.
            c if class == "53" || c == SqlState::SYSTEM_ERROR || c == SqlState::IO_ERROR => {
                ServerStop::Resources
            }
            _ if class == "08" || class == "57" => ServerStop::Lost,
            _ => return None,
        })
    }

    /// A session to write the ledger with after a failure: this one, or a new one when the
    /// server ended it.
    async fn ledger_session(&self, stop: Option<ServerStop>) -> Result<LedgerSession<'_>> {
        if stop.is_some_and(ServerStop::ends_session) || self.client.is_closed() {
            return Ok(LedgerSession::Fresh(db::connect(self.target).await?));
        }
        // What the migration set stays out of the ledger write.
        self.reset_session()
            .await
            .map_err(|e| query_error("resetting the session", &e))?;
        Ok(LedgerSession::Same(self.client))
    }

    /// Puts the session back as it was when the deploy connected: nothing one migration set
    /// reaches the next one or a ledger write. Two requests sent together.
    async fn reset_session(&self) -> Result<(), tokio_postgres::Error> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&self.search_path];
        let reset = self.client.batch_execute(&self.reset_sql);
        let path = self.client.query_one(&self.set_search_path, &params);
        futures_util::future::try_join(reset, path).await.map(drop)
    }

    /// Sleeps, unless cancelled first (then false).
    /// Waits while a standby's replay lag is above `max_replica_lag`, before `next`.
    async fn wait_for_replicas(&self, opts: &DeployOptions, next: &str) -> replicas::Ended {
        let Some(max) = opts.settings.max_replica_lag else {
            return replicas::Ended::CaughtUp { waited: None };
        };
        let limit = opts.settings.replica_lag_wait;
        let started = Instant::now();
        let mut last: Option<replicas::Lag> = None;
        loop {
            let lag = match replicas::worst(self.client, &self.queries.replica_lag).await {
                Ok(lag) => lag.filter(|l| l.bytes > max),
                // The deploy's own session failing is for the migration's own statements to
                // report; a standby it cannot read is none to wait for.
                Err(_) => None,
            };
            let Some(lag) = lag else {
                let waited = last.map(|l| (l, started.elapsed()));
                if let Some((l, took)) = &waited {
                    emit(
                        self.events,
                        DeployEvent::ReplicaCaughtUp {
                            next: next.to_owned(),
                            replica: l.replica.clone(),
                            waited_ms: took.as_millis() as u64,
                        },
                    );
                }
                return replicas::Ended::CaughtUp { waited };
            };
            let waited = started.elapsed();
            if waited >= limit {
                return replicas::Ended::GaveUp(replicas::gave_up(&lag, max, waited, next));
            }
            emit(
                self.events,
                DeployEvent::WaitingForReplica {
                    next: next.to_owned(),
                    replica: lag.replica.clone(),
                    replay_lag_bytes: lag.bytes,
                    replay_lag_seconds: lag.seconds,
                    waited_ms: waited.as_millis() as u64,
                    max_lag_bytes: max,
                    wait_limit_ms: limit.as_millis() as u64,
                },
            );
            last = Some(lag);
            if !self.pause(replicas::POLL.min(limit - waited)).await {
                return replicas::Ended::Cancelled;
            }
        }
    }

    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.cancel.cancelled() => false,
        }
    }
}
