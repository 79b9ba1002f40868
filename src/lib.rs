//! portables-generator: attach portable service images at boot, declaratively.
//!
//! Data flows one way: [`discover`] finds images, [`attach`] reads each through the
//! [`image`] readers into [`facts`], [`plan`] decides every file and link from those facts,
//! [`render`] and [`install`] supply the text and links, and [`output`] writes them.
#![forbid(unsafe_code)]

pub mod attach;
pub mod cli;
pub mod discover;
pub mod facts;
pub mod host;
pub mod image;
pub mod install;
pub mod kmsg;
pub mod late_mounts;
pub mod names;
pub mod os_release;
pub mod output;
pub mod plan;
pub mod profile;
pub mod render;
pub mod root;
pub mod unit_syntax;

use std::path::PathBuf;

use log::{Level, debug, error, log, warn};

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

/// Find, read and plan every image below `root`; log every decision once.
pub fn make_plan(root: &Root) -> Plan {
    let found = discover::discover(root);
    let mut plan_notices = Vec::new();
    let mut failed = false;
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

    let mut attachments = Vec::new();
    for image in &found.images {
        match attach::read_image(root, image) {
            Ok(read) => {
                for skip in &read.skipped {
                    let level = if skip.warn { Level::Warn } else { Level::Debug };
                    log!(
                        level,
                        "Unit {} of image {} not attached: {}.",
                        skip.name,
                        image.path.display(),
                        skip.reason
                    );
                    failed |= skip.warn;
                }
                attachments.push(read.attachment);
            }
            Err(why) => {
                error!("Image {} not attached: {why}.", image.path.display());
                failed = true;
            }
        }
    }

    let unit_file = |name: &str| host::host_unit(root, name);
    let profile = |name: &str, kind: &str| profile::find_profile(root, name, kind);
    let host = Host {
        unit_file: &unit_file,
        profile: &profile,
        os_release: host::host_os_release(root),
        systemd_version: render::SYSTEMD_VERSION,
    };
    let mut plan = plan::plan(&attachments, &host);
    for n in &plan.notices {
        log!(n.level, "{}", n.message);
    }
    if failed {
        plan_notices.push(plan::Notice {
            level: Level::Debug,
            message: "Some images or units could not be attached.".into(),
            failure: true,
        });
    }
    plan.notices.extend(plan_notices);
    plan
}

/// Generator entry point after argument parsing and logger set-up. Returns the exit status.
pub fn run(root: &Root, sink: Sink, env: impl Fn(&str) -> Option<String>) -> u8 {
    if env("SYSTEMD_IN_INITRD").as_deref() == Some("1") {
        debug!("Running in the initrd, portable services are not attached there.");
        return EXIT_OK;
    }
    if env("SYSTEMD_SCOPE").as_deref() == Some("user") {
        debug!("Running for a user manager, portable services are a system feature.");
        return EXIT_OK;
    }
    let plan = make_plan(root);
    let mut failed = plan.failed();
    match sink {
        Sink::Print => print!("{}", plan::describe(&plan)),
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
    let cmdline = std::fs::read_to_string(root.join("/proc/cmdline")).unwrap_or_default();
    kmsg::settings(&cmdline, |k| std::env::var(k).ok(), default)
}

/// A panic inside a reader is reported as that image's error; the default hook's
/// backtrace text on stderr would only be noise at boot.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        warn!("Internal error: {info}");
    }));
}
