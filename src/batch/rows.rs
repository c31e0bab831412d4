//! The batch file: one `source,target[,OPTION…]` row per store or account, read into validated
//! [`Row`]s. Pure: no file system, no stores opened; `batch` checks the stores when it runs them.
//!
//! Design rationale: the format is CSV (RFC 4180 quoting with `"`, `""` for a quote) because
//! that is what account lists come out of, one physical line per row so an error can name its
//! line. `#` comment lines and blank lines are skipped; an optional header row whose first two
//! fields are `source` and `target` is skipped too. Extra fields are per-row options written
//! like the long options of `sync` without the dashes (`map-domain=old.example=new.example`,
//! `owner=bob`, `delete`), so nothing new has to be learnt and the row reads like a command
//! line. Rejected: a column per option (files become wide and sparse and every new option
//! changes the header), multi-line quoted fields (a path never holds a newline, and errors
//! could no longer name one line).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::SyncSettings;
use crate::store::maildir::layout::Layout;
use crate::store::mbox::flavour::Flavour;
use crate::sync::IdentityBy;

/// One row of the batch file.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// 1-based line number in the file.
    pub line: usize,
    pub source: String,
    pub target: String,
    /// The option fields as written (for reports), in order.
    pub written: Vec<String>,
    pub options: Vec<RowOption>,
}

/// A per-row option. Repeatable options add to the ones given on the command line; the others
/// replace them.
#[derive(Clone, Debug, PartialEq)]
pub enum RowOption {
    MapDomain(String),
    MapUser(String),
    MapFile(PathBuf),
    Mailbox(String),
    SourceEtc(PathBuf),
    TargetEtc(PathBuf),
    OverwriteMetadata(bool),
    Owner(String),
    Include(String),
    Exclude(String),
    Folder(String),
    MapFolder(String),
    Automap(bool),
    Layout(Layout),
    MboxFormat(Flavour),
    Identity(IdentityBy),
    Delete(bool),
    Mirror(bool),
    MaxDelete(u64),
    MaxSize(u64),
    MinAge(f64),
    MaxAge(f64),
    AuditLog(PathBuf),
}

/// The option names a row may use, for errors and `batch --help`.
pub const OPTION_NAMES: &[&str] = &[
    "map-domain",
    "map-user",
    "map-file",
    "mailbox",
    "source-etc",
    "target-etc",
    "overwrite-metadata",
    "owner",
    "include",
    "exclude",
    "folder",
    "map-folder",
    "automap",
    "layout",
    "mbox-format",
    "identity",
    "delete",
    "mirror",
    "max-delete",
    "max-size",
    "min-age",
    "max-age",
    "audit-log",
];

/// A bad line: its number and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

impl Row {
    /// Stable name of the row (its report file is `row-ID.json`): the first 8 bytes of
    /// SHA-256 over source, target and options, so two rows for different mailboxes of one
    /// account get different reports, and editing a row's options makes it a new row.
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.source.as_bytes());
        h.update([0]);
        h.update(self.target.as_bytes());
        for w in &self.written {
            h.update([0]);
            h.update(w.as_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }

    /// The command line's sync settings with this row's options applied.
    pub fn settings(&self, base: &SyncSettings) -> SyncSettings {
        let mut f = base.clone();
        for o in &self.options {
            match o {
                RowOption::MapDomain(v) => f.cpanel.map_domain.push(v.clone()),
                RowOption::MapUser(v) => f.cpanel.map_user.push(v.clone()),
                RowOption::MapFile(v) => f.cpanel.map_file = Some(v.clone()),
                RowOption::Mailbox(v) => f.cpanel.mailbox = Some(v.clone()),
                RowOption::SourceEtc(v) => f.cpanel.source_etc = v.clone(),
                RowOption::TargetEtc(v) => f.cpanel.target_etc = v.clone(),
                RowOption::OverwriteMetadata(b) => f.cpanel.overwrite_metadata = *b,
                RowOption::Owner(v) => f.owner = Some(v.clone()),
                RowOption::Include(v) => f.folders.include.push(v.clone()),
                RowOption::Exclude(v) => f.folders.exclude.push(v.clone()),
                RowOption::Folder(v) => f.folders.folder.push(v.clone()),
                RowOption::MapFolder(v) => f.folders.map_folder.push(v.clone()),
                RowOption::Automap(b) => f.folders.automap = *b,
                RowOption::Layout(l) => f.folders.layout = *l,
                RowOption::MboxFormat(m) => f.folders.mbox_format = Some(*m),
                RowOption::Identity(i) => f.folders.identity = *i,
                RowOption::Delete(b) => f.delete = *b,
                RowOption::Mirror(b) => f.mirror = *b,
                RowOption::MaxDelete(n) => f.max_delete = Some(*n),
                RowOption::MaxSize(n) => f.max_size = Some(*n),
                RowOption::MinAge(d) => f.min_age = Some(*d),
                RowOption::MaxAge(d) => f.max_age = Some(*d),
                RowOption::AuditLog(p) => f.audit_log = Some(p.clone()),
            }
        }
        f
    }
}

/// Reads every row of the file, or the first bad line. Duplicate rows (same source, target
/// and options) are errors: they would share one report and race on one target.
pub fn parse(text: &str) -> Result<Vec<Row>, LineError> {
    let mut rows: Vec<Row> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut header_allowed = true;
    // Spreadsheets on Windows start CSV files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let err = |reason: String| LineError { line, reason };
        let fields = split_fields(l).map_err(err)?;
        if std::mem::take(&mut header_allowed) && is_header(&fields) {
            continue;
        }
        let mut it = fields.into_iter();
        let source = it.next().unwrap_or_default();
        let target = it.next().unwrap_or_default();
        if source.is_empty() {
            return Err(err("the source (first field) is empty".into()));
        }
        if target.is_empty() {
            return Err(err("no target: a row is `source,target[,option…]`".into()));
        }
        let mut written = Vec::new();
        let mut options = Vec::new();
        // Spreadsheets pad rows with empty fields; they mean nothing.
        for f in it.filter(|f| !f.is_empty()) {
            options.push(parse_option(&f).map_err(err)?);
            written.push(f);
        }
        let row = Row { line, source, target, written, options };
        if let Some(first) = seen.insert(row.id(), line) {
            return Err(err(format!("the same row as line {first} (same source, target and options)")));
        }
        rows.push(row);
    }
    Ok(rows)
}

fn is_header(fields: &[String]) -> bool {
    matches!(fields, [s, t, ..] if s.eq_ignore_ascii_case("source") && t.eq_ignore_ascii_case("target"))
}

/// Splits one line into fields: `"…"` quoting with `""` for a quote; unquoted fields are
/// trimmed (so `a, b` works), quoted ones are kept exactly.
pub fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut field = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(format!("field {} has an opening quote and no closing one", fields.len() + 1)),
                }
            }
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => {
                    return Err(format!(
                        "field {}: {c:?} after the closing quote (expected a comma)",
                        fields.len() + 1
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim_end().to_string());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(format!(
                            "field {}: a quote inside an unquoted field (quote the whole field)",
                            fields.len() + 1
                        ));
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim_end().to_string());
        }
    }
}

fn parse_option(field: &str) -> Result<RowOption, String> {
    let (key, value) = match field.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => (field.trim(), None),
    };
    // `--owner=bob` is how people type options; accept it.
    let key = key.strip_prefix("--").unwrap_or(key);
    let need = || -> Result<&str, String> {
        match value {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(format!("option {key} needs a value ({key}=…)")),
        }
    };
    let path = || need().map(PathBuf::from);
    let pair = || -> Result<String, String> {
        let v = need()?;
        match v.split_once('=') {
            Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => Ok(v.to_string()),
            _ => Err(format!("option {key}={v}: expected {key}=OLD=NEW")),
        }
    };
    let flag = || -> Result<bool, String> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("yes" | "true" | "1") => Ok(true),
            Some("no" | "false" | "0") => Ok(false),
            Some(v) => Err(format!("option {key}={v}: expected {key}, {key}=yes or {key}=no")),
        }
    };
    let number = |what: &str| -> Result<f64, String> {
        let v = need()?;
        v.parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d >= 0.0)
            .ok_or_else(|| format!("option {key}={v}: expected {what}"))
    };
    Ok(match key {
        "map-domain" => RowOption::MapDomain(pair()?),
        "map-user" => RowOption::MapUser(pair()?),
        "map-file" => RowOption::MapFile(path()?),
        "mailbox" => RowOption::Mailbox(need()?.to_string()),
        "source-etc" => RowOption::SourceEtc(path()?),
        "target-etc" => RowOption::TargetEtc(path()?),
        "overwrite-metadata" => RowOption::OverwriteMetadata(flag()?),
        "owner" => RowOption::Owner(need()?.to_string()),
        "include" => RowOption::Include(need()?.to_string()),
        "exclude" => RowOption::Exclude(need()?.to_string()),
        "folder" => RowOption::Folder(need()?.to_string()),
        "map-folder" => RowOption::MapFolder(need()?.to_string()),
        "automap" => RowOption::Automap(flag()?),
        "layout" => {
            let v = need()?;
            RowOption::Layout(
                Layout::from_name(v)
                    .ok_or_else(|| format!("option layout={v}: expected maildir++, fs or thunderbird"))?,
            )
        }
        "mbox-format" => {
            let v = need()?;
            RowOption::MboxFormat(
                Flavour::from_name(v)
                    .ok_or_else(|| format!("option mbox-format={v}: expected mboxrd, mboxcl2 or dovecot"))?,
            )
        }
        "identity" => {
            let v = need()?;
            RowOption::Identity(
                IdentityBy::ALL
                    .into_iter()
                    .find(|i| i.name() == v)
                    .ok_or_else(|| format!("option identity={v}: expected content or headers"))?,
            )
        }
        "delete" => RowOption::Delete(flag()?),
        "mirror" => RowOption::Mirror(flag()?),
        "max-delete" => {
            let v = need()?;
            RowOption::MaxDelete(
                v.parse().map_err(|_| format!("option max-delete={v}: expected a number of messages"))?,
            )
        }
        "max-size" => {
            let v = need()?;
            RowOption::MaxSize(v.parse().map_err(|_| format!("option max-size={v}: expected a number of bytes"))?)
        }
        "min-age" => RowOption::MinAge(number("a number of days")?),
        "max-age" => RowOption::MaxAge(number("a number of days")?),
        "audit-log" => RowOption::AuditLog(path()?),
        _ if key.is_empty() => return Err(format!("empty option name in {field:?}")),
        _ => return Err(format!("unknown option {key:?} (row options: {})", OPTION_NAMES.join(", "))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(line: &str) -> Vec<String> {
        split_fields(line).unwrap()
    }

    #[test]
    fn fields_follow_csv_quoting() {
        assert_eq!(f("a,b"), ["a", "b"]);
        assert_eq!(f(" a , b ,c"), ["a", "b", "c"]);
        assert_eq!(f(r#""a,b",c"#), ["a,b", "c"]);
        assert_eq!(f(r#""say ""hi""", x"#), [r#"say "hi""#, "x"]);
        assert_eq!(f(r#"" padded ",x"#), [" padded ", "x"]);
        assert_eq!(f("a,b,"), ["a", "b", ""]);
        assert_eq!(f(""), [""]);
        assert!(split_fields(r#""open,b"#).is_err());
        assert!(split_fields(r#""a"x,b"#).is_err());
        assert!(split_fields(r#"a"b,c"#).is_err());
    }

    #[test]
    fn comments_blank_lines_header_and_crlf() {
        let text = "# accounts\r\nsource,target\r\n\r\n  # indented comment\n/a,/b\r\n\"/c d\",/e,owner=bob\n";
        let rows = parse(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line, rows[0].source.as_str(), rows[0].target.as_str()), (5, "/a", "/b"));
        assert_eq!((rows[1].line, rows[1].source.as_str()), (6, "/c d"));
        assert_eq!(rows[1].options, [RowOption::Owner("bob".into())]);
        assert_eq!(rows[1].written, ["owner=bob"]);
    }

    #[test]
    fn only_the_first_row_can_be_a_header() {
        let rows = parse("/a,/b\nsource,target\n").unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn bad_rows_name_their_line() {
        let cases = [
            ("/a,/b\n/c\n", 2, "no target"),
            ("\n\n,/b\n", 3, "source"),
            ("/a,/b,colour=red\n", 1, "unknown option"),
            ("/a,/b,map-domain=old\n", 1, "OLD=NEW"),
            ("/a,/b,owner\n", 1, "needs a value"),
            ("/a,/b,layout=flat\n", 1, "maildir++, fs or thunderbird"),
            ("/a,/b,delete=maybe\n", 1, "delete=yes"),
            ("/a,/b,max-size=big\n", 1, "bytes"),
            ("/a,/b,min-age=-3\n", 1, "days"),
            ("#c\n/a,/b\n/a,/b\n", 3, "line 2"),
            ("/a,\"/b\n", 1, "closing"),
        ];
        for (text, line, words) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.reason.contains(words), "{text:?}: {:?} lacks {words:?}", e.reason);
        }
    }

    #[test]
    fn options_parse_and_apply_over_the_command_line() {
        let mut base = SyncSettings { owner: Some("root".into()), ..Default::default() };
        base.cpanel.map_domain.push("a.example=b.example".into());
        base.folders.include.push("^INBOX".into());
        let rows = parse("cpanel:/old/bob,cpanel:/new/bob,map-domain=c.example=d.example,--owner=bob,delete,automap=no,layout=fs,mbox-format=mboxcl2,identity=headers,max-size=1000,max-delete=7,mirror,min-age=1.5,include=Sent,mailbox=x@c.example,audit-log=/var/log/bob.jsonl\n").unwrap();
        let f = rows[0].settings(&base);
        assert_eq!(f.cpanel.map_domain, ["a.example=b.example", "c.example=d.example"]);
        assert_eq!(f.owner.as_deref(), Some("bob"));
        assert!(f.delete);
        assert!(f.mirror);
        assert_eq!(f.max_delete, Some(7));
        assert!(!f.folders.automap);
        assert_eq!(f.folders.layout, Layout::Fs);
        assert_eq!(f.folders.mbox_format, Some(Flavour::Mboxcl2));
        assert_eq!(f.folders.identity, IdentityBy::Headers);
        assert_eq!(f.max_size, Some(1000));
        assert_eq!(f.min_age, Some(1.5));
        assert_eq!(f.folders.include, ["^INBOX", "Sent"]);
        assert_eq!(f.cpanel.mailbox.as_deref(), Some("x@c.example"));
        assert_eq!(f.audit_log, Some(PathBuf::from("/var/log/bob.jsonl")));
    }

    #[test]
    fn ids_differ_by_options_and_are_stable() {
        let rows = parse("/a,/b\n/a,/b,mailbox=x@y\n/a,/c\n").unwrap();
        let ids: Vec<String> = rows.iter().map(Row::id).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        assert_eq!(ids[0].len(), 16);
        assert_eq!(parse("# moved\n\n/a,/b\n").unwrap()[0].id(), ids[0], "the id does not depend on the line");
    }

    #[test]
    fn garbage_never_panics() {
        for text in ["\"", ",,,,", "\u{0}\u{feff},\"\"\"", "a,b,=", "a,b,--", "a,b,\"=x\"", "\r\r\n\n,\r"] {
            let _ = parse(text);
        }
    }
}
