//! Reading portable images without mounting them.
//!
//! Every image kind is exposed as an [`Fs`]: a read-only file system addressed by absolute,
//! normalised paths. Back-ends know nothing of units or systemd; symlinks are resolved
//! inside the image by [`chase::Tree`], so a back-end only ever sees paths whose components,
//! except possibly the last, are real directories.

pub mod at;
pub mod chase;
pub mod dir;
pub mod erofs;
pub mod ext4;
pub mod ext4_direct;
pub mod ext4_xattr;
#[cfg(test)]
pub(crate) mod fixture;
pub mod layered;
pub mod open;
pub mod partition;
pub mod probe;
pub mod source;
pub mod squashfs;
#[cfg(test)]
pub(crate) mod xattr_fixture;

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Largest unit file or os-release accepted from an image (ARCHITECTURE.md, "Limits").
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most entries read from one directory of an image.
pub const MAX_DIR_ENTRIES: usize = 65_536;
/// Largest ext4 directory (its `i_size`) listed or looked into, by either ext4 reader and
/// by the extended attribute reader alike. [`MAX_DIR_ENTRIES`] names of the longest kind take
/// about 17 MiB; ext4-view scans every block up to `i_size`, from its block cache when a
/// crafted extent tree maps them all onto the same few blocks, where no read budget sees
/// the work.
pub const MAX_DIR_BYTES: u64 = 32 * 1024 * 1024;
/// Longest symlink target accepted (`PATH_MAX`).
pub const MAX_LINK_BYTES: u64 = 4096;
/// Symlinks followed while resolving one path, as the kernel's and systemd's `chase()`.
pub const MAX_SYMLINKS: usize = 40;
/// Deepest path resolved, and most components walked for one path: real images are a few
/// levels deep, and each component costs a lookup (hard-linked directory cycles in a
/// crafted image otherwise make one path cost seconds).
pub const MAX_PATH_DEPTH: usize = 64;
/// Most components walked while resolving one path, symlink targets included; see
/// [`MAX_PATH_DEPTH`].
pub const MAX_PATH_STEPS: usize = 1024;
/// Largest extended attribute value read through [`chase::Tree::xattr`]: the kernel's
/// `XATTR_SIZE_MAX`, so nothing a mounted image could hold is refused.
pub const MAX_XATTR_BYTES: u64 = 64 * 1024;

/// What an entry is, as far as path resolution cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Device nodes, FIFOs, sockets: never read.
    Other,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The raw file name (any bytes except `/` and NUL).
    pub name: Vec<u8>,
    /// What the entry is, without following it if it is a link.
    pub kind: FileKind,
}

/// Why something inside an image could not be read.
#[derive(Debug)]
pub enum FsError {
    /// No entry of that name.
    NotFound,
    /// A component on the way is not a directory.
    NotADirectory,
    /// A file, directory or link larger than the limit the caller gave.
    TooLarge {
        /// What it is ("file", "symlink", ...), for the message.
        what: &'static str,
        /// Its size in bytes.
        size: u64,
        /// The limit it is over.
        limit: u64,
    },
    /// More than [`MAX_SYMLINKS`] links on one path.
    SymlinkLoop,
    /// The on-disk structures are inconsistent.
    Corrupt(String),
    /// A file-system feature this reader does not implement.
    Unsupported(String),
    /// The entry exists but is of another type than asked for ("is a directory").
    WrongType(&'static str),
    /// An entry changed between two looks at it (a directory became a symlink): the
    /// whole message.
    Changed(String),
    /// A user other than root can change the entry asked for (`path` `None`) or the
    /// directory `path` on the way to it, so root must not use it: `why` says who (see
    /// [`crate::ownership`]).
    WritableByOthers {
        /// The directory on the way, or `None` for the entry itself.
        path: Option<PathBuf>,
        /// Who else can write it.
        why: String,
    },
    /// Reading the image failed.
    Io(std::io::Error),
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound => f.write_str("no such file or directory"),
            FsError::NotADirectory => f.write_str("not a directory"),
            FsError::TooLarge { what, size, limit } => {
                write!(f, "{what} too large ({size} bytes, limit {limit})")
            }
            FsError::SymlinkLoop => write!(f, "more than {MAX_SYMLINKS} levels of symbolic links"),
            FsError::Corrupt(why) => write!(f, "damaged file system: {why}"),
            FsError::Unsupported(why) => write!(f, "unsupported: {why}"),
            FsError::WrongType(what) => f.write_str(what),
            FsError::Changed(what) => f.write_str(what),
            FsError::WritableByOthers {
                path: Some(path),
                why,
            } => write!(f, "{} is {why}: {}", path.display(), crate::ownership::HINT),
            FsError::WritableByOthers { path: None, why } => {
                write!(f, "it is {why}: {}", crate::ownership::HINT)
            }
            FsError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for FsError {}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => FsError::NotFound,
            _ => FsError::Io(e),
        }
    }
}

/// A read-only file system inside an image.
///
/// Paths are absolute and normalised (`/usr/lib/os-release`, `/` for the root), and every
/// component but the last is known to be a directory: callers go through [`chase::Tree`].
/// Implementations must bound every allocation by the limits given or the constants above,
/// and must never panic on corrupt data.
pub trait Fs {
    /// The kind of the entry at `path`, without following a final symlink; `None` if absent.
    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError>;
    /// The entries of the directory at `path`, without `.` and `..`, in any order.
    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError>;
    /// The target of the symlink at `path` (at most [`MAX_LINK_BYTES`]).
    fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError>;
    /// The contents of the regular file at `path`; [`FsError::TooLarge`] if over `limit` bytes.
    fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError>;
    /// The value of the extended attribute `name` (with its namespace, as
    /// `user.extension-release.strict`) of the entry at `path`, without following a final
    /// symlink; `None` when the entry has no such attribute, [`FsError::NotFound`] when
    /// there is no entry, [`FsError::TooLarge`] when the value is over `limit` bytes.
    fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError>;
    /// Whether entries can change while the image is read: a directory tree on the host
    /// can; an image file cannot, or a reader sees the change as damage. [`chase::Tree`]
    /// then remembers only the directories and regular files it found (a reader that may
    /// change opens them without following links, so a swap is caught there) and the
    /// entries it did not, and asks again about links.
    fn may_change(&self) -> bool {
        false
    }
}

/// The `TooLarge` error of a directory listing of `count` entries, over
/// [`MAX_DIR_ENTRIES`].
pub fn too_many_entries(count: usize) -> FsError {
    FsError::TooLarge {
        what: "directory",
        size: count as u64,
        limit: MAX_DIR_ENTRIES as u64,
    }
}

/// The `TooLarge` error of a directory of `bytes` bytes, over [`MAX_DIR_BYTES`].
pub fn dir_too_large(bytes: u64) -> FsError {
    FsError::TooLarge {
        what: "directory",
        size: bytes,
        limit: MAX_DIR_BYTES,
    }
}

/// The `TooLarge` error of an extended attribute value.
pub fn xattr_too_large(size: u64, limit: u64) -> FsError {
    FsError::TooLarge {
        what: "extended attribute",
        size,
        limit,
    }
}

/// How a panic caught in a reader starts its [`FsError::Corrupt`] message; a reader that
/// sees it refuses further calls, as the crate's state may be inconsistent.
pub const PANICKED: &str = "reader panicked: ";

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// Run a call into a third-party reader; a panic in it becomes [`FsError::Corrupt`], so one
/// crafted image cannot take the other images down with it.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, FsError>) -> Result<T, FsError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(FsError::Corrupt(format!(
            "{PANICKED}{}",
            panic_message(&*p)
        )))
    })
}
