//! Enablement: the symlinks `systemctl enable` would make from a unit's `[Install]`
//! section, made by the generator itself because generated units cannot be enabled.
//!
//! What follows systemd's own code, for the version the generator writes for
//! (`src/shared/install.c`: `unit_file_load()` reads the section, `install_info_apply()`
//! makes the links; `src/shared/unit-file.c` checks aliases; `install_name_printf()` expands
//! specifiers). The differences from `systemctl enable` are listed in the README
//! ("Enablement").

use std::path::PathBuf;

use crate::names::{instantiate, parse_unit_name, template_of};
use crate::unit_syntax::{UnitFile, Warning, split_words_partial};

/// A symlink to create, relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    /// Where the link is made, e.g. `multi-user.target.wants/foo.service`.
    pub path: PathBuf,
    /// What it points at, as `systemctl enable` writes it (`../foo.service` from a
    /// `.wants/` directory).
    pub target: PathBuf,
    /// `true` for `Alias=` names, which may collide with other units.
    pub is_alias: bool,
}

/// What the `[Install]` section of `unit` asks for. Problems are returned as messages
/// ("WantedBy=x: not a valid unit name") and the offending entry is left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Enablement {
    /// The links to make.
    pub links: Vec<Link>,
    /// One message per entry left out, as `systemctl enable` fails on it while making the
    /// other links.
    pub problems: Vec<String>,
    /// What systemctl warns of while reading the section, by line: the entry is ignored.
    pub warnings: Vec<Warning>,
    /// Why the unit is not enabled at all: systemctl refuses to load such a section
    /// (an invalid `Also=` or `DefaultInstance=`).
    pub refused: Option<String>,
    /// Set when a template without `DefaultInstance=` is wanted by a plain unit: nothing
    /// to enable there, by design (`systemctl enable` asks for an instance).
    pub template_without_instance: bool,
}

/// A host specifier (`%H`, `%m`, `%o`, …: systemd's `COMMON_SYSTEM_SPECIFIERS` and
/// `COMMON_CREDS_SPECIFIERS`) as the host gives it: `None` for a letter that is none of
/// them, else its value or why it has none.
pub type HostSpecifiers<'a> = &'a dyn Fn(char) -> Option<Result<String, String>>;

/// The dependency keys and the directory suffix each makes, and the first systemd version
/// whose `systemctl` reads the key (`UpheldBy=` came with 254; 252's PID 1 reads only
/// `.wants/` and `.requires/`).
const DEPENDENCIES: [(&str, &str, u32); 3] = [
    ("WantedBy", "wants", 0),
    ("RequiredBy", "requires", 0),
    ("UpheldBy", "upholds", 254),
];

/// The longest name `expand` builds: systemd's `UNIT_NAME_MAX` (`specifier_printf()` fails
/// past it); a longer one is no unit name anyway.
const EXPANDED_MAX: usize = 256;

/// The unit being enabled, as `install_name_printf()` sees it.
struct Names<'a> {
    unit: &'a str,
    prefix: &'a str,
    /// The unit's own instance (`None` for a plain unit, empty for a template).
    instance: Option<&'a str>,
    /// A template's `DefaultInstance=` as read so far.
    default_instance: Option<String>,
}

impl Names<'_> {
    /// `%n`: a template with a default instance is named as that instance.
    fn name(&self) -> String {
        match (self.instance, &self.default_instance) {
            (Some(""), Some(d)) => instantiate(self.unit, d).unwrap_or_else(|| self.unit.into()),
            _ => self.unit.into(),
        }
    }

    /// `%N`: the name without its type suffix, a template's default instance filled in.
    fn prefix_and_instance(&self) -> String {
        match (self.instance, &self.default_instance) {
            (None, _) => self.prefix.into(),
            (Some(""), Some(d)) => format!("{}@{d}", self.prefix),
            (Some(i), _) => format!("{}@{i}", self.prefix),
        }
    }
}

/// `install_name_printf()`: `value` with its specifiers expanded for `names`, at most
/// [`EXPANDED_MAX`] bytes (so `%n` a million times over costs no memory). An unknown
/// letter or digit after `%` is an error; any other character keeps its `%`, and so does a
/// `%` at the end (`specifier_printf()`).
fn expand(value: &str, names: &Names, host: HostSpecifiers) -> Result<String, String> {
    let mut out = String::new();
    // Whether a specifier added to the text, for the message.
    let mut expanded = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if out.len() > EXPANDED_MAX {
            return Err(too_long(expanded));
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            out.push('%');
            break;
        };
        expanded = true;
        match spec {
            '%' => out.push('%'),
            'n' => out.push_str(&names.name()),
            'N' => out.push_str(&names.prefix_and_instance()),
            'p' => out.push_str(names.prefix),
            'i' => out.push_str(match names.instance {
                Some("") | None => names.default_instance.as_deref().unwrap_or(""),
                Some(i) => i,
            }),
            'j' => out.push_str(names.prefix.rsplit('-').next().unwrap_or(names.prefix)),
            c if c.is_ascii_alphanumeric() => match host(c) {
                Some(Ok(v)) => out.push_str(&v),
                Some(Err(why)) => return Err(format!("%{c}: {why}")),
                None => return Err(format!("unknown specifier %{c}")),
            },
            other => {
                out.push('%');
                out.push(other);
            }
        }
    }
    if out.len() > EXPANDED_MAX {
        return Err(too_long(expanded));
    }
    Ok(out)
}

/// Why a name longer than any unit name is refused: said as for any invalid name when the
/// text was that long already, else that the specifiers made it so.
fn too_long(expanded: bool) -> String {
    if expanded {
        format!("expands to more than {EXPANDED_MAX} bytes, too long for a unit name")
    } else {
        "not a valid unit name".into()
    }
}

/// `extract_first_word(…, 0)`, as `Also=` is split: words between whitespace, quotes kept,
/// a backslash taking the next character as it is; a backslash at the end is an error.
fn split_plain(value: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\\' => match chars.next() {
                Some(next) => word.get_or_insert_default().push(next),
                None => return Err("a backslash at the end".into()),
            },
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// `unit_symlink_name_compatible()`: whether `link`, in a `.wants/` or `.requires/`
/// directory, may stand for `unit`.
fn symlink_name_compatible(link: &str, unit: &str, instance_propagation: bool) -> bool {
    let Some(l) = parse_unit_name(link) else {
        return false;
    };
    // The unit's own name (a template's only in a template's directory, whose instance is
    // given on the way), or an instance standing for its template.
    (link == unit && (!l.is_template() || instance_propagation))
        || template_of(link).as_deref() == Some(unit)
}

/// `unit_validate_alias_symlink_or_warn()`: why the alias `alias` may not stand for
/// `unit`, `Ok(false)` for an alias to itself (quietly ignored).
fn alias_is_valid(alias: &str, unit: &str) -> Result<bool, String> {
    let a = parse_unit_name(alias).ok_or("not a valid unit name")?;
    let u = parse_unit_name(unit).ok_or("not a valid unit name")?;
    // Portable units are all of types that may be aliased and templated; the alias
    // must be one of them too.
    if !matches!(
        a.kind,
        "service" | "socket" | "target" | "timer" | "path" | "device"
    ) {
        return Err(format!("units of type .{} cannot be aliased", a.kind));
    }
    if a.instance.is_some() && a.kind == "device" {
        return Err("a .device alias cannot be a template or instance".into());
    }
    if alias == unit {
        return Ok(false);
    }
    let kind_of = |n: &crate::names::UnitName| match n.instance {
        None => 0,
        Some("") => 1,
        Some(_) => 2,
    };
    let (ak, uk) = (kind_of(&a), kind_of(&u));
    if !(ak == uk || (ak == 2 && uk == 1)) {
        return Err(
            "an alias of a plain unit must be plain, of a template a template or an instance"
                .into(),
        );
    }
    if uk == 2 && a.instance != u.instance {
        return Err("an alias of an instance must have the same instance".into());
    }
    if a.kind != u.kind {
        return Err(format!("not of the unit's type .{}", u.kind));
    }
    Ok(true)
}

/// The `[Install]` assignments as systemd's `unit_file_load()` keeps them.
#[derive(Default)]
struct Section {
    aliases: Vec<String>,
    dependencies: [Vec<String>; 3],
}

/// Read the `[Install]` section of `names.unit` as `unit_file_load()` of systemd `systemd`
/// does, its `DefaultInstance=` into `names`; warnings into `out`. `Err`: systemctl refuses
/// the unit.
fn read_section(
    names: &mut Names,
    file: &UnitFile,
    systemd: u32,
    host: HostSpecifiers,
    out: &mut Enablement,
) -> Result<Section, String> {
    let shown = crate::kmsg::shorten;
    let mut section = Section::default();
    let Some(install) = file.section("Install") else {
        return Ok(section);
    };
    for entry in &install.entries {
        let (key, value, line) = (entry.key.as_str(), entry.value.as_str(), entry.line);
        let mut warn = |message: String| out.warnings.push(Warning { line, message });
        let list = match key {
            "Alias" => Some(&mut section.aliases),
            _ => DEPENDENCIES
                .iter()
                .position(|&(k, _, since)| k == key && systemd >= since)
                .map(|i| &mut section.dependencies[i]),
        };
        if let Some(list) = list {
            // config_parse_strv(): an empty value resets the list. On unbalanced quotes
            // 252 to 256 keep the words before the bad one, 257 drops the assignment.
            if value.is_empty() {
                list.clear();
                continue;
            }
            let (words, error) = split_words_partial(value);
            if error.is_none() || systemd < 257 {
                list.extend(words);
            }
            if error.is_some() {
                warn(format!(
                    "{key}={}: unbalanced quotes, ignoring",
                    shown(value)
                ));
            }
            continue;
        }
        match key {
            "DefaultInstance" => {
                match names.instance {
                    // Enabling an instance file: ignored without a word.
                    Some(i) if !i.is_empty() => continue,
                    None => {
                        warn(
                            "DefaultInstance= only makes sense for template units, ignoring".into(),
                        );
                        continue;
                    }
                    Some(_) => {}
                }
                let instance = expand(value, names, host)
                    .map_err(|e| format!("DefaultInstance={}: {e}", shown(value)))?;
                if instance.is_empty() {
                    names.default_instance = None;
                } else if instantiate(names.unit, &instance).is_some() {
                    names.default_instance = Some(instance);
                } else {
                    return Err(format!(
                        "invalid DefaultInstance= value \"{}\"",
                        shown(&instance)
                    ));
                }
            }
            "Also" => {
                // Each name must be a unit name; the unit named is enabled by its own
                // [Install] if this image attaches it (README, "Enablement").
                let words =
                    split_plain(value).map_err(|e| format!("Also={}: {e}", shown(value)))?;
                for word in words {
                    let name = expand(&word, names, host)
                        .map_err(|e| format!("Also={}: {e}", shown(&word)))?;
                    if parse_unit_name(&name).is_none() {
                        return Err(format!("Also={}: not a valid unit name", shown(&word)));
                    }
                }
            }
            other => warn(format!(
                "unknown key {}= in [Install], ignoring",
                shown(other)
            )),
        }
    }
    Ok(section)
}

/// The links `systemctl enable` of systemd `systemd` makes for `unit` from its parsed
/// file, specifiers of the host taken from `host`.
pub fn enablement(unit: &str, file: &UnitFile, systemd: u32, host: HostSpecifiers) -> Enablement {
    let mut out = Enablement::default();
    let Some(parsed) = parse_unit_name(unit) else {
        out.refused = Some("invalid unit name".into());
        return out;
    };
    let mut names = Names {
        unit,
        prefix: parsed.prefix,
        instance: parsed.instance,
        default_instance: None,
    };
    let section = match read_section(&mut names, file, systemd, host, &mut out) {
        Ok(section) => section,
        Err(why) => {
            out.refused = Some(why);
            return out;
        }
    };
    let shown = crate::kmsg::shorten;

    // install_info_symlink_alias()
    for raw in &section.aliases {
        let alias = match expand(raw, &names, host) {
            Ok(a) => a,
            Err(e) => {
                out.problems.push(format!("Alias={}: {e}", shown(raw)));
                continue;
            }
        };
        match alias.rsplit_once('/') {
            // The legacy form `Alias=T.wants/U`: a dependency link.
            Some((dir, link)) => {
                let target = dir
                    .strip_suffix(".wants")
                    .or_else(|| dir.strip_suffix(".requires"))
                    .and_then(parse_unit_name);
                let fits = target
                    .as_ref()
                    .is_some_and(|t| symlink_name_compatible(link, unit, t.is_template()));
                if fits {
                    out.links.push(Link {
                        path: PathBuf::from(&alias),
                        target: PathBuf::from("..").join(unit),
                        is_alias: false,
                    });
                } else {
                    out.problems.push(format!(
                        "Alias={}: a path must be T.wants/ or T.requires/ and the unit's name",
                        shown(raw)
                    ));
                }
            }
            None => {
                // An instance unit gives its instance to a template alias.
                let alias = match (parse_unit_name(&alias), parsed.instance) {
                    (Some(a), Some(i)) if a.is_template() && !i.is_empty() => {
                        instantiate(&alias, i).unwrap_or(alias)
                    }
                    _ => alias,
                };
                match alias_is_valid(&alias, unit) {
                    Ok(true) => out.links.push(Link {
                        path: PathBuf::from(&alias),
                        target: PathBuf::from(unit),
                        is_alias: true,
                    }),
                    Ok(false) => {}
                    Err(e) => out.problems.push(format!("Alias={}: {e}", shown(raw))),
                }
            }
        }
    }

    // install_info_symlink_wants(), for each key in turn (a key the version does not know
    // was not read). What is linked: the unit, a template's default instance (`%n`); a
    // template without one only into a template's or an instance's directory.
    let link_name = names.name();
    let any_target = !(parsed.is_template() && names.default_instance.is_none());
    for ((key, suffix, _), list) in DEPENDENCIES.iter().zip(&section.dependencies) {
        for raw in list {
            let target = match expand(raw, &names, host) {
                Ok(t) => t,
                Err(e) => {
                    out.problems.push(format!("{key}={}: {e}", shown(raw)));
                    continue;
                }
            };
            match parse_unit_name(&target) {
                None => out
                    .problems
                    .push(format!("{key}={}: not a valid unit name", shown(raw))),
                Some(t) if !any_target && t.instance.is_none() => {
                    out.template_without_instance = true;
                }
                Some(_) => out.links.push(Link {
                    path: PathBuf::from(format!("{target}.{suffix}")).join(&link_name),
                    target: PathBuf::from("..").join(unit),
                    is_alias: false,
                }),
            }
        }
    }

    out.links.sort();
    out.links.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit_syntax::parse;

    fn host(c: char) -> Option<Result<String, String>> {
        match c {
            'H' => Some(Ok("box".into())),
            'm' => Some(Err("no machine ID".into())),
            c if "aAbBlqMovwWgGuU".contains(c) => Some(Ok(String::new())),
            _ => None,
        }
    }

    fn links_for(version: u32, unit: &str, text: &str) -> Enablement {
        enablement(unit, &parse(text.as_bytes()).unwrap().0, version, &host)
    }

    fn links(unit: &str, text: &str) -> Enablement {
        links_for(257, unit, text)
    }

    fn pairs(e: &Enablement) -> Vec<(String, String)> {
        e.links
            .iter()
            .map(|l| (l.path.display().to_string(), l.target.display().to_string()))
            .collect()
    }

    #[test]
    fn dependencies() {
        let e = links(
            "foo.service",
            "[Install]\nWantedBy=multi-user.target \\\n  sockets.target\nRequiredBy=a.target\nUpheldBy=b.target\n",
        );
        assert_eq!(
            pairs(&e),
            [
                (
                    "a.target.requires/foo.service".into(),
                    "../foo.service".into()
                ),
                (
                    "b.target.upholds/foo.service".into(),
                    "../foo.service".into()
                ),
                (
                    "multi-user.target.wants/foo.service".into(),
                    "../foo.service".into()
                ),
                (
                    "sockets.target.wants/foo.service".into(),
                    "../foo.service".into()
                ),
            ]
        );
        assert!(e.problems.is_empty());
    }

    #[test]
    fn empty_assignment_resets() {
        let e = links(
            "foo.service",
            "[Install]\nWantedBy=a.target\nWantedBy=\nWantedBy=c.target\n",
        );
        assert_eq!(
            pairs(&e),
            [("c.target.wants/foo.service".into(), "../foo.service".into())]
        );
    }

    #[test]
    fn templates() {
        let e = links(
            "foo@.service",
            "[Install]\nWantedBy=multi-user.target\nDefaultInstance=bar\n",
        );
        assert_eq!(
            pairs(&e),
            [(
                "multi-user.target.wants/foo@bar.service".into(),
                "../foo@.service".into()
            )]
        );
        let e = links("foo@.service", "[Install]\nWantedBy=multi-user.target\n");
        assert!(e.links.is_empty() && e.template_without_instance && e.problems.is_empty());
        // A template target is linked into as written, not instantiated: PID 1 applies a
        // template's .wants/ to each of its instances.
        let e = links(
            "foo@.service",
            "[Install]\nWantedBy=x@.target\nDefaultInstance=i\n",
        );
        assert_eq!(
            pairs(&e),
            [(
                "x@.target.wants/foo@i.service".into(),
                "../foo@.service".into()
            )]
        );
    }

    #[test]
    fn aliases_and_specifiers() {
        let e = links(
            "foo.service",
            "[Install]\nAlias=%p-alias.service\nWantedBy=%N.target\n",
        );
        assert_eq!(
            pairs(&e),
            [
                ("foo-alias.service".into(), "foo.service".into()),
                (
                    "foo.target.wants/foo.service".into(),
                    "../foo.service".into()
                ),
            ]
        );
    }

    #[test]
    fn bad_values_are_reported() {
        let e = links(
            "foo.service",
            "[Install]\nWantedBy=../../etc/passwd good.target\nAlias=foo.socket\nAlias=%Z.service\n",
        );
        assert_eq!(
            pairs(&e),
            [(
                "good.target.wants/foo.service".into(),
                "../foo.service".into()
            )]
        );
        assert_eq!(e.problems.len(), 3, "{:?}", e.problems);
    }

    /// The differences issue 13 found against systemctl, each as systemd 252 and 257 do it
    /// (the same units are in tests/enablement/cases, checked against the real systemctl).
    #[test]
    fn as_systemctl_enables() {
        let s = "[Service]\nExecStart=/bin/true\n[Install]\n";
        let both = |unit: &str, install: &str| {
            let a = links_for(252, unit, &format!("{s}{install}"));
            let b = links_for(257, unit, &format!("{s}{install}"));
            assert_eq!(pairs(&a), pairs(&b), "{unit}: {install}");
            a
        };
        // A plain unit wanted by a template target: linked into the template's directory.
        let e = both("u.service", "WantedBy=container@.target\n");
        assert_eq!(
            pairs(&e),
            [(
                "container@.target.wants/u.service".into(),
                "../u.service".into()
            )]
        );
        // A template without DefaultInstance=: only into a template's or instance's directory.
        let e = both(
            "u@.service",
            "WantedBy=container@.target x@y.target multi-user.target\n",
        );
        assert_eq!(
            pairs(&e),
            [
                (
                    "container@.target.wants/u@.service".into(),
                    "../u@.service".into()
                ),
                ("x@y.target.wants/u@.service".into(), "../u@.service".into()),
            ]
        );
        assert!(e.template_without_instance && e.problems.is_empty());
        // Specifiers in DefaultInstance=.
        let e = both(
            "u@.service",
            "DefaultInstance=%p-x\nWantedBy=multi-user.target\n",
        );
        assert_eq!(
            pairs(&e),
            [(
                "multi-user.target.wants/u@u-x.service".into(),
                "../u@.service".into()
            )]
        );
        // Host specifiers.
        let e = both("u.service", "WantedBy=%H.target\n");
        assert_eq!(
            pairs(&e),
            [("box.target.wants/u.service".into(), "../u.service".into())]
        );
        let e = both("u.service", "WantedBy=%m.target a.target\n");
        assert_eq!(
            pairs(&e),
            [("a.target.wants/u.service".into(), "../u.service".into())]
        );
        assert_eq!(e.problems, ["WantedBy=%m.target: %m: no machine ID"]);
        // A template aliased by an instance; %i and %n of a template's default instance.
        let e = both("u@.service", "Alias=u-other@x.service\n");
        assert_eq!(
            pairs(&e),
            [("u-other@x.service".into(), "u@.service".into())]
        );
        let e = both(
            "u@.service",
            "DefaultInstance=one\nAlias=o@%i.service w@.service\nWantedBy=%n.wants.target\n",
        );
        assert_eq!(
            pairs(&e),
            [
                ("o@one.service".into(), "u@.service".into()),
                (
                    "u@one.service.wants.target.wants/u@one.service".into(),
                    "../u@.service".into()
                ),
                ("w@.service".into(), "u@.service".into()),
            ]
        );
        // The old form of an alias: a dependency link.
        let e = both("u.service", "Alias=multi-user.target.wants/%n\n");
        assert_eq!(
            pairs(&e),
            [(
                "multi-user.target.wants/u.service".into(),
                "../u.service".into()
            )]
        );
        assert!(!e.links[0].is_alias);
        let e = both("u.service", "Alias=multi-user.target.upholds/%n\n");
        assert!(e.links.is_empty() && e.problems.len() == 1);
        // An invalid Also= or DefaultInstance= refuses the unit whole.
        let e = both("u.service", "Also=not/a/unit\nWantedBy=multi-user.target\n");
        assert!(e.links.is_empty() && e.refused.is_some());
        let e = both(
            "u@.service",
            "DefaultInstance=-bad/\nDefaultInstance=good\nWantedBy=a.target\n",
        );
        assert!(e.links.is_empty() && e.refused.is_some());
        let e = both("u@.service", "DefaultInstance=%Z\nWantedBy=a.target\n");
        assert!(e.refused.is_some());
        // Also= naming units is fine, and adds nothing.
        let e = both(
            "u.service",
            "Also=u.socket %p-helper.service\nWantedBy=a.target\n",
        );
        assert_eq!(
            pairs(&e),
            [("a.target.wants/u.service".into(), "../u.service".into())]
        );
        // A stray % stays (making no valid name), an unknown letter is an error.
        let e = both("u.service", "WantedBy=a%-b.target c%.target d%Z.target\n");
        assert!(e.links.is_empty());
        assert_eq!(
            e.problems,
            [
                "WantedBy=a%-b.target: not a valid unit name",
                "WantedBy=c%.target: not a valid unit name",
                "WantedBy=d%Z.target: unknown specifier %Z",
            ]
        );
    }

    /// What differs between the versions: `UpheldBy=` (254), and unbalanced quotes (257).
    #[test]
    fn versions_differ_as_systemd_does() {
        let text =
            "[Install]\nUpheldBy=a.target\nWantedBy=b.target \"c.target\nRequiredBy=d.target\n";
        let old = links_for(252, "u.service", text);
        assert_eq!(
            pairs(&old),
            [
                ("b.target.wants/u.service".into(), "../u.service".into()),
                ("d.target.requires/u.service".into(), "../u.service".into()),
            ]
        );
        let lines: Vec<usize> = old.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [2, 3]);
        let new = links_for(257, "u.service", text);
        assert_eq!(
            pairs(&new),
            [
                ("a.target.upholds/u.service".into(), "../u.service".into()),
                ("d.target.requires/u.service".into(), "../u.service".into()),
            ]
        );
        assert_eq!(new.warnings.len(), 1);
        assert_eq!(links_for(254, "u.service", text).links.len(), 3);
    }

    /// Warnings name the line: unknown keys, `DefaultInstance=` where it means nothing.
    #[test]
    fn warnings_name_the_line() {
        let e = links(
            "u.service",
            "[Install]\nWantedBy=a.target\nBogus=1\nDefaultInstance=x\n",
        );
        let got: Vec<(usize, &str)> = e
            .warnings
            .iter()
            .map(|w| (w.line, w.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (3, "unknown key Bogus= in [Install], ignoring"),
                (
                    4,
                    "DefaultInstance= only makes sense for template units, ignoring"
                ),
            ]
        );
        // An instance unit file ignores DefaultInstance= without a word.
        let e = links(
            "u@i.service",
            "[Install]\nDefaultInstance=x\nWantedBy=a.target\nAlias=v@.service\n",
        );
        assert!(e.warnings.is_empty());
        assert_eq!(
            pairs(&e),
            [
                ("a.target.wants/u@i.service".into(), "../u@i.service".into()),
                ("v@i.service".into(), "u@i.service".into()),
            ]
        );
    }

    #[test]
    fn specifier_expansion_is_bounded() {
        // A unit name of 253 bytes and WantedBy=%n%n... of 1 MiB: refused after a few
        // hundred bytes, not after building 130 MiB.
        let unit = format!("{}.service", "a".repeat(245));
        assert_eq!(unit.len(), 253);
        let value = "%n".repeat(500 * 1024);
        let start = std::time::Instant::now();
        let names = Names {
            unit: &unit,
            prefix: &unit[..245],
            instance: None,
            default_instance: None,
        };
        let e = expand(&value, &names, &host).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            e,
            "expands to more than 256 bytes, too long for a unit name"
        );
        // Long plain text is refused as any invalid name; a name of 255 bytes is not.
        assert_eq!(
            expand(&"a".repeat(300), &names, &host).unwrap_err(),
            "not a valid unit name"
        );
        let name = format!("{}.target", "b".repeat(248));
        assert_eq!(expand(&name, &names, &host).unwrap(), name);

        let e = links(&unit, &format!("[Install]\nWantedBy={value}\n"));
        assert!(e.links.is_empty());
        assert_eq!(e.problems.len(), 1);
        assert!(
            e.problems[0].ends_with(": expands to more than 256 bytes, too long for a unit name")
        );
    }

    #[test]
    fn linear_in_install_entries() {
        use crate::testutil::{assert_linear, repeated};
        let unit = format!("{}.service", "a".repeat(245));
        assert_linear(
            "[Install] with many specifiers",
            |n| repeated(n - 64, "[Install]\nWantedBy=", |_| "%n".into()),
            |b| {
                let file = parse(b).unwrap().0;
                assert!(enablement(&unit, &file, 257, &host).links.is_empty());
            },
        );
        assert_linear(
            "[Install] with many targets",
            |n| repeated(n, "[Install]\n", |i| format!("WantedBy=t{i:06}.target\n")),
            |b| {
                let file = parse(b).unwrap().0;
                assert!(!enablement(&unit, &file, 257, &host).links.is_empty());
            },
        );
    }
}
