//! Printing: errors as cause + hint (remedies worded as this command line's flags and
//! commands), the status table, the progress of release workflows, and confirmations asked on
//! the terminal. Everything that leaves the process goes through [`scrub`] first.

use std::future::Future;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use tokio_util::sync::CancellationToken;

use super::{ConfirmArgs, exit};
use crate::backup::BackupEvent;
use crate::error::{Ask, Error, Remedy, Result};
use crate::migrate::{DeployEvent, FolderSource, MigrationState, StatusReport};
use crate::release::{self, Cell, Column, Confirmation, Environment, Matrix, Reading};
use crate::target::secret::scrub;
use crate::target::source::{NamedBy, UrlSource};
use crate::units::{human_bytes, human_duration, printable};

pub fn error(e: &Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {}", printable(&scrub(&e.cause)));
    let hint = hint(e);
    if !hint.is_empty() {
        let _ = writeln!(err, "hint: {}", printable(&scrub(&hint)));
    }
}

pub fn error_json(e: &Error) {
    let v = serde_json::json!({
        "ok": false,
        "error": scrub(&e.cause),
        "hint": scrub(&hint(e)),
        "guard": e.guard,
        "remedies": e.remedies,
        "exit_code": super::exit_code(e),
    });
    json_stdout(&v.to_string());
}

/// The hint, with each remedy worded as what to type here.
pub fn hint(e: &Error) -> String {
    let remedies: Vec<String> = e.remedies.iter().map(remedy).collect();
    match (e.hint.is_empty(), remedies.is_empty()) {
        (_, true) => e.hint.clone(),
        (true, false) => remedies.join("; "),
        (false, false) => format!("{} ({})", e.hint, remedies.join("; ")),
    }
}

/// A remedy as this command line spells it.
pub fn remedy(r: &Remedy) -> String {
    match r {
        Remedy::Confirm(ask) => match &ask.expect {
            Some(db) => format!("confirm by naming the database: --confirm {db}"),
            None => "pass --yes to confirm in scripts".into(),
        },
        Remedy::TakeVerifiedBackup => {
            "run `pgdeck backup create`, then `pgdeck backup verify`".into()
        }
        Remedy::TakeBackup => "`pgdeck backup create`".into(),
        Remedy::DeployWithoutBackup => {
            "or, to go ahead anyway, --without-backup \"<reason>\"".into()
        }
        Remedy::VerifyBackup { file } => format!(
            "`pgdeck backup verify{}`",
            file.as_deref().map(|f| format!(" {f}")).unwrap_or_default()
        ),
        Remedy::RestoreUnverified => {
            "or, to restore it anyway, --force-unverified \"<reason>\"".into()
        }
        Remedy::AcceptForeignBackup => {
            "or, if it is the one to use all the same, --accept-foreign-backup \"<reason>\"".into()
        }
        Remedy::Acknowledge { .. } => "acknowledge each with `-- pgdeck:allow <rule> <reason>` \
             above the statement, or --allow <rule> --reason <text>"
            .into(),
        Remedy::ReviewPlan => "`pgdeck plan` shows them".into(),
        Remedy::Resolve { migration } => format!(
            "`pgdeck resolve --applied {migration}` if it was finished by hand, \
             `pgdeck resolve --rolled-back {migration}` if it was undone"
        ),
        Remedy::ResolveRolledBack { migration } => {
            format!("`pgdeck resolve --rolled-back {migration}`")
        }
        Remedy::Deploy => "run `pgdeck deploy` again".into(),
        Remedy::Status => "`pgdeck status` shows the migrations".into(),
        Remedy::Revert { migration } => format!("`pgdeck revert {migration}`"),
        Remedy::ListBackups => "`pgdeck backup list` shows the backups".into(),
        Remedy::BackupDir => "--dir DIR".into(),
        Remedy::TerminateSessions => "--terminate-sessions".into(),
        Remedy::WaitLonger => "raise --lock-wait".into(),
        Remedy::Monitor => "`pgdeck monitor --once` shows who holds the lock".into(),
        Remedy::EndSession {
            pid,
            backend_start,
            idle,
        } => format!(
            "`pgdeck monitor terminate {pid} --backend-start {backend_start}` ends it{}",
            if *idle {
                " (it is idle in its transaction: a cancel would not help)"
            } else {
                ""
            }
        ),
        Remedy::SaveBaseline => "`pgdeck health --save-baseline FILE`".into(),
        Remedy::MigrationsFolder => "--migrations DIR, or `migrations` in pgdeck.toml".into(),
        Remedy::NewMigration => "`pgdeck new NAME` creates the first".into(),
        Remedy::OtherEnvironment => "--env NAME or --database-url URL".into(),
        Remedy::LeaveReadOnly => {
            "run without --read-only (and without read_only = true in the environment)".into()
        }
        Remedy::DirectoryFormat => "--format directory --jobs N".into(),
        Remedy::SingleWorker => "drop --jobs".into(),
        Remedy::UsePrimary => "point --database-url (or the environment) at the primary".into(),
        Remedy::UseDirectUrl => "set direct_url / direct_url_env for the environment (Prisma's directUrl, DIRECT_URL) to the server's own URL, or --database-url with it".into(),
    }
}

/// A line on stdout: passwords scrubbed, control characters shown escaped.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", printable(&scrub(text)));
}

/// A line on stderr: passwords scrubbed, control characters shown escaped.
pub fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", printable(&scrub(text)));
}

pub fn json(value: &impl serde::Serialize) {
    json_stdout(&serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Serialised JSON on stdout: passwords scrubbed, and the control characters JSON lets through
/// raw (DEL and the C1 range, which a terminal may obey) written as `\u` escapes, so it stays
/// valid JSON that says the same.
pub fn json_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", json_printable(&scrub(text)));
}

/// [`json_stdout`] on stderr (event lines with --json).
pub fn json_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", json_printable(&scrub(text)));
}

fn json_printable(text: &str) -> std::borrow::Cow<'_, str> {
    let raw = |c: char| c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c);
    // Lint output can run to megabytes: copied only when there is something to escape. In
    // UTF-8 those characters are the byte 0x7F, or 0xC2 then a second byte.
    if !text.bytes().any(|b| b == 0x7f || b == 0xc2) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if raw(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Clap's own rendering is several lines; keep its first line as the cause and point at --help.
pub fn clap_error(e: clap::Error) -> u8 {
    use clap::error::ErrorKind as K;
    if matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
            exit::USAGE
        } else {
            exit::OK
        };
    }
    let rendered = e.render().to_string();
    let mut lines = rendered.lines().filter(|l| !l.trim().is_empty());
    let mut first = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned();
    // "the following required arguments were not provided:" is followed by the arguments.
    if first.ends_with(':') {
        let missing: Vec<&str> = lines
            .take_while(|l| l.starts_with("  "))
            .map(str::trim)
            .collect();
        first = format!("{} {}", first, missing.join(", "));
    }
    let tip = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("tip: "))
        .map(|t| format!("{t}; "))
        .unwrap_or_default();
    error(&Error::input(
        first,
        format!("{tip}run `pgdeck --help` for usage"),
    ));
    exit::USAGE
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The human status table.
pub fn status_table(env: &Environment, report: &StatusReport, server_version: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "environment  {}{}{}\n",
        env.name,
        if env.protected { " (protected)" } else { "" },
        env.source
            .as_ref()
            .map(|f| format!(", from {}", f.display()))
            .unwrap_or_default()
    ));
    out.push_str(&format!(
        "database     {} (PostgreSQL {server_version})\n",
        env.target
    ));
    if let Some(c) = &env.connection {
        out.push_str(&format!("connection   {}\n", connection_words(c)));
    }
    out.push_str(&format!(
        "migrations   {}{}\n\n",
        env.migrations_dir.display(),
        folder_words(&env.migrations_source)
            .map(|w| format!(" ({w})"))
            .unwrap_or_default()
    ));
    if report.migrations.is_empty() {
        out.push_str("no migrations yet: create one with `pgdeck new NAME`\n");
        return out;
    }
    let width = report
        .migrations
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(9)
        .max(9);
    out.push_str(&format!(
        "  {:<16} {:<width$}  DETAIL\n",
        "STATE", "MIGRATION"
    ));
    for m in &report.migrations {
        let (state, detail) = match &m.state {
            MigrationState::Applied {
                applied_at,
                duration_ms,
            } => (
                "applied",
                format!("{} ({duration_ms} ms)", timestamp(*applied_at)),
            ),
            MigrationState::Pending => ("pending", String::new()),
            MigrationState::RolledBack {
                rolled_back_at,
                logs,
            } => (
                "rolled back",
                format!(
                    "pending again; failed attempt at {}{}",
                    timestamp(*rolled_back_at),
                    first_error(logs)
                ),
            ),
            MigrationState::Failed { started_at, logs } => (
                "FAILED",
                format!("started {}{}", timestamp(*started_at), first_error(logs)),
            ),
            MigrationState::Edited { applied_at, .. } => (
                "EDITED",
                format!(
                    "migration.sql changed after it was applied at {}",
                    timestamp(*applied_at)
                ),
            ),
            MigrationState::MissingLocally { started_at, .. } => (
                "MISSING LOCALLY",
                format!(
                    "in the database since {}, not in the folder",
                    timestamp(*started_at)
                ),
            ),
        };
        out.push_str(&format!("  {state:<16} {:<width$}  {detail}\n", m.name));
    }
    let n = |f: fn(&MigrationState) -> bool| report.count(f);
    out.push_str(&format!(
        "\n{} migrations: {} applied, {} pending, {} failed, {} edited, {} missing locally\n",
        report.migrations.len(),
        n(|s| matches!(
            s,
            MigrationState::Applied { .. } | MigrationState::Edited { .. }
        )),
        n(|s| matches!(
            s,
            MigrationState::Pending | MigrationState::RolledBack { .. }
        )),
        n(|s| matches!(s, MigrationState::Failed { .. })),
        n(|s| matches!(s, MigrationState::Edited { .. })),
        n(|s| matches!(s, MigrationState::MissingLocally { .. })),
    ));
    for m in &report.migrations {
        if let MigrationState::Failed {
            logs: Some(logs), ..
        } = &m.state
        {
            out.push_str(&format!("\nlogs of failed migration {}:\n", m.name));
            for line in logs.lines() {
                out.push_str(&format!("  | {line}\n"));
            }
        }
    }
    out
}

/// Where the connection's URL came from, in words: the setting, the variable and the file
/// (never the URL itself, which `database` shows with its password masked).
pub fn connection_words(c: &UrlSource) -> String {
    let var = |v: &Option<String>| match v {
        Some(v) => format!(
            "${v} from {}",
            c.file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "the environment".into())
        ),
        None => "written out".into(),
    };
    let mut out = match &c.named_by {
        NamedBy::CommandLine => "--database-url".to_owned(),
        NamedBy::Config { environment, key } if key == "database_url" => {
            format!("database_url of environment '{environment}' in the config file")
        }
        NamedBy::Config { environment, key } => {
            format!("{} ({key} of environment '{environment}')", var(&c.variable))
        }
        NamedBy::PrismaDirectUrl { schema } => format!(
            "{}, Prisma's directUrl in {}: schema changes and the migration lock go through this direct connection, not through the pooled url",
            var(&c.variable),
            schema.display()
        ),
        NamedBy::PrismaConfigUrl { file } => {
            format!("{}, the datasource in {}", var(&c.variable), file.display())
        }
        NamedBy::PrismaUrl { schema } => format!(
            "{}, Prisma's url in {} (it names no directUrl)",
            var(&c.variable),
            schema.display()
        ),
        NamedBy::DatabaseUrl => var(&c.variable),
        NamedBy::Libpq => {
            "the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE) and their defaults: no DATABASE_URL was found".into()
        }
    };
    if let Some(unset) = &c.direct_unset {
        out.push_str(&format!(
            "; Prisma's directUrl names ${unset}, which is not set: deploy, resolve, reset, restore and rollbacks refuse until it is"
        ));
    }
    out
}

/// Why the migrations folder is the one used, in words; None when the program chose it.
pub fn folder_words(source: &FolderSource) -> Option<String> {
    Some(match source {
        FolderSource::CommandLine => "--migrations".into(),
        FolderSource::Config { file, environment } => format!(
            "migrations of environment '{environment}' in {}",
            file.display()
        ),
        FolderSource::PackageJson { schema } => format!(
            "beside {}, the schema package.json's prisma.schema names",
            schema.display()
        ),
        FolderSource::PrismaConfig { file } => format!("migrations.path in {}", file.display()),
        FolderSource::PrismaConfigSchema { file, schema } => format!(
            "beside {}, the schema {} names",
            schema.display(),
            file.display()
        ),
        FolderSource::PrismaSchema => "beside prisma/schema.prisma".into(),
        FolderSource::PrismaFolder {
            migrations_empty: true,
        } => "Prisma's folder: ./migrations holds no migration".into(),
        FolderSource::PrismaFolder {
            migrations_empty: false,
        } => "Prisma's folder: there is no ./migrations".into(),
        FolderSource::Default => "the default".into(),
        FolderSource::Given => return None,
    })
}

/// The width the matrix is fitted to: the terminal's, or 80 columns.
pub fn width() -> usize {
    if std::io::stdout().is_terminal()
        && let Ok((w, _)) = crossterm::terminal::size()
    {
        return usize::from(w);
    }
    80
}

/// `text` in at most `width` characters, its end cut with `…`: a migration keeps its
/// timestamp and the start of its name.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Left-aligned in `width` characters.
fn pad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(n)))
}

/// The matrix for a person, fitted to `width` columns: migrations as rows, environments as
/// columns (an environment that was not read says why in each cell), then each environment's
/// verdict with its database or why it was not read, the words that need explaining, and the
/// verdict over them all.
pub fn matrix_table(m: &Matrix, width: usize) -> String {
    const MIN_NAME: usize = 24;
    const MAX_ENV: usize = 16;
    let mut out = String::new();
    let word = |col: &Column, cell: Option<Cell>| match cell {
        Some(c) => c.word(),
        None => col.problem().unwrap_or("?"),
    };
    if m.rows.is_empty() {
        out.push_str("no migrations in any environment's folder or database\n");
    } else {
        let widths: Vec<usize> = m
            .columns
            .iter()
            .enumerate()
            .map(|(i, col)| {
                let widest = m
                    .rows
                    .iter()
                    .map(|r| word(col, r.cells.get(i).copied().flatten()).chars().count())
                    .max()
                    .unwrap_or(0);
                widest.max(col.name.chars().count().min(MAX_ENV))
            })
            .collect();
        let fixed = 2 + widths.iter().map(|w| w + 2).sum::<usize>();
        let longest = m
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("MIGRATION".len());
        let name_width = longest.min(width.saturating_sub(fixed).max(MIN_NAME));
        let mut line = format!("  {}", pad("MIGRATION", name_width));
        for (col, w) in m.columns.iter().zip(&widths) {
            line.push_str(&format!("  {}", pad(&fit(&col.name, *w), *w)));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        for row in &m.rows {
            let mut line = format!("  {}", pad(&fit(&row.name, name_width), name_width));
            for (i, (col, w)) in m.columns.iter().zip(&widths).enumerate() {
                let cell = word(col, row.cells.get(i).copied().flatten());
                line.push_str(&format!("  {}", pad(cell, *w)));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out.push('\n');
    let labels: Vec<String> = m
        .columns
        .iter()
        .map(|c| {
            format!(
                "{}{}",
                c.name,
                if c.protected { " (protected)" } else { "" }
            )
        })
        .collect();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let indent = " ".repeat(label_width + 2);
    for (col, label) in m.columns.iter().zip(&labels) {
        out.push_str(&format!("{}  {}\n", pad(label, label_width), col.summary()));
        let mut more = Vec::new();
        match &col.reading {
            Reading::Read { server_version, .. } => more.push(format!(
                "{} (PostgreSQL {server_version})",
                col.database.as_deref().unwrap_or_default()
            )),
            _ => {
                more.extend(col.database.clone());
                more.extend(col.error().map(|e| format!("hint: {}", hint(e))));
            }
        }
        for line in more {
            out.push_str(&format!("{indent}{line}\n"));
        }
    }
    let legend = m.legend();
    if !legend.is_empty() {
        out.push('\n');
        for cell in legend {
            out.push_str(&format!(
                "  {:<11}  {}\n",
                cell.word(),
                cell.meaning().unwrap_or_default()
            ));
        }
    }
    out.push_str(&format!(
        "\nover {} environment(s): {}\n",
        m.columns.len(),
        m.overall().label()
    ));
    out
}

/// The matrix for a program: every environment (reachable or why not, its verdict) and every
/// migration with its state in each environment by name (null where it was not read).
pub fn matrix_json(m: &Matrix, exit_code: u8) -> serde_json::Value {
    use serde_json::json;
    let environments: Vec<serde_json::Value> = m
        .columns
        .iter()
        .map(|c| {
            let (server_version, ledger_exists) = match &c.reading {
                Reading::Read {
                    server_version,
                    report,
                } => (Some(server_version.as_str()), Some(report.ledger_exists)),
                _ => (None, None),
            };
            json!({
                "name": c.name,
                "protected": c.protected,
                "database": c.database,
                "reachable": c.reachable(),
                "problem": c.problem(),
                "error": c.error().map(|e| e.cause.clone()),
                "hint": c.error().map(hint),
                "server_version": server_version,
                "ledger_exists": ledger_exists,
                "verdict": c.verdict(),
            })
        })
        .collect();
    let migrations: Vec<serde_json::Value> = m
        .rows
        .iter()
        .map(|r| {
            let states: serde_json::Map<String, serde_json::Value> = m
                .columns
                .iter()
                .zip(&r.cells)
                .map(|(c, cell)| (c.name.clone(), json!(cell)))
                .collect();
            json!({ "name": r.name, "states": states })
        })
        .collect();
    json!({
        // Every environment read: a verdict over them all.
        "ok": m.columns.iter().all(|c| c.error().is_none()),
        "verdict": m.overall(),
        "exit_code": exit_code,
        "environments": environments,
        "migrations": migrations,
    })
}

fn first_error(logs: &Option<String>) -> String {
    logs.as_deref()
        .and_then(|l| l.lines().find_map(|line| line.strip_prefix("ERROR: ")))
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

/// One line of deploy progress for a human, or a JSON line.
pub fn deploy_event(event: &DeployEvent, json: bool) {
    if json {
        json_stderr(&serde_json::to_string(event).unwrap_or_default());
        return;
    }
    let line = match event {
        DeployEvent::LockDisabled | DeployEvent::WatchdogOff | DeployEvent::WatchdogLost { .. } => {
            event.said().unwrap_or_default()
        }
        DeployEvent::Blocking { .. }
        | DeployEvent::WaitingForReplica { .. }
        | DeployEvent::ReplicaCaughtUp { .. } => {
            format!("      {}", event.said().unwrap_or_default())
        }
        DeployEvent::WaitingForLock { holder: Some(h) } => {
            format!("waiting for the migration lock held by {h}")
        }
        DeployEvent::WaitingForLock { holder: None } => "waiting for the migration lock".into(),
        DeployEvent::LockAcquired { waited_ms } => format!(
            "got the migration lock after {:.1}s",
            *waited_ms as f64 / 1000.0
        ),
        DeployEvent::LedgerCreated => "created _prisma_migrations".into(),
        DeployEvent::EditedAfterApply { name } => {
            format!(
                "warning: {name} was edited after it was applied; the change will not be deployed"
            )
        }
        DeployEvent::Pending { .. } | DeployEvent::Observed(_) => return,
        DeployEvent::MigrationStarted {
            name,
            index,
            total,
            transactional,
            statements,
            ..
        } => format!(
            "[{index}/{total}] {name} ({}, {statements} statement{})",
            if *transactional {
                "one transaction"
            } else {
                "no transaction: statement by statement"
            },
            if *statements == 1 { "" } else { "s" }
        ),
        DeployEvent::StatementStarted {
            index,
            total,
            line,
            preview,
            ..
        } => {
            format!("      {index}/{total} line {line}: {preview}")
        }
        DeployEvent::Waiting {
            waited_ms,
            holders,
            changed,
        } => {
            if !changed {
                return;
            }
            let each: Vec<String> = holders.iter().map(|h| h.describe()).collect();
            format!(
                "      waiting {:.1}s for a lock held by {}",
                *waited_ms as f64 / 1000.0,
                each.join("; ")
            )
        }
        DeployEvent::LockTimeout {
            name,
            attempt,
            attempts,
            retry_in_ms,
        } => format!(
            "      lock_timeout hit on {name} (attempt {attempt} of {attempts}); retrying in {:.1}s",
            *retry_in_ms as f64 / 1000.0
        ),
        DeployEvent::MigrationApplied { duration_ms, .. } => {
            format!("      applied in {duration_ms} ms")
        }
        DeployEvent::MigrationFailed { name, .. } => format!("      {name} FAILED"),
        DeployEvent::AlreadyApplied { name } => {
            format!("      {name} was applied by another deploy meanwhile: not run again")
        }
    };
    stderr(&line);
}

/// The confirmation the flags give: `--confirm DBNAME`, or `--yes`. What it is worth is the
/// workflow's to say (a protected environment wants the name).
pub fn given(args: &ConfirmArgs) -> Option<Confirmation> {
    match (&args.confirm, args.yes) {
        (Some(name), _) => Some(Confirmation::typed(name)),
        (None, true) => Some(Confirmation::yes()),
        (None, false) => None,
    }
}

pub(super) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Runs a workflow whose events `printer` prints. When it refuses for want of a confirmation
/// the flags did not give, and there is a terminal to ask on, it asks exactly what the workflow
/// said it would do, and runs it again with the answer (the workflow checks it).
pub async fn confirmed<T, F, Fut>(
    json: bool,
    given: Option<Confirmation>,
    cancel: &CancellationToken,
    mut printer: Printer,
    mut run: F,
) -> Result<T>
where
    F: FnMut(Option<Confirmation>, tokio::sync::mpsc::UnboundedSender<release::Event>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let first = crate::events::with_events(|e| printer.take(e), |tx| run(given.clone(), tx)).await;
    // The terminal is asked when the flags said nothing, or a yes where the name is wanted.
    let ask = match (&first, &given) {
        (Err(e), None) if !json && interactive() => e.ask().cloned(),
        (Err(e), Some(Confirmation { typed: None, .. })) if !json && interactive() => {
            e.ask().filter(|a| a.expect.is_some()).cloned()
        }
        _ => None,
    };
    let Some(ask) = ask else {
        printer.flush();
        return first;
    };
    // What the refused run found is found again by the next one.
    printer.discard();
    let answer = ask_on_terminal(&ask, cancel).await?;
    crate::events::with_events(|e| printer.take(e), |tx| run(Some(answer), tx)).await
}

async fn ask_on_terminal(ask: &Ask, cancel: &CancellationToken) -> Result<Confirmation> {
    stderr(&ask.title);
    for line in &ask.lines {
        stderr(&format!("  {line}"));
    }
    match &ask.expect {
        Some(db) => {
            let typed = read_answer(
                format!(
                    "This environment is PROTECTED. Type the database name ({db}) to continue: "
                ),
                cancel,
            )
            .await?;
            Ok(Confirmation::answering(ask, Some(typed)))
        }
        None => {
            let answer = read_answer("Continue? [y/N] ".into(), cancel).await?;
            if matches!(answer.as_str(), "y" | "Y" | "yes") {
                Ok(Confirmation::answering(ask, None))
            } else {
                Err(Error::refused(
                    "not confirmed; nothing was done",
                    "answer y to go ahead, or pass --yes",
                ))
            }
        }
    }
}

/// Reads the answer off the terminal on a thread of its own, so SIGINT while the question is
/// open ends the command at once (nothing has started).
pub(super) async fn read_answer(prompt: String, cancel: &CancellationToken) -> Result<String> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{}", printable(&scrub(&prompt)));
    let _ = err.flush();
    drop(err);
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map(|_| line.trim().to_owned())
    });
    tokio::select! {
        answer = read => match answer {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => Err(Error::runtime(
                format!("cannot read the answer: {e}"),
                "answer on the terminal",
            )),
            Err(e) => Err(Error::runtime(format!("cannot read the answer: {e}"), "answer on the terminal")),
        },
        () = cancel.cancelled() => Err(Error::cancelled(
            "interrupted at the question: nothing was done",
            "run it again when ready",
        )),
    }
}

/// Prints a workflow's events on stderr as they come (JSON lines with --json). Until the work
/// starts they are held back: a run refused for a confirmation is run again once answered, and
/// what it found would otherwise be printed twice.
pub struct Printer {
    json: bool,
    live: bool,
    held: Vec<release::Event>,
    backup: BackupProgress,
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            live: false,
            held: Vec::new(),
            backup: BackupProgress::new(json),
        }
    }

    /// Prints everything at once, without holding back (for work that asks nothing).
    pub fn live(json: bool) -> Printer {
        Printer {
            live: true,
            ..Printer::new(json)
        }
    }

    pub fn take(&mut self, event: release::Event) {
        if matches!(event, release::Event::Started { .. }) {
            self.flush();
        }
        if self.live {
            self.print(&event);
        } else {
            self.held.push(event);
        }
    }

    fn flush(&mut self) {
        self.live = true;
        for e in std::mem::take(&mut self.held) {
            self.print(&e);
        }
    }

    fn discard(&mut self) {
        self.held.clear();
    }

    fn print(&mut self, event: &release::Event) {
        use release::Event as E;
        if self.json {
            let value = match event {
                E::Deploy(e) => serde_json::to_value(e).unwrap_or_default(),
                E::Backup(e) => serde_json::to_value(e).unwrap_or_default(),
                E::Verify(e) => serde_json::to_value(e).unwrap_or_default(),
                E::Checked(what) => serde_json::json!({"event": "checked", "what": what}),
                E::Started { workflow, what } => {
                    serde_json::json!({"event": "started", "workflow": workflow, "what": what})
                }
                E::HookStarted { name, command } => {
                    serde_json::json!({"event": "hook_started", "name": name, "command": command})
                }
                E::HookOutput { name, line } => {
                    serde_json::json!({"event": "hook_output", "name": name, "line": line})
                }
                E::HookFinished(o) => serde_json::json!({"event": "hook_finished", "hook": o}),
                E::Note(text) => serde_json::json!({"event": "note", "text": text}),
                E::Warning(text) => serde_json::json!({"event": "warning", "text": text}),
                E::Journaled(entry) => serde_json::json!({"event": "journaled", "entry": entry}),
            };
            json_stderr(&value.to_string());
            return;
        }
        match event {
            E::Deploy(e) => deploy_event(e, false),
            E::Backup(e) => self.backup.print(e),
            E::Verify(e) => stderr(&e.said()),
            E::Checked(what) | E::Note(what) => stderr(what),
            E::Started { .. } => {}
            E::HookStarted { name, command } => stderr(&format!("hook {name}: {command}")),
            E::HookOutput { line, .. } => stderr(&format!("  | {line}")),
            E::HookFinished(o) => stderr(&format!(
                "hook {}: {} in {:.1}s",
                o.name,
                o.describe(),
                o.duration_ms as f64 / 1000.0
            )),
            E::Warning(text) => stderr(&format!("warning: {text}")),
            E::Journaled(entry) => {
                if let crate::journal::Event::Override { what, reason } = &entry.event {
                    stderr(&format!("override: {what}: {reason}"));
                }
            }
        }
    }
}

/// Backup progress: a single updating line on a terminal, a line every few seconds otherwise,
/// JSON lines with --json.
pub struct BackupProgress {
    json: bool,
    tty: bool,
    last: Instant,
}

impl BackupProgress {
    pub fn new(json: bool) -> BackupProgress {
        BackupProgress {
            json,
            tty: std::io::stderr().is_terminal(),
            last: Instant::now() - std::time::Duration::from_secs(60),
        }
    }

    pub fn print(&mut self, event: &BackupEvent) {
        if self.json {
            json_stderr(&serde_json::to_string(event).unwrap_or_default());
            return;
        }
        match event {
            BackupEvent::Started {
                file,
                database_bytes,
                tables,
                estimated_bytes,
            } => stderr(&format!(
                "dumping {} tables ({} on disk, a dump of about {}) into {file}",
                tables,
                human_bytes(*database_bytes),
                human_bytes(*estimated_bytes as i64)
            )),
            BackupEvent::Progress { .. } => {
                if !self.tty && self.last.elapsed().as_secs() < 5 {
                    return;
                }
                self.last = Instant::now();
                let Some(line) = progress_line(event) else {
                    return;
                };
                if self.tty {
                    eprint!("\r{line}   ");
                } else {
                    stderr(&line);
                }
            }
            BackupEvent::Finished {
                bytes, elapsed_ms, ..
            } => {
                if self.tty {
                    eprintln!();
                }
                stderr(&format!(
                    "  done: {} in {:.1}s",
                    human_bytes(*bytes as i64),
                    *elapsed_ms as f64 / 1000.0
                ));
            }
            BackupEvent::Step { what } => stderr(&format!("  {what}")),
        }
    }
}

/// One line for a backup's progress: a bar from the fraction, bytes written against the
/// estimate, tables done, time elapsed and, once there is one, the ETA.
fn progress_line(event: &BackupEvent) -> Option<String> {
    let BackupEvent::Progress {
        bytes_written,
        estimated_bytes,
        tables_done,
        tables_total,
        fraction,
        elapsed_ms,
        eta_ms,
    } = event
    else {
        return None;
    };
    const WIDTH: usize = 20;
    let filled = ((fraction.clamp(0.0, 1.0) * WIDTH as f64) as usize).min(WIDTH);
    let eta = eta_ms
        .map(|e| format!(", ETA {}", human_duration(Duration::from_millis(e))))
        .unwrap_or_default();
    Some(format!(
        "  [{}{}] {:>3.0}%  {} of ~{}, {tables_done}/{tables_total} tables, {} elapsed{eta}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        // Floored, so that a dump still running never reads 100 %.
        (fraction * 100.0).floor(),
        human_bytes(*bytes_written as i64),
        human_bytes(*estimated_bytes as i64),
        human_duration(Duration::from_millis(*elapsed_ms)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(fraction: f64, eta_ms: Option<u64>) -> BackupEvent {
        BackupEvent::Progress {
            bytes_written: 8 << 20,
            estimated_bytes: 20 << 20,
            tables_done: 2,
            tables_total: 5,
            fraction,
            elapsed_ms: 4_200,
            eta_ms,
        }
    }

    #[test]
    fn the_progress_line_has_a_bar_bytes_against_the_estimate_tables_and_a_known_eta() {
        assert_eq!(
            progress_line(&event(0.4, Some(6_300))).unwrap(),
            "  [########............]  40%  8.0 MB of ~20.0 MB, 2/5 tables, 4 s elapsed, ETA 6 s"
        );
        assert_eq!(
            progress_line(&event(0.4, None)).unwrap(),
            "  [########............]  40%  8.0 MB of ~20.0 MB, 2/5 tables, 4 s elapsed"
        );
    }

    #[test]
    fn a_dump_still_running_never_reads_full() {
        let line = progress_line(&event(0.999, None)).unwrap();
        assert!(line.contains(" 99%"), "{line}");
        assert!(!line.contains("100%"), "{line}");
    }
}
