//! Archives: the output archive that export effects write (a tar file or a
//! directory, made atomically) and the input archive that import steps read.
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("archive {archive}: {reason}")]
    Invalid { archive: PathBuf, reason: String },
    #[error("archive member path `{path}` is not allowed: {reason}")]
    BadMemberPath { path: String, reason: &'static str },
    #[error("archive member `{0}` is written twice")]
    Duplicate(String),
    #[error("the archive has no member `{0}`")]
    NoMember(String),
    #[error("archive member `{path}` is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error("archive member `{path}` is not valid JSON: {reason}")]
    NotJson { path: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that a member path is relative, normal and stays inside the archive.
pub fn check_member_path(path: &str) -> Result<(), ArchiveError> {
    let bad = |reason| {
        Err(ArchiveError::BadMemberPath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("it is empty");
    }
    if path.contains('\0') || path.contains('\\') {
        return bad("it contains a NUL or backslash");
    }
    for c in Path::new(path).components() {
        match c {
            Component::Normal(_) => {}
            Component::CurDir => return bad("it contains `.`"),
            Component::ParentDir => return bad("it contains `..`"),
            Component::RootDir | Component::Prefix(_) => return bad("it is absolute"),
        }
    }
    Ok(())
}

const WRITE_BUFFER: usize = 1 << 20;

/// Partial archives being written by this process, so that an interrupted
/// run can remove them (see `remove_partials`).
static PARTIALS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes every partial archive this process is writing; returns their paths.
/// For signal handlers: the writers themselves may never get to drop.
pub fn remove_partials() -> Vec<PathBuf> {
    let paths = std::mem::take(&mut *PARTIALS.lock().unwrap());
    for p in &paths {
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
    }
    paths
}

fn forget_partial(path: &Path) {
    PARTIALS.lock().unwrap().retain(|p| p != path);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Tar,
    Dir,
}

/// An output archive being written under `<final>.partial`; `finish` makes
/// it appear under its final name, and dropping it unfinished removes it.
pub struct ArchiveWriter {
    final_path: PathBuf,
    partial: PathBuf,
    tar: Option<tar::Builder<std::io::BufWriter<File>>>,
    written: HashSet<String>,
    finished: bool,
    /// Member modification time: when the archive was made.
    mtime: u64,
}

impl ArchiveWriter {
    /// `dir/name.tar` (tar) or `dir/name/` (dir).
    pub fn create(dir: &Path, name: &str, format: Format) -> Result<ArchiveWriter, ArchiveError> {
        let final_path = match format {
            Format::Tar => dir.join(format!("{name}.tar")),
            Format::Dir => dir.join(name),
        };
        if final_path.exists() {
            return Err(ArchiveError::Io {
                path: final_path,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; not overwriting it",
                ),
            });
        }
        let mut partial = final_path.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let tar = match format {
            Format::Tar => {
                let file = File::create_new(&partial).map_err(io(&partial))?;
                // Large writes: members arrive in network-sized chunks.
                let mut builder =
                    tar::Builder::new(std::io::BufWriter::with_capacity(WRITE_BUFFER, file));
                builder.mode(tar::HeaderMode::Deterministic);
                Some(builder)
            }
            Format::Dir => {
                std::fs::create_dir(&partial).map_err(io(&partial))?;
                None
            }
        };
        PARTIALS.lock().unwrap().push(partial.clone());
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(ArchiveWriter {
            final_path,
            partial,
            tar,
            written: HashSet::new(),
            finished: false,
            mtime,
        })
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Adds a member of known size from a reader (streamed, never buffered whole).
    pub fn add(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), ArchiveError> {
        check_member_path(path)?;
        if !self.written.insert(path.to_string()) {
            return Err(ArchiveError::Duplicate(path.to_string()));
        }
        match &mut self.tar {
            Some(builder) => {
                let mut header = tar::Header::new_gnu();
                header.set_size(size);
                header.set_mode(0o644);
                header.set_mtime(self.mtime);
                header.set_entry_type(tar::EntryType::Regular);
                builder
                    .append_data(&mut header, path, data)
                    .map_err(io(&self.partial))
            }
            None => {
                let target = self.partial.join(path);
                std::fs::create_dir_all(target.parent().unwrap()).map_err(io(&target))?;
                let file = File::create_new(&target).map_err(io(&target))?;
                let mut file = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
                let copied = std::io::copy(&mut data.take(size), &mut file).map_err(io(&target))?;
                std::io::Write::flush(&mut file).map_err(io(&target))?;
                if copied != size {
                    return Err(ArchiveError::Io {
                        path: target,
                        source: std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("source ended after {copied} of {size} bytes"),
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    /// Flushes to disk and renames to the final name.
    pub fn finish(mut self) -> Result<PathBuf, ArchiveError> {
        match self.tar.take() {
            Some(builder) => {
                let file = builder
                    .into_inner()
                    .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                    .map_err(io(&self.partial))?;
                file.sync_all().map_err(io(&self.partial))?;
            }
            None => sync_tree(&self.partial)?,
        }
        std::fs::rename(&self.partial, &self.final_path).map_err(io(&self.final_path))?;
        forget_partial(&self.partial);
        if let Some(parent) = self.final_path.parent()
            && let Ok(dir) = File::open(parent)
        {
            let _ = dir.sync_all();
        }
        self.finished = true;
        Ok(self.final_path.clone())
    }
}

fn sync_tree(dir: &Path) -> Result<(), ArchiveError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
        }
    }
    Ok(())
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        forget_partial(&self.partial);
        self.tar.take();
        let _ = if self.partial.is_dir() {
            std::fs::remove_dir_all(&self.partial)
        } else {
            std::fs::remove_file(&self.partial)
        };
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub path: String,
    pub size: u64,
    /// Byte offset of the data in a tar file.
    offset: u64,
}

/// A read-only view of an input archive (tar file or directory).
#[derive(Debug, Clone)]
pub struct ArchiveReader(Arc<ReaderInner>);

#[derive(Debug)]
struct ReaderInner {
    path: PathBuf,
    is_tar: bool,
    members: Vec<Member>,
    /// Member path -> index in `members`.
    by_path: HashMap<String, usize>,
}

impl ArchiveReader {
    /// Indexes the archive. Links, devices and unsafe member paths are refused.
    pub fn open(path: &Path) -> Result<ArchiveReader, ArchiveError> {
        let meta = std::fs::metadata(path).map_err(io(path))?;
        let (is_tar, members) = if meta.is_dir() {
            let mut members = Vec::new();
            index_dir(path, path, &mut members)?;
            (false, members)
        } else {
            (true, index_tar(path)?)
        };
        let by_path = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.path.clone(), i))
            .collect();
        Ok(ArchiveReader(Arc::new(ReaderInner {
            path: path.to_path_buf(),
            is_tar,
            members,
            by_path,
        })))
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    pub fn members(&self) -> &[Member] {
        &self.0.members
    }

    pub fn member(&self, path: &str) -> Option<&Member> {
        self.0.by_path.get(path).map(|&i| &self.0.members[i])
    }

    /// Where a member's bytes are: a file, the offset in it, and the size.
    pub fn locate(&self, path: &str) -> Result<(PathBuf, u64, u64), ArchiveError> {
        let member = self
            .member(path)
            .ok_or_else(|| ArchiveError::NoMember(path.to_string()))?;
        Ok(if self.0.is_tar {
            (self.0.path.clone(), member.offset, member.size)
        } else {
            (self.0.path.join(path), 0, member.size)
        })
    }

    /// Opens one member for reading.
    pub fn open_member(&self, path: &str) -> Result<(u64, Box<dyn Read + Send>), ArchiveError> {
        let (file_path, offset, size) = self.locate(path)?;
        let mut file = File::open(&file_path).map_err(io(&file_path))?;
        file.seek(SeekFrom::Start(offset)).map_err(io(&file_path))?;
        Ok((size, Box::new(file.take(size))))
    }

    /// Reads a small JSON member as text, refusing it past `max_bytes`.
    pub fn read_json(&self, path: &str, max_bytes: u64) -> Result<String, ArchiveError> {
        let (size, mut reader) = self.open_member(path)?;
        let not_json = |reason: String| ArchiveError::NotJson {
            path: path.to_string(),
            reason,
        };
        if size > max_bytes {
            return Err(ArchiveError::TooLarge {
                path: path.to_string(),
                max: max_bytes,
            });
        }
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|e| not_json(format!("not UTF-8 text: {e}")))?;
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| not_json(e.to_string()))?;
        Ok(text)
    }

    /// sha256 (hex) of a member's bytes.
    pub fn sha256(&self, path: &str) -> Result<String, ArchiveError> {
        use sha2::Digest;
        let (_, mut reader) = self.open_member(path)?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut reader, &mut hasher).map_err(io(Path::new(path)))?;
        Ok(hex::encode(hasher.finalize()))
    }

    /// Bytes of the archive: the tar file, or every member of a directory.
    pub fn size(&self) -> u64 {
        if self.0.is_tar {
            std::fs::metadata(&self.0.path)
                .map(|m| m.len())
                .unwrap_or(0)
        } else {
            self.0.members.iter().map(|m| m.size).sum()
        }
    }
}

fn index_dir(root: &Path, dir: &Path, out: &mut Vec<Member>) -> Result<(), ArchiveError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            index_dir(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let size = entry.metadata().map_err(io(&path))?.len();
            out.push(Member {
                path: rel,
                size,
                offset: 0,
            });
        } else {
            return Err(ArchiveError::Invalid {
                archive: root.to_path_buf(),
                reason: format!("{} is not a regular file or directory", path.display()),
            });
        }
    }
    Ok(())
}

fn index_tar(path: &Path) -> Result<Vec<Member>, ArchiveError> {
    let invalid = |reason: String| ArchiveError::Invalid {
        archive: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(io(path))?;
    let file_len = file.metadata().map_err(io(path))?.len();
    let mut archive = tar::Archive::new(file);
    let mut members = Vec::new();
    let mut seen = HashSet::new();
    let entries = archive
        .entries_with_seek()
        .map_err(|e| invalid(format!("not a readable tar file: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| invalid(format!("corrupt tar header: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| invalid(format!("member with unreadable name: {e}")))?
            .to_string_lossy()
            .into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => continue,
            other => {
                return Err(invalid(format!(
                    "member `{name}` is a {other:?}, not a regular file; refusing it"
                )));
            }
        }
        check_member_path(&name).map_err(|e| invalid(e.to_string()))?;
        if !seen.insert(name.clone()) {
            return Err(invalid(format!("member `{name}` appears twice")));
        }
        let size = entry.size();
        let offset = entry.raw_file_position();
        if offset.saturating_add(size) > file_len {
            return Err(invalid(format!(
                "member `{name}` is truncated: the file ends before its {size} bytes"
            )));
        }
        members.push(Member {
            path: name,
            size,
            offset,
        });
    }
    Ok(members)
}

/// Writes `bytes` to a tar or dir archive member; a convenience for small documents.
pub fn add_bytes(writer: &mut ArchiveWriter, path: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
    writer.add(path, bytes.len() as u64, bytes)
}
