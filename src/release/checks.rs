//! The release's checks: health against the thresholds and a baseline (the team hears about an
//! ALERT), the baseline itself (never of a system in ALERT), and the sample queries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Context;
use crate::backup::CheckResult;
use crate::error::{Error, Result};
use crate::health::{self, Baseline, Level, Report};

/// Health now, compared with `baseline` when given, over `window` (default: the environment's).
/// An ALERT is told to the team.
pub async fn health(
    ctx: &Context,
    window: Option<Duration>,
    baseline: Option<&Baseline>,
) -> Result<Report> {
    let env = &ctx.env;
    let mut settings = env.health.clone();
    if let Some(w) = window {
        settings.window = w;
    }
    let report = tokio::select! {
        r = health::run(&env.name, &env.target, &settings, baseline) => r?,
        () = ctx.cancel.cancelled() => {
            return Err(Error::cancelled("health checks cancelled", "run them again"));
        }
    };
    if report.verdict == Level::Alert {
        tell_alert(ctx, &report).await;
    }
    Ok(report)
}

/// Tells the team what is in ALERT.
async fn tell_alert(ctx: &Context, report: &Report) {
    let worst: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.level == Level::Alert)
        .map(|c| format!("{} {}", c.name, c.value))
        .collect();
    ctx.notify(&format!("ALERT on {}: {}", ctx.env.name, worst.join("; ")))
        .await;
}

/// Health sampled again and again until cancelled, each report handed to `on_report` as it
/// comes, `pause` apart (each run itself spans the health window). The team hears when the
/// verdict turns to ALERT, not on every sample in alert. A run that cannot reach the server
/// is handed over as its error, so the front end never shows an old verdict as current.
pub async fn watch_health(
    ctx: &Context,
    baseline: Option<&Baseline>,
    pause: Duration,
    mut on_report: impl FnMut(std::result::Result<Report, Error>),
) {
    let env = &ctx.env;
    let mut was_alert = false;
    loop {
        let report = tokio::select! {
            r = health::run(&env.name, &env.target, &env.health, baseline) => r,
            () = ctx.cancel.cancelled() => return,
        };
        match report {
            Ok(report) => {
                let alert = report.verdict == Level::Alert;
                if alert && !was_alert {
                    tell_alert(ctx, &report).await;
                }
                was_alert = alert;
                on_report(Ok(report));
            }
            Err(e) => on_report(Err(e)),
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = ctx.cancel.cancelled() => return,
        }
    }
}

/// What capturing a baseline did: the measurements, and where they were saved or why not.
#[derive(Debug, Clone)]
pub struct BaselineCapture {
    pub report: Report,
    pub saved: Result<PathBuf, Error>,
}

/// Measures the system and saves the result as the baseline at `path`, unless something is in
/// ALERT: a baseline of an unhealthy system would hide the damage a deploy does.
pub async fn capture_baseline(
    ctx: &Context,
    window: Option<Duration>,
    path: &Path,
) -> Result<BaselineCapture> {
    let report = health(ctx, window, None).await?;
    let saved = if report.verdict == Level::Alert {
        Err(Error::refused(
            "baseline not saved: the system is in ALERT, and a baseline of an unhealthy system would \
             hide the damage a deploy does",
            "fix what the checks name, then capture again",
        ))
    } else {
        report.measured.save(path).map(|()| path.to_owned())
    };
    Ok(BaselineCapture { report, saved })
}

/// The environment's sample queries (`restore_checks`), read-only.
pub async fn sample_queries(ctx: &Context) -> Result<Vec<CheckResult>> {
    let env = &ctx.env;
    tokio::select! {
        r = crate::backup::sample(&env.target, &env.backup.restore_checks) => r,
        () = ctx.cancel.cancelled() => Err(Error::cancelled("sample queries cancelled", "run them again")),
    }
}
