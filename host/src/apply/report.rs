//! The account of an apply that failed part-way: what ran, what did not,
//! and what to do.
use super::executor::Failure;
use std::collections::BTreeMap;
use std::fmt;

/// A failure part-way: what ran, what did not, what to do.
#[derive(Debug)]
pub struct PartialFailure {
    pub effect: String,
    pub line: String,
    /// Why the effect did not take effect.
    pub failure: Failure,
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
            self.effect, self.line, self.failure
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
        match self.not_applied.saturating_sub(1) {
            0 => writeln!(f, "  not applied: this effect")?,
            after => writeln!(f, "  not applied: this effect and the {after} after it")?,
        }
        write!(
            f,
            "  Fix the cause, then apply the same plan again: effects that already took effect are detected and skipped."
        )
    }
}
