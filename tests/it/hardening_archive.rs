//! Archives against hostile sizes, files, signals and readers: bounded
//! transfers, a verify that streams its index, owner-only archives (rootfs
//! images hold host keys and password hashes), signals and stale partials,
//! one normal form for member paths, verify's hostile-archive checks, ETag
//! checks of HPE archives (which carry no sha256), and no colour in piped
//! logs.
use crate::support::*;
use imsflow::archive::{ArchiveReader, ArchiveWriter, Format};
use md5::Digest;
use serde_json::{Value, json};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn imsflow() -> Command {
    let mut cmd = imsflow_command();
    cmd.env_remove("NO_COLOR").env_remove("IMSFLOW_LOG");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A workflow writing one JSON document per path, into `params.out`.
fn docs_workflow(format: &str, name: &str, paths: &[&str]) -> String {
    let mut wf = format!(
        "version = 1\nname = \"docs\"\ndescription = \"writes documents\"\n\n\
         [params.out]\ntype = \"string\"\ndescription = \"output directory\"\n\n\
         [archive]\noutput_dir = \"{{{{ params.out }}}}\"\nname = \"{name}\"\nformat = \"{format}\"\n"
    );
    for (i, path) in paths.iter().enumerate() {
        wf += &format!(
            "\n[[steps]]\nid = \"s{i}\"\nplugin = \"write-json\"\n\
             with = {{ path = \"{path}\", document = {{ n = {i} }} }}\n\
             grants = {{ effects = [\"archive-add-json\"] }}\n"
        );
    }
    wf
}

/// `imsflow run` of a workflow file, writing into `out`, under `umask`.
fn run_cli(wf: &Path, out: &Path, umask: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_imsflow"))
        .args(extra)
        .args(["run", wf.to_str().unwrap(), "-p"])
        .arg(format!("out={}", out.display()))
        .env("IMSFLOW_CACHE_DIR", target_dir().join("test-compile-cache"))
        .env_remove("NO_COLOR")
        .env_remove("IMSFLOW_LOG");
    cmd.output().unwrap()
}

/// Writes a tar whose member names are exactly these bytes (the tar crate
/// would normalise them), each a regular file.
fn raw_tar(path: &Path, members: &[(&str, &[u8])]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in members {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        builder.append(&h, *bytes).unwrap();
    }
    builder.finish().unwrap();
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

// ---- object sizes are capped, ranges are lazy (a plugin chooses the size) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_over_the_largest_s3_size_is_refused_before_anything_is_fetched() {
    // Nothing listens here: the refusal must come before any request.
    let s3 = std::sync::Arc::new(imsflow::s3::S3Store::new(&imsflow::s3::S3Settings {
        endpoint: "http://127.0.0.1:9".into(),
        access_key: "k".into(),
        secret_key: "s".into(),
        session_token: None,
        ca: None,
    }));
    let out = tempfile::tempdir().unwrap();
    let writer = ArchiveWriter::create(out.path(), "huge", Format::Tar).unwrap();
    let job = imsflow::transfer::ObjectJob {
        bucket: "boot-images".into(),
        key: "rootfs".into(),
        path: "s3_artifacts/boot-images/rootfs".into(),
        size: u64::MAX,
        etag: None,
    };
    let Err(err) = imsflow::transfer::stream_into(
        s3,
        vec![job],
        writer,
        imsflow::observe::silent(),
        &imsflow::transfer::TransferConfig::default(),
    )
    .await
    else {
        panic!("an object of u64::MAX bytes was accepted");
    };
    assert!(
        err.to_string()
            .contains("is over the largest object S3 holds (5497558138880 bytes, 5 TiB)"),
        "{err}"
    );
    assert!(entries(out.path()).is_empty(), "no archive, no .partial");
}

// ---- verify streams its index (a huge or deep export.json is hostile input) ----

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
        let out = imsflow().arg("verify").arg(&archive).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{at}: {}", text(&out.stderr));
    }
}

/// Counts, per thread, the bytes allocated and not yet freed, and their
/// peak, so that a test can bound the memory of a call made on its own
/// thread (RSS cannot: a child's peak RSS includes the test process's).
/// The thread-locals are const-initialised and have no destructor, as an
/// allocator requires.
struct CountingAlloc;

thread_local! {
    static LIVE: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    static PEAK: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result and the most heap it held at once.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, (PEAK.with(|p| p.get()) - start).max(0) as usize)
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

// ---- owner-only archives (rootfs images hold secrets) ----

#[test]
fn a_tar_archive_is_created_owner_only() {
    let s = Scratch::new();
    s.workflow(&docs_workflow(
        "tar",
        "docs-{{ run.suffix }}",
        &["a/b.json"],
    ));
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let run = run_cli(&s.path().join("wf.toml"), &out, "000", &[]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let names = entries(&out);
    assert_eq!(names.len(), 1, "{names:?}");
    let tar_path = out.join(&names[0]);
    assert_eq!(mode(&tar_path), 0o600, "even under umask 000");
    let mut tar = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
    for entry in tar.entries().unwrap() {
        assert_eq!(entry.unwrap().header().mode().unwrap(), 0o600);
    }
}

#[test]
fn a_no_tar_directory_is_created_owner_only() {
    let s = Scratch::new();
    s.workflow(&docs_workflow(
        "dir",
        "docs-{{ run.suffix }}",
        &["a/b/c.json"],
    ));
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // 000: nothing taken away; 0277: even the owner's bits taken away.
    for umask in ["000", "277"] {
        let run = run_cli(&s.path().join("wf.toml"), &out, umask, &[]);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    }
    let names = entries(&out);
    assert_eq!(names.len(), 2, "{names:?}");
    for name in names {
        let dir = out.join(name);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("a")), 0o700);
        assert_eq!(mode(&dir.join("a/b")), 0o700);
        assert_eq!(mode(&dir.join("a/b/c.json")), 0o600);
    }
}

// ---- signals and stale partials (kill, systemd and Kubernetes send SIGTERM) ----

#[test]
fn a_stale_partial_archive_of_an_earlier_run_is_reported() {
    let s = Scratch::new();
    s.workflow(&docs_workflow("tar", "docs-{{ run.suffix }}", &["a.json"]));
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("docs-old.tar.partial"), b"half").unwrap();
    std::fs::create_dir(out.join("docs-older.partial")).unwrap();
    let run = run_cli(&s.path().join("wf.toml"), &out, "022", &[]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let stderr = text(&run.stderr);
    for stale in ["docs-old.tar.partial", "docs-older.partial"] {
        assert!(
            stderr.contains(&format!(
                "found {}, a partial archive of an earlier run",
                out.join(stale).display()
            )),
            "{stderr}"
        );
    }
    // Reported, not removed: it may be another run's.
    assert!(out.join("docs-old.tar.partial").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sighup_remove_the_partial_archive_and_exit_130() {
    let sys = csm_sim::testing::System::start(&csm_sim::seed::SeedSpec {
        rootfs_size: 48 << 20,
        running_jobs: 0,
        ..csm_sim::testing::small_spec()
    })
    .await;
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let out = tempfile::tempdir().unwrap();
        let child = imsflow()
            .args(["export", out.path().to_str().unwrap()])
            .env("IMSFLOW_CONFIG", sys.data.path().join("imsflow.toml"))
            .env_remove("KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let partial = loop {
            let found = std::fs::read_dir(out.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".partial"));
            if let Some(p) = found {
                break p;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "{name}: no partial archive appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let output = child.wait_with_output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(130), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("interrupted by {name}"))
                && stderr.contains(&format!(
                    "removed the partial archive {}",
                    partial.display()
                ))
                && stderr.contains("To continue: imsflow resume "),
            "{stderr}"
        );
        assert!(
            entries(out.path()).is_empty(),
            "{name}: nothing left in the target directory"
        );
    }
}

// ---- one normal form for member paths (else duplicates slip past the check) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_spelled_three_ways_is_refused_as_written_twice() {
    let s = Scratch::new();
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let wf = s.workflow(&docs_workflow(
        "tar",
        "docs-{{ run.suffix }}",
        &["s/a.json", "s/./a.json", "s//a.json"],
    ));
    let err = run(&wf, &[("out", out.to_str().unwrap())], false)
        .await
        .unwrap_err()
        .to_string();
    for (twice, by) in [("s/./a.json", "s1"), ("s//a.json", "s2")] {
        assert!(
            err.contains(&format!(
                "archive member `{twice}` (as `s/a.json`) is written twice (by steps `s0` and `{by}`)"
            )),
            "{err}"
        );
    }
    assert!(entries(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_path_ending_in_a_slash_is_refused() {
    let s = Scratch::new();
    let out = s.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let wf = s.workflow(&docs_workflow("tar", "docs-{{ run.suffix }}", &["dir/"]));
    let err = run(&wf, &[("out", out.to_str().unwrap())], false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "archive member path `dir/` is not allowed: it ends with `/`, but members are files, not directories"
        ),
        "{err}"
    );
    assert!(entries(&out).is_empty());

    // The writer itself refuses it too (a saved plan does not pass through planning).
    let mut w = ArchiveWriter::create(&out, "direct", Format::Tar).unwrap();
    assert!(imsflow::archive::add_bytes(&mut w, "dir/", b"{}").is_err());
    imsflow::archive::add_bytes(&mut w, "s/a.json", b"{}").unwrap();
    let err = imsflow::archive::add_bytes(&mut w, "s//a.json", b"{}")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "archive member `s//a.json` is written twice (as `s/a.json`)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_name_must_be_a_single_file_name_not_a_symlinked_subdirectory() {
    let s = Scratch::new();
    let out = s.path().join("out");
    let elsewhere = s.path().join("elsewhere");
    std::fs::create_dir(&out).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("sub")).unwrap();
    let wf = s.workflow(&docs_workflow("tar", "sub/x", &["a.json"]));
    let err = run(&wf, &[("out", out.to_str().unwrap())], false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "archive.name: archive name `sub/x` is not allowed: it contains a path separator; it must be a single file name"
        ),
        "{err}"
    );
    assert!(
        entries(&elsewhere).is_empty(),
        "nothing through the symlink"
    );
    assert!(ArchiveWriter::create(&out, "sub/x", Format::Dir).is_err());
}

#[test]
fn a_tar_holding_one_member_under_two_spellings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (case, members) in [
        ("twice", vec![("s/a.json", &b"1"[..]), ("s//a.json", b"2")]),
        ("dot", vec![("s/a.json", &b"1"[..]), ("s/./a.json", b"2")]),
        ("slash", vec![("dir/", &b"1"[..])]),
    ] {
        let path = dir.path().join(format!("{case}.tar"));
        raw_tar(&path, &members);
        let err = ArchiveReader::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("is written twice (as `s/a.json`)") || err.contains("ends with `/`"),
            "{case}: {err}"
        );
    }
}

// ---- verify and hostile archives ----

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
    let out = imsflow().arg("verify").arg(&archive).output().unwrap();
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
        let out = imsflow().arg("verify").arg(&archive).output().unwrap();
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

// ---- ETags of HPE archives (their only content check: no sha256) ----

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

    let out = imsflow()
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

// ---- no colour in piped logs ----

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
