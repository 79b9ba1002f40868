//! The plan: which files and symlinks go where, and every skip with its reason. Built by
//! pure functions from what was read, so most behaviour is testable without files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use log::Level;

use crate::discover::Image;
use crate::facts::UnitSource;
use crate::install::enablement;
use crate::names::parse_unit_name;
use crate::os_release::OsRelease;
use crate::render::{DropinExtension, DropinImage, portable_dropin};
use crate::unit_syntax;

/// Longest unit name whose drop-in directory name (`NAME.d`) is still a valid file name.
pub const MAX_UNIT_NAME_WITH_DROPINS: usize = 253;

/// Most `[Install]` links made for one unit: real units name a handful of targets.
pub const MAX_LINKS_PER_UNIT: usize = 64;

/// One thing to create in the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Symlink(PathBuf),
}

/// A log line decided while planning, naming the image and the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub level: Level,
    pub message: String,
    /// Whether this makes the run exit with status 1.
    pub failure: bool,
}

/// An image that was read successfully, with its matching units.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub image: Image,
    /// Its os-release, which names it in the journal.
    pub release: OsRelease,
    pub units: Vec<UnitSource>,
    pub profile: String,
    pub enable: bool,
    /// Extension images layered over the root image, in order.
    pub extensions: Vec<Extension>,
}

/// An extension image and its extension-release file.
#[derive(Debug, Clone)]
pub struct Extension {
    pub image: Image,
    pub release: OsRelease,
}

/// What planning needs from the host, as functions so tests can stand in for it.
pub struct Host<'a> {
    /// Where the host already has a unit file of this name, if it does.
    pub unit_file: &'a dyn Fn(&str) -> Option<PathBuf>,
    /// The profile drop-in for (profile, unit type), as a host path.
    pub profile: &'a dyn Fn(&str, &str) -> Option<PathBuf>,
    pub os_release: &'a str,
    pub systemd_version: u32,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Relative paths in the output directory; sorted, so output is deterministic.
    pub nodes: BTreeMap<PathBuf, Node>,
    pub notices: Vec<Notice>,
}

impl Plan {
    pub fn failed(&self) -> bool {
        self.notices.iter().any(|n| n.failure)
    }

    fn notice(&mut self, level: Level, failure: bool, message: String) {
        self.notices.push(Notice {
            level,
            message,
            failure,
        });
    }
}

/// Plan the output for `attachments`, given in search-path order: earlier images win.
pub fn plan(attachments: &[Attachment], host: &Host) -> Plan {
    let mut plan = Plan::default();
    // Unit name → the image path that provides it.
    let mut owner: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut placed: Vec<(&Attachment, &UnitSource)> = Vec::new();

    for att in attachments {
        let image_path = att.image.label();
        let mut attached = Vec::new();
        for unit in &att.units {
            // UNIT.d must be a valid file name too, or the unit would be written without the
            // drop-ins that confine it.
            if unit.name.len() > MAX_UNIT_NAME_WITH_DROPINS {
                plan.notice(
                    Level::Warn,
                    true,
                    format!(
                        "Unit {} of image {image_path} not attached: its name is {} bytes long, and {}.d would exceed the 255 bytes a file name may have.",
                        crate::kmsg::shorten(&unit.name),
                        unit.name.len(),
                        crate::kmsg::shorten(&unit.name)
                    ),
                );
                continue;
            }
            if let Some(host_path) = (host.unit_file)(&unit.name) {
                plan.notice(
                    Level::Warn,
                    true,
                    format!(
                        "Unit {} of image {image_path} not attached: the host has {} already.",
                        unit.name,
                        host_path.display()
                    ),
                );
                continue;
            }
            if let Some(first) = owner.get(&unit.name) {
                plan.notice(
                    Level::Warn,
                    true,
                    format!(
                        "Unit {} of image {image_path} not attached: image {} provides it already.",
                        unit.name,
                        first.display()
                    ),
                );
                continue;
            }
            owner.insert(unit.name.clone(), att.image.path.clone());
            place_unit(&mut plan, att, unit, host);
            placed.push((att, unit));
            attached.push(unit.name.as_str());
        }
        if !attached.is_empty() {
            let not_enabled = if att.enable {
                ""
            } else {
                " (not enabled: Enable=no)"
            };
            plan.notice(
                Level::Info,
                false,
                format!(
                    "Attached image {image_path}: {}{not_enabled}.",
                    attached.join(", ")
                ),
            );
        }
    }

    // Links come after every unit is placed, so an alias can not take the name of a unit
    // from a later image.
    for &(att, unit) in &placed {
        // A copy made from an alias link is the same unit as its target: enabling both
        // would start it twice under two names.
        let alias_of_placed = unit.alias_of.as_ref().is_some_and(|target| {
            placed
                .iter()
                .any(|(a, u)| std::ptr::eq(*a, att) && u.name == *target)
        });
        if att.enable && !alias_of_placed {
            place_links(&mut plan, att, unit, host);
        }
    }
    plan
}

fn place_unit(plan: &mut Plan, att: &Attachment, unit: &UnitSource, host: &Host) {
    let dropins = PathBuf::from(format!("{}.d", unit.name));
    let kind = parse_unit_name(&unit.name).map(|n| n.kind).unwrap_or("");
    let extensions: Vec<DropinExtension> = att
        .extensions
        .iter()
        .map(|e| DropinExtension {
            path: e.image.path.to_str().unwrap_or_default(),
            file_name: &e.image.file_name,
            kind: e.image.kind,
            release: &e.release,
        })
        .collect();
    // PORTABLE= names the image the unit came from.
    let origin = unit
        .extension
        .and_then(|i| att.extensions.get(i))
        .map_or(&att.image, |e| &e.image);
    let image = DropinImage {
        path: att.image.path.to_str().unwrap_or_default(),
        root_file_name: &att.image.file_name,
        file_name: &origin.file_name,
        kind: att.image.kind,
        release: &att.release,
        extensions: &extensions,
    };
    plan.nodes
        .insert(PathBuf::from(&unit.name), Node::File(unit.bytes.clone()));
    if let Some(profile) = (host.profile)(&att.profile, kind) {
        plan.nodes
            .insert(dropins.join("10-profile.conf"), Node::Symlink(profile));
    }
    let text = portable_dropin(host.systemd_version, &unit.name, &image, host.os_release);
    plan.nodes.insert(
        dropins.join("20-portable.conf"),
        Node::File(text.into_bytes()),
    );
}

fn place_links(plan: &mut Plan, att: &Attachment, unit: &UnitSource, host: &Host) {
    let image_path = att.image.label();
    let what = format!("Unit {} of image {image_path}", unit.name);
    let file = match unit_syntax::parse(&unit.bytes) {
        Ok((file, _warnings)) => file,
        Err(e) => {
            plan.notice(
                Level::Warn,
                true,
                format!("{what} not enabled: cannot parse it: {e}."),
            );
            return;
        }
    };
    let mut en = enablement(&unit.name, &file);
    // One line per problem, but never a flood: a crafted unit can hold thousands.
    const SHOWN: usize = 3;
    for problem in en.problems.iter().take(SHOWN) {
        plan.notice(
            Level::Warn,
            true,
            format!("{what}: [Install] {problem}, ignoring."),
        );
    }
    if en.problems.len() > SHOWN {
        plan.notice(
            Level::Warn,
            true,
            format!(
                "{what}: [Install] {} more invalid entries, ignoring.",
                en.problems.len() - SHOWN
            ),
        );
    }
    if en.links.len() > MAX_LINKS_PER_UNIT {
        plan.notice(
            Level::Warn,
            true,
            format!(
                "{what}: [Install] asks for {} links, more than {MAX_LINKS_PER_UNIT}: only the first {MAX_LINKS_PER_UNIT} are made.",
                en.links.len()
            ),
        );
        en.links.truncate(MAX_LINKS_PER_UNIT);
    }
    if en.template_without_instance {
        plan.notice(
            Level::Info,
            false,
            format!("{what} is a template without DefaultInstance=, not enabled."),
        );
    }
    for link in en.links {
        if link.is_alias {
            let name = link.path.to_str().unwrap_or_default();
            let clash = if plan.nodes.contains_key(&link.path) {
                Some("the name is taken by another unit or alias".to_string())
            } else {
                (host.unit_file)(name).map(|p| format!("the host has {} already", p.display()))
            };
            if let Some(why) = clash {
                plan.notice(
                    Level::Warn,
                    true,
                    format!("{what}: alias {name} not created: {why}."),
                );
                continue;
            }
        }
        // A link path can only repeat for the same unit (listed twice), which is harmless.
        plan.nodes
            .entry(link.path)
            .or_insert(Node::Symlink(link.target));
    }
}

/// The files and links of `plan` as text, for `--dry-run`.
pub fn describe(plan: &Plan) -> String {
    let mut out = String::new();
    for (path, node) in &plan.nodes {
        match node {
            Node::File(bytes) => {
                out.push_str(&format!("--- {} ---\n", path.display()));
                out.push_str(&String::from_utf8_lossy(bytes));
                if !bytes.ends_with(b"\n") && !bytes.is_empty() {
                    out.push('\n');
                }
            }
            Node::Symlink(target) => {
                out.push_str(&format!(
                    "--- {} -> {} ---\n",
                    path.display(),
                    target.display()
                ));
            }
        }
    }
    out
}

/// Relative paths whose every component is a plain name: nothing planned can point
/// outside the output directory.
pub fn is_confined(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        && path.components().next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::open::ImageKind;

    fn image(path: &str, kind: ImageKind) -> Image {
        let file_name = path.rsplit('/').next().unwrap().to_string();
        Image {
            entry: file_name.clone(),
            name: file_name.trim_end_matches(".raw").to_string(),
            file_name,
            writable_by: None,
            found_at: path.into(),
            path: path.into(),
            kind,
        }
    }

    fn unit(name: &str, text: &str) -> UnitSource {
        UnitSource {
            name: name.into(),
            origin: PathBuf::from("/usr/lib/systemd/system").join(name),
            bytes: text.as_bytes().to_vec(),
            alias_of: None,
            extension: None,
        }
    }

    fn att(path: &str, units: Vec<UnitSource>) -> Attachment {
        let kind = if path.ends_with(".raw") {
            ImageKind::Raw
        } else {
            ImageKind::Directory
        };
        Attachment {
            image: image(path, kind),
            release: OsRelease::default(),
            units,
            profile: "default".into(),
            enable: true,
            extensions: vec![],
        }
    }

    fn run(atts: &[Attachment], host_units: &[&str]) -> Plan {
        let unit_file = |n: &str| {
            host_units
                .contains(&n)
                .then(|| PathBuf::from("/etc/systemd/system").join(n))
        };
        let profile = |p: &str, t: &str| {
            (t == "service")
                .then(|| PathBuf::from(format!("/usr/lib/systemd/portable/profile/{p}/{t}.conf")))
        };
        plan(
            atts,
            &Host {
                unit_file: &unit_file,
                profile: &profile,
                os_release: "/etc/os-release",
                systemd_version: 252,
            },
        )
    }

    fn paths(p: &Plan) -> Vec<String> {
        p.nodes.keys().map(|k| k.display().to_string()).collect()
    }

    #[test]
    fn a_service_with_wantedby() {
        let p = run(
            &[att(
                "/var/lib/portables/foo.raw",
                vec![unit(
                    "foo.service",
                    "[Install]\nWantedBy=multi-user.target\n",
                )],
            )],
            &[],
        );
        assert_eq!(
            paths(&p),
            [
                "foo.service",
                "foo.service.d/10-profile.conf",
                "foo.service.d/20-portable.conf",
                "multi-user.target.wants/foo.service"
            ]
        );
        assert_eq!(
            p.nodes[Path::new("multi-user.target.wants/foo.service")],
            Node::Symlink("../foo.service".into())
        );
        assert!(!p.failed());
    }

    #[test]
    fn sockets_get_no_profile() {
        let p = run(
            &[att(
                "/var/lib/portables/foo",
                vec![unit("foo.socket", "[Socket]\n")],
            )],
            &[],
        );
        assert_eq!(paths(&p), ["foo.socket", "foo.socket.d/20-portable.conf"]);
    }

    #[test]
    fn host_units_win() {
        let p = run(
            &[att("/var/lib/portables/foo", vec![unit("foo.service", "")])],
            &["foo.service"],
        );
        assert!(p.nodes.is_empty());
        assert!(p.failed());
        assert!(
            p.notices[0]
                .message
                .contains("the host has /etc/systemd/system/foo.service already")
        );
    }

    #[test]
    fn earlier_image_wins() {
        let p = run(
            &[
                att("/etc/portables/foo.raw", vec![unit("foo.service", "A")]),
                att(
                    "/var/lib/portables/foo_2.raw",
                    vec![unit("foo.service", "B")],
                ),
            ],
            &[],
        );
        assert_eq!(p.nodes[Path::new("foo.service")], Node::File(b"A".to_vec()));
        assert!(p.failed());
        assert!(
            p.notices.iter().any(|n| n.message
                == "Unit foo.service of image /var/lib/portables/foo_2.raw not attached: image /etc/portables/foo.raw provides it already.")
        );
    }

    #[test]
    fn aliases_do_not_take_unit_names() {
        let p = run(
            &[
                att(
                    "/var/lib/portables/a",
                    vec![unit(
                        "a.service",
                        "[Install]\nAlias=b.service a-alias.service\n",
                    )],
                ),
                att("/var/lib/portables/b", vec![unit("b.service", "")]),
            ],
            &[],
        );
        assert_eq!(p.nodes[Path::new("b.service")], Node::File(vec![]));
        assert_eq!(
            p.nodes[Path::new("a-alias.service")],
            Node::Symlink("a.service".into())
        );
        assert!(p.failed());
    }

    #[test]
    fn disabled_images_get_no_links() {
        let mut a = att(
            "/var/lib/portables/foo",
            vec![unit(
                "foo.service",
                "[Install]\nWantedBy=multi-user.target\n",
            )],
        );
        a.enable = false;
        let p = run(&[a], &[]);
        assert!(
            !p.nodes
                .keys()
                .any(|k| k.starts_with("multi-user.target.wants"))
        );
    }

    #[test]
    fn output_is_confined() {
        assert!(is_confined(Path::new("a.service.d/20-portable.conf")));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert!(!is_confined(Path::new(bad)), "{bad}");
        }
    }
}
