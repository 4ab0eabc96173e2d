//! Site plugins: the self-contained SDK, `plugins inspect`, and the
//! link-source scaffold (`plugins new`).
use crate::support::*;

/// The SDK carries its own copy of the WIT so that a site's crate can depend
/// on it by path; the copy must be the contract the host links.
#[test]
fn sdk_wit_copy_is_the_contract() {
    let root = repo_root();
    let contract = std::fs::read(root.join("wit/plugin.wit")).unwrap();
    let copy = std::fs::read(root.join("plugins/sdk/wit/plugin.wit")).unwrap();
    assert!(
        contract == copy,
        "plugins/sdk/wit/plugin.wit differs from wit/plugin.wit: copy the contract into the SDK \
         (cp wit/plugin.wit plugins/sdk/wit/plugin.wit)"
    );
}

fn inspect(dir: &std::path::Path, file: &str) -> CliRun {
    let out = imsflow_command()
        .args(["-q", "plugins", "inspect", file])
        .current_dir(dir)
        .output()
        .unwrap();
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn inspect_a_plugin() {
    let wasm = test_plugin("uploader");
    let run = inspect(wasm.parent().unwrap(), "uploader.wasm");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sha = imsflow::plugin::sha256_hex(&std::fs::read(&wasm).unwrap());
    assert!(
        run.stdout.contains(&format!("sha256:      {sha}\n")),
        "{}",
        run.stdout
    );
    golden(
        "inspect-uploader.txt",
        &run.stdout.replace(&sha, "<sha256 of the file>"),
    );

    // --json carries the same facts.
    let out = imsflow_command()
        .args(["-q", "--json", "plugins", "inspect"])
        .arg(&wasm)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "uploader");
    assert_eq!(v["sha256"], sha.as_str());
    assert_eq!(v["contract"], serde_json::json!(["imsflow:plugin@0.2.0"]));
}

#[test]
fn inspect_refuses_what_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8]); 4] = [
        ("random.wasm", b"\x8f\x13 not wasm at all \x00\xff"),
        ("core-module.wasm", b"\0asm\x01\0\0\0"),
        // `(component)`: a component, but of another world (no exports).
        ("empty-component.wasm", b"\0asm\x0d\0\x01\0"),
        ("truncated.wasm", b"\0asm"),
    ];
    let mut text = String::new();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let run = inspect(dir.path(), name);
        assert_eq!(run.code, 1, "{name}: {}", run.stdout);
        assert!(run.stdout.is_empty(), "{name}: {}", run.stdout);
        text.push_str(&format!(
            "$ imsflow plugins inspect {name}\n{}\n",
            run.stderr.trim_end()
        ));
    }
    let run = inspect(dir.path(), "missing.wasm");
    assert_eq!(run.code, 1);
    text.push_str(&format!(
        "$ imsflow plugins inspect missing.wasm\n{}\n",
        run.stderr.trim_end()
    ));
    golden("inspect-not-a-plugin.txt", &text);
}

fn cargo_in(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        // Shared and kept between runs: the scaffold's dependencies build once.
        .env("CARGO_TARGET_DIR", target_dir().join("scaffold"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The link-source template, scaffolded outside this repository, passes its
/// own FakeHost test natively, builds for wasm32-wasip2 with the plain
/// command its README gives, and is a plugin that `inspect` accepts.
#[test]
fn scaffolded_link_source_tests_builds_and_inspects() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = imsflow_command().args(args).current_dir(dir.path()).output().unwrap();
        CliRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let sdk = repo_root().join("plugins/sdk");
    let sdk = sdk.to_str().unwrap();
    let made = run(&["-q", "plugins", "new", "link-source", "site-links", "--dir", "crates", "--sdk", sdk]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let krate = dir.path().join("crates/site-links");
    assert_eq!(dir_entries(&krate), ["Cargo.toml", "README.md", "src"]);
    let lib = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    assert!(lib.lines().count() <= 45, "the template's lib.rs grew to {} lines", lib.lines().count());

    // Refusals: an existing crate, a name cargo would not take.
    let again = run(&["-q", "plugins", "new", "link-source", "site-links", "--dir", "crates", "--sdk", sdk]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let bad = run(&["-q", "plugins", "new", "link-source", "Site_Links", "--sdk", sdk]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("is not a plugin name"), "{}", bad.stderr);

    cargo_in(&krate, &["test", "--offline", "--quiet"]);
    cargo_in(&krate, &["build", "--offline", "--quiet", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target_dir().join("scaffold/wasm32-wasip2/release/site_links.wasm");
    let inspected = inspect(dir.path(), wasm.to_str().unwrap());
    assert_eq!(inspected.code, 0, "{}", inspected.stderr);
    assert!(inspected.stdout.contains("name:        site-links\n"), "{}", inspected.stdout);
    assert!(inspected.stdout.contains("services:    bos\n"), "{}", inspected.stdout);
    assert!(inspected.stdout.contains("contract:    imsflow:plugin@0.2.0\n"), "{}", inspected.stdout);
}
