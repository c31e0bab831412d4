//! Counts and sizes as the human outputs write them (`1 message`, `1.2 MiB (1,234,567
//! bytes)`); the JSON outputs keep plain numbers.

/// `n` with the noun in the number it takes: `1 message`, `0 messages`, `2 messages`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", noun(n, one, many))
}

/// The noun alone, for a number written elsewhere.
pub fn noun<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A size in bytes: `512 bytes` below a KiB, else the binary unit with one decimal and the
/// exact count, `1.2 MiB (1,234,567 bytes)`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return count(bytes, "byte", "bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Rounded as printed: 1023.96 KiB is written 1.0 MiB, not 1024.0 KiB.
    while v >= 1023.95 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({} bytes)", UNITS[unit], grouped(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_number_of_their_noun() {
        assert_eq!(count(0, "message", "messages"), "0 messages");
        assert_eq!(count(1, "message", "messages"), "1 message");
        assert_eq!(count(2, "entry", "entries"), "2 entries");
    }

    #[test]
    fn thousands_are_grouped() {
        for (n, s) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1_234_567, "1,234,567"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(grouped(n), s);
        }
    }

    #[test]
    fn sizes_are_readable_and_exact() {
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(1), "1 byte");
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size(1024), "1.0 KiB (1,024 bytes)");
        assert_eq!(size(1_234_567), "1.2 MiB (1,234,567 bytes)");
        assert_eq!(size(1024 * 1024 - 1), "1.0 MiB (1,048,575 bytes)");
        assert_eq!(size(5 << 30), "5.0 GiB (5,368,709,120 bytes)");
    }
}
