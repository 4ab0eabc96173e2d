//! Applying a plan: one executor per effect family (`executor.rs`: archive
//! writes, S3 uploads, IMS deletes and assertions, IMS data files, phases,
//! the import's end-state verification), each answering `precheck` (is the
//! plan still valid for this effect, or has it already taken effect?),
//! `apply` and `check` (does the world agree with the journal?).
//!
//! Order of work, and why:
//! 1. the plan's structure and grants are checked (`plan::check`), and the
//!    input archive is the one the plan was made from (`entry.rs`);
//! 2. what the journal records as done is believed only once the world
//!    agrees (`confirm.rs`);
//! 3. every effect is prechecked, and a plan with any stale dependency is
//!    refused whole, naming each, before anything is changed (`entry.rs`);
//! 4. effects run in plan order (`run.rs`, batched by `batch.rs`); effects
//!    already done are skipped, so a half-applied plan can be applied again
//!    to completion. A failure part-way is reported by `report.rs`.
//!
//! Invariant: only `apply/` executes effects, and only through an
//! `Executor`; nothing here prints (the `Observer` is told).
pub mod archive;
mod batch;
mod confirm;
mod entry;
pub mod executor;
mod ims;
mod pause;
mod report;
mod run;
mod store;
mod upload;
mod verify;

pub use executor::Failure;
pub use report::PartialFailure;

use crate::archive::ArchiveReader;
use crate::backends::Backends;
use crate::journal::{Event, History, Journal, JournalError};
use crate::observe::Observer;
use crate::plan::{Plan, PlannedGate};
use executor::World;
use run::{Recorder, Run};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// Already took effect; why we know.
    Done(String),
    /// The world moved since planning; what changed.
    Stale(String),
    /// Checked when reached: it depends on what earlier effects (deletes)
    /// do to the world, so the world now says nothing about it.
    Deferred,
}

/// How an apply treats gates and interrupts, and who watches it.
#[derive(Clone)]
pub struct ApplyOptions {
    pub observer: Arc<dyn Observer>,
    pub gates: GatePolicy,
    pub cancel: crate::cancel::Cancel,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        ApplyOptions {
            observer: crate::observe::silent(),
            gates: GatePolicy::default(),
            cancel: crate::cancel::Cancel::default(),
        }
    }
}

/// What to do at an approval gate.
#[derive(Clone, Default)]
pub struct GatePolicy {
    /// Approve every gate (`--yes`).
    pub yes: bool,
    /// Stop at this gate, as asked (`--until`).
    pub until: Option<String>,
    /// Asks a person (an interactive terminal); without it an unapproved gate
    /// stops the run.
    pub ask: Option<Ask>,
}

/// Shows a person what lies behind a gate; true when they approve.
pub type Ask = Arc<dyn Fn(&GatePrompt) -> bool + Send + Sync>;

/// What a person is shown at a gate.
pub struct GatePrompt {
    pub gate: PlannedGate,
    /// The `show` rendering of the effects that remain.
    pub remaining: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    /// Effects executed by this apply.
    pub applied: usize,
    /// Effects skipped because an earlier apply had done them.
    pub already_done: usize,
    pub archive: Option<PathBuf>,
    /// Warnings worth reading (e.g. an ETag that could not be reproduced).
    pub notes: Vec<String>,
    /// Resume's verdicts on the effects a stopped run left in progress.
    pub decisions: Vec<String>,
    /// The run stopped at a gate instead of finishing.
    pub stopped: Option<GateStop>,
    /// The journal said the run had finished, and the world agreed: nothing
    /// was done but the end-state verification, which is run again.
    pub already_finished: bool,
    pub total: usize,
    /// The import's end-state verification, when the plan has one and it ran.
    pub verification: Option<crate::postcheck::PostCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateStop {
    pub gate: String,
    pub why: GateWhy,
    /// Effects behind the gate, not applied.
    pub remaining: usize,
    /// What the gate asks.
    pub description: String,
}

/// Why an apply stopped at a gate (as the report and the journal spell it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GateWhy {
    /// `--until` named the gate: the stop was asked for.
    #[serde(rename = "until")]
    Until,
    /// Nobody could approve it (no terminal, no `--yes`).
    #[serde(rename = "approval needed")]
    ApprovalNeeded,
    /// The person at the terminal said no.
    #[serde(rename = "declined")]
    Declined,
}

impl GateWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            GateWhy::Until => "until",
            GateWhy::ApprovalNeeded => "approval needed",
            GateWhy::Declined => "declined",
        }
    }
}

impl std::fmt::Display for GateWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the plan cannot be applied; nothing was applied:\n  - {}", .0.join("\n  - "))]
    Refused(Vec<String>),
    #[error("{0}")]
    Failed(Box<PartialFailure>),
    #[error("{0}")]
    Interrupted(String),
    /// HPE's race undid the data-file writes; resume redoes them.
    #[error("{0}")]
    Race(String),
    #[error("{0}")]
    Journal(#[from] JournalError),
}

/// The journal of a durable apply, with what it already says.
pub struct Durable {
    pub journal: Journal,
    pub history: History,
}

/// Checks a plan against the world, then executes it. With a journal, the
/// apply resumes where the journal says an earlier one stopped.
pub async fn apply(
    plan: &Plan,
    backends: &Backends,
    opts: &ApplyOptions,
    durable: Option<Durable>,
) -> Result<ApplyReport, ApplyError> {
    let (journal, history) = match durable {
        Some(d) => (Some(d.journal), d.history),
        None => (None, History::default()),
    };
    entry::check_until(plan, opts.gates.until.as_ref())?;
    // A finished run only verifies its end state again, unless the world
    // disagrees with its journal: its input archive may be gone by now.
    let (problems, mut input) = entry::structural_problems(plan, backends, !history.finished());
    if !problems.is_empty() {
        return Err(ApplyError::Refused(problems));
    }
    let mut pods = store::PodCache::default();
    let disputes = confirm::disputes(plan, backends, &history, &mut pods).await;
    let finished = history.finished() && disputes.is_empty();
    if finished && !plan.effects.iter().any(|e| e.effect.is_verification()) {
        return Ok(ApplyReport {
            already_finished: true,
            total: plan.effects.len(),
            already_done: history.done.len(),
            archive: plan.target.as_ref().map(|t| t.final_path()),
            ..ApplyReport::default()
        });
    }
    if let (None, Some(planned), false) = (&input, &plan.input, finished) {
        input =
            Some(entry::open_input(planned).map_err(|p| ApplyError::Refused(vec![p.to_string()]))?);
    }
    let history = confirm::believed(plan, history, &disputes);
    let recorder = Recorder::new(journal);
    recorder.durable(Event::Accepted {
        plan_hash: plan.plan_hash.clone(),
        run_id: plan.run.id.clone(),
        workflow: plan.workflow.name.clone(),
        effects: plan.effects.len(),
        resumed: history.applies > 0,
        pid: std::process::id(),
        host: crate::journal::lock::hostname(),
    })?;
    let mut report = ApplyReport {
        total: plan.effects.len(),
        already_finished: finished,
        ..ApplyReport::default()
    };
    for d in &disputes {
        report.decisions.push(d.line());
        for id in d.ids.iter().filter(|_| !d.refuse) {
            recorder.append(Event::Decided {
                id: id.clone(),
                done: false,
                why: d.why.clone(),
            })?;
        }
    }
    let refused: Vec<String> = disputes
        .iter()
        .filter(|d| d.refuse)
        .map(confirm::Dispute::line)
        .collect();
    if !refused.is_empty() {
        recorder.durable(Event::Finished { ok: false })?;
        return Err(ApplyError::Refused(refused));
    }
    let world = World {
        plan,
        backends,
        history: &history,
    };
    entry::roll_back_leftovers(world, &recorder, &mut report).await?;
    let statuses = entry::precheck(plan, backends, input.as_ref(), &history, &mut pods).await;
    for (e, s) in plan.effects.iter().zip(&statuses) {
        if history.in_doubt.contains(&e.id) || history.failed.contains_key(&e.id) {
            let (done, why) = match s {
                Status::Done(why) => (true, format!("it took effect ({why}); not done again")),
                Status::Ready => (false, "it had not taken effect; doing it again".to_string()),
                Status::Stale(why) => (false, format!("the world changed: {why}")),
                Status::Deferred => continue,
            };
            report.decisions.push(format!(
                "{} was in progress when the run stopped: {why}",
                e.id
            ));
            recorder.append(Event::Decided {
                id: e.id.clone(),
                done,
                why,
            })?;
        }
    }
    let stale = entry::stale(plan, &statuses, &disputes);
    if !stale.is_empty() {
        recorder.durable(Event::Finished { ok: false })?;
        return Err(ApplyError::Refused(stale));
    }
    opts.observer.applying(plan.total_bytes());
    Run {
        plan,
        backends,
        input: input.as_ref(),
        statuses,
        pods,
        requests: crate::s3::UploadLimits::default().requests(),
        report,
        applied_kinds: BTreeMap::new(),
        opts,
        recorder,
        history: &history,
        pause: pause::point(),
        archive: archive::OpenArchive::default(),
    }
    .run()
    .await
}

/// Everything `apply` would refuse, checked now and listed at once, without
/// changing anything (an import's preflight, a dry run's warnings).
pub async fn preflight(plan: &Plan, backends: &Backends) -> Vec<String> {
    let (mut problems, input) = entry::structural_problems(plan, backends, true);
    if problems.is_empty() {
        let mut pods = store::PodCache::default();
        let statuses = entry::precheck(
            plan,
            backends,
            input.as_ref(),
            &History::default(),
            &mut pods,
        )
        .await;
        problems.extend(
            plan.effects
                .iter()
                .zip(&statuses)
                .filter_map(|(e, s)| match s {
                    Status::Stale(why) => Some(format!("effect {}: {why}", e.id)),
                    _ => None,
                }),
        );
    }
    problems
}

/// sha256 of an archive's index document, when it has one.
pub fn index_sha256(reader: &ArchiveReader) -> Option<String> {
    reader.member("export.json")?;
    reader.sha256("export.json").ok()
}
