//! Images built by mksquashfs, read back; damaged ones, refused without a panic.

use super::*;
use crate::image::fixture::{self, Built};
use crate::image::xattr_fixture;

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
        if extra == ["-no-xattrs"] {
            let r = fs.xattr(Path::new(xattr_fixture::RELEASE), xattr_fixture::STRICT, 99);
            assert_eq!(r.unwrap(), None);
            continue;
        }
        xattr_fixture::check(&*fs);
        xattr_fixture::check_tree(fs);
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
    let img = built.dir.path().join("many.squashfs");
    let out = std::process::Command::new(fixture::tool("mksquashfs").unwrap())
        .arg(&tree)
        .arg(&img)
        .args(["-noappend", "-quiet", "-no-progress"])
        .output()
        .unwrap();
    assert!(out.status.success());
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
            let data = std::fs::read(&built.img).unwrap();
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
