//! Rehearsal and drift, on a scratch server, never on the target.
//!
//! The target's schema is copied into a scratch database (`pg_dump --schema-only` on a read-only
//! session, `pg_restore` on the scratch side), with its ledger rows, and the real deploy engine
//! applies the pending migrations there, asking the server after every statement what it locked
//! and rewrote ([`crate::migrate::observe`]). Beside it, a second scratch database is built
//! from the migrations the target has applied, and the two schemas are compared object by object
//! ([`catalog`], [`drift`]). The copy holds no rows, so what depends on data (a NOT NULL on a
//! column with nulls, a unique index over duplicates, a long rewrite) is not rehearsed: the
//! observed locks and rewrites say what such a statement will do to the real table.

pub mod catalog;
mod copy;
pub mod drift;
mod scratch;

use std::time::{Duration, Instant};

use serde::Serialize;
use squawk_syntax::ast;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use crate::db::{self, query_error};
use crate::error::{Error, ErrorKind, Result};
use crate::lint::facts::identifier;
use crate::migrate::deploy::{DeployEvent, DeployOptions, DeploySettings};
use crate::migrate::ledger::{self, Ledger};
use crate::migrate::observe::Observation;
use crate::migrate::script::statements_of;
use crate::migrate::{self, MigrationsDir, StatusReport};
use crate::target::DbTarget;
pub use catalog::ObjectKind;
pub use drift::{Difference, Side};

/// How to rehearse.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// A server to rehearse on instead of a throwaway cluster (`--scratch-url`).
    pub scratch: Option<DbTarget>,
    /// The environment's deploy settings (its `lock_timeout` is part of what is rehearsed).
    pub settings: DeploySettings,
    /// Compare the target's schema with what its migrations build.
    pub drift: bool,
    pub cancel: CancellationToken,
}

/// Progress, for the front ends to show.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum VerifyEvent {
    ScratchReady {
        version: String,
        /// A throwaway cluster of pgdeck's own (else the server given).
        own: bool,
        ms: u64,
    },
    SchemaCopied {
        objects: usize,
        ms: u64,
    },
    Built {
        migrations: usize,
        ms: u64,
    },
    Rehearsing {
        name: String,
        index: usize,
        total: usize,
    },
    Rehearsed {
        name: String,
        ok: bool,
    },
}

impl VerifyEvent {
    /// The event in words, as both front ends show it.
    pub fn said(&self) -> String {
        match self {
            VerifyEvent::ScratchReady {
                version,
                own: true,
                ms,
            } => {
                format!("scratch cluster PostgreSQL {version} started in {ms} ms")
            }
            VerifyEvent::ScratchReady {
                version,
                own: false,
                ..
            } => {
                format!("rehearsing on the given scratch server (PostgreSQL {version})")
            }
            VerifyEvent::SchemaCopied { objects, ms } => {
                format!("target schema copied ({objects} objects) in {ms} ms")
            }
            VerifyEvent::Built { migrations, ms } => {
                format!("built the schema of {migrations} applied migrations in {ms} ms")
            }
            VerifyEvent::Rehearsing { name, index, total } => {
                format!("[{index}/{total}] rehearsing {name}")
            }
            VerifyEvent::Rehearsed { name, ok: true } => {
                format!("      {name} applies on the copy")
            }
            VerifyEvent::Rehearsed { name, ok: false } => {
                format!("      {name} FAILED on the copy")
            }
        }
    }
}

/// What happened to one pending migration on the copy.
#[derive(Debug, Clone, Serialize)]
pub struct Rehearsed {
    pub name: String,
    pub outcome: Outcome,
    /// In one transaction (else statement by statement, what ran before a failure staying done).
    pub transactional: bool,
    /// What each statement locked and rewrote, in order.
    pub statements: Vec<Observation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Applied {
        ms: u64,
    },
    Failed {
        error: String,
    },
    /// A migration before it failed.
    NotRun,
}

/// Why the rehearsal stopped.
#[derive(Debug, Clone, Serialize)]
pub struct RehearsalFailure {
    pub migration: Option<String>,
    pub cause: String,
}

/// The drift check's result.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// How many migrations the comparison schema was built from (those the target has applied).
    pub built_from: usize,
    /// Applied on the target but not in the folder: the build lacks them, so the comparison is
    /// incomplete.
    pub missing_locally: Vec<String>,
    /// Applied on the target from a file that has changed since: built from the file as it is.
    pub edited: Vec<String>,
    /// The schemas compared: the ledger's, and those the migrations create.
    pub schemas: Vec<String>,
    /// A migration that does not apply on an empty database: no comparison was made.
    pub build_failed: Option<RehearsalFailure>,
    pub differences: Vec<Difference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub target_version: String,
    pub scratch_version: String,
    pub scratch_own: bool,
    pub pending: Vec<Rehearsed>,
    pub failure: Option<RehearsalFailure>,
    pub drift: Option<DriftReport>,
    /// What the rehearsal could not show, in words.
    pub warnings: Vec<String>,
    pub ms: u64,
}

impl VerifyReport {
    /// Every pending migration applied on the copy.
    pub fn rehearsal_passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The drift check ran and found differences.
    pub fn drifted(&self) -> bool {
        self.drift
            .as_ref()
            .is_some_and(|d| !d.differences.is_empty())
    }

    pub fn build_failed(&self) -> bool {
        self.drift
            .as_ref()
            .is_some_and(|d| d.build_failed.is_some())
    }
}

/// What the target is, read on a read-only session before anything starts.
struct TargetFacts {
    version: String,
    major: u32,
    system: Option<String>,
    ledger: Option<Ledger>,
    extensions: Vec<String>,
    /// The extensions the target's server could install.
    available: Vec<String>,
    roles: Vec<String>,
    superuser: bool,
    user: String,
    populated_matviews: Vec<String>,
}

async fn read_target(target: &DbTarget) -> Result<TargetFacts> {
    let session = db::connect(&target.with_application_name("pgdeck-verify")).await?;
    let client = &session.client;
    client
        .batch_execute("SET default_transaction_read_only = on")
        .await
        .map_err(|e| query_error("making the session read-only", &e))?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000, \
                    ARRAY(SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1), \
                    ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1), \
                    ARRAY(SELECT name::text FROM pg_available_extensions), \
                    coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false), \
                    current_user::text, \
                    ARRAY(SELECT format('%I.%I', schemaname, matviewname) FROM pg_matviews WHERE ispopulated)",
            &[],
        )
        .await
        .map_err(|e| query_error("reading the target", &e))?;
    Ok(TargetFacts {
        version: session.server_version.clone(),
        major: row.get::<_, i32>(0) as u32,
        extensions: row.get(1),
        roles: row.get(2),
        available: row.get(3),
        superuser: row.get(4),
        user: row.get(5),
        populated_matviews: row.get(6),
        system: scratch::system_identifier(client).await,
        ledger: Ledger::read(client, &target.schema).await?,
    })
}

/// Rehearses `dir`'s pending migrations on a copy of `target`'s schema and, with
/// `opts.drift`, compares the target's schema with what its applied migrations build. Writes
/// nothing to the target. A rehearsal that fails is a report, not an error; an error means it
/// could not be made (the target unreachable, the scratch server unfit).
pub async fn verify(
    target: &DbTarget,
    dir: &MigrationsDir,
    opts: &VerifyOptions,
    events: &UnboundedSender<VerifyEvent>,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let facts = read_target(target).await?;
    let programs = crate::backup::tools::Programs::find().await?;
    let opened = Instant::now();
    let mut scratch = scratch::Scratch::open(
        opts.scratch.as_ref(),
        target,
        facts.major,
        facts.system.as_deref(),
    )
    .await?;
    let _ = events.send(VerifyEvent::ScratchReady {
        version: scratch.version.clone(),
        own: scratch.own(),
        ms: ms(opened.elapsed()),
    });
    // A cancel stops whatever runs (the dump, the restore, a statement on the copy) by dropping
    // it; the scratch databases are dropped all the same.
    let result = tokio::select! {
        r = rehearse_and_compare(&mut scratch, &programs, target, dir, &facts, opts, events) => r,
        () = opts.cancel.cancelled() => Err(Error::cancelled(
            "rehearsal cancelled; nothing was written to the target",
            "run it again when ready",
        )),
    };
    let own = scratch.own();
    let version = scratch.version.clone();
    scratch.close().await;
    let (pending, failure, drift) = result?;
    let mut warnings = Vec::new();
    if !facts.superuser {
        warnings.push(format!(
            "rehearsed as a superuser; the target's role {} is not one, so a statement it may not run there (CREATE EXTENSION, a table it does not own) passes here",
            facts.user
        ));
    }
    Ok(VerifyReport {
        warnings,
        target_version: facts.version,
        scratch_version: version,
        scratch_own: own,
        pending,
        failure,
        drift,
        ms: ms(started.elapsed()),
    })
}

type Results = (
    Vec<Rehearsed>,
    Option<RehearsalFailure>,
    Option<DriftReport>,
);

async fn rehearse_and_compare(
    scratch: &mut scratch::Scratch,
    programs: &crate::backup::tools::Programs,
    target: &DbTarget,
    dir: &MigrationsDir,
    facts: &TargetFacts,
    opts: &VerifyOptions,
    events: &UnboundedSender<VerifyEvent>,
) -> Result<Results> {
    check_extensions(scratch, dir, facts).await?;
    let applied: Vec<_> = dir
        .migrations
        .iter()
        .filter(|m| {
            facts
                .ledger
                .as_ref()
                .is_some_and(|l| l.applied(&m.name).is_some())
        })
        .cloned()
        .collect();
    // Roles are the cluster's, not a database's: a role an applied migration creates must not
    // be there before the build runs that migration, and the copy needs it once it is.
    let made_by_build: Vec<String> = if opts.drift {
        applied
            .iter()
            .flat_map(|m| created_roles(m.sql()))
            .collect()
    } else {
        Vec::new()
    };
    let (first, later): (Vec<String>, Vec<String>) = facts
        .roles
        .iter()
        .cloned()
        .partition(|r| !made_by_build.contains(r));
    scratch.ensure_roles(&first).await?;
    for m in &dir.migrations {
        for role in created_roles(m.sql()) {
            scratch.forget_role_later(&role);
        }
    }
    let copy_db = scratch.database("copy", &target.schema).await?;
    let built_db = if opts.drift {
        Some(scratch.database("built", &target.schema).await?)
    } else {
        None
    };
    let status = StatusReport::build(dir, facts.ledger.as_ref());
    let rehearsal = async {
        let t = Instant::now();
        copy::copy_schema(programs, target, &copy_db, copy_lock_wait(opts)).await?;
        let session = db::connect(&copy_db).await?;
        if let Some(ledger) = &facts.ledger {
            ledger::copy_rows(&session.client, &copy_db.schema, &ledger.rows).await?;
        }
        // A schema-only copy restores every materialized view unpopulated; those the target
        // has populated are refreshed (instant on empty tables), so that what needs them
        // populated (REFRESH ... CONCURRENTLY) is rehearsed as it will run.
        for view in &facts.populated_matviews {
            let _ = session
                .client
                .batch_execute(&format!("REFRESH MATERIALIZED VIEW {view}"))
                .await;
        }
        let before = catalog::Schema::read(&session.client).await?;
        let _ = events.send(VerifyEvent::SchemaCopied {
            objects: before.len(),
            ms: ms(t.elapsed()),
        });
        let (pending, failure) = rehearse(&copy_db, dir, opts, events).await?;
        Ok::<_, Error>((before, pending, failure))
    };
    let build = async {
        let Some(built_db) = &built_db else {
            return Ok(None);
        };
        let t = Instant::now();
        let count = applied.len();
        let session = db::connect(built_db).await?;
        let build_failed = build(&session.client, &target.schema, &applied).await?;
        let schema = match build_failed {
            None => Some(catalog::Schema::read(&session.client).await?),
            Some(_) => None,
        };
        let _ = events.send(VerifyEvent::Built {
            migrations: count,
            ms: ms(t.elapsed()),
        });
        Ok::<_, Error>(Some((count, build_failed, schema)))
    };
    let (rehearsal, build) = if later.is_empty() {
        tokio::join!(rehearsal, build)
    } else {
        // The build makes those roles; the copy's policies and the pending migrations may
        // need them: the build goes first, then the roles it did not make are added.
        let build = build.await;
        if build.is_ok() {
            scratch.ensure_roles(&later).await?;
        }
        (rehearsal.await, build)
    };
    let (before, pending, failure) = rehearsal?;
    let drift = build?.map(|(built_from, build_failed, built)| {
        // The ledger's schema and those the migrations make: another tool's schema in the same
        // database is not this ledger's drift.
        let mut scope = built.as_ref().map(|b| b.schemas()).unwrap_or_default();
        scope.insert(target.schema.clone());
        DriftReport {
            built_from,
            missing_locally: status
                .migrations
                .iter()
                .filter(|m| matches!(m.state, migrate::MigrationState::MissingLocally { .. }))
                .map(|m| m.name.clone())
                .collect(),
            edited: status
                .migrations
                .iter()
                .filter(|m| matches!(m.state, migrate::MigrationState::Edited { .. }))
                .map(|m| m.name.clone())
                .collect(),
            differences: built
                .map(|b| drift::compare(&before.within(&scope), &b.within(&scope)))
                .unwrap_or_default(),
            schemas: scope.into_iter().collect(),
            build_failed,
        }
    });
    Ok((pending, failure, drift))
}

/// Builds the schema `migrations` make in an empty database, for the drift check: each
/// migration in a transaction of its own (statement by statement where PostgreSQL refuses one),
/// its session reset after it, as the deploy applies them, but without its ledger, lock or
/// watchdog (nobody else is there; the rehearsal is what runs the real engine). A transactional
/// migration goes in one request; only when it fails are its statements run one by one, rolled
/// back, to say which failed. A migration that fails is the result.
async fn build(
    client: &tokio_postgres::Client,
    schema: &str,
    migrations: &[migrate::LocalMigration],
) -> Result<Option<RehearsalFailure>> {
    let search_path = db::quote_ident(schema);
    // The deploy creates the ledger's schema before the first migration; so does the build.
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {search_path}"))
        .await
        .map_err(|e| query_error("building the schema", &e))?;
    // What a migration SET (search_path, a role) does not reach the next one.
    let reset = format!(
        "RESET ALL; SELECT pg_catalog.set_config('search_path', '{}', false);",
        search_path.replace('\'', "''")
    );
    for m in migrations {
        let statements = migrate::deploy::statements_for(m)?;
        let run: Vec<&migrate::script::Statement> = statements
            .iter()
            .filter(|s| !s.transaction_control)
            .collect();
        let transactional = statements
            .iter()
            .all(|s| s.mode == migrate::script::TxMode::Transaction);
        let failed = if transactional {
            let body: String = run.iter().map(|s| format!("{};\n", s.text)).collect();
            match client
                .batch_execute(&format!("BEGIN;\n{body}COMMIT;\n{reset}"))
                .await
            {
                Ok(()) => None,
                Err(_) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    let found = first_failing(client, &run, true).await;
                    let _ = client.batch_execute(&reset).await;
                    Some(found)
                }
            }
        } else {
            let found = match first_failing(client, &run, false).await {
                (None, _) => None,
                failed => Some(failed),
            };
            let _ = client.batch_execute(&reset).await;
            found
        };
        if let Some((at, why)) = failed {
            let at = at
                .map(|s| format!(" at {}:{}:{}", m.script_path().display(), s.line, s.column))
                .unwrap_or_default();
            return Ok(Some(RehearsalFailure {
                migration: Some(m.name.clone()),
                cause: format!("migration {} failed{at}: {why}", m.name),
            }));
        }
    }
    Ok(None)
}

/// Runs `statements` one by one (in a transaction rolled back at the end, when
/// `in_transaction`), and returns the first that fails with the server's reason.
async fn first_failing<'a>(
    client: &tokio_postgres::Client,
    statements: &[&'a migrate::script::Statement],
    in_transaction: bool,
) -> (Option<&'a migrate::script::Statement>, String) {
    if in_transaction {
        let _ = client.batch_execute("BEGIN").await;
    }
    let mut found = (None, String::new());
    for s in statements {
        if let Err(e) = client.batch_execute(&s.text).await {
            let why = e
                .as_db_error()
                .map(|d| format!("{} (SQLSTATE {})", d.message(), d.code().code()))
                .unwrap_or_else(|| e.to_string());
            found = (Some(*s), why);
            break;
        }
    }
    if in_transaction {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    if found.0.is_none() && in_transaction {
        // All ran one by one: the failure was in the commit (a deferred constraint).
        found.1 = "its commit failed".into();
    }
    found
}

/// How long pg_dump waits for each table's ACCESS SHARE lock on the target before giving up:
/// the environment's lock_timeout (5 s when it is off). A dump waiting behind someone's ACCESS
/// EXCLUSIVE would otherwise queue the application's queries behind it.
fn copy_lock_wait(opts: &VerifyOptions) -> Duration {
    match opts.settings.lock_timeout {
        d if d.is_zero() => Duration::from_secs(5),
        d => d,
    }
}

/// The engine's options on the copy: the environment's lock_timeout, no retries and no
/// watchdog (nobody else is there to wait or be waited for), every statement observed.
fn rehearsal_options(opts: &VerifyOptions) -> DeployOptions {
    DeployOptions {
        cancel: opts.cancel.clone(),
        observe: true,
        retry_backoff: Duration::ZERO,
        ..DeployOptions::new(DeploySettings {
            lock_retries: 0,
            blocking_timeout: None,
            ..opts.settings.clone()
        })
    }
}

/// Applies the pending migrations on the copy, observing each statement.
async fn rehearse(
    copy_db: &DbTarget,
    dir: &MigrationsDir,
    opts: &VerifyOptions,
    events: &UnboundedSender<VerifyEvent>,
) -> Result<(Vec<Rehearsed>, Option<RehearsalFailure>)> {
    let (tx, mut rx) = unbounded_channel();
    let options = rehearsal_options(opts);
    let deploy = migrate::deploy(copy_db, dir, &options, &tx);
    tokio::pin!(deploy);
    let mut pending: Vec<Rehearsed> = Vec::new();
    let fold = |event: DeployEvent, pending: &mut Vec<Rehearsed>| match event {
        DeployEvent::Pending { names } => {
            *pending = names
                .into_iter()
                .map(|name| Rehearsed {
                    name,
                    outcome: Outcome::NotRun,
                    transactional: true,
                    statements: Vec::new(),
                })
                .collect();
        }
        DeployEvent::MigrationStarted {
            name,
            index,
            total,
            transactional: one_transaction,
            ..
        } => {
            if let Some(r) = pending.iter_mut().find(|r| r.name == name) {
                r.transactional = one_transaction;
            }
            let _ = events.send(VerifyEvent::Rehearsing { name, index, total });
        }
        DeployEvent::Observed(o) => {
            if let Some(r) = pending.iter_mut().find(|r| r.name == o.migration) {
                r.statements.retain(|s| s.statement != o.statement);
                r.statements.push(o);
            }
        }
        DeployEvent::MigrationApplied { name, duration_ms } => {
            if let Some(r) = pending.iter_mut().find(|r| r.name == name) {
                r.outcome = Outcome::Applied { ms: duration_ms };
            }
            let _ = events.send(VerifyEvent::Rehearsed { name, ok: true });
        }
        DeployEvent::MigrationFailed { name, error } => {
            if let Some(r) = pending.iter_mut().find(|r| r.name == name) {
                r.outcome = Outcome::Failed { error };
                // What a rolled-back transaction did is gone with it; the statements of one run
                // statement by statement before the failure stay done.
                if r.transactional {
                    r.statements.clear();
                }
            }
            let _ = events.send(VerifyEvent::Rehearsed { name, ok: false });
        }
        _ => {}
    };
    let result = loop {
        tokio::select! {
            Some(event) = rx.recv() => fold(event, &mut pending),
            r = &mut deploy => break r,
        }
    };
    while let Ok(event) = rx.try_recv() {
        fold(event, &mut pending);
    }
    let failure = match result {
        Ok(_) => None,
        Err(e) if e.kind == ErrorKind::Cancelled => return Err(e),
        Err(e) => Some(RehearsalFailure {
            migration: pending
                .iter()
                .find(|r| matches!(r.outcome, Outcome::Failed { .. }))
                .map(|r| r.name.clone()),
            cause: e.cause,
        }),
    };
    Ok((pending, failure))
}

/// The extensions the target has and the migrations create must be installable on the scratch
/// server; otherwise the copy would fail halfway with a message about a control file.
async fn check_extensions(
    scratch: &scratch::Scratch,
    dir: &MigrationsDir,
    facts: &TargetFacts,
) -> Result<()> {
    let available = scratch.available_extensions().await?;
    let created: Vec<(String, String)> = dir
        .migrations
        .iter()
        .flat_map(|m| {
            created_extensions(m.sql())
                .into_iter()
                .map(|e| (m.name.clone(), e))
        })
        .collect();
    let missing = missing_extensions(facts, &available, &created);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::scratch_unfit(
        format!(
            "the scratch server (PostgreSQL {}) lacks the extension{} {}",
            scratch.version,
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        ),
        format!(
            "install {} for PostgreSQL {} on this machine, or rehearse on a server that has {}; nothing was written to the target",
            if missing.len() == 1 {
                "its package"
            } else {
                "their packages"
            },
            scratch.major,
            if missing.len() == 1 { "it" } else { "them" },
        ),
    ))
}

/// What the scratch server lacks of what the target has installed, and of what the migrations
/// (`(migration, extension)`) create and the target could install. One the target cannot
/// install either is no fault of the scratch server: the rehearsal fails on it as the deploy
/// would.
fn missing_extensions(
    facts: &TargetFacts,
    scratch_available: &[String],
    created: &[(String, String)],
) -> Vec<String> {
    let mut missing: Vec<String> = facts
        .extensions
        .iter()
        .filter(|e| !scratch_available.contains(e))
        .map(|e| format!("{e} (installed on the target)"))
        .collect();
    for (migration, e) in created {
        let entry = format!("{e} (created by {migration})");
        if !scratch_available.contains(e)
            && !facts.extensions.contains(e)
            && facts.available.contains(e)
            && !missing.contains(&entry)
        {
            missing.push(entry);
        }
    }
    missing
}

/// The extensions a script creates, by parsing (a name in a comment or a string is no
/// extension).
fn created_extensions(sql: &str) -> Vec<String> {
    let parse = squawk_syntax::SourceFile::parse(sql);
    statements_of(&parse.tree())
        .filter_map(|s| match s {
            ast::Stmt::CreateExtension(c) => c.extension()?.ident_token(),
            _ => None,
        })
        .map(|t| identifier(t.text()))
        .collect()
}

/// The roles a script creates (CREATE ROLE, USER, GROUP), by parsing.
fn created_roles(sql: &str) -> Vec<String> {
    use squawk_syntax::ast::AstNode as _;
    let parse = squawk_syntax::SourceFile::parse(sql);
    statements_of(&parse.tree())
        .filter_map(|s| match s {
            ast::Stmt::CreateRole(c) => c.role(),
            ast::Stmt::CreateUser(c) => c.role(),
            ast::Stmt::CreateGroup(c) => c.role(),
            _ => None,
        })
        .map(|r| identifier(r.syntax().text().to_string().trim()))
        .collect()
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_server_is_unfit_only_for_what_the_target_has_or_could_install() {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let facts = TargetFacts {
            version: "15.18".into(),
            major: 15,
            system: None,
            ledger: None,
            extensions: strings(&["postgis", "citext"]),
            available: strings(&["postgis", "citext", "pg_partman", "vector"]),
            roles: Vec::new(),
            superuser: true,
            user: "postgres".into(),
            populated_matviews: Vec::new(),
        };
        let created = vec![
            ("m1".to_owned(), "pg_partman".to_owned()),
            ("m2".to_owned(), "pg_partman".to_owned()),
            ("m3".to_owned(), "nowhere".to_owned()),
            ("m4".to_owned(), "postgis".to_owned()),
        ];
        assert_eq!(
            missing_extensions(&facts, &strings(&["citext"]), &created),
            [
                "postgis (installed on the target)",
                "pg_partman (created by m1)",
                "pg_partman (created by m2)"
            ]
        );
        assert!(
            missing_extensions(
                &facts,
                &strings(&["postgis", "citext", "pg_partman"]),
                &created
            )
            .is_empty()
        );
    }

    #[test]
    fn created_roles_are_found_by_parsing() {
        let sql = "CREATE ROLE app_reader NOLOGIN;\nCREATE USER \"Svc\" WITH PASSWORD 'x';\n\
                   -- CREATE ROLE nope;\nGRANT app_reader TO \"Svc\";";
        assert_eq!(created_roles(sql), vec!["app_reader", "Svc"]);
    }

    #[test]
    fn created_extensions_are_found_by_parsing() {
        let sql = "-- CREATE EXTENSION nope;\nCREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";\n\
                   SELECT 'CREATE EXTENSION nope2';\nCREATE EXTENSION PostGIS WITH SCHEMA public;";
        assert_eq!(created_extensions(sql), vec!["uuid-ossp", "postgis"]);
    }
}
