//! Before the journal is believed: each effect it records as done is asked
//! of the world with the reads its executor's `check` makes (an upload's
//! HEAD, an IMS delete's GET, the archive's member table, the pod's data
//! file, IMS read back after a restart; never a bulk transfer). A forged or
//! outdated `done` (the archive removed since, an object deleted) must not
//! make a run say "already finished" while the world says otherwise.
//!
//! Where the world disagrees, the effect is done again when its plan still
//! holds (its ordinary precheck decides, after this), or the apply is
//! refused, naming why. The end-state verification is never taken from the
//! journal: it reads only, so it runs again. Assertions that IMS is empty
//! and phase markers describe a moment that later effects end: the journal
//! is their only witness.
use super::executor::{FAMILIES, World, of_family};
use super::store::PodCache;
use crate::backends::Backends;
use crate::journal::History;
use crate::plan::Plan;

/// Effects the journal records as done and the world does not show done.
#[derive(Debug)]
pub struct Dispute {
    /// The effects (the archive's are disputed together).
    pub ids: Vec<String>,
    /// What the world shows instead.
    pub why: String,
    /// Doing it again is not safe: the apply is refused.
    pub refuse: bool,
}

impl Dispute {
    pub fn redo(ids: Vec<String>, why: String) -> Dispute {
        Dispute {
            ids,
            why,
            refuse: false,
        }
    }

    pub fn refuse(ids: Vec<String>, why: String) -> Dispute {
        Dispute {
            ids,
            why,
            refuse: true,
        }
    }

    /// The report line: which effect, what the journal says, what the world says.
    pub fn line(&self) -> String {
        let what = match self.ids.as_slice() {
            [one] => format!("effect {one}: the journal records it as done"),
            [first, .., last] => format!(
                "effects {first} to {last} ({}): the journal records them as done",
                self.ids.len()
            ),
            [] => "the journal records it as done".into(),
        };
        let then = if self.refuse {
            "not done again"
        } else {
            "doing it again"
        };
        format!("{what}, but {}; {then}", self.why)
    }
}

/// The disputes of `history`'s done effects, in plan order: each family's
/// executor checks its own (`Executor::check`).
pub async fn disputes(
    plan: &Plan,
    backends: &Backends,
    history: &History,
    pods: &mut PodCache,
) -> Vec<Dispute> {
    let world = World {
        plan,
        backends,
        history,
    };
    let mut found = Vec::new();
    for family in FAMILIES {
        let done = of_family(plan, family, |i| {
            history.done.contains_key(&plan.effects[i].id)
        });
        if !done.is_empty() {
            found.extend(family.check(world, pods, &done).await);
        }
    }
    let position = |d: &Dispute| {
        plan.effects
            .iter()
            .position(|e| d.ids.first() == Some(&e.id))
    };
    found.sort_by_key(position);
    found
}

/// What is believed once the world was asked: the journal's done effects
/// without the disputed ones (done again) and without the verification
/// (run again).
pub fn believed(plan: &Plan, mut history: History, disputes: &[Dispute]) -> History {
    for id in disputes.iter().filter(|d| !d.refuse).flat_map(|d| &d.ids) {
        history.done.remove(id);
        history.skipped.remove(id);
    }
    for e in plan.effects.iter().filter(|e| e.effect.is_verification()) {
        history.done.remove(&e.id);
        history.skipped.remove(&e.id);
    }
    history
}
