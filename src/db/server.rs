//! The cluster a target reaches, when it runs on this machine: found from the server itself
//! (its `data_directory`, its checkpointer's parent process against the directory's
//! `postmaster.pid`), stopped and started with its own `pg_ctl` as the directory's owner, on
//! the command line it was started with (`postmaster.opts`). Only work that must replace the
//! cluster's files (an in-place point-in-time recovery) uses it.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::target::{DbTarget, Host};

/// A server running on this machine, as found.
#[derive(Debug, Clone)]
pub struct LocalServer {
    pub data_dir: PathBuf,
    /// The postmaster's process id.
    pub pid: u32,
    pub port: u16,
    /// The data directory's owner, whom the server runs as.
    pub owner: String,
    /// Its `pg_ctl`, beside the `postgres` it runs.
    pg_ctl: PathBuf,
    /// What the postmaster was started with, after its data directory.
    options: Vec<String>,
}

/// Whether a target's host is this machine: a unix socket, or a loopback name or address.
pub fn is_local_host(target: &DbTarget) -> bool {
    match &target.host {
        Host::Socket(_) => true,
        Host::Tcp(h) => {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

impl LocalServer {
    /// The server `client` is connected to, when it runs on this machine and this process may
    /// act as its owner; else why not (Ok(Err)). A failure to ask it is Err.
    pub async fn find(
        client: &Client,
        target: &DbTarget,
    ) -> Result<std::result::Result<LocalServer, String>> {
        if !is_local_host(target) {
            return Ok(Err(format!(
                "the server is reached over the network at {}: recovering it in place runs on its own host",
                target.host
            )));
        }
        let row = client
            .query_one(
                "SELECT current_setting('data_directory'), current_setting('port')::int, \
                        (SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer')",
                &[],
            )
            .await
            .map_err(|e| super::query_error("reading the server's data directory", &e))?;
        let data_dir = PathBuf::from(row.get::<_, String>(0));
        let port = row.get::<_, i32>(1) as u16;
        let checkpointer: Option<i32> = row.get(2);
        let pid_file = match std::fs::read_to_string(data_dir.join("postmaster.pid")) {
            Ok(t) => t,
            Err(e) => {
                return Ok(Err(format!(
                    "the server's data directory {} is not readable here ({e}): it runs on another host, or as a user this one cannot act for",
                    data_dir.display()
                )));
            }
        };
        let mut lines = pid_file.lines();
        let pid: Option<u32> = lines.next().and_then(|l| l.trim().parse().ok());
        let file_port: Option<u16> = lines.nth(2).and_then(|l| l.trim().parse().ok());
        let parent = checkpointer.and_then(|c| parent_of(c as u32));
        let Some(pid) = pid.filter(|p| Some(*p) == parent && file_port == Some(port)) else {
            return Ok(Err(format!(
                "{} on this machine is not the server connected to (its postmaster.pid names process {} on port {}; the server's checkpointer's parent is {}, on port {port})",
                data_dir.display(),
                pid.map_or("-".into(), |p| p.to_string()),
                file_port.map_or("-".into(), |p| p.to_string()),
                parent.map_or("not visible here".into(), |p| p.to_string())
            )));
        };
        let meta = std::fs::metadata(&data_dir).map_err(|e| {
            Error::runtime(
                format!("reading {}: {e}", data_dir.display()),
                "check its permissions",
            )
        })?;
        let me = nix::unistd::geteuid();
        if !me.is_root() && me.as_raw() != meta.uid() {
            return Ok(Err(format!(
                "{} belongs to user id {}, and this process runs as {}: only the server's user (or root) can stop and restore it",
                data_dir.display(),
                meta.uid(),
                me.as_raw()
            )));
        }
        let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
            .ok()
            .flatten()
            .map(|u| u.name)
            .ok_or_else(|| {
                Error::runtime(
                    format!(
                        "the owner of {} (user id {}) has no name",
                        data_dir.display(),
                        meta.uid()
                    ),
                    "the server's user must exist in /etc/passwd",
                )
            })?;
        let opts = std::fs::read_to_string(data_dir.join("postmaster.opts")).map_err(|e| {
            Error::runtime(
                format!(
                    "reading {}: {e}",
                    data_dir.join("postmaster.opts").display()
                ),
                "the server writes it when it starts; start it with pg_ctl",
            )
        })?;
        let words = opts_words(&opts);
        let Some(postgres) = words.first() else {
            return Err(Error::runtime(
                "postmaster.opts is empty",
                "the server writes it when it starts; start it with pg_ctl",
            ));
        };
        let pg_ctl = Path::new(postgres).with_file_name("pg_ctl");
        Ok(Ok(LocalServer {
            data_dir,
            pid,
            port,
            owner,
            pg_ctl,
            options: without_data_dir(&words[1..]),
        }))
    }

    /// `pg_ctl stop -m fast`: sessions are disconnected, the server shuts down cleanly.
    pub fn stop(&self) -> Result<()> {
        let out = self
            .pg_ctl()
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t", "300", "stop"])
            .output()
            .map_err(|e| {
                Error::runtime(
                    format!("running pg_ctl stop: {e}"),
                    "check that pg_ctl is installed beside postgres",
                )
            })?;
        checked(&out, "pg_ctl stop")
    }

    /// Socket lock files in the data directory (a server whose `unix_socket_directories` is
    /// its data directory): a restore brings back the ones of the moment of the backup. With
    /// the server stopped by us, each is stale; one naming a process that is gone but not yet
    /// reaped would keep the server from starting. Returns how many were removed.
    pub fn remove_stale_socket_locks(&self) -> Result<usize> {
        let mut removed = 0;
        let entries = std::fs::read_dir(&self.data_dir).map_err(|e| {
            Error::runtime(
                format!("reading {}: {e}", self.data_dir.display()),
                "check its permissions",
            )
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".s.PGSQL.") && name.ends_with(".lock") {
                std::fs::remove_file(entry.path()).map_err(|e| {
                    Error::runtime(
                        format!("removing the stale {}: {e}", entry.path().display()),
                        "remove it by hand, then start the server",
                    )
                })?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// `pg_ctl start` on the command line the server was started with, its log in `log`;
    /// returns once it accepts connections (a recovery may still be replaying).
    pub fn start(&self, log: &Path) -> Result<()> {
        let quoted: Vec<String> = self.options.iter().map(|o| shell_quote(o)).collect();
        let mut cmd = self.pg_ctl();
        cmd.arg("-D").arg(&self.data_dir).arg("-l").arg(log);
        if !quoted.is_empty() {
            cmd.arg("-o").arg(quoted.join(" "));
        }
        let out = cmd
            .args(["-w", "-t", "600", "start"])
            .output()
            .map_err(|e| {
                Error::runtime(
                    format!("running pg_ctl start: {e}"),
                    "check that pg_ctl is installed beside postgres",
                )
            })?;
        checked(&out, "pg_ctl start").map_err(|mut e| {
            // What the server said is the cause; pg_ctl only says to look.
            let said = std::fs::read_to_string(log).ok().and_then(|t| {
                t.lines()
                    .rev()
                    .find(|l| l.contains("FATAL") || l.contains("PANIC"))
                    .map(str::to_owned)
            });
            if let Some(said) = said {
                e.cause = format!("the server did not start: {}", said.trim());
            }
            e.hint = format!("the server's log is {}", log.display());
            e
        })
    }

    /// The command lines, as the operator would run them.
    pub fn describe_stop(&self) -> String {
        format!(
            "{} -D {} -m fast stop",
            self.pg_ctl.display(),
            self.data_dir.display()
        )
    }

    fn pg_ctl(&self) -> Command {
        let owner = (nix::unistd::geteuid().is_root() && self.owner != "root")
            .then_some(self.owner.as_str());
        server_program(owner, &self.pg_ctl)
    }
}

/// One of the server's programs (`pg_ctl`, `initdb`), run as `user` through runuser when given:
/// from `/` (the user may not be allowed into the caller's directory), without the caller's
/// PGDATA, PGPORT and PGHOST, and out of pgdeck's process group, so that a Ctrl-C aimed at
/// pgdeck does not also reach the server.
pub(crate) fn server_program(user: Option<&str>, exe: &Path) -> Command {
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.current_dir("/")
        .stdin(Stdio::null())
        .env_remove("PGDATA")
        .env_remove("PGPORT")
        .env_remove("PGHOST")
        .process_group(0);
    cmd
}

fn checked(out: &std::process::Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no output");
    Err(Error::runtime(
        format!("{what} failed: {last}"),
        "see the server's log",
    ))
}

/// A process's parent, from `/proc`.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
}

/// The words of `postmaster.opts`: the program, then each argument in double quotes.
fn opts_words(text: &str) -> Vec<String> {
    let text = text.trim();
    let (program, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut words = vec![program.to_owned()];
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut word = String::new();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    word.push(c);
                }
                words.push(word);
            }
            c if c.is_whitespace() => {}
            c => {
                let mut word = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() {
                        break;
                    }
                    word.push(n);
                    chars.next();
                }
                words.push(word);
            }
        }
    }
    words
}

/// The options without `-D DIR` (pg_ctl gives it).
fn without_data_dir(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for w in words {
        if skip {
            skip = false;
            continue;
        }
        if w == "-D" {
            skip = true;
            continue;
        }
        if w.starts_with("-D") || w.starts_with("--pgdata") {
            continue;
        }
        out.push(w.clone());
    }
    out
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=/.,:@%+".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmaster_opts_are_read_back_as_the_server_was_started() {
        let words = opts_words(
            "/usr/lib/postgresql/15/bin/postgres \"-D\" \"/srv/pg data\" \"-p\" \"5433\" \"-c\" \"config_file=/etc/pg/it's.conf\"\n",
        );
        assert_eq!(words[0], "/usr/lib/postgresql/15/bin/postgres");
        let options = without_data_dir(&words[1..]);
        assert_eq!(
            options,
            ["-p", "5433", "-c", "config_file=/etc/pg/it's.conf"]
        );
        let quoted: Vec<String> = options.iter().map(|o| shell_quote(o)).collect();
        assert_eq!(
            quoted.join(" "),
            "-p 5433 -c 'config_file=/etc/pg/it'\\''s.conf'"
        );
        assert_eq!(opts_words("/usr/bin/postgres"), ["/usr/bin/postgres"]);
    }

    #[test]
    fn only_sockets_and_loopback_are_local() {
        let at = |host: &str| {
            let mut t = DbTarget::socket(Path::new("/run/pg"), 5432, "u", "d");
            t.host = Host::Tcp(host.into());
            t
        };
        assert!(is_local_host(&DbTarget::socket(
            Path::new("/run/pg"),
            5432,
            "u",
            "d"
        )));
        for local in ["localhost", "127.0.0.1", "::1", "127.0.0.2"] {
            assert!(is_local_host(&at(local)), "{local}");
        }
        for remote in ["db.example.com", "10.0.0.5", "localhost.example.com"] {
            assert!(!is_local_host(&at(remote)), "{remote}");
        }
    }
}
