//! Post-import verification: what the effect that ends every import (an
//! `assert` of the import's end state, executed by `apply/verify.rs`) reads. IMS is read back through its API and S3 through HEAD, and compared
//! with what the plan says they must now hold. Independent of the executors'
//! own checks: it reads the end state, not what was sent.
use crate::backends::Backends;
use crate::plan::Plan;
use crate::plan::effect::{DeleteMode, Effect, ImsKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What the verification found (journalled with its `done` record).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostCheck {
    /// Records compared, per kind (`images`, `deleted images`...).
    pub records: BTreeMap<String, usize>,
    /// Records found under their planned ids, for the summary.
    pub ids_preserved: usize,
    pub objects: usize,
    /// ETags that differ from the exported ones (the upload could not
    /// reproduce them): references quoting them will not match.
    pub etag_changes: Vec<String>,
    /// Records IMS holds that an additive write (`add`, `update`) kept
    /// although the plan does not know them: IMS accepted them after
    /// planning.
    pub kept: Vec<String>,
    pub differences: Vec<String>,
}

impl PostCheck {
    /// The line every import ends with.
    pub fn line(&self) -> String {
        let kinds: Vec<String> = self
            .records
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        format!(
            "Post-import verification: {} record(s) back under their original ids ({}); {} S3 object(s) checked; {} difference(s)",
            self.ids_preserved,
            kinds.join(", "),
            self.objects,
            self.differences.len()
        )
    }
}

/// Whether a data-file write of `plan` puts the record `id` of `kind` back,
/// so that a delete of it is not expected to have left it gone.
pub fn rewritten(plan: &Plan, kind: ImsKind, id: &str) -> bool {
    plan.effects.iter().any(|w| {
        matches!(&w.effect,
        Effect::ImsStoreWrite { ims_kind: k, records_json, .. }
            if *k == kind && records_json.contains(&format!("\"{id}\"")))
    })
}

fn segment(kind: ImsKind, deleted: bool) -> String {
    let s = match kind {
        ImsKind::Image => "images",
        ImsKind::Recipe => "recipes",
        ImsKind::PublicKey => "public-keys",
        ImsKind::Job => "jobs",
    };
    if deleted {
        format!("v3/deleted/{s}")
    } else {
        format!("v3/{s}")
    }
}

/// Compares IMS and S3 with the end state `plan` describes.
pub async fn check(plan: &Plan, backends: &Backends) -> PostCheck {
    let mut out = PostCheck::default();
    for e in &plan.effects {
        match &e.effect {
            Effect::ImsStoreWrite {
                ims_kind,
                deleted,
                records_json,
                ..
            } => {
                let path = segment(*ims_kind, *deleted);
                let what = format!(
                    "{}{}s",
                    if *deleted { "deleted " } else { "" },
                    ims_kind.name()
                );
                let want: Vec<Value> = match serde_json::from_str(records_json) {
                    Ok(v) => v,
                    Err(e) => {
                        out.differences.push(format!(
                            "{what}: the plan's records are not a JSON list: {e}"
                        ));
                        continue;
                    }
                };
                let others = plan.additive_write(&e.effect);
                let have = match backends.service_get("ims", &path).await {
                    Err(e) => Err(format!("GET ims/{path}: {e}")),
                    Ok(r) if r.status != 200 => Err(format!("GET ims/{path}: HTTP {}", r.status)),
                    Ok(r) => serde_json::from_str(&r.body)
                        .map_err(|e| format!("GET ims/{path}: not JSON: {e}")),
                };
                match have {
                    Ok(Value::Array(have)) => compare(&what, &want, &have, others, &mut out),
                    Ok(_) => out.differences.push(format!("GET ims/{path}: not a list")),
                    Err(difference) => out.differences.push(difference),
                }
            }
            Effect::ImsDelete {
                ims_kind,
                id,
                delete,
                ..
            } => {
                // The record is gone from where it was; a soft delete keeps it
                // in the deleted store, unless a later store write put it back.
                let from = segment(*ims_kind, matches!(delete, DeleteMode::Purge));
                if !rewritten(plan, *ims_kind, id)
                    && let Ok(r) = backends.service_get("ims", &format!("{from}/{id}")).await
                    && r.status != 404
                {
                    out.differences.push(format!(
                        "{} {id} was to be deleted from ims/{from}, but it is still there (HTTP {})",
                        ims_kind.name(),
                        r.status
                    ));
                }
            }
            Effect::S3UploadFromArchive {
                bucket,
                key,
                size,
                etag,
                ..
            } => {
                out.objects += 1;
                let Some(s3) = backends.s3.as_deref() else {
                    out.differences
                        .push("no S3 endpoint to check uploads".into());
                    continue;
                };
                match s3.head(bucket, key).await {
                    Ok(Some(h)) if h.size != *size => out.differences.push(format!(
                        "s3://{bucket}/{key} has {} bytes, the archive {size}",
                        h.size
                    )),
                    Ok(Some(h)) => {
                        if let Some(want) = etag.as_ref().filter(|w| **w != h.etag) {
                            out.etag_changes.push(format!(
                                "s3://{bucket}/{key}: ETag {} (exported {want})",
                                h.etag
                            ));
                        }
                    }
                    Ok(None) => out
                        .differences
                        .push(format!("s3://{bucket}/{key} is missing")),
                    Err(e) => out.differences.push(format!("s3://{bucket}/{key}: {e}")),
                }
            }
            _ => {}
        }
    }
    out
}

/// Every planned record is there under its id with the planned fields, and
/// nothing else is, unless `others` are allowed (an additive write keeps
/// what IMS accepted after planning).
fn compare(what: &str, want: &[Value], have: &[Value], others: bool, out: &mut PostCheck) {
    let id = |r: &Value| {
        r.get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let have: BTreeMap<String, &Value> = have.iter().map(|r| (id(r), r)).collect();
    *out.records.entry(what.to_string()).or_default() += want.len();
    for w in want {
        let wid = id(w);
        match have.get(&wid) {
            None => out.differences.push(format!("{what}: {wid} is missing")),
            Some(h) => {
                out.ids_preserved += 1;
                let fields: Vec<&str> = w
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(k, v)| h.get(k.as_str()) != Some(v))
                            .map(|(k, _)| k.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                if !fields.is_empty() {
                    out.differences
                        .push(format!("{what}: {wid} differs in {}", fields.join(", ")));
                }
            }
        }
    }
    let planned: std::collections::BTreeSet<String> = want.iter().map(id).collect();
    for extra in have.keys().filter(|k| !planned.contains(*k)) {
        if others {
            out.kept.push(format!("{what}: {extra}"));
        } else {
            out.differences
                .push(format!("{what}: {extra} is there but not in the plan"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_an_extra_and_a_changed_record_are_each_named() {
        let want = vec![
            serde_json::json!({"id": "a", "name": "x"}),
            serde_json::json!({"id": "b", "name": "y"}),
        ];
        let have = vec![
            serde_json::json!({"id": "a", "name": "x2"}),
            serde_json::json!({"id": "c", "name": "z"}),
        ];
        let mut out = PostCheck::default();
        compare("images", &want, &have, false, &mut out);
        assert_eq!(
            out.differences,
            vec![
                "images: a differs in name",
                "images: b is missing",
                "images: c is there but not in the plan"
            ]
        );
        assert_eq!(out.ids_preserved, 1);
        // An additive write keeps the extra one: not a difference.
        let mut kept = PostCheck::default();
        compare("images", &want, &have, true, &mut kept);
        assert_eq!(kept.kept, vec!["images: c"]);
        assert_eq!(kept.differences.len(), 2, "{:?}", kept.differences);
    }
}
