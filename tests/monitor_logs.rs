//! Following logs for real: a file appended to, truncated, rotated, removed, replaced by a FIFO;
//! a command that writes, exits and is killed with what it started; the server's own log, read
//! on this machine and through `pg_read_binary_file` from a cluster with its logging collector
//! on, with the server's lock waits, deadlocks, cancelled statements and terminations in their
//! own classes; the reasons it is not shown; and `pgdeck monitor logs`, headless.

mod common;

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use pgdeck::db::sandbox::Sandbox;
use pgdeck::monitor::logs::{
    self, AppLog, LineClass, LogSettings, LogSource, LogState, LogTail, LogUpdate,
};
use pgdeck::target::DbTarget;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(30);

fn settings() -> LogSettings {
    LogSettings {
        app_log: None,
        alert_per_minute: 3,
        poll: Duration::from_millis(20),
        server_poll: Duration::from_millis(100),
        context_lines: 2,
        restart_backoff: Duration::from_millis(50),
    }
}

/// A follower running in its task, its updates folded into a [`LogTail`] as the console would.
struct Followed {
    rx: UnboundedReceiver<LogUpdate>,
    tail: LogTail,
    states: Vec<LogState>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Followed {
    fn start(source: LogSource, settings: LogSettings) -> Followed {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let tail = LogTail::new(settings.alert_per_minute);
        let task = tokio::spawn(logs::follow(source, settings, tx, cancel.clone()));
        Followed {
            rx,
            tail,
            states: Vec::new(),
            cancel,
            task,
        }
    }

    /// Folds updates in until `cond` holds; panics with `what` after [`TIMEOUT`], or when the
    /// follower ended without it holding.
    async fn until(&mut self, what: &str, cond: impl Fn(&Followed) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !cond(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(update)) => {
                    if let LogUpdate::State { state } = &update {
                        self.states.push(state.clone());
                    }
                    self.tail.apply(update);
                }
                Ok(None) => {
                    assert!(
                        cond(self),
                        "the follower ended before {what}: {:?}",
                        self.seen()
                    );
                    return;
                }
                Err(_) => panic!("timed out waiting for {what}: {:?}", self.seen()),
            }
        }
    }

    /// Lines read since following started (not the context), as (class, text).
    fn lines(&self) -> Vec<(LineClass, String)> {
        self.tail
            .lines()
            .iter()
            .filter(|l| !l.context)
            .map(|l| (l.class, l.text.clone()))
            .collect()
    }

    fn has(&self, class: LineClass, text: &str) -> bool {
        self.lines()
            .iter()
            .any(|(c, t)| *c == class && t.contains(text))
    }

    fn following(&self) -> bool {
        matches!(self.tail.state(), LogState::Following { .. })
    }

    fn seen(&self) -> (Vec<(LineClass, String)>, &LogState) {
        (self.lines(), self.tail.state())
    }

    /// Cancels and waits for the follower to end.
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the follower stops when cancelled")
            .unwrap();
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn file_source(path: &Path) -> LogSource {
    LogSource::App(AppLog::File(path.to_owned()))
}

#[tokio::test]
async fn appended_error_lines_arrive_classified_and_counted_and_the_alert_fires_past_the_threshold()
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("application.log");
    append(&path, "old INFO 1\nold ERROR 2\nold ERROR 3\n");
    let mut f = Followed::start(file_source(&path), settings());
    f.until("the file to be followed", Followed::following)
        .await;
    let context: Vec<_> = f.tail.lines().iter().filter(|l| l.context).collect();
    assert_eq!(context.len(), 2, "the last lines, for context: {context:?}");
    assert_eq!(
        f.tail.errors_last_minute(Utc::now()),
        0,
        "context is not counted"
    );

    append(
        &path,
        "2026-05-01 10:00:00 INFO request served\n\
         2026-05-01 10:00:01 ERROR payment failed\n\
         2026-05-01 10:00:01 WARN slow upstream\n\
         {\"level\":\"error\",\"msg\":\"db timeout\"}\n\
         10.0.0.1 - - [01/May/2026:10:00:02 +0000] \"GET /api HTTP/1.1\" 503 0\n",
    );
    f.until("five new lines", |f| f.lines().len() == 5).await;
    assert_eq!(
        f.lines().iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [
            LineClass::Plain,
            LineClass::Error,
            LineClass::Warning,
            LineClass::Error,
            LineClass::Error
        ]
    );
    assert_eq!(f.tail.errors_last_minute(Utc::now()), 3);
    assert_eq!(f.tail.alert(Utc::now()), None, "three is not past three");

    append(&path, "Traceback (most recent call last):\n");
    f.until("the fourth error", |f| f.tail.total(LineClass::Error) == 4)
        .await;
    let alert = f.tail.alert(Utc::now()).expect("past the threshold");
    assert!(
        alert.contains("4 error lines in the last minute"),
        "{alert}"
    );
    assert_eq!(f.tail.errors_per_minute(Utc::now()).iter().sum::<u32>(), 4);
    f.stop().await;
}

#[tokio::test]
async fn a_followed_file_survives_truncation_rotation_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("application.log");
    append(&path, "");
    let mut f = Followed::start(file_source(&path), settings());
    f.until("the file to be followed", Followed::following)
        .await;

    append(&path, "ERROR before truncation\n");
    f.until("the first line", |f| {
        f.has(LineClass::Error, "before truncation")
    })
    .await;
    // logrotate's copytruncate
    std::fs::write(&path, "").unwrap();
    append(&path, "ERROR after truncation\n");
    f.until("the line after the truncation", |f| {
        f.has(LineClass::Error, "after truncation")
    })
    .await;
    assert!(f.has(LineClass::Notice, "was truncated"), "{:?}", f.lines());

    // logrotate's create: the old file moves away (its last lines still read), a new one
    // takes its path.
    append(&path, "WARN last words of the old file\n");
    std::fs::rename(&path, dir.path().join("application.log.1")).unwrap();
    append(&path, "ERROR first line of the new file\n");
    f.until("the new file's line", |f| {
        f.has(LineClass::Error, "first line of the new file")
    })
    .await;
    assert!(f.has(LineClass::Warning, "last words of the old file"));
    assert!(f.has(LineClass::Notice, "was replaced"), "{:?}", f.lines());

    std::fs::remove_file(&path).unwrap();
    f.until("waiting for the file again", |f| {
        matches!(f.tail.state(), LogState::Waiting { reason, .. } if reason.contains("to appear"))
    })
    .await;
    append(&path, "FATAL back again\n");
    f.until("the recreated file's line", |f| {
        f.has(LineClass::Error, "back again")
    })
    .await;
    assert_eq!(f.tail.total(LineClass::Error), 4);
    f.stop().await;
}

#[tokio::test]
async fn a_missing_file_is_waited_for_and_read_from_its_start_once_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/application.log");
    let mut f = Followed::start(file_source(&path), settings());
    f.until("the waiting state", |f| {
        matches!(f.tail.state(), LogState::Waiting { .. })
    })
    .await;
    let LogState::Waiting { reason, .. } = f.tail.state() else {
        unreachable!()
    };
    assert_eq!(reason, &format!("waiting for {} to appear", path.display()));
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    append(&path, "one\nERROR two\nthree\n");
    f.until("every line of the new file", |f| {
        f.lines().len() == 3 && f.following()
    })
    .await;
    assert_eq!(f.tail.total(LineClass::Error), 1, "all of it is new");
    f.stop().await;
}

#[tokio::test]
async fn a_fifo_at_the_path_is_refused_with_a_clear_error_and_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("application.log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut f = Followed::start(file_source(&fifo), settings());
    f.until("the refusal", |f| f.tail.state().is_final()).await;
    let LogState::Error {
        cause, retry_in_ms, ..
    } = f.tail.state().clone()
    else {
        panic!("{:?}", f.tail.state())
    };
    assert!(
        cause.contains("named pipe (FIFO), not a regular file"),
        "{cause}"
    );
    assert_eq!(retry_in_ms, None, "followed no further");
    tokio::time::timeout(TIMEOUT, f.task)
        .await
        .expect("the follower ends by itself")
        .unwrap();
}

/// Processes of process group `group` that are not zombies, from /proc.
fn live_members(group: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
        })
        .count()
}

#[tokio::test]
async fn a_command_is_followed_and_killed_with_what_it_started_on_cancel() {
    let source = LogSource::App(AppLog::Command("sh -c 'echo ERROR x; sleep 30'".into()));
    let mut f = Followed::start(source, settings());
    f.until("the command's line", |f| f.has(LineClass::Error, "ERROR x"))
        .await;
    let Some(LogState::Following { pid: Some(pid), .. }) = f
        .states
        .iter()
        .find(|s| matches!(s, LogState::Following { .. }))
        .cloned()
    else {
        panic!("no pid in {:?}", f.states)
    };
    assert!(live_members(pid) >= 2, "the shells and sleep run");
    let t = Instant::now();
    f.stop().await;
    assert!(t.elapsed() < Duration::from_secs(5), "stopped at once");
    wait_for("the command's process group to go", TIMEOUT, || async {
        live_members(pid) == 0
    })
    .await;
}

#[tokio::test]
async fn an_exited_command_is_said_with_its_status_and_started_again() {
    let source = LogSource::App(AppLog::Command(
        "echo 'ERROR from stdout'; echo 'WARNING from stderr' >&2; exit 3".into(),
    ));
    let mut f = Followed::start(source, settings());
    f.until("two runs", |f| {
        f.lines()
            .iter()
            .filter(|(c, t)| *c == LineClass::Error && t == "ERROR from stdout")
            .count()
            >= 2
    })
    .await;
    assert!(f.has(LineClass::Warning, "WARNING from stderr"));
    assert!(
        f.has(LineClass::Notice, "exited (exit 3)"),
        "{:?}",
        f.lines()
    );
    let exited = f
        .states
        .iter()
        .find_map(|s| match s {
            LogState::Exited {
                status,
                restart_in_ms,
                ..
            } => Some((status.clone(), *restart_in_ms)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no exited state in {:?}", f.states));
    assert_eq!(exited, ("exit 3".to_owned(), 50));
    f.stop().await;
}

// --- the server's own log ---

#[tokio::test]
async fn the_server_log_is_not_shown_with_the_logging_collector_off_and_says_why() {
    // The harness's cluster runs with logging_collector = off.
    let db = fresh_db("server_log_collector_off").await;
    let mut f = Followed::start(LogSource::Server(db.target.clone()), settings());
    f.until("the reason", |f| f.tail.state().is_final()).await;
    let LogState::Unavailable { reason, hint } = f.tail.state().clone() else {
        panic!("{:?}", f.tail.state())
    };
    assert!(reason.contains("logging_collector is off"), "{reason}");
    assert!(hint.contains("logging_collector = on"), "{hint}");
    tokio::time::timeout(TIMEOUT, f.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_role_that_may_not_name_the_servers_log_file_is_told_so() {
    let db = fresh_db("server_log_not_permitted").await;
    db.exec(&format!("CREATE ROLE {} LOGIN", db.name)).await;
    let mut target = db.target.clone();
    target.user = db.name.clone();
    let mut f = Followed::start(LogSource::Server(target), settings());
    f.until("the reason", |f| f.tail.state().is_final()).await;
    let LogState::Unavailable { reason, hint } = f.tail.state().clone() else {
        panic!("{:?}", f.tail.state())
    };
    assert!(reason.contains("pg_current_logfile"), "{reason}");
    assert!(
        hint.contains("GRANT EXECUTE ON FUNCTION pg_current_logfile()"),
        "{hint}"
    );
}

/// A cluster of its own with the logging collector on, lock waits logged after 100 ms, and a
/// password for the superuser (its TCP connections need one).
async fn logging_cluster() -> Sandbox {
    let mut sandbox =
        Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let admin = connect(&sandbox.target("postgres")).await;
    // One by one: ALTER SYSTEM may not run in the implicit transaction of a batch.
    for sql in [
        "ALTER SYSTEM SET logging_collector = on",
        "ALTER SYSTEM SET log_lock_waits = on",
        "ALTER SYSTEM SET deadlock_timeout = '100ms'",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }
    drop(admin);
    // logging_collector takes a restart. (The sandbox commits asynchronously: what an
    // immediate stop may lose is made after it.)
    sandbox.stop_immediately().unwrap();
    sandbox.restart().unwrap();
    connect(&sandbox.target("postgres"))
        .await
        .batch_execute(
            "ALTER ROLE postgres PASSWORD 'log-test-pw'; \
             CREATE TABLE t1 (id int); CREATE TABLE t2 (id int)",
        )
        .await
        .unwrap();
    sandbox
}

async fn connect(target: &DbTarget) -> tokio_postgres::Client {
    pgdeck::db::connect(&target.with_application_name("pgdeck-test"))
        .await
        .unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint))
        .client
}

/// Makes the server start a new log file (its name has the second in it) and says which.
async fn rotate(c: &tokio_postgres::Client) -> String {
    let before: String = c
        .query_one("SELECT pg_current_logfile()", &[])
        .await
        .unwrap()
        .get(0);
    let t = Instant::now();
    loop {
        c.execute("SELECT pg_rotate_logfile()", &[]).await.unwrap();
        let now: Option<String> = c
            .query_one("SELECT pg_current_logfile()", &[])
            .await
            .unwrap()
            .get(0);
        if let Some(now) = now.filter(|n| *n != before) {
            return now;
        }
        assert!(t.elapsed() < TIMEOUT, "the server kept {before}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_server_log_on_this_machine_shows_lock_waits_deadlocks_cancels_and_terminations() {
    let sandbox = logging_cluster().await;
    let target = sandbox.target("postgres");
    let mut f = Followed::start(LogSource::Server(target.clone()), settings());
    f.until("the server's log to be followed", Followed::following)
        .await;
    let LogState::Following { what, .. } = f.tail.state().clone() else {
        unreachable!()
    };
    assert!(what.contains("(on this machine)"), "{what}");

    let a = connect(&target).await;
    let b = connect(&target).await;

    // A statement cancelled by its statement_timeout.
    a.batch_execute("SET statement_timeout = '50ms'")
        .await
        .unwrap();
    assert!(a.batch_execute("SELECT pg_sleep(5)").await.is_err());
    a.batch_execute("RESET statement_timeout").await.unwrap();
    f.until("the cancelled statement", |f| {
        f.has(
            LineClass::Cancelled,
            "canceling statement due to statement timeout",
        )
    })
    .await;
    // Its STATEMENT line belongs to it: plain.
    assert!(
        f.has(LineClass::Plain, "STATEMENT:  SELECT pg_sleep(5)"),
        "{:?}",
        f.lines()
    );

    // A lock wait past deadlock_timeout, then its end.
    a.batch_execute("BEGIN; LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        b.batch_execute("SELECT count(*) FROM t1").await.unwrap();
        b
    });
    f.until("the lock wait", |f| {
        f.has(LineClass::LockWait, "still waiting for AccessShareLock")
    })
    .await;
    a.batch_execute("COMMIT").await.unwrap();
    let b = waiter.await.unwrap();
    f.until("the lock acquired", |f| {
        f.has(LineClass::LockWait, "acquired AccessShareLock")
    })
    .await;

    // A deadlock: each holds what the other wants.
    let watcher = connect(&target).await;
    let a_pid: i32 = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    a.batch_execute("BEGIN; LOCK TABLE t1").await.unwrap();
    b.batch_execute("BEGIN; LOCK TABLE t2").await.unwrap();
    let first = tokio::spawn(async move {
        let r = a.batch_execute("LOCK TABLE t2").await;
        let _ = a.batch_execute("ROLLBACK").await;
        (a, r.is_err())
    });
    wait_for("the first session to wait for t2", TIMEOUT, || async {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
                &[&a_pid],
            )
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
    })
    .await;
    let second_failed = b.batch_execute("LOCK TABLE t1").await.is_err();
    let _ = b.batch_execute("ROLLBACK").await;
    let (a, first_failed) = first.await.unwrap();
    assert!(
        first_failed || second_failed,
        "the server broke the deadlock"
    );
    f.until("the deadlock", |f| {
        f.has(LineClass::Deadlock, "deadlock detected")
    })
    .await;

    // A session terminated by another.
    let victim = connect(&target).await;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    a.execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    f.until("the termination", |f| {
        f.has(
            LineClass::Terminated,
            "terminating connection due to administrator command",
        )
    })
    .await;
    assert!(
        f.tail.errors_last_minute(Utc::now()) >= 3,
        "the cancel, the deadlock and the termination count: {:?}",
        f.lines()
    );

    // A new log file: followed from its start.
    let next = rotate(&a).await;
    a.batch_execute("DO $$ BEGIN RAISE WARNING 'pgdeck after rotation'; END $$")
        .await
        .unwrap();
    f.until("the line in the new file", |f| {
        f.has(LineClass::Warning, "pgdeck after rotation")
    })
    .await;
    assert!(
        f.has(
            LineClass::Notice,
            &format!("new log file: {}", sandbox.data_dir().join(&next).display())
        ),
        "{:?}",
        f.lines()
    );
    f.stop().await;
}

#[tokio::test]
async fn the_server_log_is_read_through_the_server_when_it_is_not_on_this_machine() {
    let sandbox = logging_cluster().await;
    let no_vars = |_: &str| None;
    let tcp = |user: &str, password: &str| {
        DbTarget::from_url(
            &format!(
                "postgresql://{user}:{password}@127.0.0.1:{}/postgres?sslmode=disable",
                sandbox.port()
            ),
            &no_vars,
        )
        .unwrap()
    };
    let target = tcp("postgres", "log-test-pw");
    let mut f = Followed::start(LogSource::Server(target.clone()), settings());
    f.until("the server's log to be followed", Followed::following)
        .await;
    let LogState::Following { what, .. } = f.tail.state().clone() else {
        unreachable!()
    };
    assert!(what.contains("(read through the server)"), "{what}");

    let c = connect(&target).await;
    assert!(c.batch_execute("SELECT 1/0").await.is_err());
    c.batch_execute("DO $$ BEGIN RAISE WARNING 'pgdeck remote warning'; END $$")
        .await
        .unwrap();
    f.until("the error and the warning", |f| {
        f.has(LineClass::Error, "ERROR:  division by zero")
            && f.has(LineClass::Warning, "pgdeck remote warning")
    })
    .await;

    let next = rotate(&c).await;
    c.batch_execute("DO $$ BEGIN RAISE WARNING 'pgdeck remote after rotation'; END $$")
        .await
        .unwrap();
    f.until("the line in the new file", |f| {
        f.has(LineClass::Warning, "pgdeck remote after rotation")
    })
    .await;
    assert!(
        f.has(LineClass::Notice, &format!("new log file: {next}")),
        "{:?}",
        f.lines()
    );
    f.stop().await;

    // A role granted the functions reads it as the superuser does.
    c.batch_execute(
        "CREATE ROLE reader LOGIN PASSWORD 'r-pw'; \
         GRANT EXECUTE ON FUNCTION pg_current_logfile() TO reader; \
         GRANT EXECUTE ON FUNCTION pg_read_binary_file(text, bigint, bigint, boolean) TO reader; \
         GRANT EXECUTE ON FUNCTION pg_stat_file(text, boolean) TO reader",
    )
    .await
    .unwrap();
    let mut f = Followed::start(LogSource::Server(tcp("reader", "r-pw")), settings());
    f.until("the server's log to be followed", Followed::following)
        .await;
    c.batch_execute("DO $$ BEGIN RAISE WARNING 'pgdeck read by a granted role'; END $$")
        .await
        .unwrap();
    f.until("the line", |f| {
        f.has(LineClass::Warning, "pgdeck read by a granted role")
    })
    .await;
    f.stop().await;

    // One that may name the file but not read it is told why it is not shown.
    c.batch_execute(
        "CREATE ROLE watcher LOGIN PASSWORD 'w-pw' IN ROLE pg_monitor; \
         GRANT EXECUTE ON FUNCTION pg_current_logfile() TO watcher",
    )
    .await
    .unwrap();
    let mut f = Followed::start(LogSource::Server(tcp("watcher", "w-pw")), settings());
    f.until("the reason", |f| f.tail.state().is_final()).await;
    let LogState::Unavailable { reason, hint } = f.tail.state().clone() else {
        panic!("{:?}", f.tail.state())
    };
    assert!(reason.contains("not a unix socket"), "{reason}");
    assert!(
        reason.contains("may not read it through the server"),
        "{reason}"
    );
    assert!(hint.contains("pg_read_binary_file"), "{hint}");
}

// --- pgdeck monitor logs ---

/// `pgdeck --config FILE monitor logs ARGS` with `settings` in the one environment.
fn monitor_logs(dir: &Path, settings: &str, args: &[&str]) -> std::process::Command {
    let config = dir.join("pgdeck.toml");
    std::fs::write(
        &config,
        format!(
            "[environments.ops]\ndatabase_url = \"postgresql://app@db.invalid/app\"\n{settings}\n"
        ),
    )
    .unwrap();
    let mut cmd = pgdeck_cmd();
    cmd.arg("--config")
        .arg(&config)
        .args(["monitor", "logs"])
        .args(args);
    cmd
}

#[test]
fn monitor_logs_prints_classified_lines_and_the_alert_and_ends_on_sigint_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("application.log");
    append(&log, "ERROR from before\n");
    let mut child = spawn(monitor_logs(
        dir.path(),
        &format!("app_log = \"{}\"\nlog_alert_per_minute = 1", log.display()),
        &["--json"],
    ));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let next = |what: &str, cond: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} within {TIMEOUT:?}"));
            if cond(&v) {
                return v;
            }
        }
    };
    let context = next("context line", &|v| v["update"] == "line");
    assert_eq!(context["line"]["context"], true, "{context}");
    next("following state", &|v| v["state"]["state"] == "following");
    append(
        &log,
        "INFO fine\nERROR one\n{\"level\":\"fatal\",\"msg\":\"two\"}\n",
    );
    let one = next("the first error", &|v| v["line"]["text"] == "ERROR one");
    assert_eq!(one["line"]["class"], "error");
    assert_eq!(one["line"]["context"], false);
    let alert = next("the alert", &|v| v["update"] == "alert");
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .starts_with("2 error lines in the last minute"),
        "{alert}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn monitor_logs_without_an_application_log_or_on_a_fifo_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(monitor_logs(dir.path(), "", &[]));
    r.assert_clean_error(2);
    assert!(
        r.stderr.contains("names no application log") && r.stderr.contains("app_log_command"),
        "{}",
        r.stderr
    );

    let fifo = dir.path().join("application.log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let r = run(monitor_logs(
        dir.path(),
        &format!("app_log = \"{}\"", fifo.display()),
        &[],
    ));
    r.assert_clean_error(2);
    assert!(r.stderr.contains("named pipe (FIFO)"), "{}", r.stderr);

    let r = run(monitor_logs(
        dir.path(),
        "app_log = \"a.log\"\napp_log_command = \"tail -F a.log\"",
        &[],
    ));
    r.assert_clean_error(2);
    assert!(
        r.stderr.contains("sets both app_log and app_log_command"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn monitor_logs_server_says_why_the_server_log_is_not_shown() {
    let db = fresh_db("monitor_logs_server_off").await;
    let m = Migrations::new();
    let r = run(pgdeck(&db, m.path(), &["monitor", "logs", "--server"]));
    r.assert_clean_error(1);
    assert!(
        r.stderr.contains("logging_collector is off"),
        "{}",
        r.stderr
    );
}
