//! squashfs images, read in user space with the `backhand` crate.
//!
//! backhand reads every inode when the image is opened and keeps them as a list of nodes
//! sorted by full path; an index built once here turns each lookup into a map access.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::{BackhandError, FilesystemReader, InnerNode, SquashfsFileReader};

use super::source::Source;
use super::squashfs_xattr;
use super::{DirEntry, FileKind, Fs, FsError, MAX_DIR_ENTRIES, MAX_LINK_BYTES, PANICKED, guarded};

/// backhand reads metadata in small pieces and seeks often; one syscall per 64 KiB
/// instead of per field.
const READ_BUFFER: usize = 64 * 1024;

/// Most inodes accepted: backhand loads every inode at open, about 320 bytes each, so this
/// bounds its memory (about 40 MiB) whatever the image claims.
pub const MAX_INODES: u64 = 120_000;

/// Check the superblock before backhand sees it: its own errors say little ("inconsistent
/// structures"), and its memory grows with the inode count.
fn check_superblock(src: &Source) -> Result<(), FsError> {
    let mut sb = [0u8; 96];
    src.read_exact_at(&mut sb, 0)
        .map_err(|_| FsError::Corrupt("image too small for a squashfs superblock".into()))?;
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&sb[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let (major, minor) = (u16_at(28), u16_at(30));
    if (major, minor) != (4, 0) {
        return Err(FsError::Unsupported(format!(
            "squashfs version {major}.{minor} (only 4.0 is read)"
        )));
    }
    let block_size = u32_at(12);
    if !block_size.is_power_of_two()
        || !(4096..=1 << 20).contains(&block_size)
        || u32::from(u16_at(22)) != block_size.trailing_zeros()
    {
        return Err(FsError::Corrupt(format!("invalid block size {block_size}")));
    }
    let bytes_used = u64_at(40);
    if bytes_used > src.len() {
        return Err(FsError::Corrupt(format!(
            "the superblock claims {bytes_used} bytes, the image holds {}",
            src.len()
        )));
    }
    let (inode_table, dir_table) = (u64_at(64), u64_at(72));
    if inode_table >= bytes_used || dir_table >= bytes_used || inode_table > dir_table {
        return Err(FsError::Corrupt(
            "inode or directory table outside the file system".into(),
        ));
    }
    let inodes = u64::from(u32_at(4));
    if inodes > MAX_INODES {
        return Err(FsError::Unsupported(format!(
            "{inodes} inodes, more than the {MAX_INODES} this reader loads (it reads every inode at open)"
        )));
    }
    Ok(())
}

/// Largest metadata block, compressed or not (`SQUASHFS_METADATA_SIZE`).
const METADATA_BLOCK: u16 = 8192;

/// What is wrong with a squashfs that backhand refused at open, found by reading its tables
/// as backhand does, in the same order (`Squashfs::from_reader_with_offset`): their
/// offsets, then each metadata block's header and contents. `None` when the tables read
/// well, and what is wrong is in the inodes or directories they hold.
fn diagnose(src: &Source) -> Option<String> {
    let mut sb = [0u8; 96];
    src.read_exact_at(&mut sb, 0).ok()?;
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&sb[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let bytes_used = u64_at(40);
    let (id, xattr, inodes, dirs, frag, export) = (
        u64_at(48),
        u64_at(56),
        u64_at(64),
        u64_at(72),
        u64_at(80),
        u64_at(88),
    );
    const NOT_SET: u64 = u64::MAX;
    for (name, at) in [
        ("uid/gid", id),
        ("extended attribute", xattr),
        ("fragment", frag),
        ("export", export),
    ] {
        if at != NOT_SET && at >= bytes_used {
            return Some(format!(
                "the superblock places the {name} table at byte {at}, past the end of the file system ({bytes_used} bytes)"
            ));
        }
    }
    let compressor = match u16_at(20) {
        1 => Compressor::Gzip,
        4 => Compressor::Xz,
        5 => Compressor::Lz4,
        6 => Compressor::Zstd,
        // Refused by backhand with its own clear error.
        _ => return None,
    };
    // The directory table ends where backhand stops reading it: the first table after it.
    let dirs_end = [frag, export, id]
        .into_iter()
        .find(|&t| t != NOT_SET)
        .unwrap_or(bytes_used);
    for (name, start, end) in [("inode", inodes, dirs), ("directory", dirs, dirs_end)] {
        if let Some(why) = check_metadata(src, compressor, start, end) {
            return Some(format!("the {name} table (bytes {start} to {end}) {why}"));
        }
    }
    None
}

/// Walk the metadata blocks in `[start, end)`: each a 2-byte header (length, bit 15 set
/// when stored uncompressed), then the data; the last must end exactly at `end`.
fn check_metadata(src: &Source, compressor: Compressor, start: u64, end: u64) -> Option<String> {
    let mut at = start;
    while at < end {
        let mut header = [0u8; 2];
        if src.read_exact_at(&mut header, at).is_err() {
            return Some(format!("is cut short: no block header at byte {at}"));
        }
        let header = u16::from_le_bytes(header);
        let size = header & 0x7fff;
        let len = u64::from(size);
        if size == 0 || size > METADATA_BLOCK {
            return Some(format!(
                "has a block at byte {at} claiming {len} bytes (1 to {METADATA_BLOCK})"
            ));
        }
        let data_end = at + 2 + len;
        if data_end > end {
            return Some(format!(
                "has a block at byte {at} of {len} bytes, running past the table's end"
            ));
        }
        if header & 0x8000 == 0 {
            let mut data = vec![0u8; usize::from(size)];
            if src.read_exact_at(&mut data, at + 2).is_err() {
                return Some(format!("is cut short at byte {at}"));
            }
            let mut out = Vec::with_capacity(usize::from(METADATA_BLOCK));
            let ok = DefaultCompressor
                .decompress(&data, &mut out, compressor)
                .is_ok();
            if !ok || out.len() > usize::from(METADATA_BLOCK) {
                return Some(format!(
                    "has a block at byte {at} that does not decompress ({}): its data is damaged",
                    format!("{compressor:?}").to_lowercase()
                ));
            }
        }
        at = data_end;
    }
    None
}

/// Open the squashfs file system occupying all of `src`.
pub fn open(src: Source) -> Result<Box<dyn Fs>, FsError> {
    check_superblock(&src)?;
    let xattrs = squashfs_xattr::Table::new(src.clone())?;
    guarded(|| {
        let whole = src.clone();
        let reader = BufReader::with_capacity(READ_BUFFER, SourceCursor { src, pos: 0 });
        // `src` is already the file system's own window, so backhand starts at 0.
        let fs = FilesystemReader::from_reader_with_offset(reader, 0).map_err(|e| {
            // backhand says little ("inconsistent structures"): say which table is wrong
            // where the tables themselves tell.
            match (diagnose(&whole), e) {
                (Some(why), _) => FsError::Corrupt(why),
                (None, BackhandError::Deku(e)) if e.to_string().starts_with("Not enough data") => {
                    FsError::Corrupt(
                        "an inode runs past the end of the inode table (a file size or count in it is wrong)"
                            .into(),
                    )
                }
                (None, BackhandError::CorruptedOrInvalidSquashfs | BackhandError::Deku(_)) => {
                    FsError::Corrupt(
                        "its tables read well but do not agree (an inode count, the root inode or a directory entry is wrong)"
                            .into(),
                    )
                }
                (None, e) => map_err(e),
            }
        })?;
        let (index, children) = build_index(&fs)?;
        Ok(Box::new(SquashFs {
            fs,
            index,
            children,
            xattrs,
            poisoned: Cell::new(false),
        }) as Box<dyn Fs>)
    })
}

/// `Read + Seek` over a [`Source`], which itself only has positioned reads.
struct SourceCursor {
    src: Source,
    pos: u64,
}

impl Read for SourceCursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.src.len().saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        self.src.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SourceCursor {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.src.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start or past 2^64",
            )
        })?;
        Ok(self.pos)
    }
}

struct SquashFs {
    fs: FilesystemReader<'static>,
    /// Full path to position in `fs.root.nodes`.
    index: HashMap<PathBuf, usize>,
    /// Directory position to the positions of its entries.
    children: HashMap<usize, Vec<usize>>,
    xattrs: squashfs_xattr::Table,
    /// Set once backhand panicked: its reader lock and caches may be left inconsistent.
    poisoned: Cell<bool>,
}

type Index = (HashMap<PathBuf, usize>, HashMap<usize, Vec<usize>>);

fn build_index(fs: &FilesystemReader<'_>) -> Result<Index, FsError> {
    let nodes = &fs.root.nodes;
    let mut index = HashMap::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        if index.insert(node.fullpath.clone(), i).is_some() {
            return Err(FsError::Corrupt(format!(
                "{} listed twice",
                node.fullpath.display()
            )));
        }
    }
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let Some(parent) = node.fullpath.parent() else {
            continue;
        };
        let Some(&p) = index.get(parent) else {
            return Err(FsError::Corrupt(format!(
                "{} has no parent directory",
                node.fullpath.display()
            )));
        };
        children.entry(p).or_default().push(i);
    }
    Ok((index, children))
}

fn kind<T>(inner: &InnerNode<T>) -> FileKind {
    match inner {
        InnerNode::File(_) => FileKind::File,
        InnerNode::Dir(_) => FileKind::Dir,
        InnerNode::Symlink(_) => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

impl SquashFs {
    fn call<T>(&self, f: impl FnOnce() -> Result<T, FsError>) -> Result<T, FsError> {
        if self.poisoned.get() {
            return Err(FsError::Corrupt("squashfs reader panicked earlier".into()));
        }
        let r = guarded(f);
        if matches!(&r, Err(FsError::Corrupt(m)) if m.starts_with(PANICKED)) {
            self.poisoned.set(true);
        }
        r
    }

    fn node(&self, path: &Path) -> Option<(usize, &InnerNode<SquashfsFileReader>)> {
        let &i = self.index.get(path)?;
        Some((i, &self.fs.root.nodes[i].inner))
    }
}

impl Fs for SquashFs {
    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        Ok(self.node(path).map(|(_, n)| kind(n)))
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
        let (i, node) = self.node(path).ok_or(FsError::NotFound)?;
        if !matches!(node, InnerNode::Dir(_)) {
            return Err(FsError::NotADirectory);
        }
        let entries = self.children.get(&i).map(Vec::as_slice).unwrap_or_default();
        if entries.len() > MAX_DIR_ENTRIES {
            return Err(FsError::TooLarge {
                what: "directory",
                size: entries.len() as u64,
                limit: MAX_DIR_ENTRIES as u64,
            });
        }
        let nodes = &self.fs.root.nodes;
        entries
            .iter()
            .map(|&c| {
                let name = nodes[c]
                    .fullpath
                    .file_name()
                    .ok_or_else(|| FsError::Corrupt("directory entry without a name".into()))?;
                Ok(DirEntry {
                    name: name.as_bytes().to_vec(),
                    kind: kind(&nodes[c].inner),
                })
            })
            .collect()
    }

    fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        let (_, node) = self.node(path).ok_or(FsError::NotFound)?;
        let InnerNode::Symlink(link) = node else {
            return Err(FsError::WrongType("not a symbolic link"));
        };
        let target = link.link.as_os_str().as_bytes();
        if target.len() as u64 > MAX_LINK_BYTES {
            return Err(FsError::TooLarge {
                what: "symlink",
                size: target.len() as u64,
                limit: MAX_LINK_BYTES,
            });
        }
        if target.is_empty() {
            return Err(FsError::Corrupt("empty symlink target".into()));
        }
        Ok(target.to_vec())
    }

    fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        let (_, node) = self.node(path).ok_or(FsError::NotFound)?;
        let file = match node {
            InnerNode::File(f) => f,
            InnerNode::Dir(_) => return Err(FsError::WrongType("is a directory")),
            InnerNode::Symlink(_) => {
                return Err(FsError::Unsupported("is a symbolic link".into()));
            }
            _ => return Err(FsError::WrongType("not a regular file")),
        };
        let size = file.file_len() as u64;
        if size > limit {
            return Err(FsError::TooLarge {
                what: "file",
                size,
                limit,
            });
        }
        self.call(|| {
            let mut reader = self.fs.file(file).reader_checked().map_err(map_err)?;
            let mut buf = vec![0u8; file.file_len()];
            reader
                .read_exact(&mut buf)
                .map_err(|e| map_err(BackhandError::StdIo(e)))?;
            Ok(buf)
        })
    }

    fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        let (_, node) = self.node(path).ok_or(FsError::NotFound)?;
        // The decompressors are backhand's: a panic in them is caught like its others.
        self.call(|| {
            let index = match node {
                // mksquashfs writes a file with xattrs as an extended inode; a basic one
                // has none.
                InnerNode::File(SquashfsFileReader::Extended(f)) => f.xattr_index,
                InnerNode::File(SquashfsFileReader::Basic(_)) => return Ok(None),
                // backhand keeps no index for the others: their inode is looked up anew.
                _ => {
                    let (index, found) = self.xattrs.index_of(path)?;
                    if found != kind(node) {
                        return Err(FsError::Corrupt(format!(
                            "{} is a different inode to the xattr reader",
                            path.display()
                        )));
                    }
                    index
                }
            };
            self.xattrs.get(index, name, limit)
        })
    }
}

/// backhand's `Display` is empty without its `error-strings` feature (which pulls in
/// tracing), so the variant is all there is to report.
fn map_err(e: BackhandError) -> FsError {
    let corrupt = |why: &str| FsError::Corrupt(why.to_string());
    match e {
        // The file shrank under the reader: not damage, a change.
        BackhandError::StdIo(e) if e.to_string() == super::source::ENDED_EARLY => {
            FsError::Changed(e.to_string())
        }
        BackhandError::StdIo(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            corrupt(&format!("points past the end of the image ({e})"))
        }
        // Decompressors report bad input as I/O errors of these kinds.
        BackhandError::StdIo(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
            ) =>
        {
            corrupt(&e.to_string())
        }
        BackhandError::StdIo(e) => FsError::Io(e),
        BackhandError::Deku(e) => corrupt(&e.to_string()),
        BackhandError::StringUtf8(_) | BackhandError::StrUtf8(_) => corrupt("invalid UTF-8"),
        BackhandError::UnsupportedCompression(c) => {
            FsError::Unsupported(format!("squashfs compression {c}"))
        }
        BackhandError::UnsupportedSquashfsVersion(major, minor) => {
            FsError::Unsupported(format!("squashfs version {major}.{minor}"))
        }
        BackhandError::UnsupportedInode => FsError::Unsupported("squashfs inode type".into()),
        BackhandError::MissingCompressor => corrupt("no compressor"),
        BackhandError::FileNotFound => corrupt("missing symlink or device data"),
        BackhandError::UnexpectedInode => corrupt("unexpected inode (or a directory cycle)"),
        BackhandError::CorruptedOrInvalidSquashfs => corrupt("inconsistent structures"),
        BackhandError::InvalidCompressionOption => corrupt("invalid compression options"),
        BackhandError::InvalidFilePath | BackhandError::UndefineFileName => {
            corrupt("invalid file name")
        }
        BackhandError::DuplicatedFileName => corrupt("duplicate file name"),
        BackhandError::TryReserveError(_) => corrupt("size too large to allocate"),
        BackhandError::InvalidIdTable | BackhandError::IdNotFoundInTable => {
            corrupt("invalid uid/gid table")
        }
        BackhandError::NumericConversion(s) => corrupt(&format!("number out of range: {s}")),
        BackhandError::InternalState(s) | BackhandError::CompressionInit(s) => corrupt(&s),
        _ => corrupt("unexpected error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::fixture::{self, Built};
    use crate::image::xattr_fixture;

    fn mksquashfs(comp: &[&str]) -> Option<Built> {
        let mut args = vec![
            "{tree}",
            "{img}",
            "-all-root",
            "-noappend",
            "-quiet",
            "-no-progress",
        ];
        args.extend_from_slice(comp);
        fixture::build("img.squashfs", "mksquashfs", &args)
    }

    #[test]
    fn reads_what_mksquashfs_wrote() {
        for comp in [
            &[][..],
            &["-comp", "zstd"],
            &["-comp", "xz"],
            &["-comp", "lz4"],
        ] {
            let Some(built) = mksquashfs(comp) else {
                return;
            };
            fixture::check_image(&built, open);
        }
    }

    #[test]
    fn reads_uncompressed_and_fragment_free_images() {
        let Some(built) = mksquashfs(&["-noI", "-noD", "-noF", "-no-fragments"]) else {
            return;
        };
        fixture::check_image(&built, open);
    }

    fn mksquashfs_xattrs(extra: &[&str]) -> Option<Built> {
        let mut args = vec!["{tree}", "{img}", "-noappend", "-quiet", "-no-progress"];
        args.extend_from_slice(extra);
        xattr_fixture::build("img.squashfs", "mksquashfs", &args)
    }

    /// Compressed and uncompressed xattr tables; mksquashfs stores a value seen before
    /// out of line, as a reference to the first.
    #[test]
    fn reads_xattrs() {
        for extra in [
            &[][..],
            &["-comp", "zstd"],
            &["-comp", "xz"],
            &["-comp", "lz4"],
            &["-noX"],
            &["-no-xattrs"],
        ] {
            let Some(built) = mksquashfs_xattrs(extra) else {
                return;
            };
            let fs = open(fixture::source(&built.img)).unwrap();
            if extra == ["-no-xattrs"] {
                let r = fs.xattr(Path::new(xattr_fixture::RELEASE), xattr_fixture::STRICT, 99);
                assert_eq!(r.unwrap(), None);
                continue;
            }
            xattr_fixture::check(&*fs);
            xattr_fixture::check_tree(fs);
        }
    }

    /// Directories and symlinks are looked up through the directory table, here one
    /// whose listing has several headers and spans metadata blocks.
    #[test]
    fn finds_inodes_in_large_directories() {
        let Some(built) = mksquashfs_xattrs(&[]) else {
            return;
        };
        let tree = xattr_fixture::add_fillers(&built, "/etc", 600);
        let img = built.dir.path().join("many.squashfs");
        let out = std::process::Command::new(fixture::tool("mksquashfs").unwrap())
            .arg(&tree)
            .arg(&img)
            .args(["-noappend", "-quiet", "-no-progress"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let fs = open(fixture::source(&img)).unwrap();
        xattr_fixture::check(&*fs);
        let filler = Path::new("/etc/filler-with-a-longer-name-0599");
        assert_eq!(fs.xattr(filler, xattr_fixture::STRICT, 99).unwrap(), None);
    }

    #[test]
    fn damaged_xattrs_do_not_panic() {
        for extra in [&["-noX"][..], &[]] {
            let Some(built) = mksquashfs_xattrs(extra) else {
                return;
            };
            if extra.is_empty() {
                // Compressed: around the xattr id table, after the entries' blocks.
                let data = std::fs::read(&built.img).unwrap();
                let table =
                    usize::try_from(u64::from_le_bytes(data[56..64].try_into().unwrap())).unwrap();
                xattr_fixture::check_corrupt_at(&built, open, &[table, table - 200]);
            } else {
                xattr_fixture::check_corrupt(&built, open, b"extension-release.strict");
            }
        }
    }

    #[test]
    fn reads_a_partition_at_an_offset() {
        let Some(built) = mksquashfs(&["-comp", "zstd"]) else {
            return;
        };
        fixture::check_at_offset(&built, open);
    }

    #[test]
    fn damaged_images_do_not_panic() {
        for comp in [&[][..], &["-comp", "zstd"], &["-comp", "xz"]] {
            let Some(built) = mksquashfs(comp) else {
                return;
            };
            fixture::check_corrupt(&built, open);
        }
    }

    #[test]
    fn cursor_reads_and_seeks_within_the_window() {
        let Some(built) = mksquashfs(&[]) else { return };
        let src = fixture::source(&built.img).slice(4, 8).unwrap();
        let mut c = SourceCursor { src, pos: 0 };
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 8);
        assert_eq!(c.seek(SeekFrom::End(-2)).unwrap(), 6);
        assert_eq!(c.read(&mut [0u8; 10]).unwrap(), 2);
        assert_eq!(c.seek(SeekFrom::Current(10)).unwrap(), 18);
        assert_eq!(c.read(&mut [0u8; 10]).unwrap(), 0);
        assert!(c.seek(SeekFrom::Current(-100)).is_err());
    }
}
