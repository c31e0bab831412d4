//! The cPanel metadata parsers on arbitrary text: passwd, shadow, quota, valiases, SpamAssassin
//! prefs, autoresponder settings, Exim filters, maildirsize, the mapping CSV. No panic; every
//! line is kept (render of a parse gives the text back), and a merge keeps every keyed line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailmover::cpanel::lines::{Format, Winner, merge, parse, render};
use mailmover::cpanel::{filter, maildirsize, mapping};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for fmt in [Format::Passwd, Format::Shadow, Format::Quota, Format::Aliases, Format::SpamPrefs, Format::AutorespondConf] {
        let (lines, _bad) = parse(fmt, text);
        let back = render(&lines);
        assert_eq!(back.lines().count(), text.lines().count(), "{fmt:?}: a line was dropped");
        let _ = merge(&lines, &lines, Winner::Target);
        let _ = merge(&[], &lines, Winner::Source);
    }
    let _ = filter::parse(text);
    let _ = filter::merge(text, text, Winner::Target);
    let _ = maildirsize::quota_line(text);
    let _ = mapping::parse_csv(text);
    let mut it = text.splitn(3, '\n');
    let (d, u, rest) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
    if let Ok(m) = mapping::Mapping::from_options(&[d.to_string()], &[u.to_string()], None) {
        for w in rest.split_whitespace() {
            let _ = m.full_address(w);
            let _ = m.domain(w);
        }
    }
    for w in text.split_whitespace() {
        let _ = mapping::split_address(w);
        let _ = mapping::valid_domain(w);
        let _ = mapping::valid_local(w);
    }
});
