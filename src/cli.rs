//! Command-line arguments: the generator as systemd runs it, and the commands `list`,
//! `inspect`, `apply` and `help`, each with its own `--help` text.

use std::ffi::OsString;
use std::path::PathBuf;

/// The program's name in messages and usage texts.
pub const PROGRAM: &str = "portables-generator";

/// The text of `--help`.
pub const USAGE: &str = "\
Usage: portables-generator [--root DIR] [--systemd-version N] NORMAL_DIR [EARLY_DIR LATE_DIR]
       portables-generator [--root DIR] [--systemd-version N] --dry-run
       portables-generator list [--root DIR] [--systemd-version N] [--json]
       portables-generator inspect [--root DIR] [--systemd-version N] [--cat] [--json] PATH|NAME
       portables-generator apply [--dry-run] [--clean] [--settle]
       portables-generator help [COMMAND]
       portables-generator -h | --help | -V | --version

Attaches the portable service images found in /etc/portables, /run/portables,
/var/lib/portables, /usr/local/lib/portables and /usr/lib/portables: writes their
units, profile and image drop-ins and [Install] symlinks into NORMAL_DIR, as
`portablectl attach --enable` would into /etc/systemd/system.attached.

Commands:
  list         show every image found, whether it is attached, and its units
  inspect      show what an image holds and what would be attached from it
  apply        make the running system match what the generator now emits
  help         show this text, or a command's (help COMMAND)

Options:
  --root DIR   read every path below DIR instead of /
  --dry-run    print what would be written (files with their contents, symlinks
               with their targets) instead of writing it
  --systemd-version N
               write drop-ins and link profiles as systemd N's portablectl does
               (default: the version of PID 1's binary, else of the installed
               /usr/lib/systemd/systemd, below DIR with --root)
  -h, --help   show this text
  -V, --version
               show the version

Exit status: 0 when everything found was attached, 1 when something could not be
attached or written or --root is no directory, 2 for a usage error.
";

/// The text of `list --help`.
pub const LIST_USAGE: &str = "\
Usage: portables-generator list [--root DIR] [--systemd-version N] [--json]

Shows every image the generator finds, in search-path order, and the images
declared with Image= in portables.d: its name, kind, path, version and state
(attached, not enabled, masked, left out, failed) with the reason; then each of
its units with the profile it runs with and the targets that want it, and the
units left out with their reason. These are the decisions the generator makes
at boot: the same run, without writing anything.

Options:
  --root DIR   read every path below DIR instead of /
  --systemd-version N
               decide as for systemd N (default: as the generator finds it)
  --json       print one JSON object: {\"systemd_version\": N, \"images\": [{\"name\",
               \"kind\", \"format\", \"path\", \"found_at\", \"version\", \"state\",
               \"reason\", \"units\": [{\"name\", \"state\", \"reason\", \"profile\",
               \"wanted_by\", \"aliases\"}]}]}
  -h, --help   show this text

Exit status: 0 when everything found is attached (or left out on purpose), 1 when
something failed, 2 for a usage error.
";

/// The text of `inspect --help`.
pub const INSPECT_USAGE: &str = "\
Usage: portables-generator inspect [--root DIR] [--systemd-version N] [--cat] [--json] PATH|NAME

Reads one image without mounting it and without root: a directory, a .raw file,
a block device or a .v/ directory given by PATH, or the image the generator
would attach as NAME (a search-path image or an Image= declaration). Shows its
os-release, every unit file in its unit directories and whether it would be
attached or why not, the profile that applies, the verity data found, and the
extensions configured for it with whether each is compatible.

Options:
  --root DIR   read every path below DIR instead of /
  --systemd-version N
               decide as for systemd N (default: as the generator finds it)
  --cat        print os-release and each unit file, each after a '# PATH' line
  --json       print one JSON object: {\"systemd_version\", \"name\", \"kind\",
               \"format\", \"path\", \"found_at\", \"state\", \"reason\",
               \"configured_in\", \"unit_prefixes\", \"os_release\": {\"file\",
               \"fields\", \"text\"}, \"profile\": {\"name\", \"set_in\",
               \"service_dropin\"}, \"verity\": {\"found\", \"enforced\"},
               \"extensions\": [{\"path\", \"compatible\", \"reason\"}],
               \"units\": [{\"name\", \"path\", \"state\", \"reason\", \"profile\",
               \"wanted_by\", \"aliases\", \"text\"}]}; with --cat, the texts too
  -h, --help   show this text

Exit status: 0 when the image would be attached, 1 when it could not be read or
would not be attached, 2 for a usage error.
";

/// The text of `apply --help`.
pub const APPLY_USAGE: &str = "\
Usage: portables-generator apply [--dry-run] [--clean] [--settle]

Makes the running system match what the generator now emits, after images or
portables.d changed: stops the units whose image or declaration is gone (before
reloading, so that their ExecStop= still runs), reloads systemd, restarts the
units whose image or drop-ins changed, starts the units that became enabled,
stops the units no longer enabled, and prints each action. Talks to PID 1 over
D-Bus (its private socket as root); run from a unit, it logs to the journal.

Options:
  --dry-run    print the actions instead of taking them
  --clean      also remove the state, cache, logs and runtime directories of
               services whose image is gone
  --settle     first wait until the image and portables.d directories have not
               changed for one second (at most 60 s), and plan again if they
               changed while acting (portables-apply.service uses it)
  -h, --help   show this text

Exit status: 0 when every action succeeded, 1 when one failed, 2 for a usage error.
";

/// The text of `help --help`.
pub const HELP_USAGE: &str = "\
Usage: portables-generator help [COMMAND]

Shows the usage text of the program, or of COMMAND (list, inspect, apply, help).
";

/// Which usage text to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// The program as a whole, and the generator.
    Generator,
    /// `list`.
    List,
    /// `inspect`.
    Inspect,
    /// `apply`.
    Apply,
    /// `help`.
    Help,
}

impl Topic {
    /// The command of a first positional word, if it names one.
    fn command(word: &str) -> Option<Topic> {
        match word {
            "list" => Some(Topic::List),
            "inspect" => Some(Topic::Inspect),
            "apply" => Some(Topic::Apply),
            "help" => Some(Topic::Help),
            _ => None,
        }
    }

    /// The usage text.
    pub fn usage(self) -> &'static str {
        match self {
            Topic::Generator => USAGE,
            Topic::List => LIST_USAGE,
            Topic::Inspect => INSPECT_USAGE,
            Topic::Apply => APPLY_USAGE,
            Topic::Help => HELP_USAGE,
        }
    }

    /// How a hint names the command: `portables-generator list`.
    pub fn invocation(self) -> String {
        match self {
            Topic::Generator => PROGRAM.to_string(),
            Topic::List => format!("{PROGRAM} list"),
            Topic::Inspect => format!("{PROGRAM} inspect"),
            Topic::Apply => format!("{PROGRAM} apply"),
            Topic::Help => format!("{PROGRAM} help"),
        }
    }
}

/// The parsed arguments of `apply`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyArgs {
    /// `--dry-run`: print the actions, take none.
    pub dry_run: bool,
    /// `--clean`: remove the directories of services whose image is gone.
    pub clean: bool,
    /// `--settle`: wait for the watched directories to stand still first, and apply again
    /// if they changed meanwhile (for the path unit).
    pub settle: bool,
}

/// The parsed arguments of `inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectArgs {
    /// PATH or NAME: a path when it holds a `/`, else an image name.
    pub image: PathBuf,
    /// `--cat`: print os-release and the unit files.
    pub cat: bool,
    /// `--json`.
    pub json: bool,
}

/// What the program was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Generator mode: write into the normal output directory.
    Generate {
        /// `NORMAL_DIR`, the first of the directories systemd passes; the early and late
        /// ones are not written to.
        normal: PathBuf,
    },
    /// `--dry-run`: print the plan on stdout instead of writing it.
    DryRun,
    /// `list`, with `--json` or not.
    List {
        /// `--json`.
        json: bool,
    },
    /// `inspect`.
    Inspect(InspectArgs),
    /// `apply`.
    Apply(ApplyArgs),
    /// `--help`, `help`, `help COMMAND` or `COMMAND --help`.
    Help(Topic),
    /// `--version`.
    Version,
}

/// The command line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--root DIR`: every host path is read below DIR; `None` for `/`.
    pub root: Option<PathBuf>,
    /// What to do.
    pub mode: Mode,
    /// `--systemd-version N`.
    pub systemd_version: Option<u32>,
}

/// A usage error: one line, and the command whose `--help` the hint names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// What is wrong, e.g. `unknown option --bogus`.
    pub message: String,
    /// The command being parsed.
    pub topic: Topic,
}

impl UsageError {
    /// The two lines printed on stderr: the error, and where to read more.
    pub fn text(&self) -> String {
        format!(
            "{PROGRAM}: {}\nTry '{} --help' for more information.",
            self.message,
            self.topic.invocation()
        )
    }
}

/// Flags and words gathered before they are checked against the command.
#[derive(Default)]
struct Seen {
    root: Option<PathBuf>,
    systemd_version: Option<u32>,
    dry_run: bool,
    json: bool,
    cat: bool,
    clean: bool,
    settle: bool,
    words: Vec<OsString>,
}

/// Parse arguments (without argv\[0\]).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, UsageError> {
    let mut topic = Topic::Generator;
    let err = |topic, message: String| UsageError { message, topic };
    let mut parser = lexopt::Parser::from_args(args);
    let mut seen = Seen::default();
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return Err(err(topic, e.to_string())),
        };
        use lexopt::Arg::{Long, Short, Value};
        let option = match arg {
            Short('h') | Long("help") => return Ok(only(Mode::Help(topic))),
            Short('V') | Long("version") => return Ok(only(Mode::Version)),
            Value(word) => {
                // The first word names the command; systemd passes absolute paths, so no
                // output directory is called `list`.
                match word.to_str().and_then(Topic::command) {
                    Some(command) if topic == Topic::Generator && seen.words.is_empty() => {
                        topic = command;
                    }
                    _ => seen.words.push(word),
                }
                continue;
            }
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
        };
        // Which options each command takes.
        let takes = match option.as_str() {
            "--root" | "--systemd-version" => {
                matches!(topic, Topic::Generator | Topic::List | Topic::Inspect)
            }
            "--dry-run" => matches!(topic, Topic::Generator | Topic::Apply),
            "--json" => matches!(topic, Topic::List | Topic::Inspect),
            "--cat" => topic == Topic::Inspect,
            "--clean" | "--settle" => topic == Topic::Apply,
            _ => false,
        };
        if !takes {
            let what = match topic {
                Topic::Generator => String::new(),
                t => format!(" for {}", t.invocation().trim_start_matches(PROGRAM).trim()),
            };
            return Err(err(topic, format!("unknown option {option}{what}")));
        }
        match option.as_str() {
            "--root" => {
                let dir = parser
                    .value()
                    .map_err(|_| err(topic, "--root needs a directory".into()))?;
                if dir.is_empty() {
                    return Err(err(topic, "--root needs a directory".into()));
                }
                seen.root = Some(dir.into());
            }
            "--systemd-version" => {
                let n = parser
                    .value()
                    .map_err(|_| err(topic, "--systemd-version needs a number".into()))?;
                let n = parse_version(n.to_str().unwrap_or("")).map_err(|m| err(topic, m))?;
                seen.systemd_version = Some(n);
            }
            "--dry-run" => seen.dry_run = true,
            "--json" => seen.json = true,
            "--cat" => seen.cat = true,
            "--clean" => seen.clean = true,
            _ => seen.settle = true,
        }
    }
    let mode = mode(topic, &mut seen).map_err(|m| err(topic, m))?;
    Ok(Options {
        root: seen.root,
        mode,
        systemd_version: seen.systemd_version,
    })
}

/// Options for a mode that takes none (`--help`, `--version`).
fn only(mode: Mode) -> Options {
    Options {
        root: None,
        mode,
        systemd_version: None,
    }
}

/// The mode of `topic` with the words and flags seen; else the usage error.
fn mode(topic: Topic, seen: &mut Seen) -> Result<Mode, String> {
    let words = std::mem::take(&mut seen.words);
    let stray = |words: &[OsString]| {
        format!(
            "unexpected argument '{}'",
            words[0].to_string_lossy().escape_debug()
        )
    };
    Ok(match topic {
        Topic::Generator => match (seen.dry_run, words.len()) {
            (true, 0) => Mode::DryRun,
            (true, _) => return Err("--dry-run takes no output directory".into()),
            (false, 1 | 3) => Mode::Generate {
                normal: words.into_iter().next().unwrap_or_default().into(),
            },
            (false, 0) => return Err("an output directory is required".into()),
            (false, n) => return Err(format!("expected 1 or 3 output directories, got {n}")),
        },
        Topic::List if words.is_empty() => Mode::List { json: seen.json },
        Topic::Inspect => match <[OsString; 1]>::try_from(words) {
            Ok([image]) if !image.is_empty() => Mode::Inspect(InspectArgs {
                image: image.into(),
                cat: seen.cat,
                json: seen.json,
            }),
            Ok(_) => return Err("the image to inspect is empty".into()),
            Err(words) if words.is_empty() => {
                return Err("inspect needs an image: a PATH or a NAME".into());
            }
            Err(words) => return Err(stray(&words[1..])),
        },
        Topic::Apply if words.is_empty() => Mode::Apply(ApplyArgs {
            dry_run: seen.dry_run,
            clean: seen.clean,
            settle: seen.settle,
        }),
        Topic::Help => match words.as_slice() {
            [] => Mode::Help(Topic::Generator),
            [word] => match word.to_str().and_then(Topic::command) {
                Some(t) => Mode::Help(t),
                None => {
                    return Err(format!(
                        "no command '{}' (list, inspect, apply, help)",
                        word.to_string_lossy().escape_debug()
                    ));
                }
            },
            more => return Err(stray(&more[1..])),
        },
        Topic::List | Topic::Apply => return Err(stray(&words)),
    })
}

/// A systemd major version, as `systemctl --version` prints it (`257`).
fn parse_version(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "--systemd-version takes a major version such as 257, not '{}'",
            text.escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, UsageError> {
        parse(args.iter().map(Into::into))
    }

    #[test]
    fn generator_mode() {
        assert_eq!(
            p(&["/run/g"]).unwrap().mode,
            Mode::Generate {
                normal: "/run/g".into()
            }
        );
        assert_eq!(
            p(&["/a", "/b", "/c"]).unwrap().mode,
            Mode::Generate {
                normal: "/a".into()
            }
        );
        let o = p(&["--root", "/r", "/a"]).unwrap();
        assert_eq!(o.root, Some("/r".into()));
        assert_eq!(p(&["--root=/r", "--dry-run"]).unwrap().mode, Mode::DryRun);
        assert_eq!(
            p(&["--systemd-version", "257", "/a"])
                .unwrap()
                .systemd_version,
            Some(257)
        );
        assert_eq!(
            p(&["--systemd-version=252", "--dry-run"])
                .unwrap()
                .systemd_version,
            Some(252)
        );
    }

    #[test]
    fn help_and_version_in_every_spelling() {
        for help in [
            &["-h"][..],
            &["--help"],
            &["help"],
            &["-h", "/a"],
            &["/a", "-h"],
        ] {
            assert_eq!(
                p(help).unwrap().mode,
                Mode::Help(Topic::Generator),
                "{help:?}"
            );
        }
        for version in [
            &["-V"][..],
            &["--version"],
            &["/a", "-V"],
            &["list", "-V"],
            &["apply", "--version"],
        ] {
            assert_eq!(p(version).unwrap().mode, Mode::Version, "{version:?}");
        }
        assert_eq!(
            p(&["--", "-h"]).unwrap().mode,
            Mode::Generate {
                normal: "-h".into()
            }
        );
        for (args, topic) in [
            (&["list", "--help"][..], Topic::List),
            (&["inspect", "-h"], Topic::Inspect),
            (&["inspect", "foo", "--json", "-h"], Topic::Inspect),
            (&["apply", "--dry-run", "-h"], Topic::Apply),
            (&["help", "-h"], Topic::Help),
            (&["help", "list"], Topic::List),
            (&["help", "inspect"], Topic::Inspect),
            (&["help", "apply"], Topic::Apply),
            (&["help", "help"], Topic::Help),
        ] {
            assert_eq!(p(args).unwrap().mode, Mode::Help(topic), "{args:?}");
        }
    }

    #[test]
    fn commands() {
        let o = p(&["list", "--root", "/r", "--json", "--systemd-version=257"]).unwrap();
        assert_eq!(o.mode, Mode::List { json: true });
        assert_eq!(o.root, Some("/r".into()));
        assert_eq!(o.systemd_version, Some(257));
        assert_eq!(
            p(&["--root=/r", "list"]).unwrap().root,
            Some("/r".into()),
            "options before the command"
        );
        assert_eq!(
            p(&["inspect", "--cat", "/var/lib/portables/foo.raw"])
                .unwrap()
                .mode,
            Mode::Inspect(InspectArgs {
                image: "/var/lib/portables/foo.raw".into(),
                cat: true,
                json: false
            })
        );
        assert_eq!(
            p(&["apply", "--clean", "--settle", "--dry-run"])
                .unwrap()
                .mode,
            Mode::Apply(ApplyArgs {
                dry_run: true,
                clean: true,
                settle: true
            })
        );
        assert_eq!(
            p(&["apply"]).unwrap().mode,
            Mode::Apply(ApplyArgs::default())
        );
        // Only the first word names a command.
        assert_eq!(
            p(&["inspect", "list"]).unwrap().mode,
            Mode::Inspect(InspectArgs {
                image: "list".into(),
                cat: false,
                json: false
            })
        );
    }

    #[test]
    fn usage_errors() {
        for (bad, topic) in [
            (&[][..], Topic::Generator),
            (&["-x", "/a"], Topic::Generator),
            (&["-"; 2], Topic::Generator),
            (&["/a", "/b"], Topic::Generator),
            (&["/a", "list"], Topic::Generator),
            (&["--bogus", "/a"], Topic::Generator),
            (&["--root"], Topic::Generator),
            (&["--root=", "/a"], Topic::Generator),
            (&["--dry-run", "/a"], Topic::Generator),
            (&["--json", "--dry-run"], Topic::Generator),
            (&["--systemd-version", "/a"], Topic::Generator),
            (&["--systemd-version=25x", "/a"], Topic::Generator),
            (&["--systemd-version=+257", "/a"], Topic::Generator),
            (&["--systemd-version"], Topic::Generator),
            (&["list", "foo"], Topic::List),
            (&["list", "--cat"], Topic::List),
            (&["list", "--dry-run"], Topic::List),
            (&["inspect"], Topic::Inspect),
            (&["inspect", "a", "b"], Topic::Inspect),
            (&["inspect", ""], Topic::Inspect),
            (&["inspect", "--clean", "a"], Topic::Inspect),
            (&["apply", "--root", "/r"], Topic::Apply),
            (&["apply", "--json"], Topic::Apply),
            (&["apply", "now"], Topic::Apply),
            (&["help", "bogus"], Topic::Help),
            (&["help", "list", "x"], Topic::Help),
            (&["list", "--json=yes"], Topic::List),
        ] {
            let e = p(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(e.topic, topic, "{bad:?}");
            let text = e.text();
            assert_eq!(text.lines().count(), 2, "{text}");
            assert!(text.ends_with("--help' for more information."), "{text}");
        }
        assert_eq!(
            p(&["list", "--bogus"]).unwrap_err().text(),
            "portables-generator: unknown option --bogus for list\nTry 'portables-generator list --help' for more information."
        );
    }
}
