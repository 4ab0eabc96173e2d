//! Connecting to a CSM: where the gateway is, how to get a token, where S3
//! is. Defaults are those of an NCN; a config file, environment variables
//! and flags override them, in that order of increasing precedence.
use crate::backends::{Backends, ServiceClient};
use crate::k8s::Kube;
use crate::net::{
    CaBundle, MAX_SMALL_FILE, Timeouts, error_chain, http_client_builder, read_capped,
    request_error, without_userinfo,
};
use crate::s3::{S3Settings, S3Store};
use crate::target::{KubeTarget, Setting, SystemTarget};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The settings resolved here, as the config file, the environment and the
/// flags give them (see `config`).
pub use crate::config::Connect;

pub const DEFAULT_GATEWAY: &str = "https://api-gw-service-nmn.local";
pub const PLATFORM_CA: &str = "/etc/pki/trust/anchors/platform-ca-certs.crt";
pub const NCN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";
/// Largest Keycloak or STS answer read: both are a few hundred bytes of JSON.
const MAX_AUTH_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Kube(#[from] crate::k8s::KubeError),
    #[error(
        "{what}: {message} (set --token/--token-file, or --kubeconfig to read the admin-client-auth Secret)"
    )]
    Token { what: String, message: String },
    #[error(
        "S3 credentials from STS ({url}): {message} (or set --s3-endpoint, --s3-access-key, --s3-secret-key)"
    )]
    Sts { url: String, message: String },
    #[error("{0}")]
    Other(String),
}

impl From<crate::config::ConfigError> for ConnectError {
    fn from(e: crate::config::ConfigError) -> ConnectError {
        ConnectError::File {
            path: e.path,
            message: e.message,
        }
    }
}

/// Longest connect or request timeout that may be set: a day.
const MAX_TIMEOUT_SECS: u64 = 86_400;

impl Connect {
    /// The connect and request timeouts: those set, checked, else the defaults.
    pub fn timeouts(&self) -> Result<Timeouts, ConnectError> {
        let seconds = |field: &'static str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(s @ 1..=MAX_TIMEOUT_SECS) => Ok(Duration::from_secs(s)),
            Some(s) => Err(ConnectError::Other(format!(
                "{field} {s} (from {}): expected a number of seconds from 1 to {MAX_TIMEOUT_SECS}",
                self.origin(field, s.to_string().as_ref())
            ))),
        };
        let default = Timeouts::default();
        Ok(Timeouts {
            connect: seconds("connect_timeout", self.connect_timeout, default.connect)?,
            request: seconds("request_timeout", self.request_timeout, default.request)?,
        })
    }

    /// The kubeconfig, and where its path came from.
    fn kubeconfig_path(&self) -> Option<(PathBuf, String)> {
        if let Some(path) = &self.kubeconfig {
            return Some((path.clone(), self.origin("kubeconfig", path.as_os_str())));
        }
        if let Some(path) = std::env::var_os("KUBECONFIG") {
            return Some((path.into(), "$KUBECONFIG".into()));
        }
        let ncn = PathBuf::from(NCN_KUBECONFIG);
        if ncn.exists() {
            return Some((ncn, "default of an NCN".into()));
        }
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".kube/config"))
            .filter(|p| p.exists())
            .map(|p| (p, "kubectl's default".into()))
    }

    /// Resolves the token and S3 credentials and builds the backends.
    pub async fn connect(&self) -> Result<Backends, ConnectError> {
        Ok(self.connect_with_target().await?.0)
    }

    /// `connect`, and the system it reached (see `target`).
    pub async fn connect_with_target(&self) -> Result<(Backends, SystemTarget), ConnectError> {
        let gateway = self
            .gateway
            .clone()
            .unwrap_or_else(|| DEFAULT_GATEWAY.into())
            .trim_end_matches('/')
            .to_string();
        let timeouts = self.timeouts()?;
        let site_services = self.site_services()?;
        let mut http = http_client_builder(&timeouts);
        let ca_file = self
            .ca_file
            .clone()
            .or_else(|| Some(PathBuf::from(PLATFORM_CA)).filter(|p| p.exists()));
        // One CA bundle for everything on the CSM side: the gateway (and
        // Keycloak, STS behind it) and S3, which is often RGW behind the
        // same private platform CA.
        let ca = ca_file
            .map(|path| {
                let pem = crate::read::read_capped(&path, MAX_SMALL_FILE, "CA file")
                    .map_err(|e| ConnectError::Other(e.to_string()))?;
                CaBundle::from_pem(&pem)
                    .map_err(|e| ConnectError::Other(format!("CA file {}: {e}", path.display())))
            })
            .transpose()?;
        if let Some(ca) = &ca {
            for cert in ca.reqwest_certificates() {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| ConnectError::Other(error_chain(&e)))?;
        let kubeconfig = self.kubeconfig_path();
        let kube = kubeconfig
            .as_ref()
            .map(|(p, _)| Kube::from_kubeconfig_with(p, &timeouts))
            .transpose()?;
        let token = self.token(&http, &gateway, kube.as_ref()).await?;
        let mut s3 = self.s3(&http, &gateway, &token).await?;
        s3.ca = ca;
        let target = SystemTarget {
            gateway: Setting {
                url: without_userinfo(&gateway),
                from: match &self.gateway {
                    Some(g) => self.origin("gateway", g.as_ref()),
                    None => "default of an NCN".into(),
                },
            },
            s3_endpoint: Setting {
                url: without_userinfo(&s3.endpoint),
                from: match &self.s3_endpoint {
                    Some(e) => self.origin("s3_endpoint", e.as_ref()),
                    None => "from STS, PUT /apis/sts/token on the gateway".into(),
                },
            },
            kubernetes: kube
                .as_ref()
                .zip(kubeconfig)
                .map(|(k, (path, from))| KubeTarget {
                    server: without_userinfo(k.server()),
                    context: k.context().to_string(),
                    from: format!("kubeconfig {}, from {from}", path.display()),
                }),
        };
        let backends = Backends {
            services: Some(ServiceClient {
                http,
                gateway,
                token: Some(token),
            }),
            s3: Some(Arc::new(S3Store::new(&s3))),
            kube,
            archive: None,
            site_services,
        };
        Ok((backends, target))
    }

    async fn token(
        &self,
        http: &reqwest::Client,
        gateway: &str,
        kube: Option<&Kube>,
    ) -> Result<String, ConnectError> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        if let Some(f) = &self.token_file {
            return crate::read::read_text_capped(f, MAX_SMALL_FILE, "token file")
                .map(|t| t.trim().to_string())
                .map_err(|e| ConnectError::Token {
                    what: format!("token file {}", f.display()),
                    message: e.reason,
                });
        }
        let kube = kube.ok_or_else(|| ConnectError::Token {
            what: "no token".into(),
            message: "no kubeconfig found".into(),
        })?;
        let secret = kube
            .secret_value("default", "admin-client-auth", "client-secret")
            .await?;
        let url = format!("{gateway}/keycloak/realms/shasta/protocol/openid-connect/token");
        let fail = |message: String| ConnectError::Token {
            what: format!("Keycloak token ({})", without_userinfo(&url)),
            message,
        };
        let resp = http
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "admin-client"),
                ("client_secret", secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| fail(request_error(e)))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let body = read_capped(resp, MAX_AUTH_BODY)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("the answer is not JSON: {e}")))?;
        body["access_token"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| fail("no access_token in the answer".into()))
    }

    async fn s3(
        &self,
        http: &reqwest::Client,
        gateway: &str,
        token: &str,
    ) -> Result<S3Settings, ConnectError> {
        if let (Some(endpoint), Some(access_key), Some(secret_key)) =
            (&self.s3_endpoint, &self.s3_access_key, &self.s3_secret_key)
        {
            return Ok(S3Settings {
                endpoint: endpoint.clone(),
                access_key: access_key.clone(),
                secret_key: secret_key.clone(),
                session_token: None,
                ca: None,
            });
        }
        let url = format!("{gateway}/apis/sts/token");
        let fail = |message: String| ConnectError::Sts {
            url: without_userinfo(&url),
            message,
        };
        let resp = http
            .put(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| fail(request_error(e)))?;
        if resp.status().as_u16() != 201 {
            return Err(fail(format!("HTTP {} (expected 201)", resp.status())));
        }
        let body = read_capped(resp, MAX_AUTH_BODY)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("the answer is not JSON: {e}")))?;
        let c = &body["Credentials"];
        let field = |k: &str| {
            c[k].as_str()
                .map(String::from)
                .ok_or_else(|| fail(format!("no Credentials.{k}")))
        };
        Ok(S3Settings {
            endpoint: self
                .s3_endpoint
                .clone()
                .map_or_else(|| field("EndpointURL"), Ok)?,
            access_key: field("AccessKeyId")?,
            secret_key: field("SecretAccessKey")?,
            session_token: c["SessionToken"].as_str().map(String::from),
            ca: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};

    #[test]
    fn timeouts_are_the_defaults_unless_set_and_a_set_one_is_checked() {
        assert_eq!(Connect::default().timeouts().unwrap(), Timeouts::default());
        let set = Connect {
            request_timeout: Some(2),
            ..Default::default()
        };
        assert_eq!(
            set.timeouts().unwrap(),
            Timeouts {
                connect: CONNECT_TIMEOUT,
                request: Duration::from_secs(2)
            }
        );
        assert_eq!(REQUEST_TIMEOUT, Duration::from_secs(60));
        for bad in [0, MAX_TIMEOUT_SECS + 1] {
            let settings = Connect {
                connect_timeout: Some(bad),
                ..Default::default()
            };
            let message = settings.timeouts().unwrap_err().to_string();
            assert_eq!(
                message,
                format!(
                    "connect_timeout {bad} (from --connect-timeout): expected a number of seconds from 1 to 86400"
                )
            );
        }
    }
}
