//! Backups through the real binary against a real cluster: the create / verify / restore round
//! trip, damaged files, the restore guards, the password kept out of pg_dump's argv, a pg_dump
//! killed mid-way, and retention.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgdeck::cli::exit;

const SECRET: &str = "Backup-Pw-7f3a9c";

fn code(c: u8) -> i32 {
    i32::from(c)
}

fn backup(db: &TestDb, m: &Migrations, dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["backup", "--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run(pgdeck(db, m.path(), &all))
}

fn dumps(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "dump"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".partial") || n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

async fn sample_db(test: &str, users: i64) -> (TestDb, Migrations) {
    let db = fresh_db(test).await;
    let m = Migrations::samples();
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    db.exec(&format!(
        "INSERT INTO \"User\" (id, email, name, \"updatedAt\") \
         SELECT 'u' || g, 'user' || g || '@example.com', repeat('n', 40), now() FROM generate_series(1, {users}) g;
         INSERT INTO \"QRCode\" (id, code, \"ownerId\") SELECT 'q' || g, 'code-' || g, 'u' || g FROM generate_series(1, {users} / 2) g;"
    ))
    .await;
    (db, m)
}

#[tokio::test]
async fn create_verify_drop_a_table_restore_and_the_table_is_back_with_its_rows() {
    let (db, m) = sample_db("backup_roundtrip", 2_000).await;
    let dir = tempfile::tempdir().unwrap();

    let created = backup(&db, &m, dir.path(), &["create"]);
    assert_eq!(created.code, 0, "{created:?}");
    let files = dumps(dir.path());
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with(&format!("{}_default_", db.name)) && name.ends_with(".dump"),
        "{name}"
    );
    let entry: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.json", files[0].display())).unwrap(),
    )
    .unwrap();
    assert_eq!(entry["sha256"], sha256_of(&files[0]));
    assert_eq!(
        entry["migration_head"],
        "20251105000000_add_qrcode_used_by_index"
    );
    assert_eq!(entry["table_rows"]["public.User"], 2000);
    assert!(entry["toc_entries"].as_u64().unwrap() > 10);
    assert!(leftovers(dir.path()).is_empty());

    let verified = backup(&db, &m, dir.path(), &["verify", &name, "--restore-test"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified.stdout.contains("table row counts match"),
        "{}",
        verified.stdout
    );
    let list = backup(&db, &m, dir.path(), &["list"]);
    assert!(
        list.stdout.contains("restore-test") && list.stdout.contains("present"),
        "{}",
        list.stdout
    );

    db.exec("DROP TABLE \"QRCode\"").await;
    assert!(!db.table_exists("QRCode").await);
    // Connections this test just closed may still be winding down on the server.
    let restored = backup(
        &db,
        &m,
        dir.path(),
        &["restore", &name, "--yes", "--terminate-sessions"],
    );
    assert_eq!(restored.code, 0, "{restored:?}");
    assert!(
        restored
            .stdout
            .contains("ok  rows in public.User (recorded 2000): 2000"),
        "{}",
        restored.stdout
    );
    assert!(
        restored
            .stdout
            .contains("SELECT COUNT(*) FROM \"User\": 2000"),
        "{}",
        restored.stdout
    );
    let qrcodes: i64 = db.scalar("SELECT count(*) FROM \"QRCode\"").await;
    assert_eq!(qrcodes, 1000);
    assert_eq!(run(pgdeck(&db, m.path(), &["status"])).code, 0);
}

#[tokio::test]
async fn a_flipped_byte_or_a_truncated_file_fails_verify_and_is_never_restored() {
    let (db, m) = sample_db("backup_damaged", 200).await;
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(backup(&db, &m, dir.path(), &["create"]).code, 0);
    let file = dumps(dir.path()).remove(0);
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(backup(&db, &m, dir.path(), &["verify", &name]).code, 0);
    let original = std::fs::read(&file).unwrap();

    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&file, &flipped).unwrap();
    let r = backup(&db, &m, dir.path(), &["verify", &name]);
    r.assert_clean_error(code(exit::VERIFY_FAILED));
    assert!(
        r.stderr.contains("does not match its catalog entry"),
        "{}",
        r.stderr
    );
    // Verified earlier, but restore checks the file again and refuses.
    let r = backup(&db, &m, dir.path(), &["restore", &name, "--yes"]);
    r.assert_clean_error(code(exit::VERIFY_FAILED));

    std::fs::write(&file, &original[..original.len() / 3]).unwrap();
    let r = backup(&db, &m, dir.path(), &["verify", &name]);
    r.assert_clean_error(code(exit::VERIFY_FAILED));
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);

    std::fs::remove_file(&file).unwrap();
    let r = backup(&db, &m, dir.path(), &["verify", &name]);
    r.assert_clean_error(code(exit::VERIFY_FAILED));
    assert!(r.stderr.contains("is missing"), "{}", r.stderr);
    let list = backup(&db, &m, dir.path(), &["list"]);
    assert!(list.stdout.contains("MISSING"), "{}", list.stdout);
    assert!(db.table_exists("User").await, "nothing was restored");
}

#[tokio::test]
async fn restore_refuses_an_unverified_backup_and_a_protected_environment_needs_the_name() {
    let (db, m) = sample_db("backup_guards", 100).await;
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigEnv::write(
        &db,
        &m,
        "production",
        &format!(
            "protected = true\nbackup_dir = \"{}\"",
            dir.path().display()
        ),
    );
    assert_eq!(run(config.cmd(&["backup", "create"])).code, 0);
    let name = dumps(dir.path())[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();

    let r = run(config.cmd(&["backup", "restore", &name, "--confirm", &db.name]));
    r.assert_clean_error(code(exit::REFUSED));
    assert!(
        r.stderr.contains("never verified") && r.stderr.contains("--force-unverified"),
        "{}",
        r.stderr
    );
    run(config.cmd(&[
        "backup",
        "restore",
        &name,
        "--confirm",
        &db.name,
        "--force-unverified",
        " ",
    ]))
    .assert_clean_error(code(exit::USAGE));
    config.cmd(&["backup", "verify", &name]).status().unwrap();
    // A backup of production does not stand for this database in another environment.
    let r = backup(&db, &m, dir.path(), &["restore", &name, "--yes"]);
    r.assert_clean_error(code(exit::REFUSED));
    assert!(
        r.stderr
            .contains("it was taken in environment 'production', not 'default'")
            && r.stderr.contains("--accept-foreign-backup"),
        "{}",
        r.stderr
    );
    run(config.cmd(&["backup", "restore", &name, "--yes"])).assert_clean_error(code(exit::REFUSED));
    run(config.cmd(&["backup", "restore", &name, "--confirm", "wrong_db"]))
        .assert_clean_error(code(exit::REFUSED));

    // Another session is connected: refused unless asked to terminate it.
    let _other = db.client().await;
    let r = run(config.cmd(&["backup", "restore", &name, "--confirm", &db.name]));
    r.assert_clean_error(code(exit::REFUSED));
    assert!(r.stderr.contains("--terminate-sessions"), "{}", r.stderr);
    let r = run(config.cmd(&[
        "backup",
        "restore",
        &name,
        "--confirm",
        &db.name,
        "--terminate-sessions",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
}

/// pg_dump processes started by `parent` (other tests run their own at the same time), with
/// their command lines.
fn pg_dumps_of(parent: u32) -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ')'.
            let (comm, rest) = stat.rsplit_once(") ")?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            if ppid != parent || !comm.ends_with("(pg_dump") {
                return None;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect()
}

#[tokio::test]
async fn the_password_never_reaches_pg_dumps_argv_or_any_output() {
    let Some(sandbox) = sandbox() else {
        eprintln!(
            "PGDECK_TEST_DATABASE_URL is set: the server's authentication is not ours to configure, so this case is not checked"
        );
        return;
    };
    let (db, m) = sample_db("backup_password", 200_000).await;
    db.exec(&format!(
        "DO $$ BEGIN CREATE ROLE backup_operator LOGIN SUPERUSER PASSWORD '{SECRET}'; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgresql://backup_operator:{SECRET}@127.0.0.1:{}/{}?sslmode=disable",
        sandbox.port(),
        db.name
    );
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        &url,
        "--migrations",
        m.path().to_str().unwrap(),
        "backup",
        "--dir",
        dir.path().to_str().unwrap(),
        "create",
    ]);
    let mut child = spawn(cmd);
    // Every pg_dump it starts (the version probe too), until the dump itself has been seen.
    let mut seen: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|c| c.contains("--format=custom"))
        && child.try_wait().unwrap().is_none()
        && std::time::Instant::now() < deadline
    {
        for (_, cmdline) in pg_dumps_of(child.id()) {
            if !seen.contains(&cmdline) {
                seen.push(cmdline);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        seen.iter().any(|c| c.contains("--format=custom")),
        "the dump was never seen running: {seen:?}"
    );
    for cmdline in &seen {
        assert!(!cmdline.contains(SECRET), "password in argv: {cmdline}");
    }
    assert!(
        !r.stdout.contains(SECRET) && !r.stderr.contains(SECRET),
        "{r:?}"
    );
    let entry =
        std::fs::read_to_string(format!("{}.json", dumps(dir.path())[0].display())).unwrap();
    assert!(!entry.contains(SECRET), "password in the catalog: {entry}");
}

#[tokio::test]
async fn killing_pg_dump_midway_keeps_nothing_and_leaves_earlier_backups_alone() {
    let (db, m) = sample_db("backup_killed", 200_000).await;
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        backup(&db, &m, dir.path(), &["create", "--no-row-counts"]).code,
        0
    );
    let earlier = dumps(dir.path());
    let earlier_sha = sha256_of(&earlier[0]);
    // The same second would give the same name; the second backup must be a new file.
    std::thread::sleep(Duration::from_millis(1100));

    let cmd = pgdeck(
        &db,
        m.path(),
        &["backup", "--dir", dir.path().to_str().unwrap(), "create"],
    );
    let child = spawn(cmd);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut killed = false;
    while !killed && std::time::Instant::now() < deadline {
        for (pid, cmdline) in pg_dumps_of(child.id()) {
            if cmdline.contains("--format=custom") {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                killed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(killed, "pg_dump was never seen running");
    let r = Run::from(child.wait_with_output().unwrap());
    r.assert_clean_error(code(exit::RUNTIME));
    assert!(r.stderr.contains("nothing was kept"), "{}", r.stderr);
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    assert_eq!(
        dumps(dir.path()),
        earlier,
        "no new backup, the earlier one still there"
    );
    assert_eq!(sha256_of(&earlier[0]), earlier_sha);
    let catalog_entries = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(catalog_entries, 1);
}

#[test]
fn prune_keeps_recent_and_the_newest_verified_and_deletes_only_with_yes() {
    use pgdeck::backup::prune;
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    // name, age in days, verified
    let backups = [
        ("a", 1, false),
        ("b", 10, true),
        ("c", 40, false),
        ("d", 45, true),
        ("e", 50, true),
        ("f", 60, false),
    ];
    for (name, days, verified) in backups {
        let file = format!("app_prod_{name}.dump");
        std::fs::write(dir.path().join(&file), b"PGDMP").unwrap();
        let at = now - chrono::Duration::days(days);
        let entry = serde_json::json!({
            "file": file, "database": "app", "environment": "prod", "source": "x", "server_version": "15.0",
            "pg_dump_version": "15.0", "size_bytes": 5, "sha256": "x", "started_at": at, "finished_at": at,
            "toc_entries": 1, "migration_head": null, "table_rows": {},
            "verification": if verified { serde_json::json!({"at": at, "how": "checksum_and_toc", "details": ""}) } else { serde_json::Value::Null },
        });
        std::fs::write(dir.path().join(format!("{file}.json")), entry.to_string()).unwrap();
    }
    let plan = prune::plan(dir.path(), "app", 30, 2, now).unwrap();
    let deleted: Vec<&str> = plan
        .iter()
        .filter(|d| d.delete)
        .map(|d| d.file.as_str())
        .collect();
    // Kept: a (recent), b (recent, verified), d (second newest verified). Deleted: the rest.
    assert_eq!(
        deleted,
        ["app_prod_c.dump", "app_prod_e.dump", "app_prod_f.dump"]
    );

    // The only verified backup survives even when everything is past retention.
    let only = prune::plan(dir.path(), "app", 0, 0, now + chrono::Duration::days(365)).unwrap();
    assert!(
        only.iter()
            .any(|d| !d.delete && d.file == "app_prod_b.dump"),
        "{only:?}"
    );

    // Without --yes nothing is deleted; with it exactly the planned files go.
    let mut cmd = pgdeck_cmd();
    cmd.args([
        "--database-url",
        "postgresql://x@127.0.0.1:1/app",
        "backup",
        "--dir",
        dir.path().to_str().unwrap(),
        "prune",
    ]);
    let dry = run(cmd);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("would delete"), "{}", dry.stdout);
    assert_eq!(dumps(dir.path()).len(), 6);
    prune::apply(dir.path(), &plan).unwrap();
    let left: Vec<String> = dumps(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["app_prod_a.dump", "app_prod_b.dump", "app_prod_d.dump"]
    );
}

#[tokio::test]
async fn a_directory_backup_dumps_and_restores_in_parallel_and_its_files_are_checksummed() {
    let (db, m) = sample_db("backup_directory", 3_000).await;
    let dir = tempfile::tempdir().unwrap();
    let created = backup(
        &db,
        &m,
        dir.path(),
        &["create", "--format", "directory", "--jobs", "2"],
    );
    assert_eq!(created.code, 0, "{created:?}");
    let backups: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "dir"))
        .collect();
    assert_eq!(
        backups.len(),
        1,
        "{:?}",
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
    assert!(backups[0].join("toc.dat").is_file());
    let name = backups[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(leftovers(dir.path()).is_empty());

    let verified = backup(&db, &m, dir.path(), &["verify", &name, "--restore-test"]);
    assert_eq!(verified.code, 0, "{verified:?}");

    db.exec("DROP TABLE \"QRCode\"").await;
    let restored = backup(
        &db,
        &m,
        dir.path(),
        &[
            "restore",
            &name,
            "--yes",
            "--terminate-sessions",
            "--jobs",
            "2",
        ],
    );
    assert_eq!(restored.code, 0, "{restored:?}");
    let qrcodes: i64 = db.scalar("SELECT count(*) FROM \"QRCode\"").await;
    assert_eq!(qrcodes, 1500);

    // Every file inside counts: damage one data file and verification fails.
    let data_file = std::fs::read_dir(&backups[0])
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n != "toc.dat"))
        .unwrap();
    let mut bytes = std::fs::read(&data_file).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&data_file, bytes).unwrap();
    backup(&db, &m, dir.path(), &["verify", &name]).assert_clean_error(code(exit::VERIFY_FAILED));

    // Parallel restore needs the directory format.
    assert_eq!(backup(&db, &m, dir.path(), &["create"]).code, 0);
    let custom = dumps(dir.path()).remove(0);
    let custom = custom.file_name().unwrap().to_str().unwrap();
    backup(&db, &m, dir.path(), &["verify", custom]);
    backup(
        &db,
        &m,
        dir.path(),
        &["restore", custom, "--yes", "--jobs", "2"],
    )
    .assert_clean_error(code(exit::USAGE));
    backup(&db, &m, dir.path(), &["create", "--jobs", "2"]).assert_clean_error(code(exit::USAGE));
}

/// The events of one `backup create`, taken in process.
async fn create_events(
    db: &TestDb,
    dir: &Path,
    format: pgdeck::backup::BackupFormat,
    jobs: u32,
) -> Vec<pgdeck::backup::BackupEvent> {
    let opts = pgdeck::backup::CreateOptions {
        dir: dir.to_owned(),
        environment: "default".into(),
        count_rows: true,
        format,
        jobs,
        cancel: tokio_util::sync::CancellationToken::new(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    pgdeck::backup::create(&db.target, &opts, &tx)
        .await
        .unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    events
}

/// Progress as it means something: tables counted as they finish, from 0 to all of them, the
/// bytes, tables and fraction never going back, the fraction under 1 until the backup is
/// finished, and an ETA only after some seconds of data.
///
/// `one_by_one`: each table's end is its own event (one worker). Parallel workers may end two
/// tables between two reads of pg_dump's output, so there the count only has to climb from 0
/// to all of them.
fn assert_honest_progress(events: &[pgdeck::backup::BackupEvent], tables: usize, one_by_one: bool) {
    use pgdeck::backup::BackupEvent as E;
    assert!(
        matches!(events.first(), Some(E::Started { tables: t, .. }) if *t == tables),
        "{events:?}"
    );
    let Some(E::Finished { bytes, .. }) = events.last() else {
        panic!("not finished last: {events:?}");
    };
    let progress: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            E::Progress {
                bytes_written,
                estimated_bytes,
                tables_done,
                tables_total,
                fraction,
                elapsed_ms,
                eta_ms,
            } => Some((
                *bytes_written,
                *estimated_bytes,
                *tables_done,
                *tables_total,
                *fraction,
                *elapsed_ms,
                *eta_ms,
            )),
            _ => None,
        })
        .collect();
    assert!(
        progress.len() > tables,
        "one event per table at least: {progress:?}"
    );
    assert_eq!(progress[0].2, 0, "no table is done before pg_dump starts");
    assert_eq!(progress[0].4, 0.0);
    for w in progress.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert!(
            b.0 >= a.0 && b.2 >= a.2 && b.4 >= a.4,
            "went back: {a:?} -> {b:?}"
        );
    }
    for p in &progress {
        assert_eq!(p.3, tables);
        assert!(p.4 < 1.0, "full before the backup finished: {p:?}");
        assert!(p.1 >= p.0, "written past the estimate: {p:?}");
        if p.6.is_some() {
            assert!(p.5 >= 2000, "an ETA after less than 2 s: {p:?}");
        }
    }
    // Tables finish one at a time, not all at once.
    let mut counts: Vec<usize> = progress.iter().map(|p| p.2).collect();
    counts.dedup();
    if one_by_one {
        assert_eq!(counts, (0..=tables).collect::<Vec<_>>(), "{progress:?}");
    } else {
        assert_eq!(
            (counts.first(), counts.last()),
            (Some(&0), Some(&tables)),
            "{progress:?}"
        );
    }
    let last = progress.last().unwrap();
    assert_eq!(
        (last.0, last.1, last.6),
        (*bytes, *bytes, None),
        "the size is known once pg_dump is done"
    );
}

#[tokio::test]
async fn backup_progress_counts_tables_as_they_finish_and_is_never_full_before_the_end() {
    let db = fresh_db("backup_progress").await;
    // Tables of different sizes and kinds of data, the biggest last (as the sample app's "User"
    // sorts last), so that a table counted when it starts would show all done early.
    db.exec(
        "CREATE TABLE a_empty (id int);
         CREATE TABLE b_small (id int PRIMARY KEY, v text);
         INSERT INTO b_small SELECT g, 'v' || g FROM generate_series(1, 100) g;
         CREATE TABLE c_numbers AS SELECT g AS id, (random() * 1e9)::bigint AS n, now() - random() * interval '1 year' AS at FROM generate_series(1, 150000) g;
         CREATE TABLE d_text AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS v FROM generate_series(1, 300000) g;",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let events = create_events(&db, dir.path(), pgdeck::backup::BackupFormat::Custom, 1).await;
    assert_honest_progress(&events, 4, true);
    // The estimate made before pg_dump started is of the right order for this data.
    let (
        Some(pgdeck::backup::BackupEvent::Started {
            estimated_bytes, ..
        }),
        Some(pgdeck::backup::BackupEvent::Finished { bytes, .. }),
    ) = (events.first(), events.last())
    else {
        unreachable!()
    };
    let ratio = *estimated_bytes as f64 / *bytes as f64;
    assert!(
        (0.5..2.0).contains(&ratio),
        "estimated {estimated_bytes}, wrote {bytes}"
    );
}

#[tokio::test]
async fn parallel_directory_backup_progress_counts_each_workers_finished_table() {
    let db = fresh_db("backup_progress_parallel").await;
    db.exec(
        "CREATE TABLE a_empty (id int);
         CREATE TABLE b_small AS SELECT g AS id FROM generate_series(1, 100) g;
         CREATE TABLE c_text AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g;",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let events = create_events(&db, dir.path(), pgdeck::backup::BackupFormat::Directory, 2).await;
    assert_honest_progress(&events, 3, false);
}
