//! Directory images: the host's own file system below the image directory.
//!
//! Every access starts from a descriptor of the image directory and goes one component at
//! a time ([`super::at`]): paths come resolved from [`super::chase::Tree`], so a symlink met
//! now is a directory swapped for a link since (a race, reported as a change), never a
//! way out of the image.
//!
//! The directories walked to stay open (a few dozen at most): a unit file is then one
//! `openat` below its directory's descriptor instead of a walk from the image root. Where
//! root must not follow what others can change, each directory's owner and mode are checked
//! once, by `fstat` when it is opened, for the life of the reader (one image in one run).
//! That is enough: a directory that passed is root's and writable by root alone, so no one
//! else can change its mode, owner or entries afterwards; and a directory renamed or
//! swapped after it was opened is still the one that was checked, so it can only lead to
//! what was inside the image.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::at::{self, b};
use super::{DirEntry, FileKind, Fs, FsError, MAX_PATH_DEPTH, MAX_XATTR_BYTES, xattr_too_large};
use crate::ownership::{self, Owner};

/// A directory tree used as an image.
pub struct DirFs {
    /// `O_PATH` descriptor of the image directory, or why it could not be opened.
    base: Result<OwnedFd, Errno>,
    /// Refuse files, and directories on the way to them, that a user other than root can
    /// change (directory images: root runs their units).
    owned_by_root: bool,
    /// Directories walked to, by their path in the image (`/` the image root), each open
    /// `O_PATH` and checked: lookups below them start there. At most [`MAX_OPEN_DIRS`].
    open_dirs: RefCell<HashMap<PathBuf, Rc<Parent>>>,
}

/// Directories kept open per image: the unit directories, os-release's and the ones on
/// the way to them are about a dozen. Past it further directories are walked to each time,
/// so a crafted image holds no more descriptors however deep or wide it is.
const MAX_OPEN_DIRS: usize = 32;

/// The directory holding an entry, reached from the base.
struct Parent {
    fd: OwnedFd,
    /// As of when it was opened.
    owner: Owner,
    /// Its path inside the image, for messages.
    path: PathBuf,
}

fn components(path: &Path) -> Result<Vec<&[u8]>, FsError> {
    let parts: Vec<&[u8]> = path
        .as_os_str()
        .as_bytes()
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    // Paths come resolved: a `..` would be a caller's mistake, and is not walked.
    if parts.contains(&&b".."[..]) {
        return Err(FsError::Corrupt(format!(
            "unresolved path {}",
            path.display()
        )));
    }
    if parts.len() > MAX_PATH_DEPTH {
        return Err(FsError::Corrupt(format!(
            "a path deeper than {MAX_PATH_DEPTH} levels"
        )));
    }
    Ok(parts)
}

impl DirFs {
    /// The tree below the directory `base`, opened now; if that fails, every lookup says why.
    pub fn new(base: &Path) -> DirFs {
        DirFs {
            base: at::open_base(base),
            owned_by_root: false,
            open_dirs: RefCell::default(),
        }
    }

    /// The tree below an open directory (e.g. one reached inside `--root`).
    pub fn from_fd(fd: OwnedFd) -> DirFs {
        DirFs {
            base: Ok(fd),
            owned_by_root: false,
            open_dirs: RefCell::default(),
        }
    }

    /// Files read must be changeable by root alone (directory images: root runs their units).
    pub fn owned_by_root(self) -> DirFs {
        DirFs {
            owned_by_root: true,
            ..self
        }
    }

    fn base(&self) -> Result<BorrowedFd<'_>, FsError> {
        match &self.base {
            Ok(fd) => Ok(fd.as_fd()),
            Err(e) => Err(at::io(*e)),
        }
    }

    /// Refuse `entry` found in `dir` if others can steer that lookup.
    fn check_lookup(&self, dir: &Parent, entry: Owner) -> Result<(), FsError> {
        if !self.owned_by_root {
            return Ok(());
        }
        match ownership::unsafe_lookup(dir.owner, entry) {
            Some(why) => Err(FsError::WritableByOthers {
                path: Some(dir.path.clone()),
                why,
            }),
            None => Ok(()),
        }
    }

    /// Walk from the base through every component of `dirs`, each a directory, starting
    /// from the deepest one on the way already open.
    fn walk(&self, dirs: &[&[u8]]) -> Result<Rc<Parent>, FsError> {
        // The path of each directory on the way is a prefix of the last one's: one buffer,
        // and `ends[i]` where the path of the i-th ("/" the image root) ends in it.
        let mut full = Vec::with_capacity(dirs.iter().map(|d| d.len() + 1).sum::<usize>() + 1);
        let mut ends = Vec::with_capacity(dirs.len() + 1);
        full.push(b'/');
        ends.push(1);
        for name in dirs {
            if full.len() > 1 {
                full.push(b'/');
            }
            full.extend_from_slice(name);
            ends.push(full.len());
        }
        let path = |i: usize| Path::new(OsStr::from_bytes(&full[..ends[i]]));
        let open = self.open_dirs.borrow();
        let found = (0..ends.len())
            .rev()
            .find_map(|i| open.get(path(i)).map(|p| (i, p.clone())));
        drop(open);
        let (done, mut here) = match found {
            Some(found) => found,
            None => {
                let fd = self.base()?.try_clone_to_owned().map_err(FsError::Io)?;
                let root = Rc::new(Parent {
                    owner: Owner::of_stat(&at::fstat(b(&fd)).map_err(at::io)?),
                    fd,
                    path: PathBuf::from("/"),
                });
                self.keep(&root);
                (0, root)
            }
        };
        for (i, name) in dirs.iter().enumerate().skip(done) {
            let path = path(i + 1);
            let fd = at::step_dir(b(&here.fd), name, path)?;
            let owner = Owner::of_stat(&at::fstat(b(&fd)).map_err(at::io)?);
            self.check_lookup(&here, owner)?;
            here = Rc::new(Parent {
                fd,
                owner,
                path: path.to_path_buf(),
            });
            self.keep(&here);
        }
        Ok(here)
    }

    /// Keep `dir` open for the lookups below it. Once [`MAX_OPEN_DIRS`] are, no more are
    /// kept: every directory kept has the ones on its way kept too.
    fn keep(&self, dir: &Rc<Parent>) {
        let mut open = self.open_dirs.borrow_mut();
        if open.len() < MAX_OPEN_DIRS {
            open.insert(dir.path.clone(), dir.clone());
        }
    }

    /// The directory holding the last component of `path`, and that component (`None`
    /// for the image root).
    fn parent<'p>(&self, path: &'p Path) -> Result<(Rc<Parent>, Option<&'p [u8]>), FsError> {
        let parts = components(path)?;
        match parts.split_last() {
            Some((last, dirs)) => Ok((self.walk(dirs)?, Some(last))),
            None => Ok((self.walk(&[])?, None)),
        }
    }

    /// `lstat` of `name` in `dir`, checked like any lookup.
    fn entry(&self, dir: &Parent, name: &[u8]) -> Result<Option<rustix::fs::Stat>, FsError> {
        let Some(st) = at::lstat(b(&dir.fd), name).map_err(at::io)? else {
            return Ok(None);
        };
        self.check_lookup(dir, Owner::of_stat(&st))?;
        Ok(Some(st))
    }

    /// Open `path` itself (a file or directory) for reading.
    fn open_read(&self, dir: &Parent, name: Option<&[u8]>, shown: &Path) -> Result<File, FsError> {
        let fd = match name {
            Some(name) => at::open_read(b(&dir.fd), name, shown)?,
            None => rustix::fs::openat(
                b(&dir.fd),
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(at::io)?,
        };
        Ok(File::from(fd))
    }
}

impl Fs for DirFs {
    fn may_change(&self) -> bool {
        true
    }

    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        let (dir, name) = match self.parent(path) {
            Ok(p) => p,
            Err(FsError::NotFound | FsError::NotADirectory) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(name) = name else {
            return Ok(Some(FileKind::Dir));
        };
        // Most lookups are of directories on the way somewhere: opened now, and kept, the
        // walk below them starts there.
        match at::try_dir(b(&dir.fd), name).map_err(at::io)? {
            at::Found::Absent => Ok(None),
            at::Found::Other => Ok(self.entry(&dir, name)?.map(|st| at::kind_of(&st))),
            at::Found::Dir(fd) => {
                let owner = Owner::of_stat(&at::fstat(b(&fd)).map_err(at::io)?);
                self.check_lookup(&dir, owner)?;
                self.keep(&Rc::new(Parent {
                    fd,
                    owner,
                    path: dir.path.join(OsStr::from_bytes(name)),
                }));
                Ok(Some(FileKind::Dir))
            }
        }
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
        let dir = self.walk(&components(path)?)?;
        // Whoever can add an entry here decides what is found: no exception for sticky
        // directories when listing.
        if self.owned_by_root
            && let Some(why) = ownership::writable_by(dir.owner)
        {
            return Err(FsError::WritableByOthers {
                path: Some(dir.path.clone()),
                why,
            });
        }
        let file = self.open_read(&dir, None, &dir.path)?;
        at::list(b(&dir.fd), file.into())
    }

    fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        let (dir, name) = self.parent(path)?;
        let name = name.ok_or(FsError::WrongType("not a symbolic link"))?;
        self.entry(&dir, name)?.ok_or(FsError::NotFound)?;
        // Asked for because the resolver saw a link here a moment ago.
        match at::read_link(b(&dir.fd), name) {
            Err(FsError::WrongType(_)) => Err(at::changed(path, "it is no longer a symbolic link")),
            r => r,
        }
    }

    fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        let (dir, name) = self.parent(path)?;
        let name = name.ok_or(FsError::WrongType("is a directory"))?;
        let file = self.open_read(&dir, Some(name), path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(FsError::WrongType("is a directory"));
        }
        if !meta.file_type().is_file() {
            return Err(FsError::WrongType("not a regular file"));
        }
        let owner = Owner::of(&meta);
        self.check_lookup(&dir, owner)?;
        if self.owned_by_root
            && let Some(why) = ownership::writable_by(owner)
        {
            return Err(FsError::WritableByOthers { path: None, why });
        }
        if meta.len() > limit {
            return Err(FsError::TooLarge {
                what: "file",
                size: meta.len(),
                limit,
            });
        }
        // One byte more than the size: a read that comes back with the size and no more has
        // met the end, with no second read to be told so. The size (at most `limit`, checked
        // above) is only a hint: a file that grew or shrank since is read to its end.
        let size = usize::try_from(meta.len()).unwrap_or(0);
        let mut data = vec![0; size + 1];
        let got = read_some(&file, &mut data)?;
        data.truncate(got);
        if got != size {
            let left = (limit + 1).saturating_sub(got as u64);
            (&file).take(left).read_to_end(&mut data)?;
        }
        if data.len() as u64 > limit {
            return Err(FsError::TooLarge {
                what: "file",
                size: data.len() as u64,
                limit,
            });
        }
        Ok(data)
    }

    fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        let (dir, entry) = self.parent(path)?;
        // No value is larger than the kernel's XATTR_SIZE_MAX; one byte more than the
        // limit tells a value over it from one that just fits.
        let room = limit.min(MAX_XATTR_BYTES) as usize + 1;
        let mut buf = vec![0u8; room];
        let kind = match entry {
            None => FileKind::Dir,
            Some(e) => at::kind_of(&self.entry(&dir, e)?.ok_or(FsError::NotFound)?),
        };
        let got = if matches!(kind, FileKind::File | FileKind::Dir) {
            let file = self.open_read(&dir, entry, path)?;
            rustix::fs::fgetxattr(&file, name, &mut buf[..])
                .map_err(|e| (e, rustix::fs::fgetxattr_query(&file, name)))
        } else {
            // A link, device or FIFO is not opened: its attributes are read through the
            // directory's descriptor, the entry itself not followed (as systemd's
            // getxattr_at_malloc() does with /proc/self/fd/).
            let mut proc = format!("/proc/self/fd/{}/", dir.fd.as_raw_fd()).into_bytes();
            proc.extend_from_slice(entry.unwrap_or_default());
            let proc = OsStr::from_bytes(&proc);
            rustix::fs::lgetxattr(proc, name, &mut buf[..])
                .map_err(|e| (e, rustix::fs::lgetxattr_query(proc, name)))
        };
        match got {
            Ok(n) if n as u64 > limit => Err(xattr_too_large(n as u64, limit)),
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            // No such attribute; or a file system without extended attributes (or without
            // this namespace), which holds none.
            Err((Errno::NODATA | Errno::NOTSUP, _)) => Ok(None),
            // The value did not fit: it is over the limit. Its size is only for the message.
            Err((Errno::RANGE, size)) => {
                Err(xattr_too_large(size.map_or(u64::MAX, |n| n as u64), limit))
            }
            Err((e, _)) => Err(at::io(e)),
        }
    }
}

/// One `read` into `buf`, again if a signal interrupted it.
fn read_some(mut file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::xattr_fixture;

    use crate::image::chase::Tree;
    use std::os::unix::fs::symlink;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// `usr/lib/systemd` of an image swapped for a link out of it, and back, as fast as
    /// the kernel allows while a unit is read again and again: nothing from outside may
    /// ever come back (opening by path read the outside unit in 25 of 150 tries).
    #[test]
    fn directory_swapped_for_a_link_while_read() {
        const TRIES: usize = 2000;
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("img");
        let outside = tmp.path().join("outside");
        let unit = "system/race.service";
        std::fs::create_dir_all(img.join("usr/lib/systemd/system")).unwrap();
        std::fs::create_dir_all(outside.join("system")).unwrap();
        std::fs::write(img.join("usr/lib/systemd").join(unit), b"INSIDE").unwrap();
        std::fs::write(outside.join(unit), b"OUTSIDE").unwrap();
        std::fs::write(outside.join("system/outside.service"), b"OUTSIDE").unwrap();
        // Absolute: taken inside the image by the resolver; relative: climbs out of it
        // when the kernel follows it.
        symlink(&outside, img.join("usr/lib/systemd.abs")).unwrap();
        symlink("../../../outside", img.join("usr/lib/systemd.rel")).unwrap();

        let lib = img.join("usr/lib");
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = {
            let stop = stop.clone();
            let lib = lib.clone();
            std::thread::spawn(move || {
                let dir = rustix::fs::open(&lib, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
                    .unwrap();
                let mut flips = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let alt = if flips.is_multiple_of(2) {
                        "systemd.abs"
                    } else {
                        "systemd.rel"
                    };
                    // Twice: the directory goes out and comes back each round.
                    for _ in 0..2 {
                        rustix::fs::renameat_with(
                            &dir,
                            "systemd",
                            &dir,
                            alt,
                            rustix::fs::RenameFlags::EXCHANGE,
                        )
                        .unwrap();
                    }
                    flips += 1;
                }
                flips
            })
        };

        let tree = Tree::new(Box::new(DirFs::new(&img).owned_by_root()));
        let (mut inside, mut errors, mut escapes) = (0, 0, 0);
        for _ in 0..TRIES {
            for got in [
                tree.read_file(Path::new("/usr/lib/systemd/system/race.service"), 100),
                tree.read_file(
                    Path::new("/lib/../usr/lib/systemd/system/race.service"),
                    100,
                ),
            ] {
                match got {
                    Ok(b) if b == b"INSIDE" => inside += 1,
                    Ok(_) => escapes += 1,
                    Err(_) => errors += 1,
                }
            }
            if let Ok((_, entries)) = tree.read_dir(Path::new("/usr/lib/systemd/system"))
                && entries.iter().any(|e| e.name == b"outside.service")
            {
                escapes += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let flips = flipper.join().unwrap();
        eprintln!(
            "{} reads while the directory was swapped {flips} times: {inside} from the image, \
             {errors} refused as changed, {escapes} from outside",
            2 * TRIES
        );
        assert_eq!(escapes, 0, "read a unit from outside the image");
        assert!(inside > 0, "the race left no read through");
    }

    #[test]
    fn directories_others_can_write_on_the_way() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("img");
        std::fs::create_dir_all(img.join("usr/lib/systemd/system")).unwrap();
        std::fs::write(img.join("usr/lib/systemd/system/a.service"), b"x").unwrap();
        // Each run reads an image with a reader of its own, which checks each directory
        // once, when it opens it.
        let reader = || Tree::new(Box::new(DirFs::new(&img).owned_by_root()));
        let unit = Path::new("/usr/lib/systemd/system/a.service");
        if std::fs::metadata(&img).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) != 0) {
            return; // Only root's files are trusted: the rest needs root.
        }
        assert!(reader().read_file(unit, 10).is_ok());
        let chmod = |p: &str, mode| {
            std::fs::set_permissions(img.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        };
        chmod("usr/lib", 0o777);
        let e = reader().read_file(unit, 10).unwrap_err().to_string();
        assert!(
            e.starts_with("/usr/lib is writable by every user (mode 0777): root must not"),
            "{e}"
        );
        // Found by a listing too, and by a lookup below a directory already open.
        let tree = reader();
        assert!(tree.resolve(Path::new("/usr"), true).is_ok());
        let e = tree
            .read_dir(Path::new("/usr/lib/systemd/system"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/usr/lib is writable by every user"), "{e}");
        // Sticky, as /tmp: others cannot replace root's entries in it.
        chmod("usr/lib", 0o1777);
        assert!(reader().read_file(unit, 10).is_ok());
        // But whoever can add to the unit directory adds units: listing it is refused.
        chmod("usr/lib/systemd/system", 0o1777);
        let e = reader()
            .read_dir(Path::new("/usr/lib/systemd/system"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/usr/lib/systemd/system is writable by every user (mode 1777)"),
            "{e}"
        );
        // Trusted (AllowWritableByOthers=yes): read.
        let trusting = Tree::new(Box::new(DirFs::new(&img)));
        assert!(
            trusting
                .read_dir(Path::new("/usr/lib/systemd/system"))
                .is_ok()
        );
    }

    #[test]
    fn directories_kept_open_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let mut deep = tmp.path().to_path_buf();
        let mut inside = PathBuf::from("/");
        for i in 0..MAX_OPEN_DIRS + 8 {
            deep.push(format!("d{i}"));
            inside.push(format!("d{i}"));
            std::fs::create_dir(&deep).unwrap();
            std::fs::write(deep.join("f"), format!("{i}")).unwrap();
        }
        let fs = DirFs::new(tmp.path());
        let tree = Tree::new(Box::new(DirFs::new(tmp.path())));
        // Deepest first, then every level again: past the bound, walks still succeed.
        for path in inside.ancestors().filter(|p| *p != Path::new("/")) {
            let file = path.join("f");
            let want = path.file_name().unwrap().to_str().unwrap()[1..].to_string();
            assert_eq!(fs.read_file(&file, 9).unwrap(), want.as_bytes());
            assert_eq!(tree.read_file(&file, 9).unwrap(), want.as_bytes());
            assert!(fs.open_dirs.borrow().len() <= MAX_OPEN_DIRS);
        }
        assert_eq!(fs.open_dirs.borrow().len(), MAX_OPEN_DIRS);
    }

    #[test]
    fn reads_xattrs() {
        let Some(built) = xattr_fixture::build("tree", "", &[]) else {
            return;
        };
        xattr_fixture::check(&DirFs::new(&built.img));
        xattr_fixture::check_tree(Box::new(DirFs::new(&built.img)));
    }
}
