//! The backup catalog: a JSON entry beside each backup file (`<file>.json`) saying what it holds,
//! where it came from and whether and how it was verified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Remedy, Result};

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
    /// The server it was taken from (`pg_control_system()`); None in catalogs of older pgdeck
    /// versions, which therefore cannot prove where they came from.
    #[serde(default)]
    pub system_identifier: Option<String>,
    /// The database's oid on that server.
    #[serde(default)]
    pub database_oid: Option<u32>,
}

/// Where a database lives: what a backup must match to stand for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub environment: String,
    pub system_identifier: Option<String>,
    pub database: String,
    pub database_oid: Option<u32>,
}

impl Identity {
    /// The identity of `target`'s database, in `environment`, read now on a session of its own.
    pub async fn of(target: &crate::target::DbTarget, environment: &str) -> Result<Identity> {
        let session = crate::db::connect(&target.with_application_name("pgdeck-backup")).await?;
        Identity::read(&session.client, environment).await
    }

    /// The identity of the database `client` is connected to, in `environment`.
    pub async fn read(client: &tokio_postgres::Client, environment: &str) -> Result<Identity> {
        let row = client
            .query_one(
                "SELECT (SELECT system_identifier::text FROM pg_control_system()), current_database()::text, \
                        (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .map_err(|e| crate::db::query_error("reading the server's identity", &e))?;
        Ok(Identity {
            environment: environment.to_owned(),
            system_identifier: row.get(0),
            database: row.get(1),
            database_oid: row.get(2),
        })
    }
}

impl BackupEntry {
    pub fn catalog_path(backup: &Path) -> PathBuf {
        let mut name = backup.file_name().unwrap_or_default().to_os_string();
        name.push(".json");
        backup.with_file_name(name)
    }

    pub fn load(backup: &Path) -> Result<BackupEntry> {
        let path = Self::catalog_path(backup);
        if path.symlink_metadata().is_ok_and(|m| !m.is_file()) {
            return Err(Error::input(
                format!(
                    "catalog entry {} is not a file (a link, folder or pipe): it is not read",
                    path.display()
                ),
                "a catalog entry is the file pgdeck wrote beside its backup; remove it",
            ));
        }
        let text = crate::db::files::read_to_string(&path, None).map_err(|e| {
            Error::input(
                format!(
                    "no catalog entry for {} ({}: {e})",
                    backup.display(),
                    path.display()
                ),
                "pgdeck only restores backups it made",
            )
            .with(Remedy::ListBackups)
        })?;
        let entry: BackupEntry = serde_json::from_str(&text).map_err(|e| {
            Error::input(
                format!("catalog entry {} is unreadable: {e}", path.display()),
                "restore it from version control or take a new backup",
            )
        })?;
        // `<file>.json` describes `<file>` beside it, and nothing else: a catalog naming another
        // path (`../x`, `/etc/x`) would have pgdeck read, restore or delete outside its folder.
        let beside = backup.file_name().and_then(|n| n.to_str());
        if beside != Some(entry.file.as_str()) {
            return Err(Error::input(
                format!(
                    "catalog entry {} names the file {:?}, not the {} beside it",
                    path.display(),
                    entry.file,
                    beside.unwrap_or("?")
                ),
                "a catalog entry only describes the backup it is named after; remove or fix it",
            ));
        }
        Ok(entry)
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

    /// Verified, and holding something: a backup whose table of contents is empty restores
    /// nothing and is never counted as verified.
    pub fn is_verified(&self) -> bool {
        self.verification.is_some() && self.toc_entries > 0
    }

    /// Why this backup does not stand for the database `live`, if it does not: another
    /// environment, another server, or another database of the same name.
    pub fn foreign_to(&self, live: &Identity) -> Option<String> {
        if self.database != live.database {
            return Some(format!(
                "it is a backup of database '{}', not '{}'",
                self.database, live.database
            ));
        }
        if self.environment != live.environment {
            return Some(format!(
                "it was taken in environment '{}', not '{}'",
                self.environment, live.environment
            ));
        }
        match (&self.system_identifier, &live.system_identifier) {
            (None, _) => {
                return Some(
                    "its catalog entry does not record the server it came from (an older pgdeck wrote it)"
                        .into(),
                );
            }
            (Some(theirs), Some(ours)) if theirs != ours => {
                return Some(format!(
                    "it was taken on another server (system identifier {theirs}, this one is {ours})"
                ));
            }
            _ => {}
        }
        match (self.database_oid, live.database_oid) {
            (Some(theirs), Some(ours)) if theirs != ours => Some(format!(
                "it was taken from another database named '{}' (oid {theirs}, this one is {ours}): \
                 the database was dropped and created again since",
                live.database
            )),
            _ => None,
        }
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
        // A catalog entry is `<backup file>.json` for a plain name: not `.json` alone, nothing
        // hidden (which `dir.join` would turn into the folder itself or its parent).
        if let Some(file) = name.strip_suffix(".json")
            && !name.ends_with(".json.tmp")
            && !file.is_empty()
            && !file.starts_with('.')
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

/// What the deploy gate finds in a backup folder for a database.
#[derive(Debug, Clone)]
pub enum GateChoice {
    /// The verified backups of this database young enough, newest first (never empty): the
    /// newest that still matches its checksum when the work starts is the one.
    Found(Vec<BackupEntry>),
    /// Only backups that are foreign to it would do (another environment, server or database
    /// incarnation): the newest, and why it is foreign.
    OnlyForeign(Box<BackupEntry>, String),
    /// Nothing would do; why, for the refusal to show.
    None(String),
}

/// The backup the deploy gate would accept for `live`: the newest present, verified backup of
/// that database younger than `max_age`, taken in the same environment on the same server.
pub fn gate_choice(
    dir: &Path,
    live: &Identity,
    max_age: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<GateChoice> {
    let all = list(dir)?;
    let database = &live.database;
    let young = |e: &BackupEntry| (now - e.finished_at).to_std().unwrap_or_default() <= max_age;
    let candidates: Vec<&BackupEntry> = all
        .iter()
        .filter(|(e, present)| *present && e.database == *database)
        .map(|(e, _)| e)
        .collect();
    let usable: Vec<BackupEntry> = candidates
        .iter()
        .filter(|e| e.is_verified() && e.foreign_to(live).is_none() && young(e))
        .map(|e| (*e).clone())
        .collect();
    if !usable.is_empty() {
        return Ok(GateChoice::Found(usable));
    }
    // One of its own too old: a young foreign one may still be accepted, with a reason.
    let too_old = candidates
        .iter()
        .find(|e| e.is_verified() && e.foreign_to(live).is_none())
        .map(|ours| {
            let age = (now - ours.finished_at).to_std().unwrap_or_default();
            format!(
                "the newest verified backup of {database} ({}) is {} old, more than {}",
                ours.file,
                crate::units::human_duration(std::time::Duration::from_secs(age.as_secs())),
                crate::units::human_duration(max_age)
            )
        });
    if let Some(foreign) = candidates.iter().find(|e| e.is_verified() && young(e)) {
        let why = foreign.foreign_to(live).unwrap_or_default();
        let ours = too_old.unwrap_or_else(|| {
            let unverified = candidates
                .iter()
                .filter(|e| !e.is_verified() && e.foreign_to(live).is_none())
                .count();
            format!(
                "no verified backup of {database} from environment '{}' on this server in {}{}",
                live.environment,
                dir.display(),
                if unverified > 0 {
                    format!(" ({unverified} unverified)")
                } else {
                    String::new()
                },
            )
        });
        return Ok(GateChoice::OnlyForeign(
            Box::new((*foreign).clone()),
            format!("{ours}; {} does not count: {why}", foreign.file),
        ));
    }
    if let Some(too_old) = too_old {
        return Ok(GateChoice::None(too_old));
    }
    let why = match candidates.first() {
        None => format!("no backup of {database} in {}", dir.display()),
        Some(newest) if newest.verification.is_some() && newest.toc_entries == 0 => format!(
            "the newest backup of {database} ({}) holds no objects (its table of contents is empty)",
            newest.file
        ),
        Some(_) => format!(
            "no verified backup of {database} in {} ({} unverified)",
            dir.display(),
            candidates.iter().filter(|e| !e.is_verified()).count()
        ),
    };
    Ok(GateChoice::None(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_entry_describes_only_the_file_it_is_named_after() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("precious.txt");
        std::fs::write(&victim, "keep me").unwrap();
        for named in ["../precious.txt", victim.to_str().unwrap(), "other.dump"] {
            let json = serde_json::json!({
                "file": named, "database": "app", "environment": "production", "source": "x",
                "server_version": "15.0", "pg_dump_version": "15.0", "size_bytes": 1,
                "sha256": "00", "started_at": "2026-12-01T00:00:00Z",
                "finished_at": "2026-12-01T00:00:00Z", "toc_entries": 1, "migration_head": null,
                "table_rows": {}, "verification": null
            });
            std::fs::write(dir.path().join("app.dump.json"), json.to_string()).unwrap();
            let e = BackupEntry::load(&dir.path().join("app.dump")).unwrap_err();
            assert!(e.cause.contains("names the file"), "{}", e.cause);
            assert!(
                list(dir.path()).unwrap().is_empty(),
                "not listed, so never pruned"
            );
        }
        assert!(victim.exists());
    }
}
