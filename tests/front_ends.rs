//! One policy, two front ends: the same scenarios through the CLI binary and through the
//! console's job runner (the jobs the console starts, their messages folded into its state)
//! end in the same refusal, from the same guard, with the same cause, or in the same outcome.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::release::{
    MemoryJournal, hold_lock, until_pgdeck_is_gone, until_pgdeck_waits_for_a_lock,
};
use common::*;
use pgdeck::checklist::{self, Checklist, Facts, State};
use pgdeck::config::Overrides;
use pgdeck::error::{Error, Guard};
use pgdeck::release::{
    self, BackupGate, Confirmation, DeployRequest, Environment, RestoreRequest, RevertRequest,
};
use pgdeck::target::ProcessVars;
use pgdeck::tui::jobs::{Job, Jobs, Origin, Runner};
use pgdeck::tui::{App, Effect, Msg};
use tokio_util::sync::CancellationToken;

const USERS: &str = "CREATE TABLE \"User\" (id int PRIMARY KEY, phone text);\n\
                     INSERT INTO \"User\" VALUES (1, '+1 555 0100');";

/// A config with a production (protected) and a staging environment on the same database,
/// sharing the default-style backup folder, as the incident had them.
struct Setup {
    db: TestDb,
    m: Migrations,
    backups: tempfile::TempDir,
    config: std::path::PathBuf,
    hooks_log: std::path::PathBuf,
}

impl Setup {
    async fn new(test: &str) -> Setup {
        let db = fresh_db(test).await;
        let m = Migrations::new();
        m.add("20250101000000_users", USERS);
        let backups = tempfile::tempdir().unwrap();
        let hooks_log = backups.path().join("hooks.log");
        let config = m.path().join("pgdeck.toml");
        let env = |name: &str, protected: bool| {
            format!(
                "[environments.{name}]\ndatabase_url = \"{url}\"\nprotected = {protected}\n\
                 backup_dir = \"{dir}\"\nrestore_checks = []\n\
                 [environments.{name}.hooks]\nbefore_deploy = \"echo before >> {log}\"\n\
                 after_deploy = \"echo after >> {log}\"\n",
                url = db.url(),
                dir = backups.path().display(),
                log = hooks_log.display(),
            )
        };
        std::fs::write(
            &config,
            format!("{}\n{}", env("production", true), env("staging", false)),
        )
        .unwrap();
        let s = Setup {
            db,
            m,
            backups,
            config,
            hooks_log,
        };
        let first = run(s.cli("staging", &["deploy"]));
        assert_eq!(first.code, 0, "{first:?}");
        let _ = std::fs::remove_file(&s.hooks_log);
        s
    }

    fn cli(&self, env: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = pgdeck_cmd();
        cmd.arg("--config")
            .arg(&self.config)
            .args(["--env", env, "--migrations"])
            .arg(self.m.path())
            .args(args);
        cmd
    }

    /// The environment exactly as the CLI resolves it.
    fn env(&self, name: &str) -> Environment {
        pgdeck::config::resolve(
            &Overrides {
                env: Some(name.into()),
                config: Some(self.config.clone()),
                database_url: None,
                migrations: Some(self.m.path().to_owned()),
            },
            &ProcessVars,
        )
        .unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint))
    }

    fn backup(&self, env: &str, verify: bool) -> String {
        let made = run(self.cli(env, &["backup", "create", "--json"]));
        assert_eq!(made.code, 0, "{made:?}");
        let v: serde_json::Value = serde_json::from_str(&made.stdout).unwrap();
        let file = v["backup"]["file"].as_str().unwrap().to_owned();
        if verify {
            let verified = run(self.cli(env, &["backup", "verify", &file]));
            assert_eq!(verified.code, 0, "{verified:?}");
        }
        file
    }

    fn catalog(&self, file: &str) -> std::path::PathBuf {
        self.backups.path().join(format!("{file}.json"))
    }

    fn edit_catalog(&self, file: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.catalog(file);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
    }

    fn hooks_ran(&self) -> bool {
        self.hooks_log.exists()
    }

    /// A confirmed production deploy through both front ends: the CLI's end, the console's end
    /// and the console's state after it.
    async fn deploy_in_both(&self) -> (CliEnd, Result<String, Error>, App) {
        let env = self.env("production");
        let job = Job::Deploy(DeployRequest {
            confirmation: Some(Confirmation::typed(&self.db.name)),
            ..DeployRequest::default()
        });
        let (result, app) = console(&env, deploy_step(&env), job).await;
        let cli = cli_end(self.cli("production", &["deploy", "--confirm", &self.db.name]));
        (cli, result, app)
    }

    /// A confirmed production restore of `file` through both front ends.
    async fn restore_in_both(&self, file: &str) -> (CliEnd, Result<String, Error>) {
        let env = self.env("production");
        let job = Job::Restore(RestoreRequest {
            backup: file.to_owned(),
            confirmation: Some(Confirmation::typed(&self.db.name)),
            jobs: 1,
            ..RestoreRequest::default()
        });
        let (result, _) = console(&env, Origin::Rollback, job).await;
        let cli = cli_end(self.cli(
            "production",
            &["backup", "restore", file, "--confirm", &self.db.name],
        ));
        (cli, result)
    }
}

/// What the CLI said: exit code, and the error's guard and cause from `--json`.
struct CliEnd {
    code: i32,
    guard: Option<String>,
    cause: Option<String>,
}

fn cli_end(mut cmd: std::process::Command) -> CliEnd {
    cmd.arg("--json");
    let r = run(cmd);
    let v: Option<serde_json::Value> = r
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .or_else(|| serde_json::from_str(&r.stdout).ok());
    let v = v.unwrap_or_else(|| panic!("no JSON on stdout: {r:?}"));
    CliEnd {
        code: r.code,
        guard: v["guard"].as_str().map(str::to_owned),
        cause: v["error"].as_str().map(str::to_owned),
    }
}

/// The console's side: the job runner runs `job` as the console starts it, and every message
/// is folded into a console App, as the loop does. Returns the end and the App.
async fn console(env: &Environment, origin: Origin, job: Job) -> (Result<String, Error>, App) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (interval, _) = tokio::sync::watch::channel(Duration::from_secs(2));
    let session = tempfile::tempdir().unwrap();
    let runner = Runner {
        env: env.clone(),
        journal: Arc::new(MemoryJournal::default()),
        tx,
        session_file: session.path().join("session.jsonl"),
        interval,
        root: CancellationToken::new(),
    };
    let items = checklist::items(&env.checklist, &[]).unwrap();
    let mut app = App::new(
        env.clone(),
        Checklist::new(
            items,
            Facts {
                protected: env.protected,
                ..Facts::default()
            },
        ),
        None,
    );
    let mut jobs = Jobs::new(runner);
    // As the console does: the step starts through the App, which hands the job to the runner.
    let effects = match origin {
        Origin::Step(i) => {
            for j in 0..i {
                let _ = app.checklist.tick(j, None).or_else(|_| {
                    app.checklist
                        .start(j)
                        .map(|()| app.checklist.finish(j, Ok(String::new())))
                });
            }
            app.run(origin, job)
        }
        _ => app.run(origin, job),
    };
    for effect in effects {
        jobs.apply(effect);
    }
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("the job ended within a minute")
            .expect("the runner keeps its channel");
        if let Msg::Done { result, .. } = &msg {
            let result = result.clone();
            app.update(msg);
            return (result, app);
        }
        app.update(msg);
    }
}

fn deploy_step(env: &Environment) -> Origin {
    let items = checklist::items(&env.checklist, &[]).unwrap();
    Origin::Step(items.iter().position(|i| i.id == "deploy").unwrap())
}

/// Both ends are the same refusal: guard and cause; the CLI exits 7.
fn same_refusal(cli: &CliEnd, console: &Result<String, Error>, guard: Guard) {
    let e = console.as_ref().expect_err("the console's job was refused");
    let wanted = serde_json::to_value(guard).unwrap();
    assert_eq!(e.guard, Some(guard), "console: {e:?}");
    assert_eq!(
        cli.guard.as_deref(),
        wanted.as_str(),
        "cli: {:?}",
        cli.cause
    );
    assert_eq!(cli.cause.as_deref(), Some(e.cause.as_str()));
    assert_eq!(cli.code, 7);
}

#[tokio::test]
async fn a_backup_moved_away_after_the_gate_was_shown_refuses_the_deploy_in_both() {
    let s = Setup::new("fe_moved").await;
    let file = s.backup("production", true);
    s.m.add("20250102000000_t", "CREATE TABLE t (id int);");
    let env = s.env("production");
    // What the console's checklist showed: the gate open.
    assert!(matches!(
        release::backup_gate(&env).await.unwrap(),
        BackupGate::Found(_)
    ));
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::rename(s.backups.path().join(&file), elsewhere.path().join(&file)).unwrap();
    let (cli, result, app) = s.deploy_in_both().await;
    same_refusal(&cli, &result, Guard::Backup);
    // The console shows the cause with its hint, and nothing ran.
    let State::Failed { cause } = app.checklist.state(match deploy_step(&env) {
        Origin::Step(i) => i,
        _ => unreachable!(),
    }) else {
        panic!("the step is not failed");
    };
    assert!(cause.contains("hint: "), "{cause}");
    assert!(!s.db.table_exists("t").await);
    assert!(!s.hooks_ran());
}

#[tokio::test]
async fn a_backup_changed_after_it_was_verified_refuses_the_deploy_in_both() {
    let s = Setup::new("fe_changed").await;
    let file = s.backup("production", true);
    s.m.add("20250102000000_t", "CREATE TABLE t (id int);");
    let path = s.backups.path().join(&file);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let (cli, result, _) = s.deploy_in_both().await;
    same_refusal(&cli, &result, Guard::BackupIntegrity);
    assert!(!s.db.table_exists("t").await);
}

#[tokio::test]
async fn a_backup_of_another_environment_or_server_is_refused_to_production_in_both() {
    let s = Setup::new("fe_foreign").await;
    let staging = s.backup("staging", true);
    s.m.add("20250102000000_t", "CREATE TABLE t (id int);");

    // The deploy gate.
    let (cli, result, _) = s.deploy_in_both().await;
    same_refusal(&cli, &result, Guard::BackupIdentity);
    assert!(
        cli.cause
            .as_deref()
            .unwrap()
            .contains("taken in environment 'staging', not 'production'"),
        "{:?}",
        cli.cause
    );

    // The restore that replaced production's rows with staging's.
    let (cli, result) = s.restore_in_both(&staging).await;
    same_refusal(&cli, &result, Guard::BackupIdentity);

    // Taken as production, on another server.
    let other = s.backup("production", true);
    s.edit_catalog(&other, |v| {
        v["system_identifier"] = "7000000000000000001".into();
    });
    let (cli, result) = s.restore_in_both(&other).await;
    same_refusal(&cli, &result, Guard::BackupIdentity);
    assert!(
        cli.cause.as_deref().unwrap().contains("another server"),
        "{:?}",
        cli.cause
    );
    assert_eq!(
        s.db.scalar::<i64>("SELECT count(*) FROM \"User\"").await,
        1,
        "nothing was restored"
    );
}

#[tokio::test]
async fn a_backup_with_an_empty_table_of_contents_opens_no_gate_and_restores_nothing_in_both() {
    let s = Setup::new("fe_empty").await;
    // A backup of another, empty database, filed under this one's name.
    let empty_db = fresh_db("fe_empty_other").await;
    let made = run({
        let mut c = pgdeck_cmd();
        c.arg("--database-url")
            .arg(empty_db.url())
            .args(["backup", "--dir"])
            .arg(s.backups.path())
            .args(["create", "--json"]);
        c
    });
    assert_eq!(made.code, 0, "{made:?}");
    let v: serde_json::Value = serde_json::from_str(&made.stdout).unwrap();
    let file = v["backup"]["file"].as_str().unwrap().to_owned();
    assert_eq!(v["backup"]["toc_entries"], 0);
    let live = s.backup("production", false);
    let identity: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.catalog(&live)).unwrap()).unwrap();
    std::fs::remove_file(s.backups.path().join(&live)).unwrap();
    // As an older pgdeck would have left it: verified, and looking like this database's.
    s.edit_catalog(&file, |v| {
        for key in [
            "database",
            "environment",
            "system_identifier",
            "database_oid",
        ] {
            v[key] = identity[key].clone();
        }
        v["verification"] = serde_json::json!({
            "at": chrono::Utc::now(), "how": "checksum_and_toc", "details": "an older pgdeck"
        });
    });
    s.m.add("20250102000000_t", "CREATE TABLE t (id int);");
    let (cli, result, _) = s.deploy_in_both().await;
    same_refusal(&cli, &result, Guard::Backup);
    assert!(
        cli.cause.as_deref().unwrap().contains("holds no objects"),
        "{:?}",
        cli.cause
    );
    let (cli, result) = s.restore_in_both(&file).await;
    same_refusal(&cli, &result, Guard::BackupIntegrity);
}

#[tokio::test]
async fn a_forward_rollback_with_an_unacknowledged_dangerous_finding_is_refused_in_both() {
    let s = Setup::new("fe_rollback_lint").await;
    s.m.add(
        "20250102000000_add_note",
        "ALTER TABLE \"User\" ADD COLUMN note text;",
    );
    std::fs::write(
        s.m.file("20250102000000_add_note")
            .with_file_name("down.sql"),
        "ALTER TABLE \"User\" DROP COLUMN note;",
    )
    .unwrap();
    assert_eq!(run(s.cli("staging", &["deploy"])).code, 0);
    let env = s.env("production");
    let reason = "INC-5: no backup, the provider's snapshot is the way back";
    let job = Job::Revert(RevertRequest {
        names: vec!["20250102000000_add_note".into()],
        deploy: Some(DeployRequest {
            confirmation: Some(Confirmation::typed(&s.db.name)),
            without_backup: Some(reason.into()),
            ..DeployRequest::default()
        }),
    });
    let (result, app) = console(&env, Origin::Rollback, job).await;
    let cli = cli_end(s.cli(
        "production",
        &[
            "revert",
            "20250102000000_add_note",
            "--deploy",
            "--confirm",
            &s.db.name,
            "--without-backup",
            reason,
        ],
    ));
    same_refusal(&cli, &result, Guard::Lint);
    assert!(
        cli.cause.as_deref().unwrap().contains("ban-drop-column"),
        "{:?}",
        cli.cause
    );
    // The console asks a person for the reason; it never acknowledges by itself.
    let modal = app.modal.as_ref().expect("the refusal offers its answers");
    assert!(
        format!("{:?}", modal.input).contains("acknowledge"),
        "{modal:?}"
    );
    let note: bool = s
        .db
        .scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'User' AND column_name = 'note')",
        )
        .await;
    assert!(note, "nothing was rolled back");
    assert!(
        !std::fs::read_dir(s.m.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_rollback_")),
        "no rollback migration was written"
    );
}

#[tokio::test]
async fn with_nothing_pending_no_hook_runs_in_either() {
    let s = Setup::new("fe_nothing").await;
    let env = s.env("staging");
    let (result, _) = console(
        &env,
        deploy_step(&env),
        Job::Deploy(DeployRequest::default()),
    )
    .await;
    assert_eq!(result.unwrap(), "nothing to deploy");
    let cli = run(s.cli("staging", &["deploy"]));
    assert_eq!(cli.code, 0, "{cli:?}");
    assert!(cli.stdout.contains("nothing to deploy"), "{}", cli.stdout);
    assert!(
        !s.hooks_ran(),
        "{:?}",
        std::fs::read_to_string(&s.hooks_log)
    );
}

#[tokio::test]
async fn cancelling_the_consoles_deploy_step_cancels_its_statement_on_the_server() {
    let s = Setup::new("fe_cancel").await;
    s.m.add(
        "20250102000000_blocked",
        "ALTER TABLE \"User\" ADD COLUMN blocked text;",
    );
    let mut env = s.env("staging");
    env.deploy.lock_timeout = Duration::from_secs(120);
    let holder = hold_lock(&s.db, "User").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (interval, _) = tokio::sync::watch::channel(Duration::from_secs(2));
    let session = tempfile::tempdir().unwrap();
    let mut jobs = Jobs::new(Runner {
        env: env.clone(),
        journal: Arc::new(MemoryJournal::default()),
        tx,
        session_file: session.path().join("s.jsonl"),
        interval,
        root: CancellationToken::new(),
    });
    let origin = deploy_step(&env);
    jobs.apply(Effect::Run {
        origin,
        job: Job::Deploy(DeployRequest::default()),
    });
    until_pgdeck_waits_for_a_lock(&s.db).await;
    // The console's x, confirmed.
    jobs.apply(Effect::Cancel(origin));
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Msg::Done { result, .. })) => break result,
            Ok(Some(_)) => {}
            other => panic!("no end: {other:?}"),
        }
    };
    let e = end.unwrap_err();
    assert_eq!(e.kind, pgdeck::error::ErrorKind::Cancelled, "{e:?}");
    until_pgdeck_is_gone(&s.db, Duration::from_secs(2)).await;
    drop(holder);
    assert!(
        !s.db
            .ledger()
            .await
            .iter()
            .any(|r| r.name == "20250102000000_blocked")
    );
}
