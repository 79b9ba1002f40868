//! Discovery: the images in the search paths, each name once, the first directory holding it
//! winning (ARCHITECTURE.md, "Stages").

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use log::Level;

use crate::diagnostic::{Diagnostic, Diagnostics, Subject};
use crate::image::{FileKind, FsError};
use crate::model::{Image, ImageKind};
use crate::names::image_name_is_valid;
use crate::ownership;
use crate::root::{Found as Resolved, Root};
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

enum Entry {
    Image(Image),
    /// Named like an image, but cannot be one: why.
    Refused(String),
    /// Not an image, and not named like one: why, for the debug log.
    Ignored(String),
}

/// Look at every entry of every search directory below `root`: the images, in search-path
/// order then name order. A search directory that cannot be read and an entry that cannot be
/// an image are errors; what is passed over is said at debug level.
pub fn discover(
    root: &Root,
    allow_writable_by_others: bool,
    diags: &mut Diagnostics,
) -> Vec<Image> {
    let mut images = Vec::new();
    // Unreadable directories are told before refused entries, each in search-path order.
    let mut unreadable = Vec::new();
    let mut refused = Vec::new();
    let mut seen = BTreeSet::new();
    for dir in SEARCH_PATHS {
        let (resolved_dir, names) = match list_search_dir(root, dir, allow_writable_by_others) {
            Ok(Some(listed)) => listed,
            Ok(None) => {
                diags.push(Diagnostic::run(
                    Level::Debug,
                    format!("Search directory {dir} does not exist."),
                ));
                continue;
            }
            Err(reason) => {
                let message = format!("Cannot read search directory {dir}: {reason}.");
                let subject = Subject::SearchDir(dir.into());
                unreadable.push(Diagnostic::new(subject, Level::Error, reason, message).failing());
                continue;
            }
        };
        let listed = match names.len() {
            0 => format!("Search directory {dir} is empty."),
            n => format!("Search directory {dir} has {n} entries."),
        };
        diags.push(Diagnostic::run(Level::Debug, listed));
        let mut here = images_in(root, dir, &resolved_dir, names, &mut refused, diags);
        // image_find() tries NAME before NAME.raw within one directory.
        here.sort_by_key(|i| (i.name.clone(), i.kind == ImageKind::Raw));
        for image in here {
            if seen.contains(&image.name) {
                let reason =
                    "shadowed by an image of the same name earlier in the search path".to_string();
                let message = format!("Image {} is {reason}.", image.path.display());
                let subject = Subject::Image(image.found_at.clone());
                diags.push(Diagnostic::new(subject, Level::Debug, reason, message).leaving_out());
                continue;
            }
            let reason = format!("found, {}", describe_kind(&image));
            let message = format!("Image {} {reason}.", image.label());
            let subject = Subject::Image(image.found_at.clone());
            diags.push(Diagnostic::new(subject, Level::Debug, reason, message));
            seen.insert(image.name.clone());
            images.push(image);
        }
    }
    diags.extend(unreadable);
    diags.extend(refused);
    images
}

/// What an image is, for messages: `a directory image`, `a raw image`, `a block device`.
pub fn describe_kind(image: &Image) -> &'static str {
    match image.kind {
        ImageKind::Directory => "a directory image",
        ImageKind::Raw => "a raw image",
        ImageKind::Block => "a block device",
    }
}

/// The search directory `dir` resolved below `root`, and its entries' names, sorted;
/// `None` if it does not exist, else why it cannot be used.
fn list_search_dir(
    root: &Root,
    dir: &str,
    allow_writable_by_others: bool,
) -> Result<Option<(PathBuf, Vec<OsString>)>, String> {
    // Links are resolved inside the root, as the booted system would resolve them.
    let search = match root.resolve(Path::new(dir), true) {
        Ok(r) => r,
        Err(FsError::NotFound) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // Whoever can write the directory, or one on the way to it, decides which images are
    // found there.
    let writable = ownership::writable_by(search.owner)
        .map(|who| format!("it is {who}"))
        .or_else(|| search.steered());
    if !allow_writable_by_others && let Some(who) = writable {
        return Err(format!(
            "{who}, so its images are not used: {}",
            ownership::HINT
        ));
    }
    if search.kind != FileKind::Dir {
        return Err(FsError::NotADirectory.to_string());
    }
    let listing = root.read_dir(&search).map_err(|e| e.to_string())?;
    let mut names: Vec<OsString> = listing
        .into_iter()
        .map(|e| OsString::from_vec(e.name))
        .collect();
    names.sort();
    Ok(Some((search.path, names)))
}

/// The images among the entries `names` of the search directory `dir` (resolved to
/// `resolved_dir`), in name order; entries named like images that cannot be one go to
/// `refused`.
fn images_in(
    root: &Root,
    dir: &str,
    resolved_dir: &Path,
    names: Vec<OsString>,
    refused: &mut Vec<Diagnostic>,
    diags: &mut Diagnostics,
) -> Vec<Image> {
    let mut here = Vec::new();
    for os_name in names {
        let host_path = PathBuf::from(dir).join(&os_name);
        let refuse = |reason: String| {
            let label = host_path.display().to_string();
            Diagnostic::image_not_attached(&host_path, &label, Level::Error, reason).failing()
        };
        let Some(file_name) = os_name.to_str() else {
            refused.push(refuse("the name is not valid UTF-8".into()));
            continue;
        };
        if file_name.starts_with('.') {
            diags.push(Diagnostic::run(
                Level::Debug,
                format!("Ignoring hidden entry {}.", host_path.display()),
            ));
            continue;
        }
        match classify(root, resolved_dir, &host_path, file_name) {
            Entry::Image(image) => here.push(image),
            Entry::Refused(reason) => refused.push(refuse(reason)),
            Entry::Ignored(why) => diags.push(Diagnostic::run(
                Level::Debug,
                format!("Ignoring {}: {why}", host_path.display()),
            )),
        }
    }
    here
}

/// The image at `path` (a host path, e.g. from `Image=`), resolved and classified as a
/// search-path entry would be.
pub fn image_at(root: &Root, path: &Path) -> Result<Image, String> {
    let (Some(dir), Some(entry)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(format!("{} does not name a file", path.display()));
    };
    let resolved_dir = root
        .resolve(dir, true)
        .map_err(|e| format!("cannot access {}: {e}", dir.display()))?
        .path;
    // A path that is simply absent is said so, not taken for a dangling link.
    if !matches!(root.lstat(&resolved_dir.join(entry)), Ok(Some(_))) {
        return Err("it does not exist".into());
    }
    match classify(root, &resolved_dir, path, entry) {
        Entry::Image(image) => Ok(image),
        Entry::Refused(reason) => Err(reason),
        Entry::Ignored(_) => Err("neither a directory, a .raw file nor a block device".into()),
    }
}

/// The newest usable version in a `NAME.raw.v/` or `NAME.v/` directory (systemd's vpick):
/// its file name and kind.
fn pick_version(
    root: &Root,
    dir: &Resolved,
    basename: &str,
    suffix: vpick::Suffix,
) -> Result<(Resolved, ImageKind), String> {
    let listing = root
        .read_dir(dir)
        .map_err(|e| format!("cannot list: {e}"))?;
    let mut entries = Vec::new();
    let mut resolved = BTreeMap::new();
    let mut passed_over = Vec::new();
    for entry in listing {
        let Ok(name) = String::from_utf8(entry.name) else {
            continue;
        };
        // Each entry is followed inside the root (an absolute link names the root's file,
        // not this machine's); only O_PATH descriptors are opened: nothing blocks.
        let found = match root.resolve(&dir.path.join(&name), true) {
            Ok(found) => found,
            Err(e) => {
                passed_over.push(unusable(root, &dir.path.join(&name), e));
                continue;
            }
        };
        let ft = rustix::fs::FileType::from_raw_mode(found.owner.mode);
        let is_block = ft == rustix::fs::FileType::BlockDevice;
        entries.push((
            name.clone(),
            ft == rustix::fs::FileType::RegularFile || is_block,
            found.kind == FileKind::Dir,
        ));
        resolved.insert(name, (found, is_block));
    }
    entries.sort();
    let chosen = vpick::pick(
        basename,
        suffix,
        &entries,
        &crate::arch::local_architectures(),
    )
    .map_err(|why| {
        // Entries that lead nowhere were not offered to vpick: say why, rather than
        // calling the directory empty.
        if passed_over.is_empty() {
            return why.to_string();
        }
        let more = passed_over.len().saturating_sub(3);
        passed_over.truncate(3);
        let mut list = passed_over.join("; ");
        if more > 0 {
            list.push_str(&format!("; and {more} more"));
        }
        match why {
            vpick::PickError::Empty { .. } => format!("no entry can be used: {list}"),
            why => format!("{why}; {list}"),
        }
    })?;
    let (found, is_block) = resolved
        .remove(&chosen.file_name)
        .ok_or_else(|| format!("{} vanished while being listed", chosen.file_name))?;
    let kind = match suffix {
        vpick::Suffix::Directory => ImageKind::Directory,
        vpick::Suffix::Raw if is_block => ImageKind::Block,
        vpick::Suffix::Raw => ImageKind::Raw,
    };
    Ok((found, kind))
}

/// Why the entry at `path` (in a `.v/` directory) leads nowhere.
fn unusable(root: &Root, path: &Path, e: FsError) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = root
        .resolve(path, false)
        .ok()
        .and_then(|link| crate::image::at::read_link(crate::image::at::b(&link.fd), b"").ok())
        .map(|t| crate::kmsg::shown(&t));
    match (e, target) {
        (FsError::NotFound, Some(t)) => format!(
            "{name} is a symbolic link to {t}, which is not in the root (links are resolved inside it)"
        ),
        (FsError::SymlinkLoop, _) => format!("{name} is a symbolic link loop"),
        (e, _) => format!("{name}: {e}"),
    }
}

fn classify(root: &Root, resolved_dir: &Path, host_path: &Path, entry: &str) -> Entry {
    let refuse = Entry::Refused;
    let is_raw_name = entry.ends_with(".raw");
    let here = resolved_dir.join(entry);
    let found = match root.resolve(&here, true) {
        Ok(r) => r,
        Err(e) => {
            let is_link = matches!(root.lstat(&here), Ok(Some(FileKind::Symlink)));
            if !is_raw_name && !is_link {
                return Entry::Ignored(e.to_string());
            }
            return match e {
                FsError::NotFound => refuse("dangling symbolic link".into()),
                FsError::SymlinkLoop => refuse("symbolic link loop".into()),
                e => refuse(format!("cannot access: {e}")),
            };
        }
    };
    // Whoever can write the image, or a directory on the way to it, can change what root
    // runs.
    let writable_by = |found: &Resolved| {
        ownership::writable_by(found.owner)
            .map(|w| format!("{} is {w}", found.path.display()))
            .or_else(|| found.steered())
    };
    let resolved = found.path.clone();
    // The mode of the resolved entry: nothing is opened, so nothing here can block.
    use rustix::fs::FileType;
    let ft = FileType::from_raw_mode(found.owner.mode);
    let kind = if ft == FileType::Directory {
        if let Some((basename, suffix)) = vpick::versioned_dir(entry) {
            return match pick_version(root, &found, &basename, suffix) {
                Ok((chosen, kind)) => {
                    // The version's path with its links resolved in the root, as for any
                    // image: the booted system reads the same file.
                    let path = chosen.path.clone();
                    let file_name = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_string();
                    // Whoever can write the .v/ directory can add the version that wins.
                    Entry::Image(Image {
                        entry: entry.into(),
                        name: basename,
                        path,
                        file_name,
                        kind,
                        writable_by: writable_by(&found).or_else(|| writable_by(&chosen)),
                        found_at: host_path.into(),
                    })
                }
                Err(reason) => refuse(reason),
            };
        }
        ImageKind::Directory
    } else if ft == FileType::BlockDevice {
        ImageKind::Block
    } else if is_raw_name {
        if ft != FileType::RegularFile {
            let what = match ft {
                FileType::Fifo => "a FIFO",
                FileType::Socket => "a socket",
                FileType::CharacterDevice => "a character device",
                _ => "not a regular file",
            };
            return refuse(format!("{what}, not a regular file"));
        }
        ImageKind::Raw
    } else {
        return Entry::Ignored("neither a directory, a .raw file nor a block device.".into());
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
    let writable_by = writable_by(&found);
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
