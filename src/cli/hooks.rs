//! `pgdeck hooks list` and `pgdeck hooks run NAME`: the environment's hooks, headless.

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{self, Printer};
use super::{ConfirmArgs, Job, exit};
use crate::error::Result;
use crate::release::{self, HookRequest};

#[derive(Debug, Clone, Args)]
pub struct HooksArgs {
    #[command(subcommand)]
    pub action: HooksAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum HooksAction {
    /// The configured hooks and the webhook
    List,
    /// Run one hook now (output streamed and journaled; exit 1 when it fails)
    Run {
        /// before_deploy, after_deploy, maintenance_on, maintenance_off, code_rollback, restart,
        /// smoke_test or integration_tests
        name: String,
        /// Migration names handed to the hook in PGDECK_MIGRATIONS
        #[arg(long = "migration", value_name = "NAME", id = "hook_migration")]
        migration_names: Vec<String>,
        #[command(flatten)]
        confirm: ConfirmArgs,
    },
}

pub async fn run(job: &Job, args: &HooksArgs, json: bool) -> Result<u8> {
    let env = &job.env;
    match &args.action {
        HooksAction::List => {
            if json {
                output::json(&json!({
                    "ok": true,
                    "hooks": env.hooks.commands,
                    "timeout_seconds": env.hooks.timeout.as_secs(),
                    "webhook": env.hooks.webhook.is_some(),
                }));
            } else {
                for name in crate::hooks::HOOKS {
                    let command = env
                        .hooks
                        .commands
                        .get(name)
                        .map(String::as_str)
                        .unwrap_or("-");
                    output::stdout(&format!("{name:<18} {command}"));
                }
                output::stdout(&format!(
                    "timeout {}; webhook {}",
                    humantime::format_duration(env.hooks.timeout),
                    if env.hooks.webhook.is_some() {
                        "configured"
                    } else {
                        "not configured"
                    }
                ));
            }
            Ok(exit::OK)
        }
        HooksAction::Run {
            name,
            migration_names,
            confirm,
        } => {
            let outcome = output::confirmed(
                json,
                output::given(confirm),
                &job.cancel,
                Printer::new(json),
                |confirmation, tx| {
                    let req = HookRequest {
                        name: name.clone(),
                        migrations: migration_names.clone(),
                        confirmation,
                    };
                    let ctx = job.context(tx);
                    async move { release::run_hook(&ctx, &req).await }
                },
            )
            .await?;
            if json {
                output::json(&json!({ "ok": outcome.success(), "hook": outcome }));
            }
            Ok(if outcome.success() {
                exit::OK
            } else {
                exit::RUNTIME
            })
        }
    }
}
