//! The text of the drop-ins the generator writes, byte for byte as `portablectl attach`
//! writes them.

use crate::boundary::{self, Assignment, Kind};
use crate::model::ImageKind;
use crate::os_release::OsRelease;

/// What `20-portable.conf` needs to know about an image.
#[derive(Debug, Clone, Copy)]
pub struct DropinImage<'a> {
    /// Path as the booted system sees it.
    pub path: &'a str,
    /// The file name of the root image: the value of `PORTABLE_ROOT=` (254+, with extensions).
    pub root_file_name: &'a str,
    /// The file name of the image the unit was found in (the root image's, or an
    /// extension's): the value of `PORTABLE=`.
    pub file_name: &'a str,
    /// Directory or image: `RootDirectory=` or `RootImage=`.
    pub kind: ImageKind,
    /// The root image's os-release, which names it in the journal (254+).
    pub release: &'a OsRelease,
    /// Extension images layered over the root, in order.
    pub extensions: &'a [DropinExtension<'a>],
}

/// An extension image as `20-portable.conf` names it.
#[derive(Debug, Clone, Copy)]
pub struct DropinExtension<'a> {
    /// Path as the booted system sees it: the entry of `ExtensionImages=` or
    /// `ExtensionDirectories=`.
    pub path: &'a str,
    /// Its file name, the value of `PORTABLE_EXTENSION=` (254+).
    pub file_name: &'a str,
    /// Directory or image: `ExtensionDirectories=` or `ExtensionImages=`.
    pub kind: ImageKind,
    /// Its extension-release file.
    pub release: &'a OsRelease,
}

/// The fields `append_release_log_fields()` (src/portable/portable.c, 254+) names an image by:
/// the first present of the ids, the first present of the versions.
struct ReleaseFields {
    ids: &'static [&'static str],
    versions: &'static [&'static str],
}

const PORTABLE_FIELDS: ReleaseFields = ReleaseFields {
    ids: &["IMAGE_ID", "ID"],
    versions: &["IMAGE_VERSION", "VERSION_ID", "BUILD_ID"],
};
const SYSEXT_FIELDS: ReleaseFields = ReleaseFields {
    ids: &["SYSEXT_IMAGE_ID", "SYSEXT_ID"],
    versions: &[
        "SYSEXT_IMAGE_VERSION",
        "SYSEXT_VERSION_ID",
        "SYSEXT_BUILD_ID",
    ],
};
const CONFEXT_FIELDS: ReleaseFields = ReleaseFields {
    ids: &["CONFEXT_IMAGE_ID", "CONFEXT_ID"],
    versions: &[
        "CONFEXT_IMAGE_VERSION",
        "CONFEXT_VERSION_ID",
        "CONFEXT_BUILD_ID",
    ],
};

/// `ID_VERSION` as `append_release_log_fields()` joins them, or `None` when the file has
/// neither. A present but empty field counts as present (`strv_find_first_field()`); a value
/// with control characters counts as absent, as from 257 — and here for every version,
/// since 254 to 256 would write a line break into the drop-in.
fn name_and_version(release: &OsRelease, fields: &ReleaseFields) -> Option<String> {
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| release.get(k))
            .filter(|v| !v.chars().any(|c| c < ' ' || c == '\x7f'))
    };
    let id = first(fields.ids);
    let version = first(fields.versions);
    match (id, version) {
        (None, None) => None,
        (Some(id), Some(version)) => Some(format!("{id}_{version}")),
        (id, version) => Some(id.or(version).unwrap_or_default().to_string()),
    }
}

/// A `LogExtraFields=FIELD=…` naming an image by its release file, if it names one.
fn release_line(out: &mut Vec<Line>, field: &str, release: &OsRelease, fields: &ReleaseFields) {
    if let Some(value) = name_and_version(release, fields) {
        out.push(Line::Set(Assignment::new(
            "LogExtraFields",
            Kind::Word,
            format!("{field}={value}"),
        )));
    }
}

/// A line of the `[Service]` section: a setting, or the blank line portablectl puts before
/// each extension (254+).
enum Line {
    Set(Assignment),
    Blank,
}

/// systemd's `xescape(s, ":")`: control characters, bytes from 0x7f, backslash and the
/// marker's separator become `\xNN`, so the marker line stays one parseable line.
pub fn xescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if !(b' '..0x7f).contains(&b) || b == b'\\' || b == b':' {
            out.push_str(&format!("\\x{b:02x}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// The first line of `20-portable.conf`, by which portablectl recognises attached units.
pub fn marker_line(image_path: &str, extensions: &[DropinExtension]) -> String {
    let mut images = xescape(image_path);
    for e in extensions {
        images.push(':');
        images.push_str(&xescape(e.path));
    }
    format!(
        "# Drop-in created for image '{images}', do not edit.
"
    )
}

/// `20-portable.conf` for `unit`, as `install_chroot_dropin()` of systemd `version` writes
/// it. `host_os_release` is `/etc/os-release` if the host has it, else `/usr/lib/os-release`.
///
/// The steps, from src/portable/portable.c at each release: 252-253 bind the host's
/// os-release to `/run/host/os-release` (from 254 PID 1 provides it, and from 255 the bind
/// mount makes every unit fail); 254 names the image (`PORTABLE_NAME_AND_VERSION=`, or
/// `PORTABLE_ROOT=` and `PORTABLE_ROOT_NAME_AND_VERSION=` with extensions) and each extension
/// (`PORTABLE_EXTENSION=`, `PORTABLE_EXTENSION_NAME_AND_VERSION=` from the sysext fields);
/// 255 adds the confext fields; 257 drops values with control characters.
pub fn portable_dropin(
    version: u32,
    unit: &str,
    image: &DropinImage,
    host_os_release: &str,
) -> Result<String, String> {
    let marker = marker_line(image.path, image.extensions);
    if !unit.ends_with(".service") {
        boundary::verify(&marker, &marker, "Service", &[])?;
        return Ok(marker);
    }
    let lines = service_lines(version, image, host_os_release);
    let mut text = marker.clone();
    text.push_str("\n[Service]\n");
    for line in &lines {
        match line {
            Line::Set(a) => {
                text.push_str(a.key);
                text.push('=');
                text.push_str(&boundary::encode(a)?);
                text.push('\n');
            }
            Line::Blank => text.push('\n'),
        }
    }
    let expected: Vec<Assignment> = lines
        .into_iter()
        .filter_map(|l| match l {
            Line::Set(a) => Some(a),
            Line::Blank => None,
        })
        .collect();
    boundary::verify(&text, &marker, "Service", &expected)?;
    Ok(text)
}

/// The settings of the `[Service]` section, in portablectl's order.
fn service_lines(version: u32, image: &DropinImage, host_os_release: &str) -> Vec<Line> {
    let set = |key, kind, value: String| Line::Set(Assignment::new(key, kind, value));
    let root = match image.kind {
        ImageKind::Directory => "RootDirectory",
        ImageKind::Raw | ImageKind::Block => "RootImage",
    };
    let portable = format!("PORTABLE={}", image.file_name);
    let mut out = vec![
        set(root, Kind::Path, image.path.to_string()),
        set("Environment", Kind::Word, portable.clone()),
    ];
    if version < 254 {
        // From 254 on PID 1 provides /run/host/os-release itself.
        out.push(Line::Set(Assignment::new(
            "BindReadOnlyPaths",
            Kind::Word,
            format!("{host_os_release}:/run/host/os-release"),
        )));
    }
    out.push(set("LogExtraFields", Kind::Word, portable));
    if version >= 254 {
        if image.extensions.is_empty() {
            release_line(
                &mut out,
                "PORTABLE_NAME_AND_VERSION",
                image.release,
                &PORTABLE_FIELDS,
            );
        } else {
            let root_name = format!("PORTABLE_ROOT={}", image.root_file_name);
            out.push(set("Environment", Kind::Word, root_name.clone()));
            out.push(set("LogExtraFields", Kind::Word, root_name));
            release_line(
                &mut out,
                "PORTABLE_ROOT_NAME_AND_VERSION",
                image.release,
                &PORTABLE_FIELDS,
            );
        }
    }
    // systemd 252 to 259 list extensions only in drop-ins of units that came from an
    // extension, so units of the root image do not see them (systemd issue #27307, fixed
    // in 260): every unit gets them here.
    for e in image.extensions {
        let setting = match e.kind {
            ImageKind::Directory => "ExtensionDirectories",
            ImageKind::Raw | ImageKind::Block => "ExtensionImages",
        };
        if version >= 254 {
            out.push(Line::Blank);
        }
        out.push(set(setting, Kind::ListPath, e.path.to_string()));
        if version >= 254 {
            out.push(set(
                "LogExtraFields",
                Kind::Word,
                format!("PORTABLE_EXTENSION={}", e.file_name),
            ));
            let field = "PORTABLE_EXTENSION_NAME_AND_VERSION";
            release_line(&mut out, field, e.release, &SYSEXT_FIELDS);
            if version >= 255 {
                release_line(&mut out, field, e.release, &CONFEXT_FIELDS);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os_release;

    fn rel(text: &str) -> OsRelease {
        os_release::parse(text.as_bytes()).unwrap()
    }

    fn squash<'a>(
        release: &'a OsRelease,
        extensions: &'a [DropinExtension<'a>],
    ) -> DropinImage<'a> {
        DropinImage {
            path: "/var/lib/portables/demosquash.raw",
            root_file_name: "demosquash.raw",
            file_name: "demosquash.raw",
            kind: ImageKind::Raw,
            release,
            extensions,
        }
    }

    #[test]
    fn service_dropin_matches_portablectl_252() {
        let r = rel("ID=debian\nIMAGE_ID=demosquash\nIMAGE_VERSION=1\n");
        assert_eq!(
            portable_dropin(
                252,
                "demosquash.service",
                &squash(&r, &[]),
                "/etc/os-release"
            )
            .unwrap(),
            "# Drop-in created for image '/var/lib/portables/demosquash.raw', do not edit.\n\
             \n\
             [Service]\n\
             RootImage=/var/lib/portables/demosquash.raw\n\
             Environment=PORTABLE=demosquash.raw\n\
             BindReadOnlyPaths=/etc/os-release:/run/host/os-release\n\
             LogExtraFields=PORTABLE=demosquash.raw\n"
        );
        assert_eq!(
            portable_dropin(
                253,
                "demosquash.service",
                &squash(&r, &[]),
                "/etc/os-release"
            )
            .unwrap(),
            portable_dropin(
                252,
                "demosquash.service",
                &squash(&r, &[]),
                "/etc/os-release"
            )
            .unwrap(),
        );
    }

    /// What real `portablectl attach` 257 wrote (shared/notes/systemd-versions.md).
    #[test]
    fn service_dropin_matches_portablectl_257() {
        let r = rel("ID=portabletest\nIMAGE_ID=demosquash\nIMAGE_VERSION=1\n");
        for v in 254..=260 {
            assert_eq!(
                portable_dropin(v, "demosquash.service", &squash(&r, &[]), "/etc/os-release")
                    .unwrap(),
                "# Drop-in created for image '/var/lib/portables/demosquash.raw', do not edit.\n\
                 \n\
                 [Service]\n\
                 RootImage=/var/lib/portables/demosquash.raw\n\
                 Environment=PORTABLE=demosquash.raw\n\
                 LogExtraFields=PORTABLE=demosquash.raw\n\
                 LogExtraFields=PORTABLE_NAME_AND_VERSION=demosquash_1\n",
                "{v}"
            );
        }
    }

    #[test]
    fn name_and_version_fields() {
        let nv = |text: &str| name_and_version(&rel(text), &PORTABLE_FIELDS);
        assert_eq!(nv("ID=debian\nVERSION_ID=12\n"), Some("debian_12".into()));
        assert_eq!(nv("ID=debian\nIMAGE_ID=app\n"), Some("app".into()));
        assert_eq!(
            nv("ID=arch\nBUILD_ID=rolling\n"),
            Some("arch_rolling".into())
        );
        assert_eq!(
            nv("ID=a\nVERSION_ID=1\nBUILD_ID=b\nIMAGE_VERSION=3\n"),
            Some("a_3".into())
        );
        assert_eq!(nv("VERSION_ID=12\n"), Some("12".into()));
        assert_eq!(nv("NAME=x\n"), None);
        // An empty field counts as present: it is not passed over for the next one.
        assert_eq!(
            nv("ID=debian\nIMAGE_ID=\nVERSION_ID=1\n"),
            Some("_1".into())
        );
        assert_eq!(nv("ID=debian\nIMAGE_VERSION=\n"), Some("debian_".into()));
        // The last assignment wins.
        assert_eq!(nv("ID=a\nID=b\n"), Some("b".into()));
        // Control characters: the field counts as absent, as from 257.
        assert_eq!(nv("ID=\"a\nb\"\nVERSION_ID=1\n"), Some("1".into()));
        assert_eq!(nv("ID=a\nVERSION_ID=\"1\x7f\"\n"), Some("a".into()));
        assert_eq!(nv("ID=\"a\tb\"\n"), None);
    }

    #[test]
    fn no_release_fields_no_line() {
        let r = rel("NAME=x\n");
        let text = portable_dropin(
            257,
            "demosquash.service",
            &squash(&r, &[]),
            "/etc/os-release",
        )
        .unwrap();
        assert!(
            text.ends_with("LogExtraFields=PORTABLE=demosquash.raw\n"),
            "{text}"
        );
    }

    #[test]
    fn other_units_get_the_marker_only() {
        let r = rel("ID=x\n");
        let img = DropinImage {
            path: "/var/lib/portables/d",
            root_file_name: "d",
            file_name: "d",
            kind: ImageKind::Directory,
            release: &r,
            extensions: &[],
        };
        for v in [252, 257] {
            assert_eq!(
                portable_dropin(v, "d.socket", &img, "/etc/os-release").unwrap(),
                "# Drop-in created for image '/var/lib/portables/d', do not edit.\n"
            );
        }
    }

    fn two_extensions<'a>(app: &'a OsRelease, conf: &'a OsRelease) -> [DropinExtension<'a>; 2] {
        [
            DropinExtension {
                path: "/var/lib/portables/app.raw",
                file_name: "app.raw",
                kind: ImageKind::Raw,
                release: app,
            },
            DropinExtension {
                path: "/srv/conf",
                file_name: "conf",
                kind: ImageKind::Directory,
                release: conf,
            },
        ]
    }

    #[test]
    fn extensions_252_every_service() {
        let base = rel("ID=debian\nVERSION_ID=12\n");
        let app = rel("ID=debian\nSYSEXT_ID=app\nSYSEXT_VERSION_ID=2\n");
        let conf = rel("ID=debian\n");
        let exts = two_extensions(&app, &conf);
        let img = DropinImage {
            path: "/var/lib/portables/base.raw",
            root_file_name: "base.raw",
            file_name: "app.raw",
            kind: ImageKind::Raw,
            release: &base,
            extensions: &exts,
        };
        assert_eq!(
            portable_dropin(252, "app.service", &img, "/etc/os-release").unwrap(),
            "# Drop-in created for image '/var/lib/portables/base.raw:/var/lib/portables/app.raw:/srv/conf', do not edit.\n\
             \n\
             [Service]\n\
             RootImage=/var/lib/portables/base.raw\n\
             Environment=PORTABLE=app.raw\n\
             BindReadOnlyPaths=/etc/os-release:/run/host/os-release\n\
             LogExtraFields=PORTABLE=app.raw\n\
             ExtensionImages=/var/lib/portables/app.raw\n\
             ExtensionDirectories=/srv/conf\n"
        );
        assert!(
            portable_dropin(252, "app.socket", &img, "/etc/os-release")
                .unwrap()
                .ends_with(":/srv/conf', do not edit.\n")
        );
    }

    #[test]
    fn extensions_254_255_257() {
        let base = rel("ID=debian\nIMAGE_ID=base\nIMAGE_VERSION=7\n");
        let app = rel(
            "ID=debian\nSYSEXT_ID=app\nSYSEXT_VERSION_ID=2\nCONFEXT_ID=appconf\nCONFEXT_VERSION_ID=\"3\x01\"\n",
        );
        let conf = rel("ID=debian\n");
        let exts = two_extensions(&app, &conf);
        let img = DropinImage {
            path: "/var/lib/portables/base.raw",
            root_file_name: "base.raw",
            file_name: "base.raw",
            kind: ImageKind::Raw,
            release: &base,
            extensions: &exts,
        };
        let head = "# Drop-in created for image '/var/lib/portables/base.raw:/var/lib/portables/app.raw:/srv/conf', do not edit.\n\
             \n\
             [Service]\n\
             RootImage=/var/lib/portables/base.raw\n\
             Environment=PORTABLE=base.raw\n\
             LogExtraFields=PORTABLE=base.raw\n\
             Environment=PORTABLE_ROOT=base.raw\n\
             LogExtraFields=PORTABLE_ROOT=base.raw\n\
             LogExtraFields=PORTABLE_ROOT_NAME_AND_VERSION=base_7\n\
             \n\
             ExtensionImages=/var/lib/portables/app.raw\n\
             LogExtraFields=PORTABLE_EXTENSION=app.raw\n\
             LogExtraFields=PORTABLE_EXTENSION_NAME_AND_VERSION=app_2\n";
        let tail = "\n\
             ExtensionDirectories=/srv/conf\n\
             LogExtraFields=PORTABLE_EXTENSION=conf\n";
        assert_eq!(
            portable_dropin(254, "base.service", &img, "/etc/os-release").unwrap(),
            format!("{head}{tail}")
        );
        // 255 adds the confext fields (here the version has a control character: dropped).
        assert_eq!(
            portable_dropin(255, "base.service", &img, "/etc/os-release").unwrap(),
            format!("{head}LogExtraFields=PORTABLE_EXTENSION_NAME_AND_VERSION=appconf\n{tail}")
        );
        assert_eq!(
            portable_dropin(257, "base.service", &img, "/etc/os-release").unwrap(),
            portable_dropin(255, "base.service", &img, "/etc/os-release").unwrap(),
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(xescape("/a:b\\c\n"), "/a\\x3ab\\x5cc\\x0a");
        assert_eq!(
            boundary::quote_word("PORTABLE=a b%.raw"),
            "\"PORTABLE=a b%%.raw\""
        );
        assert_eq!(boundary::quote_word("PORTABLE=x\"y"), "\"PORTABLE=x\\\"y\"");
        assert_eq!(
            boundary::quote_word("PORTABLE=foo_1.2.raw"),
            "PORTABLE=foo_1.2.raw"
        );
        let r = rel("ID=a b\nVERSION_ID=100%\n");
        let img = DropinImage {
            path: "/p/100%.raw",
            root_file_name: "100%.raw",
            file_name: "100%.raw",
            kind: ImageKind::Raw,
            release: &r,
            extensions: &[],
        };
        let text = portable_dropin(252, "x.service", &img, "/usr/lib/os-release").unwrap();
        assert!(text.contains("RootImage=/p/100%%.raw\n"));
        assert!(text.contains("BindReadOnlyPaths=/usr/lib/os-release:/run/host/os-release\n"));
        let text = portable_dropin(257, "x.service", &img, "/usr/lib/os-release").unwrap();
        assert!(
            text.ends_with("LogExtraFields=\"PORTABLE_NAME_AND_VERSION=a b_100%%\"\n"),
            "{text}"
        );
    }
}
