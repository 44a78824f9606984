//! `pgdeck verify` through the real binary: the pending migrations rehearsed on a copy of the
//! target's schema in a scratch cluster, with the locks and rewrites PostgreSQL really took, and
//! drift between the target and what its migrations build. The target is never written.

mod common;

use std::sync::LazyLock;

use common::*;
use pgdeck::cli::exit;
use pgdeck::db::sandbox::Sandbox;
use serde_json::Value;

fn code(c: u8) -> i32 {
    i32::from(c)
}

/// A second cluster, shared by the tests of this binary, to rehearse on with `--scratch-url`
/// (each run makes and drops its own databases there). One test rehearses on a throwaway
/// cluster of its own instead, the default.
static SCRATCH: LazyLock<Sandbox> = LazyLock::new(|| {
    Sandbox::start_temporary()
        .unwrap_or_else(|e| panic!("scratch cluster: {} ({})", e.cause, e.hint))
});

fn verify(db: &TestDb, m: &Migrations, extra: &[&str]) -> Run {
    let url = SCRATCH.url("postgres");
    let mut args = vec!["verify", "--scratch-url", url.as_str()];
    args.extend_from_slice(extra);
    run(pgdeck(db, m.path(), &args))
}

fn deploy(db: &TestDb, m: &Migrations) {
    let r = run(pgdeck(db, m.path(), &["deploy"]));
    assert_eq!(r.code, 0, "{r:?}");
}

fn report(r: &Run) -> Value {
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    v["report"].clone()
}

/// What the database holds, to show a rehearsal left it as it was.
async fn fingerprint(db: &TestDb) -> String {
    db.scalar::<String>(
        "SELECT string_agg(format('%s %s %s', c.relname, c.relkind, c.relfilenode), ', ' ORDER BY c.relname) \
           || ' | ' || (SELECT count(*) FROM _prisma_migrations)::text \
           || ' | ' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum), '') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
    )
    .await
}

#[tokio::test]
async fn verify_catches_a_migration_that_only_fails_on_the_targets_real_schema() {
    let db = fresh_db("verify_catches").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_users",
        "CREATE TABLE \"User\" (id serial PRIMARY KEY, email text NOT NULL);\n",
    );
    deploy(&db, &m);
    // Someone changed production by hand.
    db.exec("ALTER TABLE \"User\" DROP COLUMN email").await;
    m.add(
        "20250201000000_email_index",
        "-- emails are unique\nCREATE UNIQUE INDEX \"User_email_key\" ON \"User\"(email);\n",
    );
    let before = fingerprint(&db).await;

    // The default: a throwaway cluster of its own.
    let r = run(pgdeck(&db, m.path(), &["verify"]));
    assert_eq!(r.code, code(exit::FAILED), "{r:?}");
    assert!(
        r.stderr.contains("scratch cluster PostgreSQL"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("20250201000000_email_index  FAILED"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("column \"email\" does not exist"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("20250201000000_email_index/migration.sql:2"),
        "the failure names its file and line: {}",
        r.stdout
    );
    assert!(r.stdout.contains("nothing was written to the target"));
    // The drift check says why: the column the migrations made is gone.
    assert!(
        r.stdout
            .contains("in the migrations but not in the database"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("public.\"User\".email"), "{}", r.stdout);

    assert_eq!(fingerprint(&db).await, before, "the target was written");
    let ledger = db.ledger().await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");

    // The same migrations pass on an empty database: only a rehearsal on the real schema
    // catches it.
    let empty = fresh_db("verify_catches_empty").await;
    deploy(&empty, &m);
}

#[tokio::test]
async fn observed_locks_and_rewrites_are_what_postgres_did() {
    let db = fresh_db("verify_observed").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_tables",
        "CREATE TABLE \"A\" (id int PRIMARY KEY, n int);\n\
         CREATE TABLE \"B\" (id int PRIMARY KEY, code varchar(20));\n\
         CREATE TABLE \"C\" (id int PRIMARY KEY);\n\
         CREATE TABLE \"D\" (id int PRIMARY KEY, n int);\n",
    );
    deploy(&db, &m);
    m.add(
        "20250201000000_widen_a",
        "ALTER TABLE \"A\" ALTER COLUMN n TYPE bigint;\n",
    );
    m.add(
        "20250202000000_widen_b",
        "ALTER TABLE \"B\" ALTER COLUMN code TYPE varchar(50);\n",
    );
    m.add(
        "20250203000000_uuid_c",
        "ALTER TABLE \"C\" ADD COLUMN uid uuid DEFAULT gen_random_uuid();\n",
    );
    m.add(
        "20250204000000_index_d",
        "CREATE INDEX \"D_n_idx\" ON \"D\"(n);\n",
    );
    let r = verify(&db, &m, &["--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let rep = report(&r);
    let pending = rep["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 4, "{rep}");
    let first = |i: usize| pending[i]["statements"][0].clone();
    let locks = |s: &Value| -> Vec<(String, String)> {
        s["locks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["relation"].as_str().unwrap().to_owned(),
                    l["mode"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let rewrites = |s: &Value| -> Vec<String> {
        s["rewrites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["relation"].as_str().unwrap().to_owned())
            .collect()
    };

    // int to bigint rewrites the table (and so its index).
    let a = first(0);
    assert!(
        locks(&a).contains(&("\"A\"".into(), "ACCESS_EXCLUSIVE".into())),
        "{a}"
    );
    assert!(rewrites(&a).contains(&"\"A\"".to_owned()), "{a}");
    // varchar(20) to varchar(50) does not.
    let b = first(1);
    assert!(
        locks(&b).contains(&("\"B\"".into(), "ACCESS_EXCLUSIVE".into())),
        "{b}"
    );
    assert!(rewrites(&b).is_empty(), "{b}");
    // A volatile default rewrites.
    let c = first(2);
    assert!(rewrites(&c).contains(&"\"C\"".to_owned()), "{c}");
    // CREATE INDEX without CONCURRENTLY takes SHARE: writes wait, reads do not.
    let d = first(3);
    assert_eq!(
        locks(&d),
        vec![("\"D\"".to_owned(), "SHARE".to_owned())],
        "{d}"
    );
    assert!(rewrites(&d).is_empty(), "{d}");

    // The human report says the same in words.
    let r = verify(&db, &m, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("observed: ACCESS EXCLUSIVE on \"A\", rewrote \"A\""),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("observed: SHARE on \"D\""),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("no drift"), "{}", r.stdout);
    // Still pending on the target.
    assert_eq!(db.ledger().await.len(), 1);
}

#[tokio::test]
async fn drift_lists_each_hand_change_on_its_side() {
    let db = fresh_db("verify_drift").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_init",
        "CREATE TYPE \"Role\" AS ENUM ('USER', 'ADMIN');\n\
         CREATE TABLE \"User\" (id serial PRIMARY KEY, name text NOT NULL, role \"Role\" NOT NULL DEFAULT 'USER');\n\
         CREATE INDEX \"User_name_idx\" ON \"User\"(name);\n",
    );
    deploy(&db, &m);
    db.exec(
        "ALTER TABLE \"User\" ADD COLUMN nickname text; \
         DROP INDEX \"User_name_idx\"; \
         ALTER TYPE \"Role\" ADD VALUE 'GUEST'",
    )
    .await;

    let r = verify(&db, &m, &["--json"]);
    assert_eq!(r.code, code(exit::SCHEMA_DRIFT), "{r:?}");
    let rep = report(&r);
    let found: Vec<(String, String, String)> = rep["drift"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["name"].as_str().unwrap().to_owned(),
                d["side"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |k: &str, n: &str, s: &str| (k.to_owned(), n.to_owned(), s.to_owned());
    assert_eq!(
        found,
        vec![
            expect("enum_value", "public.\"Role\" 'GUEST'", "only_in_database"),
            expect("column", "public.\"User\".nickname", "only_in_database"),
            expect("index", "public.\"User_name_idx\"", "only_in_migrations"),
        ],
        "{rep}"
    );
    assert_eq!(rep["drift"]["built_from"], 1);

    let r = verify(&db, &m, &[]);
    assert_eq!(r.code, code(exit::SCHEMA_DRIFT), "{r:?}");
    assert!(r.stdout.contains("DRIFT: 3 difference(s)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("in the database but not in the migrations:\n    enum value  public.\"Role\" 'GUEST'\n    column      public.\"User\".nickname  text\n"),
        "{}",
        r.stdout
    );

    // Without the drift check only the rehearsal runs, and nothing is pending.
    let r = verify(&db, &m, &["--no-drift"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("nothing pending to rehearse"),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn an_extension_nobody_can_install_fails_the_rehearsal_by_name() {
    let db = fresh_db("verify_extension").await;
    let m = Migrations::new();
    m.add("20250101000000_init", "CREATE TABLE t (id int);\n");
    deploy(&db, &m);
    m.add(
        "20250201000000_ext",
        "CREATE EXTENSION IF NOT EXISTS pgdeck_no_such_extension;\n",
    );
    // Neither the target's server nor the scratch one has it: the deploy would fail as the
    // rehearsal does (a scratch server that lacks what the target has is exit 16, unit-tested).
    let r = verify(&db, &m, &[]);
    assert_eq!(r.code, code(exit::FAILED), "{r:?}");
    assert!(
        r.stdout.contains("20250201000000_ext  FAILED")
            && r.stdout.contains("\"pgdeck_no_such_extension\""),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("panicked"));
    assert_eq!(db.ledger().await.len(), 1);
}

#[tokio::test]
async fn the_targets_own_server_is_refused_as_scratch() {
    let db = fresh_db("verify_own_server").await;
    let m = Migrations::new();
    m.add("20250101000000_init", "CREATE TABLE t (id int);\n");
    let other = db.target.with_database("postgres").to_string();
    let r = run(pgdeck(&db, m.path(), &["verify", "--scratch-url", &other]));
    r.assert_clean_error(code(exit::USAGE));
    assert!(
        r.stderr.contains("is the target's own server"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn plan_rehearse_puts_observed_facts_beside_the_claims_and_flags_disagreement() {
    let db = fresh_db("verify_plan").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_users",
        "CREATE TABLE \"User\" (id int PRIMARY KEY, n int);\n",
    );
    deploy(&db, &m);
    m.add(
        "20250201000000_changes",
        "-- what no reading of the text can know\n\
         DO $$ BEGIN EXECUTE format('ALTER TABLE %I ADD COLUMN z uuid DEFAULT gen_random_uuid()', 'Us' || 'er'); END $$;\n\
         ALTER TABLE \"User\" ALTER COLUMN n TYPE bigint;\n\
         CREATE TABLE \"Post\" (id int);\n",
    );
    let url = SCRATCH.url("postgres");
    let r = run(pgdeck(
        &db,
        m.path(),
        &["plan", "--rehearse", "--scratch-url", &url],
    ));
    assert!(
        r.code == 0 || r.code == i32::from(exit::LINT_DANGEROUS),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(
            "observed: ACCESS EXCLUSIVE on \"User\", rewrote \"User\", rebuilt index \"User_pkey\""
        ),
        "{}",
        r.stdout
    );
    // The lint cannot read dynamic SQL: it says so ("may rewrite", no disagreement there),
    // and claims no lock, which the rehearsal contradicts.
    assert!(
        r.stdout
            .contains("DISAGREES: claimed no lock, but it took ACCESS EXCLUSIVE"),
        "{}",
        r.stdout
    );
    // The type change finds the table locked already (by the statement before), and rewrites
    // it again; a table the migration made itself is nobody else's.
    assert!(
        r.stdout
            .contains("observed: no new lock on an existing relation, rewrote \"User\""),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("observed: no new lock on an existing relation\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("did otherwise on the rehearsal than claimed"),
        "{}",
        r.stdout
    );

    let r = run(pgdeck(
        &db,
        m.path(),
        &["plan", "--rehearse", "--scratch-url", &url, "--json"],
    ));
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let s = &v["plan"]["migrations"][0]["lint"]["statements"][0]["observed"];
    assert_eq!(s["disagreements"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(s["facts"]["rewrites"][0]["relation"], "\"User\"", "{v}");
    assert!(v["rehearsal"]["pending"].is_array(), "{v}");
    // Still pending on the target.
    assert_eq!(db.ledger().await.len(), 1);
}

#[tokio::test]
async fn the_staging_item_ticks_when_staging_has_the_release_and_names_what_it_lacks() {
    use common::release::{environment, workflow};
    use pgdeck::release::RehearsedOn;
    use pgdeck::release::check_rehearsed;

    let production = fresh_db("verify_staging_prod").await;
    let staging = fresh_db("verify_staging_stage").await;
    let m = Migrations::new();
    m.add("20250101000000_init", "CREATE TABLE t (id int);\n");
    deploy(&production, &m);
    deploy(&staging, &m);
    m.add("20250201000000_add_n", "ALTER TABLE t ADD COLUMN n int;\n");
    m.add("20250202000000_add_k", "ALTER TABLE t ADD COLUMN k int;\n");
    let backups = tempfile::tempdir().unwrap();
    let mut env = environment("production", &production, &m, backups.path());
    env.rehearsed_on = Some(RehearsedOn {
        name: "staging".into(),
        target: Ok(staging.target.clone()),
    });
    let check = || async {
        workflow(&env, &Default::default(), |ctx| async move {
            check_rehearsed(&ctx).await
        })
        .await
        .result
        .unwrap_or_else(|e| panic!("{} ({})", e.cause, e.hint))
    };

    // Staging is behind: both pending migrations are named.
    let c = check().await;
    assert!(!c.passed());
    assert_eq!(c.missing, ["20250201000000_add_n", "20250202000000_add_k"]);
    assert_eq!(
        c.said(),
        "not applied on staging: 20250201000000_add_n, 20250202000000_add_k"
    );

    // Staging has one of them.
    let first = Migrations::new();
    first.add("20250101000000_init", "CREATE TABLE t (id int);\n");
    first.add("20250201000000_add_n", "ALTER TABLE t ADD COLUMN n int;\n");
    deploy(&staging, &first);
    let c = check().await;
    assert_eq!(c.missing, ["20250202000000_add_k"], "{c:?}");

    // Staging is ahead: it has the release and more.
    m.add(
        "20250301000000_later",
        "ALTER TABLE t ADD COLUMN later int;\n",
    );
    deploy(&staging, &m);
    std::fs::remove_dir_all(m.path().join("20250301000000_later")).unwrap();
    let c = check().await;
    assert!(c.passed(), "{c:?}");
    assert_eq!(
        c.said(),
        "all 2 pending applied on staging with the same checksum"
    );

    // A file changed since staging ran it is not what staging tested.
    m.add(
        "20250202000000_add_k",
        "ALTER TABLE t ADD COLUMN k bigint;\n",
    );
    let c = check().await;
    assert_eq!(c.edited, ["20250202000000_add_k"], "{c:?}");
    assert!(
        c.said()
            .contains("applied on staging from a different file")
    );

    // Staging unreachable: the step says which environment and why.
    env.rehearsed_on = Some(RehearsedOn {
        name: "staging".into(),
        target: Err(pgdeck::error::Error::input(
            "environment 'staging' reads its URL from $STAGING_URL, which is not set",
            "export STAGING_URL=...",
        )),
    });
    let ran = workflow(&env, &Default::default(), |ctx| async move {
        check_rehearsed(&ctx).await
    })
    .await;
    let e = ran.refusal();
    assert!(
        e.cause.contains("'staging', cannot be reached"),
        "{}",
        e.cause
    );
    assert_eq!(
        production.ledger().await.len(),
        1,
        "nothing was deployed here"
    );
}

#[tokio::test]
async fn locks_are_seen_on_relations_renamed_dropped_or_named_from_another_search_path() {
    let db = fresh_db("verify_renamed").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_tables",
        "CREATE TABLE \"A\" (id int); CREATE TABLE \"B\" (id int); CREATE TABLE \"C\" (id int);\n",
    );
    deploy(&db, &m);
    m.add(
        "20250201000000_moves",
        "ALTER TABLE \"A\" RENAME TO \"A2\";\n\
         DROP TABLE \"B\";\n\
         SET search_path TO pg_catalog;\n\
         ALTER TABLE public.\"C\" ADD COLUMN q int;\n",
    );
    let r = verify(&db, &m, &["--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let rep = report(&r);
    let statements = rep["pending"][0]["statements"].as_array().unwrap();
    let locks_of = |i: usize| -> Vec<String> {
        statements[i]["locks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                format!(
                    "{} {}",
                    l["relation"].as_str().unwrap(),
                    l["mode"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(locks_of(0), ["\"A\" ACCESS_EXCLUSIVE"], "{rep}");
    assert_eq!(locks_of(1), ["\"B\" ACCESS_EXCLUSIVE"], "{rep}");
    assert_eq!(locks_of(3), ["\"C\" ACCESS_EXCLUSIVE"], "{rep}");
}

#[tokio::test]
async fn roles_made_by_migrations_and_populated_views_rehearse_as_they_will_run() {
    let db = fresh_db("verify_roles").await;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (applied_role, pending_role) = (format!("r_app_{tag}"), format!("r_new_{tag}"));
    let m = Migrations::new();
    m.add(
        "20250101000000_init",
        &format!(
            "CREATE ROLE {applied_role} NOLOGIN;\n\
             CREATE TABLE t (id int PRIMARY KEY, n int);\n\
             ALTER TABLE t ENABLE ROW LEVEL SECURITY;\n\
             CREATE POLICY readers ON t FOR SELECT TO {applied_role} USING (true);\n\
             CREATE MATERIALIZED VIEW counts AS SELECT count(*) AS n FROM t;\n\
             CREATE UNIQUE INDEX counts_n ON counts (n);\n"
        ),
    );
    deploy(&db, &m);
    m.add(
        "20250201000000_more",
        &format!(
            "CREATE ROLE {pending_role} NOLOGIN;\n\
             GRANT SELECT ON t TO {pending_role};\n\
             REFRESH MATERIALIZED VIEW CONCURRENTLY counts;\n"
        ),
    );
    // Roles are a cluster's, and the test cluster's roles are every test's: a scratch server
    // of this test's own, so that no other test's rehearsal mirrors this one's roles onto it.
    let own = Sandbox::start_temporary().unwrap();
    let url = own.url("postgres");
    // Twice on the same scratch server: nothing of the first run is left for the second.
    for _ in 0..2 {
        let r = run(pgdeck(&db, m.path(), &["verify", "--scratch-url", &url]));
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.contains("no drift"), "{}", r.stdout);
    }
    let scratch = pgdeck::db::connect(&own.target("postgres")).await.unwrap();
    let left: i64 = scratch
        .client
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)",
            &[&applied_role, &pending_role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the run's roles stay on the scratch server");
    let dbs: i64 = scratch
        .client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgdeck\\_verify\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dbs, 0);
    // Roles are the test cluster's: leave none behind.
    db.exec(&format!(
        "DROP POLICY IF EXISTS readers ON t; DROP OWNED BY {applied_role}; DROP ROLE {applied_role}"
    ))
    .await;
}

#[tokio::test]
async fn the_dump_gives_up_on_a_locked_table_instead_of_queueing_the_application() {
    let db = fresh_db("verify_locked").await;
    let m = Migrations::new();
    m.add("20250101000000_init", "CREATE TABLE \"Post\" (id int);\n");
    deploy(&db, &m);
    m.add(
        "20250201000000_more",
        "ALTER TABLE \"Post\" ADD COLUMN n int;\n",
    );
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE \"Post\" IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let env = ConfigEnv::write(&db, &m, "staging", "lock_timeout = \"300ms\"");
    let url = SCRATCH.url("postgres");
    let r = run(env.cmd(&["verify", "--scratch-url", &url]));
    r.assert_clean_error(code(exit::RUNTIME));
    assert!(
        r.stderr.contains("waiting for a lock on public.\"Post\""),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Monitor's lock queue"), "{}", r.stderr);
    // Nothing of the dump waits on in the target's lock queue.
    let waiting: i64 = db
        .scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgdeck%' AND wait_event_type = 'Lock'",
        )
        .await;
    assert_eq!(waiting, 0);
    holder.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn drift_sees_security_and_triggers_and_leaves_other_schemas_alone() {
    let db = fresh_db("verify_drift_rls").await;
    let m = Migrations::new();
    m.add(
        "20250101000000_init",
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text);\n\
         ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;\n\
         CREATE POLICY own ON accounts USING (owner = current_user);\n\
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n\
         CREATE TRIGGER accounts_touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION touch();\n",
    );
    deploy(&db, &m);
    let r = verify(&db, &m, &[]);
    assert_eq!(r.code, 0, "a clean target has no drift: {r:?}");
    db.exec(
        "ALTER TABLE accounts DISABLE ROW LEVEL SECURITY; \
         DROP POLICY own ON accounts; \
         ALTER TABLE accounts DISABLE TRIGGER accounts_touch; \
         CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int)",
    )
    .await;
    let r = verify(&db, &m, &["--json"]);
    assert_eq!(r.code, code(exit::SCHEMA_DRIFT), "{r:?}");
    let rep = report(&r);
    let found: Vec<String> = rep["drift"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {} {}",
                d["kind"].as_str().unwrap(),
                d["name"].as_str().unwrap(),
                d["side"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            "policy public.accounts.own only_in_migrations",
            "table public.accounts differs",
            "trigger public.accounts.accounts_touch differs",
        ],
        "{rep}"
    );
    assert_eq!(rep["drift"]["schemas"], serde_json::json!(["public"]));
}
