//! Effects as plain data: the WIT `effect` variant without the bindings, so
//! that the pure functions and their tests need no Wasm. `wit.rs` (feature
//! `pdk`) converts them.
use imsflow_kinds::EffectKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Image,
    PublicKey,
    Recipe,
    Job,
}

impl Kind {
    /// The three kinds an export carries records of, in HPE's order.
    pub const RECORDS: [Kind; 3] = [Kind::Image, Kind::PublicKey, Kind::Recipe];

    /// The key in `ims_data` and in `ims-fetch`'s output.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Image => "images",
            Kind::PublicKey => "public_keys",
            Kind::Recipe => "recipes",
            Kind::Job => "jobs",
        }
    }

    /// For messages: `image`, `public key`, ...
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::PublicKey => "public key",
            Kind::Recipe => "recipe",
            Kind::Job => "job",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum DeleteMode {
    /// v3 DELETE: moves the record to the deleted store (jobs: deleted).
    Soft,
    /// v2 DELETE; `cascade` also deletes the record's S3 artifacts.
    Hard { cascade: bool },
    /// v3 DELETE of a deleted record, with its S3 artifacts.
    Purge,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "expect")]
pub enum Precondition {
    Absent,
    Etag { etag: String },
}

/// An upload of an archive member to S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The archive member (`relpath`).
    pub path: String,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub part_size: Option<u64>,
    /// The ETag the object had when exported.
    pub etag: Option<String>,
    pub precondition: Precondition,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSummary {
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Effect {
    Phase {
        name: String,
        description: String,
    },
    ArchiveAddObject {
        bucket: String,
        key: String,
        path: String,
        size: u64,
        etag: String,
    },
    ArchiveAddIndex {
        path: String,
        json: String,
        entries_at: String,
    },
    S3UploadFromArchive(Upload),
    ImsDelete {
        ims_kind: Kind,
        id: String,
        name: String,
        delete: DeleteMode,
        expect_json: String,
    },
    /// IMS must hold no live records / deleted records / jobs.
    AssertImsEmpty {
        live: bool,
        deleted: bool,
        jobs: bool,
    },
    ImsStoreWrite {
        ims_kind: Kind,
        records_json: String,
        expect_json: String,
        summary: StoreSummary,
    },
    ImsRestart,
    /// The verify phase: the host reads IMS and S3 back and compares them
    /// with the end state the plan's effects make (no payload: the host
    /// derives it from the plan).
    VerifyEndState,
}

impl Effect {
    /// The effect kind as `grants.effects` names it.
    pub fn kind(&self) -> EffectKind {
        match self {
            Effect::Phase { .. } => EffectKind::Phase,
            Effect::ArchiveAddObject { .. } => EffectKind::ArchiveAddObject,
            Effect::ArchiveAddIndex { .. } => EffectKind::ArchiveAddIndex,
            Effect::S3UploadFromArchive(_) => EffectKind::S3UploadFromArchive,
            Effect::ImsDelete { .. } => EffectKind::ImsDelete,
            Effect::AssertImsEmpty { .. } | Effect::VerifyEndState => EffectKind::Assert,
            Effect::ImsStoreWrite { .. } => EffectKind::ImsStoreWrite,
            Effect::ImsRestart => EffectKind::ImsRestart,
        }
    }
}
