//! `portables-generator apply`: make the running system match what the generator now emits,
//! after images or `portables.d` changed (ARCHITECTURE.md, "Applying changes"). The new plan
//! is made in process by the same stages as at boot; what was attached comes from the
//! generator's output directory, or from the record of the last `apply`
//! ([`record`]); [`decide`] turns both and what systemd says into actions, which are carried
//! out over D-Bus ([`bus`]): stops of units going away while they are still loaded, the
//! reload, then restarts, starts and stops.

pub mod bus;
pub mod decide;
pub mod record;
pub mod settle;
pub mod snapshot;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use log::{Level, LevelFilter, error, info, log, warn};

use crate::diagnostic::Diagnostics;
use crate::generate::{self, EXIT_FAILED, EXIT_OK};
use crate::kmsg::{self, Target};
use crate::root::Root;
use bus::{Job, Systemd};
use decide::{Action, Live, Verb, When, World};
use snapshot::Snapshot;

/// What `apply` was asked to do.
pub use crate::cli::ApplyArgs as Options;

/// Where systemd has the generator write at every reload.
pub const OUTPUT_DIR: &str = "/run/systemd/generator";

/// Identifier of the journal lines `apply` writes when run from a unit.
const IDENTIFIER: &str = "portables-generator";

/// How many times `--settle` plans again when the directories changed while it acted: a
/// copy that keeps going longer than that is picked up by the next trigger.
const MAX_ROUNDS: u32 = 5;

/// How long `apply` waits for the jobs of one step (a unit's own stop timeout is 90 s by
/// default).
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// Run `apply`; returns the exit status (0 when every job succeeded, 1 otherwise).
pub fn run(opts: &Options) -> u8 {
    let out = Report::init();
    let sd = match Systemd::connect() {
        Ok(sd) => sd,
        Err(e) => {
            error!("{e}.");
            return EXIT_FAILED;
        }
    };
    let watched: Vec<&Path> = settle::watched().map(Path::new).collect();
    let now = || settle::stamp(watched.iter().copied());
    if opts.settle && !settle::wait_quiet(now, settle::QUIET, settle::MAX_WAIT) {
        warn!("The image directories are still changing after 60 s; applying what is there now.");
    }
    let mut ok = true;
    for round in 1..=MAX_ROUNDS {
        let before = now();
        ok &= once(&sd, opts, &out);
        if !opts.settle || opts.dry_run || now() == before {
            break;
        }
        if round == MAX_ROUNDS {
            warn!(
                "The image directories changed again while applying; leaving it to the next run."
            );
            break;
        }
        out.say("The image directories changed while applying; applying again.");
        settle::wait_quiet(now, settle::QUIET, settle::MAX_WAIT);
    }
    if ok { EXIT_OK } else { EXIT_FAILED }
}

/// One round: plan, decide, act, record. Whether every job succeeded.
fn once(sd: &Systemd, opts: &Options, out: &Report) -> bool {
    let after = plan_now();
    let output = snapshot::from_nodes(&snapshot::read_output_dir(Path::new(OUTPUT_DIR)));
    // After an administrator's own daemon-reload the output already shows the new state; the
    // record of the last apply still shows what was running.
    let before = record::read(Path::new(record::RECORD)).unwrap_or_else(|| output.clone());
    let actions = decide_live(sd, &before, &after, opts.clean);
    let reload = !snapshot::same_output(&output, &after);
    if actions.is_empty() && !reload {
        out.say("Nothing to do: the running units match what the generator emits.");
    }
    let (pre, post): (Vec<Action>, Vec<Action>) = actions
        .into_iter()
        .partition(|a| a.when == When::BeforeReload);
    let mut ok = act(sd, &pre, opts.dry_run, out);
    if reload {
        out.action(
            opts.dry_run,
            "reload systemd (the generator's output changed)",
        );
        if !opts.dry_run
            && let Err(e) = sd.reload()
        {
            error!("Cannot reload systemd: {e}.");
            return false;
        }
    }
    ok &= act(sd, &post, opts.dry_run, out);
    if !opts.dry_run
        && let Err(e) = record::write(Path::new(record::RECORD), &after)
    {
        warn!(
            "Cannot write {}: {e}; the next apply reads the generator's output instead.",
            record::RECORD
        );
    }
    ok
}

/// What the generator would emit now, as attached units, made by the same stages and for
/// the same systemd version as at boot. Its warnings and errors are logged; the rest of what
/// it says is for debugging (the reload logs it all again to the kernel log).
fn plan_now() -> Snapshot {
    let root = Root::default();
    let env = |k: &str| std::env::var(k).ok();
    let mut diags = Diagnostics::default();
    let Some((systemd, _)) = generate::preflight(&root, None, &env, &mut diags) else {
        report(&diags);
        return Snapshot::new();
    };
    let generated = generate::generate(&root, systemd.major, false, diags);
    report(&generated.diagnostics);
    let mut units = snapshot::from_nodes(&generated.plan.nodes);
    let release_at: BTreeMap<&Path, &[(String, String)]> = generated
        .attachments
        .iter()
        .map(|a| (a.image.found_at.as_path(), &a.release.fields[..]))
        .collect();
    for (name, unit) in &mut units {
        let release = generated
            .plan
            .attached
            .get(name)
            .and_then(|at| release_at.get(at.as_path()).copied())
            .unwrap_or_default();
        unit.stamp = Some(snapshot::stamp(&unit.images, release));
    }
    units
}

fn report(diags: &Diagnostics) {
    for d in diags {
        let level = if d.level <= Level::Warn {
            d.level
        } else {
            Level::Debug
        };
        log!(level, "{}", d.message);
    }
}

/// [`decide::decide`] with systemd asked about each unit once, as the decisions need them.
fn decide_live(sd: &Systemd, before: &Snapshot, after: &Snapshot, clean: bool) -> Vec<Action> {
    let cache: RefCell<BTreeMap<String, Live>> = RefCell::default();
    let live = |unit: &str| {
        if let Some(l) = cache.borrow().get(unit) {
            return l.clone();
        }
        let l = sd.live(unit).unwrap_or_else(|e| {
            warn!("Cannot ask systemd about {unit}: {e}.");
            Live::unknown()
        });
        cache.borrow_mut().insert(unit.to_string(), l.clone());
        l
    };
    let instances = |template: &str| {
        sd.instances(template).unwrap_or_else(|e| {
            warn!("Cannot list the instances of {template}: {e}.");
            Vec::new()
        })
    };
    let world = World {
        live: &live,
        exists: &|p: &Path| p.exists(),
        instances: &instances,
    };
    decide::decide(before, after, &world, clean)
}

/// Carry out `actions`: stops, restarts and starts queued together and waited for, then the
/// cleanings (which need their units stopped). Whether all succeeded.
fn act(sd: &Systemd, actions: &[Action], dry_run: bool, out: &Report) -> bool {
    let mut ok = true;
    let mut jobs: Vec<(&Action, Job)> = Vec::new();
    for a in actions.iter().filter(|a| a.verb != Verb::Clean) {
        out.action(dry_run, &a.to_string());
        if dry_run {
            continue;
        }
        let method = match a.verb {
            Verb::Stop => "StopUnit",
            Verb::Restart => "RestartUnit",
            _ => "StartUnit",
        };
        match sd.job(method, &a.unit) {
            Ok(job) => jobs.push((a, job)),
            Err(e) => {
                error!("Cannot {} {}: {e}.", verb_word(a.verb), a.unit);
                ok = false;
            }
        }
    }
    let queued: Vec<Job> = jobs.iter().map(|(_, j)| j.clone()).collect();
    for ((a, _), result) in jobs.iter().zip(sd.wait(&queued, JOB_TIMEOUT)) {
        let word = verb_word(a.verb);
        match result.as_deref() {
            Some("done" | "skipped") => out.say(&format!("{word} {}: done", a.unit)),
            Some(other) => {
                error!("{word} {}: {other} (see journalctl -u {}).", a.unit, a.unit);
                ok = false;
            }
            None => {
                error!(
                    "{word} {}: no result after {} s.",
                    a.unit,
                    JOB_TIMEOUT.as_secs()
                );
                ok = false;
            }
        }
    }
    for a in actions.iter().filter(|a| a.verb == Verb::Clean) {
        out.action(dry_run, &a.to_string());
        if dry_run {
            continue;
        }
        match sd.clean(&a.unit) {
            Ok(()) => out.say(&format!("clean {}: done", a.unit)),
            Err(e) => {
                error!("Cannot clean {}: {e}.", a.unit);
                ok = false;
            }
        }
    }
    ok
}

fn verb_word(verb: Verb) -> &'static str {
    match verb {
        Verb::Stop => "stop",
        Verb::Clean => "clean",
        Verb::Restart => "restart",
        Verb::Start => "start",
    }
}

/// Where `apply`'s lines go: the journal, with their level and the program's identifier, when
/// run from a unit whose stderr is the journal; otherwise actions on stdout, problems on
/// stderr.
struct Report {
    journal: bool,
}

impl Report {
    fn init() -> Report {
        let level = std::env::var("SYSTEMD_LOG_LEVEL")
            .ok()
            .and_then(|l| kmsg::parse_level(&l))
            .unwrap_or(LevelFilter::Info);
        if systemd_journal_logger::connected_to_journal()
            && let Ok(journal) = systemd_journal_logger::JournalLog::new()
            && journal
                .with_syslog_identifier(IDENTIFIER.to_string())
                .install()
                .is_ok()
        {
            log::set_max_level(level);
            return Report { journal: true };
        }
        kmsg::init(level, Target::Console);
        Report { journal: false }
    }

    /// One line of what is done.
    fn say(&self, line: &str) {
        if self.journal {
            info!("{line}");
        } else {
            println!("{}", kmsg::sanitize(line));
        }
    }

    /// One action, said as "would ..." in a dry run.
    fn action(&self, dry_run: bool, line: &str) {
        if dry_run {
            self.say(&format!("would {line}"));
        } else {
            self.say(line);
        }
    }
}
