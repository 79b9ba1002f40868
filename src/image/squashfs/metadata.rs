//! Metadata blocks: the inode, directory, fragment and xattr tables are runs of blocks of
//! at most 8 KiB each (a 2-byte header, bit 15 set when stored uncompressed), read here one
//! at a time as a lookup needs them, through a small cache, and as a byte stream that runs
//! on from one block into the next (the kernel's `squashfs_read_metadata()`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::decompress::Compressor;
use crate::image::FsError;
use crate::image::source::{ENDED_EARLY, Source};

/// Most bytes a metadata block holds, compressed or not (`SQUASHFS_METADATA_SIZE`).
pub const BLOCK: usize = 8192;
/// Decompressed blocks kept: one lookup walks a few (the directory, the inode it names), and
/// a generator run comes back to the same few directories; 32 blocks are at most 256 KiB.
const CACHE_BLOCKS: usize = 32;
/// Blocks one stream may read: the longest directory listing read
/// ([`crate::image::MAX_DIR_BYTES`], 32 MiB) and then some.
pub const MAX_STREAM_BLOCKS: usize = 32 * 1024 * 1024 / BLOCK + 2;
/// Blocks decompressed for one image over its whole reading (cache hits are free): a
/// generator run needs a few dozen, listing the largest directory about 4,000. Crafted
/// directories that name one another, each a long listing, would otherwise cost seconds
/// per path while each single lookup stays in bounds (ARCHITECTURE.md, "Limits").
pub const MAX_BLOCK_READS: usize = 1 << 16;

/// A table of metadata blocks: its blocks start and end within `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The table's name, for messages ("inode", "directory").
    pub name: &'static str,
    /// Its first byte.
    pub start: u64,
    /// The first byte after it.
    pub end: u64,
}

/// One decompressed block and where the next one starts.
struct Block {
    data: Vec<u8>,
    next: u64,
}

/// The metadata blocks of one image.
pub struct Meta {
    src: Source,
    compressor: Compressor,
    /// Most recently used first; keyed by the block's offset in the image.
    cache: RefCell<Vec<(u64, Rc<Block>)>>,
    reads: Cell<usize>,
}

/// An I/O error of the source as a reader's error: a file that shrank is a change, not
/// damage.
pub fn io_error(e: &std::io::Error) -> FsError {
    if e.to_string() == ENDED_EARLY {
        FsError::Changed(e.to_string())
    } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FsError::Corrupt(format!("points past the end of the image ({e})"))
    } else {
        FsError::Io(std::io::Error::new(e.kind(), e.to_string()))
    }
}

impl Meta {
    /// The blocks of the file system in `src`, compressed with `compressor`.
    pub fn new(src: Source, compressor: Compressor) -> Meta {
        Meta {
            src,
            compressor,
            cache: RefCell::new(Vec::with_capacity(CACHE_BLOCKS)),
            reads: Cell::new(0),
        }
    }

    /// The image's bytes.
    pub fn source(&self) -> &Source {
        &self.src
    }

    /// The compressor of the image.
    pub fn compressor(&self) -> Compressor {
        self.compressor
    }

    /// Count one block decompressed or read, against [`MAX_BLOCK_READS`].
    pub fn charge(&self) -> Result<(), FsError> {
        let n = self.reads.get() + 1;
        if n > MAX_BLOCK_READS {
            return Err(FsError::Corrupt(format!(
                "more than {MAX_BLOCK_READS} blocks read from it: its directories or inodes point back at one another"
            )));
        }
        self.reads.set(n);
        Ok(())
    }

    /// The block at byte `at` of `table`.
    fn block(&self, table: Table, at: u64) -> Result<Rc<Block>, FsError> {
        {
            let mut cache = self.cache.borrow_mut();
            if let Some(i) = cache.iter().position(|(k, _)| *k == at) {
                let hit = cache.remove(i);
                let block = Rc::clone(&hit.1);
                cache.insert(0, hit);
                return Ok(block);
            }
        }
        let block = Rc::new(self.load(table, at)?);
        let mut cache = self.cache.borrow_mut();
        if cache.len() == CACHE_BLOCKS {
            cache.pop();
        }
        cache.insert(0, (at, Rc::clone(&block)));
        Ok(block)
    }

    /// Read and decompress the block at `at`, header and data in one read.
    fn load(&self, table: Table, at: u64) -> Result<Block, FsError> {
        let whole = || {
            format!(
                "the {} table (bytes {} to {})",
                table.name, table.start, table.end
            )
        };
        if at < table.start || at.saturating_add(2) > table.end {
            return Err(FsError::Corrupt(format!(
                "{} has no block at byte {at}",
                whole()
            )));
        }
        self.charge()?;
        // `at + 2 <= end`, so the length fits and is at least 2.
        let len = usize::try_from((table.end - at).min(2 + BLOCK as u64)).unwrap_or(2 + BLOCK);
        let mut buf = vec![0u8; len];
        self.src
            .read_exact_at(&mut buf, at)
            .map_err(|e| io_error(&e))?;
        let header = u16::from_le_bytes([buf[0], buf[1]]);
        let size = usize::from(header & 0x7fff);
        if size == 0 || size > BLOCK {
            return Err(FsError::Corrupt(format!(
                "{} has a block at byte {at} claiming {size} bytes (1 to {BLOCK})",
                whole()
            )));
        }
        if 2 + size > len {
            return Err(FsError::Corrupt(format!(
                "{} has a block at byte {at} of {size} bytes, running past the table's end",
                whole()
            )));
        }
        buf.truncate(2 + size);
        let next = at + 2 + size as u64;
        let data = if header & 0x8000 != 0 {
            buf.drain(..2);
            buf
        } else {
            let out = self.compressor.decompress(&buf[2..], BLOCK).map_err(|_| {
                FsError::Corrupt(format!(
                    "{} has a block at byte {at} that does not decompress ({}): its data is damaged",
                    whole(),
                    self.compressor
                ))
            })?;
            if out.is_empty() {
                return Err(FsError::Corrupt(format!(
                    "{} has a block at byte {at} that decompresses to nothing",
                    whole()
                )));
            }
            out
        };
        Ok(Block { data, next })
    }

    /// A stream of the bytes from offset `offset` of the block at `at` in `table`.
    pub fn stream(&self, table: Table, at: u64, offset: usize) -> Result<Stream<'_>, FsError> {
        let block = self.block(table, at)?;
        if offset > block.data.len() {
            return Err(FsError::Corrupt(format!(
                "a reference to byte {offset} of the {} table's block at byte {at}, which holds {}",
                table.name,
                block.data.len()
            )));
        }
        Ok(Stream {
            meta: self,
            table,
            at,
            block,
            pos: offset,
            loads: 1,
        })
    }

    /// A stream at a metadata reference: block `reference >> 16` bytes into `table`, then
    /// `reference & 0xffff` bytes into its data.
    pub fn at_reference(&self, table: Table, reference: u64) -> Result<Stream<'_>, FsError> {
        let at = table
            .start
            .checked_add(reference >> 16)
            .filter(|&at| at < table.end)
            .ok_or_else(|| {
                FsError::Corrupt(format!(
                    "a reference to byte {} of the {} table, which has {} bytes",
                    reference >> 16,
                    table.name,
                    table.end.saturating_sub(table.start)
                ))
            })?;
        self.stream(table, at, low16(reference))
    }
}

/// The offset in a block that a reference holds in its low 16 bits.
fn low16(reference: u64) -> usize {
    usize::from(u16::try_from(reference & 0xffff).unwrap_or(u16::MAX))
}

/// Bytes read on through the blocks of a table.
pub struct Stream<'m> {
    meta: &'m Meta,
    table: Table,
    /// Where the current block starts.
    at: u64,
    block: Rc<Block>,
    pos: usize,
    loads: usize,
}

impl Stream<'_> {
    /// Where the stream is: the current block and the offset in it, to come back to.
    pub fn position(&self) -> (u64, usize) {
        (self.at, self.pos)
    }

    /// The stream at a position taken from [`Stream::position`] of a stream of this table.
    pub fn at_position(&self, (at, pos): (u64, usize)) -> Result<Stream<'_>, FsError> {
        self.meta.stream(self.table, at, pos)
    }

    fn next_block(&mut self) -> Result<(), FsError> {
        if self.loads >= MAX_STREAM_BLOCKS {
            return Err(FsError::Corrupt(format!(
                "a run of more than {MAX_STREAM_BLOCKS} blocks in the {} table",
                self.table.name
            )));
        }
        let next = self.block.next;
        if next >= self.table.end {
            return Err(FsError::Corrupt(format!(
                "an entry runs past the end of the {} table",
                self.table.name
            )));
        }
        self.block = self.meta.block(self.table, next)?;
        self.at = next;
        self.pos = 0;
        self.loads += 1;
        Ok(())
    }

    /// Fill `out`.
    pub fn read_into(&mut self, out: &mut [u8]) -> Result<(), FsError> {
        let mut done = 0;
        while done < out.len() {
            if self.pos == self.block.data.len() {
                self.next_block()?;
            }
            let take = (out.len() - done).min(self.block.data.len() - self.pos);
            out[done..done + take].copy_from_slice(&self.block.data[self.pos..self.pos + take]);
            self.pos += take;
            done += take;
        }
        Ok(())
    }

    /// The next `N` bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], FsError> {
        let mut b = [0u8; N];
        self.read_into(&mut b)?;
        Ok(b)
    }

    /// The next little-endian u16.
    pub fn u16(&mut self) -> Result<u16, FsError> {
        self.array().map(u16::from_le_bytes)
    }

    /// The next little-endian u32.
    pub fn u32(&mut self) -> Result<u32, FsError> {
        self.array().map(u32::from_le_bytes)
    }

    /// The next little-endian u64.
    pub fn u64(&mut self) -> Result<u64, FsError> {
        self.array().map(u64::from_le_bytes)
    }

    /// The next `n` bytes; callers bound `n` before (a name's u16 length, a checked size).
    pub fn bytes(&mut self, n: usize) -> Result<Vec<u8>, FsError> {
        let mut out = vec![0u8; n];
        self.read_into(&mut out)?;
        Ok(out)
    }

    /// Pass over `n` bytes.
    pub fn skip(&mut self, mut n: u64) -> Result<(), FsError> {
        while n > 0 {
            if self.pos == self.block.data.len() {
                self.next_block()?;
            }
            let avail = self.block.data.len() - self.pos;
            let take = usize::try_from(n).map_or(avail, |n| n.min(avail));
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }
}
