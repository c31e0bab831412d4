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
}
