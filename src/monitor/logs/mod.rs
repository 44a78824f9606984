//! Following logs: the application's (a file like `tail -F`, or a command such as
//! `kubectl logs -f`) and the server's own (its current log file, read locally or through
//! `pg_read_binary_file`). Lines arrive classified ([`LineClass`]) with their receive time as
//! small typed [`LogUpdate`]s on a channel; [`LogTail`] folds them into what a pane shows (the
//! last lines, error lines per minute, the alert) without any I/O.

mod classify;
mod command;
mod file;
mod server;
mod tail;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::target::DbTarget;
pub use classify::{LineClass, classify};
pub use tail::LogTail;

/// The application log an environment names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppLog {
    /// A file, followed by its path like `tail -F`.
    File(PathBuf),
    /// A shell command whose stdout and stderr are the log (`kubectl logs -f deploy/api`),
    /// restarted with backoff when it exits.
    Command(String),
}

/// What to follow.
#[derive(Debug, Clone)]
pub enum LogSource {
    App(AppLog),
    /// The server's own log, when it can be read (see [`follow`]).
    Server(DbTarget),
}

impl LogSource {
    /// How the pane names it: the path, the command, or "server log".
    pub fn name(&self) -> String {
        match self {
            LogSource::App(AppLog::File(p)) => p.display().to_string(),
            LogSource::App(AppLog::Command(c)) => c.clone(),
            LogSource::Server(_) => "server log".into(),
        }
    }
}

/// What the log panes follow and how.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub app_log: Option<AppLog>,
    /// The alert fires when more error lines than this arrive within a minute.
    pub alert_per_minute: u32,
    /// How often a followed file is looked at (its size and identity: two `stat`s).
    pub poll: Duration,
    /// How often the server is asked about its log file.
    pub server_poll: Duration,
    /// Lines from before following started, shown for context (never counted).
    pub context_lines: usize,
    /// The first pause before an exited command is started again; it doubles up to 30 s.
    pub restart_backoff: Duration,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            app_log: None,
            // The runbook's 5xx alert: more than 10 a minute.
            alert_per_minute: 10,
            poll: Duration::from_millis(250),
            server_poll: Duration::from_secs(1),
            context_lines: 10,
            restart_backoff: Duration::from_secs(1),
        }
    }
}

/// One line of a log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// When pgdeck read it.
    pub at: DateTime<Utc>,
    pub class: LineClass,
    /// Control characters shown escaped; cut past [`MAX_LINE_CHARS`].
    pub text: String,
    /// From before following started: shown for context, not counted.
    pub context: bool,
}

/// Lines longer than this are cut, with how much was cut said.
pub const MAX_LINE_CHARS: usize = 2000;

impl LogLine {
    /// `text` classified and made printable, read now.
    pub fn read(text: &str, context: bool) -> LogLine {
        LogLine::at(Utc::now(), text, context)
    }

    pub fn at(at: DateTime<Utc>, text: &str, context: bool) -> LogLine {
        let class = classify(text);
        let shown = match text.char_indices().nth(MAX_LINE_CHARS) {
            Some((cut, _)) => format!("{} [… {} more bytes]", &text[..cut], text.len() - cut),
            None => text.to_owned(),
        };
        LogLine {
            at,
            class,
            text: crate::units::printable(&shown).into_owned(),
            context,
        }
    }

    /// pgdeck's own word in the stream (truncated, replaced, exited).
    pub fn notice(text: &str) -> LogLine {
        LogLine {
            at: Utc::now(),
            class: LineClass::Notice,
            text: crate::units::printable(text).into_owned(),
            context: false,
        }
    }
}

/// Where a follower stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LogState {
    /// Not started yet.
    Starting,
    /// Lines arrive from `what` (the file, the command with its pid, the server's log file and
    /// how it is read).
    Following {
        what: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// Nothing to follow yet: the file is not there (it is looked for again at every poll).
    Waiting { what: String, reason: String },
    /// The command exited; it is started again in `restart_in_ms`.
    Exited {
        what: String,
        status: String,
        restart_in_ms: u64,
    },
    /// This log is not shown, and why (the server's logging_collector is off, the role may not
    /// read it). Followed no further.
    Unavailable { reason: String, hint: String },
    /// Something failed. With `retry_in_ms` it is tried again; without, followed no further
    /// (a FIFO or a folder at the file's path).
    Error {
        cause: String,
        hint: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
}

impl LogState {
    /// Whether the follower has stopped for good in this state.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            LogState::Unavailable { .. }
                | LogState::Error {
                    retry_in_ms: None,
                    ..
                }
        )
    }
}

/// What a follower sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum LogUpdate {
    /// New lines, oldest first. A notice (truncated, replaced, exited) is a line of class
    /// [`LineClass::Notice`].
    Lines { lines: Vec<LogLine> },
    /// The follower's state changed.
    State { state: LogState },
}

/// Follows `source` until `cancel` fires or nobody receives `updates` any more, sending lines
/// and state changes; a command it runs is killed with everything it started when it stops. It
/// also returns once the source is [`LogState::is_final`] (the server's log cannot be read, a
/// FIFO at the file's path). Run it in a task of its own.
///
/// The server's log: when `pg_current_logfile()` names a file and the connection is a unix
/// socket (so the server is on this machine), the file is followed locally if it can be
/// opened; otherwise, for a role that may run `pg_read_binary_file` and `pg_stat_file`
/// (superuser, or granted), its new bytes are read through the monitor's read-only guest
/// session every [`LogSettings::server_poll`]. Else the state says why it is not shown.
pub async fn follow(
    source: LogSource,
    settings: LogSettings,
    updates: UnboundedSender<LogUpdate>,
    cancel: CancellationToken,
) {
    let mut out = Out::new(updates, cancel);
    match source {
        LogSource::App(AppLog::File(path)) => file::follow(&path, &settings, &mut out).await,
        LogSource::App(AppLog::Command(c)) => command::follow(&c, &settings, &mut out).await,
        LogSource::Server(target) => server::follow(&target, &settings, &mut out).await,
    }
}

/// The sending side of a follower: lines, and states when they change.
struct Out {
    tx: UnboundedSender<LogUpdate>,
    cancel: CancellationToken,
    last: LogState,
}

impl Out {
    fn new(tx: UnboundedSender<LogUpdate>, cancel: CancellationToken) -> Out {
        Out {
            tx,
            cancel,
            last: LogState::Starting,
        }
    }

    fn lines(&self, lines: Vec<LogLine>) {
        if !lines.is_empty() {
            let _ = self.tx.send(LogUpdate::Lines { lines });
        }
    }

    fn notice(&self, text: &str) {
        self.lines(vec![LogLine::notice(text)]);
    }

    /// Sends `state` unless it is the one last sent.
    fn state(&mut self, state: LogState) {
        if state != self.last {
            self.last = state.clone();
            let _ = self.tx.send(LogUpdate::State { state });
        }
    }

    /// Whether to stop: cancelled, or nobody listens.
    fn stopped(&self) -> bool {
        self.cancel.is_cancelled() || self.tx.is_closed()
    }

    /// Resolves when the follower should stop.
    async fn stopping(&self) {
        tokio::select! {
            () = self.cancel.cancelled() => {}
            () = self.tx.closed() => {}
        }
    }

    /// Waits `d`; false when the follower should stop instead.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => !self.stopped(),
            () = self.stopping() => false,
        }
    }
}

/// Splits bytes into lines, keeping an unfinished last line until its end arrives.
#[derive(Debug, Default)]
struct Splitter {
    partial: Vec<u8>,
}

/// An unfinished line longer than this is passed on as it is: a writer that never ends its line
/// must not grow memory without bound.
const MAX_PARTIAL: usize = 64 * 1024;

impl Splitter {
    /// The lines `bytes` completes, without their line endings.
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..i]);
            out.push(self.take());
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_PARTIAL {
            out.push(self.take());
        }
        out
    }

    /// The unfinished line, if any (the file was truncated or replaced under it).
    fn flush(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.partial);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        String::from_utf8_lossy(line).into_owned()
    }
}

/// The last `n` complete lines of `tail` (the end of a file, which may begin mid-line unless
/// `whole` says it is the file's start), and the unfinished line after them.
fn last_lines(tail: &[u8], whole: bool, n: usize) -> (Vec<String>, Vec<u8>) {
    let end = tail
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let (complete, partial) = tail.split_at(end);
    let mut lines: Vec<&[u8]> = complete
        .strip_suffix(b"\n")
        .map(|c| c.split(|b| *b == b'\n').collect())
        .unwrap_or_default();
    if !whole && !lines.is_empty() {
        // The first piece may be the end of a longer line.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    let lines = lines[skip..]
        .iter()
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned())
        .collect();
    (lines, partial.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_with_the_unfinished_one_kept_until_it_ends() {
        let mut s = Splitter::default();
        assert_eq!(s.feed(b"one\r\ntw"), ["one"]);
        assert_eq!(s.feed(b"o\nthree"), ["two"]);
        assert_eq!(s.flush().as_deref(), Some("three"));
        assert_eq!(s.flush(), None);
        assert_eq!(s.feed(b"bad \xff\n"), ["bad \u{fffd}"]);
        let long = vec![b'x'; MAX_PARTIAL + 1];
        assert_eq!(s.feed(&long).len(), 1, "an endless line is passed on");
    }

    #[test]
    fn the_context_is_the_last_complete_lines() {
        let (lines, partial) = last_lines(b"ial one\ntwo\nthree\nfour", false, 2);
        assert_eq!(lines, ["two", "three"]);
        assert_eq!(partial, b"four");
        let (lines, _) = last_lines(b"one\ntwo\n", true, 5);
        assert_eq!(lines, ["one", "two"]);
        let (lines, _) = last_lines(b"end of a long line\n", false, 5);
        assert!(lines.is_empty());
        let (lines, partial) = last_lines(b"", true, 5);
        assert!(lines.is_empty() && partial.is_empty());
    }

    #[test]
    fn a_line_is_classified_made_printable_and_cut() {
        let l = LogLine::read("ERROR: \x1b[31mred", false);
        assert_eq!(l.class, LineClass::Error);
        assert_eq!(l.text, "ERROR: \\u{1b}[31mred");
        let long = "é".repeat(MAX_LINE_CHARS + 10);
        let l = LogLine::read(&long, true);
        assert!(
            l.text.ends_with("[… 20 more bytes]"),
            "{}",
            &l.text[l.text.len() - 40..]
        );
        assert!(l.context);
    }
}
