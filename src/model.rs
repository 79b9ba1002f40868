//! The nouns every stage passes on: an [`Image`] found by discovery, a [`Portable`] chosen by
//! selection, an [`Attachment`] read from it with its [`UnitSource`]s, planned into files.
//! They live here, below every stage, so that no stage imports another to name what it was
//! given (ARCHITECTURE.md, "Rules between modules").

use std::path::PathBuf;

pub use crate::image::open::ImageKind;
use crate::os_release::OsRelease;

/// The profile used when configuration names none.
pub const DEFAULT_PROFILE: &str = "default";

/// An image found in a search path or named by `Image=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The name of the entry in the search directory, e.g. `foo_1.2.raw`: the default
    /// unit prefix is derived from it.
    pub entry: String,
    /// The image name, `.raw` dropped (`foo_1.2`): names shadow each other across paths.
    pub name: String,
    /// The image's path with symlinks resolved, as the booted system sees it (without
    /// `--root`): the value of `RootImage=`/`RootDirectory=`.
    pub path: PathBuf,
    /// The last component of `path`: the value of `PORTABLE=`.
    pub file_name: String,
    /// Who other than root can change the image, if anyone (refused unless allowed).
    pub writable_by: Option<String>,
    /// Directory, raw image or block device: which of `RootDirectory=` and `RootImage=`.
    pub kind: ImageKind,
    /// Where it was found: the search-path entry or the `Image=` path, before links and
    /// version directories were resolved.
    pub found_at: PathBuf,
}

impl Image {
    /// How messages name the image: where it was found, and where that led if elsewhere.
    pub fn label(&self) -> String {
        if self.found_at == self.path {
            self.path.display().to_string()
        } else {
            format!("{} (-> {})", self.found_at.display(), self.path.display())
        }
    }
}

/// Settings of one image, from its `NAME.conf`. `None` means "not set": the defaults apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// NAME, the image name the file is named after.
    pub name: String,
    /// The host path of the `NAME.conf` that was read (without `--root`).
    pub file: PathBuf,
    /// `Image=`: an image at an absolute, normalised path, possibly outside the search paths.
    pub image: Option<PathBuf>,
    /// `Extensions=`: absolute, normalised paths, in order.
    pub extensions: Vec<PathBuf>,
    /// `Match=`: unit prefixes replacing the default prefix; `None` keeps the default.
    pub matches: Option<Vec<String>>,
    /// `Profile=`: a profile name (a file name, never a path).
    pub profile: Option<String>,
    /// `Enable=`: make the links the units' `[Install]` sections ask for.
    pub enable: Option<bool>,
    /// `Attach=`: `no` leaves the image out on purpose.
    pub attach: Option<bool>,
    /// `RequireVerity=`: attach only an image whose file system dm-verity protects.
    pub require_verity: Option<bool>,
    /// `AllowWritableByOthers=`: attach the image even if a user other than root can change it.
    pub allow_writable_by_others: Option<bool>,
}

/// Global policy from the `_*.conf` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Profile of images that set none.
    pub profile: String,
    /// `Enable=` of images that set none.
    pub enable: bool,
    /// Only images with a `NAME.conf` of their own are attached.
    pub attach_only_configured: bool,
    /// `RequireVerity=` of images that set none.
    pub require_verity: bool,
    /// Use search directories and images that users other than root can change.
    pub allow_writable_by_others: bool,
}

impl Default for Defaults {
    fn default() -> Defaults {
        Defaults {
            profile: DEFAULT_PROFILE.into(),
            enable: true,
            attach_only_configured: false,
            require_verity: false,
            allow_writable_by_others: false,
        }
    }
}

/// One portable service to attach: its root image and the settings that apply, its own
/// (`NAME.conf`) over the global policy. A consumer of a setting asks for it with
/// [`Portable::setting`], so that a new `portables.d` key needs no field here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portable {
    /// NAME: the image's name without version and suffix, the name of its `NAME.conf`.
    pub name: String,
    /// Its root image.
    pub image: Image,
    /// Its `NAME.conf`, if it has one (boxed: most images have none, and a run holds a
    /// portable per image).
    pub config: Option<Box<ImageConfig>>,
    /// The global policy (`[Defaults]`).
    pub defaults: Defaults,
}

impl Portable {
    /// A portable with default settings for `image`, as when nothing configures it.
    pub fn unconfigured(image: &Image) -> Result<Portable, String> {
        Ok(Portable {
            name: crate::names::default_prefix(&image.entry)?,
            image: image.clone(),
            config: None,
            defaults: Defaults::default(),
        })
    }

    /// A setting: the image's own if its `NAME.conf` sets it, else the global one.
    pub fn setting<T: Clone>(
        &self,
        own: impl Fn(&ImageConfig) -> &Option<T>,
        global: impl Fn(&Defaults) -> &T,
    ) -> T {
        match self.config.as_ref().and_then(|c| own(c).as_ref()) {
            Some(v) => v.clone(),
            None => global(&self.defaults).clone(),
        }
    }

    /// Where a setting was made, for messages: its `NAME.conf` if that sets it (`own`
    /// tells), else the global policy.
    pub fn set_in(&self, own: impl Fn(&ImageConfig) -> bool) -> String {
        match &self.config {
            Some(c) if own(c) => c.file.display().to_string(),
            _ => "the [Defaults] of portables.d".to_string(),
        }
    }

    /// Unit prefixes that select units: `Match=`, else NAME (the default prefix).
    pub fn matches(&self) -> Vec<String> {
        match self.config.as_ref().and_then(|c| c.matches.as_ref()) {
            Some(m) if !m.is_empty() => m.clone(),
            _ => vec![self.name.clone()],
        }
    }

    /// `Extensions=`, in order.
    pub fn extensions(&self) -> &[PathBuf] {
        self.config.as_ref().map_or(&[], |c| &c.extensions)
    }

    /// The profile, and whether configuration named it (then it must exist).
    pub fn profile(&self) -> (String, bool) {
        let profile = self.setting(|c| &c.profile, |d| &d.profile);
        let named = self.config.as_ref().is_some_and(|c| c.profile.is_some())
            || self.defaults.profile != DEFAULT_PROFILE;
        (profile, named)
    }
}

/// A unit file as found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSource {
    /// The unit's name, e.g. `foo.service`: the name it is written under.
    pub name: String,
    /// Where in the image it was found, e.g. `/usr/lib/systemd/system/foo.service`.
    pub origin: PathBuf,
    /// The file's contents, copied unchanged.
    pub bytes: Vec<u8>,
    /// For a symlink in the image to another unit file: that unit's name. The copy made
    /// under this name is the same unit to the image's author.
    pub alias_of: Option<String>,
    /// Index of the extension image it came from; `None` for the root image.
    pub extension: Option<usize>,
}

/// An image that was read successfully, with its matching units.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The root image.
    pub image: Image,
    /// Its os-release, which names it in the journal.
    pub release: OsRelease,
    /// The units that match its prefixes, from the root image and its extensions.
    pub units: Vec<UnitSource>,
    /// The profile its units run with.
    pub profile: String,
    /// Whether its units' `[Install]` links are made.
    pub enable: bool,
    /// Extension images layered over the root image, in order.
    pub extensions: Vec<Extension>,
}

/// An extension image and its extension-release file.
#[derive(Debug, Clone)]
pub struct Extension {
    /// The extension image, as found.
    pub image: Image,
    /// Its extension-release file, which must match the root image's os-release.
    pub release: OsRelease,
}
