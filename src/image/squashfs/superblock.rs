//! The 96-byte squashfs 4.0 superblock, checked before anything it points to is read.

use super::decompress::Compressor;
use crate::image::FsError;

/// Bytes of the superblock.
pub const SIZE: usize = 96;
/// A table offset with no table behind it.
pub const NOT_SET: u64 = u64::MAX;
/// Flag: the image holds no extended attributes.
const NO_XATTRS: u16 = 0x200;
/// Flag: the image holds no fragments.
const NO_FRAGMENTS: u16 = 0x10;

/// What the reader takes from the superblock.
#[derive(Debug, Clone)]
pub struct Superblock {
    /// Bytes of a data block, a power of two from 4 KiB to 1 MiB.
    pub block_size: u32,
    /// Entries of the fragment table.
    pub fragments: u32,
    /// How metadata and data blocks are compressed.
    pub compressor: Compressor,
    /// The root directory's inode reference.
    pub root_inode: u64,
    /// Bytes of the file system: nothing of it lies beyond.
    pub bytes_used: u64,
    /// Start of the inode table.
    pub inode_table: u64,
    /// Start of the directory table.
    pub dir_table: u64,
    /// The fragment table's list of block pointers, or [`NOT_SET`].
    pub fragment_table: u64,
    /// The xattr id table's header, or [`NOT_SET`].
    pub xattr_table: u64,
    /// Every table start, to find where each table ends.
    starts: [u64; 6],
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

impl Superblock {
    /// The superblock in `sb`, of a file system in a window of `len` bytes.
    pub fn parse(sb: &[u8; SIZE], len: u64) -> Result<Superblock, FsError> {
        let (major, minor) = (le16(sb, 28), le16(sb, 30));
        if (major, minor) != (4, 0) {
            return Err(FsError::Unsupported(format!(
                "squashfs version {major}.{minor} (only 4.0 is read)"
            )));
        }
        let block_size = le32(sb, 12);
        if !block_size.is_power_of_two()
            || !(4096..=1 << 20).contains(&block_size)
            || u32::from(le16(sb, 22)) != block_size.trailing_zeros()
        {
            return Err(FsError::Corrupt(format!("invalid block size {block_size}")));
        }
        let bytes_used = le64(sb, 40);
        if bytes_used > len {
            return Err(FsError::Corrupt(format!(
                "the superblock claims {bytes_used} bytes, the image holds {len}"
            )));
        }
        let (inode_table, dir_table) = (le64(sb, 64), le64(sb, 72));
        if inode_table >= bytes_used || dir_table >= bytes_used || inode_table > dir_table {
            return Err(FsError::Corrupt(
                "inode or directory table outside the file system".into(),
            ));
        }
        let flags = le16(sb, 24);
        let (id, xattr, fragment, export) =
            (le64(sb, 48), le64(sb, 56), le64(sb, 80), le64(sb, 88));
        for (name, at) in [
            ("uid/gid", id),
            ("extended attribute", xattr),
            ("fragment", fragment),
            ("export", export),
        ] {
            if at != NOT_SET && at >= bytes_used {
                return Err(FsError::Corrupt(format!(
                    "the superblock places the {name} table at byte {at}, past the end of the file system ({bytes_used} bytes)"
                )));
            }
        }
        let compressor = Compressor::from_id(le16(sb, 20)).map_err(FsError::Unsupported)?;
        Ok(Superblock {
            block_size,
            fragments: if flags & NO_FRAGMENTS != 0 || fragment == NOT_SET {
                0
            } else {
                le32(sb, 16)
            },
            compressor,
            root_inode: le64(sb, 32),
            bytes_used,
            inode_table,
            dir_table,
            fragment_table: fragment,
            xattr_table: if flags & NO_XATTRS != 0 {
                NOT_SET
            } else {
                xattr
            },
            starts: [inode_table, dir_table, id, xattr, fragment, export],
        })
    }

    /// Where the table starting at `start` ends: at the next table, else at the end of the
    /// file system (mksquashfs writes them one after another, in an order that has changed
    /// between versions, so the next is found rather than assumed).
    pub fn table_end(&self, start: u64) -> u64 {
        self.starts
            .iter()
            .copied()
            .filter(|&s| s != NOT_SET && s > start)
            .min()
            .unwrap_or(self.bytes_used)
            .min(self.bytes_used)
    }
}
