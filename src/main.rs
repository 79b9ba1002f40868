use std::process::ExitCode;

use portables_generator::cli::{self, Mode};
use portables_generator::kmsg::{self, Target};
use portables_generator::root::Root;
use portables_generator::systemd_version;
use portables_generator::{EXIT_USAGE, Sink, log_settings, quiet_panics, run};

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("portables-generator: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(EXIT_USAGE);
        }
    };
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
    let (level, target) = log_settings(&root, default_target);
    kmsg::init(level, target);
    quiet_panics();
    ExitCode::from(run(&root, sink, systemd, |k| std::env::var(k).ok()))
}
