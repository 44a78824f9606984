//! One full monitor refresh (every collector, the replication and PgBouncer pool panes among
//! them) with 500 and then 2,000 open connections, a streaming standby, an inactive slot and a
//! PgBouncer in front: server-side cost per refresh from pg_stat_statements (target: at most
//! 10 ms at 2,000, and at most half of pg_activity's), wall time and client CPU per refresh;
//! beside it, pg_activity's own activity, blocking and waiting queries, timed with psql against
//! the same server in the same run. Run with `cargo bench --bench monitor`.
//!
//! pg_activity's queries are read from its release on PyPI (pip download, pinned version), or from
//! the `queries` folder named by PGDECK_BENCH_PG_ACTIVITY_QUERIES.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use pgdeck::db::sandbox::{Bouncer, Sandbox};
use pgdeck::monitor::{HostProbe, Monitor, MonitorSettings, Pane};

const SIZES: [usize; 2] = [500, 2000];
const REFRESHES: usize = 50;
const PG_ACTIVITY: &str = "pg_activity==3.6.2";
const PGA_QUERIES: [&str; 3] = [
    "get_pg_activity_post_130000.sql",
    "get_blocking_post_090600.sql",
    "get_waiting_post_090200.sql",
];

fn main() {
    let mut sandbox =
        Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let load = tokio::runtime::Runtime::new().expect("runtime");
    load.block_on(async {
        let admin = connect(&sandbox, "postgres", "postgres").await;
        // ALTER SYSTEM may not run in the implicit transaction of a multi-statement batch.
        for sql in [
            "ALTER SYSTEM SET max_connections = 2100",
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        ] {
            admin.batch_execute(sql).await.expect("configure");
        }
    });
    sandbox.stop_immediately().expect("stop");
    sandbox.restart().expect("restart with pg_stat_statements");
    // What the replication pane shows: a streaming standby and a slot nobody uses.
    let standby = sandbox
        .start_standby("bench_standby")
        .unwrap_or_else(|e| panic!("standby: {}: {}", e.cause, e.hint));
    let bouncer = Bouncer::start(&sandbox, "transaction", 20)
        .unwrap_or_else(|e| panic!("pgbouncer: {}: {}", e.cause, e.hint));

    let mut holders = load.block_on(prepare(&sandbox, &bouncer));
    for size in SIZES {
        load.block_on(grow(&sandbox, &mut holders, size));
        println!(
            "\n=== {size} sessions open on the server (idle, idle in transaction, sleeping, in a lock queue), a standby streaming, PgBouncer in front"
        );
        let ours = measure(&sandbox, &bouncer, &load);
        let theirs = pg_activity(&sandbox, &load);
        match theirs {
            Some(pga) => {
                println!(
                    "  pgdeck {ours:.2} ms against pg_activity's {pga:.2} ms server-side per refresh: {:.0} % of it (target at most 50 %): {}",
                    100.0 * ours / pga,
                    if ours <= pga / 2.0 { "met" } else { "MISSED" }
                );
            }
            None => println!("  pg_activity not measured"),
        }
    }
    drop(holders);
    drop(bouncer);
    drop(standby);
}

/// One run of REFRESHES full refreshes as the monitoring role; prints the breakdown and returns
/// the server-side ms per refresh.
fn measure(sandbox: &Sandbox, bouncer: &Bouncer, load: &tokio::runtime::Runtime) -> f64 {
    // The monitor runs on this thread's own runtime, so this thread's CPU time is its cost.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target = pgdeck::target::DbTarget::socket(
        sandbox.data_dir(),
        sandbox.port(),
        "bench_monitor",
        "bench_monitor",
    );
    let settings = MonitorSettings {
        pgbouncer_admin: Some(
            pgdeck::target::DbTarget::from_url(&bouncer.admin_url(), &pgdeck::target::ProcessVars)
                .expect("admin url"),
        ),
        ..MonitorSettings::default()
    };
    let mut monitor = rt.block_on(Monitor::connect(&target)).expect("monitor");
    for _ in 0..3 {
        rt.block_on(monitor.snapshot(&settings));
    }
    load.block_on(reset_statements(sandbox));
    let cpu_before = thread_cpu();
    let started = Instant::now();
    let mut walls = Vec::new();
    let mut pool_ms = Vec::new();
    let mut standbys = 0;
    for _ in 0..REFRESHES {
        let t = Instant::now();
        let s = rt.block_on(monitor.snapshot(&settings));
        walls.push(t.elapsed());
        assert!(
            matches!(s.connections, Pane::Ok(_)),
            "the connections pane failed"
        );
        match &s.replication {
            Pane::Ok(r) => standbys = r.data.standbys.len(),
            other => panic!("the replication pane failed: {other:?}"),
        }
        match &s.pools {
            Some(Pane::Ok(p)) => pool_ms.push(p.cost_ms),
            other => panic!("the pools pane failed: {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    let cpu = thread_cpu() - cpu_before;
    // The host pane reads /proc for every postgres process; it is sampled at most every 2 s, so
    // the back-to-back refreshes above reused one sample. Its own cost, per sample:
    let mut host = HostProbe::new();
    let host_cpu_before = thread_cpu();
    for _ in 0..10 {
        host.read();
    }
    let host_cpu = (thread_cpu() - host_cpu_before) / 10;
    let ours_server = load.block_on(server_ms_per_call(sandbox, "bench_monitor"));
    let total_server: f64 = ours_server.iter().map(|(_, ms, _)| ms).sum::<f64>();
    walls.sort();
    pool_ms.sort_by(f64::total_cmp);

    println!("pgdeck: one refresh of every collector, {REFRESHES} refreshes ({standbys} standby)");
    println!(
        "  server-side {:.2} ms per refresh (target at most 10 ms): {}",
        total_server,
        if total_server <= 10.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    for (query, ms, calls) in &ours_server {
        println!("    {ms:>7.3} ms  x{calls:<3} {query}");
    }
    println!(
        "  wall {:.2} ms median, {:.2} ms max; client CPU {:.2} ms per refresh ({:.1} % of one core while refreshing)",
        ms(walls[walls.len() / 2]),
        ms(*walls.last().unwrap()),
        ms(cpu) / REFRESHES as f64,
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64()
    );
    println!(
        "  pools pane (PgBouncer's admin console, SHOW POOLS + SHOW DATABASES, not in the server's cost): {:.2} ms median wall",
        pool_ms[pool_ms.len() / 2]
    );
    println!(
        "  host pane (sysinfo, {} postgres processes): {:.2} ms client CPU per sample, at most one sample every 2 s",
        host.read().postgres_processes,
        ms(host_cpu)
    );
    total_server
}

/// pg_activity's queries, each REFRESHES times via psql: server-side ms for one of its refreshes.
fn pg_activity(sandbox: &Sandbox, load: &tokio::runtime::Runtime) -> Option<f64> {
    match pg_activity_queries() {
        Ok(queries) => {
            println!("pg_activity ({PG_ACTIVITY}): its queries via psql, {REFRESHES} runs each");
            load.block_on(reset_statements(sandbox));
            let mut total = 0.0;
            for (name, sql) in &queries {
                let psql = time_with_psql(sandbox, sql);
                let server = load.block_on(server_ms_per_call(sandbox, "bench_pga"));
                let server_ms: f64 = server
                    .iter()
                    .filter(|(q, _, _)| !q.contains("pg_stat_statements"))
                    .map(|(_, ms, _)| ms)
                    .sum();
                load.block_on(reset_statements(sandbox));
                total += server_ms;
                println!(
                    "  {name:<32} server-side {server_ms:.2} ms per run; psql \\timing {psql:.2} ms median"
                );
            }
            println!("  together: {total:.2} ms server-side per refresh");
            Some(total)
        }
        Err(e) => {
            println!("pg_activity's queries not measured: {e}");
            None
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn thread_cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
    };
    t(u.user_time()) + t(u.system_time())
}

async fn connect(sandbox: &Sandbox, user: &str, db: &str) -> tokio_postgres::Client {
    let target = pgdeck::target::DbTarget::socket(sandbox.data_dir(), sandbox.port(), user, db);
    let session = pgdeck::db::connect(&target)
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {}", e.cause));
    session.client
}

/// The roles, the database, a lock queue, long-running and idle-in-transaction sessions, an
/// inactive replication slot, clients through PgBouncer; returns what keeps them open.
async fn prepare(sandbox: &Sandbox, bouncer: &Bouncer) -> Vec<tokio_postgres::Client> {
    let admin = connect(sandbox, "postgres", "postgres").await;
    admin
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; \
             CREATE ROLE bench_monitor LOGIN IN ROLE pg_monitor; \
             CREATE ROLE bench_pga LOGIN IN ROLE pg_monitor; \
             CREATE ROLE bench_app LOGIN; \
             SELECT pg_create_physical_replication_slot('bench_unused_slot', true)",
        )
        .await
        .expect("roles");
    admin
        .batch_execute("CREATE DATABASE bench_monitor OWNER bench_app")
        .await
        .expect("database");
    let app = connect(sandbox, "bench_app", "bench_monitor").await;
    app.batch_execute(
        "CREATE TABLE orders (id bigserial PRIMARY KEY, note text); \
         INSERT INTO orders (note) SELECT repeat('x', 100) FROM generate_series(1, 50000); \
         CREATE TABLE users (id bigserial PRIMARY KEY, email text); \
         INSERT INTO users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 20000) g; \
         DO $$ BEGIN FOR i IN 1..40 LOOP EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i); END LOOP; END $$; \
         ANALYZE",
    )
    .await
    .expect("tables");
    let mut clients = vec![app];
    // A lock queue: a holder, a migration waiting for ACCESS EXCLUSIVE, readers behind it.
    let holder = connect(sandbox, "bench_app", "bench_monitor").await;
    holder
        .batch_execute("BEGIN; UPDATE orders SET note = 'y' WHERE id = 1")
        .await
        .expect("hold");
    clients.push(holder);
    for sql in [
        "ALTER TABLE orders ADD COLUMN flag int",
        "SELECT count(*) FROM orders",
        "SELECT count(*) FROM orders",
        "SELECT count(*) FROM orders",
    ] {
        let c = connect(sandbox, "bench_app", "bench_monitor").await;
        tokio::spawn(async move {
            let _ = c.batch_execute(sql).await;
            // Kept until the bench ends.
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long-running queries.
    for _ in 0..5 {
        let c = connect(sandbox, "bench_app", "bench_monitor").await;
        tokio::spawn(async move { c.batch_execute("SELECT pg_sleep(600)").await });
    }
    // Idle in transaction.
    for _ in 0..10 {
        let c = connect(sandbox, "bench_app", "bench_monitor").await;
        c.batch_execute("BEGIN; SELECT 1")
            .await
            .expect("idle in tx");
        clients.push(c);
    }
    // The application through PgBouncer: idle clients, and a few in a transaction (each holds
    // a server connection).
    for i in 0..40 {
        let target = pgdeck::target::DbTarget::from_url(
            &bouncer.url("bench_monitor"),
            &pgdeck::target::ProcessVars,
        )
        .expect("url");
        let (c, _) = pgdeck::db::connect_bare(&target)
            .await
            .unwrap_or_else(|e| panic!("through pgbouncer: {}", e.cause));
        let sql = if i < 5 { "BEGIN; SELECT 1" } else { "SELECT 1" };
        c.simple_query(sql).await.expect("through pgbouncer");
        clients.push(c);
    }
    clients
}

/// Opens idle sessions until `size` client backends are open on the server.
async fn grow(sandbox: &Sandbox, clients: &mut Vec<tokio_postgres::Client>, size: usize) {
    let probe = connect(sandbox, "postgres", "postgres").await;
    let mut now = client_backends(&probe).await;
    while now < size {
        // The probe's own session counts too: one fewer to open.
        for _ in now..size {
            clients.push(connect(sandbox, "bench_app", "bench_monitor").await);
        }
        now = client_backends(&probe).await;
    }
    drop(probe);
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn client_backends(c: &tokio_postgres::Client) -> usize {
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        &[],
    )
    .await
    .map(|r| r.get::<_, i64>(0) as usize)
    .expect("count")
}

async fn reset_statements(sandbox: &Sandbox) {
    connect(sandbox, "postgres", "postgres")
        .await
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .expect("reset");
}

/// (query, server-side ms per refresh, calls) for one role, from pg_stat_statements.
async fn server_ms_per_call(sandbox: &Sandbox, role: &str) -> Vec<(String, f64, i64)> {
    let c = connect(sandbox, "postgres", "postgres").await;
    let rows = c
        .query(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), total_exec_time + total_plan_time, calls \
             FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
             WHERE r.rolname = $1 AND query NOT ILIKE 'SET %' ORDER BY 2 DESC",
            &[&role],
        )
        .await
        .expect("pg_stat_statements");
    rows.iter()
        .map(|r| {
            let q: String = r.get(0);
            (
                q.chars().take(70).collect(),
                r.get::<_, f64>(1) / REFRESHES as f64,
                r.get(2),
            )
        })
        .collect()
}

/// pg_activity's queries with its placeholders filled as pg_activity does by default
/// (duration from query_start, no minimum duration, no database filter).
fn pg_activity_queries() -> Result<Vec<(String, String)>, String> {
    let dir = match std::env::var("PGDECK_BENCH_PG_ACTIVITY_QUERIES") {
        Ok(d) => PathBuf::from(d),
        Err(_) => download_pg_activity()?,
    };
    PGA_QUERIES
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(name))
                .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
            let sql = text
                .replace("{duration_column}", "query_start")
                .replace("%(min_duration)s", "0")
                .replace("{min_duration}", "0")
                .replace("%(dbname_filter)s", "NULL")
                .replace("{dbname_filter}", "NULL");
            if sql.contains("%(") || sql.contains('{') {
                return Err(format!("{name} has placeholders this bench does not fill"));
            }
            Ok((name.trim_end_matches(".sql").to_owned(), sql))
        })
        .collect()
}

fn download_pg_activity() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join("pgdeck-bench-pg_activity");
    let queries = dir.join("pgactivity/queries");
    if queries.is_dir() {
        return Ok(queries);
    }
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "-q", "-d"])
        .arg(&dir)
        .arg(PG_ACTIVITY)
        .output()
        .map_err(|e| format!("python3 -m pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip download {PG_ACTIVITY} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let unzip = "import sys, zipfile, glob\nfor w in glob.glob(sys.argv[1] + '/*.whl'): zipfile.ZipFile(w).extractall(sys.argv[1])";
    let out = Command::new("python3")
        .args(["-c", unzip])
        .arg(&dir)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() || !queries.is_dir() {
        return Err(format!(
            "unpacking {PG_ACTIVITY}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(queries)
}

/// Runs `sql` REFRESHES times in one psql session with \timing; the median of its timings.
fn time_with_psql(sandbox: &Sandbox, sql: &str) -> f64 {
    let script = tempfile::NamedTempFile::new().expect("temp file");
    let mut text = String::from("\\timing on\n\\o /dev/null\n");
    for _ in 0..REFRESHES {
        text.push_str(sql.trim_end().trim_end_matches(';'));
        text.push_str(";\n");
    }
    std::fs::write(script.path(), text).expect("write script");
    let out = Command::new("psql")
        .arg("-X")
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg("-h")
        .arg(sandbox.data_dir())
        .arg("-p")
        .arg(sandbox.port().to_string())
        .args(["-U", "bench_pga", "-d", "bench_monitor", "-f"])
        .arg(script.path())
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Time: ")?.split(' ').next()?.parse().ok())
        .collect();
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
}
