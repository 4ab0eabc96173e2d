//! Phase "backup", the S3 part: the objects the deletes remove (cascade,
//! purge) that the archive does not restore byte for byte. Soft deletes
//! move objects, they are not lost. The backup's effects are
//! [`crate::backup::effects`].
use super::Inputs;
use super::review::DeleteAction;
use crate::backup::BackupObject;
use crate::effect::DeleteMode;
use crate::restore::{Status, TargetPlan};

pub(super) fn backup_objects(
    inputs: &Inputs,
    deletes: &[DeleteAction],
    s3_plans: &[TargetPlan],
) -> Vec<BackupObject> {
    let s3 = inputs.s3;
    let mut objects: Vec<BackupObject> = Vec::new();
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
            if restored_identically || objects.iter().any(|b| &b.url == url) {
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
            objects.push(BackupObject {
                url: url.clone(),
                head: head.clone(),
                manifest_links,
                reason: format!("{how} of {} {}", d.kind.noun(), d.id),
            });
        }
    }
    objects
}
