//! Shared by the fault suites: 20 migrations, and the check that the ledger agrees with the schema.

use super::Migrations;

pub const MIGRATIONS: usize = 20;

/// 20 transactional migrations, each creating table `f<i>` (with an index) and some sleeping.
pub fn twenty() -> Migrations {
    let m = Migrations::new();
    for i in 1..=MIGRATIONS {
        let sleep = if i % 3 == 0 {
            "SELECT pg_sleep(0.05);\n"
        } else {
            ""
        };
        m.add(
            &format!("2025010100{i:04}_f{i}"),
            &format!(
                "CREATE TABLE f{i} (id int PRIMARY KEY, v text);\n{sleep}CREATE INDEX f{i}_v ON f{i} (v);\n"
            ),
        );
    }
    m
}

/// Whether the ledger and the schema agree: every finished row's table exists, no table exists
/// without a finished row, and no migration is finished twice.
pub async fn disagreements(c: &tokio_postgres::Client) -> Vec<String> {
    let has_ledger: bool = c
        .query_one("SELECT to_regclass('_prisma_migrations') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    let finished: Vec<String> = if has_ledger {
        c.query(
            "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    } else {
        Vec::new()
    };
    let mut problems = Vec::new();
    for i in 1..=MIGRATIONS {
        let name = format!("2025010100{i:04}_f{i}");
        let rows = finished.iter().filter(|n| **n == name).count();
        let table: bool = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("f{i}")])
            .await
            .unwrap()
            .get(0);
        match (rows, table) {
            (0, false) | (1, true) => {}
            (0, true) => problems.push(format!("{name}: table without a finished ledger row")),
            (1, false) => problems.push(format!("{name}: finished row without its table")),
            (n, _) => problems.push(format!("{name}: {n} finished rows")),
        }
    }
    problems
}
