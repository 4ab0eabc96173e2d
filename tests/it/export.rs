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

pub(crate) fn spec(running_jobs: usize) -> SeedSpec {
    SeedSpec {
        running_jobs,
        ..csm_sim::testing::small_spec()
    }
}

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `imsflow export` against the simulator with its own config file.
pub(crate) fn imsflow(sys: &System, args: &[&str]) -> Run {
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

pub(crate) fn export_into(sys: &System, dir: &Path, flags: &[&str]) -> Run {
    let mut args = vec!["export", dir.to_str().unwrap()];
    args.extend(flags);
    imsflow(sys, &args)
}

/// The archive path from "Data saved to tar archive: <path>" / "Data saved in directory: <path>".
pub(crate) fn saved(run: &Run) -> PathBuf {
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
    // --json gives the estimate alone, as one document.
    let json = export_into(&sys, out.path(), &["--estimate-size", "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["estimated_bytes"], "{doc}");
    assert!(doc["estimated_bytes"].as_u64().unwrap() > 0, "{doc}");
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

/// `imsflow export ARGS` against a simulated CSM.
fn export(sys: &csm_sim::testing::System, args: &[&str]) -> CliRun {
    let mut all = vec!["export"];
    all.extend(args);
    imsflow_cli(Some(&sys.data.path().join("imsflow.toml")), &all, &[])
}

/// `export.json` of an `imsflow export --no-tar` of the system, which must succeed.
fn export_index(sys: &csm_sim::testing::System) -> serde_json::Value {
    let out_dir = tempfile::tempdir().unwrap();
    let out = export(sys, &["--no-tar", out_dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dir = std::fs::read_dir(out_dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    serde_json::from_slice(&std::fs::read(dir.join("export.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_jobs_abort_the_export_once_without_retries() {
    let sys = csm_sim::testing::System::start(&csm_sim::testing::small_spec()).await;
    assert!(!sys.expected.jobs.is_empty());
    let out_dir = tempfile::tempdir().unwrap();
    let out = export(&sys, &[out_dir.path().to_str().unwrap()]);
    let stderr = out.stderr.clone();
    assert_eq!(out.code, 1, "{stderr}");
    assert!(
        stderr.contains("plugin `ims-fetch` aborted: Aborted due to incomplete jobs"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("retrying"),
        "an abort is not retried:\n{stderr}"
    );
}

fn iso_utc(v: &serde_json::Value) -> bool {
    let Some(t) = v.as_str() else { return false };
    let (main, rest) = t.split_at(t.len().min(19));
    chrono::NaiveDateTime::parse_from_str(main, "%Y-%m-%dT%H:%M:%S").is_ok()
        && (rest == "+00:00"
            || rest
                .strip_prefix('.')
                .and_then(|r| r.strip_suffix("+00:00"))
                .is_some_and(|f| f.len() == 6))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_bucket_listings_keep_hpes_fields() {
    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    let doc = export_index(&sys);
    let artifacts = doc["s3_data"]["artifacts"].as_object().unwrap();
    assert!(!artifacts.is_empty());
    for (url, entry) in artifacts {
        let d = &entry["describe"]["artifact"];
        assert_eq!(d["AcceptRanges"], "bytes", "{url}: {d}");
        assert!(iso_utc(&d["LastModified"]), "{url}: {d}");
    }
    for (bucket, listing) in doc["s3_data"]["buckets"].as_object().unwrap() {
        for item in listing["artifacts"].as_array().unwrap() {
            assert!(iso_utc(&item["LastModified"]), "{bucket}: {item}");
            assert_eq!(item["StorageClass"], "STANDARD", "{bucket}: {item}");
            assert!(item["Owner"]["ID"].is_string(), "{bucket}: {item}");
            assert!(item["Owner"]["DisplayName"].is_string(), "{bucket}: {item}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_image_whose_manifest_is_gone_is_skipped_with_a_warning_naming_it_deleted() {
    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    let deleted = sys.expected.deleted["images"]
        .iter()
        .next()
        .unwrap()
        .clone();
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    let manifests: Vec<String> = s3
        .list("boot-images", "")
        .await
        .unwrap()
        .into_iter()
        .map(|(key, _, _)| key)
        .filter(|k| k.contains(&deleted) && k.ends_with("manifest.json"))
        .collect();
    assert!(
        !manifests.is_empty(),
        "the deleted image has a manifest to lose"
    );
    for key in &manifests {
        s3.delete("boot-images", key).await.unwrap();
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = export(
        &sys,
        &["--include-deleted", out_dir.path().to_str().unwrap()],
    );
    let stderr = out.stderr.clone();
    assert_eq!(out.code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Skipping deleted IMS image {deleted}: its manifest s3://boot-images/"
        )),
        "{stderr}"
    );
    assert!(out.stdout.contains("DONE!"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_part_size_is_the_one_that_reproduces_the_etag() {
    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    // 9,438,183 bytes in 5 MiB parts: ETag `-2`, and 8 MiB (the first common
    // size) also gives two parts, but a different ETag.
    let image = sys.expected.ims["images"].iter().next().unwrap().clone();
    let key = format!("{image}/rootfs");
    let body: Vec<u8> = (0..9_438_183u32).map(|i| (i % 253) as u8).collect();
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    s3.put_multipart("boot-images", &key, &body, 5 << 20, &Default::default())
        .await
        .unwrap();
    let etag = s3.head("boot-images", &key).await.unwrap().unwrap().etag;
    assert!(etag.ends_with("-2"), "{etag}");
    let doc = export_index(&sys);
    let entry = &doc["s3_data"]["artifacts"][format!("s3://boot-images/{key}")];
    assert_eq!(entry["etag"], etag.as_str());
    assert_eq!(entry["multipart_parts"], 2);
    assert_eq!(entry["part_size"], 5 << 20, "{entry}");
}
