//! Misbehaving plugins are contained, with errors naming the plugin and the limit.
use crate::support::*;
use imsflow::engine::{RunError, StepStatus};
use std::time::{Duration, Instant};

fn one_step(plugin: &str, extra: &str) -> String {
    format!(
        r#"version = 1
name = "t"
description = "sandbox test"

[[steps]]
id = "bad"
plugin = "@PLUGINS@/{plugin}.wasm"
{extra}
"#
    )
}

/// What the snoop plugin's host calls answered, each as `ok`, `denied: …` or
/// `failed: …`, when it reads `service` and `bucket`; `tail` is TOML after
/// the step (its `[steps.grants]`, an `[archive]`).
async fn snoop(s: &Scratch, service: &str, bucket: &str, tail: &str) -> serde_json::Value {
    let with = format!("with = {{ service = \"{service}\", bucket = \"{bucket}\" }}");
    let wf = s.workflow(&format!("{}\n{tail}", one_step("snoop", &with)));
    let report = run(&wf, &[], false).await.unwrap();
    report.steps[0].output.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_stopped_at_its_time_limit_and_other_steps_finish() {
    let s = Scratch::new();
    let wf = s.workflow(&format!(
        "{}\n[[steps]]\nid = \"fine\"\nplugin = \"@PLUGINS@/sleep.wasm\"\nwith = {{ ms = 50 }}\n",
        one_step("spin", "timeout = \"1s\"")
    ));
    let runtime = runtime();
    let started = Instant::now();
    let result = run_with(runtime.clone(), Default::default(), &wf, &[], false).await;
    let took = started.elapsed();
    let Err(RunError::StepsFailed { failed, steps }) = result else {
        panic!("spin must fail")
    };
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].1.contains("plugin `spin`") && failed[0].1.contains("time limit of 1s"),
        "{}",
        failed[0].1
    );
    assert!(
        took < Duration::from_secs(10),
        "stopped after {took:?}, not near the 1 s limit"
    );
    let fine = steps.iter().find(|s| s.id == "fine").unwrap();
    assert_eq!(
        fine.status,
        StepStatus::Done,
        "the independent step still ran"
    );

    // The same runtime is still usable afterwards.
    let ok = s.workflow("version = 1\nname = \"t\"\ndescription = \"\"\n[[steps]]\nid = \"a\"\nplugin = \"@PLUGINS@/sleep.wasm\"\nwith = { ms = 1 }\n");
    run_with(runtime, Default::default(), &ok, &[], false)
        .await
        .expect("runtime carries on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_is_stopped_at_the_memory_limit() {
    let s = Scratch::new();
    let wf = s.workflow(&one_step("hog", "[steps.limits]\nmemory_mib = 64"));
    let err = failure_of(run(&wf, &[], false).await);
    assert!(
        err.contains("plugin `hog`") && err.contains("memory limit of 64.0 MiB"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_fails_the_step_with_the_plugin_stderr() {
    let s = Scratch::new();
    let wf = s.workflow(&one_step("trap", ""));
    let err = failure_of(run(&wf, &[], false).await);
    assert!(err.contains("plugin `trap` crashed (wasm trap)"), "{err}");
    assert!(
        err.contains("deliberate panic from the trap test plugin"),
        "stderr is reported: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_output_is_rejected() {
    let s = Scratch::new();
    let wf = s.workflow(&one_step("garbage", ""));
    let err = failure_of(run(&wf, &[], false).await);
    assert!(
        err.contains("plugin `garbage` returned malformed output: output is not JSON"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_over_the_cap_is_rejected() {
    let s = Scratch::new();
    let wf = s.workflow(&one_step(
        "flood",
        "with = { mib = 2 }\n[steps.limits]\nmax_output_mib = 1",
    ));
    let err = failure_of(run(&wf, &[], false).await);
    assert!(
        err.contains("plugin `flood` returned 2.0 MiB of output, over its limit of 1.0 MiB"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_service_bucket_and_archive_are_denied() {
    let s = Scratch::new();
    let out = snoop(&s, "ims", "boot-images", "").await;
    for call in ["service", "s3_head", "s3_list", "s3_get", "archive"] {
        let verdict = out[call].as_str().unwrap();
        assert!(
            verdict.starts_with("denied: step `bad` has no grant for"),
            "{call}: {verdict}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_reads_pass_the_grant_check() {
    let s = Scratch::new();
    let archive = s.path().join("in");
    std::fs::create_dir(&archive).unwrap();
    std::fs::write(archive.join("export.json"), "{}").unwrap();
    let grants = format!(
        "[steps.grants]\nservices = [\"ims\"]\nbuckets = [\"boot-images\"]\narchive = true\n[archive]\ninput = \"{}\"\n",
        archive.display()
    );
    let out = snoop(&s, "ims", "boot-images", &grants).await;
    // No gateway or S3 is configured in this test: the call gets past the
    // grant check and fails on the missing backend instead.
    assert_eq!(
        out["service"],
        "failed: no CSM gateway is configured for this run; set --gateway"
    );
    assert_eq!(
        out["s3_head"],
        "failed: no S3 endpoint is configured for this run; set --s3-endpoint with its keys, or --gateway for STS"
    );
    assert_eq!(out["archive"], "ok");

    // The product catalog without a kubeconfig says both ways out.
    let grants = "[steps.grants]\nservices = [\"product-catalog\"]\n";
    let out = snoop(&s, "product-catalog", "ims", grants).await;
    let said = out["service"].as_str().unwrap();
    assert!(
        said.starts_with("failed: no kubeconfig is configured for this run")
            && said.contains("--kubeconfig")
            && said.contains("--exclude-links-from-product-catalog"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_grant_covers_only_that_bucket() {
    let s = Scratch::new();
    let out = snoop(
        &s,
        "bos",
        "boot-images",
        "[steps.grants]\nbuckets = [\"ims\"]\n",
    )
    .await;
    assert!(
        out["s3_list"]
            .as_str()
            .unwrap()
            .contains("no grant for bucket `boot-images`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_plugin_that_does_not_match_refuses_to_run() {
    let s = Scratch::new();
    let good = imsflow::plugin::sha256_hex(&std::fs::read(test_plugin("sleep")).unwrap());
    let wrong = "0".repeat(64);
    let text = |pin: &str| {
        format!(
            "version = 1\nname = \"t\"\ndescription = \"\"\n[[steps]]\nid = \"a\"\nplugin = \"@PLUGINS@/sleep.wasm\"\nsha256 = \"{pin}\"\nwith = {{ ms = 1 }}\n"
        )
    };
    let wf = s.workflow(&text(&wrong));
    let err = run(&wf, &[], false).await.unwrap_err().to_string();
    assert!(
        err.contains("does not match its pin")
            && err.contains(&good)
            && err.contains("refusing to run it"),
        "{err}"
    );
    let wf = s.workflow(&text(&good));
    run(&wf, &[], false).await.expect("the right pin runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_component_is_refused_clearly() {
    let s = Scratch::new();
    std::fs::write(s.path().join("junk.wasm"), b"\0asm junk").unwrap();
    std::fs::write(s.path().join("wf.toml"), "version = 1\nname = \"t\"\ndescription = \"\"\n[[steps]]\nid = \"a\"\nplugin = \"junk.wasm\"\n").unwrap();
    let wf = imsflow::workflow::load(s.path().join("wf.toml").to_str().unwrap()).unwrap();
    let err = run(&wf, &[], false).await.unwrap_err().to_string();
    assert!(
        err.contains("`junk` is not a valid imsflow plugin component"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_cache_entry_copied_over_another_plugins_is_not_trusted() {
    let cache = tempfile::tempdir().unwrap();
    let root = cache.path().join("c");
    let writer =
        imsflow::plugin::load(&imsflow::plugin::PluginRef::Stock("write-json".into())).unwrap();
    let sleep = imsflow::plugin::load(&imsflow::plugin::PluginRef::File {
        path: test_plugin("sleep"),
        sha256: None,
    })
    .unwrap();
    let rt = imsflow::sandbox::Runtime::new(Some(root.clone())).unwrap();
    rt.load(&writer).await.unwrap();
    rt.load(&sleep).await.unwrap();
    let entries: Vec<_> = walk(&root);
    let cwasm = |sha: &str| {
        entries
            .iter()
            .find(|p| p.ends_with(format!("{sha}.cwasm")))
            .unwrap()
            .clone()
    };
    // Swap: the sleep entry now holds write-json's compiled code.
    std::fs::copy(cwasm(&writer.sha256), cwasm(&sleep.sha256)).unwrap();
    let fresh = imsflow::sandbox::Runtime::new(Some(root.clone())).unwrap();
    let loaded = fresh.load(&sleep).await.unwrap();
    assert_eq!(
        loaded.info.name, "sleep",
        "ran under its own identity, recompiled"
    );
    // A flipped byte in the compiled code is caught by the digest.
    let path = cwasm(&writer.sha256);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let fresh = imsflow::sandbox::Runtime::new(Some(root.clone())).unwrap();
    assert_eq!(fresh.load(&writer).await.unwrap().info.name, "write-json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&root).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the cache is private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let root = cache.path().join("shared");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let writer =
        imsflow::plugin::load(&imsflow::plugin::PluginRef::Stock("write-json".into())).unwrap();
    let rt = imsflow::sandbox::Runtime::new(Some(root.clone())).unwrap();
    assert_eq!(rt.load(&writer).await.unwrap().info.name, "write-json");
    assert!(
        walk(&root).is_empty(),
        "nothing was cached in a world-writable directory"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_chatty_plugin_cannot_forge_log_lines_or_flood_the_log() {
    let s = Scratch::new();
    s.workflow("version = 1\nname = \"chat\"\ndescription = \"\"\n[[steps]]\nid = \"talk\"\nplugin = \"@PLUGINS@/chatty.wasm\"\n");
    let out = imsflow_cli(
        None,
        &["run", s.path().join("wf.toml").to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr.clone());
    let stderr = out.stderr.clone();
    assert!(
        !stderr.lines().any(|l| l.starts_with("FORGED")),
        "no forged line:\n{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no terminal escape reaches the log"
    );
    let flood = stderr.lines().filter(|l| l.contains("flood ")).count();
    assert!(flood <= 200, "{flood} flood lines");
    assert!(
        stderr.contains("logged more than 200 messages in one call; the rest are dropped"),
        "{stderr}"
    );
}
