//! A dry run runs every step but executes no effect; a real run executes them.
use crate::support::*;

const WORKFLOW: &str = r#"version = 1
name = "docs"
description = "writes two documents"

[params.out]
type = "string"
description = "output directory"

[archive]
output_dir = "{{ params.out }}"
name = "docs-{{ run.suffix }}"
format = "tar"

[[steps]]
id = "first"
plugin = "write-json"
with = { path = "a/first.json", document = { n = 1 } }
grants = { effects = ["archive-add-json"] }

[[steps]]
id = "second"
plugin = "@PLUGINS@/sleep.wasm"
needs = ["first"]
with = { ms = 1, echo = "{{ steps.first.output }}", write = "second.json" }
grants = { effects = ["archive-add-json"] }
"#;

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_effects_and_executes_none() {
    let s = Scratch::new();
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let wf = s.workflow(WORKFLOW);
    let report = run(&wf, &[("out", out.to_str().unwrap())], true)
        .await
        .unwrap();
    assert_eq!(report.plan.effects.len(), 2);
    assert_eq!(report.applied(), 0);
    assert!(report.archive().is_none());
    assert!(
        entries(&out).is_empty(),
        "a dry run writes nothing: {:?}",
        entries(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_run_writes_the_archive_in_plan_order() {
    let s = Scratch::new();
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let wf = s.workflow(WORKFLOW);
    let report = run(&wf, &[("out", out.to_str().unwrap())], false)
        .await
        .unwrap();
    assert_eq!(report.applied(), 2);
    let archive = report.archive().unwrap().to_path_buf();
    assert_eq!(
        entries(&out),
        vec![archive.file_name().unwrap().to_string_lossy().into_owned()],
        "no .partial left"
    );
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let members: Vec<(String, String)> = tar
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut e, &mut text).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    assert_eq!(members[0], ("a/first.json".into(), r#"{"n":1}"#.into()));
    assert_eq!(members[1].0, "second.json");
    let second: serde_json::Value = serde_json::from_str(&members[1].1).unwrap();
    assert_eq!(
        second["path"], "a/first.json",
        "the second step saw the first one's output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_writes_one_member_twice_applies_nothing() {
    let s = Scratch::new();
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let wf = s.workflow(&WORKFLOW.replace("write = \"second.json\"", "write = \"a/first.json\""));
    let err = run(&wf, &[("out", out.to_str().unwrap())], false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "archive member `a/first.json` is written twice (by steps `first` and `second`)"
        ),
        "{err}"
    );
    assert!(entries(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_escaping_the_archive_applies_nothing() {
    let s = Scratch::new();
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let wf = s.workflow(&WORKFLOW.replace("write = \"second.json\"", "write = \"../escape.json\""));
    let err = run(&wf, &[("out", out.to_str().unwrap())], false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`../escape.json` is not allowed: it contains `..`"),
        "{err}"
    );
    assert!(entries(&out).is_empty());
    assert!(!s.path().join("escape.json").exists());
}
