//! What host imports read from: CSM services over HTTP, S3, and the input
//! archive. Plugins never see the credentials held here.
use crate::archive::ArchiveReader;
use crate::bindings::types::{HostError, ObjectEntry, ObjectHead, ServiceResponse};
use futures::future::BoxFuture;
use std::sync::Arc;

/// Services a step may be granted, and the gateway path each maps to.
pub const SERVICES: &[(&str, &str)] = &[
    ("ims", "apis/ims/"),
    ("bos", "apis/bos/"),
    ("bss", "apis/bss/"),
    ("product-catalog", "apis/product-catalog/"),
];

pub fn is_known_service(name: &str) -> bool {
    SERVICES.iter().any(|(n, _)| *n == name)
}

/// Largest service response body handed to a plugin.
const MAX_SERVICE_BODY: usize = 64 << 20;

/// Reads of S3 objects. The implementation holds the credentials.
pub trait ObjectStore: Send + Sync {
    fn head<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ObjectHead>, HostError>>;
    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ObjectEntry>, HostError>>;
    fn get_small<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        max: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, HostError>>;
}

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
    pub s3: Option<Arc<dyn ObjectStore>>,
    pub archive: Option<ArchiveReader>,
}

impl Backends {
    pub fn s3(&self) -> Result<&dyn ObjectStore, HostError> {
        self.s3
            .as_deref()
            .ok_or_else(|| HostError::Failed("no S3 endpoint is configured for this run".into()))
    }

    pub async fn service_get(
        &self,
        service: &str,
        path: &str,
    ) -> Result<ServiceResponse, HostError> {
        let client = self
            .services
            .as_ref()
            .ok_or_else(|| HostError::Failed("no CSM gateway is configured for this run".into()))?;
        let base = SERVICES
            .iter()
            .find(|(n, _)| *n == service)
            .map(|(_, b)| *b)
            .ok_or_else(|| HostError::NotFound(format!("unknown service `{service}`")))?;
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
            .map_err(|e| HostError::Failed(format!("GET {url}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| HostError::Failed(format!("GET {url}: {e}")))?;
        if body.len() > MAX_SERVICE_BODY {
            return Err(HostError::TooLarge(MAX_SERVICE_BODY as u64));
        }
        Ok(ServiceResponse {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
