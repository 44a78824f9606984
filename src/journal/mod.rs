//! The release journal: every step, confirmation, override and result of a console session,
//! appended to one JSONL file per session and fsynced entry by entry, so a crash loses at most
//! the entry being written. Sessions that never finished can be resumed; any session renders as a
//! Markdown release report.

mod hold;
mod report;

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::target::secret::scrub;
pub use hold::{Holder, held_by};
pub use report::markdown;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    Cancelled,
}

impl Outcome {
    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "FAILED",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// How work that ended with `e` ended.
    pub fn of(e: &crate::error::Error) -> Outcome {
        if e.kind == crate::error::ErrorKind::Cancelled {
            Outcome::Cancelled
        } else {
            Outcome::Failed
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    SessionStarted {
        environment: String,
        /// Password redacted.
        database: String,
        pgdeck: String,
        /// The headless command whose own session this is; None for a console session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
    },
    SessionResumed,
    StepStarted {
        step: String,
        title: String,
    },
    StepFinished {
        step: String,
        title: String,
        outcome: Outcome,
        summary: String,
        duration_ms: u64,
    },
    /// A manual item ticked by the operator.
    StepTicked {
        step: String,
        title: String,
        note: Option<String>,
    },
    /// An optional item skipped by the operator, with why it is not needed this time. Journals
    /// written before this event have a tick titled "<title> (skipped)" instead: read both
    /// through [`Event::skipped`].
    StepSkipped {
        step: String,
        title: String,
        note: String,
    },
    /// A typed confirmation of a destructive action.
    Confirmed {
        what: String,
    },
    /// PITR mode: the named restore point a release started at, to recover to.
    RestorePointCreated {
        name: String,
        lsn: String,
        /// The WAL segment holding it, archived before the release went on.
        wal: String,
        stanza: String,
        /// The base backup a recovery to it starts from.
        base_backup: String,
    },
    /// A guard overridden, with the operator's reason.
    Override {
        what: String,
        reason: String,
    },
    /// DANGEROUS findings acknowledged by the operator, with the reason (`path:line:col rule`).
    Acknowledged {
        findings: Vec<String>,
        reason: String,
    },
    /// A release workflow (deploy, forward rollback, restore, resolve, reset) ended: what it
    /// applied and what it did not.
    Released {
        workflow: String,
        outcome: Outcome,
        summary: String,
        #[serde(default)]
        applied: Vec<String>,
        #[serde(default)]
        not_applied: Vec<String>,
        /// How long the work ran, from its start (every guard passed) to its end; None when it
        /// never started (refused or cancelled after the confirmation), and in journals written
        /// before durations were recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// A configured hook ran.
    HookRan {
        name: String,
        command: String,
        exit_code: Option<i32>,
        timed_out: bool,
        duration_ms: u64,
        output: String,
    },
    /// The lock-queue watchdog stopped a migration: sessions had queued behind its locks past
    /// `blocking_timeout`. It was rolled back (and retried when attempts were left).
    MigrationStopped {
        migration: String,
        attempt: u32,
        attempts: u32,
        victims: usize,
        longest_wait_ms: u64,
        blocking_timeout_ms: u64,
    },
    /// A fleet deploy ended: every member's outcome (each member's own deploy is journaled
    /// beside it, its workflow naming the member).
    FleetReleased {
        fleet: String,
        outcome: Outcome,
        summary: String,
        members: Vec<FleetMember>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// A deploy paused before `before` until the standby's replay lag came under
    /// `max_replica_lag`. (One that gave up is the deploy's failure, journaled as its outcome.)
    ReplicaWaited {
        before: String,
        replica: String,
        waited_ms: u64,
    },
    SessionFinished,
}

/// One database of a fleet deploy, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetMember {
    pub name: String,
    /// Password redacted.
    pub database: String,
    #[serde(default)]
    pub canary: bool,
    /// applied, up to date, FAILED, not started, cancelled.
    pub outcome: String,
    pub summary: String,
    #[serde(default)]
    pub applied: Vec<String>,
}

/// A skipped checklist step, however the journal wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped<'a> {
    pub step: &'a str,
    pub title: &'a str,
    pub note: &'a str,
}

/// How journals before [`Event::StepSkipped`] marked a skip: in the tick's title.
const OLD_SKIP_SUFFIX: &str = " (skipped)";

impl Event {
    /// The skipped step this entry records: a [`Event::StepSkipped`], or the tick titled
    /// "<title> (skipped)" that journals written before it have instead.
    pub fn skipped(&self) -> Option<Skipped<'_>> {
        match self {
            Event::StepSkipped { step, title, note } => Some(Skipped { step, title, note }),
            Event::StepTicked { step, title, note } => {
                title.strip_suffix(OLD_SKIP_SUFFIX).map(|title| Skipped {
                    step,
                    title,
                    note: note.as_deref().unwrap_or(""),
                })
            }
            _ => None,
        }
    }
}

/// How a hook ended, in words: "exit 0", "exit 3", "timed out" or "killed".
pub fn hook_ending(exit_code: Option<i32>, timed_out: bool) -> String {
    match (exit_code, timed_out) {
        (_, true) => "timed out".to_owned(),
        (Some(c), _) => format!("exit {c}"),
        (None, _) => "killed".to_owned(),
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub operator: String,
    #[serde(flatten)]
    pub event: Event,
}

/// An open session's journal file.
pub struct Journal {
    path: PathBuf,
    file: File,
    operator: String,
    /// A console's own session is held for as long as it is open; a headless command writing
    /// into one holds nothing.
    _hold: Option<hold::SessionHold>,
}

/// The journal folder: `$PGDECK_JOURNAL_DIR`, else `journal/` in the user data dir.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGDECK_JOURNAL_DIR") {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("dev", "pgdeck", "pgdeck")
        .map(|d| d.data_dir().join("journal"))
        .unwrap_or_else(|| PathBuf::from(".pgdeck/journal"))
}

/// Who is at the keyboard: `$USER`, else `$LOGNAME`, else the account's name.
pub fn operator() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "unknown".into())
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::runtime(
        format!("{what} {}: {e}", path.display()),
        "check the journal folder's permissions and free space (PGDECK_JOURNAL_DIR moves it)",
    )
}

fn env_dir(dir: &Path, environment: &str) -> PathBuf {
    let safe: String = environment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(safe)
}

impl Journal {
    /// Starts a new console session file for `environment` and records its start. The session
    /// is held (see [`Journal::resume`]) for as long as the Journal lives.
    pub fn start(dir: &Path, environment: &str, database: &str, operator: &str) -> Result<Journal> {
        let mut j = Journal::open_new(dir, environment, database, operator, None)?;
        j._hold = Some(hold::SessionHold::take(&j.path, operator)?);
        Ok(j)
    }

    fn open_new(
        dir: &Path,
        environment: &str,
        database: &str,
        operator: &str,
        command: Option<&str>,
    ) -> Result<Journal> {
        let folder = env_dir(dir, environment);
        std::fs::create_dir_all(&folder)
            .map_err(|e| io_error("cannot create the journal folder", &folder, &e))?;
        let now = Utc::now();
        let mut path = folder.join(format!("{}.jsonl", now.format("%Y%m%d_%H%M%S")));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = folder.join(format!("{}_{n}.jsonl", now.format("%Y%m%d_%H%M%S")));
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error("cannot create journal", &path, &e))?;
        let mut j = Journal {
            path,
            file,
            operator: operator.to_owned(),
            _hold: None,
        };
        j.append(Event::SessionStarted {
            environment: environment.to_owned(),
            database: database.to_owned(),
            pgdeck: env!("CARGO_PKG_VERSION").to_owned(),
            command: command.map(str::to_owned),
        })?;
        Ok(j)
    }

    /// Reopens an unfinished session to go on with it; returns its entries so far. The session
    /// is held for as long as the Journal lives: while it is, another console's `resume` fails
    /// with [`ErrorKind::SessionHeld`](crate::error::ErrorKind::SessionHeld) naming the holder
    /// (see [`held_by`]), and can only [`read`] it. Headless commands still journal into it.
    pub fn resume(path: &Path, operator: &str) -> Result<(Journal, Vec<Entry>)> {
        let hold = hold::SessionHold::take(path, operator)?;
        let entries = read(path)?;
        let mut j = Journal {
            path: path.to_owned(),
            file: reopen(path)?,
            operator: operator.to_owned(),
            _hold: Some(hold),
        };
        j.append(Event::SessionResumed)?;
        Ok((j, entries))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one entry and fsyncs it. Text is scrubbed of known passwords first.
    pub fn append(&mut self, event: Event) -> Result<Entry> {
        let entry = Entry {
            at: Utc::now(),
            operator: self.operator.clone(),
            event,
        };
        let line = serde_json::to_string(&entry).unwrap_or_default();
        let line = format!("{}\n", scrub(&line));
        let written = self.file.lock().and_then(|()| {
            let written = self
                .file
                .write_all(line.as_bytes())
                .and_then(|_| self.file.sync_data());
            let _ = self.file.unlock();
            written
        });
        written.map_err(|e| io_error("cannot write journal", &self.path, &e))?;
        Ok(entry)
    }
}

/// Where a release workflow writes what it did: the console's open session, or the journal of a
/// headless command.
pub trait Recorder: Send + Sync {
    fn record(&self, event: Event) -> Result<Entry>;
}

/// An open session shared by the console's loop and the workflows it starts.
#[derive(Clone)]
pub struct SharedJournal(Arc<Mutex<Journal>>);

impl SharedJournal {
    pub fn new(journal: Journal) -> SharedJournal {
        SharedJournal(Arc::new(Mutex::new(journal)))
    }

    pub fn path(&self) -> PathBuf {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .path
            .clone()
    }
}

impl Recorder for SharedJournal {
    fn record(&self, event: Event) -> Result<Entry> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(event)
    }
}

/// The journal of one headless command: the environment's unfinished console session if there
/// is one (so a console session sees what a script did meanwhile), else a session of its own,
/// opened on the first entry and finished when the command ends. Another command's session is
/// never joined.
pub struct CommandJournal {
    dir: PathBuf,
    environment: String,
    database: String,
    command: String,
    open: Mutex<Option<(Journal, bool)>>,
}

impl CommandJournal {
    pub fn new(dir: &Path, environment: &str, database: &str, command: &str) -> CommandJournal {
        CommandJournal {
            dir: dir.to_owned(),
            environment: environment.to_owned(),
            database: database.to_owned(),
            command: command.to_owned(),
            open: Mutex::new(None),
        }
    }
}

impl Recorder for CommandJournal {
    fn record(&self, event: Event) -> Result<Entry> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.is_none() {
            let operator = operator();
            *open = Some(match unfinished(&self.dir, &self.environment)? {
                Some(path) => (
                    Journal {
                        file: reopen(&path)?,
                        path,
                        operator,
                        _hold: None,
                    },
                    false,
                ),
                None => (
                    Journal::open_new(
                        &self.dir,
                        &self.environment,
                        &self.database,
                        &operator,
                        Some(&self.command),
                    )?,
                    true,
                ),
            });
        }
        match open.as_mut() {
            Some((journal, _)) => journal.append(event),
            None => Err(Error::runtime(
                "the journal is not open",
                "check the journal folder",
            )),
        }
    }
}

impl Drop for CommandJournal {
    fn drop(&mut self) {
        let open = self.open.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some((journal, true)) = open.as_mut() {
            let _ = journal.append(Event::SessionFinished);
        }
    }
}

/// Writes the Markdown release report of the session in `journal` to `target`.
pub fn write_report(journal: &Path, target: &Path) -> Result<()> {
    let entries = read(journal)?;
    std::fs::write(target, markdown(&entries)).map_err(|e| {
        Error::runtime(
            format!("cannot write {}: {e}", target.display()),
            "check the folder exists and is writable",
        )
    })
}

/// Every entry of a journal file. A last line cut short by a crash is left out; a damaged line
/// elsewhere is an error naming it.
/// Opens a session's file to append to. An entry torn by a crash was never written: it is cut
/// off, so the next entry starts on a line of its own. Every writer appends under the file's
/// lock, so a line without its end seen under the lock is torn, not being written.
fn reopen(path: &Path) -> Result<File> {
    if let Err(e) = crate::db::files::writable(path) {
        return Err(io_error(
            "cannot reopen journal",
            path,
            &std::io::Error::other(e.to_string()),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| io_error("cannot reopen journal", path, &e))?;
    file.lock()
        .map_err(|e| io_error("cannot lock journal", path, &e))?;
    let repaired = crate::db::files::read(path, None)
        .map_err(|e| {
            io_error(
                "cannot read journal",
                path,
                &std::io::Error::other(e.to_string()),
            )
        })
        .and_then(|bytes| {
            let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if whole == bytes.len() {
                return Ok(());
            }
            file.set_len(whole as u64)
                .map_err(|e| io_error("cannot repair journal", path, &e))
        });
    let _ = file.unlock();
    repaired.map(|()| file)
}

pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let text = crate::db::files::read_to_string(path, None).map_err(|e| {
        io_error(
            "cannot read journal",
            path,
            &std::io::Error::other(e.to_string()),
        )
    })?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => out.push(e),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(Error::input(
                    format!("journal {} line {}: {e}", path.display(), i + 1),
                    "the file was edited or damaged; the other sessions are unaffected",
                ));
            }
        }
    }
    Ok(out)
}

/// The sessions of `environment`, newest first.
pub fn sessions(dir: &Path, environment: &str) -> Result<Vec<PathBuf>> {
    let folder = env_dir(dir, environment);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&folder) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error("cannot read the journal folder", &folder, &e)),
    };
    files.sort_by_cached_key(|p| std::cmp::Reverse(started_order(p)));
    Ok(files)
}

/// The order sessions started in, from the file's name: its second, then the number a session
/// started in the same second as others got (`20261201_110700`, `_2` ... `_10`).
fn started_order(path: &Path) -> (String, u32) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('_') {
        Some((second, n)) if second.contains('_') => match n.parse() {
            Ok(n) => (second.to_owned(), n),
            Err(_) => (stem, 0),
        },
        _ => (stem, 1),
    }
}

/// The environments with at least one session in the journal folder: each one's folder name
/// (its name, made file-safe), how many sessions it has and its newest session's file.
pub fn environments(dir: &Path) -> Result<Vec<(String, usize, PathBuf)>> {
    let folders = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("cannot read the journal folder", dir, &e)),
    };
    let mut out = Vec::new();
    for folder in folders.flatten() {
        if !folder.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = folder.file_name().to_string_lossy().into_owned();
        let found = sessions(dir, &name)?;
        if let Some(newest) = found.first() {
            out.push((name, found.len(), newest.clone()));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest console session of `environment`, if it did not finish. Sessions of headless
/// commands are passed over: they are not for a console to resume, nor for another command to
/// write into. A damaged newest session is not resumed either: the next one starts afresh.
pub fn unfinished(dir: &Path, environment: &str) -> Result<Option<PathBuf>> {
    for path in sessions(dir, environment)? {
        match started_by_command(&path) {
            Some(true) => continue,
            Some(false) => {}
            None => return Ok(None),
        }
        let Ok(entries) = read(&path) else {
            return Ok(None);
        };
        if entries
            .iter()
            .any(|e| matches!(e.event, Event::SessionFinished))
        {
            return Ok(None);
        }
        return Ok(Some(path));
    }
    Ok(None)
}

/// The longest first entry read to tell who started a session (its `session_started` names
/// the environment, database, operator and command: well under this).
const FIRST_ENTRY_MAX: u64 = 64 * 1024;

/// Whether the session at `path` was started by a headless command, from its first entry
/// alone: a history of thousands of command sessions is passed over without reading each one
/// whole. None when that entry cannot be read.
fn started_by_command(path: &Path) -> Option<bool> {
    let file = crate::db::files::open(path).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file)
        .take(FIRST_ENTRY_MAX)
        .read_line(&mut first)
        .ok()?;
    let entry: Entry = serde_json::from_str(first.trim_end()).ok()?;
    Some(matches!(
        entry.event,
        Event::SessionStarted {
            command: Some(_),
            ..
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::start(
            dir.path(),
            "production",
            "postgresql://app:***@db/app",
            "ana",
        )
        .unwrap();
        j.append(Event::StepTicked {
            step: "team_notified".into(),
            title: "Team notified".into(),
            note: Some("#releases".into()),
        })
        .unwrap();
        let path = j.path().to_owned();
        assert_eq!(
            unfinished(dir.path(), "production").unwrap(),
            Some(path.clone())
        );
        // A crash in the middle of a write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"at\":\"2026-")
            .unwrap();
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].operator, "ana");
        assert!(matches!(entries[1].event, Event::StepTicked { .. }));

        // The console that wrote it is gone.
        drop(j);
        let (mut j, before) = Journal::resume(&path, "ben").unwrap();
        assert_eq!(before.len(), 2);
        j.append(Event::SessionFinished).unwrap();
        assert_eq!(unfinished(dir.path(), "production").unwrap(), None);
    }

    #[test]
    fn a_command_joins_a_console_session_but_never_another_commands() {
        let dir = tempfile::tempdir().unwrap();
        // No console session: each command writes a session of its own, finished at its end.
        let deploy = CommandJournal::new(dir.path(), "production", "db", "deploy");
        deploy.record(Event::SessionResumed).unwrap();
        let hooks = CommandJournal::new(dir.path(), "production", "db", "hooks");
        hooks.record(Event::SessionResumed).unwrap();
        drop(deploy);
        drop(hooks);
        let sessions = sessions(dir.path(), "production").unwrap();
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        for s in &sessions {
            let entries = read(s).unwrap();
            assert!(matches!(
                entries.first().map(|e| &e.event),
                Some(Event::SessionStarted {
                    command: Some(_),
                    ..
                })
            ));
            assert!(matches!(
                entries.last().map(|e| &e.event),
                Some(Event::SessionFinished)
            ));
        }
        // A command's unfinished session is nobody's to resume or join.
        let running = CommandJournal::new(dir.path(), "staging", "db", "deploy");
        running.record(Event::SessionResumed).unwrap();
        assert_eq!(unfinished(dir.path(), "staging").unwrap(), None);
        // A console session is joined.
        let console = Journal::start(dir.path(), "production", "db", "ana").unwrap();
        let command = CommandJournal::new(dir.path(), "production", "db", "deploy");
        command.record(Event::SessionResumed).unwrap();
        drop(command);
        let entries = read(console.path()).unwrap();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(
            unfinished(dir.path(), "production").unwrap(),
            Some(console.path().to_owned())
        );

        // The console crashed in the middle of a write: the torn entry is cut off, and the
        // commands after it still journal, there.
        std::fs::OpenOptions::new()
            .append(true)
            .open(console.path())
            .unwrap()
            .write_all(b"{\"at\":\"2026-12-01T11:07:00Z\",\"event\":\"step_tic")
            .unwrap();
        for command in ["deploy", "hooks"] {
            CommandJournal::new(dir.path(), "production", "db", command)
                .record(Event::SessionResumed)
                .unwrap();
        }
        let entries = read(console.path()).unwrap();
        assert_eq!(entries.len(), 4, "{entries:?}");
        assert!(
            std::fs::read_to_string(console.path())
                .unwrap()
                .ends_with("}\n")
        );

        // A session damaged beyond a torn end is not joined: the next command starts its own.
        std::fs::OpenOptions::new()
            .append(true)
            .open(console.path())
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        assert_eq!(unfinished(dir.path(), "production").unwrap(), None);
        CommandJournal::new(dir.path(), "production", "db", "deploy")
            .record(Event::SessionResumed)
            .unwrap();
        assert_eq!(super::sessions(dir.path(), "production").unwrap().len(), 4);
    }

    #[test]
    fn sessions_started_in_the_same_second_are_in_the_order_they_started() {
        let dir = tempfile::tempdir().unwrap();
        let folder = env_dir(dir.path(), "production");
        std::fs::create_dir_all(&folder).unwrap();
        for name in [
            "20261201_110659",
            "20261201_110700",
            "20261201_110700_2",
            "20261201_110700_9",
            "20261201_110700_10",
            "20261201_110701",
        ] {
            std::fs::write(folder.join(format!("{name}.jsonl")), b"").unwrap();
        }
        let names: Vec<String> = sessions(dir.path(), "production")
            .unwrap()
            .iter()
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "20261201_110701",
                "20261201_110700_10",
                "20261201_110700_9",
                "20261201_110700_2",
                "20261201_110700",
                "20261201_110659",
            ]
        );
    }

    #[test]
    fn a_command_passes_over_other_commands_sessions_by_their_first_entry() {
        let dir = tempfile::tempdir().unwrap();
        let console = Journal::start(dir.path(), "production", "db", "ana").unwrap();
        let staging = CommandJournal::new(dir.path(), "staging", "db", "deploy");
        staging.record(Event::SessionResumed).unwrap();
        drop(staging);
        let command_session = sessions(dir.path(), "staging").unwrap().remove(0);
        // Newer sessions of commands, the newest damaged after its first entry: none of them
        // is the console's, and none hides it.
        let folder = console.path().parent().unwrap();
        for n in 0..3 {
            std::fs::copy(
                &command_session,
                folder.join(format!("29991231_2359{n:02}.jsonl")),
            )
            .unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(folder.join("29991231_235902.jsonl"))
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        assert_eq!(sessions(dir.path(), "production").unwrap().len(), 4);
        assert_eq!(
            unfinished(dir.path(), "production").unwrap(),
            Some(console.path().to_owned())
        );
        // A session whose first entry is not one is nobody's to join.
        std::fs::write(folder.join("29991231_235903.jsonl"), b"{\"at\":\"2999-").unwrap();
        assert_eq!(unfinished(dir.path(), "production").unwrap(), None);
    }

    #[test]
    fn a_session_open_in_one_console_cannot_be_resumed_in_another_but_can_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let first = Journal::start(dir.path(), "production", "db", "ana").unwrap();
        let path = first.path().to_owned();
        let holder = held_by(&path).expect("held by the console that started it");
        assert_eq!(holder.operator.as_deref(), Some("ana"));
        assert_eq!(holder.pid, Some(std::process::id()));

        let err = match Journal::resume(&path, "ben") {
            Err(e) => e,
            Ok(_) => panic!("resumed a session another console holds"),
        };
        assert_eq!(err.kind, crate::error::ErrorKind::SessionHeld);
        assert!(err.cause.contains("ana (pid "), "{}", err.cause);
        // Refused before writing anything: the session reads as it was.
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");

        // A headless command still journals into the held session, without waiting.
        CommandJournal::new(dir.path(), "production", "db", "deploy")
            .record(Event::Confirmed {
                what: "deploy 1 migration".into(),
            })
            .unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);

        // Once that console is gone, the session is free to resume, and then held again.
        drop(first);
        assert_eq!(held_by(&path), None);
        let (resumed, before) = Journal::resume(&path, "ben").unwrap();
        assert_eq!(before.len(), 2);
        assert_eq!(
            held_by(&path).and_then(|h| h.operator).as_deref(),
            Some("ben")
        );
        let again = Journal::resume(&path, "chloe").err().map(|e| e.kind);
        assert_eq!(again, Some(crate::error::ErrorKind::SessionHeld));
        drop(resumed);
        assert!(Journal::resume(&path, "chloe").is_ok());
    }

    #[test]
    fn a_skip_is_its_own_event_and_old_skipped_ticks_still_read_as_skips() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::start(dir.path(), "staging", "db", "ana").unwrap();
        j.append(Event::StepSkipped {
            step: "team_notified".into(),
            title: "Team notified".into(),
            note: "nobody on call".into(),
        })
        .unwrap();
        // A line as a journal written before StepSkipped has it.
        let path = j.path().to_owned();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(
                b"{\"at\":\"2026-12-01T11:07:00Z\",\"operator\":\"ben\",\"event\":\"step_ticked\",\"step\":\"integration_tests\",\"title\":\"Integration tests passed (skipped)\",\"note\":\"no suite\"}\n",
            )
            .unwrap();
        let entries = read(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"event\":\"step_skipped\""), "{text}");
        let skips: Vec<Skipped> = entries.iter().filter_map(|e| e.event.skipped()).collect();
        assert_eq!(
            skips,
            [
                Skipped {
                    step: "team_notified",
                    title: "Team notified",
                    note: "nobody on call"
                },
                Skipped {
                    step: "integration_tests",
                    title: "Integration tests passed",
                    note: "no suite"
                }
            ]
        );
        let tick = Event::StepTicked {
            step: "changelog".into(),
            title: "Changelog written".into(),
            note: None,
        };
        assert_eq!(tick.skipped(), None);
    }

    #[test]
    fn a_release_written_before_durations_reads_without_one() {
        let line = r#"{"at":"2026-12-01T11:07:00Z","operator":"ana","event":"released","workflow":"restore","outcome":"ok","summary":"x restored","applied":[],"not_applied":[]}"#;
        let entry: Entry = serde_json::from_str(line).unwrap();
        assert!(matches!(
            entry.event,
            Event::Released {
                duration_ms: None,
                ..
            }
        ));
    }

    #[test]
    fn known_passwords_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let _secret = crate::target::secret::Secret::new("s3cr3t-journal-pw");
        let mut j = Journal::start(dir.path(), "staging", "db", "ana").unwrap();
        j.append(Event::Override {
            what: "deploy without backup".into(),
            reason: "pasted the URL postgresql://u:s3cr3t-journal-pw@h/db by mistake".into(),
        })
        .unwrap();
        let text = std::fs::read_to_string(j.path()).unwrap();
        assert!(!text.contains("s3cr3t-journal-pw"), "{text}");
    }
}
