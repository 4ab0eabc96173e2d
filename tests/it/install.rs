//! What an admin installs and checks: `imsflow --version`, the build identity
//! a plan records, the shell completion, the man pages and the example
//! config the package ships. The static binary and the RPM themselves are
//! tested by `scripts/dist-test` (an empty chroot, an RPM root).
use crate::support::{imsflow_cli, repo_root};
use std::process::{Command, Stdio};

fn version_json() -> serde_json::Value {
    let run = imsflow_cli(None, &["--version", "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn version_says_the_commit_the_date_the_contract_wasmtime_and_the_target() {
    let v = version_json();
    let commit = v["commit"].as_str().unwrap();
    assert_eq!(commit.len(), 40, "{v}");
    assert_eq!(v["contract"], imsflow::plan::CONTRACT, "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert!(v["wasmtime"].as_str().unwrap().starts_with("48."), "{v}");
    assert!(v["build_date"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(v["dirty"].is_boolean(), "{v}");
    // The text form says the same, one fact a line; -V is the same flag.
    for flag in ["--version", "-V"] {
        let text = imsflow_cli(None, &[flag], &[]);
        assert_eq!(text.code, 0, "{}", text.stderr);
        let lines: Vec<&str> = text.stdout.lines().collect();
        assert_eq!(lines[0], format!("imsflow {}", env!("CARGO_PKG_VERSION")));
        assert!(text.stdout.contains(&commit[..12]), "{}", text.stdout);
        for value in ["contract", "wasmtime", "target", "build_date"] {
            assert!(
                text.stdout.contains(v[value].as_str().unwrap()),
                "{value} missing from:\n{}",
                text.stdout
            );
        }
    }
}

#[test]
fn a_plan_records_the_build_that_made_it_and_show_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = format!("target_dir={}", out.display());
    let run = imsflow_cli(
        None,
        &["plan", "hello", "-p", &target, "-o", plan.to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    assert_eq!(saved["build"], version_json());
    let show = imsflow_cli(None, &["show", plan.to_str().unwrap()], &[]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let commit = saved["build"]["commit"].as_str().unwrap();
    assert!(show.stdout.contains(&commit[..12]), "{}", show.stdout);
}

#[test]
fn the_bash_completion_parses_and_completes_subcommands() {
    let run = imsflow_cli(None, &["completions", "bash"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("complete -F"), "{}", run.stdout);
    for sub in ["export", "import", "resume", "verify"] {
        assert!(run.stdout.contains(sub), "{sub} not completed");
    }
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    bash.stdin
        .take()
        .unwrap()
        .write_all(run.stdout.as_bytes())
        .unwrap();
    let out = bash.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn man_pages_cover_imsflow_and_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let run = imsflow_cli(None, &["manpages", dir.path().to_str().unwrap()], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let main = std::fs::read_to_string(dir.path().join("imsflow.1")).unwrap();
    assert!(
        main.starts_with(".ie") || main.contains(".TH imsflow 1"),
        "{main}"
    );
    for sub in [
        "export",
        "import",
        "apply",
        "resume",
        "verify",
        "plugins-new",
    ] {
        let page = dir.path().join(format!("imsflow-{sub}.1"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(".SH NAME"), "{}", page.display());
    }
    // The hidden generator documents no page of its own.
    assert!(!dir.path().join("imsflow-manpages.1").exists());
}

/// The example config the package ships names every setting, and every line
/// of it, uncommented, is a setting this imsflow reads.
#[test]
fn the_example_config_names_every_setting_and_parses_uncommented() {
    use clap::Args;
    let example =
        std::fs::read_to_string(repo_root().join("packaging/imsflow.toml.example")).unwrap();
    let flags = imsflow::config::Connect::augment_args(clap::Command::new("x"));
    for arg in flags.get_arguments() {
        let key = arg.get_id().as_str();
        assert!(
            example.contains(&format!("\n#{key} = ")),
            "the example does not show `{key}`"
        );
    }
    for table in ["[services]", "[[export.link_sources]]"] {
        assert!(example.contains(&format!("\n#{table}\n")), "{table}");
    }
    // Uncommented: the settings lines, one value for each key.
    let mut seen = std::collections::BTreeSet::new();
    let mut text = String::new();
    for line in example.lines() {
        let Some(setting) = line.strip_prefix('#') else {
            continue;
        };
        let key = setting.split([' ', '=']).next().unwrap_or_default();
        let is_setting = setting.starts_with('[')
            || (setting.contains(" = ") && !key.is_empty() && seen.insert(key.to_string()));
        if is_setting {
            text.push_str(setting);
            text.push('\n');
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("imsflow.toml");
    std::fs::write(&file, &text).unwrap();
    let connect = imsflow::config::Connect::default()
        .with_file(&file)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        connect.gateway.as_deref(),
        Some("https://api-gw-service-nmn.local")
    );
    assert_eq!(connect.export.link_sources.len(), 1, "{text}");
    assert_eq!(connect.services.len(), 1, "{text}");
}
