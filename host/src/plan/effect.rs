//! Effects as the host keeps them: plain data, converted once from the WIT
//! variant (`sandbox::convert`), serialised into plan files and read back.
//! Nothing a plugin sent is dropped here: every field of the contract lives on.
use imsflow_kinds::EffectKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImsKind {
    Image,
    Recipe,
    PublicKey,
    Job,
}

impl ImsKind {
    pub fn name(self) -> &'static str {
        match self {
            ImsKind::Image => "image",
            ImsKind::Recipe => "recipe",
            ImsKind::PublicKey => "public-key",
            ImsKind::Job => "job",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode", deny_unknown_fields)]
pub enum DeleteMode {
    Soft,
    Hard { cascade: bool },
    Purge,
}

/// What an upload expects at its target when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "expect", deny_unknown_fields)]
pub enum TargetState {
    Absent,
    Etag { etag: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSummary {
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "assert", deny_unknown_fields)]
pub enum Assertion {
    ImsEmpty {
        live: bool,
        deleted: bool,
        jobs: bool,
    },
    /// An import's end: IMS and S3 hold what the plan's effects say they
    /// now hold (`postcheck`). Reads only, so it is run again on every apply.
    ImportEndState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum Effect {
    ArchiveAddObject {
        bucket: String,
        key: String,
        path: String,
        size: u64,
        etag: String,
    },
    ArchiveAddJson {
        path: String,
        json: String,
    },
    ArchiveAddIndex {
        path: String,
        json: String,
        entries_at: String,
    },
    S3UploadFromArchive {
        path: String,
        bucket: String,
        key: String,
        size: u64,
        sha256: Option<String>,
        content_type: Option<String>,
        metadata: BTreeMap<String, String>,
        part_size: Option<u64>,
        /// The ETag the object had when exported, which the upload should reproduce.
        etag: Option<String>,
        precondition: TargetState,
    },
    ImsDelete {
        ims_kind: ImsKind,
        id: String,
        name: String,
        delete: DeleteMode,
        /// `sha256:<hex>` of the record as planned.
        fingerprint: String,
    },
    ImsStoreWrite {
        ims_kind: ImsKind,
        deleted: bool,
        records_json: String,
        /// `sha256:<hex>` of the records of that kind as planned.
        fingerprint: String,
        summary: StoreSummary,
    },
    ImsRestart,
    Assert {
        assertion: Assertion,
    },
    Phase {
        name: String,
        description: String,
    },
}

/// Every effect kind, as written in `grants.effects` and `describe`: the
/// one list in `imsflow-kinds` (plugins/kinds), which the plugins share.
pub const KINDS: &[&str] = &imsflow_kinds::EFFECT_KINDS;

/// Something in the world an effect was planned against. `apply` checks
/// each before anything runs and refuses a plan whose dependencies moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "on", deny_unknown_fields)]
pub enum Dependency {
    /// An S3 object that must still have this size and ETag.
    S3Object {
        bucket: String,
        key: String,
        size: u64,
        etag: String,
    },
    /// An upload target that must still be as planned (absent, or this ETag).
    S3Target {
        bucket: String,
        key: String,
        state: TargetState,
    },
    /// An IMS record whose fingerprint must still match.
    ImsRecord {
        ims_kind: ImsKind,
        id: String,
        fingerprint: String,
    },
    /// The records of one IMS kind (live or deleted) as a whole.
    ImsRecords {
        ims_kind: ImsKind,
        deleted: bool,
        fingerprint: String,
    },
}

impl Effect {
    /// The kind's name, e.g. `archive-add-json`.
    pub fn kind(&self) -> &'static str {
        let kind = match self {
            Effect::ArchiveAddObject { .. } => EffectKind::ArchiveAddObject,
            Effect::ArchiveAddJson { .. } => EffectKind::ArchiveAddJson,
            Effect::ArchiveAddIndex { .. } => EffectKind::ArchiveAddIndex,
            Effect::S3UploadFromArchive { .. } => EffectKind::S3UploadFromArchive,
            Effect::ImsDelete { .. } => EffectKind::ImsDelete,
            Effect::ImsStoreWrite { .. } => EffectKind::ImsStoreWrite,
            Effect::ImsRestart => EffectKind::ImsRestart,
            Effect::Assert { .. } => EffectKind::Assert,
            Effect::Phase { .. } => EffectKind::Phase,
        };
        kind.as_str()
    }

    /// Bytes the effect moves or writes, when it moves any.
    pub fn size(&self) -> Option<u64> {
        match self {
            Effect::ArchiveAddObject { size, .. } | Effect::S3UploadFromArchive { size, .. } => {
                Some(*size)
            }
            Effect::ArchiveAddJson { json, .. } | Effect::ArchiveAddIndex { json, .. } => {
                Some(json.len() as u64)
            }
            Effect::ImsStoreWrite { records_json, .. } => Some(records_json.len() as u64),
            _ => None,
        }
    }

    /// Bytes the effect occupies in memory and in a plan, for output limits.
    pub fn footprint(&self) -> u64 {
        let text = match self {
            Effect::ArchiveAddJson { json, .. } | Effect::ArchiveAddIndex { json, .. } => {
                json.len()
            }
            Effect::ImsStoreWrite { records_json, .. } => records_json.len(),
            _ => 0,
        };
        text as u64 + 256
    }

    /// The archive member the effect writes, if any.
    pub fn archive_path(&self) -> Option<&str> {
        match self {
            Effect::ArchiveAddObject { path, .. }
            | Effect::ArchiveAddJson { path, .. }
            | Effect::ArchiveAddIndex { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The S3 bucket the effect reads or writes, which its step must grant.
    /// Whether executing it needs the CSM (S3, the gateway, Kubernetes).
    pub fn needs_csm(&self) -> bool {
        !matches!(
            self,
            Effect::ArchiveAddJson { .. } | Effect::ArchiveAddIndex { .. } | Effect::Phase { .. }
        )
    }

    pub fn bucket(&self) -> Option<&str> {
        match self {
            Effect::ArchiveAddObject { bucket, .. }
            | Effect::S3UploadFromArchive { bucket, .. } => Some(bucket),
            _ => None,
        }
    }

    /// What the effect was planned against.
    pub fn depends_on(&self) -> Vec<Dependency> {
        match self {
            Effect::ArchiveAddObject {
                bucket,
                key,
                size,
                etag,
                ..
            } => vec![Dependency::S3Object {
                bucket: bucket.clone(),
                key: key.clone(),
                size: *size,
                etag: etag.clone(),
            }],
            Effect::S3UploadFromArchive {
                bucket,
                key,
                precondition,
                ..
            } => vec![Dependency::S3Target {
                bucket: bucket.clone(),
                key: key.clone(),
                state: precondition.clone(),
            }],
            Effect::ImsDelete {
                ims_kind,
                id,
                fingerprint,
                ..
            } => vec![Dependency::ImsRecord {
                ims_kind: *ims_kind,
                id: id.clone(),
                fingerprint: fingerprint.clone(),
            }],
            Effect::ImsStoreWrite {
                ims_kind,
                deleted,
                fingerprint,
                ..
            } => vec![Dependency::ImsRecords {
                ims_kind: *ims_kind,
                deleted: *deleted,
                fingerprint: fingerprint.clone(),
            }],
            _ => Vec::new(),
        }
    }

    /// One line for plans: what the effect does, where. Every string in it
    /// came from a plugin, so control characters are escaped: a key holding a
    /// newline cannot forge lines in a plan under review.
    pub fn describe(&self) -> String {
        crate::archive::escaped(&self.describe_raw()).into_owned()
    }

    fn describe_raw(&self) -> String {
        match self {
            Effect::ArchiveAddObject {
                bucket, key, path, ..
            } => format!("s3://{bucket}/{key} -> {path}"),
            Effect::ArchiveAddJson { path, .. } => format!("JSON document -> {path}"),
            Effect::ArchiveAddIndex { path, .. } => {
                format!("index (with checksums) -> {path}")
            }
            Effect::S3UploadFromArchive {
                path,
                bucket,
                key,
                precondition,
                ..
            } => {
                let how = match precondition {
                    TargetState::Absent => "new",
                    TargetState::Etag { .. } => "REPLACES the existing object",
                };
                format!("{path} -> s3://{bucket}/{key} ({how})")
            }
            Effect::ImsDelete {
                ims_kind,
                id,
                name,
                delete,
                ..
            } => {
                let how = match delete {
                    // IMS jobs have no deleted store: their delete is plain.
                    DeleteMode::Soft if *ims_kind == ImsKind::Job => "delete".to_string(),
                    DeleteMode::Soft => "soft-delete".to_string(),
                    DeleteMode::Hard { cascade: true } => {
                        "hard-delete with its S3 artifacts".into()
                    }
                    DeleteMode::Hard { cascade: false } => "hard-delete (artifacts kept)".into(),
                    DeleteMode::Purge => "purge deleted".to_string(),
                };
                let name = if name.is_empty() {
                    String::new()
                } else {
                    format!(" ({name})")
                };
                format!("{how} IMS {} {id}{name}", ims_kind.name())
            }
            Effect::ImsStoreWrite {
                ims_kind,
                deleted,
                summary,
                ..
            } => format!(
                "write IMS {}{} data file: {} added, {} replaced, {} removed",
                if *deleted { "deleted " } else { "" },
                ims_kind.name(),
                summary.added.len(),
                summary.replaced.len(),
                summary.removed.len()
            ),
            Effect::ImsRestart => "restart IMS so that it reloads its data files".into(),
            Effect::Assert {
                assertion: Assertion::ImportEndState,
            } => "read IMS and S3 back and compare them with the end state this plan makes".into(),
            Effect::Assert {
                assertion:
                    Assertion::ImsEmpty {
                        live,
                        deleted,
                        jobs,
                    },
            } => {
                let mut what = Vec::new();
                if *live {
                    what.push("live records");
                }
                if *deleted {
                    what.push("deleted records");
                }
                if *jobs {
                    what.push("jobs");
                }
                format!("check that IMS holds no {}", what.join(", no "))
            }
            Effect::Phase { name, description } => format!("phase `{name}`: {description}"),
        }
    }

    /// Whether the effect is work to do: phase markers and the end-state
    /// verification are not (a plan of only those has nothing to do).
    pub fn is_work(&self) -> bool {
        !matches!(
            self,
            Effect::Phase { .. }
                | Effect::Assert {
                    assertion: Assertion::ImportEndState
                }
        )
    }

    /// The import's end-state verification.
    pub fn is_verification(&self) -> bool {
        matches!(
            self,
            Effect::Assert {
                assertion: Assertion::ImportEndState
            }
        )
    }

    /// One plan line: kind, what, size; the kind padded into a column.
    pub fn line(&self) -> String {
        self.text(24)
    }

    /// The same for running text (an error message), without the padding.
    pub fn summary(&self) -> String {
        self.text(0)
    }

    fn text(&self, kind_width: usize) -> String {
        let size = self
            .size()
            .map(|s| format!(" ({})", crate::units::bytes(s)))
            .unwrap_or_default();
        format!("{:<kind_width$} {}{size}", self.kind(), self.describe())
    }
}

/// `sha256:<hex>` of a JSON value in canonical form (object keys sorted).
/// The fingerprint of a list of IMS records whatever their order (the API
/// and the data files may list them differently): records sorted by `id`.
pub fn records_fingerprint(records: &serde_json::Value) -> String {
    match records.as_array() {
        Some(list) => {
            let mut sorted: Vec<&serde_json::Value> = list.iter().collect();
            sorted.sort_by_key(|r| r.get("id").and_then(|i| i.as_str()).unwrap_or_default());
            fingerprint(&serde_json::json!(sorted))
        }
        None => fingerprint(records),
    }
}

pub fn fingerprint(value: &serde_json::Value) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    canonical(value, &mut h);
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn canonical(value: &serde_json::Value, h: &mut sha2::Sha256) {
    use sha2::Digest;
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                h.update(serde_json::to_string(k).unwrap_or_default().as_bytes());
                h.update(b":");
                canonical(&map[k], h);
                h.update(b",");
            }
            h.update(b"}");
        }
        serde_json::Value::Array(items) => {
            h.update(b"[");
            for item in items {
                canonical(item, h);
                h.update(b",");
            }
            h.update(b"]");
        }
        other => h.update(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind list is WIT's: the cases of `variant effect` in
    /// wit/plugin.wit, in order, are the names `grants.effects` takes.
    #[test]
    fn the_effect_kinds_are_the_cases_of_the_wit_effect_variant() {
        let wit = include_str!("../../../wit/plugin.wit");
        let start = wit
            .find("variant effect {")
            .expect("wit/plugin.wit declares `variant effect`");
        let body = &wit[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        let cases: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(|l| {
                l.trim_start_matches('%')
                    .split(['(', ','])
                    .next()
                    .unwrap()
                    .trim()
            })
            .collect();
        assert_eq!(
            cases, KINDS,
            "wit/plugin.wit's `variant effect` and imsflow_kinds::EFFECT_KINDS (plugins/kinds) must name the same kinds in the same order"
        );
    }

    fn delete(ims_kind: ImsKind, delete: DeleteMode) -> Effect {
        Effect::ImsDelete {
            ims_kind,
            id: "x1".into(),
            name: String::new(),
            delete,
            fingerprint: String::new(),
        }
    }

    #[test]
    fn a_job_delete_is_a_delete_and_a_records_delete_says_how() {
        // IMS jobs have no deleted store: "soft" would promise an undelete.
        assert_eq!(
            delete(ImsKind::Job, DeleteMode::Soft).describe(),
            "delete IMS job x1"
        );
        assert_eq!(
            delete(ImsKind::Image, DeleteMode::Soft).describe(),
            "soft-delete IMS image x1"
        );
    }

    #[test]
    fn phase_markers_and_the_verification_are_not_work() {
        let verify = Effect::Assert {
            assertion: Assertion::ImportEndState,
        };
        let phase = Effect::Phase {
            name: "verify".into(),
            description: String::new(),
        };
        assert!(!verify.is_work() && verify.is_verification());
        assert!(!phase.is_work());
        assert!(delete(ImsKind::Job, DeleteMode::Soft).is_work());
        let empty = Effect::Assert {
            assertion: Assertion::ImsEmpty {
                live: true,
                deleted: false,
                jobs: true,
            },
        };
        assert!(empty.is_work() && !empty.is_verification());
    }
}
