//! The `--root` prefix applied to every path the program reads.

use std::path::{Path, PathBuf};

/// The directory that stands for `/` when reading (never when writing symlink targets or
/// drop-in values: those name paths as the booted system will see them).
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root(dir.into())
    }

    /// The real path for the absolute host path `host`.
    pub fn join(&self, host: impl AsRef<Path>) -> PathBuf {
        let host = host.as_ref();
        self.0.join(host.strip_prefix("/").unwrap_or(host))
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// Whether this is the running system's own `/` (so `/proc` describes it).
    pub fn is_host(&self) -> bool {
        self.0 == Path::new("/")
    }
}

impl Default for Root {
    fn default() -> Root {
        Root::new("/")
    }
}
