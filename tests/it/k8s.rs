//! The Kubernetes side of the ID-preserving IMS import (`imsflow::k8s::ims`)
//! against csm-sim's Kubernetes API on real Ceph: the pod, the data file
//! names from `app.py`, reads and atomic writes through exec over
//! WebSocket, the rollout restart after which IMS serves the records written
//! under their own ids, and each failure with its message.
use csm_sim::testing::{System, small_spec};
use imsflow::backends::Backends;
use imsflow::connect::Connect;
use imsflow::k8s::Kube;
use imsflow::k8s::exec::ExecError;
use imsflow::k8s::ims::{DATA_DIR, ImsKubeError, ImsPod, ImsWorkload, Table};
use imsflow::k8s::rollout::RolloutStatus;
use imsflow::readback::{ReadBackError, verify_tables};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

struct Site {
    sys: System,
    ims: ImsWorkload,
    backends: Backends,
}

async fn site() -> Site {
    let sys = System::start(&small_spec()).await;
    // What a user configures: the simulator's imsflow.toml names the
    // gateway and the kubeconfig (the admin Secret is read through it too).
    let backends = Connect::default()
        .with_file(&sys.data.path().join("imsflow.toml"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let kube = Kube::from_kubeconfig(&sys.kubeconfig()).unwrap();
    let mut ims = ImsWorkload::new(kube);
    ims.poll_interval = Duration::from_millis(50);
    ims.exec_timeout = Duration::from_secs(30);
    Site { sys, ims, backends }
}

impl Site {
    async fn pod(&self) -> ImsPod {
        self.ims.find_pod().await.unwrap()
    }

    async fn served(&self, path: &str) -> (u16, Value) {
        let r = self.backends.service_get("ims", path).await.unwrap();
        (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::Null),
        )
    }

    /// Restart and wait; the progress messages seen.
    async fn restart_and_wait(&self) -> Vec<String> {
        let restart = self.ims.restart().await.unwrap();
        let mut seen = Vec::new();
        self.ims
            .wait_rollout(&restart, Duration::from_secs(20), |s: &RolloutStatus| {
                seen.push(s.message.clone())
            })
            .await
            .unwrap();
        seen
    }
}

fn image(id: &str, name: &str) -> Value {
    json!({ "id": id, "created": "2024-06-11T09:30:44.812345+00:00", "name": name,
            "link": null, "arch": "x86_64", "metadata": {"origin": "imported"} })
}

/// A table's records plus `extra`, as an import writes the whole file.
async fn with_record(site: &Site, pod: &ImsPod, path: &str, extra: Value) -> Value {
    let bytes = site.ims.read_file(pod, path).await.unwrap();
    let mut records: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    records.push(extra);
    Value::Array(records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_through_exec_come_back_with_their_ids_after_a_rollout_restart() {
    let site = site().await;
    let pod = site.pod().await;
    assert!(pod.name.starts_with("cray-ims-"), "{pod:?}");
    assert_eq!(pod.namespace, "services");

    let files = site.ims.discover_files(&pod, &Table::ALL).await.unwrap();
    // The simulator's store is the oracle for the names (the adapter never
    // hard-codes them).
    let sim_name = |t: csm_sim::ims::store::Table| t.file_name().to_string();
    use csm_sim::ims::store::Table as Sim;
    for (ours, theirs) in [
        (Table::Images, Sim::Images),
        (Table::PublicKeys, Sim::PublicKeys),
        (Table::Recipes, Sim::Recipes),
        (Table::Jobs, Sim::Jobs),
        (Table::DeletedImages, Sim::DeletedImages),
        (Table::DeletedPublicKeys, Sim::DeletedPublicKeys),
        (Table::DeletedRecipes, Sim::DeletedRecipes),
    ] {
        assert_eq!(files.names[&ours], sim_name(theirs), "{ours}");
    }
    let images_path = files.path(Table::Images).unwrap();
    assert_eq!(images_path, format!("{DATA_DIR}/v2.1_images.json"));

    // Read: exactly the bytes on disk.
    let current = site.ims.read_file(&pod, &images_path).await.unwrap();
    assert_eq!(
        current,
        std::fs::read(site.sys.data.path().join("ims/v2.1_images.json")).unwrap()
    );

    // An id and a `created` the IMS API would refuse (422 on POST).
    let new_image = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    let new_key = "0c6d7f1e-7a61-4c8e-9d3b-2f1a5e9b7c10";
    let images = with_record(&site, &pod, &images_path, image(new_image, "imported")).await;
    let keys_path = files.path(Table::PublicKeys).unwrap();
    let keys = with_record(
        &site,
        &pod,
        &keys_path,
        json!({ "id": new_key, "created": "2024-05-02T14:11:07.341020+00:00",
                "name": "admin-key", "public_key": "ssh-ed25519 AAAAC3Nz imported" }),
    )
    .await;
    let jobs_before = std::fs::read(site.sys.data.path().join("ims/v2.4_jobs.json")).unwrap();
    site.ims
        .write_file(&pod, &images_path, &serde_json::to_vec(&images).unwrap())
        .await
        .unwrap();
    site.ims
        .write_file(&pod, &keys_path, &serde_json::to_vec(&keys).unwrap())
        .await
        .unwrap();
    let left: Vec<String> = std::fs::read_dir(site.sys.data.path().join("ims"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("imsflow"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    assert_eq!(
        std::fs::read(site.sys.data.path().join("ims/v2.4_jobs.json")).unwrap(),
        jobs_before,
        "files not written stay as they were"
    );
    assert_eq!(
        site.served(&format!("v3/images/{new_image}")).await.0,
        404,
        "IMS serves from memory until it restarts"
    );

    let progress = site.restart_and_wait().await;
    assert_eq!(
        progress.last().unwrap(),
        "successfully rolled out",
        "{progress:?}"
    );
    assert!(
        progress.len() >= 2,
        "progress is reported while the rollout runs: {progress:?}"
    );

    let written = BTreeMap::from([(Table::Images, images), (Table::PublicKeys, keys)]);
    verify_tables(&site.backends, &written, &Default::default())
        .await
        .unwrap();
    let (status, served) = site.served(&format!("v3/images/{new_image}")).await;
    assert_eq!(status, 200);
    assert_eq!(served["created"], "2024-06-11T09:30:44.812345+00:00");
    assert_eq!(
        site.served(&format!("v3/public-keys/{new_key}")).await.0,
        200
    );
    let new_pod = site.pod().await;
    assert_ne!(new_pod.name, pod.name, "the restart replaced the pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_work_over_the_v5_exec_protocol_too() {
    let site = site().await;
    site.sys.knobs(|k| k.exec_v5 = true);
    let pod = site.pod().await;
    let path = format!("{DATA_DIR}/v2.2_recipes.json");
    let text = br#"[{"id": "r", "created": "2024-01-01T00:00:00+00:00"}]"#;
    site.ims.write_file(&pod, &path, text).await.unwrap();
    assert_eq!(site.ims.read_file(&pod, &path).await.unwrap(), text);
    // An empty file is a write of zero bytes.
    site.sys.knobs(|k| k.exec_v5 = false);
    site.ims.write_file(&pod, &path, b"").await.unwrap();
    assert_eq!(site.ims.read_file(&pod, &path).await.unwrap(), b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_fail_say_how() {
    let site = site().await;
    let pod = site.pod().await;
    let err = site
        .ims
        .read_file(&pod, &format!("{DATA_DIR}/v9_images.json"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, ImsKubeError::Exec(ExecError::CommandFailed { code, .. }) if code == "1")
            && text.contains(&pod.name)
            && text.contains("No such file"),
        "{text}"
    );
    let err = site
        .ims
        .exec(&pod, &["python3", "/tmp/import.py"], None, 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ImsKubeError::Exec(ExecError::CommandFailed { code, .. }) if code == "127"),
        "{err}"
    );
    let err = site
        .ims
        .exec(&pod, &["cat", "/app/src/server/app.py"], None, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ImsKubeError::Exec(ExecError::OutputTooLarge { max: 10, .. })
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ims_pod_is_a_clear_error() {
    let site = site().await;
    site.sys.knobs(|k| k.ims_pods = 0);
    let err = site.ims.find_pod().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImsKubeError::NoPod { .. }), "{text}");
    assert!(
        text.contains("no IMS pod in namespace `services`")
            && text.contains("app.kubernetes.io/instance=cray-ims")
            && text.contains("kubeconfig"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ims_pods_are_a_clear_error_naming_both() {
    let site = site().await;
    site.sys.knobs(|k| k.ims_pods = 2);
    let err = site.ims.find_pod().await.unwrap_err();
    let text = err.to_string();
    let ImsKubeError::PodCount { found, .. } = &err else {
        panic!("{text}")
    };
    assert!(found.starts_with("2: cray-ims-"), "{found}");
    assert_eq!(found.matches("(Running)").count(), 2, "{found}");
    assert!(
        text.contains("exactly one Running IMS pod") && text.contains("rollout status"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forbidden_is_a_clear_error() {
    let site = site().await;
    site.sys.knobs(|k| k.exec_forbidden = true);
    let pod = site.pod().await;
    let err = site
        .ims
        .discover_files(&pod, &Table::IMPORTED)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ImsKubeError::Exec(ExecError::Forbidden { .. })),
        "{text}"
    );
    assert!(
        text.contains(&format!("exec into pod services/{} is forbidden", pod.name))
            && text.contains("`create` on `pods/exec`"),
        "{text}"
    );
    assert!(!text.contains("Status {"), "no Debug form: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_never_becomes_ready_times_out_with_its_state() {
    let site = site().await;
    site.sys.knobs(|k| {
        k.rollout_never_ready = true;
        k.rollout_delay_ms = 200;
    });
    let restart = site.ims.restart().await.unwrap();
    let mut seen = Vec::new();
    let err = site
        .ims
        .wait_rollout(&restart, Duration::from_secs(2), |s| {
            seen.push(s.message.clone())
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    let ImsKubeError::RolloutTimeout { status, .. } = &err else {
        panic!("{text}")
    };
    assert!(!status.done);
    assert!(
        text.contains("deployment services/cray-ims did not finish its rollout within 2s")
            && text.contains("old replicas pending termination")
            && text.contains("kubectl -n services describe pods"),
        "{text}"
    );
    assert!(
        seen.iter().any(|m| m.contains("observed")),
        "the wait saw the new generation before it was observed: {seen:?}"
    );
    // Meanwhile the pod list holds the new, Pending pod: a second import
    // would refuse to start.
    let err = site.ims.find_pod().await.unwrap_err().to_string();
    assert!(
        err.contains("(Pending)") && err.contains("(Running)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_race_is_detected_after_the_restart() {
    let site = site().await;
    site.sys.knobs(|k| k.race_on_rollout = true);
    let pod = site.pod().await;
    let files = site
        .ims
        .discover_files(&pod, &Table::IMPORTED)
        .await
        .unwrap();
    let path = files.path(Table::Images).unwrap();
    let new_image = "aa0e8400-e29b-41d4-a716-446655440000";
    let images = with_record(&site, &pod, &path, image(new_image, "imported")).await;
    site.ims
        .write_file(&pod, &path, &serde_json::to_vec(&images).unwrap())
        .await
        .unwrap();
    site.restart_and_wait().await;
    let written = BTreeMap::from([(Table::Images, images)]);
    let err = verify_tables(&site.backends, &written, &Default::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    let ReadBackError::Mismatch { table, missing, .. } = &err else {
        panic!("{text}")
    };
    assert_eq!(
        (*table, missing.as_slice()),
        (Table::Images, [new_image.to_string()].as_slice())
    );
    assert!(text.contains("race") && text.contains(new_image), "{text}");
}

/// An HTTPS Kubernetes API on loopback with the test CA's certificate: it
/// serves the `admin-client-auth` Secret and records the Authorization
/// header of each request.
fn fake_tls_kube() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let config = crate::net::test_tls_server_config();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let record = seen.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { return };
            let (config, record) = (config.clone(), record.clone());
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, sock);
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                if let Some(auth) = head.lines().find_map(|l| l.strip_prefix("authorization: ")) {
                    record.lock().unwrap().push(auth.trim().to_string());
                }
                let body = r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"admin-client-auth"},"data":{"client-secret":"czNjcjN0"}}"#;
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (url, seen)
}

fn tls_kubeconfig(dir: &std::path::Path, server: &str, ca: Option<&str>) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let ca = ca
        .map(|c| format!("    certificate-authority: {c}\n"))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nclusters:\n- name: k\n  cluster:\n    server: {server}\n{ca}users:\n- name: u\n  user: {{tokenFile: secrets/token}}\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_naming_a_ca_file_and_a_token_file_reaches_a_tls_api() {
    let (url, seen) = fake_tls_kube();
    let dir = tempfile::tempdir().unwrap();
    // Files named relative to the kubeconfig, as kubectl reads them.
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("ca.pem"), crate::net::TEST_CA).unwrap();
    std::fs::write(dir.path().join("secrets/token"), "file-token\n").unwrap();
    let kube = Kube::from_kubeconfig(&tls_kubeconfig(dir.path(), &url, Some("ca.pem"))).unwrap();
    let secret = kube
        .secret_value("default", "admin-client-auth", "client-secret")
        .await
        .unwrap();
    assert_eq!(secret, "s3cr3t");
    assert_eq!(seen.lock().unwrap().as_slice(), ["Bearer file-token"]);

    // Without the site's CA, the API's certificate is refused.
    let kube = Kube::from_kubeconfig(&tls_kubeconfig(dir.path(), &url, None)).unwrap();
    let err = kube
        .secret_value("default", "admin-client-auth", "client-secret")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1, "no request went out");

    // A CA file that is missing is named.
    let err = Kube::from_kubeconfig(&tls_kubeconfig(dir.path(), &url, Some("nope.pem")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.pem"), "{err}");
}
