//! Root must not run what others can change: an image, a search directory or a
//! configuration that a user other than root can write is refused, unless configuration
//! allows it (`AllowWritableByOthers=yes`). The directories on the way to them count too
//! (whoever can write a directory can replace what it holds), with one exception taken from
//! the kernel's rules for sticky directories: see [`unsafe_lookup`].

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// The owner and mode bits of a file, from `std` or `rustix` metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The owning user.
    pub uid: u32,
    /// The owning group: its members can write what is group-writable.
    pub gid: u32,
    /// `st_mode`, file type bits included.
    pub mode: u32,
}

impl Owner {
    /// From `std` metadata (`stat`/`lstat` of a path).
    pub fn of(meta: &Metadata) -> Owner {
        Owner {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode(),
        }
    }

    /// From a `rustix` stat (`fstatat` below a directory descriptor).
    pub fn of_stat(st: &rustix::fs::Stat) -> Owner {
        Owner {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode,
        }
    }

    fn is_block_device(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFBLK
    }

    fn is_sticky_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR && self.mode & libc::S_ISVTX != 0
    }
}

/// Why a file of this owner and mode can be changed by a user other than root, if it can,
/// with its mode for the message (`writable by every user (mode 0777)`). Block devices are
/// commonly group-writable by the `disk` group; for them only the owner and the world bit
/// count.
pub fn writable_by(o: Owner) -> Option<String> {
    let mode = o.mode & 0o7777;
    let why = if o.uid != 0 {
        format!("owned by uid {}", o.uid)
    } else if mode & 0o002 != 0 {
        "writable by every user".to_string()
    } else if mode & 0o020 != 0 && o.gid != 0 && !o.is_block_device() {
        format!("writable by group {}", o.gid)
    } else {
        return None;
    };
    Some(format!("{why} (mode {mode:04o})"))
}

/// Why `meta` can be changed by a user other than root, if it can.
pub fn writable_by_others(meta: &Metadata) -> Option<String> {
    let mut o = Owner::of(meta);
    // std's metadata of a block device: keep its type bits for the group exception.
    if meta.file_type().is_block_device() {
        o.mode = (o.mode & !libc::S_IFMT) | libc::S_IFBLK;
    }
    writable_by(o)
}

/// The same for a path (following symlinks); unreadable metadata counts as safe here,
/// since whatever reads the path next reports the error.
pub fn path_writable_by_others(path: &std::path::Path) -> Option<String> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| writable_by_others(&m))
}

/// Why looking up `entry` in the directory `dir` can be steered by a user other than root,
/// if it can: `dir` is writable by others, so they can replace `entry` (or, for a link,
/// where it leads).
///
/// A sticky directory owned by root (`/tmp`, mode 1777) lets others add entries but not
/// rename or remove those of another user (the kernel's `may_delete()`), so an entry of
/// root's in it is safe: that is the exception. An entry of another user there is not:
/// systemd's `chase()` refuses such a transition with `CHASE_SAFE` (`unsafe_transition()`,
/// from a directory of root's to something of another user's), and it could be a link
/// made to lead anywhere. A directory that is listed (rather than looked into for one
/// name) gets no exception: see [`writable_by`] for it.
pub fn unsafe_lookup(dir: Owner, entry: Owner) -> Option<String> {
    let why = writable_by(dir)?;
    (!(dir.uid == 0 && dir.is_sticky_dir() && entry.uid == 0)).then_some(why)
}

/// The hint every refusal ends with.
pub const HINT: &str =
    "root must not run what others can change (AllowWritableByOthers=yes in portables.d allows it)";

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const DIR: u32 = libc::S_IFDIR;
    const FILE: u32 = libc::S_IFREG;

    fn o(uid: u32, gid: u32, mode: u32) -> Owner {
        Owner { uid, gid, mode }
    }

    #[test]
    fn modes() {
        assert_eq!(writable_by(o(0, 0, FILE | 0o644)), None);
        assert_eq!(writable_by(o(0, 0, FILE | 0o664)), None);
        assert_eq!(
            writable_by(o(0, 0, FILE | 0o646)).as_deref(),
            Some("writable by every user (mode 0646)")
        );
        assert_eq!(
            writable_by(o(0, 100, DIR | 0o775)).as_deref(),
            Some("writable by group 100 (mode 0775)")
        );
        assert_eq!(
            writable_by(o(1000, 0, DIR | 0o755)).as_deref(),
            Some("owned by uid 1000 (mode 0755)")
        );
        assert_eq!(writable_by(o(0, 6, libc::S_IFBLK | 0o660)), None);
        assert_eq!(
            writable_by(o(0, 0, DIR | 0o1777)).as_deref(),
            Some("writable by every user (mode 1777)")
        );
    }

    #[test]
    fn sticky_directories() {
        let tmp = o(0, 0, DIR | 0o1777);
        // Others cannot replace root's entry in a sticky directory of root's...
        assert_eq!(unsafe_lookup(tmp, o(0, 0, DIR | 0o755)), None);
        // ...but may have made their own, and own the directory's every entry when it is
        // theirs.
        assert!(unsafe_lookup(tmp, o(1000, 0, DIR | 0o755)).is_some());
        assert!(unsafe_lookup(o(1000, 0, DIR | 0o1777), o(0, 0, FILE | 0o644)).is_some());
        assert!(unsafe_lookup(o(0, 0, DIR | 0o777), o(0, 0, FILE | 0o644)).is_some());
        assert_eq!(
            unsafe_lookup(o(0, 0, DIR | 0o755), o(1000, 0, FILE | 0o644)),
            None
        );
    }

    #[test]
    fn of_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        // The test runs as root (as the generator does); a file made by another user is
        // covered by the hostile corpus, which can chown.
        if std::fs::metadata(&f).is_ok_and(|m| m.uid() == 0) {
            assert_eq!(path_writable_by_others(&f), None);
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o646)).unwrap();
            assert_eq!(
                path_writable_by_others(&f).as_deref(),
                Some("writable by every user (mode 0646)")
            );
        }
    }
}
