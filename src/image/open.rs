//! Opening an image of any kind as a [`Tree`]: directories directly, raw files and block
//! devices through their partition table and file system.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::chase::Tree;
use super::dir::DirFs;
use super::layered::Layered;
use super::partition::{self, Dissected, Part, Selection};
use super::probe::{self, FsType};
use super::source::Source;
use super::{Fs, FsError, erofs, ext4, squashfs};

/// How an image is attached: decides `RootDirectory=` or `RootImage=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A directory tree: `RootDirectory=`.
    Directory,
    /// A regular file holding a disk image: `RootImage=`.
    Raw,
    /// A block device: `RootImage=`.
    Block,
}

/// An opened image whose file systems are not read yet. A raw image or block device has
/// been dissected: what its partition table says is kept, so that `RequireVerity=` asks
/// it rather than opening the image a second time, and [`Opened::tree`] reads the very
/// partitions it names.
pub enum Opened {
    /// A directory: its tree, read directly.
    Directory(Tree),
    /// A raw image or block device.
    Raw {
        /// Bounded reads of the image.
        src: Source,
        /// What its partition table says to read.
        partitions: Dissected,
    },
}

impl Opened {
    /// What the partition table of a raw image or block device says; `None` for a
    /// directory.
    pub fn partitions(&self) -> Option<&Dissected> {
        match self {
            Opened::Directory(_) => None,
            Opened::Raw { partitions, .. } => Some(partitions),
        }
    }

    /// The files of the image: a directory's own, a raw image's through its file systems.
    /// The error is a one-line reason, without the image name.
    pub fn tree(self) -> Result<Tree, String> {
        match self {
            Opened::Directory(tree) => Ok(tree),
            Opened::Raw { src, partitions } => read_partitions(src, partitions.selection),
        }
    }
}

/// Open the image at `path` (a path on this system, `--root` already applied).
/// The error is a one-line reason, without the image name. Unless `trust_others`, files read
/// from a directory image must not be changeable by users other than root.
pub fn open_image(path: &Path, kind: ImageKind, trust_others: bool) -> Result<Opened, String> {
    match kind {
        ImageKind::Directory => {
            // Opened as a directory (the path's own links followed, as discovery did): no
            // `stat` by path before, which would walk the path a second time.
            let fd = match super::at::open_base(path) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOTDIR) => return Err("not a directory".into()),
                Err(e) => return Err(std::io::Error::from(e).to_string()),
            };
            let fs = DirFs::from_fd(fd);
            Ok(Opened::Directory(Tree::new(Box::new(if trust_others {
                fs
            } else {
                fs.owned_by_root()
            }))))
        }
        ImageKind::Raw | ImageKind::Block => open_raw(path, kind),
    }
}

fn open_raw(path: &Path, kind: ImageKind) -> Result<Opened, String> {
    // O_NONBLOCK: whatever is there now (a FIFO swapped in after discovery) must not block.
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let ft = file.metadata().map_err(|e| e.to_string())?.file_type();
    match kind {
        ImageKind::Raw if !ft.is_file() => return Err("not a regular file".into()),
        ImageKind::Block if !ft.is_block_device() => return Err("not a block device".into()),
        _ => {}
    }
    // Seeking to the end gives the size of block devices too, without an ioctl.
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("cannot determine size: {e}"))?;
    if len == 0 {
        return Err("the image is empty (0 bytes)".into());
    }
    open_source(Source::new(file, len))
}

/// Dissect a raw image's bytes (a file, a device, or memory when fuzzing): its file
/// systems are read by [`Opened::tree`].
pub fn open_source(src: Source) -> Result<Opened, String> {
    let partitions = partition::dissect(&src)?;
    Ok(Opened::Raw { src, partitions })
}

/// The file systems `selection` names in `src`, as one tree.
fn read_partitions(src: Source, selection: Selection) -> Result<Tree, String> {
    match selection {
        Selection::Whole => Ok(Tree::new(open_fs(src, None)?)),
        Selection::Parts { root, usr } => {
            let root = root.map(|p| open_part(&src, &p)).transpose()?;
            match (root, usr) {
                (Some(root), None) => Ok(Tree::new(root)),
                (root, Some(usr)) => {
                    let usr = open_part(&src, &usr)?;
                    Ok(Tree::new(Box::new(Layered { root, usr })))
                }
                (None, None) => Err("no root or /usr partition".into()),
            }
        }
    }
}

fn open_part(src: &Source, part: &Part) -> Result<Box<dyn Fs>, String> {
    let window = src.slice(part.offset, part.size).ok_or_else(|| {
        format!(
            "partition {} ({}) extends past the end of the image",
            part.number, part.type_name
        )
    })?;
    open_fs(window, Some(part))
}

fn open_fs(src: Source, part: Option<&Part>) -> Result<Box<dyn Fs>, String> {
    let where_ = match part {
        Some(p) => format!(" in partition {} ({})", p.number, p.type_name),
        None => String::new(),
    };
    let fstype = probe::sniff(&src).map_err(|e| format!("cannot read{where_}: {e}"))?;
    let whole = src.clone();
    let fs = match fstype {
        FsType::Ext4 => ext4::open(src),
        FsType::Squashfs => squashfs::open(src),
        FsType::Erofs => erofs::open(src),
        FsType::Btrfs | FsType::Xfs | FsType::Vfat | FsType::F2fs => {
            return Err(format!(
                "{} file system{where_} cannot be inspected without mounting it (supported: squashfs, erofs, ext4)",
                fstype.name()
            ));
        }
        FsType::Luks => {
            return Err(format!(
                "encrypted (LUKS) partition{where_} is not supported"
            ));
        }
        FsType::Unknown => return Err(format!("no known file system found{where_}")),
    };
    let name = fstype.name();
    fs.map_err(|e| match e {
        // Whatever the reader made of it, the bytes it read were not one image.
        _ if let Some(why) = whole.changed() => {
            format!("cannot read {name} file system{where_}: {why}")
        }
        FsError::Corrupt(why) => format!("damaged {name} file system{where_}: {why}"),
        FsError::Unsupported(why) => {
            format!("{name} file system{where_} cannot be read here: {why}")
        }
        e => format!("cannot read {name} file system{where_}: {e}"),
    })
}
