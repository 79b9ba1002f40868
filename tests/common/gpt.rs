//! The `gpt-set` verb: editing GPT header and partition entry fields, then re-signing the
//! CRC-32s.

use std::fs;
use std::path::Path;

use super::error::io_context;
use super::images::parse_number;
use super::patch::{le_u32, le_u64, read_at, to_usize, write_at};

/// The CRC-32 of IEEE 802.3 (zlib's), as GPT uses it.
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The `gpt-set` verb: edit, then re-sign what can be re-signed.
pub(super) fn gpt_set(path: &Path, args: &[&str]) -> Result<(), String> {
    let ss: u64 = if read_at(path, 512, 8)? == b"EFI PART" {
        512
    } else if read_at(path, 4096, 8).is_ok_and(|s| s == b"EFI PART") {
        4096
    } else {
        return Err(format!("no GPT header in {}", path.display()));
    };
    let mut hdr = read_at(path, ss, to_usize(ss)?)?;
    // Entries are edited where the original header puts them.
    let (orig_lba, orig_size) = (le_u64(&hdr, 72), u64::from(le_u32(&hdr, 84)));
    for pair in args.chunks(2) {
        let (field, value) = (pair[0], parse_number(pair[1])?);
        let header_field = match field {
            "revision" => Some((8, 4)),
            "header_size" => Some((12, 4)),
            "my_lba" => Some((24, 8)),
            "alternate_lba" => Some((32, 8)),
            "first_usable" => Some((40, 8)),
            "last_usable" => Some((48, 8)),
            "entries_lba" => Some((72, 8)),
            "entry_count" => Some((80, 4)),
            "entry_size" => Some((84, 4)),
            _ => None,
        };
        if let Some((at, width)) = header_field {
            if width == 4 && value > u64::from(u32::MAX) {
                return Err(format!("{field}: {value} does not fit in 32 bits"));
            }
            hdr[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            continue;
        }
        let (part, entry_field) = field
            .strip_prefix("part")
            .and_then(|f| f.split_once('.'))
            .ok_or_else(|| format!("unknown GPT field {field}"))?;
        let number: u64 = part
            .parse()
            .map_err(|_| format!("bad partition number in {field}"))?;
        let at = match entry_field {
            "first_lba" => 32,
            "last_lba" => 40,
            "attrs" => 48,
            _ => return Err(format!("unknown GPT entry field {field}")),
        };
        if number == 0 {
            return Err("partitions are numbered from 1".into());
        }
        let offset = orig_lba * ss + (number - 1) * orig_size + at;
        write_at(path, offset, &value.to_le_bytes())?;
    }
    // The entry array as the header now describes it.
    let (lba, count, size) = (
        le_u64(&hdr, 72),
        u64::from(le_u32(&hdr, 80)),
        u64::from(le_u32(&hdr, 84)),
    );
    let file_len = fs::metadata(path)
        .map_err(|e| io_context(path.display(), &e))?
        .len();
    let array_len = count.saturating_mul(size);
    let array_start = lba.saturating_mul(ss);
    if array_len <= 64 << 20 && array_start.saturating_add(array_len) <= file_len {
        let array = read_at(path, array_start, to_usize(array_len)?)?;
        hdr[88..92].copy_from_slice(&CRC32.checksum(&array).to_le_bytes());
    }
    let header_size = u64::from(le_u32(&hdr, 12));
    if (92..=ss).contains(&header_size) {
        hdr[16..20].fill(0);
        let crc = CRC32.checksum(&hdr[..to_usize(header_size)?]);
        hdr[16..20].copy_from_slice(&crc.to_le_bytes());
    }
    write_at(path, ss, &hdr)
}
