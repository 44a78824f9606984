//! Health checks: the application's HTTP endpoints, its Prometheus metrics (error rate, 5xx per
//! minute, p95 latency), database probe latency and connection use, each weighed against the
//! runbook's thresholds and, when there is one, a baseline captured before the deploy.
//! Every check ends as ok / warn / alert with its reasons.

pub mod metrics;
pub mod probe;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Remedy, Result};
use crate::monitor;
use crate::target::{DbTarget, secret::Secret};

/// A verdict, ordered: the report's verdict is its worst check's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warn,
    Alert,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "WARN",
            Level::Alert => "ALERT",
        }
    }
}

/// What `health` checks on an environment, and its thresholds.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub endpoints: Vec<Endpoint>,
    pub metrics: Option<MetricsSource>,
    /// Probe queries; by default `SELECT 1` plus the environment's verification queries.
    pub probes: Vec<String>,
    pub probe_samples: usize,
    pub probe_timeout: Duration,
    /// Time between the two metric scrapes, over which the probes are spread.
    pub window: Duration,
    pub thresholds: Thresholds,
    /// The monitor's thresholds for standbys, slots and pools, and PgBouncer's admin console:
    /// health judges replication by them, and connections by the pool when there is one.
    pub monitor: crate::monitor::MonitorSettings,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            endpoints: Vec::new(),
            metrics: None,
            probes: vec!["SELECT 1".into()],
            probe_samples: 20,
            probe_timeout: Duration::from_secs(2),
            window: Duration::from_secs(15),
            thresholds: Thresholds::default(),
            monitor: crate::monitor::MonitorSettings::default(),
        }
    }
}

/// An HTTP(S) endpoint that must answer.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub url: url::Url,
    /// The status it must answer; any 2xx when unset.
    pub expect_status: Option<u16>,
    /// Text the body must contain.
    pub body_contains: Option<String>,
    pub timeout: Duration,
    /// Slower than this is a warning.
    pub slow: Duration,
}

/// Where the application's Prometheus metrics are and what they are called.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    pub url: url::Url,
    /// The requests counter, summed over its series.
    pub requests: String,
    /// A separate errors counter; unset: the requests counter's series whose status label is 5xx.
    pub errors: Option<String>,
    pub status_label: String,
    /// A latency histogram in seconds, for p95.
    pub latency: Option<String>,
    pub timeout: Duration,
    pub bearer_token: Option<Secret>,
}

/// The runbook's thresholds, each configurable.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Error-rate increase over the baseline (a fraction): above it is a warning (runbook target
    /// < 0.1 %)...
    pub error_rate_warn: f64,
    /// ...and above this an alert (runbook: > 1 % spike).
    pub error_rate_alert: f64,
    pub errors_per_minute_warn: f64,
    /// Runbook: more than 10 HTTP 500s a minute.
    pub errors_per_minute_alert: f64,
    /// p95 over the baseline's: a warning above this ratio...
    pub latency_warn_ratio: f64,
    /// ...an alert above this one (runbook: 2x).
    pub latency_alert_ratio: f64,
    /// A ratio only counts when p95 is also this much slower in absolute terms, so that
    /// sub-millisecond noise does not raise alarms.
    pub latency_min_increase: Duration,
    pub connections_warn: f64,
    /// Runbook: more than 80 % of the usable connections.
    pub connections_alert: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            error_rate_warn: 0.001,
            error_rate_alert: 0.01,
            errors_per_minute_warn: 5.0,
            errors_per_minute_alert: 10.0,
            latency_warn_ratio: 1.5,
            latency_alert_ratio: 2.0,
            latency_min_increase: Duration::from_millis(5),
            connections_warn: 0.7,
            connections_alert: 0.8,
        }
    }
}

/// What a healthy system measured: saved before a deploy, compared with after.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    pub version: u32,
    pub captured_at: DateTime<Utc>,
    pub environment: String,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub errors_per_minute: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub latency_p95: Option<f64>,
    /// Probe query -> p95 in milliseconds.
    #[serde(default)]
    pub probes_p95_ms: BTreeMap<String, f64>,
    /// Endpoint name -> latency in milliseconds.
    #[serde(default)]
    pub endpoints_ms: BTreeMap<String, f64>,
}

const BASELINE_VERSION: u32 = 1;

impl Baseline {
    pub fn load(path: &Path) -> Result<Baseline> {
        let text = crate::db::files::read_to_string(path, None).map_err(|e| {
            Error::input(
                format!("cannot read baseline {}: {e}", path.display()),
                "capture one before the deploy, while the system is healthy",
            )
            .with(Remedy::SaveBaseline)
        })?;
        let b: Baseline = serde_json::from_str(&text).map_err(|e| {
            Error::input(
                format!("{} is not a pgdeck baseline: {e}", path.display()),
                "capture a new one",
            )
            .with(Remedy::SaveBaseline)
        })?;
        if b.version != BASELINE_VERSION {
            return Err(Error::input(
                format!(
                    "{} is a version {} baseline; this pgdeck reads version {BASELINE_VERSION}",
                    path.display(),
                    b.version
                ),
                "capture a new one",
            )
            .with(Remedy::SaveBaseline));
        }
        Ok(b)
    }

    /// Writes the baseline next to its final name and renames it into place, so a reader never
    /// sees half a file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| {
            Error::runtime(
                format!("cannot write baseline {}: {e}", path.display()),
                "check the directory exists and is writable",
            )
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// endpoint, error_rate, errors_5xx, latency_p95, db_probe, connections, metrics
    pub kind: &'static str,
    pub name: String,
    pub level: Level,
    /// The measured value, for people.
    pub value: String,
    /// Why it is not ok (or what it was compared with).
    pub reasons: Vec<String>,
}

/// Every check, and the worst level among them.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub at: DateTime<Utc>,
    pub verdict: Level,
    pub window_seconds: f64,
    pub checks: Vec<Check>,
    /// What was measured, in the shape a baseline keeps.
    pub measured: Baseline,
    pub compared_with: Option<DateTime<Utc>>,
}

/// Runs every configured check once: endpoints, then two metric scrapes `window` apart with the
/// database probes spread between them, then connection use.
pub async fn run(
    env_name: &str,
    target: &DbTarget,
    settings: &HealthSettings,
    baseline: Option<&Baseline>,
) -> Result<Report> {
    let client = http_client()?;
    let t = &settings.thresholds;
    let mut checks = Vec::new();
    let mut measured = Baseline {
        version: BASELINE_VERSION,
        captured_at: Utc::now(),
        environment: env_name.to_owned(),
        error_rate: None,
        errors_per_minute: None,
        latency_p95: None,
        probes_p95_ms: BTreeMap::new(),
        endpoints_ms: BTreeMap::new(),
    };

    for e in &settings.endpoints {
        let (check, ms) = check_endpoint(&client, e).await;
        if let Some(ms) = ms {
            measured.endpoints_ms.insert(e.name.clone(), ms);
        }
        checks.push(check);
    }

    let first = match &settings.metrics {
        Some(m) => Some(metrics::read(&client, m).await),
        None => None,
    };
    let started = Instant::now();
    let probes = probe::run(
        target,
        &settings.probes,
        settings.probe_samples,
        settings.window,
        settings.probe_timeout,
    )
    .await?;
    if let Some(m) = &settings.metrics {
        tokio::time::sleep(settings.window.saturating_sub(started.elapsed())).await;
        let second = metrics::read(&client, m).await;
        match (first, second) {
            (Some(Ok(a)), Ok(b)) => {
                let w = metrics::window(&a, &b);
                measured.error_rate = w.error_rate;
                measured.errors_per_minute = Some(w.errors_per_minute);
                measured.latency_p95 = w.latency_p95;
                checks.extend(judge_metrics(m, &b, &w, baseline, t));
            }
            (Some(Err(e)), _) | (_, Err(e)) => checks.push(Check {
                kind: "metrics",
                name: redacted_url(&m.url),
                level: Level::Alert,
                value: "unreadable".into(),
                reasons: vec![e.cause],
            }),
            (None, _) => {}
        }
    }

    for p in &probes {
        if let Some(ms) = p.p95_ms {
            measured.probes_p95_ms.insert(p.query.clone(), ms);
        }
        checks.push(judge_probe(p, baseline, t));
    }

    checks.extend(connections_and_replicas(target, t, &settings.monitor).await);

    let verdict = checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    Ok(Report {
        at: Utc::now(),
        verdict,
        window_seconds: settings.window.as_secs_f64(),
        checks,
        measured,
        compared_with: baseline.map(|b| b.captured_at),
    })
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("pgdeck/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| {
            Error::runtime(
                format!("cannot set up the HTTP client: {e}"),
                "check the system's TLS set-up",
            )
        })
}

/// The biggest body read for a `body_contains` match.
const MAX_BODY: usize = 1 << 20;

async fn check_endpoint(client: &reqwest::Client, e: &Endpoint) -> (Check, Option<f64>) {
    let shown = redacted_url(&e.url);
    let started = Instant::now();
    let fail = |value: &str, reason: String| Check {
        kind: "endpoint",
        name: e.name.clone(),
        level: Level::Alert,
        value: value.to_owned(),
        reasons: vec![reason],
    };
    let response = match client.get(e.url.clone()).timeout(e.timeout).send().await {
        Ok(r) => r,
        Err(err) => {
            let value = if err.is_timeout() {
                "timeout"
            } else {
                "unreachable"
            };
            return (fail(value, format!("{shown}: {}", http_cause(err))), None);
        }
    };
    let status = response.status();
    let mut reasons = Vec::new();
    let mut level = Level::Ok;
    let status_ok = match e.expect_status {
        Some(code) => status.as_u16() == code,
        None => status.is_success(),
    };
    if !status_ok {
        level = Level::Alert;
        reasons.push(format!(
            "{shown} answered {status}, expected {}",
            e.expect_status
                .map(|c| c.to_string())
                .unwrap_or_else(|| "2xx".into())
        ));
    }
    if let Some(needle) = &e.body_contains {
        match read_capped(response).await {
            Ok(body) if body.contains(needle.as_str()) => {}
            Ok(_) => {
                level = Level::Alert;
                reasons.push(format!("the body does not contain {needle:?}"));
            }
            Err(err) => {
                level = Level::Alert;
                reasons.push(format!("reading the body: {}", http_cause(err)));
            }
        }
    }
    let elapsed = started.elapsed();
    let ms = elapsed.as_secs_f64() * 1000.0;
    if level == Level::Ok && elapsed > e.slow {
        level = Level::Warn;
        reasons.push(format!(
            "slower than {}",
            humantime::format_duration(e.slow)
        ));
    }
    (
        Check {
            kind: "endpoint",
            name: e.name.clone(),
            level,
            value: format!("{} in {ms:.0} ms", status.as_u16()),
            reasons,
        },
        Some(ms),
    )
}

async fn read_capped(mut response: reqwest::Response) -> reqwest::Result<String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn judge_metrics(
    m: &MetricsSource,
    reading: &metrics::Reading,
    w: &metrics::Window,
    baseline: Option<&Baseline>,
    t: &Thresholds,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let missing = |what: &str, name: &str, key: &str| Check {
        kind: "metrics",
        name: name.to_owned(),
        level: Level::Warn,
        value: "missing".into(),
        reasons: vec![format!(
            "the scrape has no {what} metric '{name}': set health.metrics.{key} to the application's name for it"
        )],
    };
    if reading.requests.is_none() {
        checks.push(missing("requests", &m.requests, "requests"));
    } else {
        let base = baseline.and_then(|b| b.error_rate).unwrap_or(0.0);
        let (level, value, reasons) = match w.error_rate {
            None => (
                Level::Ok,
                "no requests in the window".to_owned(),
                Vec::new(),
            ),
            Some(rate) => {
                let increase = rate - base;
                let level = if increase > t.error_rate_alert {
                    Level::Alert
                } else if increase > t.error_rate_warn {
                    Level::Warn
                } else {
                    Level::Ok
                };
                let mut reasons = Vec::new();
                if level != Level::Ok {
                    reasons.push(format!(
                        "{} over {} (warn above {}, alert above {})",
                        percent(increase),
                        if baseline.is_some() {
                            format!("the baseline's {}", percent(base))
                        } else {
                            "zero (no baseline)".into()
                        },
                        percent(t.error_rate_warn),
                        percent(t.error_rate_alert)
                    ));
                }
                (
                    level,
                    format!("{} of {:.0} requests", percent(rate), w.requests),
                    reasons,
                )
            }
        };
        checks.push(Check {
            kind: "error_rate",
            name: "error rate".into(),
            level,
            value,
            reasons,
        });
        let per_minute = w.errors_per_minute;
        let level = if per_minute > t.errors_per_minute_alert {
            Level::Alert
        } else if per_minute > t.errors_per_minute_warn {
            Level::Warn
        } else {
            Level::Ok
        };
        checks.push(Check {
            kind: "errors_5xx",
            name: "5xx per minute".into(),
            level,
            value: format!("{per_minute:.1}/min"),
            reasons: if level == Level::Ok {
                Vec::new()
            } else {
                vec![format!(
                    "{per_minute:.1} a minute (warn above {}, alert above {})",
                    t.errors_per_minute_warn, t.errors_per_minute_alert
                )]
            },
        });
    }
    if let Some(name) = &m.latency {
        if reading.latency_buckets.is_none() {
            checks.push(missing("latency histogram", name, "latency"));
        } else {
            let now = w.latency_p95;
            let base = baseline.and_then(|b| b.latency_p95);
            let (level, reasons) = judge_latency(now, base, t);
            checks.push(Check {
                kind: "latency_p95",
                name: "p95 latency".into(),
                level,
                value: now
                    .map(|s| format!("{:.1} ms", s * 1000.0))
                    .unwrap_or_else(|| "no requests in the window".into()),
                reasons,
            });
        }
    }
    checks
}

/// p95 against the baseline's, both in seconds.
fn judge_latency(now: Option<f64>, base: Option<f64>, t: &Thresholds) -> (Level, Vec<String>) {
    // Without a baseline there is nothing to compare with; the report says so once.
    let (Some(now), Some(base)) = (now, base) else {
        return (Level::Ok, Vec::new());
    };
    let ratio = if base > 0.0 {
        now / base
    } else {
        f64::INFINITY
    };
    let slower_enough = now - base > t.latency_min_increase.as_secs_f64();
    let level = if !slower_enough {
        Level::Ok
    } else if ratio > t.latency_alert_ratio {
        Level::Alert
    } else if ratio > t.latency_warn_ratio {
        Level::Warn
    } else {
        Level::Ok
    };
    let reasons = if level == Level::Ok {
        Vec::new()
    } else {
        vec![format!(
            "{ratio:.1}x the baseline's {:.1} ms (warn above {}x, alert above {}x)",
            base * 1000.0,
            t.latency_warn_ratio,
            t.latency_alert_ratio
        )]
    };
    (level, reasons)
}

fn judge_probe(p: &probe::ProbeResult, baseline: Option<&Baseline>, t: &Thresholds) -> Check {
    let name = p.query.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(f) = &p.failure {
        return Check {
            kind: "db_probe",
            name,
            level: Level::Alert,
            value: "failed".into(),
            reasons: vec![f.clone()],
        };
    }
    if p.skipped {
        return Check {
            kind: "db_probe",
            name,
            level: Level::Ok,
            value: "skipped".into(),
            reasons: vec!["names a table or column this database does not have".into()],
        };
    }
    let now = p.p95_ms.map(|ms| ms / 1000.0);
    let base = baseline
        .and_then(|b| b.probes_p95_ms.get(&p.query))
        .map(|ms| ms / 1000.0);
    let (level, reasons) = judge_latency(now, base, t);
    Check {
        kind: "db_probe",
        name,
        level,
        value: p
            .p95_ms
            .map(|ms| format!("p95 {ms:.1} ms over {} runs", p.samples_ms.len()))
            .unwrap_or_default(),
        reasons,
    }
}

/// Connection use (the pool's, when PgBouncer's admin console is configured: what the
/// application waits for is a server connection of its pool) and replication against the
/// monitor's thresholds.
async fn connections_and_replicas(
    target: &DbTarget,
    t: &Thresholds,
    m: &monitor::MonitorSettings,
) -> Vec<Check> {
    let mut checks = vec![match &m.pgbouncer_admin {
        Some(admin) => pool_connections(target, admin, t).await,
        None => connections(target, t).await,
    }];
    let mut monitor = match monitor::Monitor::connect(target).await {
        Ok(monitor) => monitor,
        // The connections check says why already.
        Err(_) => return checks,
    };
    let replication = monitor.replication().await;
    let alerts = monitor::alerts(m, &replication, None);
    checks.push(match &replication {
        monitor::Pane::Ok(r) => {
            let r = &r.data;
            let value = if r.in_recovery {
                "this server is a standby".to_owned()
            } else {
                format!(
                    "{} standby(s), {} slot(s){}",
                    r.standbys.len(),
                    r.slots.len(),
                    r.standbys
                        .iter()
                        .filter_map(|s| s.replay_lag_bytes)
                        .max()
                        .map(|b| format!(", replay lag up to {}", crate::units::human_bytes(b)))
                        .unwrap_or_default()
                )
            };
            Check {
                kind: "replication",
                name: "replication".into(),
                level: if alerts.is_empty() {
                    Level::Ok
                } else {
                    Level::Alert
                },
                value,
                reasons: alerts.into_iter().map(|a| a.text).collect(),
            }
        }
        monitor::Pane::Unavailable { reason } => Check {
            kind: "replication",
            name: "replication".into(),
            level: Level::Warn,
            value: reason.clone(),
            reasons: Vec::new(),
        },
        monitor::Pane::Error { cause } => Check {
            kind: "replication",
            name: "replication".into(),
            level: Level::Alert,
            value: "unknown".into(),
            reasons: vec![cause.clone()],
        },
    });
    checks
}

/// The connection figure from PgBouncer: the busiest pool's servers in use against its size.
async fn pool_connections(target: &DbTarget, admin: &DbTarget, t: &Thresholds) -> Check {
    let mut m = match monitor::Monitor::connect(target).await {
        Ok(m) => m,
        Err(e) => {
            return Check {
                kind: "connections",
                name: "connections (pool)".into(),
                level: Level::Alert,
                value: "unknown".into(),
                reasons: vec![e.cause],
            };
        }
    };
    match m.pools(admin).await {
        monitor::Pane::Ok(s) => {
            let p = s.data;
            let level = if p.utilisation > t.connections_alert {
                Level::Alert
            } else if p.utilisation > t.connections_warn {
                Level::Warn
            } else {
                Level::Ok
            };
            let busiest = p
                .pools
                .iter()
                .max_by(|a, b| a.utilisation.total_cmp(&b.utilisation));
            Check {
                kind: "connections",
                name: "connections (pool)".into(),
                level,
                value: match busiest {
                    Some(b) => format!(
                        "pool {}/{}: {} of {} servers active, {} client(s) waiting ({})",
                        b.database,
                        b.user,
                        b.servers_active,
                        b.pool_size,
                        b.clients_waiting,
                        percent(b.utilisation)
                    ),
                    None => "no pools in use".into(),
                },
                reasons: if level == Level::Ok {
                    Vec::new()
                } else {
                    vec![format!(
                        "above {} of the pool (alert above {})",
                        percent(t.connections_warn),
                        percent(t.connections_alert)
                    )]
                },
            }
        }
        monitor::Pane::Unavailable { reason } => Check {
            kind: "connections",
            name: "connections (pool)".into(),
            level: Level::Warn,
            value: reason,
            reasons: Vec::new(),
        },
        monitor::Pane::Error { cause } => Check {
            kind: "connections",
            name: "connections (pool)".into(),
            level: Level::Alert,
            value: "unknown".into(),
            reasons: vec![cause],
        },
    }
}

async fn connections(target: &DbTarget, t: &Thresholds) -> Check {
    let fail = |cause: String| Check {
        kind: "connections",
        name: "connections".into(),
        level: Level::Alert,
        value: "unknown".into(),
        reasons: vec![cause],
    };
    let mut m = match monitor::Monitor::connect(target).await {
        Ok(m) => m,
        Err(e) => return fail(e.cause),
    };
    match m.connections().await {
        monitor::Pane::Ok(s) => {
            let c = s.data;
            let level = if c.utilisation > t.connections_alert {
                Level::Alert
            } else if c.utilisation > t.connections_warn {
                Level::Warn
            } else {
                Level::Ok
            };
            Check {
                kind: "connections",
                name: "connections".into(),
                level,
                value: format!(
                    "{} of {} usable ({})",
                    c.total,
                    c.usable_max,
                    percent(c.utilisation)
                ),
                reasons: if level == Level::Ok {
                    Vec::new()
                } else {
                    vec![format!(
                        "above {} of the usable connections (alert above {})",
                        percent(t.connections_warn),
                        percent(t.connections_alert)
                    )]
                },
            }
        }
        monitor::Pane::Unavailable { reason } => Check {
            kind: "connections",
            name: "connections".into(),
            level: Level::Warn,
            value: reason,
            reasons: Vec::new(),
        },
        monitor::Pane::Error { cause } => fail(cause),
    }
}

fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if p.abs() < 1.0 && p != 0.0 {
        format!("{p:.2} %")
    } else {
        format!("{p:.1} %")
    }
}

/// A URL fit to print: no password, no query string (tokens live there).
pub fn redacted_url(url: &url::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.to_string()
}

/// reqwest's error with its sources, without the URL (which may hold a secret).
pub(crate) fn http_cause(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_needs_both_the_ratio_and_a_real_increase() {
        let t = Thresholds::default();
        // 0.2 ms -> 0.6 ms is 3x but noise.
        assert_eq!(judge_latency(Some(0.0006), Some(0.0002), &t).0, Level::Ok);
        // 40 ms -> 70 ms: 1.75x, warn.
        assert_eq!(judge_latency(Some(0.070), Some(0.040), &t).0, Level::Warn);
        // 40 ms -> 90 ms: 2.25x, alert.
        let (level, reasons) = judge_latency(Some(0.090), Some(0.040), &t);
        assert_eq!(level, Level::Alert);
        assert!(
            reasons[0].contains("2.2x the baseline's 40.0 ms"),
            "{reasons:?}"
        );
        // No baseline: nothing to compare with.
        assert_eq!(judge_latency(Some(0.5), None, &t).0, Level::Ok);
    }

    #[test]
    fn printed_urls_hide_passwords_and_query_strings() {
        let u: url::Url = "https://user:hunter22@api.example.com/metrics?token=abc"
            .parse()
            .unwrap();
        let shown = redacted_url(&u);
        assert!(
            !shown.contains("hunter22") && !shown.contains("abc"),
            "{shown}"
        );
        assert!(shown.contains("api.example.com/metrics"));
    }

    #[test]
    fn a_baseline_round_trips_and_a_foreign_file_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.json");
        let b = Baseline {
            version: BASELINE_VERSION,
            captured_at: Utc::now(),
            environment: "production".into(),
            error_rate: Some(0.001),
            errors_per_minute: Some(0.5),
            latency_p95: Some(0.08),
            probes_p95_ms: [("SELECT 1".to_owned(), 0.4)].into_iter().collect(),
            endpoints_ms: BTreeMap::new(),
        };
        b.save(&path).unwrap();
        assert_eq!(Baseline::load(&path).unwrap(), b);
        std::fs::write(&path, "{\"hello\": 1}").unwrap();
        let e = Baseline::load(&path).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Input);
        assert!(e.cause.contains("not a pgdeck baseline"), "{}", e.cause);
    }
}
