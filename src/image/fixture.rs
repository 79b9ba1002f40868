//! Test support for the file-system readers: images built by the real mkfs tools from one
//! tree, and the checks every back-end shares.

use crate::testutil::{XorShift, index_below};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::source::Source;
use crate::image::{FileKind, Fs, FsError, MAX_FILE_BYTES, MAX_XATTR_BYTES};

pub type Opener = fn(Source) -> Result<Box<dyn Fs>, FsError>;

pub const OS_RELEASE: &[u8] = b"ID=test\nNAME=\"Test image\"\n";
pub const FOO: &[u8] = b"[Unit]\nDescription=foo\n\n[Service]\nExecStart=/usr/bin/foo\n";
pub const DROPIN: &[u8] = b"[Service]\nEnvironment=A=1\n";
pub const UNITS: &str = "/usr/lib/systemd/system";
pub const BIG_LEN: usize = 200 * 1024;

/// Longer than the 60 bytes ext4 keeps inside the inode, so it is stored as data.
pub fn long_target() -> String {
    format!("{}foo.service", "./".repeat(60))
}

/// Compressible, so compressed images really compress it, but not trivially so.
pub fn big() -> Vec<u8> {
    let mut v = b"[Service]\n".to_vec();
    let mut i = 0u64;
    while v.len() < BIG_LEN {
        let line = format!(
            "Environment=VAR{i}={}\n",
            i.wrapping_mul(2_654_435_761) % 1000
        );
        v.extend_from_slice(line.as_bytes());
        i += 1;
    }
    v.truncate(BIG_LEN);
    v
}

/// mkfs tools live in sbin directories, which an unprivileged PATH often lacks.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn write_tree(root: &Path, fifo: bool) -> std::io::Result<bool> {
    let units = root.join(UNITS.trim_start_matches('/'));
    fs::create_dir_all(units.join("foo.service.d"))?;
    fs::create_dir_all(root.join("etc"))?;
    fs::write(root.join("usr/lib/os-release"), OS_RELEASE)?;
    symlink("../usr/lib/os-release", root.join("etc/os-release"))?;
    symlink("usr/lib", root.join("lib"))?;
    fs::write(units.join("foo.service"), FOO)?;
    symlink("foo.service", units.join("foo-alias.service"))?;
    symlink(
        "/usr/lib/systemd/system/foo.service",
        units.join("abs.service"),
    )?;
    symlink(long_target(), units.join("long-alias.service"))?;
    fs::write(units.join("big.service"), big())?;
    fs::write(units.join("empty.service"), b"")?;
    fs::write(units.join("foo.service.d/override.conf"), DROPIN)?;
    let fifo = fifo
        && Command::new("mkfifo")
            .arg(units.join("pipe"))
            .status()
            .is_ok_and(|s| s.success());
    Ok(fifo)
}

/// An image file and the directory holding it, removed on drop.
pub struct Built {
    pub dir: tempfile::TempDir,
    pub img: PathBuf,
    pub fifo: bool,
}

/// Build `name` with `tool`; `{tree}` and `{img}` in `args` are replaced. `None`, with
/// a message, when the tool is not installed. A tool that refuses the FIFO is given
/// the tree again without it.
pub fn build(name: &str, tool_name: &str, args: &[&str]) -> Option<Built> {
    let Some(tool) = tool(tool_name) else {
        eprintln!("{tool_name} is not installed; skipping the {name} test");
        return None;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let img = dir.path().join(name);
    let mut last = String::new();
    for fifo in [true, false] {
        let tree = dir.path().join(if fifo { "tree" } else { "tree-nofifo" });
        let fifo = write_tree(&tree, fifo).expect("writing the tree");
        let args: Vec<_> = args
            .iter()
            .map(|a| match *a {
                "{tree}" => tree.as_os_str().to_owned(),
                "{img}" => img.as_os_str().to_owned(),
                a => a.into(),
            })
            .collect();
        let _ = fs::remove_file(&img);
        let out = Command::new(&tool)
            .args(&args)
            .output()
            .expect("running the mkfs tool");
        if out.status.success() {
            return Some(Built { dir, img, fifo });
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        if !fifo {
            break;
        }
    }
    panic!("{tool_name} failed: {last}");
}

pub fn source(path: &Path) -> Source {
    let file = File::open(path).expect("opening the image");
    let len = file.metadata().expect("image size").len();
    Source::new(file, len)
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn unit(name: &str) -> PathBuf {
    Path::new(UNITS).join(name)
}

/// Everything the tree holds, read back through `fs`.
pub fn check_contents(fs: &dyn Fs, fifo: bool) {
    assert_eq!(fs.lstat(&p("/")).unwrap(), Some(FileKind::Dir));
    assert_eq!(fs.lstat(&p("/usr/lib")).unwrap(), Some(FileKind::Dir));
    assert_eq!(fs.lstat(&p("/lib")).unwrap(), Some(FileKind::Symlink));
    assert_eq!(
        fs.lstat(&p("/etc/os-release")).unwrap(),
        Some(FileKind::Symlink)
    );
    assert_eq!(
        fs.lstat(&p("/usr/lib/os-release")).unwrap(),
        Some(FileKind::File)
    );
    assert_eq!(
        fs.lstat(&unit("foo.service.d")).unwrap(),
        Some(FileKind::Dir)
    );
    assert_eq!(fs.lstat(&p("/nonexistent")).unwrap(), None);
    assert_eq!(fs.lstat(&unit("nonexistent.service")).unwrap(), None);
    if fifo {
        assert_eq!(fs.lstat(&unit("pipe")).unwrap(), Some(FileKind::Other));
    }

    let mut root: Vec<_> = fs
        .read_dir(&p("/"))
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    root.retain(|(n, _)| n != b"lost+found");
    root.sort();
    assert_eq!(
        root,
        [
            (b"etc".to_vec(), FileKind::Dir),
            (b"lib".to_vec(), FileKind::Symlink),
            (b"usr".to_vec(), FileKind::Dir)
        ]
    );
    let mut units: Vec<_> = fs
        .read_dir(&p(UNITS))
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    units.sort();
    let mut want = vec![
        (b"abs.service".to_vec(), FileKind::Symlink),
        (b"big.service".to_vec(), FileKind::File),
        (b"empty.service".to_vec(), FileKind::File),
        (b"foo-alias.service".to_vec(), FileKind::Symlink),
        (b"foo.service".to_vec(), FileKind::File),
        (b"foo.service.d".to_vec(), FileKind::Dir),
        (b"long-alias.service".to_vec(), FileKind::Symlink),
    ];
    if fifo {
        want.push((b"pipe".to_vec(), FileKind::Other));
    }
    want.sort();
    assert_eq!(units, want);
    let dropins = fs.read_dir(&unit("foo.service.d")).unwrap();
    assert_eq!(dropins.len(), 1);
    assert_eq!(
        (&dropins[0].name[..], dropins[0].kind),
        (&b"override.conf"[..], FileKind::File)
    );
    assert!(matches!(
        fs.read_dir(&p("/nonexistent")),
        Err(FsError::NotFound)
    ));
    assert!(fs.read_dir(&unit("foo.service")).is_err());
    assert!(
        fs.read_dir(&p("/lib")).is_err(),
        "read_dir must not follow a final symlink"
    );

    assert_eq!(
        fs.read_link(&p("/etc/os-release")).unwrap(),
        b"../usr/lib/os-release"
    );
    assert_eq!(fs.read_link(&p("/lib")).unwrap(), b"usr/lib");
    assert_eq!(
        fs.read_link(&unit("foo-alias.service")).unwrap(),
        b"foo.service"
    );
    assert_eq!(
        fs.read_link(&unit("abs.service")).unwrap(),
        b"/usr/lib/systemd/system/foo.service"
    );
    assert_eq!(
        fs.read_link(&unit("long-alias.service")).unwrap(),
        long_target().as_bytes()
    );
    assert!(fs.read_link(&unit("foo.service")).is_err());
    assert!(matches!(
        fs.read_link(&unit("nonexistent")),
        Err(FsError::NotFound)
    ));

    assert_eq!(
        fs.read_file(&p("/usr/lib/os-release"), MAX_FILE_BYTES)
            .unwrap(),
        OS_RELEASE
    );
    assert_eq!(
        fs.read_file(&unit("foo.service"), FOO.len() as u64)
            .unwrap(),
        FOO
    );
    assert_eq!(
        fs.read_file(&unit("foo.service.d/override.conf"), MAX_FILE_BYTES)
            .unwrap(),
        DROPIN
    );
    assert_eq!(fs.read_file(&unit("empty.service"), 0).unwrap(), b"");
    assert_eq!(
        fs.read_file(&unit("big.service"), MAX_FILE_BYTES).unwrap(),
        big()
    );
    match fs.read_file(&unit("big.service"), 1000) {
        Err(FsError::TooLarge {
            what: "file",
            size,
            limit: 1000,
        }) => {
            assert_eq!(size, BIG_LEN as u64);
        }
        r => panic!("expected TooLarge, got {:?}", r.map(|v| v.len())),
    }
    assert!(matches!(
        fs.read_file(&unit("foo.service"), FOO.len() as u64 - 1),
        Err(FsError::TooLarge { .. })
    ));
    assert!(matches!(
        fs.read_file(&unit("nonexistent.service"), 100),
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        fs.read_file(&p("/nonexistent/x"), 100),
        Err(FsError::NotFound)
    ));
    assert!(
        fs.read_file(&p("/etc/os-release"), 100).is_err(),
        "read_file must not follow a final symlink"
    );
    assert!(fs.read_file(&unit("foo.service.d"), 100).is_err());
    if fifo {
        assert!(fs.read_file(&unit("pipe"), 100).is_err());
    }
}

pub fn check_image(built: &Built, open: Opener) {
    let fs = open(source(&built.img)).unwrap_or_else(|e| panic!("open: {e}"));
    check_contents(&*fs, built.fifo);
}

/// The image behind 1 MiB of something else, as a partition sits in a disk image.
pub fn check_at_offset(built: &Built, open: Opener) {
    const OFFSET: u64 = 1 << 20;
    let data = fs::read(&built.img).unwrap();
    let path = built.dir.path().join("disk");
    let mut f = File::create(&path).unwrap();
    f.write_all(&vec![0u8; usize::try_from(OFFSET).unwrap()])
        .unwrap();
    f.write_all(&data).unwrap();
    // Bytes after the partition must not be read as part of it.
    f.write_all(&[0xa5; 4096]).unwrap();
    drop(f);
    let disk = source(&path);
    let part = disk.slice(OFFSET, data.len() as u64).unwrap();
    let fs = open(part).unwrap_or_else(|e| panic!("open at an offset: {e}"));
    check_contents(&*fs, built.fifo);
}

#[derive(Default, Debug)]
struct Walk {
    calls: usize,
    errors: usize,
    caught: usize,
}

impl Walk {
    fn note<T>(&mut self, r: Result<T, FsError>) -> Option<T> {
        self.calls += 1;
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors += 1;
                if matches!(&e, FsError::Corrupt(m) if m.starts_with(crate::image::PANICKED)) {
                    self.caught += 1;
                }
                None
            }
        }
    }

    fn dir(&mut self, fs: &dyn Fs, dir: &Path, depth: usize) {
        if depth > 8 || self.calls > 5000 {
            return;
        }
        let Some(entries) = self.note(fs.read_dir(dir)) else {
            return;
        };
        for e in entries {
            if e.name.is_empty() || e.name.contains(&b'/') || e.name == b"." || e.name == b".." {
                continue;
            }
            let path = dir.join(OsStr::from_bytes(&e.name));
            self.note(fs.lstat(&path));
            self.note(fs.xattr(&path, "user.extension-release.strict", MAX_XATTR_BYTES));
            match e.kind {
                FileKind::Dir => self.dir(fs, &path, depth + 1),
                FileKind::File => {
                    self.note(fs.read_file(&path, MAX_FILE_BYTES));
                }
                FileKind::Symlink => {
                    self.note(fs.read_link(&path));
                }
                FileKind::Other => {}
            }
        }
    }

    fn everything(&mut self, fs: &dyn Fs) {
        for path in ["/", "/etc/os-release", "/usr/lib/os-release", "/lib", UNITS] {
            self.note(fs.lstat(&p(path)));
            self.note(fs.read_file(&p(path), MAX_FILE_BYTES));
            self.note(fs.read_link(&p(path)));
        }
        self.dir(fs, &p("/"), 0);
    }
}

/// Damaged copies of the image: each is opened and walked completely; errors are
/// fine, a panic reaching the caller is not.
pub fn check_corrupt(built: &Built, open: Opener) {
    let data = fs::read(&built.img).unwrap();
    let mut variants = vec![("truncated".to_string(), data[..data.len() / 2].to_vec())];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..24 {
        let mut copy = data.clone();
        // Most rounds hit the middle, as asked; some anywhere, where the metadata is.
        let (lo, span) = if round % 3 == 2 {
            (0, data.len())
        } else {
            (data.len() / 4, data.len() / 2)
        };
        for _ in 0..32 {
            let at = lo + index_below(rng.next(), span);
            copy[at] ^= u8::try_from(rng.next() % 255 + 1).unwrap();
        }
        variants.push((format!("flipped #{round}"), copy));
    }
    let count = variants.len();
    let (mut escaped, mut opened, mut calls, mut errors, mut caught) = (0, 0, 0, 0, 0);
    for (what, bytes) in variants {
        let path = built.dir.path().join("damaged");
        fs::write(&path, &bytes).unwrap();
        let src = source(&path);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut walk = Walk::default();
            let fs = walk.note(open(src));
            if let Some(fs) = &fs {
                walk.everything(&**fs);
            }
            (fs.is_some(), walk)
        }));
        match r {
            Ok((ok, walk)) => {
                opened += usize::from(ok);
                calls += walk.calls;
                errors += walk.errors;
                caught += walk.caught;
            }
            Err(_) => {
                eprintln!("{what}: a panic escaped the reader");
                escaped += 1;
            }
        }
    }
    eprintln!(
        "{count} damaged copies: {opened} opened; {calls} calls, {errors} errors, \
         {caught} of them panics caught in the reader"
    );
    assert_eq!(escaped, 0, "panics escaped the reader");
}
