//! The slice of the Kubernetes API imsflow needs: ConfigMaps (the product
//! catalog, main and split) in `services`, Secrets (`admin-client-auth`
//! in `default`), and the IMS workload (`cluster`: its pods and Deployment,
//! rollouts; `exec`: `pods/exec` over WebSocket). Authenticated by the
//! kubeconfig's bearer token.
pub mod authz;
pub mod cluster;
pub mod exec;

use crate::{JsonFile, SimState};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// `k8s.json`: `{"configmaps": [...], "secrets": [...]}`, Kubernetes objects as JSON.
pub fn empty() -> Value {
    json!({ "configmaps": [], "secrets": [] })
}

/// The decoded `client-secret` of `default/admin-client-auth`.
pub fn admin_client_secret(k8s: &JsonFile) -> Option<String> {
    let secret = find(&k8s.value, "secrets", "default", "admin-client-auth")?;
    let encoded = secret["data"]["client-secret"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn find<'a>(root: &'a Value, kind: &str, ns: &str, name: &str) -> Option<&'a Value> {
    root[kind]
        .as_array()?
        .iter()
        .find(|o| o["metadata"]["namespace"] == ns && o["metadata"]["name"] == name)
}

pub(crate) fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16() });
    (code, Json(body)).into_response()
}

pub(crate) async fn require_kube_token(
    State(s): State<Arc<SimState>>,
    req: Request,
    next: Next,
) -> Response {
    let expected = format!("Bearer {}", s.config.kube_token);
    if req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        );
    }
    next.run(req).await
}

/// `key=value` selectors, comma-separated (all must match).
pub(crate) fn selector_matches(obj: &Value, selector: Option<&String>) -> bool {
    selector.is_none_or(|sel| {
        sel.split(',')
            .filter(|c| !c.is_empty())
            .all(|cond| match cond.split_once('=') {
                Some((k, v)) => obj["metadata"]["labels"][k.trim()] == v.trim(),
                None => obj["metadata"]["labels"].get(cond.trim()).is_some(),
            })
    })
}

fn list_kind(
    kind: &'static str,
    list: &'static str,
) -> impl Fn(
    State<Arc<SimState>>,
    Path<String>,
    Query<HashMap<String, String>>,
) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>>
+ Clone {
    move |State(s), Path(ns), Query(q)| {
        Box::pin(async move {
            let k8s = s.k8s.lock().await;
            let items: Vec<Value> = k8s.value[kind]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| {
                    o["metadata"]["namespace"] == ns.as_str()
                        && selector_matches(o, q.get("labelSelector"))
                })
                .cloned()
                .collect();
            Json(json!({ "kind": list, "apiVersion": "v1", "metadata": {}, "items": items }))
                .into_response()
        })
    }
}

fn get_kind(
    kind: &'static str,
) -> impl Fn(
    State<Arc<SimState>>,
    Path<(String, String)>,
) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>>
+ Clone {
    move |State(s), Path((ns, name))| {
        Box::pin(async move {
            let k8s = s.k8s.lock().await;
            match find(&k8s.value, kind, &ns, &name) {
                Some(o) => Json(o.clone()).into_response(),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{kind} \"{name}\" not found"),
                ),
            }
        })
    }
}

pub fn router(state: Arc<SimState>) -> Router<Arc<SimState>> {
    Router::new()
        .route(
            "/namespaces/{ns}/configmaps",
            get(list_kind("configmaps", "ConfigMapList")),
        )
        .route(
            "/namespaces/{ns}/configmaps/{name}",
            get(get_kind("configmaps")),
        )
        .route(
            "/namespaces/{ns}/secrets",
            get(list_kind("secrets", "SecretList")),
        )
        .route("/namespaces/{ns}/secrets/{name}", get(get_kind("secrets")))
        .route(
            "/namespaces/{ns}/pods",
            get(
                |State(s): State<Arc<SimState>>,
                 Path(ns): Path<String>,
                 Query(q): Query<HashMap<String, String>>| async move {
                    Json(exec::pod_list(&s, &ns, q.get("labelSelector")))
                },
            ),
        )
        .route(
            "/namespaces/{ns}/pods/{name}",
            get(
                |State(s): State<Arc<SimState>>, Path((ns, name)): Path<(String, String)>| async move {
                    let c = s.cluster.lock().unwrap();
                    match c.find_pod(&name).filter(|_| ns == cluster::NAMESPACE) {
                        Some(p) => Json(c.pod_json(&p)).into_response(),
                        None => status(
                            StatusCode::NOT_FOUND,
                            "NotFound",
                            format!("pods \"{name}\" not found"),
                        ),
                    }
                },
            ),
        )
        .route(
            "/namespaces/{ns}/pods/{name}/exec",
            get(exec::exec).post(exec::exec),
        )
        .layer(axum::middleware::from_fn_with_state(
            state,
            require_kube_token,
        ))
}

/// `/apis/authorization.k8s.io/v1`: `SelfSubjectAccessReview`.
pub fn authorization_router(state: Arc<SimState>) -> Router<Arc<SimState>> {
    Router::new()
        .route(
            "/selfsubjectaccessreviews",
            axum::routing::post(authz::self_subject_access_review),
        )
        .layer(axum::middleware::from_fn_with_state(
            state,
            require_kube_token,
        ))
}

/// `/apis/apps/v1`: the IMS Deployment, read and patched (rollout restart).
pub fn apps_router(state: Arc<SimState>) -> Router<Arc<SimState>> {
    Router::new()
        .route(
            "/namespaces/{ns}/deployments/{name}",
            get(cluster::get_deployment).patch(cluster::patch_deployment),
        )
        .layer(axum::middleware::from_fn_with_state(
            state,
            require_kube_token,
        ))
}
