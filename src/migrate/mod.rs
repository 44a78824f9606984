//! The migration engine: the migrations folder, the `_prisma_migrations` ledger, and the
//! operations on them (status, deploy, resolve, reset, new). Prisma-compatible by construction;
//! it reports through return values and progress events and never prints.

pub mod deploy;
mod failure;
pub mod folder;
pub mod ledger;
pub mod observe;
pub mod replicas;
pub mod revert;
pub mod script;
pub mod status;
pub mod watchdog;

use crate::db::{self, query_error, quote_ident};
use crate::error::{Error, Remedy, Result};
use crate::target::DbTarget;
pub use deploy::{DeployEvent, DeployOptions, DeployOutcome, DeploySettings, deploy};
pub use folder::{FolderSource, LocalMigration, MigrationsDir};
pub use ledger::{Ledger, LedgerRow};
pub use status::{MigrationState, StatusReport, Verdict};

/// Reads the ledger and compares it with the folder. Creates nothing.
pub async fn status(target: &DbTarget, dir: &MigrationsDir) -> Result<(StatusReport, String)> {
    let session = db::connect(target).await?;
    Ok((
        status_on(&session, &target.schema, dir).await?,
        session.server_version,
    ))
}

/// [`status`] on one of the `spares` (or a new session), given back afterwards for the work.
pub async fn status_with(
    spares: &db::Spares,
    target: &DbTarget,
    dir: &MigrationsDir,
) -> Result<StatusReport> {
    let session = spares.take(target).await?;
    let status = status_on(&session, &target.schema, dir).await?;
    spares.give(session);
    Ok(status)
}

/// [`status`] on a session already open: for a caller that tells a server it cannot reach from
/// a ledger it cannot read.
pub async fn status_on(
    session: &db::Session,
    schema: &str,
    dir: &MigrationsDir,
) -> Result<StatusReport> {
    let ledger = Ledger::read(&session.client, schema).await?;
    Ok(StatusReport::build(dir, ledger.as_ref()))
}

/// Which way `resolve` records a failed or unrecorded migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The migration's changes are in the database (finished by hand, or baselining).
    Applied,
    /// The migration's changes were undone; it will run again on the next deploy.
    RolledBack,
}

/// Prisma's `migrate resolve`, with its refusals. Under the migration lock, as deploy is (a
/// deploy under way finishes first), and its reads and writes in one transaction under the
/// appliers' lock.
pub async fn resolve(
    target: &DbTarget,
    dir: &MigrationsDir,
    name: &str,
    how: Resolution,
    opts: &DeployOptions,
    events: &tokio::sync::mpsc::UnboundedSender<DeployEvent>,
) -> Result<()> {
    let _lock = deploy::lock(target, opts, events).await?;
    let mut session = opts.spares.take(target).await?;
    let tx = session
        .client
        .transaction()
        .await
        .map_err(|e| query_error("starting the resolve", &e))?;
    tx.batch_execute(&deploy::appliers_lock_sql())
        .await
        .map_err(|e| query_error("taking the appliers' lock", &e))?;
    record_resolution(&tx, &target.schema, dir, name, how).await?;
    tx.commit()
        .await
        .map_err(|e| query_error("recording the resolution", &e))
}

async fn record_resolution(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
    dir: &MigrationsDir,
    name: &str,
    how: Resolution,
) -> Result<()> {
    match how {
        Resolution::Applied => {
            let local = dir.get(name).ok_or_else(|| {
                Error::input(
                    format!("there is no migration {name} in {}", dir.path.display()),
                    "recording a migration as applied needs its folder: check the name",
                )
                .with(Remedy::Status)
            })?;
            let ledger = match Ledger::read(client, schema).await? {
                Some(l) => l,
                None => {
                    // Baselining an existing database: the ledger is created even though the
                    // schema has tables, because this very command records their history.
                    ledger::ensure_table(client, schema).await?;
                    Ledger::default()
                }
            };
            if ledger.applied(name).is_some() {
                return Err(Error::refused(
                    format!("migration {name} is already recorded as applied"),
                    "nothing to resolve",
                )
                .with(Remedy::Status));
            }
            for row in ledger.rows_for(name).filter(|r| r.is_failed()) {
                ledger::mark_rolled_back(client, schema, &row.id).await?;
            }
            ledger::insert_applied(client, schema, name, &local.checksum).await
        }
        Resolution::RolledBack => {
            let ledger = Ledger::read(client, schema).await?.unwrap_or_default();
            let rows: Vec<_> = ledger.rows_for(name).collect();
            if rows.is_empty() {
                return Err(Error::refused(
                    format!(
                        "migration {name} cannot be marked rolled back: it was never applied to this database"
                    ),
                    "check the name",
                )
                .with(Remedy::Status));
            }
            let failed: Vec<_> = rows.iter().filter(|r| r.is_failed()).collect();
            if failed.is_empty() {
                let (why, remedy) = if rows.iter().any(|r| r.is_applied()) {
                    (
                        "it is applied, not failed; an applied migration is undone by a forward rollback",
                        Remedy::Revert {
                            migration: name.to_owned(),
                        },
                    )
                } else {
                    (
                        "it is already rolled back; the next deploy applies it again",
                        Remedy::Deploy,
                    )
                };
                return Err(Error::refused(
                    format!(
                        "migration {name} cannot be marked rolled back: it is not in a failed state"
                    ),
                    why,
                )
                .with(remedy));
            }
            for row in failed {
                ledger::mark_rolled_back(client, schema, &row.id).await?;
            }
            Ok(())
        }
    }
}

/// Drops and recreates the schema, then deploys everything, all under one hold of the
/// migration lock (a deploy under way finishes first). Whether that is allowed here is the
/// caller's guard (the release room refuses it on a protected environment).
pub async fn reset(
    target: &DbTarget,
    dir: &MigrationsDir,
    opts: &DeployOptions,
    events: &tokio::sync::mpsc::UnboundedSender<DeployEvent>,
) -> Result<DeployOutcome> {
    let lock = deploy::lock(target, opts, events).await?;
    let session = opts.spares.take(target).await?;
    let s = quote_ident(&target.schema);
    session
        .client
        .batch_execute(&format!(
            "BEGIN; {}; DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s}; COMMIT;",
            deploy::appliers_lock_sql()
        ))
        .await
        .map_err(|e| query_error("dropping and recreating the schema", &e))?;
    opts.spares.give(session);
    deploy::deploy_holding(target, dir, opts, lock.as_ref(), events).await
}
