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
pub fn host_unit(root: &Root, unit: &str) -> Option<PathBuf> {
    HOST_UNIT_DIRS.iter().find_map(|dir| {
        let path = PathBuf::from(dir).join(unit);
        let kind = root.lstat(&path).ok()??;
        (kind != FileKind::Dir).then_some(path)
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
        let root = Root::new(r);
        assert_eq!(
            host_unit(&root, "in-root.service"),
            Some(PathBuf::from("/usr/lib/systemd/system/in-root.service"))
        );
        assert!(host_unit(&root, "dangling.service").is_some());
        assert_eq!(host_unit(&root, "x.service"), None);
        // This machine's own units are not the root's.
        assert_eq!(host_unit(&root, "systemd-journald.service"), None);
        assert_eq!(host_os_release(&root), "/usr/lib/os-release");
    }
}
