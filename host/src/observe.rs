//! What a run tells whoever watches it, as terraform's `views` hooks do: the
//! engine, the executors and the transfer report events here and never draw
//! or print themselves. The CLI implements it with progress bars for a
//! terminal; everything else (`--json`, `--quiet`, tests, benches) uses
//! `Silent`.
//!
//! Invariant: `engine/`, `apply/`, `transfer.rs` and the archive code never
//! use `indicatif`; they tell the observer.
use std::sync::Arc;

/// Events of a run, in the order they happen. Every method does nothing by
/// default, so an observer implements only what it shows.
pub trait Observer: Send + Sync {
    /// The plan phase starts: `steps` steps will run.
    fn planning(&self, _steps: usize) {}
    /// A step ended (done, skipped or failed).
    fn step_finished(&self, _id: &str) {}
    /// The plan phase ended.
    fn planned(&self) {}
    /// An apply starts: `bytes` are to be moved by its effects.
    fn applying(&self, _bytes: u64) {}
    /// An effect (or a batch of them, by its first) starts.
    fn effect_started(&self, _id: &str, _kind: &str) {}
    /// An effect took effect.
    fn effect_finished(&self, _id: &str, _kind: &str) {}
    /// A phase marker was reached.
    fn phase(&self, _name: &str) {}
    /// Bytes moved (streamed into an archive, uploaded).
    fn bytes(&self, _n: u64) {}
    /// What a long effect is doing now ("object 3/10", "IMS rollout: ...").
    fn status(&self, _line: &str) {}
    /// The apply ended (finished, stopped, failed or interrupted).
    fn applied(&self) {}
    /// Runs `f`, which prompts a person or prints lines, with every bar out
    /// of its way.
    fn suspend(&self, f: &mut dyn FnMut()) {
        f()
    }
}

/// Shows nothing.
pub struct Silent;

impl Observer for Silent {}

/// The observer of a run that shows nothing.
pub fn silent() -> Arc<dyn Observer> {
    Arc::new(Silent)
}
