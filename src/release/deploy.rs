//! Deploy with its guards: no unresolved failed migration; on a protected environment a
//! verified backup of this database, taken on this server in this environment, younger than
//! `backup_max_age`, whose file still matches its checksum, and every DANGEROUS finding
//! acknowledged by a person with a reason; then the confirmation. Then the hooks around the
//! engine, the notifications, and the journal of what was and was not applied.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::pitr;
use super::{
    Confirmation, Confirmed, Context, Environment, Event, Needs, Workflow, confirm,
    direct_connection, reason,
};
use crate::backup::pgbackrest::RestorePoint;
use crate::backup::{self, BackupEntry, GateChoice, Identity};
use crate::db;
use crate::error::{Ask, Error, ErrorKind, Guard, Remedy, Result};
use crate::events::with_events;
use crate::journal::{self, Outcome};
use crate::lint::plan::{Allow, Plan};
use crate::migrate::deploy::AppliedMigration;
use crate::migrate::script::TxMode;
use crate::migrate::{
    self, DeployEvent, DeployOptions, MigrationState, MigrationsDir, StatusReport,
};

/// A deploy, with the operator's decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeployRequest {
    pub confirmation: Option<Confirmation>,
    /// DANGEROUS findings acknowledged by a person, each with the reason.
    pub acknowledgements: Vec<Allow>,
    /// Deploy to a protected environment without a recent verified backup, for this reason.
    pub without_backup: Option<String>,
    /// Let a backup of another environment, server or database satisfy the backup gate, for
    /// this reason.
    pub foreign_backup: Option<String>,
    /// How long to wait for another deploy's migration lock (default: the environment's).
    pub lock_wait: Option<Duration>,
}

/// What a deploy did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeployReport {
    pub applied: Vec<AppliedMigration>,
    /// The verified backup the gate accepted, when it asked for one.
    pub backup: Option<String>,
    /// PITR mode: the restore point created when the work started, to recover to.
    pub restore_point: Option<RestorePoint>,
}

impl DeployReport {
    /// The applied migrations' names, comma-separated.
    pub fn applied_names(&self) -> String {
        migrate::deploy::names_of(&self.applied)
    }
}

/// What the backup gate finds for an environment's database now.
#[derive(Debug, Clone)]
pub enum BackupGate {
    /// The backups that satisfy it, newest first (the newest whose checksum still holds when a
    /// deploy starts is the one).
    Found(Vec<BackupEntry>),
    /// Only a backup of another environment, server or database would: it, and why it does not
    /// count.
    OnlyForeign {
        entry: Box<BackupEntry>,
        why: String,
    },
    /// Nothing would; why.
    Missing(String),
}

/// The pre-deploy backup gate, read now: the newest present, verified backup of the
/// environment's database taken in this environment on this server, younger than
/// `backup_max_age`. The console shows it; deploy evaluates it again when it starts.
pub async fn backup_gate(env: &Environment) -> Result<BackupGate> {
    let live = Identity::of(&env.target, &env.name).await?;
    Ok(
        match backup::gate_choice(&env.backup.dir, &live, env.backup.max_age, Utc::now())? {
            GateChoice::Found(entries) => BackupGate::Found(entries),
            GateChoice::OnlyForeign(entry, why) => BackupGate::OnlyForeign { entry, why },
            GateChoice::None(why) => BackupGate::Missing(why),
        },
    )
}

/// Applies the pending migrations of the environment's folder under every guard.
pub async fn deploy(ctx: &Context, req: &DeployRequest) -> Result<DeployReport> {
    let dir = MigrationsDir::load(&ctx.env.migrations_dir)?;
    deploy_release(ctx, req, dir).await
}

/// [`deploy`] of the release `dir` holds, read before: a fleet reads its folder once, before
/// any database starts, and every database gets that release, whatever the folder holds by
/// the time its turn comes.
pub async fn deploy_release(
    ctx: &Context,
    req: &DeployRequest,
    dir: MigrationsDir,
) -> Result<DeployReport> {
    direct_connection(ctx, Workflow::Deploy)?;
    let spares = super::primary::primary_session(ctx, Workflow::Deploy).await?;
    let env = &ctx.env;
    let status = migrate::status_with(&spares, &env.target, &dir).await?;
    refuse_failed(&status)?;
    let pending: Vec<String> = status
        .pending_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    if pending.is_empty() {
        // What deploy would say on the way: an edited migration is never re-applied.
        for m in &status.migrations {
            if matches!(m.state, migrate::MigrationState::Edited { .. }) {
                ctx.emit(Event::Deploy(DeployEvent::EditedAfterApply {
                    name: m.name.clone(),
                }));
            }
        }
        return Ok(DeployReport::default());
    }
    let mut gates = Gates::evaluate(ctx, &dir, &pending, req).await?;
    gates.spares = spares;
    let ask = Ask {
        title: format!(
            "Apply {} pending migration(s) to {}",
            pending.len(),
            env.target.dbname
        ),
        lines: deploy_lines(env, &dir, &pending),
        expect: None,
        // The migrations as they are now: the same names with other content are not what was
        // confirmed.
        scope: pending
            .iter()
            .map(|n| match dir.get(n) {
                Some(m) => format!("{n} sha256 {}", &m.checksum[..m.checksum.len().min(16)]),
                None => n.clone(),
            })
            .collect(),
    };
    let confirmed = confirm(
        ctx,
        Needs::for_change(env, false),
        ask,
        req.confirmation.as_ref(),
    )?;
    if let Err(e) = gates.recheck(ctx, Workflow::Deploy).await {
        // Confirmed, then refused: the journal has both.
        confirmed.record(ctx);
        record_release(
            ctx,
            Workflow::Deploy,
            Outcome::of(&e),
            &e.cause,
            &[],
            &pending,
        );
        return Err(e);
    }
    let notices = Notices {
        started: format!(
            "deploy started on {} ({}): {}",
            env.name,
            env.target.dbname,
            pending.join(", ")
        ),
        finished: |report: &DeployReport, env: &Environment| {
            format!(
                "deploy finished on {}: {} migration(s) applied",
                env.name,
                report.applied.len()
            )
        },
        failed: "deploy",
    };
    execute(
        ctx,
        Workflow::Deploy,
        dir,
        pending,
        (gates, confirmed),
        req.lock_wait,
        notices,
    )
    .await
}

fn deploy_lines(env: &Environment, dir: &MigrationsDir, pending: &[String]) -> Vec<String> {
    let mut lines = vec![format!("Applies to {}, in this order:", env.target.dbname)];
    for name in pending {
        let statement_by_statement = dir
            .get(name)
            .and_then(|m| migrate::deploy::statements_for(m).ok())
            .is_some_and(|s| s.iter().any(|s| s.mode == TxMode::NoTransaction));
        lines.push(if statement_by_statement {
            format!("  {name} (no transaction: statement by statement)")
        } else {
            format!("  {name}")
        });
    }
    lines.push(format!(
        "Each with lock_timeout {}, retried {} time(s); a migration in a transaction is applied \
         whole or not at all.",
        crate::units::human_duration(env.deploy.lock_timeout),
        env.deploy.lock_retries
    ));
    lines
}

/// A failed migration blocks every deploy until it is resolved.
pub(super) fn refuse_failed(status: &StatusReport) -> Result<()> {
    for m in &status.migrations {
        if let MigrationState::Failed { started_at, .. } = &m.state {
            return Err(migrate::deploy::failed_blocks_deploy(&m.name, *started_at));
        }
    }
    Ok(())
}

/// What the guards found: the backup to re-check when the work starts, and the overrides to
/// journal when it does.
#[derive(Debug, Default)]
pub(super) struct Gates {
    /// The backups that may satisfy the gate, newest first; the first whose file still holds
    /// when the work starts is the one.
    backups: Vec<BackupEntry>,
    /// The reason to go ahead without one, if the operator gave it.
    without_backup: Option<String>,
    /// The backup that held, once re-checked.
    backup: Option<BackupEntry>,
    /// PITR mode: the base backup and archiving found, to mark with a restore point when the
    /// work starts; then the point.
    pitr: Option<pitr::Found>,
    restore_point: Option<RestorePoint>,
    overrides: Vec<(String, String)>,
    /// The sessions the primary-session guard opened, for the work to use.
    pub(super) spares: db::Spares,
}

impl Gates {
    /// The backup and lint gates of a protected environment, for the migrations `pending` of
    /// `dir` (which may hold a rollback migration not yet written to disk).
    pub(super) async fn evaluate(
        ctx: &Context,
        dir: &MigrationsDir,
        pending: &[String],
        req: &DeployRequest,
    ) -> Result<Gates> {
        let env = &ctx.env;
        let mut gates = Gates::default();
        if !env.protected {
            return Ok(gates);
        }
        let refused = |guard: Guard, why: String| {
            Error::guarded(
                guard,
                format!(
                    "deploy to protected environment '{}' refused: {why}",
                    env.name
                ),
                format!(
                    "a protected deploy needs a verified backup of this database, taken in this \
                     environment on this server, younger than {}",
                    crate::units::human_duration(env.backup.max_age)
                ),
            )
            .with(Remedy::TakeVerifiedBackup)
        };
        let without = reason(
            req.without_backup.as_deref(),
            "deploying without a recent verified backup",
        )?;
        let foreign = reason(
            req.foreign_backup.as_deref(),
            "accepting a backup of another origin",
        )?;
        if let Some(stanza) = &env.backup.pgbackrest {
            match pitr::evaluate(ctx, stanza).await? {
                Ok(found) => {
                    gates.pitr = Some(found);
                    gates.without_backup = without;
                }
                Err((guard, why)) => match without {
                    Some(r) => gates
                        .overrides
                        .push((format!("deploy without PITR safety ({why})"), r)),
                    None => {
                        return Err(pitr_refused(env, guard, why));
                    }
                },
            }
        } else {
            match backup_gate(env).await? {
                BackupGate::Found(entries) => {
                    ctx.emit(Event::Checked(format!(
                        "verified backup: {}",
                        entries[0].file
                    )));
                    gates.backups = entries;
                    gates.without_backup = without;
                }
                BackupGate::OnlyForeign { entry, why } => match (foreign, without.clone()) {
                    (Some(r), _) => {
                        ctx.emit(Event::Checked(format!(
                            "backup of another origin accepted: {}",
                            entry.file
                        )));
                        gates.overrides.push((
                            format!("deploy gate satisfied by {} although {why}", entry.file),
                            r,
                        ));
                        gates.backups = vec![*entry];
                        gates.without_backup = without;
                    }
                    (None, Some(r)) => gates.overrides.push((
                        format!("deploy without a recent verified backup ({why})"),
                        r,
                    )),
                    (None, None) => {
                        return Err(refused(Guard::BackupIdentity, why)
                            .with(Remedy::AcceptForeignBackup)
                            .with(Remedy::DeployWithoutBackup));
                    }
                },
                BackupGate::Missing(why) => match without {
                    Some(r) => gates.overrides.push((
                        format!("deploy without a recent verified backup ({why})"),
                        r,
                    )),
                    None => {
                        return Err(refused(Guard::Backup, why).with(Remedy::DeployWithoutBackup));
                    }
                },
            }
        }

        for a in &req.acknowledgements {
            reason(Some(&a.reason), &format!("acknowledging {}", a.rule))?;
        }
        let allows = req.acknowledgements.clone();
        let names: Vec<&str> = pending.iter().map(String::as_str).collect();
        let plan = Plan::build(Some(&env.target), dir, &names, &env.lint, &allows, true).await;
        let open = plan.unacknowledged_dangerous();
        if !open.is_empty() {
            let keys = plan.unacknowledged_dangerous_keys();
            let details = plan.unacknowledged_dangerous_details();
            return Err(Error::guarded(
                Guard::Lint,
                format!(
                    "deploy to protected environment '{}' refused: {} DANGEROUS finding(s) not acknowledged: {}",
                    env.name,
                    open.len(),
                    open.join(", ")
                ),
                "each needs a person's acknowledgement with a reason; the plan shows each with its \
                 expand / contract alternative",
            )
            .with(Remedy::ReviewPlan)
            .with(Remedy::Acknowledge {
                findings: keys,
                details,
            }));
        }
        for (finding, reason) in plan.acknowledged_in_files() {
            gates.overrides.push((
                format!("deploy with a DANGEROUS finding acknowledged in its file: {finding}"),
                reason,
            ));
        }
        let mut by_reason: Vec<(String, Vec<String>)> = Vec::new();
        for a in &allows {
            let what = a.at.clone().unwrap_or_else(|| format!("rule {}", a.rule));
            match by_reason.iter_mut().find(|(r, _)| *r == a.reason) {
                Some((_, list)) => list.push(what),
                None => by_reason.push((a.reason.trim().to_owned(), vec![what])),
            }
        }
        for (reason, list) in by_reason {
            ctx.emit(Event::Checked(format!(
                "acknowledged {}: {reason}",
                list.join(", ")
            )));
            gates.overrides.push((
                format!(
                    "deploy with DANGEROUS findings acknowledged: {}",
                    list.join(", ")
                ),
                reason,
            ));
        }
        Ok(gates)
    }

    /// Verified once is not enough: when the work starts, the accepted backup's file must still
    /// be the one that was verified. A backup that no longer holds gives way to the next older
    /// one that does; with none left, the operator's reason to go without one, if given, counts.
    pub(super) async fn recheck(&mut self, ctx: &Context, workflow: Workflow) -> Result<()> {
        if let Some(found) = self.pitr.take() {
            return match pitr::mark(ctx, &found).await? {
                Ok(point) => {
                    self.restore_point = Some(point);
                    Ok(())
                }
                Err((guard, why)) => match self.without_backup.take() {
                    Some(reason) => {
                        self.overrides
                            .push((format!("deploy without PITR safety ({why})"), reason));
                        Ok(())
                    }
                    None => Err(pitr_refused(&ctx.env, guard, why)),
                },
            };
        }
        if self.backups.is_empty() {
            return Ok(());
        }
        let mut failures = Vec::new();
        for entry in std::mem::take(&mut self.backups) {
            let path = ctx.env.backup.dir.join(&entry.file);
            let checked = tokio::select! {
                checked = with_events(
                    |e| ctx.emit(Event::Backup(e)),
                    |tx| {
                        let (path, entry) = (&path, &entry);
                        async move { backup::check_integrity(path, entry, &tx).await }
                    },
                ) => checked,
                () = ctx.cancel.cancelled() => return ctx.check_cancelled(workflow.name()),
            };
            match checked {
                Ok(_) => {
                    ctx.emit(Event::Checked(format!(
                        "{}: checksum and table of contents re-checked",
                        entry.file
                    )));
                    self.backup = Some(entry);
                    return Ok(());
                }
                Err(e) if e.kind == ErrorKind::Runtime => return Err(e),
                Err(e) => {
                    ctx.emit(Event::Warning(format!(
                        "{} does not hold any more: {}",
                        entry.file, e.cause
                    )));
                    failures.push(e.cause);
                }
            }
        }
        let why = format!(
            "the verified backup no longer holds: {}",
            failures.join("; ")
        );
        if let Some(reason) = self.without_backup.take() {
            self.overrides
                .push((format!("deploy without a usable backup ({why})"), reason));
            return Ok(());
        }
        Err(Error::guarded(
            Guard::BackupIntegrity,
            format!(
                "deploy to protected environment '{}' refused: {why}",
                ctx.env.name
            ),
            "a protected deploy needs a backup that can be restored",
        )
        .with(Remedy::TakeVerifiedBackup)
        .with(Remedy::DeployWithoutBackup))
    }
}

/// A protected deploy in PITR mode refused: what would satisfy it is pgBackRest's, or the
/// operator's reason to go without.
fn pitr_refused(env: &Environment, guard: Guard, why: String) -> Error {
    Error::guarded(
        guard,
        format!(
            "deploy to protected environment '{}' refused: {why}",
            env.name
        ),
        format!(
            "in PITR mode a protected deploy needs a pgBackRest base backup of this server younger than {}, and WAL archiving that works (pgbackrest check tells what fails)",
            crate::units::human_duration(env.backup.max_age)
        ),
    )
    .with(Remedy::DeployWithoutBackup)
}

/// The notifications around a deploy.
pub(super) struct Notices {
    pub started: String,
    pub finished: fn(&DeployReport, &Environment) -> String,
    /// "deploy" or "rollback": the FAILED notice names it.
    pub failed: &'static str,
}

/// The work once every guard held: overrides journaled, `before_deploy`, the engine (exactly
/// the confirmed `pending`), `after_deploy`, notifications, and the journal of what was and was
/// not applied.
pub(super) async fn execute(
    ctx: &Context,
    workflow: Workflow,
    dir: MigrationsDir,
    pending: Vec<String>,
    (mut gates, confirmed): (Gates, Confirmed),
    lock_wait: Option<Duration>,
    notices: Notices,
) -> Result<DeployReport> {
    let env = &ctx.env;
    if let Err(e) = ctx.check_cancelled(workflow.name()) {
        confirmed.record(ctx);
        record_release(ctx, workflow, Outcome::Cancelled, &e.cause, &[], &pending);
        return Err(e);
    }
    confirmed.record(ctx);
    for (what, reason) in &gates.overrides {
        ctx.record_override(what.clone(), reason);
    }
    ctx.emit(Event::Started {
        workflow,
        what: format!("{} migration(s): {}", pending.len(), pending.join(", ")),
    });
    if let Some(outcome) = super::hooks::if_configured(ctx, "before_deploy", &pending).await?
        && !outcome.success()
    {
        let e = Error::runtime(
            format!(
                "hook before_deploy ended: {}; nothing was deployed",
                outcome.describe()
            ),
            "its output is above and in the journal; fix it, or run it by hand",
        );
        record_release(ctx, workflow, Outcome::Failed, &e.cause, &[], &pending);
        return Err(e);
    }
    ctx.notify(&notices.started).await;
    let mut settings = env.deploy.clone();
    if let Some(wait) = lock_wait {
        settings.lock_wait = wait;
    }
    let opts = DeployOptions {
        cancel: ctx.cancel.clone(),
        expect_pending: Some(pending.clone()),
        spares: Arc::new(std::mem::take(&mut gates.spares)),
        ..DeployOptions::new(settings)
    };
    let mut applied: Vec<String> = Vec::new();
    let result = with_events(
        |e: DeployEvent| {
            if let DeployEvent::MigrationApplied { name, .. } = &e {
                applied.push(name.clone());
            }
            ctx.deploy_event(e);
        },
        |tx| {
            let (target, dir, opts) = (&env.target, &dir, &opts);
            async move { migrate::deploy(target, dir, opts, &tx).await }
        },
    )
    .await;
    let not_applied: Vec<String> = pending
        .iter()
        .filter(|n| !applied.contains(n))
        .cloned()
        .collect();
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let how = Outcome::of(&e);
            let verb = if how == Outcome::Cancelled {
                "CANCELLED"
            } else {
                "FAILED"
            };
            ctx.notify(&format!(
                "{} {verb} on {}: {}",
                notices.failed, env.name, e.cause
            ))
            .await;
            record_release(ctx, workflow, how, &e.cause, &applied, &not_applied);
            return Err(e);
        }
    };
    let report = DeployReport {
        applied: outcome.applied,
        backup: gates.backup.map(|b| b.file),
        restore_point: gates.restore_point,
    };
    ctx.notify(&(notices.finished)(&report, env)).await;
    // What it confirmed and did not apply, another run applied in the meantime (the engine
    // deploys only what is still pending under the lock).
    let meanwhile = if not_applied.is_empty() {
        String::new()
    } else {
        format!(
            "; {} applied by another run meanwhile: {}",
            not_applied.len(),
            not_applied.join(", ")
        )
    };
    record_release(
        ctx,
        workflow,
        Outcome::Ok,
        &format!(
            "{} migration(s) applied: {}{meanwhile}",
            report.applied.len(),
            report.applied_names()
        ),
        &applied,
        &[],
    );
    if let Some(outcome) = super::hooks::if_configured(ctx, "after_deploy", &applied).await?
        && !outcome.success()
    {
        return Err(Error::runtime(
            format!(
                "the deploy succeeded, but hook after_deploy ended: {}",
                outcome.describe()
            ),
            "its output is above and in the journal; fix it, or run it by hand",
        ));
    }
    Ok(report)
}

pub(super) fn record_release(
    ctx: &Context,
    workflow: Workflow,
    outcome: Outcome,
    summary: &str,
    applied: &[String],
    not_applied: &[String],
) {
    ctx.record(journal::Event::Released {
        workflow: workflow.name().to_owned(),
        outcome,
        summary: summary.to_owned(),
        applied: applied.to_vec(),
        not_applied: not_applied.to_vec(),
        duration_ms: ctx.work_duration().map(|d| d.as_millis() as u64),
    });
}
