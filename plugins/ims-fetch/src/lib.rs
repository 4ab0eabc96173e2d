//! `ims-fetch`: the IMS records of an export, as HPE's `export_ims_data.py`
//! loads them: v3 lists turned into id -> record maps, each record checked
//! for a non-empty unique `id` and a non-empty `created`; aborts while jobs
//! run unless told to ignore them.
use imsflow_pdk::serde_json::{Map, Value};
use imsflow_pdk::{Input, PluginInfo, Step, StepError, StepOutput};

struct ImsFetch;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct With {
    #[serde(default)]
    include_deleted: bool,
    #[serde(default)]
    ignore_running_jobs: bool,
}

/// GET a v3 list and validate it into an id -> record map.
fn records(path: &str, what: &str) -> Result<Map<String, Value>, StepError> {
    let list = imsflow_pdk::service_json("ims", path)?;
    let Value::Array(items) = list else {
        return Err(StepError::Aborted(format!(
            "{what}: IMS did not answer a JSON list"
        )));
    };
    let mut out = Map::new();
    for item in items {
        let Value::Object(record) = item else {
            return Err(StepError::Aborted(format!(
                "At least one item in {what} is not a JSON object"
            )));
        };
        for field in ["id", "created"] {
            match record.get(field) {
                None => {
                    return Err(StepError::Aborted(format!(
                        "At least one item in {what} is missing required field '{field}'"
                    )));
                }
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(_) => {
                    return Err(StepError::Aborted(format!(
                        "At least one item in {what} has empty value for '{field}' field"
                    )));
                }
            }
        }
        let id = record["id"].as_str().unwrap().to_string();
        if out.insert(id.clone(), Value::Object(record)).is_some() {
            return Err(StepError::Aborted(format!(
                "At least one item in {what} has duplicate 'id' value '{id}'"
            )));
        }
    }
    Ok(out)
}

impl Step for ImsFetch {
    type With = With;

    fn describe() -> PluginInfo {
        imsflow_pdk::plugin_info!("ims")
    }

    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let jobs = records("v3/jobs", "IMS jobs")?;
        let running: Vec<String> = jobs
            .values()
            .filter(|j| {
                !matches!(
                    j.get("status").and_then(Value::as_str),
                    Some("success" | "error")
                )
            })
            .map(|j| match j.get("status").and_then(Value::as_str) {
                Some(s) => format!(
                    "Job {} is not complete (status = {s})",
                    j["id"].as_str().unwrap_or_default()
                ),
                None => format!(
                    "Job {} is not complete (no 'status' field found)",
                    j["id"].as_str().unwrap_or_default()
                ),
            })
            .collect();
        if !running.is_empty() {
            if !input.with.ignore_running_jobs {
                return Err(StepError::Aborted(format!(
                    "Aborted due to incomplete jobs: {}. Wait until jobs are completed, or pass --ignore-running-jobs",
                    running.join("; ")
                )));
            }
            imsflow_pdk::warn(&format!(
                "ignoring {} incomplete job(s): {}",
                running.len(),
                running.join("; ")
            ));
        }
        let mut ims = Map::new();
        ims.insert("jobs".into(), Value::Object(jobs));
        for (key, path, what) in [
            ("images", "images", "IMS images"),
            ("public_keys", "public-keys", "IMS public keys"),
            ("recipes", "recipes", "IMS recipes"),
        ] {
            ims.insert(
                key.into(),
                Value::Object(records(&format!("v3/{path}"), what)?),
            );
        }
        let deleted = if input.with.include_deleted {
            let mut d = Map::new();
            for (key, path, what) in [
                ("images", "images", "deleted IMS images"),
                ("public_keys", "public-keys", "deleted IMS public keys"),
                ("recipes", "recipes", "deleted IMS recipes"),
            ] {
                d.insert(
                    key.into(),
                    Value::Object(records(&format!("v3/deleted/{path}"), what)?),
                );
            }
            Value::Object(d)
        } else {
            Value::Null
        };
        ims.insert("deleted".into(), deleted);
        Ok(imsflow_pdk::output(&ims, vec![]))
    }
}

imsflow_pdk::export_step!(ImsFetch);
