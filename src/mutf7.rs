//! IMAP modified UTF-7 (RFC 3501 §5.1.3), the encoding of folder names on disk in Maildir++
//! and in Dovecot's mbox directories.
//!
//! Decoding is strict (RFC rules: no encoded printable ASCII, no padding, no zero-length
//! shift other than `&-`), so a name that is not valid modified UTF-7 can be taken as raw UTF-8
//! instead, as cPanel's `UTF8MAILBOX` accounts store it.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run: Vec<u16> = Vec::new();
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

fn flush(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(ALPHABET[idx as usize] as char);
        }
    }
    out.push('-');
    run.clear();
}

/// Decodes a modified UTF-7 name; `None` when it is not valid modified UTF-7.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c != b'&' {
            if !(0x20..=0x7e).contains(&c) {
                return None;
            }
            out.push(c as char);
            i += 1;
            continue;
        }
        let end = i + 1 + b.get(i + 1..)?.iter().position(|&x| x == b'-')?;
        let enc = &b[i + 1..end];
        if enc.is_empty() {
            out.push('&');
        } else {
            out.push_str(&decode_run(enc)?);
        }
        i = end + 1;
    }
    Some(out)
}

fn decode_run(enc: &[u8]) -> Option<String> {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut bytes = Vec::with_capacity(enc.len());
    for &c in enc {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    // Leftover bits must be zero padding of fewer than 6 bits, and whole UTF-16 units only.
    if nbits >= 6 || bits != 0 || bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
    let s = String::from_utf16(&units).ok()?;
    // Printable ASCII must not be encoded (RFC 3501).
    if s.chars().any(|c| (' '..='~').contains(&c)) {
        return None;
    }
    Some(s)
}

/// A name as found on disk: modified UTF-7 when valid, else the raw UTF-8 (cPanel UTF8MAILBOX).
pub fn decode_lenient(s: &str) -> String {
    decode(s).unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dovecot_examples() {
        assert_eq!(encode("été"), "&AOk-t&AOk-");
        assert_eq!(encode("x&y"), "x&-y");
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("日本語"), "&ZeVnLIqe-");
        assert_eq!(decode("&ZeVnLIqe-").as_deref(), Some("日本語"));
        assert_eq!(decode("Q&-A").as_deref(), Some("Q&A"));
        assert_eq!(decode("&AC8-"), None, "encoded '/' is printable ASCII: invalid");
    }

    #[test]
    fn invalid_forms() {
        assert_eq!(decode("&"), None);
        assert_eq!(decode("&ZeV"), None);
        assert_eq!(decode("&!!-"), None);
        assert_eq!(decode_lenient("Ünïcödé"), "Ünïcödé");
    }

    proptest! {
        #[test]
        fn round_trip(s in "\\PC{0,20}") {
            prop_assert_eq!(decode(&encode(&s)), Some(s));
        }

        #[test]
        fn decode_never_panics(s in ".{0,30}") {
            let _ = decode(&s);
        }
    }
}
