//! The sandboxed Wasm runtime: one wasmtime `Engine` per process, components
//! compiled once (and cached on disk by hash), a fresh `Store` per step call
//! with memory, time and output limits.
mod cache;
mod convert;
mod host;

pub use crate::workflow::{Grants, Limits};
pub use host::StepAccess;

use crate::bindings::{Step, StepPre, types};
use crate::plugin::PluginBytes;
use host::StepState;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

/// Why a step call failed. Each names the plugin and, for limits, the limit.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    #[error("plugin `{plugin}` ran past its time limit of {limit:?} and was stopped")]
    Timeout { plugin: String, limit: Duration },
    #[error("plugin `{plugin}` tried to use more than its memory limit of {} and was stopped", crate::units::bytes(*limit))]
    OutOfMemory { plugin: String, limit: u64 },
    #[error(
        "plugin `{plugin}` crashed (wasm trap): {message}{}",
        stderr_suffix(stderr)
    )]
    Trap {
        plugin: String,
        message: String,
        stderr: String,
    },
    #[error("plugin `{plugin}` returned malformed output: {reason}")]
    MalformedOutput { plugin: String, reason: String },
    #[error("plugin `{plugin}` returned {} of output, over its limit of {}", crate::units::bytes(*size), crate::units::bytes(*limit))]
    OutputTooLarge {
        plugin: String,
        size: u64,
        limit: u64,
    },
    #[error("plugin `{plugin}` rejected its input: {message}")]
    InvalidInput { plugin: String, message: String },
    #[error("plugin `{plugin}` was denied access: {message}")]
    Denied { plugin: String, message: String },
    #[error("plugin `{plugin}` failed: {message}")]
    Failed { plugin: String, message: String },
    #[error("plugin `{plugin}` aborted: {message}")]
    Aborted { plugin: String, message: String },
}

fn stderr_suffix(stderr: &str) -> String {
    let tail = stderr.trim();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; plugin stderr: {}", tail_of(tail, 2000))
    }
}

fn tail_of(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl StepFailure {
    /// Failures worth retrying: the plugin's own "failed" (often a service
    /// hiccup) and timeouts. Denials, aborts, bad input, crashes and limit
    /// breaches would fail the same way again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StepFailure::Failed { .. } | StepFailure::Timeout { .. }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("`{name}` is not a valid imsflow plugin component: {reason}")]
    Invalid { name: String, reason: String },
    #[error("plugin `{name}`: {source}")]
    Describe { name: String, source: StepFailure },
    #[error(
        "plugin `{name}` was built for {built_for}; this imsflow runs {}: rebuild it with the SDK of this version",
        crate::plan::CONTRACT.rsplit_once('@').map_or(crate::plan::CONTRACT, |(_, v)| v)
    )]
    Contract { name: String, built_for: String },
}

/// The package of the plugin contract (`wit/plugin.wit`).
pub const CONTRACT_PACKAGE: &str = "imsflow:plugin";

/// The contract versions a component's imports name:
/// `imsflow:plugin/services@0.2.0` -> `imsflow:plugin@0.2.0`.
pub fn contracts(imports: &[String]) -> Vec<String> {
    let mut contracts: Vec<String> = imports
        .iter()
        .filter_map(|name| {
            let rest = name.strip_prefix(CONTRACT_PACKAGE)?.strip_prefix('/')?;
            Some(match rest.split_once('@') {
                Some((_, version)) if !version.is_empty() => {
                    format!("{CONTRACT_PACKAGE}@{version}")
                }
                _ => CONTRACT_PACKAGE.to_string(),
            })
        })
        .collect();
    contracts.sort();
    contracts.dedup();
    contracts
}

/// Static facts about a loaded plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub sha256: String,
    /// Services the plugin declares it needs (checked against step grants).
    pub services: Vec<String>,
    /// Effect kinds the plugin declares it may emit (checked against step grants).
    pub effects: Vec<String>,
    /// Host interfaces the component imports (`imsflow:plugin/*`, `wasi:*`).
    pub imports: Vec<String>,
}

/// A compiled plugin, ready to instantiate.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    pre: StepPre<StepState>,
}

/// What a successful step returned.
#[derive(Debug)]
pub struct StepResult {
    pub output: serde_json::Value,
    pub effects: Vec<crate::plan::effect::Effect>,
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<StepState>,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
}

/// Epoch ticks drive both the yield that keeps a busy plugin from blocking
/// the async executor and the wall-clock limit.
const EPOCH_TICK: Duration = Duration::from_millis(5);

impl Runtime {
    /// `cache_dir`: where compiled components are kept between runs (None: no disk cache).
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // The guest sees no threads or wide SIMD needs; defaults are fine.
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Step::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        spawn_epoch_ticker(&engine);
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The default disk cache: `$IMSFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/imsflow`,
    /// else `~/.cache/imsflow`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("IMSFLOW_CACHE_DIR") {
            return Some(dir.into());
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("imsflow"))
    }

    /// Compiles (or fetches from memory or disk) a plugin and reads its info.
    pub async fn load(&self, plugin: &PluginBytes) -> Result<Arc<LoadedPlugin>, LoadError> {
        if let Some(hit) = self.loaded.lock().unwrap().get(&plugin.sha256) {
            return Ok(hit.clone());
        }
        let invalid = |reason: String| LoadError::Invalid {
            name: plugin.name.clone(),
            reason,
        };
        let component = self
            .compile(plugin)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        // Before linking, whose type errors would say nothing of versions.
        if let Some(other) = contracts(&imports)
            .into_iter()
            .find(|c| c != crate::plan::CONTRACT)
        {
            return Err(LoadError::Contract {
                name: plugin.name.clone(),
                built_for: other,
            });
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let pre = StepPre::new(instance_pre).map_err(|e| invalid(format!("{e:#}")))?;
        let described =
            self.describe(&pre, &plugin.name)
                .await
                .map_err(|source| LoadError::Describe {
                    name: plugin.name.clone(),
                    source,
                })?;
        if let Some(kind) = described
            .effects
            .iter()
            .find(|k| !crate::plan::effect::KINDS.contains(&k.as_str()))
        {
            return Err(invalid(format!(
                "`describe` declares the unknown effect kind `{kind}`"
            )));
        }
        let info = PluginInfo {
            name: described.name,
            version: described.version,
            description: described.description,
            sha256: plugin.sha256.clone(),
            services: described.services,
            effects: described.effects,
            imports,
        };
        let loaded = Arc::new(LoadedPlugin { info, pre });
        self.loaded
            .lock()
            .unwrap()
            .insert(plugin.sha256.clone(), loaded.clone());
        Ok(loaded)
    }

    fn compile(&self, plugin: &PluginBytes) -> wasmtime::Result<Component> {
        let Some(cache) = self.cache() else {
            return Component::new(&self.engine, &plugin.bytes);
        };
        if let Some(compiled) = cache.load(&plugin.sha256) {
            // SAFETY: the bytes come from our own private cache directory and
            // their header binds them to this component's sha256 with a digest
            // of the compiled code (see `cache`); wasmtime also re-checks that
            // they were compiled by this engine's configuration.
            match unsafe { Component::deserialize(&self.engine, &compiled) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!("ignoring unusable compile cache entry: {e:#}"),
            }
        }
        let component = Component::new(&self.engine, &plugin.bytes)?;
        if let Err(e) = cache.store(&plugin.sha256, &component.serialize()?) {
            tracing::warn!("cannot write the compile cache: {e}");
        }
        Ok(component)
    }

    /// The compile cache for this engine build, if there is a usable one.
    fn cache(&self) -> Option<cache::Cache> {
        use std::hash::{Hash, Hasher};
        let dir = self.cache_dir.as_ref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        cache::Cache::open(dir, &format!("{:016x}", h.finish()))
    }

    async fn describe(
        &self,
        pre: &StepPre<StepState>,
        name: &str,
    ) -> Result<types::PluginInfo, StepFailure> {
        let access = StepAccess::describe_only(name);
        let limits = Limits {
            timeout: Duration::from_secs(10),
            ..Limits::DEFAULT
        };
        self.call_with(pre, access, &limits, |step, store| {
            Box::pin(step.call_describe(store))
        })
        .await
    }

    /// Runs one step: a fresh store and instance, the step's grants, its limits.
    pub async fn run_step(
        &self,
        plugin: &LoadedPlugin,
        input: &str,
        access: StepAccess,
        limits: &Limits,
    ) -> Result<StepResult, StepFailure> {
        let name = plugin.info.name.clone();
        let input = input.to_string();
        let returned = self
            .call_with(&plugin.pre, access, limits, move |step, store| {
                Box::pin(async move { step.call_run(store, &input).await })
            })
            .await?;
        let out = returned.map_err(|e| match e {
            types::StepError::InvalidInput(message) => StepFailure::InvalidInput {
                plugin: name.clone(),
                message,
            },
            types::StepError::Denied(message) => StepFailure::Denied {
                plugin: name.clone(),
                message,
            },
            types::StepError::Failed(message) => StepFailure::Failed {
                plugin: name.clone(),
                message,
            },
            types::StepError::Aborted(message) => StepFailure::Aborted {
                plugin: name.clone(),
                message,
            },
        })?;
        let effects = out
            .effects
            .into_iter()
            .map(convert::effect)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| StepFailure::MalformedOutput {
                plugin: name.clone(),
                reason,
            })?;
        let size = out.output.len() as u64 + effects.iter().map(|e| e.footprint()).sum::<u64>();
        if size > limits.max_output {
            return Err(StepFailure::OutputTooLarge {
                plugin: name,
                size,
                limit: limits.max_output,
            });
        }
        let output =
            serde_json::from_str(&out.output).map_err(|e| StepFailure::MalformedOutput {
                plugin: name.clone(),
                reason: format!(
                    "output is not JSON ({e}); it starts with {:?}",
                    tail_of_start(&out.output)
                ),
            })?;
        Ok(StepResult { output, effects })
    }

    async fn call_with<R: Send + 'static>(
        &self,
        pre: &StepPre<StepState>,
        access: StepAccess,
        limits: &Limits,
        call: impl for<'a> FnOnce(
            &'a Step,
            &'a mut Store<StepState>,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>,
        > + Send,
    ) -> Result<R, StepFailure> {
        let plugin = access.plugin.clone();
        let (state, stderr) = StepState::new(access, limits.memory);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        let work = async {
            let step = pre.instantiate_async(&mut store).await?;
            call(&step, &mut store).await
        };
        let result = tokio::time::timeout(limits.timeout, work).await;
        let err = match result {
            Err(_) => {
                return Err(StepFailure::Timeout {
                    plugin,
                    limit: limits.timeout,
                });
            }
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => e,
        };
        if store.data().limiter.hit {
            return Err(StepFailure::OutOfMemory {
                plugin,
                limit: limits.memory,
            });
        }
        let stderr = String::from_utf8_lossy(&stderr.contents()).into_owned();
        Err(StepFailure::Trap {
            plugin,
            message: format!("{err:#}"),
            stderr,
        })
    }
}

fn tail_of_start(text: &str) -> &str {
    let mut end = text.len().min(60);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("imsflow-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
