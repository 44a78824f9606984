//! The rehearsal both front ends run (`verify`, `plan --rehearse`, the checklist's rehearsal
//! step): the pending migrations applied on a copy of the target's schema, and the target
//! compared with what its migrations build. It writes nothing to the target; its result is
//! journaled like a release workflow's.

use super::{Context, Event, Workflow};
use crate::error::Result;
use crate::events::with_events;
use crate::journal::{self, Outcome};
use crate::migrate::MigrationsDir;
use crate::target::DbTarget;
use crate::verify::{self, VerifyOptions, VerifyReport};

/// A rehearsal, as the operator asked for it.
#[derive(Debug, Clone, Default)]
pub struct RehearsalRequest {
    /// A server to rehearse on instead of a throwaway cluster.
    pub scratch: Option<DbTarget>,
    /// Also compare the target's schema with what its migrations build.
    pub drift: bool,
}

pub async fn rehearse(ctx: &Context, req: &RehearsalRequest) -> Result<VerifyReport> {
    let env = &ctx.env;
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    ctx.check_cancelled(Workflow::Rehearsal.name())?;
    ctx.emit(Event::Started {
        workflow: Workflow::Rehearsal,
        what: format!(
            "rehearsing the pending migrations of {} on a copy of its schema",
            env.name
        ),
    });
    let opts = VerifyOptions {
        scratch: req.scratch.clone(),
        settings: env.deploy.clone(),
        drift: req.drift,
        cancel: ctx.cancel.clone(),
    };
    let result = with_events(
        |e| ctx.emit(Event::Verify(e)),
        |tx| {
            let (target, dir, opts) = (&env.target, &dir, &opts);
            async move { verify::verify(target, dir, opts, &tx).await }
        },
    )
    .await;
    let (outcome, summary, applied) = match &result {
        Ok(r) => (
            if r.rehearsal_passed() && !r.build_failed() && !r.drifted() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            summary(r),
            r.pending.iter().map(|p| p.name.clone()).collect(),
        ),
        Err(e) if e.kind == crate::error::ErrorKind::Cancelled => {
            (Outcome::Cancelled, e.cause.clone(), Vec::new())
        }
        Err(e) => (Outcome::Failed, e.cause.clone(), Vec::new()),
    };
    ctx.record(journal::Event::Released {
        workflow: Workflow::Rehearsal.name().to_owned(),
        outcome,
        summary,
        applied,
        not_applied: Vec::new(),
        duration_ms: ctx.work_duration().map(|d| d.as_millis() as u64),
    });
    result
}

/// The rehearsal in one line: for the journal and the checklist.
pub fn summary(r: &VerifyReport) -> String {
    let rehearsal = match &r.failure {
        None if r.pending.is_empty() => "nothing pending to rehearse".to_owned(),
        None => format!("{} pending rehearsed on a copy", r.pending.len()),
        Some(f) => format!(
            "rehearsal FAILED{}: {}",
            f.migration
                .as_deref()
                .map(|m| format!(" at {m}"))
                .unwrap_or_default(),
            f.cause
        ),
    };
    let drift = match &r.drift {
        None => String::new(),
        Some(d) => match &d.build_failed {
            Some(f) => format!(
                "; the migrations do not build on an empty database: {}",
                f.cause
            ),
            None if d.differences.is_empty() => "; no drift".to_owned(),
            None => format!("; drift: {} difference(s)", d.differences.len()),
        },
    };
    format!("{rehearsal}{drift}")
}
