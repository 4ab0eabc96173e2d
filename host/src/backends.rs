//! What host imports read from: CSM services over HTTP, S3, and the input
//! archive. Plugins never see the credentials held here.
use crate::archive::ArchiveReader;
use crate::kube::Kube;
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

pub fn is_known_service(name: &str) -> bool {
    SERVICES.iter().any(|(n, _)| *n == name)
}

/// A service's answer: HTTP status and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("no {0} is configured for this run")]
    NotConfigured(&'static str),
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
}

impl Backends {
    pub fn s3(&self) -> Result<&S3Store, BackendError> {
        self.s3
            .as_deref()
            .ok_or(BackendError::NotConfigured("S3 endpoint"))
    }

    pub async fn service_get(
        &self,
        service: &str,
        path: &str,
    ) -> Result<ServiceResponse, BackendError> {
        if service == "product-catalog" {
            return self.catalog_get(path).await;
        }
        let client = self
            .services
            .as_ref()
            .ok_or(BackendError::NotConfigured("CSM gateway"))?;
        let base = SERVICES
            .iter()
            .find(|(n, _)| *n == service)
            .map(|(_, b)| *b)
            .ok_or_else(|| BackendError::NotFound(format!("unknown service `{service}`")))?;
        let url = format!(
            "{}/{base}{}",
            client.gateway.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut req = client.http.get(&url);
        if let Some(token) = &client.token {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| BackendError::Failed(format!("GET {url}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| BackendError::Failed(format!("GET {url}: {e}")))?;
        if body.len() > MAX_SERVICE_BODY {
            return Err(BackendError::TooLarge(MAX_SERVICE_BODY as u64));
        }
        Ok(ServiceResponse {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

impl Backends {
    /// The product catalog service: `configmaps` lists the catalog's
    /// ConfigMaps (label `type=cray-product-catalog`, namespace `services`:
    /// the main one and the per-product split ones); `configmaps/<name>` reads
    /// one of them. Nothing else in the Kubernetes API is reachable.
    async fn catalog_get(&self, path: &str) -> Result<ServiceResponse, BackendError> {
        let kube = self
            .kube
            .as_ref()
            .ok_or(BackendError::NotConfigured("kubeconfig"))?;
        let base = "/api/v1/namespaces/services/configmaps";
        let api_path = match path.trim_matches('/') {
            "configmaps" => format!("{base}?labelSelector=type%3Dcray-product-catalog"),
            p => match p.strip_prefix("configmaps/") {
                Some(name)
                    if name.starts_with("cray-product-catalog") && !name.contains(['/', '?']) =>
                {
                    format!("{base}/{name}")
                }
                _ => {
                    return Err(BackendError::NotFound(format!(
                        "product-catalog serves `configmaps` and `configmaps/cray-product-catalog*`, not `{p}`"
                    )));
                }
            },
        };
        let (status, body) = kube
            .get(&api_path)
            .await
            .map_err(|e| BackendError::Failed(e.to_string()))?;
        Ok(ServiceResponse { status, body })
    }
}
