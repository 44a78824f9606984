//! The column types a folder's migrations declare, file by file: what an offline lint knows of
//! a column when a later migration changes its type. Read from the same syntax tree the lint
//! walks; a statement it does not follow (a DO block, dynamic SQL) leaves the columns it touches
//! as they were, and a column it cannot place stays unknown, so its type change stays "may
//! rewrite".

use std::collections::{BTreeMap, HashMap};

use squawk_syntax::ast::{self, AstNode};

use super::facts::identifier;

/// Column types by table, as the migrations so far wrote them.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    tables: HashMap<String, BTreeMap<String, String>>,
}

fn text(node: &impl AstNode) -> String {
    node.syntax().text().to_string().trim().to_owned()
}

/// A column name as the catalog stores it.
fn column_of(name: Option<impl AstNode>) -> Option<String> {
    name.map(|c| identifier(&text(&c)))
}

impl Declared {
    pub fn new() -> Declared {
        Declared::default()
    }

    /// The type the migrations gave `column` of `table` (both as written), if they did.
    pub fn column(&self, table: &str, column: &str) -> Option<&str> {
        self.tables
            .get(&super::ident_key(table))?
            .get(&identifier(column))
            .map(String::as_str)
    }

    /// Follows one statement's effect on the tables' columns.
    pub fn apply(&mut self, stmt: &ast::Stmt) {
        match stmt {
            ast::Stmt::CreateTable(ct) => {
                let Some(name) = ct.table_name() else { return };
                let columns = ct
                    .table_arg_list()
                    .into_iter()
                    .flat_map(|l| l.args())
                    .filter_map(|arg| match arg {
                        ast::TableArg::Column(c) => {
                            Some((identifier(&text(&c.name()?)), text(&c.ty()?)))
                        }
                        _ => None,
                    })
                    .collect();
                self.tables.insert(super::ident_key(&text(&name)), columns);
            }
            ast::Stmt::DropTable(dt) => {
                for t in dt.table_name_refs() {
                    self.tables.remove(&super::ident_key(&text(&t)));
                }
            }
            ast::Stmt::AlterTable(at) => {
                let Some(table) = at
                    .table_relation_name()
                    .and_then(|t| t.table_name_ref())
                    .map(|t| super::ident_key(&text(&t)))
                else {
                    return;
                };
                for action in at.actions() {
                    self.alter(&table, &action);
                }
            }
            _ => {}
        }
    }

    fn alter(&mut self, table: &str, action: &ast::AlterTableAction) {
        match action {
            ast::AlterTableAction::AddColumn(add) => {
                if let (Some(c), Some(ty)) = (column_of(add.column_name()), add.ty()) {
                    self.tables
                        .entry(table.to_owned())
                        .or_default()
                        .insert(c, text(&ty));
                }
            }
            ast::AlterTableAction::DropColumn(dc) => {
                if let (Some(columns), Some(c)) =
                    (self.tables.get_mut(table), column_of(dc.column_name_ref()))
                {
                    columns.remove(&c);
                }
            }
            ast::AlterTableAction::RenameColumn(rc) => {
                if let (Some(columns), Some(from), Some(to)) = (
                    self.tables.get_mut(table),
                    column_of(rc.column_name_ref()),
                    column_of(rc.column_name()),
                ) && let Some(ty) = columns.remove(&from)
                {
                    columns.insert(to, ty);
                }
            }
            ast::AlterTableAction::TableRenameTo(r) => {
                if let Some(to) = r.table_name().map(|n| super::ident_key(&text(&n)))
                    && let Some(columns) = self.tables.remove(table)
                {
                    self.tables.insert(to, columns);
                }
            }
            ast::AlterTableAction::AlterColumn(ac) => {
                if let Some(ast::AlterColumnOption::SetType(st)) = ac.option()
                    && let (Some(c), Some(ty)) = (column_of(ac.column_name_ref()), st.ty())
                {
                    self.tables
                        .entry(table.to_owned())
                        .or_default()
                        .insert(c, text(&ty));
                }
            }
            _ => {}
        }
    }

    /// Follows every statement of a script that parses; one that does not changes nothing.
    pub fn apply_sql(&mut self, sql: &str) {
        let parse = squawk_syntax::SourceFile::parse(sql);
        if !parse.errors().is_empty() {
            return;
        }
        for stmt in crate::migrate::script::statements_of(&parse.tree()) {
            self.apply(&stmt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_creates_adds_renames_type_changes_and_drops() {
        let mut d = Declared::new();
        d.apply_sql(
            r#"CREATE TABLE "User" ("id" SERIAL NOT NULL, "name" VARCHAR(20), note text, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));
ALTER TABLE "User" ADD COLUMN "email" VARCHAR(100) NOT NULL DEFAULT '';
ALTER TABLE "User" RENAME COLUMN "name" TO "fullName";
ALTER TABLE "User" ALTER COLUMN note TYPE varchar(5);
ALTER TABLE "User" DROP COLUMN "id";
CREATE TABLE public.t (A int);
ALTER TABLE t RENAME TO u;
CREATE TABLE gone (x int);
DROP TABLE gone;"#,
        );
        assert_eq!(d.column("\"User\"", "\"fullName\""), Some("VARCHAR(20)"));
        assert_eq!(d.column("\"User\"", "\"name\""), None);
        assert_eq!(d.column("\"User\"", "\"email\""), Some("VARCHAR(100)"));
        assert_eq!(d.column("\"User\"", "NOTE"), Some("varchar(5)"));
        assert_eq!(d.column("\"User\"", "\"id\""), None);
        assert_eq!(d.column("u", "a"), Some("int"));
        assert_eq!(d.column("public.u", "\"a\""), Some("int"));
        assert_eq!(d.column("t", "a"), None);
        assert_eq!(d.column("gone", "x"), None);
        // Unquoted names fold to lower case; quoted ones keep their case.
        assert_eq!(d.column("user", "\"fullName\""), None);
    }

    #[test]
    fn a_script_that_does_not_parse_changes_nothing() {
        let mut d = Declared::new();
        d.apply_sql("CREATE TABLE a (x int);");
        d.apply_sql("ALTER TABLE a ALTER COLUMN x TYPE text; CREATE TABLE (;");
        assert_eq!(d.column("a", "x"), Some("int"));
    }
}
