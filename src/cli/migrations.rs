//! Headless migration commands: status, deploy, revert, resolve, new, reset. Deploy, revert,
//! resolve and reset are the release room's workflows: the flags become their requests, their
//! events are printed, and a missing confirmation is asked for on a terminal.

use serde_json::json;

use super::output::{self, Printer};
use super::{DeployArgs, Job, ResetArgs, ResolveArgs, RevertArgs, exit};
use crate::error::Result;
use crate::migrate::{self, MigrationsDir, Resolution, Verdict};
use crate::release::{
    self, DeployReport, DeployRequest, Environment, ResetRequest, ResolveRequest, RevertRequest,
};

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
            "config": env.source,
            "connection": env.connection.as_ref().map(|c| {
                let mut v = json!(c);
                v["description"] = json!(output::connection_words(c));
                v
            }),
            "migrations_dir": {
                "path": env.migrations_dir,
                "source": env.migrations_source,
                "description": output::folder_words(&env.migrations_source),
            },
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

/// `pgdeck status --all-environments`: every environment's status side by side. The exit
/// code is the worst over them all: failed, then drift, then an environment that could not be
/// read, then pending.
pub async fn status_matrix(candidates: Vec<release::Candidate>, json: bool) -> Result<u8> {
    let matrix = release::status_matrix(candidates).await?;
    let code = matrix_exit_code(matrix.overall());
    if json {
        output::json(&output::matrix_json(&matrix, code));
    } else {
        output::stdout(output::matrix_table(&matrix, output::width()).trim_end());
    }
    Ok(code)
}

pub(super) fn matrix_exit_code(overall: release::Overall) -> u8 {
    match overall {
        release::Overall::UpToDate => exit::OK,
        release::Overall::Pending => exit::PENDING,
        release::Overall::Incomplete => exit::RUNTIME,
        release::Overall::Drift => exit::DRIFT,
        release::Overall::Failed => exit::FAILED,
    }
}

/// The deploy request the flags describe (without its confirmation).
pub(super) fn deploy_request(args: &DeployArgs) -> DeployRequest {
    DeployRequest {
        confirmation: None,
        acknowledgements: args.allow.allows(),
        without_backup: args.without_backup.clone(),
        foreign_backup: args.accept_foreign_backup.clone(),
        lock_wait: args.lock.wait(),
    }
}

pub async fn deploy(job: &Job, args: &DeployArgs, json: bool) -> Result<u8> {
    let env = &job.env;
    let request = deploy_request(args);
    let report = output::confirmed(
        json,
        output::given(&args.confirm),
        &job.cancel,
        Printer::new(json),
        |confirmation, tx| {
            let req = DeployRequest {
                confirmation,
                ..request.clone()
            };
            let ctx = job.context(tx);
            async move { release::deploy(&ctx, &req).await }
        },
    )
    .await?;
    finish_deploy(env, &report, json);
    Ok(exit::OK)
}

fn finish_deploy(env: &Environment, report: &DeployReport, json: bool) {
    if json {
        output::json(&json!({
            "ok": true,
            "environment": env.name,
            "database": env.target.to_string(),
            "applied": report.applied,
            "backup": report.backup,
            "restore_point": report.restore_point,
        }));
    } else if report.applied.is_empty() {
        output::stdout(&format!("nothing to deploy: {} is up to date", env.target));
    } else {
        output::stdout(&format!(
            "applied {} migration(s) to {}: {}",
            report.applied.len(),
            env.target,
            report.applied_names()
        ));
        if let Some(point) = &report.restore_point {
            output::stdout(&format!(
                "  to recover to just before it: restore point {} ({})",
                point.name, point.lsn
            ));
        }
    }
}

pub async fn resolve(job: &Job, args: &ResolveArgs, json: bool) -> Result<u8> {
    let (name, how) = match (&args.applied, &args.rolled_back) {
        (Some(n), _) => (n.clone(), Resolution::Applied),
        (None, Some(n)) => (n.clone(), Resolution::RolledBack),
        // clap's argument group guarantees one of the two.
        (None, None) => unreachable!("clap requires --applied or --rolled-back"),
    };
    output::confirmed(
        json,
        output::given(&args.confirm),
        &job.cancel,
        Printer::new(json),
        |confirmation, tx| {
            let req = ResolveRequest {
                name: name.clone(),
                how,
                confirmation,
                lock_wait: args.lock.wait(),
            };
            let ctx = job.context(tx);
            async move { release::resolve(&ctx, &req).await }
        },
    )
    .await?;
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

pub async fn reset(job: &Job, args: &ResetArgs, json: bool) -> Result<u8> {
    let report = output::confirmed(
        json,
        output::given(&args.confirm),
        &job.cancel,
        Printer::new(json),
        |confirmation, tx| {
            let req = ResetRequest {
                confirmation,
                lock_wait: args.lock.wait(),
            };
            let ctx = job.context(tx);
            async move { release::reset(&ctx, &req).await }
        },
    )
    .await?;
    finish_deploy(&job.env, &report, json);
    Ok(exit::OK)
}

/// `pgdeck revert NAME...`: writes the forward rollback and shows its plan; with --deploy,
/// deploys it under the usual guards.
pub async fn revert(job: &Job, args: &RevertArgs, json: bool) -> Result<u8> {
    let env = &job.env;
    if !args.deploy {
        let req = RevertRequest {
            names: args.names.clone(),
            deploy: None,
        };
        let mut printer = Printer::live(json);
        crate::events::with_events(
            |e| printer.take(e),
            |tx| {
                let ctx = job.context(tx);
                let req = &req;
                async move { release::revert(&ctx, req).await }
            },
        )
        .await?;
        let plan = super::lint::PlanArgs {
            allow: args.deploy_args.allow.clone(),
            rehearse: false,
            scratch: super::verify::ScratchArgs { scratch_url: None },
        };
        let code = super::lint::plan(job, &plan, json).await?;
        if !json {
            output::stderr(
                "review the plan, then run `pgdeck deploy` (or revert again with --deploy)",
            );
        }
        return Ok(code);
    }
    let request = deploy_request(&args.deploy_args);
    let report = output::confirmed(
        json,
        output::given(&args.deploy_args.confirm),
        &job.cancel,
        Printer::new(json),
        |confirmation, tx| {
            let req = RevertRequest {
                names: args.names.clone(),
                deploy: Some(DeployRequest {
                    confirmation,
                    ..request.clone()
                }),
            };
            let ctx = job.context(tx);
            async move { release::revert(&ctx, &req).await }
        },
    )
    .await?;
    finish_deploy(env, &report.deployed.unwrap_or_default(), json);
    Ok(exit::OK)
}
