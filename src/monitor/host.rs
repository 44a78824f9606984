//! Host metrics with sysinfo, when the server runs on this machine (unix socket or loopback):
//! CPU and memory of the host and of the postgres processes.

use std::time::{Duration, Instant};

use serde::Serialize;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use crate::target::{DbTarget, Host as DbHost};

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Whole-host CPU use, %; None on the first sample (CPU use needs two readings).
    pub cpu_percent: Option<f32>,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub postgres_processes: usize,
    /// The postgres processes' share of the whole host's CPU, %; None on the first sample.
    pub postgres_cpu_percent: Option<f32>,
    /// Summed resident memory of the postgres processes. Shared buffers are resident in every
    /// backend that touched them, so this over-counts them; it shows the trend, not a budget.
    pub postgres_resident_bytes: u64,
}

/// With hundreds of backends a sample costs milliseconds of CPU (sysinfo reads /proc for every
/// process), so samples closer together than this reuse the last one; CPU use over a shorter
/// interval would be noise anyway.
const MIN_INTERVAL: Duration = Duration::from_secs(2);

pub struct HostProbe {
    system: System,
    primed: bool,
    last: Option<(Instant, Host)>,
    /// A backend of the server watched (the monitor's own session): its parent is the
    /// postmaster, whose children are this cluster's processes and no other cluster's.
    backend_pid: Option<u32>,
    postmaster: Option<sysinfo::Pid>,
}

/// Whether `target`'s server is on this machine, where its processes can be seen.
pub fn is_local(target: &DbTarget) -> bool {
    match &target.host {
        DbHost::Socket(_) => true,
        DbHost::Tcp(h) => matches!(h.as_str(), "localhost" | "127.0.0.1" | "::1"),
    }
}

impl HostProbe {
    pub fn new() -> HostProbe {
        HostProbe {
            system: System::new(),
            primed: false,
            last: None,
            backend_pid: None,
            postmaster: None,
        }
    }

    /// Counts only the processes of the cluster `backend_pid` (a session of it) belongs to.
    pub fn of_backend(backend_pid: i32) -> HostProbe {
        HostProbe {
            backend_pid: u32::try_from(backend_pid).ok(),
            ..HostProbe::new()
        }
    }

    /// A fresh sample, or the last one if it is younger than two seconds.
    pub fn sample(&mut self) -> Host {
        match &self.last {
            Some((at, host)) if at.elapsed() < MIN_INTERVAL => host.clone(),
            _ => {
                let host = self.read();
                self.last = Some((Instant::now(), host.clone()));
                host
            }
        }
    }

    /// Reads the host and its postgres processes now.
    pub fn read(&mut self) -> Host {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            // Threads are not needed, and listing them is most of the cost with many backends.
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .without_tasks(),
        );
        let cpus = self.system.cpus().len().max(1) as f32;
        if self.postmaster.is_none() {
            self.postmaster = self
                .backend_pid
                .and_then(|pid| self.system.process(sysinfo::Pid::from_u32(pid)))
                .and_then(|backend| backend.parent());
        }
        let postmaster = self.postmaster;
        // The watched cluster's postmaster and its children; by name only when the backend is
        // not to be seen here (another machine behind a forwarded port).
        let postgres: Vec<_> = self
            .system
            .processes()
            .values()
            .filter(|p| match postmaster {
                Some(pm) => p.pid() == pm || p.parent() == Some(pm),
                None => p.name() == "postgres",
            })
            .collect();
        let primed = self.primed;
        self.primed = true;
        Host {
            cpu_percent: primed.then(|| self.system.global_cpu_usage()),
            memory_used_bytes: self.system.used_memory(),
            memory_total_bytes: self.system.total_memory(),
            postgres_processes: postgres.len(),
            postgres_cpu_percent: primed
                .then(|| postgres.iter().map(|p| p.cpu_usage()).sum::<f32>() / cpus),
            postgres_resident_bytes: postgres.iter().map(|p| p.memory()).sum(),
        }
    }
}

impl Default for HostProbe {
    fn default() -> Self {
        Self::new()
    }
}
