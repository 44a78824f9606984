//! `_prisma_migrations`: Prisma's ledger, shared with `prisma migrate`. Same DDL, same row
//! semantics: several rows per name are normal; a row is *applied* when `finished_at` is set and
//! `rolled_back_at` is NULL, *failed* when both are NULL, and *rolled back* when `rolled_back_at`
//! is set.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::db::{query_error, quote_ident};
use crate::error::{Error, Remedy, Result};

/// The one table name Prisma uses.
pub const TABLE: &str = "_prisma_migrations";

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerRow {
    pub id: String,
    pub checksum: String,
    pub finished_at: Option<DateTime<Utc>>,
    pub migration_name: String,
    pub logs: Option<String>,
    pub rolled_back_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub applied_steps_count: i32,
}

impl LedgerRow {
    pub fn is_applied(&self) -> bool {
        self.finished_at.is_some() && self.rolled_back_at.is_none()
    }

    pub fn is_failed(&self) -> bool {
        self.finished_at.is_none() && self.rolled_back_at.is_none()
    }

    pub fn is_rolled_back(&self) -> bool {
        self.rolled_back_at.is_some()
    }
}

/// The schema-qualified, quoted table name.
pub fn table(schema: &str) -> String {
    format!("{}.{}", quote_ident(schema), TABLE)
}

/// The ledger of one schema, as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Ordered by `started_at`, as Prisma reads them.
    pub rows: Vec<LedgerRow>,
}

impl Ledger {
    /// Reads the ledger; `None` when the table does not exist yet.
    pub async fn read(client: &impl GenericClient, schema: &str) -> Result<Option<Ledger>> {
        if !exists(client, schema).await? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, \
                    applied_steps_count FROM {} ORDER BY started_at ASC",
            table(schema)
        );
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| query_error("reading _prisma_migrations", &e))?;
        Ok(Some(Ledger {
            rows: rows
                .iter()
                .map(|r| LedgerRow {
                    id: r.get(0),
                    checksum: r.get(1),
                    finished_at: r.get(2),
                    migration_name: r.get(3),
                    logs: r.get(4),
                    rolled_back_at: r.get(5),
                    started_at: r.get(6),
                    applied_steps_count: r.get(7),
                })
                .collect(),
        }))
    }

    /// The newest applied migration: the one finished last.
    pub fn head(&self) -> Option<String> {
        self.rows
            .iter()
            .filter(|r| r.is_applied())
            .max_by_key(|r| r.finished_at)
            .map(|r| r.migration_name.clone())
    }

    pub fn rows_for<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a LedgerRow> + 'a {
        self.rows.iter().filter(move |r| r.migration_name == name)
    }

    pub fn applied<'a>(&'a self, name: &'a str) -> Option<&'a LedgerRow> {
        self.rows_for(name).filter(|r| r.is_applied()).last()
    }

    pub fn failed(&self) -> impl Iterator<Item = &LedgerRow> {
        self.rows.iter().filter(|r| r.is_failed())
    }

    /// Names with a row that is not rolled back: what Prisma treats as "in the database".
    pub fn live_names(&self) -> impl Iterator<Item = &str> {
        self.rows
            .iter()
            .filter(|r| !r.is_rolled_back())
            .map(|r| r.migration_name.as_str())
    }
}

pub async fn exists(client: &impl GenericClient, schema: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))",
            &[&schema, &TABLE],
        )
        .await
        .map_err(|e| query_error("looking for _prisma_migrations", &e))?;
    Ok(row.get(0))
}

/// Creates the schema (if needed) and the ledger with Prisma's exact DDL. Like Prisma (P3005) it
/// refuses a schema that already holds tables: their history is unknown, so they must be
/// baselined first.
pub async fn create(client: &impl GenericClient, schema: &str) -> Result<()> {
    let user_tables: Vec<String> = client
        .query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1 LIMIT 4",
            &[&schema],
        )
        .await
        .map_err(|e| query_error("inspecting the schema", &e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !user_tables.is_empty() {
        return Err(Error::refused(
            format!(
                "schema \"{schema}\" is not empty (it has {}) and has no _prisma_migrations table",
                user_tables.join(", ")
            ),
            "baseline it: record each migration already reflected in the database as applied, \
             then deploy the rest",
        )
        .with(Remedy::Resolve {
            migration: "NAME".into(),
        }));
    }
    ensure_table(client, schema).await
}

/// Creates the schema and the ledger if missing, without the emptiness check: for baselining an
/// existing database with `resolve --applied`.
pub async fn ensure_table(client: &impl GenericClient, schema: &str) -> Result<()> {
    let ddl = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema_q};
CREATE TABLE IF NOT EXISTS {table} (
    id                  VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum            VARCHAR(64) NOT NULL,
    finished_at         TIMESTAMPTZ,
    migration_name      VARCHAR(255) NOT NULL,
    logs                TEXT,
    rolled_back_at      TIMESTAMPTZ,
    started_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count INTEGER NOT NULL DEFAULT 0
);",
        schema_q = quote_ident(schema),
        table = table(schema)
    );
    client
        .batch_execute(&ddl)
        .await
        .map_err(|e| query_error("creating _prisma_migrations", &e))
}

/// Writes `rows` into the ledger of `schema` as they are: another database's history, for a
/// rehearsal on a copy of its schema (a schema-only copy has the table, not its rows). Creates
/// the table if the copy lacks it.
pub async fn copy_rows(
    client: &impl GenericClient,
    schema: &str,
    rows: &[LedgerRow],
) -> Result<()> {
    ensure_table(client, schema).await?;
    // One statement for all of them: a ledger of hundreds of rows is one round trip.
    let sql = format!(
        "INSERT INTO {} (id, checksum, finished_at, migration_name, logs, rolled_back_at, \
         started_at, applied_steps_count) \
         SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::timestamptz[], $4::varchar[], \
                              $5::text[], $6::timestamptz[], $7::timestamptz[], $8::int[])",
        table(schema)
    );
    let col = |f: fn(&LedgerRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let ids = col(|r| r.id.clone());
    let checksums = col(|r| r.checksum.clone());
    let names = col(|r| r.migration_name.clone());
    let finished: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.finished_at).collect();
    let logs: Vec<Option<String>> = rows.iter().map(|r| r.logs.clone()).collect();
    let rolled_back: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.rolled_back_at).collect();
    let started: Vec<DateTime<Utc>> = rows.iter().map(|r| r.started_at).collect();
    let steps: Vec<i32> = rows.iter().map(|r| r.applied_steps_count).collect();
    client
        .execute(
            &sql,
            &[
                &ids,
                &checksums,
                &finished,
                &names,
                &logs,
                &rolled_back,
                &started,
                &steps,
            ],
        )
        .await
        .map_err(|e| query_error("copying the ledger", &e))?;
    Ok(())
}

/// What the ledger says of one migration at this moment: what an applier holding the appliers'
/// lock reads before the migration's first statement, whatever it read when the deploy began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No live row: it may be applied.
    Unapplied,
    /// A finished row: it is applied already.
    Applied,
    /// A row neither finished nor rolled back: being applied by someone else, or failed.
    Unfinished { started_at: DateTime<Utc> },
}

/// A migration's ($1) standing in the ledger of `schema`: its live row, unfinished first.
pub fn standing_sql(schema: &str) -> String {
    format!(
        "SELECT finished_at IS NOT NULL, started_at FROM {} \
         WHERE migration_name = $1 AND rolled_back_at IS NULL \
         ORDER BY finished_at IS NULL DESC, started_at DESC LIMIT 1",
        table(schema)
    )
}

/// A migration's standing, by [`standing_sql`] prepared on `client`.
pub async fn standing(
    client: &impl GenericClient,
    query: &tokio_postgres::Statement,
    name: &str,
) -> Result<Standing> {
    let row = client
        .query_opt(query, &[&name])
        .await
        .map_err(|e| query_error("reading the migration's row", &e))?;
    Ok(match row {
        None => Standing::Unapplied,
        Some(r) if r.get::<_, bool>(0) => Standing::Applied,
        Some(r) => Standing::Unfinished {
            started_at: r.get(1),
        },
    })
}

/// Inserts a row for a migration that is starting (`finished_at` NULL). Returns its id.
pub async fn insert_started(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
    checksum: &str,
) -> Result<String> {
    let id = Uuid::new_v4().to_string();
    let sql = format!(
        "INSERT INTO {} (id, checksum, migration_name, started_at, applied_steps_count) \
         VALUES ($1, $2, $3, pg_catalog.clock_timestamp(), 0)",
        table(schema)
    );
    client
        .execute(&sql, &[&id, &checksum, &name])
        .await
        .map_err(|e| query_error("recording the migration start", &e))?;
    Ok(id)
}

/// The INSERT that records a transactional migration as applied, to prepare once per deploy.
/// It runs inside the migration's own transaction, so the row appears exactly when the
/// migration's effects do; `now()` is the transaction's start, i.e. when the migration began.
pub fn insert_finished_sql(schema: &str) -> String {
    format!(
        "INSERT INTO {} (id, checksum, migration_name, started_at, finished_at, applied_steps_count) \
         VALUES ($1, $2, $3, pg_catalog.now(), pg_catalog.clock_timestamp(), 1)",
        table(schema)
    )
}

/// Marks a started row finished with the number of steps it ran.
pub async fn finish(client: &impl GenericClient, schema: &str, id: &str, steps: i32) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET finished_at = pg_catalog.clock_timestamp(), applied_steps_count = $2 WHERE id = $1",
        table(schema)
    );
    client
        .execute(&sql, &[&id, &steps])
        .await
        .map_err(|e| query_error("recording the migration as finished", &e))?;
    Ok(())
}

/// Records the error of a started row and leaves it failed (Prisma's semantics for a migration
/// whose partial effects may remain). Like Prisma, only the logs: `applied_steps_count` stays 0
/// until the migration's one step succeeds; the logs say how far it got.
pub async fn record_failure(
    client: &impl GenericClient,
    schema: &str,
    id: &str,
    logs: &str,
) -> Result<()> {
    let sql = format!("UPDATE {} SET logs = $2 WHERE id = $1", table(schema));
    client
        .execute(&sql, &[&id, &logs])
        .await
        .map_err(|e| query_error("recording the migration failure", &e))?;
    Ok(())
}

/// Records an attempt that failed and was rolled back entirely: `finished_at` NULL,
/// `rolled_back_at` set, so the migration counts as pending again and a fixed file redeploys.
pub async fn insert_rolled_back_attempt(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
    checksum: &str,
    started_at: DateTime<Utc>,
    logs: &str,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} (id, checksum, migration_name, logs, started_at, rolled_back_at, \
         applied_steps_count) VALUES ($1, $2, $3, $4, $5, pg_catalog.clock_timestamp(), 0)",
        table(schema)
    );
    let id = Uuid::new_v4().to_string();
    client
        .execute(&sql, &[&id, &checksum, &name, &logs, &started_at])
        .await
        .map_err(|e| query_error("recording the failed attempt", &e))?;
    Ok(())
}

/// Prisma's `resolve --applied`: a finished row with no steps.
pub async fn insert_applied(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
    checksum: &str,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} (id, checksum, migration_name, started_at, finished_at, applied_steps_count) \
         VALUES ($1, $2, $3, now(), now(), 0)",
        table(schema)
    );
    let id = Uuid::new_v4().to_string();
    client
        .execute(&sql, &[&id, &checksum, &name])
        .await
        .map_err(|e| query_error("recording the migration as applied", &e))?;
    Ok(())
}

pub async fn mark_rolled_back(client: &impl GenericClient, schema: &str, id: &str) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET rolled_back_at = pg_catalog.now() WHERE id = $1",
        table(schema)
    );
    client
        .execute(&sql, &[&id])
        .await
        .map_err(|e| query_error("marking the migration rolled back", &e))?;
    Ok(())
}
