//! The one place where WIT types become host types. Everything a plugin
//! returns is converted here; what cannot be converted (an expectation that
//! is not JSON, repeated metadata keys) fails the step as malformed output.
use crate::bindings::types as wit;
use crate::plan::effect::{
    Assertion, DeleteMode, Effect, ImsKind, StoreSummary, TargetState, fingerprint,
};
use std::collections::BTreeMap;

impl From<wit::ImsKind> for ImsKind {
    fn from(k: wit::ImsKind) -> Self {
        match k {
            wit::ImsKind::Image => ImsKind::Image,
            wit::ImsKind::Recipe => ImsKind::Recipe,
            wit::ImsKind::PublicKey => ImsKind::PublicKey,
            wit::ImsKind::Job => ImsKind::Job,
        }
    }
}

/// The fingerprint of a JSON text the plugin says it observed.
fn observed(what: &str, json: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("{what}: `expect-json` is not JSON ({e})"))?;
    Ok(fingerprint(&value))
}

pub fn effect(e: wit::Effect) -> Result<Effect, String> {
    Ok(match e {
        wit::Effect::ArchiveAddObject(a) => {
            let expect = a.expect.ok_or_else(|| {
                format!(
                    "archive-add-object of s3://{}/{} has no `expect` (size and ETag are required)",
                    a.source.bucket, a.source.key
                )
            })?;
            Effect::ArchiveAddObject {
                bucket: a.source.bucket,
                key: a.source.key,
                path: a.path,
                size: expect.size,
                etag: expect.etag,
            }
        }
        wit::Effect::ArchiveAddJson(a) => Effect::ArchiveAddJson {
            path: a.path,
            json: a.json,
        },
        wit::Effect::ArchiveAddIndex(a) => Effect::ArchiveAddIndex {
            path: a.path,
            json: a.json,
            entries_at: a.entries_at,
        },
        wit::Effect::S3UploadFromArchive(u) => {
            let mut metadata = BTreeMap::new();
            for (k, v) in u.metadata {
                if metadata.insert(k.clone(), v).is_some() {
                    return Err(format!(
                        "s3-upload-from-archive of `{}` repeats metadata key `{k}`",
                        u.path
                    ));
                }
            }
            Effect::S3UploadFromArchive {
                path: u.path,
                bucket: u.target.bucket,
                key: u.target.key,
                size: u.size,
                sha256: u.sha256,
                content_type: u.content_type,
                metadata,
                part_size: u.part_size,
                etag: u.etag,
                precondition: match u.precondition {
                    wit::TargetState::Absent => TargetState::Absent,
                    wit::TargetState::Etag(etag) => TargetState::Etag { etag },
                },
            }
        }
        wit::Effect::ImsDelete(d) => Effect::ImsDelete {
            fingerprint: observed(&format!("ims-delete of {}", d.id), &d.expect_json)?,
            ims_kind: d.kind.into(),
            id: d.id,
            name: d.name,
            delete: match d.mode {
                wit::ImsDeleteMode::Soft => DeleteMode::Soft,
                wit::ImsDeleteMode::Hard(cascade) => DeleteMode::Hard { cascade },
                wit::ImsDeleteMode::Purge => DeleteMode::Purge,
            },
        },
        wit::Effect::ImsStoreWrite(w) => Effect::ImsStoreWrite {
            fingerprint: crate::plan::effect::records_fingerprint(
                &serde_json::from_str(&w.expect_json)
                    .map_err(|e| format!("ims-store-write: `expect-json` is not JSON ({e})"))?,
            ),
            ims_kind: w.kind.into(),
            deleted: w.deleted,
            records_json: w.records_json,
            summary: StoreSummary {
                added: w.summary.added,
                replaced: w.summary.replaced,
                removed: w.summary.removed,
            },
        },
        wit::Effect::ImsRestart => Effect::ImsRestart,
        wit::Effect::Assert(wit::Assertion::ImsEmpty(a)) => Effect::Assert {
            assertion: Assertion::ImsEmpty {
                live: a.live,
                deleted: a.deleted,
                jobs: a.jobs,
            },
        },
        wit::Effect::Assert(wit::Assertion::ImportEndState) => Effect::Assert {
            assertion: Assertion::ImportEndState,
        },
        wit::Effect::Phase(p) => Effect::Phase {
            name: p.name,
            description: p.description,
        },
    })
}

/// Host-side errors as the plugin sees them.
impl From<crate::s3::S3Error> for wit::HostError {
    fn from(e: crate::s3::S3Error) -> Self {
        use crate::s3::S3Error;
        match e {
            S3Error::NotFound(what) => wit::HostError::NotFound(what),
            S3Error::TooLarge { max, .. } => wit::HostError::TooLarge(max),
            other => wit::HostError::Failed(other.to_string()),
        }
    }
}

impl From<crate::archive::ArchiveError> for wit::HostError {
    fn from(e: crate::archive::ArchiveError) -> Self {
        use crate::archive::ArchiveError;
        match e {
            ArchiveError::NoMember(path) => wit::HostError::NotFound(path),
            ArchiveError::TooLarge { max, .. } => wit::HostError::TooLarge(max),
            other => wit::HostError::Failed(other.to_string()),
        }
    }
}

impl From<crate::backends::BackendError> for wit::HostError {
    fn from(e: crate::backends::BackendError) -> Self {
        use crate::backends::BackendError;
        match e {
            BackendError::Denied(why) => wit::HostError::Denied(why),
            BackendError::NotFound(what) => wit::HostError::NotFound(what),
            BackendError::TooLarge(max) => wit::HostError::TooLarge(max),
            other => wit::HostError::Failed(other.to_string()),
        }
    }
}

pub fn object_head(h: crate::s3::ObjectHead) -> wit::ObjectHead {
    wit::ObjectHead {
        size: h.size,
        etag: h.etag,
        content_type: h.content_type,
        metadata: h.metadata,
        last_modified: h.last_modified,
        accept_ranges: h.accept_ranges,
    }
}

pub fn object_entry(e: crate::s3::ObjectEntry) -> wit::ObjectEntry {
    wit::ObjectEntry {
        key: e.key,
        size: e.size,
        etag: e.etag,
        last_modified: e.last_modified,
        storage_class: e.storage_class,
        owner_id: e.owner_id,
        owner_name: e.owner_name,
    }
}
