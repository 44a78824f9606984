//! pgBackRest against a real stanza: a sandbox cluster of its own with `archive_mode` on and an
//! `archive_command` calling pgBackRest, a local repository, `stanza-create` and a full backup.
//! What pgdeck reads of it (info, check and verify, the archiver, restore points) is checked
//! against what the server and pgBackRest say themselves.

use std::process::Command;
use std::time::Duration;

use pgdeck::backup::pgbackrest::{self, Archiver, PgbackrestSettings};
use pgdeck::db;
use pgdeck::error::ErrorKind;

mod common;

use common::stanza::{command, connect, stanza};
use common::{pgdeck_cmd, run};

/// A protected production deploy in PITR mode: the gate passes with a recent base backup and
/// working archiving, marks the release with a restore point the journal names, and refuses an
/// old backup and a failing archive_command with their causes.
#[tokio::test]
async fn a_protected_deploy_in_pitr_mode_needs_a_recent_base_backup_and_working_archiving() {
    let stanza = stanza().await;
    let client = connect(&stanza.sandbox).await;
    let work = tempfile::tempdir().unwrap();
    let migrations = work.path().join("migrations");
    let add = |name: &str, sql: &str| {
        std::fs::create_dir_all(migrations.join(name)).unwrap();
        std::fs::write(migrations.join(name).join("migration.sql"), sql).unwrap();
    };
    add(
        "20260101000000_first",
        "CREATE TABLE \"Kept\" (id int PRIMARY KEY, note text);\nCREATE TABLE \"Other\" (id int);\n",
    );
    let journal = work.path().join("journal");
    let config = |max_age: &str| {
        let path = stanza.write_config();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "protected = true\nmigrations = \"{}\"\nbackup_max_age = \"{max_age}\"\n",
            migrations.display()
        ));
        std::fs::write(&path, text).unwrap();
        path
    };
    let deploy = |config: &std::path::Path, json: bool| {
        let mut cmd = pgdeck_cmd();
        cmd.env("PGDECK_JOURNAL_DIR", &journal)
            .arg("--config")
            .arg(config)
            .args(["deploy", "--confirm", "postgres"]);
        if json {
            cmd.arg("--json");
        }
        run(cmd)
    };

    let ok = deploy(&config("1h"), true);
    assert_eq!(ok.code, 0, "{ok:?}");
    let v: serde_json::Value = serde_json::from_str(&ok.stdout).expect("json");
    let point = v["restore_point"]["name"]
        .as_str()
        .expect("a restore point")
        .to_owned();
    assert!(point.starts_with("pgdeck_production_"), "{point}");
    assert!(ok.stderr.contains("and archived"), "{}", ok.stderr);
    // The server made it, the archive has its segment, and the journal names it.
    let logged = std::fs::read_to_string(stanza.sandbox.data_dir().join("server.log")).unwrap();
    assert!(logged.contains(&format!("restore point \"{point}\" created")));
    let archived = Archiver::read(&client).await.unwrap();
    assert!(
        archived.last_archived_wal.as_deref().unwrap()
            >= v["restore_point"]["wal"].as_str().unwrap()
    );
    // One folder per environment, a file per command.
    let journaled: String = std::fs::read_dir(&journal)
        .unwrap()
        .flatten()
        .flat_map(|env| {
            std::fs::read_dir(env.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
        .collect();
    assert!(journaled.contains("restore_point_created"), "{journaled}");
    assert!(journaled.contains(&point));

    // A bad migration drops a column with data; writes go on elsewhere after it. A side
    // restore to the point the deploy created brings the column and its data back beside
    // production, which keeps its newer writes.
    client
        .batch_execute("INSERT INTO \"Kept\" VALUES (1, 'precious'), (2, 'also')")
        .await
        .unwrap();
    add(
        "20260102000000_drop_note",
        "-- pgdeck:allow ban-drop-column the column is unused\nALTER TABLE \"Kept\" DROP COLUMN note;\n",
    );
    let bad = deploy(&config("1h"), true);
    assert_eq!(bad.code, 0, "{bad:?}");
    let v: serde_json::Value = serde_json::from_str(&bad.stdout).expect("json");
    let before_bad = v["restore_point"]["name"].as_str().unwrap().to_owned();
    client
        .batch_execute("INSERT INTO \"Other\" VALUES (42)")
        .await
        .unwrap();
    let side_dir = work.path().join("side");
    let side_args = [
        "backup",
        "restore",
        "--point",
        &before_bad,
        "--side",
        "--side-dir",
        side_dir.to_str().unwrap(),
    ];
    let side = cli(&config("1h"), &[&side_args[..], &["--json"]].concat());
    assert_eq!(side.code, 0, "{side:?}");
    let v: serde_json::Value = serde_json::from_str(&side.stdout).expect("json");
    assert_eq!(v["side"]["migration_head"], "20260101000000_first");
    let port = v["side"]["port"].as_u64().unwrap() as u16;
    assert_ne!(port, stanza.sandbox.port());
    let side_client = db::connect(&pgdeck::target::DbTarget::socket(
        &side_dir, port, "postgres", "postgres",
    ))
    .await
    .expect("reach the side cluster")
    .client;
    let notes: Vec<String> = side_client
        .query("SELECT note FROM \"Kept\" ORDER BY id", &[])
        .await
        .expect("the column is there")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(notes, ["precious", "also"]);
    let side_other: i64 = side_client
        .query_one("SELECT count(*) FROM \"Other\"", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(side_other, 0, "the side cluster stops at the point");
    let read_only = side_client
        .batch_execute("INSERT INTO \"Other\" VALUES (1)")
        .await;
    assert!(read_only.is_err(), "the side cluster is read-only");
    // Production: the column is gone, the later write kept.
    assert!(
        client
            .query("SELECT note FROM \"Kept\"", &[])
            .await
            .is_err()
    );
    let other: i64 = client
        .query_one("SELECT count(*) FROM \"Other\"", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(other, 1);
    drop(side_client);
    stop_side(&side_dir);
    // A side restore never reuses a directory that holds something.
    let again = cli(&config("1h"), &side_args);
    again.assert_clean_error(2);
    assert!(again.stderr.contains("is not empty"), "{}", again.stderr);

    // An old base backup refuses, and nothing is applied.
    add(
        "20260103000000_second",
        "CREATE TABLE \"Later\" (id int PRIMARY KEY);\n",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old = deploy(&config("1s"), false);
    old.assert_clean_error(7);
    assert!(
        old.stderr.contains("above backup_max_age"),
        "{}",
        old.stderr
    );
    let later: Option<String> = client
        .query_one("SELECT to_regclass('\"Later\"')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(later, None);

    // A failing archive_command refuses with the archiver's cause.
    client
        .batch_execute("ALTER SYSTEM SET archive_command = 'false'")
        .await
        .unwrap();
    client.query("SELECT pg_reload_conf()", &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.query("SELECT pg_switch_wal()", &[]).await.unwrap();
    for _ in 0..100 {
        if Archiver::read(&client).await.unwrap().failed_count > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failing = deploy(&config("1h"), false);
    failing.assert_clean_error(7);
    assert!(
        failing.stderr.contains("archive_command failed"),
        "{}",
        failing.stderr
    );
    assert!(
        failing.stderr.contains("pgbackrest check"),
        "{}",
        failing.stderr
    );
}

/// Stops a side cluster pgdeck left running (it outlives the command, for the operator).
fn stop_side(dir: &std::path::Path) {
    let pg_ctl = pgdeck::db::sandbox::find_server_binaries()
        .expect("server binaries")
        .join("pg_ctl");
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_ctl);
        c
    } else {
        Command::new(pg_ctl)
    };
    let out = cmd
        .arg("-D")
        .arg(dir)
        .args(["-m", "immediate", "-w", "stop"])
        .current_dir("/")
        .output()
        .expect("pg_ctl stop");
    assert!(out.status.success(), "{out:?}");
}

/// `pgdeck --config CONFIG ARGS...`
fn cli(config: &std::path::Path, args: &[&str]) -> common::Run {
    let mut cmd = pgdeck_cmd();
    cmd.arg("--config").arg(config).args(args);
    run(cmd)
}

async fn wait_archived(client: &tokio_postgres::Client, wal: &str) {
    for _ in 0..200 {
        let a = Archiver::read(client).await.expect("archiver");
        if a.last_archived_wal.as_deref().is_some_and(|w| w >= wal) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{wal} was not archived within 20 s");
}

#[tokio::test]
async fn a_real_stanza_is_read_checked_and_given_restore_points() {
    let stanza = stanza().await;
    let client = connect(&stanza.sandbox).await;

    // info: the full backup just taken, of this very cluster.
    let info = pgbackrest::info(&stanza.settings).await.expect("info");
    assert_eq!(info.status, "ok");
    let system_id: i64 = client
        .query_one("SELECT system_identifier FROM pg_control_system()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(info.system_ids, vec![system_id as u64]);
    let newest = info.newest().expect("a backup");
    assert_eq!(newest.kind, "full");
    assert!(newest.size > 1 << 20, "{newest:?}");
    let age = chrono::Utc::now() - newest.finished;
    assert!(age < chrono::Duration::minutes(5), "{newest:?}");

    // check and verify pass on a healthy stanza.
    let checked = pgbackrest::check_and_verify(&stanza.settings)
        .await
        .expect("check");
    assert!(checked.ok(), "{checked:?}");
    assert!(checked.error().is_none());

    // A restore point: named for the environment, in the WAL, archived at once.
    client
        .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")
        .await
        .unwrap();
    let point = pgbackrest::create_restore_point(&client, "production")
        .await
        .expect("restore point");
    assert!(point.name.starts_with("pgdeck_production_"), "{point:?}");
    assert!(point.lsn.contains('/'));
    wait_archived(&client, &point.wal).await;
    let archiver = Archiver::read(&client).await.unwrap();
    assert_eq!(
        archiver.problem(Duration::from_secs(600)),
        None,
        "{archiver:?}"
    );
    let logged =
        std::fs::read_to_string(stanza.sandbox.data_dir().join("server.log")).unwrap_or_default();
    assert!(
        logged.contains(&format!("restore point \"{}\" created", point.name)),
        "the server logs the restore point"
    );

    // The same through the command line, configured as an operator would.
    let config = stanza.write_config();
    let listed = cli(&config, &["backup", "list"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.contains(&newest.label), "{}", listed.stdout);
    assert!(listed.stdout.contains("full"), "{}", listed.stdout);
    let listed = cli(&config, &["backup", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(v["stanza"]["backups"][0]["label"], newest.label.as_str());
    let verified = cli(&config, &["backup", "verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified.stdout.contains("pgbackrest check: ok"),
        "{}",
        verified.stdout
    );
    assert!(
        verified.stdout.contains("pgbackrest verify: ok"),
        "{}",
        verified.stdout
    );
    let file = cli(&config, &["backup", "verify", "app.dump"]);
    file.assert_clean_error(2);

    // The in-place procedure names the stanza, the point and what it loses; it changes nothing.
    let in_place = [
        "backup",
        "restore",
        "--point",
        &point.name,
        "--in-place",
        "--print",
    ];
    let printed = cli(&config, &in_place);
    assert_eq!(printed.code, 0, "{printed:?}");
    for expected in [
        "--stanza=pgdeck".to_owned(),
        format!("--target={}", point.name),
        "--target-action=promote".to_owned(),
        "--delta".to_owned(),
        "every write to the whole cluster".to_owned(),
        format!("pg_ctl -D {}", stanza.sandbox.data_dir().display()),
    ] {
        assert!(
            printed.stdout.contains(&expected),
            "{expected}: {}",
            printed.stdout
        );
    }
    let printed = cli(&config, &[&in_place[..], &["--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&printed.stdout).expect("json");
    assert_eq!(v["procedure"]["point"], point.name.as_str());
    assert_eq!(v["procedure"]["steps"].as_array().unwrap().len(), 5);
    let unprinted = cli(
        &config,
        &["backup", "restore", "--point", &point.name, "--in-place"],
    );
    unprinted.assert_clean_error(2);
    assert!(unprinted.stderr.contains("--yes"), "{unprinted:?}");
    let nowhere = cli(&config, &["backup", "restore", "--point", &point.name]);
    assert_eq!(nowhere.code, 2, "--side or --in-place: {nowhere:?}");

    // A broken archive_command: the archiver's failures are the cause, check fails (exit 10).
    client
        .batch_execute("ALTER SYSTEM SET archive_command = 'false'")
        .await
        .unwrap();
    client.query("SELECT pg_reload_conf()", &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .batch_execute("CREATE TABLE later (y int); SELECT pg_switch_wal()")
        .await
        .unwrap();
    let mut problem = None;
    for _ in 0..100 {
        let a = Archiver::read(&client).await.unwrap();
        problem = a.problem(Duration::from_secs(600));
        if problem.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let problem = problem.expect("the failing archive_command is seen");
    assert!(problem.contains("archive_command failed"), "{problem}");
    let checked = pgbackrest::check_and_verify(&stanza.settings)
        .await
        .expect("check runs");
    assert!(!checked.check.ok, "{checked:?}");
    let err = checked.error().expect("a verification failure");
    assert_eq!(err.kind, ErrorKind::VerifyFailed);
    assert!(err.cause.contains("pgbackrest check"), "{}", err.cause);
    assert!(err.hint.contains("check"), "{}", err.hint);
    let verified = cli(&config, &["backup", "verify"]);
    verified.assert_clean_error(10);
    assert!(
        verified.stdout.contains("pgbackrest check: FAILED"),
        "{}",
        verified.stdout
    );
    let verified = cli(&config, &["backup", "verify", "--json"]);
    assert_eq!(verified.code, 10, "{verified:?}");
    let v: serde_json::Value = serde_json::from_str(&verified.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["check"]["ok"], false);
    assert!(
        v["error"]["cause"]
            .as_str()
            .unwrap()
            .contains("pgbackrest check")
    );
}

#[tokio::test]
async fn a_missing_stanza_and_a_missing_program_are_clear_errors() {
    let repo = tempfile::tempdir().unwrap();
    let config = repo.path().join("pgbackrest.conf");
    std::fs::write(
        &config,
        format!(
            "[global]\nrepo1-path={0}/repo\nlog-path={0}\nlock-path={0}\nlog-level-console=warn\n",
            repo.path().display()
        ),
    )
    .unwrap();
    if nix::unistd::geteuid().is_root() {
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(repo.path())
            .status()
            .unwrap();
    }
    let settings = PgbackrestSettings {
        config: Some(config),
        command: command(),
        ..PgbackrestSettings::new("nowhere")
    };
    let err = pgbackrest::info(&settings).await.unwrap_err();
    assert!(err.hint.contains("stanza-create"), "{}", err.hint);
    assert!(
        err.cause.contains("stanza nowhere is not set up"),
        "{}",
        err.cause
    );
    let missing = PgbackrestSettings {
        command: vec![repo.path().join("no-such-pgbackrest").display().to_string()],
        ..settings
    };
    let err = pgbackrest::info(&missing).await.unwrap_err();
    assert!(err.cause.contains("could not run"), "{}", err.cause);
    assert!(
        err.hint.contains("apt-get install pgbackrest"),
        "{}",
        err.hint
    );
}

/// The PITR checklist's steps as the console's jobs run them (the core operations), and their
/// headless twins: base backup recent, archiving healthy, restore point created, and at the end
/// the base backup and WAL the point needs still kept.
#[tokio::test]
async fn the_pitr_checklist_steps_read_the_stanza_mark_a_point_and_find_it_kept() {
    use pgdeck::release::{self, Context, Environment};
    use std::sync::Arc;

    let stanza = stanza().await;
    let journal = tempfile::tempdir().unwrap();
    let mut env = Environment::new(
        "production",
        pgdeck::target::DbTarget::socket(
            stanza.sandbox.data_dir(),
            stanza.sandbox.port(),
            "postgres",
            "postgres",
        ),
    );
    env.protected = true;
    env.backup.pgbackrest = Some(stanza.settings.clone());
    let context = |env: &Environment| {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        Context::new(
            env.clone(),
            Arc::new(pgdeck::journal::CommandJournal::new(
                journal.path(),
                &env.name,
                &env.target.dbname,
                "checklist",
            )),
            tx,
            tokio_util::sync::CancellationToken::new(),
        )
    };
    let ctx = context(&env);

    let recent = release::base_backup_recent(&ctx).await.expect("recent");
    assert!(
        recent.starts_with("base backup ") && recent.contains("(full)"),
        "{recent}"
    );
    let healthy = release::archiving_healthy(&ctx).await.expect("healthy");
    assert!(healthy.starts_with("pgbackrest check passed"), "{healthy}");
    let state = release::pitr_state(&env, journal.path())
        .await
        .unwrap()
        .expect("PITR mode");
    assert_eq!(state.refusal, None);
    assert_eq!(state.restore_point, None);
    let (backup_age, archived_age) = state.ages();
    assert!(backup_age.unwrap() < Duration::from_secs(600));
    assert!(archived_age.unwrap() < Duration::from_secs(600));
    // Nothing to keep before a point exists.
    let e = release::point_retained(&ctx, journal.path())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input, "{e:?}");

    let point = release::create_restore_point(&ctx).await.expect("a point");
    let state = release::pitr_state(&env, journal.path())
        .await
        .unwrap()
        .unwrap();
    let named = state.restore_point.expect("the journal names it");
    assert_eq!(
        (named.name.as_str(), named.lsn.as_str()),
        (point.name.as_str(), point.lsn.as_str())
    );
    assert_eq!(named.base_backup, state.backup.as_ref().unwrap().label);
    let kept = release::point_retained(&ctx, journal.path())
        .await
        .expect("kept");
    assert!(
        kept.contains(&point.name) && kept.contains("kept"),
        "{kept}"
    );

    // The same gate, refused: a base backup older than backup_max_age.
    let mut strict = env.clone();
    strict.backup.max_age = Duration::from_millis(1);
    let e = release::base_backup_recent(&context(&strict))
        .await
        .unwrap_err();
    assert_eq!(e.guard, Some(pgdeck::error::Guard::Backup), "{e:?}");
    assert!(e.cause.contains("above backup_max_age"), "{}", e.cause);
    let state = release::pitr_state(&strict, journal.path())
        .await
        .unwrap()
        .unwrap();
    assert!(
        state
            .refusal
            .as_deref()
            .is_some_and(|r| r.contains("above backup_max_age")),
        "{:?}",
        state.refusal
    );
    // An environment of dump files has none of these steps.
    let mut dumps = env.clone();
    dumps.backup.pgbackrest = None;
    let e = release::create_restore_point(&context(&dumps))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input, "{e:?}");
    assert!(
        release::pitr_state(&dumps, journal.path())
            .await
            .unwrap()
            .is_none()
    );

    // Headless: a restore point, then an incremental base backup of the stanza.
    let config = stanza.write_config();
    let mut cmd = pgdeck_cmd();
    cmd.env("PGDECK_JOURNAL_DIR", journal.path())
        .arg("--config")
        .arg(&config)
        .args(["backup", "restore-point", "--json"]);
    let marked = run(cmd);
    assert_eq!(marked.code, 0, "{marked:?}");
    let v: serde_json::Value = serde_json::from_str(&marked.stdout).expect("json");
    let name = v["restore_point"]["name"].as_str().unwrap().to_owned();
    assert_ne!(name, point.name);
    let newest = release::newest_point(&env, journal.path()).expect("journaled");
    assert_eq!(newest.name, name);
    let incr = cli(&config, &["backup", "create", "--type", "incr", "--json"]);
    assert_eq!(incr.code, 0, "{incr:?}");
    let v: serde_json::Value = serde_json::from_str(&incr.stdout).expect("json");
    assert_eq!(v["backup"]["kind"], "incr", "{v}");
    let info = pgbackrest::info(&stanza.settings).await.unwrap();
    assert_eq!(info.backups.len(), 2);
    assert_eq!(
        info.newest().unwrap().label,
        v["backup"]["label"].as_str().unwrap()
    );
}

/// In-place recovery of the environment's own cluster to a restore point: refused without the
/// name typed, for a point the journals never recorded, for a server elsewhere; then run for
/// real, it loses what came after the point, keeps what came before, and is journaled.
#[tokio::test]
async fn in_place_recovery_is_guarded_then_brings_the_cluster_back_to_the_point() {
    let stanza = stanza().await;
    let client = connect(&stanza.sandbox).await;
    let journal = tempfile::tempdir().unwrap();
    let config = stanza.write_config();
    let pgdeck = |config: &std::path::Path, args: &[&str]| {
        let mut cmd = pgdeck_cmd();
        cmd.env("PGDECK_JOURNAL_DIR", journal.path())
            .arg("--config")
            .arg(config)
            .args(args);
        run(cmd)
    };
    client
        .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept SELECT generate_series(1, 500)")
        .await
        .unwrap();
    let marked = pgdeck(&config, &["backup", "restore-point", "--json"]);
    assert_eq!(marked.code, 0, "{marked:?}");
    let v: serde_json::Value = serde_json::from_str(&marked.stdout).unwrap();
    let point = v["restore_point"]["name"].as_str().unwrap().to_owned();
    // After the point: the writes an in-place recovery loses.
    client
        .batch_execute("INSERT INTO kept VALUES (501); CREATE TABLE later (y int)")
        .await
        .unwrap();

    let in_place = |point: &str, more: &[&str]| {
        let mut args = vec![
            "backup",
            "restore",
            "--point",
            point,
            "--in-place",
            "--json",
        ];
        args.extend_from_slice(more);
        pgdeck(&config, &args)
    };
    let guard_of = |r: &common::Run| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
        v["guard"].clone()
    };
    let wrong = in_place(&point, &["--yes", "--confirm", "not_this_db"]);
    assert_eq!(wrong.code, 7, "{wrong:?}");
    assert_eq!(guard_of(&wrong), "confirmation");
    let plain_yes = in_place(&point, &["--yes"]);
    assert_eq!(plain_yes.code, 7, "the name is wanted: {plain_yes:?}");
    assert_eq!(guard_of(&plain_yes), "confirmation");
    let unknown = in_place(
        "pgdeck_production_nope",
        &["--yes", "--confirm", "postgres"],
    );
    assert_eq!(unknown.code, 7, "{unknown:?}");
    assert_eq!(guard_of(&unknown), "recovery_target");
    // The same environment reached over the network: refused before anything is asked.
    let remote = stanza.repo.path().join("remote.toml");
    std::fs::write(
        &remote,
        std::fs::read_to_string(&config).unwrap().replace(
            &stanza.sandbox.url("postgres"),
            "postgresql://postgres@db.example.invalid:5432/postgres",
        ),
    )
    .unwrap();
    let elsewhere = pgdeck(
        &remote,
        &[
            "backup",
            "restore",
            "--point",
            &point,
            "--in-place",
            "--yes",
            "--confirm",
            "postgres",
            "--json",
        ],
    );
    assert_eq!(elsewhere.code, 7, "{elsewhere:?}");
    assert_eq!(guard_of(&elsewhere), "not_local");
    // Nothing was touched by any of them.
    let rows: i64 = client
        .query_one("SELECT count(*) FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 501);

    let done = in_place(&point, &["--yes", "--confirm", "postgres"]);
    assert_eq!(done.code, 0, "{done:?}");
    let v: serde_json::Value = serde_json::from_str(&done.stdout).unwrap();
    assert_eq!(v["recovered"]["point"], point.as_str());
    assert_eq!(v["recovered"]["port"], stanza.sandbox.port());
    let tables = v["recovered"]["tables"].as_array().unwrap();
    assert!(
        tables.iter().any(|t| t[0] == "public.kept" && t[1] == 500),
        "{tables:?}"
    );
    let client = connect(&stanza.sandbox).await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 500,
        "what came before the point is there, what came after is not"
    );
    let later: Option<String> = client
        .query_one("SELECT to_regclass('later')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(later, None);
    let (recovering, timeline): (bool, i32) = {
        let r = client
            .query_one(
                "SELECT pg_is_in_recovery(), timeline_id FROM pg_control_checkpoint()",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(!recovering, "a primary again");
    assert!(timeline > 1, "on a new timeline: {timeline}");
    let journaled: String = std::fs::read_dir(journal.path().join("production"))
        .unwrap()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
        .collect();
    assert!(journaled.contains("\"in-place recovery\""), "{journaled}");
    assert!(journaled.contains("confirmed"), "{journaled}");
}
