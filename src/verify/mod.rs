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
use crate::migrate::deploy::{DeployEvent, DeployOptions, DeploySettings};
use crate::migrate::ledger::{self, Ledger};
use crate::migrate::observe::Observation;
use crate::migrate::script::statements_of;
use crate::migrate::{self, MigrationsDir, StatusReport};
use crate::target::DbTarget;
pub use catalog::ObjectKind;
pub use drift::{Difference, Side};

/// The environment a release is rehearsed on before this one (production's staging), as the
/// config names it: its target, or why it could not be resolved (said when it is checked, so
/// that a staging URL missing here does not stop work on production).
#[derive(Debug, Clone)]
pub struct RehearsedOn {
    pub name: String,
    pub target: std::result::Result<DbTarget, Error>,
}

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
    /// Applied on the target but not in the folder: the build lacks them.
    pub missing_locally: Vec<String>,
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
    roles: Vec<String>,
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
                    ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1)",
            &[],
        )
        .await
        .map_err(|e| query_error("reading the target", &e))?;
    Ok(TargetFacts {
        version: session.server_version.clone(),
        major: row.get::<_, i32>(0) as u32,
        extensions: row.get(1),
        roles: row.get(2),
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
    let programs = copy::Programs::find().await?;
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
    Ok(VerifyReport {
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
    programs: &copy::Programs,
    target: &DbTarget,
    dir: &MigrationsDir,
    facts: &TargetFacts,
    opts: &VerifyOptions,
    events: &UnboundedSender<VerifyEvent>,
) -> Result<Results> {
    check_extensions(scratch, dir, facts).await?;
    scratch.ensure_roles(&facts.roles).await?;
    let copy_db = scratch.database("copy", &target.schema).await?;
    let built_db = if opts.drift {
        Some(scratch.database("built", &target.schema).await?)
    } else {
        None
    };
    let status = StatusReport::build(dir, facts.ledger.as_ref());
    let rehearsal = async {
        let t = Instant::now();
        copy::copy_schema(programs, target, &copy_db).await?;
        let session = db::connect(&copy_db).await?;
        let rows = facts
            .ledger
            .as_ref()
            .map(|l| l.rows.clone())
            .unwrap_or_default();
        if facts.ledger.is_some() {
            ledger::copy_rows(&session.client, &copy_db.schema, &rows).await?;
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
        let count = applied.len();
        let applied_dir = MigrationsDir {
            path: dir.path.clone(),
            migrations: applied,
        };
        let (tx, _rx) = unbounded_channel();
        let built = migrate::deploy(built_db, &applied_dir, &quiet_options(opts, false), &tx).await;
        let build_failed = match built {
            Ok(_) => None,
            Err(e) if e.kind == ErrorKind::Cancelled => return Err(e),
            Err(e) => Some(RehearsalFailure {
                migration: None,
                cause: e.cause,
            }),
        };
        let schema = match build_failed {
            None => Some(catalog::Schema::read(&db::connect(built_db).await?.client).await?),
            Some(_) => None,
        };
        let _ = events.send(VerifyEvent::Built {
            migrations: count,
            ms: ms(t.elapsed()),
        });
        Ok(Some((count, build_failed, schema)))
    };
    let (rehearsal, build) = tokio::join!(rehearsal, build);
    let (before, pending, failure) = rehearsal?;
    let drift = build?.map(|(built_from, build_failed, schema)| DriftReport {
        built_from,
        missing_locally: status
            .migrations
            .iter()
            .filter(|m| matches!(m.state, migrate::MigrationState::MissingLocally { .. }))
            .map(|m| m.name.clone())
            .collect(),
        differences: schema
            .map(|s| drift::compare(&before, &s))
            .unwrap_or_default(),
        build_failed,
    });
    Ok((pending, failure, drift))
}

/// The engine's options on a scratch database: the environment's lock_timeout, no retries and
/// no watchdog (nobody else is there to wait or be waited for).
fn quiet_options(opts: &VerifyOptions, observe: bool) -> DeployOptions {
    DeployOptions {
        cancel: opts.cancel.clone(),
        observe,
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
    let options = quiet_options(opts, true);
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
                    statements: Vec::new(),
                })
                .collect();
        }
        DeployEvent::MigrationStarted {
            name, index, total, ..
        } => {
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
                // What a rolled-back transaction did is gone with it.
                r.statements.clear();
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
    let mut missing: Vec<String> = Vec::new();
    for name in &facts.extensions {
        if !available.contains(name) && !missing.contains(name) {
            missing.push(format!("{name} (installed on the target)"));
        }
    }
    for m in &dir.migrations {
        for name in created_extensions(m.sql()) {
            if !available.contains(&name) && !facts.extensions.contains(&name) {
                missing.push(format!("{name} (created by {})", m.name));
            }
        }
    }
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

/// The extensions a script creates, by parsing (a name in a comment or a string is no
/// extension).
fn created_extensions(sql: &str) -> Vec<String> {
    let parse = squawk_syntax::SourceFile::parse(sql);
    statements_of(&parse.tree())
        .filter_map(|s| match s {
            ast::Stmt::CreateExtension(c) => c.extension()?.ident_token(),
            _ => None,
        })
        .map(|t| {
            let text = t.text();
            match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => text.to_lowercase(),
            }
        })
        .collect()
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_extensions_are_found_by_parsing() {
        let sql = "-- CREATE EXTENSION nope;\nCREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";\n\
                   SELECT 'CREATE EXTENSION nope2';\nCREATE EXTENSION PostGIS WITH SCHEMA public;";
        assert_eq!(created_extensions(sql), vec!["uuid-ossp", "postgis"]);
    }
}
