//! What this build is: version, commit, build date, plugin contract, wasmtime
//! version and target triple, as `build.rs` found them. `imsflow --version`
//! prints it and every plan records it, so a plan or a bug report says which
//! binary made it. A leaf: it imports nothing from this crate.
use serde::{Deserialize, Serialize};

/// The plugin contract this host implements (`wit/plugin.wit`'s package),
/// which plans record as the one their effects come from.
pub const CONTRACT: &str = "imsflow:plugin@0.3.0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildInfo {
    pub version: String,
    /// The git commit built, or `unknown` (built outside a git checkout).
    pub commit: String,
    /// The tracked files differed from `commit`.
    pub dirty: bool,
    /// RFC 3339, UTC (`SOURCE_DATE_EPOCH` when set).
    pub build_date: String,
    /// The plugin contract the host implements (`wit/plugin.wit`).
    pub contract: String,
    pub wasmtime: String,
    /// The Rust target triple, e.g. `x86_64-unknown-linux-musl`.
    pub target: String,
}

impl BuildInfo {
    /// This binary's identity.
    pub fn current() -> BuildInfo {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            commit: env!("IMSFLOW_GIT_COMMIT").into(),
            dirty: env!("IMSFLOW_GIT_DIRTY") == "true",
            build_date: env!("IMSFLOW_BUILD_DATE").into(),
            contract: CONTRACT.into(),
            wasmtime: env!("IMSFLOW_WASMTIME_VERSION").into(),
            target: env!("IMSFLOW_TARGET").into(),
        }
    }

    /// `abc123def456` or `abc123def456-dirty`: the commit, shortened.
    pub fn commit_label(&self) -> String {
        let short: String = self.commit.chars().take(12).collect();
        if self.dirty {
            format!("{short}-dirty")
        } else {
            short
        }
    }

    /// The lines `imsflow --version` prints.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!("imsflow {}", self.version),
            format!("commit:    {}", self.commit_label()),
            format!("built:     {}", self.build_date),
            format!("contract:  {}", self.contract),
            format!("wasmtime:  {}", self.wasmtime),
            format!("target:    {}", self.target),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_names_a_commit_a_date_and_the_target_this_was_built_for() {
        let b = BuildInfo::current();
        assert_eq!(b.version, env!("CARGO_PKG_VERSION"));
        // Built from a git checkout: a full hex commit id.
        assert_eq!(b.commit.len(), 40, "{b:?}");
        assert!(b.commit.chars().all(|c| c.is_ascii_hexdigit()), "{b:?}");
        assert!(humantime::parse_rfc3339(&b.build_date).is_ok(), "{b:?}");
        assert!(b.wasmtime.starts_with("48."), "{b:?}");
        assert!(b.target.starts_with("x86_64-unknown-linux"), "{b:?}");
        assert_eq!(b.contract, CONTRACT);
        let dirty = BuildInfo {
            dirty: true,
            ..b.clone()
        };
        assert_eq!(dirty.commit_label(), format!("{}-dirty", &b.commit[..12]));
    }
}
