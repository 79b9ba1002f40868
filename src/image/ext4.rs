//! ext4 images: the superblock checked, then read by [`super::ext4_direct`], or, when the
//! journal needs recovery, in user space with the `ext4-view` crate, which replays it.
//!
//! ext4-view resolves symlinks itself, so every lookup through it goes through
//! `symlink_metadata` first: that never follows the last component, and it yields the size
//! that bounds what a later read may allocate.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::path::Path;
use std::rc::Rc;

use ext4_view::{Ext4, Ext4Error, Ext4Read, FileType, Metadata};

use super::source::Source;
use super::{
    DirEntry, FileKind, Fs, FsError, MAX_DIR_BYTES, MAX_DIR_ENTRIES, MAX_LINK_BYTES, PANICKED,
    dir_too_large, guarded, too_many_entries,
};
use super::{ext4_direct, ext4_xattr};

/// Most block groups accepted. ext4-view reserves memory for every descriptor before
/// reading one; 2^18 groups is 32 TiB at 4 KiB blocks, far beyond any portable image.
const MAX_BLOCK_GROUPS: u64 = 1 << 18;

/// Bytes read from the image for one call (open, lstat, ...). Real requests read a few
/// blocks; a crafted extent tree can map one small directory or file onto the same
/// blocks again and again, and this turns what would be a hang into an error.
const READ_BUDGET: u64 = 256 * 1024 * 1024;

const SUPERBLOCK_OFFSET: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;
const EXT4_MAGIC: u16 = 0xef53;
const SUPERBLOCK_CHECKSUM_AT: usize = 0x3fc;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_INLINE_DATA: u32 = 0x8000;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// Open the ext4 file system occupying all of `src`.
pub fn open(src: Source) -> Result<Box<dyn Fs>, FsError> {
    open_with_budget(src, READ_BUDGET)
}

fn open_with_budget(src: Source, per_call: u64) -> Result<Box<dyn Fs>, FsError> {
    let sb = check_superblock(&src)?;
    // An image whose journal holds nothing to replay is read directly, its blocks being
    // all there is; ext4-view, which replays journals, reads the others.
    if le32(&sb, 0x60) & INCOMPAT_RECOVER == 0 {
        return Ok(Box::new(ext4_direct::Direct::open(src, &sb, per_call)?));
    }
    open_view(src, &sb, per_call)
}

/// Open with ext4-view the file system in `src`, whose superblock `sb` was checked.
fn open_view(
    src: Source,
    sb: &[u8; SUPERBLOCK_LEN],
    per_call: u64,
) -> Result<Box<dyn Fs>, FsError> {
    let budget = Rc::new(Cell::new(per_call));
    let load = |superblock: Option<Box<[u8; SUPERBLOCK_LEN]>>| {
        let reader = SourceRead {
            src: src.clone(),
            budget: budget.clone(),
            superblock,
        };
        guarded(|| Ext4::load(Box::new(reader)).map_err(map_err))
    };
    let fs = match load(None) {
        Ok(fs) => fs,
        // A file system that is mounted (systemd opens RootImage= writable when it can,
        // so a running portable's ext4 image is mounted read-write) has its journal marked
        // for recovery, and ext4-view replays only 64-bit, checksum-v3 journals, which
        // mke2fs does not make by default. What the journal holds is what the running
        // service wrote since; the units and os-release are read as last checkpointed
        // rather than the image being refused at every reload while its service runs.
        Err(first) => match without_recovery(&src) {
            Some(superblock) => {
                budget.set(per_call);
                load(Some(superblock)).map_err(|_| first)?
            }
            None => return Err(first),
        },
    };
    // Extended attributes are read from the image's own superblock: the recovery flag
    // does not change where they are.
    let xattrs = ext4_xattr::Raw::new(src, sb, budget.clone())?;
    let fs = Ext4Fs {
        fs,
        xattrs,
        budget,
        per_call,
        poisoned: Cell::new(false),
    };
    // Every lookup scans its parent directory, and the root is nobody's entry: lstat
    // does not get to check it.
    fs.call(|| fs.dir_size_ok(&fs.entry(Path::new("/"))?))?;
    Ok(Box::new(fs))
}

struct SourceRead {
    src: Source,
    /// Bytes left for the current call; shared with [`Ext4Fs`], which refills it.
    budget: Rc<Cell<u64>>,
    /// The superblock to read in place of the image's (see [`without_recovery`]).
    superblock: Option<Box<[u8; SUPERBLOCK_LEN]>>,
}

/// The image's superblock with the journal's "needs recovery" flag cleared (and its
/// checksum made right again), when that flag is set: reading through it ignores the
/// journal, as `e2fsck -n` and `debugfs` do.
fn without_recovery(src: &Source) -> Option<Box<[u8; SUPERBLOCK_LEN]>> {
    let mut sb = Box::new([0u8; SUPERBLOCK_LEN]);
    src.read_exact_at(&mut sb[..], SUPERBLOCK_OFFSET).ok()?;
    let incompat = le32(&sb[..], 0x60);
    if incompat & INCOMPAT_RECOVER == 0 {
        return None;
    }
    sb[0x60..0x64].copy_from_slice(&(incompat & !INCOMPAT_RECOVER).to_le_bytes());
    if le32(&sb[..], 0x64) & RO_COMPAT_METADATA_CSUM != 0 {
        // ext4's superblock checksum: CRC-32C seeded with ~0, without the final inversion.
        const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let sum = CRC32C.checksum(&sb[..SUPERBLOCK_CHECKSUM_AT]) ^ !0;
        sb[SUPERBLOCK_CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
    }
    Some(sb)
}

/// The error of a call that read more than its budget.
#[derive(Debug)]
pub(super) struct BudgetSpent;

impl fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "more than {} MiB read for one request",
            READ_BUDGET >> 20
        )
    }
}

impl std::error::Error for BudgetSpent {}

impl Ext4Read for SourceRead {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let left = self
            .budget
            .get()
            .checked_sub(dst.len() as u64)
            .ok_or(BudgetSpent)?;
        self.budget.set(left);
        self.src.read_exact_at(dst, start_byte)?;
        if let Some(sb) = &self.superblock {
            overlay(dst, start_byte, &sb[..], SUPERBLOCK_OFFSET);
        }
        Ok(())
    }
}

/// Copy into `dst` (which holds the image's bytes from `dst_at`) the part of `patch`
/// (which replaces the image's bytes from `patch_at`) that overlaps it.
fn overlay(dst: &mut [u8], dst_at: u64, patch: &[u8], patch_at: u64) {
    let dst_end = dst_at.saturating_add(dst.len() as u64);
    let patch_end = patch_at.saturating_add(patch.len() as u64);
    let (from, to) = (dst_at.max(patch_at), dst_end.min(patch_end));
    if from >= to {
        return;
    }
    // Both offsets are below the lengths of in-memory slices, so they fit in usize.
    let index = |at: u64, base: u64| usize::try_from(at - base).unwrap_or(usize::MAX);
    let (d, p) = (index(from, dst_at), index(from, patch_at));
    let n = index(to, from);
    dst[d..d + n].copy_from_slice(&patch[p..p + n]);
}

/// The little-endian fields of ext4's on-disk structures, for every ext4 module; `at` is
/// checked by the caller.
pub(super) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// See [`le16`].
pub(super) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A damaged file system, and why.
pub(super) fn corrupt(why: impl Into<String>) -> FsError {
    FsError::Corrupt(why.into())
}

/// Refuse, before ext4-view sees them, superblocks that would make it allocate in
/// proportion to a number nobody checked, and features it cannot read, with a message
/// that says what to change when building the image. Gives the superblock.
fn check_superblock(src: &Source) -> Result<[u8; SUPERBLOCK_LEN], FsError> {
    let mut sb = [0u8; SUPERBLOCK_LEN];
    src.read_exact_at(&mut sb, SUPERBLOCK_OFFSET)
        .map_err(|_| FsError::Corrupt("image too small for a superblock".into()))?;
    if le16(&sb, 0x38) != EXT4_MAGIC {
        return Err(FsError::Corrupt("bad superblock magic".into()));
    }
    let incompat = le32(&sb, 0x60);
    let ro_compat = le32(&sb, 0x64);
    if incompat & INCOMPAT_INLINE_DATA != 0 {
        return Err(FsError::Unsupported(
            "ext4 feature inline_data (build the image with mkfs.ext4 -O ^inline_data)".into(),
        ));
    }
    if le32(&sb, 0x4c) == 0 {
        return Err(FsError::Unsupported("ext2 revision 0 file system".into()));
    }
    let log_block_size = le32(&sb, 0x18);
    if log_block_size > 6 {
        return Err(FsError::Corrupt(format!("log block size {log_block_size}")));
    }
    let block_size = 1024u64 << log_block_size;
    let inode_size = u64::from(le16(&sb, 0x58));
    if inode_size < 128 || inode_size > block_size || !inode_size.is_power_of_two() {
        return Err(FsError::Corrupt(format!("inode size {inode_size}")));
    }
    // ext4-view reads the metadata checksum from the inode's extra fields, which
    // 128-byte inodes lack, and then fails on every inode.
    if inode_size < 256 && ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
        return Err(FsError::Unsupported(format!(
            "ext4 with {inode_size}-byte inodes and metadata_csum \
             (build the image with mkfs.ext4 -I 256)"
        )));
    }

    // ext4-view combines the halves whether or not the 64bit feature is on; so do we, to
    // bound exactly what it will use.
    let blocks = u64::from(le32(&sb, 0x4)) | u64::from(le32(&sb, 0x150)) << 32;
    let fs_bytes = blocks.saturating_mul(block_size);
    if fs_bytes > src.len() {
        return Err(FsError::Corrupt(format!(
            "the superblock claims {fs_bytes} bytes, the image holds {}",
            src.len()
        )));
    }
    let first_data_block = u64::from(le32(&sb, 0x14));
    let blocks_per_group = u64::from(le32(&sb, 0x20));
    let inodes_per_group = u64::from(le32(&sb, 0x28));
    // The kernel's limits: one bitmap block describes a group's blocks and its inodes.
    if blocks_per_group == 0 || blocks_per_group > 8 * block_size {
        return Err(FsError::Corrupt(format!(
            "{blocks_per_group} blocks per group"
        )));
    }
    if inodes_per_group == 0 || inodes_per_group > 8 * block_size {
        return Err(FsError::Corrupt(format!(
            "{inodes_per_group} inodes per group"
        )));
    }
    let Some(data_blocks) = blocks.checked_sub(first_data_block) else {
        return Err(FsError::Corrupt("first data block beyond the end".into()));
    };
    let groups = data_blocks.div_ceil(blocks_per_group);
    if groups > MAX_BLOCK_GROUPS {
        return Err(FsError::Corrupt(format!("{groups} block groups")));
    }
    // The kernel refuses to mount when these disagree, so no real image has them differ.
    if groups * inodes_per_group != u64::from(le32(&sb, 0x0)) {
        return Err(FsError::Corrupt(
            "inode count does not match the block groups".into(),
        ));
    }
    let desc_size = if incompat & INCOMPAT_64BIT != 0 {
        u64::from(le16(&sb, 0xfe))
    } else {
        32
    };
    if groups * desc_size > src.len() {
        return Err(FsError::Corrupt("group descriptors beyond the end".into()));
    }
    Ok(sb)
}

struct Ext4Fs {
    fs: Ext4,
    /// ext4-view reads no xattrs: they are read from the raw image.
    xattrs: ext4_xattr::Raw,
    budget: Rc<Cell<u64>>,
    per_call: u64,
    /// Set once ext4-view panicked: its caches may be half updated, so nothing it says
    /// afterwards is trusted.
    poisoned: Cell<bool>,
}

impl Ext4Fs {
    fn call<T>(&self, f: impl FnOnce() -> Result<T, FsError>) -> Result<T, FsError> {
        if self.poisoned.get() {
            return Err(FsError::Corrupt("ext4 reader panicked earlier".into()));
        }
        self.budget.set(self.per_call);
        let r = guarded(f);
        if matches!(&r, Err(FsError::Corrupt(m)) if m.starts_with(PANICKED)) {
            self.poisoned.set(true);
        }
        r
    }

    /// The entry at `path` itself, never what a final symlink points to.
    fn entry(&self, path: &Path) -> Result<Metadata, FsError> {
        self.fs.symlink_metadata(path).map_err(map_err)
    }

    fn dir_size_ok(&self, m: &Metadata) -> Result<(), FsError> {
        if m.is_dir() && m.len() > MAX_DIR_BYTES {
            return Err(dir_too_large(m.len()));
        }
        Ok(())
    }
}

fn kind(t: FileType) -> FileKind {
    match t {
        FileType::Regular => FileKind::File,
        FileType::Directory => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

fn not_regular(t: FileType) -> FsError {
    match t {
        FileType::Directory => FsError::WrongType("is a directory"),
        FileType::Symlink => FsError::Unsupported("is a symbolic link".into()),
        _ => FsError::WrongType("not a regular file"),
    }
}

impl Fs for Ext4Fs {
    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        self.call(|| match self.entry(path) {
            // Refusing an oversized directory here keeps every later lookup inside it,
            // which scans it, from happening: paths are resolved one lstat at a time.
            Ok(m) => {
                self.dir_size_ok(&m)?;
                Ok(Some(kind(m.file_type())))
            }
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
        self.call(|| {
            let m = self.entry(path)?;
            if !m.is_dir() {
                return Err(FsError::NotADirectory);
            }
            self.dir_size_ok(&m)?;
            let mut out = Vec::new();
            for entry in self.fs.read_dir(path).map_err(map_err)? {
                let entry = entry.map_err(map_err)?;
                let name = entry.file_name();
                let name = name.as_ref();
                if name == b"." || name == b".." {
                    continue;
                }
                if out.len() == MAX_DIR_ENTRIES {
                    return Err(too_many_entries(out.len() + 1));
                }
                let kind = kind(entry.file_type().map_err(map_err)?);
                out.push(DirEntry {
                    name: name.to_vec(),
                    kind,
                });
            }
            Ok(out)
        })
    }

    fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        self.call(|| {
            let m = self.entry(path)?;
            if !m.is_symlink() {
                return Err(FsError::WrongType("not a symbolic link"));
            }
            // ext4-view reads a long target as file data of the inode's claimed size.
            if m.len() > MAX_LINK_BYTES {
                return Err(FsError::TooLarge {
                    what: "symlink",
                    size: m.len(),
                    limit: MAX_LINK_BYTES,
                });
            }
            let target = self.fs.read_link(path).map_err(map_err)?;
            Ok(target.as_ref().to_vec())
        })
    }

    fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        self.call(|| {
            let m = self.entry(path)?;
            if m.file_type() != FileType::Regular {
                return Err(not_regular(m.file_type()));
            }
            let size = m.len();
            if size > limit {
                return Err(FsError::TooLarge {
                    what: "file",
                    size,
                    limit,
                });
            }
            // `open` resolves the path again and would follow a symlink; checking the
            // inode it found keeps a changed image from slipping a bigger file in.
            let mut file = self.fs.open(path).map_err(map_err)?;
            if file.metadata().file_type() != FileType::Regular || file.metadata().len() != size {
                return Err(FsError::Corrupt("file changed while being read".into()));
            }
            let len = usize::try_from(size).map_err(|_| FsError::TooLarge {
                what: "file",
                size,
                limit,
            })?;
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                match file.read_bytes(&mut buf[done..]).map_err(map_err)? {
                    0 => return Err(FsError::Corrupt("file data ends early".into())),
                    n => done += n,
                }
            }
            Ok(buf)
        })
    }

    fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        self.call(|| {
            // ext4-view decides whether the entry exists, as for every other call.
            let m = self.entry(path)?;
            let expect = (kind(m.file_type()), m.mode(), m.len());
            self.xattrs.xattr(path, name, limit, expect)
        })
    }
}

fn map_err(e: Ext4Error) -> FsError {
    match e {
        Ext4Error::NotFound | Ext4Error::MalformedPath => FsError::NotFound,
        Ext4Error::NotADirectory => FsError::NotADirectory,
        Ext4Error::IsADirectory => FsError::WrongType("is a directory"),
        Ext4Error::IsASpecialFile => FsError::WrongType("not a regular file"),
        Ext4Error::NotASymlink => FsError::WrongType("not a symbolic link"),
        Ext4Error::TooManySymlinks => FsError::SymlinkLoop,
        Ext4Error::Encrypted => FsError::Unsupported("ext4 encrypted directory".into()),
        Ext4Error::Incompatible(i) => FsError::Unsupported(format!("{i}")),
        Ext4Error::Corrupt(c) => FsError::Corrupt(format!("{c}")),
        Ext4Error::Io(e) if e.is::<BudgetSpent>() => FsError::Corrupt(format!("{e}")),
        Ext4Error::Io(e) => match e.downcast::<io::Error>() {
            // Source reports reads past its window this way: the file system points
            // outside the image.
            Ok(e) if e.kind() == io::ErrorKind::UnexpectedEof => FsError::Corrupt(format!("{e}")),
            Ok(e) => FsError::Io(*e),
            Err(e) => FsError::Io(io::Error::other(e)),
        },
        e => FsError::Corrupt(format!("{e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::MAX_FILE_BYTES;
    use crate::image::fixture::{self, Built};
    use crate::image::xattr_fixture;
    use std::os::unix::ffi::OsStrExt;

    fn mkfs(extra: &[&str]) -> Option<Built> {
        let mut args = vec!["-q", "-d", "{tree}", "-E", "root_owner=0:0"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["{img}", "8M"]);
        fixture::build("img.ext4", "mkfs.ext4", &args)
    }

    #[test]
    fn reads_what_mkfs_wrote() {
        let Some(built) = mkfs(&[]) else { return };
        fixture::check_image(&built, open);
    }

    /// The state a mounted image is in: the journal needs recovery (set as the kernel sets
    /// it, with debugfs), in a journal without the 64-bit and checksum-v3 features.
    fn needing_recovery(extra: &[&str]) -> Option<Built> {
        let built = mkfs(extra)?;
        let debugfs = fixture::tool("debugfs")?;
        let ok = std::process::Command::new(debugfs)
            .args(["-w", "-R", "feature needs_recovery"])
            .arg(&built.img)
            .output()
            .ok()?
            .status
            .success();
        ok.then_some(built)
    }

    #[test]
    fn reads_a_mounted_image_whose_journal_needs_recovery() {
        for extra in [&[][..], &["-O", "^metadata_csum"][..]] {
            let Some(built) = needing_recovery(extra) else {
                return;
            };
            let mut sb = [0u8; 4];
            fixture::source(&built.img)
                .read_exact_at(&mut sb, SUPERBLOCK_OFFSET + 0x60)
                .unwrap();
            assert_ne!(
                u32::from_le_bytes(sb) & INCOMPAT_RECOVER,
                0,
                "debugfs set the flag"
            );
            fixture::check_image(&built, open);
        }
    }

    #[test]
    fn overlay_copies_only_the_overlap() {
        let mut dst = [0u8; 8];
        overlay(&mut dst, 100, &[1, 2, 3, 4], 98);
        assert_eq!(dst, [3, 4, 0, 0, 0, 0, 0, 0]);
        let mut dst = [0u8; 4];
        overlay(&mut dst, 0, &[9; 8], 2);
        assert_eq!(dst, [0, 0, 9, 9]);
        overlay(&mut dst, 0, &[7; 8], 4);
        assert_eq!(dst, [0, 0, 9, 9]);
    }

    #[test]
    fn reads_4k_blocks_without_journal_or_checksums() {
        let Some(built) = mkfs(&["-b", "4096", "-O", "^has_journal,^metadata_csum"]) else {
            return;
        };
        fixture::check_image(&built, open);
    }

    #[test]
    fn reads_a_partition_at_an_offset() {
        let Some(built) = mkfs(&[]) else { return };
        fixture::check_at_offset(&built, open);
    }

    fn mkfs_xattrs(extra: &[&str]) -> Option<Built> {
        let mut args = vec!["-q", "-d", "{tree}", "-E", "root_owner=0:0"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["{img}", "8M"]);
        xattr_fixture::build("img.ext4", "mkfs.ext4", &args)
    }

    /// `tree` made into an 8 MiB ext4 image at `img` with mkfs's `args`, then its large
    /// directories indexed by `e2fsck -D` (mkfs.ext4 -d writes linear ones): false where
    /// e2fsck is not installed and they stay linear.
    fn mkfs_indexed(tree: &Path, img: &Path, args: &[&str]) -> bool {
        let out = std::process::Command::new(fixture::tool("mkfs.ext4").unwrap())
            .arg("-q")
            .args(args)
            .arg("-d")
            .arg(tree)
            .arg(img)
            .arg("8M")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let Some(e2fsck) = fixture::tool("e2fsck") else {
            return false;
        };
        let out = std::process::Command::new(e2fsck)
            .arg("-fyD")
            .arg(img)
            .output()
            .unwrap();
        assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
        true
    }

    /// The layouts mkfs makes that the readers are tried on: checksums or not, 1 and 4 KiB
    /// blocks, 32 and 64-bit group descriptors, with and without a journal, 128-byte inodes
    /// (no room in the inode for xattrs: all in the block), ext2's and ext3's block maps.
    const LAYOUTS: [&[&str]; 8] = [
        &[],
        &["-b", "1024"],
        &["-b", "4096"],
        &["-b", "4096", "-O", "^64bit,^metadata_csum"],
        &["-b", "4096", "-O", "^64bit,^metadata_csum,^has_journal"],
        &["-I", "128", "-O", "^metadata_csum"],
        &["-t", "ext2"],
        &["-t", "ext3", "-I", "256"],
    ];

    /// In the inode and in the xattr block, in every layout.
    #[test]
    fn reads_xattrs() {
        for extra in LAYOUTS {
            let Some(built) = mkfs_xattrs(extra) else {
                return;
            };
            let fs = open(fixture::source(&built.img)).unwrap();
            xattr_fixture::check_image(fs, true);
        }
    }

    #[test]
    fn damaged_xattrs_do_not_panic() {
        let Some(built) = mkfs_xattrs(&[]) else {
            return;
        };
        xattr_fixture::check_corrupt(&built, open, b"extension-release.strict");
        xattr_fixture::check_corrupt(&built, open, &xattr_fixture::long_value()[..64]);
    }

    /// A directory's htree index is skipped over as ext4 lays it out for linear readers.
    #[test]
    fn finds_inodes_in_hashed_directories() {
        let Some(built) = mkfs_xattrs(&[]) else {
            return;
        };
        let tree = xattr_fixture::add_fillers(&built, "/usr/lib/extension-release.d", 600);
        let img = built.dir.path().join("many.ext4");
        let (true, Some(debugfs)) = (
            mkfs_indexed(&tree, &img, &["-b", "1024"]),
            fixture::tool("debugfs"),
        ) else {
            eprintln!("e2fsck or debugfs is not installed; skipping");
            return;
        };
        let out = std::process::Command::new(debugfs)
            .args(["-R", "htree /usr/lib/extension-release.d"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("Root node dump"));
        let fs = open(fixture::source(&img)).unwrap();
        assert_eq!(
            fs.xattr(Path::new(xattr_fixture::RELEASE), xattr_fixture::STRICT, 99)
                .unwrap()
                .unwrap(),
            b"false"
        );
        let filler = Path::new("/usr/lib/extension-release.d/filler-with-a-longer-name-0599");
        assert_eq!(fs.xattr(filler, xattr_fixture::STRICT, 99).unwrap(), None);
    }

    #[test]
    fn damaged_images_do_not_panic() {
        let Some(built) = mkfs(&[]) else { return };
        fixture::check_corrupt(&built, open);
    }

    #[test]
    fn refuses_inline_data_clearly() {
        let Some(built) = mkfs(&["-O", "inline_data"]) else {
            return;
        };
        match open(fixture::source(&built.img)) {
            Err(FsError::Unsupported(m)) => assert!(m.contains("inline_data"), "{m}"),
            r => panic!("expected Unsupported, got {:?}", r.err()),
        }
    }

    #[test]
    fn small_inodes() {
        // With checksums ext4-view cannot read them: say so. Without, it can.
        let Some(built) = mkfs(&["-I", "128"]) else {
            return;
        };
        match open(fixture::source(&built.img)) {
            Err(FsError::Unsupported(m)) => assert!(m.contains("128-byte inodes"), "{m}"),
            r => panic!("expected Unsupported, got {:?}", r.err()),
        }
        let Some(built) = mkfs(&["-I", "128", "-O", "^metadata_csum"]) else {
            return;
        };
        fixture::check_image(&built, open);
    }

    #[test]
    fn a_spent_read_budget_is_an_error() {
        let Some(built) = mkfs(&[]) else { return };
        let r = open_with_budget(fixture::source(&built.img), 0);
        assert!(matches!(r, Err(FsError::Corrupt(m)) if m.contains("read for one request")));
        let fs = open_with_budget(fixture::source(&built.img), 128 * 1024).unwrap();
        let big = Path::new(fixture::UNITS).join("big.service");
        assert_eq!(fs.lstat(&big).unwrap(), Some(FileKind::File));
        let r = fs.read_file(&big, MAX_FILE_BYTES);
        assert!(matches!(r, Err(FsError::Corrupt(m)) if m.contains("read for one request")));
        // The budget is per call: the next one starts afresh.
        assert!(fs.read_file(Path::new("/usr/lib/os-release"), 100).is_ok());
    }

    /// A directory claiming 4 GiB. Past its one block this one is a hole, which ext4-view
    /// rejects quickly; extents mapping it all onto real blocks would have it scan them.
    #[test]
    fn refuses_a_huge_directory() {
        let Some(built) = mkfs(&[]) else { return };
        let Some(debugfs) = fixture::tool("debugfs") else {
            eprintln!("debugfs is not installed; skipping");
            return;
        };
        let status = std::process::Command::new(debugfs)
            .args(["-w", "-R", "sif /usr/lib/systemd/system size 0x100000000"])
            .arg(&built.img)
            .output()
            .unwrap()
            .status;
        assert!(status.success());
        let fs = open(fixture::source(&built.img)).unwrap();
        let units = Path::new(fixture::UNITS);
        assert!(matches!(
            fs.lstat(units),
            Err(FsError::TooLarge {
                what: "directory",
                ..
            })
        ));
        assert!(matches!(
            fs.read_dir(units),
            Err(FsError::TooLarge {
                what: "directory",
                ..
            })
        ));
        assert_eq!(
            fs.lstat(Path::new("/usr/lib")).unwrap(),
            Some(FileKind::Dir)
        );
    }

    /// What a call answered, errors by kind (their wording is each reader's own).
    fn outcome<T: fmt::Debug>(r: Result<T, FsError>) -> String {
        match r {
            Ok(v) => format!("{v:?}"),
            Err(FsError::Corrupt(_)) => "Corrupt".into(),
            Err(FsError::Unsupported(_)) => "Unsupported".into(),
            Err(FsError::Io(_)) => "Io".into(),
            Err(e) => format!("{e:?}"),
        }
    }

    /// Every answer a reader gives about the tree below `dir`, in order.
    fn answers(fs: &dyn Fs, dir: &Path, depth: usize, out: &mut Vec<String>) {
        let mut entries = match fs.read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => return out.push(format!("{}: {}", dir.display(), outcome::<()>(Err(e)))),
        };
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(format!("{}: {entries:?}", dir.display()));
        for name in [&b"absent"[..], b"absent/below"] {
            let path = dir.join(std::ffi::OsStr::from_bytes(name));
            out.push(format!("{}: {}", path.display(), outcome(fs.lstat(&path))));
        }
        for e in entries {
            let path = dir.join(std::ffi::OsStr::from_bytes(&e.name));
            out.push(format!(
                "{}: {} {} {} {} {}",
                path.display(),
                outcome(fs.lstat(&path)),
                outcome(fs.read_link(&path)),
                outcome(fs.read_file(&path, MAX_FILE_BYTES)),
                outcome(fs.xattr(&path, xattr_fixture::STRICT, 99)),
                outcome(fs.xattr(&path, "security.selinux", 99)),
            ));
            if e.kind == FileKind::Dir && depth < 8 {
                answers(fs, &path, depth + 1, out);
            }
        }
    }

    /// ext4-view and the direct reader say the same of every entry, in every layout, with
    /// hashed directories.
    #[test]
    fn both_readers_agree() {
        for extra in LAYOUTS {
            let Some(built) = mkfs_xattrs(extra) else {
                return;
            };
            let tree = xattr_fixture::add_fillers(&built, "/usr/lib/extension-release.d", 300);
            let img = built.dir.path().join("many.ext4");
            let mut args = vec!["-E", "root_owner=0:0"];
            args.extend_from_slice(extra);
            // Indexed where e2fsck is installed, as a long-lived file system has it.
            mkfs_indexed(&tree, &img, &args);
            for img in [&built.img, &img] {
                let src = fixture::source(img);
                let sb = check_superblock(&src).unwrap();
                let view = open_view(src.clone(), &sb, READ_BUDGET).unwrap();
                let direct = ext4_direct::Direct::open(src, &sb, READ_BUDGET).unwrap();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                answers(&*view, Path::new("/"), 0, &mut a);
                answers(&direct, Path::new("/"), 0, &mut b);
                assert!(a.len() > 20, "{a:?}");
                for (a, b) in a.iter().zip(&b) {
                    assert_eq!(a, b, "{extra:?}");
                }
                assert_eq!(a.len(), b.len());
            }
        }
    }

    /// Without metadata checksums a flipped byte is not caught by a checksum: it reaches
    /// the parsers of directories, extents and block maps.
    #[test]
    fn damaged_images_without_checksums_do_not_panic() {
        for extra in [&["-O", "^metadata_csum"][..], &["-t", "ext2"]] {
            let Some(built) = mkfs(extra) else { return };
            fixture::check_corrupt(&built, open);
        }
    }

    /// Where debugfs says `what` (an inode, `imap`; a directory's blocks, `blocks`) is.
    fn debugfs(img: &Path, request: &str) -> Option<String> {
        let out = std::process::Command::new(fixture::tool("debugfs")?)
            .args(["-R", request])
            .arg(img)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn flip(img: &Path, at: u64) {
        let mut data = std::fs::read(img).unwrap();
        let at = usize::try_from(at).unwrap();
        data[at] ^= 0x20;
        std::fs::write(img, data).unwrap();
    }

    /// A byte changed in an inode or a directory block is caught by its checksum, by the
    /// direct reader as by ext4-view.
    #[test]
    fn checksums_are_verified() {
        let Some(built) = mkfs(&[]) else { return };
        let Some(blocks) = debugfs(&built.img, &format!("blocks {}", fixture::UNITS)) else {
            eprintln!("debugfs is not installed; skipping");
            return;
        };
        let block: u64 = blocks.split_whitespace().next().unwrap().parse().unwrap();
        let imap = debugfs(&built.img, "imap /usr/lib/os-release").unwrap();
        // "Inode 14 is part of block group 0\n\tlocated at block 37, offset 0x0d00"
        let words: Vec<&str> = imap.split_whitespace().collect();
        let at = words.iter().rposition(|w| *w == "block").unwrap();
        let inode_block: u64 = words[at + 1].trim_end_matches(',').parse().unwrap();
        let offset = u64::from_str_radix(words[at + 3].trim_start_matches("0x"), 16).unwrap();
        // 1 KiB blocks (8 MiB image); the entry after "." and ".." holds a name from 32.
        flip(&built.img, block * 1024 + 33);
        flip(&built.img, inode_block * 1024 + offset + 0x10);
        let src = fixture::source(&built.img);
        let sb = check_superblock(&src).unwrap();
        let direct = ext4_direct::Direct::open(src.clone(), &sb, READ_BUDGET).unwrap();
        let view = open_view(src, &sb, READ_BUDGET).unwrap();
        for fs in [&direct as &dyn Fs, &*view] {
            assert!(matches!(
                fs.read_dir(Path::new(fixture::UNITS)),
                Err(FsError::Corrupt(_))
            ));
            assert!(matches!(
                fs.lstat(Path::new("/usr/lib/os-release")),
                Err(FsError::Corrupt(_))
            ));
            assert_eq!(
                fs.lstat(Path::new("/usr/lib")).unwrap(),
                Some(FileKind::Dir)
            );
        }
        match direct.lstat(Path::new("/usr/lib/os-release")) {
            Err(FsError::Corrupt(m)) => assert!(m.contains("invalid checksum for inode"), "{m}"),
            r => panic!("{r:?}"),
        }
    }

    /// A superblock claiming more blocks than the image holds: ext4-view would reserve
    /// memory for its descriptors before noticing.
    #[test]
    fn refuses_a_superblock_larger_than_the_image() {
        let Some(built) = mkfs(&[]) else { return };
        let mut data = std::fs::read(&built.img).unwrap();
        data[1024 + 0x150..1024 + 0x154].copy_from_slice(&[0xff, 0xff, 0, 0]);
        let path = built.dir.path().join("huge");
        std::fs::write(&path, &data).unwrap();
        match open(fixture::source(&path)) {
            Err(FsError::Corrupt(m)) => assert!(m.contains("the superblock claims"), "{m}"),
            r => panic!("expected Corrupt, got {:?}", r.err()),
        }
        assert!(matches!(
            open(fixture::source(&path).slice(0, 1000).unwrap()),
            Err(FsError::Corrupt(_))
        ));
    }
}
