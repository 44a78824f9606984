//! Fleets: one release to many databases. The status of every member, read at once (the
//! matrix), and the fleet deploy: the canaries first, their health checked, then the rest with
//! at most N deploys at once, no new one started once the failures reach the bound. Each member
//! is an [`Environment`] deployed by the one deploy workflow ([`super::deploy`]) with its own
//! ledger, lock and guards, evaluated when its work starts; the fleet adds only the order, the
//! bound, the one confirmation (naming the fleet and its count) that it carries into every
//! member's request, and the journal entry over them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Candidate, Confirmation, Context, DeployRequest, Environment, Event, Matrix};
use crate::error::{Ask, Error, ErrorKind, Guard, Remedy, Result};
use crate::events::with_events;
use crate::health::Level;
use crate::journal::{self, Outcome, Recorder};
use crate::migrate::{DeployEvent, MigrationsDir};

/// A fleet: its members in release order and the ones marked canary.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub name: String,
    pub members: Vec<Candidate>,
    /// Indexes into `members` of the members marked canary, in the order they were marked.
    pub marked_canaries: Vec<usize>,
}

impl Fleet {
    /// The first `k` canaries: the marked ones first, then the other members in order.
    pub fn canaries(&self, k: usize) -> Vec<usize> {
        self.marked_canaries
            .iter()
            .copied()
            .chain((0..self.members.len()).filter(|i| !self.marked_canaries.contains(i)))
            .take(k)
            .collect()
    }
}

/// The status of every member of the fleet, read at once: the matrix of its members.
pub async fn fleet_status(fleet: &Fleet) -> Result<Matrix> {
    super::status_matrix(fleet.members.clone()).await
}

/// A fleet deploy, with the operator's decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRequest {
    /// What each member's deploy carries (acknowledgements, overrides with reasons, the lock
    /// wait). Its confirmation is the fleet's: the fleet's name typed on a protected fleet.
    pub deploy: DeployRequest,
    /// At most this many members deploy at once.
    pub concurrency: usize,
    /// How many canaries go first (None: the ones marked in the config).
    pub canaries: Option<usize>,
    /// No member starts once this many have failed.
    pub max_failures: usize,
}

/// What runs a fleet deploy: the journal every member writes into, where the fleet's events go,
/// and the cancellation that stops it.
#[derive(Clone)]
pub struct FleetContext {
    pub journal: Arc<dyn Recorder>,
    pub events: UnboundedSender<FleetEvent>,
    pub cancel: CancellationToken,
}

impl FleetContext {
    fn emit(&self, event: FleetEvent) {
        let _ = self.events.send(event);
    }
}

/// The phases of a fleet deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Canary,
    /// The canaries' health checks.
    Health,
    Rest,
}

/// A member as the plan names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub name: String,
    /// Password redacted.
    pub database: String,
    pub protected: bool,
    pub canary: bool,
}

/// How a member ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberOutcome {
    /// Its pending migrations were applied.
    Applied,
    /// Nothing was pending.
    UpToDate,
    /// Its deploy failed or a guard refused it; or, for a canary, its health is in alert.
    Failed,
    /// It was never started: a failure stopped the fleet first.
    NotStarted,
    Cancelled,
}

impl MemberOutcome {
    pub fn label(self) -> &'static str {
        match self {
            MemberOutcome::Applied => "applied",
            MemberOutcome::UpToDate => "up to date",
            MemberOutcome::Failed => "FAILED",
            MemberOutcome::NotStarted => "not started",
            MemberOutcome::Cancelled => "cancelled",
        }
    }

    fn ok(self) -> bool {
        matches!(self, MemberOutcome::Applied | MemberOutcome::UpToDate)
    }
}

/// What a fleet deploy reports, in order, for the CLI to print and the console to draw.
#[derive(Debug, Clone)]
pub enum FleetEvent {
    /// The fleet confirmation held; the members in order, the bound and the failure limit.
    Planned {
        fleet: String,
        members: Vec<Planned>,
        concurrency: usize,
        max_failures: usize,
    },
    Phase(Phase),
    MemberStarted {
        index: usize,
    },
    /// What a member's own deploy reported.
    Member {
        index: usize,
        event: Event,
    },
    /// A canary's health after its deploy.
    HealthChecked {
        index: usize,
        verdict: Option<Level>,
        summary: String,
    },
    MemberFinished {
        index: usize,
        outcome: MemberOutcome,
        summary: String,
    },
    /// No member starts any more: why.
    Stopped {
        why: String,
    },
    Journaled(journal::Entry),
}

/// One member's result.
#[derive(Debug, Clone)]
pub struct MemberReport {
    pub name: String,
    pub database: String,
    pub canary: bool,
    pub outcome: MemberOutcome,
    pub applied: Vec<String>,
    /// Why it failed (a refusal names its guard and remedies).
    pub error: Option<Error>,
    /// A canary's health verdict.
    pub health: Option<Level>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl MemberReport {
    /// In a few words: what it applied, or why not.
    pub fn summary(&self) -> String {
        match (&self.error, self.outcome) {
            // A canary whose health failed or was cancelled after its deploy committed.
            (Some(e), _) if !self.applied.is_empty() => format!(
                "{} migration(s) applied ({}), then: {}",
                self.applied.len(),
                self.applied.join(", "),
                e.cause
            ),
            (Some(e), _) => e.cause.clone(),
            (None, MemberOutcome::Applied) => format!(
                "{} migration(s) applied: {}",
                self.applied.len(),
                self.applied.join(", ")
            ),
            (None, o) => o.label().to_owned(),
        }
    }
}

/// What a fleet deploy did.
#[derive(Debug, Clone)]
pub struct FleetReport {
    pub fleet: String,
    pub members: Vec<MemberReport>,
    /// Why members were left unstarted, if they were.
    pub stopped: Option<String>,
}

impl FleetReport {
    pub fn count(&self, outcome: MemberOutcome) -> usize {
        self.members.iter().filter(|m| m.outcome == outcome).count()
    }

    /// Every member applied or up to date.
    pub fn complete(&self) -> bool {
        self.members.iter().all(|m| m.outcome.ok())
    }

    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for o in [
            MemberOutcome::Applied,
            MemberOutcome::UpToDate,
            MemberOutcome::Failed,
            MemberOutcome::NotStarted,
            MemberOutcome::Cancelled,
        ] {
            let n = self.count(o);
            if n > 0 {
                parts.push(format!("{n} {}", o.label()));
            }
        }
        format!(
            "fleet {}: {} database(s): {}",
            self.fleet,
            self.members.len(),
            parts.join(", ")
        )
    }
}

/// Deploys the fleet: checks the request and the fleet confirmation, deploys the canaries
/// (at most `concurrency` at once) and checks their health, then the rest; a member whose
/// deploy fails or whose guard refuses is a failure, and once `max_failures` are reached (or a
/// canary fails) no member starts. Returns every member's result, failed ones included; an
/// error only when nothing was started (bad request, a member that does not resolve, the
/// confirmation).
pub async fn deploy_fleet(
    ctx: &FleetContext,
    fleet: &Fleet,
    req: &FleetRequest,
) -> Result<FleetReport> {
    let n = fleet.members.len();
    if req.concurrency == 0 {
        return Err(Error::input(
            "a concurrency of 0 would deploy nothing",
            "deploy with at least 1 at once",
        ));
    }
    if req.max_failures == 0 {
        return Err(Error::input(
            "a failure limit of 0 would stop the fleet before it started",
            "allow at least 1 failure (the default stops at the first)",
        ));
    }
    let k = req.canaries.unwrap_or(fleet.marked_canaries.len());
    if k > n {
        return Err(Error::input(
            format!(
                "{k} canaries asked for, and fleet '{}' has {n} database(s)",
                fleet.name
            ),
            format!("ask for at most {n} canaries"),
        ));
    }
    let mut members: Vec<Environment> = Vec::with_capacity(n);
    for m in &fleet.members {
        match m {
            Candidate::Ready(env) => members.push((**env).clone()),
            Candidate::Unresolved { name, error, .. } => {
                return Err(Error {
                    cause: format!(
                        "fleet '{}': member '{name}' does not resolve: {}; nothing was done",
                        fleet.name, error.cause
                    ),
                    kind: ErrorKind::Input,
                    ..error.clone()
                });
            }
        }
    }
    let releases = read_releases(fleet, &members)?;
    let confirmed = confirm_fleet(fleet, &members, req.deploy.confirmation.as_ref())?;
    let canaries = fleet.canaries(k);
    let planned: Vec<Planned> = members
        .iter()
        .enumerate()
        .map(|(i, env)| Planned {
            name: env.name.clone(),
            database: env.target.to_string(),
            protected: env.protected,
            canary: canaries.contains(&i),
        })
        .collect();
    if let Some(what) = confirmed {
        record(ctx, journal::Event::Confirmed { what });
    }
    ctx.emit(FleetEvent::Planned {
        fleet: fleet.name.clone(),
        members: planned.clone(),
        concurrency: req.concurrency,
        max_failures: req.max_failures,
    });
    let started = Instant::now();
    let mut reports: Vec<Option<MemberReport>> = vec![None; n];
    let failures = Arc::new(AtomicUsize::new(0));
    let members = Arc::new(members);
    let releases = Arc::new(releases);
    let mut stopped = None;

    if !canaries.is_empty() {
        ctx.emit(FleetEvent::Phase(Phase::Canary));
        let limit = Limit {
            concurrency: req.concurrency,
            // Any canary failing stops the fleet; the others already running finish.
            max_failures: 1,
        };
        run_phase(
            ctx,
            (&members, &releases),
            &canaries,
            req,
            limit,
            &failures,
            &mut reports,
        )
        .await;
        let failed = failures.load(Ordering::SeqCst);
        if ctx.cancel.is_cancelled() {
            stopped = Some("cancelled: no other database was started".to_owned());
        } else if failed > 0 {
            stopped = Some(format!(
                "{failed} canary deploy(s) failed: no other database was started"
            ));
        } else {
            ctx.emit(FleetEvent::Phase(Phase::Health));
            for &i in &canaries {
                let Some(report) = reports[i].as_mut() else {
                    continue;
                };
                let (verdict, summary) = with_events(
                    |e| ctx.emit(FleetEvent::Member { index: i, event: e }),
                    |tx| {
                        let c = member_context(ctx, &members[i], tx);
                        async move {
                            match super::health(&c, None, None).await {
                                Ok(r) => {
                                    let worst: Vec<String> = r
                                        .checks
                                        .iter()
                                        .filter(|c| c.level == r.verdict && r.verdict != Level::Ok)
                                        .map(|c| format!("{} {}", c.name, c.value))
                                        .collect();
                                    let words = if worst.is_empty() {
                                        r.verdict.label().to_owned()
                                    } else {
                                        format!("{}: {}", r.verdict.label(), worst.join("; "))
                                    };
                                    (Ok(r.verdict), words)
                                }
                                Err(e) => (Err(e.clone()), e.cause),
                            }
                        }
                    },
                )
                .await;
                ctx.emit(FleetEvent::HealthChecked {
                    index: i,
                    verdict: verdict.as_ref().ok().copied(),
                    summary: summary.clone(),
                });
                report.health = verdict.as_ref().ok().copied();
                let failed = match verdict {
                    Ok(Level::Alert) => Some(Error::refused(
                        format!(
                            "canary {} is in ALERT after its deploy: {summary}",
                            report.name
                        ),
                        "look at its health before the rest of the fleet gets the release",
                    )),
                    Ok(_) => None,
                    Err(e) => Some(Error {
                        cause: format!(
                            "the health of canary {} could not be checked: {}",
                            report.name, e.cause
                        ),
                        ..e
                    }),
                };
                if let Some(e) = failed {
                    report.outcome = if e.kind == ErrorKind::Cancelled {
                        MemberOutcome::Cancelled
                    } else {
                        MemberOutcome::Failed
                    };
                    ctx.emit(FleetEvent::MemberFinished {
                        index: i,
                        outcome: report.outcome,
                        summary: e.cause.clone(),
                    });
                    report.error = Some(e);
                    failures.fetch_add(1, Ordering::SeqCst);
                    stopped.get_or_insert_with(|| {
                        if ctx.cancel.is_cancelled() {
                            "cancelled: no other database was started".to_owned()
                        } else {
                            format!(
                                "canary {} did not pass its health checks: no other database was started",
                                report.name
                            )
                        }
                    });
                }
            }
        }
    }
    let rest: Vec<usize> = (0..n).filter(|i| !canaries.contains(i)).collect();
    if stopped.is_none() && !rest.is_empty() {
        ctx.emit(FleetEvent::Phase(Phase::Rest));
        let limit = Limit {
            concurrency: req.concurrency,
            max_failures: req.max_failures,
        };
        stopped = run_phase(
            ctx,
            (&members, &releases),
            &rest,
            req,
            limit,
            &failures,
            &mut reports,
        )
        .await;
    }
    if let Some(why) = &stopped {
        ctx.emit(FleetEvent::Stopped { why: why.clone() });
    }
    let members: Vec<MemberReport> = reports
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let r = r.map(|r| MemberReport {
                canary: planned[i].canary,
                ..r
            });
            r.unwrap_or_else(|| MemberReport {
                name: planned[i].name.clone(),
                database: planned[i].database.clone(),
                canary: planned[i].canary,
                outcome: if ctx.cancel.is_cancelled() {
                    MemberOutcome::Cancelled
                } else {
                    MemberOutcome::NotStarted
                },
                applied: Vec::new(),
                error: None,
                health: None,
                started_at: None,
                finished_at: None,
            })
        })
        .collect();
    for (i, m) in members.iter().enumerate() {
        if m.started_at.is_none() {
            ctx.emit(FleetEvent::MemberFinished {
                index: i,
                outcome: m.outcome,
                summary: m.summary(),
            });
        }
    }
    let report = FleetReport {
        fleet: fleet.name.clone(),
        members,
        stopped,
    };
    record(
        ctx,
        journal::Event::FleetReleased {
            fleet: report.fleet.clone(),
            outcome: if report.complete() {
                Outcome::Ok
            } else if report.count(MemberOutcome::Cancelled) > 0 {
                Outcome::Cancelled
            } else {
                Outcome::Failed
            },
            summary: match &report.stopped {
                Some(why) => format!("{}; {why}", report.summary()),
                None => report.summary(),
            },
            members: report
                .members
                .iter()
                .map(|m| journal::FleetMember {
                    name: m.name.clone(),
                    database: m.database.clone(),
                    canary: m.canary,
                    outcome: m.outcome.label().to_owned(),
                    summary: m.summary(),
                    applied: m.applied.clone(),
                })
                .collect(),
            duration_ms: Some(started.elapsed().as_millis() as u64),
        },
    );
    Ok(report)
}

fn record(ctx: &FleetContext, event: journal::Event) {
    match ctx.journal.record(event) {
        Ok(entry) => ctx.emit(FleetEvent::Journaled(entry)),
        Err(e) => ctx.emit(FleetEvent::Stopped {
            why: format!("the journal was not written: {}", e.cause),
        }),
    }
}

/// The bound of one phase.
#[derive(Clone, Copy)]
struct Limit {
    concurrency: usize,
    max_failures: usize,
}

/// Deploys `indices` in order, at most `limit.concurrency` at once; before each start the
/// failures so far are counted, and once they reach `limit.max_failures` (or the work is
/// cancelled) nothing more starts. A member counts its failure before it gives up its place,
/// so the next start sees it. Returns why members were left unstarted, if they were.
async fn run_phase(
    ctx: &FleetContext,
    (members, releases): (&Arc<Vec<Environment>>, &Arc<Vec<Arc<MigrationsDir>>>),
    indices: &[usize],
    req: &FleetRequest,
    limit: Limit,
    failures: &Arc<AtomicUsize>,
    reports: &mut [Option<MemberReport>],
) -> Option<String> {
    let places = Arc::new(Semaphore::new(limit.concurrency));
    // Held while a start reads the failures and takes its time, and while a failure is counted
    // and takes its own: whatever starts after a failure is known sees it.
    let order = Arc::new(std::sync::Mutex::new(()));
    let mut running = JoinSet::new();
    let mut stopped = None;
    for &i in indices {
        let place = tokio::select! {
            p = places.clone().acquire_owned() => p,
            () = ctx.cancel.cancelled() => {
                stopped = Some("cancelled: no other database was started".to_owned());
                break;
            }
        };
        // The semaphore is never closed.
        let Ok(place) = place else { break };
        let started_at = {
            let _held = order.lock().unwrap_or_else(|p| p.into_inner());
            let failed = failures.load(Ordering::SeqCst);
            if failed >= limit.max_failures {
                stopped = Some(format!(
                    "{failed} database(s) failed, the limit is {}: no other database was started",
                    limit.max_failures
                ));
                break;
            }
            Utc::now()
        };
        if ctx.cancel.is_cancelled() {
            stopped = Some("cancelled: no other database was started".to_owned());
            break;
        }
        let ctx = ctx.clone();
        let env = members[i].clone();
        let release = releases[i].clone();
        let req = member_request(&env, req);
        let failures = failures.clone();
        let order = order.clone();
        ctx.emit(FleetEvent::MemberStarted { index: i });
        running.spawn(async move {
            let mut report = deploy_member(&ctx, (env, &release), i, &req, started_at).await;
            if !report.outcome.ok() {
                let _held = order.lock().unwrap_or_else(|p| p.into_inner());
                failures.fetch_add(1, Ordering::SeqCst);
                report.finished_at = Some(Utc::now());
            }
            ctx.emit(FleetEvent::MemberFinished {
                index: i,
                outcome: report.outcome,
                summary: report.summary(),
            });
            drop(place);
            (i, report)
        });
    }
    while let Some(done) = running.join_next().await {
        match done {
            Ok((i, report)) => reports[i] = Some(report),
            // A member's task that panicked is a bug; it is its failure, not the fleet's end.
            Err(e) => ctx.emit(FleetEvent::Stopped {
                why: format!("a member's deploy ended abnormally: {e}"),
            }),
        }
    }
    stopped
}

/// The release of each member, read once before any starts (a folder that several members
/// share, once): what the folder holds when the fleet starts is what every database gets,
/// and a folder that cannot be read stops the fleet before anything runs.
fn read_releases(fleet: &Fleet, members: &[Environment]) -> Result<Vec<Arc<MigrationsDir>>> {
    let mut read: Vec<Arc<MigrationsDir>> = Vec::with_capacity(members.len());
    for env in members {
        let same = read.iter().find(|d| d.path == env.migrations_dir).cloned();
        let dir = match same {
            Some(dir) => dir,
            None => Arc::new(MigrationsDir::load(&env.migrations_dir).map_err(|e| Error {
                cause: format!(
                    "fleet '{}': {}; no database was started",
                    fleet.name, e.cause
                ),
                ..e
            })?),
        };
        read.push(dir);
    }
    Ok(read)
}

/// A member's deploy request: the fleet's, with the fleet's confirmation carried in as this
/// database's own (the guard of each member checks it against its database when it starts).
fn member_request(env: &Environment, req: &FleetRequest) -> DeployRequest {
    DeployRequest {
        confirmation: req
            .deploy
            .confirmation
            .as_ref()
            .map(|_| Confirmation::typed(&env.target.dbname)),
        ..req.deploy.clone()
    }
}

/// A member's context: its environment, the fleet's journal (each entry naming the member),
/// its events to `tx`, and the fleet's cancellation.
fn member_context(ctx: &FleetContext, env: &Environment, tx: UnboundedSender<Event>) -> Context {
    Context::new(
        env.clone(),
        Arc::new(MemberJournal {
            inner: ctx.journal.clone(),
            member: env.name.clone(),
        }),
        tx,
        ctx.cancel.clone(),
    )
}

/// One member's deploy by the deploy workflow, its events relayed as the fleet's.
async fn deploy_member(
    ctx: &FleetContext,
    (env, release): (Environment, &MigrationsDir),
    index: usize,
    req: &DeployRequest,
    started_at: DateTime<Utc>,
) -> MemberReport {
    let result = with_events(
        |e: Event| ctx.emit(FleetEvent::Member { index, event: e }),
        |tx| {
            let c = member_context(ctx, &env, tx);
            async move { super::deploy::deploy_release(&c, req, release.clone()).await }
        },
    )
    .await;
    let (outcome, applied, error) = match result {
        Ok(r) if r.applied.is_empty() => (MemberOutcome::UpToDate, Vec::new(), None),
        Ok(r) => (
            MemberOutcome::Applied,
            r.applied.iter().map(|a| a.name.clone()).collect(),
            None,
        ),
        Err(e) => (
            if e.kind == ErrorKind::Cancelled {
                MemberOutcome::Cancelled
            } else {
                MemberOutcome::Failed
            },
            Vec::new(),
            Some(e),
        ),
    };
    MemberReport {
        name: env.name.clone(),
        database: env.target.to_string(),
        canary: false,
        outcome,
        applied,
        error,
        health: None,
        started_at: Some(started_at),
        finished_at: Some(Utc::now()),
    }
}

/// The fleet's journal as one member writes into it: each entry says which member it is.
struct MemberJournal {
    inner: Arc<dyn Recorder>,
    member: String,
}

impl Recorder for MemberJournal {
    fn record(&self, event: journal::Event) -> Result<journal::Entry> {
        use journal::Event as J;
        let m = &self.member;
        let event = match event {
            J::Released {
                workflow,
                outcome,
                summary,
                applied,
                not_applied,
                duration_ms,
            } => J::Released {
                workflow: format!("{workflow} {m}"),
                outcome,
                summary,
                applied,
                not_applied,
                duration_ms,
            },
            J::Override { what, reason } => J::Override {
                what: format!("{m}: {what}"),
                reason,
            },
            J::Confirmed { what } => J::Confirmed {
                what: format!("{m}: {what}"),
            },
            J::MigrationStopped {
                migration,
                attempt,
                attempts,
                victims,
                longest_wait_ms,
                blocking_timeout_ms,
            } => J::MigrationStopped {
                migration: format!("{m}: {migration}"),
                attempt,
                attempts,
                victims,
                longest_wait_ms,
                blocking_timeout_ms,
            },
            other => other,
        };
        self.inner.record(event)
    }
}

/// The one confirmation of a fleet deploy. A fleet with a protected member needs the fleet's
/// name typed; a name typed is checked on any fleet. Returns what to journal once the work
/// starts. Its `Ask` names the fleet and its count; `expect` is the fleet's name.
fn confirm_fleet(
    fleet: &Fleet,
    members: &[Environment],
    given: Option<&Confirmation>,
) -> Result<Option<String>> {
    let protected = members.iter().filter(|m| m.protected).count();
    let name = &fleet.name;
    let scope: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let ask = Ask {
        title: format!(
            "Deploy to fleet '{name}': {} database(s){}",
            members.len(),
            if protected > 0 {
                format!(", {protected} protected")
            } else {
                String::new()
            }
        ),
        lines: fleet_lines(members),
        expect: (protected > 0).then(|| name.clone()),
        scope: scope.clone(),
    };
    let typed = given.and_then(|g| g.typed.as_deref());
    if let Some(t) = typed
        && t != name
    {
        return Err(Error::guarded(
            Guard::Confirmation,
            format!("the confirmation '{t}' does not match the fleet '{name}'; nothing was done"),
            "type the fleet's name: one confirmation covers every database in it",
        )
        .with(Remedy::Confirm(ask)));
    }
    if protected == 0 {
        return Ok(None);
    }
    let Some(given) = given else {
        return Err(Error::guarded(
            Guard::Confirmation,
            format!(
                "fleet '{name}' has {protected} protected database(s); about to deploy to all {} of them",
                members.len()
            ),
            "nothing was done; confirm it to go ahead",
        )
        .with(Remedy::Confirm(ask)));
    };
    if typed.is_none() {
        return Err(Error::guarded(
            Guard::Confirmation,
            format!(
                "fleet '{name}' has protected databases: a yes is not enough, the fleet's name must be typed; nothing was done"
            ),
            "type the fleet's name exactly",
        )
        .with(Remedy::Confirm(ask)));
    }
    if !given.scope.is_empty() && given.scope != scope {
        return Err(Error::guarded(
            Guard::Confirmation,
            format!(
                "the fleet changed since it was confirmed: {} database(s) then, {} now; nothing was done",
                given.scope.len(),
                scope.len()
            ),
            "look at what it would do now and confirm again",
        )
        .with(Remedy::Confirm(ask)));
    }
    Ok(Some(format!("{} ({})", ask.title, scope.join(", "))))
}

fn fleet_lines(members: &[Environment]) -> Vec<String> {
    const SHOWN: usize = 12;
    let mut lines = vec!["Deploys the pending migrations of each, in this order:".to_owned()];
    for m in members.iter().take(SHOWN) {
        lines.push(format!(
            "  {} ({}{})",
            m.name,
            m.target.dbname,
            if m.protected { ", protected" } else { "" }
        ));
    }
    if members.len() > SHOWN {
        lines.push(format!("  ... and {} more", members.len() - SHOWN));
    }
    lines.push(
        "Each database has its own ledger, lock and guards: a protected one still needs its own \
         verified backup."
            .to_owned(),
    );
    lines
}

/// The migration a member is at, from its deploy's events: (index, total), for the console.
pub fn migration_progress(event: &Event) -> Option<(usize, usize)> {
    match event {
        Event::Deploy(DeployEvent::MigrationStarted { index, total, .. }) => Some((*index, *total)),
        _ => None,
    }
}
