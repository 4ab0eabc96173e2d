//! `export-plan`: turns the IMS records and the links found by the
//! link-discovery steps into the archive HPE's importer reads:
//! `s3_artifacts/<bucket>/<flattened key>` members (manifests first) and
//! `export.json` last. Follows `export_ims_data.py` (see
//! docs/hpe-import-export.md#export-order-of-operations):
//! extra links that do not exist are skipped with a warning; a missing
//! artifact of an IMS record is an error.
use imsflow_pdk::serde_json::{Map, Value, json};
use imsflow_pdk::{
    ArchiveAddIndex, ArchiveAddObject, Effect, Input, ObjectExpect, ObjectHead, ObjectRef,
    PluginInfo, Step, StepError, StepOutput, s3,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

struct ExportPlan;

#[derive(serde::Deserialize)]
struct Links {
    links: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct With {
    /// The output of `ims-fetch`.
    ims: Value,
    /// Outputs of the link-discovery steps; `null` when a source is off.
    bos: Option<Links>,
    bss: Option<Links>,
    product_catalog: Option<Links>,
    /// Site link sources, any number: name -> output (`{"links": [...]}`),
    /// `null` when a source is off. Their existing links are exported like
    /// the stock ones and recorded in `export.json` under
    /// `link_sources.<name>` (HPE's importer ignores the key).
    #[serde(default)]
    sources: BTreeMap<String, Option<Links>>,
    /// `export.json`'s `created`.
    created: String,
    #[serde(default)]
    exclude_linked_artifacts: bool,
    /// Largest manifest read (bytes).
    #[serde(default = "default_manifest_cap")]
    max_manifest_bytes: u64,
}

fn default_manifest_cap() -> u64 {
    16 << 20
}

fn split(url: &str) -> Option<(&str, &str)> {
    let (bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

/// HPE's flattening: `/` becomes `_`, then anything outside `[A-Za-z0-9._-]` is dropped.
fn flatten(key: &str) -> String {
    let flat: String = key
        .replace('/', "_")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if flat.is_empty() {
        "artifact".into()
    } else {
        flat
    }
}

/// The part count of a multipart ETag (`<md5>-N`).
fn multipart_parts(etag: &str) -> Option<u64> {
    etag.rsplit_once('-')?.1.parse().ok()
}

struct Planner {
    heads: HashMap<String, Option<ObjectHead>>,
    cap: u64,
}

impl Planner {
    fn head(&mut self, url: &str) -> Result<Option<ObjectHead>, StepError> {
        if let Some(h) = self.heads.get(url) {
            return Ok(h.clone());
        }
        let Some((bucket, key)) = split(url) else {
            self.heads.insert(url.into(), None);
            return Ok(None);
        };
        let head =
            s3::head(bucket, key).map_err(|e| imsflow_pdk::host_err(&format!("HEAD {url}"), e))?;
        self.heads.insert(url.into(), head.clone());
        Ok(head)
    }

    /// Keeps the links of a source that exist, warning about the others.
    fn existing(&mut self, source: &str, links: Option<Links>) -> Result<Value, StepError> {
        let Some(links) = links else {
            return Ok(Value::Null);
        };
        let mut kept = Vec::new();
        for url in links.links {
            if kept.contains(&url) {
                continue;
            }
            if self.head(&url)?.is_some() {
                kept.push(url);
            } else {
                imsflow_pdk::warn(&format!(
                    "Skipping nonexistent S3 artifact {url} (from {source})"
                ));
            }
        }
        Ok(json!(kept))
    }

    /// The artifact links a manifest lists, in order, unique.
    fn manifest_links(&mut self, url: &str) -> Result<Vec<String>, StepError> {
        let (bucket, key) = split(url).expect("checked");
        let bytes = s3::get(bucket, key, self.cap)
            .map_err(|e| imsflow_pdk::host_err(&format!("GET manifest {url}"), e))?;
        let manifest: Value = serde_json::from_slice(&bytes)
            .map_err(|e| StepError::Failed(format!("the manifest {url} is not JSON: {e}")))?;
        let Some(artifacts) = manifest.get("artifacts").and_then(Value::as_array) else {
            return Err(StepError::Failed(format!(
                "the manifest {url} has no `artifacts` list"
            )));
        };
        let mut links: Vec<String> = Vec::new();
        for a in artifacts {
            if let Some(p) = a
                .pointer("/link/path")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                && !links.iter().any(|l| l == p)
            {
                links.push(p.to_string());
            }
        }
        Ok(links)
    }
}

/// `link.path` of every record of a kind (live, plus deleted when exported),
/// with its owner, named as deleted for a deleted record.
fn record_links(ims: &Value, kind: &str) -> Vec<(String, String)> {
    let records = |at: &str, what: &'static str| {
        ims.pointer(at)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(move |(id, r)| (id, r, what))
    };
    records(&format!("/{kind}"), "IMS")
        .chain(records(&format!("/deleted/{kind}"), DELETED))
        .filter_map(|(id, r, what)| {
            let path = r
                .pointer("/link/path")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())?;
            Some((
                path.to_string(),
                format!("{what} {} {id}", kind.trim_end_matches('s')),
            ))
        })
        .collect()
}

/// How the owner of a soft-deleted record's links is named. Real IMS keeps the
/// link of a soft-deleted image whose manifest is already gone (it answers 204
/// and moves nothing), so a deleted record's missing artifact is skipped with
/// a warning, while a live record's is an error.
const DELETED: &str = "deleted IMS";

impl Step for ExportPlan {
    type With = With;

    fn describe() -> PluginInfo {
        imsflow_pdk::plugin_info!(effects: ["archive-add-object", "archive-add-index"])
    }

    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let w = input.with;
        let mut p = Planner {
            heads: HashMap::new(),
            cap: w.max_manifest_bytes,
        };
        if let Some(bad) = w.sources.keys().find(|n| {
            n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        }) {
            return Err(StepError::InvalidInput(format!(
                "link source name `{bad}`: use 1-64 lowercase letters, digits, `-` and `_`"
            )));
        }
        let (bos, bss, catalog) = if w.exclude_linked_artifacts {
            (Value::Null, Value::Null, Value::Null)
        } else {
            (
                p.existing("BOS", w.bos)?,
                p.existing("BSS", w.bss)?,
                p.existing("product catalog", w.product_catalog)?,
            )
        };
        let mut site = Map::new();
        for (name, links) in w.sources {
            let kept = if w.exclude_linked_artifacts {
                Value::Null
            } else {
                p.existing(&format!("link source {name}"), links)?
            };
            site.insert(name, kept);
        }
        let mut doc = Map::new();
        doc.insert("bos".into(), bos.clone());
        doc.insert("bss".into(), bss.clone());
        doc.insert("created".into(), json!(w.created));
        doc.insert("ims_data".into(), w.ims.clone());
        doc.insert("product_catalog".into(), catalog.clone());
        doc.insert("s3_data".into(), Value::Null);
        if !site.is_empty() {
            doc.insert("link_sources".into(), Value::Object(site.clone()));
        }
        let mut effects = Vec::new();
        let mut total = 0u64;
        let mut artifacts = Map::new();
        if !w.exclude_linked_artifacts {
            // Partition as HPE does: image manifests, and everything else.
            let mut owners: HashMap<String, String> = HashMap::new();
            let mut images: Vec<String> = Vec::new();
            let mut others: Vec<String> = Vec::new();
            for (url, owner) in record_links(&w.ims, "images") {
                owners.entry(url.clone()).or_insert(owner);
                images.push(url);
            }
            for (url, owner) in record_links(&w.ims, "recipes") {
                owners.entry(url.clone()).or_insert(owner);
                others.push(url);
            }
            let stock = [&bos, &bss, &catalog].into_iter();
            for extra in stock
                .chain(site.values())
                .filter_map(Value::as_array)
                .flatten()
            {
                let url = extra.as_str().unwrap_or_default().to_string();
                if url.ends_with("manifest.json") {
                    images.push(url)
                } else {
                    others.push(url)
                }
            }
            let mut seen = HashSet::new();
            images.retain(|u| seen.insert(u.clone()));
            let mut manifest_links = HashMap::new();
            let mut missing = HashSet::new();
            for url in &images {
                let owner = owners
                    .get(url)
                    .cloned()
                    .unwrap_or_else(|| "a link source".into());
                if p.head(url)?.is_none() {
                    if owner.starts_with(DELETED) {
                        imsflow_pdk::warn(&format!(
                            "Skipping {owner}: its manifest {url} does not exist in S3"
                        ));
                        missing.insert(url.clone());
                        continue;
                    }
                    return Err(StepError::Failed(format!(
                        "{owner} links to {url}, which does not exist in S3"
                    )));
                }
                let links = p.manifest_links(url)?;
                for l in &links {
                    let by = if owner.starts_with(DELETED) {
                        format!("{owner} (manifest {url})")
                    } else {
                        format!("manifest {url}")
                    };
                    owners.entry(l.clone()).or_insert(by);
                    others.push(l.clone());
                }
                manifest_links.insert(url.clone(), links);
            }
            images.retain(|u| !missing.contains(u));
            others.retain(|u| seen.insert(u.clone()));
            let mut used_paths = HashSet::new();
            let mut buckets = BTreeSet::new();
            for url in images.iter().chain(&others) {
                let Some(head) = p.head(url)? else {
                    let owner = owners
                        .get(url)
                        .map(String::as_str)
                        .unwrap_or("a link source");
                    if owner.starts_with(DELETED) {
                        imsflow_pdk::warn(&format!(
                            "Skipping {url} of {owner}: it does not exist in S3"
                        ));
                        continue;
                    }
                    return Err(StepError::Failed(format!(
                        "{owner} needs {url}, which does not exist in S3"
                    )));
                };
                let (bucket, key) = split(url).expect("head found it");
                buckets.insert(bucket.to_string());
                // HPE's bug 9: two keys flattening alike must not share a member
                // (see docs/hpe-import-export.md#bug-9-keys-that-flatten-alike-share-one-archive-member).
                let base = format!("s3_artifacts/{bucket}/{}", flatten(key));
                let mut relpath = base.clone();
                let mut n = 1;
                while !used_paths.insert(relpath.clone()) {
                    n += 1;
                    relpath = format!("{base}-{n}");
                }
                let metadata: Map<String, Value> = head
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                let mut entry = Map::new();
                entry.insert("relpath".into(), json!(relpath));
                if let Some(links) = manifest_links.get(url) {
                    entry.insert("manifest_links".into(), json!(links));
                }
                // HPE records `cray artifacts describe`: boto3's head_object fields.
                let mut describe = Map::new();
                if let Some(r) = &head.accept_ranges {
                    describe.insert("AcceptRanges".into(), json!(r));
                }
                if let Some(t) = &head.last_modified {
                    describe.insert("LastModified".into(), json!(t));
                }
                describe.insert("ContentLength".into(), json!(head.size));
                describe.insert("ETag".into(), json!(format!("\"{}\"", head.etag)));
                describe.insert("ContentType".into(), json!(head.content_type));
                describe.insert("Metadata".into(), json!(metadata));
                entry.insert("describe".into(), json!({ "artifact": describe }));
                entry.insert("size".into(), json!(head.size));
                entry.insert("etag".into(), json!(head.etag));
                entry.insert("content_type".into(), json!(head.content_type));
                entry.insert("metadata".into(), Value::Object(metadata));
                // The host adds `part_size` once it has proven it on the bytes.
                if let Some(parts) = multipart_parts(&head.etag) {
                    entry.insert("multipart_parts".into(), json!(parts));
                }
                artifacts.insert(url.clone(), Value::Object(entry));
                total += head.size;
                effects.push(Effect::ArchiveAddObject(ArchiveAddObject {
                    source: ObjectRef {
                        bucket: bucket.into(),
                        key: key.into(),
                    },
                    path: relpath,
                    expect: Some(ObjectExpect {
                        size: head.size,
                        etag: head.etag.clone(),
                    }),
                }));
            }
            let mut listings = Map::new();
            for bucket in buckets {
                let objects = s3::list_objects(&bucket, "")
                    .map_err(|e| imsflow_pdk::host_err(&format!("listing bucket {bucket}"), e))?;
                // boto3's list_objects shape, as HPE records it.
                let items: Vec<Value> = objects
                    .iter()
                    .map(|o| {
                        let mut item = Map::new();
                        item.insert("Key".into(), json!(o.key));
                        if let Some(t) = &o.last_modified {
                            item.insert("LastModified".into(), json!(t));
                        }
                        item.insert("ETag".into(), json!(format!("\"{}\"", o.etag)));
                        item.insert("Size".into(), json!(o.size));
                        if let Some(c) = &o.storage_class {
                            item.insert("StorageClass".into(), json!(c));
                        }
                        if o.owner_id.is_some() || o.owner_name.is_some() {
                            item.insert("Owner".into(), json!({ "DisplayName": o.owner_name.clone().unwrap_or_default(), "ID": o.owner_id.clone().unwrap_or_default() }));
                        }
                        Value::Object(item)
                    })
                    .collect();
                listings.insert(bucket, json!({ "artifacts": items }));
            }
            doc.insert(
                "s3_data".into(),
                json!({ "artifacts": artifacts, "buckets": listings }),
            );
        }
        let count = |k: &str| w.ims.get(k).and_then(Value::as_object).map_or(0, Map::len);
        let counts = json!({
            "images": count("images"), "public_keys": count("public_keys"), "recipes": count("recipes"), "jobs": count("jobs"),
            "deleted": w.ims.get("deleted").filter(|d| !d.is_null()).map(|d| json!({
                "images": d.get("images").and_then(Value::as_object).map_or(0, Map::len),
                "public_keys": d.get("public_keys").and_then(Value::as_object).map_or(0, Map::len),
                "recipes": d.get("recipes").and_then(Value::as_object).map_or(0, Map::len),
            })),
            "artifacts": artifacts.len(), "artifact_bytes": total,
        });
        doc.insert(
            "imsflow".into(),
            json!({ "format": 1, "version": env!("CARGO_PKG_VERSION"), "counts": counts }),
        );
        let text = serde_json::to_string(&Value::Object(doc)).expect("serialisable");
        let summary = json!({ "counts": counts, "index_bytes": text.len(), "estimated_bytes": total + text.len() as u64 });
        effects.push(Effect::ArchiveAddIndex(ArchiveAddIndex {
            path: "export.json".into(),
            json: text,
            entries_at: "/s3_data/artifacts".into(),
        }));
        Ok(imsflow_pdk::output(&summary, effects))
    }
}

imsflow_pdk::export_step!(ExportPlan);
