//! `DbTarget`: where a command connects, assembled the way the PostgreSQL ecosystem expects:
//! a Prisma-style `DATABASE_URL` (with `?schema=`), the libpq variables (`PGHOST`, `PGPORT`,
//! `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`) for anything the URL leaves
//! out, and `~/.pgpass` when no password is given. Its `Display` and `Debug` never show the password.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod secret;
pub mod source;

use crate::error::{Error, Result};
use secret::Secret;

/// TLS policy, with libpq's names and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Result<SslMode> {
        match value {
            "disable" => Ok(SslMode::Disable),
            // libpq's "allow" tries plain first; pgdeck treats it like "prefer", which is stricter.
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(Error::input(
                format!("unknown sslmode '{other}'"),
                "use one of disable, prefer, require, verify-ca, verify-full",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Tcp(String),
    /// A directory holding the server's unix socket.
    Socket(PathBuf),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(name) if name.contains(':') => write!(f, "[{name}]"),
            Host::Tcp(name) => f.write_str(name),
            Host::Socket(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// A database to connect to. Cheap to clone; the password is a [`Secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct DbTarget {
    pub host: Host,
    pub port: u16,
    pub user: String,
    password: Option<Secret>,
    pub dbname: String,
    /// Prisma's `?schema=`: the search_path and the schema that holds `_prisma_migrations`.
    pub schema: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub application_name: String,
    pub connect_timeout: Duration,
}

/// Reads process environment variables; a closure in tests.
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessVars;

impl Vars for ProcessVars {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Vars for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// URL query parameters Prisma or libpq accept that do not change how pgdeck connects.
const IGNORED_PARAMS: &[&str] = &[
    "connection_limit",
    "pool_timeout",
    "pgbouncer",
    "statement_cache_size",
    "socket_timeout",
    "sslaccept",
    "sslcert",
    "sslkey",
    "sslidentity",
    "sslpassword",
    "target_session_attrs",
    "options",
    "channel_binding",
    "gssencmode",
    "keepalives",
];

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl DbTarget {
    /// Builds a target from a `postgres://` or `postgresql://` URL; libpq variables fill what the
    /// URL leaves out, then `~/.pgpass` supplies a missing password.
    pub fn from_url(raw: &str, vars: &dyn Vars) -> Result<DbTarget> {
        let raw = raw.trim();
        // libpq takes only scheme://: with one slash the authority (and its password) would
        // become the database name, and pgdeck would connect somewhere else.
        let scheme_end = raw.find(':').unwrap_or(raw.len());
        let scheme = raw[..scheme_end].to_ascii_lowercase();
        if matches!(scheme.as_str(), "postgres" | "postgresql")
            && !raw[scheme_end..].starts_with("://")
        {
            return Err(Error::input(
                format!(
                    "the database URL is malformed: {} does not start with {}://",
                    redact_malformed(raw),
                    scheme
                ),
                "write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE (two slashes after the scheme)",
            ));
        }
        let url = url::Url::parse(raw).map_err(|e| {
            Error::input(
                format!("the database URL is malformed: {e}"),
                "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE?schema=SCHEMA \
                 (percent-encode special characters in the password)",
            )
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::input(
                format!(
                    "the database URL has scheme '{}', not postgresql",
                    url.scheme()
                ),
                "pgdeck talks to PostgreSQL: use postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
            ));
        }

        let mut b = Builder::default();
        if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            b.host = Some(decode(host)?);
        }
        b.port = url.port().map(|p| p.to_string());
        if !url.username().is_empty() {
            b.user = Some(decode(url.username())?);
        }
        if let Some(pw) = url.password() {
            secret::remember_written(pw);
            b.password = Some(decode(pw)?);
        }
        for pair in url.query().unwrap_or_default().split('&') {
            if let Some(pw) = pair.strip_prefix("password=") {
                secret::remember_written(pw);
            }
        }
        let path = url.path().trim_start_matches('/');
        if !path.is_empty() {
            b.dbname = Some(decode(path)?);
        }
        // Percent-decoded as libpq does: a '+' stays a '+' (form encoding would make it a space).
        for pair in url
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key)?;
            let value = decode(value)?;
            match key.as_str() {
                "host" => b.host = Some(value),
                "port" => b.port = Some(value),
                "user" => b.user = Some(value),
                "password" => b.password = Some(value),
                "dbname" => b.dbname = Some(value),
                "schema" | "currentSchema" => b.schema = Some(value),
                "sslmode" => b.sslmode = Some(value),
                "sslrootcert" => b.sslrootcert = Some(value),
                "application_name" => b.application_name = Some(value),
                "connect_timeout" => b.connect_timeout = Some(value),
                k if IGNORED_PARAMS.contains(&k) => {}
                other => {
                    return Err(Error::input(
                        format!("unknown parameter '{other}' in the database URL"),
                        "pgdeck understands host, port, user, password, dbname, schema, sslmode, \
                         sslrootcert, application_name, connect_timeout and Prisma's pool settings",
                    ));
                }
            }
        }
        b.finish(vars)
    }

    /// A trust-authenticated unix-socket target (sandbox clusters).
    pub fn socket(dir: &Path, port: u16, user: &str, dbname: &str) -> DbTarget {
        DbTarget {
            host: Host::Socket(dir.to_owned()),
            port,
            user: user.to_owned(),
            password: None,
            dbname: dbname.to_owned(),
            schema: "public".into(),
            sslmode: SslMode::Disable,
            sslrootcert: None,
            application_name: "pgdeck".into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Builds a target from libpq variables alone (no URL configured anywhere).
    pub fn from_vars(vars: &dyn Vars) -> Result<DbTarget> {
        Builder::default().finish(vars)
    }

    /// The same server and credentials, another database (scratch databases, admin connections).
    pub fn with_database(&self, dbname: &str) -> DbTarget {
        DbTarget {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }

    /// The same database and credentials on another server reached by its unix socket in `dir`
    /// (a cluster restored beside this one).
    pub fn on_socket(&self, dir: &Path, port: u16) -> DbTarget {
        DbTarget {
            host: Host::Socket(dir.to_owned()),
            port,
            sslmode: SslMode::Disable,
            sslrootcert: None,
            ..self.clone()
        }
    }

    pub fn with_schema(&self, schema: &str) -> DbTarget {
        DbTarget {
            schema: schema.to_owned(),
            ..self.clone()
        }
    }

    pub fn with_application_name(&self, name: &str) -> DbTarget {
        DbTarget {
            application_name: name.to_owned(),
            ..self.clone()
        }
    }

    pub fn with_connect_timeout(&self, secs: u64) -> DbTarget {
        DbTarget {
            connect_timeout: Duration::from_secs(secs),
            ..self.clone()
        }
    }

    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// "host:port" or the socket path, for messages.
    pub fn server(&self) -> String {
        match &self.host {
            Host::Tcp(_) => format!("{}:{}", self.host, self.port),
            Host::Socket(dir) => format!("{}/.s.PGSQL.{}", dir.display(), self.port),
        }
    }
}

impl fmt::Display for DbTarget {
    /// A URL with the password replaced by `***`: safe for logs, errors, the journal and the UI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = encode(&self.user);
        let auth = if self.password.is_some() {
            format!("{user}:***@")
        } else {
            format!("{user}@")
        };
        match &self.host {
            Host::Tcp(_) => write!(
                f,
                "postgresql://{auth}{}:{}/{}",
                self.host,
                self.port,
                encode(&self.dbname)
            )?,
            Host::Socket(dir) => write!(
                f,
                "postgresql:///{}?host={}&port={}&user={user}{}",
                encode(&self.dbname),
                dir.display(),
                self.port,
                if self.password.is_some() {
                    "&password=***"
                } else {
                    ""
                }
            )?,
        }
        let sep = if matches!(self.host, Host::Socket(_)) {
            '&'
        } else {
            '?'
        };
        write!(f, "{sep}schema={}", encode(&self.schema))
    }
}

impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbTarget")
            .field("url", &self.to_string())
            .field("sslmode", &self.sslmode)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// A URL that failed to parse, with what may be its password masked: between the last ':' and
/// the last '@' before the path.
fn redact_malformed(raw: &str) -> String {
    let scheme_end = raw.find(':').map(|i| i + 1).unwrap_or(0);
    let (head, query) = match raw.find('?') {
        Some(q) => (&raw[..q], Some(&raw[q..])),
        None => (raw, None),
    };
    // The user info: after the scheme's slashes, before the last '@'; libpq takes the password
    // from the first ':' in it.
    let mut shown = match head.rfind('@').filter(|at| *at >= scheme_end) {
        Some(at) => {
            let start = scheme_end + head[scheme_end..at].len()
                - head[scheme_end..at].trim_start_matches('/').len();
            match head[start..at].find(':') {
                Some(colon) => {
                    let colon = start + colon;
                    secret::remember_written(&head[colon + 1..at]);
                    format!("{}***{}", &head[..=colon], &head[at..])
                }
                None => head.to_owned(),
            }
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query[1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("password") => {
                    secret::remember_written(v);
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

/// Prisma's `?schema=` must name a schema pgdeck can create and use: not empty, at most 63
/// bytes (PostgreSQL would cut it), no NUL, not a temporary or system schema.
fn check_schema(schema: &str) -> Result<()> {
    let why = if schema.is_empty() {
        Some("is empty")
    } else if schema.len() > 63 {
        Some("is longer than PostgreSQL's 63 bytes")
    } else if schema.contains('\0') {
        Some("holds a NUL character")
    } else if schema.starts_with("pg_") || schema == "information_schema" {
        Some("is a system schema (pg_* and information_schema are PostgreSQL's own)")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::input(
            format!("the database URL's schema {schema:?} {why}"),
            "name the application's schema, e.g. ?schema=public",
        )),
        None => Ok(()),
    }
}

fn decode(s: &str) -> Result<String> {
    let decoded = percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| {
            Error::input(
                "the database URL has a component that is not valid UTF-8 once decoded",
                "percent-encode special characters as UTF-8",
            )
        })?;
    if decoded.contains('\0') {
        return Err(Error::input(
            "the database URL holds a NUL character (%00), which no PostgreSQL name or value can",
            "remove the %00 from the URL",
        ));
    }
    Ok(decoded)
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%5F", "_")
        .replace("%2D", "-")
        .replace("%2E", ".")
}

#[derive(Default)]
struct Builder {
    host: Option<String>,
    port: Option<String>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    schema: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    application_name: Option<String>,
    connect_timeout: Option<String>,
}

impl Builder {
    fn finish(self, vars: &dyn Vars) -> Result<DbTarget> {
        if let Some(schema) = &self.schema {
            check_schema(schema)?;
        }
        let host_text = self
            .host
            .or_else(|| vars.var("PGHOST"))
            .unwrap_or_else(default_host);
        let host = if host_text.starts_with('/') {
            Host::Socket(PathBuf::from(host_text))
        } else {
            Host::Tcp(host_text)
        };
        let port_text = self
            .port
            .or_else(|| vars.var("PGPORT"))
            .unwrap_or_else(|| "5432".into());
        let port: u16 = port_text.parse().map_err(|_| {
            Error::input(
                format!("port '{port_text}' is not a number between 1 and 65535"),
                "fix the port in the database URL or PGPORT",
            )
        })?;
        let user = self
            .user
            .or_else(|| vars.var("PGUSER"))
            .or_else(|| vars.var("USER"))
            .unwrap_or_else(|| "postgres".into());
        let dbname = self
            .dbname
            .or_else(|| vars.var("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let sslmode = SslMode::parse(
            &self
                .sslmode
                .or_else(|| vars.var("PGSSLMODE"))
                .unwrap_or_else(|| "prefer".into()),
        )?;
        let connect_timeout = match self
            .connect_timeout
            .or_else(|| vars.var("PGCONNECT_TIMEOUT"))
        {
            Some(t) => Duration::from_secs(t.parse().map_err(|_| {
                Error::input(
                    format!("connect_timeout '{t}' is not a whole number of seconds"),
                    "use e.g. connect_timeout=10",
                )
            })?),
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        let password = self
            .password
            .or_else(|| vars.var("PGPASSWORD"))
            .or_else(|| pgpass_lookup(vars, &host, port, &dbname, &user));
        Ok(DbTarget {
            host,
            port,
            user,
            password: password.map(Secret::new),
            dbname,
            schema: self.schema.unwrap_or_else(|| "public".into()),
            sslmode,
            sslrootcert: self
                .sslrootcert
                .or_else(|| vars.var("PGSSLROOTCERT"))
                .map(PathBuf::from),
            application_name: self.application_name.unwrap_or_else(|| "pgdeck".into()),
            connect_timeout,
        })
    }
}

/// libpq's compiled-in default on Debian-family systems is the socket directory; elsewhere the
/// loopback address is the safe guess.
fn default_host() -> String {
    for dir in ["/var/run/postgresql", "/tmp"] {
        if Path::new(dir).join(".s.PGSQL.5432").exists() {
            return dir.into();
        }
    }
    "localhost".into()
}

/// Looks the password up in `PGPASSFILE` or `~/.pgpass` with libpq's rules: first matching line
/// wins, `*` matches anything, `\:` and `\\` are escapes. Like libpq, a file readable by group or
/// others is ignored.
fn pgpass_lookup(vars: &dyn Vars, host: &Host, port: u16, db: &str, user: &str) -> Option<String> {
    let path = vars
        .var("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| vars.var("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
    }
    // A FIFO or device in its place would block the connection: not read, like a missing file.
    if !meta.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let host_text = match host {
        // libpq matches socket connections against "localhost".
        Host::Socket(_) => "localhost".to_owned(),
        Host::Tcp(h) => h.clone(),
    };
    let port_text = port.to_string();
    let wanted = [host_text.as_str(), port_text.as_str(), db, user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass_line(line);
            if fields.len() < 5 {
                return None;
            }
            let matches = wanted
                .iter()
                .zip(&fields)
                .all(|(want, field)| field == "*" || field == want);
            matches.then(|| fields[4..].join(":"))
        })
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    fields.push(current);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn prisma_url_with_schema_sets_every_field() {
        let t = DbTarget::from_url(
            "postgresql://app:p%40ss%2Fw0rd@db.example.com:6543/shop?schema=billing&sslmode=require&connection_limit=5",
            &vars(&[]),
        )
        .unwrap();
        assert_eq!(t.host, Host::Tcp("db.example.com".into()));
        assert_eq!(t.port, 6543);
        assert_eq!(t.user, "app");
        assert_eq!(t.password().unwrap().expose(), "p@ss/w0rd");
        assert_eq!(t.dbname, "shop");
        assert_eq!(t.schema, "billing");
        assert_eq!(t.sslmode, SslMode::Require);
    }

    #[test]
    fn query_values_are_percent_decoded_as_libpq_does() {
        let t = DbTarget::from_url(
            "postgresql://app@h/db?schema=x+y&password=a+b%2Bc&application_name=my%20app",
            &vars(&[]),
        )
        .unwrap();
        assert_eq!(t.schema, "x+y");
        assert_eq!(t.password().unwrap().expose(), "a+b+c");
        assert_eq!(t.application_name, "my app");
    }

    #[test]
    fn a_url_with_one_slash_is_refused_with_its_password_masked() {
        let e = DbTarget::from_url(
            "postgresql:/app:Typo-Pw-42@prod.example.com/app",
            &vars(&[]),
        )
        .unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Input);
        assert!(!e.cause.contains("Typo-Pw-42"), "{}", e.cause);
        assert!(
            e.cause.contains("postgresql:/app:***@prod.example.com/app"),
            "{}",
            e.cause
        );
        assert!(DbTarget::from_url("postgres:app@h/db", &vars(&[])).is_err());
    }

    #[test]
    fn a_schema_pgdeck_cannot_use_is_refused() {
        for bad in [
            "",
            "pg_temp",
            "pg_catalog",
            "information_schema",
            &"s".repeat(64),
        ] {
            let url = format!("postgresql://app@h/db?schema={bad}");
            let e = DbTarget::from_url(&url, &vars(&[])).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Input, "{bad:?}");
        }
        let ok = format!("postgresql://app@h/db?schema={}", "s".repeat(63));
        assert!(DbTarget::from_url(&ok, &vars(&[])).is_ok());
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let t = DbTarget::from_url("postgres://u:topsecret99@h/db", &vars(&[])).unwrap();
        let shown = format!("{t} {t:?}");
        assert!(!shown.contains("topsecret99"), "{shown}");
        assert!(
            shown.contains("postgresql://u:***@h:5432/db?schema=public"),
            "{shown}"
        );
    }

    #[test]
    fn libpq_variables_fill_what_the_url_leaves_out() {
        let v = vars(&[
            ("PGPORT", "7777"),
            ("PGPASSWORD", "from-env"),
            ("PGSSLMODE", "verify-full"),
        ]);
        let t = DbTarget::from_url("postgresql://me@localhost/app", &v).unwrap();
        assert_eq!(t.port, 7777);
        assert_eq!(t.password().unwrap().expose(), "from-env");
        assert_eq!(t.sslmode, SslMode::VerifyFull);
    }

    #[test]
    fn socket_host_from_query_parameter() {
        let t = DbTarget::from_url("postgresql:///app?host=/run/pg&port=5433", &vars(&[])).unwrap();
        assert_eq!(t.host, Host::Socket("/run/pg".into()));
        assert_eq!(t.server(), "/run/pg/.s.PGSQL.5433");
    }

    #[test]
    fn malformed_and_foreign_urls_are_input_errors_without_the_password() {
        for bad in [
            "postgresql://u:hunter2secret@host:notaport/db",
            "mysql://u:hunter2secret@host/db",
            "postgresql://u:hunter2secret@host/db?bogus=1",
            "not a url hunter2secret",
        ] {
            let err = DbTarget::from_url(bad, &vars(&[])).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::Input, "{bad}");
            assert!(!err.cause.contains("hunter2secret"), "{}", err.cause);
            assert!(!err.hint.contains("hunter2secret"), "{}", err.hint);
        }
    }

    #[test]
    fn pgpass_supplies_a_missing_password_with_wildcards_and_escapes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:*:nope\ndb.local:*:app:deploy:pa\\:ss\\\\word\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let v = vars(&[("PGPASSFILE", file.to_str().unwrap())]);
        let t = DbTarget::from_url("postgresql://deploy@db.local:5999/app", &v).unwrap();
        assert_eq!(t.password().unwrap().expose(), "pa:ss\\word");

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let t = DbTarget::from_url("postgresql://deploy@db.local:5999/app", &v).unwrap();
        assert!(t.password().is_none(), "a world-readable pgpass is ignored");
    }
}
