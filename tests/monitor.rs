//! `pgdeck monitor` against a real cluster under generated load: connections, a long-running
//! query, the classic migration lock queue, table sizes; and cancel / terminate by pid and
//! backend_start, refused in read-only mode.

mod common;

use std::time::Duration;

use common::*;
use pgdeck::cli::exit;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn pid_of(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn waits_for_a_lock(watcher: &tokio_postgres::Client, pid: i32) -> bool {
    watcher
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
            &[&pid],
        )
        .await
        .map(|r| r.get::<_, i64>(0) == 1)
        .unwrap_or(false)
}

fn snapshot(db: &TestDb, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["monitor", "--once", "--json", "--long-query", "1"];
    args.extend_from_slice(extra);
    let m = Migrations::new();
    let r = run(pgdeck(db, m.path(), &args));
    assert_eq!(r.code, 0, "{r:?}");
    serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["snapshot"].clone()
}

#[tokio::test]
async fn every_pane_shows_the_load_and_the_lock_queue_names_the_root_and_the_ddl() {
    let db = fresh_db("monitor_panes").await;
    db.exec("CREATE TABLE busy (id int PRIMARY KEY, payload text); INSERT INTO busy SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g; ANALYZE busy;").await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(db.client().await);
    }
    // A long-running query.
    let sleeper = db.client().await;
    let sleeper_pid = pid_of(&sleeper).await;
    let sleeping = tokio::spawn(async move { sleeper.batch_execute("SELECT pg_sleep(20)").await });
    // A holds a lock, B's ALTER waits for ACCESS EXCLUSIVE, C's SELECT queues behind B.
    let a = db.client().await;
    let a_pid = pid_of(&a).await;
    a.batch_execute("BEGIN; UPDATE busy SET payload = 'y' WHERE id = 1;")
        .await
        .unwrap();
    let b = db.client().await;
    let b_pid = pid_of(&b).await;
    let b_task = tokio::spawn(async move {
        b.batch_execute("ALTER TABLE busy ADD COLUMN note text")
            .await
    });
    let c = db.client().await;
    let c_pid = pid_of(&c).await;
    let watcher = db.client().await;
    wait_for("B to wait for its lock", TIMEOUT, || {
        waits_for_a_lock(&watcher, b_pid)
    })
    .await;
    let c_task = tokio::spawn(async move {
        c.query_one("SELECT count(*) FROM busy", &[])
            .await
            .map(|_| ())
    });
    wait_for("C to queue behind B", TIMEOUT, || {
        waits_for_a_lock(&watcher, c_pid)
    })
    .await;
    wait_for("the sleep to pass the threshold", TIMEOUT, || async {
        watcher
            .query_one("SELECT coalesce(extract(epoch FROM now() - query_start), 0)::float8 FROM pg_stat_activity WHERE pid = $1", &[&sleeper_pid])
            .await
            .map(|r| r.get::<_, f64>(0) > 1.5)
            .unwrap_or(false)
    })
    .await;

    let s = snapshot(&db, &[]);
    let conns = &s["connections"]["data"];
    assert!(conns["total"].as_i64().unwrap() >= 10, "{conns}");
    assert!(conns["usable_max"].as_i64().unwrap() > 0);
    assert!(conns["waiting_on_locks"].as_i64().unwrap() >= 2, "{conns}");
    assert!(conns["by_state"]["idle"].as_i64().unwrap() >= 5, "{conns}");
    assert!(s["connections"]["cost_ms"].as_f64().is_some());
    if sandbox().is_some() {
        // The sandbox runs on this machine: host metrics are shown; CPU needs a second reading.
        let host = &s["host"];
        assert!(host["postgres_processes"].as_u64().unwrap() >= 10, "{host}");
        // This cluster's processes only (the postmaster and its children), whatever other
        // clusters run on the machine: about what pg_stat_activity lists, plus the postmaster.
        let listed: i64 = db.scalar("SELECT count(*) FROM pg_stat_activity").await;
        let counted = host["postgres_processes"].as_u64().unwrap() as i64;
        assert!(
            counted <= listed + 5,
            "{counted} processes counted, {listed} in pg_stat_activity"
        );
        assert!(host["memory_total_bytes"].as_u64().unwrap() > 0, "{host}");
        assert!(host["cpu_percent"].is_null(), "{host}");
    }

    let long: Vec<&serde_json::Value> = s["long_running"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["pid"] == sleeper_pid)
        .collect();
    assert_eq!(long.len(), 1, "{}", s["long_running"]);
    assert!(
        long[0]["query_line"]
            .as_str()
            .unwrap()
            .contains("pg_sleep(20)")
    );
    assert!(long[0]["backend_start"].as_str().is_some());

    let roots: Vec<&serde_json::Value> = s["blocking"]["data"]["roots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["pid"] == a_pid)
        .collect();
    assert_eq!(roots.len(), 1, "A is the root blocker: {}", s["blocking"]);
    let victims = roots[0]["victims"].as_array().unwrap();
    let pids: Vec<i64> = victims.iter().map(|v| v["pid"].as_i64().unwrap()).collect();
    assert_eq!(victims.len(), 2, "{victims:?}");
    assert!(
        pids.contains(&(b_pid as i64)) && pids.contains(&(c_pid as i64)),
        "{pids:?}"
    );
    let b_row = victims.iter().find(|v| v["pid"] == b_pid).unwrap();
    assert_eq!(b_row["ddl_access_exclusive"], true, "{b_row}");
    assert_eq!(b_row["queued_behind"], 1, "{b_row}");
    assert_eq!(b_row["lock_mode"], "AccessExclusiveLock");
    let c_row = victims.iter().find(|v| v["pid"] == c_pid).unwrap();
    assert_eq!(c_row["ddl_access_exclusive"], false);

    // The table it locks is reported from page estimates instead of queueing behind the ALTER.
    let busy = s["tables"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "public.busy")
        .cloned()
        .unwrap();
    assert_eq!(busy["estimated"], true, "{busy}");
    assert!(busy["rows_estimate"].as_i64().unwrap() >= 19_000, "{busy}");

    // The human rendering shows the same tree.
    let m = Migrations::new();
    let human = run(pgdeck(
        &db,
        m.path(),
        &["monitor", "--once", "--long-query", "1"],
    ));
    assert!(
        human.stdout.contains(&format!("pid {a_pid} (")),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("DDL waiting for ACCESS EXCLUSIVE, 1 queued behind it"),
        "{}",
        human.stdout
    );

    a.batch_execute("ROLLBACK").await.unwrap();
    b_task.await.unwrap().unwrap();
    c_task.await.unwrap().unwrap();
    sleeping.abort();

    // Unlocked now: real sizes, and growth against the previous sample is reported per run.
    let s = snapshot(&db, &[]);
    let busy = s["tables"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "public.busy")
        .cloned()
        .unwrap();
    assert_eq!(busy["estimated"], false);
    assert!(busy["heap_bytes"].as_i64().unwrap() > 4_000_000, "{busy}");
    assert!(busy["index_bytes"].as_i64().unwrap() > 0, "{busy}");
}

/// A table in ACCESS EXCLUSIVE that nobody waits for yet (a migration idle in its transaction)
/// is still sized from its page counts rather than queued behind; and a refresh leaves the
/// monitor's session idle and holding no lock: the status panes' shared transaction ends with it.
#[tokio::test]
async fn a_refresh_never_queues_behind_an_exclusive_lock_and_holds_nothing_after_it() {
    use pgdeck::monitor::{Monitor, MonitorSettings, Pane};
    let db = fresh_db("monitor_moment").await;
    db.exec("CREATE TABLE held (id int PRIMARY KEY); INSERT INTO held SELECT generate_series(1, 5000); ANALYZE held;").await;
    let a = db.client().await;
    let a_pid = pid_of(&a).await;
    a.batch_execute("BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut monitor = Monitor::connect(&db.target).await.unwrap();
    let settings = MonitorSettings::default();
    for _ in 0..2 {
        let s = monitor.snapshot(&settings).await;
        let Pane::Ok(tables) = &s.tables else {
            panic!("{:?}", s.tables)
        };
        let held = tables.data.iter().find(|t| t.name == "public.held");
        assert!(held.is_some_and(|t| t.estimated), "{:?}", tables.data);
        let Pane::Ok(tree) = &s.blocking else {
            panic!("{:?}", s.blocking)
        };
        // Other tests' queues on the same server may show; this lock blocks nobody.
        assert!(
            tree.data.roots.iter().all(|r| r.pid != a_pid),
            "{:?}",
            tree.data
        );
        for (name, ok) in [
            ("connections", matches!(s.connections, Pane::Ok(_))),
            ("long-running", matches!(s.long_running, Pane::Ok(_))),
            ("progress", matches!(s.progress, Pane::Ok(_))),
            ("replication", matches!(s.replication, Pane::Ok(_))),
        ] {
            assert!(ok, "{name}: {s:?}");
        }
    }
    let watcher = db.client().await;
    let row = watcher
        .query_one(
            "SELECT a.state, (SELECT count(*) FROM pg_locks l \
                              WHERE l.pid = a.pid AND l.locktype = 'relation') \
             FROM pg_stat_activity a \
             WHERE a.application_name = 'pgdeck-monitor' AND a.datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "idle");
    assert_eq!(row.get::<_, i64>(1), 0);
    a.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn cancel_checks_the_backend_start_and_read_only_mode_blocks_it() {
    let db = fresh_db("monitor_cancel").await;
    let m = Migrations::new();
    let sleeper = db.client().await;
    let pid = pid_of(&sleeper).await;
    let started: String = sleeper
        .query_one("SELECT to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM pg_stat_activity WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let sleeping = tokio::spawn(async move { sleeper.batch_execute("SELECT pg_sleep(30)").await });
    let watcher = db.client().await;
    wait_for("the sleep to start", TIMEOUT, || async {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                &[&pid],
            )
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
    })
    .await;
    let pid_text = pid.to_string();

    let wrong = run(pgdeck(
        &db,
        m.path(),
        &[
            "monitor",
            "cancel",
            &pid_text,
            "--backend-start",
            "2001-01-01T00:00:00Z",
            "--yes",
        ],
    ));
    wrong.assert_clean_error(i32::from(exit::REFUSED));
    assert!(
        wrong.stderr.contains("now belongs to another backend"),
        "{}",
        wrong.stderr
    );
    // Checked before anything is asked: without --yes it is the same refusal, not a question.
    let unasked = run(pgdeck(
        &db,
        m.path(),
        &[
            "monitor",
            "terminate",
            &pid_text,
            "--backend-start",
            "2001-01-01 00:00:00.000001+00",
        ],
    ));
    unasked.assert_clean_error(i32::from(exit::REFUSED));
    assert!(
        unasked.stderr.contains("now belongs to another backend"),
        "{}",
        unasked.stderr
    );
    // The timestamp as psql prints backend_start is understood.
    let as_psql: String = watcher
        .query_one(
            "SELECT backend_start::text FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    let read_only_psql = run(pgdeck(
        &db,
        m.path(),
        &[
            "monitor",
            "--read-only",
            "cancel",
            &pid_text,
            "--backend-start",
            &as_psql,
            "--yes",
        ],
    ));
    read_only_psql.assert_clean_error(i32::from(exit::REFUSED));
    assert!(
        read_only_psql.stderr.contains("read-only mode"),
        "{as_psql}: {}",
        read_only_psql.stderr
    );

    let read_only = run(pgdeck(
        &db,
        m.path(),
        &[
            "monitor",
            "--read-only",
            "cancel",
            &pid_text,
            "--backend-start",
            &started,
            "--yes",
        ],
    ));
    read_only.assert_clean_error(i32::from(exit::REFUSED));
    assert!(
        read_only.stderr.contains("read-only mode"),
        "{}",
        read_only.stderr
    );
    assert!(!sleeping.is_finished(), "read-only mode sent nothing");

    let ok = run(pgdeck(
        &db,
        m.path(),
        &[
            "monitor",
            "cancel",
            &pid_text,
            "--backend-start",
            &started,
            "--yes",
        ],
    ));
    assert_eq!(ok.code, 0, "{ok:?}");
    let err = tokio::time::timeout(TIMEOUT, sleeping)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
}

#[tokio::test]
async fn a_role_without_pg_monitor_sees_unavailable_panes_never_zeros() {
    let db = fresh_db("monitor_unprivileged").await;
    db.exec("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
        .await;
    let role = format!("watcher_{}", &db.name[db.name.len() - 8..]);
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'Watch3r-secret'; GRANT CONNECT ON DATABASE {} TO {role};",
        db.name
    ))
    .await;
    // Someone else's long query, and someone else's lock queue.
    let sleeper = db.client().await;
    let sleeper_pid = pid_of(&sleeper).await;
    let sleeping = tokio::spawn(async move { sleeper.batch_execute("SELECT pg_sleep(20)").await });
    let a = db.client().await;
    a.batch_execute("BEGIN; LOCK TABLE t IN SHARE MODE;")
        .await
        .unwrap();
    let b = db.client().await;
    let b_pid = pid_of(&b).await;
    let _b_task =
        tokio::spawn(async move { b.batch_execute("ALTER TABLE t ADD COLUMN x int").await });
    let watcher = db.client().await;
    wait_for("B to wait for its lock", TIMEOUT, || {
        waits_for_a_lock(&watcher, b_pid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let mut url = url::Url::parse(&db.url()).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.iter().any(|(k, _)| k == "user") {
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs.iter().map(|(k, v)| {
                (
                    k.as_str(),
                    if k == "user" {
                        role.as_str()
                    } else {
                        v.as_str()
                    },
                )
            }));
    } else {
        url.set_username(&role).unwrap();
    }
    // Over the sandbox's socket (trust) there is no host part to carry a password, nor a need.
    let _ = url.set_password(Some("Watch3r-secret"));
    let once = |url: &str| {
        let mut cmd = pgdeck_cmd();
        cmd.args([
            "--database-url",
            url,
            "monitor",
            "--once",
            "--json",
            "--long-query",
            "1",
        ]);
        let r = run(cmd);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(!r.stdout.contains("Watch3r-secret"), "{}", r.stdout);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["snapshot"].clone()
    };

    let s = once(url.as_str());
    assert_eq!(s["sees_all_sessions"], false);
    for pane in ["long_running", "blocking"] {
        assert_eq!(s[pane]["state"], "unavailable", "{pane}: {}", s[pane]);
        assert_eq!(s[pane]["reason"], "n/a (needs pg_monitor)");
    }
    // Connections are still counted; what the role may not see is "unknown", not idle.
    let conns = &s["connections"]["data"];
    assert!(conns["total"].as_i64().unwrap() >= 4, "{conns}");
    assert!(
        conns["by_state"]["unknown"].as_i64().unwrap() >= 3,
        "{conns}"
    );

    let mut cmd = pgdeck_cmd();
    cmd.args(["--database-url", url.as_str(), "monitor", "--once"]);
    let text = run(cmd);
    assert!(
        text.stdout.contains("n/a (needs pg_monitor)"),
        "{}",
        text.stdout
    );

    db.exec(&format!("GRANT pg_monitor TO {role}")).await;
    let s = once(url.as_str());
    assert_eq!(s["sees_all_sessions"], true);
    let long = s["long_running"]["data"].as_array().unwrap();
    assert!(long.iter().any(|q| q["pid"] == sleeper_pid), "{long:?}");
    assert_eq!(s["blocking"]["state"], "ok", "{}", s["blocking"]);

    a.batch_execute("ROLLBACK").await.unwrap();
    sleeping.abort();
    db.exec(&format!(
        "DROP OWNED BY {role}; REVOKE CONNECT ON DATABASE {} FROM {role}; DROP ROLE {role}",
        db.name
    ))
    .await;
}
