//! Configuration: finding and reading `pgdeck.toml`, choosing an environment, and resolving it
//! into a [`Resolved`] environment (each room's settings) with a [`DbTarget`]. Reads files and variables; connects to nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod fleet;
pub mod init;
pub mod limits;
pub mod prisma;

use crate::backup::BackupSettings;
use crate::backup::pgbackrest::PgbackrestSettings;
use crate::checklist::{ChecklistSettings, ExtraItem};
use crate::error::{Error, Result};
use crate::health::{Endpoint, HealthSettings, MetricsSource};
use crate::hooks::{HookSettings, Webhook};
use crate::lint::LintSettings;
use crate::migrate::{DeploySettings, FolderSource};
use crate::monitor::MonitorSettings;
use crate::monitor::logs::{AppLog, LogSettings};
use crate::target::source::{NamedBy, UrlSource};
use crate::target::{DbTarget, SslMode, Vars};
use squawk_linter::Rule;

/// What the command line says about configuration; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub env: Option<String>,
    pub config: Option<PathBuf>,
    pub database_url: Option<String>,
    pub migrations: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    default_environment: Option<String>,
    #[serde(default)]
    environments: BTreeMap<String, EnvironmentFile>,
    /// `[fleets.<name>]`: the databases one release goes to (`fleet.rs`).
    #[serde(default)]
    fleets: BTreeMap<String, fleet::FleetFile>,
    /// The environments' names in the order the file defines them (development, staging,
    /// production as a team writes them, not alphabetically).
    #[serde(skip)]
    order: Vec<String>,
}

/// Where each environment's table starts in the file, for [`FileConfig::order`].
#[derive(Deserialize)]
struct EnvironmentSpans {
    #[serde(default)]
    environments: BTreeMap<String, toml::Spanned<serde::de::IgnoredAny>>,
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
    /// The lock-queue watchdog's bound; "off" turns it off.
    blocking_timeout: Option<String>,
    lock_retries: Option<u32>,
    lock_wait: Option<String>,
    #[serde(default)]
    lint: LintFile,
    backup_dir: Option<PathBuf>,
    backup_retention_days: Option<u32>,
    backup_keep_verified: Option<usize>,
    backup_max_age: Option<String>,
    /// "pg_dump" (the default) or "pgbackrest".
    backup_tool: Option<String>,
    pgbackrest_stanza: Option<String>,
    pgbackrest_config: Option<PathBuf>,
    /// The program and its leading arguments, e.g. ["sudo", "-u", "postgres", "pgbackrest"].
    pgbackrest_command: Option<Vec<String>>,
    /// Archiving is healthy only if the last archived WAL segment is younger than this.
    max_archive_age: Option<String>,
    restore_checks: Option<Vec<String>>,
    #[serde(default)]
    read_only: bool,
    /// Refuse connections whose sslmode does not insist on TLS (require, verify-ca, verify-full).
    #[serde(default)]
    require_tls: bool,
    #[serde(default)]
    health: HealthFile,
    #[serde(default)]
    checklist: ChecklistFile,
    #[serde(default)]
    hooks: HooksFile,
    /// The application's log file, followed like `tail -F`.
    app_log: Option<PathBuf>,
    /// Or a command whose output is the application's log (`kubectl logs -f deploy/api`).
    app_log_command: Option<String>,
    /// Error lines per minute in a followed log past which it alerts.
    log_alert_per_minute: Option<u32>,
    /// The environment this one's releases are rehearsed on first ("staging").
    rehearsed_on: Option<String>,
    /// The server's own URL when `database_url` goes through a pooler (Prisma's `directUrl`):
    /// every pgdeck session uses it.
    direct_url: Option<String>,
    direct_url_env: Option<String>,
    /// Deploy pauses while a standby's replay lag is above this ("64MB"; "off").
    max_replica_lag: Option<String>,
    /// ...and gives up after this long (exit code 17).
    replica_lag_wait: Option<String>,
    /// The monitor's and health's alerts: replay lag in bytes and in time, WAL kept by an
    /// inactive slot.
    replica_lag_alert: Option<String>,
    replica_lag_time_alert: Option<String>,
    slot_retained_alert: Option<String>,
    /// PgBouncer's admin console, for the pools pane and health's connection figure.
    pgbouncer_admin_url: Option<String>,
    pgbouncer_admin_url_env: Option<String>,
    /// A pool's servers in use past this share of its pool size alerts (runbook: 80).
    pool_alert_pct: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HooksFile {
    timeout: Option<String>,
    before_deploy: Option<String>,
    after_deploy: Option<String>,
    maintenance_on: Option<String>,
    maintenance_off: Option<String>,
    code_rollback: Option<String>,
    restart: Option<String>,
    smoke_test: Option<String>,
    integration_tests: Option<String>,
    /// The variable holding a Slack-compatible webhook URL.
    webhook_url_env: Option<String>,
    webhook_retries: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecklistFile {
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    extra: Vec<ExtraItem>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    window: Option<String>,
    probes: Option<Vec<String>>,
    probe_samples: Option<usize>,
    probe_timeout: Option<String>,
    #[serde(default)]
    endpoints: Vec<EndpointFile>,
    metrics: Option<MetricsFile>,
    error_rate_warn_pct: Option<f64>,
    error_rate_alert_pct: Option<f64>,
    errors_per_minute_warn: Option<f64>,
    errors_per_minute_alert: Option<f64>,
    p95_warn_ratio: Option<f64>,
    p95_alert_ratio: Option<f64>,
    p95_min_increase: Option<String>,
    connections_warn_pct: Option<f64>,
    connections_alert_pct: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFile {
    name: Option<String>,
    url: String,
    expect_status: Option<u16>,
    body_contains: Option<String>,
    timeout: Option<String>,
    slow: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    url: String,
    requests: Option<String>,
    errors: Option<String>,
    status_label: Option<String>,
    latency: Option<String>,
    timeout: Option<String>,
    bearer_token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LintFile {
    /// squawk rules to add to its defaults (opt-in rules such as "require-table-schema").
    #[serde(default)]
    include: Vec<String>,
    /// squawk rules to switch off.
    #[serde(default)]
    exclude: Vec<String>,
    /// A table with at least this many estimated rows is large.
    large_table_rows: Option<i64>,
    /// A table at least this big (e.g. "1GB") is large.
    large_table_size: Option<String>,
}

/// The config file that applies, by DESIGN's lookup order: `--config`, `$PGDECK_CONFIG`,
/// `./pgdeck.toml`, `./config/pgdeck.toml`, then the user config dir.
pub fn find_config_file(explicit: Option<&Path>, vars: &dyn Vars) -> Result<Option<PathBuf>> {
    let refused = |path: &Path, e: crate::db::files::Refused| {
        Error::input(
            format!("config file {} is not read: {e}", path.display()),
            "point at the pgdeck.toml file itself",
        )
    };
    if let Some(path) = explicit {
        return match crate::db::files::regular(path) {
            Ok(true) => Ok(Some(path.to_owned())),
            Ok(false) => Err(Error::input(
                format!("config file {} does not exist", path.display()),
                "check the --config path",
            )),
            Err(e) => Err(refused(path, e)),
        };
    }
    if let Some(path) = vars.var("PGDECK_CONFIG") {
        let path = PathBuf::from(path);
        return match crate::db::files::regular(&path) {
            Ok(true) => Ok(Some(path)),
            Ok(false) => Err(Error::input(
                format!(
                    "PGDECK_CONFIG names {}, which does not exist",
                    path.display()
                ),
                "fix or unset PGDECK_CONFIG",
            )),
            Err(e) => Err(refused(&path, e)),
        };
    }
    let mut candidates = vec![
        PathBuf::from("pgdeck.toml"),
        PathBuf::from("config/pgdeck.toml"),
    ];
    if let Some(dirs) = directories::ProjectDirs::from("dev", "pgdeck", "pgdeck") {
        candidates.push(dirs.config_dir().join("pgdeck.toml"));
    }
    // Looked up, so a missing one is skipped; one that is there but is not a file is refused
    // rather than passed over for the next (which would silently be another config).
    for p in candidates {
        match crate::db::files::regular(&p) {
            Ok(true) => return Ok(Some(p)),
            Ok(false) => {}
            Err(e) => return Err(refused(&p, e)),
        }
    }
    Ok(None)
}

/// Resolves the environment a command acts on.
/// How the environment was named, for what needs only its name (the journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentChoice {
    /// By `--env` or `$PGDECK_ENV`, whether or not a config file defines it.
    Requested(String),
    /// By the config file (`default_environment`, its only one, or `development`).
    Configured(String),
    /// Neither: no config file and no request (a run on `DATABASE_URL` / libpq variables).
    Unconfigured,
}

/// The environment's name only, without reading its connection: see [`EnvironmentChoice`].
pub fn environment_name(overrides: &Overrides, vars: &dyn Vars) -> Result<EnvironmentChoice> {
    if let Some(name) = overrides.env.clone().or_else(|| vars.var("PGDECK_ENV")) {
        return Ok(EnvironmentChoice::Requested(name));
    }
    let Some(file) = find_config_file(overrides.config.as_deref(), vars)? else {
        return Ok(EnvironmentChoice::Unconfigured);
    };
    let parsed = read_config(&file)?;
    let (name, _) = choose_environment(Some(&parsed), overrides, vars, Some(&file))?;
    Ok(EnvironmentChoice::Configured(name))
}

/// An environment as the config resolves it: each room's settings, built here. The front ends
/// make the release room's `Environment` of it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub protected: bool,
    pub target: DbTarget,
    /// Where the target's URL came from.
    pub connection: UrlSource,
    pub migrations_dir: PathBuf,
    /// Why `migrations_dir` is the migrations folder.
    pub migrations_source: FolderSource,
    pub deploy: DeploySettings,
    pub lint: LintSettings,
    pub backup: BackupSettings,
    pub health: HealthSettings,
    pub checklist: ChecklistSettings,
    pub hooks: HookSettings,
    pub logs: LogSettings,
    pub read_only: bool,
    /// The environment its releases are rehearsed on first: its name, and its target or why
    /// that did not resolve.
    pub rehearsed_on: Option<(String, Result<DbTarget>)>,
    /// The config file it came from, if any.
    pub source: Option<PathBuf>,
}

pub fn resolve(overrides: &Overrides, vars: &dyn Vars) -> Result<Resolved> {
    resolve_following(overrides, vars, true)
}

/// [`resolve`]; `follow`: also resolve the environment named by `rehearsed_on` (one level: the
/// staging environment's own `rehearsed_on` is not followed).
fn resolve_following(overrides: &Overrides, vars: &dyn Vars, follow: bool) -> Result<Resolved> {
    let file = find_config_file(overrides.config.as_deref(), vars)?;
    let parsed = match &file {
        Some(path) => Some(read_config(path)?),
        None => None,
    };
    if let Some(cfg) = &parsed
        && let Some(requested) = overrides.env.clone().or_else(|| vars.var("PGDECK_ENV"))
        && !cfg.environments.contains_key(&requested)
        && let Some(member) = fleet::member_named(cfg, overrides, vars, &requested)
    {
        return member;
    }
    let (name, env_file) = choose_environment(parsed.as_ref(), overrides, vars, file.as_deref())?;

    let mut deploy = DeploySettings::default();
    let mut lint = LintSettings::default();
    let mut backup = BackupSettings::default();
    let mut read_only = false;
    let mut health = HealthSettings::default();
    let mut checklist = ChecklistSettings::default();
    let mut hooks = HookSettings::default();
    let mut logs = LogSettings::default();
    let mut probes = None;
    let mut protected = false;
    let mut migrations = None;
    if let Some(env) = env_file {
        protected = env.protected;
        migrations = env.migrations.clone();
        if let Some(t) = &env.lock_timeout {
            deploy.lock_timeout = match t.as_str() {
                "off" | "0" => Duration::ZERO,
                t => parse_duration(&name, "lock_timeout", t, &limits::LOCK_TIMEOUT)?,
            };
        }
        // The watchdog follows lock_timeout unless set; with lock_timeout off it keeps the
        // default bound: turning it off takes its own explicit "off".
        deploy.blocking_timeout = match env.blocking_timeout.as_deref() {
            Some("off") => None,
            Some(t) => Some(parse_duration(
                &name,
                "blocking_timeout",
                t,
                &limits::BLOCKING_TIMEOUT,
            )?),
            None if deploy.lock_timeout.is_zero() => DeploySettings::default().blocking_timeout,
            None => Some(deploy.lock_timeout),
        };
        lint = lint_settings(&name, &env.lint)?;
        if let Some(d) = &env.backup_dir {
            backup.dir = d.clone();
        }
        if let Some(n) = env.backup_retention_days {
            backup.retention_days =
                within(&name, "backup_retention_days", n, &limits::RETENTION_DAYS)?;
        }
        if let Some(n) = env.backup_keep_verified {
            backup.keep_verified =
                within(&name, "backup_keep_verified", n, &limits::KEEP_VERIFIED)?;
        }
        if let Some(t) = &env.backup_max_age {
            backup.max_age = parse_duration(&name, "backup_max_age", t, &limits::BACKUP_MAX_AGE)?;
        }
        backup.pgbackrest = pgbackrest_settings(&name, env)?;
        read_only = env.read_only;
        if let Some(c) = &env.restore_checks {
            backup.restore_checks = c.clone();
        }
        if let Some(t) = &env.lock_wait {
            deploy.lock_wait = parse_duration(&name, "lock_wait", t, &limits::LOCK_WAIT)?;
        }
        if let Some(n) = env.lock_retries {
            deploy.lock_retries = within(&name, "lock_retries", n, &limits::LOCK_RETRIES)?;
        }
        health = health_settings(&name, &env.health, vars)?;
        probes = env.health.probes.clone();
        checklist = ChecklistSettings {
            remove: env.checklist.remove.clone(),
            extra: env.checklist.extra.clone(),
            rehearsed_on: env.rehearsed_on.clone(),
            pitr: backup.pgbackrest.is_some(),
        };
        hooks = hook_settings(&name, &env.hooks, vars)?;
        logs = log_settings(&name, env)?;
        health.monitor = replica_settings(&name, env, &mut deploy, vars)?;
        crate::checklist::items(&checklist, &[]).map_err(|e| {
            Error::input(
                format!("environments.{name}.checklist: {e}"),
                "see config/pgdeck.toml for the checklist's item ids",
            )
        })?;
    }
    let project = prisma::Project::read(Path::new(""));
    let (url, connection) = connection(overrides, &name, env_file, &project, vars)?;
    let target = match url {
        Some(u) => DbTarget::from_url(&u, vars)?,
        None => DbTarget::from_vars(vars)?,
    };
    if env_file.is_some_and(|e| e.require_tls)
        && !matches!(
            target.sslmode,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    {
        return Err(Error::input(
            format!(
                "environment '{name}' requires TLS, but the connection says sslmode={}",
                target.sslmode.as_str()
            ),
            "add ?sslmode=verify-full (with sslrootcert=CA.pem if the CA is private) to the URL, or PGSSLMODE=verify-full",
        ));
    }
    let (migrations_dir, migrations_source) = match (&overrides.migrations, migrations) {
        (Some(dir), _) => (dir.clone(), FolderSource::CommandLine),
        (None, Some(dir)) => (
            dir,
            FolderSource::Config {
                file: file.clone().unwrap_or_default(),
                environment: name.clone(),
            },
        ),
        (None, None) => project.migrations_dir()?,
    };
    lint.runner_lock_timeout = !deploy.lock_timeout.is_zero();
    // By default the probes are `SELECT 1` and the verification queries.
    health.probes = probes.unwrap_or_else(|| {
        std::iter::once("SELECT 1".to_owned())
            .chain(backup.restore_checks.iter().cloned())
            .collect()
    });
    let rehearsed_on = match env_file.and_then(|e| e.rehearsed_on.as_ref()) {
        Some(on) if follow => Some(rehearsal_environment(
            parsed.as_ref(),
            &name,
            on,
            overrides,
            vars,
        )?),
        _ => None,
    };
    Ok(Resolved {
        rehearsed_on,
        name,
        protected,
        target,
        connection,
        migrations_dir,
        migrations_source,
        deploy,
        lint,
        backup,
        health,
        checklist,
        hooks,
        logs,
        read_only,
        source: file,
    })
}

/// The connection's URL and where it came from: `--database-url`; the environment's
/// `database_url` or `database_url_env`; else as Prisma finds it: the schema's `directUrl`
/// (the direct connection Prisma migrates through when `url` goes through a pooler),
/// `prisma.config.ts`'s `datasource`, the schema's `url`, `$DATABASE_URL`. A variable comes from
/// the process environment, else from the `.env` files Prisma reads. None: the libpq
/// variables.
fn connection(
    overrides: &Overrides,
    name: &str,
    env_file: Option<&EnvironmentFile>,
    project: &prisma::Project,
    vars: &dyn Vars,
) -> Result<(Option<String>, UrlSource)> {
    if let Some(u) = &overrides.database_url {
        return Ok((Some(u.clone()), UrlSource::new(NamedBy::CommandLine)));
    }
    let config_key = |key: &str| NamedBy::Config {
        environment: name.to_owned(),
        key: key.to_owned(),
    };
    // The schema is looked for only when needed: a prisma.config.ts pgdeck cannot read does not
    // stand in the way of a URL the config file gives.
    let schema = || project.schema();
    let dotenv = |schema: Option<&prisma::Schema>| {
        project.dotenv(schema.map(prisma::Schema::folder).as_deref())
    };
    // The direct URL wins over the application's (a pooler's); unset, it is remembered so that
    // work needing a session of its own refuses.
    let mut direct_unset = None;
    if let Some(env) = env_file {
        match (&env.direct_url, &env.direct_url_env) {
            (Some(_), Some(_)) => {
                return Err(Error::input(
                    format!("environment '{name}' sets both direct_url and direct_url_env"),
                    "keep one of them (direct_url_env keeps the password out of the file)",
                ));
            }
            (Some(u), None) => {
                return Ok((Some(u.clone()), UrlSource::new(config_key("direct_url"))));
            }
            (None, Some(var)) => {
                let env_files = dotenv(schema().ok().flatten().as_ref())?;
                match env_files.lookup(vars, var)? {
                    Some(found) => {
                        return Ok((
                            Some(found.value),
                            UrlSource {
                                named_by: config_key("direct_url_env"),
                                variable: Some(var.clone()),
                                file: found.file,
                                direct_unset: None,
                            },
                        ));
                    }
                    None => direct_unset = Some(var.clone()),
                }
            }
            (None, None) => {}
        }
    }
    let with_unset = |mut source: UrlSource| {
        if source.direct_unset.is_none() {
            source.direct_unset = direct_unset.clone();
        }
        source
    };
    if let Some(env) = env_file {
        match (&env.database_url, &env.database_url_env) {
            (Some(_), Some(_)) => {
                return Err(Error::input(
                    format!("environment '{name}' sets both database_url and database_url_env"),
                    "keep one of them (database_url_env keeps the password out of the file)",
                ));
            }
            (Some(u), None) => {
                return Ok((
                    Some(u.clone()),
                    with_unset(UrlSource::new(config_key("database_url"))),
                ));
            }
            (None, Some(var)) => {
                let env_files = dotenv(schema().ok().flatten().as_ref())?;
                let found = env_files.lookup(vars, var)?.ok_or_else(|| {
                    Error::input(
                        format!(
                            "environment '{name}' reads its URL from ${var}, which is not set{}",
                            unset_detail(&env_files)
                        ),
                        format!(
                            "export {var}=postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or set it in .env)"
                        ),
                    )
                })?;
                return Ok((
                    Some(found.value),
                    with_unset(UrlSource {
                        named_by: config_key("database_url_env"),
                        variable: Some(var.clone()),
                        file: found.file,
                        direct_unset: None,
                    }),
                ));
            }
            (None, None) => {}
        }
    }
    let schema = schema()?;
    let env_files = dotenv(schema.as_ref())?;
    let datasource = schema.as_ref().and_then(|s| s.datasource.clone());
    let schema_file = schema
        .as_ref()
        .map(|s| s.datasource_file.clone().unwrap_or_else(|| s.path.clone()))
        .unwrap_or_default();
    let from_config = project.config_urls()?;
    // Candidates in order: (value, what named it, whether it is a direct connection).
    let mut candidates: Vec<(prisma::UrlValue, NamedBy, bool)> = Vec::new();
    if let Some(v) = datasource.as_ref().and_then(|d| d.direct_url.clone()) {
        let by = NamedBy::PrismaDirectUrl {
            schema: schema_file.clone(),
        };
        candidates.push((v, by, true));
    }
    if let Some(prisma::ConfigUrls { file, url, direct }) = from_config {
        let by = NamedBy::PrismaConfigUrl { file };
        if let Some(v) = direct {
            candidates.push((v, by.clone(), true));
        }
        if let Some(v) = url {
            candidates.push((v, by, false));
        }
    }
    if let Some(v) = datasource.as_ref().and_then(|d| d.url.clone()) {
        let by = NamedBy::PrismaUrl {
            schema: schema_file.clone(),
        };
        candidates.push((v, by, false));
    }
    candidates.push((
        prisma::UrlValue::Env("DATABASE_URL".into()),
        NamedBy::DatabaseUrl,
        false,
    ));
    for (value, named_by, direct) in candidates {
        let (url, variable, file) = match value {
            prisma::UrlValue::Literal(u) => (u, None, None),
            prisma::UrlValue::Env(var) => match env_files.lookup(vars, &var)? {
                Some(found) => (found.value, Some(var), found.file),
                None => {
                    if direct && direct_unset.is_none() {
                        direct_unset = Some(var);
                    }
                    continue;
                }
            },
        };
        return Ok((
            Some(url),
            UrlSource {
                named_by,
                variable,
                file,
                direct_unset,
            },
        ));
    }
    Ok((
        None,
        UrlSource {
            direct_unset,
            ..UrlSource::new(NamedBy::Libpq)
        },
    ))
}

/// Why a variable the `.env` files were searched for may be missing, for its error.
fn unset_detail(env_files: &prisma::Dotenv) -> String {
    let paths = env_files.paths();
    let mut out = if paths.is_empty() {
        String::new()
    } else {
        format!(
            " (nor in {})",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if let Some(why) = env_files.unparsed() {
        out.push_str(&format!("; {why}"));
    }
    out
}

/// The environment `name` names as `rehearsed_on`: it must exist, be another one, and have a
/// URL of its own (never this one's, nor DATABASE_URL's). Whether its URL resolves is said when
/// it is checked.
fn rehearsal_environment(
    parsed: Option<&FileConfig>,
    name: &str,
    on: &str,
    overrides: &Overrides,
    vars: &dyn Vars,
) -> Result<(String, Result<DbTarget>)> {
    let known = parsed.map(|c| &c.environments);
    let Some(other) = known.and_then(|k| k.get(on)) else {
        return Err(Error::input(
            format!("environments.{name}.rehearsed_on names '{on}', which is not an environment"),
            format!(
                "name one of: {}",
                known
                    .map(|k| k.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            ),
        ));
    };
    if on == name {
        return Err(Error::input(
            format!("environments.{name}.rehearsed_on names the environment itself"),
            "name the environment its releases are tried on first, e.g. \"staging\"",
        ));
    }
    if other.database_url.is_none() && other.database_url_env.is_none() {
        return Err(Error::input(
            format!(
                "environment '{on}' (rehearsed_on of '{name}') has no database_url or database_url_env"
            ),
            format!(
                "give [environments.{on}] its own URL: its ledger is read to check the release was tried there"
            ),
        ));
    }
    let staging = Overrides {
        env: Some(on.to_owned()),
        config: overrides.config.clone(),
        database_url: None,
        migrations: None,
    };
    Ok((
        on.to_owned(),
        resolve_following(&staging, vars, false).map(|r| r.target),
    ))
}

/// One environment of the config file, for what reads them all (`status --all-environments`,
/// the console's matrix): resolved as `--env NAME` resolves it, or the error that stopped it,
/// so one environment that does not resolve (its URL's variable unset, a bad URL) never hides
/// the others.
#[derive(Debug)]
pub struct Listed {
    pub name: String,
    pub protected: bool,
    pub resolved: Result<Resolved>,
}

/// Every environment the config file defines, in the file's order, each resolved as `--env
/// NAME` would resolve it (`overrides.migrations` applies to all). `overrides.env` and
/// `overrides.database_url` would make them all one and are not used: the caller refuses
/// them. No config file, or one that defines no environment, is an error.
pub fn resolve_all(overrides: &Overrides, vars: &dyn Vars) -> Result<Vec<Listed>> {
    let Some(file) = find_config_file(overrides.config.as_deref(), vars)? else {
        return Err(Error::input(
            "no config file was found, so there are no environments to read",
            "create pgdeck.toml with an [environments.<name>] table for each environment \
             (config/pgdeck.toml in the pgdeck repository is an example)",
        ));
    };
    let parsed = read_config(&file)?;
    if parsed.environments.is_empty() {
        return Err(Error::input(
            format!("config file {} defines no environments", file.display()),
            "add an [environments.<name>] table for each environment, with its database_url_env",
        ));
    }
    Ok(parsed
        .order
        .iter()
        .map(|name| {
            let one = Overrides {
                env: Some(name.clone()),
                config: Some(file.clone()),
                database_url: None,
                migrations: overrides.migrations.clone(),
            };
            Listed {
                name: name.clone(),
                protected: parsed.environments.get(name).is_some_and(|e| e.protected),
                resolved: resolve(&one, vars),
            }
        })
        .collect())
}

fn read_config(path: &Path) -> Result<FileConfig> {
    let text = crate::db::files::read_to_string(path, None).map_err(|e| {
        Error::input(
            format!("cannot read config file {}: {e}", path.display()),
            "check the file exists, is a regular file, is readable and is UTF-8",
        )
    })?;
    let mut parsed: FileConfig = toml::from_str(&text).map_err(|e| {
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
    })?;
    let mut spans: Vec<(usize, String)> = toml::from_str::<EnvironmentSpans>(&text)
        .map(|s| {
            s.environments
                .into_iter()
                .map(|(name, at)| (at.span().start, name))
                .collect()
        })
        .unwrap_or_default();
    // `--env FLEET/DATABASE` names a fleet's member: a `/` in a name of the file would make
    // one name mean two things.
    let named = parsed
        .environments
        .keys()
        .map(|n| ("environment", n))
        .chain(parsed.fleets.keys().map(|n| ("fleet", n)));
    for (what, name) in named {
        if name.contains('/') {
            return Err(Error::input(
                format!(
                    "config file {}: {what} '{name}' has a '/' in its name, which --env FLEET/DATABASE keeps for a fleet's databases",
                    path.display()
                ),
                format!("rename it without the '/' ({})", name.replace('/', "-")),
            ));
        }
    }
    spans.sort();
    parsed.order = spans.into_iter().map(|(_, name)| name).collect();
    // Whatever the spans missed keeps its place at the end, by name.
    for name in parsed.environments.keys() {
        if !parsed.order.contains(name) {
            parsed.order.push(name.clone());
        }
    }
    Ok(parsed)
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

fn lint_settings(env: &str, file: &LintFile) -> Result<LintSettings> {
    let rules = |key: &str, names: &[String]| -> Result<Vec<Rule>> {
        names
            .iter()
            .map(|n| {
                n.parse::<Rule>().map_err(|_| {
                    Error::input(
                        format!("environments.{env}.lint.{key}: '{n}' is not a squawk rule"),
                        "rule names are squawk's, e.g. ban-drop-column, require-concurrent-index-creation",
                    )
                })
            })
            .collect()
    };
    let mut s = LintSettings {
        include: rules("include", &file.include)?,
        exclude: rules("exclude", &file.exclude)?,
        ..LintSettings::default()
    };
    if let Some(rows) = file.large_table_rows {
        s.large_rows = within(
            env,
            "lint.large_table_rows",
            rows,
            &limits::LARGE_TABLE_ROWS,
        )?;
    }
    if let Some(size) = &file.large_table_size {
        s.large_bytes = parse_size(size)
            .filter(|b| limits::LARGE_TABLE_BYTES.contains(b))
            .ok_or_else(|| {
                Error::input(
                    format!(
                        "environments.{env}.lint.large_table_size = \"{size}\" is not a size up to 1 PB"
                    ),
                    "write sizes like \"500MB\" or \"2GB\"",
                )
            })?;
    }
    Ok(s)
}

fn health_settings(env: &str, file: &HealthFile, vars: &dyn Vars) -> Result<HealthSettings> {
    let key = |k: &str| format!("health.{k}");
    let duration = |k: &str,
                    v: &Option<String>,
                    range: &std::ops::RangeInclusive<Duration>,
                    default: Duration|
     -> Result<Duration> {
        v.as_deref()
            .map(|t| parse_duration(env, &key(k), t, range))
            .unwrap_or(Ok(default))
    };
    let url = |k: &str, text: &str| -> Result<url::Url> {
        text.parse::<url::Url>()
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                Error::input(
                    format!("environments.{env}.health.{k} is not an http(s) URL"),
                    "write it like \"https://api.example.com/health\"",
                )
            })
    };
    let mut s = HealthSettings {
        window: duration(
            "window",
            &file.window,
            &limits::HEALTH_WINDOW,
            Duration::from_secs(15),
        )?,
        probe_timeout: duration(
            "probe_timeout",
            &file.probe_timeout,
            &limits::REQUEST_TIMEOUT,
            Duration::from_secs(2),
        )?,
        ..HealthSettings::default()
    };
    if let Some(n) = file.probe_samples {
        s.probe_samples = within(env, "health.probe_samples", n, &limits::PROBE_SAMPLES)?;
    }
    for (i, e) in file.endpoints.iter().enumerate() {
        let u = url(&format!("endpoints[{i}].url"), &e.url)?;
        s.endpoints.push(Endpoint {
            name: e
                .name
                .clone()
                .unwrap_or_else(|| u.host_str().unwrap_or("endpoint").to_owned()),
            url: u,
            expect_status: e
                .expect_status
                .map(|c| {
                    within(
                        env,
                        "health.endpoints.expect_status",
                        c,
                        &limits::HTTP_STATUS,
                    )
                })
                .transpose()?,
            body_contains: e.body_contains.clone(),
            timeout: duration(
                "endpoints.timeout",
                &e.timeout,
                &limits::REQUEST_TIMEOUT,
                Duration::from_secs(5),
            )?,
            slow: duration(
                "endpoints.slow",
                &e.slow,
                &limits::REQUEST_TIMEOUT,
                Duration::from_secs(1),
            )?,
        });
    }
    if let Some(m) = &file.metrics {
        let bearer_token = match &m.bearer_token_env {
            Some(var) => Some(crate::target::secret::Secret::new(vars.var(var).ok_or_else(
                || {
                    Error::input(
                        format!("environments.{env}.health.metrics reads its token from ${var}, which is not set"),
                        format!("export {var}=... or drop bearer_token_env"),
                    )
                },
            )?)),
            None => None,
        };
        s.metrics = Some(MetricsSource {
            url: url("metrics.url", &m.url)?,
            requests: m
                .requests
                .clone()
                .unwrap_or_else(|| "http_requests_total".into()),
            errors: m.errors.clone(),
            status_label: m.status_label.clone().unwrap_or_else(|| "status".into()),
            latency: Some(
                m.latency
                    .clone()
                    .unwrap_or_else(|| "http_request_duration_seconds".into()),
            )
            .filter(|n| !n.is_empty()),
            timeout: duration(
                "metrics.timeout",
                &m.timeout,
                &limits::REQUEST_TIMEOUT,
                Duration::from_secs(5),
            )?,
            bearer_token,
        });
    }
    let t = &mut s.thresholds;
    let pct = |v: Option<f64>, k: &str, default: f64| -> Result<f64> {
        match v {
            Some(p) if (0.0..=100.0).contains(&p) => Ok(p / 100.0),
            Some(p) => Err(Error::input(
                format!("environments.{env}.health.{k} = {p} is not a percentage"),
                "write a number between 0 and 100, e.g. 80",
            )),
            None => Ok(default),
        }
    };
    t.error_rate_warn = pct(
        file.error_rate_warn_pct,
        "error_rate_warn_pct",
        t.error_rate_warn,
    )?;
    t.error_rate_alert = pct(
        file.error_rate_alert_pct,
        "error_rate_alert_pct",
        t.error_rate_alert,
    )?;
    t.connections_warn = pct(
        file.connections_warn_pct,
        "connections_warn_pct",
        t.connections_warn,
    )?;
    t.connections_alert = pct(
        file.connections_alert_pct,
        "connections_alert_pct",
        t.connections_alert,
    )?;
    let number = |v: Option<f64>, k: &str, range, default: f64| -> Result<f64> {
        v.map(|n| {
            limits::number(n, range).map_err(|why| {
                Error::input(
                    format!("environments.{env}.health.{k} {why}"),
                    "see config/pgdeck.toml for the health thresholds",
                )
            })
        })
        .unwrap_or(Ok(default))
    };
    t.errors_per_minute_warn = number(
        file.errors_per_minute_warn,
        "errors_per_minute_warn",
        &limits::ERRORS_PER_MINUTE,
        t.errors_per_minute_warn,
    )?;
    t.errors_per_minute_alert = number(
        file.errors_per_minute_alert,
        "errors_per_minute_alert",
        &limits::ERRORS_PER_MINUTE,
        t.errors_per_minute_alert,
    )?;
    t.latency_warn_ratio = number(
        file.p95_warn_ratio,
        "p95_warn_ratio",
        &limits::LATENCY_RATIO,
        t.latency_warn_ratio,
    )?;
    t.latency_alert_ratio = number(
        file.p95_alert_ratio,
        "p95_alert_ratio",
        &limits::LATENCY_RATIO,
        t.latency_alert_ratio,
    )?;
    t.latency_min_increase = duration(
        "p95_min_increase",
        &file.p95_min_increase,
        &limits::P95_MIN_INCREASE,
        t.latency_min_increase,
    )?;
    Ok(s)
}

fn hook_settings(env: &str, file: &HooksFile, vars: &dyn Vars) -> Result<HookSettings> {
    let mut s = HookSettings::default();
    if let Some(t) = &file.timeout {
        s.timeout = parse_duration(env, "hooks.timeout", t, &limits::HOOK_TIMEOUT)?;
    }
    let named = [
        ("before_deploy", &file.before_deploy),
        ("after_deploy", &file.after_deploy),
        ("maintenance_on", &file.maintenance_on),
        ("maintenance_off", &file.maintenance_off),
        ("code_rollback", &file.code_rollback),
        ("restart", &file.restart),
        ("smoke_test", &file.smoke_test),
        ("integration_tests", &file.integration_tests),
    ];
    for (name, command) in named {
        if let Some(c) = command.as_ref().filter(|c| !c.trim().is_empty()) {
            s.commands.insert(name.to_owned(), c.clone());
        }
    }
    if let Some(var) = &file.webhook_url_env {
        let url = vars.var(var).ok_or_else(|| {
            Error::input(
                format!(
                    "environments.{env}.hooks reads the webhook URL from ${var}, which is not set"
                ),
                format!(
                    "export {var}=https://hooks.slack.com/services/... or drop webhook_url_env"
                ),
            )
        })?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::input(
                format!("${var} is not an http(s) URL"),
                "set it to the webhook's URL",
            ));
        }
        s.webhook = Some(Webhook {
            url: crate::target::secret::Secret::new(url),
            retries: file
                .webhook_retries
                .map(|n| within(env, "hooks.webhook_retries", n, &limits::WEBHOOK_RETRIES))
                .transpose()?
                .unwrap_or(3),
            backoff: Duration::from_millis(500),
        });
    }
    Ok(s)
}

fn log_settings(env: &str, file: &EnvironmentFile) -> Result<LogSettings> {
    let app_log = match (&file.app_log, &file.app_log_command) {
        (Some(_), Some(_)) => {
            return Err(Error::input(
                format!("environment '{env}' sets both app_log and app_log_command"),
                "keep one of them: app_log follows a file, app_log_command a command's output",
            ));
        }
        (Some(path), None) if path.as_os_str().is_empty() => {
            return Err(Error::input(
                format!("environments.{env}.app_log is empty"),
                "name the application's log file, e.g. app_log = \"logs/application.log\"",
            ));
        }
        (Some(path), None) => Some(AppLog::File(path.clone())),
        (None, Some(c)) if c.trim().is_empty() => {
            return Err(Error::input(
                format!("environments.{env}.app_log_command is empty"),
                "give the command that prints the log, e.g. app_log_command = \"kubectl logs -f --tail=20 deploy/api\"",
            ));
        }
        (None, Some(c)) => Some(AppLog::Command(c.clone())),
        (None, None) => None,
    };
    let mut s = LogSettings {
        app_log,
        ..LogSettings::default()
    };
    if let Some(n) = file.log_alert_per_minute {
        s.alert_per_minute = within(
            env,
            "log_alert_per_minute",
            n,
            &limits::LOG_ALERT_PER_MINUTE,
        )?;
    }
    Ok(s)
}

/// The standbys' and pools' settings: the deploy's pause for replay lag, the monitor's alerts,
/// PgBouncer's admin console.
fn replica_settings(
    env: &str,
    file: &EnvironmentFile,
    deploy: &mut DeploySettings,
    vars: &dyn Vars,
) -> Result<MonitorSettings> {
    let size = |key: &str, text: &str| -> Result<i64> {
        parse_size(text)
            .filter(|n| limits::REPLICA_LAG_BYTES.contains(n))
            .ok_or_else(|| {
                Error::input(
                    format!("environments.{env}.{key} = \"{text}\" is not a size from 1kB to 1TB"),
                    "write a size like \"64MB\" (units are powers of 1024, as PostgreSQL's)",
                )
            })
    };
    match file.max_replica_lag.as_deref() {
        Some("off") => deploy.max_replica_lag = None,
        Some(t) => deploy.max_replica_lag = Some(size("max_replica_lag", t)?),
        None => {}
    }
    if let Some(t) = &file.replica_lag_wait {
        deploy.replica_lag_wait =
            parse_duration(env, "replica_lag_wait", t, &limits::REPLICA_LAG_WAIT)?;
    }
    let mut m = MonitorSettings::default();
    if let Some(t) = &file.replica_lag_alert {
        m.replicas.replay_lag_bytes = size("replica_lag_alert", t)?;
    }
    if let Some(t) = &file.replica_lag_time_alert {
        m.replicas.replay_lag =
            parse_duration(env, "replica_lag_time_alert", t, &limits::REPLICA_LAG_WAIT)?;
    }
    if let Some(t) = &file.slot_retained_alert {
        m.replicas.slot_retained_bytes = size("slot_retained_alert", t)?;
    }
    if let Some(p) = file.pool_alert_pct {
        if !(0.0..=100.0).contains(&p) {
            return Err(Error::input(
                format!("environments.{env}.pool_alert_pct = {p} is not a percentage"),
                "write a number between 0 and 100, e.g. 80",
            ));
        }
        m.pool_alert = p / 100.0;
    }
    let admin = match (&file.pgbouncer_admin_url, &file.pgbouncer_admin_url_env) {
        (Some(_), Some(_)) => {
            return Err(Error::input(
                format!(
                    "environment '{env}' sets both pgbouncer_admin_url and pgbouncer_admin_url_env"
                ),
                "keep one of them (pgbouncer_admin_url_env keeps the password out of the file)",
            ));
        }
        (Some(u), None) => Some(u.clone()),
        (None, Some(var)) => Some(vars.var(var).ok_or_else(|| {
            Error::input(
                format!("environments.{env}.pgbouncer_admin_url_env names ${var}, which is not set"),
                format!("export {var}=postgresql://USER:PASSWORD@HOST:6432/pgbouncer or drop the setting"),
            )
        })?),
        (None, None) => None,
    };
    m.pgbouncer_admin = admin
        .map(|u| {
            DbTarget::from_url(&u, vars).map_err(|e| Error::input(
                format!("environments.{env}.pgbouncer_admin_url: {}", e.cause),
                "write it like postgresql://USER@HOST:6432/pgbouncer (the admin console's database is pgbouncer)",
            ))
        })
        .transpose()?;
    Ok(m)
}

/// "500MB", "2 GB", "1024kB", "4096" (bytes); units are powers of 1024, as PostgreSQL's.
fn parse_size(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some((n * mult) as i64)
}

/// The pgBackRest stanza of an environment whose `backup_tool` is "pgbackrest"; its keys are
/// refused elsewhere, so a stanza named for nothing is never silently ignored.
fn pgbackrest_settings(name: &str, env: &EnvironmentFile) -> Result<Option<PgbackrestSettings>> {
    let given: Vec<&str> = [
        ("pgbackrest_stanza", env.pgbackrest_stanza.is_some()),
        ("pgbackrest_config", env.pgbackrest_config.is_some()),
        ("pgbackrest_command", env.pgbackrest_command.is_some()),
        ("max_archive_age", env.max_archive_age.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    match env.backup_tool.as_deref() {
        None | Some("pg_dump") => match given.first() {
            Some(key) => Err(Error::input(
                format!("environment {name}: {key} is set, but backup_tool is not \"pgbackrest\""),
                "set backup_tool = \"pgbackrest\" to use the stanza, or remove the pgbackrest keys",
            )),
            None => Ok(None),
        },
        Some("pgbackrest") => {
            let Some(stanza) = env
                .pgbackrest_stanza
                .as_deref()
                .filter(|s| !s.trim().is_empty())
            else {
                return Err(Error::input(
                    format!(
                        "environment {name}: backup_tool = \"pgbackrest\" needs pgbackrest_stanza"
                    ),
                    "name the stanza `pgbackrest info` lists: pgbackrest_stanza = \"main\"",
                ));
            };
            let mut settings = PgbackrestSettings::new(stanza);
            settings.config = env.pgbackrest_config.clone();
            if let Some(command) = &env.pgbackrest_command {
                if command.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(Error::input(
                        format!("environment {name}: pgbackrest_command is empty"),
                        "name the program and its leading arguments: pgbackrest_command = [\"pgbackrest\"]",
                    ));
                }
                settings.command = command.clone();
            }
            if let Some(t) = &env.max_archive_age {
                settings.max_archive_age =
                    parse_duration(name, "max_archive_age", t, &limits::MAX_ARCHIVE_AGE)?;
            }
            Ok(Some(settings))
        }
        Some(other) => Err(Error::input(
            format!("environment {name}: backup_tool = \"{other}\" is not known"),
            "use \"pg_dump\" (the default) or \"pgbackrest\"",
        )),
    }
}

fn parse_duration(
    env: &str,
    key: &str,
    text: &str,
    range: &std::ops::RangeInclusive<Duration>,
) -> Result<Duration> {
    limits::duration(text, range).map_err(|why| {
        Error::input(
            format!("environments.{env}.{key} = \"{text}\" {why}"),
            "see config/pgdeck.toml for each setting's meaning and default",
        )
    })
}

/// A whole number from the file within its range.
fn within<T: PartialOrd + std::fmt::Display + Copy>(
    env: &str,
    key: &str,
    v: T,
    range: &std::ops::RangeInclusive<T>,
) -> Result<T> {
    limits::whole(v, range).map_err(|why| {
        Error::input(
            format!("environments.{env}.{key} {why}"),
            "see config/pgdeck.toml for each setting's meaning and default",
        )
    })
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

    fn resolve_with(path: &Path, env: Option<&str>) -> Result<Resolved> {
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
    fn the_example_health_settings_resolve_with_the_token_kept_secret() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pgdeck.toml");
        let vars = |name: &str| match name {
            "PRODUCTION_DATABASE_URL" => {
                Some("postgresql://app@db.internal/app?sslmode=verify-full".to_owned())
            }
            "METRICS_TOKEN" => Some("metrics-token-123".to_owned()),
            "SLACK_WEBHOOK_URL" => {
                Some("https://hooks.example.com/services/T0/B0/secret-path".to_owned())
            }
            _ => None,
        };
        let overrides = Overrides {
            env: Some("production".into()),
            config: Some(path.clone()),
            ..Default::default()
        };
        let env = resolve(&overrides, &vars).unwrap();
        let h = &env.health;
        assert_eq!(h.window, Duration::from_secs(15));
        assert_eq!(h.probes, ["SELECT 1", "SELECT COUNT(*) FROM \"User\""]);
        assert_eq!(h.endpoints[0].expect_status, Some(200));
        assert_eq!(h.thresholds, crate::health::Thresholds::default());
        assert_eq!(
            env.hooks.commands["code_rollback"],
            "kubectl rollout undo deployment/api"
        );
        assert!(!format!("{:?}", env.hooks).contains("secret-path"));
        assert_eq!(env.checklist.extra.len(), 1);
        assert_eq!(
            env.logs.app_log,
            Some(AppLog::Command(
                "kubectl logs -f --tail=20 deploy/api".into()
            ))
        );
        assert_eq!(env.logs.alert_per_minute, 10);
        let m = h.metrics.as_ref().unwrap();
        assert_eq!(m.requests, "http_requests_total");
        assert!(!format!("{m:?}").contains("metrics-token-123"));
        // require_tls: a URL without TLS is refused before anything connects.
        let plain = |n: &str| match n {
            "PRODUCTION_DATABASE_URL" => Some("postgresql://app@db.internal/app".to_owned()),
            other => vars(other),
        };
        let e = resolve(&overrides, &plain).unwrap_err();
        assert!(
            e.cause.contains("requires TLS") && e.cause.contains("sslmode=prefer"),
            "{}",
            e.cause
        );
        // Without the token variable, a clean input error names it.
        let e = resolve(&overrides, &|n: &str| {
            vars(n).filter(|_| n != "METRICS_TOKEN")
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert!(e.cause.contains("$METRICS_TOKEN"), "{}", e.cause);
        // With no probes configured, the verification queries join SELECT 1.
        let (_d, path) = write_config(
            "[environments.x]\nrestore_checks = ['SELECT count(*) FROM orders']\n[environments.x.health]\nconnections_alert_pct = 90\n",
        );
        let env = resolve_with(&path, None).unwrap();
        assert_eq!(
            env.health.probes,
            ["SELECT 1", "SELECT count(*) FROM orders"]
        );
        assert_eq!(env.health.thresholds.connections_alert, 0.9);
        let (_d, path) = write_config("[environments.x.health]\nconnections_alert_pct = 180\n");
        assert_eq!(
            resolve_with(&path, None).unwrap_err().kind,
            ErrorKind::Input
        );
    }

    #[test]
    fn an_environment_names_the_one_it_is_rehearsed_on_which_needs_a_url_of_its_own() {
        let (_d, path) = write_config(
            r#"
            [environments.staging]
            database_url = "postgresql://deploy@stage-db/app"
            rehearsed_on = "production"
            [environments.production]
            database_url_env = "PROD_URL"
            rehearsed_on = "staging"
            protected = true
            [environments.lonely]
            rehearsed_on = "nowhere"
            [environments.narcissus]
            database_url = "postgresql://deploy@db/app"
            rehearsed_on = "narcissus"
            [environments.urlless]
            [environments.needs_urlless]
            database_url = "postgresql://deploy@db/app"
            rehearsed_on = "urlless"
            "#,
        );
        // One level: staging's own rehearsed_on is not followed (nor is PROD_URL needed).
        let staging = resolve_with(&path, Some("staging")).unwrap();
        let (name, target) = staging.rehearsed_on.unwrap();
        assert_eq!(name, "production");
        let e = target.unwrap_err();
        assert!(e.cause.contains("$PROD_URL"), "{}", e.cause);
        assert_eq!(
            staging.checklist.rehearsed_on.as_deref(),
            Some("production")
        );
        let e = resolve_with(&path, Some("lonely")).unwrap_err();
        assert!(
            e.cause.contains("'nowhere', which is not an environment"),
            "{}",
            e.cause
        );
        let e = resolve_with(&path, Some("narcissus")).unwrap_err();
        assert!(
            e.cause.contains("names the environment itself"),
            "{}",
            e.cause
        );
        let e = resolve_with(&path, Some("needs_urlless")).unwrap_err();
        assert!(e.cause.contains("has no database_url"), "{}", e.cause);
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
    fn replica_and_pool_settings_are_read_and_the_direct_url_wins() {
        let (_d, path) = write_config(
            r#"
            [environments.prod]
            database_url = "postgresql://app@pgbouncer:6432/app"
            direct_url = "postgresql://deploy@db:5432/app"
            max_replica_lag = "16MB"
            replica_lag_wait = "90s"
            replica_lag_alert = "1GB"
            replica_lag_time_alert = "2m"
            slot_retained_alert = "10GB"
            pgbouncer_admin_url = "postgresql://stats@pgbouncer:6432/pgbouncer"
            pool_alert_pct = 90
            [environments.dev]
            database_url = "postgresql://app@localhost/app"
            max_replica_lag = "off"
            "#,
        );
        let env = resolve_with(&path, Some("prod")).unwrap();
        assert_eq!(env.target.host.to_string(), "db");
        assert_eq!(env.target.port, 5432);
        assert_eq!(env.deploy.max_replica_lag, Some(16 << 20));
        assert_eq!(env.deploy.replica_lag_wait, Duration::from_secs(90));
        let m = &env.health.monitor;
        assert_eq!(m.replicas.replay_lag_bytes, 1 << 30);
        assert_eq!(m.replicas.replay_lag, Duration::from_secs(120));
        assert_eq!(m.replicas.slot_retained_bytes, 10 << 30);
        assert_eq!(m.pool_alert, 0.9);
        assert_eq!(
            m.pgbouncer_admin.as_ref().map(|t| t.dbname.as_str()),
            Some("pgbouncer")
        );
        let dev = resolve_with(&path, Some("dev")).unwrap();
        assert_eq!(dev.deploy.max_replica_lag, None);
        assert!(dev.health.monitor.pgbouncer_admin.is_none());
        assert_eq!(
            dev.deploy.replica_lag_wait,
            DeploySettings::default().replica_lag_wait
        );
    }

    #[test]
    fn an_unset_direct_url_variable_is_remembered_so_lock_taking_work_refuses() {
        let (_d, path) = write_config(
            r#"
            [environments.prod]
            database_url = "postgresql://app@pgbouncer:6432/app"
            direct_url_env = "PGDECK_TEST_SURELY_UNSET_DIRECT_URL"
            "#,
        );
        let env = resolve_with(&path, Some("prod")).unwrap();
        assert_eq!(env.target.port, 6432);
        assert_eq!(
            env.connection.direct_unset.as_deref(),
            Some("PGDECK_TEST_SURELY_UNSET_DIRECT_URL")
        );
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
            (
                "[environments.dev]\nmax_replica_lag = \"lots\"\n",
                "environments.dev.max_replica_lag = \"lots\" is not a size",
            ),
            (
                "[environments.dev]\nreplica_lag_wait = \"0s\"\n",
                "environments.dev.replica_lag_wait",
            ),
            (
                "[environments.dev]\npool_alert_pct = 180\n",
                "pool_alert_pct = 180 is not a percentage",
            ),
            (
                "[environments.dev]\npgbouncer_admin_url = \"mysql://x\"\n",
                "environments.dev.pgbouncer_admin_url",
            ),
            (
                "[environments.dev]\ndirect_url = \"postgresql://a@b/c\"\ndirect_url_env = \"X\"\n",
                "both direct_url and direct_url_env",
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
    fn lint_settings_and_lock_timeout_off_are_read_per_environment() {
        let (_d, path) = write_config(
            r#"
            [environments.dev]
            lock_timeout = "off"
            [environments.dev.lint]
            include = ["require-table-schema"]
            exclude = ["prefer-robust-stmts"]
            large_table_rows = 1000
            large_table_size = "200MB"
            "#,
        );
        let env = resolve_with(&path, None).unwrap();
        assert!(env.deploy.lock_timeout.is_zero());
        assert!(!env.lint.runner_lock_timeout);
        assert_eq!(env.lint.include, [Rule::RequireTableSchema]);
        assert_eq!(env.lint.exclude, [Rule::PreferRobustStmts]);
        assert_eq!(
            (env.lint.large_rows, env.lint.large_bytes),
            (1000, 200 << 20)
        );

        let (_d, path) = write_config("[environments.dev.lint]\nexclude = [\"no-such-rule\"]\n");
        let err = resolve_with(&path, None).unwrap_err();
        assert!(
            err.cause.contains("'no-such-rule' is not a squawk rule"),
            "{}",
            err.cause
        );
    }

    #[test]
    fn the_application_log_is_a_file_or_a_command_never_both() {
        let (_d, path) = write_config(
            "[environments.dev]\napp_log = \"logs/application.log\"\nlog_alert_per_minute = 0\n",
        );
        let env = resolve_with(&path, None).unwrap();
        assert_eq!(
            env.logs.app_log,
            Some(AppLog::File(PathBuf::from("logs/application.log")))
        );
        assert_eq!(env.logs.alert_per_minute, 0);
        let (_d, path) = write_config("[environments.dev]\n");
        let env = resolve_with(&path, None).unwrap();
        assert_eq!(env.logs, LogSettings::default());

        let cases = [
            (
                "app_log = \"a.log\"\napp_log_command = \"tail -f a.log\"",
                "sets both app_log and app_log_command",
            ),
            ("app_log = \"\"", "app_log is empty"),
            ("app_log_command = \"  \"", "app_log_command is empty"),
            (
                "log_alert_per_minute = 1000001",
                "log_alert_per_minute = 1000001 is out of range",
            ),
            ("log_alert_per_minute = -1", "invalid value"),
            ("log_alert_per_minute = 2.5", "invalid type"),
        ];
        for (settings, expected) in cases {
            let (_d, path) = write_config(&format!("[environments.dev]\n{settings}\n"));
            let err = resolve_with(&path, None).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Input, "{settings}");
            assert!(err.cause.contains(expected), "{settings}: {}", err.cause);
        }
    }

    #[test]
    fn a_pgbackrest_stanza_is_named_only_with_backup_tool_pgbackrest() {
        let (_d, path) = write_config(
            "[environments.prod]\nbackup_tool = \"pgbackrest\"\npgbackrest_stanza = \"main\"\n\
             pgbackrest_config = \"/etc/pgbackrest/main.conf\"\n\
             pgbackrest_command = [\"sudo\", \"-u\", \"postgres\", \"pgbackrest\"]\nmax_archive_age = \"5m\"\n",
        );
        let env = resolve_with(&path, None).unwrap();
        let stanza = env.backup.pgbackrest.expect("a stanza");
        assert_eq!(stanza.stanza, "main");
        assert_eq!(
            stanza.config.as_deref(),
            Some(Path::new("/etc/pgbackrest/main.conf"))
        );
        assert_eq!(stanza.command, ["sudo", "-u", "postgres", "pgbackrest"]);
        assert_eq!(stanza.max_archive_age, Duration::from_secs(300));
        let (_d, path) = write_config("[environments.prod]\nbackup_tool = \"pg_dump\"\n");
        assert_eq!(resolve_with(&path, None).unwrap().backup.pgbackrest, None);

        let cases = [
            (
                "backup_tool = \"barman\"",
                "backup_tool = \"barman\" is not known",
            ),
            ("backup_tool = \"pgbackrest\"", "needs pgbackrest_stanza"),
            (
                "backup_tool = \"pgbackrest\"\npgbackrest_stanza = \" \"",
                "needs pgbackrest_stanza",
            ),
            (
                "pgbackrest_stanza = \"main\"",
                "pgbackrest_stanza is set, but backup_tool is not",
            ),
            (
                "backup_tool = \"pg_dump\"\nmax_archive_age = \"5m\"",
                "max_archive_age is set, but backup_tool is not",
            ),
            (
                "backup_tool = \"pgbackrest\"\npgbackrest_stanza = \"m\"\npgbackrest_command = []",
                "pgbackrest_command is empty",
            ),
            (
                "backup_tool = \"pgbackrest\"\npgbackrest_stanza = \"m\"\nmax_archive_age = \"0s\"",
                "max_archive_age",
            ),
        ];
        for (settings, expected) in cases {
            let (_d, path) = write_config(&format!("[environments.prod]\n{settings}\n"));
            let err = resolve_with(&path, None).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Input, "{settings}");
            assert!(err.cause.contains(expected), "{settings}: {}", err.cause);
        }
    }

    #[test]
    fn every_environment_resolves_on_its_own_in_the_files_order() {
        let (_d, path) = write_config(
            r#"
            [environments.staging]
            database_url = "postgresql://deploy@stage-db/app"
            [environments.production]
            protected = true
            database_url_env = "PRODUCTION_DATABASE_URL"
            [environments.development.lint]
            exclude = ["prefer-robust-stmts"]
            [environments.broken]
            database_url = "postgresql://deploy:hunter22@db:notaport/app"
            "#,
        );
        let overrides = Overrides {
            config: Some(path),
            migrations: Some("db/migrations".into()),
            ..Default::default()
        };
        let all = resolve_all(&overrides, &no_vars).unwrap();
        let names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["staging", "production", "development", "broken"]);
        let staging = all[0].resolved.as_ref().unwrap();
        assert_eq!(staging.target.host.to_string(), "stage-db");
        assert_eq!(staging.migrations_dir, PathBuf::from("db/migrations"));
        assert!(all[1].protected);
        let e = all[1].resolved.as_ref().unwrap_err();
        assert!(e.cause.contains("$PRODUCTION_DATABASE_URL"), "{}", e.cause);
        assert!(all[2].resolved.is_ok(), "{:?}", all[2].resolved);
        let e = all[3].resolved.as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert!(!e.cause.contains("hunter22"), "{}", e.cause);

        let (_d, path) = write_config("default_environment = \"x\"\n");
        let overrides = Overrides {
            config: Some(path),
            ..Default::default()
        };
        let e = resolve_all(&overrides, &no_vars).unwrap_err();
        assert!(e.cause.contains("defines no environments"), "{}", e.cause);
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
