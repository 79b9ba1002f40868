//! Finding the profile drop-in a unit is linked to (DESIGN §6.2).

use std::path::PathBuf;

use crate::root::Root;

/// systemd's portable profile directories, then this project's own profiles as installed.
/// The last entry can be set at build time (`PORTABLES_GENERATOR_PROFILE_DIR`).
pub const PROFILE_DIRS: [&str; 5] = [
    "/etc/systemd/portable/profile",
    "/run/systemd/portable/profile",
    "/usr/local/lib/systemd/portable/profile",
    "/usr/lib/systemd/portable/profile",
    match option_env!("PORTABLES_GENERATOR_PROFILE_DIR") {
        Some(dir) => dir,
        None => "/usr/lib/portables-generator/profile",
    },
];

/// The first `DIR/PROFILE/TYPE.conf` that exists, as a host path (without `--root`).
pub fn find_profile(root: &Root, profile: &str, unit_type: &str) -> Option<PathBuf> {
    PROFILE_DIRS.iter().find_map(|dir| {
        let path = PathBuf::from(dir)
            .join(profile)
            .join(format!("{unit_type}.conf"));
        root.join(&path).is_file().then_some(path)
    })
}

/// Whether a profile of that name exists at all, for any unit type.
pub fn profile_exists(root: &Root, profile: &str) -> bool {
    PROFILE_DIRS
        .iter()
        .any(|dir| root.join(PathBuf::from(dir).join(profile)).is_dir())
}
