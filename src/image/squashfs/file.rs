//! Regular files' contents: whole blocks one after another from the inode's start (each a
//! 32-bit size, bit 24 set when stored uncompressed, 0 for a block of zeros never written),
//! then the tail, either in a last block or packed into a fragment block shared with the
//! tails of other files.

use std::cell::RefCell;
use std::rc::Rc;

use super::inode::{FileRef, NONE};
use super::metadata::{Meta, Table, io_error};
use super::superblock::Superblock;
use crate::image::FsError;

/// Bit of a block size: stored uncompressed.
const UNCOMPRESSED: u32 = 1 << 24;
/// Entries of the fragment table in one metadata block (16 bytes each).
const FRAGMENTS_PER_BLOCK: u32 = 512;

/// The data of one image: the last fragment block read is kept, since files read one after
/// another (a few units, an os-release) often share it.
#[derive(Default)]
pub struct Data {
    last_fragment: RefCell<Option<(u32, Rc<Vec<u8>>)>>,
}

fn corrupt(why: impl Into<String>) -> FsError {
    FsError::Corrupt(why.into())
}

impl Data {
    /// The contents of `file`, whose size the caller has checked against its limit.
    pub fn read(
        &self,
        meta: &Meta,
        sb: &Superblock,
        inodes: Table,
        file: &FileRef,
    ) -> Result<Vec<u8>, FsError> {
        let bs = u64::from(sb.block_size);
        let whole_blocks = file.size / bs;
        let blocks = if file.fragment == NONE {
            file.size.div_ceil(bs)
        } else {
            whole_blocks
        };
        let size =
            usize::try_from(file.size).map_err(|_| corrupt("a file too large for memory"))?;
        let mut out = Vec::with_capacity(size);
        let mut sizes = meta.stream(inodes, file.blocks.0, file.blocks.1)?;
        let mut at = file.start;
        for _ in 0..blocks {
            let entry = sizes.u32()?;
            let want = usize::try_from((file.size - out.len() as u64).min(bs)).unwrap_or(0);
            let stored = entry & !UNCOMPRESSED;
            if stored == 0 {
                // A sparse block: zeros, with nothing stored.
                out.resize(out.len() + want, 0);
                continue;
            }
            if stored > sb.block_size {
                return Err(corrupt(format!(
                    "a data block of {stored} bytes, larger than the block size {}",
                    sb.block_size
                )));
            }
            let raw = read_raw(meta, sb, at, stored)?;
            at += u64::from(stored);
            if entry & UNCOMPRESSED != 0 {
                if raw.len() != want {
                    return Err(corrupt(format!(
                        "an uncompressed data block of {} bytes where {want} were due",
                        raw.len()
                    )));
                }
                out.extend_from_slice(&raw);
            } else {
                meta.charge()?;
                let block = meta.compressor().decompress(&raw, want).map_err(|_| {
                    corrupt(format!(
                        "a data block at byte {} does not decompress ({})",
                        at - u64::from(stored),
                        meta.compressor()
                    ))
                })?;
                if block.len() != want {
                    return Err(corrupt(format!(
                        "a data block of {} bytes where {want} were due",
                        block.len()
                    )));
                }
                out.extend_from_slice(&block);
            }
        }
        if file.fragment != NONE {
            let tail = usize::try_from(file.size % bs).unwrap_or(0);
            let block = self.fragment(meta, sb, file.fragment)?;
            let from = usize::try_from(file.fragment_offset).unwrap_or(usize::MAX);
            let bytes = from
                .checked_add(tail)
                .and_then(|end| block.get(from..end))
                .ok_or_else(|| {
                    corrupt(format!(
                        "a file's tail at bytes {from} to {} of a fragment of {} bytes",
                        from.saturating_add(tail),
                        block.len()
                    ))
                })?;
            out.extend_from_slice(bytes);
        }
        if out.len() as u64 != file.size {
            return Err(corrupt(format!(
                "a file of {} bytes whose blocks hold {}",
                file.size,
                out.len()
            )));
        }
        Ok(out)
    }

    /// Fragment block number `index`, decompressed.
    fn fragment(&self, meta: &Meta, sb: &Superblock, index: u32) -> Result<Rc<Vec<u8>>, FsError> {
        if let Some((i, block)) = &*self.last_fragment.borrow()
            && *i == index
        {
            return Ok(Rc::clone(block));
        }
        if index >= sb.fragments {
            return Err(corrupt(format!(
                "fragment {index} of a table of {}",
                sb.fragments
            )));
        }
        // The table's blocks lie between the directory table and the list of their
        // starts, which the superblock points to.
        let list_at = sb.fragment_table + u64::from(index / FRAGMENTS_PER_BLOCK) * 8;
        let mut ptr = [0u8; 8];
        read_checked(meta, sb, &mut ptr, list_at)?;
        let table = Table {
            name: "fragment",
            start: sb.dir_table,
            end: sb.fragment_table,
        };
        let mut s = meta.stream(table, u64::from_le_bytes(ptr), 0)?;
        s.skip(u64::from(index % FRAGMENTS_PER_BLOCK) * 16)?;
        let (start, entry, _unused) = (s.u64()?, s.u32()?, s.u32()?);
        let stored = entry & !UNCOMPRESSED;
        if stored == 0 || stored > sb.block_size {
            return Err(corrupt(format!(
                "fragment {index} of {stored} bytes (1 to the block size {})",
                sb.block_size
            )));
        }
        let raw = read_raw(meta, sb, start, stored)?;
        let block = if entry & UNCOMPRESSED != 0 {
            raw
        } else {
            meta.charge()?;
            let bs = usize::try_from(sb.block_size).unwrap_or(usize::MAX);
            meta.compressor().decompress(&raw, bs).map_err(|_| {
                corrupt(format!(
                    "fragment {index} at byte {start} does not decompress ({})",
                    meta.compressor()
                ))
            })?
        };
        let block = Rc::new(block);
        *self.last_fragment.borrow_mut() = Some((index, Rc::clone(&block)));
        Ok(block)
    }
}

/// `len` stored bytes at `at`, inside the file system.
fn read_raw(meta: &Meta, sb: &Superblock, at: u64, len: u32) -> Result<Vec<u8>, FsError> {
    let mut raw = vec![0u8; usize::try_from(len).unwrap_or(0)];
    read_checked(meta, sb, &mut raw, at)?;
    Ok(raw)
}

/// Fill `buf` from byte `at`, refusing what lies past the file system.
fn read_checked(meta: &Meta, sb: &Superblock, buf: &mut [u8], at: u64) -> Result<(), FsError> {
    if at
        .checked_add(buf.len() as u64)
        .is_none_or(|end| end > sb.bytes_used)
    {
        return Err(corrupt(format!(
            "{} bytes at byte {at}, past the end of the file system ({} bytes)",
            buf.len(),
            sb.bytes_used
        )));
    }
    meta.source()
        .read_exact_at(buf, at)
        .map_err(|e| io_error(&e))
}
