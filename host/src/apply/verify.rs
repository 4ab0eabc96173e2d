//! The post-import verification as an executor: the `assert` of an
//! import's end state, evaluated when the loop reaches it (so `import`,
//! `apply PLAN` and `resume RUN` all end with it). It reads only, so it is
//! never taken from the journal (`confirm::believed`) and runs again.
use super::executor::{Applied, Executor, Failed, Failure, Fut};
use super::run::Run;
use crate::journal::Observed;
use crate::postcheck;
use std::ops::Range;
use tracing::Instrument;

/// The `import-end-state` assertion executor.
pub struct Verify;

impl Executor for Verify {
    fn name(&self) -> &'static str {
        "verification"
    }

    /// What it found, or, when IMS or S3 differ from the plan's end state,
    /// the failure naming each record and object.
    fn apply<'a, 'r>(
        &'a self,
        run: &'a mut Run<'r>,
        batch: Range<usize>,
    ) -> Fut<'a, Result<Applied, Failed>>
    where
        'r: 'a,
    {
        Box::pin(async move {
            let found = postcheck::check(run.plan, run.backends)
                .instrument(run.span(batch.start))
                .await;
            if !found.differences.is_empty() {
                return Err(Failure::Conflict(format!(
                    "{}:\n  - {}",
                    found.line(),
                    found.differences.join("\n  - ")
                ))
                .into());
            }
            run.report.verification = Some(found.clone());
            Ok(Applied::Done(vec![Observed {
                verification: Some(found),
                ..Observed::default()
            }]))
        })
    }
}
