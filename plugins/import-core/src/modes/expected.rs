//! What IMS and S3 must hold after the import (the verify phase's oracle):
//! what stays deleted, which jobs remain, and each object the import leaves.
use super::review::{DeleteAction, Expected, ExpectedObject};
use super::store::empties;
use super::{Inputs, Mode, deleted_of};
use crate::effect::{DeleteMode, Kind};
use crate::restore::{Status, TargetPlan};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn expected(
    mode: Mode,
    inputs: &Inputs,
    live: BTreeMap<String, Vec<String>>,
    deletes: &[DeleteAction],
    s3_plans: &[TargetPlan],
) -> Expected {
    let current = inputs.current;
    let mut expected = Expected {
        live,
        ..Expected::default()
    };
    for kind in Kind::RECORDS {
        let mut ids: BTreeSet<String> = deleted_of(current, kind).keys().cloned().collect();
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
    expected.jobs = if empties(mode) {
        Vec::new()
    } else {
        current.jobs.keys().cloned().collect()
    };
    for t in s3_plans {
        let entry = inputs.archive.artifact(&t.url);
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
    expected
}
