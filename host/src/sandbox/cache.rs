//! The on-disk compile cache. A cached file is native code the host runs, so
//! it is trusted only when
//! 1. it lives in a directory owned by this user that no one else can write
//!    (created 0700; anything else disables the cache, with a warning), and
//! 2. its header binds it to the component it was compiled from: a magic
//!    line, the component's sha256 and the sha256 of the compiled bytes. A
//!    file copied over another plugin's entry names the wrong component, and
//!    an altered one fails its digest: either way the plugin is recompiled.
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"IMSFLOW-CWASM-1\n";
/// Header: magic, component sha256 (64 hex), compiled-bytes sha256 (64 hex).
const HEADER: usize = MAGIC.len() + 64 + 64;
/// Largest cache entry read (compiled stock plugins are a few MiB).
const MAX_ENTRY_BYTES: u64 = 512 << 20;

pub struct Cache {
    dir: PathBuf,
}

/// Says once per process and directory that the cache is off: every plugin
/// a run loads opens the cache, and one warning says all there is to say.
fn warn_disabled(dir: &Path, why: &str) {
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let first = WARNED
        .lock()
        .map(|mut warned| warned.insert(dir.to_path_buf()))
        .unwrap_or(true);
    if first {
        tracing::warn!(
            dir = %dir.display(),
            "compile cache disabled: {why}; until then every plugin is compiled on every run"
        );
    }
}

impl Cache {
    /// The cache under `root/<key>`, if both are (or can be made) private to us.
    pub fn open(root: &Path, key: &str) -> Option<Cache> {
        let dir = root.join(key);
        for d in [root, &dir] {
            if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(d)
                && e.kind() != std::io::ErrorKind::AlreadyExists
            {
                warn_disabled(d, &format!("cannot create it: {e}"));
                return None;
            }
            if let Err(why) = crate::owner::check_private_dir(d) {
                warn_disabled(d, &why);
                return None;
            }
        }
        Some(Cache { dir })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    /// The compiled bytes of component `sha256`, if a trustworthy entry exists.
    pub fn load(&self, sha256: &str) -> Option<Vec<u8>> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        let bytes = match crate::read::read_capped(&path, MAX_ENTRY_BYTES, "compile cache entry") {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("ignoring the {e}");
                return None;
            }
        };
        match check(&bytes, sha256) {
            Ok(()) => Some(bytes[HEADER..].to_vec()),
            Err(why) => {
                tracing::warn!(path = %path.display(), "ignoring a compile cache entry: {why}; recompiling");
                None
            }
        }
    }

    /// Stores compiled bytes under an unpredictable temp name, then renames
    /// it into place (a rename replaces a symlink, it never follows it).
    pub fn store(&self, sha256: &str, compiled: &[u8]) -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".cwasm")
            .tempfile_in(&self.dir)?;
        let file = tmp.as_file_mut();
        file.write_all(MAGIC)?;
        file.write_all(sha256.as_bytes())?;
        file.write_all(hex::encode(Sha256::digest(compiled)).as_bytes())?;
        file.write_all(compiled)?;
        file.sync_all()?;
        tmp.persist(self.path(sha256)).map_err(|e| e.error)?;
        Ok(())
    }
}

fn check(bytes: &[u8], sha256: &str) -> Result<(), String> {
    if bytes.len() < HEADER || !bytes.starts_with(MAGIC) {
        return Err("it has no imsflow header".into());
    }
    let named = &bytes[MAGIC.len()..MAGIC.len() + 64];
    if named != sha256.as_bytes() {
        return Err(format!(
            "it was compiled from component {}, not {sha256}",
            String::from_utf8_lossy(named)
        ));
    }
    let digest = &bytes[MAGIC.len() + 64..HEADER];
    if digest != hex::encode(Sha256::digest(&bytes[HEADER..])).as_bytes() {
        return Err("its compiled bytes do not match their digest".into());
    }
    Ok(())
}
