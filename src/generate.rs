//! One run of the generator, stage by stage (ARCHITECTURE.md, "Stages"): configuration,
//! discovery, selection, reading, plan, write. Each stage returns what it found and says
//! why in [`Diagnostics`]; they are logged here, once, at the end.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use log::Level;

use crate::config::{self, Config};
use crate::diagnostic::{Diagnostic, Diagnostics, Keep};
use crate::model::{Attachment, Image, Portable};
use crate::plan::{self, Host, HostUnit, Plan, Planner};
use crate::root::Root;
use crate::systemd_version::{self, Version};
use crate::{attach, discover, host, host_file, late_mounts, output, preset, profile, select};

/// Exit status: all attached.
pub const EXIT_OK: u8 = 0;
/// Exit status: something could not be attached or written.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: bad usage (`main.rs`).
pub const EXIT_USAGE: u8 = 2;

/// What to do with the plan.
pub enum Sink {
    /// Write it into this output directory (the generator's normal directory).
    Write(PathBuf),
    /// Print it on stdout (`--dry-run`).
    Print,
}

/// Everything a run decides: the files and links, and why; and what each stage returned on
/// the way, which `list` shows.
pub struct Generated {
    /// Every file and link to write.
    pub plan: Plan,
    /// Everything every stage said, in order, to be logged once.
    pub diagnostics: Diagnostics,
    /// The images found in the search paths, in search-path order.
    pub images: Vec<Image>,
    /// What selection chose to attach, with the settings that apply.
    pub portables: Vec<Portable>,
    /// The portables that could be read, with their matching units.
    pub attachments: Vec<Attachment>,
}

/// From how many portables on a run writes on a thread of its own: starting one costs
/// about what writing one image does.
const WRITER_THREAD_FROM: usize = 8;

/// Nodes handed to the writer at once: a few images' worth, so that a writing thread is not
/// woken for each image.
const WRITE_BATCH: usize = 128;

/// Find, select, read and plan every portable below `root` for systemd `systemd`.
pub fn generate(root: &Root, systemd: u32, first_boot: bool, diags: Diagnostics) -> Generated {
    stages(root, systemd, first_boot, diags, None)
}

/// [`generate`], writing into `out` each image's units as soon as they are planned, then the
/// aliases: the run systemd makes. Each image is let go of once written, so the memory a run
/// takes does not grow with the images' contents (ARCHITECTURE.md, "Stages"): the images
/// found are not returned, and of the attachments only those a first boot's preset warning
/// needs, and the plan holds none of the nodes. Each node that could not be created is an
/// error at the end of the diagnostics.
pub fn generate_into(
    root: &Root,
    systemd: u32,
    first_boot: bool,
    diags: Diagnostics,
    out: &Path,
) -> Generated {
    let mut writer = output::Writer::open(out);
    let mut generated = stages(root, systemd, first_boot, diags, writer.as_mut().ok());
    let errors = match writer {
        Ok(mut writer) => {
            writer.write(std::mem::take(&mut generated.plan.nodes));
            writer.finish()
        }
        Err(e) => vec![e],
    };
    output::report(errors, &mut generated.diagnostics);
    generated
}

/// The stages of a run; with `writer`, each image's nodes are written as soon as they are
/// planned, and only the links are left in the plan returned.
fn stages(
    root: &Root,
    systemd: u32,
    first_boot: bool,
    mut diags: Diagnostics,
    mut writer: Option<&mut output::Writer>,
) -> Generated {
    let config = config::load(root, &mut diags);
    let images = discover::discover(root, config.defaults.allow_writable_by_others, &mut diags);
    let not_mounted = late_mounts::pending_below(root, &watched_paths(&config), &mut diags);
    let is_pending = |p: &Path| not_mounted.iter().any(|m| p.starts_with(m));
    let image_at = |p: &Path| discover::image_at(root, p);
    let portables = select::select(&images, &config, &image_at, &is_pending, &mut diags);
    // A run that writes as it goes only logs: it lists nothing found.
    let images = if writer.is_some() {
        drop(images);
        Vec::new()
    } else {
        images
    };
    if let Some(writer) = writer.as_deref_mut()
        && portables.len() >= WRITER_THREAD_FROM
        && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
    {
        writer.in_background();
    }
    let mut attachments = Vec::new();
    let mut plan = on_host(root, systemd, &not_mounted, diags.keep(), |host| {
        let mut planner = Planner::new(host);
        let mut batch = plan::Nodes::new();
        attach::each(root, &portables, systemd, &mut diags, |att| {
            planner.add(&att);
            match writer.as_deref_mut() {
                Some(writer) => {
                    batch.append(&mut planner.take_nodes());
                    if batch.len() >= WRITE_BATCH {
                        writer.write(std::mem::take(&mut batch));
                    }
                    if first_boot && !att.enable {
                        attachments.push(att);
                    }
                }
                None => attachments.push(att),
            }
        });
        if let Some(writer) = writer
            && !batch.is_empty()
        {
            writer.write(batch);
        }
        planner.finish()
    });
    diags.extend(std::mem::take(&mut plan.diagnostics));
    if first_boot {
        let planned = |unit: &str| plan.names(unit);
        preset::warn_first_boot(root, &attachments, &planned, &mut diags);
    }
    Generated {
        plan,
        diagnostics: diags,
        images,
        portables,
        attachments,
    }
}

/// The plan of `attachments` alone, as a run would make it on this host (`inspect`).
pub fn plan_alone(root: &Root, systemd: u32, attachments: &[Attachment]) -> Plan {
    on_host(root, systemd, &[], Keep::All, |host| {
        plan::plan(attachments, host)
    })
}

/// Paths whose file system may be mounted after generators run: the search paths and
/// every path `portables.d` names. Images there are attached by one more reload.
fn watched_paths(config: &Config) -> Vec<&str> {
    let declared = config.images.values().filter_map(|entry| match entry {
        config::ImageEntry::Configured(c) => Some(c.image.iter().chain(&c.extensions)),
        _ => None,
    });
    let declared = declared.flatten().filter_map(|p| p.to_str());
    discover::SEARCH_PATHS.into_iter().chain(declared).collect()
}

/// What planning asks of the host, answered from the files below `root`.
fn on_host<R>(
    root: &Root,
    systemd: u32,
    not_mounted: &[String],
    keep: Keep,
    f: impl FnOnce(&Host) -> R,
) -> R {
    let unit_file = |name: &str| {
        host::host_unit(root, name).map(|path| HostUnit {
            kind: host::host_unit_kind(root, &path),
            path,
        })
    };
    let instance_of = |template: &str| host::host_instance_of(root, template);
    // Every unit of a type with the same profile gets the same answer: looked up once.
    let profiles: RefCell<HashMap<(String, String), plan::ProfileLookup>> = RefCell::default();
    let profile = |name: &str, kind: &str| {
        let key = (name.to_string(), kind.to_string());
        if let Some(known) = profiles.borrow().get(&key) {
            return known.clone();
        }
        let found = profile::find_profile(root, systemd, name, kind);
        profiles.borrow_mut().insert(key, found.clone());
        found
    };
    let specifiers = crate::host_specifiers::HostSpecifiers::new(root, systemd);
    f(&Host {
        unit_file: &unit_file,
        instance_of: &instance_of,
        profile: &profile,
        os_release: host::host_os_release(root),
        systemd_version: systemd,
        specifiers: &|c| specifiers.get(c),
        not_mounted,
        keep,
    })
}

/// The generator after argument parsing and logger set-up. `systemd` is the version given
/// with `--systemd-version`, if any. Returns the exit status.
pub fn run(
    root: &Root,
    sink: Sink,
    systemd: Option<Version>,
    env: impl Fn(&str) -> Option<String>,
) -> u8 {
    // What is not logged need not be kept: at info level, most of a run's notices.
    let dry_run = matches!(sink, Sink::Print);
    let mut diags = Diagnostics::new(Keep::Logged {
        debug: log::log_enabled!(Level::Debug),
        dry_run,
    });
    let Some((systemd, first_boot)) = preflight(root, systemd, &env, &mut diags) else {
        diags.log(dry_run);
        return EXIT_OK;
    };
    let diagnostics = match sink {
        Sink::Print => {
            let generated = generate(root, systemd.major, first_boot, diags);
            println!("# For {}", systemd.describe());
            print!("{}", plan::describe(&generated.plan));
            generated.diagnostics
        }
        Sink::Write(dir) => generate_into(root, systemd.major, first_boot, diags, &dir).diagnostics,
    };
    diagnostics.log(dry_run);
    if diagnostics.failed() {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// Whether to run at all, for which systemd, and whether this is a first boot; `None`
/// when this boot or this manager has no portables to attach (`diags` says why).
pub fn preflight(
    root: &Root,
    systemd: Option<Version>,
    env: &impl Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
) -> Option<(Version, bool)> {
    let mut say = |level, message: &str| diags.push(Diagnostic::run(level, message.to_string()));
    if env("SYSTEMD_IN_INITRD").as_deref() == Some("1") {
        say(
            Level::Debug,
            "Running in the initrd, portable services are not attached there.",
        );
        return None;
    }
    if env("SYSTEMD_SCOPE").as_deref() == Some("user") {
        say(
            Level::Debug,
            "Running for a user manager, portable services are a system feature.",
        );
        return None;
    }
    let cmdline = host_file::kernel_cmdline(root).unwrap_or_else(|e| {
        say(
            Level::Warn,
            &format!("Cannot read /proc/cmdline: {e}; reading it as empty."),
        );
        String::new()
    });
    if !config::enabled_by_cmdline(&cmdline) {
        say(
            Level::Info,
            &format!(
                "Turned off for this boot by {}= on the kernel command line.",
                config::CMDLINE_SWITCH
            ),
        );
        return None;
    }
    let first_boot = env("SYSTEMD_FIRST_BOOT");
    match first_boot.as_deref() {
        Some("1") => say(
            Level::Info,
            "First boot of this system: attaching the images it was built with.",
        ),
        Some(v) => say(Level::Debug, &format!("SYSTEMD_FIRST_BOOT={v}.")),
        None => say(Level::Debug, "SYSTEMD_FIRST_BOOT is not set."),
    }
    let systemd = systemd.unwrap_or_else(|| systemd_version::detect(root));
    if systemd.is_guess() {
        say(
            Level::Warn,
            &format!(
                "Cannot tell which systemd version will read the output, writing for {}.",
                systemd.describe()
            ),
        );
    } else {
        say(
            Level::Debug,
            &format!("Writing for {}.", systemd.describe()),
        );
    }
    Some((systemd, first_boot.as_deref() == Some("1")))
}
