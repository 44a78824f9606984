//! Secrets never leave: every command, run once with the password in the URL and once in
//! PGPASSWORD, over TCP with scram authentication; stdout, stderr, the journal, the release
//! report, the backup catalog, a hook's environment and arguments, and the argv of every process
//! pgdeck starts are scanned for the password.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;

const SECRET: &str = "Sekr1t-Pa55-phrase";

/// Watches every process's argv while commands run, collecting any that hold the password.
struct ArgvWatch {
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArgvWatch {
    fn start() -> ArgvWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(0usize));
        let (s, h, n) = (stop.clone(), hits.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(argv) = std::fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&argv).replace('\0', " ");
                    if text.contains("pg_dump")
                        || text.contains("pg_restore")
                        || text.contains("pgdeck")
                    {
                        *n.lock().unwrap() += 1;
                    }
                    // The test's own command lines hold it (an operator typed it); what matters
                    // is what pgdeck passes to the processes it starts.
                    if text.contains(SECRET) && !text.starts_with(env!("CARGO_BIN_EXE_pgdeck")) {
                        h.lock().unwrap().push(text);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        ArgvWatch {
            stop,
            hits,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let hits = self.hits.lock().unwrap().clone();
        let seen = *self.seen.lock().unwrap();
        (hits, seen)
    }
}

fn scan_dir(dir: &std::path::Path, hits: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            scan_dir(&path, hits);
        } else if let Ok(bytes) = std::fs::read(&path)
            && String::from_utf8_lossy(&bytes).contains(SECRET)
        {
            hits.push(format!("file {}", path.display()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_prints_stores_or_passes_on_the_password() {
    let Some(sandbox) = sandbox() else {
        eprintln!(
            "PGDECK_TEST_DATABASE_URL is set: the server's roles are not ours to configure, so this case is not checked"
        );
        return;
    };
    let db = fresh_db("secrets").await;
    db.exec(&format!(
        "DO $$ BEGIN CREATE ROLE secret_deployer LOGIN SUPERUSER PASSWORD '{SECRET}'; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
    ))
    .await;
    let m = Migrations::new();
    m.add("20250101000000_init", "CREATE TABLE secret_t (id int);");
    std::fs::write(
        m.file("20250101000000_init").with_file_name("down.sql"),
        "DROP TABLE secret_t;",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let journal = work.path().join("journal");
    let backups = work.path().join("backups");
    let hook_out = work.path().join("hook.txt");
    let config = work.path().join("pgdeck.toml");
    std::fs::write(
        &config,
        format!(
            "[environments.prod]\ndatabase_url_env = \"PGDECK_SECRET_URL\"\nbackup_dir = \"{}\"\n\
             [environments.prod.hooks]\nsmoke_test = \"env > {out}; echo \\\"$0 $*\\\" >> {out}\"\n",
            backups.display(),
            out = hook_out.display()
        ),
    )
    .unwrap();
    let base = format!(
        "postgresql://secret_deployer@127.0.0.1:{}/{}?sslmode=disable",
        sandbox.port(),
        db.name
    );
    let with_password = format!(
        "postgresql://secret_deployer:{SECRET}@127.0.0.1:{}/{}?sslmode=disable",
        sandbox.port(),
        db.name
    );

    let watch = ArgvWatch::start();
    let mut leaks = Vec::new();
    let mut runs = 0;
    for mode in ["url", "PGPASSWORD"] {
        let cmd = |args: &[&str]| {
            let mut c = pgdeck_cmd();
            c.arg("--config")
                .arg(&config)
                .args(["--env", "prod", "--migrations"])
                .arg(m.path())
                .args(args)
                .env("PGDECK_JOURNAL_DIR", &journal);
            if mode == "url" {
                c.env("PGDECK_SECRET_URL", &with_password);
            } else {
                c.env("PGDECK_SECRET_URL", &base).env("PGPASSWORD", SECRET);
            }
            c
        };
        let deploy_or_revert: Vec<Vec<&str>> = if mode == "url" {
            vec![vec!["deploy", "--yes"]]
        } else {
            vec![
                vec!["revert", "20250101000000_init", "--deploy", "--yes"],
                vec!["deploy", "--yes"],
            ]
        };
        let mut commands: Vec<Vec<&str>> = vec![vec!["status"], vec!["plan"], vec!["lint"]];
        commands.extend(deploy_or_revert);
        commands.extend([
            vec!["status", "--json"],
            vec!["monitor", "--once"],
            vec!["monitor", "--once", "--json"],
            vec!["health", "--window", "0.3", "--json"],
            vec!["backup", "create"],
            vec!["backup", "verify", "--restore-test"],
            vec!["backup", "list", "--json"],
            vec!["hooks", "run", "smoke_test"],
            vec!["deploy", "--yes", "--lock-wait", "1"],
            vec!["report"],
        ]);
        for args in &commands {
            let r = run(cmd(args));
            runs += 1;
            assert!(!r.stderr.contains("panicked"), "{mode} {args:?}: {r:?}");
            if r.stdout.contains(SECRET) || r.stderr.contains(SECRET) {
                leaks.push(format!("{mode} {args:?} printed it:\n{r:?}"));
            }
        }
        // A restore, confirmed.
        let listed = run(cmd(&["backup", "list", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
        let file = v["backups"][0]["backup"]["file"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = run(cmd(&[
            "backup",
            "restore",
            &file,
            "--yes",
            "--terminate-sessions",
        ]));
        runs += 1;
        assert_eq!(r.code, 0, "{r:?}");
        if r.stdout.contains(SECRET) || r.stderr.contains(SECRET) {
            leaks.push(format!("{mode} restore printed it:\n{r:?}"));
        }
        // A failure's message too: a wrong password.
        let mut bad = pgdeck_cmd();
        bad.args([
            "--database-url",
            &with_password.replace(SECRET, &format!("{SECRET}x")),
            "status",
        ]);
        let r = run(bad);
        runs += 1;
        if r.stderr.contains(SECRET) {
            leaks.push(format!("{mode} wrong password printed it:\n{r:?}"));
        }
    }
    let (argv_hits, processes_seen) = watch.finish();
    leaks.extend(argv_hits.into_iter().map(|a| format!("argv: {a}")));
    scan_dir(work.path(), &mut leaks);
    let hook_env = std::fs::read_to_string(&hook_out).unwrap();
    assert!(
        hook_env.contains("PGDECK_DATABASE=postgresql://secret_deployer:***@"),
        "{hook_env}"
    );
    assert!(
        leaks.is_empty(),
        "the password leaked:\n{}",
        leaks.join("\n")
    );
    assert!(runs >= 30, "{runs} runs");
    assert!(
        processes_seen > 0,
        "the argv watch saw no pgdeck or pg_dump process"
    );
}

#[tokio::test]
async fn a_password_that_needs_percent_encoding_is_hidden_in_every_form() {
    let Some(sandbox) = sandbox() else {
        eprintln!(
            "PGDECK_TEST_DATABASE_URL is set: the server's roles are not ours to configure, so this case is not checked"
        );
        return;
    };
    const RAW: &str = "Enc@de:d/Pw#%+9x";
    let db = fresh_db("secrets_encoded").await;
    db.exec(&format!(
        "DO $$ BEGIN CREATE ROLE secret_encoder LOGIN SUPERUSER PASSWORD '{RAW}'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;"
    ))
    .await;
    let m = Migrations::new();
    m.add("20250101000000_init", "CREATE TABLE enc_t (id int);");
    let work = tempfile::tempdir().unwrap();
    let hook_out = work.path().join("hook.txt");
    let config = work.path().join("pgdeck.toml");
    std::fs::write(
        &config,
        format!(
            "[environments.prod]\ndatabase_url_env = \"PGDECK_SECRET_URL\"\nbackup_dir = \"{}\"\n\
             [environments.prod.hooks]\nsmoke_test = \"env > {out}; echo $PGDECK_SECRET_URL\"\n",
            work.path().join("backups").display(),
            out = hook_out.display()
        ),
    )
    .unwrap();
    // Encoded as an operator might write it: upper- and lower-case escapes.
    let forms = [
        "Enc%40de%3Ad%2FPw%23%25%2B9x",
        "Enc%40de%3ad%2fPw%23%25%2b9x",
    ];
    let mut leaks = Vec::new();
    for written in forms {
        let url = format!(
            "postgresql://secret_encoder:{written}@127.0.0.1:{}/{}?sslmode=disable",
            sandbox.port(),
            db.name
        );
        for args in [
            vec!["status"],
            vec!["deploy", "--yes"],
            vec!["hooks", "run", "smoke_test"],
            vec!["backup", "create"],
            vec!["status", "--json"],
        ] {
            let mut c = pgdeck_cmd();
            c.arg("--config")
                .arg(&config)
                .args(["--env", "prod", "--migrations"])
                .arg(m.path())
                .args(&args)
                .env("PGDECK_SECRET_URL", &url)
                .env("PGDECK_JOURNAL_DIR", work.path().join("journal"));
            let r = run(c);
            assert!(r.code == 0 || r.code == 3, "{written} {args:?}: {r:?}");
            for form in [RAW, written] {
                if r.stdout.contains(form) || r.stderr.contains(form) {
                    leaks.push(format!("{written} {args:?} printed {form}: {r:?}"));
                }
            }
        }
        let env = std::fs::read_to_string(&hook_out).unwrap();
        for form in [RAW, written, "PGDECK_SECRET_URL="] {
            if env.contains(form) {
                leaks.push(format!("{written}: the hook's environment held {form}"));
            }
        }
    }
    for entry in walk(work.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        for form in [RAW, forms[0], forms[1]] {
            if text.contains(form) {
                leaks.push(format!("file {} holds {form}", entry.display()));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_missing_password_is_named_as_such() {
    let Some(sandbox) = sandbox() else {
        eprintln!(
            "PGDECK_TEST_DATABASE_URL is set: the server's roles are not ours to configure, so this case is not checked"
        );
        return;
    };
    let db = fresh_db("secrets_missing").await;
    db.exec(
        "DO $$ BEGIN CREATE ROLE secret_forgetter LOGIN PASSWORD 'Forgotten-Pw-55'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;",
    )
    .await;
    let m = Migrations::new();
    let mut c = pgdeck_cmd();
    c.args([
        "--database-url",
        &format!(
            "postgresql://secret_forgetter@127.0.0.1:{}/{}?sslmode=disable",
            sandbox.port(),
            db.name
        ),
        "--migrations",
        m.path().to_str().unwrap(),
        "status",
    ]);
    let r = run(c);
    r.assert_clean_error(1);
    assert!(
        r.stderr
            .contains("asks for a password for user 'secret_forgetter'")
            && r.stderr.contains("PGPASSWORD")
            && !r.stderr.contains("is PostgreSQL running"),
        "{}",
        r.stderr
    );
}
