//! Throwaway PostgreSQL clusters: `initdb` into a directory, a free port, the unix socket inside
//! the data directory, trust authentication, `pg_ctl -w start`. The test harness and `pgdeck demo`
//! use them. PostgreSQL refuses to run as root, so as root every server command runs as the
//! `postgres` user through `runuser`, in a directory that user owns.
//!
//! A temporary sandbox stops its server and deletes its directory when dropped. Because a test
//! process may also die by panic, `process::exit` or SIGKILL, each temporary sandbox also starts a
//! small reaper process that holds the read end of a pipe: when this process goes away for any
//! reason the pipe closes and the reaper stops the server and removes the directory.

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use crate::error::{Error, Result};
use crate::target::DbTarget;

/// The name of the superuser every sandbox is initialised with.
pub const SUPERUSER: &str = "postgres";

/// A running cluster.
pub struct Sandbox {
    data_dir: PathBuf,
    port: u16,
    bin_dir: PathBuf,
    run_as_postgres: bool,
    /// Present for temporary sandboxes: dropping it deletes the directory.
    temp: Option<tempfile::TempDir>,
    reaper: Option<(Child, ChildStdin)>,
}

impl Sandbox {
    /// Starts a fresh cluster in a temporary directory, removed again on drop.
    pub fn start_temporary() -> Result<Sandbox> {
        Sandbox::start_temporary_in(find_server_binaries()?)
    }

    /// [`Sandbox::start_temporary`] with server programs of at least `major` (a schema dumped
    /// from PostgreSQL `major` loads into that version or a newer one, not an older one).
    pub fn start_temporary_at_least(major: u32) -> Result<Sandbox> {
        Sandbox::start_temporary_in(server_binaries_at_least(major)?)
    }

    fn start_temporary_in(bin_dir: PathBuf) -> Result<Sandbox> {
        let run_as_postgres = nix::unistd::geteuid().is_root();
        let temp = tempfile::Builder::new()
            .prefix("pgdeck-sandbox-")
            .tempdir()
            .map_err(|e| io_error("creating a temporary directory", &e))?;
        let data_dir = temp.path().to_owned();
        if run_as_postgres {
            give_to_postgres(&data_dir)?;
        }
        let mut sandbox = Sandbox {
            data_dir,
            port: 0,
            bin_dir,
            run_as_postgres,
            temp: Some(temp),
            reaper: None,
        };
        sandbox.reaper = Some(sandbox.spawn_reaper()?);
        sandbox.initdb()?;
        sandbox.start()?;
        Ok(sandbox)
    }

    /// Opens the long-lived cluster in `dir` (used by `pgdeck demo`): initialises it on first use,
    /// reuses it when it is already running, starts it otherwise. It is not stopped on drop.
    pub fn open_persistent(dir: &Path) -> Result<Sandbox> {
        let bin_dir = find_server_binaries()?;
        let run_as_postgres = nix::unistd::geteuid().is_root();
        let fresh = !dir.join("PG_VERSION").exists();
        if fresh {
            std::fs::create_dir_all(dir)
                .map_err(|e| io_error("creating the sandbox directory", &e))?;
            if run_as_postgres {
                give_to_postgres(dir)?;
            }
        }
        let mut sandbox = Sandbox {
            data_dir: dir.to_owned(),
            port: 0,
            bin_dir,
            run_as_postgres,
            temp: None,
            reaper: None,
        };
        if fresh {
            sandbox.initdb()?;
        }
        match sandbox.running_port() {
            Some(port) => sandbox.port = port,
            None => sandbox.start()?,
        }
        Ok(sandbox)
    }

    /// Stops the long-lived cluster in `dir`, if it runs. Returns whether it was running.
    /// Makes `dir` the data directory a backup tool restores a cluster into: created, empty,
    /// mode 0700, the server user's when running as root. Anything already there is refused.
    pub fn prepare_restore_dir(dir: &Path) -> Result<()> {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::input(
                format!(
                    "{} is not empty: a restore needs a directory of its own",
                    dir.display()
                ),
                "name a new directory, or remove that one when nothing in it is needed",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating the restore directory", &e))?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| io_error("making the restore directory private", &e))?;
        if nix::unistd::geteuid().is_root() {
            give_to_postgres(dir)?;
        }
        Ok(())
    }

    /// Starts a cluster a backup tool restored into `dir`, as a persistent sandbox: on a free
    /// port, reached by its unix socket in `dir` (no TCP), hot standby on, and WAL archiving
    /// off, so it never pushes into the repository it came from. Its settings go last in
    /// `postgresql.auto.conf`, after whatever the restored cluster had there.
    pub fn start_restored(dir: &Path) -> Result<Sandbox> {
        let auto = dir.join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&auto)
            .map_err(|e| io_error("editing postgresql.auto.conf", &e))?;
        writeln!(
            f,
            "\n# pgdeck: a side cluster, restored\nlisten_addresses = ''\nunix_socket_directories = '{}'\n\
             archive_mode = off\nhot_standby = on\nlogging_collector = off\n\
             include_if_exists = 'pgdeck-port.conf'",
            dir.display().to_string().replace('\'', "''")
        )
        .map_err(|e| io_error("editing postgresql.auto.conf", &e))?;
        let run_as_postgres = nix::unistd::geteuid().is_root();
        if run_as_postgres {
            give_to_postgres(&auto)?;
        }
        let mut sandbox = Sandbox {
            data_dir: dir.to_owned(),
            port: 0,
            bin_dir: find_server_binaries()?,
            run_as_postgres,
            temp: None,
            reaper: None,
        };
        sandbox.start()?;
        Ok(sandbox)
    }

    pub fn stop_persistent(dir: &Path) -> Result<bool> {
        let sandbox = Sandbox {
            data_dir: dir.to_owned(),
            port: 0,
            bin_dir: find_server_binaries()?,
            run_as_postgres: nix::unistd::geteuid().is_root(),
            temp: None,
            reaper: None,
        };
        if sandbox.running_port().is_none() {
            return Ok(false);
        }
        sandbox.stop("fast")?;
        Ok(true)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory with the server binaries this sandbox runs (initdb, pg_ctl, postgres).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A connection target for `dbname` over the unix socket, as the superuser.
    pub fn target(&self, dbname: &str) -> DbTarget {
        DbTarget::socket(&self.data_dir, self.port, SUPERUSER, dbname)
    }

    /// `postgresql:///DB?host=SOCKETDIR&port=PORT&user=postgres`: a URL pgdeck (and libpq) accept.
    pub fn url(&self, dbname: &str) -> String {
        self.target(dbname).to_string()
    }

    /// A streaming standby of this cluster, in a temporary directory of its own, on a port of
    /// its own: `pg_basebackup -R` (which writes `primary_conninfo` and `standby.signal`) over
    /// this cluster's socket, then started. Stopped and removed on drop, like any temporary
    /// sandbox. The standby's `application_name` in `pg_stat_replication` is `name`.
    pub fn start_standby(&self, name: &str) -> Result<Sandbox> {
        let temp = tempfile::Builder::new()
            .prefix("pgdeck-standby-")
            .tempdir()
            .map_err(|e| io_error("creating a temporary directory", &e))?;
        let data_dir = temp.path().to_owned();
        if self.run_as_postgres {
            give_to_postgres(&data_dir)?;
        }
        let mut standby = Sandbox {
            data_dir,
            port: 0,
            bin_dir: self.bin_dir.clone(),
            run_as_postgres: self.run_as_postgres,
            temp: Some(temp),
            reaper: None,
        };
        standby.reaper = Some(standby.spawn_reaper()?);
        // PATH may hold links to initdb and pg_ctl alone: pg_basebackup sits beside their
        // targets.
        let beside = |dir: &Path| dir.join("pg_basebackup").is_file().then(|| dir.to_owned());
        let dir = beside(&self.bin_dir)
            .or_else(|| {
                let real = std::fs::canonicalize(self.bin_dir.join("pg_ctl")).ok()?;
                beside(real.parent()?)
            })
            .ok_or_else(|| {
                Error::runtime(
                    format!(
                        "pg_basebackup was not found beside pg_ctl ({})",
                        self.bin_dir.display()
                    ),
                    "install the PostgreSQL server package, which has it: `apt-get install postgresql`",
                )
            })?;
        standby.bin_dir = dir;
        let out = standby
            .server_command("pg_basebackup")
            .arg("-D")
            .arg(&standby.data_dir)
            .arg("-h")
            .arg(&self.data_dir)
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER])
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .output()
            .map_err(|e| io_error("running pg_basebackup", &e))?;
        check(&out, "pg_basebackup")?;
        // The server wants its directory to itself.
        std::fs::set_permissions(
            &standby.data_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| io_error("restricting the standby directory", &e))?;
        // The copied configuration names the primary's socket directory and port: the standby
        // gets its own (postgresql.auto.conf is read last).
        let auto = standby.data_dir.join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&auto)
            .map_err(|e| io_error("editing postgresql.auto.conf", &e))?;
        writeln!(
            f,
            "unix_socket_directories = '{}'\nhot_standby = on\ncluster_name = '{}'",
            standby.data_dir.display().to_string().replace('\'', "''"),
            name.replace('\'', "''")
        )
        .map_err(|e| io_error("editing postgresql.auto.conf", &e))?;
        // A copied server.log or port file belongs to the primary.
        let _ = std::fs::remove_file(standby.data_dir.join("server.log"));
        let _ = std::fs::remove_file(standby.data_dir.join("pgdeck-port.conf"));
        standby.start()?;
        Ok(standby)
    }

    /// Starts the server again on the same port (after [`Sandbox::stop_immediately`]).
    pub fn restart(&mut self) -> Result<()> {
        self.start_on(self.port)
    }

    /// Stops the server immediately, as a crash would: for fault tests.
    pub fn stop_immediately(&self) -> Result<()> {
        self.stop("immediate")
    }

    fn initdb(&self) -> Result<()> {
        let out = self
            .server_command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .map_err(|e| io_error("running initdb", &e))?;
        check(&out, "initdb")?;
        let conf = self.data_dir.join("postgresql.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| io_error("editing postgresql.conf", &e))?;
        // A sandbox holds nothing worth an fsync; the settings make tests several times faster
        // and do not change what a crash of the server process (not the OS) does. A rehearsal
        // restores a whole schema in one transaction: thousands of tables need more lock slots
        // than the default 64 a connection.
        writeln!(
            f,
            "\n# pgdeck sandbox\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n\
             max_locks_per_transaction = 256\n\
             shared_buffers = 32MB\nlogging_collector = off\ninclude_if_exists = 'pgdeck-port.conf'",
            self.data_dir.display().to_string().replace('\'', "''")
        )
        .map_err(|e| io_error("editing postgresql.conf", &e))
    }

    fn start(&mut self) -> Result<()> {
        let mut last = None;
        // A restarted persistent sandbox keeps its port when it can, so URLs printed earlier
        // still work.
        let previous = std::fs::read_to_string(self.data_dir.join("pgdeck-port.conf"))
            .ok()
            .and_then(|t| t.trim().strip_prefix("port = ")?.parse::<u16>().ok())
            .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok());
        for attempt in 0..5 {
            let port = match previous {
                Some(p) if attempt == 0 => p,
                _ => free_port()?,
            };
            match self.start_on(port) {
                Ok(()) => return Ok(()),
                // Another process may take the port between our probe and the server's bind.
                Err(e) if e.cause.contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::runtime("no free port found", "free a local TCP port")))
    }

    fn start_on(&mut self, port: u16) -> Result<()> {
        let port_conf = self.data_dir.join("pgdeck-port.conf");
        std::fs::write(&port_conf, format!("port = {port}\n"))
            .map_err(|e| io_error("writing the sandbox port", &e))?;
        if self.run_as_postgres {
            give_to_postgres(&port_conf)?;
        }
        let log = self.data_dir.join("server.log");
        let out = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .map_err(|e| io_error("running pg_ctl start", &e))?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log)
                .map(|t| t.lines().rev().take(3).collect::<Vec<_>>().join(" / "))
                .unwrap_or_default();
            return Err(Error::runtime(
                format!("the sandbox server did not start: {tail}"),
                format!("see {}", log.display()),
            ));
        }
        self.port = port;
        Ok(())
    }

    fn stop(&self, mode: &str) -> Result<()> {
        let out = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "stop"])
            .output()
            .map_err(|e| io_error("running pg_ctl stop", &e))?;
        check(&out, "pg_ctl stop")
    }

    /// The port of a server already running on this data directory, from `postmaster.pid`.
    fn running_port(&self) -> Option<u16> {
        let status = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("status")
            .output()
            .ok()?;
        if !status.status.success() {
            return None;
        }
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    fn server_command(&self, program: &str) -> Command {
        super::server::server_program(
            self.run_as_postgres.then_some(SUPERUSER),
            &self.bin_dir.join(program),
        )
    }

    fn spawn_reaper(&self) -> Result<(Child, ChildStdin)> {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        reaper(
            "sandbox",
            r#"cat >/dev/null 2>&1
               if [ "$1" = yes ]; then runuser -u postgres -- "$2" -D "$3" -m immediate -w stop
               else "$2" -D "$3" -m immediate -w stop; fi >/dev/null 2>&1
               rm -rf "$3""#,
            &[
                (if self.run_as_postgres { "yes" } else { "no" }).as_ref(),
                pg_ctl.as_os_str(),
                self.data_dir.as_os_str(),
            ],
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.temp.is_none() {
            return;
        }
        let _ = self.stop("immediate");
        if let Some((mut child, stdin)) = self.reaper.take() {
            drop(stdin);
            let _ = child.wait();
        }
        // TempDir's own drop removes whatever the reaper left.
    }
}

/// The directory holding `initdb` and `pg_ctl`: from PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn find_server_binaries() -> Result<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d))
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or_else(|| {
        Error::runtime(
            "PostgreSQL server programs (initdb, pg_ctl) were not found on PATH or in /usr/lib/postgresql/*/bin",
            "install the PostgreSQL server: `apt-get install postgresql` (Debian/Ubuntu), \
             `dnf install postgresql-server` (Fedora) or `brew install postgresql@15` (macOS); \
             or point tests at a server with PGDECK_TEST_DATABASE_URL",
        )
    })
}

/// The newest server programs of major version `major` or later: from PATH and
/// `/usr/lib/postgresql/<version>/bin`, each asked its version.
fn server_binaries_at_least(major: u32) -> Result<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).filter(|d| has_both(d)).collect())
        .unwrap_or_default();
    dirs.extend(
        std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|d| has_both(d)),
    );
    let mut found: Vec<(u32, PathBuf)> = dirs
        .into_iter()
        .filter_map(|dir| Some((server_major(&dir)?, dir)))
        .collect();
    found.sort_by_key(|(v, _)| *v);
    let newest = found.last().map(|(v, _)| *v);
    match found.pop() {
        Some((v, dir)) if v >= major => Ok(dir),
        _ => Err(Error::scratch_unfit(
            match newest {
                Some(v) => format!(
                    "the newest PostgreSQL server installed here is {v}, older than the target's {major}: a schema does not load into an older server"
                ),
                None => "PostgreSQL server programs (initdb, pg_ctl) were not found on PATH or in /usr/lib/postgresql/*/bin".to_owned(),
            },
            format!(
                "install the PostgreSQL {major} server (`apt-get install postgresql-{major}`), or give a server of version {major} or later to rehearse on"
            ),
        )),
    }
}

/// `pg_ctl --version` of a directory's programs: "pg_ctl (PostgreSQL) 15.18 (Debian ...)".
fn server_major(dir: &Path) -> Option<u32> {
    let out = Command::new(dir.join("pg_ctl"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn give_to_postgres(path: &Path) -> Result<()> {
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .ok_or_else(|| {
            Error::runtime(
                "running as root, and there is no 'postgres' user to run the sandbox server as",
                "PostgreSQL refuses to run as root: install the postgresql package (it creates the user) \
                 or run pgdeck as an ordinary user",
            )
        })?;
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .map_err(|e| io_error("handing the sandbox directory to the postgres user", &e))
}

/// A small shell process holding the read end of a pipe: when this process goes away for any
/// reason the pipe closes and `script` (run with `args` as $1...) cleans up after it.
fn reaper(what: &str, script: &str, args: &[&std::ffi::OsStr]) -> Result<(Child, ChildStdin)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(format!("pgdeck-{what}-reaper"))
        .args(args)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| io_error(&format!("starting the {what} reaper"), &e))?;
    let stdin = child.stdin.take().ok_or_else(|| {
        Error::runtime(
            format!("the {what} reaper has no stdin"),
            "report this as a bug",
        )
    })?;
    Ok((child, stdin))
}

fn free_port() -> Result<u16> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| io_error("finding a free port", &e))
}

fn check(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    Err(Error::runtime(
        format!("{what} failed ({}): {line}", out.status),
        "check that the PostgreSQL server package is installed and the directory is writable",
    ))
}

fn io_error(what: &str, e: &std::io::Error) -> Error {
    Error::runtime(
        format!("{what}: {e}"),
        "check permissions and free disk space",
    )
}

/// A throwaway PgBouncer (Debian's `pgbouncer` package) in front of a sandbox: its ini and
/// userlist in a temporary directory, every database of the sandbox through its socket, trust
/// authentication, the given pool mode, `postgres` as its admin user. As root it runs as the
/// `postgres` user (it refuses root too). Stopped on drop.
pub struct Bouncer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Holds a pipe's write end: when this process goes away for any reason, the reaper stops
    /// PgBouncer (as a sandbox's reaper stops its server).
    reaper: Option<(Child, ChildStdin)>,
}

/// Where Debian's package puts the program.
const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

impl Bouncer {
    /// Starts PgBouncer on a free port in front of `server`, with `pool_mode` (session,
    /// transaction or statement) and `pool_size` server connections per pool.
    pub fn start(server: &Sandbox, pool_mode: &str, pool_size: u32) -> Result<Bouncer> {
        let program = Self::program()?;
        let dir = tempfile::Builder::new()
            .prefix("pgdeck-pgbouncer-")
            .tempdir()
            .map_err(|e| io_error("creating a temporary directory", &e))?;
        if server.run_as_postgres {
            give_to_postgres(dir.path())?;
        }
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let ini = dir.path().join("pgbouncer.ini");
            std::fs::write(
                dir.path().join("userlist.txt"),
                format!("\"{SUPERUSER}\" \"\"\n"),
            )
            .map_err(|e| io_error("writing the PgBouncer userlist", &e))?;
            std::fs::write(
                &ini,
                format!(
                    "[databases]\n* = host={sock} port={pg}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                     listen_port = {port}\nunix_socket_dir = {dir}\nauth_type = trust\n\
                     auth_file = {dir}/userlist.txt\nadmin_users = {SUPERUSER}\n\
                     pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 5000\n\
                     ignore_startup_parameters = extra_float_digits,search_path\n\
                     logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
                    sock = server.data_dir.display(),
                    pg = server.port,
                    dir = dir.path().display(),
                ),
            )
            .map_err(|e| io_error("writing pgbouncer.ini", &e))?;
            for f in ["pgbouncer.ini", "userlist.txt"] {
                if server.run_as_postgres {
                    give_to_postgres(&dir.path().join(f))?;
                }
            }
            let mut cmd = if server.run_as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&program);
                c
            } else {
                Command::new(&program)
            };
            let mut child = cmd
                .arg(&ini)
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| io_error("starting pgbouncer", &e))?;
            // Listening when a TCP connection is accepted; gone when it exited (a port taken
            // meanwhile, say).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let up = loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break true;
                }
                if child.try_wait().ok().flatten().is_some() || std::time::Instant::now() > deadline
                {
                    break false;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            if up {
                let reaper = reaper(
                    "pgbouncer",
                    r#"cat >/dev/null 2>&1; kill -TERM "$(cat "$1")" >/dev/null 2>&1"#,
                    &[dir.path().join("pgbouncer.pid").as_os_str()],
                )?;
                return Ok(Bouncer {
                    port,
                    dir,
                    child: Some(child),
                    reaper: Some(reaper),
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last = Some(
                std::fs::read_to_string(dir.path().join("pgbouncer.log"))
                    .map(|t| t.lines().rev().take(2).collect::<Vec<_>>().join(" / "))
                    .unwrap_or_default(),
            );
        }
        Err(Error::runtime(
            format!("pgbouncer did not start: {}", last.unwrap_or_default()),
            "see its log in the temporary directory; is the pgbouncer package installed?",
        ))
    }

    /// `/usr/sbin/pgbouncer`, or the error naming the package to install.
    pub fn program() -> Result<PathBuf> {
        let path = PathBuf::from(PGBOUNCER);
        if path.is_file() {
            return Ok(path);
        }
        let on_path = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pgbouncer"))
                .find(|p| p.is_file())
        });
        on_path.ok_or_else(|| {
            Error::runtime(
                "pgbouncer was not found (/usr/sbin/pgbouncer or on PATH)",
                "install it: `apt-get install pgbouncer` (Debian/Ubuntu)",
            )
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://postgres@127.0.0.1:PORT/DB?sslmode=disable`: a client's URL through it.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.port
        )
    }

    /// The admin console's URL (database `pgbouncer`).
    pub fn admin_url(&self) -> String {
        self.url("pgbouncer")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // runuser passes the signal on; the pid file names pgbouncer itself, for when it does
        // not.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if let Some(mut child) = self.child.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((mut reaper, stdin)) = self.reaper.take() {
            drop(stdin);
            let _ = reaper.wait();
        }
    }
}
