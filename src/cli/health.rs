//! `pgdeck health`: endpoints, metrics, database probes and connections against the thresholds
//! and an optional baseline; `--save-baseline` records a healthy system before a deploy.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{exit, output};
use crate::config::Environment;
use crate::error::{Error, Result};
use crate::health::{self, Baseline, Level, Report};

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Compare with a baseline captured before the deploy
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Save what this run measures as the baseline (refused while anything is in ALERT)
    #[arg(long, value_name = "FILE", conflicts_with = "baseline")]
    pub save_baseline: Option<PathBuf>,
    /// Seconds between the two metric scrapes, over which the probes run (default from config, else 15)
    #[arg(long, value_name = "SECS")]
    pub window: Option<f64>,
}

pub async fn run(env: &Environment, args: &HealthArgs, json: bool) -> Result<u8> {
    let mut settings = env.health.clone();
    if let Some(w) = args.window {
        if !(w > 0.0 && w <= 3600.0) {
            return Err(Error::input(
                format!("--window {w} is out of range"),
                "give seconds between 0 and 3600, e.g. --window 15",
            ));
        }
        settings.window = Duration::from_secs_f64(w);
    }
    let baseline = args.baseline.as_deref().map(Baseline::load).transpose()?;
    let report = health::run(&env.name, &env.target, &settings, baseline.as_ref()).await?;
    let mut saved = None;
    if let Some(path) = &args.save_baseline {
        if report.verdict == Level::Alert {
            let code = print(env, &report, json, None);
            output::stderr(
                "error: baseline not saved: the system is in ALERT, and a baseline of an unhealthy \
                 system would hide the damage a deploy does\nhint: fix what the checks above name, then capture again",
            );
            return Ok(code);
        }
        report.measured.save(path)?;
        saved = Some(path.clone());
    }
    Ok(print(env, &report, json, saved))
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
