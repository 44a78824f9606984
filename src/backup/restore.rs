//! `backup restore`: the runbook's first rollback option. `pg_restore --clean --if-exists
//! --single-transaction`, so a failed restore leaves the database as it was (with workers it is
//! not one transaction, and a failure says the database is partly restored); other sessions are
//! terminated only when asked; afterwards the recorded row counts of the largest tables and the
//! configured checks are run.

use std::path::Path;
use std::process::Stdio;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::catalog::BackupEntry;
use super::{BackupEvent, tools};
use crate::db::{self, query_error, quote_ident};
use crate::error::{Error, ErrorKind, Guard, Remedy, Result};
use crate::target::DbTarget;

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Stops the restore: pg_restore's statements are cancelled on the server, so its
    /// transaction rolls back there, not whenever the server notices the client is gone.
    pub cancel: CancellationToken,
    /// Terminate other sessions on the database first (otherwise their presence refuses).
    pub terminate_sessions: bool,
    /// SQL queries whose results are shown after the restore (each returns one value).
    pub checks: Vec<String>,
    /// Parallel pg_restore workers (directory-format backups only). A parallel restore cannot be
    /// one transaction: a failure part-way leaves the database partly restored.
    pub jobs: u32,
}

/// One post-restore check and its result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: String,
    pub result: String,
    pub ok: bool,
}

/// A session that would be in the way of a restore.
#[derive(Debug, Clone, Serialize)]
pub struct OtherSession {
    pub pid: i32,
    /// Its application_name, else its user.
    pub name: String,
}

/// Cancels what the sessions named `app` run (pg_restore then stops with the error), and
/// terminates any that are still there a few seconds later.
async fn stop_on_the_server(target: &DbTarget, app: &str) {
    const CANCEL: &str = "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity \
                          WHERE application_name = $1";
    const LEFT: &str = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";
    const TERMINATE: &str = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                             WHERE application_name = $1";
    let Ok(session) = db::connect(&target.with_application_name("pgdeck-restore")).await else {
        return;
    };
    let count = |sql: &'static str| {
        let client = &session.client;
        async move {
            client
                .query_one(sql, &[&app])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0)
        }
    };
    count(CANCEL).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if count(LEFT).await == 0 {
            return;
        }
    }
    count(TERMINATE).await;
}

/// How many sessions named `app` are on the server.
async fn sessions_named(target: &DbTarget, app: &str) -> Result<i64> {
    let session = db::connect(&target.with_application_name("pgdeck-restore")).await?;
    for _ in 0..50 {
        let n: i64 = session
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .map_err(|e| query_error("looking for pg_restore's sessions", &e))?
            .get(0);
        if n == 0 {
            return Ok(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(1)
}

/// The other client sessions on the target's database. With `terminate`, they are terminated;
/// without, their presence refuses: `pg_restore --clean` would wait behind their locks or drop
/// tables under their feet.
pub async fn clear_sessions(target: &DbTarget, terminate: bool) -> Result<Vec<OtherSession>> {
    let session = db::connect(&target.with_application_name("pgdeck-restore")).await?;
    let others = sessions_besides(&session).await?;
    if others.is_empty() {
        return Ok(others);
    }
    if !terminate {
        return Err(Error::guarded(
            Guard::Sessions,
            format!(
                "{} other session(s) are using {}: {}",
                others.len(),
                target.dbname,
                describe_sessions(&others)
            ),
            "stop the application first (maintenance mode), or terminate them as part of the restore",
        )
        .with(Remedy::TerminateSessions));
    }
    for o in &others {
        let _ = session
            .client
            .execute("SELECT pg_terminate_backend($1)", &[&o.pid])
            .await;
    }
    Ok(others)
}

/// The other client sessions on the target's database.
pub async fn other_sessions(target: &DbTarget) -> Result<Vec<OtherSession>> {
    let session = db::connect(&target.with_application_name("pgdeck-restore")).await?;
    sessions_besides(&session).await
}

async fn sessions_besides(session: &db::Session) -> Result<Vec<OtherSession>> {
    Ok(session
        .client
        .query(
            // pgdeck's monitor is a guest with short statement and lock timeouts: never in the way.
            "SELECT pid, coalesce(nullif(application_name, ''), usename::text, '?') FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
               AND application_name NOT LIKE 'pgdeck-monitor%' \
             ORDER BY pid",
            &[],
        )
        .await
        .map_err(|e| query_error("listing sessions", &e))?
        .iter()
        .map(|r| OtherSession {
            pid: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// Only a directory-format backup restores with several workers.
pub fn workers_fit(entry: &BackupEntry, jobs: u32) -> Result<()> {
    if jobs > 1 && entry.format != super::BackupFormat::Directory {
        return Err(Error::input(
            format!(
                "{} is a custom-format backup; only directory-format backups restore in parallel",
                entry.file
            ),
            "restore it with one worker (it then runs as one transaction)",
        )
        .with(Remedy::SingleWorker));
    }
    Ok(())
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub checks: Vec<CheckResult>,
    /// The sessions it terminated first, when asked to.
    pub terminated: Vec<OtherSession>,
    /// Tables the database has that the backup did not (created after it was taken):
    /// `pg_restore --clean` replaces what the backup holds and leaves these as they are.
    pub left_in_place: Vec<String>,
}

/// The state a restore that did not finish left the database in: what decides whether the
/// application may come back onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Left {
    /// Nothing was changed, or its one transaction rolled back.
    AsItWas,
    /// Its transaction is still on the server and rolls back when it ends.
    RollingBack,
    /// A parallel restore stopped part-way: some tables are restored, some empty or missing.
    PartlyRestored,
    /// It restored, and what it found afterwards is wrong.
    Restored,
}

/// A restore that did not finish, and what it left.
#[derive(Debug, Clone)]
pub struct RestoreFailed {
    pub error: Error,
    pub left: Left,
}

impl Left {
    fn with(self, error: Error) -> RestoreFailed {
        RestoreFailed { error, left: self }
    }
}

/// Replaces the target database's contents with `backup`. The caller has decided that this
/// backup may be restored here (verified, of this database); this re-checks that the file is
/// still the one its catalog describes, clears the other sessions as `opts` says, restores (in
/// one transaction unless `opts.jobs` asks for workers), then compares row counts and runs the
/// checks. When it does not finish, it says what it left.
pub async fn restore(
    target: &DbTarget,
    backup: &Path,
    opts: &RestoreOptions,
    events: &UnboundedSender<BackupEvent>,
) -> std::result::Result<Restored, RestoreFailed> {
    let before = |error| Left::AsItWas.with(error);
    let entry = BackupEntry::load(backup).map_err(before)?;
    workers_fit(&entry, opts.jobs).map_err(before)?;
    // Verified once is not enough: the file must still be the one that was verified.
    let (pg_restore, _) = super::verify::check_file(backup, &entry, events)
        .await
        .map_err(before)?;
    let terminated = clear_sessions(target, opts.terminate_sessions)
        .await
        .map_err(before)?;
    if !terminated.is_empty() {
        let _ = events.send(BackupEvent::Step {
            what: format!(
                "terminated {} other session(s): {}",
                terminated.len(),
                describe_sessions(&terminated)
            ),
        });
    }
    let _ = events.send(BackupEvent::Step {
        what: format!("restoring {} ({} items)", entry.file, entry.toc_entries),
    });
    // Its sessions carry a name of their own, so a cancellation can find them on the server.
    let app = format!(
        "pgdeck-restore-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let parallel = opts.jobs > 1;
    let mut command = tools::command(&pg_restore, target);
    command
        .env("PGAPPNAME", &app)
        .args(["--clean", "--if-exists", "--exit-on-error", "--verbose"]);
    if parallel {
        command.arg(format!("--jobs={}", opts.jobs));
    } else {
        command.arg("--single-transaction");
    }
    let mut child = command
        .args(["--dbname", &target.dbname])
        .arg(backup)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            before(Error::runtime(
                format!("cannot start pg_restore: {e}"),
                "check the installation",
            ))
        })?;
    let mut last_error = String::new();
    let mut cancelled = false;
    if let Some(err) = child.stderr.take() {
        let mut lines = BufReader::new(err).lines();
        let mut items = 0usize;
        loop {
            let line = tokio::select! {
                line = lines.next_line() => line,
                () = opts.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    stop_on_the_server(target, &app).await;
                    continue;
                }
            };
            let Ok(Some(line)) = line else { break };
            if line.starts_with("pg_restore: creating")
                || line.starts_with("pg_restore: processing data")
            {
                items += 1;
                if items.is_multiple_of(10) {
                    let _ = events.send(BackupEvent::Step {
                        what: format!("restored {items} of {} items", entry.toc_entries),
                    });
                }
            } else if line.contains("error") {
                last_error = line;
            }
        }
    }
    let status = child.wait().await;
    if cancelled {
        let gone = sessions_named(target, &app).await.is_ok_and(|n| n == 0);
        let (left, state) = match (gone, parallel) {
            (false, _) => (
                Left::RollingBack,
                "its session is still on the server; it rolls back when it ends",
            ),
            (true, false) => (
                Left::AsItWas,
                "it was cancelled on the server and its transaction rolled back: the database is as it was",
            ),
            (true, true) => (
                Left::PartlyRestored,
                "its workers were cancelled on the server; a parallel restore is not one transaction: the database may be partly restored",
            ),
        };
        return Err(left.with(Error::cancelled(
            format!("restore of {} cancelled: {state}", entry.file),
            if parallel {
                "restore again before the application uses the database"
            } else {
                "the restore can simply run again"
            },
        )));
    }
    let why = last_error.trim_start_matches("pg_restore: error: ");
    match status {
        Ok(status) if status.success() => {}
        _ if parallel => {
            return Err(Left::PartlyRestored.with(Error::runtime(
                format!("the parallel restore failed part-way: {why}; the database is partly restored"),
                "restore again before the application uses the database (with one worker it runs as one transaction)",
            )));
        }
        _ => {
            return Err(Left::AsItWas.with(Error::runtime(
                format!("the restore failed and was rolled back: {why}"),
                "the database is as it was before; check the error, then retry",
            )));
        }
    }
    let checks = check_restored(target, &entry, opts)
        .await
        .map_err(|e| Left::Restored.with(e))?;
    let left_in_place = left_in_place(target, &entry).await.unwrap_or_default();
    Ok(Restored {
        checks,
        terminated,
        left_in_place,
    })
}

/// The tables the database has now that the backup did not record (its row counts name every
/// table it held): made after the backup, and untouched by `pg_restore --clean`. Empty when
/// the backup recorded no tables (taken without row counts).
async fn left_in_place(target: &DbTarget, entry: &BackupEntry) -> Result<Vec<String>> {
    if entry.table_rows.is_empty() {
        return Ok(Vec::new());
    }
    let session = db::connect(&target.with_application_name("pgdeck-restore")).await?;
    let now: Vec<String> = session
        .client
        .query(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| query_error("listing the tables after the restore", &e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(now
        .into_iter()
        .filter(|t| !entry.table_rows.contains_key(t))
        .collect())
}

/// After a restore: the recorded row counts of the largest tables, then the configured checks.
async fn check_restored(
    target: &DbTarget,
    entry: &BackupEntry,
    opts: &RestoreOptions,
) -> Result<Vec<CheckResult>> {
    let session = db::connect(&target.with_application_name("pgdeck-restore")).await?;
    let mut results = Vec::new();
    let mut largest: Vec<(&String, &i64)> = entry.table_rows.iter().collect();
    largest.sort_by(|a, b| b.1.cmp(a.1));
    for (table, expected) in largest.into_iter().take(5) {
        let (schema, name) = table.split_once('.').unwrap_or(("public", table));
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            quote_ident(schema),
            quote_ident(name)
        );
        let got: Option<i64> = session
            .client
            .query_one(&sql, &[])
            .await
            .ok()
            .map(|r| r.get(0));
        results.push(CheckResult {
            check: format!("rows in {table} (recorded {expected})"),
            result: got.map_or("table missing".into(), |n| n.to_string()),
            ok: got == Some(*expected),
        });
    }
    results.extend(run_checks(&session.client, &opts.checks).await);
    if results
        .iter()
        .any(|r| !r.ok && r.check.starts_with("rows in"))
    {
        let bad: Vec<String> = results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{}: {}", r.check, r.result))
            .collect();
        return Err(Error::new(
            ErrorKind::VerifyFailed,
            format!(
                "restored, but the row counts differ from the backup's: {}",
                bad.join("; ")
            ),
            "inspect the database before reopening it to traffic",
        ));
    }
    Ok(results)
}

/// `pid (name), ...`
pub fn describe_sessions(sessions: &[OtherSession]) -> String {
    sessions
        .iter()
        .map(|o| format!("{} ({})", o.pid, o.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the checks on a read-only session of their own with a 10 s statement timeout: the
/// release's sample queries.
pub async fn sample(target: &DbTarget, checks: &[String]) -> Result<Vec<CheckResult>> {
    let session = db::connect(&target.with_application_name("pgdeck-checks")).await?;
    session
        .client
        .batch_execute("SET default_transaction_read_only = on; SET statement_timeout = '10s'")
        .await
        .map_err(|e| query_error("preparing the session", &e))?;
    Ok(run_checks(&session.client, checks).await)
}

/// Runs each query (one value each) and reports its result. A query on a table this database
/// does not have (the runbook's `"User"` on another application) is skipped, not failed.
pub async fn run_checks(client: &tokio_postgres::Client, checks: &[String]) -> Vec<CheckResult> {
    let mut results = Vec::new();
    for check in checks {
        let result = match client.simple_query(check).await {
            Ok(msgs) => Ok(msgs
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).unwrap_or("NULL").to_owned())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| "no rows".into())),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                Ok("skipped: no such table".into())
            }
            Err(e) => Err(e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string())),
        };
        results.push(CheckResult {
            check: check.clone(),
            ok: result.is_ok(),
            result: result.unwrap_or_else(|e| format!("error: {e}")),
        });
    }
    results
}
