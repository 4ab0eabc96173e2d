//! The import review an admin reads in a change window: from the strategy
//! step's output (`import_core::modes::Review`, read here into the types
//! below, which name only what is shown), every record with its action (and
//! per-field diff), every delete, S3 objects to upload, present or in
//! conflict with bytes, the data files rewritten, and totals. Every string
//! comes from a plugin: escaped, so none can forge a line.
use imsflow::archive::escaped;
use imsflow::plan::effect::{DeleteMode, ImsKind};
use imsflow::units::bytes;
use imsflow_kinds::ImportMode;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use std::fmt::Write;

/// The strategy step's output. Fields the review does not show are
/// ignored; a missing or mistyped one is an error (see [`Review::from_output`]).
#[derive(Debug, Deserialize)]
pub struct Review {
    mode: ImportMode,
    records: Vec<RecordAction>,
    deletes: Vec<DeleteAction>,
    s3: Vec<Target>,
    s3_summary: S3Summary,
    store_writes: Vec<StoreWrite>,
    restart: bool,
    backup: Backup,
    warnings: Vec<String>,
    differences_from_hpe: Vec<String>,
}

/// What the import does with one exported record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Add,
    Skip,
    Keep,
    Replace,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Skip => "skip",
            Action::Keep => "keep",
            Action::Replace => "replace",
        }
    }
}

#[derive(Debug, Deserialize)]
struct RecordAction {
    kind: ImsKind,
    id: String,
    name: String,
    action: Action,
    #[serde(default)]
    diff: Vec<FieldChange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Change {
    Added,
    Removed,
    Changed,
}

#[derive(Debug, Deserialize)]
struct FieldChange {
    field: String,
    change: Change,
    from: Option<Value>,
    to: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct DeleteAction {
    kind: ImsKind,
    id: String,
    name: String,
    delete: DeleteMode,
    why: String,
    objects: Vec<IgnoredAny>,
}

/// What the import does about one S3 object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Status {
    Upload,
    Present,
    Conflict,
    Missing,
    Unavailable,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Upload => "upload",
            Status::Present => "present",
            Status::Conflict => "conflict",
            Status::Missing => "missing",
            Status::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Deserialize)]
struct Target {
    url: String,
    status: Status,
    why: String,
    bytes: u64,
}

#[derive(Debug, Deserialize)]
struct S3Summary {
    upload: Vec<IgnoredAny>,
    present: Vec<IgnoredAny>,
    conflict: Vec<IgnoredAny>,
    upload_bytes: u64,
    present_bytes: u64,
    conflict_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct StoreWrite {
    kind: ImsKind,
    count: u64,
    summary: StoreSummary,
}

#[derive(Debug, Deserialize)]
struct StoreSummary {
    added: Vec<IgnoredAny>,
    replaced: Vec<IgnoredAny>,
    removed: Vec<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct Backup {
    written: bool,
    objects: Vec<IgnoredAny>,
    bytes: u64,
}

impl Review {
    /// Reads the strategy step's output (`steps.import.output`).
    pub fn from_output(output: &Value) -> anyhow::Result<Review> {
        Review::deserialize(output).map_err(|e| {
            anyhow::anyhow!(
                "the import step's output is not an import review ({e}); the workflow's `import` step must run a stock import plugin"
            )
        })
    }
}

fn s(text: &str) -> String {
    escaped(text).into_owned()
}

fn short(v: &Value) -> String {
    let text = match v {
        Value::String(t) => format!("{t:?}"),
        other => other.to_string(),
    };
    let mut t: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        t.push('…');
    }
    escaped(&t).into_owned()
}

/// How a review names a delete (`kind` is the record's: IMS jobs have no
/// deleted store, so theirs is a plain delete).
fn delete_mode(mode: DeleteMode, kind: ImsKind) -> &'static str {
    match mode {
        DeleteMode::Hard { cascade: true } => "hard delete, cascade",
        DeleteMode::Hard { cascade: false } => "hard delete",
        DeleteMode::Soft if kind == ImsKind::Job => "delete",
        DeleteMode::Soft => "soft delete",
        DeleteMode::Purge => "purge",
    }
}

fn diff(d: &FieldChange) -> String {
    let null = Value::Null;
    match d.change {
        Change::Changed => format!(
            "{} {} -> {}",
            s(&d.field),
            short(d.from.as_ref().unwrap_or(&null)),
            short(d.to.as_ref().unwrap_or(&null))
        ),
        Change::Added => format!("{} added", s(&d.field)),
        Change::Removed => format!("{} removed", s(&d.field)),
    }
}

pub fn render(review: &Review) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Import review (mode {}):", review.mode.name());
    let _ = writeln!(out, "\nRecords in the archive: {}", review.records.len());
    for r in &review.records {
        let _ = write!(
            out,
            "  {:<8} {:<10} {}  {}",
            r.action.as_str(),
            r.kind.name(),
            s(&r.id),
            s(&r.name)
        );
        let diff: Vec<String> = r.diff.iter().map(diff).collect();
        if !diff.is_empty() {
            let _ = write!(out, ": {}", diff.join("; "));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\nDeletes: {}", review.deletes.len());
    for d in &review.deletes {
        let _ = writeln!(
            out,
            "  {:<22} {:<10} {}  {} ({}; {} S3 object(s))",
            delete_mode(d.delete, d.kind),
            d.kind.name(),
            s(&d.id),
            s(&d.name),
            s(&d.why),
            d.objects.len()
        );
    }
    let sum = &review.s3_summary;
    let _ = writeln!(
        out,
        "\nS3 objects: {} to upload ({}), {} already present and identical ({}), {} in conflict ({}, kept)",
        sum.upload.len(),
        bytes(sum.upload_bytes),
        sum.present.len(),
        bytes(sum.present_bytes),
        sum.conflict.len(),
        bytes(sum.conflict_bytes)
    );
    for t in review.s3.iter().filter(|t| t.status != Status::Present) {
        let _ = writeln!(
            out,
            "  {:<8} {} ({}){}",
            t.status.as_str(),
            s(&t.url),
            bytes(t.bytes),
            if t.status == Status::Upload {
                String::new()
            } else {
                format!(": {}", s(&t.why))
            }
        );
    }
    let writes = &review.store_writes;
    let _ = writeln!(out, "\nIMS data files rewritten: {}", writes.len());
    for w in writes {
        let _ = writeln!(
            out,
            "  {:<10} {} record(s): {} added, {} replaced, {} removed",
            w.kind.name(),
            w.count,
            w.summary.added.len(),
            w.summary.replaced.len(),
            w.summary.removed.len()
        );
    }
    let _ = writeln!(
        out,
        "IMS restart: {}",
        if review.restart { "yes" } else { "no" }
    );
    let backup = &review.backup;
    if backup.written {
        let _ = writeln!(
            out,
            "Pre-import backup: the current records and {} S3 object(s) ({})",
            backup.objects.len(),
            bytes(backup.bytes)
        );
    }
    for w in &review.warnings {
        let _ = writeln!(out, "warning: {}", s(w));
    }
    for d in &review.differences_from_hpe {
        let _ = writeln!(out, "differs from HPE's importer: {}", s(d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of the review, pinned on a review that has every kind of
    /// record action, field change, delete and S3 status, and strings that
    /// try to forge lines.
    #[test]
    fn a_review_renders_every_decision_and_escapes_plugin_strings() {
        let output: Value =
            serde_json::from_str(include_str!("../../../tests/golden/import-review.json")).unwrap();
        let review = Review::from_output(&output).unwrap();
        assert_eq!(
            render(&review),
            include_str!("../../../tests/golden/import-review.txt")
        );
    }

    #[test]
    fn an_output_that_is_not_a_review_is_refused_with_its_reason() {
        let e = Review::from_output(&serde_json::json!({ "mode": "merge" })).unwrap_err();
        assert!(e.to_string().contains("unknown variant `merge`"), "{e}");
    }

    #[test]
    fn a_job_delete_is_reviewed_as_a_delete() {
        assert_eq!(delete_mode(DeleteMode::Soft, ImsKind::Job), "delete");
        assert_eq!(delete_mode(DeleteMode::Soft, ImsKind::Image), "soft delete");
    }
}
