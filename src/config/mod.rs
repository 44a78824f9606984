//! Configuration: finding and reading `pgdeck.toml`, choosing an environment, and resolving it
//! into an [`Environment`] with a [`DbTarget`]. Reads files and variables; connects to nothing.

pub mod secret;
mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
pub use target::{DbTarget, Host, ProcessVars, SslMode, Vars};

/// What the command line says about configuration; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub env: Option<String>,
    pub config: Option<PathBuf>,
    pub database_url: Option<String>,
    pub migrations: Option<PathBuf>,
}

/// One environment, resolved and validated: everything a command needs to act on it.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    pub protected: bool,
    pub target: DbTarget,
    pub migrations_dir: PathBuf,
    pub deploy: DeploySettings,
    /// The config file it came from, if any.
    pub source: Option<PathBuf>,
}

/// How `deploy` behaves on this environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploySettings {
    /// `lock_timeout` for every migration's DDL.
    pub lock_timeout: Duration,
    /// How many times a migration that hit `lock_timeout` is tried again.
    pub lock_retries: u32,
    /// How long to wait for another deploy's migration lock before giving up.
    pub lock_wait: Duration,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            lock_timeout: Duration::from_secs(5),
            lock_retries: 3,
            lock_wait: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    default_environment: Option<String>,
    #[serde(default)]
    environments: BTreeMap<String, EnvironmentFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentFile {
    /// A literal URL. Prefer `database_url_env` for anything with a password.
    database_url: Option<String>,
    /// The name of a variable holding the URL, e.g. "PRODUCTION_DATABASE_URL".
    database_url_env: Option<String>,
    migrations: Option<PathBuf>,
    #[serde(default)]
    protected: bool,
    lock_timeout: Option<String>,
    lock_retries: Option<u32>,
    lock_wait: Option<String>,
}

/// The config file that applies, by DESIGN's lookup order: `--config`, `$PGDECK_CONFIG`,
/// `./pgdeck.toml`, `./config/pgdeck.toml`, then the user config dir.
pub fn find_config_file(explicit: Option<&Path>, vars: &dyn Vars) -> Result<Option<PathBuf>> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(Some(path.to_owned()))
        } else {
            Err(Error::input(
                format!("config file {} does not exist", path.display()),
                "check the --config path",
            ))
        };
    }
    if let Some(path) = vars.var("PGDECK_CONFIG") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(Error::input(
                format!(
                    "PGDECK_CONFIG names {}, which does not exist",
                    path.display()
                ),
                "fix or unset PGDECK_CONFIG",
            ))
        };
    }
    let mut candidates = vec![
        PathBuf::from("pgdeck.toml"),
        PathBuf::from("config/pgdeck.toml"),
    ];
    if let Some(dirs) = directories::ProjectDirs::from("dev", "pgdeck", "pgdeck") {
        candidates.push(dirs.config_dir().join("pgdeck.toml"));
    }
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

/// Resolves the environment a command acts on.
pub fn resolve(overrides: &Overrides, vars: &dyn Vars) -> Result<Environment> {
    let file = find_config_file(overrides.config.as_deref(), vars)?;
    let parsed = match &file {
        Some(path) => Some(read_config(path)?),
        None => None,
    };
    let (name, env_file) = choose_environment(parsed.as_ref(), overrides, vars, file.as_deref())?;

    let mut deploy = DeploySettings::default();
    let mut protected = false;
    let mut migrations = None;
    let mut url = None;
    if let Some(env) = env_file {
        protected = env.protected;
        migrations = env.migrations.clone();
        if let Some(t) = &env.lock_timeout {
            deploy.lock_timeout = parse_duration(&name, "lock_timeout", t)?;
        }
        if let Some(t) = &env.lock_wait {
            deploy.lock_wait = parse_duration(&name, "lock_wait", t)?;
        }
        if let Some(n) = env.lock_retries {
            deploy.lock_retries = n;
        }
        url = match (&env.database_url, &env.database_url_env) {
            (Some(_), Some(_)) => {
                return Err(Error::input(
                    format!("environment '{name}' sets both database_url and database_url_env"),
                    "keep one of them (database_url_env keeps the password out of the file)",
                ));
            }
            (Some(u), None) => Some(u.clone()),
            (None, Some(var)) => Some(vars.var(var).ok_or_else(|| {
                Error::input(
                    format!("environment '{name}' reads its URL from ${var}, which is not set"),
                    format!("export {var}=postgresql://USER:PASSWORD@HOST:PORT/DATABASE"),
                )
            })?),
            (None, None) => None,
        };
    }
    let url = overrides
        .database_url
        .clone()
        .or(url)
        .or_else(|| vars.var("DATABASE_URL"));
    let target = match url {
        Some(u) => DbTarget::from_url(&u, vars)?,
        None => DbTarget::from_vars(vars)?,
    };
    let migrations_dir = overrides
        .migrations
        .clone()
        .or(migrations)
        .unwrap_or_else(default_migrations_dir);
    Ok(Environment {
        name,
        protected,
        target,
        migrations_dir,
        deploy,
        source: file,
    })
}

fn read_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::input(
            format!("cannot read config file {}: {e}", path.display()),
            "check the file exists, is readable and is UTF-8",
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let line = text[..span.start].matches('\n').count() + 1;
                format!(" at line {line}")
            })
            .unwrap_or_default();
        let msg = e.message().replace('\n', " ");
        Error::input(
            format!("config file {}{at}: {msg}", path.display()),
            "see config/pgdeck.toml in the pgdeck repository for every key with its meaning",
        )
    })
}

fn choose_environment<'a>(
    parsed: Option<&'a FileConfig>,
    overrides: &Overrides,
    vars: &dyn Vars,
    file: Option<&Path>,
) -> Result<(String, Option<&'a EnvironmentFile>)> {
    let requested = overrides.env.clone().or_else(|| vars.var("PGDECK_ENV"));
    let Some(cfg) = parsed else {
        return match requested {
            Some(name) => Err(Error::input(
                format!("environment '{name}' requested but no config file was found"),
                "create pgdeck.toml (see config/pgdeck.toml) or drop --env / PGDECK_ENV",
            )),
            None => Ok(("default".into(), None)),
        };
    };
    let file = file.map(|f| f.display().to_string()).unwrap_or_default();
    let names = || {
        cfg.environments
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = match requested.or_else(|| cfg.default_environment.clone()) {
        Some(name) => name,
        None if cfg.environments.len() == 1 => {
            cfg.environments.keys().next().cloned().unwrap_or_default()
        }
        None if cfg.environments.contains_key("development") => "development".into(),
        None if cfg.environments.is_empty() => return Ok(("default".into(), None)),
        None => {
            return Err(Error::input(
                format!("{file} defines several environments and none is chosen"),
                format!(
                    "pass --env NAME (one of: {}) or set default_environment",
                    names()
                ),
            ));
        }
    };
    match cfg.environments.get(&name) {
        Some(env) => Ok((name, Some(env))),
        None => Err(Error::input(
            format!("environment '{name}' is not defined in {file}"),
            format!("defined environments: {}", names()),
        )),
    }
}

fn parse_duration(env: &str, key: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text).map_err(|e| {
        Error::input(
            format!("environments.{env}.{key} = \"{text}\" is not a duration: {e}"),
            "write durations like \"5s\", \"500ms\" or \"2m\"",
        )
    })
}

/// `./migrations`, or Prisma's default `./prisma/migrations` when only that exists.
fn default_migrations_dir() -> PathBuf {
    let ours = PathBuf::from("migrations");
    let prisma = PathBuf::from("prisma/migrations");
    if !ours.exists() && prisma.is_dir() {
        prisma
    } else {
        ours
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn no_vars(_: &str) -> Option<String> {
        None
    }

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgdeck.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn resolve_with(path: &Path, env: Option<&str>) -> Result<Environment> {
        let overrides = Overrides {
            env: env.map(String::from),
            config: Some(path.to_owned()),
            ..Default::default()
        };
        resolve(&overrides, &no_vars)
    }

    #[test]
    fn the_example_config_parses_and_production_is_protected() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pgdeck.toml");
        let cfg = read_config(&path).unwrap();
        assert!(cfg.environments.contains_key("development"));
        assert!(cfg.environments.contains_key("staging"));
        assert!(cfg.environments["production"].protected);
    }

    #[test]
    fn environment_settings_are_resolved() {
        let (_d, path) = write_config(
            r#"
            default_environment = "staging"
            [environments.staging]
            database_url = "postgresql://deploy@stage-db:5433/app?schema=shop"
            lock_timeout = "750ms"
            lock_retries = 5
            migrations = "db/migrations"
            "#,
        );
        let env = resolve_with(&path, None).unwrap();
        assert_eq!(env.name, "staging");
        assert_eq!(env.target.port, 5433);
        assert_eq!(env.target.schema, "shop");
        assert_eq!(env.deploy.lock_timeout, Duration::from_millis(750));
        assert_eq!(env.deploy.lock_retries, 5);
        assert_eq!(env.migrations_dir, PathBuf::from("db/migrations"));
    }

    #[test]
    fn config_mistakes_are_input_errors_with_a_location() {
        let cases = [
            ("[environments.dev\n", "line"),
            ("[environments.dev]\nprotectd = true\n", "unknown field"),
            ("[environments.dev]\nprotected = \"yes\"\n", "invalid type"),
            (
                "[environments.dev]\nlock_timeout = \"soon\"\n",
                "not a duration",
            ),
        ];
        for (text, expected) in cases {
            let (_d, path) = write_config(text);
            let err = resolve_with(&path, None).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Input, "{text}");
            assert!(err.cause.contains(expected), "{text}: {}", err.cause);
        }
    }

    #[test]
    fn a_missing_environment_names_the_defined_ones() {
        let (_d, path) =
            write_config("[environments.dev]\n[environments.prod]\nprotected = true\n");
        let err = resolve_with(&path, Some("staging")).unwrap_err();
        assert!(
            err.cause.contains("'staging' is not defined"),
            "{}",
            err.cause
        );
        assert!(err.hint.contains("dev, prod"), "{}", err.hint);
    }
}
