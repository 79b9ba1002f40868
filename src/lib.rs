//! portables-generator: attach portable service images at boot, declaratively.
//!
//! Data flows one way: [`discover`] finds images, [`attach`] reads each through the
//! [`image`] readers into [`facts`], [`plan`] decides every file and link from those facts,
//! [`render`] and [`install`] supply the text and links, and [`output`] writes them.
#![forbid(unsafe_code)]

pub mod arch;
pub mod attach;
pub mod boundary;
pub mod cli;
pub mod config;
pub mod discover;
pub mod extension;
pub mod facts;
pub mod host;
pub mod host_file;
pub mod image;
pub mod install;
pub mod kmsg;
pub mod late_mounts;
pub mod names;
pub mod os_release;
pub mod output;
pub mod ownership;
pub mod plan;
pub mod preset;
pub mod profile;
pub mod render;
pub mod root;
pub mod select;
pub mod systemd_version;
#[cfg(test)]
pub(crate) mod testutil;
pub mod unit_syntax;
pub mod verity;
pub mod verscmp;
pub mod vpick;

use std::path::{Path, PathBuf};

use log::{Level, debug, error, info, log, warn};

use crate::plan::{Host, Plan};
use crate::root::Root;

/// Exit statuses (DESIGN §2).
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// What to do with the plan.
pub enum Sink {
    Write(PathBuf),
    Print,
}

/// Find, read and plan every portable below `root` for systemd `systemd`; log every
/// decision once.
pub fn make_plan(root: &Root, first_boot: bool, systemd: u32) -> Plan {
    let mut failed = false;
    let config = config::load(root);
    // A bad global value is reported and its default kept: it fails no image (DESIGN §2).
    for m in &config.messages {
        log!(m.level, "{}", m.text);
    }

    let found = discover::discover(root, config.defaults.allow_writable_by_others);
    for u in &found.unreadable {
        error!(
            "Cannot read search directory {}: {}.",
            u.dir.display(),
            u.reason
        );
        failed = true;
    }
    for r in &found.refused {
        error!("Image {} not attached: {}.", r.path.display(), r.reason);
        failed = true;
    }

    // Paths whose file system is mounted after generators run: their images are attached
    // by one more reload, arranged below, and are not an error now.
    let mut watched: Vec<String> = discover::SEARCH_PATHS
        .iter()
        .map(|s| s.to_string())
        .collect();
    for entry in config.images.values() {
        if let config::ImageEntry::Configured(c) = entry {
            watched.extend(
                c.image
                    .iter()
                    .chain(&c.extensions)
                    .map(|p| p.display().to_string()),
            );
        }
    }
    let watched: Vec<&str> = watched.iter().map(String::as_str).collect();
    let pending = late_mounts::pending_below(root, &watched);
    let is_pending = |p: &Path| pending.iter().any(|m| p.starts_with(m));

    let decisions = select::select(&found.images, &config, &|p| discover::image_at(root, p));
    let mut attachments = Vec::new();
    for decision in decisions {
        let portable = match decision {
            select::Decision::Skip { what, reason } => {
                info!("Image {} not attached: {reason}.", what.display());
                continue;
            }
            select::Decision::Refuse { what, reason } if is_pending(&what) => {
                info!(
                    "Image {} not attached yet: {reason}; its file system is not mounted yet.",
                    what.display()
                );
                continue;
            }
            select::Decision::Refuse { what, reason } => {
                error!("Image {} not attached: {reason}.", what.display());
                failed = true;
                continue;
            }
            select::Decision::Attach(p) => p,
        };
        let image = &portable.image;
        match attach::read_portable(root, &portable, systemd) {
            Ok(read) => {
                // A crafted image can leave out thousands of units: a few lines, then a count.
                let mut shown = 0;
                for skip in &read.skipped {
                    let mut level = if skip.warn { Level::Warn } else { Level::Debug };
                    if skip.warn {
                        shown += 1;
                        if shown > plan::MAX_LINES_PER_IMAGE {
                            level = Level::Debug;
                        }
                    }
                    log!(
                        level,
                        "Unit {} of image {} not attached: {}.",
                        kmsg::shorten(&skip.name),
                        image.label(),
                        skip.reason
                    );
                    failed |= skip.warn;
                }
                if shown > plan::MAX_LINES_PER_IMAGE {
                    warn!(
                        "Image {}: {} more units not attached (shown at debug level).",
                        image.label(),
                        shown - plan::MAX_LINES_PER_IMAGE
                    );
                }
                attachments.push(read.attachment);
            }
            Err(why) => {
                error!("Image {} not attached: {why}.", image.label());
                failed = true;
            }
        }
    }

    let unit_file = |name: &str| {
        host::host_unit(root, name).map(|path| plan::HostUnit {
            kind: host::host_unit_kind(root, &path),
            path,
        })
    };
    let instance_of = |template: &str| host::host_instance_of(root, template);
    let profile = |name: &str, kind: &str| profile::find_profile(root, systemd, name, kind);
    let host = Host {
        unit_file: &unit_file,
        instance_of: &instance_of,
        profile: &profile,
        os_release: host::host_os_release(root),
        systemd_version: systemd,
    };
    let mut plan = plan::plan(&attachments, &host);
    if first_boot {
        warn_about_presets(root, &attachments, &plan);
    }
    if !pending.is_empty() {
        info!(
            "{} not mounted yet: {} will reload systemd once it is, to attach the images there.",
            pending.join(", "),
            late_mounts::REATTACH_UNIT
        );
        plan.nodes.insert(
            PathBuf::from(late_mounts::REATTACH_UNIT),
            plan::Node::File(late_mounts::reattach_unit(&pending).into_bytes()),
        );
        plan.nodes.insert(
            Path::new("multi-user.target.wants").join(late_mounts::REATTACH_UNIT),
            plan::Node::Symlink(Path::new("..").join(late_mounts::REATTACH_UNIT)),
        );
    }
    for n in &plan.notices {
        log!(n.level, "{}", n.message);
    }
    if failed {
        plan.notices.push(plan::Notice {
            level: Level::Debug,
            message: "Some images or units could not be attached.".into(),
            failure: true,
        });
    }
    plan
}

/// On a first boot systemd 252 applies its preset policy to every unit file, generated ones
/// too, and enables them in /etc: an `Enable=no` is overridden unless the policy disables
/// the unit. The generator can not prevent that (it writes nothing outside its directory),
/// so it says so, once per unit concerned.
fn warn_about_presets(root: &Root, attachments: &[plan::Attachment], plan: &Plan) {
    let presets = preset::load(root);
    for att in attachments.iter().filter(|a| !a.enable) {
        for unit in &att.units {
            if !plan.nodes.contains_key(Path::new(&unit.name)) {
                continue;
            }
            let Ok((file, _)) = unit_syntax::parse(&unit.bytes) else {
                continue;
            };
            let has_install = ["WantedBy", "RequiredBy", "UpheldBy", "Alias"]
                .iter()
                .any(|k| file.list("Install", k).is_ok_and(|l| !l.is_empty()));
            if has_install && presets.action(&unit.name) == preset::Action::Enable {
                warn!(
                    "Unit {} of image {} has Enable=no, but on this first boot systemd applies its preset policy to generated units too and will enable it in /etc/systemd/system; add \"disable {}\" to a file in /etc/systemd/system-preset/ to keep it disabled.",
                    unit.name,
                    att.image.path.display(),
                    unit.name
                );
            }
        }
    }
}

/// Generator entry point after argument parsing and logger set-up. `systemd` is the
/// version given with `--systemd-version`, if any. Returns the exit status.
pub fn run(
    root: &Root,
    sink: Sink,
    systemd: Option<systemd_version::Version>,
    env: impl Fn(&str) -> Option<String>,
) -> u8 {
    if env("SYSTEMD_IN_INITRD").as_deref() == Some("1") {
        debug!("Running in the initrd, portable services are not attached there.");
        return EXIT_OK;
    }
    if env("SYSTEMD_SCOPE").as_deref() == Some("user") {
        debug!("Running for a user manager, portable services are a system feature.");
        return EXIT_OK;
    }
    let cmdline = host_file::kernel_cmdline(root).unwrap_or_else(|e| {
        warn!("Cannot read /proc/cmdline: {e}; reading it as empty.");
        String::new()
    });
    if !config::enabled_by_cmdline(&cmdline) {
        info!(
            "Turned off for this boot by {}= on the kernel command line.",
            config::CMDLINE_SWITCH
        );
        return EXIT_OK;
    }
    match env("SYSTEMD_FIRST_BOOT").as_deref() {
        Some("1") => info!("First boot of this system: attaching the images it was built with."),
        Some(v) => debug!("SYSTEMD_FIRST_BOOT={v}."),
        None => debug!("SYSTEMD_FIRST_BOOT is not set."),
    }
    let systemd = systemd.unwrap_or_else(|| systemd_version::detect(root));
    if systemd.is_guess() {
        warn!(
            "Cannot tell which systemd version will read the output, writing for {}.",
            systemd.describe()
        );
    } else {
        debug!("Writing for {}.", systemd.describe());
    }
    let plan = make_plan(
        root,
        env("SYSTEMD_FIRST_BOOT").as_deref() == Some("1"),
        systemd.major,
    );
    let mut failed = plan.failed();
    match sink {
        Sink::Print => {
            println!("# For {}", systemd.describe());
            print!("{}", plan::describe(&plan));
        }
        Sink::Write(dir) => {
            for e in output::write(&plan, &dir) {
                error!("{e}");
                failed = true;
            }
        }
    }
    if failed { EXIT_FAILED } else { EXIT_OK }
}

/// Log settings for this run: the kernel command line (below `root`) and environment.
pub fn log_settings(root: &Root, default: kmsg::Target) -> (log::LevelFilter, kmsg::Target) {
    kmsg::settings_below(root, |k| std::env::var(k).ok(), default)
}

/// A panic inside a reader is reported as that image's error; the default hook's
/// backtrace text on stderr would only be noise at boot.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        warn!("Internal error: {info}");
    }));
}
