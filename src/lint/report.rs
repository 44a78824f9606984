//! A plan and its findings in words, the same in the CLI and the console: each finding with its
//! source line underlined, the statement's lock and rewrite, the recipe, how to acknowledge
//! it; each pending migration's statements with their class, lock and rewrite.

use super::plan::{Plan, Verdict};
use super::{FileLint, Finding, Severity};
use crate::migrate::script::LineMap;
use crate::migrate::{self, MigrationsDir};

/// The human rendering of one file: each finding with its position, a code frame, what the
/// statement does, sizes, adjustments, help, the recipe and any acknowledgement.
pub fn render_file(r: &FileLint, text: &str, notes: bool) -> String {
    let mut out = String::new();
    let shown = || {
        r.findings
            .iter()
            .filter(move |f| notes || f.severity > Severity::Safe)
    };
    if r.syntax_errors.is_empty() && shown().next().is_none() {
        return out;
    }
    // Positions were taken after a byte-order mark, as the linter read the file.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Indexed once for the file: each frame then finds its line without reading the text
    // before it.
    let lines = LineMap::new(text);
    for e in &r.syntax_errors {
        out.push_str(&format!(
            "{}:{}:{}: SYNTAX ERROR: {}\n",
            r.path, e.line, e.column, e.message
        ));
        out.push_str(&frame(&lines, e.line, e.column, e.line, e.column + 1));
    }
    for f in shown() {
        out.push_str(&render_finding(r, f, &lines));
    }
    out
}

fn render_finding(r: &FileLint, f: &Finding, lines: &LineMap<'_>) -> String {
    let label = if f.severity == Severity::Safe {
        "note"
    } else {
        f.severity.label()
    };
    let also = match f.also.is_empty() {
        true => String::new(),
        false => format!(" (also {})", f.also.join(", ")),
    };
    let mut out = format!(
        "{}:{}:{}: {label} {}{also}\n  {}\n",
        r.path, f.line, f.column, f.rule, f.message
    );
    out.push_str(&frame(lines, f.line, f.column, f.end_line, f.end_column));
    if let Some(s) = f.statement.and_then(|i| r.statements.get(i)) {
        let lock = match s.lock {
            Some(l) => format!("lock {}: {}", l.name(), l.blocks()),
            None => "no lock on existing tables".into(),
        };
        let tx = match s.transaction {
            migrate::script::TxMode::Transaction => "in the migration's transaction",
            migrate::script::TxMode::NoTransaction => "outside any transaction",
        };
        out.push_str(&format!(
            "   = {} · {lock} · {} · {tx}\n",
            s.kind,
            s.rewrite.name()
        ));
        for t in &s.tables {
            out.push_str(&format!("   = table {}: {}\n", t.table, t.describe()));
        }
    }
    if let Some(a) = &f.adjustment {
        out.push_str(&format!("   = {a}\n"));
    }
    if let Some(h) = &f.help {
        out.push_str(&format!("   = help: {h}\n"));
    }
    if !f.recipe.is_empty() {
        out.push_str("   = expand / contract instead:\n");
        for (i, step) in f.recipe.iter().enumerate() {
            out.push_str(&format!("       {}. {step}\n", i + 1));
        }
    }
    match &f.acknowledged {
        Some(reason) => out.push_str(&format!("   = acknowledged: {reason}\n")),
        None if f.severity == Severity::Dangerous => out.push_str(&format!(
            "   = to acknowledge: `-- pgdeck:allow {} <reason>` above the statement, or --allow {} --reason <text>\n",
            f.rule, f.rule
        )),
        None => {}
    }
    out.push('\n');
    out
}

/// At most this many characters of a source line are shown, and underlined.
const FRAME_WIDTH: usize = 160;
/// A frame that starts mid-line shows this many characters before the finding.
const FRAME_LEAD: usize = 40;

/// The source line with a caret underline, rustc style. A finding far along a long line (a
/// one-line file) is shown from a little before it, marked `…`, not from the line's start.
fn frame(lines: &LineMap<'_>, line: usize, col: usize, end_line: usize, end_col: usize) -> String {
    let Some(src) = lines.line(line) else {
        return String::new();
    };
    let col = col.max(1);
    let at = lines.column_offset(line, col).unwrap_or(src.len());
    // Only the characters the underline can cover are counted, not the rest of the line.
    let left = src[at..].chars().take(FRAME_WIDTH).count();
    let wanted = if end_line == line {
        end_col.saturating_sub(col)
    } else {
        left
    };
    // At most FRAME_WIDTH, as `left` is.
    let carets = wanted.min(left).max(1);
    let (from, lead, mark) = if col - 1 + carets <= FRAME_WIDTH {
        (0, col - 1, "")
    } else {
        let lead = FRAME_LEAD.min(col - 1);
        let from = lines.column_offset(line, col - lead).unwrap_or(at);
        (from, lead, "…")
    };
    let shown: String = src[from..]
        .chars()
        .take(if mark.is_empty() {
            FRAME_WIDTH
        } else {
            lead + FRAME_WIDTH
        })
        .collect();
    let indent = lead + mark.chars().count();
    let width = line.to_string().len();
    format!(
        "{:width$} |\n{line} | {mark}{shown}\n{:width$} | {}{}\n",
        "",
        "",
        " ".repeat(indent),
        "^".repeat(carets),
    )
}

pub fn render_plan(heading: &str, plan: &Plan, dir: &MigrationsDir) -> String {
    let mut out = format!("{heading}\n");
    if let Some(why) = &plan.sizes_unavailable {
        out.push_str(&format!("live table sizes unavailable: {why}\n"));
    }
    if plan.migrations.is_empty() {
        out.push_str("\nnothing to deploy: no pending migrations\n");
        return out;
    }
    let total = plan.migrations.len();
    for (i, m) in plan.migrations.iter().enumerate() {
        let verdict = match m.verdict {
            Verdict::Ok => "ok".to_owned(),
            Verdict::NeedsAcknowledgement => "NEEDS ACKNOWLEDGEMENT".to_owned(),
            Verdict::Refused => format!("REFUSED: {}", m.refusal.clone().unwrap_or_default()),
        };
        out.push_str(&format!(
            "\n[{}/{total}] {}  ({})  verdict: {verdict}\n",
            i + 1,
            m.name,
            if m.transactional {
                "one transaction"
            } else {
                "no transaction: statement by statement"
            }
        ));
        out.push_str("    #  line  class       lock                    rewrite      statement\n");
        for s in &m.lint.statements {
            out.push_str(&format!(
                "  {:>3} {:>5}  {:<10}  {:<22}  {:<11}  {}\n",
                s.index,
                s.line,
                s.class.label(),
                s.lock.map(|l| l.name()).unwrap_or("-"),
                s.rewrite.name(),
                s.preview
            ));
            for t in &s.tables {
                out.push_str(&format!("{:>54}table {}: {}\n", "", t.table, t.describe()));
            }
            if let Some(o) = &s.observed {
                out.push_str(&format!("{:>54}observed: {}\n", "", o.said));
                for d in &o.disagreements {
                    out.push_str(&format!("{:>54}DISAGREES: {d}\n", ""));
                }
            }
        }
        let text = dir.get(&m.name).map(|l| l.sql()).unwrap_or_default();
        let findings = render_file(&m.lint, text, false);
        if !findings.is_empty() {
            out.push('\n');
            for line in findings.trim_end().lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    let worst = plan.verdict();
    let disagreements = plan.disagreements();
    if disagreements > 0 {
        out.push_str(&format!(
            "\n{disagreements} statement(s) did otherwise on the rehearsal than claimed: trust the observed facts\n"
        ));
    }
    out.push_str(&format!(
        "\n{} pending migration(s); overall: {}\n",
        total,
        match worst {
            Verdict::Ok => "ok",
            Verdict::NeedsAcknowledgement => "needs acknowledgement (DANGEROUS findings)",
            Verdict::Refused => "refused",
        }
    ));
    out
}
