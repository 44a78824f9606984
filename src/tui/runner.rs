//! The producers: each effect becomes a tokio task that runs a core operation and only sends
//! small typed messages back to the loop.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc::UnboundedSender, watch};

use super::app::{Effect, MigrationsView, Msg, StepEvent};
use crate::backup::{self, BackupEvent, BackupFormat, CreateOptions};
use crate::checklist::{Facts, Operation};
use crate::config::Environment;
use crate::error::{Error, Result};
use crate::health::{self, Baseline, Level};
use crate::lint::plan::Plan;
use crate::migrate::{self, DeployEvent, DeployOptions, MigrationsDir, Verdict};
use crate::monitor::watch::Watch;
use crate::monitor::{MonitorSettings, signal_backend};
use crate::units::human_bytes;

/// What the tasks share.
#[derive(Clone)]
pub struct Context {
    pub env: Environment,
    pub tx: UnboundedSender<Msg>,
    /// Where this session's baseline and report go (beside its journal).
    pub session_file: PathBuf,
    pub interval: watch::Sender<Duration>,
}

impl Context {
    pub fn baseline_path(&self) -> PathBuf {
        self.session_file.with_extension("baseline.json")
    }

    pub fn report_path(&self) -> PathBuf {
        self.session_file.with_extension("md")
    }
}

/// Starts the task for an effect; a step's task is returned so that it can be cancelled.
/// `Quit` and `CancelStep` are the loop's own business.
pub fn start(
    ctx: &Context,
    effect: Effect,
    journal: Option<&std::path::Path>,
) -> Option<(usize, tokio::task::JoinHandle<()>)> {
    match effect {
        Effect::RunStep { index, operation } => {
            let ctx = ctx.clone();
            let journal = journal.map(|p| p.to_owned());
            let handle = tokio::spawn(async move {
                let step = |event| {
                    let _ = ctx.tx.send(Msg::Step { index, event });
                };
                let result = run(&ctx, operation, &step, journal).await;
                step(StepEvent::Done(result.map_err(|e| {
                    if e.hint.is_empty() {
                        e.cause
                    } else {
                        format!("{} (hint: {})", e.cause, e.hint)
                    }
                })));
            });
            return Some((index, handle));
        }
        Effect::Signal {
            pid,
            backend_start,
            signal,
        } => {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let r = signal_backend(
                    &ctx.env.target,
                    pid,
                    backend_start,
                    signal,
                    ctx.env.read_only,
                )
                .await
                .map(|()| format!("{signal:?} sent to backend {pid}"))
                .map_err(|e| e.cause);
                let _ = ctx.tx.send(Msg::Signalled(r));
            });
        }
        Effect::Refresh => refresh(ctx),
        Effect::SetInterval(d) => {
            let _ = ctx.interval.send(d);
        }
        Effect::Quit | Effect::CancelStep(_) => {}
    }
    None
}

/// The monitor: one Watch, sampled at the chosen interval, forever.
pub fn monitor(ctx: &Context) {
    let ctx = ctx.clone();
    let mut interval = ctx.interval.subscribe();
    tokio::spawn(async move {
        let mut watcher = Watch::new(&ctx.env.target, MonitorSettings::default());
        loop {
            let update = watcher.tick().await;
            if ctx.tx.send(Msg::Monitor(Box::new(update))).is_err() {
                return;
            }
            let every = *interval.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep(watcher.next_delay(every)) => {}
                _ = interval.changed() => {}
            }
        }
    });
}

/// Reloads the migrations screen and the gates' facts.
pub fn refresh(ctx: &Context) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let view = load_view(&ctx.env).await;
        let unacknowledged = match &view {
            Ok(v) => v.plan.unacknowledged_dangerous(),
            Err(_) => Vec::new(),
        };
        let verified_backup = match backup::recent_verified(
            &ctx.env.backup.dir,
            &ctx.env.target.dbname,
            ctx.env.backup.max_age,
            chrono::Utc::now(),
        ) {
            Ok(Ok(entry)) => Ok(entry.file),
            Ok(Err(why)) => Err(why),
            Err(e) => Err(e.cause),
        };
        let _ = ctx.tx.send(Msg::Facts(Facts {
            protected: ctx.env.protected,
            verified_backup,
            unacknowledged,
        }));
        let _ = ctx
            .tx
            .send(Msg::Migrations(view.map(Box::new).map_err(|e| e.cause)));
    });
}

async fn load_view(env: &Environment) -> Result<MigrationsView> {
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (status, _) = migrate::status(&env.target, &dir).await?;
    let pending: Vec<String> = status
        .pending_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names: Vec<&str> = pending.iter().map(String::as_str).collect();
    let plan = Plan::build(
        Some(&env.target),
        &dir,
        &names,
        &env.lint,
        &[],
        env.protected,
    )
    .await;
    Ok(MigrationsView { dir, status, plan })
}

async fn run(
    ctx: &Context,
    operation: Operation,
    step: &impl Fn(StepEvent),
    journal: Option<PathBuf>,
) -> Result<String> {
    let env = &ctx.env;
    let progress =
        |detail: String, fraction: Option<f64>| step(StepEvent::Progress { detail, fraction });
    match operation {
        Operation::Backup => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let opts = CreateOptions {
                dir: env.backup.dir.clone(),
                environment: env.name.clone(),
                count_rows: true,
                format: BackupFormat::Custom,
                jobs: 1,
            };
            let task = backup::create(&env.target, &opts, &tx);
            tokio::pin!(task);
            loop {
                tokio::select! {
                    r = &mut task => {
                        let entry = r?;
                        return Ok(format!("{} ({})", entry.file, human_bytes(entry.size_bytes as i64)));
                    }
                    Some(e) = rx.recv() => match e {
                        BackupEvent::Progress { bytes_written, tables_done, tables_total, fraction, .. } => progress(
                            format!("{} written, {tables_done}/{tables_total} tables", human_bytes(bytes_written as i64)),
                            Some(fraction),
                        ),
                        BackupEvent::Step { what } => progress(what, None),
                        BackupEvent::Started { file, .. } => progress(format!("pg_dump into {file}"), Some(0.0)),
                        BackupEvent::Finished { .. } => {}
                    },
                }
            }
        }
        Operation::VerifyBackup | Operation::BackupRetained => {
            let newest = backup::catalog::list(&env.backup.dir)?
                .into_iter()
                .find(|(e, present)| *present && e.database == env.target.dbname)
                .map(|(e, _)| e)
                .ok_or_else(|| {
                    Error::input(
                        format!(
                            "no backup of {} in {}",
                            env.target.dbname,
                            env.backup.dir.display()
                        ),
                        "run the backup step first",
                    )
                })?;
            if operation == Operation::BackupRetained {
                return match newest.verification {
                    Some(v) => Ok(format!(
                        "{} kept, verified {}",
                        newest.file,
                        v.at.format("%Y-%m-%d %H:%M UTC")
                    )),
                    None => Err(Error::runtime(
                        format!("{} is not verified", newest.file),
                        "verify it before the session ends",
                    )),
                };
            }
            progress(format!("checking {}", newest.file), None);
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let entry =
                backup::verify(&env.target, &env.backup.dir.join(&newest.file), false, &tx).await?;
            Ok(format!(
                "{}: {}",
                entry.file,
                entry.verification.map(|v| v.details).unwrap_or_default()
            ))
        }
        Operation::Plan => {
            let view = load_view(env).await?;
            let verdict = view.plan.verdict();
            let open = view.plan.unacknowledged_dangerous();
            let findings: usize = view
                .plan
                .migrations
                .iter()
                .map(|m| m.lint.findings.len())
                .sum();
            Ok(format!(
                "{} pending, {findings} finding(s), verdict {verdict:?}{}",
                view.plan.migrations.len(),
                if open.is_empty() {
                    String::new()
                } else {
                    format!("; DANGEROUS to acknowledge: {}", open.join(", "))
                }
            ))
        }
        Operation::RollbackPlan => {
            let dir = MigrationsDir::load(&env.migrations_dir)?;
            let (status, _) = migrate::status(&env.target, &dir).await?;
            let pending = status.pending_names();
            let missing: Vec<&str> = pending
                .iter()
                .copied()
                .filter(|n| dir.get(n).is_none_or(|m| m.down.is_none()))
                .collect();
            if missing.is_empty() {
                Ok(format!(
                    "{} pending migration(s), each with a down.sql",
                    pending.len()
                ))
            } else {
                Err(Error::input(
                    format!("no down.sql for: {}", missing.join(", ")),
                    "write one, or tick this step with where the rollback plan is",
                ))
            }
        }
        Operation::CaptureBaseline => {
            progress(
                format!(
                    "measuring for {}",
                    humantime::format_duration(env.health.window)
                ),
                None,
            );
            let report = health::run(&env.name, &env.target, &env.health, None).await?;
            let verdict = report.verdict;
            step(StepEvent::Health(Box::new(report.clone())));
            if verdict == Level::Alert {
                return Err(Error::runtime(
                    "the system is in ALERT: a baseline of it would hide what the deploy breaks",
                    "fix what the health checks name, then run this step again",
                ));
            }
            report.measured.save(&ctx.baseline_path())?;
            Ok(format!("baseline saved ({})", verdict.label()))
        }
        Operation::Health => {
            progress(
                format!(
                    "checking for {}",
                    humantime::format_duration(env.health.window)
                ),
                None,
            );
            let baseline = Baseline::load(&ctx.baseline_path()).ok();
            let report =
                health::run(&env.name, &env.target, &env.health, baseline.as_ref()).await?;
            let verdict = report.verdict;
            let worst: Vec<String> = report
                .checks
                .iter()
                .filter(|c| c.level == verdict && verdict != Level::Ok)
                .map(|c| format!("{} {}", c.name, c.value))
                .collect();
            step(StepEvent::Health(Box::new(report)));
            match verdict {
                Level::Alert => Err(Error::runtime(
                    format!("health ALERT: {}", worst.join("; ")),
                    "see the Monitor screen; the Rollback screen has the options",
                )),
                Level::Warn => Ok(format!("health WARN: {}", worst.join("; "))),
                Level::Ok => Ok("health ok".into()),
            }
        }
        Operation::Deploy => {
            let dir = MigrationsDir::load(&env.migrations_dir)?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let opts = DeployOptions::new(env.deploy.clone());
            let task = migrate::deploy(&env.target, &dir, &opts, &tx);
            tokio::pin!(task);
            loop {
                tokio::select! {
                    r = &mut task => {
                        let outcome = r?;
                        return Ok(match outcome.applied.len() {
                            0 => "nothing to deploy".into(),
                            n => format!("{n} applied: {}", outcome.applied.iter().map(|a| format!("{} ({} ms)", a.name, a.duration_ms)).collect::<Vec<_>>().join(", ")),
                        });
                    }
                    Some(e) = rx.recv() => match e {
                        DeployEvent::MigrationStarted { name, index, total, .. } => progress(format!("[{index}/{total}] {name}"), Some((index - 1) as f64 / total.max(1) as f64)),
                        DeployEvent::StatementStarted { name, index, total, preview, .. } => progress(format!("{name} statement {index}/{total}: {preview}"), None),
                        DeployEvent::WaitingForLock { holder } => progress(format!("waiting for the migration lock{}", holder.map(|h| format!(" held by {h}")).unwrap_or_default()), None),
                        DeployEvent::LockTimeout { name, attempt, attempts, retry_in_ms } => progress(format!("{name}: lock_timeout, retry {attempt}/{attempts} in {retry_in_ms} ms"), None),
                        _ => {}
                    },
                }
            }
        }
        Operation::Status => {
            let dir = MigrationsDir::load(&env.migrations_dir)?;
            let (status, version) = migrate::status(&env.target, &dir).await?;
            match status.verdict() {
                Verdict::UpToDate => Ok(format!(
                    "{} migrations applied, none pending (PostgreSQL {version})",
                    status.migrations.len()
                )),
                v => Err(Error::runtime(
                    format!("status is {v:?}"),
                    "see the Migrations screen",
                )),
            }
        }
        Operation::SampleQueries => {
            let session =
                crate::db::connect(&env.target.with_application_name("pgdeck-console")).await?;
            session
                .client
                .batch_execute(
                    "SET default_transaction_read_only = on; SET statement_timeout = '10s'",
                )
                .await
                .map_err(|e| crate::db::query_error("preparing the session", &e))?;
            let mut out = Vec::new();
            for q in &env.backup.restore_checks {
                match session.client.simple_query(q).await {
                    Ok(msgs) => {
                        let value = msgs.iter().find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                Some(r.get(0).unwrap_or("NULL").to_owned())
                            }
                            _ => None,
                        });
                        out.push(format!("{q} = {}", value.unwrap_or_default()));
                    }
                    Err(e)
                        if crate::db::sqlstate(&e)
                            == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
                    {
                        out.push(format!("{q}: skipped (no such table)"));
                    }
                    Err(e) => return Err(crate::db::query_error("running a sample query", &e)),
                }
            }
            Ok(if out.is_empty() {
                "no sample queries configured (restore_checks)".into()
            } else {
                out.join("; ")
            })
        }
        Operation::WriteReport => {
            let path = journal.ok_or_else(|| {
                Error::runtime("no journal for this session", "check the journal folder")
            })?;
            let entries = crate::journal::read(&path)?;
            let target = ctx.report_path();
            std::fs::write(&target, crate::journal::markdown(&entries)).map_err(|e| {
                Error::runtime(
                    format!("cannot write {}: {e}", target.display()),
                    "check the journal folder",
                )
            })?;
            Ok(format!("written to {}", target.display()))
        }
    }
}
