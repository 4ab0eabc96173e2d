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
//!    half-applied plan can be applied again to completion.
pub mod archive;
mod upload;

use crate::archive::ArchiveReader;
use crate::backends::Backends;
use crate::plan::effect::Effect;
use crate::plan::{InputArchive, Plan, PlannedEffect, check};
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tracing::Instrument;

/// Test-only: apply fails just before the effect with this id, as if its
/// executor had failed (used to test half-applied plans and resume).
const FAULT_HOOK: &str = "IMSFLOW_TEST_FAIL_AT_EFFECT";
/// Prechecks (HEADs, GETs) in flight at once.
const PRECHECK_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// Already took effect; why we know.
    Done(String),
    /// The world moved since planning; what changed.
    Stale(String),
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub progress: bool,
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
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the plan cannot be applied; nothing was applied:\n  - {}", .0.join("\n  - "))]
    Refused(Vec<String>),
    #[error("{0}")]
    Failed(Box<PartialFailure>),
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

/// Checks a plan against the world, then executes it.
pub async fn apply(
    plan: &Plan,
    backends: &Backends,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let mut problems = check::check(plan);
    let input = match &plan.input {
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
    if !problems.is_empty() {
        return Err(ApplyError::Refused(problems));
    }
    let statuses = precheck(plan, backends, input.as_ref()).await;
    let stale: Vec<String> = plan
        .effects
        .iter()
        .zip(&statuses)
        .filter_map(|(e, s)| match s {
            Status::Stale(why) => Some(format!("stale: effect {}: {why}", e.id)),
            _ => None,
        })
        .collect();
    if !stale.is_empty() {
        return Err(ApplyError::Refused(stale));
    }
    Executor {
        plan,
        backends,
        input: input.as_ref(),
        statuses: &statuses,
        bar: bytes_bar(plan.total_bytes(), opts.progress),
        report: ApplyReport::default(),
        applied_kinds: BTreeMap::new(),
    }
    .run()
    .await
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

/// Every effect's status, prechecked concurrently, in plan order.
async fn precheck(plan: &Plan, backends: &Backends, input: Option<&ArchiveReader>) -> Vec<Status> {
    let s3 = backends.s3.as_deref();
    if let Some(why) = plan.target.as_ref().and_then(archive::done) {
        // The archive's effects took effect together; their sources may have
        // changed since, which no longer matters.
        return futures::stream::iter(&plan.effects)
            .map(|e| {
                let why = why.clone();
                async move {
                    if e.effect.archive_path().is_some() {
                        Status::Done(why)
                    } else {
                        precheck_one(s3, input, &e.effect).await
                    }
                }
            })
            .buffered(PRECHECK_CONCURRENCY)
            .collect()
            .await;
    }
    let mut missing_buckets = BTreeMap::new();
    if let Some(s3) = s3 {
        for bucket in plan.effects.iter().filter_map(|e| match &e.effect {
            Effect::S3UploadFromArchive { bucket, .. } => Some(bucket),
            _ => None,
        }) {
            if !missing_buckets.contains_key(bucket) {
                let missing = !s3.bucket_exists(bucket).await.unwrap_or(true);
                missing_buckets.insert(bucket.clone(), missing);
            }
        }
    }
    futures::stream::iter(&plan.effects)
        .map(|e| {
            let missing = e
                .effect
                .bucket()
                .is_some_and(|b| missing_buckets.get(b) == Some(&true));
            async move {
                if missing {
                    return Status::Stale(format!(
                        "bucket `{}` does not exist",
                        e.effect.bucket().unwrap_or_default()
                    ));
                }
                precheck_one(s3, input, &e.effect).await
            }
        })
        .buffered(PRECHECK_CONCURRENCY)
        .collect()
        .await
}

async fn precheck_one(
    s3: Option<&crate::s3::S3Store>,
    input: Option<&ArchiveReader>,
    effect: &Effect,
) -> Status {
    match effect {
        Effect::ArchiveAddObject { .. } => archive::precheck(s3, effect).await,
        Effect::S3UploadFromArchive { .. } => match s3 {
            Some(s3) => upload::precheck(s3, input, effect).await,
            None => Status::Stale("no S3 endpoint is configured".into()),
        },
        Effect::ArchiveAddJson { .. } | Effect::ArchiveAddIndex { .. } | Effect::Phase { .. } => {
            Status::Ready
        }
        other => Status::Stale(format!(
            "this imsflow cannot execute `{}` effects yet",
            other.kind()
        )),
    }
}

/// One apply in progress.
struct Executor<'a> {
    plan: &'a Plan,
    backends: &'a Backends,
    input: Option<&'a ArchiveReader>,
    statuses: &'a [Status],
    bar: indicatif::ProgressBar,
    report: ApplyReport,
    applied_kinds: BTreeMap<&'static str, usize>,
}

impl Executor<'_> {
    async fn run(mut self) -> Result<ApplyReport, ApplyError> {
        let effects = &self.plan.effects;
        let last_archive = effects
            .iter()
            .rposition(|e| e.effect.archive_path().is_some());
        let fault = std::env::var(FAULT_HOOK).ok();
        let mut session: Option<archive::ArchiveSession> = None;
        let mut i = 0;
        while i < effects.len() {
            if let Status::Done(why) = &self.statuses[i] {
                tracing::info!(effect = %effects[i].id, "already done: {why}");
                self.report.already_done += 1;
                if last_archive == Some(i) {
                    self.report.archive = self.plan.target.as_ref().map(|t| t.final_path());
                }
                i += 1;
                continue;
            }
            // A run of object effects streams into the archive concurrently.
            let run = effects[i..]
                .iter()
                .take_while(|e| matches!(e.effect, Effect::ArchiveAddObject { .. }))
                .count()
                .max(1);
            let batch = &effects[i..i + run];
            if let Some(at) = batch.iter().position(|e| Some(&e.id) == fault.as_ref()) {
                let discarded = session.as_ref().map_or(0, |s| s.written);
                return Err(self.failure(
                    i + at,
                    format!("injected fault ({FAULT_HOOK})"),
                    discarded,
                ));
            }
            let span = tracing::info_span!("effect", id = %batch[0].id, kind = batch[0].effect.kind(), step = %batch[0].step);
            if batch[0].effect.archive_path().is_some() && session.is_none() {
                let target = self.plan.target.as_ref().ok_or_else(|| {
                    ApplyError::Refused(vec!["archive effects without an output target".into()])
                })?;
                session =
                    Some(archive::ArchiveSession::open(target).map_err(|m| self.failure(i, m, 0))?);
            }
            match &batch[0].effect {
                Effect::ArchiveAddObject { .. } => {
                    let open = session.take().expect("opened above");
                    let discarded = open.written;
                    let s3 = self.backends.s3.clone().ok_or_else(|| {
                        ApplyError::Refused(vec!["no S3 endpoint is configured".into()])
                    })?;
                    let next = open
                        .add_objects(s3, batch, self.bar.clone())
                        .await
                        .map_err(|(at, m)| self.failure(i + at, m, discarded + at))?;
                    session = Some(next);
                }
                Effect::ArchiveAddJson { .. } | Effect::ArchiveAddIndex { .. } => {
                    let open = session.as_mut().expect("opened above");
                    let _entered = span.enter();
                    if let Err(m) = open.add_document(&batch[0].effect) {
                        let discarded = open.written;
                        return Err(self.failure(i, m, discarded));
                    }
                    self.bar.inc(batch[0].effect.size().unwrap_or(0));
                }
                Effect::S3UploadFromArchive { .. } => {
                    let (s3, input) = match (self.backends.s3.as_deref(), self.input) {
                        (Some(s3), Some(input)) => (s3, input),
                        _ => {
                            return Err(ApplyError::Refused(vec![
                                "uploads need S3 and an input archive".into(),
                            ]));
                        }
                    };
                    let discarded = session.as_ref().map_or(0, |s| s.written);
                    let note = upload::apply(s3, input, &batch[0].effect)
                        .instrument(span.clone())
                        .await
                        .map_err(|m| self.failure(i, m, discarded))?;
                    if let Some(note) = note {
                        tracing::warn!("{note}");
                        self.report.notes.push(note);
                    }
                    self.bar.inc(batch[0].effect.size().unwrap_or(0));
                    self.count(&batch[0].effect);
                }
                Effect::Phase { name, .. } => {
                    tracing::info!(parent: &span, "phase `{name}` begins");
                    self.count(&batch[0].effect);
                }
                other => {
                    let discarded = session.as_ref().map_or(0, |s| s.written);
                    return Err(self.failure(
                        i,
                        format!("this imsflow cannot execute `{}` effects", other.kind()),
                        discarded,
                    ));
                }
            }
            self.report.applied += batch.len();
            i += batch.len();
            if last_archive.is_some_and(|last| last < i)
                && let Some(open) = session.take()
            {
                let written = open.written;
                let path = open
                    .finish()
                    .map_err(|m| self.failure(last_archive.unwrap_or(0), m, written))?;
                *self.applied_kinds.entry("archive effects").or_default() += written;
                self.report.archive = Some(path);
            }
        }
        self.bar.finish_and_clear();
        Ok(self.report)
    }

    fn count(&mut self, effect: &Effect) {
        *self.applied_kinds.entry(effect.kind()).or_default() += 1;
    }

    /// The truthful account of a failure at effect `i`.
    fn failure(&self, i: usize, message: String, archive_discarded: usize) -> ApplyError {
        self.bar.finish_and_clear();
        let e: &PlannedEffect = &self.plan.effects[i];
        tracing::error!(effect = %e.id, "{message}");
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
