//! How a migration failed, in words: the server's own reasons told apart from the SQL's
//! (timeouts, cancels from elsewhere, ended sessions, exhausted resources), the ledger's `logs`
//! text, and each failure's cause, hint and remedies.

use chrono::{DateTime, Utc};
use tokio_postgres::error::{ErrorPosition, SqlState};

use super::deploy::{DeployOutcome, Runner};
use super::folder::LocalMigration;
use super::script::{Statement, line_col};
use super::watchdog::Blocked;
use crate::db;
use crate::error::{Error, ErrorKind, Guard, Remedy};

pub(super) fn lock_lost(m: &LocalMigration, pid: i32) -> Error {
    Error::runtime(
        format!(
            "the migration lock was lost before {}: the session holding it (pid {pid}) ended or was terminated, so another deploy may be running; {} was not started",
            m.name, m.name
        ),
        "check `status` and who is deploying now, then deploy again",
    )
    .with(Remedy::Status)
    .with(Remedy::Deploy)
}

pub(super) fn cancelled_in_transaction(
    m: &LocalMigration,
    s: Option<&Statement>,
    session_lost: bool,
) -> Error {
    let at = s
        .map(|s| format!(" at {}:{}", m.script_path().display(), s.line))
        .unwrap_or_default();
    let how = if session_lost {
        "it did not stop within 10 s of the cancel request, so its session was terminated and the server rolled it back"
    } else {
        "the server stopped it and rolled it back"
    };
    Error::cancelled(
        format!(
            "deploy cancelled during {}{at}: {how}, nothing of it was applied",
            m.name
        ),
        "deploy again to apply it and the rest",
    )
    .with(Remedy::Deploy)
}

pub(super) fn cancelled_statement_by_statement(
    m: &LocalMigration,
    i: usize,
    total: usize,
    nothing_applied: bool,
) -> Error {
    if i == 0 && !nothing_applied {
        return Error::cancelled(
            format!(
                "deploy cancelled during {} (no transaction) at its first statement: nothing else of it was applied",
                m.name
            ),
            "clean up what the stopped statement left, then record the migration as rolled back",
        )
        .with(Remedy::ResolveRolledBack {
            migration: m.name.clone(),
        });
    }
    if nothing_applied {
        return Error::cancelled(
            format!(
                "deploy cancelled during {} (no transaction) at its first statement: nothing of it was applied",
                m.name
            ),
            "deploy again to apply it and the rest",
        )
        .with(Remedy::Deploy);
    }
    Error::cancelled(
        format!(
            "deploy cancelled during {} (no transaction) at statement {} of {total}: the statements before it were applied",
            m.name,
            i + 1
        ),
        "finish or undo the applied statements by hand, then record which",
    )
    .with(Remedy::Resolve {
        migration: m.name.clone(),
    })
}

/// What to do about the server's reason a concurrent index build failed, in its own words.
pub(super) fn index_failure_fix(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return "deploy again once the server is reachable".into();
    };
    let said = match db.detail() {
        Some(d) => format!("{} ({d})", db.message()),
        None => db.message().to_owned(),
    };
    match db.code() {
        c if *c == SqlState::UNIQUE_VIOLATION => {
            format!("remove the duplicate values the server named ({said})")
        }
        c if *c == SqlState::T_R_DEADLOCK_DETECTED => {
            format!("deploy again when the other session's work is done: {said}")
        }
        c if *c == SqlState::QUERY_CANCELED => format!(
            "it was cancelled by a statement_timeout on the role or database, or by another session ({said}); lift that for the build"
        ),
        c if *c == SqlState::LOCK_NOT_AVAILABLE => {
            format!(
                "a lock_timeout set on the role or database stopped it ({said}); lift that for the build"
            )
        }
        _ => format!("fix what the server reported: {said}"),
    }
}

fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    db::sqlstate(e) == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// A lock timeout or a deadlock: the migration did nothing and may simply be tried again.
pub(super) fn is_lock_conflict(e: &tokio_postgres::Error) -> bool {
    is_lock_timeout(e) || db::sqlstate(e) == Some(&SqlState::T_R_DEADLOCK_DETECTED)
}

/// Why the server stopped a migration, when the cause is not in its SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerStop {
    /// The role's or database's `statement_timeout`.
    StatementTimeout,
    /// `pg_cancel_backend` from another session.
    CancelledElsewhere,
    /// `idle_in_transaction_session_timeout` ended the session.
    IdleInTransaction,
    /// `pg_terminate_backend`, or a server shutdown, ended the session.
    Terminated,
    /// Out of disk, memory or another server resource, or an I/O error on the server.
    Resources,
    /// The connection broke (network, crash) without a word from the server.
    Lost,
}

impl ServerStop {
    pub(super) fn ends_session(self) -> bool {
        matches!(
            self,
            ServerStop::IdleInTransaction | ServerStop::Terminated | ServerStop::Lost
        )
    }
}

/// Where in the file a server error points: the error's own position inside the statement if it
/// gave one, else the statement's start.
pub(super) fn error_location(
    m: &LocalMigration,
    s: Option<&Statement>,
    e: &tokio_postgres::Error,
) -> Option<(usize, usize)> {
    let s = s?;
    let within = match e.as_db_error().and_then(|d| d.position()) {
        Some(ErrorPosition::Original(p)) => s
            .text
            .char_indices()
            .nth((*p as usize).saturating_sub(1))
            .map(|(b, _)| b)
            .unwrap_or(0),
        _ => 0,
    };
    Some(line_col(m.sql(), s.offset + within))
}

pub(super) fn describe(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
        None if e.is_closed() => (
            "08006".into(),
            "the connection to the server was lost".into(),
        ),
        None => ("".into(), e.to_string()),
    }
}

/// The `logs` column text, in the spirit of Prisma's: migration, position, code, message.
pub(super) fn failure_logs(
    m: &LocalMigration,
    s: Option<&Statement>,
    e: &tokio_postgres::Error,
    attempts: u32,
) -> String {
    let (code, message) = describe(e);
    let mut logs = format!("Migration: {}\n", m.name);
    if let Some((line, col)) = error_location(m, s, e) {
        logs.push_str(&format!(
            "Position: migration.sql line {line}, column {col}\n"
        ));
    }
    if let Some(s) = s {
        logs.push_str(&format!("Statement: {}\n", s.preview(200)));
    }
    if attempts > 1 {
        logs.push_str(&format!("Attempts: {attempts}\n"));
    }
    logs.push_str(&format!(
        "\nDatabase error code: {code}\n\nDatabase error:\nERROR: {message}\n"
    ));
    if let Some(db) = e.as_db_error() {
        if let Some(d) = db.detail() {
            logs.push_str(&format!("DETAIL: {d}\n"));
        }
        if let Some(h) = db.hint() {
            logs.push_str(&format!("HINT: {h}\n"));
        }
    }
    logs
}

pub(super) trait FirstStatement {
    /// For a failure outside a transaction at its first statement: nothing before it ran.
    fn first_statement(self, first: bool, name: &str) -> Self;
}

impl FirstStatement for Error {
    fn first_statement(mut self, first: bool, name: &str) -> Error {
        if first
            && matches!(
                self.kind,
                ErrorKind::MigrationFailed | ErrorKind::Runtime | ErrorKind::Interrupted
            )
        {
            self.hint = "it failed at its first statement, so nothing before it ran; undo what that \
                         statement may have left (a concurrent index build leaves an INVALID index), \
                         then record which"
                .into();
            self.remedies = vec![Remedy::Resolve {
                migration: name.to_owned(),
            }];
        }
        self
    }
}

pub(super) fn sql_failure(
    m: &LocalMigration,
    s: Option<&Statement>,
    e: &tokio_postgres::Error,
    attempts: u32,
    rolled_back: bool,
    stop: Option<ServerStop>,
    run: &Runner<'_>,
) -> Error {
    let (code, message) = match (e.as_db_error(), run.ended.reason()) {
        (None, Some((code, message))) => (code.code().to_owned(), message),
        _ => describe(e),
    };
    let at = match error_location(m, s, e) {
        Some((l, c)) => format!("{}:{l}:{c}", m.script_path().display()),
        None => m.script_path().display().to_string(),
    };
    if let Some(stop) = stop {
        return stopped_by_server(m, &at, stop, &message, &code, rolled_back, run);
    }
    if db::sqlstate(e) == Some(&SqlState::T_R_DEADLOCK_DETECTED) {
        return Error::new(
            ErrorKind::LockTimeout,
            format!(
                "migration {} deadlocked with another session on each of {attempts} attempt(s) at {at}: {message}",
                m.name
            ),
            "another session takes the same locks in the other order: deploy again when its work is done",
        )
        .with(Remedy::Monitor)
        .with(Remedy::Deploy);
    }
    if is_lock_timeout(e) {
        let holders = run.waited_for.lock().map(|h| h.clone()).unwrap_or_default();
        let blocker = holders.iter().find(|h| !h.waiting).or(holders.first());
        let waited = blocker
            .map(|h| format!("; it waited for {}", h.describe()))
            .unwrap_or_default();
        let hint = match blocker {
            Some(h) => format!(
                "let pid {} finish or end it, then deploy again (or raise lock_timeout / lock_retries in pgdeck.toml)",
                h.pid
            ),
            None => "a long-running transaction holds a conflicting lock on the table: let it finish or \
                     cancel it, then deploy again (or raise lock_timeout / lock_retries in pgdeck.toml)"
                .to_owned(),
        };
        let end = blocker.map(|h| Remedy::EndSession {
            pid: h.pid,
            backend_start: h.backend_start.to_rfc3339(),
            idle: !h.cancel_helps(),
        });
        return Error::new(
            ErrorKind::LockTimeout,
            format!(
                "migration {} could not get its lock within lock_timeout after {attempts} attempt(s) at {at}{waited}",
                m.name
            ),
            hint,
        )
        .with_all(end)
        .with(Remedy::Monitor)
        .with(Remedy::Deploy);
    }
    let (hint, remedy) = if rolled_back {
        (
            "nothing of this migration was applied; fix migration.sql and deploy again",
            Remedy::Deploy,
        )
    } else {
        (
            "statements before this one were applied; finish or undo them by hand, then record which",
            Remedy::Resolve {
                migration: m.name.clone(),
            },
        )
    };
    Error::new(
        ErrorKind::MigrationFailed,
        format!(
            "migration {} failed at {at}: {message} (SQLSTATE {code})",
            m.name
        ),
        hint,
    )
    .with(remedy)
}

/// A migration the server stopped for a reason outside its SQL.
pub(super) fn stopped_by_server(
    m: &LocalMigration,
    at: &str,
    stop: ServerStop,
    message: &str,
    code: &str,
    rolled_back: bool,
    run: &Runner<'_>,
) -> Error {
    let name = &m.name;
    let (cause, why) = match stop {
        ServerStop::StatementTimeout if run.statement_timeout == "0" => (
            format!(
                "migration {name} was stopped by a statement_timeout it sets itself at {at} (the role and database set none)"
            ),
            "raise or remove the SET statement_timeout in migration.sql",
        ),
        ServerStop::StatementTimeout => (
            format!(
                "migration {name} was stopped by statement_timeout ({}, set for the role or database) at {at}",
                run.statement_timeout
            ),
            "it runs longer than the role's or database's statement_timeout allows: raise it for \
             the deploying role (ALTER ROLE ... SET statement_timeout), or split the migration",
        ),
        ServerStop::CancelledElsewhere => (
            format!("migration {name} was cancelled by another session at {at}: {message}"),
            "someone ran pg_cancel_backend on the deploy (an operator, or a script that cancels \
             long queries): find out who",
        ),
        ServerStop::IdleInTransaction => (
            format!(
                "the server ended the deploy's session during {name} by idle_in_transaction_session_timeout: {message}"
            ),
            "the session sat idle inside the migration's transaction longer than the role's or \
             database's idle_in_transaction_session_timeout (a slow network, a paused pgdeck): \
             raise it for the deploying role",
        ),
        ServerStop::Terminated => (
            format!(
                "the server ended the deploy's session during {name} (pg_terminate_backend, or a server shutdown): {message}"
            ),
            "find out who terminated it or why the server went down",
        ),
        ServerStop::Resources => (
            format!("the server could not apply {name} at {at}: {message} (SQLSTATE {code})"),
            "this is the server's condition, not the migration's SQL: free the disk, memory or \
             connections it names",
        ),
        ServerStop::Lost => (
            format!("lost the connection while applying {name}: {message}"),
            "once the server is reachable",
        ),
    };
    let kind = match stop {
        ServerStop::Lost => ErrorKind::Runtime,
        // The migration's own SET: the cause is in its SQL after all.
        ServerStop::StatementTimeout if run.statement_timeout == "0" => ErrorKind::MigrationFailed,
        _ => ErrorKind::Interrupted,
    };
    if rolled_back {
        Error::new(
            kind,
            format!("{cause}; the server rolled it back, nothing of it was applied"),
            format!("{why}; then deploy again"),
        )
        .with(Remedy::Deploy)
    } else {
        Error::new(
            kind,
            cause,
            format!(
                "{why}; the statements before it were applied: check the status, finish or undo them by hand, then record which"
            ),
        )
        .with(Remedy::Status)
        .with(Remedy::Resolve {
            migration: m.name.clone(),
        })
    }
}

/// The watchdog stopped a migration on its last attempt.
pub(super) fn blocking_failure(
    m: &LocalMigration,
    s: Option<&Statement>,
    b: &Blocked,
    attempts: u32,
) -> Error {
    let at = s
        .map(|s| format!(" at {}:{}", m.script_path().display(), s.line))
        .unwrap_or_default();
    Error::new(
        ErrorKind::LockTimeout,
        format!(
            "migration {} was stopped after {attempts} attempt(s){at}: {} session(s) queued behind its locks, the longest for {:.1}s (blocking_timeout {:.1}s); nothing of it was applied",
            m.name,
            b.victims,
            b.longest.as_secs_f64(),
            b.bound.as_secs_f64()
        ),
        "it holds its locks too long while traffic needs those tables: split it into smaller \
         migrations, deploy at a quieter time, or raise blocking_timeout / lock_retries in pgdeck.toml",
    )
    .with(Remedy::Monitor)
    .with(Remedy::Deploy)
}

pub(super) fn blocking_logs(
    m: &LocalMigration,
    s: Option<&Statement>,
    b: &Blocked,
    attempts: u32,
) -> String {
    let mut logs = format!(
        "Migration: {}
",
        m.name
    );
    if let Some(s) = s {
        logs.push_str(&format!(
            "Position: migration.sql line {}
Statement: {}
",
            s.line,
            s.preview(200)
        ));
    }
    logs.push_str(&format!(
        "Attempts: {attempts}

Stopped by pgdeck's lock-queue watchdog: {} session(s) waited behind the migration's locks, the longest {:.1}s (blocking_timeout {:.1}s). Rolled back.
",
        b.victims,
        b.longest.as_secs_f64(),
        b.bound.as_secs_f64()
    ));
    logs
}

/// A failed migration that blocks every deploy until it is resolved.
pub fn failed_blocks_deploy(name: &str, started_at: DateTime<Utc>) -> Error {
    Error::new(
        ErrorKind::MigrationFailed,
        format!(
            "migration {name} started at {} failed and is not resolved; nothing was deployed",
            started_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        "see its logs; finish or undo it by hand, record which, then deploy again",
    )
    .by(Guard::FailedMigration)
    .with(Remedy::Status)
    .with(Remedy::Resolve {
        migration: name.to_owned(),
    })
}

pub(super) fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Stopped between migrations: `next` and the rest did not start.
pub(super) fn cancelled_before(
    next: &LocalMigration,
    done: &DeployOutcome,
    rest: &[&LocalMigration],
) -> Error {
    let applied = if done.applied.is_empty() {
        "nothing was applied".to_owned()
    } else {
        format!("applied: {}", done.applied_names())
    };
    Error::cancelled(
        format!(
            "deploy cancelled before {}: {applied}; {} migration(s) not applied",
            next.name,
            rest.len()
        ),
        "deploy again to apply the rest",
    )
    .with(Remedy::Deploy)
}
