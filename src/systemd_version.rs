//! Which systemd the output is for: read from systemd's own binary, never by running a
//! program or asking PID 1.
//!
//! The environment systemd gives generators carries no version (`build_generator_environment()`
//! in src/core/manager.c), but PID 1's binary names it twice: its `DT_NEEDED` entry
//! `libsystemd-shared-TAG.so`, where meson's `shared_lib_tag` defaults to the major version
//! (Debian: `252`, `257`; Fedora and Arch set tags that start with it, such as
//! `256.8-1.fc41` and `258-4`), and the format string `"systemd " GIT_VERSION " running in %ssystem
//! mode"` of src/core/main.c (`systemd 252.39-1~deb12u2 running in`).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::host_file::{self, HostReadError};
use crate::image::FsError;
use crate::root::Root;

/// The oldest version whose `portablectl attach` output is reproduced.
pub const OLDEST: u32 = 252;
/// The newest version whose output is known; anything newer is written as this one.
pub const NEWEST: u32 = 260;

/// Where systemd's binary is looked for with `--root`, in order.
pub const BINARIES: [&str; 2] = ["/usr/lib/systemd/systemd", "/lib/systemd/systemd"];

/// How much of a binary is searched: systemd is about 100 KiB on Debian, a few MiB when
/// linked statically; a file beyond this is not it.
const MAX_SCAN_BYTES: u64 = 64 << 20;

/// The version used, and how it was decided, for the log and `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The major version output is written for, within [`OLDEST`]..=[`NEWEST`].
    pub major: u32,
    /// Where it came from.
    pub source: Source,
}

/// Where the systemd version came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--systemd-version N`.
    Option {
        /// N, which may be newer than any version known.
        requested: u32,
    },
    /// Read from this binary (a host path, without `--root`), which names `found`.
    Binary {
        /// The binary read.
        path: PathBuf,
        /// The version it names, which may be outside the versions known.
        found: u32,
    },
    /// Not found: the newest known format, and why.
    Default {
        /// Why no version was found.
        why: String,
    },
}

impl Version {
    /// One sentence for the log and `--dry-run`.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Option { requested } if *requested == self.major => {
                format!("systemd {} (--systemd-version)", self.major)
            }
            Source::Option { requested } => format!(
                "systemd {} (--systemd-version {requested}, newer than any version known: written as the newest)",
                self.major
            ),
            Source::Binary { path, found } if *found == self.major => {
                format!("systemd {} (read from {})", self.major, path.display())
            }
            Source::Binary { path, found } => format!(
                "systemd {} ({} is systemd {found}, {})",
                self.major,
                path.display(),
                if *found < OLDEST {
                    "older than any version supported: written as the oldest"
                } else {
                    "newer than any version known: written as the newest"
                }
            ),
            Source::Default { why } => {
                format!("systemd {} (the newest known format: {why})", self.major)
            }
        }
    }

    /// Whether the version had to be guessed, which deserves a warning.
    pub fn is_guess(&self) -> bool {
        matches!(self.source, Source::Default { .. })
    }
}

/// The version given on the command line: versions older than [`OLDEST`] are refused (their
/// `portablectl` is not reproduced), newer ones are written as [`NEWEST`].
pub fn from_option(requested: u32) -> Result<Version, String> {
    if requested < OLDEST {
        return Err(format!(
            "--systemd-version {requested}: the oldest version supported is {OLDEST}"
        ));
    }
    Ok(Version {
        major: requested.min(NEWEST),
        source: Source::Option { requested },
    })
}

/// The version of the systemd that will read the output: PID 1's binary on the real root
/// (then the installed one, for a `--dry-run` where PID 1 is not systemd), the installed
/// binary below `--root`.
pub fn detect(root: &Root) -> Version {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if root.is_host() {
        candidates.push(PathBuf::from("/proc/1/exe"));
    }
    candidates.extend(BINARIES.iter().map(PathBuf::from));
    let mut why = Vec::new();
    for path in candidates {
        // Below --root, links resolve inside it (ROOT/lib -> /usr/lib is the root's, not
        // this machine's); /proc/1/exe is opened as it is, which works even for a binary
        // replaced since PID 1 started.
        let real = if path.starts_with("/proc") {
            path.clone()
        } else {
            match root.resolve(&path, true) {
                Ok(found) => root.join(&found.path),
                Err(FsError::NotFound | FsError::NotADirectory) => continue,
                Err(e) => {
                    why.push(format!("cannot read {}: {e}", path.display()));
                    continue;
                }
            }
        };
        match scan_file(&real) {
            Ok(Some(found)) => {
                return Version {
                    major: found.clamp(OLDEST, NEWEST),
                    source: Source::Binary { path, found },
                };
            }
            Ok(None) => why.push(format!("{} names no systemd version", path.display())),
            Err(e) if e.is_not_found() => {}
            Err(e) => why.push(format!("cannot read {}: {e}", path.display())),
        }
    }
    if why.is_empty() {
        why.push(format!("no systemd binary at {}", BINARIES.join(" or ")));
    }
    Version {
        major: NEWEST,
        source: Source::Default {
            why: why.join("; "),
        },
    }
}

/// Search a binary for the version it was built as. A FIFO or device in its place is
/// refused without blocking; a giant is searched only as far as `MAX_SCAN_BYTES`.
fn scan_file(path: &Path) -> Result<Option<u32>, HostReadError> {
    let (file, _) = host_file::open_regular(path)?;
    let mut reader = file.take(MAX_SCAN_BYTES);
    let mut scanner = Scanner::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HostReadError::Io(e)),
        };
        scanner.feed(&chunk[..n]);
        if scanner.library.is_some() {
            break;
        }
    }
    Ok(scanner.result())
}

/// The markers searched for, most reliable first: the library name is a `DT_NEEDED` entry of
/// every dynamically linked PID 1; the log format string is there when linked statically too.
const LIBRARY: &[u8] = b"libsystemd-shared-";
const BANNER: &[u8] = b"systemd ";
const BANNER_END: &[u8] = b" running in ";

/// Finds the markers across chunk boundaries by keeping the tail of the previous chunk.
#[derive(Default)]
struct Scanner {
    tail: Vec<u8>,
    library: Option<u32>,
    banner: Option<u32>,
}

/// Longest stretch a marker and its version can span.
const WINDOW: usize = 96;

impl Scanner {
    fn feed(&mut self, chunk: &[u8]) {
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(chunk);
        if self.library.is_none() {
            self.library = find_library(&buf);
        }
        if self.banner.is_none() {
            self.banner = find_banner(&buf);
        }
        let keep = buf.len().min(WINDOW);
        self.tail = buf.split_off(buf.len() - keep);
    }

    fn result(&self) -> Option<u32> {
        self.library.or(self.banner)
    }
}

/// The major version of `libsystemd-shared-MAJOR[.…|-…].so`.
fn find_library(buf: &[u8]) -> Option<u32> {
    find_all(buf, LIBRARY).find_map(|at| {
        let rest = &buf[at + LIBRARY.len()..];
        let major = leading_number(rest)?;
        // Only a complete name: the tag runs up to ".so" within the window.
        let tag_len = rest.iter().take(WINDOW).position(|&b| b == 0)?;
        rest[..tag_len].ends_with(b".so").then_some(major)
    })
}

/// The major version of `systemd MAJOR[.…] running in `.
fn find_banner(buf: &[u8]) -> Option<u32> {
    find_all(buf, BANNER).find_map(|at| {
        let rest = &buf[at + BANNER.len()..];
        let major = leading_number(rest)?;
        let word = rest.iter().take(WINDOW).position(|&b| b == b' ')?;
        rest[word..].starts_with(BANNER_END).then_some(major)
    })
}

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

/// A version number: 3 or 4 digits, not followed by another digit.
fn leading_number(bytes: &[u8]) -> Option<u32> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(3..=4).contains(&digits) {
        return None;
    }
    std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(bytes: &[u8]) -> Option<u32> {
        let mut s = Scanner::default();
        s.feed(bytes);
        s.result()
    }

    #[test]
    fn debian_fedora_arch_tags() {
        // Debian 12 and 13: the tag is the major version.
        assert_eq!(scan(b"\0libsystemd-shared-252.so\0"), Some(252));
        assert_eq!(scan(b"\0libsystemd-shared-257.so\0"), Some(257));
        // Fedora: %{version_no_tilde}-%{release}; Arch: ${pkgver}-${pkgrel}; 256's default
        // was the whole project version.
        assert_eq!(scan(b"\0libsystemd-shared-256.11-1.fc41.so\0"), Some(256));
        assert_eq!(scan(b"\0libsystemd-shared-258-4.so\0"), Some(258));
        assert_eq!(scan(b"\0libsystemd-shared-257.4-1.so\0"), Some(257));
        assert_eq!(scan(b"\0libsystemd-shared-256.2.so\0"), Some(256));
        assert_eq!(scan(b"\0libsystemd-shared-258~rc1-1.so\0"), Some(258));
    }

    #[test]
    fn banner_when_there_is_no_library() {
        assert_eq!(
            scan(b"x\0systemd 252.39-1~deb12u2 running in %ssystem mode (%s)\0"),
            Some(252)
        );
        // The library is preferred to the banner.
        assert_eq!(
            scan(b"systemd 255 running in \0\0libsystemd-shared-256.so\0"),
            Some(256)
        );
    }

    #[test]
    fn near_misses() {
        for bad in [
            &b"libsystemd-shared-.so\0"[..],
            b"libsystemd-shared-25.so\0",
            b"libsystemd-shared-252",
            b"libsystemd-shared-252.so-but-not-ended",
            b"systemd 252 is running in",
            b"systemd running in ",
            b"libsystemd-shared-12345.so\0",
        ] {
            assert_eq!(scan(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn markers_split_across_chunks() {
        let text = b"....\0libsystemd-shared-258.so\0....";
        for cut in 0..text.len() {
            let mut s = Scanner::default();
            s.feed(&text[..cut]);
            s.feed(&text[cut..]);
            assert_eq!(s.result(), Some(258), "cut at {cut}");
        }
    }

    #[test]
    fn detection_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path().to_path_buf());
        let v = detect(&root);
        assert_eq!(v.major, NEWEST);
        assert!(v.is_guess());
        assert!(
            v.describe().contains("no systemd binary"),
            "{}",
            v.describe()
        );

        // A link to an absolute path resolves inside the root, not on this machine.
        std::os::unix::fs::symlink("/usr/lib", dir.path().join("lib")).unwrap();
        assert!(detect(&root).is_guess());
        std::fs::remove_file(dir.path().join("lib")).unwrap();
        std::fs::create_dir_all(dir.path().join("lib/systemd")).unwrap();
        std::fs::write(
            dir.path().join("lib/systemd/systemd"),
            b"\x7fELF\0libsystemd-shared-254.so\0",
        )
        .unwrap();
        let v = detect(&root);
        assert_eq!(v.major, 254);
        assert_eq!(v.describe(), "systemd 254 (read from /lib/systemd/systemd)");

        // /usr/lib comes first; a binary naming no version is said so.
        std::fs::create_dir_all(dir.path().join("usr/lib/systemd")).unwrap();
        std::fs::write(dir.path().join("usr/lib/systemd/systemd"), b"\x7fELF\0").unwrap();
        let v = detect(&root);
        assert_eq!(v.major, 254);
        std::fs::write(
            dir.path().join("usr/lib/systemd/systemd"),
            b"libsystemd-shared-249.so\0",
        )
        .unwrap();
        let v = detect(&root);
        assert_eq!(v.major, OLDEST);
        assert!(
            v.describe().contains("is systemd 249, older"),
            "{}",
            v.describe()
        );
        std::fs::write(
            dir.path().join("usr/lib/systemd/systemd"),
            b"libsystemd-shared-263.so\0",
        )
        .unwrap();
        assert_eq!(detect(&root).major, NEWEST);

        // A FIFO in its place is said so at once, never waited on.
        std::fs::remove_file(dir.path().join("usr/lib/systemd/systemd")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(dir.path().join("usr/lib/systemd/systemd"))
            .status()
            .unwrap();
        assert!(fifo.success());
        let v = detect(&root);
        assert_eq!(v.major, 254);
        std::fs::remove_file(dir.path().join("lib/systemd/systemd")).unwrap();
        let v = detect(&root);
        assert!(v.is_guess());
        assert!(
            v.describe()
                .contains("cannot read /usr/lib/systemd/systemd: not a regular file (a FIFO)"),
            "{}",
            v.describe()
        );
    }

    #[test]
    fn the_installed_systemd_if_any() {
        // Whatever this machine has, detection must not fail or guess wrongly.
        let v = detect(&Root::new(PathBuf::from("/")));
        assert!((OLDEST..=NEWEST).contains(&v.major));
    }

    #[test]
    fn option() {
        assert!(from_option(251).is_err());
        assert_eq!(from_option(255).unwrap().major, 255);
        assert_eq!(
            from_option(255).unwrap().describe(),
            "systemd 255 (--systemd-version)"
        );
        let v = from_option(999).unwrap();
        assert_eq!(v.major, NEWEST);
        assert!(v.describe().contains("999, newer"), "{}", v.describe());
    }
}
