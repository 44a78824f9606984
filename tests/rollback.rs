//! The incident path on a real cluster: a migration drops a column the sample queries use; a
//! forward rollback from its down.sql brings the column back, a restore brings the data back;
//! hooks run around deploys with their output journaled; the webhook hears about it all and a
//! broken webhook never stops a release.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;
use pgdeck::cli::exit;

const INIT: &str = "CREATE TABLE \"User\" (id int PRIMARY KEY, phone text);\n\
                    INSERT INTO \"User\" VALUES (1, '+1 555 0100'), (2, '+1 555 0101');";
const DROP: &str = "ALTER TABLE \"User\" DROP COLUMN phone;";
const DOWN: &str = "ALTER TABLE \"User\" ADD COLUMN phone text;";

fn migrations() -> Migrations {
    let m = Migrations::new();
    m.add("20250101000000_init", INIT);
    m.add("20250102000000_drop_phone", DROP);
    std::fs::write(
        m.file("20250102000000_drop_phone")
            .with_file_name("down.sql"),
        DOWN,
    )
    .unwrap();
    m
}

async fn phone_column_exists(db: &TestDb) -> bool {
    db.scalar::<bool>(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'User' AND column_name = 'phone')",
    )
    .await
}

#[tokio::test]
async fn a_forward_rollback_from_down_sql_brings_the_dropped_column_back() {
    let db = fresh_db("rollback_forward").await;
    let m = migrations();
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    assert!(!phone_column_exists(&db).await);

    // Nothing to undo in a pending or unknown migration, or without a down.sql.
    run(pgdeck(&db, m.path(), &["revert", "20250101000000_init"]))
        .assert_clean_error(i32::from(exit::USAGE));
    run(pgdeck(&db, m.path(), &["revert", "20990101000000_nope"]))
        .assert_clean_error(i32::from(exit::USAGE));

    // Without --deploy it writes the migration and shows the plan.
    let written = run(pgdeck(
        &db,
        m.path(),
        &["revert", "20250102000000_drop_phone"],
    ));
    assert_eq!(written.code, 0, "{written:?}");
    assert!(
        written.stderr.contains("_rollback_drop_phone"),
        "{}",
        written.stderr
    );
    assert!(written.stdout.contains("ADD COLUMN"), "{}", written.stdout);
    let folder = std::fs::read_dir(m.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("_rollback_drop_phone"))
        .unwrap();
    let up = std::fs::read_to_string(folder.join("migration.sql")).unwrap();
    assert!(up.contains(DOWN), "{up}");
    let redo = std::fs::read_to_string(folder.join("down.sql")).unwrap();
    assert!(
        redo.contains(DROP),
        "the rollback's own down.sql re-applies: {redo}"
    );
    assert!(!phone_column_exists(&db).await, "nothing deployed yet");

    // Deploy it like any migration.
    let deployed = run(pgdeck(&db, m.path(), &["deploy", "--yes"]));
    assert_eq!(deployed.code, 0, "{deployed:?}");
    assert!(phone_column_exists(&db).await);
    let status = run(pgdeck(&db, m.path(), &["status"]));
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        db.ledger()
            .await
            .iter()
            .any(|r| r.name.contains("_rollback_drop_phone"))
    );
    // The sample query works again (the dropped values themselves need a restore).
    assert_eq!(
        db.scalar::<i64>("SELECT count(*) FROM \"User\" WHERE phone IS NULL")
            .await,
        2
    );
}

#[tokio::test]
async fn revert_with_deploy_applies_at_once_and_several_are_undone_newest_first() {
    let db = fresh_db("rollback_several").await;
    let m = migrations();
    m.add(
        "20250103000000_add_note",
        "ALTER TABLE \"User\" ADD COLUMN note text;",
    );
    std::fs::write(
        m.file("20250103000000_add_note").with_file_name("down.sql"),
        "ALTER TABLE \"User\" DROP COLUMN note;",
    )
    .unwrap();
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    let r = run(pgdeck(
        &db,
        m.path(),
        &[
            "revert",
            "20250102000000_drop_phone",
            "20250103000000_add_note",
            "--deploy",
            "--yes",
        ],
    ));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(phone_column_exists(&db).await);
    assert!(
        !db.scalar::<bool>("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'User' AND column_name = 'note')").await
    );
    let folder = std::fs::read_dir(m.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.to_string_lossy()
                .contains("_rollback_add_note_and_1_more")
        })
        .unwrap();
    let up = std::fs::read_to_string(folder.join("migration.sql")).unwrap();
    let note = up.find("DROP COLUMN note").unwrap();
    let phone = up.find("ADD COLUMN phone").unwrap();
    assert!(note < phone, "newest first:\n{up}");
}

#[tokio::test]
async fn a_restore_brings_the_data_back_and_says_what_it_loses() {
    let db = fresh_db("rollback_restore").await;
    let m = Migrations::new();
    m.add("20250101000000_init", INIT);
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_str().unwrap();
    assert_eq!(
        run(pgdeck(&db, m.path(), &["backup", "--dir", dir, "create"])).code,
        0
    );
    assert_eq!(
        run(pgdeck(&db, m.path(), &["backup", "--dir", dir, "verify"])).code,
        0
    );
    m.add("20250102000000_drop_phone", DROP);
    db.exec("INSERT INTO \"User\" VALUES (3, '+1 555 0102')")
        .await;
    assert_eq!(run(pgdeck(&db, m.path(), &["deploy", "--yes"])).code, 0);
    assert!(!phone_column_exists(&db).await);

    let listed = run(pgdeck(
        &db,
        m.path(),
        &["backup", "--dir", dir, "list", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let file = v["backups"][0]["backup"]["file"]
        .as_str()
        .unwrap()
        .to_owned();
    let restored = run(pgdeck(
        &db,
        m.path(),
        &[
            "backup",
            "--dir",
            dir,
            "restore",
            &file,
            "--yes",
            "--terminate-sessions",
        ],
    ));
    assert_eq!(restored.code, 0, "{restored:?}");
    assert!(
        restored.stderr.contains("loses")
            && restored
                .stderr
                .contains("row(s) inserted, updated or deleted"),
        "{}",
        restored.stderr
    );
    assert!(phone_column_exists(&db).await);
    assert_eq!(
        db.scalar::<String>("SELECT phone FROM \"User\" WHERE id = 1")
            .await,
        "+1 555 0100"
    );
    // Written after the backup: gone, as the warning said.
    assert_eq!(db.scalar::<i64>("SELECT count(*) FROM \"User\"").await, 2);
}

/// A webhook receiver: records each request body; answers with `status`.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

fn receiver(status: u16) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let shared = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok() && line != "\r\n" && !line.is_empty() {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            shared
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
        }
    });
    Receiver { url, bodies }
}

#[tokio::test]
async fn hooks_run_around_a_deploy_and_the_webhook_hears_start_and_finish() {
    let db = fresh_db("rollback_hooks").await;
    let m = Migrations::new();
    m.add("20250101000000_init", INIT);
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("hooks.log");
    let hook = Receiver { ..receiver(200) };
    let cfg = ConfigEnv::write(
        &db,
        &m,
        "staging",
        &format!(
            "[environments.staging.hooks]\n\
             before_deploy = \"echo before $PGDECK_ENV $PGDECK_MIGRATIONS >> {log}\"\n\
             after_deploy = \"echo after $PGDECK_MIGRATIONS >> {log}; echo done-output\"\n\
             smoke_test = \"echo smoke failing; exit 4\"\n\
             webhook_url_env = \"PGDECK_TEST_WEBHOOK\"\n\
             webhook_retries = 1\n",
            log = log.display()
        ),
    );
    let journal = tempfile::tempdir().unwrap();
    let with_env = |args: &[&str], url: &str| {
        let mut cmd = cfg.cmd(args);
        cmd.env("PGDECK_TEST_WEBHOOK", url)
            .env("PGDECK_JOURNAL_DIR", journal.path());
        run(cmd)
    };
    let r = with_env(&["deploy", "--yes"], &hook.url);
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text,
        "before staging 20250101000000_init\nafter 20250101000000_init\n"
    );
    assert!(r.stderr.contains("| done-output"), "{}", r.stderr);
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(
        bodies[0].contains("\"text\":\"deploy started on staging"),
        "{bodies:?}"
    );
    assert!(
        bodies[1].contains("deploy finished on staging: 1 migration(s) applied"),
        "{bodies:?}"
    );

    // A failing hook run by hand: exit 1, its output journaled.
    let smoke = with_env(&["hooks", "run", "smoke_test"], &hook.url);
    assert_eq!(smoke.code, i32::from(exit::RUNTIME), "{smoke:?}");
    assert!(smoke.stderr.contains("exit 4"), "{}", smoke.stderr);
    let report = with_env(&["report"], &hook.url);
    assert!(
        report.stdout.contains("hook smoke_test | **exit 4**"),
        "{}",
        report.stdout
    );
    let list = with_env(&["hooks", "list"], &hook.url);
    assert!(
        list.stdout.contains("code_rollback      -"),
        "{}",
        list.stdout
    );
    assert!(
        !list.stdout.contains(&hook.url),
        "the webhook URL is a secret"
    );
}

#[tokio::test]
async fn a_broken_webhook_warns_and_a_failing_before_hook_stops_the_deploy() {
    let db = fresh_db("rollback_hook_failures").await;
    let m = Migrations::new();
    m.add("20250101000000_init", INIT);
    let broken = receiver(500);
    let cfg = ConfigEnv::write(
        &db,
        &m,
        "staging",
        "[environments.staging.hooks]\nwebhook_url_env = \"PGDECK_TEST_WEBHOOK\"\nwebhook_retries = 2\n",
    );
    let mut cmd = cfg.cmd(&["deploy", "--yes"]);
    cmd.env("PGDECK_TEST_WEBHOOK", &broken.url);
    let r = run(cmd);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains(
            "warning: notification not delivered after 3 attempt(s): the webhook answered 500"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&broken.url), "{}", r.stderr);
    assert!(db.table_exists("User").await);

    m.add("20250102000000_drop_phone", DROP);
    let cfg = ConfigEnv::write(
        &db,
        &m,
        "staging",
        "[environments.staging.hooks]\nbefore_deploy = \"echo maintenance page failed >&2; exit 1\"\n",
    );
    let stopped = run(cfg.cmd(&["deploy", "--yes"]));
    stopped.assert_clean_error(i32::from(exit::RUNTIME));
    assert!(
        stopped.stderr.contains("nothing was deployed"),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("| maintenance page failed"),
        "{}",
        stopped.stderr
    );
    assert!(phone_column_exists(&db).await, "the drop did not run");
}
