//! An archive's `export.json`, parsed and validated: HPE's format (each
//! `s3_data.artifacts` entry has `relpath`, `manifest_links` for manifests and
//! `describe`, the `cray artifacts describe` output) and imsflow's, which adds
//! `sha256`, `size`, `etag`, `content_type`, `metadata` and `part_size`.
//!
//! HPE's importer requires `created` and `ims_data` with its five keys, and
//! tolerates `bos`, `bss`, `product_catalog` and `s3_data` being absent or
//! null. With `s3_data: null` (`--exclude-linked-artifacts`, or HPE's own
//! backup) HPE crashes in its S3 step; here the records import, and no
//! object is uploaded (HPE's bug 2, see
//! docs/hpe-import-export.md#bug-2-an-archive-without-s3-data-crashes-the-import).
use crate::ims::{Ims, parse_ims};
use crate::s3::{bare_etag, check_url, etag_parts_problem, part_size_problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The archive as the import plugins use it: what `archive-read` outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveData {
    /// `imsflow` when the index has imsflow's block, else `hpe`.
    pub format: String,
    pub created: String,
    pub ims: Ims,
    /// Link sources; `None` when the source was off or the key absent.
    pub bos: Option<Vec<String>>,
    pub bss: Option<Vec<String>>,
    pub product_catalog: Option<Vec<String>>,
    /// Site link sources (`link_sources.<name>` of imsflow's export): their
    /// artifacts are restored as the stock sources' are.
    #[serde(default)]
    pub link_sources: BTreeMap<String, Option<Vec<String>>>,
    /// `s3_data.artifacts` by S3 URL; `None` when `s3_data` is null or absent.
    pub artifacts: Option<BTreeMap<String, Artifact>>,
    /// Not fatal: said to the user, and kept for review.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One `s3_data.artifacts` entry, with what the archive holds for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The archive member, in normal form.
    pub relpath: String,
    /// The member's size, `None` when the archive has no such member.
    pub member_size: Option<u64>,
    #[serde(default)]
    pub manifest_links: Option<Vec<String>>,
    /// The object's size when exported (imsflow's `size`, or HPE's
    /// `describe.artifact.ContentLength`).
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// The object's ETag when exported, without quotes.
    pub etag: Option<String>,
    /// The part size the export proved on the bytes (imsflow only).
    pub part_size: Option<u64>,
    pub content_type: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Why the member cannot be uploaded as it is (missing, wrong size).
    #[serde(default)]
    pub problems: Vec<String>,
}

impl ArchiveData {
    pub fn artifact(&self, url: &str) -> Option<&Artifact> {
        self.artifacts.as_ref()?.get(url)
    }

    /// Records of the live kinds plus jobs, and the deleted ones, for review.
    pub fn counts(&self) -> Value {
        let ims = &self.ims;
        serde_json::json!({
            "images": ims.images.len(), "public_keys": ims.public_keys.len(),
            "recipes": ims.recipes.len(), "jobs": ims.jobs.len(),
            "deleted": ims.deleted.as_ref().map(|d| serde_json::json!({
                "images": d.images.len(), "public_keys": d.public_keys.len(), "recipes": d.recipes.len(),
            })),
            "artifacts": self.artifacts.as_ref().map(BTreeMap::len),
        })
    }
}

/// The normal form of a member path, as the host's archive reader names
/// members: relative, `/`-separated, without `.` or empty segments. `None`
/// for what no member can be (absolute, `..`, a trailing `/`, NUL,
/// backslash, control characters).
pub fn normalize_member_path(path: &str) -> Option<String> {
    if path.is_empty()
        || path.starts_with('/')
        || path.ends_with('/')
        || path.contains(['\0', '\\'])
        || path.chars().any(char::is_control)
    {
        return None;
    }
    let mut segments = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s => segments.push(s),
        }
    }
    (!segments.is_empty()).then(|| segments.join("/"))
}

fn url_list(doc: &Value, key: &str, problems: &mut Vec<String>) -> Option<Vec<String>> {
    match doc.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(|url| (url, check_url(url))) {
                    Some((url, Ok(_))) => {
                        if !out.iter().any(|u| u == url) {
                            out.push(url.to_string());
                        }
                    }
                    Some((_, Err(why))) => {
                        problems.push(format!("export.json: {key}[{i}] {item}: {why}"))
                    }
                    None => problems.push(format!(
                        "export.json: {key}[{i}] is not an S3 URL (s3://bucket/key): {item}"
                    )),
                }
            }
            Some(out)
        }
        Some(other) => {
            problems.push(format!(
                "export.json: '{key}' is neither null nor a list of S3 URLs: {}",
                kind_of(other)
            ));
            None
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn string_map(v: Option<&Value>) -> Option<BTreeMap<String, String>> {
    let obj = v?.as_object()?;
    obj.iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// One `s3_data.artifacts` entry; `members` maps member paths to sizes.
fn artifact(
    url: &str,
    entry: &Value,
    members: &HashMap<&str, u64>,
    problems: &mut Vec<String>,
) -> Option<Artifact> {
    let at = format!("export.json: s3_data.artifacts[{url:?}]");
    if let Err(why) = check_url(url) {
        problems.push(format!("{at}: {why}"));
        return None;
    }
    let Some(obj) = entry.as_object() else {
        problems.push(format!("{at}: not a JSON object"));
        return None;
    };
    let Some(relpath) = obj.get("relpath").and_then(Value::as_str) else {
        problems.push(format!("{at}: no 'relpath' string"));
        return None;
    };
    let Some(relpath) = normalize_member_path(relpath) else {
        problems.push(format!(
            "{at}: relpath {relpath:?} cannot name an archive member"
        ));
        return None;
    };
    let describe = obj.get("describe").and_then(|d| d.get("artifact"));
    let u64_at = |key: &str, problems: &mut Vec<String>| match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => {
            let n = v.as_u64();
            if n.is_none() {
                problems.push(format!("{at}: '{key}' is not a non-negative integer"));
            }
            n
        }
    };
    let size = u64_at("size", problems).or_else(|| {
        describe
            .and_then(|d| d.get("ContentLength"))
            .and_then(Value::as_u64)
    });
    let part_size = u64_at("part_size", problems).filter(|&p| {
        if p == 0 {
            problems.push(format!("{at}: 'part_size' is 0"));
        }
        p > 0
    });
    let sha256 = match obj.get("sha256") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(s.to_ascii_lowercase())
        }
        Some(_) => {
            problems.push(format!("{at}: 'sha256' is not 64 hex digits"));
            None
        }
    };
    let etag = obj
        .get("etag")
        .and_then(Value::as_str)
        .or_else(|| describe.and_then(|d| d.get("ETag")).and_then(Value::as_str))
        .map(bare_etag)
        .filter(|e| !e.is_empty());
    let content_type = obj
        .get("content_type")
        .and_then(Value::as_str)
        .or_else(|| {
            describe
                .and_then(|d| d.get("ContentType"))
                .and_then(Value::as_str)
        })
        .map(String::from);
    let metadata = string_map(obj.get("metadata"))
        .or_else(|| string_map(describe.and_then(|d| d.get("Metadata"))))
        .unwrap_or_default();
    let manifest_links = match obj.get("manifest_links") {
        None | Some(Value::Null) => None,
        Some(Value::Array(links)) => {
            let mut out: Vec<String> = Vec::new();
            for l in links {
                match l.as_str().map(|u| (u, check_url(u))) {
                    Some((u, Ok(_))) => {
                        if !out.iter().any(|x| x == u) {
                            out.push(u.to_string());
                        }
                    }
                    Some((_, Err(why))) => {
                        problems.push(format!("{at}: manifest_links holds {l}: {why}"))
                    }
                    None => problems.push(format!("{at}: manifest_links holds {l}, not an S3 URL")),
                }
            }
            Some(out)
        }
        Some(_) => {
            problems.push(format!("{at}: 'manifest_links' is not a list"));
            None
        }
    };
    let member_size = members.get(relpath.as_str()).copied();
    // Part sizes and counts that no upload to S3 can complete.
    if let Some(object_size) = size.or(member_size) {
        let refused = part_size
            .and_then(|p| part_size_problem(object_size, p))
            .or_else(|| {
                etag.as_deref()
                    .and_then(|e| etag_parts_problem(e, object_size))
            });
        if let Some(why) = refused {
            problems.push(format!("{at}: {why}"));
        }
    }
    let mut own = Vec::new();
    match (member_size, size) {
        (None, _) => own.push(format!("the archive has no member {relpath}")),
        (Some(m), Some(s)) if m != s => own.push(format!(
            "archive member {relpath} has {m} bytes, export.json says {s}"
        )),
        _ => {}
    }
    Some(Artifact {
        relpath,
        member_size,
        manifest_links,
        size,
        sha256,
        etag,
        part_size,
        content_type,
        metadata,
        problems: own,
    })
}

/// Parses and validates `export.json` against the archive's members
/// (path, size). Structural problems are errors, all listed at once; a
/// missing or wrong-sized member is kept in its entry's `problems` (it
/// matters only if the import needs that object).
pub fn read_export(doc: &Value, members: &[(String, u64)]) -> Result<ArchiveData, Vec<String>> {
    let mut problems = Vec::new();
    let Some(top) = doc.as_object() else {
        return Err(vec![format!(
            "export.json is {}, not a JSON object",
            kind_of(doc)
        )]);
    };
    let created = match top.get("created") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            problems.push(format!(
                "export.json: 'created' is {}, not a string",
                kind_of(other)
            ));
            String::new()
        }
        None => {
            problems.push("export.json: missing required key 'created'".into());
            String::new()
        }
    };
    let ims = match top.get("ims_data") {
        Some(v) => parse_ims("export.json: ims_data", v, &mut problems),
        None => {
            problems.push("export.json: missing required key 'ims_data'".into());
            Ims::default()
        }
    };
    let bos = url_list(doc, "bos", &mut problems);
    let bss = url_list(doc, "bss", &mut problems);
    let product_catalog = url_list(doc, "product_catalog", &mut problems);
    let link_sources = match doc.get("link_sources") {
        Some(Value::Object(sources)) => sources
            .keys()
            .map(|name| {
                let list = url_list(&doc["link_sources"], name, &mut problems);
                (name.clone(), list)
            })
            .collect(),
        None | Some(Value::Null) => BTreeMap::new(),
        Some(other) => {
            problems.push(format!(
                "export.json: 'link_sources' is not an object of URL lists: {}",
                kind_of(other)
            ));
            BTreeMap::new()
        }
    };
    let by_path: HashMap<&str, u64> = members.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    let mut warnings = Vec::new();
    let artifacts = match top.get("s3_data") {
        None | Some(Value::Null) => {
            warnings.push(
                "export.json has no S3 data (s3_data is null): its records are imported, and no S3 object can be restored from it".into(),
            );
            None
        }
        Some(Value::Object(s3)) => match s3.get("artifacts") {
            Some(Value::Object(entries)) => {
                let mut out = BTreeMap::new();
                let mut relpaths: HashMap<String, &str> = HashMap::new();
                for (url, entry) in entries {
                    if let Some(a) = artifact(url, entry, &by_path, &mut problems) {
                        if let Some(other) = relpaths.insert(a.relpath.clone(), url) {
                            warnings.push(format!(
                                "{other} and {url} share the archive member {}",
                                a.relpath
                            ));
                        }
                        out.insert(url.clone(), a);
                    }
                }
                Some(out)
            }
            None | Some(Value::Null) => Some(BTreeMap::new()),
            Some(other) => {
                problems.push(format!(
                    "export.json: s3_data.artifacts is {}, not an object",
                    kind_of(other)
                ));
                None
            }
        },
        Some(other) => {
            problems.push(format!(
                "export.json: 's3_data' is {}, neither null nor an object",
                kind_of(other)
            ));
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let format = if top.get("imsflow").is_some_and(Value::is_object) {
        "imsflow"
    } else {
        "hpe"
    };
    Ok(ArchiveData {
        format: format.into(),
        created,
        ims,
        bos,
        bss,
        product_catalog,
        link_sources,
        artifacts,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn members(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(p, s)| (p.to_string(), *s)).collect()
    }

    #[test]
    fn member_paths_have_one_normal_form() {
        assert_eq!(
            normalize_member_path("./s3_artifacts//ims/x").as_deref(),
            Some("s3_artifacts/ims/x")
        );
        assert_eq!(normalize_member_path("../x"), None);
        assert_eq!(normalize_member_path("/etc/passwd"), None);
        assert_eq!(normalize_member_path("a/"), None);
    }

    /// HPE's format: only relpath, manifest_links and `describe`.
    #[test]
    fn an_hpe_entry_takes_size_etag_type_and_metadata_from_describe() {
        let doc = json!({
            "created": "20241023151204.118342",
            "ims_data": {"deleted": null, "images": {}, "jobs": {}, "public_keys": {}, "recipes": {}},
            "bos": ["s3://boot-images/i/manifest.json"],
            "s3_data": {"artifacts": {"s3://boot-images/i/manifest.json": {
                "relpath": "s3_artifacts/boot-images/i_manifest.json",
                "manifest_links": ["s3://boot-images/i/rootfs"],
                "describe": {"artifact": {"ContentLength": 10, "ETag": "\"ABCDEF0123456789abcdef0123456789\"",
                    "ContentType": "application/json", "Metadata": {"md5sum": "x"}}}
            }}, "buckets": {"velero": {"artifacts": []}}}
        });
        let a = read_export(
            &doc,
            &members(&[("s3_artifacts/boot-images/i_manifest.json", 10)]),
        )
        .unwrap();
        assert_eq!(a.format, "hpe");
        assert_eq!(a.bss, None);
        let e = a.artifact("s3://boot-images/i/manifest.json").unwrap();
        assert_eq!(
            e,
            &Artifact {
                relpath: "s3_artifacts/boot-images/i_manifest.json".into(),
                member_size: Some(10),
                manifest_links: Some(vec!["s3://boot-images/i/rootfs".into()]),
                size: Some(10),
                sha256: None,
                etag: Some("abcdef0123456789abcdef0123456789".into()),
                part_size: None,
                content_type: Some("application/json".into()),
                metadata: [("md5sum".to_string(), "x".to_string())]
                    .into_iter()
                    .collect(),
                problems: vec![],
            }
        );
    }

    #[test]
    fn site_link_sources_are_read_by_name() {
        let doc = json!({
            "created": "20241023151204.118342",
            "ims_data": {"deleted": null, "images": {}, "jobs": {}, "public_keys": {}, "recipes": {}},
            "link_sources": {"bos-v1-links": ["s3://boot-images/v1/rootfs"], "off": null},
            "s3_data": null
        });
        let a = read_export(&doc, &members(&[])).unwrap();
        assert_eq!(
            a.link_sources["bos-v1-links"],
            Some(vec!["s3://boot-images/v1/rootfs".to_string()])
        );
        assert_eq!(a.link_sources["off"], None);
        let targets = crate::restore::targets(&a, &Default::default(), &Default::default());
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].url, "s3://boot-images/v1/rootfs");
        assert_eq!(targets[0].owners, ["site link source bos-v1-links"]);
    }

    #[test]
    fn an_imsflow_entry_keeps_its_checksums_and_part_size() {
        let sha = "a".repeat(64);
        let doc = json!({
            "created": "x", "imsflow": {"format": 1},
            "ims_data": {"deleted": {"images": {}, "public_keys": {}, "recipes": {}}, "images": {}, "jobs": {}, "public_keys": {}, "recipes": {}},
            "s3_data": {"artifacts": {"s3://ims/r/recipe.tar.gz": {
                "relpath": "s3_artifacts/ims/r_recipe.tar.gz", "sha256": sha, "size": 3, "etag": "e-2",
                "part_size": 8388608, "content_type": null, "metadata": {}
            }}}
        });
        let a = read_export(&doc, &members(&[("s3_artifacts/ims/r_recipe.tar.gz", 4)])).unwrap();
        assert_eq!(a.format, "imsflow");
        let e = a.artifact("s3://ims/r/recipe.tar.gz").unwrap();
        assert_eq!(
            (e.sha256.as_deref(), e.size, e.part_size, e.etag.as_deref()),
            (Some(sha.as_str()), Some(3), Some(8 << 20), Some("e-2"))
        );
        assert_eq!(
            e.problems,
            vec!["archive member s3_artifacts/ims/r_recipe.tar.gz has 4 bytes, export.json says 3"]
        );
    }

    /// HPE's bug 2: `s3_data: null` must import the records, not crash (see
    /// docs/hpe-import-export.md#bug-2-an-archive-without-s3-data-crashes-the-import).
    #[test]
    fn s3_data_null_is_a_records_only_archive() {
        let doc = json!({"created": "x", "s3_data": null,
            "ims_data": {"deleted": null, "images": {"i": {"id": "i", "created": "c"}}, "jobs": {}, "public_keys": {}, "recipes": {}}});
        let a = read_export(&doc, &[]).unwrap();
        assert_eq!(a.artifacts, None);
        assert_eq!(a.ims.images.len(), 1);
        assert_eq!(a.warnings.len(), 1);
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let doc = json!({
            "ims_data": {"images": {}, "jobs": {}, "public_keys": {}, "recipes": {}},
            "bos": "s3://x/y", "bss": ["s3://boot-images/k", "http://x/y"],
            "s3_data": {"artifacts": {
                "s3://ims/a": {"relpath": "../../etc/passwd"},
                "s3://ims/b": {"size": -1, "relpath": "s3_artifacts/ims/b", "sha256": "zz"},
                "nope": {"relpath": "x"}
            }}
        });
        let problems = read_export(&doc, &[]).unwrap_err();
        assert_eq!(
            problems,
            vec![
                "export.json: missing required key 'created'",
                "export.json: ims_data: missing required key 'deleted'",
                "export.json: 'bos' is neither null nor a list of S3 URLs: a string",
                "export.json: bss[1] \"http://x/y\": not an S3 URL (s3://bucket/key)",
                "export.json: s3_data.artifacts[\"nope\"]: not an S3 URL (s3://bucket/key)",
                "export.json: s3_data.artifacts[\"s3://ims/a\"]: relpath \"../../etc/passwd\" cannot name an archive member",
                "export.json: s3_data.artifacts[\"s3://ims/b\"]: 'size' is not a non-negative integer",
                "export.json: s3_data.artifacts[\"s3://ims/b\"]: 'sha256' is not 64 hex digits",
            ]
        );
    }

    /// Hostile URLs and part sizes S3 cannot complete are refused, each
    /// named by its object, all at once.
    #[test]
    fn hostile_urls_and_impossible_part_sizes_are_refused_naming_each_object() {
        const MIB: u64 = 1 << 20;
        let md5 = "0123456789abcdef0123456789abcdef";
        let entry = |size: u64, extra: Value| {
            let mut e = json!({"relpath": "s3_artifacts/x", "size": size});
            e.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            e
        };
        let doc = json!({
            "created": "x",
            "ims_data": {"deleted": null, "images": {}, "jobs": {}, "public_keys": {}, "recipes": {
                "r": {"id": "r", "created": "c", "link": {"type": "s3", "path": "s3://ims/r/%2E%2E/x"}}
            }},
            "bos": ["s3://../boot-images/x", "s3://boot-images/a/../../b"],
            "s3_data": {"artifacts": {
                "s3://boot-images/ok/rootfs": entry(10, json!({})),
                "s3://boot-images/a\r\nb": entry(10, json!({})),
                "s3://boot-images/tiny-parts": entry(10 * MIB, json!({"part_size": 1})),
                "s3://boot-images/etag-small": entry(9 * MIB, json!({"etag": format!("{md5}-3")})),
                "s3://boot-images/etag-many": entry(100 * MIB, json!({"etag": format!("{md5}-10001")})),
                "s3://boot-images/fine-multipart": entry(20 * MIB, json!({"etag": format!("{md5}-3"), "part_size": 8 * MIB})),
            }}
        });
        let problems = read_export(&doc, &members(&[("s3_artifacts/x", 10)])).unwrap_err();
        let expect = [
            "ims_data.recipes[\"r\"]: 'link.path' \"s3://ims/r/%2E%2E/x\": key",
            "bos[0] \"s3://../boot-images/x\": bucket \"..\"",
            "bos[1] \"s3://boot-images/a/../../b\": key \"a/../../b\"",
            "artifacts[\"s3://boot-images/a\\r\\nb\"]: key \"a\\r\\nb\"",
            "artifacts[\"s3://boot-images/tiny-parts\"]: 'part_size' 1 cuts",
            "artifacts[\"s3://boot-images/etag-small\"]: ETag",
            "artifacts[\"s3://boot-images/etag-many\"]: ETag",
        ];
        for e in expect {
            assert!(
                problems.iter().any(|p| p.contains(e)),
                "{e} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }
}
