//! What a run reports: each step's outcome, the plan, and what apply did.
use crate::apply::ApplyReport;
use crate::plan::Plan;
use serde::Serialize;

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

/// A plan with the step reports that made it.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub plan: Plan,
    pub steps: Vec<StepReport>,
}

impl Planned {
    /// The output of step `id` (null when it did not run).
    pub fn output(&self, id: &str) -> &serde_json::Value {
        output_of(&self.steps, id)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub plan: Plan,
    pub steps: Vec<StepReport>,
    /// None for a dry run, or a plan without effects.
    pub apply: Option<ApplyReport>,
    /// Peak resident memory of this process, KiB (Linux).
    pub peak_rss_kib: Option<u64>,
}

impl RunReport {
    /// The output of step `id` (null when it did not run).
    pub fn output(&self, id: &str) -> &serde_json::Value {
        output_of(&self.steps, id)
    }

    /// Effects applied by this run (0 for a dry run).
    pub fn applied(&self) -> usize {
        self.apply.as_ref().map_or(0, |a| a.applied)
    }

    pub fn archive(&self) -> Option<&std::path::Path> {
        self.apply.as_ref().and_then(|a| a.archive.as_deref())
    }
}

fn output_of<'a>(steps: &'a [StepReport], id: &str) -> &'a serde_json::Value {
    steps
        .iter()
        .find(|s| s.id == id)
        .map(|s| &s.output)
        .unwrap_or(&serde_json::Value::Null)
}

/// `VmHWM` of this process, from /proc (None elsewhere).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
