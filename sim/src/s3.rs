//! The simulator's own S3 client (IMS holds static S3 credentials too).
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use std::collections::BTreeMap;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct S3Config {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Debug, thiserror::Error)]
#[error("S3 {op} s3://{bucket}/{key}: {message}")]
pub struct S3Error {
    pub op: &'static str,
    pub bucket: String,
    pub key: String,
    pub message: String,
}

#[derive(Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
}

#[derive(Debug, Clone)]
pub struct Head {
    pub size: u64,
    pub etag: String,
    /// User metadata (`x-amz-meta-*`), names lower-case.
    pub metadata: BTreeMap<String, String>,
}

impl S3 {
    /// A client with the settings Ceph RGW needs: path-style addressing and
    /// checksums only when required (RGW 16 rejects aws-chunked trailers).
    pub fn new(cfg: &S3Config) -> S3 {
        // Plain HTTP: the simulator talks to the local RGW only.
        let conf = aws_sdk_s3::Config::builder()
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&cfg.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                &cfg.access_key,
                &cfg.secret_key,
                None,
                None,
                "csm-sim",
            ))
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        S3 {
            client: aws_sdk_s3::Client::from_conf(conf),
        }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Maps an SDK error, with its whole cause chain, to an `S3Error`.
    fn sdk<'a, E: std::error::Error>(
        op: &'static str,
        bucket: &'a str,
        key: &'a str,
    ) -> impl FnOnce(E) -> S3Error + 'a {
        move |e| Self::err(op, bucket, key, aws_sdk_s3::error::DisplayErrorContext(e))
    }

    fn err(op: &'static str, bucket: &str, key: &str, e: impl std::fmt::Display) -> S3Error {
        S3Error {
            op,
            bucket: bucket.into(),
            key: key.into(),
            message: e.to_string(),
        }
    }

    /// `None` when the object does not exist.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<Head>, S3Error> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(h) => Ok(Some(Head {
                size: h.content_length().unwrap_or(0) as u64,
                etag: h.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                metadata: h
                    .metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(Self::sdk("HEAD", bucket, key)(e)),
        }
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, S3Error> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(Self::sdk("GET", bucket, key))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| Self::err("GET", bucket, key, e))?;
        Ok(bytes.to_vec())
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<String, S3Error> {
        self.put_with_metadata(bucket, key, body, &BTreeMap::new())
            .await
    }

    /// A PUT with user metadata, as IMS tooling uploads (`md5sum`, ...).
    pub async fn put_with_metadata(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, S3Error> {
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(Self::sdk("PUT", bucket, key))?;
        Ok(out
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string())
    }

    /// A multipart upload in parts of `part_size` (ETag `<md5>-<parts>`).
    pub async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        part_size: usize,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, S3Error> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .send()
            .await
            .map_err(Self::sdk("MULTIPART PUT", bucket, key))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let mut parts = Vec::new();
        for (i, chunk) in body.chunks(part_size).enumerate() {
            let n = i as i32 + 1;
            let part = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(n)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .map_err(Self::sdk("MULTIPART PUT", bucket, key))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(part.e_tag().unwrap_or_default())
                    .build(),
            );
        }
        let done = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(Self::sdk("MULTIPART PUT", bucket, key))?;
        Ok(done
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string())
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(Self::sdk("DELETE", bucket, key))?;
        Ok(())
    }

    /// Moves an object (copy, then delete), as IMS does for soft delete.
    pub async fn rename(&self, bucket: &str, from: &str, to: &str) -> Result<(), S3Error> {
        self.client
            .copy_object()
            .bucket(bucket)
            .key(to)
            .copy_source(format!("{bucket}/{}", encode_key(from)))
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Copy)
            .send()
            .await
            .map_err(Self::sdk("COPY", bucket, from))?;
        self.delete(bucket, from).await
    }

    /// A copy in `part_size` parts (UploadPartCopy), as boto3's managed copy
    /// does for large objects: the target's ETag is `<md5 of part md5s>-<parts>`
    /// and it gets no user metadata. The source stays.
    pub async fn copy_multipart(
        &self,
        bucket: &str,
        from: &str,
        to: &str,
        size: u64,
        part_size: u64,
    ) -> Result<String, S3Error> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(to)
            .send()
            .await
            .map_err(Self::sdk("MULTIPART COPY", bucket, from))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let copied = self
            .copy_parts(bucket, from, to, &upload_id, size, part_size)
            .await;
        if copied.is_err() {
            // Leave no half-done upload holding RGW space.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(to)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        copied
    }

    async fn copy_parts(
        &self,
        bucket: &str,
        from: &str,
        to: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
    ) -> Result<String, S3Error> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let mut parts = Vec::new();
        let mut start = 0u64;
        while start < size {
            let end = (start + part_size).min(size) - 1;
            let n = parts.len() as i32 + 1;
            let part = self
                .client
                .upload_part_copy()
                .bucket(bucket)
                .key(to)
                .upload_id(upload_id)
                .part_number(n)
                .copy_source(format!("{bucket}/{}", encode_key(from)))
                .copy_source_range(format!("bytes={start}-{end}"))
                .customize()
                // RGW answers 411 to a bodiless PUT without a Content-Length,
                // and the SDK sends none for UploadPartCopy.
                .mutate_request(|req| {
                    req.headers_mut().insert("content-length", "0");
                })
                .send()
                .await
                .map_err(Self::sdk("MULTIPART COPY", bucket, from))?;
            let etag = part
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .unwrap_or_default();
            parts.push(CompletedPart::builder().part_number(n).e_tag(etag).build());
            start += part_size;
        }
        let done = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(to)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(Self::sdk("MULTIPART COPY", bucket, from))?;
        Ok(done
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string())
    }

    pub async fn create_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(e) => Err(Self::sdk("CREATE BUCKET", bucket, "")(e)),
        }
    }

    /// All objects under a prefix: key, size, etag.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, u64, String)>, S3Error> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(Self::sdk("LIST", bucket, prefix))?;
            for o in page.contents() {
                let etag = o.e_tag().unwrap_or_default().trim_matches('"').to_string();
                out.push((
                    o.key().unwrap_or_default().to_string(),
                    o.size().unwrap_or(0) as u64,
                    etag,
                ));
            }
        }
        Ok(out)
    }
}

/// Percent-encodes a key for `x-amz-copy-source` (slashes kept).
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Splits `s3://bucket/key` into its parts.
pub fn parse_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}
