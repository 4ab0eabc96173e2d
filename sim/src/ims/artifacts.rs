//! What IMS does with S3: validates links, and moves or deletes a record's
//! artifacts on soft delete, undelete, purge and cascading hard delete.
use super::store::Record;
use crate::problem::Problem;
use crate::s3::{S3, parse_url};
use serde_json::{Value, json};

pub const ROOTFS: &str = "application/vnd.cray.image.rootfs.squashfs";
pub const MANIFEST: &str = "application/vnd.cray.image.manifest";
const DELETED: &str = "deleted/";

pub fn link_path(record: &Record) -> Option<&str> {
    record.get("link").and_then(link_path_value)
}

pub fn link_path_value(link: &Value) -> Option<&str> {
    link.get("path")?.as_str().filter(|p| !p.is_empty())
}

fn split(url: &str) -> Result<(&str, &str), Problem> {
    parse_url(url)
        .ok_or_else(|| Problem::unprocessable(format!("{url} is not an s3://bucket/key URL")))
}

/// A recipe link must name an existing object.
pub async fn check_recipe_link(s3: &S3, path: &str) -> Result<(), Problem> {
    let (bucket, key) = split(path)?;
    if s3.head(bucket, key).await?.is_none() {
        return Err(Problem::unprocessable(format!(
            "The S3 artifact {path} does not exist"
        )));
    }
    Ok(())
}

/// An image link must name a valid version 1.0 manifest whose artifacts all
/// exist, with exactly one rootfs (400 otherwise, as IMS answers).
pub async fn check_image_link(s3: &S3, path: &str) -> Result<(), Problem> {
    let (bucket, key) = split(path)?;
    if s3.head(bucket, key).await?.is_none() {
        return Err(Problem::unprocessable(format!(
            "The manifest {path} does not exist"
        )));
    }
    let manifest: Value = serde_json::from_slice(&s3.get(bucket, key).await?).map_err(|e| {
        Problem::unprocessable(format!("The manifest {path} is not valid JSON: {e}"))
    })?;
    if manifest.get("version").and_then(Value::as_str) != Some("1.0") {
        return Err(Problem::unprocessable(format!(
            "The manifest {path} is not version 1.0"
        )));
    }
    let Some(artifacts) = manifest.get("artifacts").and_then(Value::as_array) else {
        return Err(Problem::unprocessable(format!(
            "The manifest {path} has no artifacts list"
        )));
    };
    let mut rootfs = 0;
    for a in artifacts {
        let link = a.get("link");
        let apath = link.and_then(|l| l.get("path")).and_then(Value::as_str);
        let atype = link.and_then(|l| l.get("type")).and_then(Value::as_str);
        let (Some(apath), Some("s3")) = (apath, atype) else {
            return Err(Problem::unprocessable(format!(
                "The manifest {path} has an artifact without an s3 link"
            )));
        };
        let (b, k) = split(apath)?;
        if s3.head(b, k).await?.is_none() {
            return Err(Problem::unprocessable(format!(
                "The artifact {apath} in manifest {path} does not exist"
            )));
        }
        if a.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.starts_with(ROOTFS))
        {
            rootfs += 1;
        }
    }
    if rootfs != 1 {
        return Err(Problem::bad_request(format!(
            "The manifest {path} must have exactly one rootfs artifact, it has {rootfs}"
        )));
    }
    Ok(())
}

/// The manifest at `url`, or `None` when it is missing or not JSON (IMS's
/// `read_manifest_json` fails then, and soft delete leaves everything alone).
async fn manifest_json(s3: &S3, url: &str) -> Result<Option<Value>, Problem> {
    let Some((bucket, key)) = parse_url(url) else {
        return Ok(None);
    };
    if s3.head(bucket, key).await?.is_none() {
        return Ok(None);
    }
    Ok(serde_json::from_slice(&s3.get(bucket, key).await?).ok())
}

fn artifacts_of(manifest: &Value) -> Vec<Value> {
    manifest
        .get("artifacts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

async fn manifest_artifacts(s3: &S3, manifest_url: &str) -> Result<Option<Vec<Value>>, Problem> {
    Ok(manifest_json(s3, manifest_url)
        .await?
        .map(|m| artifacts_of(&m)))
}

fn artifact_url(a: &Value) -> Option<&str> {
    a.get("link")?.get("path")?.as_str()
}

/// boto3's managed copy, which IMS moves objects with, turns into a
/// multipart copy in 8 MiB parts from 8 MiB on (s3transfer's
/// `multipart_threshold` and `multipart_chunksize`).
pub const MANAGED_COPY_PART: u64 = 8 << 20;

fn moved_key(key: &str, to_deleted: bool) -> String {
    if to_deleted {
        format!("{DELETED}{key}")
    } else {
        key.strip_prefix(DELETED).unwrap_or(key).to_string()
    }
}

/// Moves `s3://b/k` to `s3://b/deleted/k` (or back) as IMS does: a managed
/// copy, then a delete of the source. Large objects thereby get a new
/// multipart ETag and lose their user metadata. Returns the new link
/// `{etag, path, type}` with the moved object's real ETag, or `None` when
/// the source does not exist (IMS logs and skips it).
async fn move_object(s3: &S3, url: &str, to_deleted: bool) -> Result<Option<Value>, Problem> {
    let (bucket, key) = split(url)?;
    let target = moved_key(key, to_deleted);
    let Some(head) = s3.head(bucket, key).await? else {
        tracing::warn!("soft delete: {url} does not exist; nothing to move");
        return Ok(None);
    };
    if head.size >= MANAGED_COPY_PART {
        s3.copy_multipart(bucket, key, &target, head.size, MANAGED_COPY_PART)
            .await?;
        s3.delete(bucket, key).await?;
    } else {
        s3.rename(bucket, key, &target).await?;
    }
    let etag = match s3.head(bucket, &target).await? {
        Some(h) => h.etag,
        None => return Err(Problem::internal(format!("{url}: the moved copy vanished"))),
    };
    Ok(Some(
        json!({ "etag": etag, "path": format!("s3://{bucket}/{target}"), "type": "s3" }),
    ))
}

/// Soft delete: moves the artifacts under `deleted/` and points the record at
/// its new location (images: a `deleted_manifest.json`, etag ""). An image
/// whose manifest cannot be read keeps its link and moves nothing.
pub async fn soft_delete(
    s3: &S3,
    kind: super::schema::Kind,
    record: &mut Record,
) -> Result<(), Problem> {
    use super::schema::Kind;
    let Some(path) = link_path(record).map(str::to_string) else {
        return Ok(());
    };
    match kind {
        Kind::PublicKey => {}
        Kind::Recipe => {
            let (bucket, key) = split(&path)?;
            move_object(s3, &path, true).await?;
            record["link"]["path"] = json!(format!("s3://{bucket}/{}", moved_key(key, true)));
        }
        Kind::Image => {
            let Some(manifest) = manifest_json(s3, &path).await? else {
                return Ok(());
            };
            let mut moved = Vec::new();
            for a in artifacts_of(&manifest) {
                let Some(url) = artifact_url(&a) else {
                    continue;
                };
                if let Some(link) = move_object(s3, url, true).await? {
                    let mut entry = json!({ "type": a.get("type"), "link": link });
                    if let Some(md5) = a.get("md5") {
                        entry["md5"] = md5.clone();
                    }
                    moved.push(entry);
                }
            }
            // IMS records no md5 for the manifest itself.
            if let Some(link) = move_object(s3, &path, true).await? {
                moved.push(json!({ "type": MANIFEST, "link": link }));
            }
            let (bucket, _) = split(&path)?;
            let id = record["id"].as_str().unwrap_or_default().to_string();
            let key = format!("{DELETED}{id}/deleted_manifest.json");
            let created = chrono::Local::now()
                .naive_local()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            let doc = json!({ "version": "1.0", "created": created, "artifacts": moved });
            s3.put(
                bucket,
                &key,
                serde_json::to_vec(&doc).map_err(Problem::internal)?,
            )
            .await?;
            record["link"] =
                json!({ "path": format!("s3://{bucket}/{key}"), "etag": "", "type": "s3" });
        }
    }
    Ok(())
}

/// Undelete: moves the artifacts back; the image's link becomes the restored
/// manifest's, with its S3 ETag as the etag.
pub async fn undelete(
    s3: &S3,
    kind: super::schema::Kind,
    record: &mut Record,
) -> Result<(), Problem> {
    use super::schema::Kind;
    let Some(path) = link_path(record).map(str::to_string) else {
        return Ok(());
    };
    match kind {
        Kind::PublicKey => {}
        Kind::Recipe => {
            let (bucket, key) = split(&path)?;
            move_object(s3, &path, false).await?;
            record["link"]["path"] = json!(format!("s3://{bucket}/{}", moved_key(key, false)));
        }
        Kind::Image => {
            // A record soft-deleted while its manifest was missing still
            // links the live path: there is nothing to move back.
            let Some(manifest) = manifest_json(s3, &path).await? else {
                return Ok(());
            };
            let mut link = None;
            for a in artifacts_of(&manifest) {
                let Some(url) = artifact_url(&a) else {
                    continue;
                };
                let restored = move_object(s3, url, false).await?;
                if a.get("type").and_then(Value::as_str) == Some(MANIFEST) && restored.is_some() {
                    link = restored;
                }
            }
            if let Some(link) = link {
                let (bucket, key) = split(&path)?;
                s3.delete(bucket, key).await?;
                record["link"] = link;
            }
        }
    }
    Ok(())
}

/// Deletes the record's artifacts: cascading hard delete of a live record,
/// or purge of a deleted one (whose link is the deleted manifest).
pub async fn delete_artifacts(
    s3: &S3,
    kind: super::schema::Kind,
    record: &Record,
) -> Result<(), Problem> {
    use super::schema::Kind;
    let Some(path) = link_path(record) else {
        return Ok(());
    };
    if kind == Kind::Image {
        for a in manifest_artifacts(s3, path).await?.unwrap_or_default() {
            if let Some((b, k)) = artifact_url(&a).and_then(parse_url) {
                s3.delete(b, k).await?;
            }
        }
    }
    if kind != Kind::PublicKey {
        let (b, k) = split(path)?;
        s3.delete(b, k).await?;
    }
    Ok(())
}
