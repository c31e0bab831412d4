//! Messages as pieces (slices borrowed from a source or built): written a block at a time with
//! vectored writes, hashed and their bare LFs counted on the way.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::mapped::{WINDOW, release_through, windows};
use crate::error::{At, Result};

/// Writes `pieces` to `f`; returns the size, SHA-256 and bare-LF count of what was written.
/// The bytes are written first and hashed after, a block at a time: the copy into the page
/// cache brings them into the CPU cache, where SHA-256 runs about half as fast again as on bytes
/// still in memory (measured: 1.2 GB/s from memory, 1.6 GB/s for the copy and the hash together).
pub fn write_pieces(f: &mut File, pieces: &[&[u8]], path: &Path) -> Result<(u64, [u8; 32], u64)> {
    const BLOCK: usize = 256 << 10;
    let mut h = Sha256::new();
    let mut lfs = BareLfs::default();
    let mut n = 0u64;
    let mut block: Vec<&[u8]> = Vec::with_capacity(pieces.len().min(16));
    let mut block_len = 0;
    let mut flush = |block: &mut Vec<&[u8]>| -> Result<()> {
        write_all_vectored(f, block, path)?;
        for s in block.drain(..) {
            h.update(s);
            lfs.update(s);
        }
        Ok(())
    };
    for p in pieces {
        n += p.len() as u64;
        let mut done = 0;
        for w in windows(p) {
            done += w.len();
            let mut rest = w;
            while !rest.is_empty() {
                let take = (BLOCK - block_len).min(rest.len());
                block.push(&rest[..take]);
                block_len += take;
                rest = &rest[take..];
                if block_len == BLOCK {
                    flush(&mut block)?;
                    block_len = 0;
                }
            }
            if w.len() >= WINDOW / 2 {
                // Written and hashed: a big mapped piece's pages can go.
                if !block.is_empty() {
                    flush(&mut block)?;
                    block_len = 0;
                }
                release_through(p, done);
            }
        }
    }
    if !block.is_empty() {
        flush(&mut block)?;
    }
    Ok((n, h.finalize().into(), lfs.n))
}

fn write_all_vectored(f: &mut File, pieces: &[&[u8]], path: &Path) -> Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = pieces.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match f.write_vectored(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)).at(path),
            Ok(k) => io::IoSlice::advance_slices(&mut rest, k),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).at(path),
        }
    }
    Ok(())
}

/// Number of LFs not preceded by CR, across piece boundaries (for Dovecot's `,W=` size).
pub fn bare_lf_count(pieces: &[&[u8]]) -> u64 {
    let mut c = BareLfs::default();
    for p in pieces {
        c.update(p);
    }
    c.n
}

/// [`bare_lf_count`] fed piece by piece: every LF minus every CRLF, both counted with
/// vectorised searches (the CRLF search only where a CR occurs at all).
#[derive(Default)]
struct BareLfs {
    n: u64,
    prev: u8,
}

impl BareLfs {
    fn update(&mut self, p: &[u8]) {
        let lfs = memchr::memchr_iter(b'\n', p).count() as u64;
        let mut crlfs = 0;
        if memchr::memchr(b'\r', p).is_some() {
            crlfs = memchr::memmem::find_iter(p, b"\r\n").count() as u64;
        }
        if self.prev == b'\r' && p.first() == Some(&b'\n') {
            crlfs += 1;
        }
        self.n += lfs - crlfs;
        if let Some(&l) = p.last() {
            self.prev = l;
        }
    }
}

pub fn sha256_pieces(pieces: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in pieces {
        let mut done = 0;
        for w in windows(p) {
            h.update(w);
            done += w.len();
            release_through(p, done);
        }
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lfs_across_pieces() {
        assert_eq!(bare_lf_count(&[b"a\r", b"\nb\n"]), 1);
        assert_eq!(bare_lf_count(&[b"a\n", b"\n"]), 2);
        assert_eq!(bare_lf_count(&[b"a\r", b"", b"\n\r\n\n"]), 1);
        // Against a byte-by-byte count, over every split of a mixed text into three pieces.
        let text = b"\r\n\nx\r\r\n\n\rab\n\r";
        let naive = (0..text.len()).filter(|&i| text[i] == b'\n' && (i == 0 || text[i - 1] != b'\r')).count() as u64;
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(bare_lf_count(&[&text[..i], &text[i..j], &text[j..]]), naive, "{i} {j}");
            }
        }
    }
}
