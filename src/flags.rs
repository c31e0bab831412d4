//! Message flags as Maildir letters, and keywords.
//!
//! A flag set is a bit per uppercase letter `A`..`Z`, so the standard `D F P R S T` and any
//! unknown uppercase letter a Maildir name carries are kept alike, and rendering in ASCII order
//! (what the Maildir spec asks for) is just a walk over the bits. Keywords are names; Dovecot's
//! per-folder letters are resolved to names on read and assigned again on write.

use std::fmt;

#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flags(u32);

impl Flags {
    pub const DRAFT: Flags = Flags::bit(b'D');
    pub const FLAGGED: Flags = Flags::bit(b'F');
    pub const PASSED: Flags = Flags::bit(b'P');
    pub const REPLIED: Flags = Flags::bit(b'R');
    pub const SEEN: Flags = Flags::bit(b'S');
    pub const TRASHED: Flags = Flags::bit(b'T');

    const fn bit(letter: u8) -> Flags {
        Flags(1 << (letter - b'A'))
    }

    pub fn empty() -> Flags {
        Flags(0)
    }

    /// Adds an uppercase letter; anything else is ignored and reported as false.
    pub fn insert_letter(&mut self, letter: u8) -> bool {
        if letter.is_ascii_uppercase() {
            self.0 |= 1 << (letter - b'A');
            true
        } else {
            false
        }
    }

    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn from_bits(bits: u32) -> Flags {
        Flags(bits & ((1 << 26) - 1))
    }

    /// Letters in ASCII order.
    pub fn letters(self) -> impl Iterator<Item = u8> {
        (0u8..26).filter(move |i| self.0 & (1 << i) != 0).map(|i| b'A' + i)
    }

    pub fn parse(letters: &str) -> Flags {
        let mut f = Flags::empty();
        for b in letters.bytes() {
            f.insert_letter(b);
        }
        f
    }

    /// IMAP names of the system flags (P has none; unknown letters have none).
    pub fn imap_names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (f, n) in [
            (Flags::REPLIED, "\\Answered"),
            (Flags::DRAFT, "\\Draft"),
            (Flags::FLAGGED, "\\Flagged"),
            (Flags::SEEN, "\\Seen"),
            (Flags::TRASHED, "\\Deleted"),
        ] {
            if self.contains(f) {
                v.push(n);
            }
        }
        v
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in self.letters() {
            write!(f, "{}", l as char)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({self})")
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, o: Flags) -> Flags {
        Flags(self.0 | o.0)
    }
}

/// Keyword names of one message: sorted, without repeats.
#[derive(Clone, Default, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Keywords(Vec<String>);

impl Keywords {
    pub fn new() -> Keywords {
        Keywords(Vec::new())
    }

    pub fn insert(&mut self, k: &str) {
        if !valid_keyword(k) {
            return;
        }
        if let Err(i) = self.0.binary_search_by(|x| x.as_str().cmp(k)) {
            self.0.insert(i, k.to_string());
        }
    }

    pub fn remove(&mut self, k: &str) {
        if let Ok(i) = self.0.binary_search_by(|x| x.as_str().cmp(k)) {
            self.0.remove(i);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Splits a header value such as `X-Keywords: $Junk  Work` or Thunderbird's padded
    /// `X-Mozilla-Keys` (commas are accepted as separators too).
    pub fn from_header(value: &[u8]) -> Keywords {
        let mut k = Keywords::new();
        k.extend_from_header(value);
        k
    }

    pub fn extend_from_header(&mut self, value: &[u8]) {
        for w in value.split(|b| b.is_ascii_whitespace() || *b == b',') {
            if let Ok(s) = std::str::from_utf8(w) {
                self.insert(s);
            }
        }
    }
}

/// An IMAP atom: printable ASCII without the atom-specials, and not a system flag.
pub fn valid_keyword(k: &str) -> bool {
    !k.is_empty() && !k.starts_with('\\') && k.bytes().all(|b| b > 0x20 && b < 0x7f && !b"(){%*\"]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_come_out_sorted() {
        let f = Flags::parse("TSRPFD");
        assert_eq!(f.to_string(), "DFPRST");
        assert!(f.contains(Flags::SEEN | Flags::DRAFT));
    }

    #[test]
    fn unknown_uppercase_kept_lowercase_ignored() {
        let f = Flags::parse("SZab");
        assert_eq!(f.to_string(), "SZ");
    }

    #[test]
    fn keywords_sorted_and_unique() {
        let k = Keywords::from_header(b" Work $Junk  Work,$label1   ");
        assert_eq!(k.iter().collect::<Vec<_>>(), vec!["$Junk", "$label1", "Work"]);
    }

    #[test]
    fn bad_keywords_dropped() {
        let k = Keywords::from_header(b"\\Seen ok (bad) \"q\"");
        assert_eq!(k.iter().collect::<Vec<_>>(), vec!["ok"]);
    }
}
