//! The import review an admin reads in a change window: from the strategy
//! step's output (`import_core::modes::Review`), every record with its
//! action (and per-field diff), every delete, S3 objects to upload, present
//! or in conflict with bytes, the data files rewritten, and totals. Every
//! string comes from a plugin: escaped, so none can forge a line.
use imsflow::archive::escaped;
use imsflow::units::bytes;
use serde_json::Value;
use std::fmt::Write;

fn s(v: &Value) -> String {
    escaped(v.as_str().unwrap_or_default()).into_owned()
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
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

/// `{"mode": "purge"}`, `{"mode": "hard", "cascade": true}`...
/// How a review names a delete (`kind` is the record's: IMS jobs have no
/// deleted store, so theirs is a plain delete).
fn delete_mode(d: &Value, kind: &Value) -> String {
    match (d["mode"].as_str(), d["cascade"].as_bool()) {
        (Some("hard"), Some(true)) => "hard delete, cascade".into(),
        (Some("hard"), _) => "hard delete".into(),
        (Some("soft"), _) if kind == "job" => "delete".into(),
        (Some("soft"), _) => "soft delete".into(),
        (Some(mode), _) => escaped(mode).into_owned(),
        (None, _) => escaped(&d.to_string()).into_owned(),
    }
}

pub fn render(review: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Import review (mode {}):", s(&review["mode"]));
    let records = list(&review["records"]);
    let _ = writeln!(out, "\nRecords in the archive: {}", records.len());
    for r in records {
        let _ = write!(
            out,
            "  {:<8} {:<10} {}  {}",
            s(&r["action"]),
            s(&r["kind"]),
            s(&r["id"]),
            s(&r["name"])
        );
        let diff: Vec<String> = list(&r["diff"])
            .iter()
            .map(|d| match d["change"].as_str() {
                Some("changed") => format!(
                    "{} {} -> {}",
                    s(&d["field"]),
                    short(&d["from"]),
                    short(&d["to"])
                ),
                Some(change) => format!("{} {change}", s(&d["field"])),
                None => s(&d["field"]),
            })
            .collect();
        if !diff.is_empty() {
            let _ = write!(out, ": {}", diff.join("; "));
        }
        out.push('\n');
    }
    let deletes = list(&review["deletes"]);
    let _ = writeln!(out, "\nDeletes: {}", deletes.len());
    for d in deletes {
        let _ = writeln!(
            out,
            "  {:<22} {:<10} {}  {} ({}; {} S3 object(s))",
            delete_mode(&d["delete"], &d["kind"]),
            s(&d["kind"]),
            s(&d["id"]),
            s(&d["name"]),
            s(&d["why"]),
            list(&d["objects"]).len()
        );
    }
    let sum = &review["s3_summary"];
    let n = |k: &str| list(&sum[k]).len();
    let b = |k: &str| bytes(sum[k].as_u64().unwrap_or(0));
    let _ = writeln!(
        out,
        "\nS3 objects: {} to upload ({}), {} already present and identical ({}), {} in conflict ({}, kept)",
        n("upload"),
        b("upload_bytes"),
        n("present"),
        b("present_bytes"),
        n("conflict"),
        b("conflict_bytes")
    );
    for t in list(&review["s3"]) {
        let status = t["status"].as_str().unwrap_or_default();
        if status == "present" {
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<8} {} ({}){}",
            status,
            s(&t["url"]),
            bytes(t["bytes"].as_u64().unwrap_or(0)),
            if status == "upload" {
                String::new()
            } else {
                format!(": {}", s(&t["why"]))
            }
        );
    }
    let writes = list(&review["store_writes"]);
    let _ = writeln!(out, "\nIMS data files rewritten: {}", writes.len());
    for w in writes {
        let summary = &w["summary"];
        let _ = writeln!(
            out,
            "  {:<10} {} record(s): {} added, {} replaced, {} removed",
            s(&w["kind"]),
            w["count"],
            list(&summary["added"]).len(),
            list(&summary["replaced"]).len(),
            list(&summary["removed"]).len()
        );
    }
    let _ = writeln!(
        out,
        "IMS restart: {}",
        if review["restart"] == true {
            "yes"
        } else {
            "no"
        }
    );
    let backup = &review["backup"];
    if backup["written"] == true {
        let _ = writeln!(
            out,
            "Pre-import backup: the current records and {} S3 object(s) ({})",
            list(&backup["objects"]).len(),
            bytes(backup["bytes"].as_u64().unwrap_or(0))
        );
    }
    for w in list(&review["warnings"]) {
        let _ = writeln!(out, "warning: {}", s(w));
    }
    for d in list(&review["differences_from_hpe"]) {
        let _ = writeln!(out, "differs from HPE's importer: {}", s(d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_delete_is_reviewed_as_a_delete() {
        let soft = serde_json::json!({ "mode": "soft" });
        assert_eq!(delete_mode(&soft, &serde_json::json!("job")), "delete");
        assert_eq!(
            delete_mode(&soft, &serde_json::json!("image")),
            "soft delete"
        );
    }
}
