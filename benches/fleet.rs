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
//! overlaps. Run with `cargo bench --bench fleet`. Prints medians; the targets are checked by
//! reading the output, not asserted.

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

use common::{create_db, median};

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
    let fleet = |config: &Path, concurrency: &str| {
        let start = Instant::now();
        let out = pgdeck(journal.path(), config, &migrations)
            .args(["deploy", "--fleet", "bench", "--concurrency", concurrency])
            .output()
            .expect("run pgdeck");
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    };
    let concurrent = median(DEPLOY_RUNS, || {
        let (config, _) = fresh();
        fleet(&config, CONCURRENCY)
    });
    let one_at_a_time = median(DEPLOY_RUNS, || {
        let (config, _) = fresh();
        fleet(&config, "1")
    });
    let mut status_config = None;
    let in_a_row = median(DEPLOY_RUNS, || {
        let (config, names) = fresh();
        let start = Instant::now();
        for n in &names {
            let out = pgdeck(journal.path(), &config, &migrations)
                .args(["--database-url", &sandbox.url(n), "deploy"])
                .output()
                .expect("run pgdeck");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        status_config = Some(config);
        start.elapsed()
    });
    let status_config = status_config.expect("a deployed fleet");
    let status = median(STATUS_RUNS, || {
        let out = pgdeck(journal.path(), &status_config, &migrations)
            .args(["status", "--fleet", "bench"])
            .output()
            .expect("run pgdeck");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });

    println!(
        "\n{DATABASES} databases, {MIGRATIONS} migrations each, {} CPU(s), fsync and synchronous_commit on",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("benchmark                                              median      target");
    let line = |name: &str, d: Duration, extra: String| {
        println!("{name:<52} {:>8.0} ms   {extra}", d.as_secs_f64() * 1e3);
    };
    line(
        "50 x `pgdeck deploy`, one after another",
        in_a_row,
        String::new(),
    );
    line(
        "`deploy --fleet --concurrency 1`",
        one_at_a_time,
        format!(
            "{:.2}x faster than one after another",
            in_a_row.as_secs_f64() / one_at_a_time.as_secs_f64()
        ),
    );
    let speedup = in_a_row.as_secs_f64() / concurrent.as_secs_f64();
    line(
        &format!("`deploy --fleet --concurrency {CONCURRENCY}`"),
        concurrent,
        format!(
            "{speedup:.2}x faster than one after another ({:.2}x vs --concurrency 1); >= 4x {}",
            one_at_a_time.as_secs_f64() / concurrent.as_secs_f64(),
            if speedup >= 4.0 { "met" } else { "MISSED" }
        ),
    );
    line(
        "`status --fleet`",
        status,
        format!(
            "<= 1000 ms {}",
            if status <= Duration::from_secs(1) {
                "met"
            } else {
                "MISSED"
            }
        ),
    );
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
