//! Running a workflow: `plan` runs every step (concurrently as `needs`
//! allow) and returns a sealed, checked `Plan`; `apply` executes a plan; `run`
//! is one then the other. Steps never see each other's effects, so a dry run
//! follows exactly the path of a real run.
mod load;
mod pinned;
mod report;
mod schedule;
mod step;

pub use load::load_plugins;
pub use report::{Planned, RunReport, StepReport, StepStatus, peak_rss_kib};

use crate::apply::{self, ApplyError, ApplyOptions, ApplyReport, Durable};
use crate::archive::{ArchiveReader, Format};
use crate::backends::Backends;
use crate::observe::Observer;
use crate::plan::effect::Effect;
use crate::plan::{
    self, InputArchive, OutputTarget, Plan, PlannedEffect, PlannedGate, PlannedStep, PluginId,
    RunFacts, WorkflowId,
};
use crate::sandbox::Runtime;
use crate::target::SystemTarget;
use crate::workflow::{GateAt, GateSpec, Workflow, WorkflowError, expr};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Workflow(#[from] WorkflowError),
    #[error("workflow `{workflow}`: {message}")]
    Setup { workflow: String, message: String },
    #[error("{} step(s) failed; nothing was applied:\n  {}", failed.len(), failed.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("\n  "))]
    StepsFailed {
        failed: Vec<(String, String)>,
        steps: Vec<StepReport>,
    },
    #[error("the plan cannot be applied; nothing was applied:\n  - {}", .0.join("\n  - "))]
    BadPlan(Vec<String>),
    #[error("{0}")]
    Apply(#[from] ApplyError),
}

pub struct RunOptions {
    pub params: Vec<(String, String)>,
    pub dry_run: bool,
    /// Told what the run does (progress bars, or nothing).
    pub observer: Arc<dyn Observer>,
}

pub struct Engine {
    runtime: Arc<Runtime>,
    backends: Backends,
    /// The CSM the backends reach; plans record it.
    system: Option<SystemTarget>,
}

impl Engine {
    pub fn new(runtime: Arc<Runtime>, backends: Backends) -> Engine {
        Engine {
            runtime,
            backends,
            system: None,
        }
    }

    /// Names the system the backends reach (`Connect::connect_with_target`).
    pub fn with_system(mut self, system: Option<SystemTarget>) -> Engine {
        self.system = system;
        self
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    pub fn system(&self) -> Option<&SystemTarget> {
        self.system.as_ref()
    }

    /// Plans, then applies unless it is a dry run.
    pub async fn run(&self, wf: &Workflow, opts: &RunOptions) -> Result<RunReport, RunError> {
        let planned = self.plan(wf, opts).await?;
        let apply = if opts.dry_run || planned.plan.effects.is_empty() {
            None
        } else {
            let span = tracing::info_span!("apply", run_id = %planned.plan.run.id);
            let options = ApplyOptions {
                observer: opts.observer.clone(),
                ..ApplyOptions::default()
            };
            Some(
                self.apply(&planned.plan, &options, None)
                    .instrument(span)
                    .await?,
            )
        };
        Ok(RunReport {
            plan: planned.plan,
            steps: planned.steps,
            apply,
            peak_rss_kib: peak_rss_kib(),
        })
    }

    /// Runs every step and returns the sealed plan, checked as a whole.
    pub async fn plan(&self, wf: &Workflow, opts: &RunOptions) -> Result<Planned, RunError> {
        let setup = |message: String| RunError::Setup {
            workflow: wf.name.clone(),
            message,
        };
        let params = wf.resolve_params(&opts.params).map_err(setup)?;
        let facts = run_facts(wf, opts.dry_run);
        let span = tracing::info_span!("run", run_id = %facts.id, workflow = %wf.name, dry_run = opts.dry_run);
        async {
            let base_ctx = serde_json::json!({ "params": params, "run": facts, "steps": {} });
            let target = output_target(wf, &base_ctx).map_err(setup)?;
            let mut backends = self.backends.clone();
            let mut input = None;
            if let Some(template) = &wf.archive.input {
                let path = render_string(template, &base_ctx)
                    .map_err(|e| setup(format!("archive.input: {e}")))?;
                let path = absolute(&path).map_err(|e| setup(format!("archive.input: {e}")))?;
                let reader = ArchiveReader::open(&path)
                    .map_err(|e| setup(format!("cannot open the input archive: {e}")))?;
                input = Some(InputArchive {
                    path,
                    size: reader.size(),
                    index_sha256: apply::index_sha256(&reader),
                });
                backends.archive = Some(reader);
            }
            let plugins = load_plugins(wf, &self.runtime).await?;
            let (steps, effects) = schedule::Schedule {
                runtime: self.runtime.clone(),
                workflow: wf,
                plugins: &plugins,
                backends: Arc::new(backends),
                base_ctx: &base_ctx,
                facts: &facts,
                observer: opts.observer.clone(),
            }
            .run()
            .await;
            let failed: Vec<_> = steps
                .iter()
                .filter(|s| s.status == StepStatus::Failed)
                .map(|s| (s.id.clone(), s.error.clone().unwrap_or_default()))
                .collect();
            if !failed.is_empty() {
                return Err(RunError::StepsFailed { failed, steps });
            }
            let effects: Vec<PlannedEffect> = wf
                .steps
                .iter()
                .zip(effects)
                .flat_map(|(s, es)| {
                    es.into_iter()
                        .enumerate()
                        .map(|(n, e)| PlannedEffect::new(&s.id, n, e))
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut plan = Plan {
                format: plan::FORMAT,
                imsflow_version: env!("CARGO_PKG_VERSION").into(),
                contract: plan::CONTRACT.into(),
                build: Some(crate::build_info::BuildInfo::current()),
                workflow: WorkflowId {
                    name: wf.name.clone(),
                    source: crate::workflow::plan_source(wf),
                    sha256: wf.sha256.clone(),
                },
                steps: wf
                    .steps
                    .iter()
                    .zip(&plugins)
                    .zip(&steps)
                    .map(|((spec, p), report)| PlannedStep {
                        id: spec.id.clone(),
                        plugin: PluginId {
                            name: p.info.name.clone(),
                            version: p.info.version.clone(),
                            sha256: p.info.sha256.clone(),
                            source: spec.plugin.source(),
                        },
                        ran: report.status == StepStatus::Done,
                        grants: spec.grants.clone(),
                    })
                    .collect(),
                params,
                run: facts,
                system: self.system.clone(),
                target,
                input,
                gates: place_gates(&wf.gates, &effects),
                effects,
                digests: Default::default(),
                plan_hash: String::new(),
            };
            plan.seal();
            let problems = plan::check::check(&plan);
            if !problems.is_empty() {
                return Err(RunError::BadPlan(problems));
            }
            tracing::info!(effects = plan.effects.len(), plan_hash = %plan.plan_hash, "planned");
            Ok(Planned { plan, steps })
        }
        .instrument(span)
        .await
    }

    /// Applies a plan made by this process (no version check needed), with
    /// its journal when it has one.
    pub async fn apply(
        &self,
        plan: &Plan,
        opts: &ApplyOptions,
        durable: Option<Durable>,
    ) -> Result<ApplyReport, ApplyError> {
        apply::apply(plan, &self.backends, opts, durable).await
    }

    /// Applies a saved plan: it must come from this imsflow and the very
    /// plugins that are installed now, with the grants its workflow gives
    /// and only effects its plugins emit; then it is applied as `apply` does.
    pub async fn apply_saved(
        &self,
        plan: &Plan,
        opts: &ApplyOptions,
        durable: Option<Durable>,
    ) -> Result<ApplyReport, ApplyError> {
        let mut problems = self.version_problems(plan).await;
        if problems.is_empty() {
            problems = pinned::problems(plan, &self.runtime, &self.backends.site_services).await;
        }
        if !problems.is_empty() {
            return Err(ApplyError::Refused(problems));
        }
        let span = tracing::info_span!("apply", run_id = %plan.run.id, plan_hash = %plan.plan_hash);
        self.apply(plan, opts, durable).instrument(span).await
    }

    /// A plan from another imsflow, contract or plugin build, each named with
    /// the version it was planned with and the one installed now.
    pub async fn version_problems(&self, plan: &Plan) -> Vec<String> {
        let mut problems = Vec::new();
        let ours = env!("CARGO_PKG_VERSION");
        if plan.imsflow_version != ours {
            problems.push(format!(
                "the plan was made by imsflow {}; this is imsflow {ours} (make the plan again with this version)",
                plan.imsflow_version
            ));
        }
        if plan.contract != plan::CONTRACT {
            problems.push(format!(
                "the plan's effects follow contract {}; this imsflow executes {}",
                plan.contract,
                plan::CONTRACT
            ));
        }
        for step in &plan.steps {
            let was = &step.plugin;
            let now = crate::plugin::load(&crate::plugin::PluginRef::from_source(&was.source));
            let describe = |sha: &str| format!("{} {} (sha256 {})", was.name, was.version, sha);
            match now {
                Err(e) => problems.push(format!(
                    "step `{}`: plugin {} is no longer available: {e}",
                    step.id,
                    describe(&was.sha256)
                )),
                Ok(bytes) if bytes.sha256 != was.sha256 => {
                    let version = match self.runtime.load(&bytes).await {
                        Ok(p) => format!("{} {}", p.info.name, p.info.version),
                        Err(e) => format!("an unloadable plugin ({e})"),
                    };
                    problems.push(format!(
                        "step `{}`: the plan was made with plugin {}; installed now is {version} (sha256 {})",
                        step.id,
                        describe(&was.sha256),
                        bytes.sha256
                    ));
                }
                Ok(_) => {}
            }
        }
        problems
    }
}

fn output_target(wf: &Workflow, ctx: &serde_json::Value) -> Result<Option<OutputTarget>, String> {
    let a = &wf.archive;
    let Some(dir) = &a.output_dir else {
        return Ok(None);
    };
    let dir = render_string(dir, ctx).map_err(|e| format!("archive.output_dir: {e}"))?;
    let name = match &a.name {
        Some(n) => render_string(n, ctx).map_err(|e| format!("archive.name: {e}"))?,
        None => format!(
            "{}-{}",
            wf.name,
            ctx["run"]["timestamp"].as_str().unwrap_or_default()
        ),
    };
    // A single file name: the archive lands in `output_dir` itself, never
    // in (or through a symlink to) a subdirectory of it.
    crate::archive::check_archive_name(&name).map_err(|e| format!("archive.name: {e}"))?;
    let format = match &a.format {
        Some(f) => match render_string(f, ctx)
            .map_err(|e| format!("archive.format: {e}"))?
            .as_str()
        {
            "tar" => Format::Tar,
            "dir" => Format::Dir,
            other => {
                return Err(format!(
                    "archive.format must be `tar` or `dir`, not `{other}`"
                ));
            }
        },
        None => Format::Tar,
    };
    let dir = absolute(&dir).map_err(|e| format!("archive.output_dir: {e}"))?;
    if !dir.is_dir() {
        return Err(format!(
            "output directory {} does not exist or is not a directory",
            dir.display()
        ));
    }
    Ok(Some(OutputTarget { dir, name, format }))
}

/// A path as the plan records it: absolute, so that applying the plan from
/// another directory reads and writes the same files.
fn absolute(path: &str) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{path}: {e}"))
}

/// Each gate sits before the first effect of its step, or before its phase;
/// a gate with nothing behind it is not placed (nothing waits on it).
fn place_gates(gates: &[GateSpec], effects: &[PlannedEffect]) -> Vec<PlannedGate> {
    gates
        .iter()
        .filter_map(|g| {
            let first = effects.iter().find(|e| match (&g.before, &e.effect) {
                (GateAt::Step(step), _) => &e.step == step,
                (GateAt::Phase(name), Effect::Phase { name: n, .. }) => n == name,
                (GateAt::Phase(_), _) => false,
            })?;
            Some(PlannedGate {
                name: g.name.clone(),
                description: g.description.clone(),
                before: first.id.clone(),
            })
        })
        .collect()
}

fn render_string(template: &str, ctx: &serde_json::Value) -> Result<String, String> {
    match expr::render_str(template, &minijinja::Value::from_serialize(ctx))? {
        serde_json::Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}

fn run_facts(wf: &Workflow, dry_run: bool) -> RunFacts {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    let now = chrono::Local::now();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    RunFacts {
        id: format!("{}-{suffix}", now.format("%Y%m%dT%H%M%S")),
        workflow: wf.name.clone(),
        timestamp: now.format("%Y%m%d%H%M%S%.6f").to_string(),
        suffix,
        dry_run,
    }
}
