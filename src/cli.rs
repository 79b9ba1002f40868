//! Command-line arguments.

use std::path::PathBuf;

/// The text of `--help`, and of usage errors after their one-line message.
pub const USAGE: &str = "\
Usage: portables-generator [OPTIONS] NORMAL_DIR [EARLY_DIR LATE_DIR]
       portables-generator [OPTIONS] --dry-run
       portables-generator -h | --help | help | -V | --version

Attaches the portable service images found in /etc/portables, /run/portables,
/var/lib/portables, /usr/local/lib/portables and /usr/lib/portables: writes their
units, profile and image drop-ins and [Install] symlinks into NORMAL_DIR, as
`portablectl attach --enable` would into /etc/systemd/system.attached.

  --root DIR   read every path below DIR instead of /
  --dry-run    print what would be written (files with their contents, symlinks
               with their targets) instead of writing it
  --systemd-version N
               write drop-ins and link profiles as systemd N's portablectl does
               (default: the version of PID 1's binary, or with --root of
               DIR/usr/lib/systemd/systemd)
";

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
    /// `--help`.
    Help,
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

/// Parse arguments (without argv\[0\]). The error is a one-line usage message.
pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Options, String> {
    let mut root = None;
    let mut systemd_version = None;
    let mut dry_run = false;
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut args = args.into_iter();
    let mut only_positional = false;
    while let Some(arg) = args.next() {
        let text = arg.to_str().unwrap_or("");
        // `-` alone is a name; anything else starting with `-` is an option, never an
        // output directory (`-h` must not become ./-h).
        if only_positional || !text.starts_with('-') || text == "-" {
            dirs.push(arg.into());
            continue;
        }
        match text {
            "--" => only_positional = true,
            "--help" | "-h" => {
                return Ok(Options {
                    root: None,
                    mode: Mode::Help,
                    systemd_version: None,
                });
            }
            "--version" | "-V" => {
                return Ok(Options {
                    root: None,
                    mode: Mode::Version,
                    systemd_version: None,
                });
            }
            "--dry-run" => dry_run = true,
            "--root" => {
                let dir = args.next().ok_or("--root needs a directory")?;
                root = Some(PathBuf::from(dir));
            }
            "--systemd-version" => {
                let n = args.next().ok_or("--systemd-version needs a number")?;
                systemd_version = Some(parse_version(n.to_str().unwrap_or(""))?);
            }
            _ => {
                if let Some(dir) = text.strip_prefix("--root=").filter(|d| !d.is_empty()) {
                    root = Some(PathBuf::from(dir));
                } else if let Some(n) = text.strip_prefix("--systemd-version=") {
                    systemd_version = Some(parse_version(n)?);
                } else {
                    return Err(format!("unknown option {text}"));
                }
            }
        }
    }
    // `portables-generator help`, as with systemd's tools: no one names an output
    // directory `help` (systemd passes absolute paths).
    if !dry_run && dirs.len() == 1 && dirs[0].as_os_str() == "help" {
        return Ok(Options {
            root: None,
            mode: Mode::Help,
            systemd_version: None,
        });
    }
    let mode = match (dry_run, dirs.len()) {
        (true, 0) => Mode::DryRun,
        (true, _) => return Err("--dry-run takes no output directory".into()),
        (false, 1 | 3) => Mode::Generate {
            normal: dirs.swap_remove(0),
        },
        (false, 0) => return Err("an output directory is required".into()),
        (false, n) => return Err(format!("expected 1 or 3 output directories, got {n}")),
    };
    Ok(Options {
        root,
        mode,
        systemd_version,
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

    fn p(args: &[&str]) -> Result<Options, String> {
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
            assert_eq!(p(help).unwrap().mode, Mode::Help, "{help:?}");
        }
        for version in [&["-V"][..], &["--version"], &["/a", "-V"]] {
            assert_eq!(p(version).unwrap().mode, Mode::Version, "{version:?}");
        }
        assert_eq!(
            p(&["--", "-h"]).unwrap().mode,
            Mode::Generate {
                normal: "-h".into()
            }
        );
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["-x", "/a"],
            &["-"; 2],
            &["/a", "/b"],
            &["--bogus", "/a"],
            &["--root"],
            &["--dry-run", "/a"],
            &["--systemd-version", "/a"],
            &["--systemd-version=25x", "/a"],
            &["--systemd-version=+257", "/a"],
            &["--systemd-version"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
