//! The monitor under faults, on a cluster of its own: its connection terminated by someone else,
//! the server restarted, then 2,000 connections opened at once. `monitor --watch` (the loop the
//! console runs) keeps going through all of it and shows the new truth within 5 s each time.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pgdeck_cmd;
use pgdeck::db::{self, sandbox::Sandbox};
use serde_json::Value;

const CATCH_UP: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 2000;

/// `monitor --watch --json` with its updates arriving on a channel.
fn watch(url: &str) -> (Child, mpsc::Receiver<Value>) {
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        url,
        "monitor",
        "--watch",
        "--json",
        "--interval",
        "0.25",
        "--top",
        "3",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a fresh update that satisfies `ok`; returns how long it took.
fn fresh_within(
    rx: &mpsc::Receiver<Value>,
    limit: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(v) if v["update"] == "fresh" && ok(&v["snapshot"]) => return start.elapsed(),
            Ok(_) => {}
            Err(_) => panic!("no fresh update with {what} within {limit:?}"),
        }
    }
}

fn total(snapshot: &Value) -> i64 {
    snapshot["connections"]["data"]["total"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_catches_up_after_termination_restart_and_a_connection_storm() {
    let mut sandbox =
        Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let admin = db::connect(&sandbox.target("postgres")).await.unwrap();
    admin
        .client
        .batch_execute("ALTER SYSTEM SET max_connections = 2200")
        .await
        .unwrap();
    drop(admin);
    sandbox.stop_immediately().unwrap();
    sandbox.restart().unwrap();
    let url = sandbox.url("postgres");
    let (mut child, rx) = watch(&url);
    fresh_within(&rx, Duration::from_secs(15), "a first sample", |_| true);

    // Someone terminates the monitor's own session.
    let killer = db::connect(&sandbox.target("postgres")).await.unwrap();
    let killed: i64 = killer
        .client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pgdeck-monitor'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    drop(killer);
    let after_kill = fresh_within(
        &rx,
        CATCH_UP,
        "a sample after its session was terminated",
        |_| true,
    );

    // The server restarts.
    sandbox.stop_immediately().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    sandbox.restart().unwrap();
    let after_restart = fresh_within(&rx, CATCH_UP, "a sample after the restart", |_| true);

    // 2,000 connections open at once.
    let target = sandbox.target("postgres");
    let mut opening = Vec::new();
    for _ in 0..CONNECTIONS {
        let t = target.clone();
        opening.push(tokio::spawn(async move { db::connect(&t).await }));
    }
    let mut held = Vec::new();
    for o in opening {
        held.push(o.await.unwrap().unwrap_or_else(|e| panic!("{}", e.cause)));
    }
    let storm = tokio::task::spawn_blocking(move || {
        let took = fresh_within(&rx, CATCH_UP, "2,000 connections counted", |s| {
            total(s) >= CONNECTIONS as i64
        });
        (took, rx)
    })
    .await
    .unwrap();
    let (after_storm, rx) = storm;
    // And it keeps refreshing under that load.
    let samples = {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < Duration::from_secs(2) {
            if let Ok(v) = rx.recv_timeout(CATCH_UP)
                && v["update"] == "fresh"
            {
                n += 1;
            }
        }
        n
    };
    assert!(
        samples >= 2,
        "only {samples} fresh samples in 2 s with 2,000 connections"
    );
    assert!(child.try_wait().unwrap().is_none(), "the monitor exited");
    let _ = child.kill();
    let _ = child.wait();
    drop(held);
    eprintln!(
        "monitor caught up: {after_kill:?} after its session was terminated, {after_restart:?} after the restart, {after_storm:?} after 2,000 connections opened"
    );
}
