//! The lock-queue watchdog. `lock_timeout` bounds each single wait of a migration for a lock,
//! but not how long the locks it already holds keep others waiting: a migration that ALTERs four
//! tables, each wait just under `lock_timeout`, keeps readers of the first table queued behind
//! its granted ACCESS EXCLUSIVE for the sum of the waits. The watchdog, on a session of its own,
//! looks at who is waiting behind the migration's backend (directly, or behind a session that
//! waits behind it), and when one has waited past the bound the deploy cancels the migration's
//! statement: it rolls back, releasing everything, and is retried like a lock timeout.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::deploy::{ADVISORY_LOCK_KEY, APPLIERS_LOCK};
use crate::db::{self, query_error};
use crate::error::Result;
use crate::target::DbTarget;

/// Who waited behind a migration when the watchdog stopped it.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    /// Sessions waiting behind it, directly or through another waiter.
    pub victims: usize,
    /// The longest of their waits, as the server measured it.
    pub longest: Duration,
    /// The bound it passed.
    pub bound: Duration,
}

/// A session a migration's statement waits for: directly, or at the head of the queue the
/// statement waits in (`waiting` false: the root, the one to end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    pub pid: i32,
    /// With the pid, identifies the backend for a terminate.
    pub backend_start: DateTime<Utc>,
    pub user: String,
    pub application: String,
    /// pg_stat_activity's state ("idle in transaction", "active"); empty when hidden from the
    /// deploy's role.
    pub state: String,
    pub state_seconds: f64,
    /// How long its transaction has been open.
    pub transaction_seconds: Option<f64>,
    pub query: String,
    /// Itself waiting for a lock: not the root of the queue.
    pub waiting: bool,
}

impl Holder {
    /// One line: who, in what state for how long, doing what.
    pub fn describe(&self) -> String {
        let app = if self.application.is_empty() {
            "no application_name".to_owned()
        } else {
            self.application.clone()
        };
        let state = match self.state.as_str() {
            "" => "state hidden (needs pg_read_all_stats)".to_owned(),
            s => format!("{s} for {:.0}s", self.state_seconds),
        };
        let query: String = self.query.chars().take(80).collect();
        let mut out = format!("pid {} ({}, {app}), {state}", self.pid, self.user);
        if self.waiting {
            out.push_str(", itself waiting");
        }
        if !query.is_empty() {
            out.push_str(&format!(": {query}"));
        }
        out
    }

    /// Whether cancelling its statement would release its locks: an idle transaction has no
    /// statement to cancel, only terminating ends it.
    pub fn cancel_helps(&self) -> bool {
        !self.state.starts_with("idle")
    }
}

/// What a statement is waiting for, as seen by one look.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waiting {
    /// Since the watchdog first saw it wait.
    pub waited: Duration,
    pub holders: Vec<Holder>,
    /// The holders are not those of the previous look (a front end that prints lines says
    /// only these).
    pub changed: bool,
}

/// The watchdog's session, reopened when it is lost.
struct Looker {
    client: Client,
    victims: tokio_postgres::Statement,
    holders: tokio_postgres::Statement,
}

/// The lock-queue watchdog of one deploy.
pub struct Watchdog {
    target: DbTarget,
    looker: tokio::sync::Mutex<Option<Looker>>,
    /// When it last looked: looks are paced by the clock, not restarted by each statement, so
    /// a migration of many short statements is watched as closely as one long one.
    last_look: std::sync::Mutex<Instant>,
    server_version_num: i32,
    pub bound: Duration,
    poll: Duration,
}

impl Watchdog {
    pub async fn start(target: &DbTarget, bound: Duration) -> Result<Watchdog> {
        let target = target.with_application_name("pgdeck-watchdog");
        let (looker, server_version_num) = Looker::open(&target, None).await?;
        Ok(Watchdog {
            target,
            looker: tokio::sync::Mutex::new(Some(looker)),
            last_look: std::sync::Mutex::new(Instant::now()),
            server_version_num,
            bound,
            // Several looks per bound, so a victim's wait overshoots it by a fraction at most.
            poll: (bound / 4).clamp(Duration::from_millis(50), Duration::from_millis(250)),
        })
    }

    /// Resolves once a session has waited behind `pid` past the bound: `Ok`. A watchdog that
    /// lost its session and cannot open another resolves with the reason (`Err`), once; the
    /// deploy says so and goes on unwatched. Never resolves otherwise.
    ///
    /// While `pid` itself waits for a lock, `on_wait` hears who it waits for: when that changes,
    /// and at most once a second otherwise.
    pub async fn watch(
        &self,
        pid: i32,
        on_wait: &(dyn Fn(Waiting) + Sync),
    ) -> std::result::Result<Blocked, String> {
        let mut waiting_since: Option<Instant> = None;
        let mut told: Option<(Instant, Vec<i32>)> = None;
        loop {
            let due = self
                .last_look
                .lock()
                .map(|last| *last + self.poll)
                .unwrap_or_else(|_| Instant::now());
            tokio::time::sleep_until(due.into()).await;
            if let Ok(mut last) = self.last_look.lock() {
                *last = Instant::now();
            }
            let mut looker = self.looker.lock().await;
            if looker.as_ref().is_none_or(|l| l.client.is_closed()) {
                match Looker::open(&self.target, Some(self.server_version_num)).await {
                    Ok((l, _)) => *looker = Some(l),
                    Err(e) => {
                        *looker = None;
                        return Err(e.cause);
                    }
                }
            }
            let Some(l) = looker.as_ref() else { continue };
            if let Ok(rows) = l.client.query(&l.holders, &[&pid]).await {
                let mut holders: Vec<Holder> = rows.iter().map(holder).collect();
                // The head of the queue first: ending it is what frees the statement.
                holders.sort_by_key(|h| h.waiting);
                if holders.is_empty() {
                    waiting_since = None;
                } else {
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    let pids: Vec<i32> = holders.iter().map(|h| h.pid).collect();
                    let changed = told.as_ref().is_none_or(|(_, was)| *was != pids);
                    let due = changed
                        || told
                            .as_ref()
                            .is_some_and(|(at, _)| at.elapsed() >= Duration::from_secs(1));
                    if due {
                        told = Some((Instant::now(), pids));
                        on_wait(Waiting {
                            waited: since.elapsed(),
                            holders,
                            changed,
                        });
                    }
                }
            }
            let Ok(row) = l.client.query_one(&l.victims, &[&pid]).await else {
                continue;
            };
            let victims: i64 = row.get(0);
            let longest = Duration::from_secs_f64(row.get::<_, f64>(1).max(0.0));
            if victims > 0 && longest > self.bound {
                return Ok(Blocked {
                    victims: victims as usize,
                    longest,
                    bound: self.bound,
                });
            }
        }
    }

    /// Cancels `pid`'s statement with pg_cancel_backend, which has signalled the backend when it
    /// returns: a statement that ends just before the signal arrives leaves it to be dropped by
    /// the idle backend, never to hit the next request. False if it could not.
    pub async fn cancel(&self, pid: i32) -> bool {
        let looker = self.looker.lock().await;
        let Some(l) = looker.as_ref() else {
            return false;
        };
        l.client
            .query_one("SELECT pg_cancel_backend($1)", &[&pid])
            .await
            .is_ok_and(|r| r.get::<_, bool>(0))
    }
}

impl Looker {
    async fn open(target: &DbTarget, version: Option<i32>) -> Result<(Looker, i32)> {
        let session = db::connect(target).await?;
        let client = session.client;
        super::deploy::immune_to_timeouts(&client).await?;
        let version = match version {
            Some(v) => v,
            None => client
                .query_one("SELECT current_setting('server_version_num')::int", &[])
                .await
                .map_err(|e| query_error("starting the lock-queue watchdog", &e))?
                .get(0),
        };
        let victims = client
            .prepare(&victims_sql(version))
            .await
            .map_err(|e| query_error("starting the lock-queue watchdog", &e))?;
        let holders = client
            .prepare(HOLDERS_SQL)
            .await
            .map_err(|e| query_error("starting the lock-queue watchdog", &e))?;
        Ok((
            Looker {
                client,
                victims,
                holders,
            },
            version,
        ))
    }
}

/// The sessions `$1` waits for, and those they wait for in turn, up to the head of the queue.
/// pg_blocking_pids names the holders of conflicting locks and the waiters queued ahead; it
/// is asked only while `$1` has a lock not granted.
const HOLDERS_SQL: &str = "WITH RECURSIVE chain(pid, depth) AS ( \
       SELECT unnest(pg_catalog.pg_blocking_pids($1)), 1 \
       WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE pid = $1 AND NOT granted) \
       UNION \
       SELECT unnest(pg_catalog.pg_blocking_pids(c.pid)), c.depth + 1 FROM chain c WHERE c.depth < 4 \
     ) \
     SELECT DISTINCT ON (a.pid) a.pid, a.backend_start, coalesce(a.usename::text, ''), \
            coalesce(a.application_name, ''), coalesce(a.state, ''), \
            coalesce(extract(epoch FROM clock_timestamp() - a.state_change), 0)::float8, \
            extract(epoch FROM clock_timestamp() - a.xact_start)::float8, \
            left(coalesce(a.query, ''), 500), a.wait_event_type IS NOT DISTINCT FROM 'Lock' \
     FROM chain c JOIN pg_catalog.pg_stat_activity a ON a.pid = c.pid \
     WHERE c.pid <> $1 \
     ORDER BY a.pid";

fn holder(r: &tokio_postgres::Row) -> Holder {
    let query: String = r.get(7);
    Holder {
        pid: r.get(0),
        backend_start: r.get::<_, Option<DateTime<Utc>>>(1).unwrap_or_default(),
        user: r.get(2),
        application: r.get(3),
        state: r.get(4),
        state_seconds: r.get(5),
        transaction_seconds: r.get(6),
        query: query.split_whitespace().collect::<Vec<_>>().join(" "),
        waiting: r.get(8),
    }
}

/// Sessions waiting for a lock behind `$1`, transitively: pg_blocking_pids names the holders
/// and the waiters queued ahead. Read from pg_locks, which every role sees in full
/// (pg_stat_activity hides other roles' waits from a role without pg_read_all_stats, and the
/// application's role is rarely the deploy's). A wait starts at pg_locks.waitstart (PostgreSQL
/// 14 and later), else at the statement's start where that is visible. Not counted: other
/// appliers waiting for the appliers' or the migration lock (deploys, not traffic), and waits
/// for a virtual transaction id: a CONCURRENTLY build elsewhere waiting for older transactions
/// to end, which blocks no one.
fn victims_sql(server_version_num: i32) -> String {
    let (since, join) = if server_version_num >= 140000 {
        ("l.waitstart", "")
    } else {
        (
            "a.query_start",
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid",
        )
    };
    format!(
        "WITH RECURSIVE waiting AS ( \
           SELECT l.pid, pg_blocking_pids(l.pid) AS blockers, {since} AS since \
           FROM pg_locks l {join} \
           WHERE NOT l.granted AND l.pid IS NOT NULL AND l.locktype <> 'virtualxid' \
             AND NOT (l.locktype = 'advisory' AND l.classid = {} AND l.objid = {} AND l.objsubid = 2) \
             AND NOT (l.locktype = 'advisory' AND l.classid = 0 AND l.objid = {} AND l.objsubid = 1) \
         ), victims AS ( \
           SELECT pid, since FROM waiting WHERE $1 = ANY(blockers) \
           UNION \
           SELECT w.pid, w.since FROM waiting w JOIN victims v ON v.pid = ANY(w.blockers) \
         ) \
         SELECT count(DISTINCT pid), \
                coalesce(max(extract(epoch FROM clock_timestamp() - since)), 0)::float8 \
         FROM victims",
        APPLIERS_LOCK.0, APPLIERS_LOCK.1, ADVISORY_LOCK_KEY as u32
    )
}
