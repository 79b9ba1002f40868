//! Parsing one `portables.d` file: an image's `NAME.conf`, or the `_*.conf` global files in
//! order, with the messages about each file capped.

use std::path::{Path, PathBuf};

use log::Level;

use super::keys::{self, Fallback, Section};
use super::values::shown;
use super::{Defaults, ImageConfig, about};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::unit_syntax::{self, Entry, ParseError, UnitFile};

/// Most lines logged about one file, and most invalid values named in the reason an image
/// is refused for; the rest are counted: a file of 100 000 unknown keys must not become
/// 100 000 log lines.
const MAX_LINES_PER_FILE: usize = 5;

/// The diagnostics about one file: the first [`MAX_LINES_PER_FILE`], then how many more.
struct FileDiagnostics<'a> {
    file: &'a Path,
    kept: Vec<Diagnostic>,
    more: usize,
    /// The most severe level among those not kept.
    more_level: Level,
}

impl<'a> FileDiagnostics<'a> {
    fn new(file: &'a Path) -> FileDiagnostics<'a> {
        FileDiagnostics {
            file,
            kept: Vec::new(),
            more: 0,
            more_level: Level::Trace,
        }
    }

    /// A line about the file, at `line` if there is one. `text` is made only if it is kept:
    /// counting the rest stays cheap.
    fn push(&mut self, level: Level, line: Option<usize>, text: impl FnOnce() -> String) {
        if self.kept.len() < MAX_LINES_PER_FILE {
            self.kept.push(about(self.file, line, level, text()));
        } else {
            self.more += 1;
            self.more_level = self.more_level.min(level);
        }
    }

    fn finish(self) -> Diagnostics {
        let mut all = Diagnostics::default();
        all.extend(self.kept);
        if self.more > 0 {
            all.push(about(
                self.file,
                None,
                self.more_level,
                format!("{} more messages about this file not shown.", self.more),
            ));
        }
        all
    }
}

/// Parse one `NAME.conf`. `file` is the host path used in messages.
///
/// The error is the reason to refuse the image: every invalid value, naming file, line, key and
/// value, joined by `; `. The diagnostics are warnings that do not invalidate anything.
pub fn parse_image_config(
    name: &str,
    file: &Path,
    bytes: &[u8],
) -> (Result<ImageConfig, String>, Diagnostics) {
    let mut diagnostics = FileDiagnostics::new(file);
    let unit = match parse_file(bytes, &mut diagnostics) {
        Ok(unit) => unit,
        Err(e) => {
            let reason = format!("{}:{}: {}", file.display(), e.line, e.message);
            return (Err(reason), diagnostics.finish());
        }
    };
    warn_unknown_sections(
        &unit,
        Section::Portable,
        "global defaults belong in a file named _*.conf",
        &mut diagnostics,
    );

    let mut config = ImageConfig {
        name: name.to_string(),
        file: file.to_path_buf(),
        ..ImageConfig::default()
    };
    let mut errors = Vec::new();
    let mut more_errors = 0usize;
    for entry in section_entries(&unit, Section::Portable) {
        let assigned =
            keys::find(&entry.key).and_then(|k| k.assign_image(&mut config, &entry.value));
        let Some(result) = assigned else {
            warn_unknown_key(entry, Section::Portable, &mut diagnostics);
            continue;
        };
        match result {
            Err(why) if errors.len() < MAX_LINES_PER_FILE => {
                let invalid = invalid(entry, &why);
                errors.push(format!("{}:{}: {invalid}", file.display(), entry.line));
            }
            Err(_) => more_errors += 1,
            Ok(()) => {}
        }
    }
    if more_errors > 0 {
        errors.push(format!("and {more_errors} more invalid values"));
    }
    if errors.is_empty() {
        (Ok(config), diagnostics.finish())
    } else {
        (Err(errors.join("; ")), diagnostics.finish())
    }
}

/// Parse the `_*.conf` files, in the order given (file-name order); a later assignment wins.
///
/// An invalid value here is reported at error level and resets its key to the built-in default,
/// as an empty assignment would: an invalid value is an error for the image it concerns, and a
/// global key concerns every image, so refusing would take down every image for one typo.
pub fn parse_defaults(files: &[(PathBuf, Vec<u8>)]) -> (Defaults, Diagnostics) {
    let mut defaults = Defaults::default();
    let mut diagnostics = Diagnostics::default();
    for (file, bytes) in files {
        let mut lines = FileDiagnostics::new(file);
        let unit = match parse_file(bytes, &mut lines) {
            Ok(unit) => unit,
            Err(e) => {
                lines.push(Level::Error, Some(e.line), || {
                    format!("{}, ignoring the file.", e.message)
                });
                diagnostics.extend(lines.finish());
                continue;
            }
        };
        warn_unknown_sections(
            &unit,
            Section::Defaults,
            "settings of one image belong in NAME.conf",
            &mut lines,
        );
        for entry in section_entries(&unit, Section::Defaults) {
            let assigned =
                keys::find(&entry.key).and_then(|k| k.assign_default(&mut defaults, &entry.value));
            match assigned {
                None => warn_unknown_key(entry, Section::Defaults, &mut lines),
                Some(Ok(())) => {}
                Some(Err(Fallback { why, default })) => {
                    lines.push(Level::Error, Some(entry.line), || {
                        format!("{}, using the default {default}.", invalid(entry, &why))
                    });
                }
            }
        }
        diagnostics.extend(lines.finish());
    }
    (defaults, diagnostics)
}

/// Parse with unit-file syntax, turning its warnings into diagnostics; the error is a
/// whole-file refusal.
fn parse_file(bytes: &[u8], diagnostics: &mut FileDiagnostics) -> Result<UnitFile, ParseError> {
    let (unit, warnings) = unit_syntax::parse(bytes)?;
    for w in warnings {
        diagnostics.push(Level::Warn, Some(w.line), || w.message);
    }
    Ok(unit)
}

fn section_entries(unit: &UnitFile, section: Section) -> impl Iterator<Item = &Entry> {
    unit.section(section.name())
        .into_iter()
        .flat_map(|s| &s.entries)
}

fn warn_unknown_sections(
    unit: &UnitFile,
    known: Section,
    hint: &str,
    diagnostics: &mut FileDiagnostics,
) {
    for section in &unit.sections {
        // systemd ignores X- sections silently too, so that extensions need no warning.
        if section.name == known.name() || section.name.starts_with("X-") {
            continue;
        }
        diagnostics.push(Level::Warn, None, || {
            let hint = if Section::named(&section.name).is_some() {
                format!(" ({hint})")
            } else {
                String::new()
            };
            format!(
                "unknown section [{}]{hint}, ignoring.",
                shown(&section.name)
            )
        });
    }
}

fn warn_unknown_key(entry: &Entry, section: Section, diagnostics: &mut FileDiagnostics) {
    if entry.key.starts_with("X-") {
        return;
    }
    diagnostics.push(Level::Warn, Some(entry.line), || {
        format!(
            "unknown key {}= in section [{}], ignoring.",
            shown(&entry.key),
            section.name()
        )
    });
}

/// What is wrong with an assignment, without the file and line.
fn invalid(entry: &Entry, why: &str) -> String {
    format!("invalid {}={}: {why}", entry.key, shown(&entry.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{XorShift, assert_linear, index_below, low_byte, repeated};

    fn parse_ok(text: &str) -> (ImageConfig, Vec<Diagnostic>) {
        let (r, m) = parse_image_config(
            "foo",
            Path::new("/etc/portables.d/foo.conf"),
            text.as_bytes(),
        );
        (r.expect("valid"), m.into_iter().collect())
    }

    fn parse_err(text: &str) -> String {
        let (r, _) = parse_image_config(
            "foo",
            Path::new("/etc/portables.d/foo.conf"),
            text.as_bytes(),
        );
        r.expect_err("invalid")
    }

    fn texts(diagnostics: &[Diagnostic], level: Level) -> Vec<String> {
        diagnostics
            .iter()
            .filter(|d| d.level == level)
            .map(|d| d.message.clone())
            .collect()
    }

    fn defaults_of(files: &[(&str, &str)]) -> (Defaults, Vec<Diagnostic>) {
        let files: Vec<(PathBuf, Vec<u8>)> = files
            .iter()
            .map(|(f, t)| (PathBuf::from(f), t.as_bytes().to_vec()))
            .collect();
        let (d, m) = parse_defaults(&files);
        (d, m.into_iter().collect())
    }

    #[test]
    fn every_portable_key() {
        let (c, m) = parse_ok(
            "[Portable]\n\
             Image=/srv//images/./foo_1.raw\n\
             Extensions=/var/lib/extensions/a.raw \"/srv/b c.raw\"\n\
             Extensions=/srv/d.raw\n\
             Match=foo foo-web\n\
             Match=foo@\n\
             Profile=strict\n\
             Enable=off\n\
             Attach=YES\n\
             RequireVerity=1\n\
             AllowWritableByOthers=no\n",
        );
        assert!(m.is_empty(), "{m:?}");
        assert_eq!(
            c,
            ImageConfig {
                name: "foo".into(),
                file: "/etc/portables.d/foo.conf".into(),
                image: Some("/srv/images/foo_1.raw".into()),
                extensions: vec![
                    "/var/lib/extensions/a.raw".into(),
                    "/srv/b c.raw".into(),
                    "/srv/d.raw".into()
                ],
                matches: Some(vec!["foo".into(), "foo-web".into(), "foo@".into()]),
                profile: Some("strict".into()),
                enable: Some(false),
                attach: Some(true),
                require_verity: Some(true),
                allow_writable_by_others: Some(false),
            }
        );
    }

    #[test]
    fn empty_assignments_reset() {
        let (c, _) = parse_ok(
            "[Portable]\n\
             Image=/a.raw\nImage=\n\
             Extensions=/x.raw /y.raw\nExtensions=\nExtensions=/z.raw\n\
             Match=a b\nMatch=\n\
             Profile=strict\nProfile=\n\
             Enable=no\nEnable=\n\
             Attach=no\nAttach=\n\
             RequireVerity=yes\nRequireVerity=\n",
        );
        assert_eq!(c.image, None);
        assert_eq!(c.extensions, vec![PathBuf::from("/z.raw")]);
        assert_eq!(c.matches, None);
        assert_eq!(c.profile, None);
        assert_eq!((c.enable, c.attach, c.require_verity), (None, None, None));

        let (c, _) = parse_ok("[Portable]\nMatch=a\nMatch=\nMatch=b\n");
        assert_eq!(c.matches, Some(vec!["b".to_string()]));
    }

    #[test]
    fn bad_values() {
        for (line, why) in [
            ("Image=relative.raw", "not an absolute path"),
            ("Image=/srv/../etc/foo.raw", "not normalized"),
            ("Image=/", "root directory"),
            ("Image=//./", "root directory"),
            ("Image=\"/srv/foo.raw\"", "not an absolute path"),
            ("Image=/a\u{1}b", "control characters"),
            (
                "Extensions=/a.raw relative.raw",
                "'relative.raw': not an absolute path",
            ),
            ("Extensions=/a.raw /b/../c.raw", "not normalized"),
            ("Extensions=\"/a.raw", "unbalanced quotes"),
            ("Extensions=\"\"", "not an absolute path"),
            ("Match=foo/bar", "not a unit name prefix"),
            ("Match=foo bar+baz", "'bar+baz'"),
            ("Match=..", "not a unit name prefix"),
            ("Match=foo 'bar", "unbalanced quotes"),
            ("Profile=../strict", "not a valid profile name"),
            ("Profile=a/b", "not a valid profile name"),
            ("Profile=..", "not a valid profile name"),
            ("Enable=maybe", "not a boolean"),
            ("Attach=2", "not a boolean"),
            ("RequireVerity=sure", "not a boolean"),
        ] {
            let reason = parse_err(&format!("[Portable]\n{line}\n"));
            let (key, value) = line.split_once('=').unwrap();
            let expected = format!("/etc/portables.d/foo.conf:2: invalid {key}={value}: ");
            assert!(reason.starts_with(&expected), "{line}: {reason}");
            assert!(reason.contains(why), "{line}: {reason}");
        }
        let long = format!("/{}", "a".repeat(256));
        assert!(parse_err(&format!("[Portable]\nImage={long}\n")).contains("longer than 255"));
        let long = "/aaaaaaaaa".repeat(410);
        assert!(parse_err(&format!("[Portable]\nImage={long}\n")).contains("longer than 4095"));
    }

    #[test]
    fn every_bad_value_is_in_the_reason() {
        let reason = parse_err("[Portable]\nEnable=maybe\nAttach=no\nProfile=a/b\n");
        assert_eq!(
            reason,
            "/etc/portables.d/foo.conf:2: invalid Enable=maybe: not a boolean; \
             /etc/portables.d/foo.conf:4: invalid Profile=a/b: not a valid profile name (a file name, without '/')"
        );
        // A later valid assignment does not make up for an invalid one.
        parse_err("[Portable]\nEnable=maybe\nEnable=yes\n");
    }

    #[test]
    fn syntax_errors_invalidate_the_file() {
        let reason = parse_err("[Portable]\nEnable=no\n[Portable\n");
        assert_eq!(
            reason,
            "/etc/portables.d/foo.conf:3: Invalid section header '[Portable'"
        );
        let (r, _) = parse_image_config(
            "foo",
            Path::new("/etc/portables.d/foo.conf"),
            b"[Portable]\nProfile=\xff\n",
        );
        assert!(r.unwrap_err().contains(":2: "));

        let (d, m) = defaults_of(&[
            ("/etc/portables.d/_a.conf", "[Defaults]\nEnable=no\n"),
            (
                "/etc/portables.d/_b.conf",
                "[Defaults]\nProfile=strict\n[Oops\n",
            ),
        ]);
        assert!(!d.enable);
        assert_eq!(d.profile, "default");
        assert_eq!(
            texts(&m, Level::Error),
            vec!["/etc/portables.d/_b.conf:3: Invalid section header '[Oops', ignoring the file."]
        );
    }

    #[test]
    fn unknown_sections_and_keys_warn_x_keys_do_not() {
        let (c, m) = parse_ok(
            "Stray=1\n[Portable]\nFoo=bar\nX-Vendor=1\nEnable=no\nNoEquals\n\
             [Service]\nExecStart=/bin/true\n[X-Extra]\nA=b\n[Defaults]\nEnable=no\n",
        );
        assert_eq!(c.enable, Some(false));
        assert_eq!(
            texts(&m, Level::Warn),
            vec![
                "/etc/portables.d/foo.conf:1: Assignment outside of section. Ignoring.",
                "/etc/portables.d/foo.conf:6: Missing '=', ignoring line.",
                "/etc/portables.d/foo.conf: unknown section [Service], ignoring.",
                "/etc/portables.d/foo.conf: unknown section [Defaults] (global defaults belong in a file named _*.conf), ignoring.",
                "/etc/portables.d/foo.conf:3: unknown key Foo= in section [Portable], ignoring.",
            ]
        );

        let (d, m) = defaults_of(&[(
            "/etc/portables.d/_site.conf",
            "[Defaults]\nBogus=1\nX-Mine=2\n[Portable]\nEnable=no\n",
        )]);
        assert_eq!(d, Defaults::default());
        assert_eq!(
            texts(&m, Level::Warn),
            vec![
                "/etc/portables.d/_site.conf: unknown section [Portable] (settings of one image belong in NAME.conf), ignoring.",
                "/etc/portables.d/_site.conf:2: unknown key Bogus= in section [Defaults], ignoring.",
            ]
        );
    }

    #[test]
    fn a_flood_of_warnings_is_a_few_lines_and_a_count() {
        let text = repeated(1024 * 1024, "[Portable]\nEnable=no\n", |i| {
            format!("K{i:06}=x\n")
        });
        let keys = (text.len() - 21) / 10;
        let (c, m) = parse_ok(std::str::from_utf8(&text).unwrap());
        assert_eq!(c.enable, Some(false));
        assert_eq!(m.len(), MAX_LINES_PER_FILE + 1, "{m:?}");
        assert_eq!(
            m[0].message,
            "/etc/portables.d/foo.conf:3: unknown key K000000= in section [Portable], ignoring."
        );
        assert_eq!(
            m[MAX_LINES_PER_FILE].message,
            format!(
                "/etc/portables.d/foo.conf: {} more messages about this file not shown.",
                keys - MAX_LINES_PER_FILE
            )
        );
        assert_eq!(m[MAX_LINES_PER_FILE].level, Level::Warn);

        // Sections and syntax warnings count together.
        let text = repeated(64 * 1024, "[Portable]\nNoEquals\n", |i| {
            format!("[S{i:06}]\n")
        });
        let (_, m) = parse_ok(std::str::from_utf8(&text).unwrap());
        assert_eq!(m.len(), MAX_LINES_PER_FILE + 1);
        assert!(m[0].message.ends_with(":2: Missing '=', ignoring line."));
        assert!(
            m[1].message
                .ends_with(": unknown section [S000000], ignoring.")
        );

        // Invalid values: the image is refused for the first few, the rest counted.
        let text = repeated(64 * 1024, "[Portable]\n", |_| "Enable=maybe\n".into());
        let reason = parse_err(std::str::from_utf8(&text).unwrap());
        assert_eq!(
            reason.matches("invalid Enable=maybe").count(),
            MAX_LINES_PER_FILE
        );
        assert!(reason.ends_with(" more invalid values"), "{reason}");

        // In a defaults file, errors are capped with the warnings, and the count is an error.
        let text = repeated(64 * 1024, "[Defaults]\nBogus=1\n", |_| {
            "Enable=maybe\n".into()
        });
        let (d, m) = defaults_of(&[(
            "/etc/portables.d/_site.conf",
            std::str::from_utf8(&text).unwrap(),
        )]);
        assert_eq!(d, Defaults::default());
        assert_eq!(m.len(), MAX_LINES_PER_FILE + 1);
        assert_eq!(m[0].level, Level::Warn);
        assert_eq!(m[MAX_LINES_PER_FILE].level, Level::Error);
    }

    #[test]
    fn linear_in_sections_and_keys() {
        assert_linear(
            "portables.d file with distinct sections",
            |n| repeated(n, "[Portable]\n", |i| format!("[S{i:06}]\n")),
            |b| {
                let (_, m) = parse_image_config("foo", Path::new("/etc/portables.d/foo.conf"), b);
                assert!(m.len() <= MAX_LINES_PER_FILE + 1);
            },
        );
        assert_linear(
            "portables.d file with unknown keys",
            |n| repeated(n, "[Portable]\n", |i| format!("K{i:06}=x\n")),
            |b| {
                let (_, m) = parse_image_config("foo", Path::new("/etc/portables.d/foo.conf"), b);
                assert!(m.len() <= MAX_LINES_PER_FILE + 1);
            },
        );
    }

    #[test]
    fn every_defaults_key() {
        let (d, m) = defaults_of(&[(
            "/etc/portables.d/_site.conf",
            "[Defaults]\nProfile=strict\nEnable=no\nAttachOnlyConfigured=yes\nRequireVerity=on\nAllowWritableByOthers=yes\n",
        )]);
        assert!(m.is_empty(), "{m:?}");
        assert_eq!(
            d,
            Defaults {
                profile: "strict".into(),
                enable: false,
                attach_only_configured: true,
                require_verity: true,
                allow_writable_by_others: true,
            }
        );
    }

    #[test]
    fn invalid_defaults_fall_back_to_the_default() {
        let (d, m) = defaults_of(&[
            (
                "/etc/portables.d/_a.conf",
                "[Defaults]\nEnable=no\nProfile=strict\nAttachOnlyConfigured=yes\n",
            ),
            (
                "/etc/portables.d/_b.conf",
                "[Defaults]\nEnable=maybe\nProfile=a/b\nAttachOnlyConfigured=2\nRequireVerity=x\n",
            ),
        ]);
        assert_eq!(d, Defaults::default());
        assert_eq!(
            texts(&m, Level::Error),
            vec![
                "/etc/portables.d/_b.conf:2: invalid Enable=maybe: not a boolean, using the default yes.",
                "/etc/portables.d/_b.conf:3: invalid Profile=a/b: not a valid profile name (a file name, without '/'), using the default 'default'.",
                "/etc/portables.d/_b.conf:4: invalid AttachOnlyConfigured=2: not a boolean, using the default no.",
                "/etc/portables.d/_b.conf:5: invalid RequireVerity=x: not a boolean, using the default no.",
            ]
        );
        // A valid assignment after the invalid one still applies.
        let (d, _) = defaults_of(&[("/x/_a.conf", "[Defaults]\nEnable=maybe\nEnable=no\n")]);
        assert!(!d.enable);
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let value = "x".repeat(10_000);
        let reason = parse_err(&format!("[Portable]\nEnable={value}\n"));
        assert!(reason.len() < 400, "{}", reason.len());
        assert!(reason.contains('…'));
    }

    #[test]
    fn never_panics_on_random_input() {
        // Pieces the parser treats specially, so random inputs reach its interesting states.
        let pieces: &[&[u8]] = &[
            b"[Portable]\n",
            b"[Defaults]\n",
            b"Image=",
            b"Extensions=",
            b"Match=",
            b"Profile=",
            b"Enable=",
            b"Attach=",
            b"RequireVerity=",
            b"X-",
            b"/",
            b"..",
            b".",
            b"\"",
            b"'",
            b"\\\n",
            b"\n",
            b"\r",
            b"\0",
            b" ",
            b"=",
            b"#",
            b"yes",
            b"a",
            b"\xff",
            b"\xc3\xa9",
            b"\xe2\x80\xa6",
            b"\x01",
        ];
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let file = Path::new("/etc/portables.d/fuzz.conf");
        for _ in 0..4000 {
            let n = (rng.next() % 40) as usize;
            let mut input = Vec::new();
            for _ in 0..n {
                let r = rng.next();
                if r.is_multiple_of(5) {
                    input.push(low_byte(r >> 8));
                } else {
                    let i = index_below(r >> 8, pieces.len());
                    input.extend_from_slice(pieces[i]);
                }
            }
            let _ = parse_image_config("fuzz", file, &input);
            let _ = parse_defaults(&[(file.to_path_buf(), input.clone())]);
            let _ = crate::config::enabled_by_cmdline(&String::from_utf8_lossy(&input));
        }
    }
}
