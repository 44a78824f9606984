//! pgBackRest, for databases too large to dump before every release: its base backups read from
//! `pgbackrest info --output=json`, its own `check` and `verify`, the server's archiver
//! (`pg_stat_archiver`), and named restore points. pgdeck runs the pgBackRest CLI and reads
//! what it says; it reimplements none of it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio_postgres::Client;

use crate::db::query_error;
use crate::error::{Error, ErrorKind, Result};
use crate::units::human_duration;

/// How an environment reaches its pgBackRest stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgbackrestSettings {
    pub stanza: String,
    /// `--config`; pgBackRest's own default (`/etc/pgbackrest/pgbackrest.conf`) when None.
    pub config: Option<PathBuf>,
    /// The program and its leading arguments: `pgbackrest`, or e.g. `sudo -u postgres
    /// pgbackrest` where the repository belongs to the server's user.
    pub command: Vec<String>,
    /// Archiving is healthy only if the last WAL segment archived is younger than this.
    pub max_archive_age: Duration,
}

impl PgbackrestSettings {
    pub fn new(stanza: &str) -> PgbackrestSettings {
        PgbackrestSettings {
            stanza: stanza.to_owned(),
            config: None,
            command: vec!["pgbackrest".into()],
            max_archive_age: Duration::from_secs(15 * 60),
        }
    }
}

/// What one pgBackRest command printed, and whether it succeeded.
#[derive(Debug, Clone, Serialize)]
pub struct Ran {
    /// The command as run (no secrets: pgBackRest reads its own config).
    pub command: String,
    pub ok: bool,
    pub code: Option<i32>,
    pub output: String,
}

/// Runs `pgbackrest --stanza=S [--config=C] ARGS`, its output captured.
pub async fn run(settings: &PgbackrestSettings, args: &[&str]) -> Result<Ran> {
    let Some((program, lead)) = settings.command.split_first() else {
        return Err(Error::input(
            "pgbackrest_command is empty",
            "name the program: pgbackrest_command = [\"pgbackrest\"]",
        ));
    };
    let mut all: Vec<String> = lead.to_vec();
    all.push(format!("--stanza={}", settings.stanza));
    if let Some(config) = &settings.config {
        all.push(format!("--config={}", config.display()));
    }
    all.extend(args.iter().map(|a| a.to_string()));
    let shown = std::iter::once(program.as_str())
        .chain(all.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(program)
        .args(&all)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            Error::runtime(
                format!("could not run {program}: {e}"),
                "install pgBackRest (`apt-get install pgbackrest`) or set pgbackrest_command to where it is",
            )
        })?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&err);
    }
    Ok(Ran {
        command: shown,
        ok: out.status.success(),
        code: out.status.code(),
        output,
    })
}

impl Ran {
    /// Its last line that says something: pgBackRest's error, when it failed.
    pub fn last_line(&self) -> &str {
        self.output
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no output")
    }
}

/// One base backup in the repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaseBackup {
    pub label: String,
    /// full, diff or incr.
    pub kind: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// Whether pgBackRest found an error in it (a checksum of a page, say).
    pub error: bool,
    /// The database's size and what the repository keeps of it.
    pub size: i64,
    pub repository_size: i64,
    /// The first and last WAL segment it needs.
    pub wal_start: String,
    pub wal_stop: String,
}

/// The stanza as `pgbackrest info` sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StanzaInfo {
    pub stanza: String,
    /// pgBackRest's status: 0 is ok.
    pub status_code: i64,
    pub status: String,
    /// The system identifiers of the clusters the stanza has backed up, newest last.
    pub system_ids: Vec<u64>,
    /// Oldest first, as pgBackRest lists them.
    pub backups: Vec<BaseBackup>,
    /// The WAL archive's range, when any is there.
    pub archive_min: Option<String>,
    pub archive_max: Option<String>,
}

impl StanzaInfo {
    /// The newest backup without an error.
    pub fn newest(&self) -> Option<&BaseBackup> {
        self.backups.iter().rev().find(|b| !b.error)
    }
}

#[derive(Deserialize)]
struct InfoJson {
    name: String,
    status: StatusJson,
    #[serde(default)]
    db: Vec<DbJson>,
    #[serde(default)]
    backup: Vec<BackupJson>,
    #[serde(default)]
    archive: Vec<ArchiveJson>,
}

#[derive(Deserialize)]
struct StatusJson {
    code: i64,
    message: String,
}

#[derive(Deserialize)]
struct DbJson {
    #[serde(rename = "system-id")]
    system_id: u64,
}

#[derive(Deserialize)]
struct BackupJson {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: StartStop<i64>,
    #[serde(default)]
    error: bool,
    info: BackupInfoJson,
    archive: StartStop<Option<String>>,
}

#[derive(Deserialize)]
struct StartStop<T> {
    start: T,
    stop: T,
}

#[derive(Deserialize)]
struct BackupInfoJson {
    size: i64,
    repository: RepositoryJson,
}

#[derive(Deserialize)]
struct RepositoryJson {
    #[serde(default)]
    size: Option<i64>,
    delta: i64,
}

#[derive(Deserialize)]
struct ArchiveJson {
    min: Option<String>,
    max: Option<String>,
}

/// Reads `pgbackrest info --output=json` of the stanza.
pub async fn info(settings: &PgbackrestSettings) -> Result<StanzaInfo> {
    let ran = run(settings, &["info", "--output=json"]).await?;
    if !ran.ok {
        return Err(failed("pgbackrest info", &ran));
    }
    parse_info(&ran.output, &settings.stanza)
}

/// The stanza's entry in `info`'s JSON (an array of stanzas).
pub fn parse_info(json: &str, stanza: &str) -> Result<StanzaInfo> {
    let unreadable = |why: String| {
        Error::runtime(
            format!("pgbackrest info printed what pgdeck cannot read: {why}"),
            "run `pgbackrest info --output=json` by hand; pgdeck reads pgBackRest 2.x's format",
        )
    };
    let stanzas: Vec<InfoJson> =
        serde_json::from_str(json).map_err(|e| unreadable(e.to_string()))?;
    let Some(s) = stanzas.into_iter().find(|s| s.name == stanza) else {
        return Err(Error::input(
            format!("pgBackRest knows no stanza named {stanza}"),
            "create it (`pgbackrest --stanza=NAME stanza-create`) or set pgbackrest_stanza to one `pgbackrest info` lists",
        ));
    };
    // 1: missing stanza path, 3: missing stanza data (2, no valid backup, is a state to report).
    if matches!(s.status.code, 1 | 3) {
        return Err(Error::input(
            format!(
                "the pgBackRest stanza {stanza} is not set up: {}",
                s.status.message
            ),
            "create it: `pgbackrest --stanza=NAME stanza-create`, with the server's archive_command pushing to it",
        ));
    }
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or_default();
    let archive = s.archive.last();
    Ok(StanzaInfo {
        stanza: s.name,
        status_code: s.status.code,
        status: s.status.message,
        system_ids: s.db.iter().map(|d| d.system_id).collect(),
        backups: s
            .backup
            .into_iter()
            .map(|b| BaseBackup {
                label: b.label,
                kind: b.kind,
                started: at(b.timestamp.start),
                finished: at(b.timestamp.stop),
                error: b.error,
                size: b.info.size,
                repository_size: b.info.repository.size.unwrap_or(b.info.repository.delta),
                wal_start: b.archive.start.unwrap_or_default(),
                wal_stop: b.archive.stop.unwrap_or_default(),
            })
            .collect(),
        archive_min: archive.and_then(|a| a.min.clone()),
        archive_max: archive.and_then(|a| a.max.clone()),
    })
}

fn failed(what: &str, ran: &Ran) -> Error {
    let last = ran
        .output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    Error::runtime(
        format!(
            "{what} failed ({}): {}",
            describe_code(ran.code),
            last.trim()
        ),
        format!("run `{}` by hand to see all it says", ran.command),
    )
}

fn describe_code(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit {c}"),
        None => "stopped by a signal".into(),
    }
}

/// What `pgbackrest check` and `pgbackrest verify` said of the stanza.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub check: Ran,
    pub verify: Ran,
}

impl Checked {
    pub fn ok(&self) -> bool {
        self.check.ok && self.verify.ok
    }

    /// The verification failure, exit code 10, naming which failed and its last line.
    pub fn error(&self) -> Option<Error> {
        let bad: Vec<(&str, &Ran)> = [("check", &self.check), ("verify", &self.verify)]
            .into_iter()
            .filter(|(_, r)| !r.ok)
            .collect();
        let (_, first) = bad.first()?;
        let last = first
            .output
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        Some(Error::new(
            ErrorKind::VerifyFailed,
            format!(
                "the pgBackRest stanza failed verification: pgbackrest {} ({}): {}",
                bad.iter()
                    .map(|(w, _)| *w)
                    .collect::<Vec<_>>()
                    .join(" and "),
                describe_code(first.code),
                last.trim()
            ),
            format!(
                "run `{}` by hand to see all it says; fix the repository or the archive_command before a release relies on it",
                first.command
            ),
        ))
    }
}

/// Runs `pgbackrest check` (the archive_command works, the repository is reachable) and then
/// `pgbackrest verify` (every file in the repository against its checksum).
pub async fn check_and_verify(settings: &PgbackrestSettings) -> Result<Checked> {
    let check = run(settings, &["check"]).await?;
    let verify = run(settings, &["verify"]).await?;
    Ok(Checked { check, verify })
}

/// `pgbackrest backup` (of `kind`, or the stanza's configured type), then the newest backup of
/// the stanza as `pgbackrest info` has it: the one just made.
pub async fn backup(settings: &PgbackrestSettings, kind: Option<&str>) -> Result<BaseBackup> {
    let kind = kind.map(|k| format!("--type={k}"));
    let mut args: Vec<&str> = kind.iter().map(String::as_str).collect();
    args.push("backup");
    let ran = run(settings, &args).await?;
    if !ran.ok {
        return Err(failed("pgbackrest backup", &ran));
    }
    info(settings).await?.newest().cloned().ok_or_else(|| {
        Error::runtime(
            format!(
                "pgbackrest backup of stanza {} succeeded but pgbackrest info lists no backup",
                settings.stanza
            ),
            "run pgbackrest info for the stanza and check its repository settings",
        )
    })
}

/// The server's WAL archiver, from `pg_stat_archiver`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Archiver {
    pub archive_mode: String,
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_at: Option<DateTime<Utc>>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_at: Option<DateTime<Utc>>,
    /// The server's clock when it was read.
    pub now: DateTime<Utc>,
}

impl Archiver {
    pub async fn read(client: &Client) -> Result<Archiver> {
        let row = client
            .query_one(
                "SELECT current_setting('archive_mode'), archived_count, last_archived_wal, \
                        last_archived_time, failed_count, last_failed_wal, last_failed_time, now() \
                 FROM pg_stat_archiver",
                &[],
            )
            .await
            .map_err(|e| query_error("reading the WAL archiver (pg_stat_archiver)", &e))?;
        Ok(Archiver {
            archive_mode: row.get(0),
            archived_count: row.get(1),
            last_archived_wal: row.get(2),
            last_archived_at: row.get(3),
            failed_count: row.get(4),
            last_failed_wal: row.get(5),
            last_failed_at: row.get(6),
            now: row.get(7),
        })
    }

    /// Why archiving is not healthy now, or None: archive_mode off, a failure since the last
    /// success, nothing archived yet, or the last archived segment older than `max_age`.
    pub fn problem(&self, max_age: Duration) -> Option<String> {
        if self.archive_mode == "off" {
            return Some("archive_mode is off: no WAL is archived, so there is no point in time to recover to".into());
        }
        let failed_since = match (self.last_failed_at, self.last_archived_at) {
            (Some(failed), Some(archived)) => failed >= archived,
            (Some(_), None) => true,
            _ => false,
        };
        if failed_since {
            return Some(format!(
                "archive_command failed {} time(s), the last on {} at {}, with no success since: WAL is piling up on the server and cannot be recovered from the archive",
                self.failed_count,
                self.last_failed_wal.as_deref().unwrap_or("a segment"),
                self.last_failed_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ));
        }
        let Some(archived) = self.last_archived_at else {
            return Some("no WAL segment has been archived yet".into());
        };
        let age = (self.now - archived).to_std().unwrap_or_default();
        (age > max_age).then(|| {
            format!(
                "the last WAL segment archived ({}) is {} old, above {}",
                self.last_archived_wal.as_deref().unwrap_or("?"),
                human_duration(age),
                human_duration(max_age)
            )
        })
    }
}

/// Restores the stanza to the restore point `point` into the empty directory `dir`, paused at
/// the point (a hot standby: read-only until someone promotes it), with archiving off so it
/// never pushes into the repository.
pub async fn restore_to_point(
    settings: &PgbackrestSettings,
    point: &str,
    dir: &std::path::Path,
) -> Result<Ran> {
    let ran = run(
        settings,
        &[
            &format!("--pg1-path={}", dir.display()),
            "--type=name",
            &format!("--target={point}"),
            "--target-action=pause",
            "--archive-mode=off",
            "restore",
        ],
    )
    .await?;
    if !ran.ok {
        return Err(failed("pgbackrest restore", &ran));
    }
    Ok(ran)
}

/// A named restore point: the moment a release started, to recover to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    pub name: String,
    /// Its position in the WAL.
    pub lsn: String,
    pub created_at: DateTime<Utc>,
    /// The WAL segment it is in, switched away from so it is archived now, not when the
    /// segment fills.
    pub wal: String,
}

/// `pgdeck_<environment>_<UTC time to the millisecond>`, within PostgreSQL's 63 bytes; the environment's name is
/// reduced to letters, digits and `_`.
pub fn restore_point_name(environment: &str, at: DateTime<Utc>) -> String {
    let env: String = environment
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(36)
        .collect();
    // To the millisecond: two releases in one second get points of their own (recovery stops
    // at the first point of a name).
    format!("pgdeck_{env}_{}", at.format("%Y%m%dT%H%M%S%3fZ"))
}

/// Creates the restore point and switches to a new WAL segment, so that the one holding it is
/// archived at once.
pub async fn create_restore_point(client: &Client, environment: &str) -> Result<RestorePoint> {
    let now: DateTime<Utc> = client
        .query_one("SELECT now()", &[])
        .await
        .map_err(|e| query_error("reading the server's clock", &e))?
        .get(0);
    let name = restore_point_name(environment, now);
    let row = client
        .query_one(
            "WITH p AS (SELECT pg_create_restore_point($1) AS lsn) \
             SELECT p.lsn::text, pg_walfile_name(p.lsn), pg_switch_wal()::text FROM p",
            &[&name],
        )
        .await
        .map_err(|e| {
            let mut err = query_error("creating the restore point", &e);
            err.hint = "creating a restore point needs superuser or EXECUTE on pg_create_restore_point and pg_switch_wal, on the primary, with wal_level replica or logical".into();
            err
        })?;
    Ok(RestorePoint {
        name,
        lsn: row.get(0),
        created_at: now,
        wal: row.get(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000004","min":"000000010000000000000001"}],
      "backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},"backrest":{"format":5,"version":"2.45"},
        "database":{"id":1,"repo-key":1},"error":false,"info":{"delta":22992572,"repository":{"delta":3043462,"size":3043462},"size":22992572},
        "label":"20261202-021030F","lsn":{"start":"0/2000028","stop":"0/2000100"},"prior":null,"reference":null,
        "timestamp":{"start":1796177430,"stop":1796177436},"type":"full"}],
      "cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7714523299659141101,"version":"15"}],"name":"demo",
      "repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    #[test]
    fn info_json_is_read_for_the_stanza_named() {
        let info = parse_info(INFO, "demo").expect("parse");
        assert_eq!(info.status, "ok");
        assert_eq!(info.system_ids, vec![7714523299659141101]);
        let b = info.newest().expect("a backup");
        assert_eq!(b.label, "20261202-021030F");
        assert_eq!(b.kind, "full");
        assert_eq!(b.finished.timestamp(), 1796177436);
        assert_eq!((b.size, b.repository_size), (22992572, 3043462));
        assert_eq!(
            info.archive_max.as_deref(),
            Some("000000010000000000000004")
        );
        let e = parse_info(INFO, "other").unwrap_err();
        assert!(e.cause.contains("no stanza named other"), "{}", e.cause);
        assert!(parse_info("not json", "demo").is_err());
    }

    #[test]
    fn archiving_is_healthy_only_when_it_succeeded_last_and_recently() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let ok = Archiver {
            archive_mode: "on".into(),
            archived_count: 5,
            last_archived_wal: Some("000000010000000000000004".into()),
            last_archived_at: Some(now - chrono::Duration::seconds(60)),
            failed_count: 0,
            last_failed_wal: None,
            last_failed_at: None,
            now,
        };
        let max = Duration::from_secs(600);
        assert_eq!(ok.problem(max), None);
        let failing = Archiver {
            failed_count: 3,
            last_failed_wal: Some("000000010000000000000005".into()),
            last_failed_at: Some(now - chrono::Duration::seconds(5)),
            ..ok.clone()
        };
        assert!(failing.problem(max).unwrap().contains("failed 3 time(s)"));
        let recovered = Archiver {
            last_failed_at: Some(now - chrono::Duration::seconds(120)),
            ..failing.clone()
        };
        assert_eq!(recovered.problem(max), None);
        let stale = Archiver {
            last_archived_at: Some(now - chrono::Duration::seconds(3600)),
            ..ok.clone()
        };
        assert!(
            stale.problem(max).unwrap().contains("1 h old"),
            "{:?}",
            stale.problem(max)
        );
        let off = Archiver {
            archive_mode: "off".into(),
            ..ok
        };
        assert!(off.problem(max).unwrap().contains("archive_mode is off"));
    }

    #[test]
    fn restore_point_names_fit_and_say_the_environment_and_time() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            restore_point_name("production", at),
            "pgdeck_production_20270115T080000000Z"
        );
        let long = restore_point_name(&"tenants/acme-".repeat(10), at);
        assert!(long.len() <= 63, "{long}");
        assert!(long.starts_with("pgdeck_tenants_acme_"));
    }
}
