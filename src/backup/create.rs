//! `backup create`: pg_dump in custom format, in a snapshot this module exports so that the row
//! counts it records are those of the dump. pg_dump writes `<file>.partial`, a new file pgdeck
//! opens for it; once complete it is fsynced, its sha256 read back, and it is renamed; any
//! failure removes the partial file and leaves the catalog and earlier backups untouched.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

use super::catalog::{BackupEntry, Identity};
use super::progress::DumpProgress;
use super::{BackupEvent, BackupFormat, PartialFile, content_digest, tools};
use crate::db::{self, query_error, quote_ident};
use crate::error::{Error, Remedy, Result};
use crate::migrate::Ledger;
use crate::target::DbTarget;

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub dir: PathBuf,
    pub environment: String,
    /// Count every table's rows in the dump's snapshot (what `verify --restore-test` compares).
    pub count_rows: bool,
    pub format: BackupFormat,
    /// Parallel pg_dump workers (directory format only).
    pub jobs: u32,
    /// Stops the backup: pg_dump and its workers are ended, the partial file removed.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// A file-name-safe version of a database or environment name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub async fn create(
    target: &DbTarget,
    opts: &CreateOptions,
    events: &UnboundedSender<BackupEvent>,
) -> Result<BackupEntry> {
    if opts.jobs > 1 && opts.format != BackupFormat::Directory {
        return Err(Error::input(
            "parallel workers need the directory format: a custom-format dump is one stream",
            "dump in directory format to use several workers",
        )
        .with(Remedy::DirectoryFormat));
    }
    let tools::Programs {
        dump: pg_dump,
        restore: pg_restore,
    } = tools::Programs::find().await?;
    let session = db::connect(&target.with_application_name("pgdeck-backup")).await?;
    let client = &session.client;

    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, pg_database_size(current_database())",
            &[],
        )
        .await
        .map_err(|e| query_error("reading the server version", &e))?;
    let server_num: i32 = row.get(0);
    let db_bytes: i64 = row.get(1);
    check_versions(&pg_dump, server_num)?;
    std::fs::create_dir_all(&opts.dir).map_err(|e| {
        Error::runtime(
            format!("cannot create backup folder {}: {e}", opts.dir.display()),
            "check its permissions, or use another folder",
        )
        .with(Remedy::BackupDir)
    })?;
    check_free_space(&opts.dir, db_bytes)?;

    let writes_at_start = super::write_counter(client).await;
    let tables: Vec<(String, String, i64)> = client
        .query(
            // Heap + TOAST, without indexes: what the dump holds the data of.
            "SELECT n.nspname, c.relname, pg_relation_size(c.oid) \
                    + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0::oid)::regclass), 0) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| query_error("listing tables", &e))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();

    // The snapshot the dump and the row counts share; held until both are done.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(|e| query_error("opening the backup snapshot", &e))?;
    let snapshot: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(|e| query_error("exporting the backup snapshot", &e))?
        .get(0);
    // Read in the dump's own snapshot: the head is that of the data the dump holds.
    let identity = Identity::read(client, &opts.environment).await?;
    let migration_head = Ledger::read(client, &target.schema)
        .await?
        .and_then(|l| l.head());

    let started_at = Utc::now();
    let ext = match opts.format {
        BackupFormat::Custom => "dump",
        BackupFormat::Directory => "dir",
    };
    let mut file_name = format!(
        "{}_{}_{}.{ext}",
        file_safe(&target.dbname),
        file_safe(&opts.environment),
        started_at.format("%Y%m%d_%H%M%S")
    );
    let mut n = 2;
    // A name is taken by anything there, a dangling link included (`exists` follows links).
    let taken = |p: std::path::PathBuf| p.symlink_metadata().is_ok();
    while taken(opts.dir.join(&file_name)) || taken(opts.dir.join(format!("{file_name}.partial"))) {
        file_name = format!(
            "{}_{}_{}_{n}.{ext}",
            file_safe(&target.dbname),
            file_safe(&opts.environment),
            started_at.format("%Y%m%d_%H%M%S")
        );
        n += 1;
    }
    let final_path = opts.dir.join(&file_name);
    let partial = PartialFile::new(opts.dir.join(format!("{file_name}.partial")));
    let mut progress = DumpProgress::new(
        tables
            .iter()
            .map(|(s, t, b)| (format!("{s}.{t}"), u64::try_from(*b).unwrap_or(0))),
        opts.format == BackupFormat::Directory && opts.jobs > 1,
    );
    let _ = events.send(BackupEvent::Started {
        file: file_name.clone(),
        database_bytes: db_bytes,
        tables: tables.len(),
        estimated_bytes: progress.initial_estimate(),
    });

    let mut command = tools::command(&pg_dump, target);
    command
        .args(["--verbose", "--no-password"])
        // Progress is read from its messages, which must not be translated.
        .env_remove("LC_ALL")
        .env("LC_MESSAGES", "C")
        .arg(format!("--snapshot={snapshot}"))
        .stderr(Stdio::piped())
        // A group of its own, so that its -j workers end with it, and a terminal's SIGINT
        // reaches pgdeck, which stops it, rather than pg_dump alone.
        .process_group(0);
    // The custom format goes to a new file pgdeck opens itself, never one a planted link leads
    // to, and that pg_dump writes as its stdout: no pipe and no copy through pgdeck, and a
    // seekable file, into whose table of contents pg_dump writes where each table's data
    // starts (what a parallel or selective pg_restore needs).
    let file = match opts.format {
        BackupFormat::Custom => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(partial.path())
                .map_err(|e| write_error(partial.path(), &e))?;
            let theirs = f.try_clone().map_err(|e| write_error(partial.path(), &e))?;
            command.arg("--format=custom").stdout(theirs);
            Some(f)
        }
        BackupFormat::Directory => {
            command
                .arg("--format=directory")
                .arg(format!("--jobs={}", opts.jobs.max(1)))
                .arg("--file")
                .arg(partial.path())
                .stdout(Stdio::null());
            None
        }
    };
    let mut child = command.spawn().map_err(|e| {
        Error::runtime(
            format!("cannot start pg_dump: {e}"),
            "check the PostgreSQL client installation",
        )
    })?;
    // pg_dump's copy of the file is its own now.
    drop(command);
    let stderr = child.stderr.take();
    let started = Instant::now();

    let dump = async {
        let mut lines = stderr.map(|e| BufReader::new(e).lines());
        let mut last_error = String::new();
        let every = Duration::from_millis(500);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let _ = events.send(progress.event(0, started.elapsed()));
        // Until pg_dump ends (its stderr closes).
        while lines.is_some() {
            tokio::select! {
                line = next_line(&mut lines) => {
                    let Some(line) = line else {
                        lines = None;
                        continue;
                    };
                    let written = size_on_disk(partial.path());
                    if progress.line(&line, written, started.elapsed()) {
                        // A table moved along: shown at once, not at the next tick.
                        let _ = events.send(progress.event(written, started.elapsed()));
                    } else if line.contains("error:")
                        || line.contains("FATAL")
                        || line.contains("could not")
                    {
                        last_error = line;
                    }
                }
                _ = tick.tick() => {
                    let written = size_on_disk(partial.path());
                    let _ = events.send(progress.event(written, started.elapsed()));
                }
            }
        }
        last_error
    };

    let counts = async {
        let mut rows = BTreeMap::new();
        if opts.count_rows {
            for (schema, table, _) in &tables {
                let sql = format!(
                    "SELECT count(*) FROM {}.{}",
                    quote_ident(schema),
                    quote_ident(table)
                );
                let n: i64 = client
                    .query_one(&sql, &[])
                    .await
                    .map_err(|e| query_error(&format!("counting rows of {schema}.{table}"), &e))?
                    .get(0);
                rows.insert(format!("{schema}.{table}"), n);
            }
        }
        Ok::<_, Error>(rows)
    };

    let work = async { tokio::join!(dump, counts) };
    let (last_error, rows) = tokio::select! {
        done = work => done,
        () = opts.cancel.cancelled() => {
            tools::end_group(&mut child).await;
            // The partial file goes when this returns; the snapshot's session with it.
            return Err(cancelled());
        }
    };
    let status = child
        .wait()
        .await
        .map_err(|e| Error::runtime(format!("waiting for pg_dump: {e}"), "see the error above"))?;
    if !status.success() {
        // Counting a table the role cannot read aborts the snapshot's transaction, and pg_dump
        // then reports only "could not import the requested snapshot": the count's error is
        // the cause.
        if let Err(mut e) = rows {
            e.cause = format!("the backup failed, nothing was kept: {}", e.cause);
            return Err(e.with(Remedy::TakeBackup));
        }
        let cause = if last_error.is_empty() {
            format!("pg_dump exited with {status}")
        } else {
            last_error
        };
        let cause = format!(
            "the backup failed, nothing was kept: {}",
            cause.trim_start_matches("pg_dump: error: ")
        );
        // pg_dump writes the file itself: a full disk or an unwritable folder is its error.
        let writing = [
            "output file",
            "could not write",
            "could not create",
            "could not close",
        ];
        if writing.iter().any(|w| cause.contains(w)) {
            return Err(
                Error::runtime(cause, "free space in the backup folder, or use another")
                    .with(Remedy::BackupDir),
            );
        }
        return Err(Error::runtime(
            cause,
            "check the server and the connection, then take the backup again",
        )
        .with(Remedy::TakeBackup));
    }
    let rows = rows?;
    let _ = client.batch_execute("COMMIT").await;

    // The checksum of what is on disk, read back once pg_dump is done (its last act rewrites
    // the table of contents at the start of the file), after the file is made durable.
    let path = partial.path().to_owned();
    let digest = tokio::task::spawn_blocking(move || {
        if let Some(f) = file {
            f.sync_all().map_err(|e| write_error(&path, &e))?;
        }
        content_digest(&path)
    });
    let (size_bytes, sha256) = tokio::select! {
        d = digest => d.map_err(|e| Error::runtime(format!("checksum task failed: {e}"), "retry"))??,
        () = opts.cancel.cancelled() => return Err(cancelled()),
    };
    progress.ended(size_bytes);
    let _ = events.send(progress.event(size_bytes, started.elapsed()));
    std::fs::rename(partial.path(), &final_path).map_err(|e| write_error(&final_path, &e))?;
    partial.disarm();
    if let Ok(dir) = std::fs::File::open(&opts.dir) {
        let _ = dir.sync_all();
    }
    let toc_entries = match super::toc_entries(&pg_restore, &final_path).await {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&final_path);
            return Err(e);
        }
    };
    let entry = BackupEntry {
        file: file_name.clone(),
        database: target.dbname.clone(),
        environment: opts.environment.clone(),
        source: target.to_string(),
        server_version: server_version_text(server_num),
        pg_dump_version: pg_dump.version.clone(),
        format: opts.format,
        size_bytes,
        sha256,
        started_at,
        finished_at: Utc::now(),
        toc_entries,
        migration_head,
        table_rows: rows,
        writes_at_start,
        verification: None,
        system_identifier: identity.system_identifier,
        database_oid: identity.database_oid,
    };
    entry.save(&opts.dir)?;
    let _ = events.send(BackupEvent::Finished {
        file: file_name,
        bytes: size_bytes,
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
    Ok(entry)
}

fn cancelled() -> Error {
    Error::cancelled(
        "backup cancelled: pg_dump and its workers were stopped and the partial file removed; nothing was kept",
        "take the backup again",
    )
    .with(Remedy::TakeBackup)
}

/// The next line of pg_dump's stderr (None at its end, or when it cannot be read); never ready
/// once it ended.
async fn next_line(
    lines: &mut Option<tokio::io::Lines<BufReader<tokio::process::ChildStderr>>>,
) -> Option<String> {
    match lines {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// How much pg_dump has written so far: the file's length, or the folder's files'.
fn size_on_disk(path: &Path) -> u64 {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => dir_size(path),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn server_version_text(num: i32) -> String {
    format!("{}.{}", num / 10_000, num % 10_000)
}

/// A pg_dump older than the server cannot dump it reliably.
fn check_versions(pg_dump: &tools::Tool, server_num: i32) -> Result<()> {
    let server_major = (server_num / 10_000) as u32;
    if pg_dump.major < server_major {
        return Err(Error::refused(
            format!(
                "pg_dump {} is older than the server (PostgreSQL {server_major}) and cannot dump it reliably",
                pg_dump.version
            ),
            format!(
                "install the version {server_major} client programs, e.g. `apt-get install postgresql-client-{server_major}`"
            ),
        ));
    }
    Ok(())
}

fn write_error(path: &Path, e: &std::io::Error) -> Error {
    Error::runtime(
        format!("writing {} failed: {e}; nothing was kept", path.display()),
        "free space in the backup folder, or use another",
    )
    .with(Remedy::BackupDir)
}

/// Refuses when the folder clearly cannot hold the dump: a custom-format dump is compressed and
/// leaves indexes out, but is rarely under a tenth of the database's size.
fn check_free_space(dir: &Path, db_bytes: i64) -> Result<()> {
    let Ok(stat) = nix::sys::statvfs::statvfs(dir) else {
        return Ok(());
    };
    let free = stat.blocks_available() as i64 * stat.fragment_size() as i64;
    if free < db_bytes / 10 {
        return Err(Error::refused(
            format!(
                "{} has {} free, and the database is {}: the backup will not fit",
                dir.display(),
                crate::units::human_bytes(free),
                crate::units::human_bytes(db_bytes)
            ),
            "free space there, or write the backup elsewhere",
        )
        .with(Remedy::BackupDir));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn an_older_pg_dump_is_refused_and_a_newer_one_accepted() {
        let tool = |major: u32| tools::Tool {
            path: "pg_dump".into(),
            version: format!("{major}.2"),
            major,
        };
        let err = check_versions(&tool(14), 150_004).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Refused);
        assert!(
            err.cause
                .contains("pg_dump 14.2 is older than the server (PostgreSQL 15)"),
            "{}",
            err.cause
        );
        assert!(err.hint.contains("postgresql-client-15"), "{}", err.hint);
        assert!(check_versions(&tool(15), 150_004).is_ok());
        assert!(check_versions(&tool(17), 150_004).is_ok());
    }

    #[test]
    fn a_folder_that_clearly_cannot_hold_the_dump_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_free_space(dir.path(), i64::MAX / 4).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Refused);
        assert!(
            err.cause.contains("the backup will not fit"),
            "{}",
            err.cause
        );
        assert_eq!(err.remedies, vec![crate::error::Remedy::BackupDir]);
        assert!(check_free_space(dir.path(), 8 << 20).is_ok());
    }
}
