//! Phase "store-write": IMS's data files (not S3): the merged store of each
//! kind as the deletes leave it, written only where it changes.
use super::review::StoreWriteReview;
use super::{Inputs, Mode};
use crate::effect::{Effect, Kind, StoreSummary};
use crate::ims::{Ims, Records, created};
use serde_json::Value;
use std::collections::BTreeMap;

pub(super) struct DataFiles {
    /// `ims-store-write` effects, by kind.
    pub writes: Vec<Effect>,
    pub reviews: Vec<StoreWriteReview>,
    /// The live ids after the import, by kind key (written or not).
    pub live: BTreeMap<String, Vec<String>>,
}

/// Whether the mode empties IMS before it writes (the export is then the
/// whole live store).
pub(super) fn empties(mode: Mode) -> bool {
    matches!(mode, Mode::Overwrite | Mode::SoftOverwrite)
}

pub(super) fn data_files(mode: Mode, inputs: &Inputs, imported: &Ims) -> DataFiles {
    let empties = empties(mode);
    let mut files = DataFiles {
        writes: Vec::new(),
        reviews: Vec::new(),
        live: BTreeMap::new(),
    };
    for kind in Kind::RECORDS {
        let now = inputs.current.live(kind);
        let base: Records = if empties { Records::new() } else { now.clone() };
        let mut merged = base.clone();
        merged.extend(
            imported
                .live(kind)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        files
            .live
            .insert(kind.key().into(), merged.keys().cloned().collect());
        if merged == base {
            continue;
        }
        let summary = StoreSummary {
            added: merged
                .keys()
                .filter(|id| !now.contains_key(*id))
                .cloned()
                .collect(),
            replaced: merged
                .iter()
                .filter(|(id, r)| now.get(*id).is_some_and(|c| empties || c != *r))
                .map(|(id, _)| id.clone())
                .collect(),
            removed: now
                .keys()
                .filter(|id| !merged.contains_key(*id))
                .cloned()
                .collect(),
        };
        files.reviews.push(StoreWriteReview {
            kind,
            count: merged.len(),
            summary: summary.clone(),
        });
        files.writes.push(Effect::ImsStoreWrite {
            ims_kind: kind,
            records_json: list_by_created(&merged),
            expect_json: list_by_id(now),
            summary,
        });
    }
    files
}

/// Records as a JSON list, by id (the order of `ims-fetch`'s maps): the
/// `expect-json` of a data-file write.
fn list_by_id(records: &Records) -> String {
    serde_json::to_string(&records.values().collect::<Vec<_>>()).expect("serialisable")
}

/// Records as HPE writes a data file: sorted by `created` (stable; equal
/// times by id).
fn list_by_created(records: &Records) -> String {
    let mut list: Vec<&Value> = records.values().collect();
    list.sort_by(|a, b| created(a).cmp(created(b)));
    serde_json::to_string(&list).expect("serialisable")
}
