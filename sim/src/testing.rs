//! Test support, shared by this crate's and imsflow's tests: a Ceph RGW
//! found through the environment, a fresh RGW tenant per test (tenants have
//! their own bucket namespace, so every test can own `boot-images` and `ims`),
//! and a seeded simulator serving it.
use crate::s3::S3Config;
use crate::seed::{Expected, SeedSpec};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const HOW: &str = "start one with `scripts/ceph-micro.sh target/ceph` and `source target/ceph/env.sh` \
                   (scripts/test does both)";

/// The Ceph cluster the tests use.
pub struct Ceph {
    pub endpoint: String,
    pub conf: String,
}

impl Ceph {
    /// From `IMSFLOW_TEST_S3_ENDPOINT` and `IMSFLOW_TEST_CEPH_CONF`; panics
    /// with instructions when they are not set: tests never skip silently.
    pub fn from_env() -> Ceph {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: these tests need a real Ceph RGW; {HOW}")
            })
        };
        Ceph {
            endpoint: var("IMSFLOW_TEST_S3_ENDPOINT"),
            conf: var("IMSFLOW_TEST_CEPH_CONF"),
        }
    }

    /// Fails fast when the cluster is full or nearly: a full memstore OSD
    /// blocks every write, so seeding would hang instead of failing.
    pub fn check_health(&self) {
        static CHECKED: std::sync::Once = std::sync::Once::new();
        CHECKED.call_once(|| {
            let out = Command::new("ceph")
                .args(["-c", &self.conf, "health", "detail"])
                .output()
                .unwrap_or_else(|e| panic!("running `ceph health`: {e}; {HOW}"));
            let health = String::from_utf8_lossy(&out.stdout);
            if let Some(state) = full_state(&health) {
                panic!(
                    "the Ceph test cluster is {state}: writes would block forever ({}). \
                     Recover with `scripts/ceph-micro-stop.sh target/ceph && rm -rf target/ceph`, \
                     then run scripts/test again (it starts a fresh cluster)",
                    health.lines().next().unwrap_or_default()
                );
            }
        });
    }

    /// Creates an RGW user in a new tenant; returns the tenant and its S3 settings.
    pub fn tenant(&self) -> (String, S3Config) {
        self.check_health();
        static N: AtomicU32 = AtomicU32::new(0);
        let tenant = format!(
            "t{}x{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        let access_key = format!("AK{}", tenant.to_uppercase());
        let secret_key = format!("SK{tenant}{}", fastrand::u64(..));
        let out = Command::new("radosgw-admin")
            .args([
                "-c",
                &self.conf,
                "user",
                "create",
                "--tenant",
                &tenant,
                "--uid",
                "sim",
                "--display-name",
                "sim",
            ])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .output()
            .unwrap_or_else(|e| panic!("running radosgw-admin: {e}; {HOW}"));
        assert!(
            out.status.success(),
            "radosgw-admin user create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s3 = S3Config {
            endpoint: self.endpoint.clone(),
            access_key,
            secret_key,
        };
        (tenant, s3)
    }

    /// Removes a tenant's user and its buckets (memstore keeps data in RAM).
    pub fn remove_tenant(&self, tenant: &str) {
        let _ = Command::new("radosgw-admin")
            .args([
                "-c",
                &self.conf,
                "user",
                "rm",
                "--tenant",
                tenant,
                "--uid",
                "sim",
                "--purge-data",
            ])
            .output();
    }
}

/// An HTTP client for talking to the simulator. reqwest's rustls needs a
/// crypto provider installed first: ring, the one imsflow installs.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `full` or `nearfull` when `ceph health detail` says an OSD or pool is so.
pub fn full_state(health: &str) -> Option<&'static str> {
    let text = health.to_ascii_uppercase();
    if text.contains("OSD_FULL") || text.contains("POOL_FULL") || text.contains(" FULL OSD") {
        Some("full")
    } else if text.contains("NEARFULL") || text.contains("BACKFILLFULL") {
        Some("nearfull")
    } else {
        None
    }
}

/// A seeded, running simulator in a temporary directory.
pub struct System {
    pub tenant: String,
    pub data: tempfile::TempDir,
    pub s3: S3Config,
    pub expected: Expected,
    pub running: crate::Running,
}

impl System {
    pub async fn start(spec: &SeedSpec) -> System {
        let (tenant, s3) = Ceph::from_env().tenant();
        let data = tempfile::tempdir().unwrap();
        let expected = crate::seed::seed(data.path(), &s3, spec)
            .await
            .expect("seeding");
        let running = crate::serve(data.path(), 0).await.expect("serving");
        // Rollouts complete quickly in tests.
        running.state.set_knobs(crate::k8s::cluster::Knobs {
            rollout_delay_ms: 300,
            ..Default::default()
        });
        System {
            tenant,
            data,
            s3,
            expected,
            running,
        }
    }

    /// Changes the simulated IMS workload's knobs (failure switches, timing).
    pub fn knobs(&self, change: impl FnOnce(&mut crate::k8s::cluster::Knobs)) {
        let mut knobs = self.running.state.knobs();
        change(&mut knobs);
        self.running.state.set_knobs(knobs);
    }

    /// Waits (at most 30 s) until no rollout of the IMS deployment is in
    /// progress, as an admin who fixed the cluster waits for `kubectl
    /// rollout status`.
    pub async fn wait_rollout_done(&self) {
        for _ in 0..300 {
            if !self
                .running
                .state
                .cluster
                .lock()
                .unwrap()
                .rollout_in_progress()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the IMS rollout did not finish within 30 s");
    }

    /// The kubeconfig the simulator wrote for clients.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self.data.path().join("kubeconfig")
    }

    /// The bearer token the simulated Kubernetes API accepts.
    pub fn kube_token(&self) -> String {
        self.running.state.config.kube_token.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url)
    }

    /// A gateway token from the simulated Keycloak.
    pub async fn token(&self, http: &reqwest::Client) -> String {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", "admin-client"),
            ("client_secret", self.expected.client_secret.as_str()),
        ];
        let resp = http
            .post(self.url("/keycloak/realms/shasta/protocol/openid-connect/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for System {
    /// Stops serving and frees the tenant's objects.
    fn drop(&mut self) {
        self.running.task.abort();
        Ceph::from_env().remove_tenant(&self.tenant);
    }
}

/// The default small seed most tests use.
pub fn small_spec() -> SeedSpec {
    SeedSpec {
        seed: 7,
        images: 3,
        recipes: 2,
        public_keys: 2,
        deleted: 1,
        jobs: 2,
        running_jobs: 1,
        rootfs_size: 64 << 10,
    }
}

#[cfg(test)]
mod tests {
    use super::full_state;

    #[test]
    fn a_full_or_nearfull_cluster_is_recognised() {
        let full = "HEALTH_ERR 1 full osd(s); 8 pool(s) full\n[ERR] OSD_FULL: 1 full osd(s)\n    osd.0 is full\n";
        assert_eq!(full_state(full), Some("full"));
        let near = "HEALTH_WARN 1 nearfull osd(s)\n[WRN] OSD_NEARFULL: 1 nearfull osd(s)\n";
        assert_eq!(full_state(near), Some("nearfull"));
        assert_eq!(full_state("HEALTH_OK\n"), None);
        assert_eq!(
            full_state("HEALTH_WARN mon a is low on available space\n"),
            None
        );
    }
}
