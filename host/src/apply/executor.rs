//! The seam between the apply loop and the effect families. Every family
//! (archive writes, S3 uploads, IMS deletes, IMS assertions, IMS data files,
//! phase markers, the import's end-state verification) implements
//! `Executor`: `precheck` before anything runs, `apply` when reached, `check`
//! of what the journal says is done. `for_effect` is the one place that maps
//! an effect to its executor; the loop (`run.rs`), the prechecks and
//! `confirm.rs` know no effect kind.
//!
//! Outcomes are typed: a `Status` before the run, `Applied` or `Failed`
//! (with a `Failure`) when applied.
use super::run::Run;
use super::store::PodCache;
use super::{ApplyError, GateStop, Status};
use crate::archive::ArchiveReader;
use crate::backends::Backends;
use crate::journal::{FailureKind, History, JournalError, Observed};
use crate::plan::Plan;
use crate::plan::effect::{Assertion, Effect};
use futures::StreamExt;
use std::ops::Range;
use tracing::Instrument;

/// A boxed future: executors are trait objects.
pub type Fut<'a, T> = futures::future::BoxFuture<'a, T>;

/// Why an effect did not take effect. `Display` is the message the run
/// reports (and the journal's `failed` record holds).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The world moved since planning, in a way that makes the effect wrong.
    #[error("{0}")]
    Stale(String),
    /// The world is not what the effect expects or asserts (an answer other
    /// than the one a delete expects; IMS not empty; the end state differs).
    #[error("{0}")]
    Conflict(String),
    /// A service did not answer, or answered 5xx, every time it was tried.
    #[error("{request}: {last} (after {tries} tries)")]
    Transient {
        request: String,
        last: String,
        tries: u32,
    },
    /// A service answered a request with an unexpected status.
    #[error("{request}: HTTP {status}: {body}")]
    Http {
        request: String,
        status: u16,
        body: String,
    },
    /// The effect cannot run here (configuration missing or invalid).
    #[error("{0}")]
    Refused(String),
    /// HPE's race: the data-file writes did not take effect.
    #[error("{0}")]
    Race(String),
    /// A cancellation (signal) stopped it.
    #[error("interrupted")]
    Interrupted,
    /// The test hook's injected fault.
    #[error("injected fault (test hook)")]
    Injected,
    #[error(transparent)]
    S3(#[from] crate::s3::S3Error),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Kube(#[from] crate::k8s::ims::ImsKubeError),
    #[error(transparent)]
    ReadBack(#[from] crate::readback::ReadBackError),
    /// The journal could not record the effect's progress.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Anything else, with what was being done.
    #[error("{0}")]
    Failed(String),
}

impl Failure {
    /// How the journal's `failed` record classifies it.
    pub fn journal_kind(&self) -> FailureKind {
        match self {
            Failure::Injected => FailureKind::Injected,
            _ => FailureKind::Executor,
        }
    }
}

/// How a batch ended when it did not take effect.
#[derive(Debug)]
pub struct Failed {
    /// The effect of the batch that failed (those before it took effect).
    pub at: usize,
    pub failure: Failure,
    /// Archive effects discarded with the partial archive, when the
    /// executor knows better than the run's open archive.
    pub discarded: Option<usize>,
}

impl From<Failure> for Failed {
    fn from(failure: Failure) -> Failed {
        Failed {
            at: 0,
            failure,
            discarded: None,
        }
    }
}

impl From<JournalError> for Failed {
    fn from(e: JournalError) -> Failed {
        Failure::Journal(e).into()
    }
}

/// How a batch ended when it was applied.
pub enum Applied {
    /// Every effect took effect; what each observed.
    Done(Vec<Observed>),
    /// It stopped at a gate it raised itself, before changing anything.
    Stopped(GateStop),
}

/// What prechecks read: the plan, the world and the journal.
pub struct Prechecks<'a> {
    pub plan: &'a Plan,
    pub backends: &'a Backends,
    pub input: Option<&'a ArchiveReader>,
    pub history: &'a History,
    /// Per effect: behind an effect that changes what later ones find
    /// (a delete), still to do, or at all.
    pub behind_pending: Vec<bool>,
    pub behind_any: Vec<bool>,
}

impl Prechecks<'_> {
    /// Announced or failed by a stopped run: it may have taken effect.
    pub fn in_doubt(&self, i: usize) -> bool {
        let id = &self.plan.effects[i].id;
        self.history.in_doubt.contains(id) || self.history.failed.contains_key(id)
    }
}

/// The plan, the world and the journal, as `check` and `roll_back` read them.
#[derive(Clone, Copy)]
pub struct World<'a> {
    pub plan: &'a Plan,
    pub backends: &'a Backends,
    pub history: &'a History,
}

/// Something a stopped run left behind, undone before a resumed run goes on.
pub struct RolledBack {
    /// The effect it belonged to, for the journal.
    pub id: Option<String>,
    pub what: String,
    /// The line in the report.
    pub decision: String,
}

/// One effect family.
pub trait Executor: Sync {
    /// The family, in logs.
    fn name(&self) -> &'static str;

    /// Whether effect `i` already took effect, without asking the world
    /// (the journal says so, by default).
    fn already_done(&self, cx: &Prechecks<'_>, i: usize) -> Option<String> {
        cx.history
            .done
            .contains_key(&cx.plan.effects[i].id)
            .then(|| "the journal records it as done".into())
    }

    /// It writes into its bucket: a bucket that does not exist makes it stale.
    fn writes_bucket(&self) -> bool {
        false
    }

    /// Effects after it are judged against the world it leaves (a delete),
    /// so their precheck waits until they are reached.
    fn changes_what_follows(&self) -> bool {
        false
    }

    /// `precheck`: is the plan still valid for effect `i` (ready), has it
    /// already taken effect (done), did the world move (stale), or can only
    /// the world at its turn tell (deferred)?
    fn precheck<'a>(&'a self, _cx: &'a Prechecks<'a>, _i: usize) -> Fut<'a, Status> {
        Box::pin(async { Status::Ready })
    }

    /// A precheck of the family as a whole, after each effect's own
    /// (`mine` in plan order).
    fn precheck_family<'a>(
        &'a self,
        _cx: &'a Prechecks<'a>,
        _pods: &'a mut PodCache,
        _mine: &'a [usize],
        _statuses: &'a mut [Status],
    ) -> Fut<'a, ()> {
        Box::pin(async {})
    }

    /// `check`: the world agrees with the journal that `done` (this family's
    /// effects the journal records as done) took effect; a dispute for each
    /// that it does not. By default the journal is the only witness.
    fn check<'a>(
        &'a self,
        _world: World<'a>,
        _pods: &'a mut PodCache,
        _done: &'a [usize],
    ) -> Fut<'a, Vec<super::confirm::Dispute>> {
        Box::pin(async { Vec::new() })
    }

    /// Undoes what a stopped run left half done (before anything else).
    fn roll_back<'a>(&'a self, _world: World<'a>) -> Fut<'a, Result<Vec<RolledBack>, ApplyError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The precheck of a deferred effect `i`, now that it is reached.
    fn reached<'a, 'r>(&'a self, _run: &'a mut Run<'r>, _i: usize) -> Fut<'a, Status>
    where
        'r: 'a,
    {
        Box::pin(async { Status::Ready })
    }

    /// Whether a run of effects like `effect` goes as one batch.
    fn batchable(&self, _effect: &Effect) -> bool {
        false
    }

    /// Executes the effects `batch` (indices in the plan).
    fn apply<'a, 'r>(
        &'a self,
        run: &'a mut Run<'r>,
        batch: Range<usize>,
    ) -> Fut<'a, Result<Applied, Failed>>
    where
        'r: 'a;

    /// After the `done` records of `batch`.
    fn settle(&self, _run: &mut Run<'_>, _batch: Range<usize>) -> Result<(), Failed> {
        Ok(())
    }

    /// Its effects are counted by `settle`, not one by one.
    fn counted_apart(&self) -> bool {
        false
    }

    /// Effect `i` is skipped as already done.
    fn skipped(&self, _run: &mut Run<'_>, _i: usize) {}

    /// The run is interrupted: undo what is half done; says what it did.
    fn interrupted(&self, _run: &mut Run<'_>) -> Option<String> {
        None
    }
}

/// Every family, in the order their leftovers are rolled back.
pub const FAMILIES: [&dyn Executor; 7] = [
    &super::upload::Upload,
    &super::archive::Archive,
    &super::ims::Delete,
    &super::ims::Empty,
    &super::store::DataFiles,
    &super::verify::Verify,
    &Phase,
];

/// The one place that maps an effect to its executor.
pub fn for_effect(effect: &Effect) -> &'static dyn Executor {
    match effect {
        Effect::ArchiveAddObject { .. }
        | Effect::ArchiveAddJson { .. }
        | Effect::ArchiveAddIndex { .. } => &super::archive::Archive,
        Effect::S3UploadFromArchive { .. } => &super::upload::Upload,
        Effect::ImsDelete { .. } => &super::ims::Delete,
        Effect::Assert {
            assertion: Assertion::ImsEmpty { .. },
        } => &super::ims::Empty,
        Effect::Assert { .. } => &super::verify::Verify,
        Effect::ImsStoreWrite { .. } | Effect::ImsRestart => &super::store::DataFiles,
        Effect::Phase { .. } => &Phase,
    }
}

/// The indices of the effects of `family` in `plan` that `pick` selects.
pub fn of_family(plan: &Plan, family: &dyn Executor, pick: impl Fn(usize) -> bool) -> Vec<usize> {
    plan.effects
        .iter()
        .enumerate()
        .filter(|(i, e)| for_effect(&e.effect).name() == family.name() && pick(*i))
        .map(|(i, _)| i)
        .collect()
}

/// The disputes of the effects `done`, each checked by `dispute` (an
/// independent read), concurrently.
pub async fn disputes_of<'a, F, D>(done: &'a [usize], dispute: F) -> Vec<super::confirm::Dispute>
where
    F: Fn(usize) -> D,
    D: std::future::Future<Output = Option<super::confirm::Dispute>>,
{
    futures::stream::iter(done.iter().copied())
        .map(dispute)
        .buffered(super::batch::PRECHECK_CONCURRENCY)
        .filter_map(|d| async move { d })
        .collect()
        .await
}

/// The request that executes one effect against the services.
pub type Request = for<'x> fn(&'x Backends, &'x Effect) -> Fut<'x, Result<Observed, Failure>>;

/// Executes effect `i` with one `request`, in its span.
pub fn one_request<'a, 'r: 'a>(
    run: &'a mut Run<'r>,
    i: usize,
    request: Request,
) -> Fut<'a, Result<Applied, Failed>> {
    Box::pin(async move {
        let observed = request(run.backends, &run.plan.effects[i].effect)
            .instrument(run.span(i))
            .await?;
        Ok(Applied::Done(vec![observed]))
    })
}

/// Phase markers: nothing to do but say it.
pub struct Phase;

impl Executor for Phase {
    fn name(&self) -> &'static str {
        "phase"
    }

    fn apply<'a, 'r>(
        &'a self,
        run: &'a mut Run<'r>,
        batch: Range<usize>,
    ) -> Fut<'a, Result<Applied, Failed>>
    where
        'r: 'a,
    {
        Box::pin(async move {
            let e = &run.plan.effects[batch.start];
            if let Effect::Phase { name, .. } = &e.effect {
                let span = run.span(batch.start);
                tracing::info!(parent: &span, "phase `{name}` begins");
                run.opts.observer.phase(name);
            }
            Ok(Applied::Done(vec![Observed::default()]))
        })
    }
}

#[cfg(test)]
mod tests {
    /// The sources of the loop, the entry checks and the journal's
    /// confirmation: they dispatch through `for_effect`, never by kind.
    const KIND_BLIND: [(&str, &str); 6] = [
        ("mod.rs", include_str!("mod.rs")),
        ("run.rs", include_str!("run.rs")),
        ("entry.rs", include_str!("entry.rs")),
        ("confirm.rs", include_str!("confirm.rs")),
        ("batch.rs", include_str!("batch.rs")),
        ("report.rs", include_str!("report.rs")),
    ];

    #[test]
    fn the_loop_and_the_entry_checks_know_no_effect_kind() {
        let kind = concat!("Effect", "::");
        for (file, text) in KIND_BLIND {
            assert!(
                !text.contains(kind),
                "apply/{file} matches on an effect kind"
            );
        }
    }

    #[test]
    fn no_executor_outcome_is_a_string() {
        let files = [
            ("executor.rs", include_str!("executor.rs")),
            ("archive.rs", include_str!("archive.rs")),
            ("upload.rs", include_str!("upload.rs")),
            ("ims.rs", include_str!("ims.rs")),
            ("store.rs", include_str!("store.rs")),
            ("verify.rs", include_str!("verify.rs")),
            ("../postcheck.rs", include_str!("../postcheck.rs")),
        ];
        let string_error = concat!(", String", ">");
        for (file, text) in KIND_BLIND.into_iter().chain(files) {
            for line in text.lines().filter(|l| l.contains("Result<")) {
                assert!(
                    !line.contains(string_error),
                    "apply/{file} returns a string as an outcome: {line}"
                );
            }
        }
    }

    #[test]
    fn engine_apply_and_transfer_never_draw() {
        let files = [
            ("apply/mod.rs", include_str!("mod.rs")),
            ("apply/run.rs", include_str!("run.rs")),
            ("apply/archive.rs", include_str!("archive.rs")),
            ("apply/upload.rs", include_str!("upload.rs")),
            ("apply/store.rs", include_str!("store.rs")),
            ("engine/mod.rs", include_str!("../engine/mod.rs")),
            ("engine/schedule.rs", include_str!("../engine/schedule.rs")),
            ("transfer.rs", include_str!("../transfer.rs")),
            ("archive.rs", include_str!("../archive.rs")),
        ];
        let drawing = concat!("indicatif", "::");
        for (file, text) in files {
            assert!(
                !text.contains(drawing),
                "{file} draws; it must tell the observer"
            );
        }
    }
}
