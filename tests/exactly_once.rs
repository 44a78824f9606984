//! Exactly once under the faults the lock session can suffer: terminated by someone, ended by
//! the server's own idle timeout, or never taken (`PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK`). Every
//! migration here records the backend that ran it, so running one twice shows as two rows.
//! The figures are in docs/RELIABILITY.md.

mod common;

use std::time::Duration;

use common::*;

const COUNTED: usize = 20;

/// A table of runs, then 20 migrations that each record their run and take a moment.
fn counted() -> Migrations {
    let m = Migrations::new();
    m.add(
        "20250101000000_runs",
        "CREATE TABLE runs (name text NOT NULL, pid int NOT NULL);",
    );
    for i in 1..=COUNTED {
        m.add(
            &format!("2025010100{i:04}_m{i}"),
            &format!(
                "INSERT INTO runs VALUES ('m{i}', pg_backend_pid());\nSELECT pg_sleep(0.1);\n"
            ),
        );
    }
    m
}

/// Each migration ran once and has one finished ledger row; the problems otherwise.
async fn twice(db: &TestDb) -> Vec<String> {
    let c = db.client().await;
    let mut problems = Vec::new();
    for i in 1..=COUNTED {
        let name = format!("m{i}");
        let runs: i64 = c
            .query_one("SELECT count(*) FROM runs WHERE name = $1", &[&name])
            .await
            .unwrap()
            .get(0);
        let rows: i64 = c
            .query_one(
                "SELECT count(*) FROM _prisma_migrations WHERE migration_name LIKE '%\\_' || $1 \
                 AND finished_at IS NOT NULL AND rolled_back_at IS NULL",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if runs != 1 || rows != 1 {
            problems.push(format!(
                "{name}: ran {runs} time(s), {rows} finished row(s)"
            ));
        }
    }
    problems
}

async fn count_runs(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM runs", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// The backend holding Prisma's migration lock, if any.
async fn lock_holder(db: &TestDb) -> Option<i32> {
    db.client()
        .await
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 \
             AND objid = 72707369 AND objsubid = 1 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test]
async fn a_deploy_whose_lock_session_is_terminated_stops_and_the_waiting_one_applies_the_rest_once()
{
    let db = fresh_db("once_terminated").await;
    let m = counted();
    let a = spawn(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    wait_for(
        "deploy A to be under way",
        Duration::from_secs(30),
        || async { count_runs(&db).await >= 3 },
    )
    .await;
    let holder = lock_holder(&db).await.expect("A holds the lock");
    let b = spawn(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    // B is waiting for the lock (it says so), then A's lock session is terminated.
    tokio::time::sleep(Duration::from_millis(600)).await;
    db.exec(&format!("SELECT pg_terminate_backend({holder})"))
        .await;
    let a = Run::from(a.wait_with_output().unwrap());
    let b = Run::from(b.wait_with_output().unwrap());

    a.assert_clean_error(1);
    assert!(
        a.stderr.contains("the migration lock was lost"),
        "{}",
        a.stderr
    );
    assert_eq!(b.code, 0, "{b:?}");
    assert_eq!(twice(&db).await, Vec::<String>::new(), "A: {a:?}\nB: {b:?}");
    let (backends, total): (i64, i64) = {
        let c = db.client().await;
        let r = c
            .query_one("SELECT count(DISTINCT pid), count(*) FROM runs", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(
        backends >= 2,
        "both deploys applied some: {backends} backends"
    );
    assert_eq!(total, COUNTED as i64);
}

#[tokio::test]
async fn the_lock_session_outlives_the_idle_timeouts_set_on_the_database() {
    let db = fresh_db("once_idle_timeout").await;
    let m = counted();
    db.exec(&format!(
        "ALTER DATABASE {} SET idle_session_timeout = '1s'",
        pgdeck::db::quote_ident(&db.name)
    ))
    .await;
    db.exec(&format!(
        "ALTER DATABASE {} SET idle_in_transaction_session_timeout = '1s'",
        pgdeck::db::quote_ident(&db.name)
    ))
    .await;
    let deploys: Vec<_> = (0..2)
        .map(|_| spawn(pgdeck(&db, m.path(), &["deploy", "--yes"])))
        .collect();
    for d in deploys {
        let r = Run::from(d.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{r:?}");
    }
    assert_eq!(twice(&db).await, Vec::<String>::new());
}

#[tokio::test]
async fn without_the_advisory_lock_concurrent_deploys_still_apply_each_migration_once() {
    let db = fresh_db("once_no_lock").await;
    let m = counted();
    let deploys: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = pgdeck(&db, m.path(), &["deploy", "--yes"]);
            cmd.env("PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK", "1");
            spawn(cmd)
        })
        .collect();
    let runs: Vec<Run> = deploys
        .into_iter()
        .map(|d| Run::from(d.wait_with_output().unwrap()))
        .collect();
    assert_eq!(twice(&db).await, Vec::<String>::new(), "{runs:?}");
    for r in &runs {
        assert_eq!(r.code, 0, "{r:?}");
    }
    assert!(
        runs.iter()
            .any(|r| r.stderr.contains("applied by another deploy meanwhile")),
        "{runs:?}"
    );
    assert!(
        runs.iter().all(|r| r
            .stderr
            .contains("warning: PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK is set")),
        "{runs:?}"
    );
}

#[tokio::test]
async fn resolve_and_reset_wait_for_a_deploy_under_way() {
    let db = fresh_db("once_resolve_reset").await;
    let m = counted();
    let under_way = || async {
        wait_for(
            "the deploy to be under way",
            Duration::from_secs(30),
            || async { count_runs(&db).await >= 3 },
        )
        .await;
    };

    // Recorded as applied while the deploy is at m3: it waits, then finds m15 applied by the
    // deploy, which ran it once.
    let deploy = spawn(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    under_way().await;
    let resolve = run(pgdeck(
        &db,
        m.path(),
        &["resolve", "--applied", "20250101000015_m15"],
    ));
    let deploy = Run::from(deploy.wait_with_output().unwrap());
    assert_eq!(deploy.code, 0, "{deploy:?}");
    assert!(
        resolve
            .stderr
            .contains("waiting for the migration lock held by"),
        "{resolve:?}"
    );
    assert!(
        resolve.stderr.contains("already recorded as applied"),
        "{resolve:?}"
    );
    assert_eq!(twice(&db).await, Vec::<String>::new());

    // A reset while a deploy runs waits for it, then drops and deploys everything again.
    db.exec("DROP TABLE runs; DELETE FROM _prisma_migrations")
        .await;
    let deploy = spawn(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    under_way().await;
    let reset = run(pgdeck(&db, m.path(), &["reset", "--yes"]));
    let deploy = Run::from(deploy.wait_with_output().unwrap());
    assert_eq!(deploy.code, 0, "{deploy:?}");
    assert_eq!(reset.code, 0, "{reset:?}");
    assert!(
        reset
            .stderr
            .contains("waiting for the migration lock held by"),
        "{reset:?}"
    );
    assert_eq!(twice(&db).await, Vec::<String>::new());
}
