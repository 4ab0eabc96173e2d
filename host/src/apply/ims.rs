//! The IMS API executors: record deletes (soft: v3 DELETE; hard: v2 DELETE
//! with `cascade`; purge: v3 `deleted/` DELETE; jobs: v3 DELETE) and the
//! `ims-empty` assertion, through the gateway with the bearer token.
//!
//! `precheck` (and `check`, the same here): the record is gone from where
//! the effect deletes it (404: done), or it is still the record the plan saw
//! (its fingerprint: ready), or it changed (stale).
use super::Status;
use crate::backends::{Backends, ServiceResponse};
use crate::journal::Observed;
use crate::plan::effect::{
    Assertion, DeleteMode, Effect, ImsKind, fingerprint, records_fingerprint,
};
use reqwest::Method;
use std::time::Duration;

/// Tries of a request answered with a 5xx (or not answered), with backoff.
const TRIES: u32 = 4;
/// Largest response body quoted in an error.
const QUOTED: usize = 500;

fn segment(kind: ImsKind) -> &'static str {
    match kind {
        ImsKind::Image => "images",
        ImsKind::Recipe => "recipes",
        ImsKind::PublicKey => "public-keys",
        ImsKind::Job => "jobs",
    }
}

/// Where the record lives before the delete, and the request that deletes it.
fn target(
    kind: ImsKind,
    id: &str,
    mode: DeleteMode,
) -> (String, String, Vec<(&'static str, &'static str)>) {
    let seg = segment(kind);
    match (kind, mode) {
        (_, DeleteMode::Purge) => {
            let path = format!("v3/deleted/{seg}/{id}");
            (path.clone(), path, vec![])
        }
        (ImsKind::Image | ImsKind::Recipe, DeleteMode::Hard { cascade }) => (
            format!("v3/{seg}/{id}"),
            format!("v2/{seg}/{id}"),
            // As HPE's importer sends it.
            vec![("cascade", if cascade { "True" } else { "False" })],
        ),
        (_, DeleteMode::Hard { .. }) => {
            (format!("v3/{seg}/{id}"), format!("v2/{seg}/{id}"), vec![])
        }
        (_, DeleteMode::Soft) => {
            let path = format!("v3/{seg}/{id}");
            (path.clone(), path, vec![])
        }
    }
}

/// A request, retried on 5xx and on transport errors.
async fn call(
    backends: &Backends,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
) -> Result<ServiceResponse, String> {
    let mut wait = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=TRIES {
        match backends
            .service_call(method.clone(), "ims", path, query)
            .await
        {
            Ok(r) if r.status < 500 => return Ok(r),
            Ok(r) => last = format!("HTTP {}: {}", r.status, quote(&r.body)),
            Err(e) => last = e.to_string(),
        }
        if attempt < TRIES {
            tracing::warn!("{method} ims/{path}: {last}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(format!("{method} ims/{path}: {last} (after {TRIES} tries)"))
}

fn quote(body: &str) -> String {
    let mut s: String = body.chars().take(QUOTED).collect();
    if body.len() > s.len() {
        s.push('…');
    }
    crate::archive::escaped(&s).into_owned()
}

pub async fn precheck(backends: &Backends, effect: &Effect) -> Status {
    let Effect::ImsDelete {
        ims_kind,
        id,
        delete,
        fingerprint: planned,
        ..
    } = effect
    else {
        return Status::Ready;
    };
    let (lives, _, _) = target(*ims_kind, id, *delete);
    match call(backends, Method::GET, &lives, &[]).await {
        Ok(r) if r.status == 404 => Status::Done(format!("ims/{lives} is gone already")),
        Ok(r) if r.status == 200 => match serde_json::from_str::<serde_json::Value>(&r.body) {
            Ok(record) if fingerprint(&record) == *planned => Status::Ready,
            Ok(_) => Status::Stale(format!(
                "ims/{lives} changed since planning (its fingerprint is no longer {planned})"
            )),
            Err(e) => Status::Stale(format!("ims/{lives}: the answer is not JSON: {e}")),
        },
        Ok(r) => Status::Stale(format!(
            "GET ims/{lives}: HTTP {}: {}",
            r.status,
            quote(&r.body)
        )),
        Err(e) => Status::Stale(e),
    }
}

/// Sends the delete; 204 is done, and so is 404 (gone already).
pub async fn delete(backends: &Backends, effect: &Effect) -> Result<Observed, String> {
    let Effect::ImsDelete {
        ims_kind,
        id,
        name,
        delete,
        ..
    } = effect
    else {
        return Err(format!("`{}` is not an IMS delete", effect.kind()));
    };
    let (_, path, query) = target(*ims_kind, id, *delete);
    let r = call(backends, Method::DELETE, &path, &query).await?;
    match r.status {
        204 | 404 => Ok(Observed {
            http_status: Some(r.status),
            ..Observed::default()
        }),
        status => Err(format!(
            "{}delete of {} {id} ({name}): DELETE ims/{path}: expected HTTP 204, got {status}: {}",
            mode_name(*ims_kind, *delete),
            ims_kind.name(),
            quote(&r.body)
        )),
    }
}

/// How a delete is named in messages; IMS jobs have no deleted store, so
/// theirs is a plain delete.
fn mode_name(kind: ImsKind, mode: DeleteMode) -> &'static str {
    match (kind, mode) {
        (ImsKind::Job, DeleteMode::Soft) => "",
        (_, DeleteMode::Soft) => "soft ",
        (_, DeleteMode::Hard { cascade: true }) => "hard (cascade) ",
        (_, DeleteMode::Hard { cascade: false }) => "hard ",
        (_, DeleteMode::Purge) => "purge ",
    }
}

/// Evaluates an assertion against IMS as it is now; Err says what remains.
pub async fn assert(backends: &Backends, effect: &Effect) -> Result<Observed, String> {
    let Effect::Assert {
        assertion:
            Assertion::ImsEmpty {
                live,
                deleted,
                jobs,
            },
    } = effect
    else {
        return Err(format!("`{}` is not an assertion", effect.kind()));
    };
    let mut lists = Vec::new();
    for kind in [ImsKind::Image, ImsKind::PublicKey, ImsKind::Recipe] {
        if *live {
            lists.push((
                format!("v3/{}", segment(kind)),
                format!("live {}s", kind.name()),
            ));
        }
        if *deleted {
            lists.push((
                format!("v3/deleted/{}", segment(kind)),
                format!("deleted {}s", kind.name()),
            ));
        }
    }
    if *jobs {
        lists.push(("v3/jobs".into(), "jobs".into()));
    }
    let mut remaining = Vec::new();
    for (path, what) in &lists {
        let r = call(backends, Method::GET, path, &[]).await?;
        if r.status != 200 {
            return Err(format!(
                "GET ims/{path}: HTTP {}: {}",
                r.status,
                quote(&r.body)
            ));
        }
        let records: Vec<serde_json::Value> = serde_json::from_str(&r.body)
            .map_err(|e| format!("GET ims/{path}: not a JSON list: {e}"))?;
        if !records.is_empty() {
            let ids: Vec<&str> = records
                .iter()
                .filter_map(|r| r.get("id").and_then(|i| i.as_str()))
                .take(5)
                .collect();
            remaining.push(format!(
                "{} {what} ({}{})",
                records.len(),
                ids.join(", "),
                if records.len() > 5 { ", …" } else { "" }
            ));
        }
    }
    if remaining.is_empty() {
        Ok(Observed {
            http_status: Some(200),
            ..Observed::default()
        })
    } else {
        Err(format!(
            "IMS is not empty after the deletes: {}; nothing after this point was applied",
            remaining.join("; ")
        ))
    }
}

/// `precheck` of a data-file write, through the API: IMS still holds the
/// records the plan saw (ready), or already the planned ones (done).
pub async fn store_precheck(backends: &Backends, effect: &Effect) -> Status {
    let Effect::ImsStoreWrite {
        ims_kind,
        deleted,
        records_json,
        fingerprint: planned,
        ..
    } = effect
    else {
        return Status::Ready;
    };
    let path = if *deleted {
        format!("v3/deleted/{}", segment(*ims_kind))
    } else {
        format!("v3/{}", segment(*ims_kind))
    };
    let now = match call(backends, Method::GET, &path, &[]).await {
        Ok(r) if r.status == 200 => match serde_json::from_str::<serde_json::Value>(&r.body) {
            Ok(v) => records_fingerprint(&v),
            Err(e) => return Status::Stale(format!("GET ims/{path}: not JSON: {e}")),
        },
        Ok(r) => {
            return Status::Stale(format!(
                "GET ims/{path}: HTTP {}: {}",
                r.status,
                quote(&r.body)
            ));
        }
        Err(e) => return Status::Stale(e),
    };
    let target = serde_json::from_str(records_json)
        .ok()
        .map(|v| records_fingerprint(&v));
    if now == *planned {
        Status::Ready
    } else if target.as_ref() == Some(&now) {
        Status::Done(format!(
            "IMS already holds the planned {}s",
            ims_kind.name()
        ))
    } else {
        Status::Stale(format!(
            "the {}s in IMS changed since planning (ims/{path} no longer has fingerprint {planned})",
            ims_kind.name()
        ))
    }
}
