//! Live table sizes for lint and plan: estimated rows and total size of the tables a migration
//! touches. A guest on the server: read-only, short timeouts, and no size function on a table
//! that holds or awaits an ACCESS EXCLUSIVE lock (it would queue behind it); those fall back to
//! the catalog's page counts.

use crate::db::{self, query_error};
use crate::error::Result;
use crate::target::DbTarget;

use super::{Sizes, TableSize};

/// Sizes of `tables` (names as written in SQL); tables that do not exist are left out.
pub async fn table_sizes(target: &DbTarget, tables: &[String]) -> Result<Sizes> {
    if tables.is_empty() {
        return Ok(Sizes::new());
    }
    let session = db::connect(&target.with_application_name("pgdeck-lint")).await?;
    let client = &session.client;
    client
        .batch_execute(
            "SET default_transaction_read_only = on; SET statement_timeout = '5s'; SET lock_timeout = '500ms'",
        )
        .await
        .map_err(|e| query_error("preparing the catalog session", &e))?;
    let rows = client
        .query(
            "SELECT u.t, c.reltuples::bigint, \
                    CASE WHEN EXISTS (SELECT 1 FROM pg_locks l WHERE l.relation = c.oid AND l.mode = 'AccessExclusiveLock') \
                         THEN (c.relpages::bigint \
                               + coalesce((SELECT sum(i.relpages) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid), 0) \
                               + coalesce((SELECT tc.relpages FROM pg_class tc WHERE tc.oid = c.reltoastrelid), 0)) \
                              * current_setting('block_size')::bigint \
                         ELSE pg_total_relation_size(c.oid) END \
                    , (SELECT coalesce(json_object_agg(a.attname, format_type(a.atttypid, a.atttypmod)), '{}')::text \
                         FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
                    ARRAY(SELECT (regexp_match(pg_get_constraintdef(k.oid), '^CHECK \\(\\((.+) IS NOT NULL\\)\\)$'))[1] \
                            FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c' AND k.convalidated \
                             AND pg_get_constraintdef(k.oid) ~ '^CHECK \\(\\(.+ IS NOT NULL\\)\\)$') \
             FROM unnest($1::text[]) AS u(t) JOIN pg_class c ON c.oid = to_regclass(u.t)",
            &[&tables],
        )
        .await
        .map_err(|e| query_error("reading table sizes", &e))?;
    let mut sizes: Sizes = rows
        .iter()
        .map(|r| {
            let table: String = r.get(0);
            let rows: i64 = r.get(1);
            let columns = serde_json::from_str(r.get::<_, &str>(3)).unwrap_or_default();
            let size = TableSize {
                table: table.clone(),
                rows: (rows >= 0).then_some(rows),
                bytes: r.get(2),
                columns,
                not_null_checks: r.get(4),
            };
            (table, size)
        })
        .collect();
    // What a column default calls decides whether adding the column rewrites the table: every
    // function's volatility, by name (a few thousand short rows).
    let functions = client
        .query("SELECT proname::text, provolatile::text FROM pg_proc", &[])
        .await
        .map_err(|e| query_error("reading function volatility", &e))?;
    for f in &functions {
        if let Some(v) = f.get::<_, &str>(1).chars().next() {
            sizes.set_volatility(f.get(0), v);
        }
    }
    // Whether a change between types the lint does not know (an extension's) rewrites.
    let casts = client
        .query(
            "SELECT format_type(castsource, NULL), format_type(casttarget, NULL) \
             FROM pg_cast WHERE castmethod = 'b'",
            &[],
        )
        .await
        .map_err(|e| query_error("reading binary-coercible casts", &e))?;
    for c in &casts {
        sizes.add_binary_cast(c.get(0), c.get(1));
    }
    Ok(sizes)
}
