//! The host side of a step's store: WASI with nothing granted, and the
//! `imsflow:plugin` imports, each checked against the step's grants.
use crate::backends::Backends;
use crate::bindings::imsflow::plugin::{archive, log, s3, services, types};
pub use crate::workflow::Grants;
use std::sync::Arc;
use types::HostError;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of plugin stdout/stderr kept per call (then logged).
const STDIO_CAPACITY: usize = 1 << 20;
/// Characters of plugin stdout/stderr shown in the log.
const STDIO_LOG_CHARS: usize = 8000;

/// Who is calling and with which grants and backends.
#[derive(Clone)]
pub struct StepAccess {
    pub step: String,
    pub plugin: String,
    pub grants: Grants,
    pub backends: Arc<Backends>,
}

impl StepAccess {
    /// Access for the `describe` call made when loading: nothing granted.
    pub fn describe_only(plugin: &str) -> StepAccess {
        StepAccess {
            step: "(describe)".into(),
            plugin: plugin.into(),
            grants: Grants::default(),
            backends: Arc::new(Backends::default()),
        }
    }

    fn denied(&self, what: String) -> HostError {
        tracing::warn!(step = %self.step, plugin = %self.plugin, "denied: {what}");
        HostError::Denied(format!("step `{}` has no grant for {what}", self.step))
    }
}

/// Enforces the memory limit for the whole step (all memories of all its
/// instances together, not each one) and remembers whether it was hit, so that
/// a guest's abort on allocation failure is reported as "out of memory".
pub struct Limiter {
    memory: u64,
    /// Bytes of linear memory the step holds now, across its memories.
    total: u64,
    pub hit: bool,
}

/// Core instances, memories and tables one step may create. A Rust component
/// has one memory and a handful of instances; more is a plugin working around
/// the memory limit.
const MAX_INSTANCES: usize = 32;
const MAX_MEMORIES: usize = 2;
const MAX_TABLES: usize = 16;

impl Limiter {
    pub fn new(memory: u64) -> Limiter {
        Limiter {
            memory,
            total: 0,
            hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.total - (current as u64).min(self.total)).saturating_add(desired as u64);
        let ok = total <= self.memory;
        if ok {
            self.total = total;
        }
        self.hit |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// Log messages a step call may emit; more are dropped (with one warning).
const MAX_LOG_MESSAGES: u32 = 200;
/// Characters kept of one plugin log message.
const MAX_LOG_CHARS: usize = 2000;

/// Plugin text made safe for a log line: control characters (newlines, ANSI
/// escapes) are escaped, so a plugin cannot forge lines or drive the
/// terminal, and the length is bounded.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push_str("...(truncated)");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    access: StepAccess,
    /// Log messages received in this call.
    logged: u32,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl StepState {
    /// A state with no WASI capability: no preopens, env, args, network or
    /// stdin; stdout/stderr go to bounded buffers that are logged afterwards.
    pub fn new(access: StepAccess, memory: u64) -> (StepState, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let state = StepState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(memory),
            access,
            logged: 0,
            stdout,
            stderr: stderr.clone(),
        };
        (state, stderr)
    }
}

impl Drop for StepState {
    fn drop(&mut self) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = pipe.contents();
            if !text.is_empty() {
                let text = sanitize(String::from_utf8_lossy(&text).trim_end(), STDIO_LOG_CHARS);
                tracing::info!(step = %self.access.step, plugin = %self.access.plugin, stream, "{text}");
            }
        }
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StepState {}

impl log::Host for StepState {
    async fn log(&mut self, level: log::Level, message: String) {
        let (step, plugin) = (&self.access.step, &self.access.plugin);
        self.logged = self.logged.saturating_add(1);
        if self.logged > MAX_LOG_MESSAGES {
            if self.logged == MAX_LOG_MESSAGES + 1 {
                tracing::warn!(%step, %plugin, "the plugin logged more than {MAX_LOG_MESSAGES} messages in one call; the rest are dropped");
            }
            return;
        }
        let message = sanitize(&message, MAX_LOG_CHARS);
        match level {
            log::Level::Trace => tracing::trace!(%step, %plugin, "{message}"),
            log::Level::Debug => tracing::debug!(%step, %plugin, "{message}"),
            log::Level::Info => tracing::info!(%step, %plugin, "{message}"),
            log::Level::Warn => tracing::warn!(%step, %plugin, "{message}"),
            log::Level::Error => tracing::error!(%step, %plugin, "{message}"),
        }
    }
}

impl services::Host for StepState {
    async fn get(
        &mut self,
        service: String,
        path: String,
    ) -> Result<types::ServiceResponse, HostError> {
        if !self.access.grants.services.contains(&service) {
            return Err(self.access.denied(format!("service `{service}`")));
        }
        let r = self.access.backends.service_get(&service, &path).await?;
        Ok(types::ServiceResponse {
            status: r.status,
            body: r.body,
        })
    }
}

impl s3::Host for StepState {
    async fn head(
        &mut self,
        bucket: String,
        key: String,
    ) -> Result<Option<types::ObjectHead>, HostError> {
        self.check_bucket(&bucket)?;
        let head = self.access.backends.s3()?.head(&bucket, &key).await?;
        Ok(head.map(super::convert::object_head))
    }

    async fn list_objects(
        &mut self,
        bucket: String,
        prefix: String,
    ) -> Result<Vec<types::ObjectEntry>, HostError> {
        self.check_bucket(&bucket)?;
        let list = self.access.backends.s3()?.list(&bucket, &prefix).await?;
        Ok(list.into_iter().map(super::convert::object_entry).collect())
    }

    async fn get(
        &mut self,
        bucket: String,
        key: String,
        max_bytes: u64,
    ) -> Result<Vec<u8>, HostError> {
        self.check_bucket(&bucket)?;
        Ok(self
            .access
            .backends
            .s3()?
            .get_small(&bucket, &key, max_bytes)
            .await?)
    }
}

impl StepState {
    fn check_bucket(&self, bucket: &str) -> Result<(), HostError> {
        if self.access.grants.bucket(bucket) {
            Ok(())
        } else {
            Err(self.access.denied(format!("bucket `{bucket}`")))
        }
    }

    fn archive(&self) -> Result<&crate::archive::ArchiveReader, HostError> {
        if !self.access.grants.archive {
            return Err(self.access.denied("the input archive".into()));
        }
        self.access
            .backends
            .archive
            .as_ref()
            .ok_or_else(|| HostError::Failed("this run has no input archive".into()))
    }
}

impl archive::Host for StepState {
    async fn members(&mut self) -> Result<Vec<types::ArchiveMember>, HostError> {
        let reader = self.archive()?;
        Ok(reader
            .members()
            .iter()
            .map(|m| types::ArchiveMember {
                path: m.path.clone(),
                size: m.size,
            })
            .collect())
    }

    async fn read_json(&mut self, path: String, max_bytes: u64) -> Result<String, HostError> {
        let reader = self.archive()?.clone();
        Ok(
            tokio::task::spawn_blocking(move || reader.read_json(&path, max_bytes))
                .await
                .map_err(|e| HostError::Failed(e.to_string()))??,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn the_memory_limit_counts_every_memory_of_the_step_together() {
        let mut limiter = Limiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap(), "first memory");
        assert!(
            !limiter.memory_growing(0, 60, None).unwrap(),
            "a second memory may not take the step past its limit"
        );
        assert!(limiter.hit);
        assert!(
            limiter.memory_growing(60, 90, None).unwrap(),
            "growing the first to 90"
        );
        assert!(!limiter.memory_growing(0, 20, None).unwrap());
        assert_eq!(limiter.memories(), MAX_MEMORIES);
    }

    #[test]
    fn plugin_text_cannot_forge_log_lines_or_drive_the_terminal() {
        let text = sanitize("ok\n2026-11-26 ERROR forged\u{1b}[31mred", 100);
        assert_eq!(text, "ok\\n2026-11-26 ERROR forged\\u{1b}[31mred");
        assert_eq!(sanitize(&"x".repeat(50), 10), "xxxxxxxxxx...(truncated)");
    }
}
