//! `backup verify`: the file's sha256 matches its catalog entry; `pg_restore --list` reads the
//! whole table of contents and finds as many entries as were written; with a restore test, the
//! backup restores into a scratch database on the same server and every table has the row count
//! recorded at dump time. The catalog entry records when and how it was verified.

use std::path::Path;
use std::process::Stdio;

use chrono::Utc;
use tokio::sync::mpsc::UnboundedSender;

use super::catalog::{BackupEntry, Verification, VerifyHow};
use super::{BackupEvent, toc_entries, tools};
use crate::db::{self, query_error, quote_ident};
use crate::error::{Error, ErrorKind, Remedy, Result};
use crate::target::DbTarget;

fn failed(cause: String, hint: &str) -> Error {
    Error::new(ErrorKind::VerifyFailed, cause, hint)
}

/// Verifies `backup` (a path to the backup file); `target` is the server to restore-test on.
/// `restore_test`: also restore it into a scratch database, stopped by this token (pg_restore
/// killed, the scratch database dropped).
pub async fn verify(
    target: &DbTarget,
    backup: &Path,
    restore_test: Option<&tokio_util::sync::CancellationToken>,
    events: &UnboundedSender<BackupEvent>,
) -> Result<BackupEntry> {
    let mut entry = BackupEntry::load(backup)?;
    let (pg_restore, toc) = check_file(backup, &entry, events).await?;
    let mut how = VerifyHow::ChecksumAndToc;
    let mut details = format!("sha256 and size match; pg_restore --list read {toc} entries");
    if let Some(cancel) = restore_test {
        let _ = events.send(BackupEvent::Step {
            what: "restore test".into(),
        });
        let checked =
            restore_test_into_scratch(target, &pg_restore, backup, &entry, cancel).await?;
        how = VerifyHow::RestoreTest;
        details.push_str(&format!(
            "; restored into a scratch database, {checked} table row counts match"
        ));
    }
    entry.verification = Some(Verification {
        at: Utc::now(),
        how,
        details,
    });
    let dir = backup.parent().unwrap_or(Path::new("."));
    entry.save(dir)?;
    Ok(entry)
}

/// The checks every use of a backup starts with: the file is there, its size and sha256 match
/// the catalog, and pg_restore reads as many table-of-contents entries as were written, and at
/// least one.
pub async fn check_file(
    backup: &Path,
    entry: &BackupEntry,
    events: &UnboundedSender<BackupEvent>,
) -> Result<(tools::Tool, usize)> {
    if backup.symlink_metadata().is_err() {
        return Err(failed(
            format!(
                "the backup file {} is missing (its catalog entry is there)",
                backup.display()
            ),
            "restore the file from where it was copied, or take a new backup",
        ));
    }
    if let Some(what) = super::not_plain(backup) {
        return Err(failed(
            format!(
                "{} is {what}, not the backup pgdeck wrote: it is not read",
                backup.display()
            ),
            "do not restore it; put the backup itself in the backup folder, or use another backup",
        )
        .with(Remedy::ListBackups));
    }
    let _ = events.send(BackupEvent::Step {
        what: "checksum".into(),
    });
    let path = backup.to_owned();
    let (size, sha) = tokio::task::spawn_blocking(move || super::content_digest(&path))
        .await
        .map_err(|e| Error::runtime(format!("checksum task failed: {e}"), "retry"))??;
    if size != entry.size_bytes || sha != entry.sha256 {
        return Err(failed(
            format!(
                "{} does not match its catalog entry (size {size} vs {}, sha256 {}… vs {}…): it is truncated, corrupted or was replaced",
                backup.display(),
                entry.size_bytes,
                &sha[..12],
                &entry.sha256[..12.min(entry.sha256.len())]
            ),
            "do not restore it; use another backup",
        )
        .with(Remedy::ListBackups));
    }
    let _ = events.send(BackupEvent::Step {
        what: "table of contents".into(),
    });
    let pg_restore = tools::find("pg_restore").await?;
    let toc = toc_entries(&pg_restore, backup).await?;
    if toc != entry.toc_entries {
        return Err(failed(
            format!(
                "{} lists {toc} entries, the catalog recorded {}",
                backup.display(),
                entry.toc_entries
            ),
            "do not restore it; use another backup",
        ));
    }
    if toc == 0 {
        return Err(failed(
            format!(
                "{} holds no objects: its table of contents is empty, so restoring it would bring nothing back",
                backup.display()
            ),
            "it was taken of an empty database or the wrong one; take a backup of the database itself",
        )
        .with(Remedy::TakeBackup));
    }
    Ok((pg_restore, toc))
}

/// Restores into `pgdeck_verify_<random>` on the target's server, compares row counts, and drops
/// the scratch database whatever happened. Returns how many tables were compared.
async fn restore_test_into_scratch(
    target: &DbTarget,
    pg_restore: &tools::Tool,
    backup: &Path,
    entry: &BackupEntry,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<usize> {
    let scratch = format!(
        "pgdeck_verify_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = db::connect(&target.with_application_name("pgdeck-verify")).await?;
    admin
        .client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&scratch)))
        .await
        .map_err(|e| {
            query_error(
                "creating the scratch database for the restore test (needs CREATEDB)",
                &e,
            )
        })?;
    let work = async {
        let scratch_target = target.with_database(&scratch);
        let out = tools::command(pg_restore, &scratch_target)
            .args([
                "--exit-on-error",
                "--no-owner",
                "--no-privileges",
                "--dbname",
                &scratch,
            ])
            .arg(backup)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| {
                Error::runtime(
                    format!("cannot run pg_restore: {e}"),
                    "check the installation",
                )
            })?;
        if !out.status.success() {
            let line = super::error_line(&out.stderr, "pg_restore");
            return Err(failed(
                format!("the restore test failed: {line}"),
                "do not rely on this backup; take a new one",
            ));
        }
        let session = db::connect(&scratch_target.with_application_name("pgdeck-verify")).await?;
        let mut mismatches = Vec::new();
        for (table, expected) in &entry.table_rows {
            let (schema, name) = table.split_once('.').unwrap_or(("public", table));
            let sql = format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(schema),
                quote_ident(name)
            );
            let got: i64 = match session.client.query_one(&sql, &[]).await {
                Ok(r) => r.get(0),
                Err(_) => -1,
            };
            if got != *expected {
                mismatches.push(format!("{table}: {got} rows restored, {expected} recorded"));
            }
        }
        if !mismatches.is_empty() {
            return Err(failed(
                format!(
                    "the restore test found different row counts: {}",
                    mismatches.join("; ")
                ),
                "do not rely on this backup; take a new one",
            ));
        }
        Ok(entry.table_rows.len())
    };
    // Cancelled: dropping the work kills pg_restore; the scratch database goes all the same.
    let result = tokio::select! {
        r = work => r,
        () = cancel.cancelled() => Err(Error::cancelled(
            "restore test cancelled: pg_restore was stopped and the scratch database dropped; the backup's verification is unchanged",
            "run the restore test again",
        )),
    };
    let _ = admin
        .client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&scratch)
        ))
        .await;
    result
}
