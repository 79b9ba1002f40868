//! Name rules shared with systemd: image names, unit names, the default match prefix.

/// Unit types whose files are taken from an image (portable.c `unit_match`).
pub const PORTABLE_UNIT_TYPES: [&str; 5] = ["service", "socket", "target", "timer", "path"];

/// Every unit type systemd knows; used to validate names from `[Install]`.
const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// systemd's `UNIT_NAME_MAX` less the terminating NUL.
const UNIT_NAME_MAX: usize = 255;

/// `image_name_is_valid()`: a valid file name, no control characters, valid UTF-8 (the
/// caller holds a `str`), not starting with `.#`.
pub fn image_name_is_valid(name: &str) -> bool {
    filename_is_valid(name) && !name.chars().any(char::is_control) && !name.starts_with(".#")
}

/// A single path component that can name a file.
pub fn filename_is_valid(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && name.len() <= 255
}

/// The parts of a valid unit name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitName<'a> {
    /// Text before `@` (or before the type suffix).
    pub prefix: &'a str,
    /// `None` for a plain unit, `Some("")` for a template, `Some(i)` for an instance.
    pub instance: Option<&'a str>,
    /// The type suffix without the dot.
    pub kind: &'a str,
}

impl UnitName<'_> {
    /// Whether it is a template, `foo@.service`.
    pub fn is_template(&self) -> bool {
        self.instance == Some("")
    }
}

fn unit_char_is_valid(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\')
}

/// `unit_name_is_valid(…, UNIT_NAME_ANY)`, returning the parts of the name.
pub fn parse_unit_name(name: &str) -> Option<UnitName<'_>> {
    if name.is_empty() || name.len() > UNIT_NAME_MAX {
        return None;
    }
    let dot = name.rfind('.')?;
    let (stem, kind) = (&name[..dot], &name[dot + 1..]);
    if !UNIT_TYPES.contains(&kind) {
        return None;
    }
    let (prefix, instance) = match stem.find('@') {
        Some(at) => (&stem[..at], Some(&stem[at + 1..])),
        None => (stem, None),
    };
    if prefix.is_empty() || !prefix.chars().all(unit_char_is_valid) {
        return None;
    }
    if let Some(instance) = instance
        && !instance.chars().all(|c| c == '@' || unit_char_is_valid(c))
    {
        return None;
    }
    Some(UnitName {
        prefix,
        instance,
        kind,
    })
}

/// Whether systemd applies `NAME.d/` to units other than `name` itself: for every unit
/// `a-b-c.service` it also reads `a-b-.service.d/` and `a-.service.d/`
/// (`unit_file_find_dirs()` in src/shared/unit-file.c), so a unit named `systemd-.service`
/// would carry its drop-ins, and the image's root, into every `systemd-*.service` of the host.
pub fn dropins_apply_to_others(name: &str) -> bool {
    parse_unit_name(name).is_some_and(|n| n.instance.is_none() && n.prefix.ends_with('-'))
}

/// The template of an instance name (`getty@tty1.service` gives `getty@.service`).
pub fn template_of(name: &str) -> Option<String> {
    let n = parse_unit_name(name)?;
    match n.instance {
        Some(i) if !i.is_empty() => Some(format!("{}@.{}", n.prefix, n.kind)),
        _ => None,
    }
}

/// The instance `instance` of the template `template` (`foo@.service` + `bar` gives
/// `foo@bar.service`), if the result is a valid unit name.
pub fn instantiate(template: &str, instance: &str) -> Option<String> {
    let at = template.find('@')?;
    let dot = template.rfind('.')?;
    let name = format!("{}{}{}", &template[..=at], instance, &template[dot..]);
    parse_unit_name(&name).filter(|n| !n.is_template() && n.instance.is_some())?;
    Some(name)
}

/// The default match prefix of an image file name (portablectl's `extract_prefix`): cut at
/// the first `_`, else with `.raw.v`, `.raw` or `.v` removed; it must consist of
/// `[A-Za-z0-9.-]`.
pub fn default_prefix(image_file_name: &str) -> Result<String, String> {
    let prefix = match image_file_name.find('_') {
        Some(i) => &image_file_name[..i],
        None => [".raw.v", ".raw", ".v"]
            .iter()
            .find_map(|s| image_file_name.strip_suffix(s))
            .unwrap_or(image_file_name),
    };
    let valid = filename_is_valid(prefix)
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if valid {
        Ok(prefix.to_string())
    } else {
        Err(format!(
            "cannot derive a unit prefix from the image name '{image_file_name}' (it must start with [A-Za-z0-9.-] up to the first '_' or '.raw')"
        ))
    }
}

/// portable.c `prefix_match`: `unit` starts with `prefix` and the next character is `-`,
/// `.`, `@`, or the end.
pub fn prefix_matches(unit: &str, prefix: &str) -> bool {
    match unit.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with(['-', '.', '@']),
        None => false,
    }
}

/// Whether a unit from an image is taken: a portable unit type, matching one of `prefixes`.
pub fn unit_matches(unit: &str, prefixes: &[String]) -> bool {
    let Some(name) = parse_unit_name(unit) else {
        return false;
    };
    PORTABLE_UNIT_TYPES.contains(&name.kind) && prefixes.iter().any(|p| prefix_matches(unit, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert!(image_name_is_valid("foo_1.2.raw"));
        assert!(image_name_is_valid("foo bar"));
        assert!(!image_name_is_valid(""));
        assert!(!image_name_is_valid(".."));
        assert!(!image_name_is_valid(".#foo.raw"));
        assert!(!image_name_is_valid("a\nb"));
        assert!(!image_name_is_valid(&"a".repeat(256)));
    }

    #[test]
    fn unit_names() {
        let n = parse_unit_name("foo@.service").unwrap();
        assert!(n.is_template());
        assert_eq!(n.prefix, "foo");
        let n = parse_unit_name("foo@bar@baz.socket").unwrap();
        assert_eq!(n.instance, Some("bar@baz"));
        assert!(parse_unit_name("foo.service").unwrap().instance.is_none());
        for bad in [
            "",
            "foo",
            ".service",
            "@.service",
            "foo.bar",
            "a/b.service",
            "a b.service",
            "../x.service",
        ] {
            assert!(parse_unit_name(bad).is_none(), "{bad}");
        }
        assert!(parse_unit_name(&format!("{}.service", "a".repeat(247))).is_some());
        assert!(parse_unit_name(&format!("{}.service", "a".repeat(248))).is_none());
    }

    #[test]
    fn instances() {
        assert_eq!(
            instantiate("foo@.service", "bar").as_deref(),
            Some("foo@bar.service")
        );
        assert_eq!(instantiate("foo@.service", "a/b"), None);
        assert_eq!(instantiate("foo.service", "bar"), None);
    }

    #[test]
    fn prefixes() {
        for (image, prefix) in [
            ("foo_1.2.raw", "foo"),
            ("foo.raw", "foo"),
            ("foo", "foo"),
            ("foobar_47.11.raw", "foobar"),
            ("foo.raw.v", "foo"),
            ("foo.v", "foo"),
            ("foo-bar_3", "foo-bar"),
            ("foo.bar.raw", "foo.bar"),
        ] {
            assert_eq!(default_prefix(image).unwrap(), prefix, "{image}");
        }
        assert!(default_prefix("foo+x.raw").is_err());
        assert!(default_prefix("_1.raw").is_err());
        assert!(default_prefix("..raw").is_err());
    }

    #[test]
    fn matching() {
        let p = vec!["foo".to_string()];
        for yes in [
            "foo.service",
            "foo-x.service",
            "foo@.service",
            "foo.socket",
            "foo.bar.timer",
        ] {
            assert!(unit_matches(yes, &p), "{yes}");
        }
        for no in ["foobar.service", "foo.mount", "bar.service", "foo"] {
            assert!(!unit_matches(no, &p), "{no}");
        }
        assert!(unit_matches("app0.service", &["app0.service".to_string()]));
    }

    #[test]
    fn dropins_of_dash_names_and_templates() {
        assert!(dropins_apply_to_others("systemd-.service"));
        assert!(dropins_apply_to_others("foo-.socket"));
        assert!(dropins_apply_to_others("a-b-.timer"));
        assert!(!dropins_apply_to_others("systemd-foo.service"));
        assert!(!dropins_apply_to_others("foo-@.service"));
        assert!(!dropins_apply_to_others("foo@x-.service"));
        assert_eq!(
            template_of("getty@tty1.service").as_deref(),
            Some("getty@.service")
        );
        assert_eq!(template_of("getty@.service"), None);
        assert_eq!(template_of("getty.service"), None);
    }
}
