//! What every store says about a message besides its bytes: flags, keywords, whether a client
//! has seen it (new/ vs cur/), and its internal (received) date with where that date came from.

use serde::Serialize;

use crate::flags::{Flags, Keywords};

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
    /// Lowercase Maildir letters with no `dovecot-keywords` entry: kept as letters.
    pub stray_letters: u32,
    /// Never seen by a client (Maildir `new/`, mbox without `Status: O`).
    pub recent: bool,
    pub date: i64,
    pub date_source: DateSource,
}

impl Meta {
    pub fn new(date: i64, date_source: DateSource) -> Meta {
        Meta { flags: Flags::empty(), keywords: Keywords::new(), stray_letters: 0, recent: false, date, date_source }
    }

    /// Same flags and keywords (what a flag update carries).
    pub fn same_flags(&self, o: &Meta) -> bool {
        self.flags == o.flags && self.keywords == o.keywords && self.stray_letters == o.stray_letters
    }

    /// Belongs in `new/`: recent and without any flag or keyword.
    pub fn goes_to_new(&self) -> bool {
        self.recent && self.flags.is_empty() && self.keywords.is_empty() && self.stray_letters == 0
    }

    pub fn stray_string(&self) -> String {
        (0u8..26).filter(|i| self.stray_letters & (1 << i) != 0).map(|i| (b'a' + i) as char).collect()
    }
}
