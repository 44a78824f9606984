//! Following the server's own log. `pg_current_logfile()` names the file the logging collector
//! writes. On a unix-socket connection the server runs on this machine, and the file is followed
//! locally when it can be opened (as `tail -F`, switching when the server starts a new file).
//! Otherwise a role that may run `pg_read_binary_file` and `pg_stat_file` (a superuser, or one
//! granted them) reads the new bytes through the monitor's read-only guest session. Else the
//! state says why the log is not shown.
//!
//! The binary read keeps bytes that are not valid in the server's encoding (a client's text in
//! a message) from failing the read: they are shown replaced.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::file::{Found, Tailer};
use super::{LogLine, LogSettings, LogState, Out, Splitter, last_lines};
use crate::target::{DbTarget, Host};

/// The bytes read per request at most.
const READ_PER_REQUEST: i64 = 1 << 20;
/// How far back from the end the context lines are looked for.
const CONTEXT_BYTES: i64 = 64 * 1024;

const RECONNECT_HINT: &str = "the server's log is followed again once the server answers";

/// How the log is read.
enum Mode {
    /// The file itself, on this machine.
    Local { path: PathBuf },
    /// Through `pg_read_binary_file`.
    Remote,
}

/// What the server and the role allow.
struct Decision {
    client: Client,
    /// As `pg_current_logfile()` says it: relative to the data directory, or absolute.
    name: String,
    data_dir: Option<String>,
    mode: Mode,
}

enum Refusal {
    /// Not shown, for good.
    Unavailable { reason: String, hint: String },
    /// The server could not be asked (down, unreachable): tried again.
    Failed(String),
}

pub(super) async fn follow(target: &DbTarget, settings: &LogSettings, out: &mut Out) {
    let mut attempt = 0;
    let decision = loop {
        match decide(target).await {
            Ok(d) => break d,
            Err(Refusal::Unavailable { reason, hint }) => {
                out.state(LogState::Unavailable { reason, hint });
                return;
            }
            Err(Refusal::Failed(cause)) => {
                attempt += 1;
                let retry = crate::monitor::watch::backoff(attempt);
                out.state(LogState::Error {
                    cause,
                    hint: RECONNECT_HINT.into(),
                    retry_in_ms: Some(retry.as_millis() as u64),
                });
                if !out.pause(retry).await {
                    return;
                }
            }
        }
    };
    match decision.mode {
        Mode::Local { ref path } => {
            let path = path.clone();
            local(target, decision, &path, settings, out).await
        }
        Mode::Remote => remote(target, decision, settings, out).await,
    }
}

async fn decide(target: &DbTarget) -> Result<Decision, Refusal> {
    let session = crate::monitor::guest(target)
        .await
        .map_err(|e| Refusal::Failed(e.cause))?;
    let client = session.client;
    let row = client
        .query_one(
            "SELECT has_function_privilege('pg_catalog.pg_current_logfile()', 'EXECUTE'), \
                    current_setting('logging_collector'), \
                    CASE WHEN pg_has_role(current_user, 'pg_read_all_settings', 'USAGE') \
                         THEN current_setting('data_directory') END, \
                    has_function_privilege( \
                        'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)', 'EXECUTE') \
                    AND has_function_privilege('pg_catalog.pg_stat_file(text, boolean)', 'EXECUTE')",
            &[],
        )
        .await
        .map_err(|e| Refusal::Failed(format!("asking the server about its log: {e}")))?;
    let (may_name, collector, data_dir, may_read): (bool, String, Option<String>, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if !may_name {
        return Err(Refusal::Unavailable {
            reason: "the server's log is not shown: this role may not ask which file it is \
                     (pg_current_logfile)"
                .into(),
            hint: "monitor as a superuser, or GRANT EXECUTE ON FUNCTION pg_current_logfile() \
                   to the monitoring role"
                .into(),
        });
    }
    let name = current_logfile(&client)
        .await
        .map_err(|e| Refusal::Failed(format!("asking the server for its log file: {e}")))?;
    let Some(name) = name else {
        return Err(Refusal::Unavailable {
            reason: if collector == "on" {
                "the server's log is not shown: it writes no log file (log_destination has none \
                 of stderr, csvlog, jsonlog)"
                    .into()
            } else {
                "the server's log is not shown: its logging_collector is off, so its log goes \
                 wherever its output goes (the service's journal, syslog, a file of pg_ctl -l), \
                 not to a file it can name"
                    .into()
            },
            hint: "set logging_collector = on (it takes a restart), or follow the log where it \
                   goes with app_log or app_log_command (e.g. journalctl -fu postgresql)"
                .into(),
        });
    };
    let local = match &target.host {
        Host::Socket(_) => match resolve(data_dir.as_deref(), &name) {
            Some(path) => match crate::db::files::open(&path) {
                Ok(_) => {
                    return Ok(Decision {
                        client,
                        name,
                        data_dir,
                        mode: Mode::Local { path },
                    });
                }
                Err(e) => format!("{} cannot be read here: {e}", path.display()),
            },
            None => format!(
                "{name} is relative to the data directory, which this role may not see \
                 (pg_read_all_settings)"
            ),
        },
        Host::Tcp(_) => "the connection is not a unix socket, so the server's files are not \
                         known to be on this machine"
            .into(),
    };
    if may_read {
        return Ok(Decision {
            client,
            name,
            data_dir,
            mode: Mode::Remote,
        });
    }
    Err(Refusal::Unavailable {
        reason: format!(
            "the server's log is not shown: {local}, and this role may not read it through the \
             server (pg_read_binary_file, pg_stat_file)"
        ),
        hint: "monitor as a superuser, or grant the monitoring role EXECUTE on \
               pg_read_binary_file(text, bigint, bigint, boolean) and pg_stat_file(text, boolean) \
               (and pg_read_server_files when log_directory is outside the data directory)"
            .into(),
    })
}

async fn current_logfile(client: &Client) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT pg_current_logfile()", &[])
        .await?
        .get(0))
}

/// The log file's path on this machine: as named when absolute, else inside the data directory.
fn resolve(data_dir: Option<&str>, name: &str) -> Option<PathBuf> {
    let name = Path::new(name);
    if name.is_absolute() {
        Some(name.to_owned())
    } else {
        data_dir.map(|d| Path::new(d).join(name))
    }
}

/// Follows the file on this machine; the server is asked every `server_poll` whether it started
/// a new one. Losing the session does not stop the reading: it is opened again at the next ask.
async fn local(
    target: &DbTarget,
    decision: Decision,
    path: &Path,
    settings: &LogSettings,
    out: &mut Out,
) {
    let Decision {
        client,
        mut name,
        data_dir,
        ..
    } = decision;
    let mut client = Some(client);
    let mut tailer = Tailer::new(path, settings.context_lines);
    let mut asked = Instant::now();
    loop {
        let mut lines = Vec::new();
        let found = tailer.look(&mut lines);
        out.lines(lines);
        let what = format!("{} (on this machine)", tailer.path().display());
        match found {
            Found::Following => out.state(LogState::Following { what, pid: None }),
            Found::Missing => out.state(LogState::Waiting {
                reason: format!("waiting for {} to appear", tailer.path().display()),
                what,
            }),
            Found::Refused(cause) => {
                out.state(LogState::Error {
                    cause,
                    hint: "check log_directory and log_filename on the server".into(),
                    retry_in_ms: None,
                });
                return;
            }
            Found::Failed(cause) => out.state(LogState::Error {
                cause,
                hint: "check that the server's log is readable by the user pgdeck runs as".into(),
                retry_in_ms: Some(settings.poll.as_millis() as u64),
            }),
        }
        if asked.elapsed() >= settings.server_poll {
            asked = Instant::now();
            if client.as_ref().is_none_or(Client::is_closed) {
                client = crate::monitor::guest(target).await.ok().map(|s| s.client);
            }
            if let Some(c) = &client {
                match current_logfile(c).await {
                    Ok(Some(now)) if now != name => {
                        if let Some(next) = resolve(data_dir.as_deref(), &now) {
                            let mut lines = Vec::new();
                            tailer.switch(&next, &mut lines);
                            lines.push(LogLine::notice(&format!(
                                "the server started a new log file: {}",
                                next.display()
                            )));
                            out.lines(lines);
                        }
                        name = now;
                    }
                    Ok(_) => {}
                    Err(_) => client = None,
                }
            }
        }
        let pause = if tailer.behind() {
            std::time::Duration::ZERO
        } else {
            settings.poll
        };
        if !out.pause(pause).await {
            return;
        }
    }
}

/// Where a read through the server stands; kept across reconnects.
struct Remote {
    name: String,
    /// None until the first read, which starts at the end (with the last lines for context).
    pos: Option<i64>,
    splitter: Splitter,
    context_lines: usize,
}

enum ReadError {
    /// The role was refused: for good.
    Denied(String),
    /// The session failed: open another.
    Lost(String),
}

impl From<tokio_postgres::Error> for ReadError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            ReadError::Denied(
                e.as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_else(|| e.to_string()),
            )
        } else {
            ReadError::Lost(crate::db::query_error("reading the server's log", &e).cause)
        }
    }
}

async fn remote(target: &DbTarget, decision: Decision, settings: &LogSettings, out: &mut Out) {
    let mut client = Some(decision.client);
    let mut at = Remote {
        name: decision.name,
        pos: None,
        splitter: Splitter::default(),
        context_lines: settings.context_lines,
    };
    let mut attempt = 0;
    loop {
        let c = match client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => match crate::monitor::guest(target).await {
                Ok(s) => s.client,
                Err(e) => {
                    attempt += 1;
                    let retry = crate::monitor::watch::backoff(attempt);
                    out.state(LogState::Error {
                        cause: e.cause,
                        hint: RECONNECT_HINT.into(),
                        retry_in_ms: Some(retry.as_millis() as u64),
                    });
                    if !out.pause(retry).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let mut lines = Vec::new();
        let result = at.read(&c, &mut lines).await;
        out.lines(lines);
        match result {
            Ok(()) => {
                attempt = 0;
                client = Some(c);
                out.state(LogState::Following {
                    what: format!("{} (read through the server)", at.name),
                    pid: None,
                });
            }
            Err(ReadError::Denied(cause)) => {
                out.state(LogState::Unavailable {
                    reason: format!("the server's log is not shown: {cause}"),
                    hint: "monitor as a superuser, or grant the monitoring role EXECUTE on \
                           pg_read_binary_file and pg_stat_file (and pg_read_server_files when \
                           log_directory is outside the data directory)"
                        .into(),
                });
                return;
            }
            Err(ReadError::Lost(cause)) => {
                attempt += 1;
                let retry = crate::monitor::watch::backoff(attempt);
                out.state(LogState::Error {
                    cause,
                    hint: RECONNECT_HINT.into(),
                    retry_in_ms: Some(retry.as_millis() as u64),
                });
                if !out.pause(retry).await {
                    return;
                }
                continue;
            }
        }
        if !out.pause(settings.server_poll).await {
            return;
        }
    }
}

impl Remote {
    /// Reads what was appended since the last read (at most a few requests' worth).
    async fn read(&mut self, c: &Client, lines: &mut Vec<LogLine>) -> Result<(), ReadError> {
        let row = c
            .query_one(
                "SELECT f, (pg_stat_file(f, true)).size FROM pg_current_logfile() AS f",
                &[],
            )
            .await?;
        let (name, size): (Option<String>, Option<i64>) = (row.get(0), row.get(1));
        let Some(name) = name else {
            return Ok(());
        };
        if name != self.name {
            // The rest of the old file, then the new one from its start.
            if let Some(pos) = self.pos {
                let rest = read_bytes(c, &self.name, pos, READ_PER_REQUEST).await?;
                self.lines(&rest, lines);
            }
            if let Some(l) = self.splitter.flush() {
                lines.push(LogLine::read(&l, false));
            }
            lines.push(LogLine::notice(&format!(
                "the server started a new log file: {name}"
            )));
            self.name = name;
            self.pos = Some(0);
        }
        let size = size.unwrap_or(0);
        let mut pos = match self.pos {
            None => {
                let from = (size - CONTEXT_BYTES).max(0);
                let tail = read_bytes(c, &self.name, from, size - from).await?;
                let (context, partial) = last_lines(&tail, from == 0, self.context_lines);
                lines.extend(context.iter().map(|l| LogLine::read(l, true)));
                self.splitter.feed(&partial);
                from + tail.len() as i64
            }
            Some(pos) if size < pos => {
                if let Some(l) = self.splitter.flush() {
                    lines.push(LogLine::read(&l, false));
                }
                lines.push(LogLine::notice(&format!(
                    "{} was truncated; following it from its start",
                    self.name
                )));
                0
            }
            Some(pos) => pos,
        };
        for _ in 0..4 {
            if pos >= size {
                break;
            }
            let bytes = read_bytes(c, &self.name, pos, (size - pos).min(READ_PER_REQUEST)).await?;
            if bytes.is_empty() {
                break;
            }
            pos += bytes.len() as i64;
            self.lines(&bytes, lines);
        }
        self.pos = Some(pos);
        Ok(())
    }

    fn lines(&mut self, bytes: &[u8], lines: &mut Vec<LogLine>) {
        lines.extend(
            self.splitter
                .feed(bytes)
                .iter()
                .map(|l| LogLine::read(l, false)),
        );
    }
}

/// `length` bytes of the server's file `name` from `offset` (fewer at its end; none when it is
/// gone).
async fn read_bytes(
    c: &Client,
    name: &str,
    offset: i64,
    length: i64,
) -> Result<Vec<u8>, tokio_postgres::Error> {
    if length <= 0 {
        return Ok(Vec::new());
    }
    let row = c
        .query_one(
            "SELECT pg_read_binary_file($1, $2, $3, true)",
            &[&name, &offset, &length],
        )
        .await?;
    Ok(row.get::<_, Option<Vec<u8>>>(0).unwrap_or_default())
}
