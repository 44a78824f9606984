//! Backup faults that need a server of their own or a constrained process: the disk filling up
//! mid-dump, and the server going away mid-dump. Either way: a clear error, no partial file, the
//! catalog untouched.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use pgdeck::cli::exit;
use pgdeck::db::{self, quote_ident, sandbox::Sandbox};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn a_full_disk_mid_dump_keeps_nothing_and_says_so() {
    let db = fresh_db("backup_disk_full").await;
    db.exec("CREATE TABLE payload AS SELECT g AS id, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 100000) g;").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "an earlier file").unwrap();
    // 256 KiB of file size allowed to pgdeck: the dump (several MB) cannot fit. SIGXFSZ is
    // ignored so the write fails with an error, as on a full disk, instead of killing the process.
    let mut limited = std::process::Command::new("sh");
    limited
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 512; exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_pgdeck"))
        .args([
            "--database-url",
            &db.url(),
            "backup",
            "--dir",
            dir.path().to_str().unwrap(),
            "create",
        ])
        .current_dir(dir.path())
        .env_remove("PGDECK_CONFIG")
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null());
    let r = run(limited);
    r.assert_clean_error(i32::from(exit::RUNTIME));
    assert!(
        r.stderr.contains("nothing was kept") && r.stderr.contains("File too large"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("free space"), "{}", r.stderr);
    assert_eq!(
        names(dir.path()),
        ["keep.txt"],
        "no partial file, no catalog entry"
    );
}

#[tokio::test]
async fn the_server_going_away_mid_dump_keeps_nothing() {
    // A server of its own: this test crashes it.
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let admin = db::connect(&sandbox.target("postgres")).await.unwrap();
    admin
        .client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident("doomed")))
        .await
        .unwrap();
    let s = db::connect(&sandbox.target("doomed")).await.unwrap();
    s.client
        .batch_execute("CREATE TABLE payload AS SELECT g AS id, repeat(md5(g::text), 8) AS v FROM generate_series(1, 400000) g;")
        .await
        .unwrap();
    drop((s, admin));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        &sandbox.url("doomed"),
        "backup",
        "--dir",
        dir.path().to_str().unwrap(),
        "create",
        "--no-row-counts",
    ]);
    let mut child = spawn(cmd);
    // Crash the server once the dump has started writing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the dump never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the dump finished before the crash"
        );
        let partial = names(dir.path()).iter().any(|n| n.ends_with(".partial"));
        if partial
            && std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    sandbox.stop_immediately().unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    r.assert_clean_error(i32::from(exit::RUNTIME));
    assert!(r.stderr.contains("nothing was kept"), "{}", r.stderr);
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[tokio::test]
async fn a_signal_mid_dump_stops_pg_dump_and_its_workers_and_keeps_nothing() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for (signal, format) in [(Signal::SIGINT, "directory"), (Signal::SIGTERM, "custom")] {
        let db = fresh_db("backup_signal").await;
        db.exec(
            "CREATE TABLE a AS SELECT g AS id, repeat(md5(g::text), 8) AS v FROM generate_series(1, 300000) g; \
             CREATE TABLE b AS SELECT * FROM a;",
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let m = Migrations::new();
        let mut args = vec![
            "backup",
            "--dir",
            dir.path().to_str().unwrap(),
            "create",
            "--format",
            format,
        ];
        if format == "directory" {
            args.extend(["--jobs", "2"]);
        }
        let child = spawn(pgdeck(&db, m.path(), &args));
        let admin = db.client().await;
        wait_for("pg_dump to copy", Duration::from_secs(30), || async {
            admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'pgdeck-backup' AND query LIKE 'COPY%'",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0) >= 1)
                .unwrap_or(false)
        })
        .await;
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let r = Run::from(child.wait_with_output().unwrap());
        r.assert_clean_error(i32::from(exit::CANCELLED));
        assert!(
            r.stderr.contains("backup cancelled"),
            "{signal}: {}",
            r.stderr
        );
        assert!(
            names(dir.path()).is_empty(),
            "{signal}: {:?}",
            names(dir.path())
        );
        // No pg_dump (nor a worker of it) is left connected.
        wait_for(
            "pg_dump's sessions to end",
            Duration::from_secs(10),
            || async {
                admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'pgdeck-backup'",
                        &[],
                    )
                    .await
                    .map(|r| r.get::<_, i64>(0) == 0)
                    .unwrap_or(false)
            },
        )
        .await;
    }
}

#[test]
fn leftovers_of_an_interrupted_backup_are_listed_and_pruned_once_stale() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("app_dev_20250101_000000.dump.partial");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let stale_dir = dir.path().join("app_dev_20250101_000001.dir.partial");
    std::fs::create_dir(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("toc.dat"), "x").unwrap();
    let fresh = dir.path().join("app_dev_20250101_000002.dump.partial");
    std::fs::write(&fresh, "being written").unwrap();
    let old = std::process::Command::new("touch")
        .args(["-d", "1 hour ago"])
        .arg(&stale)
        .arg(&stale_dir)
        .arg(stale_dir.join("toc.dat"))
        .status()
        .unwrap();
    assert!(old.success());
    let backup = |args: &[&str]| {
        let mut cmd = pgdeck_cmd();
        cmd.args([
            "--database-url",
            "postgresql://app@127.0.0.1:1/app",
            "backup",
            "--dir",
        ])
        .arg(dir.path())
        .args(args);
        run(cmd)
    };
    let list = backup(&["list"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert!(
        list.stdout
            .contains("leftover app_dev_20250101_000000.dump.partial")
            && list.stdout.contains("an interrupted backup")
            && list.stdout.contains("a backup may be writing it now"),
        "{}",
        list.stdout
    );
    let pruned = backup(&["prune", "--yes"]);
    assert_eq!(pruned.code, 0, "{pruned:?}");
    assert!(
        !stale.exists() && !stale_dir.exists() && fresh.exists(),
        "{pruned:?}"
    );
}

#[tokio::test]
async fn a_table_the_role_cannot_read_is_named_as_the_cause_of_a_failed_backup() {
    let db = fresh_db("backup_permission").await;
    db.exec(
        "DO $$ BEGIN CREATE ROLE pgdeck_test_dumper LOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
         CREATE TABLE open_rows (id int); CREATE TABLE closed_rows (id int); \
         INSERT INTO closed_rows VALUES (1); \
         GRANT SELECT ON open_rows TO pgdeck_test_dumper",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = db.url().replace("user=postgres", "user=pgdeck_test_dumper");
    assert_ne!(url, db.url(), "the test URL names its user");
    let mut cmd = pgdeck_cmd();
    cmd.args(["--database-url", &url, "backup", "--dir"])
        .arg(dir.path())
        .arg("create");
    let r = run(cmd);
    r.assert_clean_error(i32::from(exit::RUNTIME));
    assert!(
        r.stderr.contains("permission denied") && r.stderr.contains("closed_rows"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("could not import"), "{}", r.stderr);
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[tokio::test]
async fn a_signal_during_a_restore_test_drops_the_scratch_database() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let db = fresh_db("backup_signal_verify").await;
    db.exec(
        "CREATE TABLE a AS SELECT g AS id, repeat(md5(g::text), 8) AS v FROM generate_series(1, 400000) g;",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let m = Migrations::new();
    let d = dir.path().to_str().unwrap();
    let made = run(pgdeck(&db, m.path(), &["backup", "--dir", d, "create"]));
    assert_eq!(made.code, 0, "{made:?}");
    let child = spawn(pgdeck(
        &db,
        m.path(),
        &["backup", "--dir", d, "verify", "--restore-test"],
    ));
    let admin = db.client().await;
    let scratch = "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgdeck\\_verify\\_%'";
    wait_for(
        "the restore test to start",
        Duration::from_secs(30),
        || async {
            admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'pgdeck\\_verify\\_%' \
                 AND query LIKE 'COPY%'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) >= 1)
            .unwrap_or(false)
        },
    )
    .await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    r.assert_clean_error(i32::from(exit::CANCELLED));
    assert!(r.stderr.contains("restore test cancelled"), "{}", r.stderr);
    let left: i64 = admin.query_one(scratch, &[]).await.unwrap().get(0);
    assert_eq!(left, 0, "a scratch database was left behind");
}
