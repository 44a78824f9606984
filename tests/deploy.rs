//! `pgdeck deploy` against a real PostgreSQL: ledger compatibility, atomicity, crash safety,
//! concurrency, lock_timeout, and statements that cannot run in a transaction.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn deploy_into_an_empty_database_records_prisma_rows_and_a_second_deploy_changes_nothing() {
    let db = fresh_db("deploy_empty").await;
    let m = Migrations::samples();
    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("applied 3 migration(s)"), "{}", r.stdout);

    let rows = db.ledger().await;
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert!(row.finished && !row.rolled_back, "{row:?}");
        assert_eq!(row.steps, 1);
        assert_eq!(row.checksum, sha256_of(&m.file(&row.name)), "{}", row.name);
    }
    assert!(db.table_exists("StripeWebhookEvent").await);
    let valid: bool = db
        .scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = '\"QRCode_usedByUserId_idx\"'::regclass")
        .await;
    assert!(valid);

    let again = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("nothing to deploy"),
        "{}",
        again.stdout
    );
    assert_eq!(db.ledger().await.len(), 3);
}

#[tokio::test]
async fn ledger_table_has_exactly_prismas_columns() {
    let db = fresh_db("ledger_ddl").await;
    let m = Migrations::new();
    m.add("20250101000000_a", "CREATE TABLE a (id int);");
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    let cols: String = db
        .scalar(
            "SELECT string_agg(column_name || ' ' || data_type || coalesce('(' || character_maximum_length || ')', '') \
             || ' ' || is_nullable || coalesce(' default ' || column_default, ''), ', ' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_name = '_prisma_migrations'",
        )
        .await;
    assert_eq!(
        cols,
        "id character varying(36) NO, checksum character varying(64) NO, \
         finished_at timestamp with time zone YES, migration_name character varying(255) NO, \
         logs text YES, rolled_back_at timestamp with time zone YES, \
         started_at timestamp with time zone NO default now(), applied_steps_count integer NO default 0"
    );
    let unique_indexes: i64 = db
        .scalar("SELECT count(*) FROM pg_index WHERE indrelid = '_prisma_migrations'::regclass AND NOT indisprimary")
        .await;
    assert_eq!(
        unique_indexes, 0,
        "no index beyond the primary key, as in Prisma"
    );
}

#[tokio::test]
async fn deploy_rolls_back_and_records_a_failing_migration_then_redeploys_the_fixed_file() {
    let db = fresh_db("deploy_fail").await;
    let m = Migrations::new();
    m.add("20250101000000_ok", "CREATE TABLE ok (id int);");
    m.add(
        "20250102000000_bad",
        "CREATE TABLE half (id int);\n\nALTER TABLE ok ADD COLUMN x int;\nINSERT INTO missing VALUES (1);\n",
    );
    m.add("20250103000000_later", "CREATE TABLE later (id int);");

    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    r.assert_clean_error(4);
    assert!(r.stderr.contains("20250102000000_bad"), "{}", r.stderr);
    assert!(
        r.stderr.contains("migration.sql:4:13"),
        "position of the failing relation: {}",
        r.stderr
    );
    assert!(r.stderr.contains("42P01"), "{}", r.stderr);

    assert!(db.table_exists("ok").await);
    assert!(
        !db.table_exists("half").await,
        "the failed migration's first statement was rolled back"
    );
    let x_exists: bool = db
        .scalar("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'ok' AND column_name = 'x')")
        .await;
    assert!(!x_exists);
    assert!(
        !db.table_exists("later").await,
        "deploy stops at the failure"
    );

    let rows = db.ledger().await;
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r.name == "20250102000000_bad")
        .collect();
    assert_eq!(bad.len(), 1);
    assert!(!bad[0].finished && bad[0].rolled_back, "{:?}", bad[0]);
    assert!(
        bad[0].logs.contains("relation \"missing\" does not exist"),
        "{}",
        bad[0].logs
    );
    assert!(bad[0].logs.contains("line 4, column 13"), "{}", bad[0].logs);

    // Fixing the file is enough: no manual resolve.
    m.add(
        "20250102000000_bad",
        "CREATE TABLE half (id int);\nALTER TABLE ok ADD COLUMN x int;\n",
    );
    let fixed = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    assert_eq!(fixed.code, 0, "{fixed:?}");
    assert!(db.table_exists("half").await && db.table_exists("later").await);
    let status = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(status.code, 0, "{status:?}");
}

#[tokio::test]
async fn killing_deploy_mid_migration_leaves_nothing_applied_and_the_next_deploy_applies_it() {
    let db = fresh_db("deploy_sigkill").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_slow",
        "CREATE TABLE slow_created (id int);\nSELECT pg_sleep(5);\nCREATE TABLE slow_after (id int);\n",
    );
    let mut child = spawn(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    let probe = db.client().await;
    wait_for("the migration's pg_sleep to be running", TIMEOUT, || async {
        probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(5)%'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
    })
    .await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    db.wait_for_pgdeck_sessions_to_end().await;

    assert!(
        !db.table_exists("slow_created").await,
        "no object of the interrupted migration may exist"
    );
    assert!(
        db.ledger().await.iter().all(|r| !r.finished),
        "no finished row"
    );

    let again = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    assert_eq!(again.code, 0, "{again:?}");
    assert!(db.table_exists("slow_created").await && db.table_exists("slow_after").await);
    let applied: Vec<_> = db
        .ledger()
        .await
        .into_iter()
        .filter(|r| r.finished)
        .collect();
    assert_eq!(applied.len(), 1);
}

#[tokio::test]
async fn two_deploys_at_once_apply_each_migration_once_and_the_second_names_the_holder() {
    let db = fresh_db("deploy_concurrent").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_a",
        "CREATE TABLE a (id int);\nSELECT pg_sleep(1.5);",
    );
    m.add("20250102000000_b", "CREATE TABLE b (id int);");
    let first = spawn(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    let second = spawn(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    let runs = [
        Run::from(first.wait_with_output().unwrap()),
        Run::from(second.wait_with_output().unwrap()),
    ];
    for r in &runs {
        assert_eq!(r.code, 0, "{r:?}");
    }
    let waited: Vec<_> = runs
        .iter()
        .filter(|r| {
            r.stderr
                .contains("waiting for the migration lock held by pid")
        })
        .collect();
    assert_eq!(waited.len(), 1, "exactly one deploy waited: {runs:?}");
    assert!(
        waited[0].stderr.contains("(pgdeck, postgres@"),
        "{}",
        waited[0].stderr
    );
    assert!(
        runs.iter().any(|r| r.stdout.contains("nothing to deploy")),
        "{runs:?}"
    );
    let rows = db.ledger().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.finished));
}

#[tokio::test]
async fn deploy_gives_up_waiting_for_the_migration_lock_after_lock_wait() {
    let db = fresh_db("deploy_lock_wait").await;
    let m = Migrations::new();
    m.add("20250101000000_a", "CREATE TABLE a (id int);");
    let holder = db.client().await;
    holder
        .batch_execute(
            "SET application_name = 'prisma-migrate'; SELECT pg_advisory_lock(72707369);",
        )
        .await
        .unwrap();
    let r = run(pgdeck(
        &db,
        m.path(),
        &["deploy", "--yes", "--lock-wait", "1"],
    ));
    r.assert_clean_error(6);
    assert!(r.stderr.contains("prisma-migrate"), "{}", r.stderr);
    assert!(!db.table_exists("a").await);

    // Prisma's switch turns the lock off, as it does for `prisma migrate deploy`.
    let mut cmd = pgdeck(&db, m.path(), &["deploy", "--yes"]);
    cmd.env("PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK", "1");
    assert_eq!(run(cmd).code, 0);
}

#[tokio::test]
async fn lock_timeout_fails_the_migration_after_retries_without_queueing_traffic_longer_than_lock_timeout()
 {
    let db = fresh_db("deploy_lock_timeout").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_busy",
        "CREATE TABLE busy (id int); INSERT INTO busy VALUES (1);",
    );
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    m.add(
        "20250102000000_alter_busy",
        "ALTER TABLE busy ADD COLUMN note text;",
    );
    let config = ConfigEnv::write(
        &db,
        &m,
        "test",
        "lock_timeout = \"400ms\"\nlock_retries = 2",
    );

    // A long transaction holds a lock that conflicts with ALTER TABLE's ACCESS EXCLUSIVE.
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM busy;")
        .await
        .unwrap();

    let cmd = config.cmd(&["deploy", "--yes"]);
    let mut child = spawn(cmd);

    // Meanwhile, ordinary reads arrive. Each one that arrives while the ALTER waits queues behind
    // it; lock_timeout bounds how long.
    let probe = std::sync::Arc::new(db.client().await);
    let probe_pid: i32 = probe
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let watcher = db.client().await;
    let mut longest = Duration::ZERO;
    // The same wait as the server sees it: how long pg_stat_activity shows the probe waiting
    // for a lock.
    let mut longest_seen_by_server = 0f64;
    let mut queued_probes = 0;
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "deploy did not give up");
        let alter_waiting: bool = watcher
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'busy'::regclass AND mode = 'AccessExclusiveLock' AND NOT granted)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if alter_waiting {
            let start = Instant::now();
            let p = probe.clone();
            let read =
                tokio::spawn(async move { p.query_one("SELECT count(*) FROM busy", &[]).await });
            while !read.is_finished() {
                let waited: f64 = watcher
                    .query_one(
                        "SELECT coalesce(max(extract(epoch FROM now() - query_start)), 0)::float8 \
                         FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                        &[&probe_pid],
                    )
                    .await
                    .unwrap()
                    .get(0);
                longest_seen_by_server = longest_seen_by_server.max(waited);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            read.await.unwrap().unwrap();
            longest = longest.max(start.elapsed());
            queued_probes += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let r = Run::from(child.wait_with_output().unwrap());
    r.assert_clean_error(6);
    assert!(r.stderr.contains("after 3 attempt(s)"), "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("lock_timeout hit").count(),
        2,
        "each retry shown: {}",
        r.stderr
    );
    assert!(queued_probes >= 1, "no read arrived while the ALTER waited");
    assert!(
        longest <= Duration::from_millis(400) + Duration::from_secs(1),
        "a read queued behind the ALTER for {longest:?}"
    );
    assert!(
        longest_seen_by_server <= 1.4,
        "pg_stat_activity showed a read waiting {longest_seen_by_server:.3}s"
    );
    eprintln!(
        "lock contention: {queued_probes} reads queued behind the ALTER; longest {longest:?} (client), {longest_seen_by_server:.3}s (pg_stat_activity)"
    );
    let rows = db.ledger().await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows[1].rolled_back && rows[1].logs.contains("55P03"),
        "{:?}",
        rows[1]
    );
    holder.batch_execute("ROLLBACK").await.unwrap();

    // Once the long transaction is gone the same migration deploys.
    let cmd = config.cmd(&["deploy", "--yes"]);
    assert_eq!(run(cmd).code, 0);
}

#[tokio::test]
async fn concurrent_index_runs_outside_a_transaction_and_a_failed_unique_build_is_reported_invalid()
{
    let db = fresh_db("deploy_concurrently").await;
    let m = Migrations::new();
    m.add(
        "20250100000000_codes",
        "CREATE TABLE codes (v int); INSERT INTO codes VALUES (1), (1), (2);",
    );
    m.add(
        "20250101000000_plain_index",
        "CREATE INDEX CONCURRENTLY codes_v_idx ON codes (v);",
    );
    m.add(
        "20250102000000_unique_index",
        "CREATE UNIQUE INDEX CONCURRENTLY codes_v_key ON codes (v);",
    );

    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    r.assert_clean_error(4);
    assert!(
        r.stderr.contains("no transaction: statement by statement"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("codes_v_key is left INVALID"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("DROP INDEX CONCURRENTLY codes_v_key;"),
        "{}",
        r.stderr
    );

    // The first one was built concurrently, which PostgreSQL refuses inside a transaction block.
    let valid: bool = db
        .scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'codes_v_idx'::regclass")
        .await;
    assert!(valid);
    let rows = db.ledger().await;
    let failed = rows
        .iter()
        .find(|r| r.name == "20250102000000_unique_index")
        .unwrap();
    assert!(
        !failed.finished && !failed.rolled_back,
        "Prisma's failed state: {failed:?}"
    );
    assert!(
        failed.logs.contains("23505")
            && failed.logs.contains("DROP INDEX CONCURRENTLY codes_v_key;"),
        "{}",
        failed.logs
    );

    let blocked = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    blocked.assert_clean_error(4);
    assert!(
        blocked
            .stderr
            .contains("resolve --rolled-back 20250102000000_unique_index"),
        "{}",
        blocked.stderr
    );

    // The documented way out: clean up, fix the data, resolve, redeploy.
    db.exec("DROP INDEX CONCURRENTLY codes_v_key;").await;
    db.exec("DELETE FROM codes WHERE ctid = (SELECT max(ctid) FROM codes WHERE v = 1);")
        .await;
    assert_eq!(
        run(pgdeck(
            &db,
            m.path(),
            &[
                "resolve",
                "--rolled-back",
                "20250102000000_unique_index",
                "--yes"
            ]
        ))
        .code,
        0
    );
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    let valid: bool = db
        .scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'codes_v_key'::regclass")
        .await;
    assert!(valid);
}

#[tokio::test]
async fn begin_and_commit_written_in_a_prisma_migration_are_folded_into_its_transaction() {
    let db = fresh_db("deploy_begin_commit").await;
    let m = Migrations::new();
    // Prisma writes enum rewrites like this.
    m.add(
        "20250101000000_enum",
        "CREATE TYPE \"Role\" AS ENUM ('USER', 'ADMIN');\nCREATE TABLE acct (role \"Role\");\n\
         -- AlterEnum\nBEGIN;\nCREATE TYPE \"Role_new\" AS ENUM ('USER');\n\
         ALTER TABLE acct ALTER COLUMN role TYPE \"Role_new\" USING (role::text::\"Role_new\");\n\
         ALTER TYPE \"Role\" RENAME TO \"Role_old\";\nALTER TYPE \"Role_new\" RENAME TO \"Role\";\n\
         DROP TYPE \"Role_old\";\nCOMMIT;\nSELECT 1/0;\n",
    );
    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    r.assert_clean_error(4);
    // The division by zero after COMMIT rolled back everything, the part inside BEGIN/COMMIT too.
    assert!(!db.table_exists("acct").await);

    m.add(
        "20250101000000_enum",
        "CREATE TYPE \"Role\" AS ENUM ('USER', 'ADMIN');\nCREATE TABLE acct (role \"Role\");\nBEGIN;\n\
         CREATE TYPE \"Role_new\" AS ENUM ('USER');\nALTER TABLE acct ALTER COLUMN role TYPE \"Role_new\" USING (role::text::\"Role_new\");\n\
         DROP TYPE \"Role\";\nALTER TYPE \"Role_new\" RENAME TO \"Role\";\nCOMMIT;\n",
    );
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    assert!(db.table_exists("acct").await);
}

#[tokio::test]
async fn deploy_into_a_prisma_schema_parameter_keeps_the_ledger_in_that_schema() {
    let db = fresh_db("deploy_schema_param").await;
    let m = Migrations::new();
    m.add("20250101000000_a", "CREATE TABLE in_schema (id int);");
    let url = format!("{}&schema=shop", db.url().replace("&schema=public", ""));
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        &url,
        "--migrations",
        m.path().to_str().unwrap(),
        "deploy",
        "--yes",
    ]);
    let r = run(cmd);
    assert_eq!(r.code, 0, "{r:?}");
    let both: bool = db
        .scalar("SELECT to_regclass('shop._prisma_migrations') IS NOT NULL AND to_regclass('shop.in_schema') IS NOT NULL AND to_regclass('public.in_schema') IS NULL")
        .await;
    assert!(both);
}

#[tokio::test]
async fn deploy_refuses_a_non_empty_schema_without_ledger_and_points_to_baselining() {
    let db = fresh_db("deploy_p3005").await;
    db.exec("CREATE TABLE legacy (id int);").await;
    let m = Migrations::new();
    m.add("20250101000000_init", "CREATE TABLE legacy (id int);");
    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    r.assert_clean_error(7);
    assert!(
        r.stderr.contains("not empty") && r.stderr.contains("resolve --applied"),
        "{}",
        r.stderr
    );

    // Baseline: record the existing state, then deploy is a no-op.
    assert_eq!(
        run(pgdeck(
            &db,
            m.path(),
            &["resolve", "--applied", "20250101000000_init", "--yes"]
        ))
        .code,
        0
    );
    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("nothing to deploy"));
}

#[tokio::test]
async fn a_forward_deploy_just_runs_and_a_protected_environment_needs_the_database_name() {
    let db = fresh_db("deploy_confirm").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_seed",
        "CREATE TABLE seed (id int); INSERT INTO seed VALUES (1);",
    );
    // Unprotected: no terminal, no --yes, and it deploys, as `prisma migrate deploy` does.
    let r = run(pgdeck(&db, m.path(), &["deploy"]));
    assert_eq!(r.code, 0, "{r:?}");
    m.add("20250102000000_a", "CREATE TABLE a (id int);");

    let backup_dir = tempfile::tempdir().unwrap();
    let backups = backup_dir.path();
    let config = ConfigEnv::write(
        &db,
        &m,
        "production",
        &format!("protected = true\nbackup_dir = \"{}\"", backups.display()),
    );
    let prod = |extra: &[&str]| {
        let mut args = vec!["deploy"];
        args.extend_from_slice(extra);
        run(config.cmd(&args))
    };
    prod(&["--yes"]).assert_clean_error(7);
    let wrong = prod(&["--yes", "--confirm", "some_other_db"]);
    wrong.assert_clean_error(7);
    assert!(!db.table_exists("a").await);
    // The right name, but no verified backup yet.
    let no_backup = prod(&["--confirm", &db.name]);
    no_backup.assert_clean_error(7);
    assert!(
        no_backup.stderr.contains("no backup of") && no_backup.stderr.contains("backup verify"),
        "{}",
        no_backup.stderr
    );
    // A backup of the same database taken in another environment does not count.
    let elsewhere = run(pgdeck(
        &db,
        m.path(),
        &["backup", "--dir", backups.to_str().unwrap(), "create"],
    ));
    assert_eq!(elsewhere.code, 0, "{elsewhere:?}");
    assert_eq!(
        run(pgdeck(
            &db,
            m.path(),
            &["backup", "--dir", backups.to_str().unwrap(), "verify"]
        ))
        .code,
        0
    );
    let foreign = prod(&["--confirm", &db.name]);
    foreign.assert_clean_error(7);
    assert!(
        foreign
            .stderr
            .contains("taken in environment 'default', not 'production'")
            && foreign.stderr.contains("--accept-foreign-backup"),
        "{}",
        foreign.stderr
    );
    let created = run(config.cmd(&["backup", "create"]));
    assert_eq!(created.code, 0, "{created:?}");
    let unverified = prod(&["--confirm", &db.name]);
    unverified.assert_clean_error(7);
    assert!(
        unverified.stderr.contains("no verified backup"),
        "{}",
        unverified.stderr
    );
    assert!(!db.table_exists("a").await);
    let verified = run(config.cmd(&["backup", "verify"]));
    assert_eq!(verified.code, 0, "{verified:?}");
    let ok = prod(&["--confirm", &db.name]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stderr.contains("verified backup: "), "{}", ok.stderr);
    assert!(
        ok.stderr
            .contains("checksum and table of contents re-checked"),
        "{}",
        ok.stderr
    );
    assert!(db.table_exists("a").await);
}

#[tokio::test]
async fn a_stale_backup_does_not_open_the_gate_but_a_stated_reason_does() {
    let db = fresh_db("deploy_backup_age").await;
    // A backup of an empty database holds nothing and is never verified: give it a table.
    let m = Migrations::new();
    m.add("20250101000000_existing", "CREATE TABLE existing (id int);");
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy"])).code, 0);
    m.add("20250102000000_a", "CREATE TABLE a (id int);");
    let backup_dir = tempfile::tempdir().unwrap();
    let backups = backup_dir.path();
    let config = ConfigEnv::write(
        &db,
        &m,
        "production",
        &format!(
            "protected = true\nbackup_dir = \"{}\"\nbackup_max_age = \"1s\"",
            backups.display()
        ),
    );
    assert_eq!(run(config.cmd(&["backup", "create"])).code, 0);
    assert_eq!(run(config.cmd(&["backup", "verify"])).code, 0);
    std::thread::sleep(Duration::from_millis(1100));
    let stale = run(config.cmd(&["deploy", "--confirm", &db.name]));
    stale.assert_clean_error(7);
    assert!(
        stale.stderr.contains("old, more than 1 s"),
        "{}",
        stale.stderr
    );
    let empty_reason = run(config.cmd(&["deploy", "--confirm", &db.name, "--without-backup", " "]));
    empty_reason.assert_clean_error(2);
    assert!(
        empty_reason.stderr.contains("needs a reason"),
        "{}",
        empty_reason.stderr
    );
    let journal = tempfile::tempdir().unwrap();
    let mut cmd = config.cmd(&[
        "deploy",
        "--confirm",
        &db.name,
        "--without-backup",
        "INC-42: restoring service, backup taken by the provider",
    ]);
    cmd.env("PGDECK_JOURNAL_DIR", journal.path());
    let forced = run(cmd);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(forced.stderr.contains("INC-42"), "{}", forced.stderr);
    assert!(db.table_exists("a").await);
    // The override is in the journal, and in the report made from it.
    let mut cmd = config.cmd(&["report"]);
    cmd.env("PGDECK_JOURNAL_DIR", journal.path());
    let report = run(cmd);
    assert_eq!(report.code, 0, "{report:?}");
    assert!(
        report.stdout.contains("**override** by")
            && report
                .stdout
                .contains("deploy without a recent verified backup")
            && report.stdout.contains("Reason: INC-42"),
        "{}",
        report.stdout
    );
}

#[tokio::test]
async fn a_backend_terminated_mid_migration_is_named_and_nothing_is_applied() {
    let db = fresh_db("deploy_terminated").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_slow",
        "CREATE TABLE created_before (id int);\nSELECT pg_sleep(5);\n",
    );
    let child = spawn(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    let admin = db.client().await;
    wait_for(
        "the migration's pg_sleep to be running",
        TIMEOUT,
        || async {
            admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(5)%'",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0) == 1)
                .unwrap_or(false)
        },
    )
    .await;
    let r = Run::from(child.wait_with_output().unwrap());
    r.assert_clean_error(14);
    assert!(
        r.stderr
            .contains("the server ended the deploy's session during 20250101000000_slow"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("run `pgdeck deploy` again"),
        "{}",
        r.stderr
    );
    assert!(!db.table_exists("created_before").await);
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    assert!(db.table_exists("created_before").await);
}

#[tokio::test]
async fn prisma_parity_a_failed_row_counts_no_steps_and_an_edited_migration_is_named_with_nothing_pending()
 {
    let db = fresh_db("deploy_parity").await;
    let m = Migrations::new();
    m.add("20250101000000_a", "CREATE TABLE a (id int);");
    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    assert_eq!(r.code, 0, "{r:?}");

    // Edited after it was applied, with nothing pending: said, and never re-applied.
    m.add("20250101000000_a", "CREATE TABLE a (id int, edited int);");
    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("warning: 20250101000000_a was edited after it was applied"),
        "{r:?}"
    );
    assert!(r.stdout.contains("nothing to deploy"), "{r:?}");
    let json = run(pgdeck(&db, m.path(), &["deploy", "--yes", "--json"]));
    assert!(
        json.stderr.contains("\"event\":\"edited_after_apply\""),
        "{}",
        json.stderr
    );

    // Prisma leaves applied_steps_count at 0 on a failed migration; the logs say how far it got.
    m.add(
        "20250102000000_dupes",
        "CREATE TABLE codes (v int);\nINSERT INTO codes VALUES (1), (1);\n\
         CREATE UNIQUE INDEX CONCURRENTLY codes_v ON codes (v);\n",
    );
    let r = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    r.assert_clean_error(4);
    let rows = db.ledger().await;
    let failed = rows
        .iter()
        .find(|r| r.name == "20250102000000_dupes")
        .unwrap();
    assert!(!failed.finished && !failed.rolled_back, "{failed:?}");
    assert_eq!(failed.steps, 0, "{failed:?}");
    assert!(
        failed.logs.contains("Statements applied before it: 2 of 3"),
        "{}",
        failed.logs
    );
}
