//! The review: everything a mode decided, as the strategy plugin's output
//! (the host renders it for the admin and keeps it in `--json`). The wire
//! names are the contract with the host's `cli/review.rs`.
use super::Mode;
use crate::backup::BackupObject;
use crate::effect::{DeleteMode, Kind, StoreSummary};
use crate::restore::{Summary, TargetPlan};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// How a field of a record changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// A field of a record that an import changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub change: Change,
    pub from: Option<Value>,
    pub to: Option<Value>,
}

/// What the import does with one exported record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not live: added with its id.
    Add,
    /// `add`: live already, left as it is.
    Skip,
    /// `update`: live and identical.
    Keep,
    /// Live and replaced wholesale by the exported record.
    Replace,
}

/// One exported record and its action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAction {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    pub action: Action,
    /// For `replace`: the fields that change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<FieldChange>,
}

/// A planned delete of a current record or job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAction {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    pub delete: DeleteMode,
    /// Why (e.g. `its id is imported`).
    pub why: String,
    /// S3 objects it deletes (hard with cascade, purge) or moves under
    /// `deleted/` (soft), as far as they exist.
    pub objects: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreWriteReview {
    pub kind: Kind,
    /// Records in the written file.
    pub count: usize,
    pub summary: StoreSummary,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReview {
    /// Whether the plan writes a backup (not when it changes nothing).
    pub written: bool,
    pub objects: Vec<BackupObject>,
    pub bytes: u64,
}

/// An S3 object as the import must leave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedObject {
    pub url: String,
    pub etag: Option<String>,
    pub size: Option<u64>,
}

/// What IMS and S3 must hold after the import: the verify phase's oracle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// Live ids by kind key (`images`, `public_keys`, `recipes`).
    pub live: BTreeMap<String, Vec<String>>,
    /// Deleted ids by kind key.
    pub deleted: BTreeMap<String, Vec<String>>,
    pub jobs: Vec<String>,
    pub objects: Vec<ExpectedObject>,
}

/// Everything a mode decided: the strategy plugin's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub mode: Mode,
    pub records: Vec<RecordAction>,
    pub deletes: Vec<DeleteAction>,
    pub s3: Vec<TargetPlan>,
    pub s3_summary: Summary,
    pub store_writes: Vec<StoreWriteReview>,
    pub restart: bool,
    /// Whether the plan changes anything (deletes, uploads, data files).
    pub changes: bool,
    pub backup: BackupReview,
    pub expected: Expected,
    pub warnings: Vec<String>,
    pub differences_from_hpe: Vec<String>,
}
