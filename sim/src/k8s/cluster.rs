//! The IMS workload as the Kubernetes API shows it: the Deployment
//! `services/cray-ims`, its pods, `kubectl rollout restart` (a patch of the
//! pod template's `restartedAt` annotation) and the rollout that follows,
//! which reloads IMS from its data files when the new pod becomes ready.
//!
//! [`Knobs`] switch failures on per simulator: no or two IMS pods, exec or
//! patch forbidden (`authz`), a rollout that never becomes ready, and the race of HPE's
//! procedure (the old IMS writes its memory over the data files while the
//! rollout runs).
use crate::SimState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const NAMESPACE: &str = "services";
pub const DEPLOYMENT: &str = "cray-ims";
pub const CONTAINER: &str = "cray-ims";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Failure switches and timing of the simulated IMS workload. Set with
/// `csm-sim serve` flags, `POST /sim/k8s/knobs` (a JSON object of the fields
/// to change) or [`SimState::set_knobs`] in tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// How many Running IMS pods the pod list shows: 1, or 0 or 2 to
    /// simulate a broken or scaled-out deployment.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub ims_pods: u8,
    /// `pods/exec` answers 403 Forbidden (RBAC without exec rights).
    #[arg(long)]
    pub exec_forbidden: bool,
    /// Patching the IMS Deployment (a rollout restart) answers 403 Forbidden.
    #[arg(long)]
    pub patch_forbidden: bool,
    /// A rollout's new pod is not ready while this is set (the old one keeps
    /// serving); cleared, it becomes ready, as on a fixed cluster.
    #[arg(long)]
    pub rollout_never_ready: bool,
    /// When a rollout starts, the old IMS writes its in-memory tables over
    /// the data files (as any IMS API write in that window does).
    #[arg(long)]
    pub race_on_rollout: bool,
    /// With `race_on_rollout`: the write that makes IMS rewrite its files
    /// is the creation of an image (`created-in-race-window`), which IMS
    /// accepts (201) while the import's data files wait for the restart.
    #[arg(long)]
    pub race_creates_image: bool,
    /// Time from the patch to the new pod being ready. The controller
    /// observes the new generation half-way.
    #[arg(long, default_value_t = 1000)]
    pub rollout_delay_ms: u64,
    /// Offer the `v5.channel.k8s.io` exec subprotocol (Kubernetes 1.30+),
    /// besides `v4.channel.k8s.io` (what CSM's Kubernetes speaks).
    #[arg(long)]
    pub exec_v5: bool,
    /// The next N IMS DELETE requests are answered 503, as the gateway
    /// does while IMS restarts (clients must retry them).
    #[arg(long, default_value_t = 0)]
    pub ims_unavailable: u32,
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs {
            ims_pods: 1,
            exec_forbidden: false,
            patch_forbidden: false,
            rollout_never_ready: false,
            race_on_rollout: false,
            race_creates_image: false,
            rollout_delay_ms: 1000,
            exec_v5: false,
            ims_unavailable: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Patched; the controller has not observed the new generation yet.
    Patched,
    /// Observed: the new pod exists (Pending), the old one still serves.
    Surge,
}

#[derive(Debug, Clone)]
struct Rollout {
    generation: i64,
    new_pod: String,
    stage: Stage,
}

/// The Deployment and its pods.
pub struct Cluster {
    pub knobs: Knobs,
    generation: i64,
    observed_generation: i64,
    resource_version: u64,
    template_annotations: Map<String, Value>,
    /// The pod serving IMS now.
    pod: String,
    /// The second pod the `ims_pods: 2` knob shows.
    twin: String,
    rollout: Option<Rollout>,
    rng: fastrand::Rng,
    /// Rollouts that completed (IMS reloaded), for tests.
    pub restarts: u64,
}

/// A pod as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub running: bool,
}

impl Cluster {
    pub fn new(knobs: Knobs) -> Cluster {
        let mut rng = fastrand::Rng::new();
        let hash = template_hash(&mut rng);
        let pod = pod_name(&hash, &mut rng);
        let twin = pod_name(&hash, &mut rng);
        Cluster {
            knobs,
            generation: 1,
            observed_generation: 1,
            resource_version: 1000,
            template_annotations: Map::new(),
            pod,
            twin,
            rollout: None,
            rng,
            restarts: 0,
        }
    }

    /// The IMS pods the API lists now.
    pub fn pods(&self) -> Vec<PodView> {
        let mut pods = Vec::new();
        if self.knobs.ims_pods >= 1 {
            pods.push(PodView {
                name: self.pod.clone(),
                running: true,
            });
        }
        if self.knobs.ims_pods >= 2 {
            pods.push(PodView {
                name: self.twin.clone(),
                running: true,
            });
        }
        if let Some(r) = &self.rollout
            && r.stage == Stage::Surge
        {
            pods.push(PodView {
                name: r.new_pod.clone(),
                running: false,
            });
        }
        pods
    }

    pub fn pod_json(&self, pod: &PodView) -> Value {
        let hash = pod_hash(&pod.name);
        let (phase, ready) = if pod.running {
            ("Running", "True")
        } else {
            ("Pending", "False")
        };
        let mut container_status = json!({
            "name": CONTAINER, "ready": pod.running, "restartCount": 0,
            "image": "artifactory.algol60.net/csm-docker/stable/cray-ims-service:3.24.0",
            "imageID": "", "started": pod.running,
        });
        container_status["state"] = if pod.running {
            json!({ "running": { "startedAt": "2026-01-01T00:00:00Z" } })
        } else {
            json!({ "waiting": { "reason": "ContainerCreating" } })
        };
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name,
                "namespace": NAMESPACE,
                "uid": format!("sim-{}", pod.name),
                "labels": {
                    INSTANCE_LABEL: DEPLOYMENT,
                    "app.kubernetes.io/name": DEPLOYMENT,
                    "pod-template-hash": hash,
                },
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": format!("cray-ims-{hash}"), "uid": format!("sim-rs-{hash}"),
                    "controller": true }],
            },
            "spec": { "containers": [{ "name": CONTAINER,
                "image": "artifactory.algol60.net/csm-docker/stable/cray-ims-service:3.24.0" }] },
            "status": {
                "phase": phase,
                "conditions": [{ "type": "Ready", "status": ready }],
                "containerStatuses": [container_status],
            },
        })
    }

    pub fn deployment_json(&self) -> Value {
        let (replicas, updated, available) = match &self.rollout {
            Some(r) if r.stage == Stage::Surge => (2, 1, 1),
            _ => (1, 1, 1),
        };
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": DEPLOYMENT,
                "namespace": NAMESPACE,
                "uid": "sim-deployment-cray-ims",
                "generation": self.generation,
                "resourceVersion": self.resource_version.to_string(),
                "labels": { INSTANCE_LABEL: DEPLOYMENT },
            },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { INSTANCE_LABEL: DEPLOYMENT } },
                "strategy": { "type": "RollingUpdate",
                    "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": 0 } },
                "template": {
                    "metadata": {
                        "labels": { INSTANCE_LABEL: DEPLOYMENT, "app.kubernetes.io/name": DEPLOYMENT },
                        "annotations": self.template_annotations,
                    },
                    "spec": { "containers": [{ "name": CONTAINER,
                        "image": "artifactory.algol60.net/csm-docker/stable/cray-ims-service:3.24.0" }] },
                },
            },
            "status": {
                "observedGeneration": self.observed_generation,
                "replicas": replicas,
                "updatedReplicas": updated,
                "readyReplicas": available,
                "availableReplicas": available,
                "unavailableReplicas": replicas - available,
            },
        })
    }

    /// Whether `name` is an IMS pod, and whether it runs.
    pub fn find_pod(&self, name: &str) -> Option<PodView> {
        self.pods().into_iter().find(|p| p.name == name)
    }

    pub fn rollout_in_progress(&self) -> bool {
        self.rollout.is_some()
    }
}

/// A pod-template-hash: 10 characters of the alphabet Kubernetes uses.
fn template_hash(rng: &mut fastrand::Rng) -> String {
    suffix(rng, 10)
}

fn pod_name(hash: &str, rng: &mut fastrand::Rng) -> String {
    format!("cray-ims-{hash}-{}", suffix(rng, 5))
}

/// The pod-template-hash in `cray-ims-<hash>-<suffix>`.
fn pod_hash(pod: &str) -> &str {
    let base = pod.rsplit_once('-').map_or(pod, |(base, _)| base);
    base.strip_prefix("cray-ims-").unwrap_or(base)
}

fn suffix(rng: &mut fastrand::Rng, n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char)
        .collect()
}

pub async fn get_deployment(
    State(s): State<Arc<SimState>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if ns != NAMESPACE || name != DEPLOYMENT {
        return not_found(&name);
    }
    Json(s.cluster.lock().unwrap().deployment_json()).into_response()
}

fn not_found(name: &str) -> Response {
    super::status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("deployments.apps \"{name}\" not found"),
    )
}

/// `PATCH` with a merge or strategic-merge patch, as `kubectl rollout
/// restart` sends. A change of the pod template starts a rollout.
pub async fn patch_deployment(
    State(s): State<Arc<SimState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if ns != NAMESPACE || name != DEPLOYMENT {
        return not_found(&name);
    }
    let asked = super::authz::Attributes::new("patch", "apps", "deployments", "", &ns);
    if !super::authz::permits(&s.cluster.lock().unwrap().knobs, &asked) {
        return super::authz::forbidden(&asked, "deployments", &name);
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !matches!(
        mime.split(';').next().unwrap_or_default().trim(),
        "application/merge-patch+json" | "application/strategic-merge-patch+json"
    ) {
        return super::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got `{mime}`)"
            ),
        );
    }
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(p @ Value::Object(_)) => p,
        _ => {
            return super::status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the patch is not a JSON object".into(),
            );
        }
    };
    let started = {
        let mut c = s.cluster.lock().unwrap();
        let mut doc = c.deployment_json();
        merge_patch(&mut doc, &patch);
        let annotations = match &doc["spec"]["template"]["metadata"]["annotations"] {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            _ => {
                return super::status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "spec.template.metadata.annotations: not a map".into(),
                );
            }
        };
        c.resource_version += 1;
        if annotations != c.template_annotations {
            c.template_annotations = annotations;
            c.generation += 1;
            let hash = template_hash(&mut c.rng);
            let new_pod = pod_name(&hash, &mut c.rng);
            c.rollout = Some(Rollout {
                generation: c.generation,
                new_pod,
                stage: Stage::Patched,
            });
            Some((c.generation, c.knobs.clone()))
        } else {
            None
        }
    };
    if let Some((generation, knobs)) = started {
        tracing::info!(
            "rollout of deployment {NAMESPACE}/{DEPLOYMENT} started (generation {generation})"
        );
        if knobs.race_on_rollout {
            // The old pod still serves: an API write in this window makes
            // IMS rewrite its data files from memory.
            let mut ims = s.ims.lock().await;
            if knobs.race_creates_image {
                let id = s.new_id();
                let kind = crate::ims::schema::Kind::Image;
                let body = serde_json::json!({ "name": "created-in-race-window" });
                match crate::ims::schema::post(kind, &body)
                    .and_then(|rec| crate::ims::create_record(&mut ims, kind, &id, rec))
                {
                    Ok(_) => tracing::info!("race simulated: image {id} created in the window"),
                    Err(e) => tracing::error!("race simulation: {e:?}"),
                }
            }
            if let Err(e) = ims.save_all() {
                tracing::error!("race simulation: {e}");
            }
            tracing::info!("race simulated: the old IMS wrote its memory over the data files");
        }
        tokio::spawn(progress(s.clone(), generation, knobs.rollout_delay_ms));
    }
    Json(s.cluster.lock().unwrap().deployment_json()).into_response()
}

/// Moves a rollout on: observed half-way, ready at the end (unless the
/// knob says never), when IMS reloads its data files and the new pod
/// replaces the old one. A newer patch supersedes it.
async fn progress(s: Arc<SimState>, generation: i64, delay_ms: u64) {
    let half = Duration::from_millis(delay_ms / 2);
    tokio::time::sleep(half).await;
    {
        let mut c = s.cluster.lock().unwrap();
        match &mut c.rollout {
            Some(r) if r.generation == generation => r.stage = Stage::Surge,
            _ => return,
        }
        c.observed_generation = generation;
        c.resource_version += 1;
    }
    tokio::time::sleep(half).await;
    // While the knob holds, the new pod is not ready; once it is cleared (the
    // cluster is fixed), the pod becomes ready, as Kubernetes would retry it.
    let mut said = false;
    loop {
        {
            let c = s.cluster.lock().unwrap();
            if !c
                .rollout
                .as_ref()
                .is_some_and(|r| r.generation == generation)
            {
                return;
            }
            if !c.knobs.rollout_never_ready {
                break;
            }
        }
        if !said {
            tracing::info!("rollout of generation {generation}: the new pod is not ready");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new IMS starts: it loads the data files.
    let mut ims = s.ims.lock().await;
    let mut c = s.cluster.lock().unwrap();
    let Some(r) = c.rollout.clone().filter(|r| r.generation == generation) else {
        return;
    };
    match crate::ims::store::Store::load(&s.data.join("ims")) {
        Ok(fresh) => *ims = fresh,
        Err(e) => {
            tracing::error!("the new IMS pod cannot load its data files: {e}");
            return;
        }
    }
    c.pod = r.new_pod;
    let hash = pod_hash(&c.pod).to_string();
    c.twin = pod_name(&hash, &mut c.rng);
    c.rollout = None;
    c.resource_version += 1;
    c.restarts += 1;
    tracing::info!(
        "rollout of generation {generation} complete: IMS reloaded its data files (pod {})",
        c.pod
    );
}

/// RFC 7386 JSON merge patch (a strategic merge patch is the same for maps).
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// `GET /sim/k8s/knobs`: the current knobs.
pub async fn get_knobs(State(s): State<Arc<SimState>>) -> Response {
    Json(s.cluster.lock().unwrap().knobs.clone()).into_response()
}

/// `POST /sim/k8s/knobs`: changes the fields given, answers the result.
pub async fn set_knobs(State(s): State<Arc<SimState>>, body: Bytes) -> Response {
    let mut c = s.cluster.lock().unwrap();
    let mut current = serde_json::to_value(&c.knobs).unwrap();
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return (StatusCode::BAD_REQUEST, "a JSON object of knobs").into_response(),
    };
    merge_patch(&mut current, &patch);
    match serde_json::from_value::<Knobs>(current) {
        Ok(k) if k.ims_pods <= 2 => {
            c.knobs = k;
            Json(c.knobs.clone()).into_response()
        }
        Ok(_) => (StatusCode::BAD_REQUEST, "ims_pods is 0, 1 or 2").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_sets_and_removes() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": 3});
        merge_patch(&mut doc, &json!({"a": {"b": null, "e": {"f": 4}}, "d": 5}));
        assert_eq!(doc, json!({"a": {"c": 2, "e": {"f": 4}}, "d": 5}));
    }

    #[test]
    fn pod_names_look_like_a_deployments() {
        let c = Cluster::new(Knobs::default());
        let pods = c.pods();
        assert_eq!(pods.len(), 1);
        let parts: Vec<&str> = pods[0].name.split('-').collect();
        assert_eq!(&parts[..2], ["cray", "ims"]);
        assert_eq!((parts[2].len(), parts[3].len()), (10, 5));
    }
}
