//! Extended attributes, read as the kernel's `fs/squashfs/xattr.c` and `xattr_id.c` do: the
//! inode's index selects a 16-byte id in the xattr id table (whose header the superblock
//! points to), which points into a stream of metadata blocks holding the inode's
//! name/value pairs.

use super::metadata::{BLOCK, Meta, Table, io_error};
use super::superblock::{NOT_SET, Superblock};
use crate::image::{FsError, xattr_too_large};

/// Bytes of one xattr id: u64 reference, u32 count, u32 size.
const ID_SIZE: u64 = 16;
/// Entry type flag: the value is stored elsewhere, as a u64 reference to it.
const VALUE_OOL: u16 = 0x100;

fn corrupt(why: impl Into<String>) -> FsError {
    FsError::Corrupt(format!("xattr table: {}", why.into()))
}

/// The namespace type squashfs stores for a full name, and the rest of the name.
/// mksquashfs keeps only these three namespaces.
fn split_name(name: &str) -> Option<(u16, &[u8])> {
    [("user.", 0), ("trusted.", 1), ("security.", 2)]
        .into_iter()
        .find_map(|(prefix, t)| Some((t, name.strip_prefix(prefix)?.as_bytes())))
}

/// `buf.len()` bytes at `at`, inside the file system.
fn read(meta: &Meta, sb: &Superblock, buf: &mut [u8], at: u64) -> Result<(), FsError> {
    if at
        .checked_add(buf.len() as u64)
        .is_none_or(|e| e > sb.bytes_used)
    {
        return Err(corrupt("points past the end of the file system"));
    }
    meta.source()
        .read_exact_at(buf, at)
        .map_err(|e| io_error(&e))
}

/// The value of `name` among the xattrs with index `index` (from the inode).
pub fn get(
    meta: &Meta,
    sb: &Superblock,
    index: u32,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, FsError> {
    // The kernel's SQUASHFS_INVALID_XATTR: the inode has none.
    if index == u32::MAX || sb.xattr_table == NOT_SET {
        return Ok(None);
    }
    let Some((want_type, want_name)) = split_name(name) else {
        return Ok(None);
    };
    let id_table = sb.xattr_table;
    let mut header = [0u8; 16];
    read(meta, sb, &mut header, id_table)?;
    let [s0, s1, s2, s3, s4, s5, s6, s7, i0, i1, i2, i3, ..] = header;
    let start = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
    let ids = u32::from_le_bytes([i0, i1, i2, i3]);
    if start >= id_table {
        return Err(corrupt("the entries start after the id table"));
    }
    if index >= ids {
        return Err(corrupt(format!("index {index} of {ids}")));
    }
    // Both the ids' blocks and the entries' lie between `start` and the id table's header.
    let table = Table {
        name: "extended attribute",
        start,
        end: id_table,
    };

    // The id: in metadata block `index / 512` of the id table, pointed to from the list
    // after its header.
    let at = u64::from(index) * ID_SIZE;
    let mut ptr = [0u8; 8];
    read(meta, sb, &mut ptr, id_table + 16 + at / BLOCK as u64 * 8)?;
    let mut ids = meta.stream(table, u64::from_le_bytes(ptr), 0)?;
    ids.skip(at % BLOCK as u64)?;
    let (reference, count, _size) = (ids.u64()?, ids.u32()?, ids.u32()?);

    let mut entries = meta.at_reference(table, reference)?;
    for _ in 0..count {
        let (kind, name_len) = (entries.u16()?, entries.u16()?);
        let matches = kind & 0xff == want_type && usize::from(name_len) == want_name.len();
        let matches = if matches {
            entries.bytes(usize::from(name_len))? == want_name
        } else {
            entries.skip(u64::from(name_len))?;
            false
        };
        let value_len = entries.u32()?;
        if kind & VALUE_OOL != 0 && value_len != 8 {
            return Err(corrupt(format!(
                "out-of-line value reference of {value_len} bytes"
            )));
        }
        if !matches {
            entries.skip(u64::from(value_len))?;
            continue;
        }
        let (mut value, value_len) = if kind & VALUE_OOL == 0 {
            (entries, value_len)
        } else {
            let mut value = meta.at_reference(table, entries.u64()?)?;
            let len = value.u32()?;
            (value, len)
        };
        if u64::from(value_len) > limit {
            return Err(xattr_too_large(u64::from(value_len), limit));
        }
        return value
            .bytes(usize::try_from(value_len).unwrap_or(usize::MAX))
            .map(Some);
    }
    Ok(None)
}
