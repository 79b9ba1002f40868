//! A bounded byte range of an image file or block device, read with `pread`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the bytes are: an open file or block device, or memory (fuzzing, tests).
#[derive(Clone, Debug)]
enum Backing {
    File(Arc<Opened>),
    Memory(Arc<[u8]>),
}

/// An image file as it was opened: a reader that fails on it may have seen it change.
#[derive(Debug)]
struct Opened {
    file: File,
    /// Its size when opened (of the whole file, whatever window is read).
    len: u64,
    /// Set when a read came back short: the file shrank since it was opened.
    ended_early: AtomicBool,
}

/// What a read that came back short says.
pub const ENDED_EARLY: &str = "the image ended early: it was cut short or changed while being read";

/// A window `[offset, offset + len)` of an open file. Cloning is cheap; reads never go
/// outside the window, so a partition can not reach the bytes of its neighbours.
#[derive(Clone, Debug)]
pub struct Source {
    backing: Backing,
    offset: u64,
    len: u64,
}

impl Source {
    /// The whole file; `len` is its size (for block devices, the device size).
    pub fn new(file: File, len: u64) -> Source {
        Source {
            backing: Backing::File(Arc::new(Opened {
                file,
                len,
                ended_early: AtomicBool::new(false),
            })),
            offset: 0,
            len,
        }
    }

    /// Bytes in memory, read as if they were an image file.
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Source {
        let bytes: Arc<[u8]> = bytes.into();
        let len = bytes.len() as u64;
        Source {
            backing: Backing::Memory(bytes),
            offset: 0,
            len,
        }
    }

    /// Length of the window in bytes: reads past it fail.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the window holds no bytes.
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
            backing: self.backing.clone(),
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
        let at = self.offset + offset;
        match &self.backing {
            // The size was taken at open: a short read now means the file shrank meanwhile.
            Backing::File(f) => f.file.read_exact_at(buf, at).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    f.ended_early.store(true, Ordering::Relaxed);
                    io::Error::new(io::ErrorKind::UnexpectedEof, ENDED_EARLY)
                }
                _ => e,
            }),
            Backing::Memory(m) => {
                let start = usize::try_from(at).map_err(|_| io::ErrorKind::UnexpectedEof)?;
                let bytes = start
                    .checked_add(buf.len())
                    .and_then(|end| m.get(start..end))
                    .ok_or(io::ErrorKind::UnexpectedEof)?;
                buf.copy_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Whether the image file changed while it was read, as far as can be told: a read came
    /// back short, or its size is not what it was when opened. A reader's error on such an
    /// image is about the change, not the image: this is what to report instead.
    pub fn changed(&self) -> Option<String> {
        let Backing::File(f) = &self.backing else {
            return None;
        };
        let now = f
            .file
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len());
        match now {
            Some(now) if now != f.len => Some(format!(
                "the image changed while being read ({} bytes when opened, {now} now)",
                f.len
            )),
            _ if f.ended_early.load(Ordering::Relaxed) => Some(ENDED_EARLY.to_string()),
            _ => None,
        }
    }

    /// Read up to `len` bytes at `offset`, clamped to the window; used for sniffing.
    pub fn read_vec(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let avail = usize::try_from(self.len.saturating_sub(offset)).map_or(len, |a| a.min(len));
        let mut buf = vec![0u8; avail];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_shrinks_while_read_is_said_to_have_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("img");
        std::fs::write(&path, [7u8; 100]).unwrap();
        let src = Source::new(File::open(&path).unwrap(), 100);
        let part = src.slice(50, 50).unwrap();
        assert_eq!(src.changed(), None);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(60)
            .unwrap();
        let e = part.read_exact_at(&mut [0u8; 20], 20).unwrap_err();
        assert_eq!(e.to_string(), ENDED_EARLY);
        assert_eq!(
            part.changed().as_deref(),
            Some("the image changed while being read (100 bytes when opened, 60 now)")
        );
        // Back to its size: the short read still tells.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        assert_eq!(src.changed().as_deref(), Some(ENDED_EARLY));
        assert_eq!(Source::from_bytes(vec![0u8; 4]).changed(), None);
    }
}
