//! The data behind the live panes: a guest connection to the server (read-only,
//! `application_name=pgdeck-monitor`, statement_timeout, short lock_timeout, left out of its own
//! views) and collectors that each run one query and return typed rows with their own cost.
//! The [`logs`] follow the application's log and the server's own. Nothing here draws; the CLI
//! prints samples, the console renders them.

mod actions;
mod collectors;
pub mod host;
pub mod logs;
pub mod pools;
pub mod replication;
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
pub use pools::{Pool, Pools};
pub use replication::{Recovery, Replication, Slot, Standby};

/// What the monitor collects and how.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// A non-idle session whose query or transaction is older than this is long-running.
    pub long_query: Duration,
    /// How many of the largest tables to show.
    pub top_tables: usize,
    /// The runbook's alert: connections above this share of the usable maximum.
    pub connections_alert: f64,
    /// When a standby or a slot is in alert.
    pub replicas: ReplicaThresholds,
    /// PgBouncer's admin console (`postgresql://USER@HOST:6432/pgbouncer`), for the pools pane.
    pub pgbouncer_admin: Option<DbTarget>,
    /// The runbook's alert: a pool's servers in use above this share of its pool size.
    pub pool_alert: f64,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            long_query: Duration::from_secs(5),
            top_tables: 10,
            connections_alert: 0.8,
            replicas: ReplicaThresholds::default(),
            pgbouncer_admin: None,
            pool_alert: 0.8,
        }
    }
}

/// When replication is in alert. The defaults are a DBA's: a standby more than 64 MB or 30 s
/// behind in replay is no longer a read replica anyone should trust, and a slot nobody uses that
/// holds 1 GB of WAL is on its way to filling the disk.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaThresholds {
    pub replay_lag_bytes: i64,
    pub replay_lag: Duration,
    /// WAL retained by an inactive slot.
    pub slot_retained_bytes: i64,
}

impl Default for ReplicaThresholds {
    fn default() -> Self {
        ReplicaThresholds {
            replay_lag_bytes: 64 * 1024 * 1024,
            replay_lag: Duration::from_secs(30),
            slot_retained_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Something a pane shows that is past its threshold, for the ALERT banner and `health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// replica, slot or pool.
    pub kind: &'static str,
    /// The standby, slot or pool it is about.
    pub name: String,
    pub text: String,
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
    pub replication: Pane<Replication>,
    /// Only when a PgBouncer admin URL is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pools: Option<Pane<Pools>>,
    /// Standbys, slots and pools past their thresholds.
    pub alerts: Vec<Alert>,
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
    /// PgBouncer's admin console, opened on the first snapshot that asks for pools.
    admin: Option<crate::db::pooler::Admin>,
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
            admin: None,
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

    /// The replication pane alone (for health checks).
    pub async fn replication(&mut self) -> Pane<Replication> {
        timed(replication::replication(&self.client, self.sees_all)).await
    }

    /// Runs every collector once.
    ///
    /// The panes that read the sessions' status (connections, long-running, the lock queue,
    /// progress, replication) read it in one read-only transaction: the server copies every
    /// backend's status once a transaction, so with thousands of sessions one copy a refresh
    /// costs a fraction of one a pane, and the panes show the same moment. A pane that fails
    /// ends that transaction and the next pane starts another. Table sizes run after it, on
    /// their own: `pg_relation_size` takes each table's ACCESS SHARE lock, which must not be
    /// held past its statement. They skip the tables in ACCESS EXCLUSIVE, taken from the lock
    /// queue's read of the lock table when it made one: the lock table is read once a refresh.
    pub async fn snapshot(&mut self, settings: &MonitorSettings) -> Snapshot {
        let c = &self.client;
        let moment = Moment::begin(c).await;
        let connections = moment.read(collectors::connections(c)).await;
        let long_running = moment
            .read(collectors::long_running(
                c,
                settings.long_query,
                self.sees_all,
            ))
            .await;
        let blocking = moment.read(collectors::blocking(c, self.sees_all)).await;
        let progress = moment.read(collectors::progress(c, self.sees_all)).await;
        let replication = moment
            .read(replication::replication(c, self.sees_all))
            .await;
        moment.end().await;
        let tables = timed(collectors::table_sizes(
            c,
            settings.top_tables,
            &self.previous_sizes,
            match &blocking {
                Pane::Ok(tree) => tree.data.exclusive_relations.as_deref(),
                _ => None,
            },
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
        let pools = match &settings.pgbouncer_admin {
            Some(admin) => Some(self.pools(admin).await),
            None => None,
        };
        let alerts = alerts(settings, &replication, pools.as_ref());
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
            replication,
            pools,
            alerts,
            host,
        }
    }

    /// The pools pane, over an admin session kept between snapshots (reopened when lost).
    pub async fn pools(&mut self, admin: &DbTarget) -> Pane<Pools> {
        let start = Instant::now();
        if self.admin.as_ref().is_none_or(|a| a.is_closed()) {
            match crate::db::pooler::Admin::connect(admin).await {
                Ok(a) => self.admin = Some(a),
                Err(e) => {
                    return Pane::Error {
                        cause: format!("PgBouncer admin console: {}", e.cause),
                    };
                }
            }
        }
        let Some(a) = &self.admin else {
            return Pane::Error {
                cause: "PgBouncer admin console: not connected".into(),
            };
        };
        match pools::pools(a).await {
            Ok(data) => Pane::Ok(Sample {
                at: Utc::now(),
                cost_ms: start.elapsed().as_secs_f64() * 1000.0,
                data,
            }),
            Err(e) => Pane::Error { cause: e.cause },
        }
    }
}

/// What the replication and pools panes show past their thresholds.
pub fn alerts(
    settings: &MonitorSettings,
    replication: &Pane<Replication>,
    pools: Option<&Pane<Pools>>,
) -> Vec<Alert> {
    let t = &settings.replicas;
    let mut out = Vec::new();
    if let Pane::Ok(r) = replication {
        for s in &r.data.standbys {
            let bytes = s.replay_lag_bytes.unwrap_or(0);
            let seconds = s.replay_lag_seconds.unwrap_or(0.0);
            if bytes > t.replay_lag_bytes || seconds > t.replay_lag.as_secs_f64() {
                out.push(Alert {
                    kind: "replica",
                    name: s.name.clone(),
                    text: format!(
                        "replica {} replay lag {} / {:.0}s (alert above {} / {}s)",
                        s.name,
                        crate::units::human_bytes(bytes),
                        seconds,
                        crate::units::human_bytes(t.replay_lag_bytes),
                        t.replay_lag.as_secs()
                    ),
                });
            }
        }
        for slot in &r.data.slots {
            let retained = slot.retained_bytes.unwrap_or(0);
            let lost = matches!(slot.wal_status.as_deref(), Some("lost" | "unreserved"));
            if lost || (!slot.active && retained > t.slot_retained_bytes) {
                out.push(Alert {
                    kind: "slot",
                    name: slot.name.clone(),
                    text: if lost {
                        format!(
                            "slot {} has WAL status {}",
                            slot.name,
                            slot.wal_status.as_deref().unwrap_or("?")
                        )
                    } else {
                        format!(
                            "inactive slot {} retains {} of WAL (alert above {})",
                            slot.name,
                            crate::units::human_bytes(retained),
                            crate::units::human_bytes(t.slot_retained_bytes)
                        )
                    },
                });
            }
        }
    }
    if let Some(Pane::Ok(p)) = pools {
        for pool in p
            .data
            .pools
            .iter()
            .filter(|p| p.utilisation > settings.pool_alert)
        {
            out.push(Alert {
                kind: "pool",
                name: format!("{}/{}", pool.database, pool.user),
                text: format!(
                    "pool {}/{} {:.0} % utilised ({} of {} servers active, {} client(s) waiting; alert above {:.0} %)",
                    pool.database,
                    pool.user,
                    pool.utilisation * 100.0,
                    pool.servers_active,
                    pool.pool_size,
                    pool.clients_waiting,
                    settings.pool_alert * 100.0
                ),
            });
        }
    }
    out
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

/// The read-only transaction one refresh's status panes share (see [`Monitor::snapshot`]).
/// When it cannot begin, each pane runs on its own, as it would without it.
struct Moment<'a> {
    client: &'a Client,
}

impl<'a> Moment<'a> {
    async fn begin(client: &'a Client) -> Moment<'a> {
        // A refresh cut short (its future dropped) may have left one open: the server only
        // warns, and this refresh's COMMIT ends it.
        let _ = client.batch_execute("BEGIN READ ONLY").await;
        Moment { client }
    }

    /// A pane read in the transaction: a failed one aborted it, so another begins.
    async fn read<T>(&self, f: impl std::future::Future<Output = Result<Option<T>>>) -> Pane<T> {
        let pane = timed(f).await;
        if matches!(pane, Pane::Error { .. }) {
            let _ = self.client.batch_execute("ROLLBACK; BEGIN READ ONLY").await;
        }
        pane
    }

    async fn end(self) {
        let _ = self.client.batch_execute("COMMIT").await;
    }
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
