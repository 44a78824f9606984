//! `backup prune`: retention. Backups older than the retention period go, except the newest
//! verified ones (a floor of `keep_verified`, never less than one): the last good backup is never
//! deleted by age alone.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::catalog::{self, BackupEntry};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct PruneDecision {
    pub file: String,
    pub delete: bool,
    pub why: String,
}

/// What retention would do to the backups of `database` in `dir`, newest first.
pub fn plan(
    dir: &Path,
    database: &str,
    retention_days: u32,
    keep_verified: usize,
    now: DateTime<Utc>,
) -> Result<Vec<PruneDecision>> {
    let keep_verified = keep_verified.max(1);
    let cutoff = now - Duration::days(i64::from(retention_days));
    let mut verified_kept = 0;
    let mut out = Vec::new();
    for (entry, present) in catalog::list(dir)?
        .into_iter()
        .filter(|(e, _)| e.database == database)
    {
        let decision = if entry.is_verified() && present && verified_kept < keep_verified {
            verified_kept += 1;
            (
                false,
                format!("one of the newest {keep_verified} verified backup(s)"),
            )
        } else if entry.finished_at >= cutoff {
            (false, format!("within {retention_days} days"))
        } else {
            (true, format!("older than {retention_days} days"))
        };
        out.push(PruneDecision {
            file: entry.file,
            delete: decision.0,
            why: decision.1,
        });
    }
    Ok(out)
}

/// Deletes what [`plan`] marked: the backup file, then its catalog entry.
pub fn apply(dir: &Path, decisions: &[PruneDecision]) -> Result<usize> {
    let mut deleted = 0;
    for d in decisions.iter().filter(|d| d.delete) {
        let file = dir.join(&d.file);
        let removed = if file.is_dir() {
            std::fs::remove_dir_all(&file)
        } else {
            std::fs::remove_file(&file)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::runtime(
                    format!("cannot delete {}: {e}", file.display()),
                    "check permissions",
                ));
            }
        }
        let _ = std::fs::remove_file(BackupEntry::catalog_path(&file));
        deleted += 1;
    }
    Ok(deleted)
}
