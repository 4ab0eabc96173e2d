//! The archive executor: every archive effect of a plan goes into one output
//! archive, written under `<name>.partial` and renamed when the last archive
//! effect is in. So archive effects take effect together or not at all:
//! `check` is "the final archive exists" (and holds each member the journal
//! records), `precheck` HEADs each source object.
use super::Status;
use super::confirm::Dispute;
use super::executor::{Applied, Executor, Failed, Failure, Fut, Prechecks, RolledBack, World};
use super::run::Run;
use super::store::PodCache;
use crate::archive::{ArchiveReader, ArchiveWriter};
use crate::journal::{Event, History, Observed};
use crate::plan::effect::Effect;
use crate::plan::{OutputTarget, Plan, PlannedEffect};
use crate::s3::S3Store;
use crate::transfer::{self, Archived, ObjectJob, TransferConfig};
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::Instrument;

/// `check`: the archive the plan names exists, so an earlier apply of this
/// plan finished it (its name carries the plan's timestamp and suffix).
pub fn done(target: &OutputTarget) -> Option<String> {
    let path = target.final_path();
    path.exists().then(|| {
        format!(
            "the archive {} already exists: an earlier apply of this plan wrote it",
            path.display()
        )
    })
}

/// Removes the partial archive of `target` left by an interrupted or killed
/// apply of the same plan (the name carries the plan's timestamp and suffix).
pub fn remove_partial(target: &OutputTarget) -> Option<PathBuf> {
    let partial = crate::archive::partial_path_of(&target.final_path());
    crate::archive::remove_partial_at(&partial).then_some(partial)
}

pub fn has_partial(target: Option<&OutputTarget>) -> bool {
    target.is_some_and(|t| {
        std::fs::symlink_metadata(crate::archive::partial_path_of(&t.final_path())).is_ok()
    })
}

/// `precheck` of one archive effect: its source object is still as planned.
pub async fn precheck(s3: Option<&S3Store>, effect: &Effect) -> Status {
    let Effect::ArchiveAddObject {
        bucket,
        key,
        size,
        etag,
        ..
    } = effect
    else {
        return Status::Ready;
    };
    let Some(s3) = s3 else {
        return Status::Stale("no S3 endpoint is configured".into());
    };
    match s3.head(bucket, key).await {
        Ok(Some(h)) if h.size == *size && (etag.is_empty() || h.etag == *etag) => Status::Ready,
        Ok(Some(h)) => Status::Stale(format!(
            "s3://{bucket}/{key}: planned ETag {etag} ({size} bytes), now ETag {} ({} bytes)",
            h.etag, h.size
        )),
        Ok(None) => Status::Stale(format!(
            "s3://{bucket}/{key}: planned ETag {etag} ({size} bytes), now it does not exist"
        )),
        Err(e) => Status::Stale(format!("s3://{bucket}/{key}: cannot HEAD it: {e}")),
    }
}

/// The output archive being written by one apply.
pub struct ArchiveSession {
    writer: ArchiveWriter,
    archived: HashMap<String, Archived>,
    /// Archive effects written so far (discarded if the session is dropped).
    pub written: usize,
}

impl ArchiveSession {
    pub fn open(target: &OutputTarget, mtime: u64) -> Result<ArchiveSession, Failure> {
        let writer =
            ArchiveWriter::create(&target.dir, &target.name, target.format)?.with_mtime(mtime);
        Ok(ArchiveSession {
            writer,
            archived: HashMap::new(),
            written: 0,
        })
    }

    /// Streams a run of object effects into the archive, concurrently and in
    /// order. On failure the session is gone (the partial archive with it),
    /// and the error says which effect of the batch failed.
    pub async fn add_objects(
        self,
        s3: Arc<S3Store>,
        batch: &[PlannedEffect],
        observer: Arc<dyn crate::observe::Observer>,
        cancel: &crate::cancel::Cancel,
    ) -> Result<ArchiveSession, (usize, Failure)> {
        let jobs = batch
            .iter()
            .filter_map(|p| match &p.effect {
                Effect::ArchiveAddObject {
                    bucket,
                    key,
                    path,
                    size,
                    etag,
                } => Some(ObjectJob {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    path: path.clone(),
                    size: *size,
                    etag: Some(etag.clone()).filter(|e| !e.is_empty()),
                }),
                _ => None,
            })
            .collect();
        let ArchiveSession {
            writer,
            mut archived,
            written,
        } = self;
        let span = tracing::info_span!("effects", first = %batch[0].id, count = batch.len());
        let config = TransferConfig {
            cancel: cancel.clone(),
            ..TransferConfig::default()
        };
        match transfer::stream_into(s3, jobs, writer, observer, &config)
            .instrument(span)
            .await
        {
            Ok((writer, done)) => {
                archived.extend(done.into_iter().map(|a| (a.path.clone(), a)));
                Ok(ArchiveSession {
                    writer,
                    archived,
                    written: written + batch.len(),
                })
            }
            Err(e) => {
                let at = batch
                    .iter()
                    .position(|p| p.effect.archive_path() == Some(&e.path))
                    .unwrap_or(0);
                Err((at, Failure::Failed(e.message)))
            }
        }
    }

    /// What was archived for a member path, for the journal.
    pub fn observed(&self, path: &str) -> Observed {
        self.archived
            .get(path)
            .map(|a| Observed {
                bytes: Some(a.size),
                sha256: Some(a.sha256.clone()),
                ..Observed::default()
            })
            .unwrap_or_default()
    }

    /// A JSON document, or the index completed with the archived checksums.
    pub fn add_document(&mut self, effect: &Effect) -> Result<Observed, Failure> {
        let (path, doc) = match effect {
            Effect::ArchiveAddJson { path, json } => (path, json.clone()),
            Effect::ArchiveAddIndex {
                path,
                json,
                entries_at,
            } => (path, complete_index(json, entries_at, &self.archived)?),
            other => {
                return Err(Failure::Refused(format!(
                    "`{}` is not an archive document",
                    other.kind()
                )));
            }
        };
        crate::archive::add_bytes(&mut self.writer, path, doc.as_bytes())?;
        self.written += 1;
        use sha2::Digest;
        Ok(Observed {
            bytes: Some(doc.len() as u64),
            sha256: Some(hex::encode(sha2::Sha256::digest(doc.as_bytes()))),
            ..Observed::default()
        })
    }

    pub fn finish(self) -> Result<PathBuf, Failure> {
        self.writer
            .finish()
            .map_err(|e| Failure::Failed(format!("finishing the archive: {e}")))
    }
}

/// Adds `sha256`, `size` and the `part_size` of a multipart ETag (see
/// `Archived::part_size`) to each entry under
/// `entries_at` whose `relpath` is a member this run archived.
fn complete_index(
    json: &str,
    entries_at: &str,
    archived: &HashMap<String, Archived>,
) -> Result<String, Failure> {
    let mut doc: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Failure::Failed(format!("the index is not JSON: {e}")))?;
    if let Some(entries) = doc.pointer_mut(entries_at) {
        let entries: Vec<&mut serde_json::Value> = match entries {
            serde_json::Value::Object(m) => m.values_mut().collect(),
            serde_json::Value::Array(a) => a.iter_mut().collect(),
            _ => Vec::new(),
        };
        for entry in entries {
            let Some(done) = entry
                .get("relpath")
                .and_then(|r| r.as_str())
                .and_then(|r| archived.get(r))
            else {
                continue;
            };
            let (sha256, size) = (done.sha256.clone(), done.size);
            entry["sha256"] = sha256.into();
            entry["size"] = size.into();
            // Only a part size known to be the one is recorded (see `etag`).
            if let Some(map) = entry.as_object_mut() {
                match done.part_size {
                    Some(part) => map.insert("part_size".into(), part.into()),
                    None => map.remove("part_size"),
                };
            }
        }
    }
    serde_json::to_string(&doc).map_err(|e| Failure::Failed(e.to_string()))
}

/// The output archive an apply is writing.
#[derive(Default)]
pub struct OpenArchive {
    session: Option<ArchiveSession>,
    /// A session was opened and not finished.
    open: bool,
}

impl OpenArchive {
    /// Archive effects written into it so far.
    pub fn written(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.written)
    }

    /// Drops an unfinished archive, which removes it.
    pub fn close(&mut self) {
        self.session = None;
    }
}

/// Archive members carry the plan's time, so that an archive written again
/// on resume is byte for byte the one an uninterrupted run writes.
fn archive_mtime(timestamp: &str) -> u64 {
    chrono::NaiveDateTime::parse_from_str(timestamp, "%Y%m%d%H%M%S%.f")
        .ok()
        .and_then(|t| t.and_local_timezone(chrono::Local).earliest())
        .map_or(0, |t| t.timestamp().max(0) as u64)
}

/// The last archive effect of a plan: the archive is finished after it.
fn last_archive_effect(plan: &Plan) -> Option<usize> {
    plan.effects
        .iter()
        .rposition(|e| e.effect.archive_path().is_some())
}

fn first_archive_effect(plan: &Plan) -> Option<&PlannedEffect> {
    plan.effects
        .iter()
        .find(|e| e.effect.archive_path().is_some())
}

/// The archive executor (`archive-add-object`, `archive-add-json`,
/// `archive-add-index`).
pub struct Archive;

impl Executor for Archive {
    fn name(&self) -> &'static str {
        "archive"
    }

    /// The archive's effects took effect together; their sources may have
    /// changed since, which no longer matters. The journal alone does not
    /// make them done: they take effect only with the finished archive.
    fn already_done(&self, cx: &Prechecks<'_>, _i: usize) -> Option<String> {
        cx.plan.target.as_ref().and_then(done)
    }

    fn precheck<'a>(&'a self, cx: &'a Prechecks<'a>, i: usize) -> Fut<'a, Status> {
        Box::pin(precheck(
            cx.backends.s3.as_deref(),
            &cx.plan.effects[i].effect,
        ))
    }

    fn check<'a>(
        &'a self,
        world: World<'a>,
        _pods: &'a mut PodCache,
        _done: &'a [usize],
    ) -> Fut<'a, Vec<Dispute>> {
        Box::pin(async move { dispute(world.plan, world.history).into_iter().collect() })
    }

    fn roll_back<'a>(
        &'a self,
        world: World<'a>,
    ) -> Fut<'a, Result<Vec<RolledBack>, super::ApplyError>> {
        Box::pin(async move {
            let mut undone = Vec::new();
            if let Some(target) = &world.plan.target
                && world.history.applies > 0
                && done(target).is_none()
                && let Some(partial) = remove_partial(target)
            {
                let what = format!(
                    "removed the partial archive {} that the stopped run left; the archive is written again from the start",
                    partial.display()
                );
                undone.push(RolledBack {
                    id: first_archive_effect(world.plan).map(|e| e.id.clone()),
                    what: what.clone(),
                    decision: what,
                });
            }
            Ok(undone)
        })
    }

    /// A run of object effects streams into the archive concurrently.
    fn batchable(&self, effect: &Effect) -> bool {
        matches!(effect, Effect::ArchiveAddObject { .. })
    }

    fn apply<'a, 'r>(
        &'a self,
        run: &'a mut Run<'r>,
        batch: Range<usize>,
    ) -> Fut<'a, Result<Applied, Failed>>
    where
        'r: 'a,
    {
        Box::pin(async move {
            let plan = run.plan;
            let effects = &plan.effects[batch.clone()];
            if run.archive.session.is_none() {
                let target = plan.target.as_ref().ok_or_else(|| {
                    Failure::Refused("archive effects without an output target".into())
                })?;
                let mtime = archive_mtime(&plan.run.timestamp);
                run.archive.session =
                    Some(ArchiveSession::open(target, mtime).map_err(|f| Failed {
                        at: 0,
                        failure: f,
                        discarded: Some(0),
                    })?);
                run.archive.open = true;
            }
            let mut observed = vec![Observed::default(); effects.len()];
            if let Effect::ArchiveAddObject { .. } = &effects[0].effect {
                let open = run.archive.session.take().expect("opened above");
                let discarded = open.written;
                let s3 = run
                    .backends
                    .s3
                    .clone()
                    .ok_or_else(|| Failure::Refused("no S3 endpoint is configured".into()))?;
                match open
                    .add_objects(s3, effects, run.opts.observer.clone(), &run.opts.cancel)
                    .await
                {
                    Ok(next) => {
                        for (o, e) in observed.iter_mut().zip(effects) {
                            *o = next.observed(e.effect.archive_path().unwrap_or_default());
                        }
                        run.archive.session = Some(next);
                    }
                    Err(_) if run.opts.cancel.is_cancelled() => {
                        return Err(Failure::Interrupted.into());
                    }
                    Err((at, failure)) => {
                        return Err(Failed {
                            at,
                            failure,
                            discarded: Some(discarded + at),
                        });
                    }
                }
            } else {
                let span = run.span(batch.start);
                let open = run.archive.session.as_mut().expect("opened above");
                observed[0] = {
                    let _entered = span.enter();
                    open.add_document(&effects[0].effect)?
                };
                run.opts
                    .observer
                    .bytes(effects[0].effect.size().unwrap_or(0));
            }
            Ok(Applied::Done(observed))
        })
    }

    /// After the last archive effect, the archive is finished (renamed).
    fn settle(&self, run: &mut Run<'_>, batch: Range<usize>) -> Result<(), Failed> {
        let Some(last) = last_archive_effect(run.plan).filter(|last| *last < batch.end) else {
            return Ok(());
        };
        let Some(open) = run.archive.session.take() else {
            return Ok(());
        };
        let written = open.written;
        let path = open.finish().map_err(|failure| Failed {
            at: last.saturating_sub(batch.start),
            failure,
            discarded: Some(written),
        })?;
        *run.applied_kinds.entry("archive effects").or_default() += written;
        run.report.archive = Some(path);
        run.archive.open = false;
        Ok(())
    }

    /// Counted as "archive effects" when the archive is finished.
    fn counted_apart(&self) -> bool {
        true
    }

    fn skipped(&self, run: &mut Run<'_>, i: usize) {
        if last_archive_effect(run.plan) == Some(i) {
            run.report.archive = run.plan.target.as_ref().map(|t| t.final_path());
        }
    }

    /// An open archive is dropped, which removes it.
    fn interrupted(&self, run: &mut Run<'_>) -> Option<String> {
        let target = run.plan.target.as_ref();
        let was_open = run.archive.session.is_some() || run.archive.open || has_partial(target);
        run.archive.close();
        let target = target.filter(|_| was_open)?;
        remove_partial(target);
        let partial = crate::archive::partial_path_of(&target.final_path());
        if let Some(first) = first_archive_effect(run.plan) {
            let _ = run.recorder.append(Event::RolledBack {
                id: first.id.clone(),
                what: format!("removed the partial archive {}", partial.display()),
            });
        }
        Some(format!(
            "removed the partial archive {}: its archive effects are written again on resume",
            partial.display()
        ))
    }
}

/// The archive effects took effect together, with the renamed archive: it
/// must exist and hold each member the journal records, with its size.
fn dispute(plan: &Plan, history: &History) -> Option<Dispute> {
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
    if self::done(target).is_none() {
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
