//! The ID-preserving executors: IMS data-file writes and the IMS restart,
//! through Kubernetes (`k8s::ims`). IMS refuses client-chosen ids (422), so
//! records come back under their ids only this way, as HPE's in-pod tool
//! does it: the running IMS names its files, each new file is written next
//! to the old one and renamed over it, the deployment is rolled, and IMS is
//! read back. If IMS wrote its memory over the new files before the restart
//! (HPE's race), the writes are undone in the journal and `resume` redoes them.
use crate::backends::Backends;
use crate::journal::Observed;
use crate::k8s::ims::{DataFiles, ImsKubeError, ImsPod, ImsWorkload, Table};
use crate::plan::Plan;
use crate::plan::effect::{Effect, ImsKind};
use crate::readback::{ReadBackError, verify_tables};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a rollout may take (HPE waits 1200 s for `rollout status`);
/// `IMSFLOW_ROLLOUT_TIMEOUT` (seconds, 1 to 86400) sets another.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(1200);
const ROLLOUT_TIMEOUT_ENV: &str = "IMSFLOW_ROLLOUT_TIMEOUT";

fn rollout_timeout() -> Result<Duration, String> {
    match std::env::var(ROLLOUT_TIMEOUT_ENV) {
        Err(_) => Ok(ROLLOUT_TIMEOUT),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=86_400).contains(s))
            .map(Duration::from_secs)
            .ok_or_else(|| {
                format!("{ROLLOUT_TIMEOUT_ENV}={v:?}: expected a number of seconds from 1 to 86400")
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
pub struct PodCache(Option<(ImsPod, DataFiles)>);

fn workload(backends: &Backends) -> Result<ImsWorkload, String> {
    backends
        .kube
        .clone()
        .map(ImsWorkload::new)
        .ok_or_else(|| {
            "IMS data files are written through Kubernetes, but no kubeconfig is configured (--kubeconfig)".into()
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
    ) -> Result<(ImsPod, DataFiles), String> {
        if let Some(found) = &self.0 {
            return Ok(found.clone());
        }
        let w = workload(backends)?;
        let pod = w.find_pod().await.map_err(|e| e.to_string())?;
        w.check_rights(&pod).await.map_err(|e| e.to_string())?;
        let files = w
            .discover_files(&pod, &tables_of(plan))
            .await
            .map_err(|e| e.to_string())?;
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
) -> Result<(Table, &'e str, ImsPod, Option<String>), String> {
    let Effect::ImsStoreWrite {
        ims_kind,
        deleted,
        records_json,
        ..
    } = effect
    else {
        return Err(format!("`{}` is not a data-file write", effect.kind()));
    };
    let table = table(*ims_kind, *deleted);
    let (pod, files) = pods.get(backends, plan).await?;
    Ok((table, records_json.as_str(), pod, files.path(table)))
}

/// Writes the effect's records as the data file of its table, with `keep`
/// (records IMS accepted after planning, which an additive write keeps)
/// after them.
pub async fn write(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    effect: &Effect,
    keep: &[Value],
) -> Result<Observed, String> {
    let (table, records_json, pod, path) = target(backends, plan, pods, effect).await?;
    let records: Value = serde_json::from_str(records_json)
        .map_err(|e| format!("the planned {table} are not JSON: {e}"))?;
    let Value::Array(mut records) = records else {
        return Err(format!("the planned {table} are not a JSON list"));
    };
    let path = path.ok_or_else(|| format!("the running IMS names no data file for {table}"))?;
    let bytes = if keep.is_empty() {
        records_json.as_bytes().to_vec()
    } else {
        records.extend(keep.iter().cloned());
        serde_json::to_vec(&records).map_err(|e| e.to_string())?
    };
    workload(backends)?
        .write_file(&pod, &path, &bytes)
        .await
        .map_err(|e| e.to_string())?;
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
pub async fn newcomers(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    effect: &Effect,
) -> Result<Vec<Value>, String> {
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
    let now = workload(backends)?
        .read_file(&pod, &path)
        .await
        .map_err(|e| e.to_string())?;
    let now: Value = serde_json::from_slice(&now)
        .map_err(|e| format!("{path} in pod {}: not JSON: {e}", pod.name))?;
    let planned: Value = serde_json::from_str(records_json)
        .map_err(|e| format!("the planned {table} are not JSON: {e}"))?;
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
pub async fn written(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    effect: &Effect,
) -> Result<bool, String> {
    let (_, records_json, pod, path) = target(backends, plan, pods, effect).await?;
    let Some(path) = path else {
        return Ok(false);
    };
    let now = workload(backends)?
        .read_file(&pod, &path)
        .await
        .map_err(|e| e.to_string())?;
    Ok(now == records_json.as_bytes())
}

/// What a restart found when it read IMS back.
pub enum Restarted {
    Ok(Observed),
    /// IMS serves other records than were written: the race.
    Race(String),
}

/// Rolls the IMS deployment, waits for it, and reads IMS back against every
/// table the plan wrote.
pub async fn restart(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    progress: &indicatif::ProgressBar,
) -> Result<Restarted, String> {
    let w = workload(backends)?;
    let timeout = rollout_timeout()?;
    let asked = w.restart().await.map_err(|e| e.to_string())?;
    pods.clear();
    let status = w
        .wait_rollout(&asked, timeout, |s| {
            progress.set_message(format!("IMS rollout: {s}"));
            tracing::info!("IMS rollout: {s}");
        })
        .await
        .map_err(|e| match e {
            // The files are rewritten, the old pod serves its memory and the
            // new one has not loaded them: say what IMS serves meanwhile.
            ImsKubeError::RolloutTimeout { .. } | ImsKubeError::RolloutFailed { .. } => format!(
                "{e}. Until a new IMS pod is ready and has loaded the new data files, IMS serves \
                 an empty or partial set of records (whatever the old pod still holds). Fix the \
                 cluster so that the IMS deployment can roll out; `imsflow resume {}` then \
                 restarts IMS again and verifies the import",
                plan.run.id
            ),
            e => e.to_string(),
        })?;
    let written = written_tables(plan)?;
    match verify_tables(backends, &written, &keeping_tables(plan)).await {
        Ok(()) => Ok(Restarted::Ok(Observed {
            http_status: Some(200),
            ..Observed::default()
        })),
        Err(e @ ReadBackError::Mismatch { .. }) => Ok(Restarted::Race(format!(
            "IMS restarted ({}), but {e}",
            status.message
        ))),
        Err(e) => Err(e.to_string()),
    }
}

/// `check` of a restart that was in progress: IMS already serves what the
/// plan wrote.
pub async fn restarted(backends: &Backends, plan: &Plan) -> Result<bool, String> {
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

fn written_tables(plan: &Plan) -> Result<BTreeMap<Table, Value>, String> {
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
                .map_err(|e| format!("the planned records are not JSON: {e}"))?;
            written.insert(table(*ims_kind, *deleted), records);
        }
    }
    Ok(written)
}
