//! `imsflow import` on csm-sim and real Ceph: export, damage the system,
//! import, and compare IMS and S3 with what they held at export time (read
//! independently here through the API and S3, never from imsflow's plan).
use crate::support::*;
use csm_sim::seed::SeedSpec;
use csm_sim::testing::{System, small_spec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(crate) struct Site {
    pub(crate) sys: System,
    pub(crate) http: reqwest::Client,
    pub(crate) token: String,
    pub(crate) scratch: Scratch,
}

/// IMS as its API serves it: each table, records by id.
pub(crate) type ImsState = BTreeMap<&'static str, BTreeMap<String, Value>>;
/// Every object of the IMS buckets: key -> ETag.
pub(crate) type S3State = BTreeMap<String, String>;

const TABLES: [&str; 7] = [
    "v3/images",
    "v3/recipes",
    "v3/public-keys",
    "v3/deleted/images",
    "v3/deleted/recipes",
    "v3/deleted/public-keys",
    "v3/jobs",
];

impl Site {
    pub(crate) async fn start(spec: SeedSpec) -> Site {
        let sys = System::start(&spec).await;
        let http = csm_sim::testing::http_client();
        let token = sys.token(&http).await;
        Site {
            sys,
            http,
            token,
            scratch: Scratch::new(),
        }
    }

    pub(crate) fn cli(&self, args: &[&str]) -> CliRun {
        imsflow_cli(Some(&self.sys.data.path().join("imsflow.toml")), args, &[])
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        let d = self.scratch.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `imsflow export` into a fresh directory; the tar's path.
    pub(crate) fn export(&self) -> PathBuf {
        let out = self.dir("export");
        let run = self.cli(&["export", out.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let tar = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Data saved to tar archive: "))
            .expect("the archive's path");
        PathBuf::from(tar)
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> u16 {
        self.http
            .request(method, self.sys.url(&format!("/apis/ims/{path}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// A DELETE through the IMS API, which must answer 204.
    pub(crate) async fn delete(&self, path: &str) {
        assert_eq!(
            self.call(reqwest::Method::DELETE, path).await,
            204,
            "DELETE {path}"
        );
    }

    pub(crate) async fn ims(&self) -> ImsState {
        let mut state = ImsState::new();
        for table in TABLES {
            let list: Value = self
                .http
                .get(self.sys.url(&format!("/apis/ims/{table}")))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let records = list
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
                .collect();
            state.insert(table, records);
        }
        state
    }

    pub(crate) async fn s3(&self) -> S3State {
        let s3 = csm_sim::s3::S3::new(&self.sys.s3);
        let mut state = S3State::new();
        for bucket in ["boot-images", "ims"] {
            let mut token = None;
            loop {
                let page = s3
                    .client()
                    .list_objects_v2()
                    .bucket(bucket)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .unwrap();
                for o in page.contents() {
                    state.insert(
                        format!("{bucket}/{}", o.key().unwrap()),
                        o.e_tag().unwrap().trim_matches('"').to_string(),
                    );
                }
                token = page.next_continuation_token().map(String::from);
                if token.is_none() {
                    break;
                }
            }
        }
        state
    }

    pub(crate) fn import(&self, mode: &str, archive: &Path, extra: &[&str]) -> CliRun {
        self.import_env(mode, archive, extra, &[])
    }

    /// `import` with extra environment variables (e.g. its own state directory).
    pub(crate) fn import_env(
        &self,
        mode: &str,
        archive: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> CliRun {
        let backup = self.dir("backup");
        let mut args = vec![
            "import",
            mode,
            "-f",
            archive.to_str().unwrap(),
            "-b",
            backup.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        imsflow_cli(Some(&self.sys.data.path().join("imsflow.toml")), &args, env)
    }
}

pub(crate) fn live(state: &ImsState) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    state
        .iter()
        .filter(|(t, _)| !t.contains("deleted") && !t.ends_with("jobs"))
        .map(|(t, r)| (*t, r.clone()))
        .collect()
}

/// Every object outside `deleted/` that `objects` had is there again, with
/// the same ETag (what manifests, IMS links and BOS boot sets quote).
fn assert_objects_back(objects: &S3State, now: &S3State, context: &str) {
    for (key, etag) in objects.iter().filter(|(k, _)| !k.contains("/deleted/")) {
        assert_eq!(now.get(key), Some(etag), "{context}: {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_damage_then_overwrite_gives_back_the_records_under_their_ids_and_the_same_objects()
{
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let objects = site.s3().await;
    let images: Vec<String> = before["v3/images"].keys().cloned().collect();
    let recipe = before["v3/recipes"].keys().next().unwrap().clone();
    // The mistake: one image hard-deleted with its artifacts, one soft, a recipe soft.
    site.delete(&format!("v2/images/{}?cascade=True", images[0]))
        .await;
    site.delete(&format!("v3/images/{}", images[1])).await;
    site.delete(&format!("v3/recipes/{recipe}")).await;
    assert_ne!(live(&site.ims().await), live(&before));

    let dry = site.import("overwrite", &archive, &["--dry-run"]);
    assert_eq!(dry.code, 2, "{}\n{}", dry.stdout, dry.stderr);
    let damaged = site.ims().await;
    let damaged_objects = site.s3().await;
    assert_eq!(site.ims().await, damaged, "a dry run changes nothing");
    assert_eq!(site.s3().await, damaged_objects);

    let run = site.import("overwrite", &archive, &["--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("DONE!"), "{}", run.stdout);
    // The backup is named as the backup, not as the import's result.
    let backup = format!("{}/export-ims-data-", site.dir("backup").display());
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with(&format!("Pre-import backup saved to: {backup}"))),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("Data saved to:"), "{}", run.stdout);
    assert!(
        run.stdout.contains("Post-import verification"),
        "{}",
        run.stdout
    );

    let after = site.ims().await;
    // The live records are the exported ones: same ids, `created`, links.
    assert_eq!(live(&after), live(&before));
    // overwrite leaves no deleted records and no jobs.
    for table in [
        "v3/deleted/images",
        "v3/deleted/recipes",
        "v3/deleted/public-keys",
        "v3/jobs",
    ] {
        assert!(
            after[table].is_empty(),
            "{table}: {:?}",
            after[table].keys()
        );
    }
    // Every object of a live record is back with the same ETag.
    assert_objects_back(&objects, &site.s3().await, "after overwrite");
}

fn deleted(state: &ImsState, table: &str) -> Vec<String> {
    state[table].keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_after_a_mistake_brings_the_records_back_and_a_rerun_changes_nothing() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let images: Vec<String> = before["v3/images"].keys().cloned().collect();
    let recipe = before["v3/recipes"].keys().next().unwrap().clone();
    for path in [
        format!("v3/images/{}", images[0]),
        format!("v3/images/{}", images[1]),
        format!("v3/recipes/{recipe}"),
    ] {
        site.delete(&path).await;
    }
    let dry = site.import("update", &archive, &["--dry-run"]);
    assert_eq!(dry.code, 2, "{}\n{}", dry.stdout, dry.stderr);
    for id in [&images[0], &images[1]] {
        assert!(
            dry.stdout
                .lines()
                .any(|l| l.trim_start().starts_with("add") && l.contains(id.as_str())),
            "the review adds {id} back: {}",
            dry.stdout
        );
        assert!(
            dry.stdout
                .lines()
                .any(|l| l.trim_start().starts_with("purge") && l.contains(id.as_str())),
            "and purges its deleted copy: {}",
            dry.stdout
        );
    }
    assert!(
        dry.stdout.contains("IMS data files rewritten: 2"),
        "{}",
        dry.stdout
    );
    let run = site.import("update", &archive, &["--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let after = site.ims().await;
    assert_eq!(live(&after), live(&before), "back under their ids");
    // The soft-deleted copies of imported ids are purged; the others stay.
    for table in [
        "v3/deleted/images",
        "v3/deleted/recipes",
        "v3/deleted/public-keys",
    ] {
        assert_eq!(deleted(&after, table), deleted(&before, table), "{table}");
    }
    assert_eq!(after["v3/jobs"], before["v3/jobs"], "update keeps jobs");
    let objects = site.s3().await;
    let again = site.import("update", &archive, &["--yes"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(
        site.ims().await,
        after,
        "a re-run of update changes nothing"
    );
    assert_eq!(site.s3().await, objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_goes_on_while_jobs_run_and_update_refuses_naming_them() {
    let site = Site::start(small_spec()).await;
    let archive = {
        let out = site.dir("export");
        let run = site.cli(&["export", out.to_str().unwrap(), "--ignore-running-jobs"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        PathBuf::from(
            run.stdout
                .lines()
                .find_map(|l| l.strip_prefix("Data saved to tar archive: "))
                .unwrap(),
        )
    };
    let before = site.ims().await;
    let image = before["v3/images"].keys().next().unwrap().clone();
    site.delete(&format!("v2/images/{image}?cascade=False"))
        .await;
    let refused = site.import("update", &archive, &["--yes"]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    let running = site.sys.expected.running_jobs.iter().next().unwrap();
    assert!(
        refused.stderr.contains(running),
        "names the running job: {}",
        refused.stderr
    );
    let added = site.import("add", &archive, &["--yes"]);
    assert_eq!(added.code, 0, "{}\n{}", added.stdout, added.stderr);
    assert_eq!(
        live(&site.ims().await),
        live(&before),
        "the missing image is added back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_overwrite_keeps_what_the_archive_lacks_as_deleted_records() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let r = site
        .http
        .post(site.sys.url("/apis/ims/v3/public-keys"))
        .bearer_auth(&site.token)
        .json(&serde_json::json!({ "name": "added-after-export", "public_key": "ssh-ed25519 AAAAC3Nza" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let extra: Value = site.ims().await["v3/public-keys"]
        .values()
        .find(|k| k["name"] == "added-after-export")
        .unwrap()
        .clone();
    let run = site.import("soft_overwrite", &archive, &["--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let after = site.ims().await;
    assert_eq!(live(&after), live(&before));
    let mut expected_deleted = deleted(&before, "v3/deleted/public-keys");
    expected_deleted.push(extra["id"].as_str().unwrap().to_string());
    expected_deleted.sort();
    assert_eq!(
        deleted(&after, "v3/deleted/public-keys"),
        expected_deleted,
        "restorable"
    );
    assert!(after["v3/jobs"].is_empty(), "jobs are deleted");
}

/// Rewrites an imsflow archive as HPE's exporter writes it: no sha256, size
/// or part size in `export.json`.
fn as_hpe_archive(ours: &Path, out: &Path) -> PathBuf {
    let path = out.join("export-ims-data-hpe.tar");
    rewrite_export_json(ours, &path, |doc| {
        for entry in doc["s3_data"].as_object_mut().unwrap().values_mut() {
            let e = entry.as_object_mut().unwrap();
            for key in ["sha256", "size", "part_size"] {
                e.remove(key);
            }
        }
    });
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpe_format_archive_imports_with_faithful_multipart_etags() {
    let site = Site::start(SeedSpec {
        rootfs_size: 6 << 20,
        ..no_running_jobs()
    })
    .await;
    let archive = as_hpe_archive(&site.export(), &site.dir("hpe"));
    let before = site.ims().await;
    let objects = site.s3().await;
    assert!(
        objects.values().any(|e| e.contains('-')),
        "the seed has multipart objects"
    );
    // Every image hard-deleted with its artifacts: all of them must come back.
    for image in before["v3/images"].keys() {
        site.delete(&format!("v2/images/{image}?cascade=True"))
            .await;
    }
    let run = site.import("overwrite", &archive, &["--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("ETag changed"), "{}", run.stdout);
    assert_eq!(live(&site.ims().await), live(&before));
    assert_objects_back(&objects, &site.s3().await, "from an HPE-format archive");
}

/// Points of an overwrite plan to kill it at, by effect kind: in the
/// backup, the deletes, at the assertion, in the uploads, the data-file
/// writes and the restart.
fn crash_points(plan: &Value) -> Vec<String> {
    let kinds: Vec<&str> = plan["effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["effect"]["kind"].as_str().unwrap())
        .collect();
    let first = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
    };
    let last = |kind: &str| kinds.iter().rposition(|k| *k == kind).unwrap();
    vec![
        format!("{}:started", first("archive-add-object") + 1),
        format!("{}:executed", first("ims-delete")),
        format!("{}:started", first("ims-delete") + 2),
        format!("{}:executed", first("assert")),
        format!("{}:executed", first("s3-upload-from-archive")),
        format!("{}:started", first("ims-store-write")),
        format!("{}:executed", last("ims-store-write")),
        format!("{}:executed", first("ims-restart")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow tier (IMSFLOW_SLOW_TESTS=1): 8 imports killed and resumed"]
async fn an_overwrite_killed_at_8_points_one_per_phase_resumes_to_the_uninterrupted_end_state() {
    overwrite_killed_at(|_| true).await;
}

/// The fast tier's share: killed after the first delete, and in the middle
/// of the data-file writes (after the S3 restore).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_killed_in_its_deletes_or_its_data_files_resumes_to_the_uninterrupted_end_state()
 {
    overwrite_killed_at(|n| n == 1 || n == 5).await;
}

/// Kills an overwrite at each crash point `keep` selects (by its index in
/// `crash_points`), resumes it, and compares IMS and S3 with the export.
async fn overwrite_killed_at(keep: impl Fn(usize) -> bool) {
    let mut points: Option<Vec<String>> = None;
    let mut n = 0;
    // The seed is fixed, so one export serves every fresh site.
    let exported = tempfile::tempdir().unwrap();
    let mut shared: Option<PathBuf> = None;
    while points.as_ref().is_none_or(|p| n < p.len()) {
        if points.is_some() && !keep(n) {
            n += 1;
            continue;
        }
        let site = Site::start(no_running_jobs()).await;
        let archive = shared
            .get_or_insert_with(|| keep_export(&site, exported.path()))
            .clone();
        let before = site.ims().await;
        let objects = site.s3().await;
        let image = before["v3/images"].keys().next().unwrap().clone();
        site.delete(&format!("v2/images/{image}?cascade=True"))
            .await;
        if points.is_none() {
            // The same seed and damage every time: the same plan shape.
            let plan = site.scratch.path().join("plan.json");
            let saved = site.import(
                "overwrite",
                &archive,
                &["--plan-out", plan.to_str().unwrap()],
            );
            assert_eq!(saved.code, 0, "{}", saved.stderr);
            points = Some(crash_points(
                &serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap(),
            ));
        }
        let (index, point) = (n, points.as_ref().unwrap()[n].as_str());
        n += 1;
        if !keep(index) {
            continue;
        }
        let state = site.dir("state");
        let backup = site.dir("backup");
        let flag = site.scratch.path().join("paused");
        let child = imsflow_command()
            .args([
                "import",
                "overwrite",
                "--yes",
                "-f",
                archive.to_str().unwrap(),
                "-b",
                backup.to_str().unwrap(),
            ])
            .env("IMSFLOW_CONFIG", site.sys.data.path().join("imsflow.toml"))
            .env("IMSFLOW_STATE_DIR", &state)
            .env("IMSFLOW_TEST_PAUSE_AT", point)
            .env("IMSFLOW_TEST_PAUSE_FILE", &flag)
            .env_remove("KUBECONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while !flag.exists() {
            assert!(started.elapsed().as_secs() < 60, "{point}: never paused");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait_with_output().unwrap();
        let listed = imsflow_cli(
            None,
            &["--json", "runs", "list"],
            &[("IMSFLOW_STATE_DIR", state.to_str().unwrap())],
        );
        let runs: Value = serde_json::from_str(&listed.stdout).unwrap();
        let id = runs[0]["id"].as_str().unwrap().to_string();
        let resumed = imsflow_cli(
            Some(&site.sys.data.path().join("imsflow.toml")),
            // A kill before the gate leaves it unapproved: resume asks again.
            &["resume", &id, "--yes"],
            &[("IMSFLOW_STATE_DIR", state.to_str().unwrap())],
        );
        assert_eq!(
            resumed.code, 0,
            "{point}: {}\n{}",
            resumed.stdout, resumed.stderr
        );
        let after = site.ims().await;
        assert_eq!(live(&after), live(&before), "{point}");
        for table in [
            "v3/deleted/images",
            "v3/deleted/recipes",
            "v3/deleted/public-keys",
            "v3/jobs",
        ] {
            assert!(after[table].is_empty(), "{point}: {table}");
        }
        assert_objects_back(&objects, &site.s3().await, point);
    }
}

/// The site's export, copied into `dir` so that it outlives the site: sites
/// seeded alike hold the same records and objects, so the later ones import it
/// instead of paying for an export of their own.
fn keep_export(site: &Site, dir: &Path) -> PathBuf {
    let made = site.export();
    let kept = dir.join(made.file_name().unwrap());
    std::fs::copy(&made, &kept).unwrap();
    kept
}

/// The images IMS serves that it did not serve before.
fn new_images(now: &ImsState, before: &ImsState) -> Vec<Value> {
    now["v3/images"]
        .iter()
        .filter(|(id, _)| !before["v3/images"].contains_key(*id))
        .map(|(_, r)| r.clone())
        .collect()
}

/// imsflow runs against the site with a state directory of their own, so
/// that `runs list` and `resume` see only them.
struct Runs<'a> {
    site: &'a Site,
    env: Vec<(String, String)>,
}

impl Runs<'_> {
    fn new<'a>(site: &'a Site, extra_env: &[(&str, &str)]) -> Runs<'a> {
        let state = site.dir("state");
        let mut env = vec![("IMSFLOW_STATE_DIR".to_string(), state.display().to_string())];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Runs { site, env }
    }

    fn cli(&self, args: &[&str]) -> CliRun {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let config = self.site.sys.data.path().join("imsflow.toml");
        imsflow_cli(Some(&config), args, &env)
    }

    /// `imsflow import MODE --yes -f ARCHIVE -b BACKUP`.
    fn import(&self, mode: &str, archive: &Path) -> CliRun {
        let backup = self.site.dir("backup");
        let (archive, backup) = (archive.to_str().unwrap(), backup.to_str().unwrap());
        self.cli(&["import", mode, "--yes", "-f", archive, "-b", backup])
    }

    /// The id of the run that `imsflow runs list` lists first.
    fn last(&self) -> String {
        let listed = self.cli(&["--json", "runs", "list"]);
        let runs: Value = serde_json::from_str(&listed.stdout).unwrap();
        runs[0]["id"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imss_race_is_detected_and_resume_keeps_the_image_created_in_the_window() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let image = before["v3/images"].keys().next().unwrap().clone();
    site.delete(&format!("v3/images/{image}")).await;
    let runs = Runs::new(&site, &[]);
    // While the rollout starts, IMS accepts a new image (201) and so writes
    // its memory over the new data files.
    site.sys.knobs(|k| {
        k.race_on_rollout = true;
        k.race_creates_image = true;
    });
    let raced = runs.import("update", &archive);
    assert_eq!(raced.code, 1, "{}\n{}", raced.stdout, raced.stderr);
    let run = runs.last();
    // Said once: what happened, that nothing was lost, the one command.
    assert_eq!(
        raced.stderr.matches("known race").count(),
        1,
        "{}",
        raced.stderr
    );
    assert!(
        raced.stderr.contains("Nothing was lost")
            && raced
                .stderr
                .contains(&format!("To finish the import: imsflow resume {run}"))
            && !raced.stderr.contains("Fix the cause")
            && !raced.stderr.contains("To continue"),
        "{}",
        raced.stderr
    );
    let raced_state = site.ims().await;
    assert_ne!(
        live(&raced_state),
        live(&before),
        "the race lost the import"
    );
    let created = new_images(&raced_state, &before);
    assert_eq!(created.len(), 1, "the image created in the window");
    assert_eq!(created[0]["name"], "created-in-race-window");
    site.sys.knobs(|k| {
        k.race_on_rollout = false;
        k.race_creates_image = false;
    });
    let resumed = runs.cli(&["resume", &run]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert!(
        resumed
            .stdout
            .contains("kept 1 image(s) that IMS accepted after planning")
            && resumed.stdout.contains(created[0]["id"].as_str().unwrap()),
        "{}",
        resumed.stdout
    );
    // `update` never removes a record: the exported ones are back, and the
    // one IMS accepted in the window is still there.
    let after = site.ims().await;
    assert_eq!(new_images(&after, &before), created);
    // The finished run is checked against the world, kept image included.
    let again = runs.cli(&["resume", &run]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let mut without = live(&after);
    without
        .get_mut("v3/images")
        .unwrap()
        .remove(created[0]["id"].as_str().unwrap());
    assert_eq!(without, live(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_race_an_overwrite_asks_before_it_drops_a_record_created_in_the_window() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let runs = Runs::new(&site, &[]);
    site.sys.knobs(|k| {
        k.race_on_rollout = true;
        k.race_creates_image = true;
    });
    let raced = runs.import("overwrite", &archive);
    assert_eq!(raced.code, 1, "{}\n{}", raced.stdout, raced.stderr);
    let created = new_images(&site.ims().await, &before);
    assert_eq!(created.len(), 1, "the image created in the window");
    let created_id = created[0]["id"].as_str().unwrap();
    site.sys.knobs(|k| {
        k.race_on_rollout = false;
        k.race_creates_image = false;
    });
    let run = runs.last();
    // Without approval it stops before the write, naming the record.
    let asked = runs.cli(&["resume", &run]);
    assert_eq!(asked.code, 2, "{}\n{}", asked.stdout, asked.stderr);
    assert!(
        asked.stdout.contains(created_id)
            && asked.stdout.contains("created-in-race-window")
            && asked.stdout.contains("drops them")
            && asked.stdout.contains("Stopped at gate `drop-new-records-"),
        "{}",
        asked.stdout
    );
    assert_eq!(
        new_images(&site.ims().await, &before),
        created,
        "nothing is written before the approval"
    );
    let approved = runs.cli(&["resume", &run, "--yes"]);
    assert_eq!(approved.code, 0, "{}\n{}", approved.stdout, approved.stderr);
    assert_eq!(live(&site.ims().await), live(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_never_completes_says_what_ims_serves_and_how_to_finish() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let image = before["v3/images"].keys().next().unwrap().clone();
    site.delete(&format!("v3/images/{image}")).await;
    let runs = Runs::new(&site, &[("IMSFLOW_ROLLOUT_TIMEOUT", "3")]);
    site.sys.knobs(|k| k.rollout_never_ready = true);
    let stuck = runs.import("update", &archive);
    assert_eq!(stuck.code, 1, "{}\n{}", stuck.stdout, stuck.stderr);
    let run = runs.last();
    assert!(
        stuck
            .stderr
            .contains("did not finish its rollout within 3s")
            && stuck.stderr.contains("empty or partial set of records")
            && stuck.stderr.contains("Fix the cluster")
            && stuck.stderr.contains(&format!("imsflow resume {run}")),
        "{}",
        stuck.stderr
    );
    site.sys.knobs(|k| k.rollout_never_ready = false);
    site.sys.wait_rollout_done().await;
    let resumed = runs.cli(&["resume", &run, "--yes"]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(live(&site.ims().await), live(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_preflight_lists_every_problem_and_changes_nothing() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let objects = site.s3().await;
    site.sys.knobs(|k| k.exec_forbidden = true);
    let backup = site.dir("backup");
    let run = site.import("overwrite", &archive, &["--yes"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("preflight failed; nothing was changed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("403") || run.stderr.contains("orbidden"),
        "names the refused exec: {}",
        run.stderr
    );
    assert_eq!(site.ims().await, before);
    assert_eq!(site.s3().await, objects);
    assert!(
        dir_entries(&backup).is_empty(),
        "no backup was even started"
    );
    // A missing backup directory and a non-tar file are listed together.
    let bad = site.cli(&[
        "import",
        "add",
        "-f",
        "/nonexistent/x.tgz",
        "-b",
        "/nonexistent/dir",
    ]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("the archive must be a .tar file")
            && bad.stderr.contains("the backup directory is not writable"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_object_under_an_exported_key_is_a_conflict_reported_and_kept() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let before = site.ims().await;
    let image = before["v3/images"].values().next().unwrap().clone();
    let id = image["id"].as_str().unwrap();
    let objects = site.s3().await;
    // An artifact of the image, other than its manifest, replaced by other bytes.
    let key = objects
        .keys()
        .find(|k| k.starts_with(&format!("boot-images/{id}/")) && !k.ends_with("manifest.json"))
        .unwrap()
        .clone();
    let s3 = csm_sim::s3::S3::new(&site.sys.s3);
    let (bucket, object) = key.split_once('/').unwrap();
    s3.client()
        .put_object()
        .bucket(bucket)
        .key(object)
        .body(b"changed since the export".to_vec().into())
        .send()
        .await
        .unwrap();
    let changed = site.s3().await[&key].clone();
    site.delete(&format!("v2/images/{id}?cascade=False")).await;
    let dry = site.import("update", &archive, &["--dry-run"]);
    assert_eq!(dry.code, 2, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("1 in conflict")
            && dry
                .stdout
                .lines()
                .any(|l| l.trim_start().starts_with("conflict") && l.contains(object)),
        "{}",
        dry.stdout
    );
    let run = site.import("update", &archive, &["--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        site.s3().await[&key],
        changed,
        "the conflicting object is never overwritten"
    );
    assert_eq!(
        live(&site.ims().await),
        live(&before),
        "the record is imported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow tier (IMSFLOW_SLOW_TESTS=1): four imports run twice; `update_after_a_mistake…` reruns one in the default tier"]
async fn every_mode_run_twice_converges_to_the_state_of_its_first_run() {
    let exported = tempfile::tempdir().unwrap();
    let mut shared: Option<PathBuf> = None;
    for mode in ["add", "update", "overwrite", "soft_overwrite"] {
        let site = Site::start(no_running_jobs()).await;
        let archive = shared
            .get_or_insert_with(|| keep_export(&site, exported.path()))
            .clone();
        let before = site.ims().await;
        let image = before["v3/images"].keys().next().unwrap().clone();
        site.delete(&format!("v3/images/{image}")).await;
        let first = site.import(mode, &archive, &["--yes"]);
        assert_eq!(first.code, 0, "{mode}: {}\n{}", first.stdout, first.stderr);
        let (ims, objects) = (site.ims().await, site.s3().await);
        assert_eq!(live(&ims), live(&before), "{mode}: the image is back");
        let second = site.import(mode, &archive, &["--yes"]);
        assert_eq!(
            second.code, 0,
            "{mode}: {}\n{}",
            second.stdout, second.stderr
        );
        assert_eq!(site.ims().await, ims, "{mode}: IMS after a re-run");
        assert_eq!(site.s3().await, objects, "{mode}: S3 after a re-run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_only_directory_export_imports_its_records() {
    let site = Site::start(no_running_jobs()).await;
    let out = site.dir("records-only");
    let run = site.cli(&[
        "export",
        out.to_str().unwrap(),
        "--exclude-linked-artifacts",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dir = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Data saved in directory: "))
        .expect("a directory export")
        .to_string();
    let before = site.ims().await;
    let recipe = before["v3/recipes"].keys().next().unwrap().clone();
    site.delete(&format!("v2/recipes/{recipe}?cascade=False"))
        .await;
    let backup = site.dir("backup");
    let imported = site.cli(&[
        "import",
        "add",
        "--yes",
        "-d",
        &dir,
        "-b",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(imported.code, 0, "{}\n{}", imported.stdout, imported.stderr);
    assert_eq!(
        live(&site.ims().await),
        live(&before),
        "the recipe is back under its id"
    );
}

/// The pod and rights preflight is read-only, so a dry run makes it too: with
/// exec, then the deployment's patch, forbidden, the dry run fails with the
/// very message of the real run, and neither changes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_checks_the_pod_and_the_rights_the_real_run_needs() {
    let site = Site::start(no_running_jobs()).await;
    let archive = site.export();
    let image = site.ims().await["v3/images"].keys().next().unwrap().clone();
    site.delete(&format!("v3/images/{image}")).await;
    let (before, objects) = (site.ims().await, site.s3().await);
    let forbidden = |run: &CliRun| -> Vec<String> {
        run.stderr
            .lines()
            .filter(|l| l.contains("forbidden"))
            .map(String::from)
            .collect()
    };
    for (knob, says) in [
        ("exec", "exec into pod services/"),
        (
            "patch",
            "patching deployment services/cray-ims is forbidden",
        ),
    ] {
        site.sys.knobs(|k| {
            k.exec_forbidden = knob == "exec";
            k.patch_forbidden = knob == "patch";
        });
        let dry = site.import("update", &archive, &["--dry-run"]);
        let real = site.import("update", &archive, &["--yes"]);
        for run in [&dry, &real] {
            assert_eq!(run.code, 1, "{knob}: {}\n{}", run.stdout, run.stderr);
            assert!(
                run.stderr.contains("preflight failed; nothing was changed")
                    && run.stderr.contains(says),
                "{knob}: {}",
                run.stderr
            );
        }
        assert_eq!(forbidden(&dry), forbidden(&real), "{knob}");
        assert_eq!(site.ims().await, before, "{knob}");
        assert_eq!(site.s3().await, objects, "{knob}");
        assert!(dir_entries(&site.dir("backup")).is_empty(), "{knob}");
    }
}
