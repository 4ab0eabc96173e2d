//! Durable runs on real Ceph and csm-sim: a child `imsflow` is stopped at
//! exact points of an apply (the test-only pause hook), killed or signalled,
//! and resumed; the end state must be the one an uninterrupted run reaches.
//! Also the run lock, approval gates, and `runs list`/`runs show` (golden;
//! regenerate with `UPDATE_GOLDEN=1 cargo test --test it durable`).
use crate::support::*;
use csm_sim::testing::{System, small_spec};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Members of the input archive, and objects of the source bucket.
const COUNT: usize = 14;
/// `m02`, `m07` and `m11` are 11 MiB: three parts each.
const BIG: [usize; 3] = [2, 7, 11];

const WORKFLOW: &str = r#"
version = 1
name = "mixed"
description = "archive writes, uploads and phases, interleaved"

[params.archive]
type = "string"
description = "input archive"

[params.out]
type = "string"
description = "output directory"

[archive]
input = "{{ params.archive }}"
output_dir = "{{ params.out }}"

[[steps]]
id = "mix"
plugin = "@PLUGINS@/mixer.wasm"
with = { source = "src", target = "restore", prefix = "data/", part_size = 5242880 }
grants = { archive = true, buckets = ["src", "restore"], effects = ["archive-add-object", "archive-add-json", "s3-upload-from-archive", "phase"] }
"#;

const GATE: &str = r#"
[[gates]]
name = "half"
description = "the second half uploads into the restore bucket"
before_phase = "half"
"#;

/// A planned run of the `mixer` workflow against its own tenant.
struct Rig {
    sys: System,
    scratch: Scratch,
    plan: PathBuf,
    out: PathBuf,
    state: PathBuf,
}

impl Rig {
    async fn new(with_gate: bool) -> Rig {
        let sys = System::start(&small_spec()).await;
        let s3 = csm_sim::s3::S3::new(&sys.s3);
        s3.create_bucket("src").await.unwrap();
        s3.create_bucket("restore").await.unwrap();
        // Versioning shows every PUT: an upload done twice leaves two versions.
        s3.client()
            .put_bucket_versioning()
            .bucket("restore")
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for i in 0..COUNT {
            let body = format!("source object {i} ").repeat(500 + 37 * i);
            s3.client()
                .put_object()
                .bucket("src")
                .key(format!("o{i:02}"))
                .body(body.into_bytes().into())
                .send()
                .await
                .unwrap();
        }
        let scratch = Scratch::new();
        let input = scratch.path().join("input.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&input).unwrap());
        for i in 0..COUNT {
            let size = if BIG.contains(&i) {
                11 << 20
            } else {
                1000 + 997 * i
            };
            let body: Vec<u8> = (0..size).map(|n| (n * 7 + i * 13) as u8).collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            tar.append_data(&mut header, format!("data/m{i:02}"), &body[..])
                .unwrap();
        }
        tar.finish().unwrap();
        let out = scratch.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let text = if with_gate {
            format!("{WORKFLOW}{GATE}")
        } else {
            WORKFLOW.to_string()
        };
        scratch.workflow(&text);
        let wf = scratch.path().join("wf.toml");
        let state = scratch.path().join("state");
        let rig = Rig {
            plan: scratch.path().join("plan.json"),
            sys,
            scratch,
            out,
            state,
        };
        let planned = rig.cli(&[
            "plan",
            wf.to_str().unwrap(),
            "-p",
            &format!("archive={}", input.display()),
            "-p",
            &format!("out={}", rig.out.display()),
            "-o",
            rig.plan.to_str().unwrap(),
        ]);
        assert_eq!(planned.code, 0, "{}", planned.stderr);
        rig
    }

    fn config(&self) -> PathBuf {
        self.sys.data.path().join("imsflow.toml")
    }

    fn cli(&self, args: &[&str]) -> CliRun {
        let state = self.state.to_string_lossy().into_owned();
        imsflow_cli(
            Some(&self.config()),
            args,
            &[("IMSFLOW_STATE_DIR", state.as_str())],
        )
    }

    fn run_id(&self) -> String {
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.plan).unwrap()).unwrap();
        plan["run"]["id"].as_str().unwrap().to_string()
    }

    /// `apply` in a child process that stops at `point` and says so.
    fn apply_paused(&self, point: &str, extra: &[&str]) -> Child {
        let flag = self.scratch.path().join("paused");
        let _ = std::fs::remove_file(&flag);
        let child = imsflow_command()
            .args(["apply", self.plan.to_str().unwrap()])
            .args(extra)
            .env("IMSFLOW_CONFIG", self.config())
            .env("IMSFLOW_STATE_DIR", &self.state)
            .env("IMSFLOW_TEST_PAUSE_AT", point)
            .env("IMSFLOW_TEST_PAUSE_FILE", &flag)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !flag.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the apply never reached {point}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    /// Back to the state before any apply: no archive, no journal, an empty
    /// restore bucket (every version).
    async fn reset(&self) {
        for entry in std::fs::read_dir(&self.out).unwrap() {
            let path = entry.unwrap().path();
            std::fs::remove_file(&path)
                .or_else(|_| std::fs::remove_dir_all(&path))
                .unwrap();
        }
        let _ = std::fs::remove_file(imsflow::journal::path_for(&self.plan));
        let _ = std::fs::remove_file(imsflow::journal::lock::path_for(&self.plan));
        let s3 = csm_sim::s3::S3::new(&self.sys.s3);
        let versions = s3
            .client()
            .list_object_versions()
            .bucket("restore")
            .send()
            .await
            .unwrap();
        for v in versions.versions() {
            s3.client()
                .delete_object()
                .bucket("restore")
                .key(v.key().unwrap())
                .version_id(v.version_id().unwrap())
                .send()
                .await
                .unwrap();
        }
        for m in versions.delete_markers() {
            s3.client()
                .delete_object()
                .bucket("restore")
                .key(m.key().unwrap())
                .version_id(m.version_id().unwrap())
                .send()
                .await
                .unwrap();
        }
    }

    /// What a run leaves: the archive's bytes, and every object of the
    /// restore bucket with its ETag and how many times it was written.
    async fn end_state(&self) -> EndState {
        let archives = dir_entries(&self.out);
        assert_eq!(
            archives.len(),
            1,
            "one archive, nothing partial: {archives:?}"
        );
        let bytes = std::fs::read(self.out.join(&archives[0])).unwrap();
        let s3 = csm_sim::s3::S3::new(&self.sys.s3);
        let versions = s3
            .client()
            .list_object_versions()
            .bucket("restore")
            .send()
            .await
            .unwrap();
        let mut objects: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for v in versions.versions() {
            let entry = objects
                .entry(v.key().unwrap().to_string())
                .or_insert((String::new(), 0));
            if v.is_latest() == Some(true) {
                entry.0 = v.e_tag().unwrap().trim_matches('"').to_string();
            }
            entry.1 += 1;
        }
        EndState {
            archive: (
                archives[0].clone(),
                hex::encode(sha2::Sha256::digest(&bytes)),
            ),
            objects,
            open_uploads: open_uploads(&s3, "restore").await.len(),
        }
    }
}

#[derive(Debug, PartialEq)]
struct EndState {
    archive: (String, String),
    /// key -> (ETag, versions written)
    objects: BTreeMap<String, (String, usize)>,
    open_uploads: usize,
}

fn kill(child: Child) -> std::process::Output {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait_with_output().unwrap()
}

/// Effect order of the mixer's plan (COUNT = 14): 0 phase `copy`; then for
/// i < 7 the object, document and upload at 1+3i, 2+3i, 3+3i; 22 phase
/// `half`; for i >= 7 at 23+3(i-7)...; 44 phase `finish`. Multipart uploads
/// (m02, m07, m11) are effects 9, 25 and 37.
const CRASH_POINTS: [&str; 22] = [
    "0:before",
    "1:started",
    "1:executed",
    "2:executed",
    "3:before",
    "3:started",
    "3:executed",
    "9:uploading",
    "9:executed",
    "13:started",
    "16:executed",
    "21:executed",
    "22:before",
    "25:uploading",
    "25:started",
    "28:executed",
    "31:executed",
    "34:started",
    "37:uploading",
    "40:executed",
    "43:executed",
    "44:executed",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow tier (IMSFLOW_SLOW_TESTS=1): 22 applies killed and resumed"]
async fn killed_at_22_exact_points_every_resume_ends_as_an_uninterrupted_apply() {
    killed_at(&CRASH_POINTS).await;
}

/// The fast tier's share of the matrix: one point of each kind (before an
/// effect, started, in a multipart upload, executed but not journalled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_4_points_one_of_each_kind_every_resume_ends_as_an_uninterrupted_apply() {
    killed_at(&["3:before", "13:started", "25:uploading", "31:executed"]).await;
}

/// Kills an apply at each point in turn, resumes it, and compares the end
/// state with an uninterrupted apply's.
async fn killed_at(points: &[&str]) {
    assert!(points.iter().all(|p| CRASH_POINTS.contains(p)));
    let rig = Rig::new(false).await;
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rig.plan).unwrap()).unwrap();
    let effects = plan["effects"].as_array().unwrap();
    assert_eq!(effects.len(), 45, "the effect order the points assume");
    for (i, names) in [
        (9, "data/m02"),
        (25, "data/m07"),
        (37, "data/m11"),
        (22, "\"half\""),
    ] {
        assert!(
            effects[i].to_string().contains(names),
            "effect {i}: {}",
            effects[i]
        );
    }
    let reference = {
        let applied = rig.cli(&["apply", rig.plan.to_str().unwrap()]);
        assert_eq!(applied.code, 0, "{}", applied.stderr);
        rig.end_state().await
    };
    assert_eq!(reference.objects.len(), COUNT);
    assert!(reference.objects.values().all(|(_, n)| *n == 1));
    for (_, (etag, _)) in reference
        .objects
        .iter()
        .filter(|(k, _)| BIG.iter().any(|b| *k == &format!("m{b:02}")))
    {
        assert!(etag.ends_with("-3"), "11 MiB in 5 MiB parts: {etag}");
    }
    for &point in points {
        rig.reset().await;
        let killed = kill(rig.apply_paused(point, &[]));
        assert_eq!(killed.status.code(), None, "{point}: killed by a signal");
        let resumed = rig.cli(&["resume", rig.plan.to_str().unwrap()]);
        assert_eq!(
            resumed.code, 0,
            "{point}: {}\n{}",
            resumed.stdout, resumed.stderr
        );
        let end = rig.end_state().await;
        assert_eq!(end, reference, "{point}: {}", resumed.stdout);
        if point.ends_with("uploading") {
            assert!(
                resumed.stdout.contains("aborted the multipart upload"),
                "{point}: the orphaned upload is aborted and said: {}",
                resumed.stdout
            );
        }
        if point.ends_with(":executed") && point != "44:executed" {
            assert!(
                resumed
                    .stdout
                    .contains("was in progress when the run stopped"),
                "{point}: resume says what it decided: {}",
                resumed.stdout
            );
        }
        let again = rig.cli(&["resume", rig.plan.to_str().unwrap()]);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert!(
            again.stdout.contains("already finished"),
            "{}",
            again.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_journal_over_a_world_where_nothing_was_done_is_not_believed() {
    let rig = Rig::new(false).await;
    let applied = rig.cli(&["apply", rig.plan.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let reference = rig.end_state().await;
    // That apply's journal (every effect `done`, the run `finished`), over
    // a world where none of it was done: no archive, no uploaded object.
    let journal = imsflow::journal::path_for(&rig.plan);
    let forged = std::fs::read(&journal).unwrap();
    rig.reset().await;
    std::fs::write(&journal, forged).unwrap();
    let resumed = rig.cli(&["resume", &rig.run_id()]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert!(
        !resumed.stdout.contains("already finished"),
        "{}",
        resumed.stdout
    );
    let said = |what: &str| {
        resumed
            .stdout
            .lines()
            .filter(|l| l.contains("the journal records") && l.contains(what))
            .count()
    };
    assert_eq!(
        said("does not exist; doing it again"),
        1 + COUNT,
        "a line for the archive and one per upload: {}",
        resumed.stdout
    );
    assert_eq!(said("s3://restore/"), COUNT, "{}", resumed.stdout);
    assert_eq!(rig.end_state().await, reference, "done again, as planned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apply_is_refused_and_a_dead_runs_lock_is_reported_then_taken_over() {
    let rig = Rig::new(false).await;
    let first = rig.apply_paused("5:started", &[]);
    let pid = first.id();
    let second = rig.cli(&["apply", rig.plan.to_str().unwrap()]);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains(&format!("another imsflow is applying this plan: pid {pid}")),
        "{}",
        second.stderr
    );
    let listed = rig.cli(&["runs", "list"]);
    assert!(
        listed.stdout.contains(&format!("running (pid {pid}")),
        "{}",
        listed.stdout
    );
    kill(first);
    let listed = rig.cli(&["runs", "list"]);
    assert!(
        listed.stdout.contains("unfinished (the process died)"),
        "{}",
        listed.stdout
    );
    let resumed = rig.cli(&["resume", &rig.run_id()]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains(&format!("was left by pid {pid}"))
            && resumed.stderr.contains("no longer running"),
        "the stale lock is reported: {}",
        resumed.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_stop_a_non_interactive_run_with_2_pass_with_yes_and_until_then_resume_completes() {
    let rig = Rig::new(true).await;
    let plan = rig.plan.to_str().unwrap();
    let id = rig.run_id();
    let s3 = csm_sim::s3::S3::new(&rig.sys.s3);
    let count = || async {
        s3.client()
            .list_objects_v2()
            .bucket("restore")
            .send()
            .await
            .unwrap()
            .contents()
            .len()
    };
    // Not interactive, no --yes: stops at the gate, exit 2, says how to go on.
    let stopped = rig.cli(&["apply", plan]);
    assert_eq!(stopped.code, 2, "{}\n{}", stopped.stdout, stopped.stderr);
    assert!(
        stopped
            .stdout
            .contains("Stopped at gate `half` (approval needed)")
            && stopped
                .stdout
                .contains(&format!("To continue: imsflow resume {id} --yes")),
        "{}",
        stopped.stdout
    );
    assert_eq!(count().await, COUNT / 2, "only the uploads before the gate");
    assert!(
        dir_entries(&rig.out).is_empty(),
        "the archive is not finished"
    );
    let listed = rig.cli(&["runs", "list"]);
    assert!(
        listed.stdout.contains("stopped at gate `half`"),
        "{}",
        listed.stdout
    );
    let again = rig.cli(&["resume", &id]);
    assert_eq!(again.code, 2, "still not approved: {}", again.stdout);
    let approved = rig.cli(&["resume", &id, "--yes"]);
    assert_eq!(approved.code, 0, "{}", approved.stderr);
    let reference = rig.end_state().await;
    assert_eq!(reference.objects.len(), COUNT);

    // --until: stop there as asked (exit 0), and a later resume completes.
    rig.reset().await;
    let until = rig.cli(&["apply", plan, "--until", "half"]);
    assert_eq!(until.code, 0, "{}", until.stderr);
    assert!(
        until.stdout.contains("Stopped at gate `half` (until)"),
        "{}",
        until.stdout
    );
    assert_eq!(count().await, COUNT / 2);
    let resumed = rig.cli(&["resume", &id, "--yes"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(rig.end_state().await, reference);

    // --yes approves every gate, and the journal says who approved it.
    rig.reset().await;
    let yes = rig.cli(&["apply", plan, "--yes"]);
    assert_eq!(yes.code, 0, "{}", yes.stderr);
    assert_eq!(rig.end_state().await, reference);
    let shown = rig.cli(&["runs", "show", &id]);
    assert!(
        shown
            .stdout
            .contains("-- gate `half`: approved by --yes --"),
        "{}",
        shown.stdout
    );

    let bad = rig.cli(&["apply", plan, "--until", "nope"]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr
            .contains("--until names gate `nope`, which this plan does not have (its gates: half)"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_upload_rolls_it_back_exits_130_and_resume_completes() {
    let rig = Rig::new(false).await;
    let reference = {
        let applied = rig.cli(&["apply", rig.plan.to_str().unwrap()]);
        assert_eq!(applied.code, 0, "{}", applied.stderr);
        rig.end_state().await
    };
    rig.reset().await;
    let child = rig.apply_paused("25:uploading", &[]);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGTERM before effect mix.25")
            && stderr.contains("removed the partial archive")
            && stderr.contains(&format!("To continue: imsflow resume {}", rig.run_id())),
        "{stderr}"
    );
    assert!(
        dir_entries(&rig.out).is_empty(),
        "no partial archive is left"
    );
    let journal = std::fs::read_to_string(imsflow::journal::path_for(&rig.plan)).unwrap();
    assert!(
        journal.contains(
            r#""event":"rolled_back","id":"mix.25","what":"aborted the multipart upload"#
        ) && journal.contains(r#""event":"interrupted","signal":"SIGTERM""#),
        "{journal}"
    );
    let s3 = csm_sim::s3::S3::new(&rig.sys.s3);
    assert!(
        open_uploads(&s3, "restore").await.is_empty(),
        "the multipart upload was aborted"
    );
    let listed = rig.cli(&["runs", "list"]);
    assert!(
        listed.stdout.contains("interrupted (SIGTERM)"),
        "{}",
        listed.stdout
    );
    let resumed = rig.cli(&["resume", &rig.run_id()]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(rig.end_state().await, reference);
}

/// Run ids, scratch paths and times vary; the rest of the rendering is pinned.
fn normalized(text: &str, rig: &Rig) -> String {
    let id = rig.run_id();
    // Same width, so that columns stay aligned.
    let text = text
        .replace(&id, &format!("{:.<width$}", "<run>", width = id.len()))
        .replace(&rig.scratch.path().display().to_string(), "<scratch>");
    let mut out = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    // `YYYY-MM-DD HH:MM:SS UTC`
    let shape = b"dddd-dd-dd dd:dd:dd UTC";
    while i < bytes.len() {
        let here = &bytes[i..];
        let is_time = here.len() >= shape.len()
            && shape.iter().zip(here).all(|(s, b)| {
                if *s == b'd' {
                    b.is_ascii_digit()
                } else {
                    s == b
                }
            });
        if is_time {
            out.push_str("<time>");
            i += shape.len();
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_and_runs_show_render_a_run_stopped_at_a_gate() {
    let rig = Rig::new(true).await;
    let stopped = rig.cli(&["apply", rig.plan.to_str().unwrap()]);
    assert_eq!(stopped.code, 2, "{}", stopped.stderr);
    let listed = rig.cli(&["runs", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    golden("runs-list.txt", &normalized(&listed.stdout, &rig));
    let shown = rig.cli(&["runs", "show", &rig.run_id()]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    golden("runs-show.txt", &normalized(&shown.stdout, &rig));
    let json = rig.cli(&["--json", "runs", "list"]);
    let runs: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(runs[0]["done"], 22, "{runs}");
    assert_eq!(runs[0]["total"], 45);
}

#[test]
fn a_journal_of_another_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("p.json");
    let journal = imsflow::journal::path_for(&plan);
    std::fs::write(
        &journal,
        r#"{"at":"t","event":"accepted","plan_hash":"sha256:other","run_id":"r","workflow":"w","effects":1,"resumed":false,"pid":1,"host":"h"}
"#,
    )
    .unwrap();
    let e = imsflow::journal::begin(&plan, "sha256:mine")
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("belongs to another plan"), "{e}");
}

/// `apply` on a terminal (util-linux `script` gives it one), answering `answer`.
fn apply_on_a_terminal(rig: &Rig, answer: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let command = format!(
        "{} apply {}",
        env!("CARGO_BIN_EXE_imsflow"),
        rig.plan.display()
    );
    let imsflow = imsflow_command();
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &command, "/dev/null"]);
    // The same environment as every test invocation of imsflow.
    for (k, v) in imsflow.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let mut child = script
        .env("IMSFLOW_CONFIG", rig.config())
        .env("IMSFLOW_STATE_DIR", &rig.state)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_gate_a_person_at_a_terminal_sees_what_follows_and_decides() {
    let rig = Rig::new(true).await;
    let (code, screen) = apply_on_a_terminal(&rig, "n");
    assert_eq!(code, Some(2), "{screen}");
    assert!(
        screen.contains("data/m13 -> s3://restore/m13 (new)")
            && screen
                .contains("Approval gate `half`: the second half uploads into the restore bucket")
            && screen.contains("Continue with the effects above? [y/N]")
            && screen.contains("Stopped at gate `half` (declined)"),
        "{screen}"
    );
    let (code, screen) = apply_on_a_terminal(&rig, "y");
    assert_eq!(code, Some(0), "{screen}");
    assert_eq!(rig.end_state().await.objects.len(), COUNT);
    let shown = rig.cli(&["runs", "show", &rig.run_id()]);
    assert!(
        shown
            .stdout
            .contains("-- gate `half`: approved by a person at the terminal --"),
        "{}",
        shown.stdout
    );
}
