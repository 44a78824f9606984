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

/// Where a step happens: a migration of its own (numbered in order; each one deployed, with
/// its own transaction, before the next is written), the application's code, or a check by
/// the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    Migration(u8),
    Code,
    Check,
}

/// One step of a recipe: what to do, and its SQL when it is SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at: Where,
    pub text: String,
    pub sql: Option<String>,
}

impl Step {
    fn migration(n: u8, text: impl Into<String>, sql: impl Into<String>) -> Step {
        Step {
            at: Where::Migration(n),
            text: text.into(),
            sql: Some(sql.into()),
        }
    }

    fn code(text: impl Into<String>) -> Step {
        Step {
            at: Where::Code,
            text: text.into(),
            sql: None,
        }
    }

    fn check(text: impl Into<String>) -> Step {
        Step {
            at: Where::Check,
            text: text.into(),
            sql: None,
        }
    }

    /// "Migration 2: validate without blocking writes: ALTER TABLE ..."
    pub fn said(&self) -> String {
        let at = match self.at {
            Where::Migration(n) => format!("Migration {n}"),
            Where::Code => "Code".into(),
            Where::Check => "Check".into(),
        };
        match &self.sql {
            Some(sql) => format!("{at}: {}: {sql}", self.text),
            None => format!("{at}: {}", self.text),
        }
    }
}

/// The steps, in words, in order; empty when the change needs no staging.
pub fn recipe(change: &Change) -> Vec<String> {
    steps(change).iter().map(Step::said).collect()
}

/// The first parenthesised list in `definition` ("(email)" of "UNIQUE (email)").
fn columns_of(definition: &str) -> String {
    match (definition.find('('), definition.find(')')) {
        (Some(open), Some(close)) if close > open => definition[open..=close].to_owned(),
        _ => "(...)".into(),
    }
}

/// The name PostgreSQL and Prisma would give a constraint on `table`'s first column.
fn constraint_name(table: &str, definition: &str, suffix: &str) -> String {
    let first = columns_of(definition)
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .next()
        .map(bare)
        .unwrap_or_default();
    format!("\"{}_{first}_{suffix}\"", bare(table))
}

/// The steps, in order, with the statement's own names.
pub fn steps(change: &Change) -> Vec<Step> {
    match change {
        Change::RenameColumn { table, from, to } => vec![
            Step::migration(
                1,
                "expand: add the new column beside the old one",
                format!("ALTER TABLE {table} ADD COLUMN {to} <type of {from}>;"),
            ),
            Step::code(format!(
                "dual-write: deploy code that writes both {from} and {to} (or a trigger that copies {from} into {to})"
            )),
            Step::migration(
                2,
                "backfill in batches (repeat until no row is left)",
                format!("UPDATE {table} SET {to} = {from} WHERE {to} IS NULL AND <key range>;"),
            ),
            Step::code(format!(
                "switch reads to {to} and deploy; keep writing both"
            )),
            Step::migration(
                3,
                format!("contract in a later release, once nothing reads {from}"),
                format!("ALTER TABLE {table} DROP COLUMN {from};"),
            ),
        ],
        Change::RenameTable { from, to } => vec![
            Step::migration(
                1,
                "rename and leave a compatibility view, in one migration",
                format!(
                    "ALTER TABLE {from} RENAME TO {to}; CREATE VIEW {from} AS SELECT * FROM {to};"
                ),
            ),
            Step::code(format!(
                "old code keeps working through the view (a simple view is updatable); deploy code that uses {to}"
            )),
            Step::migration(
                2,
                "contract in a later release, once nothing uses the old name",
                format!("DROP VIEW {from};"),
            ),
        ],
        Change::DropColumn { table, column } => vec![
            Step::code(format!(
                "stop using it: deploy code that neither reads nor writes {column} (for Prisma: remove the field from schema.prisma first)"
            )),
            Step::migration(
                1,
                "if it is NOT NULL, let inserts from the new code succeed",
                format!("ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL;"),
            ),
            Step::check("nothing still queries it (pg_stat_statements, application logs)"),
            Step::migration(
                2,
                "contract in a later release, with a verified backup",
                format!("ALTER TABLE {table} DROP COLUMN {column};"),
            ),
        ],
        Change::DropTable { table } => vec![
            Step::code(format!(
                "stop using it: deploy code that no longer touches {table}"
            )),
            Step::migration(
                1,
                "contract, first: park it to catch stragglers (what still uses it fails loudly, and renaming it back undoes that)",
                format!(
                    "ALTER TABLE {table} RENAME TO {};",
                    suffixed(table, "_deprecated")
                ),
            ),
            Step::migration(
                2,
                "contract in a later release, with a verified backup",
                format!("DROP TABLE {};", suffixed(table, "_deprecated")),
            ),
        ],
        Change::ChangeType {
            table,
            column,
            new_type,
        } => {
            let new_col = suffixed(column, "_new");
            vec![
                Step::migration(
                    1,
                    "expand",
                    format!("ALTER TABLE {table} ADD COLUMN {new_col} {new_type};"),
                ),
                Step::code(format!(
                    "dual-write: deploy code (or a trigger) that writes {column} and {new_col} together"
                )),
                Step::migration(
                    2,
                    "backfill in batches (repeat until no row is left)",
                    format!(
                        "UPDATE {table} SET {new_col} = {column}::{new_type} WHERE {new_col} IS NULL AND <key range>;"
                    ),
                ),
                Step::code(format!("switch reads to {new_col} and deploy")),
                Step::migration(
                    3,
                    format!(
                        "contract in a later release (rename {new_col} only with a compatibility step of its own)"
                    ),
                    format!("ALTER TABLE {table} DROP COLUMN {column};"),
                ),
            ]
        }
        Change::SetNotNull { table, column } => {
            let check = format!("\"{}_{}_not_null\"", bare(table), bare(column));
            vec![
                Step::migration(
                    1,
                    "add the rule without a scan (a brief ACCESS EXCLUSIVE)",
                    format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID;"
                    ),
                ),
                Step::migration(
                    2,
                    "backfill the NULLs in batches",
                    format!(
                        "UPDATE {table} SET {column} = <value> WHERE {column} IS NULL AND <key range>;"
                    ),
                ),
                Step::migration(
                    3,
                    "validate without blocking writes (SHARE UPDATE EXCLUSIVE), in a migration of its own: in the one that added it, the scan would run under that migration's ACCESS EXCLUSIVE",
                    format!("ALTER TABLE {table} VALIDATE CONSTRAINT {check};"),
                ),
                Step::migration(
                    4,
                    "SET NOT NULL now uses the valid check instead of scanning; then drop the helper",
                    format!(
                        "ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL; ALTER TABLE {table} DROP CONSTRAINT {check};"
                    ),
                ),
            ]
        }
        Change::AddRequiredColumn { table, column, ty } => {
            let check = format!("\"{}_{}_not_null\"", bare(table), bare(column));
            vec![
                Step::migration(
                    1,
                    "expand: add it nullable (or with a constant DEFAULT, catalog-only since PostgreSQL 11)",
                    format!("ALTER TABLE {table} ADD COLUMN {column} {ty};"),
                ),
                Step::code(format!("dual-write: deploy code that always sets {column}")),
                Step::migration(
                    2,
                    "backfill existing rows in batches",
                    format!(
                        "UPDATE {table} SET {column} = <value> WHERE {column} IS NULL AND <key range>;"
                    ),
                ),
                Step::migration(
                    3,
                    "then make it required without a long lock: the check without a scan",
                    format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID;"
                    ),
                ),
                Step::migration(
                    4,
                    "validate it without blocking writes",
                    format!("ALTER TABLE {table} VALIDATE CONSTRAINT {check};"),
                ),
                Step::migration(
                    5,
                    "SET NOT NULL uses the valid check; drop the helper",
                    format!(
                        "ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL; ALTER TABLE {table} DROP CONSTRAINT {check};"
                    ),
                ),
            ]
        }
        Change::AddForeignKey {
            table,
            constraint,
            definition,
        } => {
            let name = constraint
                .clone()
                .unwrap_or_else(|| constraint_name(table, definition, "fkey"));
            vec![
                Step::migration(
                    1,
                    "add it without validating existing rows (a brief lock on both tables)",
                    format!("ALTER TABLE {table} ADD CONSTRAINT {name} {definition} NOT VALID;"),
                ),
                Step::migration(
                    2,
                    "validate in a migration of its own, without blocking writes",
                    format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name};"),
                ),
            ]
        }
        Change::AddCheck {
            table,
            constraint,
            definition,
        } => {
            let name = constraint
                .clone()
                .unwrap_or_else(|| format!("\"{}_check\"", bare(table)));
            vec![
                Step::migration(
                    1,
                    "add it without checking existing rows (a brief ACCESS EXCLUSIVE)",
                    format!("ALTER TABLE {table} ADD CONSTRAINT {name} {definition} NOT VALID;"),
                ),
                Step::migration(
                    2,
                    "validate in a migration of its own, without blocking writes",
                    format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name};"),
                ),
            ]
        }
        Change::AddUnique {
            table,
            constraint,
            definition,
            primary,
        } => {
            let name = constraint.clone().unwrap_or_else(|| {
                constraint_name(table, definition, if *primary { "pkey" } else { "key" })
            });
            let index = suffixed(&name, "_idx");
            let kind = if *primary { "PRIMARY KEY" } else { "UNIQUE" };
            let columns = columns_of(definition);
            vec![
                Step::migration(
                    1,
                    "build the index without blocking writes, in a migration of its own (CONCURRENTLY cannot run in a transaction)",
                    format!("CREATE UNIQUE INDEX CONCURRENTLY {index} ON {table} {columns};"),
                ),
                Step::migration(
                    2,
                    if *primary {
                        "attach it (a brief lock; a primary key also makes the columns NOT NULL, scanning unless they are already: make them NOT NULL first with the CHECK ... NOT VALID, VALIDATE path)"
                    } else {
                        "attach it (a brief lock)"
                    },
                    format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {index};"
                    ),
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
                Step::migration(
                    1,
                    "build it without blocking writes, in a migration of its own (CONCURRENTLY cannot run in a transaction)",
                    concurrent,
                ),
                Step::check(format!(
                    "if the build fails it leaves {name} INVALID: DROP INDEX CONCURRENTLY it and build again"
                )),
            ]
        }
        Change::DropIndex { index } => vec![Step::migration(
            1,
            "drop it without blocking the table, in a migration of its own",
            format!("DROP INDEX CONCURRENTLY {index};"),
        )],
        Change::AddComputedColumn {
            table,
            column,
            ty,
            default,
        } => {
            // SERIAL is a sequence default; a generated column is an expression kept current.
            let ty_plain = match ty.to_ascii_lowercase().as_str() {
                "serial" | "serial4" => "integer".to_owned(),
                "bigserial" | "serial8" => "bigint".to_owned(),
                "smallserial" | "serial2" => "smallint".to_owned(),
                _ => ty.clone(),
            };
            let serial = ty_plain != *ty;
            let seq = format!("\"{}_{}_seq\"", bare(table), bare(column));
            let value = default
                .as_deref()
                .map(|d| {
                    d.trim()
                        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                        .trim()
                        .to_owned()
                })
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| {
                    if serial {
                        format!("nextval('{seq}')")
                    } else {
                        "<expression>".into()
                    }
                });
            let sequence = if serial {
                format!(" CREATE SEQUENCE {seq} OWNED BY {table}.{column};")
            } else {
                String::new()
            };
            vec![
                Step::migration(
                    1,
                    "add the column without a default, then give new rows theirs (both catalog-only)",
                    format!(
                        "ALTER TABLE {table} ADD COLUMN {column} {ty_plain};{sequence} ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {value};"
                    ),
                ),
                Step::migration(
                    2,
                    "fill existing rows in batches (repeat until no row is left)",
                    format!(
                        "UPDATE {table} SET {column} = {value} WHERE {column} IS NULL AND <key range>;"
                    ),
                ),
                Step::check(
                    "a generated column stays generated only as GENERATED ... STORED: keep it current with a trigger instead, or accept the rewrite in a maintenance window",
                ),
            ]
        }
        Change::RewriteTable { table } => vec![
            Step::check(format!(
                "rebuild {table} online instead, with pg_repack (or pg_squeeze), which holds ACCESS EXCLUSIVE only to swap at the end"
            )),
            Step::check(
                "or run it in a maintenance window, with a verified backup and the application stopped",
            ),
        ],
        Change::Truncate { table } => vec![
            Step::code(format!("make sure nothing still reads {table}")),
            Step::migration(
                1,
                "if it must stay in use, delete in batches instead (repeat until it is empty)",
                format!(
                    "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} LIMIT 10000);"
                ),
            ),
            Step::check("otherwise TRUNCATE it in a quiet window, with a verified backup"),
        ],
    }
}

/// The staged way for a DANGEROUS finding whose statement stages no [`Change`] of its own:
/// by the rule that flagged it, with the tables the statement touches.
pub fn for_rule(rule: &str, tables: &[String], statement: &str) -> Vec<String> {
    let table = tables
        .first()
        .cloned()
        .unwrap_or_else(|| "the table".into());
    let steps = match rule {
        "backfill" | "delete" | "delete-all" => vec![
            Step::migration(
                1,
                "work in batches, each its own transaction, so no lock is held for long (repeat until no row is left)",
                format!(
                    "{} ... WHERE <key> BETWEEN <from> AND <to>;",
                    statement
                        .split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            Step::check(
                "a batch of some thousands of rows, with a pause between them, keeps replicas and vacuum up",
            ),
        ],
        "create-table-as" => vec![
            Step::migration(
                1,
                "create the table empty",
                format!("CREATE TABLE <new> (LIKE {table} INCLUDING ALL);"),
            ),
            Step::migration(
                2,
                "fill it in batches",
                format!(
                    "INSERT INTO <new> SELECT * FROM {table} WHERE <key> BETWEEN <from> AND <to>;"
                ),
            ),
        ],
        "reindex" | "require-concurrent-reindex" => vec![Step::migration(
            1,
            "rebuild it without blocking, in a migration of its own",
            concurrently_reindex(statement),
        )],
        "ban-concurrent-index-creation-in-transaction" => vec![Step::migration(
            1,
            "move the CONCURRENTLY statement into a migration of its own: it cannot run in a transaction, and pgdeck runs such a migration statement by statement",
            statement.to_owned(),
        )],
        "drop-schema" => vec![
            Step::code("stop using everything in it; deploy"),
            Step::check(
                "nothing still queries it (pg_stat_statements, application logs); take a verified backup",
            ),
            Step::migration(1, "drop it in a later release", statement.to_owned()),
        ],
        "set-schema" => vec![
            Step::migration(
                1,
                "move it and leave a compatibility view under the old name, in one migration",
                format!(
                    "{statement} CREATE VIEW {table} AS SELECT * FROM <new schema>.{};",
                    bare(&table)
                ),
            ),
            Step::code("deploy code that uses the new schema"),
            Step::migration(
                2,
                "drop the view in a later release",
                format!("DROP VIEW {table};"),
            ),
        ],
        "too-large-to-lint" => vec![
            Step::check(
                "split the file: schema changes in a migration of their own, small enough to lint",
            ),
            Step::check("load large data with COPY from a file, outside the migration"),
        ],
        _ => vec![
            Step::check(format!(
                "run it when {} is quiet, in a maintenance window, with a verified backup",
                if tables.is_empty() {
                    "the database".to_owned()
                } else {
                    tables.join(", ")
                }
            )),
            Step::check("or split it so that each migration holds its lock only briefly"),
        ],
    };
    steps.iter().map(Step::said).collect()
}

/// `REINDEX INDEX x` -> `REINDEX INDEX CONCURRENTLY x;`
fn concurrently_reindex(statement: &str) -> String {
    let flat = statement.split_whitespace().collect::<Vec<_>>();
    match flat.as_slice() {
        [reindex, kind, rest @ ..] => {
            format!(
                "{reindex} {kind} CONCURRENTLY {};",
                rest.join(" ").trim_end_matches(';')
            )
        }
        _ => statement.to_owned(),
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
