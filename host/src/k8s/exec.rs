//! Commands run in a pod's container through exec over WebSocket, as
//! `kubectl exec` does: stdin sent whole, stdout read with a cap, stderr kept
//! for the message, the exit code read from the status, all within a
//! timeout. Generic: what runs where is the caller's (see `ims`).
use super::Kube;
use k8s_openapi::api::core::v1::Pod;
use kube::api::AttachParams;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Largest stderr kept from a command.
const MAX_STDERR: usize = 16 << 10;
/// Exec stream buffers: larger than kube's 1 KiB default, for throughput.
const EXEC_BUFFER: usize = 64 << 10;

/// A container of a pod: where a command runs.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    /// The container's name.
    pub name: &'a str,
}

/// Why a command did not give its output. Each message names the command,
/// the pod, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(
        "exec into pod {namespace}/{pod} is forbidden ({message}): the kubeconfig's user \
         needs `create` on `pods/exec` in namespace `{namespace}` (an NCN's \
         /etc/kubernetes/admin.conf has it)"
    )]
    Forbidden {
        namespace: String,
        pod: String,
        message: String,
    },
    #[error("exec `{command}` in pod {namespace}/{pod}: {message}")]
    Other {
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
    Timeout {
        namespace: String,
        pod: String,
        command: String,
        after: Duration,
    },
}

impl Kube {
    /// Runs `argv` in the container: its stdout (at most `max` bytes) when
    /// it exits 0, within `timeout` (transfer included). `stdin`, when given,
    /// is sent whole and kept open until the command ends.
    pub async fn exec(
        &self,
        at: &Container<'_>,
        argv: &[&str],
        stdin: Option<&[u8]>,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, ExecError> {
        let command = argv.join(" ");
        let err = |message: String| ExecError::Other {
            namespace: at.namespace.to_string(),
            pod: at.pod.to_string(),
            command: command.clone(),
            message,
        };
        let run = async {
            let api: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), at.namespace);
            let params = AttachParams::default()
                .container(at.name)
                .stdin(stdin.is_some())
                .stdout(true)
                .stderr(true)
                .max_stdin_buf_size(EXEC_BUFFER)
                .max_stdout_buf_size(EXEC_BUFFER)
                .max_stderr_buf_size(EXEC_BUFFER);
            let mut process = api
                .exec(at.pod, argv.iter().copied(), &params)
                .await
                .map_err(|e| match &e {
                    kube::Error::Api(s) if s.code == 403 => ExecError::Forbidden {
                        namespace: at.namespace.to_string(),
                        pod: at.pod.to_string(),
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
                    (_, true) => Err(ExecError::OutputTooLarge {
                        namespace: at.namespace.to_string(),
                        pod: at.pod.to_string(),
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
                Some(code) => Err(ExecError::CommandFailed {
                    namespace: at.namespace.to_string(),
                    pod: at.pod.to_string(),
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
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| ExecError::Timeout {
                namespace: at.namespace.to_string(),
                pod: at.pod.to_string(),
                command: command.clone(),
                after: timeout,
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
