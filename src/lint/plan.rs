//! The deploy plan: for each pending migration, every statement with its transaction mode,
//! lock, rewrite, findings and live table sizes, and a verdict (ok / needs acknowledgement /
//! refused). `pgdeck plan` prints it; `deploy` on a protected environment is gated on it.

use serde::Serialize;

use super::declared::Declared;
use super::{
    FileLint, LintSettings, Observed, Severity, Sizes, catalog, lint_sql_in_order, touched_tables,
};
use crate::migrate::observe::Observation;
use crate::migrate::{MigrationsDir, deploy::statements_for};
use crate::target::DbTarget;

/// A migration's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    /// Has DANGEROUS findings nobody acknowledged; deploys elsewhere, refused when protected.
    NeedsAcknowledgement,
    /// Deploy would refuse it.
    Refused,
}

impl Verdict {
    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::NeedsAcknowledgement => "needs acknowledgement",
            Verdict::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationPlan {
    pub name: String,
    /// The migration file's checksum: an acknowledgement of one of its findings holds for
    /// exactly this content.
    pub checksum: String,
    pub transactional: bool,
    pub lint: FileLint,
    pub verdict: Verdict,
    /// Why it is refused, when it is.
    pub refusal: Option<String>,
    /// DANGEROUS findings acknowledged by `-- pgdeck:allow` in the file: each `path:line:col
    /// rule` with its reason.
    pub acknowledged_in_file: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub migrations: Vec<MigrationPlan>,
    /// Why live sizes are missing, when they are.
    pub sizes_unavailable: Option<String>,
}

/// An acknowledgement by a person: every finding of a rule (`--allow RULE --reason TEXT`), or
/// exactly one finding in exactly one version of its file, named by its [`finding_key`] (what
/// the console's acknowledgement names).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allow {
    pub rule: String,
    pub reason: String,
    pub at: Option<String>,
}

impl Allow {
    /// Every finding of `rule`.
    pub fn rule(rule: &str, reason: &str) -> Allow {
        Allow {
            rule: rule.to_owned(),
            reason: reason.to_owned(),
            at: None,
        }
    }

    /// Exactly the finding `key` (`path:line:col rule @checksum`).
    pub fn finding(key: &str, reason: &str) -> Allow {
        let id = key.split(" @").next().unwrap_or(key);
        Allow {
            rule: id.rsplit(' ').next().unwrap_or_default().to_owned(),
            reason: reason.to_owned(),
            at: Some(key.to_owned()),
        }
    }
}

/// How a finding is named in refusals: `path:line:col rule`.
pub fn finding_id(lint: &FileLint, f: &super::Finding) -> String {
    format!("{}:{}:{} {}", lint.path, f.line, f.column, f.rule)
}

/// How a finding is named when it is acknowledged: its id and the first 12 hex digits of its
/// file's checksum, so the acknowledgement lapses when the file changes.
pub fn finding_key(lint: &FileLint, f: &super::Finding, checksum: &str) -> String {
    format!(
        "{} @{}",
        finding_id(lint, f),
        &checksum[..checksum.len().min(12)]
    )
}

impl Plan {
    /// Puts a rehearsal's observations beside the static claims, statement by statement (by
    /// migration and statement number: the engine and the lint split scripts alike; the line
    /// must agree too, or the observation is not this statement's).
    pub fn observe<'a>(&mut self, observations: impl IntoIterator<Item = &'a Observation>) {
        for o in observations {
            let Some(m) = self.migrations.iter_mut().find(|m| m.name == o.migration) else {
                continue;
            };
            if let Some(s) = m
                .lint
                .statements
                .iter_mut()
                .find(|s| s.index == o.statement && s.line == o.line)
            {
                s.observed = Some(Observed::of(o, s.lock, s.rewrite));
            }
        }
    }

    /// Statements whose observed facts contradict their static claim.
    pub fn disagreements(&self) -> usize {
        self.migrations
            .iter()
            .flat_map(|m| &m.lint.statements)
            .filter(|s| {
                s.observed
                    .as_ref()
                    .is_some_and(|o| !o.disagreements.is_empty())
            })
            .count()
    }

    /// Plans `pending` (names, in order) from `dir`, with live sizes from `target` when reachable.
    pub async fn build(
        target: Option<&DbTarget>,
        dir: &MigrationsDir,
        pending: &[&str],
        settings: &LintSettings,
        allows: &[Allow],
        protected: bool,
    ) -> Plan {
        let migrations: Vec<_> = pending.iter().filter_map(|n| dir.get(n)).collect();
        let mut tables: Vec<String> = Vec::new();
        for m in &migrations {
            for t in touched_tables(m.sql()) {
                if !tables.contains(&t) {
                    tables.push(t);
                }
            }
        }
        let (sizes, sizes_unavailable) = match target {
            Some(t) => match catalog::table_sizes(t, &tables).await {
                Ok(s) => (s, None),
                Err(e) => (Sizes::new(), Some(e.cause)),
            },
            None => (Sizes::new(), Some("no database to read sizes from".into())),
        };
        // The column types the migrations before the first pending one declare: what a pending
        // type change starts from when the live catalog does not know the column.
        let mut declared = Declared::new();
        for m in dir
            .migrations
            .iter()
            .take_while(|m| !pending.contains(&m.name.as_str()))
        {
            declared.apply_sql(m.sql());
        }
        let planned = migrations
            .iter()
            .map(|m| {
                let mut lint = lint_sql_in_order(
                    &m.script_path().display().to_string(),
                    m.sql(),
                    settings,
                    &sizes,
                    &mut declared,
                );
                // What the file acknowledges itself, before anyone else does.
                let ids: Vec<String> = lint.findings.iter().map(|f| finding_id(&lint, f)).collect();
                let mut acknowledged_in_file = Vec::new();
                for (f, id) in lint.findings.iter().zip(ids) {
                    if let Some(reason) = &f.acknowledged
                        && f.severity == Severity::Dangerous
                    {
                        acknowledged_in_file.push((id, reason.clone()));
                    }
                }
                for a in allows {
                    match &a.at {
                        None => lint.acknowledge(&a.rule, &a.reason),
                        Some(key) => {
                            let hit: Vec<usize> = lint
                                .findings
                                .iter()
                                .enumerate()
                                .filter(|(_, f)| {
                                    f.acknowledged.is_none() && finding_key(&lint, f, &m.checksum) == *key
                                })
                                .map(|(i, _)| i)
                                .collect();
                            for i in hit {
                                lint.findings[i].acknowledged = Some(a.reason.clone());
                            }
                        }
                    }
                }
                let runnable = statements_for(m);
                let transactional = runnable
                    .as_ref()
                    .map(|s| s.iter().all(|s| s.mode == crate::migrate::script::TxMode::Transaction))
                    .unwrap_or(true);
                let dangerous = lint.worst_unacknowledged() == Some(Severity::Dangerous);
                let (verdict, refusal) = match runnable {
                    Err(e) => (Verdict::Refused, Some(e.cause)),
                    Ok(_) if dangerous && protected => (
                        Verdict::Refused,
                        Some("DANGEROUS findings are not acknowledged and the environment is protected".into()),
                    ),
                    Ok(_) if dangerous => (Verdict::NeedsAcknowledgement, None),
                    Ok(_) => (Verdict::Ok, None),
                };
                MigrationPlan {
                    name: m.name.clone(),
                    checksum: m.checksum.clone(),
                    transactional,
                    lint,
                    verdict,
                    refusal,
                    acknowledged_in_file,
                }
            })
            .collect();
        Plan {
            migrations: planned,
            sizes_unavailable,
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.migrations
            .iter()
            .map(|m| m.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }

    /// Every DANGEROUS finding nobody acknowledged, with the migration it is in.
    fn open_dangerous(&self) -> impl Iterator<Item = (&MigrationPlan, &super::Finding)> {
        self.migrations.iter().flat_map(|m| {
            m.lint
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Dangerous && f.acknowledged.is_none())
                .map(move |f| (m, f))
        })
    }

    /// Every DANGEROUS finding nobody acknowledged, with its file position: what the deploy gate
    /// names when it refuses.
    pub fn unacknowledged_dangerous(&self) -> Vec<String> {
        self.open_dangerous()
            .map(|(m, f)| finding_id(&m.lint, f))
            .collect()
    }

    /// The same findings, as keys to acknowledge them by.
    pub fn unacknowledged_dangerous_keys(&self) -> Vec<String> {
        self.open_dangerous()
            .map(|(m, f)| finding_key(&m.lint, f, &m.checksum))
            .collect()
    }

    /// The same findings, each said in words: the statement and what the rule says of it.
    pub fn unacknowledged_dangerous_details(&self) -> Vec<String> {
        self.open_dangerous()
            .map(|(m, f)| {
                let statement = f
                    .statement
                    .and_then(|i| m.lint.statements.get(i))
                    .map(|s| format!(" `{}`", s.preview))
                    .unwrap_or_default();
                format!(
                    "{} line {}{statement}: {} ({})",
                    m.name, f.line, f.message, f.rule
                )
            })
            .collect()
    }

    /// DANGEROUS findings the files acknowledge themselves, with their reasons.
    pub fn acknowledged_in_files(&self) -> Vec<(String, String)> {
        self.migrations
            .iter()
            .flat_map(|m| m.acknowledged_in_file.iter().cloned())
            .collect()
    }
}
