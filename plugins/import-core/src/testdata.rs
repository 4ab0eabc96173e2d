//! One archive and one running system that exercise every rule; the tests
//! write out by hand what each mode must do with them.
//!
//! Archive: images img-a (manifest lists rootfs and kernel) and img-b
//! (manifest lists rootfs), public key key-a, recipe rec-a, job job-x, a
//! deleted image img-d; BOS links img-a's manifest, BSS links k8s/kernel.
//!
//! System: live images img-a (renamed since the export) and img-c, public
//! keys key-a (as exported) and key-c, recipe rec-c (its object is gone);
//! deleted image img-b (collides with the archive's live img-b) and deleted
//! recipe rec-old; jobs job-1 (done) and job-2 (running).
//!
//! S3: img-a's manifest as exported, img-a's rootfs changed (a conflict),
//! img-a's kernel absent; img-b and rec-a absent; k8s/kernel as exported;
//! img-c's manifest and rootfs; img-b's and rec-old's deleted objects.
use crate::archive::{ArchiveData, read_export};
use crate::ims::Ims;
use crate::restore::{Manifest, S3State};
use crate::s3::Head;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const MIB: u64 = 1 << 20;
pub const ROOTFS_ETAG: &str = "11111111111111111111111111111111-3";
pub const MAN_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const KERNEL: &str = "cccccccccccccccccccccccccccccccc";
pub const MAN_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
pub const ROOTFS_B: &str = "dddddddddddddddddddddddddddddddd";
pub const RECIPE: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
pub const K8S: &str = "99999999999999999999999999999999";
pub const CHANGED: &str = "ffffffffffffffffffffffffffffffff-2";

pub fn head(size: u64, etag: &str) -> Head {
    Head {
        size,
        etag: etag.into(),
        ..Head::default()
    }
}

fn link(path: &str) -> Value {
    json!({"type": "s3", "path": path, "etag": ""})
}

pub fn img_a_exported() -> Value {
    json!({"id": "img-a", "created": "2024-01-02T00:00:00", "name": "a", "arch": "x86_64", "metadata": {},
        "link": link("s3://boot-images/img-a/manifest.json")})
}

pub fn img_a_current() -> Value {
    json!({"id": "img-a", "created": "2024-01-02T00:00:00", "name": "a-renamed", "arch": "x86_64", "metadata": {},
        "link": link("s3://boot-images/img-a/manifest.json")})
}

pub fn img_b() -> Value {
    json!({"id": "img-b", "created": "2024-01-01T00:00:00", "name": "b", "link": link("s3://boot-images/img-b/manifest.json")})
}

pub fn key_a() -> Value {
    json!({"id": "key-a", "created": "2024-01-03T00:00:00", "name": "ka", "public_key": "ssh-ed25519 A"})
}

pub fn rec_a() -> Value {
    json!({"id": "rec-a", "created": "2024-01-04T00:00:00", "name": "ra", "recipe_type": "kiwi-ng",
        "link": link("s3://ims/recipes/rec-a/recipe.tar.gz")})
}

pub fn img_c() -> Value {
    json!({"id": "img-c", "created": "2023-06-01T00:00:00", "name": "c", "link": link("s3://boot-images/img-c/manifest.json")})
}

pub fn key_c() -> Value {
    json!({"id": "key-c", "created": "2023-06-02T00:00:00", "name": "kc", "public_key": "ssh-ed25519 C"})
}

pub fn rec_c() -> Value {
    json!({"id": "rec-c", "created": "2023-06-03T00:00:00", "name": "rc", "link": link("s3://ims/recipes/rec-c/recipe.tar.gz")})
}

pub fn img_b_deleted() -> Value {
    json!({"id": "img-b", "created": "2023-01-01T00:00:00", "deleted": "2023-02-01T00:00:00", "name": "old-b",
        "link": link("s3://boot-images/deleted/img-b/deleted_manifest.json")})
}

pub fn rec_old_deleted() -> Value {
    json!({"id": "rec-old", "created": "2022-01-01T00:00:00", "deleted": "2022-02-01T00:00:00", "name": "old",
        "link": link("s3://ims/deleted/recipes/rec-old/recipe.tar.gz")})
}

pub fn job(id: &str, status: &str) -> Value {
    json!({"id": id, "created": "2024-02-01T00:00:00", "status": status, "job_type": "create"})
}

fn entry(relpath: &str, size: u64, etag: &str) -> Value {
    json!({"relpath": relpath, "size": size, "etag": etag, "content_type": "application/octet-stream", "metadata": {"md5sum": "m"}})
}

pub fn export_json() -> Value {
    let mut man_a = entry("s3_artifacts/boot-images/img-a_manifest.json", 100, MAN_A);
    man_a["manifest_links"] = json!([
        "s3://boot-images/img-a/rootfs",
        "s3://boot-images/img-a/kernel"
    ]);
    let mut man_b = entry("s3_artifacts/boot-images/img-b_manifest.json", 50, MAN_B);
    man_b["manifest_links"] = json!(["s3://boot-images/img-b/rootfs"]);
    json!({
        "bos": ["s3://boot-images/img-a/manifest.json"],
        "bss": ["s3://boot-images/k8s/kernel"],
        "created": "20240301000000.000000",
        "ims_data": {
            "deleted": {"images": {"img-d": {"id": "img-d", "created": "2020", "deleted": "2021",
                "link": link("s3://boot-images/deleted/img-d/deleted_manifest.json")}}, "public_keys": {}, "recipes": {}},
            "images": {"img-a": img_a_exported(), "img-b": img_b()},
            "jobs": {"job-x": job("job-x", "success")},
            "public_keys": {"key-a": key_a()},
            "recipes": {"rec-a": rec_a()},
        },
        "product_catalog": [],
        "s3_data": {"artifacts": {
            "s3://boot-images/img-a/manifest.json": man_a,
            "s3://boot-images/img-a/rootfs": entry("s3_artifacts/boot-images/img-a_rootfs", 12 * MIB, ROOTFS_ETAG),
            "s3://boot-images/img-a/kernel": entry("s3_artifacts/boot-images/img-a_kernel", 10, KERNEL),
            "s3://boot-images/img-b/manifest.json": man_b,
            "s3://boot-images/img-b/rootfs": entry("s3_artifacts/boot-images/img-b_rootfs", 40, ROOTFS_B),
            "s3://ims/recipes/rec-a/recipe.tar.gz": entry("s3_artifacts/ims/recipes_rec-a_recipe.tar.gz", 20, RECIPE),
            "s3://boot-images/k8s/kernel": entry("s3_artifacts/boot-images/k8s_kernel", 30, K8S),
            "s3://boot-images/deleted/img-d/deleted_manifest.json": entry("s3_artifacts/boot-images/deleted_img-d_deleted_manifest.json", 5, MAN_B),
            "s3://boot-images/extra/file": entry("s3_artifacts/boot-images/extra_file", 5, MAN_B),
        }, "buckets": {}},
        "imsflow": {"format": 1}
    })
}

pub fn members() -> Vec<(String, u64)> {
    [
        ("export.json", 5000),
        ("s3_artifacts/boot-images/img-a_manifest.json", 100),
        ("s3_artifacts/boot-images/img-a_rootfs", 12 * MIB),
        ("s3_artifacts/boot-images/img-a_kernel", 10),
        ("s3_artifacts/boot-images/img-b_manifest.json", 50),
        ("s3_artifacts/boot-images/img-b_rootfs", 40),
        ("s3_artifacts/ims/recipes_rec-a_recipe.tar.gz", 20),
        ("s3_artifacts/boot-images/k8s_kernel", 30),
        (
            "s3_artifacts/boot-images/deleted_img-d_deleted_manifest.json",
            5,
        ),
    ]
    .iter()
    .map(|(p, s)| (p.to_string(), *s))
    .collect()
}

pub fn archive() -> ArchiveData {
    read_export(&export_json(), &members()).expect("the test archive is valid")
}

pub fn current() -> Ims {
    let v = json!({
        "images": {"img-a": img_a_current(), "img-c": img_c()},
        "public_keys": {"key-a": key_a(), "key-c": key_c()},
        "recipes": {"rec-c": rec_c()},
        "jobs": {"job-1": job("job-1", "success"), "job-2": job("job-2", "building_image")},
        "deleted": {"images": {"img-b": img_b_deleted()}, "public_keys": {}, "recipes": {"rec-old": rec_old_deleted()}},
    });
    serde_json::from_value(v).unwrap()
}

pub fn s3() -> S3State {
    let objects: BTreeMap<String, Option<Head>> = [
        (
            "s3://boot-images/img-a/manifest.json",
            Some(head(100, MAN_A)),
        ),
        (
            "s3://boot-images/img-a/rootfs",
            Some(head(12 * MIB, CHANGED)),
        ),
        ("s3://boot-images/img-a/kernel", None),
        ("s3://boot-images/img-b/manifest.json", None),
        ("s3://boot-images/img-b/rootfs", None),
        ("s3://ims/recipes/rec-a/recipe.tar.gz", None),
        ("s3://boot-images/k8s/kernel", Some(head(30, K8S))),
        (
            "s3://boot-images/img-c/manifest.json",
            Some(head(60, "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0")),
        ),
        (
            "s3://boot-images/img-c/rootfs",
            Some(head(70, "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1")),
        ),
        ("s3://ims/recipes/rec-c/recipe.tar.gz", None),
        (
            "s3://boot-images/deleted/img-b/deleted_manifest.json",
            Some(head(80, "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0")),
        ),
        (
            "s3://boot-images/deleted/img-b/rootfs",
            Some(head(90, "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1")),
        ),
        (
            "s3://boot-images/deleted/img-b/manifest.json",
            Some(head(85, "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2")),
        ),
        (
            "s3://ims/deleted/recipes/rec-old/recipe.tar.gz",
            Some(head(95, "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0")),
        ),
    ]
    .into_iter()
    .map(|(u, h)| (u.to_string(), h))
    .collect();
    let manifest = |links: &[&str]| Manifest {
        links: links.iter().map(|l| l.to_string()).collect(),
        error: None,
    };
    let manifests = [
        (
            "s3://boot-images/img-a/manifest.json",
            manifest(&[
                "s3://boot-images/img-a/rootfs",
                "s3://boot-images/img-a/kernel",
            ]),
        ),
        (
            "s3://boot-images/img-c/manifest.json",
            manifest(&["s3://boot-images/img-c/rootfs"]),
        ),
        (
            "s3://boot-images/deleted/img-b/deleted_manifest.json",
            manifest(&[
                "s3://boot-images/deleted/img-b/rootfs",
                "s3://boot-images/deleted/img-b/manifest.json",
            ]),
        ),
    ]
    .into_iter()
    .map(|(u, m)| (u.to_string(), m))
    .collect();
    S3State {
        objects,
        manifests,
        ..S3State::default()
    }
}
