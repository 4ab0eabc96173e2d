//! Where plugin bytes come from: the stock set embedded in the binary, or a
//! site's `.wasm` component file, optionally pinned by sha256.
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "unknown plugin `{0}`: not a stock plugin (see `imsflow plugins list`) and not a path to a .wasm file"
    )]
    Unknown(String),
    #[error("cannot read the {0}")]
    Read(#[from] crate::read::ReadError),
    #[error(
        "plugin {path} does not match its pin: sha256 is {actual}, the workflow pins {pinned}; \
         refusing to run it (update the pin only if you trust the new file)"
    )]
    PinMismatch {
        path: PathBuf,
        pinned: String,
        actual: String,
    },
}

/// Largest plugin component read (stock ones are a few hundred KiB).
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// A plugin reference as written in a workflow step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    Stock(String),
    File {
        path: PathBuf,
        sha256: Option<String>,
    },
}

impl PluginRef {
    /// How a plan names the plugin: `stock:<name>`, or the file's path.
    pub fn source(&self) -> String {
        match self {
            PluginRef::Stock(name) => format!("stock:{name}"),
            PluginRef::File { path, .. } => path.display().to_string(),
        }
    }

    /// The reverse of `source` (without a pin: the plan pins by sha256).
    pub fn from_source(source: &str) -> PluginRef {
        match source.strip_prefix("stock:") {
            Some(name) => PluginRef::Stock(name.to_string()),
            None => PluginRef::File {
                path: PathBuf::from(source),
                sha256: None,
            },
        }
    }

    /// A reference that looks like a path (contains `/` or ends in `.wasm`) is
    /// a file, resolved against `base` (the workflow file's directory).
    pub fn parse(text: &str, sha256: Option<&str>, base: &Path) -> PluginRef {
        if text.contains('/') || text.ends_with(".wasm") {
            PluginRef::File {
                path: base.join(text),
                sha256: sha256.map(str::to_lowercase),
            }
        } else {
            PluginRef::Stock(text.to_string())
        }
    }
}

/// Plugin bytes with their identity.
#[derive(Debug, Clone)]
pub struct PluginBytes {
    pub name: String,
    pub sha256: String,
    pub bytes: std::sync::Arc<[u8]>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn stock_names() -> impl Iterator<Item = &'static str> {
    crate::stock::STOCK_PLUGINS.iter().map(|(name, _)| *name)
}

pub fn is_stock(name: &str) -> bool {
    stock_names().any(|n| n == name)
}

/// Reads the plugin's bytes and enforces its pin.
pub fn load(plugin: &PluginRef) -> Result<PluginBytes, PluginError> {
    match plugin {
        PluginRef::Stock(name) => {
            let (_, bytes) = crate::stock::STOCK_PLUGINS
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| PluginError::Unknown(name.clone()))?;
            Ok(PluginBytes {
                name: name.clone(),
                sha256: sha256_hex(bytes),
                bytes: (*bytes).into(),
            })
        }
        PluginRef::File { path, sha256 } => {
            let bytes = crate::read::read_capped(path, MAX_PLUGIN_BYTES, "plugin file")?;
            let actual = sha256_hex(&bytes);
            if let Some(pinned) = sha256
                && *pinned != actual
            {
                return Err(PluginError::PinMismatch {
                    path: path.clone(),
                    pinned: pinned.clone(),
                    actual,
                });
            }
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(PluginBytes {
                name,
                sha256: actual,
                bytes: bytes.into(),
            })
        }
    }
}
