//! The server a rehearsal runs on: a throwaway cluster of its own (the demo's sandbox, in a
//! temporary directory, of at least the target's major version), or a server the operator
//! names. Either way it only gets databases made for this run, dropped again at the end, and
//! roles named like the target's so that the schema's grants and policies load.

use tokio_postgres::Client;

use crate::db::sandbox::Sandbox;
use crate::db::{self, query_error, quote_ident};
use crate::error::{Error, Result};
use crate::target::DbTarget;

pub struct Scratch {
    /// Our own cluster; None when the operator gave a server.
    sandbox: Option<Sandbox>,
    /// A connection target for the server's maintenance database.
    server: DbTarget,
    admin: Client,
    pub version: String,
    pub major: u32,
    /// The databases made for this run.
    made: Vec<String>,
    /// The roles the server had before this run.
    roles_before: Vec<String>,
    /// Roles this run may leave behind: those it mirrored, and those its migrations create.
    /// Only these are dropped at the end (another run on the same server has its own).
    made_roles: std::sync::Mutex<Vec<String>>,
    run_id: String,
}

impl Scratch {
    /// Starts a cluster of at least `target_major`, or opens `given`. A given server that is the
    /// target's own (same system identifier, or the same host and port) is refused: a rehearsal
    /// writes nothing where the target lives.
    pub async fn open(
        given: Option<&DbTarget>,
        target: &DbTarget,
        target_major: u32,
        target_system: Option<&str>,
    ) -> Result<Scratch> {
        let (sandbox, server) = match given {
            Some(url) => (None, url.with_application_name("pgdeck-verify")),
            None => {
                let sandbox = tokio::task::spawn_blocking(move || {
                    Sandbox::start_temporary_at_least(target_major)
                })
                .await
                .map_err(|e| {
                    Error::runtime(
                        format!("starting the scratch cluster: {e}"),
                        "try again; report this as a bug if it repeats",
                    )
                })??;
                let server = sandbox
                    .target("postgres")
                    .with_application_name("pgdeck-verify");
                (Some(sandbox), server)
            }
        };
        let session = db::connect(&server).await?;
        let admin = session.client;
        let major = admin
            .query_one(
                "SELECT current_setting('server_version_num')::int / 10000",
                &[],
            )
            .await
            .map_err(|e| query_error("reading the scratch server's version", &e))?
            .get::<_, i32>(0) as u32;
        let system = system_identifier(&admin).await;
        if given.is_some() {
            let same_system = system.is_some() && system.as_deref() == target_system;
            if same_system || server.server() == target.server() {
                return Err(Error::input(
                    format!(
                        "the scratch server {} is the target's own server: a rehearsal must not create databases where the target lives",
                        server.server()
                    ),
                    "give a scratch server of its own, or leave it out to rehearse on a throwaway cluster",
                ));
            }
            if major < target_major {
                return Err(Error::scratch_unfit(
                    format!(
                        "the scratch server is PostgreSQL {major}, older than the target's {target_major}: a schema does not load into an older server"
                    ),
                    format!("give a scratch server of PostgreSQL {target_major} or later"),
                ));
            }
        }
        let roles_before = role_names(&admin).await?;
        Ok(Scratch {
            made_roles: std::sync::Mutex::new(Vec::new()),
            roles_before,
            sandbox,
            server,
            admin,
            version: session.server_version,
            major,
            made: Vec::new(),
            run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        })
    }

    /// Whether the cluster is our own (and goes away with this run).
    pub fn own(&self) -> bool {
        self.sandbox.is_some()
    }

    /// Creates an empty database for this run, named for `purpose`, and returns a target for it
    /// in `schema`.
    pub async fn database(&mut self, purpose: &str, schema: &str) -> Result<DbTarget> {
        let name = format!("pgdeck_verify_{}_{purpose}", self.run_id);
        // From 15 a new database is copied through the WAL by default: for a small template on
        // a scratch server, copying its files is several times faster.
        let strategy = if self.major >= 15 {
            " STRATEGY FILE_COPY"
        } else {
            ""
        };
        self.admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'{strategy}",
                quote_ident(&name)
            ))
            .await
            .map_err(|e| query_error("creating a scratch database", &e))?;
        self.made.push(name.clone());
        Ok(self.server.with_database(&name).with_schema(schema))
    }

    /// Creates the roles `names` that the server lacks, without login: grants, policies and
    /// `OWNER TO` in the schema and the migrations name them.
    pub async fn ensure_roles(&self, names: &[String]) -> Result<()> {
        let existing = role_names(&self.admin).await?;
        for name in names.iter().filter(|n| !existing.contains(n)) {
            self.admin
                .batch_execute(&format!("CREATE ROLE {} NOLOGIN", quote_ident(name)))
                .await
                .map_err(|e| {
                    query_error("creating the target's roles on the scratch server", &e)
                })?;
            self.forget_role_later(name);
        }
        Ok(())
    }

    /// A role this run's migrations create: dropped at the end if the server did not have it.
    pub fn forget_role_later(&self, name: &str) {
        if self.roles_before.iter().any(|r| r == name) {
            return;
        }
        if let Ok(mut made) = self.made_roles.lock()
            && !made.iter().any(|r| r == name)
        {
            made.push(name.to_owned());
        }
    }

    /// The extensions the server can install.
    pub async fn available_extensions(&self) -> Result<Vec<String>> {
        Ok(self
            .admin
            .query("SELECT name::text FROM pg_available_extensions", &[])
            .await
            .map_err(|e| query_error("reading the scratch server's extensions", &e))?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Drops this run's databases, then the roles it made (the target's, mirrored, and those
    /// its migrations created); a cluster of our own goes away with its directory.
    pub async fn close(self) {
        if self.sandbox.is_some() {
            return;
        }
        for name in &self.made {
            let _ = self
                .admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(name)
                ))
                .await;
        }
        let made = self
            .made_roles
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        for role in made {
            let _ = self
                .admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&role)))
                .await;
        }
    }
}

/// The server's system identifier, when the role may read it.
pub async fn system_identifier(client: &Client) -> Option<String> {
    client
        .query_one(
            "SELECT system_identifier::text FROM pg_catalog.pg_control_system()",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get(0))
}

async fn role_names(client: &Client) -> Result<Vec<String>> {
    Ok(client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .map_err(|e| query_error("reading the scratch server's roles", &e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
