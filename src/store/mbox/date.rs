//! Dates of From_ lines and their fallbacks.
//!
//! A From_ line carries a C `asctime()` date (`Mon Jan  2 15:04:05 2006`), but real writers
//! add a zone (`+0200`, `CET`), drop the seconds, move the year before the time (ImportExportTools
//! NG) or use RFC 2822 order (`Mon, 2 Jan 2006 …`). One pattern accepts all of these; a date
//! that does not exist on the calendar is no date. Zone-less dates are read in a configurable
//! zone (Dovecot reads them as local time).

use std::sync::LazyLock;

use chrono::{FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use regex::bytes::Regex;

static FROM_DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?[ \t]+(?:([A-Z][a-z]{2})[ \t]+(\d{1,2})|(\d{1,2})[ \t]+([A-Z][a-z]{2}))",
        r"[ \t]+(?:(\d{4})[ \t]+)?(\d{1,2}):(\d{2})(?::(\d{2}))?(?:[ \t]+([A-Z]{1,5}|[+-]\d{4}))?",
        r"(?:[ \t]+(\d{4}))?(?:[ \t]+([+-]\d{4}))?"
    ))
    .expect("static pattern")
});

/// How zone-less From_ dates are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Local,
    Utc,
    Fixed(i32),
}

impl Zone {
    pub fn parse(s: &str) -> Option<Zone> {
        match s {
            "local" | "LOCAL" => Some(Zone::Local),
            "UTC" | "utc" | "Z" | "GMT" => Some(Zone::Utc),
            _ => parse_offset(s.as_bytes()).map(Zone::Fixed),
        }
    }

    /// How reports name it: `UTC`, `+0200`, or `local (+0100 now, Europe/Paris)` with the
    /// offset in force when the run started and `TZ` when set.
    pub fn describe(self) -> String {
        match self {
            Zone::Utc => "UTC".into(),
            Zone::Fixed(off) => {
                let (sign, a) = if off < 0 { ('-', -off) } else { ('+', off) };
                format!("{sign}{:02}{:02}", a / 3600, a % 3600 / 60)
            }
            Zone::Local => {
                let tz = std::env::var("TZ").map(|t| format!(", TZ={t}")).unwrap_or_default();
                format!("local ({} now{tz})", Local::now().format("%z"))
            }
        }
    }

    fn resolve(self, t: NaiveDateTime) -> Option<i64> {
        match self {
            Zone::Utc => Some(Utc.from_utc_datetime(&t).timestamp()),
            Zone::Fixed(off) => FixedOffset::east_opt(off)?.from_local_datetime(&t).single().map(|d| d.timestamp()),
            // In a DST gap there is no such local time; the earliest reading is as good as any.
            Zone::Local => Local.from_local_datetime(&t).earliest().map(|d| d.timestamp()),
        }
    }
}

const MONTHS: [&[u8]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

fn num(b: Option<regex::bytes::Match<'_>>) -> Option<u32> {
    std::str::from_utf8(b?.as_bytes()).ok()?.parse().ok()
}

fn parse_offset(z: &[u8]) -> Option<i32> {
    if z.len() != 5 {
        return None;
    }
    let sign = match z[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let d = |i: usize| z.get(i).filter(|c| c.is_ascii_digit()).map(|c| i32::from(c - b'0'));
    let h = d(1)? * 10 + d(2)?;
    let m = d(3)? * 10 + d(4)?;
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Unix time of the date in a From_ line, or `None` when it has no valid date.
pub fn from_line_date(line: &[u8], zone: Zone) -> Option<i64> {
    // The regex engine searches twice and insists both agree: it reads a private copy, since
    // bytes of a mapped mbox can turn to zeros mid-search when another program truncates it.
    let mut small = [0u8; 256];
    let owned: Vec<u8>;
    let line = match small.get_mut(..line.len()) {
        Some(b) => {
            b.copy_from_slice(line);
            &*b
        }
        None => {
            owned = line.to_vec();
            &owned
        }
    };
    let c = FROM_DATE.captures(line)?;
    let mon_name = c.get(1).or(c.get(4))?.as_bytes();
    let month = MONTHS.iter().position(|m| *m == mon_name)? as u32 + 1;
    let day = num(c.get(2).or(c.get(3)))?;
    let year = num(c.get(5).or(c.get(10)))? as i32;
    let (h, mi, s) = (num(c.get(6))?, num(c.get(7))?, num(c.get(8)).unwrap_or(0));
    let t = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(h, mi, s)?;
    let zone_tok = c.get(11).or(c.get(9).filter(|m| matches!(m.as_bytes().first(), Some(b'+' | b'-'))));
    match zone_tok {
        Some(z) => {
            let off = parse_offset(z.as_bytes())?;
            Some(Utc.from_utc_datetime(&t).timestamp() - i64::from(off))
        }
        None => zone.resolve(t),
    }
}

/// Unix time of an RFC 5322 date header value.
pub fn header_date(value: &[u8]) -> Option<i64> {
    // An owned copy: a mapped source may change under the parser (see `from_line_date`).
    let s = String::from_utf8_lossy(value).into_owned();
    let d = mail_parser::DateTime::parse_rfc822(s.trim())?;
    d.is_valid().then(|| d.to_timestamp())
}

/// `Mon Jan  2 15:04:05 2006` in UTC, the asctime form RFC 4155 asks for.
pub fn asctime_utc(t: i64) -> String {
    match Utc.timestamp_opt(t, 0).single() {
        Some(d) => d.format("%a %b %e %H:%M:%S %Y").to_string(),
        None => "Thu Jan  1 00:00:00 1970".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1136214245; // Mon Jan  2 15:04:05 2006 UTC

    #[test]
    fn forms_seen_in_the_wild() {
        let z = Zone::Utc;
        assert_eq!(from_line_date(b"From a@b Mon Jan  2 15:04:05 2006", z), Some(T0));
        assert_eq!(from_line_date(b"From MAILER-DAEMON  Mon Jan  2 15:04:05 2006", z), Some(T0));
        assert_eq!(from_line_date(b"From a@b Mon Jan  2 15:04:05 2006 +0200", z), Some(T0 - 7200));
        assert_eq!(from_line_date(b"From a@b Mon Jan  2 15:04:05 CET 2006", z), Some(T0));
        assert_eq!(from_line_date(b"From x Mon, 2 Jan 2006 15:04:05 +0000", z), Some(T0));
        assert_eq!(from_line_date(b"From x@y Wed Jul  3 10:00 2013", z), Some(1372845600));
        assert_eq!(from_line_date(b"From - Mon Jan 2 2006 15:04:05", z), Some(T0));
        assert_eq!(from_line_date(b"From - Sat 23 Jan 2016 22:06:43 +0200", z), Some(1453579603));
    }

    #[test]
    fn zone_less_dates_follow_the_zone() {
        assert_eq!(from_line_date(b"From a Mon Jan  2 15:04:05 2006", Zone::Fixed(3600)), Some(T0 - 3600));
    }

    #[test]
    fn no_date_or_impossible_date() {
        assert_eq!(from_line_date(b"From here on it is quoted.", Zone::Utc), None);
        assert_eq!(from_line_date(b"From a Mon Feb 30 15:04:05 2006", Zone::Utc), None);
        assert_eq!(from_line_date(b"From a Mon Jan  2 25:04:05 2006", Zone::Utc), None);
        assert_eq!(from_line_date(b"From a Mon Foo  2 15:04:05 2006", Zone::Utc), None);
    }

    #[test]
    fn asctime_pads_the_day() {
        assert_eq!(asctime_utc(T0), "Mon Jan  2 15:04:05 2006");
    }

    #[test]
    fn header_dates() {
        assert_eq!(header_date(b" Mon, 2 Jan 2006 15:04:05 +0000"), Some(T0));
        assert_eq!(header_date(b"garbage"), None);
    }
}
