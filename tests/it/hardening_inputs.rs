//! Hostile local inputs and plugins, which must get a clear refusal and
//! never exhaust the host or hang a run: oversized or endless files,
//! graph-bomb workflows, template globals, a forged compile cache, a chatty
//! plugin, and aborts that must not be retried.
use crate::support::*;
use std::process::Command;

fn imsflow(args: &[&str]) -> CliRun {
    imsflow_cli(None, args, &[])
}

/// `imsflow export ARGS` against a simulated CSM.
fn export(sys: &csm_sim::testing::System, args: &[&str]) -> CliRun {
    let mut all = vec!["export"];
    all.extend(args);
    imsflow_cli(Some(&sys.data.path().join("imsflow.toml")), &all, &[])
}

/// `export.json` of an `imsflow export --no-tar` of the system, which must succeed.
fn export_index(sys: &csm_sim::testing::System) -> serde_json::Value {
    let out_dir = tempfile::tempdir().unwrap();
    let out = export(sys, &["--no-tar", out_dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dir = std::fs::read_dir(out_dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    serde_json::from_slice(&std::fs::read(dir.join("export.json")).unwrap()).unwrap()
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

#[test]
fn endless_or_special_files_are_refused_not_read() {
    let s = Scratch::new();
    // A workflow that is /dev/zero, a FIFO given as a workflow, and a plugin file that is a FIFO.
    let out = imsflow(&["validate", "/dev/zero"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .clone()
            .contains("workflow file /dev/zero: is not a regular file"),
        "{}",
        out.stderr.clone()
    );
    let fifo = s.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = imsflow(&["validate", fifo.to_str().unwrap()]);
    assert_eq!(out.code, 1, "a FIFO is not waited on");
    assert!(
        out.stderr.clone().contains("is not a regular file"),
        "{}",
        out.stderr.clone()
    );
    let out = imsflow(&["verify", fifo.to_str().unwrap()]);
    assert_eq!(out.code, 1, "verify does not wait on a FIFO");
    assert!(
        out.stderr.contains("neither a tar file nor a directory"),
        "{}",
        out.stderr
    );
    let out = imsflow(&[
        "export",
        "--gateway",
        "http://127.0.0.1:9",
        "--token-file",
        "/dev/zero",
        "--s3-endpoint",
        "http://127.0.0.1:9",
        "--s3-access-key",
        "k",
        "--s3-secret-key",
        "s",
        s.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("token file /dev/zero: is not a regular file"),
        "{}",
        out.stderr
    );
    let err = imsflow::plugin::load(&imsflow::plugin::PluginRef::File {
        path: fifo.clone(),
        sha256: None,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("plugin file") && err.contains("is not a regular file"),
        "{err}"
    );
    let big = s.path().join("big.wasm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(6 << 30)
        .unwrap();
    let err = imsflow::plugin::load(&imsflow::plugin::PluginRef::File {
        path: big,
        sha256: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("is 6442450944 bytes, over the limit"), "{err}");
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
    let out = imsflow(&["run", s.path().join("wf.toml").to_str().unwrap()]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_jobs_abort_the_export_once_without_retries() {
    let sys = csm_sim::testing::System::start(&csm_sim::testing::small_spec()).await;
    assert!(!sys.expected.jobs.is_empty());
    let out_dir = tempfile::tempdir().unwrap();
    let out = export(&sys, &[out_dir.path().to_str().unwrap()]);
    let stderr = out.stderr.clone();
    assert_eq!(out.code, 1, "{stderr}");
    assert!(
        stderr.contains("plugin `ims-fetch` aborted: Aborted due to incomplete jobs"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("retrying"),
        "an abort is not retried:\n{stderr}"
    );
}

fn iso_utc(v: &serde_json::Value) -> bool {
    let Some(t) = v.as_str() else { return false };
    let (main, rest) = t.split_at(t.len().min(19));
    chrono::NaiveDateTime::parse_from_str(main, "%Y-%m-%dT%H:%M:%S").is_ok()
        && (rest == "+00:00"
            || rest
                .strip_prefix('.')
                .and_then(|r| r.strip_suffix("+00:00"))
                .is_some_and(|f| f.len() == 6))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_bucket_listings_keep_hpes_fields() {
    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    let doc = export_index(&sys);
    let artifacts = doc["s3_data"]["artifacts"].as_object().unwrap();
    assert!(!artifacts.is_empty());
    for (url, entry) in artifacts {
        let d = &entry["describe"]["artifact"];
        assert_eq!(d["AcceptRanges"], "bytes", "{url}: {d}");
        assert!(iso_utc(&d["LastModified"]), "{url}: {d}");
    }
    for (bucket, listing) in doc["s3_data"]["buckets"].as_object().unwrap() {
        for item in listing["artifacts"].as_array().unwrap() {
            assert!(iso_utc(&item["LastModified"]), "{bucket}: {item}");
            assert_eq!(item["StorageClass"], "STANDARD", "{bucket}: {item}");
            assert!(item["Owner"]["ID"].is_string(), "{bucket}: {item}");
            assert!(item["Owner"]["DisplayName"].is_string(), "{bucket}: {item}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_image_whose_manifest_is_gone_is_skipped_with_a_warning_naming_it_deleted() {
    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    let deleted = sys.expected.deleted["images"]
        .iter()
        .next()
        .unwrap()
        .clone();
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    let manifests: Vec<String> = s3
        .list("boot-images", "")
        .await
        .unwrap()
        .into_iter()
        .map(|(key, _, _)| key)
        .filter(|k| k.contains(&deleted) && k.ends_with("manifest.json"))
        .collect();
    assert!(
        !manifests.is_empty(),
        "the deleted image has a manifest to lose"
    );
    for key in &manifests {
        s3.delete("boot-images", key).await.unwrap();
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = export(
        &sys,
        &["--include-deleted", out_dir.path().to_str().unwrap()],
    );
    let stderr = out.stderr.clone();
    assert_eq!(out.code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Skipping deleted IMS image {deleted}: its manifest s3://boot-images/"
        )),
        "{stderr}"
    );
    assert!(out.stdout.contains("DONE!"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_part_size_is_the_one_that_reproduces_the_etag() {
    let sys = csm_sim::testing::System::start(&no_running_jobs()).await;
    // 9,438,183 bytes in 5 MiB parts: ETag `-2`, and 8 MiB (the first common
    // size) also gives two parts, but a different ETag.
    let image = sys.expected.ims["images"].iter().next().unwrap().clone();
    let key = format!("{image}/rootfs");
    let body: Vec<u8> = (0..9_438_183u32).map(|i| (i % 253) as u8).collect();
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    s3.put_multipart("boot-images", &key, &body, 5 << 20, &Default::default())
        .await
        .unwrap();
    let etag = s3.head("boot-images", &key).await.unwrap().unwrap().etag;
    assert!(etag.ends_with("-2"), "{etag}");
    let doc = export_index(&sys);
    let entry = &doc["s3_data"]["artifacts"][format!("s3://boot-images/{key}")];
    assert_eq!(entry["etag"], etag.as_str());
    assert_eq!(entry["multipart_parts"], 2);
    assert_eq!(entry["part_size"], 5 << 20, "{entry}");
}
