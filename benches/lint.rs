//! Lint time for large generated migrations. Run with `cargo bench --bench lint`.
//!
//! - "large migration": a 5 MB file shaped like real large migrations: a Prisma-generated schema
//!   part (tables, indexes, foreign keys, column changes) followed by reference data loaded with
//!   multi-row INSERTs. Target: at most 500 ms.
//! - "DDL only": 5 MB of schema statements alone (about 30,000 of them), the worst case: squawk
//!   checks every statement with every rule. Reported, with no target.
//! - 50 MB of the first shape, to show it scales linearly.

use std::time::{Duration, Instant};

use pgdeck::lint::{LintSettings, Sizes, lint_sql};

fn schema(target_bytes: usize) -> String {
    let mut sql = String::with_capacity(target_bytes + 4096);
    let mut i = 0;
    while sql.len() < target_bytes {
        sql.push_str(&format!(
            "-- CreateTable\nCREATE TABLE \"Model{i}\" (\n    \"id\" TEXT NOT NULL,\n    \"name\" TEXT NOT NULL,\n    \
             \"email\" TEXT,\n    \"status\" TEXT NOT NULL DEFAULT 'active',\n    \"amount\" DECIMAL(65,30) NOT NULL DEFAULT 0,\n    \
             \"metadata\" JSONB,\n    \"ownerId\" TEXT NOT NULL,\n    \"createdAt\" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    \
             \"updatedAt\" TIMESTAMP(3) NOT NULL,\n\n    CONSTRAINT \"Model{i}_pkey\" PRIMARY KEY (\"id\")\n);\n\n\
             -- CreateIndex\nCREATE UNIQUE INDEX \"Model{i}_email_key\" ON \"Model{i}\"(\"email\");\n\n\
             -- CreateIndex\nCREATE INDEX \"Model{i}_ownerId_createdAt_idx\" ON \"Model{i}\"(\"ownerId\", \"createdAt\");\n\n\
             -- AddForeignKey\nALTER TABLE \"Model{i}\" ADD CONSTRAINT \"Model{i}_ownerId_fkey\" FOREIGN KEY (\"ownerId\") \
             REFERENCES \"User\"(\"id\") ON DELETE RESTRICT ON UPDATE CASCADE;\n\n\
             -- AlterTable\nALTER TABLE \"User\" ADD COLUMN \"model{i}Count\" INTEGER NOT NULL DEFAULT 0;\n\n"
        ));
        i += 1;
    }
    sql
}

fn large_migration(target_bytes: usize) -> String {
    let mut sql = schema(300 << 10);
    let mut batch = 0;
    while sql.len() < target_bytes {
        sql.push_str("INSERT INTO \"Country\" (\"id\", \"code\", \"name\", \"population\", \"createdAt\") VALUES\n");
        for j in 0..1000 {
            let end = if j == 999 { ";" } else { "," };
            sql.push_str(&format!(
                "    ('c{batch}_{j}', 'C{j:03}', 'Country number {j} of batch {batch}', {}, '2025-01-01 00:00:00'){end}\n",
                batch * 1000 + j
            ));
        }
        batch += 1;
    }
    sql
}

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn main() {
    let settings = LintSettings::default();
    println!("\nfile                     size   statements   findings   median lint time   target");
    let cases: [(&str, String, usize, Option<Duration>); 3] = [
        (
            "large migration",
            large_migration(5 << 20),
            7,
            Some(Duration::from_millis(500)),
        ),
        ("DDL only (worst case)", schema(5 << 20), 5, None),
        ("large migration", large_migration(50 << 20), 1, None),
    ];
    for (name, sql, runs, target) in cases {
        let mut findings = 0;
        let mut statements = 0;
        let took = median(runs, || {
            let r = lint_sql("bench.sql", &sql, &settings, &Sizes::new());
            assert!(r.syntax_errors.is_empty(), "{:?}", r.syntax_errors.first());
            findings = r.findings.len();
            statements = r.statements.len();
        });
        let verdict = match target {
            Some(t) if took <= t => format!("<= {} ms met", t.as_millis()),
            Some(t) => format!("<= {} ms MISSED", t.as_millis()),
            None => String::new(),
        };
        println!(
            "{name:<22} {:>5} MB {:>12} {:>10} {:>15.1} ms   {verdict}",
            sql.len() >> 20,
            statements,
            findings,
            took.as_secs_f64() * 1e3
        );
    }
}
