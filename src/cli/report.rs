//! `pgdeck report`: a console session's journal as the Markdown release report.

use std::path::PathBuf;

use clap::Args;

use super::{exit, output};
use crate::error::{Error, Result};
use crate::journal;
use crate::release::Environment;

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A journal file (default: the environment's newest session)
    #[arg(long, value_name = "FILE")]
    pub session: Option<PathBuf>,
    /// Write the report to this file instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(env: &Environment, args: &ReportArgs) -> Result<u8> {
    let path = match &args.session {
        Some(p) => p.clone(),
        None => {
            let dir = journal::default_dir();
            journal::sessions(&dir, &env.name)?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    Error::input(
                        format!(
                            "no console session of environment '{}' in {}",
                            env.name,
                            dir.display()
                        ),
                        "run the console (`pgdeck`) first, or pass --session FILE",
                    )
                })?
        }
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
