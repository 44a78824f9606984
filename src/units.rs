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
}
