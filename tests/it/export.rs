//! The stock export against a seeded simulated CSM on real Ceph: contents
//! match the seeder's answers, flags behave as HPE's, failures leave no
//! archive, and `verify` catches damage.
use crate::support::*;
use csm_sim::seed::SeedSpec;
use csm_sim::testing::System;
use serde_json::Value;
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn spec(running_jobs: usize) -> SeedSpec {
    SeedSpec {
        running_jobs,
        ..csm_sim::testing::small_spec()
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `imsflow export` against the simulator with its own config file.
fn imsflow(sys: &System, args: &[&str]) -> Run {
    let out = imsflow_command()
        .args(args)
        .env("IMSFLOW_CONFIG", sys.data.path().join("imsflow.toml"))
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn export_into(sys: &System, dir: &Path, flags: &[&str]) -> Run {
    let mut args = vec!["export", dir.to_str().unwrap()];
    args.extend(flags);
    imsflow(sys, &args)
}

/// The archive path from "Data saved to tar archive: <path>" / "Data saved in directory: <path>".
fn saved(run: &Run) -> PathBuf {
    assert_eq!(
        run.code, 0,
        "export failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.trim_end().ends_with("DONE!"), "{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("Data saved"))
        .expect("a Data saved line");
    PathBuf::from(line.split_once(": ").unwrap().1)
}

fn export_json(members: &[(String, Vec<u8>)]) -> Value {
    let (_, bytes) = members
        .iter()
        .find(|(p, _)| p == "export.json")
        .expect("export.json");
    serde_json::from_slice(bytes).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_export_matches_the_seeded_system() {
    let sys = System::start(&spec(0)).await;
    let out = tempfile::tempdir().unwrap();
    let run = export_into(&sys, out.path(), &[]);
    let archive = saved(&run);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("export-ims-data-") && name.ends_with(".tar"),
        "{name}"
    );
    let members = archive_members(&archive);
    assert_eq!(
        members.last().unwrap().0,
        "export.json",
        "export.json is the last member"
    );
    let doc = export_json(&members);
    let e = &sys.expected;

    // Records per kind, as HPE's id -> record maps.
    assert_eq!(keys(&doc["ims_data"]["images"]), e.ims["images"]);
    assert_eq!(keys(&doc["ims_data"]["recipes"]), e.ims["recipes"]);
    assert_eq!(keys(&doc["ims_data"]["public_keys"]), e.ims["public_keys"]);
    assert_eq!(
        keys(&doc["ims_data"]["jobs"]),
        e.jobs.keys().cloned().collect()
    );
    assert!(doc["ims_data"]["deleted"].is_null());
    assert!(doc["created"].is_string());

    // Links per source: existing ones only; the split catalog ConfigMap is read too.
    assert_eq!(strings(&doc["bos"]), e.links["bos"]);
    assert_eq!(strings(&doc["bss"]), e.links["bss"]);
    assert_eq!(strings(&doc["product_catalog"]), e.links["product_catalog"]);
    for dangling in &e.dangling {
        assert!(
            run.stderr
                .contains(&format!("Skipping nonexistent S3 artifact {dangling}")),
            "warned about {dangling}:\n{}",
            run.stderr
        );
    }

    // Artifacts: every live image's manifest and its artifacts, every recipe,
    // every extra link; bytes and sha256 match what the seeder put.
    let artifacts = doc["s3_data"]["artifacts"].as_object().unwrap();
    let mut wanted: BTreeSet<String> = e.links.values().flatten().cloned().collect();
    for id in &e.ims["images"] {
        for a in ["manifest.json", "rootfs", "kernel", "initrd"] {
            wanted.insert(format!("s3://boot-images/{id}/{a}"));
        }
    }
    for id in &e.ims["recipes"] {
        wanted.insert(format!("s3://ims/recipes/{id}/recipe.tar.gz"));
    }
    assert_eq!(artifacts.keys().cloned().collect::<BTreeSet<_>>(), wanted);
    // HPE lists only the buckets its artifacts are in, not velero's or thanos's.
    let listed: BTreeSet<String> = doc["s3_data"]["buckets"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        listed,
        ["boot-images", "ims"].map(String::from).into(),
        "only the used buckets"
    );
    assert!(!e.unused_buckets.is_empty());
    let by_path: BTreeMap<&str, &Vec<u8>> = members.iter().map(|(p, b)| (p.as_str(), b)).collect();
    for (url, entry) in artifacts {
        let relpath = entry["relpath"].as_str().unwrap();
        assert!(relpath.starts_with("s3_artifacts/"), "{relpath}");
        let bytes = by_path
            .get(relpath)
            .unwrap_or_else(|| panic!("member {relpath} for {url}"));
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        assert_eq!(sha, e.objects[url].sha256, "{url} bytes");
        assert_eq!(entry["sha256"], sha, "{url} recorded sha256");
        assert_eq!(entry["size"], e.objects[url].size);
        assert_eq!(entry["etag"], e.objects[url].etag.as_str());
        if e.objects[url].etag.ends_with("-2") {
            assert_eq!(entry["multipart_parts"], 2, "{url}");
        }
    }
    // HPE's flattening: s3://ims/recipes/<id>/recipe.tar.gz -> s3_artifacts/ims/recipes_<id>_recipe.tar.gz
    let recipe = e.ims["recipes"].iter().next().unwrap();
    assert_eq!(
        artifacts[&format!("s3://ims/recipes/{recipe}/recipe.tar.gz")]["relpath"],
        format!("s3_artifacts/ims/recipes_{recipe}_recipe.tar.gz")
    );
    // Manifests come first and carry their links.
    let first = &members[0].0;
    assert!(
        first.ends_with("_manifest.json"),
        "manifests first, got {first}"
    );
    let image = e.ims["images"].iter().next().unwrap();
    assert_eq!(
        artifacts[&format!("s3://boot-images/{image}/manifest.json")]["manifest_links"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let verify = imsflow(&sys, &["verify", archive.to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    // Every artifact is checked both ways: sha256, and the ETag S3 gave it
    // (multipart ones included).
    let verify = imsflow(&sys, &["--json", "verify", archive.to_str().unwrap()]);
    let report: Value = serde_json::from_str(&verify.stdout).unwrap();
    assert_eq!(report["artifacts"], artifacts.len());
    assert_eq!(report["sha256_verified"], artifacts.len());
    assert_eq!(report["etag_verified"], artifacts.len());
    assert_eq!(report["size_only"], 0);
    // An import's preflight checks that the bytes are the exported ones: the
    // sha256 proves it, so no artifact gets an MD5 pass for its ETag.
    let report = imsflow::verify::verify_with(&archive, imsflow::verify::Depth::Integrity).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        (report.sha256_verified, report.etag_verified),
        (artifacts.len(), 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_shape_the_export_as_hpe_does() {
    let sys = System::start(&spec(0)).await;
    let out = tempfile::tempdir().unwrap();

    let doc = export_json(&archive_members(&saved(&export_into(
        &sys,
        out.path(),
        &[
            "--exclude-links-from-bos",
            "--exclude-links-from-product-catalog",
        ],
    ))));
    assert!(doc["bos"].is_null() && doc["product_catalog"].is_null());
    assert_eq!(strings(&doc["bss"]), sys.expected.links["bss"]);
    assert!(
        doc["s3_data"]["artifacts"]
            .as_object()
            .unwrap()
            .keys()
            .all(|u| !u.contains("/cos/") && !u.contains("/csm/")),
        "no catalog artifacts"
    );

    let doc = export_json(&archive_members(&saved(&export_into(
        &sys,
        out.path(),
        &["--exclude-links-from-bss"],
    ))));
    assert!(doc["bss"].is_null());
    assert!(
        !doc["s3_data"]["artifacts"]
            .as_object()
            .unwrap()
            .keys()
            .any(|u| u.contains("/k8s/")),
        "no NCN artifacts without BSS"
    );

    let dir = saved(&export_into(
        &sys,
        out.path(),
        &["--exclude-linked-artifacts"],
    ));
    assert!(dir.is_dir(), "--exclude-linked-artifacts forces no tar");
    let members_ = archive_members(&dir);
    assert_eq!(
        members_.len(),
        1,
        "only export.json: {:?}",
        members_.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    let doc = export_json(&members_);
    assert!(
        doc["s3_data"].is_null()
            && doc["bos"].is_null()
            && doc["bss"].is_null()
            && doc["product_catalog"].is_null()
    );

    let dir = saved(&export_into(&sys, out.path(), &["--no-tar"]));
    assert!(
        dir.is_dir()
            && dir.join("export.json").is_file()
            && dir.join("s3_artifacts/boot-images").is_dir()
    );

    let doc = export_json(&archive_members(&saved(&export_into(
        &sys,
        out.path(),
        &["--include-deleted"],
    ))));
    let deleted = &doc["ims_data"]["deleted"];
    assert_eq!(keys(&deleted["images"]), sys.expected.deleted["images"]);
    assert_eq!(keys(&deleted["recipes"]), sys.expected.deleted["recipes"]);
    assert_eq!(
        keys(&deleted["public_keys"]),
        sys.expected.deleted["public_keys"]
    );
    let gone = sys.expected.deleted["images"].iter().next().unwrap();
    let artifacts = doc["s3_data"]["artifacts"].as_object().unwrap();
    for a in ["deleted_manifest.json", "rootfs", "manifest.json"] {
        assert!(
            artifacts.contains_key(&format!("s3://boot-images/deleted/{gone}/{a}")),
            "deleted image's {a}"
        );
    }

    let before = std::fs::read_dir(out.path()).unwrap().count();
    let estimate = export_into(&sys, out.path(), &["--estimate-size"]);
    assert_eq!(estimate.code, 0, "{}", estimate.stderr);
    assert!(
        estimate
            .stdout
            .contains("With specified export options, estimated total export size is: "),
        "{}",
        estimate.stdout
    );
    let dry = export_into(&sys, out.path(), &["--dry-run"]);
    assert_eq!(dry.code, 2, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("archive-add-object") && dry.stdout.contains("Total: "),
        "{}",
        dry.stdout
    );
    let dry = export_into(&sys, out.path(), &["--dry-run", "--include-deleted"]);
    assert_eq!(dry.code, 2, "{}", dry.stderr);
    assert!(
        dry.stdout
            .lines()
            .any(|l| l.starts_with("Would export ") && l.contains(" jobs, deleted: {\"images\":")),
        "the planner's counts, deleted records included: {}",
        dry.stdout
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        before,
        "estimate and dry run write nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_jobs_abort_the_export_unless_ignored() {
    let sys = System::start(&spec(1)).await;
    let out = tempfile::tempdir().unwrap();
    let run = export_into(&sys, out.path(), &[]);
    assert_eq!(run.code, 1);
    let running = sys.expected.running_jobs.iter().next().unwrap();
    assert!(
        run.stderr
            .contains(&format!("Job {running} is not complete (status = ")),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "no archive"
    );
    saved(&export_into(&sys, out.path(), &["--ignore-running-jobs"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_artifact_is_an_error_and_leaves_no_archive() {
    let sys = System::start(&spec(0)).await;
    let image = sys.expected.ims["images"].iter().next().unwrap();
    csm_sim::s3::S3::new(&sys.s3)
        .delete("boot-images", &format!("{image}/kernel"))
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = export_into(&sys, out.path(), &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "s3://boot-images/{image}/kernel, which does not exist in S3"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "no archive, no .partial"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_flipped_byte_and_a_missing_member() {
    let sys = System::start(&spec(0)).await;
    let out = tempfile::tempdir().unwrap();
    let dir = saved(&export_into(&sys, out.path(), &["--no-tar"]));
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.join("export.json")).unwrap()).unwrap();
    let artifacts = doc["s3_data"]["artifacts"].as_object().unwrap();
    let mut relpaths = artifacts
        .values()
        .map(|a| a["relpath"].as_str().unwrap().to_string());
    let (flip, drop) = (relpaths.next().unwrap(), relpaths.next().unwrap());
    let mut bytes = std::fs::read(dir.join(&flip)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(dir.join(&flip), bytes).unwrap();
    std::fs::remove_file(dir.join(&drop)).unwrap();
    let run = imsflow(&sys, &["verify", dir.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(&format!("member {flip} has sha256")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("member {drop} is missing")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2 problem(s)"), "{}", run.stdout);
}

/// An archive in HPE's exact format, built from the spec: no sha256, `describe`
/// from `cray artifacts describe`, members under s3_artifacts/, export.json last.
#[test]
fn verify_reads_an_hpe_archive() {
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir
        .path()
        .join("export-ims-data-20231013161618.084854-naswhadt.tar");
    let id = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    let rootfs = vec![7u8; 3000];
    let manifest = serde_json::json!({ "version": "1.0", "created": "2023-10-13 16:16:18",
        "artifacts": [{ "link": { "path": format!("s3://boot-images/{id}/rootfs"), "etag": "x", "type": "s3" }, "md5": "m", "type": "application/vnd.cray.image.rootfs.squashfs" }] });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let export = serde_json::json!({
        "bos": [], "bss": null, "created": "20231013161618.084854",
        "ims_data": { "deleted": null, "images": { id: { "id": id, "created": "2023-10-13T16:00:00", "name": "img",
            "link": { "path": format!("s3://boot-images/{id}/manifest.json"), "etag": "e", "type": "s3" } } },
            "jobs": {}, "public_keys": {}, "recipes": {} },
        "product_catalog": null,
        "s3_data": { "artifacts": {
            format!("s3://boot-images/{id}/manifest.json"): { "relpath": format!("s3_artifacts/boot-images/{id}_manifest.json"),
                "manifest_links": [format!("s3://boot-images/{id}/rootfs")],
                "describe": { "artifact": { "ContentLength": manifest_bytes.len(), "ETag": "\"e\"" } } },
            format!("s3://boot-images/{id}/rootfs"): { "relpath": format!("s3_artifacts/boot-images/{id}_rootfs"),
                "describe": { "artifact": { "ContentLength": rootfs.len(), "ETag": "\"x\"" } } },
        }, "buckets": { "boot-images": { "artifacts": [] } } },
    });
    let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    for (name, bytes) in [
        (
            format!("s3_artifacts/boot-images/{id}_manifest.json"),
            manifest_bytes.clone(),
        ),
        (
            format!("s3_artifacts/boot-images/{id}_rootfs"),
            rootfs.clone(),
        ),
        (
            "export.json".to_string(),
            serde_json::to_vec(&export).unwrap(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        builder.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    builder.finish().unwrap();
    let report = imsflow::verify::verify(&tar_path).unwrap();
    // Its ETags are no MD5s ("e", "x"): only sizes can be checked.
    assert_eq!(
        (
            report.artifacts,
            report.sha256_verified,
            report.etag_verified,
            report.size_only
        ),
        (2, 0, 0, 2)
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // The same archive with the rootfs shorter than `describe` says is caught.
    let short = dir.path().join("short");
    std::fs::create_dir_all(short.join("s3_artifacts/boot-images")).unwrap();
    std::fs::write(
        short.join("export.json"),
        serde_json::to_vec(&export).unwrap(),
    )
    .unwrap();
    std::fs::write(
        short.join(format!("s3_artifacts/boot-images/{id}_manifest.json")),
        &manifest_bytes,
    )
    .unwrap();
    std::fs::write(
        short.join(format!("s3_artifacts/boot-images/{id}_rootfs")),
        &rootfs[..10],
    )
    .unwrap();
    let report = imsflow::verify::verify(&short).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("has 10 bytes, export.json says 3000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_export_removes_its_partial_archive_and_says_so() {
    let sys = System::start(&SeedSpec {
        rootfs_size: 48 << 20,
        ..spec(0)
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let child = imsflow_command()
        .args(["export", out.path().to_str().unwrap()])
        .env("IMSFLOW_CONFIG", sys.data.path().join("imsflow.toml"))
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let partial = loop {
        let found = std::fs::read_dir(out.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".partial"));
        if let Some(p) = found {
            break p;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no partial archive appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "removed the partial archive {}",
            partial.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing left in the target directory"
    );
}
