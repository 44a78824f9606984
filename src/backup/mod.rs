//! Backups with pg_dump and pg_restore: create (checksummed, atomic), verify (checksum,
//! table of contents, optional restore test), list, restore and prune, with a JSON catalog entry
//! beside each backup.

pub mod catalog;
mod create;
pub mod pgbackrest;
mod progress;
pub mod prune;
mod restore;
pub mod tools;
mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, ErrorKind, Remedy, Result};
use crate::target::DbTarget;
pub use catalog::{BackupEntry, GateChoice, Identity, Verification, VerifyHow, gate_choice};
pub use create::{CreateOptions, create};
pub use restore::{
    CheckResult, Left, OtherSession, RestoreFailed, RestoreOptions, Restored, clear_sessions,
    describe_sessions, other_sessions, restore, run_checks, sample, workers_fit,
};
pub use verify::{check_file as check_integrity, verify};

/// Where backups go and how long they stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    pub dir: PathBuf,
    /// Backups older than this are pruned...
    pub retention_days: u32,
    /// ...except the newest this many verified ones.
    pub keep_verified: usize,
    /// A protected environment deploys only with a verified backup younger than this.
    pub max_age: Duration,
    /// Queries run after a restore, each returning one value to show.
    pub restore_checks: Vec<String>,
    /// The pgBackRest stanza, when the environment's backups are pgBackRest's
    /// (`backup_tool = "pgbackrest"`) rather than pg_dump files.
    pub pgbackrest: Option<pgbackrest::PgbackrestSettings>,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            dir: PathBuf::from("backups"),
            retention_days: 30,
            keep_verified: 3,
            max_age: Duration::from_secs(24 * 3600),
            // The runbook's own check, for the sample app; skipped where there is no such table.
            restore_checks: vec!["SELECT COUNT(*) FROM \"User\"".into()],
            pgbackrest: None,
        }
    }
}

/// Progress of a backup operation, for the CLI to print and the console to render.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BackupEvent {
    Started {
        file: String,
        database_bytes: i64,
        tables: usize,
        /// The dump's size as guessed from the tables' sizes before pg_dump starts.
        estimated_bytes: u64,
    },
    /// Sent when a table starts or ends and at least every half second while pg_dump runs, and
    /// once more when it has exited (all tables done) before the dump is checked.
    Progress {
        bytes_written: u64,
        /// The dump's estimated size, refined as tables finish (at least `bytes_written`; exact
        /// once pg_dump has exited).
        estimated_bytes: u64,
        /// Tables whose data pg_dump has finished writing.
        tables_done: usize,
        tables_total: usize,
        /// `bytes_written` against the estimate: never decreasing, and under 1 until `Finished`.
        fraction: f64,
        elapsed_ms: u64,
        /// Time left at the data rate so far; None until there is a rate to speak of.
        eta_ms: Option<u64>,
    },
    Finished {
        file: String,
        bytes: u64,
        elapsed_ms: u64,
    },
    Step {
        what: String,
    },
}

/// pg_dump's archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupFormat {
    /// `-Fc`: one compressed file, written by pg_dump into a file pgdeck opens for it.
    #[default]
    Custom,
    /// `-Fd`: a folder, written by `--jobs` parallel workers; restorable in parallel too.
    Directory,
}

/// What `path` is when it is not what pgdeck writes: a regular file, or a folder of regular
/// files. A link would have pgdeck read or restore something outside the backup folder, and a
/// pipe or a device would hang the read.
fn not_plain(path: &Path) -> Option<String> {
    let kind = |m: &std::fs::Metadata| {
        let t = m.file_type();
        if t.is_symlink() {
            "a symbolic link"
        } else if t.is_dir() {
            "a folder"
        } else if t.is_file() {
            "a file"
        } else {
            "a pipe, socket or device"
        }
    };
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.is_file() {
        return None;
    }
    if !meta.is_dir() {
        return Some(kind(&meta).into());
    }
    std::fs::read_dir(path).ok()?.flatten().find_map(|e| {
        let m = e.path().symlink_metadata().ok()?;
        (!m.is_file()).then(|| {
            format!(
                "a folder holding {} ({})",
                kind(&m),
                e.file_name().to_string_lossy()
            )
        })
    })
}

/// Size and sha256 of a backup. A file's is its bytes'; a directory backup's is the sha256 of
/// its manifest: one line `<name> <size> <sha256>` per file, in byte order of the names.
fn content_digest(path: &Path) -> Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let file_digest = |p: &Path| -> Result<(u64, String)> {
        let mut f = crate::db::files::open(p).map_err(|e| {
            Error::runtime(
                format!("cannot open {}: {e}", p.display()),
                "check permissions",
            )
        })?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| {
                Error::runtime(
                    format!("cannot read {}: {e}", p.display()),
                    "check the disk",
                )
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((size, hex::encode(hasher.finalize())))
    };
    if !path.is_dir() {
        return file_digest(path);
    }
    let mut names: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| {
            Error::runtime(
                format!("cannot read {}: {e}", path.display()),
                "check permissions",
            )
        })?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    let mut manifest = Sha256::new();
    let mut total = 0u64;
    for name in names {
        let (size, sha) = file_digest(&path.join(&name))?;
        total += size;
        manifest.update(format!("{} {size} {sha}\n", name.to_string_lossy()).as_bytes());
    }
    Ok((total, hex::encode(manifest.finalize())))
}

/// A file (or directory) being written that is deleted on drop unless the write completed.
struct PartialFile {
    path: PathBuf,
    keep: std::sync::atomic::AtomicBool,
}

impl PartialFile {
    fn new(path: PathBuf) -> Self {
        PartialFile {
            path,
            keep: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(&self) {
        self.keep.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep.load(std::sync::atomic::Ordering::Relaxed) {
            if self.path.is_dir() {
                let _ = std::fs::remove_dir_all(&self.path);
            } else {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// The line of a client program's stderr that says what went wrong, without its prefix.
fn error_line(stderr: &[u8], program: &str) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.contains("error"))
        .or_else(|| text.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("no output");
    line.trim_start_matches(&format!("{program}: error: "))
        .to_owned()
}

/// The number of entries in a backup's table of contents, read by `pg_restore --list`.
async fn toc_entries(pg_restore: &tools::Tool, file: &Path) -> Result<usize> {
    let out = tokio::process::Command::new(&pg_restore.path)
        .arg("--list")
        .arg(file)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            Error::runtime(
                format!("cannot run pg_restore: {e}"),
                "check the PostgreSQL client installation",
            )
        })?;
    if !out.status.success() {
        let line = error_line(&out.stderr, "pg_restore");
        return Err(Error::new(
            ErrorKind::VerifyFailed,
            format!("pg_restore cannot read {}: {line}", file.display()),
            "the file is truncated or corrupted; use another backup",
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .count())
}

/// Finds a backup by path or by file name in `dir`.
pub fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    let as_path = PathBuf::from(name);
    if as_path.exists() || BackupEntry::catalog_path(&as_path).exists() {
        return Ok(as_path);
    }
    let in_dir = dir.join(name);
    if in_dir.exists() || BackupEntry::catalog_path(&in_dir).exists() {
        return Ok(in_dir);
    }
    Err(Error::input(
        format!("no backup named {name} in {}", dir.display()),
        "name a backup of the folder, or use the folder it is in",
    )
    .with(Remedy::ListBackups)
    .with(Remedy::BackupDir))
}

/// Rows inserted, updated and deleted in the database so far, by the statistics collector; None
/// when the statistics cannot be read.
async fn write_counter(client: &tokio_postgres::Client) -> Option<i64> {
    client
        .query_one(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get(0))
}

/// What restoring `entry` now would lose: the time since it was taken, and the rows written since
/// when the statistics tell (not after a statistics reset or a server crash).
pub async fn loss_since(
    target: &DbTarget,
    entry: &BackupEntry,
) -> Result<(chrono::Duration, Option<i64>)> {
    let gap = chrono::Utc::now() - entry.started_at;
    let session = crate::db::connect(&target.with_application_name("pgdeck-backup")).await?;
    let now = write_counter(&session.client).await;
    let writes = match (entry.writes_at_start, now) {
        (Some(then), Some(now)) if now >= then => Some(now - then),
        _ => None,
    };
    Ok((gap, writes))
}
