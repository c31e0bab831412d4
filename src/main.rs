//! mailmover's binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    // A closed pipe (`mailmover inspect | head`) ends the run quietly.
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: the default action runs no code of ours, and no other thread exists yet.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let opts = match mailmover::cli::parse() {
        Ok(o) => o,
        Err(exit) => return exit.into(),
    };
    let json = opts.json();
    match mailmover::cli::run(opts) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("mailmover: {}", mailmover::folder::sanitize(&e.to_string()));
            // A script reading stdout gets one object, never an empty string.
            if json {
                println!("{}", mailmover::contract::error_line(&e));
            }
            e.exit_code().into()
        }
    }
}
