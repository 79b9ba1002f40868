//! Reading the host's own files (below `--root`): `/etc/fstab`, preset files, the kernel
//! command line, systemd's binary.
//!
//! A generator runs while PID 1 waits for it, so nothing it reads may block it or fill its
//! memory: a FIFO in place of `/etc/fstab` would hang the boot forever, and a sparse 1 GiB
//! file would be read whole. So every file is opened with `O_NONBLOCK` (opening a FIFO
//! returns at once; `O_NOCTTY` so a terminal never becomes ours; std adds `O_CLOEXEC`),
//! checked to be a regular file on the descriptor itself (no window for a swap between a
//! check and the open), and read up to a cap, refusing what is larger rather than cutting it.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::root::Root;

/// Longest kernel command line read: the kernel's own limit is a few KiB
/// (`COMMAND_LINE_SIZE`, 2048 on x86, at most 64 KiB anywhere).
pub const CMDLINE_MAX_BYTES: u64 = 64 * 1024;

/// Why a host file was not read. Its `Display` is the reason alone ("not a regular file (a
/// FIFO)"); callers name the file.
#[derive(Debug)]
pub enum HostReadError {
    /// The file does not exist: for most callers not worth a line at all.
    NotFound,
    /// Opening or reading failed.
    Io(std::io::Error),
    /// A FIFO, socket, device or directory: reading it could block or never end.
    NotRegular(&'static str),
    /// Larger than the cap; `size` is `None` where it is not known before reading (files
    /// in `/proc` say 0) and reading stopped past the cap.
    TooLarge {
        /// The file's size, where it is known before reading.
        size: Option<u64>,
        /// The cap it is over.
        limit: u64,
    },
}

impl HostReadError {
    /// Whether the file does not exist, which most callers pass over without a line.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HostReadError::NotFound)
    }
}

impl fmt::Display for HostReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostReadError::NotFound => f.write_str("no such file"),
            HostReadError::Io(e) => write!(f, "{e}"),
            HostReadError::NotRegular(what) => write!(f, "not a regular file ({what})"),
            HostReadError::TooLarge {
                size: Some(size),
                limit,
            } => write!(f, "file too large ({size} bytes, limit {limit})"),
            HostReadError::TooLarge { size: None, limit } => {
                write!(f, "file too large (more than {limit} bytes)")
            }
        }
    }
}

impl std::error::Error for HostReadError {}

impl From<std::io::Error> for HostReadError {
    fn from(e: std::io::Error) -> HostReadError {
        if e.kind() == std::io::ErrorKind::NotFound {
            HostReadError::NotFound
        } else {
            HostReadError::Io(e)
        }
    }
}

/// What a file that is not regular is, for messages.
fn describe(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "of an unknown type"
    }
}

/// Open `path` (symbolic links followed) without blocking, and make sure it is a regular file.
pub fn open_regular(path: &Path) -> Result<(File, Metadata), HostReadError> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(HostReadError::NotRegular(describe(&meta)));
    }
    Ok((file, meta))
}

/// The whole of the regular file `path`, if it holds at most `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, HostReadError> {
    let (file, meta) = open_regular(path)?;
    // Refused before reading anything: a sparse file costs nothing to make and would cost
    // its whole size to read.
    if meta.len() > cap {
        return Err(HostReadError::TooLarge {
            size: Some(meta.len()),
            limit: cap,
        });
    }
    // The size may be 0 (files in /proc) or grow meanwhile: one byte more than the cap
    // tells that it is too large. The capacity is only a hint.
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > cap {
        return Err(HostReadError::TooLarge {
            size: None,
            limit: cap,
        });
    }
    Ok(data)
}

/// `read_capped` as text (invalid UTF-8 replaced: the parsers of these files only look at
/// ASCII syntax).
/// `read_capped()` of the host path `host` below `root`, its links resolved inside the root
/// (an absolute link in `ROOT/etc` names a file of the root, not of this machine).
pub fn read_capped_in(root: &Root, host: &Path, cap: u64) -> Result<Vec<u8>, HostReadError> {
    let found = match root.resolve(host, true) {
        Ok(found) => found,
        Err(crate::image::FsError::NotFound | crate::image::FsError::NotADirectory) => {
            return Err(HostReadError::NotFound);
        }
        Err(e) => return Err(HostReadError::Io(std::io::Error::other(e.to_string()))),
    };
    read_capped(&root.join(&found.path), cap)
}

/// [`read_capped`], as text: invalid UTF-8 replaced, as the kernel command line may hold any
/// bytes.
fn read_capped_lossy(path: &Path, cap: u64) -> Result<String, HostReadError> {
    read_capped(path, cap).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The kernel command line below `root` (`/proc/cmdline`): empty where there is none (under
/// `--root` there usually is none).
pub fn kernel_cmdline(root: &Root) -> Result<String, HostReadError> {
    match read_capped_lossy(&root.join("/proc/cmdline"), CMDLINE_MAX_BYTES) {
        Err(HostReadError::NotFound) => Ok(String::new()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn regular_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(read_capped(&p, 3).unwrap(), b"abc");
        assert_eq!(read_capped(&p, 100).unwrap(), b"abc");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("f", &link).unwrap();
        assert_eq!(read_capped(&link, 3).unwrap(), b"abc");
    }

    #[test]
    fn missing_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_capped(&dir.path().join("none"), 10).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert_eq!(
            kernel_cmdline(&Root::new(dir.path())).unwrap(),
            String::new()
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        mkfifo(&p);
        let start = Instant::now();
        let e = read_capped(&p, 10).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(e.to_string(), "not a regular file (a FIFO)");
    }

    #[test]
    fn directories_and_devices_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_capped(dir.path(), 10).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (a directory)");
        let e = read_capped(Path::new("/dev/null"), 10).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (a character device)");
    }

    #[test]
    fn a_sparse_giant_is_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let f = File::create(&p).unwrap();
        f.set_len(1 << 30).unwrap();
        let e = read_capped(&p, 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "file too large (1073741824 bytes, limit 1048576)"
        );
    }

    #[test]
    fn proc_files_of_unknown_size_are_capped_while_read() {
        // /proc files report size 0; the cap still holds.
        let e = read_capped(Path::new("/proc/self/maps"), 4).unwrap_err();
        assert_eq!(e.to_string(), "file too large (more than 4 bytes)");
        assert!(read_capped(Path::new("/proc/self/stat"), 64 * 1024).is_ok());
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("hosts-of-the-root"), b"inside").unwrap();
        std::os::unix::fs::symlink("/hosts-of-the-root", dir.path().join("etc/fstab")).unwrap();
        // A link to a path this machine has and the root has not: not found, not read.
        std::os::unix::fs::symlink("/etc/os-release", dir.path().join("etc/escape")).unwrap();
        let root = Root::new(dir.path());
        assert_eq!(
            read_capped_in(&root, Path::new("/etc/fstab"), 64).unwrap(),
            b"inside"
        );
        assert!(
            read_capped_in(&root, Path::new("/etc/escape"), 64)
                .unwrap_err()
                .is_not_found()
        );
    }
}
