//! The host's S3 client (Ceph RGW): small reads for plugins, and the
//! streaming GETs that move artifacts into archives.
use crate::net::CaBundle;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;

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
        f.write_str(&crate::net::error_chain(&self.0))
    }
}

fn failed(op: &str, bucket: &str, key: &str, e: impl std::fmt::Display) -> S3Error {
    S3Error::Failed(format!("S3 {op} s3://{bucket}/{key}: {e}"))
}

impl S3Store {
    /// Path-style, and checksums only when required: Ceph RGW 16 rejects the
    /// SDK's default aws-chunked uploads.
    pub fn new(s: &S3Settings) -> S3Store {
        let conf = aws_sdk_s3::Config::builder()
            .http_client(https_client(s.ca.as_ref()))
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

/// What the SDK's default HTTPS client is (rustls, the system's roots,
/// proxies from the environment), with ring instead of aws-lc, and trusting
/// `ca` as well when given. The SDK has no setting for extra roots.
fn https_client(ca: Option<&CaBundle>) -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
    let tls_context = ca.map(|ca| ca.s3_tls().clone()).unwrap_or_default();
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut conn = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
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

    /// One PUT of `len` bytes of `path` from `offset`; returns the new ETag.
    pub async fn put_file_range(
        &self,
        target: (&str, &str),
        source: (&Path, u64, u64),
        content_type: Option<&str>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, S3Error> {
        let job = UploadJob::new(target, source, None, content_type, metadata, None);
        self.upload(&job, &UploadLimits::default().requests(), None)
            .await
    }

    /// A multipart upload of `len` bytes of `path` from `offset`, in parts of
    /// `part_size` (the last one shorter), so that the ETag is `<md5>-N` as
    /// the source's was. Parts go up concurrently (`UploadLimits::default`).
    /// Any failure aborts the upload: no part stays behind and nothing
    /// becomes visible. Returns the new ETag.
    pub async fn put_file_range_multipart(
        &self,
        target: (&str, &str),
        source: (&Path, u64, u64),
        part_size: u64,
        content_type: Option<&str>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, S3Error> {
        let job = UploadJob::new(
            target,
            source,
            Some(part_size),
            content_type,
            metadata,
            None,
        );
        self.upload(&job, &UploadLimits::default().requests(), None)
            .await
    }

    /// Uploads `jobs` concurrently, `limits.objects` objects and
    /// `limits.requests` PUTs (parts included) at a time, each read straight
    /// from its file range in blocks of `READ_BLOCK` bytes: memory stays
    /// about `limits.requests x 3 x READ_BLOCK` whatever the sizes. Returns
    /// each job's new ETag or error, in the order of `jobs`; one job failing
    /// does not stop the others.
    pub async fn upload_many(
        &self,
        jobs: Vec<UploadJob>,
        limits: UploadLimits,
    ) -> Vec<Result<String, S3Error>> {
        use futures::StreamExt;
        let requests = limits.requests();
        futures::stream::iter(jobs)
            .map(|job| {
                let s3 = self.clone();
                let requests = requests.clone();
                tokio::spawn(async move { s3.upload(&job, &requests, None).await })
            })
            .buffered(limits.objects.max(1))
            .map(|joined| {
                joined.unwrap_or_else(|e| Err(S3Error::Failed(format!("upload task: {e}"))))
            })
            .collect()
            .await
    }

    /// One job: a single PUT, or a multipart upload when it has a part size.
    /// Its sha256, when given, is checked on the bytes sent: a PUT's last
    /// block is held back until it matches (a PUT cut short stores nothing),
    /// and a multipart upload is completed only once the member's bytes
    /// hashed in parallel with the parts match (otherwise it is aborted).
    /// One job. `on_opened` receives a multipart upload's id as soon as it
    /// exists: the caller records it (the journal), so that an upload cut
    /// off by a crash is aborted on resume instead of left orphaned.
    pub async fn upload(
        &self,
        job: &UploadJob,
        requests: &Arc<Semaphore>,
        on_opened: Option<&(dyn Fn(&str) + Send + Sync)>,
    ) -> Result<String, S3Error> {
        let (bucket, key) = (job.bucket.as_str(), job.key.as_str());
        if job.len == 0
            && let Some(want) = &job.sha256
        {
            // No body to check it on the way.
            let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
            if !want.eq_ignore_ascii_case(empty) {
                return Err(S3Error::Failed(format!(
                    "s3://{bucket}/{key}: its bytes (none) have sha256 {empty}, not the {want} expected; nothing was stored"
                )));
            }
        }
        let Some(part_size) = job.part_size else {
            let _permit = requests.acquire().await;
            let verdict = Arc::new(std::sync::Mutex::new(None));
            let body = FileRange::new(job, job.offset, job.len, verdict.clone());
            let sent = self
                .client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_length(job.len as i64)
                .set_content_type(job.content_type.clone())
                .set_metadata(Some(job.metadata.clone().into_iter().collect()))
                .body(body.into_stream())
                .send()
                .await;
            if let Some(mismatch) = verdict.lock().unwrap().take() {
                return Err(S3Error::Failed(format!(
                    "s3://{bucket}/{key}: {mismatch}; the PUT was cut short, nothing was stored"
                )));
            }
            let out = sent.map_err(|e| failed("PUT", bucket, key, DisplayErrorContext(e)))?;
            return Ok(unquote(out.e_tag()));
        };
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(job.content_type.clone())
            .set_metadata(Some(job.metadata.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| failed("CreateMultipartUpload", bucket, key, DisplayErrorContext(e)))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        if let Some(on_opened) = on_opened {
            on_opened(&upload_id);
        }
        let result = self
            .upload_parts(job, part_size, &upload_id, requests)
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
        job: &UploadJob,
        part_size: u64,
        upload_id: &str,
        requests: &Arc<Semaphore>,
    ) -> Result<String, S3Error> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        use futures::{StreamExt, TryStreamExt};
        let (bucket, key) = (job.bucket.as_str(), job.key.as_str());
        let len = job.len;
        let part_size = part_size.max(1);
        let count = len.div_ceil(part_size).max(1);
        if count > 10_000 {
            return Err(failed(
                "UploadPart",
                bucket,
                key,
                format!("{len} bytes in parts of {part_size} make {count} parts, over S3's 10000"),
            ));
        }
        // The member's sha256, computed while the parts go up (they read
        // their own ranges concurrently, out of order).
        let hashing = job.sha256.clone().map(|want| {
            let (file, offset) = (job.file.clone(), job.offset);
            tokio::task::spawn_blocking(move || -> Result<(), String> {
                let got = sha256_of_range(&file, offset, len)
                    .map_err(|e| format!("reading {}: {e}", file.display()))?;
                if got.eq_ignore_ascii_case(&want) {
                    Ok(())
                } else {
                    Err(format!(
                        "its bytes have sha256 {got}, not the {want} expected"
                    ))
                }
            })
        });
        let no_verdict = Arc::new(std::sync::Mutex::new(None));
        let parts = futures::stream::iter(0..count)
            .map(|n| {
                let start = n * part_size;
                let this = part_size.min(len - start);
                let body =
                    FileRange::new_unchecked(job, job.offset + start, this, no_verdict.clone());
                async move {
                    let _permit = requests.acquire().await;
                    let out = self
                        .client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(n as i32 + 1)
                        .content_length(this as i64)
                        .body(body.into_stream())
                        .send()
                        .await
                        .map_err(|e| failed("UploadPart", bucket, key, DisplayErrorContext(e)))?;
                    Ok::<_, S3Error>(
                        CompletedPart::builder()
                            .part_number(n as i32 + 1)
                            .set_e_tag(out.e_tag().map(String::from))
                            .build(),
                    )
                }
            })
            // The parts of one object in flight at once, besides the semaphore
            // shared by all objects: parts are started in order.
            .buffered(MAX_PARTS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        if let Some(hashing) = hashing {
            hashing
                .await
                .map_err(|e| S3Error::Failed(format!("hashing s3://{bucket}/{key}: {e}")))?
                .map_err(|why| {
                    S3Error::Failed(format!(
                        "s3://{bucket}/{key}: {why}; the multipart upload was aborted, nothing was stored"
                    ))
                })?;
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
        let etag = unquote(out.e_tag());
        if !etag.is_empty() {
            return Ok(etag);
        }
        // RGW 16 answers a completion with an empty ETag: ask.
        match self.head(bucket, key).await? {
            Some(head) if head.size == len => Ok(head.etag),
            _ => Err(failed(
                "CompleteMultipartUpload",
                bucket,
                key,
                "completed without an ETag, and a HEAD does not show the object",
            )),
        }
    }
}

/// Blocks read from a file for an upload body (one read, one allocation and
/// one channel message per block; hyper sends them without copying).
const READ_BLOCK: usize = 1 << 20;
/// Parts of one multipart upload in flight at once, at most.
const MAX_PARTS_IN_FLIGHT: usize = 8;

/// One object to upload from a byte range of a file (`S3Store::upload_many`).
#[derive(Debug, Clone)]
pub struct UploadJob {
    pub bucket: String,
    pub key: String,
    /// The tar archive (or a directory archive's file) holding the bytes...
    pub file: PathBuf,
    /// ...at `[offset, offset + len)`.
    pub offset: u64,
    pub len: u64,
    /// Multipart in parts of this size (the last shorter), so that the ETag
    /// is `<md5>-N`; one PUT when None.
    pub part_size: Option<u64>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The bytes' expected sha256 (hex): checked while they are sent, and on
    /// a mismatch nothing becomes visible.
    pub sha256: Option<String>,
}

impl UploadJob {
    pub fn new(
        (bucket, key): (&str, &str),
        (file, offset, len): (&Path, u64, u64),
        part_size: Option<u64>,
        content_type: Option<&str>,
        metadata: &BTreeMap<String, String>,
        sha256: Option<&str>,
    ) -> UploadJob {
        UploadJob {
            bucket: bucket.into(),
            key: key.into(),
            file: file.into(),
            offset,
            len,
            part_size,
            content_type: content_type.map(String::from),
            metadata: metadata.clone(),
            sha256: sha256.map(String::from),
        }
    }
}

/// How much `upload_many` does at once.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Objects in flight.
    pub objects: usize,
    /// PUT requests in flight (single PUTs and parts of all objects).
    pub requests: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            objects: 4,
            requests: 8,
        }
    }
}

impl UploadLimits {
    /// The semaphore that `S3Store::upload` takes its requests from.
    pub fn requests(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.requests.max(1)))
    }
}

fn sha256_of_range(path: &Path, offset: u64, len: u64) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BLOCK];
    let mut left = len;
    while left > 0 {
        let n = READ_BLOCK.min(usize::try_from(left).unwrap_or(READ_BLOCK));
        file.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A request body read from `[offset, offset + len)` of a file by a thread
/// of the blocking pool, started when the body is first polled (the SDK
/// rebuilds the body for a retry: each attempt reads afresh). With an
/// expected sha256, the last block is sent only if the bytes match;
/// otherwise the body fails, the request is cut short, and `verdict` says why.
struct FileRange {
    file: PathBuf,
    offset: u64,
    len: u64,
    sha256: Option<String>,
    verdict: Arc<std::sync::Mutex<Option<String>>>,
}

impl FileRange {
    fn new(
        job: &UploadJob,
        offset: u64,
        len: u64,
        verdict: Arc<std::sync::Mutex<Option<String>>>,
    ) -> FileRange {
        FileRange {
            file: job.file.clone(),
            offset,
            len,
            sha256: job.sha256.clone(),
            verdict,
        }
    }

    fn new_unchecked(
        job: &UploadJob,
        offset: u64,
        len: u64,
        verdict: Arc<std::sync::Mutex<Option<String>>>,
    ) -> FileRange {
        FileRange {
            sha256: None,
            ..FileRange::new(job, offset, len, verdict)
        }
    }

    fn into_stream(self) -> ByteStream {
        let this = Arc::new(self);
        ByteStream::new(SdkBody::retryable(move || {
            SdkBody::from_body_1_x(FileRangeBody {
                source: Some(this.clone()),
                rx: None,
                remaining: this.len,
            })
        }))
    }

    /// Reads the range into `tx`, block by block (on the blocking pool).
    fn read_into(&self, tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) {
        use sha2::{Digest, Sha256};
        use std::io::{Read, Seek, SeekFrom};
        let mut hasher = self.sha256.as_ref().map(|_| Sha256::new());
        let opened = std::fs::File::open(&self.file).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.offset))?;
            Ok(f)
        });
        let mut file = match opened {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut left = self.len;
        while left > 0 {
            let n = READ_BLOCK.min(usize::try_from(left).unwrap_or(READ_BLOCK));
            let mut block = Vec::with_capacity(n);
            match (&mut file).take(n as u64).read_to_end(&mut block) {
                Ok(got) if got == n => {}
                Ok(got) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} ended {} bytes early",
                            self.file.display(),
                            left - got as u64
                        ),
                    )));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            left -= n as u64;
            if let Some(h) = &mut hasher {
                h.update(&block);
            }
            if left == 0
                && let (Some(h), Some(want)) = (hasher.take(), &self.sha256)
            {
                let got = hex::encode(h.finalize());
                if !got.eq_ignore_ascii_case(want) {
                    let why = format!("its bytes have sha256 {got}, not the {want} expected");
                    *self.verdict.lock().unwrap() = Some(why.clone());
                    let _ = tx.blocking_send(Err(std::io::Error::other(why)));
                    return;
                }
            }
            if tx.blocking_send(Ok(Bytes::from(block))).is_err() {
                return;
            }
        }
    }
}

struct FileRangeBody {
    /// Until the first poll.
    source: Option<Arc<FileRange>>,
    rx: Option<tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>>,
    remaining: u64,
}

impl http_body::Body for FileRangeBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        if let Some(source) = self.source.take() {
            // Two blocks queued, one being read, one being sent.
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            tokio::task::spawn_blocking(move || source.read_into(tx));
            self.rx = Some(rx);
        }
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(None);
        };
        match rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(block))) => {
                self.remaining = self.remaining.saturating_sub(block.len() as u64);
                Poll::Ready(Some(Ok(http_body::Frame::data(block))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}
