//! Streaming replication as the server sees it: each standby in `pg_stat_replication` (state,
//! sync state, how far sent / written / flushed / replayed WAL is behind, in bytes and in time),
//! the replication slots with what they retain, and on a standby its own recovery.

use serde::Serialize;
use tokio_postgres::Client;

use crate::db::query_error;
use crate::error::Result;

/// A standby streaming from this server.
#[derive(Debug, Clone, Serialize)]
pub struct Standby {
    pub pid: i32,
    /// Its `application_name` (the `cluster_name` or what `primary_conninfo` says), else its
    /// address.
    pub name: String,
    pub client: String,
    /// startup, catchup, streaming, backup, stopping.
    pub state: String,
    /// async, potential, sync, quorum.
    pub sync_state: String,
    /// WAL this server has written and the standby has not yet been sent / written / flushed /
    /// replayed, in bytes. None while it reports nothing yet.
    pub sent_lag_bytes: Option<i64>,
    pub write_lag_bytes: Option<i64>,
    pub flush_lag_bytes: Option<i64>,
    pub replay_lag_bytes: Option<i64>,
    /// PostgreSQL's own lag times (None once the standby has caught up and is idle).
    pub write_lag_seconds: Option<f64>,
    pub flush_lag_seconds: Option<f64>,
    pub replay_lag_seconds: Option<f64>,
}

impl Standby {
    /// "standby1 (streaming, async)".
    pub fn label(&self) -> String {
        format!("{} ({}, {})", self.name, self.state, self.sync_state)
    }
}

/// A replication slot and the WAL it keeps.
#[derive(Debug, Clone, Serialize)]
pub struct Slot {
    pub name: String,
    /// physical or logical.
    pub slot_type: String,
    pub database: Option<String>,
    pub active: bool,
    /// WAL the server keeps for it, from its restart_lsn to now.
    pub retained_bytes: Option<i64>,
    /// reserved, extended, unreserved, lost.
    pub wal_status: Option<String>,
}

/// When the server itself is a standby: its recovery.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// WAL received and not yet replayed, in bytes.
    pub replay_behind_bytes: Option<i64>,
    /// Since the last replayed transaction committed on the primary.
    pub last_replay_seconds: Option<f64>,
    pub replay_paused: bool,
}

/// The replication pane.
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    /// The server is a standby (`pg_is_in_recovery()`).
    pub in_recovery: bool,
    pub recovery: Option<Recovery>,
    pub standbys: Vec<Standby>,
    pub slots: Vec<Slot>,
}

/// The WAL position lags are measured from: what this server has written, or on a standby what
/// it has received (a cascading standby's standbys follow that).
const NOW_LSN: &str = "(SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
     ELSE pg_current_wal_lsn() END)";

/// The standbys: what `pg_stat_replication` shows, read from the WAL senders and each one's
/// own activity entry rather than the view, which joins every session's.
pub async fn standbys(c: &Client) -> Result<Vec<Standby>> {
    let rows = c
        .query(
            &format!(
                "WITH now_lsn AS (SELECT {NOW_LSN} AS lsn) \
                 SELECT s.pid, coalesce(nullif(a.application_name, ''), host(a.client_addr), 'local'), \
                        coalesce(host(a.client_addr), 'local'), coalesce(s.state, 'unknown'), \
                        coalesce(s.sync_state, 'unknown'), \
                        pg_wal_lsn_diff(n.lsn, s.sent_lsn)::bigint, pg_wal_lsn_diff(n.lsn, s.write_lsn)::bigint, \
                        pg_wal_lsn_diff(n.lsn, s.flush_lsn)::bigint, pg_wal_lsn_diff(n.lsn, s.replay_lsn)::bigint, \
                        extract(epoch FROM s.write_lag)::float8, extract(epoch FROM s.flush_lag)::float8, \
                        extract(epoch FROM s.replay_lag)::float8 \
                 FROM pg_stat_get_wal_senders() s LEFT JOIN LATERAL pg_stat_get_activity(s.pid) a ON true, \
                      now_lsn n ORDER BY 2, 1"
            ),
            &[],
        )
        .await
        .map_err(|e| query_error("reading pg_stat_replication", &e))?;
    Ok(rows
        .iter()
        .map(|r| Standby {
            pid: r.get(0),
            name: r.get(1),
            client: r.get(2),
            state: r.get(3),
            sync_state: r.get(4),
            // A standby behind by nothing can be a few bytes ahead of a position read a moment
            // earlier: never negative.
            sent_lag_bytes: r.get::<_, Option<i64>>(5).map(|b| b.max(0)),
            write_lag_bytes: r.get::<_, Option<i64>>(6).map(|b| b.max(0)),
            flush_lag_bytes: r.get::<_, Option<i64>>(7).map(|b| b.max(0)),
            replay_lag_bytes: r.get::<_, Option<i64>>(8).map(|b| b.max(0)),
            write_lag_seconds: r.get(9),
            flush_lag_seconds: r.get(10),
            replay_lag_seconds: r.get(11),
        })
        .collect())
}

pub async fn replication(c: &Client, sees_all: bool) -> Result<Option<Replication>> {
    let slots_sql = format!(
        "SELECT slot_name::text, slot_type, database::text, active, \
                pg_wal_lsn_diff({NOW_LSN}, restart_lsn)::bigint, wal_status \
         FROM pg_replication_slots ORDER BY 1"
    );
    let slots = c.query(&slots_sql, &[]);
    let recovery = c.query_one(
        "SELECT pg_is_in_recovery(), \
                CASE WHEN pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint END, \
                CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END, \
                CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END",
        &[],
    );
    // Sent together: one round trip for the three.
    let (standbys, slots, recovery) =
        futures_util::future::try_join3(standbys(c), async { Ok(slots.await) }, async {
            Ok(recovery.await)
        })
        .await?;
    let slots = slots.map_err(|e| query_error("reading pg_replication_slots", &e))?;
    let recovery = recovery.map_err(|e| query_error("reading the recovery state", &e))?;
    // Without pg_monitor a standby's positions come back empty: the lags would read as
    // unknown for every standby, so say the pane is unavailable instead.
    if !sees_all && standbys.iter().any(|s| s.state == "unknown") {
        return Ok(None);
    }
    let in_recovery: bool = recovery.get(0);
    Ok(Some(Replication {
        in_recovery,
        recovery: in_recovery.then(|| Recovery {
            replay_behind_bytes: recovery.get::<_, Option<i64>>(1).map(|b| b.max(0)),
            last_replay_seconds: recovery.get(2),
            replay_paused: recovery.get(3),
        }),
        standbys,
        slots: slots
            .iter()
            .map(|r| Slot {
                name: r.get(0),
                slot_type: r.get(1),
                database: r.get(2),
                active: r.get(3),
                retained_bytes: r.get::<_, Option<i64>>(4).map(|b| b.max(0)),
                wal_status: r.get(5),
            })
            .collect(),
    }))
}
