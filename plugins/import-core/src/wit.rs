//! The thin layer between the pure core and the WIT types (feature `pdk`):
//! effect and head conversions, problem lists as step errors, and the one
//! `run` every strategy plugin calls.
use crate::archive::ArchiveData;
use crate::effect::{DeleteMode, Effect, Kind, Precondition};
use crate::ims::Ims;
use crate::modes::{self, Inputs, Mode, Options};
use crate::restore::S3State;
use crate::s3::Head;
use imsflow_pdk as pdk;

pub fn kind(k: Kind) -> pdk::ImsKind {
    match k {
        Kind::Image => pdk::ImsKind::Image,
        Kind::PublicKey => pdk::ImsKind::PublicKey,
        Kind::Recipe => pdk::ImsKind::Recipe,
        Kind::Job => pdk::ImsKind::Job,
    }
}

pub fn effect(e: Effect) -> pdk::Effect {
    match e {
        Effect::Phase { name, description } => pdk::Effect::Phase(pdk::Phase { name, description }),
        Effect::ArchiveAddObject {
            bucket,
            key,
            path,
            size,
            etag,
        } => pdk::Effect::ArchiveAddObject(pdk::ArchiveAddObject {
            source: pdk::ObjectRef { bucket, key },
            path,
            expect: Some(pdk::ObjectExpect { size, etag }),
        }),
        Effect::ArchiveAddIndex {
            path,
            json,
            entries_at,
        } => pdk::Effect::ArchiveAddIndex(pdk::ArchiveAddIndex {
            path,
            json,
            entries_at,
        }),
        Effect::S3UploadFromArchive(u) => {
            pdk::Effect::S3UploadFromArchive(pdk::S3UploadFromArchive {
                path: u.path,
                target: pdk::ObjectRef {
                    bucket: u.bucket,
                    key: u.key,
                },
                size: u.size,
                sha256: u.sha256,
                content_type: u.content_type,
                metadata: u.metadata.into_iter().collect(),
                part_size: u.part_size,
                etag: u.etag,
                precondition: match u.precondition {
                    Precondition::Absent => pdk::TargetState::Absent,
                    Precondition::Etag { etag } => pdk::TargetState::Etag(etag),
                },
            })
        }
        Effect::ImsDelete {
            ims_kind,
            id,
            name,
            delete,
            expect_json,
        } => pdk::Effect::ImsDelete(pdk::ImsDelete {
            kind: kind(ims_kind),
            id,
            name,
            mode: match delete {
                DeleteMode::Soft => pdk::ImsDeleteMode::Soft,
                DeleteMode::Hard { cascade } => pdk::ImsDeleteMode::Hard(cascade),
                DeleteMode::Purge => pdk::ImsDeleteMode::Purge,
            },
            expect_json,
        }),
        Effect::AssertImsEmpty {
            live,
            deleted,
            jobs,
        } => pdk::Effect::Assert(pdk::Assertion::ImsEmpty(pdk::ImsEmpty {
            live,
            deleted,
            jobs,
        })),
        Effect::ImsStoreWrite {
            ims_kind,
            records_json,
            expect_json,
            summary,
        } => pdk::Effect::ImsStoreWrite(pdk::ImsStoreWrite {
            kind: kind(ims_kind),
            deleted: false,
            records_json,
            expect_json,
            summary: pdk::StoreWriteSummary {
                added: summary.added,
                replaced: summary.replaced,
                removed: summary.removed,
            },
        }),
        Effect::ImsRestart => pdk::Effect::ImsRestart,
        Effect::VerifyEndState => pdk::Effect::Assert(pdk::Assertion::ImportEndState),
    }
}

pub fn head(h: pdk::ObjectHead) -> Head {
    Head {
        size: h.size,
        etag: crate::s3::bare_etag(&h.etag),
        content_type: h.content_type,
        metadata: h.metadata.into_iter().collect(),
        last_modified: h.last_modified,
        accept_ranges: h.accept_ranges,
    }
}

/// Problems as one step error that lists them all.
pub fn problems(what: &str, problems: Vec<String>) -> pdk::StepError {
    let n = problems.len();
    let list: String = problems.iter().map(|p| format!("\n  - {p}")).collect();
    pdk::StepError::Aborted(format!(
        "{what}: {n} problem{}:{list}",
        if n == 1 { "" } else { "s" }
    ))
}

/// The `with` of a strategy plugin.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyWith {
    /// The output of `archive-read`.
    pub archive: ArchiveData,
    /// The output of `ims-fetch` (with `include_deleted = true`).
    pub ims: Ims,
    /// The output of `s3-restore-plan`.
    pub s3: S3State,
    #[serde(default)]
    pub ignore_running_jobs: bool,
    /// `created` of the backup's `export.json` (`{{ run.timestamp }}`).
    pub created: String,
}

/// Plans `mode`: the effects, and the review as the step's output.
pub fn run_mode(mode: Mode, with: StrategyWith) -> Result<pdk::StepOutput, pdk::StepError> {
    let options = Options {
        ignore_running_jobs: with.ignore_running_jobs,
        created: with.created,
    };
    let inputs = Inputs {
        archive: &with.archive,
        current: &with.ims,
        s3: &with.s3,
        options: &options,
    };
    let planned =
        modes::plan(mode, &inputs).map_err(|p| problems(&format!("import {}", mode.name()), p))?;
    for w in &planned.review.warnings {
        pdk::warn(w);
    }
    let effects = planned.effects.into_iter().map(effect).collect();
    Ok(pdk::output(&planned.review, effects))
}

/// `describe` of a strategy plugin, with the mode's effect kinds.
pub fn describe(mode: Mode, name: &str, version: &str, description: &str) -> pdk::PluginInfo {
    pdk::PluginInfo {
        name: name.into(),
        version: version.into(),
        description: description.into(),
        services: Vec::new(),
        effects: mode
            .effect_kinds()
            .iter()
            .map(|k| k.as_str().into())
            .collect(),
    }
}
