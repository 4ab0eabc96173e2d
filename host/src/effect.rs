//! Effects as the host handles them: plain data converted from the WIT
//! variant, printable as one plan line and serialisable for `--json`.
use crate::bindings::types as wit;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImsKind {
    Image,
    Recipe,
    PublicKey,
    Job,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum DeleteMode {
    Soft,
    Hard { cascade: bool },
    Purge,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Effect {
    ArchiveAddObject {
        bucket: String,
        key: String,
        path: String,
        size: Option<u64>,
        etag: Option<String>,
    },
    ArchiveAddJson {
        path: String,
        json: String,
    },
    ArchiveAddIndex {
        path: String,
        json: String,
        entries_at: String,
    },
    S3UploadFromArchive {
        path: String,
        bucket: String,
        key: String,
        part_size: Option<u64>,
        size: Option<u64>,
    },
    ImsDelete {
        ims_kind: ImsKind,
        id: String,
        delete: DeleteMode,
    },
    ImsStoreWrite {
        ims_kind: ImsKind,
        records_json: String,
    },
    ImsRestart,
}

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

impl From<wit::Effect> for Effect {
    fn from(e: wit::Effect) -> Self {
        match e {
            wit::Effect::ArchiveAddObject(a) => Effect::ArchiveAddObject {
                bucket: a.source.bucket,
                key: a.source.key,
                path: a.path,
                size: a.expect.as_ref().map(|x| x.size),
                etag: a.expect.map(|x| x.etag),
            },
            wit::Effect::ArchiveAddJson(a) => Effect::ArchiveAddJson {
                path: a.path,
                json: a.json,
            },
            wit::Effect::ArchiveAddIndex(a) => Effect::ArchiveAddIndex {
                path: a.path,
                json: a.json,
                entries_at: a.entries_at,
            },
            wit::Effect::S3UploadFromArchive(u) => Effect::S3UploadFromArchive {
                path: u.path,
                bucket: u.target.bucket,
                key: u.target.key,
                part_size: u.part_size,
                size: u.expect.map(|x| x.size),
            },
            wit::Effect::ImsDelete(d) => Effect::ImsDelete {
                ims_kind: d.kind.into(),
                id: d.id,
                delete: match d.mode {
                    wit::ImsDeleteMode::Soft => DeleteMode::Soft,
                    wit::ImsDeleteMode::Hard(cascade) => DeleteMode::Hard { cascade },
                    wit::ImsDeleteMode::Purge => DeleteMode::Purge,
                },
            },
            wit::Effect::ImsStoreWrite(w) => Effect::ImsStoreWrite {
                ims_kind: w.kind.into(),
                records_json: w.records_json,
            },
            wit::Effect::ImsRestart => Effect::ImsRestart,
        }
    }
}

impl Effect {
    /// Short name, e.g. `archive-add-json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::ArchiveAddObject { .. } => "archive-add-object",
            Effect::ArchiveAddJson { .. } => "archive-add-json",
            Effect::ArchiveAddIndex { .. } => "archive-add-index",
            Effect::S3UploadFromArchive { .. } => "s3-upload-from-archive",
            Effect::ImsDelete { .. } => "ims-delete",
            Effect::ImsStoreWrite { .. } => "ims-store-write",
            Effect::ImsRestart => "ims-restart",
        }
    }

    /// Bytes the effect moves, when known.
    pub fn size(&self) -> Option<u64> {
        match self {
            Effect::ArchiveAddObject { size, .. } | Effect::S3UploadFromArchive { size, .. } => {
                *size
            }
            Effect::ArchiveAddJson { json, .. } | Effect::ArchiveAddIndex { json, .. } => {
                Some(json.len() as u64)
            }
            Effect::ImsStoreWrite { records_json, .. } => Some(records_json.len() as u64),
            _ => None,
        }
    }

    /// The archive member the effect writes, if any.
    pub fn archive_path(&self) -> Option<&str> {
        match self {
            Effect::ArchiveAddObject { path, .. }
            | Effect::ArchiveAddJson { path, .. }
            | Effect::ArchiveAddIndex { path, .. } => Some(path),
            _ => None,
        }
    }

    /// One plan line: what, where, size.
    pub fn line(&self) -> String {
        let size = self
            .size()
            .map(|s| format!(" ({})", crate::units::bytes(s)))
            .unwrap_or_default();
        let what = match self {
            Effect::ArchiveAddObject {
                bucket, key, path, ..
            } => format!("add s3://{bucket}/{key} to archive as {path}"),
            Effect::ArchiveAddJson { path, .. } => {
                format!("add JSON document to archive as {path}")
            }
            Effect::ArchiveAddIndex { path, .. } => {
                format!("add index (with checksums) to archive as {path}")
            }
            Effect::S3UploadFromArchive {
                path, bucket, key, ..
            } => format!("upload archive member {path} to s3://{bucket}/{key}"),
            Effect::ImsDelete {
                ims_kind,
                id,
                delete,
            } => {
                let how = match delete {
                    DeleteMode::Soft => "soft-delete".to_string(),
                    DeleteMode::Hard { cascade } => format!("hard-delete (cascade={cascade})"),
                    DeleteMode::Purge => "purge deleted".to_string(),
                };
                format!(
                    "{how} IMS {} {id}",
                    serde_json::to_value(ims_kind).unwrap().as_str().unwrap()
                )
            }
            Effect::ImsStoreWrite { ims_kind, .. } => {
                format!(
                    "write IMS {} data file",
                    serde_json::to_value(ims_kind).unwrap().as_str().unwrap()
                )
            }
            Effect::ImsRestart => "restart IMS".to_string(),
        };
        format!("{:<24} {what}{size}", self.kind())
    }
}
