//! ext4 images read directly from their blocks, each inode and directory read and checked
//! once per image.
//!
//! ext4-view, which [`super::ext4`] keeps for images whose journal it replays, addresses
//! everything by path: each call walks from the root again, re-reading and re-checksumming
//! every directory block on the way, and a read after a look walks twice. This reader
//! finds inodes by number and remembers, within [`MAX_REMEMBERED_BYTES`], the inodes and
//! directory listings it has checked, so a lookup below a known directory reads nothing.
//! It checks what ext4-view checks on the way (inode, directory block and extent block
//! checksums, entry names and types, extent headers) and bounds the rest as the kernel
//! does; the superblock was checked by [`super::ext4`] before.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::rc::Rc;

use super::ext4::{corrupt, le16, le32};
use super::ext4_xattr;
use super::source::Source;
use super::{
    DirEntry, FileKind, Fs, FsError, MAX_DIR_BYTES, MAX_DIR_ENTRIES, MAX_LINK_BYTES, PANICKED,
    dir_too_large, guarded, too_many_entries,
};

const ROOT_INODE: u32 = 2;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_64BIT: u32 = 0x80;
/// Every incompatible feature ext4-view knows of.
const KNOWN_INCOMPAT: u32 = 0x1_f7df;
/// Those it knows and does not read: compression, a journal device, `meta_bg`, `mmp`,
/// `ea_inode`, `dirdata`, `large_dir`, `inline_data`.
const UNREAD_INCOMPAT: u32 = 0x1 | 0x8 | 0x10 | 0x100 | 0x400 | 0x1000 | 0x4000 | 0x8000;
const SUPERBLOCK_CHECKSUM_AT: usize = 0x3fc;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// `i_flags` bits.
const ENCRYPT_FL: u32 = 0x800;
const INDEX_FL: u32 = 0x1000;
const EXTENTS_FL: u32 = 0x8_0000;
const INLINE_DATA_FL: u32 = 0x1000_0000;
const EXTENT_MAGIC: u16 = 0xf30a;
/// The kernel's `EXT4_MAX_EXTENT_DEPTH`.
const MAX_EXTENT_DEPTH: u16 = 5;
/// Extent tree blocks read to map one file or directory: a few for real ones, bounded for
/// crafted ones.
const MAX_EXTENT_NODES: usize = 1024;
/// Where `l_i_checksum_lo` and `i_checksum_hi` are in an inode.
const CHECKSUM_LO_AT: usize = 0x7c;
const CHECKSUM_HI_AT: usize = 0x82;
/// Inodes and directory entries remembered per image, counted in bytes; past it they are
/// forgotten and read again (ARCHITECTURE.md, "Limits").
pub const MAX_REMEMBERED_BYTES: usize = 256 * 1024;
/// Bytes read at once for a small read: mkfs lays a small image's inodes, directories and
/// files out close together, so one read finds the next few a lookup needs, as ext4-view's
/// read-ahead did.
const CHUNK: u64 = 16 * 1024;
/// Chunks kept per image.
const CHUNKS: usize = 4;
/// The longest name a directory entry can hold.
const MAX_NAME_BYTES: usize = 255;

/// ext4's checksum: CRC-32C from `seed`, without the final inversion.
fn crc32c(seed: u32, parts: &[&[u8]]) -> u32 {
    const CRC32C: crc::Crc<u32, crc::Table<16>> =
        crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
    // The crate reflects the initial value of a reflected algorithm; reflecting it first
    // makes the running value `seed` itself.
    let mut digest = CRC32C.digest_with_initial(seed.reverse_bits());
    for part in parts {
        digest.update(part);
    }
    digest.finalize() ^ !0
}

/// One inode, its checksum verified.
struct Inode {
    ino: u32,
    raw: Box<[u8]>,
    /// The checksum of the inode's number and generation, where its blocks' checksums start.
    csum_base: u32,
}

impl Inode {
    fn mode(&self) -> u16 {
        le16(&self.raw, 0)
    }

    fn size(&self) -> u64 {
        u64::from(le32(&self.raw, 0x4)) | u64::from(le32(&self.raw, 0x6c)) << 32
    }

    fn flags(&self) -> u32 {
        le32(&self.raw, 0x20)
    }

    /// `i_block`: the extent tree's root, the block map, or a short symlink's target.
    fn i_block(&self) -> &[u8] {
        &self.raw[0x28..0x28 + 60]
    }

    fn kind(&self) -> FileKind {
        match self.mode() & 0xf000 {
            0x8000 => FileKind::File,
            0x4000 => FileKind::Dir,
            0xa000 => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// One entry of a directory.
struct Entry {
    name: Box<[u8]>,
    ino: u32,
    kind: FileKind,
}

/// A directory's entries, in disk order, and their order by name for lookups.
struct Listing {
    entries: Vec<Entry>,
    by_name: Vec<u32>,
}

impl Listing {
    fn new(entries: Vec<Entry>) -> Listing {
        let mut by_name: Vec<u32> = (0..entries.len())
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        by_name.sort_by(|&a, &b| entries[a as usize].name.cmp(&entries[b as usize].name));
        Listing { entries, by_name }
    }

    fn find(&self, name: &[u8]) -> Option<&Entry> {
        let i = self
            .by_name
            .binary_search_by(|&i| (*self.entries[i as usize].name).cmp(name))
            .ok()?;
        Some(&self.entries[self.by_name[i] as usize])
    }

    fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.name.len() + size_of::<Entry>() + size_of::<u32>())
            .sum()
    }
}

/// Bytes of the image from `at`, aligned to [`CHUNK`] (shorter at the image's end).
struct Chunk {
    at: u64,
    data: Box<[u8]>,
}

/// What has been read and checked of one image.
#[derive(Default)]
struct Remembered {
    inodes: HashMap<u32, Rc<Inode>>,
    dirs: HashMap<u32, Rc<Listing>>,
    /// Inode tables' first blocks, by group, their descriptors checked.
    tables: HashMap<u64, u64>,
    bytes: usize,
}

impl Remembered {
    /// Make room for `cost` more bytes: past the limit, everything is forgotten.
    fn room(&mut self, cost: usize) {
        if self.bytes + cost > MAX_REMEMBERED_BYTES {
            *self = Remembered::default();
        }
        self.bytes += cost;
    }
}

/// An ext4 file system read directly.
pub struct Direct {
    src: Source,
    /// Bytes left for the current call, refilled by each [`Fs`] call.
    budget: Rc<Cell<u64>>,
    per_call: u64,
    block_size: u64,
    blocks_count: u64,
    inode_size: usize,
    inodes_per_group: u64,
    inodes_count: u64,
    desc_size: u64,
    /// Byte offset of the first group descriptor.
    desc_start: u64,
    is_64bit: bool,
    /// The checksum seed, when the file system has metadata checksums.
    csum_seed: Option<u32>,
    known: RefCell<Remembered>,
    /// The last [`CHUNKS`] chunks of the image read, most recent first.
    chunks: RefCell<VecDeque<Chunk>>,
    xattrs: ext4_xattr::Raw,
    /// Set once a call panicked: what is remembered may be half updated.
    poisoned: Cell<bool>,
}

impl Direct {
    /// The ext4 file system occupying `src`, whose superblock `sb` [`super::ext4`]
    /// checked; `per_call` bytes may be read for each call.
    pub fn open(src: Source, superblock: &[u8; 1024], per_call: u64) -> Result<Direct, FsError> {
        let sb = &superblock[..];
        let incompat = le32(sb, 0x60);
        check_features(sb)?;
        let block_size = 1024u64 << le32(sb, 0x18).min(6);
        let is_64bit = incompat & INCOMPAT_64BIT != 0;
        let desc_size = if is_64bit {
            u64::from(le16(sb, 0xfe))
        } else {
            32
        };
        // 64-bit descriptors hold the high halves, up to 0x40 (ext4-view's rule); the
        // kernel's, a power of two up to 1 KiB, makes descriptors tile blocks, as both
        // ext4-view and this reader find them.
        if is_64bit && (!(64..=1024).contains(&desc_size) || !desc_size.is_power_of_two()) {
            return Err(corrupt(format!("group descriptor size {desc_size}")));
        }
        let csum_seed = (le32(sb, 0x64) & RO_COMPAT_METADATA_CSUM != 0).then(|| {
            if incompat & INCOMPAT_CSUM_SEED != 0 {
                le32(sb, 0x270)
            } else {
                crc32c(!0, &[&sb[0x68..0x78]])
            }
        });
        let budget = Rc::new(Cell::new(per_call));
        let xattrs = ext4_xattr::Raw::new(src.clone(), superblock, budget.clone())?;
        let fs = Direct {
            src,
            budget,
            per_call,
            block_size,
            blocks_count: u64::from(le32(sb, 0x4)) | u64::from(le32(sb, 0x150)) << 32,
            inode_size: usize::from(le16(sb, 0x58)),
            inodes_per_group: u64::from(le32(sb, 0x28)),
            inodes_count: u64::from(le32(sb, 0x0)),
            desc_size,
            desc_start: if block_size == 1024 { 2048 } else { block_size },
            is_64bit,
            csum_seed,
            known: RefCell::default(),
            chunks: RefCell::default(),
            xattrs,
            poisoned: Cell::new(false),
        };
        // Every lookup scans its parent directory, and the root is nobody's entry: lstat
        // does not get to check it.
        fs.call(|| {
            let root = fs.inode(ROOT_INODE)?;
            if root.kind() != FileKind::Dir {
                return Err(corrupt("the root is not a directory"));
            }
            dir_size_ok(&root)
        })?;
        Ok(fs)
    }

    fn call<T>(&self, f: impl FnOnce() -> Result<T, FsError>) -> Result<T, FsError> {
        if self.poisoned.get() {
            return Err(corrupt("ext4 reader panicked earlier"));
        }
        self.budget.set(self.per_call);
        let r = guarded(f);
        if matches!(&r, Err(FsError::Corrupt(m)) if m.starts_with(PANICKED)) {
            self.poisoned.set(true);
        }
        r
    }

    /// Read `buf` at byte `at` of the image, within the call's budget.
    fn read(&self, buf: &mut [u8], at: u64) -> Result<(), FsError> {
        let left = self
            .budget
            .get()
            .checked_sub(buf.len() as u64)
            .ok_or_else(|| corrupt(super::ext4::BudgetSpent.to_string()))?;
        self.budget.set(left);
        // As for ext4-view: a read past the image's end is damage, any other error I/O.
        self.src.read_exact_at(buf, at).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => corrupt(e.to_string()),
            _ => FsError::Io(e),
        })
    }

    /// Read `buf` at byte `at` through the last chunks read; a read crossing a chunk's
    /// end is made directly.
    fn read_small(&self, buf: &mut [u8], at: u64) -> Result<(), FsError> {
        let start = at - at % CHUNK;
        let end = at.saturating_add(buf.len() as u64);
        if end > start + CHUNK {
            return self.read(buf, at);
        }
        let copy = |chunk: &Chunk, buf: &mut [u8]| {
            // Both within the chunk, which is in memory.
            let from = usize::try_from(at - chunk.at).unwrap_or(usize::MAX);
            let to = usize::try_from(end - chunk.at).unwrap_or(usize::MAX);
            chunk.data.get(from..to).map(|d| buf.copy_from_slice(d))
        };
        let mut chunks = self.chunks.borrow_mut();
        if let Some(i) = chunks.iter().position(|c| c.at == start) {
            if copy(&chunks[i], buf).is_none() {
                // Past the image's end: the direct read says so.
                return self.read(buf, at);
            }
            if let Some(chunk) = chunks.remove(i) {
                chunks.push_front(chunk);
            }
            return Ok(());
        }
        let len = CHUNK.min(self.src.len().saturating_sub(start));
        let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)].into_boxed_slice();
        self.read(&mut data, start)?;
        let chunk = Chunk { at: start, data };
        if copy(&chunk, buf).is_none() {
            return self.read(buf, at);
        }
        chunks.push_front(chunk);
        chunks.truncate(CHUNKS);
        Ok(())
    }

    fn block_at(&self, block: u64) -> Result<u64, FsError> {
        if block >= self.blocks_count {
            return Err(corrupt(format!("block {block} beyond the end")));
        }
        Ok(block * self.block_size)
    }

    fn block(&self, block: u64) -> Result<Vec<u8>, FsError> {
        let at = self.block_at(block)?;
        let mut buf = vec![0u8; self.block_len()];
        self.read_small(&mut buf, at)?;
        Ok(buf)
    }

    fn block_len(&self) -> usize {
        // At most 64 KiB: the superblock check bounded its logarithm.
        usize::try_from(self.block_size).unwrap_or(usize::MAX)
    }

    /// The first block of the inode table of `group`, its descriptor checked.
    fn inode_table(&self, group: u64) -> Result<u64, FsError> {
        if let Some(&table) = self.known.borrow().tables.get(&group) {
            return Ok(table);
        }
        // The superblock check bounded the groups so that every descriptor is in the image.
        let mut desc = vec![0u8; usize::try_from(self.desc_size).unwrap_or(0)];
        self.read_small(&mut desc, self.desc_start + group * self.desc_size)?;
        if let Some(seed) = self.csum_seed {
            let index = u32::try_from(group).unwrap_or(u32::MAX).to_le_bytes();
            let sum = crc32c(seed, &[&index, &desc[..0x1e], &[0, 0], &desc[0x20..]]);
            if sum & 0xffff != u32::from(le16(&desc, 0x1e)) {
                return Err(corrupt(format!(
                    "invalid checksum for block group descriptor {group}"
                )));
            }
        }
        let mut table = u64::from(le32(&desc, 0x8));
        if self.is_64bit {
            table |= u64::from(le32(&desc, 0x28)) << 32;
        }
        let mut known = self.known.borrow_mut();
        known.room(16);
        known.tables.insert(group, table);
        Ok(table)
    }

    /// Inode `ino`, its checksum verified.
    fn inode(&self, ino: u32) -> Result<Rc<Inode>, FsError> {
        if let Some(inode) = self.known.borrow().inodes.get(&ino) {
            return Ok(inode.clone());
        }
        let n = u64::from(ino);
        if n == 0 || n > self.inodes_count {
            return Err(corrupt(format!(
                "inode {ino} has an invalid block group index: block_group={}, num_block_groups={}",
                n.saturating_sub(1) / self.inodes_per_group,
                self.inodes_count / self.inodes_per_group
            )));
        }
        let (group, index) = (
            (n - 1) / self.inodes_per_group,
            (n - 1) % self.inodes_per_group,
        );
        let table = self.inode_table(group)?;
        let at = table
            .checked_mul(self.block_size)
            .and_then(|t| t.checked_add(index * self.inode_size as u64))
            .ok_or_else(|| corrupt(format!("inode table of group {group} beyond the end")))?;
        let mut raw = vec![0u8; self.inode_size].into_boxed_slice();
        self.read_small(&mut raw, at)?;
        let generation = le32(&raw, 0x64).to_le_bytes();
        let csum_base = match self.csum_seed {
            Some(seed) => crc32c(seed, &[&ino.to_le_bytes(), &generation]),
            None => 0,
        };
        if self.csum_seed.is_some() {
            // The superblock check refused metadata checksums with 128-byte inodes.
            let expected =
                u32::from(le16(&raw, CHECKSUM_LO_AT)) | u32::from(le16(&raw, CHECKSUM_HI_AT)) << 16;
            let sum = crc32c(
                csum_base,
                &[
                    &raw[..CHECKSUM_LO_AT],
                    &[0, 0],
                    &raw[CHECKSUM_LO_AT + 2..CHECKSUM_HI_AT],
                    &[0, 0],
                    &raw[CHECKSUM_HI_AT + 2..],
                ],
            );
            if sum != expected {
                return Err(corrupt(format!("invalid checksum for inode {ino}")));
            }
        }
        if !matches!(
            le16(&raw, 0) & 0xf000,
            0x1000 | 0x2000 | 0x4000 | 0x6000 | 0x8000 | 0xa000 | 0xc000
        ) {
            return Err(corrupt(format!(
                "inode {ino} has invalid file type: mode=0x{:04x}",
                le16(&raw, 0)
            )));
        }
        let inode = Rc::new(Inode {
            ino,
            raw,
            csum_base,
        });
        let mut known = self.known.borrow_mut();
        known.room(self.inode_size + 64);
        known.inodes.insert(ino, inode.clone());
        Ok(inode)
    }

    /// Where the first `count` logical blocks of `inode` are; `None` for a hole or an
    /// extent not yet written, both read as zeros.
    fn map(&self, inode: &Inode, count: u64) -> Result<Vec<Option<u64>>, FsError> {
        let len = usize::try_from(count).map_err(|_| corrupt("file too large to map"))?;
        let mut out = vec![None; len];
        if inode.flags() & INLINE_DATA_FL != 0 {
            return Err(FsError::Unsupported("ext4 inline data".into()));
        }
        if inode.flags() & EXTENTS_FL != 0 {
            let mut nodes = 0;
            self.walk_extents(inode, inode.i_block(), None, &mut out, &mut nodes)?;
        } else {
            let ptr = |i: usize| u64::from(le32(inode.i_block(), i * 4));
            for (i, slot) in out.iter_mut().take(12).enumerate() {
                *slot = Some(ptr(i)).filter(|&b| b != 0);
            }
            let per = self.block_size / 4;
            let mut base = 12;
            let mut span = per;
            for (level, i) in [(1, 12), (2, 13), (3, 14)] {
                self.walk_indirect(ptr(i), level, base, &mut out)?;
                base += span;
                span = span.saturating_mul(per);
            }
        }
        Ok(out)
    }

    /// One extent tree node: its leaves' blocks go into `out`, its children are walked.
    fn walk_extents(
        &self,
        inode: &Inode,
        node: &[u8],
        depth: Option<u16>,
        out: &mut [Option<u64>],
        nodes: &mut usize,
    ) -> Result<(), FsError> {
        // Worded as ext4-view words them.
        let bad = |what: &str| corrupt(format!("extent in inode {} {what}", inode.ino));
        if node.len() < 12 || le16(node, 0) != EXTENT_MAGIC {
            return Err(bad("has invalid magic"));
        }
        let (entries, max, here) = (
            usize::from(le16(node, 2)),
            usize::from(le16(node, 4)),
            le16(node, 6),
        );
        if here > MAX_EXTENT_DEPTH || depth.is_some_and(|d| d != here) {
            return Err(bad("has an invalid depth"));
        }
        if entries > max || 12 + 12 * entries > node.len() {
            return Err(corrupt(format!(
                "extent data in inode {} is invalid",
                inode.ino
            )));
        }
        for e in node[12..12 + 12 * entries].chunks_exact(12) {
            let logical = u64::from(le32(e, 0));
            if here == 0 {
                let raw_len = u64::from(le16(e, 4));
                if raw_len > 32768 {
                    // An extent allocated but not written, which reads as zeros: its
                    // blocks stay holes, and not walking them keeps crafted trees of many
                    // long unwritten extents from costing their length each.
                    continue;
                }
                let len = raw_len;
                let start = u64::from(le16(e, 6)) << 32 | u64::from(le32(e, 8));
                if start
                    .checked_add(len)
                    .is_none_or(|end| end > self.blocks_count)
                {
                    return Err(bad("points to an invalid block"));
                }
                let end = logical.saturating_add(len).min(out.len() as u64);
                for l in logical..end {
                    // Both below out.len(), a usize.
                    let slot = &mut out[usize::try_from(l).unwrap_or(usize::MAX)];
                    if slot.is_some() {
                        return Err(bad("overlaps another"));
                    }
                    *slot = Some(start + (l - logical));
                }
            } else {
                *nodes += 1;
                if *nodes > MAX_EXTENT_NODES {
                    return Err(bad("has too many tree blocks"));
                }
                let leaf = u64::from(le16(e, 8)) << 32 | u64::from(le32(e, 4));
                let child = self.block(leaf)?;
                if self.csum_seed.is_some() {
                    let at = 12 + 12 * usize::from(le16(&child, 4));
                    if at + 4 > child.len()
                        || crc32c(inode.csum_base, &[&child[..at]]) != le32(&child, at)
                    {
                        return Err(bad("has an invalid checksum"));
                    }
                }
                self.walk_extents(inode, &child, Some(here - 1), out, nodes)?;
            }
        }
        Ok(())
    }

    /// ext2/3's block map below `block`, an indirect block of `level` whose first entry
    /// maps logical block `base`.
    fn walk_indirect(
        &self,
        block: u64,
        level: u32,
        base: u64,
        out: &mut [Option<u64>],
    ) -> Result<(), FsError> {
        if block == 0 || base >= out.len() as u64 {
            return Ok(());
        }
        let data = self.block(block)?;
        let span = (self.block_size / 4).pow(level - 1);
        for (j, ptr) in data.chunks_exact(4).enumerate() {
            let at = base + j as u64 * span;
            if at >= out.len() as u64 {
                break;
            }
            let ptr = u64::from(le32(ptr, 0));
            if level == 1 {
                out[usize::try_from(at).unwrap_or(usize::MAX)] = Some(ptr).filter(|&b| b != 0);
            } else {
                self.walk_indirect(ptr, level - 1, at, out)?;
            }
        }
        Ok(())
    }

    /// The first `len` bytes of `inode`'s data, holes read as zeros; contiguous blocks
    /// are read at once.
    fn data(&self, inode: &Inode, len: usize) -> Result<Vec<u8>, FsError> {
        let blocks = self.map(inode, (len as u64).div_ceil(self.block_size))?;
        let mut buf = vec![0u8; len];
        let bs = self.block_len();
        let mut i = 0;
        while i < blocks.len() {
            let Some(first) = blocks[i] else {
                i += 1;
                continue;
            };
            let mut run = 1;
            while i + run < blocks.len() && blocks[i + run] == Some(first + run as u64) {
                run += 1;
            }
            let from = i * bs;
            let to = ((i + run) * bs).min(len);
            self.read_small(&mut buf[from..to], self.block_at(first)?)?;
            i += run;
        }
        Ok(buf)
    }

    /// Every entry of the directory `dir`, each block's checksum verified.
    fn list(&self, dir: &Inode) -> Result<Rc<Listing>, FsError> {
        if let Some(listing) = self.known.borrow().dirs.get(&dir.ino) {
            return Ok(listing.clone());
        }
        if dir.flags() & ENCRYPT_FL != 0 {
            return Err(FsError::Unsupported("ext4 encrypted directory".into()));
        }
        dir_size_ok(dir)?;
        let blocks = self.map(dir, dir.size().div_ceil(self.block_size))?;
        let mut entries = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            let block = block.ok_or_else(|| {
                corrupt(format!("hole in directory inode {} at block {i}", dir.ino))
            })?;
            let data = self.block(block)?;
            self.check_dir_block(dir, &data, i == 0)?;
            parse_dir_block(&data, dir.ino, &mut entries)?;
        }
        let listing = Rc::new(Listing::new(entries));
        let mut known = self.known.borrow_mut();
        let cost = listing.bytes();
        // A listing larger than what may be remembered at all is read again when asked.
        if cost <= MAX_REMEMBERED_BYTES / 4 {
            known.room(cost);
            known.dirs.insert(dir.ino, listing.clone());
        }
        Ok(listing)
    }

    /// A directory block's checksum, as ext4-view checks it: in the tail entry of a leaf,
    /// in the `dx_tail` after the index of an htree node.
    fn check_dir_block(&self, dir: &Inode, data: &[u8], first: bool) -> Result<(), FsError> {
        if self.csum_seed.is_none() {
            return Ok(());
        }
        let len = data.len();
        let htree = dir.flags() & INDEX_FL != 0;
        let expected = le32(data, len - 4);
        let node = if htree && first {
            Some(0x20)
        } else if htree && usize::from(le16(data, 4)) == len {
            Some(0x8)
        } else {
            None
        };
        let sum = match node {
            None => crc32c(dir.csum_base, &[&data[..len - 12]]),
            Some(limit_at) => {
                let count = usize::from(le16(data, limit_at + 2));
                let end = limit_at + count * 8;
                if end > len - 8 {
                    return Err(corrupt(format!(
                        "htree internal node in inode {} has too large many entries: \
                         num_bytes={}, count={count}",
                        dir.ino,
                        len - limit_at
                    )));
                }
                crc32c(
                    dir.csum_base,
                    &[&data[..end], &data[len - 8..len - 4], &[0; 4]],
                )
            }
        };
        if sum != expected {
            return Err(corrupt(format!(
                "directory block in inode {} has an invalid checksum",
                dir.ino
            )));
        }
        Ok(())
    }

    /// The inode at `path`, found from the root without following any symlink.
    fn lookup(&self, path: &Path) -> Result<Rc<Inode>, FsError> {
        let mut inode = self.inode(ROOT_INODE)?;
        for c in path.components() {
            let Component::Normal(name) = c else { continue };
            if inode.kind() != FileKind::Dir {
                return Err(FsError::NotADirectory);
            }
            let listing = self.list(&inode)?;
            let entry = listing.find(name.as_bytes()).ok_or(FsError::NotFound)?;
            inode = self.inode(entry.ino)?;
        }
        Ok(inode)
    }
}

/// What ext4-view refuses in a superblock beyond what [`super::ext4`] checked: features
/// neither reader implements, and a bad checksum.
fn check_features(sb: &[u8]) -> Result<(), FsError> {
    let incompat = le32(sb, 0x60);
    if incompat & !KNOWN_INCOMPAT != 0 {
        return Err(FsError::Unsupported(format!(
            "unknown ext4 incompatible features {:#x}",
            incompat & !KNOWN_INCOMPAT
        )));
    }
    if incompat & INCOMPAT_FILETYPE == 0 {
        return Err(FsError::Unsupported(
            "ext4 without the filetype feature".into(),
        ));
    }
    if incompat & UNREAD_INCOMPAT != 0 {
        return Err(FsError::Unsupported(format!(
            "ext4 incompatible features {:#x}",
            incompat & UNREAD_INCOMPAT
        )));
    }
    if le32(sb, 0x64) & RO_COMPAT_METADATA_CSUM != 0
        && crc32c(!0, &[&sb[..SUPERBLOCK_CHECKSUM_AT]]) != le32(sb, SUPERBLOCK_CHECKSUM_AT)
    {
        return Err(corrupt("invalid superblock checksum"));
    }
    Ok(())
}

/// The entries of one directory block, appended to `out`. Entries with inode 0 (htree
/// nodes, deleted entries, the checksum tail) are skipped, so an htree directory reads as
/// a linear one, and so are `.` and `..`.
fn parse_dir_block(block: &[u8], dir: u32, out: &mut Vec<Entry>) -> Result<(), FsError> {
    // Worded as ext4-view words them.
    let entry = |what: String| corrupt(format!("directory entry in inode {dir} {what}"));
    let mut off = 0;
    while off < block.len() {
        if off + 8 > block.len() {
            return Err(corrupt(format!(
                "directory in inode {dir} is too small to contain header: {}",
                block.len() - off
            )));
        }
        let ino = le32(block, off);
        // ext4_rec_len_from_disk(): lengths of 64 KiB blocks do not fit 16 bits.
        let rec_len = match usize::from(le16(block, off + 4)) {
            0 | 65535 if block.len() == 65536 => 65536,
            n => (n & 65532) | (n & 3) << 16,
        };
        let name_len = usize::from(block[off + 6]);
        if rec_len < 8 {
            return Err(entry(format!("record length is too small: {rec_len}")));
        }
        if rec_len < 12 || rec_len % 4 != 0 || off + rec_len > block.len() {
            return Err(corrupt(format!("invalid directory entry in inode {dir}")));
        }
        if ino != 0 {
            if 8 + name_len > rec_len {
                return Err(corrupt(format!(
                    "name of directory entry in inode {dir} is too large: {name_len}"
                )));
            }
            let name = &block[off + 8..off + 8 + name_len];
            let invalid = if name.is_empty() {
                Some("direntry name is empty")
            } else if name.len() > MAX_NAME_BYTES {
                Some("directory entry name is longer than 255 bytes")
            } else if name.contains(&0) {
                Some("directory entry name contains a null byte")
            } else if name.contains(&b'/') {
                Some("directory entry name contains a path separator")
            } else {
                None
            };
            if let Some(why) = invalid {
                return Err(entry(format!("has invalid name: {why}")));
            }
            let kind = match block[off + 7] {
                1 => FileKind::File,
                2 => FileKind::Dir,
                7 => FileKind::Symlink,
                3..=6 => FileKind::Other,
                t => return Err(entry(format!("has invalid file type: {t}"))),
            };
            if name != b"." && name != b".." {
                if out.len() == MAX_DIR_ENTRIES {
                    return Err(too_many_entries(out.len() + 1));
                }
                out.push(Entry {
                    name: name.into(),
                    ino,
                    kind,
                });
            }
        }
        off += rec_len;
    }
    Ok(())
}

fn dir_size_ok(inode: &Inode) -> Result<(), FsError> {
    if inode.kind() == FileKind::Dir && inode.size() > MAX_DIR_BYTES {
        return Err(dir_too_large(inode.size()));
    }
    Ok(())
}

fn not_regular(kind: FileKind) -> FsError {
    match kind {
        FileKind::Dir => FsError::WrongType("is a directory"),
        FileKind::Symlink => FsError::Unsupported("is a symbolic link".into()),
        _ => FsError::WrongType("not a regular file"),
    }
}

impl Fs for Direct {
    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        self.call(|| match self.lookup(path) {
            // Refusing an oversized directory here keeps every later lookup inside it,
            // which scans it, from happening: paths are resolved one lstat at a time.
            Ok(inode) => {
                dir_size_ok(&inode)?;
                Ok(Some(inode.kind()))
            }
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
        self.call(|| {
            let dir = self.lookup(path)?;
            if dir.kind() != FileKind::Dir {
                return Err(FsError::NotADirectory);
            }
            let listing = self.list(&dir)?;
            Ok(listing
                .entries
                .iter()
                .map(|e| DirEntry {
                    name: e.name.to_vec(),
                    kind: e.kind,
                })
                .collect())
        })
    }

    fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        self.call(|| {
            let link = self.lookup(path)?;
            if link.kind() != FileKind::Symlink {
                return Err(FsError::WrongType("not a symbolic link"));
            }
            let size = link.size();
            if size > MAX_LINK_BYTES {
                return Err(FsError::TooLarge {
                    what: "symlink",
                    size,
                    limit: MAX_LINK_BYTES,
                });
            }
            // Below MAX_LINK_BYTES.
            let len = usize::try_from(size).unwrap_or(0);
            // As ext4-view reads them: up to 59 bytes in the inode itself, else as data.
            let target = if len == 0 {
                return Err(corrupt(format!(
                    "inode {} has an invalid symlink path",
                    link.ino
                )));
            } else if len < 60 {
                link.i_block()[..len].to_vec()
            } else {
                self.data(&link, len)?
            };
            if target.contains(&0) {
                return Err(corrupt(format!(
                    "inode {} has an invalid symlink path",
                    link.ino
                )));
            }
            Ok(target)
        })
    }

    fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        self.call(|| {
            let file = self.lookup(path)?;
            if file.kind() != FileKind::File {
                return Err(not_regular(file.kind()));
            }
            let size = file.size();
            let too_large = || FsError::TooLarge {
                what: "file",
                size,
                limit,
            };
            if size > limit {
                return Err(too_large());
            }
            let len = usize::try_from(size).map_err(|_| too_large())?;
            self.data(&file, len)
        })
    }

    fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        self.call(|| {
            let inode = self.lookup(path)?;
            self.xattrs.get(&inode.raw, name, limit)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_ext4s() {
        // The superblock checksum convention: seeded with ~0, not inverted at the end.
        const REFERENCE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let data = b"123456789";
        assert_eq!(crc32c(!0, &[data]), REFERENCE.checksum(data) ^ !0);
        // Continuing from a running value is the same as one pass.
        let mid = crc32c(!0, &[&data[..4]]);
        assert_eq!(crc32c(mid, &[&data[4..]]), crc32c(!0, &[data]));
    }

    fn entry(ino: u32, rec_len: u16, kind: u8, name: &[u8]) -> Vec<u8> {
        let mut e = ino.to_le_bytes().to_vec();
        e.extend_from_slice(&rec_len.to_le_bytes());
        e.push(u8::try_from(name.len()).unwrap());
        e.push(kind);
        e.extend_from_slice(name);
        e.resize(usize::from(rec_len), 0);
        e
    }

    #[test]
    fn directory_blocks() {
        let mut block = entry(2, 12, 2, b".");
        block.extend(entry(2, 12, 2, b".."));
        block.extend(entry(0, 12, 0, b""));
        block.extend(entry(17, 16, 1, b"abc"));
        block.extend(entry(18, 1024 - 52, 7, b"link"));
        let mut out = Vec::new();
        parse_dir_block(&block, 2, &mut out).unwrap();
        let names: Vec<_> = out.iter().map(|e| (&*e.name, e.ino, e.kind)).collect();
        assert_eq!(
            names,
            [
                (&b"abc"[..], 17, FileKind::File),
                (&b"link"[..], 18, FileKind::Symlink)
            ]
        );
        let listing = Listing::new(out);
        assert_eq!(listing.find(b"link").map(|e| e.ino), Some(18));
        assert!(listing.find(b"ab").is_none());
        // A length past the block, a name with a slash, an unknown type: refused.
        for (at, value) in [(41, 0x10u8), (44, b'/'), (43, 9)] {
            let mut bad = block.clone();
            bad[at] = value;
            assert!(
                matches!(
                    parse_dir_block(&bad, 2, &mut Vec::new()),
                    Err(FsError::Corrupt(_))
                ),
                "{at}"
            );
        }
    }

    #[test]
    fn every_cut_and_flip_of_a_directory_block_is_an_answer() {
        let mut block = entry(2, 12, 2, b".");
        block.extend(entry(17, 1012, 1, b"unit.service"));
        for at in 0..block.len() {
            for bit in 0..8 {
                let mut b = block.clone();
                b[at] ^= 1 << bit;
                let _ = parse_dir_block(&b, 2, &mut Vec::new());
                let _ = parse_dir_block(&b[..at], 2, &mut Vec::new());
            }
        }
    }
}
