//! The effects, phase by phase: every phase marker even when the phase is
//! empty (so that a gate `before_phase = "delete"` always lands), and the
//! backup and the end-state verification only when the plan changes
//! anything.
use super::review::DeleteAction;
use super::{Inputs, Mode, PHASES, deleted_of};
use crate::backup::{self, BackupObject};
use crate::effect::{DeleteMode, Effect};
use serde_json::Value;

/// What the phases decided, to be put in order.
pub(super) struct Work<'a> {
    pub backup: &'a [BackupObject],
    pub deletes: &'a [DeleteAction],
    pub uploads: Vec<Effect>,
    pub writes: Vec<Effect>,
    pub restart: bool,
    pub changes: bool,
}

pub(super) fn effects(mode: Mode, inputs: &Inputs, work: Work) -> Vec<Effect> {
    let current = inputs.current;
    let mut effects = Vec::new();
    let phase = |effects: &mut Vec<Effect>, n: usize| {
        let (name, description) = PHASES[n];
        effects.push(Effect::Phase {
            name: name.into(),
            description: description.into(),
        });
    };
    phase(&mut effects, 0);
    phase(&mut effects, 1);
    if work.changes {
        effects.extend(backup::effects(
            current,
            work.backup,
            &inputs.options.created,
            &format!("imsflow import {}", mode.name()),
        ));
    }
    phase(&mut effects, 2);
    for d in work.deletes {
        effects.push(Effect::ImsDelete {
            ims_kind: d.kind,
            id: d.id.clone(),
            name: d.name.clone(),
            delete: d.delete,
            expect_json: serde_json::to_string(record_of(inputs, d)).expect("serialisable"),
        });
    }
    phase(&mut effects, 3);
    match mode {
        Mode::Overwrite => effects.push(Effect::AssertImsEmpty {
            live: true,
            deleted: true,
            jobs: true,
        }),
        Mode::SoftOverwrite => effects.push(Effect::AssertImsEmpty {
            live: true,
            deleted: false,
            jobs: true,
        }),
        Mode::Add | Mode::Update => {}
    }
    phase(&mut effects, 4);
    effects.extend(work.uploads);
    phase(&mut effects, 5);
    effects.extend(work.writes);
    if work.restart {
        effects.push(Effect::ImsRestart);
    }
    phase(&mut effects, 6);
    if work.changes {
        effects.push(Effect::VerifyEndState);
    }
    effects
}

/// The record a delete acts on, as seen (its `expect-json`): the deleted one
/// for a purge, else the live one.
fn record_of<'a>(inputs: &'a Inputs, d: &DeleteAction) -> &'a Value {
    let store = if d.delete == DeleteMode::Purge {
        deleted_of(inputs.current, d.kind)
    } else {
        inputs.current.live(d.kind)
    };
    &store[&d.id]
}
