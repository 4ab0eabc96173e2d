//! The settings file, `imsflow.toml`, and the settings as flags and the
//! environment give them: `Connect` (every field also a flag and an
//! `IMSFLOW_<NAME>` variable), `[services]` and `[export]`. This module only
//! reads and checks them; `connect` resolves them into clients.
use crate::backends::SiteServices;
use crate::net::{MAX_SMALL_FILE, without_userinfo};
use std::path::{Path, PathBuf};

/// The config file read when none is named; the only one that may be absent.
pub const DEFAULT_CONFIG: &str = "~/.config/imsflow/imsflow.toml";
/// The node-wide config file (the package ships `imsflow.toml.example`
/// beside it), read when none is named and the user has no `DEFAULT_CONFIG`.
pub const SYSTEM_CONFIG: &str = "/etc/imsflow/imsflow.toml";

/// Connection settings. Every field can come from the config file
/// (`imsflow.toml`, same names), the environment (`IMSFLOW_<NAME>`) or a flag.
#[derive(Default, Clone, serde::Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Connection")]
pub struct Connect {
    /// API gateway base URL [default: https://api-gw-service-nmn.local].
    #[arg(long, env = "IMSFLOW_GATEWAY")]
    pub gateway: Option<String>,
    /// Bearer token for the gateway (skips Keycloak). Any user can read a
    /// command line (`ps`): IMSFLOW_TOKEN, --token-file or the config file
    /// keep it out of sight.
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
    /// S3 access key; with --s3-secret-key and --s3-endpoint, STS is skipped.
    #[arg(long, env = "IMSFLOW_S3_ACCESS_KEY")]
    pub s3_access_key: Option<String>,
    /// S3 secret key. Any user can read a command line (`ps`):
    /// IMSFLOW_S3_SECRET_KEY or the config file keep it out of sight.
    #[arg(long, env = "IMSFLOW_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    /// Seconds to open a connection (TCP and TLS) to the gateway, Keycloak,
    /// STS or the Kubernetes API, 1 to 86400 [default: 10].
    #[arg(long, env = "IMSFLOW_CONNECT_TIMEOUT", value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
    /// Seconds for a whole request to those, answer included, 1 to 86400
    /// [default: 60].
    #[arg(long, env = "IMSFLOW_REQUEST_TIMEOUT", value_name = "SECONDS")]
    pub request_timeout: Option<u64>,
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
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A config file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("config file {}: {message}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl Connect {
    /// Fills unset fields from a config file (see `config_file`).
    pub fn with_file(mut self, path: &Path) -> Result<Connect, ConfigError> {
        let text =
            crate::read::read_text_capped(path, MAX_SMALL_FILE, "config file").map_err(|e| {
                ConfigError {
                    path: path.into(),
                    message: e.reason,
                }
            })?;
        let file: Connect = toml::from_str(&text).map_err(|e| ConfigError {
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
            s3_secret_key,
            connect_timeout,
            request_timeout
        );
        self.from_file = Some((path.to_path_buf(), filled));
        SiteServices::new(&file.services).map_err(|message| ConfigError {
            path: path.into(),
            message,
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

    /// The stock services and the site's (`[services]`), for validating
    /// workflows and for the gateway client.
    pub fn site_services(&self) -> Result<SiteServices, ConfigError> {
        SiteServices::new(&self.services).map_err(|message| ConfigError {
            path: self
                .from_file
                .as_ref()
                .map(|(path, _)| path.clone())
                .unwrap_or_default(),
            message,
        })
    }

    /// Where a set field's value came from: the config file, the environment
    /// (clap reads `IMSFLOW_<FIELD>` when the flag is absent) or the flag.
    pub(crate) fn origin(&self, field: &'static str, value: &std::ffi::OsStr) -> String {
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
}

/// The config file to read: `--config`, else `$IMSFLOW_CONFIG`, else
/// `~/.config/imsflow/imsflow.toml`, else `/etc/imsflow/imsflow.toml`. A file named by the flag or the
/// variable must exist (as for kubectl and helm): with a mistyped path,
/// falling back to the NCN defaults would talk to whatever system this host
/// reaches. Only the default file may be absent (`None`).
pub fn config_file(flag: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    let named = match (flag, std::env::var_os("IMSFLOW_CONFIG")) {
        (Some(path), _) => Some((path.to_path_buf(), "--config")),
        (None, Some(var)) if !var.is_empty() => Some((PathBuf::from(var), "$IMSFLOW_CONFIG")),
        _ => None,
    };
    if let Some((path, how)) = named {
        return match path.try_exists() {
            Ok(true) => Ok(Some(path)),
            Ok(false) => Err(ConfigError {
                path,
                message: format!(
                    "named by {how}, does not exist (only the defaults {DEFAULT_CONFIG} and {SYSTEM_CONFIG} may be absent); fix the path, or unset {how}"
                ),
            }),
            Err(e) => Err(ConfigError {
                path,
                message: format!("named by {how}, cannot be reached: {e}"),
            }),
        };
    }
    let user = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(DEFAULT_CONFIG.trim_start_matches("~/")));
    Ok(user
        .into_iter()
        .chain([PathBuf::from(SYSTEM_CONFIG)])
        .find(|p| p.exists()))
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
    fn timeouts_come_from_the_file_unless_set_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imsflow.toml");
        std::fs::write(&path, "request_timeout = 2\nconnect_timeout = 3\n").unwrap();
        let from_file = Connect::default().with_file(&path).unwrap();
        assert_eq!(
            (from_file.request_timeout, from_file.connect_timeout),
            (Some(2), Some(3))
        );
        let flag = Connect {
            request_timeout: Some(5),
            ..Default::default()
        }
        .with_file(&path)
        .unwrap();
        assert_eq!(flag.request_timeout, Some(5));
    }
}
