//! One apply of a plan at a time: `<plan>.lock`, held with an advisory
//! `flock` for the life of the apply and naming its holder (pid, host, boot).
//!
//! The kernel drops the flock when its process dies, however it dies, so
//! a lock file that can be locked but still names a holder was left by a run
//! that ended without cleaning up (kill -9, a reboot). On the same host that
//! is certain, and the lock is taken over, saying so. A holder on another
//! host (a plan on shared storage) cannot be checked from here: that lock is
//! reported and never taken over.
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub boot_id: String,
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on host {} (since {})",
            self.pid, self.host, self.since
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another imsflow is applying this plan: {holder} holds {path}; wait for it to end (or stop it), then resume"
    )]
    Busy { path: PathBuf, holder: String },
    #[error(
        "{path} was left by {holder}, on another host; this host cannot tell whether that run is still going. If no imsflow runs there any more, remove {path} and resume"
    )]
    OtherHost { path: PathBuf, holder: Holder },
    #[error("lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A held lock; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    file: File,
    /// The holder of a stale lock this one replaced, for the caller to report.
    pub took_over: Option<Holder>,
}

pub fn path_for(plan: &Path) -> PathBuf {
    let mut p = plan.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl RunLock {
    pub fn acquire(path: &Path) -> Result<RunLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Another process may remove the file between our open and our lock
        // (it released it); then the lock we got is on a dead inode: retry.
        for _ in 0..16 {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = crate::owner::open_ours(
                path,
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600),
            )
            .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = read_holder(&mut file)
                        .map_or_else(|| "an unknown process".to_string(), |h| h.to_string());
                    return Err(LockError::Busy {
                        path: path.to_path_buf(),
                        holder,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            if !same_file(&file, path) {
                continue;
            }
            let me = Holder::me();
            let took_over = match read_holder(&mut file) {
                Some(old) if old.host != me.host => {
                    return Err(LockError::OtherHost {
                        path: path.to_path_buf(),
                        holder: old,
                    });
                }
                old => old,
            };
            let text = serde_json::to_vec(&me).map_err(|e| io(std::io::Error::other(e)))?;
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| file.write_all(&text))
                .and_then(|_| file.sync_data())
                .map_err(io)?;
            return Ok(RunLock {
                path: path.to_path_buf(),
                file,
                took_over,
            });
        }
        Err(io(std::io::Error::other(
            "the lock file keeps being replaced; is something removing it?",
        )))
    }

    /// Who holds the lock at `path` now, if anyone (for `runs list`).
    pub fn holder(path: &Path) -> Option<Holder> {
        let mut file =
            crate::owner::open_ours(path, std::fs::OpenOptions::new().read(true)).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => read_holder(&mut file),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Remove first, then unlock (on close): a process that opened the
        // old file sees a different inode and retries.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = Vec::new();
    file.rewind().ok()?;
    Read::by_ref(file).take(4096).read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Holder {
    fn me() -> Holder {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            boot_id: first_line("/proc/sys/kernel/random/boot_id"),
            since: super::now(),
        }
    }
}

pub fn hostname() -> String {
    let name = first_line("/proc/sys/kernel/hostname");
    if name.is_empty() {
        first_line("/etc/hostname")
    } else {
        name
    }
}

fn first_line(path: &str) -> String {
    crate::read::read_text_capped(Path::new(path), 4096, "system file")
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_a_released_lock_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        let lock = RunLock::acquire(&path).unwrap();
        assert!(lock.took_over.is_none());
        let e = RunLock::acquire(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert_eq!(
            RunLock::holder(&path).map(|h| h.pid),
            Some(std::process::id())
        );
        drop(lock);
        assert!(!path.exists());
        assert!(RunLock::holder(&path).is_none());
    }

    #[test]
    fn a_lock_left_behind_on_this_host_is_taken_over_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        let dead = Holder {
            pid: 999_999,
            host: hostname(),
            boot_id: "b".into(),
            since: "then".into(),
        };
        std::fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
        let lock = RunLock::acquire(&path).unwrap();
        assert_eq!(lock.took_over, Some(dead));
    }

    #[test]
    fn a_lock_left_by_another_host_is_never_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        let other = Holder {
            pid: 1,
            host: "ncn-m002-elsewhere".into(),
            boot_id: "b".into(),
            since: "then".into(),
        };
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        let e = RunLock::acquire(&path).unwrap_err().to_string();
        assert!(
            e.contains("ncn-m002-elsewhere") && e.contains("remove"),
            "{e}"
        );
        assert!(path.exists(), "the other host's lock is left in place");
    }
}
