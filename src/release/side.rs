//! Recovery beside production: the environment's pgBackRest stanza restored to a named restore
//! point into a new data directory, started there as a cluster of its own on a free port,
//! read-only (recovery paused at the point), for the operator to inspect or to copy a damaged
//! table back from while production keeps every newer write. It never touches the
//! environment's server: the restore writes only into the new directory, and the side cluster
//! archives nothing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::deploy::record_release;
use super::{Confirmation, Context, Event, Needs, Workflow, confirm};
use crate::backup::pgbackrest;
use crate::db::{self, sandbox::Sandbox, server::LocalServer};
use crate::error::{Ask, Error, Guard, Result};
use crate::journal::Outcome;
use crate::migrate::ledger::Ledger;
use crate::units::human_duration;

/// How long the side cluster may take to replay up to the restore point.
const REPLAY_WITHIN: Duration = Duration::from_secs(300);

/// A side restore: the restore point and the new data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideRestoreRequest {
    pub point: String,
    pub dir: PathBuf,
}

/// The side cluster, running, and what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct SideRestored {
    pub point: String,
    pub dir: PathBuf,
    pub port: u16,
    /// How to reach it (password, if any, redacted): the environment's database and user on
    /// the side cluster's socket.
    pub url: String,
    /// The newest migration applied there, from its `_prisma_migrations`.
    pub migration_head: Option<String>,
    /// The largest tables' exact row counts there.
    pub tables: Vec<(String, i64)>,
    /// How to stop it when done.
    pub stop: String,
}

/// Restores, starts, waits for the replay to stop at the point, then reads the migration head
/// and the row counts of the largest tables.
pub async fn side_restore(ctx: &Context, req: &SideRestoreRequest) -> Result<SideRestored> {
    let env = &ctx.env;
    let stanza = stanza_for_point(ctx, &req.point)?;
    ctx.check_cancelled(Workflow::SideRestore.name())?;
    Sandbox::prepare_restore_dir(&req.dir)?;
    ctx.emit(Event::Started {
        workflow: Workflow::SideRestore,
        what: format!(
            "stanza {} to restore point {} into {}",
            stanza.stanza,
            req.point,
            req.dir.display()
        ),
    });
    let result = run(ctx, stanza, req).await;
    match &result {
        Ok(side) => record_release(
            ctx,
            Workflow::SideRestore,
            Outcome::Ok,
            &format!(
                "restore point {} running beside {} on port {} in {}",
                side.point,
                env.name,
                side.port,
                side.dir.display()
            ),
            &[],
            &[],
        ),
        Err(e) => record_release(
            ctx,
            Workflow::SideRestore,
            Outcome::of(e),
            &e.cause,
            &[],
            &[],
        ),
    }
    result
}

/// The environment's stanza, for recovering to the restore point `point`: an environment
/// without one, or a point without a name, is an input error.
fn stanza_for_point<'a>(
    ctx: &'a Context,
    point: &str,
) -> Result<&'a pgbackrest::PgbackrestSettings> {
    let env = &ctx.env;
    let Some(stanza) = &env.backup.pgbackrest else {
        return Err(Error::input(
            format!(
                "environment {} has no pgBackRest stanza: recovering to a restore point needs backup_tool = \"pgbackrest\"",
                env.name
            ),
            "set backup_tool = \"pgbackrest\" and pgbackrest_stanza for the environment, or restore a pg_dump backup file",
        ));
    };
    if point.trim().is_empty() {
        return Err(Error::input(
            "the restore point's name is empty",
            "name the point the deploy printed (pgdeck_<environment>_<time>); the journal has it too",
        ));
    }
    Ok(stanza)
}

async fn run(
    ctx: &Context,
    stanza: &pgbackrest::PgbackrestSettings,
    req: &SideRestoreRequest,
) -> Result<SideRestored> {
    let env = &ctx.env;
    let started = Instant::now();
    let restored = tokio::select! {
        r = pgbackrest::restore_to_point(stanza, &req.point, &req.dir) => r?,
        () = ctx.cancel.cancelled() => {
            return Err(Error::cancelled(
                format!("side restore cancelled: {} holds a partial restore", req.dir.display()),
                "remove the directory; production was not touched",
            ));
        }
    };
    ctx.emit(Event::Checked(format!(
        "{} into {} ({})",
        restored.command,
        req.dir.display(),
        human_duration(started.elapsed())
    )));
    let dir = req.dir.clone();
    let sandbox = tokio::task::spawn_blocking(move || Sandbox::start_restored(&dir))
        .await
        .map_err(|e| Error::runtime(format!("starting the side cluster: {e}"), "try again"))??;
    let target = env
        .target
        .on_socket(&req.dir, sandbox.port())
        .with_application_name("pgdeck-side");
    let session = db::connect(&target).await?;
    // Ready for read-only connections is not yet at the point: wait for the replay to pause there.
    let replaying = Instant::now();
    loop {
        let paused: bool = session
            .client
            .query_one(
                "SELECT pg_is_in_recovery() AND pg_is_wal_replay_paused()",
                &[],
            )
            .await
            .map_err(|e| db::query_error("asking the side cluster where its replay is", &e))?
            .get(0);
        if paused {
            break;
        }
        if replaying.elapsed() > REPLAY_WITHIN {
            return Err(Error::runtime(
                format!(
                    "the side cluster did not reach restore point {} within {}",
                    req.point,
                    human_duration(REPLAY_WITHIN)
                ),
                format!(
                    "its log is {}; a point created after the newest archived WAL cannot be reached",
                    req.dir.join("server.log").display()
                ),
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = ctx.cancel.cancelled() => ctx.check_cancelled("side restore")?,
        }
    }
    ctx.emit(Event::Checked(format!(
        "recovery paused at restore point {}: read-only",
        req.point
    )));
    let (migration_head, tables) = head_and_tables(&session.client, &target.schema).await?;
    Ok(SideRestored {
        point: req.point.clone(),
        dir: req.dir.clone(),
        port: sandbox.port(),
        url: target.to_string(),
        migration_head,
        tables,
        stop: format!("pg_ctl -D {} stop", req.dir.display()),
    })
}

/// The in-place point-in-time recovery, as the steps an operator runs on the database server:
/// what `--in-place --print` shows. It changes nothing.
#[derive(Debug, Clone, Serialize)]
pub struct InPlaceProcedure {
    pub point: String,
    pub stanza: String,
    /// The server's data directory, when the server could be asked (`SHOW data_directory`).
    pub data_directory: Option<String>,
    /// What recovering in place loses.
    pub loses: String,
    /// The shell steps, in order, each with what it does.
    pub steps: Vec<(String, String)>,
}

/// The procedure for recovering the environment's cluster in place to the restore point.
pub async fn in_place_procedure(ctx: &Context, point: &str) -> Result<InPlaceProcedure> {
    let env = &ctx.env;
    let stanza = stanza_for_point(ctx, point)?;
    // Best effort: the procedure is wanted most when the server is in trouble.
    let data_directory = match db::connect(&env.target).await {
        Ok(s) => s
            .client
            .query_one("SELECT current_setting('data_directory')", &[])
            .await
            .ok()
            .map(|r| r.get::<_, String>(0)),
        Err(_) => None,
    };
    let dir = data_directory
        .clone()
        .unwrap_or_else(|| "\"$PGDATA\"".to_owned());
    let mut pgbackrest = stanza.command.join(" ");
    pgbackrest.push_str(&format!(" --stanza={}", stanza.stanza));
    if let Some(config) = &stanza.config {
        pgbackrest.push_str(&format!(" --config={}", config.display()));
    }
    let steps = vec![
        (
            "stop the application's writes (maintenance mode), then the server, on the database host".to_owned(),
            format!("pg_ctl -D {dir} -m fast stop"),
        ),
        (
            "restore the stanza over the data directory, only the files that differ, to the point, promoted there".to_owned(),
            format!(
                "{pgbackrest} --delta --type=name --target={point} --target-action=promote restore"
            ),
        ),
        (
            "start the server: it replays the archived WAL up to the restore point and opens for writes".to_owned(),
            format!("pg_ctl -D {dir} -l {dir}/recovery.log start"),
        ),
        (
            "check that recovery stopped at the point (the server's log says \"recovery stopping at restore point\") and that the server is a primary again".to_owned(),
            "psql -Atc 'SELECT pg_is_in_recovery()'   # f".to_owned(),
        ),
        (
            "take a new base backup at once: the cluster is on a new timeline".to_owned(),
            format!("{pgbackrest} --type=full backup"),
        ),
    ];
    Ok(InPlaceProcedure {
        point: point.to_owned(),
        stanza: stanza.stanza.clone(),
        data_directory,
        loses: format!(
            "every write to the whole cluster (every database on it, not only {}) made after restore point {point}",
            env.target.dbname
        ),
        steps,
    })
}

/// What a recovered cluster holds: its migration head, and the exact row counts of its five
/// largest tables.
async fn head_and_tables(
    client: &tokio_postgres::Client,
    schema: &str,
) -> Result<(Option<String>, Vec<(String, i64)>)> {
    let migration_head = Ledger::read(client, schema).await?.and_then(|l| l.head());
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' \
             ORDER BY pg_total_relation_size(c.oid) DESC, 1 LIMIT 5",
            &[],
        )
        .await
        .map_err(|e| db::query_error("finding the largest tables", &e))?;
    let mut tables = Vec::new();
    for r in rows {
        let table: String = r.get(0);
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(|e| db::query_error(&format!("counting the rows of {table}"), &e))?
            .get(0);
        tables.push((table, count));
    }
    Ok((migration_head, tables))
}

/// An in-place recovery: the restore point, where the environment's journals are (the point
/// must be one they recorded), and the operator's confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InPlaceRequest {
    pub point: String,
    pub journal_dir: PathBuf,
    pub confirmation: Option<Confirmation>,
}

/// The cluster recovered in place, and what it holds now.
#[derive(Debug, Clone, Serialize)]
pub struct InPlaceRecovered {
    pub point: String,
    pub data_directory: PathBuf,
    pub port: u16,
    pub migration_head: Option<String>,
    pub tables: Vec<(String, i64)>,
    /// The server's log of the recovery.
    pub log: PathBuf,
    pub took_ms: u64,
    /// What is due now: a new base backup, the cluster being on a new timeline.
    pub next: String,
}

/// Recovers the environment's own cluster, in place, to a restore point: refused unless the
/// server runs on this machine (and this process can act as its owner), the point is one the
/// journals recorded and the stanza can still reach, and the database name is typed. Then the
/// server is stopped, the stanza restored over its data directory (`--delta`, to the point,
/// promoted there), started, and once it is a primary again its migration head and largest
/// tables are read. Journaled from the confirmation to the outcome.
pub async fn in_place_recover(ctx: &Context, req: &InPlaceRequest) -> Result<InPlaceRecovered> {
    let env = &ctx.env;
    let stanza = stanza_for_point(ctx, &req.point)?;
    let refused = |guard: Guard, why: String, hint: &str| {
        Error::guarded(
            guard,
            format!(
                "in-place recovery of environment '{}' refused: {why}; nothing was done",
                env.name
            ),
            hint,
        )
    };
    const NOT_HERE: &str = "run it on the database server's host as its user (or root), or recover into a side cluster and copy back what is needed";
    if !db::server::is_local_host(&env.target) {
        return Err(refused(
            Guard::NotLocal,
            format!(
                "the server is reached over the network at {}: recovering it in place runs on its own host",
                env.target.host
            ),
            NOT_HERE,
        ));
    }
    super::direct_connection(ctx, Workflow::InPlaceRecovery)?;
    super::primary::primary_session(ctx, Workflow::InPlaceRecovery).await?;
    let Some(point) = super::pitr::journaled_point(env, &req.journal_dir, &req.point) else {
        return Err(refused(
            Guard::RecoveryTarget,
            format!(
                "no restore point named {} in environment {}'s journals (a name recovery does not find would replay to the end of the WAL, and the server would not start)",
                req.point, env.name
            ),
            "name a point a deploy or the restore point step created: the Rollback screen and the journal show them",
        ));
    };
    let info = pgbackrest::info(stanza).await?;
    if let Err(gone) = super::pitr::recoverable(&info, &point) {
        return Err(refused(
            Guard::RecoveryTarget,
            gone,
            super::pitr::RETENTION_HINT,
        ));
    }
    let session = db::connect(&env.target).await?;
    let server = match LocalServer::find(&session.client, &env.target).await? {
        Ok(server) => server,
        Err(why) => {
            return Err(refused(Guard::NotLocal, why, NOT_HERE));
        }
    };
    drop(session);
    let loses = format!(
        "every write to the whole cluster (every database on it, not only {}) made after restore point {} ({} UTC)",
        env.target.dbname,
        point.name,
        point.at.format("%Y-%m-%d %H:%M:%S")
    );
    let confirmed = confirm(
        ctx,
        Needs::Name,
        Ask {
            title: format!(
                "Recover the cluster of {} in place to restore point {}",
                env.target.dbname, point.name
            ),
            lines: vec![
                format!("It loses {loses}."),
                format!(
                    "The server (process {}, port {}, data directory {}) is stopped, every session disconnected; the stanza {} is restored over its files and the server started again: it is down meanwhile.",
                    server.pid,
                    server.port,
                    server.data_dir.display(),
                    stanza.stanza
                ),
                "Stop the application's writes first.".into(),
            ],
            expect: None,
            scope: vec![point.name.clone(), server.data_dir.display().to_string()],
        },
        req.confirmation.as_ref(),
    )?;
    ctx.check_cancelled(Workflow::InPlaceRecovery.name())?;
    confirmed.record(ctx);
    ctx.note(format!("recovering in place loses {loses}"));
    ctx.emit(Event::Started {
        workflow: Workflow::InPlaceRecovery,
        what: format!(
            "in-place recovery of {} to restore point {}",
            server.data_dir.display(),
            point.name
        ),
    });
    ctx.notify(&format!(
        "rollback started on {}: recovering the cluster in place to {}",
        env.name, point.name
    ))
    .await;
    let result = recover(ctx, stanza, &server, &point.name).await;
    match &result {
        Ok(r) => {
            ctx.notify(&format!(
                "rollback finished on {}: recovered in place to {}",
                env.name, point.name
            ))
            .await;
            record_release(
                ctx,
                Workflow::InPlaceRecovery,
                Outcome::Ok,
                &format!(
                    "cluster recovered in place to restore point {}; migration head {}",
                    r.point,
                    r.migration_head.as_deref().unwrap_or("none")
                ),
                &[],
                &[],
            );
        }
        Err(e) => {
            ctx.notify(&format!("rollback FAILED on {}: {}", env.name, e.cause))
                .await;
            record_release(
                ctx,
                Workflow::InPlaceRecovery,
                Outcome::of(e),
                &e.cause,
                &[],
                &[],
            );
        }
    }
    result
}

/// Once the server is stopped there is no going back half-way: cancelling is not heard until
/// the server runs again.
async fn recover(
    ctx: &Context,
    stanza: &pgbackrest::PgbackrestSettings,
    server: &LocalServer,
    point: &str,
) -> Result<InPlaceRecovered> {
    let env = &ctx.env;
    let started = Instant::now();
    let stopping = server.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .map_err(|e| Error::runtime(format!("stopping the server: {e}"), "try again"))??;
    ctx.emit(Event::Checked(format!(
        "server stopped ({})",
        server.describe_stop()
    )));
    let restored = pgbackrest::run(
        stanza,
        &[
            &format!("--pg1-path={}", server.data_dir.display()),
            "--delta",
            "--type=name",
            &format!("--target={point}"),
            "--target-action=promote",
            "restore",
        ],
    )
    .await?;
    if !restored.ok {
        let last = restored.last_line();
        return Err(Error::runtime(
            format!(
                "pgbackrest restore failed, and the server is STOPPED with its data directory {} partly restored: {last}",
                server.data_dir.display()
            ),
            format!(
                "fix the cause and run it again on this host: {} (then start the server with pg_ctl); do not start the server on the files as they are",
                restored.command
            ),
        ));
    }
    ctx.emit(Event::Checked(format!(
        "{} ({})",
        restored.command,
        human_duration(started.elapsed())
    )));
    if server.remove_stale_socket_locks()? > 0 {
        ctx.emit(Event::Checked(
            "the socket lock files the restore brought back removed (stale: the server is stopped)"
                .into(),
        ));
    }
    let log = server.data_dir.join("pgdeck-recovery.log");
    let starting = (server.clone(), log.clone());
    tokio::task::spawn_blocking(move || starting.0.start(&starting.1))
        .await
        .map_err(|e| Error::runtime(format!("starting the server: {e}"), "try again"))??;
    ctx.emit(Event::Checked(format!(
        "server started, replaying the archived WAL up to {point}"
    )));
    let replaying = Instant::now();
    let session = loop {
        let ready = match db::connect(&env.target).await {
            Ok(s) => {
                let recovering: bool = s
                    .client
                    .query_one("SELECT pg_is_in_recovery()", &[])
                    .await
                    .map_err(|e| db::query_error("asking the server whether it recovers", &e))?
                    .get(0);
                (!recovering).then_some(s)
            }
            Err(_) => None,
        };
        if let Some(s) = ready {
            break s;
        }
        if replaying.elapsed() > REPLAY_WITHIN {
            return Err(Error::runtime(
                format!(
                    "the server did not finish recovering to {point} within {}",
                    human_duration(REPLAY_WITHIN)
                ),
                format!("its log is {}", log.display()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ctx.emit(Event::Checked(format!(
        "recovery stopped at restore point {point}: the server is a primary again, on a new timeline"
    )));
    let (migration_head, tables) = head_and_tables(&session.client, &env.target.schema).await?;
    let mut backup = stanza.command.join(" ");
    backup.push_str(&format!(" --stanza={}", stanza.stanza));
    if let Some(config) = &stanza.config {
        backup.push_str(&format!(" --config={}", config.display()));
    }
    Ok(InPlaceRecovered {
        point: point.to_owned(),
        data_directory: server.data_dir.clone(),
        port: server.port,
        migration_head,
        tables,
        log,
        took_ms: started.elapsed().as_millis() as u64,
        next: format!("take a new full base backup now: {backup} --type=full backup"),
    })
}
