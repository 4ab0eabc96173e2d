//! Network hardening, as a hostile plugin, server or network would test it: a service grant
//! cannot be escaped, no answer is read unbounded and no server can hang a
//! run, errors carry their cause and no secret, and S3 trusts the site CA.
//! Servers here are fakes on loopback that record what reached them.
use crate::support::*;
use imsflow::backends::{BackendError, Backends, ServiceClient};
use imsflow::connect::{Connect, ConnectError};
use imsflow::k8s::{Kube, KubeError};
use imsflow::net::Timeouts;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a fake server does with each request.
#[derive(Clone)]
enum Answer {
    /// This status and JSON body.
    Json(u16, String),
    /// 200 without a length, `bytes` of body, then nothing more: the
    /// connection stays open, as a server streaming forever would keep it.
    Stream { bytes: usize },
    /// Reads the request and never answers.
    Silent,
    /// Reads the request and resets the connection.
    Reset,
}

/// A fake HTTP server on loopback, with the request lines it received.
struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    async fn start(answer: Answer) -> Fake {
        Fake::start_with(move |_| answer.clone()).await
    }

    /// `answer` picks the answer from the request line.
    async fn start_with(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let recorded = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (recorded, answer) = (recorded.clone(), answer.clone());
                tokio::spawn(async move { serve(sock, &*answer, &recorded).await });
            }
        });
        Fake { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    mut sock: TcpStream,
    answer: &(dyn Fn(&str) -> Answer + Send + Sync),
    seen: &Mutex<Vec<String>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    seen.lock().unwrap().push(line.clone());
    match answer(&line) {
        Answer::Json(status, body) => {
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
        Answer::Stream { bytes } => {
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
                .await;
            let chunk = vec![b'a'; 64 << 10];
            let mut sent = 0;
            while sent < bytes {
                let n = chunk.len().min(bytes - sent);
                if sock.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                sent += n;
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        Answer::Silent => {
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        Answer::Reset => {
            let _ = sock.set_zero_linger();
            drop(sock);
        }
    }
}

/// A loopback URL where nothing listens.
async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn gateway(url: &str) -> ServiceClient {
    ServiceClient {
        http: csm_sim::testing::http_client(),
        gateway: url.to_string(),
        token: Some("admin-token".into()),
    }
}

/// A kubeconfig for `server`, written into `dir`.
fn kubeconfig(dir: &Path, server: &str, insecure: bool) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nclusters:\n- name: k\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: {insecure}\nusers:\n- name: u\n  user: {{token: kube-token}}\n"
        ),
    )
    .unwrap();
    path
}

fn kube(dir: &Path, server: &str) -> Kube {
    Kube::from_kubeconfig(&kubeconfig(dir, server, false)).unwrap()
}

/// The verdicts of the `escape` test plugin for `calls` (`[service, path]`),
/// granted ims and product-catalog.
async fn escape(backends: Backends, calls: &[(&str, &str)]) -> Vec<String> {
    let calls: Vec<String> = calls
        .iter()
        .map(|(service, path)| {
            // JSON strings are TOML basic strings, escapes included.
            format!(
                "[{}, {}]",
                serde_json::to_string(service).unwrap(),
                serde_json::to_string(path).unwrap()
            )
        })
        .collect();
    let s = Scratch::new();
    let wf = s.workflow(&format!(
        "version = 1\nname = \"t\"\ndescription = \"\"\n[[steps]]\nid = \"e\"\nplugin = \"@PLUGINS@/escape.wasm\"\nwith = {{ calls = [{}] }}\n[steps.grants]\nservices = [\"ims\", \"product-catalog\"]\n",
        calls.join(", ")
    ));
    let report = run_with(runtime(), backends, &wf, &[], true)
        .await
        .unwrap_or_else(|e| panic!("the escape step failed: {e}"));
    serde_json::from_value(report.steps[0].output["verdicts"].clone()).unwrap()
}

fn assert_all_denied(calls: &[(&str, &str)], verdicts: &[String]) {
    for ((_, path), verdict) in calls.iter().zip(verdicts) {
        assert!(
            verdict.starts_with("denied: "),
            "`{path}` was not refused: {verdict}"
        );
    }
}

// A service grant cannot be escaped: a `..` in a plugin's path would reach
// every API behind the gateway with the admin token.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_dot_service_path_is_denied() {
    let gw = Fake::start(Answer::Json(200, "[]".into())).await;
    let backends = Backends {
        services: Some(gateway(&gw.url)),
        ..Default::default()
    };
    let hostile = [
        ("ims", "../bos/v2/sessiontemplates"),
        ("ims", "../../anything"),
        ("ims", "v3/images/../../bos/v2/sessiontemplates"),
        ("ims", "%2e%2e/bos/v2/sessiontemplates"),
        ("ims", "%2E%2e/%2e%2E/anything"),
        ("ims", ".%2e/bos/v2/sessiontemplates"),
        ("ims", "v3/./../../bos"),
        ("ims", "%252e%252e/bos/v2/sessiontemplates"),
        ("ims", "..%2fbos%2fv2%2fsessiontemplates"),
        ("ims", "v3\\..\\..\\bos\\v2\\sessiontemplates"),
        ("ims", ".\t./bos/v2/sessiontemplates"),
        ("ims", "..\n/bos/v2/sessiontemplates"),
    ];
    let mut calls = hostile.to_vec();
    calls.push(("ims", "v3/images"));
    let verdicts = escape(backends, &calls).await;
    assert_all_denied(&hostile, &verdicts);
    assert!(
        verdicts[hostile.len()..] == ["ok: 200"],
        "the honest call: {verdicts:?}"
    );
    // Nothing but the honest call reached the gateway.
    assert_eq!(gw.seen(), ["GET /apis/ims/v3/images HTTP/1.1"]);
    assert!(
        verdicts[0].contains("`.` and `..` segments are not allowed"),
        "{}",
        verdicts[0]
    );
    // The plugin's path is echoed escaped: it cannot forge output lines.
    assert!(
        verdicts[11].contains("path `..\\n/bos/v2/sessiontemplates`"),
        "{}",
        verdicts[11]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_or_fragment_in_a_service_path_is_denied() {
    let gw = Fake::start(Answer::Json(200, "[]".into())).await;
    let backends = Backends {
        services: Some(gateway(&gw.url)),
        ..Default::default()
    };
    let hostile = [
        ("ims", "v3/images?x"),
        ("ims", "v3/images#x"),
        ("ims", "?x"),
        ("ims", "#x"),
        ("ims", "v3/images%3Fx"),
        ("ims", "v3/images%23x"),
    ];
    let verdicts = escape(backends, &hostile).await;
    assert_all_denied(&hostile, &verdicts);
    assert!(
        verdicts[0].contains("no query or fragment"),
        "{}",
        verdicts[0]
    );
    assert!(gw.seen().is_empty(), "{:?}", gw.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_configmap_name_outside_lowercase_digits_dots_and_dashes_is_denied() {
    let api = Fake::start(Answer::Json(200, "{}".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        kube: Some(kube(dir.path(), &api.url)),
        ..Default::default()
    };
    let hostile = [
        (
            "product-catalog",
            "configmaps/cray-product-catalog\\..\\..\\secrets\\admin-client-auth",
        ),
        (
            "product-catalog",
            "configmaps/cray-product-catalog%2F..%2F..%2Fsecrets%2Fadmin-client-auth",
        ),
        ("product-catalog", "configmaps/cray-product-catalog?watch=1"),
        ("product-catalog", "configmaps/cray-product-catalog#x"),
        ("product-catalog", "configmaps/cray-product-catalog-SAT"),
        ("product-catalog", "configmaps/cray-product-catalog\t"),
    ];
    let mut calls = hostile.to_vec();
    calls.push(("product-catalog", "configmaps/cray-product-catalog-sat.1"));
    let verdicts = escape(backends, &calls).await;
    assert_all_denied(&hostile, &verdicts);
    assert_eq!(verdicts[hostile.len()], "ok: 200", "{verdicts:?}");
    assert_eq!(
        api.seen(),
        ["GET /api/v1/namespaces/services/configmaps/cray-product-catalog-sat.1 HTTP/1.1"]
    );
}

// Bodies are read with a running cap, and no server hangs a run: an answer
// streaming forever would exhaust memory, and a silent server hang the run.

/// Runs `f`, failing the test if it takes longer than `limit`.
async fn within<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("still waiting after {limit:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_answer_streaming_forever_is_cut_at_the_cap() {
    let gw = Fake::start(Answer::Stream {
        bytes: (64 << 20) + (1 << 20),
    })
    .await;
    let backends = Backends {
        services: Some(gateway(&gw.url)),
        ..Default::default()
    };
    let err = within(
        Duration::from_secs(30),
        backends.service_get("ims", "v3/images"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BackendError::TooLarge(n) if n == 64 << 20),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_answer_streaming_forever_is_cut_at_the_cap() {
    let api = Fake::start(Answer::Stream {
        bytes: (64 << 20) + (1 << 20),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let err = within(
        Duration::from_secs(30),
        kube(dir.path(), &api.url).get("/api/v1/namespaces/services/configmaps"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KubeError::TooLarge { .. }), "{err}");
}

/// Settings that reach Keycloak at `gateway` for a token, with the admin
/// Secret from a fake Kubernetes API, and S3 given (no STS).
fn keycloak_settings(dir: &Path, gateway: &str, kube_api: &str) -> Connect {
    Connect {
        gateway: Some(gateway.into()),
        kubeconfig: Some(kubeconfig(dir, kube_api, false)),
        s3_endpoint: Some("http://127.0.0.1:1".into()),
        s3_access_key: Some("ak".into()),
        s3_secret_key: Some("sk".into()),
        ..Default::default()
    }
}

async fn admin_secret_api() -> Fake {
    // base64("s3cr3t")
    Fake::start(Answer::Json(
        200,
        r#"{"data":{"client-secret":"czNjcjN0"}}"#.into(),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keycloak_answer_streaming_forever_is_cut_at_the_cap() {
    let api = admin_secret_api().await;
    let gw = Fake::start(Answer::Stream { bytes: 2 << 20 }).await;
    let dir = tempfile::tempdir().unwrap();
    let err = within(
        Duration::from_secs(30),
        keycloak_settings(dir.path(), &gw.url, &api.url).connect(),
    )
    .await
    .err()
    .expect("refused");
    let message = err.to_string();
    assert!(
        matches!(err, ConnectError::Token { .. }) && message.contains("larger than"),
        "{message}"
    );
}

/// The request timeout these tests set: what they prove holds for any.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_kubernetes_api_times_out() {
    let api = Fake::start(Answer::Silent).await;
    let dir = tempfile::tempdir().unwrap();
    let timeouts = Timeouts {
        request: REQUEST_TIMEOUT,
        ..Timeouts::default()
    };
    let kube =
        Kube::from_kubeconfig_with(&kubeconfig(dir.path(), &api.url, false), &timeouts).unwrap();
    let err = within(
        REQUEST_TIMEOUT + Duration::from_secs(15),
        kube.get("/api/v1/namespaces/services/configmaps"),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("timed out"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_keycloak_times_out() {
    let api = admin_secret_api().await;
    let gw = Fake::start(Answer::Silent).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Connect {
        request_timeout: Some(REQUEST_TIMEOUT.as_secs()),
        ..keycloak_settings(dir.path(), &gw.url, &api.url)
    };
    let err = within(
        REQUEST_TIMEOUT + Duration::from_secs(15),
        settings.connect(),
    )
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains("Keycloak token") && err.contains("timed out"),
        "{err}"
    );
}

// The whole error chain, and no Rust Debug form: the user must see the cause
// ("connection refused"), not "error sending request".

fn assert_no_debug_form(message: &str) {
    for debug in [
        "Failed(",
        "HostError",
        "Os {",
        "kind:",
        "Error {",
        "DispatchFailure",
        "source:",
    ] {
        assert!(
            !message.contains(debug),
            "a Debug form reached the user: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_says_connection_refused() {
    let url = refused_url().await;
    let backends = Backends {
        services: Some(gateway(&url)),
        ..Default::default()
    };
    // As the plugin sees it, and so as the user does when it fails.
    let verdicts = escape(backends, &[("ims", "v3/images")]).await;
    let verdict = &verdicts[0];
    assert!(
        verdict.starts_with(&format!("failed: GET {url}/apis/ims/v3/images: "))
            && verdict.contains("Connection refused"),
        "{verdict}"
    );
    assert_no_debug_form(verdict);

    let dir = tempfile::tempdir().unwrap();
    let err = kube(dir.path(), &url)
        .get("/api/v1/namespaces/services/configmaps")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Connection refused"), "{err}");
    assert_no_debug_form(&err);

    let api = admin_secret_api().await;
    let err = keycloak_settings(dir.path(), &url, &api.url)
        .connect()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("Keycloak token") && err.contains("Connection refused"),
        "{err}"
    );
    assert_no_debug_form(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_says_reset() {
    let gw = Fake::start(Answer::Reset).await;
    let backends = Backends {
        services: Some(gateway(&gw.url)),
        ..Default::default()
    };
    let err = backends
        .service_get("ims", "v3/images")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("reset"), "{err}");
    assert_no_debug_form(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_error_names_its_cause_without_a_debug_form() {
    let store = imsflow::s3::S3Store::new(&imsflow::s3::S3Settings {
        endpoint: refused_url().await,
        access_key: "ak".into(),
        secret_key: "sk".into(),
        session_token: None,
        ca: None,
    });
    let err = within(Duration::from_secs(60), store.head("bucket", "key"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("S3 HEAD s3://bucket/key: ") && err.contains("Connection refused"),
        "{err}"
    );
    assert_no_debug_form(&err);
}

// No secret in a message: not from a config line, the gateway's userinfo or a
// Debug form.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_error_does_not_print_the_gateway_userinfo() {
    let url = refused_url().await;
    let with_userinfo = url.replace("http://", "http://admin:hunter2@");
    let backends = Backends {
        services: Some(gateway(&with_userinfo)),
        ..Default::default()
    };
    let err = backends
        .service_get("ims", "v3/images")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("hunter2") && !err.contains("admin:") && err.contains(&url),
        "{err}"
    );
}

#[test]
fn a_config_file_parse_error_does_not_quote_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imsflow.toml");
    std::fs::write(
        &path,
        "gateway = \"https://gw\"\ns3_secret_key = \"hunter2-is-my-secret\nx = 1\n",
    )
    .unwrap();
    let err = Connect::default().with_file(&path).unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("line 2"), "{err}");

    std::fs::write(&path, "token = \"tok-hunter2\"\ntoken = \"tok-hunter2\"\n").unwrap();
    let err = Connect::default().with_file(&path).unwrap_err().to_string();
    assert!(!err.contains("hunter2") && err.contains("line 2"), "{err}");
}

#[test]
fn connect_debug_does_not_show_the_token_or_the_secret_key() {
    let c = Connect {
        gateway: Some("https://admin:gw-password@gw".into()),
        token: Some("the-bearer-token".into()),
        s3_access_key: Some("AKID".into()),
        s3_secret_key: Some("the-secret-key".into()),
        ..Default::default()
    };
    let debug = format!("{c:?}");
    for secret in ["the-bearer-token", "the-secret-key", "gw-password"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(
        debug.contains("AKID") && debug.contains("<redacted>"),
        "{debug}"
    );
}

// TLS: the site CA applies to S3 as to the gateway (an RGW behind a private
// CA), and an insecure kubeconfig is warned about before a secret is read.

/// A private CA and a certificate it signed for 127.0.0.1 and localhost,
/// valid 2000 to 2100 (made with `openssl ca`).
pub(crate) const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBeDCCAR6gAwIBAgICEAAwCgYIKoZIzj0EAwIwIjEgMB4GA1UEAwwXaW1zZmxv
dyB0ZXN0IHByaXZhdGUgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAw
MDBaMCIxIDAeBgNVBAMMF2ltc2Zsb3cgdGVzdCBwcml2YXRlIENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEH66ObbvflXZiouEzapfpquFYVfPjde6eETjyaJFZ
r69U1X/S/uEMVRNw5RQVYK/TfkW6Tjq6sJtFnrEsGKgrm6NCMEAwDwYDVR0TAQH/
BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFOUtWhf2WLRUYHefAXo4
h3vKw3NaMAoGCCqGSM49BAMCA0gAMEUCIFUs6xfLlzlpsB7FQlfVz+F9NF+tVkvv
0Sjs9mbhz8vsAiEA/rFpxdxYMHtIQIrqjZA4uvO2ntl4qbbJAiAJ5p31ij4=
-----END CERTIFICATE-----
";
pub(crate) const TEST_SERVER_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBuzCCAWGgAwIBAgICEAEwCgYIKoZIzj0EAwIwIjEgMB4GA1UEAwwXaW1zZmxv
dyB0ZXN0IHByaXZhdGUgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAw
MDBaMBQxEjAQBgNVBAMMCTEyNy4wLjAuMTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABBAdLAdIc7x+mxdX4SMWnMPfZRJv8rU1nGyB7BrgOcGF+ageLxvKv5MMOyTv
ybuVpNouRH4AIA8rJWPPXa+D8amjgZIwgY8wGgYDVR0RBBMwEYcEfwAAAYIJbG9j
YWxob3N0MAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoG
CCsGAQUFBwMBMB8GA1UdIwQYMBaAFOUtWhf2WLRUYHefAXo4h3vKw3NaMB0GA1Ud
DgQWBBTx66HP8Lzsd92m8b3l/7TviyL4CTAKBggqhkjOPQQDAgNIADBFAiBJv5rr
xqEJXBmqul6TZaxupaGlrYNFWTu17jx4gkZBlQIhAKPLsv4wKNL2j0YcQYHppm2K
69JNrZaeHKserYBekOJU
-----END CERTIFICATE-----
";
pub(crate) const TEST_SERVER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPfnwcHZvp+GKqcxv
eHI3hGVDM/dICR+DzFddvee3EK6hRANCAAQQHSwHSHO8fpsXV+EjFpzD32USb/K1
NZxsgewa4DnBhfmoHi8byr+TDDsk78m7laTaLkR+ACAPKyVjz12vg/Gp
-----END PRIVATE KEY-----
";

/// A TLS server configuration with the test certificate (signed by the test
/// CA), for the fake HTTPS servers of these tests and of `k8s`.
pub(crate) fn test_tls_server_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(TEST_SERVER_CERT.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(TEST_SERVER_KEY.as_bytes()).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    )
}

/// An HTTPS "S3" on loopback with the test CA's certificate that answers
/// every request with an object's HEAD: enough to prove the handshake.
fn fake_tls_s3() -> String {
    use std::io::{Read, Write};
    let config = test_tls_server_config();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { return };
            let config = config.clone();
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
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"0123\"\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_trusts_the_ca_file() {
    let s3 = fake_tls_s3();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TEST_CA).unwrap();
    let connect = Connect {
        gateway: Some(refused_url().await),
        token: Some("t".into()),
        ca_file: Some(ca),
        kubeconfig: Some(kubeconfig(dir.path(), "http://127.0.0.1:1", false)),
        s3_endpoint: Some(s3),
        s3_access_key: Some("ak".into()),
        s3_secret_key: Some("sk".into()),
        ..Default::default()
    };
    let backends = connect.connect().await.unwrap();
    let head = within(
        Duration::from_secs(30),
        backends.s3().unwrap().head("bucket", "key"),
    )
    .await
    .unwrap_or_else(|e| panic!("HEAD over TLS with the site CA: {e}"))
    .expect("the object");
    assert_eq!((head.size, head.etag.as_str()), (5, "0123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_that_holds_no_usable_certificate_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    for (bad, why) in [
        ("not a certificate\n", "holds no PEM certificate"),
        (
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
            "is not a usable CA",
        ),
    ] {
        std::fs::write(&ca, bad).unwrap();
        let connect = Connect {
            token: Some("t".into()),
            ca_file: Some(ca.clone()),
            kubeconfig: Some(kubeconfig(dir.path(), "http://127.0.0.1:1", false)),
            ..Default::default()
        };
        let err = connect.connect().await.err().expect("refused").to_string();
        assert!(
            err.contains(&format!("CA file {}", ca.display())) && err.contains(why),
            "{err}"
        );
    }
}

/// Log output captured from the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: the log subscriber below is set for this thread.
#[tokio::test]
async fn an_insecure_kubeconfig_warns_before_the_admin_secret_is_read() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let api = admin_secret_api().await;
    let dir = tempfile::tempdir().unwrap();
    let kube = Kube::from_kubeconfig(&kubeconfig(dir.path(), &api.url, true)).unwrap();
    let secret = kube
        .secret_value("default", "admin-client-auth", "client-secret")
        .await
        .unwrap();
    assert_eq!(secret, "s3cr3t");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("WARN")
            && log.contains("reading Secret default/admin-client-auth")
            && log.contains("insecure-skip-tls-verify"),
        "{log}"
    );
}
