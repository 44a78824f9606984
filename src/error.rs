//! The one error type every command reports: a one-line cause, a one-line hint, and a kind that
//! decides the exit code. Core modules build these at the point where they know both the cause and
//! what the operator can do about it.

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
    /// A guard refused: protected environment, missing confirmation, non-empty schema.
    Refused,
    /// A backup failed verification: checksum, table of contents or restore test.
    VerifyFailed,
}

/// A user-facing error: `cause` says what happened, `hint` what to do about it. Neither ever
/// contains a password: connection details are rendered through `DbTarget`'s redacting Display.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{cause}")]
pub struct Error {
    pub kind: ErrorKind,
    pub cause: String,
    pub hint: String,
}

impl Error {
    pub fn new(kind: ErrorKind, cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Error {
            kind,
            cause: cause.into(),
            hint: hint.into(),
        }
    }

    pub fn input(cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, cause, hint)
    }

    pub fn runtime(cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorKind::Runtime, cause, hint)
    }

    pub fn refused(cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, cause, hint)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
