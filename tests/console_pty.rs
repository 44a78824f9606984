//! The console end to end, as a person uses it: `pgdeck demo` in a pseudo-terminal, keys typed,
//! the screen read through a terminal emulator. It walks the checklist (backup, verify, plan,
//! baseline, deploy with the database name typed, status, health), finds a slow query on the
//! Monitor screen, quits, and checks the terminal was restored.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

const ROWS: u16 = 40;
const COLS: u16 = 120;
const TIMEOUT: Duration = Duration::from_secs(60);

struct Console {
    screen: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _pair: portable_pty::PtyPair,
}

impl Console {
    fn start(home: &Path, journal: &Path) -> Console {
        Console::start_with(home, journal, &["demo", "--fresh"])
    }

    fn start_with(home: &Path, journal: &Path, args: &[&str]) -> Console {
        let pty = native_pty_system();
        let pair = pty
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pty");
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_pgdeck"));
        cmd.args(args);
        cmd.cwd(home);
        cmd.env("PGDECK_DEMO_HOME", home);
        cmd.env("PGDECK_JOURNAL_DIR", journal);
        cmd.env("TERM", "xterm-256color");
        cmd.env("NO_COLOR", "1");
        cmd.env("USER", "e2e-operator");
        let child = pair.slave.spawn_command(cmd).expect("spawn pgdeck demo");
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let feed = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().unwrap().process(&buf[..n]);
            }
        });
        Console {
            screen,
            writer,
            child,
            _pair: pair,
        }
    }

    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits until the screen shows `what`; panics with the screen on timeout.
    fn wait_for(&self, what: &str) {
        let start = Instant::now();
        loop {
            let text = self.text();
            if text.contains(what) {
                return;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "timed out waiting for {what:?}; the screen:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Console {
    /// Types `keys` and waits for the checklist to count `done` items.
    fn step(&mut self, keys: &str, done: usize) {
        self.keys(keys);
        self.wait_for(&format!("Checklist {done}/21"));
    }

    /// Walks the demo's checklist from the start to its Deploy step: rehearsal, backup, verify, the plan
    /// read, the ticks (with the notes given), the rollback plan, the baseline, two skips.
    fn walk_to_deploy(&mut self, staging_note: &str, team_note: &str) {
        self.wait_for("Checklist 0/21");
        // The demo database is as production would be before the release: one applied, two new.
        self.wait_for("1 applied, 2 pending");
        // The rehearsal: the two pending migrations on a copy of the schema in a cluster of
        // its own, and the drift check.
        self.step("\r", 1);
        assert!(
            self.text().contains("[x] Rehearsal and drift check"),
            "{}",
            self.text()
        );
        self.step("\r", 2); // backup
        assert!(
            self.text().contains("[x] Backup created"),
            "{}",
            self.text()
        );
        self.step("\r", 3); // verify
        // Lint and plan: the whole plan is shown, and the step ends once it was read.
        self.keys("\r");
        self.wait_for("Enter: reviewed");
        self.wait_for("Plan for");
        self.wait_for("overall: ok");
        self.step("\r", 4);
        self.step(&format!("\r{staging_note}\r"), 5);
        self.step("\r\r", 6); // integration tests, no note
        self.step("\r", 7); // every pending migration has a down.sql
        self.step(&format!("\r{team_note}\r"), 8);
        self.step("\r", 9); // baseline (a few seconds of probes)
        self.step("sdemo in the daytime\r", 10);
        self.step("snot needed\r", 11);
    }
}

/// The port the demo cluster in `home` listens on.
fn demo_port(home: &Path) -> u16 {
    std::fs::read_to_string(home.join("cluster/pgdeck-port.conf"))
        .unwrap()
        .trim()
        .trim_start_matches("port = ")
        .parse()
        .unwrap()
}

/// The demo's console session journal, as text.
fn session_text(journal: &Path) -> String {
    let session = std::fs::read_dir(journal.join("demo"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    std::fs::read_to_string(session).unwrap()
}

/// Stops the demo cluster however the test ends.
struct StopDemo(PathBuf);

impl Drop for StopDemo {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_pgdeck"))
            .args(["demo", "--stop"])
            .env("PGDECK_DEMO_HOME", &self.0)
            .output();
    }
}

#[test]
fn an_operator_walks_the_checklist_finds_a_slow_query_and_quits_cleanly() {
    let home = tempfile::tempdir().unwrap();
    // As root the server runs as postgres, who must be able to enter the folder.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let _stop = StopDemo(home.path().to_owned());
    let mut c = Console::start(home.path(), journal.path());

    c.walk_to_deploy("staging run 17", "#release");
    // Deploy on the (protected) demo: the name must be typed.
    c.keys("\r");
    c.wait_for("type the database name (pgdeck_demo)");
    c.wait_for("Apply 2 pending migration(s) to pgdeck_demo");
    c.keys("pgdeck_demo\r");
    c.wait_for("Checklist 12/21");
    c.wait_for("3 applied, 0 pending");
    c.step("\r", 13); // status
    c.step("\r", 14); // health
    assert!(c.text().contains("health: ok"), "{}", c.text());

    // A slow query appears on the Monitor screen.
    let port = demo_port(home.path());
    let mut sleeper = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", "pgdeck_demo", "-U", "postgres", "-p"])
        .arg(port.to_string())
        .arg("-h")
        .arg(home.path().join("cluster"))
        .args(["-c", "SELECT pg_sleep(60)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    c.keys("2");
    c.wait_for("Connections");
    c.wait_for("SELECT pg_sleep(60)");
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    c.keys("5");
    c.wait_for("Deploy migrations: ok");
    c.keys("q");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = c.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < TIMEOUT, "pgdeck did not exit after q");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // Give the reader the last bytes, then check the terminal is back to normal.
    let start = Instant::now();
    while c.screen.lock().unwrap().screen().alternate_screen() {
        assert!(
            start.elapsed() < TIMEOUT,
            "the alternate screen was not left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !c.screen.lock().unwrap().screen().hide_cursor(),
        "cursor hidden"
    );

    // The journal holds the session, operator and confirmation included.
    let text = session_text(journal.path());
    assert!(text.contains("\"operator\":\"e2e-operator\""), "{text}");
    assert!(text.contains("\"event\":\"confirmed\""), "{text}");
    assert!(text.contains("staging run 17"), "{text}");
}

/// psql as an application session would be: a transaction left open on a table, idle.
fn idle_transaction_on(home: &Path, table: &str) -> std::process::Child {
    let port = demo_port(home);
    let mut psql = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", "pgdeck_demo", "-U", "postgres", "-p"])
        .arg(port.to_string())
        .arg("-h")
        .arg(home.join("cluster"))
        .env("PGAPPNAME", "incident-psql")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    let stdin = psql.stdin.as_mut().unwrap();
    writeln!(stdin, "BEGIN; SELECT 1 FROM \"{table}\" LIMIT 1;").unwrap();
    stdin.flush().unwrap();
    psql
}

/// The sessions of `application` on the demo cluster, as psql counts them.
fn sessions_of(home: &Path, application: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            "pgdeck_demo",
            "-U",
            "postgres",
            "-p",
        ])
        .arg(demo_port(home).to_string())
        .arg("-h")
        .arg(home.join("cluster"))
        .arg("-c")
        .arg(format!(
            "SELECT state FROM pg_stat_activity WHERE application_name = '{application}'"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_deploy_blocked_by_an_idle_transaction_shows_the_blocker_and_completes_once_it_is_terminated() {
    let home = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let _stop = StopDemo(home.path().to_owned());
    let mut c = Console::start(home.path(), journal.path());
    c.walk_to_deploy("", "");

    // An application session holds a transaction open on the table the migration alters.
    let mut blocker = idle_transaction_on(home.path(), "QRCode");
    let start = Instant::now();
    while sessions_of(home.path(), "incident-psql") != "idle in transaction" {
        assert!(start.elapsed() < TIMEOUT, "the blocker did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.keys("\r");
    c.wait_for("type the database name (pgdeck_demo)");
    c.keys("pgdeck_demo\r");
    // The step says who it waits for, with its state, and how to end it.
    c.wait_for("WAITING");
    c.wait_for("idle in transaction");
    c.wait_for("incident-psql");
    c.wait_for("K: terminate pid");
    c.wait_for("ALERT");
    c.wait_for("deploy waits for a lock held by pid");
    let screen = c.text();
    assert!(
        screen.contains("cancelling would not help"),
        "the step should say a cancel cannot help an idle transaction:\n{screen}"
    );
    // K asks about the session as it is now; y ends it.
    c.keys("K");
    c.wait_for("Terminate backend");
    c.wait_for("The deploy waits for it, on attempt");
    c.wait_for("Its open transaction rolls back.");
    c.keys("y");
    c.wait_for("Checklist 12/21");
    c.wait_for("3 applied, 0 pending");
    let start = Instant::now();
    while blocker.try_wait().unwrap().is_none()
        && !sessions_of(home.path(), "incident-psql").is_empty()
    {
        assert!(
            start.elapsed() < TIMEOUT,
            "the blocker's session is still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = blocker.kill();
    let _ = blocker.wait();
    c.keys("5");
    c.wait_for("Deploy migrations: ok");
    c.keys("q");
    let start = Instant::now();
    while c.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < TIMEOUT, "pgdeck did not exit after q");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The journal has every step with its outcome, the terminate among them.
    let entries: Vec<serde_json::Value> = session_text(journal.path())
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let finished = |step: &str| {
        entries
            .iter()
            .any(|e| e["event"] == "step_finished" && e["step"] == step && e["outcome"] == "ok")
    };
    for step in ["backup", "verify_backup", "plan", "baseline", "deploy"] {
        assert!(
            finished(step),
            "no ok step_finished for {step}: {entries:#?}"
        );
    }
    assert!(
        entries.iter().any(|e| e["event"] == "released"
            && e["outcome"] == "ok"
            && e["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("terminated backend"))),
        "the terminate and its outcome are journaled: {entries:#?}"
    );
}

#[test]
fn an_operator_reverts_the_newest_migration_from_the_rollback_screen() {
    let home = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let _stop = StopDemo(home.path().to_owned());
    // Outside a terminal the demo deploys the samples: three applied migrations to undo from.
    let headless = std::process::Command::new(env!("CARGO_BIN_EXE_pgdeck"))
        .args(["demo", "--fresh"])
        .env("PGDECK_DEMO_HOME", home.path())
        .output()
        .unwrap();
    assert!(headless.status.success(), "{headless:?}");

    let mut c = Console::start_with(home.path(), journal.path(), &["demo"]);
    c.wait_for("3 applied, 0 pending");
    c.keys("4");
    c.wait_for("Forward rollback (recommended)");
    c.wait_for("[ ] 20251105000000_add_qrcode_used_by_index");
    c.keys("f");
    // The guards of a deploy hold for a rollback too: the protected demo has no backup yet...
    c.wait_for("Refused");
    c.wait_for("no backup of pgdeck_demo");
    // ...so the operator says why to go ahead without one (journaled).
    c.keys("o");
    c.keys("INC-1: the rollback is the safer way back\r");
    c.wait_for("Writes a migration from the down.sql of");
    c.wait_for("20251105000000_add_qrcode_used_by_index (newest first)");
    c.wait_for("It drops no column or table of data.");
    c.keys("pgdeck_demo\r");
    c.wait_for("forward rollback of 20251105000000_add_qrcode_used_by_index: done");
    c.wait_for("4 applied, 0 pending");
    assert!(
        c.text()
            .contains("[x] Restore or forward rollback executed"),
        "{}",
        c.text()
    );
    c.keys("q");
    let start = Instant::now();
    while c.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < TIMEOUT, "pgdeck did not exit after q");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The index the migration built is gone, by a migration of its own in the ledger.
    let port = demo_port(home.path());
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-d", "pgdeck_demo", "-U", "postgres", "-p"])
        .arg(port.to_string())
        .arg("-h")
        .arg(home.path().join("cluster"))
        .args([
            "-c",
            "SELECT (SELECT count(*) FROM pg_indexes WHERE indexname = 'QRCode_usedByUserId_idx') || ' ' || \
             (SELECT count(*) FROM _prisma_migrations WHERE migration_name LIKE '%_rollback_add_qrcode_used_by_index' AND finished_at IS NOT NULL)",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0 1",
        "{out:?}"
    );
    // The override is journaled with the reason typed, and what the rollback applied.
    let text = session_text(journal.path());
    assert!(
        text.contains("\"event\":\"override\"")
            && text.contains("INC-1: the rollback is the safer way back"),
        "{text}"
    );
    assert!(text.contains("\"event\":\"released\""), "{text}");
}

#[test]
fn a_second_console_on_a_held_session_opens_read_only_and_runs_nothing() {
    let home = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let _stop = StopDemo(home.path().to_owned());
    let mut first = Console::start(home.path(), journal.path());
    first.wait_for("Checklist 0/21");
    first.keys("\r");
    first.wait_for("Checklist 1/21");
    first.keys("\r");
    first.wait_for("Checklist 2/21");

    // The same demo, the same unfinished session: watched, not driven.
    let mut second = Console::start_with(home.path(), journal.path(), &["demo"]);
    second.wait_for("READ-ONLY");
    second.wait_for("has this session open");
    second.wait_for("Checklist 2/21");
    second.keys("\r");
    second.wait_for("drives this session");
    assert!(
        second.text().contains("Checklist 2/21"),
        "{}",
        second.text()
    );
    // It follows what the holding console does.
    first.keys("\r");
    first.wait_for("Checklist 3/21");
    second.wait_for("Checklist 3/21");
    second.keys("q");
    let start = Instant::now();
    while second.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < TIMEOUT, "the second console did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The first goes on as before, and its journal has nothing from the second.
    first.keys("\r");
    first.wait_for("Esc: close unreviewed");
    first.keys("\r");
    first.wait_for("Checklist 4/21");
    first.keys("q");
    let start = Instant::now();
    while first.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < TIMEOUT, "pgdeck did not exit after q");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = session_text(journal.path());
    assert_eq!(
        text.matches("\"event\":\"session_resumed\"").count(),
        0,
        "{text}"
    );
}
