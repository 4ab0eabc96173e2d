//! BOS v2 session templates, keyed by (tenant, name); `Cray-Tenant-Name`
//! scopes every call, and PUT is an upsert.
use crate::SimState;
use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;

/// `bos.json`: known tenants (as TAPMS would list them) and the templates.
pub fn empty() -> Value {
    json!({ "tenants": [], "sessiontemplates": [] })
}

const FIELDS: &[&str] = &[
    "name",
    "tenant",
    "description",
    "enable_cfs",
    "cfs",
    "boot_sets",
    "links",
];

fn tenant(headers: &HeaderMap) -> Option<String> {
    headers
        .get("Cray-Tenant-Name")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .map(String::from)
}

fn same_owner(t: &Value, tenant: &Option<String>) -> bool {
    match tenant {
        Some(name) => t["tenant"] == name.as_str(),
        None => t["tenant"].is_null(),
    }
}

pub fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/v2/sessiontemplates", get(list))
        // BOS v1 (CSM 1.0-1.3, still served later): untenanted templates,
        // without the v2-only fields, at the singular path.
        .route("/v1/sessiontemplate", get(list_v1))
        .route(
            "/v2/sessiontemplates/{name}",
            get(one).put(put).delete(delete),
        )
}

async fn list(State(s): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let tenant = tenant(&headers);
    let bos = s.bos.lock().await;
    let items: Vec<&Value> = bos.value["sessiontemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| tenant.is_none() || same_owner(t, &tenant))
        .collect();
    Json(items).into_response()
}

async fn list_v1(State(s): State<Arc<SimState>>) -> Response {
    let bos = s.bos.lock().await;
    let items: Vec<Value> = bos.value["sessiontemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["tenant"].is_null())
        .map(|t| {
            let mut v1 = t.clone();
            if let Some(m) = v1.as_object_mut() {
                m.remove("tenant");
                m.remove("links");
            }
            v1
        })
        .collect();
    Json(items).into_response()
}

async fn one(
    State(s): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let tenant = tenant(&headers);
    let bos = s.bos.lock().await;
    bos.value["sessiontemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == name.as_str() && same_owner(t, &tenant))
        .map(|t| Json(t.clone()).into_response())
        .ok_or_else(|| Problem::not_found(format!("Session template {name} could not be found")))
}

fn valid_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    (1..=127).contains(&name.len())
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

async fn put(
    State(s): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let tenant = tenant(&headers);
    let mut body: Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("Invalid JSON: {e}")))?;
    let Some(obj) = body.as_object_mut() else {
        return Err(Problem::bad_request("The template must be a JSON object"));
    };
    if !valid_name(&name) {
        return Err(Problem::bad_request(format!(
            "Invalid session template name {name}"
        )));
    }
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(Problem::bad_request(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    if !obj
        .get("boot_sets")
        .is_some_and(|b| b.as_object().is_some_and(|m| !m.is_empty()))
    {
        return Err(Problem::bad_request("'boot_sets' is a required property"));
    }
    let mut bos = s.bos.lock().await;
    if let Some(t) = &tenant
        && !bos.value["tenants"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|x| x == t.as_str()))
    {
        return Err(Problem::bad_request(format!("Invalid tenant {t}")));
    }
    obj.remove("links");
    obj.insert("name".into(), json!(name));
    obj.insert("tenant".into(), json!(tenant));
    obj.entry("enable_cfs").or_insert(json!(true));
    if let Some(Value::Object(sets)) = obj.get_mut("boot_sets") {
        for set in sets.values_mut() {
            if let Some(set) = set.as_object_mut() {
                set.remove("name");
            }
        }
    }
    let templates = bos.value["sessiontemplates"].as_array_mut().unwrap();
    templates.retain(|t| !(t["name"] == name.as_str() && same_owner(t, &tenant)));
    templates.push(body.clone());
    bos.save().map_err(Problem::internal)?;
    Ok(Json(body).into_response())
}

async fn delete(
    State(s): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let tenant = tenant(&headers);
    let mut bos = s.bos.lock().await;
    let templates = bos.value["sessiontemplates"].as_array_mut().unwrap();
    let before = templates.len();
    templates.retain(|t| !(t["name"] == name.as_str() && same_owner(t, &tenant)));
    if templates.len() == before {
        return Err(Problem::not_found(format!(
            "Session template {name} could not be found"
        )));
    }
    bos.save().map_err(Problem::internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
