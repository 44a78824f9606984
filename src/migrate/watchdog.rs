//! The lock-queue watchdog. `lock_timeout` bounds each single wait of a migration for a lock,
//! but not how long the locks it already holds keep others waiting: a migration that ALTERs four
//! tables, each wait just under `lock_timeout`, keeps readers of the first table queued behind
//! its granted ACCESS EXCLUSIVE for the sum of the waits. The watchdog, on a session of its own,
//! looks at who is waiting behind the migration's backend (directly, or behind a session that
//! waits behind it), and when one has waited past the bound the deploy cancels the migration's
//! statement: it rolls back, releasing everything, and is retried like a lock timeout.

use std::time::Duration;

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

/// The watchdog's session.
pub struct Watchdog {
    client: Client,
    victims: tokio_postgres::Statement,
    pub bound: Duration,
    poll: Duration,
}

impl Watchdog {
    pub async fn start(target: &DbTarget, bound: Duration) -> Result<Watchdog> {
        let session = db::connect(&target.with_application_name("pgdeck-watchdog")).await?;
        let client = session.client;
        super::deploy::immune_to_timeouts(&client).await?;
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| query_error("starting the lock-queue watchdog", &e))?
            .get(0);
        let victims = client
            .prepare(&victims_sql(version))
            .await
            .map_err(|e| query_error("starting the lock-queue watchdog", &e))?;
        Ok(Watchdog {
            client,
            victims,
            bound,
            // Several looks per bound, so a victim's wait overshoots it by a fraction at most.
            poll: (bound / 4).clamp(Duration::from_millis(50), Duration::from_millis(250)),
        })
    }

    /// Resolves once a session has waited behind `pid` past the bound; never otherwise. A look
    /// that fails (the session was lost) is tried again at the next poll.
    pub async fn watch(&self, pid: i32) -> Blocked {
        loop {
            tokio::time::sleep(self.poll).await;
            let Ok(row) = self.client.query_one(&self.victims, &[&pid]).await else {
                continue;
            };
            let victims: i64 = row.get(0);
            let longest = Duration::from_secs_f64(row.get::<_, f64>(1).max(0.0));
            if victims > 0 && longest > self.bound {
                return Blocked {
                    victims: victims as usize,
                    longest,
                    bound: self.bound,
                };
            }
        }
    }
}

/// Sessions waiting for a lock behind `$1`, transitively: pg_blocking_pids names the holders
/// and the waiters queued ahead. Read from pg_locks, which every role sees in full
/// (pg_stat_activity hides other roles' waits from a role without pg_read_all_stats, and the
/// application's role is rarely the deploy's). A wait starts at pg_locks.waitstart (PostgreSQL
/// 14 and later), else at the statement's start where that is visible. Other appliers waiting
/// for the appliers' or the migration lock are deploys, not traffic, and are not counted.
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
           WHERE NOT l.granted AND l.pid IS NOT NULL \
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
