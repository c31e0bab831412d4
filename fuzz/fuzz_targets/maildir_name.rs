//! Maildir file name and info parsing on arbitrary bytes: no panic, and the flags and keyword
//! letters parsed from a name come back the same from the name written for them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailmover::store::maildir::name::{info, parse, size_field};

fuzz_target!(|data: &[u8]| {
    let n = parse(data);
    let _ = size_field(n.base);
    let rebuilt = format!("x:{}", info(n.flags, n.keyword_letters));
    let again = parse(rebuilt.as_bytes());
    assert_eq!(again.flags, n.flags);
    assert_eq!(again.keyword_letters, n.keyword_letters);
});
