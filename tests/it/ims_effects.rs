//! The IMS API executors against csm-sim on real Ceph: soft, hard (cascade)
//! and purge deletes and job deletes, each with its `check` (gone already)
//! and its `precheck` (the record changed: stale), and the `ims-empty`
//! assertion.
use crate::support::*;
use csm_sim::testing::{System, small_spec};
use serde_json::Value;

const WORKFLOW: &str = r#"
version = 1
name = "deletes"
description = "IMS deletes"

[[steps]]
id = "del"
plugin = "@PLUGINS@/deleter.wasm"
with = { deletes = @DELETES@@ASSERT@ }
grants = { services = ["ims"], effects = ["ims-delete", "assert"] }
"#;

struct Ims {
    sys: System,
    http: reqwest::Client,
    token: String,
}

impl Ims {
    async fn start() -> Ims {
        let sys = System::start(&small_spec()).await;
        let http = csm_sim::testing::http_client();
        let token = sys.token(&http).await;
        Ims { sys, http, token }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.sys.url(&format!("/apis/ims/{path}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn ids(&self, path: &str) -> Vec<String> {
        let (_, list) = self.get(path).await;
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }

    async fn object_exists(&self, bucket: &str, key: &str) -> bool {
        let s3 = csm_sim::s3::S3::new(&self.sys.s3);
        s3.client()
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }

    /// Plans the deletes into `plan.json` in `scratch`.
    fn plan(
        &self,
        scratch: &Scratch,
        deletes: &[(&str, &str, &str)],
        assert: Option<(bool, bool, bool)>,
    ) -> std::path::PathBuf {
        let deletes = serde_json::to_string(deletes).unwrap();
        let assert = assert.map_or(String::new(), |a| {
            format!(", assert_empty = {}", serde_json::to_string(&a).unwrap())
        });
        let text = WORKFLOW
            .replace("@DELETES@", &deletes)
            .replace("@ASSERT@", &assert);
        scratch.workflow(&text);
        let plan = scratch.path().join("plan.json");
        let out = self.cli(&[
            "plan",
            scratch.path().join("wf.toml").to_str().unwrap(),
            "-o",
            plan.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        plan
    }

    fn cli(&self, args: &[&str]) -> CliRun {
        imsflow_cli(Some(&self.sys.data.path().join("imsflow.toml")), args, &[])
    }
}

fn image_with_artifacts(ims: &Ims) -> (String, String) {
    let id = ims.sys.expected.ims["images"]
        .iter()
        .next()
        .unwrap()
        .clone();
    (id.clone(), format!("{id}/manifest.json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_hard_and_purge_deletes_reach_ims_and_a_second_apply_finds_them_done() {
    let ims = Ims::start().await;
    let images: Vec<String> = ims.sys.expected.ims["images"].iter().cloned().collect();
    let recipe = ims.sys.expected.ims["recipes"]
        .iter()
        .next()
        .unwrap()
        .clone();
    let key = ims.sys.expected.ims["public_keys"]
        .iter()
        .next()
        .unwrap()
        .clone();
    let deleted_image = ims.sys.expected.deleted["images"]
        .iter()
        .next()
        .unwrap()
        .clone();
    let job = ims
        .sys
        .expected
        .jobs
        .keys()
        .find(|j| !ims.sys.expected.running_jobs.contains(*j))
        .unwrap()
        .clone();
    let (soft, soft_manifest) = (images[0].clone(), format!("{}/manifest.json", images[0]));
    let (hard, hard_manifest) = (images[1].clone(), format!("{}/manifest.json", images[1]));
    assert!(ims.object_exists("boot-images", &soft_manifest).await);
    assert!(ims.object_exists("boot-images", &hard_manifest).await);
    let scratch = Scratch::new();
    let plan = ims.plan(
        &scratch,
        &[
            ("image", &soft, "soft"),
            ("image", &hard, "hard-cascade"),
            ("recipe", &recipe, "hard"),
            ("public-key", &key, "soft"),
            ("image", &deleted_image, "purge"),
            ("job", &job, "soft"),
        ],
        None,
    );
    let shown = ims.cli(&["show", plan.to_str().unwrap()]);
    assert!(shown.stdout.contains(&hard), "{}", shown.stdout);
    let applied = ims.cli(&["apply", plan.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);

    // Soft: the record moved to the deleted store, its artifacts under deleted/.
    assert_eq!(ims.get(&format!("v3/images/{soft}")).await.0, 404);
    assert_eq!(ims.get(&format!("v3/deleted/images/{soft}")).await.0, 200);
    assert!(!ims.object_exists("boot-images", &soft_manifest).await);
    assert!(
        ims.object_exists("boot-images", &format!("deleted/{soft_manifest}"))
            .await
    );
    // Hard with cascade: the record and its artifacts are gone, not kept as deleted.
    assert_eq!(ims.get(&format!("v3/images/{hard}")).await.0, 404);
    assert_eq!(ims.get(&format!("v3/deleted/images/{hard}")).await.0, 404);
    assert!(!ims.object_exists("boot-images", &hard_manifest).await);
    // Hard without cascade, soft of a key, purge, job.
    assert_eq!(ims.get(&format!("v3/recipes/{recipe}")).await.0, 404);
    assert_eq!(
        ims.get(&format!("v3/deleted/recipes/{recipe}")).await.0,
        404
    );
    assert_eq!(
        ims.get(&format!("v3/deleted/public-keys/{key}")).await.0,
        200
    );
    assert_eq!(
        ims.get(&format!("v3/deleted/images/{deleted_image}"))
            .await
            .0,
        404
    );
    assert_eq!(ims.get(&format!("v3/jobs/{job}")).await.0, 404);
    let journal = std::fs::read_to_string(imsflow::journal::path_for(&plan)).unwrap();
    assert_eq!(
        journal.matches(r#""http_status":204"#).count(),
        6,
        "{journal}"
    );

    // check: applied again (without its journal), every delete is found done.
    std::fs::remove_file(imsflow::journal::path_for(&plan)).unwrap();
    let again = ims.cli(&["apply", plan.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("applied 0 effect(s); 6 already done"),
        "{}",
        again.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_changed_since_planning_makes_its_delete_stale_and_nothing_is_deleted() {
    let ims = Ims::start().await;
    let (first, _) = image_with_artifacts(&ims);
    let second = ims.sys.expected.ims["images"]
        .iter()
        .nth(1)
        .unwrap()
        .clone();
    let scratch = Scratch::new();
    let plan = ims.plan(
        &scratch,
        &[("image", &second, "soft"), ("image", &first, "soft")],
        None,
    );
    let r = ims
        .http
        .patch(ims.sys.url(&format!("/apis/ims/v3/images/{first}")))
        .bearer_auth(&ims.token)
        .json(&serde_json::json!({ "arch": "aarch64" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let applied = ims.cli(&["apply", plan.to_str().unwrap()]);
    assert_eq!(applied.code, 1, "{}", applied.stdout);
    assert!(
        applied.stderr.contains("nothing was applied")
            && applied.stderr.contains(&format!(
                "stale: effect del.1: ims/v3/images/{first} changed since planning"
            )),
        "{}",
        applied.stderr
    );
    assert_eq!(
        ims.get(&format!("v3/images/{second}")).await.0,
        200,
        "the other delete did not run either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ims_empty_assertion_passes_on_an_empty_ims_and_stops_the_apply_otherwise() {
    let ims = Ims::start().await;
    let expected = &ims.sys.expected;
    let mut deletes: Vec<(String, String, String)> = Vec::new();
    for (kind, plural) in [
        ("image", "images"),
        ("recipe", "recipes"),
        ("public-key", "public_keys"),
    ] {
        for id in &expected.ims[plural] {
            deletes.push((kind.into(), id.clone(), "hard".into()));
        }
    }
    let refs: Vec<(&str, &str, &str)> = deletes
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    // Live records and jobs gone is asked; jobs remain: the assertion fails, naming them.
    let scratch = Scratch::new();
    let plan = ims.plan(&scratch, &refs, Some((true, false, true)));
    let failed = ims.cli(&["apply", plan.to_str().unwrap()]);
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    let jobs = expected.jobs.len();
    assert!(
        failed.stderr.contains(&format!(
            "IMS is not empty after the deletes: {jobs} jobs ("
        )),
        "{}",
        failed.stderr
    );
    assert!(
        ims.ids("v3/images").await.is_empty(),
        "the deletes before it ran"
    );
    // Only live records asked: it holds.
    let scratch = Scratch::new();
    let plan = ims.plan(&scratch, &[], Some((true, false, false)));
    let held = ims.cli(&["apply", plan.to_str().unwrap()]);
    assert_eq!(held.code, 0, "{}", held.stderr);
}

#[test]
fn a_delete_of_an_id_that_could_change_the_request_path_is_refused() {
    use imsflow::plan::effect::{DeleteMode, Effect, ImsKind};
    for id in ["../recipes/x", "a/b", "x?cascade=True", ".hidden", ""] {
        let effect = Effect::ImsDelete {
            ims_kind: ImsKind::Image,
            id: id.into(),
            name: String::new(),
            delete: DeleteMode::Soft,
            fingerprint: "sha256:00".into(),
        };
        let plan = crate::plan_show::plan(vec![("restore", effect)]);
        let problems = imsflow::plan::check::check(&plan);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("which is not a record id")),
            "{id:?}: {problems:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_from_the_gateway_is_retried_and_a_lasting_one_stops_the_apply_saying_so() {
    let ims = Ims::start().await;
    let images: Vec<String> = ims.sys.expected.ims["images"].iter().cloned().collect();
    // Two 503s, then IMS answers: the delete goes through.
    let scratch = Scratch::new();
    let plan = ims.plan(&scratch, &[("image", &images[0], "soft")], None);
    ims.sys.knobs(|k| k.ims_unavailable = 2);
    let applied = ims.cli(&["apply", plan.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    assert!(
        applied.stderr.contains("HTTP 503"),
        "the retries are logged: {}",
        applied.stderr
    );
    assert_eq!(ims.get(&format!("v3/images/{}", images[0])).await.0, 404);
    // IMS stays unavailable: the apply stops, naming the request and the tries.
    let scratch = Scratch::new();
    let plan = ims.plan(&scratch, &[("image", &images[1], "soft")], None);
    ims.sys.knobs(|k| k.ims_unavailable = 100);
    let failed = ims.cli(&["apply", plan.to_str().unwrap()]);
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(
        failed
            .stderr
            .contains(&format!("DELETE ims/v3/images/{}: HTTP 503", images[1]))
            && failed.stderr.contains("(after 4 tries)"),
        "{}",
        failed.stderr
    );
    ims.sys.knobs(|k| k.ims_unavailable = 0);
    assert_eq!(
        ims.get(&format!("v3/images/{}", images[1])).await.0,
        200,
        "not deleted"
    );
}
