//! `pgdeck verify`: the rehearsal of the pending migrations on a copy of the target's schema,
//! and the drift check, printed as a report (or JSON). The release room runs it.

use clap::Args;
use serde_json::json;

use super::output::{self, Printer};
use super::{Job, exit};
use crate::error::Result;
use crate::events::with_events;
use crate::release::{self, RehearsalRequest};
use crate::target::{DbTarget, ProcessVars};
use crate::verify::{Outcome, Side, VerifyReport};

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub scratch: ScratchArgs,
    /// Rehearse only; skip the drift check
    #[arg(long)]
    pub no_drift: bool,
}

/// Where a rehearsal runs.
#[derive(Debug, Clone, Args)]
pub struct ScratchArgs {
    /// Rehearse on this server (a superuser there) instead of a throwaway cluster; only
    /// databases made for the run are written there, and dropped again
    #[arg(long, value_name = "URL")]
    pub scratch_url: Option<String>,
}

impl ScratchArgs {
    pub fn request(&self, drift: bool) -> Result<RehearsalRequest> {
        Ok(RehearsalRequest {
            scratch: self
                .scratch_url
                .as_deref()
                .map(|u| DbTarget::from_url(u, &ProcessVars))
                .transpose()?,
            drift,
        })
    }
}

pub async fn run(job: &Job, args: &VerifyArgs, json: bool) -> Result<u8> {
    let report = rehearse(job, &args.scratch.request(!args.no_drift)?, json).await?;
    if json {
        output::json(&json!({
            "ok": code(&report) == exit::OK,
            "exit_code": code(&report),
            "environment": job.env.name,
            "database": job.env.target.to_string(),
            "report": report,
        }));
    } else {
        output::stdout(render(&report).trim_end());
    }
    Ok(code(&report))
}

/// Runs the rehearsal, its progress on stderr.
pub async fn rehearse(job: &Job, req: &RehearsalRequest, json: bool) -> Result<VerifyReport> {
    let mut printer = Printer::live(json);
    with_events(
        |e| printer.take(e),
        |tx| {
            let ctx = job.context(tx);
            async move { release::rehearse(&ctx, req).await }
        },
    )
    .await
}

/// A failed rehearsal (or a build that fails) is a failed migration; drift has its own code.
fn code(r: &VerifyReport) -> u8 {
    if !r.rehearsal_passed() || r.build_failed() {
        exit::FAILED
    } else if r.drifted() {
        exit::SCHEMA_DRIFT
    } else {
        exit::OK
    }
}

fn render(r: &VerifyReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "rehearsal on {} (PostgreSQL {}) of the target's schema (PostgreSQL {})\nnothing was written to the target\n",
        if r.scratch_own {
            "a throwaway cluster"
        } else {
            "the given scratch server"
        },
        version_number(&r.scratch_version),
        version_number(&r.target_version)
    ));
    for w in &r.warnings {
        out.push_str(&format!("note: {w}\n"));
    }
    if r.pending.is_empty() && r.failure.is_none() {
        out.push_str("  nothing pending to rehearse\n");
    }
    for p in &r.pending {
        match &p.outcome {
            Outcome::Applied { ms } => {
                out.push_str(&format!("  {}  applies ({ms} ms on the copy)\n", p.name))
            }
            Outcome::Failed { error } => {
                out.push_str(&format!("  {}  FAILED\n      {error}\n", p.name))
            }
            Outcome::NotRun => {
                out.push_str(&format!("  {}  not rehearsed (after a failure)\n", p.name))
            }
        }
        for s in &p.statements {
            out.push_str(&format!(
                "    #{} line {}: {}\n      observed: {}\n",
                s.statement,
                s.line,
                s.preview,
                s.said()
            ));
        }
    }
    if let Some(f) = &r.failure {
        if f.migration.is_none() {
            out.push_str(&format!("  rehearsal FAILED: {}\n", f.cause));
        }
        out.push_str(
            "  (the copy has the target's schema without its rows: a failure that needs rows the \
             target has, a seed or a lookup, is the copy's, not the migration's)\n",
        );
    }
    if let Some(d) = &r.drift {
        out.push('\n');
        if let Some(f) = &d.build_failed {
            out.push_str(&format!(
                "drift not checked: the {} applied migrations do not build on an empty database: {}\n",
                d.built_from, f.cause
            ));
        } else if d.differences.is_empty() {
            out.push_str(&format!(
                "no drift: the schema is what its {} applied migrations build\n",
                d.built_from
            ));
        } else {
            out.push_str(&format!(
                "DRIFT: {} difference(s) between the database and its {} applied migrations\n",
                d.differences.len(),
                d.built_from
            ));
            for side in [Side::OnlyInDatabase, Side::OnlyInMigrations, Side::Differs] {
                let of_side: Vec<_> = d.differences.iter().filter(|x| x.side == side).collect();
                if of_side.is_empty() {
                    continue;
                }
                out.push_str(&format!("  {}:\n", side.words()));
                for x in of_side {
                    out.push_str(&format!("    {:<11} {}", x.kind.word(), x.name));
                    match side {
                        Side::OnlyInDatabase => detail(&mut out, x.database.as_deref()),
                        Side::OnlyInMigrations => detail(&mut out, x.migrations.as_deref()),
                        Side::Differs => {
                            let (db, mig) = where_they_differ(
                                x.database.as_deref().unwrap_or_default(),
                                x.migrations.as_deref().unwrap_or_default(),
                            );
                            out.push_str(&format!(
                                "\n        database:   {db}\n        migrations: {mig}\n"
                            ));
                        }
                    }
                }
            }
        }
        if !d.edited.is_empty() {
            out.push_str(&format!(
                "  built from files edited since they were applied: {}\n",
                d.edited.join(", ")
            ));
        }
        if !d.missing_locally.is_empty() {
            out.push_str(&format!(
                "  incomplete: applied but missing locally, so not in the build: {}\n",
                d.missing_locally.join(", ")
            ));
        }
        if d.build_failed.is_none() {
            out.push_str(&format!(
                "  compared: schema{} {}; not compared: owners, grants, comments, storage parameters, statistics objects, rules\n",
                if d.schemas.len() == 1 { "" } else { "s" },
                d.schemas.join(", ")
            ));
        }
    }
    out
}

/// "15.18" of "15.18 (Debian 15.18-0+deb12u1)".
fn version_number(version: &str) -> &str {
    version.split_whitespace().next().unwrap_or(version)
}

/// Two definitions on one line each, cut around where they first part ways.
fn where_they_differ(a: &str, b: &str) -> (String, String) {
    let (a, b) = (flat(a), flat(b));
    let at = a
        .chars()
        .zip(b.chars())
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.chars().count().min(b.chars().count()));
    let window = |text: &str| {
        let from = at.saturating_sub(30);
        let cut: String = text.chars().skip(from).take(90).collect();
        let more = text.chars().count() > from + 90;
        format!(
            "{}{cut}{}",
            if from > 0 { "…" } else { "" },
            if more { "…" } else { "" }
        )
    };
    (window(&a), window(&b))
}

fn detail(out: &mut String, definition: Option<&str>) {
    let cut = |d: String| match d.chars().count() > 100 {
        true => format!("{}…", d.chars().take(99).collect::<String>()),
        false => d,
    };
    match definition.map(flat).filter(|d| !d.is_empty()).map(cut) {
        Some(d) => out.push_str(&format!("  {d}\n")),
        None => out.push('\n'),
    }
}

/// A definition on one line.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
