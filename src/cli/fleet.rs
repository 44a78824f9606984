//! `status --fleet NAME` and `deploy --fleet NAME`: the fleet's flags become the release room's
//! fleet request; its events are printed one line per member event, each naming the member; the
//! one confirmation a protected fleet needs (its name) is asked on a terminal.

use std::sync::Arc;

use clap::Args;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::output;
use super::{DeployArgs, GlobalArgs, exit};
use crate::config::{self, Overrides, limits};
use crate::error::{Error, Result};
use crate::journal::{self, CommandJournal};
use crate::release::{
    self, Confirmation, Fleet, FleetContext, FleetEvent, FleetReport, FleetRequest, MemberOutcome,
    Phase,
};
use crate::target::ProcessVars;

/// What `--concurrency` takes.
const CONCURRENCY: std::ops::RangeInclusive<usize> = 1..=256;
/// What `--max-failures` takes.
const MAX_FAILURES: std::ops::RangeInclusive<usize> = 1..=100_000;
/// What `--canary` takes (the fleet's size bounds it further, when it is known).
const CANARIES: std::ops::RangeInclusive<usize> = 0..=100_000;
/// `--concurrency` unless given.
pub const DEFAULT_CONCURRENCY: usize = 4;

#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Deploy to every database of fleet NAME ([fleets.NAME] in the config file): canaries
    /// first, their health checked, then the rest, a bounded number at once
    #[arg(long, value_name = "NAME")]
    pub fleet: Option<String>,
    /// With --fleet: at most N databases deploy at once (default 4)
    #[arg(long, value_name = "N", requires = "fleet", value_parser = limits::whole_in(CONCURRENCY))]
    pub concurrency: Option<usize>,
    /// With --fleet: deploy K canaries first (the ones the fleet marks, then the first members
    /// in order) and check their health; if one fails or is in alert, nothing else starts
    /// (default: the canaries the fleet marks, else none)
    #[arg(long, value_name = "K", requires = "fleet", value_parser = limits::whole_in(CANARIES))]
    pub canary: Option<usize>,
    /// With --fleet: start no database once M have failed (default 1: stop after the first)
    #[arg(long, value_name = "M", requires = "fleet", value_parser = limits::whole_in(MAX_FAILURES))]
    pub max_failures: Option<usize>,
    /// With --fleet: show the fleet as a live matrix in the console while it deploys (needs a
    /// terminal; q cancels, and closes it once finished)
    #[arg(long, requires = "fleet", conflicts_with = "json")]
    pub console: bool,
}

/// The fleet the config defines under `name`, for the release room. A single environment or a
/// database URL on the command line would make it one database, and is refused.
pub fn fleet(g: &GlobalArgs, name: &str) -> Result<Fleet> {
    let named = match (&g.env, &g.database_url) {
        (Some(_), _) => Some("--env"),
        (None, Some(_)) => Some("--database-url"),
        (None, None) => None,
    };
    if let Some(flag) = named {
        return Err(Error::input(
            format!("--fleet {name} names its databases itself, and {flag} names one"),
            format!("drop {flag}, or drop --fleet to work on that one database"),
        ));
    }
    let overrides = Overrides {
        config: g.config.clone(),
        migrations: g.migrations.clone(),
        ..Overrides::default()
    };
    let resolved = config::fleet::resolve_fleet(&overrides, &ProcessVars, name)?;
    Ok(Fleet {
        name: resolved.name,
        members: resolved.members.into_iter().map(super::candidate).collect(),
        marked_canaries: resolved.canaries,
    })
}

/// `pgdeck status --fleet NAME`: every member's status, read at once.
pub async fn status(fleet: &Fleet, json: bool) -> Result<u8> {
    let matrix = release::fleet_status(fleet).await?;
    let code = super::migrations::matrix_exit_code(matrix.overall());
    if json {
        let mut v = output::matrix_json(&matrix, code);
        v["fleet"] = json!(fleet.name);
        v["databases"] = json!(matrix.columns.len());
        output::json(&v);
    } else {
        output::stdout(fleet_table(&fleet.name, &matrix).trim_end());
    }
    Ok(code)
}

/// The fleet's status for a person: a line per database (its verdict and counts, or why it
/// was not read), then the verdict over them all.
pub fn fleet_table(name: &str, m: &release::Matrix) -> String {
    let width = m
        .columns
        .iter()
        .map(|c| c.name.chars().count() + if c.protected { 12 } else { 0 })
        .max()
        .unwrap_or(8)
        .max("DATABASE".len());
    let mut out = format!("fleet {name}: {} database(s)\n\n", m.columns.len());
    out.push_str(&format!("  {:<width$}  STATUS\n", "DATABASE"));
    for c in &m.columns {
        let label = format!(
            "{}{}",
            c.name,
            if c.protected { " (protected)" } else { "" }
        );
        out.push_str(&format!("  {label:<width$}  {}\n", c.summary()));
        if let Some(e) = c.error() {
            out.push_str(&format!("  {:<width$}  hint: {}\n", "", output::hint(e)));
        }
    }
    let mut tally: Vec<(String, usize)> = Vec::new();
    for c in &m.columns {
        let word = match c.verdict() {
            Some(v) => v.label().to_owned(),
            None => c.problem().unwrap_or("unknown").to_owned(),
        };
        match tally.iter_mut().find(|(w, _)| *w == word) {
            Some((_, n)) => *n += 1,
            None => tally.push((word, 1)),
        }
    }
    let tally: Vec<String> = tally.iter().map(|(w, n)| format!("{n} {w}")).collect();
    out.push_str(&format!(
        "\nover {} database(s): {} ({})\n",
        m.columns.len(),
        m.overall().label(),
        tally.join(", ")
    ));
    out
}

/// `pgdeck deploy --fleet NAME`.
pub async fn deploy(
    g: &GlobalArgs,
    deploy: &DeployArgs,
    args: &FleetArgs,
    name: &str,
    cancel: &CancellationToken,
) -> Result<u8> {
    let json = g.json;
    let fleet = fleet(g, name)?;
    let journal: Arc<dyn journal::Recorder> = Arc::new(CommandJournal::new(
        &journal::default_dir(),
        &journal_environment(name),
        &format!("fleet {name}: {} database(s)", fleet.members.len()),
        "deploy --fleet",
    ));
    let request = FleetRequest {
        deploy: super::migrations::deploy_request(deploy),
        concurrency: args.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
        canaries: args.canary,
        max_failures: args.max_failures.unwrap_or(1),
    };
    let console = args.console;
    let run = |confirmation: Option<Confirmation>| {
        let mut req = request.clone();
        req.deploy.confirmation = confirmation;
        let (fleet, journal, cancel) = (&fleet, journal.clone(), cancel.clone());
        async move {
            let work = |tx| {
                let ctx = FleetContext {
                    journal,
                    events: tx,
                    cancel: cancel.clone(),
                };
                async move { release::deploy_fleet(&ctx, fleet, &req).await }
            };
            if console {
                return crate::tui::fleet::watch(&fleet.name, &cancel, work).await;
            }
            let mut printer = FleetPrinter::new(json);
            crate::events::with_events(|e| printer.take(&e), work).await
        }
    };
    let given = output::given(&deploy.confirm);
    let first = run(given.clone()).await;
    let report = match (&first, &given) {
        (Err(e), None | Some(Confirmation { typed: None, .. }))
            if !json && output::interactive() && e.ask().is_some() =>
        {
            let ask = e.ask().cloned().unwrap_or_else(|| unreachable!());
            let answer = ask_fleet(&ask, cancel).await?;
            run(Some(answer)).await?
        }
        _ => first.map_err(fleet_wording)?,
    };
    finish(&report, json)
}

/// A fleet's confirmation is its name: the CLI's wording of a confirmation names a database.
fn fleet_wording(mut e: Error) -> Error {
    let Some(name) = e.ask().and_then(|a| a.expect.clone()) else {
        return e;
    };
    e.remedies
        .retain(|r| !matches!(r, crate::error::Remedy::Confirm(_)));
    e.hint = format!("{} (confirm by naming the fleet: --confirm {name})", e.hint);
    e
}

/// Where a fleet's deploys are journaled: one session for the whole fleet, beside the
/// environments' (`pgdeck report --env fleet-NAME`).
pub fn journal_environment(fleet: &str) -> String {
    format!("fleet-{fleet}")
}

async fn ask_fleet(ask: &crate::error::Ask, cancel: &CancellationToken) -> Result<Confirmation> {
    output::stderr(&ask.title);
    for line in &ask.lines {
        output::stderr(&format!("  {line}"));
    }
    match &ask.expect {
        Some(name) => {
            let typed = output::read_answer(
                format!("This fleet has PROTECTED databases. Type the fleet's name ({name}) to continue: "),
                cancel,
            )
            .await?;
            Ok(Confirmation::answering(ask, Some(typed)))
        }
        None => {
            let answer = output::read_answer("Continue? [y/N] ".into(), cancel).await?;
            if matches!(answer.as_str(), "y" | "Y" | "yes") {
                Ok(Confirmation::answering(ask, None))
            } else {
                Err(Error::refused(
                    "not confirmed; nothing was done",
                    "answer y to go ahead, or pass --yes",
                ))
            }
        }
    }
}

/// Prints the fleet's outcome; the exit code says whether every database got the release.
fn finish(report: &FleetReport, json: bool) -> Result<u8> {
    let code = if report.complete() {
        exit::OK
    } else if report.count(MemberOutcome::Cancelled) > 0 {
        exit::CANCELLED
    } else {
        exit::FLEET_INCOMPLETE
    };
    if json {
        let members: Vec<serde_json::Value> = report
            .members
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "database": m.database,
                    "canary": m.canary,
                    "outcome": m.outcome,
                    "applied": m.applied,
                    "error": m.error.as_ref().map(|e| e.cause.clone()),
                    "hint": m.error.as_ref().map(output::hint),
                    "guard": m.error.as_ref().and_then(|e| e.guard),
                    "health": m.health,
                    "started_at": m.started_at,
                    "finished_at": m.finished_at,
                })
            })
            .collect();
        output::json(&json!({
            "ok": report.complete(),
            "fleet": report.fleet,
            "databases": report.members.len(),
            "summary": report.summary(),
            "stopped": report.stopped,
            "exit_code": code,
            "members": members,
        }));
        return Ok(code);
    }
    let width = report
        .members
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(8)
        .max("DATABASE".len());
    let mut out = format!("  {:<width$}  {:<11}  DETAIL\n", "DATABASE", "OUTCOME");
    for m in &report.members {
        out.push_str(&format!(
            "  {:<width$}  {:<11}  {}{}\n",
            m.name,
            m.outcome.label(),
            if m.canary { "(canary) " } else { "" },
            m.summary()
        ));
        if let Some(e) = &m.error {
            let hint = output::hint(e);
            if !hint.is_empty() {
                out.push_str(&format!("  {:<width$}  {:<11}  hint: {hint}\n", "", ""));
            }
        }
    }
    if let Some(why) = &report.stopped {
        out.push_str(&format!("\nstopped: {why}\n"));
    }
    out.push_str(&format!("\n{}\n", report.summary()));
    output::stdout(out.trim_end());
    Ok(code)
}

/// The fleet's events on stderr: a line per member event worth reading, each naming the
/// member; JSON lines with --json.
struct FleetPrinter {
    json: bool,
    names: Vec<String>,
}

impl FleetPrinter {
    fn new(json: bool) -> FleetPrinter {
        FleetPrinter {
            json,
            names: Vec::new(),
        }
    }

    fn name(&self, index: usize) -> &str {
        self.names.get(index).map(String::as_str).unwrap_or("?")
    }

    fn take(&mut self, event: &FleetEvent) {
        if let FleetEvent::Planned { members, .. } = event {
            self.names = members.iter().map(|m| m.name.clone()).collect();
        }
        if self.json {
            output::json_stderr(&self.json_of(event).to_string());
        } else if let Some(line) = self.line(event) {
            output::stderr(&line);
        }
    }

    fn json_of(&self, event: &FleetEvent) -> serde_json::Value {
        use release::Event as E;
        match event {
            FleetEvent::Planned {
                fleet,
                members,
                concurrency,
                max_failures,
            } => json!({"event": "fleet_planned", "fleet": fleet, "members": members,
                        "concurrency": concurrency, "max_failures": max_failures}),
            FleetEvent::Phase(p) => json!({"event": "fleet_phase", "phase": p}),
            FleetEvent::MemberStarted { index } => {
                json!({"event": "member_started", "member": self.name(*index)})
            }
            FleetEvent::Member { index, event } => {
                let inner = match event {
                    E::Deploy(e) => serde_json::to_value(e).unwrap_or_default(),
                    E::Backup(e) => serde_json::to_value(e).unwrap_or_default(),
                    E::Checked(what) => json!({"event": "checked", "what": what}),
                    E::Started { workflow, what } => {
                        json!({"event": "started", "workflow": workflow, "what": what})
                    }
                    E::Note(text) => json!({"event": "note", "text": text}),
                    E::Warning(text) => json!({"event": "warning", "text": text}),
                    E::Journaled(entry) => json!({"event": "journaled", "entry": entry}),
                    E::HookStarted { name, command } => {
                        json!({"event": "hook_started", "name": name, "command": command})
                    }
                    E::HookOutput { name, line } => {
                        json!({"event": "hook_output", "name": name, "line": line})
                    }
                    E::HookFinished(o) => json!({"event": "hook_finished", "hook": o}),
                    E::Verify(e) => serde_json::to_value(e).unwrap_or_default(),
                };
                json!({"event": "member", "member": self.name(*index), "of": inner})
            }
            FleetEvent::HealthChecked {
                index,
                verdict,
                summary,
            } => json!({"event": "member_health", "member": self.name(*index),
                        "verdict": verdict, "summary": summary}),
            FleetEvent::MemberFinished {
                index,
                outcome,
                summary,
            } => json!({"event": "member_finished", "member": self.name(*index),
                        "outcome": outcome, "summary": summary}),
            FleetEvent::Stopped { why } => json!({"event": "fleet_stopped", "why": why}),
            FleetEvent::Journaled(entry) => json!({"event": "journaled", "entry": entry}),
        }
    }

    fn line(&self, event: &FleetEvent) -> Option<String> {
        use crate::migrate::DeployEvent as D;
        use release::Event as E;
        Some(match event {
            FleetEvent::Planned {
                fleet,
                members,
                concurrency,
                max_failures,
            } => format!(
                "fleet {fleet}: {} database(s), at most {concurrency} at once, stopping after {max_failures} failure(s)",
                members.len()
            ),
            FleetEvent::Phase(Phase::Canary) => "canaries first".to_owned(),
            FleetEvent::Phase(Phase::Health) => "the canaries' health checks".to_owned(),
            FleetEvent::Phase(Phase::Rest) => "the rest of the fleet".to_owned(),
            FleetEvent::MemberStarted { index } => format!("[{}] started", self.name(*index)),
            FleetEvent::Member { index, event } => {
                let text = match event {
                    E::Deploy(D::MigrationStarted {
                        name, index, total, ..
                    }) => format!("[{index}/{total}] {name}"),
                    E::Deploy(D::MigrationFailed { name, .. }) => format!("{name} FAILED"),
                    E::Deploy(D::WaitingForLock { .. }) => "waiting for the migration lock".into(),
                    E::Deploy(D::EditedAfterApply { name }) => {
                        format!("warning: {name} was edited after it was applied")
                    }
                    E::Checked(what) | E::Note(what) => what.clone(),
                    E::Warning(text) => format!("warning: {text}"),
                    E::HookStarted { name, command } => format!("hook {name}: {command}"),
                    E::HookOutput { line, .. } => format!("  | {line}"),
                    E::Journaled(entry) => match &entry.event {
                        journal::Event::Override { what, reason } => {
                            format!("override: {what}: {reason}")
                        }
                        _ => return None,
                    },
                    _ => return None,
                };
                format!("[{}] {text}", self.name(*index))
            }
            FleetEvent::HealthChecked { index, summary, .. } => {
                format!("[{}] health: {summary}", self.name(*index))
            }
            FleetEvent::MemberFinished {
                index,
                outcome: MemberOutcome::NotStarted,
                ..
            } => format!("[{}] not started", self.name(*index)),
            FleetEvent::MemberFinished {
                index,
                outcome,
                summary,
            } => format!("[{}] {}: {summary}", self.name(*index), outcome.label()),
            FleetEvent::Stopped { why } => format!("stopping: {why}"),
            FleetEvent::Journaled(_) => return None,
        })
    }
}
