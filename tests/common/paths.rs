//! Where things are: the repository, the generator binary, fixed names in a root and in
//! test trees, and the check that a relative path from a case file stays inside its base.

use std::path::{Component, Path, PathBuf};

/// The repository's top directory.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The generator binary cargo built for these tests.
pub fn generator_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portables-generator"))
}

/// Where this project's profiles are installed, relative to the root.
pub const PROFILE_INSTALL_DIR: &str = "usr/lib/portables-generator/profile";

/// Name of the placeholder files that git needs to hold an empty directory in a test tree.
pub const KEEP_FILE: &str = ".keep";

/// Name of the file that marks an expected-empty directory in an `expected/` tree.
pub const EMPTY_MARKER: &str = ".empty";

/// Whether `path` is relative and stays below the directory it is joined to.
pub fn is_confined(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}
