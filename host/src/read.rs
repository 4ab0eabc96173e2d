//! Reading local files the user names (workflows, plugins, config, token and
//! CA files) with a size cap: `/dev/zero`, a FIFO or a 6 GiB sparse file gets a
//! clear error instead of an out-of-memory kill or a hang.
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {reason}", path.display())]
pub struct ReadError {
    pub what: &'static str,
    pub path: PathBuf,
    pub reason: String,
}

/// The whole file, if it is a regular file of at most `max` bytes.
pub fn read_capped(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    let fail = |reason: String| ReadError {
        what,
        path: path.to_path_buf(),
        reason,
    };
    // Opened without blocking, then checked: a FIFO put in place of a file
    // between a check and an open would otherwise hang the open.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
            .map_err(|e| fail(e.to_string()))?
    };
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail(
            "is not a regular file (a device, FIFO or directory); refusing to read it".into(),
        ));
    }
    if meta.len() > max {
        return Err(fail(format!(
            "is {} bytes, over the limit of {max} bytes for a {what}",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: never take more than the cap.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > max {
        return Err(fail(format!(
            "grew past the limit of {max} bytes while being read"
        )));
    }
    Ok(bytes)
}

/// As `read_capped`, as UTF-8 text.
pub fn read_text_capped(path: &Path, max: u64, what: &'static str) -> Result<String, ReadError> {
    String::from_utf8(read_capped(path, max, what)?).map_err(|e| ReadError {
        what,
        path: path.to_path_buf(),
        reason: format!("is not UTF-8 text: {e}"),
    })
}
