//! Contract tests: the simulator against the CSM services as the real ones
//! behave (for IMS, docs/real-ims.md), on a real Ceph RGW (one tenant per
//! test).
use csm_sim::s3::S3;
use csm_sim::testing::{System, small_spec};
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    token: String,
    sys: System,
    s3: S3,
}

impl Client {
    async fn new() -> Client {
        let sys = System::start(&small_spec()).await;
        let http = csm_sim::testing::http_client();
        let token = sys.token(&http).await;
        let s3 = S3::new(&sys.s3);
        Client {
            http,
            token,
            sys,
            s3,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.sys.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            },
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }
    /// A request with the body as given and no `Content-Type` unless `mime`.
    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        mime: Option<&str>,
        body: &'static str,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, self.sys.url(path))
            .bearer_auth(&self.token)
            .body(body);
        if let Some(m) = mime {
            req = req.header("content-type", m);
        }
        req.send().await.unwrap()
    }

    async fn delete(&self, path: &str) -> u16 {
        self.call(reqwest::Method::DELETE, path, None).await.0
    }

    async fn exists(&self, url: &str) -> bool {
        let (b, k) = csm_sim::s3::parse_url(url).unwrap();
        self.s3.head(b, k).await.unwrap().is_some()
    }

    fn a_live_image(&self) -> String {
        self.sys.expected.ims["images"]
            .iter()
            .next()
            .unwrap()
            .clone()
    }
}

fn ids(list: &Value) -> std::collections::BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apis_need_a_keycloak_token() {
    let c = Client::new().await;
    let resp = c
        .http
        .get(c.sys.url("/apis/ims/v3/images"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = c
        .http
        .get(c.sys.url("/apis/ims/v3/images"))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let bad = c
        .http
        .post(
            c.sys
                .url("/keycloak/realms/shasta/protocol/openid-connect/token"),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "admin-client"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(c.get("/apis/ims/v3/images").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_answers_match_what_the_apis_serve() {
    let c = Client::new().await;
    let e = &c.sys.expected;
    for (path, kind) in [
        ("images", "images"),
        ("recipes", "recipes"),
        ("public-keys", "public_keys"),
    ] {
        for prefix in ["/apis/ims/v3/", "/apis/ims/v2/", "/apis/ims/"] {
            let (status, list) = c.get(&format!("{prefix}{path}")).await;
            assert_eq!(status, 200);
            assert_eq!(ids(&list), e.ims[kind], "{prefix}{path}");
        }
        let (_, deleted) = c.get(&format!("/apis/ims/v3/deleted/{path}")).await;
        assert_eq!(ids(&deleted), e.deleted[kind], "deleted {path}");
    }
    let (_, jobs) = c.get("/apis/ims/v3/jobs").await;
    let served: std::collections::BTreeMap<String, String> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_str().unwrap().into(),
                j["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(served, e.jobs);
    assert!(!e.running_jobs.is_empty());
    // Every expected object exists with the expected etag; some are multipart.
    for (url, facts) in &e.objects {
        let (b, k) = csm_sim::s3::parse_url(url).unwrap();
        let head =
            c.s3.head(b, k)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{url} missing"));
        assert_eq!(
            (head.size, head.etag.as_str()),
            (facts.size, facts.etag.as_str()),
            "{url}"
        );
    }
    assert!(
        e.objects.values().any(|f| f.etag.ends_with("-2")),
        "a multipart object is seeded"
    );
    // Every live image's manifest and artifacts exist; dangling links do not.
    let (_, images) = c.get("/apis/ims/v3/images").await;
    for image in images.as_array().unwrap() {
        assert!(c.exists(image["link"]["path"].as_str().unwrap()).await);
    }
    for url in &e.dangling {
        assert!(!c.exists(url).await, "{url} should dangle");
    }
    // Link sources hold what the seeder says they yield.
    let (_, templates) = c.get("/apis/bos/v2/sessiontemplates").await;
    let text = templates.to_string();
    for url in &e.links["bos"] {
        assert!(text.contains(url.as_str()), "BOS lacks {url}");
    }
    let (_, bss) = c.get("/apis/bss/boot/v1/bootparameters").await;
    let text = bss.to_string();
    for url in &e.links["bss"] {
        assert!(text.contains(url.as_str()), "BSS lacks {url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ims_status_codes_and_problem_bodies() {
    let c = Client::new().await;
    let (status, body) = c
        .get("/apis/ims/v3/images/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");

    let (status, body) = c
        .post(
            "/apis/ims/v3/public-keys",
            json!({ "id": "x", "created": "y", "name": "k", "public_key": "ssh-ed25519 AAA" }),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"]["id"], json!(["Unknown field."]));
    assert_eq!(body["errors"]["created"], json!(["Unknown field."]));

    let (status, body) = c
        .post(
            "/apis/ims/v3/recipes",
            json!({ "name": "r", "recipe_type": "kiwi-ng", "linux_distribution": "rhel9" }),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["errors"]["linux_distribution"]
            .to_string()
            .contains("Must be one of")
    );

    let empty = c
        .http
        .post(c.sys.url("/apis/ims/v3/images"))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 415, "no JSON content type");

    let (status, key) = c
        .post(
            "/apis/ims/v3/public-keys",
            json!({ "name": "k", "public_key": "ssh-ed25519 AAA" }),
        )
        .await;
    assert_eq!(status, 201);
    assert!(key["id"].as_str().unwrap().len() == 36 && key["created"].is_string());

    // Recipe links must exist.
    let (status, _) = c
        .post(
            "/apis/ims/v3/recipes",
            json!({ "name": "r", "recipe_type": "kiwi-ng", "linux_distribution": "sles15",
            "link": { "type": "s3", "path": "s3://ims/recipes/nope/recipe.tar.gz" } }),
        )
        .await;
    assert_eq!(status, 422);

    // Image links: a used link is refused; a manifest without exactly one rootfs is a 400.
    let image = c.a_live_image();
    let (_, record) = c.get(&format!("/apis/ims/v3/images/{image}")).await;
    let link = record["link"].clone();
    let (status, _) = c
        .post(
            "/apis/ims/v3/images",
            json!({ "name": "dup", "link": link }),
        )
        .await;
    assert_eq!(status, 422, "a link path is unique among live images");
    c.s3.put(
        "boot-images",
        "hand/manifest.json",
        serde_json::to_vec(&json!({ "version": "1.0", "artifacts": [] })).unwrap(),
    )
    .await
    .unwrap();
    let (status, _) = c.post("/apis/ims/v3/images", json!({ "name": "n", "link": { "type": "s3", "path": "s3://boot-images/hand/manifest.json" } })).await;
    assert_eq!(status, 400);
    c.s3.put(
        "boot-images",
        "hand2/manifest.json",
        serde_json::to_vec(&json!({ "version": "2.0", "artifacts": [] })).unwrap(),
    )
    .await
    .unwrap();
    let (status, _) = c.post("/apis/ims/v3/images", json!({ "name": "n", "link": { "type": "s3", "path": "s3://boot-images/hand2/manifest.json" } })).await;
    assert_eq!(status, 422);

    // A set link: the same again is a no-op, a different one is a 409.
    let (status, _) = c
        .patch(
            &format!("/apis/ims/v3/images/{image}"),
            json!({ "link": link }),
        )
        .await;
    assert_eq!(status, 200);
    let other = json!({ "type": "s3", "path": "s3://boot-images/hand/manifest.json" });
    let (status, body) = c
        .patch(
            &format!("/apis/ims/v3/images/{image}"),
            json!({ "link": other }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = c
        .patch(
            &format!("/apis/ims/v3/images/{image}"),
            json!({ "name": "renamed" }),
        )
        .await;
    assert_eq!(status, 422, "name is immutable");

    // Jobs: list and delete.
    let job = c.sys.expected.jobs.keys().next().unwrap().clone();
    assert_eq!(c.delete(&format!("/apis/ims/v3/jobs/{job}")).await, 204);
    assert_eq!(c.delete(&format!("/apis/ims/v3/jobs/{job}")).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_undelete_and_purge_move_the_s3_objects() {
    let c = Client::new().await;
    let image = c.a_live_image();
    let (_, before) = c.get(&format!("/apis/ims/v3/images/{image}")).await;
    let artifacts = ["manifest.json", "rootfs", "kernel", "initrd"];

    assert_eq!(c.delete(&format!("/apis/ims/v3/images/{image}")).await, 204);
    assert_eq!(c.get(&format!("/apis/ims/v3/images/{image}")).await.0, 404);
    let (status, deleted) = c.get(&format!("/apis/ims/v3/deleted/images/{image}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted["link"]["path"],
        format!("s3://boot-images/deleted/{image}/deleted_manifest.json")
    );
    assert_eq!(deleted["link"]["etag"], "");
    assert!(deleted["deleted"].is_string());
    for a in artifacts {
        assert!(
            !c.exists(&format!("s3://boot-images/{image}/{a}")).await,
            "{a} moved away"
        );
        assert!(
            c.exists(&format!("s3://boot-images/deleted/{image}/{a}"))
                .await,
            "{a} under deleted/"
        );
    }

    let (status, _) = c
        .patch(
            &format!("/apis/ims/v3/deleted/images/{image}"),
            json!({ "operation": "undelete" }),
        )
        .await;
    assert_eq!(status, 204);
    let (_, after) = c.get(&format!("/apis/ims/v3/images/{image}")).await;
    assert_eq!(
        after, before,
        "undelete restores the record, link and etag included"
    );
    for a in artifacts {
        assert!(
            c.exists(&format!("s3://boot-images/{image}/{a}")).await,
            "{a} restored"
        );
    }
    assert!(
        !c.exists(&format!(
            "s3://boot-images/deleted/{image}/deleted_manifest.json"
        ))
        .await
    );

    // Recipe: soft delete moves the archive under deleted/, purge removes it.
    let recipe = c.sys.expected.ims["recipes"].iter().next().unwrap().clone();
    let key = format!("s3://ims/recipes/{recipe}/recipe.tar.gz");
    assert_eq!(
        c.delete(&format!("/apis/ims/v3/recipes/{recipe}")).await,
        204
    );
    let moved = format!("s3://ims/deleted/recipes/{recipe}/recipe.tar.gz");
    assert!(!c.exists(&key).await && c.exists(&moved).await);
    assert_eq!(
        c.delete(&format!("/apis/ims/v3/deleted/recipes/{recipe}"))
            .await,
        204
    );
    assert!(!c.exists(&moved).await);
    assert_eq!(
        c.get(&format!("/apis/ims/v3/deleted/recipes/{recipe}"))
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_delete_cascades_unless_told_not_to() {
    let c = Client::new().await;
    let mut images = c.sys.expected.ims["images"].iter();
    let (first, second) = (
        images.next().unwrap().clone(),
        images.next().unwrap().clone(),
    );
    assert_eq!(
        c.delete(&format!("/apis/ims/v2/images/{first}?cascade=false"))
            .await,
        204
    );
    assert!(
        c.exists(&format!("s3://boot-images/{first}/rootfs")).await,
        "cascade=false keeps S3"
    );
    assert_eq!(
        c.delete(&format!("/apis/ims/images/{second}")).await,
        204,
        "un-versioned alias is v2"
    );
    for a in ["manifest.json", "rootfs", "kernel", "initrd"] {
        assert!(
            !c.exists(&format!("s3://boot-images/{second}/{a}")).await,
            "cascade removes {a}"
        );
    }
    assert_eq!(
        c.get(&format!("/apis/ims/v3/deleted/images/{second}"))
            .await
            .0,
        404,
        "hard delete is not soft"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_catalog_main_and_split_configmaps() {
    let c = Client::new().await;
    let kubeconfig: Value = serde_yaml::from_str(
        &std::fs::read_to_string(c.sys.data.path().join("kubeconfig")).unwrap(),
    )
    .unwrap();
    let token = kubeconfig["users"][0]["user"]["token"].as_str().unwrap();
    let server = kubeconfig["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap();
    let get = |path: String| {
        c.http
            .get(format!("{server}{path}"))
            .bearer_auth(token)
            .send()
    };
    let list: Value = get(
        "/api/v1/namespaces/services/configmaps?labelSelector=type%3Dcray-product-catalog".into(),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["cray-product-catalog", "cray-product-catalog-cos"]
    );
    let main: Value = get("/api/v1/namespaces/services/configmaps/cray-product-catalog".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csm: Value = serde_yaml::from_str(main["data"]["csm"].as_str().unwrap()).unwrap();
    assert_eq!(
        csm["1.6.0"]["component_versions"]["s3"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let cos_main: Value = serde_yaml::from_str(main["data"]["cos"].as_str().unwrap()).unwrap();
    assert!(
        cos_main["2.5.0"].get("component_versions").is_none(),
        "split product keeps them elsewhere"
    );
    let split: Value =
        get("/api/v1/namespaces/services/configmaps/cray-product-catalog-cos".into())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let cos: Value = serde_yaml::from_str(split["data"]["cos"].as_str().unwrap()).unwrap();
    assert_eq!(
        cos["2.5.0"]["component_versions"]["s3"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let secret = get("/api/v1/namespaces/default/secrets/admin-client-auth".into())
        .await
        .unwrap();
    assert_eq!(secret.status(), 200);
    let missing = get("/api/v1/namespaces/services/configmaps/nope".into())
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let anonymous = c
        .http
        .get(format!(
            "{server}/api/v1/namespaces/default/secrets/admin-client-auth"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_hands_out_the_s3_credentials() {
    let c = Client::new().await;
    let (status, body) = c.call(reqwest::Method::PUT, "/apis/sts/token", None).await;
    assert_eq!(status, 201);
    assert_eq!(body["Credentials"]["EndpointURL"], c.sys.s3.endpoint);
    assert_eq!(body["Credentials"]["AccessKeyId"], c.sys.s3.access_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bos_templates_are_scoped_by_tenant() {
    let c = Client::new().await;
    let tenant_list = |tenant: &'static str| {
        c.http
            .get(c.sys.url("/apis/bos/v2/sessiontemplates"))
            .bearer_auth(&c.token)
            .header("Cray-Tenant-Name", tenant)
            .send()
    };
    let all = c.get("/apis/bos/v2/sessiontemplates").await.1;
    let blue: Value = tenant_list("vcluster-blue")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(all.as_array().unwrap().len() > blue.as_array().unwrap().len());
    assert!(
        blue.as_array()
            .unwrap()
            .iter()
            .all(|t| t["tenant"] == "vcluster-blue")
    );
    let body = json!({ "boot_sets": { "b": { "type": "s3", "path": "s3://boot-images/x/manifest.json", "node_list": ["x1"] } } });
    let bad = c
        .http
        .put(c.sys.url("/apis/bos/v2/sessiontemplates/t1"))
        .bearer_auth(&c.token)
        .header("Cray-Tenant-Name", "no-such-tenant")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let (status, stored) = c
        .call(
            reqwest::Method::PUT,
            "/apis/bos/v2/sessiontemplates/t1",
            Some(body),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored["name"], "t1");
    assert_eq!(c.delete("/apis/bos/v2/sessiontemplates/t1").await, 204);
    assert_eq!(c.get("/apis/bos/v2/sessiontemplates/t1").await.0, 404);
}

// Status codes of the real IMS (docs/real-ims.md#status-codes).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relinking_with_an_etag_added_is_a_conflict() {
    let c = Client::new().await;
    let (_, recipes) = c.get("/apis/ims/v3/recipes").await;
    let recipe = &recipes.as_array().unwrap()[0];
    let id = recipe["id"].as_str().unwrap();
    let mut link = recipe["link"].clone();
    let url = format!("/apis/ims/v3/recipes/{id}");
    let (status, _) = c.patch(&url, json!({ "link": link })).await;
    assert_eq!(status, 200, "the identical link is a no-op");
    link["etag"] = json!("0123456789abcdef0123456789abcdef");
    let (status, body) = c.patch(&url, json!({ "link": link })).await;
    assert_eq!(status, 409, "the whole link dict is compared: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_set_without_a_value_stores_an_empty_string() {
    let c = Client::new().await;
    let image = c.a_live_image();
    let url = format!("/apis/ims/v3/images/{image}");
    let (status, body) = c
        .patch(
            &url,
            json!({ "metadata": { "operation": "set", "key": "k" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadata"]["k"], "");
    let (status, _) = c
        .patch(
            &url,
            json!({ "metadata": { "operation": "set", "key": "k", "value": 1 } }),
        )
        .await;
    assert_eq!(status, 422, "a value that is given must be a string");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_dkms_takes_truthy_strings_and_stores_a_bool() {
    let c = Client::new().await;
    let (status, body) = c
        .post(
            "/apis/ims/v3/recipes",
            json!({ "name": "r", "recipe_type": "kiwi-ng", "linux_distribution": "sles15",
                    "require_dkms": "yes" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["require_dkms"], true);
    let id = body["id"].as_str().unwrap();
    let (status, body) = c
        .patch(
            &format!("/apis/ims/v3/recipes/{id}"),
            json!({ "require_dkms": "off" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["require_dkms"], false);
    let (status, _) = c
        .patch(
            &format!("/apis/ims/v3/recipes/{id}"),
            json!({ "require_dkms": "maybe" }),
        )
        .await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_a_json_content_type_are_415() {
    let c = Client::new().await;
    let post = reqwest::Method::POST;
    let resp = c.raw(post.clone(), "/apis/ims/v3/images", None, "").await;
    assert_eq!(resp.status(), 415, "empty body");
    let resp = c
        .raw(
            post.clone(),
            "/apis/ims/v3/images",
            Some("text/plain"),
            "name",
        )
        .await;
    assert_eq!(resp.status(), 415, "non-JSON body");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let image = c.a_live_image();
    let resp = c
        .raw(
            reqwest::Method::PATCH,
            &format!("/apis/ims/v3/images/{image}"),
            None,
            r#"{"arch": "x86_64"}"#,
        )
        .await;
    assert_eq!(resp.status(), 415, "PATCH too");
    let resp = c
        .raw(post, "/apis/ims/v3/images", Some("application/json"), "{")
        .await;
    assert_eq!(resp.status(), 400, "JSON content type, broken JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelete_with_an_empty_object_is_400() {
    let c = Client::new().await;
    let image = c.sys.expected.deleted["images"]
        .iter()
        .next()
        .unwrap()
        .clone();
    let (status, body) = c
        .patch(&format!("/apis/ims/v3/deleted/images/{image}"), json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("No input provided. "),
        "{body}"
    );
    let (status, _) = c.patch("/apis/ims/v3/deleted/images", json!({})).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_jobs_validates_the_artifact() {
    let c = Client::new().await;
    let key = c.sys.expected.ims["public_keys"]
        .iter()
        .next()
        .unwrap()
        .clone();
    let missing = "00000000-0000-4000-8000-000000000000";
    let (status, body) = c
        .post(
            "/apis/ims/v3/jobs",
            json!({ "job_type": "create", "artifact_id": missing, "public_key_id": key,
                    "image_root_archive_name": "x" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("No IMS recipe record found"),
        "{body}"
    );
    let (status, body) = c
        .post("/apis/ims/v3/jobs", json!({ "job_type": "build" }))
        .await;
    assert_eq!(status, 422, "{body}");
    let recipe = c.sys.expected.ims["recipes"].iter().next().unwrap().clone();
    let (status, job) = c
        .post(
            "/apis/ims/v3/jobs",
            json!({ "job_type": "create", "artifact_id": recipe, "public_key_id": key,
                    "image_root_archive_name": "x" }),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["status"], "creating");
}

// Error bodies, headers and routes of the real IMS.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problem_bodies_have_no_type_and_nest_nested_errors() {
    let c = Client::new().await;
    let (status, body) = c
        .get("/apis/ims/v3/images/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
    assert!(body.get("type").is_none(), "{body}");
    let (status, body) = c
        .post(
            "/apis/ims/v3/images",
            json!({ "name": "n", "metadata": { "a": 1 },
                    "link": { "type": "http", "path": "s3://boot-images/x/manifest.json" } }),
        )
        .await;
    assert_eq!(status, 422);
    assert!(body.get("type").is_none(), "{body}");
    assert_eq!(
        body["errors"]["metadata"],
        json!({ "a": { "value": ["Not a valid string."] } })
    );
    assert_eq!(
        body["errors"]["link"],
        json!({ "type": ["Type must be one of: s3."] })
    );
    // Link checks against S3 give only a detail.
    let (status, body) = c
        .post(
            "/apis/ims/v3/images",
            json!({ "name": "n", "link": { "type": "s3", "path": "s3://boot-images/none/manifest.json" } }),
        )
        .await;
    assert_eq!(status, 422);
    assert!(body.get("errors").is_none(), "{body}");
    assert!(body["detail"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_is_json_and_unknown_routes_are_problem_404s() {
    let c = Client::new().await;
    let job = c.sys.expected.jobs.keys().next().unwrap().clone();
    let resp = c
        .raw(
            reqwest::Method::DELETE,
            &format!("/apis/ims/v3/jobs/{job}"),
            None,
            "",
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["content-type"], "application/json");
    for path in [
        "/apis/ims/v3/nothing",
        "/apis/ims/v3/images/",
        "/apis/ims/v9",
    ] {
        let resp = c.raw(reqwest::Method::GET, path, None, "").await;
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_gets_fill_the_schema_defaults() {
    let c = Client::new().await;
    let expect = json!({
        "build_env_size": 60, "job_mem_size": 8, "enable_debug": false,
        "initrd_file_name": "initrd", "kernel_parameters_file_name": "kernel-parameters",
        "require_dkms": true, "remote_build_node": "", "kernel_file_name": null,
        "kubernetes_configmap": null, "kubernetes_pvc": null, "kubernetes_secret": null,
        "kubernetes_service": null, "resultant_image_id": null, "ssh_containers": null,
    });
    let (_, jobs) = c.get("/apis/ims/v3/jobs").await;
    let jobs = jobs.as_array().unwrap();
    assert!(!jobs.is_empty());
    for job in jobs {
        let id = job["id"].as_str().unwrap();
        let (_, one) = c.get(&format!("/apis/ims/v3/jobs/{id}")).await;
        assert_eq!(&one, job, "list and GET agree");
        for (field, value) in expect.as_object().unwrap() {
            assert_eq!(&job[field], value, "{id} {field}");
        }
    }
    // The data file keeps what was stored; the defaults are filled on output.
    let file = c.sys.data.path().join("ims/v2.4_jobs.json");
    let stored: Vec<Value> = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert!(stored.iter().all(|j| j.get("build_env_size").is_none()));
}

// Seed data as a real system has it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_objects_carry_the_uploaders_md5sum_metadata() {
    let c = Client::new().await;
    let mut checked = 0;
    for (url, facts) in &c.sys.expected.objects {
        let (b, k) = csm_sim::s3::parse_url(url).unwrap();
        let head = c.s3.head(b, k).await.unwrap().unwrap();
        assert_eq!(head.metadata, facts.metadata, "{url}: expected.json agrees");
        if k.ends_with("deleted_manifest.json") {
            // IMS writes it itself, without metadata.
            continue;
        }
        let md5 = facts
            .metadata
            .get("md5sum")
            .unwrap_or_else(|| panic!("{url} has no md5sum"));
        assert_eq!(md5.len(), 32, "{url}");
        if !facts.etag.contains('-') {
            assert_eq!(md5, &facts.etag, "{url}: single-part ETag is the MD5");
        }
        checked += 1;
    }
    assert!(checked > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velero_and_thanos_buckets_hold_objects_nothing_links_to() {
    let c = Client::new().await;
    let e = &c.sys.expected;
    assert_eq!(
        e.unused_buckets,
        ["thanos", "velero"].map(String::from).into()
    );
    let linked: Vec<&String> = e.links.values().flatten().collect();
    for bucket in &e.unused_buckets {
        let listed = c.s3.list(bucket, "").await.unwrap();
        assert!(listed.len() >= 2, "{bucket} has a few objects");
        for (key, size, etag) in listed {
            let url = format!("s3://{bucket}/{key}");
            let facts = &e.objects[&url];
            assert_eq!((size, &etag), (facts.size, &facts.etag), "{url}");
            assert!(!linked.contains(&&url), "{url} is linked");
        }
    }
    let (_, images) = c.get("/apis/ims/v3/images").await;
    let (_, recipes) = c.get("/apis/ims/v3/recipes").await;
    let text = format!("{images}{recipes}");
    for bucket in &e.unused_buckets {
        assert!(!text.contains(&format!("s3://{bucket}/")), "{bucket}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_seeds_put_different_bytes_under_the_same_well_known_keys() {
    let one = System::start(&small_spec()).await;
    let mut spec = small_spec();
    spec.seed += 1;
    let two = System::start(&spec).await;
    let mut shared = 0;
    for (url, facts) in &one.expected.objects {
        let Some(other) = two.expected.objects.get(url) else {
            continue; // keys with record ids differ anyway
        };
        assert_ne!(facts.sha256, other.sha256, "{url}");
        shared += 1;
    }
    // NCN boot files, product catalog artifacts, velero and thanos objects.
    assert!(shared >= 10, "only {shared} keys in common");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_session_tokens_are_non_empty_and_accepted_by_rgw() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let c = Client::new().await;
    let (status, body) = c.call(reqwest::Method::PUT, "/apis/sts/token", None).await;
    assert_eq!(status, 201);
    let creds = &body["Credentials"];
    let token = creds["SessionToken"].as_str().unwrap();
    assert!(!token.is_empty());
    let conf = aws_sdk_s3::Config::builder()
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(creds["EndpointURL"].as_str().unwrap())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            creds["AccessKeyId"].as_str().unwrap(),
            creds["SecretAccessKey"].as_str().unwrap(),
            Some(token.to_string()),
            None,
            "test",
        ))
        .force_path_style(true)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    let listed = s3
        .list_objects_v2()
        .bucket("boot-images")
        .send()
        .await
        .unwrap();
    assert!(listed.key_count().unwrap_or(0) > 0);
}

// Soft delete moves objects the way real IMS (boto3's managed copy) does.

/// Uploads an image like IMS tooling (md5sum metadata), rootfs of `rootfs_len`
/// bytes, and registers it; returns its id.
async fn upload_image(c: &Client, prefix: &str, rootfs_len: usize) -> String {
    use sha2::Digest;
    let mut artifacts = Vec::new();
    for (name, len, mime) in [
        (
            "rootfs",
            rootfs_len,
            "application/vnd.cray.image.rootfs.squashfs",
        ),
        ("kernel", 4096, "application/vnd.cray.image.kernel"),
    ] {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let md5 = hex::encode(md5::Md5::digest(&body));
        let meta = [("md5sum".to_string(), md5.clone())].into();
        let key = format!("{prefix}/{name}");
        let etag =
            c.s3.put_with_metadata("boot-images", &key, body, &meta)
                .await
                .unwrap();
        artifacts.push(json!({ "type": mime, "md5": md5,
            "link": { "path": format!("s3://boot-images/{key}"), "etag": etag, "type": "s3" } }));
    }
    let manifest =
        json!({ "version": "1.0", "created": "2024-05-14 12:00:00", "artifacts": artifacts });
    c.s3.put(
        "boot-images",
        &format!("{prefix}/manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await
    .unwrap();
    let (status, image) = c
        .post(
            "/apis/ims/v3/images",
            json!({ "name": prefix, "link": { "type": "s3", "path": format!("s3://boot-images/{prefix}/manifest.json") } }),
        )
        .await;
    assert_eq!(status, 201, "{image}");
    image["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_copies_large_objects_as_multipart_and_drops_their_metadata() {
    let c = Client::new().await;
    let big = (8 << 20) + 4096;
    let id = upload_image(&c, "big", big).await;
    let head = |key: String| {
        let s3 = &c.s3;
        async move { s3.head("boot-images", &key).await.unwrap().unwrap() }
    };
    let (rootfs, kernel) = (
        head("big/rootfs".into()).await,
        head("big/kernel".into()).await,
    );
    assert!(!rootfs.etag.contains('-') && rootfs.metadata.contains_key("md5sum"));

    let (status, body) = c
        .call(
            reqwest::Method::DELETE,
            &format!("/apis/ims/v3/images/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let moved = head("deleted/big/rootfs".into()).await;
    assert!(
        moved.etag.ends_with("-2"),
        "single-part comes back as -2: {}",
        moved.etag
    );
    assert!(
        moved.metadata.is_empty(),
        "metadata dropped: {:?}",
        moved.metadata
    );
    let small = head("deleted/big/kernel".into()).await;
    assert_eq!(small.etag, kernel.etag, "small objects keep their ETag");
    assert_eq!(small.metadata, kernel.metadata, "and their metadata");

    // The deleted manifest records the moved objects' real ETags.
    let doc: Value = serde_json::from_slice(
        &c.s3
            .get(
                "boot-images",
                &format!("deleted/{id}/deleted_manifest.json"),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    let created = doc["created"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{created}"
    );
    let entry = |mime: &str| {
        doc["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == mime)
            .unwrap()
            .clone()
    };
    let manifest = head("deleted/big/manifest.json".into()).await;
    let m = entry("application/vnd.cray.image.manifest");
    assert_eq!(m["link"]["etag"], manifest.etag.as_str());
    assert!(m.get("md5").is_none());
    let r = entry("application/vnd.cray.image.rootfs.squashfs");
    assert_eq!(r["link"]["etag"], moved.etag.as_str());
    assert!(r["md5"].is_string(), "md5 copied from the source manifest");

    // Undelete restores neither the ETag nor the metadata; the link etag
    // becomes the manifest's S3 ETag although it was "".
    let (status, _) = c
        .patch(
            &format!("/apis/ims/v3/deleted/images/{id}"),
            json!({ "operation": "undelete" }),
        )
        .await;
    assert_eq!(status, 204);
    let back = head("big/rootfs".into()).await;
    assert!(back.etag.ends_with("-2") && back.metadata.is_empty());
    assert_ne!(back.etag, rootfs.etag);
    let (_, record) = c.get(&format!("/apis/ims/v3/images/{id}")).await;
    let live_manifest = head("big/manifest.json".into()).await;
    assert_eq!(record["link"]["etag"], live_manifest.etag.as_str());
    assert_eq!(record["link"]["path"], "s3://boot-images/big/manifest.json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_of_an_image_whose_manifest_is_missing_moves_nothing_and_keeps_the_link() {
    let c = Client::new().await;
    let image = c.a_live_image();
    let (_, before) = c.get(&format!("/apis/ims/v3/images/{image}")).await;
    c.s3.delete("boot-images", &format!("{image}/manifest.json"))
        .await
        .unwrap();
    assert_eq!(c.delete(&format!("/apis/ims/v3/images/{image}")).await, 204);
    let (_, deleted) = c.get(&format!("/apis/ims/v3/deleted/images/{image}")).await;
    assert_eq!(
        deleted["link"], before["link"],
        "the live link, etag included"
    );
    for a in ["rootfs", "kernel", "initrd"] {
        assert!(
            c.exists(&format!("s3://boot-images/{image}/{a}")).await,
            "{a} stays"
        );
        assert!(
            !c.exists(&format!("s3://boot-images/deleted/{image}/{a}"))
                .await
        );
    }
    assert!(
        !c.exists(&format!(
            "s3://boot-images/deleted/{image}/deleted_manifest.json"
        ))
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problem_details_are_the_real_ims_texts() {
    let c = Client::new().await;
    let (_, body) = c
        .get("/apis/ims/v3/images/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(
        body["detail"],
        "Requested resource does not exist. Re-run request with valid ID."
    );
    let (_, body) = c
        .post("/apis/ims/v3/public-keys", json!({ "name": "k" }))
        .await;
    assert_eq!(body["title"], "Unprocessable Entity");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Input data was understood, but failed validation."),
        "{body}"
    );
    let (_, body) = c.post("/apis/ims/v3/public-keys", json!({})).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("No input provided. Determine"),
        "{body}"
    );
    let image = c.a_live_image();
    let other = json!({ "type": "s3", "path": "s3://boot-images/other/manifest.json" });
    let (status, body) = c
        .patch(
            &format!("/apis/ims/v3/images/{image}"),
            json!({ "link": other }),
        )
        .await;
    assert_eq!(status, 409);
    assert!(
        body["detail"].as_str().unwrap().starts_with(
            "Requested resource exists, but cannot be patched due to a patch conflict."
        ),
        "{body}"
    );
}

/// `csm-sim demo --port P` serves on P, as `serve --port` does, so a demo
/// can stay inside a port range a site assigns.
#[test]
fn demo_serves_on_the_port_it_is_given() {
    use std::io::BufRead;
    let ceph = csm_sim::testing::Ceph::from_env();
    let (tenant, s3) = ceph.tenant();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_csm-sim"))
        .arg("demo")
        .arg("--data")
        .arg(data.path().join("csm"))
        .args(["--port", &port.to_string(), "--running-jobs", "0"])
        .args(["--s3-endpoint", &s3.endpoint])
        .args(["--s3-access-key", &s3.access_key])
        .args(["--s3-secret-key", &s3.secret_key])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("csm-sim ready: ").map(str::to_string));
    let _ = child.kill();
    let _ = child.wait();
    ceph.remove_tenant(&tenant);
    assert_eq!(ready, Some(format!("http://127.0.0.1:{port}")));
}
