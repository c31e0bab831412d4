//! What every store says about a message besides its bytes: flags, keywords, whether a client
//! has seen it (new/ vs cur/), and its internal (received) date with where that date came from.

use serde::Serialize;

use crate::flags::{Flags, Keywords};
use crate::wire;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DateSource {
    /// Maildir file mtime, the IMAP INTERNALDATE.
    Mtime,
    FromLine,
    Received,
    DateHeader,
    /// The mbox file's own mtime: nothing in the message gave a date.
    FileMtime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub flags: Flags,
    pub keywords: Keywords,
    /// Lowercase Maildir letters with no `dovecot-keywords` entry. Each is carried as the
    /// keyword Dovecot shows for it, `unknown-N` (N its place, `a` = 0: see
    /// [`Meta::add_letter`]); these bits say which keywords came so (an mbox cannot hold them).
    pub stray_letters: u32,
    /// Never seen by a client (Maildir `new/`, mbox without `Status: O`).
    pub recent: bool,
    pub date: i64,
    pub date_source: DateSource,
    /// Maildir info text kept as found: Dovecot's `,XYZ` after the flag letters, or a whole
    /// info part of another version (`1,…`). Only Maildir targets can hold it.
    pub info_tail: Option<InfoTail>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InfoTail {
    /// Text after the `2,` flag letters, starting with `,`.
    Extension(String),
    /// A whole info part that is not `2,…` (e.g. experimental `1,…`).
    Other(String),
}

/// The keyword Dovecot shows for keyword letter `i` (`a` = 0) when its folder's
/// `dovecot-keywords` names none, and writes there as that letter's name.
pub fn unnamed_letter(i: u8) -> String {
    format!("unknown-{i}")
}

/// A message's identity: the SHA-256 of its bytes as stored.
pub type Hash = [u8; 32];

impl Meta {
    pub fn new(date: i64, date_source: DateSource) -> Meta {
        Meta {
            flags: Flags::empty(),
            keywords: Keywords::new(),
            stray_letters: 0,
            recent: false,
            date,
            date_source,
            info_tail: None,
        }
    }

    /// Keyword letter `i` of a Maildir name, `name` as the folder's `dovecot-keywords` gives
    /// it; one without a name is the keyword Dovecot gives it, `unknown-i`.
    pub fn add_letter(&mut self, i: u8, name: Option<&str>) {
        match name {
            Some(k) => self.keywords.insert(k),
            None => {
                self.keywords.insert(&unnamed_letter(i));
                self.stray_letters |= 1 << i;
            }
        }
    }

    /// The keywords that have a name of their own (not a letter's `unknown-N`).
    pub fn named_keywords(&self) -> impl Iterator<Item = &str> {
        let unnamed: Vec<String> =
            (0u8..26).filter(|i| self.stray_letters & (1 << i) != 0).map(unnamed_letter).collect();
        self.keywords.iter().filter(move |k| !unnamed.iter().any(|u| u == k))
    }

    /// Same flags and keywords (what a flag update carries).
    pub fn same_flags(&self, o: &Meta) -> bool {
        self.flags == o.flags && self.keywords == o.keywords
    }

    /// Whether a target copy described by `target` already shows this source message's state:
    /// the same flags and keywords, the same internal date, and not still unseen (new/) when the
    /// source has been seen. A target copy a client has seen is never made new again.
    pub fn same_state(&self, target: &Meta) -> bool {
        self.same_flags(target) && self.date == target.date && (self.goes_to_new() || !target.goes_to_new())
    }

    /// What an mbox can hold of this state: no `P` flag (no letter for it in Status or
    /// X-Status), no unnamed keyword letters, no Maildir info text.
    pub fn mbox_view(&self) -> Meta {
        let mut m = self.clone();
        m.flags.remove(crate::flags::Flags::PASSED);
        for i in (0u8..26).filter(|i| self.stray_letters & (1 << i) != 0) {
            m.keywords.remove(&unnamed_letter(i));
        }
        m.stray_letters = 0;
        m.info_tail = None;
        m
    }

    /// Belongs in `new/`: recent and without any flag, keyword or info text.
    pub fn goes_to_new(&self) -> bool {
        self.recent
            && self.flags.is_empty()
            && self.keywords.is_empty()
            && self.stray_letters == 0
            && self.info_tail.is_none()
    }

    /// The bytes [`Meta::decode`] reads back (a state kept on disk while a folder is planned).
    pub fn encode(&self, out: &mut Vec<u8>) {
        wire::put_u64(out, self.flags.bits().into());
        wire::put_u64(out, self.stray_letters.into());
        wire::put_u64(out, self.date as u64);
        out.push(u8::from(self.recent));
        out.push(self.date_source as u8);
        let (kind, tail) = match &self.info_tail {
            None => (0u8, ""),
            Some(InfoTail::Extension(t)) => (1, t.as_str()),
            Some(InfoTail::Other(t)) => (2, t.as_str()),
        };
        out.push(kind);
        wire::put_bytes(out, tail.as_bytes());
        wire::put_u64(out, self.keywords.len() as u64);
        for k in self.keywords.iter() {
            wire::put_bytes(out, k.as_bytes());
        }
    }

    /// A state [`Meta::encode`] wrote, and the bytes after it.
    pub fn decode(b: &[u8]) -> Option<(Meta, &[u8])> {
        let (flags, b) = wire::take_u64(b)?;
        let (stray_letters, b) = wire::take_u64(b)?;
        let (date, b) = wire::take_u64(b)?;
        let (&[recent, source, kind], b) = b.split_first_chunk::<3>()?;
        let date_source = match source {
            0 => DateSource::Mtime,
            1 => DateSource::FromLine,
            2 => DateSource::Received,
            3 => DateSource::DateHeader,
            4 => DateSource::FileMtime,
            _ => return None,
        };
        let (tail, b) = wire::take_str(b)?;
        let info_tail = match kind {
            0 => None,
            1 => Some(InfoTail::Extension(tail.to_string())),
            2 => Some(InfoTail::Other(tail.to_string())),
            _ => return None,
        };
        let (n, mut b) = wire::take_u64(b)?;
        let mut keywords = Keywords::new();
        for _ in 0..n {
            let (k, rest) = wire::take_str(b)?;
            keywords.insert(k);
            b = rest;
        }
        let m = Meta {
            flags: Flags::from_bits(u32::try_from(flags).ok()?),
            keywords,
            stray_letters: u32::try_from(stray_letters).ok()?,
            recent: recent != 0,
            date: date as i64,
            date_source,
            info_tail,
        };
        Some((m, b))
    }

    /// About the heap bytes it holds.
    pub fn weight(&self) -> usize {
        self.keywords.iter().map(|k| k.len() + 24).sum::<usize>()
            + self.info_tail.as_ref().map_or(0, |t| match t {
                InfoTail::Extension(s) | InfoTail::Other(s) => s.len(),
            })
    }

    pub fn stray_string(&self) -> String {
        (0u8..26).filter(|i| self.stray_letters & (1 << i) != 0).map(|i| (b'a' + i) as char).collect()
    }
}
