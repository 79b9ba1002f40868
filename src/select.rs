//! Which portables to attach, and how: the images found in the search paths and those
//! declared with `Image=`, combined with their `portables.d` settings and the global policy.
//! Pure: images are looked up through a function, so tests need no files.

use std::path::{Path, PathBuf};

use crate::config::{Config, ImageEntry};
use crate::discover::Image;
use crate::names::default_prefix;

/// An image of a NAME, or why the image a declaration names could not be had.
type Candidate = Result<Image, (PathBuf, String)>;

/// One portable service to attach: its root image and every setting that applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portable {
    /// NAME: the image's name without version and suffix, the name of its `NAME.conf`.
    pub name: String,
    pub image: Image,
    /// Unit prefixes that select units: `Match=`, else the default prefix.
    pub matches: Vec<String>,
    pub extensions: Vec<PathBuf>,
    pub profile: String,
    /// Whether the profile was named by configuration (then it must exist).
    pub profile_explicit: bool,
    pub enable: bool,
    pub require_verity: bool,
    /// `AllowWritableByOthers=`: attach even if users other than root can change the image.
    pub allow_writable_by_others: bool,
    /// Where the profile and `RequireVerity=` were set, for messages: a `NAME.conf`, or
    /// the global policy.
    pub profile_from: String,
    pub verity_from: String,
    /// The `NAME.conf` that configured it, if any, for messages.
    pub config_file: Option<PathBuf>,
}

/// What becomes of one image or declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Attach(Box<Portable>),
    /// Left out on purpose by configuration: logged at info, not a failure.
    Skip {
        what: PathBuf,
        reason: String,
    },
    /// Could not be attached as declared or found: an error, exit status 1.
    Refuse {
        what: PathBuf,
        reason: String,
    },
}

/// The NAME of an image: its search-path entry cut at the first `_`, or without `.raw`,
/// `.raw.v`, `.v` (the default prefix rule).
pub fn portable_name(image: &Image) -> Result<String, String> {
    default_prefix(&image.entry)
}

/// Decide for every image in `found` (search-path order) and every `Image=` declaration.
/// `image_at` classifies a path named by `Image=`.
pub fn select(
    found: &[Image],
    config: &Config,
    image_at: &dyn Fn(&Path) -> Result<Image, String>,
) -> Vec<Decision> {
    let defaults = &config.defaults;
    let mut decisions = Vec::new();
    // In search-path order; several images may share a NAME (foo_1.raw, foo_2.raw): each is
    // attached, and where they provide the same unit the first wins (DESIGN §6.5).
    let mut candidates: Vec<(String, Candidate)> = Vec::new();
    for image in found {
        match portable_name(image) {
            Ok(name) => candidates.push((name, Ok(image.clone()))),
            Err(e) => decisions.push(Decision::Refuse {
                what: image.path.clone(),
                reason: e,
            }),
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
                && looked_up
                    .as_ref()
                    .map(|n| n.path != old.path)
                    .unwrap_or(true)
            {
                decisions.push(Decision::Skip {
                    what: old.path,
                    reason: format!("{} names another image with Image=", conf.file.display()),
                });
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
            decisions.push(Decision::Refuse {
                what: file.clone(),
                reason: format!("invalid configuration: {reason}"),
            });
        }
    }

    for (name, image) in candidates {
        let image = match image {
            Ok(i) => i,
            Err((path, reason)) => {
                let file = match config.images.get(&name) {
                    Some(ImageEntry::Configured(c)) => c.file.display().to_string(),
                    _ => String::new(),
                };
                decisions.push(Decision::Refuse {
                    what: path,
                    reason: format!("declared with Image= in {file}, but {reason}"),
                });
                continue;
            }
        };
        let conf = match config.images.get(&name) {
            Some(ImageEntry::Configured(c)) => Some(c),
            Some(ImageEntry::Invalid { reason, .. }) => {
                decisions.push(Decision::Refuse {
                    what: image.path.clone(),
                    reason: format!("invalid configuration: {reason}"),
                });
                continue;
            }
            Some(ImageEntry::Masked { file }) => {
                decisions.push(Decision::Skip {
                    what: image.path.clone(),
                    reason: format!("its configuration {} is masked", file.display()),
                });
                continue;
            }
            None => None,
        };
        if conf.is_none() && defaults.attach_only_configured {
            decisions.push(Decision::Skip {
                what: image.path.clone(),
                reason: format!(
                    "no portables.d/{name}.conf, and AttachOnlyConfigured=yes attaches only configured images"
                ),
            });
            continue;
        }
        if let Some(c) = conf
            && c.attach == Some(false)
        {
            decisions.push(Decision::Skip {
                what: image.path.clone(),
                reason: format!("Attach=no in {}", c.file.display()),
            });
            continue;
        }
        let matches = match conf.and_then(|c| c.matches.clone()) {
            Some(m) if !m.is_empty() => m,
            _ => vec![name.clone()],
        };
        let profile_conf = conf.and_then(|c| c.profile.clone());
        let from = |per_image: bool| match conf {
            Some(c) if per_image => c.file.display().to_string(),
            _ => "the [Defaults] of portables.d".to_string(),
        };
        let profile_from = from(profile_conf.is_some());
        let verity_from = from(conf.is_some_and(|c| c.require_verity.is_some()));
        decisions.push(Decision::Attach(Box::new(Portable {
            name,
            matches,
            extensions: conf.map(|c| c.extensions.clone()).unwrap_or_default(),
            profile_explicit: profile_conf.is_some()
                || defaults.profile != crate::attach::DEFAULT_PROFILE,
            profile: profile_conf.unwrap_or_else(|| defaults.profile.clone()),
            enable: conf.and_then(|c| c.enable).unwrap_or(defaults.enable),
            require_verity: conf
                .and_then(|c| c.require_verity)
                .unwrap_or(defaults.require_verity),
            allow_writable_by_others: conf
                .and_then(|c| c.allow_writable_by_others)
                .unwrap_or(defaults.allow_writable_by_others),
            config_file: conf.map(|c| c.file.clone()),
            profile_from,
            verity_from,
            image,
        })));
    }
    decisions
}
