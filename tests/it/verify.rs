//! `imsflow verify`: an archive, ours or HPE's, checked member by member
//! against its index (sha256, or the S3 ETag HPE's archives carry), in
//! bounded memory, refusing hostile indexes and names.
use crate::archive::raw_tar;
use crate::export::{export_into, saved, spec};
use crate::support::*;
use csm_sim::testing::System;
use md5::Digest;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::Command;

fn verify_command() -> Command {
    let mut cmd = imsflow_command();
    cmd.env_remove("NO_COLOR").env_remove("IMSFLOW_LOG");
    cmd
}

/// Writes a directory archive: `export.json` and the given members.
fn dir_archive(dir: &Path, index: &Value, members: &[(&str, &[u8])]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("export.json"), serde_json::to_vec(index).unwrap()).unwrap();
    for (name, bytes) in members {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn hpe_index(artifacts: Value) -> Value {
    json!({ "created": "20231013161618.084854", "ims_data": { "images": {} },
            "s3_data": { "artifacts": artifacts } })
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

/// S3's multipart ETag of `data` uploaded in parts of `part` bytes.
fn multipart_etag(data: &[u8], part: usize) -> String {
    let mut digests = Vec::new();
    for chunk in data.chunks(part) {
        digests.extend_from_slice(&md5::Md5::digest(chunk));
    }
    format!("{}-{}", md5_hex(&digests), data.chunks(part).count())
}

#[test]
fn verify_refuses_a_deeply_nested_index_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("deep");
    std::fs::create_dir(&archive).unwrap();
    let depth = 100_000;
    for (at, doc) in [
        // Nesting that the skipped parts hide, and nesting inside an artifact entry.
        (
            "ims_data",
            format!(
                "{{\"created\":\"x\",\"ims_data\":{}{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        ),
        (
            "artifact",
            format!(
                "{{\"created\":\"x\",\"ims_data\":{{}},\"s3_data\":{{\"artifacts\":{{\"s3://b/k\":{{\"relpath\":\"s3_artifacts/b/k\",\"describe\":{}{}}}}}}}}}",
                "{\"a\":".repeat(depth),
                "}".repeat(depth)
            ),
        ),
    ] {
        std::fs::write(archive.join("export.json"), doc).unwrap();
        let report = imsflow::verify::verify(&archive).unwrap();
        assert_eq!(report.problems.len(), 1, "{at}: {:?}", report.problems);
        assert!(
            report.problems[0].starts_with("export.json: recursion limit exceeded"),
            "{at}: {:?}",
            report.problems
        );
        let out = verify_command()
            .arg("verify")
            .arg(&archive)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{at}: {}", text(&out.stderr));
    }
}

#[test]
fn verify_reads_a_60_mb_index_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("big");
    std::fs::create_dir_all(archive.join("s3_artifacts/b")).unwrap();
    let mut index =
        std::io::BufWriter::new(std::fs::File::create(archive.join("export.json")).unwrap());
    write!(
        index,
        "{{\"created\":\"20240101\",\"ims_data\":{{\"images\":{{"
    )
    .unwrap();
    // Many small records, as a big site's IMS has: the costliest shape for a parse tree.
    for i in 0..220_000 {
        let sep = if i == 0 { "" } else { "," };
        write!(
            index,
            "{sep}\"{i:036}\":{{\"id\":\"{i:036}\",\"name\":\"image-{i}\",\"created\":\"2024-01-01T00:00:00\",\"arch\":\"x86_64\",\"link\":{{\"path\":\"s3://boot-images/{i}/manifest.json\",\"etag\":\"0123456789abcdef\",\"type\":\"s3\"}},\"metadata\":{{\"a\":1,\"b\":[1,2,3]}}}}"
        )
        .unwrap();
    }
    write!(index, "}}}},\"s3_data\":{{\"artifacts\":{{").unwrap();
    let bytes = b"artifact bytes";
    for i in 0..20 {
        let sep = if i == 0 { "" } else { "," };
        std::fs::write(archive.join(format!("s3_artifacts/b/k{i}")), bytes).unwrap();
        write!(
            index,
            "{sep}\"s3://b/k{i}\":{{\"relpath\":\"s3_artifacts/b/k{i}\",\"size\":{},\"etag\":\"{}\"}}",
            bytes.len(),
            md5_hex(bytes)
        )
        .unwrap();
    }
    write!(index, "}}}}}}").unwrap();
    index.flush().unwrap();
    drop(index);
    let size = std::fs::metadata(archive.join("export.json"))
        .unwrap()
        .len();
    assert!(size > 60_000_000, "{size}");
    let (report, peak) = peak_heap(|| imsflow::verify::verify(&archive).unwrap());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.artifacts, report.etag_verified), (20, 20));
    // The index is never held, not as text nor as a tree (before: the
    // 60 MB text, then a tree of 600 MB).
    assert!(peak < 8 << 20, "verify held {peak} bytes at once");
}

#[test]
fn verify_refuses_a_relpath_outside_s3_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let index = hpe_index(json!({
        "s3://b/secret": { "relpath": "export.json" },
        "s3://b/other": { "relpath": "elsewhere/x" },
        "s3://b/up": { "relpath": "s3_artifacts/../elsewhere/x" },
        "s3://b/ok": { "relpath": "s3_artifacts/b/ok", "size": 2 },
    }));
    dir_archive(
        &archive,
        &index,
        &[("elsewhere/x", b"xx"), ("s3_artifacts/b/ok", b"ok")],
    );
    let report = imsflow::verify::verify(&archive).unwrap();
    let mut problems = report.problems.clone();
    problems.sort();
    assert_eq!(
        problems,
        vec![
            "s3://b/other: relpath elsewhere/x is outside s3_artifacts/, where artifacts belong",
            "s3://b/secret: relpath export.json is outside s3_artifacts/, where artifacts belong",
            "s3://b/up: archive member path `s3_artifacts/../elsewhere/x` is not allowed: it contains `..`",
        ]
    );
    assert_eq!(report.size_only, 1);
}

#[test]
fn verify_escapes_control_characters_in_every_name_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let forged = "s3://b/k\nx: 9 artifacts: 9 verified by sha256, 0 by ETag, 0 by size only (0 B read), 0 problem(s)\x1b[2K";
    let index = hpe_index(json!({
        forged: { "relpath": "s3_artifacts/b/k", "size": 1 },
        "s3://b/gone": { "relpath": "s3_artifacts/b/gone\n\u{1b}[31mok (sha256): s3://b/gone" },
        "s3://b/\u{202e}kcatta": { "relpath": "s3_artifacts/b/j" },
    }));
    dir_archive(
        &archive,
        &index,
        &[("s3_artifacts/b/k", b"k"), ("s3_artifacts/b/j", b"j")],
    );
    let out = verify_command()
        .arg("verify")
        .arg(&archive)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{202e}'),
        "{stdout:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "one line per artifact or problem, then the summary: {stdout}"
    );
    assert!(
        lines.contains(&"ok (size): s3://b/k\\nx: 9 artifacts: 9 verified by sha256, 0 by ETag, 0 by size only (0 B read), 0 problem(s)\\u{1b}[2K"),
        "{stdout}"
    );
    assert!(
        lines.contains(&"ok (present): s3://b/\\u{202e}kcatta"),
        "{stdout}"
    );
    assert!(
        lines.contains(&"problem: s3://b/gone: archive member path `s3_artifacts/b/gone\\n\\u{1b}[31mok (sha256): s3://b/gone` is not allowed: it contains a control character"),
        "{stdout}"
    );

    // A member name in a tar, or a file name in a directory: refused with the name escaped.
    let tar = dir.path().join("t.tar");
    raw_tar(&tar, &[("s3_artifacts/x\nproblem: none\x1b[0m", b"x")]);
    let in_dir = dir.path().join("d");
    dir_archive(
        &in_dir,
        &hpe_index(json!({})),
        &[("s3_artifacts/x\nproblem: none\x1b[0m", b"x")],
    );
    for archive in [tar, in_dir] {
        let out = verify_command()
            .arg("verify")
            .arg(&archive)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
        assert!(
            stderr.contains("`s3_artifacts/x\\nproblem: none\\u{1b}[0m` is not allowed: it contains a control character"),
            "{stderr}"
        );
    }
}

#[test]
fn verify_looks_members_up_by_index_in_a_tar_of_60000_members() {
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("many.tar");
    let count = 60_000;
    let mut artifacts = serde_json::Map::new();
    let mut builder = tar::Builder::new(std::io::BufWriter::new(
        std::fs::File::create(&tar_path).unwrap(),
    ));
    for i in 0..count {
        let name = format!("s3_artifacts/b/k{i}");
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o600);
        builder.append_data(&mut h, &name, &b""[..]).unwrap();
        artifacts.insert(
            format!("s3://b/k{i}"),
            json!({ "relpath": name, "size": 0 }),
        );
    }
    let index = serde_json::to_vec(&hpe_index(Value::Object(artifacts))).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(index.len() as u64);
    h.set_mode(0o600);
    builder
        .append_data(&mut h, "export.json", index.as_slice())
        .unwrap();
    builder.into_inner().unwrap().flush().unwrap();
    let started = std::time::Instant::now();
    let report = imsflow::verify::verify(&tar_path).unwrap();
    let took = started.elapsed();
    assert!(report.problems.is_empty(), "{:?}", &report.problems[..1]);
    assert_eq!((report.artifacts, report.size_only), (count, count));
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
}

#[test]
fn verify_requires_export_json_to_be_the_last_member_of_a_tar() {
    let dir = tempfile::tempdir().unwrap();
    let index = serde_json::to_vec(&hpe_index(json!({
        "s3://b/k": { "relpath": "s3_artifacts/b/k", "size": 1 },
    })))
    .unwrap();
    let last = dir.path().join("last.tar");
    raw_tar(
        &last,
        &[("s3_artifacts/b/k", b"k"), ("export.json", &index)],
    );
    assert!(imsflow::verify::verify(&last).unwrap().problems.is_empty());
    let first = dir.path().join("first.tar");
    raw_tar(
        &first,
        &[("export.json", &index), ("s3_artifacts/b/k", b"k")],
    );
    assert_eq!(
        imsflow::verify::verify(&first).unwrap().problems,
        vec![
            "export.json is not the last member of the tar, as exports write it: members were added after it"
        ]
    );
}

#[test]
fn verify_recomputes_the_etags_of_an_hpe_archive() {
    let dir = tempfile::tempdir().unwrap();
    let small = b"{\"version\":\"1.0\"}".to_vec();
    // 9,438,183 bytes in 5 MiB parts: a real rootfs whose `-2` ETag was once
    // recorded with an 8 MiB part size, the first candidate giving two parts.
    let rootfs: Vec<u8> = (0..9_438_183u32).map(|i| (i * 7 % 253) as u8).collect();
    let kernel: Vec<u8> = (0..7_000_000u32).map(|i| (i % 241) as u8).collect();
    let initrd = vec![3u8; 1000];
    let describe = |bytes: &[u8], etag: &str| json!({ "artifact": { "ContentLength": bytes.len(), "ETag": format!("\"{etag}\"") } });
    let entries = [
        ("manifest.json", small.clone(), md5_hex(&small), None),
        (
            "rootfs",
            rootfs.clone(),
            multipart_etag(&rootfs, 5 << 20),
            Some(8u64 << 20),
        ),
        (
            "kernel",
            kernel.clone(),
            multipart_etag(&kernel, 3 << 20),
            Some(3 << 20),
        ),
        // An ETag that is no MD5 (encrypted object, other store): size only.
        ("initrd", initrd.clone(), "not-an-md5".to_string(), None),
    ];
    let build = |name: &str, flip: Option<&str>| {
        let path = dir.path().join(name);
        let mut artifacts = serde_json::Map::new();
        let mut members = Vec::new();
        for (key, bytes, etag, part_size) in &entries {
            let relpath = format!("s3_artifacts/boot-images/img_{key}");
            let mut entry = json!({ "relpath": relpath, "describe": describe(bytes, etag) });
            if let Some(p) = part_size {
                entry["part_size"] = json!(p);
            }
            artifacts.insert(format!("s3://boot-images/img/{key}"), entry);
            let mut bytes = bytes.clone();
            if flip == Some(*key) {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 1;
            }
            members.push((relpath, bytes));
        }
        let index = serde_json::to_vec(&hpe_index(Value::Object(artifacts))).unwrap();
        members.push(("export.json".into(), index));
        let refs: Vec<(&str, &[u8])> = members
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        raw_tar(&path, &refs);
        path
    };

    let report = imsflow::verify::verify(&build("good.tar", None)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        (
            report.artifacts,
            report.sha256_verified,
            report.etag_verified,
            report.size_only
        ),
        (4, 0, 3, 1)
    );
    let checked: Vec<(String, Vec<&str>)> = report
        .checks
        .iter()
        .map(|c| (c.url.clone(), c.checked.clone()))
        .collect();
    assert!(checked.contains(&("s3://boot-images/img/rootfs".into(), vec!["size", "etag"])));
    assert!(checked.contains(&("s3://boot-images/img/initrd".into(), vec!["size"])));

    for (key, why) in [
        ("manifest.json", "its MD5 is "),
        ("rootfs", "do not reproduce its multipart ETag "),
        ("kernel", "do not reproduce its multipart ETag "),
    ] {
        let tar = build(&format!("{key}.tar"), Some(key));
        // An import's preflight (integrity only) still recomputes the ETags
        // of an archive that has no sha256 to check.
        let report = imsflow::verify::verify_with(&tar, imsflow::verify::Depth::Integrity).unwrap();
        assert_eq!(report.problems.len(), 1, "{key}: {:?}", report.problems);
        let report = imsflow::verify::verify(&tar).unwrap();
        assert_eq!(report.problems.len(), 1, "{key}: {:?}", report.problems);
        assert!(
            report.problems[0].starts_with(&format!(
                "s3://boot-images/img/{key}: member s3_artifacts/boot-images/img_{key}: "
            )) && report.problems[0].contains(why),
            "{key}: {:?}",
            report.problems
        );
        assert_eq!(report.etag_verified, 2, "{key}");
    }
    // The byte flipped in the size-only artifact goes unseen: that is what size-only means.
    let report = imsflow::verify::verify(&build("initrd.tar", Some("initrd"))).unwrap();
    assert!(report.problems.is_empty());

    let out = verify_command()
        .arg("verify")
        .arg(dir.path().join("good.tar"))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ok (size, etag): s3://boot-images/img/rootfs")
            && stdout.contains("ok (size): s3://boot-images/img/initrd")
            && stdout.contains(": 4 artifacts: 0 verified by sha256, 3 by ETag, 1 by size only (")
            && stdout.trim_end().ends_with(" read), 0 problem(s)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_flipped_byte_and_a_missing_member() {
    let sys = System::start(&spec(0)).await;
    let out = tempfile::tempdir().unwrap();
    let dir = saved(&export_into(&sys, out.path(), &["--no-tar"]));
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.join("export.json")).unwrap()).unwrap();
    let artifacts = doc["s3_data"]["artifacts"].as_object().unwrap();
    let mut relpaths = artifacts
        .values()
        .map(|a| a["relpath"].as_str().unwrap().to_string());
    let (flip, drop) = (relpaths.next().unwrap(), relpaths.next().unwrap());
    let mut bytes = std::fs::read(dir.join(&flip)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(dir.join(&flip), bytes).unwrap();
    std::fs::remove_file(dir.join(&drop)).unwrap();
    let run = crate::export::imsflow(&sys, &["verify", dir.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(&format!("member {flip} has sha256")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("member {drop} is missing")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2 problem(s)"), "{}", run.stdout);
}

/// An archive in HPE's exact format, built from the spec: no sha256, `describe`
/// from `cray artifacts describe`, members under s3_artifacts/, export.json last.
#[test]
fn verify_reads_an_hpe_archive() {
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir
        .path()
        .join("export-ims-data-20231013161618.084854-naswhadt.tar");
    let id = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    let rootfs = vec![7u8; 3000];
    let manifest = serde_json::json!({ "version": "1.0", "created": "2023-10-13 16:16:18",
        "artifacts": [{ "link": { "path": format!("s3://boot-images/{id}/rootfs"), "etag": "x", "type": "s3" }, "md5": "m", "type": "application/vnd.cray.image.rootfs.squashfs" }] });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let export = serde_json::json!({
        "bos": [], "bss": null, "created": "20231013161618.084854",
        "ims_data": { "deleted": null, "images": { id: { "id": id, "created": "2023-10-13T16:00:00", "name": "img",
            "link": { "path": format!("s3://boot-images/{id}/manifest.json"), "etag": "e", "type": "s3" } } },
            "jobs": {}, "public_keys": {}, "recipes": {} },
        "product_catalog": null,
        "s3_data": { "artifacts": {
            format!("s3://boot-images/{id}/manifest.json"): { "relpath": format!("s3_artifacts/boot-images/{id}_manifest.json"),
                "manifest_links": [format!("s3://boot-images/{id}/rootfs")],
                "describe": { "artifact": { "ContentLength": manifest_bytes.len(), "ETag": "\"e\"" } } },
            format!("s3://boot-images/{id}/rootfs"): { "relpath": format!("s3_artifacts/boot-images/{id}_rootfs"),
                "describe": { "artifact": { "ContentLength": rootfs.len(), "ETag": "\"x\"" } } },
        }, "buckets": { "boot-images": { "artifacts": [] } } },
    });
    let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    for (name, bytes) in [
        (
            format!("s3_artifacts/boot-images/{id}_manifest.json"),
            manifest_bytes.clone(),
        ),
        (
            format!("s3_artifacts/boot-images/{id}_rootfs"),
            rootfs.clone(),
        ),
        (
            "export.json".to_string(),
            serde_json::to_vec(&export).unwrap(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        builder.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    builder.finish().unwrap();
    let report = imsflow::verify::verify(&tar_path).unwrap();
    // Its ETags are no MD5s ("e", "x"): only sizes can be checked.
    assert_eq!(
        (
            report.artifacts,
            report.sha256_verified,
            report.etag_verified,
            report.size_only
        ),
        (2, 0, 0, 2)
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // The same archive with the rootfs shorter than `describe` says is caught.
    let short = dir.path().join("short");
    std::fs::create_dir_all(short.join("s3_artifacts/boot-images")).unwrap();
    std::fs::write(
        short.join("export.json"),
        serde_json::to_vec(&export).unwrap(),
    )
    .unwrap();
    std::fs::write(
        short.join(format!("s3_artifacts/boot-images/{id}_manifest.json")),
        &manifest_bytes,
    )
    .unwrap();
    std::fs::write(
        short.join(format!("s3_artifacts/boot-images/{id}_rootfs")),
        &rootfs[..10],
    )
    .unwrap();
    let report = imsflow::verify::verify(&short).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("has 10 bytes, export.json says 3000"));
}
