//! `pgdeck health` against a real cluster and a small HTTP server inside the test that serves an
//! application's health endpoint and Prometheus metrics. The metrics advance with time at rates
//! the test sets, so each phase drives one verdict: healthy, a mild error rate, an error spike,
//! slower requests; plus failing endpoints, a probe stuck behind a lock and the baseline round trip.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use pgdeck::cli::exit;
use serde_json::Value;

/// How the fake application behaves now.
#[derive(Clone, Copy)]
struct Phase {
    requests_per_sec: f64,
    errors_per_sec: f64,
    /// Share of requests in each latency bucket (le 0.05, 0.1, 0.25, 0.5, +Inf).
    latency_mix: [f64; 5],
    health_status: u16,
    health_body: &'static str,
    health_delay: Duration,
}

const HEALTHY: Phase = Phase {
    requests_per_sec: 20.0,
    errors_per_sec: 0.0,
    latency_mix: [1.0, 0.0, 0.0, 0.0, 0.0],
    health_status: 200,
    health_body: "{\"status\":\"ok\"}",
    health_delay: Duration::ZERO,
};

const BOUNDS: [&str; 5] = ["0.05", "0.1", "0.25", "0.5", "+Inf"];

struct Counters {
    phase: Phase,
    since: Instant,
    ok: f64,
    errors: f64,
    buckets: [f64; 5],
}

impl Counters {
    /// Adds what the current phase did since the last call.
    fn advance(&mut self) {
        let dt = self.since.elapsed().as_secs_f64();
        self.since = Instant::now();
        let p = self.phase;
        self.ok += (p.requests_per_sec - p.errors_per_sec) * dt;
        self.errors += p.errors_per_sec * dt;
        for (b, share) in self.buckets.iter_mut().zip(p.latency_mix) {
            *b += share * p.requests_per_sec * dt;
        }
    }

    fn exposition(&mut self) -> String {
        self.advance();
        let mut out = String::from(
            "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n",
        );
        out += &format!(
            "http_requests_total{{route=\"/api\",status=\"200\"}} {:.3}\n",
            self.ok
        );
        out += &format!(
            "http_requests_total{{route=\"/api\",status=\"500\"}} {:.3}\n",
            self.errors
        );
        out += "# TYPE http_request_duration_seconds histogram\n";
        let mut cumulative = 0.0;
        for (bound, n) in BOUNDS.iter().zip(self.buckets) {
            cumulative += n;
            out += &format!(
                "http_request_duration_seconds_bucket{{route=\"/api\",le=\"{bound}\"}} {cumulative:.3}\n"
            );
        }
        out += &format!("http_request_duration_seconds_count{{route=\"/api\"}} {cumulative:.3}\n");
        out
    }
}

/// The fake application on a free local port.
struct App {
    port: u16,
    state: Arc<Mutex<Counters>>,
}

impl App {
    fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Counters {
            phase: HEALTHY,
            since: Instant::now(),
            ok: 1000.0,
            errors: 0.0,
            buckets: [1000.0, 0.0, 0.0, 0.0, 0.0],
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    // Skip the headers.
                    let mut h = String::new();
                    while reader.read_line(&mut h).is_ok() && h != "\r\n" && !h.is_empty() {
                        h.clear();
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let (status, body) = {
                        let mut s = shared.lock().unwrap();
                        match path.as_str() {
                            "/metrics" => (200, s.exposition()),
                            "/health" => {
                                let p = s.phase;
                                drop(s);
                                std::thread::sleep(p.health_delay);
                                (p.health_status, p.health_body.to_owned())
                            }
                            _ => (404, "not found".to_owned()),
                        }
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        App { port, state }
    }

    fn set(&self, phase: Phase) {
        let mut s = self.state.lock().unwrap();
        s.advance();
        s.phase = phase;
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn config(db: &TestDb, m: &Migrations, app: &App, extra: &str) -> ConfigEnv {
    ConfigEnv::write(
        db,
        m,
        "production",
        &format!(
            "[environments.production.health]\nprobe_samples = 5\n{extra}\n\
             [environments.production.health.metrics]\nurl = \"{}\"\n\
             [[environments.production.health.endpoints]]\nname = \"api\"\nurl = \"{}\"\n\
             body_contains = \"ok\"\nslow = \"300ms\"\n",
            app.url("/metrics"),
            app.url("/health")
        ),
    )
}

/// Runs `health --json` and returns the exit code and each check's level by kind.
fn health(cfg: &ConfigEnv, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["health", "--json", "--window", "1"];
    all.extend_from_slice(args);
    let r = run(cfg.cmd(&all));
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    (r.code, v)
}

fn level(report: &Value, kind: &str) -> String {
    let checks = report["report"]["checks"].as_array().unwrap();
    let found: Vec<&Value> = checks.iter().filter(|c| c["kind"] == kind).collect();
    assert!(!found.is_empty(), "no {kind} check in {report:#}");
    found
        .iter()
        .map(|c| c["level"].as_str().unwrap())
        .max_by_key(|l| ["ok", "warn", "alert"].iter().position(|x| x == l))
        .unwrap()
        .to_owned()
}

#[test]
fn metrics_drive_ok_warn_and_alert_against_the_baseline() {
    let db = futures_block_on(fresh_db("health_verdicts"));
    let m = Migrations::new();
    let app = App::start();
    let baseline = m.path().join("baseline.json");
    let baseline_arg = baseline.to_str().unwrap();

    // Healthy: the baseline is captured and holds what was measured.
    let (code, v) = health(
        &config(&db, &m, &app, ""),
        &["--save-baseline", baseline_arg],
    );
    assert_eq!(code, i32::from(exit::OK), "{v:#}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&baseline).unwrap()).unwrap();
    assert_eq!(saved["error_rate"], 0.0);
    let base_p95 = saved["latency_p95"].as_f64().unwrap();
    assert!((0.04..0.05).contains(&base_p95), "{saved:#}");
    assert!(saved["probes_p95_ms"]["SELECT 1"].as_f64().is_some());
    assert!(saved["endpoints_ms"]["api"].as_f64().is_some());

    // The verdicts below are the metrics' alone: a sub-10 ms probe on a loaded machine can be
    // several times its baseline, which the probe test covers on its own.
    let cfg = config(&db, &m, &app, "probes = []");
    let (code, v) = health(&cfg, &["--save-baseline", baseline_arg]);
    assert_eq!(code, i32::from(exit::OK), "{v:#}");
    let (code, v) = health(&cfg, &["--baseline", baseline_arg]);
    assert_eq!(code, i32::from(exit::OK), "{v:#}");
    assert!(v["report"]["compared_with"].is_string());

    // 0.5 % errors at 20 requests a second: above the 0.1 % target, 6 a minute: warn.
    app.set(Phase {
        errors_per_sec: 0.1,
        ..HEALTHY
    });
    let (code, v) = health(&cfg, &["--baseline", baseline_arg]);
    assert_eq!(code, i32::from(exit::HEALTH_WARN), "{v:#}");
    assert_eq!(level(&v, "error_rate"), "warn");
    assert_eq!(level(&v, "errors_5xx"), "warn");
    assert_eq!(level(&v, "latency_p95"), "ok");

    // A spike: 10 % errors, 120 a minute.
    app.set(Phase {
        errors_per_sec: 2.0,
        ..HEALTHY
    });
    let (code, v) = health(&cfg, &["--baseline", baseline_arg]);
    assert_eq!(code, i32::from(exit::HEALTH_ALERT), "{v:#}");
    assert_eq!(level(&v, "error_rate"), "alert");
    assert_eq!(level(&v, "errors_5xx"), "alert");
    assert_eq!(v["report"]["verdict"], "alert");

    // Slower: p95 about 1.8x the baseline's is a warning...
    app.set(Phase {
        latency_mix: [0.8, 0.2, 0.0, 0.0, 0.0],
        ..HEALTHY
    });
    let (code, v) = health(&cfg, &["--baseline", baseline_arg]);
    assert_eq!(code, i32::from(exit::HEALTH_WARN), "{v:#}");
    assert_eq!(level(&v, "latency_p95"), "warn");
    assert_eq!(level(&v, "error_rate"), "ok");

    // ...and most requests in the 250-500 ms bucket is an alert, with the comparison spelled out.
    app.set(Phase {
        latency_mix: [0.1, 0.1, 0.2, 0.6, 0.0],
        ..HEALTHY
    });
    let r = run(cfg.cmd(&["health", "--window", "1", "--baseline", baseline_arg]));
    assert_eq!(r.code, i32::from(exit::HEALTH_ALERT), "{r:?}");
    assert!(
        r.stdout.contains("ALERT  latency_p95") && r.stdout.contains("x the baseline's"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("verdict: ALERT"), "{}", r.stdout);
}

#[test]
fn failing_endpoints_and_unreadable_metrics_are_alerts_and_a_slow_one_warns() {
    let db = futures_block_on(fresh_db("health_endpoints"));
    let m = Migrations::new();
    let app = App::start();
    let cfg = config(&db, &m, &app, "");

    app.set(Phase {
        health_delay: Duration::from_millis(600),
        ..HEALTHY
    });
    let (code, v) = health(&cfg, &[]);
    assert_eq!(code, i32::from(exit::HEALTH_WARN), "{v:#}");
    assert_eq!(level(&v, "endpoint"), "warn");

    app.set(Phase {
        health_status: 503,
        ..HEALTHY
    });
    let (code, v) = health(&cfg, &[]);
    assert_eq!(code, i32::from(exit::HEALTH_ALERT), "{v:#}");
    assert_eq!(level(&v, "endpoint"), "alert");

    app.set(Phase {
        health_body: "{\"status\":\"degraded\"}",
        ..HEALTHY
    });
    let (code, v) = health(&cfg, &[]);
    assert_eq!(code, i32::from(exit::HEALTH_ALERT), "{v:#}");
    let reasons = v["report"]["checks"][0]["reasons"].to_string();
    assert!(reasons.contains("does not contain"), "{reasons}");

    // Nothing listens on the metrics port any more.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "http://127.0.0.1:{}/metrics",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let text = std::fs::read_to_string(m.path().join("pgdeck.toml"))
        .unwrap()
        .replace(&app.url("/metrics"), &dead);
    std::fs::write(m.path().join("pgdeck.toml"), text).unwrap();
    app.set(HEALTHY);
    let (code, v) = health(&cfg, &[]);
    assert_eq!(code, i32::from(exit::HEALTH_ALERT), "{v:#}");
    assert_eq!(level(&v, "metrics"), "alert");
    assert_eq!(level(&v, "endpoint"), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_stuck_behind_a_lock_is_an_alert_and_no_baseline_is_saved() {
    let db = fresh_db("health_probe").await;
    db.exec("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);")
        .await;
    let m = Migrations::new();
    let app = App::start();
    let cfg = config(
        &db,
        &m,
        &app,
        "probes = [\"SELECT 1\", \"SELECT count(*) FROM orders\", \"SELECT count(*) FROM no_such_table\"]\nprobe_timeout = \"300ms\"",
    );
    let (code, v) = tokio::task::block_in_place(|| health(&cfg, &[]));
    assert_eq!(code, i32::from(exit::OK), "{v:#}");
    let skipped = v["report"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "SELECT count(*) FROM no_such_table")
        .unwrap()
        .clone();
    assert_eq!(skipped["value"], "skipped", "{skipped:#}");

    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;")
        .await
        .unwrap();
    let baseline = m.path().join("baseline.json");
    let r = tokio::task::block_in_place(|| {
        run(cfg.cmd(&[
            "health",
            "--window",
            "1",
            "--save-baseline",
            baseline.to_str().unwrap(),
        ]))
    });
    assert_eq!(r.code, i32::from(exit::HEALTH_ALERT), "{r:?}");
    assert!(
        r.stdout.contains("ALERT  db_probe") && r.stdout.contains("did not answer within 300ms"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("baseline not saved"), "{}", r.stderr);
    assert!(!baseline.exists());
    holder.batch_execute("ROLLBACK").await.unwrap();
}

#[test]
fn a_bad_baseline_or_window_is_a_clean_usage_error() {
    let db = futures_block_on(fresh_db("health_bad_input"));
    let m = Migrations::new();
    let app = App::start();
    let cfg = config(&db, &m, &app, "");
    let bogus = m.path().join("bogus.json");
    std::fs::write(&bogus, "not json").unwrap();
    run(cfg.cmd(&["health", "--baseline", bogus.to_str().unwrap()]))
        .assert_clean_error(i32::from(exit::USAGE));
    run(cfg.cmd(&["health", "--window", "0"])).assert_clean_error(i32::from(exit::USAGE));
    let cfg = ConfigEnv::write(
        &db,
        &m,
        "production",
        "[environments.production.health.metrics]\nurl = \"ftp://example.com/metrics\"",
    );
    run(cfg.cmd(&["health"])).assert_clean_error(i32::from(exit::USAGE));
}

fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
