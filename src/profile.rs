//! Finding the profile drop-in a unit is linked to: systemd's own profile directories, then
//! this project's profiles in the form the systemd that reads them knows.

use std::path::PathBuf;

use crate::image::FileKind;
use crate::root::Root;

/// systemd's portable profile directories, as `find_portable_profile()` searches them.
pub const SYSTEMD_PROFILE_DIRS: [&str; 4] = [
    "/etc/systemd/portable/profile",
    "/run/systemd/portable/profile",
    "/usr/local/lib/systemd/portable/profile",
    "/usr/lib/systemd/portable/profile",
];

/// Where this project's profiles are installed, one directory per form (below); it can be
/// set at build time (`PORTABLES_GENERATOR_PROFILE_DIR`).
pub const OWN_PROFILE_DIR: &str = match option_env!("PORTABLES_GENERATOR_PROFILE_DIR") {
    Some(dir) => dir,
    None => "/usr/lib/portables-generator/profile",
};

/// The forms of this project's profiles, each named by the first systemd version it is for:
/// 257 replaced the journal-socket bind mounts with `BindLogSockets=yes` (a setting older
/// versions reject) and dropped `PrivateTmp=yes`; 258 added `DelegateNamespaces=no` (a
/// setting new in 258; 259's profiles have it, 258's sources were not at hand).
pub const PROFILE_FORMS: [u32; 3] = [252, 257, 258];

/// The form of this project's profiles for systemd `version`.
pub fn form_for(version: u32) -> u32 {
    PROFILE_FORMS
        .iter()
        .copied()
        .filter(|&f| f <= version)
        .max()
        .unwrap_or(PROFILE_FORMS[0])
}

/// Every directory searched for profiles, in order, for systemd `version`.
pub fn profile_dirs(version: u32) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = SYSTEMD_PROFILE_DIRS.iter().map(PathBuf::from).collect();
    dirs.push(PathBuf::from(OWN_PROFILE_DIR).join(form_for(version).to_string()));
    dirs
}

/// The first `DIR/PROFILE/TYPE.conf` that exists, as a host path (without `--root`). A
/// profile that a user other than root can change is an error: it is what confines the
/// service.
pub fn find_profile(
    root: &Root,
    version: u32,
    profile: &str,
    unit_type: &str,
) -> Result<Option<PathBuf>, String> {
    // Links resolve inside the root, as the booted system will follow them.
    let Some((path, real)) = profile_dirs(version).into_iter().find_map(|dir| {
        let path = dir.join(profile).join(format!("{unit_type}.conf"));
        let found = root.resolve(&path, true).ok()?;
        (found.kind == FileKind::File).then(|| (path, root.join(&found.path)))
    }) else {
        return Ok(None);
    };
    match crate::ownership::path_writable_by_others(&real) {
        Some(who) => Err(format!(
            "its profile {} is {who}, and a profile others can change confines nothing",
            path.display()
        )),
        None => Ok(Some(path)),
    }
}

/// Whether a profile of that name exists at all, for any unit type.
/// Each directory is listed (once per run, by a remembering root) rather than asked for
/// each image's profile.
pub fn profile_exists(root: &Root, version: u32, profile: &str) -> bool {
    let one_name =
        !profile.is_empty() && profile != "." && profile != ".." && !profile.contains('/');
    profile_dirs(version).iter().any(|dir| {
        let is_dir = || {
            root.resolve(&dir.join(profile), true)
                .is_ok_and(|f| f.kind == FileKind::Dir)
        };
        match root.entries(dir) {
            None => false,
            Some(listing) if one_name && listing.complete => {
                match listing.kinds.get(profile.as_bytes()) {
                    Some(FileKind::Dir) => true,
                    // Followed inside the root, as the booted system will.
                    Some(FileKind::Symlink) => is_dir(),
                    _ => false,
                }
            }
            Some(_) => is_dir(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(form_for(252), 252);
        assert_eq!(form_for(256), 252);
        assert_eq!(form_for(257), 257);
        assert_eq!(form_for(258), 258);
        assert_eq!(form_for(260), 258);
        assert_eq!(form_for(100), 252);
    }

    /// Every form ships every profile, so a profile name never depends on the version.
    #[test]
    fn every_form_is_complete() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        for form in PROFILE_FORMS {
            for p in ["default", "nonetwork", "strict", "trusted"] {
                let f = repo.join(form.to_string()).join(p).join("service.conf");
                assert!(f.is_file(), "{}", f.display());
            }
        }
        let mut dirs: Vec<String> = std::fs::read_dir(&repo)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        dirs.sort();
        let forms: Vec<String> = PROFILE_FORMS.iter().map(u32::to_string).collect();
        assert_eq!(dirs, forms);
    }

    /// 257's profiles use a setting older versions refuse; older ones what 257 dropped.
    #[test]
    fn forms_differ_as_systemd_does() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let settings = |form: &str, p: &str| -> Vec<String> {
            let f = repo.join(form).join(p).join("service.conf");
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(String::from)
                .collect()
        };
        let has = |lines: &[String], prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
        for p in ["default", "nonetwork", "strict"] {
            let old = settings("252", p);
            let new = settings("257", p);
            assert!(
                !has(&old, "BindLogSockets=") && has(&old, "PrivateTmp=yes"),
                "{p}"
            );
            assert!(
                has(&new, "BindLogSockets=yes") && !has(&new, "PrivateTmp="),
                "{p}"
            );
        }
        assert_eq!(settings("252", "trusted"), settings("257", "trusted"));
        assert_eq!(settings("257", "trusted"), settings("258", "trusted"));
        for p in ["default", "nonetwork", "strict"] {
            let mut new = settings("258", p);
            assert!(has(&new, "DelegateNamespaces=no"), "{p}");
            new.retain(|l| l != "DelegateNamespaces=no");
            // Only the continuation lines' indentation differs otherwise.
            let trim = |v: Vec<String>| -> Vec<String> {
                v.into_iter().map(|l| l.trim().to_string()).collect()
            };
            assert_eq!(trim(new), trim(settings("257", p)), "{p}");
        }
    }
}
