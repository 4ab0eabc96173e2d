//! Before the journal is believed: each effect it records as done is asked
//! of the world with the reads its executor's `check` makes (an upload's
//! HEAD, an IMS delete's GET, the archive's member table, the pod's data
//! file, IMS read back after a restart; never a bulk transfer). A forged or
//! outdated `done` (the archive removed since, an object deleted) must not
//! make a run say "already finished" while the world says otherwise.
//!
//! Where the world disagrees, the effect is done again when its plan still
//! holds (its ordinary precheck decides, after this), or the apply is
//! refused, naming why. The end-state verification is never taken from the
//! journal: it reads only, so it runs again. Assertions that IMS is empty
//! and phase markers describe a moment that later effects end: the journal
//! is their only witness.
use super::{Status, archive, ims, store};
use crate::archive::ArchiveReader;
use crate::backends::Backends;
use crate::journal::History;
use crate::plan::effect::Effect;
use crate::plan::{Plan, PlannedEffect};
use futures::StreamExt;

/// Effects the journal records as done and the world does not show done.
#[derive(Debug)]
pub struct Dispute {
    /// The effects (the archive's are disputed together).
    pub ids: Vec<String>,
    /// What the world shows instead.
    pub why: String,
    /// Doing it again is not safe: the apply is refused.
    pub refuse: bool,
}

impl Dispute {
    fn redo(ids: Vec<String>, why: String) -> Dispute {
        Dispute {
            ids,
            why,
            refuse: false,
        }
    }

    fn refuse(ids: Vec<String>, why: String) -> Dispute {
        Dispute {
            ids,
            why,
            refuse: true,
        }
    }

    /// The report line: which effect, what the journal says, what the world says.
    pub fn line(&self) -> String {
        let what = match self.ids.as_slice() {
            [one] => format!("effect {one}: the journal records it as done"),
            [first, .., last] => format!(
                "effects {first} to {last} ({}): the journal records them as done",
                self.ids.len()
            ),
            [] => "the journal records it as done".into(),
        };
        let then = if self.refuse {
            "not done again"
        } else {
            "doing it again"
        };
        format!("{what}, but {}; {then}", self.why)
    }
}

/// The disputes of `history`'s done effects, in plan order.
pub async fn disputes(
    plan: &Plan,
    backends: &Backends,
    history: &History,
    pods: &mut store::PodCache,
) -> Vec<Dispute> {
    let mut found: Vec<Dispute> = archive_dispute(plan, history).into_iter().collect();
    let done = |e: &&PlannedEffect| history.done.contains_key(&e.id);
    // Uploads and deletes are independent reads: checked concurrently.
    let independent: Vec<Option<Dispute>> = futures::stream::iter(plan.effects.iter().filter(done))
        .map(|e| async move {
            match &e.effect {
                Effect::S3UploadFromArchive { .. } => upload(backends, history, e).await,
                Effect::ImsDelete { .. } => delete(plan, backends, e).await,
                _ => None,
            }
        })
        .buffered(super::PRECHECK_CONCURRENCY)
        .collect()
        .await;
    found.extend(independent.into_iter().flatten());
    // Data-file writes and the restart share the pod: one at a time.
    let restart_done = plan
        .effects
        .iter()
        .any(|e| matches!(e.effect, Effect::ImsRestart) && history.done.contains_key(&e.id));
    for e in plan.effects.iter().filter(done) {
        let dispute = match &e.effect {
            Effect::ImsStoreWrite { .. } => {
                store_write(plan, backends, pods, e, restart_done).await
            }
            Effect::ImsRestart => match store::restarted(backends, plan).await {
                Ok(true) => None,
                Ok(false) => Some(Dispute::redo(
                    vec![e.id.clone()],
                    "IMS does not serve the records that were written".into(),
                )),
                Err(why) => Some(Dispute::refuse(vec![e.id.clone()], why)),
            },
            _ => None,
        };
        found.extend(dispute);
    }
    let position = |d: &Dispute| {
        plan.effects
            .iter()
            .position(|e| d.ids.first() == Some(&e.id))
    };
    found.sort_by_key(position);
    found
}

/// What is believed once the world was asked: the journal's done effects
/// without the disputed ones (done again) and without the verification
/// (run again).
pub fn believed(plan: &Plan, mut history: History, disputes: &[Dispute]) -> History {
    for id in disputes.iter().filter(|d| !d.refuse).flat_map(|d| &d.ids) {
        history.done.remove(id);
        history.skipped.remove(id);
    }
    for e in plan.effects.iter().filter(|e| e.effect.is_verification()) {
        history.done.remove(&e.id);
        history.skipped.remove(&e.id);
    }
    history
}

/// The archive effects took effect together, with the renamed archive: it
/// must exist and hold each member the journal records, with its size.
fn archive_dispute(plan: &Plan, history: &History) -> Option<Dispute> {
    let target = plan.target.as_ref()?;
    let done: Vec<&PlannedEffect> = plan
        .effects
        .iter()
        .filter(|e| e.effect.archive_path().is_some() && history.done.contains_key(&e.id))
        .collect();
    let ids = || -> Vec<String> { done.iter().map(|e| e.id.clone()).collect() };
    if done.is_empty() {
        return None;
    }
    let path = target.final_path();
    if archive::done(target).is_none() {
        return Some(Dispute::redo(
            ids(),
            format!("the archive {} does not exist", path.display()),
        ));
    }
    let not_ours = |what: String| {
        Some(Dispute::refuse(
            ids(),
            format!(
                "{what}: it is not the archive this run wrote; move it away, then apply again to write it again"
            ),
        ))
    };
    let reader = match ArchiveReader::open(&path) {
        Ok(r) => r,
        Err(e) => {
            return not_ours(format!(
                "the archive {} cannot be read ({e})",
                path.display()
            ));
        }
    };
    for e in &done {
        let member = e.effect.archive_path().unwrap_or_default();
        let recorded = history.done.get(&e.id).and_then(|o| o.bytes);
        match (reader.member(member), recorded) {
            (None, _) => {
                return not_ours(format!(
                    "the archive {} has no member `{member}`",
                    path.display()
                ));
            }
            (Some(m), Some(bytes)) if m.size != bytes => {
                return not_ours(format!(
                    "the member `{member}` of {} has {} bytes, the journal recorded {bytes}",
                    path.display(),
                    m.size
                ));
            }
            _ => {}
        }
    }
    None
}

/// The target holds an object of the uploaded size, with the ETag the
/// upload left (journalled) or the exported one.
async fn upload(backends: &Backends, history: &History, e: &PlannedEffect) -> Option<Dispute> {
    let Effect::S3UploadFromArchive {
        bucket,
        key,
        size,
        etag,
        ..
    } = &e.effect
    else {
        return None;
    };
    let ids = vec![e.id.clone()];
    let Some(s3) = backends.s3.as_deref() else {
        return Some(Dispute::refuse(
            ids,
            "no S3 endpoint is configured to check it".into(),
        ));
    };
    let recorded = history.done.get(&e.id).and_then(|o| o.etag.as_ref());
    let expected: Vec<&String> = recorded.into_iter().chain(etag).collect();
    let url = format!("s3://{bucket}/{key}");
    match s3.head(bucket, key).await {
        Ok(Some(h)) if h.size == *size && (expected.is_empty() || expected.contains(&&h.etag)) => {
            None
        }
        Ok(Some(h)) => Some(Dispute::redo(
            ids,
            format!(
                "{url} has {} bytes and ETag {}, not the {size} bytes uploaded",
                h.size, h.etag
            ),
        )),
        Ok(None) => Some(Dispute::redo(ids, format!("{url} does not exist"))),
        Err(err) => Some(Dispute::redo(
            ids,
            format!("{url} cannot be checked: {err}"),
        )),
    }
}

/// The record is gone from where the delete took it (unless a data-file
/// write of the plan puts it back, which that write's check covers).
async fn delete(plan: &Plan, backends: &Backends, e: &PlannedEffect) -> Option<Dispute> {
    let Effect::ImsDelete { ims_kind, id, .. } = &e.effect else {
        return None;
    };
    if crate::postcheck::rewritten(plan, *ims_kind, id) {
        return None;
    }
    let ids = vec![e.id.clone()];
    match ims::precheck(backends, &e.effect).await {
        Status::Done(_) | Status::Deferred => None,
        Status::Ready => Some(Dispute::redo(
            ids,
            format!("IMS still has {} {id}", ims_kind.name()),
        )),
        Status::Stale(why) => Some(Dispute::refuse(ids, why)),
    }
}

/// IMS serves the written records (after the restart), or the pod's data
/// file holds them (before it). Done again only when IMS still holds what
/// the plan was made against; anything else is a change nobody planned.
async fn store_write(
    plan: &Plan,
    backends: &Backends,
    pods: &mut store::PodCache,
    e: &PlannedEffect,
    restart_done: bool,
) -> Option<Dispute> {
    let ids = vec![e.id.clone()];
    // After the restart, IMS serves what was written (with what an additive
    // write kept, which the plan's fingerprints cannot know).
    if restart_done && store::restarted(backends, plan).await.unwrap_or(false) {
        return None;
    }
    if !restart_done {
        match store::written(backends, plan, pods, &e.effect).await {
            Ok(true) => return None,
            Ok(false) => {}
            Err(why) => {
                return Some(Dispute::refuse(
                    ids,
                    format!("its data file cannot be read: {why}"),
                ));
            }
        }
    }
    match ims::store_precheck(backends, &e.effect).await {
        Status::Done(_) | Status::Deferred => None,
        Status::Ready => Some(Dispute::redo(
            ids,
            "IMS holds the records as they were before the import".into(),
        )),
        Status::Stale(why) => Some(Dispute::refuse(
            ids,
            format!(
                "{why}; IMS holds records that neither the plan wrote nor it was made against: check them, then make a new plan"
            ),
        )),
    }
}
