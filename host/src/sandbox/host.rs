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

/// Enforces the memory limit and remembers whether it was hit, so that a
/// guest's abort on allocation failure is reported as "out of memory".
pub struct Limiter {
    memory: u64,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired as u64 <= self.memory;
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
}

pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    access: StepAccess,
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
            limiter: Limiter { memory, hit: false },
            access,
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
                let text = String::from_utf8_lossy(&text);
                tracing::info!(step = %self.access.step, plugin = %self.access.plugin, stream, "{}", text.trim_end());
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
