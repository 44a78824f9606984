//! Cancel or terminate a backend: confirmed with what the backend is doing now (not what a
//! screen showed a while ago), refused in read-only mode, aimed by pid and backend_start so a
//! reused pid is never hit, and journaled with what became of it: done (the query stopped, the
//! session ended), or failed and why (the backend was gone, the server sent nothing, it still
//! runs after the wait, the role may not).

use chrono::{DateTime, Utc};

use super::deploy::record_release;
use super::{Confirmation, Context, Needs, Workflow, confirm};
use crate::error::{Ask, Error, Guard, Remedy, Result};
use crate::journal::Outcome;
use crate::monitor::{self, Signal, Signalled};

/// A signal to a backend, with the operator's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRequest {
    pub pid: i32,
    /// The start of the backend the operator chose.
    pub backend_start: DateTime<Utc>,
    pub signal: Signal,
    pub confirmation: Option<Confirmation>,
    /// The monitor's read-only mode, on top of the environment's.
    pub read_only: bool,
}

/// Sends the signal once confirmed.
pub async fn signal_backend(ctx: &Context, req: &SignalRequest) -> Result<()> {
    let env = &ctx.env;
    let (verb, title) = match req.signal {
        Signal::Cancel => ("cancel", "Cancel the query of backend"),
        Signal::Terminate => ("terminate", "Terminate backend"),
    };
    if req.read_only || env.read_only {
        return Err(Error::guarded(
            Guard::ReadOnly,
            format!("read-only mode: pgdeck will not {verb} backend {}", req.pid),
            "act on sessions where the monitor is not read-only",
        )
        .with(Remedy::LeaveReadOnly));
    }
    let Some(b) = monitor::backend(&env.target, req.pid).await? else {
        return Err(Error::refused(
            format!("backend {} no longer exists", req.pid),
            "nothing to do; refresh the monitor",
        ));
    };
    // The backend chosen, before anything is asked: a pid given to a new session since is
    // refused now, not after the operator confirmed.
    if !monitor::same_backend_start(b.backend_start, req.backend_start) {
        return Err(Error::refused(
            format!(
                "pid {} now belongs to another backend (started {}), not the one started {}",
                req.pid,
                b.backend_start
                    .map(|s| s.to_rfc3339())
                    .unwrap_or_else(|| "at an unknown time".into()),
                req.backend_start.to_rfc3339()
            ),
            "refresh the monitor and choose again",
        ));
    }
    let seconds = |s: Option<f64>| s.map(|s| format!("{s:.0}s")).unwrap_or_else(|| "-".into());
    let mut lines = vec![
        b.who(),
        format!(
            "now: {}{}, {} {}, transaction open {}",
            if b.state.is_empty() { "?" } else { &b.state },
            b.wait_event
                .as_deref()
                .map(|w| format!(" (waiting on {w})"))
                .unwrap_or_default(),
            if b.state.starts_with("idle") {
                "last query started"
            } else {
                "query running"
            },
            seconds(b.query_seconds),
            seconds(b.transaction_seconds)
        ),
        format!("query: {}", b.query.chars().take(200).collect::<String>()),
    ];
    if req.signal == Signal::Cancel && b.state.starts_with("idle") {
        lines.push(
            "It runs no query now: a cancel changes nothing. Terminating it ends its transaction."
                .into(),
        );
    }
    if req.signal == Signal::Terminate && b.transaction_seconds.is_some() {
        lines.push("Its open transaction rolls back.".into());
    }
    let confirmed = confirm(
        ctx,
        Needs::Yes,
        Ask {
            title: format!("{title} {}", req.pid),
            lines,
            expect: None,
            scope: vec![req.pid.to_string(), req.backend_start.to_rfc3339()],
        },
        req.confirmation.as_ref(),
    )?;
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let who = format!(
        "backend {} ({}, {})",
        req.pid,
        or_dash(&b.user),
        or_dash(&b.application)
    );
    let query: String = b.query.chars().take(120).collect();
    confirmed.record(ctx);
    let workflow = Workflow::Signal;
    ctx.emit(super::Event::Started {
        workflow,
        what: format!("{verb} {who}"),
    });
    let sent = monitor::signal_backend(&env.target, req.pid, req.backend_start, req.signal).await;
    let function = match req.signal {
        Signal::Cancel => "pg_cancel_backend",
        Signal::Terminate => "pg_terminate_backend",
    };
    let record_failure = |why: &str| {
        record_release(
            ctx,
            workflow,
            Outcome::Failed,
            &format!("{verb} {who} failed: {why}; its query: {query}"),
            &[],
            &[],
        );
    };
    let failed = |why: String, hint: &str| {
        record_failure(&why);
        Error::runtime(format!("{verb} backend {}: {why}", req.pid), hint)
    };
    match sent {
        Ok(Signalled::Done) => {
            let done = match req.signal {
                Signal::Cancel => format!("cancelled the query of {who}: {query}"),
                Signal::Terminate => format!("terminated {who}; its query: {query}"),
            };
            record_release(ctx, workflow, Outcome::Ok, &done, &[], &[]);
            Ok(())
        }
        Ok(Signalled::Gone) => {
            let why = "nothing was sent: the backend had ended, or its pid now belongs to another session";
            record_failure(why);
            Err(Error::refused(
                format!("{verb} backend {}: {why}", req.pid),
                "nothing to do; refresh the monitor",
            ))
        }
        Ok(Signalled::NotSent) => Err(failed(
            format!(
                "the server sent nothing ({function} returned false: not a backend it signals)"
            ),
            "the server log says why; an auxiliary process (checkpointer, WAL writer) cannot be signalled",
        )),
        Ok(Signalled::StillRunning(waited)) => Err(failed(
            format!(
                "{} {:.0} s after {function}",
                match req.signal {
                    Signal::Cancel => "its query still runs",
                    Signal::Terminate => "it still runs",
                },
                waited.as_secs_f64()
            ),
            match req.signal {
                Signal::Cancel => {
                    "it may be where a cancel does not reach (a system call, an extension); terminate it, or see the server log"
                }
                Signal::Terminate => {
                    "it may be where a signal does not reach (a system call, an extension); see the server log, and the host's processes"
                }
            },
        )),
        Err(e) => {
            record_failure(&e.cause);
            Err(e)
        }
    }
}
