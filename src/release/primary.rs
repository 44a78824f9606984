//! The guard of the work that takes the migration lock and changes the schema (deploy, resolve,
//! reset, revert's deploy): it needs the primary, in a session of its own. A standby
//! (`pg_is_in_recovery()`) is read-only; a pooler in transaction or statement mode (PgBouncer)
//! hands each transaction to another server session, where the session's advisory lock and
//! settings do not hold. Both are asked of the server when the work starts, and the sessions
//! that asked are the work's to use ([`db::Spares`]).

use tokio_postgres::SimpleQueryMessage;

use super::{Context, Event, Workflow};
use crate::db::{self, pooler};
use crate::error::{Error, Guard, Remedy, Result};

pub(super) async fn primary_session(ctx: &Context, workflow: Workflow) -> Result<db::Spares> {
    let target = &ctx.env.target;
    let (probed, kept) = pooler::probe_keeping(target).await?;
    if probed.pooling != pooler::Pooling::Session {
        return Err(Error::guarded(
            Guard::Pooler,
            format!(
                "{} refused: {} goes through a connection pooler in {} pooling ({}), where the migration lock and session settings do not hold; nothing was done",
                workflow.name(),
                target.server(),
                probed.pooling.name(),
                probed.evidence
            ),
            "use the server's direct URL for migrations: direct_url or direct_url_env in the environment (Prisma's directUrl, DIRECT_URL)",
        )
        .with(Remedy::UseDirectUrl));
    }
    let mut kept = kept.into_iter();
    let (client, ended) = match kept.next() {
        Some(c) => c,
        None => db::connect_bare(target).await?,
    };
    // In the simple protocol, as the probe: nothing here depends on a prepared statement.
    let standby = client
        .simple_query("SELECT pg_is_in_recovery()")
        .await
        .map_err(|e| db::query_error("asking whether the server is a standby", &e))?
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")));
    if standby {
        return Err(Error::guarded(
            Guard::Standby,
            format!(
                "{} refused: {} is a standby (pg_is_in_recovery() is true): it is read-only and follows its primary; nothing was done",
                workflow.name(),
                target.server()
            ),
            "point the environment at the primary; the monitor works on a standby, read-only",
        )
        .with(Remedy::UsePrimary));
    }
    ctx.emit(Event::Checked(
        "the connection reaches the primary in a session of its own (no standby, no transaction pooler)"
            .into(),
    ));
    let mut sessions = vec![db::session_of(target, client, ended).await?];
    for (client, ended) in kept {
        sessions.push(db::session_of(target, client, ended).await?);
    }
    Ok(db::Spares::of(sessions))
}
