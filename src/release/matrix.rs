//! The status of every configured environment side by side: each migration's state in each
//! environment, read from all of them at once. Read-only. An environment that cannot be read
//! (its settings did not resolve, its server is unreachable, its ledger unreadable) is a
//! column that says why; it never hides the others.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::Serialize;

use super::Environment;
use crate::db;
use crate::error::{Error, Result};
use crate::migrate::{self, MigrationState, MigrationsDir, StatusReport, Verdict};

/// How long a session may take past the target's connect_timeout to be ready (TLS,
/// authentication, the session's settings): a server that accepts the connection and then
/// says nothing is unreachable, not a hang.
const CONNECT_SLACK: Duration = Duration::from_secs(5);
/// How long reading the ledger may take once connected.
const READ_BOUND: Duration = Duration::from_secs(15);

/// An environment to read: resolved, or the error its settings gave.
#[derive(Debug, Clone)]
pub enum Candidate {
    Ready(Box<Environment>),
    Unresolved {
        name: String,
        protected: bool,
        error: Error,
    },
}

impl Candidate {
    pub fn name(&self) -> &str {
        match self {
            Candidate::Ready(env) => &env.name,
            Candidate::Unresolved { name, .. } => name,
        }
    }
}

/// A migration's state in one environment, in a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    Applied,
    Pending,
    /// A failed attempt was rolled back: pending again.
    RolledBack,
    Failed,
    /// Applied, and its file changed since.
    Edited,
    /// In the environment's database, not in its migrations folder.
    MissingLocally,
    /// Neither in this environment's folder nor in its database (another environment's
    /// folder has it).
    Absent,
}

impl Cell {
    pub fn of(state: &MigrationState) -> Cell {
        match state {
            MigrationState::Applied { .. } => Cell::Applied,
            MigrationState::Pending => Cell::Pending,
            MigrationState::RolledBack { .. } => Cell::RolledBack,
            MigrationState::Failed { .. } => Cell::Failed,
            MigrationState::Edited { .. } => Cell::Edited,
            MigrationState::MissingLocally { .. } => Cell::MissingLocally,
        }
    }

    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            Cell::Applied => "applied",
            Cell::Pending => "pending",
            Cell::RolledBack => "rolled back",
            Cell::Failed => "failed",
            Cell::Edited => "edited",
            Cell::MissingLocally => "missing locally",
            Cell::Absent => "absent",
        }
    }

    /// In a cell of the matrix: short, what needs someone in capitals.
    pub fn word(self) -> &'static str {
        match self {
            Cell::Applied => "applied",
            Cell::Pending => "pending",
            Cell::RolledBack => "rolled back",
            Cell::Failed => "FAILED",
            Cell::Edited => "EDITED",
            Cell::MissingLocally => "MISSING",
            Cell::Absent => "-",
        }
    }

    /// What its word means, when that needs saying.
    pub fn meaning(self) -> Option<&'static str> {
        match self {
            Cell::RolledBack => Some("a failed attempt was rolled back: pending again"),
            Cell::Failed => Some("started and never finished: resolve it before the next deploy"),
            Cell::Edited => Some("applied, and its migration.sql changed since"),
            Cell::MissingLocally => Some("in the database, not in the migrations folder"),
            Cell::Absent => Some("neither in this environment's folder nor in its database"),
            Cell::Applied | Cell::Pending => None,
        }
    }
}

/// What reading one environment gave.
#[derive(Debug, Clone)]
pub enum Reading {
    Read {
        server_version: String,
        report: StatusReport,
    },
    /// Its settings did not resolve (the URL's variable unset, a bad URL): nothing was tried.
    Unresolved(Error),
    /// No session could be opened.
    Unreachable(Error),
    /// Connected, but the ledger could not be read.
    Unreadable(Error),
}

/// One environment of the matrix.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub protected: bool,
    /// The database, its password redacted; None when its settings did not resolve.
    pub database: Option<String>,
    pub reading: Reading,
}

impl Column {
    /// Its status verdict, when it was read.
    pub fn verdict(&self) -> Option<Verdict> {
        match &self.reading {
            Reading::Read { report, .. } => Some(report.verdict()),
            _ => None,
        }
    }

    /// Why it was not read.
    pub fn error(&self) -> Option<&Error> {
        match &self.reading {
            Reading::Read { .. } => None,
            Reading::Unresolved(e) | Reading::Unreachable(e) | Reading::Unreadable(e) => Some(e),
        }
    }

    /// A session was opened.
    pub fn reachable(&self) -> bool {
        matches!(self.reading, Reading::Read { .. } | Reading::Unreadable(_))
    }

    /// What stopped it, in a word: "unresolved", "unreachable", "unreadable"; None once read.
    pub fn problem(&self) -> Option<&'static str> {
        match self.reading {
            Reading::Read { .. } => None,
            Reading::Unresolved(_) => Some("unresolved"),
            Reading::Unreachable(_) => Some("unreachable"),
            Reading::Unreadable(_) => Some("unreadable"),
        }
    }

    /// Its verdict and how many migrations are in each state ("migrations pending: 3
    /// applied, 1 pending"), or what stopped it and why ("UNREACHABLE: cannot connect ...").
    pub fn summary(&self) -> String {
        match &self.reading {
            Reading::Read { report, .. } => {
                let mut n: Vec<(Cell, usize)> = Vec::new();
                for m in &report.migrations {
                    let cell = Cell::of(&m.state);
                    match n.iter_mut().find(|(c, _)| *c == cell) {
                        Some((_, k)) => *k += 1,
                        None => n.push((cell, 1)),
                    }
                }
                n.sort_by_key(|(c, _)| *c as u8);
                let counts: Vec<String> = n
                    .iter()
                    .map(|(c, k)| format!("{k} {}", c.label()))
                    .collect();
                format!(
                    "{}: {}",
                    report.verdict().label(),
                    if counts.is_empty() {
                        "no migrations".to_owned()
                    } else {
                        counts.join(", ")
                    }
                )
            }
            Reading::Unresolved(e) | Reading::Unreachable(e) | Reading::Unreadable(e) => format!(
                "{}: {}",
                self.problem().unwrap_or_default().to_uppercase(),
                e.cause
            ),
        }
    }

    fn report(&self) -> Option<&StatusReport> {
        match &self.reading {
            Reading::Read { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// One migration across the environments.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    /// One per column, in the columns' order; None where the environment was not read.
    pub cells: Vec<Option<Cell>>,
}

/// The matrix in one word, from best to worst: what the command's exit code says. A known
/// failure or drift needs someone whatever else holds; an environment whose state is unknown
/// makes "up to date" or "only pending" a claim nobody checked, so it outranks pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    UpToDate,
    Pending,
    /// An environment could not be read, and none that was read failed or drifted.
    Incomplete,
    Drift,
    Failed,
}

impl Overall {
    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            Overall::UpToDate => "every environment is up to date",
            Overall::Pending => "migrations pending",
            Overall::Incomplete => "not every environment could be read",
            Overall::Drift => "drift: a database and its folder disagree",
            Overall::Failed => "a migration failed",
        }
    }
}

/// Migrations by environment.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub columns: Vec<Column>,
    /// Every migration any environment knows (in its folder or its database), in byte order of
    /// the names, as folders are ordered.
    pub rows: Vec<Row>,
}

impl Matrix {
    /// The rows from the columns' reports.
    pub fn build(columns: Vec<Column>) -> Matrix {
        let states: Vec<Option<HashMap<&str, Cell>>> = columns
            .iter()
            .map(|c| {
                c.report().map(|r| {
                    r.migrations
                        .iter()
                        .map(|m| (m.name.as_str(), Cell::of(&m.state)))
                        .collect()
                })
            })
            .collect();
        let names: BTreeSet<&[u8]> = states
            .iter()
            .flatten()
            .flat_map(|s| s.keys().map(|n| n.as_bytes()))
            .collect();
        let rows = names
            .into_iter()
            .map(|bytes| {
                let name = String::from_utf8_lossy(bytes).into_owned();
                let cells = states
                    .iter()
                    .map(|s| {
                        s.as_ref()
                            .map(|s| s.get(name.as_str()).copied().unwrap_or(Cell::Absent))
                    })
                    .collect();
                Row { name, cells }
            })
            .collect();
        Matrix { columns, rows }
    }

    /// The states shown whose word needs explaining, in the order they first appear.
    pub fn legend(&self) -> Vec<Cell> {
        let mut seen: Vec<Cell> = Vec::new();
        for cell in self.rows.iter().flat_map(|r| r.cells.iter().flatten()) {
            if !seen.contains(cell) && cell.meaning().is_some() {
                seen.push(*cell);
            }
        }
        seen
    }

    pub fn overall(&self) -> Overall {
        self.columns
            .iter()
            .map(|c| match c.verdict() {
                Some(Verdict::UpToDate) => Overall::UpToDate,
                Some(Verdict::Pending) => Overall::Pending,
                Some(Verdict::Drift) => Overall::Drift,
                Some(Verdict::Failed) => Overall::Failed,
                None => Overall::Incomplete,
            })
            .max()
            .unwrap_or(Overall::UpToDate)
    }
}

/// At most this many environments are read at once: a fleet of hundreds of databases on one
/// server must not take hundreds of its connection slots from the application.
pub const READS_AT_ONCE: usize = 16;

/// Reads every environment's status, [`READS_AT_ONCE`] at a time, each bounded by its connect
/// timeout (and a bound on the read). Each distinct migrations folder is read once, first: one
/// that cannot be read is the error, as it is for a single environment's status.
pub async fn status_matrix(candidates: Vec<Candidate>) -> Result<Matrix> {
    let mut loaded: HashMap<PathBuf, Arc<MigrationsDir>> = HashMap::new();
    let mut work = Vec::with_capacity(candidates.len());
    for c in candidates {
        work.push(match c {
            Candidate::Ready(env) => {
                let dir = match loaded.get(&env.migrations_dir) {
                    Some(dir) => dir.clone(),
                    None => {
                        let dir = Arc::new(MigrationsDir::load(&env.migrations_dir)?);
                        loaded.insert(env.migrations_dir.clone(), dir.clone());
                        dir
                    }
                };
                Ok((env, dir))
            }
            Candidate::Unresolved {
                name,
                protected,
                error,
            } => Err(Column {
                name,
                protected,
                database: None,
                reading: Reading::Unresolved(error),
            }),
        });
    }
    let columns: Vec<Column> = futures_util::stream::iter(work)
        .map(|w| async move {
            match w {
                Err(unresolved) => unresolved,
                Ok((env, dir)) => Column {
                    reading: read(&env, &dir).await,
                    name: env.name.clone(),
                    protected: env.protected,
                    database: Some(env.target.to_string()),
                },
            }
        })
        .buffered(READS_AT_ONCE)
        .collect()
        .await;
    Ok(Matrix::build(columns))
}

async fn read(env: &Environment, dir: &MigrationsDir) -> Reading {
    let target = &env.target;
    let bound = target.connect_timeout.max(Duration::from_secs(1)) + CONNECT_SLACK;
    let session = match tokio::time::timeout(bound, db::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Reading::Unreachable(e),
        Err(_) => {
            return Reading::Unreachable(Error::runtime(
                format!(
                    "{} did not answer within {} s",
                    target.server(),
                    bound.as_secs()
                ),
                "check that the server is up and reachable from here, or raise connect_timeout",
            ));
        }
    };
    match tokio::time::timeout(
        READ_BOUND,
        migrate::status_on(&session, &target.schema, dir),
    )
    .await
    {
        Ok(Ok(report)) => Reading::Read {
            server_version: session.server_version.clone(),
            report,
        },
        Ok(Err(e)) => Reading::Unreadable(e),
        Err(_) => Reading::Unreadable(Error::runtime(
            format!(
                "reading _prisma_migrations on {} took longer than {} s",
                target.server(),
                READ_BOUND.as_secs()
            ),
            "something may hold a lock on the ledger (a deploy or reset under way): look at the lock queue",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::status::MigrationStatus;
    use chrono::{TimeZone, Utc};

    fn status(name: &str, state: MigrationState) -> MigrationStatus {
        MigrationStatus {
            name: name.into(),
            state,
            has_down_sql: false,
        }
    }

    fn read_as(name: &str, migrations: Vec<MigrationStatus>) -> Column {
        Column {
            name: name.into(),
            protected: false,
            database: Some(format!("postgresql://u@h:5432/{name}")),
            reading: Reading::Read {
                server_version: "17".into(),
                report: StatusReport {
                    ledger_exists: true,
                    migrations,
                },
            },
        }
    }

    fn unreachable(name: &str) -> Column {
        Column {
            name: name.into(),
            protected: true,
            database: Some("postgresql://u@h:1/x".into()),
            reading: Reading::Unreachable(Error::runtime("cannot connect", "is it up?")),
        }
    }

    fn applied() -> MigrationState {
        MigrationState::Applied {
            applied_at: Utc.timestamp_opt(0, 0).unwrap(),
            duration_ms: 1,
        }
    }

    #[test]
    fn rows_are_every_name_any_environment_knows_with_absent_and_unknown_cells() {
        let m = Matrix::build(vec![
            read_as(
                "dev",
                vec![status("a", applied()), status("b", MigrationState::Pending)],
            ),
            read_as(
                "old",
                vec![
                    status("a", applied()),
                    status(
                        "z",
                        MigrationState::MissingLocally {
                            started_at: Utc.timestamp_opt(0, 0).unwrap(),
                            finished_at: None,
                        },
                    ),
                ],
            ),
            unreachable("prod"),
        ]);
        let rows: Vec<(&str, Vec<Option<Cell>>)> = m
            .rows
            .iter()
            .map(|r| (r.name.as_str(), r.cells.clone()))
            .collect();
        assert_eq!(
            rows,
            [
                ("a", vec![Some(Cell::Applied), Some(Cell::Applied), None]),
                ("b", vec![Some(Cell::Pending), Some(Cell::Absent), None]),
                (
                    "z",
                    vec![Some(Cell::Absent), Some(Cell::MissingLocally), None]
                ),
            ]
        );
        assert_eq!(m.columns[2].problem(), Some("unreachable"));
        assert_eq!(
            m.columns[0].summary(),
            "migrations pending: 1 applied, 1 pending"
        );
        assert_eq!(m.columns[2].summary(), "UNREACHABLE: cannot connect");
        assert_eq!(m.legend(), [Cell::Absent, Cell::MissingLocally]);
        assert!(!m.columns[2].reachable() && m.columns[0].reachable());
    }

    #[test]
    fn the_overall_verdict_puts_a_known_failure_or_drift_above_an_unread_environment() {
        let up = || read_as("a", vec![status("m", applied())]);
        let pending = || read_as("b", vec![status("m", MigrationState::Pending)]);
        let drift = || {
            read_as(
                "c",
                vec![status(
                    "m",
                    MigrationState::Edited {
                        applied_at: Utc.timestamp_opt(0, 0).unwrap(),
                        stored_checksum: "x".into(),
                        local_checksum: "y".into(),
                    },
                )],
            )
        };
        let failed = || {
            read_as(
                "d",
                vec![status(
                    "m",
                    MigrationState::Failed {
                        started_at: Utc.timestamp_opt(0, 0).unwrap(),
                        logs: None,
                    },
                )],
            )
        };
        let overall = |cols: Vec<Column>| Matrix::build(cols).overall();
        assert_eq!(overall(vec![]), Overall::UpToDate);
        assert_eq!(overall(vec![up()]), Overall::UpToDate);
        assert_eq!(overall(vec![up(), pending()]), Overall::Pending);
        assert_eq!(
            overall(vec![pending(), unreachable("x")]),
            Overall::Incomplete
        );
        assert_eq!(overall(vec![drift(), unreachable("x")]), Overall::Drift);
        assert_eq!(
            overall(vec![drift(), failed(), unreachable("x")]),
            Overall::Failed
        );
    }
}
