//! Every decision worth telling, in one shape: what it is about, how loud, why, and whether
//! it fails the run. Every stage returns these instead of logging, and [`Diagnostics::log`]
//! is the one place they become log lines, so a dry run (and any later listing of what was
//! attached) shows exactly what the boot log shows (ARCHITECTURE.md, "Rules between modules").

use std::path::{Path, PathBuf};

use log::{Level, log};

/// Most lines above debug level about one image; the rest are counted in one more line
/// (and shown at debug level): a crafted image must not flood the log.
pub const MAX_LINES_PER_IMAGE: usize = 16;

/// What a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The run as a whole: the kernel command line, the host, the output directory.
    Run,
    /// A `portables.d` file, by host path.
    Config(PathBuf),
    /// A search directory, by host path.
    SearchDir(PathBuf),
    /// An image or an `Image=` declaration, by the path it was found at.
    Image(PathBuf),
    /// A unit of an image.
    Unit {
        /// The unit's name.
        unit: String,
        /// The image's path, as found.
        image: PathBuf,
    },
}

/// What a dry run says in place of a diagnostic's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunLine(pub String);

/// One decision, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What it is about.
    pub subject: Subject,
    /// The log level of its line.
    pub level: Level,
    /// Why, without naming the subject (`its os-release has no ID=`).
    pub reason: String,
    /// The whole log line, naming the subject.
    pub message: String,
    /// Whether it makes the run exit with status 1.
    pub fails: bool,
    /// The line in a dry run, where it differs: what a run only would do ("Would attach").
    /// Boxed: few diagnostics have one, and every one is moved around.
    pub dry_run_message: Option<Box<DryRunLine>>,
    /// Whether it says that its subject is not attached (an image or a unit left out),
    /// which `list` shows as the subject's state.
    pub left_out: bool,
    /// Left out because configuration masks it (a masked `NAME.conf`, `Attach=no`), as
    /// `list` tells it apart from other reasons.
    pub masked: bool,
}

impl Diagnostic {
    /// A diagnostic whose log line is `message`.
    pub fn new(subject: Subject, level: Level, reason: String, message: String) -> Diagnostic {
        Diagnostic {
            subject,
            level,
            reason,
            message,
            fails: false,
            dry_run_message: None,
            left_out: false,
            masked: false,
        }
    }

    /// A line about the run as a whole: the message is the reason.
    pub fn run(level: Level, message: String) -> Diagnostic {
        Diagnostic::new(Subject::Run, level, message.clone(), message)
    }

    /// A line about a `portables.d` file; `message` names the file itself.
    pub fn config(file: &Path, level: Level, message: String) -> Diagnostic {
        Diagnostic::new(
            Subject::Config(file.to_path_buf()),
            level,
            message.clone(),
            message,
        )
    }

    /// `Image LABEL not attached: REASON.` for the image found at `at`.
    pub fn image_not_attached(at: &Path, label: &str, level: Level, reason: String) -> Diagnostic {
        let message = format!("Image {label} not attached: {reason}.");
        Diagnostic::new(Subject::Image(at.to_path_buf()), level, reason, message).leaving_out()
    }

    /// `Unit UNIT of image LABEL not attached: REASON.`
    pub fn unit_not_attached(
        unit: &str,
        image: &Path,
        label: &str,
        level: Level,
        reason: String,
    ) -> Diagnostic {
        let message = format!(
            "Unit {} of image {label} not attached: {reason}.",
            crate::kmsg::shorten(unit)
        );
        let subject = Subject::Unit {
            unit: unit.to_string(),
            image: image.to_path_buf(),
        };
        Diagnostic::new(subject, level, reason, message).leaving_out()
    }

    /// The unit it is about, if it is about one.
    pub fn unit(&self) -> Option<&str> {
        match &self.subject {
            Subject::Unit { unit, .. } => Some(unit),
            _ => None,
        }
    }

    /// The same diagnostic, failing the run.
    pub fn failing(mut self) -> Diagnostic {
        self.fails = true;
        self
    }

    /// The same diagnostic, told as `message` in a dry run.
    pub fn in_dry_run(mut self, message: String) -> Diagnostic {
        self.dry_run_message = Some(Box::new(DryRunLine(message)));
        self
    }

    /// The same diagnostic, saying that its subject is not attached.
    pub fn leaving_out(mut self) -> Diagnostic {
        self.left_out = true;
        self
    }

    /// The same diagnostic, saying that configuration masks its subject.
    pub fn masking(mut self) -> Diagnostic {
        self.left_out = true;
        self.masked = true;
        self
    }

    /// The same diagnostic, failing the run if `fails`.
    pub fn fails_if(mut self, fails: bool) -> Diagnostic {
        self.fails |= fails;
        self
    }
}

/// Diagnostics in the order they arose.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    all: Vec<Diagnostic>,
    /// In place of `all` where only the lines are kept ([`Keep::Logged`]).
    lines: Vec<Line>,
    keep: Keep,
}

/// A diagnostic as a run logs it: its level, whether it fails the run, and its line.
#[derive(Debug, Clone)]
pub struct Line {
    level: Level,
    fails: bool,
    text: Box<str>,
}

/// What a list of diagnostics keeps of each one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Everything, as every command but the generator's run needs: `list` and `inspect`
    /// show subjects and reasons, and debug-level lines.
    #[default]
    All,
    /// Only what [`Diagnostics::log`] shows (the generator's run): the line, its level and
    /// whether it fails; debug-level diagnostics only if `debug`. A run of a thousand images
    /// would otherwise hold a few lines per unit, each with its subject and reason, until
    /// its end (megabytes).
    Logged {
        /// Whether debug-level lines are logged.
        debug: bool,
        /// Whether the lines are those of a dry run.
        dry_run: bool,
    },
}

impl Keep {
    /// Whether debug-level diagnostics are kept: whether to make them at all.
    pub fn debug(self) -> bool {
        matches!(self, Keep::All | Keep::Logged { debug: true, .. })
    }
}

impl Diagnostics {
    /// An empty list that keeps `keep` of each diagnostic.
    pub fn new(keep: Keep) -> Diagnostics {
        Diagnostics {
            all: Vec::new(),
            lines: Vec::new(),
            keep,
        }
    }

    /// What it keeps of each diagnostic.
    pub fn keep(&self) -> Keep {
        self.keep
    }

    /// Add `d` after the others.
    pub fn push(&mut self, d: Diagnostic) {
        match self.keep {
            Keep::All => self.all.push(d),
            Keep::Logged { debug, dry_run } => {
                if d.level == Level::Debug && !debug {
                    return;
                }
                let text = match d.dry_run_message {
                    Some(line) if dry_run => line.0,
                    _ => d.message,
                };
                self.lines.push(Line {
                    level: d.level,
                    fails: d.fails,
                    text: text.into_boxed_str(),
                });
            }
        }
    }

    /// Whether any of them fails the run.
    pub fn failed(&self) -> bool {
        self.all.iter().any(|d| d.fails) || self.lines.iter().any(|l| l.fails)
    }

    /// Log each one, in order: the one place diagnostics become log lines. A dry run says
    /// what it would do where a run says what it did.
    pub fn log(&self, dry_run: bool) {
        for d in &self.all {
            let message: &str = match &d.dry_run_message {
                Some(m) if dry_run => &m.0,
                _ => &d.message,
            };
            log!(d.level, "{message}");
        }
        for l in &self.lines {
            log!(l.level, "{}", l.text);
        }
    }
}

/// The diagnostics kept whole: none where only their lines are ([`Keep::Logged`]).
impl std::ops::Deref for Diagnostics {
    type Target = [Diagnostic];
    fn deref(&self) -> &[Diagnostic] {
        &self.all
    }
}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<I: IntoIterator<Item = Diagnostic>>(&mut self, iter: I) {
        for d in iter {
            self.push(d);
        }
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::iter::Chain<
        std::vec::IntoIter<Diagnostic>,
        std::iter::Map<std::vec::IntoIter<Line>, fn(Line) -> Diagnostic>,
    >;
    fn into_iter(self) -> Self::IntoIter {
        let line: fn(Line) -> Diagnostic = |l| {
            let text = String::from(l.text);
            Diagnostic::new(Subject::Run, l.level, String::new(), text).fails_if(l.fails)
        };
        self.all.into_iter().chain(self.lines.into_iter().map(line))
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.all.iter()
    }
}
