//! Bad input gets a one-line cause, a hint, the documented exit code and no panic; a password
//! never appears in what pgdeck prints.

mod common;

use common::*;
use pgdeck::cli::exit;

const SECRET: &str = "Sup3r-Secret-Pw";

fn code(c: u8) -> i32 {
    i32::from(c)
}

fn assert_no_secret(r: &Run) {
    assert!(
        !r.stdout.contains(SECRET) && !r.stderr.contains(SECRET),
        "password leaked: {r:?}"
    );
}

#[test]
fn unreachable_host_is_a_runtime_error_without_the_password() {
    let m = Migrations::new();
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        &format!("postgresql://app:{SECRET}@127.0.0.1:1/app?connect_timeout=3"),
        "--migrations",
        m.path().to_str().unwrap(),
        "status",
    ]);
    let r = run(cmd);
    r.assert_clean_error(code(exit::RUNTIME));
    assert!(
        r.stderr.contains("cannot connect to 127.0.0.1:1"),
        "{}",
        r.stderr
    );
    assert_no_secret(&r);
}

#[tokio::test]
async fn wrong_password_names_the_user_and_never_prints_the_password() {
    let Some(sandbox) = sandbox() else {
        eprintln!(
            "PGDECK_TEST_DATABASE_URL is set: the server's authentication is not ours to configure, so this case is not checked"
        );
        return;
    };
    let db = fresh_db("wrong_password").await;
    db.exec("DO $$ BEGIN CREATE ROLE deployer LOGIN PASSWORD 'the-right-one'; EXCEPTION WHEN duplicate_object THEN NULL; END $$;").await;
    let m = Migrations::new();
    for (how, mut cmd) in [("url", pgdeck_cmd()), ("PGPASSWORD", pgdeck_cmd())] {
        let url = if how == "url" {
            format!(
                "postgresql://deployer:{SECRET}@127.0.0.1:{}/{}?sslmode=disable",
                sandbox.port(),
                db.name
            )
        } else {
            cmd.env("PGPASSWORD", SECRET);
            format!(
                "postgresql://deployer@127.0.0.1:{}/{}?sslmode=disable",
                sandbox.port(),
                db.name
            )
        };
        cmd.args([
            "--database-url",
            &url,
            "--migrations",
            m.path().to_str().unwrap(),
            "status",
        ]);
        let r = run(cmd);
        r.assert_clean_error(code(exit::RUNTIME));
        assert!(
            r.stderr.contains("refused the login of user 'deployer'"),
            "{how}: {}",
            r.stderr
        );
        assert_no_secret(&r);
    }
}

#[test]
fn input_mistakes_are_usage_errors_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgresql://app@127.0.0.1:1/app";

    let no_sql = Migrations::new();
    std::fs::create_dir(no_sql.path().join("20250101000000_empty")).unwrap();
    let non_utf8 = Migrations::new();
    non_utf8.add_bytes("20250101000000_latin1", b"SELECT 'caf\xe9';");
    let mysql = Migrations::new();
    std::fs::write(
        mysql.path().join("migration_lock.toml"),
        "provider = \"mysql\"\n",
    )
    .unwrap();
    let unknown_key = dir.path().join("unknown.toml");
    std::fs::write(
        &unknown_key,
        "[environments.dev]\ndatabase_url = \"x\"\nlock_timout = \"5s\"\n",
    )
    .unwrap();
    let two_envs = dir.path().join("two.toml");
    std::fs::write(&two_envs, "[environments.dev]\n[environments.prod]\n").unwrap();
    let missing = dir.path().join("nope");

    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "malformed URL",
            vec![
                "--database-url".into(),
                format!("postgresql://app:{SECRET}@host:99999/db"),
                "status".into(),
            ],
            "malformed",
        ),
        (
            "foreign URL",
            vec![
                "--database-url".into(),
                format!("mysql://app:{SECRET}@host/db"),
                "status".into(),
            ],
            "not postgresql",
        ),
        (
            "missing migrations folder",
            vec![
                "--database-url".into(),
                url.into(),
                "--migrations".into(),
                s(&missing),
                "status".into(),
            ],
            "cannot read the migrations folder",
        ),
        (
            "folder without migration.sql",
            vec![
                "--database-url".into(),
                url.into(),
                "--migrations".into(),
                s(no_sql.path()),
                "status".into(),
            ],
            "migration.sql",
        ),
        (
            "non-UTF-8 SQL",
            vec![
                "--database-url".into(),
                url.into(),
                "--migrations".into(),
                s(non_utf8.path()),
                "status".into(),
            ],
            "not valid UTF-8",
        ),
        (
            "provider mismatch",
            vec![
                "--database-url".into(),
                url.into(),
                "--migrations".into(),
                s(mysql.path()),
                "status".into(),
            ],
            "provider \"mysql\"",
        ),
        (
            "unknown config key",
            vec!["--config".into(), s(&unknown_key), "status".into()],
            "unknown field `lock_timout`",
        ),
        (
            "missing environment",
            vec![
                "--config".into(),
                s(&two_envs),
                "--env".into(),
                "staging".into(),
                "status".into(),
            ],
            "'staging' is not defined",
        ),
        (
            "missing config file",
            vec!["--config".into(), s(&missing), "status".into()],
            "does not exist",
        ),
        (
            "unknown subcommand",
            vec!["frobnicate".into()],
            "unrecognized subcommand",
        ),
        (
            "unknown flag",
            vec!["status".into(), "--colour".into()],
            "unexpected argument",
        ),
    ];
    for (what, args, expected) in cases {
        let mut cmd = pgdeck_cmd();
        cmd.args(&args);
        let r = run(cmd);
        assert_eq!(r.code, code(exit::USAGE), "{what}: {r:?}");
        r.assert_clean_error(code(exit::USAGE));
        assert!(
            r.stderr.contains(expected),
            "{what}: expected {expected:?} in {}",
            r.stderr
        );
        assert_no_secret(&r);
    }
}

#[test]
fn json_errors_are_machine_readable_too() {
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--json",
        "--database-url",
        "postgresql://app@127.0.0.1:1/app?connect_timeout=2",
        "--migrations",
        "/nonexistent",
        "status",
    ]);
    let r = run(cmd);
    assert_eq!(r.code, code(exit::USAGE));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 2);
    assert!(v["hint"].as_str().unwrap().contains("--migrations"));
}

#[test]
fn numbers_that_would_turn_safety_off_or_panic_are_refused_with_the_settings_name() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgresql://app@127.0.0.1:1/app";
    let configs = [
        ("lock_timeout = \"500us\"", "environments.dev.lock_timeout"),
        ("lock_timeout = \"30d\"", "environments.dev.lock_timeout"),
        (
            "blocking_timeout = \"0.5us\"",
            "environments.dev.blocking_timeout",
        ),
        ("lock_retries = 4294967295", "environments.dev.lock_retries"),
        ("lock_wait = \"0s\"", "environments.dev.lock_wait"),
        (
            "backup_max_age = \"1ms\"",
            "environments.dev.backup_max_age",
        ),
        (
            "backup_retention_days = 0",
            "environments.dev.backup_retention_days",
        ),
        (
            "[environments.dev.health]\np95_warn_ratio = nan",
            "environments.dev.health.p95_warn_ratio",
        ),
        (
            "[environments.dev.health]\nerrors_per_minute_alert = inf",
            "environments.dev.health.errors_per_minute_alert",
        ),
        (
            "[environments.dev.health]\nprobe_samples = 0",
            "environments.dev.health.probe_samples",
        ),
        (
            "[environments.dev.health]\nprobe_timeout = \"100ns\"",
            "environments.dev.health.probe_timeout",
        ),
        (
            "[environments.dev.hooks]\ntimeout = \"100000d\"",
            "environments.dev.hooks.timeout",
        ),
        (
            "[environments.dev.lint]\nlarge_table_size = \"99999999999999999999TB\"",
            "environments.dev.lint.large_table_size",
        ),
    ];
    for (i, (setting, name)) in configs.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(
            &path,
            format!("[environments.dev]\ndatabase_url = \"{url}\"\n{setting}\n"),
        )
        .unwrap();
        let mut cmd = pgdeck_cmd();
        cmd.args(["--config", path.to_str().unwrap(), "status"]);
        let r = run(cmd);
        r.assert_clean_error(code(exit::USAGE));
        assert!(r.stderr.contains(name), "{setting}: {}", r.stderr);
        assert!(
            r.stderr.contains("out of range") || r.stderr.contains("not a size"),
            "{setting}: {}",
            r.stderr
        );
    }
    for (args, flag) in [
        (
            &["monitor", "--once", "--long-query", "1e400"][..],
            "--long-query",
        ),
        (&["monitor", "--watch", "--interval", "inf"], "--interval"),
        (&["monitor", "--watch", "--interval", "0"], "--interval"),
        (&["monitor", "--once", "--top", "0"], "--top"),
        (&["health", "--window", "NaN"], "--window"),
        (
            &["deploy", "--lock-wait", "18446744073709551616"],
            "--lock-wait",
        ),
    ] {
        let mut cmd = pgdeck_cmd();
        cmd.args(["--database-url", url]).args(args);
        let r = run(cmd);
        r.assert_clean_error(code(exit::USAGE));
        assert!(r.stderr.contains(flag), "{args:?}: {}", r.stderr);
    }
}

#[tokio::test]
async fn hidden_entries_in_the_migrations_folder_are_skipped_as_prisma_skips_them() {
    let db = fresh_db("hidden_entries").await;
    let m = Migrations::new();
    m.add("20250101000000_a", "CREATE TABLE a (id int);");
    std::fs::create_dir_all(m.path().join(".git/objects")).unwrap();
    std::fs::create_dir(m.path().join(".DS_Store")).unwrap();
    std::fs::create_dir(m.path().join(".20250102000000_editor_swap")).unwrap();
    let r = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(r.code, i32::from(exit::PENDING), "{r:?}");
    let r = run(pgdeck(&db, m.path(), &["deploy"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(db.ledger().await.len(), 1);
}

#[tokio::test]
async fn a_fifo_in_the_journal_folder_never_hangs_a_deploy() {
    let db = fresh_db("journal_fifo").await;
    let m = Migrations::new();
    m.add("20250101000000_a", "CREATE TABLE a (id int);");
    let journal = tempfile::tempdir().unwrap();
    std::fs::create_dir(journal.path().join("default")).unwrap();
    nix::unistd::mkfifo(
        &journal.path().join("default/zzzz.jsonl"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let mut cmd = pgdeck(&db, m.path(), &["deploy"]);
    cmd.env("PGDECK_JOURNAL_DIR", journal.path());
    let mut child = spawn(cmd);
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("deploy hung on a FIFO in the journal folder");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(db.table_exists("a").await);
}

#[tokio::test]
async fn json_output_stays_valid_json_with_control_characters_in_server_messages() {
    let db = fresh_db("json_c1").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_raise",
        "DO $$ BEGIN RAISE EXCEPTION E'bad \\u009b2J \\x7f \\x1b[31m end'; END $$;",
    );
    let r = run(pgdeck(&db, m.path(), &["--json", "deploy"]));
    assert_eq!(r.code, i32::from(exit::FAILED), "{r:?}");
    for text in [&r.stdout, &r.stderr] {
        assert!(
            !text.contains('\u{9b}') && !text.contains('\u{7f}') && !text.contains('\u{1b}'),
            "raw control characters: {text:?}"
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("bad \u{9b}2J \u{7f} \u{1b}[31m end"),
        "{v}"
    );
    // The event lines on stderr are JSON too (the error is repeated there for a human).
    for line in r.stderr.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[test]
fn a_hook_that_prints_bytes_that_are_not_utf8_runs_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgdeck.toml");
    std::fs::write(
        &config,
        "[environments.dev]\ndatabase_url = \"postgresql://app@127.0.0.1:1/app\"\n\
         [environments.dev.hooks]\nsmoke_test = \"printf 'caf\\\\351\\\\n'; seq 1 100000; echo finished-ok\"\n",
    )
    .unwrap();
    let mut cmd = pgdeck_cmd();
    cmd.arg("--config")
        .arg(&config)
        .args(["hooks", "run", "smoke_test"]);
    let r = run(cmd);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("finished-ok"), "{}", r.stderr);
}

#[test]
fn a_looked_up_config_that_is_not_a_file_is_refused_not_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    nix::unistd::mkfifo(
        &dir.path().join("pgdeck.toml"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/pgdeck.toml"),
        "[environments.other]\ndatabase_url = \"postgresql://app@127.0.0.1:1/app\"\n",
    )
    .unwrap();
    let mut cmd = pgdeck_cmd();
    cmd.current_dir(dir.path()).arg("status");
    let r = run(cmd);
    r.assert_clean_error(i32::from(exit::USAGE));
    assert!(r.stderr.contains("named pipe"), "{}", r.stderr);
}

#[test]
fn a_catalog_entry_without_a_name_never_reaches_outside_the_folder() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("bk4");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(".json"), "{}").unwrap();
    std::fs::write(parent.path().join("bk4.json"), "{\"file\": \"bk4\"}").unwrap();
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        "postgresql://app@127.0.0.1:1/app",
        "backup",
        "--dir",
    ])
    .arg(&dir)
    .arg("list");
    let r = run(cmd);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("no backups"), "{}", r.stdout);
}

#[test]
fn a_watch_that_never_got_a_sample_is_no_success() {
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        "postgresql://app@127.0.0.1:1/app",
        "monitor",
        "--watch",
        "--count",
        "2",
        "--interval",
        "0.1",
    ]);
    let r = run(cmd);
    r.assert_clean_error(i32::from(exit::RUNTIME));
    assert!(
        r.stderr.contains("no sample in 2 attempt(s)"),
        "{}",
        r.stderr
    );
}
