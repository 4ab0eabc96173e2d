//! What a step may read and which effects it may emit, as its workflow file
//! grants them and the plan records them. Everything not listed is denied:
//! the sandbox checks reads, `permits` checks emitted effects at plan time
//! and again when a plan is applied.
use super::effect::Effect;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    pub services: BTreeSet<String>,
    /// Bucket names; `*` grants every bucket. Bounds reads and the buckets
    /// that object effects read from or write to.
    pub buckets: BTreeSet<String>,
    pub archive: bool,
    /// Effect kinds (`plan::effect::KINDS`) the step may emit.
    #[serde(default)]
    pub effects: BTreeSet<String>,
}

impl Grants {
    pub fn bucket(&self, bucket: &str) -> bool {
        self.buckets.contains("*") || self.buckets.contains(bucket)
    }

    /// Whether the step may emit `effect`; the error names the missing grant.
    pub fn permits(&self, effect: &Effect) -> Result<(), String> {
        let kind = effect.kind();
        if !self.effects.contains(kind) {
            return Err(format!(
                "effect `{kind}` is not granted (add \"{kind}\" to the step's `grants.effects`)"
            ));
        }
        if let Some(bucket) = effect.bucket()
            && !self.bucket(bucket)
        {
            return Err(format!(
                "effect `{kind}` uses bucket `{bucket}`, which is not granted (add it to the step's `grants.buckets`)"
            ));
        }
        Ok(())
    }
}
