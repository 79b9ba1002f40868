//! What the host already has: unit files that take precedence, its os-release.

use std::path::PathBuf;

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
pub fn host_unit(root: &Root, unit: &str) -> Option<PathBuf> {
    HOST_UNIT_DIRS.iter().find_map(|dir| {
        let path = PathBuf::from(dir).join(unit);
        let meta = std::fs::symlink_metadata(root.join(&path)).ok()?;
        (!meta.is_dir()).then_some(path)
    })
}

/// The host os-release to bind into services, as portablectl 252 picks it.
pub fn host_os_release(root: &Root) -> &'static str {
    // access(F_OK) as portablectl does: a dangling link counts as absent.
    if root.join("/etc/os-release").exists() {
        "/etc/os-release"
    } else {
        "/usr/lib/os-release"
    }
}
