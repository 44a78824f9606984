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
        .map(pgdeck::cli::release_environment)
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
    console_with(env, Vec::new(), origin, job).await
}

/// [`console`] with the environments its matrix reads.
async fn console_with(
    env: &Environment,
    environments: Vec<release::Candidate>,
    origin: Origin,
    job: Job,
) -> (Result<String, Error>, App) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (interval, _) = tokio::sync::watch::channel(Duration::from_secs(2));
    let session = tempfile::tempdir().unwrap();
    let runner = Runner {
        env: env.clone(),
        environments,
        journal: Arc::new(MemoryJournal::default()),
        tx,
        session_file: session.path().join("session.jsonl"),
        watch_session: false,
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

/// What both front ends do once a scenario is set.
enum Act {
    /// A confirmed deploy to production.
    Deploy,
    /// A confirmed restore of this backup into production.
    Restore(String),
    /// A confirmed forward rollback of this migration on production, without a backup (for
    /// this reason).
    Revert(&'static str),
    /// A deploy to staging, with nothing pending.
    DeployStaging,
}

/// How both must end.
enum Expect {
    /// Refused by this guard, the cause saying this.
    Refused(Guard, &'static str),
    /// Nothing to do, and no hook run.
    NothingToDeploy,
}

type Arrange =
    for<'a> fn(&'a Setup) -> std::pin::Pin<Box<dyn std::future::Future<Output = Act> + 'a>>;

struct Case {
    name: &'static str,
    arrange: Arrange,
    expect: Expect,
}

const T: &str = "CREATE TABLE t (id int);";

/// The scenarios: each sets the scene, then the same act goes through the CLI binary and the
/// console's job runner.
const CASES: &[Case] = &[
    Case {
        name: "backup_moved_after_the_gate_was_shown",
        arrange: |s| {
            Box::pin(async move {
                let file = s.backup("production", true);
                s.m.add("20250102000000_t", T);
                // What the console's checklist showed: the gate open.
                assert!(matches!(
                    release::backup_gate(&s.env("production")).await.unwrap(),
                    BackupGate::Found(_)
                ));
                let elsewhere = s.backups.path().join("moved");
                std::fs::create_dir(&elsewhere).unwrap();
                std::fs::rename(s.backups.path().join(&file), elsewhere.join(&file)).unwrap();
                Act::Deploy
            })
        },
        expect: Expect::Refused(Guard::Backup, "no backup of"),
    },
    Case {
        name: "backup_changed_after_it_was_verified",
        arrange: |s| {
            Box::pin(async move {
                let file = s.backup("production", true);
                s.m.add("20250102000000_t", T);
                let path = s.backups.path().join(&file);
                let mut bytes = std::fs::read(&path).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x01;
                std::fs::write(&path, bytes).unwrap();
                Act::Deploy
            })
        },
        expect: Expect::Refused(Guard::BackupIntegrity, "no longer holds"),
    },
    Case {
        name: "staging_backup_offered_to_a_production_deploy",
        arrange: |s| {
            Box::pin(async move {
                s.backup("staging", true);
                s.m.add("20250102000000_t", T);
                Act::Deploy
            })
        },
        expect: Expect::Refused(
            Guard::BackupIdentity,
            "taken in environment 'staging', not 'production'",
        ),
    },
    Case {
        name: "staging_backup_restored_into_production",
        arrange: |s| Box::pin(async move { Act::Restore(s.backup("staging", true)) }),
        expect: Expect::Refused(
            Guard::BackupIdentity,
            "taken in environment 'staging', not 'production'",
        ),
    },
    Case {
        name: "backup_of_another_server_restored",
        arrange: |s| {
            Box::pin(async move {
                let other = s.backup("production", true);
                s.edit_catalog(&other, |v| {
                    v["system_identifier"] = "7000000000000000001".into();
                });
                Act::Restore(other)
            })
        },
        expect: Expect::Refused(Guard::BackupIdentity, "taken on another server"),
    },
    Case {
        name: "empty_backup_opens_no_gate",
        arrange: |s| {
            Box::pin(async move {
                s.empty_backup_filed_as_production().await;
                s.m.add("20250102000000_t", T);
                Act::Deploy
            })
        },
        expect: Expect::Refused(Guard::Backup, "holds no objects"),
    },
    Case {
        name: "empty_backup_restores_nothing",
        arrange: |s| {
            Box::pin(async move { Act::Restore(s.empty_backup_filed_as_production().await) })
        },
        expect: Expect::Refused(Guard::BackupIntegrity, "holds no objects"),
    },
    Case {
        name: "rollback_with_an_unacknowledged_dangerous_finding",
        arrange: |s| {
            Box::pin(async move {
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
                let _ = std::fs::remove_file(&s.hooks_log);
                Act::Revert("20250102000000_add_note")
            })
        },
        expect: Expect::Refused(Guard::Lint, "ban-drop-column"),
    },
    Case {
        name: "nothing_pending",
        arrange: |_| Box::pin(async { Act::DeployStaging }),
        expect: Expect::NothingToDeploy,
    },
];

impl Setup {
    /// A backup of another, empty database, filed under this one's name and identity, verified
    /// as an older pgdeck would have left it.
    async fn empty_backup_filed_as_production(&self) -> String {
        let empty_db = fresh_db("fe_empty_other").await;
        let made = run({
            let mut c = pgdeck_cmd();
            c.arg("--database-url")
                .arg(empty_db.url())
                .args(["backup", "--dir"])
                .arg(self.backups.path())
                .args(["create", "--json"]);
            c
        });
        assert_eq!(made.code, 0, "{made:?}");
        let v: serde_json::Value = serde_json::from_str(&made.stdout).unwrap();
        let file = v["backup"]["file"].as_str().unwrap().to_owned();
        assert_eq!(v["backup"]["toc_entries"], 0);
        let live = self.backup("production", false);
        let identity: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.catalog(&live)).unwrap()).unwrap();
        std::fs::remove_file(self.backups.path().join(&live)).unwrap();
        self.edit_catalog(&file, |v| {
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
        file
    }

    /// `act` through both front ends: the CLI's end, the console's end and state.
    async fn both(&self, act: &Act) -> (Option<CliEnd>, Result<String, Error>, App) {
        let db = self.db.name.as_str();
        let typed = || Some(Confirmation::typed(db));
        let prod = self.env("production");
        match act {
            Act::Deploy => {
                let (cli, result, app) = self.deploy_in_both().await;
                (Some(cli), result, app)
            }
            Act::Restore(file) => {
                let job = Job::Restore(RestoreRequest {
                    backup: file.clone(),
                    confirmation: typed(),
                    jobs: 1,
                    ..RestoreRequest::default()
                });
                let (result, app) = console(&prod, Origin::Rollback, job).await;
                let cli =
                    cli_end(self.cli("production", &["backup", "restore", file, "--confirm", db]));
                (Some(cli), result, app)
            }
            Act::Revert(name) => {
                let reason = "INC-5: no backup, the provider's snapshot is the way back";
                let job = Job::Revert(RevertRequest {
                    names: vec![(*name).to_owned()],
                    deploy: Some(DeployRequest {
                        confirmation: typed(),
                        without_backup: Some(reason.into()),
                        ..DeployRequest::default()
                    }),
                });
                let (result, app) = console(&prod, Origin::Rollback, job).await;
                let cli = cli_end(self.cli(
                    "production",
                    &[
                        "revert",
                        name,
                        "--deploy",
                        "--confirm",
                        db,
                        "--without-backup",
                        reason,
                    ],
                ));
                (Some(cli), result, app)
            }
            Act::DeployStaging => {
                let staging = self.env("staging");
                let (result, app) = console(
                    &staging,
                    deploy_step(&staging),
                    Job::Deploy(DeployRequest::default()),
                )
                .await;
                let cli = run(self.cli("staging", &["deploy"]));
                assert_eq!(cli.code, 0, "{cli:?}");
                assert!(cli.stdout.contains("nothing to deploy"), "{}", cli.stdout);
                (None, result, app)
            }
        }
    }
}

#[tokio::test]
async fn the_cli_and_the_console_end_every_scenario_the_same_way() {
    for case in CASES {
        let s = Setup::new(&format!("fe_{}", &case.name[..case.name.len().min(24)])).await;
        let act = (case.arrange)(&s).await;
        let users = s.db.scalar::<i64>("SELECT count(*) FROM \"User\"").await;
        let (cli, console, app) = s.both(&act).await;
        match &case.expect {
            Expect::Refused(guard, says) => {
                let cli = cli.expect("the CLI's end");
                same_refusal(&cli, &console, *guard);
                assert!(
                    cli.cause.as_deref().unwrap_or_default().contains(says),
                    "{}: {:?}",
                    case.name,
                    cli.cause
                );
                // The console shows the cause with its hint, where the job was started.
                let shown = match &act {
                    Act::Deploy => {
                        match app
                            .checklist
                            .state(match deploy_step(&s.env("production")) {
                                Origin::Step(i) => i,
                                _ => unreachable!(),
                            }) {
                            State::Failed { cause } => cause.clone(),
                            other => panic!("{}: the step is {other:?}", case.name),
                        }
                    }
                    _ => app.rollback.log.join("\n"),
                };
                assert!(
                    shown.contains(says) && shown.contains("hint: "),
                    "{}: {shown}",
                    case.name
                );
                // Nothing was applied, restored or written, and no hook ran.
                assert!(!s.db.table_exists("t").await, "{}", case.name);
                assert_eq!(
                    s.db.scalar::<i64>("SELECT count(*) FROM \"User\"").await,
                    users,
                    "{}",
                    case.name
                );
                assert!(!s.hooks_ran(), "{}", case.name);
                assert!(
                    !std::fs::read_dir(s.m.path())
                        .unwrap()
                        .flatten()
                        .any(|e| e.file_name().to_string_lossy().contains("_rollback_")),
                    "{}: no rollback migration was written",
                    case.name
                );
            }
            Expect::NothingToDeploy => {
                assert_eq!(console.unwrap(), "nothing to deploy", "{}", case.name);
                assert!(!s.hooks_ran(), "{}", case.name);
            }
        }
        if let Act::Revert(_) = act {
            // The console asks a person for the reason; it never acknowledges by itself.
            let modal = app.modal.as_ref().expect("the refusal offers its answers");
            assert!(
                format!("{:?}", modal.input).contains("acknowledge"),
                "{modal:?}"
            );
        }
    }
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
        environments: Vec::new(),
        journal: Arc::new(MemoryJournal::default()),
        tx,
        session_file: session.path().join("s.jsonl"),
        watch_session: false,
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

#[tokio::test]
async fn the_cli_and_the_console_read_the_same_matrix_of_every_environment() {
    let s = Setup::new("front_ends_matrix").await;
    s.m.add("20250102000000_more", "CREATE TABLE more (id int);");
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str("[environments.qa]\ndatabase_url_env = \"PGDECK_TEST_QA_DATABASE_URL\"\n");
    std::fs::write(&s.config, config).unwrap();

    let listed = pgdeck::config::resolve_all(
        &Overrides {
            config: Some(s.config.clone()),
            migrations: Some(s.m.path().to_owned()),
            ..Overrides::default()
        },
        &ProcessVars,
    )
    .unwrap();
    let candidates = listed.into_iter().map(pgdeck::cli::candidate).collect();
    let env = s.env("staging");
    let (result, app) = console_with(&env, candidates, Origin::Matrix, Job::Matrix).await;
    assert!(result.is_ok(), "{result:?}");
    let (matrix, _) = app.migrations.environments.last.as_ref().unwrap();
    let in_console: Vec<serde_json::Value> = matrix
        .columns
        .iter()
        .map(|c| serde_json::json!([c.name, c.problem(), c.verdict()]))
        .collect();
    let rows: Vec<serde_json::Value> = matrix
        .rows
        .iter()
        .map(|r| serde_json::json!([r.name, r.cells]))
        .collect();

    let mut cmd = pgdeck_cmd();
    cmd.arg("--config")
        .arg(&s.config)
        .arg("--migrations")
        .arg(s.m.path())
        .args(["status", "--all-environments", "--json"]);
    let cli = run(cmd);
    assert_eq!(cli.code, i32::from(pgdeck::cli::exit::RUNTIME), "{cli:?}");
    let v: serde_json::Value = serde_json::from_str(&cli.stdout).unwrap();
    let in_cli: Vec<serde_json::Value> = v["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::json!([e["name"], e["problem"], e["verdict"]]))
        .collect();
    assert_eq!(in_console, in_cli);
    assert_eq!(
        in_cli,
        [
            serde_json::json!(["production", null, "pending"]),
            serde_json::json!(["staging", null, "pending"]),
            serde_json::json!(["qa", "unresolved", null]),
        ]
    );
    let cli_rows: Vec<serde_json::Value> = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let names = ["production", "staging", "qa"];
            serde_json::json!([m["name"], names.map(|n| m["states"][n].clone())])
        })
        .collect();
    assert_eq!(rows, cli_rows);
}
