//! IMS records: the `ims_data` of an export and the current state that
//! `ims-fetch` returns have the same shape, `{images, public_keys, recipes,
//! jobs: {id: record}, deleted: null | {images, public_keys, recipes}}`.
use crate::effect::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Records of one kind by id, as IMS returned them (kept verbatim).
pub type Records = BTreeMap<String, Value>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    #[serde(default)]
    pub images: Records,
    #[serde(default)]
    pub public_keys: Records,
    #[serde(default)]
    pub recipes: Records,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ims {
    #[serde(default)]
    pub images: Records,
    #[serde(default)]
    pub public_keys: Records,
    #[serde(default)]
    pub recipes: Records,
    #[serde(default)]
    pub jobs: Records,
    /// `null` when deleted records were not read (an export without
    /// `--include-deleted`).
    pub deleted: Option<Deleted>,
}

impl Ims {
    /// Live records of a kind (jobs for [`Kind::Job`]).
    pub fn live(&self, kind: Kind) -> &Records {
        match kind {
            Kind::Image => &self.images,
            Kind::PublicKey => &self.public_keys,
            Kind::Recipe => &self.recipes,
            Kind::Job => &self.jobs,
        }
    }

    pub fn live_mut(&mut self, kind: Kind) -> &mut Records {
        match kind {
            Kind::Image => &mut self.images,
            Kind::PublicKey => &mut self.public_keys,
            Kind::Recipe => &mut self.recipes,
            Kind::Job => &mut self.jobs,
        }
    }

    /// Deleted records of a kind (none for jobs, or when not read).
    pub fn deleted(&self, kind: Kind) -> Option<&Records> {
        let d = self.deleted.as_ref()?;
        match kind {
            Kind::Image => Some(&d.images),
            Kind::PublicKey => Some(&d.public_keys),
            Kind::Recipe => Some(&d.recipes),
            Kind::Job => None,
        }
    }

    /// Whether there is no image, public key or recipe (HPE's "No IMS data
    /// to import" test).
    pub fn has_no_records(&self) -> bool {
        Kind::RECORDS.iter().all(|&k| self.live(k).is_empty())
    }
}

/// A record's `name`, or "".
pub fn name(record: &Value) -> &str {
    record
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A record's `created`, or "".
pub fn created(record: &Value) -> &str {
    record
        .get("created")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A record's non-empty `link.path`.
pub fn link_path(record: &Value) -> Option<&str> {
    record
        .pointer("/link/path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
}

/// Jobs that are not finished (`status` other than `success` or `error`),
/// described as HPE describes them.
pub fn running_jobs(jobs: &Records) -> Vec<String> {
    jobs.values()
        .filter_map(|j| {
            let id = j.get("id").and_then(Value::as_str).unwrap_or_default();
            match j.get("status").and_then(Value::as_str) {
                Some("success" | "error") => None,
                Some(s) => Some(format!("Job {id} is not complete (status = {s})")),
                None => Some(format!(
                    "Job {id} is not complete (no 'status' field found)"
                )),
            }
        })
        .collect()
}

/// The checks `ims-fetch` (and HPE's loader) make on a map of records: each
/// is an object with a non-empty string `id` equal to its key and a
/// non-empty string `created`. Problems are pushed, prefixed by `at`.
pub fn check_records(at: &str, value: &Value, problems: &mut Vec<String>) -> Records {
    let Some(map) = value.as_object() else {
        problems.push(format!("{at}: not a JSON object of records by id"));
        return Records::new();
    };
    let mut out = Records::new();
    for (id, record) in map {
        let here = format!("{at}[{id:?}]");
        let Some(r) = record.as_object() else {
            problems.push(format!("{here}: not a JSON object"));
            continue;
        };
        let mut ok = true;
        for field in ["id", "created"] {
            match r.get(field) {
                Some(Value::String(s)) if !s.is_empty() => {}
                None => {
                    problems.push(format!("{here}: missing required field '{field}'"));
                    ok = false;
                }
                Some(_) => {
                    problems.push(format!("{here}: empty or non-string value for '{field}'"));
                    ok = false;
                }
            }
        }
        if let Some(why) = id_problem(id) {
            problems.push(format!("{here}: the id {why}"));
            ok = false;
        } else if ok && r["id"].as_str() != Some(id.as_str()) {
            problems.push(format!("{here}: its 'id' is {}, not its key", r["id"]));
            ok = false;
        }
        if let Some(link) = r.get("link").filter(|l| !l.is_null()) {
            match link.get("path") {
                Some(Value::String(p)) if p.is_empty() => {}
                Some(Value::String(p)) => {
                    if let Err(why) = crate::s3::check_url(p) {
                        problems.push(format!("{here}: 'link.path' {p:?}: {why}"));
                        ok = false;
                    }
                }
                _ => {
                    problems.push(format!(
                        "{here}: 'link' has no S3 URL 'path' (s3://bucket/key)"
                    ));
                    ok = false;
                }
            }
        }
        if ok {
            out.insert(id.clone(), record.clone());
        }
    }
    out
}

/// Why `id` is not a record id as IMS makes them. IMS ids are UUIDs, and
/// they end up in request paths (`/v3/images/{id}`) and in IMS's data files:
/// only letters, digits, `-`, `_` and `.` (no `..`, not first), at most 128.
pub fn id_problem(id: &str) -> Option<&'static str> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && !id.contains("..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    (!ok).then_some(
        "is not an IMS record id (IMS makes UUIDs; only letters, digits, `-`, `_` and `.` are accepted, no `/`, `%`, `..`, whitespace or control characters)",
    )
}

/// Parses `ims_data` (or `ims-fetch`'s output): the five keys are required
/// (`deleted` may be null), every record checked; every problem is listed.
pub fn parse_ims(at: &str, value: &Value, problems: &mut Vec<String>) -> Ims {
    let mut ims = Ims::default();
    let Some(obj) = value.as_object() else {
        problems.push(format!("{at}: not a JSON object"));
        return ims;
    };
    for kind in [Kind::Image, Kind::Job, Kind::PublicKey, Kind::Recipe] {
        match obj.get(kind.key()) {
            None => problems.push(format!("{at}: missing required key '{}'", kind.key())),
            Some(v) => {
                *ims.live_mut(kind) = check_records(&format!("{at}.{}", kind.key()), v, problems)
            }
        }
    }
    match obj.get("deleted") {
        None => problems.push(format!("{at}: missing required key 'deleted'")),
        Some(Value::Null) => {}
        Some(d) if d.is_object() => {
            let part = |key: &str, problems: &mut Vec<String>| match d.get(key) {
                None | Some(Value::Null) => Records::new(),
                Some(v) => check_records(&format!("{at}.deleted.{key}"), v, problems),
            };
            ims.deleted = Some(Deleted {
                images: part("images", problems),
                public_keys: part("public_keys", problems),
                recipes: part("recipes", problems),
            });
        }
        Some(_) => problems.push(format!("{at}.deleted: neither null nor a JSON object")),
    }
    ims
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_record_problem_is_listed() {
        let mut problems = Vec::new();
        let ims = parse_ims(
            "ims_data",
            &json!({
                "images": {"a": {"id": "a", "created": "2024"}, "b": {"id": "c", "created": "2024"}, "d": {"id": "d"}},
                "public_keys": [],
                "recipes": {"r": {"id": "r", "created": "x", "link": {"path": "not-a-url"}}},
                "deleted": 3
            }),
            &mut problems,
        );
        assert_eq!(
            problems,
            vec![
                "ims_data.images[\"b\"]: its 'id' is \"c\", not its key",
                "ims_data.images[\"d\"]: missing required field 'created'",
                "ims_data: missing required key 'jobs'",
                "ims_data.public_keys: not a JSON object of records by id",
                "ims_data.recipes[\"r\"]: 'link.path' \"not-a-url\": not an S3 URL (s3://bucket/key)",
                "ims_data.deleted: neither null nor a JSON object",
            ]
        );
        assert_eq!(ims.images.keys().collect::<Vec<_>>(), vec!["a"]);
    }

    /// Ids end up in request paths and IMS's data files: only what IMS
    /// could have made is accepted, and each refused record is named.
    #[test]
    fn ids_that_could_change_a_request_path_are_refused_naming_each_record() {
        let hostile = [
            "../../v2/images/x",
            "a%2F..%2Fb",
            "a b",
            "a\nb",
            "..",
            ".hidden",
        ];
        let mut images = serde_json::Map::new();
        for id in hostile {
            images.insert(id.into(), json!({"id": id, "created": "2024"}));
        }
        let uuid = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
        images.insert(uuid.into(), json!({"id": uuid, "created": "2024"}));
        let mut problems = Vec::new();
        let ims = parse_ims(
            "ims_data",
            &json!({"images": images, "jobs": {}, "public_keys": {}, "recipes": {}, "deleted": null}),
            &mut problems,
        );
        assert_eq!(ims.images.keys().collect::<Vec<_>>(), vec![uuid]);
        assert_eq!(problems.len(), hostile.len(), "{problems:#?}");
        for id in hostile {
            let named = format!("ims_data.images[{id:?}]: the id is not an IMS record id");
            assert!(
                problems.iter().any(|p| p.starts_with(&named)),
                "{named} in {problems:#?}"
            );
        }
    }

    #[test]
    fn running_jobs_are_those_not_finished() {
        let jobs: Records = [
            ("1".to_string(), json!({"id": "1", "status": "success"})),
            ("2".to_string(), json!({"id": "2", "status": "error"})),
            (
                "3".to_string(),
                json!({"id": "3", "status": "building_image"}),
            ),
            ("4".to_string(), json!({"id": "4"})),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            running_jobs(&jobs),
            vec![
                "Job 3 is not complete (status = building_image)",
                "Job 4 is not complete (no 'status' field found)"
            ]
        );
    }
}
