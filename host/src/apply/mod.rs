//! Applying a plan: one executor per effect family (archive writes, S3
//! uploads; IMS effects are refused by `plan::check` until their executors
//! land). Each executor answers `precheck` (is the plan still valid for this
//! effect, or has it already taken effect?) and `apply`.
//!
//! Order of work, and why:
//! 1. the plan's structure and grants are checked (`plan::check`), and the
//!    input archive is the one the plan was made from;
//! 2. every effect is prechecked, and a plan with any stale dependency is
//!    refused whole, naming each, before anything is changed;
//! 3. effects run in plan order; effects already done are skipped, so a
//!    half-applied plan can be applied again to completion. What the journal
//!    records as done is believed only once the world agrees (`confirm`).
pub mod archive;
mod confirm;
mod ims;
mod store;
mod upload;

use crate::archive::ArchiveReader;
use crate::backends::Backends;
use crate::journal::{Event, FailureKind, History, Journal, JournalError, Observed};
use crate::plan::effect::Effect;
use crate::plan::{InputArchive, Plan, PlannedEffect, PlannedGate, check, render};
use crate::test_hooks;
use confirm::Dispute;
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// Prechecks (HEADs, GETs) in flight at once.
const PRECHECK_CONCURRENCY: usize = 16;

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

/// How an apply treats gates and interrupts.
#[derive(Clone, Default)]
pub struct ApplyOptions {
    pub progress: bool,
    pub gates: GatePolicy,
    pub cancel: crate::cancel::Cancel,
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
/// A failure part-way: what ran, what did not, what to do.
#[derive(Debug)]
pub struct PartialFailure {
    pub effect: String,
    pub line: String,
    pub message: String,
    /// Kinds of the effects that took effect in this apply, with counts.
    pub applied: BTreeMap<&'static str, usize>,
    pub already_done: usize,
    /// The failed effect and those after it.
    pub not_applied: usize,
    /// Archive effects written into the partial archive, which was removed.
    pub archive_discarded: usize,
}

impl fmt::Display for PartialFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "effect {} ({}) failed: {}",
            self.effect,
            self.line.trim(),
            self.message
        )?;
        let applied: usize = self.applied.values().sum();
        if applied == 0 {
            writeln!(f, "  applied before it: nothing")?;
        } else {
            let kinds: Vec<String> = self
                .applied
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            writeln!(
                f,
                "  applied before it: {applied} effect(s) ({})",
                kinds.join(", ")
            )?;
        }
        if self.already_done > 0 {
            writeln!(
                f,
                "  already done by an earlier apply: {} effect(s)",
                self.already_done
            )?;
        }
        if self.archive_discarded > 0 {
            writeln!(
                f,
                "  the partial archive was removed, so its {} archive effect(s) did not take effect",
                self.archive_discarded
            )?;
        }
        writeln!(
            f,
            "  not applied: this effect and the {} after it",
            self.not_applied.saturating_sub(1)
        )?;
        write!(
            f,
            "  Fix the cause, then apply the same plan again: effects that already took effect are detected and skipped."
        )
    }
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
    if let Some(until) = &opts.gates.until
        && !plan.gates.iter().any(|g| &g.name == until)
    {
        let names: Vec<&str> = plan.gates.iter().map(|g| g.name.as_str()).collect();
        return Err(ApplyError::Refused(vec![format!(
            "--until names gate `{until}`, which this plan does not have (its gates: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )]));
    }
    // A finished run only verifies its end state again, unless the world
    // disagrees with its journal: its input archive may be gone by now.
    let (problems, mut input) = structural_problems(plan, backends, !history.finished());
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
        input = Some(open_input(planned).map_err(|p| ApplyError::Refused(vec![p]))?);
    }
    let history = confirm::believed(plan, history, &disputes);
    let mut recorder = Recorder::new(journal);
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
        .map(Dispute::line)
        .collect();
    if !refused.is_empty() {
        recorder.durable(Event::Finished { ok: false })?;
        return Err(ApplyError::Refused(refused));
    }
    roll_back_leftovers(plan, backends, &history, &mut recorder, &mut report).await?;
    let statuses = precheck(plan, backends, input.as_ref(), &history, &mut pods).await;
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
    let stale: Vec<String> = plan
        .effects
        .iter()
        .zip(&statuses)
        .filter_map(|(e, s)| match s {
            Status::Stale(why) => Some(
                match disputes.iter().find(|d| d.ids.contains(&e.id)) {
                    Some(d) => format!(
                        "effect {}: the journal records it as done, but {}; it cannot be done again: {why}",
                        e.id, d.why
                    ),
                    None => format!("stale: effect {}: {why}", e.id),
                },
            ),
            _ => None,
        })
        .collect();
    if !stale.is_empty() {
        recorder.durable(Event::Finished { ok: false })?;
        return Err(ApplyError::Refused(stale));
    }
    Executor {
        plan,
        backends,
        input: input.as_ref(),
        statuses,
        pods,
        requests: crate::s3::UploadLimits::default().requests(),
        bar: bytes_bar(plan.total_bytes(), opts.progress),
        report,
        applied_kinds: BTreeMap::new(),
        opts,
        recorder,
        history: &history,
        pause: pause_point(),
        archive_open: false,
    }
    .run()
    .await
}

/// What makes a plan unappliable before the world is even looked at, and
/// the input archive when it is the planned one.
fn structural_problems(
    plan: &Plan,
    backends: &Backends,
    need_input: bool,
) -> (Vec<String>, Option<ArchiveReader>) {
    let mut problems = check::check(plan);
    let input = match plan.input.as_ref().filter(|_| need_input) {
        Some(planned) => match open_input(planned) {
            Ok(reader) => Some(reader),
            Err(p) => {
                problems.push(p);
                None
            }
        },
        None => None,
    };
    let uses_s3 = plan.effects.iter().any(|e| e.effect.bucket().is_some());
    if uses_s3 && backends.s3.is_none() {
        problems.push("the plan reads or writes S3, but no S3 endpoint is configured".into());
    }
    let uses_ims = plan
        .effects
        .iter()
        .any(|e| e.effect.needs_csm() && e.effect.bucket().is_none());
    if uses_ims && backends.services.is_none() {
        problems.push("the plan changes IMS, but no CSM gateway is configured".into());
    }
    (problems, input)
}

/// Everything `apply` would refuse, checked now and listed at once, without
/// changing anything (an import's preflight, a dry run's warnings).
pub async fn preflight(plan: &Plan, backends: &Backends) -> Vec<String> {
    let (mut problems, input) = structural_problems(plan, backends, true);
    if problems.is_empty() {
        let mut pods = store::PodCache::default();
        let statuses = precheck(
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

/// Before a resumed run goes on: multipart uploads that a killed run left
/// open are aborted, and a partial archive it left is removed (the archive
/// is rebuilt from the start; its name is this plan's own).
async fn roll_back_leftovers(
    plan: &Plan,
    backends: &Backends,
    history: &History,
    recorder: &mut Recorder,
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    for (id, (bucket, key, upload_id)) in &history.open_uploads {
        let Some(s3) = backends.s3.as_deref() else {
            continue;
        };
        let what = match s3.abort_multipart(bucket, key, upload_id).await {
            Ok(()) => format!(
                "aborted the multipart upload {upload_id} of s3://{bucket}/{key} that the stopped run left open"
            ),
            Err(e) => {
                return Err(ApplyError::Refused(vec![format!(
                    "effect {id}: cannot abort the multipart upload {upload_id} of s3://{bucket}/{key} that the stopped run left open: {e}"
                )]));
            }
        };
        report.decisions.push(format!("{id}: {what}"));
        recorder.durable(Event::RolledBack {
            id: id.clone(),
            what,
        })?;
    }
    if let Some(target) = &plan.target
        && history.applies > 0
        && archive::done(target).is_none()
        && let Some(partial) = archive::remove_partial(target)
    {
        let what = format!(
            "removed the partial archive {} that the stopped run left; the archive is written again from the start",
            partial.display()
        );
        report.decisions.push(what.clone());
        if let Some(first) = plan
            .effects
            .iter()
            .find(|e| e.effect.archive_path().is_some())
        {
            recorder.durable(Event::RolledBack {
                id: first.id.clone(),
                what,
            })?;
        }
    }
    Ok(())
}
/// The input archive, if it is still the one the plan was made from.
fn open_input(planned: &InputArchive) -> Result<ArchiveReader, String> {
    let path = planned.path.display();
    let reader = ArchiveReader::open(&planned.path)
        .map_err(|e| format!("cannot open the input archive: {e}"))?;
    let size = reader.size();
    if size != planned.size {
        return Err(format!(
            "the input archive {path} changed since planning: it had {} bytes, now {size}",
            planned.size
        ));
    }
    let index = index_sha256(&reader);
    if index != planned.index_sha256 {
        return Err(format!(
            "the input archive {path} changed since planning: its export.json had sha256 {}, now {}",
            planned.index_sha256.as_deref().unwrap_or("(none)"),
            index.as_deref().unwrap_or("(none)")
        ));
    }
    Ok(reader)
}

/// sha256 of an archive's index document, when it has one.
pub fn index_sha256(reader: &ArchiveReader) -> Option<String> {
    reader.member("export.json")?;
    reader.sha256("export.json").ok()
}

/// Every effect's status, prechecked concurrently, in plan order. What the
/// journal records as done, and the world confirmed (`confirm`), is done
/// (archive effects excepted: they take effect only with the finished
/// archive); what it left in progress is `check`ed.
async fn precheck(
    plan: &Plan,
    backends: &Backends,
    input: Option<&ArchiveReader>,
    history: &History,
    pods: &mut store::PodCache,
) -> Vec<Status> {
    let s3 = backends.s3.as_deref();
    // The archive's effects took effect together; their sources may have
    // changed since, which no longer matters.
    let archive_done = plan.target.as_ref().and_then(archive::done);
    let mut missing_buckets = BTreeMap::new();
    if let Some(s3) = s3 {
        for bucket in plan.effects.iter().filter_map(|e| match &e.effect {
            Effect::S3UploadFromArchive { bucket, .. } if !history.done.contains_key(&e.id) => {
                Some(bucket)
            }
            _ => None,
        }) {
            if !missing_buckets.contains_key(bucket) {
                let missing = !s3.bucket_exists(bucket).await.unwrap_or(true);
                missing_buckets.insert(bucket.clone(), missing);
            }
        }
    }
    // Effects behind a delete see the world the deletes leave.
    let mut behind_pending_delete = Vec::with_capacity(plan.effects.len());
    let mut behind_any_delete = Vec::with_capacity(plan.effects.len());
    let (mut pending, mut any) = (false, false);
    for e in &plan.effects {
        behind_pending_delete.push(pending);
        behind_any_delete.push(any);
        if matches!(e.effect, Effect::ImsDelete { .. }) {
            any = true;
            pending |= !history.done.contains_key(&e.id);
        }
    }
    let mut statuses: Vec<Status> = futures::stream::iter(plan.effects.iter().enumerate())
        .map(|(i, e)| {
            let archive_done = archive_done.clone();
            let missing = e
                .effect
                .bucket()
                .is_some_and(|b| missing_buckets.get(b) == Some(&true));
            let (pending, any) = (behind_pending_delete[i], behind_any_delete[i]);
            async move {
                if e.effect.archive_path().is_some() {
                    if let Some(why) = archive_done {
                        return Status::Done(why);
                    }
                } else if history.done.contains_key(&e.id) {
                    return Status::Done("the journal records it as done".into());
                }
                if missing {
                    return Status::Stale(format!(
                        "bucket `{}` does not exist",
                        e.effect.bucket().unwrap_or_default()
                    ));
                }
                let in_doubt =
                    history.in_doubt.contains(&e.id) || history.failed.contains_key(&e.id);
                match (&e.effect, s3) {
                    (Effect::S3UploadFromArchive { .. }, Some(s3)) if in_doubt => {
                        upload::check(s3, input, &e.effect).await
                    }
                    (Effect::S3UploadFromArchive { .. }, Some(_)) if pending => {
                        match upload::precheck_member(input, &e.effect) {
                            Status::Ready => Status::Deferred,
                            other => other,
                        }
                    }
                    (Effect::ImsStoreWrite { .. }, _) if any || in_doubt => Status::Deferred,
                    (Effect::ImsRestart, _) if in_doubt => Status::Deferred,
                    _ => precheck_one(backends, input, &e.effect).await,
                }
            }
        })
        .buffered(PRECHECK_CONCURRENCY)
        .collect()
        .await;
    // Data-file writes need the one IMS pod, exec, and the file names.
    if let Some(first) = plan.effects.iter().zip(&statuses).position(|(e, s)| {
        matches!(e.effect, Effect::ImsStoreWrite { .. } | Effect::ImsRestart)
            && !matches!(s, Status::Done(_))
    }) && let Err(why) = pods.get(backends, plan).await
    {
        statuses[first] = Status::Stale(why);
    }
    statuses
}

async fn upload_status(
    s3: Option<&crate::s3::S3Store>,
    input: Option<&ArchiveReader>,
    effect: &Effect,
) -> Status {
    match s3 {
        Some(s3) => upload::precheck(s3, input, effect).await,
        None => Status::Stale("no S3 endpoint is configured".into()),
    }
}

async fn precheck_one(
    backends: &Backends,
    input: Option<&ArchiveReader>,
    effect: &Effect,
) -> Status {
    let s3 = backends.s3.as_deref();
    match effect {
        Effect::ImsDelete { .. } => ims::precheck(backends, effect).await,
        Effect::ImsStoreWrite { .. } => ims::store_precheck(backends, effect).await,
        // Evaluated when reached, after the effects before it.
        Effect::Assert { .. } => Status::Ready,
        Effect::ArchiveAddObject { .. } => archive::precheck(s3, effect).await,
        Effect::S3UploadFromArchive { .. } => match s3 {
            Some(s3) => upload::precheck(s3, input, effect).await,
            None => Status::Stale("no S3 endpoint is configured".into()),
        },
        Effect::ArchiveAddJson { .. }
        | Effect::ArchiveAddIndex { .. }
        | Effect::Phase { .. }
        | Effect::ImsRestart => Status::Ready,
    }
}

/// Effects announced (made durable as "may have started") at once: one
/// fsync per window instead of two per effect (see `journal`).
const WINDOW: usize = 64;

/// Uploads in flight at once.
const UPLOAD_CONCURRENCY: usize = 8;

/// What an upload observed, and a note worth reading.
type UploadDone = (Observed, Option<String>);

/// What a data-file write does with the records the plan does not know.
enum Newcomers {
    /// Write the planned records and these.
    Keep(Vec<serde_json::Value>),
    /// Stopped at the gate that asks before dropping them.
    Stop(GateStop),
}

enum NewcomersError {
    /// The pod's data file could not be read.
    Read(String),
    Apply(ApplyError),
}

/// How an upload ended when it did not finish.
enum UploadEnd {
    Failed(String),
    Interrupted,
    Journal(ApplyError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// Before the effect's `started` record.
    Before,
    /// Its `started` record is durable; nothing done yet.
    Started,
    /// A multipart upload is open (uploads only).
    Uploading,
    /// Executed; its `done` record is not written yet.
    Executed,
}

/// Test-only (`test_hooks`): where the apply stops and waits, from
/// `<effect index>:<before|started|uploading|executed>`.
fn pause_point() -> Option<(usize, Point)> {
    let spec = test_hooks::pause_at()?;
    let (index, point) = spec.split_once(':')?;
    let point = match point {
        "before" => Point::Before,
        "started" => Point::Started,
        "uploading" => Point::Uploading,
        "executed" => Point::Executed,
        _ => return None,
    };
    Some((index.parse().ok()?, point))
}

/// Says it paused, for the test that waits on it.
fn announce_pause(index: usize, point: Point) {
    test_hooks::announce_pause(&format!("{index}:{point:?}"));
}

/// Journal records of one apply; does nothing without a journal.
#[derive(Clone)]
struct Recorder(Option<Arc<Mutex<Journal>>>);

impl Recorder {
    fn new(journal: Option<Journal>) -> Recorder {
        Recorder(journal.map(|j| Arc::new(Mutex::new(j))))
    }

    fn with(
        &self,
        f: impl FnOnce(&mut Journal) -> Result<(), JournalError>,
    ) -> Result<(), ApplyError> {
        match &self.0 {
            Some(j) => Ok(f(&mut j.lock().unwrap_or_else(|p| p.into_inner()))?),
            None => Ok(()),
        }
    }

    fn append(&self, event: Event) -> Result<(), ApplyError> {
        self.with(|j| j.append(event))
    }

    fn durable(&self, event: Event) -> Result<(), ApplyError> {
        self.with(|j| j.append_durable(event))
    }

    fn commit(&self) -> Result<(), ApplyError> {
        self.with(Journal::commit)
    }
}

/// One apply in progress.
struct Executor<'a> {
    plan: &'a Plan,
    backends: &'a Backends,
    input: Option<&'a ArchiveReader>,
    statuses: Vec<Status>,
    pods: store::PodCache,
    /// PUTs in flight across all uploads (parts included): bounds memory.
    requests: Arc<tokio::sync::Semaphore>,
    bar: indicatif::ProgressBar,
    report: ApplyReport,
    applied_kinds: BTreeMap<&'static str, usize>,
    opts: &'a ApplyOptions,
    recorder: Recorder,
    history: &'a History,
    pause: Option<(usize, Point)>,
    /// An archive session was opened and not finished.
    archive_open: bool,
}

impl Executor<'_> {
    async fn run(mut self) -> Result<ApplyReport, ApplyError> {
        let effects = &self.plan.effects;
        let last_archive = effects
            .iter()
            .rposition(|e| e.effect.archive_path().is_some());
        // Test-only (`test_hooks`): always `None` in a normal build.
        let fault = test_hooks::fail_at_effect();
        let gates: BTreeMap<&str, &PlannedGate> = self
            .plan
            .gates
            .iter()
            .map(|g| (g.before.as_str(), g))
            .collect();
        let mut session: Option<archive::ArchiveSession> = None;
        let mut announced = 0;
        let mut i = 0;
        while i < effects.len() {
            if self.opts.cancel.is_cancelled() {
                return Err(self.interrupted(i, session));
            }
            if let Some(gate) = gates.get(effects[i].id.as_str())
                && let Some(stop) = self.gate(gate, i)?
            {
                drop(session);
                self.bar.finish_and_clear();
                self.report.stopped = Some(stop);
                return Ok(self.report);
            }
            if self.statuses[i] == Status::Deferred {
                self.check_when_reached(i).await?;
            }
            if let Status::Done(why) = &self.statuses[i] {
                tracing::info!(effect = %effects[i].id, "already done: {why}");
                if !self.history.done.contains_key(&effects[i].id) {
                    self.recorder.append(Event::Done {
                        id: effects[i].id.clone(),
                        observed: Observed::default(),
                        skipped: Some(why.clone()),
                    })?;
                }
                self.report.already_done += 1;
                if last_archive == Some(i) {
                    self.report.archive = self.plan.target.as_ref().map(|t| t.final_path());
                }
                i += 1;
                continue;
            }
            // No batch crosses a gate or an injected fault; a pause point
            // makes batches of one.
            let limit = effects[i + 1..]
                .iter()
                .position(|e| gates.contains_key(e.id.as_str()) || Some(&e.id) == fault.as_ref())
                .map_or(effects.len(), |n| i + 1 + n);
            // A run of object effects streams into the archive concurrently.
            let batchable = |e: &Effect| {
                matches!(
                    e,
                    Effect::ArchiveAddObject { .. } | Effect::S3UploadFromArchive { .. }
                )
            };
            let run = if batchable(&effects[i].effect) {
                effects[i..limit]
                    .iter()
                    .zip(&self.statuses[i..limit])
                    .take_while(|(e, s)| {
                        e.effect.kind() == effects[i].effect.kind() && !matches!(s, Status::Done(_))
                    })
                    .count()
                    .min(WINDOW)
            } else {
                1
            };
            let run = if self.pause.is_some() { 1 } else { run };
            let batch = &effects[i..i + run];
            if let Some(at) = batch.iter().position(|e| Some(&e.id) == fault.as_ref()) {
                let discarded = session.as_ref().map_or(0, |s| s.written);
                return Err(self.failure(
                    i + at,
                    "injected fault (test hook)".to_string(),
                    discarded,
                    FailureKind::Injected,
                ));
            }
            if i + run > announced {
                announced = (i + WINDOW).max(i + run).min(limit);
                let ids = effects[i..announced]
                    .iter()
                    .zip(&self.statuses[i..announced])
                    .filter(|(_, s)| !matches!(s, Status::Done(_)))
                    .map(|(e, _)| e.id.clone())
                    .collect();
                self.recorder.durable(Event::Announced { ids })?;
            }
            if self.paused_at(i, Point::Before).await? {
                return Err(self.interrupted(i, session));
            }
            for e in batch {
                self.recorder.append(Event::Started { id: e.id.clone() })?;
            }
            if self.paused_at(i, Point::Started).await? {
                return Err(self.interrupted(i, session));
            }
            let span = tracing::info_span!("effect", id = %batch[0].id, kind = batch[0].effect.kind(), step = %batch[0].step);
            if batch[0].effect.archive_path().is_some() && session.is_none() {
                let target = self.plan.target.as_ref().ok_or_else(|| {
                    ApplyError::Refused(vec!["archive effects without an output target".into()])
                })?;
                let mtime = archive_mtime(&self.plan.run.timestamp);
                session = Some(
                    archive::ArchiveSession::open(target, mtime)
                        .map_err(|m| self.failure(i, m, 0, FailureKind::Executor))?,
                );
                self.archive_open = true;
            }
            let mut observed = vec![Observed::default(); batch.len()];
            match &batch[0].effect {
                Effect::ArchiveAddObject { .. } => {
                    let open = session.take().expect("opened above");
                    let discarded = open.written;
                    let s3 = self.backends.s3.clone().ok_or_else(|| {
                        ApplyError::Refused(vec!["no S3 endpoint is configured".into()])
                    })?;
                    match open
                        .add_objects(s3, batch, self.bar.clone(), &self.opts.cancel)
                        .await
                    {
                        Ok(next) => {
                            for (o, e) in observed.iter_mut().zip(batch) {
                                *o = next.observed(e.effect.archive_path().unwrap_or_default());
                            }
                            session = Some(next);
                        }
                        Err(_) if self.opts.cancel.is_cancelled() => {
                            return Err(self.interrupted(i, None));
                        }
                        Err((at, m)) => {
                            return Err(self.failure(
                                i + at,
                                m,
                                discarded + at,
                                FailureKind::Executor,
                            ));
                        }
                    }
                }
                Effect::ArchiveAddJson { .. } | Effect::ArchiveAddIndex { .. } => {
                    let open = session.as_mut().expect("opened above");
                    let _entered = span.enter();
                    match open.add_document(&batch[0].effect) {
                        Ok(o) => observed[0] = o,
                        Err(m) => {
                            let discarded = open.written;
                            return Err(self.failure(i, m, discarded, FailureKind::Executor));
                        }
                    }
                    self.bar.inc(batch[0].effect.size().unwrap_or(0));
                }
                Effect::S3UploadFromArchive { .. } => {
                    // Several uploads in flight; results in plan order.
                    let mut results: Vec<(usize, Result<UploadDone, UploadEnd>)> =
                        futures::stream::iter(0..batch.len())
                            .map(|k| {
                                let this = &self;
                                async move { (k, this.upload(i + k).await) }
                            })
                            .buffer_unordered(UPLOAD_CONCURRENCY)
                            .collect()
                            .instrument(span.clone())
                            .await;
                    results.sort_by_key(|(k, _)| *k);
                    let mut ended = None;
                    let mut succeeded = vec![false; batch.len()];
                    for (k, result) in results {
                        match result {
                            Ok((o, note)) => {
                                if let Some(note) = note {
                                    tracing::warn!("{note}");
                                    self.report.notes.push(note);
                                }
                                self.bar.inc(batch[k].effect.size().unwrap_or(0));
                                self.count(&batch[k].effect);
                                observed[k] = o;
                                succeeded[k] = true;
                            }
                            Err(end) => {
                                ended.get_or_insert((k, end));
                            }
                        }
                    }
                    if let Some((k, end)) = ended {
                        // What finished is done; then the first that did not.
                        for ((e, o), _) in batch
                            .iter()
                            .zip(&observed)
                            .zip(&succeeded)
                            .filter(|(_, ok)| **ok)
                        {
                            self.recorder.append(Event::Done {
                                id: e.id.clone(),
                                observed: o.clone(),
                                skipped: None,
                            })?;
                            self.report.applied += 1;
                        }
                        return Err(match end {
                            UploadEnd::Interrupted => self.interrupted(i + k, session),
                            UploadEnd::Failed(m) => {
                                let discarded = session.as_ref().map_or(0, |s| s.written);
                                self.failure(i + k, m, discarded, FailureKind::Executor)
                            }
                            UploadEnd::Journal(e) => e,
                        });
                    }
                }
                Effect::Phase { name, .. } => {
                    tracing::info!(parent: &span, "phase `{name}` begins");
                    self.count(&batch[0].effect);
                }
                Effect::ImsStoreWrite { .. } => {
                    let discarded = session.as_ref().map_or(0, |s| s.written);
                    let keep = match self.newcomers(i).instrument(span.clone()).await {
                        Ok(Newcomers::Keep(keep)) => keep,
                        Ok(Newcomers::Stop(stop)) => {
                            drop(session);
                            self.bar.finish_and_clear();
                            self.report.stopped = Some(stop);
                            return Ok(self.report);
                        }
                        Err(NewcomersError::Apply(e)) => return Err(e),
                        Err(NewcomersError::Read(m)) => {
                            return Err(self.failure(i, m, discarded, FailureKind::Executor));
                        }
                    };
                    match store::write(
                        self.backends,
                        self.plan,
                        &mut self.pods,
                        &batch[0].effect,
                        &keep,
                    )
                    .instrument(span.clone())
                    .await
                    {
                        Ok(o) => observed[0] = o,
                        Err(m) => {
                            return Err(self.failure(i, m, discarded, FailureKind::Executor));
                        }
                    }
                    self.count(&batch[0].effect);
                }
                Effect::ImsRestart => {
                    let restarted =
                        store::restart(self.backends, self.plan, &mut self.pods, &self.bar)
                            .instrument(span.clone())
                            .await;
                    let discarded = session.as_ref().map_or(0, |s| s.written);
                    match restarted {
                        Ok(store::Restarted::Ok(o)) => observed[0] = o,
                        Ok(store::Restarted::Race(why)) => return Err(self.race(i, why)),
                        Err(m) => return Err(self.failure(i, m, discarded, FailureKind::Executor)),
                    }
                    self.count(&batch[0].effect);
                }
                Effect::ImsDelete { .. } | Effect::Assert { .. } => {
                    let effect = &batch[0].effect;
                    let result = if effect.is_verification() {
                        crate::postcheck::verify(self.plan, self.backends)
                            .instrument(span.clone())
                            .await
                            .map(|found| {
                                self.report.verification = Some(found.clone());
                                Observed {
                                    verification: Some(found),
                                    ..Observed::default()
                                }
                            })
                    } else if matches!(effect, Effect::Assert { .. }) {
                        ims::assert(self.backends, effect)
                            .instrument(span.clone())
                            .await
                    } else {
                        ims::delete(self.backends, effect)
                            .instrument(span.clone())
                            .await
                    };
                    match result {
                        Ok(o) => observed[0] = o,
                        Err(m) => {
                            let discarded = session.as_ref().map_or(0, |s| s.written);
                            return Err(self.failure(i, m, discarded, FailureKind::Executor));
                        }
                    }
                    self.count(effect);
                }
            }
            if self.paused_at(i, Point::Executed).await? {
                return Err(self.interrupted(i + 1, session));
            }
            for (e, o) in batch.iter().zip(observed) {
                self.recorder.append(Event::Done {
                    id: e.id.clone(),
                    observed: o,
                    skipped: None,
                })?;
            }
            self.report.applied += batch.len();
            i += batch.len();
            if last_archive.is_some_and(|last| last < i)
                && let Some(open) = session.take()
            {
                let written = open.written;
                let path = open.finish().map_err(|m| {
                    self.failure(last_archive.unwrap_or(0), m, written, FailureKind::Executor)
                })?;
                *self.applied_kinds.entry("archive effects").or_default() += written;
                self.report.archive = Some(path);
                self.archive_open = false;
            }
        }
        self.recorder.durable(Event::Finished { ok: true })?;
        self.bar.finish_and_clear();
        Ok(self.report)
    }

    /// One upload, rolled back (its multipart upload aborted) if the run is
    /// interrupted while it is in flight.
    async fn upload(&self, i: usize) -> Result<UploadDone, UploadEnd> {
        let e = &self.plan.effects[i];
        let (Some(s3), Some(input)) = (self.backends.s3.as_deref(), self.input) else {
            return Err(UploadEnd::Failed(
                "uploads need S3 and an input archive".into(),
            ));
        };
        let Effect::S3UploadFromArchive { bucket, key, .. } = &e.effect else {
            unreachable!("called for uploads only")
        };
        let opened: Arc<Mutex<Option<String>>> = Arc::default();
        let on_opened = {
            let (opened, recorder, cancel) = (
                opened.clone(),
                self.recorder.clone(),
                self.opts.cancel.clone(),
            );
            let (id, bucket, key) = (e.id.clone(), bucket.clone(), key.clone());
            let pause = self.pause == Some((i, Point::Uploading));
            move |upload_id: &str| {
                *opened.lock().unwrap_or_else(|p| p.into_inner()) = Some(upload_id.to_string());
                if let Err(err) = recorder.durable(Event::MultipartOpened {
                    id: id.clone(),
                    bucket: bucket.clone(),
                    key: key.clone(),
                    upload_id: upload_id.to_string(),
                }) {
                    tracing::error!("{err}");
                }
                if pause {
                    announce_pause(i, Point::Uploading);
                    while !cancel.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        };
        let span =
            tracing::info_span!("effect", id = %e.id, kind = e.effect.kind(), step = %e.step);
        let result = tokio::select! {
            biased;
            _ = self.opts.cancel.cancelled() => None,
            r = upload::apply(s3, input, &e.effect, &on_opened, &self.requests).instrument(span) => Some(r),
        };
        match result {
            Some(Ok(done)) => Ok(done),
            Some(Err(m)) => Err(UploadEnd::Failed(m)),
            None => {
                let open = opened.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(upload_id) = open {
                    let what = match s3.abort_multipart(bucket, key, &upload_id).await {
                        Ok(()) => format!(
                            "aborted the multipart upload {upload_id} of s3://{bucket}/{key}"
                        ),
                        Err(err) => format!(
                            "could not abort the multipart upload {upload_id} of s3://{bucket}/{key} ({err}); resume aborts it"
                        ),
                    };
                    if let Err(err) = self.recorder.durable(Event::RolledBack {
                        id: e.id.clone(),
                        what,
                    }) {
                        return Err(UploadEnd::Journal(err));
                    }
                }
                Err(UploadEnd::Interrupted)
            }
        }
    }

    /// The check of an effect that could not be judged before the effects
    /// ahead of it ran (see `Status::Deferred`). A run of such uploads is
    /// checked at once.
    async fn check_when_reached(&mut self, i: usize) -> Result<(), ApplyError> {
        let effects = &self.plan.effects;
        let in_doubt =
            |id: &str| self.history.in_doubt.contains(id) || self.history.failed.contains_key(id);
        let status = match &effects[i].effect {
            Effect::S3UploadFromArchive { .. } => {
                let run = self.statuses[i..]
                    .iter()
                    .zip(&effects[i..])
                    .take_while(|(s, e)| {
                        **s == Status::Deferred
                            && matches!(e.effect, Effect::S3UploadFromArchive { .. })
                    })
                    .count()
                    .min(WINDOW);
                let (s3, input) = (self.backends.s3.as_deref(), self.input);
                let checked: Vec<Status> = futures::stream::iter(&effects[i..i + run])
                    .map(|e| upload_status(s3, input, &e.effect))
                    .buffered(PRECHECK_CONCURRENCY)
                    .collect()
                    .await;
                let mut checked = checked.into_iter();
                let first = checked.next().unwrap_or(Status::Ready);
                for (k, status) in checked.enumerate() {
                    self.statuses[i + 1 + k] = status;
                }
                first
            }
            Effect::ImsStoreWrite { .. } => {
                let was_written = in_doubt(&effects[i].id)
                    && store::written(self.backends, self.plan, &mut self.pods, &effects[i].effect)
                        .await
                        .unwrap_or(false);
                if was_written {
                    Status::Done("the pod's data file holds the planned records".into())
                } else {
                    match ims::store_precheck(self.backends, &effects[i].effect).await {
                        Status::Done(why) => Status::Done(why),
                        // The deletes ahead changed the records it was
                        // planned against, as planned.
                        _ => Status::Ready,
                    }
                }
            }
            Effect::ImsRestart => {
                if store::restarted(self.backends, self.plan)
                    .await
                    .unwrap_or(false)
                {
                    Status::Done("IMS serves the records that were written".into())
                } else {
                    Status::Ready
                }
            }
            _ => Status::Ready,
        };
        if in_doubt(&effects[i].id) {
            let (done, why) = match &status {
                Status::Done(why) => (true, format!("it took effect ({why}); not done again")),
                _ => (false, "it had not taken effect; doing it again".to_string()),
            };
            self.report.decisions.push(format!(
                "{} was in progress when the run stopped: {why}",
                effects[i].id
            ));
            self.recorder.append(Event::Decided {
                id: effects[i].id.clone(),
                done,
                why,
            })?;
        }
        if let Status::Stale(why) = &status {
            let discarded = 0;
            return Err(self.failure(
                i,
                format!("stale when reached: {why}"),
                discarded,
                FailureKind::Executor,
            ));
        }
        self.statuses[i] = status;
        Ok(())
    }

    /// The records the data-file write of effect `i` finds that the plan
    /// does not know (IMS accepted them after planning, e.g. in the race
    /// window): an additive write keeps them; any other asks at a gate
    /// before it drops them, listing each.
    async fn newcomers(&mut self, i: usize) -> Result<Newcomers, NewcomersError> {
        let e = &self.plan.effects[i];
        let found = store::newcomers(self.backends, self.plan, &mut self.pods, &e.effect)
            .await
            .map_err(NewcomersError::Read)?;
        if found.is_empty() {
            return Ok(Newcomers::Keep(Vec::new()));
        }
        let kind = match &e.effect {
            Effect::ImsStoreWrite {
                ims_kind, deleted, ..
            } => format!(
                "{}{}",
                if *deleted { "deleted " } else { "" },
                ims_kind.name()
            ),
            _ => String::new(),
        };
        let named: Vec<String> = found
            .iter()
            .map(|r| {
                let id = r.get("id").and_then(|v| v.as_str()).unwrap_or_default();
                match r.get("name").and_then(|v| v.as_str()) {
                    Some(name) => format!("{id} ({name})"),
                    None => id.to_string(),
                }
            })
            .collect();
        if self.plan.additive_write(&e.effect) {
            let note = format!(
                "kept {} {kind}(s) that IMS accepted after planning and the archive does not hold: {}",
                found.len(),
                named.join(", ")
            );
            tracing::warn!("{note}");
            self.report.notes.push(note);
            return Ok(Newcomers::Keep(found));
        }
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(named.join("\n")));
        let gate = PlannedGate {
            name: format!("drop-new-records-{}", &digest[..12]),
            description: format!(
                "IMS accepted {} {kind}(s) after this import was planned, which the archive does not hold: {}. \
                 Writing the planned data file drops them, as this import replaces every record; \
                 approve to drop them, or stop here and plan the import again to review them",
                found.len(),
                named.join(", ")
            ),
            before: e.id.clone(),
        };
        match self.gate(&gate, i).map_err(NewcomersError::Apply)? {
            Some(stop) => Ok(Newcomers::Stop(stop)),
            None => Ok(Newcomers::Keep(Vec::new())),
        }
    }

    /// HPE's race, detected when IMS was read back after its restart: the
    /// data-file writes did not take effect. Nothing is lost (the plan holds
    /// every record it writes; what IMS accepted meanwhile is kept or asked
    /// about when the files are written again), so the one thing to do is
    /// to resume.
    fn race(&self, i: usize, why: String) -> ApplyError {
        self.bar.finish_and_clear();
        let effects = &self.plan.effects;
        let undo = effects
            .iter()
            .filter(|w| matches!(w.effect, Effect::ImsStoreWrite { .. }))
            .try_for_each(|w| {
                self.recorder.append(Event::RolledBack {
                    id: w.id.clone(),
                    what: "IMS overwrote this data file from memory before the restart".into(),
                })
            })
            .and_then(|()| {
                self.recorder.durable(Event::Failed {
                    id: effects[i].id.clone(),
                    kind: FailureKind::Executor,
                    message: why.clone(),
                })
            });
        if let Err(e) = undo {
            return e;
        }
        ApplyError::Race(format!(
            "{why}.\nNothing was lost: the plan still holds every record this import writes, and \
             records IMS accepted meanwhile are kept (or asked about) when the data files are \
             written again. The journal marks the data-file writes as not done.\n\
             To finish the import: imsflow resume {}",
            self.plan.run.id
        ))
    }

    /// At a gate: go on (approved now or before), or the reason to stop.
    fn gate(&mut self, gate: &PlannedGate, i: usize) -> Result<Option<GateStop>, ApplyError> {
        if self.history.gates_approved.contains_key(&gate.name) {
            return Ok(None);
        }
        self.recorder.durable(Event::GateReached {
            gate: gate.name.clone(),
        })?;
        let remaining = self.statuses[i..]
            .iter()
            .zip(&self.plan.effects[i..])
            .filter(|(s, e)| !matches!(s, Status::Done(_)) && e.effect.is_work())
            .count();
        let policy = &self.opts.gates;
        let approve = |by: &str| {
            self.recorder.durable(Event::GateApproved {
                gate: gate.name.clone(),
                by: by.into(),
            })
        };
        let why = if policy.until.as_deref() == Some(gate.name.as_str()) {
            GateWhy::Until
        } else if policy.yes {
            approve("--yes")?;
            return Ok(None);
        } else if let Some(ask) = &policy.ask {
            self.bar.finish_and_clear();
            let prompt = GatePrompt {
                gate: gate.clone(),
                remaining: render::render(&Plan {
                    effects: self.plan.effects[i..].to_vec(),
                    ..self.plan.clone()
                }),
            };
            if tokio::task::block_in_place(|| ask(&prompt)) {
                approve("a person at the terminal")?;
                return Ok(None);
            }
            GateWhy::Declined
        } else {
            GateWhy::ApprovalNeeded
        };
        self.recorder.durable(Event::GateStopped {
            gate: gate.name.clone(),
            why: why.as_str().into(),
        })?;
        Ok(Some(GateStop {
            gate: gate.name.clone(),
            why,
            remaining,
            description: gate.description.clone(),
        }))
    }

    /// Test-only pause; true when it was ended by a cancellation, false
    /// when the test removed the pause file (the apply goes on: the test
    /// changed the world at that exact point).
    async fn paused_at(&self, i: usize, point: Point) -> Result<bool, ApplyError> {
        if self.pause != Some((i, point)) {
            return Ok(false);
        }
        self.recorder.commit()?;
        announce_pause(i, point);
        let file = test_hooks::pause_file();
        loop {
            tokio::select! {
                _ = self.opts.cancel.cancelled() => return Ok(true),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if file.as_ref().is_some_and(|f| !f.exists()) {
                return Ok(false);
            }
        }
    }

    fn count(&mut self, effect: &Effect) {
        *self.applied_kinds.entry(effect.kind()).or_default() += 1;
    }

    /// Interrupted before effect `i` (an open archive is dropped, which
    /// removes it): journalled, and said.
    fn interrupted(&self, i: usize, session: Option<archive::ArchiveSession>) -> ApplyError {
        self.bar.finish_and_clear();
        let why = self.opts.cancel.why();
        let mut what = match self.plan.effects.get(i) {
            Some(e) => format!(
                "interrupted by {why} before effect {} ({} of {} effect(s) done)",
                e.id,
                self.report.applied + self.report.already_done,
                self.plan.effects.len()
            ),
            None => format!("interrupted by {why} after the last effect"),
        };
        let target = self.plan.target.as_ref();
        let was_open = session.is_some() || self.archive_open || archive::has_partial(target);
        drop(session);
        if let Some(target) = target.filter(|_| was_open) {
            archive::remove_partial(target);
            let partial = crate::archive::partial_path_of(&target.final_path());
            what.push_str(&format!(
                "; removed the partial archive {}: its archive effects are written again on resume",
                partial.display()
            ));
            if let Some(first) = self
                .plan
                .effects
                .iter()
                .find(|e| e.effect.archive_path().is_some())
            {
                let _ = self.recorder.append(Event::RolledBack {
                    id: first.id.clone(),
                    what: format!("removed the partial archive {}", partial.display()),
                });
            }
        }
        if let Err(e) = self.recorder.durable(Event::Interrupted { signal: why }) {
            what.push_str(&format!("; {e}"));
        }
        tracing::warn!("{what}");
        ApplyError::Interrupted(what)
    }

    /// The truthful account of a failure at effect `i`.
    fn failure(
        &self,
        i: usize,
        message: String,
        archive_discarded: usize,
        kind: FailureKind,
    ) -> ApplyError {
        self.bar.finish_and_clear();
        let e: &PlannedEffect = &self.plan.effects[i];
        tracing::error!(effect = %e.id, "{message}");
        if let Err(err) = self.recorder.durable(Event::Failed {
            id: e.id.clone(),
            kind,
            message: message.clone(),
        }) {
            tracing::error!("{err}");
        }
        ApplyError::Failed(Box::new(PartialFailure {
            effect: e.id.clone(),
            line: e.effect.line(),
            message,
            applied: self.applied_kinds.clone(),
            already_done: self.report.already_done,
            not_applied: self.plan.effects.len() - i,
            archive_discarded,
        }))
    }
}

/// Archive members carry the plan's time, so that an archive written again
/// on resume is byte for byte the one an uninterrupted run writes.
fn archive_mtime(timestamp: &str) -> u64 {
    chrono::NaiveDateTime::parse_from_str(timestamp, "%Y%m%d%H%M%S%.f")
        .ok()
        .and_then(|t| t.and_local_timezone(chrono::Local).earliest())
        .map_or(0, |t| t.timestamp().max(0) as u64)
}

fn bytes_bar(total: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
