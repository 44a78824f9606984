//! Hostile names: quotes, semicolons and comment markers in the schema, in migration folder names,
//! in table names and in the database name. Every statement pgdeck generates quotes identifiers
//! and binds values, so each command does exactly its job and the canary table survives.

mod common;

use common::*;

const EVIL: &str = "a\"; DROP TABLE canary; --";

async fn canary_alive(db: &TestDb) -> bool {
    db.scalar::<bool>("SELECT to_regclass('public.canary') IS NOT NULL")
        .await
}

#[tokio::test]
async fn hostile_schema_migration_and_table_names_never_become_sql() {
    let db = fresh_db("injection").await;
    db.exec("CREATE TABLE public.canary (id int);").await;
    let m = Migrations::new();
    let evil_migration = format!("20250101000000_x{EVIL}");
    m.add(
        &evil_migration,
        "CREATE TABLE \"t\"\"; DROP TABLE public.canary; --\" (id int);",
    );
    std::fs::write(
        m.file(&evil_migration).with_file_name("down.sql"),
        "DROP TABLE \"t\"\"; DROP TABLE public.canary; --\";",
    )
    .unwrap();

    // The schema comes from ?schema= (percent-encoded, as in a real URL; libpq reads no '+' as
    // a space).
    let encoded =
        percent_encoding::utf8_percent_encode(EVIL, percent_encoding::NON_ALPHANUMERIC).to_string();
    let url = format!(
        "{}&schema={encoded}",
        db.url().split("&schema=").next().unwrap()
    );
    db.exec(&format!("CREATE SCHEMA {}", pgdeck::db::quote_ident(EVIL)))
        .await;
    let cmd = |args: &[&str]| {
        let mut c = pgdeck_cmd();
        c.args(["--database-url", &url, "--migrations"])
            .arg(m.path())
            .args(args);
        run(c)
    };
    for args in [
        vec!["lint"],
        vec!["plan"],
        vec!["deploy", "--yes"],
        vec!["status"],
        vec!["monitor", "--once"],
        vec!["resolve", "--applied", &evil_migration, "--yes"],
    ] {
        let r = cmd(&args);
        assert!(!r.stderr.contains("panicked"), "{args:?}: {r:?}");
        assert!(
            canary_alive(&db).await,
            "{args:?} dropped the canary: {r:?}"
        );
    }
    // The ledger is in the hostile schema, with the hostile name stored as it is.
    let name: String = db
        .scalar(&format!(
            "SELECT migration_name FROM {}._prisma_migrations WHERE finished_at IS NOT NULL",
            pgdeck::db::quote_ident(EVIL)
        ))
        .await;
    assert_eq!(name, evil_migration);
    let table: bool = db
        .scalar(&format!(
            "SELECT to_regclass('{}.\"t\"\"; DROP TABLE public.canary; --\"') IS NOT NULL",
            pgdeck::db::quote_ident(EVIL).replace('\'', "''")
        ))
        .await;
    assert!(table, "the migration created its oddly named table");

    // Revert writes and deploys a rollback for the hostile name; reset drops only its schema.
    let r = cmd(&["revert", &evil_migration, "--deploy", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(canary_alive(&db).await);
    let r = cmd(&["reset", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(canary_alive(&db).await, "reset touched another schema");
    // `new` refuses such a name outright.
    let r = cmd(&["new", EVIL]);
    r.assert_clean_error(2);
}

#[tokio::test]
async fn a_hostile_database_name_is_backed_up_restore_tested_and_restored_as_itself() {
    let Some(_) = sandbox() else {
        eprintln!(
            "PGDECK_TEST_DATABASE_URL is set: creating oddly named databases there is not ours to do"
        );
        return;
    };
    let admin = fresh_db("injection_admin").await;
    let name = format!("inj\"; DROP DATABASE {}; --", admin.name);
    admin
        .exec(&format!(
            "CREATE DATABASE {}",
            pgdeck::db::quote_ident(&name)
        ))
        .await;
    let target = admin.target.with_database(&name);
    let session = pgdeck::db::connect(&target).await.unwrap();
    session
        .client
        .batch_execute(
            "CREATE TABLE kept (id int); INSERT INTO kept SELECT generate_series(1, 10);",
        )
        .await
        .unwrap();
    drop(session);
    let url = target.to_string();
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_str().unwrap();
    let m = Migrations::new();
    let cmd = |args: &[&str]| {
        let mut c = pgdeck_cmd();
        c.args(["--database-url", &url, "--migrations"])
            .arg(m.path())
            .args(["backup", "--dir", dir])
            .args(args);
        run(c)
    };
    assert_eq!(cmd(&["create"]).code, 0);
    let verified = cmd(&["verify", "--restore-test"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    let listed = cmd(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let file = v["backups"][0]["backup"]["file"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !file.contains('"') && !file.contains(';') && !file.contains(' '),
        "{file}"
    );
    let restored = cmd(&["restore", &file, "--yes", "--terminate-sessions"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    // The database the name tried to drop is still there.
    assert_eq!(admin.scalar::<i32>("SELECT 1").await, 1);
    let back = pgdeck::db::connect(&target).await.unwrap();
    let n: i64 = back
        .client
        .query_one("SELECT count(*) FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
}
