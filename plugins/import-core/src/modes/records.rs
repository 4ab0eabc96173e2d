//! Phase "records": which exported records the import writes, and what it
//! does with each (`add` leaves out the ids that are live).
use super::review::{Action, Change, FieldChange, RecordAction};
use super::{Inputs, Mode};
use crate::effect::Kind;
use crate::ims::{Ims, name};
use serde_json::Value;
use std::collections::BTreeSet;

/// The records imported (live, by kind), and every exported record's action.
pub(super) fn records(mode: Mode, inputs: &Inputs) -> (Ims, Vec<RecordAction>) {
    let mut imported = Ims::default();
    let mut actions = Vec::new();
    for kind in Kind::RECORDS {
        for (id, rec) in inputs.archive.ims.live(kind) {
            let live = inputs.current.live(kind).get(id);
            let (action, changes) = match (mode, live) {
                (_, None) => (Action::Add, Vec::new()),
                (Mode::Add, Some(_)) => (Action::Skip, Vec::new()),
                (Mode::Update, Some(cur)) if cur == rec => (Action::Keep, Vec::new()),
                (_, Some(cur)) => (Action::Replace, diff(cur, rec)),
            };
            if action != Action::Skip {
                imported.live_mut(kind).insert(id.clone(), rec.clone());
            }
            actions.push(RecordAction {
                kind,
                id: id.clone(),
                name: name(rec).into(),
                action,
                diff: changes,
            });
        }
    }
    (imported, actions)
}

/// Top-level fields that differ between the current and the exported record.
pub fn diff(current: &Value, exported: &Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let cur = current.as_object().unwrap_or(&empty);
    let exp = exported.as_object().unwrap_or(&empty);
    let fields: BTreeSet<&String> = cur.keys().chain(exp.keys()).collect();
    fields
        .into_iter()
        .filter_map(|f| {
            let (from, to) = (cur.get(f), exp.get(f));
            let change = match (from, to) {
                (Some(a), Some(b)) if a == b => return None,
                (Some(_), Some(_)) => Change::Changed,
                (None, Some(_)) => Change::Added,
                (Some(_), None) => Change::Removed,
                (None, None) => return None,
            };
            Some(FieldChange {
                field: f.clone(),
                change,
                from: from.cloned(),
                to: to.cloned(),
            })
        })
        .collect()
}
