//! `pgdeck init`: drafts `pgdeck.toml` from the project (config's `init`) and says what it
//! wrote and what to do before the next command.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::output;
use super::{GlobalArgs, exit};
use crate::config::init;
use crate::error::{Error, Result};
use crate::target::ProcessVars;

pub fn run(g: &GlobalArgs) -> Result<u8> {
    for (given, flag) in [
        (g.env.is_some(), "--env"),
        (g.database_url.is_some(), "--database-url"),
    ] {
        if given {
            return Err(Error::input(
                format!("init writes development, staging and production, and {flag} names one"),
                format!(
                    "drop {flag}; the file names the variables each environment reads its URL from"
                ),
            ));
        }
    }
    let path = g
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("pgdeck.toml"));
    let draft = init::draft(Path::new(""), g.migrations.as_deref(), &ProcessVars)?;
    init::write(&path, &draft)?;

    let mut notes = draft.notes.clone();
    if let Some(first) = init::shadowed_by(&path, &ProcessVars) {
        notes.push(format!(
            "{} is read before it: move that one away, or pass --config {}",
            first.display(),
            path.display()
        ));
    } else if path != Path::new("pgdeck.toml") && path != Path::new("config/pgdeck.toml") {
        notes.push(format!(
            "pgdeck does not look for {} by itself: pass --config {} (or set PGDECK_CONFIG)",
            path.display(),
            path.display()
        ));
    }
    if g.json {
        output::json(&json!({
            "ok": true,
            "path": path,
            "migrations_dir": {
                "path": draft.migrations,
                "source": draft.migrations_source,
                "description": output::folder_words(&draft.migrations_source),
            },
            "schema": draft.schema,
            "connection": draft.connection,
            "direct": draft.direct,
            "environments": draft.environments.iter().map(|(name, var)| json!({
                "name": name,
                "database_url_env": var,
                "protected": name == "production",
            })).collect::<Vec<_>>(),
            "env_files": draft.env_files,
            "defined_in": draft.defined_in,
            "notes": notes,
        }));
    } else {
        let mut out = format!("wrote {}\n", path.display());
        out.push_str(&format!(
            "  migrations   {}{}\n",
            draft.migrations.display(),
            output::folder_words(&draft.migrations_source)
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        ));
        for (name, var) in &draft.environments {
            let detail = match (name.as_str(), var) {
                ("development", Some(v)) => format!(
                    "${v} ({}{})",
                    draft.connection,
                    draft
                        .defined_in
                        .as_ref()
                        .map(|f| format!("; set in {}", f.display()))
                        .unwrap_or_default()
                ),
                ("development", None) => draft.connection.clone(),
                ("production", Some(v)) => format!("${v} (protected)"),
                (_, Some(v)) => format!("${v}"),
                (_, None) => String::new(),
            };
            out.push_str(&format!("  {name:<12} {detail}\n"));
        }
        out.push_str("review it, then `pgdeck status` reads it; check it in: it holds no password");
        output::stdout(&out);
        for n in &notes {
            output::stderr(&format!("note: {n}"));
        }
    }
    Ok(exit::OK)
}
