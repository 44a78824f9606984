//! The lock-queue watchdog. `lock_timeout` bounds each single wait of a migration for a lock,
//! but not how long the locks it already holds keep others waiting: a migration that ALTERs four
//! tables, each wait just under `lock_timeout`, keeps readers of the first table queued behind
//! its granted ACCESS EXCLUSIVE for the sum of the waits. The watchdog, on a session of its own,
//! looks at who is waiting behind the migration's backend (directly, or behind a session that
//! waits behind it), and when one has waited past the bound the deploy cancels the migration's
//! statement: it rolls back, releasing everything, and is retried like a lock timeout.

use std::time::{Duration, Instant};

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

/// The watchdog's session, reopened when it is lost.
struct Looker {
    client: Client,
    victims: tokio_postgres::Statement,
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
    pub async fn watch(&self, pid: i32) -> std::result::Result<Blocked, String> {
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
        Ok((Looker { client, victims }, version))
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
