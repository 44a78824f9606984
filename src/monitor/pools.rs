//! PgBouncer's pools, from its admin console (`SHOW POOLS`, `SHOW DATABASES`): clients active
//! and waiting, servers active and idle, the longest wait, and each pool's utilisation: server
//! connections in use against its pool size, the runbook's "alert if > 80 % pool utilization".

use serde::Serialize;

use crate::db::pooler::{Admin, AdminRow};
use crate::error::Result;

/// One pool: a database and user pair.
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub database: String,
    pub user: String,
    pub pool_mode: String,
    pub clients_active: i64,
    pub clients_waiting: i64,
    pub servers_active: i64,
    pub servers_idle: i64,
    /// Servers just released, being tested or logging in.
    pub servers_other: i64,
    /// The longest a waiting client has waited, in seconds.
    pub max_wait_seconds: f64,
    /// The database's pool size (its own, else PgBouncer's default_pool_size).
    pub pool_size: i64,
    /// Servers active against the pool size; 1.0 also when clients wait for a server.
    pub utilisation: f64,
}

/// The pools pane.
#[derive(Debug, Clone, Serialize)]
pub struct Pools {
    pub pools: Vec<Pool>,
    /// The busiest pool's utilisation.
    pub utilisation: f64,
    pub clients_active: i64,
    pub clients_waiting: i64,
}

fn number(r: &AdminRow, key: &str) -> i64 {
    r.get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

pub async fn pools(admin: &Admin) -> Result<Pools> {
    let (pools, databases) =
        futures_util::future::try_join(admin.show("POOLS"), admin.show("DATABASES")).await?;
    let list: Vec<Pool> = pools
        .iter()
        // The admin console's own pseudo-database has no servers.
        .filter(|r| r.get("database").is_some_and(|d| d != "pgbouncer"))
        .map(|r| {
            let database = r.get("database").cloned().unwrap_or_default();
            let pool_size = databases
                .iter()
                .find(|d| d.get("name") == Some(&database))
                .map(|d| number(d, "pool_size"))
                .unwrap_or(0);
            let servers_active = number(r, "sv_active");
            let clients_waiting = number(r, "cl_waiting");
            let utilisation = if clients_waiting > 0 {
                1.0
            } else if pool_size > 0 {
                servers_active as f64 / pool_size as f64
            } else {
                0.0
            };
            Pool {
                user: r.get("user").cloned().unwrap_or_default(),
                pool_mode: r.get("pool_mode").cloned().unwrap_or_default(),
                clients_active: number(r, "cl_active"),
                clients_waiting,
                servers_active,
                servers_idle: number(r, "sv_idle"),
                servers_other: number(r, "sv_used")
                    + number(r, "sv_tested")
                    + number(r, "sv_login"),
                max_wait_seconds: number(r, "maxwait") as f64
                    + number(r, "maxwait_us") as f64 / 1_000_000.0,
                pool_size,
                utilisation,
                database,
            }
        })
        .collect();
    Ok(Pools {
        utilisation: list.iter().map(|p| p.utilisation).fold(0.0, f64::max),
        clients_active: list.iter().map(|p| p.clients_active).sum(),
        clients_waiting: list.iter().map(|p| p.clients_waiting).sum(),
        pools: list,
    })
}
