//! An import's inputs are hostile input: an `export.json` rewritten with
//! record ids IMS cannot address, S3 URLs outside S3's rules, part sizes S3
//! cannot complete, or a bucket the system does not have, is refused at
//! preflight, naming each record and object, with nothing changed; a saved
//! import plan with widened grants or a duplicated effect is refused at
//! apply (csm-sim on the real Ceph).
use crate::import::Site;
use crate::support::*;
use serde_json::{Value, json};

/// The artifact entries of an export, by URL.
fn artifacts(doc: &mut Value) -> &mut serde_json::Map<String, Value> {
    doc["s3_data"]["artifacts"].as_object_mut().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_export_json_is_refused_at_preflight_naming_each_record_and_object() {
    let site = Site::start(no_running_jobs()).await;
    let ours = site.export();
    let backup = site.dir("backup");
    let world = async || (site.ims().await, site.s3().await);
    let before = world().await;

    let hostile = site.dir("hostile").join("hostile.tar");
    let (mut tiny_parts, mut few_parts) = (String::new(), String::new());
    rewrite_export_json(&ours, &hostile, |doc| {
        // A record id that would address another path of the IMS API.
        let images = doc["ims_data"]["images"].as_object_mut().unwrap();
        let first = images.keys().next().unwrap().clone();
        let mut image = images.remove(&first).unwrap();
        image["id"] = json!("../../v2/images/x");
        images.insert("../../v2/images/x".into(), image);
        // URLs: a bucket `..`, a key climbing out with `..`, a `%2F`.
        doc["bos"] = json!(["s3://../boot-images/x", "s3://boot-images/a/../../etc"]);
        let entries = artifacts(doc);
        let (url, entry) = entries
            .iter()
            .find(|(_, e)| e["size"].as_u64().is_some_and(|s| s > 1))
            .map(|(u, e)| (u.clone(), e.clone()))
            .unwrap();
        entries.insert("s3://boot-images/a%2F..%2Fb".into(), entry);
        // A part size S3 cannot complete, and an ETag no upload can make.
        entries[&url]["part_size"] = json!(1);
        tiny_parts = url;
        let (url, _) = entries
            .iter()
            .find(|(u, e)| **u != tiny_parts && e["size"].as_u64().is_some_and(|s| s < 10 << 20))
            .unwrap();
        few_parts = url.clone();
        entries[&few_parts]["etag"] = json!("0123456789abcdef0123456789abcdef-3");
    });
    let run = site.import("overwrite", &hostile, &["--yes"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let err = &run.stderr;
    eprintln!("HOSTILE-OUT {err}");
    for named in [
        "preflight failed; nothing was changed",
        "ims_data.images[\"../../v2/images/x\"]: the id is not an IMS record id",
        "bos[0] \"s3://../boot-images/x\": bucket \"..\"",
        "bos[1] \"s3://boot-images/a/../../etc\": key \"a/../../etc\"",
        "artifacts[\"s3://boot-images/a%2F..%2Fb\"]: key \"a%2F..%2Fb\" holds a percent-escape",
        &format!("artifacts[\"{tiny_parts}\"]: 'part_size' 1 cuts"),
        &format!(
            "artifacts[\"{few_parts}\"]: ETag 0123456789abcdef0123456789abcdef-3 says 3 parts"
        ),
    ] {
        assert!(err.contains(named), "`{named}` in:\n{err}");
    }
    assert_eq!(world().await, before, "nothing changed");
    assert!(dir_entries(&backup).is_empty(), "no backup was started");

    // A well-formed bucket the system does not have: the preflight lists
    // the buckets the import writes and refuses the missing one.
    let missing = site.dir("hostile").join("missing-bucket.tar");
    rewrite_export_json(&ours, &missing, |doc| {
        let entries = artifacts(doc);
        let entry = entries.values().next().unwrap().clone();
        entries.insert("s3://no-such-bucket/x".into(), entry);
        doc["bos"] = json!(["s3://no-such-bucket/x"]);
    });
    let run = site.import("overwrite", &missing, &["--yes"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("S3 buckets the import writes:")
            && run.stdout.contains("no-such-bucket"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("preflight failed; nothing was changed")
            && run
                .stderr
                .contains("bucket `no-such-bucket` does not exist"),
        "{}",
        run.stderr
    );
    assert_eq!(world().await, before, "nothing changed");
    assert!(dir_entries(&backup).is_empty(), "no backup was started");
}

/// A saved import plan whose grants were widened and whose hash was sealed
/// again: the step's plugin never emits an IMS delete, and the workflow
/// never grants it, so `apply` refuses it before anything runs (the forged
/// delete sits before the gate, where nothing would have stopped it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_widened_grants_or_a_duplicated_effect_id_is_refused() {
    use imsflow::plan::effect::Effect;
    let site = Site::start(no_running_jobs()).await;
    let ours = site.export();
    let backup = site.dir("backup");
    let plan_file = site.dir("plan").join("import.json");
    let run = site.import(
        "overwrite",
        &ours,
        &["--plan-out", plan_file.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let pristine = std::fs::read(&plan_file).unwrap();
    let world = async || (site.ims().await, site.s3().await);
    let before = world().await;
    let apply = || site.cli(&["apply", plan_file.to_str().unwrap()]);

    reseal(&plan_file, |p| {
        let mut forged = p
            .effects
            .iter()
            .find(|e| matches!(e.effect, Effect::ImsDelete { .. }))
            .unwrap()
            .clone();
        let step = p.steps.iter_mut().find(|s| s.id == "archive").unwrap();
        step.grants.effects.insert("ims-delete".into());
        forged.id = "archive.0".into();
        forged.step = "archive".into();
        p.effects.insert(0, forged);
    });
    let run = apply();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("step `archive`: the plan's grants")
            && run
                .stderr
                .contains("effect archive.0 (step `archive`): plugin `archive-read` never emits `ims-delete` effects"),
        "{}",
        run.stderr
    );
    assert_eq!(world().await, before, "nothing was deleted");
    assert!(dir_entries(&backup).is_empty(), "nothing was applied");

    std::fs::write(&plan_file, &pristine).unwrap();
    let _ = std::fs::remove_file(imsflow::journal::path_for(&plan_file));
    let mut twice = String::new();
    reseal(&plan_file, |p| {
        let phase = p
            .effects
            .iter()
            .find(|e| e.effect.kind() == "phase")
            .unwrap()
            .clone();
        twice = phase.id.clone();
        p.effects.insert(1, phase);
    });
    let run = apply();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "the plan has another effect with the id `{twice}`"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(world().await, before, "nothing was changed");
    assert!(dir_entries(&backup).is_empty(), "nothing was applied");
}
