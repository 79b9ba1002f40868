//! GPT, as the UEFI specification lays it out: the header and the partition entries, for
//! 512- and 4096-byte sectors. Everything read is untrusted: sizes and offsets are checked
//! against the image before use, and nothing is allocated from an unchecked size field.

use super::field::{bytes, le16, le32, le64, read_err};
use super::types::{PartType, guid_text, part_type};
use crate::image::source::Source;

/// A GUID as stored on disk: the first three fields little-endian, the rest big-endian.
fn guid_at(buf: &[u8], off: usize) -> Option<u128> {
    let d1 = le32(buf, off)?;
    let d2 = le16(buf, off.checked_add(4)?)?;
    let d3 = le16(buf, off.checked_add(6)?)?;
    let d4: [u8; 8] = bytes(buf, off.checked_add(8)?)?;
    Some(
        (u128::from(d1) << 96)
            | (u128::from(d2) << 80)
            | (u128::from(d3) << 64)
            | u128::from(u64::from_be_bytes(d4)),
    )
}

/// The CRC-32 of IEEE 802.3 (zlib's `crc32`), which the UEFI specification uses for GPT.
pub(super) fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

pub(super) const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Size of the header fields defined by UEFI 2.x; `header_size` may be larger.
const GPT_HEADER_MIN: u32 = 92;
/// The CRC of the header is computed with its own field zeroed.
const GPT_HEADER_CRC_OFFSET: usize = 16;
const GPT_ENTRY_MIN: u32 = 128;
const GPT_ENTRY_MAX: u32 = 4096;
/// Real tables have 128 entries; anything near this is hostile or broken.
const GPT_MAX_ENTRIES: u32 = 16_384;
/// Bounds the one allocation whose size comes from the disk.
const GPT_MAX_ARRAY_BYTES: u64 = 4 << 20;
const GPT_LABEL_OFFSET: usize = 56;
const GPT_LABEL_UNITS: usize = 36;
/// UEFI 2.x "GPT partition entry attributes": bit 63 is the DPS "do not mount
/// automatically" flag, honoured for root, /usr and generic partitions.
pub(super) const GPT_FLAG_NO_AUTO: u64 = 1 << 63;

/// Header fields after the signature check.
struct GptHeader {
    header_size: u32,
    header_crc: u32,
    my_lba: u64,
    first_usable: u64,
    last_usable: u64,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

impl GptHeader {
    fn parse(b: &[u8]) -> Option<GptHeader> {
        Some(GptHeader {
            header_size: le32(b, 12)?,
            header_crc: le32(b, 16)?,
            my_lba: le64(b, 24)?,
            first_usable: le64(b, 40)?,
            last_usable: le64(b, 48)?,
            entries_lba: le64(b, 72)?,
            entry_count: le32(b, 80)?,
            entry_size: le32(b, 84)?,
            entries_crc: le32(b, 88)?,
        })
    }
}

/// A used GPT entry whose extent was checked against the image.
#[derive(Debug)]
pub(super) struct GptEntry {
    pub(super) number: u32,
    pub(super) type_guid: u128,
    /// The unique partition GUID, which a verity root hash names (see
    /// [`super::verity::verity_parts`]).
    pub(super) uuid: u128,
    pub(super) first_lba: u64,
    pub(super) last_lba: u64,
    pub(super) attrs: u64,
    pub(super) label: String,
}

impl GptEntry {
    pub(super) fn no_auto(&self) -> bool {
        self.attrs & GPT_FLAG_NO_AUTO != 0
    }

    pub(super) fn part_type(&self) -> Option<&'static PartType> {
        part_type(self.type_guid)
    }

    pub(super) fn type_text(&self) -> String {
        match self.part_type() {
            Some(t) => t.name.to_string(),
            None => guid_text(self.type_guid),
        }
    }
}

#[derive(Debug)]
pub(super) struct Gpt {
    pub(super) sector_size: u64,
    pub(super) entries: Vec<GptEntry>,
}

/// The GPT of the image, trying both sector sizes the way systemd's
/// `probe_sector_size()` does; `None` when there is no GPT signature at all.
pub(super) fn read_gpt(src: &Source) -> Result<Option<Gpt>, String> {
    let mut found: Option<Gpt> = None;
    let mut first_error = None;
    for sector_size in [512u16, 4096] {
        match read_gpt_at(src, sector_size) {
            Ok(None) => {}
            Ok(Some(gpt)) => {
                if found.is_some() {
                    return Err("valid GPT headers for both 512- and 4096-byte sectors".into());
                }
                found = Some(gpt);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (found, first_error) {
        (Some(gpt), _) => Ok(Some(gpt)),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(None),
    }
}

fn read_gpt_at(src: &Source, sector: u16) -> Result<Option<Gpt>, String> {
    let sector_size = u64::from(sector);
    if src.len() <= sector_size {
        return Ok(None);
    }
    // A header never exceeds its sector, so one read covers it.
    let sector = src
        .read_vec(sector_size, usize::from(sector))
        .map_err(read_err)?;
    if sector.first_chunk::<8>() != Some(GPT_SIGNATURE) {
        return Ok(None);
    }
    let hdr = GptHeader::parse(&sector).ok_or_else(|| {
        format!("GPT header at byte {sector_size} is cut off by the end of the image")
    })?;
    let at = format!("GPT header at byte {sector_size}");
    if hdr.header_size < GPT_HEADER_MIN || u64::from(hdr.header_size) > sector_size {
        return Err(format!(
            "{at} has an invalid size of {} bytes",
            hdr.header_size
        ));
    }
    let mut covered = sector
        .get(..hdr.header_size as usize)
        .ok_or_else(|| format!("{at} is cut off by the end of the image"))?
        .to_vec();
    if let Some(crc) = covered.get_mut(GPT_HEADER_CRC_OFFSET..GPT_HEADER_CRC_OFFSET + 4) {
        crc.fill(0);
    }
    if crc32(&covered) != hdr.header_crc {
        return Err(format!("{at} has a bad CRC32"));
    }
    if hdr.my_lba != 1 {
        return Err(format!(
            "{at} claims to be at LBA {} instead of 1",
            hdr.my_lba
        ));
    }

    let size = hdr.entry_size;
    if !(GPT_ENTRY_MIN..=GPT_ENTRY_MAX).contains(&size) || !size.is_power_of_two() {
        return Err(format!(
            "GPT partition entry size {size} is not 128 times a power of two up to {GPT_ENTRY_MAX}"
        ));
    }
    if hdr.entry_count > GPT_MAX_ENTRIES {
        return Err(format!(
            "GPT claims {} partition entries, more than the {GPT_MAX_ENTRIES} accepted",
            hdr.entry_count
        ));
    }
    let array_len = u64::from(hdr.entry_count).saturating_mul(u64::from(size));
    if array_len > GPT_MAX_ARRAY_BYTES {
        return Err(format!(
            "GPT partition entry array of {array_len} bytes is larger than {GPT_MAX_ARRAY_BYTES}"
        ));
    }
    if hdr.entries_lba < 2 {
        return Err(format!(
            "GPT partition entry array at LBA {} overlaps the header",
            hdr.entries_lba
        ));
    }
    let array_start = hdr.entries_lba.checked_mul(sector_size).ok_or_else(|| {
        format!(
            "GPT partition entry array LBA {} is out of range",
            hdr.entries_lba
        )
    })?;
    let array_end = array_start
        .checked_add(array_len)
        .filter(|&end| end <= src.len());
    if array_end.is_none() {
        return Err(format!(
            "GPT partition entry array ({array_len} bytes at byte {array_start}) extends past the end of the image ({} bytes)",
            src.len()
        ));
    }
    // At most GPT_MAX_ARRAY_BYTES, checked above.
    let mut array = vec![0u8; usize::try_from(array_len).map_err(|e| e.to_string())?];
    src.read_exact_at(&mut array, array_start)
        .map_err(read_err)?;
    if crc32(&array) != hdr.entries_crc {
        return Err("GPT partition entry array has a bad CRC32".to_string());
    }
    if hdr.first_usable > hdr.last_usable {
        return Err(format!(
            "GPT usable area is empty (first LBA {} after last LBA {})",
            hdr.first_usable, hdr.last_usable
        ));
    }

    let image_sectors = src.len() / sector_size;
    let mut entries = Vec::new();
    for (index, raw) in array.chunks_exact(size as usize).enumerate() {
        let (Some(type_guid), Some(uuid), Some(first_lba), Some(last_lba), Some(attrs)) = (
            guid_at(raw, 0),
            guid_at(raw, 16),
            le64(raw, 32),
            le64(raw, 40),
            le64(raw, 48),
        ) else {
            // chunks_exact yields at least GPT_ENTRY_MIN bytes, so this is unreachable.
            return Err("GPT partition entry is too short".to_string());
        };
        if type_guid == 0 {
            continue;
        }
        // index < GPT_MAX_ENTRIES, so it fits.
        let number = u32::try_from(index).unwrap_or(u32::MAX).saturating_add(1);
        if first_lba > last_lba {
            return Err(format!(
                "partition {number} ends (LBA {last_lba}) before it starts (LBA {first_lba})"
            ));
        }
        if last_lba >= image_sectors {
            return Err(format!(
                "partition {number} extends past the end of the image"
            ));
        }
        if first_lba < hdr.first_usable || last_lba > hdr.last_usable {
            return Err(format!(
                "partition {number} (LBA {first_lba}..={last_lba}) lies outside the usable area (LBA {}..={})",
                hdr.first_usable, hdr.last_usable
            ));
        }
        entries.push(GptEntry {
            number,
            type_guid,
            uuid,
            first_lba,
            last_lba,
            attrs,
            label: label_at(raw),
        });
    }

    let mut by_start: Vec<&GptEntry> = entries.iter().collect();
    by_start.sort_by_key(|e| e.first_lba);
    // Sorted by start, any overlap shows up between neighbours.
    for pair in by_start.windows(2) {
        if let [a, b] = pair
            && b.first_lba <= a.last_lba
        {
            let (lo, hi) = (a.number.min(b.number), a.number.max(b.number));
            return Err(format!("partitions {lo} and {hi} overlap"));
        }
    }

    Ok(Some(Gpt {
        sector_size,
        entries,
    }))
}

/// The UTF-16LE partition name, up to its first NUL; unpaired surrogates become U+FFFD.
fn label_at(raw: &[u8]) -> String {
    let units = (0..GPT_LABEL_UNITS)
        .map_while(|i| le16(raw, GPT_LABEL_OFFSET + 2 * i))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::super::types::Role;
    use super::*;

    fn read(img: &[u8]) -> Result<Option<Gpt>, String> {
        read_gpt(&source(img))
    }

    fn err_of(read: Result<Option<Gpt>, String>) -> String {
        match read {
            Err(e) => e,
            Ok(gpt) => panic!("expected an error, got {gpt:?}"),
        }
    }

    /// The one table in `img`.
    fn table(img: &[u8]) -> Gpt {
        match read(img) {
            Ok(Some(gpt)) => gpt,
            other => panic!("expected a GPT, got {other:?}"),
        }
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn bad_header_crc() {
        let mut img = Layout::new(512, vec![part(GENERIC, 34, 127, "")]).build();
        img[512 + 16] ^= 1;
        assert_eq!(err_of(read(&img)), "GPT header at byte 512 has a bad CRC32");
        // A changed field with the old CRC is just as bad.
        let mut img = Layout::new(4096, vec![part(GENERIC, 8, 20, "")]).build();
        img[4096 + 40] ^= 1;
        assert_eq!(
            err_of(read(&img)),
            "GPT header at byte 4096 has a bad CRC32"
        );
    }

    #[test]
    fn bad_entries_crc() {
        let mut img = Layout::new(512, vec![part(GENERIC, 34, 127, "")]).build();
        img[1024 + 60] ^= 0x40;
        assert_eq!(
            err_of(read(&img)),
            "GPT partition entry array has a bad CRC32"
        );
    }

    #[test]
    fn entry_size_256() {
        let mut l = Layout::new(
            512,
            vec![
                part(ESP, 34, 63, ""),
                part(ty(Role::Root, native()), 64, 127, "x"),
            ],
        );
        l.entry_size = 256;
        l.entry_count = 64;
        let gpt = table(&l.build());
        let root = &gpt.entries[1];
        assert_eq!(
            (root.number, root.first_lba, root.label.as_str()),
            (2, 64, "x")
        );
    }

    #[test]
    fn entry_size_100_is_refused() {
        let mut l = Layout::new(512, vec![part(GENERIC, 34, 127, "")]);
        l.entry_size = 100;
        let e = err_of(read(&l.build()));
        assert!(e.starts_with("GPT partition entry size 100 "), "{e}");
        for bad in [0, 64, 192, 8192] {
            l.entry_size = bad;
            assert!(err_of(read(&l.build())).starts_with("GPT partition entry size"));
        }
    }

    #[test]
    fn huge_entry_count_is_refused() {
        let l = Layout::new(512, vec![part(GENERIC, 34, 127, "")]);
        let mut img = l.build();
        put32(&mut img, 512 + 80, u32::MAX);
        resign(&mut img, 512);
        assert_eq!(
            err_of(read(&img)),
            "GPT claims 4294967295 partition entries, more than the 16384 accepted"
        );
        // Within the count limit but over the size limit.
        put32(&mut img, 512 + 80, 16_384);
        put32(&mut img, 512 + 84, 4096);
        resign(&mut img, 512);
        assert!(err_of(read(&img)).contains("is larger than 4194304"));
    }

    #[test]
    fn partition_past_the_end() {
        let img = Layout::new(512, vec![part(ESP, 34, 63, ""), part(GENERIC, 64, 256, "")]).build();
        assert_eq!(
            err_of(read(&img)),
            "partition 2 extends past the end of the image"
        );
        let img = Layout::new(512, vec![part(GENERIC, 34, u64::MAX, "")]).build();
        assert_eq!(
            err_of(read(&img)),
            "partition 1 extends past the end of the image"
        );
        // Inside the image but over the backup table.
        let img = Layout::new(512, vec![part(GENERIC, 34, 250, "")]).build();
        assert!(err_of(read(&img)).contains("lies outside the usable area"));
        let img = Layout::new(512, vec![part(GENERIC, 64, 40, "")]).build();
        assert_eq!(
            err_of(read(&img)),
            "partition 1 ends (LBA 40) before it starts (LBA 64)"
        );
    }

    #[test]
    fn overlapping_partitions() {
        let root = ty(Role::Root, native());
        let img = Layout::new(
            512,
            vec![
                part(GENERIC, 100, 127, ""),
                part(ESP, 34, 50, ""),
                part(root, 50, 99, ""),
            ],
        )
        .build();
        assert_eq!(err_of(read(&img)), "partitions 2 and 3 overlap");
        // A partition nested inside a long one.
        let img = Layout::new(
            512,
            vec![part(GENERIC, 34, 127, ""), part(root, 60, 61, "")],
        )
        .build();
        assert_eq!(err_of(read(&img)), "partitions 1 and 2 overlap");
    }

    #[test]
    fn truncated_image() {
        let img = Layout::new(512, vec![part(GENERIC, 34, 127, "")]).build();
        let e = err_of(read(&img[..1536]));
        assert_eq!(
            e,
            "GPT partition entry array (16384 bytes at byte 1024) extends past the end of the image (1536 bytes)"
        );
        // Header itself cut off.
        let e = err_of(read(&img[..560]));
        assert!(e.contains("cut off by the end of the image"), "{e}");
        // Only the signature's first bytes: not a GPT at all.
        assert!(matches!(read(&img[..515]), Ok(None)));
    }

    #[test]
    fn labels_decode_lossily() {
        let mut l = Layout::new(512, vec![part(GENERIC, 34, 127, "root_é😀")]);
        let img = l.build();
        assert_eq!(table(&img).entries[0].label, "root_é😀");
        // An unpaired surrogate, then text after a NUL that must be dropped.
        l.parts[0].label = "";
        let mut img = l.build();
        for (k, unit) in [0x61u16, 0xD800, 0x62, 0, 0x63].iter().enumerate() {
            img[1024 + 56 + 2 * k..1024 + 58 + 2 * k].copy_from_slice(&unit.to_le_bytes());
        }
        resign(&mut img, 512);
        assert_eq!(table(&img).entries[0].label, "a\u{FFFD}b");
        // All 36 units used, no NUL.
        l.parts[0].label = "abcdefghijklmnopqrstuvwxyz0123456789";
        assert_eq!(table(&l.build()).entries[0].label.len(), 36);
    }
}
