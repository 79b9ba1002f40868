//! Finding images in the search paths (DESIGN §3).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use log::debug;

use crate::image::FsError;
use crate::image::chase::Tree;
use crate::image::dir::DirFs;
use crate::image::open::ImageKind;
use crate::names::image_name_is_valid;
use crate::ownership;
use crate::root::Root;
use crate::vpick;

/// Where images are looked for, in order; the first directory holding a name wins
/// (`image_search_path[IMAGE_PORTABLE]` in systemd's discover-image.c).
pub const SEARCH_PATHS: [&str; 5] = [
    "/etc/portables",
    "/run/portables",
    "/var/lib/portables",
    "/usr/local/lib/portables",
    "/usr/lib/portables",
];

/// An image found in a search path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The name of the entry in the search directory, e.g. `foo_1.2.raw`: the default
    /// unit prefix is derived from it.
    pub entry: String,
    /// The image name, `.raw` dropped (`foo_1.2`): names shadow each other across paths.
    pub name: String,
    /// The image's path with symlinks resolved, as the booted system sees it (without
    /// `--root`): the value of `RootImage=`/`RootDirectory=`.
    pub path: PathBuf,
    /// The last component of `path`: the value of `PORTABLE=`.
    pub file_name: String,
    /// Who other than root can change the image, if anyone (refused unless allowed).
    pub writable_by: Option<String>,
    pub kind: ImageKind,
    /// Where it was found: the search-path entry or the `Image=` path, before links and
    /// version directories were resolved.
    pub found_at: PathBuf,
}

impl Image {
    /// How messages name the image: where it was found, and where that led if elsewhere.
    pub fn label(&self) -> String {
        if self.found_at == self.path {
            self.path.display().to_string()
        } else {
            format!("{} (-> {})", self.found_at.display(), self.path.display())
        }
    }
}

/// Something named like an image that can not be one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: PathBuf,
    pub reason: String,
}

/// A search directory that exists but can not be listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub dir: PathBuf,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Found {
    /// In search-path order, then name order.
    pub images: Vec<Image>,
    pub refused: Vec<Refused>,
    pub unreadable: Vec<Unreadable>,
}

enum Entry {
    Image(Image),
    Refused(Refused),
    Ignored,
}

/// Look at every entry of every search directory below `root`.
pub fn discover(root: &Root, allow_writable_by_others: bool) -> Found {
    let mut found = Found::default();
    let mut seen = BTreeSet::new();
    // Links are resolved inside the root, as the booted system would resolve them.
    let host = Tree::new(Box::new(DirFs::new(root.dir().to_path_buf())));
    for dir in SEARCH_PATHS {
        let unreadable = |reason: String| Unreadable {
            dir: dir.into(),
            reason,
        };
        let resolved_dir = match host.resolve(Path::new(dir), true) {
            Ok(r) => r.path,
            Err(FsError::NotFound) => {
                debug!("Search directory {dir} does not exist.");
                continue;
            }
            Err(e) => {
                found.unreadable.push(unreadable(e.to_string()));
                continue;
            }
        };
        if !allow_writable_by_others
            && let Some(who) = ownership::path_writable_by_others(&root.join(&resolved_dir))
        {
            found.unreadable.push(unreadable(format!(
                "it is {who}, so its images are not used: {}",
                ownership::HINT
            )));
            continue;
        }
        let listing = match fs::read_dir(root.join(&resolved_dir)) {
            Ok(l) => l,
            Err(e) => {
                found.unreadable.push(unreadable(e.to_string()));
                continue;
            }
        };
        let mut names = Vec::new();
        for entry in listing {
            match entry {
                Ok(e) => names.push(e.file_name()),
                Err(e) => {
                    found.unreadable.push(Unreadable {
                        dir: dir.into(),
                        reason: e.to_string(),
                    });
                    break;
                }
            }
        }
        names.sort();

        let mut here: Vec<Image> = Vec::new();
        for os_name in names {
            let host_path = PathBuf::from(dir).join(&os_name);
            let Some(file_name) = os_name.to_str() else {
                found.refused.push(Refused {
                    path: host_path,
                    reason: "the name is not valid UTF-8".into(),
                });
                continue;
            };
            if file_name.starts_with('.') {
                debug!("Ignoring hidden entry {}.", host_path.display());
                continue;
            }
            match classify(root, &host, &resolved_dir, &host_path, file_name) {
                Entry::Image(image) => here.push(image),
                Entry::Refused(r) => found.refused.push(r),
                Entry::Ignored => {}
            }
        }
        // image_find() tries NAME before NAME.raw within one directory.
        here.sort_by_key(|i| (i.name.clone(), i.kind == ImageKind::Raw));
        for image in here {
            if seen.contains(&image.name) {
                debug!(
                    "Image {} is shadowed by an image of the same name earlier in the search path.",
                    image.path.display()
                );
                continue;
            }
            seen.insert(image.name.clone());
            found.images.push(image);
        }
    }
    found
}

/// The image at `path` (a host path, e.g. from `Image=`), resolved and classified as a
/// search-path entry would be.
pub fn image_at(root: &Root, path: &Path) -> Result<Image, String> {
    let host = Tree::new(Box::new(DirFs::new(root.dir().to_path_buf())));
    let (Some(dir), Some(entry)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(format!("{} does not name a file", path.display()));
    };
    let resolved_dir = host
        .resolve(dir, true)
        .map_err(|e| format!("cannot access {}: {e}", dir.display()))?
        .path;
    // A path that is simply absent is said so, not taken for a dangling link.
    let here = resolved_dir.join(entry);
    if fs::symlink_metadata(root.join(&here)).is_err() {
        return Err("it does not exist".into());
    }
    match classify(root, &host, &resolved_dir, path, entry) {
        Entry::Image(image) => Ok(image),
        Entry::Refused(r) => Err(r.reason),
        Entry::Ignored => Err("neither a directory, a .raw file nor a block device".into()),
    }
}

/// The newest usable version in a `NAME.raw.v/` or `NAME.v/` directory (systemd's vpick):
/// its file name and kind.
fn pick_version(
    root: &Root,
    dir: &Path,
    basename: &str,
    suffix: vpick::Suffix,
) -> Result<(String, ImageKind), String> {
    let listing = fs::read_dir(root.join(dir)).map_err(|e| format!("cannot list: {e}"))?;
    let mut entries = Vec::new();
    let mut blocks = BTreeSet::new();
    for entry in listing.take(crate::image::MAX_DIR_ENTRIES) {
        let entry = entry.map_err(|e| format!("cannot list: {e}"))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // stat() follows links without opening: nothing blocks.
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_block_device() {
            blocks.insert(name.clone());
        }
        entries.push((name, ft.is_file() || ft.is_block_device(), ft.is_dir()));
    }
    entries.sort();
    let chosen = vpick::pick(basename, suffix, &entries, &vpick::local_architectures())?;
    let kind = match suffix {
        vpick::Suffix::Directory => ImageKind::Directory,
        vpick::Suffix::Raw if blocks.contains(&chosen.file_name) => ImageKind::Block,
        vpick::Suffix::Raw => ImageKind::Raw,
    };
    Ok((chosen.file_name, kind))
}

fn classify(root: &Root, host: &Tree, resolved_dir: &Path, host_path: &Path, entry: &str) -> Entry {
    let refuse = |reason: String| {
        Entry::Refused(Refused {
            path: host_path.into(),
            reason,
        })
    };
    let is_raw_name = entry.ends_with(".raw");
    let resolved = match host.resolve(&resolved_dir.join(entry), true) {
        Ok(r) => r.path,
        Err(e) => {
            let is_link = fs::symlink_metadata(root.join(resolved_dir.join(entry)))
                .map(|m| m.is_symlink())
                .unwrap_or(false);
            if !is_raw_name && !is_link {
                debug!("Ignoring {}: {e}", host_path.display());
                return Entry::Ignored;
            }
            return match e {
                FsError::NotFound => refuse("dangling symbolic link".into()),
                FsError::SymlinkLoop => refuse("symbolic link loop".into()),
                e => refuse(format!("cannot access: {e}")),
            };
        }
    };
    // lstat of a fully resolved path: nothing is opened, so nothing here can block.
    let meta = match fs::symlink_metadata(root.join(&resolved)) {
        Ok(m) => m,
        Err(e) => return refuse(format!("cannot access: {e}")),
    };
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        if let Some((basename, suffix)) = vpick::versioned_dir(entry) {
            return match pick_version(root, &resolved, &basename, suffix) {
                Ok((file_name, kind)) => {
                    let path = resolved.join(&file_name);
                    // Whoever can write the .v/ directory can add the version that wins.
                    let writable_by = ownership::writable_by_others(&meta)
                        .map(|w| format!("{} is {w}", resolved.display()))
                        .or_else(|| {
                            ownership::path_writable_by_others(&root.join(&path))
                                .map(|w| format!("{} is {w}", path.display()))
                        });
                    Entry::Image(Image {
                        entry: entry.into(),
                        name: basename,
                        path,
                        file_name,
                        kind,
                        writable_by,
                        found_at: host_path.into(),
                    })
                }
                Err(reason) => refuse(reason),
            };
        }
        ImageKind::Directory
    } else if ft.is_block_device() {
        ImageKind::Block
    } else if is_raw_name {
        if !ft.is_file() {
            let what = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_char_device() {
                "a character device"
            } else {
                "not a regular file"
            };
            return refuse(format!("{what}, not a regular file"));
        }
        ImageKind::Raw
    } else {
        debug!(
            "Ignoring {}: neither a directory, a .raw file nor a block device.",
            host_path.display()
        );
        return Entry::Ignored;
    };
    let name = match kind {
        ImageKind::Raw => &entry[..entry.len() - 4],
        _ => entry,
    };
    let file_name = resolved
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    if !image_name_is_valid(name) || !image_name_is_valid(entry) || !image_name_is_valid(&file_name)
    {
        return refuse("invalid image name".into());
    }
    let writable_by =
        ownership::writable_by_others(&meta).map(|w| format!("{} is {w}", resolved.display()));
    Entry::Image(Image {
        entry: entry.into(),
        name: name.into(),
        path: resolved,
        file_name,
        kind,
        writable_by,
        found_at: host_path.into(),
    })
}
