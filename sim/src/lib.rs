//! csm-sim: a simulated HPE CSM for tests, demos and site rehearsals.
//!
//! One loopback server, laid out like the API gateway: IMS, BOS, BSS and STS
//! under `/apis`, Keycloak under `/keycloak`, and a Kubernetes API subset
//! under `/api/v1`. S3 is real (Ceph RGW); the simulator holds static keys
//! for it, as IMS does. State lives in a data directory, IMS's under the
//! file names real IMS uses.
pub mod auth;
pub mod bos;
pub mod bss;
pub mod demo;
pub mod ims;
pub mod k8s;
pub mod problem;
pub mod s3;
pub mod seed;
pub mod testing;

use axum::Router;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Mutex;

/// The simulator's settings, kept in `<data>/sim.json` so that a restart
/// serves the same system.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimConfig {
    pub s3: s3::S3Config,
    /// Bearer token the Kubernetes API accepts (written into the kubeconfig).
    pub kube_token: String,
}

impl SimConfig {
    pub fn path(data: &Path) -> PathBuf {
        data.join("sim.json")
    }

    pub fn load(data: &Path) -> anyhow::Result<SimConfig> {
        let text = std::fs::read_to_string(Self::path(data)).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (run `csm-sim seed` first)",
                Self::path(data).display()
            )
        })?;
        Ok(serde_json::from_str(&text)?)
    }

    pub fn save(&self, data: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(data)?;
        std::fs::write(Self::path(data), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

/// A JSON document persisted as one file in the data directory.
pub struct JsonFile {
    path: PathBuf,
    pub value: Value,
}

impl JsonFile {
    pub fn load(path: PathBuf, empty: Value) -> anyhow::Result<JsonFile> {
        let value = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => empty,
            Err(e) => anyhow::bail!("{}: {e}", path.display()),
        };
        Ok(JsonFile { path, value })
    }

    pub fn save(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.value).unwrap())?;
        std::fs::rename(tmp, &self.path)
    }
}

pub struct SimState {
    pub data: PathBuf,
    pub config: SimConfig,
    pub s3: s3::S3,
    pub ims: Mutex<ims::store::Store>,
    pub bos: Mutex<JsonFile>,
    pub bss: Mutex<JsonFile>,
    pub k8s: Mutex<JsonFile>,
    /// The IMS Deployment and pods (never held across an await).
    pub cluster: std::sync::Mutex<k8s::cluster::Cluster>,
    pub tokens: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl SimState {
    pub fn open(data: &Path) -> anyhow::Result<SimState> {
        let config = SimConfig::load(data)?;
        Ok(SimState {
            data: data.to_path_buf(),
            s3: s3::S3::new(&config.s3),
            ims: Mutex::new(ims::store::Store::load(&data.join("ims"))?),
            bos: Mutex::new(JsonFile::load(data.join("bos.json"), bos::empty())?),
            bss: Mutex::new(JsonFile::load(
                data.join("bss.json"),
                serde_json::json!([]),
            )?),
            k8s: Mutex::new(JsonFile::load(data.join("k8s.json"), k8s::empty())?),
            config,
            cluster: std::sync::Mutex::new(k8s::cluster::Cluster::new(Default::default())),
            tokens: Default::default(),
        })
    }

    /// The failure switches and timing of the simulated IMS workload.
    pub fn knobs(&self) -> k8s::cluster::Knobs {
        self.cluster.lock().unwrap().knobs.clone()
    }

    pub fn set_knobs(&self, knobs: k8s::cluster::Knobs) {
        self.cluster.lock().unwrap().knobs = knobs;
    }

    /// How many rollouts completed (each reloaded IMS from its data files).
    pub fn ims_restarts(&self) -> u64 {
        self.cluster.lock().unwrap().restarts
    }

    pub fn new_id(&self) -> String {
        random_uuid(&mut fastrand::Rng::new())
    }
}

/// A UUID4 string from a random source (deterministic when the source is seeded).
pub fn random_uuid(rng: &mut fastrand::Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The `ims_unavailable` switch: a DELETE is answered 503 while it counts down.
async fn ims_unavailable(
    axum::extract::State(state): axum::extract::State<Arc<SimState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.method() == axum::http::Method::DELETE {
        let mut cluster = state.cluster.lock().unwrap();
        if cluster.knobs.ims_unavailable > 0 {
            cluster.knobs.ims_unavailable -= 1;
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers",
            )
                .into_response();
        }
    }
    next.run(req).await
}

pub fn router(state: Arc<SimState>) -> Router {
    let gateway = |r: Router<Arc<SimState>>| {
        r.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
    };
    Router::new()
        .nest(
            "/apis/ims",
            gateway(ims::router()).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                ims_unavailable,
            )),
        )
        .nest("/apis/bos", gateway(bos::router()))
        .nest("/apis/bss", gateway(bss::router()))
        .nest("/apis/sts", gateway(auth::sts_router()))
        .nest("/keycloak", auth::keycloak_router())
        .nest("/api/v1", k8s::router(state.clone()))
        .nest("/apis/apps/v1", k8s::apps_router(state.clone()))
        .nest(
            "/apis/authorization.k8s.io/v1",
            k8s::authorization_router(state.clone()),
        )
        .route(
            "/sim/k8s/knobs",
            axum::routing::get(k8s::cluster::get_knobs).post(k8s::cluster::set_knobs),
        )
        .with_state(state)
}

/// A running simulator.
pub struct Running {
    pub base_url: String,
    pub state: Arc<SimState>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves the data directory on `127.0.0.1:port` (0 picks a free port) and
/// writes `kubeconfig` and `imsflow.toml` next to the data for clients.
pub async fn serve(data: &Path, port: u16) -> anyhow::Result<Running> {
    let state = Arc::new(SimState::open(data)?);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    write_client_files(data, &base_url, &state.config)?;
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("csm-sim server stopped: {e}");
        }
    });
    Ok(Running {
        base_url,
        state,
        task,
    })
}

fn write_client_files(data: &Path, base_url: &str, config: &SimConfig) -> anyhow::Result<()> {
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "csm-sim", "cluster": { "server": base_url } }],
        "users": [{ "name": "csm-sim-admin", "user": { "token": config.kube_token } }],
        "contexts": [{ "name": "csm-sim", "context": { "cluster": "csm-sim", "user": "csm-sim-admin" } }],
        "current-context": "csm-sim",
    });
    std::fs::write(data.join("kubeconfig"), serde_yaml::to_string(&kubeconfig)?)?;
    let client = format!(
        "# Connection settings for imsflow against this simulated CSM.\ngateway = \"{base_url}\"\nkubeconfig = \"{}\"\n",
        data.join("kubeconfig").display()
    );
    std::fs::write(data.join("imsflow.toml"), client)?;
    Ok(())
}
