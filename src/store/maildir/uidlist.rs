//! Dovecot's `dovecot-uidlist` for a folder mailmover filled (FORMATS.md §6.1).
//!
//! Dovecot numbers files it finds without a record by name (date first), so messages copied
//! in source order would get UIDs in date order. Written before Dovecot first opens the folder,
//! a uidlist is taken as it is: UIDs follow the source. A folder that has a uidlist already is
//! never given one (its UIDs are Dovecot's, or a client's memory of them), and one that
//! appears while mailmover writes is left alone.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};

use crate::error::{At, Result};
use crate::fsx::{Dir, Owner};

pub const UIDLIST: &str = "dovecot-uidlist";
const LOCK: &str = "dovecot-uidlist.lock";

/// The records of a new uidlist, in UID order, kept in an unlinked temporary file until the
/// folder is done (memory stays flat whatever its size).
pub struct UidLines {
    out: BufWriter<File>,
    count: u32,
}

impl UidLines {
    pub fn new() -> std::io::Result<UidLines> {
        Ok(UidLines { out: BufWriter::new(tempfile::tempfile()?), count: 0 })
    }

    /// The next UID goes to the message file whose base name (up to `:`) is `base`.
    pub fn add(&mut self, base: &[u8]) -> std::io::Result<()> {
        self.count += 1;
        write!(self.out, "{} :", self.count)?;
        self.out.write_all(base)?;
        self.out.write_all(b"\n")
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Puts the uidlist into `dir` (UIDVALIDITY `validity`), under Dovecot's lock and never
    /// over an existing one: `Ok(false)` when Dovecot holds the lock or wrote a uidlist first.
    pub fn write(self, dir: &Dir, validity: u32, owner: Option<Owner>, durable: bool) -> Result<bool> {
        let path = dir.path.join(UIDLIST);
        let mut records = self.out.into_inner().map_err(|e| e.into_error()).at(&path)?;
        records.rewind().at(&path)?;
        let lock = match dir.create_file(OsStr::new(LOCK), 0o600) {
            Ok(mut f) => {
                let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
                let _ = write!(f, "{}:{host}", std::process::id());
                f
            }
            Err(_) => return Ok(false),
        };
        let r = (|| {
            if dir.stat_at(OsStr::new(UIDLIST))?.is_some() {
                return Ok(false);
            }
            let header = format!("3 V{validity} N{}\n", self.count + 1);
            dir.write_new_with(UIDLIST, 0o600, owner, durable, &mut |w| {
                w.write_all(header.as_bytes())?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = records.read(&mut buf)?;
                    if n == 0 {
                        return Ok(true);
                    }
                    w.write_all(&buf[..n])?;
                }
            })
        })();
        drop(lock);
        let _ = dir.unlink(OsStr::new(LOCK));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_never_over_another() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_root(t.path()).unwrap();
        let mut u = UidLines::new().unwrap();
        u.add(b"1.M0P1.h,S=3,W=4").unwrap();
        u.add(b"1.M1P2.h,S=3,W=4").unwrap();
        assert!(u.write(&dir, 77, None, false).unwrap());
        let text = std::fs::read_to_string(t.path().join(UIDLIST)).unwrap();
        assert_eq!(text, "3 V77 N3\n1 :1.M0P1.h,S=3,W=4\n2 :1.M1P2.h,S=3,W=4\n");
        assert!(!t.path().join(LOCK).exists());
        // One there already (Dovecot's) stays as it is.
        let mut u = UidLines::new().unwrap();
        u.add(b"x").unwrap();
        assert!(!u.write(&dir, 78, None, false).unwrap());
        assert_eq!(std::fs::read_to_string(t.path().join(UIDLIST)).unwrap(), text);
        // Dovecot holding its lock: nothing is written.
        std::fs::remove_file(t.path().join(UIDLIST)).unwrap();
        std::fs::write(t.path().join(LOCK), b"1:h").unwrap();
        let mut u = UidLines::new().unwrap();
        u.add(b"x").unwrap();
        assert!(!u.write(&dir, 79, None, false).unwrap());
        assert!(!t.path().join(UIDLIST).exists() && t.path().join(LOCK).exists());
    }
}
