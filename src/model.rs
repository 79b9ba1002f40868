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

impl Portable {
    /// A portable with default settings for `image`, as when nothing configures it.
    pub fn unconfigured(image: &Image) -> Result<Portable, String> {
        let name = crate::names::default_prefix(&image.entry)?;
        Ok(Portable {
            matches: vec![name.clone()],
            name,
            image: image.clone(),
            extensions: Vec::new(),
            profile: DEFAULT_PROFILE.to_string(),
            profile_explicit: false,
            enable: true,
            require_verity: false,
            allow_writable_by_others: false,
            profile_from: String::new(),
            verity_from: String::new(),
            config_file: None,
        })
    }
}

/// A unit file as found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSource {
    pub name: String,
    /// Where in the image it was found, e.g. `/usr/lib/systemd/system/foo.service`.
    pub origin: PathBuf,
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
