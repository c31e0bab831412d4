//! Dovecot's `dovecot-keywords`: the per-folder table from keyword letters (`a` = index 0) to
//! names. Letters mean nothing across folders, so keywords travel by name and are given
//! letters again in the target folder; only 26 fit.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeywordMap {
    names: [Option<String>; 26],
}

impl KeywordMap {
    pub fn parse(text: &[u8]) -> KeywordMap {
        let mut m = KeywordMap::default();
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(sp) = memchr::memchr(b' ', line) else { continue };
            let (Ok(idx), Ok(name)) =
                (std::str::from_utf8(&line[..sp]).map(|s| s.parse::<usize>()), std::str::from_utf8(&line[sp + 1..]))
            else {
                continue;
            };
            if let (Ok(i), false) = (idx, name.is_empty())
                && i < 26
            {
                m.names[i] = Some(name.to_string());
            }
        }
        m
    }

    pub fn name(&self, letter_index: u8) -> Option<&str> {
        self.names.get(letter_index as usize)?.as_deref()
    }

    pub fn letter(&self, name: &str) -> Option<u8> {
        self.names.iter().position(|n| n.as_deref() == Some(name)).map(|i| i as u8)
    }

    /// Letter index for `name`, allocating the first free one not in `reserved`. The name
    /// Dovecot gives a letter without one (`unknown-N`) gets that letter when it is free, as
    /// Dovecot would write it.
    pub fn ensure(&mut self, name: &str, reserved: u32) -> Option<u8> {
        if let Some(i) = self.letter(name) {
            return Some(i);
        }
        let free = |i: usize| self.names[i].is_none() && reserved & (1 << i) == 0;
        let own = (0..26u8).map(usize::from).find(|&i| crate::message::unnamed_letter(i as u8) == name);
        let i = own.filter(|&i| free(i)).or_else(|| (0..26).find(|&i| free(i)))?;
        self.names[i] = Some(name.to_string());
        Some(i as u8)
    }

    pub fn is_empty(&self) -> bool {
        self.names.iter().all(Option::is_none)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(n) = n {
                s.push_str(&format!("{i} {n}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_allocate() {
        let mut m = KeywordMap::parse(b"0 $Junk\n1 NonJunk\nbad\n30 x\n");
        assert_eq!(m.name(0), Some("$Junk"));
        assert_eq!(m.letter("NonJunk"), Some(1));
        assert_eq!(m.ensure("New", 1 << 2), Some(3), "c is reserved by a stray letter");
        assert_eq!(m.render(), "0 $Junk\n1 NonJunk\n3 New\n");
    }

    #[test]
    fn only_26_fit() {
        let mut m = KeywordMap::default();
        for i in 0..26 {
            assert!(m.ensure(&format!("k{i}"), 0).is_some());
        }
        assert_eq!(m.ensure("k26", 0), None);
        let mut m = KeywordMap::parse(b"0 $Junk\n");
        assert_eq!(m.ensure("unknown-11", 0), Some(11), "the letter Dovecot names so");
        assert_eq!(m.ensure("unknown-0", 0), Some(1), "its letter is taken");
    }
}
