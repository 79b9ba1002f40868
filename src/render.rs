//! The text of the drop-ins the generator writes, byte for byte as `portablectl attach`
//! writes them.

use crate::image::open::ImageKind;

/// The systemd version whose `portablectl attach` output is reproduced. Later versions
/// write `20-portable.conf` differently (no `BindReadOnlyPaths=` line from 254 on, extra
/// `LogExtraFields=` lines), so rendering takes the version as a parameter.
pub const SYSTEMD_VERSION: u32 = 252;

/// What `20-portable.conf` needs to know about an image.
#[derive(Debug, Clone, Copy)]
pub struct DropinImage<'a> {
    /// Path as the booted system sees it.
    pub path: &'a str,
    /// The file name of the image the unit was found in (the root image's, or an
    /// extension's): the value of `PORTABLE=`.
    pub file_name: &'a str,
    pub kind: ImageKind,
    /// Extension images layered over the root, in order.
    pub extensions: &'a [DropinExtension<'a>],
}

/// An extension image as `20-portable.conf` names it.
#[derive(Debug, Clone, Copy)]
pub struct DropinExtension<'a> {
    pub path: &'a str,
    pub file_name: &'a str,
    pub kind: ImageKind,
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

/// A value for a setting that takes the rest of the line (`RootImage=`): only specifier
/// expansion needs undoing.
pub fn escape_specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

/// One word for a setting that splits its value into words and unquotes them
/// (`Environment=`, `LogExtraFields=`). Plain words are written as they are, as
/// portablectl does; anything the word splitter would change is double-quoted with C
/// escapes.
pub fn quote_word(s: &str) -> String {
    let s = escape_specifiers(s);
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    if plain {
        return s;
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('"');
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

/// `20-portable.conf` for `unit`. `host_os_release` is `/etc/os-release` if the host has
/// it, else `/usr/lib/os-release`.
pub fn portable_dropin(
    version: u32,
    unit: &str,
    image: &DropinImage,
    host_os_release: &str,
) -> String {
    let mut text = marker_line(image.path, image.extensions);
    if !unit.ends_with(".service") {
        return text;
    }
    let root = match image.kind {
        ImageKind::Directory => "RootDirectory=",
        ImageKind::Raw | ImageKind::Block => "RootImage=",
    };
    text.push_str("\n[Service]\n");
    text.push_str(&format!("{root}{}\n", escape_specifiers(image.path)));
    text.push_str(&format!(
        "Environment={}\n",
        quote_word(&format!("PORTABLE={}", image.file_name))
    ));
    if version < 254 {
        // From 254 on PID 1 provides /run/host/os-release itself.
        text.push_str(&format!(
            "BindReadOnlyPaths={host_os_release}:/run/host/os-release\n"
        ));
    }
    text.push_str(&format!(
        "LogExtraFields={}\n",
        quote_word(&format!("PORTABLE={}", image.file_name))
    ));
    // systemd 252 to 259 list extensions only in drop-ins of units that came from an
    // extension, so units of the root image do not see them (systemd issue #27307, fixed
    // in 260): every unit gets them here.
    for e in image.extensions {
        let setting = match e.kind {
            ImageKind::Directory => "ExtensionDirectories=",
            ImageKind::Raw | ImageKind::Block => "ExtensionImages=",
        };
        text.push_str(&format!("{setting}{}\n", escape_specifiers(e.path)));
        text.push_str(&format!(
            "LogExtraFields={}\n",
            quote_word(&format!("PORTABLE_EXTENSION={}", e.file_name))
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_dropin_matches_portablectl_252() {
        let img = DropinImage {
            path: "/var/lib/portables/demosquash.raw",
            file_name: "demosquash.raw",
            kind: ImageKind::Raw,
            extensions: &[],
        };
        assert_eq!(
            portable_dropin(252, "demosquash.service", &img, "/etc/os-release"),
            "# Drop-in created for image '/var/lib/portables/demosquash.raw', do not edit.\n\
             \n\
             [Service]\n\
             RootImage=/var/lib/portables/demosquash.raw\n\
             Environment=PORTABLE=demosquash.raw\n\
             BindReadOnlyPaths=/etc/os-release:/run/host/os-release\n\
             LogExtraFields=PORTABLE=demosquash.raw\n"
        );
    }

    #[test]
    fn other_units_get_the_marker_only() {
        let img = DropinImage {
            path: "/var/lib/portables/d",
            file_name: "d",
            kind: ImageKind::Directory,
            extensions: &[],
        };
        assert_eq!(
            portable_dropin(252, "d.socket", &img, "/etc/os-release"),
            "# Drop-in created for image '/var/lib/portables/d', do not edit.\n"
        );
    }

    #[test]
    fn extensions_are_listed_for_every_service() {
        let exts = [
            DropinExtension {
                path: "/var/lib/portables/app.raw",
                file_name: "app.raw",
                kind: ImageKind::Raw,
            },
            DropinExtension {
                path: "/srv/conf",
                file_name: "conf",
                kind: ImageKind::Directory,
            },
        ];
        let img = DropinImage {
            path: "/var/lib/portables/base.raw",
            file_name: "app.raw",
            kind: ImageKind::Raw,
            extensions: &exts,
        };
        assert_eq!(
            portable_dropin(252, "app.service", &img, "/etc/os-release"),
            "# Drop-in created for image '/var/lib/portables/base.raw:/var/lib/portables/app.raw:/srv/conf', do not edit.\n\
             \n\
             [Service]\n\
             RootImage=/var/lib/portables/base.raw\n\
             Environment=PORTABLE=app.raw\n\
             BindReadOnlyPaths=/etc/os-release:/run/host/os-release\n\
             LogExtraFields=PORTABLE=app.raw\n\
             ExtensionImages=/var/lib/portables/app.raw\n\
             LogExtraFields=PORTABLE_EXTENSION=app.raw\n\
             ExtensionDirectories=/srv/conf\n\
             LogExtraFields=PORTABLE_EXTENSION=conf\n"
        );
        assert!(
            portable_dropin(252, "app.socket", &img, "/etc/os-release")
                .ends_with(":/srv/conf', do not edit.\n")
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(xescape("/a:b\\c\n"), "/a\\x3ab\\x5cc\\x0a");
        assert_eq!(quote_word("PORTABLE=a b%.raw"), "\"PORTABLE=a b%%.raw\"");
        assert_eq!(quote_word("PORTABLE=x\"y"), "\"PORTABLE=x\\\"y\"");
        assert_eq!(quote_word("PORTABLE=foo_1.2.raw"), "PORTABLE=foo_1.2.raw");
        let img = DropinImage {
            path: "/p/100%.raw",
            file_name: "100%.raw",
            kind: ImageKind::Raw,
            extensions: &[],
        };
        let text = portable_dropin(252, "x.service", &img, "/usr/lib/os-release");
        assert!(text.contains("RootImage=/p/100%%.raw\n"));
        assert!(text.contains("BindReadOnlyPaths=/usr/lib/os-release:/run/host/os-release\n"));
    }
}
