//! Headless migration commands: status, deploy, resolve, new, reset.

use std::time::Duration;

use serde_json::json;

use super::lint::AllowArgs;
use super::output;
use super::{ConfirmArgs, DeployArgs, ResolveArgs, RevertArgs, exit};
use crate::config::Environment;
use crate::error::{Error, Result};
use crate::lint::plan::Plan;
use crate::migrate::{self, DeployOptions, DeployOutcome, MigrationsDir, Resolution, Verdict};

pub async fn status(env: &Environment, json: bool) -> Result<u8> {
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (report, version) = migrate::status(&env.target, &dir).await?;
    let verdict = report.verdict();
    if json {
        output::json(&json!({
            "ok": true,
            "environment": env.name,
            "database": env.target.to_string(),
            "server_version": version,
            "verdict": verdict,
            "ledger_exists": report.ledger_exists,
            "migrations": report.migrations,
        }));
    } else {
        output::stdout(output::status_table(env, &report, &version).trim_end());
    }
    Ok(match verdict {
        Verdict::UpToDate => exit::OK,
        Verdict::Pending => exit::PENDING,
        Verdict::Drift => exit::DRIFT,
        Verdict::Failed => exit::FAILED,
    })
}

pub async fn deploy(env: &Environment, args: &DeployArgs, json: bool) -> Result<u8> {
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (report, _) = migrate::status(&env.target, &dir).await?;
    let pending = report.pending_names();
    if pending.is_empty() && report.verdict() != Verdict::Failed {
        finish_deploy(env, &DeployOutcome::default(), json);
        return Ok(exit::OK);
    }
    if env.protected && !pending.is_empty() {
        backup_gate(env, args.without_backup.as_deref())?;
        gate(env, &dir, &pending, &args.allow).await?;
    }
    if !pending.is_empty() {
        output::confirm(
            env,
            &format!(
                "apply {} pending migration(s) to {}",
                pending.len(),
                env.target.dbname
            ),
            &args.confirm,
        )?;
    }
    let mut settings = env.deploy.clone();
    if let Some(secs) = args.lock_wait {
        settings.lock_wait = Duration::from_secs(secs);
    }
    let names: Vec<String> = pending.iter().map(|n| n.to_string()).collect();
    run_hook_if_configured(env, "before_deploy", &names, true).await?;
    output::notify(
        env,
        &format!(
            "deploy started on {} ({}): {}",
            env.name,
            env.target.dbname,
            names.join(", ")
        ),
    )
    .await;
    let outcome = output::with_progress(json, |tx| async move {
        migrate::deploy(&env.target, &dir, &DeployOptions::new(settings), &tx).await
    })
    .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            output::notify(env, &format!("deploy FAILED on {}: {}", env.name, e.cause)).await;
            return Err(e);
        }
    };
    output::notify(
        env,
        &format!(
            "deploy finished on {}: {} migration(s) applied",
            env.name,
            outcome.applied.len()
        ),
    )
    .await;
    finish_deploy(env, &outcome, json);
    let applied: Vec<String> = outcome.applied.iter().map(|a| a.name.clone()).collect();
    run_hook_if_configured(env, "after_deploy", &applied, false).await?;
    Ok(exit::OK)
}

/// Runs a hook when the environment configures it. A failing `before_*` hook stops what it
/// guards; a failing `after_*` hook is reported as an error once the work is done.
pub(super) async fn run_hook_if_configured(
    env: &Environment,
    name: &str,
    migrations: &[String],
    before: bool,
) -> Result<()> {
    if !env.hooks.commands.contains_key(name) {
        return Ok(());
    }
    let outcome = output::run_hook(env, name, migrations).await?;
    if outcome.success() {
        return Ok(());
    }
    let how = format!("ended: {}", outcome.describe());
    Err(Error::runtime(
        if before {
            format!("hook {name} {how}; nothing was deployed")
        } else {
            format!("the deploy succeeded, but hook {name} {how}")
        },
        "its output is above and in the journal; fix it, or run it by hand with `pgdeck hooks run NAME`",
    ))
}

/// A protected environment deploys only with a verified backup of the database younger than
/// `backup_max_age`, unless the operator overrides it with a reason.
fn backup_gate(env: &Environment, without_backup: Option<&str>) -> Result<()> {
    let found = crate::backup::recent_verified(
        &env.backup.dir,
        &env.target.dbname,
        env.backup.max_age,
        chrono::Utc::now(),
    )?;
    match (found, without_backup) {
        (Ok(entry), _) => {
            output::stderr(&format!("verified backup: {}", entry.file));
            Ok(())
        }
        (Err(why), Some(reason)) if !reason.trim().is_empty() => {
            output::record_override(
                env,
                &format!("deploy without a recent verified backup ({why})"),
                reason,
            );
            Ok(())
        }
        (Err(why), _) => Err(Error::refused(
            format!(
                "deploy to protected environment '{}' refused: {why}",
                env.name
            ),
            "run `pgdeck backup create` then `pgdeck backup verify`; or, to go ahead anyway, \
             --without-backup \"<reason>\"",
        )),
    }
}

/// A protected environment deploys only when every DANGEROUS finding is acknowledged.
async fn gate(
    env: &Environment,
    dir: &MigrationsDir,
    pending: &[&str],
    allow: &AllowArgs,
) -> Result<()> {
    let allows = allow.allows();
    let plan = Plan::build(Some(&env.target), dir, pending, &env.lint, &allows, true).await;
    let open = plan.unacknowledged_dangerous();
    if !open.is_empty() {
        return Err(Error::refused(
            format!(
                "deploy to protected environment '{}' refused: {} DANGEROUS finding(s) not acknowledged: {}",
                env.name,
                open.len(),
                open.join(", ")
            ),
            "`pgdeck plan` shows each with its expand/contract alternative; to go ahead, acknowledge it with \
             `-- pgdeck:allow <rule> <reason>` above the statement, or --allow <rule> --reason <text>",
        ));
    }
    for a in &allows {
        output::stderr(&format!("acknowledged by --allow {}: {}", a.rule, a.reason));
    }
    if !allows.is_empty() {
        let rules: Vec<&str> = allows.iter().map(|a| a.rule.as_str()).collect();
        output::record_override(
            env,
            &format!("deploy with --allow {}", rules.join(", ")),
            &allows[0].reason,
        );
    }
    Ok(())
}

fn finish_deploy(env: &Environment, outcome: &DeployOutcome, json: bool) {
    if json {
        output::json(&json!({
            "ok": true,
            "environment": env.name,
            "database": env.target.to_string(),
            "applied": outcome.applied,
        }));
    } else if outcome.applied.is_empty() {
        output::stdout(&format!("nothing to deploy: {} is up to date", env.target));
    } else {
        output::stdout(&format!(
            "applied {} migration(s) to {}: {}",
            outcome.applied.len(),
            env.target,
            outcome.applied_names()
        ));
    }
}

pub async fn resolve(env: &Environment, args: &ResolveArgs, json: bool) -> Result<u8> {
    let (name, how) = match (&args.applied, &args.rolled_back) {
        (Some(n), _) => (n.as_str(), Resolution::Applied),
        (None, Some(n)) => (n.as_str(), Resolution::RolledBack),
        // clap's argument group guarantees one of the two.
        (None, None) => unreachable!("clap requires --applied or --rolled-back"),
    };
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let what = match how {
        Resolution::Applied => format!("record {name} as applied in {}", env.target.dbname),
        Resolution::RolledBack => format!("record {name} as rolled back in {}", env.target.dbname),
    };
    output::confirm(env, &what, &args.confirm)?;
    migrate::resolve(&env.target, &dir, name, how).await?;
    let state = match how {
        Resolution::Applied => "applied",
        Resolution::RolledBack => "rolled_back",
    };
    if json {
        output::json(&json!({ "ok": true, "migration": name, "recorded_as": state }));
    } else {
        output::stdout(&format!("recorded {name} as {}", state.replace('_', " ")));
    }
    Ok(exit::OK)
}

pub fn new(env: &Environment, name: &str, json: bool) -> Result<u8> {
    let folder = migrate::folder::create(&env.migrations_dir, name, chrono::Utc::now())?;
    if json {
        output::json(&json!({
            "ok": true,
            "folder": folder,
            "migration_sql": folder.join("migration.sql"),
            "down_sql": folder.join("down.sql"),
        }));
    } else {
        output::stdout(&format!(
            "created {}\n  write the change in migration.sql and how to undo it in down.sql",
            folder.display()
        ));
    }
    Ok(exit::OK)
}

pub async fn reset(env: &Environment, args: &ConfirmArgs, json: bool) -> Result<u8> {
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    if !env.protected {
        output::confirm(
            env,
            &format!(
                "DROP every object in schema \"{}\" of {} and redeploy",
                env.target.schema, env.target.dbname
            ),
            args,
        )?;
    }
    let settings = env.deploy.clone();
    let outcome = output::with_progress(json, |tx| async move {
        migrate::reset(
            &env.target,
            env.protected,
            &dir,
            &DeployOptions::new(settings),
            &tx,
        )
        .await
    })
    .await?;
    finish_deploy(env, &outcome, json);
    Ok(exit::OK)
}

/// `pgdeck revert NAME...`: writes the forward rollback, shows the plan, deploys with --deploy.
pub async fn revert(env: &Environment, args: &RevertArgs, json: bool) -> Result<u8> {
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (report, _) = migrate::status(&env.target, &dir).await?;
    let folder = migrate::revert::write_rollback(&dir, &report, &args.names, chrono::Utc::now())?;
    output::stderr(&format!(
        "wrote {} (its down.sql re-applies what it undoes)",
        folder.display()
    ));
    if !args.deploy {
        let code = super::lint::plan(env, &args.deploy_args.allow, json).await?;
        if !json {
            output::stderr(
                "review the plan, then run `pgdeck deploy` (or revert again with --deploy)",
            );
        }
        return Ok(code);
    }
    output::notify(
        env,
        &format!(
            "rollback started on {}: reverting {}",
            env.name,
            args.names.join(", ")
        ),
    )
    .await;
    let result = deploy(env, &args.deploy_args, json).await;
    let text = match &result {
        Ok(_) => format!(
            "rollback finished on {}: {} reverted",
            env.name,
            args.names.join(", ")
        ),
        Err(e) => format!("rollback FAILED on {}: {}", env.name, e.cause),
    };
    output::notify(env, &text).await;
    result
}
