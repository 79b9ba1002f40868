//! Editing image files in place: bytes at an offset, little-endian fields, and the size of
//! one file's inode in an erofs or squashfs image.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::io_context;

/// Reads `len` bytes at `offset` (in place: images are never loaded whole).
pub fn read_at(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).map_err(|e| io_context(path.display(), &e))?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).map_err(|e| {
        io_context(
            format!("reading {len} bytes at {offset} of {}", path.display()),
            &e,
        )
    })?;
    Ok(buf)
}

/// A size or offset from a case description as a `usize`, or why not.
pub fn to_usize(n: u64) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| format!("{n} does not fit in a usize"))
}

/// Writes `bytes` at `offset` in place; the offset must lie inside the file.
pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_context(path.display(), &e))?;
    let len = f
        .metadata()
        .map_err(|e| io_context(path.display(), &e))?
        .len();
    if offset + bytes.len() as u64 > len {
        return Err(format!(
            "writing {} bytes at {offset} runs past the end of {} ({len} bytes)",
            bytes.len(),
            path.display()
        ));
    }
    f.write_all_at(bytes, offset)
        .map_err(|e| io_context(format!("writing {}", path.display()), &e))
}

pub(super) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

pub(super) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The `erofs-set PATH size VALUE` verb.
pub(super) fn erofs_set_size(image: &Path, path: &str, value: u64) -> Result<(), String> {
    let output = Command::new("dump.erofs")
        .arg(format!("--path={path}"))
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running dump.erofs: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let nid: u64 = text
        .split_whitespace()
        .skip_while(|w| *w != "NID:")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("dump.erofs --path={path} gave no NID:\n{text}"))?;
    let sb = read_at(image, 1024, 128)?;
    let blkszbits = u32::from(sb[12]);
    let meta_blkaddr = u64::from(le_u32(&sb, 40));
    let inode = (meta_blkaddr << blkszbits) + nid * 32;
    let format = read_at(image, inode, 2)?;
    if format[0] & 1 == 0 {
        // Compact inode: 32-bit size.
        let value = u32::try_from(value).map_err(|_| "a compact inode's size has 32 bits")?;
        write_at(image, inode + 8, &value.to_le_bytes())
    } else {
        write_at(image, inode + 8, &value.to_le_bytes())
    }
}

/// The `sqfs-file-size OLD NEW` verb: finds, in an uncompressed inode table, the basic file
/// inode (type 2) whose size is OLD.
pub(super) fn sqfs_file_size(image: &Path, old: u64, new: u64) -> Result<(), String> {
    let sb = read_at(image, 0, 96)?;
    let flags = u16::from_le_bytes([sb[24], sb[25]]);
    if flags & 0x1 == 0 {
        return Err("the inode table is compressed (build with mksquashfs -noI)".into());
    }
    let (start, end) = (le_u64(&sb, 64), le_u64(&sb, 72));
    let table = read_at(image, start, to_usize(end - start)?)?;
    // Metadata blocks: a 2-byte header, then up to 8 KiB.
    let mut inodes = Vec::new();
    let mut map = Vec::new();
    let mut at = 0usize;
    while at + 2 <= table.len() {
        let header = u16::from_le_bytes([table[at], table[at + 1]]);
        let len = usize::from(header & 0x7fff);
        for i in 0..len.min(table.len() - at - 2) {
            inodes.push(table[at + 2 + i]);
            map.push(start + (at + 2 + i) as u64);
        }
        at += 2 + len;
    }
    let old32 = u32::try_from(old).map_err(|_| "OLD must fit in 32 bits")?;
    let new32 = u32::try_from(new).map_err(|_| "NEW must fit in 32 bits (basic inode)")?;
    // Basic file inode: type u16, then 14 bytes of common header, blocks_start, fragment,
    // offset, file_size (at 28).
    let hits: Vec<usize> = (0..inodes.len().saturating_sub(32))
        .filter(|&i| u16::from_le_bytes([inodes[i], inodes[i + 1]]) == 2)
        .filter(|&i| le_u32(&inodes, i + 28) == old32)
        .collect();
    let [hit] = hits.as_slice() else {
        return Err(format!(
            "{} basic file inodes of {old} bytes, expected exactly one",
            hits.len()
        ));
    };
    for (k, b) in new32.to_le_bytes().iter().enumerate() {
        write_at(image, map[hit + 28 + k], &[*b])?;
    }
    Ok(())
}
