//! The lock-queue bound for whole migrations: no application session waits behind a pgdeck
//! migration longer than `blocking_timeout` (default `lock_timeout`) + 1 s, however many tables
//! the migration touches. Readers measure their waits from the client and from
//! pg_stat_activity; the figures are in docs/RELIABILITY.md.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio_postgres::Client;

/// Runs `SELECT count(*) FROM table` back to back until stopped; returns the longest one as the
/// client saw it.
fn reader(
    client: Client,
    table: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let mut longest = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap();
            longest = longest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        longest
    })
}

/// Polls pg_stat_activity for the longest lock wait of `application_name` sessions.
fn server_side_waits(
    client: Client,
    application_name: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let mut longest = 0.0f64;
        while !stop.load(Ordering::Relaxed) {
            let wait: f64 = client
                .query_one(
                    "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0)::float8 \
                     FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    &[&application_name],
                )
                .await
                .unwrap()
                .get(0);
            longest = longest.max(wait);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        longest
    })
}

/// Waits until a session of this database runs a statement starting with `prefix`.
async fn running(admin: &Client, prefix: &str) {
    let like = format!("{prefix}%");
    wait_for(
        &format!("{prefix} to run"),
        Duration::from_secs(30),
        || async {
            admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND query LIKE $1",
                    &[&like],
                )
                .await
                .map(|r| r.get::<_, i64>(0) == 1)
                .unwrap_or(false)
        },
    )
    .await;
}

/// Deploys `sql` as the first migration: the tables the test works on.
fn setup(cfg: &ConfigEnv, m: &Migrations, sql: &str) {
    m.add("20240101000000_setup", sql);
    let r = run(cfg.cmd(&["deploy"]));
    assert_eq!(r.code, 0, "{r:?}");
}

/// A session of the application's own role, which has no pg_read_all_stats: the watchdog
/// must see its waits all the same.
async fn app_session(db: &TestDb, name: &str) -> Client {
    db.exec(
        "DO $$ BEGIN CREATE ROLE pgdeck_test_app LOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgdeck_test_app",
    )
    .await;
    let c = db.client_as("pgdeck_test_app").await;
    c.batch_execute(&format!("SET application_name = '{name}'"))
        .await
        .unwrap();
    c
}

/// A transaction holding ACCESS SHARE on `table` (enough to make an ALTER wait), ending after
/// `hold`.
fn holder(client: Client, table: &'static str, hold: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        client
            .batch_execute(&format!("BEGIN; LOCK TABLE {table} IN ACCESS SHARE MODE"))
            .await
            .unwrap();
        tokio::time::sleep(hold).await;
        client.batch_execute("COMMIT").await.unwrap();
    })
}

#[tokio::test]
async fn readers_never_wait_behind_a_migration_past_the_bound_however_many_tables_it_alters() {
    let db = fresh_db("lock_queue_four_tables").await;
    let m = Migrations::new();
    let cfg = ConfigEnv::write(&db, &m, "dev", "lock_timeout = \"2s\"\nlock_retries = 5\n");
    setup(
        &cfg,
        &m,
        "CREATE TABLE t1 (id int); CREATE TABLE t2 (id int); CREATE TABLE t3 (id int); \
         CREATE TABLE t4 (id int); INSERT INTO t1 SELECT generate_series(1, 100);",
    );
    m.add(
        "20250101000000_four_tables",
        "ALTER TABLE t1 ADD COLUMN a int;\nALTER TABLE t2 ADD COLUMN a int;\n\
         ALTER TABLE t3 ADD COLUMN a int;\nALTER TABLE t4 ADD COLUMN a int;\n",
    );
    let journal = tempfile::tempdir().unwrap();

    // Each single wait of the migration is under lock_timeout; together they are not.
    let holders = vec![
        holder(db.client().await, "t2", Duration::from_millis(1500)),
        holder(db.client().await, "t3", Duration::from_millis(3000)),
        holder(db.client().await, "t4", Duration::from_millis(4500)),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = [
        app_session(&db, "reader").await,
        app_session(&db, "reader").await,
    ]
    .into_iter()
    .map(|c| reader(c, "t1", stop.clone()))
    .collect();
    let watcher = server_side_waits(db.client().await, "reader", stop.clone());

    let mut cmd = cfg.cmd(&["deploy"]);
    cmd.env("PGDECK_JOURNAL_DIR", journal.path());
    let r = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut client_longest = Duration::ZERO;
    for reader in readers {
        client_longest = client_longest.max(reader.await.unwrap());
    }
    let server_longest = watcher.await.unwrap();
    for h in holders {
        h.await.unwrap();
    }
    eprintln!(
        "longest reader wait: {:.2}s from the client, {server_longest:.2}s in pg_stat_activity",
        client_longest.as_secs_f64()
    );

    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("20250101000000_four_tables stopped and rolled back (attempt 1 of 6)")
            && r.stderr.contains("queued behind its locks"),
        "{}",
        r.stderr
    );
    let bound = Duration::from_secs(3);
    assert!(
        client_longest < bound,
        "a reader waited {client_longest:?} from the client"
    );
    assert!(
        server_longest < bound.as_secs_f64(),
        "a reader waited {server_longest:.2}s in pg_stat_activity"
    );

    // Applied once, every table altered, the stop journaled with who waited.
    let rows = db.ledger().await;
    let applied: Vec<_> = rows
        .iter()
        .filter(|r| r.name == "20250101000000_four_tables" && r.finished && !r.rolled_back)
        .collect();
    assert_eq!(applied.len(), 1, "{rows:?}");
    let altered: i64 = db
        .scalar("SELECT count(*) FROM information_schema.columns WHERE column_name = 'a' AND table_name IN ('t1','t2','t3','t4')")
        .await;
    assert_eq!(altered, 4);
    // One folder per environment, one file per session.
    let journaled: String = std::fs::read_dir(journal.path())
        .unwrap()
        .flat_map(|env| std::fs::read_dir(env.unwrap().path()).unwrap())
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        journaled.contains("\"event\":\"migration_stopped\"")
            && journaled.contains("\"blocking_timeout_ms\":2000"),
        "{journaled}"
    );
}

#[tokio::test]
async fn a_migration_that_holds_its_locks_too_long_fails_with_its_attempts_recorded() {
    let db = fresh_db("lock_queue_gives_up").await;
    let m = Migrations::new();
    let cfg = ConfigEnv::write(
        &db,
        &m,
        "dev",
        "lock_timeout = \"5s\"\nblocking_timeout = \"1s\"\nlock_retries = 1\n",
    );
    setup(&cfg, &m, "CREATE TABLE busy (id int);");
    m.add(
        "20250101000000_slow_under_lock",
        "ALTER TABLE busy ADD COLUMN a int;\nSELECT pg_sleep(4);\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reader = reader(app_session(&db, "reader").await, "busy", stop.clone());
    let r = tokio::task::spawn_blocking(move || run(cfg.cmd(&["deploy"])))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let longest = reader.await.unwrap();

    r.assert_clean_error(6);
    assert!(
        r.stderr.contains("was stopped after 2 attempt(s)")
            && r.stderr.contains("blocking_timeout 1.0s")
            && r.stderr.contains("split it into smaller migrations"),
        "{}",
        r.stderr
    );
    eprintln!("longest reader wait: {:.2}s", longest.as_secs_f64());
    assert!(
        longest < Duration::from_secs(2),
        "a reader waited {longest:?}"
    );
    let column: i64 = db
        .scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy' AND column_name = 'a'")
        .await;
    assert_eq!(column, 0);
    let rows = db.ledger().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].rolled_back && !rows[1].finished, "{rows:?}");
    assert!(
        rows[1]
            .logs
            .contains("Stopped by pgdeck's lock-queue watchdog"),
        "{}",
        rows[1].logs
    );
    // Rolled back, so it simply deploys again once traffic allows.
    let cfg = ConfigEnv::write(&db, &m, "dev", "blocking_timeout = \"off\"\n");
    let again = run(cfg.cmd(&["deploy"]));
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stderr.contains("warning: blocking_timeout is off"),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn a_concurrent_index_build_waits_for_old_transactions_without_lock_timeout() {
    let db = fresh_db("lock_queue_concurrently").await;
    let m = Migrations::new();
    let cfg = ConfigEnv::write(&db, &m, "dev", "lock_timeout = \"500ms\"\n");
    setup(
        &cfg,
        &m,
        "CREATE TABLE codes (v int); INSERT INTO codes SELECT generate_series(1, 1000);",
    );
    m.add(
        "20250101000000_index",
        "CREATE INDEX CONCURRENTLY codes_v ON codes (v);\n",
    );
    // An unrelated transaction with a snapshot, older than the build, for longer than
    // lock_timeout: the build must wait for it, not fail.
    let old = db.client().await;
    old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .unwrap();
    let ender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        old.batch_execute("COMMIT").await.unwrap();
    });
    let started = Instant::now();
    let r = tokio::task::spawn_blocking(move || run(cfg.cmd(&["deploy"])))
        .await
        .unwrap();
    ender.await.unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let valid: bool = db
        .scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'codes_v'::regclass")
        .await;
    assert!(valid);
}

#[tokio::test]
async fn many_short_statements_are_watched_as_closely_as_one_long_one() {
    let db = fresh_db("lock_queue_short_statements").await;
    let m = Migrations::new();
    let cfg = ConfigEnv::write(
        &db,
        &m,
        "dev",
        "blocking_timeout = \"1s\"\nlock_retries = 1\n",
    );
    setup(&cfg, &m, "CREATE TABLE busy (id int);");
    let sleeps = "SELECT pg_sleep(0.05);\n".repeat(60);
    m.add(
        "20250101000000_many_short",
        &format!("ALTER TABLE busy ADD COLUMN a int;\n{sleeps}"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reader = reader(app_session(&db, "reader").await, "busy", stop.clone());
    let r = tokio::task::spawn_blocking(move || run(cfg.cmd(&["deploy"])))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let longest = reader.await.unwrap();
    eprintln!("longest reader wait: {:.2}s", longest.as_secs_f64());
    // Stopped by the watchdog each time, never mistaken for someone else's cancel.
    r.assert_clean_error(6);
    assert!(
        r.stderr.contains("was stopped after 2 attempt(s)")
            && !r.stderr.contains("cancelled by another session"),
        "{}",
        r.stderr
    );
    assert!(
        longest < Duration::from_secs(2),
        "a reader waited {longest:?}"
    );
}

#[tokio::test]
async fn another_sessions_concurrent_build_waiting_for_the_migration_is_not_a_victim() {
    let db = fresh_db("lock_queue_other_build").await;
    let m = Migrations::new();
    let cfg = ConfigEnv::write(&db, &m, "dev", "blocking_timeout = \"1s\"\n");
    setup(
        &cfg,
        &m,
        "CREATE TABLE mine (id int); CREATE TABLE theirs (id int);",
    );
    m.add(
        "20250101000000_long",
        "ALTER TABLE mine ADD COLUMN a int;\nSELECT pg_sleep(3);\n",
    );
    let child = spawn(cfg.cmd(&["deploy"]));
    let admin = db.client().await;
    running(&admin, "SELECT pg_sleep(3)").await;
    // Waits for the migration's transaction to end, blocking no one.
    let builder = db.client().await;
    let build = tokio::spawn(async move {
        builder
            .batch_execute("CREATE INDEX CONCURRENTLY theirs_id ON theirs (id)")
            .await
    });
    let r = tokio::task::spawn_blocking(move || Run::from(child.wait_with_output().unwrap()))
        .await
        .unwrap();
    build.await.unwrap().unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !r.stderr.contains("stopped and rolled back"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn a_watchdog_whose_session_is_terminated_opens_another_and_keeps_the_bound() {
    let db = fresh_db("lock_queue_watchdog_lost").await;
    let m = Migrations::new();
    let cfg = ConfigEnv::write(
        &db,
        &m,
        "dev",
        "blocking_timeout = \"1s\"\nlock_retries = 0\n",
    );
    setup(&cfg, &m, "CREATE TABLE busy (id int);");
    m.add(
        "20250101000000_slow_under_lock",
        "ALTER TABLE busy ADD COLUMN a int;\nSELECT pg_sleep(5);\n",
    );
    let child = spawn(cfg.cmd(&["deploy"]));
    let admin = db.client().await;
    running(&admin, "SELECT pg_sleep(5)").await;
    wait_for(
        "the watchdog's session to be terminated",
        Duration::from_secs(30),
        || async {
            admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name = 'pgdeck-watchdog'",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0) == 1)
                .unwrap_or(false)
        },
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = reader(app_session(&db, "reader").await, "busy", stop.clone());
    let r = tokio::task::spawn_blocking(move || Run::from(child.wait_with_output().unwrap()))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let longest = reader.await.unwrap();
    r.assert_clean_error(6);
    assert!(
        r.stderr.contains("was stopped after 1 attempt(s)"),
        "{}",
        r.stderr
    );
    assert!(
        longest < Duration::from_secs(2),
        "a reader waited {longest:?}"
    );
}

#[tokio::test]
async fn a_deploy_waiting_for_a_lock_names_who_holds_it_and_a_lock_timeout_says_how_to_end_it() {
    let db = fresh_db("lock_queue_names_the_holder").await;
    let m = Migrations::new();
    let cfg = ConfigEnv::write(
        &db,
        &m,
        "dev",
        "lock_timeout = \"1500ms\"\nlock_retries = 1\n",
    );
    setup(&cfg, &m, "CREATE TABLE t1 (id int);");
    m.add("20250101000000_alter", "ALTER TABLE t1 ADD COLUMN a int;\n");
    // An application session that read the table and went idle in its transaction.
    let app = app_session(&db, "billing-worker").await;
    app.batch_execute("BEGIN; SELECT count(*) FROM t1")
        .await
        .unwrap();

    let cmd = cfg.cmd(&["deploy", "--yes"]);
    let r = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    let pid: i32 = db
        .scalar("SELECT pid FROM pg_stat_activity WHERE application_name = 'billing-worker'")
        .await;
    assert_eq!(r.code, 6, "{r:?}");
    // While it waited, the deploy said for whom, in words.
    let waiting = format!(
        "for a lock held by pid {pid} (pgdeck_test_app, billing-worker), idle in transaction"
    );
    assert!(r.stderr.contains(&waiting), "{}", r.stderr);
    // The failure names it, and how to end it: a cancel would not help an idle transaction.
    assert!(
        r.stderr.contains(&format!(
            "it waited for pid {pid} (pgdeck_test_app, billing-worker), idle in transaction"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("`pgdeck monitor terminate {pid} --backend-start "))
            && r.stderr.contains("a cancel would not help"),
        "{}",
        r.stderr
    );
    // Nothing of it was applied.
    let added: i64 = db
        .scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 't1' AND column_name = 'a'")
        .await;
    assert_eq!(added, 0);
    app.batch_execute("ROLLBACK").await.unwrap();
}
