//! Database probes: each configured query run several times over the window on a read-only
//! session of its own, its latency's p95 taken. A probe that fails or times out is reported with
//! its cause; a verification query on a table this database lacks is skipped, not failed.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::db::{self, query_error, sqlstate};
use crate::error::Result;
use crate::target::DbTarget;

/// One probe's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub query: String,
    /// Latencies in milliseconds, in the order they ran.
    pub samples_ms: Vec<f64>,
    pub p95_ms: Option<f64>,
    /// Why it stopped early, if it did.
    pub failure: Option<String>,
    /// The query names a table or column this database does not have.
    pub skipped: bool,
}

/// Runs every probe `samples` times, spread over `span`.
pub async fn run(
    target: &DbTarget,
    probes: &[String],
    samples: usize,
    span: Duration,
    timeout: Duration,
) -> Result<Vec<ProbeResult>> {
    let session = db::connect(&target.with_application_name("pgdeck-health")).await?;
    let c = &session.client;
    // lock_timeout fires first: a probe stuck behind a lock is then said to be, rather than
    // merely slow (statement_timeout would stop it at the same moment with no reason given).
    c.batch_execute(&format!(
        "SET default_transaction_read_only = on; SET statement_timeout = {}; SET lock_timeout = {}",
        timeout.as_millis().max(2),
        (timeout.as_millis() * 3 / 4).max(1)
    ))
    .await
    .map_err(|e| query_error("preparing the probe session", &e))?;
    let samples = samples.max(1);
    let pause = span / samples as u32;
    let mut results: Vec<ProbeResult> = probes
        .iter()
        .map(|q| ProbeResult {
            query: q.clone(),
            samples_ms: Vec::with_capacity(samples),
            p95_ms: None,
            failure: None,
            skipped: false,
        })
        .collect();
    for round in 0..samples {
        let started = Instant::now();
        for r in results
            .iter_mut()
            .filter(|r| r.failure.is_none() && !r.skipped)
        {
            let t = Instant::now();
            match c.simple_query(&r.query).await {
                Ok(_) => r.samples_ms.push(t.elapsed().as_secs_f64() * 1000.0),
                Err(e)
                    if matches!(
                        sqlstate(&e),
                        Some(&SqlState::UNDEFINED_TABLE | &SqlState::UNDEFINED_COLUMN)
                    ) =>
                {
                    r.skipped = true
                }
                Err(e) => {
                    let within = humantime::format_duration(timeout);
                    let cause = match sqlstate(&e) {
                        Some(&SqlState::QUERY_CANCELED) => {
                            format!("did not answer within {within}")
                        }
                        Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                            format!(
                                "did not answer within {within}: it waits for a lock another session holds"
                            )
                        }
                        _ => query_error("running the probe", &e).cause,
                    };
                    r.failure = Some(cause);
                    if c.is_closed() {
                        break;
                    }
                }
            }
        }
        if c.is_closed() {
            for r in results.iter_mut().filter(|r| r.failure.is_none()) {
                r.failure = Some("the connection to the server was lost".into());
            }
            break;
        }
        if round + 1 < samples {
            tokio::time::sleep(pause.saturating_sub(started.elapsed())).await;
        }
    }
    for r in &mut results {
        r.p95_ms = p95(&r.samples_ms);
    }
    Ok(results)
}

/// The nearest-rank 95th percentile.
pub fn p95(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((0.95 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    #[test]
    fn p95_is_the_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(super::p95(&v), Some(19.0));
        assert_eq!(super::p95(&[3.0]), Some(3.0));
        assert_eq!(super::p95(&[]), None);
    }
}
