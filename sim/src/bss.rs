//! BSS boot parameters: `GET` (all, or `?name=` hosts), `POST` (create),
//! `PUT` (create or replace), `DELETE` (by hosts).
use crate::SimState;
use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

pub fn router() -> Router<Arc<SimState>> {
    Router::new().route(
        "/boot/v1/bootparameters",
        get(list).post(create).put(replace).delete(remove),
    )
}

fn hosts(v: &Value) -> Vec<String> {
    v["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(String::from))
        .collect()
}

fn parse(body: &Bytes) -> Result<Value, Problem> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("Invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(Problem::bad_request(
            "Boot parameters must be a JSON object",
        ));
    }
    Ok(v)
}

async fn list(
    State(s): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let bss = s.bss.lock().await;
    let wanted: Option<Vec<&str>> = q.get("name").map(|n| n.split(',').collect());
    let items: Vec<&Value> = bss
        .value
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            wanted
                .as_ref()
                .is_none_or(|w| hosts(e).iter().any(|h| w.contains(&h.as_str())))
        })
        .collect();
    Json(items).into_response()
}

async fn create(State(s): State<Arc<SimState>>, body: Bytes) -> Result<Response, Problem> {
    let entry = parse(&body)?;
    let mut bss = s.bss.lock().await;
    let new_hosts = hosts(&entry);
    if bss
        .value
        .as_array()
        .unwrap()
        .iter()
        .any(|e| hosts(e).iter().any(|h| new_hosts.contains(h)))
    {
        return Err(Problem::bad_request(
            "A host already has boot parameters; use PUT or PATCH",
        ));
    }
    bss.value.as_array_mut().unwrap().push(entry);
    bss.save().map_err(Problem::internal)?;
    Ok(StatusCode::CREATED.into_response())
}

async fn replace(State(s): State<Arc<SimState>>, body: Bytes) -> Result<Response, Problem> {
    let entry = parse(&body)?;
    let mut bss = s.bss.lock().await;
    let new_hosts = hosts(&entry);
    let all = bss.value.as_array_mut().unwrap();
    all.retain(|e| new_hosts.is_empty() || !hosts(e).iter().any(|h| new_hosts.contains(h)));
    all.push(entry);
    bss.save().map_err(Problem::internal)?;
    Ok(StatusCode::OK.into_response())
}

async fn remove(State(s): State<Arc<SimState>>, body: Bytes) -> Result<Response, Problem> {
    let entry = parse(&body)?;
    let gone = hosts(&entry);
    let mut bss = s.bss.lock().await;
    bss.value
        .as_array_mut()
        .unwrap()
        .retain(|e| !hosts(e).iter().any(|h| gone.contains(h)));
    bss.save().map_err(Problem::internal)?;
    Ok(StatusCode::OK.into_response())
}
