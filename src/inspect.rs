//! `portables-generator inspect PATH|NAME`: one image, read in user space as the generator
//! reads it: its os-release, every file of its unit directories and whether it is attached
//! or why not, its profile, its verity data and its extensions. Whether and how it is
//! attached comes from a real run of the stages ([`generate::generate`]), or for an image
//! outside them, from the same reading and planning code applied to it alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::attach::{self, read_extension};
use crate::cli::InspectArgs;
use crate::config::{self, Config, ImageEntry};
use crate::diagnostic::Diagnostics;
use crate::discover::{self, image_at};
use crate::facts::{self, UnitFile, read_os_release, unwanted_reason};
use crate::generate::{self, EXIT_FAILED, EXIT_OK};
use crate::image::chase::Tree;
use crate::image::open::{Opened, open_image};
use crate::image::{FileKind, MAX_FILE_BYTES};
use crate::kmsg::shown;
use crate::list::{self, State, UnitEntry, print_out};
use crate::model::{Attachment, Image, ImageKind, Portable};
use crate::names::unit_matches;
use crate::plan::Plan;
use crate::root::Root;
use crate::systemd_version::{self, Version};
use crate::{profile, select, verity};

/// What `inspect` shows: the JSON document of `inspect --json`.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// The systemd major version decided for.
    pub systemd_version: u32,
    /// The image's NAME: its `NAME.conf`, its default unit prefix.
    pub name: String,
    /// `directory`, `raw` or `block`.
    pub kind: &'static str,
    /// For a raw image or block device: its file system, or the partitions read from it.
    pub format: Option<String>,
    /// Its path with links and version directories resolved.
    pub path: PathBuf,
    /// The path it was found at or given as.
    pub found_at: PathBuf,
    /// Whether the generator attaches it: attached, not enabled, masked, left out, failed.
    pub state: State,
    /// Why not, where it is not attached.
    pub reason: Option<String>,
    /// The `portables.d` file that configures it, if any.
    pub configured_in: Option<PathBuf>,
    /// The unit prefixes its units must start with.
    pub unit_prefixes: Vec<String>,
    /// Its os-release, where it could be read.
    pub os_release: Option<Release>,
    /// The profile its units run with.
    pub profile: ProfileInfo,
    /// What verity data PID 1 would use for it.
    pub verity: VerityInfo,
    /// The extensions configured for it, in order.
    pub extensions: Vec<ExtensionInfo>,
    /// Every file of its unit directories, then the units of its extensions.
    pub units: Vec<UnitInfo>,
}

/// An os-release file read from the image.
#[derive(Debug, Serialize)]
pub struct Release {
    /// Where in the image it was read.
    pub file: String,
    /// Its fields, in file order.
    pub fields: BTreeMap<String, String>,
    /// Its text, with `--cat`.
    pub text: Option<String>,
}

/// The profile that applies.
#[derive(Debug, Serialize)]
pub struct ProfileInfo {
    /// Its name.
    pub name: String,
    /// Where it was set: a `NAME.conf`, the `[Defaults]`, or `None` for the default.
    pub set_in: Option<String>,
    /// The profile drop-in a service gets (a host path), if there is one.
    pub service_dropin: Option<PathBuf>,
}

/// Verity data of the image.
#[derive(Debug, Serialize)]
pub struct VerityInfo {
    /// What was found, in one line.
    pub found: String,
    /// Whether PID 1 will verify the image with it.
    pub enforced: bool,
}

/// One extension configured for the image.
#[derive(Debug, Serialize)]
pub struct ExtensionInfo {
    /// Its path, as `Extensions=` gives it.
    pub path: PathBuf,
    /// Whether the generator would layer it over this image.
    pub compatible: bool,
    /// Why not.
    pub reason: Option<String>,
}

/// One unit file of the image.
#[derive(Debug, Serialize)]
pub struct UnitInfo {
    /// Its name.
    pub name: String,
    /// Where it is in the image (or in the extension it came from).
    pub path: String,
    /// `attached`, `not-enabled`, `left-out`, `failed`; `not-matched` for a file not taken
    /// from the image, `shadowed` for one an earlier unit directory has too.
    pub state: &'static str,
    /// Why, where it is not attached.
    pub reason: Option<String>,
    /// The profile drop-in it is linked to.
    pub profile: Option<PathBuf>,
    /// The units that want it.
    pub wanted_by: Vec<String>,
    /// The other names it is linked under.
    pub aliases: Vec<String>,
    /// Its text, with `--cat`.
    pub text: Option<String>,
}

/// How the generator decided about the image.
struct Decided {
    portable: Portable,
    state: State,
    reason: Option<String>,
    attachment: Option<Attachment>,
    plan: Plan,
    diagnostics: Diagnostics,
}

/// `inspect`: print what the image holds and what the generator does with it. Exit status
/// 0 when it would be attached, 1 when not or when it cannot be read.
pub fn run(
    root: &Root,
    systemd: Option<Version>,
    args: &InspectArgs,
    env: impl Fn(&str) -> Option<String>,
) -> u8 {
    let version = systemd.unwrap_or_else(|| systemd_version::detect(root));
    match inspect(root, version.major, args, &env) {
        Ok(report) => {
            if args.json {
                let mut doc = serde_json::to_string_pretty(&report).unwrap_or_default();
                doc.push('\n');
                print_out(&doc);
            } else if args.cat {
                print_out(&cat(&report));
            } else {
                print_out(&text(&report));
            }
            match report.state {
                State::Attached | State::NotEnabled => EXIT_OK,
                _ => EXIT_FAILED,
            }
        }
        Err(why) => {
            eprintln!("portables-generator: {}: {why}", args.image.display());
            EXIT_FAILED
        }
    }
}

/// Find the image as the generator would, decide about it, and read what it holds.
fn inspect(
    root: &Root,
    systemd: u32,
    args: &InspectArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Inspection, String> {
    let mut diags = Diagnostics::default();
    let first_boot = env("SYSTEMD_FIRST_BOOT").as_deref() == Some("1");
    let generated = generate::generate(root, systemd, first_boot, diags.clone());
    let config = config::load(root, &mut diags);
    let decided = decide(root, systemd, args, &config, generated)?;
    let image = &decided.portable.image;
    let trust = decided.portable.setting(
        |c| &c.allow_writable_by_others,
        |d| &d.allow_writable_by_others,
    );
    // Opened again here only to show what it holds; the decisions above were the run's.
    let opened = open_image(&root.join(&image.path), image.kind, true);
    let (format, verity) = match &opened {
        Ok(o) => (
            list::describe_opened(o),
            match verity::detect(&image.path, &root.join(&image.path), o) {
                Ok(v) => VerityInfo {
                    found: verity::describe(&v),
                    enforced: verity::is_enforced(&v),
                },
                Err(e) => VerityInfo {
                    found: e,
                    enforced: false,
                },
            },
        ),
        Err(_) => (
            None,
            VerityInfo {
                found: "unknown: the image cannot be opened".into(),
                enforced: false,
            },
        ),
    };
    let tree = opened.and_then(Opened::tree);
    let release = tree
        .as_ref()
        .ok()
        .and_then(|t| read_release(t, systemd, args.cat));
    let os_release = tree
        .as_ref()
        .ok()
        .and_then(|t| read_os_release(t, systemd).ok());
    let extensions = decided
        .portable
        .extensions()
        .iter()
        .map(|path| match &os_release {
            None => ExtensionInfo {
                path: path.clone(),
                compatible: false,
                reason: Some("the image's os-release cannot be read".into()),
            },
            Some(base) => match read_extension(root, path, base, systemd, trust) {
                Ok(_) => ExtensionInfo {
                    path: path.clone(),
                    compatible: true,
                    reason: None,
                },
                Err(e) => ExtensionInfo {
                    path: path.clone(),
                    compatible: false,
                    reason: Some(e),
                },
            },
        })
        .collect();
    let units = match &tree {
        Ok(t) => unit_infos(t, &decided, args.cat)?,
        Err(_) => Vec::new(),
    };
    let (profile_name, _) = decided.portable.profile();
    let profile = ProfileInfo {
        service_dropin: profile::find_profile(root, systemd, &profile_name, "service")
            .ok()
            .flatten(),
        set_in: (decided.portable.profile().1)
            .then(|| decided.portable.set_in(|c| c.profile.is_some())),
        name: profile_name,
    };
    let portable = &decided.portable;
    Ok(Inspection {
        systemd_version: systemd,
        name: portable.name.clone(),
        kind: match image.kind {
            ImageKind::Directory => "directory",
            ImageKind::Raw => "raw",
            ImageKind::Block => "block",
        },
        format,
        path: image.path.clone(),
        found_at: image.found_at.clone(),
        state: decided.state,
        reason: decided.reason.clone(),
        configured_in: portable.config.as_ref().map(|c| c.file.clone()),
        unit_prefixes: portable.matches(),
        os_release: release,
        profile,
        verity,
        extensions,
        units,
    })
}

/// The image `args` names and what the generator decides about it: from the run itself when
/// the run has it, else read and planned alone with the settings of its NAME.
fn decide(
    root: &Root,
    systemd: u32,
    args: &InspectArgs,
    config: &Config,
    generated: generate::Generated,
) -> Result<Decided, String> {
    let given = &args.image;
    let is_path = given.as_os_str().to_string_lossy().contains('/');
    let path = if is_path && given.is_relative() && root.is_host() {
        std::env::current_dir()
            .map_err(|e| format!("cannot tell the current directory: {e}"))?
            .join(given)
    } else if is_path && given.is_relative() {
        Path::new("/").join(given)
    } else {
        given.clone()
    };
    let same = |image: &Image| {
        if is_path {
            image.found_at == path || image.path == path
        } else {
            // NAME, or the entry's own name in its search directory (`foo_1.2.raw`).
            image.entry.as_str() == path.as_os_str()
                || select::portable_name(image).is_ok_and(|n| n.as_str() == path.as_os_str())
        }
    };
    // The run's own decision, where the run had the image.
    let entries = list::entries(&generated);
    if let Some(portable) = generated.portables.iter().find(|p| same(&p.image)) {
        let entry = entries
            .iter()
            .find(|e| e.found_at == portable.image.found_at);
        let attachment = generated
            .attachments
            .iter()
            .find(|a| a.image.found_at == portable.image.found_at)
            .cloned();
        return Ok(Decided {
            portable: portable.clone(),
            state: entry.map_or(State::Failed, |e| e.state),
            reason: entry.and_then(|e| e.reason.clone()),
            attachment,
            plan: generated.plan,
            diagnostics: generated.diagnostics,
        });
    }
    // Found but not selected (masked, Attach=no, an invalid NAME.conf, shadowed), or not
    // found by the run at all: the image itself, with its NAME's settings.
    let found = generated.images.iter().find(|i| same(i)).cloned();
    let (image, verdict) = match found {
        Some(image) => {
            let entry = entries.iter().find(|e| e.found_at == image.found_at);
            let verdict = entry.map(|e| (e.state, e.reason.clone()));
            (image, verdict)
        }
        None if is_path => (image_at(root, &path)?, None),
        None => {
            let name = path.to_string_lossy().into_owned();
            let declared = config.image(&name).and_then(|c| c.image.clone());
            let shadowed = entries
                .iter()
                .find(|e| e.name == name && e.kind != "unknown");
            match (declared, shadowed) {
                (Some(p), _) => (image_at(root, &p)?, None),
                (None, Some(e)) => (image_at(root, &e.found_at)?, None),
                (None, None) => {
                    return Err(format!(
                        "no image of that name in {} and no Image= for it in portables.d",
                        discover::SEARCH_PATHS.join(", ")
                    ));
                }
            }
        }
    };
    let name = select::portable_name(&image)?;
    let (conf, masked) = match config.images.get(&name) {
        Some(ImageEntry::Configured(c)) => (Some(c.clone()), None),
        Some(ImageEntry::Masked { file }) => (
            None,
            Some(format!("its configuration {} is masked", file.display())),
        ),
        Some(ImageEntry::Invalid { reason, .. }) => {
            (None, Some(format!("invalid configuration: {reason}")))
        }
        None => (None, None),
    };
    let portable = Portable {
        name,
        image,
        config: conf.map(Box::new),
        defaults: config.defaults.clone(),
    };
    // What attaching it alone would give: the same reading and planning code.
    let mut diagnostics = Diagnostics::default();
    let attachment = attach::read_all(
        root,
        std::slice::from_ref(&portable),
        systemd,
        &mut diagnostics,
    )
    .into_iter()
    .next();
    let mut plan = generate::plan_alone(root, systemd, attachment.as_slice());
    diagnostics.extend(std::mem::take(&mut plan.diagnostics));
    let alone = generate::Generated {
        plan,
        diagnostics,
        images: vec![portable.image.clone()],
        portables: vec![portable.clone()],
        attachments: attachment.iter().cloned().collect(),
    };
    let entry = list::entries(&alone).into_iter().next();
    let (state, reason) = match (verdict, masked) {
        (Some((state, reason)), _) => (state, reason),
        (None, Some(why)) => (State::Masked, Some(why)),
        (None, None) => entry.map_or((State::Failed, None), |e| (e.state, e.reason)),
    };
    let (plan, diagnostics) = (alone.plan, alone.diagnostics);
    let not_in_run = if is_path && !generated.images.iter().any(same) {
        Some("not in a search path nor declared with Image=, so the generator does not attach it; as if it were".to_string())
    } else {
        None
    };
    Ok(Decided {
        portable,
        state,
        reason: match (reason, not_in_run) {
            (Some(r), Some(n)) => Some(format!("{n}: {r}")),
            (None, n) | (n, None) => n,
        },
        attachment,
        plan,
        diagnostics,
    })
}

/// The image's os-release as the generator reads it, with the file it came from.
fn read_release(tree: &Tree, systemd: u32, with_text: bool) -> Option<Release> {
    let release = read_os_release(tree, systemd).ok()?;
    let file = ["/etc/os-release", "/usr/lib/os-release"]
        .into_iter()
        .find(|p| tree.read_file(Path::new(p), MAX_FILE_BYTES).is_ok())?;
    let text = with_text
        .then(|| tree.read_file(Path::new(file), MAX_FILE_BYTES).ok())
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    Some(Release {
        file: file.to_string(),
        fields: release.fields.into_iter().collect(),
        text,
    })
}

/// Every file of the image's unit directories, and what became of it; then the units of
/// its extensions that were attached or left out.
fn unit_infos(tree: &Tree, decided: &Decided, with_text: bool) -> Result<Vec<UnitInfo>, String> {
    let prefixes = decided.portable.matches();
    let prefix_words = format!("the unit prefix {}", prefixes.join(" or "));
    let entries: Vec<UnitEntry> = match &decided.attachment {
        Some(att) => list::unit_entries(&decided.plan, &decided.diagnostics, att),
        None => Vec::new(),
    };
    let by_name: BTreeMap<&str, &UnitEntry> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let mut seen = BTreeSet::new();
    let mut infos = Vec::new();
    for file in facts::unit_files(tree)? {
        let path = file.path();
        let text = with_text.then(|| read_text(tree, &file)).flatten();
        let info = |name: String, state, reason| UnitInfo {
            name,
            path: path.clone(),
            state,
            reason,
            profile: None,
            wanted_by: Vec::new(),
            aliases: Vec::new(),
            text: text.clone(),
        };
        let Ok(name) = String::from_utf8(file.name.clone()) else {
            let why = "its name is not valid UTF-8".to_string();
            infos.push(info(shown(&file.name), "left-out", Some(why)));
            continue;
        };
        if !seen.insert(name.clone()) {
            let why = "an earlier unit directory has one of that name".to_string();
            infos.push(info(name, "shadowed", Some(why)));
            continue;
        }
        if !unit_matches(&name, &prefixes) {
            let why = unwanted_reason(&name, &prefix_words);
            infos.push(info(name, "not-matched", Some(why)));
            continue;
        }
        let mut unit = info(name.clone(), "failed", decided.reason.clone());
        match by_name.get(name.as_str()) {
            // Planned as if the image were attached, which it is not: say what would be.
            Some(e)
                if matches!(e.state, State::Attached | State::NotEnabled)
                    && !matches!(decided.state, State::Attached | State::NotEnabled) =>
            {
                unit.state = state_word(decided.state);
                unit.reason = Some("the image is not attached; were it, this unit would be".into());
                unit.profile.clone_from(&e.profile);
                unit.wanted_by.clone_from(&e.wanted_by);
                unit.aliases.clone_from(&e.aliases);
            }
            Some(e) => {
                unit.state = state_word(e.state);
                unit.reason.clone_from(&e.reason);
                unit.profile.clone_from(&e.profile);
                unit.wanted_by.clone_from(&e.wanted_by);
                unit.aliases.clone_from(&e.aliases);
            }
            // Matching, but the image as a whole is not attached: its reason is the unit's.
            None => {
                unit.state = match decided.state {
                    State::Attached | State::NotEnabled => "left-out",
                    other => state_word(other),
                };
            }
        }
        infos.push(unit);
    }
    // Units of extensions, and those left out under a name no file has (a count line).
    for e in &entries {
        if !seen.contains(&e.name) {
            infos.push(UnitInfo {
                name: e.name.clone(),
                path: String::new(),
                state: state_word(e.state),
                reason: e.reason.clone(),
                profile: e.profile.clone(),
                wanted_by: e.wanted_by.clone(),
                aliases: e.aliases.clone(),
                text: None,
            });
        }
    }
    Ok(infos)
}

/// The JSON word of a state.
fn state_word(state: State) -> &'static str {
    match state {
        State::Attached => "attached",
        State::NotEnabled => "not-enabled",
        State::Masked => "masked",
        State::LeftOut => "left-out",
        State::Failed => "failed",
    }
}

/// The text of a unit file, for `--cat`.
fn read_text(tree: &Tree, file: &UnitFile) -> Option<String> {
    if matches!(file.kind, FileKind::Dir | FileKind::Other) {
        return None;
    }
    let path =
        PathBuf::from(file.dir).join(std::ffi::OsStr::new(std::str::from_utf8(&file.name).ok()?));
    let bytes = tree.read_file(&path, MAX_FILE_BYTES).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `--cat`: os-release and each unit file, each after a `# PATH` line, as `systemctl cat`.
fn cat(report: &Inspection) -> String {
    let mut out = String::new();
    let mut section = |header: &str, text: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("# {header}\n{text}"));
        if !text.ends_with('\n') && !text.is_empty() {
            out.push('\n');
        }
    };
    if let Some(r) = &report.os_release
        && let Some(t) = &r.text
    {
        section(&r.file, t);
    }
    for u in &report.units {
        if let Some(t) = &u.text {
            section(&u.path, t);
        }
    }
    out
}

/// The text output.
fn text(r: &Inspection) -> String {
    let mut out = String::new();
    let kind = match (r.kind, &r.format) {
        ("directory", _) => "directory".to_string(),
        (k, Some(f)) => format!("{k} image, {f}"),
        (k, None) => format!("{k} image"),
    };
    out.push_str(&format!("Image: {} ({kind})\n", r.path.display()));
    if r.found_at != r.path {
        out.push_str(&format!("  found at {}\n", r.found_at.display()));
    }
    out.push_str(&format!(
        "  name {}, unit prefix {}\n",
        r.name,
        r.unit_prefixes.join(", ")
    ));
    if let Some(c) = &r.configured_in {
        out.push_str(&format!("  configured in {}\n", c.display()));
    }
    out.push_str(&format!("  for systemd {}\n", r.systemd_version));
    out.push_str(&format!("State: {}", r.state.text()));
    if let Some(why) = &r.reason {
        out.push_str(&format!(": {why}"));
    }
    out.push('\n');
    match &r.os_release {
        Some(rel) => {
            out.push_str(&format!("os-release ({}):\n", rel.file));
            for key in [
                "ID",
                "VERSION_ID",
                "PRETTY_NAME",
                "IMAGE_ID",
                "IMAGE_VERSION",
                "PORTABLE_PRETTY_NAME",
                "PORTABLE_PREFIXES",
                "PORTABLE_SCOPE",
            ] {
                if let Some(v) = rel.fields.get(key) {
                    out.push_str(&format!("  {key}={v}\n"));
                }
            }
        }
        None => out.push_str("os-release: none that the generator can use\n"),
    }
    out.push_str(&format!("Profile: {}", r.profile.name));
    if let Some(s) = &r.profile.set_in {
        out.push_str(&format!(" (set in {s})"));
    }
    match &r.profile.service_dropin {
        Some(p) => out.push_str(&format!(", services get {}\n", p.display())),
        None => out.push_str(", no drop-in for services found\n"),
    }
    out.push_str(&format!(
        "Verity: {}{}\n",
        r.verity.found,
        if r.verity.enforced {
            " (verified by PID 1)"
        } else {
            ""
        }
    ));
    if !r.extensions.is_empty() {
        out.push_str("Extensions:\n");
        for e in &r.extensions {
            match &e.reason {
                None => out.push_str(&format!("  {}: compatible\n", e.path.display())),
                Some(why) => out.push_str(&format!("  {}: {why}\n", e.path.display())),
            }
        }
    }
    out.push_str("Unit files:\n");
    if r.units.is_empty() {
        out.push_str("  none\n");
    }
    for u in &r.units {
        let place = if u.path.is_empty() { &u.name } else { &u.path };
        out.push_str(&format!("  {place}: {}", u.state.replace('-', " ")));
        list::push_unit_details(
            &mut out,
            &u.wanted_by,
            &u.aliases,
            u.profile.as_deref(),
            u.reason.as_deref(),
        );
    }
    out
}
