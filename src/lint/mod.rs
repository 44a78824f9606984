//! Safety lint: squawk-linter's rules, weighed by the runbook (SAFE / NEEDS CARE / DANGEROUS),
//! with the lock each statement takes, whether it rewrites the table, the live size of what it
//! touches, and an expand / contract recipe for every dangerous change. Executes no SQL of the
//! migration; it only reads the catalog.

pub mod declared;
pub mod facts;
pub mod recipe;
pub mod rules;

use serde::Serialize;

use crate::units::{human_bytes, human_count};

/// The runbook's verdict on a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Safe,
    #[serde(rename = "needs_care")]
    Care,
    Dangerous,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Safe => "SAFE",
            Severity::Care => "NEEDS CARE",
            Severity::Dangerous => "DANGEROUS",
        }
    }
}

pub mod catalog;
mod parts;
pub mod plan;
pub mod report;

use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};

use declared::Declared;
use parts::Reading;

use squawk_linter::Rule;
use squawk_syntax::{SourceFile, SyntaxKind, ast::AstNode};

use crate::migrate::observe::Observation;
use crate::migrate::script::{LineMap, Script, SyntaxProblem, TxMode, statements_of};
use facts::{LockMode, Rewrite};
use rules::Category;

/// What the linter checks and how it weighs sizes. Built from an environment's `[lint]` table.
#[derive(Debug, Clone)]
pub struct LintSettings {
    /// Squawk rules to add to (or remove from) its defaults.
    pub include: Vec<Rule>,
    pub exclude: Vec<Rule>,
    /// Whether the deploy runner sets `lock_timeout` itself (then squawk's timeout rules are off).
    pub runner_lock_timeout: bool,
    /// A table at least this big (estimated rows or total bytes) is large: blocking findings on
    /// it become DANGEROUS.
    pub large_rows: i64,
    pub large_bytes: i64,
}

impl Default for LintSettings {
    fn default() -> Self {
        LintSettings {
            include: Vec::new(),
            exclude: Vec::new(),
            runner_lock_timeout: true,
            large_rows: 250_000,
            large_bytes: 1 << 30,
        }
    }
}

/// Below these a table is small: blocking findings on it are lowered to NEEDS CARE.
const SMALL_ROWS: i64 = 10_000;
const SMALL_BYTES: i64 = 64 << 20;
/// With no row estimate (never analyzed), only a table this small counts as small.
const TINY_BYTES: i64 = 1 << 20;

/// A table's size from the live catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSize {
    /// As written in the SQL.
    pub table: String,
    /// `reltuples`; None when the table was never analyzed.
    pub rows: Option<i64>,
    /// Total size with indexes and TOAST.
    pub bytes: i64,
    /// Each column's type as the catalog prints it (`format_type`), by name: what a type change
    /// starts from.
    #[serde(skip)]
    pub columns: BTreeMap<String, String>,
    /// Columns a validated `CHECK (column IS NOT NULL)` proves: SET NOT NULL on them scans
    /// nothing.
    #[serde(skip)]
    pub not_null_checks: Vec<String>,
}

impl TableSize {
    fn is_large(&self, s: &LintSettings) -> bool {
        self.rows.is_some_and(|r| r >= s.large_rows) || self.bytes >= s.large_bytes
    }

    fn is_small(&self) -> bool {
        match self.rows {
            Some(r) => r < SMALL_ROWS && self.bytes < SMALL_BYTES,
            None => self.bytes < TINY_BYTES,
        }
    }

    /// "~1.2M rows, 48 MB"
    pub fn describe(&self) -> String {
        let rows = match self.rows {
            Some(r) => format!("~{} rows", human_count(r)),
            None => "rows unknown (never analyzed)".into(),
        };
        format!("{rows}, {}", human_bytes(self.bytes))
    }
}

/// What the live catalog says of the tables a migration touches (by name as written), and the
/// volatility of the functions it might call (`i`, `s`, `v` by lower-case name).
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    tables: HashMap<String, TableSize>,
    volatility: HashMap<String, char>,
    /// `pg_cast`'s binary-coercible casts, source and target type as `format_type` prints them.
    binary_casts: Vec<(String, String)>,
}

impl Sizes {
    pub fn new() -> Sizes {
        Sizes::default()
    }

    pub fn get(&self, table: &str) -> Option<&TableSize> {
        self.tables.get(table)
    }

    pub fn insert(&mut self, table: String, size: TableSize) {
        self.tables.insert(table, size);
    }

    /// How volatile the function `name` is, when the catalog said; an overloaded name counts
    /// as its most volatile form.
    pub fn volatility(&self, name: &str) -> Option<char> {
        self.volatility.get(&name.to_ascii_lowercase()).copied()
    }

    pub fn binary_casts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.binary_casts
            .iter()
            .map(|(s, t)| (s.as_str(), t.as_str()))
    }

    pub fn add_binary_cast(&mut self, source: String, target: String) {
        self.binary_casts.push((source, target));
    }

    pub fn set_volatility(&mut self, name: &str, volatility: char) {
        let e = self
            .volatility
            .entry(name.to_ascii_lowercase())
            .or_insert(volatility);
        // 'v' > 's' > 'i', in these letters' order.
        if volatility > *e {
            *e = volatility;
        }
    }
}

impl FromIterator<(String, TableSize)> for Sizes {
    fn from_iter<I: IntoIterator<Item = (String, TableSize)>>(iter: I) -> Sizes {
        Sizes {
            tables: iter.into_iter().collect(),
            ..Sizes::default()
        }
    }
}

/// One finding, positioned in the file.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// A squawk rule name (`ban-drop-column`) or pgdeck's own (`drop-column`).
    pub rule: String,
    pub severity: Severity,
    pub category: Category,
    pub message: String,
    pub help: Option<String>,
    /// 1-based, in characters.
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    /// Index into the file's statements (0-based here; 1-based in JSON, as `index` is there).
    #[serde(serialize_with = "one_based")]
    pub statement: Option<usize>,
    /// Why the severity differs from the rule's usual one (table size, new table).
    pub adjustment: Option<String>,
    /// The reason given to acknowledge it, if acknowledged.
    pub acknowledged: Option<String>,
    /// The expand / dual-write / contract steps, for dangerous changes.
    pub recipe: Vec<String>,
    /// Other rules that flagged the same problem on the same statement (squawk's and pgdeck's
    /// names for it, or two of squawk's): one finding, every name it answers to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

/// JSON counts statements from 1, like lines and each statement's `index`.
fn one_based<S: serde::Serializer>(index: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&index.map(|i| i + 1), s)
}

impl Finding {
    /// pgdeck's own finding on statement `i`, spanning the whole statement.
    fn on_statement(
        rule: &str,
        severity: Severity,
        category: Category,
        message: String,
        (i, s): (usize, &crate::migrate::script::Statement),
        lines: &LineMap<'_>,
    ) -> Finding {
        let (end_line, end_column) = lines.line_col(s.offset + s.text.len());
        Finding {
            rule: rule.to_owned(),
            severity,
            category,
            message,
            help: None,
            line: s.line,
            column: s.column,
            end_line,
            end_column,
            statement: Some(i),
            adjustment: None,
            acknowledged: None,
            recipe: Vec::new(),
            also: Vec::new(),
        }
    }

    /// A finding about the file as a whole, placed at its start.
    fn whole_file(
        rule: &str,
        severity: Severity,
        category: Category,
        message: String,
        help: &str,
    ) -> Finding {
        Finding {
            rule: rule.to_owned(),
            severity,
            category,
            message,
            help: Some(help.to_owned()),
            line: 1,
            column: 1,
            end_line: 1,
            end_column: 1,
            statement: None,
            adjustment: None,
            acknowledged: None,
            recipe: Vec::new(),
            also: Vec::new(),
        }
    }
}

/// One statement with what it will do.
#[derive(Debug, Clone, Serialize)]
pub struct StatementLint {
    pub index: usize,
    pub line: usize,
    pub column: usize,
    pub preview: String,
    pub kind: String,
    pub transaction: TxMode,
    pub lock: Option<LockMode>,
    pub rewrite: Rewrite,
    pub tables: Vec<TableSize>,
    /// The worst severity among its findings (SAFE when it has none).
    pub class: Severity,
    /// What a rehearsal saw it do (`plan --rehearse`), and where that contradicts `lock` and
    /// `rewrite`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
}

/// A statement's observed facts beside the static claim.
#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    pub facts: Observation,
    /// In words: "ACCESS EXCLUSIVE on \"User\", rewrote \"User\"".
    pub said: String,
    /// Where the static claim is wrong, in words; empty when the two agree.
    pub disagreements: Vec<String>,
}

impl Observed {
    /// The rehearsal's facts weighed against what the statement was claimed to do.
    pub fn of(facts: &Observation, lock: Option<LockMode>, rewrite: Rewrite) -> Observed {
        let mut disagreements = Vec::new();
        let rewrote = facts.rewrote_a_table();
        match (rewrite, rewrote) {
            (Rewrite::Yes, false) => disagreements.push(format!(
                "claimed \"{}\", but no table was rewritten",
                rewrite.name()
            )),
            (Rewrite::No | Rewrite::Scan, true) => disagreements.push(format!(
                    "claimed \"{}\", but it rewrote {}",
                    rewrite.name(),
                    facts
                        .rewrites
                        .iter()
                        .filter(|r| !r.emptied
                            && r.kind != crate::migrate::observe::RelationKind::Index)
                        .map(|r| r.relation.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            _ => {}
        }
        // Outside a transaction the locks are gone when it returns; a statement whose locks a
        // statement before it already took shows none of its own: no claim to weigh then.
        let strongest = facts
            .locks
            .as_ref()
            .and_then(|l| l.iter().map(|l| l.mode).max());
        if let Some(seen) = strongest
            && lock != Some(seen)
        {
            disagreements.push(format!(
                "claimed {}, but it took {}",
                lock.map(|l| l.name()).unwrap_or("no lock"),
                seen.name()
            ));
        }
        Observed {
            said: facts.said(),
            facts: facts.clone(),
            disagreements,
        }
    }
}

/// The lint of one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileLint {
    pub path: String,
    pub statements: Vec<StatementLint>,
    pub findings: Vec<Finding>,
    pub syntax_errors: Vec<SyntaxProblem>,
}

impl FileLint {
    /// The worst severity among findings nobody acknowledged.
    pub fn worst_unacknowledged(&self) -> Option<Severity> {
        self.findings
            .iter()
            .filter(|f| f.acknowledged.is_none())
            .map(|f| f.severity)
            .max()
    }

    /// Acknowledges every finding of `rule` (from `--allow RULE --reason TEXT`).
    pub fn acknowledge(&mut self, rule: &str, reason: &str) {
        for f in self.findings.iter_mut().filter(|f| {
            (rules::allows(rule, &f.rule) || f.also.iter().any(|a| rules::allows(rule, a)))
                && f.acknowledged.is_none()
        }) {
            f.acknowledged = Some(reason.to_owned());
        }
    }
}

/// An acknowledgement written in the file: `-- pgdeck:allow <rule> <reason>` applies to the
/// statement that follows it.
const ALLOW: &str = "pgdeck:allow";

/// Tables a script touches that existed before it (for the catalog lookup).
pub fn touched_tables(sql: &str) -> Vec<String> {
    let parse = SourceFile::parse(sql);
    let mut out: Vec<String> = Vec::new();
    let mut created = HashSet::new();
    for stmt in statements_of(&parse.tree()) {
        let f = facts::facts(&stmt);
        for t in f.tables {
            if !created.contains(&ident_key(&t)) && !out.contains(&t) {
                out.push(t);
            }
        }
        created.extend(f.creates.iter().map(|c| ident_key(c)));
    }
    out
}

/// The data a script destroys: the columns and tables it drops, as written. What a forward
/// rollback cannot bring back is read from here.
pub fn data_losses(sql: &str) -> Vec<facts::Change> {
    let parse = SourceFile::parse(sql);
    statements_of(&parse.tree())
        .flat_map(|stmt| facts::facts(&stmt).changes)
        .filter(|c| {
            matches!(
                c,
                facts::Change::DropColumn { .. } | facts::Change::DropTable { .. }
            )
        })
        .collect()
}

/// Files above this size are not linted (a 32 MB migration is a data load; it takes seconds to
/// parse and its findings would be unreadable). They get one DANGEROUS finding instead, so a
/// protected deploy needs an explicit acknowledgement rather than passing unchecked.
pub const MAX_LINT_BYTES: usize = 32 << 20;

/// Lints one script. `sizes` holds live table sizes when a database was reachable.
pub fn lint_sql(path: &str, sql: &str, settings: &LintSettings, sizes: &Sizes) -> FileLint {
    lint_sql_in_order(path, sql, settings, sizes, &mut Declared::new())
}

/// Lints one file of a folder, in the folder's order: a type change on a column the live
/// catalog does not know is judged from the type `declared` (the earlier files) gave it, and
/// the file's own statements are then added to `declared`.
pub fn lint_sql_in_order(
    path: &str,
    sql: &str,
    settings: &LintSettings,
    sizes: &Sizes,
    declared: &mut Declared,
) -> FileLint {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    lint_with_workers(path, sql, settings, sizes, declared, workers)
}

/// [`lint_sql_in_order`] on at most `workers` threads' worth of parts (1: the file whole).
fn lint_with_workers(
    path: &str,
    sql: &str,
    settings: &LintSettings,
    sizes: &Sizes,
    declared: &mut Declared,
    workers: usize,
) -> FileLint {
    let text = sql.strip_prefix('\u{feff}').unwrap_or(sql);
    if text.len() > MAX_LINT_BYTES {
        return FileLint {
            path: path.to_owned(),
            statements: Vec::new(),
            findings: vec![Finding {
                recipe: recipe::for_rule("too-large-to-lint", &[], ""),
                ..Finding::whole_file(
                    "too-large-to-lint",
                    Severity::Dangerous,
                    Category::Breaking,
                    format!(
                        "the file is {}, above the {} pgdeck lints; it was not checked",
                        human_bytes(text.len() as i64),
                        human_bytes(MAX_LINT_BYTES as i64)
                    ),
                    "split schema changes from data loads (load large data with COPY), or acknowledge it with a reason: `-- pgdeck:allow too-large-to-lint <reason>` at the top of the file",
                )
            }],
            syntax_errors: Vec::new(),
        };
    }
    let lines = LineMap::new(text);
    // squawk sees the file with its `-- squawk-ignore` comments made inert (same length, so every
    // offset holds): pgdeck applies them itself once it knows each finding's severity.
    let unignored = text
        .contains("squawk-ignore")
        .then(|| text.replace("squawk-ignore", "squawk_ignore"));
    let wants_comments = text.contains(ALLOW) || text.contains("squawk-ignore");
    let reading = Reading {
        text,
        unignored: unignored.as_deref(),
        settings,
        sizes,
        lines: &lines,
        wants_comments,
    };
    let before = declared.clone();
    let mut read = match parts::cut(text, workers) {
        Some(cut) => reading.read(&cut, workers, declared),
        None => reading.read_whole(declared),
    };
    if read.parts > 1 && (read.violations.is_none() || !read.problems.is_empty()) {
        // The whole file's parse words a syntax problem as it should be worded.
        *declared = before.clone();
        read = reading.read_whole(declared);
    }
    if read.violations.is_none() || !read.problems.is_empty() {
        *declared = before;
    }
    let transactional = read.transactional;
    let script = Script {
        statements: read.statements,
        problems: read.problems,
        mentions_non_transactional: read.mentions_non_transactional,
    };
    let mut out = FileLint {
        path: path.to_owned(),
        statements: Vec::new(),
        findings: Vec::new(),
        syntax_errors: script.problems.clone(),
    };
    let Some(violations) = read.violations else {
        out.syntax_errors.push(SyntaxProblem {
            line: 1,
            column: 1,
            message: "squawk's linter failed on this file, so it cannot be checked".into(),
        });
        return out;
    };
    if !out.syntax_errors.is_empty() {
        // Findings on a tree the parser did not understand would be guesses.
        return out;
    }
    let mut all_facts = read.facts;
    let not_null = not_null_path(&mut all_facts, transactional, sizes);

    // The statement a violation starts in: the last one starting at or before it.
    let statement_of = |offset: usize| {
        script
            .statements
            .partition_point(|s| s.offset <= offset)
            .checked_sub(1)
            .or((!script.statements.is_empty()).then_some(0))
    };
    for v in violations {
        let start = usize::from(v.text_range.start());
        let end = usize::from(v.text_range.end());
        let (severity, category) = rules::weigh(v.code);
        let (line, column) = lines.line_col(start);
        let (end_line, end_column) = lines.line_col(end);
        out.findings.push(Finding {
            rule: v.code.to_string(),
            severity,
            category,
            message: v.message,
            help: v.help,
            line,
            column,
            end_line,
            end_column,
            statement: statement_of(start),
            adjustment: None,
            acknowledged: None,
            recipe: Vec::new(),
            also: Vec::new(),
        });
    }

    let mut created: HashSet<String> = HashSet::new();
    let mut new_before: Vec<bool> = Vec::new();
    for f in &all_facts {
        new_before
            .push(!f.tables.is_empty() && f.tables.iter().all(|t| created.contains(&ident_key(t))));
        created.extend(f.creates.iter().map(|c| ident_key(c)));
    }
    let ignores = squawk_ignores(&read.comments, text, &script);
    // pgdeck's own classification: it raises squawk's findings to the runbook's class where
    // squawk covers the change, and speaks for itself where squawk has no rule.
    let mut by_statement: Vec<Vec<usize>> = vec![Vec::new(); script.statements.len()];
    for (n, x) in out.findings.iter().enumerate() {
        if let Some(i) = x.statement {
            by_statement[i].push(n);
        }
    }
    for (i, (s, f)) in script.statements.iter().zip(&all_facts).enumerate() {
        if f.class == Severity::Safe {
            continue;
        }
        let covering = rules::covered_by(f.rule);
        let mut reported = false;
        for &n in &by_statement[i] {
            let x = &mut out.findings[n];
            if covering.iter().any(|r| r.to_string() == x.rule) {
                match &f.settled {
                    // The catalog or the earlier migrations settle what squawk's rule fears.
                    Some(why) => {
                        x.severity = f.class;
                        x.category = f.category;
                        x.adjustment = Some(why.clone());
                    }
                    None => x.severity = x.severity.max(f.class),
                }
                // squawk and pgdeck agree: one finding, both names.
                if !x.also.iter().any(|a| a == f.rule) {
                    x.also.push(f.rule.to_owned());
                }
                reported = true;
            }
        }
        let excluded = covering.iter().any(|r| settings.exclude.contains(r));
        // Like squawk, say nothing of a change to a table this migration created: it is new.
        if reported || excluded || new_before[i] {
            continue;
        }
        out.findings.push(Finding::on_statement(
            f.rule,
            f.class,
            f.category,
            format!("{}: {}", f.kind, f.reason),
            (i, s),
            &lines,
        ));
    }
    if script.statements.is_empty() {
        out.findings.push(Finding::whole_file(
            "empty-migration",
            Severity::Care,
            Category::Breaking,
            "the file has no SQL statements: deploying it changes nothing".into(),
            "fine for a baseline; otherwise write the migration or delete the folder",
        ));
    }

    // A table renamed with a view left under its old name in the same migration breaks
    // nothing: old code reads and writes through the view.
    for (i, f) in all_facts.iter().enumerate() {
        let renamed: Vec<&str> = f
            .changes
            .iter()
            .filter_map(|c| match c {
                facts::Change::RenameTable { from, .. } => Some(from.as_str()),
                _ => None,
            })
            .collect();
        let covered = renamed.iter().all(|from| {
            all_facts[i + 1..]
                .iter()
                .any(|later| later.views.iter().any(|v| ident_key(v) == ident_key(from)))
        });
        if renamed.is_empty() || !covered {
            continue;
        }
        for x in out.findings.iter_mut().filter(|x| x.statement == Some(i)) {
            if rules::same_problem(&x.rule, "rename-table") && x.severity == Severity::Dangerous {
                x.severity = Severity::Care;
                x.adjustment = Some(
                    "lowered: a view under the old name, created in this migration, keeps old code working".into(),
                );
            }
        }
    }

    // The CHECK (col IS NOT NULL) path: a SET NOT NULL it proves scans nothing; a VALIDATE in
    // the migration that added the check scans under the ADD's lock.
    for x in &mut out.findings {
        if x.statement.is_some_and(|i| not_null.scan_free.contains(&i))
            && x.severity == Severity::Dangerous
            && rules::same_problem(&x.rule, "set-not-null")
        {
            x.severity = Severity::Care;
            x.adjustment = Some(
                "lowered: a validated CHECK (... IS NOT NULL) proves it, so SET NOT NULL scans nothing (a brief ACCESS EXCLUSIVE)".into(),
            );
        }
    }
    for &i in &not_null.validated_under_lock {
        let s = &script.statements[i];
        out.findings.push(Finding {
            recipe: vec![format!(
                "Migration 2: validate in a migration of its own, without blocking writes (SHARE UPDATE EXCLUSIVE): {}",
                s.text.trim()
            )],
            ..Finding::on_statement(
                "validate-in-same-migration",
                Severity::Dangerous,
                Category::Blocking,
                "VALIDATE CONSTRAINT in the migration that added the constraint: its scan runs while the ADD's ACCESS EXCLUSIVE is still held (until the commit), blocking reads and writes".into(),
                (i, s),
                &lines,
            )
        });
    }

    // Context: new tables, live sizes, recipes, acknowledgements.
    let allows = allows_in(&read.comments, text, &script);
    let mut extra = Vec::new();
    for finding in &mut out.findings {
        let Some(i) = finding.statement else { continue };
        let f = &all_facts[i];
        if new_before[i] && finding.category != Category::Style {
            finding.severity = Severity::Safe;
            finding.adjustment =
                Some("the table is created earlier in this migration: it is new and empty".into());
        } else if finding.category == Category::Blocking {
            let known: Vec<&TableSize> = f.tables.iter().filter_map(|t| sizes.get(t)).collect();
            if let Some(big) = known.iter().find(|t| t.is_large(settings)) {
                if finding.severity < Severity::Dangerous {
                    finding.severity = Severity::Dangerous;
                    finding.adjustment = Some(format!(
                        "raised: {} is large ({})",
                        big.table,
                        big.describe()
                    ));
                }
            } else if !known.is_empty()
                && known.len() == f.tables.len()
                && known.iter().all(|t| t.is_small())
                && finding.severity == Severity::Dangerous
            {
                finding.severity = Severity::Care;
                finding.adjustment = Some(format!(
                    "lowered: {} is small ({})",
                    known[0].table,
                    known[0].describe()
                ));
            }
        }
        if finding.severity == Severity::Dangerous && finding.recipe.is_empty() {
            finding.recipe = f.changes.iter().flat_map(recipe::recipe).collect();
            if finding.recipe.is_empty() {
                finding.recipe =
                    recipe::for_rule(&finding.rule, &f.tables, &script.statements[i].text);
            }
        }
        let allowed = allows
            .iter()
            .find(|((at, rule), _)| *at == i && rules::allows(rule, &finding.rule))
            .map(|(_, v)| v);
        match allowed {
            Some(Ok(reason)) => finding.acknowledged = Some(reason.clone()),
            Some(Err(())) => extra.push(Finding {
                rule: "pgdeck-allow-without-reason".into(),
                severity: Severity::Care,
                category: Category::Style,
                message: format!(
                    "`-- {ALLOW} {}` has no reason, so it acknowledges nothing",
                    finding.rule
                ),
                help: Some(format!(
                    "write why it is safe: -- {ALLOW} {} <reason>",
                    finding.rule
                )),
                ..finding.clone()
            }),
            None => {}
        }
    }
    out.findings.extend(extra);
    // `-- squawk-ignore` silences what needs care; a DANGEROUS finding stays until a person
    // acknowledges it with a reason, which a deploy journals.
    out.findings.retain_mut(|x| {
        if !ignores.iter().any(|ig| ig.covers(x)) {
            return true;
        }
        if x.acknowledged.is_some() {
            return true;
        }
        if x.severity < Severity::Dangerous {
            return false;
        }
        let kept = format!(
            "kept: `-- squawk-ignore` does not silence a DANGEROUS finding; acknowledge it with `-- {ALLOW} {} <reason>`",
            x.rule
        );
        x.adjustment = Some(match x.adjustment.take() {
            Some(before) => format!("{before}; {kept}"),
            None => kept,
        });
        true
    });
    merge_duplicates(&mut out.findings);
    out.findings
        .sort_by_key(|f| (f.line, f.column, std::cmp::Reverse(f.severity)));

    let mut classes = vec![Severity::Safe; script.statements.len()];
    for x in &out.findings {
        if let Some(i) = x.statement {
            classes[i] = classes[i].max(x.severity);
        }
    }
    for (i, (s, f)) in script.statements.iter().zip(&all_facts).enumerate() {
        let class = classes[i];
        out.statements.push(StatementLint {
            index: i + 1,
            line: s.line,
            column: s.column,
            preview: s.preview(60),
            kind: f.kind.clone(),
            transaction: s.mode,
            lock: f.lock,
            rewrite: f.rewrite,
            tables: f
                .tables
                .iter()
                .filter_map(|t| sizes.get(t).cloned())
                .collect(),
            class,
            observed: None,
        });
    }
    out
}

/// What the CHECK (col IS NOT NULL) path written in one file settles.
#[derive(Default)]
struct NotNullPath {
    /// SET NOT NULL statements a validated check proves: no scan.
    scan_free: Vec<usize>,
    /// VALIDATE statements in the same transaction as the ADD ... NOT VALID they validate.
    validated_under_lock: Vec<usize>,
}

fn not_null_path(all: &mut [facts::Facts], transactional: bool, sizes: &Sizes) -> NotNullPath {
    let mut out = NotNullPath::default();
    let mut added: HashMap<(String, String), String> = HashMap::new();
    // What the live catalog already proves, then what this file adds.
    let mut proven: HashSet<(String, String)> = sizes
        .tables
        .iter()
        .flat_map(|(t, size)| {
            size.not_null_checks
                .iter()
                .map(move |c| (ident_key(t), facts::identifier(c)))
        })
        .collect();
    for (i, f) in all.iter_mut().enumerate() {
        if let Some((table, name, column, valid)) = &f.not_null_check {
            if *valid {
                proven.insert((ident_key(table), column.clone()));
            } else {
                added.insert((ident_key(table), name.clone()), column.clone());
            }
        }
        if let Some((table, name)) = &f.validates
            && let Some(column) = added.get(&(ident_key(table), name.clone()))
        {
            proven.insert((ident_key(table), column.clone()));
            if transactional {
                out.validated_under_lock.push(i);
            }
        }
        let proves = f.changes.iter().any(|c| match c {
            facts::Change::SetNotNull { table, column } => {
                proven.contains(&(ident_key(table), facts::identifier(column)))
            }
            _ => false,
        });
        if proves {
            f.rewrite = Rewrite::No;
            if f.rule == "set-not-null" {
                f.class = Severity::Care;
                f.reason = "a validated CHECK (... IS NOT NULL) proves it: SET NOT NULL scans nothing, under a brief ACCESS EXCLUSIVE";
            }
            f.changes
                .retain(|c| !matches!(c, facts::Change::SetNotNull { .. }));
            out.scan_free.push(i);
        }
    }
    out
}

/// One finding per problem on a statement: findings whose rules name the same problem (squawk's
/// and pgdeck's names, or several of squawk's rules for one change; see
/// [`rules::same_problem`]) become the most severe of them, naming the others in `also`. It
/// stays acknowledged only when each of them was.
fn merge_duplicates(findings: &mut Vec<Finding>) {
    let mut kept: Vec<Finding> = Vec::with_capacity(findings.len());
    // Twins share a statement: a finding is compared with the kept ones of its statement, in
    // the order they were kept, not with every one (quadratic on a file of thousands).
    let mut of_statement: HashMap<usize, Vec<usize>> = HashMap::new();
    for f in findings.drain(..) {
        let twin = f
            .statement
            .and_then(|s| of_statement.get(&s))
            .and_then(|ids| {
                ids.iter().copied().find(|&i| {
                    let k = &kept[i];
                    rules::same_problem(&k.rule, &f.rule)
                        || k.also.iter().any(|a| rules::same_problem(a, &f.rule))
                })
            });
        match twin {
            None => {
                if let Some(s) = f.statement {
                    of_statement.entry(s).or_default().push(kept.len());
                }
                kept.push(f);
            }
            Some(i) => {
                let k = &mut kept[i];
                let acknowledged = k.acknowledged.is_some() && f.acknowledged.is_some();
                let better = f.severity > k.severity
                    || (f.severity == k.severity
                        && rules::is_generic(&k.rule)
                        && !rules::is_generic(&f.rule));
                if better {
                    let mut f = f;
                    f.also.push(std::mem::take(&mut k.rule));
                    f.also.append(&mut k.also);
                    if f.recipe.is_empty() {
                        f.recipe = std::mem::take(&mut k.recipe);
                    }
                    *k = f;
                } else {
                    k.also.push(f.rule);
                    if k.recipe.is_empty() {
                        k.recipe = f.recipe;
                    }
                }
                if !acknowledged {
                    k.acknowledged = None;
                }
                let rule = k.rule.clone();
                let mut seen = Vec::new();
                k.also.retain(|a| {
                    let fresh = *a != rule && !seen.contains(a);
                    seen.push(a.clone());
                    fresh
                });
            }
        }
    }
    *findings = kept;
}

/// `-- pgdeck:allow <rule> <reason>` comments, keyed by the statement that follows each and the
/// rule; `Err` when the reason is missing.
fn allows_in(
    comments: &[(usize, String)],
    text: &str,
    script: &Script,
) -> HashMap<(usize, String), Result<String, ()>> {
    let mut out = HashMap::new();
    if !text.contains(ALLOW) {
        return out;
    }
    for (at, body) in comments {
        let Some(rest) = body.strip_prefix(ALLOW) else {
            continue;
        };
        let mut parts = rest.trim().splitn(2, char::is_whitespace);
        let Some(rule) = parts.next().filter(|r| !r.is_empty()) else {
            continue;
        };
        let reason = parts.next().map(str::trim).filter(|r| !r.is_empty());
        if let Some(i) = next_statement(script, *at) {
            out.insert((i, rule.to_owned()), reason.map(str::to_owned).ok_or(()));
        }
    }
    out
}

/// Every comment of the file: its offset and its text without `--` or `/* */`, trimmed.
fn comments(file: &SourceFile) -> impl Iterator<Item = (usize, String)> {
    file.syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() == SyntaxKind::COMMENT)
        .map(|t| {
            let body = t
                .text()
                .trim_start_matches("--")
                .trim_start_matches("/*")
                .trim_end_matches("*/")
                .trim()
                .to_owned();
            (usize::from(t.text_range().start()), body)
        })
}

/// The statement a comment at `offset` stands before.
fn next_statement(script: &Script, offset: usize) -> Option<usize> {
    script.statements.iter().position(|s| s.offset > offset)
}

/// A `-- squawk-ignore [rules]` (next statement) or `-- squawk-ignore-file [rules]` comment;
/// no rules means all of them. pgdeck applies them, to squawk's findings and its own, once it
/// knows their severity: they silence what needs care, never what is DANGEROUS.
struct SquawkIgnore {
    statement: Option<usize>,
    rules: Vec<String>,
}

impl SquawkIgnore {
    /// Whether it names the finding's rule (squawk's name or pgdeck's) where the finding is.
    fn covers(&self, finding: &Finding) -> bool {
        let here = match (self.statement, finding.statement) {
            (None, _) => true,
            (Some(at), Some(statement)) => at == statement,
            (Some(_), None) => false,
        };
        here && (self.rules.is_empty()
            || self
                .rules
                .iter()
                .any(|r| rules::allows(r, &finding.rule) || rules::allows(&finding.rule, r)))
    }
}

fn squawk_ignores(comments: &[(usize, String)], text: &str, script: &Script) -> Vec<SquawkIgnore> {
    let mut out = Vec::new();
    if !text.contains("squawk-ignore") {
        return out;
    }
    for (at, body) in comments {
        let (rest, file_level) = if let Some(r) = body.strip_prefix("squawk-ignore-file") {
            (r, true)
        } else if let Some(r) = body.strip_prefix("squawk-ignore") {
            (r, false)
        } else {
            continue;
        };
        let rest = rest.split("--").next().unwrap_or_default();
        let rules = rest
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        let statement = if file_level {
            None
        } else {
            match next_statement(script, *at) {
                Some(i) => Some(i),
                None => continue,
            }
        };
        out.push(SquawkIgnore { statement, rules });
    }
    out
}

/// A comparable key for a table name as written: last segment, unquoted, case-folded unless quoted.
fn ident_key(name: &str) -> String {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.extend(c.to_lowercase()),
        }
    }
    parts.push(cur);
    parts.pop().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests;
