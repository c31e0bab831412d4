//! The exit status of every command, as README "Exit status" lists it: one type from the
//! outcome of a run to `main`, never a bare number.

/// How a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything done (verify: everything matches).
    Ok,
    /// Finished, but something failed or differs (each listed).
    Failed,
    /// A usage or configuration error, or the target locked by another run: nothing written.
    Usage,
    /// Stopped at a safe point by this signal.
    Signal(i32),
}

impl Exit {
    /// `Ok` when the run did all it should, else `Failed`.
    pub fn ok_if(done: bool) -> Exit {
        if done { Exit::Ok } else { Exit::Failed }
    }

    /// The number the process exits with: 128 + the signal for a signal, as a shell reports
    /// a process the signal killed.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Signal(sig) => u8::try_from(sig).ok().and_then(|s| s.checked_add(128)).unwrap_or(1),
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!([Exit::Ok, Exit::Failed, Exit::Usage].map(Exit::code), [0, 1, 2]);
        assert_eq!(Exit::Signal(libc::SIGINT).code(), 130);
        assert_eq!(Exit::Signal(libc::SIGTERM).code(), 143);
        assert_eq!(Exit::Signal(-1).code(), 1);
        assert_eq!(Exit::Signal(200).code(), 1);
        assert_eq!((Exit::ok_if(true), Exit::ok_if(false)), (Exit::Ok, Exit::Failed));
    }
}
