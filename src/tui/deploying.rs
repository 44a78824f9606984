//! What a running deploy (or forward rollback) is doing, folded from its events: which
//! migration and statement, which attempt, and, while its statement waits for a lock, who it
//! waits for. The checklist and the Rollback screen draw it; the Monitor marks its backend.

use std::time::{Duration, Instant};

use crate::migrate::DeployEvent;
use crate::migrate::watchdog::Holder;

/// The watchdog says who holds the lock about once a second: older news means the statement
/// no longer waits (or the watchdog is gone).
const WAIT_NEWS: Duration = Duration::from_millis(2500);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deploying {
    /// 1-based, of `total`.
    pub migration: usize,
    pub total: usize,
    pub name: String,
    pub statement: usize,
    pub statements: usize,
    pub preview: String,
    pub attempt: u32,
    pub attempts: u32,
    /// The deploy session's backend.
    pub backend_pid: Option<i32>,
    pub applied: usize,
    /// Who the statement waits for, how long it had waited, and when that was heard.
    pub waiting: Option<(Vec<Holder>, Duration, Instant)>,
    /// The last retry, said.
    pub retried: Option<String>,
    /// Paused for a standby's replay lag: the engine's words ("waiting for replica X: replay
    /// lag N MB / Ts, waited Ws ...").
    pub replica_wait: Option<String>,
}

impl Deploying {
    pub fn fold(&mut self, event: &DeployEvent) {
        match event {
            DeployEvent::MigrationStarted {
                name,
                index,
                total,
                statements,
                attempts,
                backend_pid,
                ..
            } => {
                *self = Deploying {
                    migration: *index,
                    total: *total,
                    name: name.clone(),
                    statements: *statements,
                    attempt: 1,
                    attempts: *attempts,
                    backend_pid: Some(*backend_pid),
                    applied: self.applied,
                    ..Deploying::default()
                };
            }
            DeployEvent::StatementStarted {
                index,
                total,
                preview,
                ..
            } => {
                self.statement = *index;
                self.statements = *total;
                self.preview.clone_from(preview);
                self.waiting = None;
                self.replica_wait = None;
            }
            DeployEvent::Waiting {
                waited_ms, holders, ..
            } => {
                self.waiting = Some((
                    holders.clone(),
                    Duration::from_millis(*waited_ms),
                    Instant::now(),
                ));
            }
            DeployEvent::LockTimeout {
                attempt, attempts, ..
            }
            | DeployEvent::Blocking {
                attempt, attempts, ..
            } => {
                self.retried = event.said().or_else(|| {
                    Some(format!(
                        "attempt {attempt} of {attempts} stopped by lock_timeout"
                    ))
                });
                self.attempt = attempt + 1;
                self.attempts = *attempts;
                self.waiting = None;
            }
            DeployEvent::MigrationApplied { .. } | DeployEvent::AlreadyApplied { .. } => {
                self.applied += 1;
                self.waiting = None;
            }
            DeployEvent::WaitingForReplica { .. } => self.replica_wait = event.said(),
            DeployEvent::ReplicaCaughtUp { .. } => self.replica_wait = None,
            _ => {}
        }
    }

    /// Who the statement waits for now, and for how long (as of `now`); none when the news is
    /// old.
    pub fn waits_for(&self, now: Instant) -> Option<(&[Holder], Duration)> {
        let (holders, waited, heard) = self.waiting.as_ref()?;
        let age = now.saturating_duration_since(*heard);
        (age < WAIT_NEWS).then(|| (holders.as_slice(), *waited + age))
    }

    /// The session to end to free the statement: the head of its queue.
    pub fn root_blocker(&self, now: Instant) -> Option<&Holder> {
        let (holders, _) = self.waits_for(now)?;
        holders.iter().find(|h| !h.waiting).or(holders.first())
    }

    /// Over migrations and the statements of the one running.
    pub fn fraction(&self) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let within = match self.statements {
            0 => 0.0,
            n => self.statement.saturating_sub(1) as f64 / n as f64,
        };
        Some(((self.migration.saturating_sub(1)) as f64 + within) / self.total as f64)
    }

    /// `[2/3] name · statement 1/2 · attempt 2 of 4`
    pub fn headline(&self) -> String {
        let mut out = format!("[{}/{}] {}", self.migration, self.total, self.name);
        if self.statements > 0 && self.statement > 0 {
            out.push_str(&format!(
                " · statement {}/{}",
                self.statement, self.statements
            ));
        }
        if self.attempts > 1 {
            out.push_str(&format!(" · attempt {} of {}", self.attempt, self.attempts));
        }
        out
    }
}

/// The state of a session as a person reads it: `idle in transaction` rather than the wait
/// event of a backend waiting for its client.
pub fn session_state(state: &str, wait_event: Option<&str>) -> String {
    match (state, wait_event) {
        ("active", Some(w)) => format!("active, {w}"),
        ("idle in transaction (aborted)", _) => "idle in xact (aborted)".into(),
        ("", Some(w)) => w.to_owned(),
        ("", None) => "hidden".into(),
        (s, _) => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: i32, waiting: bool, state: &str) -> Holder {
        Holder {
            pid,
            backend_start: chrono::Utc::now(),
            user: "app".into(),
            application: "psql".into(),
            state: state.into(),
            state_seconds: 40.0,
            transaction_seconds: Some(41.0),
            query: "LOCK TABLE \"User\"".into(),
            waiting,
        }
    }

    #[test]
    fn attempts_count_up_with_retries_and_reset_with_the_next_migration() {
        let mut d = Deploying::default();
        let started = |index| DeployEvent::MigrationStarted {
            name: format!("m{index}"),
            index,
            total: 2,
            transactional: true,
            statements: 2,
            attempts: 4,
            backend_pid: 77,
        };
        d.fold(&started(1));
        assert_eq!((d.attempt, d.attempts), (1, 4));
        d.fold(&DeployEvent::LockTimeout {
            name: "m1".into(),
            attempt: 1,
            attempts: 4,
            retry_in_ms: 100,
        });
        assert_eq!(d.attempt, 2);
        assert!(d.headline().contains("attempt 2 of 4"), "{}", d.headline());
        d.fold(&DeployEvent::MigrationApplied {
            name: "m1".into(),
            duration_ms: 3,
        });
        d.fold(&started(2));
        assert_eq!((d.attempt, d.applied, d.backend_pid), (1, 1, Some(77)));
        assert_eq!(d.fraction(), Some(0.5));
    }

    #[test]
    fn the_root_blocker_is_the_head_of_the_queue_and_old_news_is_dropped() {
        let mut d = Deploying::default();
        d.fold(&DeployEvent::Waiting {
            waited_ms: 3000,
            holders: vec![
                holder(5, true, "active"),
                holder(9, false, "idle in transaction"),
            ],
            changed: true,
        });
        let now = Instant::now();
        assert_eq!(d.root_blocker(now).map(|h| h.pid), Some(9));
        assert!(!d.root_blocker(now).is_some_and(Holder::cancel_helps));
        assert!(d.waits_for(now + Duration::from_secs(5)).is_none());
    }

    #[test]
    fn a_wait_for_a_standby_is_said_until_it_caught_up() {
        let mut d = Deploying::default();
        d.fold(&DeployEvent::WaitingForReplica {
            next: "m2".into(),
            replica: "standby1".into(),
            replay_lag_bytes: 3 << 20,
            replay_lag_seconds: Some(4.0),
            waited_ms: 2000,
            max_lag_bytes: 1 << 20,
            wait_limit_ms: 300_000,
        });
        assert_eq!(
            d.replica_wait.as_deref(),
            Some(
                "waiting for replica standby1: replay lag 3.0 MB / 4s, waited 2 s (max_replica_lag 1.0 MB, gives up after 5 min)"
            )
        );
        d.fold(&DeployEvent::ReplicaCaughtUp {
            next: "m2".into(),
            replica: "standby1".into(),
            waited_ms: 2500,
        });
        assert_eq!(d.replica_wait, None);
    }

    #[test]
    fn an_idle_transaction_reads_as_such_not_as_its_wait_event() {
        assert_eq!(
            session_state("idle in transaction", Some("ClientRead")),
            "idle in transaction"
        );
        assert_eq!(
            session_state("active", Some("Lock:relation")),
            "active, Lock:relation"
        );
    }
}
