//! Batching: how many effects go at once, and how many requests are in
//! flight. A run of object effects of one kind (archive objects, uploads)
//! streams concurrently; everything else goes one by one.
use super::Status;
use super::executor::Executor;
use crate::plan::PlannedEffect;

/// Effects announced (made durable as "may have started") at once, and the
/// largest batch: one fsync per window instead of two per effect (see
/// `journal`).
pub const WINDOW: usize = 64;

/// Prechecks (HEADs, GETs) in flight at once.
pub const PRECHECK_CONCURRENCY: usize = 16;

/// Uploads in flight at once.
pub const UPLOAD_CONCURRENCY: usize = 8;

/// The length of the batch that starts at effect `i`: the effects before
/// `limit` (a gate or an injected fault) of the same kind, not done, if its
/// executor batches them; else one.
pub fn length(
    executor: &dyn Executor,
    effects: &[PlannedEffect],
    statuses: &[Status],
    i: usize,
    limit: usize,
) -> usize {
    if !executor.batchable(&effects[i].effect) {
        return 1;
    }
    effects[i..limit]
        .iter()
        .zip(&statuses[i..limit])
        .take_while(|(e, s)| {
            e.effect.kind() == effects[i].effect.kind() && !matches!(s, Status::Done(_))
        })
        .count()
        .min(WINDOW)
}
