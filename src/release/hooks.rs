//! Running a configured hook: its output streamed as events, its run journaled, stopped with
//! everything it started when the work is cancelled. A hook that acts on the running
//! application (`code_rollback`, `restart`) is confirmed first (the database name typed on a
//! protected environment), whichever front end starts it.

use super::{Confirmation, Context, Event, Needs, Workflow, confirm};
use crate::error::{Ask, Error, Result};
use crate::events::with_events;
use crate::hooks::{HookContext, HookOutcome};
use crate::journal;

/// A hook run, with the operator's decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookRequest {
    pub name: String,
    /// Migration names handed to the hook in `PGDECK_MIGRATIONS`.
    pub migrations: Vec<String>,
    pub confirmation: Option<Confirmation>,
}

/// Hooks that change what runs in production (maintenance mode takes it offline).
const ACTS_ON_THE_APPLICATION: [&str; 4] = [
    "code_rollback",
    "restart",
    "maintenance_on",
    "maintenance_off",
];

/// Runs the hook the operator asked for. A hook that fails is an outcome, not an error: the
/// caller decides what its failure means.
pub async fn run_hook(ctx: &Context, req: &HookRequest) -> Result<HookOutcome> {
    let env = &ctx.env;
    let Some(command) = env.hooks.commands.get(&req.name) else {
        // The hooks room names the configured ones.
        return run(ctx, &req.name, &req.migrations).await;
    };
    let needs = if ACTS_ON_THE_APPLICATION.contains(&req.name.as_str()) {
        Needs::for_change(env, true)
    } else {
        Needs::Nothing
    };
    let confirmed = confirm(
        ctx,
        needs,
        Ask {
            title: format!("Run hook {} on {}", req.name, env.name),
            lines: vec![
                format!("Runs: {command}"),
                format!(
                    "(timeout {}; its output is kept in the journal)",
                    crate::units::human_duration(env.hooks.timeout)
                ),
            ],
            expect: None,
            scope: vec![req.name.clone(), command.clone()],
        },
        req.confirmation.as_ref(),
    )?;
    ctx.check_cancelled(&format!("hook {}", req.name))?;
    confirmed.record(ctx);
    ctx.emit(Event::Started {
        workflow: Workflow::Hook,
        what: format!("hook {}", req.name),
    });
    run(ctx, &req.name, &req.migrations).await
}

/// Runs `name` when the environment configures it.
pub(super) async fn if_configured(
    ctx: &Context,
    name: &str,
    migrations: &[String],
) -> Result<Option<HookOutcome>> {
    if !ctx.env.hooks.commands.contains_key(name) {
        return Ok(None);
    }
    run(ctx, name, migrations).await.map(Some)
}

async fn run(ctx: &Context, name: &str, migrations: &[String]) -> Result<HookOutcome> {
    let env = &ctx.env;
    let database = env.target.to_string();
    let hook_ctx = HookContext {
        environment: &env.name,
        database: &database,
        migrations,
    };
    if let Some(command) = env.hooks.commands.get(name) {
        ctx.emit(Event::HookStarted {
            name: name.to_owned(),
            command: command.clone(),
        });
    }
    let outcome = with_events(
        |line: String| {
            ctx.emit(Event::HookOutput {
                name: name.to_owned(),
                line,
            })
        },
        |tx| {
            let (settings, cancel, hook_ctx) = (&env.hooks, &ctx.cancel, &hook_ctx);
            async move { crate::hooks::run(settings, name, hook_ctx, Some(&tx), cancel).await }
        },
    )
    .await?;
    ctx.record(journal::Event::HookRan {
        name: outcome.name.clone(),
        command: outcome.command.clone(),
        exit_code: outcome.exit_code,
        timed_out: outcome.timed_out,
        duration_ms: outcome.duration_ms,
        output: outcome.output.clone(),
    });
    ctx.emit(Event::HookFinished(outcome.clone()));
    if outcome.cancelled {
        return Err(Error::cancelled(
            format!(
                "hook {name} cancelled after {:.1}s: it and everything it started were stopped",
                outcome.duration_ms as f64 / 1000.0
            ),
            "what it did before it was stopped is in its output",
        ));
    }
    Ok(outcome)
}
