//! The byte layout of items kept on disk while they are sorted (`spill`): numbers little
//! endian in 8 bytes, byte strings after their length. Every encoder of such items uses these,
//! so they read back what they wrote.

pub fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes());
}

pub fn take_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let (n, b) = b.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*n), b))
}

pub fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s);
}

pub fn take_bytes(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (n, b) = take_u64(b)?;
    b.split_at_checked(usize::try_from(n).ok()?)
}

pub fn take_str(b: &[u8]) -> Option<(&str, &[u8])> {
    let (s, b) = take_bytes(b)?;
    Some((std::str::from_utf8(s).ok()?, b))
}

/// A hash as 64 lowercase hex digits (caches and records hold one a line: this is their hot
/// loop, so no string is built).
pub fn hex32(h: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in h.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    out
}

/// The hash 64 hex digits spell (either case); `None` for anything else.
pub fn unhex32(s: &[u8]) -> Option<[u8; 32]> {
    fn val(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s: &[u8; 64] = s.try_into().ok()?;
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (val(pair[0])? << 4) | val(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_wrote_and_nothing_short() {
        let mut b = Vec::new();
        put_u64(&mut b, 7);
        put_bytes(&mut b, "é".as_bytes());
        let (n, rest) = take_u64(&b).unwrap();
        assert_eq!((n, take_str(rest).unwrap()), (7, ("é", &[][..])));
        assert!(take_bytes(&b[8..b.len() - 1]).is_none());
        assert!(take_u64(&b[..7]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn hex_reads_back_as_the_hex_crate_writes(h in proptest::prelude::any::<[u8; 32]>(), junk in proptest::prelude::any::<Vec<u8>>()) {
            let text = hex32(&h);
            proptest::prop_assert_eq!(text.to_vec(), hex::encode(h).into_bytes());
            proptest::prop_assert_eq!(unhex32(&text), Some(h));
            proptest::prop_assert_eq!(unhex32(hex::encode_upper(h).as_bytes()), Some(h));
            let mut want = [0u8; 32];
            proptest::prop_assert_eq!(unhex32(&junk), hex::decode_to_slice(&junk, &mut want).ok().map(|()| want));
        }
    }
}
