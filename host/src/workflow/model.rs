//! The workflow file as written: serde types with spans for error messages.
//! Every table rejects unknown keys.
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub version: Spanned<u32>,
    pub name: Spanned<String>,
    pub description: String,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<Param>>,
    pub archive: Option<Spanned<Archive>>,
    #[serde(default)]
    pub steps: Vec<Spanned<Step>>,
    #[serde(default)]
    pub gates: Vec<Spanned<Gate>>,
}

/// An approval gate: apply stops before the first effect of `before_step`,
/// or before the `phase` effect named `before_phase`, until approved.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub name: Spanned<String>,
    pub description: String,
    pub before_step: Option<Spanned<String>>,
    pub before_phase: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Bool,
    Integer,
    List,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub default: Option<Spanned<toml::Value>>,
    pub description: String,
}

/// Where archive effects write (`output_*`) and what import steps read (`input`).
/// Values are templates over `params` and `run`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    pub output_dir: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    /// `tar` or `dir`.
    pub format: Option<Spanned<String>>,
    pub input: Option<Spanned<String>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: Spanned<String>,
    /// A stock plugin name, or a path to a `.wasm` component relative to the workflow file.
    pub plugin: Spanned<String>,
    /// For a plugin file: its expected sha256; a mismatch refuses to run.
    pub sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    pub when: Option<Spanned<String>>,
    #[serde(default)]
    pub with: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub grants: Grants,
    /// e.g. `"90s"`, `"5m"`.
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub retries: Option<Spanned<u32>>,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    #[serde(default)]
    pub buckets: Vec<Spanned<String>>,
    #[serde(default)]
    pub archive: bool,
    /// Effect kinds the step may emit.
    #[serde(default)]
    pub effects: Vec<Spanned<String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory_mib: Option<Spanned<u64>>,
    pub max_output_mib: Option<Spanned<u64>>,
}
