//! Phase "delete": the purges, hard and soft deletes of records and jobs,
//! in HPE's order, with the S3 objects each removes from its key.
use super::review::DeleteAction;
use super::{Inputs, Mode, Notes, deleted_of};
use crate::effect::{DeleteMode, Kind};
use crate::ims::{Ims, link_path, name};
use crate::restore;
use serde_json::Value;
use std::collections::BTreeSet;

/// The deletes of `mode`. `imported` are the records the import writes,
/// `needed` the S3 objects they need (a cascade must not lose one the
/// archive cannot restore).
pub(super) fn deletes(
    mode: Mode,
    inputs: &Inputs,
    imported: &Ims,
    needed: &BTreeSet<String>,
    notes: &mut Notes,
) -> Vec<DeleteAction> {
    let current = inputs.current;
    let mut d = Deleter {
        inputs,
        needed,
        notes,
        uncascaded: false,
        kept_identical: false,
    };
    let mut deletes = Vec::new();
    match mode {
        Mode::Add | Mode::Update => {
            for kind in Kind::RECORDS {
                for (id, rec) in deleted_of(current, kind) {
                    if imported.live(kind).contains_key(id) {
                        deletes.push(d.delete(
                            kind,
                            id,
                            rec,
                            DeleteMode::Purge,
                            "a deleted record with an id this import adds",
                        ));
                    }
                }
            }
            if mode == Mode::Add && !deletes.is_empty() {
                d.notes.differences.push("add purges deleted records whose id it imports (HPE's add leaves the id both live and deleted)".into());
            }
        }
        Mode::Overwrite => {
            for kind in Kind::RECORDS {
                for (id, rec) in deleted_of(current, kind) {
                    deletes.push(d.delete(
                        kind,
                        id,
                        rec,
                        DeleteMode::Purge,
                        "overwrite purges every deleted record",
                    ));
                }
                for (id, rec) in current.live(kind) {
                    deletes.push(d.hard_delete(
                        kind,
                        id,
                        rec,
                        "overwrite hard-deletes every record",
                    ));
                }
            }
        }
        Mode::SoftOverwrite => {
            for kind in Kind::RECORDS {
                for (id, rec) in deleted_of(current, kind) {
                    if imported.live(kind).contains_key(id) {
                        deletes.push(d.delete(
                            kind,
                            id,
                            rec,
                            DeleteMode::Purge,
                            "a deleted record with an id this import writes",
                        ));
                    }
                }
                for (id, rec) in current.live(kind) {
                    if imported.live(kind).contains_key(id) {
                        deletes.push(d.hard_delete(kind, id, rec, "its id is imported"));
                    } else {
                        deletes.push(d.delete(
                            kind,
                            id,
                            rec,
                            DeleteMode::Soft,
                            "not in the archive: kept as deleted",
                        ));
                    }
                }
            }
        }
    }
    if matches!(mode, Mode::Overwrite | Mode::SoftOverwrite) {
        for (id, job) in &current.jobs {
            deletes.push(d.delete(Kind::Job, id, job, DeleteMode::Soft, "every job is deleted"));
        }
    }
    if d.kept_identical {
        d.notes.differences.push(
            "a hard delete does not cascade when its artifacts are exactly what the import uploads again (HPE deletes and re-uploads them)"
                .into(),
        );
    }
    if d.uncascaded {
        d.notes.differences.push("a hard delete does not cascade where that would delete an object the import needs and cannot restore".into());
    }
    deletes
}

struct Deleter<'a> {
    inputs: &'a Inputs<'a>,
    needed: &'a BTreeSet<String>,
    notes: &'a mut Notes,
    /// A hard delete was planned without the cascade HPE would send.
    uncascaded: bool,
    /// A hard delete kept artifacts that the import would restore identically.
    kept_identical: bool,
}

impl Deleter<'_> {
    /// The S3 objects a delete of `record` removes from their keys (for
    /// images, the manifest and what it lists; for recipes, the archive),
    /// as far as they exist; `Err` when a manifest that matters is unread.
    fn objects_of(&self, kind: Kind, record: &Value) -> Result<Vec<String>, String> {
        if !matches!(kind, Kind::Image | Kind::Recipe) {
            return Ok(Vec::new());
        }
        let Some(link) = link_path(record) else {
            return Ok(Vec::new());
        };
        let s3 = self.inputs.s3;
        match s3.objects.get(link) {
            None => return Err(format!("s3-restore-plan did not look at {link}")),
            Some(None) => return Ok(Vec::new()),
            Some(Some(_)) => {}
        }
        let mut out = vec![link.to_string()];
        if kind == Kind::Image {
            match s3.manifests.get(link) {
                Some(m) if m.error.is_none() => out.extend(
                    m.links
                        .iter()
                        .filter(|l| matches!(s3.objects.get(l.as_str()), Some(Some(_))))
                        .cloned(),
                ),
                Some(m) => {
                    return Err(format!(
                        "its manifest {link} cannot be read: {}",
                        m.error.as_deref().unwrap_or_default()
                    ));
                }
                None => return Err(format!("s3-restore-plan did not read its manifest {link}")),
            }
        }
        Ok(out)
    }

    /// Whether the object at `url` is now exactly what the archive holds
    /// for it (ETag and size).
    fn identical(&self, url: &str) -> bool {
        let (Some(Some(now)), Some(entry)) = (
            self.inputs.s3.objects.get(url),
            self.inputs.archive.artifact(url),
        ) else {
            return false;
        };
        entry.etag.as_deref() == Some(crate::s3::bare_etag(&now.etag).as_str())
            && entry.size.or(entry.member_size) == Some(now.size)
            && entry.problems.is_empty()
    }

    fn delete(
        &mut self,
        kind: Kind,
        id: &str,
        record: &Value,
        delete: DeleteMode,
        why: &str,
    ) -> DeleteAction {
        let moves_objects = matches!(
            delete,
            DeleteMode::Soft | DeleteMode::Purge | DeleteMode::Hard { cascade: true }
        );
        let objects = if moves_objects {
            self.objects_of(kind, record).unwrap_or_else(|e| {
                self.notes.problems.push(format!(
                    "cannot plan the delete of {} {id}: {e}",
                    kind.noun()
                ));
                Vec::new()
            })
        } else {
            Vec::new()
        };
        DeleteAction {
            kind,
            id: id.into(),
            name: name(record).into(),
            delete,
            why: why.into(),
            objects,
        }
    }

    /// A hard delete, cascading when the record's link exists in S3 (as HPE
    /// decides), unless the cascade would delete an object that the import
    /// needs and the archive cannot restore.
    fn hard_delete(&mut self, kind: Kind, id: &str, record: &Value, why: &str) -> DeleteAction {
        let exists = link_path(record)
            .is_some_and(|l| matches!(self.inputs.s3.objects.get(l), Some(Some(_))));
        let cascade = matches!(kind, Kind::Image | Kind::Recipe) && exists;
        let mut action = self.delete(kind, id, record, DeleteMode::Hard { cascade }, why);
        let needed = self.needed;
        if cascade
            && !action.objects.is_empty()
            && action
                .objects
                .iter()
                .all(|u| needed.contains(u) && self.identical(u))
        {
            // The cascade would delete exactly what the import puts back byte
            // for byte: HPE's delete and re-upload, without the traffic, and
            // without uploads that S3 would see as already done.
            action.delete = DeleteMode::Hard { cascade: false };
            action.objects.clear();
            self.kept_identical = true;
            return action;
        }
        if cascade {
            let archive = self.inputs.archive;
            let lost: Vec<&String> = action
                .objects
                .iter()
                .filter(|u| {
                    needed.contains(*u)
                        && archive
                            .artifact(u)
                            .is_none_or(|a| restore::upload_of(u, a).is_err())
                })
                .collect();
            if !lost.is_empty() {
                self.notes.warnings.push(format!(
                    "{} {id} is hard-deleted without cascade: a cascade would delete {} that this import needs and the archive cannot restore",
                    kind.noun(),
                    lost.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
                action.delete = DeleteMode::Hard { cascade: false };
                action.objects.clear();
                self.uncascaded = true;
            }
        }
        action
    }
}
