//! The mbox splitter and message parser on arbitrary bytes: no panic, every range inside the
//! input, messages in order and not overlapping, and pieces that add up to at most the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailmover::store::mbox::date::Zone;
use mailmover::store::mbox::read::{ReadOptions, Variant, parse_message};
use mailmover::store::mbox::split::{Splitter, mbox_start};

fuzz_target!(|data: &[u8]| {
    let Some(start) = mbox_start(data) else { return };
    let mut last_end = 0;
    for variant in [Variant::Auto, Variant::Mboxo, Variant::Mboxcl2] {
        let ro = ReadOptions { variant, zone: Zone::Utc, keep_internal_headers: variant == Variant::Mboxo };
        for e in Splitter::new(data, start, variant.content_length()) {
            assert!(e.from_line.start >= last_end || variant != Variant::Auto);
            assert!(e.msg.start <= e.msg.end && e.msg.end <= data.len());
            let m = parse_message(data, &e, &ro, 0);
            let n: usize = m.pieces.iter().map(|p| p.len()).sum();
            assert!(n <= e.msg.end - e.msg.start);
            if variant == Variant::Auto {
                last_end = e.msg.end;
            }
        }
        last_end = 0;
    }
});
