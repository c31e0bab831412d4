//! From_ line and header date parsing on arbitrary bytes: no panic, and a date that parses
//! prints and parses back to the same time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailmover::store::mbox::date::{Zone, asctime_utc, from_line_date, header_date};

fuzz_target!(|data: &[u8]| {
    if let Some(t) = from_line_date(data, Zone::Utc) {
        let line = format!("From x {}", asctime_utc(t));
        if (-30_610_224_000..253_402_300_800).contains(&t) {
            assert_eq!(from_line_date(line.as_bytes(), Zone::Utc), Some(t), "{line}");
        }
    }
    let _ = from_line_date(data, Zone::Fixed(-3600));
    let _ = header_date(data);
});
