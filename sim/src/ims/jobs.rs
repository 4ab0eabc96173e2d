//! IMS jobs: GETs fill the schema's defaults, and POST validates its body
//! and the artifact it names before anything would start in Kubernetes.
use super::store::{Record, Table};
use super::{Reply, S, ok, schema};
use crate::SimState;
use crate::problem::Problem;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// The 14 fields real IMS's job schema fills on output when a stored record
/// lacks them (its marshmallow defaults, as seen on a live IMS).
fn defaults() -> [(&'static str, Value); 14] {
    [
        ("build_env_size", json!(60)),
        ("job_mem_size", json!(8)),
        ("enable_debug", json!(false)),
        ("initrd_file_name", json!("initrd")),
        ("kernel_parameters_file_name", json!("kernel-parameters")),
        ("require_dkms", json!(true)),
        ("remote_build_node", json!("")),
        ("kernel_file_name", Value::Null),
        ("kubernetes_configmap", Value::Null),
        ("kubernetes_pvc", Value::Null),
        ("kubernetes_secret", Value::Null),
        ("kubernetes_service", Value::Null),
        ("resultant_image_id", Value::Null),
        ("ssh_containers", Value::Null),
    ]
}

/// A stored job as a GET serves it.
pub fn with_defaults(stored: &Record) -> Record {
    let mut r = stored.clone();
    for (field, value) in defaults() {
        r.entry(field).or_insert(value);
    }
    r
}

pub async fn list(s: S) -> Reply {
    let ims = s.ims.lock().await;
    let jobs: Vec<Record> = ims.all(Table::Jobs).iter().map(with_defaults).collect();
    ok(StatusCode::OK, jobs)
}

/// `POST /jobs`: schema errors are a 422; an artifact or public key that
/// does not exist is a 400, as real IMS answers. The simulator runs no
/// builds, so a valid job is recorded as `creating` and stays there.
pub async fn create(s: &SimState, body: Value) -> Reply {
    let mut job = schema::job(&body)?;
    let mut ims = s.ims.lock().await;
    let artifact = job["artifact_id"].as_str().unwrap_or_default().to_string();
    let (table, noun) = match job["job_type"].as_str() {
        Some("create") => (Table::Recipes, "recipe"),
        _ => (Table::Images, "image"),
    };
    if ims.get(table, &artifact).is_none() {
        return Err(Problem::bad_request(format!(
            "Invalid artifact_id. No IMS {noun} record found with id {artifact}"
        )));
    }
    let key = job["public_key_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if ims.get(Table::PublicKeys, &key).is_none() {
        return Err(Problem::bad_request(format!(
            "Invalid public_key_id. No IMS public key record found with id {key}"
        )));
    }
    let id = s.new_id();
    let mut record = Record::new();
    record.insert("id".into(), json!(id));
    record.insert("created".into(), json!(super::now()));
    record.append(&mut job);
    record.insert("status".into(), json!("creating"));
    record.insert("kubernetes_namespace".into(), json!("ims"));
    record.entry("arch").or_insert(json!("x86_64"));
    ims.put(Table::Jobs, record.clone())
        .map_err(Problem::internal)?;
    ok(StatusCode::CREATED, with_defaults(&record))
}
