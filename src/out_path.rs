//! Paths relative to the output directory, as the plan keys its nodes by them.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A path relative to the output directory (`foo.service`, `foo.service.d/20-portable.conf`,
/// `multi-user.target.wants/foo.service`).
///
/// Ordered as [`Path`] orders such paths, component by component, so the plan's files come
/// out in the same order; but by comparing bytes with the separator counted lowest, which
/// gives that order for paths without empty, `.` or `..` components and is a tenth of the
/// cost: a plan of a thousand images makes tens of thousands of comparisons
/// (ARCHITECTURE.md, "Limits"). Equality and hashing are on the bytes too, so the three agree.
#[derive(Clone, Debug)]
pub struct OutPath(PathBuf);

impl OutPath {
    /// The path itself.
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_os_str().as_bytes()
    }
}

impl Ord for OutPath {
    fn cmp(&self, other: &OutPath) -> Ordering {
        let (a, b) = (self.bytes(), other.bytes());
        let rank = |c: u8| if c == b'/' { 0 } else { u16::from(c) + 1 };
        match a.iter().zip(b).position(|(x, y)| x != y) {
            Some(i) => rank(a[i]).cmp(&rank(b[i])),
            None => a.len().cmp(&b.len()),
        }
    }
}

impl PartialOrd for OutPath {
    fn partial_cmp(&self, other: &OutPath) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for OutPath {
    fn eq(&self, other: &OutPath) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for OutPath {}

impl Hash for OutPath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl Deref for OutPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for OutPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl From<PathBuf> for OutPath {
    fn from(path: PathBuf) -> OutPath {
        OutPath(path)
    }
}

impl From<&Path> for OutPath {
    fn from(path: &Path) -> OutPath {
        OutPath(path.to_path_buf())
    }
}

impl From<&str> for OutPath {
    fn from(path: &str) -> OutPath {
        OutPath(PathBuf::from(path))
    }
}

impl From<String> for OutPath {
    fn from(path: String) -> OutPath {
        OutPath(PathBuf::from(path))
    }
}

impl fmt::Display for OutPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte order is the order of `Path` for the paths a plan holds.
    #[test]
    fn orders_as_paths_do() {
        let names = [
            "a",
            "a.service",
            "a.service.d/10-profile.conf",
            "a.service.d/20-portable.conf",
            "a.service-x",
            "a.service-x.d/20-portable.conf",
            "a@.service",
            "a@.service.d/x",
            "a-b.service",
            "ab",
            "multi-user.target.wants/a.service",
            "multi-user.target.wants/b.service",
            "multi-user.target.wants-x/a",
            "multi-user.target.wantsx",
            "sockets.target.wants/a.socket",
            "z",
            "\u{e9}.service",
        ];
        for x in names {
            for y in names {
                let by_path = Path::new(x).cmp(Path::new(y));
                assert_eq!(
                    OutPath::from(x).cmp(&OutPath::from(y)),
                    by_path,
                    "{x} vs {y}"
                );
                assert_eq!(OutPath::from(x) == OutPath::from(y), by_path.is_eq());
            }
        }
    }
}
