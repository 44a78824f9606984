//! Restore, the runbook's first rollback option, with its guards: the backup is verified and
//! holds something, it is a backup of this database taken in this environment on this server
//! (or the operator says why another will do), no other session is in the way, and the operator
//! confirmed after reading what it loses. Then the maintenance hooks around it, the restore in
//! one transaction, its checks, and what the migration status is afterwards.

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::deploy::record_release;
use super::{
    Confirmation, Context, Environment, Event, Needs, Workflow, confirm, direct_connection, reason,
};
use crate::backup::{
    self, BackupEntry, CheckResult, Identity, Left, RestoreFailed, RestoreOptions,
};
use crate::error::{Ask, Error, Guard, Remedy, Result};
use crate::events::with_events;
use crate::journal::Outcome;
use crate::migrate::{self, MigrationsDir, StatusReport};

/// Whether the maintenance hooks run around a restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Maintenance {
    /// When the environment configures both `maintenance_on` and `maintenance_off`.
    #[default]
    WhenConfigured,
    /// Always; refused when they are not configured.
    On,
    /// Never (the operator keeps the application away by other means).
    Off,
}

/// A restore, with the operator's decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreRequest {
    /// The backup's file name in the backup folder, or a path.
    pub backup: String,
    pub confirmation: Option<Confirmation>,
    /// Restore a backup that was never verified, for this reason.
    pub unverified: Option<String>,
    /// Restore a backup of another environment, server or database of the same name, for
    /// this reason.
    pub foreign_backup: Option<String>,
    /// Terminate the other sessions on the database first.
    pub terminate_sessions: bool,
    pub maintenance: Maintenance,
    /// Parallel pg_restore workers (directory-format backups; not one transaction then).
    pub jobs: u32,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub backup: BackupEntry,
    /// What restoring lost, as the confirmation said.
    pub loss: String,
    pub checks: Vec<CheckResult>,
    /// The migration status afterwards, when it could be read.
    pub status: Option<StatusReport>,
    /// Migrations applied after the backup was taken: pending again now, and the next deploy
    /// applies them again.
    pub pending_again: Vec<String>,
    /// Tables made after the backup, which the restore left as they are.
    pub left_in_place: Vec<String>,
}

/// The newest backup of the environment's database in its folder whose file is present
/// (verified only, with `verified`), by what the catalog records.
pub fn newest_backup(env: &Environment, verified: bool) -> Result<Option<BackupEntry>> {
    Ok(backup::catalog::list(&env.backup.dir)?
        .into_iter()
        .find(|(e, present)| {
            *present
                && e.database == env.target.dbname
                && e.environment == env.name
                && (!verified || e.is_verified())
        })
        .map(|(e, _)| e))
}

/// Replaces the environment's database with a backup, under every guard.
pub async fn restore(ctx: &Context, req: &RestoreRequest) -> Result<RestoreReport> {
    direct_connection(ctx, Workflow::Restore)?;
    let env = &ctx.env;
    let path = backup::locate(&env.backup.dir, &req.backup)?;
    let entry = BackupEntry::load(&path)?;
    backup::workers_fit(&entry, req.jobs)?;
    let mut overrides: Vec<(String, String)> = Vec::new();

    if !entry.is_verified() {
        if entry.verification.is_some() {
            return Err(Error::guarded(
                Guard::BackupIntegrity,
                format!(
                    "{} holds no objects (its table of contents is empty): restoring it would bring nothing back",
                    entry.file
                ),
                "restore a backup of the database itself",
            )
            .with(Remedy::ListBackups));
        }
        match reason(
            req.unverified.as_deref(),
            "restoring a backup that was never verified",
        )? {
            Some(r) => overrides.push((format!("restore of unverified backup {}", entry.file), r)),
            None => {
                return Err(Error::guarded(
                    Guard::BackupIntegrity,
                    format!("{} was never verified", entry.file),
                    "verify it first; a backup nobody read back may not restore",
                )
                .with(Remedy::VerifyBackup {
                    file: Some(entry.file.clone()),
                })
                .with(Remedy::RestoreUnverified));
            }
        }
    }

    let live = Identity::of(&env.target, &env.name).await?;
    if entry.database != live.database {
        return Err(Error::guarded(
            Guard::BackupIdentity,
            format!(
                "{} is a backup of database '{}', not '{}'",
                entry.file, entry.database, live.database
            ),
            "restore it into the database it came from",
        )
        .with(Remedy::OtherEnvironment));
    }
    if let Some(why) = entry.foreign_to(&live) {
        match reason(
            req.foreign_backup.as_deref(),
            "restoring a backup of another origin",
        )? {
            Some(r) => overrides.push((
                format!(
                    "restore of {} into {} of '{}' although {why}",
                    entry.file, live.database, env.name
                ),
                r,
            )),
            None => {
                return Err(Error::guarded(
                    Guard::BackupIdentity,
                    format!(
                        "{} does not stand for {} of environment '{}': {why}",
                        entry.file, live.database, env.name
                    ),
                    "restore a backup taken from this database, in this environment, on this server",
                )
                .with(Remedy::ListBackups)
                .with(Remedy::AcceptForeignBackup));
            }
        }
    }

    let maintenance = match req.maintenance {
        Maintenance::Off => false,
        Maintenance::WhenConfigured => has_maintenance_hooks(env),
        Maintenance::On if has_maintenance_hooks(env) => true,
        Maintenance::On => {
            return Err(Error::input(
                "the maintenance hooks are not configured for this environment",
                "configure maintenance_on and maintenance_off under [environments.<env>.hooks]",
            ));
        }
    };
    // The file must still be the one verified before anything else is asked; it is checked
    // again when the restore starts.
    with_events(
        |e| ctx.emit(Event::Backup(e)),
        |tx| {
            let (path, entry) = (&path, &entry);
            async move { backup::check_integrity(path, entry, &tx).await }
        },
    )
    .await?;
    // With maintenance mode the application leaves first; sessions are looked at after.
    let sessions = if maintenance {
        Vec::new()
    } else if req.terminate_sessions {
        backup::other_sessions(&env.target).await?
    } else {
        // Refuses, naming them, when there are any.
        backup::clear_sessions(&env.target, false).await?
    };

    let loss = match backup::loss_since(&env.target, &entry).await {
        Ok((gap, writes)) => format!(
            "{} of changes since it was taken{}",
            crate::units::human_duration(std::time::Duration::from_secs(
                gap.num_seconds().max(0) as u64
            )),
            writes
                .map(|w| format!(
                    ", about {w} row(s) inserted, updated or deleted since (pg_stat_user_tables)"
                ))
                .unwrap_or_default()
        ),
        Err(_) => "everything written since it was taken".into(),
    };
    let mut lines = vec![
        format!(
            "REPLACES the contents of {} with the backup taken {} (migration head {}).",
            env.target,
            entry.finished_at.format("%Y-%m-%d %H:%M:%S UTC"),
            entry.migration_head.as_deref().unwrap_or("none")
        ),
        format!("Lost: {loss}."),
    ];
    if maintenance {
        lines.push(
            "The maintenance_on hook runs first, maintenance_off after a restore that holds."
                .into(),
        );
    }
    if req.terminate_sessions {
        lines.push(match sessions.len() {
            0 => "Other sessions on the database are terminated first.".into(),
            n => format!(
                "{n} other session(s) are terminated first: {}",
                sessions
                    .iter()
                    .map(|s| format!("{} ({})", s.pid, s.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    for (what, reason) in &overrides {
        lines.push(format!("Override: {what} ({reason})."));
    }
    let confirmed = confirm(
        ctx,
        Needs::for_change(env, true),
        Ask {
            title: format!("Restore {} into {}", entry.file, env.target.dbname),
            lines,
            expect: None,
            scope: vec![entry.file.clone(), entry.sha256.clone()],
        },
        req.confirmation.as_ref(),
    )?;

    ctx.check_cancelled("the restore")?;
    confirmed.record(ctx);
    for (what, reason) in &overrides {
        ctx.record_override(what.clone(), reason);
    }
    ctx.note(format!("restoring {} loses {loss}", entry.file));
    ctx.emit(Event::Started {
        workflow: Workflow::Restore,
        what: format!("restore of {}", entry.file),
    });
    if maintenance
        && let Some(outcome) = super::hooks::if_configured(ctx, "maintenance_on", &[]).await?
        && !outcome.success()
    {
        let e = Error::runtime(
            format!(
                "hook maintenance_on ended: {}; nothing was restored",
                outcome.describe()
            ),
            "its output is above and in the journal; fix it, or restore without maintenance mode",
        );
        record_release(ctx, Workflow::Restore, Outcome::Failed, &e.cause, &[], &[]);
        return Err(e);
    }
    if maintenance && !req.terminate_sessions {
        // Maintenance mode closes the application's sessions, give or take a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline
            && !backup::other_sessions(&env.target).await?.is_empty()
        {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
    ctx.notify(&format!(
        "rollback started on {}: restoring {}",
        env.name, entry.file
    ))
    .await;
    let opts = RestoreOptions {
        cancel: ctx.cancel.clone(),
        terminate_sessions: req.terminate_sessions,
        checks: env.backup.restore_checks.clone(),
        jobs: req.jobs.max(1),
    };
    let restored = with_events(
        |e| ctx.emit(Event::Backup(e)),
        |tx| {
            let (target, path, opts) = (&env.target, &path, &opts);
            async move { backup::restore(target, path, opts, &tx).await }
        },
    )
    .await;
    let (checks, terminated, left_in_place) = match restored {
        Ok(r) => (r.checks, r.terminated, r.left_in_place),
        Err(RestoreFailed { error: e, left }) => {
            ctx.notify(&format!("rollback FAILED on {}: {}", env.name, e.cause))
                .await;
            let how = Outcome::of(&e);
            record_release(ctx, Workflow::Restore, how, &e.cause, &[], &[]);
            if maintenance {
                reopen_after_failure(ctx, left).await;
            }
            return Err(e);
        }
    };
    ctx.notify(&format!(
        "rollback finished on {}: {} restored",
        env.name, entry.file
    ))
    .await;

    let status = match MigrationsDir::load(&env.migrations_dir) {
        Ok(dir) => migrate::status(&env.target, &dir)
            .await
            .ok()
            .map(|(r, _)| r),
        Err(_) => None,
    };
    let pending_again: Vec<String> = status
        .as_ref()
        .map(|s| s.pending_names().iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    if !pending_again.is_empty() {
        ctx.note(format!(
            "after the restore, {} migration(s) are pending again: {}. The next deploy applies them \
             again: if one of them caused the incident, fix or remove it first",
            pending_again.len(),
            pending_again.join(", ")
        ));
    }
    if !left_in_place.is_empty() {
        ctx.warn(format!(
            "the restore left in place {} table(s) the backup did not have (made after it): {}. \
             pg_restore replaces what the backup holds only; a migration pending again that \
             creates them will fail: save what they hold and drop them, or resolve that migration",
            left_in_place.len(),
            left_in_place.join(", ")
        ));
    }
    let failed_checks = checks.iter().filter(|c| !c.ok).count();
    record_release(
        ctx,
        Workflow::Restore,
        Outcome::Ok,
        &format!(
            "{} restored; {} check(s), {failed_checks} failed; {} migration(s) pending again{}{}",
            entry.file,
            checks.len(),
            pending_again.len(),
            if left_in_place.is_empty() {
                String::new()
            } else {
                format!(
                    "; left in place, not in the backup: {}",
                    left_in_place.join(", ")
                )
            },
            if terminated.is_empty() {
                String::new()
            } else {
                format!(
                    "; terminated first: {}",
                    backup::describe_sessions(&terminated)
                )
            }
        ),
        &[],
        &[],
    );
    if maintenance
        && let Some(outcome) = super::hooks::if_configured(ctx, "maintenance_off", &[]).await?
        && !outcome.success()
    {
        return Err(Error::runtime(
            format!(
                "the restore succeeded, but hook maintenance_off ended: {}",
                outcome.describe()
            ),
            "its output is above and in the journal; take the application out of maintenance by hand",
        ));
    }
    Ok(RestoreReport {
        backup: entry,
        loss,
        checks,
        status,
        pending_again,
        left_in_place,
    })
}

fn has_maintenance_hooks(env: &Environment) -> bool {
    env.hooks.commands.contains_key("maintenance_on")
        && env.hooks.commands.contains_key("maintenance_off")
}

/// After a restore that did not finish: the application comes back only onto a database that
/// is as it was. The cancellation was the restore's, so the hook runs on a token of its own.
async fn reopen_after_failure(ctx: &Context, left: Left) {
    let stays = |why: &str| {
        ctx.warn(format!(
            "the application stays in maintenance mode: {why}; run the maintenance_off hook \
             yourself once the database is right"
        ))
    };
    match left {
        Left::AsItWas => {}
        Left::RollingBack => return stays("the restore's transaction is still rolling back"),
        Left::PartlyRestored => return stays("the database is partly restored"),
        Left::Restored => return stays("the restored database failed its checks"),
    }
    let after = Context {
        cancel: CancellationToken::new(),
        ..ctx.clone()
    };
    match super::hooks::if_configured(&after, "maintenance_off", &[]).await {
        Ok(None) => {}
        Ok(Some(o)) if o.success() => {}
        Ok(Some(o)) => stays(&format!(
            "its maintenance_off hook failed ({})",
            o.describe()
        )),
        Err(e) => stays(&format!(
            "its maintenance_off hook did not run: {}",
            e.cause
        )),
    }
}
