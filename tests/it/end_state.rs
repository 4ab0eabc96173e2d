//! Every path that finishes an import ends with its verification: `import`,
//! `resume RUN` after a gate, `apply PLAN` after `import --plan-out`, and a
//! run that is already finished (the journal is checked against the world,
//! and the verification runs again). On csm-sim and real Ceph.
use crate::import::{Site, live};
use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The run id in "To continue: imsflow resume RUN".
fn resume_id(stdout: &str) -> String {
    stdout
        .split("imsflow resume ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no resume command in: {stdout}"))
        .to_string()
}

/// The verification line, which must be followed by `DONE!` and nothing else.
fn ends_verified(run: &CliRun) -> String {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.last(), Some(&"DONE!"), "{}", run.stdout);
    let line = lines
        .iter()
        .rfind(|l| l.starts_with("Post-import verification: "))
        .unwrap_or_else(|| panic!("no verification line: {}", run.stdout));
    assert!(line.ends_with("; 0 difference(s)"), "{line}");
    line.to_string()
}

/// `import update --plan-out`: the saved plan's path.
fn save_plan(site: &Site, archive: &Path) -> PathBuf {
    let plan = site.scratch.path().join("p.json");
    let saved = site.import("update", archive, &["--plan-out", plan.to_str().unwrap()]);
    assert_eq!(saved.code, 0, "{}\n{}", saved.stdout, saved.stderr);
    plan
}

fn plan_effects(plan: &Path) -> Vec<Value> {
    let plan: Value = serde_json::from_slice(&std::fs::read(plan).unwrap()).unwrap();
    plan["effects"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_stopped_at_its_gate_then_resumed_ends_with_the_verification_and_done() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let images: Vec<String> = before["v3/images"].keys().cloned().collect();
    site.delete(&format!("v2/images/{}?cascade=True", images[0]))
        .await;

    let stopped = site.import("update", &archive, &["--until", "destructive"]);
    assert_eq!(stopped.code, 0, "{}\n{}", stopped.stdout, stopped.stderr);
    assert!(
        !stopped.stdout.contains("DONE!") && !stopped.stdout.contains("verification"),
        "a run stopped at its gate is not done: {}",
        stopped.stdout
    );
    let run = resume_id(&stopped.stdout);
    let resumed = site.cli(&["resume", &run, "--yes"]);
    let line = ends_verified(&resumed);
    let n = before["v3/images"].len();
    assert!(
        line.contains(&format!(
            "{n} record(s) back under their original ids ({n} images)"
        )),
        "every image, read back: {line}"
    );
    assert!(!line.contains("; 0 S3 object(s)"), "the uploads: {line}");
    assert_eq!(live(&site.ims().await), live(&before));

    // The journal has the verification as an effect, done, with its figures.
    let shown = site.cli(&["--json", "runs", "show", &run]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    let last = shown["effects"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "assert", "{last}");
    assert_eq!(last["state"], "done", "{last}");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains(&line["Post-import verification: ".len()..]),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_import_plan_applied_ends_with_the_verification_and_again_when_finished() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let recipe = before["v3/recipes"].keys().next().unwrap().clone();
    site.delete(&format!("v3/recipes/{recipe}")).await;
    let plan = save_plan(&site, &archive);
    let applied = site.cli(&["apply", plan.to_str().unwrap(), "--yes"]);
    let line = ends_verified(&applied);
    assert!(line.contains("recipes"), "{line}");
    assert_eq!(live(&site.ims().await), live(&before));

    // Finished: the world agrees with the journal, and the end state is
    // verified again, with the same figures in --json.
    let again = site.cli(&["--json", "apply", plan.to_str().unwrap(), "--yes"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let report: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(report["already_finished"], true, "{report}");
    let n = before["v3/recipes"].len();
    assert_eq!(report["verification"]["ids_preserved"], n, "{report}");
    assert_eq!(report["verification"]["records"]["recipes"], n, "{report}");
    assert_eq!(
        report["verification"]["differences"],
        serde_json::json!([]),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_difference_found_by_the_verification_fails_the_run_naming_the_record() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let images: Vec<String> = before["v3/images"].keys().cloned().collect();
    site.delete(&format!("v3/images/{}", images[0])).await;
    let plan = save_plan(&site, &archive);
    let effects = plan_effects(&plan);
    let last = effects.len() - 1;
    assert_eq!(
        effects[last]["effect"]["assertion"]["assert"], "import-end-state",
        "the verification is the plan's last effect: {}",
        effects[last]
    );
    // Paused after the restart, before the verification: another image is
    // deleted behind imsflow's back.
    let flag = site.scratch.path().join("paused");
    let child = imsflow_paused(
        &site.sys.data.path().join("imsflow.toml"),
        &["apply", plan.to_str().unwrap(), "--yes"],
        &format!("{last}:before"),
        &flag,
    );
    site.delete(&format!("v3/images/{}", images[1])).await;
    std::fs::remove_file(&flag).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stdout.contains("DONE!"), "{stdout}");
    assert!(
        stderr.contains("1 difference(s)")
            && stderr.contains(&format!("images: {} is missing", images[1])),
        "names the record: {stderr}"
    );
    let shown = site.cli(&["--json", "runs", "show", plan.to_str().unwrap()]);
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    let verification = &shown["effects"][last];
    assert_eq!(verification["state"], "failed", "{verification}");
    assert!(
        verification["detail"]
            .as_str()
            .unwrap()
            .contains(&images[1]),
        "{verification}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_with_nothing_to_do_says_so_in_one_line_and_exits_0() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    for extra in [&["--dry-run"][..], &["--yes"][..]] {
        let run = site.import("update", &archive, extra);
        assert_eq!(run.code, 0, "{extra:?}: {}\n{}", run.stdout, run.stderr);
        let said: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| !l.starts_with("Checking the archive"))
            .collect();
        assert_eq!(said.len(), 1, "{extra:?}: {}", run.stdout);
        assert!(said[0].starts_with("Nothing to do: "), "{}", said[0]);
    }
    assert_eq!(site.ims().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_import_uploads_a_lost_object_again_and_refuses_over_a_changed_ims() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let objects = site.s3().await;
    let image = before["v3/images"].keys().next().unwrap().clone();
    site.delete(&format!("v2/images/{image}?cascade=True"))
        .await;
    let state = site.dir("state");
    let env = [("IMSFLOW_STATE_DIR", state.to_str().unwrap())];
    ends_verified(&site.import_env("update", &archive, &["--yes"], &env));
    let listed = imsflow_cli(None, &["--json", "runs", "list"], &env);
    let runs: Value = serde_json::from_str(&listed.stdout).unwrap();
    let run = runs[0]["id"].as_str().unwrap().to_string();

    // An object the import uploaded is deleted after it finished.
    let key = objects
        .keys()
        .find(|k| k.starts_with(&format!("boot-images/{image}/")))
        .unwrap()
        .clone();
    let (bucket, object) = key.split_once('/').unwrap();
    csm_sim::s3::S3::new(&site.sys.s3)
        .client()
        .delete_object()
        .bucket(bucket)
        .key(object)
        .send()
        .await
        .unwrap();
    let config = site.sys.data.path().join("imsflow.toml");
    let resumed = imsflow_cli(Some(&config), &["resume", &run], &env);
    ends_verified(&resumed);
    assert!(
        !resumed.stdout.contains("already finished"),
        "{}",
        resumed.stdout
    );
    assert!(
        resumed
            .stdout
            .lines()
            .any(|l| l.contains("the journal records it as done, but")
                && l.contains(&format!("s3://{key} does not exist; doing it again"))),
        "says what the world showed, and what it did: {}",
        resumed.stdout
    );
    assert_eq!(
        site.s3().await.get(&key),
        objects.get(&key),
        "uploaded again"
    );

    // Another image deleted since: IMS holds neither what the plan was made
    // against nor what it wrote; writing the data file again would undo that
    // change unseen, so the run is refused, naming why.
    let other = before["v3/images"].keys().find(|i| **i != image).unwrap();
    site.delete(&format!("v3/images/{other}")).await;
    let refused = imsflow_cli(Some(&config), &["resume", &run], &env);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .lines()
            .any(|l| l.contains("the journal records it as done, but")
                && l.contains("images in IMS changed since planning")
                && l.ends_with("not done again")),
        "{}",
        refused.stderr
    );
}
