//! Fleets against a real PostgreSQL: `status --fleet` and `deploy --fleet` through the real
//! binary, the canary phase and the concurrency bound watched from `pg_stat_activity`, the
//! failure limit, the ledger of every database, the journal and the report; the protected
//! fleet's one confirmation and its backup gate per database; bad flags and settings.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A fleet of fresh databases in one config file: a base environment `tenants` (its health
/// window short), and `[fleets.tenants]` with a URL template over the databases.
struct FleetSetup {
    dbs: Vec<TestDb>,
    config: PathBuf,
    migrations: Migrations,
    journal: tempfile::TempDir,
    _backups: tempfile::TempDir,
}

impl FleetSetup {
    async fn new(test: &str, n: usize, base_settings: &str) -> FleetSetup {
        let mut dbs = Vec::with_capacity(n);
        for i in 0..n {
            dbs.push(fresh_db(&format!("{test}_{i:02}")).await);
        }
        let migrations = Migrations::new();
        let backups = tempfile::tempdir().unwrap();
        let template = dbs[0].url().replace(&dbs[0].name, "{database}");
        assert!(template.contains("{database}"), "{template}");
        let names: Vec<String> = dbs.iter().map(|d| format!("\"{}\"", d.name)).collect();
        let config = migrations.path().join("pgdeck.toml");
        std::fs::write(
            &config,
            format!(
                "[environments.tenants]\ndatabase_url = \"{}\"\nbackup_dir = \"{}\"\n{base_settings}\n\
                 [environments.tenants.health]\nwindow = \"1s\"\nprobe_samples = 2\n\n\
                 [fleets.tenants]\nenvironment = \"tenants\"\nurl_template = \"{template}\"\ndatabases = [{}]\n",
                dbs[0].url(),
                backups.path().display(),
                names.join(", ")
            ),
        )
        .unwrap();
        FleetSetup {
            dbs,
            config,
            migrations,
            journal: tempfile::tempdir().unwrap(),
            _backups: backups,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = pgdeck_cmd();
        cmd.env("PGDECK_JOURNAL_DIR", self.journal.path())
            .arg("--config")
            .arg(&self.config)
            .arg("--migrations")
            .arg(self.migrations.path())
            .args(args);
        cmd
    }

    fn names(&self) -> Vec<String> {
        self.dbs.iter().map(|d| d.name.clone()).collect()
    }
}

fn json_of(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        )
    })
}

/// Every `sample` of the databases whose deploy session runs the slow migration right now,
/// each with when it was taken, until `stop` is set.
async fn watch_deploys(
    probe: tokio_postgres::Client,
    names: Vec<String>,
    stop: Arc<Mutex<bool>>,
) -> Vec<(Instant, BTreeSet<String>)> {
    let mut samples = Vec::new();
    while !*stop.lock().unwrap() {
        let rows = probe
            .query(
                "SELECT DISTINCT datname::text FROM pg_stat_activity \
                 WHERE application_name = 'pgdeck' AND state = 'active' \
                   AND query LIKE '%pg_sleep%' AND datname = ANY($1)",
                &[&names],
            )
            .await
            .unwrap();
        samples.push((Instant::now(), rows.iter().map(|r| r.get(0)).collect()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    samples
}

/// Runs the binary on a thread while `pg_stat_activity` is sampled.
async fn run_watched(setup: &FleetSetup, args: &[&str]) -> (Run, Vec<(Instant, BTreeSet<String>)>) {
    let stop = Arc::new(Mutex::new(false));
    let sampler = tokio::spawn(watch_deploys(
        setup.dbs[0].client().await,
        setup.names(),
        stop.clone(),
    ));
    let cmd = setup.cmd(args);
    let r = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    *stop.lock().unwrap() = true;
    (r, sampler.await.unwrap())
}

const BASE: &str = "20240101000000_items";
const SLOW: &str = "20250101000000_slow";
const SECOND: &str = "20250102000000_second";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_deploys_its_canaries_first_at_most_n_at_once_and_starts_nothing_after_the_failure_limit()
 {
    let setup = FleetSetup::new("fleet20", 20, "").await;
    let m = &setup.migrations;
    // Every tenant has its items; the fleet's first release creates them.
    m.add(BASE, "CREATE TABLE items (id int, sku text);\n");
    let first = run(setup.cmd(&["deploy", "--fleet", "tenants", "--concurrency", "8"]));
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.contains("20 database(s): 20 applied"),
        "{}",
        first.stdout
    );
    // The tenth tenant has two items with one SKU: the unique index fails there.
    let failing = 9;
    setup.dbs[failing]
        .exec("INSERT INTO items VALUES (1, 'x'), (2, 'x')")
        .await;
    m.add(SLOW, "SELECT pg_sleep(1.0);\nCREATE TABLE a (id int);\n");
    m.add(SECOND, "CREATE UNIQUE INDEX items_sku ON items (sku);\n");

    let (r, samples) = run_watched(
        &setup,
        &[
            "deploy",
            "--fleet",
            "tenants",
            "--concurrency",
            "4",
            "--canary",
            "2",
            "--max-failures",
            "1",
            "--json",
        ],
    )
    .await;
    assert_eq!(r.code, 18, "{r:?}");
    let report = json_of(&r);
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 20);
    let outcome = |i: usize| members[i]["outcome"].as_str().unwrap().to_owned();
    let name_of = |i: usize| format!("tenants/{}", setup.dbs[i].name);
    for (i, m) in members.iter().enumerate() {
        assert_eq!(m["name"], name_of(i));
        assert_eq!(m["canary"], i < 2, "{m}");
    }

    // The bound, as the server saw it: at most 4 databases deploying at once, and 4 at some
    // point; during the canary phase only the two canaries.
    let canaries: BTreeSet<String> = setup.dbs[..2].iter().map(|d| d.name.clone()).collect();
    let most = samples.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    assert_eq!(most, 4, "the most databases deploying at once");
    let first_other = samples
        .iter()
        .position(|(_, s)| s.iter().any(|d| !canaries.contains(d)))
        .expect("the rest of the fleet was seen deploying");
    let last_canary = samples
        .iter()
        .rposition(|(_, s)| s.iter().any(|d| canaries.contains(d)))
        .expect("the canaries were seen deploying");
    assert!(
        last_canary < first_other,
        "a non-canary deployed while a canary did"
    );
    assert!(
        samples[..first_other]
            .iter()
            .all(|(_, s)| s.is_subset(&canaries))
    );
    assert!(samples[..first_other].iter().any(|(_, s)| s.len() == 2));
    for canary in &members[..2] {
        assert_eq!(canary["health"], "ok", "{canary}");
    }

    // The failed database is reported with its cause; nothing started after it failed.
    assert_eq!(outcome(failing), "failed");
    let cause = members[failing]["error"].as_str().unwrap();
    assert!(cause.contains(SECOND), "{cause}");
    assert!(
        report["stopped"]
            .as_str()
            .unwrap()
            .contains("no other database was started")
    );
    let failed_at = members[failing]["finished_at"].as_str().unwrap().to_owned();
    let mut not_started = 0;
    for (i, m) in members.iter().enumerate() {
        match outcome(i).as_str() {
            "applied" => {
                assert!(
                    m["started_at"].as_str().unwrap() < failed_at.as_str(),
                    "{} started after the failure",
                    m["name"]
                );
                assert_eq!(m["applied"], serde_json::json!([SLOW, SECOND]));
            }
            "not_started" => {
                not_started += 1;
                assert!(i > failing, "{} was left out before the failure", m["name"]);
                assert!(m["started_at"].is_null());
                let ledger = setup.dbs[i].ledger().await;
                let names: Vec<&str> = ledger.iter().map(|r| r.name.as_str()).collect();
                assert_eq!(names, [BASE], "{} was touched", m["name"]);
            }
            "failed" => assert_eq!(i, failing),
            other => panic!("{}: {other}", m["name"]),
        }
    }
    // With 4 at once, the failure at the tenth leaves at least the last six unstarted.
    assert!(not_started >= 6, "{not_started} not started");
    let ledger = setup.dbs[failing].ledger().await;
    assert_eq!(ledger.len(), 3, "{ledger:?}");
    assert!(ledger[1].finished && ledger[2].rolled_back, "{ledger:?}");

    // One journal session covers the fleet; the report shows every database's outcome.
    let report = run(setup.cmd(&["report", "--env", "fleet-tenants"]));
    assert_eq!(report.code, 0, "{report:?}");
    assert!(
        report.stdout.contains("## Fleet tenants (20 database(s)"),
        "{}",
        report.stdout
    );
    assert!(
        report
            .stdout
            .contains(&format!("| {} (`", name_of(failing)))
    );
    assert!(
        report.stdout.contains("**not started**"),
        "{}",
        report.stdout
    );
    assert!(
        report.stdout.contains(&format!("deploy {}", name_of(0))),
        "{}",
        report.stdout
    );

    // The status of the fleet says the same, database by database.
    let status = run(setup.cmd(&["status", "--fleet", "tenants", "--json"]));
    assert_eq!(status.code, 3, "{status:?}");
    let st = json_of(&status);
    assert_eq!(st["fleet"], "tenants");
    assert_eq!(st["databases"], 20);
    assert_eq!(st["environments"][0]["verdict"], "up_to_date");
    assert_eq!(st["environments"][19]["verdict"], "pending");
    let text = run(setup.cmd(&["status", "--fleet", "tenants"]));
    assert!(
        text.stdout.contains("fleet tenants: 20 database(s)"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains(&name_of(19)), "{}", text.stdout);

    // Again, with room for failures: the rest get the release, the applied ones are left as
    // they are, the failed one fails again. Every database but it has each migration once.
    let again = run(setup.cmd(&[
        "deploy",
        "--fleet",
        "tenants",
        "--concurrency",
        "8",
        "--canary",
        "0",
        "--max-failures",
        "5",
        "--json",
    ]));
    assert_eq!(again.code, 18, "{again:?}");
    let again = json_of(&again);
    for (i, db) in setup.dbs.iter().enumerate() {
        let m = &again["members"][i];
        if i == failing {
            assert_eq!(m["outcome"], "failed");
            continue;
        }
        let ledger = db.ledger().await;
        let names: Vec<&str> = ledger.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, [BASE, SLOW, SECOND], "{}", db.name);
        assert!(ledger.iter().all(|r| r.finished && !r.rolled_back));
        let expected = if outcome(i) == "applied" {
            "up_to_date"
        } else {
            "applied"
        };
        assert_eq!(m["outcome"], expected, "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_fleet_takes_one_confirmation_naming_it_and_a_verified_backup_of_each_database()
{
    let setup = FleetSetup::new("fleetprot", 3, "protected = true").await;
    let deploy = |extra: &[&str]| {
        let mut args = vec!["deploy", "--fleet", "tenants", "--concurrency", "1"];
        args.extend_from_slice(extra);
        run(setup.cmd(&args))
    };
    setup
        .migrations
        .add(BASE, "CREATE TABLE items (id int, sku text);\n");
    let first = deploy(&[
        "--confirm",
        "tenants",
        "--without-backup",
        "new tenants, nothing to lose",
    ]);
    assert_eq!(first.code, 0, "{first:?}");
    for db in &setup.dbs {
        db.exec("INSERT INTO items VALUES (1, 'x')").await;
    }
    setup.migrations.add(SECOND, "CREATE TABLE b (id int);\n");

    let unconfirmed = deploy(&[]);
    unconfirmed.assert_clean_error(7);
    assert!(
        unconfirmed
            .stderr
            .contains("fleet 'tenants' has 3 protected database(s)"),
        "{}",
        unconfirmed.stderr
    );
    assert!(
        unconfirmed
            .stderr
            .contains("confirm by naming the fleet: --confirm tenants"),
        "{}",
        unconfirmed.stderr
    );
    let a_database = deploy(&["--confirm", &setup.dbs[0].name]);
    a_database.assert_clean_error(7);
    assert!(
        a_database.stderr.contains("does not match the fleet"),
        "{}",
        a_database.stderr
    );

    // Confirmed, but no database has a backup: the first is refused by its gate, and that
    // failure stops the fleet.
    let no_backup = deploy(&["--confirm", "tenants", "--json"]);
    assert_eq!(no_backup.code, 18, "{no_backup:?}");
    let v = json_of(&no_backup);
    assert_eq!(v["members"][0]["outcome"], "failed");
    assert_eq!(v["members"][0]["guard"], "backup");
    assert!(
        v["members"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("backup create")
    );
    assert_eq!(v["members"][1]["outcome"], "not_started");

    // A verified backup of the first database (its member named with --env) opens its gate
    // only; the others are still refused, each on its own.
    let member = format!("tenants/{}", setup.dbs[0].name);
    let made = run(setup.cmd(&["--env", &member, "backup", "create"]));
    assert_eq!(made.code, 0, "{made:?}");
    let verified = run(setup.cmd(&["--env", &member, "backup", "verify"]));
    assert_eq!(verified.code, 0, "{verified:?}");
    let partial = deploy(&["--confirm", "tenants", "--max-failures", "5", "--json"]);
    assert_eq!(partial.code, 18, "{partial:?}");
    let v = json_of(&partial);
    assert_eq!(v["members"][0]["outcome"], "applied", "{}", v["members"][0]);
    for i in 1..3 {
        assert_eq!(v["members"][i]["outcome"], "failed");
        assert_eq!(v["members"][i]["guard"], "backup");
    }
    assert!(setup.dbs[0].table_exists("b").await);
    assert!(!setup.dbs[1].table_exists("b").await);

    // With a reason to go without one, each database's override is journaled by name.
    let reason = deploy(&[
        "--confirm",
        "tenants",
        "--without-backup",
        "INC-7: restore drill done",
    ]);
    assert_eq!(reason.code, 0, "{reason:?}");
    assert!(setup.dbs[2].table_exists("b").await);
    let report = run(setup.cmd(&["report", "--env", "fleet-tenants"]));
    assert!(
        report.stdout.contains(&format!(
            "tenants/{}: deploy without a recent verified backup",
            setup.dbs[2].name
        )),
        "{}",
        report.stdout
    );
    assert!(
        report
            .stdout
            .contains("Deploy to fleet 'tenants': 3 database(s), 3 protected")
    );
}

#[tokio::test]
async fn fleet_flags_and_settings_that_make_no_sense_are_refused_before_anything_runs() {
    let setup = FleetSetup::new("fleetbad", 3, "").await;
    setup.migrations.add(SECOND, "CREATE TABLE b (id int);\n");
    let refused = |args: &[&str], says: &str| {
        let r = run(setup.cmd(args));
        r.assert_clean_error(2);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    };
    refused(
        &["deploy", "--fleet", "tenants", "--concurrency", "0"],
        "out of range",
    );
    refused(
        &["deploy", "--fleet", "tenants", "--max-failures", "0"],
        "out of range",
    );
    refused(
        &["deploy", "--fleet", "tenants", "--canary", "4"],
        "4 canaries asked for, and fleet 'tenants' has 3 database(s)",
    );
    refused(&["deploy", "--concurrency", "2"], "--fleet");
    refused(
        &["deploy", "--fleet", "nope"],
        "fleet 'nope' is not defined",
    );
    refused(
        &["--env", "tenants", "deploy", "--fleet", "tenants"],
        "--fleet tenants names its databases itself, and --env names one",
    );
    refused(
        &["status", "--fleet", "tenants", "--all-environments"],
        "cannot be used with",
    );
    // A migrations folder that cannot be read (a file here): one refusal before any database
    // is reached, not a failure per database.
    let mut cmd = pgdeck_cmd();
    cmd.env("PGDECK_JOURNAL_DIR", setup.journal.path())
        .arg("--config")
        .arg(&setup.config)
        .arg("--migrations")
        .arg(&setup.config)
        .args(["deploy", "--fleet", "tenants"]);
    let r = run(cmd);
    r.assert_clean_error(2);
    assert!(
        r.stderr.contains("cannot read the migrations folder")
            && r.stderr.contains("no database was started"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("[tenants/"), "{}", r.stderr);
    for db in &setup.dbs {
        assert!(!db.table_exists("_prisma_migrations").await, "{}", db.name);
    }

    // A template without its placeholder, in the file.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let bad = setup.migrations.path().join("bad.toml");
    std::fs::write(&bad, text.replace("{database}", "fixed")).unwrap();
    let r = run(pgdeck_cmd_with_config(
        &bad,
        &["status", "--fleet", "tenants"],
    ));
    r.assert_clean_error(2);
    assert!(r.stderr.contains("has no {database}"), "{}", r.stderr);
}

fn pgdeck_cmd_with_config(config: &Path, args: &[&str]) -> Command {
    let mut cmd = pgdeck_cmd();
    cmd.arg("--config").arg(config).args(args);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_environments_reads_each_one_and_deploys_them_in_order() {
    let a = fresh_db("fleetenv_a").await;
    let b = fresh_db("fleetenv_b").await;
    let m = Migrations::new();
    m.add(SECOND, "CREATE TABLE b (id int);\n");
    let config = m.path().join("pgdeck.toml");
    std::fs::write(
        &config,
        format!(
            "[environments.eu]\ndatabase_url = \"{}\"\nhealth = {{ window = \"1s\", probe_samples = 2 }}\n\
             [environments.us]\ndatabase_url = \"{}\"\n\
             [fleets.regions]\nenvironments = [\"us\", \"eu\"]\ncanary = [\"eu\"]\n",
            a.url(),
            b.url()
        ),
    )
    .unwrap();
    let journal = tempfile::tempdir().unwrap();
    let cmd = |args: &[&str]| {
        let mut c = pgdeck_cmd_with_config(&config, &["--migrations", m.path().to_str().unwrap()]);
        c.env("PGDECK_JOURNAL_DIR", journal.path()).args(args);
        run(c)
    };
    let status = cmd(&["status", "--fleet", "regions"]);
    assert_eq!(status.code, 3, "{status:?}");
    assert!(
        status.stdout.contains("us  ") && status.stdout.contains("eu  "),
        "{}",
        status.stdout
    );
    let r = cmd(&["deploy", "--fleet", "regions"]);
    assert_eq!(r.code, 0, "{r:?}");
    // The marked canary goes first, whatever the list's order.
    let eu = r.stderr.find("[eu] started").expect("eu started");
    let us = r.stderr.find("[us] started").expect("us started");
    assert!(eu < us, "{}", r.stderr);
    assert!(r.stderr.contains("[eu] health: ok"), "{}", r.stderr);
    assert!(
        r.stdout.contains("fleet regions: 2 database(s): 2 applied"),
        "{}",
        r.stdout
    );
    assert!(a.table_exists("b").await && b.table_exists("b").await);
    let st = cmd(&["status", "--fleet", "regions", "--json"]);
    assert_eq!(st.code, 0, "{st:?}");
    assert_eq!(json_of(&st)["verdict"], "up_to_date");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_at_most_sixteen_databases_at_once() {
    let setup = FleetSetup::new("fleetreads", 20, "").await;
    setup.migrations.add(SECOND, "CREATE TABLE b (id int);\n");
    let r = run(setup.cmd(&["deploy", "--fleet", "tenants", "--concurrency", "8"]));
    assert_eq!(r.code, 0, "{r:?}");
    // Every ledger locked: each read waits on its lock, so the reads at once can be counted.
    let mut holders = Vec::new();
    for db in &setup.dbs {
        let c = db.client().await;
        c.batch_execute("BEGIN; LOCK TABLE _prisma_migrations IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        holders.push(c);
    }
    let cmd = setup.cmd(&["status", "--fleet", "tenants"]);
    let status = tokio::task::spawn_blocking(move || run(cmd));
    let probe = setup.dbs[0].client().await;
    let names = setup.names();
    let waiting = || async {
        let n: i64 = probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgdeck' \
                 AND wait_event_type = 'Lock' AND datname = ANY($1)",
                &[&names],
            )
            .await
            .unwrap()
            .get(0);
        n
    };
    let (mut most, started) = (0, Instant::now());
    while started.elapsed() < Duration::from_secs(10) && most < 16 {
        most = most.max(waiting().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Held a little longer: no seventeenth read starts while sixteen wait.
    let held = Instant::now();
    while held.elapsed() < Duration::from_millis(500) {
        most = most.max(waiting().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most, 16, "reads waiting on their ledgers at once");
    for c in &holders {
        c.batch_execute("ROLLBACK").await.unwrap();
    }
    let r = status.await.unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("20 database(s)"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_database_gets_the_release_the_fleet_read_at_its_start() {
    // The first database's before_deploy hook writes a new migration into the folder: the
    // databases after it still get the release as it was when the fleet started.
    let late = "29990101000000_late";
    let setup = FleetSetup::new("fleetpin", 3, "").await;
    let folder = setup.migrations.path().join(late);
    let hook = format!(
        "test -e '{dir}' || {{ mkdir '{dir}' && echo 'CREATE TABLE late (id int);' > '{dir}/migration.sql'; }}",
        dir = folder.display()
    );
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&setup.config)
        .unwrap();
    std::io::Write::write_all(
        &mut config,
        format!("\n[environments.tenants.hooks]\nbefore_deploy = \"\"\"{hook}\"\"\"\n").as_bytes(),
    )
    .unwrap();
    setup.migrations.add(SECOND, "CREATE TABLE b (id int);\n");
    let r = run(setup.cmd(&["deploy", "--fleet", "tenants", "--concurrency", "1"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        setup
            .migrations
            .path()
            .join(late)
            .join("migration.sql")
            .exists(),
        "the hook ran: {r:?}"
    );
    for db in &setup.dbs {
        assert!(db.table_exists("b").await, "{}", db.name);
        assert!(!db.table_exists("late").await, "{}: {r:?}", db.name);
    }
    // The next release has it, for every database.
    let r = run(setup.cmd(&["deploy", "--fleet", "tenants"]));
    assert_eq!(r.code, 0, "{r:?}");
    for db in &setup.dbs {
        assert!(db.table_exists("late").await, "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_cancels_the_running_member_on_the_server_and_starts_no_other() {
    let setup = FleetSetup::new("fleetint", 3, "").await;
    setup
        .migrations
        .add(SLOW, "CREATE TABLE a (id int);\nSELECT pg_sleep(30);\n");
    let child = spawn(setup.cmd(&[
        "deploy",
        "--fleet",
        "tenants",
        "--concurrency",
        "1",
        "--json",
    ]));
    let probe = setup.dbs[0].client().await;
    wait_for(
        "the first member's slow migration",
        Duration::from_secs(30),
        || async {
            probe
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgdeck' \
                 AND state = 'active' AND query LIKE '%pg_sleep%'",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0) == 1)
                .unwrap_or(false)
        },
    )
    .await;
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it took {:?}",
        started.elapsed()
    );
    assert_eq!(r.code, 13, "{r:?}");
    let v = json_of(&r);
    let outcomes: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["cancelled", "cancelled", "cancelled"]);
    assert!(v["members"][1]["started_at"].is_null());
    // What ran was rolled back on the server; the others were never touched.
    assert!(!setup.dbs[0].table_exists("a").await);
    for db in &setup.dbs[1..] {
        assert!(!db.table_exists("_prisma_migrations").await, "{}", db.name);
    }
}

/// `deploy --fleet --console` in a pseudo-terminal: the matrix shows each database's live
/// state, then its outcome; `q` closes it once the deploy is done, the terminal restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_console_shows_every_database_live_and_closes_on_q_once_done() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::{Read, Write};

    let setup = FleetSetup::new("fleettui", 3, "").await;
    setup
        .migrations
        .add(SLOW, "SELECT pg_sleep(1.5);\nCREATE TABLE a (id int);\n");
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("open a pty");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_pgdeck"));
    cmd.env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("HOME", setup.journal.path());
    cmd.env("TERM", "xterm-256color");
    cmd.env("NO_COLOR", "1");
    cmd.env("PGDECK_JOURNAL_DIR", setup.journal.path());
    cmd.arg("--config");
    cmd.arg(&setup.config);
    cmd.arg("--migrations");
    cmd.arg(setup.migrations.path());
    cmd.args([
        "deploy",
        "--fleet",
        "tenants",
        "--console",
        "--concurrency",
        "2",
        "--canary",
        "1",
    ]);
    let mut child = pair.slave.spawn_command(cmd).expect("spawn pgdeck");
    let mut reader = pair.master.try_clone_reader().expect("pty reader");
    let mut writer = pair.master.take_writer().expect("pty writer");
    let screen = Arc::new(Mutex::new(vt100::Parser::new(30, 120, 0)));
    let feed = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            feed.lock().unwrap().process(&buf[..n]);
        }
    });
    let text = || screen.lock().unwrap().screen().contents();
    let until = |what: &dyn Fn(&str) -> bool, why: &str| {
        let start = Instant::now();
        while !what(&text()) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {why}; the screen:\n{}",
                text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let canary = format!("tenants/{}", setup.dbs[0].name);
    until(
        &|t| t.contains("Fleet tenants") && t.contains("canaries") && t.contains("migration 1/1"),
        "the canary deploying",
    );
    let shown = text();
    let canary_line = shown
        .lines()
        .find(|l| l.contains(&canary))
        .unwrap()
        .to_owned();
    assert!(
        canary_line.contains("canary") && canary_line.contains("migration 1/1"),
        "{shown}"
    );
    let other = shown
        .lines()
        .find(|l| l.contains(&setup.dbs[2].name))
        .unwrap();
    assert!(other.contains("waiting"), "{shown}");
    until(
        &|t| t.contains("finished:") && t.contains("3 done"),
        "the end",
    );
    let done = text();
    for db in &setup.dbs {
        let line = done.lines().find(|l| l.contains(&db.name)).unwrap();
        assert!(line.contains("applied"), "{done}");
    }
    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "it did not close"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // Back on the normal screen: the outcome printed after the matrix closed.
    until(&|t| t.contains("3 database(s): 3 applied"), "the summary");
    for db in &setup.dbs {
        assert!(db.table_exists("a").await);
    }
}
