//! Faults during deploy. A deploy of 20 migrations is SIGKILLed at seeded random moments
//! (`PGDECK_FAULT_TRIALS`, default 50; `PGDECK_FAULT_SEED`, default 7): after each kill the
//! ledger must agree with the schema and the next deploy must complete. Then eight deploys start
//! at once. The figures are in docs/RELIABILITY.md.

mod common;

use std::time::{Duration, Instant};

use common::faults::{MIGRATIONS, disagreements, twenty};
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_killed_at_random_moments_leaves_ledger_and_schema_in_agreement() {
    let trials = env_number("PGDECK_FAULT_TRIALS", 50);
    let seed = env_number("PGDECK_FAULT_SEED", 7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let m = twenty();
    // How long a whole deploy takes here, to spread the kills over it: the quickest of three,
    // so that a first run slowed by a cold cache or a busy machine does not spread the kills
    // past the end of most deploys.
    let mut full = Duration::MAX;
    for n in 0..3 {
        let db = fresh_db(&format!("faults_calibrate_{n}")).await;
        let start = Instant::now();
        assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
        full = full.min(start.elapsed());
    }

    let mut all_problems = Vec::new();
    let mut killed_mid_way = 0;
    for trial in 0..trials {
        let db = fresh_db(&format!("faults_kill_{trial}")).await;
        let delay = Duration::from_micros(rng.random_range(0..full.as_micros() as u64));
        let mut child = spawn(pgdeck(&db, m.path(), &["deploy", "--yes"]));
        std::thread::sleep(delay);
        let finished_before = child.try_wait().unwrap().is_some();
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
        db.wait_for_pgdeck_sessions_to_end().await;
        let applied_at_kill = MIGRATIONS - count_missing(&db).await;
        if !finished_before && applied_at_kill < MIGRATIONS {
            killed_mid_way += 1;
        }
        for p in disagreements(&db.client().await).await {
            all_problems.push(format!("trial {trial} (kill after {delay:?}): {p}"));
        }
        let again = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
        if again.code != 0 {
            all_problems.push(format!("trial {trial}: the next deploy failed: {again:?}"));
        }
        for p in disagreements(&db.client().await).await {
            all_problems.push(format!("trial {trial} after redeploy: {p}"));
        }
        if count_missing(&db).await != 0 {
            all_problems.push(format!("trial {trial}: the redeploy left migrations out"));
        }
    }
    eprintln!(
        "crash consistency: {trials} kills (seed {seed}, spread over {full:?}), {killed_mid_way} mid-deploy, {} disagreements",
        all_problems.len()
    );
    assert!(all_problems.is_empty(), "{}", all_problems.join("\n"));
    assert!(
        killed_mid_way * 2 >= trials as usize,
        "too few kills landed mid-deploy ({killed_mid_way} of {trials}) to mean anything"
    );
}

async fn count_missing(db: &TestDb) -> usize {
    let c = db.client().await;
    let mut missing = 0;
    for i in 1..=MIGRATIONS {
        let exists: bool = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("f{i}")])
            .await
            .unwrap()
            .get(0);
        if !exists {
            missing += 1;
        }
    }
    missing
}

#[tokio::test]
async fn eight_deploys_at_once_apply_each_migration_exactly_once() {
    let db = fresh_db("faults_eight").await;
    let m = twenty();
    let children: Vec<_> = (0..8)
        .map(|_| spawn(pgdeck(&db, m.path(), &["deploy", "--yes"])))
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()))
        .collect();
    for r in &runs {
        assert_eq!(r.code, 0, "{r:?}");
        assert!(!r.stderr.contains("panicked"));
    }
    let applied: usize = runs
        .iter()
        .map(|r| r.stderr.matches("applied in").count())
        .sum();
    let nothing = runs
        .iter()
        .filter(|r| r.stdout.contains("nothing to deploy"))
        .count();
    assert!(nothing >= 1, "{runs:?}");
    let rows = db.ledger().await;
    assert_eq!(rows.len(), MIGRATIONS, "{rows:?}");
    assert!(rows.iter().all(|r| r.finished && !r.rolled_back));
    assert!(disagreements(&db.client().await).await.is_empty());
    eprintln!(
        "eight deploys: {nothing} found nothing to do; {applied} migration applications in all"
    );
}
