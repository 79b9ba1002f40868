//! A bounded byte range of an image file or block device, read with `pread`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// A window `[offset, offset + len)` of an open file. Cloning is cheap; reads never go
/// outside the window, so a partition can not reach the bytes of its neighbours.
#[derive(Clone, Debug)]
pub struct Source {
    file: Arc<File>,
    offset: u64,
    len: u64,
}

impl Source {
    /// The whole file; `len` is its size (for block devices, the device size).
    pub fn new(file: File, len: u64) -> Source {
        Source {
            file: Arc::new(file),
            offset: 0,
            len,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of this window in the underlying file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// A sub-window; `None` when it does not lie inside this one.
    pub fn slice(&self, offset: u64, len: u64) -> Option<Source> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(Source {
            file: self.file.clone(),
            offset: self.offset + offset,
            len,
        })
    }

    /// Fill `buf` from `offset` (relative to this window). Reading past the window's end,
    /// or a file that shrank underneath us, is an `UnexpectedEof` error.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        match end {
            Some(end) if end <= self.len => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "read of {} bytes at offset {} beyond the end ({} bytes)",
                        buf.len(),
                        offset,
                        self.len
                    ),
                ));
            }
        }
        self.file.read_exact_at(buf, self.offset + offset)
    }

    /// Read up to `len` bytes at `offset`, clamped to the window; used for sniffing.
    pub fn read_vec(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let avail = self.len.saturating_sub(offset).min(len as u64) as usize;
        let mut buf = vec![0u8; avail];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}
