//! `inspect`: what a store holds — folders, message counts, sizes, flags, date range and every
//! problem found — read-only.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Serialize, Serializer};

use crate::error::{Problem, Result};
use crate::human;
use crate::message::DateSource;
use crate::source::Opened;
use crate::spec::Store;
use crate::store;
use crate::store::maildir::read::ScanOptions;
use crate::store::mbox::read::ReadOptions;
use crate::sync::date_source_name;

#[derive(Debug, Serialize, Default)]
pub struct FolderInfo {
    pub name: String,
    pub path: String,
    pub format: &'static str,
    pub messages: u64,
    pub bytes: u64,
    /// Messages per flag letter.
    pub flags: BTreeMap<String, u64>,
    pub keywords: BTreeMap<String, u64>,
    pub unseen: u64,
    /// The oldest and newest internal date (Unix seconds; in JSON RFC 3339 UTC, null when the
    /// folder has no message).
    #[serde(serialize_with = "rfc3339")]
    pub date_first: Option<i64>,
    #[serde(serialize_with = "rfc3339")]
    pub date_last: Option<i64>,
    /// Messages whose date is not from the From_ line or mtime, by where it came from.
    pub date_fallbacks: BTreeMap<String, u64>,
    pub pseudo_messages: u64,
}

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub kind: &'static str,
    pub path: String,
    pub folders: Vec<FolderInfo>,
    pub messages: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

pub fn inspect(st: &Store, ropts: &ReadOptions, follow_symlinks: bool, jobs: usize) -> Result<Inspection> {
    inspect_with(st, ropts, follow_symlinks, jobs, &crate::events::Discard)
}

/// [`inspect`], telling `rec` how far it is (folders, and each message read).
pub fn inspect_with(
    st: &Store,
    ropts: &ReadOptions,
    follow_symlinks: bool,
    jobs: usize,
    rec: &dyn crate::events::Recorder,
) -> Result<Inspection> {
    use crate::events::Event;
    let (folders, mut problems) = store::source_folders(&st.path, st.format()?, follow_symlinks)?;
    rec.record(Event::Folders { total: folders.len() as u64 });
    let pool = crate::sync::pool(jobs)?;
    let scan = ScanOptions { follow_symlinks };
    let results: Vec<(Option<FolderInfo>, Vec<Problem>)> = pool.install(|| {
        folders
            .par_iter()
            .map(|f| {
                let mut probs = Vec::new();
                let opened = match Opened::open(&f.loc, scan, &mut probs) {
                    Ok(o) => o,
                    Err(e) => {
                        probs.push(e.problem());
                        return (None, probs);
                    }
                };
                let (bytes, messages) = match &opened {
                    Opened::Mbox(m) => (m.len(), None),
                    Opened::Maildir { listed, .. } => listed.as_ref().map_or((0, None), |l| (l.bytes, Some(l.count))),
                };
                rec.record(Event::Discovered { folder: f.name.clone(), bytes, messages });
                let mut info = FolderInfo {
                    name: f.name.to_string(),
                    path: f.loc.path().display().to_string(),
                    format: if matches!(opened, Opened::Mbox(_)) { "mbox" } else { "maildir" },
                    ..Default::default()
                };
                for refs in opened.chunks(ropts) {
                    let loaded: Vec<_> =
                        refs.par_iter().map(|r| (opened.stored_len(r), opened.load(r, ropts))).collect();
                    for (stored, l) in loaded {
                        rec.record(Event::Progress { bytes: stored });
                        let l = match l {
                            Ok(l) => l,
                            Err(p) => {
                                probs.push(p);
                                continue;
                            }
                        };
                        if l.pseudo {
                            info.pseudo_messages += 1;
                            continue;
                        }
                        if let Some(why) = l.truncated {
                            probs.push(l.origin.problem(why));
                        }
                        info.messages += 1;
                        info.bytes += stored;
                        for c in l.meta.flags.letters() {
                            *info.flags.entry((c as char).to_string()).or_default() += 1;
                        }
                        for k in l.meta.keywords.iter() {
                            *info.keywords.entry(k.to_string()).or_default() += 1;
                        }
                        if !l.meta.flags.contains(crate::flags::Flags::SEEN) {
                            info.unseen += 1;
                        }
                        if !matches!(l.meta.date_source, DateSource::FromLine | DateSource::Mtime) {
                            *info.date_fallbacks.entry(date_source_name(l.meta.date_source).into()).or_default() += 1;
                        }
                        let d = l.meta.date;
                        info.date_first = Some(info.date_first.map_or(d, |x| x.min(d)));
                        info.date_last = Some(info.date_last.map_or(d, |x| x.max(d)));
                    }
                }
                rec.record(Event::FolderDone { folder: f.name.clone() });
                (Some(info), probs)
            })
            .collect()
    });
    let mut out = Vec::new();
    for (info, mut p) in results {
        out.extend(info);
        problems.append(&mut p);
    }
    problems.sort();
    Ok(Inspection {
        kind: st.kind.as_str(),
        path: st.path.display().to_string(),
        messages: out.iter().map(|f| f.messages).sum(),
        bytes: out.iter().map(|f| f.bytes).sum(),
        folders: out,
        problems,
    })
}

impl Inspection {
    pub fn write_human(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let s = crate::folder::sanitize;
        writeln!(
            w,
            "{} store {}: {}, {}, {}",
            self.kind,
            s(&self.path),
            human::count(self.folders.len() as u64, "folder", "folders"),
            human::count(self.messages, "message", "messages"),
            human::size(self.bytes)
        )?;
        for f in &self.folders {
            let flags: Vec<String> = f.flags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            let dates = match (f.date_first, f.date_last) {
                (Some(a), Some(b)) => format!(", dates {} .. {}", fmt_date(a), fmt_date(b)),
                _ => String::new(),
            };
            writeln!(
                w,
                "  {:<30} {:>7} {:<8} {:>28}  flags [{}]{}",
                s(&f.name),
                f.messages,
                human::noun(f.messages, "message", "messages"),
                human::size(f.bytes),
                flags.join(" "),
                dates
            )?;
            for (k, v) in &f.date_fallbacks {
                let n = human::count(*v, "message", "messages");
                writeln!(w, "    {n} dated from the {k} (no usable From_ line date)")?;
            }
            if f.pseudo_messages > 0 {
                let n = human::count(f.pseudo_messages, "mbox pseudo message", "mbox pseudo messages");
                writeln!(w, "    {n} (folder data, not mail)")?;
            }
        }
        for p in &self.problems {
            writeln!(w, "problem: {}", s(&p.to_string()))?;
        }
        Ok(())
    }
}

fn fmt_date(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d").to_string())
}

/// A time as every JSON output writes one: RFC 3339 in UTC to the second.
fn rfc3339<S: Serializer>(t: &Option<i64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .serialize(s)
}
