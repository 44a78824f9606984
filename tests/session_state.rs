//! What one migration does to its session stays in that migration: settings, role, search_path,
//! temporary tables, session advisory locks. And two-phase commit, which would carry a
//! migration's work out of its transaction, is refused before anything runs.

mod common;

use common::*;

/// A target in its own schema, so that a leaked search_path shows.
fn in_schema(db: &TestDb, m: &Migrations, args: &[&str]) -> std::process::Command {
    let url = format!("{}&schema=app", db.url().replace("&schema=public", ""));
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        &url,
        "--migrations",
        m.path().to_str().unwrap(),
    ]);
    cmd.args(args);
    cmd
}

#[tokio::test]
async fn nothing_a_migration_sets_reaches_the_next_migration_or_the_ledger() {
    let db = fresh_db("session_leaks").await;
    db.exec(
        "DO $$ BEGIN CREATE ROLE pgdeck_test_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .await;
    let m = Migrations::new();
    m.add(
        "20250101000000_sets_everything",
        "CREATE SCHEMA elsewhere;\n\
         SET search_path = elsewhere;\n\
         CREATE TEMP TABLE scratch (id int);\n\
         SELECT pg_advisory_lock(4242);\n\
         CREATE TABLE public.marker (id int);\n\
         SET ROLE pgdeck_test_reader;\n\
         SET statement_timeout = '1ms';\n",
    );
    m.add(
        "20250101000001_next",
        "CREATE TABLE second (id int);\n\
         CREATE TEMP TABLE scratch (id int);\n\
         SELECT pg_sleep(0.05);\n",
    );
    m.add(
        "20250101000002_resets_all",
        "RESET ALL;\nCREATE TABLE third_in_default_path (id int);\n",
    );
    m.add(
        "20250101000003_after_reset",
        "CREATE TABLE fourth (id int);\n",
    );

    let r = run(in_schema(&db, &m, &["deploy", "--yes"]));
    assert_eq!(r.code, 0, "{r:?}");

    let placed: String = db
        .scalar(
            "SELECT string_agg(c.relnamespace::regnamespace::text || '.' || c.relname \
               || ' by ' || pg_get_userbyid(c.relowner), ', ' ORDER BY c.relname) \
             FROM pg_class c WHERE c.relname IN ('second', 'fourth') AND c.relkind = 'r'",
        )
        .await;
    assert_eq!(placed, "app.fourth by postgres, app.second by postgres");
    // The migration's own choices stand inside it.
    assert!(
        db.scalar::<bool>("SELECT to_regclass('public.third_in_default_path') IS NOT NULL")
            .await
    );
    // Its session advisory lock did not outlive it.
    let held: i64 = db
        .scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242")
        .await;
    assert_eq!(held, 0);

    let rows: Vec<(String, bool)> = db
        .client()
        .await
        .query(
            "SELECT migration_name, finished_at IS NOT NULL AND rolled_back_at IS NULL \
             FROM app._prisma_migrations ORDER BY migration_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|(_, applied)| *applied), "{rows:?}");
    assert!(
        !db.scalar::<bool>("SELECT to_regclass('elsewhere._prisma_migrations') IS NOT NULL")
            .await
    );
}

#[tokio::test]
async fn a_statement_by_statement_migration_writes_its_ledger_row_as_itself() {
    let db = fresh_db("session_leaks_no_tx").await;
    let m = Migrations::new();
    m.add("20250101000000_t", "CREATE TABLE t (id int);\n");
    m.add(
        "20250101000001_index",
        "CREATE SCHEMA elsewhere;\n\
         CREATE TABLE elsewhere._prisma_migrations (nothing int);\n\
         SET search_path = elsewhere, app;\n\
         CREATE INDEX CONCURRENTLY t_id ON t (id);\n",
    );
    m.add(
        "20250101000002_after",
        "CREATE TABLE after_index (id int);\n",
    );
    let r = run(in_schema(&db, &m, &["deploy", "--yes"]));
    assert_eq!(r.code, 0, "{r:?}");
    let finished: i64 = db
        .scalar(
            "SELECT count(*) FROM app._prisma_migrations \
             WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL AND applied_steps_count = 1",
        )
        .await;
    assert_eq!(finished, 3);
    assert!(
        db.scalar::<bool>("SELECT to_regclass('app.after_index') IS NOT NULL")
            .await
    );
    assert_eq!(
        db.scalar::<i64>("SELECT count(*) FROM elsewhere._prisma_migrations")
            .await,
        0
    );
}

#[tokio::test]
async fn two_phase_commit_in_a_migration_is_refused_before_anything_runs() {
    for (statement, sql) in [
        (
            "PREPARE TRANSACTION",
            "CREATE TABLE would_escape (id int);\nPREPARE TRANSACTION 'pgdeck_escape';\n",
        ),
        (
            "COMMIT PREPARED",
            "CREATE TABLE would_escape (id int);\nCOMMIT PREPARED 'someone_elses';\n",
        ),
        (
            "ROLLBACK PREPARED",
            "CREATE TABLE would_escape (id int);\nROLLBACK PREPARED 'someone_elses';\n",
        ),
    ] {
        let db = fresh_db("two_phase").await;
        let m = Migrations::new();
        m.add("20250101000000_first", "CREATE TABLE first (id int);\n");
        m.add("20250101000001_two_phase", sql);
        let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
        r.assert_clean_error(2);
        assert!(
            r.stderr.contains("migration.sql:2:1: two-phase commit")
                && r.stderr.contains(statement),
            "{statement}: {}",
            r.stderr
        );
        assert!(!db.table_exists("first").await, "{statement}");
        assert!(!db.table_exists("would_escape").await, "{statement}");
        assert_eq!(
            db.scalar::<i64>("SELECT count(*) FROM pg_prepared_xacts")
                .await,
            0,
            "{statement}"
        );
        assert!(db.ledger().await.is_empty(), "{statement}");
    }
}

#[tokio::test]
async fn savepoints_in_a_migration_run_as_written() {
    let db = fresh_db("savepoints").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_savepoints",
        "CREATE TABLE kept (id int);\nSAVEPOINT s;\nCREATE TABLE undone (id int);\n\
         ROLLBACK TO SAVEPOINT s;\nRELEASE SAVEPOINT s;\n",
    );
    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(db.table_exists("kept").await);
    assert!(!db.table_exists("undone").await);
}
