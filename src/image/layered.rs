//! A root file system with a separate `/usr` partition over it, as a GPT image with root
//! and `/usr` partitions (or `/usr` alone) is mounted by systemd.

use std::path::{Path, PathBuf};

use super::{DirEntry, FileKind, Fs, FsError};

/// The two file systems seen as one tree: `/usr` and below from the `/usr` partition, the
/// rest from the root partition.
pub struct Layered {
    /// `None` for a `/usr`-only image: the root is then an empty directory holding `usr`.
    pub root: Option<Box<dyn Fs>>,
    /// The `/usr` partition's file system, seen at `/usr`.
    pub usr: Box<dyn Fs>,
}

enum Target<'a> {
    Root(&'a dyn Fs, PathBuf),
    Usr(PathBuf),
    /// The synthetic root directory of a `/usr`-only image.
    EmptyRoot,
    Absent,
}

impl Layered {
    fn route(&self, path: &Path) -> Target<'_> {
        if let Ok(rest) = path.strip_prefix("/usr") {
            return Target::Usr(Path::new("/").join(rest));
        }
        match &self.root {
            Some(fs) => Target::Root(fs.as_ref(), path.to_path_buf()),
            None if path == Path::new("/") => Target::EmptyRoot,
            None => Target::Absent,
        }
    }
}

impl Fs for Layered {
    fn may_change(&self) -> bool {
        self.usr.may_change() || self.root.as_ref().is_some_and(|r| r.may_change())
    }

    fn lstat(&self, path: &Path) -> Result<Option<FileKind>, FsError> {
        match self.route(path) {
            Target::Root(fs, p) => fs.lstat(&p),
            Target::Usr(p) => self.usr.lstat(&p),
            Target::EmptyRoot => Ok(Some(FileKind::Dir)),
            Target::Absent => Ok(None),
        }
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>, FsError> {
        match self.route(path) {
            Target::Root(fs, p) => {
                let mut entries = fs.read_dir(&p)?;
                if p == Path::new("/") && !entries.iter().any(|e| e.name == b"usr") {
                    entries.push(DirEntry {
                        name: b"usr".to_vec(),
                        kind: FileKind::Dir,
                    });
                }
                // The mount point's own kind in the root file system does not matter.
                for e in entries
                    .iter_mut()
                    .filter(|e| p == Path::new("/") && e.name == b"usr")
                {
                    e.kind = FileKind::Dir;
                }
                Ok(entries)
            }
            Target::Usr(p) => self.usr.read_dir(&p),
            Target::EmptyRoot => Ok(vec![DirEntry {
                name: b"usr".to_vec(),
                kind: FileKind::Dir,
            }]),
            Target::Absent => Err(FsError::NotFound),
        }
    }

    fn read_link(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        match self.route(path) {
            Target::Root(fs, p) => fs.read_link(&p),
            Target::Usr(p) => self.usr.read_link(&p),
            _ => Err(FsError::NotFound),
        }
    }

    fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
        match self.route(path) {
            Target::Root(fs, p) => fs.read_file(&p, limit),
            Target::Usr(p) => self.usr.read_file(&p, limit),
            _ => Err(FsError::NotFound),
        }
    }

    fn xattr(&self, path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        match self.route(path) {
            Target::Root(fs, p) => fs.xattr(&p, name, limit),
            Target::Usr(p) => self.usr.xattr(&p, name, limit),
            // The synthetic root directory carries nothing.
            Target::EmptyRoot => Ok(None),
            Target::Absent => Err(FsError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::chase::Tree;
    use super::super::chase::tests::MemFs;
    use super::*;

    #[test]
    fn usr_only() {
        let usr = MemFs::new().file("/lib/os-release", b"ID=u\n");
        let t = Tree::new(Box::new(Layered {
            root: None,
            usr: Box::new(usr),
        }));
        assert_eq!(
            t.read_file(Path::new("/usr/lib/os-release"), 99).unwrap(),
            b"ID=u\n"
        );
        assert!(matches!(
            t.read_file(Path::new("/etc/os-release"), 99),
            Err(FsError::NotFound)
        ));
        let names: Vec<_> = t
            .read_dir(Path::new("/"))
            .unwrap()
            .1
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec![b"usr".to_vec()]);
    }

    #[test]
    fn root_and_usr() {
        let root = MemFs::new()
            .link("/etc/os-release", "../usr/lib/os-release")
            .dir("/usr");
        let usr = MemFs::new().file("/lib/os-release", b"ID=u\n");
        let t = Tree::new(Box::new(Layered {
            root: Some(Box::new(root)),
            usr: Box::new(usr),
        }));
        assert_eq!(
            t.read_file(Path::new("/etc/os-release"), 99).unwrap(),
            b"ID=u\n"
        );
    }

    #[test]
    fn xattrs_come_from_the_partition_holding_the_entry() {
        let root = MemFs::new()
            .file("/etc/rel", b"")
            .set_xattr("/etc/rel", "user.a", b"root")
            .dir("/usr")
            .set_xattr("/usr", "user.a", b"mount point");
        let usr = MemFs::new()
            .file("/lib/rel", b"")
            .set_xattr("/lib/rel", "user.a", b"usr");
        let t = Tree::new(Box::new(Layered {
            root: Some(Box::new(root)),
            usr: Box::new(usr),
        }));
        let get = |p: &str| t.xattr(Path::new(p), "user.a");
        assert_eq!(get("/etc/rel").unwrap().unwrap(), b"root");
        assert_eq!(get("/usr/lib/rel").unwrap().unwrap(), b"usr");
        // What is mounted on /usr hides the root partition's directory.
        assert_eq!(get("/usr").unwrap(), None);
        assert!(matches!(get("/usr/lib/none"), Err(FsError::NotFound)));

        let t = Tree::new(Box::new(Layered {
            root: None,
            usr: Box::new(MemFs::new().file("/lib/rel", b"")),
        }));
        assert_eq!(t.xattr(Path::new("/"), "user.a").unwrap(), None);
        assert!(matches!(
            t.xattr(Path::new("/etc"), "user.a"),
            Err(FsError::NotFound)
        ));
    }
}
