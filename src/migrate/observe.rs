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

    /// From `LOCK TABLE ... IN <mode> MODE`'s words ("SHARE ROW EXCLUSIVE").
    pub fn from_sql(words: &str) -> Option<LockMode> {
        [
            LockMode::AccessShare,
            LockMode::RowShare,
            LockMode::RowExclusive,
            LockMode::ShareUpdateExclusive,
            LockMode::Share,
            LockMode::ShareRowExclusive,
            LockMode::Exclusive,
            LockMode::AccessExclusive,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(words))
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
    /// TRUNCATE: new, empty storage; no row was copied.
    pub emptied: bool,
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
        parts.extend(self.rewrites.iter().map(|r| match (r.kind, r.emptied) {
            (_, true) => format!("emptied {}", r.relation),
            (RelationKind::Index, _) => format!("rebuilt index {}", r.relation),
            _ => format!("rewrote {}", r.relation),
        }));
        parts.join(", ")
    }

    /// Whether it copied a table's rows into new storage (not an index rebuild, not a
    /// TRUNCATE).
    pub fn rewrote_a_table(&self) -> bool {
        self.rewrites
            .iter()
            .any(|r| !r.emptied && r.kind != RelationKind::Index)
    }
}

/// The relations of the database at one moment, by oid (a relation renamed, moved to another
/// schema or dropped is still the same one), and the relation locks this session holds.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    relations: BTreeMap<i64, Relation>,
    locks: BTreeMap<i64, LockMode>,
}

#[derive(Debug, Clone)]
struct Relation {
    /// As the deploy's schema sees it: `"User"` there, `other."User"` elsewhere.
    name: RelationName,
    kind: RelationKind,
    relfilenode: i64,
    /// An index's table.
    table: Option<i64>,
}

/// User relations with their storage, `and` narrowing them further. System schemas and TOAST
/// tables are left out: their locks and files follow their table's. Names are qualified here,
/// not by `regclass`, whose text follows the session's search_path (which a migration may
/// change).
macro_rules! relations_sql {
    ($and:literal) => {
        concat!(
            "SELECT c.oid::int8,
       CASE WHEN n.nspname = $1 THEN pg_catalog.quote_ident(c.relname)
            ELSE pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) END,
       c.relkind::text, c.relfilenode::int8, x.indrelid::int8
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
   AND c.relkind IN ('r', 'p', 'i', 'I', 'v', 'm', 'S', 'f')",
            $and
        )
    };
}

/// Every user relation.
const RELATIONS_SQL: &str = relations_sql!("");

/// The relations this backend holds a lock on, and their indexes: only those can have been
/// rewritten since (a rewrite, a TRUNCATE, a rebuild all lock the table), so after each
/// statement this small set is all that needs reading.
const LOCKED_RELATIONS_SQL: &str = relations_sql!(
    "
   AND (c.oid IN (SELECT l.relation FROM pg_catalog.pg_locks l
                   WHERE l.locktype = 'relation' AND l.pid = pg_catalog.pg_backend_pid())
        OR x.indrelid IN (SELECT l.relation FROM pg_catalog.pg_locks l
                           WHERE l.locktype = 'relation' AND l.pid = pg_catalog.pg_backend_pid()))"
);

/// This backend's granted relation locks, also on relations it dropped (their locks last until
/// the commit; the catalog no longer has them).
const LOCKS_SQL: &str = "\
SELECT l.relation::int8, l.mode
  FROM pg_catalog.pg_locks l
 WHERE l.locktype = 'relation' AND l.granted AND l.pid = pg_catalog.pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())";

impl Snapshot {
    /// Reads every relation and this backend's locks, on the migration's own session (inside
    /// its transaction, where the catalog already shows the statement's effects). `schema`:
    /// the deploy's.
    pub async fn take(client: &Client, schema: &str) -> Result<Snapshot, tokio_postgres::Error> {
        Snapshot::read(client, schema, RELATIONS_SQL).await
    }

    /// [`Snapshot::take`] of only what this backend has locked (and their indexes): enough after
    /// a statement, with the full snapshot from before the migration for the rest.
    pub async fn take_locked(
        client: &Client,
        schema: &str,
    ) -> Result<Snapshot, tokio_postgres::Error> {
        Snapshot::read(client, schema, LOCKED_RELATIONS_SQL).await
    }

    async fn read(
        client: &Client,
        schema: &str,
        relations_sql: &str,
    ) -> Result<Snapshot, tokio_postgres::Error> {
        let (relations, locks) = futures_util::future::try_join(
            client.query(relations_sql, &[&schema]),
            client.query(LOCKS_SQL, &[]),
        )
        .await?;
        let relations = relations
            .iter()
            .filter_map(|r| {
                let kind = RelationKind::of(r.get::<_, &str>(2))?;
                Some((
                    r.get::<_, i64>(0),
                    Relation {
                        name: r.get(1),
                        kind,
                        relfilenode: r.get(3),
                        table: r.get(4),
                    },
                ))
            })
            .collect();
        let mut held: BTreeMap<i64, LockMode> = BTreeMap::new();
        for r in &locks {
            if let Some(mode) = LockMode::from_pg_locks(r.get::<_, &str>(1)) {
                let e = held.entry(r.get(0)).or_insert(mode);
                *e = (*e).max(mode);
            }
        }
        Ok(Snapshot {
            relations,
            locks: held,
        })
    }

    /// What happened between `self` (before a statement) and `after`, for the relations in
    /// `existing` (those there before the migration began; what it creates nobody else sees),
    /// named as they were then. `ledger` (the migration ledger's table) is left out: the
    /// engine, not the statement, touches it. `truncates`: the statement is a TRUNCATE, whose
    /// new storage is empty rather than rewritten.
    pub fn changes(
        &self,
        after: &Snapshot,
        existing: &Snapshot,
        ledger: &str,
        with_locks: bool,
        truncates: bool,
    ) -> (Option<Vec<ObservedLock>>, Vec<Rewrite>) {
        let mut locks = Vec::new();
        let mut rewrites = Vec::new();
        for (oid, was) in &existing.relations {
            if is_ledger(&was.name, ledger) {
                continue;
            }
            let now = after.locks.get(oid).copied();
            let held = self.locks.get(oid).copied();
            // An index locked as strongly as its table says nothing the table's lock does not.
            let covered = |mode: LockMode| {
                was.table
                    .and_then(|t| after.locks.get(&t))
                    .is_some_and(|table_lock| *table_lock >= mode)
            };
            if let Some(mode) = now
                && held.is_none_or(|h| mode > h)
                && !covered(mode)
            {
                locks.push(ObservedLock {
                    relation: was.name.clone(),
                    kind: was.kind,
                    mode,
                });
            }
            // Sequences get a new file on RESTART, which copies nothing; a partitioned table or
            // index has no storage of its own (relfilenode 0).
            if was.kind == RelationKind::Sequence {
                continue;
            }
            // Not locked before this statement: unchanged since the migration began.
            let before = self.relations.get(oid).or(Some(was));
            let replaced = match (before, after.relations.get(oid)) {
                (Some(b), Some(a)) => {
                    b.relfilenode != 0 && a.relfilenode != 0 && b.relfilenode != a.relfilenode
                }
                // An index the statement dropped and built again under its name (a type change
                // rebuilds the indexes on the column this way): its old oid is still locked, and
                // a new one has its name.
                (Some(_), None) => {
                    was.kind == RelationKind::Index
                        && after.locks.contains_key(oid)
                        && after
                            .relations
                            .iter()
                            .any(|(o, r)| !existing.relations.contains_key(o) && r.name == was.name)
                }
                _ => false,
            };
            if replaced {
                rewrites.push(Rewrite {
                    relation: was.name.clone(),
                    kind: was.kind,
                    emptied: truncates && was.kind != RelationKind::Index,
                });
            }
        }
        // Tables before their indexes, then by name: a stable order to read.
        locks.sort_by(|a, b| (a.kind, &a.relation).cmp(&(b.kind, &b.relation)));
        rewrites.sort_by(|a, b| (a.kind, &a.relation).cmp(&(b.kind, &b.relation)));
        (with_locks.then_some(locks), rewrites)
    }
}

fn is_ledger(relation: &str, ledger: &str) -> bool {
    relation == ledger || relation.ends_with(&format!(".{ledger}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rel<'a> = (i64, &'a str, RelationKind, i64, Option<i64>);

    fn snapshot(rels: &[Rel<'_>], locks: &[(i64, LockMode)]) -> Snapshot {
        Snapshot {
            relations: rels
                .iter()
                .map(|(oid, name, kind, relfilenode, table)| {
                    (
                        *oid,
                        Relation {
                            name: (*name).to_owned(),
                            kind: *kind,
                            relfilenode: *relfilenode,
                            table: *table,
                        },
                    )
                })
                .collect(),
            locks: locks.iter().copied().collect(),
        }
    }

    #[test]
    fn a_statement_is_credited_with_locks_it_took_or_strengthened_and_storage_it_replaced() {
        use LockMode::*;
        use RelationKind::*;
        let rels = [
            (1, "\"User\"", Table, 10, None),
            (2, "\"Post\"", Table, 20, None),
            (3, "\"User_pkey\"", Index, 11, Some(1)),
            (4, "\"Post_idx\"", Index, 21, Some(2)),
            (5, "_prisma_migrations", Table, 30, None),
            (6, "\"Gone\"", Table, 60, None),
            (7, "\"User_id_seq\"", Sequence, 70, None),
        ];
        let existing = snapshot(&rels, &[]);
        let before = snapshot(
            &rels,
            &[(1, AccessExclusive), (2, AccessShare), (5, RowExclusive)],
        );
        let after = snapshot(
            &[
                // Rewritten, and its index rebuilt under a new oid.
                (1, "\"User\"", Table, 12, None),
                (2, "\"Post\"", Table, 20, None),
                (8, "\"User_pkey\"", Index, 13, Some(1)),
                (4, "\"Post_idx\"", Index, 21, Some(2)),
                (5, "_prisma_migrations", Table, 31, None),
                (7, "\"User_id_seq\"", Sequence, 71, None),
                (9, "\"New\"", Table, 40, None),
            ],
            &[
                (1, AccessExclusive),
                (2, Share),
                (3, AccessExclusive),
                (4, AccessExclusive),
                (5, AccessExclusive),
                (6, AccessExclusive),
                (9, AccessExclusive),
            ],
        );
        let (locks, rewrites) =
            before.changes(&after, &existing, "_prisma_migrations", true, false);
        let locks: Vec<(String, LockMode)> = locks
            .unwrap()
            .into_iter()
            .map(|l| (l.relation, l.mode))
            .collect();
        assert_eq!(
            locks,
            vec![
                // Dropped: its lock outlives it, under the name it had.
                ("\"Gone\"".to_owned(), AccessExclusive),
                ("\"Post\"".to_owned(), Share),
                // Reads through the index wait, though its table only blocks writes.
                ("\"Post_idx\"".to_owned(), AccessExclusive),
            ]
        );
        let rewrites: Vec<(String, bool)> = rewrites
            .into_iter()
            .map(|r| (r.relation, r.emptied))
            .collect();
        assert_eq!(
            rewrites,
            vec![
                ("\"User\"".to_owned(), false),
                ("\"User_pkey\"".to_owned(), false),
            ],
            "a sequence's new file (RESTART) is no rewrite"
        );
        let (locks, rewrites) =
            before.changes(&after, &existing, "_prisma_migrations", false, true);
        assert!(locks.is_none());
        assert!(
            rewrites
                .iter()
                .any(|r| r.relation == "\"User\"" && r.emptied)
        );
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
