//! A plan and its findings in words, the same in the CLI and the console: each finding with its
//! source line underlined, the statement's lock and rewrite, the recipe, how to acknowledge
//! it; each pending migration's statements with their class, lock and rewrite.

use super::plan::{Plan, Verdict};
use super::{FileLint, Finding, Severity};
use crate::migrate::{self, MigrationsDir};

/// The human rendering of one file: each finding with its position, a code frame, what the
/// statement does, sizes, adjustments, help, the recipe and any acknowledgement.
pub fn render_file(r: &FileLint, text: &str, notes: bool) -> String {
    let mut out = String::new();
    for e in &r.syntax_errors {
        out.push_str(&format!(
            "{}:{}:{}: SYNTAX ERROR: {}\n",
            r.path, e.line, e.column, e.message
        ));
        out.push_str(&frame(text, e.line, e.column, e.line, e.column + 1));
    }
    for f in &r.findings {
        if f.severity == Severity::Safe && !notes {
            continue;
        }
        out.push_str(&render_finding(r, f, text));
    }
    out
}

pub fn render_finding(r: &FileLint, f: &Finding, text: &str) -> String {
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
    out.push_str(&frame(text, f.line, f.column, f.end_line, f.end_column));
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

/// The source line(s) with a caret underline, rustc style.
fn frame(text: &str, line: usize, col: usize, end_line: usize, end_col: usize) -> String {
    let Some(src) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let width = line.to_string().len();
    let chars = src.chars().count();
    let end = if end_line == line {
        end_col.min(chars + 1)
    } else {
        chars + 1
    };
    let carets = end.saturating_sub(col).max(1);
    let shown: String = src.chars().take(160).collect();
    format!(
        "{:width$} |\n{line} | {shown}\n{:width$} | {}{}\n",
        "",
        "",
        " ".repeat(col.saturating_sub(1)),
        "^".repeat(carets.min(160)),
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
