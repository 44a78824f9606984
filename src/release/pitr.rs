//! The pre-deploy gate in PITR mode, for an environment whose backups are a pgBackRest stanza:
//! instead of a fresh dump, a base backup younger than `backup_max_age` of this very cluster,
//! archiving that works now, and a named restore point at the moment the release starts, whose
//! WAL segment is in the archive before the first migration runs. Recovery is then
//! point-in-time recovery to just before the release.

use std::time::{Duration, Instant};

use super::{Context, Event};
use crate::backup::pgbackrest::{self, Archiver, BaseBackup, PgbackrestSettings, RestorePoint};
use crate::db;
use crate::error::{Guard, Result};
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

/// The base backup and the archiver, read now: a refusal is Ok(Err) so the operator's reason to
/// go without may still count; a failure to ask is Err.
pub(super) async fn evaluate(
    ctx: &Context,
    settings: &PgbackrestSettings,
) -> Result<std::result::Result<Found, Refusal>> {
    let env = &ctx.env;
    let info = pgbackrest::info(settings).await?;
    let session = db::connect(&env.target).await?;
    let system_id: i64 = session
        .client
        .query_one("SELECT system_identifier FROM pg_control_system()", &[])
        .await
        .map_err(|e| db::query_error("reading the server's system identifier", &e))?
        .get(0);
    if !info.system_ids.contains(&(system_id as u64)) {
        return Ok(Err((
            Guard::BackupIdentity,
            format!(
                "pgBackRest stanza {} backs up another cluster (system identifier {}), not this server ({system_id})",
                info.stanza,
                info.system_ids
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )));
    }
    let now = chrono::Utc::now();
    let Some(newest) = info.newest() else {
        return Ok(Err((
            Guard::Backup,
            format!("pgBackRest stanza {} holds no base backup", info.stanza),
        )));
    };
    let age = (now - newest.finished).to_std().unwrap_or_default();
    if age > env.backup.max_age {
        return Ok(Err((
            Guard::Backup,
            format!(
                "the newest base backup of stanza {} ({}, finished {}) is {} old, above backup_max_age {}",
                info.stanza,
                newest.label,
                newest.finished.format("%Y-%m-%d %H:%M UTC"),
                human_duration(age),
                human_duration(env.backup.max_age)
            ),
        )));
    }
    ctx.emit(Event::Checked(format!(
        "base backup {} ({}) of stanza {}, {} old",
        newest.label,
        newest.kind,
        info.stanza,
        human_duration(age)
    )));
    let archiver = Archiver::read(&session.client).await?;
    // A quiet database may simply have written nothing lately: its archiving is proven when the
    // work starts, by the restore point's segment reaching the archive.
    if let Some(problem) = archiver.problem(Duration::MAX) {
        return Ok(Err((Guard::Archiving, problem)));
    }
    ctx.emit(Event::Checked(format!(
        "archiving: {} segment(s) archived, the last {}{}",
        archiver.archived_count,
        archiver.last_archived_wal.as_deref().unwrap_or("-"),
        match archiver.problem(settings.max_archive_age) {
            Some(_) => " (a while ago: the restore point will prove it works now)".to_owned(),
            None => String::new(),
        }
    )));
    Ok(Ok(Found {
        settings: settings.clone(),
        backup: newest.clone(),
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
