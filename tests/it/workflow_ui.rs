//! Golden tests: each `tests/ui/*.toml` is an invalid workflow and
//! `tests/ui/*.err` holds the exact messages, with line numbers.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test --test it workflow_ui`.
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_workflows_report_file_and_line() {
    let ui = repo_root().join("tests/ui");
    let runtime = runtime();
    let mut cases: Vec<_> = std::fs::read_dir(&ui)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the golden cases, found {}",
        cases.len()
    );
    let mut mismatches = Vec::new();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&case)
            .unwrap()
            .replace("@PLUGINS@", test_plugin_dir().to_str().unwrap());
        let label = format!("tests/ui/{name}");
        let actual = match imsflow::workflow::parse(&label, &text, &ui) {
            Err(e) => e.to_string(),
            Ok(wf) => match imsflow::engine::load_plugins(&wf, &runtime).await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{label} is valid, but every golden case must be invalid"),
            },
        } + "\n";
        let golden = case.with_extension("err");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!(
                "{label}\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn range_and_other_template_globals_are_not_unknown_variables() {
    let s = Scratch::new();
    let wf = s.workflow(
        "version = 1\nname = \"g\"\ndescription = \"\"\n[[steps]]\nid = \"a\"\nplugin = \"@PLUGINS@/sleep.wasm\"\nwith = { ms = 1, echo = \"{{ range(3) | list }}\" }\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(run(&wf, &[], true)).unwrap();
    assert_eq!(report.steps[0].output["echo"], serde_json::json!([0, 1, 2]));
}
