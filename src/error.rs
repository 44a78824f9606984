//! The one error type every command reports: a one-line cause, a one-line hint, a kind that
//! decides the exit code, and, where the operator can act on it, typed remedies. Core rooms build
//! these where they know both the cause and what can be done about it; the hint says it in
//! words that fit any front end, and each front end words the remedies itself (a flag or a
//! command in the CLI, a key or a step in the console). A refusal also names the guard that
//! refused, so callers and tests branch on it, never on the text.

use serde::Serialize;

/// What went wrong, coarsely: callers branch on it and the CLI maps it to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad command line, configuration, URL or migrations folder: fix the input and rerun.
    Input,
    /// Could not reach or talk to the server, or a file system operation failed.
    Runtime,
    /// A migration failed, or a failed migration blocks the command.
    MigrationFailed,
    /// Waited too long for the migration lock or for a table lock.
    LockTimeout,
    /// A console session is open in another console (`journal::held_by` names who): it can be
    /// read, not resumed.
    SessionHeld,
    /// A guard refused: protected environment, missing confirmation, non-empty schema.
    Refused,
    /// A backup failed verification: checksum, table of contents or restore test.
    VerifyFailed,
    /// The operator stopped it (the console's cancel, SIGINT or SIGTERM); what ran was rolled
    /// back on the server.
    Cancelled,
    /// A rehearsal could not be set up: the scratch server lacks an extension the target or a
    /// migration uses, or is older than the target.
    ScratchUnfit,
    /// The server stopped a migration for a reason outside its SQL: a statement_timeout, a
    /// cancel or termination by another session, an idle timeout, a shutdown, exhausted
    /// resources.
    Interrupted,
    /// Gave up waiting for the standbys' replay lag to come under `max_replica_lag`.
    ReplicaLag,
}

/// The guard that refused a release workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// The operator has not confirmed (on a protected environment: the database name typed).
    Confirmation,
    /// A protected deploy needs a recent verified backup of this database on this server.
    Backup,
    /// The backup was taken from another environment, server or database.
    BackupIdentity,
    /// PITR mode: the server's WAL archiving is failing, or did not archive the release's
    /// restore point in time.
    Archiving,
    /// The backup was never verified, or its file no longer matches its catalog entry.
    BackupIntegrity,
    /// DANGEROUS findings nobody acknowledged with a reason.
    Lint,
    /// A failed migration must be resolved first.
    FailedMigration,
    /// Other migrations are pending: a forward rollback would deploy them too.
    OtherPending,
    /// Other sessions are using the database a restore would replace.
    Sessions,
    /// Refused on a protected environment whatever is confirmed (reset).
    Protected,
    /// The monitor is read-only here.
    ReadOnly,
    /// The URL reaches a standby (`pg_is_in_recovery()`): nothing can be written there.
    Standby,
    /// The URL goes through a pooler in transaction or statement mode, where the migration
    /// lock and session settings do not hold.
    Pooler,
    /// Work on the server's own files (an in-place recovery) needs the server on this machine,
    /// and this process able to act as its owner.
    NotLocal,
    /// A recovery target that cannot be reached: a restore point the journal does not know, or
    /// whose base backup or WAL is gone.
    RecoveryTarget,
}

/// A confirmation to ask for: what will happen, and what the operator must answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ask {
    pub title: String,
    /// What will happen to what, and what it loses.
    pub lines: Vec<String>,
    /// The text to type (the database name) on a protected environment; a plain yes otherwise.
    pub expect: Option<String>,
    /// What exactly is being confirmed (migration names, a backup file): a confirmation carrying
    /// this scope holds only while the work is still the same.
    pub scope: Vec<String>,
}

/// What the operator can do about an error, by intent. Front ends word it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "remedy", rename_all = "snake_case")]
pub enum Remedy {
    /// Confirm what [`Ask`] describes.
    Confirm(Ask),
    /// Take a backup and verify it.
    TakeVerifiedBackup,
    /// Take a backup.
    TakeBackup,
    /// Deploy without a recent verified backup, with a reason (journaled).
    DeployWithoutBackup,
    /// Verify the named backup (or the newest).
    VerifyBackup { file: Option<String> },
    /// Restore a backup that was never verified, with a reason (journaled).
    RestoreUnverified,
    /// Use a backup of another environment or server anyway, with a reason (journaled).
    AcceptForeignBackup,
    /// Acknowledge DANGEROUS findings with a reason: each by its key (`path:line:col rule
    /// @checksum`), and what it is about, in words, for the person asked.
    Acknowledge {
        findings: Vec<String>,
        details: Vec<String>,
    },
    /// See each finding with its expand / contract alternative.
    ReviewPlan,
    /// Record the failed migration as applied (finished by hand) or rolled back (undone).
    Resolve { migration: String },
    /// Record the migration as rolled back.
    ResolveRolledBack { migration: String },
    /// Run the deploy again.
    Deploy,
    /// Look at the migration status.
    Status,
    /// Forward rollback of an applied migration from its down.sql.
    Revert { migration: String },
    /// See the backups of the folder.
    ListBackups,
    /// Use another backup folder.
    BackupDir,
    /// Terminate the other sessions on the database first.
    TerminateSessions,
    /// Wait longer for the migration lock.
    WaitLonger,
    /// See who holds locks and blocks whom.
    Monitor,
    /// End the session that holds the lock (pid and backend_start, RFC 3339): a cancel does
    /// nothing to an idle transaction.
    EndSession {
        pid: i32,
        backend_start: String,
        idle: bool,
    },
    /// Capture a health baseline while the system is healthy.
    SaveBaseline,
    /// Point at the migrations folder.
    MigrationsFolder,
    /// Create a migration.
    NewMigration,
    /// Choose another environment or database.
    OtherEnvironment,
    /// Act on sessions somewhere the monitor is not read-only.
    LeaveReadOnly,
    /// Dump in directory format to use parallel workers.
    DirectoryFormat,
    /// Restore with a single worker.
    SingleWorker,
    /// Point the environment at the primary, not a standby.
    UsePrimary,
    /// Use the direct URL to the server (`direct_url` / `direct_url_env`, Prisma's
    /// `directUrl`), not the pooler's.
    UseDirectUrl,
}

/// A user-facing error: `cause` says what happened, `hint` what to do about it. Neither ever
/// contains a password: connection details are rendered through `DbTarget`'s redacting Display.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{cause}")]
pub struct Error {
    pub kind: ErrorKind,
    pub cause: String,
    pub hint: String,
    /// The guard that refused, for refusals of a release workflow.
    pub guard: Option<Guard>,
    /// What would satisfy it, for each front end to word.
    pub remedies: Vec<Remedy>,
}

impl Error {
    pub fn new(kind: ErrorKind, cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Error {
            kind,
            cause: cause.into(),
            hint: hint.into(),
            guard: None,
            remedies: Vec::new(),
        }
    }

    pub fn input(cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, cause, hint)
    }

    pub fn runtime(cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorKind::Runtime, cause, hint)
    }

    pub fn scratch_unfit(cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorKind::ScratchUnfit, cause, hint)
    }

    pub fn refused(cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, cause, hint)
    }

    /// A refusal by `guard`.
    pub fn guarded(guard: Guard, cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Error {
            guard: Some(guard),
            ..Self::refused(cause, hint)
        }
    }

    pub fn cancelled(cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, cause, hint)
    }

    /// Adds a remedy.
    pub fn with(mut self, remedy: Remedy) -> Self {
        self.remedies.push(remedy);
        self
    }

    /// Adds the remedies given (none, or one).
    pub fn with_all(mut self, remedies: impl IntoIterator<Item = Remedy>) -> Self {
        self.remedies.extend(remedies);
        self
    }

    /// Names the guard (keeping the kind).
    pub fn by(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The confirmation this refusal asks for, if that is what it is.
    pub fn ask(&self) -> Option<&Ask> {
        if self.guard != Some(Guard::Confirmation) {
            return None;
        }
        self.remedies.iter().find_map(|r| match r {
            Remedy::Confirm(ask) => Some(ask),
            _ => None,
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
