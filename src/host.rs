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

/// How the host has a unit file of some name, for the policy on conflicts (README,
/// "Security"): a mask is respected silently, an administrator's copy in `/etc` or `/run`
/// (what `systemctl edit --full` writes) keeps the image's drop-ins, anything else the host
/// ships wins and the image's unit is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Masked,
    Override,
    Other,
}

/// Where an administrator's own unit files live.
const ADMIN_UNIT_DIRS: [&str; 2] = ["/etc/systemd/system", "/run/systemd/system"];

/// The kind of the host's unit file at `path` (a host path, as [`host_unit`] returns it).
pub fn host_unit_kind(root: &Root, path: &std::path::Path) -> HostKind {
    let real = root.join(path);
    // A link to /dev/null, or an empty file, is a mask (systemd's null_or_empty_path()).
    if let Ok(target) = std::fs::read_link(&real)
        && target == std::path::Path::new("/dev/null")
    {
        return HostKind::Masked;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&real)
        && meta.is_file()
        && meta.len() == 0
    {
        return HostKind::Masked;
    }
    if ADMIN_UNIT_DIRS
        .iter()
        .any(|d| path.parent() == Some(std::path::Path::new(d)))
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
        let entries = std::fs::read_dir(root.join(dir)).ok()?;
        entries
            .filter_map(Result::ok)
            .take(crate::image::MAX_DIR_ENTRIES)
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|n| n.starts_with(&head) && n.ends_with(&tail) && n.len() > template.len())
            .map(|n| PathBuf::from(dir).join(n))
    })
}
