//! Comparing the migrations folder with the ledger: what is applied, pending, failed, rolled back,
//! edited after it was applied, or recorded in the database but missing from the folder.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::folder::MigrationsDir;
use super::ledger::Ledger;

/// The state of one migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MigrationState {
    Applied {
        applied_at: DateTime<Utc>,
        duration_ms: i64,
    },
    Pending,
    /// A previous attempt failed and was rolled back; it is pending again.
    RolledBack {
        rolled_back_at: DateTime<Utc>,
        logs: Option<String>,
    },
    /// Started and never finished nor resolved: blocks deploys until resolved.
    Failed {
        started_at: DateTime<Utc>,
        logs: Option<String>,
    },
    /// Applied, but the file changed since (the stored checksum no longer matches).
    Edited {
        applied_at: DateTime<Utc>,
        stored_checksum: String,
        local_checksum: String,
    },
    /// Applied or failed in the database, but the folder has no such migration.
    MissingLocally {
        started_at: DateTime<Utc>,
        finished_at: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    pub name: String,
    #[serde(flatten)]
    pub state: MigrationState,
    pub has_down_sql: bool,
}

/// Summary verdict, from worst to best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    UpToDate,
    Pending,
    Drift,
    Failed,
}

impl Verdict {
    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::UpToDate => "up to date",
            Verdict::Pending => "migrations pending",
            Verdict::Drift => "drift: the database and the folder disagree",
            Verdict::Failed => "a migration failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub ledger_exists: bool,
    pub migrations: Vec<MigrationStatus>,
}

impl StatusReport {
    pub fn build(dir: &MigrationsDir, ledger: Option<&Ledger>) -> StatusReport {
        let empty = Ledger::default();
        let ledger_ref = ledger.unwrap_or(&empty);
        let mut out: Vec<MigrationStatus> = dir
            .migrations
            .iter()
            .map(|m| {
                let rows: Vec<_> = ledger_ref.rows_for(&m.name).collect();
                let state = if let Some(failed) = rows.iter().rev().find(|r| r.is_failed()) {
                    MigrationState::Failed {
                        started_at: failed.started_at,
                        logs: failed.logs.clone(),
                    }
                } else if let Some(applied) = rows.iter().rev().find(|r| r.is_applied()) {
                    let finished = applied.finished_at.unwrap_or(applied.started_at);
                    if m.checksum_matches(&applied.checksum) {
                        MigrationState::Applied {
                            applied_at: finished,
                            duration_ms: (finished - applied.started_at).num_milliseconds(),
                        }
                    } else {
                        MigrationState::Edited {
                            applied_at: finished,
                            stored_checksum: applied.checksum.clone(),
                            local_checksum: m.checksum.clone(),
                        }
                    }
                } else if let Some(rb) = rows.iter().rev().find(|r| r.is_rolled_back()) {
                    MigrationState::RolledBack {
                        rolled_back_at: rb.rolled_back_at.unwrap_or(rb.started_at),
                        logs: rb.logs.clone(),
                    }
                } else {
                    MigrationState::Pending
                };
                MigrationStatus {
                    name: m.name.clone(),
                    state,
                    has_down_sql: m.down.is_some(),
                }
            })
            .collect();

        let mut missing: Vec<&str> = ledger_ref
            .live_names()
            .filter(|n| dir.get(n).is_none())
            .collect();
        missing.dedup();
        for name in missing {
            let Some(row) = ledger_ref
                .rows_for(name)
                .filter(|r| !r.is_rolled_back())
                .last()
            else {
                continue;
            };
            if out.iter().any(|s| s.name == name) {
                continue;
            }
            out.push(MigrationStatus {
                name: name.to_owned(),
                state: MigrationState::MissingLocally {
                    started_at: row.started_at,
                    finished_at: row.finished_at,
                },
                has_down_sql: false,
            });
        }
        out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        StatusReport {
            ledger_exists: ledger.is_some(),
            migrations: out,
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.migrations
            .iter()
            .map(|m| match m.state {
                MigrationState::Applied { .. } => Verdict::UpToDate,
                MigrationState::Pending | MigrationState::RolledBack { .. } => Verdict::Pending,
                MigrationState::Edited { .. } | MigrationState::MissingLocally { .. } => {
                    Verdict::Drift
                }
                MigrationState::Failed { .. } => Verdict::Failed,
            })
            .max()
            .unwrap_or(Verdict::UpToDate)
    }

    pub fn count(&self, pred: impl Fn(&MigrationState) -> bool) -> usize {
        self.migrations.iter().filter(|m| pred(&m.state)).count()
    }

    pub fn pending_names(&self) -> Vec<&str> {
        self.migrations
            .iter()
            .filter(|m| {
                matches!(
                    m.state,
                    MigrationState::Pending | MigrationState::RolledBack { .. }
                )
            })
            .map(|m| m.name.as_str())
            .collect()
    }
}
