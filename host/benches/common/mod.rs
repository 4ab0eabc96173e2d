//! Shared by the benchmarks.
#![allow(dead_code)]
use std::path::PathBuf;
use std::time::Duration;

/// The directory of the test plugins' components, built with the stock
/// plugins by build.rs before any bench runs.
pub fn test_plugins() -> PathBuf {
    PathBuf::from(env!("IMSFLOW_WASM_DIR"))
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
