//! The checks before an apply changes anything: `--until` names a gate of
//! the plan, the plan's structure and grants (`plan::check`), the input
//! archive is the one the plan was made from, what a stopped run left half
//! done is rolled back, and every effect is prechecked by its executor (a
//! plan with any stale effect is refused whole, naming each).
use super::batch::PRECHECK_CONCURRENCY;
use super::executor::{FAMILIES, Failure, Prechecks, World, for_effect, of_family};
use super::run::Recorder;
use super::store::PodCache;
use super::{ApplyError, ApplyReport, Status};
use crate::archive::ArchiveReader;
use crate::backends::Backends;
use crate::journal::{Event, History};
use crate::plan::{InputArchive, Plan, check};
use futures::StreamExt;
use std::collections::BTreeMap;

/// `--until` must name a gate the plan has.
pub fn check_until(plan: &Plan, until: Option<&String>) -> Result<(), ApplyError> {
    if let Some(until) = until
        && !plan.gates.iter().any(|g| &g.name == until)
    {
        let names: Vec<&str> = plan.gates.iter().map(|g| g.name.as_str()).collect();
        return Err(ApplyError::Refused(vec![format!(
            "--until names gate `{until}`, which this plan does not have (its gates: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )]));
    }
    Ok(())
}

/// What makes a plan unappliable before the world is even looked at, and
/// the input archive when it is the planned one.
pub fn structural_problems(
    plan: &Plan,
    backends: &Backends,
    need_input: bool,
) -> (Vec<String>, Option<ArchiveReader>) {
    let mut problems = check::check(plan);
    let input = match plan.input.as_ref().filter(|_| need_input) {
        Some(planned) => match open_input(planned) {
            Ok(reader) => Some(reader),
            Err(p) => {
                problems.push(p.to_string());
                None
            }
        },
        None => None,
    };
    let uses_s3 = plan.effects.iter().any(|e| e.effect.bucket().is_some());
    if uses_s3 && backends.s3.is_none() {
        problems.push("the plan reads or writes S3, but no S3 endpoint is configured".into());
    }
    let uses_ims = plan
        .effects
        .iter()
        .any(|e| e.effect.needs_csm() && e.effect.bucket().is_none());
    if uses_ims && backends.services.is_none() {
        problems.push("the plan changes IMS, but no CSM gateway is configured".into());
    }
    (problems, input)
}

/// The input archive, if it is still the one the plan was made from.
pub fn open_input(planned: &InputArchive) -> Result<ArchiveReader, Failure> {
    let path = planned.path.display();
    let reader = ArchiveReader::open(&planned.path)
        .map_err(|e| Failure::Refused(format!("cannot open the input archive: {e}")))?;
    let size = reader.size();
    if size != planned.size {
        return Err(Failure::Stale(format!(
            "the input archive {path} changed since planning: it had {} bytes, now {size}",
            planned.size
        )));
    }
    let index = super::index_sha256(&reader);
    if index != planned.index_sha256 {
        return Err(Failure::Stale(format!(
            "the input archive {path} changed since planning: its export.json had sha256 {}, now {}",
            planned.index_sha256.as_deref().unwrap_or("(none)"),
            index.as_deref().unwrap_or("(none)")
        )));
    }
    Ok(reader)
}

/// Before a resumed run goes on: each family undoes what a killed run left
/// half done (open multipart uploads are aborted, a partial archive is
/// removed and rebuilt from the start: its name is this plan's own).
pub async fn roll_back_leftovers(
    world: World<'_>,
    recorder: &Recorder,
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    for family in FAMILIES {
        for undone in family.roll_back(world).await? {
            report.decisions.push(undone.decision);
            if let Some(id) = undone.id {
                recorder.durable(Event::RolledBack {
                    id,
                    what: undone.what,
                })?;
            }
        }
    }
    Ok(())
}

/// Every effect's status, prechecked concurrently by its executor, in plan
/// order. What the journal records as done, and the world confirmed
/// (`confirm`), is done (archive effects excepted: they take effect only
/// with the finished archive); what it left in progress is `check`ed.
pub async fn precheck(
    plan: &Plan,
    backends: &Backends,
    input: Option<&ArchiveReader>,
    history: &History,
    pods: &mut PodCache,
) -> Vec<Status> {
    let mut missing_buckets = BTreeMap::new();
    if let Some(s3) = backends.s3.as_deref() {
        for bucket in plan
            .effects
            .iter()
            .filter(|e| for_effect(&e.effect).writes_bucket() && !history.done.contains_key(&e.id))
            .filter_map(|e| e.effect.bucket())
        {
            if !missing_buckets.contains_key(bucket) {
                let missing = !s3.bucket_exists(bucket).await.unwrap_or(true);
                missing_buckets.insert(bucket.to_string(), missing);
            }
        }
    }
    // Effects behind a delete see the world the deletes leave.
    let mut cx = Prechecks {
        plan,
        backends,
        input,
        history,
        behind_pending: Vec::with_capacity(plan.effects.len()),
        behind_any: Vec::with_capacity(plan.effects.len()),
    };
    let (mut pending, mut any) = (false, false);
    for e in &plan.effects {
        cx.behind_pending.push(pending);
        cx.behind_any.push(any);
        if for_effect(&e.effect).changes_what_follows() {
            any = true;
            pending |= !history.done.contains_key(&e.id);
        }
    }
    let cx = &cx;
    let missing_buckets = &missing_buckets;
    let mut statuses: Vec<Status> = futures::stream::iter(0..plan.effects.len())
        .map(|i| async move {
            let e = &plan.effects[i];
            let executor = for_effect(&e.effect);
            if let Some(why) = executor.already_done(cx, i) {
                return Status::Done(why);
            }
            if let Some(bucket) = e.effect.bucket()
                && missing_buckets.get(bucket) == Some(&true)
            {
                return Status::Stale(format!("bucket `{bucket}` does not exist"));
            }
            executor.precheck(cx, i).await
        })
        .buffered(PRECHECK_CONCURRENCY)
        .collect()
        .await;
    for family in FAMILIES {
        let mine = of_family(plan, family, |_| true);
        if !mine.is_empty() {
            family.precheck_family(cx, pods, &mine, &mut statuses).await;
        }
    }
    statuses
}

/// The stale effects, each named, that refuse the plan whole.
pub fn stale(
    plan: &Plan,
    statuses: &[Status],
    disputes: &[super::confirm::Dispute],
) -> Vec<String> {
    plan.effects
        .iter()
        .zip(statuses)
        .filter_map(|(e, s)| match s {
            Status::Stale(why) => Some(
                match disputes.iter().find(|d| d.ids.contains(&e.id)) {
                    Some(d) => format!(
                        "effect {}: the journal records it as done, but {}; it cannot be done again: {why}",
                        e.id, d.why
                    ),
                    None => format!("stale: effect {}: {why}", e.id),
                },
            ),
            _ => None,
        })
        .collect()
}
