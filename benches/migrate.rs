//! Side-by-side benchmark against a sandbox cluster, each pgdeck figure beside its floor:
//!
//! - `pgdeck status` with 1,000 applied migrations vs `psql` reading the same ledger rows;
//! - `pgdeck deploy` of 500 trivial migrations vs `psql` running the same statements, one
//!   transaction each, in one session.
//!
//! Run with `cargo bench --bench migrate`. Prints medians and the ratio to the floor; the targets
//! (at most 1.5x each) are checked by reading the output, not asserted.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pgdeck::db::sandbox::Sandbox;

const STATUS_MIGRATIONS: usize = 1_000;
const DEPLOY_MIGRATIONS: usize = 500;
const STATUS_RUNS: usize = 15;
const DEPLOY_RUNS: usize = 5;

mod common;

use common::{create_db, median};

fn main() {
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let work = tempfile::tempdir().expect("tempdir");

    // --- status -------------------------------------------------------------------------
    let status_dir = work.path().join("status_migrations");
    write_migrations(&status_dir, STATUS_MIGRATIONS, |i| {
        format!("CREATE TABLE s_{i} (id int);\n")
    });
    rt.block_on(create_db(&sandbox, "bench_status"));
    assert!(
        pgdeck(&sandbox, "bench_status", &status_dir, &["deploy", "--yes"])
            .status
            .success()
    );
    let ledger_sql = "SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, \
                      applied_steps_count FROM _prisma_migrations ORDER BY started_at ASC";
    let status = median(STATUS_RUNS, || {
        let out = pgdeck(&sandbox, "bench_status", &status_dir, &["status"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let status_floor = median(STATUS_RUNS, || {
        psql(&sandbox, "bench_status", &["-c", ledger_sql])
    });

    // --- deploy -------------------------------------------------------------------------
    let deploy_dir = work.path().join("deploy_migrations");
    write_migrations(&deploy_dir, DEPLOY_MIGRATIONS, |i| {
        format!("CREATE TABLE d_{i} (id int);\n")
    });
    let floor_script = work.path().join("floor.sql");
    let script: String = (0..DEPLOY_MIGRATIONS)
        .map(|i| format!("BEGIN;\nCREATE TABLE d_{i} (id int);\nCOMMIT;\n"))
        .collect();
    std::fs::write(&floor_script, script).expect("write floor script");
    let mut run = 0;
    let deploy = median(DEPLOY_RUNS, || {
        run += 1;
        let db = format!("bench_deploy_{run}");
        rt.block_on(create_db(&sandbox, &db));
        let start = Instant::now();
        let out = pgdeck(&sandbox, &db, &deploy_dir, &["deploy", "--yes"]);
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    });
    let mut run = 0;
    let deploy_floor = median(DEPLOY_RUNS, || {
        run += 1;
        let db = format!("bench_floor_{run}");
        rt.block_on(create_db(&sandbox, &db));
        let start = Instant::now();
        psql(
            &sandbox,
            &db,
            &["-f", floor_script.to_str().expect("utf-8 path")],
        );
        start.elapsed()
    });

    println!(
        "\nbenchmark                                   pgdeck     floor (psql)   ratio   target"
    );
    report(
        &format!("status, {STATUS_MIGRATIONS} applied migrations"),
        status,
        status_floor,
    );
    report(
        &format!("deploy, {DEPLOY_MIGRATIONS} trivial migrations"),
        deploy,
        deploy_floor,
    );
}

fn report(name: &str, ours: Duration, floor: Duration) {
    let ratio = ours.as_secs_f64() / floor.as_secs_f64();
    println!(
        "{name:<40} {:>8.1} ms {:>10.1} ms {:>8.2}x   <= 1.50x {}",
        ours.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3,
        ratio,
        if ratio <= 1.5 { "met" } else { "MISSED" }
    );
}

fn write_migrations(dir: &Path, n: usize, sql: impl Fn(usize) -> String) {
    for i in 0..n {
        let folder = dir.join(format!("2025{:010}_m{i}", i));
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(folder.join("migration.sql"), sql(i)).expect("write");
    }
}

fn pgdeck(sandbox: &Sandbox, db: &str, migrations: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgdeck"))
        .arg("--database-url")
        .arg(sandbox.url(db))
        .arg("--migrations")
        .arg(migrations)
        .args(args)
        .output()
        .expect("run pgdeck")
}

fn psql(sandbox: &Sandbox, db: &str, args: &[&str]) {
    let out = Command::new("psql")
        .arg("-h")
        .arg(sandbox.data_dir())
        .arg("-p")
        .arg(sandbox.port().to_string())
        .args([
            "-U",
            "postgres",
            "-d",
            db,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(args)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
