//! Sizes and counts the way an operator reads them: "48.0 MB", "~1.2M".

/// 1234 -> "1234", 12345 -> "12k", 1_200_000 -> "1.2M".
pub fn human_count(n: i64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// Powers of 1024, as PostgreSQL's `pg_size_pretty`.
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration as an operator says it: "1 day", "2 h 30 min", "45 s", "500 ms".
pub fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{} ms", d.as_millis());
    }
    let (days, hours, minutes, seconds) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days} day{}", if days == 1 { "" } else { "s" }));
    }
    if hours > 0 {
        parts.push(format!("{hours} h"));
    }
    if minutes > 0 && days == 0 {
        parts.push(format!("{minutes} min"));
    }
    if seconds > 0 && days == 0 && hours == 0 {
        parts.push(format!("{seconds} s"));
    }
    if parts.is_empty() {
        parts.push(format!("{days} day{}", if days == 1 { "" } else { "s" }));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts_read_like_an_operator_writes_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(48 << 20), "48.0 MB");
        assert_eq!(human_count(1234), "1234");
        assert_eq!(human_count(12_345), "12k");
        assert_eq!(human_count(1_200_000), "1.2M");
    }

    #[test]
    fn durations_read_like_an_operator_says_them() {
        use std::time::Duration;
        assert_eq!(human_duration(Duration::from_secs(86_400)), "1 day");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86_400 + 7200)),
            "3 days 2 h"
        );
        assert_eq!(human_duration(Duration::from_secs(9000)), "2 h 30 min");
        assert_eq!(human_duration(Duration::from_secs(45)), "45 s");
        assert_eq!(human_duration(Duration::from_millis(1)), "1 ms");
    }
}

/// Text safe to put on a terminal: control characters (an escape sequence in a folder name, a
/// server message, a hook's output) are shown escaped, `\u{1b}[31m`, instead of being obeyed.
/// Newlines and tabs stay.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    // Control characters are U+0000 to U+001F, U+007F and U+0080 to U+009F: in UTF-8, a byte
    // below 0x20, 0x7F, or 0xC2 then a second byte. Bytes are cheaper to check than characters
    // on megabytes of lint output; a 0xC2 that starts a printable character only costs the
    // careful pass below.
    if !text
        .bytes()
        .any(|b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f || b == 0xc2)
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        assert_eq!(printable("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            printable("red\x1b[31m!\r\x07"),
            "red\\u{1b}[31m!\\u{d}\\u{7}"
        );
        assert_eq!(printable("\u{9b}2J"), "\\u{9b}2J");
    }
}
