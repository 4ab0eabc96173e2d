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
    assert_eq!(v["contract"], serde_json::json!(["imsflow:plugin@0.3.0"]));
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
    // The wasm workspace's lock file: offline, the scaffold then resolves to
    // the dependency versions build.rs has already compiled into the same
    // target dir with the same profile, and only the crate itself builds.
    let lock = dir.join("Cargo.lock");
    if !lock.exists() {
        std::fs::copy(repo_root().join("plugins/Cargo.lock"), &lock).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir().join("wasm"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        // scripts/test's per-test timing is for this suite, not the scaffold's.
        .env_remove("RUSTC_BOOTSTRAP")
        .env_remove("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER")
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
#[ignore = "slow tier (IMSFLOW_SLOW_TESTS=1): builds a fresh crate natively and for wasm"]
#[test]
fn scaffolded_link_source_tests_builds_and_inspects() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = imsflow_command()
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        CliRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let sdk = repo_root().join("plugins/sdk");
    let sdk = sdk.to_str().unwrap();
    let made = run(&[
        "-q",
        "plugins",
        "new",
        "link-source",
        "site-links",
        "--dir",
        "crates",
        "--sdk",
        sdk,
    ]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let krate = dir.path().join("crates/site-links");
    assert_eq!(dir_entries(&krate), ["Cargo.toml", "README.md", "src"]);
    let lib = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    assert!(
        lib.lines().count() <= 45,
        "the template's lib.rs grew to {} lines",
        lib.lines().count()
    );

    // Refusals: an existing crate, a name cargo would not take.
    let again = run(&[
        "-q",
        "plugins",
        "new",
        "link-source",
        "site-links",
        "--dir",
        "crates",
        "--sdk",
        sdk,
    ]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let bad = run(&[
        "-q",
        "plugins",
        "new",
        "link-source",
        "Site_Links",
        "--sdk",
        sdk,
    ]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("is not a plugin name"),
        "{}",
        bad.stderr
    );

    cargo_in(&krate, &["test", "--offline", "--quiet"]);
    cargo_in(
        &krate,
        &[
            "build",
            "--offline",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
        ],
    );
    let wasm = test_plugin("site-links");
    let inspected = inspect(dir.path(), wasm.to_str().unwrap());
    assert_eq!(inspected.code, 0, "{}", inspected.stderr);
    assert!(
        inspected.stdout.contains("name:        site-links\n"),
        "{}",
        inspected.stdout
    );
    assert!(
        inspected.stdout.contains("services:    bos\n"),
        "{}",
        inspected.stdout
    );
    assert!(
        inspected
            .stdout
            .contains("contract:    imsflow:plugin@0.3.0\n"),
        "{}",
        inspected.stdout
    );
}

/// `examples/bos-v1-links`, built by build.rs with the wasm workspace (its
/// own FakeHost test runs with the SDK's, in `scripts/test`); returns the
/// component's path.
fn example_plugin() -> std::path::PathBuf {
    let lib =
        std::fs::read_to_string(repo_root().join("examples/bos-v1-links/src/lib.rs")).unwrap();
    assert!(
        lib.lines().count() <= 45,
        "the example's lib.rs (rustfmt-formatted, as CI checks) has {} lines",
        lib.lines().count()
    );
    test_plugin("bos-v1-links")
}

/// The stock export workflow with the example plugin as one more link source,
/// pinned, granted `grants`, reading BOS v1 templates (csm-sim serves the
/// untenanted ones at `v1/sessiontemplate`).
fn export_with_site_source(pin: &str, grants: &str) -> String {
    let stock = std::fs::read_to_string(repo_root().join("workflows/export.toml")).unwrap();
    let site = format!(
        "[[steps]]\nid = \"site\"\nplugin = {:?}\nsha256 = \"{pin}\"\nwhen = \"not params.exclude_linked_artifacts\"\n\
         grants = {grants}\n\n[[steps]]\nid = \"plan\"",
        example_plugin().to_str().unwrap()
    );
    let wf = stock
        .replacen("[[steps]]\nid = \"plan\"", &site, 1)
        .replacen("needs = [\"ims\", \"bos\", \"bss\", \"catalog\"]", "needs = [\"ims\", \"bos\", \"bss\", \"catalog\", \"site\"]", 1)
        .replacen(
            "product_catalog = \"{{ steps.catalog.output }}\"",
            "product_catalog = \"{{ steps.catalog.output }}\"\nsources = { bos-v1-links = \"{{ steps.site.output }}\" }",
            1,
        );
    assert!(
        wf.contains("id = \"site\"") && wf.contains("\"site\"]") && wf.contains("sources = "),
        "export.toml changed shape"
    );
    wf
}

/// A site link source, pinned by sha256, contributes its links to a real
/// export against csm-sim: with BOS's stock source off, the BOS artifacts
/// are in the archive because the site source found them, and `export.json`
/// records its links under `link_sources.<name>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_site_link_source_contributes_to_the_export() {
    let wasm = example_plugin();
    let pin = imsflow::plugin::sha256_hex(&std::fs::read(&wasm).unwrap());
    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("export-site.toml");
    std::fs::write(
        &wf,
        export_with_site_source(&pin, "{ services = [\"bos\"] }"),
    )
    .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let config = sys.data.path().join("imsflow.toml");
    let target = format!("target_dir={}", out.display());
    let run = imsflow_cli(
        Some(&config),
        &[
            "run",
            wf.to_str().unwrap(),
            "-p",
            &target,
            "-p",
            "exclude_links_from_bos=true",
            "-p",
            "no_tar=true",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let archive = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let members = archive_members(&archive);
    let (_, index) = members.iter().find(|(p, _)| p == "export.json").unwrap();
    let doc: serde_json::Value = serde_json::from_slice(index).unwrap();
    assert!(
        doc["bos"].is_null(),
        "the stock BOS source was off: {}",
        doc["bos"]
    );
    let site: std::collections::BTreeSet<String> = doc["link_sources"]["bos-v1-links"]
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "no link_sources.bos-v1-links in export.json: {}",
                doc["link_sources"]
            )
        })
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        site, sys.expected.links["bos-v1"],
        "the site source finds what BOS v1's boot sets link"
    );
    assert!(!site.is_empty());
    for url in &site {
        let relpath = doc["s3_data"]["artifacts"][url]["relpath"]
            .as_str()
            .unwrap_or_else(|| panic!("{url} is not in s3_data.artifacts"));
        let (_, bytes) = members
            .iter()
            .find(|(p, _)| p == relpath)
            .unwrap_or_else(|| panic!("{relpath} ({url}) is not in the archive"));
        assert_eq!(bytes.len() as u64, sys.expected.objects[url].size, "{url}");
    }

    // A wrong pin is refused before anything runs; so is a plugin whose
    // declared service is not granted.
    std::fs::write(
        &wf,
        export_with_site_source(&"0".repeat(64), "{ services = [\"bos\"] }"),
    )
    .unwrap();
    let run = imsflow_cli(
        Some(&config),
        &["run", wf.to_str().unwrap(), "-p", &target],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("does not match its pin"),
        "{}",
        run.stderr
    );
    std::fs::write(&wf, export_with_site_source(&pin, "{ services = [] }")).unwrap();
    let run = imsflow_cli(
        Some(&config),
        &["run", wf.to_str().unwrap(), "-p", &target],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("reads service `bos`, which the step does not grant"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "a refused run wrote nothing"
    );
}

/// The extension point: a site link source in the config file's
/// `[[export.link_sources]]` joins the stock `imsflow export`;
/// `--exclude-links-from NAME` switches it off; its pin and grants are
/// enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_link_source_in_the_config_joins_the_stock_export() {
    let wasm = example_plugin();
    let pin = imsflow::plugin::sha256_hex(&std::fs::read(&wasm).unwrap());
    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(sys.data.path().join("imsflow.toml")).unwrap();
    let config = dir.path().join("imsflow.toml");
    let write_config = |pin: &str, services: &str| {
        let source = format!(
            "\n[[export.link_sources]]\nname = \"bos-v1-links\"\nplugin = {:?}\nsha256 = \"{pin}\"\n\
             grants = {{ services = {services} }}\n",
            wasm.to_str().unwrap()
        );
        std::fs::write(&config, format!("{base}{source}")).unwrap();
    };
    let export = |flags: &[&str]| {
        let out = tempfile::tempdir().unwrap();
        let mut args = vec![
            "export",
            out.path().to_str().unwrap(),
            "--no-tar",
            "--exclude-links-from-bos",
        ];
        args.extend(flags);
        let run = imsflow_cli(Some(&config), &args, &[]);
        (out, run)
    };
    let index = |out: &std::path::Path| {
        let archive = std::fs::read_dir(out)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let members = archive_members(&archive);
        let (_, index) = members.iter().find(|(p, _)| p == "export.json").unwrap();
        let doc: serde_json::Value = serde_json::from_slice(index).unwrap();
        (doc, members)
    };

    write_config(&pin, "[\"bos\"]");
    let (out, run) = export(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let (doc, members) = index(out.path());
    assert!(doc["bos"].is_null());
    let site: std::collections::BTreeSet<String> = doc["link_sources"]["bos-v1-links"]
        .as_array()
        .unwrap_or_else(|| panic!("no link_sources.bos-v1-links: {doc}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(site, sys.expected.links["bos-v1"]);
    for url in &site {
        let relpath = doc["s3_data"]["artifacts"][url]["relpath"]
            .as_str()
            .unwrap();
        assert!(
            members.iter().any(|(p, _)| p == relpath),
            "{relpath} ({url}) is not in the archive"
        );
    }

    // Switched off as the stock sources are: its key is null.
    let (out, run) = export(&["--exclude-links-from", "bos-v1-links"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let (doc, _) = index(out.path());
    assert!(
        doc["link_sources"]["bos-v1-links"].is_null(),
        "{}",
        doc["link_sources"]
    );

    let (_, run) = export(&["--exclude-links-from", "nope"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("no site link source has that name (the config file has: bos-v1-links)"),
        "{}",
        run.stderr
    );

    // A wrong pin, and a plugin whose service the config does not grant, are
    // refused before anything is written.
    write_config(&"0".repeat(64), "[\"bos\"]");
    let (out, run) = export(&[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("does not match its pin"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    write_config(&pin, "[]");
    let (out, run) = export(&[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("reads service `bos`, which the step does not grant"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    // A "link source" that declares an effect (the uploader test plugin):
    // the config cannot grant effects, so it is refused.
    let uploader = test_plugin("uploader");
    let source = format!(
        "\n[[export.link_sources]]\nname = \"sneaky\"\nplugin = {:?}\nsha256 = \"{}\"\n",
        uploader.to_str().unwrap(),
        imsflow::plugin::sha256_hex(&std::fs::read(&uploader).unwrap())
    );
    std::fs::write(&config, format!("{base}{source}")).unwrap();
    let (out, run) = export(&[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("may emit `s3-upload-from-archive` effects, which the step does not grant"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    std::fs::write(
        &config,
        format!("{base}{source}effects = [\"s3-upload-from-archive\"]\n"),
    )
    .unwrap();
    let (_, run) = export(&[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("unknown field `effects`"),
        "a link source cannot be granted effects: {}",
        run.stderr
    );
}

/// Site-defined services: the config maps a name imsflow does not know to a
/// gateway path, a site plugin is granted it, and the usual checks apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow tier (IMSFLOW_SLOW_TESTS=1): builds a fresh crate natively and for wasm"]
async fn a_site_service_from_the_config_can_be_granted() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = repo_root().join("plugins/sdk");
    let made = imsflow_command()
        .args([
            "-q",
            "plugins",
            "new",
            "link-source",
            "templates-links",
            "--sdk",
            sdk.to_str().unwrap(),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let krate = dir.path().join("templates-links");
    let lib = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    let lib = lib
        .replace("\"bos\"", "\"bos-templates\"")
        .replace("\"v1/sessiontemplate\"", "\"sessiontemplates\"");
    std::fs::write(krate.join("src/lib.rs"), lib).unwrap();
    cargo_in(&krate, &["test", "--offline", "--quiet"]);
    cargo_in(
        &krate,
        &[
            "build",
            "--offline",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
        ],
    );
    let wasm = test_plugin("templates-links");
    let pin = imsflow::plugin::sha256_hex(&std::fs::read(&wasm).unwrap());

    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    let base = std::fs::read_to_string(sys.data.path().join("imsflow.toml")).unwrap();
    let config = dir.path().join("imsflow.toml");
    let source = format!(
        "\n[[export.link_sources]]\nname = \"templates-links\"\nplugin = {:?}\nsha256 = \"{pin}\"\ngrants = {{ services = [\"bos-templates\"] }}\n",
        wasm.to_str().unwrap()
    );
    let export = |services: &str| {
        std::fs::write(&config, format!("{base}\n{services}\n{source}")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let run = imsflow_cli(
            Some(&config),
            &[
                "export",
                out.path().to_str().unwrap(),
                "--no-tar",
                "--exclude-links-from-bos",
            ],
            &[],
        );
        (out, run)
    };

    let (out, run) = export("[services]\nbos-templates = \"/apis/bos/v2\"");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let archive = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let members = archive_members(&archive);
    let (_, index) = members.iter().find(|(p, _)| p == "export.json").unwrap();
    let doc: serde_json::Value = serde_json::from_slice(index).unwrap();
    let links: std::collections::BTreeSet<String> = doc["link_sources"]["templates-links"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(links, sys.expected.links["bos"]);

    // Without the mapping the grant names an unknown service; a mapping
    // must stay under /apis/ without dot segments, and cannot shadow a stock name.
    let (_, run) = export("");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("unknown service `bos-templates` in grants"),
        "{}",
        run.stderr
    );
    for (bad, says) in [
        (
            "bos-templates = \"/apis/bos/../../keycloak\"",
            "service `bos-templates`: the path",
        ),
        (
            "bos-templates = \"/keycloak/realms\"",
            "must be under /apis/",
        ),
        ("bos = \"/apis/bos/v1\"", "is a stock service"),
    ] {
        let (out, run) = export(&format!("[services]\n{bad}"));
        assert_eq!(run.code, 1, "{bad}");
        assert!(run.stderr.contains(says), "{bad}: {}", run.stderr);
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }
}

#[test]
fn a_workflow_file_may_grant_a_site_service_named_in_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imsflow.toml");
    std::fs::write(&config, "[services]\nbos-templates = \"/apis/bos/v2\"\n").unwrap();
    let wf = dir.path().join("wf.toml");
    std::fs::write(
        &wf,
        "version = 1\nname = \"site-service\"\ndescription = \"a step granted a site service\"\n\n\
         [[steps]]\nid = \"note\"\nplugin = \"write-json\"\nwith = { path = \"n.json\", document = {} }\n\
         grants = { services = [\"bos-templates\"], effects = [\"archive-add-json\"] }\n",
    )
    .unwrap();
    // A config file without `[services]` (a named file must exist).
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "").unwrap();
    let without = imsflow_cli(Some(&plain), &["validate", wf.to_str().unwrap()], &[]);
    assert_eq!(without.code, 1, "{}", without.stdout);
    assert!(
        without.stdout.contains("unknown service `bos-templates`")
            || without.stderr.contains("unknown service `bos-templates`"),
        "{}{}",
        without.stdout,
        without.stderr
    );
    let with = imsflow_cli(Some(&config), &["validate", wf.to_str().unwrap()], &[]);
    assert_eq!(with.code, 0, "{}\n{}", with.stdout, with.stderr);
}

/// What this imsflow runs: `0.2.0` of `imsflow:plugin@0.2.0`.
fn contract_version() -> &'static str {
    imsflow::plan::CONTRACT.rsplit_once('@').unwrap().1
}

/// A component built for contract 0.1.0 (its own copy of that WIT) is
/// refused by name and version, before wasmtime links it, wherever a site
/// plugin is loaded: `plugins inspect`, a workflow step, an export link source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_for_another_contract_is_refused_naming_both_versions() {
    let wasm = test_plugin("old-contract");
    let says = format!(
        "built for imsflow:plugin@0.1.0; this imsflow runs {}: rebuild it with the SDK of this version",
        contract_version()
    );
    let inspected = inspect(wasm.parent().unwrap(), "old_contract.wasm");
    assert_eq!(inspected.code, 1, "{}", inspected.stdout);
    assert!(inspected.stderr.contains(&says), "{}", inspected.stderr);

    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("old.toml");
    std::fs::write(
        &wf,
        format!(
            "version = 1\nname = \"old\"\ndescription = \"a 0.1.0 plugin\"\n\n[[steps]]\nid = \"old\"\nplugin = {:?}\n",
            wasm.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = imsflow_cli(None, &["run", wf.to_str().unwrap(), "--dry-run"], &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("step `old`") && run.stderr.contains(&says),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("type mismatch"), "{}", run.stderr);

    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    let base = std::fs::read_to_string(sys.data.path().join("imsflow.toml")).unwrap();
    let config = dir.path().join("imsflow.toml");
    let pin = imsflow::plugin::sha256_hex(&std::fs::read(&wasm).unwrap());
    std::fs::write(
        &config,
        format!(
            "{base}\n[[export.link_sources]]\nname = \"old-links\"\nplugin = {:?}\nsha256 = \"{pin}\"\n",
            wasm.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let export = imsflow_cli(
        Some(&config),
        &["export", out.path().to_str().unwrap(), "--dry-run"],
        &[],
    );
    assert_eq!(export.code, 1, "{}\n{}", export.stdout, export.stderr);
    assert!(export.stderr.contains(&says), "{}", export.stderr);
}

/// `plugins new --sdk` with a quote and a newline in the path writes a
/// Cargo.toml that cargo reads back with that very path.
#[test]
fn a_scaffold_with_an_odd_sdk_path_is_a_manifest_cargo_reads() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = dir.path().join("my \"sdk\"\nsecond line\\");
    std::fs::create_dir_all(sdk.join("wit")).unwrap();
    std::fs::create_dir_all(sdk.join("src")).unwrap();
    std::fs::write(
        sdk.join("Cargo.toml"),
        "[package]\nname = \"imsflow-pdk\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    std::fs::write(sdk.join("src/lib.rs"), "").unwrap();
    std::fs::copy(
        repo_root().join("plugins/sdk/wit/plugin.wit"),
        sdk.join("wit/plugin.wit"),
    )
    .unwrap();
    let made = imsflow_command()
        .args(["-q", "plugins", "new", "link-source", "odd", "--sdk"])
        .arg(&sdk)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let manifest = dir.path().join("odd/Cargo.toml");
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo cannot read the scaffold's Cargo.toml:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&manifest).unwrap()
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dep = meta["packages"][0]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "imsflow-pdk")
        .unwrap()
        .clone();
    assert_eq!(dep["path"], sdk.canonicalize().unwrap().to_str().unwrap());
}
