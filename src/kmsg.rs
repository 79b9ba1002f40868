//! Logging as systemd's generators do: to `/dev/kmsg` (syslog is not up yet and PID 1 is
//! waiting for us), falling back to stderr.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::cmdline;
use crate::host_file;
use crate::root::Root;

const IDENT: &str = "portables-generator";

/// Longest message written: the kernel refuses a /dev/kmsg record over about 1 KiB, and a
/// line that long is unreadable anyway.
pub const MAX_MESSAGE_BYTES: usize = 900;

/// Longest value quoted inside a message.
const MAX_QUOTED_BYTES: usize = 120;

/// A value shortened for quoting in a message, cut on a character boundary.
pub fn shorten(s: &str) -> String {
    cut(s, MAX_QUOTED_BYTES, s.len())
}

/// Raw bytes from an image as they can be logged: control characters and bytes that are
/// not UTF-8 as `\xNN`, cut to a length that fits a log line.
pub fn shown(raw: &[u8]) -> String {
    let mut out = String::new();
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                for b in c.to_string().bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    shorten(&out)
}

/// `s` cut to `max` bytes, saying how long the whole (`total` bytes) was.
fn cut(s: &str, max: usize, total: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({total} bytes)", &s[..end])
}

/// A message as it is logged: control characters (terminal escapes, newlines that would
/// forge further lines) written as `\xNN`, and cut to fit one kmsg record.
pub fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_BYTES + 16));
    for c in message.chars() {
        if c.is_control() {
            for b in c.to_string().bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
        if out.len() > MAX_MESSAGE_BYTES * 2 {
            break;
        }
    }
    cut(&out, MAX_MESSAGE_BYTES, message.len())
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Plain messages on stderr, one per line.
    Console,
    /// `/dev/kmsg` if it can be opened, else the console.
    Kmsg,
}

struct Logger {
    level: LevelFilter,
    kmsg: Option<Mutex<File>>,
    /// This process's id, taken once: every line carries it.
    pid: u32,
}

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = sanitize(&record.args().to_string());
        match &self.kmsg {
            Some(kmsg) => {
                let line = format!(
                    "<{}>{IDENT}[{}]: {message}\n",
                    syslog_priority(record.level()),
                    self.pid
                );
                if let Ok(mut f) = kmsg.lock() {
                    // One write per line: kmsg takes each write as one record.
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{message}");
            }
        }
    }

    fn flush(&self) {}
}

/// Parse a systemd log level name or number (`systemd.log_level=`, `$SYSTEMD_LOG_LEVEL`).
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s {
        "emerg" | "alert" | "crit" | "0" | "1" | "2" => LevelFilter::Off,
        "err" | "3" => LevelFilter::Error,
        "warning" | "4" => LevelFilter::Warn,
        "notice" | "info" | "5" | "6" => LevelFilter::Info,
        "debug" | "7" => LevelFilter::Debug,
        _ => return None,
    })
}

/// Parse a log target (`systemd.log_target=`, `$SYSTEMD_LOG_TARGET`).
pub fn parse_target(s: &str) -> Option<Target> {
    match s {
        "console" | "console-prefixed" => Some(Target::Console),
        "kmsg" | "journal-or-kmsg" | "syslog-or-kmsg" | "auto" | "journal" | "syslog" => {
            Some(Target::Kmsg)
        }
        _ => None,
    }
}

/// Log settings from the kernel command line, then the environment, which wins
/// (as systemd's `log_parse_environment()` does for generators).
pub fn settings(
    cmdline: &str,
    env: impl Fn(&str) -> Option<String>,
    default: Target,
) -> (LevelFilter, Target) {
    let mut level = LevelFilter::Info;
    let mut target = default;
    // Each word in turn, as systemd's log.c reads them: the last valid setting wins, an
    // invalid one leaves the one before, and `debug` and `systemd.log_level=` override each
    // other in order.
    for cmdline::Param { key, value } in cmdline::params(cmdline) {
        match value {
            // Only the bare word, compared exactly: `streq(key, "debug") && !value`.
            None if key == "debug" => level = LevelFilter::Debug,
            Some(v) if cmdline::key_eq(&key, "systemd.log_level") => {
                level = parse_level(&v).unwrap_or(level);
            }
            Some(v) if cmdline::key_eq(&key, "systemd.log_target") => {
                target = parse_target(&v).unwrap_or(target);
            }
            _ => {}
        }
    }
    if let Some(l) = env("SYSTEMD_LOG_LEVEL").as_deref().and_then(parse_level) {
        level = l;
    }
    if let Some(t) = env("SYSTEMD_LOG_TARGET").as_deref().and_then(parse_target) {
        target = t;
    }
    (level, target)
}

/// [`settings`] with the kernel command line read from below `root`, never blocking on it
/// (a FIFO in place of `/proc/cmdline`) nor reading more than its cap. The logger is not
/// set up yet, so a command line that cannot be read counts as empty here; the run that
/// follows reads it again and says why.
pub fn settings_below(
    root: &Root,
    env: impl Fn(&str) -> Option<String>,
    default: Target,
) -> (LevelFilter, Target) {
    let cmdline = host_file::kernel_cmdline(root).unwrap_or_default();
    settings(&cmdline, env, default)
}

/// Install the logger. Safe to call once; later calls are ignored.
pub fn init(level: LevelFilter, target: Target) {
    let kmsg = match target {
        Target::Kmsg => OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/kmsg")
            .ok()
            .map(Mutex::new),
        Target::Console => None,
    };
    if log::set_boxed_logger(Box::new(Logger {
        level,
        kmsg,
        pid: std::process::id(),
    }))
    .is_ok()
    {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_safe_line() {
        assert_eq!(sanitize("a\x1b[2Jb\nc"), "a\\x1b[2Jb\\x0ac");
        let long = "é".repeat(1000);
        let s = sanitize(&long);
        assert!(s.len() < MAX_MESSAGE_BYTES + 40, "{}", s.len());
        assert!(s.ends_with("(2000 bytes)"));
        assert_eq!(shorten("short"), "short");
    }

    #[test]
    fn cmdline_then_environment() {
        let none = |_: &str| None;
        assert_eq!(
            settings("quiet", none, Target::Kmsg),
            (LevelFilter::Info, Target::Kmsg)
        );
        assert_eq!(
            settings(
                "systemd.log_level=debug systemd.log_target=console",
                none,
                Target::Kmsg
            ),
            (LevelFilter::Debug, Target::Console)
        );
        assert_eq!(settings("debug", none, Target::Kmsg).0, LevelFilter::Debug);
        let env = |k: &str| (k == "SYSTEMD_LOG_LEVEL").then(|| "warning".to_string());
        assert_eq!(
            settings("systemd.log_level=debug", env, Target::Kmsg).0,
            LevelFilter::Warn
        );
        assert_eq!(
            settings("systemd.log_level=bogus", none, Target::Kmsg).0,
            LevelFilter::Info
        );
    }

    #[test]
    fn cmdline_as_systemd_reads_it() {
        let none = |_: &str| None;
        let level = |cmdline: &str| settings(cmdline, none, Target::Kmsg).0;
        // '-' and '_' are the same in keys, quotes group and go.
        assert_eq!(level("systemd.log-level=debug"), LevelFilter::Debug);
        assert_eq!(level("systemd.log_level=\"debug\""), LevelFilter::Debug);
        assert_eq!(
            settings("systemd.log-target=console", none, Target::Kmsg).1,
            Target::Console
        );
        // Inside a quoted value it is not a setting.
        assert_eq!(level("foo=\"systemd.log_level=debug\""), LevelFilter::Info);
        assert_eq!(level("foo=\"a debug\""), LevelFilter::Info);
        // Only a bare debug.
        assert_eq!(level("debug=0"), LevelFilter::Info);
        assert_eq!(level("rd.debug"), LevelFilter::Info);
        assert_eq!(level("rd.systemd.log_level=debug"), LevelFilter::Info);
        // In order: the last valid one wins.
        assert_eq!(level("debug systemd.log_level=err"), LevelFilter::Error);
        assert_eq!(level("systemd.log_level=err debug"), LevelFilter::Debug);
        assert_eq!(
            level("systemd.log_level=debug systemd.log_level=bogus"),
            LevelFilter::Debug
        );
        // A bare key has no value to set.
        assert_eq!(level("debug systemd.log_level"), LevelFilter::Debug);
    }

    #[test]
    fn cmdline_below_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let none = |_: &str| None;
        assert_eq!(
            settings_below(&root, none, Target::Kmsg).0,
            LevelFilter::Info
        );
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/cmdline"), "ro debug\n").unwrap();
        assert_eq!(
            settings_below(&root, none, Target::Kmsg).0,
            LevelFilter::Debug
        );
        // A FIFO is not waited on: it counts as an empty command line.
        std::fs::remove_file(dir.path().join("proc/cmdline")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(dir.path().join("proc/cmdline"))
            .status()
            .unwrap();
        assert!(fifo.success());
        assert_eq!(
            settings_below(&root, none, Target::Console),
            (LevelFilter::Info, Target::Console)
        );
    }
}
