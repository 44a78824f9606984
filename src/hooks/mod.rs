//! Hooks and notifications: the team's own shell commands for the moments of a release
//! (maintenance mode, code rollback, restart, smoke tests...), run with a timeout and their output
//! kept; and a Slack-compatible webhook told about deploys, alerts and rollbacks, retried with
//! backoff, never in the operator's way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::target::secret::Secret;

/// The moments a hook can be configured for.
pub const HOOKS: [&str; 8] = [
    "before_deploy",
    "after_deploy",
    "maintenance_on",
    "maintenance_off",
    "code_rollback",
    "restart",
    "smoke_test",
    "integration_tests",
];

/// The output kept per hook run (the tail, when there is more).
const MAX_OUTPUT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct HookSettings {
    /// Hook name -> shell command.
    pub commands: BTreeMap<String, String>,
    pub timeout: Duration,
    pub webhook: Option<Webhook>,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings {
            commands: BTreeMap::new(),
            timeout: Duration::from_secs(300),
            webhook: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Slack webhook URLs are credentials: never printed.
    pub url: Secret,
    pub retries: u32,
    pub backoff: Duration,
}

/// How a hook run ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HookOutcome {
    pub name: String,
    pub command: String,
    /// None when it was killed (timeout) or died from a signal.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Stopped by the operator (the console's cancel, SIGINT or SIGTERM to pgdeck).
    #[serde(default)]
    pub cancelled: bool,
    pub duration_ms: u64,
    /// stdout and stderr interleaved as they came; the tail if longer than 64 kB.
    pub output: String,
}

impl HookOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// "exit 0", "exit 3", "timed out", "cancelled" or "killed".
    pub fn describe(&self) -> String {
        if self.cancelled {
            return "cancelled".into();
        }
        crate::journal::hook_ending(self.exit_code, self.timed_out)
    }
}

/// What a hook is told about the release.
pub struct HookContext<'a> {
    pub environment: &'a str,
    /// Password redacted.
    pub database: &'a str,
    pub migrations: &'a [String],
}

/// Runs hook `name` with `sh -c`, streaming its output lines to `lines`. An unconfigured hook is
/// an input error naming the configured ones.
pub async fn run(
    settings: &HookSettings,
    name: &str,
    ctx: &HookContext<'_>,
    lines: Option<&UnboundedSender<String>>,
    cancel: &CancellationToken,
) -> Result<HookOutcome> {
    let command = settings.commands.get(name).ok_or_else(|| {
        let configured: Vec<&str> = settings.commands.keys().map(String::as_str).collect();
        Error::input(
            format!("no hook '{name}' configured"),
            if configured.is_empty() {
                "configure hooks under [environments.<env>.hooks] (see config/pgdeck.toml)".into()
            } else {
                format!("configured hooks: {}", configured.join(", "))
            },
        )
    })?;
    let started = Instant::now();
    let migrations = ctx.migrations.join(" ");
    // Its own process group, so a timeout stops everything it started.
    let crate::db::process::Running {
        output: mut written,
        process: mut child,
    } = crate::db::process::spawn_shell(
        command,
        &[
            ("PGDECK_ENV", ctx.environment),
            ("PGDECK_DATABASE", ctx.database),
            ("PGDECK_MIGRATIONS", &migrations),
            ("PGDECK_HOOK", name),
        ],
    )
    .map_err(|e| {
        Error::runtime(
            format!("cannot start hook {name}: {e}"),
            "check that sh exists and the command is right",
        )
    })?;
    let mut output = String::new();
    let deadline = tokio::time::sleep(settings.timeout);
    tokio::pin!(deadline);
    let mut timed_out = false;
    let mut cancelled = false;
    let mut open = true;
    let status = loop {
        tokio::select! {
            line = written.line(), if open => match line {
                Some(line) => {
                    if let Some(l) = lines {
                        let _ = l.send(line.text.clone());
                    }
                    output.push_str(&line.text);
                    output.push('\n');
                    if output.len() > 2 * MAX_OUTPUT {
                        output = tail(&output, MAX_OUTPUT);
                    }
                }
                None => open = false,
            },
            status = child.wait(), if !open => break status,
            _ = &mut deadline, if !timed_out => {
                timed_out = true;
                // Everything the hook started goes, not only the shell.
                break child.kill().await;
            }
            () = cancel.cancelled(), if !cancelled => {
                cancelled = true;
                break child.kill().await;
            }
        }
    };
    Ok(HookOutcome {
        name: name.to_owned(),
        command: command.clone(),
        exit_code: if timed_out || cancelled {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        cancelled,
        duration_ms: started.elapsed().as_millis() as u64,
        output: tail(&output, MAX_OUTPUT),
    })
}

fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[... earlier output cut]\n{}", &text[start..])
}

/// Posts `{"text": text}` to the webhook, retrying with doubling pauses. Without a webhook it
/// does nothing. The error says why it failed (never the URL); callers warn and go on.
pub async fn notify(settings: &HookSettings, text: &str) -> Result<()> {
    let Some(hook) = &settings.webhook else {
        return Ok(());
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::runtime(format!("webhook client: {e}"), "check the TLS set-up"))?;
    let body = serde_json::json!({ "text": crate::target::secret::scrub(text) });
    let mut pause = hook.backoff;
    let mut last = String::new();
    for attempt in 0..=hook.retries {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        let request = client
            .post(hook.url.expose())
            .header("content-type", "application/json")
            .body(body.to_string());
        match request.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("the webhook answered {}", r.status()),
            Err(e) => last = crate::health::http_cause(e),
        }
    }
    Err(Error::runtime(
        format!(
            "notification not delivered after {} attempt(s): {last}",
            hook.retries + 1
        ),
        "check the webhook URL variable; the release goes on without it",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(commands: &[(&str, &str)], timeout: Duration) -> HookSettings {
        HookSettings {
            commands: commands
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout,
            webhook: None,
        }
    }

    fn ctx() -> HookContext<'static> {
        HookContext {
            environment: "staging",
            database: "postgresql://app@db/app",
            migrations: &[],
        }
    }

    #[tokio::test]
    async fn a_hook_gets_the_release_context_and_its_output_and_status_are_kept() {
        let s = settings(
            &[(
                "smoke_test",
                "echo \"env=$PGDECK_ENV db=$PGDECK_DATABASE\"; echo oops >&2; exit 3",
            )],
            Duration::from_secs(10),
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = run(
            &s,
            "smoke_test",
            &ctx(),
            Some(&tx),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert!(!out.success() && !out.timed_out);
        assert!(
            out.output
                .contains("env=staging db=postgresql://app@db/app"),
            "{}",
            out.output
        );
        assert!(out.output.contains("oops"));
        assert!(rx.try_recv().is_ok(), "lines are streamed");
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_with_what_it_started() {
        let s = settings(
            &[("restart", "sleep 30 & sleep 30")],
            Duration::from_millis(300),
        );
        let t = Instant::now();
        let out = run(&s, "restart", &ctx(), None, &CancellationToken::new())
            .await
            .unwrap();
        assert!(out.timed_out && out.exit_code.is_none(), "{out:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_cancelled_hook_stops_with_what_it_started() {
        let s = settings(
            &[("restart", "sleep 30 & sleep 30")],
            Duration::from_secs(60),
        );
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.cancel();
        });
        let t = Instant::now();
        let out = run(&s, "restart", &ctx(), None, &cancel).await.unwrap();
        assert!(
            out.cancelled && !out.timed_out && out.exit_code.is_none(),
            "{out:?}"
        );
        assert_eq!(out.describe(), "cancelled");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_unconfigured_hook_names_the_configured_ones() {
        let s = settings(&[("restart", "true")], Duration::from_secs(1));
        let e = run(&s, "code_rollback", &ctx(), None, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            e.cause.contains("no hook 'code_rollback'") && e.hint.contains("restart"),
            "{e:?}"
        );
    }
}
