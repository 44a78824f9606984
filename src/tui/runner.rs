//! The producers: each effect becomes a tokio task that runs a core operation and only sends
//! small typed messages back to the loop.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc::UnboundedSender, watch};

use super::app::{Effect, MigrationsView, Msg, RollbackEvent, StepEvent};
use crate::backup::{self, BackupEvent, BackupFormat, CreateOptions};
use crate::checklist::{Facts, Operation};
use crate::config::Environment;
use crate::error::{Error, Result};
use crate::events::with_events;
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
        Effect::Revert(names) => rollback_task(
            ctx,
            format!("forward rollback of {}", names.join(", ")),
            move |ctx, log| Box::pin(async move { forward_rollback(&ctx, &names, &log).await }),
        ),
        Effect::PrepareRestore => {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let event = match newest_verified(&ctx.env) {
                    Ok(Some(entry)) => match backup::loss_since(&ctx.env.target, &entry).await {
                        Ok((gap, writes)) => RollbackEvent::RestoreOffer {
                            file: entry.file.clone(),
                            loss: format!(
                                "{} of changes{}",
                                humantime::format_duration(Duration::from_secs(
                                    gap.num_seconds().max(0) as u64
                                )),
                                writes
                                    .map(|w| format!(
                                        ", about {w} row(s) written since (pg_stat_user_tables)"
                                    ))
                                    .unwrap_or_default()
                            ),
                        },
                        Err(e) => RollbackEvent::Done {
                            what: "restore".into(),
                            result: Err(e.cause),
                        },
                    },
                    Ok(None) => RollbackEvent::Done {
                        what: "restore".into(),
                        result: Err("no verified backup of this database".into()),
                    },
                    Err(e) => RollbackEvent::Done {
                        what: "restore".into(),
                        result: Err(e.cause),
                    },
                };
                let _ = ctx.tx.send(Msg::Rollback(event));
            });
        }
        Effect::Restore(file) => {
            rollback_task(ctx, format!("restore of {file}"), move |ctx, log| {
                Box::pin(async move { restore(&ctx, &file, &log).await })
            })
        }
        Effect::RunHook(name) => rollback_task(ctx, format!("hook {name}"), move |ctx, log| {
            Box::pin(async move { hook(&ctx, &name, &[], &log).await })
        }),
        Effect::ResolveRolledBack(name) => rollback_task(
            ctx,
            format!("resolve {name} as rolled back"),
            move |ctx, _log| {
                Box::pin(async move {
                    let dir = MigrationsDir::load(&ctx.env.migrations_dir)?;
                    migrate::resolve(
                        &ctx.env.target,
                        &dir,
                        &name,
                        migrate::Resolution::RolledBack,
                    )
                    .await?;
                    Ok(format!(
                        "{name} recorded as rolled back; deploy runs it again"
                    ))
                })
            },
        ),
        Effect::Quit | Effect::CancelStep(_) => {}
    }
    None
}

type Log = UnboundedSender<Msg>;

/// Runs a rollback action in a task; its log lines and its end go to the Rollback screen.
fn rollback_task<F>(ctx: &Context, what: String, action: F)
where
    F: FnOnce(
            Context,
            Log,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String>> + Send>>
        + Send
        + 'static,
{
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let log = ctx.tx.clone();
        let tx = ctx.tx.clone();
        let result = action(ctx, log).await.map_err(|e| {
            if e.hint.is_empty() {
                e.cause
            } else {
                format!("{} (hint: {})", e.cause, e.hint)
            }
        });
        let _ = tx.send(Msg::Rollback(RollbackEvent::Done { what, result }));
    });
}

fn say(log: &Log, line: impl Into<String>) {
    let _ = log.send(Msg::Rollback(RollbackEvent::Log(line.into())));
}

fn newest_verified(env: &Environment) -> Result<Option<backup::BackupEntry>> {
    Ok(backup::catalog::list(&env.backup.dir)?
        .into_iter()
        .find(|(e, present)| *present && e.database == env.target.dbname && e.is_verified())
        .map(|(e, _)| e))
}

async fn notify(ctx: &Context, log: &Log, text: &str) {
    if let Err(e) = crate::hooks::notify(&ctx.env.hooks, text).await {
        say(log, format!("warning: {}", e.cause));
    }
}

async fn hook(ctx: &Context, name: &str, migrations: &[String], log: &Log) -> Result<String> {
    let database = ctx.env.target.to_string();
    let hctx = crate::hooks::HookContext {
        environment: &ctx.env.name,
        database: &database,
        migrations,
    };
    say(
        log,
        format!(
            "hook {name}: {}",
            ctx.env
                .hooks
                .commands
                .get(name)
                .cloned()
                .unwrap_or_default()
        ),
    );
    let outcome = with_events(
        |line: String| say(log, format!("  | {line}")),
        |tx| async move { crate::hooks::run(&ctx.env.hooks, name, &hctx, Some(&tx)).await },
    )
    .await?;
    let _ = ctx
        .tx
        .send(Msg::Journal(crate::journal::Event::hook(&outcome)));
    if outcome.success() {
        Ok(format!(
            "hook {name}: exit 0 in {:.1}s",
            outcome.duration_ms as f64 / 1000.0
        ))
    } else {
        Err(Error::runtime(
            format!("hook {name} ended: {}", outcome.describe()),
            "see its output above",
        ))
    }
}

async fn forward_rollback(ctx: &Context, names: &[String], log: &Log) -> Result<String> {
    let env = &ctx.env;
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (status, _) = migrate::status(&env.target, &dir).await?;
    let folder = migrate::revert::write_rollback(&dir, &status, names, chrono::Utc::now())?;
    say(log, format!("wrote {}", folder.display()));
    let view = load_view(env).await?;
    for m in &view.plan.migrations {
        say(
            log,
            format!(
                "plan {}: {:?}, {} finding(s)",
                m.name,
                m.verdict,
                m.lint.findings.len()
            ),
        );
        for f in &m.lint.findings {
            say(
                log,
                format!("  {}:{} {:?} {}", f.line, f.column, f.severity, f.rule),
            );
        }
    }
    let dangerous = view.plan.unacknowledged_dangerous();
    if !dangerous.is_empty() {
        // The operator confirmed this exact rollback; the journal keeps what it acknowledged.
        let _ = ctx.tx.send(Msg::Journal(crate::journal::Event::Override {
            what: format!(
                "forward rollback with DANGEROUS findings: {}",
                dangerous.join(", ")
            ),
            reason: format!("confirmed rollback of {}", names.join(", ")),
        }));
    }
    notify(
        ctx,
        log,
        &format!(
            "rollback started on {}: reverting {}",
            env.name,
            names.join(", ")
        ),
    )
    .await;
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let result = with_events(
        |e| {
            if let DeployEvent::MigrationApplied { name, duration_ms } = e {
                say(log, format!("applied {name} in {duration_ms} ms"));
            }
        },
        |tx| async move {
            migrate::deploy(
                &env.target,
                &dir,
                &DeployOptions::new(env.deploy.clone()),
                &tx,
            )
            .await
        },
    )
    .await;
    let text = match &result {
        Ok(_) => format!(
            "rollback finished on {}: {} reverted",
            env.name,
            names.join(", ")
        ),
        Err(e) => format!("rollback FAILED on {}: {}", env.name, e.cause),
    };
    notify(ctx, log, &text).await;
    let outcome = result?;
    Ok(format!(
        "{} applied: {}",
        outcome.applied.len(),
        outcome.applied_names()
    ))
}

async fn restore(ctx: &Context, file: &str, log: &Log) -> Result<String> {
    let env = &ctx.env;
    let path = env.backup.dir.join(file);
    if env.hooks.commands.contains_key("maintenance_on") {
        hook(ctx, "maintenance_on", &[], log).await?;
    }
    notify(
        ctx,
        log,
        &format!("rollback started on {}: restoring {file}", env.name),
    )
    .await;
    let opts = backup::RestoreOptions {
        force_unverified: false,
        terminate_sessions: true,
        checks: env.backup.restore_checks.clone(),
        jobs: 1,
    };
    let result = with_events(
        |e| match e {
            BackupEvent::Step { what } => say(log, what),
            BackupEvent::Finished { elapsed_ms, .. } => say(
                log,
                format!("pg_restore finished in {:.1}s", elapsed_ms as f64 / 1000.0),
            ),
            _ => {}
        },
        |tx| async move { backup::restore(&env.target, &path, &opts, &tx).await },
    )
    .await;
    let text = match &result {
        Ok(_) => format!("rollback finished on {}: {file} restored", env.name),
        Err(e) => format!("rollback FAILED on {}: {}", env.name, e.cause),
    };
    notify(ctx, log, &text).await;
    let checks = result?;
    for c in &checks {
        say(
            log,
            format!(
                "check {}: {}{}",
                c.check,
                c.result,
                if c.ok { "" } else { " (FAILED)" }
            ),
        );
    }
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (status, _) = migrate::status(&env.target, &dir).await?;
    say(
        log,
        format!(
            "status: {:?}, {} pending",
            status.verdict(),
            status.pending_names().len()
        ),
    );
    if env.hooks.commands.contains_key("maintenance_off") {
        hook(ctx, "maintenance_off", &[], log).await?;
    }
    Ok(format!(
        "{file} restored; {} check(s) ran; status {:?}",
        checks.len(),
        status.verdict()
    ))
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
        let _ = ctx.tx.send(Msg::Backup(
            newest_verified(&ctx.env).ok().flatten().map(Box::new),
        ));
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
            let opts = CreateOptions {
                dir: env.backup.dir.clone(),
                environment: env.name.clone(),
                count_rows: true,
                format: BackupFormat::Custom,
                jobs: 1,
            };
            let entry = with_events(
                |e| match e {
                    BackupEvent::Progress {
                        bytes_written,
                        tables_done,
                        tables_total,
                        fraction,
                        ..
                    } => progress(
                        format!(
                            "{} written, {tables_done}/{tables_total} tables",
                            human_bytes(bytes_written as i64)
                        ),
                        Some(fraction),
                    ),
                    BackupEvent::Step { what } => progress(what, None),
                    BackupEvent::Started { file, .. } => {
                        progress(format!("pg_dump into {file}"), Some(0.0))
                    }
                    BackupEvent::Finished { .. } => {}
                },
                |tx| async move { backup::create(&env.target, &opts, &tx).await },
            )
            .await?;
            Ok(format!(
                "{} ({})",
                entry.file,
                human_bytes(entry.size_bytes as i64)
            ))
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
            if verdict == Level::Alert {
                notify(
                    ctx,
                    &ctx.tx.clone(),
                    &format!("ALERT on {}: {}", env.name, worst.join("; ")),
                )
                .await;
            }
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
            let (status, _) = migrate::status(&env.target, &dir).await?;
            let pending: Vec<String> = status
                .pending_names()
                .iter()
                .map(|s| s.to_string())
                .collect();
            let log = ctx.tx.clone();
            if env.hooks.commands.contains_key("before_deploy") {
                progress("hook before_deploy".into(), None);
                hook(ctx, "before_deploy", &pending, &log)
                    .await
                    .map_err(|e| {
                        Error::runtime(
                            format!("{}; nothing was deployed", e.cause),
                            "see the Rollback screen's output",
                        )
                    })?;
            }
            notify(
                ctx,
                &log,
                &format!(
                    "deploy started on {} ({}): {}",
                    env.name,
                    env.target.dbname,
                    pending.join(", ")
                ),
            )
            .await;
            let opts = DeployOptions::new(env.deploy.clone());
            let deployed = with_events(
                |e| match e {
                    DeployEvent::MigrationStarted {
                        name, index, total, ..
                    } => progress(
                        format!("[{index}/{total}] {name}"),
                        Some((index - 1) as f64 / total.max(1) as f64),
                    ),
                    DeployEvent::StatementStarted {
                        name,
                        index,
                        total,
                        preview,
                        ..
                    } => progress(format!("{name} statement {index}/{total}: {preview}"), None),
                    DeployEvent::WaitingForLock { holder } => progress(
                        format!(
                            "waiting for the migration lock{}",
                            holder.map(|h| format!(" held by {h}")).unwrap_or_default()
                        ),
                        None,
                    ),
                    DeployEvent::LockTimeout {
                        name,
                        attempt,
                        attempts,
                        retry_in_ms,
                    } => progress(
                        format!(
                            "{name}: lock_timeout, retry {attempt}/{attempts} in {retry_in_ms} ms"
                        ),
                        None,
                    ),
                    _ => {}
                },
                |tx| async move { migrate::deploy(&env.target, &dir, &opts, &tx).await },
            )
            .await;
            let outcome = match deployed {
                Ok(o) => o,
                Err(e) => {
                    let text = format!("deploy FAILED on {}: {}", env.name, e.cause);
                    notify(ctx, &log, &text).await;
                    return Err(e);
                }
            };
            let text = format!(
                "deploy finished on {}: {} migration(s) applied",
                env.name,
                outcome.applied.len()
            );
            notify(ctx, &log, &text).await;
            if env.hooks.commands.contains_key("after_deploy") {
                let applied: Vec<String> = outcome.applied.iter().map(|a| a.name.clone()).collect();
                hook(ctx, "after_deploy", &applied, &log)
                    .await
                    .map_err(|e| {
                        Error::runtime(
                            format!("the deploy succeeded, but {}", e.cause),
                            "see the Rollback screen's output",
                        )
                    })?;
            }
            Ok(match outcome.applied.len() {
                0 => "nothing to deploy".into(),
                n => {
                    let each: Vec<String> = outcome
                        .applied
                        .iter()
                        .map(|a| format!("{} ({} ms)", a.name, a.duration_ms))
                        .collect();
                    format!("{n} applied: {}", each.join(", "))
                }
            })
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
        Operation::Hook(which) => hook(ctx, which.hook_name(), &[], &ctx.tx.clone()).await,
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
