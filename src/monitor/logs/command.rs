//! Following a command's output (`kubectl logs -f deploy/api`, `journalctl -fu api`): its
//! stdout and stderr lines, run like a hook (`sh -c`, its own process group, no known password
//! in its environment). When it exits, the stream says so with its status and it is started
//! again after a pause that doubles up to 30 s (back to the first after a run of a minute).
//! Stopping kills it with everything it started.

use std::time::{Duration, Instant};

use super::{LogLine, LogSettings, LogState, Out};
use crate::db::process::{self, Running};

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long was a healthy one: the next exit pauses only the first backoff again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// After the shell exits, how long output still in the pipes is waited for.
const DRAIN: Duration = Duration::from_millis(200);
/// Lines sent in one update at most.
const BATCH: usize = 1000;

pub(super) async fn follow(command: &str, settings: &LogSettings, out: &mut Out) {
    let mut backoff = settings.restart_backoff;
    loop {
        let started = Instant::now();
        let status = match process::spawn_shell(command, &[]) {
            Ok(running) => match run(command, running, out).await {
                Some(status) => status,
                None => return,
            },
            Err(e) => {
                out.state(LogState::Error {
                    cause: format!("cannot start `{command}`: {e}"),
                    hint: "check that sh exists and app_log_command is right".into(),
                    retry_in_ms: Some(backoff.as_millis() as u64),
                });
                if !out.pause(backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = settings.restart_backoff;
        }
        out.notice(&format!(
            "`{command}` exited ({status}); starting it again in {}",
            crate::units::human_duration(backoff)
        ));
        out.state(LogState::Exited {
            what: command.to_owned(),
            status,
            restart_in_ms: backoff.as_millis() as u64,
        });
        if !out.pause(backoff).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Follows one run. Its exit status in words, or None when following stopped (the command is
/// killed then).
async fn run(command: &str, running: Running, out: &mut Out) -> Option<String> {
    let Running {
        output: mut lines,
        mut process,
    } = running;
    out.state(LogState::Following {
        what: command.to_owned(),
        pid: process.pid(),
    });
    let mut open = true;
    let status = loop {
        tokio::select! {
            line = lines.line(), if open => match line {
                Some(first) => {
                    let mut batch = vec![LogLine::read(&first.text, false)];
                    while batch.len() < BATCH
                        && let Some(l) = lines.ready_line()
                    {
                        batch.push(LogLine::read(&l.text, false));
                    }
                    out.lines(batch);
                }
                None => open = false,
            },
            status = process.wait() => break status,
            () = out.stopping() => {
                process.kill().await;
                return None;
            }
        }
    };
    // What it wrote just before it exited; a child left holding the pipes open does not keep
    // the follower waiting.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DRAIN, async {
        while let Some(l) = lines.line().await {
            rest.push(LogLine::read(&l.text, false));
        }
    })
    .await;
    while let Some(l) = lines.ready_line() {
        rest.push(LogLine::read(&l.text, false));
    }
    out.lines(rest);
    process.kill_group();
    Some(process::describe(status))
}
