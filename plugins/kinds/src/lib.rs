//! The names that the host, the plugins and the workflow files must spell
//! alike, defined once: the effect kinds (the cases of WIT's `effect`
//! variant, as `grants.effects` and a plugin's `describe` name them) and
//! HPE's four import modes with the kinds each mode's plugin may emit.
//!
//! Invariant: no dependencies (serde behind a feature), no I/O, no Wasm: it
//! builds natively for the host and for wasm32-wasip2 for the plugins.

/// An effect kind. Its name ([`EffectKind::as_str`]) is the WIT case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EffectKind {
    ArchiveAddObject,
    ArchiveAddJson,
    ArchiveAddIndex,
    S3UploadFromArchive,
    ImsDelete,
    ImsStoreWrite,
    ImsRestart,
    Assert,
    Phase,
}

/// Every effect kind's name, in the order of WIT's `effect` variant.
pub const EFFECT_KINDS: [&str; 9] = {
    let mut names = [""; 9];
    let mut i = 0;
    while i < names.len() {
        names[i] = EffectKind::ALL[i].as_str();
        i += 1;
    }
    names
};

impl EffectKind {
    /// Every kind, in the order of WIT's `effect` variant.
    pub const ALL: [EffectKind; 9] = [
        EffectKind::ArchiveAddObject,
        EffectKind::ArchiveAddJson,
        EffectKind::ArchiveAddIndex,
        EffectKind::S3UploadFromArchive,
        EffectKind::ImsDelete,
        EffectKind::ImsStoreWrite,
        EffectKind::ImsRestart,
        EffectKind::Assert,
        EffectKind::Phase,
    ];

    /// The name `grants.effects` and `describe` use, e.g. `ims-delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EffectKind::ArchiveAddObject => "archive-add-object",
            EffectKind::ArchiveAddJson => "archive-add-json",
            EffectKind::ArchiveAddIndex => "archive-add-index",
            EffectKind::S3UploadFromArchive => "s3-upload-from-archive",
            EffectKind::ImsDelete => "ims-delete",
            EffectKind::ImsStoreWrite => "ims-store-write",
            EffectKind::ImsRestart => "ims-restart",
            EffectKind::Assert => "assert",
            EffectKind::Phase => "phase",
        }
    }
}

impl std::fmt::Display for EffectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HPE's import modes (`import_ims_data.py`'s positional argument). The
/// stock workflow and plugin of a mode are both named `import-<mode>`, with
/// `-` for `_` ([`ImportMode::workflow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum ImportMode {
    Add,
    Update,
    Overwrite,
    SoftOverwrite,
}

/// What every import mode's plugin may emit: the backup's archive effects,
/// deletes, the `assert`s (IMS emptied; the end-state verification), the
/// uploads, the data-file writes and the restart, between `phase` markers.
const IMPORT_EFFECT_KINDS: [EffectKind; 8] = [
    EffectKind::Phase,
    EffectKind::ArchiveAddObject,
    EffectKind::ArchiveAddIndex,
    EffectKind::ImsDelete,
    EffectKind::Assert,
    EffectKind::S3UploadFromArchive,
    EffectKind::ImsStoreWrite,
    EffectKind::ImsRestart,
];

impl ImportMode {
    pub const ALL: [ImportMode; 4] = [
        ImportMode::Add,
        ImportMode::Update,
        ImportMode::Overwrite,
        ImportMode::SoftOverwrite,
    ];

    /// HPE's name for it: `add`, `update`, `overwrite`, `soft_overwrite`.
    pub fn name(self) -> &'static str {
        match self {
            ImportMode::Add => "add",
            ImportMode::Update => "update",
            ImportMode::Overwrite => "overwrite",
            ImportMode::SoftOverwrite => "soft_overwrite",
        }
    }

    /// The stock workflow that runs it, which is also its plugin's name.
    pub fn workflow(self) -> &'static str {
        match self {
            ImportMode::Add => "import-add",
            ImportMode::Update => "import-update",
            ImportMode::Overwrite => "import-overwrite",
            ImportMode::SoftOverwrite => "import-soft-overwrite",
        }
    }

    /// The mode whose stock workflow is `name`, if it is one.
    pub fn from_workflow(name: &str) -> Option<ImportMode> {
        Self::ALL.into_iter().find(|m| m.workflow() == name)
    }

    /// HPE's help text for the mode.
    pub fn help(self) -> &'static str {
        match self {
            ImportMode::Add => "Only add exported IMS resources that do not exist",
            ImportMode::Update => {
                "Add exported IMS resources that do not exist and modify existing resources to match exported resources"
            }
            ImportMode::Overwrite => {
                "Delete current IMS jobs, hard delete current IMS resources, then add exported resources"
            }
            ImportMode::SoftOverwrite => {
                "Delete current IMS jobs, soft delete current IMS resources, then add exported resources"
            }
        }
    }

    /// The effect kinds the mode's plugin may emit: its `describe`, and the
    /// `grants.effects` of its workflow's strategy step. The same for every
    /// mode today (each ends with the end-state verification, an `assert`).
    pub fn effect_kinds(self) -> &'static [EffectKind] {
        &IMPORT_EFFECT_KINDS
    }
}
