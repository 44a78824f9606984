//! Cancel and terminate, aimed at a backend by pid AND backend_start: a pid can be reused by a
//! new session between the moment the operator saw it and the moment they act.

use chrono::{DateTime, Utc};

use crate::config::DbTarget;
use crate::db::{self, query_error};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `pg_cancel_backend`: stop the running query; the session stays.
    Cancel,
    /// `pg_terminate_backend`: end the session; its transaction rolls back.
    Terminate,
}

/// Sends `signal` to `pid` if it is still the backend that started at `backend_start`.
/// `read_only` (the monitor's read-only mode) refuses before anything is sent.
pub async fn signal_backend(
    target: &DbTarget,
    pid: i32,
    backend_start: DateTime<Utc>,
    signal: Signal,
    read_only: bool,
) -> Result<()> {
    let verb = match signal {
        Signal::Cancel => "cancel",
        Signal::Terminate => "terminate",
    };
    if read_only {
        return Err(Error::refused(
            format!("read-only mode: pgdeck will not {verb} backend {pid}"),
            "run without --read-only (and without read_only = true in the environment) to act on sessions",
        ));
    }
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
    // pg_stat_activity has microsecond precision; compare at that precision.
    let same = started.is_some_and(|s| {
        (s - backend_start)
            .num_microseconds()
            .is_some_and(|d| d.abs() < 1)
    });
    if !same {
        return Err(Error::refused(
            format!(
                "pid {pid} now belongs to another backend (started {}), not the one you chose",
                started.map(|s| s.to_rfc3339()).unwrap_or_default()
            ),
            "refresh the monitor and choose again",
        ));
    }
    let sql = match signal {
        Signal::Cancel => "SELECT pg_cancel_backend($1)",
        Signal::Terminate => "SELECT pg_terminate_backend($1)",
    };
    let done: bool = session
        .client
        .query_one(sql, &[&pid])
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
