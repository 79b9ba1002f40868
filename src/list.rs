//! `portables-generator list`: every image the generator finds, whether it is attached and
//! why not, and its units. Everything shown is taken from one real run of the stages
//! ([`generate::generate`]): its plan, its diagnostics and what each stage returned. No
//! decision is made here (ARCHITECTURE.md, "Rules between modules").

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use log::Level;
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Diagnostics, Subject};
use crate::discover;
use crate::generate::{self, EXIT_FAILED, EXIT_OK, Generated};
use crate::image::open::{Opened, open_image};
use crate::image::partition::Selection;
use crate::image::probe;
use crate::model::{Attachment, Image, ImageKind, Portable};
use crate::out_path::OutPath;
use crate::plan::{Node, Plan};
use crate::root::Root;
use crate::systemd_version::Version;

/// What `list` shows: the JSON document of `list --json`.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// The systemd major version decided for.
    pub systemd_version: u32,
    /// How that version was found.
    pub systemd: String,
    /// Why nothing is attached on this system at all (the kernel command line, an initrd),
    /// if so.
    pub turned_off: Option<String>,
    /// What was said at warning level or louder about no image in particular: a search
    /// directory or `portables.d` file that cannot be read, an invalid setting.
    pub problems: Vec<String>,
    /// Every image, in search-path order, then the images declared with `Image=` elsewhere,
    /// then the entries that could not be images.
    pub images: Vec<ImageEntry>,
}

/// The state of an image or unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Attached and enabled (its `[Install]` links made).
    Attached,
    /// Attached, but `Enable=no`: its links are not made.
    NotEnabled,
    /// Masked by configuration: a masked `NAME.conf`, or `Attach=no`.
    Masked,
    /// Left out on purpose, or for now (the reason says which).
    LeftOut,
    /// Could not be attached: the run exits with status 1.
    Failed,
}

impl State {
    /// How the text output says it.
    pub fn text(self) -> &'static str {
        match self {
            State::Attached => "attached",
            State::NotEnabled => "not enabled",
            State::Masked => "masked",
            State::LeftOut => "left out",
            State::Failed => "failed",
        }
    }
}

/// One image.
#[derive(Debug, Serialize)]
pub struct ImageEntry {
    /// Its NAME (the name of its `NAME.conf`), or the entry's name if it has none.
    pub name: String,
    /// `directory`, `raw`, `block`, or `unknown` for an entry that is no image.
    pub kind: &'static str,
    /// For a raw image or block device: its file system, or the partitions read from it.
    pub format: Option<String>,
    /// Its path with links and version directories resolved: what `RootImage=` or
    /// `RootDirectory=` names.
    pub path: PathBuf,
    /// Where it was found: the search-path entry or the `Image=` path.
    pub found_at: PathBuf,
    /// `IMAGE_VERSION=` of its os-release, else the version in its file name.
    pub version: Option<String>,
    /// Attached, not enabled, masked, left out or failed.
    pub state: State,
    /// Why, where it is not attached (or not enabled).
    pub reason: Option<String>,
    /// The profile its units run with, once read.
    pub profile: Option<String>,
    /// Its units: those attached, then those left out.
    pub units: Vec<UnitEntry>,
}

/// One unit of an image.
#[derive(Debug, Serialize)]
pub struct UnitEntry {
    /// The unit's name.
    pub name: String,
    /// Attached, not enabled, left out or failed.
    pub state: State,
    /// Why it is left out, or what else was said of it.
    pub reason: Option<String>,
    /// The profile drop-in it is linked to (a host path).
    pub profile: Option<PathBuf>,
    /// The units whose `.wants/`, `.requires/` or `.upholds/` directory links to it.
    pub wanted_by: Vec<String>,
    /// The other names it is linked under.
    pub aliases: Vec<String>,
}

/// `list`: run the stages below `root` without writing, and print what they decided. Returns
/// the exit status the generator would have.
pub fn run(
    root: &Root,
    systemd: Option<Version>,
    json: bool,
    env: impl Fn(&str) -> Option<String>,
) -> u8 {
    let mut diags = Diagnostics::default();
    let Some((version, first_boot)) = generate::preflight(root, systemd, &env, &mut diags) else {
        // This boot or this manager attaches nothing; the last line says why.
        let version = crate::systemd_version::detect(root);
        let turned_off = diags.iter().map(|d| d.reason.clone()).next_back();
        print_listing(&empty(&version, turned_off), json);
        return EXIT_OK;
    };
    let generated = generate::generate(root, version.major, first_boot, diags);
    let mut listing = empty(&version, None);
    listing.images = entries(&generated);
    listing.problems = generated
        .diagnostics
        .iter()
        .filter(|d| d.level <= Level::Warn)
        .filter(|d| !matches!(d.subject, Subject::Image(_) | Subject::Unit { .. }))
        .map(|d| d.message.clone())
        .collect();
    for entry in &mut listing.images {
        entry.format = format_of(root, entry);
    }
    print_listing(&listing, json);
    if generated.diagnostics.failed() {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

fn empty(version: &Version, turned_off: Option<String>) -> Listing {
    Listing {
        systemd_version: version.major,
        systemd: version.describe(),
        turned_off,
        problems: Vec::new(),
        images: Vec::new(),
    }
}

fn print_listing(listing: &Listing, json: bool) {
    if json {
        // Serialising plain strings and numbers cannot fail.
        let mut doc = serde_json::to_string_pretty(listing).unwrap_or_default();
        doc.push('\n');
        print_out(&doc);
    } else {
        print_out(&text(listing));
    }
}

/// Print `text` on stdout. A reader that went away (`| head`) is no error worth a line.
pub fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Every image of the run, in order, with its state and units.
pub fn entries(generated: &Generated) -> Vec<ImageEntry> {
    let mut entries: Vec<ImageEntry> = generated
        .images
        .iter()
        .map(|image| image_entry(generated, image))
        .collect();
    // Images declared with Image= outside the search paths.
    for portable in &generated.portables {
        if !entries
            .iter()
            .any(|e| e.found_at == portable.image.found_at)
        {
            entries.push(image_entry(generated, &portable.image));
        }
    }
    // What could not be an image at all (a dangling link, an invalid name, an Image= path
    // that does not exist): only its diagnostics know it.
    let listed = entries.len();
    let mut seen: BTreeSet<PathBuf> = entries
        .iter()
        .flat_map(|e| [e.found_at.clone(), e.path.clone()])
        .collect();
    for d in &generated.diagnostics {
        if let Subject::Image(at) = &d.subject
            && d.left_out
            && seen.insert(at.clone())
        {
            let decisive = decisive(image_diagnostics(&generated.diagnostics, at, at));
            let (state, reason) = verdict(decisive);
            entries.push(ImageEntry {
                name: at
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                kind: "unknown",
                format: None,
                path: at.clone(),
                found_at: at.clone(),
                version: None,
                state,
                reason,
                profile: None,
                units: Vec::new(),
            });
        }
    }
    // In search-path order, as the images are.
    let search_order = |p: &Path| {
        discover::SEARCH_PATHS
            .iter()
            .position(|dir| p.parent() == Some(Path::new(dir)))
            .unwrap_or(discover::SEARCH_PATHS.len())
    };
    entries[listed..].sort_by(|a, b| {
        (search_order(&a.found_at), &a.found_at).cmp(&(search_order(&b.found_at), &b.found_at))
    });
    entries
}

/// The diagnostics about the image found at `at` (resolved to `path`), in order.
fn image_diagnostics<'a>(
    diags: &'a Diagnostics,
    at: &'a Path,
    path: &'a Path,
) -> impl Iterator<Item = &'a Diagnostic> {
    diags.iter().filter(move |d| match &d.subject {
        Subject::Image(p) => p == at || p == path,
        _ => false,
    })
}

/// The diagnostic that says why an image is not attached: the first that fails the run,
/// else the first that leaves it out.
fn decisive<'a>(diags: impl Iterator<Item = &'a Diagnostic>) -> Option<&'a Diagnostic> {
    let left_out: Vec<&Diagnostic> = diags.filter(|d| d.left_out).collect();
    left_out
        .iter()
        .find(|d| d.fails)
        .or_else(|| left_out.first())
        .copied()
}

/// The state and reason a diagnostic that leaves its subject out gives it.
fn verdict(d: Option<&Diagnostic>) -> (State, Option<String>) {
    match d {
        Some(d) if d.fails => (State::Failed, Some(d.reason.clone())),
        Some(d) if d.masked => (State::Masked, Some(d.reason.clone())),
        Some(d) => (State::LeftOut, Some(d.reason.clone())),
        None => (State::LeftOut, None),
    }
}

fn image_entry(generated: &Generated, image: &Image) -> ImageEntry {
    let portable = generated
        .portables
        .iter()
        .find(|p| p.image.found_at == image.found_at);
    let attachment = generated
        .attachments
        .iter()
        .find(|a| a.image.found_at == image.found_at);
    let about = || image_diagnostics(&generated.diagnostics, &image.found_at, &image.path);
    let units = attachment
        .map(|a| unit_entries(&generated.plan, &generated.diagnostics, a))
        .unwrap_or_default();
    let attached = units
        .iter()
        .any(|u| matches!(u.state, State::Attached | State::NotEnabled));
    let (state, reason) = match (portable, attachment) {
        (Some(p), Some(a)) if attached && !a.enable => (
            State::NotEnabled,
            Some(format!(
                "Enable=no (set in {})",
                p.set_in(|c| c.enable.is_some())
            )),
        ),
        (Some(_), Some(_)) if attached => (State::Attached, None),
        (_, Some(_)) => match decisive(about()) {
            Some(d) => verdict(Some(d)),
            None => (State::Failed, Some("no unit could be attached".to_string())),
        },
        _ => verdict(decisive(about())),
    };
    ImageEntry {
        name: portable.map_or_else(|| image.name.clone(), |p: &Portable| p.name.clone()),
        kind: match image.kind {
            ImageKind::Directory => "directory",
            ImageKind::Raw => "raw",
            ImageKind::Block => "block",
        },
        format: None,
        path: image.path.clone(),
        found_at: image.found_at.clone(),
        version: version(image, attachment),
        state,
        reason,
        profile: attachment.map(|a| a.profile.clone()),
        units,
    }
}

/// `IMAGE_VERSION=` of the image's os-release, else what follows the first `_` of its
/// file name (`foo_1.2.raw` is version 1.2, as vpick reads it).
fn version(image: &Image, attachment: Option<&Attachment>) -> Option<String> {
    if let Some(v) = attachment.and_then(|a| a.release.non_empty("IMAGE_VERSION")) {
        return Some(v.to_string());
    }
    let name = image
        .file_name
        .strip_suffix(".raw")
        .unwrap_or(&image.file_name);
    name.split_once('_')
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// The units of an attachment: those `plan` attached from it, with their profile and
/// links, then those left out, with why (from `diagnostics`).
pub fn unit_entries(plan: &Plan, diagnostics: &Diagnostics, att: &Attachment) -> Vec<UnitEntry> {
    let at = &att.image.found_at;
    let about_unit = |name: &str| -> Vec<&Diagnostic> {
        diagnostics
            .iter()
            .filter(|d| {
                matches!(&d.subject, Subject::Unit { unit, image } if unit == name && image == at)
            })
            .collect()
    };
    let mut entries = Vec::new();
    let attached: Vec<&String> = plan
        .attached
        .iter()
        .filter(|(_, image)| *image == at)
        .map(|(unit, _)| unit)
        .collect();
    for name in &attached {
        let profile = match plan
            .nodes
            .get(&OutPath::from(format!("{name}.d/10-profile.conf")))
        {
            Some(Node::Symlink(target)) => Some(target.clone()),
            _ => None,
        };
        let mut wanted_by = Vec::new();
        let mut aliases = Vec::new();
        for (path, node) in &plan.nodes {
            let Node::Symlink(target) = node else {
                continue;
            };
            if target.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
                continue;
            }
            let parts: Vec<&str> = path.iter().filter_map(|c| c.to_str()).collect();
            match parts.as_slice() {
                [dir, _] => {
                    for suffix in [".wants", ".requires", ".upholds"] {
                        if let Some(unit) = dir.strip_suffix(suffix) {
                            wanted_by.push(unit.to_string());
                        }
                    }
                }
                [alias] if alias != name => aliases.push((*alias).to_string()),
                _ => {}
            }
        }
        // What else was said of an attached unit at info level or louder (an
        // administrator's copy used, [Install] problems).
        let said: Vec<&str> = about_unit(name)
            .into_iter()
            .filter(|d| d.level <= Level::Info && !d.left_out)
            .map(|d| d.reason.as_str())
            .collect();
        entries.push(UnitEntry {
            name: (*name).clone(),
            state: if att.enable {
                State::Attached
            } else {
                State::NotEnabled
            },
            reason: (!said.is_empty()).then(|| said.join("; ")),
            profile,
            wanted_by,
            aliases,
        });
    }
    // Units left out: a unit of another image may have won the name.
    let mut told = BTreeSet::new();
    for d in diagnostics {
        if let Subject::Unit { unit, image } = &d.subject
            && image == at
            && d.left_out
            && !attached.contains(&unit)
            && told.insert(unit.clone())
        {
            let (state, reason) = verdict(decisive(about_unit(unit).into_iter()));
            entries.push(UnitEntry {
                name: unit.clone(),
                state,
                reason,
                profile: None,
                wanted_by: Vec::new(),
                aliases: Vec::new(),
            });
        }
    }
    entries
}

/// What a raw image or block device holds, for the `kind` column: its file system when it
/// has no partition table, else the partitions that are read. `None` for a directory, or
/// an image that cannot be opened (its state says why).
pub fn format_of(root: &Root, entry: &ImageEntry) -> Option<String> {
    let kind = match entry.kind {
        "raw" => ImageKind::Raw,
        "block" => ImageKind::Block,
        _ => return None,
    };
    describe_opened(&open_image(&root.join(&entry.path), kind, true).ok()?)
}

/// What an opened raw image holds: `squashfs`, or `partitions: root-x86-64 #2 (erofs)`.
pub fn describe_opened(opened: &Opened) -> Option<String> {
    let Opened::Raw { src, partitions } = opened else {
        return None;
    };
    match &partitions.selection {
        Selection::Whole => probe::sniff(src).ok().map(|fs| fs.name().to_string()),
        Selection::Parts { root, usr } => {
            let parts: Vec<String> = [root, usr]
                .into_iter()
                .flatten()
                .map(|p| format!("{} #{}", p.type_name, p.number))
                .collect();
            Some(format!("partitions: {}", parts.join(", ")))
        }
    }
}

/// The text output: one block per image, its units indented below it.
pub fn text(listing: &Listing) -> String {
    let mut out = format!("For {}.\n", listing.systemd);
    if let Some(why) = &listing.turned_off {
        out.push_str(&format!("Nothing is attached: {why}\n"));
        return out;
    }
    for p in &listing.problems {
        out.push_str(&format!("{p}\n"));
    }
    if listing.images.is_empty() {
        out.push_str("No images found.\n");
        return out;
    }
    for image in &listing.images {
        out.push('\n');
        out.push_str(&format!("{}: {}", image.name, image.state.text()));
        if let Some(reason) = &image.reason {
            out.push_str(&format!(": {reason}"));
        }
        out.push('\n');
        let kind = match (image.kind, &image.format) {
            ("directory", _) => "directory".to_string(),
            ("raw", Some(f)) => format!("raw image, {f}"),
            ("raw", None) => "raw image".to_string(),
            ("block", Some(f)) => format!("block device, {f}"),
            ("block", None) => "block device".to_string(),
            _ => "no image".to_string(),
        };
        out.push_str(&format!("  {kind}: {}", image.path.display()));
        if image.found_at != image.path {
            out.push_str(&format!(" (found at {})", image.found_at.display()));
        }
        out.push('\n');
        if let Some(v) = &image.version {
            out.push_str(&format!("  version {v}\n"));
        }
        if let Some(p) = &image.profile {
            out.push_str(&format!("  profile {p}\n"));
        }
        for unit in &image.units {
            out.push_str(&format!("  {}: {}", unit.name, unit.state.text()));
            push_unit_details(
                &mut out,
                &unit.wanted_by,
                &unit.aliases,
                unit.profile.as_deref(),
                unit.reason.as_deref(),
            );
        }
    }
    out
}

/// The rest of a unit's line, as `list` and `inspect` print it: what wants it, its other
/// names, its profile drop-in and why it is left out.
pub fn push_unit_details(
    out: &mut String,
    wanted_by: &[String],
    aliases: &[String],
    profile: Option<&Path>,
    reason: Option<&str>,
) {
    if !wanted_by.is_empty() {
        out.push_str(&format!(", wanted by {}", wanted_by.join(", ")));
    }
    if !aliases.is_empty() {
        out.push_str(&format!(", also named {}", aliases.join(", ")));
    }
    if let Some(p) = profile {
        out.push_str(&format!(", profile {}", p.display()));
    }
    if let Some(why) = reason {
        out.push_str(&format!(": {why}"));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os_release;

    fn image(file_name: &str) -> Image {
        Image {
            entry: file_name.into(),
            name: file_name.trim_end_matches(".raw").into(),
            path: Path::new("/var/lib/portables").join(file_name),
            file_name: file_name.into(),
            writable_by: None,
            kind: ImageKind::Raw,
            found_at: Path::new("/var/lib/portables").join(file_name),
        }
    }

    #[test]
    fn version_from_os_release_else_file_name() {
        assert_eq!(version(&image("foo_1.2.raw"), None).as_deref(), Some("1.2"));
        assert_eq!(version(&image("foo.raw"), None), None);
        assert_eq!(version(&image("foo_.raw"), None), None);
        let att = Attachment {
            image: image("foo_1.2.raw"),
            release: os_release::parse(b"ID=x\nIMAGE_VERSION=7\n").unwrap(),
            units: Vec::new(),
            profile: "default".into(),
            enable: true,
            extensions: Vec::new(),
        };
        assert_eq!(version(&att.image, Some(&att)).as_deref(), Some("7"));
    }

    #[test]
    fn the_failing_diagnostic_decides() {
        let at = Path::new("/var/lib/portables/foo");
        let skip = Diagnostic::image_not_attached(at, "foo", Level::Info, "skipped".into());
        let fail =
            Diagnostic::image_not_attached(at, "foo", Level::Error, "broken".into()).failing();
        let note = Diagnostic::new(
            Subject::Image(at.into()),
            Level::Debug,
            "found".into(),
            "found".into(),
        );
        let all = [note.clone(), skip.clone(), fail];
        assert_eq!(
            verdict(decisive(all.iter())),
            (State::Failed, Some("broken".into()))
        );
        let some = [note, skip.clone()];
        assert_eq!(
            verdict(decisive(some.iter())),
            (State::LeftOut, Some("skipped".into()))
        );
        let masked = [skip.masking()];
        assert_eq!(verdict(decisive(masked.iter())).0, State::Masked);
    }

    #[test]
    fn text_of_an_empty_or_turned_off_system() {
        let version = Version {
            major: 257,
            source: crate::systemd_version::Source::Option { requested: 257 },
        };
        assert_eq!(
            text(&empty(&version, None)),
            "For systemd 257 (--systemd-version).\nNo images found.\n"
        );
        assert_eq!(
            text(&empty(&version, Some("off".into()))),
            "For systemd 257 (--systemd-version).\nNothing is attached: off\n"
        );
    }
}
