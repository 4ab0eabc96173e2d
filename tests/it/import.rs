//! `imsflow import` on csm-sim and real Ceph: export, damage the system,
//! import, and compare IMS and S3 with what they held at export time (read
//! independently here through the API and S3, never from imsflow's plan).
use crate::support::*;
use csm_sim::seed::SeedSpec;
use csm_sim::testing::{System, small_spec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

struct Site {
    sys: System,
    http: reqwest::Client,
    token: String,
    scratch: Scratch,
}

/// IMS as its API serves it: each table, records by id.
type ImsState = BTreeMap<&'static str, BTreeMap<String, Value>>;
/// Every object of the IMS buckets: key -> ETag.
type S3State = BTreeMap<String, String>;

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
    async fn start(spec: SeedSpec) -> Site {
        let sys = System::start(&spec).await;
        let http = reqwest::Client::new();
        let token = sys.token(&http).await;
        Site {
            sys,
            http,
            token,
            scratch: Scratch::new(),
        }
    }

    fn cli(&self, args: &[&str]) -> CliRun {
        imsflow_cli(Some(&self.sys.data.path().join("imsflow.toml")), args, &[])
    }

    fn dir(&self, name: &str) -> PathBuf {
        let d = self.scratch.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `imsflow export` into a fresh directory; the tar's path.
    fn export(&self) -> PathBuf {
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

    async fn ims(&self) -> ImsState {
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

    async fn s3(&self) -> S3State {
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

    fn import(&self, mode: &str, archive: &Path, extra: &[&str]) -> CliRun {
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
        self.cli(&args)
    }
}

fn live(state: &ImsState) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    state
        .iter()
        .filter(|(t, _)| !t.contains("deleted") && !t.ends_with("jobs"))
        .map(|(t, r)| (*t, r.clone()))
        .collect()
}

fn no_running_jobs() -> SeedSpec {
    SeedSpec {
        running_jobs: 0,
        ..small_spec()
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
    assert_eq!(
        site.call(
            reqwest::Method::DELETE,
            &format!("v2/images/{}?cascade=True", images[0])
        )
        .await,
        204
    );
    assert_eq!(
        site.call(reqwest::Method::DELETE, &format!("v3/images/{}", images[1]))
            .await,
        204
    );
    assert_eq!(
        site.call(reqwest::Method::DELETE, &format!("v3/recipes/{recipe}"))
            .await,
        204
    );
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
    let now = site.s3().await;
    for (key, etag) in objects.iter().filter(|(k, _)| !k.contains("/deleted/")) {
        assert_eq!(now.get(key), Some(etag), "{key}");
    }
}
