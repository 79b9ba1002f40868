//! Extended attributes of squashfs images, read from the raw image.
//!
//! backhand parses each inode's xattr index but not the xattr table itself (its issue #32),
//! so the table is read here, as the kernel's `fs/squashfs/xattr.c` and `xattr_id.c` do: the
//! index selects a 16-byte id in the id table (`xattr_id_table_start` in the superblock),
//! which points into a stream of metadata blocks holding the inode's name/value pairs.
//! Metadata blocks are decompressed with backhand's own decompressors.
//!
//! backhand keeps the index of regular files only; for directories, symlinks and special
//! files the inode is found here from the root inode through the directory table.

use std::cell::Cell;

use backhand::BackhandError;
use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use super::source::Source;
use super::{FileKind, FsError, MAX_PATH_DEPTH, xattr_too_large};

/// A superblock field with no table behind it.
const NOT_SET: u64 = u64::MAX;
/// Superblock flag: the image holds no xattrs.
const NO_XATTRS: u16 = 0x200;
/// Uncompressed bytes in a full metadata block.
const METADATA_SIZE: usize = 8192;
/// Bytes of one xattr id: u64 reference, u32 count, u32 size.
const ID_SIZE: usize = 16;
/// Entry type flag: the value is stored elsewhere, as a u64 reference to it.
const VALUE_OOL: u16 = 0x100;
/// Metadata blocks decompressed for one lookup: a few for real images; a crafted count
/// or size that would walk through the table again and again is cut off here.
const MAX_BLOCKS: usize = 4096;

/// Where the xattrs of one squashfs image are.
pub struct Table {
    src: Source,
    compressor: u16,
    /// Start of the id table header, or [`NOT_SET`].
    id_table: u64,
    /// The file system's size: nothing lies beyond it.
    bytes_used: u64,
    root_inode: u64,
    inode_table: u64,
    dir_table: u64,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn corrupt(why: impl Into<String>) -> FsError {
    FsError::Corrupt(format!("xattr table: {}", why.into()))
}

fn inode_corrupt(why: impl Into<String>) -> FsError {
    FsError::Corrupt(format!("inode lookup for xattrs: {}", why.into()))
}

/// Where a directory's listing is in the directory table.
#[derive(Clone, Copy)]
struct DirRef {
    block: u32,
    size: u32,
    offset: u16,
}

/// What the xattr lookup needs of an inode.
struct InodeInfo {
    kind: FileKind,
    /// The xattr index; `u32::MAX` for none (basic inodes have none).
    xattr: u32,
    dir: Option<DirRef>,
}

/// The namespace type squashfs stores for a full name, and the rest of the name.
/// mksquashfs keeps only these three namespaces.
fn split_name(name: &str) -> Option<(u16, &[u8])> {
    [("user.", 0), ("trusted.", 1), ("security.", 2)]
        .into_iter()
        .find_map(|(prefix, t)| Some((t, name.strip_prefix(prefix)?.as_bytes())))
}

impl Table {
    /// The table of the squashfs occupying `src`, whose superblock has been checked.
    pub fn new(src: Source) -> Result<Table, FsError> {
        let mut sb = [0u8; 96];
        src.read_exact_at(&mut sb, 0)
            .map_err(|_| FsError::Corrupt("image too small for a squashfs superblock".into()))?;
        let flags = le16(&sb, 24);
        let id_table = if flags & NO_XATTRS != 0 {
            NOT_SET
        } else {
            le64(&sb, 56)
        };
        Ok(Table {
            src,
            compressor: le16(&sb, 20),
            id_table,
            bytes_used: le64(&sb, 40),
            root_inode: le64(&sb, 32),
            inode_table: le64(&sb, 64),
            dir_table: le64(&sb, 72),
        })
    }

    /// The xattr index and kind of the inode at `path`, found from the root through the
    /// directory table without following symlinks (as mksquashfs writes them: each
    /// directory's listing is a run of headers, each followed by its entries).
    pub fn index_of(&self, path: &Path) -> Result<(u32, FileKind), FsError> {
        let budget = Cell::new(MAX_BLOCKS);
        let mut inode = self.inode(self.root_inode, &budget)?;
        for (depth, c) in path.components().enumerate() {
            let Component::Normal(name) = c else { continue };
            if depth > MAX_PATH_DEPTH {
                return Err(FsError::Corrupt("path too deep".into()));
            }
            let Some(dir) = inode.dir else {
                return Err(FsError::NotADirectory);
            };
            let reference = self
                .find_in_dir(dir, name, &budget)?
                .ok_or(FsError::NotFound)?;
            inode = self.inode(reference, &budget)?;
        }
        Ok((inode.xattr, inode.kind))
    }

    /// The inode at `reference`: block `reference >> 16` of the inode table, then the
    /// offset in its data.
    fn inode(&self, reference: u64, budget: &Cell<usize>) -> Result<InodeInfo, FsError> {
        let block = self
            .inode_table
            .checked_add(reference >> 16)
            .filter(|&b| b < self.dir_table)
            .ok_or_else(|| inode_corrupt("a reference past the inode table"))?;
        let mut s = Stream::new(self, block, self.dir_table, budget)?;
        s.skip(reference & 0xffff)?;
        let head = s.read(16)?;
        let kind = le16(&head, 0);
        let word = |s: &mut Stream<'_, '_>| Ok::<_, FsError>(le32(&s.read(4)?, 0));
        let basic = |kind| InodeInfo {
            kind,
            xattr: u32::MAX,
            dir: None,
        };
        Ok(match kind {
            1 => {
                let b = s.read(16)?;
                InodeInfo {
                    dir: Some(DirRef {
                        block: le32(&b, 0),
                        size: u32::from(le16(&b, 8)),
                        offset: le16(&b, 10),
                    }),
                    ..basic(FileKind::Dir)
                }
            }
            8 => {
                let b = s.read(24)?;
                InodeInfo {
                    kind: FileKind::Dir,
                    dir: Some(DirRef {
                        block: le32(&b, 8),
                        size: le32(&b, 4),
                        offset: le16(&b, 18),
                    }),
                    xattr: le32(&b, 20),
                }
            }
            2 | 9 => {
                // Regular files come with their block list: backhand answers for them.
                return Err(inode_corrupt("regular file reached through the inode walk"));
            }
            3 => basic(FileKind::Symlink),
            10 => {
                let b = s.read(8)?;
                let len = le32(&b, 4);
                if u64::from(len) > super::MAX_LINK_BYTES {
                    return Err(inode_corrupt(format!("symlink of {len} bytes")));
                }
                s.skip(u64::from(len))?;
                InodeInfo {
                    xattr: word(&mut s)?,
                    ..basic(FileKind::Symlink)
                }
            }
            4..=7 => basic(FileKind::Other),
            11 | 12 => {
                s.skip(8)?;
                InodeInfo {
                    xattr: word(&mut s)?,
                    ..basic(FileKind::Other)
                }
            }
            13 | 14 => {
                s.skip(4)?;
                InodeInfo {
                    xattr: word(&mut s)?,
                    ..basic(FileKind::Other)
                }
            }
            t => return Err(inode_corrupt(format!("inode type {t}"))),
        })
    }

    /// The inode reference of `name` in a directory.
    fn find_in_dir(
        &self,
        dir: DirRef,
        name: &OsStr,
        budget: &Cell<usize>,
    ) -> Result<Option<u64>, FsError> {
        // The size counts `.` and `..`, which are not stored.
        let Some(mut left) = dir.size.checked_sub(3) else {
            return Ok(None);
        };
        let block = self
            .dir_table
            .checked_add(u64::from(dir.block))
            .filter(|&b| b < self.bytes_used)
            .ok_or_else(|| inode_corrupt("a directory past the directory table"))?;
        let mut s = Stream::new(self, block, self.bytes_used, budget)?;
        s.skip(u64::from(dir.offset))?;
        let name = name.as_bytes();
        while left > 0 {
            let head = s.read(12)?;
            let (count, start) = (le32(&head, 0), le32(&head, 4));
            // Stored one less; mksquashfs writes at most 256 entries per header.
            if count >= 256 {
                return Err(inode_corrupt(format!("{} entries in a header", count + 1)));
            }
            left = left
                .checked_sub(12)
                .ok_or_else(|| inode_corrupt("directory listing longer than its size"))?;
            for _ in 0..=count {
                let e = s.read(8)?;
                // The name's length is stored one less.
                let (offset, size) = (le16(&e, 0), le16(&e, 6));
                let here = s.read(usize::from(size) + 1)?;
                left = left
                    .checked_sub(8 + u32::from(size) + 1)
                    .ok_or_else(|| inode_corrupt("directory listing longer than its size"))?;
                if here == name {
                    return Ok(Some(u64::from(start) << 16 | u64::from(offset)));
                }
            }
        }
        Ok(None)
    }

    /// The value of `name` among the xattrs with index `index` (from the inode).
    pub fn get(&self, index: u32, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        // The kernel's SQUASHFS_INVALID_XATTR: the inode has none.
        if index == u32::MAX || self.id_table == NOT_SET {
            return Ok(None);
        }
        let Some((want_type, want_name)) = split_name(name) else {
            return Ok(None);
        };
        // `read` refuses anything past `bytes_used`, so adding 16 cannot overflow after it.
        let mut header = [0u8; 16];
        self.read(&mut header, self.id_table)?;
        let start = le64(&header, 0);
        let ids = le32(&header, 8);
        if start >= self.id_table {
            return Err(corrupt("the entries start after the id table"));
        }
        if index >= ids {
            return Err(corrupt(format!("index {index} of {ids}")));
        }
        let budget = Cell::new(MAX_BLOCKS);

        // The id: in metadata block `index / 512` of the id table, pointed to from the
        // list after its header.
        let at = u64::from(index) * ID_SIZE as u64;
        let mut ptr = [0u8; 8];
        let ptr_at = (self.id_table + 16)
            .checked_add(at / METADATA_SIZE as u64 * 8)
            .ok_or_else(|| corrupt("id list past the end"))?;
        self.read(&mut ptr, ptr_at)?;
        let block = le64(&ptr, 0);
        if block < start || block >= self.id_table {
            return Err(corrupt("an id block outside the table"));
        }
        let mut ids = Stream::new(self, block, self.id_table, &budget)?;
        ids.skip(at % METADATA_SIZE as u64)?;
        let id = ids.read(ID_SIZE)?;
        let (reference, count) = (le64(&id, 0), le32(&id, 8));

        let mut entries = self.at_reference(start, reference, &budget)?;
        for _ in 0..count {
            let head = entries.read(4)?;
            let (kind, name_len) = (le16(&head, 0), le16(&head, 2));
            let matches = kind & 0xff == want_type && usize::from(name_len) == want_name.len();
            let matches = if matches {
                entries.read(usize::from(name_len))? == want_name
            } else {
                entries.skip(u64::from(name_len))?;
                false
            };
            let value_len = le32(&entries.read(4)?, 0);
            if kind & VALUE_OOL != 0 && value_len != 8 {
                return Err(corrupt(format!(
                    "out-of-line value reference of {value_len} bytes"
                )));
            }
            if !matches {
                entries.skip(u64::from(value_len))?;
                continue;
            }
            if kind & VALUE_OOL == 0 {
                return Self::value(&mut entries, value_len, limit).map(Some);
            }
            let reference = le64(&entries.read(8)?, 0);
            let mut value = self.at_reference(start, reference, &budget)?;
            let value_len = le32(&value.read(4)?, 0);
            return Self::value(&mut value, value_len, limit).map(Some);
        }
        Ok(None)
    }

    fn value(stream: &mut Stream<'_, '_>, len: u32, limit: u64) -> Result<Vec<u8>, FsError> {
        if u64::from(len) > limit {
            return Err(xattr_too_large(u64::from(len), limit));
        }
        stream.read(len as usize)
    }

    /// A stream at a reference: the metadata block at `start + (reference >> 16)`, offset
    /// `reference & 0xffff` in its data.
    fn at_reference<'t, 'b>(
        &'t self,
        start: u64,
        reference: u64,
        budget: &'b Cell<usize>,
    ) -> Result<Stream<'t, 'b>, FsError> {
        let block = start
            .checked_add(reference >> 16)
            .filter(|&b| b < self.id_table)
            .ok_or_else(|| corrupt("a reference past the entries"))?;
        let mut s = Stream::new(self, block, self.id_table, budget)?;
        s.skip(reference & 0xffff)?;
        Ok(s)
    }

    fn read(&self, buf: &mut [u8], at: u64) -> Result<(), FsError> {
        let end = at.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.bytes_used) {
            return Err(corrupt("points past the end of the file system"));
        }
        self.src
            .read_exact_at(buf, at)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// The data of the metadata block at `at`, and where the next one starts.
    fn block(&self, at: u64, end: u64) -> Result<(Vec<u8>, u64), FsError> {
        let mut head = [0u8; 2];
        self.read(&mut head, at)?;
        let head = u16::from_le_bytes(head);
        let len = usize::from(head & 0x7fff);
        if len == 0 || len > METADATA_SIZE {
            return Err(corrupt(format!("metadata block of {len} bytes")));
        }
        // `read` succeeded, so `at + 2` is inside the file system.
        let next = at + 2 + len as u64;
        if next > end {
            return Err(corrupt("a metadata block runs past its table"));
        }
        let mut raw = vec![0u8; len];
        self.read(&mut raw, at + 2)?;
        if head & 0x8000 != 0 {
            return Ok((raw, next));
        }
        let compressor = match self.compressor {
            1 => Compressor::Gzip,
            2 => Compressor::Lzma,
            3 => Compressor::Lzo,
            4 => Compressor::Xz,
            5 => Compressor::Lz4,
            6 => Compressor::Zstd,
            c => return Err(FsError::Unsupported(format!("squashfs compression {c}"))),
        };
        let mut out = Vec::with_capacity(METADATA_SIZE);
        DefaultCompressor
            .decompress(&raw, &mut out, compressor)
            .map_err(|e| match e {
                BackhandError::UnsupportedCompression(_) => {
                    FsError::Unsupported(format!("squashfs compression {compressor:?}"))
                }
                _ => corrupt("a metadata block does not decompress"),
            })?;
        if out.is_empty() || out.len() > METADATA_SIZE {
            return Err(corrupt(format!(
                "metadata block of {} bytes decompressed",
                out.len()
            )));
        }
        Ok((out, next))
    }
}

/// Bytes read on from a metadata block through the blocks after it, as the kernel's
/// `squashfs_read_metadata()`; blocks must end before `end`.
struct Stream<'t, 'b> {
    table: &'t Table,
    data: Vec<u8>,
    pos: usize,
    next: u64,
    end: u64,
    budget: &'b Cell<usize>,
}

impl<'t, 'b> Stream<'t, 'b> {
    fn new(
        table: &'t Table,
        at: u64,
        end: u64,
        budget: &'b Cell<usize>,
    ) -> Result<Stream<'t, 'b>, FsError> {
        let mut s = Stream {
            table,
            data: Vec::new(),
            pos: 0,
            next: at,
            end,
            budget,
        };
        s.load()?;
        Ok(s)
    }

    fn load(&mut self) -> Result<(), FsError> {
        let left = self.budget.get().checked_sub(1).ok_or_else(|| {
            corrupt(format!(
                "more than {MAX_BLOCKS} metadata blocks for one attribute"
            ))
        })?;
        self.budget.set(left);
        let (data, next) = self.table.block(self.next, self.end)?;
        self.data = data;
        self.pos = 0;
        self.next = next;
        Ok(())
    }

    /// The next `n` bytes; callers bound `n` (a name's u16 length, a checked value size).
    fn read(&mut self, n: usize) -> Result<Vec<u8>, FsError> {
        let mut out = Vec::with_capacity(n.min(METADATA_SIZE));
        while out.len() < n {
            if self.pos == self.data.len() {
                self.load()?;
            }
            let take = (n - out.len()).min(self.data.len() - self.pos);
            out.extend_from_slice(&self.data[self.pos..self.pos + take]);
            self.pos += take;
        }
        Ok(out)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), FsError> {
        while n > 0 {
            if self.pos == self.data.len() {
                self.load()?;
            }
            let avail = self.data.len() - self.pos;
            let take = usize::try_from(n).map_or(avail, |n| n.min(avail));
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }
}
