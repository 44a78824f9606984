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

/// What an interrupted backup left behind (a power cut, a SIGKILL): a `.partial` dump or
/// folder, or a catalog entry's `.json.tmp`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Leftover {
    pub file: String,
    pub bytes: u64,
    pub modified: DateTime<Utc>,
    /// Untouched for [`LEFTOVER_AGE`]: no backup is still writing it, so prune removes it.
    pub stale: bool,
}

/// How long a partial file must sit unchanged before prune takes it for a crash's leftover
/// rather than a backup running now.
pub const LEFTOVER_AGE: Duration = Duration::minutes(15);

/// The leftovers in `dir`, oldest first. Only plain entries are looked at (a link is not
/// followed), and only by name inside the folder.
pub fn leftovers(dir: &Path, now: DateTime<Utc>) -> Vec<Leftover> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Leftover> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_owned();
            if !(file.ends_with(".partial") || file.ends_with(".json.tmp")) {
                return None;
            }
            let meta = e.path().symlink_metadata().ok()?;
            if !(meta.is_file() || meta.is_dir()) {
                return None;
            }
            let (bytes, newest) = if meta.is_dir() {
                std::fs::read_dir(e.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|f| f.path().symlink_metadata().ok())
                    .fold((0, meta.modified().ok()), |(b, t), m| {
                        (b + m.len(), t.max(m.modified().ok()))
                    })
            } else {
                (meta.len(), meta.modified().ok())
            };
            let modified: DateTime<Utc> = newest?.into();
            Some(Leftover {
                file,
                bytes,
                modified,
                stale: now - modified >= LEFTOVER_AGE,
            })
        })
        .collect();
    out.sort_by_key(|l| l.modified);
    out
}

/// Removes the stale leftovers; returns how many.
pub fn remove_leftovers(dir: &Path, leftovers: &[Leftover]) -> Result<usize> {
    let mut removed = 0;
    for l in leftovers.iter().filter(|l| l.stale) {
        let path = dir.join(&l.file);
        let done = match path.symlink_metadata() {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => continue,
        };
        done.map_err(|e| {
            Error::runtime(
                format!("cannot delete {}: {e}", path.display()),
                "check permissions",
            )
        })?;
        removed += 1;
    }
    Ok(removed)
}
