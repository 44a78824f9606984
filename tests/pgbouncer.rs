//! PgBouncer for real (Debian's `pgbouncer`), started by the harness on a free port in front of
//! the test cluster in transaction pooling: the monitor shows its pools from the admin console,
//! `health` takes its connection figure from the pool, a deploy through it is refused with the
//! hint to use the direct URL, and a deploy through the direct URL works.

mod common;

use common::*;
use pgdeck::cli::exit;
use pgdeck::db::{self, sandbox::Bouncer};
use pgdeck::target::{DbTarget, ProcessVars};
use serde_json::Value;

fn bouncer(mode: &str) -> Bouncer {
    let server = sandbox().expect(
        "the PgBouncer tests start PgBouncer in front of the test sandbox: unset PGDECK_TEST_DATABASE_URL",
    );
    Bouncer::start(server, mode, 5).unwrap_or_else(|e| panic!("{}\nhint: {}", e.cause, e.hint))
}

/// A client session through the pooler, kept open so that its pool shows.
async fn through(b: &Bouncer, db: &TestDb) -> tokio_postgres::Client {
    let target = DbTarget::from_url(&b.url(&db.name), &ProcessVars).unwrap();
    let (client, _ended) = db::connect_bare(&target)
        .await
        .unwrap_or_else(|e| panic!("through pgbouncer: {}", e.cause));
    client.simple_query("SELECT 1").await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_shows_pgbouncers_pools_and_health_counts_connections_by_the_pool() {
    let b = bouncer("transaction");
    let db = fresh_db("pools_shown").await;
    let _app = through(&b, &db).await;
    let m = Migrations::new();
    let env = ConfigEnv::write(
        &db,
        &m,
        "staging",
        &format!(
            "pgbouncer_admin_url = \"{}\"\npool_alert_pct = 10\n[environments.staging.health]\nwindow = \"1s\"\nprobe_samples = 2\n",
            b.admin_url()
        ),
    );
    let out = run(env.cmd(&["monitor", "--once", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s: Value = serde_json::from_str::<Value>(&out.stdout).unwrap()["snapshot"].clone();
    assert_eq!(s["pools"]["state"], "ok", "{}", s["pools"]);
    let pools = s["pools"]["data"]["pools"].as_array().unwrap();
    let pool = pools
        .iter()
        .find(|p| p["database"] == db.name.as_str())
        .unwrap_or_else(|| panic!("the test database's pool: {pools:?}"));
    assert_eq!(pool["user"], "postgres");
    assert_eq!(pool["pool_mode"], "transaction");
    assert_eq!(pool["pool_size"], 5);
    // One client, idle between transactions: its server went back to the pool.
    assert_eq!(pool["clients_active"], 1, "{pool}");
    assert_eq!(pool["clients_waiting"], 0, "{pool}");
    assert_eq!(pool["servers_idle"], 1, "{pool}");

    // A transaction held open takes a server: 1 of 5 is 20 %, past the 10 % alert set here.
    let held = through(&b, &db).await;
    held.simple_query("BEGIN; SELECT 1").await.unwrap();
    let out = run(env.cmd(&["monitor", "--once"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("PGBOUNCER POOLS"), "{}", out.stdout);
    assert!(out.stdout.contains(&db.name), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("ALERT: pool {}/postgres 20 % utilised", db.name)),
        "{}",
        out.stdout
    );

    let out = run(env.cmd(&["health", "--json"]));
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("health JSON ({e}):\n{}\n{}", out.stdout, out.stderr));
    let checks = report["report"]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("checks: {report}"));
    let conn = checks
        .iter()
        .find(|c| c["kind"] == "connections")
        .unwrap_or_else(|| panic!("{checks:?}"));
    assert_eq!(conn["name"], "connections (pool)", "{conn}");
    assert!(
        conn["value"]
            .as_str()
            .unwrap()
            .contains("1 of 5 servers active"),
        "{conn}"
    );
    assert!(
        checks.iter().any(|c| c["kind"] == "replication"),
        "{checks:?}"
    );
    held.simple_query("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_through_transaction_pooling_is_refused_and_the_direct_url_deploys() {
    let b = bouncer("transaction");
    let db = fresh_db("pooled_deploy").await;
    let m = Migrations::new();
    m.add("20240101000000_init", "CREATE TABLE t (id int);");

    let mut pooled = pgdeck_cmd();
    pooled
        .arg("--database-url")
        .arg(b.url(&db.name))
        .arg("--migrations")
        .arg(m.path())
        .arg("deploy");
    let out = run(pooled);
    out.assert_clean_error(exit::REFUSED as i32);
    assert!(
        out.stderr
            .contains("connection pooler in transaction pooling"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("direct_url"), "{}", out.stderr);
    assert!(!db.table_exists("t").await);
    assert!(!db.table_exists("_prisma_migrations").await);

    // resolve and reset take the migration lock too.
    for args in [
        &["resolve", "--applied", "20240101000000_init"][..],
        &["reset", "--yes"][..],
    ] {
        let mut c = pgdeck_cmd();
        c.arg("--database-url")
            .arg(b.url(&db.name))
            .arg("--migrations")
            .arg(m.path())
            .args(args);
        let out = run(c);
        assert_eq!(out.code, exit::REFUSED as i32, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("pooler"), "{args:?}: {}", out.stderr);
    }

    // The environment's application URL goes through the pooler; its direct_url is the
    // server's own: pgdeck uses that.
    let config = m.path().join("pgdeck.toml");
    std::fs::write(
        &config,
        format!(
            "[environments.staging]\ndatabase_url = \"{}\"\ndirect_url = \"{}\"\n",
            b.url(&db.name),
            db.url()
        ),
    )
    .unwrap();
    let mut direct = pgdeck_cmd();
    direct
        .arg("--config")
        .arg(&config)
        .args(["--env", "staging", "--migrations"])
        .arg(m.path())
        .args(["deploy", "--json"]);
    let out = run(direct);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(db.table_exists("t").await);
    let names: Vec<String> = db.ledger().await.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["20240101000000_init"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_pooling_holds_a_session_and_statement_pooling_is_refused_too() {
    let session = bouncer("session");
    let statement = bouncer("statement");
    let db = fresh_db("pool_modes").await;
    let m = Migrations::new();
    m.add("20240101000000_init", "CREATE TABLE t (id int);");

    let target = DbTarget::from_url(&session.url(&db.name), &ProcessVars).unwrap();
    let probed = db::pooler::probe(&target).await.unwrap();
    assert_eq!(probed.pooling, db::pooler::Pooling::Session, "{probed:?}");
    let direct = db::pooler::probe(&db.target).await.unwrap();
    assert_eq!(direct.pooling, db::pooler::Pooling::Session, "{direct:?}");

    let mut c = pgdeck_cmd();
    c.arg("--database-url")
        .arg(statement.url(&db.name))
        .arg("--migrations")
        .arg(m.path())
        .arg("deploy");
    let out = run(c);
    out.assert_clean_error(exit::REFUSED as i32);
    assert!(
        out.stderr.contains("in statement pooling"),
        "{}",
        out.stderr
    );
    assert!(!db.table_exists("t").await);
}
