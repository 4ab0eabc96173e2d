//! The ordered loop of an apply: gates, batches, the journal's records, test
//! pauses, interrupts and the account of a failure. It knows no effect kind:
//! each effect's executor (`executor::for_effect`) does the work.
use super::archive::OpenArchive;
use super::batch::{self, WINDOW};
use super::executor::{Applied, Failed, Failure, for_effect};
use super::pause::{self, Point};
use super::report::PartialFailure;
use super::store::PodCache;
use super::{ApplyError, ApplyOptions, ApplyReport, GatePrompt, GateStop, GateWhy, Status};
use crate::archive::ArchiveReader;
use crate::backends::Backends;
use crate::journal::{Event, FailureKind, History, Journal, JournalError, Observed};
use crate::plan::{Plan, PlannedEffect, PlannedGate, render};
use crate::test_hooks;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Journal records of one apply; does nothing without a journal.
#[derive(Clone)]
pub struct Recorder(Option<Arc<Mutex<Journal>>>);

impl Recorder {
    pub fn new(journal: Option<Journal>) -> Recorder {
        Recorder(journal.map(|j| Arc::new(Mutex::new(j))))
    }

    fn with(
        &self,
        f: impl FnOnce(&mut Journal) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        match &self.0 {
            Some(j) => f(&mut j.lock().unwrap_or_else(|p| p.into_inner())),
            None => Ok(()),
        }
    }

    pub fn append(&self, event: Event) -> Result<(), JournalError> {
        self.with(|j| j.append(event))
    }

    pub fn durable(&self, event: Event) -> Result<(), JournalError> {
        self.with(|j| j.append_durable(event))
    }

    pub fn commit(&self) -> Result<(), JournalError> {
        self.with(Journal::commit)
    }
}

/// One apply in progress: what its executors read and change.
pub struct Run<'a> {
    pub plan: &'a Plan,
    pub backends: &'a Backends,
    pub input: Option<&'a ArchiveReader>,
    pub statuses: Vec<Status>,
    pub pods: PodCache,
    /// PUTs in flight across all uploads (parts included): bounds memory.
    pub requests: Arc<tokio::sync::Semaphore>,
    pub report: ApplyReport,
    pub applied_kinds: BTreeMap<&'static str, usize>,
    pub opts: &'a ApplyOptions,
    pub recorder: Recorder,
    pub history: &'a History,
    pub pause: Option<(usize, Point)>,
    /// The output archive being written, if any.
    pub archive: OpenArchive,
}

impl Run<'_> {
    pub async fn run(mut self) -> Result<ApplyReport, ApplyError> {
        let effects = &self.plan.effects;
        // Test-only (`test_hooks`): always `None` in a normal build.
        let fault = test_hooks::fail_at_effect();
        let gates: BTreeMap<&str, &PlannedGate> = self
            .plan
            .gates
            .iter()
            .map(|g| (g.before.as_str(), g))
            .collect();
        let mut announced = 0;
        let mut i = 0;
        while i < effects.len() {
            if self.opts.cancel.is_cancelled() {
                return Err(self.interrupted(i));
            }
            if let Some(gate) = gates.get(effects[i].id.as_str())
                && let Some(stop) = self.gate(gate, i)?
            {
                return Ok(self.stopped(stop));
            }
            let executor = for_effect(&effects[i].effect);
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
                executor.skipped(&mut self, i);
                i += 1;
                continue;
            }
            // No batch crosses a gate or an injected fault; a pause point
            // makes batches of one.
            let limit = effects[i + 1..]
                .iter()
                .position(|e| gates.contains_key(e.id.as_str()) || Some(&e.id) == fault.as_ref())
                .map_or(effects.len(), |n| i + 1 + n);
            let run = if self.pause.is_some() {
                1
            } else {
                batch::length(executor, effects, &self.statuses, i, limit)
            };
            let batch = i..i + run;
            if let Some(at) = effects[batch.clone()]
                .iter()
                .position(|e| Some(&e.id) == fault.as_ref())
            {
                let discarded = self.archive.written();
                return Err(self.failure(i + at, Failure::Injected, discarded));
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
                return Err(self.interrupted(i));
            }
            for e in &effects[batch.clone()] {
                self.recorder.append(Event::Started { id: e.id.clone() })?;
            }
            if self.paused_at(i, Point::Started).await? {
                return Err(self.interrupted(i));
            }
            self.opts
                .observer
                .effect_started(&effects[i].id, effects[i].effect.kind());
            let observed = match executor.apply(&mut self, batch.clone()).await {
                Ok(Applied::Done(observed)) => observed,
                Ok(Applied::Stopped(stop)) => return Ok(self.stopped(stop)),
                Err(failed) => return Err(self.failed(i, failed)),
            };
            if self.paused_at(i, Point::Executed).await? {
                return Err(self.interrupted(i + 1));
            }
            for (e, o) in effects[batch.clone()].iter().zip(observed) {
                self.recorder.append(Event::Done {
                    id: e.id.clone(),
                    observed: o,
                    skipped: None,
                })?;
                if !executor.counted_apart() {
                    self.count(&e.effect);
                }
                self.opts.observer.effect_finished(&e.id, e.effect.kind());
            }
            self.report.applied += run;
            i += run;
            if let Err(failed) = executor.settle(&mut self, batch.clone()) {
                return Err(self.failed(batch.start, failed));
            }
        }
        self.recorder.durable(Event::Finished { ok: true })?;
        self.opts.observer.applied();
        Ok(self.report)
    }

    /// The span of effect `i`'s logs.
    pub fn span(&self, i: usize) -> tracing::Span {
        let e = &self.plan.effects[i];
        tracing::info_span!("effect", id = %e.id, kind = e.effect.kind(), step = %e.step)
    }

    /// Stopped at a gate: the report says where.
    fn stopped(mut self, stop: GateStop) -> ApplyReport {
        self.archive.close();
        self.opts.observer.applied();
        self.report.stopped = Some(stop);
        self.report
    }

    /// The account of a batch starting at effect `i` that did not take effect.
    fn failed(&mut self, i: usize, failed: Failed) -> ApplyError {
        let Failed {
            at,
            failure,
            discarded,
        } = failed;
        match failure {
            Failure::Interrupted => self.interrupted(i + at),
            Failure::Journal(e) => ApplyError::Journal(e),
            Failure::Race(why) => self.race(i + at, why),
            failure => {
                let discarded = discarded.unwrap_or_else(|| self.archive.written());
                self.failure(i + at, failure, discarded)
            }
        }
    }

    /// The check of an effect that could not be judged before the effects
    /// ahead of it ran (see `Status::Deferred`).
    async fn check_when_reached(&mut self, i: usize) -> Result<(), ApplyError> {
        let e = &self.plan.effects[i];
        let status = for_effect(&e.effect).reached(self, i).await;
        if self.history.in_doubt.contains(&e.id) || self.history.failed.contains_key(&e.id) {
            let (done, why) = match &status {
                Status::Done(why) => (true, format!("it took effect ({why}); not done again")),
                _ => (false, "it had not taken effect; doing it again".to_string()),
            };
            self.report.decisions.push(format!(
                "{} was in progress when the run stopped: {why}",
                e.id
            ));
            self.recorder.append(Event::Decided {
                id: e.id.clone(),
                done,
                why,
            })?;
        }
        if let Status::Stale(why) = &status {
            return Err(self.failure(i, Failure::Stale(format!("stale when reached: {why}")), 0));
        }
        self.statuses[i] = status;
        Ok(())
    }

    /// HPE's race, detected when IMS was read back after its restart: the
    /// data-file writes did not take effect (the executor undid them in the
    /// journal). Nothing is lost (the plan holds every record it writes;
    /// what IMS accepted meanwhile is kept or asked about when the files are
    /// written again), so the one thing to do is to resume.
    fn race(&self, i: usize, why: String) -> ApplyError {
        self.opts.observer.applied();
        if let Err(e) = self.recorder.durable(Event::Failed {
            id: self.plan.effects[i].id.clone(),
            kind: FailureKind::Executor,
            message: why.clone(),
        }) {
            return e.into();
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
    pub fn gate(&mut self, gate: &PlannedGate, i: usize) -> Result<Option<GateStop>, JournalError> {
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
            let prompt = GatePrompt {
                gate: gate.clone(),
                remaining: render::render(&Plan {
                    effects: self.plan.effects[i..].to_vec(),
                    ..self.plan.clone()
                }),
            };
            let mut approved = false;
            tokio::task::block_in_place(|| {
                self.opts.observer.suspend(&mut || approved = ask(&prompt))
            });
            if approved {
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
        Ok(pause::wait(i, point, &self.opts.cancel).await)
    }

    pub fn count(&mut self, effect: &crate::plan::effect::Effect) {
        *self.applied_kinds.entry(effect.kind()).or_default() += 1;
    }

    /// Interrupted before effect `i` (what is half done is undone, an open
    /// archive removed): journalled, and said.
    fn interrupted(&mut self, i: usize) -> ApplyError {
        self.opts.observer.applied();
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
        for family in super::executor::FAMILIES {
            if let Some(undone) = family.interrupted(self) {
                what.push_str(&format!("; {undone}"));
            }
        }
        if let Err(e) = self.recorder.durable(Event::Interrupted { signal: why }) {
            what.push_str(&format!("; {e}"));
        }
        tracing::warn!("{what}");
        ApplyError::Interrupted(what)
    }

    /// The truthful account of a failure at effect `i`.
    fn failure(&self, i: usize, failure: Failure, archive_discarded: usize) -> ApplyError {
        self.opts.observer.applied();
        let e: &PlannedEffect = &self.plan.effects[i];
        let message = failure.to_string();
        tracing::error!(effect = %e.id, "{message}");
        if let Err(err) = self.recorder.durable(Event::Failed {
            id: e.id.clone(),
            kind: failure.journal_kind(),
            message,
        }) {
            tracing::error!("{err}");
        }
        ApplyError::Failed(Box::new(PartialFailure {
            effect: e.id.clone(),
            line: e.effect.summary(),
            failure,
            applied: self.applied_kinds.clone(),
            already_done: self.report.already_done,
            not_applied: self.plan.effects.len() - i,
            archive_discarded,
        }))
    }
}
