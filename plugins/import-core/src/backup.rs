//! The pre-import backup. HPE's importer backs up the current records only
//! (an export with `--include-deleted --exclude-linked-artifacts`, a
//! directory in `--backup-dir`). imsflow's backup is the same export, plus
//! every S3 object the import deletes or replaces, so that a mistaken
//! import can be undone by importing the backup: `export.json` has the stock
//! export's shape, and the objects are archive members, as the stock export
//! writes them.
use crate::effect::Effect;
use crate::ims::Ims;
use crate::s3::{Head, multipart_parts, split_url};
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// An S3 object the backup keeps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupObject {
    pub url: String,
    pub head: Head,
    /// For a manifest of a current image: the links it lists.
    pub manifest_links: Option<Vec<String>>,
    /// Why the import removes it (`cascade of image <id>`, ...).
    pub reason: String,
}

/// HPE's member naming: `/` becomes `_`, then anything outside
/// `[A-Za-z0-9._-]` is dropped (as the stock export names members).
pub fn flatten(key: &str) -> String {
    let flat: String = key
        .replace('/', "_")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if flat.is_empty() {
        "artifact".into()
    } else {
        flat
    }
}

/// The backup's archive effects: one `archive-add-object` per object, then
/// `export.json` as an index (the host adds each member's sha256 and size).
/// `created` is the run's timestamp; `what` says which import it precedes.
pub fn effects(current: &Ims, objects: &[BackupObject], created: &str, what: &str) -> Vec<Effect> {
    let mut effects = Vec::new();
    let mut artifacts = Map::new();
    let mut used = HashSet::new();
    let mut total = 0;
    for o in objects {
        let Some((bucket, key)) = split_url(&o.url) else {
            continue;
        };
        if artifacts.contains_key(&o.url) {
            continue;
        }
        let base = format!("s3_artifacts/{bucket}/{}", flatten(key));
        let mut relpath = base.clone();
        let mut n = 1;
        while !used.insert(relpath.clone()) {
            n += 1;
            relpath = format!("{base}-{n}");
        }
        let h = &o.head;
        let metadata: Map<String, Value> = h
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let mut describe = Map::new();
        if let Some(r) = &h.accept_ranges {
            describe.insert("AcceptRanges".into(), json!(r));
        }
        if let Some(t) = &h.last_modified {
            describe.insert("LastModified".into(), json!(t));
        }
        describe.insert("ContentLength".into(), json!(h.size));
        describe.insert("ETag".into(), json!(format!("\"{}\"", h.etag)));
        describe.insert("ContentType".into(), json!(h.content_type));
        describe.insert("Metadata".into(), Value::Object(metadata.clone()));
        let mut entry = Map::new();
        entry.insert("relpath".into(), json!(relpath));
        if let Some(links) = &o.manifest_links {
            entry.insert("manifest_links".into(), json!(links));
        }
        entry.insert("describe".into(), json!({ "artifact": describe }));
        entry.insert("size".into(), json!(h.size));
        entry.insert("etag".into(), json!(h.etag));
        entry.insert("content_type".into(), json!(h.content_type));
        entry.insert("metadata".into(), Value::Object(metadata));
        if let Some(parts) = multipart_parts(&h.etag) {
            entry.insert("multipart_parts".into(), json!(parts));
        }
        entry.insert("backup_reason".into(), json!(o.reason));
        artifacts.insert(o.url.clone(), Value::Object(entry));
        total += h.size;
        effects.push(Effect::ArchiveAddObject {
            bucket: bucket.into(),
            key: key.into(),
            path: relpath,
            size: h.size,
            etag: h.etag.clone(),
        });
    }
    let count = |m: &crate::ims::Records| m.len();
    let counts = json!({
        "images": count(&current.images), "public_keys": count(&current.public_keys),
        "recipes": count(&current.recipes), "jobs": count(&current.jobs),
        "deleted": current.deleted.as_ref().map(|d| json!({
            "images": count(&d.images), "public_keys": count(&d.public_keys), "recipes": count(&d.recipes),
        })),
        "artifacts": artifacts.len(), "artifact_bytes": total,
    });
    let s3_data = if artifacts.is_empty() {
        Value::Null
    } else {
        json!({ "artifacts": artifacts, "buckets": {} })
    };
    let doc = json!({
        "bos": null,
        "bss": null,
        "created": created,
        "ims_data": current,
        "product_catalog": null,
        "s3_data": s3_data,
        "imsflow": { "format": 1, "version": env!("CARGO_PKG_VERSION"), "counts": counts, "backup_before": what },
    });
    effects.push(Effect::ArchiveAddIndex {
        path: "export.json".into(),
        json: serde_json::to_string(&doc).expect("serialisable"),
        entries_at: "/s3_data/artifacts".into(),
    });
    effects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::read_export;
    use crate::testdata::*;

    #[test]
    fn a_backup_is_an_export_the_importer_reads_back() {
        let current = current();
        let objects = vec![
            BackupObject {
                url: "s3://boot-images/img-c/manifest.json".into(),
                head: head(60, "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"),
                manifest_links: Some(vec!["s3://boot-images/img-c/rootfs".into()]),
                reason: "cascade of image img-c".into(),
            },
            BackupObject {
                url: "s3://boot-images/img-c/rootfs".into(),
                head: head(70 * MIB, "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1-9"),
                manifest_links: None,
                reason: "cascade of image img-c".into(),
            },
        ];
        let effects = effects(
            &current,
            &objects,
            "20250101000000.000000",
            "import overwrite",
        );
        assert_eq!(effects.len(), 3);
        assert_eq!(
            effects[1],
            Effect::ArchiveAddObject {
                bucket: "boot-images".into(),
                key: "img-c/rootfs".into(),
                path: "s3_artifacts/boot-images/img-c_rootfs".into(),
                size: 70 * MIB,
                etag: "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1-9".into(),
            }
        );
        let Effect::ArchiveAddIndex {
            path,
            json,
            entries_at,
        } = &effects[2]
        else {
            panic!("index last")
        };
        assert_eq!(
            (path.as_str(), entries_at.as_str()),
            ("export.json", "/s3_data/artifacts")
        );
        let doc: Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            doc["ims_data"]["deleted"]["images"]["img-b"],
            img_b_deleted()
        );
        assert_eq!(
            doc["ims_data"]["jobs"]["job-2"],
            job("job-2", "building_image")
        );
        assert_eq!(doc["bos"], Value::Null);
        // Read back as an import would, with the members the host writes.
        let members = vec![
            (
                "s3_artifacts/boot-images/img-c_manifest.json".to_string(),
                60,
            ),
            (
                "s3_artifacts/boot-images/img-c_rootfs".to_string(),
                70 * MIB,
            ),
        ];
        let back = read_export(&doc, &members).unwrap();
        assert_eq!(back.ims, current);
        let rootfs = back.artifact("s3://boot-images/img-c/rootfs").unwrap();
        assert_eq!(
            (rootfs.size, rootfs.etag.as_deref(), rootfs.problems.len()),
            (
                Some(70 * MIB),
                Some("c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1-9"),
                0
            )
        );
        // 70 MiB in 9 parts: 8 MiB.
        assert_eq!(
            crate::restore::upload_of("s3://boot-images/img-c/rootfs", rootfs)
                .unwrap()
                .0
                .part_size,
            Some(8 * MIB)
        );
        let man = back
            .artifact("s3://boot-images/img-c/manifest.json")
            .unwrap();
        assert_eq!(
            man.manifest_links,
            Some(vec!["s3://boot-images/img-c/rootfs".to_string()])
        );
    }

    #[test]
    fn a_records_only_backup_has_no_s3_data() {
        let effects = effects(&current(), &[], "t", "import add");
        let [Effect::ArchiveAddIndex { json, .. }] = effects.as_slice() else {
            panic!("one index")
        };
        let doc: Value = serde_json::from_str(json).unwrap();
        assert_eq!(doc["s3_data"], Value::Null);
        assert_eq!(read_export(&doc, &[]).unwrap().ims, current());
    }
}
