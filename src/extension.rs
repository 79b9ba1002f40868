//! Extension images (`portablectl attach --extension`): their extension-release file and
//! whether it fits the base image, as systemd 252 decides.
//!
//! Sources: `extension_release_validate()` in src/shared/extension-release.c (v250–v253; it
//! moved to extension-util.c in v254), `open_extension_release()` in src/basic/os-util.c,
//! `raw_strip_suffixes()` as `dissected_image_new()` in src/shared/dissect-image.c uses it, and
//! `extract_image_and_extensions()` in src/portable/portable.c, which reads the base's `ID=`,
//! `VERSION_ID=`, `SYSEXT_LEVEL=` and passes the scope "portable".

use std::path::{Path, PathBuf};

use crate::arch::native_arch;
use crate::image::chase::Tree;
use crate::image::{FileKind, FsError, MAX_FILE_BYTES};
use crate::names::image_name_is_valid;
use crate::os_release::{self, OsRelease};
use crate::unit_syntax::parse_boolean;

/// Where sysext and portable extensions keep their release file.
const RELEASE_DIR: &str = "/usr/lib/extension-release.d";
const RELEASE_PREFIX: &str = "extension-release.";

/// systemd's `WHITESPACE`, which `strv_split()` splits lists on.
const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// Suffixes `raw_strip_suffixes()` removes, in its order, until none is left.
const RAW_SUFFIXES: [&str; 10] = [
    ".xz",
    ".gz",
    ".bz2",
    ".zst",
    ".sysext.raw",
    ".confext.raw",
    ".raw",
    ".qcow2",
    ".img",
    ".bin",
];

/// What an extension is on disk, which decides how its name is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionKind {
    /// A directory tree.
    Directory,
    /// A raw disk image (regular file or block device).
    Raw,
}

/// The name systemd looks the extension-release file up by: a directory's own name, or a raw
/// image's file name without its image and compression suffixes. The version stays:
/// `app_1.2.raw` is `app_1.2`.
pub fn extension_name(file_name: &str, kind: ExtensionKind) -> String {
    match kind {
        ExtensionKind::Directory => file_name.to_string(),
        ExtensionKind::Raw => {
            // One pass strips each suffix once in list order; repeating until nothing changes
            // is what turns `a.raw.xz` into `a` and `a.img.raw` into `a`.
            let mut name = file_name;
            loop {
                let before = name.len();
                for sfx in RAW_SUFFIXES {
                    if let Some(rest) = name.strip_suffix(sfx) {
                        name = rest;
                    }
                }
                if name.len() == before {
                    break;
                }
            }
            name.to_string()
        }
    }
}

/// Newer systemd's `path_extract_image_name()` on an extension name: without `.raw` (or
/// `.sysext.raw`, `.confext.raw`) and cut at the first `_` or `+`, so `app_1.2` is `app`.
fn base_name(name: &str) -> Option<&str> {
    let name = [".sysext.raw", ".confext.raw", ".raw"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let base = name.split(['_', '+']).next().unwrap_or(name);
    image_name_is_valid(base).then_some(base)
}

/// Where system extensions, then configuration extensions (looked for from 255), keep their
/// release file (`image_class_release_info[]`).
const RELEASE_DIRS: [&str; 2] = [RELEASE_DIR, "/etc/extension-release.d"];

/// The extended attribute by which an image's author lets a release file of another name
/// count (`extension_release_strict_xattr_value()` in src/basic/os-util.c).
const STRICT_XATTR: &str = "user.extension-release.strict";

/// Find and parse the extension-release file of the extension `name` inside `tree`, as
/// portablectl of systemd `systemd` does (`extract_now()` in src/portable/portable.c calling
/// `open_extension_release()` in src/basic/os-util.c).
///
/// For each class in turn (confext only from 255): `DIR/extension-release.NAME` when it
/// exists (symlinks followed inside the image); otherwise the one regular file
/// `DIR/extension-release.OTHER` whose `user.extension-release.strict` attribute is false
/// (every version), or whose OTHER is NAME cut at the first `_` or `+` (from 256:
/// `app_1.2.raw` with `extension-release.app`). Two such files are an error, as in systemd.
pub fn read_extension_release(
    tree: &Tree,
    name: &str,
    systemd: u32,
) -> Result<(PathBuf, OsRelease), String> {
    if !image_name_is_valid(name) {
        return Err(format!(
            "\"{}\" is not a valid extension name",
            printable(name)
        ));
    }
    let dirs = if systemd >= 255 {
        &RELEASE_DIRS[..]
    } else {
        &RELEASE_DIRS[..1]
    };
    let mut looked_for = Vec::new();
    let mut passed_over: Option<PathBuf> = None;
    for &dir in dirs {
        let exact = Path::new(dir).join(format!("{RELEASE_PREFIX}{name}"));
        match tree.resolve(&exact, true) {
            Ok(found) => return read_release(tree, &exact, found.path, systemd),
            // A dangling symlink is as good as absent, as for chase() in systemd.
            Err(FsError::NotFound) => {}
            Err(e) => return Err(format!("cannot read {}: {e}", exact.display())),
        }
        let other = fallback(tree, dir, name, systemd)?;
        if let Some(path) = other.taken {
            return read_release(tree, &path, path.clone(), systemd);
        }
        passed_over = passed_over.or(other.passed_over);
        looked_for.push(exact.display().to_string());
    }
    let mut why = format!(
        "lacks extension-release data ({} not found",
        looked_for.join(" or ")
    );
    // Say why a file that is there does not count: the likeliest mistake.
    if let Some(path) = passed_over {
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        let base = base_name(name).map(|b| format!("{RELEASE_PREFIX}{b}"));
        if base.as_deref() == Some(&*file) {
            // Newer versions forgive a file named for the base name.
            why.push_str(&format!(
                ", and systemd {systemd} does not accept {} in its place",
                path.display()
            ));
        } else {
            why.push_str(&format!(
                ", and {} is of another name without {STRICT_XATTR}=false",
                path.display()
            ));
        }
    }
    why.push(')');
    Err(why)
}

/// What the fallback found in one directory: the file taken, or else the first file that
/// was passed over, for the message.
struct Fallback {
    taken: Option<PathBuf>,
    passed_over: Option<PathBuf>,
}

/// The release file of another name that systemd accepts in `dir`, if there is one.
fn fallback(tree: &Tree, dir: &str, name: &str, systemd: u32) -> Result<Fallback, String> {
    let mut result = Fallback {
        taken: None,
        passed_over: None,
    };
    let (resolved, entries) = match tree.read_dir(Path::new(dir)) {
        Ok(listing) => listing,
        Err(FsError::NotFound | FsError::NotADirectory) => return Ok(result),
        Err(e) => return Err(format!("cannot read {dir}: {e}")),
    };
    let base = if systemd >= 256 {
        base_name(name)
    } else {
        None
    };
    // Only regular files count, not symlinks: systemd opens candidates with O_NOFOLLOW.
    let mut names: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == FileKind::File)
        .filter_map(|e| std::str::from_utf8(&e.name).ok())
        .filter_map(|n| n.strip_prefix(RELEASE_PREFIX))
        .filter(|o| image_name_is_valid(o))
        .collect();
    // Listing order is the file system's; messages name files in a stable order.
    names.sort_unstable();
    for other in names {
        let path = resolved.join(format!("{RELEASE_PREFIX}{other}"));
        if Some(other) != base && !strict_is_false(tree, &path, systemd) {
            // The file named for the base name is the one its author meant, if there is one.
            if result.passed_over.is_none() || Some(other) == base_name(name) {
                result.passed_over = Some(path);
            }
            continue;
        }
        if let Some(first) = &result.taken {
            // systemd's ENOTUNIQ: the fallback must not be ambiguous.
            return Err(format!(
                "ambiguous extension-release data: {} and {} both stand for {}",
                first.display(),
                path.display(),
                printable(name)
            ));
        }
        result.taken = Some(path);
    }
    Ok(result)
}

/// Whether the file carries `user.extension-release.strict` set to a false value for systemd
/// `systemd` (`parse_boolean()`: 0, no, n, false, f, off, in any case). An absent,
/// unreadable or unparsable attribute keeps the name check strict. NUL bytes: 252 to 254
/// read the value as a C string (up to the first NUL), 255 to 258 refuse any NUL
/// (`getxattr_at_bool()`), 259 accepts one trailing NUL (`getxattr_at_malloc()`).
fn strict_is_false(tree: &Tree, path: &Path, systemd: u32) -> bool {
    let Ok(Some(value)) = tree.xattr(path, STRICT_XATTR) else {
        return false;
    };
    let value: &[u8] = match systemd {
        ..255 => value.split(|&b| b == 0).next().unwrap_or_default(),
        255..259 => &value,
        _ => value.strip_suffix(b"\0").unwrap_or(&value),
    };
    !value.contains(&0) && std::str::from_utf8(value).ok().and_then(parse_boolean) == Some(false)
}

fn read_release(
    tree: &Tree,
    shown: &Path,
    path: PathBuf,
    systemd: u32,
) -> Result<(PathBuf, OsRelease), String> {
    let bytes = tree
        .read_file(&path, MAX_FILE_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", shown.display()))?;
    let release = os_release::parse_for(&bytes, systemd)
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    Ok((path, release))
}

/// `extension_release_validate()` of systemd `systemd` for scope "portable", as portable.c
/// calls it (with the sysext fields: its confext call only follows an error): does the
/// extension fit the base image whose os-release is `base`? The reason for a refusal is one
/// line.
pub fn validate(
    ext_name: &str,
    ext: &OsRelease,
    base: &OsRelease,
    systemd: u32,
) -> Result<(), String> {
    validate_for_arch(ext_name, ext, base, native_arch(), systemd)
}

fn validate_for_arch(
    ext_name: &str,
    ext: &OsRelease,
    base: &OsRelease,
    host_arch: Option<&str>,
    systemd: u32,
) -> Result<(), String> {
    let Some(base_id) = base.non_empty("ID") else {
        // portable.c refuses such a base image before extensions are looked at.
        return Err("the image's os-release lacks ID=".into());
    };
    if ext.fields.is_empty() {
        return Err(format!(
            "extension-release of {} sets no fields",
            printable(ext_name)
        ));
    }

    // An absent SYSEXT_SCOPE= means "system portable"; a present but empty one means none.
    if let Some(scope) = ext.get("SYSEXT_SCOPE")
        && !scope.split(WHITESPACE).any(|s| s == "portable")
    {
        return Err(format!(
            "extension-release SYSEXT_SCOPE={} does not include portable",
            printable(scope)
        ));
    }

    // systemd compares with uname's architecture only, so an x86 extension is refused on
    // x86-64 although x86 binaries would run there.
    if let Some(arch) = ext.non_empty("ARCHITECTURE")
        && arch != "_any"
        && Some(arch) != host_arch
    {
        return Err(format!(
            "extension-release ARCHITECTURE={} does not match this machine's {}",
            printable(arch),
            host_arch.unwrap_or("architecture, which systemd does not name")
        ));
    }

    let Some(id) = ext.non_empty("ID") else {
        return Err(format!(
            "extension-release lacks ID= (the image's is ID={}, or use ID=_any)",
            printable(base_id)
        ));
    };
    // An extension of static binaries or scripts fits any base, whatever its version.
    if id == "_any" {
        return Ok(());
    }
    // From 257 the base's ID_LIKE= counts too: an extension for debian fits an ubuntu base.
    let like = base.get("ID_LIKE").filter(|_| systemd >= 257);
    if id != base_id && !like.is_some_and(|l| l.split(WHITESPACE).any(|w| w == id)) {
        let like = like
            .map(|l| format!(" (ID_LIKE={})", printable(l)))
            .unwrap_or_default();
        return Err(format!(
            "extension-release ID={} does not match the image's ID={}{like}",
            printable(id),
            printable(base_id)
        ));
    }

    let base_version = base.non_empty("VERSION_ID");
    let base_level = base.non_empty("SYSEXT_LEVEL");
    // Rolling releases often set no VERSION_ID; the ID is all there is to compare.
    if base_version.is_none() && base_level.is_none() {
        return Ok(());
    }
    if let (Some(base_level), Some(level)) = (base_level, ext.non_empty("SYSEXT_LEVEL")) {
        if level != base_level {
            return Err(format!(
                "extension-release SYSEXT_LEVEL={} does not match the image's SYSEXT_LEVEL={}",
                printable(level),
                printable(base_level)
            ));
        }
    } else if let Some(base_version) = base_version {
        match ext.non_empty("VERSION_ID") {
            None => {
                return Err(format!(
                    "extension-release lacks VERSION_ID= (the image's is VERSION_ID={})",
                    printable(base_version)
                ));
            }
            Some(v) if v != base_version => {
                return Err(format!(
                    "extension-release VERSION_ID={} does not match the image's VERSION_ID={}",
                    printable(v),
                    printable(base_version)
                ));
            }
            Some(_) => {}
        }
    }
    // Left: the base has SYSEXT_LEVEL but no VERSION_ID and the extension no SYSEXT_LEVEL,
    // which systemd 252 lets through.
    Ok(())
}

/// The words of an extension-release's `PORTABLE_PREFIXES=`, without repeats; the caller merges
/// them into the base image's list as portable.c does.
pub fn portable_prefixes(ext: &OsRelease) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in ext
        .get("PORTABLE_PREFIXES")
        .unwrap_or("")
        .split(WHITESPACE)
        .filter(|w| !w.is_empty())
    {
        if !out.iter().any(|o| o == word) {
            out.push(word.to_string());
        }
    }
    out
}

/// A value from an image, made safe for a one-line log message.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::chase::tests::MemFs;

    fn rel(text: &str) -> OsRelease {
        os_release::parse(text.as_bytes()).unwrap()
    }

    fn tree(fs: MemFs) -> Tree {
        Tree::new(Box::new(fs))
    }

    const DIR: &str = "/usr/lib/extension-release.d";

    #[test]
    fn names_as_systemd_derives_them() {
        use ExtensionKind::*;
        for (file, kind, name) in [
            ("app_1.2.raw", Raw, "app_1.2"),
            ("app.raw", Raw, "app"),
            ("app.sysext.raw", Raw, "app"),
            ("app.confext.raw", Raw, "app"),
            ("app_1.2.raw.xz", Raw, "app_1.2"),
            ("app.raw.zst", Raw, "app"),
            ("app.img.raw", Raw, "app"),
            ("app.raw.gz.bz2", Raw, "app"),
            ("app.qcow2", Raw, "app"),
            ("app.bin", Raw, "app"),
            ("app.squashfs", Raw, "app.squashfs"),
            ("app+3-1.raw", Raw, "app+3-1"),
            (".raw", Raw, ""),
            ("app_1.2", Directory, "app_1.2"),
            ("app.raw", Directory, "app.raw"),
            ("app.d", Directory, "app.d"),
        ] {
            assert_eq!(extension_name(file, kind), name, "{file}");
        }
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name("app_1.2"), Some("app"));
        assert_eq!(base_name("app+3"), Some("app"));
        assert_eq!(base_name("app.raw"), Some("app"));
        assert_eq!(base_name("app"), Some("app"));
        assert_eq!(base_name("_1.2"), None);
        assert_eq!(base_name("+1"), None);
    }

    #[test]
    fn exact_name_wins() {
        let t = tree(
            MemFs::new()
                .file(&format!("{DIR}/extension-release.app_1.2"), b"ID=debian\n")
                .file(&format!("{DIR}/extension-release.app"), b"ID=other\n"),
        );
        let (path, r) = read_extension_release(&t, "app_1.2", 260).unwrap();
        assert_eq!(
            path,
            Path::new("/usr/lib/extension-release.d/extension-release.app_1.2")
        );
        assert_eq!(r.get("ID"), Some("debian"));
    }

    #[test]
    fn exact_name_through_symlinks() {
        let t = tree(
            MemFs::new()
                .file("/usr/share/rel", b"ID=debian\n")
                .link(&format!("{DIR}/extension-release.app"), "../../share/rel"),
        );
        let (path, r) = read_extension_release(&t, "app", 260).unwrap();
        assert_eq!(path, Path::new("/usr/share/rel"));
        assert_eq!(r.get("ID"), Some("debian"));
    }

    #[test]
    fn fallback_by_base_name() {
        let t = tree(
            MemFs::new()
                .file(&format!("{DIR}/extension-release.app"), b"ID=debian\n")
                .file(&format!("{DIR}/extension-release.other"), b"ID=x\n")
                .file(&format!("{DIR}/extension-release.app_0.9"), b"ID=y\n")
                .file(&format!("{DIR}/README"), b""),
        );
        for name in ["app_1.2", "app+2", "app_1.2+3-1", "app_"] {
            // From 256 on the file is taken; before, systemd refuses the extension.
            let (path, r) = read_extension_release(&t, name, 256).unwrap();
            assert_eq!(path, Path::new(DIR).join("extension-release.app"), "{name}");
            assert_eq!(r.get("ID"), Some("debian"));
            let e = read_extension_release(&t, name, 255).unwrap_err();
            assert!(
                e.ends_with(
                    " not found, and systemd 255 does not accept \
                     /usr/lib/extension-release.d/extension-release.app in its place)"
                ),
                "{e}"
            );
        }
        // Neither a longer nor a different name counts.
        let err = read_extension_release(&t, "ap_1", 260).unwrap_err();
        assert!(err.contains("lacks extension-release data"), "{err}");
        let err = read_extension_release(&t, "apps_1", 260).unwrap_err();
        assert!(err.contains("lacks extension-release data"), "{err}");
    }

    #[test]
    fn fallback_ignores_symlinks_and_dangling_exact_links() {
        let t = tree(
            MemFs::new()
                .file("/rel", b"ID=debian\n")
                .link(&format!("{DIR}/extension-release.app"), "/rel")
                .link(&format!("{DIR}/extension-release.app_1"), "/nowhere"),
        );
        let err = read_extension_release(&t, "app_1", 260).unwrap_err();
        assert_eq!(
            err,
            "lacks extension-release data \
             (/usr/lib/extension-release.d/extension-release.app_1 or \
             /etc/extension-release.d/extension-release.app_1 not found)"
        );
        let err = read_extension_release(&t, "app_1", 254).unwrap_err();
        assert_eq!(
            err,
            "lacks extension-release data \
             (/usr/lib/extension-release.d/extension-release.app_1 not found)"
        );
    }

    /// A file of another name counts when its author says so, on every version.
    #[test]
    fn strict_attribute() {
        let file = format!("{DIR}/extension-release.renamed");
        for (value, taken) in [
            (&b"false"[..], true),
            (b"0", true),
            (b"OFF", true),
            (b"No", true),
            (b"true", false),
            (b"1", false),
            (b"maybe", false),
            (b"", false),
        ] {
            let t = tree(MemFs::new().file(&file, b"ID=debian\n").set_xattr(
                &file,
                STRICT_XATTR,
                value,
            ));
            for v in [252, 257, 260] {
                let got = read_extension_release(&t, "app_1", v);
                assert_eq!(got.is_ok(), taken, "{value:?} on {v}: {got:?}");
                if let Ok((path, _)) = got {
                    assert_eq!(path, Path::new(&file));
                }
            }
        }
        // A NUL byte, as each version reads the value.
        for (value, taken) in [
            (&b"false\0"[..], [true, false, false, true]),
            (b"false\0junk", [true, false, false, false]),
            (b"\0false", [false, false, false, false]),
        ] {
            let t = tree(MemFs::new().file(&file, b"ID=debian\n").set_xattr(
                &file,
                STRICT_XATTR,
                value,
            ));
            for (v, taken) in [252, 255, 258, 259].into_iter().zip(taken) {
                let got = read_extension_release(&t, "app_1", v);
                assert_eq!(got.is_ok(), taken, "{value:?} on {v}: {got:?}");
            }
        }
        // Another attribute, or one on a symlink to the file, does not count.
        let t = tree(
            MemFs::new()
                .file("/rel", b"ID=debian\n")
                .set_xattr("/rel", STRICT_XATTR, b"false")
                .link(&file, "/rel")
                .file(&format!("{DIR}/extension-release.x"), b"ID=debian\n")
                .set_xattr(
                    &format!("{DIR}/extension-release.x"),
                    "user.other",
                    b"false",
                ),
        );
        assert!(read_extension_release(&t, "app", 260).is_err());
        // A relaxed file and one of the base name are two candidates: systemd's ENOTUNIQ
        // (from 256, when the base name counts).
        let t = tree(
            MemFs::new()
                .file(&file, b"ID=debian\n")
                .set_xattr(&file, STRICT_XATTR, b"false")
                .file(&format!("{DIR}/extension-release.app"), b"ID=debian\n"),
        );
        assert!(read_extension_release(&t, "app_1", 255).is_ok());
        let err = read_extension_release(&t, "app_1", 256).unwrap_err();
        assert!(
            err.starts_with("ambiguous extension-release data: "),
            "{err}"
        );
    }

    /// Configuration extensions keep theirs in /etc, looked for from 255 after /usr/lib.
    #[test]
    fn confext_release_files() {
        let etc = "/etc/extension-release.d";
        let t = tree(MemFs::new().file(&format!("{etc}/extension-release.app"), b"ID=debian\n"));
        assert!(read_extension_release(&t, "app", 254).is_err());
        let (path, _) = read_extension_release(&t, "app", 255).unwrap();
        assert_eq!(path, Path::new(etc).join("extension-release.app"));
        // The sysext file, found first, wins.
        let t = tree(
            MemFs::new()
                .file(&format!("{etc}/extension-release.app"), b"ID=etc\n")
                .file(&format!("{DIR}/extension-release.app"), b"ID=usr\n"),
        );
        assert_eq!(
            read_extension_release(&t, "app", 257).unwrap().1.get("ID"),
            Some("usr")
        );
        // The base-name fallback applies to /etc too.
        let t = tree(MemFs::new().file(&format!("{etc}/extension-release.app"), b"ID=debian\n"));
        assert!(read_extension_release(&t, "app_2", 257).is_ok());
    }

    /// A file listed twice can only come from a damaged image; systemd's ENOTUNIQ.
    #[test]
    fn ambiguity() {
        struct Twice(MemFs);
        impl crate::image::Fs for Twice {
            fn lstat(&self, p: &Path) -> Result<Option<FileKind>, FsError> {
                self.0.lstat(p)
            }
            fn read_dir(&self, p: &Path) -> Result<Vec<crate::image::DirEntry>, FsError> {
                let mut v = self.0.read_dir(p)?;
                v.extend(v.clone());
                Ok(v)
            }
            fn read_link(&self, p: &Path) -> Result<Vec<u8>, FsError> {
                self.0.read_link(p)
            }
            fn read_file(&self, p: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
                self.0.read_file(p, limit)
            }
            fn xattr(&self, p: &Path, n: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
                self.0.xattr(p, n, limit)
            }
        }
        let t = Tree::new(Box::new(Twice(
            MemFs::new().file(&format!("{DIR}/extension-release.app"), b"ID=debian\n"),
        )));
        let err = read_extension_release(&t, "app_1", 260).unwrap_err();
        assert!(
            err.starts_with("ambiguous extension-release data: "),
            "{err}"
        );
        // The exact name is not looked up in the listing, so it is not ambiguous.
        assert!(read_extension_release(&t, "app", 260).is_ok());
    }

    #[test]
    fn missing_unreadable_unparsable() {
        let err = read_extension_release(&tree(MemFs::new()), "app", 260).unwrap_err();
        assert!(err.contains("lacks extension-release data"), "{err}");
        let err = read_extension_release(&tree(MemFs::new().dir(DIR)), "app", 260).unwrap_err();
        assert!(err.contains("lacks extension-release data"), "{err}");

        let t = tree(MemFs::new().dir(&format!("{DIR}/extension-release.app")));
        let err = read_extension_release(&t, "app", 260).unwrap_err();
        assert!(err.starts_with("cannot read "), "{err}");
        let t = tree(MemFs::new().file(DIR, b"x"));
        let err = read_extension_release(&t, "app", 260).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        let t = tree(
            MemFs::new()
                .link(&format!("{DIR}/extension-release.app"), "loop")
                .link(&format!("{DIR}/loop"), "extension-release.app"),
        );
        let err = read_extension_release(&t, "app", 260).unwrap_err();
        assert!(err.contains("symbolic links"), "{err}");
        let big = vec![b'#'; usize::try_from(MAX_FILE_BYTES).unwrap() + 1];
        let t = tree(MemFs::new().file(&format!("{DIR}/extension-release.app"), &big));
        let err = read_extension_release(&t, "app", 260).unwrap_err();
        assert!(err.contains("too large"), "{err}");

        let t = tree(MemFs::new().file(&format!("{DIR}/extension-release.app"), b"ID=\xff\n"));
        let err = read_extension_release(&t, "app", 260).unwrap_err();
        assert!(err.starts_with("cannot parse "), "{err}");
        let t = tree(MemFs::new().file(&format!("{DIR}/extension-release.app"), b"ID=a\0\n"));
        assert!(read_extension_release(&t, "app", 260).is_err());

        for bad in ["", ".", "..", "a/b", ".#app", "a\u{7}"] {
            let err = read_extension_release(&tree(MemFs::new()), bad, 260).unwrap_err();
            assert!(err.contains("not a valid extension name"), "{err}");
        }
    }

    fn check(ext: &str, base: &str) -> Result<(), String> {
        validate_for_arch("app", &rel(ext), &rel(base), Some("x86-64"), 252)
    }

    fn check_257(ext: &str, base: &str) -> Result<(), String> {
        validate_for_arch("app", &rel(ext), &rel(base), Some("x86-64"), 257)
    }

    #[test]
    fn scope() {
        let base = "ID=debian\nVERSION_ID=12\n";
        assert!(check("ID=debian\nVERSION_ID=12\n", base).is_ok());
        assert!(check("ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE=portable\n", base).is_ok());
        assert!(
            check(
                "ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE='initrd  portable'\n",
                base
            )
            .is_ok()
        );
        assert_eq!(
            check(
                "ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE=system initrd\n",
                base
            ),
            Err("extension-release SYSEXT_SCOPE=system initrd does not include portable".into())
        );
        assert!(
            check(
                "ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE=\"system initrd\"\n",
                base
            )
            .is_err()
        );
        assert!(check("ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE=\n", base).is_err());
        assert!(check("ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE=portables\n", base).is_err());
    }

    #[test]
    fn architecture() {
        let base = "ID=debian\nVERSION_ID=12\n";
        for ok in ["x86-64", "_any", ""] {
            let ext = format!("ID=debian\nVERSION_ID=12\nARCHITECTURE={ok}\n");
            assert!(check(&ext, base).is_ok(), "{ok}");
        }
        assert_eq!(
            check("ID=debian\nVERSION_ID=12\nARCHITECTURE=arm64\n", base),
            Err("extension-release ARCHITECTURE=arm64 does not match this machine's x86-64".into())
        );
        // The secondary architecture is not accepted: systemd compares with uname only.
        assert!(check("ID=debian\nVERSION_ID=12\nARCHITECTURE=x86\n", base).is_err());
        let r = validate_for_arch(
            "app",
            &rel("ID=debian\nARCHITECTURE=x86-64\n"),
            &rel("ID=debian\n"),
            None,
            252,
        );
        assert!(r.unwrap_err().contains("does not name"));
    }

    #[test]
    fn id() {
        let base = "ID=debian\nVERSION_ID=12\n";
        assert_eq!(
            check("ID=fedora\nVERSION_ID=12\n", base),
            Err("extension-release ID=fedora does not match the image's ID=debian".into())
        );
        assert_eq!(
            check("VERSION_ID=12\n", base),
            Err("extension-release lacks ID= (the image's is ID=debian, or use ID=_any)".into())
        );
        assert!(check("ID=\nVERSION_ID=12\n", base).is_err());
        // _any skips the version checks, but not scope or architecture.
        assert!(check("ID=_any\n", base).is_ok());
        assert!(
            check(
                "ID=_any\nVERSION_ID=1\nSYSEXT_LEVEL=9\n",
                "ID=x\nSYSEXT_LEVEL=1\n"
            )
            .is_ok()
        );
        assert!(check("ID=_any\nSYSEXT_SCOPE=system\n", base).is_err());
        assert!(check("ID=_any\nARCHITECTURE=s390\n", base).is_err());
        // ID_LIKE is not consulted by systemd 252, and is from 257.
        let ubuntu = "ID=ubuntu\nID_LIKE=\"debian  other\"\nVERSION_ID=12\n";
        assert!(check("ID=debian\nVERSION_ID=12\n", ubuntu).is_err());
        assert!(check_257("ID=debian\nVERSION_ID=12\n", ubuntu).is_ok());
        assert!(check_257("ID=other\nVERSION_ID=12\n", ubuntu).is_ok());
        assert_eq!(
            check_257("ID=fedora\nVERSION_ID=12\n", ubuntu),
            Err("extension-release ID=fedora does not match the image's ID=ubuntu (ID_LIKE=debian  other)".into())
        );
        // The version must still match.
        assert!(check_257("ID=debian\nVERSION_ID=13\n", ubuntu).is_err());
        // Comparison is exact.
        assert!(check("ID=Debian\nVERSION_ID=12\n", base).is_err());
    }

    #[test]
    fn versions_and_levels() {
        // No VERSION_ID and no SYSEXT_LEVEL in the base: the ID is enough.
        assert!(check("ID=arch\n", "ID=arch\n").is_ok());
        assert!(
            check(
                "ID=arch\nVERSION_ID=1\nSYSEXT_LEVEL=2\n",
                "ID=arch\nVERSION_ID=\n"
            )
            .is_ok()
        );

        // Both levels set: they decide, VERSION_ID is not compared.
        let base = "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n";
        assert!(check("ID=debian\nSYSEXT_LEVEL=1.0\nVERSION_ID=11\n", base).is_ok());
        assert_eq!(
            check("ID=debian\nSYSEXT_LEVEL=2\nVERSION_ID=12\n", base),
            Err(
                "extension-release SYSEXT_LEVEL=2 does not match the image's SYSEXT_LEVEL=1.0"
                    .into()
            )
        );
        // Only the base has a level: VERSION_ID decides.
        assert!(check("ID=debian\nVERSION_ID=12\n", base).is_ok());
        assert!(check("ID=debian\nVERSION_ID=11\n", base).is_err());
        // Only the extension has a level: VERSION_ID decides.
        let base = "ID=debian\nVERSION_ID=12\n";
        assert!(check("ID=debian\nSYSEXT_LEVEL=1\nVERSION_ID=12\n", base).is_ok());
        assert_eq!(
            check("ID=debian\nSYSEXT_LEVEL=1\n", base),
            Err("extension-release lacks VERSION_ID= (the image's is VERSION_ID=12)".into())
        );
        assert_eq!(
            check("ID=debian\nVERSION_ID=11\n", base),
            Err("extension-release VERSION_ID=11 does not match the image's VERSION_ID=12".into())
        );
        assert!(check("ID=debian\nVERSION_ID=\n", base).is_err());
        assert!(check("ID=debian\nVERSION_ID=12.0\n", base).is_err());
        // A level but no VERSION_ID in the base, no level in the extension: systemd 252
        // falls through to success.
        assert!(check("ID=debian\n", "ID=debian\nSYSEXT_LEVEL=1\n").is_ok());
        assert!(check("ID=debian\nVERSION_ID=5\n", "ID=debian\nSYSEXT_LEVEL=1\n").is_ok());
    }

    #[test]
    fn empty_files_and_bases() {
        assert_eq!(
            check("", "ID=debian\n"),
            Err("extension-release of app sets no fields".into())
        );
        assert_eq!(
            check("# only a comment\n", "ID=debian\n"),
            Err("extension-release of app sets no fields".into())
        );
        assert_eq!(
            check("ID=debian\n", "ID=\n"),
            Err("the image's os-release lacks ID=".into())
        );
    }

    #[test]
    fn messages_are_one_line() {
        let err = check("ID=\"a\nb\"\n", "ID=debian\n").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("ID=a\\nb"), "{err}");
    }

    #[test]
    fn validate_uses_this_build_architecture() {
        let ext = rel("ID=debian\nARCHITECTURE=_any\n");
        assert!(validate("app", &ext, &rel("ID=debian\n"), 252).is_ok());
        if let Some(a) = native_arch() {
            let ext = rel(&format!("ID=debian\nARCHITECTURE={a}\n"));
            assert!(validate("app", &ext, &rel("ID=debian\n"), 257).is_ok());
        }
    }

    #[test]
    fn prefixes() {
        assert!(portable_prefixes(&rel("ID=x\n")).is_empty());
        assert!(portable_prefixes(&rel("PORTABLE_PREFIXES=\n")).is_empty());
        assert_eq!(
            portable_prefixes(&rel("PORTABLE_PREFIXES=\"app  app-web\tapp\"\n")),
            ["app", "app-web"]
        );
        assert_eq!(
            portable_prefixes(&rel("PORTABLE_PREFIXES=a\nPORTABLE_PREFIXES=b c\n")),
            ["b", "c"]
        );
    }
}
