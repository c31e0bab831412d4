//! Folder names as users see them: IMAP style, `/` between hierarchy levels, `INBOX` for the
//! root mailbox. A [`FolderName`] that exists has been validated: no empty level, no `.` or
//! `..` level, no control character, so no name read from someone else's disk can turn into a
//! path outside the target root.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct FolderName(String);

impl FolderName {
    pub fn inbox() -> FolderName {
        FolderName("INBOX".to_string())
    }

    /// Parses an IMAP-style name (`Archive/2019`). `INBOX` is case-insensitive, also as the
    /// first level of a hierarchy (`Inbox/Bugs` is `INBOX/Bugs`).
    pub fn parse(s: &str) -> Result<FolderName, String> {
        FolderName::from_levels(s.split('/'))
    }

    pub fn from_levels<'a>(levels: impl IntoIterator<Item = &'a str>) -> Result<FolderName, String> {
        let mut out = String::new();
        for (i, level) in levels.into_iter().enumerate() {
            check_level(level)?;
            if i > 0 {
                out.push('/');
            }
            if i == 0 && level.eq_ignore_ascii_case("INBOX") {
                out.push_str("INBOX");
            } else {
                out.push_str(level);
            }
        }
        if out.is_empty() {
            return Err("empty folder name".into());
        }
        Ok(FolderName(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }

    /// `INBOX/x` → `x` when the target keeps INBOX's children at the top level; names are
    /// otherwise unchanged.
    pub fn child(&self, level: &str) -> Result<FolderName, String> {
        FolderName::from_levels(self.levels().chain(std::iter::once(level)))
    }
}

fn check_level(level: &str) -> Result<(), String> {
    if level.is_empty() {
        return Err("empty hierarchy level in folder name".into());
    }
    if level == "." || level == ".." {
        return Err(format!("folder name level {level:?} is not allowed"));
    }
    if level.contains('/') {
        return Err(format!("'/' inside the folder name level {level:?}"));
    }
    if let Some(c) = level.chars().find(|c| c.is_control()) {
        return Err(format!("control character U+{:04X} in folder name", c as u32));
    }
    Ok(())
}

impl fmt::Display for FolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text safe to print on a terminal: control characters shown as escapes.
pub fn sanitize(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_is_case_insensitive() {
        assert_eq!(FolderName::parse("inbox").unwrap().as_str(), "INBOX");
        assert_eq!(FolderName::parse("Inbox/Bugs").unwrap().as_str(), "INBOX/Bugs");
        assert_eq!(FolderName::parse("Archive/inbox").unwrap().as_str(), "Archive/inbox");
    }

    #[test]
    fn hostile_levels_rejected() {
        for bad in ["", "a//b", "..", "a/../b", ".", "a\u{0}b", "x\ny", "/abs"] {
            assert!(FolderName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(FolderName::parse("...").is_ok(), "three dots is a plain name");
    }

    /// Found by the mutf7 fuzz target: a level holding '/' would silently become two levels.
    #[test]
    fn slash_inside_a_level_is_rejected() {
        assert!(FolderName::from_levels(["*/"]).is_err());
    }

    #[test]
    fn sanitize_escapes_controls() {
        assert_eq!(sanitize("a\u{1b}[31mb"), "a\\u{1b}[31mb");
    }
}
