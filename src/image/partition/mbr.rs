//! MBR partition tables, as far as systemd reads them for an image: one bootable Linux
//! partition.

use super::field::{bytes, le32, read_err};
use crate::image::source::Source;

const MBR_SECTOR: u16 = 512;
const MBR_TABLE_OFFSET: usize = 446;
const MBR_ENTRY_SIZE: usize = 16;
const MBR_BOOTABLE: u8 = 0x80;
const MBR_TYPE_LINUX: u8 = 0x83;
const MBR_TYPE_PROTECTIVE: u8 = 0xEE;
const MBR_TYPES_EXTENDED: [u8; 3] = [0x05, 0x0F, 0x85];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MbrEntry {
    pub(super) number: u32,
    status: u8,
    kind: u8,
    /// Byte range `[offset, end)` in the image.
    pub(super) offset: u64,
    pub(super) end: u64,
}

/// The partition an MBR points at, as systemd uses it: a single bootable Linux (0x83)
/// partition. `None` when the first sector does not look like an MBR.
pub(super) fn read_mbr(src: &Source) -> Result<Option<MbrEntry>, String> {
    let sector = src.read_vec(0, usize::from(MBR_SECTOR)).map_err(read_err)?;
    if bytes::<2>(&sector, 510) != Some([0x55, 0xAA]) {
        return Ok(None);
    }
    let mut entries = Vec::new();
    for (i, number) in (1..=4u32).enumerate() {
        let off = MBR_TABLE_OFFSET + i * MBR_ENTRY_SIZE;
        let (Some([status]), Some([kind]), Some(start), Some(sectors)) = (
            bytes::<1>(&sector, off),
            bytes::<1>(&sector, off + 4),
            le32(&sector, off + 8),
            le32(&sector, off + 12),
        ) else {
            return Ok(None);
        };
        // Anything else here is boot code or a boot sector, not a partition table.
        if status != 0 && status != MBR_BOOTABLE {
            return Ok(None);
        }
        // The kernel and libblkid skip empty slots and zero-length partitions alike.
        if kind == 0 || sectors == 0 {
            continue;
        }
        let offset = u64::from(start).checked_mul(u64::from(MBR_SECTOR));
        let len = u64::from(sectors).checked_mul(u64::from(MBR_SECTOR));
        let Some((offset, end)) = offset
            .zip(len)
            .and_then(|(o, l)| Some((o, o.checked_add(l)?)))
        else {
            return Err(format!("MBR partition {number} is out of range"));
        };
        entries.push(MbrEntry {
            number,
            status,
            kind,
            offset,
            end,
        });
    }
    if entries.is_empty() {
        return Ok(None);
    }
    if entries.iter().any(|e| e.kind == MBR_TYPE_PROTECTIVE) {
        return Err(
            "protective MBR found, but no valid GPT header at byte 512 or 4096".to_string(),
        );
    }
    for e in &entries {
        if e.end > src.len() {
            return Err(format!(
                "MBR partition {} extends past the end of the image",
                e.number
            ));
        }
        if MBR_TYPES_EXTENDED.contains(&e.kind) {
            return Err(format!(
                "MBR partition {} is an extended partition, which is not supported",
                e.number
            ));
        }
    }
    for (i, a) in entries.iter().enumerate() {
        for b in entries.iter().skip(i.saturating_add(1)) {
            if a.offset < b.end && b.offset < a.end {
                return Err(format!(
                    "MBR partitions {} and {} overlap",
                    a.number, b.number
                ));
            }
        }
    }
    let linux: Vec<&MbrEntry> = entries
        .iter()
        .filter(|e| e.kind == MBR_TYPE_LINUX)
        .collect();
    // systemd's dissect_image() only takes Linux partitions with the bootable flag.
    let bootable: Vec<&MbrEntry> = linux
        .iter()
        .copied()
        .filter(|e| e.status == MBR_BOOTABLE)
        .collect();
    match (bootable.as_slice(), linux.first()) {
        ([only], _) => Ok(Some(**only)),
        ([], Some(first)) => Err(format!(
            "MBR Linux partition {} is not marked bootable, which systemd requires",
            first.number
        )),
        ([], None) => Err("MBR has no Linux (type 0x83) partition".to_string()),
        (several, _) => {
            let numbers: Vec<String> = several.iter().map(|e| e.number.to_string()).collect();
            Err(format!(
                "multiple generic Linux partitions (MBR partitions {})",
                numbers.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    fn read(img: &[u8]) -> Result<Option<MbrEntry>, String> {
        read_mbr(&source(img))
    }

    #[test]
    fn mbr_errors() {
        let len = 128 * 512;
        let cases: &[(&[MbrRow], &str)] = &[
            (
                &[(0x00, 0x83, 64, 64)],
                "MBR Linux partition 1 is not marked bootable, which systemd requires",
            ),
            (
                &[(0x80, 0x83, 1, 63), (0x80, 0x83, 64, 64)],
                "multiple generic Linux partitions (MBR partitions 1, 2)",
            ),
            (
                &[(0x80, 0x83, 64, 65)],
                "MBR partition 1 extends past the end of the image",
            ),
            (
                &[(0x80, 0x83, u32::MAX, u32::MAX)],
                "MBR partition 1 extends past the end of the image",
            ),
            (
                &[(0x00, 0xEE, 1, 127)],
                "protective MBR found, but no valid GPT header at byte 512 or 4096",
            ),
            (
                &[(0x80, 0x83, 1, 63), (0x00, 0x05, 64, 64)],
                "MBR partition 2 is an extended partition, which is not supported",
            ),
            (
                &[(0x80, 0x83, 1, 63), (0x00, 0x82, 60, 64)],
                "MBR partitions 1 and 2 overlap",
            ),
            (
                &[(0x00, 0x0c, 1, 127)],
                "MBR has no Linux (type 0x83) partition",
            ),
        ];
        for &(entries, want) in cases {
            assert_eq!(read(&mbr(entries, len)), Err(want.to_string()));
        }
        // A bad status byte means this is not an MBR.
        let img = mbr(&[(0x80, 0x83, 1, 63), (0x01, 0, 0, 0)], len);
        assert_eq!(read(&img), Ok(None));
    }
}
