//! Printing: errors as cause + hint, the status table, deploy progress, and confirmations.
//! Everything that leaves the process goes through [`scrub`] first.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use chrono::{DateTime, Utc};

use super::{ConfirmArgs, exit};
use crate::config::Environment;
use crate::config::secret::scrub;
use crate::error::{Error, Result};
use crate::migrate::{DeployEvent, MigrationState, StatusReport};

pub fn error(e: &Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {}", scrub(&e.cause));
    if !e.hint.is_empty() {
        let _ = writeln!(err, "hint: {}", scrub(&e.hint));
    }
}

pub fn error_json(e: &Error) {
    let v = serde_json::json!({
        "ok": false,
        "error": scrub(&e.cause),
        "hint": scrub(&e.hint),
        "exit_code": super::exit_code(e),
    });
    println!("{}", scrub(&v.to_string()));
}

pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", scrub(text));
}

pub fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", scrub(text));
}

pub fn json(value: &serde_json::Value) {
    stdout(&serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Clap's own rendering is several lines; keep its first line as the cause and point at --help.
pub fn clap_error(e: clap::Error) -> u8 {
    use clap::error::ErrorKind as K;
    if matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
            exit::USAGE
        } else {
            exit::OK
        };
    }
    let rendered = e.render().to_string();
    let mut lines = rendered.lines().filter(|l| !l.trim().is_empty());
    let mut first = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned();
    // "the following required arguments were not provided:" is followed by the arguments.
    if first.ends_with(':') {
        let missing: Vec<&str> = lines
            .take_while(|l| l.starts_with("  "))
            .map(str::trim)
            .collect();
        first = format!("{} {}", first, missing.join(", "));
    }
    let tip = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("tip: "))
        .map(|t| format!("{t}; "))
        .unwrap_or_default();
    error(&Error::input(
        first,
        format!("{tip}run `pgdeck --help` for usage"),
    ));
    exit::USAGE
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The human status table.
pub fn status_table(env: &Environment, report: &StatusReport, server_version: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "environment  {}{}\n",
        env.name,
        if env.protected { " (protected)" } else { "" }
    ));
    out.push_str(&format!(
        "database     {} (PostgreSQL {server_version})\n",
        env.target
    ));
    out.push_str(&format!(
        "migrations   {}\n\n",
        env.migrations_dir.display()
    ));
    if report.migrations.is_empty() {
        out.push_str("no migrations yet: create one with `pgdeck new NAME`\n");
        return out;
    }
    let width = report
        .migrations
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(9)
        .max(9);
    out.push_str(&format!(
        "  {:<16} {:<width$}  DETAIL\n",
        "STATE", "MIGRATION"
    ));
    for m in &report.migrations {
        let (state, detail) = match &m.state {
            MigrationState::Applied {
                applied_at,
                duration_ms,
            } => (
                "applied",
                format!("{} ({duration_ms} ms)", timestamp(*applied_at)),
            ),
            MigrationState::Pending => ("pending", String::new()),
            MigrationState::RolledBack {
                rolled_back_at,
                logs,
            } => (
                "rolled back",
                format!(
                    "pending again; failed attempt at {}{}",
                    timestamp(*rolled_back_at),
                    first_error(logs)
                ),
            ),
            MigrationState::Failed { started_at, logs } => (
                "FAILED",
                format!("started {}{}", timestamp(*started_at), first_error(logs)),
            ),
            MigrationState::Edited { applied_at, .. } => (
                "EDITED",
                format!(
                    "migration.sql changed after it was applied at {}",
                    timestamp(*applied_at)
                ),
            ),
            MigrationState::MissingLocally { started_at, .. } => (
                "MISSING LOCALLY",
                format!(
                    "in the database since {}, not in the folder",
                    timestamp(*started_at)
                ),
            ),
        };
        out.push_str(&format!("  {state:<16} {:<width$}  {detail}\n", m.name));
    }
    let n = |f: fn(&MigrationState) -> bool| report.count(f);
    out.push_str(&format!(
        "\n{} migrations: {} applied, {} pending, {} failed, {} edited, {} missing locally\n",
        report.migrations.len(),
        n(|s| matches!(
            s,
            MigrationState::Applied { .. } | MigrationState::Edited { .. }
        )),
        n(|s| matches!(
            s,
            MigrationState::Pending | MigrationState::RolledBack { .. }
        )),
        n(|s| matches!(s, MigrationState::Failed { .. })),
        n(|s| matches!(s, MigrationState::Edited { .. })),
        n(|s| matches!(s, MigrationState::MissingLocally { .. })),
    ));
    for m in &report.migrations {
        if let MigrationState::Failed {
            logs: Some(logs), ..
        } = &m.state
        {
            out.push_str(&format!("\nlogs of failed migration {}:\n", m.name));
            for line in logs.lines() {
                out.push_str(&format!("  | {line}\n"));
            }
        }
    }
    out
}

fn first_error(logs: &Option<String>) -> String {
    logs.as_deref()
        .and_then(|l| l.lines().find_map(|line| line.strip_prefix("ERROR: ")))
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

/// One line of deploy progress for a human, or a JSON line.
pub fn deploy_event(event: &DeployEvent, json: bool) {
    if json {
        stderr(&serde_json::to_string(event).unwrap_or_default());
        return;
    }
    let line = match event {
        DeployEvent::WaitingForLock { holder: Some(h) } => {
            format!("waiting for the migration lock held by {h}")
        }
        DeployEvent::WaitingForLock { holder: None } => "waiting for the migration lock".into(),
        DeployEvent::LockAcquired { waited_ms } => format!(
            "got the migration lock after {:.1}s",
            *waited_ms as f64 / 1000.0
        ),
        DeployEvent::LedgerCreated => "created _prisma_migrations".into(),
        DeployEvent::EditedAfterApply { name } => {
            format!(
                "warning: {name} was edited after it was applied; the change will not be deployed"
            )
        }
        DeployEvent::Pending { .. } => return,
        DeployEvent::MigrationStarted {
            name,
            index,
            total,
            transactional,
            statements,
        } => format!(
            "[{index}/{total}] {name} ({}, {statements} statement{})",
            if *transactional {
                "one transaction"
            } else {
                "no transaction: statement by statement"
            },
            if *statements == 1 { "" } else { "s" }
        ),
        DeployEvent::StatementStarted {
            index,
            total,
            line,
            preview,
            ..
        } => {
            format!("      {index}/{total} line {line}: {preview}")
        }
        DeployEvent::LockTimeout {
            name,
            attempt,
            attempts,
            retry_in_ms,
        } => format!(
            "      lock_timeout hit on {name} (attempt {attempt} of {attempts}); retrying in {:.1}s",
            *retry_in_ms as f64 / 1000.0
        ),
        DeployEvent::MigrationApplied { duration_ms, .. } => {
            format!("      applied in {duration_ms} ms")
        }
        DeployEvent::MigrationFailed { name, .. } => format!("      {name} FAILED"),
    };
    stderr(&line);
}

/// Asks before a change. A protected environment needs the database name typed (or `--confirm
/// DBNAME`); elsewhere a y/N question, or `--yes` when there is no terminal to ask on.
pub fn confirm(env: &Environment, what: &str, args: &ConfirmArgs) -> Result<()> {
    let db = env.target.dbname.as_str();
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if env.protected {
        if let Some(typed) = &args.confirm {
            return if typed == db {
                Ok(())
            } else {
                Err(Error::refused(
                    format!(
                        "--confirm '{typed}' does not match the database '{db}' of protected environment '{}'",
                        env.name
                    ),
                    format!("pass --confirm {db} to {what}"),
                ))
            };
        }
        if !interactive {
            return Err(Error::refused(
                format!("environment '{}' is protected; about to {what}", env.name),
                format!("confirm by naming the database: --confirm {db}"),
            ));
        }
        let answer = ask(&format!(
            "environment '{}' is PROTECTED. About to {what}.\nType the database name ({db}) to continue: ",
            env.name
        ))?;
        return if answer == db {
            Ok(())
        } else {
            Err(Error::refused(
                "confirmation did not match the database name; nothing was done",
                "type the name exactly",
            ))
        };
    }
    if args.yes {
        return Ok(());
    }
    if !interactive {
        return Err(Error::refused(
            format!("about to {what}, and there is no terminal to ask for confirmation"),
            "pass --yes to confirm in scripts",
        ));
    }
    let answer = ask(&format!("About to {what}. Continue? [y/N] "))?;
    if matches!(answer.as_str(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::refused(
            "not confirmed; nothing was done",
            "answer y to go ahead, or pass --yes",
        ))
    }
}

fn ask(prompt: &str) -> Result<String> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{}", scrub(prompt));
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        Error::runtime(
            format!("cannot read the answer: {e}"),
            "answer on the terminal",
        )
    })?;
    Ok(line.trim().to_owned())
}

/// Runs a core operation while its deploy progress events are printed as they arrive.
pub async fn with_progress<F, Fut, T>(json: bool, op: F) -> Result<T>
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<DeployEvent>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    with_events(move |event: DeployEvent| deploy_event(&event, json), op).await
}

/// Runs a core operation while `print` takes each of its progress events as it arrives.
pub async fn with_events<E, P, F, Fut, T>(print: P, op: F) -> Result<T>
where
    P: FnMut(E),
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<E>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    crate::events::with_events(print, op).await
}

/// Prints an override and records it in the journal with its reason.
pub fn record_override(env: &Environment, what: &str, reason: &str) {
    stderr(&format!("override: {what}: {reason}"));
    if let Err(e) = crate::journal::record_override(
        &crate::journal::default_dir(),
        &env.name,
        &env.target.to_string(),
        what,
        reason,
    ) {
        stderr(&format!(
            "warning: the override was not journaled: {}",
            e.cause
        ));
    }
}

/// Tells the team through the webhook, if one is configured; a failure is a warning, never an
/// error: the release goes on.
pub async fn notify(env: &Environment, text: &str) {
    if let Err(e) = crate::hooks::notify(&env.hooks, text).await {
        stderr(&format!("warning: {}", e.cause));
    }
}

/// Runs a configured hook with its output streamed to stderr and journaled. Returns the outcome.
pub async fn run_hook(
    env: &Environment,
    name: &str,
    migrations: &[String],
) -> Result<crate::hooks::HookOutcome> {
    let database = env.target.to_string();
    let ctx = crate::hooks::HookContext {
        environment: &env.name,
        database: &database,
        migrations,
    };
    stderr(&format!(
        "hook {name}: {}",
        env.hooks
            .commands
            .get(name)
            .map(String::as_str)
            .unwrap_or("")
    ));
    let outcome = with_events(
        |line: String| stderr(&format!("  | {line}")),
        |tx| async move { crate::hooks::run(&env.hooks, name, &ctx, Some(&tx)).await },
    )
    .await?;
    if let Err(e) = crate::journal::record(
        &crate::journal::default_dir(),
        &env.name,
        &database,
        crate::journal::Event::hook(&outcome),
    ) {
        stderr(&format!(
            "warning: the hook run was not journaled: {}",
            e.cause
        ));
    }
    stderr(&format!(
        "hook {name}: {} in {:.1}s",
        outcome.describe(),
        outcome.duration_ms as f64 / 1000.0
    ));
    Ok(outcome)
}
