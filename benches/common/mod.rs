//! What the benchmarks share: medians of timed runs, databases on a sandbox, and the CPU time
//! of processes (this one's children, a process by its pid, the sandbox's server). Each bench
//! takes the part it needs.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use pgdeck::db::{self, quote_ident, sandbox::Sandbox};

/// Median wall time of `runs` runs. A closure returning `()` is timed here; one returning a
/// `Duration` times itself (to leave set-up out).
pub fn median<R: Timed>(runs: usize, mut f: impl FnMut() -> R) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let r = f();
            r.took().unwrap_or_else(|| start.elapsed())
        })
        .collect();
    times.sort();
    times[runs / 2]
}

pub trait Timed {
    fn took(&self) -> Option<Duration>;
}

impl Timed for () {
    fn took(&self) -> Option<Duration> {
        None
    }
}

impl Timed for Duration {
    fn took(&self) -> Option<Duration> {
        Some(*self)
    }
}

pub async fn create_db(sandbox: &Sandbox, name: &str) {
    let admin = db::connect(&sandbox.target("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{}", e.cause));
    admin
        .client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
        .await
        .expect("create database");
}

/// CPU time (user and system) of every child process waited for so far.
pub fn children_cpu() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may
/// hold spaces): index 0 is the state, 1 the parent's pid, 11 and 12 utime and stime, 13 and
/// 14 the reaped children's. None once the process is gone.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// Clock ticks per second of `/proc`'s CPU figures (USER_HZ, 100 on Linux).
pub const TICKS_PER_SEC: u64 = 100;

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let f = stat_fields(pid).expect("stat");
    f[11] + f[12]
}

/// The CPU time the sandbox's server has used so far: the postmaster's own, its children's
/// that have exited (the backends of finished sessions), and those of its children alive
/// (backends, checkpointer, WAL writer, autovacuum).
pub fn server_cpu(sandbox: &Sandbox) -> Duration {
    let pid_file =
        std::fs::read_to_string(sandbox.data_dir().join("postmaster.pid")).expect("postmaster.pid");
    let postmaster: u32 = pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("the postmaster's pid");
    let own = stat_fields(postmaster).expect("the postmaster's stat");
    let mut ticks = own[11] + own[12] + own[13] + own[14];
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(f) = stat_fields(pid).filter(|f| f[1] == u64::from(postmaster)) {
            ticks += f[11] + f[12];
        }
    }
    Duration::from_millis(ticks * 1000 / TICKS_PER_SEC)
}
