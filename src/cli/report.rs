//! `pgdeck report`: a console session's journal as the Markdown release report.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{GlobalArgs, exit, output};
use crate::config::{self, EnvironmentChoice, Overrides};
use crate::error::{Error, Result};
use crate::journal;
use crate::target::ProcessVars;

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A journal file (default: the environment's newest session)
    #[arg(long, value_name = "FILE")]
    pub session: Option<PathBuf>,
    /// Write the report to this file instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(g: &GlobalArgs, args: &ReportArgs) -> Result<u8> {
    let path = match &args.session {
        Some(p) => p.clone(),
        None => newest_session(g, &journal::default_dir())?,
    };
    let entries = journal::read(&path)?;
    let text = journal::markdown(&entries);
    match &args.output {
        Some(out) => {
            crate::db::files::writable(out).map_err(|e| {
                Error::input(
                    format!("cannot write {}: {e}", out.display()),
                    "write the report to a regular file",
                )
            })?;
            std::fs::write(out, &text).map_err(|e| {
                Error::runtime(
                    format!("cannot write {}: {e}", out.display()),
                    "check the folder exists and is writable",
                )
            })?;
            output::stderr(&format!("report written to {}", out.display()));
        }
        None => output::stdout(text.trim_end()),
    }
    Ok(exit::OK)
}

/// The newest session of the environment the report is for. Only its name matters: the journal
/// needs no connection, so `--env NAME` needs no config file defining it. An environment asked
/// for is the only one looked at. Otherwise `pgdeck demo`'s sessions are found too: with no
/// config file, the newest of a run without one (environment `default`) and of the demo; with
/// one, the demo's when the configured environment has none (run where the repository's
/// `config/pgdeck.toml` is found, as `cargo run -- demo` is).
fn newest_session(g: &GlobalArgs, dir: &Path) -> Result<PathBuf> {
    let overrides = Overrides {
        env: g.env.clone(),
        config: g.config.clone(),
        database_url: g.database_url.clone(),
        migrations: g.migrations.clone(),
    };
    let demo = super::demo::ENVIRONMENT.to_owned();
    let newest_of = |envs: &[String]| -> Result<Option<PathBuf>> {
        let mut newest: Option<PathBuf> = None;
        for env in envs {
            if let Some(p) = journal::sessions(dir, env)?.into_iter().next()
                && newest
                    .as_ref()
                    .is_none_or(|n| p.file_name() > n.file_name())
            {
                newest = Some(p);
            }
        }
        Ok(newest)
    };
    let (candidates, found) = match config::environment_name(&overrides, &ProcessVars)? {
        EnvironmentChoice::Requested(name) => {
            let found = newest_of(std::slice::from_ref(&name))?;
            (vec![name], found)
        }
        EnvironmentChoice::Unconfigured => {
            let envs = vec!["default".to_owned(), demo];
            let found = newest_of(&envs)?;
            (envs, found)
        }
        EnvironmentChoice::Configured(name) => {
            let found = match newest_of(std::slice::from_ref(&name))? {
                Some(p) => Some(p),
                None => newest_of(std::slice::from_ref(&demo))?.inspect(|_| {
                    output::stderr(&format!(
                        "no session of environment '{name}': the report is of `pgdeck demo`'s newest session"
                    ));
                }),
            };
            (vec![name, demo], found)
        }
    };
    found.ok_or_else(|| nothing_for(&candidates, dir))
}

/// No session of `candidates`: which environments do have sessions in `dir`, and how to ask.
fn nothing_for(candidates: &[String], dir: &Path) -> Error {
    let asked = candidates
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(" or ");
    let others = journal::environments(dir).unwrap_or_default();
    if others.is_empty() {
        return Error::input(
            format!(
                "no session of environment {asked} in {}, nor of any other",
                dir.display()
            ),
            "run the console (`pgdeck`, or `pgdeck demo`) first, or pass --session FILE (PGDECK_JOURNAL_DIR moves the journal folder)",
        );
    }
    let listed = others
        .iter()
        .map(|(name, n, newest)| {
            // A session's file is named after its start: `%Y%m%d_%H%M%S[_n].jsonl`.
            let stem = newest
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let when = stem
                .get(..15)
                .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%d_%H%M%S").ok())
                .map_or(stem.clone(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
            format!(
                "{name} ({n} session{}, newest {when})",
                if *n == 1 { "" } else { "s" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Error::input(
        format!(
            "no session of environment {asked} in {}; sessions there: {listed}",
            dir.display()
        ),
        format!(
            "pass --env NAME (e.g. --env {}), or --session FILE",
            others[0].0
        ),
    )
}
