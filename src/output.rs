//! Writing the plan into the output directory: the only code that creates anything.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::plan::{Node, Plan, is_confined};

/// Create every node of `plan` below `out`. Returns one message per node that could not
/// be created; the others are still created.
pub fn write(plan: &Plan, out: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    for (rel, node) in &plan.nodes {
        if let Err(e) = write_node(out, rel, node) {
            errors.push(format!("Cannot create {}: {e}", out.join(rel).display()));
            // A unit whose drop-ins are missing would run unconfined, on the host: take it
            // back out.
            let mut parts = rel.components();
            if let (Some(first), Some(_)) = (parts.next(), parts.next())
                && let Some(unit) = first
                    .as_os_str()
                    .to_str()
                    .and_then(|d| d.strip_suffix(".d"))
                && plan.nodes.contains_key(Path::new(unit))
            {
                let _ = fs::remove_file(out.join(unit));
                errors.push(format!(
                    "Removed {} again: its drop-ins could not be written.",
                    out.join(unit).display()
                ));
            }
        }
    }
    errors
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
