//! `pgdeck init`: a commented `pgdeck.toml` drafted from the project as Prisma sees it (the
//! migrations folder, the schema's datasource, the `.env` files), with development, staging and
//! production environments that name the variables their URLs are read from, and its writing,
//! which never replaces anything already at the path.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migrate::FolderSource;
use crate::target::Vars;

use super::prisma::{Project, Schema, UrlValue};

/// What `init` found and the file it drafted from it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub text: String,
    pub migrations: PathBuf,
    pub migrations_source: FolderSource,
    pub schema: Option<PathBuf>,
    /// How the schema (or prisma.config.ts) names the connection, in words.
    pub connection: String,
    /// Each environment and the variable it reads its URL from (None: the URL written in the
    /// schema is used).
    pub environments: Vec<(String, Option<String>)>,
    /// Whether the variables are of the direct connection (Prisma's `directUrl`).
    pub direct: bool,
    /// The `.env` files read, and the one that defines development's variable, if any does.
    pub env_files: Vec<PathBuf>,
    pub defined_in: Option<PathBuf>,
    /// Things to know before the next command, in words.
    pub notes: Vec<String>,
}

/// The variable development reads, how the schema names it, and whether it is direct.
struct Variable {
    name: Option<String>,
    said: String,
    direct: bool,
    pooled: Option<String>,
}

fn variable(project: &Project, schema: Option<&Schema>) -> Result<Variable> {
    let ds = schema.and_then(|s| s.datasource.as_ref());
    let file = schema
        .map(|s| s.datasource_file.clone().unwrap_or_else(|| s.path.clone()))
        .unwrap_or_default();
    let pooled = match ds.and_then(|d| d.url.as_ref()) {
        Some(UrlValue::Env(v)) => Some(v.clone()),
        _ => None,
    };
    if let Some(direct) = ds.and_then(|d| d.direct_url.as_ref()) {
        return Ok(match direct {
            UrlValue::Env(v) => Variable {
                name: Some(v.clone()),
                said: format!("directUrl = env(\"{v}\") in {}", file.display()),
                direct: true,
                pooled,
            },
            UrlValue::Literal(_) => Variable {
                name: None,
                said: format!("a directUrl written out in {}", file.display()),
                direct: true,
                pooled,
            },
        });
    }
    if let Some(super::prisma::ConfigUrls {
        file: cfg,
        url,
        direct,
    }) = project.config_urls()?
        && let Some((value, is_direct)) = direct.map(|d| (d, true)).or(url.map(|u| (u, false)))
    {
        return Ok(match value {
            UrlValue::Env(v) => Variable {
                said: format!("the datasource in {} reads env(\"{v}\")", cfg.display()),
                name: Some(v),
                direct: is_direct,
                pooled: None,
            },
            UrlValue::Literal(_) => Variable {
                name: None,
                said: format!("a URL written out in {}", cfg.display()),
                direct: is_direct,
                pooled: None,
            },
        });
    }
    Ok(match ds.and_then(|d| d.url.as_ref()) {
        Some(UrlValue::Env(v)) => Variable {
            name: Some(v.clone()),
            said: format!("url = env(\"{v}\") in {} (no directUrl)", file.display()),
            direct: false,
            pooled: None,
        },
        Some(UrlValue::Literal(_)) => Variable {
            name: None,
            said: format!("a url written out in {}", file.display()),
            direct: false,
            pooled: None,
        },
        None => Variable {
            name: Some("DATABASE_URL".into()),
            said: "DATABASE_URL, Prisma's default".into(),
            direct: false,
            pooled: None,
        },
    })
}

/// A TOML string of `text`, quoted and escaped.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Drafts the config for the project in `root`; `migrations` is the folder given on the
/// command line, if any. `vars` is the process environment, to say whether the variables are
/// set already.
pub fn draft(root: &Path, migrations: Option<&Path>, vars: &dyn Vars) -> Result<Draft> {
    let project = Project::read(root);
    let (migrations, migrations_source) = match migrations {
        Some(m) => (m.to_owned(), FolderSource::CommandLine),
        None => project.migrations_dir()?,
    };
    let schema = project.schema()?;
    let var = variable(&project, schema.as_ref())?;
    let dotenv = project.dotenv(schema.as_ref().map(Schema::folder).as_deref())?;
    let env_files: Vec<PathBuf> = dotenv.paths().iter().map(|p| p.to_path_buf()).collect();
    let defined_in = var
        .name
        .as_deref()
        .and_then(|n| dotenv.defines(n))
        .map(Path::to_owned);

    let base = var.name.clone().unwrap_or_else(|| {
        if var.direct {
            "DIRECT_URL".into()
        } else {
            "DATABASE_URL".into()
        }
    });
    let environments = vec![
        ("development".to_owned(), var.name.clone()),
        ("staging".to_owned(), Some(format!("STAGING_{base}"))),
        ("production".to_owned(), Some(format!("PRODUCTION_{base}"))),
    ];

    let mut notes = Vec::new();
    if !migrations.is_dir() {
        notes.push(format!(
            "{} does not exist yet: it is where migrations will be looked for",
            migrations.display()
        ));
    }
    if let Some(name) = &var.name
        && vars.var(name).is_none()
        && defined_in.is_none()
    {
        notes.push(format!(
            "{name} is set neither in the environment nor in a .env file: set it before the next command"
        ));
    }
    if var.direct
        && let Some(pooled) = &var.pooled
    {
        notes.push(format!(
            "{pooled} (the pooled url) is left to the application: every environment here reads the direct connection"
        ));
    }

    let found = |label: &str, value: String| format!("#   {label:<13} {value}\n");
    let mut header = String::new();
    header.push_str(&found(
        "migrations",
        format!(
            "{}{}",
            migrations.display(),
            match &migrations_source {
                FolderSource::CommandLine => " (given)".to_owned(),
                FolderSource::PackageJson { .. } => " (package.json's prisma.schema)".to_owned(),
                FolderSource::PrismaConfig { file }
                | FolderSource::PrismaConfigSchema { file, .. } => format!(" ({})", file.display()),
                FolderSource::PrismaSchema => " (beside prisma/schema.prisma)".to_owned(),
                FolderSource::PrismaFolder { .. } => " (Prisma's folder)".to_owned(),
                _ => String::new(),
            }
        ),
    ));
    header.push_str(&found(
        "schema",
        schema
            .as_ref()
            .map(|s| s.path.display().to_string())
            .unwrap_or_else(|| "none found".into()),
    ));
    header.push_str(&found("connection", var.said.clone()));
    header.push_str(&found(
        ".env files",
        if env_files.is_empty() {
            "none".into()
        } else {
            format!(
                "{} (read for what the environment lacks; no value is copied here)",
                env_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    ));

    let dir = toml_string(&migrations.to_string_lossy());
    let why_direct = if var.direct {
        "# The direct connection, as Prisma's directUrl: migrations need a session of their own (a\n\
         # pooler in transaction mode keeps neither the migration lock nor session settings).\n"
    } else {
        ""
    };
    let development = match &var.name {
        Some(name) => format!(
            "{why_direct}# Read from the environment, else from the .env files, as Prisma reads it.\n\
             database_url_env = {}\n",
            toml_string(name)
        ),
        None => "# No database_url_env: the URL written in the Prisma schema (or prisma.config.ts) is used.\n"
            .to_owned(),
    };
    let staging_var = toml_string(&format!("STAGING_{base}"));
    let production_var = toml_string(&format!("PRODUCTION_{base}"));
    let text = format!(
        "# pgdeck configuration for this project, drafted by `pgdeck init` from what it found:\n\
{header}\
#\n\
# Every key is explained in config/pgdeck.toml of pgdeck's repository. Unknown keys are errors,\n\
# so a typo never falls back to a default silently. Relative paths are relative to the folder\n\
# pgdeck runs in. It holds the names of variables, never a password: check it in.\n\
\n\
# The environment used when neither --env nor $PGDECK_ENV names one.\n\
default_environment = \"development\"\n\
\n\
[environments.development]\n\
{development}\
migrations = {dir}\n\
\n\
[environments.staging]\n\
# Set in CI (or the shell) to staging's URL{staging_direct}.\n\
database_url_env = {staging_var}\n\
migrations = {dir}\n\
# Every migration's DDL waits at most this long for a lock, then rolls back and is retried.\n\
lock_timeout = \"5s\"\n\
lock_retries = 3\n\
\n\
[environments.production]\n\
database_url_env = {production_var}\n\
migrations = {dir}\n\
# Protected: deploy, resolve, rollbacks and restores need the database name typed (or\n\
# --confirm DBNAME in scripts); deploy also needs a verified backup of this database younger\n\
# than backup_max_age, and every DANGEROUS lint finding acknowledged; reset is refused.\n\
protected = true\n\
backup_dir = \"backups/production\"\n\
backup_max_age = \"24h\"\n\
backup_retention_days = 30\n\
lock_timeout = \"3s\"\n\
lock_retries = 5\n\
# Refuse connections that do not insist on TLS (sslmode=require, verify-ca or verify-full).\n\
# require_tls = true\n\
# The console's \"Migration tested on staging\" reads staging's ledger instead of a tick.\n\
rehearsed_on = \"staging\"\n\
\n\
# A Slack-compatible webhook hears about deploy start, success and failure: name its variable.\n\
# [environments.production.hooks]\n\
# webhook_url_env = \"SLACK_WEBHOOK_URL\"\n",
        staging_direct = if var.direct {
            ", the direct connection"
        } else {
            ""
        },
    );
    Ok(Draft {
        text,
        migrations,
        migrations_source,
        schema: schema.map(|s| s.path),
        connection: var.said,
        environments,
        direct: var.direct,
        env_files,
        defined_in,
        notes,
    })
}

/// Writes the draft at `path`, only where nothing is: an existing file, a symbolic link or a
/// FIFO there is refused and left as it was.
pub fn write(path: &Path, draft: &Draft) -> Result<()> {
    crate::db::files::create_new(path, draft.text.as_bytes()).map_err(|e| match e {
        crate::db::files::Refused::Exists(what) => Error::input(
            format!("{} is not written: {what} is already there", path.display()),
            "nothing was changed; edit that file, or move it away first to draft a new one",
        ),
        crate::db::files::Refused::NotFound => Error::input(
            format!(
                "{} is not written: its folder does not exist",
                path.display()
            ),
            "create the folder first, or name another path",
        ),
        e => Error::runtime(
            format!("{} is not written: {e}", path.display()),
            "check the folder's permissions and free space",
        ),
    })
}

/// The config file the lookup would read before `path`, if one would: the new file would then
/// not be the one read.
pub fn shadowed_by(path: &Path, vars: &dyn Vars) -> Option<PathBuf> {
    if let Some(c) = vars.var("PGDECK_CONFIG") {
        return (Path::new(&c) != path).then(|| PathBuf::from(c));
    }
    // ./pgdeck.toml is read first; config/pgdeck.toml only when it is absent.
    let first = Path::new("pgdeck.toml");
    (path != first && matches!(crate::db::files::regular(first), Ok(true)))
        .then(|| first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_draft_names_the_direct_variable_and_parses_with_production_protected() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("prisma/migrations/1_init")).unwrap();
        std::fs::write(
            root.join("prisma/schema.prisma"),
            "datasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n  directUrl = env(\"DIRECT_URL\")\n}\n",
        )
        .unwrap();
        std::fs::write(root.join(".env"), "DIRECT_URL=postgresql://a:pw@h/db\n").unwrap();
        let draft = draft(root, None, &none).unwrap();
        assert!(draft.direct);
        assert_eq!(
            draft.environments,
            [
                ("development".to_owned(), Some("DIRECT_URL".to_owned())),
                ("staging".to_owned(), Some("STAGING_DIRECT_URL".to_owned())),
                (
                    "production".to_owned(),
                    Some("PRODUCTION_DIRECT_URL".to_owned())
                ),
            ]
        );
        assert_eq!(draft.defined_in, Some(root.join(".env")));
        assert!(!draft.text.contains("pw@"), "{}", draft.text);
        let parsed: super::super::FileConfig = toml::from_str(&draft.text).unwrap();
        assert_eq!(parsed.default_environment.as_deref(), Some("development"));
        assert!(parsed.environments["production"].protected);
        assert!(!parsed.environments["staging"].protected);
        assert_eq!(
            parsed.environments["development"]
                .database_url_env
                .as_deref(),
            Some("DIRECT_URL")
        );
        assert_eq!(
            parsed.environments["production"].migrations,
            Some(root.join("prisma/migrations"))
        );
        assert!(
            draft
                .notes
                .iter()
                .any(|n| n.contains("DATABASE_URL (the pooled url)")),
            "{:?}",
            draft.notes
        );
    }

    #[test]
    fn without_a_schema_the_draft_reads_database_url_and_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let draft = draft(dir.path(), None, &none).unwrap();
        assert!(!draft.direct);
        assert_eq!(draft.environments[0].1.as_deref(), Some("DATABASE_URL"));
        assert_eq!(
            draft.environments[2].1.as_deref(),
            Some("PRODUCTION_DATABASE_URL")
        );
        assert!(
            draft
                .notes
                .iter()
                .any(|n| n.contains("DATABASE_URL is set neither")),
            "{:?}",
            draft.notes
        );
        let _: super::super::FileConfig = toml::from_str(&draft.text).unwrap();
    }
}
