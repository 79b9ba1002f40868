//! systemd's preset policy (systemd.preset(5)), read only to warn: on a first boot,
//! systemd 252 applies presets to every unit file it finds, generated ones too, and so
//! enables in /etc what portables.d says not to enable.

use std::collections::BTreeMap;

use log::Level;

use crate::diagnostic::{Diagnostic, Diagnostics, Subject};
use crate::host_file::{self, HostReadError};
use crate::model::Attachment;
use crate::root::Root;
use crate::unit_syntax;

/// Preset directories, highest priority first.
pub const PRESET_DIRS: [&str; 4] = [
    "/etc/systemd/system-preset",
    "/run/systemd/system-preset",
    "/usr/local/lib/systemd/system-preset",
    "/usr/lib/systemd/system-preset",
];

/// What a preset rule says to do with the units it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `enable`: systemd enables the unit on a first boot.
    Enable,
    /// `disable`.
    Disable,
    /// `ignore`: left as it is.
    Ignore,
}

/// The rules of all preset files, in the order systemd applies them (file name order,
/// first match wins).
#[derive(Debug, Default)]
pub struct Presets {
    rules: Vec<(Action, String)>,
}

impl Presets {
    /// The rules of the preset files' `texts`, in the order given; lines that are not an
    /// action and a pattern are skipped.
    pub fn parse(texts: &[String]) -> Presets {
        let mut rules = Vec::new();
        for text in texts {
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                    continue;
                }
                let mut words = line.split_whitespace();
                let action = match words.next() {
                    Some("enable") => Action::Enable,
                    Some("disable") => Action::Disable,
                    Some("ignore") => Action::Ignore,
                    _ => continue,
                };
                if let Some(pattern) = words.next() {
                    rules.push((action, pattern.to_string()));
                }
            }
        }
        Presets { rules }
    }

    /// What the policy does with `unit`: the first matching rule, else enable.
    pub fn action(&self, unit: &str) -> Action {
        self.rules
            .iter()
            .find(|(_, pattern)| glob_match(pattern.as_bytes(), unit.as_bytes()))
            .map_or(Action::Enable, |(a, _)| *a)
    }
}

/// Longest preset file read: real ones are a few KiB.
const PRESET_FILE_MAX_BYTES: u64 = 1024 * 1024;
/// Most bytes read from all preset files together: the policy is read only to warn, and
/// thousands of files of a MiB each must not cost the boot gigabytes.
const PRESETS_TOTAL_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// On a first boot systemd 252 applies its preset policy to every unit file, generated ones
/// too, and enables them in /etc: an `Enable=no` is overridden unless the policy disables
/// the unit. The generator can not prevent that (it writes nothing outside its directory),
/// so it says so, once per unit concerned. `attached` tells whether a unit was planned.
pub fn warn_first_boot(
    root: &Root,
    attachments: &[Attachment],
    attached: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) {
    let presets = load(root, diags);
    for att in attachments.iter().filter(|a| !a.enable) {
        for unit in att.units.iter().filter(|u| attached(&u.name)) {
            let Ok((file, _)) = unit_syntax::parse(&unit.bytes) else {
                continue;
            };
            let has_install = ["WantedBy", "RequiredBy", "UpheldBy", "Alias"]
                .iter()
                .any(|k| file.list("Install", k).is_ok_and(|l| !l.is_empty()));
            if has_install && presets.action(&unit.name) == Action::Enable {
                let reason = format!(
                    "it has Enable=no, but on this first boot systemd applies its preset policy to generated units too and will enable it in /etc/systemd/system; add \"disable {}\" to a file in /etc/systemd/system-preset/ to keep it disabled",
                    unit.name
                );
                let message = format!(
                    "Unit {} of image {} has Enable=no, but on this first boot systemd applies its preset policy to generated units too and will enable it in /etc/systemd/system; add \"disable {}\" to a file in /etc/systemd/system-preset/ to keep it disabled.",
                    unit.name,
                    att.image.path.display(),
                    unit.name
                );
                let subject = Subject::Unit {
                    unit: unit.name.clone(),
                    image: att.image.found_at.clone(),
                };
                diags.push(Diagnostic::new(subject, Level::Warn, reason, message));
            }
        }
    }
}

/// Read the preset files below `root`: a file in an earlier directory replaces one of the
/// same name in a later one; all are applied in file-name order. A file that cannot be read
/// (a FIFO, a giant) is left out with one line saying so: the policy only decides a warning.
pub fn load(root: &Root, diags: &mut Diagnostics) -> Presets {
    let mut files: BTreeMap<String, std::path::PathBuf> = BTreeMap::new();
    for dir in PRESET_DIRS.iter().rev() {
        // Links resolve inside the root, as the booted system will follow them.
        let Ok(found) = root.resolve(std::path::Path::new(dir), true) else {
            continue;
        };
        let Ok(listing) = root.read_dir(&found) else {
            continue;
        };
        for entry in listing {
            let Ok(name) = String::from_utf8(entry.name) else {
                continue;
            };
            if name.ends_with(".preset") {
                let host_path = std::path::Path::new(dir).join(&name);
                files.insert(name, host_path);
            }
        }
    }
    let mut texts = Vec::new();
    let mut total = 0u64;
    for host_path in files.values() {
        let cap = PRESET_FILE_MAX_BYTES.min(PRESETS_TOTAL_MAX_BYTES - total);
        match host_file::read_capped_in(root, host_path, cap) {
            Ok(bytes) => {
                total += bytes.len() as u64;
                texts.push(String::from_utf8_lossy(&bytes).into_owned());
            }
            Err(e) if e.is_not_found() => {}
            Err(e @ HostReadError::TooLarge { .. }) if cap < PRESET_FILE_MAX_BYTES => {
                diags.push(Diagnostic::run(
                    Level::Warn,
                    format!(
                        "Cannot read preset file {}: {e}: the preset files hold more than {PRESETS_TOTAL_MAX_BYTES} bytes together, ignoring it and those after it.",
                        host_path.display()
                    ),
                ));
                break;
            }
            Err(e) => diags.push(Diagnostic::run(
                Level::Warn,
                format!(
                    "Cannot read preset file {}: {e}, ignoring it.",
                    host_path.display()
                ),
            )),
        }
    }
    Presets::parse(&texts)
}

/// fnmatch(3) without flags: `*`, `?`, `[…]` (ranges, `!`/`^` negation), `\` escapes.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => class(pattern, p, text[t]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(&c) => (c == text[t]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((sp, st))) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Match `c` against the bracket expression at `pattern[p]`; the index after it if it matches.
fn class(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    let mut i = p + 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        if lo == b']' && !first {
            break;
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pattern[i + 2];
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    (matched != negate).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, m) in [
            ("*", "a.service", true),
            ("app-*.service", "app-web.service", true),
            ("app-*.service", "app.service", false),
            ("a?c", "abc", true),
            ("[a-c]x", "bx", true),
            ("[!a-c]x", "bx", false),
            ("\\*", "*", true),
            ("*.s*e", "x.service", true),
            ("[", "[", false),
        ] {
            assert_eq!(glob_match(p.as_bytes(), t.as_bytes()), m, "{p} {t}");
        }
    }

    #[test]
    fn first_match_wins_and_default_is_enable() {
        let p = Presets::parse(&[
            "# vendor\nenable app-web.service\ndisable app-*\n".into(),
            "disable *\n".into(),
        ]);
        assert_eq!(p.action("app-web.service"), Action::Enable);
        assert_eq!(p.action("app-db.service"), Action::Disable);
        assert_eq!(p.action("other.service"), Action::Disable);
        assert_eq!(Presets::default().action("x.service"), Action::Enable);
    }
}
