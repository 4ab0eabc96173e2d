//! The DAG scheduler of the plan phase: every step whose `needs` are done is
//! launched at once; a failure stops launching new steps. Never fails as a
//! whole: each step's fate is in its report.
use super::report::{StepReport, StepStatus};
use super::step::StepCall;
use crate::backends::Backends;
use crate::observe::Observer;
use crate::plan::RunFacts;
use crate::plan::effect::Effect;
use crate::sandbox::{LoadedPlugin, Runtime};
use crate::workflow::Workflow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;
use tracing::Instrument;

pub struct Schedule<'a> {
    pub runtime: Arc<Runtime>,
    pub workflow: &'a Workflow,
    pub plugins: &'a [Arc<LoadedPlugin>],
    pub backends: Arc<Backends>,
    pub base_ctx: &'a serde_json::Value,
    pub facts: &'a RunFacts,
    pub observer: Arc<dyn Observer>,
}

impl Schedule<'_> {
    /// Runs every step; returns their reports and, per step, its effects.
    pub async fn run(self) -> (Vec<StepReport>, Vec<Vec<Effect>>) {
        let wf = self.workflow;
        let started = Instant::now();
        let n = wf.steps.len();
        let mut reports: Vec<StepReport> = wf
            .steps
            .iter()
            .zip(self.plugins)
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
        self.observer.planning(n);
        let mut failing = false;
        loop {
            if !failing {
                for i in 0..n {
                    let step = &wf.steps[i];
                    if launched[i] || !step.needs.iter().all(|d| finished.contains_key(d)) {
                        continue;
                    }
                    launched[i] = true;
                    let mut ctx = self.base_ctx.clone();
                    ctx["steps"] = serde_json::Value::Object(outputs.clone());
                    let call = StepCall {
                        runtime: self.runtime.clone(),
                        plugin: self.plugins[i].clone(),
                        spec: step.clone(),
                        backends: self.backends.clone(),
                        ctx,
                        facts: self.facts.clone(),
                        started,
                    };
                    let span = tracing::info_span!("step", id = %step.id, plugin = %self.plugins[i].info.name);
                    tasks.spawn(async move { (i, call.execute().await) }.instrument(span));
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (i, outcome) = match joined {
                Ok(done) => done,
                Err(e) => {
                    // A panic in host code of one step; the others go on.
                    tracing::error!("a step task ended abnormally: {e}");
                    failing = true;
                    continue;
                }
            };
            let report = &mut reports[i];
            report.started_ms = Some(outcome.started_ms);
            report.finished_ms = Some(outcome.finished_ms);
            report.attempts = outcome.attempts;
            match outcome.result {
                Ok(Some((output, step_effects))) => {
                    report.status = StepStatus::Done;
                    report.effects = step_effects.len();
                    outputs.insert(
                        report.id.clone(),
                        serde_json::json!({ "output": output, "skipped": false }),
                    );
                    report.output = output;
                    effects[i] = step_effects;
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
            self.observer.step_finished(&report.id);
        }
        self.observer.planned();
        (reports, effects)
    }
}
