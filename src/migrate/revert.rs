//! Forward rollback: a new migration made from the `down.sql` of applied migrations, so undoing a
//! release goes through the same deploy, ledger and guards as doing it.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::status::{MigrationState, StatusReport};
use super::{LocalMigration, MigrationsDir};
use crate::error::{Error, Remedy, Result};

/// A forward rollback, not yet written: `<UTC timestamp>_rollback_<name>/` with `migration.sql`
/// made of the named migrations' `down.sql`, newest first, and a `down.sql` that re-applies
/// them, oldest first.
#[derive(Debug, Clone)]
pub struct Rollback {
    /// The migration it becomes, as it will be on disk.
    pub migration: LocalMigration,
    /// The migrations it undoes, newest first, each with its `migration.sql`.
    pub undoes: Vec<(String, String)>,
}

impl Rollback {
    pub fn name(&self) -> &str {
        &self.migration.name
    }

    /// Writes the folder; refuses to overwrite anything.
    pub fn write(&self) -> Result<PathBuf> {
        let folder = &self.migration.dir;
        let write = || -> std::io::Result<()> {
            std::fs::create_dir(folder)?;
            std::fs::write(folder.join("migration.sql"), &self.migration.script)?;
            std::fs::write(
                folder.join("down.sql"),
                self.migration.down.as_deref().unwrap_or_default(),
            )
        };
        write().map_err(|e| {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                let _ = std::fs::remove_dir_all(folder);
            }
            Error::runtime(
                format!("cannot write {}: {e}", folder.display()),
                "check the migrations folder's permissions",
            )
        })?;
        Ok(folder.clone())
    }
}

/// Writes the forward rollback of `names` (see [`prepare`]). Returns the new folder.
pub fn write_rollback(
    dir: &MigrationsDir,
    status: &StatusReport,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<PathBuf> {
    prepare(dir, status, names, now)?.write()
}

/// The forward rollback of `names`, in memory. Every named migration must be applied and have a
/// `down.sql`.
pub fn prepare(
    dir: &MigrationsDir,
    status: &StatusReport,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<Rollback> {
    if names.is_empty() {
        return Err(Error::input(
            "name at least one migration to revert",
            "name the applied migrations to undo",
        )
        .with(Remedy::Status));
    }
    let mut chosen = Vec::new();
    for name in names {
        let local = dir.get(name).ok_or_else(|| {
            Error::input(
                format!("no migration {name} in {}", dir.path.display()),
                "check the name",
            )
            .with(Remedy::Status)
        })?;
        let applied = status.migrations.iter().any(|m| {
            m.name == *name
                && matches!(
                    m.state,
                    MigrationState::Applied { .. } | MigrationState::Edited { .. }
                )
        });
        if !applied {
            return Err(Error::input(
                format!("{name} is not applied, so there is nothing to revert"),
                "revert only applied migrations; a pending one can simply be removed",
            ));
        }
        let down = local
            .down
            .as_deref()
            .filter(|d| has_sql(d))
            .ok_or_else(|| {
                Error::input(
                    format!("{name} has no down.sql with SQL in it"),
                    format!(
                        "write {} first (the SQL that undoes migration.sql), or restore a backup",
                        local.dir.join("down.sql").display()
                    ),
                )
            })?;
        if !chosen
            .iter()
            .any(|(n, _, _): &(String, String, String)| n == name)
        {
            chosen.push((name.clone(), down.to_owned(), local.sql().to_owned()));
        }
    }
    // Undo the newest first.
    chosen.sort_by(|a, b| b.0.cmp(&a.0));
    let short = |name: &str| {
        name.split_once('_')
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_else(|| name.to_owned())
    };
    let label = match chosen.len() {
        1 => short(&chosen[0].0),
        n => format!("{}_and_{}_more", short(&chosen[0].0), n - 1),
    };
    let label: String = label.chars().take(80).collect();
    let folder_name = format!("{}_rollback_{label}", now.format("%Y%m%d%H%M%S"));
    if dir.get(&folder_name).is_some() || dir.path.join(&folder_name).exists() {
        return Err(Error::input(
            format!("{folder_name} already exists"),
            "wait a second and run revert again",
        ));
    }
    // No time in it: planned now and written later, it is the same text.
    let mut up = format!(
        "-- Forward rollback written by pgdeck revert.\n-- It undoes, newest first: {}\n",
        chosen
            .iter()
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, down, _) in &chosen {
        up.push_str(&format!(
            "\n-- from {name}/down.sql\n{}\n",
            without_acknowledgements(down).trim_end()
        ));
    }
    let mut redo = String::from(
        "-- Re-applies what the rollback undid, oldest first (the original migration.sql files).\n",
    );
    for (name, _, sql) in chosen.iter().rev() {
        redo.push_str(&format!(
            "\n-- from {name}/migration.sql\n{}\n",
            sql.trim_end()
        ));
    }
    let script = up.into_bytes();
    Ok(Rollback {
        migration: LocalMigration {
            dir: dir.path.join(&folder_name),
            name: folder_name,
            checksum: hex::encode(Sha256::digest(&script)),
            script,
            down: Some(redo),
        },
        undoes: chosen
            .into_iter()
            .map(|(name, _, sql)| (name, sql))
            .collect(),
    })
}

/// A down.sql's `-- pgdeck:allow` comments, made inert: whoever wrote the down.sql did not decide
/// to run it now, so its DANGEROUS findings need the acknowledgement of the person who does.
fn without_acknowledgements(down: &str) -> String {
    down.replace(
        "pgdeck:allow",
        "pgdeck-allow-of-down.sql (not an acknowledgement here)",
    )
}

/// Whether a script holds anything but comments and blank space.
fn has_sql(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with("--")
    })
}
