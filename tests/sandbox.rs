//! Throwaway clusters: they start, accept connections on the socket in their data directory, and
//! are stopped and removed when dropped. The demo's persistent cluster, and `pgdeck report` after
//! `pgdeck demo`.

use std::process::Output;

use pgdeck::db::{self, sandbox::Sandbox};

#[tokio::test]
async fn a_temporary_sandbox_is_stopped_and_removed_on_drop() {
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| {
        panic!(
            "integration tests need PostgreSQL: {}\nhint: {}",
            e.cause, e.hint
        )
    });
    let dir = sandbox.data_dir().to_owned();
    let port = sandbox.port();
    assert!(
        dir.join(format!(".s.PGSQL.{port}")).exists(),
        "socket inside the data dir"
    );
    let session = db::connect(&sandbox.target("postgres")).await.unwrap();
    let user: String = session
        .client
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "postgres");
    drop(session);

    let target = sandbox.target("postgres");
    drop(sandbox);
    assert!(!dir.exists(), "data directory removed");
    let err = match db::connect(&target).await {
        Ok(_) => panic!("the server still accepts connections after drop"),
        Err(e) => e,
    };
    assert!(err.cause.contains("cannot connect"), "{}", err.cause);
}

/// The real binary in `home`, the demo's cluster and the journal there too, nothing of the
/// caller's environment or config.
fn pgdeck_in(home: &std::path::Path, journal: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgdeck"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(home)
        .env("HOME", home)
        .env("PGDECK_DEMO_HOME", home)
        .env("PGDECK_JOURNAL_DIR", journal)
        .stdin(std::process::Stdio::null())
        .args(args)
        .output()
        .expect("run pgdeck")
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops the demo cluster however the test ends.
struct StopDemo<'a>(&'a std::path::Path, &'a std::path::Path);

impl Drop for StopDemo<'_> {
    fn drop(&mut self) {
        let _ = pgdeck_in(self.0, self.1, &["demo", "--stop"]);
    }
}

#[test]
fn report_after_the_demo_finds_its_session_and_otherwise_names_the_environments_with_sessions() {
    let home = tempfile::tempdir().unwrap();
    // As root the server runs as postgres, who must be able to enter the folder.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let (home, journal) = (home.path(), journal.path());
    let _stop = StopDemo(home, journal);
    let (code, out, err) = text(&pgdeck_in(home, journal, &["demo", "--fresh"]));
    assert_eq!(code, 0, "{out}\n{err}");

    // Where the demo ran, with no config file: the demo's session, with or without --env demo.
    for args in [&["report"][..], &["report", "--env", "demo"]] {
        let (code, out, err) = text(&pgdeck_in(home, journal, args));
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("- Environment: **demo**"), "{args:?}: {out}");
        assert!(out.contains("- Headless command: pgdeck demo"), "{out}");
        assert!(out.contains("| deploy | done |"), "{out}");
    }

    // A config file whose environment has no session yet: the demo's, and it says so.
    std::fs::write(
        home.join("pgdeck.toml"),
        "[environments.staging]\ndatabase_url = \"postgresql://app@db.invalid/app\"\n",
    )
    .unwrap();
    let (code, out, err) = text(&pgdeck_in(home, journal, &["report"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("- Environment: **demo**"), "{out}");
    assert!(err.contains("no session of environment 'staging'"), "{err}");

    // An environment asked for is the only one looked at; nothing there lists who has sessions.
    let (code, _, err) = text(&pgdeck_in(home, journal, &["report", "--env", "staging"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("error: no session of environment 'staging' in ")
            && err.contains("sessions there: demo (1 session, newest "),
        "{err}"
    );
    assert!(
        err.contains("hint: pass --env NAME (e.g. --env demo)"),
        "{err}"
    );

    // An empty journal folder says so.
    let empty = tempfile::tempdir().unwrap();
    std::fs::remove_file(home.join("pgdeck.toml")).unwrap();
    let (code, _, err) = text(&pgdeck_in(home, empty.path(), &["report"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no session of environment 'default' or 'demo' in ")
            && err.contains("nor of any other"),
        "{err}"
    );
}
