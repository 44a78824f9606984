//! `pgdeck demo`: a local sandbox cluster with the sample migrations deployed, to try pgdeck
//! without touching a real database.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use tokio_util::sync::CancellationToken;

use super::{GlobalArgs, exit, output};
use crate::db::{self, quote_ident, sandbox::Sandbox};
use crate::error::{Error, Result};
use crate::migrate::{self, MigrationsDir};
use crate::release::{self, Environment};

const DEMO_DB: &str = "pgdeck_demo";

/// The demo's environment: its journal sessions are under this name.
pub const ENVIRONMENT: &str = "demo";

/// The sample migrations shipped in the repository's `migrations/`, built into the binary so the
/// demo works from any directory.
const SAMPLES: &[(&str, &str)] = &[
    (
        "migration_lock.toml",
        include_str!("../../migrations/migration_lock.toml"),
    ),
    (
        "20251001000000_init/migration.sql",
        include_str!("../../migrations/20251001000000_init/migration.sql"),
    ),
    (
        "20251001000000_init/down.sql",
        include_str!("../../migrations/20251001000000_init/down.sql"),
    ),
    (
        "20251029000000_add_stripe_webhook_event/migration.sql",
        include_str!("../../migrations/20251029000000_add_stripe_webhook_event/migration.sql"),
    ),
    (
        "20251029000000_add_stripe_webhook_event/down.sql",
        include_str!("../../migrations/20251029000000_add_stripe_webhook_event/down.sql"),
    ),
    (
        "20251105000000_add_qrcode_used_by_index/migration.sql",
        include_str!("../../migrations/20251105000000_add_qrcode_used_by_index/migration.sql"),
    ),
    (
        "20251105000000_add_qrcode_used_by_index/down.sql",
        include_str!("../../migrations/20251105000000_add_qrcode_used_by_index/down.sql"),
    ),
];

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Stop the sandbox server instead of starting it
    #[arg(long, conflicts_with = "fresh")]
    pub stop: bool,
    /// Drop and recreate the demo database first, so every sample migration is pending again
    #[arg(long)]
    pub fresh: bool,
}

/// Where the demo cluster lives: `$PGDECK_DEMO_HOME`, else the user data dir; as root
/// `/var/tmp/pgdeck-root`, because the server then runs as `postgres`, who cannot enter root's home.
pub fn sandbox_home() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PGDECK_DEMO_HOME") {
        return Ok(PathBuf::from(dir));
    }
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/tmp/pgdeck-root"));
    }
    directories::ProjectDirs::from("dev", "pgdeck", "pgdeck")
        .map(|d| d.data_dir().to_owned())
        .ok_or_else(|| Error::runtime("cannot determine the user data directory", "set HOME"))
}

pub async fn run(g: &GlobalArgs, args: &DemoArgs, cancel: &CancellationToken) -> Result<u8> {
    let home = sandbox_home()?;
    let data_dir = home.join("cluster");
    if args.stop {
        let was_running = Sandbox::stop_persistent(&data_dir)?;
        output::stdout(if was_running {
            "demo sandbox stopped"
        } else {
            "demo sandbox was not running"
        });
        return Ok(exit::OK);
    }
    std::fs::create_dir_all(&home).map_err(|e| {
        Error::runtime(
            format!("cannot create {}: {e}", home.display()),
            "check permissions",
        )
    })?;
    output::stderr(&format!(
        "starting the demo sandbox in {} ...",
        data_dir.display()
    ));
    let sandbox = Sandbox::open_persistent(&data_dir)?;
    let migrations_dir = match &g.migrations {
        Some(dir) => dir.clone(),
        None => materialize_samples(&home.join("migrations"))?,
    };
    let created = ensure_database(&sandbox, args.fresh).await?;
    if created && g.migrations.is_none() {
        seed(&sandbox, &migrations_dir).await?;
    }
    let env = Environment {
        migrations_dir,
        ..Environment::new(ENVIRONMENT, sandbox.target(DEMO_DB))
    };
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() && !g.json {
        // The console walks the whole checklist on the sandbox, with the production guard on:
        // backup and verify before deploy, the database name typed to deploy.
        let env = Environment {
            protected: true,
            backup: crate::backup::BackupSettings {
                dir: home.join("backups"),
                ..Default::default()
            },
            health: crate::health::HealthSettings {
                window: std::time::Duration::from_secs(3),
                probes: vec!["SELECT 1".into(), "SELECT COUNT(*) FROM \"User\"".into()],
                ..Default::default()
            },
            ..env
        };
        return super::open_console(env, Vec::new(), cancel).await;
    }
    let job = super::Job::new(env.clone(), cancel.clone(), "demo");
    let mut printer = output::Printer::live(g.json);
    crate::events::with_events(
        |e| printer.take(e),
        |tx| {
            let ctx = job.context(tx);
            async move { release::deploy(&ctx, &release::DeployRequest::default()).await }
        },
    )
    .await?;
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (report, version) = migrate::status(&env.target, &dir).await?;
    let url = sandbox.url(DEMO_DB);
    if g.json {
        output::json(&json!({
            "ok": true,
            "database_url": url,
            "data_dir": data_dir,
            "migrations": env.migrations_dir,
            "status": report.migrations,
        }));
    } else {
        output::stdout(output::status_table(&env, &report, &version).trim_end());
        output::stdout(&format!(
            "\nThe sandbox keeps running. Try:\n  pgdeck --database-url '{url}' --migrations {} status\n  pgdeck demo --stop",
            env.migrations_dir.display()
        ));
    }
    Ok(exit::OK)
}

/// A new demo database starts as production would before a release: the first sample
/// migration applied and a few rows in its tables, the newer migrations pending.
async fn seed(sandbox: &Sandbox, migrations: &Path) -> Result<()> {
    let mut first = MigrationsDir::load(migrations)?;
    first.migrations.truncate(1);
    let opts = migrate::DeployOptions::new(migrate::DeploySettings::default());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    migrate::deploy(&sandbox.target(DEMO_DB), &first, &opts, &tx).await?;
    let session = db::connect(&sandbox.target(DEMO_DB)).await?;
    session
        .client
        .batch_execute(
            "INSERT INTO \"User\" (id, email, name, \"updatedAt\") VALUES \
               ('u1', 'ana@example.com', 'Ana', now()), ('u2', 'ben@example.com', 'Ben', now()), \
               ('u3', 'chloe@example.com', NULL, now()); \
             INSERT INTO \"QRCode\" (id, code, \"ownerId\") VALUES \
               ('q1', 'QR-0001', 'u1'), ('q2', 'QR-0002', 'u1'), ('q3', 'QR-0003', 'u2');",
        )
        .await
        .map_err(|e| db::query_error("seeding the demo database", &e))
}

/// Creates the demo database when it is missing (or `fresh`); whether it was created.
async fn ensure_database(sandbox: &Sandbox, fresh: bool) -> Result<bool> {
    let admin = db::connect(&sandbox.target("postgres")).await?;
    if fresh {
        admin
            .client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(DEMO_DB)
            ))
            .await
            .map_err(|e| db::query_error("dropping the demo database", &e))?;
    }
    let exists = admin
        .client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DEMO_DB])
        .await
        .map_err(|e| db::query_error("looking for the demo database", &e))?
        .is_some();
    if !exists {
        admin
            .client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(DEMO_DB)))
            .await
            .map_err(|e| db::query_error("creating the demo database", &e))?;
    }
    Ok(!exists)
}

/// Writes the built-in sample migrations into `dir` (files that exist are left as they are, so
/// edits made while trying pgdeck survive).
fn materialize_samples(dir: &Path) -> Result<PathBuf> {
    for (rel, text) in SAMPLES {
        let path = dir.join(rel);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::runtime(
                    format!("cannot create {}: {e}", parent.display()),
                    "check permissions",
                )
            })?;
        }
        std::fs::write(&path, text).map_err(|e| {
            Error::runtime(
                format!("cannot write {}: {e}", path.display()),
                "check permissions",
            )
        })?;
    }
    Ok(dir.to_owned())
}
