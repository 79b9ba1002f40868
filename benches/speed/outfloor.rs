//! The output floor of `benches/speed/run`: what writing the generator's output costs this
//! machine's kernel when nothing else is done. `outfloor pack DIR PACK` records a tree (the
//! generator's own output for N images) in one file, untimed; `outfloor PACK OUT` then makes
//! the same directories, files (same contents) and symlinks below OUT with the fewest system
//! calls (one `read` of the pack, then `mkdir`, `open`+`write`+`close`, `symlink` per node,
//! relative to a descriptor of OUT's, as the generator makes them), and is timed like the
//! generator. Built by the script with `rustc` alone (static, panic=abort): no part of the
//! crate.
//!
//! The pack: per node, one byte for its kind (`d`, `f`, `l`), the path's length and the
//! path, then for a file its contents and for a link its target, each with its length (u32,
//! little-endian); parents before children.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_le_bytes());
    out.extend_from_slice(bytes);
}

fn pack(dir: &Path, rel: &Path, out: &mut Vec<u8>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = rel.join(e.file_name());
        let kind = e.file_type().unwrap();
        let name = path.as_os_str().as_bytes();
        if kind.is_dir() {
            out.push(b'd');
            put(out, name);
            pack(&e.path(), &path, out);
        } else if kind.is_symlink() {
            out.push(b'l');
            put(out, name);
            put(out, fs::read_link(e.path()).unwrap().as_os_str().as_bytes());
        } else {
            out.push(b'f');
            put(out, name);
            put(out, &fs::read(e.path()).unwrap());
        }
    }
}

fn take<'a>(p: &mut &'a [u8]) -> &'a [u8] {
    let n = u32::from_le_bytes(p[..4].try_into().unwrap()) as usize;
    let (v, rest) = p[4..].split_at(n);
    *p = rest;
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "pack" {
        let mut out = Vec::new();
        pack(Path::new(&args[2]), Path::new(""), &mut out);
        fs::write(&args[3], out).unwrap();
        return;
    }
    let data = fs::read(&args[1]).unwrap();
    let base = Path::new(&args[2]);
    let mut p = &data[..];
    // Paths below OUT as the kernel resolves them: one lookup per component, as the
    // generator's descriptor-relative calls do for a node's own name.
    let mut dirs = fs::DirBuilder::new();
    dirs.mode(0o755);
    while let Some((&kind, rest)) = p.split_first() {
        p = rest;
        let path = base.join(OsStr::from_bytes(take(&mut p)));
        match kind {
            b'd' => dirs.create(&path).unwrap(),
            b'f' => {
                let bytes = take(&mut p);
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&path)
                    .unwrap()
                    .write_all(bytes)
                    .unwrap();
            }
            _ => {
                let target = CString::new(take(&mut p)).unwrap();
                std::os::unix::fs::symlink(OsStr::from_bytes(target.as_bytes()), &path).unwrap();
            }
        }
    }
}
