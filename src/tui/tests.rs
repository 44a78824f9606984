//! The console without a terminal: synthetic keys against the state, and every screen and state
//! drawn on a fixed-size TestBackend and snapshotted.

use std::path::Path;

use chrono::{TimeZone, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Effect, MigrationsView, Msg, Screen, StepEvent};
use super::view::{self, Theme};
use crate::checklist::{self, Checklist, Facts, Operation, State};
use crate::config::{DbTarget, Environment};
use crate::journal::{Entry, Event};
use crate::monitor::watch::Update;
use crate::monitor::{
    Blocker, BlockingTree, Connections, LongQuery, Pane, Sample, Signal, Snapshot, TableSize,
    Victim,
};

fn env(protected: bool) -> Environment {
    Environment {
        protected,
        ..Environment::new(
            if protected { "production" } else { "staging" },
            DbTarget::socket(Path::new("/run/pg"), 5432, "deploy", "app"),
        )
    }
}

fn app(protected: bool) -> App {
    let facts = Facts {
        protected,
        ..Facts::default()
    };
    App::new(
        env(protected),
        Checklist::new(checklist::default_items(), facts),
        None,
    )
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(key(KeyCode::Char(c)));
    }
}

fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|f| view::draw(app, Theme { color: false }, f))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn t(secs: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + secs, 0).unwrap()
}

fn sample<T>(data: T) -> Pane<T> {
    Pane::Ok(Sample {
        at: t(0),
        cost_ms: 0.5,
        data,
    })
}

/// A snapshot under the classic migration outage: a DDL waiting behind a long transaction.
fn busy_snapshot(utilisation_total: i64) -> Snapshot {
    Snapshot {
        at: t(0),
        server_version: "15.18".into(),
        sees_all_sessions: true,
        connections: sample(Connections {
            total: utilisation_total,
            usable_max: 97,
            utilisation: utilisation_total as f64 / 97.0,
            by_state: [
                ("active".to_owned(), 3),
                ("idle".to_owned(), utilisation_total - 3),
            ]
            .into_iter()
            .collect(),
            waiting_on_locks: 2,
            by_database: vec![("app".into(), utilisation_total)],
            by_user: vec![("app".into(), utilisation_total)],
            by_application: vec![("web".into(), utilisation_total)],
        }),
        long_running: sample(vec![LongQuery {
            pid: 4242,
            backend_start: t(-600),
            user: "reporting".into(),
            application: "metabase".into(),
            client: "10.0.0.7".into(),
            wait_event: None,
            state: "active".into(),
            query_seconds: 312.0,
            transaction_seconds: 312.0,
            query_line: "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id".into(),
            query: "SELECT count(*)\nFROM orders o JOIN users u ON u.id = o.user_id".into(),
        }]),
        blocking: sample(BlockingTree {
            roots: vec![Blocker {
                pid: 4242,
                backend_start: t(-600),
                user: "reporting".into(),
                application: "metabase".into(),
                state: "active".into(),
                query: "SELECT count(*) FROM orders".into(),
                victims: vec![
                    Victim {
                        pid: 5001,
                        blocked_by: vec![4242],
                        lock_mode: Some("AccessExclusiveLock".into()),
                        relation: Some("orders".into()),
                        waiting_seconds: 4.0,
                        query: "ALTER TABLE orders ADD COLUMN note text".into(),
                        ddl_access_exclusive: true,
                        queued_behind: 1,
                    },
                    Victim {
                        pid: 5002,
                        blocked_by: vec![5001],
                        lock_mode: Some("AccessShareLock".into()),
                        relation: Some("orders".into()),
                        waiting_seconds: 3.0,
                        query: "SELECT * FROM orders WHERE id = $1".into(),
                        ddl_access_exclusive: false,
                        queued_behind: 0,
                    },
                ],
            }],
            waiting: 2,
        }),
        tables: sample(vec![TableSize {
            name: "public.orders".into(),
            rows_estimate: Some(1_200_000),
            heap_bytes: 800 << 20,
            toast_bytes: 0,
            index_bytes: 200 << 20,
            total_bytes: 1000 << 20,
            growth_bytes: Some(4 << 20),
            estimated: true,
        }]),
        progress: sample(vec![]),
        host: None,
    }
}

#[test]
fn enter_runs_automated_steps_in_order_and_ticks_manual_ones_with_a_note() {
    let mut a = app(false);
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::RunStep {
            index: 0,
            operation: Operation::Backup
        }]
    );
    assert_eq!(a.checklist.running(), Some(0));
    // Locked: moving on and pressing Enter says why instead of running.
    a.update(key(KeyCode::Char('j')));
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(a.flash.as_deref(), Some("locked: first: Backup created"));
    let effects = a.update(Msg::Step {
        index: 0,
        event: StepEvent::Done(Ok("app.dump (1 GB)".into())),
    });
    assert_eq!(effects, vec![Effect::Refresh]);
    assert_eq!(a.selected, 1, "the cursor moves to the next step");
    for i in 1..3 {
        a.update(key(KeyCode::Enter));
        a.update(Msg::Step {
            index: i,
            event: StepEvent::Done(Ok(String::new())),
        });
    }
    // "Migration tested on staging" is ticked with a note.
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert!(a.modal.is_some());
    typed(&mut a, "staging deploy #88");
    a.update(key(KeyCode::Enter));
    assert_eq!(
        a.checklist.state(3),
        &State::Ticked {
            note: Some("staging deploy #88".into())
        }
    );
    let kinds: Vec<&str> = a
        .journal
        .iter()
        .map(|e| match &e.event {
            Event::StepStarted { .. } => "started",
            Event::StepFinished { .. } => "finished",
            Event::StepTicked { .. } => "ticked",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started", "finished", "started", "finished", "started", "finished", "ticked"
        ]
    );
}

fn up_to_deploy(a: &mut App) -> usize {
    let deploy = a.checklist.index_of("deploy").unwrap();
    for i in 0..deploy {
        let item = a.checklist.items[i].clone();
        match item.operation {
            Some(_) => {
                a.checklist.start(i).unwrap();
                a.checklist.finish(i, Ok(String::new()));
            }
            None if item.optional => a.checklist.skip(i, "n/a".into()).unwrap(),
            None => a.checklist.tick(i, None).unwrap(),
        }
    }
    a.selected = deploy;
    deploy
}

#[test]
fn a_protected_deploy_is_gated_then_needs_the_database_name_typed() {
    let mut a = app(true);
    let deploy = up_to_deploy(&mut a);
    a.update(Msg::Facts(Facts {
        protected: true,
        verified_backup: Ok("app.dump".into()),
        unacknowledged: vec!["renaming-column".into()],
    }));
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert!(a.flash.as_deref().unwrap().contains("renaming-column"));
    // Acknowledge with a reason: an empty one is refused.
    a.update(key(KeyCode::Char('a')));
    a.update(key(KeyCode::Enter));
    assert_eq!(
        a.modal.as_ref().unwrap().error.as_deref(),
        Some("a reason is required")
    );
    typed(&mut a, "CHG-7 clients updated");
    a.update(key(KeyCode::Enter));
    assert!(a.modal.is_none());
    assert_eq!(a.checklist.state(deploy), &State::Ready);
    // A refresh does not bring the acknowledged findings back.
    a.update(Msg::Facts(Facts {
        protected: true,
        verified_backup: Ok("app.dump".into()),
        unacknowledged: vec!["renaming-column".into()],
    }));
    assert_eq!(a.checklist.state(deploy), &State::Ready);
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    typed(&mut a, "ap");
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(
        a.modal.as_ref().unwrap().error.as_deref(),
        Some("that is not app")
    );
    a.update(key(KeyCode::Backspace));
    a.update(key(KeyCode::Backspace));
    typed(&mut a, "app");
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::RunStep {
            index: deploy,
            operation: Operation::Deploy
        }]
    );
    assert!(a.journal.iter().any(|e| matches!(
        &e.event,
        Event::Override { reason, .. } if reason == "CHG-7 clients updated"
    )));
    assert!(
        a.journal
            .iter()
            .any(|e| matches!(&e.event, Event::Confirmed { .. }))
    );
}

#[test]
fn cancel_and_terminate_go_through_a_confirm_naming_the_backend() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    assert_eq!(a.screen, Screen::Monitor);
    a.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(busy_snapshot(20)),
    })));
    assert!(a.update(key(KeyCode::Char('K'))).is_empty());
    let modal = a.modal.clone().unwrap();
    assert!(modal.title.contains("backend 4242"), "{modal:?}");
    assert!(modal.lines.iter().any(|l| l.contains("reporting")));
    assert!(a.update(key(KeyCode::Esc)).is_empty());
    assert!(a.modal.is_none());
    a.update(key(KeyCode::Char('c')));
    assert_eq!(
        a.update(key(KeyCode::Char('y'))),
        vec![Effect::Signal {
            pid: 4242,
            backend_start: t(-600),
            signal: Signal::Cancel
        }]
    );
    // Read-only mode never asks.
    let mut ro = app(false);
    ro.env.read_only = true;
    ro.update(key(KeyCode::Char('2')));
    ro.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(busy_snapshot(20)),
    })));
    ro.update(key(KeyCode::Char('c')));
    assert!(ro.modal.is_none());
    assert!(ro.flash.as_deref().unwrap().contains("read-only"));
}

#[test]
fn a_running_step_is_cancelled_through_a_confirm_and_journaled_as_cancelled() {
    let mut a = app(false);
    a.update(key(KeyCode::Enter));
    a.update(key(KeyCode::Char('x')));
    assert!(a.modal.as_ref().unwrap().title.contains("Backup created"));
    assert_eq!(
        a.update(key(KeyCode::Char('y'))),
        vec![Effect::CancelStep(0)]
    );
    a.update(Msg::Step {
        index: 0,
        event: StepEvent::Cancelled,
    });
    assert_eq!(
        a.checklist.state(0),
        &State::Failed {
            cause: "cancelled by the operator".into()
        }
    );
    assert!(a.journal.iter().any(|e| matches!(
        e.event,
        Event::StepFinished {
            outcome: crate::journal::Outcome::Cancelled,
            ..
        }
    )));
    // Nothing runs now: x says so.
    a.update(key(KeyCode::Char('x')));
    assert_eq!(a.flash.as_deref(), Some("no step is running"));
}

#[test]
fn quitting_asks_only_while_a_step_runs() {
    let mut a = app(false);
    a.update(key(KeyCode::Enter));
    assert!(a.update(key(KeyCode::Char('q'))).is_empty());
    assert!(a.modal.is_some() && !a.should_quit);
    a.update(key(KeyCode::Esc));
    let ctrl_c = Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    a.update(ctrl_c);
    assert_eq!(a.update(key(KeyCode::Char('y'))), vec![Effect::Quit]);
    let mut idle = app(false);
    assert_eq!(idle.update(key(KeyCode::Char('q'))), vec![Effect::Quit]);
}

#[test]
fn a_resumed_session_restores_the_checklist() {
    let mut a = app(false);
    let e = |event| Entry {
        at: t(0),
        operator: "ana".into(),
        event,
    };
    a.restore_from(&[
        e(Event::StepFinished {
            step: "backup".into(),
            title: "Backup created".into(),
            outcome: crate::journal::Outcome::Ok,
            summary: "app.dump".into(),
            duration_ms: 10,
        }),
        e(Event::StepFinished {
            step: "verify_backup".into(),
            title: "Backup verified".into(),
            outcome: crate::journal::Outcome::Failed,
            summary: "checksum".into(),
            duration_ms: 10,
        }),
    ]);
    assert!(a.checklist.state(0).is_complete());
    assert_eq!(a.checklist.state(1), &State::Ready);
    assert_eq!(a.selected, 1);
}

#[test]
fn snapshot_checklist_with_a_running_step() {
    let mut a = app(true);
    a.update(key(KeyCode::Enter));
    a.update(Msg::Step {
        index: 0,
        event: StepEvent::Progress {
            detail: "412 MB written, 12/40 tables".into(),
            fraction: Some(0.4),
        },
    });
    insta::assert_snapshot!(render(&a, 100, 30));
}

#[test]
fn snapshot_checklist_gate_locked() {
    let mut a = app(true);
    up_to_deploy(&mut a);
    a.update(Msg::Facts(Facts {
        protected: true,
        verified_backup: Err("no verified backup of app in backups (1 unverified)".into()),
        unacknowledged: vec!["renaming-column".into()],
    }));
    insta::assert_snapshot!(render(&a, 100, 30));
}

#[test]
fn snapshot_confirm_modal_for_a_protected_deploy() {
    let mut a = app(true);
    up_to_deploy(&mut a);
    a.update(Msg::Facts(Facts {
        protected: true,
        verified_backup: Ok("app.dump".into()),
        unacknowledged: vec![],
    }));
    a.update(key(KeyCode::Enter));
    typed(&mut a, "ap");
    insta::assert_snapshot!(render(&a, 100, 30));
}

#[test]
fn snapshot_monitor_loading() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    insta::assert_snapshot!(render(&a, 100, 30));
}

#[test]
fn snapshot_monitor_with_alert_lock_queue_and_terminate_modal() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    a.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(busy_snapshot(90)),
    })));
    insta::assert_snapshot!("monitor_alert", render(&a, 120, 34));
    a.update(key(KeyCode::Char('K')));
    insta::assert_snapshot!("monitor_terminate_modal", render(&a, 120, 34));
}

#[test]
fn snapshot_monitor_stale_keeps_the_last_sample() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    a.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(busy_snapshot(10)),
    })));
    a.update(Msg::Monitor(Box::new(Update::Stale {
        last_at: Some(t(0)),
        age_seconds: Some(12.0),
        cause: "connection refused".into(),
        attempt: 3,
        retry_in_ms: 2000,
    })));
    insta::assert_snapshot!(render(&a, 100, 30));
}

#[tokio::test]
async fn snapshot_migrations_with_findings_and_down_sql() {
    let mut a = app(false);
    let dir = crate::migrate::MigrationsDir::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"),
    )
    .unwrap();
    let status = crate::migrate::StatusReport::build(&dir, None);
    let pending: Vec<String> = status
        .pending_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names: Vec<&str> = pending.iter().map(String::as_str).collect();
    let plan =
        crate::lint::plan::Plan::build(None, &dir, &names, &Default::default(), &[], false).await;
    a.update(Msg::Migrations(Ok(Box::new(MigrationsView {
        dir,
        status,
        plan,
    }))));
    a.update(key(KeyCode::Char('3')));
    a.update(key(KeyCode::Char('j')));
    a.update(key(KeyCode::Char('j')));
    insta::assert_snapshot!("migrations_sql", render(&a, 120, 30));
    a.update(key(KeyCode::Char('d')));
    insta::assert_snapshot!("migrations_down", render(&a, 120, 30));
}

#[test]
fn snapshot_migrations_error() {
    let mut a = app(false);
    a.update(Msg::Migrations(Err(
        "cannot read migrations folder migrations: No such file or directory".into(),
    )));
    a.update(key(KeyCode::Char('3')));
    insta::assert_snapshot!(render(&a, 100, 24));
}

#[test]
fn snapshot_rollback_and_journal_and_help() {
    let mut a = app(true);
    a.update(Msg::Facts(Facts {
        protected: true,
        verified_backup: Ok("app_production_20261124_010000.dump".into()),
        unacknowledged: vec![],
    }));
    a.journal = vec![
        Entry {
            at: t(0),
            operator: "ana".into(),
            event: Event::SessionStarted {
                environment: "production".into(),
                database: "postgresql://deploy:***@db/app".into(),
                pgdeck: "0.1.0".into(),
            },
        },
        Entry {
            at: t(30),
            operator: "ana".into(),
            event: Event::Override {
                what: "deploy with DANGEROUS findings: renaming-column".into(),
                reason: "CHG-7".into(),
            },
        },
    ];
    a.update(key(KeyCode::Char('4')));
    insta::assert_snapshot!("rollback", render(&a, 100, 24));
    a.update(key(KeyCode::Char('5')));
    insta::assert_snapshot!("journal", render(&a, 100, 24));
    a.update(key(KeyCode::Char('?')));
    insta::assert_snapshot!("help", render(&a, 100, 30));
    a.update(key(KeyCode::Char('x')));
    assert!(!a.help, "any key closes help");
}

async fn migrations_view(applied: usize) -> MigrationsView {
    let dir = crate::migrate::MigrationsDir::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"),
    )
    .unwrap();
    let mut status = crate::migrate::StatusReport::build(&dir, None);
    for m in status.migrations.iter_mut().take(applied) {
        m.state = crate::migrate::MigrationState::Applied {
            applied_at: t(0),
            duration_ms: 5,
        };
    }
    let plan =
        crate::lint::plan::Plan::build(None, &dir, &[], &Default::default(), &[], false).await;
    MigrationsView { dir, status, plan }
}

#[tokio::test]
async fn the_rollback_screen_marks_migrations_and_confirms_exactly_what_it_reverts() {
    let mut a = app(true);
    a.update(Msg::Migrations(Ok(Box::new(migrations_view(3).await))));
    a.update(key(KeyCode::Char('4')));
    assert_eq!(
        a.revertible(),
        [
            "20251105000000_add_qrcode_used_by_index",
            "20251029000000_add_stripe_webhook_event",
            "20251001000000_init"
        ]
    );
    // Mark the two newest.
    a.update(key(KeyCode::Char(' ')));
    a.update(key(KeyCode::Char('j')));
    a.update(key(KeyCode::Char(' ')));
    a.update(key(KeyCode::Char('f')));
    let modal = a.modal.clone().unwrap();
    assert!(
        modal.lines[0].contains(
            "20251105000000_add_qrcode_used_by_index, 20251029000000_add_stripe_webhook_event"
        ),
        "{modal:?}"
    );
    assert_eq!(
        modal.expect.as_deref(),
        Some("app"),
        "protected: the name is typed"
    );
    typed(&mut a, "app");
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::Revert(vec![
            "20251105000000_add_qrcode_used_by_index".into(),
            "20251029000000_add_stripe_webhook_event".into()
        ])]
    );
    // While it runs, other actions wait.
    assert!(a.update(key(KeyCode::Char('b'))).is_empty());
    assert!(a.flash.as_deref().unwrap().contains("is running"));
    a.update(Msg::Rollback(super::app::RollbackEvent::Done {
        what: "forward rollback of 20251105000000_add_qrcode_used_by_index".into(),
        result: Ok("1 applied".into()),
    }));
    assert!(a.rollback.marked.is_empty());
    assert!(a.rollback.emergency[5].1.is_some(), "executed is ticked");
    // No verified backup: restore says so; with one, it asks for a loss estimate first.
    a.update(key(KeyCode::Char('b')));
    assert_eq!(
        a.flash.as_deref(),
        Some("no verified backup of this database")
    );
    // The emergency checklist: focus right, tick with a note.
    a.update(key(KeyCode::Char('l')));
    a.update(key(KeyCode::Char(' ')));
    typed(&mut a, "#incident");
    a.update(key(KeyCode::Enter));
    assert_eq!(a.rollback.emergency[0].1.as_deref(), Some("#incident"));
    insta::assert_snapshot!("rollback_after_forward", render(&a, 110, 32));
}

#[test]
fn a_restore_offer_names_the_loss_and_needs_the_name() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('4')));
    a.update(Msg::Rollback(super::app::RollbackEvent::RestoreOffer {
        file: "app_staging_20261124_010000.dump".into(),
        loss: "2h 5m of changes, about 1200 row(s) written since (pg_stat_user_tables)".into(),
    }));
    let modal = a.modal.clone().unwrap();
    assert!(modal.lines[0].contains("about 1200 row(s)"), "{modal:?}");
    assert_eq!(modal.expect.as_deref(), Some("app"));
    typed(&mut a, "app");
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::Restore("app_staging_20261124_010000.dump".into())]
    );
}

#[test]
fn snapshot_too_small() {
    let a = app(false);
    insta::assert_snapshot!(render(&a, 60, 20));
}

#[test]
fn every_size_from_tiny_to_large_draws_without_panicking() {
    let mut a = app(true);
    a.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(busy_snapshot(90)),
    })));
    for screen in ['1', '2', '3', '4', '5'] {
        a.update(key(KeyCode::Char(screen)));
        for (w, h) in [
            (1, 1),
            (10, 3),
            (20, 5),
            (79, 23),
            (80, 24),
            (81, 25),
            (200, 60),
        ] {
            render(&a, w, h);
        }
    }
}
