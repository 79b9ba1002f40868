//! The `portables-generator` program as systemd runs it: parses the arguments, sets up
//! logging, and runs the stages ([`portables_generator::generate::run`]).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use log::warn;
use portables_generator::cli::{self, Mode};
use portables_generator::generate::{EXIT_USAGE, Sink, run};
use portables_generator::kmsg::{self, Target};
use portables_generator::root::Root;
use portables_generator::systemd_version;

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("portables-generator: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // A mistyped --root would otherwise read as an empty system: nothing found, exit 0.
    if let Some(dir) = &opts.root
        && let Err(why) = std::fs::metadata(dir).and_then(|m| {
            m.is_dir()
                .then_some(())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotADirectory))
        })
    {
        eprintln!("portables-generator: --root {}: {why}", dir.display());
        return ExitCode::from(EXIT_USAGE);
    }
    let root = opts.root.map(Root::new).unwrap_or_default();
    let systemd = match opts.systemd_version.map(systemd_version::from_option) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            eprintln!("portables-generator: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (sink, default_target) = match opts.mode {
        Mode::Help => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("portables-generator {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Mode::DryRun => (Sink::Print, Target::Console),
        Mode::Generate { normal } => (Sink::Write(normal), Target::Kmsg),
    };
    let (level, target) = kmsg::settings_below(&root, |k| std::env::var(k).ok(), default_target);
    kmsg::init(level, target);
    // A panic inside a reader is reported as that image's error; the default hook's
    // backtrace text on stderr would only be noise at boot.
    std::panic::set_hook(Box::new(|info| warn!("Internal error: {info}")));
    ExitCode::from(run(&root, sink, systemd, |k| std::env::var(k).ok()))
}
