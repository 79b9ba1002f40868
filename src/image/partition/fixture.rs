//! GPT and MBR tables built in memory, for the tests of the partition readers.

use std::io::Write;

use super::field::{le32, le64};
use super::gpt::{GPT_SIGNATURE, crc32};
use super::types::{PART_TYPES, Role};
use crate::arch::native_arch;
use crate::image::source::Source;

pub(super) const GENERIC: u128 = 0x0fc63daf_8483_4772_8e79_3d69d8477de4;
pub(super) const ESP: u128 = 0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b;

pub(super) fn native() -> &'static str {
    native_arch().expect("tests need a DPS architecture")
}

/// An architecture this build never picks.
pub(super) fn foreign() -> &'static str {
    if native() == "arm64" {
        "x86-64"
    } else {
        "arm64"
    }
}

pub(super) fn ty(role: Role, arch: &str) -> u128 {
    PART_TYPES
        .iter()
        .find(|t| t.role == role && t.arch == Some(arch))
        .map(|t| t.guid)
        .unwrap()
}

pub(super) fn source(bytes: &[u8]) -> Source {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    Source::new(file, bytes.len() as u64)
}

pub(super) struct TPart {
    pub(super) ty: u128,
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) attrs: u64,
    pub(super) label: &'static str,
}

pub(super) fn part(ty: u128, first: u64, last: u64, label: &'static str) -> TPart {
    TPart {
        ty,
        first,
        last,
        attrs: 0,
        label,
    }
}

pub(super) struct Layout {
    pub(super) ss: u64,
    pub(super) sectors: u64,
    pub(super) entry_size: u32,
    pub(super) entry_count: u32,
    pub(super) parts: Vec<TPart>,
}

impl Layout {
    /// 128 KiB for 512-byte sectors, 512 KiB for 4096-byte sectors.
    pub(super) fn new(ss: u64, parts: Vec<TPart>) -> Layout {
        let sectors = if ss == 512 { 256 } else { 128 };
        Layout {
            ss,
            sectors,
            entry_size: 128,
            entry_count: 128,
            parts,
        }
    }

    fn array_sectors(&self) -> u64 {
        (u64::from(self.entry_count) * u64::from(self.entry_size)).div_ceil(self.ss)
    }

    pub(super) fn first_usable(&self) -> u64 {
        2 + self.array_sectors()
    }

    fn last_usable(&self) -> u64 {
        self.sectors.saturating_sub(2 + self.array_sectors())
    }

    pub(super) fn build(&self) -> Vec<u8> {
        let ss = usize::try_from(self.ss).unwrap();
        let mut img = vec![0u8; ss * usize::try_from(self.sectors).unwrap()];
        // Protective MBR.
        img[446 + 4] = 0xEE;
        img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        let pmbr_len = u32::try_from(self.sectors - 1).unwrap_or(u32::MAX);
        img[446 + 12..446 + 16].copy_from_slice(&pmbr_len.to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xAA;

        for (i, p) in self.parts.iter().enumerate() {
            let off = 2 * ss + i * self.entry_size as usize;
            put_guid(&mut img, off, p.ty);
            put_guid(
                &mut img,
                off + 16,
                0x1234_5678_9abc_4def_8000_0000_0000_0000 + i as u128,
            );
            img[off + 32..off + 40].copy_from_slice(&p.first.to_le_bytes());
            img[off + 40..off + 48].copy_from_slice(&p.last.to_le_bytes());
            img[off + 48..off + 56].copy_from_slice(&p.attrs.to_le_bytes());
            for (k, unit) in p.label.encode_utf16().take(36).enumerate() {
                img[off + 56 + 2 * k..off + 58 + 2 * k].copy_from_slice(&unit.to_le_bytes());
            }
        }

        let h = ss;
        img[h..h + 8].copy_from_slice(GPT_SIGNATURE);
        img[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        img[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
        img[h + 24..h + 32].copy_from_slice(&1u64.to_le_bytes());
        img[h + 32..h + 40].copy_from_slice(&(self.sectors - 1).to_le_bytes());
        img[h + 40..h + 48].copy_from_slice(&self.first_usable().to_le_bytes());
        img[h + 48..h + 56].copy_from_slice(&self.last_usable().to_le_bytes());
        put_guid(&mut img, h + 56, 0xfeed_face_0000_4000_8000_0000_0000_0001);
        img[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        img[h + 80..h + 84].copy_from_slice(&self.entry_count.to_le_bytes());
        img[h + 84..h + 88].copy_from_slice(&self.entry_size.to_le_bytes());
        resign(&mut img, self.ss);
        img
    }
}

// The fields are the GUID's bit ranges: cutting the value is the point.
#[allow(clippy::cast_possible_truncation)]
pub(super) fn put_guid(buf: &mut [u8], off: usize, g: u128) {
    buf[off..off + 4].copy_from_slice(&((g >> 96) as u32).to_le_bytes());
    buf[off + 4..off + 6].copy_from_slice(&((g >> 80) as u16).to_le_bytes());
    buf[off + 6..off + 8].copy_from_slice(&((g >> 64) as u16).to_le_bytes());
    buf[off + 8..off + 16].copy_from_slice(&(g as u64).to_be_bytes());
}

pub(super) fn put32(img: &mut [u8], off: usize, v: u32) {
    img[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Recompute both CRCs from whatever the header now says, so that mutated tables get
/// past the checksums. Must itself survive any header contents.
pub(super) fn resign(img: &mut [u8], ss: u64) {
    let h = usize::try_from(ss).unwrap();
    let field32 = |img: &[u8], off| le32(img, h + off).unwrap_or(0);
    let lba = le64(img, h + 72).unwrap_or(0);
    let len = u64::from(field32(img, 80)) * u64::from(field32(img, 84));
    if len <= 8 << 20
        && let Some(start) = lba.checked_mul(ss)
        && let Some(end) = start.checked_add(len)
        && end <= img.len() as u64
    {
        let crc = crc32(&img[usize::try_from(start).unwrap()..usize::try_from(end).unwrap()]);
        put32(img, h + 88, crc);
    }
    let hsize = (field32(img, 12) as usize)
        .min(h)
        .min(img.len().saturating_sub(h));
    if hsize >= 20 {
        put32(img, h + 16, 0);
        let crc = crc32(&img[h..h + hsize]);
        put32(img, h + 16, crc);
    }
}

/// Status byte, type, first sector, sector count.
pub(super) type MbrRow = (u8, u8, u32, u32);

pub(super) fn mbr(entries: &[MbrRow], len: usize) -> Vec<u8> {
    let mut img = vec![0u8; len];
    for (i, &(status, kind, start, sectors)) in entries.iter().enumerate() {
        let off = 446 + 16 * i;
        img[off] = status;
        img[off + 4] = kind;
        img[off + 8..off + 12].copy_from_slice(&start.to_le_bytes());
        img[off + 12..off + 16].copy_from_slice(&sectors.to_le_bytes());
    }
    img[510] = 0x55;
    img[511] = 0xAA;
    img
}

/// xorshift64*: enough randomness for mutation testing without a dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index below `len`: `below` for slices.
    pub(super) fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap()
    }

    /// A random byte: the low one of the next value.
    pub(super) fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}
