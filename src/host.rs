//! What the host already has: unit files that take precedence, its os-release.

use std::path::{Path, PathBuf};

use crate::image::FileKind;
use crate::root::Root;

/// Every host unit directory except the generator output directories
/// (systemd's system lookup paths with `LOOKUP_PATHS_SPLIT_USR`).
pub const HOST_UNIT_DIRS: [&str; 10] = [
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The host path of a unit file named `unit`, if the host has one. Drop-in directories
/// do not count; a dangling symlink does (it is a unit file systemd will try to load).
/// Links on the way resolve inside the root (`ROOT/lib -> /usr/lib` is the root's
/// `/usr/lib`, not this machine's).
///
/// Each directory is listed (once per run, by a remembering root) rather than asked for
/// each name: a run asks about every unit of every image.
pub fn host_unit(root: &Root, unit: &str) -> Option<PathBuf> {
    let one_name = !unit.is_empty() && unit != "." && unit != ".." && !unit.contains('/');
    HOST_UNIT_DIRS.iter().find_map(|dir| {
        let kind = match root.entries(Path::new(dir)) {
            None => return None,
            Some(listing) if one_name && listing.complete => *listing.kinds.get(unit.as_bytes())?,
            // A directory too large to list, or a name that is not one entry: looked up.
            Some(_) => root.lstat(&Path::new(dir).join(unit)).ok()??,
        };
        (kind != FileKind::Dir).then(|| Path::new(dir).join(unit))
    })
}

/// The host os-release to bind into services, as portablectl 252 picks it.
pub fn host_os_release(root: &Root) -> &'static str {
    // access(F_OK) as portablectl does: a dangling link counts as absent.
    if root.resolve(Path::new("/etc/os-release"), true).is_ok() {
        "/etc/os-release"
    } else {
        "/usr/lib/os-release"
    }
}

/// How the host has a unit file of some name, for the policy on conflicts (README,
/// "Security"): a mask is respected silently, an administrator's copy in `/etc` or `/run`
/// (what `systemctl edit --full` writes) keeps the image's drop-ins, anything else the host
/// ships wins and the image's unit is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A link to `/dev/null` or an empty file: the image's unit is left out quietly.
    Masked,
    /// A file in `/etc/systemd/system` or `/run/systemd/system`: used in place of the
    /// image's unit, which keeps its drop-ins.
    Override,
    /// A unit the host ships: it wins, and the image's unit is left out with a warning.
    Other,
}

/// Where an administrator's own unit files live.
const ADMIN_UNIT_DIRS: [&str; 2] = ["/etc/systemd/system", "/run/systemd/system"];

/// The kind of the host's unit file at `path` (a host path, as [`host_unit`] returns it),
/// looked at inside the root.
pub fn host_unit_kind(root: &Root, path: &Path) -> HostKind {
    // A link to /dev/null, or an empty file, is a mask (systemd's null_or_empty_path()).
    if let Ok(found) = root.resolve(path, false) {
        let real = root.join(&found.path);
        if found.kind == FileKind::Symlink
            && std::fs::read_link(&real).is_ok_and(|t| t == Path::new("/dev/null"))
        {
            return HostKind::Masked;
        }
        if found.kind == FileKind::File
            && std::fs::symlink_metadata(&real).is_ok_and(|m| m.len() == 0)
        {
            return HostKind::Masked;
        }
    }
    if ADMIN_UNIT_DIRS
        .iter()
        .any(|d| path.parent() == Some(Path::new(d)))
    {
        HostKind::Override
    } else {
        HostKind::Other
    }
}

/// A unit file of the host that is an instance of `template` (`foo@x.service` for
/// `foo@.service`), if there is one: the template's drop-ins would apply to it.
pub fn host_instance_of(root: &Root, template: &str) -> Option<PathBuf> {
    let (head, kind) = template.split_once("@.")?;
    let head = format!("{head}@");
    let tail = format!(".{kind}");
    HOST_UNIT_DIRS.iter().find_map(|dir| {
        let listing = root.entries(Path::new(dir))?;
        listing
            .names
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok())
            .find(|n| n.starts_with(&head) && n.ends_with(&tail) && n.len() > template.len())
            .map(|n| PathBuf::from(dir).join(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn unit_dirs_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd/system")).unwrap();
        std::fs::create_dir_all(r.join("etc/systemd/system/x.service")).unwrap();
        std::fs::write(r.join("usr/lib/systemd/system/in-root.service"), b"").unwrap();
        symlink(
            "/nowhere",
            r.join("usr/lib/systemd/system/dangling.service"),
        )
        .unwrap();
        // As on a merged-/usr system: the root's /usr/lib, whatever this machine has.
        symlink("/usr/lib", r.join("lib")).unwrap();
        for root in [Root::new(r), Root::new(r).remembering()] {
            assert_eq!(
                host_unit(&root, "in-root.service"),
                Some(PathBuf::from("/usr/lib/systemd/system/in-root.service"))
            );
            assert!(host_unit(&root, "dangling.service").is_some());
            assert_eq!(host_unit(&root, "x.service"), None);
            // This machine's own units are not the root's.
            assert_eq!(host_unit(&root, "systemd-journald.service"), None);
            assert_eq!(host_os_release(&root), "/usr/lib/os-release");
            assert_eq!(
                host_instance_of(&root, "in-root@.service"),
                None,
                "a template's own name is no instance"
            );
        }
        std::fs::write(r.join("usr/lib/systemd/system/t@one.service"), b"").unwrap();
        assert_eq!(
            host_instance_of(&Root::new(r).remembering(), "t@.service"),
            Some(PathBuf::from("/usr/lib/systemd/system/t@one.service"))
        );
    }
}
