//! Independent steps overlap in time; dependent steps wait and see outputs.
use crate::support::*;
use imsflow::engine::StepStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_steps_overlap_and_dependents_wait() {
    let s = Scratch::new();
    let wf = s.workflow(
        r#"version = 1
name = "dag"
description = "two parallel sleeps, then a join"

[[steps]]
id = "a"
plugin = "@PLUGINS@/sleep.wasm"
with = { ms = 400, echo = "from-a" }

[[steps]]
id = "b"
plugin = "@PLUGINS@/sleep.wasm"
with = { ms = 400, echo = ["from", "b"] }

[[steps]]
id = "join"
plugin = "@PLUGINS@/sleep.wasm"
needs = ["a", "b"]
with = { ms = 1, echo = { a = "{{ steps.a.output.echo }}", b = "{{ steps.b.output.echo }}", text = "a said {{ steps.a.output.echo }}" } }
"#,
    );
    let report = run(&wf, &[], false).await.unwrap();
    let step = |id: &str| report.steps.iter().find(|s| s.id == id).unwrap();
    let (a, b, join) = (step("a"), step("b"), step("join"));
    for s in [a, b, join] {
        assert_eq!(s.status, StepStatus::Done);
    }
    let (a0, a1) = (a.started_ms.unwrap(), a.finished_ms.unwrap());
    let (b0, b1) = (b.started_ms.unwrap(), b.finished_ms.unwrap());
    assert!(
        a0 < b1 && b0 < a1,
        "a [{a0}, {a1}] and b [{b0}, {b1}] must overlap"
    );
    assert!(
        join.started_ms.unwrap() >= a1.max(b1),
        "join starts after both"
    );
    // Outputs flow with their types through sole expressions, and as text in templates.
    assert_eq!(join.output["echo"]["a"], "from-a");
    assert_eq!(join.output["echo"]["b"], serde_json::json!(["from", "b"]));
    assert_eq!(join.output["echo"]["text"], "a said from-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_false_skips_a_step_and_its_output_is_null() {
    let s = Scratch::new();
    let wf = s.workflow(
        r#"version = 1
name = "when"
description = ""

[params.include]
type = "bool"
default = false
description = "run the optional step"

[[steps]]
id = "optional"
plugin = "@PLUGINS@/sleep.wasm"
when = "params.include"
with = { ms = 1, echo = "ran" }

[[steps]]
id = "after"
plugin = "@PLUGINS@/sleep.wasm"
needs = ["optional"]
with = { ms = 1, echo = "{{ steps.optional.output }}" }
"#,
    );
    let report = run(&wf, &[], false).await.unwrap();
    assert_eq!(report.steps[0].status, StepStatus::Skipped);
    assert_eq!(report.steps[1].output["echo"], serde_json::Value::Null);
    let report = run(&wf, &[("include", "true")], false).await.unwrap();
    assert_eq!(report.steps[0].status, StepStatus::Done);
    assert_eq!(report.steps[1].output["echo"]["echo"], "ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_stops_its_dependents() {
    let s = Scratch::new();
    let wf = s.workflow(
        r#"version = 1
name = "fail"
description = ""

[[steps]]
id = "broken"
plugin = "@PLUGINS@/trap.wasm"

[[steps]]
id = "downstream"
plugin = "@PLUGINS@/sleep.wasm"
needs = ["broken"]
with = { ms = 1, write = "x.json" }
grants = { effects = ["archive-add-json"] }
"#,
    );
    let Err(imsflow::engine::RunError::StepsFailed { steps, .. }) = run(&wf, &[], false).await
    else {
        panic!("must fail")
    };
    assert_eq!(steps[1].status, StepStatus::NotRun);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried_and_crashes_are_not() {
    let s = Scratch::new();
    let wf = s.workflow(
        r#"version = 1
name = "retry"
description = ""

[[steps]]
id = "slow"
plugin = "@PLUGINS@/sleep.wasm"
with = { ms = 5000 }
timeout = "200ms"
retries = 2

[[steps]]
id = "crash"
plugin = "@PLUGINS@/trap.wasm"
retries = 3
"#,
    );
    let Err(imsflow::engine::RunError::StepsFailed { steps, .. }) = run(&wf, &[], false).await
    else {
        panic!("must fail")
    };
    let step = |id: &str| steps.iter().find(|s| s.id == id).unwrap();
    assert_eq!(
        step("slow").attempts,
        3,
        "a timeout is retried `retries` times"
    );
    assert!(
        step("slow")
            .error
            .as_deref()
            .unwrap()
            .contains("time limit of 200ms")
    );
    assert_eq!(
        step("crash").attempts,
        1,
        "a crash would crash again: no retry"
    );
}

#[test]
fn a_100000_step_reverse_chain_is_refused_at_the_step_limit_without_overflowing_the_stack() {
    let mut text = String::from("version = 1\nname = \"chain\"\ndescription = \"\"\n");
    for i in 0..100_000 {
        text.push_str(&format!(
            "[[steps]]\nid = \"s{i}\"\nplugin = \"write-json\"\nneeds = [\"s{}\"]\n",
            i + 1
        ));
    }
    // Over the file cap too; parse the text directly to reach the step cap.
    let err = imsflow::workflow::parse("chain.toml", &text, std::path::Path::new("."))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("over the limit of 1048576"), "{err}");
    let small: String = text
        .lines()
        .take(3 + 4 * 1001)
        .collect::<Vec<_>>()
        .join("\n");
    let err = imsflow::workflow::parse("chain.toml", &small, std::path::Path::new("."))
        .expect_err("refused")
        .to_string();
    assert!(
        err.starts_with("chain.toml:400")
            && err.contains("the workflow has 1001 steps, over the limit of 1000"),
        "{err}"
    );
}

#[test]
fn a_1000_step_reverse_chain_with_a_cycle_is_found_iteratively() {
    let mut text = String::from("version = 1\nname = \"chain\"\ndescription = \"\"\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "[[steps]]\nid = \"s{i}\"\nplugin = \"write-json\"\nneeds = [\"s{}\"]\nwith = {{ path = \"x\", document = \"{{{{ steps.s{}.output }}}}\" }}\n",
            (i + 1) % 1000,
            (i + 1) % 1000
        ));
    }
    let err = imsflow::workflow::parse("chain.toml", &text, std::path::Path::new("."))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("steps form a cycle: s0 -> s1 -> s2"), "{err}");
}
