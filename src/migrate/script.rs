//! Splitting a migration script into statements with squawk's PostgreSQL parser, and deciding
//! for each whether it may run inside a transaction. Parsing, not pattern matching: a
//! `CONCURRENTLY` inside a comment, a string or a function body changes nothing.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{Parse, SourceFile, SyntaxKind, SyntaxNode};

/// Where a statement can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TxMode {
    /// Inside the migration's transaction.
    Transaction,
    /// PostgreSQL refuses it inside a transaction block (CREATE INDEX CONCURRENTLY, VACUUM, ...).
    NoTransaction,
}

/// One statement of a migration script.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The statement's source text, as written.
    pub text: String,
    /// Byte offset of `text` within the script.
    pub offset: usize,
    /// 1-based line and column (in characters) of the statement's first character.
    pub line: usize,
    pub column: usize,
    pub mode: TxMode,
    /// BEGIN / COMMIT written into the file. The migration already runs in one transaction, so
    /// these are folded into it rather than sent (sending COMMIT would end it early).
    pub transaction_control: bool,
    /// ROLLBACK / ABORT written into the file: it would discard the migration's own transaction.
    /// (ROLLBACK TO SAVEPOINT does not, and runs as written.)
    pub aborts_transaction: bool,
    /// PREPARE TRANSACTION, COMMIT PREPARED or ROLLBACK PREPARED: two-phase commit hands the
    /// migration's work to a prepared transaction outside its own, or ends someone else's.
    pub two_phase: bool,
    /// For CREATE INDEX CONCURRENTLY and REINDEX ... CONCURRENTLY: the table (or index) as
    /// written, so that an index left invalid by a failure can be found afterwards.
    pub concurrent_index_on: Option<String>,
    /// A CONCURRENTLY form (index build, drop or reindex, DETACH PARTITION): it takes no lock
    /// that blocks reads or writes, but waits for every older transaction, so it runs without
    /// `lock_timeout` and unwatched by the lock-queue watchdog.
    pub concurrently: bool,
    /// COPY ... FROM STDIN: it waits for data a migration cannot send.
    pub copy_from_stdin: bool,
    /// TRUNCATE: the table gets new, empty storage; nothing is copied.
    pub truncates: bool,
}

impl Statement {
    /// The first line of the statement with whitespace collapsed, for progress messages.
    pub fn preview(&self, max: usize) -> String {
        // Read only until the preview overflows: a multi-megabyte INSERT is not flattened whole
        // to keep its first 60 characters.
        let mut flat = String::with_capacity(max + 8);
        let mut chars = 0;
        let mut gap = false;
        for c in self.text.chars() {
            if c.is_whitespace() {
                gap = chars > 0;
                continue;
            }
            if gap {
                flat.push(' ');
                chars += 1;
                gap = false;
            }
            flat.push(c);
            chars += 1;
            if chars > max {
                break;
            }
        }
        if chars <= max {
            flat
        } else {
            let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
            format!("{}…", cut.trim_end())
        }
    }
}

/// A syntax problem squawk found, with its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyntaxProblem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A parsed script.
#[derive(Debug, Clone)]
pub struct Script {
    pub statements: Vec<Statement>,
    /// Empty when the parser understood every statement. When not, the statements are the
    /// parser's best effort and [`Script::whole`] is the safe way to run the file.
    pub problems: Vec<SyntaxProblem>,
    /// Whether the text has a keyword (CONCURRENTLY, VACUUM) that may need to run outside a
    /// transaction, or one of two-phase commit (PREPARED), judged from tokens: the cautious
    /// answer for a script the parser did not fully understand.
    pub mentions_non_transactional: bool,
}

impl Script {
    pub fn parse(sql: &str) -> Script {
        Script::from_parse(sql, &SourceFile::parse(sql))
    }

    /// The same, from a parse already made (the linter parses once for both).
    pub fn from_parse(sql: &str, parse: &Parse<SourceFile>) -> Script {
        Script::from_parse_with(sql, parse, &LineMap::new(sql))
    }

    /// The same, with the caller's line map (so it is built once per file).
    pub fn from_parse_with(sql: &str, parse: &Parse<SourceFile>, lines: &LineMap<'_>) -> Script {
        let statements = Script::split(sql, &parse.tree(), lines);
        Script::with_problems(statements, parse, lines)
    }

    /// The statements alone, without the (costly) validation pass.
    pub fn split(sql: &str, file: &SourceFile, lines: &LineMap<'_>) -> Vec<Statement> {
        statements_of(file)
            .map(|stmt| statement(sql, lines, &stmt))
            .collect()
    }

    /// Completes [`Script::split`]'s statements with the parser's and validator's problems.
    pub fn with_problems(
        statements: Vec<Statement>,
        parse: &Parse<SourceFile>,
        lines: &LineMap<'_>,
    ) -> Script {
        let (problems, mentions_non_transactional) = Script::problems_of(parse, lines);
        Script {
            statements,
            problems,
            mentions_non_transactional,
        }
    }

    /// The parser's and validator's problems in a parse, and, when there are any, whether its
    /// text mentions a keyword that may need to run outside a transaction
    /// ([`Script::mentions_non_transactional`]).
    pub fn problems_of(
        parse: &Parse<SourceFile>,
        lines: &LineMap<'_>,
    ) -> (Vec<SyntaxProblem>, bool) {
        let problems: Vec<SyntaxProblem> = parse
            .errors()
            .into_iter()
            .map(|e| {
                let (line, column) = lines.line_col(usize::from(e.range().start()));
                SyntaxProblem {
                    line,
                    column,
                    message: e.message().to_owned(),
                }
            })
            .collect();
        // Only a script with syntax problems needs the token-level judgement; skip the walk
        // otherwise (it is a full pass over a possibly large tree).
        let mentions_non_transactional = !problems.is_empty()
            && parse.tree().syntax().descendants_with_tokens().any(|t| {
                matches!(
                    t.kind(),
                    SyntaxKind::CONCURRENTLY_KW | SyntaxKind::VACUUM_KW | SyntaxKind::PREPARED_KW
                )
            });
        (problems, mentions_non_transactional)
    }

    /// Whether every statement can run inside one transaction.
    pub fn transactional(&self) -> bool {
        self.statements
            .iter()
            .all(|s| s.mode == TxMode::Transaction)
    }

    /// The whole file as a single statement: how a script the parser did not fully understand is
    /// run, letting the server be the judge of its syntax.
    pub fn whole(sql: &str) -> Statement {
        Statement {
            text: sql.to_owned(),
            offset: 0,
            line: 1,
            column: 1,
            mode: TxMode::Transaction,
            transaction_control: false,
            aborts_transaction: false,
            two_phase: false,
            concurrent_index_on: None,
            concurrently: false,
            copy_from_stdin: false,
            truncates: false,
        }
    }
}

/// The statements of a parsed file, in order, without empty ones (`;;`).
pub fn statements_of(file: &SourceFile) -> impl Iterator<Item = ast::Stmt> {
    file.stmts()
        .filter(|s| !matches!(s, ast::Stmt::EmptyStmt(_)))
}

fn statement(sql: &str, lines: &LineMap<'_>, stmt: &ast::Stmt) -> Statement {
    let node = stmt.syntax();
    // Leading trivia (comments) belongs to the statement node in some cases; skip to the first
    // real token so positions point at the statement itself.
    let start = node
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| !t.kind().is_trivia())
        .map(|t| usize::from(t.text_range().start()))
        .unwrap_or_else(|| usize::from(node.text_range().start()));
    let end = usize::from(node.text_range().end());
    let (line, column) = lines.line_col(start);
    // Only REINDEX and ALTER TABLE need the (full-statement) token search, made once.
    let has_concurrently = matches!(stmt, ast::Stmt::Reindex(_) | ast::Stmt::AlterTable(_))
        && has_token(node, SyntaxKind::CONCURRENTLY_KW);
    let (mode, concurrent_index_on) = match stmt {
        ast::Stmt::CreateIndex(ci) if ci.concurrently_token().is_some() => (
            TxMode::NoTransaction,
            ci.table_relation_name()
                .and_then(|t| t.table_name_ref())
                .map(|t| t.syntax().text().to_string()),
        ),
        ast::Stmt::DropIndex(di) if di.concurrently_token().is_some() => {
            (TxMode::NoTransaction, None)
        }
        ast::Stmt::Reindex(r) => {
            let whole_scope = matches!(
                r.reindex_target(),
                Some(
                    ast::ReindexTarget::ReindexTargetDatabase(_)
                        | ast::ReindexTarget::ReindexTargetSystem(_)
                        | ast::ReindexTarget::ReindexTargetSchema(_)
                )
            );
            if whole_scope || has_concurrently {
                let on = match r.reindex_target() {
                    Some(ast::ReindexTarget::ReindexTargetTable(t)) => t
                        .syntax()
                        .descendants()
                        .find_map(ast::Path::cast)
                        .map(|p| p.syntax().text().to_string()),
                    _ => None,
                };
                (TxMode::NoTransaction, on)
            } else {
                (TxMode::Transaction, None)
            }
        }
        // Only DETACH PARTITION takes CONCURRENTLY in ALTER TABLE.
        ast::Stmt::AlterTable(_) if has_concurrently => (TxMode::NoTransaction, None),
        ast::Stmt::Vacuum(_)
        | ast::Stmt::CreateDatabase(_)
        | ast::Stmt::DropDatabase(_)
        | ast::Stmt::AlterSystem(_)
        | ast::Stmt::CreateTablespace(_)
        | ast::Stmt::DropTablespace(_)
        | ast::Stmt::CreateSubscription(_)
        | ast::Stmt::DropSubscription(_) => (TxMode::NoTransaction, None),
        _ => (TxMode::Transaction, None),
    };
    let concurrently = match stmt {
        ast::Stmt::CreateIndex(ci) => ci.concurrently_token().is_some(),
        ast::Stmt::DropIndex(di) => di.concurrently_token().is_some(),
        ast::Stmt::Reindex(_) | ast::Stmt::AlterTable(_) => has_concurrently,
        _ => false,
    };
    Statement {
        text: sql[start..end.max(start)].to_owned(),
        offset: start,
        line,
        column,
        mode,
        transaction_control: matches!(
            stmt,
            ast::Stmt::Begin(_) | ast::Stmt::Commit(ast::Commit::CommitTransaction(_))
        ),
        aborts_transaction: matches!(
            stmt,
            ast::Stmt::Rollback(ast::Rollback::RollbackTransaction(_))
        ),
        two_phase: matches!(
            stmt,
            ast::Stmt::PrepareTransaction(_)
                | ast::Stmt::Commit(ast::Commit::CommitPrepared(_))
                | ast::Stmt::Rollback(ast::Rollback::RollbackPrepared(_))
        ),
        concurrent_index_on,
        concurrently,
        copy_from_stdin: matches!(stmt, ast::Stmt::Copy(_))
            && has_token(node, SyntaxKind::STDIN_KW),
        truncates: matches!(stmt, ast::Stmt::Truncate(_)),
    }
}

fn has_token(node: &SyntaxNode, kind: SyntaxKind) -> bool {
    node.descendants_with_tokens().any(|t| t.kind() == kind)
}

/// Line and column lookups for one text, built once: every lookup is logarithmic, even on a
/// multi-megabyte line of non-ASCII text, so positioning thousands of statements and findings
/// in a large file, and showing their lines, stays linear overall.
///
/// Lines end at `\n`, `\r\n` or a lone `\r`, as squawk counts them. Offsets are bytes; columns
/// are characters, 1-based.
pub struct LineMap<'a> {
    text: &'a str,
    /// The byte offset where each line starts, the first at 0.
    starts: Vec<u32>,
    /// The byte offset of every non-ASCII character, in order.
    wide: Vec<u32>,
    /// `extra[k]`: the bytes beyond one per character of `wide[..k]` (so it has one more entry):
    /// the characters between two offsets are their distance less the difference of two entries.
    extra: Vec<u32>,
}

impl<'a> LineMap<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut wide = Vec::new();
        let mut extra = vec![0];
        let mut added: u32 = 0;
        // Most SQL is ASCII: whole chunks are skipped with one (vectorised) check.
        for (n, chunk) in text.as_bytes().chunks(64).enumerate() {
            if chunk.is_ascii() {
                continue;
            }
            for (i, &b) in chunk.iter().enumerate() {
                let width = match b {
                    0xf0.. => 4,
                    0xe0.. => 3,
                    0xc0.. => 2,
                    // ASCII, or a continuation byte of a character already counted.
                    _ => continue,
                };
                // squawk's parser and line index take at most 4 GiB (u32 offsets) already.
                wide.push((n * 64 + i) as u32);
                added += width - 1;
                extra.push(added);
            }
        }
        // squawk's index finds the line breaks (vectorised, `\r` included); its own lookup of a
        // column checks every non-ASCII character of the line, so only the starts are kept.
        let index = squawk_line_index::LineIndex::new(text);
        let starts = (0..)
            .map_while(|n| index.line(n))
            .map(|range| u32::from(range.start()))
            .collect();
        LineMap {
            text,
            starts,
            wide,
            extra,
        }
    }

    /// 1-based line and character column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.boundary(offset);
        // The first start is 0, so the line is at least 1.
        let line = self
            .starts
            .partition_point(|&s| s as usize <= offset)
            .max(1);
        let line_start = self.starts[line - 1] as usize;
        (line, self.chars(line_start, offset) + 1)
    }

    /// The text of a 1-based line, without its line ending; None past the last line.
    pub fn line(&self, line: usize) -> Option<&'a str> {
        let (start, end) = self.line_range(line)?;
        Some(&self.text[start..end])
    }

    /// The byte offset of a 1-based line and character column, within [`LineMap::line`]'s text:
    /// a column past the end of the line gives the line's length; None past the last line.
    pub fn column_offset(&self, line: usize, column: usize) -> Option<usize> {
        let (start, end) = self.line_range(line)?;
        let want = column.saturating_sub(1);
        // The non-ASCII characters of the line, and how many of them come before the column:
        // the k-th one's column is its distance from the line start less the extra bytes of
        // those before it, which grows with k, so a binary search finds them.
        let first = self.wide.partition_point(|&w| (w as usize) < start);
        let last = self.wide.partition_point(|&w| (w as usize) < end);
        let column_of =
            |k: usize| self.wide[k] as usize - start - (self.extra[k] - self.extra[first]) as usize;
        let (mut lo, mut hi) = (first, last);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if column_of(mid) < want {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let extra = (self.extra[lo] - self.extra[first]) as usize;
        Some((start + want + extra).min(end) - start)
    }

    /// The bytes `[start, end)` of a 1-based line, its line ending left out.
    fn line_range(&self, line: usize) -> Option<(usize, usize)> {
        let start = *self.starts.get(line.checked_sub(1)?)? as usize;
        let next = self
            .starts
            .get(line)
            .map_or(self.text.len(), |&s| s as usize);
        let full = &self.text[start..next];
        let text = full
            .strip_suffix("\r\n")
            .or_else(|| full.strip_suffix('\n'))
            .or_else(|| full.strip_suffix('\r'))
            .unwrap_or(full);
        Some((start, start + text.len()))
    }

    /// The characters in `[start, end)`, both on character boundaries.
    fn chars(&self, start: usize, end: usize) -> usize {
        let from = self.wide.partition_point(|&w| (w as usize) < start);
        let to = self.wide.partition_point(|&w| (w as usize) < end);
        end - start - (self.extra[to] - self.extra[from]) as usize
    }

    /// `offset` clamped to the text and moved back to the start of its character.
    fn boundary(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }
}

/// 1-based line and character column of a byte offset, for a single lookup.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_with_positions_and_keeps_function_bodies_whole() {
        let sql = "-- header\nCREATE TABLE \"User\" (id int);\n\nCREATE FUNCTION f() RETURNS int AS $$\n  SELECT 1; SELECT 2;\n$$ LANGUAGE sql;\n  ALTER TABLE \"User\" ADD COLUMN email text;";
        let script = Script::parse(sql);
        assert!(script.problems.is_empty(), "{:?}", script.problems);
        let got: Vec<_> = script
            .statements
            .iter()
            .map(|s| (s.line, s.column, s.preview(20)))
            .collect();
        assert_eq!(
            got,
            [
                (2, 1, "CREATE TABLE \"User\"…".to_string()),
                (4, 1, "CREATE FUNCTION f()…".to_string()),
                (7, 3, "ALTER TABLE \"User\"…".to_string()),
            ]
        );
        assert!(script.transactional());
    }

    #[test]
    fn statements_that_cannot_run_in_a_transaction_are_found_by_parsing() {
        let cases = [
            (
                "CREATE INDEX CONCURRENTLY \"i\" ON \"User\" (email);",
                TxMode::NoTransaction,
            ),
            (
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON s.t (a);",
                TxMode::NoTransaction,
            ),
            ("DROP INDEX CONCURRENTLY i;", TxMode::NoTransaction),
            ("REINDEX INDEX CONCURRENTLY i;", TxMode::NoTransaction),
            ("REINDEX TABLE t;", TxMode::Transaction),
            (
                "ALTER TABLE p DETACH PARTITION c CONCURRENTLY;",
                TxMode::NoTransaction,
            ),
            ("VACUUM ANALYZE t;", TxMode::NoTransaction),
            ("CREATE DATABASE x;", TxMode::NoTransaction),
            ("ALTER SYSTEM SET work_mem = '8MB';", TxMode::NoTransaction),
            ("CREATE INDEX i ON t (a);", TxMode::Transaction),
            (
                "REFRESH MATERIALIZED VIEW CONCURRENTLY mv;",
                TxMode::Transaction,
            ),
            ("SELECT 'CREATE INDEX CONCURRENTLY';", TxMode::Transaction),
            (
                "-- CREATE INDEX CONCURRENTLY i ON t (a);\nSELECT 1;",
                TxMode::Transaction,
            ),
        ];
        for (sql, expected) in cases {
            let script = Script::parse(sql);
            assert!(script.problems.is_empty(), "{sql}: {:?}", script.problems);
            assert_eq!(script.statements.len(), 1, "{sql}");
            assert_eq!(script.statements[0].mode, expected, "{sql}");
            assert_eq!(
                script.transactional(),
                expected == TxMode::Transaction,
                "{sql}"
            );
        }
    }

    #[test]
    fn concurrent_index_remembers_its_table() {
        let script =
            Script::parse("CREATE UNIQUE INDEX CONCURRENTLY \"u\" ON public.\"QRCode\" (code);");
        assert_eq!(
            script.statements[0].concurrent_index_on.as_deref(),
            Some("public.\"QRCode\"")
        );
    }

    #[test]
    fn transaction_control_written_in_the_file_is_marked() {
        let script = Script::parse(
            "BEGIN;\nCREATE TYPE r AS ENUM ('a');\nSAVEPOINT s;\nROLLBACK TO SAVEPOINT s;\nCOMMIT;\n\
             ROLLBACK;\nPREPARE TRANSACTION 'x';\nCOMMIT PREPARED 'x';\nROLLBACK PREPARED 'x';",
        );
        assert!(script.problems.is_empty(), "{:?}", script.problems);
        let marks: Vec<_> = script
            .statements
            .iter()
            .map(|s| (s.transaction_control, s.aborts_transaction, s.two_phase))
            .collect();
        assert_eq!(
            marks,
            [
                (true, false, false),
                (false, false, false),
                (false, false, false),
                (false, false, false),
                (true, false, false),
                (false, true, false),
                (false, false, true),
                (false, false, true),
                (false, false, true),
            ]
        );
    }

    #[test]
    fn line_col_counts_characters_not_bytes() {
        assert_eq!(line_col("ab\nçé x", 7), (2, 3));
        let map = LineMap::new("ab\nçé x\n\nz");
        for offset in [0, 2, 3, 7, 8, 9, 10, 11] {
            assert_eq!(
                map.line_col(offset),
                line_col("ab\nçé x\n\nz", offset),
                "{offset}"
            );
        }
    }

    #[test]
    fn line_map_finds_lines_and_columns_both_ways() {
        let text = "ab\r\nçé x\rz🦀y\n\nlast";
        let map = LineMap::new(text);
        let lines: Vec<_> = (1..=6).map(|n| map.line(n)).collect();
        assert_eq!(
            lines,
            [
                Some("ab"),
                Some("çé x"),
                Some("z🦀y"),
                Some(""),
                Some("last"),
                None
            ]
        );
        // Every character's position maps back to its offset.
        for (offset, _) in text.char_indices() {
            let (line, column) = map.line_col(offset);
            let Some(src) = map.line(line) else {
                panic!("no line {line} for offset {offset}");
            };
            let start = src.as_ptr() as usize - text.as_ptr() as usize;
            let Some(at) = map.column_offset(line, column) else {
                panic!("no offset for {line}:{column}");
            };
            if offset < start + src.len() {
                assert_eq!(start + at, offset, "{line}:{column}");
            }
        }
        // Past the end of a line: its end. Inside a character: the character's start.
        assert_eq!(map.column_offset(3, 99), Some("z🦀y".len()));
        assert_eq!(map.line_col(text.find('🦀').map_or(0, |i| i + 2)), (3, 2));
    }

    #[test]
    fn line_map_positions_a_long_non_ascii_line_quickly() {
        // 200,000 lookups on one 4 MB line: quadratic lookups would take minutes.
        let text = "é".repeat(2 << 20);
        let map = LineMap::new(&text);
        let started = std::time::Instant::now();
        for k in 0..100_000 {
            let offset = k * 40;
            assert_eq!(map.line_col(offset), (1, k * 20 + 1));
            assert_eq!(map.column_offset(1, k * 20 + 1), Some(offset));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
