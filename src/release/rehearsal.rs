//! The rehearsal both front ends run (`verify`, `plan --rehearse`, the checklist's rehearsal
//! step): the pending migrations applied on a copy of the target's schema, and the target
//! compared with what its migrations build. It writes nothing to the target; its result is
//! journaled like a release workflow's.

use super::{Context, Event, Workflow};
use crate::error::Error;
use crate::error::Result;
use crate::events::with_events;
use crate::journal::{self, Outcome};
use crate::migrate::{self, MigrationState, MigrationsDir};
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
    let (outcome, summary) = match &result {
        Ok(r) => (
            if r.rehearsal_passed() && !r.build_failed() && !r.drifted() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            summary(r),
        ),
        Err(e) if e.kind == crate::error::ErrorKind::Cancelled => {
            (Outcome::Cancelled, e.cause.clone())
        }
        Err(e) => (Outcome::Failed, e.cause.clone()),
    };
    // Nothing is applied to the target: what was rehearsed is in the summary.
    ctx.record(journal::Event::Released {
        workflow: Workflow::Rehearsal.name().to_owned(),
        outcome,
        summary,
        applied: Vec::new(),
        not_applied: Vec::new(),
        duration_ms: ctx.work_duration().map(|d| d.as_millis() as u64),
    });
    result
}

/// The rehearsal in one line: for the journal and the checklist.
pub fn summary(r: &VerifyReport) -> String {
    let rehearsal = match &r.failure {
        None if r.pending.is_empty() => "nothing pending to rehearse".to_owned(),
        None => format!(
            "{} pending rehearsed on a copy: {}",
            r.pending.len(),
            r.pending
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
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

/// Whether the environment a release is rehearsed on has every migration pending here applied,
/// from the same file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RehearsedCheck {
    pub environment: String,
    /// Pending here.
    pub pending: Vec<String>,
    /// Of those, not applied there.
    pub missing: Vec<String>,
    /// Applied there from a file that differs from the one that would be deployed here.
    pub edited: Vec<String>,
}

impl RehearsedCheck {
    pub fn passed(&self) -> bool {
        self.missing.is_empty() && self.edited.is_empty()
    }

    /// In words, for the checklist and the command line.
    pub fn said(&self) -> String {
        if self.pending.is_empty() {
            return format!(
                "nothing pending here; nothing to find on {}",
                self.environment
            );
        }
        if self.passed() {
            return format!(
                "all {} pending applied on {} with the same checksum",
                self.pending.len(),
                self.environment
            );
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "not applied on {}: {}",
                self.environment,
                self.missing.join(", ")
            ));
        }
        if !self.edited.is_empty() {
            parts.push(format!(
                "applied on {} from a different file: {}",
                self.environment,
                self.edited.join(", ")
            ));
        }
        parts.join("; ")
    }
}

/// Reads the ledger of the environment this one is rehearsed on (`rehearsed_on`) and checks
/// that every migration pending here is applied there with the checksum of the file here.
/// Read-only on both.
pub async fn check_rehearsed(ctx: &Context) -> Result<RehearsedCheck> {
    let env = &ctx.env;
    let Some(on) = &env.rehearsed_on else {
        return Err(Error::input(
            format!(
                "environment '{}' names no environment it is rehearsed on",
                env.name
            ),
            "set rehearsed_on = \"staging\" in its section of the config",
        ));
    };
    let target = on.target.clone().map_err(|e| {
        Error::input(
            format!(
                "the environment it is rehearsed on, '{}', cannot be reached: {}",
                on.name, e.cause
            ),
            e.hint,
        )
    })?;
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (here, there) = tokio::join!(
        migrate::status(&env.target, &dir),
        migrate::status(&target, &dir)
    );
    let (here, _) = here?;
    let (there, _) = there.map_err(|e| Error {
        cause: format!("reading {}'s ledger: {}", on.name, e.cause),
        ..e
    })?;
    let pending: Vec<String> = here
        .pending_names()
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    let state_there = |name: &str| {
        there
            .migrations
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.state.clone())
    };
    let mut check = RehearsedCheck {
        environment: on.name.clone(),
        pending: pending.clone(),
        missing: Vec::new(),
        edited: Vec::new(),
    };
    for name in pending {
        match state_there(&name) {
            Some(MigrationState::Applied { .. }) => {}
            Some(MigrationState::Edited { .. }) => check.edited.push(name),
            _ => check.missing.push(name),
        }
    }
    Ok(check)
}
