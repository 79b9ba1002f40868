//! What the generator emits, seen as attached units: which units are ours, the images they run
//! from, a fingerprint of their files, and the targets they are linked into. Made from a plan
//! (the new state) or from the generator's output directory as it is (the state systemd
//! loaded at the last reload), both as the same map of nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::out_path::OutPath;
use crate::plan::{Node, Nodes};
use crate::unit_syntax;

/// The drop-in that makes a unit ours: `UNIT.d/20-portable.conf`.
pub const PORTABLE_DROPIN: &str = "20-portable.conf";

/// The `[Install]` link directories that enable a unit (`TARGET.wants/UNIT`, ...).
const LINK_SUFFIXES: [&str; 3] = [".wants", ".requires", ".upholds"];

/// Most entries read from the generator's output directory: as many as one run may write
/// (ARCHITECTURE.md, "Limits").
const MAX_ENTRIES: usize = crate::plan::MAX_OUTPUT_NODES;

/// One attached unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unit {
    /// The image it runs from (`RootImage=`/`RootDirectory=`), then its extensions.
    pub images: Vec<PathBuf>,
    /// A hash of its unit file and drop-ins (names, contents, link targets).
    pub fingerprint: u64,
    /// The units whose `.wants/`, `.requires/` or `.upholds/` directory links to it.
    pub wanted_by: BTreeSet<String>,
    /// What its images were when planned: a hash of each image file's device, inode and size
    /// (of a directory image, those of its os-release and its time) and of its os-release
    /// fields. Known for a plan `apply` made, and so from its record; `None` when read from
    /// the output directory.
    pub stamp: Option<u64>,
}

impl Unit {
    /// Whether it is enabled: linked into some other unit.
    pub fn enabled(&self) -> bool {
        !self.wanted_by.is_empty()
    }

    /// The image it runs from, if its drop-in names one.
    pub fn image(&self) -> Option<&Path> {
        self.images.first().map(PathBuf::as_path)
    }
}

/// Every attached unit, by name.
pub type Snapshot = BTreeMap<String, Unit>;

/// The attached units among `nodes` (relative paths of an output directory): the top-level
/// units with a `UNIT.d/20-portable.conf` file.
pub fn from_nodes(nodes: &Nodes) -> Snapshot {
    let mut units = Snapshot::new();
    for (rel, node) in nodes {
        let mut parts = rel.iter().filter_map(|c| c.to_str());
        let (Some(dir), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Some(name), Node::File(bytes)) = (dir.strip_suffix(".d"), node) else {
            continue;
        };
        if file == PORTABLE_DROPIN {
            units.insert(
                name.to_string(),
                Unit {
                    images: images_of(bytes),
                    fingerprint: fingerprint(nodes, name),
                    wanted_by: BTreeSet::new(),
                    stamp: None,
                },
            );
        }
    }
    for rel in nodes.keys() {
        let mut parts = rel.iter().filter_map(|c| c.to_str());
        let (Some(dir), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Some(by) = LINK_SUFFIXES.iter().find_map(|s| dir.strip_suffix(s)) else {
            continue;
        };
        if let Some(u) = units.get_mut(unit) {
            u.wanted_by.insert(by.to_string());
        }
    }
    units
}

/// Whether `a` and `b` make the same generator output: the same units, images, files and
/// links (what the images hold does not show in the output).
pub fn same_output(a: &Snapshot, b: &Snapshot) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((na, ua), (nb, ub))| {
            na == nb
                && ua.images == ub.images
                && ua.fingerprint == ub.fingerprint
                && ua.wanted_by == ub.wanted_by
        })
}

/// A unit's [`Unit::stamp`], from its images as they are now and the os-release `release`
/// (its fields in order) read from the root image.
pub fn stamp(images: &[PathBuf], release: &[(String, String)]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut hash = Fnv::default();
    for image in images {
        hash.add(image.as_os_str().as_encoded_bytes());
        let meta = fs::metadata(image).ok().and_then(|m| {
            if !m.is_dir() {
                return Some((m, false));
            }
            // A directory's own times change whenever systemd makes a mount point in it.
            ["usr/lib/os-release", "etc/os-release"]
                .iter()
                .find_map(|r| fs::metadata(image.join(r)).ok())
                .map(|m| (m, true))
        });
        if let Some((m, dir)) = meta {
            hash.add(&m.dev().to_le_bytes());
            hash.add(&m.ino().to_le_bytes());
            hash.add(&m.size().to_le_bytes());
            if dir {
                hash.add(&m.mtime().to_le_bytes());
                hash.add(&m.mtime_nsec().to_le_bytes());
            }
        }
    }
    for (key, value) in release {
        hash.add(key.as_bytes());
        hash.add(value.as_bytes());
    }
    hash.0
}

/// The images a `20-portable.conf` names: the root first, then the extensions. Values are
/// read as systemd reads them (`%%` is a `%`; extension lists are split into words, with a
/// leading `-` and trailing mount options dropped).
fn images_of(dropin: &[u8]) -> Vec<PathBuf> {
    let Ok((unit, _)) = unit_syntax::parse(dropin) else {
        return Vec::new();
    };
    let unescape = |v: &str| PathBuf::from(v.replace("%%", "%"));
    let mut out: Vec<PathBuf> = ["RootImage", "RootDirectory"]
        .iter()
        .filter_map(|k| unit.last("Service", k))
        .map(unescape)
        .collect();
    for key in ["ExtensionImages", "ExtensionDirectories"] {
        for word in unit.list_lenient("Service", key).0 {
            let path = word.strip_prefix('-').unwrap_or(&word);
            let path = path.split(':').next().unwrap_or(path);
            out.push(unescape(path));
        }
    }
    out
}

/// FNV-1a over a unit's file and its drop-in directory's entries: stable across runs and
/// builds, so the record written by one `apply` is understood by the next.
fn fingerprint(nodes: &Nodes, unit: &str) -> u64 {
    let mut hash = Fnv::default();
    let dir = OutPath::from(format!("{unit}.d"));
    let own = nodes.get_key_value(&OutPath::from(unit));
    let dropins = nodes
        .range(dir.clone()..)
        .take_while(|(k, _)| k.starts_with(&dir));
    for (rel, node) in own.into_iter().chain(dropins) {
        hash.add(rel.as_os_str().as_encoded_bytes());
        match node {
            Node::File(bytes) => {
                hash.add(b"f");
                hash.add(bytes);
            }
            Node::Symlink(target) => {
                hash.add(b"l");
                hash.add(target.as_os_str().as_encoded_bytes());
            }
        }
    }
    hash.0
}

/// 64-bit FNV-1a, each added piece followed by a separator so that pieces cannot run together.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The nodes of the generator's output directory `dir` that [`from_nodes`] looks at: our
/// units' files and drop-ins, and the `[Install]` link directories. Other generators' files
/// are left unread. A directory that cannot be read is an empty one (nothing was emitted).
pub fn read_output_dir(dir: &Path) -> Nodes {
    let mut nodes = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return nodes;
    };
    let names: Vec<String> = entries
        .take(MAX_ENTRIES)
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    for name in &names {
        let sub = dir.join(name);
        let ours = name
            .strip_suffix(".d")
            .filter(|_| sub.join(PORTABLE_DROPIN).is_file());
        let links = LINK_SUFFIXES.iter().any(|s| name.ends_with(s));
        if let Some(unit) = ours {
            read_node(dir, Path::new(unit), &mut nodes);
        }
        if ours.is_none() && !links {
            continue;
        }
        let Ok(inner) = fs::read_dir(&sub) else {
            continue;
        };
        for e in inner.take(MAX_ENTRIES).filter_map(Result::ok) {
            if nodes.len() >= MAX_ENTRIES {
                return nodes;
            }
            read_node(dir, &Path::new(name).join(e.file_name()), &mut nodes);
        }
    }
    nodes
}

/// Read `dir/rel` into `nodes`: a link as its target, a regular file (at most what a unit
/// file may hold) as its bytes. Anything else is left out.
fn read_node(dir: &Path, rel: &Path, nodes: &mut Nodes) {
    let path = dir.join(rel);
    let Ok(meta) = fs::symlink_metadata(&path) else {
        return;
    };
    let node = if meta.is_symlink() {
        fs::read_link(&path).ok().map(Node::Symlink)
    } else if meta.is_file() && meta.len() <= crate::image::MAX_FILE_BYTES {
        fs::read(&path).ok().map(Node::File)
    } else {
        None
    };
    if let Some(node) = node {
        nodes.insert(OutPath::from(rel), node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str) -> Node {
        Node::File(s.as_bytes().to_vec())
    }

    pub(crate) fn nodes(list: &[(&str, Node)]) -> Nodes {
        list.iter()
            .map(|(p, n)| (OutPath::from(*p), n.clone()))
            .collect()
    }

    const DROPIN: &str = "# Drop-in created for image '/var/lib/portables/app.raw', do not edit.\n\n\
        [Service]\nRootImage=/var/lib/portables/app.raw\nEnvironment=PORTABLE=app.raw\n\
        ExtensionImages=-/var/lib/ext/a%%b.raw:root:nosuid \"/var/lib/ext/c d.raw\"\n";

    #[test]
    fn our_units_are_those_with_the_portable_dropin() {
        let n = nodes(&[
            ("app.service", file("[Service]\nExecStart=/bin/app\n")),
            ("app.service.d/20-portable.conf", file(DROPIN)),
            (
                "app.service.d/10-profile.conf",
                Node::Symlink("/usr/lib/p/default/service.conf".into()),
            ),
            (
                "multi-user.target.wants/app.service",
                Node::Symlink("../app.service".into()),
            ),
            (
                "multi-user.target.wants/other.service",
                Node::Symlink("../other.service".into()),
            ),
            ("other.service", file("[Service]\n")),
            ("portables-reattach.service", file("[Service]\n")),
        ]);
        let s = from_nodes(&n);
        assert_eq!(s.keys().collect::<Vec<_>>(), ["app.service"]);
        let app = &s["app.service"];
        assert_eq!(
            app.images,
            [
                "/var/lib/portables/app.raw",
                "/var/lib/ext/a%b.raw",
                "/var/lib/ext/c d.raw"
            ]
            .map(PathBuf::from)
        );
        assert!(app.enabled());
        assert_eq!(
            app.wanted_by.iter().collect::<Vec<_>>(),
            ["multi-user.target"]
        );
    }

    #[test]
    fn the_fingerprint_follows_the_units_files_only() {
        let base = [
            ("app.service", file("[Service]\nExecStart=/bin/app\n")),
            ("app.service.d/20-portable.conf", file(DROPIN)),
            ("app.service.dx", file("not a drop-in\n")),
        ];
        let a = from_nodes(&nodes(&base))["app.service"].fingerprint;
        let mut other = base.clone();
        other[2].1 = file("changed, but not the unit's\n");
        assert_eq!(a, from_nodes(&nodes(&other))["app.service"].fingerprint);
        let mut changed = base.clone();
        changed[0].1 = file("[Service]\nExecStart=/bin/app2\n");
        assert_ne!(a, from_nodes(&nodes(&changed))["app.service"].fingerprint);
    }

    #[test]
    fn the_output_directory_reads_back_as_the_plan_that_wrote_it() {
        let n = nodes(&[
            ("app.service", file("[Service]\nExecStart=/bin/app\n")),
            ("app.service.d/20-portable.conf", file(DROPIN)),
            (
                "app.service.d/10-profile.conf",
                Node::Symlink("/usr/lib/p/default/service.conf".into()),
            ),
            (
                "sockets.target.wants/app.service",
                Node::Symlink("../app.service".into()),
            ),
        ]);
        let dir = tempfile::tempdir().unwrap();
        for (rel, node) in &n {
            let at = dir.path().join(rel);
            fs::create_dir_all(at.parent().unwrap()).unwrap();
            match node {
                Node::File(bytes) => fs::write(at, bytes).unwrap(),
                Node::Symlink(to) => std::os::unix::fs::symlink(to, at).unwrap(),
            }
        }
        // Another generator's files are not read.
        fs::create_dir(dir.path().join("x.mount.d")).unwrap();
        fs::write(dir.path().join("x.mount.d/a.conf"), "").unwrap();
        fs::write(dir.path().join("x.mount"), "").unwrap();
        assert_eq!(read_output_dir(dir.path()), n);
        assert_eq!(from_nodes(&read_output_dir(dir.path())), from_nodes(&n));
        assert!(read_output_dir(&dir.path().join("missing")).is_empty());
    }
}
