//! Contract tests of the simulated Kubernetes API around IMS: the pod list,
//! `pods/exec` over WebSocket in the channel protocol (spoken for real, with
//! a WebSocket client), the Deployment's rollout restart, and each failure
//! knob. On a real Ceph RGW, one tenant per test.
use csm_sim::testing::{System, small_spec};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const POD_SELECTOR: &str = "labelSelector=app.kubernetes.io%2Finstance%3Dcray-ims";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/services/deployments/cray-ims";

struct Kube {
    sys: System,
    http: reqwest::Client,
    token: String,
}

impl Kube {
    async fn new() -> Kube {
        let sys = System::start(&small_spec()).await;
        let token = sys.kube_token();
        Kube {
            sys,
            http: csm_sim::testing::http_client(),
            token,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.sys.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn pods(&self) -> Vec<(String, String)> {
        let (status, list) = self
            .get(&format!("/api/v1/namespaces/services/pods?{POD_SELECTOR}"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(list["kind"], "PodList");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["status"]["phase"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    async fn pod(&self) -> String {
        let pods = self.pods().await;
        assert_eq!(pods.len(), 1, "{pods:?}");
        pods[0].0.clone()
    }

    async fn restart(&self) -> Value {
        let now = "2026-11-26T10:00:00Z";
        let resp = self
            .http
            .patch(self.sys.url(DEPLOYMENT))
            .bearer_auth(&self.token)
            .header("content-type", "application/strategic-merge-patch+json")
            .body(
                json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": now }}}}})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Polls the Deployment until kubectl's rollout status would say done.
    async fn wait_rollout(&self, max: Duration) -> Result<Value, Value> {
        let start = std::time::Instant::now();
        loop {
            let (_, d) = self.get(DEPLOYMENT).await;
            let s = &d["status"];
            if s["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
                && s["updatedReplicas"] == d["spec"]["replicas"]
                && s["replicas"] == s["updatedReplicas"]
                && s["availableReplicas"] == s["updatedReplicas"]
            {
                return Ok(d);
            }
            if start.elapsed() > max {
                return Err(d);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ims_image(&self, id: &str) -> Value {
        let token = self.sys.token(&self.http).await;
        let resp = self
            .http
            .get(self.sys.url(&format!("/apis/ims/v3/images/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        resp.json().await.unwrap()
    }

    /// Opens an exec WebSocket; the answer's status when it is refused.
    async fn exec(
        &self,
        pod: &str,
        command: &[&str],
        stdin: bool,
        protocols: &str,
    ) -> Result<Exec, (u16, Value)> {
        let mut query = String::from("container=cray-ims&stdout=true&stderr=true");
        if stdin {
            query.push_str("&stdin=true");
        }
        for c in command {
            query.push_str("&command=");
            query.push_str(&urlencode(c));
        }
        let url = self
            .sys
            .url(&format!(
                "/api/v1/namespaces/services/pods/{pod}/exec?{query}"
            ))
            .replacen("http://", "ws://", 1);
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        req.headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, resp)) => Ok(Exec {
                ws,
                protocol: resp.headers()["sec-websocket-protocol"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.into_body().unwrap_or_default();
                Err((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs a command to its end: stdout, stderr, status.
    async fn run(&self, pod: &str, command: &[&str]) -> Output {
        self.exec(pod, command, false, V4)
            .await
            .unwrap()
            .finish()
            .await
    }
}

const V4: &str = "v5.channel.k8s.io, v4.channel.k8s.io";

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Exec {
    ws: Ws,
    protocol: String,
}

#[derive(Debug, Default)]
struct Output {
    /// One-byte channel openings seen before any data.
    opened: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Value,
}

impl Output {
    fn exit_code(&self) -> Option<String> {
        if self.status["status"] == "Success" {
            return Some("0".into());
        }
        self.status["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .map(String::from)
    }
}

impl Exec {
    async fn stdin(&mut self, data: &[u8]) {
        let mut frame = vec![0u8];
        frame.extend_from_slice(data);
        self.ws.send(Message::binary(frame)).await.unwrap();
    }

    async fn finish(mut self) -> Output {
        let mut out = Output::default();
        while let Some(msg) = self.ws.next().await {
            let Message::Binary(b) = msg.unwrap() else {
                continue;
            };
            match (b[0], b.len()) {
                (c, 1) => out.opened.push(c),
                (1, _) => out.stdout.extend_from_slice(&b[1..]),
                (2, _) => out.stderr.extend_from_slice(&b[1..]),
                (3, _) => out.status = serde_json::from_slice(&b[1..]).unwrap(),
                (c, _) => panic!("unexpected channel {c}"),
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ims_pod_is_listed_by_its_instance_label() {
    let k = Kube::new().await;
    let pods = k.pods().await;
    assert_eq!(pods.len(), 1);
    let (name, phase) = &pods[0];
    assert!(name.starts_with("cray-ims-"), "{name}");
    assert_eq!(phase, "Running");
    let (_, list) = k
        .get(&format!("/api/v1/namespaces/services/pods?{POD_SELECTOR}"))
        .await;
    let pod = &list["items"][0];
    assert_eq!(pod["spec"]["containers"][0]["name"], "cray-ims");
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/instance"],
        "cray-ims"
    );
    let (_, other) = k
        .get("/api/v1/namespaces/services/pods?labelSelector=app.kubernetes.io%2Finstance%3Dcray-bos")
        .await;
    assert_eq!(other["items"], json!([]));
    let (_, elsewhere) = k
        .get(&format!("/api/v1/namespaces/default/pods?{POD_SELECTOR}"))
        .await;
    assert_eq!(elsewhere["items"], json!([]));
    let (status, one) = k
        .get(&format!("/api/v1/namespaces/services/pods/{name}"))
        .await;
    assert_eq!(
        (status, one["metadata"]["name"].as_str()),
        (200, Some(name.as_str()))
    );

    k.sys.knobs(|k| k.ims_pods = 0);
    assert_eq!(k.pods().await, vec![]);
    k.sys.knobs(|k| k.ims_pods = 2);
    let two = k.pods().await;
    assert_eq!(two.len(), 2);
    assert!(
        two.iter()
            .all(|(n, p)| n.starts_with("cray-ims-") && p == "Running")
    );
    assert_ne!(two[0].0, two[1].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_api_needs_the_kubeconfig_token() {
    let k = Kube::new().await;
    let pod = k.pod().await;
    for path in [
        format!("/api/v1/namespaces/services/pods?{POD_SELECTOR}"),
        DEPLOYMENT.to_string(),
        format!("/api/v1/namespaces/services/pods/{pod}/exec?command=ls&stdout=true"),
    ] {
        let resp = k.http.get(k.sys.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_speaks_the_v4_channel_protocol() {
    let k = Kube::new().await;
    let pod = k.pod().await;
    // kube offers v5 first; CSM's Kubernetes (and the simulator by default) picks v4.
    let exec = k
        .exec(&pod, &["cat", "/app/src/server/app.py"], false, V4)
        .await
        .unwrap();
    assert_eq!(exec.protocol, "v4.channel.k8s.io");
    let out = exec.finish().await;
    assert_eq!(
        out.opened,
        vec![1, 2, 3],
        "channels open with one-byte messages"
    );
    assert_eq!(out.status, json!({"metadata": {}, "status": "Success"}));
    let app = String::from_utf8(out.stdout).unwrap();
    for name in [
        "'v2.1_images.json'",
        "'v2_public_keys.json'",
        "'v2.2_recipes.json'",
    ] {
        assert!(app.contains(name), "{name} in {app}");
    }

    let out = k
        .run(&pod, &["cat", "/var/ims/data/v2.1_images.json"])
        .await;
    assert_eq!(out.exit_code().as_deref(), Some("0"));
    let on_disk = std::fs::read(k.sys.data.path().join("ims/v2.1_images.json")).unwrap();
    assert_eq!(out.stdout, on_disk);

    let out = k.run(&pod, &["ls", "/var/ims/data"]).await;
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.lines().any(|l| l == "v2.4_jobs.json"), "{listing}");

    let out = k.run(&pod, &["cat", "/var/ims/data/nope.json"]).await;
    assert_eq!(out.exit_code().as_deref(), Some("1"));
    assert_eq!(out.status["reason"], "NonZeroExitCode");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file"));

    let out = k.run(&pod, &["cat", "/var/ims/data/../sim.json"]).await;
    assert_eq!(
        out.exit_code().as_deref(),
        Some("1"),
        "confined to the data directory"
    );

    let out = k.run(&pod, &["python3", "/tmp/import.py"]).await;
    assert_eq!(out.exit_code().as_deref(), Some("127"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    let (status, body) = k
        .exec(&pod, &["ls"], false, "base64.channel.k8s.io")
        .await
        .err()
        .unwrap();
    assert_eq!((status, body["reason"].as_str()), (400, Some("BadRequest")));
    let (status, _) = k
        .exec("cray-ims-nope-x", &["ls"], false, V4)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_writes_a_counted_stdin_then_renames_atomically() {
    let k = Kube::new().await;
    let pod = k.pod().await;
    let data = br#"[{"id": "x", "created": "2024-01-01T00:00:00+00:00", "name": "n"}]"#;
    let count = data.len().to_string();
    let of = "of=/var/ims/data/.v2_public_keys.json.tmp";
    let mut exec = k
        .exec(
            &pod,
            &[
                "dd",
                of,
                "bs=65536",
                &format!("count={count}"),
                "iflag=count_bytes,fullblock",
                "status=none",
            ],
            true,
            V4,
        )
        .await
        .unwrap();
    // v4 cannot close stdin: dd ends after `count` bytes, sent in pieces.
    exec.stdin(&data[..10]).await;
    exec.stdin(&data[10..]).await;
    let out = exec.finish().await;
    assert_eq!(out.exit_code().as_deref(), Some("0"), "{out:?}");
    let tmp = k.sys.data.path().join("ims/.v2_public_keys.json.tmp");
    assert_eq!(std::fs::read(&tmp).unwrap(), data);

    let out = k
        .run(
            &pod,
            &["sha256sum", "/var/ims/data/.v2_public_keys.json.tmp"],
        )
        .await;
    let line = String::from_utf8(out.stdout).unwrap();
    use sha2::Digest;
    assert!(
        line.starts_with(&hex::encode(sha2::Sha256::digest(data))),
        "{line}"
    );

    let out = k
        .run(
            &pod,
            &[
                "mv",
                "-f",
                "/var/ims/data/.v2_public_keys.json.tmp",
                "/var/ims/data/v2_public_keys.json",
            ],
        )
        .await;
    assert_eq!(out.exit_code().as_deref(), Some("0"), "{out:?}");
    assert!(!tmp.exists());
    assert_eq!(
        std::fs::read(k.sys.data.path().join("ims/v2_public_keys.json")).unwrap(),
        data
    );
    let out = k
        .run(&pod, &["mv", "/var/ims/data/x", "/app/src/server/app.py"])
        .await;
    assert_eq!(out.exit_code().as_deref(), Some("1"));
    let out = k
        .run(&pod, &["rm", "-f", "/var/ims/data/v2_public_keys.json"])
        .await;
    assert_eq!(out.exit_code().as_deref(), Some("0"));
    assert!(!k.sys.data.path().join("ims/v2_public_keys.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_v5_closes_stdin_with_channel_255() {
    let k = Kube::new().await;
    k.sys.knobs(|k| k.exec_v5 = true);
    let pod = k.pod().await;
    let mut exec = k
        .exec(&pod, &["dd", "of=/var/ims/data/x.json"], true, V4)
        .await
        .unwrap();
    assert_eq!(exec.protocol, "v5.channel.k8s.io");
    exec.stdin(b"[1,").await;
    exec.stdin(b"2]").await;
    exec.ws.send(Message::binary(vec![255u8, 0])).await.unwrap();
    let out = exec.finish().await;
    assert_eq!(out.exit_code().as_deref(), Some("0"), "{out:?}");
    assert_eq!(
        std::fs::read(k.sys.data.path().join("ims/x.json")).unwrap(),
        b"[1,2]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forbidden_answers_403_with_a_status() {
    let k = Kube::new().await;
    k.sys.knobs(|k| k.exec_forbidden = true);
    let pod = k.pod().await;
    let (status, body) = k
        .exec(&pod, &["ls", "/var/ims/data"], false, V4)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Forbidden");
    assert!(
        body["message"].as_str().unwrap().contains("pods/exec"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_restart_reloads_ims_from_its_files_under_a_new_pod() {
    let k = Kube::new().await;
    let old_pod = k.pod().await;
    let file = k.sys.data.path().join("ims/v2.1_images.json");
    let mut records: Vec<Value> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    records[0]["name"] = json!("edited-by-hand");
    records[0]["unknown_field"] = json!("dropped on load");
    let id = records[0]["id"].as_str().unwrap().to_string();
    std::fs::write(&file, serde_json::to_vec(&records).unwrap()).unwrap();
    assert_ne!(
        k.ims_image(&id).await["name"],
        "edited-by-hand",
        "IMS serves from memory until restarted"
    );

    let (_, before) = k.get(DEPLOYMENT).await;
    assert_eq!(before["metadata"]["generation"], 1);
    assert_eq!(before["status"]["observedGeneration"], 1);
    let patched = k.restart().await;
    assert_eq!(patched["metadata"]["generation"], 2);
    assert_eq!(
        patched["status"]["observedGeneration"], 1,
        "the controller has not observed the new generation yet"
    );
    assert_eq!(
        patched["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2026-11-26T10:00:00Z"
    );
    let done = k.wait_rollout(Duration::from_secs(10)).await.unwrap();
    assert_eq!(done["status"]["observedGeneration"], 2);
    assert_eq!(k.sys.running.state.ims_restarts(), 1);
    let new_pod = k.pod().await;
    assert_ne!(new_pod, old_pod, "the restarted pod has a new name");
    let after = k.ims_image(&id).await;
    assert_eq!(after["name"], "edited-by-hand");
    assert!(
        after.get("unknown_field").is_none(),
        "unknown fields are dropped on load"
    );
    // Exec reaches the new pod, not the old one.
    assert_eq!(
        k.run(&new_pod, &["ls", "/var/ims/data"])
            .await
            .exit_code()
            .as_deref(),
        Some("0")
    );
    assert!(
        k.exec(&old_pod, &["ls", "/var/ims/data"], false, V4)
            .await
            .is_err()
    );

    // A patch that changes nothing in the template starts no rollout.
    let resp = k
        .http
        .patch(k.sys.url(DEPLOYMENT))
        .bearer_auth(&k.token)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"metadata": {"labels": {"x": "y"}}}"#)
        .send()
        .await
        .unwrap();
    let same: Value = resp.json().await.unwrap();
    assert_eq!(same["metadata"]["generation"], 2);
    // JSON patches are not what `rollout restart` sends.
    let resp = k
        .http
        .patch(k.sys.url(DEPLOYMENT))
        .bearer_auth(&k.token)
        .header("content-type", "application/json-patch+json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // The data files keep real IMS's names.
    for name in [
        "v2.1_images.json",
        "v2_public_keys.json",
        "v2.2_recipes.json",
        "v2.4_jobs.json",
        "v3.1_deleted_images.json",
        "v3_deleted_public_keys.json",
        "v3.2_deleted_recipes.json",
    ] {
        assert!(k.sys.data.path().join("ims").join(name).is_file(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_never_becomes_ready_keeps_the_old_pod_serving() {
    let k = Kube::new().await;
    k.sys.knobs(|k| {
        k.rollout_never_ready = true;
        k.rollout_delay_ms = 200;
    });
    let old_pod = k.pod().await;
    k.restart().await;
    let stuck = k
        .wait_rollout(Duration::from_millis(800))
        .await
        .unwrap_err();
    let s = &stuck["status"];
    assert_eq!(s["observedGeneration"], 2, "{stuck}");
    assert_eq!(
        (s["replicas"].as_i64(), s["updatedReplicas"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(s["availableReplicas"], 1);
    let pods = k.pods().await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(pods.contains(&(old_pod.clone(), "Running".into())));
    let pending = pods.iter().find(|(n, _)| *n != old_pod).unwrap();
    assert_eq!(pending.1, "Pending");
    let (status, _) = k
        .exec(&pending.0, &["ls", "/var/ims/data"], false, V4)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 400, "a pending pod cannot exec");
    assert_eq!(k.sys.running.state.ims_restarts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_race_lets_the_old_ims_overwrite_new_files() {
    let k = Kube::new().await;
    k.sys.knobs(|k| k.race_on_rollout = true);
    let file = k.sys.data.path().join("ims/v2.1_images.json");
    let mut records: Vec<Value> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    records[0]["name"] = json!("imported");
    let id = records[0]["id"].as_str().unwrap().to_string();
    std::fs::write(&file, serde_json::to_vec(&records).unwrap()).unwrap();
    k.restart().await;
    k.wait_rollout(Duration::from_secs(10)).await.unwrap();
    assert_eq!(k.sys.running.state.ims_restarts(), 1);
    assert_ne!(
        k.ims_image(&id).await["name"],
        "imported",
        "the import was lost"
    );
    let on_disk: Vec<Value> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_ne!(on_disk[0]["name"], "imported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knobs_are_set_over_http() {
    let k = Kube::new().await;
    let resp = k
        .http
        .post(k.sys.url("/sim/k8s/knobs"))
        .body(r#"{"ims_pods": 2, "exec_forbidden": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let knobs: Value = resp.json().await.unwrap();
    assert_eq!(
        (
            knobs["ims_pods"].as_u64(),
            knobs["exec_forbidden"].as_bool()
        ),
        (Some(2), Some(true))
    );
    assert_eq!(
        knobs["rollout_delay_ms"], 300,
        "other knobs keep their values"
    );
    assert_eq!(k.pods().await.len(), 2);
    for bad in [r#"{"ims_pods": 3}"#, r#"{"no_such_knob": 1}"#, "[]"] {
        let resp = k
            .http
            .post(k.sys.url("/sim/k8s/knobs"))
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
}
