//! What the command line prints, and how it ends: one exit-code table for every command,
//! `--format` for the commands a machine reads, colour only for people, and a closed pipe
//! (`regate log show ID | head -1`) ending the output quietly instead of a panic, the exit
//! code still the command's.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit codes, the same for every command (`regate --help` and the README show this table).
pub const EXIT_TABLE: &str = "\
Exit codes (every command):
  0  allowed or approved; verified; passed
  1  denied or rejected; an integrity finding; a failed policy test
  2  usage or operational error (bad arguments or input, AWS or network failure)
  3  expired; a re-evaluation that does not match the log
  4  still pending (request status: waiting for approval)";

pub const OK: u8 = 0;
pub const NO: u8 = 1;
pub const ERROR: u8 = 2;
pub const EXPIRED: u8 = 3;
pub const PENDING: u8 = 4;

pub fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document on standard output.
    Json,
}

/// Set once standard output's reader has gone: nothing more is written, and the command ends
/// with the exit code of its result, not a panic (`regate request start --wait | head -1`
/// still fails the pipeline when the change is rejected).
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to standard output. A reader that went away (a closed pipe)
/// is not an error: the output stops quietly; any other write error is an operational error
/// (2).
pub fn line(text: std::fmt::Arguments<'_>) {
    write(format_args!("{text}\n"));
}

/// Writes `text` to standard output, as [`line`] does without the newline.
pub fn write(text: std::fmt::Arguments<'_>) {
    if READER_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_fmt(text).and_then(|()| out.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            READER_GONE.store(true, Ordering::Relaxed);
            return;
        }
        // Standard error may be gone too; there is nothing else to say it on.
        let _ = writeln!(std::io::stderr(), "error: writing the output: {error}");
        std::process::exit(i32::from(ERROR));
    }
}

/// `value` as pretty JSON on standard output.
pub fn json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => line(format_args!("{text}")),
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: writing JSON: {error}");
            std::process::exit(i32::from(ERROR));
        }
    }
}

/// Whether to colour standard output: only on a terminal, and never when `NO_COLOR` is set to
/// anything but empty (no-color.org).
pub fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

/// `text` in green (`good`) or red, when [`colour`] says so.
pub fn paint(text: &str, good: bool) -> String {
    if !colour() {
        return text.to_string();
    }
    let code = if good { 32 } else { 31 };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Prints a line through [`line`].
#[macro_export]
macro_rules! outln {
    () => { $crate::output::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}

/// Prints through [`write`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}
