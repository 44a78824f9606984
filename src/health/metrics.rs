//! The application's Prometheus metrics: one scrape is a [`Reading`] of cumulative counters and
//! histogram buckets; two readings make a [`Window`] with the error rate, 5xx per minute and p95
//! latency between them. Parsing is prometheus-parse's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use serde::Serialize;

use super::MetricsSource;
use crate::error::{Error, Result};

/// Cumulative values read from one scrape.
#[derive(Debug, Clone)]
pub struct Reading {
    pub at: Instant,
    /// Sum of the requests counter over all its series; `None` if the scrape lacks it.
    pub requests: Option<f64>,
    /// Sum of the 5xx series (or of the errors counter).
    pub errors: Option<f64>,
    /// Cumulative count per upper bound (`le`), summed over the histogram's series.
    pub latency_buckets: Option<BTreeMap<Bound, f64>>,
}

/// A bucket's upper bound, ordered; `+Inf` sorts last.
#[derive(Debug, Clone, Copy)]
pub struct Bound(pub f64);

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// What happened between two readings.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub seconds: f64,
    pub requests: f64,
    pub errors: f64,
    /// errors / requests; `None` without requests in the window.
    pub error_rate: Option<f64>,
    pub errors_per_minute: f64,
    /// p95 latency in seconds from the histogram's buckets; `None` without observations.
    pub latency_p95: Option<f64>,
}

/// Reads the metrics endpoint once.
pub async fn read(client: &reqwest::Client, source: &MetricsSource) -> Result<Reading> {
    let shown = super::redacted_url(&source.url);
    let mut request = client.get(source.url.clone()).timeout(source.timeout);
    if let Some(token) = &source.bearer_token {
        request = request.bearer_auth(token.expose());
    }
    let response = request.send().await.map_err(|e| {
        Error::runtime(
            format!("cannot read metrics from {shown}: {}", super::http_cause(e)),
            "check health.metrics.url and that the application is up",
        )
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::runtime(
            format!("metrics endpoint {shown} answered {status}"),
            "check health.metrics.url (and bearer_token_env if it needs a token)",
        ));
    }
    let body = response.text().await.map_err(|e| {
        Error::runtime(
            format!("reading metrics from {shown}: {}", super::http_cause(e)),
            "check the application's metrics endpoint",
        )
    })?;
    Ok(parse(&body, source, Instant::now()))
}

/// Turns the exposition text into a reading.
pub fn parse(body: &str, source: &MetricsSource, at: Instant) -> Reading {
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    // parse only fails on I/O errors, which lines from a string cannot have.
    let scrape = Scrape::parse(lines).unwrap_or(Scrape {
        docs: Default::default(),
        samples: Vec::new(),
    });
    let scalar = |v: &Value| match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => Some(*x),
        _ => None,
    };
    let mut requests = None;
    let mut errors = None;
    for s in &scrape.samples {
        let Some(x) = scalar(&s.value).filter(|x| x.is_finite()) else {
            continue;
        };
        if s.metric == source.requests {
            *requests.get_or_insert(0.0) += x;
        }
        let is_error = match &source.errors {
            Some(name) => s.metric == *name,
            None => {
                s.metric == source.requests
                    && s.labels
                        .get(&source.status_label)
                        .is_some_and(|code| code.starts_with('5'))
            }
        };
        if is_error {
            *errors.get_or_insert(0.0) += x;
        } else if source.errors.is_none() && s.metric == source.requests {
            // The counter exists, so zero 5xx is a real zero.
            errors.get_or_insert(0.0);
        }
    }
    let latency_buckets = source.latency.as_ref().and_then(|name| {
        let mut buckets: Option<BTreeMap<Bound, f64>> = None;
        for s in &scrape.samples {
            if s.metric != *name {
                continue;
            }
            if let Value::Histogram(hs) = &s.value {
                let b = buckets.get_or_insert_with(BTreeMap::new);
                for h in hs {
                    *b.entry(Bound(h.less_than)).or_insert(0.0) += h.count;
                }
            }
        }
        buckets
    });
    Reading {
        at,
        requests,
        errors,
        latency_buckets,
    }
}

/// The change between two readings of the same endpoint. A counter that went down was reset
/// (the application restarted): its current value is what happened since.
pub fn window(before: &Reading, after: &Reading) -> Window {
    let seconds = after
        .at
        .saturating_duration_since(before.at)
        .max(Duration::from_millis(1))
        .as_secs_f64();
    let delta = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b >= a => b - a,
        (_, Some(b)) => b,
        _ => 0.0,
    };
    let requests = delta(before.requests, after.requests);
    let errors = delta(before.errors, after.errors);
    let latency_p95 = after.latency_buckets.as_ref().and_then(|now| {
        let diff: BTreeMap<Bound, f64> = match &before.latency_buckets {
            Some(then) if now.iter().all(|(b, c)| then.get(b).is_none_or(|t| c >= t)) => now
                .iter()
                .map(|(b, c)| (*b, c - then.get(b).copied().unwrap_or(0.0)))
                .collect(),
            _ => now.clone(),
        };
        quantile(&diff, 0.95)
    });
    Window {
        seconds,
        requests,
        errors,
        error_rate: (requests > 0.0).then(|| (errors / requests).min(1.0)),
        errors_per_minute: errors / seconds * 60.0,
        latency_p95,
    }
}

/// The q-quantile of cumulative buckets, interpolated linearly inside the bucket it falls in,
/// as Prometheus' `histogram_quantile` does. If it falls in the `+Inf` bucket, the largest finite
/// bound is the answer.
pub fn quantile(buckets: &BTreeMap<Bound, f64>, q: f64) -> Option<f64> {
    let total = buckets
        .iter()
        .next_back()
        .map(|(_, c)| *c)
        .filter(|c| *c > 0.0)?;
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for (bound, count) in buckets {
        if *count >= rank {
            if bound.0.is_infinite() {
                return Some(lower);
            }
            let in_bucket = count - below;
            if in_bucket <= 0.0 {
                return Some(bound.0);
            }
            return Some(lower + (bound.0 - lower) * (rank - below) / in_bucket);
        }
        lower = bound.0;
        below = *count;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> MetricsSource {
        MetricsSource {
            url: "http://localhost/metrics".parse().unwrap(),
            requests: "http_requests_total".into(),
            errors: None,
            status_label: "status".into(),
            latency: Some("http_request_duration_seconds".into()),
            timeout: Duration::from_secs(1),
            bearer_token: None,
        }
    }

    const FIRST: &str = "\
# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{route=\"/a\",status=\"200\"} 900
http_requests_total{route=\"/a\",status=\"503\"} 10
http_requests_total{route=\"/b\",status=\"500\"} 5
http_requests_total{route=\"/b\",status=\"404\"} 85
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.1\"} 80
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.5\"} 95
http_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 100
http_request_duration_seconds_sum{route=\"/a\"} 12
http_request_duration_seconds_count{route=\"/a\"} 100
";

    #[test]
    fn a_scrape_sums_series_and_counts_5xx_by_the_status_label() {
        let r = parse(FIRST, &source(), Instant::now());
        assert_eq!(r.requests, Some(1000.0));
        assert_eq!(r.errors, Some(15.0));
        let b = r.latency_buckets.unwrap();
        assert_eq!(b.get(&Bound(0.1)), Some(&80.0));
        assert_eq!(b.get(&Bound(f64::INFINITY)), Some(&100.0));
    }

    #[test]
    fn a_window_takes_differences_and_survives_a_counter_reset() {
        let t0 = Instant::now();
        let before = parse(FIRST, &source(), t0);
        let later = FIRST
            .replace("} 900", "} 1880")
            .replace("status=\"503\"} 10", "status=\"503\"} 30");
        let after = parse(&later, &source(), t0 + Duration::from_secs(30));
        let w = window(&before, &after);
        assert_eq!(w.requests, 1000.0);
        assert_eq!(w.errors, 20.0);
        assert_eq!(w.error_rate, Some(0.02));
        assert!((w.errors_per_minute - 40.0).abs() < 1e-9);
        // A restart: everything is lower than before, so the new values are the window.
        let restarted = parse(
            "http_requests_total{status=\"200\"} 50\nhttp_requests_total{status=\"500\"} 1\n",
            &source(),
            t0 + Duration::from_secs(60),
        );
        let w = window(&after, &restarted);
        assert_eq!((w.requests, w.errors), (51.0, 1.0));
    }

    #[test]
    fn p95_interpolates_inside_the_bucket_like_histogram_quantile() {
        let b: BTreeMap<Bound, f64> = [(0.1, 80.0), (0.5, 95.0), (f64::INFINITY, 100.0)]
            .into_iter()
            .map(|(k, v)| (Bound(k), v))
            .collect();
        // rank 95 is the top of the 0.1..0.5 bucket.
        assert!((quantile(&b, 0.95).unwrap() - 0.5).abs() < 1e-9);
        // rank 90: two thirds into that bucket.
        assert!((quantile(&b, 0.90).unwrap() - (0.1 + 0.4 * 10.0 / 15.0)).abs() < 1e-9);
        // Only +Inf above: the largest finite bound.
        assert_eq!(quantile(&b, 0.99), Some(0.5));
        let empty: BTreeMap<Bound, f64> = [(Bound(0.1), 0.0)].into_iter().collect();
        assert_eq!(quantile(&empty, 0.95), None);
    }

    #[test]
    fn a_separate_errors_counter_and_missing_metrics_are_told_apart() {
        let mut s = source();
        s.errors = Some("http_errors_total".into());
        let r = parse(
            "http_requests_total 100\nhttp_errors_total{kind=\"db\"} 3\nhttp_errors_total{kind=\"x\"} 2\n",
            &s,
            Instant::now(),
        );
        assert_eq!((r.requests, r.errors), (Some(100.0), Some(5.0)));
        let r = parse("other_metric 1\n", &source(), Instant::now());
        assert_eq!((r.requests, r.errors), (None, None));
        assert!(r.latency_buckets.is_none());
    }
}
