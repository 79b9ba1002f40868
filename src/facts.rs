//! What is taken from an image: its os-release and the unit files that match (ARCHITECTURE.md, "Stages").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use log::Level;

use crate::diagnostic::{Diagnostic, Subject};
use crate::image::chase::Tree;
use crate::image::{FileKind, FsError, MAX_FILE_BYTES};
use crate::kmsg::shown;
use crate::model::UnitSource;
use crate::os_release::{self, OsRelease};

/// The image's system unit directories, highest priority first (systemd's lookup paths
/// as portable.c resolves them inside the image, less the runtime-only ones).
pub const IMAGE_UNIT_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

const OS_RELEASE_PATHS: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// The unit files of an image that match its portable's prefixes.
#[derive(Debug, Default)]
pub struct Units {
    /// Sorted by name.
    pub found: Vec<UnitSource>,
    /// Units left out, with why: at warning level and failing the run unless deliberate
    /// (masked, empty, provided by an earlier image).
    pub skipped: Vec<Diagnostic>,
    /// At debug level, each unit file that matches and where it was found, and each file
    /// of the unit directories that does not, with why.
    pub notes: Vec<Diagnostic>,
}

/// One entry of one of the image's unit directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    /// The unit directory, one of [`IMAGE_UNIT_DIRS`].
    pub dir: &'static str,
    /// The entry's name, as the file system has it.
    pub name: Vec<u8>,
    /// What it is.
    pub kind: FileKind,
}

impl UnitFile {
    /// Its path in the image, for messages.
    pub fn path(&self) -> String {
        format!("{}/{}", self.dir, shown(&self.name))
    }
}

/// Every entry of the image's unit directories, in lookup order: a directory reached twice
/// (`/lib` a link to `/usr/lib`) is listed once.
pub fn unit_files(tree: &Tree) -> Result<Vec<UnitFile>, String> {
    let mut files = Vec::new();
    let mut seen_dirs = Vec::new();
    for dir in IMAGE_UNIT_DIRS {
        let (resolved, entries) = match tree.read_dir(Path::new(dir)) {
            Ok(r) => r,
            Err(FsError::NotFound | FsError::NotADirectory) => continue,
            Err(e) => return Err(format!("cannot list {dir}: {e}")),
        };
        if seen_dirs.contains(&resolved) {
            continue;
        }
        seen_dirs.push(resolved);
        files.extend(entries.into_iter().map(|e| UnitFile {
            dir,
            name: e.name,
            kind: e.kind,
        }));
    }
    Ok(files)
}

/// Why a unit file of an image is not taken for a portable whose unit prefixes `prefixes`
/// names (the reason [`crate::names::unit_matches`] says no).
pub fn unwanted_reason(name: &str, prefixes: &str) -> String {
    match crate::names::parse_unit_name(name) {
        None => "it is not a valid unit name".to_string(),
        Some(n) if !crate::names::PORTABLE_UNIT_TYPES.contains(&n.kind) => format!(
            "a .{} unit: only service, socket, target, timer and path units are attached",
            n.kind
        ),
        Some(_) => format!("its name does not start with {prefixes}"),
    }
}

/// The image units are read from, as messages name it.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    /// Where it was found (the subject of its diagnostics).
    pub at: &'a Path,
    /// How messages name it ([`crate::model::Image::label`]).
    pub label: &'a str,
}

impl ImageRef<'_> {
    /// Unit `name` of this image was left out, for `reason`; `warn` unless deliberate.
    pub fn skip(&self, name: &str, reason: String, warn: bool) -> Diagnostic {
        let level = if warn { Level::Warn } else { Level::Debug };
        Diagnostic::unit_not_attached(name, self.at, self.label, level, reason).fails_if(warn)
    }
}

/// Read the image's os-release as systemd `systemd` does: `/etc/os-release`, else
/// `/usr/lib/os-release`; it must carry a non-empty `ID=`.
pub fn read_os_release(tree: &Tree, systemd: u32) -> Result<OsRelease, String> {
    // A link whose target the image lacks counts as absent, as for systemd (the next file
    // is tried), but is named if nothing is found: it is the likely mistake (or trick).
    let mut dangling = None;
    for path in OS_RELEASE_PATHS {
        match tree.read_file(Path::new(path), MAX_FILE_BYTES) {
            Ok(bytes) => {
                let release =
                    os_release::parse_for(&bytes, systemd).map_err(|e| format!("{path}: {e}"))?;
                if release.non_empty("ID").is_none() {
                    return Err(format!("os-release ({path}) lacks the ID= field"));
                }
                return Ok(release);
            }
            Err(FsError::NotFound) => {
                if dangling.is_none()
                    && let Ok(target) = tree.read_link(Path::new(path))
                {
                    dangling = Some((path, shown(&target)));
                }
            }
            Err(e) => return Err(format!("cannot read {path}: {e}")),
        }
    }
    Err(match dangling {
        Some((path, target)) => format!(
            "image lacks os-release data: {path} is a symbolic link to {target}, which is not in the image (links are resolved inside it)"
        ),
        None => "image lacks os-release data (/etc/os-release or /usr/lib/os-release)".into(),
    })
}

/// Why a file name is no unit name for reasons of its bytes alone, and whether it would
/// have been wanted but for them (its bad characters taken for a letter): such a unit is
/// reported, not passed over in silence.
fn bad_bytes(raw: &[u8], wanted: &impl Fn(&str) -> bool) -> Option<&'static str> {
    let why = match std::str::from_utf8(raw) {
        Err(_) => "its name is not valid UTF-8",
        Ok(s) if s.chars().any(char::is_control) => "its name holds a control character",
        Ok(_) => return None,
    };
    let letters: String = String::from_utf8_lossy(raw)
        .chars()
        .map(|c| {
            if c.is_control() || c == char::REPLACEMENT_CHARACTER {
                'x'
            } else {
                c
            }
        })
        .collect();
    wanted(&letters).then_some(why)
}

/// Most unit files read from one image: the plan attaches at most 256 of them
/// (`plan::MAX_UNITS_PER_IMAGE`), and says so when there are more.
pub const MAX_UNITS_READ: usize = 257;

/// Collect the units named by `wanted` from the top level of the image's unit
/// directories, the first directory holding a name winning. Only names accepted by
/// `wanted` are read, so an image with hundreds of units costs what its matches cost.
pub fn read_units(
    tree: &Tree,
    wanted: impl Fn(&str) -> bool,
    from: ImageRef,
) -> Result<Units, String> {
    let mut units = Units::default();
    let (chosen, misnamed) = choose_units(tree, &wanted, from, &mut units.notes)?;
    // Real images ship a handful of units; a crafted one with tens of thousands (hard links
    // cost nothing in an image) is read only as far as the first MAX_UNITS_READ names.
    let total = chosen.len();
    if let Some(first) = chosen.keys().nth(MAX_UNITS_READ) {
        units.skipped.push(from.skip(
            &format!("{first} and {} more", total - MAX_UNITS_READ - 1),
            format!(
                "{total} unit files match, and only the first {MAX_UNITS_READ} by name are read"
            ),
            true,
        ));
    }
    for (name, (origin, kind)) in chosen.into_iter().take(MAX_UNITS_READ) {
        match read_unit(tree, name, origin, kind, from) {
            Ok(unit) => {
                units.notes.push(Diagnostic::new(
                    Subject::Unit {
                        unit: unit.name.clone(),
                        image: from.at.to_path_buf(),
                    },
                    Level::Debug,
                    format!("{} matches", unit.origin.display()),
                    format!(
                        "Unit {} of image {}: {} matches.",
                        unit.name,
                        from.label,
                        unit.origin.display()
                    ),
                ));
                units.found.push(unit);
            }
            Err(skip) => units.skipped.push(skip),
        }
    }
    units.skipped.extend(misnamed.into_values());
    Ok(units)
}

/// Most debug lines about the unit files of one image passed over; the rest are counted.
const MAX_NOTES: usize = 64;

/// Wanted unit names, each with where it was first found and what it is there.
type Chosen = BTreeMap<String, (PathBuf, FileKind)>;
/// Entries whose bytes are no unit name although they would be wanted, by those bytes.
type Misnamed = BTreeMap<Vec<u8>, Diagnostic>;

/// The wanted units of the image's unit directories, the first directory holding a name
/// winning; and the misnamed entries. Each file passed over is a debug line in `notes`.
fn choose_units(
    tree: &Tree,
    wanted: &impl Fn(&str) -> bool,
    from: ImageRef,
    notes: &mut Vec<Diagnostic>,
) -> Result<(Chosen, Misnamed), String> {
    let mut chosen = Chosen::new();
    let mut misnamed = Misnamed::new();
    let mut passed_over = 0usize;
    for entry in unit_files(tree)? {
        let dir = entry.dir;
        if let Some(why) = bad_bytes(&entry.name, &wanted) {
            let name = shown(&entry.name);
            misnamed.entry(entry.name).or_insert_with(|| {
                from.skip(
                    &name,
                    format!("{dir}/{name} is not a valid unit name: {why}"),
                    true,
                )
            });
            continue;
        }
        let Ok(name) = String::from_utf8(entry.name) else {
            continue;
        };
        let why = if notes.len() >= MAX_NOTES {
            // Only counted: a crafted image can hold tens of thousands of files.
            if wanted(&name) && !chosen.contains_key(&name) {
                chosen.insert(name.clone(), (Path::new(dir).join(&name), entry.kind));
            } else {
                passed_over += 1;
            }
            continue;
        } else if !wanted(&name) {
            unwanted_reason(&name, "the image's unit prefix")
        } else if chosen.contains_key(&name) {
            "an earlier unit directory has one of that name".to_string()
        } else {
            chosen.insert(name.clone(), (Path::new(dir).join(&name), entry.kind));
            continue;
        };
        notes.push(Diagnostic::new(
            Subject::Unit {
                unit: name.clone(),
                image: from.at.to_path_buf(),
            },
            Level::Debug,
            why.clone(),
            format!(
                "Unit file {dir}/{} of image {} passed over: {why}.",
                shown(name.as_bytes()),
                from.label
            ),
        ));
    }
    if passed_over > 0 {
        let reason = format!("{passed_over} more unit files passed over");
        let message = format!("Image {}: {reason}.", from.label);
        let subject = Subject::Image(from.at.to_path_buf());
        notes.push(Diagnostic::new(subject, Level::Debug, reason, message));
    }
    Ok((chosen, misnamed))
}

/// The unit file `name`, found at `origin` as `kind`; else why it is left out.
fn read_unit(
    tree: &Tree,
    name: String,
    origin: PathBuf,
    kind: FileKind,
    from: ImageRef,
) -> Result<UnitSource, Diagnostic> {
    let skip = |reason: String, warn: bool| from.skip(&name, reason, warn);
    match kind {
        FileKind::File | FileKind::Symlink => {}
        FileKind::Dir => return Err(skip(format!("{} is a directory", origin.display()), true)),
        FileKind::Other => {
            let reason = format!("{} is not a regular file", origin.display());
            return Err(skip(reason, true));
        }
    }
    let mut alias_of = None;
    if kind == FileKind::Symlink {
        match tree.read_link(&origin) {
            Ok(target) if target == b"/dev/null" => {
                return Err(skip(format!("{} is masked", origin.display()), false));
            }
            Ok(_) => {}
            Err(e) => return Err(skip(format!("cannot read {}: {e}", origin.display()), true)),
        }
        alias_of = tree
            .resolve(&origin, true)
            .ok()
            .and_then(|r| {
                r.path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(String::from)
            })
            .filter(|target| *target != name);
    }
    match tree.read_file(&origin, MAX_FILE_BYTES) {
        Ok(bytes) if bytes.is_empty() => Err(skip(format!("{} is empty", origin.display()), false)),
        Ok(bytes) => Ok(UnitSource {
            name,
            origin,
            bytes,
            alias_of,
            extension: None,
        }),
        Err(e) => Err(skip(format!("cannot read {}: {e}", origin.display()), true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::chase::tests::MemFs;
    use std::os::unix::ffi::OsStrExt;

    fn image() -> ImageRef<'static> {
        ImageRef {
            at: Path::new("/var/lib/portables/foo"),
            label: "/var/lib/portables/foo",
        }
    }

    fn tree(fs: MemFs) -> Tree {
        Tree::new(Box::new(fs))
    }

    #[test]
    fn os_release_order_and_id() {
        let t = tree(MemFs::new().file("/usr/lib/os-release", b"ID=debian\n"));
        assert_eq!(read_os_release(&t, 257).unwrap().get("ID"), Some("debian"));
        let t = tree(
            MemFs::new()
                .file("/etc/os-release", b"ID=etc\n")
                .file("/usr/lib/os-release", b"ID=usr\n"),
        );
        assert_eq!(read_os_release(&t, 257).unwrap().get("ID"), Some("etc"));
        let t = tree(MemFs::new().file("/etc/os-release", b"NAME=x\n"));
        assert!(read_os_release(&t, 257).unwrap_err().contains("ID="));
        assert!(
            read_os_release(&tree(MemFs::new()), 257)
                .unwrap_err()
                .contains("lacks os-release")
        );
    }

    #[test]
    fn os_release_link_out_of_the_image_is_named() {
        let t = tree(MemFs::new().link("/usr/lib/os-release", "/etc/shadow"));
        assert_eq!(
            read_os_release(&t, 257).unwrap_err(),
            "image lacks os-release data: /usr/lib/os-release is a symbolic link to /etc/shadow, which is not in the image (links are resolved inside it)"
        );
        // As for systemd, the next file counts when the first one's link leads nowhere.
        let t = tree(
            MemFs::new()
                .link("/etc/os-release", "../../../x")
                .file("/usr/lib/os-release", b"ID=usr\n"),
        );
        assert_eq!(read_os_release(&t, 257).unwrap().get("ID"), Some("usr"));
    }

    #[test]
    fn units_with_bad_bytes_in_their_names_are_reported() {
        let mut fs = MemFs::new().dir("/usr/lib/systemd/system");
        for name in [
            &b"foo-\x01.service"[..],
            b"foo-\xff.service",
            b"bar-\x01.service",
        ] {
            fs.nodes.insert(
                Path::new("/usr/lib/systemd/system").join(std::ffi::OsStr::from_bytes(name)),
                crate::image::chase::tests::Node::File(b"x".to_vec()),
            );
        }
        let u = read_units(&tree(fs), |n| n.starts_with("foo"), image()).unwrap();
        assert!(u.found.is_empty());
        let skipped: Vec<_> = u
            .skipped
            .iter()
            .map(|s| (s.unit().unwrap(), s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            vec![
                (
                    "foo-\\x01.service",
                    "/usr/lib/systemd/system/foo-\\x01.service is not a valid unit name: its name holds a control character"
                ),
                (
                    "foo-\\xff.service",
                    "/usr/lib/systemd/system/foo-\\xff.service is not a valid unit name: its name is not valid UTF-8"
                ),
            ]
        );
    }

    #[test]
    fn files_passed_over_are_debug_notes_with_why() {
        let t = tree(
            MemFs::new()
                .file("/etc/systemd/system/foo.service", b"etc")
                .file("/usr/lib/systemd/system/foo.service", b"usr")
                .file("/usr/lib/systemd/system/foo.mount", b"x")
                .file("/usr/lib/systemd/system/bar.service", b"x"),
        );
        let wanted = |n: &str| crate::names::unit_matches(n, &["foo".to_string()]);
        let u = read_units(&t, wanted, image()).unwrap();
        let notes: Vec<_> = u
            .notes
            .iter()
            .map(|n| (n.level, n.message.as_str()))
            .collect();
        assert_eq!(
            notes,
            vec![
                (
                    Level::Debug,
                    "Unit file /usr/lib/systemd/system/bar.service of image /var/lib/portables/foo passed over: its name does not start with the image's unit prefix."
                ),
                (
                    Level::Debug,
                    "Unit file /usr/lib/systemd/system/foo.mount of image /var/lib/portables/foo passed over: a .mount unit: only service, socket, target, timer and path units are attached."
                ),
                (
                    Level::Debug,
                    "Unit file /usr/lib/systemd/system/foo.service of image /var/lib/portables/foo passed over: an earlier unit directory has one of that name."
                ),
                (
                    Level::Debug,
                    "Unit foo.service of image /var/lib/portables/foo: /etc/systemd/system/foo.service matches."
                ),
            ]
        );
        assert!(u.skipped.is_empty());
    }

    #[test]
    fn units_first_dir_wins_and_links_follow() {
        let t = tree(
            MemFs::new()
                .file("/etc/systemd/system/foo.service", b"etc")
                .file("/usr/lib/systemd/system/foo.service", b"usr")
                .link("/usr/lib/systemd/system/foo-alias.service", "foo.service")
                .link("/usr/lib/systemd/system/foo-masked.service", "/dev/null")
                .file("/usr/lib/systemd/system/foo-empty.service", b"")
                .file("/usr/lib/systemd/system/bar.service", b"bar")
                .dir("/usr/lib/systemd/system/foo.service.d")
                .link("/lib", "usr/lib"),
        );
        let u = read_units(&t, |n| n.starts_with("foo"), image()).unwrap();
        let got: Vec<_> = u
            .found
            .iter()
            .map(|u| (u.name.as_str(), u.bytes.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("foo-alias.service", &b"usr"[..]),
                ("foo.service", &b"etc"[..])
            ]
        );
        let skipped: Vec<_> = u
            .skipped
            .iter()
            .map(|s| (s.unit().unwrap(), s.fails))
            .collect();
        assert_eq!(
            skipped,
            vec![
                ("foo-empty.service", false),
                ("foo-masked.service", false),
                ("foo.service.d", true)
            ]
        );
    }
}
