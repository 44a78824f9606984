//! The data behind the live panes: a guest connection to the server (read-only,
//! `application_name=pgdeck-monitor`, statement_timeout, short lock_timeout, left out of its own
//! views) and collectors that each run one query and return typed rows with their own cost.
//! The [`logs`] follow the application's log and the server's own. Nothing here draws; the CLI
//! prints samples, the console renders them.

mod actions;
mod collectors;
pub mod host;
pub mod logs;
pub mod watch;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::db::{self, query_error};
use crate::error::Result;
use crate::target::DbTarget;
pub use actions::{
    Backend, BackendLock, SIGNAL_WAIT, Signal, Signalled, backend, same_backend_start,
    signal_backend,
};
pub use collectors::{Blocker, BlockingTree, Connections, LongQuery, Progress, TableSize, Victim};
pub use host::{Host, HostProbe};

/// What the monitor collects and how.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// A non-idle session whose query or transaction is older than this is long-running.
    pub long_query: Duration,
    /// How many of the largest tables to show.
    pub top_tables: usize,
    /// The runbook's alert: connections above this share of the usable maximum.
    pub connections_alert: f64,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            long_query: Duration::from_secs(5),
            top_tables: 10,
            connections_alert: 0.8,
        }
    }
}

/// One collector's result: the rows, when, and what the query cost.
#[derive(Debug, Clone, Serialize)]
pub struct Sample<T> {
    pub at: DateTime<Utc>,
    pub cost_ms: f64,
    pub data: T,
}

/// A pane's state: data, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Pane<T> {
    Ok(Sample<T>),
    /// The role lacks a privilege ("n/a (needs pg_monitor)"): unknown, never shown as zero.
    Unavailable {
        reason: String,
    },
    Error {
        cause: String,
    },
}

/// Every pane once.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    pub server_version: String,
    /// Whether the monitoring role sees other sessions' details (superuser or pg_monitor).
    pub sees_all_sessions: bool,
    pub connections: Pane<Connections>,
    pub long_running: Pane<Vec<LongQuery>>,
    pub blocking: Pane<BlockingTree>,
    pub tables: Pane<Vec<TableSize>>,
    pub progress: Pane<Vec<Progress>>,
    /// Only when the server runs on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
}

/// The monitor's own session.
pub struct Monitor {
    client: Client,
    server_version: String,
    sees_all: bool,
    previous_sizes: std::collections::HashMap<String, i64>,
    host: Option<host::HostProbe>,
}

impl Monitor {
    pub async fn connect(target: &DbTarget) -> Result<Monitor> {
        let session = guest(target).await?;
        let sees_all: bool = session
            .client
            .query_one(
                "SELECT rolsuper OR pg_has_role(current_user, 'pg_monitor', 'MEMBER') \
                 FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(|e| query_error("checking the monitor's privileges", &e))?
            .get(0);
        Ok(Monitor {
            client: session.client,
            server_version: session.server_version,
            sees_all,
            previous_sizes: Default::default(),
            host: host::is_local(target).then(|| host::HostProbe::of_backend(session.backend_pid)),
        })
    }

    /// Whether the session to the server is gone.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The connections pane alone (for health checks).
    pub async fn connections(&mut self) -> Pane<Connections> {
        timed(collectors::connections(&self.client)).await
    }

    /// Runs every collector once.
    pub async fn snapshot(&mut self, settings: &MonitorSettings) -> Snapshot {
        let c = &self.client;
        let connections = timed(collectors::connections(c)).await;
        let long_running = timed(collectors::long_running(
            c,
            settings.long_query,
            self.sees_all,
        ))
        .await;
        let blocking = timed(collectors::blocking(c, self.sees_all)).await;
        let tables = timed(collectors::table_sizes(
            c,
            settings.top_tables,
            &self.previous_sizes,
        ))
        .await;
        if let Pane::Ok(s) = &tables {
            // An estimate (a locked table's page counts) is no base for growth: the last exact
            // size stays the one to compare with.
            let mut sizes: std::collections::HashMap<String, i64> = s
                .data
                .iter()
                .filter(|t| !t.estimated)
                .map(|t| (t.name.clone(), t.total_bytes))
                .collect();
            for t in s.data.iter().filter(|t| t.estimated) {
                if let Some(exact) = self.previous_sizes.get(&t.name) {
                    sizes.insert(t.name.clone(), *exact);
                }
            }
            self.previous_sizes = sizes;
        }
        let progress = timed(collectors::progress(c, self.sees_all)).await;
        let host = self.host.as_mut().map(|h| h.sample());
        Snapshot {
            at: Utc::now(),
            server_version: self.server_version.clone(),
            sees_all_sessions: self.sees_all,
            connections,
            long_running,
            blocking,
            tables,
            progress,
            host,
        }
    }
}

/// The monitor's kind of session: read-only, `application_name=pgdeck-monitor` (which its own
/// views leave out), a 2 s statement timeout and a 200 ms lock timeout.
async fn guest(target: &DbTarget) -> Result<db::Session> {
    let session = db::connect(&target.with_application_name("pgdeck-monitor")).await?;
    session
        .client
        .batch_execute(
            "SET default_transaction_read_only = on; SET statement_timeout = '2s'; \
             SET lock_timeout = '200ms'; SET idle_in_transaction_session_timeout = '10s'",
        )
        .await
        .map_err(|e| query_error("preparing the monitor session", &e))?;
    Ok(session)
}

async fn timed<T>(f: impl std::future::Future<Output = Result<Option<T>>>) -> Pane<T> {
    let start = Instant::now();
    match f.await {
        Ok(Some(data)) => Pane::Ok(Sample {
            at: Utc::now(),
            cost_ms: start.elapsed().as_secs_f64() * 1000.0,
            data,
        }),
        Ok(None) => Pane::Unavailable {
            reason: "n/a (needs pg_monitor)".into(),
        },
        Err(e) => Pane::Error { cause: e.cause },
    }
}
