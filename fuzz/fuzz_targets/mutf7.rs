//! Modified UTF-7: decoding arbitrary text never panics; whatever decodes survives an
//! encode/decode round trip; encoding any string decodes back to it; folder names built from it are safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailmover::folder::FolderName;
use mailmover::mutf7::{decode, encode};
use mailmover::store::maildir::layout::from_dot_dir;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(d) = decode(s) {
        assert_eq!(decode(&encode(&d)).as_deref(), Some(d.as_str()));
    }
    assert_eq!(decode(&encode(s)).as_deref(), Some(s));
    if let Ok(name) = from_dot_dir(&format!(".{s}")) {
        assert!(name.levels().all(|l| !l.is_empty() && l != "." && l != ".."));
    }
    if let Ok(name) = FolderName::parse(s) {
        assert!(!name.as_str().starts_with('/') && !name.levels().any(|l| l == ".."));
    }
});
