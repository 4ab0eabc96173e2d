//! The S3 upload executor: puts an input-archive member back into S3, read
//! straight from its byte range in the tar (never extracted), with the
//! content type, metadata and part size the export recorded. Up to
//! `UPLOAD_CONCURRENCY` uploads are in flight, sharing one PUT budget; a
//! multipart upload's id is journalled when it opens, and an interrupted one
//! is aborted.
use super::Status;
use super::batch::{PRECHECK_CONCURRENCY, UPLOAD_CONCURRENCY, WINDOW};
use super::confirm::Dispute;
use super::executor::{
    Applied, Executor, Failed, Failure, Fut, Prechecks, RolledBack, World, disputes_of,
};
use super::pause::{self, Point};
use super::run::Run;
use super::store::PodCache;
use crate::archive::ArchiveReader;
use crate::backends::Backends;
use crate::journal::{Event, History, Observed};
use crate::plan::PlannedEffect;
use crate::plan::effect::{Effect, TargetState};
use crate::s3::S3Store;
use futures::StreamExt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// `precheck` and `check` in one: whether the upload is still to do (the
/// target is as planned), already done (the target holds the bytes the
/// upload would put there), or stale (anything else; never overwritten).
async fn precheck(s3: &S3Store, input: Option<&ArchiveReader>, effect: &Effect) -> Status {
    let Effect::S3UploadFromArchive {
        path,
        bucket,
        key,
        size,
        etag,
        precondition,
        ..
    } = effect
    else {
        return Status::Ready;
    };
    let url = format!("s3://{bucket}/{key}");
    match input.and_then(|a| a.member(path)) {
        None => return Status::Stale(format!("the input archive has no member `{path}`")),
        Some(m) if m.size != *size => {
            return Status::Stale(format!(
                "archive member `{path}` has {} bytes, the plan says {size}",
                m.size
            ));
        }
        Some(_) => {}
    }
    let head = match s3.head(bucket, key).await {
        Ok(h) => h,
        Err(e) => return Status::Stale(format!("{url}: cannot HEAD it: {e}")),
    };
    if let (Some(h), Some(want)) = (&head, etag)
        && h.etag == *want
        && h.size == *size
    {
        return Status::Done(format!("{url} is already present, identical (ETag {want})"));
    }
    match (precondition, head) {
        (TargetState::Absent, None) => Status::Ready,
        (TargetState::Etag { etag: was }, Some(h)) if h.etag == *was => Status::Ready,
        (TargetState::Absent, Some(h)) => Status::Stale(format!(
            "{url}: planned absent, now exists (ETag {}, {} bytes); it is not overwritten",
            h.etag, h.size
        )),
        (TargetState::Etag { etag: was }, Some(h)) => Status::Stale(format!(
            "{url}: planned to replace ETag {was}, now ETag {} ({} bytes)",
            h.etag, h.size
        )),
        (TargetState::Etag { etag: was }, None) => Status::Stale(format!(
            "{url}: planned to replace ETag {was}, now it does not exist"
        )),
    }
}

/// The archive side of `precheck` alone: the member is there, of the
/// planned size (the target is judged when the upload is reached).
fn precheck_member(input: Option<&ArchiveReader>, effect: &Effect) -> Status {
    let Effect::S3UploadFromArchive { path, size, .. } = effect else {
        return Status::Ready;
    };
    match input.and_then(|a| a.member(path)) {
        None => Status::Stale(format!("the input archive has no member `{path}`")),
        Some(m) if m.size != *size => Status::Stale(format!(
            "archive member `{path}` has {} bytes, the plan says {size}",
            m.size
        )),
        Some(_) => Status::Ready,
    }
}

/// `check` of an upload that was in progress when a run stopped: as
/// `precheck`, and besides, a target that now holds exactly the member's
/// bytes (its ETag recomputed from them) means the upload finished.
async fn check(s3: &S3Store, input: Option<&ArchiveReader>, effect: &Effect) -> Status {
    let status = precheck(s3, input, effect).await;
    let (
        Status::Stale(_),
        Effect::S3UploadFromArchive {
            path,
            bucket,
            key,
            size,
            part_size,
            ..
        },
        Some(input),
    ) = (&status, effect, input)
    else {
        return status;
    };
    let Ok(Some(head)) = s3.head(bucket, key).await else {
        return status;
    };
    if head.size != *size {
        return status;
    }
    let Some(mut recompute) = crate::etag::EtagCheck::new(&head.etag, *size, *part_size) else {
        return status;
    };
    let reader = input.clone();
    let member = path.clone();
    let same = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        let (_, mut bytes) = reader.open_member(&member).map_err(std::io::Error::other)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut bytes, &mut buf)?;
            if n == 0 {
                break;
            }
            recompute.update(&buf[..n]);
        }
        Ok(recompute.finish().is_ok())
    })
    .await;
    match same {
        Ok(Ok(true)) => Status::Done(format!(
            "s3://{bucket}/{key} holds the member's bytes (ETag {} recomputed from them): the upload had finished",
            head.etag
        )),
        _ => status,
    }
}

/// Uploads the member. Returns what was observed, and a note when the new
/// ETag differs from the exported one (manifests, IMS `link.etag` and BOS
/// boot sets quote it). `on_opened` receives a multipart upload's id.
async fn apply(
    s3: &S3Store,
    input: &ArchiveReader,
    effect: &Effect,
    on_opened: &(dyn Fn(&str) + Send + Sync),
    requests: &std::sync::Arc<tokio::sync::Semaphore>,
) -> Result<(Observed, Option<String>), Failure> {
    let Effect::S3UploadFromArchive {
        path,
        bucket,
        key,
        size,
        sha256,
        content_type,
        metadata,
        part_size,
        etag,
        ..
    } = effect
    else {
        return Err(Failure::Refused(format!(
            "`{}` is not an upload",
            effect.kind()
        )));
    };
    let (file, offset, len) = input.locate(path)?;
    if len != *size {
        return Err(Failure::Stale(format!(
            "archive member `{path}` has {len} bytes, the plan says {size}"
        )));
    }
    // sha256 is checked while streaming: a mismatch cuts the PUT short or
    // aborts the multipart upload, so a corrupt member never becomes visible.
    let job = crate::s3::UploadJob::new(
        (bucket.as_str(), key.as_str()),
        (file.as_path(), offset, len),
        *part_size,
        content_type.as_deref(),
        metadata,
        sha256.as_deref(),
    );
    let new_etag = s3.upload(&job, requests, Some(on_opened)).await?;
    // Ceph RGW may answer CompleteMultipartUpload without an ETag: read it.
    let new_etag = if new_etag.is_empty() {
        match s3.head(bucket, key).await {
            Ok(Some(h)) => h.etag,
            _ => new_etag,
        }
    } else {
        new_etag
    };
    let note = match etag {
        Some(want) if *want != new_etag => Some(format!(
            "s3://{bucket}/{key} was uploaded with ETag {new_etag}, but the archive recorded {want}; references that quote the old ETag will not match"
        )),
        _ => None,
    };
    let observed = Observed {
        bytes: Some(*size),
        etag: Some(new_etag),
        sha256: sha256.clone(),
        http_status: Some(200),
        ..Observed::default()
    };
    Ok((observed, note))
}

/// What an upload observed, and a note worth reading.
type UploadDone = (Observed, Option<String>);

/// The upload executor (`s3-upload-from-archive`).
pub struct Upload;

impl Executor for Upload {
    fn name(&self) -> &'static str {
        "upload"
    }

    fn writes_bucket(&self) -> bool {
        true
    }

    fn precheck<'a>(&'a self, cx: &'a Prechecks<'a>, i: usize) -> Fut<'a, Status> {
        let effect = &cx.plan.effects[i].effect;
        Box::pin(async move {
            match cx.backends.s3.as_deref() {
                Some(s3) if cx.in_doubt(i) => check(s3, cx.input, effect).await,
                // Behind a delete still to do: the target is judged when reached.
                Some(_) if cx.behind_pending[i] => match precheck_member(cx.input, effect) {
                    Status::Ready => Status::Deferred,
                    other => other,
                },
                Some(s3) => precheck(s3, cx.input, effect).await,
                None => Status::Stale("no S3 endpoint is configured".into()),
            }
        })
    }

    /// Uploads are independent reads: checked concurrently.
    fn check<'a>(
        &'a self,
        world: World<'a>,
        _pods: &'a mut PodCache,
        done: &'a [usize],
    ) -> Fut<'a, Vec<Dispute>> {
        Box::pin(disputes_of(done, move |i| {
            dispute(world.backends, world.history, &world.plan.effects[i])
        }))
    }

    /// Multipart uploads that a killed run left open are aborted.
    fn roll_back<'a>(
        &'a self,
        world: World<'a>,
    ) -> Fut<'a, Result<Vec<RolledBack>, super::ApplyError>> {
        Box::pin(async move {
            let mut undone = Vec::new();
            for (id, (bucket, key, upload_id)) in &world.history.open_uploads {
                let Some(s3) = world.backends.s3.as_deref() else {
                    continue;
                };
                let what = match s3.abort_multipart(bucket, key, upload_id).await {
                    Ok(()) => format!(
                        "aborted the multipart upload {upload_id} of s3://{bucket}/{key} that the stopped run left open"
                    ),
                    Err(e) => {
                        return Err(super::ApplyError::Refused(vec![format!(
                            "effect {id}: cannot abort the multipart upload {upload_id} of s3://{bucket}/{key} that the stopped run left open: {e}"
                        )]));
                    }
                };
                undone.push(RolledBack {
                    id: Some(id.clone()),
                    decision: format!("{id}: {what}"),
                    what,
                });
            }
            Ok(undone)
        })
    }

    /// A run of deferred uploads is checked at once.
    fn reached<'a, 'r>(&'a self, run: &'a mut Run<'r>, i: usize) -> Fut<'a, Status>
    where
        'r: 'a,
    {
        Box::pin(async move {
            let effects = &run.plan.effects;
            let n = run.statuses[i..]
                .iter()
                .zip(&effects[i..])
                .take_while(|(s, e)| {
                    **s == Status::Deferred
                        && matches!(e.effect, Effect::S3UploadFromArchive { .. })
                })
                .count()
                .min(WINDOW);
            let (s3, input) = (run.backends.s3.as_deref(), run.input);
            let checked: Vec<Status> = futures::stream::iter(i..i + n)
                .map(|k| async move {
                    match s3 {
                        Some(s3) => precheck(s3, input, &effects[k].effect).await,
                        None => Status::Stale("no S3 endpoint is configured".into()),
                    }
                })
                .buffered(PRECHECK_CONCURRENCY)
                .collect()
                .await;
            let mut checked = checked.into_iter();
            let first = checked.next().unwrap_or(Status::Ready);
            for (k, status) in checked.enumerate() {
                run.statuses[i + 1 + k] = status;
            }
            first
        })
    }

    fn batchable(&self, _effect: &Effect) -> bool {
        true
    }

    /// Several uploads in flight; results in plan order. What finished
    /// before a failure is done.
    fn apply<'a, 'r>(
        &'a self,
        run: &'a mut Run<'r>,
        batch: Range<usize>,
    ) -> Fut<'a, Result<Applied, Failed>>
    where
        'r: 'a,
    {
        Box::pin(async move {
            let span = run.span(batch.start);
            let start = batch.start;
            let shared: &Run<'r> = run;
            let mut results: Vec<(usize, Result<UploadDone, Failure>)> =
                futures::stream::iter(batch.clone())
                    .map(|i| async move { (i - start, upload_one(shared, i).await) })
                    .buffer_unordered(UPLOAD_CONCURRENCY)
                    .collect()
                    .instrument(span)
                    .await;
            results.sort_by_key(|(k, _)| *k);
            let effects = &run.plan.effects[batch];
            let mut observed = vec![Observed::default(); effects.len()];
            let mut succeeded = vec![false; effects.len()];
            let mut ended = None;
            for (k, result) in results {
                match result {
                    Ok((o, note)) => {
                        if let Some(note) = note {
                            tracing::warn!("{note}");
                            run.report.notes.push(note);
                        }
                        run.opts
                            .observer
                            .bytes(effects[k].effect.size().unwrap_or(0));
                        observed[k] = o;
                        succeeded[k] = true;
                    }
                    Err(end) => {
                        ended.get_or_insert((k, end));
                    }
                }
            }
            let Some((at, failure)) = ended else {
                return Ok(Applied::Done(observed));
            };
            // What finished is done; then the first that did not.
            for ((e, o), _) in effects
                .iter()
                .zip(observed)
                .zip(&succeeded)
                .filter(|(_, ok)| **ok)
            {
                run.count(&e.effect);
                run.recorder.append(Event::Done {
                    id: e.id.clone(),
                    observed: o,
                    skipped: None,
                })?;
                run.report.applied += 1;
            }
            Err(Failed {
                at,
                failure,
                discarded: None,
            })
        })
    }
}

/// One upload, rolled back (its multipart upload aborted) if the run is
/// interrupted while it is in flight.
async fn upload_one(run: &Run<'_>, i: usize) -> Result<UploadDone, Failure> {
    let e = &run.plan.effects[i];
    let (Some(s3), Some(input)) = (run.backends.s3.as_deref(), run.input) else {
        return Err(Failure::Refused(
            "uploads need S3 and an input archive".into(),
        ));
    };
    let Effect::S3UploadFromArchive { bucket, key, .. } = &e.effect else {
        unreachable!("called for uploads only")
    };
    let opened: Arc<Mutex<Option<String>>> = Arc::default();
    let on_opened = {
        let (opened, recorder, cancel) = (
            opened.clone(),
            run.recorder.clone(),
            run.opts.cancel.clone(),
        );
        let (id, bucket, key) = (e.id.clone(), bucket.clone(), key.clone());
        let pause = run.pause == Some((i, Point::Uploading));
        move |upload_id: &str| {
            *opened.lock().unwrap_or_else(|p| p.into_inner()) = Some(upload_id.to_string());
            if let Err(err) = recorder.durable(Event::MultipartOpened {
                id: id.clone(),
                bucket: bucket.clone(),
                key: key.clone(),
                upload_id: upload_id.to_string(),
            }) {
                tracing::error!("{err}");
            }
            if pause {
                pause::block_until_cancelled(i, Point::Uploading, &cancel);
            }
        }
    };
    let span = run.span(i);
    let result = tokio::select! {
        biased;
        _ = run.opts.cancel.cancelled() => None,
        r = apply(s3, input, &e.effect, &on_opened, &run.requests).instrument(span) => Some(r),
    };
    match result {
        Some(done) => done,
        None => {
            let open = opened.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(upload_id) = open {
                let what = match s3.abort_multipart(bucket, key, &upload_id).await {
                    Ok(()) => {
                        format!("aborted the multipart upload {upload_id} of s3://{bucket}/{key}")
                    }
                    Err(err) => format!(
                        "could not abort the multipart upload {upload_id} of s3://{bucket}/{key} ({err}); resume aborts it"
                    ),
                };
                run.recorder.durable(Event::RolledBack {
                    id: e.id.clone(),
                    what,
                })?;
            }
            Err(Failure::Interrupted)
        }
    }
}

/// `check` of a done upload: the target holds an object of the uploaded
/// size, with the ETag the upload left (journalled) or the exported one.
async fn dispute(backends: &Backends, history: &History, e: &PlannedEffect) -> Option<Dispute> {
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
