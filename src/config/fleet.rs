//! `[fleets.<name>]`: the databases one release goes to. Either a list of environments of the
//! file, or a base environment and a list of database names, each member the base environment
//! with its database substituted (into `url_template`, or into the base environment's own URL).
//! A template member is named `<fleet>/<database>`, and `--env <fleet>/<database>` resolves it
//! as the fleet does (for a backup of that one database, say).

use serde::Deserialize;

use super::{FileConfig, Listed, Overrides, Resolved, resolve_following};
use crate::error::{Error, Result};
use crate::target::source::{NamedBy, UrlSource};
use crate::target::{DbTarget, Vars};

/// Where a template's database name goes.
pub const PLACEHOLDER: &str = "{database}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FleetFile {
    /// Form one: environments of this file, in release order.
    environments: Option<Vec<String>>,
    /// Form two: the environment whose settings every member takes.
    environment: Option<String>,
    /// Form two: the databases, in release order.
    databases: Option<Vec<String>>,
    /// Form two: a URL with `{database}` where each database's name goes; without it, the base
    /// environment's URL with its database replaced.
    url_template: Option<String>,
    /// Form two: the variable holding that template (keeps a password out of the file).
    url_template_env: Option<String>,
    /// Members that go first (environment or database names); `--canary K` takes the first K
    /// of these, then of the rest in order.
    #[serde(default)]
    canary: Vec<String>,
}

/// A fleet as the config resolves it: its members in release order, each resolved or the
/// error that stopped it, and the members marked canary.
#[derive(Debug)]
pub struct Fleet {
    pub name: String,
    pub members: Vec<Listed>,
    /// Indexes into `members`, in the order the file lists them.
    pub canaries: Vec<usize>,
}

/// The names of the fleets the file defines, for a hint.
fn known(parsed: &FileConfig) -> String {
    let names: Vec<&str> = parsed.fleets.keys().map(String::as_str).collect();
    if names.is_empty() {
        "the config file defines no [fleets.<name>]".to_owned()
    } else {
        format!("defined fleets: {}", names.join(", "))
    }
}

/// Resolves fleet `name` from the config file the overrides find.
pub fn resolve_fleet(overrides: &Overrides, vars: &dyn Vars, name: &str) -> Result<Fleet> {
    let Some(file) = super::find_config_file(overrides.config.as_deref(), vars)? else {
        return Err(Error::input(
            format!("fleet '{name}' requested but no config file was found"),
            "define [fleets.<name>] in pgdeck.toml (config/pgdeck.toml in the pgdeck repository shows both forms)",
        ));
    };
    let parsed = super::read_config(&file)?;
    let Some(fleet) = parsed.fleets.get(name) else {
        return Err(Error::input(
            format!("fleet '{name}' is not defined in {}", file.display()),
            known(&parsed),
        ));
    };
    let names = member_names(name, fleet, &parsed)?;
    let one = |env: &str| Overrides {
        env: Some(env.to_owned()),
        config: Some(file.clone()),
        database_url: None,
        migrations: overrides.migrations.clone(),
    };
    let members: Vec<Listed> = match &fleet.databases {
        None => names
            .iter()
            .map(|env| Listed {
                name: env.clone(),
                protected: parsed.environments.get(env).is_some_and(|e| e.protected),
                resolved: super::resolve(&one(env), vars),
            })
            .collect(),
        Some(databases) => {
            let base_name = fleet.environment.clone().unwrap_or_default();
            let base = resolve_following(&one(&base_name), vars, false);
            let protected = parsed
                .environments
                .get(&base_name)
                .is_some_and(|e| e.protected);
            let template = template(name, fleet, vars)?;
            databases
                .iter()
                .map(|db| Listed {
                    name: format!("{name}/{db}"),
                    protected,
                    resolved: match &base {
                        Err(e) => Err(e.clone()),
                        Ok(base) => member(name, db, base, template.as_ref(), vars),
                    },
                })
                .collect()
        }
    };
    same_database(name, &members)?;
    let canaries = fleet
        .canary
        .iter()
        .map(|c| {
            let wanted = match &fleet.databases {
                Some(_) => format!("{name}/{c}"),
                None => c.clone(),
            };
            members
                .iter()
                .position(|m| m.name == wanted)
                .ok_or_else(|| {
                    Error::input(
                        format!("fleets.{name}.canary names '{c}', which is not a member"),
                        format!("name members of the fleet: {}", names.join(", ")),
                    )
                })
        })
        .collect::<Result<Vec<usize>>>()?;
    if let Some((i, _)) = canaries
        .iter()
        .enumerate()
        .find(|(i, c)| canaries[..*i].contains(c))
    {
        return Err(Error::input(
            format!("fleets.{name}.canary lists '{}' twice", fleet.canary[i]),
            "name each canary once",
        ));
    }
    Ok(Fleet {
        name: name.to_owned(),
        members,
        canaries,
    })
}

/// Refuses two members that are one database: one host, port, database and schema (a URL
/// template whose `{database}` is not the database, two environments spelling one URL two
/// ways). The second would read the first's ledger and report it up to date, never deployed.
fn same_database(fleet: &str, members: &[Listed]) -> Result<()> {
    let key = |t: &DbTarget| {
        (
            t.host.to_string().to_lowercase(),
            t.port,
            t.dbname.clone(),
            t.schema.clone(),
        )
    };
    let resolved: Vec<(&str, &DbTarget)> = members
        .iter()
        .filter_map(|m| Some((m.name.as_str(), &m.resolved.as_ref().ok()?.target)))
        .collect();
    for (i, (name, target)) in resolved.iter().enumerate() {
        if let Some((first, _)) = resolved[..i].iter().find(|(_, t)| key(t) == key(target)) {
            return Err(Error::input(
                format!(
                    "fleets.{fleet}: members '{first}' and '{name}' are the same database ({target}, schema {})",
                    target.schema
                ),
                "give each member its own database (in a URL template, {database} stands for the database name of the URL's path)",
            ));
        }
    }
    Ok(())
}

/// The members' names as the file lists them (environments, or databases), checked: one form,
/// a list that is not empty, no name twice, environments that exist.
fn member_names(name: &str, fleet: &FleetFile, parsed: &FileConfig) -> Result<Vec<String>> {
    let key = |k: &str| format!("fleets.{name}.{k}");
    let form_hint = "a fleet lists environments = [\"eu\", \"us\"], or takes environment = \"BASE\" \
                     with databases = [\"acme\", ...] (and url_template with {database}, or the base \
                     environment's URL)";
    let list = match (&fleet.environments, &fleet.databases) {
        (Some(_), Some(_)) => {
            return Err(Error::input(
                format!("fleet '{name}' sets both environments and databases"),
                form_hint,
            ));
        }
        (None, None) => {
            return Err(Error::input(
                format!("fleet '{name}' lists neither environments nor databases"),
                form_hint,
            ));
        }
        (Some(envs), None) => {
            for k in [
                ("environment", fleet.environment.is_some()),
                ("url_template", fleet.url_template.is_some()),
                ("url_template_env", fleet.url_template_env.is_some()),
            ] {
                if k.1 {
                    return Err(Error::input(
                        format!("{} goes with databases, not with environments", key(k.0)),
                        form_hint,
                    ));
                }
            }
            for env in envs {
                if !parsed.environments.contains_key(env) {
                    return Err(Error::input(
                        format!(
                            "{} names '{env}', which is not an environment",
                            key("environments")
                        ),
                        format!(
                            "defined environments: {}",
                            parsed
                                .environments
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            ("environments", envs)
        }
        (None, Some(dbs)) => {
            match &fleet.environment {
                None => {
                    return Err(Error::input(
                        format!("fleet '{name}' lists databases but names no base environment"),
                        format!(
                            "set {} = \"NAME\": every database takes its settings (protected, backups, health...)",
                            key("environment")
                        ),
                    ));
                }
                Some(base) if !parsed.environments.contains_key(base) => {
                    return Err(Error::input(
                        format!(
                            "{} names '{base}', which is not an environment",
                            key("environment")
                        ),
                        format!(
                            "defined environments: {}",
                            parsed
                                .environments
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                Some(_) => {}
            }
            if fleet.url_template.is_some() && fleet.url_template_env.is_some() {
                return Err(Error::input(
                    format!("fleet '{name}' sets both url_template and url_template_env"),
                    "keep one of them (url_template_env keeps a password out of the file)",
                ));
            }
            for db in dbs {
                if db.is_empty() || db.len() > 63 || db.contains(['\0', '/']) {
                    return Err(Error::input(
                        format!(
                            "{} holds '{db}', which is not a database name",
                            key("databases")
                        ),
                        "a PostgreSQL database name: 1 to 63 bytes, no '/' or NUL",
                    ));
                }
            }
            ("databases", dbs)
        }
    };
    let (what, names) = list;
    if names.is_empty() {
        return Err(Error::input(
            format!("{} is empty: a fleet of nothing", key(what)),
            format!("list the {what} the release goes to, in order"),
        ));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(Error::input(
                format!("{} lists '{n}' twice", key(what)),
                "each database gets one deploy: list it once",
            ));
        }
    }
    Ok(names.clone())
}

/// The template a fleet's members are made from, checked; None: the base environment's URL.
fn template(name: &str, fleet: &FleetFile, vars: &dyn Vars) -> Result<Option<(String, UrlSource)>> {
    let named = |key: &str| NamedBy::Config {
        environment: format!("fleet {name}"),
        key: key.to_owned(),
    };
    let (text, source) = match (&fleet.url_template, &fleet.url_template_env) {
        (Some(t), _) => (t.clone(), UrlSource::new(named("url_template"))),
        (None, Some(var)) => match vars.var(var) {
            Some(t) => (
                t,
                UrlSource {
                    variable: Some(var.clone()),
                    ..UrlSource::new(named("url_template_env"))
                },
            ),
            None => {
                return Err(Error::input(
                    format!("fleet '{name}' reads its URL template from ${var}, which is not set"),
                    format!("export {var}='postgresql://USER:PASSWORD@HOST:PORT/{PLACEHOLDER}'"),
                ));
            }
        },
        (None, None) => return Ok(None),
    };
    if !text.contains(PLACEHOLDER) {
        return Err(Error::input(
            format!(
                "the URL template of fleet '{name}' has no {PLACEHOLDER}: every member would be the same database"
            ),
            format!(
                "put {PLACEHOLDER} where the database name goes, e.g. postgresql://app@db:5432/{PLACEHOLDER}"
            ),
        ));
    }
    Ok(Some((text, source)))
}

/// One database of a template fleet: the base environment with that database.
fn member(
    fleet: &str,
    db: &str,
    base: &Resolved,
    template: Option<&(String, UrlSource)>,
    vars: &dyn Vars,
) -> Result<Resolved> {
    let (target, connection) = match template {
        Some((text, source)) => {
            let encoded =
                percent_encoding::utf8_percent_encode(db, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            let url = text.replace(PLACEHOLDER, &encoded);
            let target = DbTarget::from_url(&url, vars).map_err(|e| Error {
                cause: format!("fleet '{fleet}', database '{db}': {}", e.cause),
                ..e
            })?;
            (target, source.clone())
        }
        None => (base.target.with_database(db), base.connection.clone()),
    };
    Ok(Resolved {
        name: format!("{fleet}/{db}"),
        target,
        connection,
        rehearsed_on: None,
        ..base.clone()
    })
}

/// `--env <fleet>/<database>`: that member of a template fleet, when the file defines the
/// fleet and lists the database; None when the name is no such member.
pub(super) fn member_named(
    parsed: &FileConfig,
    overrides: &Overrides,
    vars: &dyn Vars,
    env: &str,
) -> Option<Result<Resolved>> {
    let (fleet, db) = env.split_once('/')?;
    let file = parsed.fleets.get(fleet)?;
    if !file.databases.as_ref()?.iter().any(|d| d == db) {
        return None;
    }
    Some((|| {
        member_names(fleet, file, parsed)?;
        let base = Overrides {
            env: file.environment.clone(),
            ..overrides.clone()
        };
        let base = resolve_following(&base, vars, false)?;
        let template = template(fleet, file, vars)?;
        member(fleet, db, &base, template.as_ref(), vars)
    })())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "TENANT_URL" => Some("postgresql://app:s3cret@db.internal:5432/{database}".into()),
            _ => None,
        }
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgdeck.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn fleet(path: &Path, name: &str) -> Result<Fleet> {
        let overrides = Overrides {
            config: Some(path.to_owned()),
            ..Overrides::default()
        };
        resolve_fleet(&overrides, &vars, name)
    }

    const BASE: &str = "[environments.eu]\ndatabase_url = \"postgresql://app@eu/app\"\n\
                        [environments.us]\ndatabase_url = \"postgresql://app@us/app\"\nprotected = true\n\
                        [environments.tenants]\ndatabase_url = \"postgresql://app@tenants:6432/postgres?schema=app\"\n\
                        protected = true\nlock_timeout = \"2s\"\n";

    fn with(fleet: &str) -> String {
        format!("{BASE}{fleet}")
    }

    #[test]
    fn a_fleet_of_environments_resolves_each_as_its_environment_in_the_listed_order() {
        let (_d, path) = file(&with(
            "[fleets.regions]\nenvironments = [\"us\", \"eu\"]\ncanary = [\"eu\"]\n",
        ));
        let f = fleet(&path, "regions").unwrap();
        let names: Vec<&str> = f.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["us", "eu"]);
        assert!(f.members[0].protected && !f.members[1].protected);
        let us = f.members[0].resolved.as_ref().unwrap();
        assert_eq!(us.target.host.to_string(), "us");
        assert_eq!(f.canaries, [1]);
    }

    #[test]
    fn a_template_fleet_is_its_base_environment_with_each_database_substituted() {
        let (_d, path) = file(&with(
            "[fleets.t]\nenvironment = \"tenants\"\nurl_template_env = \"TENANT_URL\"\n\
             databases = [\"acme\", \"globex corp\"]\ncanary = [\"globex corp\"]\n",
        ));
        let f = fleet(&path, "t").unwrap();
        let m: Vec<&Resolved> = f
            .members
            .iter()
            .map(|m| m.resolved.as_ref().unwrap())
            .collect();
        assert_eq!(m[0].name, "t/acme");
        assert_eq!(m[1].target.dbname, "globex corp");
        assert_eq!(m[1].target.host.to_string(), "db.internal");
        // The base environment's settings, the template's connection.
        assert!(m[0].protected && f.members[0].protected);
        assert_eq!(m[0].deploy.lock_timeout, std::time::Duration::from_secs(2));
        assert_eq!(m[0].connection.variable.as_deref(), Some("TENANT_URL"));
        assert!(!m[0].target.to_string().contains("s3cret"));
        assert_eq!(f.canaries, [1]);

        // Without a template: the base environment's URL with its database replaced.
        let (_d, path) = file(&with(
            "[fleets.t]\nenvironment = \"tenants\"\ndatabases = [\"acme\"]\n",
        ));
        let f = fleet(&path, "t").unwrap();
        let acme = f.members[0].resolved.as_ref().unwrap();
        assert_eq!(acme.target.dbname, "acme");
        assert_eq!(
            (acme.target.host.to_string(), acme.target.port),
            ("tenants".into(), 6432)
        );
        assert_eq!(acme.target.schema, "app");

        // And `--env t/acme` is that member.
        let overrides = Overrides {
            env: Some("t/acme".into()),
            config: Some(path.clone()),
            ..Overrides::default()
        };
        let one = super::super::resolve(&overrides, &vars).unwrap();
        assert_eq!(
            (one.name.as_str(), one.target.dbname.as_str()),
            ("t/acme", "acme")
        );
        let overrides = Overrides {
            env: Some("t/other".into()),
            ..overrides
        };
        let e = super::super::resolve(&overrides, &vars).unwrap_err();
        assert!(e.cause.contains("'t/other' is not defined"), "{}", e.cause);
    }

    #[test]
    fn fleets_that_make_no_sense_are_refused_with_what_to_write() {
        let refused = |fleet_text: &str, says: &str| {
            let (_d, path) = file(&with(fleet_text));
            let e = fleet(&path, "f").unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Input);
            assert!(e.cause.contains(says), "{fleet_text}: {}", e.cause);
            assert!(!e.hint.is_empty());
        };
        refused(
            "[fleets.f]\nenvironments = []\n",
            "fleets.f.environments is empty",
        );
        refused(
            "[fleets.f]\nenvironment = \"tenants\"\ndatabases = []\n",
            "fleets.f.databases is empty",
        );
        refused(
            "[fleets.f]\nenvironment = \"tenants\"\nurl_template = \"postgresql://db/app\"\ndatabases = [\"a\"]\n",
            "has no {database}",
        );
        refused(
            "[fleets.f]\nenvironments = [\"eu\"]\ncolour = \"red\"\n",
            "unknown field `colour`",
        );
        refused(
            "[fleets.f]\nenvironments = [\"eu\", \"mars\"]\n",
            "'mars', which is not an environment",
        );
        refused(
            "[fleets.f]\nenvironments = [\"eu\", \"eu\"]\n",
            "lists 'eu' twice",
        );
        refused(
            "[fleets.f]\nenvironments = [\"eu\"]\ndatabases = [\"a\"]\n",
            "sets both environments and databases",
        );
        refused(
            "[fleets.f]\ncanary = []\n",
            "lists neither environments nor databases",
        );
        refused(
            "[fleets.f]\ndatabases = [\"a\"]\n",
            "names no base environment",
        );
        refused(
            "[fleets.f]\nenvironments = [\"eu\"]\ncanary = [\"us\"]\n",
            "canary names 'us', which is not a member",
        );
        refused(
            "[fleets.f]\nenvironments = [\"eu\", \"us\"]\ncanary = [\"eu\", \"eu\"]\n",
            "canary lists 'eu' twice",
        );
        refused(
            "[environments.\"f/a\"]\ndatabase_url = \"postgresql://app@x/a\"\n\
             [fleets.f]\nenvironments = [\"eu\"]\n",
            "environment 'f/a' has a '/' in its name",
        );
        refused(
            "[fleets.\"a/b\"]\nenvironments = [\"eu\"]\n[fleets.f]\nenvironments = [\"eu\"]\n",
            "fleet 'a/b' has a '/' in its name",
        );
        refused(
            "[fleets.f]\nenvironment = \"tenants\"\n\
             url_template = \"postgresql://app@db/app?application_name={database}\"\n\
             databases = [\"a\", \"b\"]\n",
            "members 'f/a' and 'f/b' are the same database",
        );
        refused(
            "[environments.eu2]\ndatabase_url = \"postgresql://app@EU:5432/app?connect_timeout=5\"\n\
             [fleets.f]\nenvironments = [\"eu\", \"eu2\"]\n",
            "members 'eu' and 'eu2' are the same database",
        );
        refused(
            "[fleets.f]\nenvironment = \"tenants\"\ndatabases = [\"a/b\"]\n",
            "not a database name",
        );
        refused(
            "[fleets.f]\nenvironment = \"tenants\"\nurl_template_env = \"UNSET\"\ndatabases = [\"a\"]\n",
            "$UNSET, which is not set",
        );
        let (_d, path) = file(&with("[fleets.g]\nenvironments = [\"eu\"]\n"));
        let e = fleet(&path, "f").unwrap_err();
        assert!(e.cause.contains("fleet 'f' is not defined") && e.hint.contains("g"));
    }
}
