//! The archive executor: every archive effect of a plan goes into one output
//! archive, written under `<name>.partial` and renamed when the last archive
//! effect is in. So archive effects take effect together or not at all:
//! `check` is "the final archive exists", `precheck` HEADs each source object.
use super::Status;
use crate::archive::ArchiveWriter;
use crate::journal::Observed;
use crate::plan::effect::Effect;
use crate::plan::{OutputTarget, PlannedEffect};
use crate::s3::S3Store;
use crate::transfer::{self, Archived, ObjectJob, TransferConfig};
use std::collections::HashMap;
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
    pub fn open(target: &OutputTarget, mtime: u64) -> Result<ArchiveSession, String> {
        let writer = ArchiveWriter::create(&target.dir, &target.name, target.format)
            .map_err(|e| e.to_string())?
            .with_mtime(mtime);
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
        bar: indicatif::ProgressBar,
        cancel: &crate::cancel::Cancel,
    ) -> Result<ArchiveSession, (usize, String)> {
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
        match transfer::stream_into(s3, jobs, writer, bar, &config)
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
                Err((at, e.message))
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
    pub fn add_document(&mut self, effect: &Effect) -> Result<Observed, String> {
        let (path, doc) = match effect {
            Effect::ArchiveAddJson { path, json } => (path, json.clone()),
            Effect::ArchiveAddIndex {
                path,
                json,
                entries_at,
            } => (path, complete_index(json, entries_at, &self.archived)?),
            other => return Err(format!("`{}` is not an archive document", other.kind())),
        };
        crate::archive::add_bytes(&mut self.writer, path, doc.as_bytes())
            .map_err(|e| e.to_string())?;
        self.written += 1;
        use sha2::Digest;
        Ok(Observed {
            bytes: Some(doc.len() as u64),
            sha256: Some(hex::encode(sha2::Sha256::digest(doc.as_bytes()))),
            ..Observed::default()
        })
    }

    pub fn finish(self) -> Result<PathBuf, String> {
        self.writer
            .finish()
            .map_err(|e| format!("finishing the archive: {e}"))
    }
}

/// Adds `sha256`, `size` and the `part_size` of a multipart ETag (see
/// `Archived::part_size`) to each entry under
/// `entries_at` whose `relpath` is a member this run archived.
fn complete_index(
    json: &str,
    entries_at: &str,
    archived: &HashMap<String, Archived>,
) -> Result<String, String> {
    let mut doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the index is not JSON: {e}"))?;
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
    serde_json::to_string(&doc).map_err(|e| e.to_string())
}
