//! The `--root` prefix applied to every path the program reads.
//!
//! Joining `ROOT` and a host path is not enough to read it: the kernel would follow an
//! absolute link in `ROOT/lib -> /usr/lib` (or `..` above `ROOT`) on the machine running
//! the generator, not in the root. [`Root::resolve`] walks a host path inside the root as
//! `chroot` would, one component at a time from a descriptor of the root (see
//! [`crate::image::at`]), and says which directory on the way others could use to steer it.
//!
//! A generator run looks up hundreds of paths below the same few directories. A root made
//! with [`Root::remembering`] takes the host not to change while it is used (a generator
//! run): it opens each directory on the way once and keeps its descriptor and owner, and
//! lists each directory asked for with [`Root::entries`] once, so a lookup costs one
//! `openat` and one `fstat` for its last component. Every answer is the one the walk from
//! the root gives. `openat2(RESOLVE_IN_ROOT)` would resolve a path in one call, but tells
//! neither where it led nor who owns each directory on the way, which every caller here
//! needs (see [`crate::image::at`]); with the directories remembered, the walk costs no
//! more system calls than it would.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::fs::{Mode, OFlags};

use crate::image::at::{self, b};
use crate::image::{DirEntry, FileKind, FsError, MAX_PATH_DEPTH, MAX_PATH_STEPS, MAX_SYMLINKS};
use crate::ownership::{self, Owner};

/// The directory that stands for `/` when reading (never when writing symlink targets or
/// drop-in values: those name paths as the booted system will see them).
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    /// What was looked up already, for a root that remembers (shared by its clones).
    memo: Option<Arc<Mutex<Memo>>>,
}

/// Most directories a remembering root keeps open: a bound on descriptors whatever the
/// root holds (the directories on the way to search paths, unit and profile directories
/// are a few dozen).
const MAX_REMEMBERED_DIRS: usize = 256;

/// The directories a remembering root has entered and listed.
#[derive(Debug, Default)]
struct Memo {
    /// The root itself, opened once.
    base: Option<Arc<Step>>,
    /// Directories entered on the way, by host path (every link on the way resolved).
    dirs: HashMap<PathBuf, Arc<Step>>,
    /// Listings by the host path asked for; `None` where it could not be listed.
    listings: HashMap<PathBuf, Option<Arc<Listing>>>,
}

/// The entries of a directory below the root, as [`Root::entries`] gives them.
#[derive(Debug)]
pub struct Listing {
    /// The directory's host path with every link resolved.
    pub path: PathBuf,
    /// Each entry's kind (a link not followed), by name.
    pub kinds: HashMap<Vec<u8>, FileKind>,
    /// The names, in the order the directory listed them.
    pub names: Vec<Vec<u8>>,
    /// Whether every entry is there: false where listing failed (more than
    /// [`crate::image::MAX_DIR_ENTRIES`] entries, an I/O error), so that only a lookup of
    /// one name can tell.
    pub complete: bool,
}

/// Where a host path led inside the root.
#[derive(Debug)]
pub struct Found {
    /// The host path with every link resolved (the last one too, when followed): what the
    /// booted system finds there.
    pub path: PathBuf,
    /// What is there: a link only when the last one was not followed.
    pub kind: FileKind,
    /// The entry's owner and mode.
    pub owner: Owner,
    /// An `O_PATH` descriptor of the entry (of a final link itself when not followed);
    /// shared with the root's memory of the directories it entered.
    pub fd: Arc<OwnedFd>,
    /// The first directory on the way (the root itself included) in which a user other than
    /// root could have replaced what was found: the directory and who
    /// ([`ownership::unsafe_lookup`]). The entry's own owner and mode are for the caller.
    pub steered_by: Option<(PathBuf, String)>,
}

impl Found {
    /// `"DIR is WHO"` for the first directory on the way others can write, if any.
    pub fn steered(&self) -> Option<String> {
        self.steered_by
            .as_ref()
            .map(|(dir, why)| format!("{} is {why}", dir.display()))
    }
}

/// A directory entered on the way.
#[derive(Debug)]
struct Step {
    fd: Arc<OwnedFd>,
    owner: Owner,
    /// Its host path, every link on the way resolved.
    path: PathBuf,
}

fn path_of(stack: &[Arc<Step>]) -> PathBuf {
    stack
        .last()
        .map_or_else(|| PathBuf::from("/"), |s| s.path.clone())
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

impl Root {
    /// `dir` standing for `/` (`--root DIR`).
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root {
            dir: dir.into(),
            memo: None,
        }
    }

    /// The same root, taken not to change while it is used (one generator run): each
    /// directory is opened, its owner read and, when asked for, listed once.
    #[must_use]
    pub fn remembering(self) -> Root {
        Root {
            memo: Some(Arc::default()),
            ..self
        }
    }

    fn memo(&self) -> Option<std::sync::MutexGuard<'_, Memo>> {
        self.memo
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The root directory, opened (once, for a remembering root).
    fn base(&self) -> Result<Arc<Step>, FsError> {
        if let Some(base) = self.memo().and_then(|m| m.base.clone()) {
            return Ok(base);
        }
        let fd = at::open_base(&self.dir).map_err(at::io)?;
        let step = Arc::new(Step {
            owner: Owner::of_stat(&at::fstat(b(&fd)).map_err(at::io)?),
            fd: Arc::new(fd),
            path: PathBuf::from("/"),
        });
        if let Some(mut m) = self.memo() {
            m.base = Some(step.clone());
        }
        Ok(step)
    }

    /// The directory at the host path `path` (links resolved), if it was entered before.
    fn remembered(&self, path: &Path) -> Option<Arc<Step>> {
        self.memo().and_then(|m| m.dirs.get(path).cloned())
    }

    fn remember(&self, step: &Arc<Step>) {
        if let Some(mut m) = self.memo()
            && m.dirs.len() < MAX_REMEMBERED_DIRS
        {
            m.dirs.insert(step.path.clone(), step.clone());
        }
    }

    /// The real path for the absolute host path `host`. Only for a path with no links on
    /// the way (one [`Root::resolve`] returned), or where the kernel following them on
    /// this machine does no harm: see [`Root::resolve`].
    pub fn join(&self, host: impl AsRef<Path>) -> PathBuf {
        let host = host.as_ref();
        self.dir.join(host.strip_prefix("/").unwrap_or(host))
    }

    /// The directory that stands for `/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this is the running system's own `/` (so `/proc` describes it).
    pub fn is_host(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// Resolve the host path `host` inside the root as the booted system would (systemd's
    /// `chase()` with `CHASE_PREFIX_ROOT`): absolute link targets start at the root, `..`
    /// stops at it, at most [`MAX_SYMLINKS`] links. With `follow_last` false a final link
    /// is found as such. Nothing but `O_PATH` descriptors is opened, so nothing blocks.
    pub fn resolve(&self, host: &Path, follow_last: bool) -> Result<Found, FsError> {
        let mut stack = vec![self.base()?];
        let mut todo: VecDeque<Vec<u8>> = components(host.as_os_str().as_bytes())
            .map(<[u8]>::to_vec)
            .collect();
        let mut steered_by = None;
        let (mut links, mut steps) = (0usize, 0usize);
        while let Some(c) = todo.pop_front() {
            steps += 1;
            if steps > MAX_PATH_STEPS || stack.len() > MAX_PATH_DEPTH {
                return Err(FsError::Corrupt(format!(
                    "a path deeper than {MAX_PATH_DEPTH} levels or of more than {MAX_PATH_STEPS} steps"
                )));
            }
            if c == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let Some(dir) = stack.last() else {
                break;
            };
            let last = todo.is_empty();
            let here = dir.path.join(OsStr::from_bytes(&c));
            // A directory entered before: the same descriptor and owner, no system call.
            if let Some(step) = self.remembered(&here) {
                if steered_by.is_none()
                    && let Some(why) = ownership::unsafe_lookup(dir.owner, step.owner)
                {
                    steered_by = Some((dir.path.clone(), why));
                }
                if last {
                    return Ok(Found {
                        path: here,
                        kind: FileKind::Dir,
                        owner: step.owner,
                        fd: step.fd.clone(),
                        steered_by,
                    });
                }
                stack.push(step);
                continue;
            }
            let fd = match rustix::fs::openat(
                b(&dir.fd),
                OsStr::from_bytes(&c),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Err(FsError::NotFound),
                Err(rustix::io::Errno::NOTDIR) => return Err(FsError::NotADirectory),
                Err(e) => return Err(at::io(e)),
            };
            let st = at::fstat(b(&fd)).map_err(at::io)?;
            let owner = Owner::of_stat(&st);
            if steered_by.is_none()
                && let Some(why) = ownership::unsafe_lookup(dir.owner, owner)
            {
                steered_by = Some((dir.path.clone(), why));
            }
            let kind = at::kind_of(&st);
            if kind == FileKind::Symlink && (follow_last || !last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(FsError::SymlinkLoop);
                }
                // The descriptor of the link itself: what was checked is what is read.
                let target = at::read_link(b(&fd), b"")?;
                if target.first() == Some(&b'/') {
                    stack.truncate(1);
                }
                for t in components(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(t.to_vec());
                }
                continue;
            }
            if last {
                return Ok(Found {
                    path: here,
                    kind,
                    owner,
                    fd: Arc::new(fd),
                    steered_by,
                });
            }
            if kind != FileKind::Dir {
                return Err(FsError::NotADirectory);
            }
            let step = Arc::new(Step {
                fd: Arc::new(fd),
                owner,
                path: here,
            });
            self.remember(&step);
            stack.push(step);
        }
        // Every component consumed by `..` or links: a directory on the stack.
        let path = path_of(&stack);
        let top = stack.pop().ok_or(FsError::NotFound)?;
        Ok(Found {
            path,
            kind: FileKind::Dir,
            owner: top.owner,
            fd: top.fd.clone(),
            steered_by,
        })
    }

    /// The kind of the entry at `host` inside the root, a final link not followed; `None`
    /// when there is none (or a directory on the way is missing).
    pub fn lstat(&self, host: &Path) -> Result<Option<FileKind>, FsError> {
        match self.resolve(host, false) {
            Ok(found) => Ok(Some(found.kind)),
            Err(FsError::NotFound | FsError::NotADirectory) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entries of the directory at `host`, links on the way resolved inside the root,
    /// with it: names, and what each is (a link not followed). At most
    /// [`crate::image::MAX_DIR_ENTRIES`].
    pub fn read_dir(&self, found: &Found) -> Result<Vec<DirEntry>, FsError> {
        let fd = rustix::fs::openat(
            b(&found.fd),
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(at::io)?;
        at::list(b(&found.fd), fd)
    }

    /// The entries of the directory at the host path `dir` (links on the way and the last
    /// one followed inside the root), with what each is (a link not followed); `None` where
    /// there is no such directory. A remembering root lists each directory once.
    pub fn entries(&self, dir: &Path) -> Option<Arc<Listing>> {
        if let Some(known) = self.memo().and_then(|m| m.listings.get(dir).cloned()) {
            return known;
        }
        let listing = self
            .resolve(dir, true)
            .ok()
            .filter(|found| found.kind == FileKind::Dir)
            .map(|found| {
                let (entries, complete) = match self.read_dir(&found) {
                    Ok(entries) => (entries, true),
                    Err(_) => (Vec::new(), false),
                };
                let kinds = entries.iter().map(|e| (e.name.clone(), e.kind)).collect();
                let names = entries.into_iter().map(|e| e.name).collect();
                Arc::new(Listing {
                    path: found.path,
                    kinds,
                    names,
                    complete,
                })
            });
        if let Some(mut m) = self.memo() {
            m.listings.insert(dir.to_path_buf(), listing.clone());
        }
        listing
    }
}

impl Default for Root {
    fn default() -> Root {
        Root::new("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn links_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd/system")).unwrap();
        std::fs::write(r.join("usr/lib/systemd/system/a.service"), b"").unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink("../../../../../../etc/x", r.join("up")).unwrap();
        symlink("/", r.join("top")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let root = Root::new(r);
        let found = root
            .resolve(Path::new("/lib/systemd/system/a.service"), true)
            .unwrap();
        assert_eq!(found.path, Path::new("/usr/lib/systemd/system/a.service"));
        assert_eq!(found.kind, FileKind::File);
        assert!(matches!(
            root.resolve(Path::new("/up"), true),
            Err(FsError::NotFound)
        ));
        assert_eq!(
            root.resolve(Path::new("/top/../top/usr/.."), true)
                .unwrap()
                .path,
            Path::new("/")
        );
        assert_eq!(
            root.lstat(Path::new("/up")).unwrap(),
            Some(FileKind::Symlink)
        );
        assert_eq!(root.lstat(Path::new("/nothing/here")).unwrap(), None);
        assert!(matches!(
            root.resolve(Path::new("/loop"), true),
            Err(FsError::SymlinkLoop)
        ));
        let dir = root
            .resolve(Path::new("/lib/systemd/system"), true)
            .unwrap();
        assert_eq!(
            root.read_dir(&dir).unwrap(),
            vec![DirEntry {
                name: b"a.service".to_vec(),
                kind: FileKind::File
            }]
        );
    }

    /// A remembering root gives the answers of a plain one, from directories it entered
    /// or listed before.
    #[test]
    fn remembered_directories_give_the_same_answers() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd/system/x.d")).unwrap();
        std::fs::write(r.join("usr/lib/systemd/system/a.service"), b"").unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink("../lib/systemd", r.join("usr/sd")).unwrap();
        let plain = Root::new(r);
        let remembering = Root::new(r).remembering();
        let paths = [
            "/lib/systemd/system/a.service",
            "/usr/sd/system/x.d",
            "/usr/lib/systemd/system/../system/a.service",
            "/usr/lib/systemd/system",
            "/lib/../../usr/./lib",
            "/usr/lib/missing/a",
            "/usr/lib/systemd/system/a.service/x",
        ];
        let answer = |root: &Root, p: &str, follow: bool| {
            root.resolve(Path::new(p), follow)
                .map(|f| (f.steered(), f.path, f.kind, f.owner))
                .map_err(|e| e.to_string())
        };
        for _ in 0..2 {
            for p in paths {
                for follow in [true, false] {
                    assert_eq!(
                        answer(&remembering, p, follow),
                        answer(&plain, p, follow),
                        "{p}"
                    );
                }
            }
        }
        let listing = remembering
            .entries(Path::new("/lib/systemd/system"))
            .unwrap();
        assert_eq!(listing.path, Path::new("/usr/lib/systemd/system"));
        assert!(listing.complete);
        assert_eq!(listing.kinds.get(&b"a.service"[..]), Some(&FileKind::File));
        assert_eq!(listing.kinds.get(&b"x.d"[..]), Some(&FileKind::Dir));
        // Listed once: a file made afterwards is not seen by the remembering root.
        std::fs::write(r.join("usr/lib/systemd/system/b.service"), b"").unwrap();
        let again = remembering
            .entries(Path::new("/lib/systemd/system"))
            .unwrap();
        assert_eq!(again.names.len(), 2);
        assert_eq!(
            plain
                .entries(Path::new("/lib/systemd/system"))
                .unwrap()
                .names
                .len(),
            3
        );
        assert!(remembering.entries(Path::new("/etc/nothing")).is_none());
        assert!(
            remembering
                .entries(Path::new("/usr/lib/systemd/system/a.service"))
                .is_none()
        );
    }

    #[test]
    fn directories_others_can_write_on_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("var/lib/portables")).unwrap();
        let root = Root::new(r);
        let at = Path::new("/var/lib/portables");
        if root.resolve(at, true).unwrap().owner.uid != 0 {
            return; // Only root's files are trusted: the rest needs root.
        }
        assert_eq!(root.resolve(at, true).unwrap().steered(), None);
        let chmod = |mode| {
            std::fs::set_permissions(r.join("var/lib"), std::fs::Permissions::from_mode(mode))
                .unwrap();
        };
        chmod(0o777);
        assert_eq!(
            root.resolve(at, true).unwrap().steered().as_deref(),
            Some("/var/lib is writable by every user (mode 0777)")
        );
        chmod(0o1777);
        assert_eq!(root.resolve(at, true).unwrap().steered(), None);
    }
}
