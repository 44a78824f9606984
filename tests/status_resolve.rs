//! `pgdeck status`, `resolve`, `new` and `reset` through the real binary on a real cluster.

mod common;

use common::*;
use pgdeck::cli::exit;

fn code(c: u8) -> i32 {
    i32::from(c)
}

#[tokio::test]
async fn status_reports_each_state_with_its_exit_code() {
    let db = fresh_db("status_states").await;
    let m = Migrations::new();
    m.add("20250101000000_a", "CREATE TABLE a (id int);");
    m.add("20250102000000_b", "CREATE TABLE b (id int);");

    let pending = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(pending.code, code(exit::PENDING), "{pending:?}");
    assert_eq!(
        pending.stdout.matches("pending ").count(),
        2,
        "{}",
        pending.stdout
    );

    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    let up = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(up.code, code(exit::OK), "{up:?}");
    assert!(
        up.stdout.contains("2 migrations: 2 applied, 0 pending"),
        "{}",
        up.stdout
    );

    // Edited after apply.
    m.add("20250102000000_b", "CREATE TABLE b (id bigint);");
    let edited = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(edited.code, code(exit::DRIFT), "{edited:?}");
    assert!(edited.stdout.contains("EDITED"), "{}", edited.stdout);
    m.add("20250102000000_b", "CREATE TABLE b (id int);");

    // In the database, missing locally.
    std::fs::remove_dir_all(m.path().join("20250101000000_a")).unwrap();
    let missing = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(missing.code, code(exit::DRIFT), "{missing:?}");
    assert!(
        missing.stdout.contains("MISSING LOCALLY") && missing.stdout.contains("20250101000000_a"),
        "{}",
        missing.stdout
    );
    m.add("20250101000000_a", "CREATE TABLE a (id int);");

    // Rolled back (a failed, rolled-back attempt) counts as pending.
    m.add("20250103000000_c", "SELECT 1/0;");
    let failed_deploy = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    failed_deploy.assert_clean_error(code(exit::FAILED));
    let rolled = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(rolled.code, code(exit::PENDING), "{rolled:?}");
    assert!(
        rolled.stdout.contains("rolled back") && rolled.stdout.contains("division by zero"),
        "{}",
        rolled.stdout
    );

    // Failed (Prisma's unfinished row), with its logs.
    db.exec(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, logs, started_at) \
         VALUES ('00000000-0000-0000-0000-000000000001', 'x', '20250103000000_c', 'ERROR: boom', now())",
    )
    .await;
    let failed = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(failed.code, code(exit::FAILED), "{failed:?}");
    assert!(
        failed.stdout.contains("FAILED") && failed.stdout.contains("| ERROR: boom"),
        "{}",
        failed.stdout
    );

    let json = run(pgdeck(&db, m.path(), &["status", "--json"]));
    assert_eq!(json.code, code(exit::FAILED));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["verdict"], "failed");
    let states: Vec<&str> = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["applied", "applied", "failed"]);
}

#[tokio::test]
async fn a_crlf_converted_file_is_not_edited_and_a_bom_is_kept_in_the_checksum() {
    let db = fresh_db("status_crlf").await;
    let m = Migrations::new();
    let file = m.add_bytes(
        "20250101000000_a",
        b"\xef\xbb\xbfCREATE TABLE a (id int);\nCREATE TABLE b (id int);\n",
    );
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    assert_eq!(db.ledger().await[0].checksum, sha256_of(&file));

    m.add_bytes(
        "20250101000000_a",
        b"\xef\xbb\xbfCREATE TABLE a (id int);\r\nCREATE TABLE b (id int);\r\n",
    );
    let r = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(r.code, 0, "{r:?}");
}

#[tokio::test]
async fn resolve_records_both_ways_and_refuses_what_prisma_refuses() {
    let db = fresh_db("resolve").await;
    let m = Migrations::new();
    m.add("20250101000000_a", "CREATE TABLE a (id int);");
    m.add(
        "20250102000000_idx",
        "CREATE TABLE t (v int);\nINSERT INTO t VALUES (1), (1);",
    );
    m.add(
        "20250103000000_uniq",
        "CREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);",
    );
    run(pgdeck(&db, m.path(), &["deploy", "--yes"])).assert_clean_error(code(exit::FAILED));

    let resolve = |args: &[&str]| {
        let mut all = vec!["resolve"];
        all.extend_from_slice(args);
        all.push("--yes");
        run(pgdeck(&db, m.path(), &all))
    };

    // Refusals.
    let r = resolve(&["--applied", "20250101000000_a"]);
    r.assert_clean_error(code(exit::REFUSED));
    assert!(
        r.stderr.contains("already recorded as applied"),
        "{}",
        r.stderr
    );
    let r = resolve(&["--rolled-back", "20250101000000_a"]);
    r.assert_clean_error(code(exit::REFUSED));
    assert!(r.stderr.contains("not in a failed state"), "{}", r.stderr);
    let r = resolve(&["--rolled-back", "20990101000000_never"]);
    r.assert_clean_error(code(exit::REFUSED));
    assert!(r.stderr.contains("never applied"), "{}", r.stderr);
    let r = resolve(&["--applied", "20990101000000_no_folder"]);
    r.assert_clean_error(code(exit::USAGE));
    assert!(
        r.stderr
            .contains("there is no migration 20990101000000_no_folder"),
        "{}",
        r.stderr
    );
    let r = run(pgdeck(
        &db,
        m.path(),
        &["resolve", "--applied", "x", "--rolled-back", "y"],
    ));
    r.assert_clean_error(code(exit::USAGE));

    // --applied: the operator finished it by hand.
    db.exec("DROP INDEX CONCURRENTLY t_v_key").await;
    db.exec("DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t); CREATE UNIQUE INDEX t_v_key ON t (v);").await;
    assert_eq!(resolve(&["--applied", "20250103000000_uniq"]).code, 0);
    let rows: Vec<_> = db
        .ledger()
        .await
        .into_iter()
        .filter(|r| r.name == "20250103000000_uniq")
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].rolled_back && !rows[0].finished,
        "the failed row is closed: {:?}",
        rows[0]
    );
    assert!(
        rows[1].finished && !rows[1].rolled_back && rows[1].steps == 0,
        "{:?}",
        rows[1]
    );
    assert_eq!(run(pgdeck(&db, m.path(), &["status"])).code, 0);
    assert_eq!(
        resolve(&["--applied", "20250103000000_uniq"]).code,
        code(exit::REFUSED)
    );
}

#[tokio::test]
async fn resolve_rolled_back_then_redeploy_applies_the_fixed_migration() {
    let db = fresh_db("resolve_rolled_back").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_t",
        "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (1);",
    );
    m.add(
        "20250102000000_uniq",
        "CREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);",
    );
    run(pgdeck(&db, m.path(), &["deploy", "--yes"])).assert_clean_error(code(exit::FAILED));
    db.exec("DROP INDEX CONCURRENTLY t_v_key;").await;
    m.add(
        "20250102000000_uniq",
        "CREATE INDEX CONCURRENTLY t_v_key ON t (v);",
    );
    assert_eq!(
        run(pgdeck(
            &db,
            m.path(),
            &["resolve", "--rolled-back", "20250102000000_uniq", "--yes"]
        ))
        .code,
        0
    );
    let status = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(status.code, code(exit::PENDING), "{status:?}");
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    assert_eq!(run(pgdeck(&db, m.path(), &["status"])).code, 0);
}

#[tokio::test]
async fn reset_drops_and_redeploys_but_never_on_a_protected_environment() {
    let db = fresh_db("reset").await;
    let m = Migrations::samples();
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    db.exec("INSERT INTO \"User\" (id, email, \"updatedAt\") VALUES ('u1', 'a@b.c', now());")
        .await;
    assert_eq!(run(pgdeck(&db, m.path(), &["reset", "--yes"])).code, 0);
    let users: i64 = db.scalar("SELECT count(*) FROM \"User\"").await;
    assert_eq!(users, 0);
    assert_eq!(db.ledger().await.len(), 3);

    let config = ConfigEnv::write(&db, &m, "production", "protected = true");
    let cmd = config.cmd(&["reset", "--yes", "--confirm", &db.name]);
    run(cmd).assert_clean_error(code(exit::REFUSED));
    assert_eq!(db.ledger().await.len(), 3);
}

#[test]
fn new_creates_a_prisma_layout_folder() {
    let m = tempfile::tempdir().unwrap();
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--migrations",
        m.path().to_str().unwrap(),
        "new",
        "add_user_phone",
    ]);
    let r = run(cmd);
    assert_eq!(r.code, 0, "{r:?}");
    let folders: Vec<_> = std::fs::read_dir(m.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(folders.len(), 1);
    let name = folders[0].file_name().into_string().unwrap();
    assert!(
        name.len() == 14 + "_add_user_phone".len() && name.ends_with("_add_user_phone"),
        "{name}"
    );
    assert!(name[..14].chars().all(|c| c.is_ascii_digit()));
    assert!(
        folders[0].path().join("migration.sql").is_file()
            && folders[0].path().join("down.sql").is_file()
    );
    assert!(
        std::fs::read_to_string(m.path().join("migration_lock.toml"))
            .unwrap()
            .contains("provider = \"postgresql\"")
    );

    let mut bad = pgdeck_cmd();
    bad.args([
        "--migrations",
        m.path().to_str().unwrap(),
        "new",
        "../outside",
    ]);
    run(bad).assert_clean_error(code(exit::USAGE));
}
