//! `kubectl rollout restart` and `kubectl rollout status` for a Deployment:
//! the restart is the pod template's `restartedAt` annotation, the status
//! kubectl's reading of the Deployment. Generic: which Deployment is the
//! caller's (see `ims`).
use super::{Kube, KubeError, MAX_KUBE_BODY};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use std::time::{Duration, Instant};

pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Why a rollout did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{0}")]
    Kube(#[from] KubeError),
    /// The Deployment says it failed (its progress deadline passed).
    #[error("the rollout failed: {0}")]
    Failed(String),
    #[error("the rollout did not finish within {}s ({status})", after.as_secs())]
    Timeout {
        after: Duration,
        status: RolloutStatus,
    },
}

/// A rollout's state, as `kubectl rollout status` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutStatus {
    pub generation: i64,
    pub observed_generation: i64,
    /// `spec.replicas`.
    pub desired: i32,
    /// `status.replicas`: old and new pods.
    pub replicas: i32,
    pub updated: i32,
    pub available: i32,
    /// kubectl's sentence for it.
    pub message: String,
    pub done: bool,
}

impl std::fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; generation {} observed {}, {} of {} replicas updated, {} available, {} in total",
            self.message,
            self.generation,
            self.observed_generation,
            self.updated,
            self.desired,
            self.available,
            self.replicas
        )
    }
}

impl RolloutStatus {
    /// kubectl's `DeploymentStatusViewer`: done when the new generation is
    /// observed and every replica is updated, old ones gone, all available.
    pub fn of(d: &Deployment, min_generation: i64) -> Result<RolloutStatus, RolloutError> {
        let generation = d.metadata.generation.unwrap_or_default();
        let status = d.status.clone().unwrap_or_default();
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let mut s = RolloutStatus {
            generation,
            observed_generation: status.observed_generation.unwrap_or_default(),
            desired,
            replicas: status.replicas.unwrap_or_default(),
            updated: status.updated_replicas.unwrap_or_default(),
            available: status.available_replicas.unwrap_or_default(),
            ..Default::default()
        };
        if let Some(c) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Progressing")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            return Err(RolloutError::Failed(format!(
                "progress deadline exceeded{}",
                c.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )));
        }
        s.message = if s.observed_generation < generation.max(min_generation) {
            "waiting for the deployment spec update to be observed".into()
        } else if s.updated < desired {
            format!("{} of {} new replicas updated", s.updated, desired)
        } else if s.replicas > s.updated {
            format!(
                "{} old replicas pending termination",
                s.replicas - s.updated
            )
        } else if s.available < s.updated {
            format!(
                "{} of {} updated replicas available",
                s.available, s.updated
            )
        } else {
            s.done = true;
            "successfully rolled out".into()
        };
        Ok(s)
    }
}

/// A restart that was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The Deployment's generation after the patch: the rollout is done when
    /// this generation is observed and fully available.
    pub generation: i64,
    pub restarted_at: String,
}

impl Kube {
    /// `kubectl rollout restart deployment`: the pod template's
    /// `restartedAt` annotation set to now (RFC 3339; with milliseconds, so
    /// that two restarts in one second are two rollouts).
    pub async fn rollout_restart(
        &self,
        namespace: &str,
        deployment: &str,
    ) -> Result<Restart, KubeError> {
        let restarted_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let patch = serde_json::json!({ "spec": { "template": { "metadata": {
            "annotations": { RESTARTED_AT: restarted_at } } } } });
        let url = format!("/apis/apps/v1/namespaces/{}/deployments", namespace);
        let req = kube::core::Request::new(&url)
            .patch(
                deployment,
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .map_err(|e| KubeError::Request {
                method: "PATCH",
                path: format!("{url}/{}", deployment),
                message: e.to_string(),
            })?;
        let d: Deployment = self.call("PATCH", req, MAX_KUBE_BODY).await?;
        tracing::info!(
            "deployment {}/{} restarted at {restarted_at}",
            namespace,
            deployment
        );
        Ok(Restart {
            generation: d.metadata.generation.unwrap_or_default(),
            restarted_at,
        })
    }

    /// The rollout's state now.
    pub async fn rollout_status(
        &self,
        namespace: &str,
        deployment: &str,
        min_generation: i64,
    ) -> Result<RolloutStatus, RolloutError> {
        let url = format!("/apis/apps/v1/namespaces/{}/deployments", namespace);
        let req = kube::core::Request::new(&url)
            .get(deployment, &Default::default())
            .map_err(|e| KubeError::Request {
                method: "GET",
                path: format!("{url}/{}", deployment),
                message: e.to_string(),
            })?;
        let d: Deployment = self.call("GET", req, MAX_KUBE_BODY).await?;
        RolloutStatus::of(&d, min_generation)
    }

    /// `kubectl rollout status`: polls every `poll_interval` until the
    /// rollout of `restart` is complete, calling `progress` whenever its
    /// state changes.
    pub async fn wait_rollout(
        &self,
        namespace: &str,
        deployment: &str,
        restart: &Restart,
        timeout: Duration,
        poll_interval: Duration,
        mut progress: impl FnMut(&RolloutStatus),
    ) -> Result<RolloutStatus, RolloutError> {
        let start = Instant::now();
        let mut last: Option<RolloutStatus> = None;
        loop {
            let status = self
                .rollout_status(namespace, deployment, restart.generation)
                .await?;
            if last.as_ref() != Some(&status) {
                progress(&status);
            }
            if status.done {
                return Ok(status);
            }
            if start.elapsed() + poll_interval > timeout {
                return Err(RolloutError::Timeout {
                    after: timeout,
                    status,
                });
            }
            last = Some(status);
            tokio::time::sleep(poll_interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollout_status_follows_kubectl() {
        let d = |generation: i64,
                 obs: i64,
                 replicas: i32,
                 updated: i32,
                 available: i32|
         -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": "cray-ims", "generation": generation},
                "spec": {"replicas": 1, "selector": {}, "template": {}},
                "status": {"observedGeneration": obs, "replicas": replicas,
                    "updatedReplicas": updated, "availableReplicas": available}
            }))
            .unwrap()
        };
        let s = RolloutStatus::of(&d(2, 1, 1, 1, 1), 2).unwrap();
        assert!(!s.done && s.message.contains("observed"), "{s}");
        let s = RolloutStatus::of(&d(2, 2, 2, 1, 1), 2).unwrap();
        assert!(!s.done && s.message.contains("old replicas"), "{s}");
        let s = RolloutStatus::of(&d(2, 2, 1, 1, 0), 2).unwrap();
        assert!(!s.done && s.message.contains("available"), "{s}");
        assert!(RolloutStatus::of(&d(2, 2, 1, 1, 1), 2).unwrap().done);
        assert!(!RolloutStatus::of(&d(2, 2, 1, 1, 1), 3).unwrap().done);
    }
}
