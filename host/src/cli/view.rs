//! The terminal view of a run: the observer (`imsflow::observe`) drawn as
//! progress bars on stderr (steps while planning, bytes while applying).
//! Prompts and log lines suspend the bar, so none is left under them.
//! `--json` and `--quiet` get `Silent`; indicatif hides bars by itself when
//! stderr is not a terminal.
use imsflow::observe::{Observer, Silent};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The one terminal view of this process, so that log lines (`LogWriter`)
/// can suspend the bar that a run draws.
static TERMINAL: Terminal = Terminal {
    bar: Mutex::new(None),
};

/// The observer for this invocation.
pub fn observer(json: bool, quiet: bool) -> Arc<dyn Observer> {
    if json || quiet {
        Arc::new(Silent)
    } else {
        Arc::new(&TERMINAL)
    }
}

pub struct Terminal {
    bar: Mutex<Option<ProgressBar>>,
}

impl Terminal {
    fn bar(&self) -> Option<ProgressBar> {
        self.bar.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn show(&self, bar: ProgressBar, template: &str, tick: Duration) {
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(tick);
        if let Some(old) = self
            .bar
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(bar)
        {
            old.finish_and_clear();
        }
    }

    fn clear(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for &'static Terminal {
    fn planning(&self, steps: usize) {
        self.show(
            ProgressBar::new(steps as u64),
            "{spinner} steps {pos}/{len} {elapsed}",
            Duration::from_millis(120),
        );
    }

    fn step_finished(&self, _id: &str) {
        if let Some(bar) = self.bar() {
            bar.inc(1);
        }
    }

    fn planned(&self) {
        self.clear();
    }

    fn applying(&self, bytes: u64) {
        self.show(
            ProgressBar::new(bytes),
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            Duration::from_millis(250),
        );
    }

    fn bytes(&self, n: u64) {
        if let Some(bar) = self.bar() {
            bar.inc(n);
        }
    }

    fn status(&self, line: &str) {
        if let Some(bar) = self.bar() {
            bar.set_message(line.to_string());
        }
    }

    fn applied(&self) {
        self.clear();
    }

    fn suspend(&self, f: &mut dyn FnMut()) {
        match self.bar() {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

/// stderr for the log: each line is written with the bar out of its way.
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut result = Ok(0);
        (&TERMINAL).suspend(&mut || result = std::io::stderr().write(buf));
        result
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
