//! Local files as hostile input: a FIFO or a device given as the plan, and
//! a state directory or run folder that someone else controls.
use crate::support::*;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::Path;
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
