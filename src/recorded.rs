//! The options a sync ran with, kept in its target, so that a later `verify` compares what the
//! sync made (folders renamed by `--map-folder`, domains by `--map-domain`, mbox dates read in
//! `--mbox-tz`…) without the admin giving them again.
//!
//! The file sits where the target's lock does, under the same kind of name, which no mail
//! reader lists: `mailmover-options.lock` in a Maildir root, `.mailmover-options.lock` in an
//! mbox directory or a cPanel home, `.NAME.mailmover-options.lock` beside an mbox file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::fsx::{Dir, Owner};
use crate::spec::{Kind, Store};

const SCHEMA: &str = "mailmover.sync-options/1";

/// The directory and name of the options file of target `dst`.
pub fn place(dst: &Store) -> Option<(PathBuf, OsString)> {
    match dst.kind {
        Kind::Maildir => Some((dst.path.clone(), "mailmover-options.lock".into())),
        Kind::Mbox | Kind::Cpanel if dst.path.is_dir() => Some((dst.path.clone(), ".mailmover-options.lock".into())),
        Kind::Mbox => {
            let name = dst.path.file_name()?;
            let dir = dst.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut n = OsString::from(".");
            n.push(name);
            n.push(".mailmover-options.lock");
            Some((dir.to_path_buf(), n))
        }
        Kind::Cpanel => None,
    }
}

/// Records `args` (the options that decide what goes where) for target `dst`, as synced from
/// `source`: only where the target exists (a run that wrote nothing leaves nothing beside it),
/// and only when they changed (a re-run that changes nothing leaves the target as it is).
pub fn write(dst: &Store, source: &str, args: &[String], owner: Option<Owner>, durable: bool) -> Result<()> {
    let Some((dir, name)) = place(dst) else { return Ok(()) };
    if !dst.path.exists() {
        return Ok(());
    }
    if let Ok(Some((_, old, from))) = read_with_source(dst)
        && old == args
        && from == source
    {
        return Ok(());
    }
    let body = json!({"schema": SCHEMA, "written": crate::logfile::now(), "source": source, "args": args});
    let dir = Dir::open_root(&dir)?;
    dir.write_atomic_with(&name, 0o600, owner, durable, &mut |w| {
        w.write_all(format!("{body}\n").as_bytes()).map(|()| true)
    })
}

/// The options recorded for target `dst`, and where: `None` when there are none.
pub fn read(dst: &Store) -> Result<Option<(PathBuf, Vec<String>)>> {
    Ok(read_with_source(dst)?.map(|(p, a, _)| (p, a)))
}

/// [`read`], with the source the options were recorded for.
fn read_with_source(dst: &Store) -> Result<Option<(PathBuf, Vec<String>, String)>> {
    let Some((dir, name)) = place(dst) else { return Ok(None) };
    let path = dir.join(&name);
    let Some(raw) = crate::fsx::read_own_file(&path, 1 << 20)? else { return Ok(None) };
    let bad = || Error::bad(&path, "not a record of sync options; give the options to verify on its command line");
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
        return Err(bad());
    }
    let args = v.get("args").and_then(Value::as_array).ok_or_else(bad)?;
    let args = args.iter().map(|a| a.as_str().map(str::to_string)).collect::<Option<Vec<_>>>().ok_or_else(bad)?;
    let source = v.get("source").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Some((path, args, source)))
}
