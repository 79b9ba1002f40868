//! Directory listings in the directory table: runs of a 12-byte header (entry count less
//! one, the inode block the entries share, an inode number) followed by its entries (offset
//! in that block, inode number delta, type, name length less one, the name), sorted by
//! name. A lookup in a large directory starts at the entry its index names
//! (`fs/squashfs/namei.c`).

use std::cmp::Ordering;

use super::inode::DirRef;
use super::metadata::{BLOCK, Meta, Stream, Table};
use crate::image::{
    DirEntry, FileKind, FsError, MAX_DIR_BYTES, MAX_DIR_ENTRIES, dir_too_large, too_many_entries,
};

/// Most entries under one header, and longest name (`SQUASHFS_DIR_COUNT`, `SQUASHFS_NAME_LEN`).
const MAX_COUNT: u32 = 256;
const MAX_NAME: usize = 256;

/// One entry: its name, its inode reference and its kind.
pub struct Entry {
    /// The name, checked to be one.
    pub name: Vec<u8>,
    /// Where its inode is (block offset in the inode table << 16 | offset in the block).
    pub inode: u64,
    /// Its kind, from the entry's type.
    pub kind: FileKind,
}

/// A listing being read: the stream and the bytes left of it.
struct Listing<'m> {
    stream: Option<Stream<'m>>,
    left: u64,
    /// Entries left under the current header, and its inode block.
    count: u32,
    inode_block: u32,
    last: Option<Vec<u8>>,
}

fn corrupt(why: impl Into<String>) -> FsError {
    FsError::Corrupt(format!("directory listing: {}", why.into()))
}

impl<'m> Listing<'m> {
    /// The listing of `dir`, from `skip` bytes into it (where its index points).
    fn new(
        meta: &'m Meta,
        table: Table,
        dir: DirRef,
        skip: u32,
        block: u32,
    ) -> Result<Listing<'m>, FsError> {
        let len = u64::from(dir.size.saturating_sub(3));
        if len > MAX_DIR_BYTES {
            return Err(dir_too_large(len));
        }
        let at = table
            .start
            .checked_add(u64::from(block))
            .ok_or_else(|| corrupt("past the directory table"))?;
        // The blocks before the last are all full, so the offset runs on modulo their size.
        let offset =
            (usize::from(dir.offset) + usize::try_from(skip).unwrap_or(usize::MAX)) % BLOCK;
        // An empty directory: no block need be read.
        let stream = if len == 0 {
            None
        } else {
            Some(meta.stream(table, at, offset)?)
        };
        Ok(Listing {
            stream,
            left: len.saturating_sub(u64::from(skip)),
            count: 0,
            inode_block: 0,
            last: None,
        })
    }

    /// The next entry, or `None` at the end.
    fn next(&mut self) -> Result<Option<Entry>, FsError> {
        if self.count == 0 && self.left == 0 {
            return Ok(None);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        if self.count == 0 {
            self.left = take(self.left, 12)?;
            let (count, block, _number) = (stream.u32()?, stream.u32()?, stream.u32()?);
            if count >= MAX_COUNT {
                return Err(corrupt(format!(
                    "{} entries under one header (at most {MAX_COUNT})",
                    u64::from(count) + 1
                )));
            }
            self.count = count + 1;
            self.inode_block = block;
        }
        self.count -= 1;
        let (offset, _delta, kind, size) =
            (stream.u16()?, stream.u16()?, stream.u16()?, stream.u16()?);
        let len = usize::from(size) + 1;
        if len > MAX_NAME {
            return Err(corrupt(format!(
                "a name of {len} bytes (at most {MAX_NAME})"
            )));
        }
        self.left = take(self.left, 8 + len as u64)?;
        let name = stream.bytes(len)?;
        if name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".." {
            return Err(FsError::Corrupt(format!(
                "invalid file name {:?} in a directory",
                String::from_utf8_lossy(&name)
            )));
        }
        // Sorted, as the kernel's lookup needs: a name out of order or twice is damage.
        if let Some(last) = &self.last
            && last.as_slice() >= name.as_slice()
        {
            return Err(corrupt(format!(
                "{:?} after {:?}: out of order or listed twice",
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(last)
            )));
        }
        let kind = match kind {
            1 | 8 => FileKind::Dir,
            2 | 9 => FileKind::File,
            3 | 10 => FileKind::Symlink,
            4..=7 | 11..=14 => FileKind::Other,
            t => return Err(corrupt(format!("an entry of unknown type {t}"))),
        };
        self.last = Some(name.clone());
        Ok(Some(Entry {
            name,
            inode: u64::from(self.inode_block) << 16 | u64::from(offset),
            kind,
        }))
    }
}

fn take(left: u64, n: u64) -> Result<u64, FsError> {
    left.checked_sub(n)
        .ok_or_else(|| corrupt("longer than the directory's size"))
}

/// Every entry of `dir`, at most [`MAX_DIR_ENTRIES`].
pub fn list(meta: &Meta, table: Table, dir: DirRef) -> Result<Vec<DirEntry>, FsError> {
    let mut listing = Listing::new(meta, table, dir, 0, dir.block)?;
    let mut out = Vec::new();
    while let Some(e) = listing.next()? {
        if out.len() == MAX_DIR_ENTRIES {
            return Err(too_many_entries(out.len() + 1));
        }
        out.push(DirEntry {
            name: e.name,
            kind: e.kind,
        });
    }
    Ok(out)
}

/// The entry `name` of `dir`, if there is one.
pub fn find(
    meta: &Meta,
    inodes: Table,
    table: Table,
    dir: DirRef,
    name: &[u8],
) -> Result<Option<Entry>, FsError> {
    let (skip, block) = match dir.index {
        Some((count, at)) => from_index(meta, inodes, dir, count, at, name)?,
        None => (0, dir.block),
    };
    let mut listing = Listing::new(meta, table, dir, skip, block)?;
    while let Some(e) = listing.next()? {
        match e.name.as_slice().cmp(name) {
            Ordering::Less => {}
            Ordering::Equal => return Ok(Some(e)),
            Ordering::Greater => return Ok(None),
        }
    }
    Ok(None)
}

/// Where to start looking for `name`: the last index entry whose first name is not after
/// it, as bytes into the listing and the block holding them. Index entries run forward; one
/// pointing backwards or past the listing is damage.
fn from_index(
    meta: &Meta,
    inodes: Table,
    dir: DirRef,
    count: u16,
    at: (u64, usize),
    name: &[u8],
) -> Result<(u32, u32), FsError> {
    let mut s = meta.stream(inodes, at.0, at.1)?;
    let listing = dir.size.saturating_sub(3);
    let mut best = (0, dir.block);
    let mut previous = None;
    for _ in 0..count {
        let (index, block, size) = (s.u32()?, s.u32()?, s.u32()?);
        let len = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        if len > MAX_NAME {
            return Err(corrupt(format!("an index name of {len} bytes")));
        }
        let first = s.bytes(len)?;
        if first.as_slice() > name {
            break;
        }
        if previous.is_some_and(|p| index <= p) || index >= listing || block < best.1 {
            return Err(corrupt(format!(
                "an index entry pointing backwards or past the listing (byte {index} of {listing}, block {block})"
            )));
        }
        best = (index, block);
        previous = Some(index);
    }
    Ok(best)
}
