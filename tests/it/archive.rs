//! Archives as the export writes and a run reads them, against hostile sizes,
//! files, signals and names: bounded object sizes, owner-only archives
//! (rootfs images hold host keys and password hashes), signals and stale
//! partials, and one normal form for member paths.
use crate::support::*;
use imsflow::archive::{ArchiveReader, ArchiveWriter, Format};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn imsflow() -> Command {
    let mut cmd = imsflow_command();
    cmd.env_remove("NO_COLOR").env_remove("IMSFLOW_LOG");
    cmd
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
pub(crate) fn docs_workflow(format: &str, name: &str, paths: &[&str]) -> String {
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
pub(crate) fn run_cli(wf: &Path, out: &Path, umask: &str, extra: &[&str]) -> Output {
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
pub(crate) fn raw_tar(path: &Path, members: &[(&str, &[u8])]) {
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
