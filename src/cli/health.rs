//! `pgdeck health`: endpoints, metrics, database probes and connections against the thresholds
//! and an optional baseline; `--save-baseline` records a healthy system before a deploy.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::output::{self, Printer};
use super::{Job, exit};
use crate::config::limits;
use crate::error::Result;
use crate::health::{Baseline, Level, Report};
use crate::release::{self, Environment};

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Compare with a baseline captured before the deploy
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Save what this run measures as the baseline (refused while anything is in ALERT)
    #[arg(long, value_name = "FILE", conflicts_with = "baseline")]
    pub save_baseline: Option<PathBuf>,
    /// Seconds between the two metric scrapes, over which the probes run (default from config, else 15)
    #[arg(long, value_name = "SECS", value_parser = limits::seconds_in(limits::WINDOW_SECS))]
    pub window: Option<f64>,
}

pub async fn run(job: &Job, args: &HealthArgs, json: bool) -> Result<u8> {
    let env = &job.env;
    let window = args.window.map(Duration::from_secs_f64);
    let baseline = args.baseline.as_deref().map(Baseline::load).transpose()?;
    let mut printer = Printer::live(json);
    if let Some(path) = &args.save_baseline {
        let capture = crate::events::with_events(
            |e| printer.take(e),
            |tx| {
                let ctx = job.context(tx);
                async move { release::capture_baseline(&ctx, window, path).await }
            },
        )
        .await?;
        return Ok(match capture.saved {
            Ok(saved) => print(env, &capture.report, json, Some(saved)),
            Err(e) => {
                let code = print(env, &capture.report, json, None);
                output::error(&e);
                code
            }
        });
    }
    let report = crate::events::with_events(
        |e| printer.take(e),
        |tx| {
            let ctx = job.context(tx);
            let baseline = baseline.as_ref();
            async move { release::health(&ctx, window, baseline).await }
        },
    )
    .await?;
    Ok(print(env, &report, json, None))
}

fn print(env: &Environment, report: &Report, json: bool, saved: Option<PathBuf>) -> u8 {
    if json {
        output::json(&json!({
            "ok": report.verdict == Level::Ok,
            "environment": env.name,
            "database": env.target.to_string(),
            "report": report,
            "baseline_saved": saved,
        }));
    } else {
        output::stdout(render(env, report, saved.as_deref()).trim_end());
    }
    code(report.verdict)
}

pub fn code(level: Level) -> u8 {
    match level {
        Level::Ok => exit::OK,
        Level::Warn => exit::HEALTH_WARN,
        Level::Alert => exit::HEALTH_ALERT,
    }
}

fn render(env: &Environment, r: &Report, saved: Option<&std::path::Path>) -> String {
    let compared = r
        .compared_with
        .map(|t| format!("compared with the baseline of {}", output::timestamp(t)))
        .unwrap_or_else(|| "no baseline".into());
    let mut out = format!(
        "health of {} ({}) over {:.0}s, {compared}\n\n",
        env.name, env.target, r.window_seconds
    );
    let name_width = r
        .checks
        .iter()
        .map(|c| c.name.chars().count().min(40))
        .max()
        .unwrap_or(0);
    for c in &r.checks {
        let name: String = c.name.chars().take(40).collect();
        out.push_str(&format!(
            "  {:<5}  {:<12} {:<name_width$}  {}\n",
            c.level.label(),
            c.kind,
            name,
            c.value
        ));
        for reason in &c.reasons {
            out.push_str(&format!(
                "         {:<12} {:<name_width$}  - {reason}\n",
                "", ""
            ));
        }
    }
    out.push_str(&format!("\nverdict: {}\n", r.verdict.label()));
    if let Some(p) = saved {
        out.push_str(&format!("baseline saved to {}\n", p.display()));
    }
    out
}
