//! Effects are granted, not just emitted: a plugin that emits an effect kind
//! or touches a bucket its step does not grant fails at plan time; a plan
//! whose grants no longer cover its effects is refused at apply; a plugin
//! declaring ungranted kinds is refused at validate.
use crate::support::*;
use imsflow::apply::{ApplyError, ApplyOptions};
use imsflow::engine::{Engine, RunOptions};

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
    let Err(err) = wf.load_plugins(&runtime()).await else {
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
