//! `pgdeck monitor logs [--server]`: the console's log pane, headless. Follows the
//! environment's application log (or with `--server` the server's own) and prints each line with
//! its class, and the alert when error lines pass `log_alert_per_minute`. Like `monitor --watch`
//! it runs until SIGINT or SIGTERM, which end it with exit 0; a log that cannot be followed at
//! all (the server's log not readable, a FIFO at the file's path) ends it with an error.

use std::time::Duration;

use chrono::Utc;
use clap::Args;
use serde_json::json;

use super::output;
use super::{Job, exit};
use crate::config::limits;
use crate::error::{Error, Result};
use crate::monitor::logs::{
    self, LineClass, LogLine, LogSettings, LogSource, LogState, LogTail, LogUpdate,
};

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Follow the server's own log (its logging collector's file) instead of the application's
    #[arg(long)]
    pub server: bool,
    /// Lines from before following started, shown for context (never counted)
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = limits::whole_in(limits::LOG_CONTEXT_LINES))]
    pub lines: usize,
}

pub async fn run(job: &Job, args: &LogsArgs, json: bool) -> Result<u8> {
    let env = &job.env;
    let source = if args.server {
        LogSource::Server(env.target.clone())
    } else {
        match &env.logs.app_log {
            Some(app) => LogSource::App(app.clone()),
            None => {
                return Err(Error::input(
                    format!("environment '{}' names no application log", env.name),
                    "set app_log = \"logs/application.log\" or app_log_command = \"kubectl logs -f deploy/api\" \
                     in its section of pgdeck.toml, or pass --server for the server's own log",
                ));
            }
        }
    };
    let settings = LogSettings {
        context_lines: args.lines,
        ..env.logs.clone()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // A child of the command's token: SIGINT or SIGTERM stops the follower too, and with it a
    // log command's whole process group.
    let stop = job.cancel.child_token();
    let follower = tokio::spawn(logs::follow(source, settings.clone(), tx, stop.clone()));
    let mut tail = LogTail::new(settings.alert_per_minute);
    let mut alerting = false;
    // The alert also ends when nothing comes: looked at every second.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            update = rx.recv() => match update {
                Some(update) => {
                    print(&update, json);
                    tail.apply(update);
                }
                None => break,
            },
            _ = tick.tick() => {}
            () = job.cancel.cancelled() => {
                stop.cancel();
                let _ = follower.await;
                return Ok(exit::OK);
            }
        }
        let alert = tail.alert(Utc::now());
        if alert.is_some() != alerting {
            alerting = alert.is_some();
            print_alert(alert.as_deref(), json);
        }
    }
    // The follower stopped by itself: the log cannot be followed.
    let _ = follower.await;
    match tail.state().clone() {
        LogState::Unavailable { reason, hint } => Err(Error::runtime(reason, hint)),
        LogState::Error { cause, hint, .. } => Err(Error::input(cause, hint)),
        _ => Ok(exit::OK),
    }
}

fn print(update: &LogUpdate, json: bool) {
    match update {
        LogUpdate::Lines { lines } => {
            for line in lines {
                if json {
                    output::json_stdout(
                        &serde_json::to_string(&json!({ "update": "line", "line": line }))
                            .unwrap_or_default(),
                    );
                } else {
                    output::stdout(&text(line));
                }
            }
        }
        LogUpdate::State { state } => {
            if json {
                output::json_stdout(&serde_json::to_string(update).unwrap_or_default());
            } else if let Some(said) = said(state) {
                output::stderr(&said);
            }
        }
    }
}

/// `2026-05-01 10:00:00 UTC ERROR    the line`.
fn text(line: &LogLine) -> String {
    let tag = match (line.context, line.class) {
        (true, LineClass::Plain) => "(before)".to_owned(),
        (true, class) => format!("({})", class.tag().to_lowercase()),
        (false, class) => class.tag().to_owned(),
    };
    format!("{} {tag:<8} {}", output::timestamp(line.at), line.text)
}

/// What a state change says on stderr; None when a line in the stream already said it, or the
/// error at the end will.
fn said(state: &LogState) -> Option<String> {
    match state {
        LogState::Starting | LogState::Exited { .. } | LogState::Unavailable { .. } => None,
        LogState::Following { what, pid } => Some(match pid {
            Some(pid) => format!("following {what} (pid {pid})"),
            None => format!("following {what}"),
        }),
        LogState::Waiting { reason, .. } => Some(reason.clone()),
        LogState::Error {
            cause,
            retry_in_ms: Some(ms),
            ..
        } => Some(format!(
            "{cause}; trying again in {:.1} s",
            *ms as f64 / 1000.0
        )),
        LogState::Error { .. } => None,
    }
}

fn print_alert(alert: Option<&str>, json: bool) {
    match (alert, json) {
        (Some(text), false) => output::stdout(&format!("ALERT: {text}")),
        (None, false) => output::stdout("alert over: error lines back within the threshold"),
        (text, true) => output::json_stdout(
            &serde_json::to_string(&json!({
                "update": if text.is_some() { "alert" } else { "alert_over" },
                "text": text,
            }))
            .unwrap_or_default(),
        ),
    }
}
