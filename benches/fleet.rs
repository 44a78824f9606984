//! Fleet benchmark against a sandbox cluster, in one run:
//!
//! - `pgdeck deploy --fleet` of a 10-migration release to 50 databases with `--concurrency 8`,
//!   against the same deploys one after another: 50 `pgdeck deploy` runs in a row (what a
//!   release to many databases was without fleets), and the fleet with `--concurrency 1`;
//!   target: at least 4x faster than one after another;
//! - `pgdeck status --fleet` of the 50 databases; target: at most 1 s.
//!
//! The sandbox is switched to a server's durability first (`fsync`, `synchronous_commit` on):
//! a deploy on a real server waits on its commits' flushes, which is what concurrency
//! overlaps. Each run gets fresh databases, checkpointed before it starts. Beside each median
//! it prints the CPU time the run cost the server and pgdeck, and from the fleet's the most any
//! concurrency could gain here: its CPU time spread over every core. Run with
//! `cargo bench --bench fleet`. Prints medians; the targets are checked by reading the output,
//! not asserted.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pgdeck::db::{self, sandbox::Sandbox};

const DATABASES: usize = 50;
const MIGRATIONS: usize = 10;
const CONCURRENCY: &str = "8";
const DEPLOY_RUNS: usize = 3;
const STATUS_RUNS: usize = 9;

mod common;

use common::{children_cpu, create_db, median, server_cpu};

fn main() {
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(durable(&sandbox));
    let work = tempfile::tempdir().expect("tempdir");
    let migrations = work.path().join("migrations");
    for i in 0..MIGRATIONS {
        let folder = migrations.join(format!("2025{i:010}_m{i}"));
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(
            folder.join("migration.sql"),
            // Shaped like a Prisma release: a new table with its indexes and foreign key, a
            // column added to an existing one, a little reference data.
            format!(
                "{}CREATE TABLE \"Model{i}\" (\"id\" TEXT NOT NULL, \"ownerId\" INTEGER NOT NULL, \
                 \"name\" TEXT NOT NULL, \"createdAt\" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, \
                 CONSTRAINT \"Model{i}_pkey\" PRIMARY KEY (\"id\"));\n\
                 CREATE UNIQUE INDEX \"Model{i}_name_key\" ON \"Model{i}\"(\"name\");\n\
                 CREATE INDEX \"Model{i}_ownerId_idx\" ON \"Model{i}\"(\"ownerId\");\n\
                 ALTER TABLE \"Model{i}\" ADD CONSTRAINT \"Model{i}_ownerId_fkey\" FOREIGN KEY (\"ownerId\") \
                 REFERENCES \"Owner\"(\"id\") ON DELETE RESTRICT ON UPDATE CASCADE;\n\
                 ALTER TABLE \"Owner\" ADD COLUMN \"model{i}Count\" INTEGER NOT NULL DEFAULT 0;\n\
                 INSERT INTO \"Model{i}\" (\"id\", \"ownerId\", \"name\") \
                 SELECT 'm' || g, 1, 'name ' || g FROM generate_series(1, 20) g;\n",
                if i == 0 {
                    "CREATE TABLE \"Owner\" (\"id\" SERIAL PRIMARY KEY, \"name\" TEXT NOT NULL);\n\
                     INSERT INTO \"Owner\" (\"name\") VALUES ('first');\n"
                } else {
                    ""
                }
            ),
        )
        .expect("write");
    }
    let mut set = 0;
    // A fresh set of databases, and the config naming them as fleet `bench`.
    let mut fresh = || {
        set += 1;
        let names: Vec<String> = (0..DATABASES).map(|i| format!("f{set}_{i:02}")).collect();
        for n in &names {
            rt.block_on(create_db(&sandbox, n));
        }
        let config = work.path().join(format!("pgdeck_{set}.toml"));
        let template = sandbox.url(&names[0]).replace(&names[0], "{database}");
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        std::fs::write(
            &config,
            format!(
                "[environments.base]\ndatabase_url = \"{}\"\n\n[fleets.bench]\nenvironment = \"base\"\n\
                 url_template = \"{template}\"\ndatabases = [{}]\n",
                sandbox.url(&names[0]),
                quoted.join(", ")
            ),
        )
        .expect("write config");
        (config, names)
    };

    let journal = tempfile::tempdir().expect("journal dir");
    // One run of `deploy` on a fresh set: its wall time and the CPU it cost, the server's and
    // pgdeck's. The databases are created and checkpointed first, so no run pays for the
    // writes of the set's CREATE DATABASE, and dropped after, so every run finds the cluster
    // the same size.
    let mut run = |deploy: &mut dyn FnMut(&Path, &[String])| -> Run {
        let (config, names) = fresh();
        rt.block_on(checkpoint(&sandbox));
        let (server, pgdeck) = (server_cpu(&sandbox), children_cpu());
        let start = Instant::now();
        deploy(&config, &names);
        let wall = start.elapsed();
        let run = Run {
            wall,
            server: server_cpu(&sandbox) - server,
            pgdeck: children_cpu() - pgdeck,
        };
        rt.block_on(drop_dbs(&sandbox, &names));
        run
    };
    let fleet = |concurrency: &'static str| {
        let journal = journal.path().to_owned();
        let migrations = migrations.clone();
        move |config: &Path, _: &[String]| {
            succeeds(pgdeck(&journal, config, &migrations).args([
                "deploy",
                "--fleet",
                "bench",
                "--concurrency",
                concurrency,
            ]))
        }
    };
    let mut in_a_row = |config: &Path, names: &[String]| {
        for n in names {
            succeeds(pgdeck(journal.path(), config, &migrations).args([
                "--database-url",
                &sandbox.url(n),
                "deploy",
            ]));
        }
    };
    // The three ways in turn, round after round, so a machine that slows down or speeds up
    // during the bench weighs on each of them alike.
    let (mut concurrent, mut one_at_a_time, mut one_after_another) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..DEPLOY_RUNS {
        concurrent.push(run(&mut fleet(CONCURRENCY)));
        one_at_a_time.push(run(&mut fleet("1")));
        one_after_another.push(run(&mut in_a_row));
    }
    let (concurrent, one_at_a_time, in_a_row) = (
        median_run(concurrent),
        median_run(one_at_a_time),
        median_run(one_after_another),
    );
    let (config, _) = fresh();
    fleet(CONCURRENCY)(&config, &[]);
    let status = median(STATUS_RUNS, || {
        succeeds(pgdeck(journal.path(), &config, &migrations).args(["status", "--fleet", "bench"]));
    });

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\n{DATABASES} databases, {MIGRATIONS} migrations each, {cores} CPU(s), fsync and synchronous_commit on"
    );
    println!(
        "benchmark                                  median   server CPU   pgdeck CPU   target"
    );
    let line = |name: &str, r: &Run, extra: String| {
        println!(
            "{name:<40} {:>8.0} ms {:>9.0} ms {:>9.0} ms   {extra}",
            ms(r.wall),
            ms(r.server),
            ms(r.pgdeck)
        );
    };
    line(
        "50 x `pgdeck deploy`, one after another",
        &in_a_row,
        String::new(),
    );
    line(
        "`deploy --fleet --concurrency 1`",
        &one_at_a_time,
        format!(
            "{:.2}x faster than one after another",
            ratio(in_a_row.wall, one_at_a_time.wall)
        ),
    );
    let speedup = ratio(in_a_row.wall, concurrent.wall);
    line(
        &format!("`deploy --fleet --concurrency {CONCURRENCY}`"),
        &concurrent,
        format!(
            "{speedup:.2}x faster than one after another ({:.2}x vs --concurrency 1); >= 4x {}",
            ratio(one_at_a_time.wall, concurrent.wall),
            if speedup >= 4.0 { "met" } else { "MISSED" }
        ),
    );
    // The fleet cannot finish before its CPU time spread over every core: the most it could
    // gain, whatever it overlaps.
    let cpu = concurrent.server + concurrent.pgdeck;
    println!(
        "{:<40} {:>8.0} ms   ({} ms of CPU over {cores} core(s)): at most {:.2}x faster than one after another",
        "`--concurrency 8` with every core busy",
        ms(cpu) / cores as f64,
        ms(cpu) as u64,
        ratio(in_a_row.wall, cpu) * cores as f64
    );
    println!(
        "{:<40} {:>8.0} ms   <= 1000 ms {}",
        "`status --fleet`",
        ms(status),
        if status <= Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}

/// One measured run: its wall time, and the server's CPU time and pgdeck's over it.
struct Run {
    wall: Duration,
    server: Duration,
    pgdeck: Duration,
}

/// The run of median wall time.
fn median_run(mut runs: Vec<Run>) -> Run {
    runs.sort_by_key(|r| r.wall);
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn succeeds(cmd: &mut Command) {
    let out = cmd.output().expect("run pgdeck");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn drop_dbs(sandbox: &Sandbox, names: &[String]) {
    let admin = db::connect(&sandbox.target("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{}", e.cause));
    for n in names {
        admin
            .client
            .batch_execute(&format!("DROP DATABASE {}", db::quote_ident(n)))
            .await
            .expect("drop database");
    }
}

/// Every dirty page of the server written out, so the next run starts even.
async fn checkpoint(sandbox: &Sandbox) {
    let admin = db::connect(&sandbox.target("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{}", e.cause));
    admin
        .client
        .batch_execute("CHECKPOINT")
        .await
        .expect("CHECKPOINT");
}

/// A server's durability: every commit flushed.
async fn durable(sandbox: &Sandbox) {
    let admin = db::connect(&sandbox.target("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{}", e.cause));
    // ALTER SYSTEM runs outside a transaction: one statement at a time.
    for sql in [
        "ALTER SYSTEM SET fsync = on",
        "ALTER SYSTEM SET synchronous_commit = on",
        "ALTER SYSTEM SET full_page_writes = on",
        "SELECT pg_reload_conf()",
    ] {
        admin.client.batch_execute(sql).await.expect(sql);
    }
}

fn pgdeck(journal: &Path, config: &Path, migrations: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgdeck"));
    cmd.env("PGDECK_JOURNAL_DIR", journal)
        .arg("--config")
        .arg(config)
        .arg("--migrations")
        .arg(migrations);
    cmd
}
