//! Temporary names: a file is written under a name that carries its writer's pid, then renamed
//! into place; what a killed run left under such a name is swept by a later run.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use super::dir::Dir;

/// The temporary name under which `name` is written beside it before it is renamed into place:
/// a dot-file ending in `.lock` (Dovecot lists no `*.lock` name as a mailbox, Maildir readers
/// no plain file, mailmover's readers none of these) that names its writer's pid, so a later
/// run can tell a killed run's leftover from a running one's file.
pub fn temp_name(name: &OsStr) -> std::ffi::OsString {
    let mut t = std::ffi::OsString::from(".");
    t.push(name);
    t.push(format!(".mailmover-{}.tmp.lock", std::process::id()));
    t
}

/// The pid in a name [`temp_name`] made, or an older version of mailmover made
/// (`.NAME.mailmover-PID.tmp`, `.NAME.mailmover-PID`, `.mailmover-cache.PID`,
/// `.mailmover-source-cache.PID`); `None` for any other name.
pub fn temp_pid(name: &[u8]) -> Option<i32> {
    let digits = |d: &[u8]| -> Option<i32> {
        (!d.is_empty() && d.iter().all(u8::is_ascii_digit)).then(|| std::str::from_utf8(d).ok()?.parse().ok())?
    };
    let rest = name.strip_prefix(b".")?;
    for old in [&b"mailmover-cache."[..], b"mailmover-source-cache."] {
        if let Some(pid) = rest.strip_prefix(old).and_then(digits) {
            return Some(pid);
        }
    }
    let at = memchr::memmem::rfind(rest, b".mailmover-")?;
    let tail = &rest[at + ".mailmover-".len()..];
    let tail = tail.strip_suffix(b".lock").unwrap_or(tail);
    let tail = tail.strip_suffix(b".tmp").unwrap_or(tail);
    (at > 0).then(|| digits(tail))?
}

impl Dir {
    /// Removes the temporary files ([`temp_name`]) that killed runs left here: those whose
    /// run is gone, and those older than a day whatever their pid says (the pid was reused).
    /// Only regular files are touched; returns how many were removed.
    pub fn remove_leftovers(&self) -> usize {
        self.remove_leftovers_where(&|_| true)
    }

    /// [`Dir::remove_leftovers`], for the temporary names `pick` accepts.
    pub fn remove_leftovers_where(&self, pick: &dyn Fn(&[u8]) -> bool) -> usize {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let me = std::process::id() as i32;
        let mut n = 0;
        for name in self.names() {
            let Some(pid) = temp_pid(&name).filter(|_| pick(&name)) else { continue };
            let name = OsStr::from_bytes(&name);
            let Ok(st) = nix::sys::stat::fstatat(Some(self.raw()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            let stale = now.saturating_sub(st.st_mtime) > LEFTOVER_AGE_SECS;
            if st.st_mode & libc::S_IFMT == libc::S_IFREG
                && pid != me
                && (stale || !pid_alive(pid))
                && self.unlink(name).is_ok()
            {
                n += 1;
            }
        }
        n
    }
}

/// How long a temporary file of a run whose pid is alive is left alone: past this its pid
/// was given to another process (or the run hangs).
const LEFTOVER_AGE_SECS: i64 = 24 * 3600;

/// Whether the process `pid` is alive (for cleaning temporary files of crashed runs).
pub fn pid_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: the temporary names of this and older versions are recognised, with their
    /// pid; mailmover's own files and lock files are not temporary.
    #[test]
    fn temporary_names_and_their_pids() {
        let ours = temp_name(OsStr::new("Sent"));
        assert_eq!(temp_pid(ours.as_bytes()), Some(std::process::id() as i32));
        let ours = ours.to_str().unwrap();
        assert!(ours.starts_with(".Sent.mailmover-") && ours.ends_with(".lock"));
        for (name, pid) in [
            (".Sent.mailmover-12.tmp", Some(12)),
            (".mailmover-cache.mailmover-7.tmp.lock", Some(7)),
            (".dovecot-keywords.mailmover-9", Some(9)),
            (".mailmover-source-cache.44", Some(44)),
            (".INBOX.mailmover-state", None),
            (".mailmover.lock", None),
            (".Sent.mailmover.lock", None),
            ("Sent.mailmover-3.tmp", None),
            (".mailmover-4", None),
        ] {
            assert_eq!(temp_pid(name.as_bytes()), pid, "{name}");
        }
    }
}
