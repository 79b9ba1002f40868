//! Extended attributes of ext4 images, read from the raw image.
//!
//! ext4-view reads no xattrs and does not tell inode numbers, so this finds the inode
//! itself: from the root inode through each directory's blocks (extents or the ext2/3 block
//! map), then the attribute in the inode's own xattr area after `i_extra_isize` and in the
//! xattr block `i_file_acl`, laid out and checked as in the kernel's fs/ext4/xattr.c.
//! Paths come from [`super::chase::Tree`] and were looked up through ext4-view first, so
//! this walk only has to find inodes, not judge paths. Checksums are not verified. The
//! direct reader ([`super::ext4_direct`]) finds and checks the inode itself and asks
//! [`Raw::get`] only for the attribute.

use std::cell::Cell;
use std::path::{Component, Path};
use std::rc::Rc;

use super::ext4::{corrupt, le16, le32};
use super::source::Source;
use super::{FileKind, FsError, MAX_DIR_BYTES, dir_too_large, xattr_too_large};

const ROOT_INODE: u32 = 2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_64BIT: u32 = 0x80;
/// `i_flags`: the inode maps its blocks with an extent tree.
const EXTENTS_FL: u32 = 0x80000;
const EXTENT_MAGIC: u16 = 0xf30a;
/// The kernel's `EXT4_MAX_EXTENT_DEPTH`.
const MAX_EXTENT_DEPTH: u16 = 5;
/// Extent tree blocks read to list one directory's extents, and extents kept: a few for
/// real directories, bounded for crafted ones.
const MAX_EXTENT_NODES: usize = 1024;
const MAX_EXTENTS: usize = 1 << 16;
const XATTR_MAGIC: u32 = 0xea02_0000;
/// Fixed part of an `ext4_xattr_entry`, before its name.
const ENTRY_HEAD: usize = 16;
/// Size of the `ext4_xattr_header` at the start of an xattr block.
const BLOCK_HEADER: usize = 32;
const OLD_INODE_SIZE: usize = 128;

/// What the attribute `name` is stored as: its name index and the rest of the name.
/// `None` for names no ext4 handler serves, which the kernel never finds.
fn split_name(name: &str) -> Result<Option<(u8, &[u8])>, FsError> {
    if name.starts_with("system.posix_acl_") {
        // Stored in ext4's own compact format, which the kernel converts on reading.
        return Err(FsError::Unsupported(
            "POSIX ACLs of ext4 images are not read".into(),
        ));
    }
    Ok([("user.", 1), ("trusted.", 4), ("security.", 6)]
        .into_iter()
        .find_map(|(prefix, index)| Some((index, name.strip_prefix(prefix)?.as_bytes()))))
}

/// Where extended attributes of the ext4 file system in `src` are.
pub struct Raw {
    src: Source,
    /// The read budget shared with the ext4-view reader of the same image.
    budget: Rc<Cell<u64>>,
    block_size: u64,
    inode_size: usize,
    inodes_per_group: u64,
    inodes_count: u64,
    desc_size: u64,
    /// Byte offset of the first group descriptor.
    desc_start: u64,
    is_64bit: bool,
    needs_recovery: bool,
}

/// One inode's raw bytes (its full on-disk size).
struct Inode(Vec<u8>);

impl Inode {
    fn mode(&self) -> u16 {
        le16(&self.0, 0)
    }

    fn size(&self) -> u64 {
        u64::from(le32(&self.0, 0x4)) | u64::from(le32(&self.0, 0x6c)) << 32
    }

    fn kind(&self) -> FileKind {
        match self.mode() & 0xf000 {
            0x8000 => FileKind::File,
            0x4000 => FileKind::Dir,
            0xa000 => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }

    fn is_dir(&self) -> bool {
        self.kind() == FileKind::Dir
    }
}

/// One extent of a directory: `len` blocks from `logical` are at `start`.
struct Extent {
    logical: u64,
    len: u64,
    start: u64,
}

impl Raw {
    /// The ext4 file system occupying `src`, whose superblock `sb` [`super::ext4`] checked.
    pub fn new(src: Source, sb: &[u8; 1024], budget: Rc<Cell<u64>>) -> Result<Raw, FsError> {
        let incompat = le32(sb, 0x60);
        let block_size = 1024u64 << le32(sb, 0x18).min(6);
        let is_64bit = incompat & INCOMPAT_64BIT != 0;
        // As ext4-view reads them, so both readers see the same descriptors.
        let desc_size = if is_64bit {
            u64::from(le16(sb, 0xfe))
        } else {
            32
        };
        if desc_size < 32 {
            return Err(corrupt(format!("group descriptor size {desc_size}")));
        }
        Ok(Raw {
            src,
            budget,
            block_size,
            inode_size: usize::from(le16(sb, 0x58)),
            inodes_per_group: u64::from(le32(sb, 0x28)),
            inodes_count: u64::from(le32(sb, 0x0)),
            desc_size,
            desc_start: if block_size == 1024 { 2048 } else { block_size },
            is_64bit,
            needs_recovery: incompat & INCOMPAT_RECOVER != 0,
        })
    }

    /// The attribute `name` of the entry at `path`; `expect` is what ext4-view found there
    /// (kind, permission bits, size), to make sure both readers look at the same inode.
    pub fn xattr(
        &self,
        path: &Path,
        name: &str,
        limit: u64,
        expect: (FileKind, u16, u64),
    ) -> Result<Option<Vec<u8>>, FsError> {
        let Some((index, suffix)) = split_name(name)? else {
            return Ok(None);
        };
        if self.needs_recovery {
            // ext4-view replays the journal in memory; the raw blocks here lack it.
            return Err(FsError::Unsupported(
                "extended attributes of an ext4 image whose journal needs recovery".into(),
            ));
        }
        let inode = self.lookup(path)?;
        if (inode.kind(), inode.mode() & 0o7777, inode.size()) != expect {
            return Err(corrupt(format!(
                "{} is a different inode to the xattr reader",
                path.display()
            )));
        }
        if let Some(v) = self.ibody_get(&inode, index, suffix, limit)? {
            return Ok(Some(v));
        }
        self.block_get(&inode, index, suffix, limit)
    }

    /// The attribute `name` of the inode whose raw bytes (checked by the caller) are
    /// `inode`.
    pub fn get(&self, inode: &[u8], name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        let Some((index, suffix)) = split_name(name)? else {
            return Ok(None);
        };
        let inode = Inode(inode.to_vec());
        if let Some(v) = self.ibody_get(&inode, index, suffix, limit)? {
            return Ok(Some(v));
        }
        self.block_get(&inode, index, suffix, limit)
    }

    fn read(&self, buf: &mut [u8], at: u64) -> Result<(), FsError> {
        let left = self
            .budget
            .get()
            .checked_sub(buf.len() as u64)
            .ok_or_else(|| corrupt("too much read for one request"))?;
        self.budget.set(left);
        self.src
            .read_exact_at(buf, at)
            .map_err(|e| corrupt(e.to_string()))
    }

    fn block(&self, block: u64) -> Result<Vec<u8>, FsError> {
        let at = block
            .checked_mul(self.block_size)
            .ok_or_else(|| corrupt(format!("block {block} beyond the end")))?;
        let len = usize::try_from(self.block_size)
            .map_err(|_| corrupt(format!("block size {}", self.block_size)))?;
        let mut buf = vec![0u8; len];
        self.read(&mut buf, at)?;
        Ok(buf)
    }

    fn inode(&self, ino: u32) -> Result<Inode, FsError> {
        let n = u64::from(ino);
        if n == 0 || n > self.inodes_count {
            return Err(corrupt(format!("inode number {ino}")));
        }
        let (group, index) = (
            (n - 1) / self.inodes_per_group,
            (n - 1) % self.inodes_per_group,
        );
        // The superblock check bounded the groups so that every descriptor is in the image.
        let mut desc = [0u8; 0x2c];
        let len = if self.desc_size >= 0x2c { 0x2c } else { 0x20 };
        self.read(&mut desc[..len], self.desc_start + group * self.desc_size)?;
        let mut table = u64::from(le32(&desc, 0x8));
        if self.is_64bit && self.desc_size >= 64 {
            table |= u64::from(le32(&desc, 0x28)) << 32;
        }
        let at = table
            .checked_mul(self.block_size)
            .and_then(|t| t.checked_add(index * self.inode_size as u64))
            .ok_or_else(|| corrupt(format!("inode table of group {group} beyond the end")))?;
        let mut raw = vec![0u8; self.inode_size];
        self.read(&mut raw, at)?;
        Ok(Inode(raw))
    }

    /// The inode at `path`, found from the root without following any symlink.
    fn lookup(&self, path: &Path) -> Result<Inode, FsError> {
        let mut inode = self.inode(ROOT_INODE)?;
        for c in path.components() {
            let Component::Normal(name) = c else { continue };
            if !inode.is_dir() {
                return Err(FsError::NotADirectory);
            }
            let ino = self
                .find_in_dir(&inode, std::os::unix::ffi::OsStrExt::as_bytes(name))?
                .ok_or_else(|| {
                    corrupt(format!(
                        "{} is missing from its directory's blocks",
                        path.display()
                    ))
                })?;
            inode = self.inode(ino)?;
        }
        Ok(inode)
    }

    fn find_in_dir(&self, dir: &Inode, name: &[u8]) -> Result<Option<u32>, FsError> {
        let size = dir.size();
        if size > MAX_DIR_BYTES {
            return Err(dir_too_large(size));
        }
        let blocks = size.div_ceil(self.block_size);
        let extents = if le32(&dir.0, 0x20) & EXTENTS_FL != 0 {
            Some(self.extents(&dir.0[0x28..0x28 + 60], blocks)?)
        } else {
            None
        };
        for logical in 0..blocks {
            let physical = match &extents {
                Some(e) => map_extent(e, logical),
                None => self.map_indirect(&dir.0[0x28..0x28 + 60], logical)?,
            };
            // The kernel's "Directory hole found".
            let physical = physical
                .ok_or_else(|| corrupt(format!("hole in a directory at block {logical}")))?;
            let data = self.block(physical)?;
            if let Some(ino) = find_entry(&data, name)? {
                return Ok(Some(ino));
            }
        }
        Ok(None)
    }

    /// Every extent of the tree rooted in `i_block`, sorted, up to logical block `blocks`.
    fn extents(&self, root: &[u8], blocks: u64) -> Result<Vec<Extent>, FsError> {
        let mut out = Vec::new();
        let mut nodes = 0;
        self.walk_extents(root, None, blocks, &mut out, &mut nodes)?;
        out.sort_by_key(|e| e.logical);
        if out
            .windows(2)
            .any(|w| w[0].logical + w[0].len > w[1].logical)
        {
            return Err(corrupt("overlapping extents"));
        }
        Ok(out)
    }

    fn walk_extents(
        &self,
        node: &[u8],
        depth: Option<u16>,
        blocks: u64,
        out: &mut Vec<Extent>,
        nodes: &mut usize,
    ) -> Result<(), FsError> {
        if le16(node, 0) != EXTENT_MAGIC {
            return Err(corrupt("bad extent header magic"));
        }
        let (entries, max, here) = (
            usize::from(le16(node, 2)),
            usize::from(le16(node, 4)),
            le16(node, 6),
        );
        if here > MAX_EXTENT_DEPTH || depth.is_some_and(|d| d != here) {
            return Err(corrupt(format!("extent tree depth {here}")));
        }
        if entries > max || 12 + 12 * entries > node.len() {
            return Err(corrupt(format!("{entries} entries in an extent node")));
        }
        for e in node[12..12 + 12 * entries].chunks_exact(12) {
            let logical = u64::from(le32(e, 0));
            if here == 0 {
                let len = u64::from(le16(e, 4));
                // Longer than 32768: an uninitialized extent, which reads as zeros, and
                // zeros are no directory entries.
                if len == 0 || len > 32768 {
                    return Err(corrupt("an empty or uninitialized directory extent"));
                }
                if logical >= blocks {
                    continue;
                }
                if out.len() == MAX_EXTENTS {
                    return Err(corrupt("too many extents"));
                }
                let start = u64::from(le16(e, 6)) << 32 | u64::from(le32(e, 8));
                out.push(Extent {
                    logical,
                    len,
                    start,
                });
            } else {
                *nodes += 1;
                if *nodes > MAX_EXTENT_NODES {
                    return Err(corrupt("too many extent tree blocks"));
                }
                let leaf = u64::from(le16(e, 8)) << 32 | u64::from(le32(e, 4));
                let child = self.block(leaf)?;
                self.walk_extents(&child, Some(here - 1), blocks, out, nodes)?;
            }
        }
        Ok(())
    }

    /// ext2/3's block map: 12 direct blocks, then single, double and triple indirect.
    fn map_indirect(&self, i_block: &[u8], logical: u64) -> Result<Option<u64>, FsError> {
        let per = self.block_size / 4;
        let ptr = |i: usize| u64::from(le32(i_block, i * 4));
        let direct = usize::try_from(logical).ok().filter(|&i| i < 12);
        let (mut block, mut path): (u64, Vec<u64>) = if let Some(i) = direct {
            (ptr(i), vec![])
        } else if logical - 12 < per {
            (ptr(12), vec![logical - 12])
        } else if logical - 12 - per < per * per {
            let l = logical - 12 - per;
            (ptr(13), vec![l / per, l % per])
        } else {
            let l = logical - 12 - per - per * per;
            if l >= per * per * per {
                return Err(corrupt("directory beyond the block map"));
            }
            (ptr(14), vec![l / (per * per), l / per % per, l % per])
        };
        for index in path.drain(..) {
            if block == 0 {
                return Ok(None);
            }
            let mut entry = [0u8; 4];
            let at = block
                .checked_mul(self.block_size)
                .and_then(|b| b.checked_add(index * 4))
                .ok_or_else(|| corrupt(format!("block {block} beyond the end")))?;
            self.read(&mut entry, at)?;
            block = u64::from(u32::from_le_bytes(entry));
        }
        Ok((block != 0).then_some(block))
    }

    fn ibody_get(
        &self,
        inode: &Inode,
        index: u8,
        suffix: &[u8],
        limit: u64,
    ) -> Result<Option<Vec<u8>>, FsError> {
        let raw = &inode.0;
        if raw.len() <= OLD_INODE_SIZE {
            return Ok(None);
        }
        let extra = usize::from(le16(raw, 0x80));
        // ext4_iget() refuses these.
        if OLD_INODE_SIZE + extra > raw.len() || extra % 4 != 0 {
            return Err(corrupt(format!("i_extra_isize {extra}")));
        }
        let header = OLD_INODE_SIZE + extra;
        if header + 4 > raw.len() || le32(raw, header) != XATTR_MAGIC {
            return Ok(None);
        }
        // In the inode, values are counted from the first entry.
        let area = &raw[header + 4..];
        find_xattr(area, 0, index, suffix, limit)
    }

    fn block_get(
        &self,
        inode: &Inode,
        index: u8,
        suffix: &[u8],
        limit: u64,
    ) -> Result<Option<Vec<u8>>, FsError> {
        let raw = &inode.0;
        let mut acl = u64::from(le32(raw, 0x68));
        if self.is_64bit {
            acl |= u64::from(le16(raw, 0x76)) << 32;
        }
        if acl == 0 {
            return Ok(None);
        }
        let block = self.block(acl)?;
        if le32(&block, 0) != XATTR_MAGIC || le32(&block, 8) != 1 {
            return Err(corrupt(format!("bad xattr block {acl}")));
        }
        // In a block, values are counted from the block's start.
        find_xattr(&block, BLOCK_HEADER, index, suffix, limit)
    }
}

fn map_extent(extents: &[Extent], logical: u64) -> Option<u64> {
    let i = extents
        .partition_point(|e| e.logical <= logical)
        .checked_sub(1)?;
    let e = &extents[i];
    (logical < e.logical + e.len).then(|| e.start + (logical - e.logical))
}

/// The inode of `name` in one directory block. Entries with inode 0 (htree nodes, deleted
/// entries, the checksum tail) are skipped, so an htree directory reads as a linear one.
fn find_entry(block: &[u8], name: &[u8]) -> Result<Option<u32>, FsError> {
    let mut off = 0;
    while off < block.len() {
        if off + 8 > block.len() {
            return Err(corrupt("directory entry past the end of its block"));
        }
        let ino = le32(block, off);
        // ext4_rec_len_from_disk(): lengths of 64 KiB blocks do not fit 16 bits.
        let rec_len = match usize::from(le16(block, off + 4)) {
            0 | 65535 if block.len() == 65536 => 65536,
            n => (n & 65532) | (n & 3) << 16,
        };
        let name_len = usize::from(block[off + 6]);
        if rec_len < 12 || rec_len % 4 != 0 || off + rec_len > block.len() || 8 + name_len > rec_len
        {
            return Err(corrupt(format!("bad directory entry length {rec_len}")));
        }
        if ino != 0 && &block[off + 8..off + 8 + name_len] == name {
            return Ok(Some(ino));
        }
        off += rec_len;
    }
    Ok(None)
}

/// Find the entry `index`/`suffix` in an xattr area whose entries start at `first` and
/// whose values are counted from its start, checking every entry as the kernel's
/// `check_xattrs()` does.
fn find_xattr(
    area: &[u8],
    first: usize,
    index: u8,
    suffix: &[u8],
    limit: u64,
) -> Result<Option<Vec<u8>>, FsError> {
    let mut entries = Vec::new();
    let mut off = first;
    loop {
        if off + 4 > area.len() {
            return Err(corrupt("xattr entries without an end"));
        }
        if le32(area, off) == 0 {
            break;
        }
        if off + ENTRY_HEAD > area.len() {
            return Err(corrupt("xattr entry past the end of its area"));
        }
        let name_len = usize::from(area[off]);
        let len = (ENTRY_HEAD + name_len + 3) & !3;
        if off + len > area.len() {
            return Err(corrupt("xattr name past the end of its area"));
        }
        entries.push(off);
        off += len;
    }
    // Values lie after the entries' terminating zero word.
    let values_from = off + 4;
    let mut found = None;
    for e in entries {
        let value_offs = usize::from(le16(area, e + 2));
        let value_inum = le32(area, e + 4);
        let value_size = le32(area, e + 8) as usize;
        if value_inum == 0 && value_size != 0 {
            let end = value_offs.checked_add(value_size);
            if value_offs < values_from || end.is_none_or(|end| end > area.len()) {
                return Err(corrupt("xattr value outside its area"));
            }
        }
        let name = &area[e + ENTRY_HEAD..e + ENTRY_HEAD + usize::from(area[e])];
        if area[e + 1] == index && name == suffix && found.is_none() {
            found = Some((value_offs, value_inum, value_size));
        }
    }
    let Some((offs, inum, size)) = found else {
        return Ok(None);
    };
    if inum != 0 {
        // ea_inode: the value is the data of another inode.
        return Err(FsError::Unsupported(
            "ext4 xattr values in their own inode (ea_inode)".into(),
        ));
    }
    if size as u64 > limit {
        return Err(xattr_too_large(size as u64, limit));
    }
    // An empty value's offset is not checked above (nor by the kernel): it may be anything.
    Ok(Some(
        area.get(offs..offs + size).unwrap_or_default().to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u8, name: &[u8], offs: u16, size: u32) -> Vec<u8> {
        let mut e = vec![u8::try_from(name.len()).unwrap(), index];
        e.extend_from_slice(&offs.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(name);
        while e.len() % 4 != 0 {
            e.push(0);
        }
        e
    }

    #[test]
    fn finds_values_and_checks_offsets() {
        let mut area = entry(1, b"a", 64, 3);
        area.extend(entry(4, b"a", 68, 1));
        area.extend([0; 4]);
        area.resize(64, 0);
        area.extend(b"abc\0d");
        area.resize(80, 0);
        assert_eq!(find_xattr(&area, 0, 1, b"a", 9).unwrap().unwrap(), b"abc");
        assert_eq!(find_xattr(&area, 0, 4, b"a", 9).unwrap().unwrap(), b"d");
        assert_eq!(find_xattr(&area, 0, 6, b"a", 9).unwrap(), None);
        assert!(matches!(
            find_xattr(&area, 0, 1, b"a", 2),
            Err(FsError::TooLarge { size: 3, .. })
        ));
        // A value overlapping the entries, or past the area, refuses the area.
        let mut bad = area.clone();
        bad[2] = 4;
        assert!(matches!(
            find_xattr(&bad, 0, 6, b"a", 9),
            Err(FsError::Corrupt(_))
        ));
        let mut bad = area.clone();
        bad[8] = 200;
        assert!(matches!(
            find_xattr(&bad, 0, 1, b"a", 999),
            Err(FsError::Corrupt(_))
        ));
        // An empty value may have any offset.
        let mut empty = entry(1, b"e", 0xffff, 0);
        empty.extend([0; 4]);
        assert_eq!(find_xattr(&empty, 0, 1, b"e", 9).unwrap().unwrap(), b"");
        // No terminating entry.
        assert!(matches!(
            find_xattr(&area[..20], 0, 1, b"a", 9),
            Err(FsError::Corrupt(_))
        ));
    }

    #[test]
    fn every_cut_and_flip_of_an_area_is_an_answer() {
        let mut area = entry(1, b"extension-release.strict", 96, 5);
        area.extend(entry(6, b"selinux", 101, 10));
        area.extend([0; 4]);
        area.resize(96, 0);
        area.extend(b"falsesystem_u:x");
        for cut in 0..area.len() {
            let _ = find_xattr(&area[..cut], 0, 1, b"extension-release.strict", 99);
        }
        for at in 0..area.len() {
            for bit in 0..8 {
                let mut a = area.clone();
                a[at] ^= 1 << bit;
                let _ = find_xattr(&a, 0, 1, b"extension-release.strict", 99);
            }
        }
    }

    #[test]
    fn directory_entries() {
        let mut block = vec![0u8; 1024];
        block[0..4].copy_from_slice(&0u32.to_le_bytes());
        block[4..6].copy_from_slice(&12u16.to_le_bytes());
        block[12..16].copy_from_slice(&17u32.to_le_bytes());
        block[16..18].copy_from_slice(&1012u16.to_le_bytes());
        block[18] = 3;
        block[20..23].copy_from_slice(b"abc");
        assert_eq!(find_entry(&block, b"abc").unwrap(), Some(17));
        assert_eq!(find_entry(&block, b"ab").unwrap(), None);
        block[16..18].copy_from_slice(&1016u16.to_le_bytes());
        assert!(find_entry(&block, b"abc").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(split_name("user.x").unwrap(), Some((1, &b"x"[..])));
        assert_eq!(
            split_name("security.selinux").unwrap(),
            Some((6, &b"selinux"[..]))
        );
        assert_eq!(split_name("system.data").unwrap(), None);
        assert!(split_name("system.posix_acl_access").is_err());
    }
}
