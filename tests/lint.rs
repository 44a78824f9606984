//! `pgdeck lint` and `pgdeck plan` through the real binary: the human output (snapshot), JSON
//! and GitHub formats, exit codes, bad input, live table sizes on a real database, and the
//! protected-environment gate on deploy.

mod common;

use std::path::Path;

use common::*;
use pgdeck::cli::exit;

fn code(c: u8) -> i32 {
    i32::from(c)
}

fn fixtures() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `pgdeck lint --offline ARGS` run from the crate root, so paths in the output are stable.
fn lint(args: &[&str]) -> Run {
    let mut cmd = pgdeck_cmd();
    cmd.current_dir(fixtures())
        .args(["lint", "--offline"])
        .args(args);
    run(cmd)
}

#[test]
fn human_output_shows_position_frame_lock_recipe_and_acknowledgement() {
    let r = lint(&["tests/fixtures/lint/release.sql"]);
    assert_eq!(r.code, code(exit::LINT_DANGEROUS), "{r:?}");
    insta::assert_snapshot!("lint_release_human", r.stdout);
}

#[test]
fn json_output_has_a_stable_shape() {
    let r = lint(&["--format", "json", "tests/fixtures/lint/release.sql"]);
    assert_eq!(r.code, code(exit::LINT_DANGEROUS));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // The shape the README documents, key for key.
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&v), ["errors", "exit_code", "files", "ok"]);
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 9);
    assert_eq!(v["errors"], serde_json::json!([]));
    let file = &v["files"][0];
    assert_eq!(
        keys(file),
        ["findings", "path", "statements", "syntax_errors"]
    );
    assert_eq!(file["path"], "tests/fixtures/lint/release.sql");
    let statements = file["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 7);
    let rename = &statements[2];
    assert_eq!(
        keys(rename),
        [
            "class",
            "column",
            "index",
            "kind",
            "line",
            "lock",
            "preview",
            "rewrite",
            "tables",
            "transaction",
        ]
    );
    assert_eq!(rename["index"], 3);
    assert_eq!(rename["line"], 9);
    assert_eq!(rename["lock"], "ACCESS_EXCLUSIVE");
    assert_eq!(rename["class"], "dangerous");
    assert_eq!(rename["transaction"], "transaction");
    let finding = file["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "renaming-column")
        .unwrap();
    assert_eq!(
        keys(finding),
        [
            "acknowledged",
            "adjustment",
            "also",
            "category",
            "column",
            "end_column",
            "end_line",
            "help",
            "line",
            "message",
            "recipe",
            "rule",
            "severity",
            "statement",
        ]
    );
    assert_eq!(finding["also"], serde_json::json!(["rename-column"]));
    // `also` is left out when no other rule flagged the problem.
    let backfill = file["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "backfill")
        .unwrap();
    assert!(backfill.get("also").is_none(), "{backfill}");
    // Statements are counted from 1 in both places, like lines.
    assert_eq!(finding["statement"], rename["index"]);
    for f in file["findings"].as_array().unwrap() {
        let n = f["statement"].as_u64().unwrap() as usize;
        let s = &statements[n - 1];
        assert_eq!(s["index"], n, "{f}");
        assert!(
            f["line"].as_u64() >= s["line"].as_u64(),
            "{f} is before {s}"
        );
    }
    assert_eq!(finding["severity"], "dangerous");
    assert_eq!(finding["category"], "breaking");
    assert!(finding["recipe"].as_array().unwrap().len() >= 4);
    let dropped = file["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "ban-drop-column")
        .unwrap();
    assert_eq!(
        dropped["acknowledged"],
        "the app stopped reading it in release 41"
    );

    // --json is the same as --format json.
    let same = lint(&["--json", "tests/fixtures/lint/release.sql"]);
    assert_eq!(same.stdout, r.stdout);
}

#[test]
fn github_format_annotates_errors_and_warnings() {
    let r = lint(&["--format", "github", "tests/fixtures/lint/release.sql"]);
    assert!(
        r.stdout.contains("::error file=tests/fixtures/lint/release.sql,line=9,col=20,endLine=9,endColumn=58,title=pgdeck DANGEROUS renaming-column::"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("::warning file=tests/fixtures/lint/release.sql,line=16,"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("::notice file=tests/fixtures/lint/release.sql,line=14,"),
        "acknowledged: {}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("prefer-timestamp"),
        "style notes need --notes: {}",
        r.stdout
    );
}

#[test]
fn human_output_frames_findings_far_along_a_long_line_and_after_any_line_ending() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, sql: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, sql).unwrap();
        p.to_str().unwrap().to_owned()
    };
    // A generated one-line migration, non-ASCII names included: each frame shows the
    // characters around its finding, not the start of the line, and underlines the finding.
    let one_line = write(
        "one-line.sql",
        &"ALTER TABLE \"Usér\" DROP COLUMN \"ä\"; ".repeat(2_000),
    );
    let r = lint(&[&one_line]);
    assert_eq!(r.code, code(exit::LINT_DANGEROUS), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    let mut frames = 0;
    for (i, l) in lines.iter().enumerate() {
        if !l.contains(": DANGEROUS ban-drop-column") {
            continue;
        }
        let source = lines[i + 3].strip_prefix("1 | ").unwrap();
        let carets = lines[i + 4].strip_prefix("  | ").unwrap();
        let indent = carets.chars().take_while(|&c| c == ' ').count();
        let underlined: String = source
            .chars()
            .skip(indent)
            .take(carets.trim().chars().count())
            .collect();
        assert_eq!(
            underlined,
            "DROP COLUMN \"ä\"",
            "{}",
            lines[i..i + 5].join("\n")
        );
        assert!(source.chars().count() <= 201, "{source}");
        frames += 1;
    }
    assert_eq!(frames, 2_000);
    assert!(
        r.stdout
            .contains(&format!("{one_line}:1:71984: DANGEROUS ban-drop-column")),
        "{}",
        r.stdout
    );

    // Lines end at \n, \r\n or a lone \r: the frame shows the line the position names.
    for (name, eol) in [("crlf.sql", "\r\n"), ("cr.sql", "\r")] {
        let path = write(
            name,
            &format!("SELECT 1;{eol}{eol}ALTER TABLE \"User\" DROP COLUMN \"a\";{eol}"),
        );
        let r = lint(&[&path]);
        assert!(
            r.stdout.contains(&format!(
                "{path}:3:20: DANGEROUS ban-drop-column (also drop-column)\n  Dropping a column may break existing clients.\n  |\n3 | ALTER TABLE \"User\" DROP COLUMN \"a\";\n  |                    ^^^^^^^^^^^^^^^\n"
            )),
            "{name}: {}",
            r.stdout
        );
    }
}

#[test]
fn exit_codes_follow_the_worst_unacknowledged_finding() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, sql: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, sql).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let clean = lint(&["tests/fixtures/lint/clean.sql"]);
    assert_eq!(clean.code, 0, "{clean:?}");
    let care = write("care.sql", "UPDATE \"User\" SET a = 1;");
    assert_eq!(lint(&[&care]).code, code(exit::LINT_WARNINGS));
    let dangerous = write("dangerous.sql", "ALTER TABLE \"User\" DROP COLUMN a;");
    assert_eq!(lint(&[&dangerous]).code, code(exit::LINT_DANGEROUS));
    let acked = write(
        "acked.sql",
        "-- pgdeck:allow drop-column unused since v3\nALTER TABLE \"User\" DROP COLUMN a;",
    );
    assert_eq!(lint(&[&acked]).code, 0);
    // A folder: the worst file decides.
    assert_eq!(
        lint(&[dir.path().to_str().unwrap()]).code,
        code(exit::LINT_DANGEROUS)
    );
}

#[test]
fn lint_without_paths_checks_the_environments_migrations_folder() {
    let m = Migrations::samples();
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--migrations",
        m.path().to_str().unwrap(),
        "lint",
        "--offline",
    ]);
    let r = run(cmd);
    assert_eq!(r.code, 0, "the sample migrations are safe: {r:?}");
    assert!(
        r.stdout.contains("3 file(s), 8 statement(s): 0 dangerous"),
        "{}",
        r.stdout
    );
}

#[test]
fn offline_a_folders_earlier_migrations_tell_whether_a_type_change_rewrites() {
    let m = Migrations::new();
    m.add(
        "20250101000000_init",
        "CREATE TABLE \"User\" (\"id\" INTEGER NOT NULL, \"name\" VARCHAR(20));",
    );
    m.add(
        "20250102000000_widen",
        "ALTER TABLE \"User\" ALTER COLUMN \"name\" TYPE VARCHAR(50);",
    );
    let folder = m.path().to_str().unwrap();
    let widened = lint(&["--json", folder]);
    assert_eq!(widened.code, code(exit::LINT_WARNINGS), "{widened:?}");
    let json: serde_json::Value = serde_json::from_str(&widened.stdout).unwrap();
    let statement = &json["files"][1]["statements"][0];
    assert_eq!(statement["rewrite"], "no", "{statement}");
    assert_eq!(statement["class"], "needs_care", "{statement}");
    // The same change linted alone has no earlier type to go by.
    let alone = m.path().join("20250102000000_widen/migration.sql");
    let alone = lint(&[alone.to_str().unwrap()]);
    assert_eq!(alone.code, code(exit::LINT_DANGEROUS), "{alone:?}");
    // A narrowing rewrites, whatever the folder says.
    m.add(
        "20250103000000_narrow",
        "ALTER TABLE \"User\" ALTER COLUMN \"name\" TYPE VARCHAR(10);",
    );
    let narrowed = lint(&["--json", folder]);
    assert_eq!(narrowed.code, code(exit::LINT_DANGEROUS), "{narrowed:?}");
    let json: serde_json::Value = serde_json::from_str(&narrowed.stdout).unwrap();
    assert_eq!(json["files"][2]["statements"][0]["rewrite"], "yes");
}

#[test]
fn bad_input_gets_clear_errors_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    std::fs::write(
        path("broken.sql"),
        "CREATE TABLE ok (id int);\nALTER TABLE \"User\" ADD COLUMN;\n",
    )
    .unwrap();
    let r = lint(&[&path("broken.sql")]);
    assert_eq!(r.code, code(exit::USAGE), "{r:?}");
    assert!(
        r.stdout.contains("broken.sql:2:") && r.stdout.contains("SYNTAX ERROR"),
        "{}",
        r.stdout
    );

    std::fs::write(path("empty.sql"), "").unwrap();
    let r = lint(&[&path("empty.sql")]);
    assert_eq!(r.code, code(exit::LINT_WARNINGS), "{r:?}");
    assert!(
        r.stdout.contains("empty-migration") && r.stdout.contains("no SQL statements"),
        "{}",
        r.stdout
    );

    std::fs::write(path("latin1.sql"), b"SELECT 'caf\xe9';").unwrap();
    let r = lint(&[&path("latin1.sql")]);
    assert_eq!(r.code, code(exit::USAGE), "{r:?}");
    assert!(
        r.stderr
            .contains("latin1.sql: not valid UTF-8 (bad byte at offset 11)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hint: save the file as UTF-8"),
        "{}",
        r.stderr
    );

    let big =
        "INSERT INTO t VALUES (1, 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx');\n"
            .repeat(50 * 1024 * 1024 / 75);
    std::fs::write(path("huge.sql"), big).unwrap();
    let r = lint(&[&path("huge.sql")]);
    assert_eq!(r.code, code(exit::LINT_DANGEROUS), "{r:?}");
    assert!(
        r.stdout.contains("too-large-to-lint")
            && r.stdout.contains("above the 32.0 MB pgdeck lints"),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("panicked"));

    let r = lint(&[&path("missing.sql")]);
    r.assert_clean_error(code(exit::USAGE));
}

/// The same migration on a 1,000,000-row table and on an empty one, planned against real
/// databases: live sizes move blocking findings up on the large table and down on the empty one.
#[tokio::test]
async fn plan_grades_the_same_migration_by_live_table_size() {
    let m = Migrations::new();
    m.add(
        "20250101000000_events",
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text, amount int);",
    );
    let mut plans = Vec::new();
    for (label, rows) in [("large", 1_000_000), ("empty", 0)] {
        let db = fresh_db(&format!("plan_{label}")).await;
        assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
        db.exec(&format!(
            "INSERT INTO events SELECT g, 'k' || (g % 10), g % 1000 FROM generate_series(1, {rows}) g; ANALYZE events;"
        ))
        .await;
        plans.push((label, db));
    }
    m.add(
        "20250102000000_events_kind",
        "CREATE INDEX events_kind_idx ON events (kind);\nALTER TABLE events ADD CONSTRAINT amount_positive CHECK (amount >= 0);\n",
    );
    let mut classes = Vec::new();
    for (label, db) in &plans {
        let r = run(pgdeck(db, m.path(), &["plan", "--json"]));
        let v: serde_json::Value =
            serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{label}: {e}: {r:?}"));
        let migration = &v["plan"]["migrations"][0];
        let statements = migration["lint"]["statements"].as_array().unwrap();
        let got: Vec<String> = statements
            .iter()
            .map(|s| s["class"].as_str().unwrap().to_owned())
            .collect();
        let rows = statements[0]["tables"][0]["rows"].as_i64();
        classes.push((
            label.to_string(),
            got,
            migration["verdict"].clone(),
            rows,
            r.code,
        ));
    }
    let (_, large, large_verdict, large_rows, large_code) = &classes[0];
    let (_, empty, empty_verdict, empty_rows, empty_code) = &classes[1];
    assert_eq!(large, &["dangerous", "dangerous"], "{classes:?}");
    assert_eq!(empty, &["needs_care", "needs_care"], "{classes:?}");
    assert!(large_rows.unwrap() > 900_000, "{classes:?}");
    assert_eq!(*empty_rows, Some(0), "{classes:?}");
    assert_eq!(large_verdict, "needs_acknowledgement");
    assert_eq!(empty_verdict, "ok");
    assert_eq!((*large_code, *empty_code), (code(exit::LINT_DANGEROUS), 0));

    // The human plan names the sizes.
    let human = run(pgdeck(&plans[0].1, m.path(), &["plan"]));
    assert!(
        human.stdout.contains("table events: ~1.0M rows"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("raised: events is large"),
        "{}",
        human.stdout
    );
}

#[tokio::test]
async fn protected_deploy_refuses_unacknowledged_dangerous_findings_until_acknowledged() {
    let db = fresh_db("gate").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_user",
        "CREATE TABLE \"User\" (id text PRIMARY KEY, phone text);",
    );
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    m.add(
        "20250102000000_rename",
        "ALTER TABLE \"User\" RENAME COLUMN phone TO \"phoneNumber\";",
    );
    let config = ConfigEnv::write(&db, &m, "production", "protected = true");
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "--confirm",
            db.name.as_str(),
            "--without-backup",
            "the test database has nothing to lose",
        ];
        args.extend_from_slice(extra);
        run(config.cmd(&args))
    };

    let refused = deploy(&[]);
    refused.assert_clean_error(code(exit::REFUSED));
    assert!(
        refused
            .stderr
            .contains("20250102000000_rename/migration.sql:1:20 renaming-column"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("pgdeck:allow"),
        "{}",
        refused.stderr
    );
    let plan = run(config.cmd(&["plan"]));
    assert_eq!(plan.code, code(exit::REFUSED), "{plan:?}");
    assert!(plan.stdout.contains("REFUSED"), "{}", plan.stdout);

    let no_reason = run(config.cmd(&[
        "deploy",
        "--confirm",
        &db.name,
        "--allow",
        "renaming-column",
    ]));
    assert_eq!(
        no_reason.code,
        code(exit::USAGE),
        "--allow needs --reason: {no_reason:?}"
    );

    let allowed = deploy(&[
        "--allow",
        "renaming-column",
        "--reason",
        "CHG-1234: clients updated in v7",
    ]);
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert!(
        allowed
            .stderr
            .contains("acknowledged rule renaming-column: CHG-1234"),
        "{}",
        allowed.stderr
    );

    // In the file works too.
    m.add("20250103000000_drop", "-- pgdeck:allow ban-drop-column nothing reads it since v7\nALTER TABLE \"User\" DROP COLUMN \"phoneNumber\";");
    assert_eq!(deploy(&[]).code, 0);
}
