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
//! 7. IMS read back through its API (`crate::readback`, not Kubernetes).
//!
//! This module knows IMS (its pod, deployment, data directory and file
//! names); exec and rollout are generic (`super::exec`, `super::rollout`).
//! Every exec has a timeout and a cap on what it returns. The commands
//! (`cat`, `dd`, `sha256sum`, `mv`, `rm`) are busybox's and coreutils'
//! alike: IMS's image is Alpine.
use super::exec::{Container, ExecError};
use super::rollout::{Restart, RolloutError, RolloutStatus};
use super::{Access, Kube, KubeError, MAX_KUBE_BODY};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use sha2::Digest;
use std::collections::BTreeMap;
use std::time::Duration;

pub const NAMESPACE: &str = "services";
pub const POD_SELECTOR: &str = "app.kubernetes.io/instance=cray-ims";
pub const DEPLOYMENT: &str = "cray-ims";
pub const CONTAINER: &str = "cray-ims";
/// Where HPE's in-pod tool reads the data file names.
pub const APP_PY: &str = "/app/src/server/app.py";
/// IMS's data directory (`HACK_DATA_STORE` in production), as HPE's tool has it.
pub const DATA_DIR: &str = "/var/ims/data";
/// Largest data file read or written (IMS keeps every table in memory).
pub const MAX_DATA_FILE: usize = 256 << 20;
/// Largest `app.py` read.
const MAX_APP_PY: usize = 1 << 20;

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
    #[error(transparent)]
    Exec(#[from] ExecError),
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
            return Err(ExecError::Forbidden {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                message: format!(
                    "kubectl auth can-i create pods/exec -n {}: no",
                    self.namespace
                ),
            }
            .into());
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
            return Err(ExecError::Other {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                command: format!("write {path}"),
                message: format!(
                    "{} bytes is more than the {MAX_DATA_FILE} allowed",
                    bytes.len()
                ),
            }
            .into());
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

    /// Step 5: `kubectl rollout restart` of IMS's deployment.
    pub async fn restart(&self) -> Result<Restart, ImsKubeError> {
        Ok(self
            .kube
            .rollout_restart(&self.namespace, &self.deployment)
            .await?)
    }

    /// The rollout's state now.
    pub async fn rollout_status(&self, min_generation: i64) -> Result<RolloutStatus, ImsKubeError> {
        self.kube
            .rollout_status(&self.namespace, &self.deployment, min_generation)
            .await
            .map_err(|e| self.rollout_error(e))
    }

    /// Step 6: `kubectl rollout status`: polls until the rollout of
    /// `restart` is complete, calling `progress` whenever its state changes.
    pub async fn wait_rollout(
        &self,
        restart: &Restart,
        timeout: Duration,
        progress: impl FnMut(&RolloutStatus),
    ) -> Result<RolloutStatus, ImsKubeError> {
        self.kube
            .wait_rollout(
                &self.namespace,
                &self.deployment,
                restart,
                timeout,
                self.poll_interval,
                progress,
            )
            .await
            .map_err(|e| self.rollout_error(e))
    }

    /// A rollout error of IMS's deployment, saying what to look at.
    fn rollout_error(&self, e: RolloutError) -> ImsKubeError {
        match e {
            RolloutError::Kube(e) => ImsKubeError::Kube(e),
            RolloutError::Failed(message) => ImsKubeError::RolloutFailed {
                namespace: self.namespace.clone(),
                deployment: self.deployment.clone(),
                message,
            },
            RolloutError::Timeout { after, status } => ImsKubeError::RolloutTimeout {
                namespace: self.namespace.clone(),
                deployment: self.deployment.clone(),
                after,
                status,
            },
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
        let at = Container {
            namespace: &pod.namespace,
            pod: &pod.name,
            name: &self.container,
        };
        Ok(self
            .kube
            .exec(&at, argv, stdin, max, self.exec_timeout)
            .await?)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
