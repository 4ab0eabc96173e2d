//! Running a workflow: plan (run every step, concurrently as `needs` allow,
//! collecting effects), check the plan, then apply it unless it is a dry run.
use crate::archive::{ArchiveReader, ArchiveWriter, Format};
use crate::backends::Backends;
use crate::effect::Effect;
use crate::runtime::{LoadedPlugin, Runtime, StepAccess, StepFailure};
use crate::transfer::{self, Archived, ObjectJob, TransferConfig};
use crate::workflow::{StepSpec, Workflow, WorkflowError, expr};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Workflow(#[from] WorkflowError),
    #[error("workflow `{workflow}`: {message}")]
    Setup { workflow: String, message: String },
    #[error("{} step(s) failed; nothing was applied", failed.len())]
    StepsFailed {
        failed: Vec<(String, String)>,
        report: Box<RunReport>,
    },
    #[error("the plan cannot be applied; nothing was applied: {0}")]
    BadPlan(String),
    #[error(
        "applying effect {index} ({line}) failed: {message}; the partial archive was removed, nothing was written"
    )]
    Apply {
        index: usize,
        line: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Done,
    Skipped,
    Failed,
    NotRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: String,
    pub plugin: String,
    pub status: StepStatus,
    /// Milliseconds since the run started.
    pub started_ms: Option<f64>,
    pub finished_ms: Option<f64>,
    pub attempts: u32,
    pub effects: usize,
    pub output: serde_json::Value,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedEffect {
    pub step: String,
    #[serde(flatten)]
    pub effect: Effect,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub workflow: String,
    pub dry_run: bool,
    pub steps: Vec<StepReport>,
    pub effects: Vec<PlannedEffect>,
    pub applied: usize,
    pub total_bytes: u64,
    pub archive: Option<PathBuf>,
    /// Peak resident memory of this process, KiB (Linux).
    pub peak_rss_kib: Option<u64>,
}

pub struct RunOptions {
    pub params: Vec<(String, String)>,
    pub dry_run: bool,
    pub progress: bool,
}

/// Facts about this run that expressions see as `run.*`.
#[derive(Debug, Clone, Serialize)]
struct RunFacts {
    id: String,
    workflow: String,
    /// `YYYYmmddHHMMSS.ffffff`, local time, as HPE's tool names its archives.
    timestamp: String,
    /// 8 random characters from `[a-z0-9_]`.
    suffix: String,
    dry_run: bool,
}

/// Where archive effects go.
struct OutputTarget {
    dir: PathBuf,
    name: String,
    format: Format,
}

pub struct Engine {
    runtime: Arc<Runtime>,
    backends: Backends,
}

impl Engine {
    pub fn new(runtime: Arc<Runtime>, backends: Backends) -> Engine {
        Engine { runtime, backends }
    }

    pub async fn run(&self, wf: &Workflow, opts: &RunOptions) -> Result<RunReport, RunError> {
        let setup = |message: String| RunError::Setup {
            workflow: wf.name.clone(),
            message,
        };
        let params = wf.resolve_params(&opts.params).map_err(setup)?;
        let facts = run_facts(wf, opts.dry_run);
        let span = tracing::info_span!("run", run_id = %facts.id, workflow = %wf.name, dry_run = opts.dry_run);
        async {
            let base_ctx = serde_json::json!({ "params": params, "run": facts, "steps": {} });
            let output = self.output_target(wf, &base_ctx).map_err(setup)?;
            let mut backends = self.backends.clone();
            if let Some(input) = &wf.archive.input {
                let path = render_string(input, &base_ctx)
                    .map_err(|e| setup(format!("archive.input: {e}")))?;
                let reader = ArchiveReader::open(std::path::Path::new(&path))
                    .map_err(|e| setup(format!("cannot open the input archive: {e}")))?;
                backends.archive = Some(reader);
            }
            let plugins = wf.load_plugins(&self.runtime).await?;
            let mut report = self
                .plan(wf, &plugins, Arc::new(backends), &base_ctx, &facts, opts)
                .await;
            let failed: Vec<_> = report
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Failed)
                .map(|s| (s.id.clone(), s.error.clone().unwrap_or_default()))
                .collect();
            if !failed.is_empty() {
                return Err(RunError::StepsFailed {
                    failed,
                    report: Box::new(report),
                });
            }
            check_plan(&report.effects, output.as_ref())?;
            report.total_bytes = report.effects.iter().filter_map(|e| e.effect.size()).sum();
            if !opts.dry_run && !report.effects.is_empty() {
                report.archive = self
                    .apply(&report.effects, output.as_ref(), opts.progress)
                    .await?;
                report.applied = report.effects.len();
            }
            report.peak_rss_kib = peak_rss_kib();
            tracing::info!(
                effects = report.effects.len(),
                applied = report.applied,
                "run finished"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    fn output_target(
        &self,
        wf: &Workflow,
        ctx: &serde_json::Value,
    ) -> Result<Option<OutputTarget>, String> {
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
        crate::archive::check_member_path(&name).map_err(|e| format!("archive.name: {e}"))?;
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
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            return Err(format!(
                "output directory {} does not exist or is not a directory",
                dir.display()
            ));
        }
        Ok(Some(OutputTarget { dir, name, format }))
    }

    /// Runs every step. Never fails as a whole: failures are in the report.
    async fn plan(
        &self,
        wf: &Workflow,
        plugins: &[Arc<LoadedPlugin>],
        backends: Arc<Backends>,
        base_ctx: &serde_json::Value,
        facts: &RunFacts,
        opts: &RunOptions,
    ) -> RunReport {
        let started = Instant::now();
        let n = wf.steps.len();
        let mut reports: Vec<StepReport> = wf
            .steps
            .iter()
            .zip(plugins)
            .map(|(s, p)| StepReport {
                id: s.id.clone(),
                plugin: p.info.name.clone(),
                status: StepStatus::NotRun,
                started_ms: None,
                finished_ms: None,
                attempts: 0,
                effects: 0,
                output: serde_json::Value::Null,
                error: None,
            })
            .collect();
        let mut effects: Vec<Vec<Effect>> = vec![Vec::new(); n];
        let mut launched = vec![false; n];
        let mut finished: HashMap<String, StepStatus> = HashMap::new();
        let mut outputs = serde_json::Map::new();
        let mut tasks = JoinSet::new();
        let bar = step_bar(n, opts.progress);
        let mut failing = false;
        loop {
            if !failing {
                for i in 0..n {
                    let step = &wf.steps[i];
                    if launched[i] || !step.needs.iter().all(|d| finished.contains_key(d)) {
                        continue;
                    }
                    launched[i] = true;
                    let mut ctx = base_ctx.clone();
                    ctx["steps"] = serde_json::Value::Object(outputs.clone());
                    let call = StepCall {
                        runtime: self.runtime.clone(),
                        plugin: plugins[i].clone(),
                        spec: step.clone(),
                        backends: backends.clone(),
                        ctx,
                        facts: facts.clone(),
                        started,
                    };
                    let span =
                        tracing::info_span!("step", id = %step.id, plugin = %plugins[i].info.name);
                    tasks.spawn(async move { (i, call.execute().await) }.instrument(span));
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (i, outcome) = joined.expect("step task panicked");
            let report = &mut reports[i];
            report.started_ms = Some(outcome.started_ms);
            report.finished_ms = Some(outcome.finished_ms);
            report.attempts = outcome.attempts;
            match outcome.result {
                Ok(Some((output, step_effects))) => {
                    report.status = StepStatus::Done;
                    report.effects = step_effects.len();
                    report.output = output.clone();
                    effects[i] = step_effects;
                    outputs.insert(
                        report.id.clone(),
                        serde_json::json!({ "output": output, "skipped": false }),
                    );
                }
                Ok(None) => {
                    report.status = StepStatus::Skipped;
                    outputs.insert(
                        report.id.clone(),
                        serde_json::json!({ "output": null, "skipped": true }),
                    );
                }
                Err(message) => {
                    tracing::error!(step = %report.id, "{message}");
                    report.status = StepStatus::Failed;
                    report.error = Some(message);
                    failing = true;
                }
            }
            finished.insert(report.id.clone(), report.status);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let planned = wf
            .steps
            .iter()
            .zip(effects)
            .flat_map(|(s, es)| {
                es.into_iter().map(|effect| PlannedEffect {
                    step: s.id.clone(),
                    effect,
                })
            })
            .collect();
        RunReport {
            run_id: facts.id.clone(),
            workflow: wf.name.clone(),
            dry_run: opts.dry_run,
            steps: reports,
            effects: planned,
            applied: 0,
            total_bytes: 0,
            archive: None,
            peak_rss_kib: None,
        }
    }

    /// Executes effects in plan order. Runs of S3 objects are streamed into
    /// the archive concurrently; the index is completed with their checksums.
    async fn apply(
        &self,
        effects: &[PlannedEffect],
        output: Option<&OutputTarget>,
        progress: bool,
    ) -> Result<Option<PathBuf>, RunError> {
        let is_object = |e: &PlannedEffect| matches!(e.effect, Effect::ArchiveAddObject { .. });
        if effects.iter().any(is_object) && self.backends.s3.is_none() {
            return Err(RunError::BadPlan(
                "the plan archives S3 objects but no S3 endpoint is configured".into(),
            ));
        }
        let mut writer = match output {
            Some(t) if effects.iter().any(|e| e.effect.archive_path().is_some()) => Some(
                ArchiveWriter::create(&t.dir, &t.name, t.format)
                    .map_err(|e| RunError::BadPlan(e.to_string()))?,
            ),
            _ => None,
        };
        let bar = bytes_bar(
            effects.iter().filter_map(|e| e.effect.size()).sum(),
            progress,
        );
        let mut archived: HashMap<String, Archived> = HashMap::new();
        let mut index = 0;
        while index < effects.len() {
            let planned = &effects[index];
            let span = tracing::info_span!("effect", index, kind = planned.effect.kind(), step = %planned.step);
            let fail = |i: usize, message: String| RunError::Apply {
                index: i,
                line: effects[i].effect.line(),
                message,
            };
            let w = writer
                .take()
                .expect("checked by check_plan: archive effects have an output");
            let run = effects[index..].iter().take_while(|e| is_object(e)).count();
            if run > 0 {
                let batch = &effects[index..index + run];
                let jobs = batch.iter().map(object_job).collect();
                let s3 = self.backends.s3.clone().expect("checked above");
                let (w, done) =
                    transfer::stream_into(s3, jobs, w, bar.clone(), &TransferConfig::default())
                        .instrument(span)
                        .await
                        .map_err(|e| {
                            let at = batch
                                .iter()
                                .position(|p| p.effect.archive_path() == Some(&e.path))
                                .unwrap_or(0);
                            fail(index + at, e.message)
                        })?;
                archived.extend(done.into_iter().map(|a| (a.path.clone(), a)));
                writer = Some(w);
                index += run;
                continue;
            }
            let _entered = span.enter();
            let mut w = w;
            match &planned.effect {
                Effect::ArchiveAddJson { path, json } => {
                    crate::archive::add_bytes(&mut w, path, json.as_bytes())
                        .map_err(|e| fail(index, e.to_string()))?;
                }
                Effect::ArchiveAddIndex {
                    path,
                    json,
                    entries_at,
                } => {
                    let doc =
                        complete_index(json, entries_at, &archived).map_err(|e| fail(index, e))?;
                    crate::archive::add_bytes(&mut w, path, doc.as_bytes())
                        .map_err(|e| fail(index, e.to_string()))?;
                }
                other => {
                    return Err(fail(
                        index,
                        format!("`{}` effects are not executable by this host", other.kind()),
                    ));
                }
            }
            tracing::debug!("applied: {}", planned.effect.line());
            bar.inc(planned.effect.size().unwrap_or(0));
            writer = Some(w);
            index += 1;
        }
        bar.finish_and_clear();
        writer
            .map(|w| {
                w.finish()
                    .map_err(|e| RunError::BadPlan(format!("finishing the archive: {e}")))
            })
            .transpose()
    }
}

fn object_job(planned: &PlannedEffect) -> ObjectJob {
    let Effect::ArchiveAddObject {
        bucket,
        key,
        path,
        size,
        etag,
    } = &planned.effect
    else {
        unreachable!()
    };
    ObjectJob {
        bucket: bucket.clone(),
        key: key.clone(),
        path: path.clone(),
        size: size.expect("checked by check_plan"),
        etag: etag.clone().filter(|e| !e.is_empty()),
    }
}

/// Adds `sha256` and `size` to each entry under `entries_at` whose `relpath`
/// is a member this run archived.
fn complete_index(
    json: &str,
    entries_at: &str,
    archived: &HashMap<String, Archived>,
) -> Result<String, String> {
    let mut doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the index is not JSON: {e}"))?;
    if let Some(entries) = doc.pointer_mut(entries_at) {
        let entries: Vec<&mut serde_json::Value> = match entries {
            serde_json::Value::Object(m) => m.values_mut().collect(),
            serde_json::Value::Array(a) => a.iter_mut().collect(),
            _ => Vec::new(),
        };
        for entry in entries {
            let Some(done) = entry
                .get("relpath")
                .and_then(|r| r.as_str())
                .and_then(|r| archived.get(r))
            else {
                continue;
            };
            let (sha256, size) = (done.sha256.clone(), done.size);
            entry["sha256"] = sha256.into();
            entry["size"] = size.into();
        }
    }
    serde_json::to_string(&doc).map_err(|e| e.to_string())
}

/// Checks a plan before anything is applied: archive members are safe,
/// unique and have somewhere to go; an index comes last; every effect is one
/// this host executes.
fn check_plan(effects: &[PlannedEffect], output: Option<&OutputTarget>) -> Result<(), RunError> {
    let archive_effects: Vec<_> = effects
        .iter()
        .filter(|e| e.effect.archive_path().is_some())
        .collect();
    if let Some(pos) = archive_effects
        .iter()
        .position(|e| matches!(e.effect, Effect::ArchiveAddIndex { .. }))
        && pos + 1 != archive_effects.len()
    {
        return Err(RunError::BadPlan(format!(
            "step `{}` adds an archive index that is not the last archive member",
            archive_effects[pos].step
        )));
    }
    let mut paths = HashMap::new();
    for e in effects {
        if let Some(path) = e.effect.archive_path() {
            if output.is_none() {
                return Err(RunError::BadPlan(format!(
                    "step `{}` writes archive member `{path}` but the workflow has no `[archive] output_dir`",
                    e.step
                )));
            }
            crate::archive::check_member_path(path)
                .map_err(|err| RunError::BadPlan(format!("step `{}`: {err}", e.step)))?;
            if let Some(first) = paths.insert(path.to_string(), e.step.clone()) {
                return Err(RunError::BadPlan(format!(
                    "archive member `{path}` is written twice (by steps `{first}` and `{}`)",
                    e.step
                )));
            }
        }
        if matches!(e.effect, Effect::ArchiveAddObject { size: None, .. }) {
            return Err(RunError::BadPlan(format!(
                "step `{}` planned an archive object without its size",
                e.step
            )));
        }
        if !matches!(
            e.effect,
            Effect::ArchiveAddJson { .. }
                | Effect::ArchiveAddObject { .. }
                | Effect::ArchiveAddIndex { .. }
        ) {
            return Err(RunError::BadPlan(format!(
                "step `{}` planned a `{}` effect, which this version of imsflow cannot execute yet",
                e.step,
                e.effect.kind()
            )));
        }
    }
    Ok(())
}

struct StepCall {
    runtime: Arc<Runtime>,
    plugin: Arc<LoadedPlugin>,
    spec: StepSpec,
    backends: Arc<Backends>,
    ctx: serde_json::Value,
    facts: RunFacts,
    started: Instant,
}

struct StepOutcome {
    /// `Ok(None)`: skipped by `when`.
    result: Result<Option<(serde_json::Value, Vec<Effect>)>, String>,
    attempts: u32,
    started_ms: f64,
    finished_ms: f64,
}

impl StepCall {
    async fn execute(self) -> StepOutcome {
        let started_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut attempts = 0;
        let result = self.attempt_all(&mut attempts).await;
        StepOutcome {
            result,
            attempts,
            started_ms,
            finished_ms: self.started.elapsed().as_secs_f64() * 1000.0,
        }
    }

    async fn attempt_all(
        &self,
        attempts: &mut u32,
    ) -> Result<Option<(serde_json::Value, Vec<Effect>)>, String> {
        let ctx = minijinja::Value::from_serialize(&self.ctx);
        if let Some(when) = &self.spec.when
            && !expr::truthy(when, &ctx)
                .map_err(|e| format!("step `{}`: when: {e}", self.spec.id))?
        {
            tracing::info!("skipped: `when` is false");
            return Ok(None);
        }
        let mut with = serde_json::Map::new();
        for (key, value) in &self.spec.with {
            let v = expr::render(value, &ctx)
                .map_err(|e| format!("step `{}`: with.{key}: {e}", self.spec.id))?;
            with.insert(key.clone(), v);
        }
        let input = serde_json::json!({
            "with": with,
            "context": { "run": self.facts, "params": self.ctx["params"] },
        })
        .to_string();
        let access = StepAccess {
            step: self.spec.id.clone(),
            plugin: self.plugin.info.name.clone(),
            grants: self.spec.grants.clone(),
            backends: self.backends.clone(),
        };
        loop {
            *attempts += 1;
            match self
                .runtime
                .run_step(&self.plugin, &input, access.clone(), &self.spec.limits)
                .await
            {
                Ok(r) => {
                    return Ok(Some((
                        r.output,
                        r.effects.into_iter().map(Effect::from).collect(),
                    )));
                }
                Err(e) if e.is_retryable() && *attempts <= self.spec.retries => {
                    let backoff = Duration::from_millis(200 << (*attempts - 1).min(6));
                    tracing::warn!(attempt = *attempts, "{e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(describe_failure(&self.spec.id, &e)),
            }
        }
    }
}

fn describe_failure(step: &str, e: &StepFailure) -> String {
    format!("step `{step}`: {e}")
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

/// `VmHWM` of this process, from /proc (None elsewhere).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn step_bar(n: usize, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} steps {pos}/{len} {elapsed}").unwrap(),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn bytes_bar(total: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap(),
    );
    bar
}
