//! `pgdeck lint` and `pgdeck plan`: the safety lint of migration files, and the plan of what
//! deploy would run against the target.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::json;

use super::verify::ScratchArgs;
use super::{Job, exit, output};
use crate::error::{Error, Result};
use crate::lint::declared::Declared;
use crate::lint::plan::{Allow, Plan, Verdict};
use crate::lint::report::{render_file, render_plan};
use crate::lint::{self, FileLint, Severity, Sizes, catalog};
use crate::migrate::{self, MigrationsDir};
use crate::release::Environment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    /// GitHub Actions workflow annotations
    Github,
}

#[derive(Debug, Clone, Args)]
pub struct LintArgs {
    /// Files or folders (a migrations folder, or a folder of .sql files); default: the
    /// environment's migrations folder
    pub paths: Vec<PathBuf>,
    /// Output format (--json is the same as --format json)
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Do not connect to read live table sizes
    #[arg(long)]
    pub offline: bool,
    /// Also show style notes (type and naming advice that never blocks a deploy)
    #[arg(long)]
    pub notes: bool,
}

/// `--allow RULE --reason TEXT`: acknowledge findings of a rule for this run.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub allow: AllowArgs,
    /// Rehearse the pending migrations on a copy of the schema in a scratch cluster and show
    /// the locks and rewrites PostgreSQL really took beside each claim
    #[arg(long)]
    pub rehearse: bool,
    #[command(flatten)]
    pub scratch: ScratchArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AllowArgs {
    /// Acknowledge the findings of this rule (repeatable); needs --reason
    #[arg(long = "allow", value_name = "RULE", requires = "reason")]
    pub allow: Vec<String>,
    /// Why the acknowledged findings are acceptable (recorded with the run)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

impl AllowArgs {
    pub fn allows(&self) -> Vec<Allow> {
        let reason = self.reason.clone().unwrap_or_default();
        self.allow
            .iter()
            .map(|rule| Allow::rule(rule, &reason))
            .collect()
    }
}

/// One file to lint: where it is and its text, or why it cannot be read.
struct Input {
    path: PathBuf,
    text: Result<String>,
}

pub async fn lint(env: &Environment, args: &LintArgs, json_flag: bool) -> Result<u8> {
    let format = if json_flag { Format::Json } else { args.format };
    let inputs = inputs(env, &args.paths)?;
    let sizes = if args.offline {
        Sizes::new()
    } else {
        let mut tables = Vec::new();
        for input in &inputs {
            if let Ok(text) = &input.text
                && text.len() <= lint::MAX_LINT_BYTES
            {
                tables.extend(lint::touched_tables(text));
            }
        }
        tables.sort();
        tables.dedup();
        match catalog::table_sizes(&env.target.with_connect_timeout(3), &tables).await {
            Ok(s) => s,
            Err(e) => {
                if format == Format::Human {
                    output::stderr(&format!(
                        "note: no live table sizes ({}); use --offline to skip",
                        e.cause
                    ));
                }
                Sizes::new()
            }
        }
    };

    let mut reports = Vec::new();
    let mut errors = Vec::new();
    // Files in the order given (a folder's in its order): a type change is judged from the
    // type the earlier files gave the column when the live catalog does not know it.
    let mut declared = Declared::new();
    for input in &inputs {
        let shown = input.path.display().to_string();
        match &input.text {
            Ok(text) => reports.push((
                lint::lint_sql_in_order(&shown, text, &env.lint, &sizes, &mut declared),
                text.as_str(),
            )),
            Err(e) => errors.push((shown, e.clone())),
        }
    }
    let code = lint_exit_code(reports.iter().map(|(r, _)| r), !errors.is_empty());
    match format {
        Format::Json => output::json(&LintJson {
            ok: code == exit::OK,
            exit_code: code,
            files: reports.iter().map(|(r, _)| r).collect(),
            errors: errors
                .iter()
                .map(|(path, e)| ReadError {
                    path,
                    error: &e.cause,
                    hint: &e.hint,
                })
                .collect(),
        }),
        Format::Github => {
            for (r, _) in &reports {
                output::stdout(github_annotations(r, args.notes).trim_end());
            }
            for (p, e) in &errors {
                output::stdout(&format!(
                    "::error file={},title=pgdeck::{}",
                    gh_property(p),
                    gh_data(&e.cause)
                ));
            }
        }
        Format::Human => {
            for (r, text) in &reports {
                let rendered = render_file(r, text, args.notes);
                if !rendered.is_empty() {
                    output::stdout(rendered.trim_end());
                }
            }
            for (p, e) in &errors {
                output::stderr(&format!("error: {p}: {}\nhint: {}", e.cause, e.hint));
            }
            output::stdout(&summary(
                reports.iter().map(|(r, _)| r),
                errors.len(),
                args.notes,
            ));
        }
    }
    Ok(code)
}

/// `lint --format json`, serialised straight from the reports: a `serde_json::Value` copy of
/// tens of thousands of findings would take several times the memory of the text it becomes.
/// The README's "Safety lint and plan" section documents this shape.
#[derive(Serialize)]
struct LintJson<'a> {
    ok: bool,
    exit_code: u8,
    files: Vec<&'a FileLint>,
    errors: Vec<ReadError<'a>>,
}

/// A file that could not be read.
#[derive(Serialize)]
struct ReadError<'a> {
    path: &'a str,
    error: &'a str,
    hint: &'a str,
}

/// 0 clean, LINT_WARNINGS when something needs care, LINT_DANGEROUS when a DANGEROUS finding is
/// not acknowledged, USAGE when a file could not be read or parsed.
fn lint_exit_code<'a>(reports: impl Iterator<Item = &'a FileLint>, read_errors: bool) -> u8 {
    let mut worst = None;
    let mut syntax = read_errors;
    for r in reports {
        syntax |= !r.syntax_errors.is_empty();
        worst = worst.max(r.worst_unacknowledged());
    }
    if syntax {
        exit::USAGE
    } else {
        match worst {
            Some(Severity::Dangerous) => exit::LINT_DANGEROUS,
            Some(Severity::Care) => exit::LINT_WARNINGS,
            _ => exit::OK,
        }
    }
}

fn inputs(env: &Environment, paths: &[PathBuf]) -> Result<Vec<Input>> {
    if paths.is_empty() {
        let dir = MigrationsDir::load(&env.migrations_dir)?;
        return Ok(dir
            .migrations
            .iter()
            .map(|m| Input {
                path: m.script_path(),
                text: Ok(m.sql().to_owned()),
            })
            .collect());
    }
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found = sql_files_in(path)?;
            if found.is_empty() {
                return Err(Error::input(
                    format!(
                        "{} has no .sql files and no <name>/migration.sql folders",
                        path.display()
                    ),
                    "pass .sql files, a folder of them, or a Prisma migrations folder",
                ));
            }
            // Files found in a folder stay inside it, as deploy's do.
            out.extend(found.into_iter().map(|f| read_input(f, Some(path))));
        } else if path.exists() {
            out.push(read_input(path.clone(), None));
        } else {
            return Err(Error::input(
                format!("{} does not exist", path.display()),
                "check the path",
            ));
        }
    }
    Ok(out)
}

/// `<dir>/*/migration.sql` and `<dir>/*.sql`, in byte order of their paths.
fn sql_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::input(
            format!("cannot read {}: {e}", dir.display()),
            "check the folder's permissions",
        )
    })?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        // Hidden entries (.git, an editor's files) are skipped, as the migrations folder's are.
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let p = entry.path();
        if p.is_dir() && p.join("migration.sql").is_file() {
            files.push(p.join("migration.sql"));
        } else if p.extension().is_some_and(|e| e == "sql") && p.is_file() {
            files.push(p);
        }
    }
    files.sort_by(|a, b| {
        use std::os::unix::ffi::OsStrExt;
        a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes())
    });
    Ok(files)
}

fn read_input(path: PathBuf, inside: Option<&Path>) -> Input {
    let text = match crate::db::files::read(&path, inside) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|e| {
            Error::input(
                format!(
                    "not valid UTF-8 (bad byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
                "save the file as UTF-8",
            )
        }),
        Err(e) => Err(Error::input(
            format!("cannot read it: {e}"),
            "check the path and permissions",
        )),
    };
    Input { path, text }
}

fn summary<'a>(reports: impl Iterator<Item = &'a FileLint>, errors: usize, notes: bool) -> String {
    let (mut files, mut statements, mut dangerous, mut open_dangerous, mut care, mut style) =
        (0, 0, 0, 0, 0, 0);
    let mut syntax = 0;
    for r in reports {
        files += 1;
        statements += r.statements.len();
        syntax += r.syntax_errors.len();
        for f in &r.findings {
            match f.severity {
                Severity::Dangerous => {
                    dangerous += 1;
                    if f.acknowledged.is_none() {
                        open_dangerous += 1;
                    }
                }
                Severity::Care if f.acknowledged.is_none() => care += 1,
                Severity::Safe => style += 1,
                _ => {}
            }
        }
    }
    let mut s = format!(
        "{files} file(s), {statements} statement(s): {dangerous} dangerous ({open_dangerous} not acknowledged), {care} need care"
    );
    if syntax + errors > 0 {
        s.push_str(&format!(", {} error(s)", syntax + errors));
    }
    if style > 0 {
        s.push_str(&format!(
            ", {style} style note(s){}",
            if notes { "" } else { " (--notes shows them)" }
        ));
    }
    s
}

/// GitHub Actions `::error` / `::warning` / `::notice` lines.
pub fn github_annotations(r: &FileLint, notes: bool) -> String {
    let mut out = String::new();
    for e in &r.syntax_errors {
        out.push_str(&format!(
            "::error file={},line={},col={},title=pgdeck syntax error::{}\n",
            gh_property(&r.path),
            e.line,
            e.column,
            gh_data(&e.message)
        ));
    }
    for f in r
        .findings
        .iter()
        .filter(|f| notes || f.severity > Severity::Safe)
    {
        let level = match (f.severity, &f.acknowledged) {
            (_, Some(_)) | (Severity::Safe, _) => "notice",
            (Severity::Care, _) => "warning",
            (Severity::Dangerous, _) => "error",
        };
        let mut message = f.message.clone();
        if let Some(first) = f.recipe.first() {
            message.push_str(&format!("\nInstead: {first}"));
        }
        out.push_str(&format!(
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            gh_property(&r.path),
            f.line,
            f.column,
            f.end_line,
            f.end_column,
            gh_property(&format!("pgdeck {} {}", f.severity.label(), f.rule)),
            gh_data(&message)
        ));
    }
    out
}

fn gh_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

pub async fn plan(job: &Job, args: &PlanArgs, json_flag: bool) -> Result<u8> {
    let env = &job.env;
    let dir = MigrationsDir::load(&env.migrations_dir)?;
    let (report, version) = migrate::status(&env.target, &dir).await?;
    let pending = report.pending_names();
    let mut plan = Plan::build(
        Some(&env.target),
        &dir,
        &pending,
        &env.lint,
        &args.allow.allows(),
        env.protected,
    )
    .await;
    let rehearsal = match args.rehearse {
        true => {
            let req = args.scratch.request(false)?;
            let r = super::verify::rehearse(job, &req, json_flag).await?;
            plan.observe(r.pending.iter().flat_map(|p| &p.statements));
            Some(r)
        }
        false => None,
    };
    let failed = rehearsal.as_ref().and_then(|r| r.failure.clone());
    let code = match plan.verdict() {
        _ if failed.is_some() => exit::FAILED,
        Verdict::Ok => exit::OK,
        Verdict::NeedsAcknowledgement => exit::LINT_DANGEROUS,
        Verdict::Refused => exit::REFUSED,
    };
    if json_flag {
        output::json(&json!({
            "ok": code == exit::OK,
            "exit_code": code,
            "environment": env.name,
            "protected": env.protected,
            "database": env.target.to_string(),
            "server_version": version,
            "verdict": plan.verdict(),
            "plan": plan,
            "rehearsal": rehearsal,
        }));
        return Ok(code);
    }
    let heading = format!(
        "plan for {} (environment {}{})",
        env.target,
        env.name,
        if env.protected { ", protected" } else { "" }
    );
    output::stdout(render_plan(&heading, &plan, &dir).trim_end());
    if let Some(f) = failed {
        output::stdout(&format!(
            "\nthe rehearsal FAILED{}: {}",
            f.migration.map(|m| format!(" at {m}")).unwrap_or_default(),
            f.cause
        ));
    }
    Ok(code)
}
