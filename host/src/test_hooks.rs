//! Test hooks: environment variables that the integration tests and benches
//! set on the `imsflow` binary they spawn, to fail an apply at one effect,
//! pause it at an exact point, or turn off the journal's fsync. This module
//! is the only place that reads them.
//!
//! They exist only with the `test-hooks` cargo feature, which `cargo test`
//! and `cargo bench` turn on (host/Cargo.toml: a dev-dependency of the crate
//! on itself). A normal or release build compiles the no-op versions at the
//! bottom instead, so nothing in the environment can turn off the journal's
//! fsync or fail an apply in production, and the binary holds no
//! `IMSFLOW_TEST_` string (`.ci/run` checks that with `strings`).

#[cfg(feature = "test-hooks")]
mod hooks {
    use std::path::PathBuf;

    /// Apply fails just before the effect with this id, as if its executor
    /// had failed (tests of half-applied plans and resume).
    const FAIL_AT_EFFECT: &str = "IMSFLOW_TEST_FAIL_AT_EFFECT";
    /// `<effect index>:<before|started|uploading|executed>`: the apply stops
    /// at that exact point and waits (for SIGKILL, or a signal that cancels
    /// it).
    const PAUSE_AT: &str = "IMSFLOW_TEST_PAUSE_AT";
    /// Written when the apply gets to the pause point; removing it lets the
    /// apply go on (not at `uploading`).
    const PAUSE_FILE: &str = "IMSFLOW_TEST_PAUSE_FILE";
    /// Journal writes are not fsynced (the journal benchmark's baseline).
    const JOURNAL_NO_FSYNC: &str = "IMSFLOW_TEST_JOURNAL_NO_FSYNC";

    pub fn fail_at_effect() -> Option<String> {
        std::env::var(FAIL_AT_EFFECT).ok()
    }

    pub fn pause_at() -> Option<String> {
        std::env::var(PAUSE_AT).ok()
    }

    pub fn pause_file() -> Option<PathBuf> {
        std::env::var_os(PAUSE_FILE).map(PathBuf::from)
    }

    /// Says the apply paused at `what`, for the test that waits on it.
    pub fn announce_pause(what: &str) {
        if let Some(file) = pause_file() {
            let _ = std::fs::write(file, what);
        }
        eprintln!("IMSFLOW_TEST_PAUSED {what}");
    }

    pub fn journal_fsync() -> bool {
        std::env::var_os(JOURNAL_NO_FSYNC).is_none()
    }
}

/// Without the feature: no hook is set, and nothing is read.
#[cfg(not(feature = "test-hooks"))]
mod hooks {
    use std::path::PathBuf;

    pub fn fail_at_effect() -> Option<String> {
        None
    }

    pub fn pause_at() -> Option<String> {
        None
    }

    pub fn pause_file() -> Option<PathBuf> {
        None
    }

    pub fn announce_pause(_what: &str) {}

    pub fn journal_fsync() -> bool {
        true
    }
}

pub(crate) use hooks::*;
