//! Connecting to a CSM: where the gateway is, how to get a token, where S3
//! is. Defaults are those of an NCN; a config file, environment variables
//! and flags override them, in that order of increasing precedence.
use crate::backends::{Backends, ServiceClient};
use crate::kube::Kube;
use crate::s3::{S3Settings, S3Store};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const DEFAULT_GATEWAY: &str = "https://api-gw-service-nmn.local";
pub const PLATFORM_CA: &str = "/etc/pki/trust/anchors/platform-ca-certs.crt";
pub const NCN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";

/// Connection settings. Every field can come from the config file
/// (`imsflow.toml`, same names), the environment (`IMSFLOW_<NAME>`) or a flag.
#[derive(Debug, Default, Clone, serde::Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// API gateway base URL [default: https://api-gw-service-nmn.local].
    #[arg(long, env = "IMSFLOW_GATEWAY")]
    pub gateway: Option<String>,
    /// Bearer token for the gateway (skips Keycloak).
    #[arg(long, env = "IMSFLOW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "IMSFLOW_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA bundle for the gateway [default: the platform CA when present].
    #[arg(long, env = "IMSFLOW_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Kubeconfig for the product catalog and the admin-client-auth Secret
    /// [default: $KUBECONFIG, /etc/kubernetes/admin.conf, ~/.kube/config].
    #[arg(long, env = "IMSFLOW_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// S3 endpoint (skips STS when given with keys).
    #[arg(long, env = "IMSFLOW_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "IMSFLOW_S3_ACCESS_KEY")]
    pub s3_access_key: Option<String>,
    #[arg(long, env = "IMSFLOW_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Kube(#[from] crate::kube::KubeError),
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

impl Connect {
    /// Fills unset fields from a config file, if it exists.
    pub fn with_file(mut self, path: &Path) -> Result<Connect, ConnectError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self),
            Err(e) => {
                return Err(ConnectError::File {
                    path: path.into(),
                    message: e.to_string(),
                });
            }
        };
        let file: Connect = toml::from_str(&text).map_err(|e| ConnectError::File {
            path: path.into(),
            message: e.to_string(),
        })?;
        macro_rules! fill { ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f; } )* } }
        fill!(
            gateway,
            token,
            token_file,
            ca_file,
            kubeconfig,
            s3_endpoint,
            s3_access_key,
            s3_secret_key
        );
        Ok(self)
    }

    fn kubeconfig_path(&self) -> Option<PathBuf> {
        self.kubeconfig
            .clone()
            .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from(NCN_KUBECONFIG)).filter(|p| p.exists()))
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".kube/config"))
                    .filter(|p| p.exists())
            })
    }

    /// Resolves the token and S3 credentials and builds the backends.
    pub async fn connect(&self) -> Result<Backends, ConnectError> {
        let gateway = self
            .gateway
            .clone()
            .unwrap_or_else(|| DEFAULT_GATEWAY.into())
            .trim_end_matches('/')
            .to_string();
        let mut http = reqwest::Client::builder();
        let ca = self
            .ca_file
            .clone()
            .or_else(|| Some(PathBuf::from(PLATFORM_CA)).filter(|p| p.exists()));
        if let Some(ca) = &ca {
            let pem = std::fs::read(ca)
                .map_err(|e| ConnectError::Other(format!("CA file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ConnectError::Other(format!("CA file {}: {e}", ca.display())))?;
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        let kube = self
            .kubeconfig_path()
            .map(|p| Kube::from_kubeconfig(&p))
            .transpose()?;
        let token = self.token(&http, &gateway, kube.as_ref()).await?;
        let s3 = self.s3(&http, &gateway, &token).await?;
        Ok(Backends {
            services: Some(ServiceClient {
                http,
                gateway,
                token: Some(token),
            }),
            s3: Some(Arc::new(S3Store::new(&s3))),
            kube,
            archive: None,
        })
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
            return std::fs::read_to_string(f)
                .map(|t| t.trim().to_string())
                .map_err(|e| ConnectError::Token {
                    what: format!("token file {}", f.display()),
                    message: e.to_string(),
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
            what: format!("Keycloak token ({url})"),
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
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let body: Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
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
            });
        }
        let url = format!("{gateway}/apis/sts/token");
        let fail = |message: String| ConnectError::Sts {
            url: url.clone(),
            message,
        };
        let resp = http
            .put(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if resp.status().as_u16() != 201 {
            return Err(fail(format!("HTTP {} (expected 201)", resp.status())));
        }
        let body: Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
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
        })
    }
}

/// The config file: `--config`, else `$IMSFLOW_CONFIG`, else `~/.config/imsflow/imsflow.toml`.
pub fn config_file(flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("IMSFLOW_CONFIG").map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/imsflow/imsflow.toml"))
        })
}
