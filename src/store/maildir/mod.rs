//! Maildir and Maildir++ trees (D. J. Bernstein's Maildir, Courier's Maildir++, Dovecot's
//! extensions: `,S=`/`,W=` sizes, `dovecot-keywords`, `subscriptions`, `LAYOUT=fs`).

pub mod keywords;
pub mod layout;
pub mod listing;
pub mod name;
pub mod read;
pub mod uidlist;
pub mod write;
