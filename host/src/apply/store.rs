//! The ID-preserving executors: IMS data-file writes and the IMS restart,
//! through Kubernetes (`k8s::ims`). IMS refuses client-chosen ids (422), so
//! records come back under their ids only this way, as HPE's in-pod tool
//! does it: the running IMS names its files, each new file is written next
//! to the old one and renamed over it, the deployment is rolled, and IMS is
//! read back. If IMS wrote its memory over the new files before the restart
//! (HPE's race), the writes are undone in the journal and `resume` redoes them.
use crate::backends::Backends;
use crate::journal::Observed;
use crate::k8s::ims::{DataFiles, ImsPod, ImsWorkload, ReadBackError, Table, verify_tables};
use crate::plan::Plan;
use crate::plan::effect::{Effect, ImsKind};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a rollout may take (HPE waits 1200 s for `rollout status`).
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(1200);

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

/// Writes the effect's records as the data file of its table.
pub async fn write(
    backends: &Backends,
    plan: &Plan,
    pods: &mut PodCache,
    effect: &Effect,
) -> Result<Observed, String> {
    let (table, records_json, pod, path) = target(backends, plan, pods, effect).await?;
    let records: Value = serde_json::from_str(records_json)
        .map_err(|e| format!("the planned {table} are not JSON: {e}"))?;
    if !records.is_array() {
        return Err(format!("the planned {table} are not a JSON list"));
    }
    let path = path.ok_or_else(|| format!("the running IMS names no data file for {table}"))?;
    let bytes = records_json.as_bytes();
    workload(backends)?
        .write_file(&pod, &path, bytes)
        .await
        .map_err(|e| e.to_string())?;
    use sha2::Digest;
    Ok(Observed {
        bytes: Some(bytes.len() as u64),
        sha256: Some(hex::encode(sha2::Sha256::digest(bytes))),
        ..Observed::default()
    })
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
    let asked = w.restart().await.map_err(|e| e.to_string())?;
    pods.clear();
    let status = w
        .wait_rollout(&asked, ROLLOUT_TIMEOUT, |s| {
            progress.set_message(format!("IMS rollout: {s}"));
            tracing::info!("IMS rollout: {s}");
        })
        .await
        .map_err(|e| e.to_string())?;
    let written = written_tables(plan)?;
    match verify_tables(backends, &written).await {
        Ok(()) => Ok(Restarted::Ok(Observed {
            http_status: Some(200),
            ..Observed::default()
        })),
        Err(e @ ReadBackError::Mismatch { .. }) => Ok(Restarted::Race(format!(
            "after the restart ({}), IMS does not serve the records that were written: {e}. IMS wrote its in-memory state over the new data files before it restarted (a known race of this procedure)",
            status.message
        ))),
        Err(e) => Err(e.to_string()),
    }
}

/// `check` of a restart that was in progress: IMS already serves what the
/// plan wrote.
pub async fn restarted(backends: &Backends, plan: &Plan) -> Result<bool, String> {
    Ok(verify_tables(backends, &written_tables(plan)?)
        .await
        .is_ok())
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
