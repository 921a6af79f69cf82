//! What the CLI prints, and how it behaves when the reader goes away.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has closed (`odradek cluster status
//! | head -1`) fails with EPIPE, and `println!` panics on it. Every command prints through
//! [`say!`] instead: the first failed write to stdout marks it closed, later lines are dropped,
//! and long-running commands ([`closed`]) stop producing output that nobody reads. The command
//! then ends as it would have (exit 0), with no message: the reader had what it wanted. Lines
//! for the operator (`note!`) go to stderr and a failure to write them is ignored.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed: nobody reads it any more.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints one line to stdout, or nothing once stdout is closed; `false` when it is.
pub fn line(args: std::fmt::Arguments<'_>) -> bool {
    if closed() {
        return false;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{args}").and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

/// Prints one line to stderr; a failure to write it is ignored (there is nowhere to report it).
pub fn warn_line(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Whether stdout's reader has gone away (a write to it failed).
pub fn closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// `println!` that never panics: see the module comment. Evaluates to `false` once stdout is
/// closed.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::warn_line(format_args!($($arg)*))
    };
}

pub(crate) use {note, say};
