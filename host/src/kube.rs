//! A minimal Kubernetes API client driven by a kubeconfig: enough to read the
//! product catalog ConfigMaps and the `admin-client-auth` Secret. Supports
//! bearer tokens and client certificates (as `/etc/kubernetes/admin.conf` has).
use crate::connect::{BodyError, http_client_builder, read_capped, request_error};
use base64::Engine;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Largest Kubernetes API answer read. A ConfigMap or Secret holds at most
/// 1 MiB; a list of the catalog's ConfigMaps stays well below this.
const MAX_KUBE_BODY: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("Kubernetes API GET {path}: {message}")]
    Request { path: String, message: String },
    #[error("Kubernetes API GET {path}: the answer is larger than {max} bytes")]
    TooLarge { path: String, max: usize },
}

#[derive(Clone)]
pub struct Kube {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
    /// The kubeconfig says `insecure-skip-tls-verify: true`.
    insecure: bool,
}

impl Kube {
    pub fn from_kubeconfig(path: &Path) -> Result<Kube, KubeError> {
        let bad = |message: String| KubeError::Config {
            path: path.to_path_buf(),
            message,
        };
        let text =
            crate::read::read_text_capped(path, crate::connect::MAX_SMALL_FILE, "kubeconfig")
                .map_err(|e| bad(e.reason))?;
        let cfg: Value = serde_yaml::from_str(&text).map_err(|e| bad(format!("not YAML: {e}")))?;
        let current = cfg["current-context"]
            .as_str()
            .ok_or_else(|| bad("no current-context".into()))?;
        let named = |list: &str, name: &str| {
            cfg[list]
                .as_array()
                .and_then(|l| l.iter().find(|i| i["name"] == name))
                .cloned()
        };
        let context = named("contexts", current)
            .ok_or_else(|| bad(format!("context `{current}` is not defined")))?;
        let cluster_name = context["context"]["cluster"].as_str().unwrap_or_default();
        let user_name = context["context"]["user"].as_str().unwrap_or_default();
        let cluster = named("clusters", cluster_name)
            .ok_or_else(|| bad(format!("cluster `{cluster_name}` is not defined")))?;
        let user = named("users", user_name)
            .map(|u| u["user"].clone())
            .unwrap_or(Value::Null);
        let server = cluster["cluster"]["server"]
            .as_str()
            .ok_or_else(|| bad("the cluster has no server".into()))?;
        let decode = |field: &Value| -> Result<Option<Vec<u8>>, KubeError> {
            field
                .as_str()
                .map(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| bad(format!("bad base64: {e}")))
                })
                .transpose()
        };
        let mut http = http_client_builder();
        if let Some(ca) = decode(&cluster["cluster"]["certificate-authority-data"])? {
            for cert in reqwest::Certificate::from_pem_bundle(&ca)
                .map_err(|e| bad(format!("CA data: {e}")))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let insecure = cluster["cluster"]["insecure-skip-tls-verify"] == true;
        if insecure {
            tracing::warn!(
                "kubeconfig {}: cluster `{cluster_name}` has insecure-skip-tls-verify: true; \
                 the Kubernetes API's certificate is not checked",
                path.display()
            );
            http = http.danger_accept_invalid_certs(true);
        }
        if let (Some(mut cert), Some(key)) = (
            decode(&user["client-certificate-data"])?,
            decode(&user["client-key-data"])?,
        ) {
            cert.push(b'\n');
            cert.extend(key);
            http = http.identity(
                reqwest::Identity::from_pem(&cert)
                    .map_err(|e| bad(format!("client certificate: {e}")))?,
            );
        }
        let token = match (&user["token"], &user["tokenFile"]) {
            (Value::String(t), _) => Some(t.clone()),
            (_, Value::String(f)) => Some(
                crate::read::read_text_capped(
                    Path::new(f),
                    crate::connect::MAX_SMALL_FILE,
                    "kubeconfig tokenFile",
                )
                .map_err(|e| bad(e.to_string()))?
                .trim()
                .to_string(),
            ),
            _ => None,
        };
        let http = http
            .build()
            .map_err(|e| bad(crate::connect::error_chain(&e)))?;
        Ok(Kube {
            http,
            server: server.trim_end_matches('/').to_string(),
            token,
            insecure,
        })
    }

    /// GET an API path (e.g. `/api/v1/namespaces/x/configmaps`): status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), KubeError> {
        let fail = |message: String| KubeError::Request {
            path: path.to_string(),
            message,
        };
        let mut req = self.http.get(format!("{}{path}", self.server));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| fail(request_error(e)))?;
        let status = resp.status().as_u16();
        let body = read_capped(resp, MAX_KUBE_BODY)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(max) => KubeError::TooLarge {
                    path: path.to_string(),
                    max,
                },
                e => fail(e.to_string()),
            })?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// A Secret's decoded data value.
    pub async fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<String, KubeError> {
        let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
        let fail = |message: String| KubeError::Request {
            path: path.clone(),
            message,
        };
        if self.insecure {
            tracing::warn!(
                "reading Secret {namespace}/{name} from {} without checking its certificate \
                 (insecure-skip-tls-verify): anyone on the path can read or forge it",
                crate::connect::without_userinfo(&self.server)
            );
        }
        let (status, body) = self.get(&path).await?;
        if status != 200 {
            let body: String = body.chars().take(300).collect();
            return Err(fail(format!("HTTP {status}: {body}")));
        }
        let secret: Value = serde_json::from_str(&body).map_err(|e| fail(e.to_string()))?;
        let encoded = secret["data"][key]
            .as_str()
            .ok_or_else(|| fail(format!("the Secret has no `{key}`")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| fail(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| fail(e.to_string()))
    }
}
