//! The host's S3 client (Ceph RGW): small reads for plugins, and the
//! streaming GETs that move artifacts into archives.
use crate::connect::CaBundle;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::{ByteStream, Length};
use std::collections::BTreeMap;
use std::path::Path;

/// Where and as whom to reach S3. Never shown to plugins.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    /// Extra trusted roots (`--ca-file`, the platform CA), added to the
    /// system's: an RGW behind the site's private CA must verify.
    pub ca: Option<CaBundle>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// An object's metadata, as a HEAD answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// ISO 8601, UTC.
    pub last_modified: Option<String>,
    pub accept_ranges: Option<String>,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    pub etag: String,
    /// ISO 8601, UTC.
    pub last_modified: Option<String>,
    pub storage_class: Option<String>,
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
}

/// A time as Python's `isoformat()` prints an aware UTC datetime, which is
/// how HPE's export records them: microseconds only when there are any.
pub fn isoformat(t: &aws_sdk_s3::primitives::DateTime) -> Option<String> {
    let dt = chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())?;
    let micros = dt.timestamp_subsec_micros();
    Some(if micros == 0 {
        dt.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    })
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{what} is larger than {max} bytes")]
    TooLarge { what: String, max: u64 },
    #[error("s3://{bucket}/{key} changed since it was planned (its ETag is no longer {etag})")]
    Changed {
        bucket: String,
        key: String,
        etag: String,
    },
    #[error("{0}")]
    Failed(String),
}

#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

/// An SDK error with its causes, `dispatch failure: io error: ...: UnknownIssuer`.
/// Not the SDK's `DisplayErrorContext`: that one appends the error's Rust
/// Debug form, which is no message for a user.
struct DisplayErrorContext<E>(E);

impl<E: std::error::Error + 'static> std::fmt::Display for DisplayErrorContext<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::connect::error_chain(&self.0))
    }
}

fn failed(op: &str, bucket: &str, key: &str, e: impl std::fmt::Display) -> S3Error {
    S3Error::Failed(format!("S3 {op} s3://{bucket}/{key}: {e}"))
}

impl S3Store {
    /// Path-style, and checksums only when required: Ceph RGW 16 rejects the
    /// SDK's default aws-chunked uploads.
    pub fn new(s: &S3Settings) -> S3Store {
        let mut conf = aws_sdk_s3::Config::builder();
        if let Some(ca) = &s.ca {
            conf = conf.http_client(https_client_trusting(ca));
        }
        let conf = conf
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

    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, S3Error> {
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
                etag: unquote(h.e_tag()),
                content_type: h.content_type().map(String::from),
                metadata: h
                    .metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
                last_modified: h.last_modified().and_then(isoformat),
                accept_ranges: h.accept_ranges().map(String::from),
            })),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(failed("HEAD", bucket, key, DisplayErrorContext(e))),
        }
    }

    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectEntry>, S3Error> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .fetch_owner(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                    return Err(S3Error::NotFound(format!("bucket `{bucket}`")));
                }
                Err(e) => return Err(failed("LIST", bucket, prefix, DisplayErrorContext(e))),
            };
            out.extend(page.contents().iter().map(|o| ObjectEntry {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or(0) as u64,
                etag: unquote(o.e_tag()),
                last_modified: o.last_modified().and_then(isoformat),
                storage_class: o.storage_class().map(|c| c.as_str().to_string()),
                owner_id: o.owner().and_then(|w| w.id()).map(String::from),
                owner_name: o.owner().and_then(|w| w.display_name()).map(String::from),
            }));
        }
        Ok(out)
    }

    /// A small object, refused past `max` bytes (checked before reading it).
    pub async fn get_small(&self, bucket: &str, key: &str, max: u64) -> Result<Vec<u8>, S3Error> {
        let head = self
            .head(bucket, key)
            .await?
            .ok_or_else(|| S3Error::NotFound(format!("s3://{bucket}/{key}")))?;
        if head.size > max {
            return Err(S3Error::TooLarge {
                what: format!("s3://{bucket}/{key}"),
                max,
            });
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
    ) -> Result<ByteStream, S3Error> {
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
                Err(S3Error::Changed {
                    bucket: bucket.into(),
                    key: key.into(),
                    etag: if_match.unwrap_or_default().into(),
                })
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                Err(S3Error::NotFound(format!("s3://{bucket}/{key}")))
            }
            Err(e) => Err(failed("GET", bucket, key, DisplayErrorContext(e))),
        }
    }
}

/// The SDK's default HTTPS client (rustls with aws-lc, the system's roots,
/// proxies from the environment), trusting `ca` as well. The SDK has no
/// setting for extra roots: they need a client of our own.
fn https_client_trusting(ca: &CaBundle) -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
    let tls_context = ca.s3_tls().clone();
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut conn = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .tls_context(tls_context.clone());
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

/// Uploads. Bodies stream from a byte range of a file (a tar member or a
/// directory archive's file): nothing is staged or held in memory whole.
impl S3Store {
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool, S3Error> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(failed("HEAD bucket", bucket, "", DisplayErrorContext(e))),
        }
    }

    async fn body(path: &Path, offset: u64, len: u64) -> Result<ByteStream, S3Error> {
        ByteStream::read_from()
            .path(path)
            .offset(offset)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(|e| S3Error::Failed(format!("reading {}: {e}", path.display())))
    }

    /// One PUT of `len` bytes of `path` from `offset`; returns the new ETag.
    pub async fn put_file_range(
        &self,
        target: (&str, &str),
        source: (&Path, u64, u64),
        content_type: Option<&str>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, S3Error> {
        let (bucket, key) = target;
        let (path, offset, len) = source;
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(len as i64)
            .set_content_type(content_type.map(String::from))
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .body(Self::body(path, offset, len).await?)
            .send()
            .await
            .map_err(|e| failed("PUT", bucket, key, DisplayErrorContext(e)))?;
        Ok(unquote(out.e_tag()))
    }

    /// A multipart upload of `len` bytes of `path` from `offset`, in parts of
    /// `part_size` (the last one shorter), so that the ETag is `<md5>-N` as
    /// the source's was. Any failure aborts the upload: no part stays behind
    /// and nothing becomes visible. Returns the new ETag.
    pub async fn put_file_range_multipart(
        &self,
        target: (&str, &str),
        source: (&Path, u64, u64),
        part_size: u64,
        content_type: Option<&str>,
        metadata: &BTreeMap<String, String>,
        on_opened: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String, S3Error> {
        let (bucket, key) = target;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type.map(String::from))
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| failed("CreateMultipartUpload", bucket, key, DisplayErrorContext(e)))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        // The caller records the id (the journal), so that an upload cut off
        // by a crash is aborted on resume instead of left orphaned.
        on_opened(&upload_id);
        let result = self
            .upload_parts(target, source, part_size, &upload_id)
            .await;
        if result.is_err() {
            let _ = self.abort_multipart(bucket, key, &upload_id).await;
        }
        result
    }

    /// Aborts a multipart upload; one that no longer exists (completed or
    /// aborted already) is not an error.
    pub async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), S3Error> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(()),
            Err(e) => Err(failed(
                "AbortMultipartUpload",
                bucket,
                key,
                DisplayErrorContext(e),
            )),
        }
    }

    async fn upload_parts(
        &self,
        (bucket, key): (&str, &str),
        (path, offset, len): (&Path, u64, u64),
        part_size: u64,
        upload_id: &str,
    ) -> Result<String, S3Error> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let part_size = part_size.max(1);
        let count = len.div_ceil(part_size).max(1);
        let mut parts = Vec::new();
        for n in 0..count {
            let start = n * part_size;
            let this = part_size.min(len - start);
            let out = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(n as i32 + 1)
                .content_length(this as i64)
                .body(Self::body(path, offset + start, this).await?)
                .send()
                .await
                .map_err(|e| failed("UploadPart", bucket, key, DisplayErrorContext(e)))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(n as i32 + 1)
                    .set_e_tag(out.e_tag().map(String::from))
                    .build(),
            );
        }
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                failed(
                    "CompleteMultipartUpload",
                    bucket,
                    key,
                    DisplayErrorContext(e),
                )
            })?;
        Ok(unquote(out.e_tag()))
    }
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}
