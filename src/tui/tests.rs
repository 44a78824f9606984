//! The console without a terminal: synthetic keys against the state, and every screen and state
//! drawn on a fixed-size TestBackend and snapshotted.

use std::path::Path;

use chrono::{TimeZone, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Effect, Msg};
use super::jobs::{Job, MigrationsView, Origin, Refreshed};
use super::screens::Screen;
use super::screens::rollback::revertible;
use super::view::{self, Theme};
use crate::checklist::{self, Checklist, Facts, State};
use crate::error::{Ask, Error, ErrorKind, Guard, Remedy};
use crate::journal::{Entry, Event, Outcome};
use crate::lint::plan::Allow;
use crate::monitor::watch::Update;
use crate::monitor::{
    Alert, Blocker, BlockingTree, Connections, LongQuery, Pane, Pool, Pools, Replication, Sample,
    Signal, Slot, Snapshot, Standby, TableSize, Victim,
};
use crate::release::{Confirmation, DeployRequest, Environment, RevertRequest, SignalRequest};
use crate::target::DbTarget;

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
                state_seconds: 312.0,
                query: "SELECT count(*) FROM orders".into(),
                victims: vec![
                    Victim {
                        pid: 5001,
                        backend_start: t(-30),
                        user: "deploy".into(),
                        application: "pgdeck".into(),
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
                        backend_start: t(-100),
                        user: "app".into(),
                        application: "web".into(),
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
            exclusive_relations: None,
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
        replication: sample(Replication {
            in_recovery: false,
            recovery: None,
            standbys: Vec::new(),
            slots: Vec::new(),
        }),
        pools: None,
        alerts: Vec::new(),
        host: None,
    }
}

/// A refresh as the jobs send it, newer than any before.
fn refreshed(a: &mut App, facts: Facts) {
    refreshed_with(a, facts, Ok(None));
}

fn refreshed_with(a: &mut App, facts: Facts, migrations: Result<Option<MigrationsView>, String>) {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let migrations = match migrations {
        Ok(Some(v)) => Ok(Box::new(v)),
        Ok(None) => match &a.migrations.data {
            Ok(Some(v)) => Ok(v.clone()),
            _ => Ok(Box::new(no_migrations())),
        },
        Err(e) => Err(e),
    };
    a.update(Msg::Refreshed(Box::new(Refreshed {
        generation,
        migrations,
        facts,
        backup: None,
        pitr: None,
        session: None,
    })));
}

fn no_migrations() -> MigrationsView {
    let dir = crate::migrate::MigrationsDir {
        path: "migrations".into(),
        migrations: Vec::new(),
    };
    MigrationsView {
        status: crate::migrate::StatusReport::build(&dir, None),
        dir,
        plan: crate::lint::plan::Plan {
            migrations: Vec::new(),
            sizes_unavailable: None,
        },
        down_lints: Default::default(),
    }
}

fn done(a: &mut App, origin: Origin, job: Job, result: Result<String, Error>) -> Vec<Effect> {
    a.update(Msg::Done {
        origin,
        job: Box::new(job),
        result,
    })
}

/// The refusal a workflow sends when it needs a confirmation.
fn asks(title: &str, lines: &[&str], expect: Option<&str>, scope: &[&str]) -> Error {
    Error::guarded(Guard::Confirmation, "not confirmed", "confirm it").with(Remedy::Confirm(Ask {
        title: title.into(),
        lines: lines.iter().map(|l| l.to_string()).collect(),
        expect: expect.map(str::to_owned),
        scope: scope.iter().map(|s| s.to_string()).collect(),
    }))
}

#[test]
fn enter_runs_automated_steps_in_order_and_ticks_manual_ones_with_a_note() {
    let mut a = app(false);
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::Run {
            origin: Origin::Step(0),
            job: Job::Rehearse
        }]
    );
    assert_eq!(a.checklist.running(), Some(0));
    // Locked: moving on and pressing Enter says why instead of running.
    a.update(key(KeyCode::Char('j')));
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(
        a.flash.as_deref(),
        Some("locked: first: Rehearsal and drift check")
    );
    a.update(Msg::Started {
        origin: Origin::Step(0),
    });
    let effects = done(
        &mut a,
        Origin::Step(0),
        Job::Rehearse,
        Ok("1 pending rehearsed on a copy; no drift".into()),
    );
    assert_eq!(effects, vec![Effect::Refresh]);
    assert_eq!(a.steps.selected, 1, "the cursor moves to the next step");
    for i in 1..4 {
        let effects = a.update(key(KeyCode::Enter));
        let Some(Effect::Run { job, .. }) = effects.into_iter().next() else {
            panic!("step {i} did not run");
        };
        a.update(Msg::Started {
            origin: Origin::Step(i),
        });
        done(&mut a, Origin::Step(i), job, Ok(String::new()));
    }
    // "Migration tested on staging" is ticked with a note.
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert!(a.modal.is_some());
    typed(&mut a, "staging deploy #88");
    a.update(key(KeyCode::Enter));
    assert_eq!(
        a.checklist.state(4),
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
            "started", "finished", "started", "finished", "started", "finished", "started",
            "finished", "ticked"
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
    a.steps.selected = deploy;
    deploy
}

fn protected_facts(unacknowledged: &[&str]) -> Facts {
    Facts {
        protected: true,
        verified_backup: Ok("app.dump".into()),
        pitr: false,
        unacknowledged: unacknowledged.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn a_protected_deploy_asks_what_the_workflow_asks_and_sends_the_answer_back() {
    let mut a = app(true);
    let deploy = up_to_deploy(&mut a);
    refreshed(&mut a, protected_facts(&[]));
    let effects = a.update(key(KeyCode::Enter));
    let job = Job::Deploy(DeployRequest::default());
    // From the deploy on, health is sampled in the background.
    assert_eq!(
        effects,
        vec![
            Effect::LiveHealth(true),
            Effect::Run {
                origin: Origin::Step(deploy),
                job: job.clone()
            }
        ]
    );
    assert!(a.health_live);
    // The workflow checked its guards and asks for the name, saying what it will do.
    let ask = asks(
        "Apply 2 pending migration(s) to app",
        &["Applies to postgresql://deploy@/app, in this order:"],
        Some("app"),
        &["20250101_a", "20250102_b"],
    );
    assert!(done(&mut a, Origin::Step(deploy), job.clone(), Err(ask)).is_empty());
    assert_eq!(
        a.checklist.state(deploy),
        &State::Ready,
        "not failed: it waits"
    );
    let modal = a.modal.clone().unwrap();
    assert_eq!(modal.title, "Apply 2 pending migration(s) to app");
    // A wrong name is refused with a word.
    typed(&mut a, "ap");
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(
        a.modal.as_ref().unwrap().error.as_deref(),
        Some("'ap' is not the database name: type app exactly")
    );
    typed(&mut a, "p");
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::Run {
            origin: Origin::Step(deploy),
            job: job.confirmed(Confirmation {
                typed: Some("app".into()),
                scope: vec!["20250101_a".into(), "20250102_b".into()],
            })
        }]
    );
    assert!(matches!(a.checklist.state(deploy), State::Running { .. }));
}

#[test]
fn acknowledged_findings_travel_with_the_deploy_and_are_journaled() {
    let mut a = app(true);
    let deploy = up_to_deploy(&mut a);
    let finding = "migrations/x/migration.sql:1:1 renaming-column";
    refreshed(&mut a, protected_facts(&[finding]));
    // Locked by what the facts say, but Enter still asks the workflow, which says why.
    assert!(matches!(a.checklist.state(deploy), State::Locked(_)));
    // Acknowledge with a reason: an empty one is refused.
    a.update(key(KeyCode::Char('a')));
    a.update(key(KeyCode::Enter));
    assert_eq!(
        a.modal.as_ref().unwrap().error.as_deref(),
        Some("a reason is required: it goes in the journal")
    );
    typed(&mut a, "CHG-7 clients updated");
    a.update(key(KeyCode::Enter));
    assert!(a.modal.is_none());
    assert_eq!(a.checklist.state(deploy), &State::Ready);
    // A refresh does not bring the acknowledged finding back.
    refreshed(&mut a, protected_facts(&[finding]));
    assert_eq!(a.checklist.state(deploy), &State::Ready);
    let effects = a.update(key(KeyCode::Enter));
    assert_eq!(
        effects.last(),
        Some(&Effect::Run {
            origin: Origin::Step(deploy),
            job: Job::Deploy(DeployRequest {
                acknowledgements: vec![Allow::finding(finding, "CHG-7 clients updated")],
                ..DeployRequest::default()
            })
        })
    );
    assert!(a.journal.iter().any(|e| matches!(
        &e.event,
        Event::Acknowledged { reason, findings } if reason == "CHG-7 clients updated" && findings == &[finding.to_string()]
    )));
}

#[test]
fn a_refusal_keeps_its_hint_on_screen_and_offers_its_override() {
    let mut a = app(true);
    let deploy = up_to_deploy(&mut a);
    refreshed(&mut a, protected_facts(&[]));
    let job = Job::Deploy(DeployRequest::default());
    a.update(key(KeyCode::Enter));
    let refusal = Error::guarded(
        Guard::Backup,
        "deploy to protected environment 'production' refused: no backup of app in backups",
        "a protected deploy needs a verified backup of this database",
    )
    .with(Remedy::TakeVerifiedBackup)
    .with(Remedy::DeployWithoutBackup);
    done(&mut a, Origin::Step(deploy), job.clone(), Err(refusal));
    let State::Failed { cause } = a.checklist.state(deploy) else {
        panic!("{:?}", a.checklist.state(deploy));
    };
    assert!(
        cause.contains("no backup of app")
            && cause.contains("hint: a protected deploy needs")
            && cause.contains("Backup and Verify steps"),
        "{cause}"
    );
    // The refusal offers what can answer it here.
    let modal = a.modal.clone().unwrap();
    assert!(
        modal.lines.iter().any(|l| l.starts_with("hint: ")),
        "{modal:?}"
    );
    a.update(key(KeyCode::Char('o')));
    assert!(a.modal.as_ref().unwrap().title.starts_with("Override"));
    typed(&mut a, "INC-42: provider snapshot");
    assert_eq!(
        a.update(key(KeyCode::Enter)),
        vec![Effect::Run {
            origin: Origin::Step(deploy),
            job: Job::Deploy(DeployRequest {
                without_backup: Some("INC-42: provider snapshot".into()),
                ..DeployRequest::default()
            })
        }]
    );
}

#[test]
fn cancel_and_terminate_ask_the_workflow_which_confirms_with_what_the_backend_does_now() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    assert_eq!(a.screen, Screen::Monitor);
    a.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(busy_snapshot(20)),
    })));
    let job = Job::Signal(SignalRequest {
        pid: 4242,
        backend_start: t(-600),
        signal: Signal::Terminate,
        confirmation: None,
        read_only: false,
    });
    assert_eq!(
        a.update(key(KeyCode::Char('K'))),
        vec![Effect::Run {
            origin: Origin::Monitor,
            job: job.clone()
        }]
    );
    let ask = asks(
        "Terminate backend 4242",
        &["pid 4242  user reporting  application metabase"],
        None,
        &["4242"],
    );
    done(&mut a, Origin::Monitor, job.clone(), Err(ask));
    assert!(a.modal.as_ref().unwrap().lines[0].contains("reporting"));
    assert!(
        a.update(key(KeyCode::Char('n'))).is_empty(),
        "only y confirms"
    );
    assert_eq!(
        a.update(key(KeyCode::Char('y'))),
        vec![Effect::Run {
            origin: Origin::Monitor,
            job: job.confirmed(Confirmation {
                typed: None,
                scope: vec!["4242".into()]
            })
        }]
    );
}

#[test]
fn a_running_step_is_cancelled_through_a_confirm_and_journaled_as_cancelled() {
    let mut a = app(false);
    a.update(key(KeyCode::Enter));
    a.update(key(KeyCode::Char('x')));
    assert!(
        a.modal
            .as_ref()
            .unwrap()
            .title
            .contains("Rehearsal and drift check")
    );
    assert_eq!(
        a.update(key(KeyCode::Char('y'))),
        vec![Effect::Cancel(Origin::Step(0))]
    );
    done(
        &mut a,
        Origin::Step(0),
        Job::Rehearse,
        Err(Error::cancelled("cancelled by the operator", "")),
    );
    assert_eq!(
        a.checklist.state(0),
        &State::Failed {
            cause: "cancelled: cancelled by the operator".into()
        }
    );
    assert!(a.journal.iter().any(|e| matches!(
        e.event,
        Event::StepFinished {
            outcome: Outcome::Cancelled,
            ..
        }
    )));
    // Nothing runs now: x says so.
    a.update(key(KeyCode::Char('x')));
    assert_eq!(a.flash.as_deref(), Some("no step is running"));
}

#[test]
fn quitting_asks_only_while_work_runs() {
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
    let mut stopped = app(false);
    assert_eq!(stopped.update(Msg::Stop), vec![Effect::Quit]);
}

#[test]
fn a_resumed_session_restores_the_checklist_the_acknowledgement_and_the_emergency_ticks() {
    let mut a = app(false);
    let e = |event| Entry {
        at: t(0),
        operator: "ana".into(),
        event,
    };
    a.restore_from(&[
        e(Event::StepFinished {
            step: "rehearsal".into(),
            title: "Rehearsal and drift check".into(),
            outcome: Outcome::Ok,
            summary: "1 pending rehearsed on a copy; no drift".into(),
            duration_ms: 10,
        }),
        e(Event::StepFinished {
            step: "backup".into(),
            title: "Backup created".into(),
            outcome: Outcome::Ok,
            summary: "app.dump".into(),
            duration_ms: 10,
        }),
        e(Event::StepFinished {
            step: "verify_backup".into(),
            title: "Backup verified".into(),
            outcome: Outcome::Failed,
            summary: "checksum".into(),
            duration_ms: 10,
        }),
        e(Event::Override {
            what: "deploy without a recent verified backup".into(),
            reason: "not an acknowledgement".into(),
        }),
        e(Event::Acknowledged {
            findings: vec!["m.sql:1:1 renaming-column".into()],
            reason: "CHG-7".into(),
        }),
        e(Event::StepTicked {
            step: "emergency_4".into(),
            title: "Team notified of the rollback decision".into(),
            note: Some("#incident".into()),
        }),
    ]);
    assert!(a.checklist.state(1).is_complete());
    assert_eq!(a.checklist.state(2), &State::Ready);
    assert_eq!(a.steps.selected, 2);
    assert_eq!(
        a.acknowledgements(),
        vec![Allow::finding("m.sql:1:1 renaming-column", "CHG-7")]
    );
    assert_eq!(a.rollback.emergency[3].1.as_deref(), Some("#incident"));
}

#[test]
fn an_older_refresh_never_overwrites_a_newer_one() {
    let mut a = app(true);
    let newer = Refreshed {
        generation: 7,
        migrations: Err("newer".into()),
        facts: protected_facts(&[]),
        backup: None,
        pitr: None,
        session: None,
    };
    let older = Refreshed {
        generation: 6,
        migrations: Err("older".into()),
        facts: Facts::default(),
        backup: None,
        pitr: None,
        session: None,
    };
    a.update(Msg::Refreshed(Box::new(newer)));
    a.update(Msg::Refreshed(Box::new(older)));
    assert_eq!(a.migrations.data.as_ref().unwrap_err(), "newer");
    assert!(a.checklist.facts.protected);
}

#[test]
fn snapshot_checklist_with_a_running_step() {
    let mut a = app(true);
    a.update(key(KeyCode::Enter));
    a.update(Msg::Progress {
        origin: Origin::Step(0),
        detail: "[1/1] rehearsing 20251105000000_add_qrcode_used_by_index".into(),
        fraction: None,
    });
    insta::assert_snapshot!(render(&a, 100, 30));
}

#[test]
fn snapshot_checklist_gate_locked() {
    let mut a = app(true);
    up_to_deploy(&mut a);
    refreshed(
        &mut a,
        Facts {
            protected: true,
            verified_backup: Err("no verified backup of app in backups (1 unverified)".into()),
            pitr: false,
            unacknowledged: vec!["m.sql:3:1 renaming-column".into()],
        },
    );
    insta::assert_snapshot!(render(&a, 100, 30));
}

#[test]
fn snapshot_confirm_modal_for_a_protected_deploy() {
    let mut a = app(true);
    let deploy = up_to_deploy(&mut a);
    refreshed(&mut a, protected_facts(&[]));
    a.update(key(KeyCode::Enter));
    done(
        &mut a,
        Origin::Step(deploy),
        Job::Deploy(DeployRequest::default()),
        Err(asks(
            "Apply 1 pending migration(s) to app",
            &[
                "Applies to postgresql://deploy@/app, in this order:",
                "  20251105000000_add_qrcode_used_by_index",
                "Each in its own transaction with lock_timeout 5s, retried 3 time(s).",
            ],
            Some("app"),
            &["20251105000000_add_qrcode_used_by_index"],
        )),
    );
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
    let effects = a.update(key(KeyCode::Char('K')));
    let Some(Effect::Run { job, .. }) = effects.into_iter().next() else {
        panic!("K runs the signal workflow");
    };
    done(
        &mut a,
        Origin::Monitor,
        job,
        Err(asks(
            "Terminate backend 4242",
            &[
                "pid 4242  user reporting  application metabase",
                "now: active, query running 312s, transaction open 312s",
                "query: SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id",
                "Its open transaction rolls back.",
            ],
            None,
            &["4242"],
        )),
    );
    insta::assert_snapshot!("monitor_terminate_modal", render(&a, 120, 34));
}

/// A primary with a standby whose replay is far behind, an inactive slot holding WAL, and a
/// PgBouncer pool at 90 %, each past its threshold.
fn replicating_snapshot() -> Snapshot {
    let mut s = busy_snapshot(10);
    s.replication = sample(Replication {
        in_recovery: false,
        recovery: None,
        standbys: vec![Standby {
            pid: 777,
            name: "standby1".into(),
            client: "10.0.0.9".into(),
            state: "streaming".into(),
            sync_state: "async".into(),
            sent_lag_bytes: Some(0),
            write_lag_bytes: Some(0),
            flush_lag_bytes: Some(0),
            replay_lag_bytes: Some(200 << 20),
            write_lag_seconds: Some(0.0),
            flush_lag_seconds: Some(0.0),
            replay_lag_seconds: Some(42.0),
        }],
        slots: vec![Slot {
            name: "old_etl".into(),
            slot_type: "logical".into(),
            database: Some("app".into()),
            active: false,
            retained_bytes: Some(3 << 30),
            wal_status: Some("extended".into()),
        }],
    });
    s.pools = Some(sample(Pools {
        pools: vec![Pool {
            database: "app".into(),
            user: "web".into(),
            pool_mode: "transaction".into(),
            clients_active: 18,
            clients_waiting: 0,
            servers_active: 18,
            servers_idle: 2,
            servers_other: 0,
            max_wait_seconds: 0.0,
            pool_size: 20,
            utilisation: 0.9,
        }],
        utilisation: 0.9,
        clients_active: 18,
        clients_waiting: 0,
    }));
    s.alerts = crate::monitor::alerts(
        &crate::monitor::MonitorSettings::default(),
        &s.replication,
        s.pools.as_ref(),
    );
    s
}

#[test]
fn the_monitor_shows_standbys_slots_and_pools_and_their_alerts_reach_the_banner() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    a.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(replicating_snapshot()),
    })));
    let kinds: Vec<&str> = a
        .monitor
        .last
        .as_ref()
        .map(|s| s.alerts.iter().map(|x: &Alert| x.kind).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["replica", "slot", "pool"]);
    let alerts = a.alerts();
    assert!(
        alerts
            .iter()
            .any(|x| x.contains("replica standby1 replay lag 200.0 MB")),
        "{alerts:?}"
    );
    assert!(alerts.iter().any(|x| x.contains("inactive slot old_etl")));
    assert!(alerts.iter().any(|x| x.contains("pool app/web 90 %")));
    let screen = render(&a, 140, 40);
    assert!(screen.contains("standby1 streaming/async"), "{screen}");
    assert!(
        screen.contains("slot old_etl (logical) INACTIVE"),
        "{screen}"
    );
    assert!(screen.contains("90% app/web transaction"), "{screen}");
    insta::assert_snapshot!("monitor_replication", screen);
}

#[test]
fn a_standby_monitor_says_so_and_a_paused_deploy_says_what_it_waits_for() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    let mut s = busy_snapshot(10);
    s.replication = sample(Replication {
        in_recovery: true,
        recovery: Some(crate::monitor::Recovery {
            replay_behind_bytes: Some(5 << 20),
            last_replay_seconds: Some(12.0),
            replay_paused: true,
        }),
        standbys: Vec::new(),
        slots: Vec::new(),
    });
    a.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(s),
    })));
    let screen = render(&a, 140, 40);
    assert!(
        screen.contains("this server is a STANDBY (read-only): 5.0 MB received"),
        "{screen}"
    );
    assert!(screen.contains("replay PAUSED"), "{screen}");
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
    refreshed_with(
        &mut a,
        Facts::default(),
        Ok(Some(MigrationsView {
            dir,
            status,
            plan,
            down_lints: Default::default(),
        })),
    );
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
    refreshed_with(
        &mut a,
        Facts::default(),
        Err("cannot read migrations folder migrations: No such file or directory".into()),
    );
    a.update(key(KeyCode::Char('3')));
    insta::assert_snapshot!(render(&a, 100, 24));
}

#[test]
fn snapshot_rollback_and_journal_and_help() {
    let mut a = app(true);
    refreshed(
        &mut a,
        Facts {
            protected: true,
            verified_backup: Ok("app_production_20261124_010000.dump".into()),
            pitr: false,
            unacknowledged: vec![],
        },
    );
    a.journal = vec![
        Entry {
            at: t(0),
            operator: "ana".into(),
            event: Event::SessionStarted {
                environment: "production".into(),
                database: "postgresql://deploy:***@db/app".into(),
                pgdeck: "0.1.0".into(),
                command: None,
            },
        },
        Entry {
            at: t(30),
            operator: "ana".into(),
            event: Event::Override {
                what: "deploy with DANGEROUS findings acknowledged: m.sql:3:1 renaming-column"
                    .into(),
                reason: "CHG-7".into(),
            },
        },
        Entry {
            at: t(40),
            operator: "ana".into(),
            event: Event::Released {
                workflow: "deploy".into(),
                outcome: Outcome::Cancelled,
                summary: "deploy cancelled during 20251105000000_add_qrcode_used_by_index".into(),
                applied: vec!["20251029000000_add_stripe_webhook_event".into()],
                not_applied: vec!["20251105000000_add_qrcode_used_by_index".into()],
                duration_ms: None,
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
    MigrationsView {
        dir,
        status,
        plan,
        down_lints: Default::default(),
    }
}

#[tokio::test]
async fn the_rollback_screen_reverts_exactly_the_marked_migrations_through_the_workflow() {
    let mut a = app(true);
    refreshed_with(&mut a, Facts::default(), Ok(Some(migrations_view(3).await)));
    a.update(key(KeyCode::Char('4')));
    assert_eq!(
        revertible(&a),
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
    let job = Job::Revert(RevertRequest {
        names: vec![
            "20251105000000_add_qrcode_used_by_index".into(),
            "20251029000000_add_stripe_webhook_event".into(),
        ],
        deploy: Some(DeployRequest::default()),
    });
    assert_eq!(
        a.update(key(KeyCode::Char('f'))),
        vec![Effect::Run {
            origin: Origin::Rollback,
            job: job.clone()
        }]
    );
    // While it runs, other actions wait.
    assert!(a.update(key(KeyCode::Char('b'))).is_empty());
    assert!(a.flash.as_deref().unwrap().contains("is running"));
    // The workflow refuses DANGEROUS findings nobody acknowledged: the console asks for the
    // reason and sends it back; it never acknowledges on its own.
    let finding = "migrations/20261201_rollback/migration.sql:3:1 ban-drop-column";
    done(
        &mut a,
        Origin::Rollback,
        job.clone(),
        Err(
            Error::guarded(Guard::Lint, "1 DANGEROUS finding not acknowledged", "").with(
                Remedy::Acknowledge {
                    findings: vec![finding.into()],
                    details: vec![
                        "rollback line 3 `ALTER TABLE \"QRCode\" DROP COLUMN \"used\"`: \
                        Dropping a column may break existing clients. (ban-drop-column)"
                            .into(),
                    ],
                },
            ),
        ),
    );
    a.update(key(KeyCode::Char('a')));
    typed(&mut a, "INC-9: the column was never read");
    let effects = a.update(key(KeyCode::Enter));
    let acknowledged = job.clone().acknowledged(vec![Allow::finding(
        finding,
        "INC-9: the column was never read",
    )]);
    assert_eq!(
        effects,
        vec![Effect::Run {
            origin: Origin::Rollback,
            job: acknowledged.clone()
        }]
    );
    // Then it asks, showing the down.sql and what it cannot bring back.
    done(
        &mut a,
        Origin::Rollback,
        acknowledged.clone(),
        Err(asks(
            "Forward rollback of 20251105000000_add_qrcode_used_by_index, 20251029000000_add_stripe_webhook_event on app",
            &[
                "  | DROP INDEX \"QrCode_usedById_idx\";",
                "It cannot bring back (a restore of a backup can):",
                "  - the rows written to table \"StripeWebhookEvent\" since: this drops it",
            ],
            Some("app"),
            &["20251105000000_add_qrcode_used_by_index"],
        )),
    );
    insta::assert_snapshot!("rollback_confirm", render(&a, 110, 32));
    typed(&mut a, "app");
    a.update(key(KeyCode::Enter));
    a.update(Msg::Started {
        origin: Origin::Rollback,
    });
    done(
        &mut a,
        Origin::Rollback,
        acknowledged,
        Ok("20261201_rollback applied".into()),
    );
    assert!(a.rollback.marked.is_empty());
    assert!(a.rollback.emergency[5].1.is_some(), "executed is ticked");
    assert!(
        a.journal
            .iter()
            .any(|e| matches!(&e.event, Event::StepTicked { step, .. } if step == "emergency_6")),
        "and journaled, so a resume keeps it"
    );
    // No verified backup: restore says so.
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
fn a_restore_refused_for_the_sessions_in_its_way_offers_to_terminate_them() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('4')));
    let job = Job::Restore(crate::release::RestoreRequest {
        backup: "app_staging_20261124_010000.dump".into(),
        jobs: 1,
        ..Default::default()
    });
    done(
        &mut a,
        Origin::Rollback,
        job.clone(),
        Err(Error::guarded(
            Guard::Sessions,
            "2 other session(s) are using app: 11 (web), 12 (worker)",
            "stop the application first",
        )
        .with(Remedy::TerminateSessions)),
    );
    assert!(a.rollback.log.iter().any(|l| l.contains("FAILED")));
    a.update(key(KeyCode::Char('t')));
    assert_eq!(
        a.update(key(KeyCode::Char('y'))),
        vec![Effect::Run {
            origin: Origin::Rollback,
            job: job.terminating_sessions()
        }]
    );
}

#[test]
fn a_refusal_without_a_console_answer_shows_no_choices() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('4')));
    done(
        &mut a,
        Origin::Rollback,
        Job::Resolve(crate::release::ResolveRequest {
            name: "m".into(),
            how: crate::migrate::Resolution::RolledBack,
            confirmation: None,
            lock_wait: None,
        }),
        Err(Error::new(ErrorKind::Refused, "m is not failed", "").with(Remedy::Status)),
    );
    assert!(a.modal.is_none());
    assert!(a.flash.as_deref().unwrap().contains("m is not failed"));
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

/// The screen with its colours: the text, then each row's styled runs (`col-col style`), so a
/// snapshot shows what is red, reversed or dimmed and not only what is written.
fn render_styled(app: &App, width: u16, height: u16) -> String {
    use ratatui::style::{Color, Modifier, Style};
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|f| view::draw(app, Theme { color: true }, f))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    let mut styles = String::new();
    let describe = |s: Style| {
        let mut parts = Vec::new();
        if let Some(c) = s.fg.filter(|c| *c != Color::Reset) {
            parts.push(format!("{c:?}"));
        }
        if let Some(c) = s.bg.filter(|c| *c != Color::Reset) {
            parts.push(format!("on {c:?}"));
        }
        for (m, name) in [
            (Modifier::BOLD, "bold"),
            (Modifier::REVERSED, "reversed"),
            (Modifier::DIM, "dim"),
        ] {
            if s.add_modifier.contains(m) {
                parts.push(name.to_owned());
            }
        }
        parts.join(" ")
    };
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        text.push_str(line.trim_end());
        text.push('\n');
        let mut runs = Vec::new();
        let mut x = 0;
        while x < buffer.area.width {
            let s = describe(buffer[(x, y)].style());
            let start = x;
            while x < buffer.area.width && describe(buffer[(x, y)].style()) == s {
                x += 1;
            }
            if !s.is_empty() {
                runs.push(format!("{start}-{} {s}", x - 1));
            }
        }
        if !runs.is_empty() {
            styles.push_str(&format!("{y:>2}: {}\n", runs.join(", ")));
        }
    }
    format!("{text}--- styles (row: columns style)\n{styles}")
}

fn stale(a: &mut App, age: Option<f64>) {
    a.update(Msg::Monitor(Box::new(Update::Stale {
        last_at: age.map(|_| t(0)),
        age_seconds: age,
        cause: "connection refused".into(),
        attempt: 3,
        retry_in_ms: 2000,
    })));
}

#[test]
fn snapshots_with_colour_protected_alert_stale_unreachable_at_80x24_and_120x40() {
    for (w, h) in [(80, 24), (120, 40)] {
        // A protected environment: its name reversed in red on every screen.
        let a = app(true);
        insta::assert_snapshot!(format!("colour_protected_{w}x{h}"), render_styled(&a, w, h));

        // An alert: connections past the threshold, a DDL with sessions queued behind it.
        let mut a = app(true);
        a.update(key(KeyCode::Char('2')));
        a.update(Msg::Monitor(Box::new(Update::Fresh {
            snapshot: Box::new(busy_snapshot(90)),
        })));
        insta::assert_snapshot!(format!("colour_alert_{w}x{h}"), render_styled(&a, w, h));

        // Stale: the last sample kept, dimmed, with its age; the alerts from it marked stale.
        stale(&mut a, Some(12.0));
        let screen = render_styled(&a, w, h);
        assert!(
            screen.starts_with(" server unreachable for 12s "),
            "{screen}"
        );
        assert!(screen.contains("(STALE 12s) connections"), "{screen}");
        insta::assert_snapshot!(format!("colour_stale_{w}x{h}"), screen);

        // Unreachable from the start: no sample at all, the cause in the pane.
        let mut a = app(false);
        a.update(key(KeyCode::Char('2')));
        stale(&mut a, None);
        let screen = render_styled(&a, w, h);
        assert!(screen.starts_with(" server unreachable "), "{screen}");
        insta::assert_snapshot!(format!("colour_unreachable_{w}x{h}"), screen);
    }
}

fn long_query(pid: i32, user: &str, state: &str, secs: f64, query: &str) -> LongQuery {
    LongQuery {
        pid,
        backend_start: t(-1000),
        user: user.into(),
        application: "web".into(),
        client: "10.0.0.9".into(),
        wait_event: (state == "idle in transaction").then(|| "Client:ClientRead".into()),
        state: state.into(),
        query_seconds: secs,
        transaction_seconds: secs,
        query_line: query.into(),
        query: query.into(),
    }
}

fn monitor_with(a: &mut App, rows: Vec<LongQuery>) {
    let mut s = busy_snapshot(10);
    s.long_running = sample(rows);
    a.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(s),
    })));
}

#[test]
fn the_filter_narrows_the_focused_list_and_esc_clears_it() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    monitor_with(
        &mut a,
        vec![
            long_query(
                101,
                "reporting",
                "active",
                300.0,
                "SELECT count(*) FROM orders",
            ),
            long_query(
                102,
                "app",
                "idle in transaction",
                90.0,
                "UPDATE users SET x = 1",
            ),
            long_query(103, "reporting", "active", 20.0, "SELECT * FROM invoices"),
        ],
    );
    a.update(key(KeyCode::Char('/')));
    assert!(a.filtering);
    typed(&mut a, "invoice");
    a.update(key(KeyCode::Enter));
    assert!(!a.filtering);
    let pids: Vec<i32> = super::screens::monitor::rows(&a)
        .iter()
        .map(|q| q.pid)
        .collect();
    assert_eq!(pids, vec![103]);
    let screen = render(&a, 120, 40);
    assert!(screen.contains("Long-running (1 of 3)"), "{screen}");
    assert!(screen.contains("/invoice"), "{screen}");
    // Keys act on the filtered list: K aims at 103, the only one shown.
    let effects = a.update(key(KeyCode::Char('K')));
    assert!(
        matches!(&effects[..], [Effect::Run { job: Job::Signal(r), .. }] if r.pid == 103),
        "{effects:?}"
    );
    a.update(key(KeyCode::Esc));
    assert_eq!(super::screens::monitor::rows(&a).len(), 3);
    // Sorting by user, then hiding idle transactions.
    a.update(key(KeyCode::Char('s')));
    let users: Vec<&str> = super::screens::monitor::rows(&a)
        .iter()
        .map(|q| q.user.as_str())
        .collect();
    assert_eq!(users, vec!["app", "reporting", "reporting"]);
    a.update(key(KeyCode::Char('i')));
    assert!(
        super::screens::monitor::rows(&a)
            .iter()
            .all(|q| q.state == "active")
    );
}

#[test]
fn cancel_on_an_idle_transaction_says_it_cannot_help_and_offers_terminate() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    monitor_with(
        &mut a,
        vec![long_query(
            102,
            "app",
            "idle in transaction",
            90.0,
            "UPDATE users SET x = 1",
        )],
    );
    // The state column reads as a person says it, not as the wait event.
    let screen = render(&a, 120, 40);
    assert!(screen.contains("idle in transaction"), "{screen}");
    assert!(!screen.contains("Client:ClientRead"), "{screen}");
    assert!(a.update(key(KeyCode::Char('c'))).is_empty());
    let modal = a.modal.as_ref().unwrap();
    assert!(modal.title.contains("Cancel cannot help"), "{modal:?}");
    // A wrong key says so; K runs the terminate, which asks with what the backend does now.
    a.update(key(KeyCode::Char('x')));
    assert!(a.modal.as_ref().unwrap().error.is_some());
    let effects = a.update(key(KeyCode::Char('K')));
    assert!(
        matches!(&effects[..], [Effect::Run { origin: Origin::Monitor, job: Job::Signal(r) }]
            if r.pid == 102 && r.signal == Signal::Terminate),
        "{effects:?}"
    );
}

#[test]
fn every_list_scrolls_and_the_selection_stays_on_screen_at_80x24() {
    // The emergency checklist: eight j and the selected item is still drawn.
    let mut a = app(false);
    a.update(key(KeyCode::Char('4')));
    a.update(key(KeyCode::Char('l')));
    for _ in 0..8 {
        a.update(key(KeyCode::Char('j')));
    }
    assert_eq!(a.rollback.emergency_selected, 8);
    let screen = render(&a, 80, 24);
    assert!(screen.contains("Critical user flows verified"), "{screen}");
    // G and g, PgDn and PgUp on the checklist.
    a.update(key(KeyCode::Char('1')));
    a.update(key(KeyCode::Char('G')));
    assert_eq!(a.steps.selected, a.checklist.items.len() - 1);
    assert!(render(&a, 80, 24).contains("Release report written"));
    a.update(key(KeyCode::PageUp));
    assert_eq!(a.steps.selected, a.checklist.items.len() - 11);
    a.update(key(KeyCode::Home));
    assert_eq!(a.steps.selected, 0);
    // The journal follows the newest entry until moved, then keeps its place.
    for i in 0..60 {
        a.record(Event::Confirmed {
            what: format!("entry {i}"),
        });
    }
    a.update(key(KeyCode::Char('5')));
    assert!(render(&a, 80, 24).contains("entry 59"));
    a.update(key(KeyCode::PageUp));
    a.update(key(KeyCode::PageUp));
    let screen = render(&a, 80, 24);
    assert!(
        screen.contains("entry 39") && !screen.contains("entry 59"),
        "{screen}"
    );
    a.update(key(KeyCode::End));
    assert_eq!(a.journal_selected, None);
    // The mouse wheel moves like j/k.
    a.update(key(KeyCode::Char('1')));
    a.update(Msg::Mouse(ratatui::crossterm::event::MouseEvent {
        kind: ratatui::crossterm::event::MouseEventKind::ScrollDown,
        column: 10,
        row: 10,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(a.steps.selected, 1);
    // A click on a tab opens its screen.
    a.update(Msg::Mouse(ratatui::crossterm::event::MouseEvent {
        kind: ratatui::crossterm::event::MouseEventKind::Down(
            ratatui::crossterm::event::MouseButton::Left,
        ),
        column: 16,
        row: 2,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(a.screen, Screen::Monitor);
}

#[test]
fn the_detail_view_shows_the_full_query_every_lock_and_the_blocking_chain() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('2')));
    a.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(busy_snapshot(10)),
    })));
    // The lock queue focused, its second row (the DDL waiting behind 4242) opened.
    a.update(key(KeyCode::Char('l')));
    a.update(key(KeyCode::Char('j')));
    let effects = a.update(key(KeyCode::Enter));
    assert_eq!(
        effects,
        vec![Effect::Run {
            origin: Origin::Inspect,
            job: Job::Inspect { pid: 5001 }
        }]
    );
    assert!(render(&a, 120, 40).contains("reading backend 5001"));
    a.update(Msg::Inspected(Ok(Some(Box::new(
        crate::monitor::Backend {
            pid: 5001,
            backend_start: Some(t(-30)),
            user: "deploy".into(),
            application: "pgdeck".into(),
            state: "active".into(),
            wait_event: Some("Lock:relation".into()),
            query: "ALTER TABLE orders\n  ADD COLUMN note text".into(),
            query_seconds: Some(4.0),
            transaction_seconds: Some(4.0),
            locks: vec![
                crate::monitor::BackendLock {
                    locktype: "relation".into(),
                    mode: "AccessExclusiveLock".into(),
                    granted: false,
                    relation: Some("orders".into()),
                },
                crate::monitor::BackendLock {
                    locktype: "virtualxid".into(),
                    mode: "ExclusiveLock".into(),
                    granted: true,
                    relation: None,
                },
            ],
            blocked_by: vec![4242],
            blocking: vec![5002],
        },
    )))));
    assert!(a.monitor.detail_at.is_some());
    // The time it was read, fixed for the snapshot.
    a.monitor.detail_at = Some(t(0));
    let screen = render(&a, 120, 40);
    for want in [
        "Backend 5001 · as of",
        "[pgdeck]",
        "ADD COLUMN note text",
        "Locks (2)",
        "WAITING  AccessExclusiveLock",
        "waits for pid 4242 reporting (active 312s)",
        "waited for by: 5002",
    ] {
        assert!(screen.contains(want), "{want:?} not in:\n{screen}");
    }
    insta::assert_snapshot!("monitor_detail", screen);
    // Esc goes back to the lists.
    a.update(key(KeyCode::Esc));
    assert!(a.monitor.detail.is_none());
    assert!(render(&a, 120, 40).contains("Lock queue"));
}

#[test]
fn the_plan_step_ends_only_once_the_plan_was_shown_and_closed() {
    let mut a = app(false);
    let plan = a.checklist.index_of("plan").unwrap();
    for _ in 0..plan {
        let i = a.steps.selected;
        let job = Job::of(a.checklist.items[i].operation.unwrap());
        a.update(key(KeyCode::Enter));
        done(&mut a, Origin::Step(i), job, Ok("done".into()));
    }
    assert_eq!(a.steps.selected, plan);
    a.update(key(KeyCode::Enter));
    a.update(Msg::Plan(Box::new(super::jobs::PlanText {
        text: "Plan for app\n\n[1/1] m  verdict: NEEDS ACKNOWLEDGEMENT\nline 3\n".into(),
        verdict: crate::lint::plan::Verdict::NeedsAcknowledgement,
    })));
    done(
        &mut a,
        Origin::Step(plan),
        Job::Plan,
        Ok("1 pending".into()),
    );
    assert!(matches!(a.checklist.state(plan), State::Running { .. }));
    let screen = render(&a, 80, 24);
    assert!(screen.contains("Enter: reviewed"), "{screen}");
    a.update(key(KeyCode::Char('j')));
    assert_eq!(a.plan_view.as_ref().unwrap().scroll, 1);
    // Esc closes it unread: the review is not done.
    a.update(key(KeyCode::Esc));
    assert!(a.plan_view.is_none());
    assert_eq!(a.checklist.state(plan), &State::Ready);
    // Shown again and closed with Enter: reviewed.
    a.update(key(KeyCode::Enter));
    a.update(Msg::Plan(Box::new(super::jobs::PlanText {
        text: "Plan for app\n".into(),
        verdict: crate::lint::plan::Verdict::Ok,
    })));
    done(
        &mut a,
        Origin::Step(plan),
        Job::Plan,
        Ok("1 pending".into()),
    );
    a.update(key(KeyCode::Enter));
    assert!(a.plan_view.is_none());
    assert!(matches!(a.checklist.state(plan), State::Done { .. }));
}

#[tokio::test]
async fn the_log_pane_follows_a_file_counts_its_errors_per_minute_and_raises_the_alert() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("application.log");
    std::fs::write(&path, "").unwrap();
    let mut environment = env(false);
    environment.logs = crate::monitor::logs::LogSettings {
        app_log: Some(crate::monitor::logs::AppLog::File(path.clone())),
        alert_per_minute: 3,
        poll: std::time::Duration::from_millis(50),
        ..Default::default()
    };
    let mut a = App::new(
        environment.clone(),
        Checklist::new(checklist::default_items(), Facts::default()),
        None,
    );
    a.update(key(KeyCode::Char('6')));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(crate::monitor::logs::follow(
        crate::monitor::logs::LogSource::App(crate::monitor::logs::AppLog::File(path.clone())),
        environment.logs.clone(),
        tx,
        cancel.clone(),
    ));
    let append = |text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    // Folds what the follower sends until the screen shows `want`.
    async fn until(
        a: &mut App,
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<crate::monitor::logs::LogUpdate>,
        want: &str,
    ) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let screen = render(a, 120, 40);
            if screen.contains(want) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{want:?} never appeared:\n{screen}"
            );
            if let Ok(Some(u)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), rx.recv()).await
            {
                a.update(Msg::Log {
                    which: super::screens::logs::Which::App,
                    update: Box::new(u),
                });
            }
        }
    }
    until(&mut a, &mut rx, "application.log").await;
    append("12:00:01 INFO GET /health 200\n12:00:02 ERROR payment failed: card declined\n");
    append("12:00:03 ERROR payment failed: timeout\n");
    let screen = until(&mut a, &mut rx, "errors last 60s: 2").await;
    assert!(
        screen.contains("ERROR    12:00:02 ERROR payment failed: card declined"),
        "{screen}"
    );
    assert!(screen.contains("GET /health 200"), "{screen}");
    assert!(
        !screen.contains("ALERT"),
        "two errors a minute are under the threshold:\n{screen}"
    );
    // Past the threshold, the header raises the alert.
    append("12:00:04 ERROR db timeout\n12:00:05 Traceback (most recent call last):\n");
    let screen = until(&mut a, &mut rx, "errors last 60s: 4").await;
    assert!(
        screen
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("ALERT") && l.contains("application log")),
        "{screen}"
    );
    cancel.cancel();
}

#[tokio::test]
async fn steps_that_no_longer_hold_open_again_a_new_migration_the_review_a_restore_the_deploy() {
    let mut a = app(false);
    // Two pending when the plan was read; the review and everything up to the deploy done.
    refreshed_with(&mut a, Facts::default(), Ok(Some(migrations_view(1).await)));
    let plan = a.checklist.index_of("plan").unwrap();
    let deploy = a.checklist.index_of("deploy").unwrap();
    for i in 0..=deploy + 1 {
        a.checklist.restore(
            &a.checklist.items[i].id.clone(),
            State::Done {
                summary: "done".into(),
            },
        );
    }
    a.reviewed_pending = a.pending_names().map(|p| p[..1].to_vec());
    // A refresh finds a pending migration the plan did not show: the review opens again.
    refreshed_with(&mut a, Facts::default(), Ok(Some(migrations_view(1).await)));
    assert_eq!(a.checklist.state(plan), &State::Ready);
    assert!(
        a.flash
            .as_deref()
            .is_some_and(|f| f.contains("not in the plan you read (new or edited)")),
        "{:?}",
        a.flash
    );
    assert!(!a.checklist.state(deploy).is_complete());

    // A migration edited since it was read is another one to review too.
    a.checklist.restore(
        "plan",
        State::Done {
            summary: "done".into(),
        },
    );
    a.reviewed_pending = a.pending_names().map(|mut p| {
        p[0] = format!("{}@an-older-checksum", p[0].split('@').next().unwrap());
        p
    });
    refreshed_with(&mut a, Facts::default(), Ok(Some(migrations_view(1).await)));
    assert_eq!(a.checklist.state(plan), &State::Ready);

    // A restore that makes migrations pending again opens the deploy and what came after.
    for i in 0..=deploy + 1 {
        a.checklist.restore(
            &a.checklist.items[i].id.clone(),
            State::Done {
                summary: "done".into(),
            },
        );
    }
    a.update(Msg::Restored {
        pending_again: vec!["20251105000000_add_qrcode_used_by_index".into()],
        left_in_place: vec!["public.StripeWebhookEvent".into()],
    });
    a.update(key(KeyCode::Char('4')));
    let screen = render(&a, 120, 40);
    assert!(
        screen.contains("LEFT IN PLACE by the restore")
            && screen.contains("public.StripeWebhookEvent"),
        "{screen}"
    );
    assert_eq!(a.checklist.state(deploy), &State::Ready);
    assert!(!a.checklist.state(deploy + 1).is_complete());
    assert!(a.checklist.state(plan).is_complete());
    assert!(a.alerts().iter().any(|x| x.contains("pending again")));
}

#[test]
fn the_checklist_filter_shows_and_moves_among_the_matching_steps() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('/')));
    typed(&mut a, "backup");
    a.update(key(KeyCode::Enter));
    let screen = render(&a, 80, 24);
    assert!(
        screen.contains("Backup created") && screen.contains("Backup retained"),
        "{screen}"
    );
    assert!(!screen.contains("Deploy migrations"), "{screen}");
    assert_eq!(a.checklist.items[a.steps.selected].title, "Backup created");
    a.update(key(KeyCode::Char('G')));
    assert_eq!(a.checklist.items[a.steps.selected].title, "Backup retained");
    a.update(key(KeyCode::Esc));
    assert!(render(&a, 80, 24).contains("Deploy migrations"));
}

#[test]
fn a_read_only_console_ticks_skips_and_signals_nothing() {
    let mut a = app(false);
    a.read_only = Some("ana (pid 7)".into());
    // A manual item: no tick modal, a word instead.
    a.steps.selected = a.checklist.index_of("staging").unwrap();
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert!(a.modal.is_none());
    assert!(
        a.flash
            .as_deref()
            .is_some_and(|f| f.contains("drives this session"))
    );
    for k in ['s', 'a', 'x', 'K'] {
        assert!(a.update(key(KeyCode::Char(k))).is_empty(), "{k}");
        assert!(a.modal.is_none(), "{k}");
    }
    // Looking is fine: the Monitor's detail view, the plan.
    a.update(key(KeyCode::Char('4')));
    assert!(a.update(key(KeyCode::Char(' '))).is_empty());
    assert!(a.rollback.emergency.iter().all(|(_, n)| n.is_none()));
}

/// Three environments as the matrix reads them: staging with one migration pending,
/// production unreachable, qa whose URL's variable is not set.
fn three_environments() -> crate::release::Matrix {
    use crate::migrate::status::MigrationStatus;
    use crate::release::{Column, Matrix, Reading};
    let applied = || crate::migrate::MigrationState::Applied {
        applied_at: t(0),
        duration_ms: 5,
    };
    let status = |name: &str, state| MigrationStatus {
        name: name.into(),
        state,
        has_down_sql: true,
    };
    Matrix::build(vec![
        Column {
            name: "staging".into(),
            protected: false,
            database: Some("postgresql://deploy@stage-db:5432/app".into()),
            reading: Reading::Read {
                server_version: "17.2".into(),
                report: crate::migrate::StatusReport {
                    ledger_exists: true,
                    migrations: vec![
                        status("20251001000000_init", applied()),
                        status("20251029000000_add_stripe_webhook_event", applied()),
                        status(
                            "20251105000000_add_qrcode_used_by_index",
                            crate::migrate::MigrationState::Pending,
                        ),
                    ],
                },
            },
        },
        Column {
            name: "production".into(),
            protected: true,
            database: Some("postgresql://deploy:***@db.internal:5432/app".into()),
            reading: Reading::Unreachable(Error::runtime(
                "cannot connect to db.internal:5432: Connection refused (os error 111)",
                "is PostgreSQL running on that host and port and accepting connections?",
            )),
        },
        Column {
            name: "qa".into(),
            protected: false,
            database: None,
            reading: Reading::Unresolved(Error::input(
                "environment 'qa' reads its URL from $QA_DATABASE_URL, which is not set",
                "export QA_DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
            )),
        },
    ])
}

#[test]
fn snapshot_migrations_every_environment_read_in_the_background() {
    let mut a = app(false);
    a.update(key(KeyCode::Char('3')));
    let read = vec![Effect::Run {
        origin: Origin::Matrix,
        job: Job::Matrix,
    }];
    assert_eq!(a.update(key(KeyCode::Char('e'))), read);
    assert!(a.migrations.environments.reading);
    let loading = render(&a, 80, 24);
    assert!(
        loading.contains("reading the status of every environment…"),
        "{loading}"
    );
    // Closed and opened again while the read runs: no second read.
    assert!(a.update(key(KeyCode::Char('e'))).is_empty());
    assert!(a.update(key(KeyCode::Char('e'))).is_empty());

    a.update(Msg::Matrix(Ok(Box::new(three_environments()))));
    a.migrations.environments.last.as_mut().unwrap().1 = t(0);
    assert!(!a.migrations.environments.reading);
    a.update(key(KeyCode::Char('j')));
    insta::assert_snapshot!("migrations_environments", render(&a, 80, 24));

    // While on show it is read again with the refresh, the last read shown meanwhile.
    let mut effects = Vec::new();
    for _ in 0..10 {
        effects = a.update(Msg::Tick);
    }
    assert_eq!(effects[0], Effect::Refresh);
    assert_eq!(effects[1..], read);
    assert!(render(&a, 80, 24).contains("reading again…"));
    // A read that fails keeps the last matrix, stale, and says why.
    a.update(Msg::Matrix(Err(
        "the migrations folder is gone\nhint: check it".into(),
    )));
    let stale = render(&a, 80, 24);
    assert!(
        stale.contains("stale,")
            && stale.contains("the last read failed: the migrations folder is gone")
            && stale.contains("20251001000000_init"),
        "{stale}"
    );
    // e again: this environment's migrations, and the footer names the key.
    a.update(key(KeyCode::Char('e')));
    assert!(!a.migrations.environments_shown);
    let list = render(&a, 80, 24);
    assert!(list.contains(" e  all envs"), "{list}");
}

#[test]
fn a_read_only_console_reads_the_matrix_and_a_stopped_read_says_so() {
    let mut a = app(false);
    a.read_only = Some("ana (pid 42)".into());
    a.update(key(KeyCode::Char('3')));
    let effects = a.update(key(KeyCode::Char('e')));
    assert_eq!(
        effects,
        [Effect::Run {
            origin: Origin::Matrix,
            job: Job::Matrix
        }]
    );
    a.update(Msg::Done {
        origin: Origin::Matrix,
        job: Box::new(Job::Matrix),
        result: Err(Error::cancelled(
            "cancelled by the operator",
            "run it again when ready",
        )),
    });
    assert!(!a.migrations.environments.reading);
    let screen = render(&a, 80, 24);
    assert!(
        screen.contains("error: cancelled by the operator"),
        "{screen}"
    );
}

fn pitr_state(refusal: Option<&str>, point: bool) -> crate::release::PitrState {
    use crate::backup::pgbackrest::{Archiver, BaseBackup};
    let finished = Utc::now() - chrono::Duration::hours(2);
    crate::release::PitrState {
        stanza: "main".into(),
        backup: Some(BaseBackup {
            label: "20261202-021030F".into(),
            kind: "full".into(),
            started: finished - chrono::Duration::minutes(3),
            finished,
            error: false,
            size: 1 << 30,
            repository_size: 300 << 20,
            wal_start: "000000010000000000000002".into(),
            wal_stop: "000000010000000000000002".into(),
        }),
        archiver: Archiver {
            archive_mode: "on".into(),
            archived_count: 40,
            last_archived_wal: Some("000000010000000000000028".into()),
            last_archived_at: Some(t(70)),
            failed_count: 0,
            last_failed_wal: None,
            last_failed_at: None,
            now: t(100),
        },
        refusal: refusal.map(str::to_owned),
        restore_point: point.then(|| crate::release::NamedPoint {
            name: "pgdeck_production_20261124T010000123Z".into(),
            lsn: "0/28000090".into(),
            wal: "000000010000000000000028".into(),
            at: t(90),
            base_backup: "20261202-021030F".into(),
        }),
    }
}

#[test]
fn pitr_mode_shows_the_base_backup_archiving_and_restore_point_and_recovers_from_the_point() {
    let mut a = app(true);
    a.rollback.pitr = Some(Ok(Box::new(pitr_state(None, true))));
    a.update(key(KeyCode::Char('4')));
    let screen = render(&a, 160, 30);
    let header = screen.lines().nth(1).unwrap();
    assert!(
        header.contains("base backup 2 h old · WAL archived 30 s ago · restore point pgdeck_production_20261124T010000123Z"),
        "{header}"
    );
    assert!(
        screen.contains("stanza main: newest base backup 20261202-021030F (full, 2 h old)"),
        "{screen}"
    );
    assert!(
        screen.contains(
            "WAL archiving: last segment 000000010000000000000028 archived 30 s ago, 0 failure(s)"
        ),
        "{screen}"
    );
    assert!(
        screen.contains("restore point pgdeck_production_20261124T010000123Z at 0/28000090"),
        "{screen}"
    );
    assert!(
        screen.contains("s side restore · p in-place procedure"),
        "{screen}"
    );

    // p prints the procedure to the point; s restores it beside production.
    let effects = a.update(key(KeyCode::Char('p')));
    assert!(
        matches!(&effects[..], [Effect::Run { origin: Origin::Rollback, job: Job::InPlaceProcedure { point } }]
            if point == "pgdeck_production_20261124T010000123Z"),
        "{effects:?}"
    );
    a.update(Msg::Done {
        origin: Origin::Rollback,
        job: Box::new(Job::InPlaceProcedure {
            point: "pgdeck_production_20261124T010000123Z".into(),
        }),
        result: Ok("recovering in place loses every write\n1. stop the server".into()),
    });
    let effects = a.update(key(KeyCode::Char('s')));
    let [
        Effect::Run {
            job: Job::SideRestore(req),
            ..
        },
    ] = &effects[..]
    else {
        panic!("{effects:?}");
    };
    assert_eq!(req.point, "pgdeck_production_20261124T010000123Z");
    assert!(
        req.dir
            .ends_with("side-pgdeck_production_20261124T010000123Z"),
        "{req:?}"
    );

    // A refusal is shown as one, in the header too; without a point there is nothing to recover.
    let mut a = app(true);
    a.rollback.pitr = Some(Ok(Box::new(pitr_state(
        Some("archive_command failed 3 time(s)"),
        false,
    ))));
    a.update(key(KeyCode::Char('4')));
    let screen = render(&a, 160, 30);
    assert!(
        screen.contains("a deploy would be refused: archive_command failed 3 time(s)"),
        "{screen}"
    );
    assert!(
        screen.contains("no restore point in the journal yet"),
        "{screen}"
    );
    assert!(a.update(key(KeyCode::Char('s'))).is_empty());
    assert_eq!(
        a.flash.as_deref(),
        Some("no restore point in the journal: a deploy creates one")
    );
    // An environment of dump files has no point to recover to.
    let mut a = app(true);
    a.update(key(KeyCode::Char('4')));
    assert!(a.update(key(KeyCode::Char('p'))).is_empty());
    assert!(a.flash.as_deref().unwrap().contains("no pgBackRest stanza"));
}
