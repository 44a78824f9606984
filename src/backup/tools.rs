//! Finding `pg_dump` / `pg_restore`, their versions, and the environment that carries the
//! connection to them. The password travels in `PGPASSWORD` of the child's environment, never on
//! its command line (any user can read another process's argv).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::error::{Error, Result};
use crate::target::{DbTarget, Host, SslMode};

/// A client program and its major version.
#[derive(Debug, Clone)]
pub struct Tool {
    pub path: PathBuf,
    pub version: String,
    pub major: u32,
}

/// pg_dump and pg_restore, found together once per run.
pub struct Programs {
    pub dump: Tool,
    pub restore: Tool,
}

impl Programs {
    pub async fn find() -> Result<Programs> {
        let (dump, restore) = tokio::try_join!(find("pg_dump"), find("pg_restore"))?;
        Ok(Programs { dump, restore })
    }
}

/// The newest `program` available: `/usr/lib/postgresql/<v>/bin` first (Debian keeps several
/// versions side by side there), then PATH.
pub async fn find(program: &str) -> Result<Tool> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(program))
        .filter(|p| p.is_file())
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .filter(|p| p.is_file()),
        );
    }
    // One probe a program, however many links lead to it (Debian's /usr/bin and /bin both lead
    // to its version wrapper, a script slower to start than the program), all at once.
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    let probes = futures_util::future::join_all(candidates.iter().map(|p| probe(p))).await;
    let mut best: Option<Tool> = None;
    for tool in probes.into_iter().flatten() {
        if best.as_ref().is_none_or(|b| tool.major > b.major) {
            best = Some(tool);
        }
    }
    best.ok_or_else(|| {
        Error::runtime(
            format!("{program} was not found on PATH or in /usr/lib/postgresql/*/bin"),
            "install the PostgreSQL client programs: `apt-get install postgresql-client` (Debian/Ubuntu) \
             or `brew install libpq` (macOS)",
        )
    })
}

async fn probe(path: &Path) -> Result<Tool> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            Error::runtime(
                format!("cannot run {}: {e}", path.display()),
                "check the installation",
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    let version = text
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_owned();
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| {
            Error::runtime(
                format!("{} printed no version", path.display()),
                "check the installation",
            )
        })?;
    Ok(Tool {
        path: path.to_owned(),
        version,
        major,
    })
}

/// A command for `tool` aimed at `target` through libpq variables only.
pub fn command(tool: &Tool, target: &DbTarget) -> Command {
    let mut cmd = Command::new(&tool.path);
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGPASSFILE",
        "PGSERVICE",
        "PGOPTIONS",
    ] {
        cmd.env_remove(var);
    }
    let host = match &target.host {
        Host::Tcp(h) => h.clone(),
        Host::Socket(dir) => dir.display().to_string(),
    };
    cmd.env("PGHOST", host)
        .env("PGPORT", target.port.to_string())
        .env("PGUSER", &target.user)
        .env("PGDATABASE", &target.dbname)
        .env("PGAPPNAME", "pgdeck-backup")
        .env(
            "PGCONNECT_TIMEOUT",
            target.connect_timeout.as_secs().max(1).to_string(),
        )
        .env(
            "PGSSLMODE",
            match target.sslmode {
                SslMode::Disable => "disable",
                SslMode::Prefer => "prefer",
                SslMode::Require => "require",
                SslMode::VerifyCa => "verify-ca",
                SslMode::VerifyFull => "verify-full",
            },
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(root) = &target.sslrootcert {
        cmd.env("PGSSLROOTCERT", root);
    }
    if let Some(pw) = target.password() {
        cmd.env("PGPASSWORD", pw.expose());
    }
    cmd
}

/// Ends a child started in a process group of its own, and everything in that group (pg_dump's
/// `-j` workers, a hook's pipeline): SIGTERM, then SIGKILL after 5 s; waits for the child.
pub async fn end_group(child: &mut tokio::process::Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let Some(pid) = child.id() else {
        return;
    };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Workers that outlived their parent.
    let _ = killpg(group, Signal::SIGKILL);
}
