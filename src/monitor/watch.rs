//! Continuous sampling that survives the server going away: while the connection is lost, the
//! last snapshot is kept (stale, with its age) and the monitor reconnects with backoff.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Monitor, MonitorSettings, Snapshot};
use crate::target::DbTarget;

/// What one tick produced.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum Update {
    Fresh {
        snapshot: Box<Snapshot>,
    },
    /// No connection: the last snapshot (if any) with its age, why, and when the next try is.
    Stale {
        last_at: Option<DateTime<Utc>>,
        age_seconds: Option<f64>,
        cause: String,
        attempt: u32,
        retry_in_ms: u64,
    },
}

pub struct Watch {
    target: DbTarget,
    settings: MonitorSettings,
    monitor: Option<Monitor>,
    last: Option<Snapshot>,
    attempt: u32,
}

/// Short enough that the monitor is back within seconds of the server; long enough to be no
/// burden on a server that is struggling to come up.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Watch {
    pub fn new(target: &DbTarget, settings: MonitorSettings) -> Watch {
        Watch {
            target: target.clone(),
            settings,
            monitor: None,
            last: None,
            attempt: 0,
        }
    }

    /// The last fresh snapshot, if any.
    pub fn last(&self) -> Option<&Snapshot> {
        self.last.as_ref()
    }

    /// Samples once, reconnecting first if needed. Never fails: a lost server is a stale update.
    pub async fn tick(&mut self) -> Update {
        if self.monitor.as_ref().is_none_or(|m| m.is_closed()) {
            match Monitor::connect(&self.target).await {
                Ok(m) => {
                    self.monitor = Some(m);
                }
                Err(e) => return self.stale(e.cause),
            }
        }
        let Some(monitor) = self.monitor.as_mut() else {
            return self.stale("not connected".into());
        };
        let snapshot = monitor.snapshot(&self.settings).await;
        if monitor.is_closed() {
            self.monitor = None;
            return self.stale("the connection to the server was lost".into());
        }
        self.attempt = 0;
        self.last = Some(snapshot.clone());
        Update::Fresh {
            snapshot: Box::new(snapshot),
        }
    }

    /// How long to wait before the next tick: the interval when healthy, the backoff when not.
    pub fn next_delay(&self, interval: Duration) -> Duration {
        if self.attempt == 0 {
            interval
        } else {
            backoff(self.attempt)
        }
    }

    fn stale(&mut self, cause: String) -> Update {
        self.attempt += 1;
        let now = Utc::now();
        Update::Stale {
            last_at: self.last.as_ref().map(|s| s.at),
            age_seconds: self
                .last
                .as_ref()
                .map(|s| (now - s.at).num_milliseconds() as f64 / 1000.0),
            cause,
            attempt: self.attempt,
            retry_in_ms: backoff(self.attempt).as_millis() as u64,
        }
    }
}

/// 250 ms, doubling, at most 2 s.
pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250)
        .saturating_mul(1 << attempt.saturating_sub(1).min(5))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_two_seconds() {
        let got: Vec<u64> = (1..=6).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(got, [250, 500, 1000, 2000, 2000, 2000]);
    }
}
