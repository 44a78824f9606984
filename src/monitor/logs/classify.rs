//! What a log line is: an error, a warning, one of the server's own events (a lock wait, a
//! deadlock, a cancelled statement, a terminated session), or plain. Levels are read the way
//! common formats write them (PostgreSQL's `ERROR:`, `level=error`, `"level":"error"`, pino's
//! `"level":50`, `[error]`, `ERROR [main]`); an explicit level decides over words in the message,
//! so `INFO retried after IOException` stays plain. An HTTP 5xx in access-log form is an error
//! whatever level the access log writes it at.

use serde::Serialize;

/// The class of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineClass {
    Plain,
    Warning,
    Error,
    /// The server's `process N still waiting for ... Lock` / `process N acquired ... after`
    /// (with `log_lock_waits`).
    LockWait,
    /// `deadlock detected`.
    Deadlock,
    /// `canceling statement due to statement timeout / lock timeout / user request ...`.
    Cancelled,
    /// `terminating connection due to administrator command`, a process killed by a signal.
    Terminated,
    /// pgdeck's own word in the stream: the file was truncated or replaced, the command exited.
    Notice,
}

impl LineClass {
    /// Whether the line counts towards the error lines per minute.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            LineClass::Error | LineClass::Deadlock | LineClass::Cancelled | LineClass::Terminated
        )
    }

    /// A short tag for a column: "ERROR", "WARN", "LOCK", "DEADLOCK", "CANCEL", "TERM", "--",
    /// or "" for a plain line.
    pub fn tag(self) -> &'static str {
        match self {
            LineClass::Plain => "",
            LineClass::Warning => "WARN",
            LineClass::Error => "ERROR",
            LineClass::LockWait => "LOCK",
            LineClass::Deadlock => "DEADLOCK",
            LineClass::Cancelled => "CANCEL",
            LineClass::Terminated => "TERM",
            LineClass::Notice => "--",
        }
    }
}

/// A level as a line states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Error,
    Warning,
    /// info, debug, notice, PostgreSQL's LOG...
    Quiet,
    /// PostgreSQL's DETAIL / HINT / STATEMENT / CONTEXT / QUERY / LOCATION: the rest of an
    /// entry whose first line was already classified.
    Continuation,
}

/// Classifies one line (without its line ending).
pub fn classify(line: &str) -> LineClass {
    let level = level(line);
    if level == Some(Level::Continuation) {
        return LineClass::Plain;
    }
    if let Some(event) = server_event(line) {
        return event;
    }
    if is_http_5xx(line) {
        return LineClass::Error;
    }
    match level {
        Some(Level::Error) => LineClass::Error,
        Some(Level::Warning) => LineClass::Warning,
        Some(Level::Quiet | Level::Continuation) => LineClass::Plain,
        None if is_crash(line) => LineClass::Error,
        None => LineClass::Plain,
    }
}

/// The server's own events, in PostgreSQL's (English) wording.
fn server_event(line: &str) -> Option<LineClass> {
    if line.contains("deadlock detected") {
        return Some(LineClass::Deadlock);
    }
    if process_then(
        line,
        &[
            " still waiting for ",
            " acquired ",
            " detected deadlock while",
        ],
    ) {
        return Some(LineClass::LockWait);
    }
    if line.contains("canceling statement due to") || line.contains("canceling autovacuum task") {
        return Some(LineClass::Cancelled);
    }
    const TERMINATED: [&str; 5] = [
        "terminating connection due to",
        "terminating connection because of",
        "terminating background worker",
        "terminating walsender process",
        ") was terminated by signal",
    ];
    if TERMINATED.iter().any(|t| line.contains(t)) {
        return Some(LineClass::Terminated);
    }
    None
}

/// `process <digits>` directly followed by one of `next`: the form of the lock-wait messages,
/// so "still waiting for the build" in an application's log is no lock wait.
fn process_then(line: &str, next: &[&str]) -> bool {
    line.match_indices("process ").any(|(i, m)| {
        let rest = &line[i + m.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && next.iter().any(|n| rest[digits..].starts_with(n))
    })
}

/// The first level the line states, by its position in the line.
fn level(line: &str) -> Option<Level> {
    let bytes = line.as_bytes();
    for (start, word) in words(line) {
        // PostgreSQL, Log4j, Python, env_logger, tracing: an upper-case level word.
        if let Some(level) = upper_level(word) {
            return Some(level);
        }
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(start + word.len()).copied();
        // nginx, Apache: "[error]"; also "[Error]", "[WARN]".
        if before == Some(b'[')
            && after == Some(b']')
            && let Some(level) = named_level(word)
        {
            return Some(level);
        }
        // logfmt `level=error`, JSON `"level":"error"` or `"level":50`.
        if ["level", "lvl", "severity", "loglevel"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k))
            && let Some(value) = keyed_value(&line[start + word.len()..])
        {
            let level = match value.parse::<u32>() {
                // pino and bunyan: 50 error, 60 fatal, 40 warn.
                Ok(n) if n >= 50 => Some(Level::Error),
                Ok(n) if n >= 40 => Some(Level::Warning),
                Ok(_) => Some(Level::Quiet),
                Err(_) => named_level(value),
            };
            if level.is_some() {
                return level;
            }
        }
    }
    None
}

/// The value after a key: `=value`, `="value"`, `":"value"`, `": 50`.
fn keyed_value(rest: &str) -> Option<&str> {
    let rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix(['=', ':'])?.trim_start();
    let rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

fn upper_level(word: &str) -> Option<Level> {
    Some(match word {
        "ERROR" | "FATAL" | "PANIC" | "CRITICAL" | "CRIT" | "SEVERE" | "EMERG" | "ALERT" => {
            Level::Error
        }
        "WARNING" | "WARN" => Level::Warning,
        "INFO" | "NOTICE" | "LOG" | "DEBUG" | "DEBUG1" | "DEBUG2" | "DEBUG3" | "DEBUG4"
        | "DEBUG5" | "TRACE" => Level::Quiet,
        "DETAIL" | "HINT" | "STATEMENT" | "CONTEXT" | "QUERY" | "LOCATION" => Level::Continuation,
        _ => return None,
    })
}

fn named_level(word: &str) -> Option<Level> {
    Some(match word.to_ascii_lowercase().as_str() {
        "error" | "err" | "fatal" | "panic" | "critical" | "crit" | "alert" | "emerg"
        | "emergency" | "severe" => Level::Error,
        "warning" | "warn" => Level::Warning,
        "info" | "information" | "notice" | "log" | "debug" | "trace" | "verbose" => Level::Quiet,
        _ => return None,
    })
}

/// A crash in a line with no level: an exception (`java.lang.IllegalStateException: ...`,
/// `Unhandled Exception`), Python's `Traceback`, a JavaScript `TypeError: ...`, a Rust panic.
fn is_crash(line: &str) -> bool {
    if line.contains("Traceback (most recent call last)") || line.contains("' panicked at ") {
        return true;
    }
    if words(line).any(|(_, w)| w.ends_with("Exception")) {
        return true;
    }
    // `Error: ...` / `TypeError: ...` opening the line, as Node prints an uncaught error.
    let first = line.trim_start();
    let name_end = first
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(first.len());
    first[..name_end].ends_with("Error") && first[name_end..].starts_with(": ")
}

/// An HTTP response status 500-599 in one of the access-log forms: `"GET / HTTP/1.1" 500`
/// (common and combined formats, uvicorn), `GET /path 502 12.3 ms` (morgan), `| 500 |` (gin),
/// `Completed 500` (Rails), `status=500`, `"status":500`, `"statusCode":503`.
fn is_http_5xx(line: &str) -> bool {
    let status_at = |rest: &str| -> bool {
        let b = rest.as_bytes();
        b.len() >= 3
            && b[0] == b'5'
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
            && b.get(3).is_none_or(|c| !c.is_ascii_alphanumeric())
    };
    // "METHOD target HTTP/1.1" 500
    for (i, _) in line.match_indices(" HTTP/") {
        let rest = &line[i + 6..];
        let version = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        if let Some(after) = rest[version..].strip_prefix("\" ")
            && status_at(after)
        {
            return true;
        }
    }
    // GET /path 500 ...
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let tokens: Vec<&str> = line.split_whitespace().collect();
    for w in tokens.windows(3) {
        if METHODS.contains(&w[0]) && w[1].starts_with('/') && w[2].len() == 3 && status_at(w[2]) {
            return true;
        }
    }
    for w in tokens.windows(3) {
        if w[0] == "|" && w[2] == "|" && w[1].len() == 3 && status_at(w[1]) {
            return true;
        }
    }
    if let Some(i) = line.find("Completed 5")
        && status_at(&line[i + "Completed ".len()..])
    {
        return true;
    }
    for (start, word) in words(line) {
        if matches!(word, "status" | "statusCode" | "status_code")
            && let Some(value) = keyed_value(&line[start + word.len()..])
            && value.len() == 3
            && status_at(value)
        {
            return true;
        }
    }
    false
}

/// The runs of ASCII letters, digits and `_` in a line, with their byte offsets.
fn words(line: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = line.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !is_word(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let start = i;
        while i < bytes.len() && is_word(bytes[i]) {
            i += 1;
        }
        Some((start, &line[start..i]))
    })
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::LineClass::*;
    use super::*;

    #[test]
    fn levels_are_read_the_way_common_formats_write_them() {
        let cases = [
            // PostgreSQL, stderr and csvlog.
            (
                "2024-05-01 10:00:00.123 UTC [4242] ERROR:  relation \"x\" does not exist",
                Error,
            ),
            (
                "2024-05-01 10:00:00.123 UTC [4242] FATAL:  password authentication failed",
                Error,
            ),
            ("2024-05-01 10:00:00 UTC [1] PANIC:  could not write", Error),
            (
                "2024-05-01 10:00:00 UTC [1] WARNING:  there is no transaction in progress",
                Warning,
            ),
            (
                "2024-05-01 10:00:00 UTC [1] LOG:  checkpoint starting: time",
                Plain,
            ),
            (
                "2024-05-01 10:00:00.123 UTC,\"app\",\"shop\",4242,,\"ERROR\",\"42P01\",\"relation\"",
                Error,
            ),
            // The rest of an entry is not another error.
            (
                "2024-05-01 10:00:00 UTC [4242] STATEMENT:  SELECT 'ERROR'",
                Plain,
            ),
            (
                "2024-05-01 10:00:00 UTC [4242] DETAIL:  Key (id)=(1) already exists.",
                Plain,
            ),
            // An explicit level decides over words in the message.
            ("2024-05-01 LOG:  statement: SELECT 'FATAL'", Plain),
            ("INFO retried after java.io.IOException", Plain),
            ("level=info msg=\"ERROR budget\"", Plain),
            // logfmt and JSON.
            ("ts=2024-05-01T10:00:00Z level=error msg=\"db down\"", Error),
            ("time=x level=ERROR msg=y", Error),
            ("ts=x lvl=warn msg=slow", Warning),
            (r#"{"level":"error","msg":"upstream failed"}"#, Error),
            (r#"{"time":1,"level": "warn","msg":"slow"}"#, Warning),
            (r#"{"severity":"ERROR","message":"x"}"#, Error),
            (r#"{"level":50,"time":1,"msg":"pino error"}"#, Error),
            (r#"{"level":60,"msg":"pino fatal"}"#, Error),
            (r#"{"level":40,"msg":"pino warn"}"#, Warning),
            (
                r#"{"level":30,"msg":"pino info: Exception handler ready"}"#,
                Plain,
            ),
            // Brackets, Log4j, Python, env_logger.
            (
                "2024/05/01 10:00:00 [error] 31#31: *1 connect() failed (111: Connection refused)",
                Error,
            ),
            (
                "2024/05/01 10:00:00 [warn] 31#31: an upstream response is buffered",
                Warning,
            ),
            ("2024-05-01 10:00:00,123 ERROR [main] c.e.App - boom", Error),
            ("ERROR:root:something broke", Error),
            ("[2024-05-01T10:00:00Z WARN  api] slow query", Warning),
            (
                "2024-05-01T10:00:00.1Z  INFO api: listening on :8080",
                Plain,
            ),
            // Case matters where it should: words in a message are not levels.
            ("the error page was rendered", Plain),
            ("Errors: 0, warnings: 0", Plain),
            ("ERRORS_TOTAL 0", Plain),
        ];
        for (line, class) in cases {
            assert_eq!(classify(line), class, "{line}");
        }
    }

    #[test]
    fn crashes_without_a_level_are_errors() {
        let cases = [
            (
                "Exception in thread \"main\" java.lang.IllegalStateException: closed",
                Error,
            ),
            ("java.lang.NullPointerException", Error),
            ("Traceback (most recent call last):", Error),
            (
                "TypeError: Cannot read properties of undefined (reading 'id')",
                Error,
            ),
            ("Error: connect ECONNREFUSED 127.0.0.1:5432", Error),
            ("thread 'main' panicked at src/main.rs:4:5:", Error),
            ("    at Object.<anonymous> (/app/index.js:1:7)", Plain),
            ("ExceptionHandler registered", Plain),
            ("user saw an Error: none", Plain),
        ];
        for (line, class) in cases {
            assert_eq!(classify(line), class, "{line}");
        }
    }

    #[test]
    fn http_5xx_in_access_log_form_is_an_error_at_any_level() {
        let cases = [
            (
                "10.0.0.1 - - [01/May/2024:10:00:00 +0000] \"GET /api/users HTTP/1.1\" 500 612 \"-\" \"curl/8\"",
                Error,
            ),
            (
                "10.0.0.1 - - [01/May/2024:10:00:00 +0000] \"POST /api/orders HTTP/2.0\" 503 0",
                Error,
            ),
            (
                "INFO:     127.0.0.1:5000 - \"GET /health HTTP/1.1\" 502 Bad Gateway",
                Error,
            ),
            ("GET /api/users 500 12.345 ms - 21", Error),
            (
                "[GIN] 2024/05/01 - 10:00:00 | 500 |     1.2ms |  127.0.0.1 | GET \"/x\"",
                Error,
            ),
            ("Completed 500 Internal Server Error in 12ms", Error),
            ("ts=x level=info method=GET path=/x status=504", Error),
            (
                r#"{"level":30,"res":{"statusCode":500},"msg":"request completed"}"#,
                Error,
            ),
            // Not 5xx, or not a status.
            (
                "10.0.0.1 - - [01/May/2024:10:00:00 +0000] \"GET /api/users HTTP/1.1\" 404 12",
                Plain,
            ),
            ("GET /api/users 200 3.1 ms - 21", Plain),
            ("GET /api/users 5000 3.1 ms", Plain),
            ("processed 500 rows", Plain),
            ("status=200 took=500ms", Plain),
        ];
        for (line, class) in cases {
            assert_eq!(classify(line), class, "{line}");
        }
    }

    #[test]
    fn the_servers_own_events_have_classes_of_their_own() {
        let cases = [
            (
                "2024-05-01 10:00:00 UTC [77] LOG:  process 77 still waiting for ShareLock on transaction 1234 after 1000.123 ms",
                LockWait,
            ),
            (
                "2024-05-01 10:00:01 UTC [77] LOG:  process 77 acquired ShareLock on transaction 1234 after 2003.5 ms",
                LockWait,
            ),
            (
                "2024-05-01 10:00:01 UTC [77] ERROR:  deadlock detected",
                Deadlock,
            ),
            (
                "2024-05-01 10:00:01 UTC [77] ERROR:  canceling statement due to statement timeout",
                Cancelled,
            ),
            (
                "2024-05-01 10:00:01 UTC [77] ERROR:  canceling statement due to lock timeout",
                Cancelled,
            ),
            (
                "2024-05-01 10:00:01 UTC [77] FATAL:  terminating connection due to administrator command",
                Terminated,
            ),
            (
                "2024-05-01 10:00:01 UTC [1] LOG:  server process (PID 77) was terminated by signal 9: Killed",
                Terminated,
            ),
            // The DETAIL of a deadlock is part of its entry.
            (
                "2024-05-01 10:00:01 UTC [77] DETAIL:  Process 77 waits for ShareLock on transaction 1; blocked by process 78.",
                Plain,
            ),
            // An application's words are not the server's lock waits.
            ("INFO still waiting for the build to finish", Plain),
        ];
        for (line, class) in cases {
            assert_eq!(classify(line), class, "{line}");
        }
        assert!(Deadlock.is_error() && Cancelled.is_error() && Terminated.is_error());
        assert!(!LockWait.is_error() && !Warning.is_error() && !Notice.is_error());
    }
}
