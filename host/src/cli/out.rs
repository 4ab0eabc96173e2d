//! Standard output, for people and for scripts. A reader that goes away
//! (`imsflow plugins list | head -1`) is not an error: what is left to print
//! is dropped and the command ends as it would have, with its own exit code,
//! as ripgrep does. `println!` would panic instead (exit 101).
//!
//! The command is not stopped: an import whose output pipe closes still runs
//! to its end and its journal, rather than being cut off between effects.
//! Any other write error (a full disk under `> file`) is kept and reported
//! when the command ends ([`finish`]).

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: Mutex<Option<io::Error>> = Mutex::new(None);

/// Writes to stdout (through [`out!`] and [`outln!`]).
pub fn write(args: std::fmt::Arguments<'_>) {
    emit(|stdout| stdout.write_fmt(args));
}

/// Writes bytes already rendered (a completion script).
pub fn bytes(data: &[u8]) {
    emit(|stdout| stdout.write_all(data));
}

/// One write and its flush, unless stdout is already closed; a failure
/// closes it for the rest of the command.
fn emit(put: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = io::stdout().lock();
    if let Err(e) = put(&mut stdout).and_then(|()| stdout.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert(e);
        }
    }
}

/// The write error that is not a closed pipe, if stdout had one.
pub fn finish() -> Option<io::Error> {
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// `print!` to stdout, quiet on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!($($arg)*)) };
}

/// `println!` to stdout, quiet on a closed pipe.
macro_rules! outln {
    () => { $crate::cli::out::write(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
