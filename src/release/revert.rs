//! Forward rollback (a migration written from `down.sql`, deployed under every guard of a
//! deploy), and the ledger operations that change what deploy will do: resolve and reset.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::deploy::{
    DeployReport, DeployRequest, Gates, Notices, execute, record_release, refuse_failed,
};
use super::{
    Confirmation, Context, Environment, Event, Needs, Workflow, confirm, direct_connection,
};
use crate::db;
use crate::error::{Ask, Error, Guard, Remedy, Result};
use crate::events::with_events;
use crate::journal::Outcome;
use crate::lint::facts::Change;
use crate::migrate::revert::Rollback;
use crate::migrate::{self, DeployOptions, MigrationsDir, Resolution};

/// A forward rollback of applied migrations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevertRequest {
    /// The migrations to undo (folder names).
    pub names: Vec<String>,
    /// Deploy the rollback migration at once, under these decisions; None only writes it.
    pub deploy: Option<DeployRequest>,
}

/// What a forward rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RevertReport {
    /// The rollback migration's folder.
    pub folder: PathBuf,
    pub name: String,
    /// What it deployed, when it was asked to.
    pub deployed: Option<DeployReport>,
}

/// Writes the forward rollback of `req.names` and, when asked, deploys it under the deploy's
/// guards. Before anything is written it refuses what a deploy would refuse, and while other
/// migrations are pending (the rollback's deploy would apply them too).
pub async fn revert(ctx: &Context, req: &RevertRequest) -> Result<RevertReport> {
    let spares = if req.deploy.is_some() {
        direct_connection(ctx, Workflow::Revert)?;
        super::primary::primary_session(ctx, Workflow::Revert).await?
    } else {
        db::Spares::default()
    };
    let env = &ctx.env;
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let status = migrate::status_with(&spares, &env.target, &dir).await?;
    let rollback = migrate::revert::prepare(&dir, &status, &req.names, Utc::now())?;
    let Some(deploy) = &req.deploy else {
        let folder = rollback.write()?;
        ctx.note(format!(
            "wrote {} (its down.sql re-applies what it undoes)",
            folder.display()
        ));
        return Ok(RevertReport {
            folder,
            name: rollback.name().to_owned(),
            deployed: None,
        });
    };
    refuse_failed(&status)?;
    let others: Vec<String> = status
        .pending_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    if !others.is_empty() {
        return Err(Error::guarded(
            Guard::OtherPending,
            format!(
                "a forward rollback now would also apply {} pending migration(s): {}",
                others.len(),
                others.join(", ")
            ),
            "deploy or remove them first, so the rollback deploys nothing but itself",
        )
        .with(Remedy::Status));
    }

    // The guards see the rollback as the one pending migration it will be, under a name without
    // the time it is written at: what they find (and what is acknowledged) stays the same from
    // one run of this workflow to the next.
    let mut candidate = rollback.migration.clone();
    candidate.name = rollback
        .name()
        .split_once('_')
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_else(|| rollback.name().to_owned());
    candidate.dir = dir.path.join(&candidate.name);
    let mut planned = dir.clone();
    let pending = vec![candidate.name.clone()];
    planned.migrations.push(candidate);
    let mut gates = Gates::evaluate(ctx, &planned, &pending, deploy).await?;
    gates.spares = spares;
    let confirmed = confirm(
        ctx,
        Needs::for_change(env, true),
        ask(env, &dir, &rollback, &req.names),
        deploy.confirmation.as_ref(),
    )?;
    if let Err(e) = gates
        .recheck(ctx, Workflow::Revert)
        .await
        .and_then(|()| ctx.check_cancelled(Workflow::Revert.name()))
    {
        confirmed.record(ctx);
        record_release(ctx, Workflow::Revert, Outcome::of(&e), &e.cause, &[], &[]);
        return Err(e);
    }

    // Written only now, and deployed exactly as confirmed; withdrawn if it is not deployed.
    let rollback = migrate::revert::prepare(&dir, &status, &req.names, Utc::now())?;
    let folder = rollback.write()?;
    ctx.note(format!(
        "wrote {} (its down.sql re-applies what it undoes)",
        folder.display()
    ));
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let names = req.names.join(", ");
    let notices = Notices {
        started: format!("rollback started on {}: reverting {names}", env.name),
        finished: |_, env: &Environment| format!("rollback finished on {}: reverted", env.name),
        failed: "rollback",
    };
    let deployed = match execute(
        ctx,
        Workflow::Revert,
        dir,
        vec![rollback.name().to_owned()],
        (gates, confirmed),
        deploy.lock_wait,
        notices,
    )
    .await
    {
        Ok(deployed) => deployed,
        Err(e) => {
            withdraw(ctx, &folder, rollback.name()).await;
            return Err(e);
        }
    };
    Ok(RevertReport {
        folder,
        name: rollback.name().to_owned(),
        deployed: Some(deployed),
    })
}

/// Removes a rollback migration that was written but never started: left on disk, the next
/// deploy would apply it with whatever else is pending by then. One the server has a record of
/// (failed part-way) stays, for `resolve`.
async fn withdraw(ctx: &Context, folder: &Path, name: &str) {
    let never_started = match MigrationsDir::load(&ctx.env.migrations_dir) {
        Ok(dir) => migrate::status(&ctx.env.target, &dir)
            .await
            .map(|(report, _)| report.pending_names().contains(&name)),
        Err(e) => Err(e),
    };
    match never_started {
        Ok(true) => match std::fs::remove_dir_all(folder) {
            Ok(()) => ctx.note(format!(
                "removed {}: it was not deployed",
                folder.display()
            )),
            Err(e) => ctx.warn(format!(
                "{} was not deployed and could not be removed ({e}): remove it before the next deploy",
                folder.display()
            )),
        },
        Ok(false) => {}
        Err(e) => ctx.warn(format!(
            "{} may not have been deployed ({}): check `status` before the next deploy",
            folder.display(),
            e.cause
        )),
    }
}

/// The confirmation of a forward rollback: the SQL it runs, and what it cannot bring back.
fn ask(env: &Environment, dir: &MigrationsDir, rollback: &Rollback, names: &[String]) -> Ask {
    const SHOWN: usize = 14;
    let undone: Vec<&str> = rollback.undoes.iter().map(|(n, _)| n.as_str()).collect();
    let mut lines = vec![format!(
        "Writes a migration from the down.sql of {} (newest first) and deploys it like any migration:",
        undone.join(", "),
    )];
    let sql = rollback.migration.sql();
    let body: Vec<&str> = sql
        .lines()
        .filter(|l| {
            !l.trim().is_empty()
                && !l.starts_with("-- Forward rollback written by")
                && !l.starts_with("-- It undoes")
        })
        .collect();
    lines.extend(body.iter().take(SHOWN).map(|l| format!("  | {l}")));
    if body.len() > SHOWN {
        lines.push(format!("  | … {} more line(s)", body.len() - SHOWN));
    }
    let mut lost = Vec::new();
    for (name, original) in &rollback.undoes {
        for change in crate::lint::data_losses(original) {
            lost.push(match change {
                Change::DropColumn { table, column } => format!(
                    "the data of column {column} of {table}, dropped by {name}: the down.sql can only add it back empty"
                ),
                Change::DropTable { table } => format!(
                    "the rows of table {table}, dropped by {name}: the down.sql can only create it empty"
                ),
                _ => continue,
            });
        }
    }
    for change in crate::lint::data_losses(sql) {
        lost.push(match change {
            Change::DropColumn { table, column } => {
                format!("the data in column {column} of {table}: this drops the column")
            }
            Change::DropTable { table } => {
                format!("the rows of table {table}: this drops the table")
            }
            _ => continue,
        });
    }
    if lost.is_empty() {
        lines.push("It drops no column or table of data.".into());
    } else {
        lines.push("It cannot bring back (a restore of a backup can):".into());
        lines.extend(lost.into_iter().map(|l| format!("  - {l}")));
    }
    // Bound to what the down.sql files say now, not to the moment it is written.
    let mut digest = Sha256::new();
    for name in names {
        if let Some(down) = dir.get(name).and_then(|m| m.down.as_deref()) {
            digest.update(name.as_bytes());
            digest.update(down.as_bytes());
        }
    }
    let mut scope = names.to_vec();
    scope.push(format!(
        "down.sql sha256 {}",
        &hex::encode(digest.finalize())[..16]
    ));
    Ask {
        title: format!(
            "Forward rollback of {} migration(s) on {}",
            undone.len(),
            env.target.dbname
        ),
        lines,
        expect: None,
        scope,
    }
}

/// Prisma's `migrate resolve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolveRequest {
    pub name: String,
    pub how: Resolution,
    pub confirmation: Option<Confirmation>,
    /// How long to wait for a deploy's migration lock (default: the environment's).
    pub lock_wait: Option<Duration>,
}

/// Drop and recreate the schema, then deploy everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResetRequest {
    pub confirmation: Option<Confirmation>,
    /// How long to wait for a deploy's migration lock (default: the environment's).
    pub lock_wait: Option<Duration>,
}

/// The engine's options for `resolve` and `reset`: the environment's deploy settings, the
/// request's lock wait, the workflow's cancel, the guard's sessions.
fn lock_options(ctx: &Context, lock_wait: Option<Duration>, spares: db::Spares) -> DeployOptions {
    let mut settings = ctx.env.deploy.clone();
    if let Some(wait) = lock_wait {
        settings.lock_wait = wait;
    }
    DeployOptions {
        cancel: ctx.cancel.clone(),
        spares: std::sync::Arc::new(spares),
        ..DeployOptions::new(settings)
    }
}

/// Records a failed (or unrecorded) migration as applied or rolled back: nothing on an
/// unprotected environment asks first, as with Prisma; a protected one needs the name typed.
pub async fn resolve(ctx: &Context, req: &ResolveRequest) -> Result<()> {
    direct_connection(ctx, Workflow::Resolve)?;
    let spares = super::primary::primary_session(ctx, Workflow::Resolve).await?;
    let env = &ctx.env;
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let title = match req.how {
        Resolution::Applied => format!("Record {} as applied in {}", req.name, env.target.dbname),
        Resolution::RolledBack => format!(
            "Record {} as rolled back in {}",
            req.name, env.target.dbname
        ),
    };
    let lines = vec![match req.how {
        Resolution::Applied => {
            "Only when its changes are in the database: deploy then treats it as done.".into()
        }
        Resolution::RolledBack => {
            "Only once its partial changes are undone (or were never made): deploy then runs it again."
                .into()
        }
    }];
    let confirmed = confirm(
        ctx,
        Needs::for_change(env, false),
        Ask {
            title: title.clone(),
            lines,
            expect: None,
            scope: vec![req.name.clone()],
        },
        req.confirmation.as_ref(),
    )?;
    ctx.check_cancelled("resolve")?;
    confirmed.record(ctx);
    ctx.emit(Event::Started {
        workflow: Workflow::Resolve,
        what: title.clone(),
    });
    let opts = lock_options(ctx, req.lock_wait, spares);
    let resolved = with_events(
        |e| ctx.deploy_event(e),
        |tx| {
            let (target, dir, opts) = (&env.target, &dir, &opts);
            async move { migrate::resolve(target, dir, &req.name, req.how, opts, &tx).await }
        },
    )
    .await;
    match resolved {
        Ok(()) => {
            record_release(ctx, Workflow::Resolve, Outcome::Ok, &title, &[], &[]);
            Ok(())
        }
        Err(e) => {
            record_release(ctx, Workflow::Resolve, Outcome::Failed, &e.cause, &[], &[]);
            Err(e)
        }
    }
}

/// Drops and recreates the schema, then deploys everything. Never on a protected environment,
/// whatever is confirmed.
pub async fn reset(ctx: &Context, req: &ResetRequest) -> Result<DeployReport> {
    direct_connection(ctx, Workflow::Reset)?;
    let spares = super::primary::primary_session(ctx, Workflow::Reset).await?;
    let env = &ctx.env;
    if env.protected {
        return Err(Error::guarded(
            Guard::Protected,
            "reset drops every object in the schema and is refused on a protected environment",
            "reset a development or sandbox database instead",
        )
        .with(Remedy::OtherEnvironment));
    }
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let confirmed = confirm(
        ctx,
        Needs::Yes,
        Ask {
            title: format!(
                "Drop every object in schema \"{}\" of {} and redeploy",
                env.target.schema, env.target.dbname
            ),
            lines: vec![format!(
                "Then applies all {} migration(s) of {}.",
                dir.migrations.len(),
                dir.path.display()
            )],
            expect: None,
            scope: Vec::new(),
        },
        req.confirmation.as_ref(),
    )?;
    ctx.check_cancelled("reset")?;
    confirmed.record(ctx);
    ctx.emit(Event::Started {
        workflow: Workflow::Reset,
        what: format!("reset of schema \"{}\"", env.target.schema),
    });
    let opts = lock_options(ctx, req.lock_wait, spares);
    let result = with_events(
        |e| ctx.deploy_event(e),
        |tx| {
            let (target, dir, opts) = (&env.target, &dir, &opts);
            async move { migrate::reset(target, dir, opts, &tx).await }
        },
    )
    .await;
    match result {
        Ok(outcome) => {
            let applied: Vec<String> = outcome.applied.iter().map(|a| a.name.clone()).collect();
            record_release(
                ctx,
                Workflow::Reset,
                Outcome::Ok,
                &format!("schema reset; {} migration(s) applied", applied.len()),
                &applied,
                &[],
            );
            Ok(DeployReport {
                applied: outcome.applied,
                ..DeployReport::default()
            })
        }
        Err(e) => {
            record_release(ctx, Workflow::Reset, Outcome::Failed, &e.cause, &[], &[]);
            Err(e)
        }
    }
}
