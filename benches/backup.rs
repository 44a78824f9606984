//! Backups, in one run:
//! - pg_dump mode against bare `pg_dump -Fc` of the same database, alternating, at 200 MB and at
//!   1 GB: wall and CPU time (target: at most 3 % overhead at both sizes);
//! - the safety step before a deploy on the 1 GB database: PITR mode (`backup restore-point`:
//!   the stanza's base backup and the server's archiving checked, a restore point created and its
//!   WAL waited for in the archive) against pg_dump mode (`backup create`, then `backup verify`),
//!   alternating (target: PITR under 1 s and at least 100x faster).
//!
//! Run with `cargo bench --bench backup`; PGDECK_BENCH_BACKUP_MB="200,1024" sets the sizes (the
//! safety step runs on the largest), PGDECK_BENCH_BACKUP_RUNS the runs of each (3). Needs pgBackRest (`apt-get install pgbackrest`).

use std::process::Command;
use std::time::{Duration, Instant};

use pgdeck::db::{self, quote_ident, sandbox::Sandbox};

mod common;

use common::children_cpu;

#[path = "../tests/common/stanza.rs"]
#[allow(dead_code)]
mod stanza;

const TARGET_OVERHEAD: f64 = 3.0;
const TARGET_PITR: Duration = Duration::from_secs(1);
const TARGET_SPEEDUP: f64 = 100.0;

/// Wall and CPU time (user and system, of every process waited for) of one command.
#[derive(Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

fn timed(cmd: &mut Command) -> Took {
    let cpu = children_cpu();
    let start = Instant::now();
    let out = cmd.output().expect("run");
    let took = Took {
        wall: start.elapsed(),
        cpu: children_cpu() - cpu,
    };
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(v: &[Took], f: impl Fn(&Took) -> Duration) -> Duration {
    let mut d: Vec<Duration> = v.iter().map(f).collect();
    d.sort();
    d[d.len() / 2]
}

fn main() {
    let sizes: Vec<i64> = std::env::var("PGDECK_BENCH_BACKUP_MB")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .filter(|v: &Vec<i64>| !v.is_empty())
        .unwrap_or_else(|| vec![200, 1024]);
    let largest = *sizes.iter().max().expect("a size");
    let runs: usize = std::env::var("PGDECK_BENCH_BACKUP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3);
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut bytes = Vec::new();
    for mb in &sizes {
        let started = Instant::now();
        let b = rt.block_on(generate(&sandbox, &db_name(*mb), *mb));
        println!(
            "generated {} ({} MB) in {:.0} s",
            db_name(*mb),
            b >> 20,
            started.elapsed().as_secs_f64()
        );
        bytes.push(b);
    }
    // Archiving on, a stanza, and its first full backup (not measured against anything).
    let started = Instant::now();
    let stanza = rt.block_on(stanza::Stanza::on(
        sandbox,
        "compress-type=lz4\nprocess-max=2\n",
    ));
    println!(
        "pgBackRest stanza created and fully backed up in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let sandbox = &stanza.sandbox;
    let work = tempfile::tempdir().expect("tempdir");
    let journal = work.path().join("journal");
    let config = stanza.write_config();
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .expect("config")
            .replace(&sandbox.url("postgres"), &sandbox.url(&db_name(largest))),
    )
    .expect("write config");
    let pg_dump = newest_pg_dump();

    let mut missed = Vec::new();
    for (mb, db_bytes) in sizes.iter().zip(&bytes) {
        let (db, url) = (db_name(*mb), sandbox.url(&db_name(*mb)));
        let (mut ours, mut floor, mut verify, mut pitr) = (vec![], vec![], vec![], vec![]);
        for run in 0..runs {
            let dir = work.path().join(format!("{db}-run{run}"));
            let pgdeck = |args: &[&str]| {
                let mut c = Command::new(env!("CARGO_BIN_EXE_pgdeck"));
                c.args(["--database-url", &url, "backup", "--dir"])
                    .arg(&dir)
                    .args(args);
                c
            };
            ours.push(timed(&mut pgdeck(&["create"])));
            if *mb == largest {
                verify.push(timed(&mut pgdeck(&["verify"])));
            }
            let file = work.path().join(format!("{db}-bare{run}.dump"));
            floor.push(timed(
                Command::new(&pg_dump)
                    .args(["--format=custom", "-f"])
                    .arg(&file)
                    .env("PGHOST", sandbox.data_dir())
                    .env("PGPORT", sandbox.port().to_string())
                    .env("PGUSER", "postgres")
                    .env("PGDATABASE", &db),
            ));
            if *mb == largest {
                pitr.push(timed(
                    Command::new(env!("CARGO_BIN_EXE_pgdeck"))
                        .env("PGDECK_JOURNAL_DIR", &journal)
                        .arg("--config")
                        .arg(&config)
                        .args(["backup", "restore-point"]),
                ));
            }
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(&file);
        }
        let (o, f) = (median(&ours, |t| t.wall), median(&floor, |t| t.wall));
        let (oc, fc) = (median(&ours, |t| t.cpu), median(&floor, |t| t.cpu));
        let overhead = (o.as_secs_f64() / f.as_secs_f64() - 1.0) * 100.0;
        let cpu_overhead = (oc.as_secs_f64() / fc.as_secs_f64() - 1.0) * 100.0;
        println!(
            "\nbackup of a {} MB database (median of {runs}): pgdeck backup create {:.2} s ({:.2} s CPU), bare pg_dump -Fc {:.2} s ({:.2} s CPU): overhead {overhead:+.1} % wall, {cpu_overhead:+.1} % CPU (target <= {TARGET_OVERHEAD} %: {})",
            db_bytes >> 20,
            o.as_secs_f64(),
            oc.as_secs_f64(),
            f.as_secs_f64(),
            fc.as_secs_f64(),
            if overhead <= TARGET_OVERHEAD {
                "met"
            } else {
                "MISSED"
            }
        );
        println!(
            "  all runs (wall): pgdeck {:?}, pg_dump {:?}",
            secs(&ours),
            secs(&floor)
        );
        if overhead > TARGET_OVERHEAD {
            missed.push(format!("{mb} MB: pg_dump mode overhead {overhead:+.1} %"));
        }
        if *mb == largest {
            let dump_mode: Vec<Duration> = ours
                .iter()
                .zip(&verify)
                .map(|(c, v)| c.wall + v.wall)
                .collect();
            let mut sorted = dump_mode.clone();
            sorted.sort();
            let d = sorted[runs / 2];
            let p = median(&pitr, |t| t.wall);
            let speedup = d.as_secs_f64() / p.as_secs_f64();
            let met = p <= TARGET_PITR && speedup >= TARGET_SPEEDUP;
            println!(
                "\nsafety step before a deploy, {} MB database (median of {runs}): PITR mode (backup restore-point) {:.3} s, pg_dump mode (backup create + backup verify) {:.2} s: {speedup:.0}x (target: PITR under {:.0} s and at least {TARGET_SPEEDUP:.0}x: {})",
                db_bytes >> 20,
                p.as_secs_f64(),
                d.as_secs_f64(),
                TARGET_PITR.as_secs_f64(),
                if met { "met" } else { "MISSED" }
            );
            println!(
                "  all runs (wall): PITR {:?}, pg_dump mode {:?}",
                pitr.iter()
                    .map(|t| format!("{:.3}", t.wall.as_secs_f64()))
                    .collect::<Vec<_>>(),
                dump_mode
                    .iter()
                    .map(|d| format!("{:.2}", d.as_secs_f64()))
                    .collect::<Vec<_>>()
            );
            if !met {
                missed.push(format!(
                    "PITR safety step {:.3} s, {speedup:.0}x",
                    p.as_secs_f64()
                ));
            }
        }
    }
    if missed.is_empty() {
        println!("\nevery target met");
    } else {
        println!("\ntargets missed: {}", missed.join("; "));
    }
}

fn db_name(mb: i64) -> String {
    format!("bench_backup_{mb}")
}

/// The binary pgdeck itself picks: the newest `/usr/lib/postgresql/<v>/bin/pg_dump`, else PATH's.
fn newest_pg_dump() -> std::path::PathBuf {
    let mut found: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let p = e.path().join("bin/pg_dump");
            p.is_file().then_some((v, p))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .unwrap_or_else(|| "pg_dump".into())
}

fn secs(v: &[Took]) -> Vec<String> {
    v.iter()
        .map(|t| format!("{:.2}", t.wall.as_secs_f64()))
        .collect()
}

/// A database of about `mb` megabytes: an orders table with text payloads, an index, and a
/// smaller users table.
async fn generate(sandbox: &Sandbox, name: &str, mb: i64) -> i64 {
    let admin = db::connect(&sandbox.target("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{}", e.cause));
    admin
        .client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
        .await
        .expect("create db");
    let s = db::connect(&sandbox.target(name))
        .await
        .unwrap_or_else(|e| panic!("{}", e.cause));
    s.client
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL, status text NOT NULL, note text, amount numeric(12,2));",
        )
        .await
        .expect("schema");
    // About 330 bytes per order row on disk, heap plus primary key.
    let rows = mb * 1024 * 1024 / 330;
    s.client
        .batch_execute(&format!(
            "INSERT INTO users SELECT g, 'user' || g || '@example.com' FROM generate_series(1, {}) g;
             INSERT INTO orders SELECT g, g % 100000, (ARRAY['new','paid','shipped','returned'])[1 + g % 4],
                    md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) || md5((g * 31)::text) || md5((g * 17)::text) || md5((g * 3)::text) || md5((g * 5)::text),
                    (g % 10000) / 100.0
             FROM generate_series(1, {rows}) g;
             CREATE INDEX orders_user_idx ON orders (user_id);",
            rows / 20
        ))
        .await
        .expect("data");
    s.client
        .batch_execute("VACUUM ANALYZE")
        .await
        .expect("vacuum");
    s.client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .expect("size")
        .get(0)
}
