//! Enablement: the symlinks `systemctl enable` would make from a unit's `[Install]`
//! section, made by the generator itself because generated units cannot be enabled.

use std::path::PathBuf;

use crate::names::{instantiate, parse_unit_name};
use crate::unit_syntax::UnitFile;

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
    /// One message per entry left out.
    pub problems: Vec<String>,
    /// Set when a template has no `DefaultInstance=`: nothing to enable, by design.
    pub template_without_instance: bool,
}

const DEPENDENCIES: [(&str, &str); 3] = [
    ("WantedBy", "wants"),
    ("RequiredBy", "requires"),
    ("UpheldBy", "upholds"),
];

/// The longest name `expand` builds: every expansion is meant to be a unit name, which is at
/// most this long (systemd's `UNIT_NAME_MAX` less the NUL).
const EXPANDED_MAX: usize = 255;

/// The subset of unit specifiers that make sense in `[Install]` names
/// (install.c `install_name_printf`). Expansion stops as soon as the result is longer than
/// any unit name: `%n` a million times over would otherwise build hundreds of MiB just to
/// be refused.
fn expand(value: &str, unit: &str) -> Result<String, String> {
    let parsed = parse_unit_name(unit).ok_or("invalid unit name")?;
    let stem = &unit[..unit.len() - parsed.kind.len() - 1];
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
        expanded = true;
        match chars.next() {
            Some('%') => out.push('%'),
            Some('n') => out.push_str(unit),
            Some('N') => out.push_str(stem),
            Some('p') => out.push_str(parsed.prefix),
            Some('i') => out.push_str(parsed.instance.unwrap_or("")),
            Some('j') => out.push_str(parsed.prefix.rsplit('-').next().unwrap_or(parsed.prefix)),
            Some(other) => return Err(format!("unsupported specifier %{other}")),
            None => return Err("trailing %".into()),
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

/// Compute the links for `unit` from its parsed file.
pub fn enablement(unit: &str, file: &UnitFile) -> Enablement {
    let mut out = Enablement::default();
    let Some(parsed) = parse_unit_name(unit) else {
        out.problems.push("invalid unit name".into());
        return out;
    };

    // A template is enabled as its default instance, or not at all.
    let link_name = if parsed.is_template() {
        match file
            .last("Install", "DefaultInstance")
            .filter(|i| !i.is_empty())
        {
            Some(instance) => match instantiate(unit, instance) {
                Some(name) => Some(name),
                None => {
                    out.problems.push(format!(
                        "DefaultInstance={instance}: not a valid instance name"
                    ));
                    None
                }
            },
            None => None,
        }
    } else {
        Some(unit.to_string())
    };

    let has_dependencies = DEPENDENCIES
        .iter()
        .any(|(key, _)| !file.values("Install", key).is_empty());
    if parsed.is_template() && link_name.is_none() && has_dependencies && out.problems.is_empty() {
        out.template_without_instance = true;
    }

    if let Some(link_name) = &link_name {
        let instance = parse_unit_name(link_name)
            .and_then(|n| n.instance)
            .filter(|i| !i.is_empty());
        for (key, suffix) in DEPENDENCIES {
            let targets = match file.list("Install", key) {
                Ok(t) => t,
                Err(e) => {
                    out.problems.push(format!("{key}=: {e}"));
                    continue;
                }
            };
            for raw in targets {
                let target = match expand(&raw, link_name) {
                    Ok(t) => t,
                    Err(e) => {
                        out.problems
                            .push(format!("{key}={}: {e}", crate::kmsg::shorten(&raw)));
                        continue;
                    }
                };
                let target = match parse_unit_name(&target) {
                    Some(t) if t.is_template() => {
                        match instance.and_then(|i| instantiate(&target, i)) {
                            Some(name) => name,
                            None => {
                                out.problems.push(format!(
                                    "{key}={}: a template target needs an instance",
                                    crate::kmsg::shorten(&raw)
                                ));
                                continue;
                            }
                        }
                    }
                    Some(_) => target,
                    None => {
                        out.problems.push(format!(
                            "{key}={}: not a valid unit name",
                            crate::kmsg::shorten(&raw)
                        ));
                        continue;
                    }
                };
                out.links.push(Link {
                    path: PathBuf::from(format!("{target}.{suffix}")).join(link_name),
                    target: PathBuf::from("..").join(unit),
                    is_alias: false,
                });
            }
        }
    }

    match file.list("Install", "Alias") {
        Ok(aliases) => {
            for raw in aliases {
                let alias = match expand(&raw, unit) {
                    Ok(a) => a,
                    Err(e) => {
                        out.problems
                            .push(format!("Alias={}: {e}", crate::kmsg::shorten(&raw)));
                        continue;
                    }
                };
                match parse_unit_name(&alias) {
                    Some(a) if a.kind != parsed.kind => {
                        out.problems.push(format!(
                            "Alias={}: not of the unit's type .{}",
                            crate::kmsg::shorten(&raw),
                            parsed.kind
                        ));
                    }
                    Some(a)
                        if a.is_template() != parsed.is_template()
                            || (a.instance.is_some() && !a.is_template()) =>
                    {
                        out.problems.push(format!("Alias={}: an alias of a template must be a template, and a plain unit's alias plain", crate::kmsg::shorten(&raw)));
                    }
                    Some(_) if alias == unit => {}
                    Some(_) => out.links.push(Link {
                        path: PathBuf::from(&alias),
                        target: PathBuf::from(unit),
                        is_alias: true,
                    }),
                    None => out.problems.push(format!(
                        "Alias={}: not a valid unit name",
                        crate::kmsg::shorten(&raw)
                    )),
                }
            }
        }
        Err(e) => out.problems.push(format!("Alias=: {e}")),
    }

    out.links.sort();
    out.links.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit_syntax::parse;

    fn links(unit: &str, text: &str) -> Enablement {
        enablement(unit, &parse(text.as_bytes()).unwrap().0)
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
        let e = links(
            "foo@.service",
            "[Install]\nWantedBy=x@.target\nDefaultInstance=i\n",
        );
        assert_eq!(
            pairs(&e),
            [(
                "x@i.target.wants/foo@i.service".into(),
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

    #[test]
    fn specifier_expansion_is_bounded() {
        // A unit name of 253 bytes and WantedBy=%n%n... of 1 MiB: refused after a few
        // hundred bytes, not after building 130 MiB.
        let unit = format!("{}.service", "a".repeat(245));
        assert_eq!(unit.len(), 253);
        let value = "%n".repeat(500 * 1024);
        let start = std::time::Instant::now();
        let e = expand(&value, &unit).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            e,
            "expands to more than 255 bytes, too long for a unit name"
        );
        // Long plain text is refused as any invalid name; a name of 255 bytes is not.
        assert_eq!(
            expand(&"a".repeat(300), &unit).unwrap_err(),
            "not a valid unit name"
        );
        let name = format!("{}.target", "b".repeat(248));
        assert_eq!(expand(&name, &unit).unwrap(), name);

        let e = links(&unit, &format!("[Install]\nWantedBy={value}\n"));
        assert!(e.links.is_empty());
        assert_eq!(e.problems.len(), 1);
        assert!(
            e.problems[0].ends_with(": expands to more than 255 bytes, too long for a unit name")
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
                assert!(enablement(&unit, &file).links.is_empty());
            },
        );
        assert_linear(
            "[Install] with many targets",
            |n| repeated(n, "[Install]\n", |i| format!("WantedBy=t{i:06}.target\n")),
            |b| {
                let file = parse(b).unwrap().0;
                assert!(!enablement(&unit, &file).links.is_empty());
            },
        );
    }
}
