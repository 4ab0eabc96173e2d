//! Test-only pause points of an apply (`test_hooks`): the apply stops at an
//! exact point of an exact effect and waits, so that a test can kill it or
//! change the world there. Without the `test-hooks` feature there are none.
use crate::cancel::Cancel;
use crate::test_hooks;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Before the effect's `started` record.
    Before,
    /// Its `started` record is durable; nothing done yet.
    Started,
    /// A multipart upload is open (uploads only).
    Uploading,
    /// Executed; its `done` record is not written yet.
    Executed,
}

/// Where the apply stops and waits, from
/// `<effect index>:<before|started|uploading|executed>`.
pub fn point() -> Option<(usize, Point)> {
    let spec = test_hooks::pause_at()?;
    let (index, point) = spec.split_once(':')?;
    let point = match point {
        "before" => Point::Before,
        "started" => Point::Started,
        "uploading" => Point::Uploading,
        "executed" => Point::Executed,
        _ => return None,
    };
    Some((index.parse().ok()?, point))
}

/// Says it paused, for the test that waits on it.
pub fn announce(index: usize, point: Point) {
    test_hooks::announce_pause(&format!("{index}:{point:?}"));
}

/// Announces the pause and waits; true when a cancellation ended it, false
/// when the test removed the pause file.
pub async fn wait(index: usize, point: Point, cancel: &Cancel) -> bool {
    announce(index, point);
    let file = test_hooks::pause_file();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return true,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if file.as_ref().is_some_and(|f| !f.exists()) {
            return false;
        }
    }
}

/// Blocks (a thread, not a task) until cancelled: the pause inside a
/// multipart upload's callback.
pub fn block_until_cancelled(index: usize, point: Point, cancel: &Cancel) {
    announce(index, point);
    while !cancel.is_cancelled() {
        std::thread::sleep(Duration::from_millis(20));
    }
}
