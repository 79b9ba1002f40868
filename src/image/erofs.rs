//! erofs images, read in user space with the `erofs-rs` crate.
//!
//! erofs-rs's synchronous API wants the whole image as a byte slice, which means mmap:
//! `unsafe`, and SIGBUS when the file shrinks underneath. Its asynchronous API reads
//! through a trait instead. Reads from a [`Source`] never wait, so its futures are
//! complete after one poll and need no runtime.
//!
//! erofs-rs has no lstat. Its own path lookup, behind `open` and `read_dir`, tells files
//! and directories apart cheaply; a symlink or special file is told apart by the parent's
//! listing, which carries every entry's inode. Listings are cached per directory: a
//! generator resolves many paths in the same few directories.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use erofs_rs::r#async::EroFS;
use erofs_rs::backend::AsyncImage;
use erofs_rs::types::Inode;

use super::source::Source;
use super::{
    DirEntry, FileKind, Fs, FsError, MAX_DIR_ENTRIES, MAX_LINK_BYTES, PANICKED, guarded,
    too_many_entries, xattr_too_large,
};

/// Entries kept in cached listings, all directories together; past it the cache starts
/// over, so memory stays bounded however many directories are asked about.
const MAX_CACHED_ENTRIES: usize = 4 * MAX_DIR_ENTRIES;

/// Bytes read from the image for one call (open, lstat, ...). The asynchronous API has
/// no cache, so every block a request walks is asked for again and counted here (whether
/// [`SourceImage`]'s few blocks hold it or not): a directory whose inode
/// claims a huge size, or whose chunk index maps one block again and again, is cut off
/// instead of hanging the generator. Real requests read kilobytes; a full listing of
/// [`MAX_DIR_ENTRIES`] entries some 20 MiB.
const READ_BUDGET: u64 = 256 * 1024 * 1024;

/// Open the erofs file system occupying all of `src`.
pub fn open(src: Source) -> Result<Box<dyn Fs>, FsError> {
    open_with_budget(src, READ_BUDGET)
}

fn open_with_budget(src: Source, per_call: u64) -> Result<Box<dyn Fs>, FsError> {
    let budget = Arc::new(AtomicU64::new(per_call));
    let image = SourceImage {
        src,
        budget: budget.clone(),
        blocks: Mutex::default(),
    };
    let fs = guarded(|| block_on(async { EroFS::new(image).await.map_err(map_err) }))?;
    Ok(Box::new(ErofsFs {
        fs,
        budget,
        per_call,
        dirs: RefCell::new(HashMap::new()),
        cached: Cell::new(0),
        poisoned: Cell::new(false),
    }))
}

#[derive(Debug)]
struct SourceImage {
    src: Source,
    /// Bytes left for the current call; [`ErofsFs`] refills it. Atomic only because
    /// erofs-rs wants images that are `Sync`.
    budget: Arc<AtomicU64>,
    /// The blocks read last. erofs-rs reads an inode, a directory entry or a name at a
    /// time, some 150 reads of a few bytes for one image's units, nearly all in the same
    /// few blocks: one `pread` per block instead. A `Mutex` (never contended: one thread
    /// reads an image) only because the image must be `Sync`.
    blocks: Mutex<Blocks>,
}

/// Size of a cached block, and the largest read that goes through the cache (larger ones,
/// file contents mostly, are read directly).
const CACHE_BLOCK: u64 = 4096;
/// Blocks kept: the superblock's, the root directory's, those on the way to the unit
/// directories and a unit's inode. Memory stays at 32 KiB per image however it is read.
const CACHE_BLOCKS: usize = 8;

#[derive(Debug, Default)]
struct Blocks {
    /// (block number, its bytes: a whole block, or what the image has of its last one);
    /// the most recently used last.
    kept: Vec<(u64, Box<[u8]>)>,
}

impl Blocks {
    /// Fill `buf` from `offset` of `src` (whole, checked by the caller), block by block.
    fn read(&mut self, src: &Source, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let (number, within) = (at / CACHE_BLOCK, at % CACHE_BLOCK);
            let block = self.block(src, number)?;
            // `within` < CACHE_BLOCK: it fits a usize.
            let within = usize::try_from(within).unwrap_or(usize::MAX);
            let have = block.get(within..).unwrap_or_default();
            if have.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let n = have.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&have[..n]);
            done += n;
        }
        Ok(())
    }

    fn block(&mut self, src: &Source, number: u64) -> io::Result<&[u8]> {
        if let Some(i) = self.kept.iter().position(|(n, _)| *n == number) {
            let hit = self.kept.remove(i);
            self.kept.push(hit);
        } else {
            let start = number * CACHE_BLOCK;
            let len = CACHE_BLOCK.min(src.len().saturating_sub(start));
            let mut bytes = vec![0; usize::try_from(len).unwrap_or(0)].into_boxed_slice();
            src.read_exact_at(&mut bytes, start)?;
            if self.kept.len() == CACHE_BLOCKS {
                self.kept.remove(0);
            }
            self.kept.push((number, bytes));
        }
        Ok(self.kept.last().map(|(_, b)| &b[..]).unwrap_or_default())
    }
}

impl AsyncImage for SourceImage {
    async fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> erofs_rs::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let left = self.budget.load(Ordering::Relaxed);
        let left = left.checked_sub(buf.len() as u64).ok_or_else(|| {
            erofs_rs::Error::CorruptedData(format!(
                "more than {} MiB read for one request",
                READ_BUDGET >> 20
            ))
        })?;
        self.budget.store(left, Ordering::Relaxed);
        let end = offset.checked_add(buf.len() as u64);
        if buf.len() as u64 > CACHE_BLOCK || end.is_none_or(|end| end > self.src.len()) {
            // Large, or past the end: read (and refused) as without a cache.
            return Ok(self.src.read_exact_at(buf, offset)?);
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(blocks.read(&self.src, buf, offset)?)
    }
}

/// Drive a future that never waits. Should one wait after all, that is an error rather
/// than a hang: nothing would ever wake it.
fn block_on<T>(fut: impl Future<Output = Result<T, FsError>>) -> Result<T, FsError> {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(FsError::Io(io::Error::other("erofs reader waited for I/O"))),
    }
}

struct Entry {
    name: Vec<u8>,
    nid: u64,
    kind: FileKind,
}

/// One directory's entries, sorted by name.
type Listing = Rc<Vec<Entry>>;

struct ErofsFs {
    fs: EroFS<SourceImage>,
    budget: Arc<AtomicU64>,
    per_call: u64,
    dirs: RefCell<HashMap<PathBuf, Listing>>,
    /// Entries in `dirs`.
    cached: Cell<usize>,
    /// Set once erofs-rs panicked; nothing it says afterwards is trusted.
    poisoned: Cell<bool>,
}

fn kind(inode: &Inode) -> FileKind {
    if inode.is_file() {
        FileKind::File
    } else if inode.is_dir() {
        FileKind::Dir
    } else if inode.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    }
}

fn find<'a>(listing: &'a [Entry], name: &[u8]) -> Option<&'a Entry> {
    listing
        .binary_search_by(|e| e.name.as_slice().cmp(name))
        .ok()
        .map(|i| &listing[i])
}

impl ErofsFs {
    fn call<T>(&self, f: impl FnOnce() -> Result<T, FsError>) -> Result<T, FsError> {
        if self.poisoned.get() {
            return Err(FsError::Corrupt("erofs reader panicked earlier".into()));
        }
        self.budget.store(self.per_call, Ordering::Relaxed);
        let r = guarded(f);
        if matches!(&r, Err(FsError::Corrupt(m)) if m.starts_with(PANICKED)) {
            self.poisoned.set(true);
        }
        r
    }

    fn cached(&self, dir: &Path) -> Option<Listing> {
        self.dirs.borrow().get(dir).cloned()
    }

    fn listing(&self, dir: &Path) -> Result<Listing, FsError> {
        if let Some(l) = self.cached(dir) {
            return Ok(l);
        }
        let mut entries = block_on(async {
            // Every entry comes with its inode, read and checked, so kinds are the inode's.
            let mut walk = self.fs.read_dir(dir.as_os_str()).await.map_err(map_err)?;
            let mut out = Vec::new();
            while let Some(e) = walk.next_entry().await {
                let e = e.map_err(map_err)?;
                if out.len() == MAX_DIR_ENTRIES {
                    return Err(too_many_entries(out.len() + 1));
                }
                let name = e.dir_entry.file_name().to_vec();
                out.push(Entry {
                    name,
                    nid: e.inode.id(),
                    kind: kind(&e.inode),
                });
            }
            Ok(out)
        })?;
        // erofs sorts names within each directory block, and blocks in order, so this
        // is cheap; it also makes a damaged directory's duplicates visible.
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        if entries.windows(2).any(|w| w[0].name == w[1].name) {
            return Err(FsError::Corrupt(
                "a name appears twice in a directory".into(),
            ));
        }
        let listing = Rc::new(entries);
        let mut dirs = self.dirs.borrow_mut();
        if self.cached.get() + listing.len() > MAX_CACHED_ENTRIES {
            dirs.clear();
            self.cached.set(0);
        }
        self.cached.set(self.cached.get() + listing.len());
        dirs.insert(dir.to_path_buf(), listing.clone());
        Ok(listing)
    }

    /// The entry for `path` in its parent's listing.
    fn entry(&self, path: &Path) -> Result<Option<(u64, FileKind)>, FsError> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            let root = self.fs.super_block().root_inode_id();
            return Ok(Some((root, FileKind::Dir)));
        };
        let listing = match self.listing(parent) {
            Ok(l) => l,
            Err(FsError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(find(&listing, name.as_bytes()).map(|e| (e.nid, e.kind)))
    }

    /// Without a cached listing of the parent, ask erofs-rs's own lookup first: it
    /// binary-searches directory blocks, where a listing reads every entry's inode.
    fn lookup(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        let os = path.as_os_str();
        let is_dir = block_on(async {
            match self.fs.read_dir(os).await {
                Ok(_) => Ok(Some(true)),
                Err(erofs_rs::Error::NotADirectory(_)) => Ok(Some(false)),
                Err(erofs_rs::Error::PathNotFound(_)) => Ok(None),
                Err(e) => Err(map_err(e)),
            }
        })?;
        match is_dir {
            None => return Ok(None),
            Some(true) => return Ok(Some(FileKind::Dir)),
            Some(false) => {}
        }
        let is_file = block_on(async {
            match self.fs.open(os).await {
                Ok(_) => Ok(true),
                Err(erofs_rs::Error::NotAFile(_)) => Ok(false),
                Err(e) => Err(map_err(e)),
            }
        })?;
        if is_file {
            return Ok(Some(FileKind::File));
        }
        // A symlink or a special file: only the inode says which.
        Ok(self.entry(path)?.map(|(_, k)| k))
    }
}

impl Fs for ErofsFs {
    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        self.call(|| {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Ok(Some(FileKind::Dir));
            };
            match self.cached(parent) {
                Some(l) => Ok(find(&l, name.as_bytes()).map(|e| e.kind)),
                None => self.lookup(path),
            }
        })
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
        self.call(|| {
            let listing = self.listing(path)?;
            Ok(listing
                .iter()
                .map(|e| DirEntry {
                    name: e.name.clone(),
                    kind: e.kind,
                })
                .collect())
        })
    }

    fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        self.call(|| {
            let (nid, kind) = self.entry(path)?.ok_or(FsError::NotFound)?;
            if kind != FileKind::Symlink {
                return Err(FsError::WrongType("not a symbolic link"));
            }
            block_on(async {
                let inode = self.fs.get_inode(nid).await.map_err(map_err)?;
                if !inode.is_symlink() {
                    return Err(FsError::Corrupt("inode changed type".into()));
                }
                // erofs-rs reads as many blocks as the inode claims.
                if inode.data_size() > MAX_LINK_BYTES {
                    return Err(FsError::TooLarge {
                        what: "symlink",
                        size: inode.data_size(),
                        limit: MAX_LINK_BYTES,
                    });
                }
                let target = self.fs.read_link_inode(inode).await.map_err(map_err)?;
                Ok(target.as_bytes().to_vec())
            })
        })
    }

    fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        self.call(|| {
            // The unit files are read right after their directory was listed: its inode
            // is known, and a path lookup from the root would read every directory on
            // the way again (the asynchronous API caches nothing).
            let listed = match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) => self
                    .cached(parent)
                    .map(|l| find(&l, name.as_bytes()).map(|e| e.nid)),
                _ => None,
            };
            block_on(async {
                // erofs-rs does not follow symlinks, so a final symlink is "not a file".
                let file = match listed {
                    Some(Some(nid)) => {
                        let inode = self.fs.get_inode(nid).await.map_err(map_err)?;
                        self.fs.open_inode_file(inode).map_err(map_err)?
                    }
                    Some(None) => return Err(FsError::NotFound),
                    None => self.fs.open(path.as_os_str()).await.map_err(map_err)?,
                };
                // `read_to_end` would reserve whatever size the inode claims.
                let size = file.size();
                if size > limit {
                    return Err(FsError::TooLarge {
                        what: "file",
                        size,
                        limit,
                    });
                }
                let len = usize::try_from(size).map_err(|_| FsError::TooLarge {
                    what: "file",
                    size,
                    limit,
                })?;
                let mut buf = vec![0u8; len];
                let mut done = 0;
                while done < len {
                    match file
                        .read_at(&mut buf[done..], done as u64)
                        .await
                        .map_err(map_err)?
                    {
                        0 => return Err(FsError::Corrupt("file data ends early".into())),
                        n => done += n,
                    }
                }
                Ok(buf)
            })
        })
    }

    fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        self.call(|| {
            let (nid, _) = self.entry(path)?.ok_or(FsError::NotFound)?;
            block_on(async {
                let inode = self.fs.get_inode(nid).await.map_err(map_err)?;
                // erofs-rs reads them all: the inline area is at most 256 KiB and each of
                // at most 255 shared entries 64 KiB, and the read budget bounds it too.
                let attrs = self.fs.xattrs_inode(inode).await.map_err(map_err)?;
                match attrs.get(name.as_bytes()) {
                    Some(v) if v.len() as u64 > limit => {
                        Err(xattr_too_large(v.len() as u64, limit))
                    }
                    v => Ok(v.cloned()),
                }
            })
        })
    }
}

fn map_err(e: erofs_rs::Error) -> FsError {
    use erofs_rs::Error as E;
    match e {
        E::PathNotFound(_) => FsError::NotFound,
        E::NotADirectory(_) => FsError::NotADirectory,
        E::NotAFile(_) => FsError::WrongType("not a regular file"),
        E::NotASymlink(_) => FsError::WrongType("not a symbolic link"),
        E::NotSupported(what) => FsError::Unsupported(what.clone()),
        // Source reports reads past its window this way: the file system points outside
        // the image.
        E::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => FsError::Corrupt(format!("{e}")),
        E::Io(e) => FsError::Io(e),
        e => FsError::Corrupt(format!("{e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::MAX_FILE_BYTES;
    use crate::image::fixture::{self, Built};
    use crate::image::xattr_fixture;

    fn mkfs(extra: &[&str]) -> Option<Built> {
        let mut args = vec!["--quiet", "--all-root"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["{img}", "{tree}"]);
        fixture::build("img.erofs", "mkfs.erofs", &args)
    }

    #[test]
    fn reads_what_mkfs_wrote() {
        for extra in [&[][..], &["-zlz4"], &["-zlz4hc"]] {
            let Some(built) = mkfs(extra) else { return };
            fixture::check_image(&built, open);
        }
    }

    fn mkfs_xattrs(extra: &[&str]) -> Option<Built> {
        let mut args = vec!["--quiet", "--all-root"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["{img}", "{tree}"]);
        xattr_fixture::build("img.erofs", "mkfs.erofs", &args)
    }

    /// Inline and shared xattrs (`-x1`: an attribute on two files is shared), plain and
    /// compressed, and an image built without xattrs.
    #[test]
    fn reads_xattrs() {
        for extra in [&[][..], &["-zlz4hc"], &["-x1"], &["-x-1"]] {
            let Some(built) = mkfs_xattrs(extra) else {
                return;
            };
            let fs = open(fixture::source(&built.img)).unwrap();
            // `-x-1` builds it without xattrs.
            xattr_fixture::check_image(fs, extra != ["-x-1"]);
        }
    }

    #[test]
    fn damaged_xattrs_do_not_panic() {
        let Some(built) = mkfs_xattrs(&[]) else {
            return;
        };
        xattr_fixture::check_corrupt(&built, open, b"extension-release.strict");
        let Some(built) = mkfs_xattrs(&["-x1"]) else {
            return;
        };
        xattr_fixture::check_corrupt(&built, open, b"the same value");
    }

    #[test]
    fn reads_a_partition_at_an_offset() {
        let Some(built) = mkfs(&["-zlz4hc"]) else {
            return;
        };
        fixture::check_at_offset(&built, open);
    }

    #[test]
    fn damaged_images_do_not_panic() {
        for extra in [&[][..], &["-zlz4hc"]] {
            let Some(built) = mkfs(extra) else { return };
            fixture::check_corrupt(&built, open);
        }
    }

    /// Kinds must not depend on whether the parent's listing happens to be cached.
    #[test]
    fn lstat_agrees_with_and_without_a_cached_listing() {
        let Some(built) = mkfs(&[]) else { return };
        let paths = [
            "/lib",
            "/etc/os-release",
            "/usr/lib",
            "/usr/lib/os-release",
            "/x",
        ];
        let cold: Vec<_> = paths
            .iter()
            .map(|p| {
                open(fixture::source(&built.img))
                    .unwrap()
                    .lstat(Path::new(p))
                    .unwrap()
            })
            .collect();
        let fs = open(fixture::source(&built.img)).unwrap();
        fs.read_dir(Path::new("/")).unwrap();
        fs.read_dir(Path::new("/etc")).unwrap();
        fs.read_dir(Path::new("/usr")).unwrap();
        let warm: Vec<_> = paths
            .iter()
            .map(|p| fs.lstat(Path::new(p)).unwrap())
            .collect();
        assert_eq!(cold, warm);
        assert_eq!(
            cold,
            [
                Some(FileKind::Symlink),
                Some(FileKind::Symlink),
                Some(FileKind::Dir),
                Some(FileKind::File),
                None
            ]
        );
    }

    /// Reads through the kept blocks give what reading the image directly gives, across
    /// block boundaries, with blocks evicted, up to the last byte and past it.
    #[test]
    fn kept_blocks_read_what_the_image_holds() {
        let block = usize::try_from(CACHE_BLOCK).unwrap();
        let len = block * (CACHE_BLOCKS + 3) + 123;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i * 7 + i / 251).to_le_bytes()[0])
            .collect();
        let src = Source::from_bytes(bytes.clone());
        let mut blocks = Blocks::default();
        for start in (0..len).step_by(block / 3 + 1).chain([len - 1, len - 5]) {
            for n in [1, 12, block, 2 * block] {
                let mut got = vec![0; n];
                let r = blocks.read(&src, &mut got, start as u64);
                match bytes.get(start..start + n) {
                    Some(want) => assert_eq!((r.is_ok(), &got[..]), (true, want), "{start}+{n}"),
                    None => assert!(r.is_err(), "{start}+{n} is past the end"),
                }
            }
        }
        assert!(blocks.kept.len() <= CACHE_BLOCKS);
    }

    #[test]
    fn a_spent_read_budget_is_an_error() {
        let Some(built) = mkfs(&[]) else { return };
        let r = open_with_budget(fixture::source(&built.img), 0);
        assert!(matches!(r, Err(FsError::Corrupt(m)) if m.contains("read for one request")));
        let fs = open_with_budget(fixture::source(&built.img), 64 * 1024).unwrap();
        let big = Path::new(fixture::UNITS).join("big.service");
        let r = fs.read_file(&big, MAX_FILE_BYTES);
        assert!(matches!(r, Err(FsError::Corrupt(m)) if m.contains("read for one request")));
        // The budget is per call: the next one starts afresh.
        assert!(fs.read_file(Path::new("/usr/lib/os-release"), 100).is_ok());
    }

    #[test]
    fn a_future_that_waits_is_an_error() {
        let r = block_on(async {
            std::future::pending::<()>().await;
            Ok(())
        });
        assert!(matches!(r, Err(FsError::Io(_))));
    }
}
