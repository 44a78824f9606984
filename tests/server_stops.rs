//! Migrations the server stops for a reason outside their SQL: the role's or database's
//! statement_timeout, a cancel or a termination by another session, an
//! idle_in_transaction_session_timeout. Each is named as what it is, with exit 14 and a hint
//! that does not blame the SQL; the attempt is recorded as rolled back (on a new session when
//! the server ended the old one), and the next deploy applies the migration once.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const TIMEOUT: Duration = Duration::from_secs(30);
const INTERRUPTED: i32 = 14;

/// The one row a stopped attempt leaves: rolled back, not finished, with its logs.
async fn one_rolled_back_attempt(db: &TestDb, name: &str) -> String {
    let rows = db.ledger().await;
    let mine: Vec<_> = rows.iter().filter(|r| r.name == name).collect();
    assert_eq!(mine.len(), 1, "{rows:?}");
    assert!(mine[0].rolled_back && !mine[0].finished, "{rows:?}");
    mine[0].logs.clone()
}

/// Waits until a backend of this database runs a query starting with `prefix`, then runs
/// `action` (a function of `pid`) on it.
async fn when_running(db: &TestDb, prefix: &str, action: &str) {
    let admin = db.client().await;
    let sql = format!(
        "SELECT count({action}(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'active' AND query LIKE $1"
    );
    let like = format!("{prefix}%");
    wait_for(&format!("{prefix} to be running"), TIMEOUT, || async {
        admin
            .query_one(&sql, &[&like])
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
    })
    .await;
}

fn assert_not_blamed_on_the_sql(r: &Run) {
    r.assert_clean_error(INTERRUPTED);
    for wrong in [
        "fix migration.sql",
        "lost the connection",
        "check the server log",
    ] {
        assert!(!r.stderr.contains(wrong), "{wrong:?} in {}", r.stderr);
    }
    assert!(
        r.stderr.contains("nothing of it was applied"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn a_database_statement_timeout_is_named_and_the_attempt_recorded() {
    let db = fresh_db("stop_statement_timeout").await;
    db.exec(&format!(
        "ALTER DATABASE {} SET statement_timeout = '1s'",
        db.name
    ))
    .await;
    let m = Migrations::new();
    m.add(
        "20250101000000_slow",
        "CREATE TABLE made (id int);\nSELECT pg_sleep(3);\n",
    );
    let r = run(pgdeck(&db, m.path(), &["deploy"]));
    assert_not_blamed_on_the_sql(&r);
    assert!(
        r.stderr
            .contains("was stopped by statement_timeout (1s, set for the role or database)")
            && r.stderr.contains("migration.sql:2:1")
            && r.stderr.contains("ALTER ROLE ... SET statement_timeout"),
        "{}",
        r.stderr
    );
    let logs = one_rolled_back_attempt(&db, "20250101000000_slow").await;
    assert!(logs.contains("57014"), "{logs}");
    assert!(!db.table_exists("made").await);

    db.exec(&format!(
        "ALTER DATABASE {} RESET statement_timeout",
        db.name
    ))
    .await;
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy"])).code, 0);
    assert!(db.table_exists("made").await);
}

#[tokio::test]
async fn a_cancel_from_another_session_is_named_and_the_attempt_recorded() {
    let db = fresh_db("stop_cancelled_elsewhere").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_slow",
        "CREATE TABLE made (id int);\nSELECT pg_sleep(5);\n",
    );
    let child = spawn(pgdeck(&db, m.path(), &["deploy"]));
    when_running(&db, "SELECT pg_sleep(5)", "pg_cancel_backend").await;
    let r = Run::from(child.wait_with_output().unwrap());
    assert_not_blamed_on_the_sql(&r);
    assert!(
        r.stderr.contains("was cancelled by another session")
            && r.stderr.contains("pg_cancel_backend"),
        "{}",
        r.stderr
    );
    one_rolled_back_attempt(&db, "20250101000000_slow").await;
    assert!(!db.table_exists("made").await);
}

#[tokio::test]
async fn a_terminated_session_is_named_and_the_attempt_recorded_on_a_new_one() {
    let db = fresh_db("stop_terminated").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_slow",
        "CREATE TABLE made (id int);\nSELECT pg_sleep(5);\n",
    );
    let child = spawn(pgdeck(&db, m.path(), &["deploy"]));
    when_running(&db, "SELECT pg_sleep(5)", "pg_terminate_backend").await;
    let r = Run::from(child.wait_with_output().unwrap());
    assert_not_blamed_on_the_sql(&r);
    assert!(
        r.stderr.contains(
            "the server ended the deploy's session during 20250101000000_slow (pg_terminate_backend"
        ),
        "{}",
        r.stderr
    );
    one_rolled_back_attempt(&db, "20250101000000_slow").await;
    assert!(!db.table_exists("made").await);
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy"])).code, 0);
    assert!(db.table_exists("made").await);
}

#[tokio::test]
async fn an_idle_in_transaction_timeout_is_named_even_though_the_driver_only_sees_a_closed_connection()
 {
    let db = fresh_db("stop_idle_in_transaction").await;
    db.exec(&format!(
        "ALTER DATABASE {} SET idle_in_transaction_session_timeout = '500ms'",
        db.name
    ))
    .await;
    let m = Migrations::new();
    m.add(
        "20250101000000_paused",
        "CREATE TABLE made (id int);\nSELECT pg_sleep(1.5);\nCREATE TABLE after_pause (id int);\n",
    );
    let child = spawn(pgdeck(&db, m.path(), &["deploy"]));
    let pid = Pid::from_raw(child.id() as i32);
    // pgdeck is paused inside the migration's transaction, as a slow client would be.
    when_running(&db, "SELECT pg_sleep(1.5)", "").await;
    kill(pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    kill(pid, Signal::SIGCONT).unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert_not_blamed_on_the_sql(&r);
    assert!(
        r.stderr.contains("idle_in_transaction_session_timeout"),
        "{}",
        r.stderr
    );
    one_rolled_back_attempt(&db, "20250101000000_paused").await;
    assert!(!db.table_exists("made").await);
}

#[tokio::test]
async fn a_statement_timeout_outside_a_transaction_says_what_was_applied() {
    let db = fresh_db("stop_statement_timeout_no_tx").await;
    db.exec(&format!(
        "ALTER DATABASE {} SET statement_timeout = '1s'",
        db.name
    ))
    .await;
    let m = Migrations::new();
    m.add("20250101000000_t", "CREATE TABLE t (id int);\n");
    m.add(
        "20250101000001_index_then_slow",
        "CREATE INDEX CONCURRENTLY t_id ON t (id);\nSELECT pg_sleep(3);\n",
    );
    let r = run(pgdeck(&db, m.path(), &["deploy"]));
    r.assert_clean_error(INTERRUPTED);
    assert!(
        r.stderr.contains("was stopped by statement_timeout")
            && r.stderr.contains("the statements before it were applied")
            && !r.stderr.contains("fix migration.sql"),
        "{}",
        r.stderr
    );
    // Prisma's failed state: started, neither finished nor rolled back.
    let rows = db.ledger().await;
    let failed = rows
        .iter()
        .find(|r| r.name == "20250101000001_index_then_slow")
        .unwrap();
    assert!(!failed.finished && !failed.rolled_back, "{rows:?}");
}

#[tokio::test]
async fn a_first_statement_stopped_outside_a_transaction_is_recorded_as_not_applied() {
    let db = fresh_db("stop_first_no_tx").await;
    let m = Migrations::new();
    m.add("20250101000000_t", "CREATE TABLE t (id int);\n");
    let r = run(pgdeck(&db, m.path(), &["deploy"]));
    assert_eq!(r.code, 0, "{r:?}");
    db.exec(&format!(
        "ALTER DATABASE {} SET statement_timeout = '1s'",
        db.name
    ))
    .await;
    m.add(
        "20250101000001_slow_then_vacuum",
        "SELECT pg_sleep(3);\nVACUUM t;\n",
    );
    let r = run(pgdeck(&db, m.path(), &["deploy"]));
    assert_not_blamed_on_the_sql(&r);
    assert!(
        !r.stderr.contains("statements before it were applied") && r.stderr.contains("deploy"),
        "{}",
        r.stderr
    );
    one_rolled_back_attempt(&db, "20250101000001_slow_then_vacuum").await;
}

#[tokio::test]
async fn causes_that_are_in_the_sql_are_still_the_sqls() {
    let db = fresh_db("stop_sql_causes").await;
    // The migration's own statement_timeout: its SQL, exit 4.
    let m = Migrations::new();
    m.add(
        "20250101000000_own_timeout",
        "SET LOCAL statement_timeout = '300ms';\nSELECT pg_sleep(1);\n",
    );
    let r = run(pgdeck(&db, m.path(), &["deploy"]));
    r.assert_clean_error(4);
    assert!(
        r.stderr.contains("a statement_timeout it sets itself")
            && r.stderr
                .contains("raise or remove the SET statement_timeout"),
        "{}",
        r.stderr
    );
    // A file the server cannot find is the SQL's too, not "free the disk".
    let m = Migrations::new();
    m.add(
        "20250101000000_copy_file",
        "CREATE TABLE c (v int);\nCOPY c FROM '/nonexistent/pgdeck.csv';\n",
    );
    let r = run(pgdeck(&db, m.path(), &["deploy"]));
    r.assert_clean_error(4);
    assert!(
        r.stderr.contains("SQLSTATE 58P01") && !r.stderr.contains("free the disk"),
        "{}",
        r.stderr
    );
    // COPY FROM STDIN would wait for data: refused before anything runs.
    let m = Migrations::new();
    m.add(
        "20250101000000_copy_stdin",
        "CREATE TABLE d (v int);\nCOPY d FROM STDIN;\n",
    );
    let r = run(pgdeck(&db, m.path(), &["deploy"]));
    r.assert_clean_error(2);
    assert!(
        r.stderr.contains("migration.sql:2:1: COPY ... FROM STDIN"),
        "{}",
        r.stderr
    );
    assert!(!db.table_exists("d").await);
}

#[tokio::test]
async fn a_terminated_concurrent_index_build_names_the_invalid_index_it_left() {
    let db = fresh_db("stop_terminated_build").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_t",
        "CREATE TABLE codes (v int);\nINSERT INTO codes SELECT generate_series(1, 1000);\n",
    );
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy"])).code, 0);
    m.add(
        "20250101000001_index",
        "CREATE INDEX CONCURRENTLY codes_v ON codes (v);\n",
    );
    // An old snapshot makes the build wait, so it can be terminated mid-way.
    let old = db.client().await;
    old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM codes")
        .await
        .unwrap();
    let child = spawn(pgdeck(&db, m.path(), &["deploy"]));
    when_running(&db, "CREATE INDEX CONCURRENTLY", "pg_terminate_backend").await;
    let r = Run::from(child.wait_with_output().unwrap());
    old.batch_execute("COMMIT").await.unwrap();
    r.assert_clean_error(INTERRUPTED);
    assert!(
        r.stderr.contains("the server ended the deploy's session")
            && r.stderr.contains("codes_v is left INVALID")
            && r.stderr.contains("DROP INDEX CONCURRENTLY codes_v;"),
        "{}",
        r.stderr
    );
    let rows = db.ledger().await;
    let failed = rows
        .iter()
        .find(|r| r.name == "20250101000001_index")
        .unwrap();
    assert!(!failed.finished && !failed.rolled_back, "{rows:?}");
    assert!(failed.logs.contains("57P01"), "{}", failed.logs);
}

#[tokio::test]
async fn the_deploy_session_outlives_an_idle_session_timeout_during_its_backoff() {
    let db = fresh_db("stop_idle_session_backoff").await;
    let m = Migrations::new();
    m.add("20250101000000_t", "CREATE TABLE t (id int);\n");
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy"])).code, 0);
    db.exec(&format!(
        "ALTER DATABASE {} SET idle_session_timeout = '1s'",
        db.name
    ))
    .await;
    m.add("20250101000001_alter", "ALTER TABLE t ADD COLUMN a int;\n");
    let cfg = ConfigEnv::write(
        &db,
        &m,
        "dev",
        "lock_timeout = \"200ms\"\nlock_retries = 6\n",
    );
    // Held for longer than the backoff's first pauses add up to, so a pause past 1 s comes.
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        holder.batch_execute("COMMIT").await.unwrap();
    });
    let r = tokio::task::spawn_blocking(move || run(cfg.cmd(&["deploy"])))
        .await
        .unwrap();
    release.await.unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("lock_timeout hit"), "{}", r.stderr);
}
