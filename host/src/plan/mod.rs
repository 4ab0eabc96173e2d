//! The plan: a versioned, hashed document of everything a run will do and
//! everything it was planned against. `imsflow plan -o` writes one,
//! `imsflow show` renders it, `imsflow apply` executes exactly it. Pure data:
//! no network, no Wasm; reading a file is the only I/O here.
pub mod check;
pub mod effect;
mod grants;
pub mod render;

pub use grants::Grants;

use crate::archive::Format;
use effect::{Dependency, Effect, fingerprint};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The plan file format this imsflow writes and reads.
pub const FORMAT: u32 = 2;
/// The plugin contract the plan's effects come from.
pub use crate::build_info::CONTRACT;
/// Largest plan file read (plans carry index documents of tens of MiB).
const MAX_PLAN_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format: u32,
    pub imsflow_version: String,
    pub contract: String,
    /// The imsflow build that made it (`imsflow --version`). Plans made
    /// before builds were recorded have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::build_info::BuildInfo>,
    pub workflow: WorkflowId,
    /// Every step that ran, with its plugin's identity and its grants.
    pub steps: Vec<PlannedStep>,
    /// The resolved params.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub run: RunFacts,
    /// The CSM it was planned against (none: it read none); `apply` refuses another.
    pub system: Option<crate::target::SystemTarget>,
    /// Where archive effects go.
    pub target: Option<OutputTarget>,
    /// The archive import steps read.
    pub input: Option<InputArchive>,
    /// In the order they are applied.
    pub effects: Vec<PlannedEffect>,
    /// Approval gates, each before an effect (see `workflow::GateSpec`).
    pub gates: Vec<PlannedGate>,
    /// sha256 of each part of the plan, so that a changed part can be named.
    pub digests: BTreeMap<String, String>,
    /// sha256 over all of the above.
    pub plan_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowId {
    pub name: String,
    /// The file, or `stock:<name>`.
    pub source: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginId {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// `stock:<name>`, or the plugin file's path.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedStep {
    pub id: String,
    pub plugin: PluginId,
    /// `false` when `when` skipped the step.
    pub ran: bool,
    pub grants: Grants,
}

/// Facts of the run that expressions see as `run.*`; apply names the archive
/// from them, so a saved plan writes the archive the plan named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFacts {
    pub id: String,
    pub workflow: String,
    /// `YYYYmmddHHMMSS.ffffff`, local time, as HPE's tool names its archives.
    pub timestamp: String,
    /// 8 random characters from `[a-z0-9_]`.
    pub suffix: String,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputTarget {
    pub dir: PathBuf,
    pub name: String,
    pub format: Format,
}

impl OutputTarget {
    /// `dir/name.tar` or `dir/name/`.
    pub fn final_path(&self) -> PathBuf {
        match self.format {
            Format::Tar => self.dir.join(format!("{}.tar", self.name)),
            Format::Dir => self.dir.join(&self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputArchive {
    pub path: PathBuf,
    /// Bytes of the tar file, or of all members of a directory.
    pub size: u64,
    /// sha256 of its index document (`export.json`), when it has one.
    pub index_sha256: Option<String>,
}

/// An approval gate: apply stops before effect `before` until it is approved
/// (`--yes`, or yes at the prompt), or because `--until` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedGate {
    pub name: String,
    pub description: String,
    /// The id of the first effect behind the gate.
    pub before: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedEffect {
    /// `<step>.<n>`: stable within the plan, the key of journals and reports.
    pub id: String,
    pub step: String,
    pub effect: Effect,
    /// What the effect was planned against; checked before apply.
    pub depends_on: Vec<Dependency>,
}

impl PlannedEffect {
    pub fn new(step: &str, n: usize, effect: Effect) -> PlannedEffect {
        PlannedEffect {
            id: format!("{step}.{n}"),
            step: step.to_string(),
            depends_on: effect.depends_on(),
            effect,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read the plan {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not a regular file (a FIFO or device would hang the read), or too large.
    #[error(transparent)]
    Read(#[from] crate::read::ReadError),
    #[error("{path}:{line}:{column}: not an imsflow plan: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "the plan {path} has format {found}; this imsflow reads format {FORMAT} (make the plan again with this imsflow)"
    )]
    Format { path: PathBuf, found: u32 },
    #[error(
        "the plan {path} was changed after it was made (its plan_hash no longer matches): {}; make a new plan instead of editing one",
        parts.join(", ")
    )]
    Tampered { path: PathBuf, parts: Vec<String> },
}

impl Plan {
    /// The parts of the plan that are hashed separately, by name.
    fn parts(&self) -> BTreeMap<String, serde_json::Value> {
        let mut parts = BTreeMap::new();
        parts.insert(
            "version".to_string(),
            serde_json::json!([self.format, self.imsflow_version, self.contract]),
        );
        if let Some(build) = &self.build {
            parts.insert("build".into(), json(build));
        }
        parts.insert("workflow".into(), json(&self.workflow));
        parts.insert("steps".into(), json(&self.steps));
        parts.insert("params".into(), json(&self.params));
        parts.insert("run".into(), json(&self.run));
        if let Some(system) = &self.system {
            parts.insert("system".into(), json(system));
        }
        parts.insert("target".into(), json(&self.target));
        parts.insert("input".into(), json(&self.input));
        parts.insert("gates".into(), json(&self.gates));
        let ids: Vec<&str> = self.effects.iter().map(|e| e.id.as_str()).collect();
        parts.insert("effect order".into(), serde_json::json!(ids));
        for e in &self.effects {
            parts.insert(format!("effect {}", e.id), json(e));
        }
        parts
    }

    fn digests_now(&self) -> BTreeMap<String, String> {
        self.parts()
            .into_iter()
            .map(|(name, value)| (name, fingerprint(&value)))
            .collect()
    }

    fn hash_of(digests: &BTreeMap<String, String>) -> String {
        fingerprint(&serde_json::json!(digests))
    }

    /// Fills in `digests` and `plan_hash`; called once the plan is complete.
    pub fn seal(&mut self) {
        self.digests = self.digests_now();
        self.plan_hash = Self::hash_of(&self.digests);
    }

    /// The parts whose content no longer matches the hash recorded for them.
    pub fn tampered_parts(&self) -> Vec<String> {
        let now = self.digests_now();
        let mut parts: Vec<String> = now
            .iter()
            .filter(|(name, d)| self.digests.get(*name) != Some(d))
            .map(|(name, _)| name.clone())
            .collect();
        parts.extend(
            self.digests
                .keys()
                .filter(|name| !now.contains_key(*name))
                .map(|name| format!("{name} (removed)")),
        );
        if parts.is_empty() && Self::hash_of(&self.digests) != self.plan_hash {
            parts.push("the digests or plan_hash themselves".into());
        }
        parts
    }

    /// Reads and checks a plan file: size, syntax, format, integrity.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = crate::read::read_text_capped(path, MAX_PLAN_BYTES, "plan")?;
        // The format is read first, so an old or new plan gets that message
        // rather than a list of unknown fields.
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let parse = |e: serde_json::Error| PlanError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        };
        let head: Head = serde_json::from_str(&text).map_err(parse)?;
        if head.format != FORMAT {
            return Err(PlanError::Format {
                path: path.to_path_buf(),
                found: head.format,
            });
        }
        let plan: Plan = serde_json::from_str(&text).map_err(parse)?;
        let parts = plan.tampered_parts();
        if !parts.is_empty() {
            return Err(PlanError::Tampered {
                path: path.to_path_buf(),
                parts,
            });
        }
        Ok(plan)
    }

    /// Writes the plan owner-only (it names archives and holds IMS records),
    /// atomically: a temp file in the same directory, then a rename.
    pub fn save(&self, path: &Path) -> Result<(), PlanError> {
        use std::io::Write;
        let io = |source| PlanError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".imsflow-plan")
            .tempfile_in(dir)
            .map_err(io)?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(tmp.as_file_mut()), self)
            .map_err(|e| io(e.into()))?;
        tmp.as_file_mut().write_all(b"\n").map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Total bytes the effects move.
    pub fn total_bytes(&self) -> u64 {
        self.effects.iter().filter_map(|e| e.effect.size()).sum()
    }

    /// Whether anything is to be done: phase markers and the end-state
    /// verification alone are nothing to do.
    pub fn has_work(&self) -> bool {
        self.effects.iter().any(|e| e.effect.is_work())
    }

    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Whether a data-file write only adds and replaces records (`add`,
    /// `update`): it removes none of those it was planned against, and the
    /// plan deletes no record from its table (a purge empties the deleted
    /// table, a soft or hard delete the live one). Records that IMS accepts
    /// after planning are kept by such a write; any other write asks before
    /// it drops them.
    pub fn additive_write(&self, effect: &effect::Effect) -> bool {
        use effect::{DeleteMode, Effect};
        let Effect::ImsStoreWrite {
            ims_kind,
            deleted,
            summary,
            ..
        } = effect
        else {
            return false;
        };
        summary.removed.is_empty()
            && !self.effects.iter().any(|e| {
                matches!(&e.effect, Effect::ImsDelete { ims_kind: k, delete, .. }
                    if k == ims_kind && matches!(delete, DeleteMode::Purge) == *deleted)
            })
    }
}

/// A part of a plan as JSON, for hashing (plan types always serialise).
fn json(part: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(part).unwrap_or(serde_json::Value::Null)
}
