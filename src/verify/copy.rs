//! Copying the target's schema into a scratch database: `pg_dump --schema-only` on the target
//! (a read-only session: pg_dump reads in a read-only transaction, and the session's default is
//! read-only besides) piped into `pg_restore` on the scratch side. No data, no owners, no
//! grants, no tablespaces, no publications or subscriptions: the structure, as its statements
//! would meet it.

use std::process::Stdio;

use crate::backup::tools::{self, Programs, Tool};
use crate::error::{Error, Result};
use crate::target::DbTarget;

/// Dumps `target`'s schema and restores it into `into` (an empty database). pg_dump waits at
/// most `lock_wait` for each table's lock on the target.
pub async fn copy_schema(
    programs: &Programs,
    target: &DbTarget,
    into: &DbTarget,
    lock_wait: std::time::Duration,
) -> Result<()> {
    let mut dump = tools::command(&programs.dump, target);
    dump.env("PGAPPNAME", "pgdeck-verify")
        .env("PGOPTIONS", "-c default_transaction_read_only=on")
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-tablespaces",
            "--no-publications",
            "--no-subscriptions",
            "--no-security-labels",
            "--format=custom",
            // Straight into pg_restore: compressing it would only cost CPU.
            "--compress=0",
        ])
        .arg(format!("--lock-wait-timeout={}", lock_wait.as_millis()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut dump = dump.spawn().map_err(|e| spawn_error(&programs.dump, &e))?;
    let Some(stdout) = dump.stdout.take() else {
        return Err(Error::runtime(
            "pg_dump's output could not be read",
            "report this as a bug",
        ));
    };
    let stdin: Stdio = stdout.try_into().map_err(|e: std::io::Error| {
        Error::runtime(
            format!("connecting pg_dump to pg_restore: {e}"),
            "check the system's limits on open files",
        )
    })?;
    let mut restore = tools::command(&programs.restore, into);
    restore
        .env("PGAPPNAME", "pgdeck-verify")
        .args([
            "--no-owner",
            "--no-privileges",
            "--no-tablespaces",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            &into.dbname,
        ])
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let restore = restore
        .spawn()
        .map_err(|e| spawn_error(&programs.restore, &e))?;
    let (dumped, restored) = tokio::join!(dump.wait_with_output(), restore.wait_with_output());
    let dumped = dumped.map_err(|e| spawn_error(&programs.dump, &e))?;
    let restored = restored.map_err(|e| spawn_error(&programs.restore, &e))?;
    if !dumped.status.success() {
        let why = first_error(&dumped.stderr);
        let hint = if why.contains("waiting for a lock on") || why.contains("could not obtain lock")
        {
            format!(
                "a session holds a lock on a table the dump must read (pg_dump waited {} ms for it, so as not to queue the application behind it): see the Monitor's lock queue, then try again; nothing was written to the target",
                lock_wait.as_millis()
            )
        } else {
            "check that the role may read the whole schema, and that pg_dump is not older than the server; nothing was written to the target".to_owned()
        };
        return Err(Error::runtime(
            format!("pg_dump --schema-only of the target failed: {why}"),
            hint,
        ));
    }
    if !restored.status.success() {
        return Err(Error::scratch_unfit(
            format!(
                "the target's schema does not load into the scratch server: {}",
                first_error(&restored.stderr)
            ),
            "the scratch server cannot hold what the schema needs (see the error); rehearse on one that can; nothing was written to the target",
        ));
    }
    Ok(())
}

fn spawn_error(tool: &Tool, e: &std::io::Error) -> Error {
    Error::runtime(
        format!("running {}: {e}", tool.path.display()),
        "check the PostgreSQL client installation",
    )
}

/// The first line saying what went wrong, without the program's name.
fn first_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    // "Query was: LOCK TABLE public."Post" IN ACCESS SHARE MODE" names the table it waited for.
    let lock = text
        .lines()
        .find_map(|l| l.split_once("Query was: LOCK TABLE ").map(|(_, t)| t))
        .and_then(|t| t.split(" IN ").next())
        .map(|t| format!(" (waiting for a lock on {t})"))
        .unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains("ERROR") || l.contains("error:"))
        .or_else(|| text.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("no output");
    let line = line
        .trim()
        .trim_start_matches("pg_dump: ")
        .trim_start_matches("pg_restore: ")
        .trim_start_matches("error: ");
    format!("{line}{lock}")
}
