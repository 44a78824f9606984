//! Following a file like `tail -F`: from its end (after the last few lines, for context),
//! appends as they come, from the start again after a truncation, and by its path after a
//! rotation (the old file read to its end first). A missing file is waited for; a FIFO, device
//! or folder at the path is refused, never opened in a way that could block.
//!
//! Polling: each look is an `fstat` of the open file and a `stat` of the path, so an idle
//! follower costs two system calls per [`LogSettings::poll`]. Reads are bounded per look and
//! done in place: a regular file's read does not wait on a writer.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{LogLine, LogSettings, LogState, Out, Splitter, last_lines};
use crate::db::files::{self, Refused};

/// What one look at the file found.
#[derive(Debug, PartialEq)]
pub(super) enum Found {
    /// The file is open and followed ("opened" for the first time, or again after a rotation).
    Following,
    Missing,
    /// Something other than a regular file is at the path: followed no further.
    Refused(String),
    /// Reading failed (permissions, I/O): tried again.
    Failed(String),
}

/// A file followed by its path.
pub(super) struct Tailer {
    path: PathBuf,
    open: Option<Opened>,
    splitter: Splitter,
    context_lines: usize,
    /// Whether the file was open before: the first open starts at the end, later ones (the file
    /// appeared, or replaced its rotated predecessor) at the start.
    seen: bool,
    behind: bool,
    /// The read buffer, kept: an idle look allocates nothing.
    buf: Vec<u8>,
}

struct Opened {
    file: File,
    dev: u64,
    ino: u64,
    pos: u64,
}

/// At most this much is read per look; a follower behind by more catches up on the next.
const READ_PER_LOOK: u64 = 1 << 20;
/// How far back from the end the context lines are looked for.
const CONTEXT_BYTES: u64 = 64 * 1024;

impl Tailer {
    pub(super) fn new(path: &Path, context_lines: usize) -> Tailer {
        Tailer {
            path: path.to_owned(),
            open: None,
            splitter: Splitter::default(),
            context_lines,
            seen: false,
            behind: false,
            buf: Vec::new(),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Follows another path from its start (the server named a new log file); the old file is
    /// read to its end first.
    pub(super) fn switch(&mut self, path: &Path, lines: &mut Vec<LogLine>) {
        if let Some(mut open) = self.open.take() {
            self.read(&mut open, lines);
        }
        self.flush(lines);
        self.path = path.to_owned();
        self.seen = true;
    }

    /// Looks once: opens the file if needed, reads what was appended, notices a truncation or
    /// a rotation. Lines and notices go to `lines`.
    pub(super) fn look(&mut self, lines: &mut Vec<LogLine>) -> Found {
        let Some(mut open) = self.open.take() else {
            return self.open(lines);
        };
        let len = match open.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Found::Failed(format!("{}: {e}", self.path.display())),
        };
        if len < open.pos {
            self.flush(lines);
            lines.push(LogLine::notice(&format!(
                "{} was truncated; following it from its start",
                self.path.display()
            )));
            open.pos = 0;
        }
        self.read(&mut open, lines);
        // Replaced (rotated) or removed: what was written to the old file before is read, then
        // the path is followed again.
        let same = match std::fs::metadata(&self.path) {
            Ok(m) => m.dev() == open.dev && m.ino() == open.ino,
            Err(_) => false,
        };
        if same {
            self.open = Some(open);
            return Found::Following;
        }
        self.read(&mut open, lines);
        self.flush(lines);
        drop(open);
        let mut fresh = Vec::new();
        let found = self.open(&mut fresh);
        let what = self.path.display();
        match found {
            Found::Following => lines.push(LogLine::notice(&format!(
                "{what} was replaced (rotated); following the new file from its start"
            ))),
            Found::Missing => lines.push(LogLine::notice(&format!(
                "{what} was removed; waiting for it to appear again"
            ))),
            _ => {}
        }
        lines.append(&mut fresh);
        found
    }

    /// Whether the last look stopped at its read budget with more to read: look again at once.
    pub(super) fn behind(&self) -> bool {
        self.behind
    }

    fn open(&mut self, lines: &mut Vec<LogLine>) -> Found {
        let refused = |e: Refused| match e {
            Refused::NotFound => Found::Missing,
            Refused::NotRegular(_) => Found::Refused(format!("{}: {e}", self.path.display())),
            e => Found::Failed(format!("{}: {e}", self.path.display())),
        };
        // Checked before opening (a FIFO or device is never opened), and again once open.
        match files::regular(&self.path) {
            Ok(true) => {}
            Ok(false) => {
                // Not there when following started: all it will hold is new.
                self.seen = true;
                return Found::Missing;
            }
            Err(e) => return refused(e),
        }
        let file = match files::open(&self.path) {
            Ok(f) => f,
            Err(e) => return refused(e),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return Found::Failed(format!("{}: {e}", self.path.display())),
        };
        let mut open = Opened {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            pos: 0,
        };
        if !self.seen {
            // The first open: the last lines for context, then what comes.
            let len = meta.len();
            let from = len.saturating_sub(CONTEXT_BYTES);
            let mut tail = vec![0; (len - from) as usize];
            match read_exact_at(&open.file, &mut tail, from) {
                Ok(n) => tail.truncate(n),
                Err(e) => return Found::Failed(format!("{}: {e}", self.path.display())),
            }
            let (context, partial) = last_lines(&tail, from == 0, self.context_lines);
            lines.extend(context.iter().map(|l| LogLine::read(l, true)));
            self.splitter = Splitter::default();
            self.splitter.feed(&partial);
            open.pos = from + tail.len() as u64;
        }
        self.seen = true;
        self.read(&mut open, lines);
        self.open = Some(open);
        Found::Following
    }

    fn read(&mut self, open: &mut Opened, lines: &mut Vec<LogLine>) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(64 * 1024, 0);
        let mut budget = READ_PER_LOOK;
        self.behind = false;
        loop {
            if budget == 0 {
                self.behind = true;
                break;
            }
            let want = buf.len().min(budget as usize);
            match open.file.read_at(&mut buf[..want], open.pos) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    open.pos += n as u64;
                    budget -= n as u64;
                    let done = self.splitter.feed(&buf[..n]);
                    lines.extend(done.iter().map(|l| LogLine::read(l, false)));
                }
            }
        }
        self.buf = buf;
    }

    fn flush(&mut self, lines: &mut Vec<LogLine>) {
        if let Some(l) = self.splitter.flush() {
            lines.push(LogLine::read(&l, false));
        }
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// How often a file that is missing or unreadable is looked for.
const RETRY: Duration = Duration::from_secs(1);

pub(super) async fn follow(path: &Path, settings: &LogSettings, out: &mut Out) {
    let mut tailer = Tailer::new(path, settings.context_lines);
    let what = path.display().to_string();
    loop {
        let mut lines = Vec::new();
        let found = tailer.look(&mut lines);
        out.lines(lines);
        let pause = match found {
            Found::Following => {
                out.state(LogState::Following {
                    what: what.clone(),
                    pid: None,
                });
                if tailer.behind() {
                    Duration::ZERO
                } else {
                    settings.poll
                }
            }
            Found::Missing => {
                out.state(LogState::Waiting {
                    what: what.clone(),
                    reason: format!("waiting for {what} to appear"),
                });
                settings.poll.max(RETRY.min(settings.poll * 4))
            }
            Found::Refused(cause) => {
                out.state(LogState::Error {
                    cause,
                    hint: "point app_log at the application's log file itself".into(),
                    retry_in_ms: None,
                });
                return;
            }
            Found::Failed(cause) => {
                let retry = RETRY.max(settings.poll);
                out.state(LogState::Error {
                    cause,
                    hint: "check that the file is readable by the user pgdeck runs as".into(),
                    retry_in_ms: Some(retry.as_millis() as u64),
                });
                retry
            }
        };
        if !out.pause(pause).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn look(t: &mut Tailer) -> (Found, Vec<String>) {
        let mut lines = Vec::new();
        let found = t.look(&mut lines);
        (found, lines.into_iter().map(|l| l.text).collect())
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_file_is_followed_from_its_end_through_truncation_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, "old 1\nold 2\nold 3\nhalf");
        let mut t = Tailer::new(&path, 2);
        let mut first = Vec::new();
        assert_eq!(t.look(&mut first), Found::Following);
        assert_eq!(
            first
                .iter()
                .map(|l| (l.text.as_str(), l.context))
                .collect::<Vec<_>>(),
            [("old 2", true), ("old 3", true)],
            "the last lines, for context"
        );
        append(&path, " done\nnew\n");
        assert_eq!(look(&mut t).1, ["half done", "new"]);
        assert!(look(&mut t).1.is_empty());

        // copytruncate
        std::fs::write(&path, "").unwrap();
        append(&path, "after truncate\n");
        let lines = look(&mut t).1;
        assert!(lines[0].contains("was truncated"), "{lines:?}");
        assert_eq!(lines[1..], ["after truncate"]);

        // create: the old file is renamed, a new one takes its path
        append(&path, "last words of the old file\n");
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        append(&path, "first of the new file\n");
        let lines = look(&mut t).1;
        assert_eq!(lines[0], "last words of the old file");
        assert!(lines[1].contains("was replaced"), "{lines:?}");
        assert_eq!(lines[2], "first of the new file");

        // removed: waited for again, read from its start when it is back
        std::fs::remove_file(&path).unwrap();
        let (found, lines) = look(&mut t);
        assert_eq!(found, Found::Missing);
        assert!(lines[0].contains("was removed"), "{lines:?}");
        append(&path, "back\n");
        assert_eq!(look(&mut t).1, ["back"]);
    }

    #[test]
    fn a_follower_far_behind_catches_up_look_by_look() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, "");
        let mut t = Tailer::new(&path, 2);
        assert!(look(&mut t).1.is_empty());
        let line = format!("{}\n", "x".repeat(1023));
        append(&path, &line.repeat(3 * 1024 + 10));
        let mut read = 0;
        let mut looks = 0;
        loop {
            read += look(&mut t).1.len();
            looks += 1;
            if !t.behind() {
                break;
            }
        }
        assert_eq!((read, looks), (3 * 1024 + 10, 4), "1 MiB a look");
    }

    #[test]
    fn a_file_that_appears_later_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut t = Tailer::new(&path, 2);
        assert_eq!(look(&mut t), (Found::Missing, vec![]));
        append(&path, "one\ntwo\nthree\n");
        let mut lines = Vec::new();
        assert_eq!(t.look(&mut lines), Found::Following);
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.text.as_str(), l.context))
                .collect::<Vec<_>>(),
            [("one", false), ("two", false), ("three", false)]
        );
    }

    #[test]
    fn a_fifo_or_a_folder_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        match Tailer::new(&fifo, 5).look(&mut Vec::new()) {
            Found::Refused(why) => assert!(why.contains("FIFO"), "{why}"),
            other => panic!("{other:?}"),
        }
        match Tailer::new(dir.path(), 5).look(&mut Vec::new()) {
            Found::Refused(why) => assert!(why.contains("folder"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
