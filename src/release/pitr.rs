//! The pre-deploy gate in PITR mode, for an environment whose backups are a pgBackRest stanza:
//! instead of a fresh dump, a base backup younger than `backup_max_age` of this very cluster,
//! archiving that works now, and a named restore point at the moment the release starts, whose
//! WAL segment is in the archive before the first migration runs. Recovery is then
//! point-in-time recovery to just before the release.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Environment;
use super::{Context, Event};
use crate::backup::pgbackrest::{
    self, Archiver, BaseBackup, PgbackrestSettings, RestorePoint, StanzaInfo,
};
use crate::db;
use crate::error::{Error, Guard, Result};
use crate::journal;
use crate::units::human_duration;

/// How long the restore point's segment may take to reach the archive before archiving counts
/// as not working.
const ARCHIVED_WITHIN: Duration = Duration::from_secs(30);

/// What the gate found before the confirmation.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub settings: PgbackrestSettings,
    pub backup: BaseBackup,
}

/// Why the gate does not hold: the guard and the cause.
pub(super) type Refusal = (Guard, String);

/// The stanza and the server's archiver, read together.
struct Standing {
    info: StanzaInfo,
    system_id: i64,
    archiver: Archiver,
}

impl Standing {
    async fn read(env: &Environment, settings: &PgbackrestSettings) -> Result<Standing> {
        let info = pgbackrest::info(settings).await?;
        let session = db::connect(&env.target).await?;
        let system_id: i64 = session
            .client
            .query_one("SELECT system_identifier FROM pg_control_system()", &[])
            .await
            .map_err(|e| db::query_error("reading the server's system identifier", &e))?
            .get(0);
        let archiver = Archiver::read(&session.client).await?;
        Ok(Standing {
            info,
            system_id,
            archiver,
        })
    }

    /// The newest base backup, when it is of this cluster and younger than `max_age`.
    fn backup(&self, max_age: Duration) -> std::result::Result<&BaseBackup, Refusal> {
        let info = &self.info;
        if !info.system_ids.contains(&(self.system_id as u64)) {
            return Err((
                Guard::BackupIdentity,
                format!(
                    "pgBackRest stanza {} backs up another cluster (system identifier {}), not this server ({})",
                    info.stanza,
                    info.system_ids
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.system_id
                ),
            ));
        }
        let Some(newest) = info.newest() else {
            return Err((
                Guard::Backup,
                format!("pgBackRest stanza {} holds no base backup", info.stanza),
            ));
        };
        let age = age(newest.finished);
        if age > max_age {
            return Err((
                Guard::Backup,
                format!(
                    "the newest base backup of stanza {} ({}, finished {}) is {} old, above backup_max_age {}",
                    info.stanza,
                    newest.label,
                    newest.finished.format("%Y-%m-%d %H:%M UTC"),
                    human_duration(age),
                    human_duration(max_age)
                ),
            ));
        }
        Ok(newest)
    }

    /// Why archiving does not work, or None. A quiet database may simply have written nothing
    /// lately: its archiving is proven when the work starts, by the restore point's segment
    /// reaching the archive.
    fn archiving(&self) -> Option<Refusal> {
        self.archiver
            .problem(Duration::MAX)
            .map(|p| (Guard::Archiving, p))
    }
}

fn age(at: chrono::DateTime<chrono::Utc>) -> Duration {
    (chrono::Utc::now() - at).to_std().unwrap_or_default()
}

fn backup_said(b: &BaseBackup, stanza: &str) -> String {
    format!(
        "base backup {} ({}) of stanza {stanza}, {} old",
        b.label,
        b.kind,
        human_duration(age(b.finished))
    )
}

fn archiving_said(archiver: &Archiver, max_age: Duration) -> String {
    format!(
        "archiving: {} segment(s) archived, the last {}{}",
        archiver.archived_count,
        archiver.last_archived_wal.as_deref().unwrap_or("-"),
        match archiver.problem(max_age) {
            Some(_) => " (a while ago: the restore point will prove it works now)".to_owned(),
            None => String::new(),
        }
    )
}

/// The base backup and the archiver, read now: a refusal is Ok(Err) so the operator's reason to
/// go without may still count; a failure to ask is Err.
pub(super) async fn evaluate(
    ctx: &Context,
    settings: &PgbackrestSettings,
) -> Result<std::result::Result<Found, Refusal>> {
    let standing = Standing::read(&ctx.env, settings).await?;
    let newest = match standing.backup(ctx.env.backup.max_age) {
        Ok(b) => b.clone(),
        Err(refusal) => return Ok(Err(refusal)),
    };
    ctx.emit(Event::Checked(backup_said(&newest, &settings.stanza)));
    if let Some(refusal) = standing.archiving() {
        return Ok(Err(refusal));
    }
    ctx.emit(Event::Checked(archiving_said(
        &standing.archiver,
        settings.max_archive_age,
    )));
    Ok(Ok(Found {
        settings: settings.clone(),
        backup: newest,
    }))
}

/// When the work starts: the restore point is created, journaled, and its WAL segment waited
/// for in the archive; archiving that fails meanwhile, or does not get there in time, refuses.
pub(super) async fn mark(
    ctx: &Context,
    found: &Found,
) -> Result<std::result::Result<RestorePoint, Refusal>> {
    let env = &ctx.env;
    let session = db::connect(&env.target).await?;
    let point = pgbackrest::create_restore_point(&session.client, &env.name).await?;
    ctx.record(journal::Event::RestorePointCreated {
        name: point.name.clone(),
        lsn: point.lsn.clone(),
        wal: point.wal.clone(),
        stanza: found.settings.stanza.clone(),
        base_backup: found.backup.label.clone(),
    });
    let started = Instant::now();
    loop {
        let archiver = Archiver::read(&session.client).await?;
        if archiver
            .last_archived_wal
            .as_deref()
            .is_some_and(|w| wal_at_or_after(w, &point.wal))
        {
            ctx.emit(Event::Checked(format!(
                "restore point {} created at {} and archived ({}, {})",
                point.name,
                point.lsn,
                point.wal,
                human_duration(started.elapsed())
            )));
            return Ok(Ok(point));
        }
        if let Some(problem) = archiver.problem(Duration::MAX) {
            return Ok(Err((
                Guard::Archiving,
                format!("restore point {} created, but {problem}", point.name),
            )));
        }
        if started.elapsed() > ARCHIVED_WITHIN {
            return Ok(Err((
                Guard::Archiving,
                format!(
                    "restore point {} created, but its WAL segment {} was not archived within {} (the last archived is {})",
                    point.name,
                    point.wal,
                    human_duration(ARCHIVED_WITHIN),
                    archiver.last_archived_wal.as_deref().unwrap_or("none")
                ),
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            () = ctx.cancel.cancelled() => {
                ctx.check_cancelled("deploy")?;
            }
        }
    }
}

/// WAL file names of one timeline order as text; a later timeline's are later.
fn wal_at_or_after(archived: &str, wanted: &str) -> bool {
    archived.len() == wanted.len() && archived >= wanted
}

/// Where PITR safety stands now, for the checklist's gate and the screens.
#[derive(Debug, Clone, Serialize)]
pub struct PitrState {
    pub stanza: String,
    /// The newest base backup in the stanza.
    pub backup: Option<BaseBackup>,
    pub archiver: Archiver,
    /// Why a protected deploy would be refused now, if it would.
    pub refusal: Option<String>,
    /// The newest restore point the journal names for this environment.
    pub restore_point: Option<NamedPoint>,
}

/// A restore point as the journal recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedPoint {
    pub name: String,
    pub lsn: String,
    /// The WAL segment holding it.
    pub wal: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub base_backup: String,
}

impl PitrState {
    /// The newest base backup's age, and the last archived segment's.
    pub fn ages(&self) -> (Option<Duration>, Option<Duration>) {
        (
            self.backup.as_ref().map(|b| age(b.finished)),
            self.archiver
                .last_archived_at
                .map(|at| (self.archiver.now - at).to_std().unwrap_or_default()),
        )
    }
}

/// How many of the environment's newest journals are searched for its last restore point.
const POINT_JOURNALS: usize = 20;

/// PITR safety now, or None for an environment without a pgBackRest stanza. The journals under
/// `journal_dir` tell the newest restore point.
pub async fn pitr_state(env: &Environment, journal_dir: &Path) -> Result<Option<PitrState>> {
    let Some(settings) = &env.backup.pgbackrest else {
        return Ok(None);
    };
    let standing = Standing::read(env, settings).await?;
    let refusal = match standing.backup(env.backup.max_age) {
        Err((_, why)) => Some(why),
        Ok(_) => standing.archiving().map(|(_, why)| why),
    };
    Ok(Some(PitrState {
        stanza: settings.stanza.clone(),
        backup: standing.info.newest().cloned(),
        archiver: standing.archiver,
        refusal,
        restore_point: newest_point(env, journal_dir),
    }))
}

/// The last restore point journaled for the environment, newest journals first.
pub fn newest_point(env: &Environment, journal_dir: &Path) -> Option<NamedPoint> {
    points(env, journal_dir, POINT_JOURNALS).max_by_key(|p| p.at)
}

/// The restore point of this name the environment's journals recorded, any of them.
pub(super) fn journaled_point(
    env: &Environment,
    journal_dir: &Path,
    name: &str,
) -> Option<NamedPoint> {
    points(env, journal_dir, usize::MAX).find(|p| p.name == name)
}

fn points(
    env: &Environment,
    journal_dir: &Path,
    journals: usize,
) -> impl Iterator<Item = NamedPoint> {
    journal::sessions(journal_dir, &env.name)
        .unwrap_or_default()
        .into_iter()
        .take(journals)
        .filter_map(|path| journal::read(&path).ok())
        .flat_map(|entries| {
            entries.into_iter().rev().filter_map(|e| match e.event {
                journal::Event::RestorePointCreated {
                    name,
                    lsn,
                    wal,
                    base_backup,
                    ..
                } => Some(NamedPoint {
                    name,
                    lsn,
                    wal,
                    at: e.at,
                    base_backup,
                }),
                _ => None,
            })
        })
}

fn settings_of(env: &Environment) -> Result<&PgbackrestSettings> {
    env.backup.pgbackrest.as_ref().ok_or_else(|| {
        Error::input(
            format!(
                "environment {} has no pgBackRest stanza: its backups are pg_dump files",
                env.name
            ),
            "set backup_tool = \"pgbackrest\" and pgbackrest_stanza for the environment, or use the backup and verify steps",
        )
    })
}

fn not_safe(env: &Environment, (guard, why): Refusal) -> Error {
    Error::guarded(
        guard,
        why,
        format!(
            "take a base backup of this server with pgBackRest (younger than {}), and fix WAL archiving until `pgbackrest check` passes",
            human_duration(env.backup.max_age)
        ),
    )
}

/// The checklist's "base backup recent": the stanza's newest base backup is of this cluster
/// and younger than `backup_max_age`.
pub async fn base_backup_recent(ctx: &Context) -> Result<String> {
    let settings = settings_of(&ctx.env)?;
    let standing = Standing::read(&ctx.env, settings).await?;
    let newest = standing
        .backup(ctx.env.backup.max_age)
        .map_err(|r| not_safe(&ctx.env, r))?;
    Ok(backup_said(newest, &settings.stanza))
}

/// The checklist's "archiving healthy": no archiver failure since its last success, and
/// `pgbackrest check` gets a segment through the archive_command now.
pub async fn archiving_healthy(ctx: &Context) -> Result<String> {
    let settings = settings_of(&ctx.env)?;
    let standing = Standing::read(&ctx.env, settings).await?;
    if let Some(refusal) = standing.archiving() {
        return Err(not_safe(&ctx.env, refusal));
    }
    let check = pgbackrest::run(settings, &["check"]).await?;
    if !check.ok {
        let output = check.last_line();
        return Err(not_safe(
            &ctx.env,
            (
                Guard::Archiving,
                format!(
                    "pgbackrest check of stanza {} failed: {output}",
                    settings.stanza
                ),
            ),
        ));
    }
    let archiver = Archiver::read(&db::connect(&ctx.env.target).await?.client).await?;
    Ok(format!(
        "pgbackrest check passed; {}",
        archiving_said(&archiver, settings.max_archive_age)
    ))
}

/// The checklist's "restore point created" (and `backup restore-point`): a named restore point
/// now, journaled, once its WAL segment is in the archive. A deploy still marks its own start.
pub async fn create_restore_point(ctx: &Context) -> Result<RestorePoint> {
    let settings = settings_of(&ctx.env)?;
    let found = match evaluate(ctx, settings).await? {
        Ok(found) => found,
        Err(refusal) => return Err(not_safe(&ctx.env, refusal)),
    };
    mark(ctx, &found)
        .await?
        .map_err(|refusal| not_safe(&ctx.env, refusal))
}

/// The checklist's "base backup and WAL retained" in PITR mode: the base backup the newest
/// journaled restore point starts from is still in the stanza, and the archive reaches the
/// point's segment, so a recovery to it can still be run.
pub async fn point_retained(ctx: &Context, journal_dir: &Path) -> Result<String> {
    let settings = settings_of(&ctx.env)?;
    let Some(point) = newest_point(&ctx.env, journal_dir) else {
        return Err(Error::input(
            format!(
                "no restore point of environment {} in the journal",
                ctx.env.name
            ),
            "create one (the restore point step, or a deploy) first",
        ));
    };
    let info = pgbackrest::info(settings).await?;
    recoverable(&info, &point).map_err(|what| {
        Error::runtime(
            format!(
                "restore point {} cannot be recovered to: {what}",
                point.name
            ),
            RETENTION_HINT,
        )
    })
}

pub(super) const RETENTION_HINT: &str = "check pgBackRest's retention (repo1-retention-full, repo1-retention-archive): it expired what the point needs";

/// Whether the stanza can still recover to `point`: the base backup it starts from is kept,
/// and the archive reaches its segment. Ok says so in words; Err says what is gone.
pub(super) fn recoverable(
    info: &StanzaInfo,
    point: &NamedPoint,
) -> std::result::Result<String, String> {
    if !info.backups.iter().any(|b| b.label == point.base_backup) {
        return Err(format!(
            "base backup {} is no longer in stanza {}",
            point.base_backup, info.stanza
        ));
    }
    match &info.archive_max {
        Some(max) if wal_at_or_after(max, &point.wal) => Ok(format!(
            "restore point {} kept: base backup {} and WAL up to {max} in stanza {}",
            point.name, point.base_backup, info.stanza
        )),
        max => Err(format!(
            "the archive of stanza {} ends at {}, before the point's segment {}",
            info.stanza,
            max.as_deref().unwrap_or("nothing"),
            point.wal
        )),
    }
}
