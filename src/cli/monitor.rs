//! `pgdeck monitor --once`: every pane once; `pgdeck monitor cancel|terminate PID`; `pgdeck
//! monitor logs` (in `logs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{self, Printer};
use super::{ConfirmArgs, Job, exit};
use crate::config::limits;
use crate::error::{Error, Result};
use crate::monitor::watch::{Update, Watch};
use crate::monitor::{Monitor, MonitorSettings, Pane, Signal, Snapshot};
use crate::release::{self, Environment, SignalRequest};
use crate::units::{human_bytes, human_count};

#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Print every pane once and exit
    #[arg(long, conflicts_with = "watch")]
    pub once: bool,
    /// Print every pane again every --interval seconds, as plain text for logs (JSON lines with
    /// --json); keeps going through server restarts
    #[arg(long)]
    pub watch: bool,
    /// Seconds between samples with --watch
    #[arg(long, value_name = "SECS", default_value_t = 2.0,
          value_parser = limits::seconds_in(limits::MONITOR_INTERVAL_SECS))]
    pub interval: f64,
    /// Stop after this many samples with --watch (default: until interrupted)
    #[arg(long, value_name = "N", value_parser = limits::whole_in(limits::MONITOR_COUNT))]
    pub count: Option<u64>,
    /// Long-running threshold in seconds (default 5, the runbook's)
    #[arg(long, value_name = "SECS", default_value_t = 5.0,
          value_parser = limits::seconds_in(limits::LONG_QUERY_SECS))]
    pub long_query: f64,
    /// How many of the largest tables to show
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = limits::whole_in(limits::MONITOR_TOP))]
    pub top: usize,
    /// Never cancel or terminate anything (also `read_only = true` in the environment)
    #[arg(long, global = true)]
    pub read_only: bool,
    #[command(subcommand)]
    pub action: Option<MonitorAction>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MonitorAction {
    /// Cancel a backend's running query (pg_cancel_backend)
    Cancel(Target),
    /// End a backend's session; its transaction rolls back (pg_terminate_backend)
    Terminate(Target),
    /// Follow the application's log (app_log / app_log_command) or, with --server, the
    /// server's own, printing each line classified and the alert past log_alert_per_minute;
    /// until SIGINT / SIGTERM
    Logs(super::logs::LogsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct Target {
    pub pid: i32,
    /// The backend's start time as the monitor shows it (RFC 3339) or as psql prints
    /// pg_stat_activity.backend_start (`2026-12-01 07:23:32.993419+00`): guards against a reused
    /// pid
    #[arg(long, value_name = "TIMESTAMP", value_parser = backend_start)]
    pub backend_start: DateTime<Utc>,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
}

/// RFC 3339, or PostgreSQL's own text form of a timestamptz (a space for the `T`, an offset of
/// hours alone such as `+00`).
fn backend_start(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    // `+00` / `-05` / `+05:30`: chrono wants the minutes.
    let padded = match text.rfind(['+', '-']) {
        Some(i) if i > 10 && text[i + 1..].len() == 2 => format!("{text}:00"),
        _ => text.to_owned(),
    };
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%:z"] {
        if let Ok(t) = DateTime::parse_from_str(&padded, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    Err(format!(
        "'{text}' is not a timestamp: give backend_start as the monitor shows it (RFC 3339) or as psql prints it (2026-12-01 07:23:32.993419+00)"
    ))
}

pub async fn run(job: &Job, args: &MonitorArgs, json: bool) -> Result<u8> {
    let env = &job.env;
    if let Some(action) = &args.action {
        let (signal, t, verb) = match action {
            MonitorAction::Cancel(t) => (Signal::Cancel, t, "cancel the query of"),
            MonitorAction::Terminate(t) => (Signal::Terminate, t, "terminate"),
            MonitorAction::Logs(logs) => return super::logs::run(job, logs, json).await,
        };
        let given = output::given(&t.confirm);
        output::confirmed(
            json,
            given,
            &job.cancel,
            Printer::new(json),
            |confirmation, tx| {
                let req = SignalRequest {
                    pid: t.pid,
                    backend_start: t.backend_start,
                    signal,
                    confirmation,
                    read_only: args.read_only,
                };
                let ctx = job.context(tx);
                async move { release::signal_backend(&ctx, &req).await }
            },
        )
        .await?;
        if json {
            output::json(
                &json!({ "ok": true, "pid": t.pid, "action": format!("{signal:?}").to_lowercase() }),
            );
        } else {
            output::stdout(&format!("done: {verb} backend {}", t.pid));
        }
        return Ok(exit::OK);
    }
    if !args.once && !args.watch {
        return Err(Error::input(
            "monitor needs --once or --watch (or an action: cancel, terminate, logs)",
            "run `pgdeck monitor --once` for one snapshot of every pane",
        ));
    }
    let settings = MonitorSettings {
        long_query: Duration::from_secs_f64(args.long_query),
        top_tables: args.top,
        ..env.health.monitor.clone()
    };
    if args.watch {
        return watch(job, args, settings, json).await;
    }
    let mut monitor = Monitor::connect(&env.target).await?;
    let snapshot = monitor.snapshot(&settings).await;
    if json {
        output::json(
            &json!({ "ok": true, "database": env.target.to_string(), "snapshot": snapshot }),
        );
    } else {
        output::stdout(render(env, &snapshot, &settings).trim_end());
    }
    Ok(exit::OK)
}

/// Samples until `--count` or until SIGINT / SIGTERM, which is how a watch ends: exit 0 (exit 1
/// when `--count` attempts brought not one sample).
async fn watch(job: &Job, args: &MonitorArgs, settings: MonitorSettings, json: bool) -> Result<u8> {
    let env = &job.env;
    let interval = Duration::from_secs_f64(args.interval);
    let mut watcher = Watch::new(&env.target, settings.clone());
    let mut samples = 0u64;
    let mut fresh = 0u64;
    let mut last_cause = String::new();
    loop {
        let update = tokio::select! {
            u = watcher.tick() => u,
            () = job.cancel.cancelled() => return Ok(exit::OK),
        };
        if let Update::Stale { cause, .. } = &update {
            last_cause = cause.clone();
        } else {
            fresh += 1;
        }
        match update {
            Update::Fresh { snapshot } => {
                if json {
                    output::json_stdout(
                        &serde_json::to_string(&json!({ "update": "fresh", "snapshot": snapshot }))
                            .unwrap_or_default(),
                    );
                } else {
                    output::stdout(&format!(
                        "=== {}\n{}",
                        output::timestamp(snapshot.at),
                        render(env, &snapshot, &settings).trim_end()
                    ));
                }
            }
            stale @ Update::Stale { .. } => {
                if json {
                    output::json_stdout(&serde_json::to_string(&stale).unwrap_or_default());
                } else if let Update::Stale {
                    age_seconds,
                    cause,
                    attempt,
                    retry_in_ms,
                    ..
                } = &stale
                {
                    let age = age_seconds
                        .map(|a| format!("last sample {a:.1}s old"))
                        .unwrap_or_else(|| "no sample yet".into());
                    output::stdout(&format!(
                        "--- STALE ({age}): {cause}; reconnecting (attempt {attempt}) in {:.1}s",
                        *retry_in_ms as f64 / 1000.0
                    ));
                }
            }
        }
        samples += 1;
        if args.count.is_some_and(|n| samples >= n) {
            if fresh == 0 {
                // Not one sample: the watch saw nothing, which is no success.
                return Err(Error::runtime(
                    format!("no sample in {samples} attempt(s): {last_cause}"),
                    "check that the server is up and reachable, then watch again",
                ));
            }
            return Ok(exit::OK);
        }
        tokio::select! {
            _ = tokio::time::sleep(watcher.next_delay(interval)) => {}
            () = job.cancel.cancelled() => return Ok(exit::OK),
        }
    }
}

fn cost<T>(pane: &Pane<T>) -> String {
    match pane {
        Pane::Ok(s) => format!("({:.1} ms)", s.cost_ms),
        _ => String::new(),
    }
}

fn unavailable<T>(pane: &Pane<T>) -> Option<String> {
    match pane {
        Pane::Ok(_) => None,
        Pane::Unavailable { reason } => Some(format!("  {reason}\n")),
        Pane::Error { cause } => Some(format!("  error: {cause}\n")),
    }
}

fn render(env: &Environment, s: &Snapshot, settings: &MonitorSettings) -> String {
    let mut out = format!(
        "{} (PostgreSQL {}) at {}\n",
        env.target,
        s.server_version,
        output::timestamp(s.at)
    );
    if !s.sees_all_sessions {
        out.push_str("note: this role is not a superuser or member of pg_monitor; other users' sessions show no details\n");
    }

    out.push_str(&format!("\nCONNECTIONS {}\n", cost(&s.connections)));
    if let Pane::Ok(c) = &s.connections {
        let c = &c.data;
        let alert = if c.utilisation >= settings.connections_alert {
            "  ALERT: above 80 % of usable connections"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {} of {} usable ({:.0} %){alert}\n",
            c.total,
            c.usable_max,
            c.utilisation * 100.0
        ));
        if c.total == 0 {
            out.push_str("  no other sessions\n");
        } else {
            let states: Vec<String> = c.by_state.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out.push_str(&format!(
                "  by state: {}; waiting on locks: {}\n",
                states.join(", "),
                c.waiting_on_locks
            ));
            let list = |v: &[(String, i64)]| {
                v.iter()
                    .map(|(k, n)| format!("{} {n}", if k.is_empty() { "(none)" } else { k }))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(
                "  by database: {}\n  by user: {}\n  by application: {}\n",
                list(&c.by_database),
                list(&c.by_user),
                list(&c.by_application)
            ));
        }
    }
    out.push_str(&unavailable(&s.connections).unwrap_or_default());

    out.push_str(&format!(
        "\nLONG-RUNNING (over {}s) {}\n",
        settings.long_query.as_secs_f64(),
        cost(&s.long_running)
    ));
    if let Pane::Ok(l) = &s.long_running {
        if l.data.is_empty() {
            out.push_str("  none\n");
        }
        for q in &l.data {
            out.push_str(&format!(
                "  pid {} ({}, {}, {}) {} {:.1}s{}: {}\n    backend_start {}\n",
                q.pid,
                q.user,
                or_dash(&q.application),
                q.client,
                q.state,
                q.query_seconds.max(q.transaction_seconds),
                q.wait_event
                    .as_deref()
                    .map(|w| format!(", waiting on {w}"))
                    .unwrap_or_default(),
                truncate(&q.query_line, 100),
                q.backend_start.to_rfc3339()
            ));
        }
    }
    out.push_str(&unavailable(&s.long_running).unwrap_or_default());

    out.push_str(&format!("\nLOCK QUEUE {}\n", cost(&s.blocking)));
    if let Pane::Ok(b) = &s.blocking {
        if b.data.roots.is_empty() {
            out.push_str("  nobody is waiting for a lock\n");
        }
        for r in &b.data.roots {
            out.push_str(&format!(
                "  pid {} ({}, {}, {}) blocks {}: {}\n",
                r.pid,
                r.user,
                or_dash(&r.application),
                r.state,
                r.victims.len(),
                truncate(&r.query, 80)
            ));
            for v in &r.victims {
                let ddl = if v.ddl_access_exclusive {
                    format!(
                        "  DDL waiting for ACCESS EXCLUSIVE, {} queued behind it",
                        v.queued_behind
                    )
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "    └ pid {} waits {:.1}s for {} on {}{ddl}: {}\n",
                    v.pid,
                    v.waiting_seconds,
                    v.lock_mode.as_deref().unwrap_or("a lock"),
                    v.relation.as_deref().unwrap_or("?"),
                    truncate(&v.query, 80)
                ));
            }
        }
    }
    out.push_str(&unavailable(&s.blocking).unwrap_or_default());

    out.push_str(&format!("\nLARGEST TABLES {}\n", cost(&s.tables)));
    if let Pane::Ok(t) = &s.tables {
        out.push_str(&format!(
            "  {:<40} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            "TABLE", "ROWS", "HEAP", "TOAST", "INDEXES", "TOTAL", "GROWTH"
        ));
        for t in &t.data {
            out.push_str(&format!(
                "  {:<40} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}{}\n",
                truncate(&t.name, 40),
                t.rows_estimate
                    .map(human_count)
                    .unwrap_or_else(|| "?".into()),
                human_bytes(t.heap_bytes),
                human_bytes(t.toast_bytes),
                human_bytes(t.index_bytes),
                human_bytes(t.total_bytes),
                t.growth_bytes
                    .map(human_bytes)
                    .unwrap_or_else(|| "-".into()),
                if t.estimated {
                    "  (estimate: locked)"
                } else {
                    ""
                }
            ));
        }
    }
    out.push_str(&unavailable(&s.tables).unwrap_or_default());

    out.push_str(&format!("\nPROGRESS {}\n", cost(&s.progress)));
    if let Pane::Ok(p) = &s.progress {
        if p.data.is_empty() {
            out.push_str("  no index build, vacuum or cluster running\n");
        }
        for p in &p.data {
            out.push_str(&format!(
                "  pid {} {} {} — {}{}\n",
                p.pid,
                p.command,
                p.relation,
                p.phase,
                p.percent.map(|x| format!(", {x:.0} %")).unwrap_or_default()
            ));
        }
    }
    out.push_str(&unavailable(&s.progress).unwrap_or_default());

    out.push_str(&render_replication(s));
    if !s.alerts.is_empty() {
        out.push_str("\nALERTS\n");
        for a in &s.alerts {
            out.push_str(&format!("  ALERT: {}\n", a.text));
        }
    }

    if let Some(h) = &s.host {
        let pct = |p: Option<f32>| {
            p.map(|p| format!("{p:.0} %"))
                .unwrap_or_else(|| "measuring".into())
        };
        out.push_str(&format!(
            "\nHOST\n  cpu {} (postgres {}), memory {} of {}; {} postgres processes, {} resident\n",
            pct(h.cpu_percent),
            pct(h.postgres_cpu_percent),
            human_bytes(h.memory_used_bytes as i64),
            human_bytes(h.memory_total_bytes as i64),
            h.postgres_processes,
            human_bytes(h.postgres_resident_bytes as i64)
        ));
    }
    out
}

/// The replication pane (standbys, slots, the server's own recovery) and PgBouncer's pools.
fn render_replication(s: &Snapshot) -> String {
    let bytes = |b: Option<i64>| b.map(human_bytes).unwrap_or_else(|| "?".into());
    let secs = |t: Option<f64>| t.map(|t| format!("{t:.1}s")).unwrap_or_else(|| "-".into());
    let mut out = format!("\nREPLICATION {}\n", cost(&s.replication));
    if let Pane::Ok(r) = &s.replication {
        let r = &r.data;
        if let Some(rec) = &r.recovery {
            out.push_str(&format!(
                "  this server is a STANDBY (read-only): received WAL not yet replayed {}, last replayed commit {} ago{}\n",
                bytes(rec.replay_behind_bytes),
                secs(rec.last_replay_seconds),
                if rec.replay_paused { "; replay PAUSED" } else { "" }
            ));
        }
        if r.standbys.is_empty() {
            out.push_str("  no standby streams from this server\n");
        } else {
            out.push_str(&format!(
                "  {:<20} {:<10} {:<8} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}\n",
                "STANDBY",
                "STATE",
                "SYNC",
                "SENT",
                "WRITE",
                "FLUSH",
                "REPLAY",
                "W TIME",
                "F TIME",
                "R TIME"
            ));
        }
        for st in &r.standbys {
            out.push_str(&format!(
                "  {:<20} {:<10} {:<8} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}\n",
                truncate(&st.name, 20),
                st.state,
                st.sync_state,
                bytes(st.sent_lag_bytes),
                bytes(st.write_lag_bytes),
                bytes(st.flush_lag_bytes),
                bytes(st.replay_lag_bytes),
                secs(st.write_lag_seconds),
                secs(st.flush_lag_seconds),
                secs(st.replay_lag_seconds),
            ));
        }
        if r.slots.is_empty() {
            out.push_str("  no replication slots\n");
        }
        for slot in &r.slots {
            out.push_str(&format!(
                "  slot {} ({}{}) {}, retains {}{}\n",
                slot.name,
                slot.slot_type,
                slot.database
                    .as_deref()
                    .map(|d| format!(", {d}"))
                    .unwrap_or_default(),
                if slot.active { "active" } else { "INACTIVE" },
                bytes(slot.retained_bytes),
                slot.wal_status
                    .as_deref()
                    .map(|w| format!(", WAL {w}"))
                    .unwrap_or_default()
            ));
        }
    }
    out.push_str(&unavailable(&s.replication).unwrap_or_default());
    if let Some(pools) = &s.pools {
        out.push_str(&format!("\nPGBOUNCER POOLS {}\n", cost(pools)));
        if let Pane::Ok(p) = pools {
            if p.data.pools.is_empty() {
                out.push_str("  no pools in use\n");
            } else {
                out.push_str(&format!(
                    "  {:<30} {:<11} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6}\n",
                    "POOL",
                    "MODE",
                    "CL ACTIVE",
                    "CL WAIT",
                    "SV ACTIVE",
                    "SV IDLE",
                    "MAX WAIT",
                    "USED"
                ));
            }
            for pool in &p.data.pools {
                out.push_str(&format!(
                    "  {:<30} {:<11} {:>9} {:>9} {:>9} {:>9} {:>7.1}s {:>5.0}%\n",
                    truncate(&format!("{}/{}", pool.database, pool.user), 30),
                    pool.pool_mode,
                    pool.clients_active,
                    pool.clients_waiting,
                    pool.servers_active,
                    pool.servers_idle,
                    pool.max_wait_seconds,
                    pool.utilisation * 100.0
                ));
            }
        }
        out.push_str(&unavailable(pools).unwrap_or_default());
    }
    out
}

/// An application name, or "-" for a session that set none.
fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}
