//! Keycloak client-credentials tokens, the gateway's bearer check on `/apis`,
//! and STS handing out S3 credentials.
use crate::SimState;
use crate::problem::Problem;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Form, Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub const CLIENT_ID: &str = "admin-client";

pub fn keycloak_router() -> Router<Arc<SimState>> {
    Router::new().route("/realms/shasta/protocol/openid-connect/token", post(token))
}

async fn token(
    State(s): State<Arc<SimState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let secret = crate::k8s::admin_client_secret(&*s.k8s.lock().await);
    let valid = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && secret.is_some()
        && form.get("client_secret") == secret.as_ref();
    if !valid {
        let body = json!({ "error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials" });
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let token = format!("sim-{}", crate::random_uuid(&mut fastrand::Rng::new()));
    s.tokens.lock().unwrap().insert(token.clone());
    Json(json!({ "access_token": token, "expires_in": 300, "token_type": "bearer", "scope": "profile email" })).into_response()
}

/// The gateway refuses `/apis` calls without a valid bearer token.
pub async fn require_token(State(s): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let ok = presented.is_some_and(|t| s.tokens.lock().unwrap().contains(t));
    if !ok {
        return Problem::new(StatusCode::UNAUTHORIZED, "Missing or invalid bearer token")
            .into_response();
    }
    next.run(req).await
}

pub fn sts_router() -> Router<Arc<SimState>> {
    Router::new().route("/token", put(sts_token))
}

async fn sts_token(State(s): State<Arc<SimState>>) -> Response {
    let expiration = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let body = json!({ "Credentials": {
        "EndpointURL": s.config.s3.endpoint,
        "AccessKeyId": s.config.s3.access_key,
        "SecretAccessKey": s.config.s3.secret_key,
        // Real STS hands out a session token with its temporary keys. RGW
        // without STS ignores it beyond the signature, so clients that send
        // it (as they must on a real system) are exercised.
        "SessionToken": format!("sim-session-{}", crate::random_uuid(&mut fastrand::Rng::new())),
        "Expiration": expiration,
    }});
    (StatusCode::CREATED, Json(body)).into_response()
}
