//! `csm-sim demo`: seeds a system, serves it, and walks it the way a client
//! on an NCN would (kubeconfig -> Secret -> Keycloak token -> APIs), printing
//! what it finds.
use crate::s3::{S3, S3Config};
use crate::seed::SeedSpec;
use anyhow::Context;
use serde_json::Value;
use std::path::Path;

pub async fn run(
    data: &Path,
    s3: &S3Config,
    spec: &SeedSpec,
    port: u16,
) -> anyhow::Result<crate::Running> {
    let expected = crate::seed::seed(data, s3, spec).await.context("seeding")?;
    let running = crate::serve(data, port).await.context("serving")?;
    println!(
        "Simulated CSM seeded in {} and serving at {}",
        data.display(),
        running.base_url
    );

    let http = crate::testing::http_client();
    let kubeconfig: Value =
        serde_yaml::from_str(&std::fs::read_to_string(data.join("kubeconfig"))?)?;
    let kube_token = kubeconfig["users"][0]["user"]["token"]
        .as_str()
        .unwrap_or_default();
    let kube = |path: &str| {
        http.get(format!("{}/api/v1{path}", running.base_url))
            .bearer_auth(kube_token)
            .send()
    };
    let secret: Value = kube("/namespaces/default/secrets/admin-client-auth")
        .await?
        .error_for_status()?
        .json()
        .await?;
    use base64::Engine;
    let client_secret = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["client-secret"].as_str().unwrap_or_default())?,
    )?;
    let token: Value = http
        .post(format!(
            "{}/keycloak/realms/shasta/protocol/openid-connect/token",
            running.base_url
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "admin-client"),
            ("client_secret", &client_secret),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!(
        "  token: Keycloak client credentials, secret read from Secret default/admin-client-auth via the kubeconfig"
    );
    let api = |path: String| {
        let req = http
            .get(format!("{}/apis{path}", running.base_url))
            .bearer_auth(&token);
        async move { req.send().await?.error_for_status()?.json::<Value>().await }
    };
    let count = |v: &Value| v.as_array().map_or(0, Vec::len);
    let mut line = Vec::new();
    for kind in ["images", "recipes", "public-keys"] {
        let live = api(format!("/ims/v3/{kind}")).await?;
        let deleted = api(format!("/ims/v3/deleted/{kind}")).await?;
        line.push(format!(
            "{} {kind} (+{} soft-deleted)",
            count(&live),
            count(&deleted)
        ));
    }
    let jobs = api("/ims/v3/jobs".into()).await?;
    let running_jobs = jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| !matches!(j["status"].as_str(), Some("success" | "error")))
        .count();
    println!(
        "  IMS v3:  {}, {} jobs ({running_jobs} running)",
        line.join(", "),
        count(&jobs)
    );
    let templates = api("/bos/v2/sessiontemplates".into()).await?;
    let tenanted = templates
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| !t["tenant"].is_null())
        .count();
    println!(
        "  BOS v2:  {} session templates ({tenanted} tenanted)",
        count(&templates)
    );
    println!(
        "  BSS:     {} boot parameter entries",
        count(&api("/bss/boot/v1/bootparameters".into()).await?)
    );
    let catalog: Value =
        kube("/namespaces/services/configmaps?labelSelector=type%3Dcray-product-catalog")
            .await?
            .json()
            .await?;
    let names: Vec<&str> = catalog["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    println!(
        "  catalog: {} ConfigMaps ({})",
        names.len(),
        names.join(", ")
    );
    let store = S3::new(s3);
    let (mut objects, mut bytes) = (0, 0);
    for bucket in ["boot-images", "ims"] {
        for (_, size, _) in store.list(bucket, "").await? {
            objects += 1;
            bytes += size;
        }
    }
    println!(
        "  S3:      {objects} objects, {:.1} MiB in boot-images and ims (Ceph RGW at {})",
        bytes as f64 / 1048576.0,
        s3.endpoint
    );
    println!(
        "  links:   BOS {}, BSS {}, product catalog {} (and {} dangling)",
        expected.links.get("bos").map_or(0, |l| l.len()),
        expected.links.get("bss").map_or(0, |l| l.len()),
        expected.links.get("product_catalog").map_or(0, |l| l.len()),
        expected.dangling.len()
    );
    Ok(running)
}
