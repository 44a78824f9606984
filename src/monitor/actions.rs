//! Cancel and terminate, aimed at a backend by pid AND backend_start: a pid can be reused by a
//! new session between the moment the operator saw it and the moment they act.

use chrono::{DateTime, Utc};

use crate::db::{self, query_error};
use crate::error::{Error, Result};
use crate::target::DbTarget;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `pg_cancel_backend`: stop the running query; the session stays.
    Cancel,
    /// `pg_terminate_backend`: end the session; its transaction rolls back.
    Terminate,
}

/// Whether a backend's start (as pg_stat_activity has it) is the one given: compared at the
/// microsecond precision pg_stat_activity has.
pub fn same_backend_start(started: Option<DateTime<Utc>>, given: DateTime<Utc>) -> bool {
    started.is_some_and(|s| (s - given).num_microseconds().is_some_and(|d| d.abs() < 1))
}

/// Sends `signal` to `pid` if it is still the backend that started at `backend_start`. Whether
/// it may be sent at all (read-only mode, a confirmation) is the release room's guard.
pub async fn signal_backend(
    target: &DbTarget,
    pid: i32,
    backend_start: DateTime<Utc>,
    signal: Signal,
) -> Result<()> {
    let verb = match signal {
        Signal::Cancel => "cancel",
        Signal::Terminate => "terminate",
    };
    let session = db::connect(&target.with_application_name("pgdeck-monitor-action")).await?;
    let row = session
        .client
        .query_opt(
            "SELECT backend_start FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .map_err(|e| query_error("looking up the backend", &e))?;
    let Some(row) = row else {
        return Err(Error::refused(
            format!("backend {pid} no longer exists"),
            "nothing to do; refresh the monitor",
        ));
    };
    let started: Option<DateTime<Utc>> = row.get(0);
    if !same_backend_start(started, backend_start) {
        return Err(Error::refused(
            format!(
                "pid {pid} now belongs to another backend (started {}), not the one you chose",
                started.map(|s| s.to_rfc3339()).unwrap_or_default()
            ),
            "refresh the monitor and choose again",
        ));
    }
    // Checked and sent in one statement: between a check and a second query the pid could be
    // given to a new session.
    let sql = match signal {
        Signal::Cancel => {
            "SELECT coalesce((SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
             WHERE pid = $1 AND backend_start = $2), false)"
        }
        Signal::Terminate => {
            "SELECT coalesce((SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid = $1 AND backend_start = $2), false)"
        }
    };
    let done: bool = session
        .client
        .query_one(sql, &[&pid, &started])
        .await
        .map_err(|e| query_error(&format!("{verb}ing backend {pid}"), &e))?
        .get(0);
    if done {
        Ok(())
    } else {
        Err(Error::runtime(
            format!("the server did not {verb} backend {pid}"),
            "it may have just ended; refresh the monitor",
        ))
    }
}

/// A backend as it is now, for a confirmation to name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backend {
    pub pid: i32,
    pub backend_start: Option<DateTime<Utc>>,
    pub user: String,
    pub application: String,
    /// "active", "idle in transaction", ...
    pub state: String,
    pub wait_event: Option<String>,
    pub query: String,
    /// Seconds the current (or last) query has run, and the open transaction.
    pub query_seconds: Option<f64>,
    pub transaction_seconds: Option<f64>,
    /// Every lock it holds or waits for.
    pub locks: Vec<BackendLock>,
    /// The sessions it waits for (pg_blocking_pids).
    pub blocked_by: Vec<i32>,
    /// The sessions waiting for it.
    pub blocking: Vec<i32>,
}

/// One lock of a backend, from pg_locks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendLock {
    pub locktype: String,
    pub mode: String,
    pub granted: bool,
    /// The relation, when it is one.
    pub relation: Option<String>,
}

/// The backend `pid`, read now; None when it is gone.
pub async fn backend(target: &DbTarget, pid: i32) -> Result<Option<Backend>> {
    let session = db::connect(&target.with_application_name("pgdeck-monitor-action")).await?;
    let row = session
        .client
        .query_opt(
            "SELECT backend_start, coalesce(usename::text, ''), coalesce(application_name, ''), \
                    coalesce(state, ''), wait_event_type || ':' || wait_event, coalesce(query, ''), \
                    extract(epoch FROM now() - query_start)::float8, \
                    extract(epoch FROM now() - xact_start)::float8 \
             FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .map_err(|e| query_error("looking up the backend", &e))?;
    let Some(r) = row else {
        return Ok(None);
    };
    let locks = session
        .client
        .query(
            "SELECT locktype, mode, granted, \
                    CASE WHEN relation IS NULL THEN NULL ELSE relation::regclass::text END \
             FROM pg_locks WHERE pid = $1 \
             ORDER BY granted, locktype = 'relation' DESC, mode",
            &[&pid],
        )
        .await
        .map_err(|e| query_error("reading the backend's locks", &e))?
        .iter()
        .map(|l| BackendLock {
            locktype: l.get(0),
            mode: l.get(1),
            granted: l.get(2),
            relation: l.get(3),
        })
        .collect();
    let chain = session
        .client
        .query_one(
            "SELECT pg_blocking_pids($1), \
                    coalesce(array(SELECT a.pid FROM pg_stat_activity a \
                                   WHERE $1 = ANY(pg_blocking_pids(a.pid)) ORDER BY a.pid), '{}')",
            &[&pid],
        )
        .await
        .map_err(|e| query_error("reading the backend's lock queue", &e))?;
    Ok(Some(Backend {
        pid,
        backend_start: r.get(0),
        user: r.get(1),
        application: r.get(2),
        state: r.get(3),
        wait_event: r.get(4),
        query: r.get(5),
        query_seconds: r.get(6),
        transaction_seconds: r.get(7),
        locks,
        blocked_by: chain.get(0),
        blocking: chain.get(1),
    }))
}
