//! Kubernetes, through the `kube` crate: a client built from a kubeconfig,
//! the product catalog's ConfigMaps and the `admin-client-auth` Secret
//! (here), commands in a pod (`exec`), a Deployment's rollout restart and
//! status (`rollout`), and IMS's pod and data files (`ims`).
//!
//! Bounded like every other input: the kubeconfig and every file it names
//! (CA, client certificate and key, token file) are read through
//! `read::read_capped` by this module, never by the crate; every answer is
//! read with a size cap; every call has a connect timeout and an overall
//! timeout.
pub mod exec;
pub mod ims;
pub mod rollout;

use crate::net::{MAX_SMALL_FILE, Timeouts, error_chain, without_userinfo};
use base64::Engine;
use http_body_util::BodyExt;
use kube::config::{AuthInfo, Kubeconfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest Kubernetes API answer read. A ConfigMap or Secret holds at most
/// 1 MiB; a list of the catalog's ConfigMaps stays well below this.
pub const MAX_KUBE_BODY: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("Kubernetes API {method} {path}: {message}")]
    Request {
        method: &'static str,
        path: String,
        message: String,
    },
    /// The API answered with an error status.
    #[error("Kubernetes API {method} {path}: HTTP {code}: {message}")]
    Status {
        method: &'static str,
        path: String,
        code: u16,
        /// The `Status` object's reason (`Forbidden`, `NotFound`...), if any.
        reason: String,
        message: String,
    },
    #[error("Kubernetes API {method} {path}: the answer is larger than {max} bytes")]
    TooLarge {
        method: &'static str,
        path: String,
        max: usize,
    },
    #[error("Kubernetes API {method} {path}: timed out after {}s", after.as_secs())]
    Timeout {
        method: &'static str,
        path: String,
        after: Duration,
    },
}

/// What `Kube::can_i` asks about (`""` for the core group, no subresource).
pub struct Access<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// A Kubernetes API client. Cloning is cheap (one connection pool).
#[derive(Clone)]
pub struct Kube {
    client: kube::Client,
    server: String,
    /// The kubeconfig's current context.
    context: String,
    /// The kubeconfig says `insecure-skip-tls-verify: true`.
    insecure: bool,
    /// The whole of one call, body included.
    timeout: Duration,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("server", &without_userinfo(&self.server))
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl Kube {
    /// A client for the kubeconfig's current context: its cluster's server
    /// and CA (or `insecure-skip-tls-verify`), its user's bearer token,
    /// token file or client certificate, with the default timeouts. Must run
    /// inside a tokio runtime.
    pub fn from_kubeconfig(path: &Path) -> Result<Kube, KubeError> {
        Kube::from_kubeconfig_with(path, &Timeouts::default())
    }

    /// `from_kubeconfig`, with these connect and request timeouts.
    pub fn from_kubeconfig_with(path: &Path, timeouts: &Timeouts) -> Result<Kube, KubeError> {
        let bad = |message: String| KubeError::Config {
            path: path.to_path_buf(),
            message,
        };
        let text = crate::read::read_text_capped(path, MAX_SMALL_FILE, "kubeconfig")
            .map_err(|e| bad(e.reason))?;
        // serde_yaml, as for every other YAML here: the crate's own parser
        // would add a second YAML implementation (1.2 MB of code) for this.
        let value: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| bad(format!("not YAML: {e}")))?;
        // A type error quotes the value, which can be a credential.
        let kubeconfig: Kubeconfig = serde_yaml::from_value(value).map_err(|_| {
            bad(
                "not a kubeconfig: a field has the wrong type (its value is not shown: \
                 it may be a credential)"
                    .into(),
            )
        })?;
        let current = kubeconfig
            .current_context
            .clone()
            .ok_or_else(|| bad("no current-context".into()))?;
        let context = kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == current)
            .and_then(|c| c.context.clone())
            .ok_or_else(|| bad(format!("context `{current}` is not defined")))?;
        let cluster_name = &context.cluster;
        let cluster = kubeconfig
            .clusters
            .iter()
            .find(|c| &c.name == cluster_name)
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| bad(format!("cluster `{cluster_name}` is not defined")))?;
        let user = context
            .user
            .as_ref()
            .and_then(|u| kubeconfig.auth_infos.iter().find(|a| &a.name == u))
            .and_then(|a| a.auth_info.clone())
            .unwrap_or_default();
        let server = cluster
            .server
            .clone()
            .ok_or_else(|| bad("the cluster has no server".into()))?;
        let uri: http::Uri = server
            .parse()
            .map_err(|e| bad(format!("server `{server}`: {e}")))?;
        // Relative file names are relative to the kubeconfig, as for kubectl.
        let base = path.parent().unwrap_or(Path::new("."));
        let read_file = |file: &str, what: &'static str| {
            let p = base.join(file);
            crate::read::read_capped(&p, MAX_SMALL_FILE, what).map_err(|e| bad(e.to_string()))
        };
        let decode = |data: &str, what: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| bad(format!("{what}: bad base64: {e}")))
        };

        let mut config = kube::Config::new(uri);
        config.default_namespace = context.namespace.clone().unwrap_or("default".into());
        let ca = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => Some(decode(data, "certificate-authority-data")?),
            (None, Some(file)) => Some(read_file(file, "kubeconfig certificate-authority")?),
            (None, None) => None,
        };
        if let Some(pem) = ca {
            config.root_cert = Some(pem_certificates(&pem).map_err(|e| bad(format!("CA: {e}")))?);
        }
        let insecure = cluster.insecure_skip_tls_verify == Some(true);
        if insecure {
            tracing::warn!(
                "kubeconfig {}: cluster `{cluster_name}` has insecure-skip-tls-verify: true; \
                 the Kubernetes API's certificate is not checked",
                path.display()
            );
        }
        config.accept_invalid_certs = insecure;
        config.tls_server_name = cluster.tls_server_name.clone();
        if cluster.proxy_url.is_some() {
            tracing::warn!(
                "kubeconfig {}: proxy-url is not supported; connecting directly",
                path.display()
            );
        }
        config.auth_info = inline_user_files(user, |file, what| read_file(file, what))?;
        config.connect_timeout = Some(timeouts.connect);
        // Idle limits a little beyond the whole-call timeout, which is the
        // one that fires (and says what timed out); they bound exec streams.
        config.read_timeout = Some(timeouts.request + Duration::from_secs(5));
        config.write_timeout = Some(timeouts.request + Duration::from_secs(5));
        // A long stdin upload to exec is not an idle read.
        config.reset_reader_on_write = true;
        let client = kube::Client::try_from(config).map_err(|e| bad(kube_error(&e)))?;
        Ok(Kube {
            client,
            server,
            context: current,
            insecure,
            timeout: timeouts.request,
        })
    }

    /// The API server's URL, as the kubeconfig names it.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The kubeconfig's current context.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The underlying client, for calls this module does not wrap.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// GET an API path (e.g. `/api/v1/namespaces/x/configmaps`): status and
    /// body, whatever the status. The body is capped at [`MAX_KUBE_BODY`].
    pub async fn get(&self, path: &str) -> Result<(u16, String), KubeError> {
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| KubeError::Request {
                method: "GET",
                path: path.to_string(),
                message: e.to_string(),
            })?;
        let (status, body) = self.send("GET", path, req, MAX_KUBE_BODY).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Sends a request built by `kube::core::Request`, reads the answer
    /// with a cap and within the timeout: status and body.
    pub async fn send(
        &self,
        method: &'static str,
        path: &str,
        req: http::Request<Vec<u8>>,
        max: usize,
    ) -> Result<(u16, Vec<u8>), KubeError> {
        let shown = path.to_string();
        let fail = |message: String| KubeError::Request {
            method,
            path: shown.clone(),
            message,
        };
        let call = async {
            let resp = self
                .client
                .send(req.map(kube::client::Body::from))
                .await
                .map_err(|e| fail(kube_error(&e)))?;
            let status = resp.status().as_u16();
            let mut body = std::pin::pin!(resp.into_body());
            let mut out = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| fail(error_chain(&e)))?;
                if let Some(chunk) = frame.data_ref() {
                    if out.len() + chunk.len() > max {
                        return Err(KubeError::TooLarge {
                            method,
                            path: shown.clone(),
                            max,
                        });
                    }
                    out.extend_from_slice(chunk);
                }
            }
            Ok((status, out))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| KubeError::Timeout {
                method,
                path: path.to_string(),
                after: self.timeout,
            })?
    }

    /// `kubectl auth can-i`: whether RBAC lets the kubeconfig's user do
    /// this, asked through a `SelfSubjectAccessReview` (which any
    /// authenticated user may create), without doing it.
    pub async fn can_i(&self, access: &Access<'_>) -> Result<bool, KubeError> {
        const PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
        let review = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": { "resourceAttributes": {
                "namespace": access.namespace, "verb": access.verb, "group": access.group,
                "resource": access.resource, "subresource": access.subresource, "name": access.name,
            } },
        });
        let req = http::Request::post(PATH)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(review.to_string().into_bytes())
            .map_err(|e| KubeError::Request {
                method: "POST",
                path: PATH.into(),
                message: e.to_string(),
            })?;
        let answer: serde_json::Value = self.call("POST", req, MAX_KUBE_BODY).await?;
        Ok(answer["status"]["allowed"] == true)
    }

    /// Like `send`, but an error status is a [`KubeError::Status`] and a
    /// success is parsed as `T`.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        req: http::Request<Vec<u8>>,
        max: usize,
    ) -> Result<T, KubeError> {
        let path = req.uri().to_string();
        let (code, body) = self.send(method, &path, req, max).await?;
        if !(200..300).contains(&code) {
            let status: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            let field = |k: &str| {
                status
                    .as_ref()
                    .and_then(|s| s[k].as_str())
                    .map(String::from)
            };
            return Err(KubeError::Status {
                method,
                path,
                code,
                reason: field("reason").unwrap_or_default(),
                message: field("message")
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect()),
            });
        }
        serde_json::from_slice(&body).map_err(|e| KubeError::Request {
            method,
            path,
            message: format!("unexpected answer: {e}"),
        })
    }

    /// A Secret's decoded data value.
    pub async fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<String, KubeError> {
        use k8s_openapi::api::core::v1::Secret;
        if self.insecure {
            tracing::warn!(
                "reading Secret {namespace}/{name} from {} without checking its certificate \
                 (insecure-skip-tls-verify): anyone on the path can read or forge it",
                without_userinfo(&self.server)
            );
        }
        let req = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/secrets"))
            .get(name, &Default::default())
            .map_err(|e| KubeError::Request {
                method: "GET",
                path: format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
                message: e.to_string(),
            })?;
        let path = req.uri().to_string();
        let secret: Secret = self.call("GET", req, MAX_KUBE_BODY).await?;
        let fail = |message: String| KubeError::Request {
            method: "GET",
            path: path.clone(),
            message,
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| fail(format!("the Secret has no `{key}`")))?;
        String::from_utf8(bytes.0.clone()).map_err(|e| fail(e.to_string()))
    }
}

/// The user's certificate, key and token with files read here (capped),
/// so that the `kube` crate reads no file itself.
fn inline_user_files(
    mut user: AuthInfo,
    read: impl Fn(&str, &'static str) -> Result<Vec<u8>, KubeError>,
) -> Result<AuthInfo, KubeError> {
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    if let Some(file) = user.client_certificate.take()
        && user.client_certificate_data.is_none()
    {
        user.client_certificate_data = Some(b64(read(&file, "kubeconfig client-certificate")?));
    }
    if let Some(file) = user.client_key.take()
        && user.client_key_data.is_none()
    {
        user.client_key_data = Some(b64(read(&file, "kubeconfig client-key")?).into());
    }
    if let Some(file) = user.token_file.take()
        && user.token.is_none()
    {
        let token = read(&file, "kubeconfig tokenFile")?;
        let token = String::from_utf8_lossy(&token).trim().to_string();
        user.token = Some(token.into());
    }
    Ok(user)
}

/// The DER certificates of a PEM bundle.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ders = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if ders.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(ders)
}

/// A `kube` error as a sentence: its `Status` message for API errors
/// (their Display embeds a Debug form), else the whole cause chain.
pub(crate) fn kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let mut m = format!("HTTP {}", s.code);
            if !s.reason.is_empty() {
                m.push_str(&format!(" {}", s.reason));
            }
            if !s.message.is_empty() {
                m.push_str(&format!(": {}", s.message));
            }
            m
        }
        e => error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_kubeconfig_does_not_quote_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n\
             clusters:\n- name: k\n  cluster: {server: 'http://127.0.0.1:1'}\n\
             users:\n- name: u\n  user: s3cr3t-token-value\n",
        )
        .unwrap();
        let err = Kube::from_kubeconfig(&path).unwrap_err().to_string();
        assert!(
            err.contains("wrong type") && !err.contains("s3cr3t"),
            "{err}"
        );
    }

    #[test]
    fn user_files_are_read_by_us_and_inlined() {
        let user: AuthInfo =
            serde_yaml::from_str("client-certificate: c.pem\nclient-key: k.pem\ntokenFile: t\n")
                .unwrap();
        let read = |file: &str, _: &'static str| Ok(format!("<{file}>\n").into_bytes());
        let user = inline_user_files(user, read).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(user.client_certificate, None);
        assert_eq!(user.client_certificate_data, Some(b64("<c.pem>\n")));
        assert_eq!(user.client_key, None);
        assert!(user.client_key_data.is_some());
        assert_eq!(user.token_file, None);
        assert!(user.token.is_some());
    }
}
