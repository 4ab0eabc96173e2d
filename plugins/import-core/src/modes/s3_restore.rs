//! Phase "s3-restore": each S3 object the imported records need, decided
//! against S3 as the deletes leave it (the classification itself is
//! [`crate::restore`]).
use super::review::DeleteAction;
use super::{Inputs, Notes};
use crate::effect::DeleteMode;
use crate::restore::{self, Status, Target, TargetPlan};
use std::collections::BTreeMap;

pub(super) fn s3_restore(
    inputs: &Inputs,
    targets: &[Target],
    deletes: &[DeleteAction],
    notes: &mut Notes,
) -> Vec<TargetPlan> {
    let mut removed_by: BTreeMap<&str, String> = BTreeMap::new();
    for d in deletes {
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
    let mut plans = Vec::new();
    for t in targets {
        let Some(now) = inputs.s3.objects.get(&t.url) else {
            notes
                .problems
                .push(format!("{}: s3-restore-plan did not look at it", t.url));
            continue;
        };
        let plan = restore::classify(
            t,
            inputs.archive,
            now.as_ref(),
            removed_by.get(t.url.as_str()).map(String::as_str),
        );
        match plan.status {
            Status::Missing => notes.problems.push(format!(
                "{} (needed by {}): {}",
                t.url,
                t.owners.join(", "),
                plan.why
            )),
            Status::Unavailable => notes.warnings.push(format!(
                "{} (needed by {}): {}",
                t.url,
                t.owners.join(", "),
                plan.why
            )),
            Status::Conflict => notes
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
            notes.warnings.push(format!("{}: {}", t.url, plan.why));
        }
        plans.push(plan);
    }
    if plans.iter().any(|t| t.status == Status::Conflict) {
        notes.differences.push("objects that exist with another ETag are reported as conflicts (HPE keeps them silently); they are kept".into());
    }
    plans
}
