//! One query per pane, typed rows out. Each leaves the monitor's own session out of what it
//! reports. `Ok(None)` means the role may not see the data (shown as "needs pg_monitor").

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::db::query_error;
use crate::error::Result;

/// Client sessions in `pg_stat_activity`. Without pg_monitor another role's session shows no
/// backend type; one with a database and a role is a client (background processes lack one).
const CLIENTS: &str = "(backend_type = 'client backend' \
     OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL))";

/// Whether some client session's details are hidden from this role (it lacks pg_monitor).
async fn details_hidden(c: &Client, sees_all: bool) -> Result<bool> {
    if sees_all {
        return Ok(false);
    }
    let row = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type IS NULL \
                 AND datid IS NOT NULL AND usesysid IS NOT NULL)",
            &[],
        )
        .await
        .map_err(|e| query_error("checking which sessions this role may see", &e))?;
    Ok(row.get(0))
}

/// Connections against the usable maximum.
#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub total: i64,
    /// `max_connections` minus the slots reserved for superusers (and `reserved_connections`).
    pub usable_max: i64,
    pub utilisation: f64,
    /// By state: active, idle, idle in transaction, idle in transaction (aborted), ... and
    /// "unknown" for sessions the role may not see.
    pub by_state: BTreeMap<String, i64>,
    pub waiting_on_locks: i64,
    pub by_database: Vec<(String, i64)>,
    pub by_user: Vec<(String, i64)>,
    pub by_application: Vec<(String, i64)>,
}

pub async fn connections(c: &Client) -> Result<Option<Connections>> {
    // Counted on the server, one row per (database, user, application, state): with thousands
    // of sessions, sending each of them over costs more than the counting, and the names are
    // looked up for the groups, not for every session (as the pg_stat_activity view would). The limits come in
    // the same query, so that a server with no other session still gives one row.
    let rows = c
        .query(
            &format!(
                "WITH g AS (SELECT datid, usesysid, coalesce(application_name, '') AS a, \
                        coalesce(state, 'unknown') AS s, \
                        count(*) AS n, count(*) FILTER (WHERE wait_event_type = 'Lock') AS w \
                   FROM pg_stat_get_activity(NULL) WHERE {CLIENTS} AND pid <> pg_backend_pid() \
                   GROUP BY 1, 2, 3, 4) \
                 SELECT current_setting('max_connections')::bigint, \
                        current_setting('superuser_reserved_connections')::bigint \
                        + coalesce(current_setting('reserved_connections', true)::bigint, 0), \
                        coalesce(d.datname::text, ''), coalesce(r.rolname::text, ''), g.a, g.s, g.n, g.w \
                 FROM (SELECT 1) one LEFT JOIN g ON true \
                      LEFT JOIN pg_database d ON d.oid = g.datid LEFT JOIN pg_roles r ON r.oid = g.usesysid"
            ),
            &[],
        )
        .await
        .map_err(|e| query_error("reading connections", &e))?;
    let usable_max: i64 = rows
        .first()
        .map(|r| r.get::<_, i64>(0) - r.get::<_, i64>(1))
        .unwrap_or(0);
    let mut by_state = BTreeMap::new();
    let (mut dbs, mut users, mut apps) = (HashMap::new(), HashMap::new(), HashMap::new());
    let mut waiting = 0;
    let mut total = 0;
    for r in &rows {
        let Some(n) = r.get::<_, Option<i64>>(6) else {
            continue;
        };
        total += n;
        *by_state.entry(r.get::<_, String>(5)).or_insert(0) += n;
        *dbs.entry(r.get::<_, String>(2)).or_insert(0) += n;
        *users.entry(r.get::<_, String>(3)).or_insert(0) += n;
        *apps.entry(r.get::<_, String>(4)).or_insert(0) += n;
        waiting += r.get::<_, Option<i64>>(7).unwrap_or(0);
    }
    let top = |m: HashMap<String, i64>| {
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(10);
        v
    };
    Ok(Some(Connections {
        total,
        usable_max,
        utilisation: if usable_max > 0 {
            total as f64 / usable_max as f64
        } else {
            0.0
        },
        by_state,
        waiting_on_locks: waiting,
        by_database: top(dbs),
        by_user: top(users),
        by_application: top(apps),
    }))
}

/// A session busy for longer than the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct LongQuery {
    pub pid: i32,
    /// With the pid, identifies the backend for cancel / terminate.
    pub backend_start: DateTime<Utc>,
    pub user: String,
    pub application: String,
    pub client: String,
    pub wait_event: Option<String>,
    pub state: String,
    pub query_seconds: f64,
    pub transaction_seconds: f64,
    /// Whitespace collapsed, for one row of a table.
    pub query_line: String,
    pub query: String,
}

pub async fn long_running(
    c: &Client,
    threshold: Duration,
    sees_all: bool,
) -> Result<Option<Vec<LongQuery>>> {
    // Other roles' sessions have no query or timings without pg_monitor: the list would be
    // silently short, so say it is unavailable instead.
    if details_hidden(c, sees_all).await? {
        return Ok(None);
    }
    // Candidates first, from two timestamps read alone per backend: a session in no transaction
    // is idle, and one younger than the threshold is not long-running; only the candidates'
    // whole activity rows are built.
    let rows = c
        .query(
            "SELECT a.pid, a.backend_start, coalesce(r.rolname::text, ''), coalesce(a.application_name, ''), \
                    coalesce(host(a.client_addr), 'local'), \
                    CASE WHEN a.wait_event IS NULL THEN NULL ELSE a.wait_event_type || ':' || a.wait_event END, \
                    coalesce(a.state, 'unknown'), \
                    coalesce(extract(epoch FROM now() - a.query_start), 0)::float8, \
                    coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8, coalesce(a.query, '') \
             FROM (SELECT pg_stat_get_backend_pid(b) AS pid FROM pg_stat_get_backend_idset() b \
                   WHERE pg_stat_get_backend_xact_start(b) IS NOT NULL \
                     AND greatest(now() - pg_stat_get_backend_activity_start(b), \
                                  now() - pg_stat_get_backend_xact_start(b)) > make_interval(secs => $1)) c \
                  CROSS JOIN LATERAL pg_stat_get_activity(c.pid) a LEFT JOIN pg_roles r ON r.oid = a.usesysid \
             WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() AND a.state IS DISTINCT FROM 'idle' \
               AND greatest(now() - a.query_start, now() - a.xact_start) > make_interval(secs => $1) \
             ORDER BY greatest(now() - a.query_start, now() - a.xact_start) DESC",
            &[&threshold.as_secs_f64()],
        )
        .await
        .map_err(|e| query_error("reading long-running queries", &e))?;
    let list: Vec<LongQuery> = rows
        .iter()
        .map(|r| {
            let query: String = r.get(9);
            LongQuery {
                pid: r.get(0),
                backend_start: r.get::<_, Option<DateTime<Utc>>>(1).unwrap_or_default(),
                user: r.get(2),
                application: r.get(3),
                client: r.get(4),
                wait_event: r.get(5),
                state: r.get(6),
                query_seconds: r.get(7),
                transaction_seconds: r.get(8),
                query_line: query.split_whitespace().collect::<Vec<_>>().join(" "),
                query,
            }
        })
        .collect();
    Ok(Some(list))
}

/// A session that blocks others and is not itself blocked, with everything queued behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    pub pid: i32,
    pub backend_start: DateTime<Utc>,
    pub user: String,
    pub application: String,
    pub state: String,
    /// How long it has been in that state (an idle transaction's idle time).
    pub state_seconds: f64,
    pub query: String,
    pub victims: Vec<Victim>,
}

/// A session waiting for a lock.
#[derive(Debug, Clone, Serialize)]
pub struct Victim {
    pub pid: i32,
    /// With the pid, identifies the backend for cancel / terminate.
    pub backend_start: DateTime<Utc>,
    pub user: String,
    pub application: String,
    /// The sessions it waits for directly.
    pub blocked_by: Vec<i32>,
    pub lock_mode: Option<String>,
    pub relation: Option<String>,
    pub waiting_seconds: f64,
    pub query: String,
    /// A DDL statement holding or waiting for ACCESS EXCLUSIVE: everything behind it queues.
    pub ddl_access_exclusive: bool,
    /// How many sessions wait directly for this one.
    pub queued_behind: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct BlockingTree {
    pub roots: Vec<Blocker>,
    pub waiting: usize,
    /// The relations held or awaited in ACCESS EXCLUSIVE, when the lock table was read for
    /// this tree (someone waits): table sizes take them from here rather than read it again.
    #[serde(skip)]
    pub exclusive_relations: Option<Vec<u32>>,
}

pub async fn blocking(c: &Client, sees_all: bool) -> Result<Option<BlockingTree>> {
    // Without pg_monitor, other roles' queries are hidden, so a DDL at the head of a queue could
    // not be recognised: say the pane is unavailable rather than show a harmless-looking tree.
    if details_hidden(c, sees_all).await? {
        return Ok(None);
    }
    // Waiters come from pg_locks, which every role sees in full. The lock manager is asked only
    // when some backend waits for a lock (its wait event says so, read alone rather than as a
    // whole activity row per session), then once: its table read
    // into `locks`, who blocks whom asked only about the backends that wait, and the activity
    // of only those backends and their blockers read, not every session's. The relations in
    // ACCESS EXCLUSIVE come from the same read, for the table sizes that follow.
    let rows = c
        .query(
            "WITH waiting AS MATERIALIZED (SELECT pg_stat_get_backend_pid(b) AS pid \
                        FROM pg_stat_get_backend_idset() b \
                        WHERE pg_stat_get_backend_wait_event_type(b) = 'Lock'), \
                  locks AS MATERIALIZED (SELECT pid, mode, granted, locktype, relation FROM pg_locks \
                        WHERE EXISTS (SELECT 1 FROM waiting)), \
                  w AS MATERIALIZED (SELECT pid, pg_blocking_pids(pid) AS blockers \
                        FROM (SELECT DISTINCT pid FROM locks WHERE NOT granted AND pid <> pg_backend_pid()) l), \
                  p AS MATERIALIZED (SELECT pid FROM w UNION SELECT unnest(blockers) FROM w), \
                  held AS (SELECT pid, (array_agg(mode) FILTER (WHERE NOT granted))[1] AS mode, \
                        (array_agg(relation) FILTER (WHERE NOT granted AND relation IS NOT NULL))[1] AS relation, \
                        bool_or(mode = 'AccessExclusiveLock' AND locktype = 'relation') AS exclusive \
                        FROM locks WHERE pid IN (SELECT pid FROM p) GROUP BY pid) \
             SELECT a.pid, a.backend_start, coalesce(pg_get_userbyid(a.usesysid)::text, ''), \
                    coalesce(a.application_name, ''), coalesce(a.state, 'unknown'), coalesce(a.query, ''), \
                    coalesce(w.blockers, '{}'), h.mode, h.relation::regclass::text, \
                    coalesce(extract(epoch FROM now() - a.state_change), 0)::float8, coalesce(h.exclusive, false), \
                    (SELECT array_agg(DISTINCT relation) FROM locks \
                     WHERE mode = 'AccessExclusiveLock' AND relation IS NOT NULL) \
             FROM p CROSS JOIN LATERAL pg_stat_get_activity(p.pid) a LEFT JOIN w ON w.pid = a.pid \
                  LEFT JOIN held h ON h.pid = a.pid",
            &[],
        )
        .await
        .map_err(|e| query_error("reading the lock queue", &e))?;
    struct Row {
        pid: i32,
        backend_start: DateTime<Utc>,
        user: String,
        application: String,
        state: String,
        query: String,
        blockers: Vec<i32>,
        mode: Option<String>,
        relation: Option<String>,
        waiting: f64,
        access_exclusive: bool,
    }
    // No rows: nobody waited after all, and the lock table's read (if any) is not returned.
    let exclusive_relations = rows
        .first()
        .map(|r| r.get::<_, Option<Vec<u32>>>(11).unwrap_or_default());
    let rows: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            pid: r.get(0),
            backend_start: r.get::<_, Option<DateTime<Utc>>>(1).unwrap_or_default(),
            user: r.get(2),
            application: r.get(3),
            state: r.get(4),
            query: r.get(5),
            blockers: r.get(6),
            mode: r.get(7),
            relation: r.get(8),
            waiting: r.get(9),
            access_exclusive: r.get(10),
        })
        .collect();
    let by_pid: HashMap<i32, &Row> = rows.iter().map(|r| (r.pid, r)).collect();
    let behind = |pid: i32| rows.iter().filter(|r| r.blockers.contains(&pid)).count();
    let is_ddl = |q: &str| {
        let first = q
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        matches!(
            first.as_str(),
            "ALTER" | "CREATE" | "DROP" | "TRUNCATE" | "REINDEX" | "CLUSTER" | "VACUUM" | "LOCK"
        )
    };
    let mut tree = BlockingTree {
        roots: Vec::new(),
        waiting: rows.iter().filter(|r| !r.blockers.is_empty()).count(),
        exclusive_relations,
    };
    for root in rows.iter().filter(|r| r.blockers.is_empty()) {
        // Everyone transitively waiting on this root.
        let mut victims = Vec::new();
        let mut frontier = vec![root.pid];
        let mut seen = vec![root.pid];
        while let Some(p) = frontier.pop() {
            let next: Vec<&Row> = rows
                .iter()
                .filter(|r| r.blockers.contains(&p) && !seen.contains(&r.pid))
                .collect();
            for v in next {
                seen.push(v.pid);
                frontier.push(v.pid);
                victims.push(Victim {
                    pid: v.pid,
                    backend_start: v.backend_start,
                    user: v.user.clone(),
                    application: v.application.clone(),
                    blocked_by: v.blockers.clone(),
                    lock_mode: v.mode.clone(),
                    relation: v.relation.clone(),
                    waiting_seconds: v.waiting,
                    query: v.query.split_whitespace().collect::<Vec<_>>().join(" "),
                    ddl_access_exclusive: is_ddl(&v.query)
                        && (v.access_exclusive || v.mode.as_deref() == Some("AccessExclusiveLock")),
                    queued_behind: behind(v.pid),
                });
            }
        }
        if victims.is_empty() || !by_pid.contains_key(&root.pid) {
            continue;
        }
        tree.roots.push(Blocker {
            pid: root.pid,
            backend_start: root.backend_start,
            user: root.user.clone(),
            application: root.application.clone(),
            state: root.state.clone(),
            state_seconds: root.waiting,
            query: root.query.split_whitespace().collect::<Vec<_>>().join(" "),
            victims,
        });
    }
    Ok(Some(tree))
}

/// One of the largest tables.
#[derive(Debug, Clone, Serialize)]
pub struct TableSize {
    pub name: String,
    pub rows_estimate: Option<i64>,
    pub heap_bytes: i64,
    pub toast_bytes: i64,
    pub index_bytes: i64,
    pub total_bytes: i64,
    /// Growth since the previous exact sample, when there was one and this one is exact too.
    pub growth_bytes: Option<i64>,
    /// Sizes from the catalog's page counts: the table holds or awaits ACCESS EXCLUSIVE, and
    /// asking its size would queue the monitor behind that lock.
    pub estimated: bool,
}

/// `exclusive`: the relations in ACCESS EXCLUSIVE, when this refresh has read them already
/// (see [`BlockingTree::exclusive_relations`]); otherwise the lock table is read here.
pub async fn table_sizes(
    c: &Client,
    top: usize,
    previous: &HashMap<String, i64>,
    exclusive: Option<&[u32]>,
) -> Result<Option<Vec<TableSize>>> {
    let rows = c
        .query(
            "WITH locked AS MATERIALIZED (SELECT DISTINCT relation FROM pg_locks \
                                          WHERE $2::oid[] IS NULL \
                                            AND mode = 'AccessExclusiveLock' AND relation IS NOT NULL \
                                          UNION ALL SELECT unnest($2::oid[])), \
             candidates AS ( \
                SELECT c.oid, c.reltuples, c.relpages, c.reltoastrelid, n.nspname || '.' || c.relname AS name, \
                       c.oid IN (SELECT relation FROM locked) AS locked \
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                  AND n.nspname NOT LIKE 'pg\\_toast%' \
                ORDER BY c.relpages DESC, c.oid LIMIT $1::bigint * 3) \
             SELECT name, reltuples::bigint, locked, \
                    CASE WHEN locked THEN relpages::bigint * current_setting('block_size')::bigint ELSE pg_relation_size(oid) END, \
                    CASE WHEN locked THEN coalesce((SELECT t.relpages FROM pg_class t WHERE t.oid = reltoastrelid), 0)::bigint * current_setting('block_size')::bigint \
                         ELSE coalesce(pg_total_relation_size(NULLIF(reltoastrelid, 0)), 0) END, \
                    CASE WHEN locked THEN coalesce((SELECT sum(i.relpages) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = oid), 0)::bigint * current_setting('block_size')::bigint \
                         ELSE pg_indexes_size(oid) END \
             FROM candidates",
            &[&(top as i64), &exclusive],
        )
        .await
        .map_err(|e| query_error("reading table sizes", &e))?;
    let mut list: Vec<TableSize> = rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let rows: i64 = r.get(1);
            let (heap, toast, index): (i64, i64, i64) = (r.get(3), r.get(4), r.get(5));
            let total = heap + toast + index;
            let estimated: bool = r.get(2);
            TableSize {
                // Page counts against a measured size would show a growth (or a shrink) that
                // did not happen.
                growth_bytes: (!estimated)
                    .then(|| previous.get(&name).map(|p| total - p))
                    .flatten(),
                name,
                rows_estimate: (rows >= 0).then_some(rows),
                heap_bytes: heap,
                toast_bytes: toast,
                index_bytes: index,
                total_bytes: total,
                estimated,
            }
        })
        .collect();
    list.sort_by(|a, b| b.total_bytes.cmp(&a.total_bytes).then(a.name.cmp(&b.name)));
    list.truncate(top);
    Ok(Some(list))
}

/// A running index build, vacuum or cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub pid: i32,
    pub command: String,
    pub relation: String,
    pub phase: String,
    pub percent: Option<f64>,
}

pub async fn progress(c: &Client, sees_all: bool) -> Result<Option<Vec<Progress>>> {
    let rows = c
        .query(
            "SELECT pid, command, relid::regclass::text, phase, \
                    CASE WHEN blocks_total > 0 THEN 100.0 * blocks_done / blocks_total \
                         WHEN tuples_total > 0 THEN 100.0 * tuples_done / tuples_total END::float8 \
             FROM pg_stat_progress_create_index \
             UNION ALL \
             SELECT pid, 'VACUUM', relid::regclass::text, phase, \
                    CASE WHEN heap_blks_total > 0 THEN 100.0 * heap_blks_scanned / heap_blks_total END::float8 \
             FROM pg_stat_progress_vacuum \
             UNION ALL \
             SELECT pid, command, relid::regclass::text, phase, \
                    CASE WHEN heap_blks_total > 0 THEN 100.0 * heap_blks_scanned / heap_blks_total END::float8 \
             FROM pg_stat_progress_cluster",
            &[],
        )
        .await
        .map_err(|e| query_error("reading progress views", &e))?;
    // Without pg_monitor, other roles' operations come back with every column but the pid
    // empty: the list would be silently wrong, so say it is unavailable instead.
    let hidden = |r: &tokio_postgres::Row| r.get::<_, Option<String>>(2).is_none();
    if !sees_all && rows.iter().any(hidden) {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .map(|r| Progress {
                pid: r.get(0),
                command: r.get::<_, Option<String>>(1).unwrap_or_default(),
                relation: r.get::<_, Option<String>>(2).unwrap_or_default(),
                phase: r.get::<_, Option<String>>(3).unwrap_or_default(),
                percent: r.get(4),
            })
            .collect(),
    ))
}
