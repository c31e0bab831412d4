//! Where a folder lives on disk: Maildir++ (`.Archive.2019`, Dovecot's and Courier's default)
//! or nested directories (`Archive/2019`, Dovecot `LAYOUT=fs`). Each level is written in
//! modified UTF-7. INBOX is the root in both. An mbox directory nests as `fs` (Dovecot's) or
//! as Thunderbird does (`Archive.sbd/2019`); see `store::mbox::target`.

use crate::folder::FolderName;
use crate::mutf7;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    #[default]
    MaildirPlusPlus,
    Fs,
    /// mbox directories only: a folder's subfolders in `NAME.sbd/`.
    Thunderbird,
}

impl Layout {
    pub const ALL: [Layout; 3] = [Layout::MaildirPlusPlus, Layout::Fs, Layout::Thunderbird];

    /// The name options use (`--layout`, a batch row's `layout=`).
    pub fn name(self) -> &'static str {
        match self {
            Layout::MaildirPlusPlus => "maildir++",
            Layout::Fs => "fs",
            Layout::Thunderbird => "thunderbird",
        }
    }

    /// The layout of a name, in any case.
    pub fn from_name(s: &str) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(s))
    }
}

/// What replaces a `.` inside a level under Maildir++ (where `.` separates levels).
pub const DOT_REPLACEMENT: char = '_';

/// Path components of a folder below the root (empty for INBOX), and whether a `.` had to be
/// replaced.
pub fn components(name: &FolderName, layout: Layout) -> Result<(Vec<String>, bool), String> {
    if name.is_inbox() {
        return Ok((Vec::new(), false));
    }
    let mut replaced = false;
    let levels: Vec<String> = name
        .levels()
        .map(|l| {
            let enc = mutf7::encode(l);
            if layout == Layout::MaildirPlusPlus && enc.contains('.') {
                replaced = true;
                enc.replace('.', &DOT_REPLACEMENT.to_string())
            } else {
                enc
            }
        })
        .collect();
    match layout {
        Layout::Thunderbird => {
            Err("the thunderbird layout is for mbox directories; a Maildir takes maildir++ or fs".into())
        }
        Layout::MaildirPlusPlus => Ok((vec![format!(".{}", levels.join("."))], replaced)),
        Layout::Fs => {
            if let Some(l) = levels.iter().find(|l| matches!(l.as_str(), "cur" | "new" | "tmp") || l.starts_with('.')) {
                return Err(format!("folder level {l:?} cannot be a directory in the fs layout"));
            }
            Ok((levels, false))
        }
    }
}

/// The folder a Maildir++ directory entry (`.A.B`) stands for.
pub fn from_dot_dir(entry: &str) -> Result<FolderName, String> {
    let rest = entry.strip_prefix('.').ok_or("not a Maildir++ folder")?;
    let levels: Vec<String> = rest.split('.').map(mutf7::decode_lenient).collect();
    FolderName::from_levels(levels.iter().map(String::as_str))
}

/// The folder nested directories stand for (fs layout).
pub fn from_fs_levels(levels: &[&str]) -> Result<FolderName, String> {
    let dec: Vec<String> = levels.iter().map(|l| mutf7::decode_lenient(l)).collect();
    FolderName::from_levels(dec.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> FolderName {
        FolderName::parse(s).unwrap()
    }

    /// Found by the mutf7 fuzz target: a level holding '/' would silently become two levels.
    #[test]
    fn slash_inside_a_dot_level_is_rejected() {
        assert!(from_dot_dir(".*/").is_err());
    }

    #[test]
    fn maildirpp_names() {
        assert_eq!(components(&f("Archive/2019"), Layout::MaildirPlusPlus).unwrap().0, vec![".Archive.2019"]);
        assert_eq!(components(&f("Entwürfe"), Layout::MaildirPlusPlus).unwrap().0, vec![".Entw&APw-rfe"]);
        assert_eq!(components(&f("Inbox/Bugs"), Layout::MaildirPlusPlus).unwrap().0, vec![".INBOX.Bugs"]);
        assert_eq!(components(&f("a.b"), Layout::MaildirPlusPlus).unwrap(), (vec![".a_b".to_string()], true));
        assert!(components(&f("INBOX"), Layout::Fs).unwrap().0.is_empty());
    }

    #[test]
    fn fs_names() {
        assert_eq!(components(&f("Archive/2019"), Layout::Fs).unwrap().0, vec!["Archive", "2019"]);
        assert!(components(&f("x/cur"), Layout::Fs).is_err());
    }

    #[test]
    fn names_both_ways() {
        for l in Layout::ALL {
            assert_eq!(Layout::from_name(l.name()), Some(l));
        }
        assert_eq!(Layout::from_name("Maildir++"), Some(Layout::MaildirPlusPlus));
        assert_eq!(Layout::from_name("FS"), Some(Layout::Fs));
        assert_eq!(Layout::from_name("flat"), None);
    }

    #[test]
    fn reading_dot_dirs() {
        assert_eq!(from_dot_dir(".&ZeVnLIqe-.&W1A-").unwrap().as_str(), "日本語/子");
        assert_eq!(from_dot_dir(".Q&-A").unwrap().as_str(), "Q&A");
        assert_eq!(from_dot_dir(".My Folder.Nested Folder").unwrap().as_str(), "My Folder/Nested Folder");
        assert!(from_dot_dir("...").is_err());
        assert!(from_dot_dir(".a..b").is_err());
        assert_eq!(from_dot_dir(".&AC8-").unwrap().as_str(), "&AC8-", "invalid mUTF-7 kept as is");
    }
}
