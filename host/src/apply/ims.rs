//! The IMS API executors: record deletes (soft: v3 DELETE; hard: v2 DELETE
//! with `cascade`; purge: v3 `deleted/` DELETE; jobs: v3 DELETE) and the
//! `ims-empty` assertion, through the gateway with the bearer token.
//!
//! `precheck` (and `check`, the same here): the record is gone from where
//! the effect deletes it (404: done), or it is still the record the plan saw
//! (its fingerprint: ready), or it changed (stale).
use super::Status;
use super::confirm::Dispute;
use super::executor::{
    Applied, Executor, Failed, Failure, Fut, Prechecks, World, disputes_of, one_request,
};
use super::run::Run;
use super::store::PodCache;
use crate::backends::{Backends, ServiceResponse};
use crate::journal::Observed;
use crate::plan::effect::{
    Assertion, DeleteMode, Effect, ImsKind, fingerprint, records_fingerprint,
};
use crate::plan::{Plan, PlannedEffect};
use reqwest::Method;
use std::ops::Range;
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
) -> Result<ServiceResponse, Failure> {
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
    Err(Failure::Transient {
        request: format!("{method} ims/{path}"),
        last,
        tries: TRIES,
    })
}

fn quote(body: &str) -> String {
    let mut s: String = body.chars().take(QUOTED).collect();
    if body.len() > s.len() {
        s.push('…');
    }
    crate::archive::escaped(&s).into_owned()
}

async fn precheck(backends: &Backends, effect: &Effect) -> Status {
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
        Err(e) => Status::Stale(e.to_string()),
    }
}

/// Sends the delete; 204 is done, and so is 404 (gone already).
async fn delete(backends: &Backends, effect: &Effect) -> Result<Observed, Failure> {
    let Effect::ImsDelete {
        ims_kind,
        id,
        name,
        delete,
        ..
    } = effect
    else {
        return Err(Failure::Refused(format!(
            "`{}` is not an IMS delete",
            effect.kind()
        )));
    };
    let (_, path, query) = target(*ims_kind, id, *delete);
    let r = call(backends, Method::DELETE, &path, &query).await?;
    match r.status {
        204 | 404 => Ok(Observed {
            http_status: Some(r.status),
            ..Observed::default()
        }),
        status => Err(Failure::Conflict(format!(
            "{}delete of {} {id} ({name}): DELETE ims/{path}: expected HTTP 204, got {status}: {}",
            mode_name(*ims_kind, *delete),
            ims_kind.name(),
            quote(&r.body)
        ))),
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
async fn assert(backends: &Backends, effect: &Effect) -> Result<Observed, Failure> {
    let Effect::Assert {
        assertion:
            Assertion::ImsEmpty {
                live,
                deleted,
                jobs,
            },
    } = effect
    else {
        return Err(Failure::Refused(format!(
            "`{}` is not an assertion",
            effect.kind()
        )));
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
            return Err(Failure::Http {
                request: format!("GET ims/{path}"),
                status: r.status,
                body: quote(&r.body),
            });
        }
        let records: Vec<serde_json::Value> = serde_json::from_str(&r.body)
            .map_err(|e| Failure::Failed(format!("GET ims/{path}: not a JSON list: {e}")))?;
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
        Err(Failure::Conflict(format!(
            "IMS is not empty after the deletes: {}; nothing after this point was applied",
            remaining.join("; ")
        )))
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
        Err(e) => return Status::Stale(e.to_string()),
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

/// The IMS record delete executor (`ims-delete`).
pub struct Delete;

impl Executor for Delete {
    fn name(&self) -> &'static str {
        "ims delete"
    }

    fn changes_what_follows(&self) -> bool {
        true
    }

    fn precheck<'a>(&'a self, cx: &'a Prechecks<'a>, i: usize) -> Fut<'a, Status> {
        Box::pin(precheck(cx.backends, &cx.plan.effects[i].effect))
    }

    /// Deletes are independent reads: checked concurrently.
    fn check<'a>(
        &'a self,
        world: World<'a>,
        _pods: &'a mut PodCache,
        done: &'a [usize],
    ) -> Fut<'a, Vec<Dispute>> {
        Box::pin(disputes_of(done, move |i| {
            dispute(world.plan, world.backends, &world.plan.effects[i])
        }))
    }

    fn apply<'a, 'r>(
        &'a self,
        run: &'a mut Run<'r>,
        batch: Range<usize>,
    ) -> Fut<'a, Result<Applied, Failed>>
    where
        'r: 'a,
    {
        one_request(run, batch.start, |backends, effect| {
            Box::pin(delete(backends, effect))
        })
    }
}

/// `check` of a done delete: the record is gone from where the delete took
/// it (unless a data-file write of the plan puts it back, which that
/// write's check covers).
async fn dispute(plan: &Plan, backends: &Backends, e: &PlannedEffect) -> Option<Dispute> {
    let Effect::ImsDelete { ims_kind, id, .. } = &e.effect else {
        return None;
    };
    if crate::postcheck::rewritten(plan, *ims_kind, id) {
        return None;
    }
    let ids = vec![e.id.clone()];
    match precheck(backends, &e.effect).await {
        Status::Done(_) | Status::Deferred => None,
        Status::Ready => Some(Dispute::redo(
            ids,
            format!("IMS still has {} {id}", ims_kind.name()),
        )),
        Status::Stale(why) => Some(Dispute::refuse(ids, why)),
    }
}

/// The `ims-empty` assertion executor: evaluated when reached, after the
/// effects before it. The journal is its only witness: it describes a
/// moment that later effects end.
pub struct Empty;

impl Executor for Empty {
    fn name(&self) -> &'static str {
        "ims assertion"
    }

    fn apply<'a, 'r>(
        &'a self,
        run: &'a mut Run<'r>,
        batch: Range<usize>,
    ) -> Fut<'a, Result<Applied, Failed>>
    where
        'r: 'a,
    {
        one_request(run, batch.start, |backends, effect| {
            Box::pin(assert(backends, effect))
        })
    }
}
