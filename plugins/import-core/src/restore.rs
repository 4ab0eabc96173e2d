//! The S3 restore plan. HPE's `update_s3` uploads, for the exported
//! (non-deleted) records it imports: each recipe's `link.path`, each image's
//! manifest (`link.path`) and the manifest's `manifest_links`, and the
//! BOS/BSS/product-catalog links with theirs. Artifacts of deleted records
//! are never uploaded. HPE uploads a target only when its key is absent and
//! keeps whatever is there otherwise; here a target that exists is `present`
//! when its ETag (and size) match the export and a `conflict` when not: the
//! conflict is reported, and not overwritten.
use crate::archive::{ArchiveData, Artifact};
use crate::effect::{Precondition, Upload};
use crate::ims::{Ims, Records, link_path};
use crate::s3::{Head, bare_etag, multipart_parts, part_size_for_etag, split_url};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A URL the import restores and who needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub url: String,
    /// e.g. `image <id>`, `manifest of image <id>`, `recipe <id>`, `BOS`.
    pub owners: Vec<String>,
}

/// The target set, as HPE computes it, for the given exported images and
/// recipes (all of them, or what a mode keeps) plus the archive's link
/// sources. Within it, a manifest's artifacts come before the manifest, so
/// that a manifest present in S3 means its artifacts are too.
pub fn targets(archive: &ArchiveData, images: &Records, recipes: &Records) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let mut add = |url: &str, owner: String| match out.iter_mut().find(|t| t.url == url) {
        Some(t) => {
            if !t.owners.contains(&owner) {
                t.owners.push(owner)
            }
        }
        None => out.push(Target {
            url: url.to_string(),
            owners: vec![owner],
        }),
    };
    let manifest_links = |url: &str| -> Vec<String> {
        archive
            .artifact(url)
            .and_then(|a| a.manifest_links.clone())
            .unwrap_or_default()
    };
    for (id, image) in images {
        if let Some(url) = link_path(image) {
            for l in manifest_links(url) {
                add(&l, format!("manifest of image {id}"));
            }
            add(url, format!("image {id}"));
        }
    }
    for (id, recipe) in recipes {
        if let Some(url) = link_path(recipe) {
            add(url, format!("recipe {id}"));
        }
    }
    let site: Vec<(String, &Option<Vec<String>>)> = archive
        .link_sources
        .iter()
        .map(|(name, links)| (format!("site link source {name}"), links))
        .collect();
    let stock = [
        ("BOS".to_string(), &archive.bos),
        ("BSS".to_string(), &archive.bss),
        ("product catalog".to_string(), &archive.product_catalog),
    ];
    for (source, links) in stock.into_iter().chain(site) {
        for url in links.iter().flatten() {
            for l in manifest_links(url) {
                add(&l, format!("manifest {url} ({source})"));
            }
            add(url, source.clone());
        }
    }
    out
}

/// What the import does about one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Absent (or removed by the plan's deletes first): uploaded from the archive.
    Upload,
    /// Exists with the exported ETag and size: nothing to do.
    Present,
    /// Exists with another ETag or size: reported, kept.
    Conflict,
    /// Absent and the archive cannot restore it (no entry, no member, wrong
    /// size): the import refuses.
    Missing,
    /// Absent, and the archive carries no S3 data at all (`s3_data: null`):
    /// the records import without it (a warning).
    Unavailable,
}

/// One target, decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetPlan {
    pub url: String,
    pub owners: Vec<String>,
    pub status: Status,
    /// Why, in words, for review.
    pub why: String,
    /// The object at plan time, if any.
    pub current: Option<Head>,
    /// The planned delete that removes the object before the upload.
    pub removed_by: Option<String>,
    /// The upload, for `upload`.
    pub upload: Option<Upload>,
    /// Bytes: the upload's, the present object's, the conflicting object's.
    pub bytes: u64,
}

/// Decides one target: `now` is its HEAD at plan time, `removed_by` names
/// the planned delete that removes it before the restore (it is then
/// absent when the upload runs).
pub fn classify(
    target: &Target,
    archive: &ArchiveData,
    now: Option<&Head>,
    removed_by: Option<&str>,
) -> TargetPlan {
    let entry = archive.artifact(&target.url);
    let mut plan = TargetPlan {
        url: target.url.clone(),
        owners: target.owners.clone(),
        status: Status::Upload,
        why: String::new(),
        current: now.cloned(),
        removed_by: removed_by.map(String::from),
        upload: None,
        bytes: 0,
    };
    let at_upload = if removed_by.is_some() { None } else { now };
    if let Some(h) = at_upload {
        plan.bytes = h.size;
        let want_size = entry.and_then(|e| e.size.or(e.member_size));
        let size_ok = want_size.is_none_or(|s| s == h.size);
        let (status, why) = match entry.and_then(|e| e.etag.as_deref()) {
            Some(etag) if bare_etag(&h.etag) == etag && size_ok => (
                Status::Present,
                format!("present with the exported ETag {etag}"),
            ),
            Some(etag) => (
                Status::Conflict,
                format!(
                    "exists with ETag {} ({} bytes), the export has ETag {etag} ({} bytes): kept, not overwritten",
                    h.etag,
                    h.size,
                    show(want_size)
                ),
            ),
            None if entry.is_none() => (
                Status::Present,
                "present; the archive does not describe it".into(),
            ),
            None if size_ok => (
                Status::Present,
                format!(
                    "present with the exported size ({} bytes); the export records no ETag",
                    h.size
                ),
            ),
            None => (
                Status::Conflict,
                format!(
                    "exists with {} bytes, the archive has {}: kept, not overwritten",
                    h.size,
                    show(want_size)
                ),
            ),
        };
        plan.status = status;
        plan.why = why;
        return plan;
    }
    let gone = match (removed_by, now) {
        (Some(by), Some(_)) => format!("deleted first ({by})"),
        _ => "absent".to_string(),
    };
    let Some(entry) = entry else {
        (plan.status, plan.why) = if archive.artifacts.is_none() {
            (
                Status::Unavailable,
                format!("{gone}, and the archive has no S3 data (s3_data is null)"),
            )
        } else {
            (
                Status::Missing,
                format!("{gone}, and export.json has no artifact entry for it"),
            )
        };
        return plan;
    };
    match upload_of(&target.url, entry) {
        Ok((upload, note)) => {
            plan.bytes = upload.size;
            plan.why = format!("{gone}: uploaded from {}{note}", upload.path);
            plan.upload = Some(upload);
        }
        Err(why) => {
            plan.status = Status::Missing;
            plan.why = format!("{gone}, and {why}");
        }
    }
    plan
}

fn show(size: Option<u64>) -> String {
    size.map_or("an unknown size".into(), |s| s.to_string())
}

/// The upload that restores `url` from its archive entry, with a note when
/// the exported ETag cannot be reproduced.
pub fn upload_of(url: &str, entry: &Artifact) -> Result<(Upload, String), String> {
    if let Some(p) = entry.problems.first() {
        return Err(p.clone());
    }
    let (Some((bucket, key)), Some(size)) = (split_url(url), entry.member_size) else {
        return Err(format!("the archive has no member {}", entry.relpath));
    };
    let part_size = entry.part_size.or_else(|| {
        entry
            .etag
            .as_deref()
            .and_then(|e| part_size_for_etag(e, size))
    });
    let note = match (&entry.etag, part_size) {
        (Some(e), None) if multipart_parts(e).is_some() => {
            format!(" (no part size gives ETag {e} for {size} bytes: the new ETag will differ)")
        }
        _ => String::new(),
    };
    Ok((
        Upload {
            path: entry.relpath.clone(),
            bucket: bucket.into(),
            key: key.into(),
            size,
            sha256: entry.sha256.clone(),
            content_type: entry.content_type.clone(),
            metadata: entry.metadata.clone(),
            part_size,
            etag: entry.etag.clone(),
            precondition: Precondition::Absent,
        },
        note,
    ))
}

/// The targets by status, with bytes, for review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub upload: Vec<String>,
    pub present: Vec<String>,
    pub conflict: Vec<String>,
    pub missing: Vec<String>,
    pub unavailable: Vec<String>,
    pub upload_bytes: u64,
    pub present_bytes: u64,
    pub conflict_bytes: u64,
}

pub fn summarize(plans: &[TargetPlan]) -> Summary {
    let mut s = Summary::default();
    for p in plans {
        let url = p.url.clone();
        match p.status {
            Status::Upload => {
                s.upload.push(url);
                s.upload_bytes += p.bytes;
            }
            Status::Present => {
                s.present.push(url);
                s.present_bytes += p.bytes;
            }
            Status::Conflict => {
                s.conflict.push(url);
                s.conflict_bytes += p.bytes;
            }
            Status::Missing => s.missing.push(url),
            Status::Unavailable => s.unavailable.push(url),
        }
    }
    s
}

/// A current image's manifest as `s3-restore-plan` read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Its artifacts' `link.path`s, in order, unique.
    pub links: Vec<String>,
    /// Why it could not be read, if it could not.
    pub error: Option<String>,
}

/// The artifact links a manifest lists (`artifacts[].link.path`).
pub fn manifest_links(bytes: &[u8]) -> Result<Vec<String>, String> {
    let manifest: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let artifacts = manifest
        .get("artifacts")
        .and_then(Value::as_array)
        .ok_or("no 'artifacts' list")?;
    let mut links: Vec<String> = Vec::new();
    for a in artifacts {
        if let Some(p) = a
            .pointer("/link/path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            && !links.iter().any(|l| l == p)
        {
            links.push(p.to_string());
        }
    }
    Ok(links)
}

/// What `s3-restore-plan` outputs: what it saw of S3, and the full target
/// set decided (before any mode filters it or plans deletes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3State {
    /// Every object looked at: its HEAD, or `null` when absent.
    pub objects: BTreeMap<String, Option<Head>>,
    /// The manifests of current images (live and deleted) that exist, by URL.
    pub manifests: BTreeMap<String, Manifest>,
    pub targets: Vec<TargetPlan>,
    pub summary: Summary,
}

/// The URLs `s3-restore-plan` HEADs first: every target of the archive, and
/// every current record's link (a hard delete cascades only when it exists).
pub fn urls_to_head(archive: &ArchiveData, current: &Ims) -> Vec<String> {
    let mut urls: Vec<String> = targets(archive, &archive.ims.images, &archive.ims.recipes)
        .into_iter()
        .map(|t| t.url)
        .collect();
    for (_, r) in current_linked(current) {
        if let Some(p) = link_path(r)
            && !urls.iter().any(|u| u == p)
        {
            urls.push(p.to_string());
        }
    }
    urls
}

/// Current images and recipes, live and deleted: (is image, record).
fn current_linked(current: &Ims) -> impl Iterator<Item = (bool, &Value)> {
    let d = current.deleted.as_ref();
    let images = current
        .images
        .values()
        .chain(d.into_iter().flat_map(|d| d.images.values()))
        .map(|r| (true, r));
    let recipes = current
        .recipes
        .values()
        .chain(d.into_iter().flat_map(|d| d.recipes.values()))
        .map(|r| (false, r));
    images.chain(recipes)
}

/// The manifests to read: links of current images (live and deleted) that
/// exist per `objects`. A delete of such an image removes what it lists.
pub fn manifests_to_read(current: &Ims, objects: &BTreeMap<String, Option<Head>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (is_image, r) in current_linked(current) {
        if let Some(p) = link_path(r)
            && is_image
            && matches!(objects.get(p), Some(Some(_)))
            && !out.iter().any(|u| u == p)
        {
            out.push(p.to_string());
        }
    }
    out
}

/// Decides every target of the archive against `objects` (nothing deleted
/// first): the review `s3-restore-plan` outputs.
pub fn plan_all(
    archive: &ArchiveData,
    objects: &BTreeMap<String, Option<Head>>,
) -> Vec<TargetPlan> {
    targets(archive, &archive.ims.images, &archive.ims.recipes)
        .iter()
        .map(|t| {
            classify(
                t,
                archive,
                objects.get(&t.url).and_then(Option::as_ref),
                None,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::*;

    #[test]
    fn the_target_set_is_hpes() {
        let a = archive();
        let t = targets(&a, &a.ims.images, &a.ims.recipes);
        let urls: Vec<&str> = t.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(
            urls,
            vec![
                "s3://boot-images/img-a/rootfs",
                "s3://boot-images/img-a/kernel",
                "s3://boot-images/img-a/manifest.json",
                "s3://boot-images/img-b/rootfs",
                "s3://boot-images/img-b/manifest.json",
                "s3://ims/recipes/rec-a/recipe.tar.gz",
                "s3://boot-images/k8s/kernel",
            ],
            "deleted image img-d's artifacts are never targets"
        );
        assert_eq!(t[6].owners, vec!["BSS"]);
        assert_eq!(t[2].owners, vec!["image img-a", "BOS"]);
    }

    #[test]
    fn absent_objects_upload_with_their_recorded_attributes() {
        let a = archive();
        let t = Target {
            url: "s3://boot-images/img-a/rootfs".into(),
            owners: vec![],
        };
        let p = classify(&t, &a, None, None);
        assert_eq!(p.status, Status::Upload);
        assert_eq!(
            p.upload,
            Some(Upload {
                path: "s3_artifacts/boot-images/img-a_rootfs".into(),
                bucket: "boot-images".into(),
                key: "img-a/rootfs".into(),
                size: 12 * MIB,
                sha256: None,
                content_type: Some("application/octet-stream".into()),
                metadata: [("md5sum".to_string(), "m".to_string())]
                    .into_iter()
                    .collect(),
                // `-3` over 12 MiB: 5 MiB parts, not boto3's 8 MiB.
                part_size: Some(5 * MIB),
                etag: Some(ROOTFS_ETAG.into()),
                precondition: Precondition::Absent,
            })
        );
        assert_eq!(p.bytes, 12 * MIB);
    }

    #[test]
    fn an_identical_object_is_present_and_a_different_one_a_conflict() {
        let a = archive();
        let t = Target {
            url: "s3://boot-images/img-a/rootfs".into(),
            owners: vec![],
        };
        let same = head(12 * MIB, &format!("\"{ROOTFS_ETAG}\""));
        assert_eq!(classify(&t, &a, Some(&same), None).status, Status::Present);
        let changed = head(12 * MIB, "ffffffffffffffffffffffffffffffff-2");
        let p = classify(&t, &a, Some(&changed), None);
        assert_eq!(p.status, Status::Conflict);
        assert_eq!(p.upload, None, "a conflict is never overwritten");
        let resized = head(1, ROOTFS_ETAG);
        assert_eq!(
            classify(&t, &a, Some(&resized), None).status,
            Status::Conflict
        );
        // Deleted first by the plan: uploaded, as absent.
        let p = classify(&t, &a, Some(&changed), Some("cascade of image img-a"));
        assert_eq!(p.status, Status::Upload);
        assert_eq!(p.upload.unwrap().precondition, Precondition::Absent);
    }

    #[test]
    fn an_absent_target_without_a_member_is_missing() {
        let a = archive();
        // extra/file's entry names a member the archive lacks.
        let t = Target {
            url: "s3://boot-images/extra/file".into(),
            owners: vec![],
        };
        let p = classify(&t, &a, None, None);
        assert_eq!(p.status, Status::Missing);
        assert_eq!(
            p.why,
            "absent, and the archive has no member s3_artifacts/boot-images/extra_file"
        );
        let t = Target {
            url: "s3://boot-images/none".into(),
            owners: vec![],
        };
        assert_eq!(classify(&t, &a, None, None).status, Status::Missing);
    }

    #[test]
    fn without_s3_data_absent_targets_are_unavailable() {
        let mut a = archive();
        a.artifacts = None;
        let t = Target {
            url: "s3://boot-images/img-a/rootfs".into(),
            owners: vec![],
        };
        assert_eq!(classify(&t, &a, None, None).status, Status::Unavailable);
        assert_eq!(
            classify(&t, &a, Some(&head(1, "x")), None).status,
            Status::Present
        );
    }

    /// An HPE archive records no sha256 or part size: the ETag and size come
    /// from `describe`, the part size from the ETag.
    #[test]
    fn an_hpe_entry_uploads_with_the_part_size_its_etag_implies() {
        let doc = serde_json::json!({
            "created": "x",
            "ims_data": {"deleted": null, "images": {}, "jobs": {}, "public_keys": {}, "recipes": {}},
            "bss": ["s3://boot-images/k8s/rootfs"],
            "s3_data": {"artifacts": {"s3://boot-images/k8s/rootfs": {
                "relpath": "s3_artifacts/boot-images/k8s_rootfs",
                "describe": {"artifact": {"ContentLength": 20 * MIB, "ETag": "\"0123456789abcdef0123456789abcdef-2\"",
                    "ContentType": "binary/octet-stream", "Metadata": {}}}}}}
        });
        let members = vec![("s3_artifacts/boot-images/k8s_rootfs".to_string(), 20 * MIB)];
        let a = crate::archive::read_export(&doc, &members).unwrap();
        let plans = plan_all(
            &a,
            &[("s3://boot-images/k8s/rootfs".to_string(), None)]
                .into_iter()
                .collect(),
        );
        let u = plans[0].upload.clone().unwrap();
        assert_eq!(
            (
                u.sha256,
                u.part_size,
                u.etag.as_deref(),
                u.content_type.as_deref()
            ),
            (
                None,
                Some(16 * MIB),
                Some("0123456789abcdef0123456789abcdef-2"),
                Some("binary/octet-stream")
            )
        );
        assert_eq!(summarize(&plans).upload_bytes, 20 * MIB);
    }

    #[test]
    fn the_restore_plan_looks_at_current_links_and_their_manifests() {
        let (a, current, s3) = (archive(), current(), s3());
        let urls = urls_to_head(&a, &current);
        assert_eq!(
            urls[7..],
            [
                "s3://boot-images/img-c/manifest.json",
                "s3://boot-images/deleted/img-b/deleted_manifest.json",
                "s3://ims/recipes/rec-c/recipe.tar.gz",
                "s3://ims/deleted/recipes/rec-old/recipe.tar.gz",
            ],
            "after the seven targets: every current record's link, live then deleted"
        );
        assert_eq!(
            manifests_to_read(&current, &s3.objects),
            vec![
                "s3://boot-images/img-a/manifest.json",
                "s3://boot-images/img-c/manifest.json",
                "s3://boot-images/deleted/img-b/deleted_manifest.json",
            ]
        );
    }

    #[test]
    fn manifests_list_their_artifact_links_once() {
        let m = br#"{"version":"1.0","artifacts":[{"link":{"path":"s3://b/x"}},{"link":{"path":"s3://b/y"}},{"link":{"path":"s3://b/x"}},{"md5":"m"}]}"#;
        assert_eq!(manifest_links(m).unwrap(), vec!["s3://b/x", "s3://b/y"]);
        assert!(manifest_links(b"{}").is_err());
    }
}
