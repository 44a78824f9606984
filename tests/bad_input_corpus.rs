//! The bad-input corpus: configs, URLs, migration folders, backup files and arguments that are
//! wrong in every way we could think of. Each case states the exit code it must get; a failure
//! must be one `error:` line and one `hint:` line with no panic, and the database must be left as
//! it was (no half-applied migration, no ledger row). Inputs that are odd but valid (a BOM, CRLF)
//! must simply work.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use pgdeck::cli::exit;

/// One case: what to run, the exit code it must give, and text its stderr (or stdout on success)
/// must contain.
struct Case {
    name: &'static str,
    cmd: Command,
    code: u8,
    says: &'static str,
}

fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join(format!("{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, text).unwrap();
    path
}

/// `pgdeck --config FILE [--env ENV] status` with the file's `[environments.x]` pointing at `db`.
fn with_config(
    db: &TestDb,
    dir: &Path,
    m: &Path,
    extra: &str,
    env: &str,
    args: &[&str],
) -> Command {
    let path = config_file(
        dir,
        &format!(
            "[environments.x]\ndatabase_url = \"{}\"\n{extra}\n",
            db.url()
        ),
    );
    let mut cmd = pgdeck_cmd();
    cmd.arg("--config").arg(path).args(["--env", env]);
    cmd.arg("--migrations").arg(m).args(args);
    cmd
}

fn url_cmd(url: &str, m: &Path) -> Command {
    let mut cmd = pgdeck_cmd();
    cmd.args(["--database-url", url, "--migrations"])
        .arg(m)
        .arg("status");
    cmd
}

fn folder_with(files: &[(&str, &[u8])]) -> Migrations {
    let m = Migrations::new();
    for (name, bytes) in files {
        m.add_bytes(name, bytes);
    }
    m
}

#[tokio::test]
async fn every_bad_input_gets_a_clear_error_and_the_documented_exit_code() {
    let db = fresh_db("corpus").await;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let empty = Migrations::new();
    let e = empty.path();
    let mut cases: Vec<Case> = Vec::new();
    let mut keep: Vec<Migrations> = Vec::new();
    let mut case = |name, cmd, code, says| {
        cases.push(Case {
            name,
            cmd,
            code,
            says,
        })
    };

    // Configuration.
    let mut c = pgdeck_cmd();
    c.arg("--config")
        .arg(config_file(dir, "[environments.x\ndatabase_url = 1"))
        .arg("status");
    case("config: TOML syntax error", c, exit::USAGE, "at line 1");
    case(
        "config: unknown key",
        with_config(&db, dir, e, "protectd = true", "x", &["status"]),
        exit::USAGE,
        "unknown field `protectd`",
    );
    case(
        "config: wrong type",
        with_config(&db, dir, e, "protected = \"yes\"", "x", &["status"]),
        exit::USAGE,
        "invalid type",
    );
    case(
        "config: missing environment",
        with_config(&db, dir, e, "", "staging", &["status"]),
        exit::USAGE,
        "environment 'staging' is not defined",
    );
    case(
        "config: both url keys",
        with_config(&db, dir, e, "database_url_env = \"X\"", "x", &["status"]),
        exit::USAGE,
        "sets both database_url and database_url_env",
    );
    case(
        "config: bad duration",
        with_config(&db, dir, e, "lock_timeout = \"soon\"", "x", &["status"]),
        exit::USAGE,
        "is not a duration",
    );
    case(
        "config: unknown lint rule",
        with_config(
            &db,
            dir,
            e,
            "[environments.x.lint]\ninclude = [\"no-such-rule\"]",
            "x",
            &["status"],
        ),
        exit::USAGE,
        "is not a squawk rule",
    );
    case(
        "config: bad size",
        with_config(
            &db,
            dir,
            e,
            "[environments.x.lint]\nlarge_table_size = \"huge\"",
            "x",
            &["status"],
        ),
        exit::USAGE,
        "is not a size",
    );
    case(
        "config: non-http metrics url",
        with_config(
            &db,
            dir,
            e,
            "[environments.x.health.metrics]\nurl = \"ftp://h/m\"",
            "x",
            &["status"],
        ),
        exit::USAGE,
        "is not an http(s) URL",
    );
    case(
        "config: percentage out of range",
        with_config(
            &db,
            dir,
            e,
            "[environments.x.health]\nconnections_alert_pct = 180",
            "x",
            &["status"],
        ),
        exit::USAGE,
        "is not a percentage",
    );
    case(
        "config: unknown checklist item",
        with_config(
            &db,
            dir,
            e,
            "[environments.x.checklist]\nremove = [\"nap\"]",
            "x",
            &["status"],
        ),
        exit::USAGE,
        "no checklist item 'nap'",
    );
    case(
        "config: unknown hook",
        with_config(
            &db,
            dir,
            e,
            "[environments.x.hooks]\nbefore_lunch = \"true\"",
            "x",
            &["status"],
        ),
        exit::USAGE,
        "unknown field `before_lunch`",
    );
    case(
        "config: webhook variable unset",
        with_config(
            &db,
            dir,
            e,
            "[environments.x.hooks]\nwebhook_url_env = \"PGDECK_NO_SUCH_VAR\"",
            "x",
            &["status"],
        ),
        exit::USAGE,
        "$PGDECK_NO_SUCH_VAR, which is not set",
    );
    let mut c = pgdeck_cmd();
    c.args(["--config", "/nonexistent/pgdeck.toml", "status"]);
    case("config: --config missing", c, exit::USAGE, "does not exist");
    let mut c = pgdeck_cmd();
    c.env("PGDECK_CONFIG", "/nonexistent/pgdeck.toml")
        .arg("status");
    case(
        "config: $PGDECK_CONFIG missing",
        c,
        exit::USAGE,
        "PGDECK_CONFIG names",
    );

    // URLs.
    case(
        "url: other database",
        url_cmd("mysql://u@h/db", e),
        exit::USAGE,
        "",
    );
    case(
        "url: unknown parameter",
        url_cmd("postgresql://u@localhost/db?frobnicate=1", e),
        exit::USAGE,
        "frobnicate",
    );
    case(
        "url: port not a number",
        url_cmd("postgresql://u@localhost:abc/db", e),
        exit::USAGE,
        "",
    );
    case(
        "url: bad sslmode",
        url_cmd("postgresql://u@localhost/db?sslmode=sometimes", e),
        exit::USAGE,
        "sslmode",
    );
    case(
        "url: nothing listens",
        url_cmd("postgresql://u@127.0.0.1:1/db?connect_timeout=2", e),
        exit::RUNTIME,
        "cannot connect",
    );

    // Migration folders: refused before anything runs.
    let deploy = |m: &Migrations| pgdeck(&db, m.path(), &["deploy", "--yes"]);
    let m = folder_with(&[("20250101000000_ok", b"CREATE TABLE corpus_never (id int);")]);
    std::fs::create_dir(m.path().join("20250102000000_no_script")).unwrap();
    case(
        "folder: migration without migration.sql",
        deploy(&m),
        exit::USAGE,
        "needs a migration.sql",
    );
    keep.push(m);
    let m = folder_with(&[("20250101000000_latin1", b"CREATE TABLE caf\xe9 (id int);")]);
    case("folder: non-UTF-8 script", deploy(&m), exit::USAGE, "UTF-8");
    keep.push(m);
    let m = folder_with(&[(
        "20250101000000_binary",
        b"\x00\x01\x02CREATE TABLE x (id int);\x00",
    )]);
    case("folder: binary script", deploy(&m), exit::USAGE, "");
    keep.push(m);
    let m = folder_with(&[(
        "20250101000000_rollback",
        b"BEGIN;\nCREATE TABLE corpus_never (id int);\nROLLBACK;",
    )]);
    case(
        "folder: ROLLBACK in a migration",
        deploy(&m),
        exit::USAGE,
        "ROLLBACK",
    );
    keep.push(m);
    let m = folder_with(&[("20250101000000_ok", b"CREATE TABLE corpus_never (id int);")]);
    std::fs::write(
        m.path().join("migration_lock.toml"),
        "provider = \"mysql\"\n",
    )
    .unwrap();
    case(
        "folder: lock file for another provider",
        deploy(&m),
        exit::USAGE,
        "mysql",
    );
    keep.push(m);
    let m = folder_with(&[("20250101000000_ok", b"CREATE TABLE corpus_never (id int);")]);
    std::os::unix::fs::symlink(m.path().join("loop"), m.path().join("loop")).unwrap();
    case("folder: symlink loop", deploy(&m), exit::USAGE, "");
    keep.push(m);
    let mut c = pgdeck(&db, Path::new("/nonexistent/migrations"), &["status"]);
    c.arg("--json");
    case("folder: missing folder", c, exit::USAGE, "");

    // Hostile files: links that leave the folder, pipes in place of files.
    let secret = dir.join("credentials.txt");
    std::fs::write(&secret, "aws_secret_access_key=corpus-leak-7f3a").unwrap();
    let m = folder_with(&[("20250101000000_ok", b"CREATE TABLE corpus_never (id int);")]);
    let linked = m.path().join("20250102000000_linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(&secret, linked.join("migration.sql")).unwrap();
    case(
        "folder: migration.sql linked outside the folder",
        deploy(&m),
        exit::USAGE,
        "outside",
    );
    keep.push(m);
    let m = folder_with(&[("20250101000000_ok", b"CREATE TABLE corpus_never (id int);")]);
    let linked = m.path().join("20250102000000_linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(&secret, linked.join("migration.sql")).unwrap();
    case(
        "lint: a folder's migration.sql linked outside it",
        pgdeck(&db, e, &["lint", m.path().to_str().unwrap()]),
        exit::USAGE,
        "outside",
    );
    keep.push(m);
    let fifo = |path: &Path| nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap();
    for (name, file) in [
        ("folder: migration.sql is a FIFO", "migration.sql"),
        ("folder: down.sql is a FIFO", "down.sql"),
    ] {
        let m = folder_with(&[("20250101000000_ok", b"CREATE TABLE corpus_never (id int);")]);
        let folder = m.path().join("20250102000000_piped");
        std::fs::create_dir(&folder).unwrap();
        if file == "down.sql" {
            std::fs::write(folder.join("migration.sql"), "SELECT 1;").unwrap();
        }
        fifo(&folder.join(file));
        case(name, deploy(&m), exit::USAGE, "named pipe (FIFO)");
        keep.push(m);
    }
    let m = folder_with(&[("20250101000000_ok", b"CREATE TABLE corpus_never (id int);")]);
    let _ = std::fs::remove_file(m.path().join("migration_lock.toml"));
    fifo(&m.path().join("migration_lock.toml"));
    case(
        "folder: migration_lock.toml is a FIFO",
        deploy(&m),
        exit::USAGE,
        "named pipe (FIFO)",
    );
    keep.push(m);
    let m = folder_with(&[(
        "20250101000000_red\x1b[31m",
        b"CREATE TABLE corpus_never (id int);",
    )]);
    case(
        "folder: a control character in a folder name",
        deploy(&m),
        exit::USAGE,
        "control character",
    );
    keep.push(m);
    let piped_config = dir.join("piped.toml");
    fifo(&piped_config);
    let mut c = pgdeck_cmd();
    c.arg("--config").arg(&piped_config).arg("status");
    case(
        "config: the file is a FIFO",
        c,
        exit::USAGE,
        "named pipe (FIFO)",
    );
    let piped_ca = dir.join("piped-ca.pem");
    fifo(&piped_ca);
    case(
        "url: sslrootcert is a FIFO",
        url_cmd(
            &format!(
                "postgresql://app@127.0.0.1:1/app?sslmode=verify-full&sslrootcert={}",
                piped_ca.display()
            ),
            e,
        ),
        exit::USAGE,
        "named pipe (FIFO)",
    );
    case(
        "url: one slash after the scheme",
        url_cmd("postgresql:/app:Corpus-Pw-91@prod.example.com/app", e),
        exit::USAGE,
        "does not start with postgresql://",
    );
    for (name, url, says) in [
        (
            "url: one slash, scheme in capitals",
            "POSTGRESQL:/postgres:Corpus-Pw-91@prod.example.com/t3",
            "does not start with postgresql://",
        ),
        (
            "url: one slash, password in the query",
            "postgresql:/t3?host=/tmp&password=Corpus-Pw-91",
            "password=***",
        ),
        (
            "url: one slash, a colon in the password",
            "postgresql:/app:pa:Corpus-Pw-91@h/db",
            "postgresql:/app:***@h/db",
        ),
        (
            "url: a NUL in the database name",
            "postgresql://app@127.0.0.1:1/a%00b",
            "NUL character",
        ),
        (
            "url: empty schema",
            "postgresql://app@127.0.0.1:1/app?schema=",
            "is empty",
        ),
        (
            "url: pg_temp schema",
            "postgresql://app@127.0.0.1:1/app?schema=pg_temp",
            "system schema",
        ),
        (
            "url: schema over 63 bytes",
            "postgresql://app@127.0.0.1:1/app?schema=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "63 bytes",
        ),
    ] {
        case(name, url_cmd(url, e), exit::USAGE, says);
    }
    let m = folder_with(&[(
        "20250101000000_bad_sql",
        b"CREATE TABLE corpus_never (id int);\nCREAT TABLE oops (id int);",
    )]);
    case(
        "folder: a typo the server rejects",
        deploy(&m),
        exit::FAILED,
        "syntax error",
    );
    keep.push(m);
    // Odd but valid: a BOM, CRLF line ends, an empty script.
    let m = folder_with(&[
        (
            "20250101000000_bom",
            b"\xef\xbb\xbfCREATE TABLE corpus_bom (id int);",
        ),
        (
            "20250102000000_crlf",
            b"CREATE TABLE corpus_crlf (\r\n  id int\r\n);\r\n",
        ),
        ("20250103000000_empty", b""),
    ]);
    // (run last, it changes the database)
    let valid_folder = m;

    // A 50 MB migration: linted by size, not parsed, and refused as DANGEROUS.
    let m = Migrations::new();
    let big = "INSERT INTO t VALUES (1);\n".repeat(50 * 1024 * 1024 / 26 + 1);
    m.add("20250101000000_huge", &big);
    let mut c = pgdeck_cmd();
    c.args(["lint", "--offline"]).arg(m.path());
    case(
        "folder: 50 MB migration",
        c,
        exit::LINT_DANGEROUS,
        "too-large-to-lint",
    );
    keep.push(m);

    // Backup files.
    let backups = tempfile::tempdir().unwrap();
    let bdir = backups.path().to_str().unwrap().to_owned();
    let ok_m = Migrations::new();
    let created = run(pgdeck(
        &db,
        ok_m.path(),
        &["backup", "--dir", &bdir, "create"],
    ));
    assert_eq!(created.code, 0, "{created:?}");
    let original = std::fs::read_dir(backups.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "dump"))
        .unwrap();
    let bytes = std::fs::read(&original).unwrap();
    let catalog =
        std::fs::read_to_string(pgdeck::backup::BackupEntry::catalog_path(&original)).unwrap();
    let damaged = |name: &str, content: &[u8]| {
        let path = backups.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::write(
            pgdeck::backup::BackupEntry::catalog_path(&path),
            catalog.replace(original.file_name().unwrap().to_str().unwrap(), name),
        )
        .unwrap();
        name.to_owned()
    };
    let verify = |name: String| {
        pgdeck(
            &db,
            ok_m.path(),
            &["backup", "--dir", &bdir, "verify", &name],
        )
    };
    case(
        "backup: empty file",
        verify(damaged("empty.dump", b"")),
        exit::VERIFY_FAILED,
        "",
    );
    case(
        "backup: truncated",
        verify(damaged("cut.dump", &bytes[..bytes.len() / 2])),
        exit::VERIFY_FAILED,
        "",
    );
    let noise: Vec<u8> = (0..bytes.len()).map(|i| (i * 7919 % 251) as u8).collect();
    case(
        "backup: random bytes",
        verify(damaged("noise.dump", &noise)),
        exit::VERIFY_FAILED,
        "",
    );
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    case(
        "backup: one byte changed",
        verify(damaged("flip.dump", &flipped)),
        exit::VERIFY_FAILED,
        "sha256",
    );
    std::fs::write(backups.path().join("stray.dump"), &bytes).unwrap();
    case(
        "backup: no catalog entry",
        verify("stray.dump".into()),
        exit::USAGE,
        "no catalog entry",
    );
    case(
        "backup: no such backup",
        pgdeck(
            &db,
            ok_m.path(),
            &["backup", "--dir", &bdir, "restore", "nope.dump", "--yes"],
        ),
        exit::USAGE,
        "",
    );
    case(
        "backup: restore unverified",
        pgdeck(
            &db,
            ok_m.path(),
            &[
                "backup",
                "--dir",
                &bdir,
                "restore",
                original.file_name().unwrap().to_str().unwrap(),
                "--yes",
            ],
        ),
        exit::REFUSED,
        "never verified",
    );

    // Arguments.
    let args = |a: &[&str]| {
        let mut c = pgdeck_cmd();
        c.args(a);
        c
    };
    case(
        "args: unknown command",
        args(&["deplyo"]),
        exit::USAGE,
        "unrecognized subcommand",
    );
    case(
        "args: unknown flag",
        args(&["status", "--fast"]),
        exit::USAGE,
        "--fast",
    );
    case(
        "args: window out of range",
        pgdeck(&db, e, &["health", "--window", "0"]),
        exit::USAGE,
        "--window",
    );
    case(
        "args: monitor without a mode",
        pgdeck(&db, e, &["monitor"]),
        exit::USAGE,
        "--once or --watch",
    );
    case(
        "args: zero jobs",
        args(&["backup", "restore", "x", "--jobs", "0"]),
        exit::USAGE,
        "",
    );
    case(
        "args: both resolutions",
        args(&["resolve", "--applied", "a", "--rolled-back", "a"]),
        exit::USAGE,
        "cannot be used with",
    );
    case(
        "args: bad migration name",
        pgdeck(&db, e, &["new", "add users; rm -rf"]),
        exit::USAGE,
        "",
    );
    case("args: revert nothing", args(&["revert"]), exit::USAGE, "");
    case(
        "args: allow without reason",
        pgdeck(&db, e, &["deploy", "--allow", "ban-drop-column"]),
        exit::USAGE,
        "--reason",
    );
    case(
        "args: force-unverified without reason",
        pgdeck(
            &db,
            ok_m.path(),
            &[
                "backup",
                "--dir",
                &bdir,
                "restore",
                original.file_name().unwrap().to_str().unwrap(),
                "--yes",
                "--force-unverified",
                " ",
            ],
        ),
        exit::USAGE,
        "needs a reason",
    );
    case(
        "args: report without sessions",
        {
            let mut c = pgdeck(&db, e, &["report"]);
            c.env("PGDECK_JOURNAL_DIR", dir.join("no-journal"));
            c
        },
        exit::USAGE,
        "no session of environment",
    );
    case(
        "args: console outside a terminal",
        pgdeck(&db, e, &["console"]),
        exit::USAGE,
        "needs a terminal",
    );

    let total = cases.len();
    assert!(total >= 40, "the corpus has {total} cases");
    eprintln!("bad-input corpus: {total} cases");
    let mut failures = Vec::new();
    for c in cases {
        let r = run(c.cmd);
        let problem = if r.stderr.contains("panicked") {
            Some("panicked".to_owned())
        } else if r.code != i32::from(c.code) {
            Some(format!("exit {} instead of {}", r.code, c.code))
        } else if c.code == exit::LINT_DANGEROUS {
            // A lint verdict, not an error: the findings are the output.
            (!r.stdout.contains(c.says)).then(|| format!("stdout lacks {:?}", c.says))
        } else if c.code != 0 {
            let lines: Vec<&str> = r
                .stderr
                .lines()
                .filter(|l| l.starts_with("error: ") || l.starts_with("hint: "))
                .collect();
            if lines.len() != 2 || !lines[0].starts_with("error: ") {
                Some("not one error line and one hint line".to_owned())
            } else if !r.stderr.contains(c.says) {
                Some(format!("stderr lacks {:?}", c.says))
            } else {
                None
            }
        } else {
            None
        };
        let problem = problem.or_else(|| {
            ["corpus-leak-7f3a", "Corpus-Pw-91", "\x1b["]
                .iter()
                .find(|leak| r.stderr.contains(**leak) || r.stdout.contains(**leak))
                .map(|leak| format!("printed {leak:?}"))
        });
        if let Some(p) = problem {
            failures.push(format!(
                "{}: {p}\n--- stdout\n{}--- stderr\n{}",
                c.name, r.stdout, r.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing was applied by any refused folder: no table, no ledger row.
    assert!(!db.table_exists("corpus_never").await);
    assert!(
        db.ledger().await.is_empty()
            || db
                .ledger()
                .await
                .iter()
                .all(|r| !r.finished || r.name.contains("bad_sql"))
    );
    assert!(!db.table_exists("oops").await);

    // The odd-but-valid folder deploys.
    let r = run(pgdeck(&db, valid_folder.path(), &["deploy", "--yes"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(db.table_exists("corpus_bom").await && db.table_exists("corpus_crlf").await);
    drop(keep);
}
