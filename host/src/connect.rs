//! Connecting to a CSM: where the gateway is, how to get a token, where S3
//! is. Defaults are those of an NCN; a config file, environment variables
//! and flags override them, in that order of increasing precedence.
use crate::backends::{Backends, ServiceClient};
use crate::k8s::Kube;
use crate::s3::{S3Settings, S3Store};
use crate::target::{KubeTarget, Setting, SystemTarget};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_GATEWAY: &str = "https://api-gw-service-nmn.local";
pub const PLATFORM_CA: &str = "/etc/pki/trust/anchors/platform-ca-certs.crt";
pub const NCN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";
/// The config file read when none is named; the only one that may be absent.
pub const DEFAULT_CONFIG: &str = "~/.config/imsflow/imsflow.toml";

/// Time to open a connection (TCP and TLS) to the gateway, Keycloak, STS or
/// the Kubernetes API. A firewalled or dead endpoint fails in this time
/// instead of waiting for the kernel's minutes-long SYN retries.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a whole request to those, body included. Their answers are
/// capped (64 MiB at most), so a working link finishes well within it; a
/// server that accepts and then says nothing fails the run instead of
/// hanging it forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest Keycloak or STS answer read: both are a few hundred bytes of JSON.
const MAX_AUTH_BODY: usize = 1 << 20;

/// Connection settings. Every field can come from the config file
/// (`imsflow.toml`, same names), the environment (`IMSFLOW_<NAME>`) or a flag.
/// Largest config, token, CA or kubeconfig file read: each is a few KiB.
pub const MAX_SMALL_FILE: u64 = 4 << 20;

#[derive(Default, Clone, serde::Deserialize, clap::Args)]
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
    /// Kubeconfig for the product catalog, the admin-client-auth Secret and
    /// the IMS pod and deployment (imports)
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
    /// `[export]` of the config file: the site's additions to the stock export.
    #[arg(skip)]
    #[serde(default)]
    pub export: ExportConfig,
    /// `[services]` of the config file: site services for site plugins,
    /// name -> gateway path (`bos-v1 = "/apis/bos/v1"`).
    #[arg(skip)]
    #[serde(default)]
    pub services: std::collections::BTreeMap<String, String>,
    /// The config file `with_file` read, and the fields it filled: where
    /// each setting came from, for the target a run prints and a plan records.
    #[arg(skip)]
    #[serde(skip)]
    pub from_file: Option<(PathBuf, Vec<&'static str>)>,
}

/// `[export]` in `imsflow.toml`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// `[[export.link_sources]]`: site link-discovery plugins that the stock
    /// export runs beside `bos-links`, `bss-links` and `catalog-links`.
    #[serde(default)]
    pub link_sources: Vec<SiteLinkSource>,
}

/// A site link source: a plugin file, its pin, its grants and its `with`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteLinkSource {
    /// Its key in `export.json`'s `link_sources` and the name
    /// `--exclude-links-from` takes: lowercase letters, digits, `-`, `_`.
    pub name: String,
    /// The component file; a relative path is relative to the config file.
    pub plugin: PathBuf,
    /// sha256 of the file (`imsflow plugins inspect` prints it); required.
    pub sha256: String,
    /// Services and buckets it may read (no effects: a link source emits none).
    #[serde(default)]
    pub grants: SiteGrants,
    /// The step's `with` values.
    #[serde(default)]
    pub with: toml::Table,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteGrants {
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub buckets: Vec<String>,
}

/// Shows which settings are set, never the token or the S3 secret key.
impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Connect")
            .field("gateway", &self.gateway.as_deref().map(without_userinfo))
            .field("token", &secret(&self.token))
            .field("token_file", &self.token_file)
            .field("ca_file", &self.ca_file)
            .field("kubeconfig", &self.kubeconfig)
            .field(
                "s3_endpoint",
                &self.s3_endpoint.as_deref().map(without_userinfo),
            )
            .field("s3_access_key", &self.s3_access_key)
            .field("s3_secret_key", &secret(&self.s3_secret_key))
            .finish()
    }
}

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

impl Connect {
    /// Fills unset fields from a config file (see `config_file`).
    pub fn with_file(mut self, path: &Path) -> Result<Connect, ConnectError> {
        let text =
            crate::read::read_text_capped(path, MAX_SMALL_FILE, "config file").map_err(|e| {
                ConnectError::File {
                    path: path.into(),
                    message: e.reason,
                }
            })?;
        let file: Connect = toml::from_str(&text).map_err(|e| ConnectError::File {
            path: path.into(),
            message: toml_error_without_source(&e, &text),
        })?;
        let mut filled = Vec::new();
        macro_rules! fill { ($($f:ident),*) => { $( if self.$f.is_none() && file.$f.is_some() {
            self.$f = file.$f;
            filled.push(stringify!($f));
        } )* } }
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
        self.from_file = Some((path.to_path_buf(), filled));
        crate::backends::add_site_services(&file.services).map_err(|message| {
            ConnectError::File {
                path: path.into(),
                message,
            }
        })?;
        self.services.extend(file.services.clone());
        if self.export.link_sources.is_empty() {
            let base = path.parent().unwrap_or(Path::new("."));
            self.export = file.export;
            for source in &mut self.export.link_sources {
                source.plugin = base.join(&source.plugin);
            }
        }
        Ok(self)
    }

    /// Where a set field's value came from: the config file, the environment
    /// (clap reads `IMSFLOW_<FIELD>` when the flag is absent) or the flag.
    fn origin(&self, field: &'static str, value: &std::ffi::OsStr) -> String {
        if let Some((path, filled)) = &self.from_file
            && filled.contains(&field)
        {
            return format!("config file {}", path.display());
        }
        let var = format!("IMSFLOW_{}", field.to_ascii_uppercase());
        if std::env::var_os(&var).as_deref() == Some(value) {
            format!("${var}")
        } else {
            format!("--{}", field.replace('_', "-"))
        }
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
        let mut http = http_client_builder();
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
            .map(|(p, _)| Kube::from_kubeconfig(p))
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

/// The config file to read: `--config`, else `$IMSFLOW_CONFIG`, else
/// `~/.config/imsflow/imsflow.toml`. A file named by the flag or the
/// variable must exist (as for kubectl and helm): with a mistyped path,
/// falling back to the NCN defaults would talk to whatever system this host
/// reaches. Only the default file may be absent (`None`).
pub fn config_file(flag: Option<&Path>) -> Result<Option<PathBuf>, ConnectError> {
    let named = match (flag, std::env::var_os("IMSFLOW_CONFIG")) {
        (Some(path), _) => Some((path.to_path_buf(), "--config")),
        (None, Some(var)) if !var.is_empty() => Some((PathBuf::from(var), "$IMSFLOW_CONFIG")),
        _ => None,
    };
    if let Some((path, how)) = named {
        return match path.try_exists() {
            Ok(true) => Ok(Some(path)),
            Ok(false) => Err(ConnectError::File {
                path,
                message: format!(
                    "named by {how}, does not exist (only the default {DEFAULT_CONFIG} may be absent); fix the path, or unset {how}"
                ),
            }),
            Err(e) => Err(ConnectError::File {
                path,
                message: format!("named by {how}, cannot be reached: {e}"),
            }),
        };
    }
    Ok(std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(DEFAULT_CONFIG.trim_start_matches("~/")))
        .filter(|p| p.exists()))
}

/// Every HTTP client of the CSM side starts here, so that none waits forever.
pub(crate) fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
}

/// A CA bundle whose every certificate is a usable trust anchor. It is
/// checked once, here, because the S3 client's TLS setup panics on a bad
/// certificate when it first connects instead of returning an error.
#[derive(Clone)]
pub struct CaBundle {
    certs: Vec<reqwest::Certificate>,
    /// The same roots (with the system's) for the S3 client.
    s3_tls: aws_smithy_http_client::tls::TlsContext,
}

impl CaBundle {
    pub fn from_pem(pem: &[u8]) -> Result<CaBundle, String> {
        use aws_smithy_http_client::tls::{TlsContext, TrustStore};
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let ders = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
        if ders.is_empty() {
            return Err("holds no PEM certificate".into());
        }
        let mut roots = rustls::RootCertStore::empty();
        let mut certs = Vec::with_capacity(ders.len());
        for (n, der) in ders.into_iter().enumerate() {
            certs.push(
                reqwest::Certificate::from_der(&der)
                    .map_err(|e| format!("certificate {}: {}", n + 1, error_chain(&e)))?,
            );
            roots
                .add(der)
                .map_err(|e| format!("certificate {} is not a usable CA: {e}", n + 1))?;
        }
        let s3_tls = TlsContext::builder()
            .with_trust_store(TrustStore::default().with_pem_certificate(pem))
            .build()
            .map_err(|e| error_chain(&e))?;
        Ok(CaBundle { certs, s3_tls })
    }

    pub(crate) fn s3_tls(&self) -> &aws_smithy_http_client::tls::TlsContext {
        &self.s3_tls
    }

    pub fn reqwest_certificates(&self) -> Vec<reqwest::Certificate> {
        self.certs.clone()
    }
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaBundle({} certificates)", self.certs.len())
    }
}

/// Why a response body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the answer: {0}")]
    Read(String),
}

/// Reads a response body, but never more than `max` bytes: a server that
/// streams forever costs `max` bytes of memory, not all of it.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Read(request_error(e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes, `outer: cause: root cause`, so that the user
/// reads "Connection refused" and not only "error sending request". A cause
/// whose text the message already holds is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A reqwest error's chain, without the URL reqwest adds: callers name the
/// request themselves, with the userinfo stripped (see `without_userinfo`).
pub(crate) fn request_error(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

/// The URL without `user:password@`, for messages: a gateway given as
/// `https://user:pass@host` must not print the password in every error.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends where the URL parser ends it (`\` is a separator
    // for http and https).
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Keys of the config file whose values are secrets.
const SECRET_KEYS: &[&str] = &["token", "s3_secret_key"];

/// A config file parse error, with its position but without the source line
/// that toml quotes (it can be `s3_secret_key = "...`), and with any secret
/// value that the message itself repeats replaced by `<redacted>`.
fn toml_error_without_source(e: &toml::de::Error, text: &str) -> String {
    let mut message = e.message().trim().to_string();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches(['"', '\'']);
        let value = value.trim().trim_matches(['"', '\'']).trim();
        if SECRET_KEYS.contains(&key) && !value.is_empty() {
            message = message.replace(value, "<redacted>");
        }
    }
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count()
                + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_stripped_from_urls_in_messages() {
        assert_eq!(
            without_userinfo("https://admin:pw@gw.local/apis/ims/"),
            "https://gw.local/apis/ims/"
        );
        assert_eq!(without_userinfo("https://a@b:pw@gw"), "https://gw");
        assert_eq!(
            without_userinfo("https://gw.local/x@y"),
            "https://gw.local/x@y"
        );
        assert_eq!(without_userinfo("not a url"), "not a url");
    }

    #[test]
    fn a_secret_echoed_by_a_config_parse_error_is_redacted() {
        let text = "gateway = \"https://gw\"\ns3_secret_key = 918273645\n";
        let e = toml::from_str::<Connect>(text).unwrap_err();
        assert!(e.to_string().contains("918273645"), "toml quotes it: {e}");
        let message = toml_error_without_source(&e, text);
        assert!(
            !message.contains("918273645") && message.starts_with("line 2, column 17: "),
            "{message}"
        );
    }

    #[test]
    fn the_error_chain_names_the_root_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped: {0}")]
        struct Repeats(#[source] std::io::Error);
        assert_eq!(
            error_chain(&Outer(io)),
            "error sending request: Connection refused"
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(error_chain(&Repeats(io)), "wrapped: Connection refused");
    }
}
