//! Saved plans on real Ceph and csm-sim: `plan -o` then `apply` writes
//! exactly what was planned; a tampered, foreign or stale plan is refused
//! with nothing applied; a half-applied plan applies again to completion.
use crate::support::*;
use csm_sim::testing::System;
use imsflow::plan::Plan;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs the `imsflow` binary against a simulated CSM, with extra env vars.
fn imsflow(sys: &System, args: &[&str], env: &[(&str, &str)]) -> CliRun {
    imsflow_cli(Some(&sys.data.path().join("imsflow.toml")), args, env)
}

fn ok(run: &CliRun) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

fn plan_export(sys: &System, out: &Path, plan: &Path) -> Plan {
    let run = imsflow(
        sys,
        &[
            "plan",
            "export",
            "-p",
            &format!("target_dir={}", out.display()),
            "-o",
            plan.to_str().unwrap(),
        ],
        &[],
    );
    ok(&run);
    Plan::load(plan).unwrap()
}

/// Members of an archive in order, with their bytes; `created` is taken out
/// of export.json (it is the run's timestamp, which differs between runs).
fn members(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let mut members = archive_members(archive);
    for (name, bytes) in &mut members {
        if name == "export.json" {
            let mut doc: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            doc.as_object_mut().unwrap().remove("created");
            *bytes = serde_json::to_vec(&doc).unwrap();
        }
    }
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_export_plan_applies_to_the_archive_it_named_equal_to_a_direct_run() {
    let sys = System::start(&no_running_jobs()).await;
    let scratch = tempfile::tempdir().unwrap();
    let (planned_dir, direct_dir) = (
        scratch.path().join("planned"),
        scratch.path().join("direct"),
    );
    std::fs::create_dir_all(&planned_dir).unwrap();
    std::fs::create_dir_all(&direct_dir).unwrap();
    let plan_file = scratch.path().join("export.plan.json");
    let plan = plan_export(&sys, &planned_dir, &plan_file);
    assert!(
        dir_entries(&planned_dir).is_empty(),
        "planning writes no archive"
    );
    let named = plan.target.as_ref().unwrap().final_path();
    assert_eq!(
        named.file_name().unwrap().to_string_lossy(),
        format!(
            "export-ims-data-{}-{}.tar",
            plan.run.timestamp, plan.run.suffix
        )
    );

    // Apply later, in another process: the archive gets the planned name.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let applied = imsflow(&sys, &["apply", plan_file.to_str().unwrap()], &[]);
    ok(&applied);
    assert!(
        applied
            .stdout
            .contains(&format!("Data saved to: {}", named.display())),
        "{}",
        applied.stdout
    );
    assert_eq!(
        dir_entries(&planned_dir),
        vec![named.file_name().unwrap().to_string_lossy().into_owned()]
    );

    let direct = imsflow(&sys, &["export", direct_dir.to_str().unwrap()], &[]);
    ok(&direct);
    let direct_archive = PathBuf::from(
        direct
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Data saved to tar archive: "))
            .unwrap(),
    );
    assert_ne!(
        direct_archive.file_name(),
        named.file_name(),
        "each run names its own archive"
    );
    let (a, b) = (members(&named), members(&direct_archive));
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "same members in the same order"
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "member {name} differs between the applied plan and the direct run"
        );
    }

    // Applying it again does nothing: its journal says it finished...
    let again = imsflow(&sys, &["apply", plan_file.to_str().unwrap()], &[]);
    ok(&again);
    assert!(
        again.stdout.contains("already finished: nothing to do"),
        "{}",
        again.stdout
    );
    // ...and without the journal, the archive it names exists.
    std::fs::remove_file(imsflow::journal::path_for(&plan_file)).unwrap();
    let again = imsflow(&sys, &["apply", plan_file.to_str().unwrap()], &[]);
    ok(&again);
    assert!(
        again.stdout.contains(&format!(
            "applied 0 effect(s); {} already done",
            plan.effects.len()
        )),
        "{}",
        again.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_foreign_and_stale_plans_are_refused_with_nothing_applied() {
    let sys = System::start(&no_running_jobs()).await;
    let out = tempfile::tempdir().unwrap();
    let plan_file = out.path().join("p.json");
    let archive_dir = out.path().join("archives");
    std::fs::create_dir(&archive_dir).unwrap();
    let plan = plan_export(&sys, &archive_dir, &plan_file);
    let pristine = std::fs::read(&plan_file).unwrap();
    let apply = |path: &Path| imsflow(&sys, &["apply", path.to_str().unwrap()], &[]);

    // Tampered: one archived key edited by hand, the hash left alone.
    let victim = plan
        .effects
        .iter()
        .find(|e| e.effect.kind() == "archive-add-object")
        .unwrap();
    let text = String::from_utf8(pristine.clone()).unwrap();
    let imsflow::plan::effect::Effect::ArchiveAddObject { key, .. } = &victim.effect else {
        unreachable!()
    };
    let tampered = text.replacen(&format!("\"key\": \"{key}\""), "\"key\": \"etc/shadow\"", 1);
    assert_ne!(tampered, text);
    std::fs::write(&plan_file, tampered).unwrap();
    let run = apply(&plan_file);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("was changed after it was made")
            && run.stderr.contains(&format!("effect {}", victim.id)),
        "names the tampered effect: {}",
        run.stderr
    );
    let shown = imsflow(&sys, &["show", plan_file.to_str().unwrap()], &[]);
    assert_eq!(shown.code, 1, "show refuses a tampered plan too");

    // Another imsflow version, and another build of a plugin.
    std::fs::write(&plan_file, &pristine).unwrap();
    reseal(&plan_file, |p| {
        p.imsflow_version = "0.0.1".into();
        p.steps[0].plugin.sha256 = "0".repeat(64);
        p.steps[0].plugin.version = "0.0.9".into();
    });
    let run = apply(&plan_file);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let ours = env!("CARGO_PKG_VERSION");
    assert!(
        run.stderr
            .contains(&format!("made by imsflow 0.0.1; this is imsflow {ours}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the plan was made with plugin ims-fetch 0.0.9 (sha256 0000")
            && run
                .stderr
                .contains(&format!("installed now is ims-fetch {ours}")),
        "{}",
        run.stderr
    );

    // Stale: an archived object changed in S3 after planning.
    std::fs::write(&plan_file, &pristine).unwrap();
    let imsflow::plan::effect::Effect::ArchiveAddObject {
        bucket,
        key,
        size,
        etag,
        ..
    } = &victim.effect
    else {
        unreachable!()
    };
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    let new_etag = s3
        .put(bucket, key, b"changed after planning".to_vec())
        .await
        .unwrap();
    let run = apply(&plan_file);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let expected = format!(
        "stale: effect {}: s3://{bucket}/{key}: planned ETag {etag} ({size} bytes), now ETag {new_etag} (22 bytes)",
        victim.id
    );
    assert!(
        run.stderr.contains(&expected),
        "expected `{expected}` in:\n{}",
        run.stderr
    );
    assert!(
        dir_entries(&archive_dir).is_empty(),
        "nothing was applied: {:?}",
        dir_entries(&archive_dir)
    );
}

const UPLOAD_WORKFLOW: &str = r#"version = 1
name = "restore-data"
description = "uploads every data/ member of an archive to the restore bucket"

[params.archive]
type = "string"
description = "input archive"

[archive]
input = "{{ params.archive }}"

[[steps]]
id = "up"
plugin = "@PLUGINS@/uploader.wasm"
with = { prefix = "data/", bucket = "restore", etags = { @ETAGS@ } }
grants = { archive = true, buckets = ["restore"], effects = ["s3-upload-from-archive"] }
"#;

async fn last_modified(sys: &System, key: &str) -> Option<String> {
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    let out = s3
        .client()
        .head_object()
        .bucket("restore")
        .key(key)
        .send()
        .await
        .ok()?;
    out.last_modified().map(|t| t.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_applied_plan_applies_again_to_completion_without_redoing_work() {
    let sys = System::start(&no_running_jobs()).await;
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    s3.create_bucket("restore").await.unwrap();
    let scratch = Scratch::new();
    let input = scratch.path().join("input");
    std::fs::create_dir_all(input.join("data")).unwrap();
    let mut files = BTreeMap::new();
    for i in 0..6 {
        let body = format!("object {i} ").repeat(1000 + i * 10);
        std::fs::write(input.join(format!("data/f{i}")), &body).unwrap();
        files.insert(format!("f{i}"), body);
    }
    // The ETags the export recorded: single-part, so the MD5 of the bytes.
    let etags: Vec<String> = files
        .iter()
        .map(|(key, body)| {
            use md5::Digest;
            format!(
                "\"data/{key}\" = \"{}\"",
                hex::encode(md5::Md5::digest(body))
            )
        })
        .collect();
    let wf = scratch.workflow(&UPLOAD_WORKFLOW.replace("@ETAGS@", &etags.join(", ")));
    let wf_path = scratch.path().join("wf.toml");
    assert_eq!(wf.steps.len(), 1);
    let plan_file = scratch.path().join("up.plan.json");
    let archive_param = format!("archive={}", input.display());
    ok(&imsflow(
        &sys,
        &[
            "plan",
            wf_path.to_str().unwrap(),
            "-p",
            &archive_param,
            "-o",
            plan_file.to_str().unwrap(),
        ],
        &[],
    ));
    let plan = Plan::load(&plan_file).unwrap();
    assert_eq!(plan.effects.len(), 6);
    let fail_at = plan.effects[3].id.clone();

    let first = imsflow(
        &sys,
        &["apply", plan_file.to_str().unwrap()],
        &[("IMSFLOW_TEST_FAIL_AT_EFFECT", &fail_at)],
    );
    assert_eq!(first.code, 1, "{}", first.stderr);
    for said in [
        format!("effect {fail_at} (s3-upload-from-archive"),
        "failed: injected fault".to_string(),
        "applied before it: 3 effect(s) (3 s3-upload-from-archive)".to_string(),
        "not applied: this effect and the 2 after it".to_string(),
        "apply the same plan again".to_string(),
    ] {
        assert!(
            first.stderr.contains(&said),
            "says `{said}`:\n{}",
            first.stderr
        );
    }
    // Running text, not a plan column: no padding inside the parentheses.
    let failed = first
        .stderr
        .lines()
        .find(|l| l.contains("failed: injected"))
        .unwrap();
    assert!(!failed.contains("  "), "{failed}");
    let mut before = Vec::new();
    for i in 0..6 {
        before.push(last_modified(&sys, &format!("f{i}")).await);
    }
    assert!(
        before[..3].iter().all(Option::is_some),
        "the first three were uploaded"
    );
    assert!(
        before[3..].iter().all(Option::is_none),
        "the rest were not: {before:?}"
    );

    // Object timestamps have one-second resolution: make a redo visible.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let second = imsflow(&sys, &["apply", plan_file.to_str().unwrap()], &[]);
    ok(&second);
    assert!(
        second
            .stdout
            .contains("applied 3 effect(s); 3 already done"),
        "{}",
        second.stdout
    );
    for (i, (key, body)) in files.iter().enumerate() {
        assert_eq!(
            &String::from_utf8(s3.get("restore", key).await.unwrap()).unwrap(),
            body
        );
        if i < 3 {
            assert_eq!(
                last_modified(&sys, key).await,
                before[i],
                "{key} was not uploaded again"
            );
        }
    }
    let head = s3
        .client()
        .head_object()
        .bucket("restore")
        .key("f0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("imsflow-test"),
        "content type and metadata come back as planned"
    );
}
