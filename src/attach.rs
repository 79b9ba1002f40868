//! Reading one portable into an [`Attachment`]: open its root image, check its os-release,
//! check and layer its extensions, collect the units that match. Every failure is a
//! reason naming what is wrong.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use log::Level;

use crate::diagnostic::{Diagnostic, Diagnostics, MAX_LINES_PER_IMAGE, Subject};
use crate::discover::image_at;
use crate::extension::{self, ExtensionKind};
use crate::facts::{ImageRef, read_os_release, read_units};
use crate::image::chase::Tree;
use crate::image::open::{Opened, open_image};
use crate::image::panic_message;
use crate::model::{Attachment, Extension, Image, ImageKind, Portable, UnitSource};
use crate::names::unit_matches;
use crate::os_release::OsRelease;
use crate::profile::profile_exists;
use crate::root::Root;
use crate::verity;

/// An image that was read, and the units in it that were left out on the way.
pub struct Read {
    /// What is attached: the image, its extensions, os-release and matching units.
    pub attachment: Attachment,
    /// One diagnostic per unit of the image that was left out, and why.
    pub skipped: Vec<Diagnostic>,
    /// At debug level: each unit file that matches, and each one passed over with why.
    pub notes: Vec<Diagnostic>,
}

/// Read every portable, in order: their attachments; why one could not be read, and the
/// units each left out, in `diags`.
pub fn read_all(
    root: &Root,
    portables: &[Portable],
    systemd: u32,
    diags: &mut Diagnostics,
) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    each(root, portables, systemd, diags, |att| attachments.push(att));
    attachments
}

/// Read every portable and hand each attachment to `take`, on this thread and in the
/// portables' order, as soon as it and those before it are read: why one could not be read,
/// and the units each left out, go to `diags`.
pub fn each(
    root: &Root,
    portables: &[Portable],
    systemd: u32,
    diags: &mut Diagnostics,
    mut take: impl FnMut(Attachment),
) {
    read_in_order(root, portables, systemd, |portable, read| {
        let image = &portable.image;
        match read {
            Ok(read) => {
                diags.extend(read.notes);
                tell_skipped(image, read.skipped, diags);
                take(read.attachment);
            }
            Err(why) => diags.push(
                Diagnostic::image_not_attached(&image.found_at, &image.label(), Level::Error, why)
                    .failing(),
            ),
        }
    });
}

/// Most threads that read images at once.
const MAX_READERS: usize = 4;

/// Fewer portables than this are read on the calling thread: starting a thread costs about
/// what reading a small image does.
const THREADED_FROM: usize = 8;

/// Most images read ahead of the one the calling thread takes next: what is read waits in
/// memory, and a run of thousands of images must not hold them all.
const READ_AHEAD: usize = 16;

/// [`read_portable`] of each portable, handed to `take` on the calling thread in their order.
/// Each image is read alone, and reading is most of a run's system calls, so the images are
/// shared among the machine's processors (ARCHITECTURE.md, "Stages"), while this thread
/// plans and writes those already read; the order, and so the log, is that of `portables`.
fn read_in_order(
    root: &Root,
    portables: &[Portable],
    systemd: u32,
    mut take: impl FnMut(&Portable, Result<Read, String>),
) {
    // The calling thread reads too, whenever the next image is not read yet. Few portables
    // are read here without asking how many processors there are: the answer costs 21
    // system calls (the cgroup's CPU quota), a sixth of those of a run with no image.
    let threads = if portables.len() < THREADED_FROM {
        0
    } else {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(MAX_READERS)
            .min(portables.len() / (THREADED_FROM / 2))
            .saturating_sub(1)
    };
    if threads == 0 {
        for p in portables {
            take(p, read_portable(root, p, systemd));
        }
        return;
    }
    let ahead = Ahead {
        state: Mutex::new(AheadState {
            next: 0,
            taken: 0,
            done: BTreeMap::new(),
            awaited: None,
            blocked: 0,
        }),
        ready: Condvar::new(),
        room: Condvar::new(),
    };
    // Each reader takes the next portable not taken yet, so a slow image holds up no other.
    let work = || {
        loop {
            let mut state = ahead.lock();
            if state.next < portables.len() && state.next >= state.taken + READ_AHEAD {
                // Wait until half the room is free again: one wake-up per few images, not
                // one per image.
                state.blocked += 1;
                while state.next < portables.len() && state.next >= state.taken + READ_AHEAD / 2 {
                    state = ahead
                        .room
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                state.blocked -= 1;
            }
            let Some(i) = state.claim(portables.len()) else {
                return;
            };
            drop(state);
            ahead.read(root, &portables[i], i, systemd);
        }
    };
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
        for (i, portable) in portables.iter().enumerate() {
            let mut state = ahead.lock();
            let read = loop {
                if let Some(read) = state.done.remove(&i) {
                    break read;
                }
                // Rather than wait for this one, read the next one no reader has taken.
                if state.next < state.taken + READ_AHEAD
                    && let Some(j) = state.claim(portables.len())
                {
                    drop(state);
                    ahead.read(root, &portables[j], j, systemd);
                    state = ahead.lock();
                    continue;
                }
                state.awaited = Some(i);
                state = ahead
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            };
            state.awaited = None;
            state.taken = i + 1;
            let wake = state.blocked > 0 && state.next < state.taken + READ_AHEAD / 2;
            drop(state);
            if wake {
                ahead.room.notify_all();
            }
            take(portable, read);
        }
        // A reader that stopped has said so in place of its image: it is not joined again
        // as a panic of this thread.
        for reader in readers {
            let _ = reader.join();
        }
    });
}

/// The images read ahead of the calling thread ([`read_in_order`]).
struct Ahead {
    state: Mutex<AheadState>,
    /// Signalled when the image the calling thread waits for is read.
    ready: Condvar,
    /// Signalled when the calling thread has taken enough to make room to read more.
    room: Condvar,
}

struct AheadState {
    /// The next portable no reader has taken.
    next: usize,
    /// How many the calling thread has taken.
    taken: usize,
    /// Those read and not taken yet, by index.
    done: BTreeMap<usize, Result<Read, String>>,
    /// The one the calling thread waits for, if it does.
    awaited: Option<usize>,
    /// How many readers wait for room.
    blocked: usize,
}

impl AheadState {
    /// The next portable to read, taken by the caller; `None` once all are.
    fn claim(&mut self, count: usize) -> Option<usize> {
        let i = self.next;
        (i < count).then(|| {
            self.next += 1;
            i
        })
    }
}

impl Ahead {
    fn lock(&self) -> MutexGuard<'_, AheadState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read portable `i`, claimed by the caller. `read_portable` catches a reader's panic;
    /// should the thread still stop, the guard says so in its place, and the calling
    /// thread does not wait for it.
    fn read(&self, root: &Root, portable: &Portable, i: usize, systemd: u32) {
        let guard = Unfinished { ahead: self, i };
        let read = read_portable(root, portable, systemd);
        std::mem::forget(guard);
        self.finish(i, read);
    }

    fn finish(&self, i: usize, read: Result<Read, String>) {
        let mut state = self.lock();
        state.done.insert(i, read);
        let awaited = state.awaited == Some(i);
        drop(state);
        if awaited {
            self.ready.notify_one();
        }
    }
}

/// Dropped only if a reader stops while reading portable `i`: an error in its place.
struct Unfinished<'a> {
    ahead: &'a Ahead,
    i: usize,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let why = "internal error: the thread reading the image stopped".to_string();
        self.ahead.finish(self.i, Err(why));
    }
}

/// A crafted image can leave out thousands of units: a few lines, then a count.
fn tell_skipped(image: &Image, skipped: Vec<Diagnostic>, diags: &mut Diagnostics) {
    let mut shown = 0;
    for mut skip in skipped {
        if skip.level <= Level::Warn {
            shown += 1;
            if shown > MAX_LINES_PER_IMAGE {
                skip.level = Level::Debug;
            }
        }
        diags.push(skip);
    }
    if shown > MAX_LINES_PER_IMAGE {
        let hidden = shown - MAX_LINES_PER_IMAGE;
        let reason = format!("{hidden} more units not attached (shown at debug level)");
        let message = format!("Image {}: {reason}.", image.label());
        diags.push(Diagnostic::new(
            Subject::Image(image.found_at.clone()),
            Level::Warn,
            reason,
            message,
        ));
    }
}

/// Read `portable` as systemd `systemd` would attach it. A panic in a reader (third-party
/// code included) is an error for this portable only.
pub fn read_portable(root: &Root, portable: &Portable, systemd: u32) -> Result<Read, String> {
    match catch_unwind(AssertUnwindSafe(|| read_inner(root, portable, systemd))) {
        Ok(r) => r,
        Err(payload) => Err(format!(
            "internal error while reading the image: {}",
            panic_message(&*payload)
        )),
    }
}

/// Read `image` with default settings.
pub fn read_image(root: &Root, image: &Image, systemd: u32) -> Result<Read, String> {
    read_portable(root, &Portable::unconfigured(image)?, systemd)
}

/// From 260, where portabled also serves user managers, an image may say which it is for
/// (`PORTABLE_SCOPE=` in its os-release: `system`, `user` or `any`, default `system`), and the
/// system's refuses an image for users (`extract_image_and_extensions()` in portable.c).
fn check_scope(os_release: &OsRelease, systemd: u32) -> Result<(), String> {
    match os_release.get("PORTABLE_SCOPE") {
        _ if systemd < 260 => Ok(()),
        None | Some("system" | "any") => Ok(()),
        Some(scope @ ("user" | "global")) => Err(format!(
            "its os-release says PORTABLE_SCOPE={scope}: it is not for the system's service manager"
        )),
        Some(other) => Err(format!(
            "its os-release has an invalid PORTABLE_SCOPE={} (system, user or any)",
            crate::kmsg::shorten(&other.escape_debug().to_string())
        )),
    }
}

/// The name of a sidecar of `image` (`foo_1.2.raw` → `foo_1.2.roothash`), for messages.
fn sidecar(image: &std::path::Path, suffix: &str) -> String {
    let name = image
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    format!("{}.{suffix}", name.strip_suffix(".raw").unwrap_or(name))
}

fn read_inner(root: &Root, p: &Portable, systemd: u32) -> Result<Read, String> {
    let image = &p.image;
    let trust = p.setting(
        |c| &c.allow_writable_by_others,
        |d| &d.allow_writable_by_others,
    );
    if let Some(who) = image.writable_by.as_ref().filter(|_| !trust) {
        return Err(format!("{who}: {}", crate::ownership::HINT));
    }
    let (profile, profile_named) = p.profile();
    if profile_named && !profile_exists(root, systemd, &profile) {
        return Err(format!(
            "profile '{profile}' (set in {}) does not exist",
            p.set_in(|c| c.profile.is_some())
        ));
    }
    let opened = open_image(&root.join(&image.path), image.kind, trust)?;
    if p.setting(|c| &c.require_verity, |d| &d.require_verity) {
        check_verity(root, p, &opened)?;
    }
    let tree = opened.tree()?;
    let os_release = read_os_release(&tree, systemd)?;
    check_scope(&os_release, systemd)?;
    let (extensions, trees) = read_extensions(root, p, &os_release, systemd, trust)?;
    let matches = p.matches();
    check_prefixes(&matches, &os_release, &extensions)?;

    let label = image.label();
    let from = ImageRef {
        at: &image.found_at,
        label: &label,
    };
    let wanted = |name: &str| unit_matches(name, &matches);
    let (units, skipped, notes) = read_all_units(&tree, &trees, &extensions, &wanted, from)?;
    if units.is_empty() {
        return Err(no_units(&matches, &skipped));
    }
    Ok(Read {
        attachment: Attachment {
            image: image.clone(),
            release: os_release,
            units,
            profile,
            enable: p.setting(|c| &c.enable, |d| &d.enable),
            extensions,
        },
        skipped,
        notes,
    })
}

/// `RequireVerity=yes`: the opened image must carry data PID 1 verifies it with.
fn check_verity(root: &Root, p: &Portable, opened: &Opened) -> Result<(), String> {
    let image = &p.image;
    let missing = match image.kind {
        ImageKind::Directory => Some("a directory image cannot carry verity data".to_string()),
        _ => {
            let found = verity::detect(&image.path, &root.join(&image.path), opened)?;
            (!verity::is_enforced(&found)).then(|| match found {
                verity::Verity::None => format!(
                    "it has no verity partition and no {} + {} beside it",
                    sidecar(&image.path, "roothash"),
                    sidecar(&image.path, "verity")
                ),
                other => format!(
                    "{} is not enough for systemd to verify it",
                    verity::describe(&other)
                ),
            })
        }
    };
    match missing {
        Some(why) => Err(format!(
            "RequireVerity=yes (set in {}), but {why}",
            p.set_in(|c| c.require_verity.is_some())
        )),
        None => Ok(()),
    }
}

/// The extensions, in order, each opened: it must exist, be root's (unless `trust`), and
/// carry extension-release data matching the root image.
fn read_extensions(
    root: &Root,
    p: &Portable,
    os_release: &OsRelease,
    systemd: u32,
    trust: bool,
) -> Result<(Vec<Extension>, Vec<Tree>), String> {
    let mut extensions = Vec::new();
    let mut trees = Vec::new();
    for path in p.extensions() {
        let (ext, tree) = read_extension(root, path, os_release, systemd, trust)?;
        extensions.push(ext);
        trees.push(tree);
    }
    Ok((extensions, trees))
}

/// The extension at `path`, opened: it must exist, be root's (unless `trust`), and carry
/// extension-release data matching the root image's `os_release`. The error names it.
pub fn read_extension(
    root: &Root,
    path: &std::path::Path,
    os_release: &OsRelease,
    systemd: u32,
    trust: bool,
) -> Result<(Extension, Tree), String> {
    let ext = image_at(root, path).map_err(|e| format!("extension {}: {e}", path.display()))?;
    if let Some(who) = ext.writable_by.as_ref().filter(|_| !trust) {
        return Err(format!("extension {who}: {}", crate::ownership::HINT));
    }
    let kind = match ext.kind {
        ImageKind::Directory => ExtensionKind::Directory,
        _ => ExtensionKind::Raw,
    };
    let in_ext = |e: String| format!("extension {}: {e}", ext.path.display());
    let ext_tree = open_image(&root.join(&ext.path), ext.kind, trust)
        .and_then(Opened::tree)
        .map_err(in_ext)?;
    let ext_name = extension::extension_name(&ext.file_name, kind);
    let (_, ext_release) =
        extension::read_extension_release(&ext_tree, &ext_name, systemd).map_err(in_ext)?;
    extension::validate(&ext_name, &ext_release, os_release, systemd).map_err(in_ext)?;
    Ok((
        Extension {
            image: ext,
            release: ext_release,
        },
        ext_tree,
    ))
}

/// The unit prefixes must be allowed by the image's `PORTABLE_PREFIXES=`, which its
/// extensions may widen; no such list allows every prefix.
fn check_prefixes(
    matches: &[String],
    os_release: &OsRelease,
    extensions: &[Extension],
) -> Result<(), String> {
    let mut allowed: Option<Vec<String>> = os_release
        .get("PORTABLE_PREFIXES")
        .map(|v| v.split_whitespace().map(String::from).collect());
    for ext in extensions {
        let more = extension::portable_prefixes(&ext.release);
        if !more.is_empty() {
            allowed.get_or_insert_with(Vec::new).extend(more);
        }
    }
    if let Some(allowed) = &allowed
        && let Some(bad) = matches.iter().find(|m| !allowed.contains(m))
    {
        return Err(format!(
            "unit prefix '{bad}' is not allowed by the image's PORTABLE_PREFIXES= (acceptable: {})",
            allowed.join(" ")
        ));
    }
    Ok(())
}

/// The wanted units of the root image, then of each extension, sorted by name; those left
/// out; and the debug notes on every unit file looked at.
fn read_all_units(
    tree: &Tree,
    trees: &[Tree],
    extensions: &[Extension],
    wanted: &dyn Fn(&str) -> bool,
    from: ImageRef,
) -> Result<UnitsRead, String> {
    let base =
        read_units(tree, wanted, from).map_err(|e| format!("cannot read unit files: {e}"))?;
    let mut units: Vec<UnitSource> = base.found;
    let mut skipped = base.skipped;
    let mut notes = base.notes;
    for (i, (ext_tree, ext)) in trees.iter().zip(extensions).enumerate() {
        let ext_path = ext.image.path.display();
        let more = read_units(ext_tree, wanted, from)
            .map_err(|e| format!("extension {ext_path}: cannot read unit files: {e}"))?;
        // The root image's unit, then the first extension's, wins: portable.c adds each
        // extension's units with hashmap_move(), which keeps the names it has already.
        for mut u in more.found {
            if units.iter().any(|old| old.name == u.name) {
                skipped.push(from.skip(
                    &u.name,
                    format!(
                        "extension {ext_path} provides it too; the one found first is attached, as portablectl does"
                    ),
                    false,
                ));
                continue;
            }
            u.extension = Some(i);
            units.push(u);
        }
        skipped.extend(more.skipped);
        notes.extend(more.notes);
    }
    units.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((units, skipped, notes))
}

/// The units read, those left out, and the debug notes.
type UnitsRead = (Vec<UnitSource>, Vec<Diagnostic>, Vec<Diagnostic>);

/// Why an image with no matching unit is refused: its prefixes, and the first few units
/// left out with their reasons (a unit left out is the likely culprit).
fn no_units(matches: &[String], skipped: &[Diagnostic]) -> String {
    let also = if skipped.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = skipped
            .iter()
            .take(3)
            .map(|s| {
                let unit = s.unit().unwrap_or_default();
                format!("{} ({})", crate::kmsg::shorten(unit), s.reason)
            })
            .collect();
        let more = match skipped.len().saturating_sub(3) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        format!("; left out: {}{more}", names.join(", "))
    };
    format!(
        "no matching unit files (prefix {}){also}",
        matches.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os_release;

    #[test]
    fn scope_from_260() {
        let check = |text: &str, v| check_scope(&os_release::parse(text.as_bytes()).unwrap(), v);
        for ok in ["ID=x\n", "PORTABLE_SCOPE=system\n", "PORTABLE_SCOPE=any\n"] {
            assert!(check(ok, 260).is_ok(), "{ok}");
        }
        for bad in [
            "PORTABLE_SCOPE=user\n",
            "PORTABLE_SCOPE=global\n",
            "PORTABLE_SCOPE=\n",
        ] {
            assert!(check(bad, 260).is_err(), "{bad}");
            assert!(check(bad, 259).is_ok(), "{bad}");
        }
        assert_eq!(
            check("PORTABLE_SCOPE=user\n", 260).unwrap_err(),
            "its os-release says PORTABLE_SCOPE=user: it is not for the system's service manager"
        );
        assert_eq!(
            check("PORTABLE_SCOPE=\"a\nb\"\n", 260).unwrap_err(),
            "its os-release has an invalid PORTABLE_SCOPE=a\\nb (system, user or any)"
        );
    }

    /// From [`THREADED_FROM`] portables on, images are read on several threads, at most
    /// [`READ_AHEAD`] ahead: each is still handed over in the portables' order, the broken
    /// ones as errors in their place, whatever order the threads finish in.
    #[test]
    fn many_images_are_handed_over_in_order() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).remembering();
        let mut portables = Vec::new();
        for i in 0..(3 * READ_AHEAD) {
            let dir = t.path().join(format!("var/lib/portables/img{i:02}"));
            let units = dir.join("usr/lib/systemd/system");
            std::fs::create_dir_all(&units).unwrap();
            std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
            if i % 7 != 3 {
                std::fs::write(dir.join("usr/lib/os-release"), "ID=test\n").unwrap();
            }
            // Images of different sizes, so that threads finish out of order.
            for u in 0..(1 + (i * 5) % 11) {
                let name = format!("img{i:02}-{u}.service");
                std::fs::write(units.join(name), "[Service]\nExecStart=/x\n").unwrap();
            }
            let path = std::path::Path::new("/var/lib/portables").join(format!("img{i:02}"));
            let image = image_at(&root, &path).unwrap();
            portables.push(Portable::unconfigured(&image).unwrap());
        }
        let mut seen = Vec::new();
        read_in_order(&root, &portables, 257, |portable, read| {
            seen.push((
                portable.name.clone(),
                read.map(|r| r.attachment.units.len()),
            ));
        });
        let expected: Vec<_> = (0..(3 * READ_AHEAD))
            .map(|i| {
                let read = if i % 7 == 3 {
                    Err(())
                } else {
                    Ok(1 + (i * 5) % 11)
                };
                (format!("img{i:02}"), read)
            })
            .collect();
        let seen: Vec<_> = seen
            .into_iter()
            .map(|(n, r)| (n, r.map_err(|_| ())))
            .collect();
        assert_eq!(seen, expected);
    }
}
