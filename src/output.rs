//! Writing the plan into the output directory: the only code that creates anything.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;

use log::Level;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan::{Node, Nodes, Plan, is_confined};

/// Each message of [`Writer::finish`] as an error that fails the run.
pub fn report(errors: Vec<String>, diags: &mut Diagnostics) {
    for e in errors {
        diags.push(Diagnostic::run(Level::Error, e).failing());
    }
}

/// Create every node of `plan` below `out`. Returns one message per node that could not
/// be created; the others are still created.
pub fn write_nodes(plan: &Plan, out: &Path) -> Vec<String> {
    match Output::open(out) {
        Ok(mut output) => {
            output.write(&plan.nodes);
            output.errors
        }
        Err(e) => vec![e],
    }
}

/// The output directory, written a part of the plan at a time ([`crate::plan::Planner`]):
/// here, or on a thread of its own ([`Writer::in_background`]).
pub struct Writer {
    here: Option<Output>,
    thread: Option<(SyncSender<Nodes>, JoinHandle<Option<Output>>)>,
}

/// Most parts of a plan waiting for the thread that writes them.
const MAX_WAITING_PARTS: usize = 8;

impl Writer {
    /// The output directory `out`, ready to be written; else the one line saying why not.
    pub fn open(out: &Path) -> Result<Writer, String> {
        Ok(Writer {
            here: Some(Output::open(out)?),
            thread: None,
        })
    }

    /// Write from now on on a thread of its own, while the calling thread plans the next
    /// image: in a run of many images, creating the output is about a third of the work
    /// (ARCHITECTURE.md, "Stages"). The parts are written in the order they are given.
    pub fn in_background(&mut self) {
        let Some(output) = self.here.take() else {
            return;
        };
        let (give, take) = std::sync::mpsc::sync_channel::<Output>(1);
        let (parts, waiting) = std::sync::mpsc::sync_channel::<Nodes>(MAX_WAITING_PARTS);
        let spawned = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let mut output = take.recv().ok()?;
                for nodes in waiting {
                    output.write(&nodes);
                }
                Some(output)
            });
        // No thread to be had: write here, as with few images.
        match spawned {
            Ok(thread) => match give.send(output) {
                Ok(()) => self.thread = Some((parts, thread)),
                Err(back) => self.here = Some(back.0),
            },
            Err(_) => self.here = Some(output),
        }
    }

    /// Create `nodes`: each unit with its drop-ins, then the rest, leaving out the links of
    /// every unit left out so far.
    pub fn write(&mut self, nodes: Nodes) {
        if let Some((parts, _)) = &self.thread {
            // A thread that stopped is said in finish().
            let _ = parts.send(nodes);
        } else if let Some(output) = &mut self.here {
            output.write(&nodes);
        }
    }

    /// One message per node that could not be created, in the order they were met.
    pub fn finish(self) -> Vec<String> {
        if let Some((parts, thread)) = self.thread {
            drop(parts);
            return match thread.join() {
                Ok(Some(output)) => output.errors,
                Ok(None) | Err(_) => vec![
                    "Internal error: the thread writing the output stopped; what it had not written is missing.".to_string(),
                ],
            };
        }
        self.here.map(|o| o.errors).unwrap_or_default()
    }
}

/// The output directory being written.
///
/// A unit's drop-ins are written before the unit file, as portablectl does, and a unit
/// whose drop-ins or file cannot be written is left out whole, links included: a unit must
/// never run without its drop-ins, and this generator's drop-ins must never land on a unit
/// file another generator wrote there first.
struct Output {
    dirs: OutDirs,
    /// Units left out so far: links written later to them are left out too.
    failed: BTreeSet<PathBuf>,
    errors: Vec<String>,
}

impl Output {
    /// The output directory `out`, ready to be written; else the one line saying why not.
    fn open(out: &Path) -> Result<Output, String> {
        match fs::symlink_metadata(out) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "Cannot write into {}: not a directory.",
                    out.display()
                ));
            }
            Err(e) => return Err(format!("Cannot write into {}: {e}.", out.display())),
        }
        // One line for a directory nothing can be written into (a read-only file system, or
        // a user without write permission), not one per node.
        if let Err(e) = rustix::fs::access(out, rustix::fs::Access::WRITE_OK) {
            let e = std::io::Error::from(e);
            return Err(format!("Cannot write into {}: {e}.", out.display()));
        }
        let dirs =
            OutDirs::open(out).map_err(|e| format!("Cannot write into {}: {e}.", out.display()))?;
        // Every file and directory is created with its final mode (0644, 0755), whatever
        // umask systemd or a shell left: set once here rather than a chmod after each
        // creation. This code creates nothing else.
        rustix::process::umask(Mode::from_raw_mode(0o022));
        Ok(Output {
            dirs,
            failed: BTreeSet::new(),
            errors: Vec::new(),
        })
    }

    /// Create `nodes`: each unit with its drop-ins, then the rest, leaving out the links of
    /// every unit left out so far.
    pub fn write(&mut self, nodes: &Nodes) {
        let out = self.dirs.out.clone();
        // One pass over the nodes, in their order: each top-level `NAME.d/` directory's
        // nodes, by NAME.
        let mut dropins: HashMap<&OsStr, Vec<NodeRef>> = HashMap::new();
        for (rel, node) in nodes {
            let mut parts = rel.components();
            if let (Some(first), Some(_)) = (parts.next(), parts.next())
                && let Some(unit) = first.as_os_str().as_bytes().strip_suffix(b".d")
            {
                let entry = dropins.entry(OsStr::from_bytes(unit)).or_default();
                entry.push((rel, node));
            }
        }
        // Units: top-level files with a drop-in directory among the nodes.
        let units: Vec<(&Path, &Node, &[NodeRef])> = nodes
            .iter()
            .filter(|(_, node)| matches!(node, Node::File(_)))
            .filter_map(|(rel, node)| {
                let own = dropins.get(rel.as_os_str())?;
                (rel.components().count() == 1).then_some((rel.as_path(), node, own.as_slice()))
            })
            .collect();
        for &(unit, node, own) in &units {
            let dir = dropin_dir(unit);
            let mut problem = None;
            let mut written = Vec::new();
            for &(rel, node) in own {
                if let Err(e) = write_node(&mut self.dirs, rel, node) {
                    problem = Some(format!("Cannot create {}: {e}", out.join(rel).display()));
                    break;
                }
                written.push(rel);
            }
            if problem.is_none()
                && let Err(e) = write_node(&mut self.dirs, unit, node)
            {
                problem = Some(format!("Cannot create {}: {e}", out.join(unit).display()));
            }
            if let Some(problem) = problem {
                // Take back what was written of it, and only that: the directory may hold
                // another generator's drop-ins.
                for rel in written {
                    let _ = fs::remove_file(out.join(rel));
                }
                let _ = fs::remove_dir(out.join(&dir));
                self.errors.push(format!(
                    "{problem}; {} is left out with its drop-ins and links.",
                    unit.display()
                ));
                self.failed.insert(unit.to_path_buf());
            }
        }
        let is_unit: HashSet<&OsStr> = units.iter().map(|(u, ..)| u.as_os_str()).collect();
        for (rel, node) in nodes {
            let first = rel.components().next().map(|c| c.as_os_str().as_bytes());
            let is_unit_part = is_unit.contains(rel.as_os_str())
                || first
                    .and_then(|f| f.strip_suffix(b".d"))
                    .is_some_and(|u| is_unit.contains(OsStr::from_bytes(u)));
            if is_unit_part {
                continue;
            }
            // An [Install] link or alias of a unit that was left out would dangle.
            if let Node::Symlink(target) = node
                && self.failed.iter().any(|u| {
                    rel.file_name() == Some(u.as_os_str())
                        || target.file_name() == Some(u.as_os_str())
                })
            {
                continue;
            }
            if let Err(e) = write_node(&mut self.dirs, rel, node) {
                self.errors
                    .push(format!("Cannot create {}: {e}", out.join(rel).display()));
            }
        }
    }
}

/// A node of the plan with its path.
type NodeRef<'p> = (&'p Path, &'p Node);

/// `UNIT.d`, the drop-in directory of a unit file's relative path.
fn dropin_dir(unit: &Path) -> PathBuf {
    let mut name = unit.as_os_str().to_owned();
    name.push(".d");
    PathBuf::from(name)
}

/// The output directory and the directories in it. Nothing on the way to a node can be
/// swapped for a link to elsewhere: a directory found already there (another generator's,
/// or anything in its place) is opened, never followed if it is a link, and kept open;
/// a directory this run made is reached by its path below the nearest one opened (or the
/// output directory), since only root could have replaced it. Opening each new `UNIT.d/`
/// would cost an `openat` and a `close` more per unit.
struct OutDirs {
    out: PathBuf,
    base: OwnedFd,
    /// Directories found already there, opened, by relative path.
    entered: HashMap<PathBuf, OwnedFd>,
    /// Directories this run made, by relative path.
    made: HashSet<PathBuf>,
}

/// Most directory descriptors kept open at once, and most directories made remembered: a
/// run of thousands of units must not run out of descriptors or hold every name. Nodes
/// come in path order, so a directory is mostly used right after it is made; one
/// forgotten is found again (`EEXIST`) and opened.
const MAX_OPEN_DIRS: usize = 64;
const MAX_MADE_DIRS: usize = 256;

/// Flags of a directory descriptor used only to create entries in it.
const DIR_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The relative path `rel` up to its byte `end` (a component's end).
fn prefix(rel: &Path, end: usize) -> &Path {
    Path::new(OsStr::from_bytes(&rel.as_os_str().as_bytes()[..end]))
}

impl OutDirs {
    fn open(out: &Path) -> std::io::Result<OutDirs> {
        Ok(OutDirs {
            out: out.to_path_buf(),
            base: rustix::fs::open(out, DIR_FLAGS, Mode::empty())?,
            entered: HashMap::new(),
            made: HashSet::new(),
        })
    }

    /// The directory `rel` below the output directory (its components joined by single
    /// slashes, none `.` or `..`: [`is_plain`]),
    /// made (mode 0755) where missing, as a descriptor and the path below it (empty for
    /// the descriptor's own directory). Each must be a real directory: other generators
    /// share this directory, and nothing may lead us out of it.
    fn dir<'r>(&mut self, rel: &'r Path) -> std::io::Result<(BorrowedFd<'_>, &'r Path)> {
        if self.entered.len() >= MAX_OPEN_DIRS {
            self.entered.clear();
        }
        if self.made.len() >= MAX_MADE_DIRS {
            self.made.clear();
        }
        debug_assert!(rel.as_os_str().is_empty() || is_plain(rel));
        let bytes = rel.as_os_str().as_bytes();
        // The byte where the path below the deepest directory opened starts.
        let mut below = 0;
        let ends = bytes
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == b'/')
            .map(|(i, _)| i)
            .chain((!bytes.is_empty()).then_some(bytes.len()));
        for end in ends {
            let at = prefix(rel, end);
            if self.entered.contains_key(at) {
                below = end + 1;
                continue;
            }
            if self.made.contains(at) {
                continue;
            }
            let anchor = match below {
                0 => self.base.as_fd(),
                b => self.entered[prefix(rel, b - 1)].as_fd(),
            };
            let sub = OsStr::from_bytes(&bytes[below..end]);
            // Made first: nearly every directory is new (`UNIT.d/`). One already there
            // (made by another generator, or here and forgotten) is opened as it is.
            match rustix::fs::mkdirat(anchor, sub, Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    self.made.insert(at.to_path_buf());
                    continue;
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            let fd = match rustix::fs::openat(anchor, sub, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    return Err(std::io::Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "{} exists and is not a directory",
                            self.out.join(at).display()
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            self.entered.insert(at.to_path_buf(), fd);
            below = end + 1;
        }
        let fd = match below {
            0 => self.base.as_fd(),
            b => self.entered[prefix(rel, b - 1)].as_fd(),
        };
        let rest = bytes.get(below..).unwrap_or_default();
        Ok((fd, Path::new(OsStr::from_bytes(rest))))
    }
}

/// Whether `rel` is components joined by single slashes, none of them `.` or `..`.
fn is_plain(rel: &Path) -> bool {
    rel.as_os_str()
        .as_bytes()
        .split(|&c| c == b'/')
        .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

fn write_node(dirs: &mut OutDirs, rel: &Path, node: &Node) -> std::io::Result<()> {
    let (true, Some(name)) = (is_confined(rel), rel.file_name()) else {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "path leaves the output directory",
        ));
    };
    // Spelled with no `//`, `.` or trailing `/`: the directories on the way are named by
    // their bytes ([`OutDirs::dir`]).
    let normal;
    let rel = if is_plain(rel) {
        rel
    } else {
        normal = rel.components().collect::<PathBuf>();
        normal.as_path()
    };
    let (dir, below) = dirs.dir(rel.parent().unwrap_or(Path::new("")))?;
    let joined;
    let name = if below.as_os_str().is_empty() {
        Path::new(name)
    } else {
        joined = below.join(name);
        joined.as_path()
    };
    match node {
        Node::File(bytes) => {
            // The mode is final (the umask is set in write_nodes()); never through a link.
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )?;
            File::from(fd).write_all(bytes)?;
        }
        Node::Symlink(target) => match rustix::fs::symlinkat(target, dir, name) {
            Err(Errno::EXIST) => {
                // Another generator may have made the same link: that is fine.
                let same = rustix::fs::readlinkat(dir, name, Vec::new())
                    .is_ok_and(|t| t.as_bytes() == target.as_os_str().as_bytes());
                if !same {
                    return Err(Errno::EXIST.into());
                }
            }
            r => r?,
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::out_path::OutPath;

    fn plan_of(nodes: &[(&str, Node)]) -> Plan {
        let mut plan = Plan::default();
        for (p, n) in nodes {
            plan.nodes.insert(OutPath::from(*p), n.clone());
        }
        plan
    }

    fn unit_plan() -> Plan {
        plan_of(&[
            ("foo.service", Node::File(b"[Service]\n".to_vec())),
            (
                "foo.service.d/20-portable.conf",
                Node::File(b"# x\n".to_vec()),
            ),
            (
                "multi-user.target.wants/foo.service",
                Node::Symlink("../foo.service".into()),
            ),
            ("bar.service", Node::File(b"[Service]\n".to_vec())),
            (
                "bar.service.d/20-portable.conf",
                Node::File(b"# y\n".to_vec()),
            ),
        ])
    }

    #[test]
    fn writes_everything() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_nodes(&unit_plan(), dir.path()).is_empty());
        for p in [
            "foo.service",
            "foo.service.d/20-portable.conf",
            "multi-user.target.wants/foo.service",
            "bar.service.d/20-portable.conf",
        ] {
            assert!(dir.path().join(p).symlink_metadata().is_ok(), "{p}");
        }
    }

    /// Modes are 0644 and 0755 whatever umask the generator inherits, and a link in place
    /// of a directory is not followed.
    #[test]
    fn modes_are_exact_and_links_are_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("bar.service.d")).unwrap();
        rustix::process::umask(Mode::from_raw_mode(0o077));
        let errors = write_nodes(&unit_plan(), dir.path());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("exists and is not a directory"),
            "{errors:?}"
        );
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        let mode = |p: &str| {
            fs::symlink_metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("foo.service"), 0o644);
        assert_eq!(mode("foo.service.d"), 0o755);
        assert_eq!(mode("foo.service.d/20-portable.conf"), 0o644);
        assert_eq!(mode("multi-user.target.wants"), 0o755);
    }

    /// Directories made here are reached by path, those found there by descriptor: both
    /// hold what they should, however the plan spells the path, and nothing lands outside.
    #[test]
    fn directories_made_and_found_are_both_written_into() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("multi-user.target.wants")).unwrap();
        let plan = plan_of(&[
            (
                "foo.service.d//20-portable.conf",
                Node::File(b"# x\n".to_vec()),
            ),
            (
                "foo.service.d/./30-more.conf",
                Node::File(b"# y\n".to_vec()),
            ),
            ("a/b/c/d.conf", Node::File(b"# z\n".to_vec())),
            (
                "multi-user.target.wants/x.d/y.conf",
                Node::File(b"# w\n".to_vec()),
            ),
            (
                "multi-user.target.wants/foo.service",
                Node::Symlink("../foo.service".into()),
            ),
        ]);
        assert!(write_nodes(&plan, dir.path()).is_empty());
        for (p, want) in [
            ("foo.service.d/20-portable.conf", &b"# x\n"[..]),
            ("foo.service.d/30-more.conf", b"# y\n"),
            ("a/b/c/d.conf", b"# z\n"),
            ("multi-user.target.wants/x.d/y.conf", b"# w\n"),
        ] {
            assert_eq!(fs::read(dir.path().join(p)).unwrap(), want, "{p}");
        }
        let link = fs::read_link(dir.path().join("multi-user.target.wants/foo.service"));
        assert_eq!(link.unwrap(), Path::new("../foo.service"));
    }

    /// Another generator wrote foo.service first: none of this unit's files may apply to it.
    #[test]
    fn a_unit_already_there_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("foo.service"), b"theirs").unwrap();
        let errors = write_nodes(&unit_plan(), dir.path());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("foo.service is left out with its drop-ins and links"));
        assert_eq!(fs::read(dir.path().join("foo.service")).unwrap(), b"theirs");
        assert!(!dir.path().join("foo.service.d").exists());
        assert!(
            !dir.path()
                .join("multi-user.target.wants/foo.service")
                .exists()
        );
        assert!(dir.path().join("bar.service.d/20-portable.conf").exists());
    }

    /// A drop-in that cannot be written: the unit is not written at all.
    #[test]
    fn no_unit_without_its_dropins() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("foo.service.d"), b"in the way").unwrap();
        let errors = write_nodes(&unit_plan(), dir.path());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(!dir.path().join("foo.service").exists());
        assert!(
            !dir.path()
                .join("multi-user.target.wants/foo.service")
                .exists()
        );
        assert!(dir.path().join("bar.service").exists());
    }

    #[test]
    fn a_missing_output_directory_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let errors = write_nodes(&unit_plan(), &dir.path().join("missing"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("Cannot write into "), "{errors:?}");
    }

    /// Written a part at a time, as a run writes each image, here or on a thread of its own:
    /// a unit left out in one part has its links, written in a later part, left out too.
    #[test]
    fn links_written_later_follow_their_unit() {
        for background in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join("foo.service"), b"theirs").unwrap();
            let mut plan = unit_plan();
            let links = plan
                .nodes
                .split_off(&OutPath::from("multi-user.target.wants"));
            assert!(
                links
                    .keys()
                    .all(|k| k.starts_with("multi-user.target.wants"))
            );
            let mut writer = Writer::open(dir.path()).unwrap();
            if background {
                writer.in_background();
                assert!(writer.thread.is_some());
            }
            writer.write(plan.nodes);
            writer.write(links);
            let errors = writer.finish();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains("foo.service is left out with its drop-ins and links"));
            assert!(
                !dir.path()
                    .join("multi-user.target.wants/foo.service")
                    .exists()
            );
            assert!(dir.path().join("bar.service.d/20-portable.conf").exists());
        }
    }
}
