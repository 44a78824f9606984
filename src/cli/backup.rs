//! `pgdeck backup create | verify | list | restore | prune`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{self, BackupProgress, Printer};
use super::{ConfirmArgs, Job, exit};
use crate::backup::pgbackrest::{self, PgbackrestSettings};
use crate::backup::{self, BackupEvent, BackupFormat, CreateOptions, catalog, prune};
use crate::error::{Error, Result};
use crate::migrate;
use crate::release::{self, Maintenance, RestoreRequest};
use crate::units::human_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Custom,
    Directory,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Backup folder (overrides the environment's backup_dir)
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BackupCommand {
    /// pg_dump -Fc into the backup folder, with progress, checksum and a catalog entry; with a
    /// pgBackRest stanza, `pgbackrest backup` of the cluster
    Create {
        /// Skip counting each table's rows (faster on huge databases; verify --restore-test then
        /// cannot compare counts)
        #[arg(long)]
        no_row_counts: bool,
        /// Archive format: one custom-format file, or a directory written by parallel workers
        #[arg(long, value_enum, default_value_t = Format::Custom)]
        format: Format,
        /// Parallel pg_dump workers (directory format)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// pgBackRest: the backup's type (default: the stanza's configuration, incr unless set)
        #[arg(long = "type", value_enum)]
        kind: Option<Kind>,
    },
    /// pgBackRest: create a named restore point now and wait for its WAL to reach the archive
    /// (a deploy creates its own when it starts)
    RestorePoint,
    /// Check a backup: checksum, table of contents, and optionally a restore into a scratch database
    Verify {
        /// Backup file name or path (default: the newest backup of this database)
        backup: Option<String>,
        /// Also restore into a scratch database and compare row counts
        #[arg(long)]
        restore_test: bool,
    },
    /// Backups with age, size, verification, migration head and whether the file is present
    List,
    /// Restore a backup into the environment's database (pg_restore --clean --single-transaction)
    Restore {
        /// Backup file name or path
        #[arg(required_unless_present = "point", conflicts_with = "point")]
        backup: Option<String>,
        /// pgBackRest: restore the stanza to this named restore point (the one a deploy printed)
        #[arg(long, value_name = "NAME", requires = "how")]
        point: Option<String>,
        /// With --point: into a new data directory, started there as a read-only cluster on a
        /// free port beside the environment's server, which is never touched
        #[arg(long, requires = "point", group = "how")]
        side: bool,
        /// With --point: recover the environment's own cluster in place to the point (stop,
        /// pgbackrest --delta restore, start, check); only on the server's host, with the
        /// database name typed (--confirm DBNAME or at the prompt) and --yes. It loses every
        /// write to the cluster since the point
        #[arg(long, requires = "point", group = "how")]
        in_place: bool,
        /// With --in-place: print the procedure, change nothing
        #[arg(long, requires = "in_place")]
        print: bool,
        /// With --side: the new data directory (default: side-<point> in the backup folder)
        #[arg(long, value_name = "DIR", requires = "side")]
        side_dir: Option<PathBuf>,
        #[command(flatten)]
        confirm: ConfirmArgs,
        /// Restore even though the backup was never verified, for this reason (journaled)
        #[arg(long, value_name = "REASON")]
        force_unverified: Option<String>,
        /// Restore a backup of another environment, server or database of the same name, for
        /// this reason (journaled)
        #[arg(long, value_name = "REASON")]
        accept_foreign_backup: Option<String>,
        /// Terminate other sessions on the database first
        #[arg(long)]
        terminate_sessions: bool,
        /// Run the maintenance_on hook before and maintenance_off after (the default when both
        /// are configured; refused when they are not)
        #[arg(long, conflicts_with = "no_maintenance")]
        maintenance: bool,
        /// Do not run the maintenance hooks, even when they are configured
        #[arg(long)]
        no_maintenance: bool,
        /// Parallel pg_restore workers (directory-format backups; not one transaction then)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
    },
    /// Delete backups past retention, keeping the newest verified ones; deletes only with --yes
    Prune {
        /// Delete (without it, only show what would be deleted)
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(job: &Job, args: &BackupArgs, json: bool) -> Result<u8> {
    let env = &job.env;
    let dir = args.dir.clone().unwrap_or_else(|| env.backup.dir.clone());
    if let Some(stanza) = &env.backup.pgbackrest {
        match &args.command {
            BackupCommand::Verify {
                backup: None,
                restore_test: false,
            } => return pgbackrest_verify(stanza, json).await,
            BackupCommand::Verify { .. } => {
                return Err(Error::input(
                    format!(
                        "environment {}'s backups are pgBackRest's (stanza {}): verify checks the whole stanza, not a file",
                        env.name, stanza.stanza
                    ),
                    "run `pgdeck backup verify` without a file or --restore-test",
                ));
            }
            BackupCommand::List => return pgbackrest_list(stanza, json).await,
            BackupCommand::Create { kind, .. } => {
                return pgbackrest_backup(job, stanza, *kind, json).await;
            }
            BackupCommand::RestorePoint => return restore_point(job, json).await,
            _ => {}
        }
    }
    match &args.command {
        BackupCommand::RestorePoint => restore_point(job, json).await,
        BackupCommand::Create { kind: Some(_), .. } => Err(Error::input(
            format!(
                "--type is pgBackRest's, and environment {}'s backups are pg_dump files",
                env.name
            ),
            "drop --type, or set backup_tool = \"pgbackrest\" and pgbackrest_stanza for the environment",
        )),
        BackupCommand::Create {
            no_row_counts,
            format,
            jobs,
            kind: None,
        } => {
            let opts = CreateOptions {
                dir: dir.clone(),
                environment: env.name.clone(),
                count_rows: !no_row_counts,
                format: match format {
                    Format::Custom => BackupFormat::Custom,
                    Format::Directory => BackupFormat::Directory,
                },
                jobs: *jobs,
                cancel: job.cancel.clone(),
            };
            let entry = with_progress(json, |tx| async move {
                backup::create(&env.target, &opts, &tx).await
            })
            .await?;
            if json {
                output::json(
                    &json!({ "ok": true, "backup": entry, "path": dir.join(&entry.file) }),
                );
            } else {
                output::stdout(&format!(
                    "backup {} written: {}, {} TOC entries, sha256 {}\n  migration head: {}\n  next: pgdeck backup verify {} [--restore-test]",
                    dir.join(&entry.file).display(),
                    human_bytes(entry.size_bytes as i64),
                    entry.toc_entries,
                    entry.sha256,
                    entry
                        .migration_head
                        .as_deref()
                        .unwrap_or("(no migrations applied)"),
                    entry.file
                ));
            }
            Ok(exit::OK)
        }
        BackupCommand::Verify {
            backup: name,
            restore_test,
        } => {
            let path = match name {
                Some(n) => backup::locate(&dir, n)?,
                None => newest(&dir, &env.target.dbname, &env.name)?,
            };
            let restore_test = restore_test.then_some(&job.cancel);
            let entry = with_progress(json, |tx| async move {
                backup::verify(&env.target, &path, restore_test, &tx).await
            })
            .await?;
            let v = entry.verification.clone();
            if json {
                output::json(&json!({ "ok": true, "backup": entry }));
            } else if let Some(v) = v {
                output::stdout(&format!("{} verified: {}", entry.file, v.details));
            }
            Ok(exit::OK)
        }
        BackupCommand::List => {
            let entries = catalog::list(&dir)?;
            let leftovers = prune::leftovers(&dir, chrono::Utc::now());
            if json {
                let list: Vec<_> = entries
                    .iter()
                    .map(|(e, present)| json!({ "backup": e, "file_present": present }))
                    .collect();
                output::json(
                    &json!({ "ok": true, "dir": dir, "backups": list, "leftovers": leftovers }),
                );
            } else {
                if entries.is_empty() {
                    output::stdout(&format!("no backups in {}", dir.display()));
                } else {
                    output::stdout(&list_table(&entries));
                }
                for l in &leftovers {
                    output::stdout(&format!(
                        "leftover {}: {}, last written {}{}",
                        l.file,
                        crate::units::human_bytes(l.bytes as i64),
                        l.modified.format("%Y-%m-%d %H:%M:%S UTC"),
                        if l.stale {
                            " (an interrupted backup: `pgdeck backup prune --yes` removes it)"
                        } else {
                            " (a backup may be writing it now)"
                        }
                    ));
                }
            }
            Ok(exit::OK)
        }
        BackupCommand::Restore {
            point: Some(point),
            in_place: true,
            print: true,
            ..
        } => {
            let mut printer = Printer::live(json);
            let procedure = crate::events::with_events(
                |e| printer.take(e),
                |tx| {
                    let ctx = job.context(tx);
                    async move { release::in_place_procedure(&ctx, point).await }
                },
            )
            .await?;
            if json {
                output::json(&json!({ "ok": true, "procedure": procedure }));
            } else {
                let mut text = format!(
                    "Point-in-time recovery of {} in place, to restore point {} (pgBackRest stanza {})\n\
                     It loses {}.\nOn the database server, as the server's user:\n",
                    env.name, procedure.point, procedure.stanza, procedure.loses
                );
                for (n, (what, command)) in procedure.steps.iter().enumerate() {
                    text.push_str(&format!("  {}. {what}\n       {command}\n", n + 1));
                }
                text.push_str(&format!(
                    "  {}. check the schema and the data: pgdeck --env {} status, then pgdeck --env {} health\n\
                     Nothing was changed. A copy beside production first: pgdeck --env {} backup restore --point {} --side",
                    procedure.steps.len() + 1,
                    env.name,
                    env.name,
                    env.name,
                    procedure.point
                ));
                output::stdout(&text);
            }
            Ok(exit::OK)
        }
        BackupCommand::Restore {
            point: Some(point),
            side: true,
            side_dir,
            ..
        } => {
            let req = release::SideRestoreRequest {
                point: point.clone(),
                dir: side_dir
                    .clone()
                    .unwrap_or_else(|| dir.join(format!("side-{point}"))),
            };
            let mut printer = Printer::live(json);
            let side = crate::events::with_events(
                |e| printer.take(e),
                |tx| {
                    let ctx = job.context(tx);
                    let req = &req;
                    async move { release::side_restore(&ctx, req).await }
                },
            )
            .await?;
            if json {
                output::json(&json!({ "ok": true, "side": side }));
            } else {
                let mut text = format!(
                    "restore point {} is running beside {} (read-only, recovery paused at the point)\n  \
                     data directory: {}\n  connect: psql '{}'\n  migration head there: {}\n",
                    side.point,
                    env.name,
                    side.dir.display(),
                    side.url,
                    side.migration_head.as_deref().unwrap_or("none")
                );
                for (table, rows) in &side.tables {
                    text.push_str(&format!("  {table}: {rows} rows\n"));
                }
                text.push_str(&format!(
                    "  copy a table back with pg_dump -t from it; stop it when done: {}",
                    side.stop
                ));
                output::stdout(&text);
            }
            Ok(exit::OK)
        }
        BackupCommand::Restore {
            point: Some(point),
            in_place: true,
            confirm,
            ..
        } => {
            if !confirm.yes {
                return Err(Error::input(
                    format!(
                        "recovering {}'s cluster in place loses every write to it since restore point {point}: it needs --yes as well as the database name",
                        env.name
                    ),
                    format!(
                        "add --yes (and --confirm {}), or see the procedure first with --print",
                        env.target.dbname
                    ),
                ));
            }
            let given = confirm
                .confirm
                .clone()
                .map(|n| release::Confirmation::typed(&n));
            let recovered = output::confirmed(
                json,
                given,
                &job.cancel,
                Printer::live(json),
                |confirmation, tx| {
                    let req = release::InPlaceRequest {
                        point: point.clone(),
                        journal_dir: crate::journal::default_dir(),
                        confirmation,
                    };
                    let ctx = job.context(tx);
                    async move { release::in_place_recover(&ctx, &req).await }
                },
            )
            .await?;
            if json {
                output::json(&json!({ "ok": true, "recovered": recovered }));
            } else {
                let mut text = format!(
                    "{} recovered in place to restore point {} ({} s); the server is a primary again on port {}\n  migration head: {}\n",
                    env.name,
                    recovered.point,
                    recovered.took_ms / 1000,
                    recovered.port,
                    recovered.migration_head.as_deref().unwrap_or("none")
                );
                for (table, rows) in &recovered.tables {
                    text.push_str(&format!("  {table}: {rows} rows\n"));
                }
                text.push_str(&format!(
                    "  the recovery's log: {}\n  next: {}, then pgdeck --env {} status and health",
                    recovered.log.display(),
                    recovered.next,
                    env.name
                ));
                output::stdout(&text);
            }
            Ok(exit::OK)
        }
        BackupCommand::Restore {
            backup: Some(name),
            confirm,
            force_unverified,
            accept_foreign_backup,
            terminate_sessions,
            maintenance,
            no_maintenance,
            jobs,
            ..
        } => {
            let mut job_env = env.clone();
            job_env.backup.dir = dir.clone();
            let request = RestoreRequest {
                backup: name.clone(),
                confirmation: None,
                unverified: force_unverified.clone(),
                foreign_backup: accept_foreign_backup.clone(),
                terminate_sessions: *terminate_sessions,
                maintenance: match (maintenance, no_maintenance) {
                    (true, _) => Maintenance::On,
                    (_, true) => Maintenance::Off,
                    _ => Maintenance::WhenConfigured,
                },
                jobs: *jobs,
            };
            let report = output::confirmed(
                json,
                output::given(confirm),
                &job.cancel,
                Printer::new(json),
                |confirmation, tx| {
                    let req = RestoreRequest {
                        confirmation,
                        ..request.clone()
                    };
                    let mut ctx = job.context(tx);
                    ctx.env = job_env.clone();
                    async move { release::restore(&ctx, &req).await }
                },
            )
            .await?;
            if json {
                output::json(&json!({
                    "ok": true,
                    "restored": report.backup.file,
                    "loss": report.loss,
                    "checks": report.checks,
                    "status": report.status.map(|s| s.migrations),
                    "pending_again": report.pending_again,
                    "left_in_place": report.left_in_place,
                }));
            } else {
                let mut text = format!("restored {} into {}\n", report.backup.file, env.target);
                for c in &report.checks {
                    text.push_str(&format!(
                        "  {} {}: {}\n",
                        if c.ok { "ok " } else { "!! " },
                        c.check,
                        c.result
                    ));
                }
                if !report.left_in_place.is_empty() {
                    text.push_str(&format!(
                        "left in place (made after the backup, not replaced): {}\n",
                        report.left_in_place.join(", ")
                    ));
                }
                if let Some(s) = &report.status {
                    text.push_str(&format!(
                        "migrations: {} applied, {} pending (the backup's head was {})",
                        s.count(|m| matches!(m, migrate::MigrationState::Applied { .. })),
                        s.pending_names().len(),
                        report.backup.migration_head.as_deref().unwrap_or("none")
                    ));
                }
                output::stdout(text.trim_end());
            }
            Ok(exit::OK)
        }
        // clap requires the file or --point.
        BackupCommand::Restore { .. } => Err(Error::input(
            "backup restore needs a backup file, or --point NAME with --side or --in-place",
            "name the backup file (`backup list` shows them)",
        )),
        BackupCommand::Prune { yes } => {
            let decisions = prune::plan(
                &dir,
                &env.target.dbname,
                env.backup.retention_days,
                env.backup.keep_verified,
                chrono::Utc::now(),
            )?;
            let leftovers = prune::leftovers(&dir, chrono::Utc::now());
            let (deleted, removed) = if *yes {
                (
                    prune::apply(&dir, &decisions)?,
                    prune::remove_leftovers(&dir, &leftovers)?,
                )
            } else {
                (0, 0)
            };
            if json {
                output::json(&json!({
                    "ok": true,
                    "deleted": deleted,
                    "applied": yes,
                    "decisions": decisions,
                    "leftovers": leftovers,
                    "leftovers_removed": removed,
                }));
            } else {
                let mut text = String::new();
                for l in leftovers.iter().filter(|l| l.stale) {
                    let verb = if *yes { "removed" } else { "would remove" };
                    text.push_str(&format!(
                        "  {verb:<12} {}  (left by an interrupted backup)\n",
                        l.file
                    ));
                }
                for d in &decisions {
                    let verb = match (d.delete, yes) {
                        (true, true) => "deleted",
                        (true, false) => "would delete",
                        (false, _) => "keep",
                    };
                    text.push_str(&format!("  {verb:<12} {}  ({})\n", d.file, d.why));
                }
                let n = decisions.iter().filter(|d| d.delete).count();
                text.push_str(&if *yes {
                    format!("{deleted} backup(s) deleted")
                } else if n > 0 {
                    format!("{n} backup(s) would be deleted; run again with --yes to delete them")
                } else {
                    "nothing to prune".to_owned()
                });
                output::stdout(&text);
            }
            Ok(exit::OK)
        }
    }
}

/// The newest backup of `database` taken in `environment`, in `dir`.
fn newest(dir: &std::path::Path, database: &str, environment: &str) -> Result<PathBuf> {
    catalog::list(dir)?
        .into_iter()
        .find(|(e, _)| e.database == database && e.environment == environment)
        .map(|(e, _)| dir.join(e.file))
        .ok_or_else(|| {
            Error::input(
                format!(
                    "no backups of {database} from environment '{environment}' in {}",
                    dir.display()
                ),
                "take one first",
            )
            .with(crate::error::Remedy::TakeBackup)
        })
}

impl BackupArgs {
    /// Restore, create and the restore test stop themselves when cancelled (pg_restore stopped
    /// and its transaction rolled back; pg_dump's process group ended and the partial file
    /// removed; the scratch database dropped); the rest only read.
    pub fn stops_itself(&self) -> bool {
        matches!(
            self.command,
            BackupCommand::Restore { .. }
                | BackupCommand::Create { .. }
                | BackupCommand::RestorePoint
                | BackupCommand::Verify {
                    restore_test: true,
                    ..
                }
        )
    }
}

fn list_table(entries: &[(catalog::BackupEntry, bool)]) -> String {
    let now = chrono::Utc::now();
    let mut out = format!(
        "  {:<44} {:>8} {:>9}  {:<22} {:<8} MIGRATION HEAD\n",
        "BACKUP", "AGE", "SIZE", "VERIFIED", "FILE"
    );
    for (e, present) in entries {
        let age = now - e.finished_at;
        let age = if age.num_days() > 0 {
            format!("{}d", age.num_days())
        } else if age.num_hours() > 0 {
            format!("{}h", age.num_hours())
        } else {
            format!("{}m", age.num_minutes())
        };
        let verified = match &e.verification {
            Some(v) => format!(
                "{} {}",
                match v.how {
                    catalog::VerifyHow::ChecksumAndToc => "checksum+toc",
                    catalog::VerifyHow::RestoreTest => "restore-test",
                },
                v.at.format("%m-%d %H:%M")
            ),
            None => "no".into(),
        };
        out.push_str(&format!(
            "  {:<44} {:>8} {:>9}  {:<22} {:<8} {}\n",
            e.file,
            age,
            human_bytes(e.size_bytes as i64),
            verified,
            if *present { "present" } else { "MISSING" },
            e.migration_head.as_deref().unwrap_or("-")
        ));
    }
    out.trim_end().to_owned()
}

/// Runs a backup operation while its progress is printed.
async fn with_progress<F, Fut, T>(json: bool, op: F) -> Result<T>
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<BackupEvent>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut progress = BackupProgress::new(json);
    crate::events::with_events(|e: BackupEvent| progress.print(&e), op).await
}

/// `backup verify` of a pgBackRest stanza: `pgbackrest check`, then `pgbackrest verify`; exit 10
/// when either fails.
async fn pgbackrest_verify(stanza: &PgbackrestSettings, json: bool) -> Result<u8> {
    let checked = pgbackrest::check_and_verify(stanza).await?;
    let failed = checked.error();
    if json {
        output::json(&json!({
            "ok": failed.is_none(),
            "stanza": stanza.stanza,
            "check": checked.check,
            "verify": checked.verify,
            "error": failed.as_ref().map(|e| json!({ "cause": e.cause, "hint": e.hint })),
        }));
        return Ok(if failed.is_some() {
            exit::VERIFY_FAILED
        } else {
            exit::OK
        });
    }
    for (what, ran) in [("check", &checked.check), ("verify", &checked.verify)] {
        output::stdout(&format!(
            "pgbackrest {what}: {}",
            if ran.ok { "ok" } else { "FAILED" }
        ));
        if !ran.ok {
            for line in ran.output.lines().filter(|l| !l.trim().is_empty()) {
                output::stdout(&format!("  {line}"));
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => {
            output::stdout(&format!("stanza {} verified", stanza.stanza));
            Ok(exit::OK)
        }
    }
}

/// pgBackRest's backup types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Full,
    Diff,
    Incr,
}

/// `backup create` of a pgBackRest stanza: `pgbackrest backup`, then the backup it made.
async fn pgbackrest_backup(
    job: &Job,
    stanza: &PgbackrestSettings,
    kind: Option<Kind>,
    json: bool,
) -> Result<u8> {
    let kind = kind.map(|k| match k {
        Kind::Full => "full",
        Kind::Diff => "diff",
        Kind::Incr => "incr",
    });
    if !json {
        output::stdout(&format!(
            "pgbackrest backup of stanza {}{} (environment {})...",
            stanza.stanza,
            kind.map(|k| format!(", type {k}")).unwrap_or_default(),
            job.env.name
        ));
    }
    let backup = tokio::select! {
        b = pgbackrest::backup(stanza, kind) => b?,
        () = job.cancel.cancelled() => {
            return Err(Error::cancelled(
                "backup cancelled: pgbackrest was stopped and its partial backup is left for its next run to resume or expire",
                "run it again when ready",
            ));
        }
    };
    if json {
        output::json(
            &json!({ "ok": true, "tool": "pgbackrest", "stanza": stanza.stanza, "backup": backup }),
        );
    } else {
        output::stdout(&format!(
            "base backup {} ({}) of stanza {}: {} (repository {}), WAL {} .. {}\n  next: pgdeck --env {} backup verify",
            backup.label,
            backup.kind,
            stanza.stanza,
            human_bytes(backup.size),
            human_bytes(backup.repository_size),
            backup.wal_start,
            backup.wal_stop,
            job.env.name
        ));
    }
    Ok(exit::OK)
}

/// `backup restore-point`: a named restore point now, journaled, once its WAL is archived.
async fn restore_point(job: &Job, json: bool) -> Result<u8> {
    let mut printer = Printer::live(json);
    let point = crate::events::with_events(
        |e| printer.take(e),
        |tx| {
            let ctx = job.context(tx);
            async move { release::create_restore_point(&ctx).await }
        },
    )
    .await?;
    if json {
        output::json(&json!({ "ok": true, "restore_point": point }));
    } else {
        output::stdout(&format!(
            "restore point {} created at {} (WAL {}, archived)\n  recover to it: pgdeck --env {} backup restore --point {} --side",
            point.name, point.lsn, point.wal, job.env.name, point.name
        ));
    }
    Ok(exit::OK)
}

/// `backup list` of a pgBackRest stanza: its base backups from `pgbackrest info`.
async fn pgbackrest_list(stanza: &PgbackrestSettings, json: bool) -> Result<u8> {
    let info = pgbackrest::info(stanza).await?;
    if json {
        output::json(&json!({ "ok": true, "tool": "pgbackrest", "stanza": info }));
        return Ok(exit::OK);
    }
    output::stdout(&format!(
        "stanza {}: {}; WAL archive {}",
        info.stanza,
        info.status,
        match (&info.archive_min, &info.archive_max) {
            (Some(min), Some(max)) => format!("{min} .. {max}"),
            _ => "empty".into(),
        }
    ));
    if info.backups.is_empty() {
        output::stdout("no base backups");
    }
    let now = chrono::Utc::now();
    for b in info.backups.iter().rev() {
        output::stdout(&format!(
            "{}  {:<4}  finished {} ({} ago)  {} (repository {}){}",
            b.label,
            b.kind,
            b.finished.format("%Y-%m-%d %H:%M:%S UTC"),
            crate::units::human_duration((now - b.finished).to_std().unwrap_or_default()),
            human_bytes(b.size),
            human_bytes(b.repository_size),
            if b.error {
                "  ERROR: pgBackRest found damage"
            } else {
                ""
            }
        ));
    }
    Ok(exit::OK)
}
