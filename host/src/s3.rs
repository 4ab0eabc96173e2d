//! The host's S3 client (Ceph RGW): small reads for plugins, and the
//! streaming GETs that move artifacts into archives.
use crate::bindings::types::{HostError, ObjectEntry, ObjectHead};
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;

/// Where and as whom to reach S3. Never shown to plugins.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

fn failed(op: &str, bucket: &str, key: &str, e: impl std::fmt::Display) -> HostError {
    HostError::Failed(format!("S3 {op} s3://{bucket}/{key}: {e}"))
}

impl S3Store {
    /// Path-style, and checksums only when required: Ceph RGW 16 rejects the
    /// SDK's default aws-chunked uploads.
    pub fn new(s: &S3Settings) -> S3Store {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&s.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                &s.access_key,
                &s.secret_key,
                s.session_token.clone().filter(|t| !t.is_empty()),
                None,
                "imsflow",
            ))
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
        }
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, HostError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(h) => Ok(Some(ObjectHead {
                size: h.content_length().unwrap_or(0) as u64,
                etag: h.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                content_type: h.content_type().map(String::from),
                metadata: h
                    .metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            })),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(failed("HEAD", bucket, key, DisplayErrorContext(e))),
        }
    }

    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectEntry>, HostError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                    return Err(HostError::NotFound(format!("bucket `{bucket}`")));
                }
                Err(e) => return Err(failed("LIST", bucket, prefix, DisplayErrorContext(e))),
            };
            out.extend(page.contents().iter().map(|o| ObjectEntry {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or(0) as u64,
                etag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
            }));
        }
        Ok(out)
    }

    /// A small object, refused past `max` bytes (checked before reading it).
    pub async fn get_small(&self, bucket: &str, key: &str, max: u64) -> Result<Vec<u8>, HostError> {
        let head = self
            .head(bucket, key)
            .await?
            .ok_or_else(|| HostError::NotFound(format!("s3://{bucket}/{key}")))?;
        if head.size > max {
            return Err(HostError::TooLarge(max));
        }
        let out = self.open(bucket, key, None, None).await?;
        let bytes = out
            .collect()
            .await
            .map_err(|e| failed("GET", bucket, key, e))?;
        Ok(bytes.to_vec())
    }

    /// Opens a GET stream, optionally of a byte range `[start, end)` and only
    /// if the object still has `if_match` as its ETag.
    pub async fn open(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<aws_sdk_s3::primitives::ByteStream, HostError> {
        let mut req = self.client.get_object().bucket(bucket).key(key);
        if let Some((start, end)) = range {
            req = req.range(format!("bytes={start}-{}", end - 1));
        }
        if let Some(etag) = if_match {
            req = req.if_match(format!("\"{etag}\""));
        }
        match req.send().await {
            Ok(out) => Ok(out.body),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                Err(HostError::Failed(format!(
                    "s3://{bucket}/{key} changed since it was planned (ETag is no longer {})",
                    if_match.unwrap_or_default()
                )))
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                Err(HostError::NotFound(format!("s3://{bucket}/{key}")))
            }
            Err(e) => Err(failed("GET", bucket, key, DisplayErrorContext(e))),
        }
    }
}
