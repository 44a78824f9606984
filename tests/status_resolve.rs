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

/// A TCP port on this machine that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn status_all_environments_shows_each_one_side_by_side_and_exits_with_the_worst() {
    let current = fresh_db("matrix_current").await;
    let behind = fresh_db("matrix_behind").await;
    let m = Migrations::new();
    m.add("20250101000000_create_accounts", "CREATE TABLE a (id int);");
    assert_eq!(run(pgdeck(&behind, m.path(), &["deploy", "--yes"])).code, 0);
    m.add(
        "20250102000000_add_an_index_whose_name_is_long_enough_to_be_cut",
        "CREATE INDEX a_id ON a (id);",
    );
    assert_eq!(
        run(pgdeck(&current, m.path(), &["deploy", "--yes"])).code,
        0
    );

    let config = m.path().join("pgdeck.toml");
    let write = |production: bool| {
        let mut text = format!(
            "[environments.development]\ndatabase_url = \"{}\"\n\
             [environments.staging]\ndatabase_url = \"{}\"\n",
            current.url(),
            behind.url()
        );
        if production {
            text.push_str(&format!(
                "[environments.production]\nprotected = true\n\
                 database_url = \"postgresql://deploy:s3cret-pw@127.0.0.1:{}/app\"\n\
                 [environments.qa]\ndatabase_url_env = \"QA_DATABASE_URL\"\n",
                closed_port()
            ));
        }
        std::fs::write(&config, text).unwrap();
    };
    let matrix = |args: &[&str]| {
        let mut cmd = pgdeck_cmd();
        cmd.arg("--config")
            .arg(&config)
            .arg("--migrations")
            .arg(m.path())
            .args(["status", "--all-environments"])
            .args(args);
        run(cmd)
    };

    // Up to date, pending, unreachable, and one whose URL's variable is not set.
    write(true);
    let human = matrix(&[]);
    assert_eq!(human.code, code(exit::RUNTIME), "{human:?}");
    assert!(!human.stdout.contains("s3cret-pw") && !human.stderr.contains("s3cret-pw"));
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .all(|l| l.chars().count() <= 80 || !l.starts_with("  2025")),
        "the rows fit 80 columns:\n{}",
        human.stdout
    );
    let row = |prefix: &str| {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no row {prefix}:\n{}", human.stdout))
    };
    assert_eq!(
        row("MIGRATION"),
        ["development", "staging", "production", "qa"]
    );
    assert_eq!(
        row("20250101000000_create_accounts"),
        ["applied", "applied", "unreachable", "unresolved"]
    );
    assert_eq!(
        row("20250102000000_add_an_index"),
        ["applied", "pending", "unreachable", "unresolved"]
    );
    assert!(
        human
            .stdout
            .contains("  20250102000000_add_an_index_wh…  applied"),
        "a long name is cut to fit:\n{}",
        human.stdout
    );
    for expected in [
        "development             up to date: 2 applied",
        "staging                 migrations pending: 1 applied, 1 pending",
        "production (protected)  UNREACHABLE: cannot connect to 127.0.0.1:",
        "qa                      UNRESOLVED: environment 'qa' reads its URL from $QA_DATABASE_URL",
        "over 4 environment(s): not every environment could be read",
    ] {
        assert!(
            human.stdout.contains(expected),
            "{expected}:\n{}",
            human.stdout
        );
    }

    let json = matrix(&["--json"]);
    assert_eq!(json.code, code(exit::RUNTIME), "{json:?}");
    assert!(!json.stdout.contains("s3cret-pw"));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["verdict"], "incomplete");
    assert_eq!(v["exit_code"], code(exit::RUNTIME));
    let envs = v["environments"].as_array().unwrap();
    let shape: Vec<(&str, bool, bool, &serde_json::Value)> = envs
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["protected"].as_bool().unwrap(),
                e["reachable"].as_bool().unwrap(),
                &e["verdict"],
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("development", false, true, &serde_json::json!("up_to_date")),
            ("staging", false, true, &serde_json::json!("pending")),
            ("production", true, false, &serde_json::Value::Null),
            ("qa", false, false, &serde_json::Value::Null),
        ]
    );
    assert!(envs[0]["error"].is_null() && envs[0]["server_version"].is_string());
    assert_eq!(envs[2]["problem"], "unreachable");
    // Not every environment was read: not ok, whatever the others say.
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        envs[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot connect to 127.0.0.1:"),
        "{}",
        envs[2]
    );
    assert!(!envs[2]["hint"].as_str().unwrap().is_empty());
    assert!(
        envs[2]["database"]
            .as_str()
            .unwrap()
            .starts_with("postgresql://deploy:***@127.0.0.1:"),
        "{}",
        envs[2]
    );
    assert_eq!(envs[3]["problem"], "unresolved");
    assert!(envs[3]["database"].is_null());
    let migrations: Vec<(&str, &serde_json::Value)> = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), &m["states"]))
        .collect();
    assert_eq!(migrations.len(), 2);
    assert_eq!(migrations[0].0, "20250101000000_create_accounts");
    assert_eq!(
        *migrations[0].1,
        serde_json::json!({"development": "applied", "staging": "applied", "production": null, "qa": null})
    );
    assert_eq!(
        *migrations[1].1,
        serde_json::json!({"development": "applied", "staging": "pending", "production": null, "qa": null})
    );

    // Drift where it was read outranks an environment that could not be: edited after apply.
    m.add(
        "20250101000000_create_accounts",
        "CREATE TABLE a (id bigint);",
    );
    let drift = matrix(&["--json"]);
    assert_eq!(drift.code, code(exit::DRIFT), "{drift:?}");
    let v: serde_json::Value = serde_json::from_str(&drift.stdout).unwrap();
    assert_eq!(v["migrations"][0]["states"]["staging"], "edited");
    m.add("20250101000000_create_accounts", "CREATE TABLE a (id int);");

    // Every environment read: the worst verdict, pending, then all up to date.
    write(false);
    assert_eq!(matrix(&[]).code, code(exit::PENDING));
    assert_eq!(run(pgdeck(&behind, m.path(), &["deploy", "--yes"])).code, 0);
    let up = matrix(&[]);
    assert_eq!(up.code, code(exit::OK), "{up:?}");
    assert!(
        up.stdout
            .contains("over 2 environment(s): every environment is up to date"),
        "{}",
        up.stdout
    );

    // The rule is in the command's help.
    let mut help = pgdeck_cmd();
    help.args(["status", "--help"]);
    let help = run(help);
    assert!(
        help.stdout.contains(
            "With --all-environments, the worst over every environment: 4, then 5, then 1"
        ),
        "{}",
        help.stdout
    );

    // One environment named on the command line contradicts them all.
    matrix(&["--env", "staging"]).assert_clean_error(code(exit::USAGE));
    let mut no_config = pgdeck_cmd();
    no_config.args(["status", "--all-environments"]);
    run(no_config).assert_clean_error(code(exit::USAGE));
}
