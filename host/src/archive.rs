//! Archives: the output archive that export effects write (a tar file or a
//! directory, made atomically and owner-only) and the input archive that
//! import steps read. Member paths have one normal form (`normalize_member_path`),
//! used by the writer, the reader and the plan checks alike.
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {source}", escaped(&.path.display().to_string()))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("archive {}: {reason}", escaped(&.archive.display().to_string()))]
    Invalid { archive: PathBuf, reason: String },
    #[error("archive member path `{}` is not allowed: {reason}", escaped(.path))]
    BadMemberPath { path: String, reason: &'static str },
    #[error("archive member `{}` is written twice{}", escaped(.path), as_normal(.path, .normal))]
    Duplicate { path: String, normal: String },
    #[error("archive member `{}` cannot be written: `{}` would be both a file and a directory", escaped(.path), escaped(.clash))]
    FileAndDir { path: String, clash: String },
    #[error("the archive has no member `{}`", escaped(.0))]
    NoMember(String),
    #[error("archive member `{}` is larger than {max} bytes", escaped(.path))]
    TooLarge { path: String, max: u64 },
    #[error("archive member `{}` is not valid JSON: {reason}", escaped(.path))]
    NotJson { path: String, reason: String },
    #[error("archive name `{}` is not allowed: {reason}; it must be a single file name", escaped(.name))]
    BadName { name: String, reason: &'static str },
}

fn as_normal(path: &str, normal: &str) -> String {
    if path == normal {
        String::new()
    } else {
        format!(" (as `{}`)", escaped(normal))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A name from an archive, its index or a plugin, made safe to print:
/// control characters (newlines, escape sequences) and bidi overrides are
/// escaped, so that a hostile name cannot forge output lines or restyle the
/// terminal.
pub fn escaped(name: &str) -> Cow<'_, str> {
    let bidi = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !name.chars().any(|c| c.is_control() || bidi(c)) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else if bidi(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The normal form of a member path: relative, `/`-separated, without `.`
/// or empty segments (`s/./a.json` and `s//a.json` are `s/a.json`). Refused:
/// `..`, absolute paths, a trailing `/` (members are files), NUL, backslash
/// and control characters. Every place that names members (the writer, the
/// reader's index, `plan::check`) uses this one function, so that uniqueness
/// is decided on what the tar will actually hold.
pub fn normalize_member_path(path: &str) -> Result<String, ArchiveError> {
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
    if path.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if path.starts_with('/') {
        return bad("it is absolute");
    }
    if path.ends_with('/') {
        return bad("it ends with `/`, but members are files, not directories");
    }
    let mut segments = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return bad("it contains `..`"),
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        return bad("it names no file");
    }
    Ok(segments.join("/"))
}

/// Checks an archive name: a single file name, so that the archive lands in
/// the output directory itself and never in (or through a symlink to) a
/// subdirectory of it.
pub fn check_archive_name(name: &str) -> Result<(), ArchiveError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') || name.contains('\\') {
        "it contains a path separator"
    } else if name == "." || name == ".." {
        "it is `.` or `..`"
    } else if name.chars().any(char::is_control) || name.contains('\0') {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(ArchiveError::BadName {
        name: name.to_string(),
        reason,
    })
}

/// The members of one archive, by normal form: refuses a path written twice
/// in any spelling, and a path that would be both a file and a directory
/// (`a` and `a/b`), which no tar extraction or directory can hold.
#[derive(Debug, Default)]
pub struct MemberSet {
    files: HashSet<String>,
    dirs: HashSet<String>,
}

impl MemberSet {
    /// Adds a member; returns its normal form.
    pub fn insert(&mut self, path: &str) -> Result<String, ArchiveError> {
        let normal = normalize_member_path(path)?;
        if self.files.contains(&normal) {
            return Err(ArchiveError::Duplicate {
                path: path.to_string(),
                normal,
            });
        }
        let clash = |clash: &str| ArchiveError::FileAndDir {
            path: path.to_string(),
            clash: clash.to_string(),
        };
        if self.dirs.contains(&normal) {
            return Err(clash(&normal));
        }
        let parents: Vec<&str> = normal
            .match_indices('/')
            .map(|(i, _)| &normal[..i])
            .collect();
        if let Some(file) = parents.iter().find(|p| self.files.contains(**p)) {
            return Err(clash(file));
        }
        // Deepest first: once a parent is known, so are all of its own.
        for parent in parents.into_iter().rev() {
            if !self.dirs.insert(parent.to_string()) {
                break;
            }
        }
        self.files.insert(normal.clone());
        Ok(normal)
    }
}

const WRITE_BUFFER: usize = 1 << 20;

/// Archives hold ssh host keys, munge keys and password hashes (image
/// rootfs), so they are owner-only, whatever the umask, as HPE's script makes them.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Creates a new owner-only file (never an existing one, nor through a symlink).
fn create_private_file(path: &Path) -> Result<File, ArchiveError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io(path))?;
    // The umask may have taken bits away (even the owner's); set them exactly.
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .map_err(io(path))?;
    Ok(file)
}

/// Creates a new owner-only directory (not an existing one).
fn create_private_dir(path: &Path) -> Result<(), ArchiveError> {
    std::fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(path)
        .map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE)).map_err(io(path))
}

/// Warns about `*.partial` archives in `dir`: an earlier run was killed
/// before it could remove its own (or another run is writing there now).
fn warn_stale_partials(dir: &Path) {
    const SHOWN: usize = 10;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let stale: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect();
    for path in stale.iter().take(SHOWN) {
        tracing::warn!(
            "found {}, a partial archive of an earlier run that was killed (or of a run still writing there); it is not a usable archive: remove it once no imsflow writes into {}",
            escaped(&path.display().to_string()),
            escaped(&dir.display().to_string())
        );
    }
    if stale.len() > SHOWN {
        tracing::warn!(
            "and {} more partial archive(s) in {}",
            stale.len() - SHOWN,
            escaped(&dir.display().to_string())
        );
    }
}

/// The name an archive is written under until it is finished.
pub fn partial_path_of(final_path: &Path) -> PathBuf {
    let mut partial = final_path.as_os_str().to_owned();
    partial.push(".partial");
    PathBuf::from(partial)
}

/// Removes a partial archive (file or directory); true if there was one.
pub fn remove_partial_at(partial: &Path) -> bool {
    match std::fs::symlink_metadata(partial) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(partial).is_ok(),
        Ok(_) => std::fs::remove_file(partial).is_ok(),
        Err(_) => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Tar,
    Dir,
}

/// An output archive being written under `<final>.partial`; `finish` makes
/// it appear under its final name, and dropping it unfinished removes it.
/// Files are created 0600 and directories 0700, whatever the umask.
pub struct ArchiveWriter {
    final_path: PathBuf,
    partial: PathBuf,
    tar: Option<tar::Builder<std::io::BufWriter<File>>>,
    members: MemberSet,
    finished: bool,
    /// Member modification time: when the archive was made.
    mtime: u64,
}

impl ArchiveWriter {
    /// `dir/name.tar` (tar) or `dir/name/` (dir). `name` is a single file name.
    pub fn create(dir: &Path, name: &str, format: Format) -> Result<ArchiveWriter, ArchiveError> {
        check_archive_name(name)?;
        let final_path = match format {
            Format::Tar => dir.join(format!("{name}.tar")),
            Format::Dir => dir.join(name),
        };
        // symlink_metadata: a dangling symlink is "there" too, not to be replaced.
        if std::fs::symlink_metadata(&final_path).is_ok() {
            return Err(ArchiveError::Io {
                path: final_path,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; not overwriting it",
                ),
            });
        }
        warn_stale_partials(dir);
        let partial = partial_path_of(&final_path);
        let tar = match format {
            Format::Tar => {
                let file = create_private_file(&partial)?;
                // Large writes: members arrive in network-sized chunks.
                let mut builder =
                    tar::Builder::new(std::io::BufWriter::with_capacity(WRITE_BUFFER, file));
                builder.mode(tar::HeaderMode::Deterministic);
                Some(builder)
            }
            Format::Dir => {
                create_private_dir(&partial)?;
                None
            }
        };
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(ArchiveWriter {
            final_path,
            partial,
            tar,
            members: MemberSet::default(),
            finished: false,
            mtime,
        })
    }

    /// Members get this modification time (seconds since the epoch) instead
    /// of the time of writing: a plan applied again writes the same bytes.
    pub fn with_mtime(mut self, mtime: u64) -> ArchiveWriter {
        self.mtime = mtime;
        self
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// The path the archive is written under until `finish`.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Starts a member of `size` bytes under the normal form of `path`, to be
    /// written in large slices through the returned writer (no intermediate
    /// copy) and ended with `MemberWriter::finish`, which checks that exactly
    /// `size` bytes came.
    pub fn begin(&mut self, path: &str, size: u64) -> Result<MemberWriter<'_>, ArchiveError> {
        let path = self.members.insert(path)?;
        let sink = match &mut self.tar {
            Some(builder) => {
                let mut header = tar::Header::new_gnu();
                header.set_size(size);
                header.set_mode(FILE_MODE);
                header.set_mtime(self.mtime);
                header.set_entry_type(tar::EntryType::Regular);
                // The header (and a GNU long-name entry if the path needs one)
                // with no data: the data and its padding follow through `sink`.
                builder
                    .append_data(&mut header, &path, std::io::empty())
                    .map_err(io(&self.partial))?;
                MemberSink::Tar(builder.get_mut(), self.partial.clone())
            }
            None => {
                // One level at a time, each owner-only; never the partial
                // itself, so a writer racing a signal handler's removal fails
                // instead of recreating it.
                let mut target = self.partial.clone();
                let mut segments = path.split('/').peekable();
                while let Some(segment) = segments.next() {
                    target.push(segment);
                    if segments.peek().is_some() && !target.is_dir() {
                        create_private_dir(&target)?;
                    }
                }
                let file = create_private_file(&target)?;
                MemberSink::Dir(
                    std::io::BufWriter::with_capacity(WRITE_BUFFER, file),
                    target,
                )
            }
        };
        Ok(MemberWriter {
            sink,
            size,
            written: 0,
        })
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
        if let Some(parent) = self.final_path.parent()
            && let Ok(dir) = File::open(parent)
        {
            let _ = dir.sync_all();
        }
        self.finished = true;
        Ok(self.final_path.clone())
    }
}

enum MemberSink<'a> {
    Tar(&'a mut std::io::BufWriter<File>, PathBuf),
    Dir(std::io::BufWriter<File>, PathBuf),
}

/// One member being written (`ArchiveWriter::begin`). Writes of a buffer's
/// size or more go straight to the file.
pub struct MemberWriter<'a> {
    sink: MemberSink<'a>,
    size: u64,
    written: u64,
}

impl MemberWriter<'_> {
    fn path(&self) -> &Path {
        match &self.sink {
            MemberSink::Tar(_, p) | MemberSink::Dir(_, p) => p,
        }
    }

    /// Appends `data`; refuses bytes past the member's size.
    pub fn write(&mut self, data: &[u8]) -> Result<(), ArchiveError> {
        if data.len() as u64 > self.size - self.written {
            return Err(ArchiveError::Io {
                path: self.path().to_path_buf(),
                source: std::io::Error::other(format!(
                    "more than the member's {} bytes",
                    self.size
                )),
            });
        }
        let result = match &mut self.sink {
            MemberSink::Tar(w, _) => w.write_all(data),
            MemberSink::Dir(w, _) => w.write_all(data),
        };
        result.map_err(io(self.path()))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Ends the member: refuses one short of its size, pads a tar member.
    pub fn finish(mut self) -> Result<(), ArchiveError> {
        if self.written != self.size {
            return Err(ArchiveError::Io {
                path: self.path().to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("source ended after {} of {} bytes", self.written, self.size),
                ),
            });
        }
        let padding = (512 - self.size % 512) % 512;
        let result = match &mut self.sink {
            MemberSink::Tar(w, _) => w.write_all(&[0u8; 512][..padding as usize]),
            MemberSink::Dir(w, _) => w.flush(),
        };
        result.map_err(io(self.path()))
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
        self.tar.take();
        remove_partial_at(&self.partial);
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
        if !meta.is_dir() && !meta.is_file() {
            // A FIFO or a device would block or never end.
            return Err(ArchiveError::Invalid {
                archive: path.to_path_buf(),
                reason: "it is neither a tar file nor a directory (a device or FIFO?)".into(),
            });
        }
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

    /// A tar file (members in file order), not a directory.
    pub fn is_tar(&self) -> bool {
        self.0.is_tar
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
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            // The rules of tar members: a name with a control character is refused.
            let rel = normalize_member_path(&rel).map_err(|e| ArchiveError::Invalid {
                archive: root.to_path_buf(),
                reason: e.to_string(),
            })?;
            let size = entry.metadata().map_err(io(&path))?.len();
            out.push(Member {
                path: rel,
                size,
                offset: 0,
            });
        } else {
            return Err(ArchiveError::Invalid {
                archive: root.to_path_buf(),
                reason: format!(
                    "{} is not a regular file or directory",
                    escaped(&path.display().to_string())
                ),
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
    let mut seen = MemberSet::default();
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
                    "member `{}` is a {other:?}, not a regular file; refusing it",
                    escaped(&name)
                )));
            }
        }
        // Indexed under its normal form: `s/./a` and `s/a` are one member twice.
        let name = seen.insert(&name).map_err(|e| invalid(e.to_string()))?;
        let size = entry.size();
        let offset = entry.raw_file_position();
        if offset.saturating_add(size) > file_len {
            return Err(invalid(format!(
                "member `{}` is truncated: the file ends before its {size} bytes",
                escaped(&name)
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
    let mut member = writer.begin(path, bytes.len() as u64)?;
    member.write(bytes)?;
    member.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn member_paths_have_one_normal_form() {
        for spelling in [
            "s/a.json",
            "s/./a.json",
            "s//a.json",
            "./s/a.json",
            "s/.//./a.json",
        ] {
            assert_eq!(
                normalize_member_path(spelling).unwrap(),
                "s/a.json",
                "{spelling}"
            );
        }
        for (bad, why) in [
            ("dir/", "ends with `/`"),
            ("s/a/..", "`..`"),
            ("../x", "`..`"),
            ("/etc/passwd", "absolute"),
            ("", "empty"),
            ("./", "ends with `/`"),
            (".", "names no file"),
            ("a\nb", "control character"),
            ("a\\b", "backslash"),
        ] {
            let err = normalize_member_path(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn member_uniqueness_is_decided_on_the_normal_form() {
        let mut set = MemberSet::default();
        assert_eq!(set.insert("s/a.json").unwrap(), "s/a.json");
        for twice in ["s/./a.json", "s//a.json"] {
            let err = set.insert(twice).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("archive member `{twice}` is written twice (as `s/a.json`)")
            );
        }
        // A file cannot also be a directory, in either order.
        assert!(matches!(
            set.insert("s/a.json/b"),
            Err(ArchiveError::FileAndDir { .. })
        ));
        assert!(matches!(
            set.insert("s"),
            Err(ArchiveError::FileAndDir { .. })
        ));
        assert!(set.insert("s/b.json").is_ok());
    }

    #[test]
    fn archive_names_are_single_file_names() {
        assert!(check_archive_name("export-ims-data-2024").is_ok());
        for bad in ["sub/x", "../x", "x/", ".", "..", "", "a\\b", "a\nb"] {
            assert!(check_archive_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn printed_names_have_control_characters_escaped() {
        assert_eq!(escaped("s3_artifacts/a.json"), "s3_artifacts/a.json");
        assert_eq!(
            escaped("a\nproblem: forged\x1b[2K"),
            "a\\nproblem: forged\\u{1b}[2K"
        );
        assert_eq!(escaped("evil\u{202e}txt"), "evil\\u{202e}txt");
    }

    #[test]
    fn a_partial_archive_is_owner_only_from_its_creation() {
        let dir = tempfile::tempdir().unwrap();
        for format in [Format::Tar, Format::Dir] {
            let mut w = ArchiveWriter::create(dir.path(), &format!("{format:?}"), format).unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            let want = if format == Format::Tar { 0o600 } else { 0o700 };
            assert_eq!(mode(w.partial_path()), want, "{format:?} .partial");
            add_bytes(&mut w, "s3_artifacts/b/x.json", b"{}").unwrap();
            if format == Format::Dir {
                assert_eq!(mode(&w.partial_path().join("s3_artifacts/b")), 0o700);
                assert_eq!(mode(&w.partial_path().join("s3_artifacts/b/x.json")), 0o600);
            }
            let done = w.finish().unwrap();
            assert_eq!(mode(&done), want, "{format:?} archive");
        }
    }
}
