//! The `portables.d` configuration: which images are attached, and how.
//!
//! Drop-in directories are merged as systemd merges `*.conf` directories: a file name in an
//! earlier directory replaces the same name in a later one whole, and a file that is empty or
//! a link to `/dev/null` masks the name. What a file configures is told by its name alone:
//! `NAME.conf` holds `[Portable]` settings of the image NAME, `_*.conf` holds `[Defaults]`.
//! An image's name (its file name cut at the first `_`) can never contain `_`, so the two kinds
//! cannot collide.
//!
//! Nothing here logs: every message is returned as a [`Diagnostic`], so the caller decides
//! where it goes and tests can look at it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use log::Level;

use crate::cmdline;
use crate::diagnostic::{Diagnostic, Diagnostics, Subject};
use crate::image::chase::Tree;
use crate::image::dir::DirFs;
use crate::image::{FileKind, FsError, MAX_FILE_BYTES};
pub use crate::model::{Defaults, ImageConfig};
use crate::names::filename_is_valid;
use crate::root::Root;

mod keys;
mod parse;
mod values;

pub use keys::Section;
pub use parse::{parse_defaults, parse_image_config};
pub use values::normalized_path;

/// Configuration directories, highest priority first.
pub const CONFIG_DIRS: [&str; 4] = [
    "/etc/portables.d",
    "/run/portables.d",
    "/usr/local/lib/portables.d",
    "/usr/lib/portables.d",
];

/// The kernel command line switch that turns the generator off for one boot.
pub const CMDLINE_SWITCH: &str = "portables_generator";

/// What the configuration says about one image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageEntry {
    /// `NAME.conf` was read and every value in it is valid.
    Configured(ImageConfig),
    /// `NAME.conf` is empty or a link to `/dev/null`: the image is left out on purpose.
    Masked {
        /// The file that masks it, for the message.
        file: PathBuf,
    },
    /// `NAME.conf` could not be read or holds an invalid value: the image must be refused.
    /// `reason` names the file (and line, key and value) and has no final full stop.
    Invalid {
        /// The file at fault.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The whole configuration.
#[derive(Debug, Default)]
pub struct Config {
    /// `[Defaults]` of the `_*.conf` files: global policy, merged.
    pub defaults: Defaults,
    /// By image name (NAME of `NAME.conf`).
    pub images: BTreeMap<String, ImageEntry>,
    /// In the order they arose; the caller logs them.
    pub diagnostics: Diagnostics,
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

/// A line about `file`, at `line` if there is one: the message names the file, the reason
/// only the line, as a reason leaves its subject out.
fn about(file: &Path, line: Option<usize>, level: Level, text: String) -> Diagnostic {
    let (message, reason) = match line {
        Some(n) => (
            format!("{}:{n}: {text}", file.display()),
            format!("line {n}: {text}"),
        ),
        None => (format!("{}: {text}", file.display()), text),
    };
    Diagnostic::new(Subject::Config(file.to_path_buf()), level, reason, message)
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

/// Read every drop-in directory below `root`; what was wrong goes to `diags`.
pub fn load(root: &Root, diags: &mut Diagnostics) -> Config {
    let mut config = read(root);
    diags.extend(std::mem::take(&mut config.diagnostics));
    config
}

/// Read every drop-in directory below `root`, keeping what was wrong in the configuration.
fn read(root: &Root) -> Config {
    let mut config = Config::default();
    // Links are resolved inside the root, as the booted system would resolve them.
    let host = Tree::new(Box::new(DirFs::new(root.dir())));
    let fragments = list_fragments(root, &host, &mut config.diagnostics);

    let mut defaults_files = Vec::new();
    for (name, fragment) in fragments {
        let file = fragment.file;
        let role = file_role(&name);
        if role == FileRole::Neither {
            config.diagnostics.push(about(
                &file,
                None,
                Level::Warn,
                "the file name cannot name a portable image (NAME.conf, NAME of [A-Za-z0-9.-] not starting with '.') and is not a global policy file (_*.conf), ignoring.".into(),
            ));
            continue;
        }
        let contents = read_fragment(root, &host, &fragment.resolved);
        match (role, contents) {
            (FileRole::Image(image), Contents::Masked) => {
                config.diagnostics.push(Diagnostic::config(
                    &file,
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
                let (parsed, diagnostics) = parse_image_config(&image, &file, &bytes);
                config.diagnostics.extend(diagnostics);
                let entry = match parsed {
                    Ok(c) => ImageEntry::Configured(c),
                    Err(reason) => ImageEntry::Invalid { file, reason },
                };
                config.images.insert(image, entry);
            }
            (_, Contents::Masked) => config.diagnostics.push(about(
                &file,
                None,
                Level::Debug,
                "masked, not read.".into(),
            )),
            (_, Contents::Unreadable(why)) => config.diagnostics.push(about(
                &file,
                None,
                Level::Error,
                format!("{why}, ignoring the file."),
            )),
            (_, Contents::Bytes(bytes)) => defaults_files.push((file, bytes)),
        }
    }

    let (defaults, diagnostics) = parse_defaults(&defaults_files);
    config.defaults = defaults;
    config.diagnostics.extend(diagnostics);
    config
}

/// Every `*.conf` name across the directories, mapped to the entry that wins it.
fn list_fragments(
    root: &Root,
    host: &Tree,
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, Fragment> {
    let mut fragments: BTreeMap<String, Fragment> = BTreeMap::new();
    for dir in CONFIG_DIRS {
        let (resolved_dir, entries) = match host.read_dir(Path::new(dir)) {
            Ok(listing) => listing,
            Err(FsError::NotFound) => {
                diagnostics.push(Diagnostic::run(
                    Level::Debug,
                    format!("Configuration directory {dir} does not exist."),
                ));
                continue;
            }
            Err(e) => {
                diagnostics.push(Diagnostic::run(
                    Level::Error,
                    format!("Cannot read configuration directory {dir}: {e}."),
                ));
                continue;
            }
        };
        // Configuration decides what root runs: a directory others can write is not read, and
        // no setting can allow it (the setting would itself be in reach of those others).
        if let Some(who) = crate::ownership::path_writable_by_others(&root.join(&resolved_dir)) {
            diagnostics.push(Diagnostic::run(
                Level::Error,
                format!("Configuration directory {dir} is {who}: not read, root must not run what others can change."),
            ));
            continue;
        }
        for entry in entries {
            let file = Path::new(dir).join(std::ffi::OsStr::from_bytes(&entry.name));
            if entry.name.starts_with(b".") || !entry.name.ends_with(b".conf") {
                diagnostics.push(Diagnostic::config(
                    &file,
                    Level::Debug,
                    format!("Ignoring {}: not a *.conf file.", file.display()),
                ));
                continue;
            }
            // As systemd's conf_files_list(), which only looks at files and links.
            if entry.kind == FileKind::Dir {
                diagnostics.push(Diagnostic::config(
                    &file,
                    Level::Debug,
                    format!("Ignoring {}: a directory.", file.display()),
                ));
                continue;
            }
            let Ok(name) = String::from_utf8(entry.name.clone()) else {
                diagnostics.push(about(
                    &file,
                    None,
                    Level::Warn,
                    "the file name is not valid UTF-8, so it cannot name a portable image, ignoring.".into(),
                ));
                continue;
            };
            if let Some(winner) = fragments.get(&name) {
                diagnostics.push(Diagnostic::config(
                    &file,
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
/// block: only regular files are opened, and then with `O_NONBLOCK` in case one was swapped in.
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

/// Whether the generator may run this boot: false when the kernel command line says
/// `portables_generator=` with a false boolean, read by [`cmdline::bool_of`] (the last
/// occurrence counts, `-` and `_` are the same in the key, a bare `portables_generator` means
/// yes). An invalid value is ignored, as systemd's callers of `proc_cmdline_get_bool()` ignore
/// the error it returns for one.
pub fn enabled_by_cmdline(cmdline: &str) -> bool {
    cmdline::bool_of(cmdline, CMDLINE_SWITCH).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        read(&Root::new(dir))
    }

    fn texts(diagnostics: &Diagnostics, level: Level) -> Vec<String> {
        diagnostics
            .iter()
            .filter(|d| d.level == level)
            .map(|d| d.message.clone())
            .collect()
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
            texts(&c.diagnostics, Level::Warn).is_empty(),
            "{:?}",
            c.diagnostics
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
        let big = "#".repeat(usize::try_from(MAX_FILE_BYTES).unwrap() + 1);
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
            texts(&c.diagnostics, Level::Error),
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
        let warnings = texts(&c.diagnostics, Level::Warn);
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
        assert!(c.diagnostics.iter().all(|m| m.level == Level::Debug));
        assert_eq!(c.diagnostics.len(), 4);
        // About a directory, not one file: about the run.
        assert!(c.diagnostics.iter().all(|m| m.subject == Subject::Run));
    }

    #[test]
    fn a_diagnostic_about_one_file_names_it_as_its_subject() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "/etc/portables.d/a+b.conf", "[Portable]\n");
        write(
            t.path(),
            "/etc/portables.d/foo.conf",
            "[Portable]\nBogus=1\n",
        );
        write(t.path(), "/usr/lib/portables.d/foo.conf", "[Portable]\n");
        let c = load_dir(t.path());
        let about = |file: &str| -> Vec<(String, String)> {
            c.diagnostics
                .iter()
                .filter(|d| d.subject == Subject::Config(file.into()))
                .map(|d| (d.reason.clone(), d.message.clone()))
                .collect()
        };
        assert_eq!(
            about("/etc/portables.d/a+b.conf")[0].1,
            format!(
                "/etc/portables.d/a+b.conf: {}",
                about("/etc/portables.d/a+b.conf")[0].0
            )
        );
        assert_eq!(
            about("/etc/portables.d/foo.conf"),
            vec![(
                "line 2: unknown key Bogus= in section [Portable], ignoring.".to_string(),
                "/etc/portables.d/foo.conf:2: unknown key Bogus= in section [Portable], ignoring."
                    .to_string()
            )]
        );
        // The reason of a line that does not start with the file name is the whole line.
        assert_eq!(
            about("/usr/lib/portables.d/foo.conf"),
            vec![(
                "/usr/lib/portables.d/foo.conf is overridden by /etc/portables.d/foo.conf."
                    .to_string(),
                "/usr/lib/portables.d/foo.conf is overridden by /etc/portables.d/foo.conf."
                    .to_string()
            )]
        );
    }

    #[test]
    fn a_file_in_place_of_a_directory_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "/etc/portables.d", "oops");
        let c = load_dir(t.path());
        let errors = texts(&c.diagnostics, Level::Error);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("/etc/portables.d"), "{errors:?}");
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
}
