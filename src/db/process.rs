//! The team's shell commands that pgdeck runs (hooks, a log command such as `kubectl logs -f`):
//! `sh -c` in a process group of its own, so stopping one stops everything it started; without
//! the passwords pgdeck knows in its environment; its stdout and stderr read line by line
//! whatever their bytes (a reader that stopped at an invalid UTF-8 byte would close the pipe and
//! kill the command with SIGPIPE).

use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// One line a command wrote, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    /// Written to stderr rather than stdout.
    pub stderr: bool,
}

/// A running `sh -c COMMAND`: what it writes, and the process. Apart, so one `select!` can
/// wait for a line and for the exit at once.
pub struct Running {
    pub output: Output,
    pub process: Process,
}

/// The lines a command writes.
pub struct Output {
    lines: UnboundedReceiver<Line>,
}

/// The shell and its process group.
pub struct Process {
    child: tokio::process::Child,
    pid: Option<u32>,
    reaped: bool,
}

/// Starts `sh -c command` with `env` added, stdin from /dev/null, stdout and stderr piped.
pub fn spawn_shell(command: &str, env: &[(&str, &str)]) -> std::io::Result<Running> {
    let mut cmd = tokio::process::Command::new("sh");
    // The team's script, not a database client: it gets the context it is given, never a
    // password (PGPASSWORD, or a URL variable holding one).
    cmd.env_remove("PGPASSWORD");
    for (key, value) in std::env::vars_os() {
        if crate::target::secret::holds_known(&value.to_string_lossy()) {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    let (tx, lines) = unbounded_channel();
    let streams: [(Option<Box<dyn AsyncRead + Unpin + Send>>, bool); 2] = [
        (child.stdout.take().map(|s| Box::new(s) as _), false),
        (child.stderr.take().map(|s| Box::new(s) as _), true),
    ];
    for (stream, stderr) in streams {
        let Some(stream) = stream else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line)
                            .trim_end_matches(['\n', '\r'])
                            .to_owned();
                        // Nobody listening any more: keep reading, so the command is not
                        // killed by SIGPIPE before it is stopped.
                        let _ = tx.send(Line { text, stderr });
                    }
                }
            }
        });
    }
    Ok(Running {
        output: Output { lines },
        process: Process {
            child,
            pid,
            reaped: false,
        },
    })
}

impl Output {
    /// The next line from stdout or stderr, in the order they came; None once both are closed
    /// (the command and everything it started that held them have ended).
    pub async fn line(&mut self) -> Option<Line> {
        self.lines.recv().await
    }

    /// A line already read, without waiting.
    pub fn ready_line(&mut self) -> Option<Line> {
        self.lines.try_recv().ok()
    }
}

impl Process {
    /// The shell's pid, which is also its process group's id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Waits for the shell to exit. Cancel-safe: it can be a branch of a `select!`.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.wait().await.ok();
        self.reaped = true;
        status
    }

    /// Kills the shell and everything in its process group (SIGKILL), and reaps the shell.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        self.kill_group();
        let _ = self.child.start_kill();
        self.wait().await
    }

    /// Kills what is left of the process group (children that outlived the shell).
    pub fn kill_group(&self) {
        if let Some(pid) = self.pid {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for Process {
    /// A command whose owner went away stops with what it started, not only the shell.
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
        }
    }
}

/// "exit 0", "exit 3", or the signal that ended it ("killed by SIGKILL").
pub fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(sig) => format!("killed by {sig}"),
                Err(_) => format!("killed by signal {sig}"),
            },
            (None, None) => "ended".into(),
        },
        None => "ended (status unknown)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_of_both_streams_arrives_whatever_its_bytes_and_the_status_is_kept() {
        let mut run = spawn_shell(
            "printf 'out\\n'; printf 'bad \\377 byte\\r\\n' >&2; echo \"$GIVEN\"; exit 3",
            &[("GIVEN", "given")],
        )
        .unwrap();
        let mut lines = Vec::new();
        while let Some(l) = run.output.line().await {
            lines.push(l);
        }
        assert!(lines.contains(&Line {
            text: "out".into(),
            stderr: false
        }));
        assert!(lines.contains(&Line {
            text: "bad \u{fffd} byte".into(),
            stderr: true
        }));
        assert!(lines.iter().any(|l| l.text == "given"));
        assert_eq!(describe(run.process.wait().await), "exit 3");
    }

    #[tokio::test]
    async fn a_killed_command_takes_what_it_started_with_it() {
        let mut run = spawn_shell("sleep 30 & sleep 30", &[]).unwrap();
        let group = run.process.pid().unwrap() as i32;
        assert_eq!(describe(run.process.kill().await), "killed by SIGKILL");
        // The background sleep went too: nothing but zombies is left in the group.
        let t = std::time::Instant::now();
        while live_members(group) > 0 {
            assert!(t.elapsed().as_secs() < 5, "the group outlived the kill");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Processes of process group `group` that are not zombies, from /proc.
    fn live_members(group: i32) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
            })
            .count()
    }
}
