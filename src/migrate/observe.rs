//! What a statement really did, asked of the server while its migration runs: the locks its
//! backend took on relations that existed before the migration (from `pg_locks`, before the
//! commit releases them), and the tables and indexes it rewrote (a new relfilenode). A
//! rehearsal turns this on; a production deploy never does.
//!
//! Within a transaction every lock is held until the commit, so a statement is credited with the
//! locks the transaction did not hold before it (or held only in a weaker mode): the first
//! statement that takes ACCESS EXCLUSIVE on a table is the one that starts blocking its readers.
//! A statement that runs outside a transaction has released its locks when it returns, so only
//! its rewrites can be observed.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::Client;

/// A relation as the catalog names it: `schema.name`, quoted where PostgreSQL would quote it.
pub type RelationName = String;

/// What kind of relation a lock or a rewrite is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    Table,
    Index,
    View,
    MaterializedView,
    Sequence,
    ForeignTable,
}

impl RelationKind {
    fn of(relkind: &str) -> Option<RelationKind> {
        Some(match relkind {
            "r" | "p" => RelationKind::Table,
            "i" | "I" => RelationKind::Index,
            "v" => RelationKind::View,
            "m" => RelationKind::MaterializedView,
            "S" => RelationKind::Sequence,
            "f" => RelationKind::ForeignTable,
            _ => return None,
        })
    }

    pub fn word(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::Index => "index",
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized view",
            RelationKind::Sequence => "sequence",
            RelationKind::ForeignTable => "foreign table",
        }
    }
}

/// PostgreSQL's table-level lock modes, weakest first (the order of its lock numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    /// From `pg_locks.mode` ("AccessExclusiveLock").
    pub fn from_pg_locks(mode: &str) -> Option<LockMode> {
        Some(match mode {
            "AccessShareLock" => LockMode::AccessShare,
            "RowShareLock" => LockMode::RowShare,
            "RowExclusiveLock" => LockMode::RowExclusive,
            "ShareUpdateExclusiveLock" => LockMode::ShareUpdateExclusive,
            "ShareLock" => LockMode::Share,
            "ShareRowExclusiveLock" => LockMode::ShareRowExclusive,
            "ExclusiveLock" => LockMode::Exclusive,
            "AccessExclusiveLock" => LockMode::AccessExclusive,
            _ => return None,
        })
    }

    /// As the documentation and `LOCK TABLE` write it: "ACCESS EXCLUSIVE".
    pub fn name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// What the lock stops other sessions from doing, in operator terms.
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessShare | LockMode::RowShare | LockMode::RowExclusive => {
                "blocks only DDL"
            }
            LockMode::ShareUpdateExclusive => "blocks DDL and VACUUM, not reads or writes",
            LockMode::Share | LockMode::ShareRowExclusive | LockMode::Exclusive => {
                "blocks writes, not reads"
            }
            LockMode::AccessExclusive => "blocks reads and writes",
        }
    }
}

/// A lock the statement took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedLock {
    pub relation: RelationName,
    pub kind: RelationKind,
    pub mode: LockMode,
}

/// A table or index whose storage was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rewrite {
    pub relation: RelationName,
    pub kind: RelationKind,
}

/// What one statement did, as the server saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub migration: String,
    /// 1-based, as in the deploy's progress.
    pub statement: usize,
    pub line: usize,
    pub preview: String,
    /// `None`: the statement ran outside a transaction, and its locks ended with it.
    pub locks: Option<Vec<ObservedLock>>,
    pub rewrites: Vec<Rewrite>,
}

impl Observation {
    /// In words: "ACCESS EXCLUSIVE on \"User\", rewrote \"User\"".
    pub fn said(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match &self.locks {
            None => parts.push("locks not observable (runs outside a transaction)".into()),
            Some(locks) if locks.is_empty() => {
                parts.push("no new lock on an existing relation".into())
            }
            Some(locks) => parts.extend(
                locks
                    .iter()
                    .map(|l| format!("{} on {}", l.mode.name(), l.relation)),
            ),
        }
        parts.extend(self.rewrites.iter().map(|r| match r.kind {
            RelationKind::Index => format!("rebuilt index {}", r.relation),
            _ => format!("rewrote {}", r.relation),
        }));
        parts.join(", ")
    }
}

/// The relations of the database at one moment: each with its kind, storage and the strongest
/// lock this session holds on it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    relations: BTreeMap<RelationName, Relation>,
}

#[derive(Debug, Clone)]
struct Relation {
    kind: RelationKind,
    relfilenode: i64,
    lock: Option<LockMode>,
    /// An index's table.
    table: Option<RelationName>,
}

/// Every user relation with its storage and this backend's granted relation locks. System
/// schemas and TOAST tables are left out: their locks and files follow their table's.
const SNAPSHOT_SQL: &str = "\
SELECT c.oid::regclass::text, c.relkind::text, c.relfilenode::int8,
       coalesce(array_agg(l.mode) FILTER (WHERE l.mode IS NOT NULL), '{}'),
       x.indrelid::regclass::text
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
  LEFT JOIN pg_catalog.pg_locks l
    ON l.locktype = 'relation' AND l.relation = c.oid AND l.granted
   AND l.pid = pg_catalog.pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
   AND c.relkind IN ('r', 'p', 'i', 'I', 'v', 'm', 'S', 'f')
 GROUP BY 1, 2, 3, 5";

impl Snapshot {
    /// Reads the relations, on the migration's own session (inside its transaction, where the
    /// catalog already shows the statement's effects).
    pub async fn take(client: &Client) -> Result<Snapshot, tokio_postgres::Error> {
        let rows = client.query(SNAPSHOT_SQL, &[]).await?;
        let relations = rows
            .iter()
            .filter_map(|r| {
                let kind = RelationKind::of(r.get::<_, &str>(1))?;
                let modes: Vec<String> = r.get(3);
                let lock = modes
                    .iter()
                    .filter_map(|m| LockMode::from_pg_locks(m))
                    .max();
                Some((
                    r.get::<_, String>(0),
                    Relation {
                        kind,
                        relfilenode: r.get(2),
                        lock,
                        table: r.get(4),
                    },
                ))
            })
            .collect();
        Ok(Snapshot { relations })
    }

    /// What happened between `self` (before a statement) and `after`, for the relations in
    /// `existing` (those there before the migration began; what it creates nobody else sees).
    /// `ledger` (the migration ledger's table) is left out: the engine, not the statement,
    /// touches it.
    pub fn changes(
        &self,
        after: &Snapshot,
        existing: &Snapshot,
        ledger: &str,
        with_locks: bool,
    ) -> (Option<Vec<ObservedLock>>, Vec<Rewrite>) {
        let mut locks = Vec::new();
        let mut rewrites = Vec::new();
        for (name, now) in &after.relations {
            if !existing.relations.contains_key(name) || is_ledger(name, ledger) {
                continue;
            }
            let before = self.relations.get(name);
            // An index locked as strongly as its table says nothing the table's lock does not.
            let covered = |mode: LockMode| {
                now.table
                    .as_ref()
                    .and_then(|t| after.relations.get(t))
                    .and_then(|t| t.lock)
                    .is_some_and(|table_lock| table_lock >= mode)
            };
            if let Some(mode) = now.lock
                && before.and_then(|b| b.lock).is_none_or(|held| mode > held)
                && !covered(mode)
            {
                locks.push(ObservedLock {
                    relation: name.clone(),
                    kind: now.kind,
                    mode,
                });
            }
            // A partitioned table or index has no storage of its own (relfilenode 0).
            if let Some(b) = before
                && b.relfilenode != 0
                && now.relfilenode != 0
                && b.relfilenode != now.relfilenode
            {
                rewrites.push(Rewrite {
                    relation: name.clone(),
                    kind: now.kind,
                });
            }
        }
        (with_locks.then_some(locks), rewrites)
    }
}

fn is_ledger(relation: &str, ledger: &str) -> bool {
    relation == ledger || relation.ends_with(&format!(".{ledger}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(rels: &[(&str, RelationKind, i64, Option<LockMode>)]) -> Snapshot {
        Snapshot {
            relations: rels
                .iter()
                .map(|(n, kind, relfilenode, lock)| {
                    (
                        (*n).to_owned(),
                        Relation {
                            kind: *kind,
                            relfilenode: *relfilenode,
                            lock: *lock,
                            // The tests' indexes are named <table>_pkey or <table>_idx.
                            table: (*kind == RelationKind::Index)
                                .then(|| format!("{}\"", n.split('_').next().unwrap_or_default())),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_statement_is_credited_with_locks_it_took_or_strengthened_and_storage_it_replaced() {
        use LockMode::*;
        use RelationKind::*;
        let existing = snapshot(&[
            ("\"User\"", Table, 10, None),
            ("\"Post\"", Table, 20, None),
            ("\"User_pkey\"", Index, 11, None),
            ("\"Post_idx\"", Index, 21, None),
            ("_prisma_migrations", Table, 30, None),
        ]);
        let before = snapshot(&[
            ("\"User\"", Table, 10, Some(AccessExclusive)),
            ("\"Post\"", Table, 20, Some(AccessShare)),
            ("\"User_pkey\"", Index, 11, None),
            ("\"Post_idx\"", Index, 21, None),
            ("_prisma_migrations", Table, 30, Some(RowExclusive)),
        ]);
        let after = snapshot(&[
            ("\"User\"", Table, 12, Some(AccessExclusive)),
            ("\"Post\"", Table, 20, Some(Share)),
            ("\"User_pkey\"", Index, 13, Some(AccessExclusive)),
            ("\"Post_idx\"", Index, 21, Some(AccessExclusive)),
            ("_prisma_migrations", Table, 31, Some(AccessExclusive)),
            ("\"New\"", Table, 40, Some(AccessExclusive)),
        ]);
        let (locks, rewrites) = before.changes(&after, &existing, "_prisma_migrations", true);
        assert_eq!(
            locks.unwrap(),
            vec![
                ObservedLock {
                    relation: "\"Post\"".into(),
                    kind: Table,
                    mode: Share
                },
                // Reads through the index wait, though its table only blocks writes.
                ObservedLock {
                    relation: "\"Post_idx\"".into(),
                    kind: Index,
                    mode: AccessExclusive
                },
            ]
        );
        assert_eq!(
            rewrites,
            vec![
                Rewrite {
                    relation: "\"User\"".into(),
                    kind: Table
                },
                Rewrite {
                    relation: "\"User_pkey\"".into(),
                    kind: Index
                },
            ]
        );
        let (locks, _) = before.changes(&after, &existing, "_prisma_migrations", false);
        assert!(locks.is_none());
    }

    #[test]
    fn lock_modes_read_from_pg_locks_order_by_strength() {
        assert_eq!(
            LockMode::from_pg_locks("ShareUpdateExclusiveLock"),
            Some(LockMode::ShareUpdateExclusive)
        );
        assert!(LockMode::AccessExclusive > LockMode::Share);
        assert_eq!(LockMode::from_pg_locks("SIReadLock"), None);
        assert_eq!(LockMode::AccessExclusive.name(), "ACCESS EXCLUSIVE");
    }
}
