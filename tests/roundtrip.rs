//! Property: mbox → Maildir → mbox → Maildir keeps every message's bytes, flags, keywords and
//! date, for bodies full of `From `, `>From `, `>>From ` lines, CRLF lines and no final
//! newline. An mbox cannot keep "no final newline", so the first Maildir may hold the original
//! bytes plus one newline; the two Maildirs must be identical.

mod common;

use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Spec {
    body: String,
    status: &'static str,
    xstatus: String,
    keywords: Vec<&'static str>,
    date: i64,
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("From here".to_string()),
        Just(">From there".to_string()),
        Just(">>From deep".to_string()),
        Just("From ".to_string()),
        Just("".to_string()),
        Just("crlf line\r".to_string()),
        Just("\r".to_string()),
        "[ -~]{0,30}",
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(line(), 0..8),
        any::<bool>(),
        prop_oneof![Just(""), Just("O"), Just("RO")],
        prop::sample::subsequence(vec!['A', 'F', 'T', 'D'], 0..=4),
        prop::sample::subsequence(vec!["$Junk", "NonJunk", "Work"], 0..=3),
        1_000_000_000i64..1_700_000_000,
    )
        .prop_map(|(lines, final_nl, status, xs, keywords, date)| {
            let mut body = lines.join("\n");
            if final_nl {
                body.push('\n');
            }
            Spec { body, status, xstatus: xs.into_iter().collect(), keywords, date }
        })
}

/// The message as the Maildir must hold it (no mbox-internal headers).
fn core(i: usize, s: &Spec) -> Vec<u8> {
    format!("From: p{i}@example.com\nSubject: roundtrip {i}\n\n{}", s.body).into_bytes()
}

fn mbox_of(specs: &[Spec]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let date = chrono::DateTime::from_timestamp(s.date, 0).unwrap().format("%a %b %e %H:%M:%S %Y");
        let mut h = format!("From: p{i}@example.com\nSubject: roundtrip {i}\n");
        if !s.status.is_empty() {
            h.push_str(&format!("Status: {}\n", s.status));
        }
        if !s.xstatus.is_empty() {
            h.push_str(&format!("X-Status: {}\n", s.xstatus));
        }
        if !s.keywords.is_empty() {
            h.push_str(&format!("X-Keywords: {}\n", s.keywords.join(" ")));
        }
        let msg = format!("{h}\n{}", s.body).into_bytes();
        out.extend_from_slice(&make_mbox(&[(&date.to_string(), &msg)]));
    }
    out
}

fn want_flags(s: &Spec) -> String {
    let mut f: Vec<char> = Vec::new();
    if s.status.contains('R') {
        f.push('S');
    }
    for (c, l) in [('A', 'R'), ('F', 'F'), ('D', 'T'), ('T', 'D')] {
        if s.xstatus.contains(c) {
            f.push(l);
        }
    }
    f.sort_unstable();
    f.into_iter().collect()
}

type Rec = (String, String, Vec<String>, Vec<u8>, i64);

fn records(root: &std::path::Path) -> Vec<Rec> {
    let mut v: Vec<Rec> = read_maildir(root, Layout::MaildirPP)
        .into_iter()
        .map(|m| (m.sub, m.flags, m.keywords, m.bytes, m.mtime))
        .collect();
    v.sort();
    v
}

fn roundtrip(specs: Vec<Spec>) -> Result<(), TestCaseError> {
    let env = TestEnv::new();
    env.write("orig.mbox", &mbox_of(&specs));
    env.sync("mbox:orig.mbox", "maildir:a", &[]).expect_code(0);
    env.sync("maildir:a", "mbox:b.mbox", &[]).expect_code(0);
    env.sync("mbox:b.mbox", "maildir:c", &[]).expect_code(0);
    let a = records(&env.path("a"));
    let c = records(&env.path("c"));
    prop_assert_eq!(&a, &c, "the two Maildirs differ");
    prop_assert_eq!(a.len(), specs.len());
    let mut used = vec![false; a.len()];
    for (i, s) in specs.iter().enumerate() {
        let bytes = core(i, s);
        let with_nl = [bytes.as_slice(), b"\n"].concat();
        let mut kws: Vec<String> = s.keywords.iter().map(|k| k.to_string()).collect();
        kws.sort();
        let flags = want_flags(s);
        let sub = if flags.is_empty() && kws.is_empty() && !s.status.contains('O') { "new" } else { "cur" };
        let found = a.iter().enumerate().position(|(j, r)| {
            !used[j]
                && (r.3 == bytes || (!bytes.ends_with(b"\n") && r.3 == with_nl))
                && r.1 == flags
                && r.2 == kws
                && r.4 == s.date
                && r.0 == sub
        });
        prop_assert!(
            found.is_some(),
            "message {} not found as ({sub}, {flags:?}, {kws:?}, {}, {:?}) in {:#?}",
            i,
            s.date,
            String::from_utf8_lossy(&bytes),
            a
        );
        used[found.unwrap()] = true;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn mbox_maildir_mbox_maildir_keeps_everything(specs in prop::collection::vec(spec(), 1..4)) {
        roundtrip(specs)?;
    }
}
