//! Local files and folders that imsflow trusts only when they are ours: the
//! lock and journal beside a plan, the state directory and its runs, the
//! compile cache. Anyone who can replace one of them can make an apply
//! write through a link, or resume a run they planted with our credentials,
//! so the rules are ssh's StrictModes: never follow a link, files must be
//! regular and ours, and a folder that group or others can write is refused
//! unless it is sticky (then nobody can replace what is ours in it).
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The effective uid of this process.
pub fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// An error that says what is wrong with a file (the caller names it).
fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// Opens `path` with `options`, never through a symbolic link (not even a
/// dangling one, which `create` would otherwise follow), and only if it is a
/// regular file owned by us. A FIFO is opened without blocking, then refused.
pub fn open_ours(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = match options.custom_flags(flags.bits() as i32).open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(refused(
                "is a symbolic link; imsflow does not follow links beside a plan or in its state directory (remove the link)".into(),
            ));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused(
            "is not a regular file (a FIFO, device or directory); remove it".into(),
        ));
    }
    if meta.uid() != my_uid() {
        return Err(refused(format!(
            "is owned by uid {}, not by us (uid {}); someone else put it there: remove it, or check who did",
            meta.uid(),
            my_uid()
        )));
    }
    Ok(file)
}

/// The folder that holds a plan, its lock and its journal: owned by us or
/// root, and not writable by group or others unless sticky (as `/tmp`),
/// where only we can remove or replace our files, which `open_ours` checks.
pub fn check_plan_folder(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    let me = my_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "is owned by uid {}, neither us (uid {me}) nor root: its owner could replace the plan's journal or lock; keep the plan in a folder of your own",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "can be written by group or others (mode {:o}), who could replace the plan's journal or lock; `chmod go-w` it, or keep the plan in a folder of your own",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// A private directory: itself (not a link to one), owned by us, and not
/// writable by group or others.
pub fn check_private_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link; use the directory itself".into());
    }
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    let me = my_uid();
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by us (uid {me})",
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "it is writable by group or others (mode {:o}); make it 0700",
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{chown, symlink};

    fn rw() -> OpenOptions {
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(true).truncate(false);
        o
    }

    #[test]
    fn links_fifos_and_files_of_others_are_refused_and_nothing_is_written_through_them() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("p.lock");
        symlink(&victim, &link).unwrap();
        let e = open_ours(&link, &mut rw()).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");

        let dangling = dir.path().join("p.journal");
        symlink(dir.path().join("created-through-the-link"), &dangling).unwrap();
        let e = open_ours(&dangling, &mut rw()).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(!dir.path().join("created-through-the-link").exists());

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = open_ours(&fifo, &mut rw()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");

        let theirs = dir.path().join("theirs");
        std::fs::write(&theirs, b"").unwrap();
        if chown(&theirs, Some(65534), None).is_ok() && my_uid() != 65534 {
            let e = open_ours(&theirs, &mut rw()).unwrap_err().to_string();
            assert!(e.contains("owned by uid 65534"), "{e}");
        }
        assert!(open_ours(&victim, &mut rw()).is_ok());
    }

    #[test]
    fn a_folder_others_can_write_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let set = |mode| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(0o700);
        assert_eq!(check_plan_folder(dir.path()), Ok(()));
        set(0o770);
        let e = check_plan_folder(dir.path()).unwrap_err();
        assert!(e.contains("mode 770") && e.contains("chmod go-w"), "{e}");
        set(0o777);
        assert!(check_plan_folder(dir.path()).is_err());
        set(0o1777);
        assert_eq!(check_plan_folder(dir.path()), Ok(()), "sticky, as /tmp");
        set(0o700);
    }

    #[test]
    fn a_private_directory_is_ours_itself_and_closed_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(check_private_dir(&state), Ok(()));
        let link = dir.path().join("link");
        symlink(&state, &link).unwrap();
        assert!(
            check_private_dir(&link)
                .unwrap_err()
                .contains("symbolic link")
        );
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_private_dir(&state).unwrap_err().contains("mode 777"));
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        if chown(&state, Some(65534), None).is_ok() && my_uid() != 65534 {
            assert!(check_private_dir(&state).unwrap_err().contains("uid 65534"));
        }
    }
}
