//! The server checks the lint: each statement of a table runs on a real cluster, in a
//! transaction rolled back afterwards, and the locks its backend holds before the rollback and
//! the tables whose relfilenode changed are compared with what `lint` claims for it.

mod common;

use common::*;
use pgdeck::lint::facts::{LockMode, Rewrite};
use pgdeck::lint::{LintSettings, catalog, lint_sql, touched_tables};
use pgdeck::migrate::observe::{RelationKind, Snapshot};
use pgdeck::migrate::script::TxMode;

/// The tables every statement runs against, with rows (a scan or rewrite of an empty table
/// proves nothing about what it does to a full one).
const SETUP: &str = r#"
CREATE TABLE t (id int PRIMARY KEY, a int, v varchar(20), n numeric(10,2), s text,
                ts timestamp(3), b int NOT NULL DEFAULT 0, c varchar(10));
INSERT INTO t SELECT g, g, 'x', 1, 's', now(), 0, 'c' FROM generate_series(1, 200) g;
CREATE INDEX t_a_idx ON t (a);
CREATE UNIQUE INDEX t_a_uniq ON t (id, a);
CREATE TABLE p (id int PRIMARY KEY);
INSERT INTO p SELECT g FROM generate_series(1, 200) g;
CREATE TABLE c (id int, p_id int);
INSERT INTO c SELECT g, g FROM generate_series(1, 200) g;
CREATE VIEW tv AS SELECT id FROM t;
CREATE MATERIALIZED VIEW tm AS SELECT id FROM t;
CREATE FUNCTION vol() RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN RETURN 1; END $$;
CREATE FUNCTION imm() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN 1; END $$;
CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER t_trg BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION trg();
CREATE TABLE parent (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE part1 (id int, k int);
INSERT INTO part1 SELECT g, 5 FROM generate_series(1, 200) g;
CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE SEQUENCE seq;
"#;

/// Statements, one each: every kind the lint speaks about.
const CASES: &[&str] = &[
    // Columns.
    "ALTER TABLE t ADD COLUMN x int",
    "ALTER TABLE t ADD COLUMN x int DEFAULT 5",
    "ALTER TABLE t ADD COLUMN x int NOT NULL DEFAULT 5",
    "ALTER TABLE t ADD COLUMN x uuid DEFAULT gen_random_uuid()",
    "ALTER TABLE t ADD COLUMN x timestamptz DEFAULT clock_timestamp()",
    "ALTER TABLE t ADD COLUMN x timestamptz DEFAULT now()",
    "ALTER TABLE t ADD COLUMN x int DEFAULT vol()",
    "ALTER TABLE t ADD COLUMN x int DEFAULT imm()",
    "ALTER TABLE t ADD COLUMN x serial",
    "ALTER TABLE t ADD COLUMN x bigserial",
    "ALTER TABLE t ADD COLUMN x int GENERATED ALWAYS AS IDENTITY",
    "ALTER TABLE t ADD COLUMN x int GENERATED ALWAYS AS (a * 2) STORED",
    "ALTER TABLE t DROP COLUMN s",
    "ALTER TABLE t RENAME COLUMN s TO s2",
    "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1",
    "ALTER TABLE t ALTER COLUMN a DROP DEFAULT",
    "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE t ALTER COLUMN b DROP NOT NULL",
    "ALTER TABLE t ALTER COLUMN a SET STATISTICS 500",
    // Type changes.
    "ALTER TABLE t ALTER COLUMN a TYPE bigint",
    "ALTER TABLE t ALTER COLUMN v TYPE varchar(50)",
    "ALTER TABLE t ALTER COLUMN v TYPE varchar(10)",
    "ALTER TABLE t ALTER COLUMN v TYPE text",
    "ALTER TABLE t ALTER COLUMN v TYPE varchar",
    "ALTER TABLE t ALTER COLUMN s TYPE varchar",
    "ALTER TABLE t ALTER COLUMN n TYPE numeric(12,2)",
    "ALTER TABLE t ALTER COLUMN n TYPE numeric",
    "ALTER TABLE t ALTER COLUMN n TYPE numeric(10,4)",
    "ALTER TABLE t ALTER COLUMN ts TYPE timestamp(6)",
    "ALTER TABLE t ALTER COLUMN a TYPE text",
    "ALTER TABLE t ALTER COLUMN c TYPE varchar(40)",
    // Constraints.
    "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0)",
    "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID",
    "ALTER TABLE c ADD CONSTRAINT c_p_fk FOREIGN KEY (p_id) REFERENCES p (id)",
    "ALTER TABLE c ADD CONSTRAINT c_p_fk FOREIGN KEY (p_id) REFERENCES p (id) NOT VALID",
    "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a)",
    "ALTER TABLE t ADD CONSTRAINT t_u UNIQUE USING INDEX t_a_uniq",
    "ALTER TABLE t DROP CONSTRAINT t_pkey, ADD CONSTRAINT t_pk2 PRIMARY KEY USING INDEX t_a_uniq",
    "ALTER TABLE t DROP CONSTRAINT t_pkey",
    "ALTER TABLE t RENAME CONSTRAINT t_pkey TO t_pk",
    // Tables.
    "CREATE TABLE fresh (id int PRIMARY KEY)",
    "CREATE TABLE fresh (id int REFERENCES p (id))",
    "CREATE TABLE fresh AS SELECT * FROM t",
    "SELECT * INTO fresh FROM t",
    "ALTER TABLE t RENAME TO t2",
    "DROP TABLE c",
    "TRUNCATE c",
    "ALTER TABLE t SET (fillfactor = 70)",
    "ALTER TABLE t SET UNLOGGED",
    "ALTER TABLE t CLUSTER ON t_a_idx",
    "CLUSTER t USING t_a_idx",
    "VACUUM FULL t",
    "CREATE INDEX CONCURRENTLY t_v_cidx ON t (v)",
    "LOCK TABLE t IN SHARE MODE",
    // Indexes.
    "CREATE INDEX t_v_idx ON t (v)",
    "CREATE UNIQUE INDEX t_v_uniq ON t (id, v)",
    "DROP INDEX t_a_idx",
    "REINDEX INDEX t_a_idx",
    "REINDEX TABLE t",
    "ALTER INDEX t_a_idx RENAME TO t_a_idx2",
    // Data.
    "UPDATE t SET a = a + 1",
    "UPDATE t SET a = a + 1 WHERE id = 1",
    "DELETE FROM t WHERE id = 1",
    "DELETE FROM c",
    "INSERT INTO p VALUES (1000)",
    // Views, functions, triggers, types.
    "CREATE VIEW tv2 AS SELECT id FROM t",
    "CREATE OR REPLACE VIEW tv AS SELECT id, 1 AS one FROM t",
    "DROP VIEW tv",
    "DROP VIEW tv CASCADE",
    "REFRESH MATERIALIZED VIEW tm",
    "DROP MATERIALIZED VIEW tm",
    "DROP FUNCTION trg() CASCADE",
    "CREATE TRIGGER t_trg2 BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION trg()",
    "DROP TRIGGER t_trg ON t",
    "ALTER TABLE t DISABLE TRIGGER t_trg",
    "ALTER TYPE mood ADD VALUE 'glad'",
    "COMMENT ON TABLE t IS 'orders'",
    "ALTER SEQUENCE seq RESTART 100",
    // Partitions.
    "ALTER TABLE parent ATTACH PARTITION part1 FOR VALUES FROM (0) TO (10)",
    "CREATE TABLE part2 PARTITION OF parent FOR VALUES FROM (10) TO (20)",
    // A DO block whose body is plain SQL.
    "DO $$ BEGIN ALTER TABLE t ADD COLUMN x int; END $$",
];

/// What PostgreSQL did: the strongest lock on a table that existed before, and whether a
/// table's rows were copied into new storage.
struct Observed {
    lock: Option<LockMode>,
    rewrote: bool,
}

/// Runs `sql` in a transaction rolled back afterwards; one PostgreSQL refuses in a transaction
/// runs on its own, and only what it leaves (new storage) can be seen: its locks end with it.
async fn observe(
    client: &tokio_postgres::Client,
    sql: &str,
    in_transaction: bool,
) -> Result<Observed, String> {
    if in_transaction {
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| e.to_string())?;
    }
    let before = Snapshot::take(client, "public")
        .await
        .map_err(|e| e.to_string())?;
    let ran = client.batch_execute(sql).await;
    let result = match ran {
        Ok(()) => {
            let after = Snapshot::take(client, "public")
                .await
                .map_err(|e| e.to_string())?;
            let truncates = sql
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("TRUNCATE");
            let (locks, rewrites) =
                before.changes(&after, &before, "_prisma_migrations", true, truncates);
            Ok(Observed {
                lock: locks
                    .unwrap_or_default()
                    .iter()
                    .filter(|l| {
                        matches!(
                            l.kind,
                            RelationKind::Table
                                | RelationKind::View
                                | RelationKind::MaterializedView
                        )
                    })
                    .map(|l| l.mode)
                    .max(),
                rewrote: rewrites
                    .iter()
                    .any(|r| r.kind == RelationKind::Table && !r.emptied),
            })
        }
        Err(e) => Err(format!(
            "{sql}: {}",
            e.as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string())
        )),
    };
    if in_transaction {
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| e.to_string())?;
    }
    result
}

#[tokio::test]
async fn every_lock_and_rewrite_the_lint_claims_is_what_postgresql_does() {
    let db = fresh_db("lint_claims").await;
    db.exec(SETUP).await;
    let client = db.client().await;
    let settings = LintSettings::default();
    let mut wrong = Vec::new();
    for sql in CASES {
        // With the database, as `lint` and `plan` run: the catalog says what the text cannot
        // (a column's type now, a function's volatility).
        let text = format!("{sql};\n");
        let sizes = catalog::table_sizes(&db.target, &touched_tables(&text))
            .await
            .unwrap_or_else(|e| panic!("{}", e.cause));
        let lint = lint_sql("case.sql", &text, &settings, &sizes);
        let claim = &lint.statements[0];
        let in_transaction = claim.transaction == TxMode::Transaction;
        let observed = match observe(&client, sql, in_transaction).await {
            Ok(o) => o,
            Err(e) => panic!("the case does not run: {e}"),
        };
        let rewrite_agrees = match claim.rewrite {
            Rewrite::Yes => observed.rewrote,
            Rewrite::No | Rewrite::Scan => !observed.rewrote,
            Rewrite::Maybe => false,
        };
        let lock_agrees = !in_transaction || claim.lock == observed.lock;
        if !lock_agrees || !rewrite_agrees {
            wrong.push(format!(
                "{sql}\n    lint:       {} / {}\n    postgresql: {} / {}",
                claim.lock.map(|l| l.name()).unwrap_or("no lock"),
                claim.rewrite.name(),
                observed.lock.map(|l| l.name()).unwrap_or("no lock"),
                if observed.rewrote {
                    "rewrites"
                } else {
                    "no rewrite"
                },
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} claims disagree with PostgreSQL:\n{}",
        wrong.len(),
        CASES.len(),
        wrong.join("\n")
    );
}

/// Dangerous changes, each with the table it needs; their recipes are linted and run.
const STAGED: &[&str] = &[
    "ALTER TABLE r RENAME COLUMN s TO s2",
    "ALTER TABLE r RENAME TO r2",
    "ALTER TABLE r DROP COLUMN s",
    "DROP TABLE r",
    "ALTER TABLE r ALTER COLUMN a TYPE bigint",
    "ALTER TABLE r ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE r ADD COLUMN req int NOT NULL",
    "ALTER TABLE r ADD CONSTRAINT r_p_fk FOREIGN KEY (p_id) REFERENCES p (id)",
    "ALTER TABLE r ADD CONSTRAINT r_a_pos CHECK (a > 0)",
    "ALTER TABLE r ADD CONSTRAINT r_a_key UNIQUE (a)",
    "CREATE INDEX r_v_idx ON r (v)",
    "DROP INDEX r_a_idx",
    "ALTER TABLE r ADD COLUMN u uuid DEFAULT gen_random_uuid()",
    "ALTER TABLE r ADD COLUMN n bigserial",
];

const STAGED_SETUP: &str = r#"
CREATE TABLE p (id int PRIMARY KEY);
INSERT INTO p SELECT g FROM generate_series(1, 200) g;
CREATE TABLE r (id int PRIMARY KEY, a int, s text, v text, p_id int);
INSERT INTO r SELECT g, g, 's', 'v', g FROM generate_series(1, 200) g;
CREATE INDEX r_a_idx ON r (a);
"#;

/// A recipe's placeholders, filled for the test table.
fn filled(sql: &str) -> String {
    sql.replace("<key range>", "id BETWEEN 1 AND 1000")
        .replace("<value>", "0")
        .replace("<type of s>", "text")
}

/// Each of pgdeck's recipes, migration by migration, as a team would apply it: each migration
/// linted with the live catalog, as `plan` does before a deploy, then run. Every step comes out
/// SAFE or NEEDS CARE, except the contract step of a drop, which stays DANGEROUS by design (it
/// destroys data, and needs a person's acknowledgement with a reason once nothing uses it).
#[tokio::test]
async fn every_recipe_step_lints_safe_or_needs_care_and_runs() {
    use pgdeck::lint::Severity;
    use pgdeck::lint::facts::facts;
    use pgdeck::lint::recipe::{Where, steps};
    use pgdeck::migrate::script::Script;

    let settings = LintSettings::default();
    let mut wrong = Vec::new();
    for change_sql in STAGED {
        let db = fresh_db("lint_recipes").await;
        db.exec(STAGED_SETUP).await;
        let client = db.client().await;
        let parse = squawk_syntax::SourceFile::parse(&format!("{change_sql};"));
        let stmt = pgdeck::migrate::script::statements_of(&parse.tree())
            .next()
            .expect("a statement");
        let recipe: Vec<_> = facts(&stmt).changes.iter().flat_map(steps).collect();
        assert!(!recipe.is_empty(), "no recipe for {change_sql}");
        let mut numbers: Vec<u8> = recipe
            .iter()
            .filter_map(|s| match s.at {
                Where::Migration(n) => Some(n),
                _ => None,
            })
            .collect();
        numbers.dedup();
        for n in numbers {
            let group: Vec<_> = recipe
                .iter()
                .filter(|s| s.at == Where::Migration(n))
                .collect();
            let sql: String = group
                .iter()
                .filter_map(|s| s.sql.as_deref())
                .map(|s| format!("{}\n", filled(s)))
                .collect();
            let contract = group.iter().any(|s| s.text.starts_with("contract"));
            let sizes = catalog::table_sizes(&db.target, &touched_tables(&sql))
                .await
                .unwrap_or_else(|e| panic!("{}", e.cause));
            let lint = lint_sql("step.sql", &sql, &settings, &sizes);
            let dangerous: Vec<String> = lint
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Dangerous)
                .map(|f| format!("{} ({})", f.rule, f.message))
                .collect();
            if !dangerous.is_empty() && !contract {
                wrong.push(format!(
                    "{change_sql}\n    migration {n}: {}\n    DANGEROUS: {}",
                    sql.trim(),
                    dangerous.join("; ")
                ));
            }
            for s in Script::parse(&sql).statements {
                if let Err(e) = client.batch_execute(&s.text).await {
                    panic!(
                        "{change_sql}: migration {n} does not run: {}: {}",
                        s.text,
                        e.as_db_error()
                            .map(|d| d.message().to_owned())
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
