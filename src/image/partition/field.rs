//! Fields of on-disk partition tables, read without trusting where they end, and the
//! wording of a failed read.

/// `N` bytes at `off`, or `None` past the end of `buf`.
pub(super) fn bytes<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    buf.get(off..)?.first_chunk::<N>().copied()
}

pub(super) fn le16(buf: &[u8], off: usize) -> Option<u16> {
    bytes(buf, off).map(u16::from_le_bytes)
}

pub(super) fn le32(buf: &[u8], off: usize) -> Option<u32> {
    bytes(buf, off).map(u32::from_le_bytes)
}

pub(super) fn le64(buf: &[u8], off: usize) -> Option<u64> {
    bytes(buf, off).map(u64::from_le_bytes)
}

// By value, so that it can be given to `map_err` by name.
#[allow(clippy::needless_pass_by_value)]
pub(super) fn read_err(e: std::io::Error) -> String {
    format!("reading the partition table: {e}")
}
