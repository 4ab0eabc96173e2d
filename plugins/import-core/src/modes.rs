//! HPE's four import modes (`import_ims_data.py`, described in
//! docs/hpe-import-export.md#import-modes), each a pure
//! function of the archive, the current IMS state (deleted records and jobs
//! included), what `s3-restore-plan` saw of S3 and the options, returning the
//! effects in HPE's phase order and a review of every decision.
//!
//! Phases, always all seven, each marked by a `phase` effect even when empty
//! (so that a gate `before_phase = "delete"` always lands):
//! `preflight` (the host's checks; no effect), `backup` (the pre-import
//! backup's archive effects), `delete` (purges, hard and soft deletes, jobs),
//! `assert` (overwrite: IMS is empty; soft_overwrite: no live records, no
//! jobs), `s3-restore` (uploads), `store-write` (IMS data files, then the
//! restart) and `verify` (an `assert` of the end state, when anything
//! changes: the host reads IMS and S3 back and compares them with what the
//! plan's effects make them hold).
//!
//! Where this deliberately differs from HPE (each also listed in the
//! review's `differences_from_hpe` when it applies; HPE's bugs are numbered
//! as in docs/hpe-import-export.md#known-bugs-in-hpes-tool):
//! - `add` does not need `--ignore-running-jobs` (HPE's bug 1, see
//!   docs/hpe-import-export.md#bug-1-every-mode-refuses-running-jobs-add-included); the other
//!   modes refuse running jobs without it, as HPE does;
//! - an archive with `s3_data: null` imports its records (HPE's bug 2, see
//!   docs/hpe-import-export.md#bug-2-an-archive-without-s3-data-crashes-the-import);
//! - `add` purges a deleted record whose id it imports (HPE's bug 4, see
//!   [`add`] and docs/hpe-import-export.md#bug-4-add-keeps-deleted-records-whose-ids-it-imports);
//! - an object that exists with another ETag or size is a reported
//!   `conflict` (HPE's bug 5: it keeps it silently, see
//!   docs/hpe-import-export.md#bug-5-an-object-already-under-the-key-is-never-compared); it is still kept;
//! - uploads reproduce the exported ETag (part size) and carry the exported
//!   content type and metadata;
//! - a hard delete does not cascade when that would delete an object the
//!   import needs and the archive cannot restore, nor when every object it
//!   would delete is one the import puts back identically (same ETag and
//!   size): HPE deletes and re-uploads those bytes;
//! - a data file whose records do not change is not rewritten, and IMS is
//!   not restarted when no data file changes (HPE rewrites all three and
//!   restarts whenever it imports any record);
//! - the backup holds the S3 objects the import deletes or replaces, besides
//!   the records.
use crate::archive::ArchiveData;
use crate::backup::{self, BackupObject};
use crate::effect::{DeleteMode, Effect, Kind, StoreSummary};
use crate::ims::{Ims, Records, created, link_path, name, running_jobs};
use crate::restore::{self, S3State, Status, Summary, TargetPlan};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Add,
    Update,
    Overwrite,
    SoftOverwrite,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Add => "add",
            Mode::Update => "update",
            Mode::Overwrite => "overwrite",
            Mode::SoftOverwrite => "soft_overwrite",
        }
    }

    /// The effect kinds the mode's plugin may emit (every mode ends with
    /// the end-state verification, an `assert`).
    pub fn effect_kinds(self) -> &'static [&'static str] {
        &[
            "phase",
            "archive-add-object",
            "archive-add-index",
            "ims-delete",
            "assert",
            "s3-upload-from-archive",
            "ims-store-write",
            "ims-restart",
        ]
    }
}

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

/// A field of a record that an import changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    pub from: Option<Value>,
    pub to: Option<Value>,
}

/// Top-level fields that differ between the current and the exported record.
pub fn diff(current: &Value, exported: &Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let cur = current.as_object().unwrap_or(&empty);
    let exp = exported.as_object().unwrap_or(&empty);
    let fields: BTreeSet<&String> = cur.keys().chain(exp.keys()).collect();
    fields
        .into_iter()
        .filter_map(|f| {
            let (from, to) = (cur.get(f), exp.get(f));
            let change = match (from, to) {
                (Some(a), Some(b)) if a == b => return None,
                (Some(_), Some(_)) => "changed",
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (None, None) => return None,
            };
            Some(FieldChange {
                field: f.clone(),
                change: change.into(),
                from: from.cloned(),
                to: to.cloned(),
            })
        })
        .collect()
}

/// What the import does with one exported record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAction {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    /// `add`, `replace`, `keep` (identical), `skip` (add: exists).
    pub action: String,
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

#[derive(Debug)]
pub struct Planned {
    pub effects: Vec<Effect>,
    pub review: Review,
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

/// Records as a JSON list, by id (the order of `ims-fetch`'s maps): the
/// `expect-json` of a data-file write and a delete's record.
fn list_by_id(records: &Records) -> String {
    serde_json::to_string(&records.values().collect::<Vec<_>>()).expect("serialisable")
}

/// Records as HPE writes a data file: sorted by `created` (stable; equal
/// times by id).
fn list_by_created(records: &Records) -> String {
    let mut list: Vec<&Value> = records.values().collect();
    list.sort_by(|a, b| created(a).cmp(created(b)));
    serde_json::to_string(&list).expect("serialisable")
}

struct Planner<'a> {
    inputs: &'a Inputs<'a>,
    problems: Vec<String>,
    warnings: Vec<String>,
    /// A hard delete was planned without the cascade HPE would send.
    uncascaded: bool,
    /// A hard delete kept artifacts that the import would restore identically.
    kept_identical: bool,
}

impl Planner<'_> {
    /// The S3 objects a delete of `record` removes from their keys (for
    /// images, the manifest and what it lists; for recipes, the archive),
    /// as far as they exist; `Err` when a manifest that matters is unread.
    fn objects_of(&self, kind: Kind, record: &Value) -> Result<Vec<String>, String> {
        if !matches!(kind, Kind::Image | Kind::Recipe) {
            return Ok(Vec::new());
        }
        let Some(link) = link_path(record) else {
            return Ok(Vec::new());
        };
        let s3 = self.inputs.s3;
        match s3.objects.get(link) {
            None => return Err(format!("s3-restore-plan did not look at {link}")),
            Some(None) => return Ok(Vec::new()),
            Some(Some(_)) => {}
        }
        let mut out = vec![link.to_string()];
        if kind == Kind::Image {
            match s3.manifests.get(link) {
                Some(m) if m.error.is_none() => out.extend(
                    m.links
                        .iter()
                        .filter(|l| matches!(s3.objects.get(l.as_str()), Some(Some(_))))
                        .cloned(),
                ),
                Some(m) => {
                    return Err(format!(
                        "its manifest {link} cannot be read: {}",
                        m.error.as_deref().unwrap_or_default()
                    ));
                }
                None => return Err(format!("s3-restore-plan did not read its manifest {link}")),
            }
        }
        Ok(out)
    }

    /// Whether the object at `url` is now exactly what the archive holds
    /// for it (ETag and size).
    fn identical(&self, url: &str) -> bool {
        let (Some(Some(now)), Some(entry)) = (
            self.inputs.s3.objects.get(url),
            self.inputs.archive.artifact(url),
        ) else {
            return false;
        };
        entry.etag.as_deref() == Some(crate::s3::bare_etag(&now.etag).as_str())
            && entry.size.or(entry.member_size) == Some(now.size)
            && entry.problems.is_empty()
    }

    fn delete(
        &mut self,
        kind: Kind,
        id: &str,
        record: &Value,
        delete: DeleteMode,
        why: &str,
    ) -> DeleteAction {
        let moves_objects = matches!(
            delete,
            DeleteMode::Soft | DeleteMode::Purge | DeleteMode::Hard { cascade: true }
        );
        let objects = if moves_objects {
            self.objects_of(kind, record).unwrap_or_else(|e| {
                self.problems.push(format!(
                    "cannot plan the delete of {} {id}: {e}",
                    kind.noun()
                ));
                Vec::new()
            })
        } else {
            Vec::new()
        };
        DeleteAction {
            kind,
            id: id.into(),
            name: name(record).into(),
            delete,
            why: why.into(),
            objects,
        }
    }

    /// A hard delete, cascading when the record's link exists in S3 (as HPE
    /// decides), unless the cascade would delete an object that the import
    /// needs and the archive cannot restore.
    fn hard_delete(
        &mut self,
        kind: Kind,
        id: &str,
        record: &Value,
        why: &str,
        needed: &BTreeSet<String>,
    ) -> DeleteAction {
        let exists = link_path(record)
            .is_some_and(|l| matches!(self.inputs.s3.objects.get(l), Some(Some(_))));
        let cascade = matches!(kind, Kind::Image | Kind::Recipe) && exists;
        let mut action = self.delete(kind, id, record, DeleteMode::Hard { cascade }, why);
        if cascade
            && !action.objects.is_empty()
            && action
                .objects
                .iter()
                .all(|u| needed.contains(u) && self.identical(u))
        {
            // The cascade would delete exactly what the import puts back byte
            // for byte: HPE's delete and re-upload, without the traffic, and
            // without uploads that S3 would see as already done.
            action.delete = DeleteMode::Hard { cascade: false };
            action.objects.clear();
            self.kept_identical = true;
            return action;
        }
        if cascade {
            let archive = self.inputs.archive;
            let lost: Vec<&String> = action
                .objects
                .iter()
                .filter(|u| {
                    needed.contains(*u)
                        && archive
                            .artifact(u)
                            .is_none_or(|a| restore::upload_of(u, a).is_err())
                })
                .collect();
            if !lost.is_empty() {
                self.warnings.push(format!(
                    "{} {id} is hard-deleted without cascade: a cascade would delete {} that this import needs and the archive cannot restore",
                    kind.noun(),
                    lost.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
                action.delete = DeleteMode::Hard { cascade: false };
                action.objects.clear();
                self.uncascaded = true;
            }
        }
        action
    }
}

/// One mode, planned. Every problem is listed at once.
pub fn plan(mode: Mode, inputs: &Inputs) -> Result<Planned, Vec<String>> {
    let (archive, current, s3) = (inputs.archive, inputs.current, inputs.s3);
    let mut p = Planner {
        inputs,
        problems: Vec::new(),
        warnings: archive.warnings.clone(),
        uncascaded: false,
        kept_identical: false,
    };
    let mut differences = Vec::new();
    let deleted_store = current.deleted.clone().unwrap_or_default();
    if current.deleted.is_none() {
        p.problems.push("the current IMS state lacks deleted records: run ims-fetch with include_deleted = true".into());
    }
    let running = running_jobs(&current.jobs);
    if !running.is_empty() {
        if mode == Mode::Add {
            p.warnings.push(format!(
                "{} IMS job(s) not complete; add goes on: {}",
                running.len(),
                running.join("; ")
            ));
            if !inputs.options.ignore_running_jobs {
                differences.push("add does not require --ignore-running-jobs while jobs run (HPE's does, through its backup)".into());
            }
        } else if inputs.options.ignore_running_jobs {
            p.warnings.push(format!(
                "ignoring {} incomplete job(s): {}",
                running.len(),
                running.join("; ")
            ));
        } else {
            p.problems.push(format!(
                "Aborted import due to incomplete jobs: {}. Wait until jobs are completed, or pass --ignore-running-jobs",
                running.join("; ")
            ));
        }
    }
    if archive.artifacts.is_none() && !archive.ims.has_no_records() {
        differences.push("the archive has no S3 data (s3_data: null): its records are imported (HPE's importer crashes)".into());
    }

    // The records imported: add leaves out the ids that are live.
    let mut imported = Ims::default();
    let mut records = Vec::new();
    for kind in Kind::RECORDS {
        for (id, rec) in archive.ims.live(kind) {
            let live = current.live(kind).get(id);
            let (action, changes) = match (mode, live) {
                (_, None) => ("add", Vec::new()),
                (Mode::Add, Some(_)) => ("skip", Vec::new()),
                (Mode::Update, Some(cur)) if cur == rec => ("keep", Vec::new()),
                (_, Some(cur)) => ("replace", diff(cur, rec)),
            };
            if action != "skip" {
                imported.live_mut(kind).insert(id.clone(), rec.clone());
            }
            records.push(RecordAction {
                kind,
                id: id.clone(),
                name: name(rec).into(),
                action: action.into(),
                diff: changes,
            });
        }
    }
    let targets = restore::targets(archive, &imported.images, &imported.recipes);
    let needed: BTreeSet<String> = targets.iter().map(|t| t.url.clone()).collect();

    // Deletes, in HPE's order.
    let mut deletes = Vec::new();
    let deleted_of = |kind: Kind| deleted_store_of(&deleted_store, kind);
    match mode {
        Mode::Add | Mode::Update => {
            for kind in Kind::RECORDS {
                for (id, rec) in deleted_of(kind) {
                    if imported.live(kind).contains_key(id) {
                        deletes.push(p.delete(
                            kind,
                            id,
                            rec,
                            DeleteMode::Purge,
                            "a deleted record with an id this import adds",
                        ));
                    }
                }
            }
            if mode == Mode::Add && !deletes.is_empty() {
                differences.push("add purges deleted records whose id it imports (HPE's add leaves the id both live and deleted)".into());
            }
        }
        Mode::Overwrite => {
            for kind in Kind::RECORDS {
                for (id, rec) in deleted_of(kind) {
                    deletes.push(p.delete(
                        kind,
                        id,
                        rec,
                        DeleteMode::Purge,
                        "overwrite purges every deleted record",
                    ));
                }
                for (id, rec) in current.live(kind) {
                    deletes.push(p.hard_delete(
                        kind,
                        id,
                        rec,
                        "overwrite hard-deletes every record",
                        &needed,
                    ));
                }
            }
        }
        Mode::SoftOverwrite => {
            for kind in Kind::RECORDS {
                for (id, rec) in deleted_of(kind) {
                    if imported.live(kind).contains_key(id) {
                        deletes.push(p.delete(
                            kind,
                            id,
                            rec,
                            DeleteMode::Purge,
                            "a deleted record with an id this import writes",
                        ));
                    }
                }
                for (id, rec) in current.live(kind) {
                    if imported.live(kind).contains_key(id) {
                        deletes.push(p.hard_delete(kind, id, rec, "its id is imported", &needed));
                    } else {
                        deletes.push(p.delete(
                            kind,
                            id,
                            rec,
                            DeleteMode::Soft,
                            "not in the archive: kept as deleted",
                        ));
                    }
                }
            }
        }
    }
    if matches!(mode, Mode::Overwrite | Mode::SoftOverwrite) {
        for (id, job) in &current.jobs {
            deletes.push(p.delete(Kind::Job, id, job, DeleteMode::Soft, "every job is deleted"));
        }
    }
    if p.kept_identical {
        differences.push(
            "a hard delete does not cascade when its artifacts are exactly what the import uploads again (HPE deletes and re-uploads them)"
                .into(),
        );
    }
    if p.uncascaded {
        differences.push("a hard delete does not cascade where that would delete an object the import needs and cannot restore".into());
    }

    // The S3 restore, against S3 as the deletes leave it.
    let mut removed_by: BTreeMap<&str, String> = BTreeMap::new();
    for d in &deletes {
        let how = match d.delete {
            DeleteMode::Soft => "soft delete",
            DeleteMode::Hard { .. } => "cascade",
            DeleteMode::Purge => "purge",
        };
        for o in &d.objects {
            removed_by
                .entry(o.as_str())
                .or_insert_with(|| format!("{how} of {} {}", d.kind.noun(), d.id));
        }
    }
    let mut s3_plans = Vec::new();
    for t in &targets {
        let Some(now) = s3.objects.get(&t.url) else {
            p.problems
                .push(format!("{}: s3-restore-plan did not look at it", t.url));
            continue;
        };
        let plan = restore::classify(
            t,
            archive,
            now.as_ref(),
            removed_by.get(t.url.as_str()).map(String::as_str),
        );
        match plan.status {
            Status::Missing => p.problems.push(format!(
                "{} (needed by {}): {}",
                t.url,
                t.owners.join(", "),
                plan.why
            )),
            Status::Unavailable => p.warnings.push(format!(
                "{} (needed by {}): {}",
                t.url,
                t.owners.join(", "),
                plan.why
            )),
            Status::Conflict => p
                .warnings
                .push(format!("conflict: {}: {}", t.url, plan.why)),
            _ => {}
        }
        if plan.upload.as_ref().is_some_and(|u| {
            u.part_size.is_none()
                && u.etag
                    .as_deref()
                    .is_some_and(|e| crate::s3::multipart_parts(e).is_some())
        }) {
            p.warnings.push(format!("{}: {}", t.url, plan.why));
        }
        s3_plans.push(plan);
    }
    if s3_plans.iter().any(|t| t.status == Status::Conflict) {
        differences.push("objects that exist with another ETag are reported as conflicts (HPE keeps them silently); they are kept".into());
    }
    if !p.problems.is_empty() {
        return Err(p.problems);
    }

    // The data files: the merged store of each kind, as the deletes leave it.
    let empties = matches!(mode, Mode::Overwrite | Mode::SoftOverwrite);
    let mut writes = Vec::new();
    let mut store_reviews = Vec::new();
    let mut expected = Expected::default();
    for kind in Kind::RECORDS {
        let now = current.live(kind);
        let base: Records = if empties { Records::new() } else { now.clone() };
        let mut merged = base.clone();
        merged.extend(
            imported
                .live(kind)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        expected
            .live
            .insert(kind.key().into(), merged.keys().cloned().collect());
        if merged == base {
            continue;
        }
        let summary = StoreSummary {
            added: merged
                .keys()
                .filter(|id| !now.contains_key(*id))
                .cloned()
                .collect(),
            replaced: merged
                .iter()
                .filter(|(id, r)| now.get(*id).is_some_and(|c| empties || c != *r))
                .map(|(id, _)| id.clone())
                .collect(),
            removed: now
                .keys()
                .filter(|id| !merged.contains_key(*id))
                .cloned()
                .collect(),
        };
        store_reviews.push(StoreWriteReview {
            kind,
            count: merged.len(),
            summary: summary.clone(),
        });
        writes.push(Effect::ImsStoreWrite {
            ims_kind: kind,
            records_json: list_by_created(&merged),
            expect_json: list_by_id(now),
            summary,
        });
    }
    let restart = !writes.is_empty();
    if !archive.ims.has_no_records() && imported.has_no_records() {
        p.warnings.push("No IMS data to import".into());
    }

    // What must remain deleted, and which jobs.
    for kind in Kind::RECORDS {
        let mut ids: BTreeSet<String> = deleted_of(kind).keys().cloned().collect();
        for d in deletes.iter().filter(|d| d.kind == kind) {
            match d.delete {
                DeleteMode::Purge => {
                    ids.remove(&d.id);
                }
                DeleteMode::Soft => {
                    ids.insert(d.id.clone());
                }
                DeleteMode::Hard { .. } => {}
            }
        }
        expected
            .deleted
            .insert(kind.key().into(), ids.into_iter().collect());
    }
    expected.jobs = if empties {
        Vec::new()
    } else {
        current.jobs.keys().cloned().collect()
    };
    for t in &s3_plans {
        let entry = archive.artifact(&t.url);
        let (etag, size) = match t.status {
            Status::Upload | Status::Present => (
                entry.and_then(|e| e.etag.clone()),
                entry
                    .and_then(|e| e.size.or(e.member_size))
                    .or(t.current.as_ref().map(|h| h.size)),
            ),
            Status::Conflict => (
                t.current.as_ref().map(|h| h.etag.clone()),
                t.current.as_ref().map(|h| h.size),
            ),
            Status::Missing | Status::Unavailable => continue,
        };
        let etag = etag.or_else(|| t.current.as_ref().map(|h| h.etag.clone()));
        expected.objects.push(ExpectedObject {
            url: t.url.clone(),
            etag,
            size,
        });
    }

    // The backup: objects deleted (cascade, purge) that the archive does not
    // restore byte for byte. Soft deletes move objects, they are not lost.
    let mut backup_objects: Vec<BackupObject> = Vec::new();
    for d in deletes.iter().filter(|d| {
        matches!(
            d.delete,
            DeleteMode::Purge | DeleteMode::Hard { cascade: true }
        )
    }) {
        for url in &d.objects {
            let Some(Some(head)) = s3.objects.get(url) else {
                continue;
            };
            let restored_identically = s3_plans.iter().any(|t| {
                &t.url == url
                    && t.status == Status::Upload
                    && t.upload.as_ref().is_some_and(|u| {
                        u.etag.as_deref() == Some(crate::s3::bare_etag(&head.etag).as_str())
                            && u.size == head.size
                    })
            });
            if restored_identically || backup_objects.iter().any(|b| &b.url == url) {
                continue;
            }
            let manifest_links = s3
                .manifests
                .get(url)
                .filter(|m| m.error.is_none())
                .map(|m| m.links.clone());
            let how = if d.delete == DeleteMode::Purge {
                "purge"
            } else {
                "cascade"
            };
            backup_objects.push(BackupObject {
                url: url.clone(),
                head: head.clone(),
                manifest_links,
                reason: format!("{how} of {} {}", d.kind.noun(), d.id),
            });
        }
    }
    let uploads: Vec<Effect> = s3_plans
        .iter()
        .filter_map(|t| t.upload.clone())
        .map(Effect::S3UploadFromArchive)
        .collect();
    let changes = !deletes.is_empty() || !uploads.is_empty() || !writes.is_empty();

    // The effects, phase by phase.
    let mut effects = Vec::new();
    let phase = |effects: &mut Vec<Effect>, n: usize| {
        let (name, description) = PHASES[n];
        effects.push(Effect::Phase {
            name: name.into(),
            description: description.into(),
        });
    };
    phase(&mut effects, 0);
    phase(&mut effects, 1);
    if changes {
        effects.extend(backup::effects(
            current,
            &backup_objects,
            &inputs.options.created,
            &format!("imsflow import {}", mode.name()),
        ));
    }
    phase(&mut effects, 2);
    for d in &deletes {
        let record = record_of(current, &deleted_store, d);
        effects.push(Effect::ImsDelete {
            ims_kind: d.kind,
            id: d.id.clone(),
            name: d.name.clone(),
            delete: d.delete,
            expect_json: serde_json::to_string(record).expect("serialisable"),
        });
    }
    phase(&mut effects, 3);
    match mode {
        Mode::Overwrite => effects.push(Effect::AssertImsEmpty {
            live: true,
            deleted: true,
            jobs: true,
        }),
        Mode::SoftOverwrite => effects.push(Effect::AssertImsEmpty {
            live: true,
            deleted: false,
            jobs: true,
        }),
        Mode::Add | Mode::Update => {}
    }
    phase(&mut effects, 4);
    effects.extend(uploads);
    phase(&mut effects, 5);
    effects.extend(writes);
    if restart {
        effects.push(Effect::ImsRestart);
    }
    phase(&mut effects, 6);
    if changes {
        effects.push(Effect::VerifyEndState);
    }

    let backup_bytes = backup_objects.iter().map(|b| b.head.size).sum();
    let review = Review {
        mode,
        records,
        deletes,
        s3_summary: restore::summarize(&s3_plans),
        s3: s3_plans,
        store_writes: store_reviews,
        restart,
        changes,
        backup: BackupReview {
            written: changes,
            objects: backup_objects,
            bytes: backup_bytes,
        },
        expected,
        warnings: p.warnings,
        differences_from_hpe: differences,
    };
    Ok(Planned { effects, review })
}

fn deleted_store_of(d: &crate::ims::Deleted, kind: Kind) -> &Records {
    static EMPTY: Records = Records::new();
    match kind {
        Kind::Image => &d.images,
        Kind::PublicKey => &d.public_keys,
        Kind::Recipe => &d.recipes,
        Kind::Job => &EMPTY,
    }
}

/// The record a delete acts on: the deleted one for a purge, else the live one.
fn record_of<'a>(
    current: &'a Ims,
    deleted: &'a crate::ims::Deleted,
    d: &DeleteAction,
) -> &'a Value {
    let store = if d.delete == DeleteMode::Purge {
        deleted_store_of(deleted, d.kind)
    } else {
        current.live(d.kind)
    };
    &store[&d.id]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effect::{Precondition, Upload};
    use crate::testdata::*;
    use serde_json::json;

    fn options(ignore_running_jobs: bool) -> Options {
        Options {
            ignore_running_jobs,
            created: "20250101000000.000000".into(),
        }
    }

    fn run(mode: Mode, ignore: bool) -> Result<Planned, Vec<String>> {
        let (archive, current, s3, options) = (archive(), current(), s3(), options(ignore));
        plan(
            mode,
            &Inputs {
                archive: &archive,
                current: &current,
                s3: &s3,
                options: &options,
            },
        )
    }

    /// One short line per effect, written out by hand in the tests.
    fn lines(effects: &[Effect]) -> Vec<String> {
        effects
            .iter()
            .map(|e| match e {
                Effect::Phase { name, .. } => format!("phase {name}"),
                Effect::ArchiveAddObject { bucket, key, .. } => {
                    format!("backup s3://{bucket}/{key}")
                }
                Effect::ArchiveAddIndex { path, .. } => format!("backup {path}"),
                Effect::ImsDelete {
                    ims_kind,
                    id,
                    delete,
                    ..
                } => match delete {
                    DeleteMode::Soft => format!("soft {} {id}", ims_kind.noun()),
                    DeleteMode::Hard { cascade } => {
                        format!("hard {} {id} cascade={cascade}", ims_kind.noun())
                    }
                    DeleteMode::Purge => format!("purge {} {id}", ims_kind.noun()),
                },
                Effect::AssertImsEmpty {
                    live,
                    deleted,
                    jobs,
                } => format!("assert live={live} deleted={deleted} jobs={jobs}"),
                Effect::S3UploadFromArchive(u) => {
                    format!("upload s3://{}/{} {:?}", u.bucket, u.key, u.precondition)
                }
                Effect::ImsStoreWrite {
                    ims_kind, summary, ..
                } => {
                    format!(
                        "write {} +{:?} ~{:?} -{:?}",
                        ims_kind.noun(),
                        summary.added,
                        summary.replaced,
                        summary.removed
                    )
                }
                Effect::ImsRestart => "restart".into(),
                Effect::VerifyEndState => "verify end state".into(),
            })
            .collect()
    }

    fn write_of(effects: &[Effect], kind: Kind) -> (Vec<Value>, Vec<Value>) {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::ImsStoreWrite {
                    ims_kind,
                    records_json,
                    expect_json,
                    ..
                } if *ims_kind == kind => Some((
                    serde_json::from_str(records_json).unwrap(),
                    serde_json::from_str(expect_json).unwrap(),
                )),
                _ => None,
            })
            .expect("a write of that kind")
    }

    const PURGED_B: [&str; 3] = [
        "backup s3://boot-images/deleted/img-b/deleted_manifest.json",
        "backup s3://boot-images/deleted/img-b/rootfs",
        "backup s3://boot-images/deleted/img-b/manifest.json",
    ];

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn add_adds_what_is_not_live_and_purges_deleted_collisions() {
        let planned = run(Mode::Add, false).expect("add does not care about running jobs");
        let mut want = v(&["phase preflight", "phase backup"]);
        want.extend(v(&PURGED_B));
        want.extend(v(&[
            "backup export.json",
            "phase delete",
            "purge image img-b",
            "phase assert",
            "phase s3-restore",
            "upload s3://boot-images/img-b/rootfs Absent",
            "upload s3://boot-images/img-b/manifest.json Absent",
            "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
            "upload s3://boot-images/img-a/kernel Absent",
            "phase store-write",
            "write image +[\"img-b\"] ~[] -[]",
            "write recipe +[\"rec-a\"] ~[] -[]",
            "restart",
            "phase verify",
            "verify end state",
        ]));
        assert_eq!(lines(&planned.effects), want);
        let r = &planned.review;
        let actions: Vec<(&str, &str)> = r
            .records
            .iter()
            .map(|a| (a.id.as_str(), a.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("img-a", "skip"),
                ("img-b", "add"),
                ("key-a", "skip"),
                ("rec-a", "add")
            ]
        );
        assert_eq!(
            r.s3_summary.conflict,
            v(&["s3://boot-images/img-a/rootfs"]),
            "BOS's manifest lists the changed rootfs"
        );
        assert_eq!(
            r.s3_summary.present,
            v(&[
                "s3://boot-images/img-a/manifest.json",
                "s3://boot-images/k8s/kernel"
            ])
        );
        // The merged images, sorted by `created`: img-c (2023), img-b, img-a.
        let (records, expect) = write_of(&planned.effects, Kind::Image);
        assert_eq!(records, vec![img_c(), img_b(), img_a_current()]);
        assert_eq!(expect, vec![img_a_current(), img_c()]);
        assert_eq!(r.expected.deleted["images"], Vec::<String>::new());
        assert_eq!(r.expected.deleted["recipes"], v(&["rec-old"]));
        assert_eq!(r.expected.jobs, v(&["job-1", "job-2"]));
        assert_eq!(r.expected.live["images"], v(&["img-a", "img-b", "img-c"]));
        assert!(
            r.differences_from_hpe
                .iter()
                .any(|d| d.contains("purges deleted records"))
        );
        assert!(
            r.differences_from_hpe
                .iter()
                .any(|d| d.contains("--ignore-running-jobs"))
        );
    }

    #[test]
    fn a_purge_expects_the_deleted_record_as_seen() {
        let planned = run(Mode::Add, false).unwrap();
        let purge = planned
            .effects
            .iter()
            .find(|e| matches!(e, Effect::ImsDelete { .. }))
            .unwrap();
        assert_eq!(
            purge,
            &Effect::ImsDelete {
                ims_kind: Kind::Image,
                id: "img-b".into(),
                name: "old-b".into(),
                delete: DeleteMode::Purge,
                expect_json: img_b_deleted().to_string(),
            }
        );
    }

    #[test]
    fn update_replaces_by_id_and_lists_the_fields_that_change() {
        assert_eq!(
            run(Mode::Update, false).err().unwrap(),
            vec![
                "Aborted import due to incomplete jobs: Job job-2 is not complete (status = building_image). Wait until jobs are completed, or pass --ignore-running-jobs"
            ]
        );
        let planned = run(Mode::Update, true).unwrap();
        let mut want = v(&["phase preflight", "phase backup"]);
        want.extend(v(&PURGED_B));
        want.extend(v(&[
            "backup export.json",
            "phase delete",
            "purge image img-b",
            "phase assert",
            "phase s3-restore",
            "upload s3://boot-images/img-a/kernel Absent",
            "upload s3://boot-images/img-b/rootfs Absent",
            "upload s3://boot-images/img-b/manifest.json Absent",
            "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
            "phase store-write",
            "write image +[\"img-b\"] ~[\"img-a\"] -[]",
            "write recipe +[\"rec-a\"] ~[] -[]",
            "restart",
            "phase verify",
            "verify end state",
        ]));
        assert_eq!(
            lines(&planned.effects),
            want,
            "key-a is identical: its data file is not rewritten"
        );
        let r = &planned.review;
        let img_a = r.records.iter().find(|a| a.id == "img-a").unwrap();
        assert_eq!(img_a.action, "replace");
        assert_eq!(
            img_a.diff,
            vec![FieldChange {
                field: "name".into(),
                change: "changed".into(),
                from: Some(json!("a-renamed")),
                to: Some(json!("a"))
            }]
        );
        assert_eq!(
            r.records.iter().find(|a| a.id == "key-a").unwrap().action,
            "keep"
        );
        let (records, _) = write_of(&planned.effects, Kind::Image);
        assert_eq!(records, vec![img_c(), img_b(), img_a_exported()]);
    }

    #[test]
    fn overwrite_empties_ims_then_writes_the_export() {
        let planned = run(Mode::Overwrite, true).unwrap();
        let want = v(&[
            "phase preflight",
            "phase backup",
            // img-a's manifest comes back identical from the archive: not backed up.
            "backup s3://boot-images/deleted/img-b/deleted_manifest.json",
            "backup s3://boot-images/deleted/img-b/rootfs",
            "backup s3://boot-images/deleted/img-b/manifest.json",
            "backup s3://boot-images/img-a/rootfs",
            "backup s3://boot-images/img-c/manifest.json",
            "backup s3://boot-images/img-c/rootfs",
            "backup s3://ims/deleted/recipes/rec-old/recipe.tar.gz",
            "backup export.json",
            "phase delete",
            "purge image img-b",
            "hard image img-a cascade=true",
            "hard image img-c cascade=true",
            "hard public key key-a cascade=false",
            "hard public key key-c cascade=false",
            "purge recipe rec-old",
            "hard recipe rec-c cascade=false",
            "soft job job-1",
            "soft job job-2",
            "phase assert",
            "assert live=true deleted=true jobs=true",
            "phase s3-restore",
            // Deleted by img-a's cascade, so uploaded, the conflict included.
            "upload s3://boot-images/img-a/rootfs Absent",
            "upload s3://boot-images/img-a/kernel Absent",
            "upload s3://boot-images/img-a/manifest.json Absent",
            "upload s3://boot-images/img-b/rootfs Absent",
            "upload s3://boot-images/img-b/manifest.json Absent",
            "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
            "phase store-write",
            "write image +[\"img-b\"] ~[\"img-a\"] -[\"img-c\"]",
            "write public key +[] ~[\"key-a\"] -[\"key-c\"]",
            "write recipe +[\"rec-a\"] ~[] -[\"rec-c\"]",
            "restart",
            "phase verify",
            "verify end state",
        ]);
        assert_eq!(lines(&planned.effects), want);
        let r = &planned.review;
        assert_eq!(r.s3_summary.present, v(&["s3://boot-images/k8s/kernel"]));
        assert!(r.s3_summary.conflict.is_empty());
        let rootfs =
            r.s3.iter()
                .find(|t| t.url == "s3://boot-images/img-a/rootfs")
                .unwrap();
        assert_eq!(rootfs.removed_by.as_deref(), Some("cascade of image img-a"));
        let (records, expect) = write_of(&planned.effects, Kind::Image);
        assert_eq!(records, vec![img_b(), img_a_exported()]);
        assert_eq!(
            expect,
            vec![img_a_current(), img_c()],
            "the records as planned"
        );
        assert_eq!(r.expected.deleted.values().map(Vec::len).sum::<usize>(), 0);
        assert!(r.expected.jobs.is_empty());
        let backed: u64 = 90 + 85 + 80 + 12 * MIB + 60 + 70 + 95;
        assert_eq!(r.backup.bytes, backed);
        let upload = planned.effects.iter().find_map(|e| match e {
            Effect::S3UploadFromArchive(u) if u.key == "img-a/rootfs" => Some(u.clone()),
            _ => None,
        });
        assert_eq!(
            upload.unwrap(),
            Upload {
                path: "s3_artifacts/boot-images/img-a_rootfs".into(),
                bucket: "boot-images".into(),
                key: "img-a/rootfs".into(),
                size: 12 * MIB,
                sha256: None,
                content_type: Some("application/octet-stream".into()),
                metadata: [("md5sum".to_string(), "m".to_string())]
                    .into_iter()
                    .collect(),
                part_size: Some(5 * MIB),
                etag: Some(ROOTFS_ETAG.into()),
                precondition: Precondition::Absent,
            }
        );
    }

    #[test]
    fn soft_overwrite_keeps_what_the_archive_lacks_as_deleted() {
        let planned = run(Mode::SoftOverwrite, true).unwrap();
        let mut want = v(&["phase preflight", "phase backup"]);
        want.extend(v(&PURGED_B));
        want.extend(v(&[
            "backup s3://boot-images/img-a/rootfs",
            "backup export.json",
            "phase delete",
            "purge image img-b",
            "hard image img-a cascade=true",
            "soft image img-c",
            "hard public key key-a cascade=false",
            "soft public key key-c",
            "soft recipe rec-c",
            "soft job job-1",
            "soft job job-2",
            "phase assert",
            "assert live=true deleted=false jobs=true",
            "phase s3-restore",
            "upload s3://boot-images/img-a/rootfs Absent",
            "upload s3://boot-images/img-a/kernel Absent",
            "upload s3://boot-images/img-a/manifest.json Absent",
            "upload s3://boot-images/img-b/rootfs Absent",
            "upload s3://boot-images/img-b/manifest.json Absent",
            "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
            "phase store-write",
            "write image +[\"img-b\"] ~[\"img-a\"] -[\"img-c\"]",
            "write public key +[] ~[\"key-a\"] -[\"key-c\"]",
            "write recipe +[\"rec-a\"] ~[] -[\"rec-c\"]",
            "restart",
            "phase verify",
            "verify end state",
        ]));
        assert_eq!(lines(&planned.effects), want);
        let r = &planned.review;
        assert_eq!(r.expected.deleted["images"], v(&["img-c"]));
        assert_eq!(r.expected.deleted["public_keys"], v(&["key-c"]));
        assert_eq!(r.expected.deleted["recipes"], v(&["rec-c", "rec-old"]));
        let soft_c = r.deletes.iter().find(|d| d.id == "img-c").unwrap();
        assert_eq!(
            soft_c.objects,
            v(&[
                "s3://boot-images/img-c/manifest.json",
                "s3://boot-images/img-c/rootfs"
            ])
        );
    }

    #[test]
    fn every_phase_marker_is_there_even_when_nothing_changes() {
        // Export the current system, then add it back: nothing to do, and
        // nothing to verify.
        let current = current();
        let mut archive = archive();
        archive.ims = current.clone();
        archive.bos = None;
        archive.bss = None;
        let mut s3 = s3();
        s3.objects.insert(
            "s3://boot-images/img-a/kernel".into(),
            Some(head(10, KERNEL)),
        );
        s3.objects.insert(
            "s3://boot-images/img-a/rootfs".into(),
            Some(head(12 * MIB, ROOTFS_ETAG)),
        );
        let options = options(false);
        let inputs = Inputs {
            archive: &archive,
            current: &current,
            s3: &s3,
            options: &options,
        };
        let want = v(&[
            "phase preflight",
            "phase backup",
            "phase delete",
            "phase assert",
            "phase s3-restore",
            "phase store-write",
            "phase verify",
        ]);
        let planned = add(&inputs).unwrap();
        assert_eq!(lines(&planned.effects), want);
        assert!(
            !planned.review.changes && !planned.review.backup.written && !planned.review.restart
        );
        assert!(
            planned
                .review
                .warnings
                .iter()
                .any(|w| w == "No IMS data to import")
        );
        // update of the same: identical records, present objects, rec-c's object absent and not in the archive.
        let planned = update(&Inputs {
            options: &Options {
                ignore_running_jobs: true,
                ..options.clone()
            },
            ..inputs
        })
        .unwrap_err();
        assert_eq!(
            planned,
            vec![
                "s3://ims/recipes/rec-c/recipe.tar.gz (needed by recipe rec-c): absent, and export.json has no artifact entry for it"
            ]
        );
    }

    /// HPE's bug 2: a records-only archive imports its records; nothing is
    /// uploaded and what S3 lacks is a warning (see
    /// docs/hpe-import-export.md#bug-2-an-archive-without-s3-data-crashes-the-import).
    #[test]
    fn s3_data_null_imports_the_records() {
        let mut archive = archive();
        archive.artifacts = None;
        let (current, s3, options) = (current(), s3(), options(true));
        let planned = update(&Inputs {
            archive: &archive,
            current: &current,
            s3: &s3,
            options: &options,
        })
        .unwrap();
        let l = lines(&planned.effects);
        assert!(!l.iter().any(|l| l.starts_with("upload")), "{l:?}");
        assert!(l.contains(&"write image +[\"img-b\"] ~[\"img-a\"] -[]".to_string()));
        // Without s3_data no manifest lists links: the targets are the
        // manifests, the recipe archive and the link sources.
        assert_eq!(
            planned.review.s3_summary.unavailable,
            v(&[
                "s3://boot-images/img-b/manifest.json",
                "s3://ims/recipes/rec-a/recipe.tar.gz"
            ])
        );
        assert!(
            planned
                .review
                .differences_from_hpe
                .iter()
                .any(|d| d.contains("s3_data: null"))
        );
    }

    /// Without S3 data, overwrite must not cascade-delete img-a's objects
    /// that it needs and cannot restore.
    #[test]
    fn a_cascade_never_deletes_what_the_archive_cannot_restore() {
        let mut archive = archive();
        archive.artifacts = None;
        let (current, s3, options) = (current(), s3(), options(true));
        let planned = overwrite(&Inputs {
            archive: &archive,
            current: &current,
            s3: &s3,
            options: &options,
        })
        .unwrap();
        let l = lines(&planned.effects);
        assert!(
            l.contains(&"hard image img-a cascade=false".to_string()),
            "{l:?}"
        );
        assert!(l.contains(&"hard image img-c cascade=true".to_string()));
        assert!(
            planned
                .review
                .differences_from_hpe
                .iter()
                .any(|d| d.contains("does not cascade"))
        );
    }

    /// HPE's bug 5: a changed object under an existing key is a conflict,
    /// reported and kept (see
    /// docs/hpe-import-export.md#bug-5-an-object-already-under-the-key-is-never-compared).
    #[test]
    fn a_changed_object_is_a_reported_conflict_never_overwritten() {
        let planned = run(Mode::Update, true).unwrap();
        let t = planned
            .review
            .s3
            .iter()
            .find(|t| t.url == "s3://boot-images/img-a/rootfs")
            .unwrap();
        assert_eq!(t.status, Status::Conflict);
        assert!(
            !planned
                .effects
                .iter()
                .any(|e| matches!(e, Effect::S3UploadFromArchive(u) if u.key == "img-a/rootfs"))
        );
        assert!(
            planned
                .review
                .warnings
                .iter()
                .any(|w| w.starts_with("conflict: s3://boot-images/img-a/rootfs"))
        );
        assert_eq!(
            planned
                .review
                .expected
                .objects
                .iter()
                .find(|o| o.url == t.url)
                .unwrap()
                .etag
                .as_deref(),
            Some(CHANGED),
            "the conflicting object stays"
        );
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let archive = archive();
        let mut current = current();
        current.deleted = None;
        let mut s3 = s3();
        s3.objects.remove("s3://boot-images/k8s/kernel");
        s3.manifests
            .get_mut("s3://boot-images/img-c/manifest.json")
            .unwrap()
            .error = Some("not JSON".into());
        let options = options(false);
        let problems = overwrite(&Inputs {
            archive: &archive,
            current: &current,
            s3: &s3,
            options: &options,
        })
        .unwrap_err();
        assert_eq!(
            problems,
            vec![
                "the current IMS state lacks deleted records: run ims-fetch with include_deleted = true".to_string(),
                "Aborted import due to incomplete jobs: Job job-2 is not complete (status = building_image). Wait until jobs are completed, or pass --ignore-running-jobs".into(),
                "cannot plan the delete of image img-c: its manifest s3://boot-images/img-c/manifest.json cannot be read: not JSON".into(),
                "s3://boot-images/k8s/kernel: s3-restore-plan did not look at it".into(),
            ]
        );
    }

    /// Overwriting a system with its own export: img-a's objects are what
    /// the archive holds, so no cascade deletes and re-uploads them.
    #[test]
    fn overwrite_keeps_artifacts_it_would_put_back_identically() {
        let (archive, current, options) = (archive(), current(), options(true));
        let mut s3 = s3();
        s3.objects.insert(
            "s3://boot-images/img-a/rootfs".into(),
            Some(head(12 * MIB, ROOTFS_ETAG)),
        );
        let planned = overwrite(&Inputs {
            archive: &archive,
            current: &current,
            s3: &s3,
            options: &options,
        })
        .unwrap();
        let l = lines(&planned.effects);
        assert!(
            l.contains(&"hard image img-a cascade=false".to_string()),
            "{l:?}"
        );
        assert!(l.contains(&"hard image img-c cascade=true".to_string()));
        let uploads: Vec<&String> = l.iter().filter(|l| l.starts_with("upload")).collect();
        assert_eq!(
            uploads,
            vec![
                "upload s3://boot-images/img-a/kernel Absent",
                "upload s3://boot-images/img-b/rootfs Absent",
                "upload s3://boot-images/img-b/manifest.json Absent",
                "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
            ]
        );
        assert!(!l.contains(&"backup s3://boot-images/img-a/rootfs".to_string()));
        assert!(
            planned
                .review
                .differences_from_hpe
                .iter()
                .any(|d| d.contains("exactly what the import uploads again"))
        );
    }

    #[test]
    fn diffs_name_added_removed_and_changed_fields() {
        let d = diff(
            &json!({"a": 1, "b": 2, "c": 3}),
            &json!({"a": 1, "b": 5, "d": 4}),
        );
        let names: Vec<(&str, &str)> = d
            .iter()
            .map(|c| (c.field.as_str(), c.change.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("b", "changed"), ("c", "removed"), ("d", "added")]
        );
    }
}
