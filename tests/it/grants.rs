//! Effects are granted, not just emitted: a plugin that emits an effect kind
//! or touches a bucket its step does not grant fails at plan time; a plan
//! whose grants no longer cover its effects is refused at apply; a plugin
//! declaring ungranted kinds is refused at validate. The stock import
//! workflows grant exactly their mode's kinds and differ only where the mode
//! must.
use crate::support::*;
use imsflow::apply::{ApplyError, ApplyOptions};
use imsflow::engine::{Engine, RunOptions};
use imsflow_kinds::ImportMode;

fn rogue(grants: &str, emit: &str) -> String {
    format!(
        "version = 1\nname = \"r\"\ndescription = \"\"\n[archive]\noutput_dir = \"{{{{ params.out }}}}\"\n[params.out]\ntype = \"string\"\ndefault = \".\"\ndescription = \"\"\n[[steps]]\nid = \"r\"\nplugin = \"@PLUGINS@/rogue.wasm\"\nwith = {{ emit = {emit}, bucket = \"secrets\" }}\ngrants = {grants}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitted_effect_kind_the_step_does_not_grant_fails_the_step() {
    let s = Scratch::new();
    let wf = s.workflow(&rogue(
        "{ effects = [\"archive-add-json\"] }",
        "[\"archive-add-json\", \"ims-delete\"]",
    ));
    let message = failure_of(run(&wf, &[], true).await);
    assert!(
        message.contains("step `r`: plugin `rogue` emitted `ims-delete`")
            && message.contains(
                "effect `ims-delete` is not granted (add \"ims-delete\" to the step's `grants.effects`)"
            ),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_effect_on_an_ungranted_bucket_fails_the_step() {
    let s = Scratch::new();
    let wf = s.workflow(&rogue(
        "{ buckets = [\"ims\"], effects = [\"archive-add-json\", \"archive-add-object\"] }",
        "[\"archive-add-object\"]",
    ));
    let message = failure_of(run(&wf, &[], true).await);
    assert!(
        message.contains("emitted `archive-add-object` (s3://secrets/secret -> stolen)")
            && message.contains("uses bucket `secrets`, which is not granted"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_declaring_an_ungranted_kind_is_refused_at_validate() {
    let s = Scratch::new();
    let path = s.path().join("wf.toml");
    let text = rogue("{ }", "[]").replace("@PLUGINS@", test_plugin_dir().to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    let wf = imsflow::workflow::load(path.to_str().unwrap()).unwrap();
    let Err(err) = imsflow::engine::load_plugins(&wf, &runtime()).await else {
        panic!("a plugin declaring an ungranted kind must be refused")
    };
    let err = err.to_string();
    assert!(
        err.contains("wf.toml:12:10: step `r`: plugin `rogue` may emit `archive-add-json` effects, which the step does not grant"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ims_effect_without_a_gateway_is_refused_before_anything_runs() {
    let s = Scratch::new();
    let wf = s.workflow(&rogue(
        "{ effects = [\"archive-add-json\", \"ims-delete\"] }",
        "[\"archive-add-json\", \"ims-delete\"]",
    ));
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let err = run(&wf, &[("out", out.to_str().unwrap())], false)
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains(
            "nothing was applied:\n  - the plan changes IMS, but no CSM gateway is configured"
        ),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_rechecks_grants_of_a_plan_whose_grants_were_edited() {
    let s = Scratch::new();
    let wf = s.workflow(&rogue(
        "{ effects = [\"archive-add-json\"] }",
        "[\"archive-add-json\"]",
    ));
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let engine = Engine::new(runtime(), Default::default());
    let opts = RunOptions {
        params: vec![("out".into(), out.to_str().unwrap().into())],
        dry_run: false,
        observer: imsflow::observe::silent(),
    };
    let mut plan = engine.plan(&wf, &opts).await.unwrap().plan;
    plan.steps[0].grants.effects.clear();
    plan.seal();
    let err = engine
        .apply(&plan, &ApplyOptions::default(), None)
        .await
        .expect_err("refused");
    let ApplyError::Refused(problems) = &err else {
        panic!("expected a refusal, got {err}")
    };
    assert!(
        problems[0].contains(
            "effect r.0 (step `r`), plugin `rogue`: effect `archive-add-json` is not granted"
        ),
        "{problems:?}"
    );
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing was written"
    );
}

/// The stock import workflows, as TOML, with the mode's name
/// (`import-<mode>`, the workflow's and its plugin's) replaced by
/// `import-MODE` and the descriptions that must differ removed.
fn import_workflow_without_its_mode(mode: ImportMode) -> toml::Value {
    let path = workflows_dir().join(format!("{}.toml", mode.workflow()));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut wf: toml::Value = toml::from_str(&text).unwrap();
    fn rename(v: &mut toml::Value, from: &str) {
        match v {
            toml::Value::String(s) if s == from => *s = "import-MODE".into(),
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| rename(v, from)),
            toml::Value::Array(a) => a.iter_mut().for_each(|v| rename(v, from)),
            _ => {}
        }
    }
    rename(&mut wf, mode.workflow());
    // What a mode must say in its own words: what it does, what running
    // jobs mean to it, and what its gate lets through.
    wf.as_table_mut().unwrap().remove("description");
    wf["params"]["ignore_running_jobs"]
        .as_table_mut()
        .unwrap()
        .remove("description");
    for gate in wf["gates"].as_array_mut().unwrap() {
        gate.as_table_mut().unwrap().remove("description");
    }
    wf
}

fn workflows_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

/// The keys (`steps[3].grants.effects`) where two TOML values differ.
fn differing_keys(at: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    use toml::Value::{Array, Table};
    match (a, b) {
        (Table(a), Table(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let at = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(a), Some(b)) => differing_keys(&at, a, b, out),
                    (a, b) => out.push(format!("{at}: {a:?} vs {b:?}")),
                }
            }
        }
        (Array(a), Array(b)) if a.len() == b.len() => {
            for (i, (a, b)) in a.iter().zip(b).enumerate() {
                differing_keys(&format!("{at}[{i}]"), a, b, out);
            }
        }
        (a, b) if a != b => out.push(format!("{at}: {a} vs {b}")),
        _ => {}
    }
}

/// The four import workflows are one workflow with the mode in its name:
/// besides `import-<mode>` (the workflow's name and its strategy plugin),
/// only the descriptions of the workflow, of `ignore_running_jobs` and of
/// the gate may differ. A change to one must be made to all four.
#[test]
fn the_import_workflows_differ_only_in_the_mode_and_its_descriptions() {
    let mut files: Vec<String> = std::fs::read_dir(workflows_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("import-") && n.ends_with(".toml"))
        .collect();
    files.sort();
    let mut modes: Vec<String> = ImportMode::ALL
        .iter()
        .map(|m| format!("{}.toml", m.workflow()))
        .collect();
    modes.sort();
    assert_eq!(files, modes, "one workflows/import-*.toml per ImportMode");
    let (first, rest) = ImportMode::ALL.split_first().unwrap();
    let base = import_workflow_without_its_mode(*first);
    for mode in rest {
        let mut keys = Vec::new();
        differing_keys(
            "",
            &base,
            &import_workflow_without_its_mode(*mode),
            &mut keys,
        );
        assert!(
            keys.is_empty(),
            "workflows/{}.toml differs from workflows/{}.toml beyond the mode's name and its descriptions, at:\n  {}",
            mode.workflow(),
            first.workflow(),
            keys.join("\n  ")
        );
    }
}

/// Each import workflow's strategy step runs its mode's plugin and grants
/// exactly the effect kinds that plugin declares (`ImportMode::effect_kinds`).
#[test]
fn each_import_workflow_grants_exactly_its_modes_effect_kinds() {
    for mode in ImportMode::ALL {
        let wf = import_workflow_without_its_mode(mode);
        let file = format!("workflows/{}.toml", mode.workflow());
        let steps = wf["steps"].as_array().unwrap();
        let step = steps
            .iter()
            .find(|s| s["id"].as_str() == Some("import"))
            .unwrap_or_else(|| panic!("{file}: no step `import`"));
        assert_eq!(step["plugin"].as_str(), Some("import-MODE"), "{file}");
        let granted: Vec<&str> = step["grants"]["effects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let declared: Vec<&str> = mode.effect_kinds().iter().map(|k| k.as_str()).collect();
        assert_eq!(
            granted, declared,
            "{file}: the `import` step's grants.effects must be ImportMode::effect_kinds (plugins/kinds)"
        );
    }
}
