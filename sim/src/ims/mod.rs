//! The IMS API under `/apis/ims`: v2, v3 and the un-versioned (v2) aliases
//! for public keys, recipes and images, jobs, and the v3 `deleted` store.
pub mod artifacts;
mod jobs;
pub mod schema;
pub mod store;

use crate::SimState;
use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use schema::Kind;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use store::{Record, Table};

type S = State<Arc<SimState>>;
type Reply = Result<Response, Problem>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    V2,
    V3,
}

/// IMS timestamps: naive local time, ISO-8601 with microseconds.
pub fn now() -> String {
    chrono::Local::now()
        .naive_local()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

fn table(kind: Kind) -> Table {
    match kind {
        Kind::PublicKey => Table::PublicKeys,
        Kind::Recipe => Table::Recipes,
        Kind::Image => Table::Images,
    }
}

fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::PublicKey => "public key",
        Kind::Recipe => "recipe",
        Kind::Image => "image",
    }
}

/// Connexion's body handling: a body without a JSON content type is a 415
/// before anything looks at it; a JSON one that is empty or does not parse is a 400.
fn body_json(headers: &HeaderMap, body: &Bytes) -> Result<Value, Problem> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json_type = essence
        .strip_prefix("application/")
        .is_some_and(|sub| sub == "json" || sub.ends_with("+json"));
    if !json_type {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Invalid Content-type ({mime}), expected JSON data"),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::bad_request(crate::problem::MISSING_INPUT));
    }
    serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("The request body is not JSON: {e}")))
}

fn ok(status: StatusCode, v: impl serde::Serialize) -> Reply {
    Ok((status, Json(v)).into_response())
}

/// Flask answers 204 with its default mimetype, `application/json`.
fn no_content() -> Reply {
    Ok((
        StatusCode::NO_CONTENT,
        [(header::CONTENT_TYPE, "application/json")],
    )
        .into_response())
}

fn missing(kind: Kind, id: &str) -> Problem {
    tracing::info!("no IMS {} record matches id={id}", noun(kind));
    Problem::not_found(crate::problem::NOT_FOUND)
}

pub fn router() -> Router<Arc<SimState>> {
    let mut r = Router::new()
        .route(
            "/version",
            get(|| async { Json(json!({ "version": "3.24.0-csm-sim" })) }),
        )
        .route("/healthz/ready", get(|| async { Json(json!({})) }))
        .route("/healthz/live", get(|| async { Json(json!({})) }));
    for (prefix, api) in [("/v2", Api::V2), ("/v3", Api::V3), ("", Api::V2)] {
        for (segment, kind) in [
            ("public-keys", Kind::PublicKey),
            ("recipes", Kind::Recipe),
            ("images", Kind::Image),
        ] {
            r = r
                .route(
                    &format!("{prefix}/{segment}"),
                    get(move |s: S| list(s, table(kind)))
                        .post(move |s: S, h: HeaderMap, b: Bytes| create(s, kind, h, b))
                        .delete(move |s: S, q: Query<HashMap<String, String>>| {
                            delete_all(s, api, kind, q)
                        }),
                )
                .route(
                    &format!("{prefix}/{segment}/{{id}}"),
                    get(move |s: S, p: Path<String>| one(s, kind, table(kind), p))
                        .patch(move |s: S, p: Path<String>, h: HeaderMap, b: Bytes| {
                            patch(s, kind, p, h, b)
                        })
                        .delete(
                            move |s: S, p: Path<String>, q: Query<HashMap<String, String>>| {
                                delete_one(s, api, kind, p, q)
                            },
                        ),
                );
        }
        r = r
            .route(
                &format!("{prefix}/jobs"),
                get(|s: S| jobs::list(s))
                    .post(|s: S, h: HeaderMap, b: Bytes| async move {
                        jobs::create(&s, body_json(&h, &b)?).await
                    })
                    .delete(|s: S, q: Query<HashMap<String, String>>| delete_jobs(s, q)),
            )
            .route(
                &format!("{prefix}/jobs/{{id}}"),
                get(|s: S, Path(id): Path<String>| async move {
                    let ims = s.ims.lock().await;
                    match ims.get(Table::Jobs, &id) {
                        Some(r) => ok(StatusCode::OK, jobs::with_defaults(r)),
                        None => Err(Problem::not_found(crate::problem::NOT_FOUND)),
                    }
                })
                .delete(|s: S, Path(id): Path<String>| async move {
                    let mut ims = s.ims.lock().await;
                    match ims.remove(Table::Jobs, &id).map_err(Problem::internal)? {
                        Some(_) => no_content(),
                        None => Err(Problem::not_found(crate::problem::NOT_FOUND)),
                    }
                }),
            );
    }
    for (segment, kind) in [
        ("public-keys", Kind::PublicKey),
        ("recipes", Kind::Recipe),
        ("images", Kind::Image),
    ] {
        let deleted = table(kind).deleted().unwrap();
        r = r
            .route(
                &format!("/v3/deleted/{segment}"),
                get(move |s: S| list(s, deleted))
                    .patch(move |s: S, h: HeaderMap, b: Bytes| undelete_all(s, kind, h, b))
                    .delete(move |s: S| purge_all(s, kind)),
            )
            .route(
                &format!("/v3/deleted/{segment}/{{id}}"),
                get(move |s: S, p: Path<String>| one(s, kind, deleted, p))
                    .patch(
                        move |s: S, Path(id): Path<String>, h: HeaderMap, b: Bytes| async move {
                            check_undelete_body(&h, &b)?;
                            undelete_one(&s, kind, &id).await?;
                            no_content()
                        },
                    )
                    .delete(move |s: S, Path(id): Path<String>| async move {
                        purge_one(&s, kind, &id).await?;
                        no_content()
                    }),
            );
    }
    // Flask answers unknown routes (trailing slashes included) with a
    // problem body. A catch-all route, because axum does not use a nested
    // router's fallback here.
    r.route(
        "/{*rest}",
        any(|| async {
            Problem::not_found(
                "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
            )
        }),
    )
}

async fn list(s: S, t: Table) -> Reply {
    ok(StatusCode::OK, s.ims.lock().await.all(t))
}

async fn one(s: S, kind: Kind, t: Table, Path(id): Path<String>) -> Reply {
    match s.ims.lock().await.get(t, &id) {
        Some(r) => ok(StatusCode::OK, r),
        None => Err(missing(kind, &id)),
    }
}

/// Link uniqueness among live records, then the S3 checks.
async fn check_link(
    s: &SimState,
    ims: &store::Store,
    kind: Kind,
    link: &Value,
    except: Option<&str>,
) -> Result<(), Problem> {
    let Some(path) = link.get("path").and_then(Value::as_str) else {
        return Ok(());
    };
    let taken = ims.all(table(kind)).iter().any(|r| {
        artifacts::link_path(r) == Some(path) && r.get("id").and_then(Value::as_str) != except
    });
    if taken {
        return Err(Problem::unprocessable(format!(
            "An {} already uses the link {path}",
            noun(kind)
        )));
    }
    match kind {
        Kind::Image => artifacts::check_image_link(&s.s3, path).await,
        Kind::Recipe => artifacts::check_recipe_link(&s.s3, path).await,
        Kind::PublicKey => Ok(()),
    }
}

async fn create(s: S, kind: Kind, headers: HeaderMap, body: Bytes) -> Reply {
    let rec = schema::post(kind, &body_json(&headers, &body)?)?;
    let mut ims = s.ims.lock().await;
    if let Some(link) = rec.get("link").filter(|l| !l.is_null()).cloned() {
        check_link(&s, &ims, kind, &link, None).await?;
    }
    let record = create_record(&mut ims, kind, &s.new_id(), rec)?;
    ok(StatusCode::CREATED, record)
}

/// `POST /v3/<kind>`'s record (validated by `schema::post`), given its id
/// and creation time, and stored (which rewrites the table's data file from
/// memory).
pub(crate) fn create_record(
    ims: &mut store::Store,
    kind: Kind,
    id: &str,
    mut rec: Record,
) -> Result<Record, Problem> {
    let mut record = Record::new();
    record.insert("id".into(), json!(id));
    record.insert("created".into(), json!(now()));
    record.append(&mut rec);
    if kind == Kind::Image
        && let Some(Value::Object(m)) = record.get("metadata").cloned()
        && m.len() == 2
        && let (Some(Value::String(k)), Some(Value::String(v))) = (m.get("key"), m.get("value"))
    {
        // The single-pair form {"key": k, "value": v} means {k: v}.
        record.insert("metadata".into(), json!({ k: v }));
    }
    ims.put(table(kind), record.clone())
        .map_err(Problem::internal)?;
    Ok(record)
}

async fn patch(s: S, kind: Kind, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Reply {
    let body = body_json(&headers, &body)?;
    if kind == Kind::PublicKey {
        return Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Public keys cannot be changed",
        ));
    }
    let changes = schema::patch(kind, &body)?;
    let mut ims = s.ims.lock().await;
    let mut record = ims
        .get(table(kind), &id)
        .cloned()
        .ok_or_else(|| missing(kind, &id))?;
    for (field, value) in changes {
        match field.as_str() {
            "link" => {
                let current = record
                    .get("link")
                    .filter(|l| !l.is_null() && artifacts::link_path_value(l).is_some());
                match current {
                    Some(cur) if same_link(cur, &value) => continue,
                    Some(_) => {
                        tracing::info!("the {} {id} already has another link", noun(kind));
                        return Err(Problem::conflict(crate::problem::PATCH_CONFLICT));
                    }
                    None => {
                        if !value.is_null() {
                            check_link(&s, &ims, kind, &value, Some(&id)).await?;
                        }
                    }
                }
                record.insert(field, value);
            }
            "metadata" => {
                let meta = record.entry("metadata").or_insert(json!({}));
                let key = value["key"].as_str().unwrap_or_default().to_string();
                match value["operation"].as_str() {
                    Some("set") => meta[&key] = value["value"].clone(),
                    _ => {
                        if let Some(m) = meta.as_object_mut() {
                            m.remove(&key);
                        }
                    }
                }
            }
            _ => {
                record.insert(field, value);
            }
        }
    }
    ims.put(table(kind), record.clone())
        .map_err(Problem::internal)?;
    ok(StatusCode::OK, record)
}

/// Real IMS compares the whole link dict: the same path with another etag
/// (even one added where the stored etag is "") is a conflict.
fn same_link(a: &Value, b: &Value) -> bool {
    a == b
}

fn cascade(q: &HashMap<String, String>) -> bool {
    !q.get("cascade")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

async fn delete_one(
    s: S,
    api: Api,
    kind: Kind,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    match api {
        Api::V2 => hard_delete(&s, kind, &id, cascade(&q)).await?,
        Api::V3 => soft_delete(&s, kind, &id).await?,
    }
    no_content()
}

async fn delete_all(s: S, api: Api, kind: Kind, Query(q): Query<HashMap<String, String>>) -> Reply {
    let ids = ids(&s, table(kind)).await;
    for id in ids {
        match api {
            Api::V2 => hard_delete(&s, kind, &id, cascade(&q)).await?,
            Api::V3 => soft_delete(&s, kind, &id).await?,
        }
    }
    no_content()
}

async fn ids(s: &SimState, t: Table) -> Vec<String> {
    s.ims
        .lock()
        .await
        .all(t)
        .iter()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect()
}

/// v2 DELETE: the record goes; with `cascade` (default) its S3 artifacts too.
async fn hard_delete(s: &SimState, kind: Kind, id: &str, cascade: bool) -> Result<(), Problem> {
    let mut ims = s.ims.lock().await;
    let record = ims
        .get(table(kind), id)
        .cloned()
        .ok_or_else(|| missing(kind, id))?;
    if cascade {
        artifacts::delete_artifacts(&s.s3, kind, &record).await?;
    }
    ims.remove(table(kind), id).map_err(Problem::internal)?;
    Ok(())
}

/// v3 DELETE: the record moves to the deleted store, its S3 objects under `deleted/`.
async fn soft_delete(s: &SimState, kind: Kind, id: &str) -> Result<(), Problem> {
    let mut ims = s.ims.lock().await;
    let mut record = ims
        .get(table(kind), id)
        .cloned()
        .ok_or_else(|| missing(kind, id))?;
    artifacts::soft_delete(&s.s3, kind, &mut record).await?;
    record.insert("deleted".into(), json!(now()));
    ims.put(table(kind).deleted().unwrap(), record)
        .map_err(Problem::internal)?;
    ims.remove(table(kind), id).map_err(Problem::internal)?;
    Ok(())
}

fn check_undelete_body(headers: &HeaderMap, body: &Bytes) -> Result<(), Problem> {
    let body = body_json(headers, body)?;
    if body.as_object().is_some_and(|o| o.is_empty()) {
        return Err(Problem::bad_request(crate::problem::MISSING_INPUT));
    }
    match body.get("operation").and_then(Value::as_str) {
        Some("undelete") if body.as_object().is_some_and(|o| o.len() == 1) => Ok(()),
        _ => Err(Problem::invalid_field(
            "operation",
            "Must be one of: undelete.",
        )),
    }
}

async fn undelete_one(s: &SimState, kind: Kind, id: &str) -> Result<(), Problem> {
    let deleted = table(kind).deleted().unwrap();
    let mut ims = s.ims.lock().await;
    let mut record = ims
        .get(deleted, id)
        .cloned()
        .ok_or_else(|| missing(kind, id))?;
    artifacts::undelete(&s.s3, kind, &mut record).await?;
    record.remove("deleted");
    ims.put(table(kind), record).map_err(Problem::internal)?;
    ims.remove(deleted, id).map_err(Problem::internal)?;
    Ok(())
}

async fn undelete_all(s: S, kind: Kind, headers: HeaderMap, body: Bytes) -> Reply {
    check_undelete_body(&headers, &body)?;
    for id in ids(&s, table(kind).deleted().unwrap()).await {
        undelete_one(&s, kind, &id).await?;
    }
    no_content()
}

/// Permanent delete of a soft-deleted record and its S3 objects.
async fn purge_one(s: &SimState, kind: Kind, id: &str) -> Result<(), Problem> {
    let deleted = table(kind).deleted().unwrap();
    let mut ims = s.ims.lock().await;
    let record = ims
        .get(deleted, id)
        .cloned()
        .ok_or_else(|| missing(kind, id))?;
    artifacts::delete_artifacts(&s.s3, kind, &record).await?;
    ims.remove(deleted, id).map_err(Problem::internal)?;
    Ok(())
}

async fn purge_all(s: S, kind: Kind) -> Reply {
    for id in ids(&s, table(kind).deleted().unwrap()).await {
        purge_one(&s, kind, &id).await?;
    }
    no_content()
}

/// `DELETE /jobs` with optional `status` and `job_type` filters (comma lists).
async fn delete_jobs(s: S, Query(q): Query<HashMap<String, String>>) -> Reply {
    let matches = |r: &Record, field: &str| {
        q.get(field).is_none_or(|want| {
            want.split(',')
                .any(|w| r.get(field).and_then(Value::as_str) == Some(w))
        })
    };
    let mut ims = s.ims.lock().await;
    let doomed: Vec<String> = ims
        .all(Table::Jobs)
        .iter()
        .filter(|r| matches(r, "status") && matches(r, "job_type"))
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect();
    for id in doomed {
        ims.remove(Table::Jobs, &id).map_err(Problem::internal)?;
    }
    no_content()
}
