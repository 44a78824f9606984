//! How far a running pg_dump has got, from the bytes it has written and what `--verbose` says
//! on stderr, against an estimate of the dump's size made from the tables' sizes before it
//! starts. Pure: the caller feeds it lines, byte counts and elapsed times.

use std::collections::HashMap;
use std::time::Duration;

use super::BackupEvent;

/// Dump bytes per byte of table (heap + TOAST) before any table has been dumped. Measured with
/// pg_dump 15's default compression (custom format, zlib level 6; the directory format's
/// `.dat.gz` files come out the same) against `pg_relation_size` of heap + TOAST:
/// - the sample app's rows (short text ids, e-mails, repeated names, timestamps): 0.05;
/// - a test table of repeated md5 text (`repeat(md5(g::text), 8)`): 0.08;
/// - md5 hex text: 0.25;
/// - random numbers, timestamps and hex: 0.48.
///
/// Data compresses that differently, so no one factor is right. 0.3 leans to the incompressible
/// side because an estimate too small pins the bar just under full for the rest of the dump,
/// while one too large only ends it early; and each table that finishes replaces this guess by
/// what pg_dump really wrote for it (see `ratio`).
pub const PRIOR_RATIO: f64 = 0.3;

/// How much table (in bytes) the prior ratio weighs against the tables already dumped: tables
/// of a few megabytes already speak louder than the guess.
const PRIOR_WEIGHT: f64 = 4.0 * 1024.0 * 1024.0;

/// The archive's header and table of contents, written before the first table's data: about
/// 4 kB for the sample app's schema (measured); it is known exactly once the first table starts.
const HEADER_GUESS: u64 = 4096;

/// The fraction shown while pg_dump still runs, or while the dump is checked after: never full
/// before the backup is.
pub const MAX_RUNNING_FRACTION: f64 = 0.99;

/// An ETA is guessed from the data rate only after this long and once this much data was written.
const ETA_AFTER: Duration = Duration::from_secs(2);
const ETA_MIN_BYTES: u64 = 64 * 1024;

/// What one line of `pg_dump --verbose` says about table data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine<'a> {
    /// `pg_dump: dumping contents of table "public.User"`: pg_dump starts this table (its
    /// `schema.table`, unquoted). In a sequential dump the previous table is then done.
    TableStarted(&'a str),
    /// `pg_dump: finished item 3361 TABLE DATA User` (parallel dumps only): a worker is done with
    /// this table (its name, without the schema).
    TableFinished(&'a str),
    Other,
}

impl LogLine<'_> {
    pub fn parse(line: &str) -> LogLine<'_> {
        if let Some(rest) = line.strip_prefix("pg_dump: dumping contents of table ") {
            let name = rest.strip_prefix('"').unwrap_or(rest);
            let name = name.strip_suffix('"').unwrap_or(name);
            return LogLine::TableStarted(name);
        }
        if let Some(rest) = line.strip_prefix("pg_dump: finished item ")
            && let Some((_id, what)) = rest.split_once(' ')
            && let Some(name) = what.strip_prefix("TABLE DATA ")
        {
            return LogLine::TableFinished(name);
        }
        LogLine::Other
    }
}

/// The table pg_dump is dumping in a sequential dump.
#[derive(Debug)]
struct Current {
    /// Known to the estimate (a table pgdeck listed), so that its end counts as a table done.
    listed: bool,
    size: u64,
    written_at_start: u64,
}

#[derive(Debug)]
pub struct DumpProgress {
    /// Size (heap + TOAST) of each table to dump, by `schema.table`.
    sizes: HashMap<String, u64>,
    /// Tables of `sizes` pg_dump has not started yet, and their size in all.
    unstarted: HashMap<String, u64>,
    unstarted_size: u64,
    /// Parallel workers: tables end with their own `finished item` line, in any order.
    parallel: bool,
    current: Option<Current>,
    /// Parallel dumps: tables started and not finished, by table name without the schema.
    in_flight: Vec<(String, u64)>,
    done: usize,
    /// Tables done in a sequential dump: their size and the bytes pg_dump wrote for them.
    done_size: u64,
    done_written: u64,
    /// When (since the start) and at how many bytes the first table's data began.
    data_from: Option<(Duration, u64)>,
    last_fraction: f64,
    ended: bool,
}

impl DumpProgress {
    /// `tables`: each table's `schema.table` and size in bytes (heap + TOAST); `parallel` when
    /// pg_dump runs several workers.
    pub fn new(tables: impl IntoIterator<Item = (String, u64)>, parallel: bool) -> DumpProgress {
        let sizes: HashMap<String, u64> = tables.into_iter().collect();
        DumpProgress {
            unstarted_size: sizes.values().sum(),
            unstarted: sizes.clone(),
            sizes,
            parallel,
            current: None,
            in_flight: Vec::new(),
            done: 0,
            done_size: 0,
            done_written: 0,
            data_from: None,
            last_fraction: 0.0,
            ended: false,
        }
    }

    /// The dump's size as estimated before pg_dump starts.
    pub fn initial_estimate(&self) -> u64 {
        HEADER_GUESS + (self.unstarted_size as f64 * PRIOR_RATIO) as u64
    }

    /// Takes one line of pg_dump's stderr, read when `written` bytes were out; whether it moved
    /// a table along (the caller then reports progress at once).
    pub fn line(&mut self, line: &str, written: u64, elapsed: Duration) -> bool {
        match LogLine::parse(line) {
            LogLine::TableStarted(name) => {
                self.data_from.get_or_insert((elapsed, written));
                let size = self.unstarted.remove(name);
                if let Some(s) = size {
                    self.unstarted_size -= s;
                }
                if self.parallel {
                    if let Some(s) = size {
                        let bare = name.split_once('.').map_or(name, |(_, t)| t);
                        self.in_flight.push((bare.to_owned(), s));
                    }
                } else {
                    self.finish_current(written);
                    self.current = Some(Current {
                        listed: size.is_some(),
                        size: size.unwrap_or(0),
                        written_at_start: written,
                    });
                }
                true
            }
            LogLine::TableFinished(name) if self.parallel => {
                // Two schemas may hold a table of that name: either one is as good for a count.
                match self.in_flight.iter().position(|(n, _)| n == name) {
                    Some(i) => {
                        self.in_flight.swap_remove(i);
                        self.done += 1;
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }

    fn finish_current(&mut self, written: u64) {
        if let Some(c) = self.current.take()
            && c.listed
        {
            self.done += 1;
            self.done_size += c.size;
            self.done_written += written.saturating_sub(c.written_at_start);
        }
    }

    /// pg_dump has exited, having written `written` bytes: every table is done and the size is
    /// known.
    pub fn ended(&mut self, written: u64) {
        self.finish_current(written);
        self.done = self.sizes.len();
        self.ended = true;
    }

    /// Dump bytes per table byte: the prior guess, outweighed by what the tables already done
    /// really took.
    fn ratio(&self) -> f64 {
        (self.done_written as f64 + PRIOR_WEIGHT * PRIOR_RATIO)
            / (self.done_size as f64 + PRIOR_WEIGHT)
    }

    /// The dump's estimated size, now that `written` bytes are out.
    pub fn estimate(&self, written: u64) -> u64 {
        if self.ended {
            return written;
        }
        if self.data_from.is_none() {
            return self.initial_estimate().max(written);
        }
        let r = self.ratio();
        let ahead = |size: u64| (size as f64 * r) as u64;
        let mut left = ahead(self.unstarted_size);
        if self.parallel {
            // What the workers wrote of the tables in flight is not told apart; count them whole.
            left += self.in_flight.iter().map(|(_, s)| ahead(*s)).sum::<u64>();
        } else if let Some(c) = &self.current {
            left += ahead(c.size).saturating_sub(written.saturating_sub(c.written_at_start));
        }
        written + left
    }

    /// The progress event for `written` bytes out after `elapsed`. The fraction never goes back
    /// (a grown estimate holds it where it was) and stays under 1 until the backup is finished.
    pub fn event(&mut self, written: u64, elapsed: Duration) -> BackupEvent {
        let estimate = self.estimate(written);
        let fraction = (written as f64 / estimate.max(1) as f64)
            .max(self.last_fraction)
            .min(MAX_RUNNING_FRACTION);
        self.last_fraction = fraction;
        BackupEvent::Progress {
            bytes_written: written,
            estimated_bytes: estimate,
            tables_done: self.done,
            tables_total: self.sizes.len(),
            fraction,
            elapsed_ms: elapsed.as_millis() as u64,
            eta_ms: self.eta(written, estimate, elapsed),
        }
    }

    /// The time left at the data rate seen so far, when there is one to speak of.
    fn eta(&self, written: u64, estimate: u64, elapsed: Duration) -> Option<u64> {
        if self.ended {
            return None;
        }
        let (from, at) = self.data_from?;
        let (secs, bytes) = (elapsed.saturating_sub(from), written.saturating_sub(at));
        if secs < ETA_AFTER || bytes < ETA_MIN_BYTES || estimate <= written {
            return None;
        }
        let rate = bytes as f64 / secs.as_secs_f64();
        Some(((estimate - written) as f64 / rate * 1000.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn fields(e: &BackupEvent) -> (u64, usize, f64, Option<u64>) {
        match e {
            BackupEvent::Progress {
                estimated_bytes,
                tables_done,
                fraction,
                eta_ms,
                ..
            } => (*estimated_bytes, *tables_done, *fraction, *eta_ms),
            other => panic!("not progress: {other:?}"),
        }
    }

    fn started(t: &str) -> String {
        format!("pg_dump: dumping contents of table \"{t}\"")
    }

    #[test]
    fn pg_dump_15_lines_about_table_data_are_recognised() {
        assert_eq!(
            LogLine::parse("pg_dump: dumping contents of table \"public.User\""),
            LogLine::TableStarted("public.User")
        );
        assert_eq!(
            LogLine::parse("pg_dump: finished item 3361 TABLE DATA users"),
            LogLine::TableFinished("users")
        );
        assert_eq!(
            LogLine::parse("pg_dump: finished item 3361 SEQUENCE SET users_id_seq"),
            LogLine::Other
        );
        assert_eq!(
            LogLine::parse("pg_dump: reading user-defined tables"),
            LogLine::Other
        );
    }

    #[test]
    fn a_table_counts_as_done_when_the_next_starts_or_the_dump_ends() {
        let tables = [
            ("public.a".to_owned(), 10 * MB),
            ("public.b".to_owned(), MB),
        ];
        let mut p = DumpProgress::new(tables, false);
        assert_eq!(fields(&p.event(0, s(0))).1, 0);
        assert!(p.line(&started("public.a"), 4096, s(1)));
        assert_eq!(fields(&p.event(2 * MB, s(2))).1, 0);
        assert!(p.line(&started("public.b"), 3 * MB, s(3)));
        assert_eq!(fields(&p.event(3 * MB, s(3))).1, 1);
        p.ended(3 * MB + 100);
        let (estimate, done, fraction, eta) = fields(&p.event(3 * MB + 100, s(4)));
        assert_eq!((estimate, done, eta), (3 * MB + 100, 2, None));
        assert!(fraction < 1.0);
    }

    #[test]
    fn the_estimate_learns_from_the_tables_done_and_the_fraction_never_goes_back_or_fills() {
        let tables = [
            ("public.a".to_owned(), 40 * MB),
            ("public.b".to_owned(), 40 * MB),
        ];
        let mut p = DumpProgress::new(tables, false);
        assert_eq!(p.initial_estimate(), HEADER_GUESS + 24 * MB);
        p.line(&started("public.a"), 4096, s(0));
        // Table a compresses to half its size, much worse than the guess.
        let (_, _, f1, _) = fields(&p.event(12 * MB, s(1)));
        let (_, _, f2, _) = fields(&p.event(20 * MB, s(2)));
        p.line(&started("public.b"), 20 * MB + 4096, s(2));
        let (estimate, _, f3, _) = fields(&p.event(20 * MB + 4096, s(2)));
        // b is expected to take about what a took, not 30 %.
        assert!(
            estimate > 36 * MB && estimate < 44 * MB,
            "{}",
            estimate / MB
        );
        assert!(f1 <= f2 && f2 <= f3, "{f1} {f2} {f3}");
        // Written past every estimate: held under full.
        let (_, _, f4, eta) = fields(&p.event(200 * MB, s(9)));
        assert_eq!(f4, MAX_RUNNING_FRACTION);
        assert_eq!(eta, None, "no ETA once past the estimate");
    }

    #[test]
    fn an_eta_is_given_only_after_some_data_and_some_seconds() {
        let mut p = DumpProgress::new([("public.a".to_owned(), 100 * MB)], false);
        assert_eq!(fields(&p.event(0, s(5))).3, None, "no data yet");
        p.line(&started("public.a"), 4096, s(5));
        assert_eq!(fields(&p.event(2 * MB, s(6))).3, None, "one second of data");
        let (estimate, _, _, eta) = fields(&p.event(4 * MB, s(9)));
        // 4 MB in 4 s: 1 MB/s for what is left.
        let left_secs = (estimate - 4 * MB) as f64 / MB as f64;
        let eta = eta.expect("an ETA after 4 s of data") as f64 / 1000.0;
        assert!((eta - left_secs).abs() < 0.5, "{eta} vs {left_secs}");
    }

    #[test]
    fn a_parallel_dump_counts_tables_by_their_finished_lines() {
        let tables = [
            ("public.events".to_owned(), MB),
            ("public.users".to_owned(), MB),
            ("audit.users".to_owned(), MB),
        ];
        let mut p = DumpProgress::new(tables, true);
        p.line(&started("public.events"), 0, s(0));
        p.line(&started("public.users"), 0, s(0));
        assert_eq!(fields(&p.event(10, s(0))).1, 0);
        assert!(p.line("pg_dump: finished item 3361 TABLE DATA users", 100, s(1)));
        assert_eq!(fields(&p.event(100, s(1))).1, 1);
        p.line(&started("audit.users"), 100, s(1));
        p.line("pg_dump: finished item 3362 TABLE DATA users", 200, s(1));
        p.line("pg_dump: finished item 3363 TABLE DATA events", 300, s(1));
        assert_eq!(fields(&p.event(300, s(1))).1, 3);
    }
}
