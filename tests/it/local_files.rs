//! Local files as hostile input: a FIFO or a device given as the plan, and
//! a state directory or run folder that someone else controls.
use crate::support::*;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs imsflow, failing the test if it has not ended within 30 s.
fn prompt(args: &[&str], state: Option<&Path>) -> CliRun {
    let mut cmd = imsflow_command();
    cmd.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(state) = state {
        cmd.env("IMSFLOW_STATE_DIR", state);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("imsflow {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    CliRun::of(child.wait_with_output().unwrap())
}

#[test]
fn a_fifo_or_a_device_given_as_the_plan_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("plan.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for (command, path) in [
        ("show", fifo.to_str().unwrap()),
        ("apply", fifo.to_str().unwrap()),
        ("show", "/dev/zero"),
        ("apply", "/dev/zero"),
    ] {
        let run = prompt(&[command, path], None);
        assert_eq!(run.code, 1, "{command} {path}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("plan {path}: is not a regular file")),
            "{command} {path}: {}",
            run.stderr
        );
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs are resumed with the operator's credentials: the state directory is
/// created 0700 and refused when it is a link, when others can write it or
/// when someone else owns it; a run folder someone else planted is refused.
#[test]
fn a_state_directory_or_run_folder_someone_else_controls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let list = |state: &Path| prompt(&["runs", "list"], Some(state));

    let fresh = dir.path().join("fresh/state");
    let run = list(&fresh);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "created owner-only");

    let link = dir.path().join("link");
    symlink(&fresh, &link).unwrap();
    let run = list(&link);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("is a symbolic link"), "{}", run.stderr);

    set_mode(&fresh, 0o777);
    let run = list(&fresh);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("it is writable by group or others (mode 777)"),
        "{}",
        run.stderr
    );
    set_mode(&fresh, 0o700);

    // The tests run as root in CI: a chown stands in for another user.
    if chown(&fresh, Some(65534), None).is_err() {
        return;
    }
    let run = list(&fresh);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("owned by uid 65534"), "{}", run.stderr);
    chown(&fresh, Some(imsflow::owner::my_uid()), None).unwrap();

    // A run planted by another user, with a plan that would write an archive.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let plan_file = dir.path().join("hello.json");
    let made = prompt(
        &[
            "plan",
            "hello",
            "-p",
            &format!("target_dir={}", out.display()),
            "-o",
            plan_file.to_str().unwrap(),
        ],
        Some(&fresh),
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let id = imsflow::plan::Plan::load(&plan_file).unwrap().run.id;
    let planted = fresh.join("runs").join(&id);
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::copy(&plan_file, planted.join("plan.json")).unwrap();
    chown(&planted, Some(65534), None).unwrap();
    let run = prompt(&["resume", &id, "--yes"], Some(&fresh));
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&id) && run.stderr.contains("owned by uid 65534"),
        "{}",
        run.stderr
    );
    assert!(dir_entries(&out).is_empty(), "nothing was applied");
    let listed = list(&fresh);
    assert!(
        listed.stdout.contains("refused: it is owned by uid 65534"),
        "{}",
        listed.stdout
    );
}

#[test]
fn endless_or_special_files_are_refused_not_read() {
    let s = Scratch::new();
    // A workflow that is /dev/zero, a FIFO given as a workflow, and a plugin file that is a FIFO.
    let out = imsflow_cli(None, &["validate", "/dev/zero"], &[]);
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
    let out = imsflow_cli(None, &["validate", fifo.to_str().unwrap()], &[]);
    assert_eq!(out.code, 1, "a FIFO is not waited on");
    assert!(
        out.stderr.clone().contains("is not a regular file"),
        "{}",
        out.stderr.clone()
    );
    let out = imsflow_cli(None, &["verify", fifo.to_str().unwrap()], &[]);
    assert_eq!(out.code, 1, "verify does not wait on a FIFO");
    assert!(
        out.stderr.contains("neither a tar file nor a directory"),
        "{}",
        out.stderr
    );
    let out = imsflow_cli(
        None,
        &[
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
        ],
        &[],
    );
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
