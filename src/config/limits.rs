//! The range each number may take, checked where it is read: in `pgdeck.toml` and on the
//! command line. A value outside is refused with the setting's name, never clamped, rounded to
//! zero, wrapped or left to panic later: `lock_timeout = "500us"` would otherwise reach the server
//! as 0 (no timeout at all), and `lock_retries = 4294967295` would wrap to none.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Sent to the server in whole milliseconds: at least one, and well inside its maximum.
pub const LOCK_TIMEOUT: RangeInclusive<Duration> = ms(1)..=secs(HOUR);
/// The longest an application session may wait behind a migration.
pub const BLOCKING_TIMEOUT: RangeInclusive<Duration> = ms(1)..=secs(HOUR);
pub const LOCK_WAIT: RangeInclusive<Duration> = secs(1)..=secs(DAY);
pub const LOCK_WAIT_SECS: RangeInclusive<u64> = 0..=DAY;
pub const LOCK_RETRIES: RangeInclusive<u32> = 0..=100;
pub const REPLICA_LAG_WAIT: RangeInclusive<Duration> = secs(1)..=secs(DAY);
pub const REPLICA_LAG_BYTES: RangeInclusive<i64> = 1024..=(1 << 40);
pub const BACKUP_MAX_AGE: RangeInclusive<Duration> = secs(1)..=secs(3650 * DAY);
pub const MAX_ARCHIVE_AGE: RangeInclusive<Duration> = secs(1)..=secs(30 * DAY);
pub const RETENTION_DAYS: RangeInclusive<u32> = 1..=36500;
pub const KEEP_VERIFIED: RangeInclusive<usize> = 0..=1000;
pub const HEALTH_WINDOW: RangeInclusive<Duration> = secs(1)..=secs(HOUR);
/// Probe, endpoint and metrics timeouts, and an endpoint's "slow".
pub const REQUEST_TIMEOUT: RangeInclusive<Duration> = ms(1)..=secs(600);
pub const P95_MIN_INCREASE: RangeInclusive<Duration> = ms(0)..=secs(HOUR);
pub const PROBE_SAMPLES: RangeInclusive<usize> = 1..=10_000;
pub const HOOK_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(DAY);
pub const WEBHOOK_RETRIES: RangeInclusive<u32> = 0..=20;
pub const HTTP_STATUS: RangeInclusive<u16> = 100..=599;
pub const LATENCY_RATIO: RangeInclusive<f64> = 1.0..=1000.0;
pub const ERRORS_PER_MINUTE: RangeInclusive<f64> = 0.0..=1e9;
/// Error lines a minute in a followed log; 0 alerts on the first.
pub const LOG_ALERT_PER_MINUTE: RangeInclusive<u32> = 0..=1_000_000;
pub const LARGE_TABLE_ROWS: RangeInclusive<i64> = 0..=1_000_000_000_000;
/// 1 PiB.
pub const LARGE_TABLE_BYTES: RangeInclusive<i64> = 0..=(1 << 50);

/// `--interval`, in seconds.
pub const MONITOR_INTERVAL_SECS: RangeInclusive<f64> = 0.1..=3600.0;
/// `--long-query`, in seconds.
pub const LONG_QUERY_SECS: RangeInclusive<f64> = 0.0..=30.0 * DAY as f64;
/// `health --window`, in seconds.
pub const WINDOW_SECS: RangeInclusive<f64> = 1.0..=HOUR as f64;
pub const MONITOR_TOP: RangeInclusive<usize> = 1..=1000;
pub const MONITOR_COUNT: RangeInclusive<u64> = 1..=u32::MAX as u64;
/// `monitor logs --lines`: no more than the log pane keeps.
pub const LOG_CONTEXT_LINES: RangeInclusive<usize> = 0..=500;

/// A duration as written in the file (humantime: "5s", "500ms", "2m"), within `range`. The
/// error is the reason alone; the caller names the setting.
pub fn duration(text: &str, range: &RangeInclusive<Duration>) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("is not a duration ({e}); write it like \"5s\", \"500ms\" or \"2m\"")
    })?;
    if range.contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "is out of range: give a duration from {} to {}",
            show(*range.start()),
            show(*range.end())
        ))
    }
}

/// A whole number within `range`.
pub fn whole<T: PartialOrd + Display + Copy>(v: T, range: &RangeInclusive<T>) -> Result<T, String> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "= {v} is out of range: give a whole number from {} to {}",
            range.start(),
            range.end()
        ))
    }
}

/// A finite number within `range` (NaN and infinities are not).
pub fn number(v: f64, range: &RangeInclusive<f64>) -> Result<f64, String> {
    if v.is_finite() && range.contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "= {v} is out of range: give a number from {} to {}",
            range.start(),
            range.end()
        ))
    }
}

/// A command-line value in seconds, within `range`: for clap's `value_parser`.
pub fn seconds_in(range: RangeInclusive<f64>) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |text: &str| {
        let v: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("'{text}' is not a number of seconds"))?;
        if v.is_finite() && range.contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "{text} is out of range: give seconds from {} to {}",
                range.start(),
                range.end()
            ))
        }
    }
}

/// A command-line whole number within `range`: for clap's `value_parser`.
pub fn whole_in<T>(range: RangeInclusive<T>) -> impl Fn(&str) -> Result<T, String> + Clone
where
    T: std::str::FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |text: &str| {
        let v: T = text
            .trim()
            .parse()
            .map_err(|_| format!("'{text}' is not a whole number"))?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "{text} is out of range: give a whole number from {} to {}",
                range.start(),
                range.end()
            ))
        }
    }
}

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_that_round_to_zero_or_overflow_are_refused() {
        assert_eq!(duration("750ms", &LOCK_TIMEOUT), Ok(ms(750)));
        for bad in [
            "500us",
            "0s",
            "30d",
            "1000000000000000000000s",
            "-1s",
            "soon",
            "",
        ] {
            assert!(duration(bad, &LOCK_TIMEOUT).is_err(), "{bad}");
        }
        let e = duration("500us", &LOCK_TIMEOUT).unwrap_err();
        assert!(e.contains("from 1ms to 1h"), "{e}");
    }

    #[test]
    fn numbers_must_be_finite_and_in_range() {
        assert_eq!(number(1.5, &LATENCY_RATIO), Ok(1.5));
        for bad in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.5,
            1e301 * 1e10,
        ] {
            assert!(number(bad, &LATENCY_RATIO).is_err(), "{bad}");
        }
        assert!(whole(4_294_967_295u32, &LOCK_RETRIES).is_err());
        assert_eq!(whole(3u32, &LOCK_RETRIES), Ok(3));
    }

    #[test]
    fn command_line_seconds_refuse_inf_nan_and_huge() {
        let parse = seconds_in(LONG_QUERY_SECS);
        assert_eq!(parse("5"), Ok(5.0));
        assert_eq!(parse("0.25"), Ok(0.25));
        for bad in ["1e400", "inf", "-inf", "NaN", "-1", "x", "1e10"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let top = whole_in(MONITOR_TOP);
        assert_eq!(top("10"), Ok(10));
        assert!(top("0").is_err());
        assert!(top("18446744073709551616").is_err());
    }
}
