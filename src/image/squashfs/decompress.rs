//! The compressors a squashfs names in its superblock, each bounded by the size its output
//! must have: a metadata block decompresses to at most 8 KiB, a data block to at most the
//! block size, so no crafted stream can make more.
//!
//! gzip, lz4 and zstd use the pure-Rust decoders erofs-rs already brings into the tree
//! (`miniz_oxide`, `lz4_flex`, `ruzstd`); xz uses liblzma, the one decoder that reads the
//! branch/call/jump filters `mksquashfs -comp xz -Xbcj` writes (`lzma-rs` reads LZMA2 alone).

use std::fmt;

/// The compressor ids of the squashfs 4.0 superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// zlib streams (id 1).
    Gzip,
    /// xz streams (id 4), filters included.
    Xz,
    /// LZ4 blocks without frames (id 5).
    Lz4,
    /// zstd frames (id 6).
    Zstd,
}

impl Compressor {
    /// The compressor of id `id`; lzma (2) and lzo (3) are refused, as they were by the
    /// reader before this one, which was built without them.
    pub fn from_id(id: u16) -> Result<Compressor, String> {
        match id {
            1 => Ok(Compressor::Gzip),
            4 => Ok(Compressor::Xz),
            5 => Ok(Compressor::Lz4),
            6 => Ok(Compressor::Zstd),
            2 => Err(unsupported("lzma")),
            3 => Err(unsupported("lzo")),
            n => Err(format!("squashfs compression with the unknown id {n}")),
        }
    }

    /// `out_max` bytes at most from `raw`; an error says why the data is damaged.
    pub fn decompress(self, raw: &[u8], out_max: usize) -> Result<Vec<u8>, String> {
        let out = match self {
            Compressor::Gzip => {
                miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(raw, out_max)
                    .map_err(|e| format!("{:?}", e.status))?
            }
            Compressor::Lz4 => {
                let mut out = vec![0u8; out_max];
                let n =
                    lz4_flex::block::decompress_into(raw, &mut out).map_err(|e| e.to_string())?;
                out.truncate(n);
                out
            }
            Compressor::Zstd => zstd(raw, out_max)?,
            Compressor::Xz => xz(raw, out_max)?,
        };
        if out.len() > out_max {
            return Err(format!("more than {out_max} bytes"));
        }
        Ok(out)
    }
}

impl fmt::Display for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compressor::Gzip => "gzip",
            Compressor::Xz => "xz",
            Compressor::Lz4 => "lz4",
            Compressor::Zstd => "zstd",
        })
    }
}

fn unsupported(name: &str) -> String {
    format!("squashfs compression {name} (only gzip, xz, lz4 and zstd are read)")
}

/// One zstd frame. mksquashfs compresses each block in one call, so the frame's window is
/// at most the block; a larger one is refused before ruzstd reserves it.
fn zstd(raw: &[u8], out_max: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let window = (out_max as u64).max(1 << 17);
    let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(raw, window)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(out_max);
    decoder
        .take(out_max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Memory liblzma may use for one xz stream: mksquashfs's dictionary is at most the block
/// size (1 MiB), so this is room to spare, and a crafted header claiming more is refused.
const XZ_MEMLIMIT: u64 = 8 << 20;

/// One xz stream, to its end.
fn xz(raw: &[u8], out_max: usize) -> Result<Vec<u8>, String> {
    use liblzma::stream::{Action, Status, Stream};
    let mut stream = Stream::new_stream_decoder(XZ_MEMLIMIT, 0).map_err(|e| e.to_string())?;
    // One byte more than allowed: filling it says the stream is too long.
    let mut out = Vec::with_capacity(out_max + 1);
    match stream
        .process_vec(raw, &mut out, Action::Finish)
        .map_err(|e| e.to_string())?
    {
        Status::StreamEnd => Ok(out),
        _ if out.len() > out_max => Err(format!("more than {out_max} bytes")),
        _ => Err("the stream ends early".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_compressors_it_lacks() {
        assert!(Compressor::from_id(2).unwrap_err().contains("lzma"));
        assert!(Compressor::from_id(3).unwrap_err().contains("lzo"));
        assert!(Compressor::from_id(9).unwrap_err().contains("unknown id 9"));
    }

    #[test]
    fn bounds_the_output() {
        let data = vec![7u8; 10_000];
        let z = miniz_oxide::deflate::compress_to_vec_zlib(&data, 6);
        assert_eq!(Compressor::Gzip.decompress(&z, 10_000).unwrap(), data);
        assert!(Compressor::Gzip.decompress(&z, 8192).is_err());
        for c in [
            Compressor::Gzip,
            Compressor::Xz,
            Compressor::Lz4,
            Compressor::Zstd,
        ] {
            assert!(c.decompress(b"not compressed at all", 8192).is_err(), "{c}");
            assert!(
                c.decompress(&[], 8192).is_err() || c == Compressor::Lz4,
                "{c}"
            );
        }
    }
}
