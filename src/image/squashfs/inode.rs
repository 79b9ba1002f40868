//! Inodes, basic and extended, of every type: parsed from the inode table as far as a
//! lookup needs (a file's block list, a directory's index and a link's target are left in
//! the table, with the position where they start).

use super::metadata::{Meta, Stream, Table};
use crate::image::{FileKind, FsError, MAX_LINK_BYTES};

/// No fragment, no xattrs: the all-ones value of a u32 field.
pub const NONE: u32 = u32::MAX;

/// Where a directory's listing is in the directory table.
#[derive(Debug, Clone, Copy)]
pub struct DirRef {
    /// Offset of its first block from the directory table's start.
    pub block: u32,
    /// Offset in that block's data.
    pub offset: u16,
    /// Bytes of the listing plus 3 (for `.` and `..`, which are not stored).
    pub size: u32,
    /// Entries of its index (extended directories), and where the index starts.
    pub index: Option<(u16, (u64, usize))>,
}

/// Where a regular file's data is.
#[derive(Debug, Clone, Copy)]
pub struct FileRef {
    /// Byte of the image where its first block starts.
    pub start: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The fragment holding its tail, or [`NONE`].
    pub fragment: u32,
    /// Where the tail is in that fragment block.
    pub fragment_offset: u32,
    /// Where the list of its blocks' sizes starts in the inode table.
    pub blocks: (u64, usize),
}

/// What an inode is.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// A directory.
    Dir(DirRef),
    /// A regular file.
    File(FileRef),
    /// A symbolic link: its target's length and where it is in the inode table.
    Symlink(u32, (u64, usize)),
    /// Device nodes, FIFOs, sockets.
    Other,
}

/// One inode.
#[derive(Debug, Clone, Copy)]
pub struct Inode {
    /// What it is.
    pub body: Body,
    /// Its index in the xattr id table, or [`NONE`].
    pub xattr: u32,
}

impl Inode {
    /// Its kind, as path resolution sees it.
    pub fn kind(&self) -> FileKind {
        match self.body {
            Body::Dir(_) => FileKind::Dir,
            Body::File(_) => FileKind::File,
            Body::Symlink(..) => FileKind::Symlink,
            Body::Other => FileKind::Other,
        }
    }

    /// The inode at `reference` in the inode table.
    pub fn read(meta: &Meta, table: Table, reference: u64) -> Result<Inode, FsError> {
        let mut s = meta.at_reference(table, reference)?;
        Self::parse(&mut s).map_err(|e| match e {
            FsError::Corrupt(why) => {
                FsError::Corrupt(format!("the inode at reference {reference:#x}: {why}"))
            }
            e => e,
        })
    }

    fn parse(s: &mut Stream<'_>) -> Result<Inode, FsError> {
        // type, mode, uid, gid, mtime, inode number
        let head = s.array::<16>()?;
        let kind = u16::from_le_bytes([head[0], head[1]]);
        let plain = |body| Inode { body, xattr: NONE };
        Ok(match kind {
            1 => {
                let (block, _nlink, size, offset, _parent) =
                    (s.u32()?, s.u32()?, s.u16()?, s.u16()?, s.u32()?);
                plain(Body::Dir(dir(block, offset, u32::from(size), None)?))
            }
            8 => {
                let (_nlink, size, block, _parent, count, offset, xattr) = (
                    s.u32()?,
                    s.u32()?,
                    s.u32()?,
                    s.u32()?,
                    s.u16()?,
                    s.u16()?,
                    s.u32()?,
                );
                let index = (count > 0).then(|| (count, s.position()));
                Inode {
                    body: Body::Dir(dir(block, offset, size, index)?),
                    xattr,
                }
            }
            2 => {
                let (start, fragment, fragment_offset, size) =
                    (s.u32()?, s.u32()?, s.u32()?, s.u32()?);
                plain(Body::File(FileRef {
                    start: u64::from(start),
                    size: u64::from(size),
                    fragment,
                    fragment_offset,
                    blocks: s.position(),
                }))
            }
            9 => {
                let (start, size, _sparse, _nlink, fragment, fragment_offset, xattr) = (
                    s.u64()?,
                    s.u64()?,
                    s.u64()?,
                    s.u32()?,
                    s.u32()?,
                    s.u32()?,
                    s.u32()?,
                );
                Inode {
                    body: Body::File(FileRef {
                        start,
                        size,
                        fragment,
                        fragment_offset,
                        blocks: s.position(),
                    }),
                    xattr,
                }
            }
            3 | 10 => {
                let (_nlink, len) = (s.u32()?, s.u32()?);
                if u64::from(len) > MAX_LINK_BYTES {
                    return Err(FsError::TooLarge {
                        what: "symlink",
                        size: u64::from(len),
                        limit: MAX_LINK_BYTES,
                    });
                }
                let at = s.position();
                let xattr = if kind == 10 {
                    s.skip(u64::from(len))?;
                    s.u32()?
                } else {
                    NONE
                };
                Inode {
                    body: Body::Symlink(len, at),
                    xattr,
                }
            }
            // Devices (nlink, rdev), FIFOs and sockets (nlink); the extended ones then have
            // their xattr index.
            4..=7 => plain(Body::Other),
            11 | 12 => {
                s.skip(8)?;
                Inode {
                    body: Body::Other,
                    xattr: s.u32()?,
                }
            }
            13 | 14 => {
                s.skip(4)?;
                Inode {
                    body: Body::Other,
                    xattr: s.u32()?,
                }
            }
            t => return Err(FsError::Corrupt(format!("unknown inode type {t}"))),
        })
    }
}

fn dir(
    block: u32,
    offset: u16,
    size: u32,
    index: Option<(u16, (u64, usize))>,
) -> Result<DirRef, FsError> {
    if usize::from(offset) >= super::metadata::BLOCK {
        return Err(FsError::Corrupt(format!(
            "a directory starting at byte {offset} of an 8 KiB block"
        )));
    }
    Ok(DirRef {
        block,
        offset,
        size,
        index,
    })
}
