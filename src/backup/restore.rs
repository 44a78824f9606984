//! `backup restore`: the runbook's first rollback option. `pg_restore --clean --if-exists
//! --single-transaction`, so a failed restore leaves the database as it was; other sessions are
//! terminated only when asked; afterwards the recorded row counts of the largest tables and the
//! configured checks are run.

use std::path::Path;
use std::process::Stdio;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

use super::catalog::BackupEntry;
use super::{BackupEvent, tools};
use crate::config::DbTarget;
use crate::db::{self, query_error, quote_ident};
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore a backup that was never verified.
    pub force_unverified: bool,
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

pub async fn restore(
    target: &DbTarget,
    backup: &Path,
    opts: &RestoreOptions,
    events: &UnboundedSender<BackupEvent>,
) -> Result<Vec<CheckResult>> {
    let entry = BackupEntry::load(backup)?;
    if !entry.is_verified() && !opts.force_unverified {
        return Err(Error::refused(
            format!("{} was never verified", entry.file),
            format!(
                "verify it first (`pgdeck backup verify {}`), or pass --force-unverified \"<reason>\"",
                entry.file
            ),
        ));
    }
    if opts.jobs > 1 && entry.format != super::BackupFormat::Directory {
        return Err(Error::input(
            format!(
                "{} is a custom-format backup; only directory-format backups restore in parallel",
                entry.file
            ),
            "drop --jobs (the restore then runs as one transaction)",
        ));
    }
    if entry.database != target.dbname {
        return Err(Error::refused(
            format!(
                "{} is a backup of database '{}', not '{}'",
                entry.file, entry.database, target.dbname
            ),
            "restore it into the database it came from, or pass the matching --env / --database-url",
        ));
    }
    // Verified once is not enough: the file must still be the one that was verified.
    let (pg_restore, _) = super::verify::check_file(backup, &entry, events).await?;
    let session = db::connect(&target.with_application_name("pgdeck-restore")).await?;
    let others: Vec<(i32, String)> = session
        .client
        .query(
            "SELECT pid, coalesce(nullif(application_name, ''), usename::text, '?') FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            &[],
        )
        .await
        .map_err(|e| query_error("listing sessions", &e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if !others.is_empty() {
        if !opts.terminate_sessions {
            let names: Vec<String> = others.iter().map(|(p, a)| format!("{p} ({a})")).collect();
            return Err(Error::refused(
                format!(
                    "{} other session(s) are using {}: {}",
                    others.len(),
                    target.dbname,
                    names.join(", ")
                ),
                "stop the application (maintenance mode) or pass --terminate-sessions",
            ));
        }
        for (pid, _) in &others {
            let _ = session
                .client
                .execute("SELECT pg_terminate_backend($1)", &[pid])
                .await;
        }
    }
    drop(session);

    let _ = events.send(BackupEvent::Step {
        what: format!("restoring {} ({} items)", entry.file, entry.toc_entries),
    });
    let mut child = tools::command(&pg_restore, target)
        .args([
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            "--verbose",
            "--dbname",
            &target.dbname,
        ])
        .arg(backup)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::runtime(
                format!("cannot start pg_restore: {e}"),
                "check the installation",
            )
        })?;
    let mut last_error = String::new();
    if let Some(err) = child.stderr.take() {
        let mut lines = BufReader::new(err).lines();
        let mut items = 0usize;
        while let Ok(Some(line)) = lines.next_line().await {
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
    let status = child
        .wait()
        .await
        .map_err(|e| Error::runtime(format!("waiting for pg_restore: {e}"), "retry"))?;
    if !status.success() {
        return Err(Error::runtime(
            format!(
                "the restore failed and was rolled back: {}",
                last_error.trim_start_matches("pg_restore: error: ")
            ),
            "the database is as it was before; check the error, then retry",
        ));
    }

    // Verification: recorded row counts of the largest tables, then the configured checks.
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
    for check in &opts.checks {
        let result = match session.client.simple_query(check).await {
            Ok(msgs) => msgs
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).unwrap_or("NULL").to_owned())
                    }
                    _ => None,
                })
                .map(Ok)
                .unwrap_or(Ok("no rows".into())),
            // A check for a table this database does not have (the runbook's `"User"` on
            // another app) is skipped, not failed.
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
