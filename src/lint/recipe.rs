//! Expand / dual-write / contract recipes: for each dangerous change, the staged way to make it
//! without downtime, written out with the statement's own table and column names.

use super::facts::Change;

/// `"email"` + `_new` -> `"email_new"`; `email` + `_new` -> `email_new`.
fn suffixed(name: &str, suffix: &str) -> String {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(inner) => format!("\"{inner}{suffix}\""),
        None => format!("{name}{suffix}"),
    }
}

/// The last segment of a possibly qualified name, unquoted, for building new identifiers.
fn bare(name: &str) -> String {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.trim_matches('"').to_owned()
}

/// The steps, in order; empty when the change needs no staging.
pub fn recipe(change: &Change) -> Vec<String> {
    match change {
        Change::RenameColumn { table, from, to } => vec![
            format!(
                "Expand: add the new column beside the old one: ALTER TABLE {table} ADD COLUMN {to} <type of {from}>;"
            ),
            format!(
                "Dual-write: deploy code that writes both {from} and {to} (or a trigger that copies {from} into {to})."
            ),
            format!(
                "Backfill in batches: UPDATE {table} SET {to} = {from} WHERE {to} IS NULL AND <key range>;"
            ),
            format!("Switch reads to {to} and deploy; keep writing both."),
            format!(
                "Contract in a later release, once nothing reads {from}: ALTER TABLE {table} DROP COLUMN {from};"
            ),
        ],
        Change::RenameTable { from, to } => vec![
            format!(
                "Expand: rename and leave a compatibility view in one migration: ALTER TABLE {from} RENAME TO {to}; CREATE VIEW {from} AS SELECT * FROM {to};"
            ),
            format!(
                "Old code keeps working through the view (a simple view is updatable); deploy code that uses {to}."
            ),
            format!(
                "Contract in a later release, once nothing uses the old name: DROP VIEW {from};"
            ),
        ],
        Change::DropColumn { table, column } => vec![
            format!(
                "Stop using it: deploy code that neither reads nor writes {column} (for Prisma: remove the field from schema.prisma first)."
            ),
            format!(
                "If it is NOT NULL, let inserts from the new code succeed: ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL;"
            ),
            "Check that nothing still queries it (pg_stat_statements, application logs).".into(),
            format!(
                "Contract in a later release, with a verified backup: ALTER TABLE {table} DROP COLUMN {column};"
            ),
        ],
        Change::DropTable { table } => vec![
            format!("Stop using it: deploy code that no longer touches {table}."),
            format!(
                "Park it first to catch stragglers: ALTER TABLE {table} RENAME TO {};",
                suffixed(table, "_deprecated")
            ),
            format!(
                "Contract in a later release, with a verified backup: DROP TABLE {};",
                suffixed(table, "_deprecated")
            ),
        ],
        Change::ChangeType {
            table,
            column,
            new_type,
        } => {
            let new_col = suffixed(column, "_new");
            vec![
                format!("Expand: ALTER TABLE {table} ADD COLUMN {new_col} {new_type};"),
                format!(
                    "Dual-write: deploy code (or a trigger) that writes {column} and {new_col} together."
                ),
                format!(
                    "Backfill in batches: UPDATE {table} SET {new_col} = {column}::{new_type} WHERE {new_col} IS NULL AND <key range>;"
                ),
                format!("Switch reads to {new_col} and deploy."),
                format!(
                    "Contract in a later release: ALTER TABLE {table} DROP COLUMN {column}; (rename {new_col} only with a compatibility step of its own)"
                ),
            ]
        }
        Change::SetNotNull { table, column } => {
            let check = format!("\"{}_{}_not_null\"", bare(table), bare(column));
            vec![
                format!(
                    "Add the rule without a scan: ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID;"
                ),
                format!(
                    "Backfill the NULLs in batches: UPDATE {table} SET {column} = <value> WHERE {column} IS NULL AND <key range>;"
                ),
                format!(
                    "Validate without blocking writes (SHARE UPDATE EXCLUSIVE): ALTER TABLE {table} VALIDATE CONSTRAINT {check};"
                ),
                format!(
                    "Now SET NOT NULL uses the valid check instead of scanning: ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL;"
                ),
                format!("Drop the helper: ALTER TABLE {table} DROP CONSTRAINT {check};"),
            ]
        }
        Change::AddRequiredColumn { table, column, ty } => vec![
            format!(
                "Expand: add it nullable: ALTER TABLE {table} ADD COLUMN {column} {ty}; (or with a constant DEFAULT, which is catalog-only since PostgreSQL 11)"
            ),
            format!("Dual-write: deploy code that always sets {column}."),
            format!(
                "Backfill existing rows in batches: UPDATE {table} SET {column} = <value> WHERE {column} IS NULL AND <key range>;"
            ),
            format!(
                "Then make it required without a long lock: CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, SET NOT NULL."
            ),
        ],
        Change::AddForeignKey { table, constraint } => {
            let name = constraint.clone().unwrap_or_else(|| "<constraint>".into());
            vec![
                format!(
                    "Add it without validating existing rows (brief lock): ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (...) REFERENCES ... NOT VALID;"
                ),
                format!(
                    "Validate in a separate migration, without blocking writes: ALTER TABLE {table} VALIDATE CONSTRAINT {name};"
                ),
            ]
        }
        Change::AddCheckOrUnique { table, constraint } => {
            let name = constraint.clone().unwrap_or_else(|| "<constraint>".into());
            let index = suffixed(&name, "_idx");
            vec![
                format!(
                    "For CHECK: ALTER TABLE {table} ADD CONSTRAINT {name} CHECK (...) NOT VALID; then, separately, ALTER TABLE {table} VALIDATE CONSTRAINT {name};"
                ),
                format!(
                    "For UNIQUE / PRIMARY KEY: build the index first in its own migration: CREATE UNIQUE INDEX CONCURRENTLY {index} ON {table} (...);"
                ),
                format!(
                    "Then attach it (brief lock): ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {index};"
                ),
            ]
        }
        Change::CreateIndex {
            table,
            index,
            definition,
        } => {
            let concurrent = concurrently(definition);
            let name = index
                .clone()
                .unwrap_or_else(|| format!("the index on {table}"));
            vec![
                format!(
                    "Build it without blocking writes, in a migration of its own (CONCURRENTLY cannot run in a transaction): {concurrent}"
                ),
                format!(
                    "If the build fails it leaves {name} INVALID: DROP INDEX CONCURRENTLY it and build again."
                ),
            ]
        }
        Change::DropIndex { index } => vec![format!(
            "Drop it without blocking the table, in a migration of its own: DROP INDEX CONCURRENTLY {index};"
        )],
    }
}

/// `CREATE [UNIQUE] INDEX name ...` -> `CREATE [UNIQUE] INDEX CONCURRENTLY name ...`
fn concurrently(definition: &str) -> String {
    let flat = definition.split_whitespace().collect::<Vec<_>>().join(" ");
    let upper = flat.to_ascii_uppercase();
    match upper.find("INDEX ") {
        Some(at) => format!("{}INDEX CONCURRENTLY {}", &flat[..at], &flat[at + 6..]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_recipe_uses_the_real_names() {
        let steps = recipe(&Change::RenameColumn {
            table: "\"User\"".into(),
            from: "\"phone\"".into(),
            to: "\"phoneNumber\"".into(),
        });
        assert!(
            steps[0].contains("ALTER TABLE \"User\" ADD COLUMN \"phoneNumber\""),
            "{steps:?}"
        );
        assert!(
            steps[2].contains("UPDATE \"User\" SET \"phoneNumber\" = \"phone\""),
            "{steps:?}"
        );
        assert!(steps[4].contains("DROP COLUMN \"phone\""), "{steps:?}");
    }

    #[test]
    fn index_recipe_inserts_concurrently() {
        let steps = recipe(&Change::CreateIndex {
            table: "\"User\"".into(),
            index: Some("\"User_email_idx\"".into()),
            definition: "CREATE UNIQUE INDEX \"User_email_idx\" ON \"User\"(\"email\");".into(),
        });
        assert!(
            steps[0].ends_with(
                "CREATE UNIQUE INDEX CONCURRENTLY \"User_email_idx\" ON \"User\"(\"email\");"
            ),
            "{steps:?}"
        );
    }

    #[test]
    fn set_not_null_recipe_names_the_helper_check() {
        let steps = recipe(&Change::SetNotNull {
            table: "public.\"User\"".into(),
            column: "\"email\"".into(),
        });
        assert!(steps[0].contains("\"User_email_not_null\""), "{steps:?}");
    }
}
