//! squashfs images, read lazily: opening reads the superblock and the root inode; each
//! lookup then reads the directory blocks and inodes on its path, and a file read its
//! blocks, so opening costs the same for a hundred files or a million, and memory is a
//! few cached blocks (ARCHITECTURE.md, "Limits").
//!
//! The format is the kernel's (`fs/squashfs/`): a superblock ([`superblock`]), tables of
//! metadata blocks ([`metadata`]) holding inodes ([`inode`]) and directory listings
//! ([`dir`]), data blocks and fragments ([`file`]), xattrs ([`xattr`]), each block
//! compressed by the image's compressor ([`decompress`]).

pub mod decompress;
pub mod dir;
pub mod file;
pub mod inode;
pub mod metadata;
pub mod superblock;
pub mod xattr;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use self::inode::{Body, DirRef, Inode};
use self::metadata::{Meta, Table, io_error};
use self::superblock::Superblock;
use super::source::Source;
use super::{DirEntry, FileKind, Fs, FsError, MAX_PATH_DEPTH, guarded};

/// Directories whose inode is kept once looked up: a run comes back to the same few
/// (`/usr/lib/systemd/system`, `/etc`) for every unit; past this many the map starts again.
const DIR_CACHE: usize = 64;

struct SquashFs {
    sb: Superblock,
    meta: Meta,
    data: file::Data,
    inodes: Table,
    dirs: Table,
    root: Inode,
    /// Directories looked up, by path.
    dir_cache: RefCell<HashMap<PathBuf, DirRef>>,
}

/// Open the squashfs file system occupying all of `src`.
pub fn open(src: Source) -> Result<Box<dyn Fs>, FsError> {
    Ok(Box::new(open_squashfs(src)?))
}

fn open_squashfs(src: Source) -> Result<SquashFs, FsError> {
    let mut raw = [0u8; superblock::SIZE];
    src.read_exact_at(&mut raw, 0)
        .map_err(|e| match io_error(&e) {
            FsError::Corrupt(_) => {
                FsError::Corrupt("image too small for a squashfs superblock".into())
            }
            e => e,
        })?;
    let sb = Superblock::parse(&raw, src.len())?;
    let inodes = Table {
        name: "inode",
        start: sb.inode_table,
        end: sb.dir_table,
    };
    let dirs = Table {
        name: "directory",
        start: sb.dir_table,
        end: sb.table_end(sb.dir_table),
    };
    let meta = Meta::new(src, sb.compressor);
    // Decoders are third-party code: a panic in one is this image's error.
    let root = guarded(|| Inode::read(&meta, inodes, sb.root_inode))?;
    if !matches!(root.body, Body::Dir(_)) {
        return Err(FsError::Corrupt("the root inode is not a directory".into()));
    }
    Ok(SquashFs {
        sb,
        meta,
        data: file::Data::default(),
        inodes,
        dirs,
        root,
        dir_cache: RefCell::new(HashMap::new()),
    })
}

/// The names of an absolute, normalised path's components, as
/// [`crate::image::chase::Tree`] hands them over: a `.` or `..` left in one names nothing.
fn names(path: &Path) -> Result<Vec<&OsStr>, FsError> {
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::RootDir => {}
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(FsError::NotFound);
            }
        }
    }
    if names.len() > MAX_PATH_DEPTH {
        return Err(FsError::Corrupt(format!(
            "a path of more than {MAX_PATH_DEPTH} components"
        )));
    }
    Ok(names)
}

impl SquashFs {
    fn inode(&self, reference: u64) -> Result<Inode, FsError> {
        Inode::read(&self.meta, self.inodes, reference)
    }

    /// The directory at `path`.
    fn dir(&self, path: &Path) -> Result<DirRef, FsError> {
        let Body::Dir(root) = self.root.body else {
            return Err(FsError::NotADirectory);
        };
        let names = names(path)?;
        // The deepest directory on the way already looked up.
        let mut known = names.len();
        let mut dir = root;
        let mut at = PathBuf::from("/");
        {
            let cache = self.dir_cache.borrow();
            while known > 0 {
                let prefix: PathBuf = std::iter::once(OsStr::new("/"))
                    .chain(names[..known].iter().copied())
                    .collect();
                if let Some(&d) = cache.get(&prefix) {
                    dir = d;
                    at = prefix;
                    break;
                }
                known -= 1;
            }
        }
        for name in &names[known..] {
            let entry = dir::find(&self.meta, self.inodes, self.dirs, dir, name.as_bytes())?
                .ok_or(FsError::NotFound)?;
            if entry.kind != FileKind::Dir {
                return Err(FsError::NotADirectory);
            }
            let Body::Dir(next) = self.inode(entry.inode)?.body else {
                return Err(FsError::Corrupt(format!(
                    "{} is a directory in its parent's listing and not in its inode",
                    at.join(name).display()
                )));
            };
            at.push(name);
            dir = next;
            let mut cache = self.dir_cache.borrow_mut();
            if cache.len() == DIR_CACHE {
                cache.clear();
            }
            cache.insert(at.clone(), dir);
        }
        Ok(dir)
    }

    /// The entry at `path`: its inode reference and kind; `None` for the root.
    fn entry(&self, path: &Path) -> Result<Option<dir::Entry>, FsError> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            names(path)?;
            return Ok(None);
        };
        let dir = self.dir(parent)?;
        dir::find(&self.meta, self.inodes, self.dirs, dir, name.as_bytes())?
            .map(Some)
            .ok_or(FsError::NotFound)
    }

    /// The inode at `path`.
    fn inode_at(&self, path: &Path) -> Result<Inode, FsError> {
        let Some(entry) = self.entry(path)? else {
            return Ok(self.root);
        };
        let inode = self.inode(entry.inode)?;
        if inode.kind() != entry.kind {
            return Err(FsError::Corrupt(format!(
                "{} is a {:?} in its directory and a {:?} in its inode",
                path.display(),
                entry.kind,
                inode.kind()
            )));
        }
        Ok(inode)
    }
}

impl Fs for SquashFs {
    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        guarded(|| match self.entry(path) {
            Ok(Some(e)) => Ok(Some(e.kind)),
            Ok(None) => Ok(Some(FileKind::Dir)),
            Err(FsError::NotFound | FsError::NotADirectory) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
        guarded(|| dir::list(&self.meta, self.dirs, self.dir(path)?))
    }

    fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        guarded(|| {
            let Body::Symlink(len, at) = self.inode_at(path)?.body else {
                return Err(FsError::WrongType("not a symbolic link"));
            };
            if len == 0 {
                return Err(FsError::Corrupt("empty symlink target".into()));
            }
            // `len` was checked against MAX_LINK_BYTES when the inode was read.
            self.meta
                .stream(self.inodes, at.0, at.1)?
                .bytes(usize::try_from(len).unwrap_or(usize::MAX))
        })
    }

    fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        guarded(|| {
            let file = match self.inode_at(path)?.body {
                Body::File(f) => f,
                Body::Dir(_) => return Err(FsError::WrongType("is a directory")),
                Body::Symlink(..) => return Err(FsError::Unsupported("is a symbolic link".into())),
                Body::Other => return Err(FsError::WrongType("not a regular file")),
            };
            if file.size > limit {
                return Err(FsError::TooLarge {
                    what: "file",
                    size: file.size,
                    limit,
                });
            }
            self.data.read(&self.meta, &self.sb, self.inodes, &file)
        })
    }

    fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        guarded(|| {
            let inode = self.inode_at(path)?;
            xattr::get(&self.meta, &self.sb, inode.xattr, name, limit)
        })
    }
}

#[cfg(test)]
mod tests;
