//! The S3 upload executor: puts an input-archive member back into S3, read
//! straight from its byte range in the tar (never extracted), with the
//! content type, metadata and part size the export recorded.
use super::Status;
use crate::archive::ArchiveReader;
use crate::journal::Observed;
use crate::plan::effect::{Effect, TargetState};
use crate::s3::S3Store;

/// `precheck` and `check` in one: whether the upload is still to do (the
/// target is as planned), already done (the target holds the bytes the
/// upload would put there), or stale (anything else; never overwritten).
pub async fn precheck(s3: &S3Store, input: Option<&ArchiveReader>, effect: &Effect) -> Status {
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
pub fn precheck_member(input: Option<&ArchiveReader>, effect: &Effect) -> Status {
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
pub async fn check(s3: &S3Store, input: Option<&ArchiveReader>, effect: &Effect) -> Status {
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
pub async fn apply(
    s3: &S3Store,
    input: &ArchiveReader,
    effect: &Effect,
    on_opened: &(dyn Fn(&str) + Send + Sync),
    requests: &std::sync::Arc<tokio::sync::Semaphore>,
) -> Result<(Observed, Option<String>), String> {
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
        return Err(format!("`{}` is not an upload", effect.kind()));
    };
    let (file, offset, len) = input.locate(path).map_err(|e| e.to_string())?;
    if len != *size {
        return Err(format!(
            "archive member `{path}` has {len} bytes, the plan says {size}"
        ));
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
    let new_etag = s3
        .upload(&job, requests, Some(on_opened))
        .await
        .map_err(|e| e.to_string())?;
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
