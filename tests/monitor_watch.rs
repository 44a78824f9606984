//! `monitor --watch` through a server restart: samples go stale (with the last sample's age)
//! while the server is down, and fresh again once it is back; no crash.

mod common;

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgdeck::db::sandbox::Sandbox;

#[test]
fn watch_goes_stale_while_the_server_is_down_and_recovers_when_it_is_back() {
    // A server of its own: this test restarts it.
    let mut sandbox =
        Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        &sandbox.url("postgres"),
        "monitor",
        "--watch",
        "--json",
        "--interval",
        "0.3",
    ]);
    let mut child = spawn(cmd);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next = |what: &str| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} update within 30 s"));
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if v["update"] == what {
                return v;
            }
        }
    };

    let first = next("fresh");
    assert!(
        first["snapshot"]["connections"]["data"]["usable_max"]
            .as_i64()
            .unwrap()
            > 0
    );
    sandbox.stop_immediately().unwrap();
    let stale = next("stale");
    assert!(
        stale["age_seconds"].as_f64().is_some(),
        "the last sample's age is kept: {stale}"
    );
    assert!(stale["retry_in_ms"].as_u64().unwrap() > 0);
    sandbox.restart().unwrap();
    let again = next("fresh");
    assert!(again["snapshot"]["connections"]["state"] == "ok", "{again}");

    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}
