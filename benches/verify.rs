//! Rehearsal plus drift check of a 150-migration Prisma-style folder, side by side with its
//! floor in the same run:
//!
//! - `pgdeck verify --scratch-url` (140 migrations applied on the target, 10 pending): the
//!   target's schema dumped and loaded into a scratch database, the 10 rehearsed there with
//!   every statement observed, and the 140 built in a second scratch database and compared;
//! - the floor: two databases created on the scratch server, `pg_dump -s | psql` into one,
//!   `psql` applying the 10 pending files there and the 140 applied ones into the other: the
//!   same work with the bare tools, and nothing observed or compared;
//! - `pgdeck verify` on a throwaway cluster of its own (initdb and start included), against the
//!   5 s target.
//!
//! Run with `cargo bench --bench verify`. Prints medians and the ratio to the floor; the targets
//! (at most 1.5x the floor, under 5 s) are checked by reading the output, not asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgdeck::db::sandbox::Sandbox;

const MIGRATIONS: usize = 150;
const PENDING: usize = 10;
const RUNS: usize = 5;

mod common;

use common::{create_db, median};

fn main() {
    let target = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let scratch = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let work = tempfile::tempdir().expect("tempdir");

    // The target: the first 140 migrations applied by pgdeck, 10 more in the folder.
    let applied_dir = work.path().join("applied");
    let all_dir = work.path().join("all");
    let files = write_migrations(&all_dir, MIGRATIONS);
    write_migrations(&applied_dir, MIGRATIONS - PENDING);
    rt.block_on(create_db(&target, "app"));
    let out = pgdeck(&target, &applied_dir, &["deploy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let verify = median(RUNS, || {
        let out = pgdeck(
            &target,
            &all_dir,
            &["verify", "--scratch-url", &scratch.url("postgres")],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    });

    let mut run = 0;
    let floor = median(RUNS, || {
        run += 1;
        let copy = format!("floor_copy_{run}");
        let built = format!("floor_built_{run}");
        // The floor makes its two databases too, as verify does.
        let start = Instant::now();
        rt.block_on(create_db(&scratch, &copy));
        rt.block_on(create_db(&scratch, &built));
        // pg_dump -s | psql
        let mut dump = Command::new("pg_dump")
            .args(["--schema-only", "--no-owner", "--no-privileges", "-h"])
            .arg(target.data_dir())
            .arg("-p")
            .arg(target.port().to_string())
            .args(["-U", "postgres", "app"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("pg_dump");
        let restore = psql_command(&scratch, &copy)
            .stdin(dump.stdout.take().expect("pg_dump stdout"))
            .output()
            .expect("psql");
        assert!(dump.wait().expect("pg_dump").success());
        assert!(
            restore.status.success(),
            "{}",
            String::from_utf8_lossy(&restore.stderr)
        );
        // The pending files on the copy, all the applied ones on an empty database.
        psql_files(&scratch, &copy, &files[MIGRATIONS - PENDING..]);
        psql_files(&scratch, &built, &files[..MIGRATIONS - PENDING]);
        start.elapsed()
    });

    let own = median(RUNS, || {
        let out = pgdeck(&target, &all_dir, &["verify"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    });

    // Where one run's time goes, as its progress says.
    let out = pgdeck(
        &target,
        &all_dir,
        &["verify", "--scratch-url", &scratch.url("postgres")],
    );
    println!(
        "\none run's progress:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "\nbenchmark                                             pgdeck      floor     ratio   target"
    );
    let ratio = verify.as_secs_f64() / floor.as_secs_f64();
    println!(
        "verify, {MIGRATIONS} migrations ({PENDING} pending), scratch server {:>8.1} ms {:>8.1} ms {:>7.2}x   <= 1.50x {}",
        ms(verify),
        ms(floor),
        ratio,
        if ratio <= 1.5 { "met" } else { "MISSED" }
    );
    println!(
        "verify, the same, on a throwaway cluster of its own  {:>8.1} ms          -         -   < 5 s {}",
        ms(own),
        if own < Duration::from_secs(5) {
            "met"
        } else {
            "MISSED"
        }
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Migrations as `prisma migrate dev` writes them: an enum now and then, a table with a text
/// id, a timestamp default and a unique index, a foreign key to the table before, and columns
/// added to earlier tables.
fn write_migrations(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let mut sql = String::new();
            if i % 5 == 0 {
                sql.push_str(&format!(
                    "-- CreateEnum\nCREATE TYPE \"Kind{i}\" AS ENUM ('A', 'B', 'C');\n\n"
                ));
            }
            sql.push_str(&format!(
                "-- CreateTable\nCREATE TABLE \"Model{i}\" (\n    \"id\" TEXT NOT NULL,\n    \
                 \"createdAt\" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    \
                 \"name\" TEXT,\n    \"ref\" TEXT,\n\n    CONSTRAINT \"Model{i}_pkey\" PRIMARY KEY (\"id\")\n);\n\n\
                 -- CreateIndex\nCREATE UNIQUE INDEX \"Model{i}_name_key\" ON \"Model{i}\"(\"name\");\n"
            ));
            if i > 0 {
                sql.push_str(&format!(
                    "\n-- AddForeignKey\nALTER TABLE \"Model{i}\" ADD CONSTRAINT \"Model{i}_ref_fkey\" \
                     FOREIGN KEY (\"ref\") REFERENCES \"Model{}\"(\"id\") ON DELETE SET NULL ON UPDATE CASCADE;\n",
                    i - 1
                ));
            }
            if i % 3 == 2 {
                sql.push_str(&format!(
                    "\n-- AlterTable\nALTER TABLE \"Model{}\" ADD COLUMN \"extra{i}\" INTEGER NOT NULL DEFAULT 0;\n",
                    i - 1
                ));
            }
            let folder = dir.join(format!("2025{:010}_m{i}", i));
            std::fs::create_dir_all(&folder).expect("mkdir");
            let file = folder.join("migration.sql");
            std::fs::write(&file, sql).expect("write");
            file
        })
        .collect()
}

fn pgdeck(target: &Sandbox, migrations: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgdeck"))
        .arg("--database-url")
        .arg(target.url("app"))
        .arg("--migrations")
        .arg(migrations)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pgdeck")
}

fn psql_command(sandbox: &Sandbox, db: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.arg("-h")
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
        .stdout(Stdio::null());
    cmd
}

/// The files in one psql session (with `-1`, one transaction for them all: cheaper than one each).
fn psql_files(sandbox: &Sandbox, db: &str, files: &[PathBuf]) {
    let mut cmd = psql_command(sandbox, db);
    for f in files {
        cmd.arg("-1").arg("-f").arg(f);
    }
    let out = cmd.output().expect("psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
