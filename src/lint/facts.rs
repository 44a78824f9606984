//! What a statement does to the database, read from its syntax tree: the runbook's class for it
//! (SAFE / NEEDS CARE / DANGEROUS), the lock it takes on existing tables, whether it rewrites or
//! scans them, which tables it touches, and the structured change the recipes are written from.

use serde::Serialize;
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SyntaxKind, SyntaxNode};

use super::Severity;
use super::rules::Category;

/// PostgreSQL's table lock modes: the engine's, which a rehearsal reads from `pg_locks`.
pub use crate::migrate::observe::LockMode;

/// What the statement does to the table's data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rewrite {
    No,
    /// Reads every row (e.g. to validate) without writing a new copy.
    Scan,
    /// May rewrite depending on the types involved (e.g. ALTER COLUMN TYPE).
    Maybe,
    /// Writes a new copy of the table and its indexes.
    Yes,
}

impl Rewrite {
    pub fn name(self) -> &'static str {
        match self {
            Rewrite::No => "no rewrite",
            Rewrite::Scan => "full scan",
            Rewrite::Maybe => "may rewrite",
            Rewrite::Yes => "rewrites the table",
        }
    }
}

/// A change the expand / contract recipes know how to stage. Names are as written in the SQL
/// (quoted where the author quoted them), so the recipe's SQL can be pasted as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    DropColumn {
        table: String,
        column: String,
    },
    DropTable {
        table: String,
    },
    RenameColumn {
        table: String,
        from: String,
        to: String,
    },
    RenameTable {
        from: String,
        to: String,
    },
    ChangeType {
        table: String,
        column: String,
        new_type: String,
    },
    SetNotNull {
        table: String,
        column: String,
    },
    AddRequiredColumn {
        table: String,
        column: String,
        ty: String,
    },
    AddForeignKey {
        table: String,
        constraint: Option<String>,
    },
    AddCheckOrUnique {
        table: String,
        constraint: Option<String>,
    },
    CreateIndex {
        table: String,
        index: Option<String>,
        definition: String,
    },
    DropIndex {
        index: String,
    },
}

/// Everything pgdeck reads off one statement.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// "CREATE TABLE", "ALTER TABLE", ...
    pub kind: String,
    /// The runbook's class for the statement itself, before squawk's findings.
    pub class: Severity,
    /// pgdeck's rule id for that class (acknowledged as `pgdeck:allow <rule>`), and its kind.
    pub rule: &'static str,
    pub category: Category,
    /// Why it has that class, in one phrase.
    pub reason: &'static str,
    /// The strongest lock on a table that existed before the statement.
    pub lock: Option<LockMode>,
    pub rewrite: Rewrite,
    /// Existing tables it locks, as written.
    pub tables: Vec<String>,
    /// Tables it creates, as written.
    pub creates: Vec<String>,
    pub changes: Vec<Change>,
}

impl Facts {
    fn safe(kind: &str, reason: &'static str) -> Facts {
        Facts::risky(kind, Severity::Safe, Category::Style, "", reason)
    }

    fn risky(
        kind: &str,
        class: Severity,
        category: Category,
        rule: &'static str,
        reason: &'static str,
    ) -> Facts {
        Facts {
            kind: kind.to_owned(),
            class,
            rule,
            category,
            reason,
            lock: None,
            rewrite: Rewrite::No,
            tables: Vec::new(),
            creates: Vec::new(),
            changes: Vec::new(),
        }
    }

    fn lock(mut self, mode: LockMode, table: Option<String>) -> Facts {
        self.lock = self.lock.max(Some(mode));
        if let Some(t) = table
            && !self.tables.contains(&t)
        {
            self.tables.push(t);
        }
        self
    }

    fn raise(
        &mut self,
        class: Severity,
        category: Category,
        rule: &'static str,
        reason: &'static str,
    ) {
        if class > self.class {
            self.class = class;
            self.category = category;
            self.rule = rule;
            self.reason = reason;
        }
    }
}

fn text(node: &impl AstNode) -> String {
    node.syntax().text().to_string().trim().to_owned()
}

fn has(node: &SyntaxNode, kind: SyntaxKind) -> bool {
    node.descendants_with_tokens().any(|t| t.kind() == kind)
}

/// Tables referenced under `node`, as written, in order.
fn refs(node: &SyntaxNode) -> Vec<String> {
    node.descendants()
        .filter(|n| {
            matches!(
                n.kind(),
                SyntaxKind::TABLE_NAME_REF | SyntaxKind::RELATION_NAME_REF
            )
        })
        .map(|n| n.text().to_string().trim().to_owned())
        .collect()
}

impl Facts {
    /// Locks every table in `tables` with `mode`.
    fn lock_all(mut self, mode: LockMode, tables: Vec<String>) -> Facts {
        if tables.is_empty() {
            self.lock = self.lock.max(Some(mode));
        }
        for t in tables {
            self = self.lock(mode, Some(t));
        }
        self
    }
}

fn table_of(r: Option<ast::TableRelationName>) -> Option<String> {
    r.and_then(|t| t.table_name_ref()).map(|t| text(&t))
}

/// Reads the facts of one statement.
pub fn facts(stmt: &ast::Stmt) -> Facts {
    use Severity::{Care, Dangerous};
    let node = stmt.syntax();
    match stmt {
        ast::Stmt::CreateTable(ct) => {
            let mut f = Facts::safe("CREATE TABLE", "a new table touches nothing that exists");
            if let Some(path) = ct.table_name() {
                f.creates.push(text(&path));
            }
            // REFERENCES to existing tables take SHARE ROW EXCLUSIVE on them, briefly.
            for c in node.descendants().filter(|n| {
                matches!(
                    n.kind(),
                    SyntaxKind::REFERENCES_CONSTRAINT | SyntaxKind::FOREIGN_KEY_CONSTRAINT
                )
            }) {
                f = f.lock_all(LockMode::ShareRowExclusive, refs(&c));
            }
            f
        }
        ast::Stmt::CreateTableAs(_) | ast::Stmt::SelectInto(_) => Facts::risky(
            "CREATE TABLE AS",
            Care,
            Category::Blocking,
            "create-table-as",
            "copies data: runs as long as its query",
        ),
        ast::Stmt::AlterTable(at) => alter_table(at),
        ast::Stmt::CreateIndex(ci) => {
            let table = table_of(ci.table_relation_name());
            let index = ci.index().map(|i| text(&i));
            if ci.concurrently_token().is_some() {
                Facts::safe("CREATE INDEX CONCURRENTLY", "built without blocking writes")
                    .lock(LockMode::ShareUpdateExclusive, table)
            } else {
                let mut f = Facts::risky(
                    "CREATE INDEX",
                    Dangerous,
                    Category::Blocking,
                    "create-index",
                    "blocks writes to an existing table until the index is built",
                )
                .lock(LockMode::Share, table.clone());
                f.rewrite = Rewrite::Scan;
                if let Some(table) = table {
                    f.changes.push(Change::CreateIndex {
                        table,
                        index,
                        definition: node.text().to_string(),
                    });
                }
                f
            }
        }
        ast::Stmt::DropIndex(di) => {
            let index = di.index_refs().next().map(|i| text(&i)).unwrap_or_default();
            if di.concurrently_token().is_some() {
                Facts::safe(
                    "DROP INDEX CONCURRENTLY",
                    "dropped without blocking the table",
                )
                .lock_all(LockMode::ShareUpdateExclusive, refs(node))
            } else {
                let mut f = Facts::risky("DROP INDEX", Care, Category::Blocking, "drop-index", "takes ACCESS EXCLUSIVE on the table, briefly; queries using the index slow down",
                )
                .lock_all(LockMode::AccessExclusive, refs(node));
                f.changes.push(Change::DropIndex { index });
                f
            }
        }
        ast::Stmt::DropTable(dt) => {
            let mut f = Facts::risky(
                "DROP TABLE",
                Dangerous,
                Category::Breaking,
                "drop-table",
                "deletes the table and its data; code still using it breaks",
            );
            for t in refs(dt.syntax()) {
                f = f.lock(LockMode::AccessExclusive, Some(t.clone()));
                f.changes.push(Change::DropTable { table: t });
            }
            f
        }
        ast::Stmt::Truncate(_) => Facts::risky(
            "TRUNCATE",
            Dangerous,
            Category::Breaking,
            "truncate",
            "deletes every row",
        )
        .lock_all(LockMode::AccessExclusive, refs(node)),
        ast::Stmt::Update(u) => {
            let table = refs(u.syntax()).into_iter().next();
            let mut f = Facts::risky(
                "UPDATE",
                Care,
                Category::Blocking,
                "backfill",
                "a backfill in one transaction holds row locks until it commits; batch large ones",
            )
            .lock(LockMode::RowExclusive, table);
            f.rewrite = Rewrite::No;
            f
        }
        ast::Stmt::Delete(d) => {
            let table = refs(d.syntax()).into_iter().next();
            Facts::risky(
                "DELETE",
                Care,
                Category::Breaking,
                "delete",
                "deletes data and holds row locks until it commits; batch large ones",
            )
            .lock(LockMode::RowExclusive, table)
        }
        ast::Stmt::Insert(_) | ast::Stmt::Merge(_) | ast::Stmt::Copy(_) => {
            Facts::safe("INSERT", "adds rows").lock_all(LockMode::RowExclusive, refs(node))
        }
        ast::Stmt::Reindex(_) => {
            if has(node, SyntaxKind::CONCURRENTLY_KW) {
                Facts::safe("REINDEX CONCURRENTLY", "rebuilt without blocking writes")
                    .lock_all(LockMode::ShareUpdateExclusive, refs(node))
            } else {
                let mut f = Facts::risky(
                    "REINDEX",
                    Dangerous,
                    Category::Blocking,
                    "reindex",
                    "blocks writes while the index is rebuilt",
                )
                .lock_all(LockMode::Share, refs(node));
                f.rewrite = Rewrite::Scan;
                f
            }
        }
        ast::Stmt::Vacuum(_) => {
            if has(node, SyntaxKind::FULL_KW) {
                let mut f = Facts::risky(
                    "VACUUM FULL",
                    Dangerous,
                    Category::Blocking,
                    "vacuum-full",
                    "rewrites the table under ACCESS EXCLUSIVE",
                )
                .lock_all(LockMode::AccessExclusive, refs(node));
                f.rewrite = Rewrite::Yes;
                f
            } else {
                Facts::safe("VACUUM", "runs beside normal traffic")
                    .lock_all(LockMode::ShareUpdateExclusive, refs(node))
            }
        }
        ast::Stmt::Cluster(_) => {
            let mut f = Facts::risky(
                "CLUSTER",
                Dangerous,
                Category::Blocking,
                "cluster",
                "rewrites the table under ACCESS EXCLUSIVE",
            )
            .lock_all(LockMode::AccessExclusive, refs(node));
            f.rewrite = Rewrite::Yes;
            f
        }
        ast::Stmt::Refresh(_) => {
            if has(node, SyntaxKind::CONCURRENTLY_KW) {
                Facts::safe(
                    "REFRESH MATERIALIZED VIEW CONCURRENTLY",
                    "readers are not blocked",
                )
                .lock_all(LockMode::Exclusive, refs(node))
            } else {
                Facts::risky(
                    "REFRESH MATERIALIZED VIEW",
                    Care,
                    Category::Blocking,
                    "refresh-materialized-view",
                    "blocks readers of the view while it runs",
                )
                .lock_all(LockMode::AccessExclusive, refs(node))
            }
        }
        ast::Stmt::Lock(_) => Facts::risky(
            "LOCK",
            Care,
            Category::Blocking,
            "lock-table",
            "takes an explicit table lock for the whole migration",
        )
        .lock_all(LockMode::AccessExclusive, refs(node)),
        ast::Stmt::CreateTrigger(_) => Facts::risky(
            "CREATE TRIGGER",
            Care,
            Category::Blocking,
            "create-trigger",
            "takes SHARE ROW EXCLUSIVE, blocking writes briefly",
        )
        .lock_all(LockMode::ShareRowExclusive, refs(node)),
        ast::Stmt::DropSchema(_) | ast::Stmt::DropDatabase(_) => Facts::risky(
            "DROP SCHEMA/DATABASE",
            Dangerous,
            Category::Breaking,
            "drop-schema",
            "deletes everything inside it",
        ),
        ast::Stmt::DropView(_)
        | ast::Stmt::DropMaterializedView(_)
        | ast::Stmt::DropFunction(_)
        | ast::Stmt::DropProcedure(_)
        | ast::Stmt::DropType(_)
        | ast::Stmt::DropSequence(_)
        | ast::Stmt::DropDomain(_)
        | ast::Stmt::DropTrigger(_)
        | ast::Stmt::DropExtension(_) => Facts::risky(
            "DROP",
            Care,
            Category::Breaking,
            "drop-object",
            "code still using the object breaks",
        ),
        ast::Stmt::Select(_)
        | ast::Stmt::Begin(_)
        | ast::Stmt::Commit(_)
        | ast::Stmt::Set(_)
        | ast::Stmt::Show(_) => Facts::safe(&kind_name(stmt), "changes no schema"),
        _ => {
            let kind = kind_name(stmt);
            if kind.starts_with("CREATE ")
                || kind.starts_with("COMMENT")
                || kind.starts_with("GRANT")
            {
                Facts::safe(&kind, "adds a new object")
            } else {
                Facts::risky(
                    &kind,
                    Care,
                    Category::Breaking,
                    "review",
                    "review its effect on running code",
                )
            }
        }
    }
}

/// "ALTER TYPE", "CREATE FUNCTION", ...: the statement's leading keywords.
fn kind_name(stmt: &ast::Stmt) -> String {
    stmt.syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .take_while(|t| {
            let s = t.text();
            s.chars().all(|c| c.is_ascii_alphabetic()) && s.len() > 1
        })
        .take(2)
        .map(|t| t.text().to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(" ")
}

fn alter_table(at: &ast::AlterTable) -> Facts {
    use Severity::{Care, Dangerous};
    let table = table_of(at.table_relation_name()).unwrap_or_default();
    let mut f = Facts::safe(
        "ALTER TABLE",
        "changes nothing that existing code relies on",
    );
    let mut lock = LockMode::AccessExclusive;
    let mut weakest_only = true;
    for action in at.actions() {
        let node = action.syntax();
        match &action {
            ast::AlterTableAction::AddColumn(add) => {
                let column = add.column_name().map(|c| text(&c)).unwrap_or_default();
                let ty = add.ty().map(|t| text(&t)).unwrap_or_default();
                let not_null = add.constraints().any(|c| {
                    matches!(
                        c,
                        ast::Constraint::NotNullConstraint(_)
                            | ast::Constraint::PrimaryKeyConstraint(_)
                    )
                });
                let default = add.constraints().find_map(|c| match c {
                    ast::Constraint::DefaultConstraint(d) => Some(text(&d)),
                    _ => None,
                });
                let generated = add
                    .constraints()
                    .any(|c| matches!(c, ast::Constraint::GeneratedConstraint(_)));
                if generated {
                    f.raise(
                        Dangerous,
                        Category::Blocking,
                        "generated-column",
                        "a stored generated column rewrites the table",
                    );
                    f.rewrite = f.rewrite.max(Rewrite::Yes);
                } else if not_null && default.is_none() {
                    f.raise(Dangerous, Category::Breaking, "add-required-column", "a NOT NULL column without default fails on existing rows and breaks inserts from running code");
                    f.changes.push(Change::AddRequiredColumn {
                        table: table.clone(),
                        column,
                        ty,
                    });
                } else if let Some(d) = default {
                    if is_volatile_default(&d) {
                        f.raise(
                            Dangerous,
                            Category::Blocking,
                            "volatile-default",
                            "a volatile default rewrites the whole table under ACCESS EXCLUSIVE",
                        );
                        f.rewrite = f.rewrite.max(Rewrite::Yes);
                    }
                } else if ty.to_ascii_lowercase().contains("serial") {
                    f.raise(
                        Dangerous,
                        Category::Blocking,
                        "serial-column",
                        "a serial column fills every existing row, rewriting the table",
                    );
                    f.rewrite = f.rewrite.max(Rewrite::Yes);
                }
                // A nullable column, or one with a constant default: catalog-only since PG 11.
            }
            ast::AlterTableAction::DropColumn(dc) => {
                let column = dc.column_name_ref().map(|c| text(&c)).unwrap_or_default();
                f.raise(
                    Dangerous,
                    Category::Breaking,
                    "drop-column",
                    "dropping a column breaks code still reading or writing it",
                );
                f.changes.push(Change::DropColumn {
                    table: table.clone(),
                    column,
                });
            }
            ast::AlterTableAction::RenameColumn(rc) => {
                let from = rc.column_name_ref().map(|c| text(&c)).unwrap_or_default();
                let to = rc.column_name().map(|c| text(&c)).unwrap_or_default();
                f.raise(
                    Dangerous,
                    Category::Breaking,
                    "rename-column",
                    "renaming a column breaks code using the old name",
                );
                f.changes.push(Change::RenameColumn {
                    table: table.clone(),
                    from,
                    to,
                });
            }
            ast::AlterTableAction::TableRenameTo(r) => {
                let to = r.table_name().map(|n| text(&n)).unwrap_or_default();
                f.raise(
                    Dangerous,
                    Category::Breaking,
                    "rename-table",
                    "renaming a table breaks code using the old name",
                );
                f.changes.push(Change::RenameTable {
                    from: table.clone(),
                    to,
                });
            }
            ast::AlterTableAction::AlterColumn(ac) => {
                let column = ac.column_name_ref().map(|c| text(&c)).unwrap_or_default();
                match ac.option() {
                    Some(ast::AlterColumnOption::SetType(st)) => {
                        let new_type = st.ty().map(|t| text(&t)).unwrap_or_default();
                        f.raise(Dangerous, Category::Blocking, "change-column-type", "changing a column's type may rewrite the table under ACCESS EXCLUSIVE and breaks code expecting the old type");
                        f.rewrite = f.rewrite.max(Rewrite::Maybe);
                        f.changes.push(Change::ChangeType {
                            table: table.clone(),
                            column,
                            new_type,
                        });
                    }
                    Some(ast::AlterColumnOption::SetNotNull(_)) => {
                        f.raise(
                            Dangerous,
                            Category::Blocking,
                            "set-not-null",
                            "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE",
                        );
                        f.rewrite = f.rewrite.max(Rewrite::Scan);
                        f.changes.push(Change::SetNotNull {
                            table: table.clone(),
                            column,
                        });
                    }
                    Some(ast::AlterColumnOption::DropNotNull(_)) => {
                        f.raise(
                            Care,
                            Category::Breaking,
                            "drop-not-null",
                            "code may not expect NULLs in this column",
                        );
                    }
                    Some(ast::AlterColumnOption::SetStatistics(_))
                    | Some(ast::AlterColumnOption::SetOptions(_)) => {
                        lock = LockMode::ShareUpdateExclusive;
                        continue;
                    }
                    Some(ast::AlterColumnOption::SetDefault(_))
                    | Some(ast::AlterColumnOption::DropDefault(_)) => {}
                    _ => f.raise(
                        Care,
                        Category::Breaking,
                        "review",
                        "review its effect on running code",
                    ),
                }
            }
            ast::AlterTableAction::AddConstraint(ac) => {
                let not_valid = has(node, SyntaxKind::VALID_KW);
                let constraint = ac.constraint();
                let name = constraint
                    .as_ref()
                    .and_then(|c| c.syntax().descendants().find_map(ast::ConstraintName::cast))
                    .map(|n| text(&n));
                match constraint {
                    Some(ast::Constraint::ForeignKeyConstraint(fk)) => {
                        f = f.lock_all(LockMode::ShareRowExclusive, refs(fk.syntax()));
                        lock = LockMode::ShareRowExclusive;
                        if !not_valid {
                            f.raise(Care, Category::Blocking, "add-foreign-key", "validating a new foreign key scans both tables while blocking writes to them");
                            f.rewrite = f.rewrite.max(Rewrite::Scan);
                            f.changes.push(Change::AddForeignKey {
                                table: table.clone(),
                                constraint: name,
                            });
                        }
                        continue;
                    }
                    Some(ast::Constraint::UniqueConstraint(_))
                    | Some(ast::Constraint::PrimaryKeyConstraint(_)) => {
                        if !has(node, SyntaxKind::USING_KW) {
                            f.raise(
                                Dangerous,
                                Category::Blocking,
                                "add-unique-constraint",
                                "builds a unique index while blocking reads and writes",
                            );
                            f.rewrite = f.rewrite.max(Rewrite::Scan);
                            f.changes.push(Change::AddCheckOrUnique {
                                table: table.clone(),
                                constraint: name,
                            });
                        }
                    }
                    Some(ast::Constraint::CheckConstraint(_))
                    | Some(ast::Constraint::ExcludeConstraint(_)) => {
                        if !not_valid {
                            f.raise(
                                Care,
                                Category::Blocking,
                                "add-check-constraint",
                                "validating the constraint scans the table under ACCESS EXCLUSIVE",
                            );
                            f.rewrite = f.rewrite.max(Rewrite::Scan);
                            f.changes.push(Change::AddCheckOrUnique {
                                table: table.clone(),
                                constraint: name,
                            });
                        }
                    }
                    _ => f.raise(
                        Care,
                        Category::Breaking,
                        "review",
                        "review its effect on running code",
                    ),
                }
            }
            ast::AlterTableAction::ValidateConstraint(_) => {
                lock = LockMode::ShareUpdateExclusive;
                f.rewrite = f.rewrite.max(Rewrite::Scan);
                continue;
            }
            ast::AlterTableAction::DropConstraint(_) => f.raise(
                Care,
                Category::Breaking,
                "drop-constraint",
                "the data is no longer checked; code relying on it may break",
            ),
            ast::AlterTableAction::AttachPartition(_)
            | ast::AlterTableAction::DetachPartition(_)
                if has(node, SyntaxKind::CONCURRENTLY_KW)
                    || matches!(action, ast::AlterTableAction::AttachPartition(_)) =>
            {
                lock = LockMode::ShareUpdateExclusive;
                continue;
            }
            ast::AlterTableAction::DetachPartition(_) => f.raise(
                Care,
                Category::Blocking,
                "detach-partition",
                "blocks the parent table while detaching; use CONCURRENTLY",
            ),
            ast::AlterTableAction::SetTablespace(_)
            | ast::AlterTableAction::SetLogged(_)
            | ast::AlterTableAction::SetUnlogged(_)
            | ast::AlterTableAction::SetAccessMethod(_) => {
                f.raise(
                    Dangerous,
                    Category::Blocking,
                    "table-rewrite",
                    "rewrites the table under ACCESS EXCLUSIVE",
                );
                f.rewrite = Rewrite::Yes;
            }
            ast::AlterTableAction::EnableTrigger(_)
            | ast::AlterTableAction::DisableTrigger(_)
            | ast::AlterTableAction::EnableAlwaysTrigger(_)
            | ast::AlterTableAction::EnableReplicaTrigger(_) => {
                lock = LockMode::ShareRowExclusive;
                if matches!(action, ast::AlterTableAction::DisableTrigger(_)) {
                    f.raise(
                        Care,
                        Category::Breaking,
                        "disable-trigger",
                        "whatever the trigger enforced is no longer enforced",
                    );
                }
                continue;
            }
            ast::AlterTableAction::ClusterOn(_)
            | ast::AlterTableAction::SetWithoutCluster(_)
            | ast::AlterTableAction::SetOptions(_)
            | ast::AlterTableAction::ResetOptions(_) => {
                lock = LockMode::ShareUpdateExclusive;
                continue;
            }
            ast::AlterTableAction::SetSchema(_) => f.raise(
                Dangerous,
                Category::Breaking,
                "set-schema",
                "moving a table breaks code using the old schema",
            ),
            ast::AlterTableAction::OwnerTo(_) | ast::AlterTableAction::RenameConstraint(_) => {}
            _ => f.raise(
                Care,
                Category::Breaking,
                "review",
                "review its effect on running code",
            ),
        }
        weakest_only = false;
    }
    // Every sub-command takes its own lock; the statement holds the strongest.
    let mode = if weakest_only {
        lock
    } else {
        LockMode::AccessExclusive.max(lock)
    };
    f.lock(mode, Some(table).filter(|t| !t.is_empty()))
}

/// A default PostgreSQL must compute per row (so it rewrites the table) rather than store once.
fn is_volatile_default(default: &str) -> bool {
    let d = default.to_ascii_lowercase();
    [
        "random(",
        "gen_random_uuid(",
        "uuid_generate",
        "clock_timestamp(",
        "nextval(",
        "timeofday(",
    ]
    .iter()
    .any(|f| d.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use squawk_syntax::SourceFile;

    fn first(sql: &str) -> Facts {
        let file = SourceFile::parse(sql).tree();
        facts(&file.stmts().next().unwrap())
    }

    #[test]
    fn kind_names_come_from_leading_keywords() {
        assert_eq!(first("ALTER TYPE r ADD VALUE 'x';").kind, "ALTER TYPE");
        assert_eq!(
            first("CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql;").kind,
            "CREATE FUNCTION"
        );
    }

    #[test]
    fn alter_table_holds_the_strongest_lock_of_its_actions() {
        let f = first("ALTER TABLE t VALIDATE CONSTRAINT c;");
        assert_eq!(f.lock, Some(LockMode::ShareUpdateExclusive));
        let f = first("ALTER TABLE t VALIDATE CONSTRAINT c, ADD COLUMN x int;");
        assert_eq!(f.lock, Some(LockMode::AccessExclusive));
    }
}
