//! Access below a directory file descriptor, one component at a time.
//!
//! Opening `BASE/usr/lib/systemd/system/foo.service` by path lets the kernel follow
//! whatever each component is when it gets there: a directory swapped for a symlink after
//! it was checked leads out of the tree (time of check, time of use). Here each component
//! is opened from the descriptor of the one before, `O_PATH | O_NOFOLLOW`, so a symlink is
//! never followed by the kernel: the callers decide what a link means (inside an image, as
//! [`super::chase::Tree`] does; under `--root`, as [`crate::root::Root`] does), and a link
//! appearing where they found a directory is an error, not an escape.
//!
//! `openat2(RESOLVE_IN_ROOT)` would confine a lookup to the tree in one call, but it tells
//! neither where the path led (messages and drop-ins name that) nor who owns each
//! directory on the way (root must not follow a path others can change, see
//! [`crate::ownership`]); one component at a time gives both, on every kernel (openat2 is
//! from Linux 5.6), as systemd's `chase()` does it.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::{DirEntry, FileKind, FsError, MAX_DIR_ENTRIES, MAX_LINK_BYTES, too_many_entries};

/// Flags of a descriptor used only to look further or to stat: nothing is read through it,
/// and opening it has no side effect even on a device or FIFO.
const PATH_FLAGS: OFlags = OFlags::PATH.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Open a directory to start from: the image directory, or `--root`. Its own path is the
/// caller's (already resolved, or given on the command line), so a link there is followed.
pub fn open_base(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// What an entry is.
pub fn kind_of(st: &Stat) -> FileKind {
    kind_of_type(FileType::from_raw_mode(st.st_mode))
}

/// What an entry of a directory listing is (its `d_type`, when the file system gives one).
pub fn kind_of_type(ft: FileType) -> FileKind {
    match ft {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// `lstat` of `name` in `dir`; `None` when there is no such entry.
pub fn lstat(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Stat>, Errno> {
    match rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fstat` of an open descriptor.
pub fn fstat(fd: BorrowedFd<'_>) -> Result<Stat, Errno> {
    rustix::fs::fstat(fd)
}

/// Step into the directory `name` of `dir` without following a link; `shown` names it in
/// messages. Callers walk paths resolved a moment before: a link there now is a change.
pub fn step_dir(dir: BorrowedFd<'_>, name: &[u8], shown: &Path) -> Result<OwnedFd, FsError> {
    match rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        PATH_FLAGS.union(OFlags::DIRECTORY),
        Mode::empty(),
    ) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => Err(FsError::NotFound),
        Err(Errno::NOTDIR | Errno::LOOP) => match lstat(dir, name) {
            Ok(Some(st)) if kind_of(&st) == FileKind::Symlink => {
                Err(changed(shown, "it is now a symbolic link"))
            }
            _ => Err(FsError::NotADirectory),
        },
        Err(e) => Err(io(e)),
    }
}

/// What [`try_dir`] found.
pub enum Found {
    /// A directory, now open `O_PATH`.
    Dir(OwnedFd),
    /// An entry of another kind, a link included (not followed).
    Other,
    /// No such entry.
    Absent,
}

/// Open `name` in `dir` if it is a directory, never following a link: one call where an
/// `lstat` and then an `openat` would be two, for the directories a lookup goes through.
pub fn try_dir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Found, Errno> {
    match rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        PATH_FLAGS.union(OFlags::DIRECTORY),
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Found::Dir(fd)),
        Err(Errno::NOENT) => Ok(Found::Absent),
        Err(Errno::NOTDIR | Errno::LOOP) => Ok(Found::Other),
        Err(e) => Err(e),
    }
}

/// A directory entry found different from what path resolution saw a moment before.
pub fn changed(shown: &Path, now: &str) -> FsError {
    FsError::Changed(format!(
        "{} changed while being read ({now})",
        shown.display()
    ))
}

/// Open `name` in `dir` for reading, never following a link and never blocking (a FIFO
/// swapped in must not hang the boot, a terminal must not become ours).
pub fn open_read(dir: BorrowedFd<'_>, name: &[u8], shown: &Path) -> Result<OwnedFd, FsError> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, OsStr::from_bytes(name), flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => Err(FsError::NotFound),
        Err(Errno::LOOP) => Err(changed(shown, "it is now a symbolic link")),
        Err(e) => Err(io(e)),
    }
}

/// The target of the link `name` in `dir`, at most [`MAX_LINK_BYTES`].
pub fn read_link(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Vec<u8>, FsError> {
    let target = match rustix::fs::readlinkat(dir, OsStr::from_bytes(name), Vec::new()) {
        Ok(t) => t.into_bytes(),
        Err(Errno::NOENT) => return Err(FsError::NotFound),
        Err(Errno::INVAL) => return Err(FsError::WrongType("not a symbolic link")),
        Err(e) => return Err(io(e)),
    };
    if target.len() as u64 > MAX_LINK_BYTES {
        return Err(FsError::TooLarge {
            what: "symlink",
            size: target.len() as u64,
            limit: MAX_LINK_BYTES,
        });
    }
    Ok(target)
}

/// The entries of the directory open as `listing` (read) and `dir` (to stat entries whose
/// type the file system does not report), without `.` and `..`, at most
/// [`MAX_DIR_ENTRIES`]. An entry gone since it was listed is left out.
pub fn list(dir: BorrowedFd<'_>, listing: OwnedFd) -> Result<Vec<DirEntry>, FsError> {
    let mut listing = rustix::fs::Dir::new(listing).map_err(io)?;
    let mut out = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if out.len() >= MAX_DIR_ENTRIES {
            return Err(too_many_entries(out.len() + 1));
        }
        let kind = match entry.file_type() {
            FileType::Unknown => match lstat(dir, name) {
                Ok(Some(st)) => kind_of(&st),
                Ok(None) => continue,
                Err(e) => return Err(io(e)),
            },
            ft => kind_of_type(ft),
        };
        out.push(DirEntry {
            name: name.to_vec(),
            kind,
        });
    }
    Ok(out)
}

/// An errno as the I/O error it is.
pub fn io(e: Errno) -> FsError {
    FsError::from(std::io::Error::from(e))
}

/// Borrow an owned descriptor (a shorthand for the walks).
pub fn b(fd: &OwnedFd) -> BorrowedFd<'_> {
    fd.as_fd()
}
