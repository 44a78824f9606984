//! Backup of a generated ~1 GB database: `pgdeck backup create` against bare `pg_dump -Fc` of the
//! same database, alternating, in one run (target: at most 3 % overhead). Run with
//! `cargo bench --bench backup`; set PGDECK_BENCH_BACKUP_MB for another size.

use std::process::Command;
use std::time::{Duration, Instant};

use pgdeck::db::{self, quote_ident, sandbox::Sandbox};

const RUNS: usize = 3;

fn main() {
    let target_mb: i64 = std::env::var("PGDECK_BENCH_BACKUP_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db_bytes = rt.block_on(generate(&sandbox, target_mb));
    let work = tempfile::tempdir().expect("tempdir");
    let url = sandbox.url("bench_backup");
    let pg_dump = newest_pg_dump();
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for run in 0..RUNS {
        let dir = work.path().join(format!("run{run}"));
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_pgdeck"))
            .args([
                "--database-url",
                &url,
                "backup",
                "--dir",
                dir.to_str().expect("utf-8"),
                "create",
            ])
            .output()
            .expect("run pgdeck");
        ours.push(start.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let file = work.path().join(format!("bare{run}.dump"));
        let start = Instant::now();
        let out = Command::new(&pg_dump)
            .args(["--format=custom", "-f", file.to_str().expect("utf-8")])
            .env("PGHOST", sandbox.data_dir())
            .env("PGPORT", sandbox.port().to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", "bench_backup")
            .output()
            .expect("run pg_dump");
        floor.push(start.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&file);
    }
    ours.sort();
    floor.sort();
    let (o, f) = (ours[RUNS / 2], floor[RUNS / 2]);
    let overhead = (o.as_secs_f64() / f.as_secs_f64() - 1.0) * 100.0;
    println!(
        "\nbackup of a {} MB database (median of {RUNS}): pgdeck {:.2} s, bare pg_dump -Fc {:.2} s, overhead {overhead:+.1} % (target <= 3 %: {})",
        db_bytes >> 20,
        o.as_secs_f64(),
        f.as_secs_f64(),
        if overhead <= 3.0 { "met" } else { "MISSED" }
    );
    println!(
        "all runs: pgdeck {:?}, pg_dump {:?}",
        secs(&ours),
        secs(&floor)
    );
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

fn secs(v: &[Duration]) -> Vec<String> {
    v.iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect()
}

/// A database of about `mb` megabytes: an orders table with text payloads, an index, and a
/// smaller users table.
async fn generate(sandbox: &Sandbox, mb: i64) -> i64 {
    let admin = db::connect(&sandbox.target("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{}", e.cause));
    admin
        .client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident("bench_backup")))
        .await
        .expect("create db");
    let s = db::connect(&sandbox.target("bench_backup"))
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
