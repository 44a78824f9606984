//! Connecting to PostgreSQL: TLS by `sslmode`, `application_name`, timeouts, the schema's
//! search_path, and turning driver errors into one-line causes with hints. Also the throwaway
//! clusters of [`sandbox`], the safe file reading of [`files`] and the shell commands of
//! [`process`] the rooms above share. No business logic lives here.

pub mod files;
pub mod pooler;
pub mod process;
pub mod sandbox;
pub mod server;
mod tls;

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::error::{Error, Remedy, Result};
use crate::target::{DbTarget, Host, SslMode};

/// An open session. The driver's connection task runs in the background until the client drops.
pub struct Session {
    pub client: Client,
    pub backend_pid: i32,
    pub server_version: String,
    /// Why the server ended the session, when it said so while no request was waiting (an
    /// `idle_in_transaction_session_timeout`, a termination between statements): the request
    /// after it only sees a closed connection.
    pub ended: Ended,
}

/// Connects, sets `search_path` to the target's schema, and reads the backend pid and version.
pub async fn connect(target: &DbTarget) -> Result<Session> {
    let (client, ended) = connect_bare(target).await?;
    session_of(target, client, ended).await
}

/// A bare connection made a [`Session`]: the schema's search_path set, the backend pid and
/// version read.
pub async fn session_of(target: &DbTarget, client: Client, ended: Ended) -> Result<Session> {
    let row = client
        .query_one(
            "SELECT pg_backend_pid(), current_setting('server_version'), \
                    set_config('search_path', $1, false)",
            &[&quote_ident(&target.schema)],
        )
        .await
        .map_err(|e| query_error("preparing the session", &e))?;
    Ok(Session {
        client,
        backend_pid: row.get(0),
        server_version: row.get(1),
        ended,
    })
}

/// Sessions to one target opened already (a guard that asked the server something before the
/// work), for the work to take instead of opening its own: each backend a server starts costs
/// it a few milliseconds of CPU, which is most of a small deploy's cost on a busy server. A
/// session the server ended meanwhile (an `idle_session_timeout`, a termination) is dropped and
/// a new one opened in its place.
#[derive(Default)]
pub struct Spares(std::sync::Mutex<Vec<Session>>);

impl Spares {
    pub fn of(sessions: Vec<Session>) -> Spares {
        Spares(std::sync::Mutex::new(sessions))
    }

    /// A live spare session, or a new one.
    pub async fn take(&self, target: &DbTarget) -> Result<Session> {
        let spare = {
            let mut sessions = self.0.lock().unwrap_or_else(|p| p.into_inner());
            sessions.retain(|s| !s.client.is_closed() && s.ended.reason().is_none());
            sessions.pop()
        };
        match spare {
            Some(session) => Ok(session),
            None => connect(target).await,
        }
    }

    /// Gives a session back for the next taker.
    pub fn give(&self, session: Session) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
    }
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |s| s.len());
        write!(f, "Spares({n})")
    }
}

/// Connects and sends nothing more: for a PgBouncer admin console, which speaks only the
/// simple query protocol and knows no SQL functions, and for probing a pooler, where every
/// request may land on another server connection.
pub async fn connect_bare(target: &DbTarget) -> Result<(Client, Ended)> {
    let mut cfg = tokio_postgres::Config::new();
    match &target.host {
        Host::Tcp(h) => cfg.host(h),
        Host::Socket(dir) => cfg.host_path(dir),
    };
    cfg.port(target.port)
        .user(&target.user)
        .dbname(&target.dbname)
        .application_name(&target.application_name)
        .connect_timeout(target.connect_timeout)
        .keepalives_idle(Duration::from_secs(30));
    if let Some(pw) = target.password() {
        cfg.password(pw.expose());
    }

    // libpq ignores sslmode on unix sockets; so do we.
    let (client, ended) =
        if matches!(target.host, Host::Socket(_)) || target.sslmode == SslMode::Disable {
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            open(target, &cfg, NoTls).await?
        } else {
            cfg.ssl_mode(match target.sslmode {
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
            open(target, &cfg, tls::connector(target)?).await?
        };
    Ok((client, ended))
}

/// Sends PostgreSQL's cancel request for whatever a session is running, over a connection of
/// its own (with the session's TLS policy): the statement stops at once, also while it waits for
/// a lock, and its transaction is aborted. Dropping the session would not do that: the server
/// notices a vanished client only when it next talks to it.
#[derive(Clone)]
pub struct Canceller {
    target: DbTarget,
    token: tokio_postgres::CancelToken,
    backend_pid: i32,
}

impl Canceller {
    pub fn of(session: &Session, target: &DbTarget) -> Canceller {
        Canceller {
            target: target.clone(),
            token: session.client.cancel_token(),
            backend_pid: session.backend_pid,
        }
    }

    /// Ends the session's backend from a session of its own: for a statement that does not
    /// stop when cancelled. Its transaction rolls back.
    pub async fn terminate(&self) -> Result<()> {
        let other = connect(&self.target.with_application_name("pgdeck-cancel")).await?;
        other
            .client
            .query_one("SELECT pg_terminate_backend($1)", &[&self.backend_pid])
            .await
            .map_err(|e| query_error("terminating the stuck session", &e))?;
        Ok(())
    }

    /// Cancels the session's statement. First with pg_cancel_backend from a session of its
    /// own: it has signalled the backend when it returns, so a statement that ends just before
    /// the signal leaves it to be dropped by the idle backend. The protocol's cancel request,
    /// the fallback (e.g. when no connection slot is left), is only sent by then and may still
    /// be on its way when the next request starts.
    pub async fn cancel(&self) -> Result<()> {
        if let Ok(other) = connect(&self.target.with_application_name("pgdeck-cancel")).await
            && let Ok(row) = other
                .client
                .query_one("SELECT pg_cancel_backend($1)", &[&self.backend_pid])
                .await
            && row.get::<_, bool>(0)
        {
            return Ok(());
        }
        let sent = if matches!(self.target.host, Host::Socket(_))
            || self.target.sslmode == SslMode::Disable
        {
            self.token.cancel_query(NoTls).await
        } else {
            self.token.cancel_query(tls::connector(&self.target)?).await
        };
        sent.map_err(|e| {
            Error::runtime(
                format!("cannot send the cancel request: {}", flatten(&e)),
                "the statement may still be running: check the Monitor",
            )
            .with(Remedy::Monitor)
        })
    }
}

/// The server's last word on a session, if it ended it with one.
#[derive(Clone, Default)]
pub struct Ended(std::sync::Arc<EndedState>);

#[derive(Default)]
pub struct EndedState {
    last: std::sync::Mutex<Option<(SqlState, String)>>,
    /// The driver's connection task has finished (and written `last` if the server spoke).
    done: std::sync::atomic::AtomicBool,
}

impl Ended {
    /// The SQLSTATE and message the server ended the session with.
    pub fn reason(&self) -> Option<(SqlState, String)> {
        self.0.last.lock().ok().and_then(|r| r.clone())
    }

    /// Waits, briefly, for the connection task to finish: a request on a closed connection can
    /// fail before that task has written down the server's last word.
    pub async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
        while !self.0.done.load(std::sync::atomic::Ordering::Acquire)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// Connects and leaves the driver's connection task running until the client is dropped.
async fn open<T>(target: &DbTarget, cfg: &tokio_postgres::Config, tls: T) -> Result<(Client, Ended)>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = cfg
        .connect(tls)
        .await
        .map_err(|e| connect_error(target, &e))?;
    let ended = Ended::default();
    let slot = ended.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await
            && let Some(db) = e.as_db_error()
            && let Ok(mut last) = slot.0.last.lock()
        {
            *last = Some((db.code().clone(), db.message().to_owned()));
        }
        slot.0
            .done
            .store(true, std::sync::atomic::Ordering::Release);
    });
    Ok((client, ended))
}

/// Quotes an identifier for SQL text, doubling embedded double quotes. Values never go through
/// here: they are bind parameters.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQLSTATE of a server error, if this is one.
pub fn sqlstate(err: &tokio_postgres::Error) -> Option<&SqlState> {
    err.as_db_error().map(|db| db.code())
}

/// A failed query outside a migration script, as one line with a hint.
pub fn query_error(context: &str, err: &tokio_postgres::Error) -> Error {
    match err.as_db_error() {
        Some(db) => {
            let mut remedy = None;
            let hint = match db.code() {
                c if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
                    "the connecting role lacks a privilege: grant it or use an owner role"
                }
                c if *c == SqlState::LOCK_NOT_AVAILABLE => {
                    remedy = Some(Remedy::Monitor);
                    "another session holds a conflicting lock"
                }
                c if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CRASH_SHUTDOWN => {
                    "the server is shutting down or restarting: retry when it is back"
                }
                _ => "check the server log for details",
            };
            let err = Error::runtime(
                format!(
                    "{context}: {} (SQLSTATE {})",
                    db.message(),
                    db.code().code()
                ),
                hint,
            );
            match remedy {
                Some(r) => err.with(r),
                None => err,
            }
        }
        None if err.is_closed() => Error::runtime(
            format!("{context}: the connection to the server was lost"),
            "check that the server is up and reachable, then retry",
        ),
        None => Error::runtime(
            format!("{context}: {}", flatten(err)),
            "check that the server is up and reachable, then retry",
        ),
    }
}

fn connect_error(target: &DbTarget, err: &tokio_postgres::Error) -> Error {
    let server = target.server();
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        let (cause, hint) = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            (
                format!(
                    "{server} refused the login of user '{}': {}",
                    target.user,
                    db.message()
                ),
                "check the user and password (URL, PGPASSWORD or ~/.pgpass) and pg_hba.conf"
                    .to_owned(),
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            (
                format!("database '{}' does not exist on {server}", target.dbname),
                "create it (createdb) or fix the database name in the URL".to_owned(),
            )
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            (
                format!("{server} has no free connection slots: {}", db.message()),
                "close idle sessions or raise max_connections".to_owned(),
            )
        } else {
            (
                format!(
                    "{server} refused the connection: {} (SQLSTATE {})",
                    db.message(),
                    code.code()
                ),
                "check the server log for details".to_owned(),
            )
        };
        return Error::runtime(cause, hint);
    }
    let detail = flatten(err);
    if detail.contains("password missing") {
        return Error::runtime(
            format!(
                "{server} asks for a password for user '{}', and none was given",
                target.user
            ),
            "give it in the URL (percent-encoded), in PGPASSWORD, or in ~/.pgpass (mode 0600)",
        );
    }
    let hint = if detail.contains("certificate") || detail.contains("TLS") || detail.contains("tls")
    {
        "check sslmode and sslrootcert: verify-full needs the CA that signed the server's certificate \
         and a host name that matches it"
    } else if detail.contains("timed out") {
        "the server did not answer in time: check host, port, firewall, or raise connect_timeout"
    } else {
        "is PostgreSQL running on that host and port and accepting connections? check host, port and sslmode"
    };
    Error::runtime(format!("cannot connect to {server}: {detail}"), hint)
}

/// The error and its sources on one line, deduplicated (the driver often repeats itself).
fn flatten(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_doubles_embedded_quotes() {
        assert_eq!(quote_ident("User"), "\"User\"");
        assert_eq!(
            quote_ident("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }
}
