//! The deploy's pause for its standbys: before each migration (and each statement of one that
//! runs statement by statement), while a standby's replay lag is above `max_replica_lag`, the
//! deploy waits, says how far behind the standby is and how long it has waited, and gives up
//! after `replica_lag_wait`. A big migration's WAL reaches the standbys first; the next one
//! waits until they have replayed it, so read replicas do not fall minutes behind.

use std::time::Duration;

use tokio_postgres::{Client, Statement};

use crate::db::query_error;
use crate::error::{Error, ErrorKind, Remedy, Result};
use crate::units::{human_bytes, human_duration};

/// How often the lag is read again while waiting.
pub const POLL: Duration = Duration::from_secs(1);

/// A standby's replay lag as the primary sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub replica: String,
    pub bytes: i64,
    pub seconds: Option<f64>,
}

/// The standby furthest behind in replay: its name, its replay lag in bytes and seconds.
pub const WORST_SQL: &str = "SELECT coalesce(nullif(application_name, ''), host(client_addr), 'local'), \
            greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint, \
            extract(epoch FROM replay_lag)::float8 \
     FROM pg_stat_replication WHERE replay_lsn IS NOT NULL \
     ORDER BY 2 DESC LIMIT 1";

/// The standby furthest behind in replay, if any streams from this server and reports a
/// position (without pg_monitor the positions are hidden and nothing is waited for), by
/// [`WORST_SQL`] prepared on `client`.
pub async fn worst(client: &Client, query: &Statement) -> Result<Option<Lag>> {
    let row = client
        .query_opt(query, &[])
        .await
        .map_err(|e| query_error("reading the standbys' replay lag", &e))?;
    Ok(row.map(|r| Lag {
        replica: r.get(0),
        bytes: r.get(1),
        seconds: r.get(2),
    }))
}

/// "waiting for replica standby1: replay lag 3.2 MB / 4s, waited 2s (max_replica_lag 1 MB,
/// gives up after 5m)"
pub fn describe_wait(
    replica: &str,
    lag_bytes: i64,
    lag_seconds: Option<f64>,
    waited_ms: u64,
    max_lag_bytes: i64,
    wait_limit_ms: u64,
) -> String {
    format!(
        "waiting for replica {replica}: replay lag {}{}, waited {} (max_replica_lag {}, gives up after {})",
        human_bytes(lag_bytes),
        lag_seconds
            .map(|s| format!(" / {s:.0}s"))
            .unwrap_or_default(),
        human_duration(Duration::from_millis(waited_ms)),
        human_bytes(max_lag_bytes),
        human_duration(Duration::from_millis(wait_limit_ms)),
    )
}

/// Why the deploy stopped waiting.
pub enum Ended {
    /// Every standby is within the bound (or none streams).
    CaughtUp { waited: Option<(Lag, Duration)> },
    /// The operator cancelled.
    Cancelled,
    /// `replica_lag_wait` passed.
    GaveUp(Error),
}

/// The error of a deploy that gave up: exit code 17.
pub fn gave_up(lag: &Lag, max: i64, waited: Duration, before: &str) -> Error {
    Error::new(
        ErrorKind::ReplicaLag,
        format!(
            "gave up waiting for replica {} after {}: its replay lag is {}{}, above max_replica_lag {}; {before} did not start",
            lag.replica,
            human_duration(waited),
            human_bytes(lag.bytes),
            lag.seconds
                .map(|s| format!(" / {s:.0}s"))
                .unwrap_or_default(),
            human_bytes(max),
        ),
        "deploy again once the standby has caught up (its replay may be paused or its disk slow), or raise replica_lag_wait / max_replica_lag for this environment",
    )
    .with(Remedy::Monitor)
    .with(Remedy::Deploy)
}
