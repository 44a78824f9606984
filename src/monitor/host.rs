//! Host metrics with sysinfo, when the server runs on this machine (unix socket or loopback):
//! CPU and memory of the host and of the postgres processes.

use serde::Serialize;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use crate::config::{DbTarget, Host as DbHost};

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

pub struct HostProbe {
    system: System,
    primed: bool,
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
        }
    }

    pub fn sample(&mut self) -> Host {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let cpus = self.system.cpus().len().max(1) as f32;
        let postgres: Vec<_> = self
            .system
            .processes()
            .values()
            .filter(|p| p.name() == "postgres")
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
