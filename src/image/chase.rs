//! Path resolution inside an image, as `chroot` would do it: absolute symlink targets start
//! at the image root and `..` never climbs above it. Back-ends only ever see resolved paths.
//!
//! A generator resolves a dozen paths per image through the same few directories
//! (`/etc/os-release`, five unit directories, each unit file): what each resolved path is,
//! and where each link points, is remembered for the life of the [`Tree`], and a listing
//! tells the kind of every entry in it, so a unit file found by listing its directory is
//! read without one more lookup of its own or of any directory on the way. In readers
//! whose lookup walks from the root (ext4, erofs), this turns the O(depth²) lookups of one
//! path into one per new component.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::{
    DirEntry, FileKind, Fs, FsError, MAX_DIR_ENTRIES, MAX_PATH_DEPTH, MAX_PATH_STEPS, MAX_SYMLINKS,
    MAX_XATTR_BYTES, too_many_entries,
};

/// Bytes of paths and link targets remembered by one [`Tree`] (each entry counted with
/// [`KNOWN_ENTRY_BYTES`] on top); past it the memory starts over, so a crafted image with
/// huge directories costs lookups again, never memory.
const MAX_KNOWN_BYTES: usize = 256 * 1024;
/// What one remembered entry costs besides its path and target: the map's slot and the
/// allocation headers.
const KNOWN_ENTRY_BYTES: usize = 64;

/// An image's file system with symlink-following lookups confined to it.
pub struct Tree {
    fs: Box<dyn Fs>,
    known: RefCell<Known>,
    /// The reader's [`Fs::may_change`]: then links are not remembered.
    may_change: bool,
}

/// What earlier lookups found, by resolved path. An image file does not change while it is
/// read (a reader takes a change for damage); in a directory tree, which can, only
/// directories, regular files and absent entries are remembered: its reader opens files
/// and directories without following links and keeps the directories open, so a swap
/// since is caught there or cannot lead out, and an entry that appears since is one not
/// read, as if read a moment earlier; a link is asked about again.
#[derive(Default)]
struct Known {
    /// `None`: no such entry. Keyed by the path's bytes: hashing a `Path` goes component
    /// by component, several times slower, and these paths come resolved.
    kinds: HashMap<Vec<u8>, Option<FileKind>>,
    /// Targets of the links read.
    links: HashMap<Vec<u8>, Vec<u8>>,
    /// Bytes held, as counted against [`MAX_KNOWN_BYTES`].
    bytes: usize,
}

impl Known {
    /// Make room for `cost` bytes: start over when they do not fit.
    fn room(&mut self, cost: usize) {
        if self.bytes + cost > MAX_KNOWN_BYTES {
            self.kinds.clear();
            self.links.clear();
            self.bytes = 0;
        }
        self.bytes += cost;
    }

    fn kind(&mut self, path: Vec<u8>, kind: Option<FileKind>) {
        self.room(path.len() + KNOWN_ENTRY_BYTES);
        self.kinds.insert(path, kind);
    }

    fn link(&mut self, path: Vec<u8>, target: Vec<u8>) {
        self.room(path.len() + target.len() + KNOWN_ENTRY_BYTES);
        self.links.insert(path, target);
    }
}

/// Where a path led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The path with every symlink resolved (the last one too, when asked to follow it).
    pub path: PathBuf,
    /// What is there: a link only when the last one was not followed.
    pub kind: FileKind,
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// Drop the last component of `here`, whose components begin at `starts` (none: the root).
fn up(here: &mut Vec<u8>, starts: &mut Vec<usize>) {
    if let Some(start) = starts.pop() {
        here.truncate(start.max(1));
    }
}

impl Tree {
    /// The tree of `fs`, whatever its reader, with lookups confined to it.
    pub fn new(fs: Box<dyn Fs>) -> Tree {
        let may_change = fs.may_change();
        Tree {
            fs,
            known: RefCell::default(),
            may_change,
        }
    }

    /// The kind of the entry at the resolved path `path`, as the reader's `lstat` says,
    /// asked once.
    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        let key = path.as_os_str().as_bytes();
        if let Some(kind) = self.known.borrow().kinds.get(key) {
            return Ok(*kind);
        }
        let kind = self.fs.lstat(path)?;
        if self.remembered(kind) {
            self.known.borrow_mut().kind(key.to_vec(), kind);
        }
        Ok(kind)
    }

    /// The target of the link at the resolved path `path`, read once.
    fn link_target(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        let key = path.as_os_str().as_bytes();
        if let Some(target) = self.known.borrow().links.get(key) {
            return Ok(target.clone());
        }
        let target = self.fs.read_link(path)?;
        if !self.may_change {
            let mut known = self.known.borrow_mut();
            known.link(key.to_vec(), target.clone());
        }
        Ok(target)
    }

    /// Whether what a lookup found is remembered (see [`Known`]).
    fn remembered(&self, kind: Option<FileKind>) -> bool {
        !self.may_change || matches!(kind, None | Some(FileKind::Dir | FileKind::File))
    }

    /// Remember the kinds a listing of the directory `dir` gave, unless it is so large
    /// that it would push everything else out.
    fn listed(&self, dir: &Path, entries: &[DirEntry]) {
        let cost = |e: &DirEntry| dir.as_os_str().len() + 1 + e.name.len() + KNOWN_ENTRY_BYTES;
        if entries.iter().map(cost).sum::<usize>() > MAX_KNOWN_BYTES / 2 {
            return;
        }
        let mut known = self.known.borrow_mut();
        // A crafted file system can list a name no lookup could ask for ("a/b", ".."):
        // remembered, it would stand for another path.
        let plain = |e: &&DirEntry| {
            !matches!(&e.name[..], b"" | b"." | b"..")
                && !e.name.iter().any(|&b| b == b'/' || b == 0)
        };
        for e in entries
            .iter()
            .filter(plain)
            .filter(|e| self.remembered(Some(e.kind)))
        {
            known.kind(
                dir.join(OsStr::from_bytes(&e.name))
                    .into_os_string()
                    .into_vec(),
                Some(e.kind),
            );
        }
    }

    /// Resolve `path` (taken relative to the image root even when absolute). With
    /// `follow_last` false a final symlink is returned as such.
    pub fn resolve(&self, path: &Path, follow_last: bool) -> Result<Resolved, FsError> {
        let mut rest = components(path.as_os_str().as_bytes()).peekable();
        // Components of link targets still to walk, before the rest of `path`.
        let mut todo: VecDeque<Vec<u8>> = VecDeque::new();
        // The path walked so far ("/" the image root), and where each component begins.
        let mut here: Vec<u8> = Vec::with_capacity(path.as_os_str().len() + 1);
        here.push(b'/');
        let mut starts: Vec<usize> = Vec::new();
        let mut links = 0usize;
        let mut steps = 0usize;
        let mut kind = FileKind::Dir;

        loop {
            let c = match todo.pop_front() {
                Some(c) => Cow::Owned(c),
                None => match rest.next() {
                    Some(c) => Cow::Borrowed(c),
                    None => break,
                },
            };
            steps += 1;
            if steps > MAX_PATH_STEPS || starts.len() >= MAX_PATH_DEPTH {
                return Err(FsError::Corrupt(format!(
                    "a path deeper than {MAX_PATH_DEPTH} levels or of more than {MAX_PATH_STEPS} steps"
                )));
            }
            if kind != FileKind::Dir {
                return Err(FsError::NotADirectory);
            }
            if *c == *b".." {
                up(&mut here, &mut starts);
                continue;
            }
            starts.push(here.len());
            if here.len() > 1 {
                here.push(b'/');
            }
            here.extend_from_slice(&c);
            let at = Path::new(OsStr::from_bytes(&here));
            kind = self.lstat(at)?.ok_or(FsError::NotFound)?;
            let more = !todo.is_empty() || rest.peek().is_some();
            if kind == FileKind::Symlink && (follow_last || more) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(FsError::SymlinkLoop);
                }
                let target = self.link_target(at)?;
                up(&mut here, &mut starts);
                if target.first() == Some(&b'/') {
                    here.truncate(1);
                    starts.clear();
                }
                for c in components(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(c.to_vec());
                }
                // The link's directory is a directory; what the target names is found next.
                kind = FileKind::Dir;
            }
        }
        Ok(Resolved {
            path: PathBuf::from(OsString::from_vec(here)),
            kind,
        })
    }

    /// List the directory `path`, following symlinks on the way; entries sorted by name.
    pub fn read_dir(&self, path: &Path) -> Result<(PathBuf, Vec<DirEntry>), FsError> {
        let dir = self.resolve(path, true)?;
        if dir.kind != FileKind::Dir {
            return Err(FsError::NotADirectory);
        }
        let mut entries = self.fs.read_dir(&dir.path)?;
        if entries.len() > MAX_DIR_ENTRIES {
            return Err(too_many_entries(entries.len()));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        self.listed(&dir.path, &entries);
        Ok((dir.path, entries))
    }

    /// Read the regular file at `path`, following symlinks, at most `limit` bytes.
    pub fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        let file = self.resolve(path, true)?;
        match file.kind {
            FileKind::File => self.fs.read_file(&file.path, limit),
            FileKind::Dir => Err(FsError::WrongType("is a directory")),
            _ => Err(FsError::WrongType("not a regular file")),
        }
    }

    /// The raw target of the symlink at `path` (its parents resolved).
    pub fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        let link = self.resolve(path, false)?;
        if link.kind != FileKind::Symlink {
            return Err(FsError::WrongType("not a symbolic link"));
        }
        self.link_target(&link.path)
    }

    /// The extended attribute `name` (e.g. `user.extension-release.strict`) of the entry at
    /// `path` itself: its parents are resolved, a final symlink is not followed, as
    /// `getxattr()` on a file opened `O_NOFOLLOW`. `None` when the entry does not carry it;
    /// values over [`MAX_XATTR_BYTES`] are an error.
    pub fn xattr(&self, path: &Path, name: &str) -> Result<Option<Vec<u8>>, FsError> {
        let entry = self.resolve(path, false)?;
        // The kernel allows `user.` attributes on regular files and directories only, and
        // answers ENODATA for any other kind whatever the disk holds (xattr_permission() in
        // fs/xattr.c); a crafted image gets no more say than a mounted one.
        if name.starts_with("user.") && !matches!(entry.kind, FileKind::File | FileKind::Dir) {
            return Ok(None);
        }
        self.fs.xattr(&entry.path, name, MAX_XATTR_BYTES)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory file system for tests of everything above the back-ends.
    #[derive(Default)]
    pub struct MemFs {
        pub nodes: BTreeMap<PathBuf, Node>,
        /// Extended attributes by entry and name.
        pub xattrs: BTreeMap<(PathBuf, String), Vec<u8>>,
    }

    pub enum Node {
        File(Vec<u8>),
        Dir,
        Link(Vec<u8>),
        Other,
    }

    impl MemFs {
        pub fn new() -> MemFs {
            let mut fs = MemFs::default();
            fs.nodes.insert(PathBuf::from("/"), Node::Dir);
            fs
        }
        fn parents(&mut self, p: &Path) {
            for a in p.ancestors().skip(1) {
                self.nodes.entry(a.to_path_buf()).or_insert(Node::Dir);
            }
        }
        pub fn file(mut self, p: &str, data: &[u8]) -> Self {
            self.parents(Path::new(p));
            self.nodes.insert(p.into(), Node::File(data.to_vec()));
            self
        }
        pub fn link(mut self, p: &str, target: &str) -> Self {
            self.parents(Path::new(p));
            self.nodes
                .insert(p.into(), Node::Link(target.as_bytes().to_vec()));
            self
        }
        pub fn dir(mut self, p: &str) -> Self {
            self.parents(Path::new(p));
            self.nodes.insert(p.into(), Node::Dir);
            self
        }
        pub fn other(mut self, p: &str) -> Self {
            self.parents(Path::new(p));
            self.nodes.insert(p.into(), Node::Other);
            self
        }
        /// Give the existing entry `p` the extended attribute `name`.
        pub fn set_xattr(mut self, p: &str, name: &str, value: &[u8]) -> Self {
            assert!(self.nodes.contains_key(Path::new(p)), "no entry {p}");
            self.xattrs
                .insert((p.into(), name.to_string()), value.to_vec());
            self
        }
    }

    fn kind(n: &Node) -> FileKind {
        match n {
            Node::File(_) => FileKind::File,
            Node::Dir => FileKind::Dir,
            Node::Link(_) => FileKind::Symlink,
            Node::Other => FileKind::Other,
        }
    }

    impl Fs for MemFs {
        fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
            Ok(self.nodes.get(path).map(kind))
        }
        fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
            Ok(self
                .nodes
                .iter()
                .filter(|(p, _)| p.parent() == Some(path))
                .map(|(p, n)| DirEntry {
                    name: p.file_name().unwrap().as_bytes().to_vec(),
                    kind: kind(n),
                })
                .collect())
        }
        fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
            match self.nodes.get(path) {
                Some(Node::Link(t)) => Ok(t.clone()),
                _ => Err(FsError::NotFound),
            }
        }
        fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
            match self.nodes.get(path) {
                Some(Node::File(d)) if d.len() as u64 > limit => Err(FsError::TooLarge {
                    what: "file",
                    size: d.len() as u64,
                    limit,
                }),
                Some(Node::File(d)) => Ok(d.clone()),
                _ => Err(FsError::NotFound),
            }
        }
        fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
            if !self.nodes.contains_key(path) {
                return Err(FsError::NotFound);
            }
            match self.xattrs.get(&(path.to_path_buf(), name.to_string())) {
                Some(v) if v.len() as u64 > limit => {
                    Err(crate::image::xattr_too_large(v.len() as u64, limit))
                }
                v => Ok(v.cloned()),
            }
        }
    }

    fn tree() -> Tree {
        Tree::new(Box::new(
            MemFs::new()
                .file("/usr/lib/os-release", b"ID=x\n")
                .link("/etc/os-release", "../usr/lib/os-release")
                .link("/lib", "usr/lib")
                .link("/abs", "/usr/lib/os-release")
                .link("/escape", "../../../../etc/os-release")
                .link("/loop1", "loop2")
                .link("/loop2", "loop1")
                .link("/dangling", "/nowhere")
                .link("/usr/lib/up", "..")
                .dir("/empty")
                .other("/fifo"),
        ))
    }

    #[test]
    fn follows_links_inside_the_root() {
        let t = tree();
        for p in [
            "/etc/os-release",
            "/lib/os-release",
            "/abs",
            "/escape",
            "usr/lib/up/lib/os-release",
        ] {
            assert_eq!(t.read_file(Path::new(p), 100).unwrap(), b"ID=x\n", "{p}");
        }
        assert_eq!(
            t.resolve(Path::new("/../../usr/./lib"), true).unwrap().path,
            Path::new("/usr/lib")
        );
    }

    #[test]
    fn does_not_follow_last_when_asked() {
        let r = tree().resolve(Path::new("/lib/up"), false).unwrap();
        assert_eq!(r.kind, FileKind::Symlink);
        assert_eq!(r.path, Path::new("/usr/lib/up"));
        // `..` after a followed link climbs from where the link led, as in the kernel.
        let r = tree()
            .resolve(Path::new("/lib/../lib/os-release"), true)
            .unwrap();
        assert_eq!(r.path, Path::new("/usr/lib/os-release"));
    }

    #[test]
    fn errors() {
        let t = tree();
        assert!(matches!(
            t.read_file(Path::new("/loop1"), 10),
            Err(FsError::SymlinkLoop)
        ));
        assert!(matches!(
            t.read_file(Path::new("/dangling"), 10),
            Err(FsError::NotFound)
        ));
        assert!(matches!(
            t.read_file(Path::new("/abs/x"), 10),
            Err(FsError::NotADirectory)
        ));
        assert!(matches!(
            t.read_file(Path::new("/abs"), 2),
            Err(FsError::TooLarge { .. })
        ));
        assert!(matches!(
            t.read_dir(Path::new("/abs")),
            Err(FsError::NotADirectory)
        ));
        assert!(t.read_dir(Path::new("/empty")).unwrap().1.is_empty());
        assert!(matches!(
            t.read_file(Path::new("/fifo"), 10),
            Err(FsError::WrongType(_))
        ));
    }

    #[test]
    fn link_chains_are_bounded() {
        let mut fs = MemFs::new().file("/f", b"x");
        for i in 0..41 {
            let target = if i == 0 {
                "/f".to_string()
            } else {
                format!("/l{}", i - 1)
            };
            fs = fs.link(&format!("/l{i}"), &target);
        }
        let t = Tree::new(Box::new(fs));
        assert!(t.read_file(Path::new("/l39"), 10).is_ok());
        assert!(matches!(
            t.read_file(Path::new("/l40"), 10),
            Err(FsError::SymlinkLoop)
        ));
    }

    /// A file system that counts the lookups asked of it.
    struct Counting {
        fs: MemFs,
        lstats: std::rc::Rc<std::cell::Cell<usize>>,
        links: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Fs for Counting {
        fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
            self.lstats.set(self.lstats.get() + 1);
            self.fs.lstat(path)
        }
        fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
            let mut entries = self.fs.read_dir(path)?;
            // A crafted listing: a name no lookup could ask for.
            entries.push(DirEntry {
                name: b"x/f".to_vec(),
                kind: FileKind::Symlink,
            });
            Ok(entries)
        }
        fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
            self.links.set(self.links.get() + 1);
            self.fs.read_link(path)
        }
        fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
            self.fs.read_file(path, limit)
        }
        fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
            self.fs.xattr(path, name, limit)
        }
    }

    #[test]
    fn each_path_is_looked_up_once_and_listings_tell_kinds() {
        let lstats = std::rc::Rc::new(std::cell::Cell::new(0));
        let links = std::rc::Rc::new(std::cell::Cell::new(0));
        let t = Tree::new(Box::new(Counting {
            fs: MemFs::new()
                .file("/usr/lib/systemd/system/a.service", b"a")
                .file("/usr/lib/systemd/system/b.service", b"b")
                .link("/usr/lib/systemd/system/c.service", "a.service")
                .link("/lib", "usr/lib")
                .file("/usr/lib/systemd/system/x/f", b"f"),
            lstats: lstats.clone(),
            links: links.clone(),
        }));
        let (_, entries) = t.read_dir(Path::new("/lib/systemd/system")).unwrap();
        // /lib, /usr, /usr/lib, /usr/lib/systemd, /usr/lib/systemd/system.
        assert_eq!((lstats.get(), links.get()), (5, 1));
        assert_eq!(entries.len(), 5);
        for _ in 0..2 {
            for (unit, data) in [("a", b"a"), ("b", b"b"), ("c", b"a")] {
                let path = format!("/lib/systemd/system/{unit}.service");
                assert_eq!(t.read_file(Path::new(&path), 9).unwrap(), data);
            }
        }
        assert_eq!(t.read_link(Path::new("/lib")).unwrap(), b"usr/lib");
        // Nothing more was asked: the listing told each unit's kind.
        assert_eq!((lstats.get(), links.get()), (5, 2));
        // A listed name with a slash stands for nothing: x/f is looked up as what it is.
        assert_eq!(
            t.read_file(Path::new("/usr/lib/systemd/system/x/f"), 9)
                .unwrap(),
            b"f"
        );
        assert_eq!(lstats.get(), 6);
    }

    #[test]
    fn xattr_of_the_entry_itself() {
        const STRICT: &str = "user.extension-release.strict";
        let t = Tree::new(Box::new(
            MemFs::new()
                .file("/usr/lib/rel", b"ID=x\n")
                .set_xattr("/usr/lib/rel", STRICT, b"false")
                .set_xattr("/usr/lib", "user.dir", b"d")
                .link("/lib", "usr/lib")
                .link("/usr/lib/alias", "rel")
                .set_xattr("/usr/lib/alias", "trusted.link", b"l")
                .set_xattr("/usr/lib/alias", "user.forged", b"f")
                .other("/fifo")
                .set_xattr("/fifo", "user.forged", b"f")
                .file("/big", b"")
                .set_xattr(
                    "/big",
                    "user.big",
                    &vec![7; usize::try_from(MAX_XATTR_BYTES).unwrap() + 1],
                ),
        ));
        let get = |p: &str, n: &str| t.xattr(Path::new(p), n);
        // Parents are followed, the entry itself is not.
        assert_eq!(get("/lib/rel", STRICT).unwrap().unwrap(), b"false");
        assert_eq!(get("/lib/alias", STRICT).unwrap(), None);
        assert_eq!(get("/lib/alias", "trusted.link").unwrap().unwrap(), b"l");
        assert_eq!(get("/lib", "user.dir").unwrap(), None);
        assert_eq!(get("/usr/lib", "user.dir").unwrap().unwrap(), b"d");
        assert_eq!(get("/lib/rel", "user.other").unwrap(), None);
        // As in the kernel, `user.` attributes exist on files and directories only.
        assert_eq!(get("/usr/lib/alias", "user.forged").unwrap(), None);
        assert_eq!(get("/fifo", "user.forged").unwrap(), None);
        assert!(matches!(get("/lib/none", STRICT), Err(FsError::NotFound)));
        assert!(matches!(
            get("/usr/lib/rel/x", STRICT),
            Err(FsError::NotADirectory)
        ));
        assert!(matches!(
            get("/big", "user.big"),
            Err(FsError::TooLarge {
                what: "extended attribute",
                ..
            })
        ));
    }
}
