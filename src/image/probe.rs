//! Recognising a file system by its magic numbers.

use super::source::Source;

/// A file system, or what else a byte range can hold. Only the first three are read; the
/// others are recognised so that the error can name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    /// ext4 (and ext2 and ext3, which share its magic number).
    Ext4,
    /// squashfs.
    Squashfs,
    /// EROFS.
    Erofs,
    /// btrfs: not read.
    Btrfs,
    /// XFS: not read.
    Xfs,
    /// FAT: not read.
    Vfat,
    /// F2FS: not read.
    F2fs,
    /// A LUKS encrypted volume: not read.
    Luks,
    /// Nothing recognised.
    Unknown,
}

impl FsType {
    /// The name `blkid` and `mount -t` use, except that LUKS is just "LUKS".
    pub fn name(&self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Squashfs => "squashfs",
            FsType::Erofs => "erofs",
            FsType::Btrfs => "btrfs",
            FsType::Xfs => "xfs",
            FsType::Vfat => "vfat",
            FsType::F2fs => "f2fs",
            FsType::Luks => "LUKS",
            FsType::Unknown => "unknown",
        }
    }
}

/// Every magic number except btrfs' lies in this many leading bytes.
const HEAD_BYTES: usize = 4096;
const BTRFS_MAGIC_OFFSET: u64 = 65_600;

/// Which file system starts at the beginning of `src`.
pub fn sniff(src: &Source) -> std::io::Result<FsType> {
    // Clamped to the window, so a short image gives a short buffer and every magic number
    // past its end simply does not match.
    let head = src.read_vec(0, HEAD_BYTES)?;
    let has = |offset: usize, magic: &[u8]| -> bool {
        offset
            .checked_add(magic.len())
            .and_then(|end| head.get(offset..end))
            .is_some_and(|bytes| bytes == magic)
    };

    // LUKS first: its header sits where a file system would be, and it hides whatever is
    // inside it.
    if has(0, b"LUKS\xba\xbe") {
        return Ok(FsType::Luks);
    }
    if has(0, b"hsqs") {
        return Ok(FsType::Squashfs);
    }
    if has(0, b"XFSB") {
        return Ok(FsType::Xfs);
    }
    if has(1024, &0xE0F5_E1E2u32.to_le_bytes()) {
        return Ok(FsType::Erofs);
    }
    if has(1024, &0xF2F5_2010u32.to_le_bytes()) {
        return Ok(FsType::F2fs);
    }
    if has(1080, &0xEF53u16.to_le_bytes()) {
        return Ok(FsType::Ext4);
    }
    // `read_vec` refuses a start past the end, so short images are checked first.
    if src.len() > BTRFS_MAGIC_OFFSET && src.read_vec(BTRFS_MAGIC_OFFSET, 8)? == b"_BHRfS_M" {
        return Ok(FsType::Btrfs);
    }
    // The 0x55AA signature alone also marks an MBR; only the FAT type string tells a FAT
    // boot sector apart from a partition table.
    if has(510, &[0x55, 0xAA])
        && (has(54, b"FAT12   ") || has(54, b"FAT16   ") || has(82, b"FAT32   "))
    {
        return Ok(FsType::Vfat);
    }
    Ok(FsType::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn source(bytes: &[u8]) -> Source {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        Source::new(file, bytes.len() as u64)
    }

    fn image_with(len: usize, offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        buf[offset..offset + magic.len()].copy_from_slice(magic);
        buf
    }

    #[test]
    fn recognises_each_magic() {
        let cases: &[(usize, &[u8], FsType)] = &[
            (0, b"hsqs", FsType::Squashfs),
            (1024, &[0xE2, 0xE1, 0xF5, 0xE0], FsType::Erofs),
            (1080, &[0x53, 0xEF], FsType::Ext4),
            (0, b"XFSB", FsType::Xfs),
            (65_600, b"_BHRfS_M", FsType::Btrfs),
            (1024, &[0x10, 0x20, 0xF5, 0xF2], FsType::F2fs),
            (0, b"LUKS\xba\xbe", FsType::Luks),
        ];
        for &(offset, magic, want) in cases {
            let img = image_with(70_000, offset, magic);
            assert_eq!(sniff(&source(&img)).unwrap(), want, "{}", want.name());
        }
    }

    #[test]
    fn vfat_needs_signature_and_type_string() {
        let mut img = vec![0u8; 4096];
        img[510] = 0x55;
        img[511] = 0xAA;
        assert_eq!(sniff(&source(&img)).unwrap(), FsType::Unknown);
        for (offset, label) in [(54, b"FAT12   "), (54, b"FAT16   "), (82, b"FAT32   ")] {
            let mut with_label = img.clone();
            with_label[offset..offset + 8].copy_from_slice(label);
            assert_eq!(sniff(&source(&with_label)).unwrap(), FsType::Vfat);
            with_label[511] = 0;
            assert_eq!(sniff(&source(&with_label)).unwrap(), FsType::Unknown);
        }
    }

    #[test]
    fn short_and_empty_images_are_unknown() {
        assert_eq!(sniff(&source(&[])).unwrap(), FsType::Unknown);
        assert_eq!(sniff(&source(b"hsq")).unwrap(), FsType::Unknown);
        // The ext4 magic cut in half by the end of the image.
        let img = image_with(1081, 1080, &[0x53]);
        assert_eq!(sniff(&source(&img)).unwrap(), FsType::Unknown);
        let img = image_with(65_604, 65_600, b"_BHR");
        assert_eq!(sniff(&source(&img)).unwrap(), FsType::Unknown);
        // Exactly long enough still counts.
        assert_eq!(sniff(&source(b"hsqs")).unwrap(), FsType::Squashfs);
    }

    #[test]
    fn sniffs_inside_a_window() {
        let mut img = vec![0u8; 8192];
        img[4096..4100].copy_from_slice(b"hsqs");
        let whole = source(&img);
        assert_eq!(sniff(&whole).unwrap(), FsType::Unknown);
        let part = whole.slice(4096, 4096).unwrap();
        assert_eq!(sniff(&part).unwrap(), FsType::Squashfs);
    }

    #[test]
    fn names() {
        assert_eq!(FsType::Ext4.name(), "ext4");
        assert_eq!(FsType::Luks.name(), "LUKS");
        assert_eq!(FsType::Vfat.name(), "vfat");
        assert_eq!(FsType::Unknown.name(), "unknown");
    }
}
