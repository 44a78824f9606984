//! The release workflows through their event streams, without a terminal, on a real cluster:
//! each one's outcome, and each of its refusals with the guard that refused and what would
//! satisfy it. Cancellation reaches the server.

mod common;

use std::time::{Duration, Instant};

use common::release::*;
use common::*;
use pgdeck::backup::BackupFormat;
use pgdeck::error::{ErrorKind, Guard, Remedy};
use pgdeck::journal::{Event, Outcome};
use pgdeck::lint::plan::Allow;
use pgdeck::migrate::Resolution;
use pgdeck::monitor::Signal;
use pgdeck::release::{
    self, Confirmation, DeployRequest, HookRequest, Maintenance, ResetRequest, ResolveRequest,
    RestoreRequest, RevertRequest, SignalRequest,
};
use tokio_util::sync::CancellationToken;

const USERS: &str = "CREATE TABLE \"User\" (id int PRIMARY KEY, phone text);\n\
                     INSERT INTO \"User\" VALUES (1, '+1 555 0100'), (2, '+1 555 0101');";

fn never() -> CancellationToken {
    CancellationToken::new()
}

/// A deploy with `req` on `env`, as a front end would start it.
async fn deploying(
    env: &pgdeck::release::Environment,
    req: DeployRequest,
) -> Ran<pgdeck::release::DeployReport> {
    workflow(env, &never(), |ctx| async move {
        release::deploy(&ctx, &req).await
    })
    .await
}

/// A database with the first migration applied (so there is something to back up).
async fn applied(test: &str) -> (TestDb, Migrations, tempfile::TempDir) {
    let db = fresh_db(test).await;
    let m = Migrations::new();
    m.add("20250101000000_users", USERS);
    let backups = tempfile::tempdir().unwrap();
    let env = environment("development", &db, &m, backups.path());
    let ran = deploying(&env, DeployRequest::default()).await;
    assert!(ran.result.is_ok(), "{:?}", ran.result);
    (db, m, backups)
}

#[tokio::test]
async fn a_deploy_applies_what_is_pending_and_journals_what_it_applied() {
    let (db, m, backups) = applied("release_deploy").await;
    m.add(
        "20250102000000_note",
        "ALTER TABLE \"User\" ADD COLUMN note text;",
    );
    let marker = backups.path().join("hooks.log");
    let mut env = environment("development", &db, &m, backups.path());
    for hook in ["before_deploy", "after_deploy"] {
        env.hooks.commands.insert(
            hook.into(),
            format!(
                "echo \"$PGDECK_HOOK $PGDECK_MIGRATIONS\" >> {}",
                marker.display()
            ),
        );
    }
    let ran = deploying(&env, DeployRequest::default()).await;
    let report = ran.result.as_ref().expect("deployed");
    assert_eq!(report.applied_names(), "20250102000000_note");
    // Started comes once every guard held, before the hooks and the engine.
    let started = ran
        .events
        .iter()
        .position(|e| matches!(e, release::Event::Started { .. }))
        .unwrap();
    let hook = ran
        .events
        .iter()
        .position(|e| matches!(e, release::Event::HookStarted { .. }))
        .unwrap();
    assert!(started < hook, "{}", ran.lines());
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "before_deploy 20250102000000_note\nafter_deploy 20250102000000_note\n"
    );
    assert!(ran.journal.iter().any(|e| matches!(
        e,
        Event::Released { workflow, outcome: Outcome::Ok, applied, .. }
            if workflow == "deploy" && applied == &["20250102000000_note".to_string()]
    )));

    // Nothing pending: no hook runs, nothing is journaled.
    std::fs::remove_file(&marker).unwrap();
    let ran = deploying(&env, DeployRequest::default()).await;
    assert!(ran.result.as_ref().unwrap().applied.is_empty());
    assert!(!marker.exists(), "no hook ran");
    assert!(ran.journal.is_empty(), "{:?}", ran.journal);
}

#[tokio::test]
async fn a_protected_deploy_refuses_until_each_guard_holds_then_asks_for_the_name() {
    let (db, m, backups) = applied("release_guards").await;
    m.add(
        "20250102000000_rename",
        "ALTER TABLE \"User\" RENAME COLUMN phone TO \"phoneNumber\";",
    );
    let env = pgdeck::release::Environment {
        protected: true,
        ..environment("production", &db, &m, backups.path())
    };
    let deploy = |req: DeployRequest| deploying(&env, req);

    let ran = deploy(DeployRequest::default()).await;
    let e = ran.refusal();
    assert_eq!((e.kind, e.guard), (ErrorKind::Refused, Some(Guard::Backup)));
    assert!(e.cause.contains("no backup of"), "{}", e.cause);
    assert!(e.remedies.contains(&Remedy::TakeVerifiedBackup));
    assert!(e.remedies.contains(&Remedy::DeployWithoutBackup));

    let unverified = take_backup(&env, "production", false).await;
    let e = deploy(DeployRequest::default()).await.refusal().clone();
    assert_eq!(e.guard, Some(Guard::Backup));
    assert!(e.cause.contains("no verified backup"), "{}", e.cause);
    std::fs::remove_file(backups.path().join(&unverified.file)).unwrap();

    take_backup(&env, "production", true).await;
    let ran = deploy(DeployRequest::default()).await;
    let e = ran.refusal();
    assert_eq!(e.guard, Some(Guard::Lint));
    let Some(Remedy::Acknowledge { findings, details }) = e
        .remedies
        .iter()
        .find(|r| matches!(r, Remedy::Acknowledge { .. }))
    else {
        panic!("{e:?}");
    };
    assert_eq!(findings.len(), 1);
    assert!(
        details[0].contains("RENAME COLUMN"),
        "said in words, with its statement: {details:?}"
    );
    assert!(
        findings[0].contains("renaming-column @"),
        "bound to the file's content: {findings:?}"
    );
    let acknowledged = vec![Allow::finding(
        &findings[0],
        "CHG-7: clients read both names",
    )];
    // An empty reason acknowledges nothing: it is an input error.
    let e = deploy(DeployRequest {
        acknowledgements: vec![Allow::finding(&findings[0], "  ")],
        ..DeployRequest::default()
    })
    .await
    .refusal()
    .clone();
    assert_eq!(e.kind, ErrorKind::Input);

    // Every guard holds: it asks, saying what it will do, bound to the pending migrations.
    let ran = deploy(DeployRequest {
        acknowledgements: acknowledged.clone(),
        ..DeployRequest::default()
    })
    .await;
    let ask = ran.refusal().ask().expect("a confirmation").clone();
    assert_eq!(ask.expect.as_deref(), Some(db.name.as_str()));
    assert_eq!(ask.scope.len(), 1);
    assert!(
        ask.scope[0].starts_with("20250102000000_rename sha256 "),
        "bound to the migration's content: {ask:?}"
    );
    assert!(
        ask.title.contains("Apply 1 pending migration(s)"),
        "{ask:?}"
    );
    assert!(
        ran.journal.is_empty(),
        "nothing journaled before the work starts"
    );

    let with = |confirmation: Confirmation| DeployRequest {
        acknowledgements: acknowledged.clone(),
        confirmation: Some(confirmation),
        ..DeployRequest::default()
    };
    let e = deploy(with(Confirmation::yes())).await.refusal().clone();
    assert_eq!(e.guard, Some(Guard::Confirmation));
    assert!(e.cause.contains("a yes is not enough"), "{}", e.cause);
    let e = deploy(with(Confirmation::typed("not_the_db")))
        .await
        .refusal()
        .clone();
    assert!(e.cause.contains("does not match"), "{}", e.cause);
    let stale = Confirmation {
        typed: Some(db.name.clone()),
        scope: vec!["20250101000000_something_else".into()],
    };
    let e = deploy(with(stale)).await.refusal().clone();
    assert!(
        e.cause.contains("what was confirmed changed"),
        "{}",
        e.cause
    );

    let ran = deploy(with(Confirmation::answering(&ask, Some(db.name.clone())))).await;
    let report = ran.result.as_ref().expect("deployed");
    assert_eq!(report.applied_names(), "20250102000000_rename");
    assert!(
        ran.lines()
            .contains("checksum and table of contents re-checked")
    );
    let kinds: Vec<&str> = ran
        .journal
        .iter()
        .map(|e| match e {
            Event::Confirmed { .. } => "confirmed",
            Event::Override { .. } => "override",
            Event::Released { .. } => "released",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["confirmed", "override", "released"]);
    assert!(
        matches!(
            &ran.journal[0],
            Event::Confirmed { what } if what.contains("20250102000000_rename sha256 ")
        ),
        "the journal says what exactly was confirmed: {:?}",
        ran.journal[0]
    );
    assert!(matches!(
        &ran.journal[1],
        Event::Override { what, reason } if what.contains("renaming-column") && reason.starts_with("CHG-7")
    ));
}

#[tokio::test]
async fn the_backup_gate_counts_only_a_backup_of_this_database_environment_and_server() {
    let (db, m, backups) = applied("release_identity").await;
    m.add("20250102000000_t", "CREATE TABLE t (id int);");
    let env = pgdeck::release::Environment {
        protected: true,
        ..environment("production", &db, &m, backups.path())
    };
    let refusal = |req: DeployRequest| {
        let env = env.clone();
        async move {
            workflow(&env, &never(), |ctx| async move {
                release::deploy(&ctx, &req).await
            })
            .await
            .result
            .unwrap_err()
        }
    };

    // Its own backup is a month old, and the same database was backed up as staging since.
    let old = take_backup(&env, "production", true).await;
    edit_catalog(backups.path(), &old, |v| {
        v["finished_at"] = (chrono::Utc::now() - chrono::Duration::days(30))
            .to_rfc3339()
            .into();
    });
    let staging = take_backup(&env, "staging", true).await;
    let e = refusal(DeployRequest::default()).await;
    assert_eq!(e.guard, Some(Guard::BackupIdentity));
    assert!(
        e.cause
            .contains("it was taken in environment 'staging', not 'production'"),
        "{}",
        e.cause
    );
    assert!(e.cause.contains("30 days old"), "{}", e.cause);
    assert!(e.remedies.contains(&Remedy::AcceptForeignBackup));

    // Taken as production, but on another server.
    let other = take_backup(&env, "production", true).await;
    edit_catalog(backups.path(), &other, |v| {
        v["system_identifier"] = "7000000000000000001".into();
    });
    let e = refusal(DeployRequest::default()).await;
    assert_eq!(e.guard, Some(Guard::BackupIdentity));
    assert!(e.cause.contains("taken on another server"), "{}", e.cause);

    // Written by a pgdeck that did not record where it came from.
    edit_catalog(backups.path(), &other, |v| {
        v.as_object_mut().unwrap().remove("system_identifier");
    });
    let e = refusal(DeployRequest::default()).await;
    assert!(
        e.cause.contains("does not record the server it came from"),
        "{}",
        e.cause
    );

    // Accepted for a stated reason, which is journaled naming the backup and why it is foreign.
    let ran = workflow(&env, &never(), |ctx| {
        let db = db.name.clone();
        async move {
            release::deploy(
                &ctx,
                &DeployRequest {
                    foreign_backup: Some(
                        "INC-3: staging was cloned from production at 09:00".into(),
                    ),
                    confirmation: Some(Confirmation::typed(&db)),
                    ..DeployRequest::default()
                },
            )
            .await
        }
    })
    .await;
    assert!(ran.result.is_ok(), "{:?}", ran.result);
    assert!(ran.journal.iter().any(|e| matches!(
        e,
        Event::Override { what, reason } if what.contains("deploy gate satisfied by") && reason.starts_with("INC-3")
    )), "{:?}", ran.journal);
    drop(staging);
}

#[tokio::test]
async fn a_backup_whose_table_of_contents_is_empty_is_never_verified_nor_restored() {
    let db = fresh_db("release_empty_backup").await;
    let m = Migrations::new();
    m.add("20250101000000_t", "CREATE TABLE t (id int);");
    let backups = tempfile::tempdir().unwrap();
    let env = pgdeck::release::Environment {
        protected: true,
        ..environment("production", &db, &m, backups.path())
    };
    let empty = take_backup(&env, "production", false).await;
    assert_eq!(empty.toc_entries, 0);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let e = pgdeck::backup::verify(&env.target, &backups.path().join(&empty.file), None, &tx)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::VerifyFailed);
    assert!(e.cause.contains("holds no objects"), "{}", e.cause);

    // Even with a verification recorded (an older pgdeck), it counts for nothing.
    edit_catalog(backups.path(), &empty, |v| {
        v["verification"] = serde_json::json!({
            "at": "2026-12-01T00:00:00Z", "how": "checksum_and_toc", "details": "old"
        });
    });
    let ran = deploying(&env, DeployRequest::default()).await;
    let e = ran.refusal();
    assert_eq!(e.guard, Some(Guard::Backup));
    assert!(e.cause.contains("holds no objects"), "{}", e.cause);
    let file = empty.file.clone();
    let ran = workflow(&env, &never(), |ctx| async move {
        release::restore(
            &ctx,
            &RestoreRequest {
                backup: file,
                jobs: 1,
                ..RestoreRequest::default()
            },
        )
        .await
    })
    .await;
    assert_eq!(ran.refusal().guard, Some(Guard::BackupIntegrity));
    assert!(release::newest_backup(&env, true).unwrap().is_none());
}

#[tokio::test]
async fn a_failed_migration_blocks_deploy_and_forward_rollback_before_any_hook_runs() {
    let (db, m, backups) = applied("release_failed").await;
    m.add(
        "20250102000000_concurrent",
        "CREATE INDEX CONCURRENTLY u_phone ON \"User\" (phone);\nSELECT 1/0;",
    );
    let marker = backups.path().join("hook.log");
    let mut env = environment("development", &db, &m, backups.path());
    env.hooks.commands.insert(
        "before_deploy".into(),
        format!("touch {}", marker.display()),
    );
    let first = deploying(&env, DeployRequest::default()).await;
    assert_eq!(first.refusal().kind, ErrorKind::MigrationFailed);
    std::fs::remove_file(&marker).unwrap();

    let again = deploying(&env, DeployRequest::default()).await;
    let e = again.refusal();
    assert_eq!(e.guard, Some(Guard::FailedMigration));
    assert!(e.remedies.contains(&Remedy::Resolve {
        migration: "20250102000000_concurrent".into()
    }));
    std::fs::write(
        m.file("20250101000000_users").with_file_name("down.sql"),
        "DROP TABLE \"User\";",
    )
    .unwrap();
    let revert = workflow(&env, &never(), |ctx| async move {
        release::revert(
            &ctx,
            &RevertRequest {
                names: vec!["20250101000000_users".into()],
                deploy: Some(DeployRequest::default()),
            },
        )
        .await
    })
    .await;
    assert_eq!(revert.refusal().guard, Some(Guard::FailedMigration));
    assert!(!marker.exists(), "no hook ran for a refused release");
}

#[tokio::test]
async fn a_forward_rollback_shows_its_sql_and_its_losses_and_deploys_exactly_itself() {
    let (db, m, backups) = applied("release_revert").await;
    m.add(
        "20250102000000_drop_phone",
        "ALTER TABLE \"User\" DROP COLUMN phone;",
    );
    std::fs::write(
        m.file("20250102000000_drop_phone")
            .with_file_name("down.sql"),
        "ALTER TABLE \"User\" ADD COLUMN phone text;",
    )
    .unwrap();
    let env = environment("development", &db, &m, backups.path());
    let deployed = deploying(&env, DeployRequest::default()).await;
    assert!(deployed.result.is_ok());
    let revert = |env: &pgdeck::release::Environment, confirmation: Option<Confirmation>| {
        let env = env.clone();
        let request = RevertRequest {
            names: vec!["20250102000000_drop_phone".into()],
            deploy: Some(DeployRequest {
                confirmation,
                ..DeployRequest::default()
            }),
        };
        async move {
            workflow(&env, &never(), |ctx| async move {
                release::revert(&ctx, &request).await
            })
            .await
        }
    };
    let rollbacks = || {
        std::fs::read_dir(m.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("_rollback_"))
            .count()
    };

    // Another migration is pending: the rollback's deploy would apply it too.
    m.add("20250103000000_other", "CREATE TABLE other (id int);");
    let ran = revert(&env, None).await;
    assert_eq!(ran.refusal().guard, Some(Guard::OtherPending));
    std::fs::remove_dir_all(m.path().join("20250103000000_other")).unwrap();

    // Destructive: it asks, even unprotected, with the down.sql and what it cannot bring back.
    let ran = revert(&env, None).await;
    let ask = ran.refusal().ask().expect("a confirmation").clone();
    assert_eq!(ask.expect, None, "unprotected: a yes");
    let text = ask.lines.join("\n");
    assert!(
        text.contains("| ALTER TABLE \"User\" ADD COLUMN phone text;"),
        "{text}"
    );
    assert!(
        text.contains("the data of column phone of \"User\", dropped by 20250102000000_drop_phone"),
        "{text}"
    );
    assert_eq!(rollbacks(), 0, "nothing is written before it is confirmed");
    let yes = || Some(Confirmation::answering(&ask, None));

    // Written, then not deployed (here the before_deploy hook refuses): the rollback is
    // withdrawn, or the next deploy would apply it with whatever is pending by then.
    let mut refusing = env.clone();
    refusing
        .hooks
        .commands
        .insert("before_deploy".into(), "echo not now; exit 1".into());
    let ran = revert(&refusing, yes()).await;
    let e = ran.refusal();
    assert!(e.cause.contains("hook before_deploy ended"), "{}", e.cause);
    assert!(
        ran.lines().contains("it was not deployed"),
        "{}",
        ran.lines()
    );
    assert_eq!(rollbacks(), 0);

    let ran = revert(&env, yes()).await;
    let report = ran.result.as_ref().expect("reverted");
    assert!(report.name.contains("_rollback_drop_phone"), "{report:?}");
    assert_eq!(
        report.deployed.as_ref().unwrap().applied_names(),
        report.name
    );
    assert!(ran.journal.iter().any(|e| matches!(
        e,
        Event::Released { workflow, outcome: Outcome::Ok, .. } if workflow == "forward rollback"
    )));
    let phone: bool = db
        .scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'User' AND column_name = 'phone')",
        )
        .await;
    assert!(phone);
}

#[tokio::test]
async fn a_restore_checks_the_backup_and_the_sessions_asks_with_the_loss_and_says_what_is_pending_again()
 {
    let (db, m, backups) = applied("release_restore").await;
    let marker = backups.path().join("maintenance.log");
    let mut env = environment("development", &db, &m, backups.path());
    for hook in ["maintenance_on", "maintenance_off"] {
        env.hooks.commands.insert(
            hook.into(),
            format!("echo $PGDECK_HOOK >> {}", marker.display()),
        );
    }
    let entry = take_backup(&env, "development", false).await;
    m.add(
        "20250102000000_more",
        "INSERT INTO \"User\" VALUES (3, 'new');\nCREATE TABLE \"Audit\" (id int);",
    );
    let deployed = deploying(&env, DeployRequest::default()).await;
    assert!(deployed.result.is_ok());
    let restore = |req: RestoreRequest| {
        let env = env.clone();
        async move {
            workflow(&env, &never(), |ctx| async move {
                release::restore(&ctx, &req).await
            })
            .await
        }
    };
    let base = RestoreRequest {
        backup: entry.file.clone(),
        jobs: 1,
        ..RestoreRequest::default()
    };

    let e = restore(base.clone()).await.refusal().clone();
    assert_eq!(e.guard, Some(Guard::BackupIntegrity));
    assert!(e.remedies.contains(&Remedy::RestoreUnverified));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    pgdeck::backup::verify(&env.target, &backups.path().join(&entry.file), None, &tx)
        .await
        .unwrap();

    // Without maintenance mode, a session in the way refuses; with it, the hooks go first.
    let other = db.client().await;
    let no_maintenance = RestoreRequest {
        maintenance: Maintenance::Off,
        ..base.clone()
    };
    let e = restore(no_maintenance.clone()).await.refusal().clone();
    assert_eq!(e.guard, Some(Guard::Sessions));
    assert!(e.remedies.contains(&Remedy::TerminateSessions));

    let ran = restore(RestoreRequest {
        terminate_sessions: true,
        ..base.clone()
    })
    .await;
    let ask = ran.refusal().ask().expect("a confirmation").clone();
    let text = ask.lines.join("\n");
    assert!(text.contains("Lost: "), "{text}");
    assert!(text.contains("maintenance_on hook runs first"), "{text}");
    assert!(!marker.exists(), "nothing ran before the confirmation");

    let clock = std::time::Instant::now();
    let ran = restore(RestoreRequest {
        terminate_sessions: true,
        confirmation: Some(Confirmation::answering(&ask, None)),
        ..base.clone()
    })
    .await;
    let wall = clock.elapsed().as_millis() as u64;
    let report = ran.result.as_ref().expect("restored");
    // Journaled with how long it really ran, from its start to its end.
    let took = ran.journal.iter().find_map(|e| match e {
        Event::Released {
            workflow,
            outcome: Outcome::Ok,
            duration_ms,
            ..
        } if workflow == "restore" => Some(*duration_ms),
        _ => None,
    });
    assert!(
        matches!(took, Some(Some(ms)) if ms > 0 && ms <= wall),
        "{took:?} of {wall} ms: {:?}",
        ran.journal
    );
    assert_eq!(report.pending_again, ["20250102000000_more"]);
    assert!(ran.lines().contains("pending again"), "{}", ran.lines());
    // pg_restore replaces what the backup holds: a table made after it stays, and is named.
    assert_eq!(report.left_in_place, ["public.Audit"]);
    assert!(
        ran.lines()
            .contains("left in place 1 table(s) the backup did not have"),
        "{}",
        ran.lines()
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "maintenance_on\nmaintenance_off\n"
    );
    assert_eq!(db.scalar::<i64>("SELECT count(*) FROM \"User\"").await, 2);
    drop(other);
}

#[tokio::test]
async fn hooks_that_act_on_the_application_are_confirmed_and_every_run_is_journaled() {
    let (db, m, backups) = applied("release_hooks").await;
    let mut env = environment("development", &db, &m, backups.path());
    env.hooks
        .commands
        .insert("smoke_test".into(), "echo smoke ok".into());
    env.hooks
        .commands
        .insert("code_rollback".into(), "echo rolled back".into());
    let hook = |name: &str, confirmation: Option<Confirmation>| {
        let (env, name) = (env.clone(), name.to_owned());
        async move {
            workflow(&env, &never(), |ctx| async move {
                release::run_hook(
                    &ctx,
                    &HookRequest {
                        name,
                        migrations: Vec::new(),
                        confirmation,
                    },
                )
                .await
            })
            .await
        }
    };
    let smoke = hook("smoke_test", None).await;
    assert!(smoke.result.as_ref().unwrap().success());
    assert!(smoke.lines().contains("smoke ok"));
    assert!(matches!(&smoke.journal[..], [Event::HookRan { name, .. }] if name == "smoke_test"));

    let refused = hook("code_rollback", None).await;
    assert_eq!(refused.refusal().guard, Some(Guard::Confirmation));
    let done = hook("code_rollback", Some(Confirmation::yes())).await;
    assert!(done.result.as_ref().unwrap().success());
    assert!(
        done.journal
            .iter()
            .any(|e| matches!(e, Event::HookRan { .. }))
    );
}

#[tokio::test]
async fn resolve_on_a_protected_environment_and_reset_anywhere_ask_and_reset_refuses_production() {
    let (db, m, backups) = applied("release_ledger_ops").await;
    m.add(
        "20250102000000_concurrent",
        "CREATE INDEX CONCURRENTLY u_phone ON \"User\" (phone);\nSELECT 1/0;",
    );
    let env = environment("development", &db, &m, backups.path());
    let failed = deploying(&env, DeployRequest::default()).await;
    assert_eq!(failed.refusal().kind, ErrorKind::MigrationFailed);
    db.exec("DROP INDEX IF EXISTS u_phone").await;

    let production = pgdeck::release::Environment {
        protected: true,
        ..env.clone()
    };
    let resolve = |env: pgdeck::release::Environment, confirmation: Option<Confirmation>| async move {
        workflow(&env, &never(), |ctx| async move {
            release::resolve(
                &ctx,
                &ResolveRequest {
                    name: "20250102000000_concurrent".into(),
                    how: Resolution::RolledBack,
                    confirmation,
                    lock_wait: None,
                },
            )
            .await
        })
        .await
    };
    let ran = resolve(production.clone(), None).await;
    assert_eq!(ran.refusal().guard, Some(Guard::Confirmation));
    let ran = resolve(production.clone(), Some(Confirmation::typed(&db.name))).await;
    assert!(ran.result.is_ok(), "{:?}", ran.result);

    let reset = workflow(&production, &never(), |ctx| {
        let db = db.name.clone();
        async move {
            let req = ResetRequest {
                confirmation: Some(Confirmation::typed(&db)),
                ..ResetRequest::default()
            };
            release::reset(&ctx, &req).await
        }
    })
    .await;
    assert_eq!(reset.refusal().guard, Some(Guard::Protected));
    let asks = workflow(&env, &never(), |ctx| async move {
        release::reset(&ctx, &ResetRequest::default()).await
    })
    .await;
    assert_eq!(asks.refusal().guard, Some(Guard::Confirmation));
}

#[tokio::test]
async fn a_signal_is_confirmed_with_what_the_backend_does_now_and_refused_read_only() {
    let (db, m, backups) = applied("release_signal").await;
    let mut env = environment("development", &db, &m, backups.path());
    let sleeper = db.client().await;
    let (pid, started): (i32, chrono::DateTime<chrono::Utc>) = {
        let r = sleeper
            .query_one(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    let sleeping = tokio::spawn(async move { sleeper.batch_execute("SELECT pg_sleep(30)").await });
    let request = |confirmation: Option<Confirmation>| SignalRequest {
        pid,
        backend_start: started,
        signal: Signal::Cancel,
        confirmation,
        read_only: false,
    };
    let signal = |env: pgdeck::release::Environment, req: SignalRequest| async move {
        workflow(&env, &never(), |ctx| async move {
            release::signal_backend(&ctx, &req).await
        })
        .await
    };
    // Wait until it runs, so the confirmation can say what it is doing.
    wait_for("the sleeper to run", Duration::from_secs(10), || async {
        signal(env.clone(), request(None))
            .await
            .refusal()
            .ask()
            .is_some_and(|a| a.lines.join(" ").contains("pg_sleep(30)"))
    })
    .await;
    env.read_only = true;
    let ro = signal(env.clone(), request(Some(Confirmation::yes()))).await;
    assert_eq!(ro.refusal().guard, Some(Guard::ReadOnly));
    env.read_only = false;
    let ran = signal(env.clone(), request(Some(Confirmation::yes()))).await;
    assert!(ran.result.is_ok(), "{:?}", ran.result);
    let cancelled = sleeping.await.unwrap();
    assert!(cancelled.is_err(), "the query was cancelled");
    let released = |ran: &Ran<()>| {
        ran.journal
            .iter()
            .find_map(|e| match e {
                Event::Released {
                    workflow,
                    outcome,
                    summary,
                    ..
                } if workflow == "signal a backend" => Some((*outcome, summary.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("not journaled: {:?}", ran.journal))
    };
    let (outcome, summary) = released(&ran);
    assert_eq!(outcome, Outcome::Ok);
    assert!(
        summary.starts_with(&format!("cancelled the query of backend {pid} "))
            && summary.contains("pg_sleep(30)"),
        "{summary}"
    );

    // Once the backend has ended, a signal finds it gone and sends nothing.
    let watcher = db.client().await;
    wait_for(
        "the sleeper's session to end",
        Duration::from_secs(10),
        || async {
            watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .await
                .map(|r| r.get::<_, i64>(0) == 0)
                .unwrap_or(false)
        },
    )
    .await;
    let gone = pgdeck::monitor::signal_backend(&db.target, pid, started, Signal::Terminate).await;
    assert!(
        matches!(gone, Ok(pgdeck::monitor::Signalled::Gone)),
        "{gone:?}"
    );

    // A process the server does not signal (pg_terminate_backend returns false): failed, and
    // the journal says why.
    let checkpointer = db.client().await;
    let (pid, started): (i32, chrono::DateTime<chrono::Utc>) = {
        let r = checkpointer
            .query_one(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    let ran = signal(
        env.clone(),
        SignalRequest {
            pid,
            backend_start: started,
            signal: Signal::Terminate,
            confirmation: Some(Confirmation::yes()),
            read_only: false,
        },
    )
    .await;
    let e = ran.result.as_ref().expect_err("not terminated");
    assert!(
        e.cause.contains("pg_terminate_backend returned false"),
        "{}",
        e.cause
    );
    let (outcome, summary) = released(&ran);
    assert_eq!(outcome, Outcome::Failed);
    assert!(
        summary.starts_with(&format!("terminate backend {pid} "))
            && summary
                .contains("failed: the server sent nothing (pg_terminate_backend returned false"),
        "{summary}"
    );
    assert_eq!(
        checkpointer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid]
            )
            .await
            .unwrap()
            .get::<_, i64>(0),
        1,
        "still there"
    );
}

#[tokio::test]
async fn a_cancelled_deploy_is_stopped_on_the_server_and_journals_what_was_and_was_not_applied() {
    let (db, m, backups) = applied("release_cancel").await;
    m.add("20250102000000_first", "CREATE TABLE first (id int);");
    m.add(
        "20250103000000_blocked",
        "ALTER TABLE \"User\" ADD COLUMN blocked text;",
    );
    let mut env = environment("development", &db, &m, backups.path());
    // Long enough that only the cancel can end the wait.
    env.deploy.lock_timeout = Duration::from_secs(120);
    let holder = hold_lock(&db, "User").await;
    let cancel = CancellationToken::new();
    let run = {
        let (env, cancel) = (env.clone(), cancel.clone());
        tokio::spawn(async move {
            workflow(&env, &cancel, |ctx| async move {
                release::deploy(&ctx, &DeployRequest::default()).await
            })
            .await
        })
    };
    until_pgdeck_waits_for_a_lock(&db).await;
    let cancelled_at = Instant::now();
    cancel.cancel();
    let ran = run.await.unwrap();
    let e = ran.refusal();
    assert_eq!(e.kind, ErrorKind::Cancelled, "{e:?}");
    assert!(
        e.cause.contains("20250103000000_blocked") && e.cause.contains("rolled it back"),
        "{}",
        e.cause
    );
    assert!(
        e.hint.contains("applied before it: 20250102000000_first"),
        "{}",
        e.hint
    );
    // Gone from the server, not left waiting behind the lock.
    until_pgdeck_is_gone(&db, Duration::from_secs(2)).await;
    assert!(cancelled_at.elapsed() < Duration::from_secs(3));
    assert!(
        ran.journal.iter().any(|ev| matches!(
            ev,
            Event::Released { outcome: Outcome::Cancelled, applied, not_applied, .. }
                if applied == &["20250102000000_first".to_string()]
                    && not_applied == &["20250103000000_blocked".to_string()]
        )),
        "{:?}",
        ran.journal
    );
    drop(holder);
    // The ledger agrees with the schema: the first is applied, the blocked one is not, and
    // deploys cleanly now.
    let ledger = db.ledger().await;
    assert!(
        ledger
            .iter()
            .any(|r| r.name == "20250102000000_first" && r.finished)
    );
    assert!(!ledger.iter().any(|r| r.name == "20250103000000_blocked"));
    assert!(db.table_exists("first").await);
    let again = deploying(&env, DeployRequest::default()).await;
    assert_eq!(
        again.result.unwrap().applied_names(),
        "20250103000000_blocked"
    );
}

#[tokio::test]
async fn sigint_to_a_headless_deploy_cancels_its_statement_on_the_server() {
    let (db, m, _backups) = applied("release_sigint").await;
    m.add(
        "20250102000000_blocked",
        "ALTER TABLE \"User\" ADD COLUMN blocked text;",
    );
    let config = ConfigEnv::write(&db, &m, "development", "lock_timeout = \"120s\"");
    let holder = hold_lock(&db, "User").await;
    let child = spawn(config.cmd(&["deploy"]));
    until_pgdeck_waits_for_a_lock(&db).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let started = Instant::now();
    let r = Run::from(child.wait_with_output().unwrap());
    r.assert_clean_error(i32::from(pgdeck::cli::exit::CANCELLED));
    assert!(
        r.stderr
            .contains("deploy cancelled during 20250102000000_blocked"),
        "{}",
        r.stderr
    );
    until_pgdeck_is_gone(&db, Duration::from_secs(2)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(holder);
    assert!(
        !db.ledger()
            .await
            .iter()
            .any(|r| r.name == "20250102000000_blocked")
    );
}

#[tokio::test]
async fn a_baseline_is_saved_only_of_a_healthy_system() {
    let (db, m, backups) = applied("release_baseline").await;
    let mut env = environment("development", &db, &m, backups.path());
    env.health.window = Duration::from_millis(500);
    env.health.probe_samples = 3;
    let path = backups.path().join("baseline.json");
    let healthy = workflow(&env, &never(), |ctx| {
        let path = path.clone();
        async move { release::capture_baseline(&ctx, None, &path).await }
    })
    .await;
    let capture = healthy.result.unwrap();
    assert_eq!(capture.saved.unwrap(), path);
    assert!(path.exists());

    // An endpoint that does not answer is an ALERT: no baseline of that.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    env.health.endpoints.push(pgdeck::health::Endpoint {
        name: "api".into(),
        url: format!("http://127.0.0.1:{port}/health").parse().unwrap(),
        expect_status: None,
        body_contains: None,
        timeout: Duration::from_secs(1),
        slow: Duration::from_secs(1),
    });
    let refused_path = backups.path().join("unhealthy.json");
    let alert = workflow(&env, &never(), |ctx| {
        let path = refused_path.clone();
        async move { release::capture_baseline(&ctx, None, &path).await }
    })
    .await;
    let capture = alert.result.unwrap();
    assert_eq!(capture.report.verdict, pgdeck::health::Level::Alert);
    let e = capture.saved.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused);
    assert!(e.cause.contains("baseline not saved"), "{}", e.cause);
    assert!(!refused_path.exists());
}

#[tokio::test]
async fn the_sample_queries_run_read_only_and_say_which_failed() {
    let (db, m, backups) = applied("release_samples").await;
    let mut env = environment("development", &db, &m, backups.path());
    env.backup.restore_checks = vec![
        "SELECT count(*) FROM \"User\"".into(),
        "SELECT count(*) FROM \"Missing\"".into(),
        "INSERT INTO \"User\" VALUES (9, 'x') RETURNING id".into(),
    ];
    let ran = workflow(&env, &never(), |ctx| async move {
        release::sample_queries(&ctx).await
    })
    .await;
    let checks = ran.result.unwrap();
    assert_eq!(checks[0].result, "2");
    assert!(checks[0].ok);
    assert_eq!(checks[1].result, "skipped: no such table");
    assert!(!checks[2].ok, "{:?}", checks[2]);
    assert!(checks[2].result.contains("read-only"), "{:?}", checks[2]);
    assert_eq!(db.scalar::<i64>("SELECT count(*) FROM \"User\"").await, 2);
}

/// A protected environment on a database with the first migration applied and a verified
/// backup of it.
async fn protected_with_backup(
    test: &str,
) -> (
    TestDb,
    Migrations,
    tempfile::TempDir,
    pgdeck::release::Environment,
) {
    let (db, m, backups) = applied(test).await;
    let env = pgdeck::release::Environment {
        protected: true,
        ..environment("production", &db, &m, backups.path())
    };
    take_backup(&env, "production", true).await;
    (db, m, backups, env)
}

#[tokio::test]
async fn a_deploy_confirmation_holds_for_the_migrations_as_they_were_shown_not_their_names() {
    let (db, m, _backups, env) = protected_with_backup("release_confirm_content").await;
    m.add(
        "20250102000000_c4",
        "ALTER TABLE \"User\" ADD COLUMN c4 text;",
    );
    let probe = deploying(&env, DeployRequest::default()).await;
    let ask = probe.refusal().ask().expect("a confirmation").clone();
    // While the question is open, the file changes under the same name.
    std::fs::write(m.file("20250102000000_c4"), "DELETE FROM \"User\";").unwrap();
    let ran = workflow(&env, &never(), |ctx| {
        let answer = Confirmation::answering(&ask, Some(db.name.clone()));
        async move {
            release::deploy(
                &ctx,
                &DeployRequest {
                    confirmation: Some(answer),
                    ..DeployRequest::default()
                },
            )
            .await
        }
    })
    .await;
    let e = ran.refusal();
    assert_eq!(e.guard, Some(Guard::Confirmation));
    assert!(
        e.cause.contains("what was confirmed changed"),
        "{}",
        e.cause
    );
    assert_eq!(db.scalar::<i64>("SELECT count(*) FROM \"User\"").await, 2);

    // A name typed for another database is refused on any environment.
    let dev = environment("development", &db, &m, _backups.path());
    let wrong = workflow(&dev, &never(), |ctx| async move {
        release::deploy(
            &ctx,
            &DeployRequest {
                confirmation: Some(Confirmation::typed("the_other_db")),
                ..DeployRequest::default()
            },
        )
        .await
    })
    .await;
    assert_eq!(wrong.refusal().guard, Some(Guard::Confirmation));
    assert_eq!(db.scalar::<i64>("SELECT count(*) FROM \"User\"").await, 2);
}

#[tokio::test]
async fn a_rollback_needs_a_persons_acknowledgement_whatever_its_down_sql_says_and_it_holds_from_run_to_run()
 {
    let (db, m, backups) = applied("release_rollback_ack").await;
    m.add(
        "20250102000000_add_note",
        "ALTER TABLE \"User\" ADD COLUMN note text;",
    );
    std::fs::write(
        m.file("20250102000000_add_note").with_file_name("down.sql"),
        "-- pgdeck:allow ban-drop-column the author said so in October\nALTER TABLE \"User\" DROP COLUMN note;",
    )
    .unwrap();
    let dev = environment("development", &db, &m, backups.path());
    let deployed = deploying(&dev, DeployRequest::default()).await;
    assert!(deployed.result.is_ok());
    let env = pgdeck::release::Environment {
        protected: true,
        ..dev.clone()
    };
    let revert = |deploy: DeployRequest| {
        let env = env.clone();
        async move {
            workflow(&env, &never(), |ctx| async move {
                release::revert(
                    &ctx,
                    &RevertRequest {
                        names: vec!["20250102000000_add_note".into()],
                        deploy: Some(deploy),
                    },
                )
                .await
            })
            .await
        }
    };
    let without = || DeployRequest {
        without_backup: Some("INC-8: the provider's snapshot".into()),
        ..DeployRequest::default()
    };
    let first = revert(without()).await;
    let e = first.refusal();
    assert_eq!(
        e.guard,
        Some(Guard::Lint),
        "the down.sql's own allow does not count"
    );
    let Some(Remedy::Acknowledge { findings, details }) = e
        .remedies
        .iter()
        .find(|r| matches!(r, Remedy::Acknowledge { .. }))
    else {
        panic!("{e:?}");
    };
    assert_eq!(details.len(), findings.len());
    // A second later, the same finding under the same key: the acknowledgement holds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let acknowledged = |confirmation| DeployRequest {
        acknowledgements: findings
            .iter()
            .map(|f| Allow::finding(f, "INC-8: nothing reads note"))
            .collect(),
        confirmation,
        ..without()
    };
    let second = revert(acknowledged(None)).await;
    let ask = second
        .refusal()
        .ask()
        .expect("a confirmation, the acknowledgement held")
        .clone();
    let done = revert(acknowledged(Some(Confirmation::answering(
        &ask,
        Some(db.name.clone()),
    ))))
    .await;
    assert!(done.result.is_ok(), "{:?}", done.result);
    assert!(done.journal.iter().any(|e| matches!(
        e,
        Event::Override { what, reason } if what.contains("ban-drop-column") && reason == "INC-8: nothing reads note"
    )), "{:?}", done.journal);
}

#[tokio::test]
async fn a_backup_that_no_longer_holds_gives_way_to_an_older_one_and_a_reason_covers_none() {
    let (db, m, backups, env) = protected_with_backup("release_recheck").await;
    let newer = take_backup(&env, "production", true).await;
    m.add("20250102000000_t1", "CREATE TABLE t1 (id int);");
    let flip = |file: &str| {
        let path = backups.path().join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    };
    flip(&newer.file);
    let deploy = |req: DeployRequest| deploying(&env, req);
    let typed = || Some(Confirmation::typed(&db.name));
    let ran = deploy(DeployRequest {
        confirmation: typed(),
        ..DeployRequest::default()
    })
    .await;
    let report = ran.result.as_ref().expect("the older backup held");
    assert_ne!(report.backup.as_deref(), Some(newer.file.as_str()));
    assert!(
        ran.lines().contains("does not hold any more"),
        "{}",
        ran.lines()
    );

    // Now none holds: refused after the confirmation, and both are journaled.
    m.add("20250103000000_t2", "CREATE TABLE t2 (id int);");
    let older = report.backup.clone().unwrap();
    flip(&older);
    let ran = deploy(DeployRequest {
        confirmation: typed(),
        ..DeployRequest::default()
    })
    .await;
    assert_eq!(ran.refusal().guard, Some(Guard::BackupIntegrity));
    assert!(
        matches!(
            &ran.journal[..],
            [
                Event::Confirmed { .. },
                Event::Released {
                    outcome: Outcome::Failed,
                    ..
                }
            ]
        ),
        "{:?}",
        ran.journal
    );
    assert!(!db.table_exists("t2").await);
    // The reason to go without one counts then.
    let ran = deploy(DeployRequest {
        confirmation: typed(),
        without_backup: Some("INC-9: both dumps are damaged; the provider has a snapshot".into()),
        ..DeployRequest::default()
    })
    .await;
    assert!(ran.result.is_ok(), "{:?}", ran.result);
    assert!(ran.journal.iter().any(|e| matches!(
        e,
        Event::Override { what, .. } if what.starts_with("deploy without a usable backup")
    )));
}

#[tokio::test]
async fn a_backup_that_is_a_link_or_a_pipe_is_never_read() {
    let (db, m, backups, env) = protected_with_backup("release_backup_kinds").await;
    let newer = take_backup(&env, "production", true).await;
    // The very bytes, but elsewhere: the link is refused, and the older backup serves.
    let outside = tempfile::tempdir().unwrap();
    let linked = backups.path().join(&newer.file);
    std::fs::rename(&linked, outside.path().join(&newer.file)).unwrap();
    std::os::unix::fs::symlink(outside.path().join(&newer.file), &linked).unwrap();
    m.add("20250102000000_t1", "CREATE TABLE t1 (id int);");
    let typed = || DeployRequest {
        confirmation: Some(Confirmation::typed(&db.name)),
        ..DeployRequest::default()
    };
    let ran = deploying(&env, typed()).await;
    let report = ran.result.as_ref().expect("the older backup held");
    assert_ne!(report.backup.as_deref(), Some(newer.file.as_str()));
    assert!(
        ran.lines().contains("is a symbolic link"),
        "{}",
        ran.lines()
    );

    // A pipe where the older one was would hang a read: it is refused without one.
    let older = backups.path().join(report.backup.as_deref().unwrap());
    std::fs::remove_file(&older).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&older)
        .status()
        .unwrap();
    assert!(made.success());
    m.add("20250103000000_t2", "CREATE TABLE t2 (id int);");
    let ran = tokio::time::timeout(Duration::from_secs(60), deploying(&env, typed()))
        .await
        .expect("the pipe is never opened");
    assert_eq!(ran.refusal().guard, Some(Guard::BackupIntegrity));
    assert!(
        ran.lines().contains("a pipe, socket or device"),
        "{}",
        ran.lines()
    );
    assert!(!db.table_exists("t2").await);
}

#[tokio::test]
async fn maintenance_mode_on_a_protected_environment_is_confirmed_with_the_name() {
    let (db, m, backups) = applied("release_maintenance_hook").await;
    let mut env = pgdeck::release::Environment {
        protected: true,
        ..environment("production", &db, &m, backups.path())
    };
    env.hooks
        .commands
        .insert("maintenance_on".into(), "echo offline".into());
    let run = |confirmation: Option<Confirmation>| {
        let env = env.clone();
        async move {
            workflow(&env, &never(), |ctx| async move {
                release::run_hook(
                    &ctx,
                    &HookRequest {
                        name: "maintenance_on".into(),
                        migrations: Vec::new(),
                        confirmation,
                    },
                )
                .await
            })
            .await
        }
    };
    let refused = run(Some(Confirmation::yes())).await;
    assert_eq!(refused.refusal().guard, Some(Guard::Confirmation));
    assert!(refused.journal.is_empty(), "it did not run");
    let ran = run(Some(Confirmation::typed(&db.name))).await;
    assert!(ran.result.unwrap().success());
}

#[tokio::test]
async fn a_cancelled_restore_is_stopped_on_the_server_and_the_application_returns_only_to_a_whole_database()
 {
    let (db, m, backups) = applied("release_restore_cancel").await;
    db.exec(
        "CREATE TABLE big (id int, v text); \
         INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1500000) g; \
         CREATE TABLE big2 (LIKE big); INSERT INTO big2 SELECT * FROM big;",
    )
    .await;
    let marker = backups.path().join("maintenance.log");
    let mut env = environment("development", &db, &m, backups.path());
    for hook in ["maintenance_on", "maintenance_off"] {
        env.hooks.commands.insert(
            hook.into(),
            format!("echo $PGDECK_HOOK >> {}", marker.display()),
        );
    }
    // One transaction rolls back whole, and the application comes back; two workers leave the
    // database partly restored, and the application stays away from it.
    for (format, jobs) in [(BackupFormat::Custom, 1), (BackupFormat::Directory, 2)] {
        let _ = std::fs::remove_file(&marker);
        let entry = take_backup_as(&env, "development", true, format).await;
        let written = 6 + jobs as i64;
        db.exec(&format!(
            "INSERT INTO \"User\" VALUES ({written}, 'after the backup')"
        ))
        .await;
        let cancel = CancellationToken::new();
        let run = {
            let (env, cancel, file) = (env.clone(), cancel.clone(), entry.file.clone());
            tokio::spawn(async move {
                workflow(&env, &cancel, |ctx| async move {
                    release::restore(
                        &ctx,
                        &RestoreRequest {
                            backup: file,
                            confirmation: Some(Confirmation::yes()),
                            terminate_sessions: true,
                            jobs,
                            ..RestoreRequest::default()
                        },
                    )
                    .await
                })
                .await
            })
        };
        // pg_restore is at work on the server (watched from another database: the restore
        // terminates the sessions on its own).
        let probe = pgdeck::db::connect(
            &db.target
                .with_database("postgres")
                .with_application_name("pgdeck-test"),
        )
        .await
        .unwrap()
        .client;
        wait_for("pg_restore to copy", Duration::from_secs(60), || async {
            probe
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgdeck-restore-%' \
                     AND state = 'active' AND query LIKE 'COPY%'",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0) > 0)
                .unwrap_or(false)
        })
        .await;
        cancel.cancel();
        let ran = run.await.unwrap();
        let e = ran.refusal();
        assert_eq!(e.kind, ErrorKind::Cancelled, "{e:?}");
        assert!(e.cause.contains("cancelled on the server"), "{}", e.cause);
        let left: i64 = db
            .scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgdeck-restore-%'",
            )
            .await;
        assert_eq!(left, 0, "no pg_restore session is left on the server");
        assert!(ran.journal.iter().any(|e| matches!(
            e,
            Event::Released { workflow, outcome: Outcome::Cancelled, .. } if workflow == "restore"
        )));
        let hooks = std::fs::read_to_string(&marker).unwrap();
        if jobs == 1 {
            // Rolled back: the row written after the backup is still there.
            assert_eq!(
                db.scalar::<i64>(&format!(
                    "SELECT count(*) FROM \"User\" WHERE id = {written}"
                ))
                .await,
                1
            );
            assert_eq!(hooks, "maintenance_on\nmaintenance_off\n");
        } else {
            assert!(e.cause.contains("partly restored"), "{}", e.cause);
            assert_eq!(hooks, "maintenance_on\n");
            assert!(
                ran.lines().contains(
                    "the application stays in maintenance mode: the database is partly restored"
                ),
                "{}",
                ran.lines()
            );
        }
    }
}
