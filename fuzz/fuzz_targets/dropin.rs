//! The boundary between what the generator decides and what PID 1 reads: arbitrary image
//! paths, file names, extension paths and os-release data are rendered into `20-portable.conf`
//! for every form of it, and whatever is written must read back, through the unit-file
//! parser, as exactly those values and nothing else; what cannot be is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portables_generator::image::open::ImageKind;
use portables_generator::os_release::{self, OsRelease};
use portables_generator::render::{DropinExtension, DropinImage, portable_dropin};
use portables_generator::unit_syntax;
use portables_generator_fuzz::panic_policy;

/// The settings a drop-in may hold; anything else read back is an injection.
const ALLOWED: [&str; 7] = [
    "RootImage",
    "RootDirectory",
    "Environment",
    "BindReadOnlyPaths",
    "LogExtraFields",
    "ExtensionImages",
    "ExtensionDirectories",
];

fuzz_target!(init: panic_policy(), |data: &[u8]| {
    let fields: Vec<String> = data
        .splitn(5, |&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let field = |i: usize| fields.get(i).map(String::as_str).unwrap_or("");
    let release = os_release::parse(field(4).as_bytes()).unwrap_or_default();
    let empty = OsRelease::default();
    let ext_paths: Vec<&str> = [field(2), field(3)].into_iter().filter(|p| !p.is_empty()).collect();
    let extensions: Vec<DropinExtension> = ext_paths
        .iter()
        .enumerate()
        .map(|(i, p)| DropinExtension {
            path: p,
            file_name: p.rsplit('/').next().unwrap_or(p),
            kind: if i == 0 { ImageKind::Raw } else { ImageKind::Directory },
            release: &release,
        })
        .collect();
    for kind in [ImageKind::Raw, ImageKind::Directory] {
        let image = DropinImage {
            path: field(0),
            root_file_name: field(0).rsplit('/').next().unwrap_or(""),
            file_name: field(1),
            kind,
            release: if kind == ImageKind::Raw { &release } else { &empty },
            extensions: &extensions,
        };
        for version in [252, 254, 255, 257, 260] {
            for unit in ["app.service", "app.socket"] {
                let Ok(text) = portable_dropin(version, unit, &image, "/etc/os-release") else {
                    continue;
                };
                check(&text, unit, &image);
            }
        }
    }
});

/// Read the drop-in back independently of the renderer's own check.
fn check(text: &str, unit: &str, image: &DropinImage) {
    let (file, _) = unit_syntax::parse(text.as_bytes()).expect("a written drop-in parses");
    if !unit.ends_with(".service") {
        assert!(file.sections.is_empty(), "{text}");
        return;
    }
    assert_eq!(file.sections.len(), 1, "{text}");
    assert_eq!(file.sections[0].name, "Service", "{text}");
    for e in &file.sections[0].entries {
        assert!(ALLOWED.contains(&e.key.as_str()), "{text}");
    }
    let root = match image.kind {
        ImageKind::Directory => "RootDirectory",
        _ => "RootImage",
    };
    let values = file.values("Service", root);
    assert_eq!(values.len(), 1, "{text}");
    assert_eq!(values[0].replace("%%", "%"), image.path, "{text}");
    let ext_count = file.values("Service", "ExtensionImages").len()
        + file.values("Service", "ExtensionDirectories").len();
    assert_eq!(ext_count, image.extensions.len(), "{text}");
}
