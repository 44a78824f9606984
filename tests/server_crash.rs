//! The server crashes mid-deploy (`pg_ctl stop -m immediate`, then started again), at seeded
//! random moments (`PGDECK_SERVER_CRASH_TRIALS`, default 6): deploy ends with a clean error,
//! the ledger agrees with the schema after recovery, and the next deploy completes. This binary
//! runs its own cluster, since it crashes it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::faults::{MIGRATIONS, disagreements, twenty};
use common::{Run, pgdeck_cmd, spawn};
use pgdeck::db::{self, quote_ident, sandbox::Sandbox};
use rand::{Rng, SeedableRng};

fn deploy(url: &str, m: &common::Migrations) -> Command {
    let mut cmd = pgdeck_cmd();
    cmd.args(["--database-url", url, "--migrations"])
        .arg(m.path())
        .args(["deploy", "--yes"]);
    cmd
}

#[tokio::test]
async fn a_server_crash_mid_deploy_leaves_ledger_and_schema_in_agreement() {
    let trials: u64 = std::env::var("PGDECK_SERVER_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut sandbox =
        Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let m = twenty();
    let mut problems = Vec::new();
    let mut interrupted = 0;
    for trial in 0..trials {
        let name = format!("crash_{trial}");
        let admin = db::connect(&sandbox.target("postgres")).await.unwrap();
        admin
            .client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
            .unwrap();
        drop(admin);
        let url = sandbox.url(&name);
        let mut child = spawn(deploy(&url, &m));
        let delay = Duration::from_millis(rng.random_range(100..450));
        std::thread::sleep(delay);
        sandbox.stop_immediately().unwrap();
        let started = Instant::now();
        let out = loop {
            if child.try_wait().unwrap().is_some() {
                break Run::from(child.wait_with_output().unwrap());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "deploy hung after the crash"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        sandbox.restart().unwrap();
        if out.code != 0 {
            interrupted += 1;
            let lines: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| l.starts_with("error: ") || l.starts_with("hint: "))
                .collect();
            if out.code != 1 || lines.len() != 2 || out.stderr.contains("panicked") {
                problems.push(format!("trial {trial}: not a clean runtime error: {out:?}"));
            }
        }
        let check = db::connect(&sandbox.target(&name)).await.unwrap();
        for p in disagreements(&check.client).await {
            problems.push(format!("trial {trial} (crash after {delay:?}): {p}"));
        }
        let again = common::run(deploy(&url, &m));
        if again.code != 0 {
            problems.push(format!("trial {trial}: the next deploy failed: {again:?}"));
        }
        let finished: i64 = check
            .client
            .query_one(
                "SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(-1);
        if finished != MIGRATIONS as i64 {
            problems.push(format!(
                "trial {trial}: {finished} finished rows after the redeploy"
            ));
        }
    }
    eprintln!(
        "server crash: {trials} crashes, {interrupted} interrupted a deploy, {} problems",
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(interrupted >= 1, "no crash landed mid-deploy");
}
