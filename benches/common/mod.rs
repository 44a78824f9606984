//! What the benchmarks share: medians of timed runs, and databases on a sandbox.

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
