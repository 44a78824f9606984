//! Table-driven: the runbook's SAFE and DANGEROUS cases and the expand / contract steps, each
//! with the class, the finding's rule, the lock and the rewrite pgdeck must report.

use super::facts::{LockMode, Rewrite};
use super::*;

use LockMode::*;
use Severity::*;

struct Case {
    sql: &'static str,
    class: Severity,
    /// A rule that must be among the findings of the (last) statement, if any.
    rule: Option<&'static str>,
    lock: Option<LockMode>,
    rewrite: Rewrite,
}

const fn case(
    sql: &'static str,
    class: Severity,
    rule: Option<&'static str>,
    lock: Option<LockMode>,
    rewrite: Rewrite,
) -> Case {
    Case {
        sql,
        class,
        rule,
        lock,
        rewrite,
    }
}

const CASES: &[Case] = &[
    // SAFE, as the runbook lists them.
    case(
        "CREATE TABLE \"StripeWebhookEvent\" (\"id\" TEXT NOT NULL, CONSTRAINT \"StripeWebhookEvent_pkey\" PRIMARY KEY (\"id\"));",
        Safe,
        None,
        None,
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"User\" ADD COLUMN \"newField\" TEXT;",
        Safe,
        None,
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"QRCode\" ADD COLUMN \"used\" BOOLEAN NOT NULL DEFAULT false, ADD COLUMN \"usedAt\" TIMESTAMP(3);",
        Safe,
        None,
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "CREATE INDEX CONCURRENTLY \"User_email_idx\" ON \"User\"(\"email\");",
        Safe,
        None,
        Some(ShareUpdateExclusive),
        Rewrite::No,
    ),
    case(
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"u\" ON \"User\"(\"email\");",
        Safe,
        None,
        Some(ShareUpdateExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"QRCode\" ADD CONSTRAINT \"QRCode_usedByUserId_fkey\" FOREIGN KEY (\"usedByUserId\") REFERENCES \"User\"(\"id\") NOT VALID;",
        Safe,
        None,
        Some(ShareRowExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"QRCode\" VALIDATE CONSTRAINT \"QRCode_usedByUserId_fkey\";",
        Safe,
        None,
        Some(ShareUpdateExclusive),
        Rewrite::Scan,
    ),
    case(
        "ALTER TABLE \"User\" ADD CONSTRAINT \"email_present\" CHECK (\"email\" IS NOT NULL) NOT VALID;",
        Safe,
        None,
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "CREATE TABLE q (id bigint PRIMARY KEY, owner text REFERENCES \"User\"(\"id\"));",
        Safe,
        None,
        Some(ShareRowExclusive),
        Rewrite::No,
    ),
    case(
        "DROP INDEX CONCURRENTLY IF EXISTS \"QRCode_usedByUserId_idx\";",
        Safe,
        None,
        Some(ShareUpdateExclusive),
        Rewrite::No,
    ),
    case(
        "REINDEX INDEX CONCURRENTLY \"User_email_idx\";",
        Safe,
        None,
        Some(ShareUpdateExclusive),
        Rewrite::No,
    ),
    case(
        "CREATE TYPE \"Role\" AS ENUM ('USER', 'ADMIN');",
        Safe,
        None,
        None,
        Rewrite::No,
    ),
    case(
        "CREATE VIEW active_users AS SELECT * FROM \"User\";",
        Safe,
        None,
        Some(AccessShare),
        Rewrite::No,
    ),
    case(
        "COMMENT ON TABLE \"User\" IS 'people';",
        Safe,
        None,
        Some(ShareUpdateExclusive),
        Rewrite::No,
    ),
    case(
        "INSERT INTO \"User\" (id, email) VALUES ('1', 'a@b.c');",
        Safe,
        None,
        Some(RowExclusive),
        Rewrite::No,
    ),
    case(
        "VACUUM ANALYZE \"User\";",
        Safe,
        None,
        Some(ShareUpdateExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"User\" ALTER COLUMN \"email\" SET STATISTICS 500;",
        Safe,
        None,
        Some(ShareUpdateExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"User\" ALTER COLUMN \"name\" SET DEFAULT 'anonymous';",
        Safe,
        None,
        Some(AccessExclusive),
        Rewrite::No,
    ),
    // A table created earlier in the same migration is new and empty.
    case(
        "CREATE TABLE t (id bigint); CREATE INDEX t_id ON t (id);",
        Safe,
        None,
        Some(Share),
        Rewrite::Scan,
    ),
    case(
        "CREATE TABLE t (id bigint, a text); ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
        Safe,
        None,
        Some(AccessExclusive),
        Rewrite::Scan,
    ),
    // DANGEROUS, as the runbook lists them.
    case(
        "ALTER TABLE \"User\" DROP COLUMN \"email\";",
        Dangerous,
        Some("ban-drop-column"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"QRCode\" DROP COLUMN IF EXISTS \"used\";",
        Dangerous,
        Some("ban-drop-column"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "DROP TABLE \"StripeWebhookEvent\";",
        Dangerous,
        Some("ban-drop-table"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "DROP TABLE IF EXISTS a, b CASCADE;",
        Dangerous,
        Some("ban-drop-table"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"User\" RENAME COLUMN \"phone\" TO \"phoneNumber\";",
        Dangerous,
        Some("renaming-column"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"User\" RENAME TO \"Person\";",
        Dangerous,
        Some("renaming-table"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"User\" ALTER COLUMN \"age\" TYPE bigint;",
        Dangerous,
        Some("changing-column-type"),
        Some(AccessExclusive),
        Rewrite::Maybe,
    ),
    case(
        "ALTER TABLE \"User\" ALTER COLUMN \"age\" SET DATA TYPE text USING \"age\"::text;",
        Dangerous,
        Some("changing-column-type"),
        Some(AccessExclusive),
        Rewrite::Maybe,
    ),
    case(
        "ALTER TABLE \"User\" ALTER COLUMN \"newEmail\" SET NOT NULL;",
        Dangerous,
        Some("adding-not-nullable-field"),
        Some(AccessExclusive),
        Rewrite::Scan,
    ),
    case(
        "ALTER TABLE \"User\" ADD COLUMN \"phoneNumber\" TEXT NOT NULL;",
        Dangerous,
        Some("adding-required-field"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "CREATE INDEX \"User_email_idx\" ON \"User\"(\"email\");",
        Dangerous,
        Some("require-concurrent-index-creation"),
        Some(Share),
        Rewrite::Scan,
    ),
    case(
        "CREATE UNIQUE INDEX \"User_email_key\" ON \"User\"(\"email\");",
        Dangerous,
        Some("require-concurrent-index-creation"),
        Some(Share),
        Rewrite::Scan,
    ),
    case(
        "ALTER TABLE \"User\" ADD COLUMN \"token\" uuid DEFAULT gen_random_uuid();",
        Dangerous,
        Some("adding-field-with-default"),
        Some(AccessExclusive),
        Rewrite::Yes,
    ),
    case(
        "ALTER TABLE \"User\" ADD CONSTRAINT \"User_email_key\" UNIQUE (\"email\");",
        Dangerous,
        Some("disallowed-unique-constraint"),
        Some(AccessExclusive),
        Rewrite::Scan,
    ),
    case(
        "ALTER TABLE \"User\" SET SCHEMA archive;",
        Dangerous,
        Some("ban-set-schema"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "TRUNCATE \"StripeWebhookEvent\";",
        Dangerous,
        Some("truncate"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "VACUUM FULL \"User\";",
        Dangerous,
        Some("vacuum-full"),
        Some(AccessExclusive),
        Rewrite::Yes,
    ),
    case(
        "REINDEX TABLE \"User\";",
        Dangerous,
        Some("require-concurrent-reindex"),
        Some(Share),
        Rewrite::Scan,
    ),
    case(
        "DROP SCHEMA legacy CASCADE;",
        Dangerous,
        Some("ban-drop-schema"),
        None,
        Rewrite::No,
    ),
    // NEEDS CARE.
    case(
        "ALTER TABLE \"QRCode\" ADD CONSTRAINT \"QRCode_usedByUserId_fkey\" FOREIGN KEY (\"usedByUserId\") REFERENCES \"User\"(\"id\");",
        Care,
        Some("adding-foreign-key-constraint"),
        Some(ShareRowExclusive),
        Rewrite::Scan,
    ),
    case(
        "ALTER TABLE \"User\" ADD CONSTRAINT \"email_present\" CHECK (\"email\" IS NOT NULL);",
        Care,
        Some("constraint-missing-not-valid"),
        Some(AccessExclusive),
        Rewrite::Scan,
    ),
    case(
        "DROP INDEX \"QRCode_usedByUserId_idx\";",
        Care,
        Some("require-concurrent-index-deletion"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "UPDATE \"User\" SET \"newEmail\" = \"email\";",
        Care,
        Some("backfill"),
        Some(RowExclusive),
        Rewrite::No,
    ),
    case(
        "DELETE FROM \"StripeWebhookEvent\" WHERE \"processedAt\" < now() - interval '90 days';",
        Care,
        Some("delete"),
        Some(RowExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"User\" ALTER COLUMN \"email\" DROP NOT NULL;",
        Care,
        Some("ban-drop-not-null"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE \"QRCode\" DROP CONSTRAINT \"QRCode_ownerId_fkey\";",
        Care,
        Some("ban-drop-constraint"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "CREATE TRIGGER audit AFTER UPDATE ON \"User\" FOR EACH ROW EXECUTE FUNCTION audit();",
        Care,
        Some("create-trigger"),
        Some(ShareRowExclusive),
        Rewrite::No,
    ),
    case(
        "REFRESH MATERIALIZED VIEW stats;",
        Care,
        Some("refresh-materialized-view"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "DROP VIEW active_users;",
        Care,
        Some("ban-drop-view"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
    case(
        "ALTER TABLE parent DETACH PARTITION p2024;",
        Care,
        Some("require-concurrent-partition-detach"),
        Some(AccessExclusive),
        Rewrite::No,
    ),
];

fn lint(sql: &str) -> FileLint {
    lint_sql("case.sql", sql, &LintSettings::default(), &Sizes::new())
}

#[test]
fn every_runbook_case_gets_its_class_lock_and_rewrite() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for c in CASES {
        let r = lint(c.sql);
        assert!(
            r.syntax_errors.is_empty(),
            "{}: {:?}",
            c.sql,
            r.syntax_errors
        );
        let last = r.statements.last().expect("a statement");
        let rules: Vec<&str> = r
            .findings
            .iter()
            .filter(|f| f.statement == Some(last.index - 1))
            .map(|f| f.rule.as_str())
            .collect();
        let got = (last.class, last.lock, last.rewrite);
        if got != (c.class, c.lock, c.rewrite) || c.rule.is_some_and(|rule| !rules.contains(&rule))
        {
            failures.push(format!(
                "{}\n    want {:?} {:?} {:?} {:?}\n    got  {got:?} {rules:?}",
                c.sql, c.class, c.lock, c.rewrite, c.rule
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn every_dangerous_change_carries_a_recipe_with_its_names() {
    let cases = [
        (
            "ALTER TABLE \"User\" RENAME COLUMN \"phone\" TO \"phoneNumber\";",
            "ADD COLUMN \"phoneNumber\"",
        ),
        (
            "ALTER TABLE \"User\" DROP COLUMN \"email\";",
            "DROP COLUMN \"email\"",
        ),
        (
            "ALTER TABLE \"User\" ALTER COLUMN \"newEmail\" SET NOT NULL;",
            "CHECK (\"newEmail\" IS NOT NULL) NOT VALID",
        ),
        (
            "ALTER TABLE \"User\" ADD COLUMN \"phoneNumber\" TEXT NOT NULL;",
            "ADD COLUMN \"phoneNumber\" TEXT;",
        ),
        (
            "ALTER TABLE \"User\" ALTER COLUMN \"age\" TYPE bigint;",
            "ADD COLUMN \"age_new\" bigint",
        ),
        (
            "CREATE INDEX \"User_email_idx\" ON \"User\"(\"email\");",
            "CREATE INDEX CONCURRENTLY \"User_email_idx\"",
        ),
        (
            "DROP TABLE \"StripeWebhookEvent\";",
            "\"StripeWebhookEvent_deprecated\"",
        ),
        (
            "ALTER TABLE \"User\" RENAME TO \"Person\";",
            "CREATE VIEW \"User\" AS SELECT * FROM \"Person\"",
        ),
    ];
    for (sql, expected) in cases {
        let r = lint(sql);
        let dangerous: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.severity == Dangerous)
            .collect();
        assert!(!dangerous.is_empty(), "{sql}");
        for f in dangerous {
            assert!(
                f.recipe.iter().any(|step| step.contains(expected)),
                "{sql}: {:#?}",
                f.recipe
            );
        }
    }
}

#[test]
fn squawk_ignore_silences_what_needs_care_and_pgdeck_allow_acknowledges_with_a_reason() {
    let care = "DROP INDEX \"User_email_key\";";
    let rule = "require-concurrent-index-deletion";
    assert!(lint(care).findings.iter().any(|f| f.rule == rule));
    for ignore in [
        format!("-- squawk-ignore {rule}"),
        "-- squawk-ignore".into(),
        "-- squawk-ignore-file".into(),
    ] {
        let ignored = lint(&format!("{ignore}\n{care}"));
        assert!(
            ignored.findings.iter().all(|f| f.rule != rule),
            "{ignore}: {:#?}",
            ignored.findings
        );
    }

    // A comment without a reason does not wave a DANGEROUS change through: it stays, marked.
    for ignore in [
        "-- squawk-ignore ban-drop-column",
        "-- squawk-ignore drop-column",
        "-- squawk-ignore-file",
    ] {
        let kept = lint(&format!(
            "{ignore}\nALTER TABLE \"User\" DROP COLUMN \"email\";"
        ));
        assert_eq!(kept.worst_unacknowledged(), Some(Dangerous), "{ignore}");
        let f = kept
            .findings
            .iter()
            .find(|f| f.severity == Dangerous)
            .unwrap();
        assert!(
            f.adjustment
                .as_deref()
                .is_some_and(|a| a.contains("does not silence a DANGEROUS finding")),
            "{ignore}: {f:#?}"
        );
    }

    for name in ["ban-drop-column", "drop-column"] {
        let allowed = lint(&format!(
            "-- pgdeck:allow {name} v42 no longer reads it\nALTER TABLE \"User\" DROP COLUMN \"email\";"
        ));
        let f = &allowed.findings[0];
        assert_eq!(
            f.acknowledged.as_deref(),
            Some("v42 no longer reads it"),
            "{name}"
        );
        assert_eq!(allowed.worst_unacknowledged(), None, "{name}");
    }

    let no_reason =
        lint("-- pgdeck:allow ban-drop-column\nALTER TABLE \"User\" DROP COLUMN \"email\";");
    assert_eq!(no_reason.worst_unacknowledged(), Some(Dangerous));
    assert!(
        no_reason
            .findings
            .iter()
            .any(|f| f.rule == "pgdeck-allow-without-reason")
    );

    // An acknowledgement covers the statement after it, not the whole file.
    let later = lint(
        "-- pgdeck:allow ban-drop-column reason\nALTER TABLE a DROP COLUMN x;\nALTER TABLE b DROP COLUMN y;",
    );
    assert_eq!(later.worst_unacknowledged(), Some(Dangerous));

    let mut cli = lint("ALTER TABLE \"User\" DROP COLUMN \"email\";");
    cli.acknowledge("ban-drop-column", "approved in CHG-1234");
    assert_eq!(cli.worst_unacknowledged(), None);
}

#[test]
fn timeout_rules_appear_only_when_the_runner_does_not_set_lock_timeout() {
    let sql = "ALTER TABLE \"User\" ADD COLUMN \"x\" text;";
    let on = lint_sql("a.sql", sql, &LintSettings::default(), &Sizes::new());
    assert!(
        on.findings.iter().all(|f| !f.rule.contains("timeout")),
        "{:#?}",
        on.findings
    );
    let off = LintSettings {
        runner_lock_timeout: false,
        ..LintSettings::default()
    };
    let r = lint_sql("a.sql", sql, &off, &Sizes::new());
    let rules: Vec<_> = r.findings.iter().map(|f| f.rule.as_str()).collect();
    assert!(
        rules.contains(&"require-lock-timeout") && rules.contains(&"require-statement-timeout"),
        "{rules:?}"
    );
}

#[test]
fn include_and_exclude_change_the_rule_set() {
    let sql = "ALTER TABLE \"User\" DROP COLUMN \"email\";";
    let excluded = LintSettings {
        exclude: vec![Rule::BanDropColumn],
        ..LintSettings::default()
    };
    let r = lint_sql("a.sql", sql, &excluded, &Sizes::new());
    assert!(
        r.findings.iter().all(|f| f.rule != "ban-drop-column"),
        "{:#?}",
        r.findings
    );

    let opt_in = LintSettings {
        include: vec![Rule::RequireTableSchema],
        ..LintSettings::default()
    };
    let r = lint_sql(
        "a.sql",
        "CREATE TABLE t (id bigint);",
        &opt_in,
        &Sizes::new(),
    );
    assert!(
        r.findings.iter().any(|f| f.rule == "require-table-schema"),
        "{:#?}",
        r.findings
    );
}

#[test]
fn live_sizes_raise_and_lower_blocking_findings_but_not_breaking_ones() {
    let settings = LintSettings::default();
    let sizes = |rows: i64, bytes: i64| live("\"User\"", rows, bytes, &[]);
    let fk = "ALTER TABLE \"User\" ADD CONSTRAINT c CHECK (\"email\" <> '');";
    let index = "CREATE INDEX i ON \"User\" (\"email\");";
    let drop = "ALTER TABLE \"User\" DROP COLUMN \"email\";";
    let big = sizes(2_000_000, 400 << 20);
    let empty = sizes(0, 16 << 10);
    let class = |sql: &str, s: &Sizes| lint_sql("a.sql", sql, &settings, s).statements[0].class;
    assert_eq!(class(fk, &big), Dangerous);
    assert_eq!(class(fk, &empty), Care);
    assert_eq!(class(index, &big), Dangerous);
    assert_eq!(class(index, &empty), Care);
    assert_eq!(
        class(drop, &empty),
        Dangerous,
        "dropping a column breaks code whatever the size"
    );
    let raised = lint_sql("a.sql", fk, &settings, &big);
    let raised = raised
        .findings
        .iter()
        .find(|f| f.severity == Dangerous)
        .unwrap();
    assert!(
        raised
            .adjustment
            .as_deref()
            .unwrap_or("")
            .contains("~2.0M rows"),
        "{raised:?}"
    );
}

#[test]
fn offline_type_changes_are_judged_from_the_types_the_earlier_migrations_declared() {
    let settings = LintSettings::default();
    let mut declared = Declared::new();
    let first = r#"CREATE TABLE "User" ("id" SERIAL NOT NULL, "name" VARCHAR(20), "price" DECIMAL(10,2), "role" "Role");"#;
    let created = lint_sql_in_order("1.sql", first, &settings, &Sizes::new(), &mut declared);
    assert_eq!(created.statements[0].class, Safe);
    let judged = |sql: &str, declared: &mut Declared| {
        let mut d = declared.clone();
        let l = lint_sql_in_order("2.sql", sql, &settings, &Sizes::new(), &mut d);
        (l.statements[0].class, l.statements[0].rewrite, l)
    };
    let widen = r#"ALTER TABLE "User" ALTER COLUMN "name" TYPE VARCHAR(50);"#;
    let (class, rewrite, l) = judged(widen, &mut declared);
    assert_eq!((class, rewrite), (Care, Rewrite::No), "{l:?}");
    // squawk's finding on it follows the verdict, and says why.
    let f = &l.findings[0];
    assert_eq!(
        (f.rule.as_str(), f.severity),
        ("changing-column-type", Care)
    );
    assert!(
        f.adjustment
            .as_deref()
            .unwrap_or("")
            .contains("VARCHAR(20) (the earlier migrations)"),
        "{f:?}"
    );
    for (sql, expect) in [
        (
            r#"ALTER TABLE "User" ALTER COLUMN "name" TYPE text;"#,
            (Care, Rewrite::No),
        ),
        (
            r#"ALTER TABLE "User" ALTER COLUMN "price" TYPE DECIMAL(12,2);"#,
            (Care, Rewrite::No),
        ),
        (
            r#"ALTER TABLE "User" ALTER COLUMN "name" TYPE VARCHAR(10);"#,
            (Dangerous, Rewrite::Yes),
        ),
        (
            r#"ALTER TABLE "User" ALTER COLUMN "id" TYPE BIGINT;"#,
            (Dangerous, Rewrite::Yes),
        ),
        (
            r#"ALTER TABLE "User" ALTER COLUMN "id" TYPE INTEGER;"#,
            (Care, Rewrite::No),
        ),
        // A user type, and a column no migration declared: undecided.
        (
            r#"ALTER TABLE "User" ALTER COLUMN "role" TYPE text;"#,
            (Dangerous, Rewrite::Maybe),
        ),
        (
            r#"ALTER TABLE "User" ALTER COLUMN "other" TYPE text;"#,
            (Dangerous, Rewrite::Maybe),
        ),
        (
            r#"ALTER TABLE "Post" ALTER COLUMN "name" TYPE text;"#,
            (Dangerous, Rewrite::Maybe),
        ),
        (
            r#"ALTER TABLE "User" ALTER COLUMN "name" TYPE text USING "name"::text;"#,
            (Dangerous, Rewrite::Yes),
        ),
    ] {
        let (class, rewrite, l) = judged(sql, &mut declared);
        assert_eq!((class, rewrite), expect, "{sql}: {l:?}");
    }
    // The file's own changes carry on to the next one.
    let second = r#"ALTER TABLE "User" RENAME COLUMN "name" TO "fullName";"#;
    lint_sql_in_order("2.sql", second, &settings, &Sizes::new(), &mut declared);
    let (class, rewrite, _) = judged(
        r#"ALTER TABLE "User" ALTER COLUMN "fullName" TYPE VARCHAR(30);"#,
        &mut declared,
    );
    assert_eq!((class, rewrite), (Care, Rewrite::No));
    // The live catalog, when it knows the column, wins over the migrations, and a brief
    // catalog-only change is not raised by the table's size.
    let live = live(
        "\"User\"",
        5_000_000,
        2 << 30,
        &[("name", "character varying(100)")],
    );
    let mut d = declared.clone();
    let l = lint_sql_in_order("3.sql", widen, &settings, &live, &mut d);
    assert_eq!(
        l.statements[0].rewrite,
        Rewrite::Yes,
        "100 -> 50 narrows: {l:?}"
    );
    let mut d = declared.clone();
    let l = lint_sql_in_order(
        "3.sql",
        r#"ALTER TABLE "User" ALTER COLUMN "name" TYPE VARCHAR(200);"#,
        &settings,
        &live,
        &mut d,
    );
    assert_eq!(
        (l.statements[0].class, l.statements[0].rewrite),
        (Care, Rewrite::No),
        "{l:?}"
    );
}

#[test]
fn binary_coercible_casts_from_the_catalog_settle_extension_types() {
    let settings = LintSettings::default();
    let mut sizes = live("t", 10, 8192, &[("c", "text")]);
    let sql = "ALTER TABLE t ALTER COLUMN c TYPE citext;";
    let l = lint_sql("a.sql", sql, &settings, &sizes);
    assert_eq!(l.statements[0].rewrite, Rewrite::Maybe);
    sizes.add_binary_cast("text".into(), "citext".into());
    let l = lint_sql("a.sql", sql, &settings, &sizes);
    assert_eq!(l.statements[0].rewrite, Rewrite::No, "{l:?}");
}

#[test]
fn syntax_errors_have_positions_and_empty_files_are_flagged() {
    let r = lint("CREATE TABLE ok (id int);\nALTER TABLE \"User\" ADD COLUMN;\n");
    assert_eq!(r.syntax_errors[0].line, 2, "{:?}", r.syntax_errors);
    let empty = lint("-- nothing here\n");
    assert_eq!(empty.findings[0].rule, "empty-migration");
}

#[test]
fn touched_tables_skip_tables_created_in_the_same_script() {
    let t = touched_tables(
        "CREATE TABLE n (id int); CREATE INDEX i ON n (id); CREATE INDEX j ON \"User\" (a); ALTER TABLE q ADD CONSTRAINT f FOREIGN KEY (u) REFERENCES \"User\"(id);",
    );
    assert_eq!(t, ["\"User\"", "q"]);
}

#[test]
fn every_dangerous_finding_comes_with_a_recipe_using_real_names() {
    let mut missing = Vec::new();
    for c in CASES {
        for f in lint(c.sql).findings {
            if f.severity == Dangerous && f.recipe.is_empty() {
                missing.push(format!("{} ({})", c.sql, f.rule));
            }
            for step in &f.recipe {
                assert!(
                    !step.contains("(...)") && !step.contains("<constraint>"),
                    "{}: a placeholder where the statement has the name: {step}",
                    c.sql
                );
            }
        }
    }
    assert!(missing.is_empty(), "no recipe:\n{}", missing.join("\n"));
}

#[test]
fn the_not_null_path_in_one_file_scans_nothing_at_set_not_null_but_validates_under_the_add_lock() {
    let r = lint(
        "ALTER TABLE \"User\" ADD CONSTRAINT \"User_email_not_null\" CHECK (\"email\" IS NOT NULL) NOT VALID;\n\
         ALTER TABLE \"User\" VALIDATE CONSTRAINT \"User_email_not_null\";\n\
         ALTER TABLE \"User\" ALTER COLUMN \"email\" SET NOT NULL;\n",
    );
    let set = &r.statements[2];
    assert_eq!(set.rewrite, Rewrite::No);
    assert!(set.class < Dangerous, "{:?}", r.findings);
    let validate: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.statement == Some(1) && f.severity == Dangerous)
        .collect();
    assert_eq!(validate.len(), 1, "{:?}", r.findings);
    assert_eq!(validate[0].rule, "validate-in-same-migration");
    assert!(validate[0].recipe[0].contains("in a migration of its own"));
    // Validated in a migration before, SET NOT NULL is cheap on its own too once the catalog
    // says so (tests/lint_claims.rs runs that against the server).
}

#[test]
fn constraint_recipes_carry_the_constraint_as_written() {
    let r = lint(
        "ALTER TABLE \"QRCode\" ADD CONSTRAINT \"QRCode_ownerId_fkey\" FOREIGN KEY (\"ownerId\") REFERENCES \"User\"(\"id\") ON DELETE CASCADE;",
    );
    let recipe = r
        .findings
        .iter()
        .flat_map(|f| f.recipe.clone())
        .collect::<Vec<_>>()
        .join("\n");
    let r2 = lint_sql(
        "a.sql",
        "ALTER TABLE \"QRCode\" ADD CONSTRAINT \"QRCode_ownerId_fkey\" FOREIGN KEY (\"ownerId\") REFERENCES \"User\"(\"id\") ON DELETE CASCADE;",
        &LintSettings::default(),
        &big("\"QRCode\""),
    );
    let recipe2 = r2
        .findings
        .iter()
        .flat_map(|f| f.recipe.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        recipe2.contains(
            "ADD CONSTRAINT \"QRCode_ownerId_fkey\" FOREIGN KEY (\"ownerId\") REFERENCES \"User\"(\"id\") ON DELETE CASCADE NOT VALID;"
        ),
        "{recipe}\n{recipe2}"
    );
    assert!(
        recipe2.contains("Migration 2: validate in a migration of its own"),
        "{recipe2}"
    );
}

/// Live sizes that make `table` large, so blocking findings are DANGEROUS.
fn big(table: &str) -> Sizes {
    live(table, 5_000_000, 2 << 30, &[])
}

/// What the live catalog would say of one table: its rows, bytes and column types.
fn live(table: &str, rows: i64, bytes: i64, columns: &[(&str, &str)]) -> Sizes {
    let columns = columns
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect();
    [(
        table.to_owned(),
        TableSize {
            table: table.to_owned(),
            rows: Some(rows),
            bytes,
            columns,
            not_null_checks: Vec::new(),
        },
    )]
    .into_iter()
    .collect()
}

/// A data load of some 400 KB with schema changes between its INSERTs: every kind of judgement
/// that reads across statements (tables created earlier, declared types, acknowledgements,
/// squawk's ignores, live sizes) and data statements raised by size.
fn mixed_load(broken: Option<&str>) -> String {
    let mut sql = String::from(
        "-- pgdeck:allow ban-drop-column the column was never read\n\
         ALTER TABLE \"User\" DROP COLUMN \"legacy\";\n\
         CREATE TABLE \"Country\" (\"id\" TEXT NOT NULL, \"code\" VARCHAR(20), CONSTRAINT \"Country_pkey\" PRIMARY KEY (\"id\"));\n",
    );
    for batch in 0..40 {
        sql.push_str(&format!(
            "-- squawk-ignore prefer-bigint-over-int\n\
             ALTER TABLE \"User\" ADD COLUMN \"n{batch}\" INTEGER;\n\
             CREATE INDEX \"Country_code_{batch}_idx\" ON \"Country\"(\"code\");\n\
             ALTER TABLE \"Country\" ALTER COLUMN \"code\" TYPE VARCHAR({});\n\
             UPDATE \"User\" SET \"n{batch}\" = 0;\n\
             DELETE FROM \"User\";\n",
            21 + batch
        ));
        sql.push_str("INSERT INTO \"Country\" (\"id\", \"code\") VALUES\n");
        for j in 0..300 {
            let end = if j == 299 { ";" } else { "," };
            sql.push_str(&format!(
                "    ('c{batch}_{j}', 'Ç;{j:03}'){end} -- row {j}\n"
            ));
        }
        if batch == 30
            && let Some(broken) = broken
        {
            sql.push_str(broken);
        }
    }
    sql
}

#[test]
fn a_large_file_linted_in_parts_reads_exactly_as_linted_whole() {
    let settings = LintSettings::default();
    let sizes = live(
        "\"User\"",
        5_000_000,
        2 << 30,
        &[("legacy", "text"), ("n0", "integer")],
    );
    // The last file runs outside a transaction (CONCURRENTLY): squawk's rules are told so, and
    // do not ask for the index to be built outside one.
    let concurrently = "CREATE INDEX CONCURRENTLY \"Country_late_idx\" ON \"Country\"(\"code\");\n";
    for (broken, tail) in [
        (None, ""),
        (Some("INSERT INTO \"Country\" VALUES (1,);\n"), ""),
        (None, concurrently),
    ] {
        let sql = mixed_load(broken) + tail;
        assert!(sql.len() > 300 << 10);
        let cut = parts::cut(&sql, 2).expect("the file is cut");
        assert_eq!(cut.len(), 3);
        let lint = |workers: usize| {
            let mut declared = Declared::new();
            let lint = lint_with_workers("a.sql", &sql, &settings, &sizes, &mut declared, workers);
            (
                serde_json::to_value(&lint).expect("serialize"),
                declared.column("\"Country\"", "code").map(str::to_owned),
            )
        };
        let whole = lint(1);
        for workers in [2, 3, 8] {
            assert_eq!(
                lint(workers),
                whole,
                "{workers} workers, broken: {broken:?}"
            );
        }
        let findings = whole.0["findings"].as_array().expect("findings");
        if broken.is_some() {
            assert!(!whole.0["syntax_errors"].as_array().unwrap().is_empty());
            assert_eq!(whole.1, None, "a file that does not parse declares nothing");
            continue;
        }
        // The judgements that read across statements are there to compare.
        let rules: Vec<&str> = findings.iter().filter_map(|f| f["rule"].as_str()).collect();
        assert!(
            !rules.contains(&"ban-concurrent-index-creation-in-transaction"),
            "{rules:?}"
        );
        assert!(rules.contains(&"ban-drop-column"), "{rules:?}");
        assert!(findings.iter().any(|f| f["acknowledged"].is_string()));
        assert!(
            !rules.contains(&"prefer-bigint-over-int"),
            "ignored: {rules:?}"
        );
        assert!(
            findings.iter().any(|f| {
                f["adjustment"].as_str().is_some_and(|a| {
                    a.contains("earlier migrations") || a.contains("created earlier")
                })
            }),
            "declared types and new tables judged across statements"
        );
        assert!(
            findings.iter().any(|f| f["adjustment"]
                .as_str()
                .is_some_and(|a| a.contains("is large"))),
            "data statements raised by size"
        );
        assert_eq!(whole.1.as_deref(), Some("VARCHAR(60)"));
    }
}
