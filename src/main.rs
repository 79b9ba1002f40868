//! The `portables-generator` program: parses the arguments, checks `--root`, sets up logging,
//! and hands over to the command asked for ([`portables_generator::generate::run`] as systemd
//! runs it, `list`, `inspect`, `apply`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use log::warn;
use portables_generator::cli::{self, Mode};
use portables_generator::generate::{EXIT_FAILED, EXIT_USAGE, Sink, run};
use portables_generator::kmsg::{self, Target};
use portables_generator::root::Root;
use portables_generator::{inspect, list, systemd_version};

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}", e.text());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match opts.mode {
        Mode::Help(topic) => {
            print!("{}", topic.usage());
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("{} {}", cli::PROGRAM, env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Mode::Apply(args) => return ExitCode::from(apply(&args)),
        _ => {}
    }
    // A mistyped --root would otherwise read as an empty system: nothing found, exit 0. It
    // is a failure to run (exit 1), like an output directory that cannot be written.
    if let Some(dir) = &opts.root
        && let Err(why) = std::fs::metadata(dir).and_then(|m| {
            m.is_dir()
                .then_some(())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotADirectory))
        })
    {
        eprintln!("{}: --root {}: {why}", cli::PROGRAM, dir.display());
        return ExitCode::from(EXIT_FAILED);
    }
    // One run, in which the host does not change: each directory below the root is looked
    // up and listed once (root.rs).
    let root = opts.root.map(Root::new).unwrap_or_default().remembering();
    let systemd = match opts.systemd_version.map(systemd_version::from_option) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            eprintln!("{}: {e}", cli::PROGRAM);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let env = |k: &str| std::env::var(k).ok();
    // The generator logs where systemd's generators do; the commands a person runs log on
    // the terminal, and only what their output does not say already.
    let default_target = match opts.mode {
        Mode::Generate { .. } => Target::Kmsg,
        _ => Target::Console,
    };
    let (level, target) = kmsg::settings_below(&root, env, default_target);
    kmsg::init(level, target);
    // A panic inside a reader is reported as that image's error; the default hook's
    // backtrace text on stderr would only be noise at boot.
    std::panic::set_hook(Box::new(|info| warn!("Internal error: {info}")));
    let status = match opts.mode {
        Mode::Generate { normal } => run(&root, Sink::Write(normal), systemd, env),
        Mode::DryRun => run(&root, Sink::Print, systemd, env),
        Mode::List { json } => list::run(&root, systemd, json, env),
        Mode::Inspect(args) => inspect::run(&root, systemd, &args, env),
        // Handled before --root was checked.
        Mode::Help(_) | Mode::Version | Mode::Apply(_) => EXIT_FAILED,
    };
    ExitCode::from(status)
}

#[cfg(feature = "apply")]
fn apply(args: &cli::ApplyArgs) -> u8 {
    portables_generator::apply::run(args)
}

/// Built without the `apply` feature (as `demo/run` builds it): one line, exit status 1.
#[cfg(not(feature = "apply"))]
fn apply(_: &cli::ApplyArgs) -> u8 {
    eprintln!(
        "{}: this build has no apply command (built without the cargo feature \"apply\")",
        cli::PROGRAM
    );
    EXIT_FAILED
}
