//! One console per session: a console holds an exclusive advisory lock (flock) for as long as
//! its session is open, so a second console cannot resume it, and learns who holds it instead.
//!
//! The lock is on a file beside the session (`<session>.lock`), not on the session file itself:
//! every writer, the console and the headless commands that journal into its session meanwhile,
//! takes the session file's own lock for the moment of each append, and would wait forever
//! behind a lock held for the whole session. The lock file also says who holds it; the lock,
//! not what the file says, decides whether it is held (a dead holder's lock goes with it).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// Who holds a session: what the holding console wrote beside it. A field it had not written
/// yet (or that cannot be read) is None.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: Option<u32>,
    pub operator: Option<String>,
    pub host: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

impl std::fmt::Display for Holder {
    /// "ana (pid 4242 on db-admin-1, since 2026-12-01 15:04 UTC)"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.operator.as_deref().unwrap_or("another console"))?;
        let mut details = Vec::new();
        match (self.pid, &self.host) {
            (Some(pid), Some(host)) => details.push(format!("pid {pid} on {host}")),
            (Some(pid), None) => details.push(format!("pid {pid}")),
            (None, Some(host)) => details.push(format!("on {host}")),
            (None, None) => {}
        }
        if let Some(since) = self.since {
            details.push(format!("since {}", since.format("%Y-%m-%d %H:%M UTC")));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

/// The lock file of the session in `session`.
fn lock_path(session: &Path) -> PathBuf {
    session.with_extension("lock")
}

/// Opens the lock file: never through a link, never a pipe or a device.
fn open_lock(path: &Path, create: bool) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// A session held by this process; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct SessionHold {
    lock: Flock<File>,
}

impl SessionHold {
    /// Takes the session's lock without waiting, and says who holds it; a session another
    /// console holds is an error of kind [`ErrorKind::SessionHeld`] naming the holder.
    pub fn take(session: &Path, operator: &str) -> Result<SessionHold> {
        let path = lock_path(session);
        let file = open_lock(&path, true).map_err(|e| {
            Error::runtime(
                format!(
                    "cannot open the session's lock file {}: {e}",
                    path.display()
                ),
                "check the journal folder's permissions (PGDECK_JOURNAL_DIR moves it)",
            )
        })?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(held_error(session, &held_by(session).unwrap_or_default()));
            }
            Err((_, errno)) => {
                return Err(Error::runtime(
                    format!("cannot lock the session {}: {errno}", session.display()),
                    "check the journal folder's file system supports locks (PGDECK_JOURNAL_DIR moves it)",
                ));
            }
        };
        let me = Holder {
            pid: Some(std::process::id()),
            operator: Some(operator.to_owned()),
            host: sysinfo::System::host_name(),
            since: Some(Utc::now()),
        };
        // Who holds it is for the message of the next console: the lock holds either way.
        let _ = lock.set_len(0).and_then(|()| lock.rewind()).and_then(|()| {
            lock.write_all(serde_json::to_string(&me).unwrap_or_default().as_bytes())
        });
        Ok(SessionHold { lock })
    }
}

impl Drop for SessionHold {
    fn drop(&mut self) {
        // Nobody holds it now: the lock goes right after, when `lock` drops.
        let _ = self.lock.set_len(0);
    }
}

/// Who holds the session in `session`, if a console does: the console opens a held session
/// read-only ([`super::read`]) instead of resuming it.
pub fn held_by(session: &Path) -> Option<Holder> {
    let file = open_lock(&lock_path(session), false).ok()?;
    let mut file = match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Not held: let go at once.
        Ok(_) => return None,
        Err((file, Errno::EWOULDBLOCK)) => file,
        Err(_) => return None,
    };
    // The holder writes who it is right after taking the lock: a moment to let it.
    let mut holder = Holder::default();
    for _ in 0..10 {
        let mut text = String::new();
        if file
            .rewind()
            .and_then(|()| file.read_to_string(&mut text))
            .is_ok()
            && let Ok(h) = serde_json::from_str::<Holder>(&text)
        {
            holder = h;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(holder)
}

fn held_error(session: &Path, holder: &Holder) -> Error {
    Error::new(
        ErrorKind::SessionHeld,
        format!(
            "the session {} is open in another console: {holder}",
            session.display()
        ),
        "close that console to resume it here, open it read-only, or start a new session",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_session_names_its_holder_and_is_free_again_once_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let session = dir.path().join("20261201_150000.jsonl");
        std::fs::write(&session, "").unwrap();
        assert_eq!(held_by(&session), None, "no lock file yet");
        let hold = SessionHold::take(&session, "ana").unwrap();
        let holder = held_by(&session).expect("held");
        assert_eq!(holder.pid, Some(std::process::id()));
        assert_eq!(holder.operator.as_deref(), Some("ana"));
        assert!(holder.since.is_some());

        let err = SessionHold::take(&session, "ben").unwrap_err();
        assert_eq!(err.kind, ErrorKind::SessionHeld);
        assert!(
            err.cause.contains("is open in another console: ana (pid "),
            "{}",
            err.cause
        );
        assert!(err.hint.contains("read-only"), "{}", err.hint);

        drop(hold);
        assert_eq!(held_by(&session), None);
        let again = SessionHold::take(&session, "ben").unwrap();
        assert_eq!(
            held_by(&session).and_then(|h| h.operator).as_deref(),
            Some("ben")
        );
        drop(again);
    }

    #[test]
    fn the_lock_is_a_flock_another_process_sees() {
        let dir = tempfile::tempdir().unwrap();
        let session = dir.path().join("s.jsonl");
        std::fs::write(dir.path().join("s.lock"), "").unwrap();
        // util-linux's flock(1) locks it for a shell that then becomes `sleep`: another
        // process holds it, writing no holder, until it is killed.
        let Ok(mut other) = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec 9<"$0" && flock --exclusive --nonblock 9 && exec sleep 30"#)
            .arg(dir.path().join("s.lock"))
            .spawn()
        else {
            eprintln!("flock(1) is not installed: skipped");
            return;
        };
        let start = std::time::Instant::now();
        while held_by(&session).is_none() {
            assert!(start.elapsed() < Duration::from_secs(10), "never held");
            std::thread::sleep(Duration::from_millis(20));
        }
        let err = SessionHold::take(&session, "ana").unwrap_err();
        assert_eq!(err.kind, ErrorKind::SessionHeld);
        assert!(
            err.cause.ends_with("in another console: another console"),
            "{}",
            err.cause
        );
        let _ = other.kill();
        let _ = other.wait();
        assert!(SessionHold::take(&session, "ana").is_ok());
    }

    #[test]
    fn a_holder_reads_in_words_with_what_is_known() {
        let full = Holder {
            pid: Some(4242),
            operator: Some("ana".into()),
            host: Some("db-admin-1".into()),
            since: "2026-12-01T15:04:00Z".parse().ok(),
        };
        assert_eq!(
            full.to_string(),
            "ana (pid 4242 on db-admin-1, since 2026-12-01 15:04 UTC)"
        );
        assert_eq!(Holder::default().to_string(), "another console");
    }

    #[test]
    fn a_planted_link_is_never_followed_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let session = dir.path().join("s.jsonl");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "keep").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("s.lock")).unwrap();
        let err = SessionHold::take(&session, "ana").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Runtime);
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
    }
}
