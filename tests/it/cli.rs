//! The `imsflow` binary: commands, --json and the documented exit codes.
use crate::archive::{docs_workflow, run_cli};
use crate::support::*;
use std::process::Output;

fn imsflow(args: &[&str]) -> Output {
    crate::support::imsflow_command()
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

#[test]
fn stock_workflows_validate() {
    let mut args = vec!["validate"];
    let files: Vec<String> = std::fs::read_dir(repo_root().join("workflows"))
        .unwrap()
        .map(|e| format!("workflows/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    args.extend(files.iter().map(String::as_str));
    let out = imsflow(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn dry_run_exits_2_with_pending_effects_and_0_without() {
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("target_dir={}", tmp.path().display());
    let out = imsflow(&["run", "hello", "--param", &target, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("archive-add-json: 1 effect(s)")
            && text(&out.stdout).contains("note.0  JSON document -> note.json"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    let s = Scratch::new();
    s.workflow("version = 1\nname = \"quiet\"\ndescription = \"\"\n[[steps]]\nid = \"a\"\nplugin = \"@PLUGINS@/sleep.wasm\"\nwith = { ms = 1 }\n");
    let wf = s.path().join("wf.toml");
    let out = imsflow(&["run", wf.to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn real_run_reports_the_archive_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("target_dir={}", tmp.path().display());
    let out = imsflow(&[
        "--json",
        "run",
        "hello",
        "-p",
        &target,
        "-p",
        "message=hi there",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["apply"]["applied"], 1);
    assert_eq!(
        report["plan"]["effects"][0]["effect"]["kind"],
        "archive-add-json"
    );
    let archive = std::path::PathBuf::from(report["apply"]["archive"].as_str().unwrap());
    let note = std::fs::read_to_string(archive.join("note.json")).unwrap();
    assert_eq!(note, r#"{"message":"hi there"}"#);
}

#[test]
fn a_compile_cache_others_can_write_is_refused_with_one_warning_per_run() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    s.workflow("version = 1\nname = \"two\"\ndescription = \"\"\n[[steps]]\nid = \"a\"\nplugin = \"@PLUGINS@/sleep.wasm\"\nwith = { ms = 1 }\n[[steps]]\nid = \"b\"\nplugin = \"@PLUGINS@/chatty.wasm\"\n");
    let cache = s.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = crate::support::imsflow_command()
        .args([
            "run",
            s.path().join("wf.toml").to_str().unwrap(),
            "--dry-run",
        ])
        .env("IMSFLOW_CACHE_DIR", &cache)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("compile cache disabled: it is writable by group or others (mode 777); make it 0700; until then every plugin is compiled on every run").count(),
        1,
        "two plugins, one warning: {stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing cached"
    );
}

#[test]
fn a_failed_step_exits_1_and_names_the_step() {
    let s = Scratch::new();
    s.workflow("version = 1\nname = \"boom\"\ndescription = \"\"\n[[steps]]\nid = \"explode\"\nplugin = \"@PLUGINS@/trap.wasm\"\n");
    let out = imsflow(&["run", s.path().join("wf.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("step `explode`: plugin `trap` crashed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_64_and_unknown_params_exit_1() {
    assert_eq!(imsflow(&["run"]).status.code(), Some(64));
    assert_eq!(imsflow(&["frobnicate"]).status.code(), Some(64));
    let out = imsflow(&["run", "hello", "-p", "nope=1", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    // Each fact once: the workflow is named one time.
    assert_eq!(
        text(&out.stderr),
        "error: planning the run: workflow `hello`: no param `nope` (params: message, target_dir)\n"
    );
    let out = imsflow(&["validate", "hello"]);
    assert_eq!(text(&out.stdout), "hello: ok (1 step)\n");
}

#[test]
fn plugins_list_shows_embedded_plugins_with_their_hashes() {
    let out = imsflow(&["--json", "plugins", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let write_json = list
        .iter()
        .find(|p| p["name"] == "write-json")
        .expect("write-json is embedded");
    let built = std::fs::read(test_plugin("write-json")).unwrap();
    assert_eq!(write_json["sha256"], imsflow::plugin::sha256_hex(&built));
    assert!(
        write_json["imports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| !i.as_str().unwrap().starts_with("wasi:filesystem"))
    );
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let s = Scratch::new();
    s.workflow(&docs_workflow("tar", "docs-{{ run.suffix }}", &["a.json"]));
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let run = run_cli(&s.path().join("wf.toml"), &out, "022", &["-v"]);
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("planned"), "logs are there: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

/// Runs imsflow with its stdout a pipe whose reader is already gone, so every
/// write fails with EPIPE (deterministically, unlike `| head`).
fn imsflow_into_a_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    crate::support::imsflow_command()
        .args(args)
        .current_dir(repo_root())
        .stdout(writer)
        .output()
        .unwrap()
}

#[test]
fn a_closed_output_pipe_ends_the_output_quietly_with_the_commands_own_exit_code() {
    for (args, code) in [
        (&["plugins", "list"][..], 0),
        (&["workflows", "list"][..], 0),
        (&["--json", "validate", "workflows/export.toml"][..], 0),
        (&["completions", "bash"][..], 0),
        (&["--version"][..], 0),
    ] {
        let out = imsflow_into_a_closed_pipe(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "imsflow {args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "imsflow {args:?}");
    }

    // A run whose reader went away is not cut short: the archive is written,
    // and a dry run still says by its exit code that effects are pending.
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("target_dir={}", tmp.path().display());
    let out = imsflow_into_a_closed_pipe(&["run", "hello", "-p", &target, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = imsflow_into_a_closed_pipe(&["run", "hello", "-p", &target]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    // What a script under `set -o pipefail` sees.
    let bin = env!("CARGO_BIN_EXE_imsflow");
    let out = std::process::Command::new("bash")
        .args(["-c", "set -o pipefail; \"$0\" plugins list | head -n 1"])
        .arg(bin)
        .env("IMSFLOW_CACHE_DIR", target_dir().join("test-compile-cache"))
        .env("IMSFLOW_STATE_DIR", target_dir().join("test-state"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1);
}

#[test]
fn workflows_and_runs_alone_list_as_their_list_subcommand_does() {
    // A state folder of its own: other tests add runs to the shared one.
    let state = tempfile::tempdir().unwrap();
    let hello = tempfile::tempdir().unwrap();
    let target = format!("target_dir={}", hello.path().display());
    let run = |args: &[&str]| {
        crate::support::imsflow_command()
            .env("IMSFLOW_STATE_DIR", state.path())
            .args(args)
            .current_dir(repo_root())
            .output()
            .unwrap()
    };
    assert_eq!(run(&["run", "hello", "-p", &target]).status.code(), Some(0));
    for (alone, list) in [
        (&["workflows"][..], &["workflows", "list"][..]),
        (&["runs"][..], &["runs", "list"][..]),
    ] {
        let (a, b) = (run(alone), run(list));
        assert_eq!(a.status.code(), Some(0), "{alone:?}: {}", text(&a.stderr));
        assert_eq!(text(&a.stdout), text(&b.stdout), "{alone:?}");
    }
    assert!(text(&run(&["workflows"]).stdout).contains("import-overwrite"));
    assert!(text(&run(&["runs"]).stdout).contains("hello"));
}

#[test]
fn help_groups_connection_approval_and_global_flags_and_takes_y_for_yes() {
    let help = text(&imsflow(&["import", "--help"]).stdout);
    for heading in ["Connection:", "Approval:", "Global:"] {
        assert!(help.contains(heading), "{heading} in\n{help}");
    }
    assert!(help.contains("-y, --yes"), "{help}");
    // Secrets on the command line: the help says where they are safer.
    let words = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("IMSFLOW_S3_SECRET_KEY or the config file keep it out of sight"),
        "{help}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("target_dir={}", tmp.path().display());
    let out = imsflow(&["run", "hello", "-p", &target, "-y"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn json_validate_of_an_invalid_workflow_is_one_document_and_exit_1() {
    let out = imsflow(&["--json", "validate", "tests/ui/cycle.toml", "hello"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{}", text(&out.stdout)));
    assert_eq!(doc[0]["ok"], false);
    assert!(doc[0]["errors"][0]["line"].as_u64().is_some(), "{doc}");
    assert_eq!(doc[1]["ok"], true);

    let out = imsflow(&["validate", "tests/ui/cycle.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).ends_with("error: 1 of 1 workflow file(s) are invalid\n"));
}
