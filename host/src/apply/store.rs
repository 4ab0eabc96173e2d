//! The ID-preserving executors: IMS data-file writes and the IMS restart,
//! through Kubernetes (`k8s::ims`). IMS refuses client-chosen ids (422), so
//! records come back under their ids only this way, as HPE's in-pod tool
//! does it: the running IMS names its files, each new file is written next
//! to the old one and renamed over it, the deployment is rolled, and IMS is
//! read back. If IMS wrote its memory over the new files before the restart
//! (HPE's race), the writes are undone in the journal and `resume` redoes them.
use super::Status;
use super::confirm::Dispute;
use super::executor::{Applied, Executor, Failed, Failure, Fut, Prechecks, World};
use super::ims::store_precheck;
use super::run::Run;
use crate::backends::Backends;
use crate::journal::{Event, Observed};
use crate::k8s::ims::{DataFiles as Files, ImsKubeError, ImsPod, ImsWorkload, Table};
use crate::plan::effect::{Effect, ImsKind};
use crate::plan::{Plan, PlannedEffect, PlannedGate};
use crate::readback::{ReadBackError, verify_tables};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;
use tracing::Instrument;

/// How long a rollout may take (HPE waits 1200 s for `rollout status`);
/// `IMSFLOW_ROLLOUT_TIMEOUT` (seconds, 1 to 86400) sets another.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(1200);
const ROLLOUT_TIMEOUT_ENV: &str = "IMSFLOW_ROLLOUT_TIMEOUT";

fn rollout_timeout() -> Result<Duration, Failure> {
    match std::env::var(ROLLOUT_TIMEOUT_ENV) {
        Err(_) => Ok(ROLLOUT_TIMEOUT),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=86_400).contains(s))
            .map(Duration::from_secs)
            .ok_or_else(|| {
                Failure::Refused(format!(
                    "{ROLLOUT_TIMEOUT_ENV}={v:?}: expected a number of seconds from 1 to 86400"
                ))
            }),
    }
}

pub fn table(kind: ImsKind, deleted: bool) -> Table {
    match (kind, deleted) {
        (ImsKind::Image, false) => Table::Images,
        (ImsKind::Image, true) => Table::DeletedImages,
        (ImsKind::Recipe, false) => Table::Recipes,
        (ImsKind::Recipe, true) => Table::DeletedRecipes,
        (ImsKind::PublicKey, false) => Table::PublicKeys,
        (ImsKind::PublicKey, true) => Table::DeletedPublicKeys,
        (ImsKind::Job, _) => Table::Jobs,
    }
}

/// The IMS pod and the data files it uses, found once per apply.
#[derive(Default)]
pub struct PodCache(Option<(ImsPod, Files)>);

fn workload(backends: &Backends) -> Result<ImsWorkload, Failure> {
    backends
        .kube
        .clone()
        .map(ImsWorkload::new)
        .ok_or_else(|| {
            Failure::Refused("IMS data files are written through Kubernetes, but no kubeconfig is configured (--kubeconfig)".into())
        })
}

/// The tables a plan writes, so that the pod's file names are discovered
/// for all of them at once.
fn tables_of(plan: &Plan) -> Vec<Table> {
    let mut tables: Vec<Table> = plan
        .effects
        .iter()
        .filter_map(|e| match &e.effect {
            Effect::ImsStoreWrite {
                ims_kind, deleted, ..
            } => Some(table(*ims_kind, *deleted)),
            _ => None,
        })
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

impl PodCache {
    /// The pod and its data files (exactly one Running IMS pod, exec and
    /// the restart allowed, every file named by the running IMS).
    pub async fn get(
        &mut self,
        backends: &Backends,
        plan: &Plan,
    ) -> Result<(ImsPod, Files), Failure> {
        if let Some(found) = &self.0 {
            return Ok(found.clone());
        }
        let w = workload(backends)?;
        let pod = w.find_pod().await?;
        w.check_rights(&pod).await?;
        let files = w.discover_files(&pod, &tables_of(plan)).await?;
        self.0 = Some((pod.clone(), files.clone()));
        Ok((pod, files))
    }

    /// Forgets the pod: after a restart it is another one.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// A data-file write's table, the pod and the file's path in it.
async fn target<'e>(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    effect: &'e Effect,
) -> Result<(Table, &'e str, ImsPod, Option<String>), Failure> {
    let Effect::ImsStoreWrite {
        ims_kind,
        deleted,
        records_json,
        ..
    } = effect
    else {
        return Err(Failure::Refused(format!(
            "`{}` is not a data-file write",
            effect.kind()
        )));
    };
    let table = table(*ims_kind, *deleted);
    let (pod, files) = pods.get(backends, plan).await?;
    Ok((table, records_json.as_str(), pod, files.path(table)))
}

/// Writes the effect's records as the data file of its table, with `keep`
/// (records IMS accepted after planning, which an additive write keeps)
/// after them.
async fn write(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    effect: &Effect,
    keep: &[Value],
) -> Result<Observed, Failure> {
    let (table, records_json, pod, path) = target(backends, plan, pods, effect).await?;
    let records: Value = serde_json::from_str(records_json)
        .map_err(|e| Failure::Failed(format!("the planned {table} are not JSON: {e}")))?;
    let Value::Array(mut records) = records else {
        return Err(Failure::Failed(format!(
            "the planned {table} are not a JSON list"
        )));
    };
    let path = path
        .ok_or_else(|| Failure::Stale(format!("the running IMS names no data file for {table}")))?;
    let bytes = if keep.is_empty() {
        records_json.as_bytes().to_vec()
    } else {
        records.extend(keep.iter().cloned());
        serde_json::to_vec(&records).map_err(|e| Failure::Failed(e.to_string()))?
    };
    workload(backends)?.write_file(&pod, &path, &bytes).await?;
    use sha2::Digest;
    Ok(Observed {
        bytes: Some(bytes.len() as u64),
        sha256: Some(hex::encode(sha2::Sha256::digest(&bytes))),
        kept: keep
            .iter()
            .filter_map(record_id)
            .map(String::from)
            .collect(),
        ..Observed::default()
    })
}

fn record_id(record: &Value) -> Option<&str> {
    record.get("id").and_then(Value::as_str)
}

/// The records of a write's table that the plan does not know: in the
/// pod's data file now, but neither written by the plan, nor removed or
/// deleted by it. IMS accepted them after planning, e.g. in the window
/// between the data-file writes and the restart (HPE's race).
async fn newcomers(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    effect: &Effect,
) -> Result<Vec<Value>, Failure> {
    let (table, records_json, pod, path) = target(backends, plan, pods, effect).await?;
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let Effect::ImsStoreWrite {
        ims_kind, summary, ..
    } = effect
    else {
        return Ok(Vec::new());
    };
    let now = workload(backends)?.read_file(&pod, &path).await?;
    let now: Value = serde_json::from_slice(&now)
        .map_err(|e| Failure::Failed(format!("{path} in pod {}: not JSON: {e}", pod.name)))?;
    let planned: Value = serde_json::from_str(records_json)
        .map_err(|e| Failure::Failed(format!("the planned {table} are not JSON: {e}")))?;
    let mut known: std::collections::BTreeSet<&str> = planned
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(record_id)
        .chain(summary.removed.iter().map(String::as_str))
        .collect();
    known.extend(plan.effects.iter().filter_map(|e| match &e.effect {
        Effect::ImsDelete {
            ims_kind: k, id, ..
        } if k == ims_kind => Some(id.as_str()),
        _ => None,
    }));
    Ok(now
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| record_id(r).is_some_and(|id| !known.contains(id)))
        .cloned()
        .collect())
}

/// `check` of a write that was in progress: the pod's file holds the
/// planned records.
async fn written(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    effect: &Effect,
) -> Result<bool, Failure> {
    let (_, records_json, pod, path) = target(backends, plan, pods, effect).await?;
    let Some(path) = path else {
        return Ok(false);
    };
    let now = workload(backends)?.read_file(&pod, &path).await?;
    Ok(now == records_json.as_bytes())
}

/// Rolls the IMS deployment, waits for it, and reads IMS back against every
/// table the plan wrote. IMS serving other records than were written is
/// the race (`Failure::Race`).
async fn restart(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    observer: &dyn crate::observe::Observer,
) -> Result<Observed, Failure> {
    let w = workload(backends)?;
    let timeout = rollout_timeout()?;
    let asked = w.restart().await?;
    pods.clear();
    let status = w
        .wait_rollout(&asked, timeout, |s| {
            observer.status(&format!("IMS rollout: {s}"));
            tracing::info!("IMS rollout: {s}");
        })
        .await
        .map_err(|e| match e {
            // The files are rewritten, the old pod serves its memory and the
            // new one has not loaded them: say what IMS serves meanwhile.
            ImsKubeError::RolloutTimeout { .. } | ImsKubeError::RolloutFailed { .. } => {
                Failure::Failed(format!(
                    "{e}. Until a new IMS pod is ready and has loaded the new data files, IMS serves \
                     an empty or partial set of records (whatever the old pod still holds). Fix the \
                     cluster so that the IMS deployment can roll out; `imsflow resume {}` then \
                     restarts IMS again and verifies the import",
                    plan.run.id
                ))
            }
            e => e.into(),
        })?;
    let written = written_tables(plan)?;
    match verify_tables(backends, &written, &keeping_tables(plan)).await {
        Ok(()) => Ok(Observed {
            http_status: Some(200),
            ..Observed::default()
        }),
        Err(e @ ReadBackError::Mismatch { .. }) => Err(Failure::Race(format!(
            "IMS restarted ({}), but {e}",
            status.message
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `check` of a restart that was in progress: IMS already serves what the
/// plan wrote.
async fn restarted(backends: &Backends, plan: &Plan) -> Result<bool, Failure> {
    Ok(
        verify_tables(backends, &written_tables(plan)?, &keeping_tables(plan))
            .await
            .is_ok(),
    )
}

/// The tables whose writes keep records the plan does not know
/// (`Plan::additive_write`):
/// IMS may serve more of them than the plan wrote.
fn keeping_tables(plan: &Plan) -> std::collections::BTreeSet<Table> {
    plan.effects
        .iter()
        .filter(|e| plan.additive_write(&e.effect))
        .filter_map(|e| match &e.effect {
            Effect::ImsStoreWrite {
                ims_kind, deleted, ..
            } => Some(table(*ims_kind, *deleted)),
            _ => None,
        })
        .collect()
}

fn written_tables(plan: &Plan) -> Result<BTreeMap<Table, Value>, Failure> {
    let mut written = BTreeMap::new();
    for e in &plan.effects {
        if let Effect::ImsStoreWrite {
            ims_kind,
            deleted,
            records_json,
            ..
        } = &e.effect
        {
            let records: Value = serde_json::from_str(records_json)
                .map_err(|e| Failure::Failed(format!("the planned records are not JSON: {e}")))?;
            written.insert(table(*ims_kind, *deleted), records);
        }
    }
    Ok(written)
}

/// The IMS data-file executor (`ims-store-write`, `ims-restart`): one
/// family, because the writes and the restart share the one IMS pod.
pub struct DataFiles;

impl Executor for DataFiles {
    fn name(&self) -> &'static str {
        "ims data files"
    }

    fn precheck<'a>(&'a self, cx: &'a Prechecks<'a>, i: usize) -> Fut<'a, Status> {
        Box::pin(async move {
            let effect = &cx.plan.effects[i].effect;
            match effect {
                // Behind a delete, or maybe written: judged when reached.
                Effect::ImsStoreWrite { .. } if cx.behind_any[i] || cx.in_doubt(i) => {
                    Status::Deferred
                }
                Effect::ImsStoreWrite { .. } => store_precheck(cx.backends, effect).await,
                Effect::ImsRestart if cx.in_doubt(i) => Status::Deferred,
                _ => Status::Ready,
            }
        })
    }

    /// Data-file writes need the one IMS pod, exec, and the file names.
    fn precheck_family<'a>(
        &'a self,
        cx: &'a Prechecks<'a>,
        pods: &'a mut PodCache,
        mine: &'a [usize],
        statuses: &'a mut [Status],
    ) -> Fut<'a, ()> {
        Box::pin(async move {
            if let Some(&first) = mine
                .iter()
                .find(|i| !matches!(statuses[**i], Status::Done(_)))
                && let Err(why) = pods.get(cx.backends, cx.plan).await
            {
                statuses[first] = Status::Stale(why.to_string());
            }
        })
    }

    /// The writes and the restart share the pod: checked one at a time.
    fn check<'a>(
        &'a self,
        world: World<'a>,
        pods: &'a mut PodCache,
        done: &'a [usize],
    ) -> Fut<'a, Vec<Dispute>> {
        Box::pin(async move {
            let (plan, backends) = (world.plan, world.backends);
            let restart_done = done
                .iter()
                .any(|i| matches!(plan.effects[*i].effect, Effect::ImsRestart));
            let mut found = Vec::new();
            for e in done.iter().map(|i| &plan.effects[*i]) {
                let dispute = match &e.effect {
                    Effect::ImsStoreWrite { .. } => {
                        write_dispute(plan, backends, pods, e, restart_done).await
                    }
                    Effect::ImsRestart => match restarted(backends, plan).await {
                        Ok(true) => None,
                        Ok(false) => Some(Dispute::redo(
                            vec![e.id.clone()],
                            "IMS does not serve the records that were written".into(),
                        )),
                        Err(why) => Some(Dispute::refuse(vec![e.id.clone()], why.to_string())),
                    },
                    _ => None,
                };
                found.extend(dispute);
            }
            found
        })
    }

    fn reached<'a, 'r>(&'a self, run: &'a mut Run<'r>, i: usize) -> Fut<'a, Status>
    where
        'r: 'a,
    {
        Box::pin(async move {
            let e = &run.plan.effects[i];
            let in_doubt =
                run.history.in_doubt.contains(&e.id) || run.history.failed.contains_key(&e.id);
            match &e.effect {
                Effect::ImsStoreWrite { .. } => {
                    let was_written = in_doubt
                        && written(run.backends, run.plan, &mut run.pods, &e.effect)
                            .await
                            .unwrap_or(false);
                    if was_written {
                        Status::Done("the pod's data file holds the planned records".into())
                    } else {
                        match store_precheck(run.backends, &e.effect).await {
                            Status::Done(why) => Status::Done(why),
                            // The deletes ahead changed the records it was
                            // planned against, as planned.
                            _ => Status::Ready,
                        }
                    }
                }
                Effect::ImsRestart => {
                    if restarted(run.backends, run.plan).await.unwrap_or(false) {
                        Status::Done("IMS serves the records that were written".into())
                    } else {
                        Status::Ready
                    }
                }
                _ => Status::Ready,
            }
        })
    }

    fn apply<'a, 'r>(
        &'a self,
        run: &'a mut Run<'r>,
        batch: Range<usize>,
    ) -> Fut<'a, Result<Applied, Failed>>
    where
        'r: 'a,
    {
        Box::pin(async move {
            let i = batch.start;
            let span = run.span(i);
            let effect = &run.plan.effects[i].effect;
            let observed = if let Effect::ImsStoreWrite { .. } = effect {
                let keep = match newcomers_at(run, i).instrument(span.clone()).await? {
                    Newcomers::Keep(keep) => keep,
                    Newcomers::Stop(stop) => return Ok(Applied::Stopped(stop)),
                };
                write(run.backends, run.plan, &mut run.pods, effect, &keep)
                    .instrument(span)
                    .await?
            } else {
                let restarted = restart(run.backends, run.plan, &mut run.pods, &*run.opts.observer)
                    .instrument(span)
                    .await;
                match restarted {
                    Err(Failure::Race(why)) => {
                        // The writes did not take effect: the journal says so.
                        for w in run
                            .plan
                            .effects
                            .iter()
                            .filter(|w| matches!(w.effect, Effect::ImsStoreWrite { .. }))
                        {
                            run.recorder.append(Event::RolledBack {
                                id: w.id.clone(),
                                what: "IMS overwrote this data file from memory before the restart"
                                    .into(),
                            })?;
                        }
                        return Err(Failure::Race(why).into());
                    }
                    other => other?,
                }
            };
            Ok(Applied::Done(vec![observed]))
        })
    }
}

/// What a data-file write does with the records the plan does not know.
enum Newcomers {
    /// Write the planned records and these.
    Keep(Vec<Value>),
    /// Stopped at the gate that asks before dropping them.
    Stop(super::GateStop),
}

/// The records the data-file write of effect `i` finds that the plan
/// does not know (IMS accepted them after planning, e.g. in the race
/// window): an additive write keeps them; any other asks at a gate
/// before it drops them, listing each.
async fn newcomers_at(run: &mut Run<'_>, i: usize) -> Result<Newcomers, Failure> {
    let e = &run.plan.effects[i];
    let found = newcomers(run.backends, run.plan, &mut run.pods, &e.effect).await?;
    if found.is_empty() {
        return Ok(Newcomers::Keep(Vec::new()));
    }
    let kind = match &e.effect {
        Effect::ImsStoreWrite {
            ims_kind, deleted, ..
        } => format!(
            "{}{}",
            if *deleted { "deleted " } else { "" },
            ims_kind.name()
        ),
        _ => String::new(),
    };
    let named: Vec<String> = found
        .iter()
        .map(|r| {
            let id = r.get("id").and_then(|v| v.as_str()).unwrap_or_default();
            match r.get("name").and_then(|v| v.as_str()) {
                Some(name) => format!("{id} ({name})"),
                None => id.to_string(),
            }
        })
        .collect();
    if run.plan.additive_write(&e.effect) {
        let note = format!(
            "kept {} {kind}(s) that IMS accepted after planning and the archive does not hold: {}",
            found.len(),
            named.join(", ")
        );
        tracing::warn!("{note}");
        run.report.notes.push(note);
        return Ok(Newcomers::Keep(found));
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(named.join("\n")));
    let gate = PlannedGate {
        name: format!("drop-new-records-{}", &digest[..12]),
        description: format!(
            "IMS accepted {} {kind}(s) after this import was planned, which the archive does not hold: {}. \
             Writing the planned data file drops them, as this import replaces every record; \
             approve to drop them, or stop here and plan the import again to review them",
            found.len(),
            named.join(", ")
        ),
        before: e.id.clone(),
    };
    match run.gate(&gate, i)? {
        Some(stop) => Ok(Newcomers::Stop(stop)),
        None => Ok(Newcomers::Keep(Vec::new())),
    }
}

/// `check` of a done write: IMS serves the written records (after the
/// restart), or the pod's data file holds them (before it). Done again only
/// when IMS still holds what the plan was made against; anything else is a
/// change nobody planned.
async fn write_dispute(
    plan: &Plan,
    backends: &Backends,
    pods: &mut PodCache,
    e: &PlannedEffect,
    restart_done: bool,
) -> Option<Dispute> {
    let ids = vec![e.id.clone()];
    // After the restart, IMS serves what was written (with what an additive
    // write kept, which the plan's fingerprints cannot know).
    if restart_done && restarted(backends, plan).await.unwrap_or(false) {
        return None;
    }
    if !restart_done {
        match written(backends, plan, pods, &e.effect).await {
            Ok(true) => return None,
            Ok(false) => {}
            Err(why) => {
                return Some(Dispute::refuse(
                    ids,
                    format!("its data file cannot be read: {why}"),
                ));
            }
        }
    }
    match store_precheck(backends, &e.effect).await {
        Status::Done(_) | Status::Deferred => None,
        Status::Ready => Some(Dispute::redo(
            ids,
            "IMS holds the records as they were before the import".into(),
        )),
        Status::Stale(why) => Some(Dispute::refuse(
            ids,
            format!(
                "{why}; IMS holds records that neither the plan wrote nor it was made against: check them, then make a new plan"
            ),
        )),
    }
}
