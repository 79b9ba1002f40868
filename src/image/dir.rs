//! Directory images: the host's own file system below the image directory.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::{
    DirEntry, FileKind, Fs, FsError, MAX_DIR_ENTRIES, MAX_LINK_BYTES, MAX_XATTR_BYTES,
    xattr_too_large,
};

/// A directory tree used as an image. Paths from [`super::chase::Tree`] are joined below
/// `base`; since every parent component was checked to be a real directory, the lookup
/// cannot leave the tree through a symlink.
pub struct DirFs {
    base: PathBuf,
    /// Refuse files that a user other than root can change.
    owned_by_root: bool,
}

impl DirFs {
    pub fn new(base: PathBuf) -> DirFs {
        DirFs {
            base,
            owned_by_root: false,
        }
    }

    /// Files read must be changeable by root alone (directory images: root runs their units).
    pub fn owned_by_root(self) -> DirFs {
        DirFs {
            owned_by_root: true,
            ..self
        }
    }

    fn host(&self, path: &Path) -> PathBuf {
        self.base.join(path.strip_prefix("/").unwrap_or(path))
    }
}

fn kind_of(ft: fs::FileType) -> FileKind {
    if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

impl Fs for DirFs {
    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        match fs::symlink_metadata(self.host(path)) {
            Ok(m) => Ok(Some(kind_of(m.file_type()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.host(path))? {
            if out.len() >= MAX_DIR_ENTRIES {
                return Err(FsError::TooLarge {
                    what: "directory",
                    size: out.len() as u64 + 1,
                    limit: MAX_DIR_ENTRIES as u64,
                });
            }
            let entry = entry?;
            out.push(DirEntry {
                name: entry.file_name().as_bytes().to_vec(),
                kind: kind_of(entry.file_type()?),
            });
        }
        Ok(out)
    }

    fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        let target = fs::read_link(self.host(path))?;
        let bytes = target.as_os_str().as_bytes();
        if bytes.len() as u64 > MAX_LINK_BYTES {
            return Err(FsError::TooLarge {
                what: "symlink",
                size: bytes.len() as u64,
                limit: MAX_LINK_BYTES,
            });
        }
        Ok(bytes.to_vec())
    }

    fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        // O_NOFOLLOW: the resolver already followed links, a link appearing now is a race.
        // O_NONBLOCK: a FIFO swapped in must not hang the boot.
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(self.host(path))?;
        let meta = file.metadata()?;
        let ft = meta.file_type();
        if !ft.is_file() || ft.is_fifo() {
            return Err(FsError::WrongType("not a regular file"));
        }
        if self.owned_by_root
            && let Some(who) = crate::ownership::writable_by_others(&meta)
        {
            return Err(FsError::Unsupported(format!(
                "{who}: {}",
                crate::ownership::HINT
            )));
        }
        if meta.len() > limit {
            return Err(FsError::TooLarge {
                what: "file",
                size: meta.len(),
                limit,
            });
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        file.take(limit + 1).read_to_end(&mut data)?;
        if data.len() as u64 > limit {
            return Err(FsError::TooLarge {
                what: "file",
                size: data.len() as u64,
                limit,
            });
        }
        Ok(data)
    }

    fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        let host = self.host(path);
        // No value is larger than the kernel's XATTR_SIZE_MAX; one byte more than the
        // limit tells a value over it from one that just fits.
        let room = limit.min(MAX_XATTR_BYTES) as usize + 1;
        let mut buf = vec![0u8; room];
        match rustix::fs::lgetxattr(&host, name, &mut buf[..]) {
            Ok(n) if n as u64 > limit => Err(xattr_too_large(n as u64, limit)),
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(Errno::NODATA) => Ok(None),
            // A file system without extended attributes (or without this namespace)
            // holds none.
            Err(Errno::NOTSUP) => Ok(None),
            // The value did not fit: it is over the limit. Its size is only for the message.
            Err(Errno::RANGE) => {
                let size = rustix::fs::lgetxattr_query(&host, name).map_or(u64::MAX, |n| n as u64);
                Err(xattr_too_large(size, limit))
            }
            Err(e) => Err(std::io::Error::from(e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::xattr_fixture;

    #[test]
    fn reads_xattrs() {
        let Some(built) = xattr_fixture::build("tree", "", &[]) else {
            return;
        };
        xattr_fixture::check(&DirFs::new(built.img.clone()));
        xattr_fixture::check_tree(Box::new(DirFs::new(built.img.clone())));
    }
}
