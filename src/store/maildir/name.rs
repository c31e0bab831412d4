//! Maildir file names: `BASE[:2,FLAGS]`.
//!
//! The base (up to the info separator) is the message's identity; `,S=` and `,W=` inside it
//! are Dovecot's exact sizes. The info part is `:2,` plus letters, uppercase flags then
//! lowercase Dovecot keyword letters; `;2,` and `!2,` are the forms written where `:` is not
//! allowed and are read alike. Text after a further `,` in the info is a Dovecot extension.

use crate::flags::Flags;
use crate::message::InfoTail;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name<'a> {
    pub base: &'a [u8],
    /// `None`: no info part at all (a message in new/).
    pub info: Option<&'a [u8]>,
    pub flags: Flags,
    /// Lowercase letters, bit 0 = `a`.
    pub keyword_letters: u32,
    /// Info text beyond the flag letters (see [`crate::message::InfoTail`]).
    pub tail: Option<InfoTail>,
}

pub fn parse(name: &[u8]) -> Name<'_> {
    let split = match memchr::memchr(b':', name) {
        Some(i) => Some(i),
        None => memchr::memmem::rfind(name, b";2,").or_else(|| memchr::memmem::rfind(name, b"!2,")),
    };
    let (base, info) = match split {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    let mut flags = Flags::empty();
    let mut kw = 0u32;
    let mut tail = None;
    match info.map(|i| (i, i.strip_prefix(b"2,"))) {
        Some((_, Some(rest))) => {
            let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            for &c in &rest[..end] {
                if c.is_ascii_uppercase() {
                    flags.insert_letter(c);
                } else if c.is_ascii_lowercase() {
                    kw |= 1 << (c - b'a');
                }
            }
            if end < rest.len() {
                tail = Some(InfoTail::Extension(String::from_utf8_lossy(&rest[end..]).into_owned()));
            }
        }
        Some((i, None)) if !i.is_empty() => tail = Some(InfoTail::Other(String::from_utf8_lossy(i).into_owned())),
        _ => {}
    }
    Name { base, info, flags, keyword_letters: kw, tail }
}

/// The `,S=` size in a base name, if any.
pub fn size_field(base: &[u8]) -> Option<u64> {
    let i = memchr::memmem::find(base, b",S=")?;
    let digits: &[u8] = &base[i + 3..];
    let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// The info part for a message in cur/: `2,` + flags + keyword letters, in ASCII order.
pub fn info(flags: Flags, keyword_letters: u32) -> String {
    let mut s = String::from("2,");
    s.extend(flags.letters().map(char::from));
    s.extend((0u8..26).filter(|i| keyword_letters & (1 << i) != 0).map(|i| (b'a' + i) as char));
    s
}

/// The info part with a kept tail: Dovecot's extension after the letters, or a foreign info
/// part as it was (when no flag was added to it).
pub fn info_with_tail(flags: Flags, keyword_letters: u32, tail: Option<&InfoTail>) -> String {
    let safe = |t: &str| !t.contains(['/', '\0']);
    match tail {
        Some(InfoTail::Extension(t)) if safe(t) => format!("{}{t}", info(flags, keyword_letters)),
        Some(InfoTail::Other(t)) if flags.is_empty() && keyword_letters == 0 && safe(t) => t.clone(),
        _ => info(flags, keyword_letters),
    }
}

/// Host part of a unique name: `/` and `:` escaped as Maildir asks, `,` too (it would start a
/// Dovecot field).
pub fn escape_host(h: &str) -> String {
    let mut s = String::with_capacity(h.len());
    for c in h.chars() {
        match c {
            '/' => s.push_str("\\057"),
            ':' => s.push_str("\\072"),
            ',' => s.push_str("\\054"),
            c if c.is_control() || c == ' ' => {}
            c => s.push(c),
        }
    }
    if s.is_empty() { "localhost".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dovecot_name() {
        let n = parse(b"1795445020.M53454P8760.vm,S=116,W=124:2,DFRSab");
        assert_eq!(n.base, b"1795445020.M53454P8760.vm,S=116,W=124");
        assert_eq!(n.flags.to_string(), "DFRS");
        assert_eq!(n.keyword_letters, 0b11);
        assert_eq!(size_field(n.base), Some(116));
    }

    #[test]
    fn other_separators_and_extensions() {
        let n = parse(b"1491941793.M41850P8566.mx1,S=10956;2,STln");
        assert_eq!(n.flags.to_string(), "ST");
        assert_eq!(n.keyword_letters, (1 << (b'l' - b'a')) | (1 << (b'n' - b'a')));
        let n = parse(b"x!2,RDF,");
        assert_eq!(n.flags.to_string(), "DFR");
        let n = parse(b"x:2,S,XYZ");
        assert_eq!(n.flags.to_string(), "S");
        assert_eq!(n.tail, Some(InfoTail::Extension(",XYZ".into())));
        assert_eq!(info_with_tail(n.flags, 0, n.tail.as_ref()), "2,S,XYZ");
        assert_eq!(parse(b"x:1,foo").tail, Some(InfoTail::Other("1,foo".into())));
        let n = parse(b"x:1,S");
        assert!(n.flags.is_empty());
        let n = parse(b"1136214245.000001.mbox:2,RS");
        assert_eq!(n.flags.to_string(), "RS");
    }

    #[test]
    fn no_info() {
        let n = parse(b"1136214245.M1P2.host");
        assert_eq!(n.info, None);
        assert!(n.flags.is_empty());
    }

    #[test]
    fn info_is_sorted() {
        assert_eq!(info(Flags::parse("TSD"), 0b101), "2,DSTac");
    }

    #[test]
    fn host_escaping() {
        assert_eq!(escape_host("a/b:c,d"), "a\\057b\\072c\\054d");
    }

    proptest! {
        #[test]
        fn name_flags_round_trip(bits in 0u32..(1 << 26), kw in 0u32..(1 << 26)) {
            let f = Flags::from_bits(bits);
            let name = format!("1.M1P1.h,S=1:{}", info(f, kw));
            let n = parse(name.as_bytes());
            prop_assert_eq!(n.flags, f);
            prop_assert_eq!(n.keyword_letters, kw);
        }

        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&b);
            let _ = size_field(&b);
        }
    }
}
