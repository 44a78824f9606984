//! What a log pane shows, folded from [`LogUpdate`]s without any I/O: the last lines, the
//! follower's state, error lines per minute over the last ten minutes, and the alert.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};

use super::{LineClass, LogLine, LogState, LogUpdate};

/// A log pane's state.
#[derive(Debug, Clone)]
pub struct LogTail {
    lines: VecDeque<LogLine>,
    state: LogState,
    alert_per_minute: u32,
    /// Error lines per second (unix second, count), the last 60 s: the alert's sliding minute.
    seconds: VecDeque<(i64, u32)>,
    /// Error lines per minute (unix minute, count), the last [`LogTail::MINUTES`].
    minutes: VecDeque<(i64, u32)>,
    /// Lines of each class since following started (context lines not counted).
    totals: BTreeMap<LineClass, u64>,
}

impl LogTail {
    /// How many lines are kept.
    pub const LINES: usize = 500;
    /// How many minutes of error counts are kept.
    pub const MINUTES: usize = 10;

    pub fn new(alert_per_minute: u32) -> LogTail {
        LogTail {
            lines: VecDeque::with_capacity(Self::LINES),
            state: LogState::Starting,
            alert_per_minute,
            seconds: VecDeque::new(),
            minutes: VecDeque::new(),
            totals: BTreeMap::new(),
        }
    }

    /// Folds one update in.
    pub fn apply(&mut self, update: LogUpdate) {
        match update {
            LogUpdate::Lines { lines } => {
                for line in lines {
                    self.push(line);
                }
            }
            LogUpdate::State { state } => self.state = state,
        }
    }

    fn push(&mut self, line: LogLine) {
        if !line.context && line.class != LineClass::Notice {
            *self.totals.entry(line.class).or_default() += 1;
            if line.class.is_error() {
                let second = line.at.timestamp();
                count(&mut self.seconds, second, 61);
                count(&mut self.minutes, second.div_euclid(60), Self::MINUTES);
            }
        }
        if self.lines.len() == Self::LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> &VecDeque<LogLine> {
        &self.lines
    }

    pub fn state(&self) -> &LogState {
        &self.state
    }

    /// Lines of `class` since following started.
    pub fn total(&self, class: LineClass) -> u64 {
        self.totals.get(&class).copied().unwrap_or(0)
    }

    /// Error lines in each of the last [`LogTail::MINUTES`] minutes, oldest first; the last is
    /// the current minute.
    pub fn errors_per_minute(&self, now: DateTime<Utc>) -> [u32; LogTail::MINUTES] {
        let current = now.timestamp().div_euclid(60);
        let mut out = [0; LogTail::MINUTES];
        for (minute, n) in &self.minutes {
            let ago = current - minute;
            if (0..LogTail::MINUTES as i64).contains(&ago) {
                out[LogTail::MINUTES - 1 - ago as usize] = *n;
            }
        }
        out
    }

    /// Error lines in the 60 s up to `now`.
    pub fn errors_last_minute(&self, now: DateTime<Utc>) -> u32 {
        let now = now.timestamp();
        self.seconds
            .iter()
            .filter(|(s, _)| now - s < 60 && *s <= now)
            .map(|(_, n)| n)
            .sum()
    }

    /// The alert, when more error lines than `log_alert_per_minute` arrived in the last 60 s
    /// (which holds the current minute's).
    pub fn alert(&self, now: DateTime<Utc>) -> Option<String> {
        let n = self.errors_last_minute(now);
        (n > self.alert_per_minute).then(|| {
            format!(
                "{n} error line{} in the last minute (alert above {} a minute)",
                if n == 1 { "" } else { "s" },
                self.alert_per_minute
            )
        })
    }
}

/// Counts one in bucket `key`, keeping the newest `keep` buckets. Keys come in order but for a
/// clock set back, which finds or inserts its bucket in place.
fn count(buckets: &mut VecDeque<(i64, u32)>, key: i64, keep: usize) {
    match buckets.iter().rposition(|(k, _)| *k <= key) {
        Some(i) if buckets[i].0 == key => buckets[i].1 += 1,
        Some(i) => buckets.insert(i + 1, (key, 1)),
        None => buckets.push_front((key, 1)),
    }
    if let Some(&(newest, _)) = buckets.back() {
        // Buckets are one unit apart at least, so the older ones are out of the window.
        while buckets
            .front()
            .is_some_and(|(k, _)| newest - k >= keep as i64)
        {
            buckets.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 - 1_700_000_000 % 60 + secs, 0)
            .unwrap()
    }

    fn lines(tail: &mut LogTail, secs: i64, text: &str, n: usize) {
        let lines = (0..n).map(|_| LogLine::at(at(secs), text, false)).collect();
        tail.apply(LogUpdate::Lines { lines });
    }

    #[test]
    fn error_lines_are_counted_per_minute_and_the_alert_fires_past_the_threshold() {
        let mut tail = LogTail::new(3);
        lines(&mut tail, 0, "INFO all good", 5);
        lines(&mut tail, 1, "WARN slow", 2);
        lines(&mut tail, 2, "ERROR boom", 3);
        assert_eq!(tail.alert(at(2)), None, "three is not past three");
        lines(&mut tail, 30, "FATAL worse", 1);
        let alert = tail.alert(at(30)).unwrap();
        assert!(
            alert.starts_with("4 error lines in the last minute"),
            "{alert}"
        );
        assert!(alert.contains("above 3 a minute"), "{alert}");
        assert_eq!(tail.total(LineClass::Error), 4);
        assert_eq!(tail.total(LineClass::Warning), 2);
        assert_eq!(tail.total(LineClass::Plain), 5);

        // The window slides: a minute after the first errors, only the FATAL is left.
        assert_eq!(tail.errors_last_minute(at(61)), 4);
        assert_eq!(tail.errors_last_minute(at(63)), 1);
        assert_eq!(tail.alert(at(63)), None);
        // Across a minute's boundary the sliding minute still sees both sides.
        lines(&mut tail, 65, "ERROR again", 3);
        assert_eq!(tail.errors_last_minute(at(66)), 4);
        assert!(tail.alert(at(66)).is_some());

        let minutes = tail.errors_per_minute(at(66));
        assert_eq!(minutes[LogTail::MINUTES - 1], 3, "{minutes:?}");
        assert_eq!(minutes[LogTail::MINUTES - 2], 4, "{minutes:?}");
        // Ten minutes on, the counts have aged out.
        assert_eq!(tail.errors_per_minute(at(66 + 600)), [0; LogTail::MINUTES]);
    }

    #[test]
    fn context_lines_and_notices_are_shown_but_not_counted() {
        let mut tail = LogTail::new(0);
        tail.apply(LogUpdate::Lines {
            lines: vec![
                LogLine::at(at(0), "ERROR from before", true),
                LogLine::notice("logs/app.log was truncated"),
            ],
        });
        assert_eq!(tail.lines().len(), 2);
        assert_eq!(tail.errors_last_minute(at(0)), 0);
        assert_eq!(tail.alert(at(0)), None);
        lines(&mut tail, 1, "ERROR now", 1);
        assert_eq!(
            tail.alert(at(1)).as_deref(),
            Some("1 error line in the last minute (alert above 0 a minute)")
        );
    }

    #[test]
    fn the_ring_keeps_the_last_lines_and_the_state_follows_updates() {
        let mut tail = LogTail::new(10);
        assert_eq!(tail.state(), &LogState::Starting);
        for i in 0..LogTail::LINES + 20 {
            lines(&mut tail, 0, &format!("line {i}"), 1);
        }
        assert_eq!(tail.lines().len(), LogTail::LINES);
        assert_eq!(tail.lines().front().unwrap().text, "line 20");
        let waiting = LogState::Waiting {
            what: "logs/app.log".into(),
            reason: "waiting for logs/app.log to appear".into(),
        };
        tail.apply(LogUpdate::State {
            state: waiting.clone(),
        });
        assert_eq!(tail.state(), &waiting);
    }

    #[test]
    fn a_clock_set_back_counts_in_the_right_bucket() {
        let mut b = VecDeque::new();
        for k in [10, 12, 11, 12, 5] {
            count(&mut b, k, 61);
        }
        assert_eq!(Vec::from(b.clone()), [(5, 1), (10, 1), (11, 1), (12, 2)]);
        count(&mut b, 80, 61);
        assert_eq!(Vec::from(b), [(80, 1)], "older than the window: dropped");
    }
}
