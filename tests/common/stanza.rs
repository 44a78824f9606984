//! A real pgBackRest stanza on a sandbox cluster, for the tests and the benchmarks: `archive_mode`
//! on, an `archive_command` calling pgBackRest, a local repository, `stanza-create` and a full
//! backup.

use std::path::PathBuf;
use std::process::Command;

use pgdeck::backup::pgbackrest::PgbackrestSettings;
use pgdeck::db::{self, sandbox::Sandbox};

/// A sandbox cluster archiving into a pgBackRest repository, with one full backup.
pub struct Stanza {
    pub sandbox: Sandbox,
    pub settings: PgbackrestSettings,
    pub repo: tempfile::TempDir,
}

/// pgBackRest runs as the server's user: as root, through runuser, so the repository, its
/// locks and logs stay that user's (the server's archive_command writes there too).
pub fn command() -> Vec<String> {
    let program = which("pgbackrest").unwrap_or_else(|| {
        panic!("these tests need pgBackRest: install it with `apt-get install pgbackrest`")
    });
    let program = program.display().to_string();
    if nix::unistd::geteuid().is_root() {
        ["runuser", "-u", "postgres", "--", &program]
            .map(String::from)
            .to_vec()
    } else {
        vec![program]
    }
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

pub fn pgbackrest_sync(settings: &PgbackrestSettings, args: &[&str]) {
    let out = Command::new(&settings.command[0])
        .args(&settings.command[1..])
        .arg(format!("--stanza={}", settings.stanza))
        .arg(format!(
            "--config={}",
            settings.config.as_ref().unwrap().display()
        ))
        .args(args)
        .output()
        .expect("run pgbackrest");
    assert!(
        out.status.success(),
        "pgbackrest {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh sandbox cluster with a stanza.
pub async fn stanza() -> Stanza {
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    Stanza::on(sandbox, "").await
}

impl Stanza {
    /// `sandbox` restarted archiving into a new repository (`extra` more `[global]` settings),
    /// its stanza created and fully backed up.
    pub async fn on(mut sandbox: Sandbox, extra: &str) -> Stanza {
        let command = command();
        let repo = tempfile::Builder::new()
            .prefix("pgdeck-pgbackrest-")
            .tempdir()
            .expect("repository dir");
        let config = repo.path().join("pgbackrest.conf");
        let data = sandbox.data_dir().display().to_string();
        std::fs::write(
        &config,
        format!(
            "[global]\nrepo1-path={repo}/repo\nlog-path={repo}/log\nlock-path={repo}/lock\n\
             log-level-console=warn\nlog-level-file=info\nstart-fast=y\nrepo1-retention-full=2\n\
             archive-timeout=30\n{extra}\n[pgdeck]\npg1-path={data}\npg1-socket-path={data}\npg1-port={port}\n",
            repo = repo.path().display(),
            port = sandbox.port()
        ),
    )
    .expect("write pgbackrest.conf");
        if nix::unistd::geteuid().is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(repo.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let settings = PgbackrestSettings {
            config: Some(config.clone()),
            command,
            ..PgbackrestSettings::new("pgdeck")
        };
        let archive = format!(
            "{} --config={} --stanza=pgdeck archive-push %p",
            settings.command.last().unwrap(),
            config.display()
        );
        let client = connect(&sandbox).await;
        client
            .batch_execute("ALTER SYSTEM SET archive_mode = on")
            .await
            .expect("archive_mode");
        client
            .execute(
                &format!(
                    "ALTER SYSTEM SET archive_command = '{}'",
                    archive.replace('\'', "''")
                ),
                &[],
            )
            .await
            .expect("archive_command");
        drop(client);
        sandbox.stop_immediately().expect("stop");
        sandbox.restart().expect("restart with archiving");
        pgbackrest_sync(&settings, &["stanza-create"]);
        pgbackrest_sync(&settings, &["--type=full", "backup"]);
        Stanza {
            sandbox,
            settings,
            repo,
        }
    }

    /// A pgdeck.toml whose production environment backs up with this stanza.
    pub fn write_config(&self) -> PathBuf {
        let path = self.repo.path().join("pgdeck.toml");
        let words: Vec<String> = self
            .settings
            .command
            .iter()
            .map(|w| format!("{w:?}"))
            .collect();
        std::fs::write(
            &path,
            format!(
                "default_environment = \"production\"\n\n[environments.production]\n\
                 database_url = \"{}\"\nbackup_tool = \"pgbackrest\"\npgbackrest_stanza = \"{}\"\n\
                 pgbackrest_config = \"{}\"\npgbackrest_command = [{}]\nmax_archive_age = \"10m\"\n",
                self.sandbox.url("postgres"),
                self.settings.stanza,
                self.settings.config.as_ref().unwrap().display(),
                words.join(", ")
            ),
        )
        .expect("write pgdeck.toml");
        path
    }
}

pub async fn connect(sandbox: &Sandbox) -> tokio_postgres::Client {
    db::connect(&sandbox.target("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{}", e.cause))
        .client
}
