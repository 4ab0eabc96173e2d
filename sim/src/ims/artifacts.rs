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

async fn manifest_artifacts(s3: &S3, manifest_url: &str) -> Result<Option<Vec<Value>>, Problem> {
    let Some((bucket, key)) = parse_url(manifest_url) else {
        return Ok(None);
    };
    if s3.head(bucket, key).await?.is_none() {
        return Ok(None);
    }
    let manifest: Value =
        serde_json::from_slice(&s3.get(bucket, key).await?).unwrap_or(Value::Null);
    Ok(manifest.get("artifacts").and_then(Value::as_array).cloned())
}

fn artifact_url(a: &Value) -> Option<&str> {
    a.get("link")?.get("path")?.as_str()
}

/// Moves `s3://b/k` to `s3://b/deleted/k` (or back); missing objects are skipped.
async fn move_object(s3: &S3, url: &str, to_deleted: bool) -> Result<String, Problem> {
    let (bucket, key) = split(url)?;
    let target = if to_deleted {
        format!("{DELETED}{key}")
    } else {
        key.strip_prefix(DELETED).unwrap_or(key).to_string()
    };
    if s3.head(bucket, key).await?.is_some() {
        s3.rename(bucket, key, &target).await?;
    } else {
        tracing::warn!("soft delete: {url} does not exist; nothing to move");
    }
    Ok(format!("s3://{bucket}/{target}"))
}

/// Soft delete: moves the artifacts under `deleted/` and points the record at
/// its new location (images: a `deleted_manifest.json`, etag "").
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
            let moved = move_object(s3, &path, true).await?;
            record["link"]["path"] = json!(moved);
        }
        Kind::Image => {
            let etag = record["link"].get("etag").cloned().unwrap_or(json!(""));
            let mut moved = Vec::new();
            for a in manifest_artifacts(s3, &path).await?.unwrap_or_default() {
                let Some(url) = artifact_url(&a) else {
                    continue;
                };
                let new = move_object(s3, url, true).await?;
                let mut a = a.clone();
                a["link"]["path"] = json!(new);
                moved.push(a);
            }
            let new_manifest = move_object(s3, &path, true).await?;
            moved.push(json!({ "link": { "path": new_manifest, "etag": etag, "type": "s3" }, "type": MANIFEST }));
            let (bucket, _) = split(&path)?;
            let id = record["id"].as_str().unwrap_or_default().to_string();
            let key = format!("{DELETED}{id}/deleted_manifest.json");
            let doc = json!({ "version": "1.0", "created": super::now(), "artifacts": moved });
            s3.put(bucket, &key, serde_json::to_vec(&doc).unwrap())
                .await?;
            record["link"] =
                json!({ "path": format!("s3://{bucket}/{key}"), "etag": "", "type": "s3" });
        }
    }
    Ok(())
}

/// Undelete: moves the artifacts back and restores the original link.
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
            let restored = move_object(s3, &path, false).await?;
            record["link"]["path"] = json!(restored);
        }
        Kind::Image => {
            let mut link = None;
            for a in manifest_artifacts(s3, &path).await?.unwrap_or_default() {
                let Some(url) = artifact_url(&a) else {
                    continue;
                };
                let restored = move_object(s3, url, false).await?;
                if a.get("type").and_then(Value::as_str) == Some(MANIFEST) {
                    let etag = a["link"].get("etag").cloned().unwrap_or(json!(""));
                    link = Some(json!({ "path": restored, "etag": etag, "type": "s3" }));
                }
            }
            let (bucket, key) = split(&path)?;
            s3.delete(bucket, key).await?;
            record["link"] = link.unwrap_or(Value::Null);
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
