//! The backup catalog: a JSON entry beside each backup file (`<file>.json`) saying what it holds,
//! where it came from and whether and how it was verified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyHow {
    /// sha256 matches and `pg_restore --list` reads the whole table of contents.
    ChecksumAndToc,
    /// All of that, and a restore into a scratch database gave the recorded row counts.
    RestoreTest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub at: DateTime<Utc>,
    pub how: VerifyHow,
    pub details: String,
}

/// What one backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupEntry {
    /// The backup's file name, in the same folder as this entry.
    pub file: String,
    pub database: String,
    pub environment: String,
    /// Where it was taken from, password redacted.
    pub source: String,
    pub server_version: String,
    pub pg_dump_version: String,
    #[serde(default)]
    pub format: super::BackupFormat,
    pub size_bytes: u64,
    pub sha256: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub toc_entries: usize,
    /// The newest applied migration when the backup was taken.
    pub migration_head: Option<String>,
    /// Exact row counts per table ("schema.table"), in the dump's own snapshot.
    pub table_rows: BTreeMap<String, i64>,
    pub verification: Option<Verification>,
    /// The server's cumulative rows inserted + updated + deleted (pg_stat_user_tables) when the
    /// backup started: how much was written since can be told at restore time.
    #[serde(default)]
    pub writes_at_start: Option<i64>,
}

impl BackupEntry {
    pub fn catalog_path(backup: &Path) -> PathBuf {
        let mut name = backup.file_name().unwrap_or_default().to_os_string();
        name.push(".json");
        backup.with_file_name(name)
    }

    pub fn load(backup: &Path) -> Result<BackupEntry> {
        let path = Self::catalog_path(backup);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::input(
                format!(
                    "no catalog entry for {} ({}: {e})",
                    backup.display(),
                    path.display()
                ),
                "pgdeck only restores backups it made (`pgdeck backup list` shows them)",
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            Error::input(
                format!("catalog entry {} is unreadable: {e}", path.display()),
                "restore it from version control or take a new backup",
            )
        })
    }

    /// Writes the entry atomically (temporary file, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::catalog_path(&dir.join(&self.file));
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::runtime(
                format!("cannot write catalog entry {}: {e}", path.display()),
                "check free space and permissions",
            )
        })
    }

    pub fn is_verified(&self) -> bool {
        self.verification.is_some()
    }
}

/// Every catalog entry in a backup folder, newest first, with whether its file is present.
pub fn list(dir: &Path) -> Result<Vec<(BackupEntry, bool)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::runtime(
                format!("cannot read backup folder {}: {e}", dir.display()),
                "check the folder's permissions",
            ));
        }
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(file) = name.strip_suffix(".json")
            && !name.ends_with(".json.tmp")
        {
            let backup = dir.join(file);
            if let Ok(entry) = BackupEntry::load(&backup) {
                out.push((entry, backup.exists()));
            }
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0.finished_at));
    Ok(out)
}

/// The newest verified backup of `database` in `dir` whose file is present, if it is younger than
/// `max_age`; otherwise why there is none, for the deploy gate to show.
pub fn recent_verified(
    dir: &Path,
    database: &str,
    max_age: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<std::result::Result<BackupEntry, String>> {
    let all = list(dir)?;
    let mine: Vec<&BackupEntry> = all
        .iter()
        .filter(|(e, present)| *present && e.database == database)
        .map(|(e, _)| e)
        .collect();
    let Some(newest) = mine.iter().find(|e| e.is_verified()) else {
        return Ok(Err(if mine.is_empty() {
            format!("no backup of {database} in {}", dir.display())
        } else {
            format!(
                "no verified backup of {database} in {} ({} unverified)",
                dir.display(),
                mine.len()
            )
        }));
    };
    let age = (now - newest.finished_at).to_std().unwrap_or_default();
    if age > max_age {
        return Ok(Err(format!(
            "the newest verified backup of {database} ({}) is {} old, more than {}",
            newest.file,
            humantime::format_duration(std::time::Duration::from_secs(age.as_secs())),
            humantime::format_duration(max_age)
        )));
    }
    Ok(Ok((*newest).clone()))
}
