//! Which portables to attach, and how: the images found in the search paths and those
//! declared with `Image=`, combined with their `portables.d` settings and the global policy.
//! Pure: images are looked up through a function, so tests need no files.

use std::path::{Path, PathBuf};

use log::Level;

use crate::config::{Config, ImageEntry};
use crate::diagnostic::{Diagnostic, Diagnostics, Subject};
use crate::model::{Image, Portable};
use crate::names::default_prefix;

/// An image of a NAME, or why the image a declaration names could not be had.
type Candidate = Result<Image, (PathBuf, String)>;

/// What selection says of an image it does not attach, and how loud.
#[derive(Clone, Copy)]
enum Verdict {
    /// Left out on purpose by configuration: info, not a failure.
    Skip,
    /// Masked by configuration (a masked `NAME.conf`, `Attach=no`): as `Skip`.
    Mask,
    /// Could not be attached as declared or found: an error, exit status 1; but only info
    /// if the image's file system is not mounted yet (another reload attaches it).
    Refuse,
}

/// Tells selection's decisions about images it does not attach.
struct Decide<'a> {
    diags: &'a mut Diagnostics,
    pending: &'a dyn Fn(&Path) -> bool,
}

impl Decide<'_> {
    fn say(&mut self, verdict: Verdict, what: &Path, reason: String) {
        let label = what.display().to_string();
        let d = match verdict {
            Verdict::Skip => Diagnostic::image_not_attached(what, &label, Level::Info, reason),
            Verdict::Mask => {
                Diagnostic::image_not_attached(what, &label, Level::Info, reason).masking()
            }
            Verdict::Refuse if (self.pending)(what) => {
                let message = format!(
                    "Image {label} not attached yet: {reason}; its file system is not mounted yet."
                );
                Diagnostic::new(Subject::Image(what.into()), Level::Info, reason, message)
                    .leaving_out()
            }
            Verdict::Refuse => {
                Diagnostic::image_not_attached(what, &label, Level::Error, reason).failing()
            }
        };
        self.diags.push(d);
    }
}

/// The NAME of an image: its search-path entry cut at the first `_`, or without `.raw`,
/// `.raw.v`, `.v` (the default prefix rule).
pub fn portable_name(image: &Image) -> Result<String, String> {
    default_prefix(&image.entry)
}

/// Decide for every image in `found` (search-path order) and every `Image=` declaration:
/// the portables to attach, in that order; why the others are not, in `diags`.
/// `image_at` classifies a path named by `Image=`; `pending` tells a path whose file system
/// is not mounted yet.
pub fn select(
    found: &[Image],
    config: &Config,
    image_at: &dyn Fn(&Path) -> Result<Image, String>,
    pending: &dyn Fn(&Path) -> bool,
    diags: &mut Diagnostics,
) -> Vec<Portable> {
    let mut decisions = Decide { diags, pending };
    let candidates = candidates(found, config, image_at, &mut decisions);
    candidates
        .into_iter()
        .filter_map(|(name, image)| settle(name, image, config, &mut decisions))
        .collect()
}

/// Each NAME with its image, in search-path order, `Image=` declarations in place of the
/// images of their NAME. Several images may share a NAME (`foo_1.raw`, `foo_2.raw`): each is
/// attached, and where they provide the same unit the first wins (ARCHITECTURE.md,
/// "Deviations from portablectl").
fn candidates(
    found: &[Image],
    config: &Config,
    image_at: &dyn Fn(&Path) -> Result<Image, String>,
    decisions: &mut Decide,
) -> Vec<(String, Candidate)> {
    let mut candidates: Vec<(String, Candidate)> = Vec::new();
    for image in found {
        match portable_name(image) {
            Ok(name) => candidates.push((name, Ok(image.clone()))),
            Err(e) => decisions.say(Verdict::Refuse, &image.path, e),
        }
    }

    // An Image= declaration is the image of its NAME: it takes the place of the search-path
    // images of that NAME.
    for (name, entry) in &config.images {
        let ImageEntry::Configured(conf) = entry else {
            continue;
        };
        let Some(path) = &conf.image else { continue };
        let looked_up = image_at(path).map_err(|e| (path.clone(), e));
        let mut at = None;
        let mut i = 0;
        while i < candidates.len() {
            if candidates[i].0 != *name {
                i += 1;
                continue;
            }
            let (_, old) = candidates.remove(i);
            at.get_or_insert(i);
            if let Ok(old) = old
                && looked_up.as_ref().map_or(true, |n| n.path != old.path)
            {
                decisions.say(
                    Verdict::Skip,
                    &old.path,
                    format!("{} names another image with Image=", conf.file.display()),
                );
            }
        }
        let at = at.unwrap_or(candidates.len());
        candidates.insert(at, (name.clone(), looked_up));
    }

    // A declaration that is invalid before it names an image has no image to refuse: the
    // declaration itself is what could not be attached.
    for (name, entry) in &config.images {
        if let ImageEntry::Invalid { file, reason } = entry
            && !candidates.iter().any(|(n, _)| n == name)
        {
            decisions.say(
                Verdict::Refuse,
                file,
                format!("invalid configuration: {reason}"),
            );
        }
    }
    candidates
}

/// The portable of NAME, or why its image is not attached.
fn settle(
    name: String,
    image: Candidate,
    config: &Config,
    decisions: &mut Decide,
) -> Option<Portable> {
    let image = match image {
        Ok(i) => i,
        Err((path, reason)) => {
            let file = match config.images.get(&name) {
                Some(ImageEntry::Configured(c)) => c.file.display().to_string(),
                _ => String::new(),
            };
            let reason = format!("declared with Image= in {file}, but {reason}");
            decisions.say(Verdict::Refuse, &path, reason);
            return None;
        }
    };
    let conf = match config.images.get(&name) {
        Some(ImageEntry::Configured(c)) => Some(c),
        Some(ImageEntry::Invalid { reason, .. }) => {
            let reason = format!("invalid configuration: {reason}");
            decisions.say(Verdict::Refuse, &image.path, reason);
            return None;
        }
        Some(ImageEntry::Masked { file }) => {
            let reason = format!("its configuration {} is masked", file.display());
            decisions.say(Verdict::Mask, &image.path, reason);
            return None;
        }
        None => None,
    };
    let left_out = match conf {
        None if config.defaults.attach_only_configured => Some((
            Verdict::Skip,
            format!(
                "no portables.d/{name}.conf, and AttachOnlyConfigured=yes attaches only configured images"
            ),
        )),
        Some(c) if c.attach == Some(false) => {
            Some((Verdict::Mask, format!("Attach=no in {}", c.file.display())))
        }
        _ => None,
    };
    if let Some((verdict, reason)) = left_out {
        decisions.say(verdict, &image.path, reason);
        return None;
    }
    let portable = Portable {
        name,
        image,
        config: conf.cloned().map(Box::new),
        defaults: config.defaults.clone(),
    };
    let settings = match conf {
        Some(c) => format!("with the settings of {}", c.file.display()),
        None => "with the default settings".to_string(),
    };
    let reason = format!(
        "selected as {} (unit prefix {}) {settings}",
        portable.name,
        portable.matches().join(", ")
    );
    let message = format!("Image {} {reason}.", portable.image.label());
    let subject = Subject::Image(portable.image.found_at.clone());
    decisions
        .diags
        .push(Diagnostic::new(subject, Level::Debug, reason, message));
    Some(portable)
}
