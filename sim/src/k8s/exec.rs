//! The IMS pod's `pods/exec`, over WebSocket in Kubernetes' channel
//! protocol: each binary message starts with its channel (0 stdin, 1 stdout,
//! 2 stderr, 3 the exit `Status` as JSON, 4 resize; 255 closes a channel in
//! v5). CSM's Kubernetes speaks `v4.channel.k8s.io`; `v5.channel.k8s.io`
//! (Kubernetes 1.30+, which can close stdin) is offered when the knob says so.
//!
//! The commands are a small set, run on a filesystem of two places:
//! `/var/ims/data` (csm-sim's IMS data directory) and a read-only
//! `/app/src/server/app.py` naming the data files as IMS's module does.
//! Anything else is "not found" (exit 127), as in a container without it.
use super::cluster::{CONTAINER, NAMESPACE};
use crate::SimState;
use crate::ims::store::Table;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use sha2::Digest;
use std::path::PathBuf;
use std::sync::Arc;

pub const DATA_DIR: &str = "/var/ims/data";
pub const APP_PY: &str = "/app/src/server/app.py";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;
/// Largest stdout/stderr message sent.
const FRAME: usize = 32 << 10;
/// Largest stdin a command accepts (a data file is far smaller).
const MAX_STDIN: usize = 256 << 20;

/// The module text IMS tools read the data file names from. Like IMS's
/// own, it names each file once where it loads it, and a comment names
/// some again (HPE's tool must skip comments and duplicates).
pub fn app_py() -> String {
    let mut text = String::from(
        "\"\"\"csm-sim: the part of IMS's application module that tools read.\"\"\"\n\n\
         import os\n\n\
         # Tools find the data files by the names quoted below ('v2_public_keys.json',\n\
         # 'v2.1_images.json' and the others), so keep them literal.\n\n\
         def load_datastore(_app):\n    \"\"\" Loads the IMS data files. \"\"\"\n",
    );
    for table in Table::ALL {
        let key = match table {
            Table::PublicKeys => "public_keys",
            Table::Recipes => "recipes",
            Table::Images => "images",
            Table::Jobs => "jobs",
            Table::DeletedPublicKeys => "deleted_public_keys",
            Table::DeletedRecipes => "deleted_recipes",
            Table::DeletedImages => "deleted_images",
        };
        text.push_str(&format!(
            "    _app.data['{key}'] = DataStore(\n        os.path.join(_app.config['HACK_DATA_STORE'], '{}'), 'id')\n",
            table.file_name()
        ));
    }
    text.push_str(
        "    _app.data['remote_build_nodes'] = DataStore(\n        os.path.join(_app.config['HACK_DATA_STORE'], 'v2.0_remote_build_nodes.json'), 'xname')\n",
    );
    text
}

/// `GET`/`POST .../namespaces/{ns}/pods/{name}/exec?command=..&container=..&stdin=..`
pub async fn exec(
    State(s): State<Arc<SimState>>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let (pod, knobs) = {
        let c = s.cluster.lock().unwrap();
        let pod = (ns == NAMESPACE).then(|| c.find_pod(&name)).flatten();
        (pod, c.knobs.clone())
    };
    let Some(pod) = pod else {
        return super::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        );
    };
    let asked = super::authz::Attributes::new("create", "", "pods", "exec", &ns);
    if !super::authz::permits(&knobs, &asked) {
        return super::authz::forbidden(&asked, "pods", &name);
    }
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let flag = |k: &str| matches!(param(k), Some("true" | "1"));
    let command: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let bad = |m: String| super::status(StatusCode::BAD_REQUEST, "BadRequest", m);
    if let Some(c) = param("container")
        && c != CONTAINER
    {
        return bad(format!("container {c} is not valid for pod {name}"));
    }
    if command.is_empty() {
        return bad("you must specify at least 1 command".into());
    }
    if !pod.running {
        return bad(format!(
            "container \"{CONTAINER}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        ));
    }
    if !(flag("stdout") || flag("stderr") || flag("stdin")) {
        return bad("you must specify at least one of stdin, stdout, stderr".into());
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return bad(format!("Upgrade request required: {e}")),
    };
    let offered: &[&'static str] = if knobs.exec_v5 {
        &["v5.channel.k8s.io", "v4.channel.k8s.io"]
    } else {
        &["v4.channel.k8s.io"]
    };
    let ws = ws.protocols(offered.iter().copied());
    let Some(protocol) = ws.selected_protocol().cloned() else {
        return bad(format!(
            "none of the requested subprotocols is supported (this server speaks {})",
            offered.join(", ")
        ));
    };
    let v5 = protocol == "v5.channel.k8s.io";
    let streams = Streams {
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr"),
    };
    let dir = s.data.join("ims");
    tracing::info!("exec in pod {name}: {command:?}");
    ws.on_upgrade(move |socket| session(socket, v5, streams, dir, command))
}

#[derive(Debug, Clone, Copy)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

async fn session(
    mut socket: WebSocket,
    v5: bool,
    streams: Streams,
    dir: PathBuf,
    argv: Vec<String>,
) {
    // The API server opens each channel with a one-byte message.
    for (open, channel) in [
        (streams.stdout, STDOUT),
        (streams.stderr, STDERR),
        (true, STATUS),
    ] {
        if open && socket.send(binary(vec![channel])).await.is_err() {
            return;
        }
    }
    let fs = Fs { dir };
    let outcome = match argv[0].as_str() {
        "dd" => match Dd::parse(&argv[1..]) {
            Ok(dd) => {
                let input = if streams.stdin {
                    read_stdin(&mut socket, v5, dd.count).await
                } else {
                    Vec::new()
                };
                fs.dd(&dd, &input)
            }
            Err(e) => Outcome::fail(1, format!("dd: {e}\n")),
        },
        _ => fs.run(&argv),
    };
    let mut frames = Vec::new();
    if streams.stdout {
        frames.extend(outcome.stdout.chunks(FRAME).map(|c| framed(STDOUT, c)));
    }
    if streams.stderr {
        frames.extend(outcome.stderr.chunks(FRAME).map(|c| framed(STDERR, c)));
    }
    let status = if outcome.code == 0 {
        json!({ "metadata": {}, "status": "Success" })
    } else {
        json!({ "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {}", outcome.code),
            "reason": "NonZeroExitCode",
            "details": { "causes": [{ "reason": "ExitCode", "message": outcome.code.to_string() }] } })
    };
    frames.push(framed(STATUS, &serde_json::to_vec(&status).unwrap()));
    for f in frames {
        if socket.send(f).await.is_err() {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

fn binary(v: Vec<u8>) -> Message {
    Message::Binary(v.into())
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    binary(v)
}

/// Stdin until `count` bytes, a v5 close of channel 0, or the end of the
/// connection (all a v4 client can do to signal the end).
async fn read_stdin(socket: &mut WebSocket, v5: bool, count: Option<usize>) -> Vec<u8> {
    let mut input = Vec::new();
    let limit = count.unwrap_or(MAX_STDIN).min(MAX_STDIN);
    while input.len() < limit {
        match socket.recv().await {
            Some(Ok(Message::Binary(b))) => match b.first() {
                Some(&STDIN) => input.extend_from_slice(&b[1..]),
                Some(&CLOSE) if v5 && b.get(1) == Some(&STDIN) => break,
                _ => {}
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    input.truncate(limit);
    input
}

#[derive(Debug, Default)]
struct Outcome {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: i32,
}

impl Outcome {
    fn ok(stdout: Vec<u8>) -> Outcome {
        Outcome {
            stdout,
            ..Outcome::default()
        }
    }
    fn fail(code: i32, stderr: String) -> Outcome {
        Outcome {
            stderr: stderr.into_bytes(),
            code,
            ..Outcome::default()
        }
    }
}

/// `dd of=PATH [bs=N] [count=N] [iflag=count_bytes,fullblock] [status=none]`.
#[derive(Debug)]
struct Dd {
    of: String,
    /// Bytes to read (None: until the end of stdin).
    count: Option<usize>,
}

impl Dd {
    fn parse(args: &[String]) -> Result<Dd, String> {
        let (mut of, mut bs, mut count, mut count_bytes) = (None, 512usize, None, false);
        for a in args {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| format!("unrecognized operand '{a}'"))?;
            let number = || {
                v.parse::<usize>()
                    .map_err(|_| format!("invalid number: '{v}'"))
            };
            match k {
                "of" => of = Some(v.to_string()),
                "bs" => bs = number()?,
                "count" => count = Some(number()?),
                "iflag" => {
                    for f in v.split(',') {
                        match f {
                            "count_bytes" => count_bytes = true,
                            "fullblock" => {}
                            _ => return Err(format!("invalid input flag: '{f}'")),
                        }
                    }
                }
                "status" if v == "none" || v == "noxfer" => {}
                _ => return Err(format!("unsupported operand '{a}'")),
            }
        }
        Ok(Dd {
            of: of.ok_or("this simulator's dd needs of=")?,
            count: count.map(|c| if count_bytes { c } else { c * bs }),
        })
    }
}

struct Fs {
    dir: PathBuf,
}

/// Where a pod path lives.
enum Place {
    AppPy,
    Data(PathBuf),
}

impl Fs {
    fn place(&self, path: &str) -> Result<Place, String> {
        if path == APP_PY {
            return Ok(Place::AppPy);
        }
        match path
            .strip_prefix(DATA_DIR)
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(name)
                if !name.is_empty()
                    && name != "."
                    && name != ".."
                    && !name.contains(['/', '\0']) =>
            {
                Ok(Place::Data(self.dir.join(name)))
            }
            _ => Err(format!("{path}: No such file or directory")),
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        match self.place(path)? {
            Place::AppPy => Ok(app_py().into_bytes()),
            Place::Data(p) => std::fs::read(p).map_err(|e| format!("{path}: {}", io_text(&e))),
        }
    }

    fn writable(&self, path: &str) -> Result<PathBuf, String> {
        match self.place(path)? {
            Place::AppPy => Err(format!("{path}: Read-only file system")),
            Place::Data(p) => Ok(p),
        }
    }

    fn run(&self, argv: &[String]) -> Outcome {
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        let cmd = argv[0].as_str();
        let result = match (cmd, args.as_slice()) {
            ("cat", files) if !files.is_empty() => files
                .iter()
                .map(|f| self.read(f))
                .collect::<Result<Vec<_>, _>>()
                .map(|parts| parts.concat()),
            ("sha256sum", [file]) => self.read(file).map(|bytes| {
                format!("{}  {file}\n", hex::encode(sha2::Sha256::digest(&bytes))).into_bytes()
            }),
            ("mv", [src, dst]) | ("mv", ["-f", src, dst]) => self
                .writable(src)
                .and_then(|s| Ok((s, self.writable(dst)?)))
                .and_then(|(s, d)| {
                    std::fs::rename(s, d)
                        .map_err(|e| format!("can't rename '{src}': {}", io_text(&e)))
                })
                .map(|()| Vec::new()),
            ("rm", ["-f", file]) => self.writable(file).map(|p| {
                let _ = std::fs::remove_file(p);
                Vec::new()
            }),
            ("ls", [dir]) if dir.trim_end_matches('/') == DATA_DIR => {
                let mut names: Vec<String> = std::fs::read_dir(&self.dir)
                    .map(|rd| {
                        rd.filter_map(Result::ok)
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                Ok(names
                    .iter()
                    .map(|n| format!("{n}\n"))
                    .collect::<String>()
                    .into_bytes())
            }
            ("cat" | "sha256sum" | "mv" | "rm" | "ls", _) => {
                return Outcome::fail(1, format!("{cmd}: unsupported arguments {args:?}\n"));
            }
            _ => {
                return Outcome::fail(
                    127,
                    format!("exec: \"{cmd}\": executable file not found in $PATH\n"),
                );
            }
        };
        match result {
            Ok(out) => Outcome::ok(out),
            Err(e) => Outcome::fail(1, format!("{cmd}: {e}\n")),
        }
    }

    fn dd(&self, dd: &Dd, input: &[u8]) -> Outcome {
        match self
            .writable(&dd.of)
            .and_then(|p| std::fs::write(p, input).map_err(|e| io_text(&e)))
        {
            Ok(()) => Outcome::ok(Vec::new()),
            Err(e) => Outcome::fail(1, format!("dd: can't open '{}': {e}\n", dd.of)),
        }
    }
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".into(),
        _ => e.to_string(),
    }
}

/// The JSON of `GET .../pods` (a PodList of the IMS pods matching the selector).
pub fn pod_list(s: &SimState, ns: &str, selector: Option<&String>) -> Value {
    let c = s.cluster.lock().unwrap();
    let items: Vec<Value> = if ns == NAMESPACE {
        c.pods()
            .iter()
            .map(|p| c.pod_json(p))
            .filter(|p| super::selector_matches(p, selector))
            .collect()
    } else {
        Vec::new()
    };
    json!({ "kind": "PodList", "apiVersion": "v1", "metadata": { "resourceVersion": "1" }, "items": items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> (tempfile::TempDir, Fs) {
        let d = tempfile::tempdir().unwrap();
        let fs = Fs {
            dir: d.path().to_path_buf(),
        };
        (d, fs)
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_stay_in_the_data_directory() {
        let (_d, fs) = fs();
        for bad in [
            "/var/ims/data/../sim.json",
            "/var/ims/data/a/b",
            "/var/ims/data/",
            "/var/ims/data",
            "/etc/passwd",
            "/var/ims/dataX",
            "/var/ims/data/..",
        ] {
            let out = fs.run(&argv(&["cat", bad]));
            assert_eq!(out.code, 1, "{bad}");
        }
        let out = fs.run(&argv(&["mv", APP_PY, "/var/ims/data/x"]));
        assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only"));
    }

    #[test]
    fn unknown_commands_exit_127() {
        let (_d, fs) = fs();
        let out = fs.run(&argv(&["python3", "-c", "print(1)"]));
        assert_eq!(out.code, 127);
        assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    }

    #[test]
    fn dd_counts_bytes_or_blocks() {
        let dd = Dd::parse(&argv(&[
            "of=/var/ims/data/x",
            "bs=65536",
            "count=10",
            "iflag=count_bytes,fullblock",
            "status=none",
        ]))
        .unwrap();
        assert_eq!(dd.count, Some(10));
        let dd = Dd::parse(&argv(&["of=/x", "bs=2", "count=3"])).unwrap();
        assert_eq!(dd.count, Some(6));
        assert!(Dd::parse(&argv(&["if=/y", "of=/x"])).is_err());
    }

    #[test]
    fn app_py_names_every_data_file() {
        let text = app_py();
        for t in Table::ALL {
            assert!(text.contains(&format!("'{}'", t.file_name())));
        }
    }
}
