//! The progress line on a terminal (stderr): folders done of all and the current one, messages
//! done (of all, once every folder's listing gave its count), bytes, rate and time left.
//!
//! Time left is shown only once every folder was opened (before, the total is not known and
//! any estimate is wrong), and only after a few seconds of measuring; it is the bytes left at
//! the average rate since the start, which a burst of cached files does not swing. The line
//! is cleared at the end, and by the signal handler when a second Ctrl-C ends the run at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::{Event, Recorder};

/// Seconds of measuring before a time left is shown.
const SETTLE: Duration = Duration::from_secs(3);
/// How often the line is redrawn (also while the run waits, e.g. for a lock).
const EVERY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct State {
    folders_total: u64,
    folders_opened: u64,
    folders_done: u64,
    current: String,
    messages: u64,
    messages_total: u64,
    /// A folder was opened whose message count is not known before it is read (an mbox).
    uncounted: bool,
    bytes: u64,
    bytes_total: u64,
}

pub struct Progress {
    bar: indicatif::ProgressBar,
    state: Arc<Mutex<State>>,
}

fn human(b: u64) -> String {
    indicatif::BinaryBytes(b).to_string()
}

impl Progress {
    /// A progress line on stderr when it is a terminal; `None` otherwise.
    pub fn on_terminal(verb: &'static str) -> Option<Progress> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let p = Progress::drawn_on(verb, indicatif::ProgressDrawTarget::stderr_with_hz(5));
        crate::interrupt::clear_line_at_exit(true);
        Some(p)
    }

    fn drawn_on(verb: &'static str, target: indicatif::ProgressDrawTarget) -> Progress {
        let bar = indicatif::ProgressBar::with_draw_target(None, target);
        let state = Arc::new(Mutex::new(State::default()));
        let start = Instant::now();
        let shown = state.clone();
        // The line is made from the state at each draw: a steady tick redraws it.
        let style = indicatif::ProgressStyle::with_template("{line}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .with_key("line", move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                if let Ok(s) = shown.lock() {
                    let _ = w.write_str(&line(verb, start, &s));
                }
            });
        bar.set_style(style);
        Progress { bar, state }
    }

    /// Removes the line (the run's summary follows).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        crate::interrupt::clear_line_at_exit(false);
    }
}

/// The progress line for `s`: `verb` says what is done ("synced", "verified"), the run
/// started at `start`.
fn line(verb: &'static str, start: Instant, s: &State) -> String {
    let elapsed = start.elapsed();
    let messages = if s.uncounted || s.messages_total == 0 {
        format!("{} messages", s.messages)
    } else {
        format!("{}/{} messages", s.messages, s.messages_total)
    };
    let rate = s.bytes as f64 / elapsed.as_secs_f64().max(1e-3);
    let all_opened = s.folders_total > 0 && s.folders_opened >= s.folders_total;
    let eta = if all_opened && elapsed >= SETTLE && s.bytes > 0 {
        let left = s.bytes_total.saturating_sub(s.bytes) as f64 / rate.max(1.0);
        format!(", {} left", indicatif::HumanDuration(Duration::from_secs_f64(left)))
    } else {
        String::new()
    };
    let current =
        if s.current.is_empty() { String::new() } else { format!(" ({})", crate::folder::sanitize(&s.current)) };
    format!(
        "{} folders {}/{}{current} | {messages} | {}/{} | {}/s{eta}",
        verb,
        s.folders_done,
        s.folders_total,
        human(s.bytes),
        human(s.bytes_total),
        human(rate as u64)
    )
}

impl Recorder for Progress {
    fn record(&self, e: Event) {
        let Ok(mut s) = self.state.lock() else { return };
        // A folder begun or done is drawn at once (a run of small folders is over between two
        // ticks); messages are drawn by the steady tick.
        let discovered = matches!(e, Event::Discovered { .. });
        let now = discovered || matches!(e, Event::FolderDone { .. });
        match e {
            Event::Folders { total } => s.folders_total += total,
            Event::Discovered { folder, bytes, messages } => {
                s.folders_opened += 1;
                s.current = folder.as_str().to_string();
                s.bytes_total += bytes;
                match messages {
                    Some(n) => s.messages_total += n,
                    None => s.uncounted = true,
                }
            }
            Event::Progress { bytes } => {
                s.messages += 1;
                s.bytes += bytes;
            }
            Event::FolderDone { .. } => s.folders_done += 1,
            _ => {}
        }
        let first = discovered && s.folders_opened == 1;
        drop(s);
        if first {
            // Drawn from the first folder on (before, there is nothing to show), then kept
            // fresh by a steady tick, also while the run waits.
            self.bar.enable_steady_tick(EVERY);
        }
        if now {
            // Drawn here, not left to the ticker's thread (which may not have run yet): a tick
            // does nothing while a steady tick is on, setting the (unused) message draws.
            self.bar.set_message("");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_where_the_run_is() {
        let start = Instant::now() - Duration::from_secs(10);
        let show = |s: &State| line("synced", start, s);
        let s = State {
            folders_total: 3,
            folders_opened: 2,
            folders_done: 1,
            current: "Archive/2019".into(),
            messages: 10,
            messages_total: 40,
            bytes: 10 << 20,
            bytes_total: 40 << 20,
            ..State::default()
        };
        let l = show(&s);
        assert!(l.starts_with("synced folders 1/3 (Archive/2019) | 10/40 messages | 10.00 MiB/40.00 MiB | "), "{l}");
        assert!(!l.contains("left"), "no time left before every folder was opened: {l}");
        let all = State { folders_opened: 3, ..s };
        let l = show(&all);
        // 10 MiB in 10 s: 30 MiB left is about 30 s.
        assert!(l.ends_with(", 30 seconds left") || l.ends_with(", 29 seconds left"), "{l}");
        let mbox = State { uncounted: true, ..all };
        assert!(show(&mbox).contains("| 10 messages |"), "no total while an mbox is uncounted");
    }

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if let Ok(mut t) = self.0.lock() {
                t.push_str(s);
                t.push('\n');
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A folder begun or done is on the screen at once, not at the next steady tick: a run of
    /// small folders is over before that tick.
    #[test]
    fn each_folder_is_drawn_as_it_comes() {
        let screen = Screen::default();
        let p = Progress::drawn_on("inspected", indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())));
        p.record(Event::Folders { total: 2 });
        for (i, name) in ["A", "B"].into_iter().enumerate() {
            let folder = crate::folder::FolderName::parse(name).unwrap();
            p.record(Event::Discovered { folder: folder.clone(), bytes: 10, messages: Some(1) });
            p.record(Event::FolderDone { folder });
            let shown = screen.0.lock().unwrap().clone();
            assert!(shown.contains(&format!("inspected folders {i}/2 ({name})")), "{shown}");
            assert!(shown.contains(&format!("inspected folders {}/2 ({name})", i + 1)), "{shown}");
        }
        p.finish();
    }
}
