//! The plan: which files and symlinks go where, and every skip with its reason. Built by
//! pure functions from what was read, so most behaviour is testable without files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::Level;

use crate::diagnostic::{Diagnostic, Diagnostics, Keep, MAX_LINES_PER_IMAGE, Subject};
use crate::host::HostKind;
use crate::install::enablement;
use crate::late_mounts;
use crate::model::{Attachment, Image, UnitSource};
use crate::names::parse_unit_name;
use crate::out_path::OutPath;
use crate::render::{DropinExtension, DropinImage, portable_dropin};
use crate::unit_syntax;

/// Longest unit name whose drop-in directory name (`NAME.d`) is still a valid file name.
pub const MAX_UNIT_NAME_WITH_DROPINS: usize = 253;

/// Most `[Install]` links made for one unit: real units name a handful of targets.
pub const MAX_LINKS_PER_UNIT: usize = 64;

/// Every node of a plan, by its path in the output directory.
pub type Nodes = BTreeMap<OutPath, Node>;

/// One thing to create in the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file with these contents.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(PathBuf),
}

/// Most units attached from one image: real images ship a handful; a crafted one with
/// thousands of (hard-linked) unit files would otherwise fill /run.
pub const MAX_UNITS_PER_IMAGE: usize = 256;

/// Most files and links one run creates, whatever the input.
pub const MAX_OUTPUT_NODES: usize = 65_536;

/// A unit file the host has under some name, and how (see [`crate::host::HostKind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUnit {
    /// Where it is, as a host path (e.g. `/etc/systemd/system/foo.service`).
    pub path: PathBuf,
    /// Which policy applies to it.
    pub kind: HostKind,
}

/// The profile drop-in a unit is linked to, as found on the host.
pub type ProfileLookup = Result<Option<PathBuf>, String>;

/// What planning needs from the host, as functions so tests can stand in for it.
pub struct Host<'a> {
    /// The host's unit file of this name, if it has one.
    pub unit_file: &'a dyn Fn(&str) -> Option<HostUnit>,
    /// A host unit file that is an instance of this template, if there is one.
    pub instance_of: &'a dyn Fn(&str) -> Option<PathBuf>,
    /// The profile drop-in for (profile, unit type), as a host path; an error for one that
    /// may not be used.
    pub profile: &'a dyn Fn(&str, &str) -> ProfileLookup,
    /// The host's os-release (`/etc/os-release`, else `/usr/lib/os-release`), bound to
    /// `/run/host/os-release` before 254.
    pub os_release: &'a str,
    /// The systemd version whose `portablectl` output is written.
    pub systemd_version: u32,
    /// The host's specifiers in `[Install]` (`%H`, `%m`, `%o`, …), from the root read.
    pub specifiers: crate::install::HostSpecifiers<'a>,
    /// Mount points below which images may lie that are not mounted yet: one more reload,
    /// once they are, attaches those images.
    pub not_mounted: &'a [String],
    /// What the plan's diagnostics keep (see [`Keep`]).
    pub keep: Keep,
}

/// Everything a run writes: every file and link, by path, and why anything was left out.
#[derive(Debug, Default)]
pub struct Plan {
    /// Relative paths in the output directory; sorted, so output is deterministic.
    pub nodes: Nodes,
    /// What planning decided, in order.
    pub diagnostics: Diagnostics,
    /// Each unit attached, by name, with the image it was attached from (the path the
    /// image was found at): `list` tells from it which image's unit won. Only where the
    /// diagnostics are kept whole ([`Keep::All`]): a run logs, it does not list.
    pub attached: BTreeMap<String, PathBuf>,
    /// Whether [`MAX_OUTPUT_NODES`] was reached placing units (said once).
    full: bool,
    /// Whether it was reached making links (said once).
    links_full: bool,
    /// Nodes already taken out by [`Planner::take_nodes`] and written: how many.
    taken: usize,
    /// The top-level names among them that are not units' files (the reattach unit's).
    taken_names: BTreeSet<OutPath>,
    /// Each unit attached, by name: the image that provides it, and whether the plan writes
    /// its file. Later images and aliases may not take these names.
    units: BTreeMap<String, Owner>,
}

/// Which image a unit is attached from.
#[derive(Debug)]
struct Owner {
    /// The image's path (shared by its units).
    image: Arc<Path>,
    /// Whether the plan writes the unit file (not only drop-ins for an administrator's copy).
    whole: bool,
}

impl Plan {
    /// Whether something could not be attached: the run then exits with status 1.
    pub fn failed(&self) -> bool {
        self.diagnostics.failed()
    }

    /// Whether the plan writes a file or link at the top level under this name (a unit file or
    /// an alias), including one taken out already by [`Planner::take_nodes`].
    pub fn names(&self, name: &str) -> bool {
        let path = OutPath::from(name);
        self.units.get(name).is_some_and(|o| o.whole)
            || self.nodes.contains_key(&path)
            || self.taken_names.contains(&path)
    }

    fn notice(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Every node planned so far, those taken out included.
    fn node_count(&self) -> usize {
        self.nodes.len() + self.taken
    }

    /// The line saying that a unit's links are not made for [`MAX_OUTPUT_NODES`], the first
    /// time only.
    fn links_full(&mut self, what: &str) -> Option<String> {
        let first = !self.links_full;
        self.links_full = true;
        first.then(|| format!(
            "{what}: [Install] links not made, nor those of later units: this run has made {MAX_OUTPUT_NODES} files and links, the most it makes."
        ))
    }
}

/// The notices about one image, at most [`MAX_LINES_PER_IMAGE`] of them above debug level.
struct ImageLog<'p> {
    plan: &'p mut Plan,
    /// The image's path as found, the subject of its diagnostics.
    at: PathBuf,
    shown: usize,
    hidden: usize,
    failed: bool,
}

impl ImageLog<'_> {
    /// A line about the image itself.
    fn say(&mut self, level: Level, failure: bool, message: String) {
        let d = Diagnostic::new(
            Subject::Image(self.at.clone()),
            level,
            message.clone(),
            message,
        );
        self.tell(d.fails_if(failure));
    }

    /// A line about one of its units: `reason`, told as `message`.
    fn say_unit(
        &mut self,
        unit: &str,
        level: Level,
        failure: bool,
        reason: String,
        message: String,
    ) {
        let subject = Subject::Unit {
            unit: unit.to_string(),
            image: self.at.clone(),
        };
        self.tell(Diagnostic::new(subject, level, reason, message).fails_if(failure));
    }

    /// One of its units is not attached, failing the run: `reason`, told as `message`.
    fn tell_unit_left_out(&mut self, unit: &str, level: Level, reason: String, message: String) {
        let subject = Subject::Unit {
            unit: unit.to_string(),
            image: self.at.clone(),
        };
        let d = Diagnostic::new(subject, level, reason, message);
        self.tell(d.leaving_out().failing());
    }

    fn tell(&mut self, mut d: Diagnostic) {
        self.failed |= d.fails;
        cap_line(&mut d, &mut self.shown, &mut self.hidden);
        self.plan.notice(d);
    }

    fn finish(self, label: &str) {
        if self.hidden > 0 {
            let level = if self.failed {
                Level::Warn
            } else {
                Level::Info
            };
            let reason = format!(
                "{} more lines like these (shown at debug level)",
                self.hidden
            );
            let message = format!("Image {label}: {reason}.");
            self.plan.notice(Diagnostic::new(
                Subject::Image(self.at),
                level,
                reason,
                message,
            ));
        }
    }
}

/// How a unit is placed: whole, or only its drop-ins and links when the administrator has
/// a copy of it in /etc or /run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    Whole,
    /// In place of the administrator's copy at this host path.
    DropinsOnly(PathBuf),
}

/// Plan the output for `attachments`, given in search-path order: earlier images win.
pub fn plan(attachments: &[Attachment], host: &Host) -> Plan {
    let mut planner = Planner::new(host);
    for att in attachments {
        planner.add(att);
    }
    planner.finish()
}

/// The plan made one image at a time, in search-path order (earlier images win), so that a
/// run can write each image's units and let go of the image before reading far ahead
/// (ARCHITECTURE.md, "Stages"). An image's units, drop-ins and `[Install]` links are planned
/// when it is added; only its aliases wait for [`Planner::finish`], once every image is
/// placed, so that an alias cannot take the name of a unit from a later image. What the
/// links have to say is told then too, in the order the units were placed.
pub struct Planner<'h> {
    plan: Plan,
    host: &'h Host<'h>,
    /// The links' notices and the aliases, in order, for [`Planner::finish`].
    later: Vec<Later>,
}

/// What the link stage of a plan does once every image is placed.
enum Later {
    /// Tell this.
    Tell(Diagnostic),
    /// Make this alias of a unit, if its name is free.
    Alias {
        /// The unit and its image, as messages name them.
        what: String,
        subject: Subject,
        path: OutPath,
        target: PathBuf,
    },
}

impl<'h> Planner<'h> {
    /// A plan with nothing attached yet, on `host`.
    pub fn new(host: &'h Host<'h>) -> Planner<'h> {
        let mut plan = Plan {
            diagnostics: Diagnostics::new(host.keep),
            ..Plan::default()
        };
        reattach_late(&mut plan, host);
        Planner {
            plan,
            host,
            later: Vec::new(),
        }
    }

    /// Place the units of `att`, after every image added before it.
    pub fn add(&mut self, att: &Attachment) {
        let (plan, host) = (&mut self.plan, self.host);
        if let Err(refused) = nameable(att) {
            plan.notice(refused);
            return;
        }
        // Each unit file is parsed once: admission, activation and [Install] all read it.
        let (parsed, syntax_warnings): (Vec<UnitParse>, Vec<Vec<unit_syntax::Warning>>) = att
            .units
            .iter()
            .map(|u| match unit_syntax::parse(&u.bytes) {
                Ok((file, warnings)) => (Ok(file), warnings),
                Err(e) => (Err(e), Vec::new()),
            })
            .unzip();
        let label = att.image.label();
        let mut log = ImageLog {
            plan,
            at: att.image.found_at.clone(),
            shown: 0,
            hidden: 0,
            failed: false,
        };
        let mut admitted = admit_units(att, &parsed, host, &mut log, &label);
        drop_foreign_activators(&mut admitted, &mut log, &label);
        let attached = place_units(att, admitted, host, &mut log, &label);
        tell_attached(att, &attached, &mut log, &label);
        // What systemd will say of each unit's lines when it loads it, said once here.
        for &(unit, _) in &attached {
            if let Some(i) = att.units.iter().position(|u| std::ptr::eq(u, unit)) {
                tell_warnings(&mut log, &unit.name, &label, &syntax_warnings[i]);
            }
        }
        log.finish(&label);
        let image: Arc<Path> = Arc::from(att.image.path.as_path());
        for &(unit, _) in &attached {
            let whole = plan.nodes.contains_key(&OutPath::from(unit.name.as_str()));
            let image = Arc::clone(&image);
            plan.units.insert(unit.name.clone(), Owner { image, whole });
            if plan.diagnostics.keep() == Keep::All {
                plan.attached
                    .insert(unit.name.clone(), att.image.found_at.clone());
            }
        }
        if !att.enable {
            return;
        }
        let first_later = self.later.len();
        for &(unit, file) in &attached {
            // A copy made from an alias link is the same unit as its target: enabling both
            // would start it twice under two names.
            let alias_of_placed = unit
                .alias_of
                .as_ref()
                .is_some_and(|target| attached.iter().any(|(u, _)| u.name == *target));
            if !alias_of_placed {
                let unit = Linked {
                    name: &unit.name,
                    at: &att.image.found_at,
                    label: &label,
                    file,
                };
                place_links(plan, &mut self.later, &unit, host);
            }
        }
        let hidden = cap_lines(&mut self.later[first_later..]);
        if hidden > 0 {
            let reason = format!(
                "{hidden} more lines about its units' [Install] sections (shown at debug level)"
            );
            let message = format!("Image {label}: {reason}.");
            let d = Diagnostic::new(
                Subject::Image(att.image.found_at.clone()),
                Level::Warn,
                reason,
                message,
            );
            self.later.push(Later::Tell(d));
        }
    }

    /// The nodes planned since the last call, to be written now: a later image cannot change
    /// them.
    pub fn take_nodes(&mut self) -> Nodes {
        let nodes = std::mem::take(&mut self.plan.nodes);
        self.plan.taken += nodes.len();
        let units = &self.plan.units;
        let top = nodes.keys().filter(|p| {
            p.components().nth(1).is_none() && !p.to_str().is_some_and(|n| units.contains_key(n))
        });
        self.plan.taken_names.extend(top.cloned());
        nodes
    }

    /// The plan, once every image is added: the aliases, and what the links had to say.
    pub fn finish(mut self) -> Plan {
        for later in std::mem::take(&mut self.later) {
            match later {
                Later::Tell(d) => self.plan.notice(d),
                Later::Alias {
                    what,
                    subject,
                    path,
                    target,
                } => place_alias(&mut self.plan, self.host, &what, &subject, path, target),
            }
        }
        self.plan
    }
}

/// One more line about an image, `shown` of its lines told above debug level so far: past
/// [`MAX_LINES_PER_IMAGE`] it is told at debug level, and counted in `hidden`.
fn cap_line(d: &mut Diagnostic, shown: &mut usize, hidden: &mut usize) {
    if d.level > Level::Info {
        return;
    }
    if *shown >= MAX_LINES_PER_IMAGE {
        d.level = Level::Debug;
        *hidden += 1;
    } else {
        *shown += 1;
    }
}

/// At most [`MAX_LINES_PER_IMAGE`] of the notices of one image's links above debug level:
/// the others are shown at debug level. Returns how many.
fn cap_lines(later: &mut [Later]) -> usize {
    let (mut shown, mut hidden) = (0, 0);
    for l in later {
        if let Later::Tell(d) = l {
            cap_line(d, &mut shown, &mut hidden);
        }
    }
    hidden
}

/// A unit placed, as its links need it.
struct Linked<'a> {
    name: &'a str,
    /// Its image's path as found, the subject of its diagnostics.
    at: &'a Path,
    label: &'a str,
    file: &'a UnitParse,
}

/// A unit file as systemd would read it, or why systemd would refuse it.
type UnitParse = Result<unit_syntax::UnitFile, unit_syntax::ParseError>;

/// A unit admitted: its file parsed, how it is placed, and its profile drop-in.
type Admitted<'a> = (&'a UnitSource, &'a UnitParse, Placement, Option<PathBuf>);

/// A path a unit file cannot name is no image to attach: an empty `RootImage=` would reset the
/// setting and run the unit on the host.
fn nameable(att: &Attachment) -> Result<(), Diagnostic> {
    let Some(bad) = std::iter::once(&att.image)
        .chain(att.extensions.iter().map(|e| &e.image))
        .find(|i| i.path.to_str().is_none())
    else {
        return Ok(());
    };
    let reason = format!(
        "the path {} is not valid UTF-8, which a unit file cannot name",
        bad.path.display()
    );
    let label = att.image.label();
    Err(Diagnostic::image_not_attached(&att.image.found_at, &label, Level::Error, reason).failing())
}

/// The units of `att` that may be attached (at most [`MAX_UNITS_PER_IMAGE`]), in order.
fn admit_units<'a>(
    att: &'a Attachment,
    parsed: &'a [UnitParse],
    host: &Host,
    log: &mut ImageLog,
    label: &str,
) -> Vec<Admitted<'a>> {
    let mut admitted = Vec::new();
    for (i, (unit, file)) in att.units.iter().zip(parsed).enumerate() {
        if i == MAX_UNITS_PER_IMAGE {
            log.say(
                Level::Warn,
                true,
                format!(
                    "Image {label} has {} matching units, more than {MAX_UNITS_PER_IMAGE}: only the first {MAX_UNITS_PER_IMAGE} are attached.",
                    att.units.len()
                ),
            );
            break;
        }
        match admit(att, unit, file, host, &log.plan.units) {
            Ok((placement, profile)) => admitted.push((unit, file, placement, profile)),
            Err(left_out) => log.tell(left_out),
        }
    }
    admitted
}

/// A socket, timer or path unit starts another unit: it must be one this image provides, or
/// the host's unit would run, unconfined, on the image's behalf. Leaving one out can leave
/// out what another would start, so this repeats until nothing changes.
fn drop_foreign_activators(admitted: &mut Vec<Admitted>, log: &mut ImageLog, label: &str) {
    loop {
        let names: BTreeSet<&str> = admitted.iter().map(|(u, ..)| u.name.as_str()).collect();
        let Some(at) = admitted
            .iter()
            .position(|(u, f, ..)| activated_unit(u, f).is_some_and(|t| !provides(&names, &t)))
        else {
            break;
        };
        let (unit, file, ..) = admitted.remove(at);
        let target = activated_unit(unit, file).unwrap_or_default();
        let reason = format!(
            "it would start {}, which this image does not attach",
            crate::kmsg::shorten(&target)
        );
        let message = format!(
            "Unit {} of image {label} not attached: {reason}.",
            unit.name
        );
        log.tell_unit_left_out(&unit.name, Level::Warn, reason, message);
    }
}

/// Place each admitted unit and its drop-ins; the units placed, in order.
fn place_units<'a>(
    att: &Attachment,
    admitted: Vec<Admitted<'a>>,
    host: &Host,
    log: &mut ImageLog,
    label: &str,
) -> Vec<(&'a UnitSource, &'a UnitParse)> {
    let mut attached = Vec::new();
    for (unit, file, placement, profile) in admitted {
        if log.plan.node_count() >= MAX_OUTPUT_NODES {
            if !log.plan.full {
                log.say(
                    Level::Error,
                    true,
                    format!(
                        "Image {label} and later ones not attached in full: this run has made {MAX_OUTPUT_NODES} files and links, the most it makes."
                    ),
                );
            }
            log.plan.full = true;
            break;
        }
        // Debug lines are made only where they are kept: a run at info level drops them.
        let profile_line = log.plan.diagnostics.keep().debug().then(|| match &profile {
            Some(path) => format!("profile {} from {}", att.profile, path.display()),
            None => format!(
                "no profile drop-in (profile {} has none for it)",
                att.profile
            ),
        });
        match place_unit(log.plan, att, unit, &placement, profile, host) {
            Ok(()) => {
                if let Some(profile_line) = profile_line {
                    let message = format!("Unit {} of image {label}: {profile_line}.", unit.name);
                    log.say_unit(&unit.name, Level::Debug, false, profile_line, message);
                }
                if let Placement::DropinsOnly(copy) = &placement {
                    let reason = format!(
                        "the administrator's {} is used in its place, with the image's root and profile",
                        copy.display()
                    );
                    let message = format!("Unit {} of image {label}: {reason}.", unit.name);
                    log.say_unit(&unit.name, Level::Info, false, reason, message);
                }
                attached.push((unit, file));
            }
            Err(why) => {
                let reason = format!("its drop-in cannot be written faithfully: {why}");
                let message = format!(
                    "Unit {} of image {label} not attached: {reason}.",
                    unit.name
                );
                log.tell_unit_left_out(&unit.name, Level::Warn, reason, message);
            }
        }
    }
    attached
}

/// One line naming what was attached from the image.
fn tell_attached(
    att: &Attachment,
    attached: &[(&UnitSource, &UnitParse)],
    log: &mut ImageLog,
    label: &str,
) {
    if attached.is_empty() {
        return;
    }
    let not_enabled = if att.enable {
        ""
    } else {
        " (not enabled: Enable=no)"
    };
    let shown = attached.len().min(MAX_LINES_PER_IMAGE);
    let names: Vec<&str> = attached[..shown]
        .iter()
        .map(|(u, _)| u.name.as_str())
        .collect();
    let more = match attached.len() - shown {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    let units = format!("{}{more}{not_enabled}", names.join(", "));
    let message = format!("Attached image {label}: {units}.");
    let d = Diagnostic::new(
        Subject::Image(log.at.clone()),
        Level::Info,
        message.clone(),
        message,
    );
    log.tell(d.in_dry_run(format!("Would attach image {label}: {units}.")));
}

/// Images below a mount point not mounted yet are attached by one more reload once it is
/// mounted: the unit that asks for it enters the plan like every other node. The unit
/// itself is packaged (`generator/`); this boot adds the link that starts it and the
/// drop-in naming the mount points, and the whole unit only where it is not installed.
fn reattach_late(plan: &mut Plan, host: &Host) {
    let not_mounted = host.not_mounted;
    if not_mounted.is_empty() {
        return;
    }
    let unit = late_mounts::REATTACH_UNIT;
    let installed = (host.unit_file)(unit);
    if let Some(HostUnit {
        kind: HostKind::Masked,
        path,
    }) = &installed
    {
        plan.notice(Diagnostic::run(
            Level::Info,
            format!(
                "{} not mounted yet, and {unit} is masked by {}: the images there are attached at the next daemon-reload.",
                not_mounted.join(", "),
                path.display()
            ),
        ));
        return;
    }
    plan.notice(Diagnostic::run(
        Level::Info,
        format!(
            "{} not mounted yet: {unit} will reload systemd once it is, to attach the images there.",
            not_mounted.join(", ")
        ),
    ));
    // The link points where the unit file is, as `systemctl enable` makes it.
    let target = if let Some(found) = installed {
        plan.notice(Diagnostic::run(
            Level::Debug,
            format!(
                "Using {}, adding its link and conditions.",
                found.path.display()
            ),
        ));
        found.path
    } else {
        plan.notice(Diagnostic::run(
            Level::Debug,
            format!("{unit} is not installed on this host: writing the whole unit."),
        ));
        plan.nodes.insert(
            OutPath::from(unit),
            Node::File(late_mounts::reattach_unit().into_bytes()),
        );
        Path::new("..").join(unit)
    };
    plan.nodes.insert(
        OutPath::from(late_mounts::REATTACH_DROPIN),
        Node::File(late_mounts::reattach_dropin(not_mounted).into_bytes()),
    );
    plan.nodes.insert(
        OutPath::from(Path::new("multi-user.target.wants").join(unit)),
        Node::Symlink(target),
    );
}

/// Whether `unit` of `att` may be attached, how, and with which profile; else why not.
fn admit(
    att: &Attachment,
    unit: &UnitSource,
    file: &UnitParse,
    host: &Host,
    owner: &BTreeMap<String, Owner>,
) -> Result<(Placement, Option<PathBuf>), Diagnostic> {
    let name = unit.name.as_str();
    let left_out = |level: Level, reason: String| {
        let label = att.image.label();
        Diagnostic::unit_not_attached(name, &att.image.found_at, &label, level, reason)
    };
    // A refusal fails the run; a mask is the administrator's choice and does not.
    let refuse = |reason: String| left_out(Level::Warn, reason).failing();
    // UNIT.d must be a valid file name too, or the unit would be written without the
    // drop-ins that confine it.
    if name.len() > MAX_UNIT_NAME_WITH_DROPINS {
        return Err(refuse(format!(
            "its name is {} bytes long, and {}.d would exceed the 255 bytes a file name may have",
            name.len(),
            crate::kmsg::shorten(name)
        )));
    }
    if name == late_mounts::REATTACH_UNIT {
        return Err(refuse(
            "the generator writes a unit of that name itself".to_string(),
        ));
    }
    if crate::names::dropins_apply_to_others(name) {
        return Err(refuse(format!(
            "systemd would apply its drop-ins {name}.d/ to every unit named {}*.{} on the host",
            name.rsplit_once('.').map_or(name, |(stem, _)| stem),
            parse_unit_name(name).map_or("", |n| n.kind)
        )));
    }
    let mut placement = Placement::Whole;
    if let Some(found) = (host.unit_file)(name) {
        match found.kind {
            HostKind::Masked => {
                let reason = format!("it is masked by {}", found.path.display());
                return Err(left_out(Level::Info, reason));
            }
            HostKind::Override => placement = Placement::DropinsOnly(found.path),
            HostKind::Other => {
                return Err(refuse(format!(
                    "the host has {} already",
                    found.path.display()
                )));
            }
        }
    }
    // The generator directory outranks /usr/lib: an instance would replace the host's
    // template for that instance, and a template's drop-ins apply to the host's instances.
    if let Some(template) = crate::names::template_of(name)
        && let Some(found) = (host.unit_file)(&template)
        && found.kind != HostKind::Masked
    {
        return Err(refuse(format!(
            "it is an instance of the host's template {}",
            found.path.display()
        )));
    }
    if parse_unit_name(name).is_some_and(|n| n.is_template())
        && let Some(path) = (host.instance_of)(name)
    {
        return Err(refuse(format!(
            "its drop-ins would apply to the host's instance {}",
            path.display()
        )));
    }
    if let Some(first) = owner.get(name) {
        return Err(refuse(format!(
            "image {} provides it already",
            first.image.display()
        )));
    }
    if let Ok(file) = file
        && let Some(why) = overrides_confinement(name, file)
    {
        return Err(refuse(why));
    }
    let kind = parse_unit_name(name).map_or("", |n| n.kind);
    let profile = (host.profile)(&att.profile, kind).map_err(refuse)?;
    if profile.is_none() && kind == "service" {
        return Err(refuse(format!(
            "no profile '{}' for services was found, and no service is attached without one",
            att.profile
        )));
    }
    Ok((placement, profile))
}

/// A setting of the unit itself that would undo what the drop-in confines, if it has one:
/// its own root (a directory image's unit with `RootImage=` runs from that image, and the
/// drop-in's `RootDirectory=` does not reset it), or commands a socket runs on the host
/// (socket units get no root, as with portablectl).
fn overrides_confinement(name: &str, file: &unit_syntax::UnitFile) -> Option<String> {
    let set = |section: &str, key: &str| file.values(section, key).iter().any(|v| !v.is_empty());
    for key in ["RootDirectory", "RootImage"] {
        if name.ends_with(".service") && set("Service", key) {
            return Some(format!(
                "it sets {key}= itself, which the image's root must not be replaced by"
            ));
        }
    }
    for key in [
        "ExecStartPre",
        "ExecStartPost",
        "ExecStopPre",
        "ExecStopPost",
    ] {
        if name.ends_with(".socket") && set("Socket", key) {
            return Some(format!(
                "its {key}= would run on the host, outside the image"
            ));
        }
    }
    None
}

/// The unit a socket, timer or path unit starts (`Service=`, `Unit=`, else the unit of the
/// same name; an `Accept=yes` socket starts instances of `NAME@.service`).
fn activated_unit(unit: &UnitSource, file: &UnitParse) -> Option<String> {
    let n = parse_unit_name(&unit.name)?;
    let (section, key) = match n.kind {
        "socket" => ("Socket", "Service"),
        "timer" => ("Timer", "Unit"),
        "path" => ("Path", "Unit"),
        _ => return None,
    };
    let stem = unit.name.strip_suffix(&format!(".{}", n.kind))?;
    let file = file.as_ref().ok();
    if let Some(named) = file
        .as_ref()
        .and_then(|f| f.last(section, key))
        .filter(|v| !v.is_empty())
    {
        return Some(named.to_string());
    }
    let accept = n.kind == "socket"
        && file
            .as_ref()
            .and_then(|f| f.last("Socket", "Accept"))
            .is_some_and(|v| matches!(v, "yes" | "true" | "on" | "1" | "y" | "t"));
    if accept && n.instance.is_none() {
        return Some(format!("{stem}@.service"));
    }
    Some(format!("{stem}.service"))
}

/// Whether `target` is attached from the image (itself, or as an instance of a template).
fn provides(names: &BTreeSet<&str>, target: &str) -> bool {
    names.contains(target)
        || crate::names::template_of(target).is_some_and(|t| names.contains(t.as_str()))
}

fn place_unit(
    plan: &mut Plan,
    att: &Attachment,
    unit: &UnitSource,
    placement: &Placement,
    profile: Option<PathBuf>,
    host: &Host,
) -> Result<(), String> {
    let dropins = PathBuf::from(format!("{}.d", unit.name));
    // plan() refused every image whose paths are not UTF-8.
    fn path_of(i: &Image) -> &str {
        i.path.to_str().unwrap_or_default()
    }
    let extensions: Vec<DropinExtension> = att
        .extensions
        .iter()
        .map(|e| DropinExtension {
            path: path_of(&e.image),
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
        path: path_of(&att.image),
        root_file_name: &att.image.file_name,
        file_name: &origin.file_name,
        kind: att.image.kind,
        release: &att.release,
        extensions: &extensions,
    };
    // The drop-in first: a unit is never written without it.
    let text = portable_dropin(host.systemd_version, &unit.name, &image, host.os_release)?;
    if *placement == Placement::Whole {
        plan.nodes.insert(
            OutPath::from(unit.name.as_str()),
            Node::File(unit.bytes.clone()),
        );
    }
    if let Some(profile) = profile {
        plan.nodes.insert(
            dropins.join("10-profile.conf").into(),
            Node::Symlink(profile),
        );
    }
    plan.nodes.insert(
        dropins.join("20-portable.conf").into(),
        Node::File(text.into_bytes()),
    );
    Ok(())
}

/// The `[Install]` links of `unit`: made now, but for its aliases, which wait in `later`
/// with every notice about its links.
fn place_links(plan: &mut Plan, later: &mut Vec<Later>, unit: &Linked, host: &Host) {
    let what = format!("Unit {} of image {}", unit.name, unit.label);
    let subject = || Subject::Unit {
        unit: unit.name.to_string(),
        image: unit.at.to_path_buf(),
    };
    let debug = plan.diagnostics.keep().debug();
    // `message` is `reason` told of this unit.
    let tell =
        |later: &mut Vec<Later>, level: Level, fails: bool, reason: String, message: String| {
            let d = Diagnostic::new(subject(), level, reason, message).fails_if(fails);
            later.push(Later::Tell(d));
        };
    let mut en = match unit.file {
        Ok(file) => enablement(unit.name, file, host.systemd_version, host.specifiers),
        Err(e) => {
            let message = format!("{what} not enabled: cannot parse it: {e}.");
            tell(later, Level::Warn, true, message.clone(), message);
            return;
        }
    };
    let warned = few_then_count(
        &en.warnings,
        |w| format!("{what}: line {}: {}.", w.line, w.message),
        |n| format!("{what}: [Install] {n} more lines ignored."),
    );
    for message in warned {
        tell(later, Level::Warn, false, message.clone(), message);
    }
    if let Some(why) = &en.refused {
        // systemctl enable refuses such a unit whole.
        let message = format!("{what} not enabled: [Install] {why}.");
        tell(later, Level::Warn, true, message.clone(), message);
        return;
    }
    let problems = few_then_count(
        &en.problems,
        |problem| format!("{what}: [Install] {problem}, ignoring."),
        |n| format!("{what}: [Install] {n} more invalid entries, ignoring."),
    );
    for message in problems {
        tell(later, Level::Warn, true, message.clone(), message);
    }
    if en.links.len() > MAX_LINKS_PER_UNIT {
        let message = format!(
            "{what}: [Install] asks for {} links, more than {MAX_LINKS_PER_UNIT}: only the first {MAX_LINKS_PER_UNIT} are made.",
            en.links.len()
        );
        tell(later, Level::Warn, true, message.clone(), message);
        en.links.truncate(MAX_LINKS_PER_UNIT);
    }
    if en.template_without_instance {
        let message = format!("{what} is a template without DefaultInstance=, not enabled.");
        tell(later, Level::Info, false, message.clone(), message);
    }
    for link in en.links {
        let path = OutPath::from(link.path);
        if link.is_alias {
            later.push(Later::Alias {
                what: what.clone(),
                subject: subject(),
                path,
                target: link.target,
            });
            continue;
        }
        if plan.node_count() >= MAX_OUTPUT_NODES && !plan.nodes.contains_key(&path) {
            if let Some(message) = plan.links_full(&what) {
                tell(later, Level::Error, true, message.clone(), message);
            }
            return;
        }
        if debug {
            let reason = format!("link {path} -> {}", link.target.display());
            let message = format!("{what}: {reason}.");
            tell(later, Level::Debug, false, reason, message);
        }
        // A link path can only repeat for the same unit (listed twice), which is harmless.
        plan.nodes.entry(path).or_insert(Node::Symlink(link.target));
    }
}

/// The lines of a unit file systemd ignores, as it will say when it loads the unit: a few,
/// then how many more.
fn tell_warnings(log: &mut ImageLog, unit: &str, label: &str, warnings: &[unit_syntax::Warning]) {
    let what = format!("Unit {unit} of image {label}");
    let lines = few_then_count(
        warnings,
        |w| format!("{what}: line {}: {}", w.line, w.message),
        |n| format!("{what}: {n} more lines ignored."),
    );
    for message in lines {
        log.say_unit(unit, Level::Warn, false, message.clone(), message);
    }
}

/// Most lines told of one kind about one unit: a crafted unit can hold thousands of
/// entries.
const SHOWN_PER_UNIT: usize = 3;

/// A line for each of the first [`SHOWN_PER_UNIT`] `items`, then one with how many more.
fn few_then_count<T>(
    items: &[T],
    line: impl Fn(&T) -> String,
    more: impl FnOnce(usize) -> String,
) -> Vec<String> {
    let mut lines: Vec<String> = items.iter().take(SHOWN_PER_UNIT).map(line).collect();
    if items.len() > SHOWN_PER_UNIT {
        lines.push(more(items.len() - SHOWN_PER_UNIT));
    }
    lines
}

/// An alias of a unit, made once every image is placed, unless its name is taken.
fn place_alias(
    plan: &mut Plan,
    host: &Host,
    what: &str,
    subject: &Subject,
    path: OutPath,
    target: PathBuf,
) {
    let tell = |plan: &mut Plan, level: Level, fails: bool, reason: String, message: String| {
        plan.notice(Diagnostic::new(subject.clone(), level, reason, message).fails_if(fails));
    };
    let name = path.to_str().unwrap_or_default();
    // As for units: an alias may not take a host unit's name, nor an instance name of a
    // host template (the generator directory outranks /usr/lib).
    if let Some(why) = alias_clash(plan, host, name) {
        let message = format!("{what}: alias {name} not created: {why}.");
        tell(plan, Level::Warn, true, message.clone(), message);
        return;
    }
    if plan.node_count() >= MAX_OUTPUT_NODES && !plan.nodes.contains_key(&path) {
        if let Some(message) = plan.links_full(what) {
            tell(plan, Level::Error, true, message.clone(), message);
        }
        return;
    }
    let reason = format!("link {path} -> {}", target.display());
    let message = format!("{what}: {reason}.");
    tell(plan, Level::Debug, false, reason, message);
    plan.nodes.entry(path).or_insert(Node::Symlink(target));
}

/// Why an alias may not be made: it would take a name already planned, a host unit's name,
/// or an instance name of a host template (the generator directory outranks /usr/lib).
fn alias_clash(plan: &Plan, host: &Host, name: &str) -> Option<String> {
    if plan.names(name) {
        return Some("the name is taken by another unit or alias".to_string());
    }
    if let Some(h) = (host.unit_file)(name) {
        return Some(format!("the host has {} already", h.path.display()));
    }
    let template = crate::names::template_of(name)?;
    let h = (host.unit_file)(&template)?;
    Some(format!(
        "it is an instance of the host's template {}",
        h.path.display()
    ))
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
    use crate::os_release::OsRelease;

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
        let host: Vec<(&str, HostKind)> =
            host_units.iter().map(|n| (*n, HostKind::Other)).collect();
        run_on(atts, &host, 252)
    }

    /// A host with these unit files: packages' in /usr/lib, overrides in /etc, masks.
    fn run_on(atts: &[Attachment], host_units: &[(&str, HostKind)], version: u32) -> Plan {
        on_test_host(host_units, version, |host| plan(atts, host))
    }

    /// The plan made as a run makes it, each image's nodes taken out (to be written) once it
    /// is added; put back together.
    fn streamed(atts: &[Attachment], host_units: &[(&str, HostKind)]) -> Plan {
        on_test_host(host_units, 252, |host| {
            let mut planner = Planner::new(host);
            let mut taken = Nodes::new();
            for att in atts {
                planner.add(att);
                taken.append(&mut planner.take_nodes());
            }
            let mut plan = planner.finish();
            for (path, node) in taken {
                assert!(plan.nodes.insert(path, node).is_none());
            }
            plan
        })
    }

    fn on_test_host<R>(
        host_units: &[(&str, HostKind)],
        version: u32,
        f: impl FnOnce(&Host) -> R,
    ) -> R {
        let unit_file = |n: &str| {
            host_units.iter().find(|(h, _)| *h == n).map(|&(h, kind)| {
                let dir = match kind {
                    HostKind::Other => "/usr/lib/systemd/system",
                    _ => "/etc/systemd/system",
                };
                HostUnit {
                    path: PathBuf::from(dir).join(h),
                    kind,
                }
            })
        };
        let instance_of = |t: &str| {
            let (head, kind) = t.split_once("@.")?;
            host_units
                .iter()
                .find(|(h, _)| {
                    h.starts_with(&format!("{head}@"))
                        && h.ends_with(&format!(".{kind}"))
                        && h.len() > t.len()
                })
                .map(|(h, _)| PathBuf::from("/usr/lib/systemd/system").join(h))
        };
        let profile = |p: &str, t: &str| {
            if p == "writable" {
                return Err("its profile is writable by every user".to_string());
            }
            Ok((t == "service" && p != "missing")
                .then(|| PathBuf::from(format!("/usr/lib/systemd/portable/profile/{p}/{t}.conf"))))
        };
        f(&Host {
            unit_file: &unit_file,
            instance_of: &instance_of,
            profile: &profile,
            os_release: "/etc/os-release",
            keep: Keep::All,
            systemd_version: version,
            specifiers: &|c| (c == 'H').then(|| Ok("host".to_string())),
            not_mounted: &[],
        })
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
            p.nodes[&OutPath::from("multi-user.target.wants/foo.service")],
            Node::Symlink("../foo.service".into())
        );
        assert!(!p.failed());
    }

    #[test]
    fn the_reattach_unit_enters_through_the_plan_and_its_name_is_reserved() {
        let reattach = late_mounts::REATTACH_UNIT;
        let atts = [att(
            "/var/lib/portables/portables",
            vec![unit(reattach, "[Service]\nExecStart=/bin/evil\n")],
        )];
        let p = run(&atts, &[]);
        assert!(paths(&p).is_empty(), "{:?}", paths(&p));
        assert!(p.failed());
        assert!(
            messages(&p)[0]
                .ends_with("not attached: the generator writes a unit of that name itself."),
            "{:?}",
            messages(&p)
        );

        let on_host_with = |not_mounted: &[String], installed: Option<HostUnit>| {
            let unit_file = |name: &str| installed.clone().filter(|_| name == reattach);
            let instance_of = |_: &str| None;
            let profile = |_: &str, _: &str| Ok(None);
            plan(
                &atts,
                &Host {
                    unit_file: &unit_file,
                    instance_of: &instance_of,
                    profile: &profile,
                    os_release: "/etc/os-release",
                    keep: Keep::All,
                    systemd_version: 257,
                    specifiers: &|_| None,
                    not_mounted,
                },
            )
        };
        let on_host = |not_mounted: &[String]| on_host_with(not_mounted, None);
        let p = on_host(&["/var".to_string()]);
        assert_eq!(
            paths(&p),
            [
                format!("multi-user.target.wants/{reattach}"),
                reattach.to_string(),
                late_mounts::REATTACH_DROPIN.to_string(),
            ]
        );
        let Node::File(text) = &p.nodes[&OutPath::from(late_mounts::REATTACH_DROPIN)] else {
            panic!("not a file");
        };
        assert!(String::from_utf8_lossy(text).contains("=/var\n"));
        assert_eq!(
            messages(&p)[0],
            format!(
                "/var not mounted yet: {reattach} will reload systemd once it is, to attach the images there."
            )
        );

        // Installed as packaged: only the link to it and the conditions of this boot.
        let vendor = PathBuf::from(format!("/usr/lib/systemd/system/{reattach}"));
        let installed = |kind| {
            Some(HostUnit {
                path: vendor.clone(),
                kind,
            })
        };
        let p = on_host_with(&["/var".to_string()], installed(HostKind::Other));
        assert_eq!(
            paths(&p),
            [
                format!("multi-user.target.wants/{reattach}"),
                late_mounts::REATTACH_DROPIN.to_string(),
            ]
        );
        assert_eq!(
            p.nodes[&OutPath::from(Path::new("multi-user.target.wants").join(reattach))],
            Node::Symlink(vendor.clone())
        );
        // Masked by the administrator: nothing, and one line saying what that means.
        let p = on_host_with(&["/var".to_string()], installed(HostKind::Masked));
        assert!(paths(&p).is_empty());
        assert!(
            messages(&p)[0].contains("is masked by"),
            "{:?}",
            messages(&p)
        );
    }

    #[test]
    fn sockets_get_no_profile() {
        let p = run(
            &[att(
                "/var/lib/portables/foo",
                vec![unit("foo.socket", "[Socket]\n"), unit("foo.service", "")],
            )],
            &[],
        );
        assert_eq!(
            paths(&p),
            [
                "foo.service",
                "foo.service.d/10-profile.conf",
                "foo.service.d/20-portable.conf",
                "foo.socket",
                "foo.socket.d/20-portable.conf"
            ]
        );
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
            p.diagnostics[0]
                .message
                .contains("the host has /usr/lib/systemd/system/foo.service already")
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
        assert_eq!(
            p.nodes[&OutPath::from("foo.service")],
            Node::File(b"A".to_vec())
        );
        assert!(p.failed());
        assert!(
            p.diagnostics.iter().any(|n| n.message
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
        assert_eq!(p.nodes[&OutPath::from("b.service")], Node::File(vec![]));
        assert_eq!(
            p.nodes[&OutPath::from("a-alias.service")],
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

    /// How many of the plan's lines are logged at the default level.
    fn loud_lines(p: &Plan) -> usize {
        p.diagnostics
            .iter()
            .filter(|n| n.level <= Level::Info)
            .count()
    }

    fn messages(p: &Plan) -> Vec<&str> {
        p.diagnostics.iter().map(|n| n.message.as_str()).collect()
    }

    #[test]
    fn names_whose_dropins_apply_elsewhere() {
        let p = run(
            &[att(
                "/var/lib/portables/systemd",
                vec![unit("systemd-.service", ""), unit("systemd-x.service", "")],
            )],
            &[],
        );
        assert_eq!(
            paths(&p),
            [
                "systemd-x.service",
                "systemd-x.service.d/10-profile.conf",
                "systemd-x.service.d/20-portable.conf"
            ]
        );
        assert!(p.failed());
        assert!(messages(&p)[0].contains(
            "systemd would apply its drop-ins systemd-.service.d/ to every unit named systemd-*.service on the host"
        ));
    }

    #[test]
    fn host_templates_and_instances() {
        let a = att(
            "/var/lib/portables/getty",
            vec![unit("getty@tty1.service", ""), unit("getty@.socket", "")],
        );
        let p = run(&[a], &["getty@.service", "getty@ttyS0.socket"]);
        assert!(p.nodes.is_empty(), "{:?}", paths(&p));
        let m = messages(&p);
        assert!(
            m.iter().any(|l| l.contains(
                "an instance of the host's template /usr/lib/systemd/system/getty@.service"
            )),
            "{m:?}"
        );
        assert!(
            m.iter().any(|l| l.contains(
                "would apply to the host's instance /usr/lib/systemd/system/getty@ttyS0.socket"
            )),
            "{m:?}"
        );
    }

    #[test]
    fn overrides_and_masks_on_the_host() {
        let a = att(
            "/var/lib/portables/foo",
            vec![
                unit("foo.service", "[Install]\nWantedBy=multi-user.target\n"),
                unit("foo-masked.service", ""),
            ],
        );
        let p = run_on(
            &[a],
            &[
                ("foo.service", HostKind::Override),
                ("foo-masked.service", HostKind::Masked),
            ],
            257,
        );
        // The administrator's copy keeps the image's drop-ins; the mask is respected.
        assert_eq!(
            paths(&p),
            [
                "foo.service.d/10-profile.conf",
                "foo.service.d/20-portable.conf",
                "multi-user.target.wants/foo.service"
            ]
        );
        assert!(!p.failed(), "{:?}", messages(&p));
        assert!(messages(&p).contains(&"Unit foo-masked.service of image /var/lib/portables/foo not attached: it is masked by /etc/systemd/system/foo-masked.service."));
    }

    #[test]
    fn units_that_undo_their_confinement() {
        let p = run(
            &[att(
                "/var/lib/portables/foo",
                vec![
                    unit("foo.service", "[Service]\nRootImage=/dev/sda1\n"),
                    unit("foo-b.service", "[Service]\nRootDirectory=/\n"),
                    unit("foo-c.service", "[Service]\nRootImage=\n"),
                    unit(
                        "foo-c.socket",
                        "[Socket]\nListenStream=1\nExecStartPre=/bin/sh\n",
                    ),
                ],
            )],
            &[],
        );
        assert_eq!(
            paths(&p),
            [
                "foo-c.service",
                "foo-c.service.d/10-profile.conf",
                "foo-c.service.d/20-portable.conf"
            ]
        );
        let m = messages(&p);
        assert!(m.iter().any(|l| l.contains("foo.service of image /var/lib/portables/foo not attached: it sets RootImage= itself")), "{m:?}");
        assert!(
            m.iter()
                .any(|l| l.contains("its ExecStartPre= would run on the host")),
            "{m:?}"
        );
    }

    #[test]
    fn activators_need_their_unit_from_the_image() {
        let p = run(
            &[att(
                "/var/lib/portables/foo",
                vec![
                    unit("foo.socket", "[Socket]\nListenStream=1\n"),
                    unit("foo.service", ""),
                    unit("foo-web.socket", "[Socket]\nAccept=yes\n"),
                    unit("foo-web@.service", ""),
                    unit("foo.timer", "[Timer]\nUnit=systemd-journald.service\n"),
                    unit("foo-x.path", "[Path]\nPathExists=/x\n"),
                ],
            )],
            &["foo.service"],
        );
        let names: Vec<String> = paths(&p).into_iter().filter(|p| !p.contains('/')).collect();
        // foo.service is the host's: foo.socket would start it unconfined.
        assert_eq!(names, ["foo-web.socket", "foo-web@.service"]);
        let m = messages(&p);
        assert!(m.iter().any(|l| l.contains("foo.socket of image /var/lib/portables/foo not attached: it would start foo.service")), "{m:?}");
        assert!(
            m.iter()
                .any(|l| l.contains("foo.timer") && l.contains("systemd-journald.service")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|l| l.contains("foo-x.path") && l.contains("foo-x.service")),
            "{m:?}"
        );
    }

    #[test]
    fn services_need_a_usable_profile() {
        let mut a = att(
            "/var/lib/portables/foo",
            vec![unit("foo.service", ""), unit("foo.target", "")],
        );
        a.profile = "missing".into();
        let p = run(&[a], &[]);
        assert_eq!(paths(&p), ["foo.target", "foo.target.d/20-portable.conf"]);
        assert!(messages(&p)[0].contains("no profile 'missing' for services was found"));
        let mut a = att("/var/lib/portables/foo", vec![unit("foo.service", "")]);
        a.profile = "writable".into();
        let p = run(&[a], &[]);
        assert!(p.nodes.is_empty());
        assert!(messages(&p)[0].contains("writable by every user"));
    }

    #[test]
    fn paths_that_cannot_be_written() {
        use std::os::unix::ffi::OsStrExt;
        let mut a = att("/var/lib/portables/x", vec![unit("x.service", "")]);
        a.image.path = PathBuf::from(std::ffi::OsStr::from_bytes(b"/srv/\xff/x"));
        let mut b = att("/var/lib/portables/y\\", vec![unit("y.service", "")]);
        b.image.name = "y".into();
        let p = run(&[a, b], &[]);
        assert!(p.nodes.is_empty(), "{:?}", paths(&p));
        let m = messages(&p);
        assert!(
            m[0].contains("is not valid UTF-8, which a unit file cannot name"),
            "{m:?}"
        );
        assert!(
            m[1].contains("cannot be written faithfully") && m[1].contains("line continuation"),
            "{m:?}"
        );
    }

    #[test]
    fn limits_per_image_and_run() {
        let units: Vec<UnitSource> = (0..MAX_UNITS_PER_IMAGE + 50)
            .map(|i| unit(&format!("foo-{i:04}.service"), ""))
            .collect();
        let p = run(&[att("/var/lib/portables/foo", units)], &[]);
        assert_eq!(
            p.nodes
                .keys()
                .filter(|k| k.components().count() == 1)
                .count(),
            MAX_UNITS_PER_IMAGE
        );
        assert!(p.failed());
        // The lines about one image are bounded.
        let units: Vec<UnitSource> = (0..100)
            .map(|i| unit(&format!("foo-{i:03}.service"), "[Service]\nRootImage=/x\n"))
            .collect();
        let p = run(&[att("/var/lib/portables/foo", units)], &[]);
        let loud = loud_lines(&p);
        assert_eq!(loud, MAX_LINES_PER_IMAGE + 1, "{:?}", messages(&p));
        assert!(
            messages(&p)
                .last()
                .unwrap()
                .contains("84 more lines like these")
        );
    }

    /// The lines systemd ignores in a unit are said once, at warning level, naming the unit
    /// and the line, without failing the run; and however many units have them, one image
    /// says at most so many.
    #[test]
    fn ignored_lines_are_warned_of_once() {
        let text =
            "[Service]\nExecStart=/bin/true\nNoEquals\n[Install]\nWantedBy=a.target\nBogus=1\n";
        let p = run(
            &[att(
                "/var/lib/portables/foo",
                vec![unit("foo.service", text)],
            )],
            &[],
        );
        let warned: Vec<&str> = p
            .diagnostics
            .iter()
            .filter(|d| d.level == Level::Warn)
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(
            warned,
            [
                "Unit foo.service of image /var/lib/portables/foo: line 3: Missing '=', ignoring line.",
                "Unit foo.service of image /var/lib/portables/foo: line 6: unknown key Bogus= in [Install], ignoring.",
            ],
            "{:?}",
            messages(&p)
        );
        assert!(!p.failed());
        assert!(
            p.nodes
                .contains_key(&OutPath::from("a.target.wants/foo.service"))
        );

        let units: Vec<UnitSource> = (0..100)
            .map(|i| {
                unit(
                    &format!("foo-{i:03}.service"),
                    "[Install]\nA=1\nB=2\nC=3\nD=4\n",
                )
            })
            .collect();
        let p = run(&[att("/var/lib/portables/foo", units)], &[]);
        let loud = loud_lines(&p);
        assert!(
            loud <= 2 * MAX_LINES_PER_IMAGE + 2,
            "{loud}: {:?}",
            messages(&p)
        );
        assert!(
            messages(&p)
                .iter()
                .any(|m| m.contains("more lines about its units' [Install] sections"))
        );
    }

    /// Every drop-in the plan writes reads back as what was decided (`boundary::verify` runs
    /// inside render); here over names and paths chosen to be awkward.
    #[test]
    fn every_dropin_reads_back() {
        for name in ["a b", "a%b", "a\"b", "a'b", "a\\b", "a:b", "ä", "a=b"] {
            let mut a = att(
                &format!("/var/lib/portables/{name}"),
                vec![unit("x.service", "")],
            );
            a.image.file_name = name.to_string();
            let p = run_on(&[a], &[], 257);
            for (path, node) in &p.nodes {
                if let Node::File(bytes) = node
                    && path.ends_with("20-portable.conf")
                {
                    let text = String::from_utf8(bytes.clone()).unwrap();
                    let (file, _) = unit_syntax::parse(text.as_bytes()).unwrap();
                    let root = file.last("Service", "RootDirectory").unwrap();
                    assert_eq!(
                        root.replace("%%", "%"),
                        format!("/var/lib/portables/{name}")
                    );
                }
            }
        }
    }

    /// Whatever the input, one run makes at most `MAX_OUTPUT_NODES` files and links.
    #[test]
    fn output_nodes_per_run_are_bounded() {
        let targets: String = (0..60).map(|i| format!("t{i}.target ")).collect();
        let text = format!("[Install]\nWantedBy={targets}\n");
        let atts: Vec<Attachment> = (0..5)
            .map(|i| {
                let units = (0..MAX_UNITS_PER_IMAGE)
                    .map(|u| unit(&format!("img{i}-{u:03}.service"), &text))
                    .collect();
                att(&format!("/var/lib/portables/img{i}"), units)
            })
            .collect();
        let p = run(&atts, &[]);
        assert!(p.nodes.len() <= MAX_OUTPUT_NODES, "{}", p.nodes.len());
        assert!(p.nodes.len() > MAX_OUTPUT_NODES - 100, "{}", p.nodes.len());
        assert!(p.failed());
        assert_eq!(
            messages(&p)
                .iter()
                .filter(|m| m.contains("the most it makes"))
                .count(),
            1
        );
        // Every unit written still has its drop-in.
        for k in p.nodes.keys().filter(|k| k.components().count() == 1) {
            let dropin = OutPath::from(format!("{k}.d/20-portable.conf"));
            assert!(p.nodes.contains_key(&dropin), "{}", k.display());
        }
    }

    #[test]
    fn aliases_do_not_take_host_instances() {
        // Refused by the [Install] rules today (a plain unit's alias is plain), and by the
        // alias check should those ever allow it (systemctl lets a template take an instance
        // alias).
        let p = run(
            &[att(
                "/var/lib/portables/foo",
                vec![unit("foo.service", "[Install]\nAlias=getty@tty1.service\n")],
            )],
            &["getty@.service"],
        );
        assert!(!p.nodes.contains_key(&OutPath::from("getty@tty1.service")));
        assert!(
            messages(&p)
                .iter()
                .any(|m| m.contains("Alias=getty@tty1.service"))
        );
    }

    /// A run writes each image's part of the plan as soon as it is added: what it writes
    /// and says is the plan made of every image at once, aliases, names taken by earlier
    /// images, administrators' copies and the limit on nodes included.
    #[test]
    fn planning_image_by_image_plans_the_same() {
        let targets: String = (0..60).map(|i| format!("t{i}.target ")).collect();
        let crowded: Vec<Attachment> = (0..6)
            .map(|i| {
                let text = format!("[Install]\nWantedBy={targets}\nAlias=img{i}-alias.service\n");
                let units = (0..MAX_UNITS_PER_IMAGE)
                    .map(|u| unit(&format!("img{i}-{u:03}.service"), &text))
                    .collect();
                att(&format!("/var/lib/portables/img{i}"), units)
            })
            .collect();
        let install =
            "[Install]\nWantedBy=multi-user.target\nAlias=b.service a-alias.service ours.service\n";
        type Case<'a> = (Vec<Attachment>, &'a [(&'a str, HostKind)]);
        let cases: [Case; 2] = [
            (
                vec![
                    att("/var/lib/portables/a", vec![unit("a.service", install)]),
                    att(
                        "/var/lib/portables/b",
                        vec![unit("b.service", "[Install]\nAlias=a-alias.service\n")],
                    ),
                    att("/var/lib/portables/c", vec![unit("a.service", "")]),
                    att(
                        "/var/lib/portables/d",
                        vec![
                            unit("ours.service", "[Install]\nWantedBy=multi-user.target\n"),
                            unit("d.socket", "[Install]\nWantedBy=sockets.target\n"),
                        ],
                    ),
                ],
                &[("ours.service", HostKind::Override)],
            ),
            (crowded, &[]),
        ];
        let mut said = Vec::new();
        for (atts, host) in cases {
            let whole = run_on(&atts, host, 252);
            let by_image = streamed(&atts, host);
            assert_eq!(paths(&by_image), paths(&whole));
            assert_eq!(by_image.nodes, whole.nodes);
            assert_eq!(messages(&by_image), messages(&whole));
            said.extend(messages(&whole).into_iter().map(str::to_string));
        }
        for expected in [
            "alias b.service not created: the name is taken by another unit or alias",
            "alias a-alias.service not created: the name is taken by another unit or alias",
            "alias ours.service not created: the host has /etc/systemd/system/ours.service",
            "not attached: image /var/lib/portables/a provides it already",
            "[Install] links not made, nor those of later units",
            "Image /var/lib/portables/img5 and later ones not attached in full",
        ] {
            assert!(
                said.iter().any(|m| m.contains(expected)),
                "{expected}: {said:#?}"
            );
        }
    }
}
