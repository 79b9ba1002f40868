//! Test support for extended attributes: a tree whose entries carry xattrs set with
//! `setfattr`, images built from it by the real tools, and the checks every back-end shares.

use std::fs;
use std::os::unix::fs::symlink;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::fixture::{Built, Opener, source, tool};
use super::{Fs, FsError, MAX_XATTR_BYTES};
use crate::testutil::{XorShift, index_below};

pub const STRICT: &str = "user.extension-release.strict";
/// An extension-release file whose name does not match, made to count by its xattr.
pub const RELEASE: &str = "/usr/lib/extension-release.d/extension-release.other";
pub const PLAIN: &str = "/usr/lib/extension-release.d/extension-release.plain";
pub const SEVERAL: &str = "/etc/several";
pub const LONG: &str = "/etc/long";
pub const LINK: &str = "/etc/link";
pub const DIR: &str = "/etc/xdir";
/// Longer than fits in an ext4 inode, so ext4 keeps it in the xattr block (which may be
/// 1 KiB).
pub const LONG_LEN: usize = 900;

const SHARED: &[u8] = b"the same value on two files";

pub fn long_value() -> Vec<u8> {
    (0..LONG_LEN)
        .map(|i| u8::try_from(i * 7 % 251).unwrap() + 1)
        .collect()
}

fn hex(v: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in v {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `setfattr [-h] -n NAME -v VALUE PATH`; false when it cannot (no tool, no support).
fn setfattr(setfattr: &Path, path: &Path, name: &str, value: &[u8], no_follow: bool) -> bool {
    let mut c = Command::new(setfattr);
    if no_follow {
        c.arg("-h");
    }
    c.args(["-n", name, "-v"])
        .arg(hex(value))
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Write the tree; false (with a message) when the file system under it or the tools
/// cannot hold user xattrs.
fn write_tree(root: &Path) -> bool {
    let Some(set) = tool("setfattr") else {
        eprintln!("setfattr is not installed (package attr); skipping the xattr test");
        return false;
    };
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    fs::create_dir_all(at("/usr/lib/extension-release.d")).unwrap();
    fs::create_dir_all(at(DIR)).unwrap();
    fs::write(at(RELEASE), b"ID=_any\n").unwrap();
    fs::write(at(PLAIN), b"ID=_any\n").unwrap();
    fs::write(at(SEVERAL), b"").unwrap();
    fs::write(at(LONG), b"long\n").unwrap();
    fs::write(at("/etc/shared"), b"").unwrap();
    symlink(
        "../usr/lib/extension-release.d/extension-release.other",
        at(LINK),
    )
    .unwrap();
    if !setfattr(&set, &at(RELEASE), STRICT, b"false", false) {
        eprintln!(
            "cannot set user xattrs under {}; skipping the xattr test",
            root.display()
        );
        return false;
    }
    let all = [
        (SEVERAL, "user.a", &b"1"[..], false),
        (SEVERAL, "user.b", b"two", false),
        (SEVERAL, "trusted.t", b"three", false),
        (SEVERAL, "security.s", b"four", false),
        // The same attribute on two files: erofs can share it between them, mksquashfs
        // stores the second value out of line (it does so for values over 8 bytes).
        (SEVERAL, "user.shared", SHARED, false),
        ("/etc/shared", "user.shared", SHARED, false),
        (LONG, "user.long", &long_value(), false),
        (LINK, "trusted.link", b"l", true),
        (DIR, "user.dir", b"d", false),
    ];
    for (path, name, value, no_follow) in all {
        assert!(
            setfattr(&set, &at(path), name, value, no_follow),
            "setfattr {name} on {path}"
        );
    }
    true
}

/// Write `count` empty files into `dir` of the tree, so that its listing takes several
/// blocks (ext4) or headers (squashfs).
pub fn add_fillers(built: &Built, dir: &str, count: usize) -> PathBuf {
    let tree = built.dir.path().join("tree");
    let at = tree.join(dir.trim_start_matches('/'));
    for i in 0..count {
        fs::write(at.join(format!("filler-with-a-longer-name-{i:04}")), b"").unwrap();
    }
    tree
}

/// The xattr tree, built into `name` with `tool` (`{tree}`, `{img}` in `args` replaced),
/// or as a directory when `tool_name` is empty. `None` when the test cannot run here.
pub fn build(name: &str, tool_name: &str, args: &[&str]) -> Option<Built> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tree = dir.path().join("tree");
    if !write_tree(&tree) {
        return None;
    }
    if tool_name.is_empty() {
        return Some(Built {
            dir,
            img: tree,
            fifo: false,
        });
    }
    let Some(tool) = tool(tool_name) else {
        eprintln!("{tool_name} is not installed; skipping the {name} xattr test");
        return None;
    };
    let img = dir.path().join(name);
    let args: Vec<_> = args
        .iter()
        .map(|a| match *a {
            "{tree}" => tree.as_os_str().to_owned(),
            "{img}" => img.as_os_str().to_owned(),
            a => a.into(),
        })
        .collect();
    let out = Command::new(&tool).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool_name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Built {
        dir,
        img,
        fifo: false,
    })
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// Everything the tree's xattrs hold, read back through `fs`.
pub fn check(fs: &dyn Fs) {
    let get = |path: &str, name: &str| fs.xattr(&p(path), name, MAX_XATTR_BYTES);
    let value = |path: &str, name: &str| {
        get(path, name)
            .unwrap_or_else(|e| panic!("{name} of {path}: {e}"))
            .unwrap_or_else(|| panic!("{name} of {path}: missing"))
    };
    assert_eq!(value(RELEASE, STRICT), b"false");
    assert_eq!(get(PLAIN, STRICT).unwrap(), None);
    assert_eq!(get(RELEASE, "user.extension-release.other").unwrap(), None);
    // Same name in another namespace.
    assert_eq!(
        get(RELEASE, "trusted.extension-release.strict").unwrap(),
        None
    );
    assert_eq!(value(SEVERAL, "user.a"), b"1");
    assert_eq!(value(SEVERAL, "user.b"), b"two");
    assert_eq!(value(SEVERAL, "trusted.t"), b"three");
    assert_eq!(value(SEVERAL, "security.s"), b"four");
    assert_eq!(value(SEVERAL, "user.shared"), SHARED);
    assert_eq!(value("/etc/shared", "user.shared"), SHARED);
    assert_eq!(get(SEVERAL, "user.c").unwrap(), None);
    assert_eq!(get(SEVERAL, "nonamespace").unwrap(), None);
    assert_eq!(value(LONG, "user.long"), long_value());
    match fs.xattr(&p(LONG), "user.long", 100) {
        Err(FsError::TooLarge {
            what: "extended attribute",
            size,
            limit: 100,
        }) => assert_eq!(size, LONG_LEN as u64),
        r => panic!("expected TooLarge, got {r:?}"),
    }
    assert_eq!(fs.xattr(&p(RELEASE), STRICT, 5).unwrap().unwrap(), b"false");
    assert!(matches!(
        fs.xattr(&p(RELEASE), STRICT, 4),
        Err(FsError::TooLarge { size: 5, .. })
    ));
    assert!(matches!(get("/etc/none", STRICT), Err(FsError::NotFound)));
    assert!(matches!(get("/none/rel", STRICT), Err(FsError::NotFound)));
    // The link's own attributes, never its target's.
    assert_eq!(get(LINK, STRICT).unwrap(), None);
    assert_eq!(value(LINK, "trusted.link"), b"l");
    assert_eq!(value(DIR, "user.dir"), b"d");
    assert_eq!(get("/etc", "user.dir").unwrap(), None);
    assert_eq!(get("/", "user.dir").unwrap(), None);
}

/// [`check`] and [`check_tree`] of an image built from this fixture's tree; one built without
/// extended attributes must answer that there are none.
pub fn check_image(fs: Box<dyn Fs>, with_xattrs: bool) {
    if !with_xattrs {
        assert_eq!(fs.xattr(&p(RELEASE), STRICT, 99).unwrap(), None);
        return;
    }
    check(&*fs);
    check_tree(fs);
}

/// The same checks through [`super::chase::Tree`], as callers use it.
pub fn check_tree(fs: Box<dyn Fs>) {
    let t = super::chase::Tree::new(fs);
    let get = |path: &str, name: &str| t.xattr(Path::new(path), name);
    assert_eq!(get(RELEASE, STRICT).unwrap().unwrap(), b"false");
    // The link is not followed, and user xattrs of links are always absent.
    assert_eq!(get(LINK, STRICT).unwrap(), None);
    assert_eq!(get(PLAIN, STRICT).unwrap(), None);
    assert_eq!(get(LONG, "user.long").unwrap().unwrap(), long_value());
}

/// Damaged copies of the image, flipped near where the xattrs are (where `needle`, a name
/// or value stored uncompressed, appears): every lookup is an answer, an error or `None`,
/// never a panic reaching the caller.
pub fn check_corrupt(built: &Built, open: Opener, needle: &[u8]) {
    let data = fs::read(&built.img).unwrap();
    let spots: Vec<usize> = data
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert!(!spots.is_empty(), "the needle is not in the image");
    check_corrupt_at(built, open, &spots);
}

/// Damaged copies of the image, flipped within 512 bytes of one of `spots`.
pub fn check_corrupt_at(built: &Built, open: Opener, spots: &[usize]) {
    let data = fs::read(&built.img).unwrap();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let (mut escaped, mut answers, mut errors) = (0, 0, 0);
    let path = built.dir.path().join("damaged");
    for round in 0..200 {
        let mut copy = data.clone();
        let spot = spots[round % spots.len()];
        let lo = spot.saturating_sub(512);
        let hi = (spot + 512).min(copy.len());
        for _ in 0..1 + round % 4 {
            let at = lo + index_below(rng.next(), hi - lo);
            copy[at] ^= 1 << (rng.next() % 8);
        }
        fs::write(&path, &copy).unwrap();
        let src = source(&path);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let Ok(fs) = open(src) else { return (0, 1) };
            let (mut a, mut e) = (0, 0);
            for (file, name) in [
                (RELEASE, STRICT),
                (PLAIN, STRICT),
                (SEVERAL, "user.b"),
                (SEVERAL, "security.s"),
                (LONG, "user.long"),
                (LINK, "trusted.link"),
                (DIR, "user.dir"),
            ] {
                match fs.xattr(&p(file), name, MAX_XATTR_BYTES) {
                    Ok(_) => a += 1,
                    Err(_) => e += 1,
                }
            }
            (a, e)
        }));
        match r {
            Ok((a, e)) => {
                answers += a;
                errors += e;
            }
            Err(_) => escaped += 1,
        }
    }
    eprintln!("200 damaged copies: {answers} answers, {errors} errors");
    assert_eq!(escaped, 0, "panics escaped the reader");
}
