//! Writing the plan into the output directory: the only code that creates anything.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::Level;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan::{Node, Plan, is_confined};

/// [`write_nodes`], each node that could not be created an error in `diags`.
pub fn write(plan: &Plan, out: &Path, diags: &mut Diagnostics) {
    for e in write_nodes(plan, out) {
        diags.push(Diagnostic::run(Level::Error, e).failing());
    }
}

/// Create every node of `plan` below `out`. Returns one message per node that could not
/// be created; the others are still created.
///
/// A unit's drop-ins are written before the unit file, as portablectl does, and a unit
/// whose drop-ins or file cannot be written is left out whole, links included: a unit must
/// never run without its drop-ins, and this generator's drop-ins must never land on a unit
/// file another generator wrote there first.
pub fn write_nodes(plan: &Plan, out: &Path) -> Vec<String> {
    match fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return vec![format!(
                "Cannot write into {}: not a directory.",
                out.display()
            )];
        }
        Err(e) => return vec![format!("Cannot write into {}: {e}.", out.display())],
    }
    // One line for a directory nothing can be written into (a read-only file system, or a
    // user without write permission), not one per node.
    if let Err(e) = rustix::fs::access(out, rustix::fs::Access::WRITE_OK) {
        let e = std::io::Error::from(e);
        return vec![format!("Cannot write into {}: {e}.", out.display())];
    }
    let mut errors = Vec::new();
    // One pass over the plan, in its order: each top-level `NAME.d/` directory's nodes, by NAME.
    let mut dropins: HashMap<&OsStr, Vec<NodeRef>> = HashMap::new();
    for (rel, node) in &plan.nodes {
        let mut parts = rel.components();
        if let (Some(first), Some(_)) = (parts.next(), parts.next())
            && let Some(unit) = first.as_os_str().as_bytes().strip_suffix(b".d")
        {
            let entry = dropins.entry(OsStr::from_bytes(unit)).or_default();
            entry.push((rel, node));
        }
    }
    // Units: top-level files with a drop-in directory in the plan.
    let units: Vec<(&Path, &Node, &[NodeRef])> = plan
        .nodes
        .iter()
        .filter(|(_, node)| matches!(node, Node::File(_)))
        .filter_map(|(rel, node)| {
            let own = dropins.get(rel.as_os_str())?;
            (rel.components().count() == 1).then_some((rel.as_path(), node, own.as_slice()))
        })
        .collect();
    let mut failed: BTreeSet<&Path> = BTreeSet::new();
    for &(unit, node, own) in &units {
        let dir = dropin_dir(unit);
        let mut problem = None;
        let mut written = Vec::new();
        for &(rel, node) in own {
            if let Err(e) = write_node(out, rel, node) {
                problem = Some(format!("Cannot create {}: {e}", out.join(rel).display()));
                break;
            }
            written.push(rel);
        }
        if problem.is_none()
            && let Err(e) = write_node(out, unit, node)
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
            errors.push(format!(
                "{problem}; {} is left out with its drop-ins and links.",
                unit.display()
            ));
            failed.insert(unit);
        }
    }
    let is_unit: HashSet<&OsStr> = units.iter().map(|(u, ..)| u.as_os_str()).collect();
    for (rel, node) in &plan.nodes {
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
            && failed.iter().any(|u| {
                rel.file_name() == Some(u.as_os_str()) || target.file_name() == Some(u.as_os_str())
            })
        {
            continue;
        }
        if let Err(e) = write_node(out, rel, node) {
            errors.push(format!("Cannot create {}: {e}", out.join(rel).display()));
        }
    }
    errors
}

/// A node of the plan with its path.
type NodeRef<'p> = (&'p Path, &'p Node);

/// `UNIT.d`, the drop-in directory of a unit file's relative path.
fn dropin_dir(unit: &Path) -> PathBuf {
    let mut name = unit.as_os_str().to_owned();
    name.push(".d");
    PathBuf::from(name)
}

fn write_node(out: &Path, rel: &Path, node: &Node) -> std::io::Result<()> {
    if !is_confined(rel) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "path leaves the output directory",
        ));
    }
    // Parents are made one by one and must be real directories: other generators share
    // this directory, and nothing may lead us out of it.
    let mut dir = out.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            dir.push(c);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(std::io::Error::new(
                        ErrorKind::AlreadyExists,
                        format!("{} exists and is not a directory", dir.display()),
                    ));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    DirBuilder::new().mode(0o755).create(&dir)?;
                    fs::set_permissions(&dir, Permissions::from_mode(0o755))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let path = out.join(rel);
    match node {
        Node::File(bytes) => {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            f.set_permissions(Permissions::from_mode(0o644))?;
            f.write_all(bytes)?;
        }
        Node::Symlink(target) => match std::os::unix::fs::symlink(target, &path) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Another generator may have made the same link: that is fine.
                if fs::read_link(&path).ok().as_deref() != Some(target.as_path()) {
                    return Err(e);
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
}
