//! Streaming replicas, for real: each test starts a primary of its own and a standby made from it
//! with `pg_basebackup -R` on its own port. Replay paused on the standby (`pg_wal_replay_pause()`)
//! makes its lag real: the monitor shows it, and a deploy waits for it between migrations,
//! resumes when replay resumes, and gives up after `replica_lag_wait` with exit code 17. A
//! deploy pointed at the standby is refused; the monitor works there, read-only.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use pgdeck::cli::exit;
use pgdeck::db::{self, sandbox::Sandbox};
use serde_json::Value;

/// A primary and its standby, both throwaway.
struct Replicated {
    primary: Sandbox,
    standby: Sandbox,
}

impl Replicated {
    async fn start() -> Replicated {
        let primary = Sandbox::start_temporary().unwrap_or_else(|e| {
            panic!(
                "replica tests need PostgreSQL: {}\nhint: {}",
                e.cause, e.hint
            )
        });
        let standby = primary
            .start_standby("standby1")
            .unwrap_or_else(|e| panic!("standby: {}\nhint: {}", e.cause, e.hint));
        let r = Replicated { primary, standby };
        r.wait_streaming().await;
        r
    }

    async fn primary(&self) -> tokio_postgres::Client {
        db::connect(
            &self
                .primary
                .target("postgres")
                .with_application_name("pgdeck-test"),
        )
        .await
        .unwrap_or_else(|e| panic!("primary: {}", e.cause))
        .client
    }

    async fn standby(&self) -> tokio_postgres::Client {
        db::connect(
            &self
                .standby
                .target("postgres")
                .with_application_name("pgdeck-test"),
        )
        .await
        .unwrap_or_else(|e| panic!("standby: {}", e.cause))
        .client
    }

    async fn wait_streaming(&self) {
        let p = self.primary().await;
        wait_for("the standby to stream", Duration::from_secs(60), || async {
            p.query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1' AND state = 'streaming'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
        })
        .await;
    }

    async fn pause_replay(&self) {
        let s = self.standby().await;
        s.batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .unwrap();
        wait_for("replay to pause", Duration::from_secs(30), || async {
            s.query_one("SELECT pg_get_wal_replay_pause_state() = 'paused'", &[])
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false)
        })
        .await;
    }

    async fn resume_replay(&self) {
        self.standby()
            .await
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .unwrap();
    }

    /// A config file with one environment on the primary's `postgres` database.
    fn config(&self, m: &Migrations, settings: &str) -> std::path::PathBuf {
        let path = m.path().join("pgdeck.toml");
        std::fs::write(
            &path,
            format!(
                "[environments.prod]\ndatabase_url = \"{}\"\n{settings}\n",
                self.primary.url("postgres")
            ),
        )
        .unwrap();
        path
    }
}

fn cmd(config: &std::path::Path, m: &Migrations, args: &[&str]) -> std::process::Command {
    let mut c = pgdeck_cmd();
    c.arg("--config")
        .arg(config)
        .args(["--env", "prod", "--migrations"])
        .arg(m.path())
        .args(args);
    c
}

/// WAL the standby will have to replay: a few MB of rows.
const BIG: &str =
    "CREATE TABLE big AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 60000) g;";

fn two_migrations() -> Migrations {
    let m = Migrations::new();
    m.add("20240101000000_big", BIG);
    m.add("20240102000000_small", "CREATE TABLE small (id int);");
    m
}

async fn applied(r: &Replicated) -> Vec<String> {
    r.primary()
        .await
        .query(
            "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL ORDER BY 1",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_shows_the_standby_with_its_lag_and_works_on_the_standby_read_only() {
    let r = Replicated::start().await;
    let m = Migrations::new();
    let config = r.config(&m, "replica_lag_alert = \"1MB\"");
    r.pause_replay().await;
    let p = r.primary().await;
    p.batch_execute(BIG).await.unwrap();
    wait_for("the standby to receive the WAL", Duration::from_secs(30), || async {
        p.query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn) < 65536 FROM pg_stat_replication",
            &[],
        )
        .await
        .map(|r| r.get::<_, bool>(0))
        .unwrap_or(false)
    })
    .await;

    let run_ = run(cmd(&config, &m, &["monitor", "--once", "--json"]));
    assert_eq!(run_.code, 0, "{}", run_.stderr);
    let s: Value = serde_json::from_str::<Value>(&run_.stdout).unwrap()["snapshot"].clone();
    let repl = &s["replication"];
    assert_eq!(repl["state"], "ok", "{repl}");
    assert_eq!(repl["data"]["in_recovery"], false);
    let standbys = repl["data"]["standbys"].as_array().unwrap();
    assert_eq!(standbys.len(), 1, "{repl}");
    let st = &standbys[0];
    assert_eq!(st["name"], "standby1");
    assert_eq!(st["state"], "streaming");
    assert_eq!(st["sync_state"], "async");
    let replay = st["replay_lag_bytes"].as_i64().unwrap();
    assert!(replay > 1024 * 1024, "replay paused: lag in MB, {st}");
    // Sent and flushed WAL keep up; only replay is paused.
    assert!(st["flush_lag_bytes"].as_i64().unwrap() < replay, "{st}");
    let alerts: Vec<&str> = s["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["text"].as_str())
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a.starts_with("replica standby1 replay lag")),
        "{alerts:?}"
    );

    // The human form shows the same.
    let text = run(cmd(&config, &m, &["monitor", "--once"]));
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("REPLICATION"), "{}", text.stdout);
    assert!(text.stdout.contains("standby1"), "{}", text.stdout);
    assert!(
        text.stdout.contains("ALERT: replica standby1"),
        "{}",
        text.stdout
    );

    // On the standby itself: every pane works, and it says it is one.
    let mut on_standby = pgdeck_cmd();
    on_standby
        .arg("--database-url")
        .arg(r.standby.url("postgres"))
        .args(["monitor", "--once", "--json"]);
    let sb = run(on_standby);
    assert_eq!(sb.code, 0, "{}", sb.stderr);
    let s: Value = serde_json::from_str::<Value>(&sb.stdout).unwrap()["snapshot"].clone();
    for pane in [
        "connections",
        "long_running",
        "blocking",
        "tables",
        "progress",
        "replication",
    ] {
        assert_eq!(s[pane]["state"], "ok", "{pane} on the standby: {}", s[pane]);
    }
    assert_eq!(s["replication"]["data"]["in_recovery"], true);
    assert_eq!(
        s["replication"]["data"]["recovery"]["replay_paused"], true,
        "{}",
        s["replication"]
    );
    r.resume_replay().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_waits_while_the_standby_replays_and_goes_on_when_it_caught_up() {
    let r = Replicated::start().await;
    let m = two_migrations();
    let config = r.config(
        &m,
        "max_replica_lag = \"256kB\"\nreplica_lag_wait = \"120s\"",
    );
    r.pause_replay().await;

    let mut child = cmd(&config, &m, &["deploy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let waiting = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no wait for the replica:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if line.contains("waiting for replica standby1") {
            break line;
        }
    };
    // "waiting for replica standby1: replay lag N MB / Ts, waited Ws (max_replica_lag 256.0 kB, ...)"
    assert!(waiting.contains("replay lag"), "{waiting}");
    assert!(waiting.contains("MB"), "{waiting}");
    assert!(waiting.contains("waited"), "{waiting}");
    assert!(waiting.contains("max_replica_lag 256.0 kB"), "{waiting}");
    // It waits before the second migration: the first is applied, the second is not.
    assert_eq!(applied(&r).await, ["20240101000000_big"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        applied(&r).await,
        ["20240101000000_big"],
        "still waiting while replay is paused"
    );
    assert!(child.try_wait().unwrap().is_none(), "deploy still running");

    r.resume_replay().await;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
        seen.push(line);
    }
    assert_eq!(status.code(), Some(0), "{}", seen.join("\n"));
    assert!(
        seen.iter()
            .any(|l| l.contains("replica standby1 caught up after")),
        "{}",
        seen.join("\n")
    );
    assert_eq!(
        applied(&r).await,
        ["20240101000000_big", "20240102000000_small"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_gives_up_waiting_for_a_standby_with_exit_code_17_and_json_events() {
    let r = Replicated::start().await;
    let m = two_migrations();
    let config = r.config(&m, "max_replica_lag = \"256kB\"\nreplica_lag_wait = \"2s\"");
    r.pause_replay().await;

    let out = run(cmd(&config, &m, &["deploy", "--json"]));
    assert_eq!(out.code, exit::REPLICA_LAG as i32, "{}", out.stderr);
    let error: Value = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["ok"] == false)
        .unwrap_or_else(|| panic!("a JSON error:\n{}", out.stdout));
    assert_eq!(error["exit_code"], 17);
    let cause = error["error"].as_str().unwrap();
    assert!(
        cause.contains("gave up waiting for replica standby1 after"),
        "{cause}"
    );
    assert!(
        cause.contains("20240102000000_small did not start"),
        "{cause}"
    );
    assert!(
        error["hint"].as_str().unwrap().contains("replica_lag_wait"),
        "{error}"
    );

    // The JSON events carry the wait, with the lag and how long it waited.
    let waits: Vec<Value> = out
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "waiting_for_replica")
        .collect();
    assert!(!waits.is_empty(), "{}", out.stderr);
    assert_eq!(waits[0]["replica"], "standby1");
    assert_eq!(waits[0]["next"], "20240102000000_small");
    assert!(waits[0]["replay_lag_bytes"].as_i64().unwrap() > 256 * 1024);
    assert_eq!(waits[0]["max_lag_bytes"], 256 * 1024);
    assert_eq!(waits[0]["wait_limit_ms"], 2000);
    assert_eq!(applied(&r).await, ["20240101000000_big"]);

    // A standby already behind holds back the first migration too. Without --json: one line
    // of cause, one of hint.
    let m = Migrations::new();
    m.add("20240103000000_next", "CREATE TABLE next (id int);");
    let plain = run(cmd(&config, &m, &["deploy"]));
    plain.assert_clean_error(exit::REPLICA_LAG as i32);
    assert!(
        plain
            .stderr
            .contains("waiting for replica standby1: replay lag"),
        "{}",
        plain.stderr
    );
    assert!(
        plain.stderr.contains("20240103000000_next did not start"),
        "{}",
        plain.stderr
    );
    assert_eq!(applied(&r).await, ["20240101000000_big"]);
    r.resume_replay().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_pointed_at_the_standby_is_refused_and_changes_nothing() {
    let r = Replicated::start().await;
    let m = two_migrations();
    let mut c = pgdeck_cmd();
    c.arg("--database-url")
        .arg(r.standby.url("postgres"))
        .arg("--migrations")
        .arg(m.path())
        .arg("deploy");
    let out = run(c);
    out.assert_clean_error(exit::REFUSED as i32);
    assert!(out.stderr.contains("is a standby"), "{}", out.stderr);
    assert!(out.stderr.contains("pg_is_in_recovery()"), "{}", out.stderr);
    assert!(out.stderr.contains("point"), "{}", out.stderr);
    let mut j = pgdeck_cmd();
    j.arg("--database-url")
        .arg(r.standby.url("postgres"))
        .arg("--migrations")
        .arg(m.path())
        .args(["deploy", "--json"]);
    let out = run(j);
    assert_eq!(out.code, exit::REFUSED as i32, "{}", out.stderr);
    let last: Value = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["ok"] == false)
        .unwrap_or_else(|| panic!("a JSON refusal:\n{}\n{}", out.stdout, out.stderr));
    assert_eq!(last["guard"], "standby", "{last}");
    // Nothing reached the primary either.
    assert!(applied(&r).await.is_empty());
}
