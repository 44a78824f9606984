//! The test harness: one real PostgreSQL cluster per test binary (a throwaway sandbox, or the
//! server named by `PGDECK_TEST_DATABASE_URL`), one fresh database per test, so tests run in
//! parallel; helpers to build migrations folders and to run the real `pgdeck` binary.
#![allow(dead_code)]

pub mod faults;
pub mod release;
pub mod stanza;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use pgdeck::db::{self, quote_ident, sandbox::Sandbox};
use pgdeck::target::{DbTarget, ProcessVars};

enum Server {
    Sandbox(Sandbox),
    External(DbTarget),
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    if let Ok(url) = std::env::var("PGDECK_TEST_DATABASE_URL") {
        let target = DbTarget::from_url(&url, &ProcessVars)
            .unwrap_or_else(|e| panic!("PGDECK_TEST_DATABASE_URL: {}", e.cause));
        return Server::External(target);
    }
    match Sandbox::start_temporary() {
        Ok(s) => Server::Sandbox(s),
        Err(e) => panic!(
            "integration tests need PostgreSQL: {}\nhint: {}",
            e.cause, e.hint
        ),
    }
});

/// The sandbox this test binary runs against (None with `PGDECK_TEST_DATABASE_URL`).
pub fn sandbox() -> Option<&'static Sandbox> {
    match &*SERVER {
        Server::Sandbox(s) => Some(s),
        Server::External(_) => None,
    }
}

fn server_target(dbname: &str) -> DbTarget {
    match &*SERVER {
        Server::Sandbox(s) => s.target(dbname),
        Server::External(t) => t.with_database(dbname),
    }
}

/// A database created for one test.
pub struct TestDb {
    pub name: String,
    pub target: DbTarget,
}

impl TestDb {
    /// Waits until no pgdeck session is left on the database: after killing a pgdeck process,
    /// the server notices the dead client only when its session ends.
    pub async fn wait_for_pgdeck_sessions_to_end(&self) {
        let probe = self.client().await;
        wait_for(
            "pgdeck's sessions to end",
            Duration::from_secs(30),
            || async {
                probe
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'pgdeck' AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .map(|r| r.get::<_, i64>(0) == 0)
                    .unwrap_or(false)
            },
        )
        .await;
    }

    /// The URL handed to the binary (socket path and port; no password for the sandbox).
    pub fn url(&self) -> String {
        match &*SERVER {
            Server::Sandbox(s) => s.url(&self.name),
            Server::External(_) => std::env::var("PGDECK_TEST_DATABASE_URL")
                .map(|u| replace_db_in_url(&u, &self.name))
                .unwrap_or_default(),
        }
    }

    /// A session of the test's own, named `pgdeck-test` so it is never taken for pgdeck's.
    pub async fn client(&self) -> tokio_postgres::Client {
        db::connect(&self.target.with_application_name("pgdeck-test"))
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {}", self.name, e.cause))
            .client
    }

    /// A session as another role (trust authentication lets any role in), for traffic that is
    /// not the deploy's own.
    pub async fn client_as(&self, user: &str) -> tokio_postgres::Client {
        let mut target = self.target.with_application_name("pgdeck-test");
        target.user = user.to_owned();
        db::connect(&target)
            .await
            .unwrap_or_else(|e| panic!("connect to {} as {user}: {}", self.name, e.cause))
            .client
    }

    pub async fn exec(&self, sql: &str) {
        self.client()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    pub async fn table_exists(&self, name: &str) -> bool {
        self.client()
            .await
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quote_ident(name)])
            .await
            .unwrap()
            .get(0)
    }

    /// (migration_name, checksum, finished?, rolled_back?, logs) in ledger order.
    pub async fn ledger(&self) -> Vec<LedgerRow> {
        self.client()
            .await
            .query(
                "SELECT migration_name, checksum, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, \
                        coalesce(logs, ''), applied_steps_count FROM _prisma_migrations ORDER BY started_at",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| LedgerRow {
                name: r.get(0),
                checksum: r.get(1),
                finished: r.get(2),
                rolled_back: r.get(3),
                logs: r.get(4),
                steps: r.get(5),
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub name: String,
    pub checksum: String,
    pub finished: bool,
    pub rolled_back: bool,
    pub logs: String,
    pub steps: i32,
}

fn replace_db_in_url(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map(|(b, q)| (b, Some(q)))
        .unwrap_or((url, None));
    let base = match base.rfind('/') {
        Some(i) if i > "postgresql://".len() => format!("{}/{db}", &base[..i]),
        _ => format!("{base}/{db}"),
    };
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base,
    }
}

/// Creates an empty database named after the test.
pub async fn fresh_db(test: &str) -> TestDb {
    let name = format!(
        "t_{}_{}",
        test.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(40)
            .collect::<String>(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let admin = db::connect(&server_target("postgres"))
        .await
        .unwrap_or_else(|e| panic!("connect to the test server: {} ({})", e.cause, e.hint));
    admin
        .client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    TestDb {
        target: server_target(&name),
        name,
    }
}

/// A migrations folder in a temporary directory.
pub struct Migrations {
    pub dir: tempfile::TempDir,
}

impl Migrations {
    pub fn new() -> Migrations {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("migration_lock.toml"),
            "# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = \"postgresql\"\n",
        )
        .unwrap();
        Migrations { dir }
    }

    /// A copy of the repository's sample migrations.
    pub fn samples() -> Migrations {
        let m = Migrations::new();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for entry in std::fs::read_dir(&src).unwrap().flatten() {
            if entry.path().is_dir() {
                let to = m.dir.path().join(entry.file_name());
                std::fs::create_dir(&to).unwrap();
                for f in std::fs::read_dir(entry.path()).unwrap().flatten() {
                    std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
                }
            }
        }
        m
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn add(&self, name: &str, sql: &str) -> PathBuf {
        self.add_bytes(name, sql.as_bytes())
    }

    pub fn add_bytes(&self, name: &str, sql: &[u8]) -> PathBuf {
        let folder = self.dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let file = folder.join("migration.sql");
        std::fs::write(&file, sql).unwrap();
        file
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join("migration.sql")
    }
}

/// The real binary, isolated from the caller's environment and config: it runs in an empty
/// working directory with no PG* / PGDECK_* / PRISMA_* variables and no database URL variable
/// (`DATABASE_URL`, `DIRECT_URL`, `*_DATABASE_URL`, `*_DIRECT_URL`).
pub fn pgdeck_cmd() -> Command {
    static WORKDIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().unwrap());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgdeck"));
    cmd.current_dir(WORKDIR.path()).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PG")
            || k.starts_with("PGDECK")
            || k.ends_with("DATABASE_URL")
            || k.ends_with("DIRECT_URL")
            || k.starts_with("PRISMA_")
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", WORKDIR.path());
    cmd
}

/// `pgdeck --database-url URL --migrations DIR ARGS...`
pub fn pgdeck(db: &TestDb, migrations: &Path, args: &[&str]) -> Command {
    let mut cmd = pgdeck_cmd();
    cmd.arg("--database-url")
        .arg(db.url())
        .arg("--migrations")
        .arg(migrations)
        .args(args);
    cmd
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the shape every failure must have: `error: <cause>` then `hint: <hint>`, no panic.
    pub fn assert_clean_error(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: ") || l.starts_with("hint: "))
            .collect();
        assert_eq!(
            lines.len(),
            2,
            "expected one error and one hint line:\n{}",
            self.stderr
        );
        assert!(
            lines[0].starts_with("error: ") && lines[1].starts_with("hint: "),
            "{}",
            self.stderr
        );
        self
    }
}

pub fn run(mut cmd: Command) -> Run {
    Run::from(cmd.output().expect("run pgdeck"))
}

pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgdeck")
}

/// Polls `cond` until it holds or `timeout` passes; panics with `what` on timeout.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// One environment in a config file of its own, pointing at a test database.
pub struct ConfigEnv {
    path: PathBuf,
    env: String,
    migrations: PathBuf,
}

impl ConfigEnv {
    /// Writes `[environments.<env>]` with the database's URL plus `settings` (TOML lines).
    pub fn write(db: &TestDb, m: &Migrations, env: &str, settings: &str) -> ConfigEnv {
        let path = m.path().join("pgdeck.toml");
        std::fs::write(
            &path,
            format!(
                "[environments.{env}]\ndatabase_url = \"{}\"\n{settings}\n",
                db.url()
            ),
        )
        .unwrap();
        ConfigEnv {
            path,
            env: env.to_owned(),
            migrations: m.path().to_owned(),
        }
    }

    /// `pgdeck --config FILE --env ENV --migrations DIR ARGS...`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = pgdeck_cmd();
        cmd.arg("--config")
            .arg(&self.path)
            .args(["--env", &self.env]);
        cmd.arg("--migrations").arg(&self.migrations).args(args);
        cmd
    }
}
