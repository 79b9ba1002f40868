//! Root must not run what others can change: an image, a search directory or a
//! configuration that a user other than root can write is refused, unless configuration
//! allows it (`AllowWritableByOthers=yes`).

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Why `meta` can be changed by a user other than root, if it can. Block devices are
/// commonly group-writable by the `disk` group; for them only the owner and the world
/// bit count.
pub fn writable_by_others(meta: &Metadata) -> Option<String> {
    let mode = meta.mode();
    if meta.uid() != 0 {
        return Some(format!("owned by uid {}", meta.uid()));
    }
    if mode & 0o002 != 0 {
        return Some("writable by every user".into());
    }
    if mode & 0o020 != 0 && meta.gid() != 0 && !meta.file_type().is_block_device() {
        return Some(format!("writable by group {}", meta.gid()));
    }
    None
}

/// The same for a path (following symlinks); unreadable metadata counts as safe here,
/// since whatever reads the path next reports the error.
pub fn path_writable_by_others(path: &std::path::Path) -> Option<String> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| writable_by_others(&m))
}

/// The hint every refusal ends with.
pub const HINT: &str =
    "root must not run what others can change (AllowWritableByOthers=yes in portables.d allows it)";

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn modes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        // The test runs as root (as the generator does); a file made by another user is
        // covered by the hostile corpus, which can chown.
        if nix_uid_is_root(&f) {
            assert_eq!(path_writable_by_others(&f), None);
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o646)).unwrap();
            assert_eq!(
                path_writable_by_others(&f).as_deref(),
                Some("writable by every user")
            );
        }
    }

    fn nix_uid_is_root(p: &std::path::Path) -> bool {
        std::fs::metadata(p).map(|m| m.uid() == 0).unwrap_or(false)
    }
}
