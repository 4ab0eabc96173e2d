//! HPE's four import modes (`import_ims_data.py`), each a pure function of
//! the archive, the current IMS state (deleted records and jobs included),
//! what `s3-restore-plan` saw of S3 and the options, returning the effects
//! in HPE's phase order and a review of every decision. The phases, and
//! where the modes deliberately differ from HPE: docs/import.md.
//!
//! [`plan`] runs one function per phase, each in its own file: records,
//! deletes, the S3 restore, the data files (`store`), what IMS and S3 must
//! hold after (`expected`), the backup, then the effects in order.
//! Invariant: no I/O here; inputs in, plan out.
mod backup;
mod deletes;
mod effects;
mod expected;
mod preflight;
mod records;
mod review;
mod s3_restore;
mod store;

use crate::archive::ArchiveData;
use crate::effect::{Effect, Kind};
use crate::ims::{Ims, Records};
use crate::restore::S3State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub use imsflow_kinds::ImportMode as Mode;
pub use records::diff;
pub use review::{
    Action, BackupReview, Change, DeleteAction, Expected, ExpectedObject, FieldChange,
    RecordAction, Review, StoreWriteReview,
};

/// The phases, in order, with their descriptions.
pub const PHASES: [(&str, &str); 7] = [
    (
        "preflight",
        "checks before anything changes: archive integrity, buckets, the IMS pod, running jobs, the backup directory",
    ),
    (
        "backup",
        "pre-import backup: the current IMS records (deleted included) and the S3 objects this import deletes or replaces",
    ),
    ("delete", "purges and deletes of IMS records and jobs"),
    ("assert", "IMS holds what the deletes must leave"),
    (
        "s3-restore",
        "upload the artifacts S3 lacks from the archive",
    ),
    ("store-write", "rewrite IMS data files, then restart IMS"),
    (
        "verify",
        "read IMS and S3 back and compare them with the expected state",
    ),
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Go on while IMS jobs run (update, overwrite, soft_overwrite).
    pub ignore_running_jobs: bool,
    /// `created` of the backup's `export.json` (the run's timestamp).
    pub created: String,
}

/// Everything a mode decides from.
pub struct Inputs<'a> {
    pub archive: &'a ArchiveData,
    pub current: &'a Ims,
    pub s3: &'a S3State,
    pub options: &'a Options,
}

#[derive(Debug)]
pub struct Planned {
    pub effects: Vec<Effect>,
    pub review: Review,
}

/// What the phases find besides their results, in the order found.
#[derive(Default)]
struct Notes {
    /// Each refuses the plan; all are listed at once.
    problems: Vec<String>,
    warnings: Vec<String>,
    /// Where this plan deliberately does what HPE's tool does not.
    differences: Vec<String>,
}

/// `add`: "Only add exported IMS resources that do not exist". Exported
/// records whose id is live are left out; the rest are added with their
/// ids; objects the kept records and the link sources need are uploaded
/// when absent. Running jobs do not matter (HPE's bug 1: its backup made
/// `--ignore-running-jobs` necessary; see
/// docs/hpe-import-export.md#bug-1-every-mode-refuses-running-jobs-add-included).
///
/// An imported id that collides with a *deleted* record (HPE's bug 4, see
/// docs/hpe-import-export.md#bug-4-add-keeps-deleted-records-whose-ids-it-imports): the
/// deleted record is purged, as `update` and `soft_overwrite` do. Leaving
/// it would put one id in both the live and the deleted store: an undelete
/// would then overwrite the imported record and its artifacts, and the
/// deleted record's `deleted/` objects would be reachable from nothing once
/// the live one is deleted. Reporting instead would make `add` refuse
/// archives that `update` imports. The purge stands behind the destructive
/// gate, is listed for review, and the backup keeps the record and its
/// objects.
pub fn add(inputs: &Inputs) -> Result<Planned, Vec<String>> {
    plan(Mode::Add, inputs)
}

/// `update`: exported records are added, or replace the current record of
/// the same id wholesale (the review lists the fields that change);
/// nothing is removed. Deleted records whose id is imported are purged
/// first. Objects of every exported record are uploaded when absent.
pub fn update(inputs: &Inputs) -> Result<Planned, Vec<String>> {
    plan(Mode::Update, inputs)
}

/// `overwrite`: for images, public keys and recipes in turn, every deleted
/// record is purged and every live record hard-deleted (images and recipes
/// cascade when their link exists in S3); every job is deleted; IMS must
/// then be empty; the export is written as the whole live store.
pub fn overwrite(inputs: &Inputs) -> Result<Planned, Vec<String>> {
    plan(Mode::Overwrite, inputs)
}

/// `soft_overwrite`: for each kind, deleted records whose id is imported
/// are purged, live records whose id is imported are hard-deleted (cascade
/// as in overwrite), the other live records are soft-deleted (they stay
/// restorable by undelete); every job is deleted; IMS must then hold no
/// live record and no job; the export is written as the whole live store.
pub fn soft_overwrite(inputs: &Inputs) -> Result<Planned, Vec<String>> {
    plan(Mode::SoftOverwrite, inputs)
}

/// One mode, planned, phase by phase. Every problem is listed at once.
pub fn plan(mode: Mode, inputs: &Inputs) -> Result<Planned, Vec<String>> {
    let archive = inputs.archive;
    let mut notes = Notes {
        warnings: archive.warnings.clone(),
        ..Notes::default()
    };
    preflight::preflight(mode, inputs, &mut notes);
    let (imported, records) = records::records(mode, inputs);
    let targets = crate::restore::targets(archive, &imported.images, &imported.recipes);
    let needed: BTreeSet<String> = targets.iter().map(|t| t.url.clone()).collect();
    let deletes = deletes::deletes(mode, inputs, &imported, &needed, &mut notes);
    let s3_plans = s3_restore::s3_restore(inputs, &targets, &deletes, &mut notes);
    if !notes.problems.is_empty() {
        return Err(notes.problems);
    }
    let files = store::data_files(mode, inputs, &imported);
    let restart = !files.writes.is_empty();
    if !archive.ims.has_no_records() && imported.has_no_records() {
        notes.warnings.push("No IMS data to import".into());
    }
    let expected = expected::expected(mode, inputs, files.live, &deletes, &s3_plans);
    let backup_objects = backup::backup_objects(inputs, &deletes, &s3_plans);
    let uploads: Vec<Effect> = s3_plans
        .iter()
        .filter_map(|t| t.upload.clone())
        .map(Effect::S3UploadFromArchive)
        .collect();
    let changes = !deletes.is_empty() || !uploads.is_empty() || !files.writes.is_empty();
    let effects = effects::effects(
        mode,
        inputs,
        effects::Work {
            backup: &backup_objects,
            deletes: &deletes,
            uploads,
            writes: files.writes,
            restart,
            changes,
        },
    );
    let backup_bytes = backup_objects.iter().map(|b| b.head.size).sum();
    let review = Review {
        mode,
        records,
        deletes,
        s3_summary: crate::restore::summarize(&s3_plans),
        s3: s3_plans,
        store_writes: files.reviews,
        restart,
        changes,
        backup: BackupReview {
            written: changes,
            objects: backup_objects,
            bytes: backup_bytes,
        },
        expected,
        warnings: notes.warnings,
        differences_from_hpe: notes.differences,
    };
    Ok(Planned { effects, review })
}

/// The deleted records of a kind as the current state holds them (none
/// for jobs, or when they were not read).
fn deleted_of(current: &Ims, kind: Kind) -> &Records {
    static EMPTY: Records = Records::new();
    current.deleted(kind).unwrap_or(&EMPTY)
}

/// The planner's native tests; tests/it/import.rs runs the same modes end
/// to end against csm-sim and Ceph.
#[cfg(test)]
mod tests;
