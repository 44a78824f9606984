//! Running release workflows in a test as a front end would: an environment on a test
//! database, a journal kept in memory, every event collected, and a cancellation to pull.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgdeck::backup::{self, BackupEntry, BackupFormat, CreateOptions};
use pgdeck::error::Result;
use pgdeck::journal::{Entry, Event, Recorder};
use pgdeck::release::{self, Context, Environment};
use tokio_util::sync::CancellationToken;

use super::{Migrations, TestDb, wait_for};

/// The journal of a test: every entry, in order.
#[derive(Default)]
pub struct MemoryJournal(Mutex<Vec<Entry>>);

impl MemoryJournal {
    pub fn events(&self) -> Vec<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event.clone())
            .collect()
    }
}

impl Recorder for MemoryJournal {
    fn record(&self, event: Event) -> Result<Entry> {
        let entry = Entry {
            at: chrono::Utc::now(),
            operator: "test".into(),
            event,
        };
        self.0.lock().unwrap().push(entry.clone());
        Ok(entry)
    }
}

/// An environment named `name` on `db` with the migrations of `m` and backups in `backups`.
pub fn environment(name: &str, db: &TestDb, m: &Migrations, backups: &Path) -> Environment {
    let mut env = Environment::new(name, db.target.clone());
    env.migrations_dir = m.path().to_owned();
    env.backup.dir = backups.to_owned();
    env.backup.restore_checks = Vec::new();
    env
}

/// What a workflow sent and journaled.
pub struct Ran<T> {
    pub result: Result<T>,
    pub events: Vec<release::Event>,
    pub journal: Vec<Event>,
}

impl<T: std::fmt::Debug> Ran<T> {
    /// The error, which the test expects.
    pub fn refusal(&self) -> &pgdeck::error::Error {
        match &self.result {
            Err(e) => e,
            Ok(v) => panic!("expected a refusal, got {v:?}"),
        }
    }

    /// Every event as text, for `contains` checks.
    pub fn lines(&self) -> String {
        self.events
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `work` with a fresh context on `env`, collecting its events and journal.
pub async fn workflow<T, F, Fut>(env: &Environment, cancel: &CancellationToken, work: F) -> Ran<T>
where
    F: FnOnce(Context) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let journal = Arc::new(MemoryJournal::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Context::new(env.clone(), journal.clone(), tx, cancel.clone());
    let result = work(ctx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    Ran {
        result,
        events,
        journal: journal.events(),
    }
}

/// A backup of `env`'s database taken in environment `taken_in`, verified when asked.
pub async fn take_backup(env: &Environment, taken_in: &str, verify: bool) -> BackupEntry {
    take_backup_as(env, taken_in, verify, BackupFormat::Custom).await
}

/// [`take_backup`] in `format` (a directory-format one is dumped by two workers).
pub async fn take_backup_as(
    env: &Environment,
    taken_in: &str,
    verify: bool,
    format: BackupFormat,
) -> BackupEntry {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = CreateOptions {
        dir: env.backup.dir.clone(),
        environment: taken_in.to_owned(),
        count_rows: true,
        jobs: if format == BackupFormat::Directory {
            2
        } else {
            1
        },
        format,
        cancel: Default::default(),
    };
    let entry = backup::create(&env.target, &opts, &tx)
        .await
        .unwrap_or_else(|e| panic!("backup: {} ({})", e.cause, e.hint));
    if !verify {
        return entry;
    }
    backup::verify(&env.target, &env.backup.dir.join(&entry.file), None, &tx)
        .await
        .unwrap_or_else(|e| panic!("verify: {} ({})", e.cause, e.hint))
}

/// Rewrites a backup's catalog entry (to stand for one taken elsewhere, or by an older pgdeck).
pub fn edit_catalog(dir: &Path, entry: &BackupEntry, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = BackupEntry::catalog_path(&dir.join(&entry.file));
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// The number of pgdeck's own sessions on the database (the test's are named pgdeck-test).
pub async fn pgdeck_sessions(db: &TestDb) -> i64 {
    db.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name LIKE 'pgdeck%' AND application_name <> 'pgdeck-test'",
    )
    .await
}

/// Waits, at most `within`, until none of pgdeck's sessions is left on the database.
pub async fn until_pgdeck_is_gone(db: &TestDb, within: Duration) {
    wait_for("pgdeck's sessions to end", within, || async {
        pgdeck_sessions(db).await == 0
    })
    .await;
}

/// A session holding ACCESS EXCLUSIVE on `table` until it is dropped.
pub async fn hold_lock(db: &TestDb, table: &str) -> tokio_postgres::Client {
    let holder = db.client().await;
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            pgdeck::db::quote_ident(table)
        ))
        .await
        .unwrap();
    holder
}

/// Waits until one of pgdeck's statements waits for a lock.
pub async fn until_pgdeck_waits_for_a_lock(db: &TestDb) {
    let probe = db.client().await;
    wait_for(
        "pgdeck's statement to wait for its lock",
        Duration::from_secs(30),
        || async {
            probe
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'pgdeck' AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0) == 1)
                .unwrap_or(false)
        },
    )
    .await;
}
