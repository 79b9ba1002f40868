//! Images built by mksquashfs, read back; damaged ones, refused without a panic.

use super::*;
use crate::image::fixture::{self, Built};
use crate::image::xattr_fixture;
use std::fs;
use std::path::PathBuf;

fn mksquashfs(comp: &[&str]) -> Option<Built> {
    let mut args = vec![
        "{tree}",
        "{img}",
        "-all-root",
        "-noappend",
        "-quiet",
        "-no-progress",
    ];
    args.extend_from_slice(comp);
    fixture::build("img.squashfs", "mksquashfs", &args)
}

#[test]
fn reads_what_mksquashfs_wrote() {
    for comp in [
        &[][..],
        &["-comp", "zstd"],
        &["-comp", "xz"],
        &["-comp", "lz4"],
    ] {
        let Some(built) = mksquashfs(comp) else {
            return;
        };
        fixture::check_image(&built, open);
    }
}

#[test]
fn reads_uncompressed_and_fragment_free_images() {
    let Some(built) = mksquashfs(&["-noI", "-noD", "-noF", "-no-fragments"]) else {
        return;
    };
    fixture::check_image(&built, open);
}

fn mksquashfs_xattrs(extra: &[&str]) -> Option<Built> {
    let mut args = vec!["{tree}", "{img}", "-noappend", "-quiet", "-no-progress"];
    args.extend_from_slice(extra);
    xattr_fixture::build("img.squashfs", "mksquashfs", &args)
}

/// Compressed and uncompressed xattr tables; mksquashfs stores a value seen before
/// out of line, as a reference to the first.
#[test]
fn reads_xattrs() {
    for extra in [
        &[][..],
        &["-comp", "zstd"],
        &["-comp", "xz"],
        &["-comp", "lz4"],
        &["-noX"],
        &["-no-xattrs"],
    ] {
        let Some(built) = mksquashfs_xattrs(extra) else {
            return;
        };
        let fs = open(fixture::source(&built.img)).unwrap();
        xattr_fixture::check_image(fs, extra != ["-no-xattrs"]);
    }
}

/// Directories and symlinks are looked up through the directory table, here one
/// whose listing has several headers and spans metadata blocks.
#[test]
fn finds_inodes_in_large_directories() {
    let Some(built) = mksquashfs_xattrs(&[]) else {
        return;
    };
    let tree = xattr_fixture::add_fillers(&built, "/etc", 600);
    let Some(img) = build(built.dir.path(), &tree, "many.squashfs", &[]) else {
        return;
    };
    let fs = open(fixture::source(&img)).unwrap();
    xattr_fixture::check(&*fs);
    let filler = Path::new("/etc/filler-with-a-longer-name-0599");
    assert_eq!(fs.xattr(filler, xattr_fixture::STRICT, 99).unwrap(), None);
}

#[test]
fn damaged_xattrs_do_not_panic() {
    for extra in [&["-noX"][..], &[]] {
        let Some(built) = mksquashfs_xattrs(extra) else {
            return;
        };
        if extra.is_empty() {
            // Compressed: around the xattr id table, after the entries' blocks.
            let data = fs::read(&built.img).unwrap();
            let table =
                usize::try_from(u64::from_le_bytes(data[56..64].try_into().unwrap())).unwrap();
            xattr_fixture::check_corrupt_at(&built, open, &[table, table - 200]);
        } else {
            xattr_fixture::check_corrupt(&built, open, b"extension-release.strict");
        }
    }
}

#[test]
fn reads_a_partition_at_an_offset() {
    let Some(built) = mksquashfs(&["-comp", "zstd"]) else {
        return;
    };
    fixture::check_at_offset(&built, open);
}

#[test]
fn damaged_images_do_not_panic() {
    for comp in [&[][..], &["-comp", "zstd"], &["-comp", "xz"]] {
        let Some(built) = mksquashfs(comp) else {
            return;
        };
        fixture::check_corrupt(&built, open);
    }
}

/// `mksquashfs TREE IMG ARGS...` in `dir`; `None` when mksquashfs is not installed.
fn build(dir: &Path, tree: &Path, name: &str, args: &[&str]) -> Option<PathBuf> {
    let Some(tool) = fixture::tool("mksquashfs") else {
        eprintln!("mksquashfs is not installed; skipping");
        return None;
    };
    let img = dir.join(name);
    let out = std::process::Command::new(tool)
        .arg(tree)
        .arg(&img)
        .args(["-noappend", "-quiet", "-no-progress", "-all-root"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mksquashfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(img)
}

/// Bytes that compress, but not to nothing: each 4 KiB block differs.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            if i % 7 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            b"abcdefgh"[usize::try_from(x % 8).unwrap()] ^ u8::try_from(i / 4096 % 2).unwrap()
        })
        .collect()
}

/// Files of whole blocks, blocks and a tail, a tail alone, holes, and empty, with 4 KiB
/// blocks.
fn data_tree(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let mut sparse = pattern(5000, 3);
    sparse.resize(4096 * 4, 0);
    sparse.extend_from_slice(&pattern(100, 4));
    let files = vec![
        ("tail-only", pattern(700, 1)),
        ("two-blocks", pattern(8192, 2)),
        ("blocks-and-tail", pattern(3 * 4096 + 1234, 5)),
        ("sparse", sparse),
        ("empty", Vec::new()),
        ("zeros", vec![0u8; 3 * 4096]),
    ];
    fs::create_dir_all(root.join("d")).unwrap();
    for (name, bytes) in &files {
        fs::write(root.join("d").join(name), bytes).unwrap();
    }
    files
}

#[test]
fn reads_blocks_fragments_holes_with_every_compressor() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let files = data_tree(&tree);
    let variants: &[&[&str]] = &[
        &[],
        &["-comp", "xz"],
        &["-comp", "xz", "-Xbcj", "x86"],
        &["-comp", "lz4"],
        &["-comp", "lz4", "-Xhc"],
        &["-comp", "zstd"],
        &["-noD", "-noF"],
        &["-no-fragments"],
        &["-always-use-fragments"],
        &["-noI", "-noD", "-noF", "-noX", "-no-fragments"],
    ];
    for (i, extra) in variants.iter().enumerate() {
        let mut args = vec!["-b", "4096"];
        args.extend_from_slice(extra);
        let Some(img) = build(dir.path(), &tree, &format!("{i}.squashfs"), &args) else {
            return;
        };
        let fs = open(fixture::source(&img)).unwrap();
        for (name, bytes) in &files {
            let path = Path::new("/d").join(name);
            let got = fs.read_file(&path, 1 << 20).unwrap();
            assert!(got == *bytes, "{extra:?}: {name} reads differently");
            assert_eq!(fs.lstat(&path).unwrap(), Some(FileKind::File));
        }
        let too_small = fs.read_file(Path::new("/d/two-blocks"), 8191).unwrap_err();
        assert!(
            matches!(too_small, FsError::TooLarge { size: 8192, .. }),
            "{too_small}"
        );
    }
}

/// lzo and lzma are refused as the reader before this one refused them, naming the
/// compressor.
#[test]
fn refuses_lzo() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    data_tree(&tree);
    let Some(img) = build(dir.path(), &tree, "lzo.squashfs", &["-comp", "lzo"]) else {
        return;
    };
    let Err(FsError::Unsupported(why)) = open(fixture::source(&img)) else {
        panic!("an lzo image opened");
    };
    assert!(why.contains("lzo"), "{why}");
}

/// A directory of 5,000 entries spans many metadata blocks and has an index; names before,
/// between and after its entries are absent.
#[test]
fn finds_names_in_a_large_directory_through_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let big = tree.join("big");
    fs::create_dir_all(&big).unwrap();
    let name = |i: usize| format!("entry-with-a-fairly-long-name-{i:05}");
    for i in 0..5000 {
        fs::write(big.join(name(i)), name(i)).unwrap();
    }
    for comp in ["gzip", "zstd"] {
        let Some(img) = build(dir.path(), &tree, "big.squashfs", &["-comp", comp]) else {
            return;
        };
        let fs = open_squashfs(fixture::source(&img)).unwrap();
        let Body::Dir(d) = fs.inode_at(Path::new("/big")).unwrap().body else {
            panic!("/big is no directory");
        };
        assert!(d.index.is_some_and(|(n, _)| n > 10), "no index: {d:?}");
        for i in [0, 1, 255, 256, 2500, 4095, 4999] {
            let path = Path::new("/big").join(name(i));
            assert_eq!(fs.read_file(&path, 100).unwrap(), name(i).as_bytes(), "{i}");
        }
        for absent in ["a", "entry-with-a-fairly-long-name-02500x", "zzz", "entry"] {
            let path = Path::new("/big").join(absent);
            assert_eq!(fs.lstat(&path).unwrap(), None, "{absent}");
            assert!(matches!(fs.read_file(&path, 100), Err(FsError::NotFound)));
        }
        let listed = fs.read_dir(Path::new("/big")).unwrap();
        assert_eq!(listed.len(), 5000);
        assert_eq!(listed[4999].name, name(4999).as_bytes());
        let built = Built {
            dir: tempfile::tempdir().unwrap(),
            img: img.clone(),
            fifo: false,
        };
        fixture::check_corrupt(&built, open);
    }
}

/// An image of 200,000 files (device nodes made by a pseudo-definition file, so nothing is
/// written to disk but the image) opens as fast as a small one and finds its one real file.
#[test]
fn opens_an_image_of_200k_files() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/os-release"), b"ID=big\n").unwrap();
    let mut pseudo = String::from("many d 755 0 0\n");
    for d in 0..200 {
        pseudo.push_str(&format!("many/d{d:03} d 755 0 0\n"));
    }
    for i in 0..200_000 {
        pseudo.push_str(&format!("many/d{:03}/n{i:07} c 644 0 0 1 3\n", i % 200));
    }
    let pf = dir.path().join("pseudo");
    fs::write(&pf, pseudo).unwrap();
    let Some(img) = build(
        dir.path(),
        &tree,
        "200k.squashfs",
        &["-pf", pf.to_str().unwrap()],
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    let fs = open(fixture::source(&img)).unwrap();
    assert_eq!(
        fs.read_file(Path::new("/etc/os-release"), 100).unwrap(),
        b"ID=big\n"
    );
    assert_eq!(
        fs.lstat(Path::new("/many/d123/n0199923")).unwrap(),
        Some(FileKind::Other)
    );
    assert_eq!(fs.read_dir(Path::new("/many/d007")).unwrap().len(), 1000);
    eprintln!("opened and read in {:?}", started.elapsed());
}

/// A directory index whose second entry points before its first is damage, said when a
/// name past it is looked up; names before it are still found.
#[test]
fn refuses_an_index_pointing_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let big = tree.join("big");
    fs::create_dir_all(&big).unwrap();
    let name = |i: usize| format!("entry-with-a-fairly-long-name-{i:05}");
    for i in 0..2000 {
        fs::write(big.join(name(i)), b"x").unwrap();
    }
    let Some(img) = build(dir.path(), &tree, "index.squashfs", &["-noI", "-noD"]) else {
        return;
    };
    let mut data = fs::read(&img).unwrap();
    // Index entries: u32 index, u32 block, u32 name length less one, the name; entries of
    // the listing have a u16 length, so `LEN 0 0 0 NAME` is an index entry's.
    let len = name(0).len() - 1;
    let mut marker = vec![u8::try_from(len).unwrap(), 0, 0, 0];
    marker.extend_from_slice(b"entry-with");
    let found: Vec<usize> = data
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker.as_slice())
        .map(|(at, _)| at - 8)
        .collect();
    assert!(found.len() > 2, "no index found");
    let second = found[1];
    data[second..second + 4].copy_from_slice(&0u32.to_le_bytes());
    let damaged = dir.path().join("damaged.squashfs");
    fs::write(&damaged, &data).unwrap();
    let fs = open(fixture::source(&damaged)).unwrap();
    assert_eq!(
        fs.read_file(&Path::new("/big").join(name(0)), 10).unwrap(),
        b"x"
    );
    let err = fs
        .read_file(&Path::new("/big").join(name(1999)), 10)
        .unwrap_err();
    assert!(
        err.to_string().contains("index entry pointing backwards"),
        "{err}"
    );
}
