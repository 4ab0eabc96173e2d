//! IMS's data files and restart, through Kubernetes: the ID-preserving
//! import's pod side, done as HPE's procedure does it, with its gaps closed.
//!
//! 1. [`ImsWorkload::find_pod`]: exactly one Running pod in `services` with
//!    `app.kubernetes.io/instance=cray-ims`;
//! 2. [`ImsWorkload::discover_files`]: the data file names, read from the
//!    running IMS's `/app/src/server/app.py` (never hard-coded: they change
//!    with IMS's record schemas);
//! 3. [`ImsWorkload::read_file`]: a data file's bytes, through exec (`cat`);
//! 4. [`ImsWorkload::write_file`]: a new file, through exec's stdin into a
//!    temporary name in the same directory (`dd` counting bytes, because
//!    CSM's Kubernetes speaks `v4.channel.k8s.io`, which cannot close
//!    stdin), checked with `sha256sum`, then renamed over the old one
//!    (`mv`): atomic per file;
//! 5. [`ImsWorkload::restart`]: `kubectl rollout restart` (the pod
//!    template's `kubectl.kubernetes.io/restartedAt` annotation);
//! 6. [`ImsWorkload::wait_rollout`]: `kubectl rollout status`, with a
//!    timeout and progress;
//! 7. [`verify_tables`]: IMS read back through its API and compared with
//!    what was written, which detects the race of HPE's procedure (IMS
//!    rewriting a data file from memory between the write and the restart).
//!
//! Every exec has a timeout and a cap on what it returns. The commands
//! (`cat`, `dd`, `sha256sum`, `mv`, `rm`) are busybox's and coreutils'
//! alike: IMS's image is Alpine.
use super::{Access, Kube, KubeError, MAX_KUBE_BODY};
use crate::backends::{BackendError, Backends};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, ListParams, Patch, PatchParams};
use serde_json::Value;
use sha2::Digest;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub const NAMESPACE: &str = "services";
pub const POD_SELECTOR: &str = "app.kubernetes.io/instance=cray-ims";
pub const DEPLOYMENT: &str = "cray-ims";
pub const CONTAINER: &str = "cray-ims";
/// Where HPE's in-pod tool reads the data file names.
pub const APP_PY: &str = "/app/src/server/app.py";
/// IMS's data directory (`HACK_DATA_STORE` in production), as HPE's tool has it.
pub const DATA_DIR: &str = "/var/ims/data";
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Largest data file read or written (IMS keeps every table in memory).
pub const MAX_DATA_FILE: usize = 256 << 20;
/// Largest `app.py` read.
const MAX_APP_PY: usize = 1 << 20;
/// Largest stderr kept from a command.
const MAX_STDERR: usize = 16 << 10;
/// Exec stream buffers: larger than kube's 1 KiB default, for throughput.
const EXEC_BUFFER: usize = 64 << 10;

/// An IMS table, by the name HPE's tool and IMS's `app.data` use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Images,
    PublicKeys,
    Recipes,
    Jobs,
    DeletedImages,
    DeletedPublicKeys,
    DeletedRecipes,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Images,
        Table::PublicKeys,
        Table::Recipes,
        Table::Jobs,
        Table::DeletedImages,
        Table::DeletedPublicKeys,
        Table::DeletedRecipes,
    ];
    /// The tables HPE's import writes; jobs and deleted only when a plan says so.
    pub const IMPORTED: [Table; 3] = [Table::Images, Table::PublicKeys, Table::Recipes];

    /// The file name's suffix after `v<N>[.<M>]_`, without `.json`.
    pub fn key(self) -> &'static str {
        match self {
            Table::Images => "images",
            Table::PublicKeys => "public_keys",
            Table::Recipes => "recipes",
            Table::Jobs => "jobs",
            Table::DeletedImages => "deleted_images",
            Table::DeletedPublicKeys => "deleted_public_keys",
            Table::DeletedRecipes => "deleted_recipes",
        }
    }

    /// The IMS API path (under `apis/ims/`) that lists the table.
    pub fn api_path(self) -> &'static str {
        match self {
            Table::Images => "v3/images",
            Table::PublicKeys => "v3/public-keys",
            Table::Recipes => "v3/recipes",
            Table::Jobs => "v3/jobs",
            Table::DeletedImages => "v3/deleted/images",
            Table::DeletedPublicKeys => "v3/deleted/public-keys",
            Table::DeletedRecipes => "v3/deleted/recipes",
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// What went wrong on the Kubernetes side of an IMS data-file import. Each
/// message names the pod or object, what was found, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImsKubeError {
    #[error(
        "no IMS pod in namespace `{namespace}` has label `{selector}`: is IMS deployed \
         (kubectl -n {namespace} get deployment {DEPLOYMENT}), and is the kubeconfig's \
         current context this system's cluster?"
    )]
    NoPod { namespace: String, selector: String },
    #[error(
        "expected exactly one Running IMS pod in namespace `{namespace}` (label `{selector}`), \
         found {found}: wait for any rollout to finish (kubectl -n {namespace} rollout status \
         deployment {DEPLOYMENT}) and make sure the deployment has one replica"
    )]
    PodCount {
        namespace: String,
        selector: String,
        /// `name (phase)`, comma-separated.
        found: String,
    },
    #[error(
        "exec into pod {namespace}/{pod} is forbidden ({message}): the kubeconfig's user \
         needs `create` on `pods/exec` in namespace `{namespace}` (an NCN's \
         /etc/kubernetes/admin.conf has it)"
    )]
    ExecForbidden {
        namespace: String,
        pod: String,
        message: String,
    },
    #[error(
        "patching deployment {namespace}/{deployment} is forbidden (kubectl auth can-i patch \
         deployments.apps/{deployment} -n {namespace}: no): the kubeconfig's user needs `patch` \
         on `deployments` in namespace `{namespace}` to restart IMS (an NCN's \
         /etc/kubernetes/admin.conf has it)"
    )]
    PatchForbidden {
        namespace: String,
        deployment: String,
    },
    #[error("exec `{command}` in pod {namespace}/{pod}: {message}")]
    Exec {
        namespace: String,
        pod: String,
        command: String,
        message: String,
    },
    #[error(
        "exec `{command}` in pod {namespace}/{pod} exited with code {code}{}",
        if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
    )]
    CommandFailed {
        namespace: String,
        pod: String,
        command: String,
        code: String,
        stderr: String,
    },
    #[error("exec `{command}` in pod {namespace}/{pod}: its output is larger than {max} bytes")]
    OutputTooLarge {
        namespace: String,
        pod: String,
        command: String,
        max: usize,
    },
    #[error("exec `{command}` in pod {namespace}/{pod}: timed out after {}s", after.as_secs())]
    ExecTimeout {
        namespace: String,
        pod: String,
        command: String,
        after: Duration,
    },
    #[error(
        "{APP_PY} in pod {namespace}/{pod} names {} data file for `{table}` (expected exactly \
         one `v<N>[.<M>]_{table}.json`){}: this IMS version is not one imsflow knows how to import into",
        if found.is_empty() { "no".to_string() } else { format!("{} different", found.len()) },
        if found.is_empty() { String::new() } else { format!(": {}", found.join(", ")) }
    )]
    DataFileNames {
        namespace: String,
        pod: String,
        table: Table,
        found: Vec<String>,
    },
    #[error(
        "writing {path} in pod {namespace}/{pod}: the file holds sha256 {found}, not the \
         {expected} sent; the data file was left unchanged"
    )]
    WriteMismatch {
        namespace: String,
        pod: String,
        path: String,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Kube(#[from] KubeError),
    #[error(
        "deployment {namespace}/{deployment} did not finish its rollout within {}s ({status}): \
         see kubectl -n {namespace} rollout status deployment {deployment} and \
         kubectl -n {namespace} describe pods -l {POD_SELECTOR}",
        after.as_secs()
    )]
    RolloutTimeout {
        namespace: String,
        deployment: String,
        after: Duration,
        status: RolloutStatus,
    },
    #[error(
        "deployment {namespace}/{deployment} failed its rollout: {message}: see kubectl -n \
         {namespace} describe deployment {deployment}"
    )]
    RolloutFailed {
        namespace: String,
        deployment: String,
        message: String,
    },
}

/// What the IMS API serves after a restart, against what was written.
#[derive(Debug, thiserror::Error)]
pub enum ReadBackError {
    #[error("reading IMS `{table}` back through its API: {message}")]
    Api { table: Table, message: String },
    #[error(
        "after the restart, IMS serves other `{table}` records than the data file written \
         ({}): IMS wrote its in-memory state over the new file between the write and the \
         restart (a known race of HPE's procedure)",
        describe_ids(missing, unexpected, changed)
    )]
    Mismatch {
        table: Table,
        /// Ids written but not served.
        missing: Vec<String>,
        /// Ids served but not written.
        unexpected: Vec<String>,
        /// `id.field` served with another value than written.
        changed: Vec<String>,
    },
}

fn describe_ids(missing: &[String], unexpected: &[String], changed: &[String]) -> String {
    let list = |what: &str, ids: &[String]| {
        let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
        let more = ids.len().saturating_sub(shown.len());
        format!(
            "{what} {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(list("missing", missing));
    }
    if !unexpected.is_empty() {
        parts.push(list("not written", unexpected));
    }
    if !changed.is_empty() {
        parts.push(list("different", changed));
    }
    parts.join("; ")
}

/// The IMS pod found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsPod {
    pub namespace: String,
    pub name: String,
}

/// The data file names the running IMS uses, by table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFiles {
    pub dir: String,
    pub names: BTreeMap<Table, String>,
}

impl DataFiles {
    /// The file's path in the pod, if discovered.
    pub fn path(&self, table: Table) -> Option<String> {
        self.names
            .get(&table)
            .map(|n| format!("{}/{n}", self.dir.trim_end_matches('/')))
    }
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
    pub fn of(d: &Deployment, min_generation: i64) -> Result<RolloutStatus, String> {
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
            return Err(format!(
                "progress deadline exceeded{}",
                c.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
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

/// The IMS workload of a cluster, with the settings of its calls.
#[derive(Debug, Clone)]
pub struct ImsWorkload {
    pub kube: Kube,
    pub namespace: String,
    pub selector: String,
    pub deployment: String,
    pub container: String,
    pub data_dir: String,
    /// Wall clock for one exec, transfer included.
    pub exec_timeout: Duration,
    /// Between two looks at the rollout.
    pub poll_interval: Duration,
}

impl ImsWorkload {
    pub fn new(kube: Kube) -> ImsWorkload {
        ImsWorkload {
            kube,
            namespace: NAMESPACE.into(),
            selector: POD_SELECTOR.into(),
            deployment: DEPLOYMENT.into(),
            container: CONTAINER.into(),
            data_dir: DATA_DIR.into(),
            exec_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
        }
    }

    /// Step 1: the one Running IMS pod. Pods that ended (Succeeded, Failed:
    /// an evicted pod lingers so) are ignored; any other pod besides the
    /// Running one (a second replica, a rollout's new or terminating pod)
    /// is an error, as for HPE's import.
    pub async fn find_pod(&self) -> Result<ImsPod, ImsKubeError> {
        let req = kube::core::Request::new(format!("/api/v1/namespaces/{}/pods", self.namespace))
            .list(&ListParams::default().labels(&self.selector))
            .map_err(|e| KubeError::Request {
                method: "GET",
                path: format!("/api/v1/namespaces/{}/pods", self.namespace),
                message: e.to_string(),
            })?;
        let list: kube::core::ObjectList<Pod> = self.kube.call("GET", req, MAX_KUBE_BODY).await?;
        let live: Vec<(String, String, bool)> = list
            .items
            .iter()
            .map(|p| {
                let phase = p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Unknown".into());
                let terminating = p.metadata.deletion_timestamp.is_some();
                (
                    p.metadata.name.clone().unwrap_or_default(),
                    if terminating {
                        "Terminating".into()
                    } else {
                        phase
                    },
                    terminating,
                )
            })
            .filter(|(_, phase, _)| phase != "Succeeded" && phase != "Failed")
            .collect();
        match live.as_slice() {
            [] => Err(ImsKubeError::NoPod {
                namespace: self.namespace.clone(),
                selector: self.selector.clone(),
            }),
            [(name, phase, false)] if phase == "Running" => Ok(ImsPod {
                namespace: self.namespace.clone(),
                name: name.clone(),
            }),
            pods => Err(ImsKubeError::PodCount {
                namespace: self.namespace.clone(),
                selector: self.selector.clone(),
                found: format!(
                    "{}: {}",
                    pods.len(),
                    pods.iter()
                        .map(|(n, p, _)| format!("{n} ({p})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// Step 1b: the rights the import needs, asked without using them (as
    /// `kubectl auth can-i`): `create` on `pods/exec` for the writes and
    /// `patch` on the deployment for the restart. Read-only, so a dry run
    /// asks too, and a missing right shows before anything changes.
    pub async fn check_rights(&self, pod: &ImsPod) -> Result<(), ImsKubeError> {
        let exec = Access {
            verb: "create",
            group: "",
            resource: "pods",
            subresource: "exec",
            namespace: &self.namespace,
            name: &pod.name,
        };
        if !self.kube.can_i(&exec).await? {
            return Err(ImsKubeError::ExecForbidden {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                message: format!(
                    "kubectl auth can-i create pods/exec -n {}: no",
                    self.namespace
                ),
            });
        }
        let patch = Access {
            verb: "patch",
            group: "apps",
            resource: "deployments",
            subresource: "",
            namespace: &self.namespace,
            name: &self.deployment,
        };
        if !self.kube.can_i(&patch).await? {
            return Err(ImsKubeError::PatchForbidden {
                namespace: self.namespace.clone(),
                deployment: self.deployment.clone(),
            });
        }
        Ok(())
    }

    /// Step 2: the data file names the running IMS loads, from its
    /// `app.py`: for each table, the one distinct quoted `v<N>[.<M>]_<table>.json`
    /// outside comments (as HPE's tool since CASMTRIAGE-7475).
    pub async fn discover_files(
        &self,
        pod: &ImsPod,
        tables: &[Table],
    ) -> Result<DataFiles, ImsKubeError> {
        let app = self.exec(pod, &["cat", APP_PY], None, MAX_APP_PY).await?;
        let app = String::from_utf8_lossy(&app);
        let mut names = BTreeMap::new();
        for &table in tables {
            let found = data_file_names(&app, table);
            match found.as_slice() {
                [one] => {
                    names.insert(table, one.clone());
                }
                _ => {
                    return Err(ImsKubeError::DataFileNames {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        table,
                        found,
                    });
                }
            }
        }
        Ok(DataFiles {
            dir: self.data_dir.clone(),
            names,
        })
    }

    /// Step 3: a file's bytes (at most [`MAX_DATA_FILE`]).
    pub async fn read_file(&self, pod: &ImsPod, path: &str) -> Result<Vec<u8>, ImsKubeError> {
        self.exec(pod, &["cat", path], None, MAX_DATA_FILE).await
    }

    /// Step 4: replaces `path` with `bytes`, atomically: written to a
    /// temporary name in the same directory through stdin, its sha256
    /// checked, then renamed over `path`. On failure the temporary file is
    /// removed and `path` is unchanged.
    pub async fn write_file(
        &self,
        pod: &ImsPod,
        path: &str,
        bytes: &[u8],
    ) -> Result<(), ImsKubeError> {
        if bytes.len() > MAX_DATA_FILE {
            return Err(ImsKubeError::Exec {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                command: format!("write {path}"),
                message: format!(
                    "{} bytes is more than the {MAX_DATA_FILE} allowed",
                    bytes.len()
                ),
            });
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or((".", path));
        let tmp = format!("{dir}/.{name}.imsflow-{:08x}.tmp", fastrand::u32(..));
        let result = self.write_checked(pod, &tmp, path, bytes).await;
        if result.is_err() {
            let _ = self.exec(pod, &["rm", "-f", &tmp], None, 4096).await;
        }
        result
    }

    async fn write_checked(
        &self,
        pod: &ImsPod,
        tmp: &str,
        path: &str,
        bytes: &[u8],
    ) -> Result<(), ImsKubeError> {
        // `count` in bytes: dd ends when they are in, without stdin being
        // closed (v4 of the exec protocol cannot close it).
        let (of, count) = (format!("of={tmp}"), format!("count={}", bytes.len()));
        let dd = [
            "dd",
            &of,
            "bs=65536",
            &count,
            "iflag=count_bytes,fullblock",
            "status=none",
        ];
        self.exec(pod, &dd, Some(bytes), 4096).await?;
        let sum = self.exec(pod, &["sha256sum", tmp], None, 4096).await?;
        let found = String::from_utf8_lossy(&sum)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let expected = hex::encode(sha2::Sha256::digest(bytes));
        if found != expected {
            return Err(ImsKubeError::WriteMismatch {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                path: path.to_string(),
                expected,
                found,
            });
        }
        self.exec(pod, &["mv", "-f", tmp, path], None, 4096).await?;
        Ok(())
    }

    /// Step 5: `kubectl rollout restart deployment`: the pod template's
    /// `restartedAt` annotation set to now (RFC 3339; with milliseconds, so
    /// that two restarts in one second are two rollouts).
    pub async fn restart(&self) -> Result<Restart, ImsKubeError> {
        let restarted_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let patch = serde_json::json!({ "spec": { "template": { "metadata": {
            "annotations": { RESTARTED_AT: restarted_at } } } } });
        let url = format!("/apis/apps/v1/namespaces/{}/deployments", self.namespace);
        let req = kube::core::Request::new(&url)
            .patch(
                &self.deployment,
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .map_err(|e| KubeError::Request {
                method: "PATCH",
                path: format!("{url}/{}", self.deployment),
                message: e.to_string(),
            })?;
        let d: Deployment = self.kube.call("PATCH", req, MAX_KUBE_BODY).await?;
        tracing::info!(
            "deployment {}/{} restarted at {restarted_at}",
            self.namespace,
            self.deployment
        );
        Ok(Restart {
            generation: d.metadata.generation.unwrap_or_default(),
            restarted_at,
        })
    }

    /// The rollout's state now.
    pub async fn rollout_status(&self, min_generation: i64) -> Result<RolloutStatus, ImsKubeError> {
        let url = format!("/apis/apps/v1/namespaces/{}/deployments", self.namespace);
        let req = kube::core::Request::new(&url)
            .get(&self.deployment, &Default::default())
            .map_err(|e| KubeError::Request {
                method: "GET",
                path: format!("{url}/{}", self.deployment),
                message: e.to_string(),
            })?;
        let d: Deployment = self.kube.call("GET", req, MAX_KUBE_BODY).await?;
        RolloutStatus::of(&d, min_generation).map_err(|message| ImsKubeError::RolloutFailed {
            namespace: self.namespace.clone(),
            deployment: self.deployment.clone(),
            message,
        })
    }

    /// Step 6: `kubectl rollout status`: polls until the rollout of
    /// `restart` is complete, calling `progress` whenever its state changes.
    pub async fn wait_rollout(
        &self,
        restart: &Restart,
        timeout: Duration,
        mut progress: impl FnMut(&RolloutStatus),
    ) -> Result<RolloutStatus, ImsKubeError> {
        let start = Instant::now();
        let mut last: Option<RolloutStatus> = None;
        loop {
            let status = self.rollout_status(restart.generation).await?;
            if last.as_ref() != Some(&status) {
                progress(&status);
            }
            if status.done {
                return Ok(status);
            }
            if start.elapsed() + self.poll_interval > timeout {
                return Err(ImsKubeError::RolloutTimeout {
                    namespace: self.namespace.clone(),
                    deployment: self.deployment.clone(),
                    after: timeout,
                    status,
                });
            }
            last = Some(status);
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// Runs `argv` in the pod's IMS container: its stdout (at most `max`
    /// bytes) when it exits 0. `stdin`, when given, is sent whole and kept
    /// open until the command ends.
    pub async fn exec(
        &self,
        pod: &ImsPod,
        argv: &[&str],
        stdin: Option<&[u8]>,
        max: usize,
    ) -> Result<Vec<u8>, ImsKubeError> {
        let command = argv.join(" ");
        let err = |message: String| ImsKubeError::Exec {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            command: command.clone(),
            message,
        };
        let run = async {
            let api: kube::Api<Pod> =
                kube::Api::namespaced(self.kube.client().clone(), &pod.namespace);
            let params = AttachParams::default()
                .container(&self.container)
                .stdin(stdin.is_some())
                .stdout(true)
                .stderr(true)
                .max_stdin_buf_size(EXEC_BUFFER)
                .max_stdout_buf_size(EXEC_BUFFER)
                .max_stderr_buf_size(EXEC_BUFFER);
            let mut process = api
                .exec(&pod.name, argv.iter().copied(), &params)
                .await
                .map_err(|e| match &e {
                    kube::Error::Api(s) if s.code == 403 => ImsKubeError::ExecForbidden {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        message: s.message.clone(),
                    },
                    e => err(super::kube_error(e)),
                })?;
            let stdout = process.stdout().expect("stdout requested");
            let stderr = process.stderr().expect("stderr requested");
            let status = process.take_status().expect("status taken once");
            let mut input = process.stdin();
            let send = async {
                if let (Some(w), Some(data)) = (input.as_mut(), stdin) {
                    w.write_all(data).await?;
                    w.flush().await?;
                }
                Ok::<(), std::io::Error>(())
            };
            let (sent, out, errout) = tokio::join!(
                send,
                read_capped(stdout, max),
                read_capped(stderr, MAX_STDERR)
            );
            let status = status.await;
            // Stdin stays open until the command has ended: on v4, closing
            // it closes the whole connection.
            drop(input);
            let _ = process.join().await;
            let out = out.map_err(|e| err(format!("reading its output: {e}")))?;
            let errout = String::from_utf8_lossy(&errout.unwrap_or_default().0)
                .trim()
                .to_string();
            let Some(status) = status else {
                return Err(err(match sent {
                    Err(e) => format!("sending its input: {e}"),
                    Ok(()) => "the exec stream ended without an exit status".into(),
                }));
            };
            if status.status.as_deref() == Some("Success") {
                return match out {
                    (_, true) => Err(ImsKubeError::OutputTooLarge {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        command: command.clone(),
                        max,
                    }),
                    (bytes, false) => Ok(bytes),
                };
            }
            let code = status
                .details
                .as_ref()
                .and_then(|d| d.causes.as_ref())
                .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
                .and_then(|c| c.message.clone());
            match code {
                Some(code) => Err(ImsKubeError::CommandFailed {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    command: command.clone(),
                    code,
                    stderr: errout,
                }),
                None => Err(err(format!(
                    "{}{}",
                    status.message.unwrap_or_else(|| "failed".into()),
                    if errout.is_empty() {
                        String::new()
                    } else {
                        format!(": {errout}")
                    }
                ))),
            }
        };
        tokio::time::timeout(self.exec_timeout, run)
            .await
            .map_err(|_| ImsKubeError::ExecTimeout {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                command: command.clone(),
                after: self.exec_timeout,
            })?
    }
}

/// Reads up to `max` bytes; the flag says more came (the rest is drained).
async fn read_capped(
    mut r: impl AsyncRead + Unpin,
    max: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    let mut over = false;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((out, over));
        }
        if out.len() + n > max {
            over = true;
            out.extend_from_slice(&buf[..max - out.len()]);
        } else {
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// The distinct data file names for `table` quoted in `app.py`: strings
/// `v<N>[.<M>]_<table>.json` (N without a leading zero), outside `#`
/// comment lines.
pub fn data_file_names(app_py: &str, table: Table) -> Vec<String> {
    let suffix = format!("_{}.json", table.key());
    let mut found: Vec<String> = Vec::new();
    for line in app_py.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for quote in ['\'', '"'] {
            let mut parts = line.split(quote);
            // Quoted strings are the odd pieces.
            parts.next();
            while let Some(quoted) = parts.next() {
                if quoted.strip_suffix(suffix.as_str()).is_some_and(is_version)
                    && !found.iter().any(|f| f == quoted)
                {
                    found.push(quoted.to_string());
                }
                parts.next();
            }
        }
    }
    found
}

/// `v<N>` or `v<N>.<M>`: digits, the first without a leading zero.
fn is_version(v: &str) -> bool {
    let Some(v) = v.strip_prefix('v') else {
        return false;
    };
    let mut parts = v.split('.');
    let number = |p: Option<&str>, major: bool| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!major || !p.starts_with('0'))
        })
    };
    match (parts.next(), parts.next(), parts.next()) {
        (major, None, None) => number(major, true),
        (major, Some(minor), None) => number(major, true) && number(Some(minor), false),
        _ => false,
    }
}

/// Step 7: IMS read back through its API against the tables written
/// (`table` → the JSON array that was written as its file). IMS must serve
/// exactly the ids written, and each written field that it serves with the
/// value written (fields outside IMS's schema are dropped when it loads a
/// file, so they are not compared). A difference is the race: IMS wrote
/// its memory over the new file before the restart.
/// IMS may serve more records than written only in the tables of `keeping`
/// (writes that keep what IMS accepted since planning).
pub async fn verify_tables(
    backends: &Backends,
    written: &BTreeMap<Table, Value>,
    keeping: &std::collections::BTreeSet<Table>,
) -> Result<(), ReadBackError> {
    for (&table, records) in written {
        let resp = backends
            .service_get("ims", table.api_path())
            .await
            .map_err(|e: BackendError| ReadBackError::Api {
                table,
                message: e.to_string(),
            })?;
        if resp.status != 200 {
            return Err(ReadBackError::Api {
                table,
                message: format!(
                    "GET {}: HTTP {}: {}",
                    table.api_path(),
                    resp.status,
                    resp.body.chars().take(300).collect::<String>()
                ),
            });
        }
        let served: Value = serde_json::from_str(&resp.body).map_err(|e| ReadBackError::Api {
            table,
            message: format!("the answer is not JSON: {e}"),
        })?;
        compare_table(table, records, &served, keeping.contains(&table))?;
    }
    Ok(())
}

/// The comparison of `verify_tables`, for one table.
pub fn compare_table(
    table: Table,
    written: &Value,
    served: &Value,
    others_allowed: bool,
) -> Result<(), ReadBackError> {
    let by_id = |v: &Value| -> BTreeMap<String, serde_json::Map<String, Value>> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let r = r.as_object()?;
                Some((r.get("id")?.as_str()?.to_string(), r.clone()))
            })
            .collect()
    };
    let (written, served) = (by_id(written), by_id(served));
    let missing: Vec<String> = written
        .keys()
        .filter(|id| !served.contains_key(*id))
        .cloned()
        .collect();
    let unexpected: Vec<String> = served
        .keys()
        .filter(|id| !others_allowed && !written.contains_key(*id))
        .cloned()
        .collect();
    let mut changed = Vec::new();
    for (id, record) in &written {
        let Some(now) = served.get(id) else { continue };
        for (field, value) in record {
            if let Some(v) = now.get(field)
                && v != value
            {
                changed.push(format!("{id}.{field}"));
            }
        }
    }
    if missing.is_empty() && unexpected.is_empty() && changed.is_empty() {
        Ok(())
    } else {
        Err(ReadBackError::Mismatch {
            table,
            missing,
            unexpected,
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_file_names_skip_comments_and_duplicates() {
        let app = "# CASMTRIAGE: 'v2.1_images.json' and 'v9_images.json' are read by tools\n\
                   x = os.path.join(d, 'v2.1_images.json')\n\
                   y = os.path.join(d, \"v2.1_images.json\")\n\
                   z = os.path.join(d, 'v3.1_deleted_images.json')\n\
                   k = 'v2_public_keys.json'\n\
                   bad = ['v02_recipes.json', 'v2._recipes.json', 'x2_recipes.json', 'v2.2_recipes.json']\n";
        assert_eq!(data_file_names(app, Table::Images), ["v2.1_images.json"]);
        assert_eq!(
            data_file_names(app, Table::DeletedImages),
            ["v3.1_deleted_images.json"]
        );
        assert_eq!(
            data_file_names(app, Table::PublicKeys),
            ["v2_public_keys.json"]
        );
        assert_eq!(data_file_names(app, Table::Recipes), ["v2.2_recipes.json"]);
        assert!(data_file_names(app, Table::Jobs).is_empty());
        let two = "a = 'v2_jobs.json'\nb = 'v2.4_jobs.json'\n";
        assert_eq!(data_file_names(two, Table::Jobs).len(), 2);
    }

    #[test]
    fn the_comparison_names_missing_extra_and_changed_records() {
        let written = json!([{"id": "a", "name": "x", "dropped": 1}, {"id": "b", "name": "y"}]);
        let same = json!([{"id": "b", "name": "y", "arch": "x86_64"}, {"id": "a", "name": "x"}]);
        compare_table(Table::Images, &written, &same, false).unwrap();
        let old = json!([{"id": "a", "name": "old"}, {"id": "c"}]);
        let err = compare_table(Table::Images, &written, &old, false).unwrap_err();
        let ReadBackError::Mismatch {
            missing,
            unexpected,
            changed,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(
            (missing, unexpected, changed),
            (
                &vec!["b".to_string()],
                &vec!["c".to_string()],
                &vec!["a.name".to_string()]
            )
        );
        let text = err.to_string();
        assert!(text.contains("race"), "{text}");
        // A write that keeps what IMS accepted since planning tolerates
        // records it did not write, but not a lost or changed one.
        let more = json!([{"id": "a", "name": "x"}, {"id": "b", "name": "y"}, {"id": "new"}]);
        compare_table(Table::Images, &written, &more, true).unwrap();
        assert!(compare_table(Table::Images, &written, &more, false).is_err());
        assert!(compare_table(Table::Images, &written, &old, true).is_err());
    }

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
