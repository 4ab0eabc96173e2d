//! What host imports read from: CSM services over HTTP, S3, and the input
//! archive. Plugins never see the credentials held here.
use crate::archive::ArchiveReader;
use crate::k8s::{Kube, KubeError};
use crate::net::{BodyError, error_chain, read_capped, request_error, without_userinfo};
use crate::s3::S3Store;
use std::sync::Arc;

/// Services a step may be granted, and the gateway path each maps to.
/// `product-catalog` is not behind the gateway: it is the catalog's
/// ConfigMaps in the Kubernetes API (see `catalog_get`).
pub const SERVICES: &[(&str, &str)] = &[
    ("ims", "apis/ims/"),
    ("bos", "apis/bos/"),
    ("bss", "apis/bss/"),
    ("product-catalog", ""),
];

/// The services a grant may name: the stock ones (`SERVICES`) and those the
/// site's config file adds (`[services]`: name -> gateway path), for site
/// plugins; grants and path checks apply as to stock ones. Built from the
/// settings and passed in: to validation and in `Backends`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteServices {
    /// Name -> gateway path, ending in `/`.
    site: std::collections::BTreeMap<String, String>,
}

impl SiteServices {
    /// Checks site services: `bos-v1 = "/apis/bos/v1"`. A name is lowercase
    /// letters, digits and `-` and not a stock service's; a path is under
    /// `/apis/`, without dot segments, query or fragment.
    pub fn new(
        services: &std::collections::BTreeMap<String, String>,
    ) -> Result<SiteServices, String> {
        let mut site = std::collections::BTreeMap::new();
        for (name, path) in services {
            let name_ok = name.len() <= 64
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !name_ok {
                return Err(format!(
                    "service name `{name}`: use lowercase letters, digits and `-`, starting with a letter"
                ));
            }
            if SERVICES.iter().any(|(n, _)| n == name) {
                return Err(format!(
                    "service `{name}` is a stock service; give the site's service another name"
                ));
            }
            let base = path.trim_matches('/');
            if !base.starts_with("apis/") || base.len() <= "apis/".len() || base.contains("//") {
                return Err(format!(
                    "service `{name}`: the path `{}` must be under /apis/ on the gateway",
                    path.escape_debug()
                ));
            }
            check_service_path(base).map_err(|why| {
                format!(
                    "service `{name}`: the path `{}`: {why}",
                    path.escape_debug()
                )
            })?;
            site.insert(name.clone(), format!("{base}/"));
        }
        Ok(SiteServices { site })
    }

    /// The gateway path of a stock or site service.
    pub fn base(&self, name: &str) -> Option<String> {
        SERVICES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.to_string())
            .or_else(|| self.site.get(name).cloned())
    }

    pub fn is_known(&self, name: &str) -> bool {
        self.base(name).is_some()
    }

    /// Stock services, then the site's.
    pub fn known(&self) -> Vec<String> {
        let mut all: Vec<String> = SERVICES.iter().map(|(n, _)| n.to_string()).collect();
        all.extend(self.site.keys().cloned());
        all
    }
}

/// A service's answer: HTTP status and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Something the run needs and was not given: what, and how to give it.
    #[error("no {0} is configured for this run; {1}")]
    NotConfigured(&'static str, &'static str),
    /// A request that would leave what the grant covers.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Failed(String),
}

/// Largest service response body handed to a plugin.
const MAX_SERVICE_BODY: usize = 64 << 20;

/// CSM services behind one API gateway, with a bearer token.
#[derive(Clone)]
pub struct ServiceClient {
    pub http: reqwest::Client,
    /// e.g. `https://api-gw-service-nmn.local`
    pub gateway: String,
    pub token: Option<String>,
}

#[derive(Clone, Default)]
pub struct Backends {
    pub services: Option<ServiceClient>,
    pub s3: Option<Arc<S3Store>>,
    pub kube: Option<Kube>,
    pub archive: Option<ArchiveReader>,
    /// The services `service_call` may reach: stock and the site's.
    pub site_services: SiteServices,
}

impl Backends {
    pub fn s3(&self) -> Result<&S3Store, BackendError> {
        self.s3.as_deref().ok_or(BackendError::NotConfigured(
            "S3 endpoint",
            "set --s3-endpoint with its keys, or --gateway for STS",
        ))
    }

    pub async fn service_get(
        &self,
        service: &str,
        path: &str,
    ) -> Result<ServiceResponse, BackendError> {
        if service == "product-catalog" {
            return self.catalog_get(path).await;
        }
        self.service_call(reqwest::Method::GET, service, path, &[])
            .await
    }

    /// A request to a service behind the gateway, with the bearer token. The
    /// path is confined as for plugins; the query is the host's own.
    pub async fn service_call(
        &self,
        method: reqwest::Method,
        service: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<ServiceResponse, BackendError> {
        let client = self
            .services
            .as_ref()
            .ok_or(BackendError::NotConfigured("CSM gateway", "set --gateway"))?;
        let base = self
            .site_services
            .base(service)
            .ok_or_else(|| BackendError::NotFound(format!("unknown service `{service}`")))?;
        let url = service_url(&client.gateway, service, &base, path)?;
        // Messages name the request without the gateway's userinfo.
        let shown = without_userinfo(url.as_str());
        let mut url = url;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = client.http.request(method.clone(), url);
        if let Some(token) = &client.token {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| BackendError::Failed(format!("{method} {shown}: {}", request_error(e))))?;
        let status = resp.status().as_u16();
        let body = read_capped(resp, MAX_SERVICE_BODY)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(max) => BackendError::TooLarge(max as u64),
                e => BackendError::Failed(format!("{method} {shown}: {e}")),
            })?;
        Ok(ServiceResponse {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Why a plugin's service path is refused: it could leave the service's
/// prefix once a URL parser, the gateway or the service decoded it.
fn check_service_path(path: &str) -> Result<(), String> {
    if let Some(c) = path.chars().find(|c| matches!(c, '?' | '#')) {
        return Err(format!(
            "`{c}` is not allowed: a service path has no query or fragment"
        ));
    }
    // The URL parser reads `\` as `/` and drops tabs and newlines, so either
    // could make a dot segment out of what was checked as something else.
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Err("backslashes and control characters are not allowed".into());
    }
    for segment in path.split('/') {
        let decoded = percent_decode(segment)
            .ok_or_else(|| format!("`{segment}` is not a valid percent-encoded segment"))?;
        if decoded == "." || decoded == ".." {
            return Err("`.` and `..` segments are not allowed, encoded or not".into());
        }
        // A second decoding (by the gateway or the service) must not find
        // anything the first one would have refused.
        if decoded
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '?' | '#' | '%') || c.is_control())
        {
            return Err(format!(
                "`{segment}` encodes `/`, `\\`, `?`, `#`, `%` or a control character, which is not allowed"
            ));
        }
    }
    Ok(())
}

/// `%XX` decoded once; None when a `%` is not followed by two hex digits.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The URL of `path` under `{gateway}/{base}`, refused (`Denied`) unless it
/// provably stays there: the path is checked first, and the parsed result
/// must still have the gateway's origin, start with the service prefix and
/// carry no query or fragment.
fn service_url(
    gateway: &str,
    service: &str,
    base: &str,
    path: &str,
) -> Result<reqwest::Url, BackendError> {
    let denied = |why: String| {
        // The path is the plugin's: shown escaped, so it cannot forge output.
        let path = path.escape_debug();
        tracing::warn!("denied: {service} path `{path}`: {why}");
        BackendError::Denied(format!(
            "service `{service}`: path `{path}` is refused: {why}"
        ))
    };
    check_service_path(path).map_err(denied)?;
    let prefix = format!("{}/{base}", gateway.trim_end_matches('/'));
    let prefix_url = reqwest::Url::parse(&prefix).map_err(|e| {
        BackendError::Failed(format!(
            "the gateway URL `{}` is not a URL: {e}",
            without_userinfo(gateway)
        ))
    })?;
    let url = reqwest::Url::parse(&format!("{prefix}{}", path.trim_start_matches('/')))
        .map_err(|e| denied(format!("not a URL path: {e}")))?;
    if url.origin() != prefix_url.origin()
        || !url.path().starts_with(prefix_url.path())
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(denied(format!(
            "it resolves outside `{}`",
            without_userinfo(prefix_url.as_str())
        )));
    }
    Ok(url)
}

impl Backends {
    /// The product catalog service: `configmaps` lists the catalog's
    /// ConfigMaps (label `type=cray-product-catalog`, namespace `services`:
    /// the main one and the per-product split ones); `configmaps/<name>` reads
    /// one of them. Nothing else in the Kubernetes API is reachable.
    async fn catalog_get(&self, path: &str) -> Result<ServiceResponse, BackendError> {
        let kube = self.kube.as_ref().ok_or(BackendError::NotConfigured(
            "kubeconfig",
            "the product catalog is read through Kubernetes: set --kubeconfig \
                 (or KUBECONFIG), or leave the catalog's artifacts out with \
                 --exclude-links-from-product-catalog",
        ))?;
        let base = "/api/v1/namespaces/services/configmaps";
        let api_path = match path.trim_matches('/') {
            "configmaps" => format!("{base}?labelSelector=type%3Dcray-product-catalog"),
            p => match p.strip_prefix("configmaps/") {
                Some(name) if is_catalog_configmap(name) => format!("{base}/{name}"),
                Some(name) => {
                    let name = name.escape_debug();
                    tracing::warn!("denied: product-catalog ConfigMap `{name}`");
                    return Err(BackendError::Denied(format!(
                        "product-catalog: `{name}` is not a catalog ConfigMap name (`cray-product-catalog` followed by [a-z0-9.-] only)"
                    )));
                }
                None => {
                    return Err(BackendError::NotFound(format!(
                        "product-catalog serves `configmaps` and `configmaps/cray-product-catalog*`, not `{p}`"
                    )));
                }
            },
        };
        let (status, body) = kube.get(&api_path).await.map_err(|e| match e {
            KubeError::TooLarge { max, .. } => BackendError::TooLarge(max as u64),
            e => BackendError::Failed(error_chain(&e)),
        })?;
        Ok(ServiceResponse { status, body })
    }
}

/// A catalog ConfigMap name: `cray-product-catalog` and the split ones
/// (`cray-product-catalog-<product>`). Only `[a-z0-9.-]`, as Kubernetes
/// allows, so nothing in it is a path separator, an escape, a query or a
/// dot segment; at most 253 characters, the Kubernetes limit.
fn is_catalog_configmap(name: &str) -> bool {
    name.starts_with("cray-product-catalog")
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_stay_under_the_service_prefix() {
        let url = |path| service_url("https://u:p@gw/base/", "ims", "apis/ims/", path);
        assert_eq!(
            url("/v3/images/abc-1").unwrap().as_str(),
            "https://u:p@gw/base/apis/ims/v3/images/abc-1"
        );
        for hostile in [
            "..",
            "../bos",
            "a/../..",
            "%2e%2E/bos",
            "a%2f..%2f..",
            "a\\..\\..",
            "a?b",
            "a#b",
            "%2",
            "%zz",
            ".\n.",
        ] {
            let err = url(hostile).unwrap_err();
            assert!(matches!(err, BackendError::Denied(_)), "{hostile}: {err}");
            assert!(!err.to_string().contains("u:p"), "{err}");
        }
    }

    #[test]
    fn catalog_configmap_names_are_lowercase_digits_dots_and_dashes() {
        assert!(is_catalog_configmap("cray-product-catalog"));
        assert!(is_catalog_configmap("cray-product-catalog-cos.2"));
        for bad in [
            "cray-product-catalog/x",
            "cray-product-catalog\\x",
            "cray-product-catalog%2fx",
            "cray-product-catalog?x",
            "cray-product-catalog#x",
            "cray-product-catalogX",
            "other",
        ] {
            assert!(!is_catalog_configmap(bad), "{bad}");
        }
        assert!(!is_catalog_configmap(&format!(
            "cray-product-catalog{}",
            "a".repeat(240)
        )));
    }
}
