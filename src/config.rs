//! The `portables.d` configuration: which images are attached, and how.
//!
//! Drop-in directories are merged as systemd merges `*.conf` directories: a file name in an
//! earlier directory replaces the same name in a later one whole, and a file that is empty or
//! a link to `/dev/null` masks the name. What a file configures is told by its name alone:
//! `NAME.conf` holds `[Portable]` settings of the image NAME, `_*.conf` holds `[Defaults]`.
//! An image's name (its file name cut at the first `_`) can never contain `_`, so the two kinds
//! cannot collide.
//!
//! Nothing here logs: every message is returned with its level, so the caller decides where it
//! goes and tests can look at it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use log::Level;

use crate::image::chase::Tree;
use crate::image::dir::DirFs;
use crate::image::{FileKind, FsError, MAX_FILE_BYTES};
use crate::names::filename_is_valid;
use crate::root::Root;
use crate::unit_syntax::{self, Entry, UnitFile, split_words};

/// Configuration directories, highest priority first.
pub const CONFIG_DIRS: [&str; 4] = [
    "/etc/portables.d",
    "/run/portables.d",
    "/usr/local/lib/portables.d",
    "/usr/lib/portables.d",
];

/// The section of a `NAME.conf` file.
pub const PORTABLE_SECTION: &str = "Portable";
/// The section of a `_*.conf` file.
pub const DEFAULTS_SECTION: &str = "Defaults";

/// Every key the parser accepts in `[Portable]`.
pub const PORTABLE_KEYS: &[&str] = &[
    "Image",
    "Extensions",
    "Match",
    "Profile",
    "Enable",
    "Attach",
    "RequireVerity",
    "AllowWritableByOthers",
];

/// Every key the parser accepts in `[Defaults]`.
pub const DEFAULTS_KEYS: &[&str] = &[
    "Profile",
    "Enable",
    "AttachOnlyConfigured",
    "RequireVerity",
    "AllowWritableByOthers",
];

/// The kernel command line switch that turns the generator off for one boot.
pub const CMDLINE_SWITCH: &str = "portables_generator";

/// Longest path accepted, as systemd's `path_is_valid()` (PATH_MAX, less the NUL).
const PATH_MAX: usize = 4095;
/// Longest path component accepted (NAME_MAX).
const NAME_MAX: usize = 255;
/// Values longer than this are cut in messages: a 1 MiB value must not become a 1 MiB log line.
const SHOWN_VALUE_MAX: usize = 200;

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
    pub enable: Option<bool>,
    pub attach: Option<bool>,
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
            profile: "default".into(),
            enable: true,
            attach_only_configured: false,
            require_verity: false,
            allow_writable_by_others: false,
        }
    }
}

/// What the configuration says about one image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageEntry {
    Configured(ImageConfig),
    /// `NAME.conf` is empty or a link to `/dev/null`: the image is left out on purpose.
    Masked {
        file: PathBuf,
    },
    /// `NAME.conf` could not be read or holds an invalid value: the image must be refused.
    /// `reason` names the file (and line, key and value) and has no final full stop.
    Invalid {
        file: PathBuf,
        reason: String,
    },
}

/// A message for the log: one line, naming the file (and line where there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub level: Level,
    pub text: String,
}

/// The whole configuration.
#[derive(Debug, Default)]
pub struct Config {
    pub defaults: Defaults,
    /// By image name (NAME of `NAME.conf`).
    pub images: BTreeMap<String, ImageEntry>,
    /// In the order they arose; the caller logs them.
    pub messages: Vec<Message>,
}

impl Config {
    /// The settings of the image `name`, if it has a readable, valid `NAME.conf`.
    pub fn image(&self, name: &str) -> Option<&ImageConfig> {
        match self.images.get(name) {
            Some(ImageEntry::Configured(c)) => Some(c),
            _ => None,
        }
    }
}

fn message(level: Level, text: String) -> Message {
    Message { level, text }
}

/// Most lines logged about one file, and most invalid values named in the reason an image
/// is refused for; the rest are counted: a file of 100 000 unknown keys must not become
/// 100 000 log lines.
const MAX_LINES_PER_FILE: usize = 5;

/// The messages about one file: the first [`MAX_LINES_PER_FILE`], then how many more.
struct FileMessages<'a> {
    file: &'a Path,
    messages: Vec<Message>,
    more: usize,
    /// The most severe level among those not kept.
    more_level: Level,
}

impl<'a> FileMessages<'a> {
    fn new(file: &'a Path) -> FileMessages<'a> {
        FileMessages {
            file,
            messages: Vec::new(),
            more: 0,
            more_level: Level::Trace,
        }
    }

    /// `text` is made only if it is kept: counting the rest stays cheap.
    fn push(&mut self, level: Level, text: impl FnOnce() -> String) {
        if self.messages.len() < MAX_LINES_PER_FILE {
            self.messages.push(message(level, text()));
        } else {
            self.more += 1;
            self.more_level = self.more_level.min(level);
        }
    }

    fn finish(mut self) -> Vec<Message> {
        if self.more > 0 {
            self.messages.push(message(
                self.more_level,
                format!(
                    "{}: {} more messages about this file not shown.",
                    self.file.display(),
                    self.more
                ),
            ));
        }
        self.messages
    }
}

/// What a configuration file name says it configures.
#[derive(Debug, PartialEq, Eq)]
enum FileRole {
    Image(String),
    Defaults,
    Neither,
}

fn file_role(file_name: &str) -> FileRole {
    let Some(stem) = file_name.strip_suffix(".conf") else {
        return FileRole::Neither;
    };
    if stem.starts_with('_') {
        return FileRole::Defaults;
    }
    let valid = filename_is_valid(stem)
        && !stem.starts_with('.')
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if valid {
        FileRole::Image(stem.to_string())
    } else {
        FileRole::Neither
    }
}

/// The highest-priority directory entry of one file name.
struct Fragment {
    /// As the administrator knows it, e.g. `/etc/portables.d/foo.conf`.
    file: PathBuf,
    /// With the directory's own symlinks resolved, inside the root.
    resolved: PathBuf,
}

enum Contents {
    Masked,
    Bytes(Vec<u8>),
    Unreadable(String),
}

/// Read every drop-in directory below `root`.
pub fn load(root: &Root) -> Config {
    let mut config = Config::default();
    // Links are resolved inside the root, as the booted system would resolve them.
    let host = Tree::new(Box::new(DirFs::new(root.dir().to_path_buf())));
    let fragments = list_fragments(root, &host, &mut config.messages);

    let mut defaults_files = Vec::new();
    for (name, fragment) in fragments {
        let file = fragment.file;
        let role = file_role(&name);
        if role == FileRole::Neither {
            config.messages.push(message(
                Level::Warn,
                format!(
                    "{}: the file name cannot name a portable image (NAME.conf, NAME of [A-Za-z0-9.-] not starting with '.') and is not a global policy file (_*.conf), ignoring.",
                    file.display()
                ),
            ));
            continue;
        }
        let contents = read_fragment(root, &host, &fragment.resolved);
        match (role, contents) {
            (FileRole::Image(image), Contents::Masked) => {
                config.messages.push(message(
                    Level::Debug,
                    format!("{} masks the image {image}.", file.display()),
                ));
                config.images.insert(image, ImageEntry::Masked { file });
            }
            (FileRole::Image(image), Contents::Unreadable(why)) => {
                let reason = format!("{}: {why}", file.display());
                config
                    .images
                    .insert(image, ImageEntry::Invalid { file, reason });
            }
            (FileRole::Image(image), Contents::Bytes(bytes)) => {
                let (parsed, messages) = parse_image_config(&image, &file, &bytes);
                config.messages.extend(messages);
                let entry = match parsed {
                    Ok(c) => ImageEntry::Configured(c),
                    Err(reason) => ImageEntry::Invalid { file, reason },
                };
                config.images.insert(image, entry);
            }
            (_, Contents::Masked) => config.messages.push(message(
                Level::Debug,
                format!("{}: masked, not read.", file.display()),
            )),
            (_, Contents::Unreadable(why)) => config.messages.push(message(
                Level::Error,
                format!("{}: {why}, ignoring the file.", file.display()),
            )),
            (_, Contents::Bytes(bytes)) => defaults_files.push((file, bytes)),
        }
    }

    let (defaults, messages) = parse_defaults(&defaults_files);
    config.defaults = defaults;
    config.messages.extend(messages);
    config
}

/// Every `*.conf` name across the directories, mapped to the entry that wins it.
fn list_fragments(
    root: &Root,
    host: &Tree,
    messages: &mut Vec<Message>,
) -> BTreeMap<String, Fragment> {
    let mut fragments: BTreeMap<String, Fragment> = BTreeMap::new();
    for dir in CONFIG_DIRS {
        let (resolved_dir, entries) = match host.read_dir(Path::new(dir)) {
            Ok(listing) => listing,
            Err(FsError::NotFound) => {
                messages.push(message(
                    Level::Debug,
                    format!("Configuration directory {dir} does not exist."),
                ));
                continue;
            }
            Err(e) => {
                messages.push(message(
                    Level::Error,
                    format!("Cannot read configuration directory {dir}: {e}."),
                ));
                continue;
            }
        };
        // Configuration decides what root runs: a directory others can write is not read, and
        // no setting can allow it (the setting would itself be in reach of those others).
        if let Some(who) = crate::ownership::path_writable_by_others(&root.join(&resolved_dir)) {
            messages.push(message(
                Level::Error,
                format!("Configuration directory {dir} is {who}: not read, root must not run what others can change."),
            ));
            continue;
        }
        for entry in entries {
            let file = Path::new(dir).join(std::ffi::OsStr::from_bytes(&entry.name));
            if entry.name.starts_with(b".") || !entry.name.ends_with(b".conf") {
                messages.push(message(
                    Level::Debug,
                    format!("Ignoring {}: not a *.conf file.", file.display()),
                ));
                continue;
            }
            // As systemd's conf_files_list(), which only looks at files and links.
            if entry.kind == FileKind::Dir {
                messages.push(message(
                    Level::Debug,
                    format!("Ignoring {}: a directory.", file.display()),
                ));
                continue;
            }
            let Ok(name) = String::from_utf8(entry.name.clone()) else {
                messages.push(message(
                    Level::Warn,
                    format!(
                        "{}: the file name is not valid UTF-8, so it cannot name a portable image, ignoring.",
                        file.display()
                    ),
                ));
                continue;
            };
            if let Some(winner) = fragments.get(&name) {
                messages.push(message(
                    Level::Debug,
                    format!(
                        "{} is overridden by {}.",
                        file.display(),
                        winner.file.display()
                    ),
                ));
                continue;
            }
            let resolved = resolved_dir.join(&name);
            fragments.insert(name, Fragment { file, resolved });
        }
    }
    fragments
}

/// The contents of one drop-in, or why there are none. Never opens anything that could
/// block: only regular files are opened, and then with O_NONBLOCK in case one was swapped in.
fn read_fragment(root: &Root, host: &Tree, path: &Path) -> Contents {
    let real = root.join(path);
    let meta = match fs::symlink_metadata(&real) {
        Ok(m) => m,
        Err(e) => return Contents::Unreadable(format!("cannot access: {e}")),
    };
    let is_link = meta.file_type().is_symlink();
    // Under --root the link's /dev/null is not the root's, so the text is what counts.
    if is_link && fs::read_link(&real).is_ok_and(|t| t == Path::new("/dev/null")) {
        return Contents::Masked;
    }
    let resolved = match host.resolve(path, true) {
        Ok(r) => r,
        Err(FsError::NotFound) if is_link => {
            return Contents::Unreadable("dangling symbolic link".into());
        }
        Err(e) => return Contents::Unreadable(format!("cannot access: {e}")),
    };
    if resolved.kind == FileKind::File
        && let Some(who) = crate::ownership::path_writable_by_others(&root.join(&resolved.path))
    {
        return Contents::Unreadable(format!(
            "it is {who}: root must not run what others can change"
        ));
    }
    match resolved.kind {
        FileKind::File => match host.read_file(&resolved.path, MAX_FILE_BYTES) {
            Ok(bytes) if bytes.is_empty() => Contents::Masked,
            Ok(bytes) => Contents::Bytes(bytes),
            Err(e) => Contents::Unreadable(format!("cannot read: {e}")),
        },
        FileKind::Dir => Contents::Unreadable("is a directory".into()),
        FileKind::Symlink => Contents::Unreadable("unresolved symbolic link".into()),
        FileKind::Other => {
            let ft = match fs::symlink_metadata(root.join(&resolved.path)) {
                Ok(m) => m.file_type(),
                Err(e) => return Contents::Unreadable(format!("cannot access: {e}")),
            };
            // systemd's null_or_empty() takes any character device for /dev/null, so as not to
            // hard-code its device numbers.
            if ft.is_char_device() {
                return Contents::Masked;
            }
            let what = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() {
                "a block device"
            } else {
                "of an unknown type"
            };
            Contents::Unreadable(format!("not a regular file ({what})"))
        }
    }
}

/// Parse one `NAME.conf`. `file` is the host path used in messages.
///
/// The error is the reason to refuse the image: every invalid value, naming file, line, key and
/// value, joined by `; `. The messages are warnings that do not invalidate anything.
pub fn parse_image_config(
    name: &str,
    file: &Path,
    bytes: &[u8],
) -> (Result<ImageConfig, String>, Vec<Message>) {
    let mut messages = FileMessages::new(file);
    let unit = match parse_file(file, bytes, &mut messages) {
        Ok(unit) => unit,
        Err(reason) => return (Err(reason), messages.finish()),
    };
    warn_unknown_sections(
        &unit,
        file,
        PORTABLE_SECTION,
        "global defaults belong in a file named _*.conf",
        &mut messages,
    );

    let mut config = ImageConfig {
        name: name.to_string(),
        file: file.to_path_buf(),
        ..ImageConfig::default()
    };
    let mut errors = Vec::new();
    let mut more_errors = 0usize;
    for entry in section_entries(&unit, PORTABLE_SECTION) {
        let v = entry.value.as_str();
        let result = match entry.key.as_str() {
            "Image" => reset_or(v, &mut config.image, normalized_path),
            "Extensions" if v.is_empty() => {
                config.extensions.clear();
                Ok(())
            }
            "Extensions" => words(v, normalized_path).map(|w| config.extensions.extend(w)),
            "Match" if v.is_empty() => {
                config.matches = None;
                Ok(())
            }
            "Match" => {
                words(v, unit_prefix).map(|w| config.matches.get_or_insert_with(Vec::new).extend(w))
            }
            "Profile" => reset_or(v, &mut config.profile, profile_name),
            "Enable" => reset_or(v, &mut config.enable, boolean),
            "Attach" => reset_or(v, &mut config.attach, boolean),
            "RequireVerity" => reset_or(v, &mut config.require_verity, boolean),
            "AllowWritableByOthers" => reset_or(v, &mut config.allow_writable_by_others, boolean),
            key => {
                warn_unknown_key(file, entry, key, PORTABLE_SECTION, &mut messages);
                Ok(())
            }
        };
        match result {
            Err(why) if errors.len() < MAX_LINES_PER_FILE => {
                errors.push(invalid(file, entry, &why));
            }
            Err(_) => more_errors += 1,
            Ok(()) => {}
        }
    }
    if more_errors > 0 {
        errors.push(format!("and {more_errors} more invalid values"));
    }
    if errors.is_empty() {
        (Ok(config), messages.finish())
    } else {
        (Err(errors.join("; ")), messages.finish())
    }
}

/// Parse the `_*.conf` files, in the order given (file-name order); a later assignment wins.
///
/// An invalid value here is reported at error level and resets its key to the built-in default,
/// as an empty assignment would: an invalid value is an error for the image it concerns, and a
/// global key concerns every image, so refusing would take down every image for one typo.
pub fn parse_defaults(files: &[(PathBuf, Vec<u8>)]) -> (Defaults, Vec<Message>) {
    let builtin = Defaults::default();
    let mut defaults = Defaults::default();
    let mut messages = Vec::new();
    for (file, bytes) in files {
        let mut lines = FileMessages::new(file);
        let unit = match parse_file(file, bytes, &mut lines) {
            Ok(unit) => unit,
            Err(reason) => {
                lines.push(Level::Error, || format!("{reason}, ignoring the file."));
                messages.extend(lines.finish());
                continue;
            }
        };
        warn_unknown_sections(
            &unit,
            file,
            DEFAULTS_SECTION,
            "settings of one image belong in NAME.conf",
            &mut lines,
        );
        for entry in section_entries(&unit, DEFAULTS_SECTION) {
            let v = entry.value.as_str();
            let (result, default) = match entry.key.as_str() {
                "Profile" => (
                    set_or_default(v, &mut defaults.profile, &builtin.profile, profile_name),
                    format!("'{}'", builtin.profile),
                ),
                "Enable" => (
                    set_or_default(v, &mut defaults.enable, &builtin.enable, boolean),
                    yes_no(builtin.enable),
                ),
                "AttachOnlyConfigured" => (
                    set_or_default(
                        v,
                        &mut defaults.attach_only_configured,
                        &builtin.attach_only_configured,
                        boolean,
                    ),
                    yes_no(builtin.attach_only_configured),
                ),
                "RequireVerity" => (
                    set_or_default(
                        v,
                        &mut defaults.require_verity,
                        &builtin.require_verity,
                        boolean,
                    ),
                    yes_no(builtin.require_verity),
                ),
                "AllowWritableByOthers" => (
                    set_or_default(
                        v,
                        &mut defaults.allow_writable_by_others,
                        &builtin.allow_writable_by_others,
                        boolean,
                    ),
                    yes_no(builtin.allow_writable_by_others),
                ),
                key => {
                    warn_unknown_key(file, entry, key, DEFAULTS_SECTION, &mut lines);
                    (Ok(()), String::new())
                }
            };
            if let Err(why) = result {
                lines.push(Level::Error, || {
                    format!(
                        "{}, using the default {default}.",
                        invalid(file, entry, &why)
                    )
                });
            }
        }
        messages.extend(lines.finish());
    }
    (defaults, messages)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// Parse with unit-file syntax, turning its warnings into messages; the error is a whole-file
/// refusal, naming file and line.
fn parse_file(file: &Path, bytes: &[u8], messages: &mut FileMessages) -> Result<UnitFile, String> {
    let (unit, warnings) = unit_syntax::parse(bytes)
        .map_err(|e| format!("{}:{}: {}", file.display(), e.line, e.message))?;
    for w in warnings {
        messages.push(Level::Warn, || {
            format!("{}:{}: {}", file.display(), w.line, w.message)
        });
    }
    Ok(unit)
}

fn section_entries<'a>(unit: &'a UnitFile, section: &str) -> impl Iterator<Item = &'a Entry> {
    unit.section(section).into_iter().flat_map(|s| &s.entries)
}

fn warn_unknown_sections(
    unit: &UnitFile,
    file: &Path,
    known: &str,
    hint: &str,
    messages: &mut FileMessages,
) {
    for section in &unit.sections {
        // systemd ignores X- sections silently too, so that extensions need no warning.
        if section.name == known || section.name.starts_with("X-") {
            continue;
        }
        messages.push(Level::Warn, || {
            let hint = if [PORTABLE_SECTION, DEFAULTS_SECTION].contains(&section.name.as_str()) {
                format!(" ({hint})")
            } else {
                String::new()
            };
            format!(
                "{}: unknown section [{}]{hint}, ignoring.",
                file.display(),
                shown(&section.name)
            )
        });
    }
}

fn warn_unknown_key(
    file: &Path,
    entry: &Entry,
    key: &str,
    section: &str,
    messages: &mut FileMessages,
) {
    if key.starts_with("X-") {
        return;
    }
    messages.push(Level::Warn, || {
        format!(
            "{}:{}: unknown key {}= in section [{section}], ignoring.",
            file.display(),
            entry.line,
            shown(key)
        )
    });
}

fn invalid(file: &Path, entry: &Entry, why: &str) -> String {
    format!(
        "{}:{}: invalid {}={}: {why}",
        file.display(),
        entry.line,
        entry.key,
        shown(&entry.value)
    )
}

/// `value` as it appears in a message, cut if very long.
fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_VALUE_MAX) {
        Some((cut, _)) => format!("{}…", value.get(..cut).unwrap_or_default()),
        None => value.to_string(),
    }
}

/// A single-valued setting: an empty assignment resets it to unset.
fn reset_or<T>(
    value: &str,
    slot: &mut Option<T>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(), String> {
    *slot = if value.is_empty() {
        None
    } else {
        Some(parse(value)?)
    };
    Ok(())
}

/// A global setting: an empty assignment, or an invalid one, resets it to the built-in default.
fn set_or_default<T: Clone>(
    value: &str,
    slot: &mut T,
    default: &T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(), String> {
    if value.is_empty() {
        *slot = default.clone();
        return Ok(());
    }
    match parse(value) {
        Ok(v) => {
            *slot = v;
            Ok(())
        }
        Err(why) => {
            *slot = default.clone();
            Err(why)
        }
    }
}

/// A list value: every word must be valid, or the whole assignment is.
fn words<T>(value: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    split_words(value)?
        .iter()
        .map(|w| parse(w).map_err(|why| format!("'{}': {why}", shown(w))))
        .collect()
}

/// systemd's `parse_boolean()`.
pub fn parse_boolean(value: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["1", "yes", "y", "true", "t", "on"];
    const FALSE: [&str; 6] = ["0", "no", "n", "false", "f", "off"];
    if TRUE.iter().any(|t| value.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| value.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    parse_boolean(value).ok_or_else(|| "not a boolean".to_string())
}

/// An absolute path as systemd's `path_simplify_and_warn(PATH_CHECK_ABSOLUTE)` accepts it:
/// `//` and `/./` are simplified away, `..` is refused (it cannot be simplified without
/// looking at the file system). Stricter than systemd: `/` itself (the host's root is no
/// image) and control characters (they would end up in generated unit files) are refused.
pub fn normalized_path(value: &str) -> Result<PathBuf, String> {
    if !value.starts_with('/') {
        return Err("not an absolute path".into());
    }
    if value.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    let mut parts = Vec::new();
    for part in value.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("not normalized (contains \"..\")".into()),
            p if p.len() > NAME_MAX => {
                return Err(format!("a path component is longer than {NAME_MAX} bytes"));
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("names the root directory".into());
    }
    let path = format!("/{}", parts.join("/"));
    if path.len() > PATH_MAX {
        return Err(format!("longer than {PATH_MAX} bytes"));
    }
    Ok(PathBuf::from(path))
}

/// A `Match=` word: a unit name prefix that can only ever match unit names.
fn unit_prefix(word: &str) -> Result<String, String> {
    let chars_ok = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | ':' | '_' | '-'));
    if chars_ok && filename_is_valid(word) {
        Ok(word.to_string())
    } else {
        Err("not a unit name prefix (it must consist of [A-Za-z0-9.@:_-])".into())
    }
}

/// A profile name, as `portablectl --profile=` takes it: a file name, never a path.
fn profile_name(value: &str) -> Result<String, String> {
    if filename_is_valid(value) && !value.chars().any(char::is_control) {
        Ok(value.to_string())
    } else {
        Err("not a valid profile name (a file name, without '/')".into())
    }
}

/// Whether the generator may run this boot: false when the kernel command line says
/// `portables_generator=` with a false boolean (the last occurrence counts, `-` and `_` are
/// the same in the key, a bare `portables_generator` means yes, an invalid value is ignored,
/// all as systemd's `proc_cmdline_get_bool()`).
pub fn enabled_by_cmdline(cmdline: &str) -> bool {
    let mut last: Option<Option<String>> = None;
    for word in cmdline_words(cmdline) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (word.as_str(), None),
        };
        if cmdline_key_eq(key, CMDLINE_SWITCH) {
            last = Some(value);
        }
    }
    match last {
        Some(Some(value)) => parse_boolean(&value).unwrap_or(true),
        Some(None) | None => true,
    }
}

fn cmdline_key_eq(a: &str, b: &str) -> bool {
    let norm = |c: u8| if c == b'-' { b'_' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

/// Words of the kernel command line as `extract_first_word(EXTRACT_UNQUOTE|EXTRACT_RELAX|
/// EXTRACT_RETAIN_ESCAPE)` splits them: quotes group and are removed, and an unterminated quote
/// runs to the end instead of being an error (RELAX).
fn cmdline_words(cmdline: &str) -> Vec<String> {
    let is_separator = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in cmdline.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.get_or_insert_with(String::new).push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            None if is_separator(c) => words.extend(word.take()),
            None => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{XorShift, assert_linear, repeated};
    use std::os::unix::fs::symlink;
    use std::process::Command;

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn link(root: &Path, path: &str, target: &str) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    fn load_dir(dir: &Path) -> Config {
        load(&Root::new(dir))
    }

    fn parse_ok(text: &str) -> (ImageConfig, Vec<Message>) {
        let (r, m) = parse_image_config(
            "foo",
            Path::new("/etc/portables.d/foo.conf"),
            text.as_bytes(),
        );
        (r.expect("valid"), m)
    }

    fn parse_err(text: &str) -> String {
        let (r, _) = parse_image_config(
            "foo",
            Path::new("/etc/portables.d/foo.conf"),
            text.as_bytes(),
        );
        r.expect_err("invalid")
    }

    fn texts(messages: &[Message], level: Level) -> Vec<String> {
        messages
            .iter()
            .filter(|m| m.level == level)
            .map(|m| m.text.clone())
            .collect()
    }

    fn defaults_of(files: &[(&str, &str)]) -> (Defaults, Vec<Message>) {
        let files: Vec<(PathBuf, Vec<u8>)> = files
            .iter()
            .map(|(f, t)| (PathBuf::from(f), t.as_bytes().to_vec()))
            .collect();
        parse_defaults(&files)
    }

    #[test]
    fn etc_replaces_usr_lib_whole() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "/usr/lib/portables.d/foo.conf",
            "[Portable]\nProfile=strict\nEnable=no\n",
        );
        write(
            t.path(),
            "/etc/portables.d/foo.conf",
            "[Portable]\nAttach=yes\n",
        );
        write(
            t.path(),
            "/usr/lib/portables.d/bar.conf",
            "[Portable]\nAttach=no\n",
        );
        let c = load_dir(t.path());
        let foo = c.image("foo").expect("configured");
        assert_eq!(foo.file, Path::new("/etc/portables.d/foo.conf"));
        assert_eq!(foo.attach, Some(true));
        // Nothing of the /usr/lib file survives.
        assert_eq!(foo.profile, None);
        assert_eq!(foo.enable, None);
        assert_eq!(c.image("bar").unwrap().attach, Some(false));
        assert!(
            texts(&c.messages, Level::Warn).is_empty(),
            "{:?}",
            c.messages
        );
    }

    #[test]
    fn run_and_usr_local_sit_between() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "/usr/lib/portables.d/a.conf",
            "[Portable]\nProfile=p1\n",
        );
        write(
            t.path(),
            "/usr/local/lib/portables.d/a.conf",
            "[Portable]\nProfile=p2\n",
        );
        write(
            t.path(),
            "/run/portables.d/a.conf",
            "[Portable]\nProfile=p3\n",
        );
        assert_eq!(
            load_dir(t.path()).image("a").unwrap().profile.as_deref(),
            Some("p3")
        );
    }

    #[test]
    fn masking_by_dev_null_link_and_empty_file() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "/usr/lib/portables.d/foo.conf",
            "[Portable]\nEnable=no\n",
        );
        link(t.path(), "/etc/portables.d/foo.conf", "/dev/null");
        write(
            t.path(),
            "/usr/lib/portables.d/bar.conf",
            "[Portable]\nEnable=no\n",
        );
        write(t.path(), "/run/portables.d/bar.conf", "");
        write(
            t.path(),
            "/usr/lib/portables.d/_vendor.conf",
            "[Defaults]\nEnable=no\n",
        );
        link(t.path(), "/etc/portables.d/_vendor.conf", "/dev//null");
        let c = load_dir(t.path());
        assert_eq!(
            c.images.get("foo"),
            Some(&ImageEntry::Masked {
                file: "/etc/portables.d/foo.conf".into()
            })
        );
        assert_eq!(
            c.images.get("bar"),
            Some(&ImageEntry::Masked {
                file: "/run/portables.d/bar.conf".into()
            })
        );
        assert!(c.defaults.enable);
    }

    #[test]
    fn masking_by_link_to_a_character_device() {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("dev/null");
        fs::create_dir_all(dev.parent().unwrap()).unwrap();
        // Making a device node needs privileges; without them there is nothing to test.
        let made = Command::new("mknod")
            .arg(&dev)
            .args(["c", "1", "3"])
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            eprintln!("skipped: cannot create a character device");
            return;
        }
        write(
            t.path(),
            "/usr/lib/portables.d/foo.conf",
            "[Portable]\nEnable=no\n",
        );
        // Not the text /dev/null: only resolving the link finds the device.
        link(t.path(), "/etc/portables.d/foo.conf", "../../dev/./null");
        let c = load_dir(t.path());
        assert!(matches!(
            c.images.get("foo"),
            Some(ImageEntry::Masked { .. })
        ));
    }

    #[test]
    fn symlinked_fragments_are_read() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "/usr/share/conf/foo.conf",
            "[Portable]\nProfile=strict\n",
        );
        link(
            t.path(),
            "/etc/portables.d/foo.conf",
            "/usr/share/conf/foo.conf",
        );
        write(t.path(), "/srv/bar.conf", "[Portable]\nProfile=trusted\n");
        link(t.path(), "/etc/portables.d/bar.conf", "../../srv/bar.conf");
        link(t.path(), "/etc/portables.d/_a.conf", "/srv/defaults");
        write(t.path(), "/srv/defaults", "[Defaults]\nRequireVerity=yes\n");
        let c = load_dir(t.path());
        let foo = c.image("foo").expect("read through the link");
        assert_eq!(foo.profile.as_deref(), Some("strict"));
        assert_eq!(foo.file, Path::new("/etc/portables.d/foo.conf"));
        assert_eq!(c.image("bar").unwrap().profile.as_deref(), Some("trusted"));
        assert!(c.defaults.require_verity);
    }

    #[test]
    fn symlinked_directory_is_followed_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "/srv/pd/foo.conf", "[Portable]\nAttach=no\n");
        link(t.path(), "/etc/portables.d", "/srv/pd");
        let c = load_dir(t.path());
        let foo = c.image("foo").expect("found");
        assert_eq!(foo.file, Path::new("/etc/portables.d/foo.conf"));
    }

    #[test]
    fn unreadable_fragments_make_the_image_invalid() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "/usr/lib/portables.d/gone.conf", "[Portable]\n");
        link(t.path(), "/etc/portables.d/gone.conf", "/nowhere");
        link(t.path(), "/etc/portables.d/loop.conf", "loop.conf");
        let big = "#".repeat(MAX_FILE_BYTES as usize + 1);
        write(t.path(), "/etc/portables.d/big.conf", &big);
        fs::create_dir_all(t.path().join("srv/d")).unwrap();
        link(t.path(), "/etc/portables.d/dir.conf", "/srv/d");
        let c = load_dir(t.path());
        let reason = |n: &str| match c.images.get(n) {
            Some(ImageEntry::Invalid { reason, .. }) => reason.clone(),
            other => panic!("{n}: {other:?}"),
        };
        assert_eq!(
            reason("gone"),
            "/etc/portables.d/gone.conf: dangling symbolic link"
        );
        assert!(
            reason("loop").contains("symbolic links"),
            "{}",
            reason("loop")
        );
        assert!(reason("big").contains("too large"), "{}", reason("big"));
        assert!(reason("dir").contains("directory"), "{}", reason("dir"));
    }

    #[test]
    fn a_real_directory_named_conf_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc/portables.d/foo.conf")).unwrap();
        write(
            t.path(),
            "/usr/lib/portables.d/foo.conf",
            "[Portable]\nAttach=no\n",
        );
        let c = load_dir(t.path());
        assert_eq!(c.image("foo").unwrap().attach, Some(false));
    }

    #[test]
    fn fifo_does_not_block() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("etc/portables.d");
        fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mkfifo")
            .arg(dir.join("foo.conf"))
            .arg(dir.join("_x.conf"))
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        let c = load_dir(t.path());
        assert_eq!(
            c.images.get("foo"),
            Some(&ImageEntry::Invalid {
                file: "/etc/portables.d/foo.conf".into(),
                reason: "/etc/portables.d/foo.conf: not a regular file (a FIFO)".into()
            })
        );
        assert_eq!(
            texts(&c.messages, Level::Error),
            vec!["/etc/portables.d/_x.conf: not a regular file (a FIFO), ignoring the file."]
        );
    }

    #[test]
    fn names_and_ignored_entries() {
        let t = tempfile::tempdir().unwrap();
        let body = "[Portable]\nAttach=no\n";
        write(t.path(), "/etc/portables.d/foo_bar.conf", body);
        write(t.path(), "/etc/portables.d/a+b.conf", body);
        write(t.path(), "/etc/portables.d/.hidden.conf", body);
        write(t.path(), "/etc/portables.d/foo.conf.bak", body);
        write(t.path(), "/etc/portables.d/README", body);
        write(t.path(), "/etc/portables.d/My.App-2.conf", body);
        let c = load_dir(t.path());
        assert_eq!(c.images.keys().collect::<Vec<_>>(), vec!["My.App-2"]);
        let warnings = texts(&c.messages, Level::Warn);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("/etc/portables.d/a+b.conf: "));
        assert!(warnings[1].starts_with("/etc/portables.d/foo_bar.conf: "));
        assert!(warnings[1].contains("cannot name a portable image"));
    }

    #[test]
    fn missing_directories_are_debug_only() {
        let t = tempfile::tempdir().unwrap();
        let c = load_dir(t.path());
        assert!(c.images.is_empty());
        assert_eq!(c.defaults, Defaults::default());
        assert!(c.messages.iter().all(|m| m.level == Level::Debug));
        assert_eq!(c.messages.len(), 4);
    }

    #[test]
    fn a_file_in_place_of_a_directory_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "/etc/portables.d", "oops");
        let c = load_dir(t.path());
        let errors = texts(&c.messages, Level::Error);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("/etc/portables.d"), "{errors:?}");
    }

    #[test]
    fn every_portable_key() {
        let (c, m) = parse_ok(
            "[Portable]\n\
             Image=/srv//images/./foo_1.raw\n\
             Extensions=/var/lib/extensions/a.raw \"/srv/b c.raw\"\n\
             Extensions=/srv/d.raw\n\
             Match=foo foo-web\n\
             Match=foo@\n\
             Profile=strict\n\
             Enable=off\n\
             Attach=YES\n\
             RequireVerity=1\n\
             AllowWritableByOthers=no\n",
        );
        assert!(m.is_empty(), "{m:?}");
        assert_eq!(
            c,
            ImageConfig {
                name: "foo".into(),
                file: "/etc/portables.d/foo.conf".into(),
                image: Some("/srv/images/foo_1.raw".into()),
                extensions: vec![
                    "/var/lib/extensions/a.raw".into(),
                    "/srv/b c.raw".into(),
                    "/srv/d.raw".into()
                ],
                matches: Some(vec!["foo".into(), "foo-web".into(), "foo@".into()]),
                profile: Some("strict".into()),
                enable: Some(false),
                attach: Some(true),
                require_verity: Some(true),
                allow_writable_by_others: Some(false),
            }
        );
    }

    #[test]
    fn empty_assignments_reset() {
        let (c, _) = parse_ok(
            "[Portable]\n\
             Image=/a.raw\nImage=\n\
             Extensions=/x.raw /y.raw\nExtensions=\nExtensions=/z.raw\n\
             Match=a b\nMatch=\n\
             Profile=strict\nProfile=\n\
             Enable=no\nEnable=\n\
             Attach=no\nAttach=\n\
             RequireVerity=yes\nRequireVerity=\n",
        );
        assert_eq!(c.image, None);
        assert_eq!(c.extensions, vec![PathBuf::from("/z.raw")]);
        assert_eq!(c.matches, None);
        assert_eq!(c.profile, None);
        assert_eq!((c.enable, c.attach, c.require_verity), (None, None, None));

        let (c, _) = parse_ok("[Portable]\nMatch=a\nMatch=\nMatch=b\n");
        assert_eq!(c.matches, Some(vec!["b".to_string()]));
    }

    #[test]
    fn booleans() {
        for (text, value) in [
            ("1", true),
            ("yes", true),
            ("Y", true),
            ("TRUE", true),
            ("t", true),
            ("On", true),
            ("0", false),
            ("no", false),
            ("N", false),
            ("False", false),
            ("f", false),
            ("OFF", false),
        ] {
            assert_eq!(parse_boolean(text), Some(value), "{text}");
        }
        for bad in ["", "2", "yess", "enable", " yes", "oui"] {
            assert_eq!(parse_boolean(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_values() {
        for (line, why) in [
            ("Image=relative.raw", "not an absolute path"),
            ("Image=/srv/../etc/foo.raw", "not normalized"),
            ("Image=/", "root directory"),
            ("Image=//./", "root directory"),
            ("Image=\"/srv/foo.raw\"", "not an absolute path"),
            ("Image=/a\u{1}b", "control characters"),
            (
                "Extensions=/a.raw relative.raw",
                "'relative.raw': not an absolute path",
            ),
            ("Extensions=/a.raw /b/../c.raw", "not normalized"),
            ("Extensions=\"/a.raw", "unbalanced quotes"),
            ("Extensions=\"\"", "not an absolute path"),
            ("Match=foo/bar", "not a unit name prefix"),
            ("Match=foo bar+baz", "'bar+baz'"),
            ("Match=..", "not a unit name prefix"),
            ("Match=foo 'bar", "unbalanced quotes"),
            ("Profile=../strict", "not a valid profile name"),
            ("Profile=a/b", "not a valid profile name"),
            ("Profile=..", "not a valid profile name"),
            ("Enable=maybe", "not a boolean"),
            ("Attach=2", "not a boolean"),
            ("RequireVerity=sure", "not a boolean"),
        ] {
            let reason = parse_err(&format!("[Portable]\n{line}\n"));
            let (key, value) = line.split_once('=').unwrap();
            let expected = format!("/etc/portables.d/foo.conf:2: invalid {key}={value}: ");
            assert!(reason.starts_with(&expected), "{line}: {reason}");
            assert!(reason.contains(why), "{line}: {reason}");
        }
        let long = format!("/{}", "a".repeat(256));
        assert!(parse_err(&format!("[Portable]\nImage={long}\n")).contains("longer than 255"));
        let long = "/aaaaaaaaa".repeat(410);
        assert!(parse_err(&format!("[Portable]\nImage={long}\n")).contains("longer than 4095"));
    }

    #[test]
    fn every_bad_value_is_in_the_reason() {
        let reason = parse_err("[Portable]\nEnable=maybe\nAttach=no\nProfile=a/b\n");
        assert_eq!(
            reason,
            "/etc/portables.d/foo.conf:2: invalid Enable=maybe: not a boolean; \
             /etc/portables.d/foo.conf:4: invalid Profile=a/b: not a valid profile name (a file name, without '/')"
        );
        // A later valid assignment does not make up for an invalid one.
        parse_err("[Portable]\nEnable=maybe\nEnable=yes\n");
    }

    #[test]
    fn an_invalid_value_spoils_only_its_image() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "/etc/portables.d/bad.conf",
            "[Portable]\nEnable=maybe\n",
        );
        write(
            t.path(),
            "/etc/portables.d/good.conf",
            "[Portable]\nEnable=no\n",
        );
        let c = load_dir(t.path());
        assert!(matches!(
            c.images.get("bad"),
            Some(ImageEntry::Invalid { reason, .. })
                if reason == "/etc/portables.d/bad.conf:2: invalid Enable=maybe: not a boolean"
        ));
        assert_eq!(c.image("good").unwrap().enable, Some(false));
    }

    #[test]
    fn syntax_errors_invalidate_the_file() {
        let reason = parse_err("[Portable]\nEnable=no\n[Portable\n");
        assert_eq!(
            reason,
            "/etc/portables.d/foo.conf:3: Invalid section header '[Portable'"
        );
        let (r, _) = parse_image_config(
            "foo",
            Path::new("/etc/portables.d/foo.conf"),
            b"[Portable]\nProfile=\xff\n",
        );
        assert!(r.unwrap_err().contains(":2: "));

        let (d, m) = defaults_of(&[
            ("/etc/portables.d/_a.conf", "[Defaults]\nEnable=no\n"),
            (
                "/etc/portables.d/_b.conf",
                "[Defaults]\nProfile=strict\n[Oops\n",
            ),
        ]);
        assert!(!d.enable);
        assert_eq!(d.profile, "default");
        assert_eq!(
            texts(&m, Level::Error),
            vec!["/etc/portables.d/_b.conf:3: Invalid section header '[Oops', ignoring the file."]
        );
    }

    #[test]
    fn unknown_sections_and_keys_warn_x_keys_do_not() {
        let (c, m) = parse_ok(
            "Stray=1\n[Portable]\nFoo=bar\nX-Vendor=1\nEnable=no\nNoEquals\n\
             [Service]\nExecStart=/bin/true\n[X-Extra]\nA=b\n[Defaults]\nEnable=no\n",
        );
        assert_eq!(c.enable, Some(false));
        assert_eq!(
            texts(&m, Level::Warn),
            vec![
                "/etc/portables.d/foo.conf:1: Assignment outside of section. Ignoring.",
                "/etc/portables.d/foo.conf:6: Missing '=', ignoring line.",
                "/etc/portables.d/foo.conf: unknown section [Service], ignoring.",
                "/etc/portables.d/foo.conf: unknown section [Defaults] (global defaults belong in a file named _*.conf), ignoring.",
                "/etc/portables.d/foo.conf:3: unknown key Foo= in section [Portable], ignoring.",
            ]
        );

        let (d, m) = defaults_of(&[(
            "/etc/portables.d/_site.conf",
            "[Defaults]\nBogus=1\nX-Mine=2\n[Portable]\nEnable=no\n",
        )]);
        assert_eq!(d, Defaults::default());
        assert_eq!(
            texts(&m, Level::Warn),
            vec![
                "/etc/portables.d/_site.conf: unknown section [Portable] (settings of one image belong in NAME.conf), ignoring.",
                "/etc/portables.d/_site.conf:2: unknown key Bogus= in section [Defaults], ignoring.",
            ]
        );
    }

    #[test]
    fn a_flood_of_warnings_is_a_few_lines_and_a_count() {
        let text = repeated(1024 * 1024, "[Portable]\nEnable=no\n", |i| {
            format!("K{i:06}=x\n")
        });
        let keys = (text.len() - 21) / 10;
        let (c, m) = parse_ok(std::str::from_utf8(&text).unwrap());
        assert_eq!(c.enable, Some(false));
        assert_eq!(m.len(), MAX_LINES_PER_FILE + 1, "{m:?}");
        assert_eq!(
            m[0].text,
            "/etc/portables.d/foo.conf:3: unknown key K000000= in section [Portable], ignoring."
        );
        assert_eq!(
            m[MAX_LINES_PER_FILE].text,
            format!(
                "/etc/portables.d/foo.conf: {} more messages about this file not shown.",
                keys - MAX_LINES_PER_FILE
            )
        );
        assert_eq!(m[MAX_LINES_PER_FILE].level, Level::Warn);

        // Sections and syntax warnings count together.
        let text = repeated(64 * 1024, "[Portable]\nNoEquals\n", |i| {
            format!("[S{i:06}]\n")
        });
        let (_, m) = parse_ok(std::str::from_utf8(&text).unwrap());
        assert_eq!(m.len(), MAX_LINES_PER_FILE + 1);
        assert!(m[0].text.ends_with(":2: Missing '=', ignoring line."));
        assert!(
            m[1].text
                .ends_with(": unknown section [S000000], ignoring.")
        );

        // Invalid values: the image is refused for the first few, the rest counted.
        let text = repeated(64 * 1024, "[Portable]\n", |_| "Enable=maybe\n".into());
        let reason = parse_err(std::str::from_utf8(&text).unwrap());
        assert_eq!(
            reason.matches("invalid Enable=maybe").count(),
            MAX_LINES_PER_FILE
        );
        assert!(reason.ends_with(" more invalid values"), "{reason}");

        // In a defaults file, errors are capped with the warnings, and the count is an error.
        let text = repeated(64 * 1024, "[Defaults]\nBogus=1\n", |_| {
            "Enable=maybe\n".into()
        });
        let (d, m) = defaults_of(&[(
            "/etc/portables.d/_site.conf",
            std::str::from_utf8(&text).unwrap(),
        )]);
        assert_eq!(d, Defaults::default());
        assert_eq!(m.len(), MAX_LINES_PER_FILE + 1);
        assert_eq!(m[0].level, Level::Warn);
        assert_eq!(m[MAX_LINES_PER_FILE].level, Level::Error);
    }

    #[test]
    fn linear_in_sections_and_keys() {
        assert_linear(
            "portables.d file with distinct sections",
            |n| repeated(n, "[Portable]\n", |i| format!("[S{i:06}]\n")),
            |b| {
                let (_, m) = parse_image_config("foo", Path::new("/etc/portables.d/foo.conf"), b);
                assert!(m.len() <= MAX_LINES_PER_FILE + 1);
            },
        );
        assert_linear(
            "portables.d file with unknown keys",
            |n| repeated(n, "[Portable]\n", |i| format!("K{i:06}=x\n")),
            |b| {
                let (_, m) = parse_image_config("foo", Path::new("/etc/portables.d/foo.conf"), b);
                assert!(m.len() <= MAX_LINES_PER_FILE + 1);
            },
        );
    }

    #[test]
    fn every_defaults_key() {
        let (d, m) = defaults_of(&[(
            "/etc/portables.d/_site.conf",
            "[Defaults]\nProfile=strict\nEnable=no\nAttachOnlyConfigured=yes\nRequireVerity=on\nAllowWritableByOthers=yes\n",
        )]);
        assert!(m.is_empty(), "{m:?}");
        assert_eq!(
            d,
            Defaults {
                profile: "strict".into(),
                enable: false,
                attach_only_configured: true,
                require_verity: true,
                allow_writable_by_others: true,
            }
        );
    }

    #[test]
    fn defaults_files_apply_in_name_order() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "/usr/lib/portables.d/_10-vendor.conf",
            "[Defaults]\nProfile=nonetwork\nEnable=no\nRequireVerity=yes\n",
        );
        write(
            t.path(),
            "/etc/portables.d/_20-site.conf",
            "[Defaults]\nProfile=strict\n",
        );
        // Same name as the vendor file in a lower directory: it loses, whole.
        write(
            t.path(),
            "/usr/local/lib/portables.d/_20-site.conf",
            "[Defaults]\nAttachOnlyConfigured=yes\n",
        );
        write(
            t.path(),
            "/run/portables.d/_30-boot.conf",
            "[Defaults]\nRequireVerity=\n",
        );
        let c = load_dir(t.path());
        assert_eq!(
            c.defaults,
            Defaults {
                profile: "strict".into(),
                enable: false,
                attach_only_configured: false,
                require_verity: false,
                allow_writable_by_others: false,
            }
        );
    }

    #[test]
    fn invalid_defaults_fall_back_to_the_default() {
        let (d, m) = defaults_of(&[
            (
                "/etc/portables.d/_a.conf",
                "[Defaults]\nEnable=no\nProfile=strict\nAttachOnlyConfigured=yes\n",
            ),
            (
                "/etc/portables.d/_b.conf",
                "[Defaults]\nEnable=maybe\nProfile=a/b\nAttachOnlyConfigured=2\nRequireVerity=x\n",
            ),
        ]);
        assert_eq!(d, Defaults::default());
        assert_eq!(
            texts(&m, Level::Error),
            vec![
                "/etc/portables.d/_b.conf:2: invalid Enable=maybe: not a boolean, using the default yes.",
                "/etc/portables.d/_b.conf:3: invalid Profile=a/b: not a valid profile name (a file name, without '/'), using the default 'default'.",
                "/etc/portables.d/_b.conf:4: invalid AttachOnlyConfigured=2: not a boolean, using the default no.",
                "/etc/portables.d/_b.conf:5: invalid RequireVerity=x: not a boolean, using the default no.",
            ]
        );
        // A valid assignment after the invalid one still applies.
        let (d, _) = defaults_of(&[("/x/_a.conf", "[Defaults]\nEnable=maybe\nEnable=no\n")]);
        assert!(!d.enable);
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let value = "x".repeat(10_000);
        let reason = parse_err(&format!("[Portable]\nEnable={value}\n"));
        assert!(reason.len() < 400, "{}", reason.len());
        assert!(reason.contains('…'));
    }

    #[test]
    fn cmdline_switch() {
        assert!(enabled_by_cmdline(""));
        assert!(enabled_by_cmdline("quiet splash root=/dev/sda1"));
        assert!(!enabled_by_cmdline("quiet portables_generator=0"));
        assert!(!enabled_by_cmdline("portables-generator=no"));
        assert!(!enabled_by_cmdline("portables_generator=OFF\n"));
        assert!(!enabled_by_cmdline("portables_generator=\"false\""));
        assert!(enabled_by_cmdline("portables_generator=1"));
        assert!(enabled_by_cmdline("portables_generator"));
        // The last occurrence counts; an invalid value leaves the generator on.
        assert!(enabled_by_cmdline(
            "portables_generator=0 portables_generator=yes"
        ));
        assert!(!enabled_by_cmdline(
            "portables_generator=1 portables_generator=0"
        ));
        assert!(enabled_by_cmdline("portables_generator=maybe"));
        // Other keys, and the switch inside a quoted value, are not the switch.
        assert!(enabled_by_cmdline(
            "xportables_generator=0 portables_generatorx=0"
        ));
        assert!(enabled_by_cmdline("foo=\"a portables_generator=0\""));
        assert!(enabled_by_cmdline(
            "foo=\"unterminated portables_generator=0"
        ));
        assert!(enabled_by_cmdline("rd.portables_generator=0"));
    }

    #[test]
    fn never_panics_on_random_input() {
        // Pieces the parser treats specially, so random inputs reach its interesting states.
        let pieces: &[&[u8]] = &[
            b"[Portable]\n",
            b"[Defaults]\n",
            b"Image=",
            b"Extensions=",
            b"Match=",
            b"Profile=",
            b"Enable=",
            b"Attach=",
            b"RequireVerity=",
            b"X-",
            b"/",
            b"..",
            b".",
            b"\"",
            b"'",
            b"\\\n",
            b"\n",
            b"\r",
            b"\0",
            b" ",
            b"=",
            b"#",
            b"yes",
            b"a",
            b"\xff",
            b"\xc3\xa9",
            b"\xe2\x80\xa6",
            b"\x01",
        ];
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let file = Path::new("/etc/portables.d/fuzz.conf");
        for _ in 0..4000 {
            let n = (rng.next() % 40) as usize;
            let mut input = Vec::new();
            for _ in 0..n {
                let r = rng.next();
                if r.is_multiple_of(5) {
                    input.push((r >> 8) as u8);
                } else {
                    let i = ((r >> 8) % pieces.len() as u64) as usize;
                    input.extend_from_slice(pieces[i]);
                }
            }
            let _ = parse_image_config("fuzz", file, &input);
            let _ = parse_defaults(&[(file.to_path_buf(), input.clone())]);
            let _ = enabled_by_cmdline(&String::from_utf8_lossy(&input));
        }
    }
}
