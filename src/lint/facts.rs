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
    /// `definition`: the constraint as written, without its name (`FOREIGN KEY (...)
    /// REFERENCES ...`, `CHECK (...)`, `UNIQUE (...)`).
    AddForeignKey {
        table: String,
        constraint: Option<String>,
        definition: String,
    },
    AddCheck {
        table: String,
        constraint: Option<String>,
        definition: String,
    },
    AddUnique {
        table: String,
        constraint: Option<String>,
        definition: String,
        primary: bool,
    },
    /// A new column whose default is computed per row (volatile, serial, generated): every
    /// existing row is rewritten.
    AddComputedColumn {
        table: String,
        column: String,
        ty: String,
        default: Option<String>,
    },
    /// A whole-table rewrite or rebuild under ACCESS EXCLUSIVE (VACUUM FULL, CLUSTER, SET
    /// TABLESPACE / LOGGED / UNLOGGED / ACCESS METHOD).
    RewriteTable {
        table: String,
    },
    Truncate {
        table: String,
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
    /// Functions a new column's default calls whose volatility the text does not tell: the
    /// catalog decides whether adding it rewrites the table.
    #[serde(skip)]
    pub default_calls: Vec<String>,
    /// A type change with a USING expression: always a rewrite.
    #[serde(skip)]
    pub type_using: bool,
    /// The column a default of unknown volatility adds: a change to stage if the catalog says
    /// the default is volatile.
    #[serde(skip)]
    pub computed_hint: Option<Change>,
    /// `ADD CONSTRAINT name CHECK (column IS NOT NULL) [NOT VALID]`: (table, name, column,
    /// valid at once).
    #[serde(skip)]
    pub not_null_check: Option<(String, String, String, bool)>,
    /// `VALIDATE CONSTRAINT name`: (table, name).
    #[serde(skip)]
    pub validates: Option<(String, String)>,
    /// Views it creates, as written.
    #[serde(skip)]
    pub views: Vec<String>,
    /// Why the catalog or the earlier migrations settle this statement below what squawk's
    /// rule weighs (a type change that only widens): squawk's finding on it follows.
    #[serde(skip)]
    pub settled: Option<String>,
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
            default_calls: Vec::new(),
            type_using: false,
            computed_hint: None,
            not_null_check: None,
            validates: None,
            views: Vec::new(),
            settled: None,
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
            // A partition of an existing table locks its parent while it is attached.
            if has(node, SyntaxKind::PARTITION_KW) && has(node, SyntaxKind::OF_KW) {
                let parent = refs(node).into_iter().next();
                f = f.lock(LockMode::AccessExclusive, parent);
                f.raise(
                    Severity::Care,
                    Category::Blocking,
                    "create-partition",
                    "a new partition takes ACCESS EXCLUSIVE on its parent table while it is attached",
                );
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
        ast::Stmt::CreateTableAs(_) | ast::Stmt::SelectInto(_) => {
            // A new table, filled by a query that reads (ACCESS SHARE) what it selects from.
            let created = match stmt {
                ast::Stmt::CreateTableAs(c) => c.table_name().map(|t| text(&t)),
                ast::Stmt::SelectInto(s) => s.into_clause().map(|i| {
                    let t = text(&i);
                    t.trim_start_matches(|c: char| c.is_ascii_alphabetic())
                        .trim()
                        .to_owned()
                }),
                _ => None,
            };
            let mut f = Facts::risky(
                "CREATE TABLE AS",
                Care,
                Category::Blocking,
                "create-table-as",
                "copies data into a new table: runs as long as its query, reading its source",
            )
            .lock_all(LockMode::AccessShare, refs(node));
            f.creates.extend(created);
            f
        }
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
        ast::Stmt::Truncate(_) => {
            let mut f = Facts::risky(
                "TRUNCATE",
                Dangerous,
                Category::Breaking,
                "truncate",
                "deletes every row",
            )
            .lock_all(LockMode::AccessExclusive, refs(node));
            f.changes = f
                .tables
                .iter()
                .map(|t| Change::Truncate { table: t.clone() })
                .collect();
            f
        }
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
            if !has(d.syntax(), SyntaxKind::WHERE_KW) {
                // Every row: it works through the whole table like an unbatched backfill, and
                // is weighed by the table's size the same way.
                return Facts::risky(
                    "DELETE",
                    Care,
                    Category::Blocking,
                    "delete-all",
                    "deletes every row in one transaction, holding their locks until it commits; batch it, or TRUNCATE if nothing reads it",
                )
                .lock(LockMode::RowExclusive, table);
            }
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
                    "blocks writes to the table, and reads that use the index (ACCESS EXCLUSIVE on it), while it is rebuilt",
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
                f.changes = f
                    .tables
                    .iter()
                    .map(|t| Change::RewriteTable { table: t.clone() })
                    .collect();
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
            f.changes = f
                .tables
                .iter()
                .map(|t| Change::RewriteTable { table: t.clone() })
                .collect();
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
        ast::Stmt::Lock(l) => {
            // `IN <mode> MODE`; without it, ACCESS EXCLUSIVE.
            let mode = l
                .lock_mode_clause()
                .map(|c| text(&c).to_ascii_uppercase())
                .and_then(|c| {
                    let words = c
                        .trim_start_matches("IN")
                        .trim_end_matches("MODE")
                        .trim()
                        .to_owned();
                    LockMode::from_sql(&words.split_whitespace().collect::<Vec<_>>().join(" "))
                })
                .unwrap_or(LockMode::AccessExclusive);
            Facts::risky(
                "LOCK",
                Care,
                Category::Blocking,
                "lock-table",
                "takes an explicit table lock for the whole migration",
            )
            .lock_all(mode, refs(node))
        }
        ast::Stmt::CreateView(v) => {
            // It reads what it selects from; replacing one locks the view itself.
            let mut f = Facts::safe("CREATE VIEW", "adds a new object")
                .lock_all(LockMode::AccessShare, refs(node));
            let view = v.view().and_then(|p| p.path()).map(|p| text(&p));
            if v.or_replace().is_some() {
                f = f.lock(LockMode::AccessExclusive, view.clone());
                f.kind = "CREATE OR REPLACE VIEW".into();
            }
            f.views.extend(view);
            f
        }
        ast::Stmt::CreateMaterializedView(_) => {
            Facts::safe("CREATE MATERIALIZED VIEW", "adds a new object")
                .lock_all(LockMode::AccessShare, refs(node))
        }
        ast::Stmt::DropView(v) => {
            let views: Vec<String> = v
                .view_refs()
                .filter_map(|r| r.path_ref().map(|p| text(&p)))
                .collect();
            Facts::risky(
                "DROP VIEW",
                Care,
                Category::Breaking,
                "drop-object",
                "code still using the view breaks; it takes ACCESS EXCLUSIVE on the view (and on what CASCADE drops with it)",
            )
            .lock_all(LockMode::AccessExclusive, views)
        }
        ast::Stmt::DropMaterializedView(_) => Facts::risky(
            "DROP MATERIALIZED VIEW",
            Care,
            Category::Breaking,
            "drop-object",
            "code still using the view breaks; it takes ACCESS EXCLUSIVE on it",
        )
        .lock(LockMode::AccessExclusive, None),
        ast::Stmt::DropTrigger(t) => {
            let table = t
                .on_relation()
                .and_then(|o| o.relation_name_ref())
                .map(|r| text(&r));
            Facts::risky(
                "DROP TRIGGER",
                Care,
                Category::Breaking,
                "drop-object",
                "whatever the trigger did stops; it takes ACCESS EXCLUSIVE on its table, briefly",
            )
            .lock(LockMode::AccessExclusive, table)
        }
        ast::Stmt::Do(d) => do_block(d),
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
        ast::Stmt::DropFunction(_)
        | ast::Stmt::DropProcedure(_)
        | ast::Stmt::DropType(_)
        | ast::Stmt::DropSequence(_)
        | ast::Stmt::DropDomain(_)
        | ast::Stmt::DropExtension(_) => {
            let f = Facts::risky(
                &kind_name(stmt),
                Care,
                Category::Breaking,
                "drop-object",
                "code still using the object breaks",
            );
            // CASCADE also drops what depends on it (a trigger, a column of the type, a
            // default): ACCESS EXCLUSIVE on those tables, whichever they are.
            if has(node, SyntaxKind::CASCADE_KW) {
                f.lock(LockMode::AccessExclusive, None)
            } else {
                f
            }
        }
        ast::Stmt::Select(_)
        | ast::Stmt::Begin(_)
        | ast::Stmt::Commit(_)
        | ast::Stmt::Set(_)
        | ast::Stmt::Show(_) => Facts::safe(&kind_name(stmt), "changes no schema"),
        _ => {
            let kind = kind_name(stmt);
            if kind.starts_with("COMMENT") {
                // On a table, view or column: SHARE UPDATE EXCLUSIVE on the relation, briefly.
                let on_relation = [
                    SyntaxKind::TABLE_KW,
                    SyntaxKind::COLUMN_KW,
                    SyntaxKind::VIEW_KW,
                    SyntaxKind::INDEX_KW,
                ]
                .iter()
                .any(|k| has(node, *k));
                let f = Facts::safe(&kind, "changes only documentation");
                if on_relation {
                    f.lock(LockMode::ShareUpdateExclusive, None)
                } else {
                    f
                }
            } else if kind.starts_with("CREATE ") || kind.starts_with("GRANT") {
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
                let serial = ty.to_ascii_lowercase().contains("serial");
                let computed = Change::AddComputedColumn {
                    table: table.clone(),
                    column: column.clone(),
                    ty: ty.clone(),
                    default: default.clone(),
                };
                if generated {
                    f.raise(
                        Dangerous,
                        Category::Blocking,
                        "generated-column",
                        "a stored generated column rewrites the table",
                    );
                    f.rewrite = f.rewrite.max(Rewrite::Yes);
                    f.changes.push(computed);
                } else if not_null && default.is_none() && !serial {
                    f.raise(Dangerous, Category::Breaking, "add-required-column", "a NOT NULL column without default fails on existing rows and breaks inserts from running code");
                    f.changes.push(Change::AddRequiredColumn {
                        table: table.clone(),
                        column,
                        ty,
                    });
                } else if let Some(d) = default {
                    let unknown = unknown_calls(node);
                    if is_volatile_default(&d) {
                        f.raise(
                            Dangerous,
                            Category::Blocking,
                            "volatile-default",
                            "a volatile default rewrites the whole table under ACCESS EXCLUSIVE",
                        );
                        f.rewrite = f.rewrite.max(Rewrite::Yes);
                        f.changes.push(computed);
                    } else if !unknown.is_empty() {
                        f.raise(
                            Care,
                            Category::Blocking,
                            "default-function",
                            "the default calls a function: if it is volatile, every row is rewritten under ACCESS EXCLUSIVE",
                        );
                        f.rewrite = f.rewrite.max(Rewrite::Maybe);
                        f.default_calls.extend(unknown);
                        f.computed_hint = Some(computed);
                    }
                } else if ty.to_ascii_lowercase().contains("serial") {
                    f.raise(
                        Dangerous,
                        Category::Blocking,
                        "serial-column",
                        "a serial column fills every existing row, rewriting the table",
                    );
                    f.rewrite = f.rewrite.max(Rewrite::Yes);
                    f.changes.push(computed);
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
                        f.type_using |= has(node, SyntaxKind::USING_KW);
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
                let name_node = constraint
                    .as_ref()
                    .and_then(|c| c.syntax().descendants().find_map(ast::ConstraintName::cast));
                let name = name_node.as_ref().map(text);
                // The constraint as written after its name, without NOT VALID.
                let definition = constraint
                    .as_ref()
                    .map(|c| {
                        let all = c.syntax().text().to_string();
                        let from = name_node
                            .as_ref()
                            .map(|n| {
                                usize::from(n.syntax().text_range().end())
                                    - usize::from(c.syntax().text_range().start())
                            })
                            .unwrap_or(0);
                        let body = all.get(from..).unwrap_or(&all).trim();
                        let upper = body.to_ascii_uppercase();
                        match upper.rfind("NOT VALID") {
                            Some(at) if at + 9 == upper.len() => body[..at].trim().to_owned(),
                            _ => body.to_owned(),
                        }
                    })
                    .unwrap_or_default();
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
                                definition,
                            });
                        }
                        continue;
                    }
                    Some(ast::Constraint::UniqueConstraint(_))
                    | Some(ast::Constraint::PrimaryKeyConstraint(_)) => {
                        let primary =
                            matches!(constraint, Some(ast::Constraint::PrimaryKeyConstraint(_)));
                        if primary && has(node, SyntaxKind::USING_KW) {
                            // The index exists, but a primary key makes its columns NOT NULL:
                            // checked by a scan under ACCESS EXCLUSIVE unless they are already.
                            f.raise(
                                Care,
                                Category::Blocking,
                                "add-primary-key-using-index",
                                "a primary key makes its columns NOT NULL: unless they are already, the table is scanned under ACCESS EXCLUSIVE",
                            );
                            f.rewrite = f.rewrite.max(Rewrite::Scan);
                        }
                        if !has(node, SyntaxKind::USING_KW) {
                            f.raise(
                                Dangerous,
                                Category::Blocking,
                                "add-unique-constraint",
                                "builds a unique index while blocking reads and writes",
                            );
                            f.rewrite = f.rewrite.max(Rewrite::Scan);
                            f.changes.push(Change::AddUnique {
                                table: table.clone(),
                                constraint: name,
                                definition,
                                primary,
                            });
                        }
                    }
                    Some(ast::Constraint::CheckConstraint(_))
                    | Some(ast::Constraint::ExcludeConstraint(_)) => {
                        if let (Some(name), Some(column)) =
                            (name.clone(), not_null_column(&definition))
                        {
                            let bare_name = name
                                .get(..10)
                                .filter(|k| k.eq_ignore_ascii_case("CONSTRAINT"))
                                .map_or(name.as_str(), |_| name[10..].trim());
                            f.not_null_check =
                                Some((table.clone(), identifier(bare_name), column, !not_valid));
                        }
                        if !not_valid {
                            f.raise(
                                Care,
                                Category::Blocking,
                                "add-check-constraint",
                                "validating the constraint scans the table under ACCESS EXCLUSIVE",
                            );
                            f.rewrite = f.rewrite.max(Rewrite::Scan);
                            f.changes.push(Change::AddCheck {
                                table: table.clone(),
                                constraint: name,
                                definition,
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
            ast::AlterTableAction::ValidateConstraint(v) => {
                let name = v.constraint_name_ref().map(|n| identifier(&text(&n)));
                f.validates = name.map(|n| (table.clone(), n));
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
            ast::AlterTableAction::AttachPartition(_) => {
                // SHARE UPDATE EXCLUSIVE on the parent, but ACCESS EXCLUSIVE on the table
                // attached, which is scanned to prove its rows fit the bounds (unless a
                // matching CHECK constraint already proves it).
                lock = LockMode::ShareUpdateExclusive;
                let attached = refs(node).into_iter().next();
                f = f.lock(LockMode::AccessExclusive, attached);
                f.raise(
                    Care,
                    Category::Blocking,
                    "attach-partition",
                    "scans the attached table under ACCESS EXCLUSIVE to check its rows fit the partition bounds; a matching CHECK constraint added NOT VALID and validated first skips the scan",
                );
                f.rewrite = f.rewrite.max(Rewrite::Scan);
                continue;
            }
            ast::AlterTableAction::DetachPartition(_) if has(node, SyntaxKind::CONCURRENTLY_KW) => {
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
                f.changes.push(Change::RewriteTable {
                    table: table.clone(),
                });
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

/// A `DO` block: when its body is plain SQL between BEGIN and END, the facts of what it runs;
/// otherwise (PL/pgSQL control flow, dynamic SQL) it cannot be read, and says which statements
/// it seems to hold.
fn do_block(d: &ast::Do) -> Facts {
    let body = d.body().map(|b| text(&b)).unwrap_or_default();
    let inner = dollar_body(&body).unwrap_or_default();
    let trimmed = inner.trim();
    let plain = trimmed
        .get(..5)
        .is_some_and(|b| b.eq_ignore_ascii_case("BEGIN"))
        .then(|| trimmed[5..].trim_end().trim_end_matches(';').trim_end())
        .and_then(|rest| {
            let n = rest.len().checked_sub(3)?;
            rest.get(n..)
                .filter(|end| end.eq_ignore_ascii_case("END"))
                .map(|_| &rest[..n])
        });
    if let Some(sql) = plain {
        let parse = squawk_syntax::SourceFile::parse(sql);
        let stmts: Vec<ast::Stmt> = crate::migrate::script::statements_of(&parse.tree()).collect();
        let readable = parse.errors().is_empty()
            && !stmts.is_empty()
            // EXECUTE in PL/pgSQL is dynamic SQL, not a prepared statement.
            && stmts.iter().all(|s| {
                !matches!(
                    s,
                    ast::Stmt::Do(_) | ast::Stmt::Select(_) | ast::Stmt::Execute(_)
                )
            });
        if readable {
            let mut f = Facts::safe("DO", "runs plain SQL");
            for inner in stmts.iter().map(facts) {
                f.raise(inner.class, inner.category, inner.rule, inner.reason);
                f.lock = f.lock.max(inner.lock);
                f.rewrite = f.rewrite.max(inner.rewrite);
                for t in inner.tables {
                    if !f.tables.contains(&t) {
                        f.tables.push(t);
                    }
                }
                f.creates.extend(inner.creates);
                f.changes.extend(inner.changes);
            }
            return f;
        }
    }
    let found: Vec<&str> = [
        "ALTER TABLE",
        "CREATE INDEX",
        "DROP",
        "UPDATE",
        "DELETE",
        "INSERT",
        "EXECUTE",
    ]
    .into_iter()
    .filter(|k| inner.to_ascii_uppercase().contains(k))
    .collect();
    let mut f = Facts::risky(
        "DO",
        Severity::Care,
        Category::Breaking,
        "do-block",
        "a DO block's PL/pgSQL cannot be read for its locks: review what it runs",
    );
    if !found.is_empty() {
        f.kind = format!("DO ({})", found.join(", "));
    }
    // What it locks is unknown: it may take ACCESS EXCLUSIVE and rewrite.
    f.rewrite = Rewrite::Maybe;
    f
}

/// The text between a dollar-quote's opening and closing tags (`$$ ... $$`, `$x$ ... $x$`).
fn dollar_body(literal: &str) -> Option<&str> {
    let rest = literal.strip_prefix('$')?;
    let tag_end = rest.find('$')?;
    let tag = &literal[..tag_end + 2];
    literal.strip_prefix(tag)?.strip_suffix(tag)
}

/// Functions called under `node` whose volatility the text does not tell (not the common
/// immutable or stable ones, nor those [`is_volatile_default`] knows), by lower-case name.
fn unknown_calls(node: &SyntaxNode) -> Vec<String> {
    const STORED_ONCE: [&str; 12] = [
        "now",
        "statement_timestamp",
        "transaction_timestamp",
        "current_setting",
        "lower",
        "upper",
        "length",
        "md5",
        "concat",
        "to_jsonb",
        "jsonb_build_object",
        "json_build_object",
    ];
    node.descendants()
        .filter(|n| n.kind() == SyntaxKind::CALL_EXPR)
        .filter_map(|call| {
            let t = call.text().to_string();
            let name = t
                .split('(')
                .next()?
                .trim()
                .rsplit('.')
                .next()?
                .trim()
                .trim_matches('"');
            let name = name.to_ascii_lowercase();
            (!name.is_empty()
                && !STORED_ONCE.contains(&name.as_str())
                && !is_volatile_default(&format!("{name}(")))
            .then_some(name)
        })
        .collect()
}

/// What the live catalog settles that the text cannot: whether a type change rewrites (from
/// the column's type now, or else the type the earlier migrations gave it) and whether a
/// default's functions are volatile. Severity follows.
pub fn with_catalog(f: &mut Facts, sizes: &super::Sizes, declared: &super::declared::Declared) {
    if f.rewrite != Rewrite::Maybe {
        return;
    }
    let changes: Vec<(String, String, String)> = f
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::ChangeType {
                table,
                column,
                new_type,
            } => Some((table.clone(), column.clone(), new_type.clone())),
            _ => None,
        })
        .collect();
    if let [(table, column, new_type)] = changes.as_slice()
        && f.default_calls.is_empty()
    {
        let live = sizes
            .get(table)
            .and_then(|t| t.columns.get(&identifier(column)))
            .map(|old| (old.as_str(), "the live catalog"));
        let old = live.or_else(|| {
            declared
                .column(table, column)
                .map(|old| (old, "the earlier migrations"))
        });
        let verdict = match old {
            Some(_) if f.type_using => Some(Rewrite::Yes),
            Some((old, _)) => {
                type_change(old, new_type).or_else(|| cast_change(old, new_type, sizes))
            }
            None => None,
        };
        match (verdict, old) {
            (Some(Rewrite::Yes), _) => f.rewrite = Rewrite::Yes,
            (Some(v), Some((old, source))) => {
                f.rewrite = v;
                if f.rule == "change-column-type" {
                    // The lock is brief whatever the size: what is left is the new type.
                    f.class = Severity::Care;
                    f.category = Category::Breaking;
                    f.reason = "changes the column's type in the catalog only, under a brief ACCESS EXCLUSIVE: nothing is rewritten, but code reading the column may see the new type";
                    f.settled = Some(format!(
                        "lowered: {column} is {old} ({source}), and {new_type} takes it as it is: nothing is rewritten"
                    ));
                }
            }
            _ => {}
        }
        return;
    }
    if changes.is_empty() && !f.default_calls.is_empty() {
        let known: Vec<char> = f
            .default_calls
            .iter()
            .filter_map(|c| sizes.volatility(c))
            .collect();
        if known.len() < f.default_calls.len() {
            return;
        }
        if known.contains(&'v') {
            f.rewrite = Rewrite::Yes;
            f.changes.extend(f.computed_hint.take());
            f.raise(
                Severity::Dangerous,
                Category::Blocking,
                "volatile-default",
                "a volatile default rewrites the whole table under ACCESS EXCLUSIVE",
            );
        } else {
            f.rewrite = Rewrite::No;
            if f.rule == "default-function" {
                f.class = Severity::Safe;
                f.reason =
                    "the default's functions are stable: it is stored once, nothing is rewritten";
            }
        }
    }
}

/// The column of a `CHECK (column IS NOT NULL)`, as the catalog names it.
fn not_null_column(definition: &str) -> Option<String> {
    let inner = definition
        .trim()
        .strip_prefix("CHECK")
        .or_else(|| definition.trim().strip_prefix("check"))?
        .trim()
        .strip_prefix('(')?
        .trim_end()
        .strip_suffix(')')?
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')');
    let upper = inner.to_ascii_uppercase();
    let at = upper.find(" IS NOT NULL")?;
    (upper[at..].trim() == "IS NOT NULL").then(|| identifier(inner[..at].trim()))
}

/// An identifier as the catalog stores it: quotes removed, else folded to lower case.
pub fn identifier(written: &str) -> String {
    match written.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => written.to_ascii_lowercase(),
    }
}

/// A type as a base name and its modifiers: "varchar" [20], "numeric" [10, 2], "timestamp" [3].
fn normalized_type(written: &str) -> (String, Vec<i64>) {
    let lower = written.to_ascii_lowercase();
    let (mut base, mut args) = (String::new(), Vec::new());
    let mut rest = lower.as_str();
    while let Some(open) = rest.find('(') {
        base.push_str(&rest[..open]);
        let close = rest[open..].find(')').map_or(rest.len(), |c| open + c);
        args.extend(
            rest[open + 1..close]
                .split(',')
                .filter_map(|a| a.trim().parse::<i64>().ok()),
        );
        rest = rest.get(close + 1..).unwrap_or("");
    }
    base.push_str(rest);
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    let base = match base.as_str() {
        "character varying" | "varchar" => "varchar",
        "character" | "char" | "bpchar" => "bpchar",
        "int" | "int4" | "integer" => "int4",
        "int8" | "bigint" => "int8",
        "int2" | "smallint" => "int2",
        "decimal" | "numeric" => "numeric",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "time" | "time without time zone" => "time",
        "timetz" | "time with time zone" => "timetz",
        "float8" | "double precision" => "float8",
        "float4" | "real" => "float4",
        "bool" | "boolean" => "bool",
        "varbit" | "bit varying" => "varbit",
        // What a serial column is once created.
        "serial" | "serial4" => "int4",
        "bigserial" | "serial8" => "int8",
        "smallserial" | "serial2" => "int2",
        other => other,
    }
    .to_owned();
    (base, args)
}

/// Whether changing a column from `old` (as the catalog prints it) to `new` (as written)
/// rewrites the table, by PostgreSQL's rules: a binary-coercible change, or one that only widens
/// a length, precision or fractional-seconds limit (or lifts it), is a catalog change; any other
/// change between built-in types rewrites; a user type or domain is left undecided (None).
pub fn type_change(old: &str, new: &str) -> Option<Rewrite> {
    const BUILT_IN: [&str; 22] = [
        "varchar",
        "bpchar",
        "text",
        "int2",
        "int4",
        "int8",
        "numeric",
        "float4",
        "float8",
        "bool",
        "date",
        "timestamp",
        "timestamptz",
        "time",
        "timetz",
        "interval",
        "uuid",
        "json",
        "jsonb",
        "bytea",
        "inet",
        "cidr",
    ];
    let (ob, oa) = normalized_type(old);
    let (nb, na) = normalized_type(new);
    let widens = |o: &[i64], n: &[i64]| match (o.first(), n.first()) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(o), Some(n)) => n >= o,
    };
    let no = |yes: bool| Some(if yes { Rewrite::No } else { Rewrite::Yes });
    if ob == nb {
        return match ob.as_str() {
            _ if oa == na => Some(Rewrite::No),
            "varchar" | "varbit" | "timestamp" | "timestamptz" | "time" | "timetz" | "interval" => {
                no(widens(&oa, &na))
            }
            // Precision may grow; the scale must stay.
            "numeric" => no(na.is_empty()
                || (oa.len() == 2 && na.len() == 2 && na[0] >= oa[0] && na[1] == oa[1])),
            "bpchar" => Some(Rewrite::Yes),
            _ => None,
        };
    }
    match (ob.as_str(), nb.as_str()) {
        ("varchar", "text") | ("cidr", "inet") => Some(Rewrite::No),
        ("text", "varchar") => no(na.is_empty()),
        _ if BUILT_IN.contains(&ob.as_str()) && BUILT_IN.contains(&nb.as_str()) => {
            Some(Rewrite::Yes)
        }
        _ => None,
    }
}

/// A change between types the text does not know (an extension's, a domain) that the live
/// catalog's `pg_cast` lists as binary-coercible, modifiers unchanged: nothing is rewritten.
fn cast_change(old: &str, new: &str, sizes: &super::Sizes) -> Option<Rewrite> {
    let (ob, oa) = normalized_type(old);
    let (nb, na) = normalized_type(new);
    let coercible = oa == na
        && sizes
            .binary_casts()
            .any(|(s, t)| normalized_type(s).0 == ob && normalized_type(t).0 == nb);
    coercible.then_some(Rewrite::No)
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
    fn type_changes_follow_postgresqls_rules_for_a_rewrite() {
        let cases = [
            ("character varying(20)", "varchar(50)", Some(Rewrite::No)),
            ("character varying(20)", "VARCHAR(10)", Some(Rewrite::Yes)),
            ("character varying(20)", "text", Some(Rewrite::No)),
            ("character varying(20)", "varchar", Some(Rewrite::No)),
            ("text", "varchar", Some(Rewrite::No)),
            ("text", "varchar(30)", Some(Rewrite::Yes)),
            ("numeric(10,2)", "numeric(12,2)", Some(Rewrite::No)),
            ("numeric(10,2)", "numeric", Some(Rewrite::No)),
            ("numeric(10,2)", "numeric(10,4)", Some(Rewrite::Yes)),
            ("numeric", "numeric(10,2)", Some(Rewrite::Yes)),
            (
                "timestamp(3) without time zone",
                "timestamp(6)",
                Some(Rewrite::No),
            ),
            (
                "timestamp(6) without time zone",
                "timestamp(3)",
                Some(Rewrite::Yes),
            ),
            ("integer", "bigint", Some(Rewrite::Yes)),
            ("integer", "int4", Some(Rewrite::No)),
            ("integer", "text", Some(Rewrite::Yes)),
            ("character(10)", "char(20)", Some(Rewrite::Yes)),
            ("\"Mood\"", "text", None),
        ];
        for (old, new, expect) in cases {
            assert_eq!(type_change(old, new), expect, "{old} -> {new}");
        }
    }

    #[test]
    fn alter_table_holds_the_strongest_lock_of_its_actions() {
        let f = first("ALTER TABLE t VALIDATE CONSTRAINT c;");
        assert_eq!(f.lock, Some(LockMode::ShareUpdateExclusive));
        let f = first("ALTER TABLE t VALIDATE CONSTRAINT c, ADD COLUMN x int;");
        assert_eq!(f.lock, Some(LockMode::AccessExclusive));
    }
}
