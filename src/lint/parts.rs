//! A large file linted in parts, side by side. Parsing is most of a lint's time and squawk's
//! parser runs on one core; a file made mostly of data statements (a reference-data load of
//! multi-row INSERTs) is cut between statements into parts parsed and checked at once.
//!
//! The cut keeps every judgement the whole file would get. Part 0 keeps every statement but
//! INSERT, UPDATE and DELETE, in order: the schema changes, which squawk's rules and pgdeck's
//! read together (the tables the file creates, the types its earlier statements declare). The
//! other parts share the data statements, which both judge one statement at a time. A part is
//! the statements it keeps, joined in order ([`Joined`]); what it finds is moved back to the
//! file's offsets. A file where the cut could change a judgement is linted whole: one with
//! transaction control (squawk follows BEGIN and COMMIT across statements), with a `BEGIN
//! ATOMIC` body (semicolons inside a statement), with squawk's file-level switch, or one that
//! does not lex cleanly, or one with COPY (its data may follow it in the file).

use std::borrow::Cow;
use std::ops::Range;

use squawk_lexer::{LiteralKind, TokenKind, tokenize};
use squawk_linter::{Linter, Violation};
use squawk_syntax::{Parse, SourceFile};
use text_size::TextSize;

use super::declared::Declared;
use super::facts::{self, Facts};
use super::{LintSettings, Sizes, comments, rules};
use crate::migrate::script::{LineMap, Script, Statement, SyntaxProblem, TxMode, statements_of};

/// What one lint reads off a file, whole or in parts.
pub(super) struct Reading<'a> {
    pub text: &'a str,
    /// The text squawk sees, when it differs (its ignore comments made inert).
    pub unignored: Option<&'a str>,
    pub settings: &'a LintSettings,
    pub sizes: &'a Sizes,
    pub lines: &'a LineMap<'a>,
    /// Whether the comments are needed (acknowledgements, squawk's ignores).
    pub wants_comments: bool,
}

/// The file as read: statements in order, each with its facts.
pub(super) struct Read {
    pub parts: usize,
    pub statements: Vec<Statement>,
    /// One a statement; empty when the file has syntax problems or squawk failed.
    pub facts: Vec<Facts>,
    /// None when squawk's linter failed.
    pub violations: Option<Vec<Violation>>,
    pub problems: Vec<SyntaxProblem>,
    pub mentions_non_transactional: bool,
    pub transactional: bool,
    /// Every comment: its offset and its text (only when asked for).
    pub comments: Vec<(usize, String)>,
}

/// What one part gave.
struct PartRead {
    violations: Option<Vec<Violation>>,
    problems: Vec<SyntaxProblem>,
    mentions_non_transactional: bool,
    facts: Vec<Facts>,
    comments: Vec<(usize, String)>,
}

impl Reading<'_> {
    /// The file read whole, as one part.
    pub fn read_whole(&self, declared: &mut Declared) -> Read {
        let whole: Vec<Range<usize>> = std::iter::once(0..self.text.len()).collect();
        self.read(&[whole], 1, declared)
    }

    /// Reads the parts (the ranges each keeps; one part with the whole file reads it whole):
    /// each parsed, split into statements, checked by squawk's rules and the validation pass,
    /// and its facts taken, on at most `workers` threads at once, each taking the next part when
    /// it is done with one (a part's trees go when it is done, so memory is bounded by the
    /// parts being read, not by the file). Part 0's facts follow and extend `declared`, in
    /// order.
    pub fn read(
        &self,
        parts: &[Vec<Range<usize>>],
        workers: usize,
        declared: &mut Declared,
    ) -> Read {
        let whole = parts.len() == 1;
        let text_of = |keep: &[Range<usize>]| {
            if whole {
                Joined::whole(self.text, self.unignored)
            } else {
                Joined::of(self.text, self.unignored, keep)
            }
        };
        let mut exclude = self.settings.exclude.clone();
        exclude.extend_from_slice(rules::HANDLED_BY_RUNNER);
        if self.settings.runner_lock_timeout {
            exclude.extend_from_slice(rules::TIMEOUT_RULES);
        }
        let squawk = |parse: &Parse<SourceFile>,
                      theirs: &Option<Parse<SourceFile>>,
                      part: &Joined,
                      transactional: bool| {
            let mut linter = Linter::with_rules(&self.settings.include, &exclude);
            linter.settings.assume_in_transaction = transactional;
            let mut violations = match (theirs, &part.unignored) {
                (Some(theirs), Some(text)) => linter.lint(theirs, text),
                _ => linter.lint(parse, &part.text),
            };
            for v in &mut violations {
                let start = usize::from(v.text_range.start());
                let moved = part.in_file(start) - start;
                v.text_range += TextSize::from(moved as u32);
            }
            violations
        };
        // Each part parsed, then squawk's rules and pgdeck's own passes (each a walk of the
        // whole tree) side by side. squawk is told the file runs in one transaction, as nearly
        // every migration does; when the whole file's statements say otherwise, its rules run
        // again once they are known.
        // Only part 0 holds statements that declare columns; the data parts neither read nor
        // change the declarations.
        let schema = std::sync::Mutex::new(declared);
        let mut reads: Vec<(Vec<Statement>, PartRead)> = pooled(workers, parts.len(), |i| {
            let part = text_of(&parts[i]);
            let ours: &str = &part.text;
            let parse = SourceFile::parse(ours);
            let theirs = part.unignored.as_deref().map(SourceFile::parse);
            let (ours_tree, theirs_tree, part) = (&parse, &theirs, &part);
            std::thread::scope(|inner| {
                let violations = inner.spawn(|| squawk(ours_tree, theirs_tree, part, true));
                let file = ours_tree.tree();
                // A joined part's lines are its own; its statements are then placed in the
                // file. (Its syntax problems, if any, are not kept: such a file is read again
                // whole.)
                let joined_lines = (!whole).then(|| LineMap::new(ours));
                let lines = joined_lines.as_ref().unwrap_or(self.lines);
                let mut statements = Script::split(ours, &file, lines);
                if !whole {
                    for s in &mut statements {
                        s.offset = part.in_file(s.offset);
                        (s.line, s.column) = self.lines.line_col(s.offset);
                    }
                }
                let (problems, mentions_non_transactional) = Script::problems_of(ours_tree, lines);
                let facts = if problems.is_empty() {
                    let mut own = Declared::new();
                    let mut schema = (i == 0).then(|| schema.lock().expect("one holder"));
                    let declared: &mut Declared = match &mut schema {
                        Some(d) => d,
                        None => &mut own,
                    };
                    statements_of(&file)
                        .map(|s| {
                            let mut f = facts::facts(&s);
                            facts::with_catalog(&mut f, self.sizes, declared);
                            declared.apply(&s);
                            f
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let comments = if self.wants_comments {
                    comments(&file)
                        .map(|(at, body)| (part.in_file(at), body))
                        .collect()
                } else {
                    Vec::new()
                };
                let read = PartRead {
                    violations: violations.join().ok(),
                    problems,
                    mentions_non_transactional,
                    facts,
                    comments,
                };
                (statements, read)
            })
        });
        let transactional = reads
            .iter()
            .flat_map(|(statements, _)| statements)
            .all(|s| s.mode == TxMode::Transaction);
        // Each part's trees went when it was read (held together, they are most of a lint's
        // memory): the rare file that runs outside a transaction is parsed again.
        if !transactional {
            let again = pooled(workers, parts.len(), |i| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let part = text_of(&parts[i]);
                    let parse = SourceFile::parse(&part.text);
                    let theirs = part.unignored.as_deref().map(SourceFile::parse);
                    squawk(&parse, &theirs, &part, false)
                }))
                .ok()
            });
            for ((_, read), violations) in reads.iter_mut().zip(again) {
                read.violations = violations;
            }
        }

        // The parts merged into the file's order.
        let mut read = Read {
            parts: parts.len(),
            statements: Vec::new(),
            facts: Vec::new(),
            violations: Some(Vec::new()),
            problems: Vec::new(),
            mentions_non_transactional: false,
            transactional,
            comments: Vec::new(),
        };
        let complete = reads
            .iter()
            .all(|(_, r)| r.violations.is_some() && r.problems.is_empty());
        let mut statements: Vec<(Statement, Option<Facts>)> = Vec::new();
        for (part_statements, part) in reads {
            let mut facts = part.facts.into_iter();
            statements.extend(part_statements.into_iter().map(|s| (s, facts.next())));
            match (&mut read.violations, part.violations) {
                (Some(all), Some(v)) => all.extend(v),
                (all, _) => *all = None,
            }
            read.problems.extend(part.problems);
            read.mentions_non_transactional |= part.mentions_non_transactional;
            read.comments.extend(part.comments);
        }
        statements.sort_by_key(|(s, _)| s.offset);
        for (s, f) in statements {
            read.statements.push(s);
            if complete {
                read.facts.extend(f);
            }
        }
        if let Some(v) = &mut read.violations {
            v.sort_by_key(|v| v.text_range.start());
        }
        read.problems.sort_by_key(|p| (p.line, p.column));
        read.comments.sort_by_key(|(at, _)| *at);
        read
    }
}

/// `f` of each of `0..jobs`, on at most `workers` threads, each taking the next job in order;
/// the results in job order. A panic in a job is raised again here.
fn pooled<T: Send>(workers: usize, jobs: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: Vec<std::sync::Mutex<Option<T>>> =
        (0..jobs).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.clamp(1, jobs.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= jobs {
                            break;
                        }
                        let out = f(i);
                        *done[i].lock().expect("one writer") = Some(out);
                    }
                })
            })
            .collect();
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
    done.into_iter()
        .map(|d| d.into_inner().expect("one writer").expect("every job ran"))
        .collect()
}

/// Below this a file is linted whole: cutting it saves less than it costs.
const MIN_BYTES: usize = 256 << 10;

/// About the most data one part holds: a part's parse takes about ten times its text at its
/// peak, and `workers` parts are read at once.
const PART_BYTES: usize = 512 << 10;

/// Statements, by their first word, that keep a file whole: those that open, end or mark a
/// transaction, and COPY (its data may follow it in the file, which is not SQL).
const WHOLE_ONLY: [&str; 10] = [
    "copy",
    "begin",
    "start",
    "commit",
    "end",
    "rollback",
    "abort",
    "savepoint",
    "release",
    "prepare",
];

/// The ranges each part keeps, or None when the file is best linted whole. Part 0 keeps the
/// schema statements (and whatever follows the last statement); parts 1.. share the data
/// statements, contiguous runs of about equal size: `workers` of them, or more when that would
/// make a part larger than [`PART_BYTES`].
pub(super) fn cut(text: &str, workers: usize) -> Option<Vec<Vec<Range<usize>>>> {
    if text.len() < MIN_BYTES
        || workers < 2
        || text.contains("squawk-disable-assume-in-transaction")
    {
        return None;
    }
    let mut schema: Vec<Range<usize>> = Vec::new();
    let mut data: Vec<Range<usize>> = Vec::new();
    let (mut at, mut start, mut depth) = (0usize, 0usize, 0i64);
    let mut first: Option<&str> = None;
    for token in tokenize(text) {
        let end = at + token.len as usize;
        let word = &text[at..end];
        match token.kind {
            TokenKind::Whitespace | TokenKind::LineComment => {}
            TokenKind::BlockComment { terminated: false }
            | TokenKind::QuotedIdent {
                terminated: false, ..
            }
            | TokenKind::Unknown => return None,
            TokenKind::Literal { kind } if !terminated(kind) => return None,
            TokenKind::BlockComment { .. } => {}
            TokenKind::OpenParen | TokenKind::OpenBracket => depth += 1,
            TokenKind::CloseParen | TokenKind::CloseBracket => depth -= 1,
            TokenKind::Ident if word.eq_ignore_ascii_case("atomic") => return None,
            TokenKind::Semi if depth == 0 => {
                let range = start..end;
                match first.take() {
                    Some(w) if is_data(w) => data.push(range),
                    Some(w) if whole_only(w) => return None,
                    _ => schema.push(range),
                }
                start = end;
                at = end;
                continue;
            }
            _ => {}
        }
        if first.is_none()
            && !matches!(
                token.kind,
                TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment { .. }
            )
        {
            first = Some(word);
        }
        at = end;
    }
    if depth != 0 {
        return None;
    }
    match first {
        Some(w) if whole_only(w) => {
            return None;
        }
        // A last statement without its semicolon, or trivia after the last one.
        _ if start < text.len() => schema.push(start..text.len()),
        _ => {}
    }
    let data_bytes: usize = data.iter().map(|r| r.len()).sum();
    if data_bytes * 4 < text.len() {
        {
            return None;
        }
    }
    let mut parts = vec![schema];
    let count = workers.max(data_bytes.div_ceil(PART_BYTES));
    let share = data_bytes.div_ceil(count);
    let mut part: Vec<Range<usize>> = Vec::new();
    let mut taken = 0;
    for range in data {
        taken += range.len();
        part.push(range);
        if taken >= share * parts.len() && parts.len() < count {
            parts.push(std::mem::take(&mut part));
        }
    }
    if !part.is_empty() {
        parts.push(part);
    }
    Some(parts)
}

fn terminated(kind: LiteralKind) -> bool {
    match kind {
        LiteralKind::Str { terminated }
        | LiteralKind::NationalStr { terminated }
        | LiteralKind::ByteStr { terminated }
        | LiteralKind::BitStr { terminated }
        | LiteralKind::EscStr { terminated }
        | LiteralKind::UnicodeEscStr { terminated }
        | LiteralKind::DollarQuotedString { terminated } => terminated,
        _ => true,
    }
}

fn whole_only(word: &str) -> bool {
    WHOLE_ONLY.iter().any(|w| word.eq_ignore_ascii_case(w))
}

fn is_data(word: &str) -> bool {
    ["insert", "update", "delete"]
        .iter()
        .any(|d| word.eq_ignore_ascii_case(d))
}

/// The text one part parses: the ranges it keeps, joined in order (each ends with its
/// statement's semicolon, so the join is statements one after another), and where each range
/// came from. Ranges start and end between statements, so they cut no character.
struct Joined<'a> {
    text: Cow<'a, str>,
    /// The same ranges of the text squawk sees, when it differs (its ignore comments inert).
    unignored: Option<Cow<'a, str>>,
    /// For each range: where it starts in `text`, and in the file.
    starts: Vec<(usize, usize)>,
}

impl<'a> Joined<'a> {
    /// The whole file, as it is.
    fn whole(text: &'a str, unignored: Option<&'a str>) -> Self {
        Joined {
            text: text.into(),
            unignored: unignored.map(Into::into),
            starts: vec![(0, 0)],
        }
    }

    fn of(text: &str, unignored: Option<&str>, keep: &[Range<usize>]) -> Self {
        let join = |text: &str| {
            let mut out = String::with_capacity(keep.iter().map(|r| r.len()).sum());
            for r in keep {
                out.push_str(&text[r.clone()]);
            }
            out
        };
        let mut starts = Vec::with_capacity(keep.len());
        let mut at = 0;
        for r in keep {
            starts.push((at, r.start));
            at += r.len();
        }
        Joined {
            text: join(text).into(),
            unignored: unignored.map(|u| join(u).into()),
            starts,
        }
    }

    /// An offset of the part's text, as an offset of the file.
    fn in_file(&self, at: usize) -> usize {
        let i = self
            .starts
            .partition_point(|&(ours, _)| ours <= at)
            .saturating_sub(1);
        let (ours, file) = self.starts[i];
        file + (at - ours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(prefix: &str, row: &str, suffix: &str) -> String {
        let mut sql = prefix.to_owned();
        while sql.len() < MIN_BYTES + 1000 {
            sql.push_str(row);
        }
        sql.push_str(suffix);
        sql
    }

    #[test]
    fn a_data_load_is_cut_between_statements_into_schema_and_data_parts() {
        let sql = big(
            "CREATE TABLE \"T\" (id int);\n",
            "INSERT INTO \"T\" VALUES (1), ('a;b'), ($$;$$); -- ;\n",
            "CREATE INDEX i ON \"T\" (id);\n",
        );
        let parts = cut(&sql, 2).expect("cut");
        assert_eq!(parts.len(), 3);
        // Every byte is in exactly one part, in order within each part.
        let mut all: Vec<Range<usize>> = parts.iter().flatten().cloned().collect();
        all.sort_by_key(|r| r.start);
        assert_eq!(all[0].start, 0);
        assert!(all.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(all.last().unwrap().end, sql.len());
        // Part 0 holds the schema statements.
        let schema = Joined::of(&sql, None, &parts[0]);
        assert!(schema.text.contains("CREATE TABLE") && schema.text.contains("CREATE INDEX"));
        assert!(!schema.text.contains("INSERT"));
        let index = schema.text.find("CREATE INDEX").expect("index");
        assert_eq!(schema.in_file(index), sql.find("CREATE INDEX").unwrap());
        for p in &parts[1..] {
            let data = Joined::of(&sql, None, p);
            assert!(data.text.contains("INSERT") && !data.text.contains("CREATE"));
            // Each offset of the part is the file's same byte.
            for at in (0..data.text.len()).step_by(97) {
                assert_eq!(
                    data.text.as_bytes()[at],
                    sql.as_bytes()[data.in_file(at)],
                    "{at}"
                );
            }
        }
    }

    #[test]
    fn a_large_load_is_cut_into_parts_of_bounded_size() {
        let row = "INSERT INTO t VALUES (1, 'a row of reference data');\n";
        let mut sql = String::new();
        while sql.len() < 5 * PART_BYTES / 2 {
            sql.push_str(row);
        }
        let parts = cut(&sql, 2).expect("cut");
        // Three data parts, not two (one a worker): each about PART_BYTES at most.
        assert_eq!(parts.len(), 4);
        for p in &parts[1..] {
            let bytes: usize = p.iter().map(|r| r.len()).sum();
            assert!(bytes <= PART_BYTES + row.len(), "{bytes}");
        }
    }

    #[test]
    fn pooled_jobs_come_back_in_order_on_fewer_threads() {
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        let out = pooled(3, 20, |i| {
            threads.lock().unwrap().insert(std::thread::current().id());
            i * 2
        });
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert!(threads.into_inner().unwrap().len() <= 3);
    }

    #[test]
    fn files_whose_cut_could_change_a_judgement_are_linted_whole() {
        let row = "INSERT INTO t VALUES (1);\n";
        assert!(cut(&big("", row, ""), 2).is_some());
        assert!(cut(&big("", row, ""), 1).is_none(), "one worker");
        assert!(cut(row, 2).is_none(), "small");
        assert!(cut(&big("BEGIN;\n", row, "COMMIT;\n"), 2).is_none());
        assert!(cut(&big("COPY t FROM STDIN;\n1\n\\.\n", row, ""), 2).is_none());
        assert!(
            cut(&big("", row, "end"), 2).is_none(),
            "END without semicolon"
        );
        assert!(
            cut(
                &big(
                    "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END;\n",
                    row,
                    ""
                ),
                2
            )
            .is_none()
        );
        assert!(
            cut(
                &big("-- squawk-disable-assume-in-transaction\n", row, ""),
                2
            )
            .is_none()
        );
        assert!(cut(&big("", row, "INSERT INTO t VALUES ('open"), 2).is_none());
        assert!(cut(&big("", row, "/* open"), 2).is_none());
        // Mostly schema: not worth cutting.
        assert!(cut(&big("", "CREATE INDEX i ON t (a);\n", row), 2).is_none());
    }
}
