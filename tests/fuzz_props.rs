//! The fuzz targets' entry points under proptest, so `cargo test` keeps them honest between
//! fuzzing runs (fuzz/ holds the coverage-guided versions): the mbox splitter and parser, the
//! From_ line and header date parsers, Maildir names, modified UTF-7, the cPanel file parsers.

use mailmover::cpanel::lines::{Format, parse, render};
use mailmover::cpanel::{filter, mapping};
use mailmover::store::maildir::name;
use mailmover::store::mbox::date::{Zone, asctime_utc, from_line_date, header_date};
use mailmover::store::mbox::read::{ReadOptions, Variant, parse_message};
use mailmover::store::mbox::split::{Splitter, mbox_start};
use proptest::prelude::*;

/// Bytes that look like mail often enough to reach the interesting paths.
fn mailish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"From a@b Mon Jan  2 15:04:05 2006\n".to_vec()),
        Just(b"From - Sat 23 Jan 2016 22:06:43 +0200\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b">From x\n".to_vec()),
        Just(b"Content-Length: 7\n".to_vec()),
        Just(b"Status: RO\nX-Status: AFTD\nX-Keywords: a b\n".to_vec()),
        Just(b"X-Mozilla-Status: 1005\n".to_vec()),
        Just(b"Subject: s\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mbox_splitter_and_parser(data in mailish()) {
        if let Some(start) = mbox_start(&data) {
            let mut last = start;
            for variant in [Variant::Auto, Variant::Mboxo, Variant::Mboxcl2] {
                let ro = ReadOptions { variant, zone: Zone::Utc, keep_internal_headers: false, as_target: false };
                last = start;
                for e in Splitter::new(&data, start, variant.content_length()) {
                    prop_assert!(e.from_line.start >= last);
                    prop_assert!(e.msg.start <= e.msg.end && e.msg.end <= data.len());
                    let m = parse_message(&data, &e, &ro, 0);
                    let n: usize = m.pieces.iter().map(|p| p.len()).sum();
                    prop_assert!(n <= e.msg.end - e.msg.start);
                    last = e.msg.end;
                }
            }
            prop_assert!(last <= data.len());
        }
    }

    #[test]
    fn date_parsers(line in proptest::collection::vec(any::<u8>(), 0..80), t in -30_610_224_000i64..253_402_300_799) {
        let _ = from_line_date(&line, Zone::Fixed(3600));
        let _ = header_date(&line);
        let l = format!("From x {}", asctime_utc(t));
        prop_assert_eq!(from_line_date(l.as_bytes(), Zone::Utc), Some(t));
    }

    #[test]
    fn maildir_names(n in proptest::collection::vec(any::<u8>(), 0..64)) {
        let p = name::parse(&n);
        let rebuilt = format!("x:{}", name::info(p.flags, p.keyword_letters));
        let again = name::parse(rebuilt.as_bytes());
        prop_assert_eq!(again.flags, p.flags);
        prop_assert_eq!(again.keyword_letters, p.keyword_letters);
    }

    #[test]
    fn cpanel_parsers_keep_every_line(text in "[ -~\\n\\t:,|\"*@.#-]{0,200}") {
        for fmt in [Format::Passwd, Format::Shadow, Format::Quota, Format::Aliases, Format::SpamPrefs, Format::AutorespondConf] {
            let (lines, _) = parse(fmt, &text);
            prop_assert_eq!(render(&lines).lines().count(), text.lines().count());
        }
        let _ = filter::parse(&text);
        let _ = mapping::parse_csv(&text);
    }
}

/// Regression from fuzzing (fuzz/artifacts/mutf7, input `*/`): a decoded folder level holding
/// '/' was accepted and turned into two levels.
#[test]
fn fuzz_mutf7_slash_in_level() {
    assert!(mailmover::store::maildir::layout::from_dot_dir(".*/").is_err());
    assert!(mailmover::folder::FolderName::from_levels(["a/b"]).is_err());
}
