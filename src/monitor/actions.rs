//! Cancel and terminate, aimed at a backend by pid AND backend_start: a pid can be reused by a
//! new session between the moment the operator saw it and the moment they act.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::db::{self, query_error};
use crate::error::Result;
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

/// What became of a signal to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signalled {
    /// A cancel: the backend runs that query no more (or was running none). A terminate: the
    /// session has ended.
    Done,
    /// The chosen backend had ended, or its pid belonged to another session, when the signal
    /// was to be sent: nothing was sent.
    Gone,
    /// The server sent nothing: `pg_cancel_backend` / `pg_terminate_backend` returned false (the
    /// pid is not a backend it signals, e.g. an auxiliary process such as the checkpointer).
    NotSent,
    /// Sent, but the query still runs (a cancel) or the session still lives (a terminate) this
    /// long after.
    StillRunning(Duration),
}

/// How long a signal's effect is waited for before it is called [`Signalled::StillRunning`].
pub const SIGNAL_WAIT: Duration = Duration::from_secs(5);

/// Sends `signal` to `pid` if it is still the backend that started at `backend_start`, then
/// waits (up to [`SIGNAL_WAIT`]) for it to take effect. Whether it may be sent at all
/// (read-only mode, a confirmation) is the release room's guard; an error is a failure to ask
/// the server (no connection, no privilege).
pub async fn signal_backend(
    target: &DbTarget,
    pid: i32,
    backend_start: DateTime<Utc>,
    signal: Signal,
) -> Result<Signalled> {
    let doing = match signal {
        Signal::Cancel => "cancelling",
        Signal::Terminate => "terminating",
    };
    let session = db::connect(&target.with_application_name("pgdeck-monitor-action")).await?;
    let client = &session.client;
    let row = client
        .query_opt(
            "SELECT backend_start FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .map_err(|e| query_error("looking up the backend", &e))?;
    let started: Option<DateTime<Utc>> = row.and_then(|r| r.get(0));
    if !same_backend_start(started, backend_start) {
        return Ok(Signalled::Gone);
    }
    // Checked and sent in one statement: between a check and a second query the pid could be
    // given to a new session. No row: the backend ended in between.
    let sql = match signal {
        Signal::Cancel => {
            "SELECT pg_cancel_backend(pid), state = 'active', query_start FROM pg_stat_activity \
             WHERE pid = $1 AND backend_start = $2"
        }
        Signal::Terminate => {
            "SELECT pg_terminate_backend(pid), state = 'active', query_start FROM pg_stat_activity \
             WHERE pid = $1 AND backend_start = $2"
        }
    };
    let Some(sent) = client
        .query_opt(sql, &[&pid, &started])
        .await
        .map_err(|e| query_error(&format!("{doing} backend {pid}"), &e))?
    else {
        return Ok(Signalled::Gone);
    };
    if !sent.get::<_, bool>(0) {
        return Ok(Signalled::NotSent);
    }
    let active: Option<bool> = sent.get(1);
    let query_start: Option<DateTime<Utc>> = sent.get(2);
    if signal == Signal::Cancel && active != Some(true) {
        // No query was running: there was nothing for the cancel to stop.
        return Ok(Signalled::Done);
    }
    let since = Instant::now();
    while since.elapsed() < SIGNAL_WAIT {
        let now = client
            .query_opt(
                "SELECT state = 'active', query_start FROM pg_stat_activity \
                 WHERE pid = $1 AND backend_start = $2",
                &[&pid, &started],
            )
            .await
            .map_err(|e| query_error(&format!("watching backend {pid} after {doing} it"), &e))?;
        let done = match (&now, signal) {
            (None, _) => true,
            (Some(_), Signal::Terminate) => false,
            (Some(r), Signal::Cancel) => {
                r.get::<_, Option<bool>>(0) != Some(true)
                    || r.get::<_, Option<DateTime<Utc>>>(1) != query_start
            }
        };
        if done {
            return Ok(Signalled::Done);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Signalled::StillRunning(since.elapsed()))
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

impl Backend {
    /// `pid 4242  user app  application web` ("-" for what it does not say).
    pub fn who(&self) -> String {
        let or_dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        format!(
            "pid {}  user {}  application {}",
            self.pid,
            or_dash(&self.user),
            or_dash(&self.application)
        )
    }
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
