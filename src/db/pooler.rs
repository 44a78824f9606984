//! Connection poolers in front of the server. Whether a URL gives a session of its own or goes
//! through a pooler in transaction or statement mode (PgBouncer's `pool_mode`), where a
//! session's advisory lock and settings do not hold, is found out by asking: two clients, and
//! whether their transactions keep their own server backends. And PgBouncer's admin console
//! (`SHOW POOLS`, `SHOW DATABASES`), which speaks only the simple query protocol.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{Ended, connect_bare, query_error};
use crate::error::Result;
use crate::target::DbTarget;

/// How a connection's transactions map to server sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// A session of its own for as long as the connection lasts: the server itself, or a
    /// pooler in session mode.
    Session,
    /// Each transaction may run on another server session (PgBouncer `pool_mode = transaction`).
    Transaction,
    /// Each statement may (PgBouncer `pool_mode = statement`).
    Statement,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Session => "session",
            Pooling::Transaction => "transaction",
            Pooling::Statement => "statement",
        }
    }

    /// PgBouncer's `pool_mode` column.
    pub fn from_pool_mode(mode: &str) -> Option<Pooling> {
        match mode.trim() {
            "session" => Some(Pooling::Session),
            "transaction" => Some(Pooling::Transaction),
            "statement" => Some(Pooling::Statement),
            _ => None,
        }
    }
}

/// What a probe found, and what showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probed {
    pub pooling: Pooling,
    pub evidence: String,
}

/// How long the first client's second transaction may wait for a server session before that
/// wait is itself the answer: its own session would have answered at once.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// Asks whether `target` gives a session of its own. Client A runs a transaction and notes its
/// backend; client B opens a transaction and keeps it; A runs another. On the server, or
/// through a session pooler, A keeps its backend and B has another. Through a transaction
/// pooler B is handed A's idle backend, or A's second transaction lands on another one, or waits
/// for one; a statement pooler refuses B's transaction block.
pub async fn probe(target: &DbTarget) -> Result<Probed> {
    probe_keeping(target).await.map(|(probed, _)| probed)
}

/// [`probe`], keeping its two connections when each is a session of its own (no pooler, or one
/// in session pooling), for the work after it to use: they are the target's own, with its
/// `application_name`.
pub async fn probe_keeping(target: &DbTarget) -> Result<(Probed, Vec<(Client, Ended)>)> {
    let (a, a_ended) = connect_bare(target).await?;
    let (b, b_ended) = connect_bare(target).await?;
    let first = backend_pid(&a, "SELECT pg_backend_pid()").await?;
    let held = match backend_pid(&b, "BEGIN; SELECT pg_backend_pid()").await {
        Ok(pid) => pid,
        Err(e) if e.cause.contains("statement pooling") => {
            return Ok((
                Probed {
                    pooling: Pooling::Statement,
                    evidence: "a transaction block was refused: \"transaction blocks not allowed in statement pooling mode\"".into(),
                },
                Vec::new(),
            ));
        }
        Err(e) => return Err(e),
    };
    let verdict = if held == first {
        Probed {
            pooling: Pooling::Transaction,
            evidence: format!(
                "a second client was handed the first client's server backend (pid {first}) as soon as the first one's transaction ended"
            ),
        }
    } else {
        match tokio::time::timeout(POOL_WAIT, backend_pid(&a, "SELECT pg_backend_pid()")).await {
            Ok(Ok(again)) if again == first => Probed {
                pooling: Pooling::Session,
                evidence: format!("the client kept its server backend (pid {first})"),
            },
            Ok(Ok(again)) => Probed {
                pooling: Pooling::Transaction,
                evidence: format!(
                    "one client's two transactions ran on two server backends (pids {first} and {again})"
                ),
            },
            Ok(Err(e)) => return Err(e),
            Err(_) => Probed {
                pooling: Pooling::Transaction,
                evidence: format!(
                    "the client's second transaction waited more than {}s for a server connection while another client held one",
                    POOL_WAIT.as_secs()
                ),
            },
        }
    };
    let kept = match (verdict.pooling, b.simple_query("COMMIT").await) {
        (Pooling::Session, Ok(_)) => vec![(a, a_ended), (b, b_ended)],
        _ => Vec::new(),
    };
    Ok((verdict, kept))
}

async fn backend_pid(c: &Client, sql: &str) -> Result<i32> {
    let messages = c
        .simple_query(sql)
        .await
        .map_err(|e| query_error("probing for a connection pooler", &e))?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .ok_or_else(|| {
            crate::error::Error::runtime(
                "probing for a connection pooler: no backend pid came back",
                "check that the URL points at PostgreSQL or a pooler in front of it",
            )
        })
}

/// One row of an admin console's `SHOW ...`, by column name.
pub type AdminRow = HashMap<String, String>;

/// A PgBouncer admin console session (`.../pgbouncer` as one of its `admin_users` or
/// `stats_users`).
pub struct Admin {
    client: Client,
}

impl Admin {
    pub async fn connect(admin: &DbTarget) -> Result<Admin> {
        let (client, _ended) = connect_bare(admin).await?;
        Ok(Admin { client })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// `SHOW <what>` (POOLS, DATABASES, CONFIG ...): rows of column name to text.
    pub async fn show(&self, what: &str) -> Result<Vec<AdminRow>> {
        // The word is one of ours, never user text.
        let messages = self
            .client
            .simple_query(&format!("SHOW {what}"))
            .await
            .map_err(|e| query_error(&format!("asking PgBouncer SHOW {what}"), &e))?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    r.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            (c.name().to_owned(), r.get(i).unwrap_or_default().to_owned())
                        })
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }
}

/// The pool mode PgBouncer's admin console gives for `database`: its own entry's, the fallback
/// `*` entry's, else the global `pool_mode`.
pub async fn pool_mode(admin: &DbTarget, database: &str) -> Result<Option<Pooling>> {
    let rows = Admin::connect(admin).await?.show("DATABASES").await?;
    let mode_of = |name: &str| {
        rows.iter()
            .find(|r| r.get("name").is_some_and(|n| n == name))
            .and_then(|r| r.get("pool_mode"))
            .and_then(|m| Pooling::from_pool_mode(m))
    };
    // An entry without a pool_mode of its own follows the global one.
    let global = || async {
        let config = Admin::connect(admin).await?.show("CONFIG").await?;
        Ok::<_, crate::error::Error>(
            config
                .iter()
                .find(|r| r.get("key").is_some_and(|k| k == "pool_mode"))
                .and_then(|r| r.get("value"))
                .and_then(|m| Pooling::from_pool_mode(m)),
        )
    };
    match mode_of(database).or_else(|| mode_of("*")) {
        Some(mode) => Ok(Some(mode)),
        None => global().await,
    }
}
