//! `--settle`: waiting until the search directories and `portables.d` stand still, so that an
//! image still being copied is not read half-written, and telling whether they moved while
//! `apply` ran (a path unit does not see changes while its service runs).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::CONFIG_DIRS;
use crate::discover::SEARCH_PATHS;

/// How long the directories must stand still.
pub const QUIET: Duration = Duration::from_secs(1);
/// How long `apply` waits for that at most; then it goes on with what is there.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often they are looked at meanwhile.
const POLL: Duration = Duration::from_millis(200);
/// Most entries looked at in one stamp: far more than real directories hold.
const MAX_ENTRIES: usize = 16_384;

/// One entry as seen: path, size, inode, whether a directory. Not its times: systemd opens a
/// `RootImage=` writable when it can, and the kernel writes to a mounted ext4 image (and
/// systemd makes mount points in a directory image) for as long as its service runs, so
/// times would never stand still. A copy in progress shows in the size, a file moved into
/// place in the inode.
type Seen = (PathBuf, u64, u64, bool);

/// The state of the watched directories: every entry and the entries of directories in them
/// (image directories, `NAME.raw.v/`), with size and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<Seen>);

/// The directories `apply` watches: every search path and every `portables.d` directory.
pub fn watched() -> impl Iterator<Item = &'static str> {
    SEARCH_PATHS.into_iter().chain(CONFIG_DIRS)
}

/// The stamp of `dirs` now.
pub fn stamp<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Stamp {
    let mut seen = Vec::new();
    for dir in dirs {
        look(dir, 2, &mut seen);
    }
    Stamp(seen)
}

fn look(dir: &Path, depth: u32, seen: &mut Vec<Seen>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in paths {
        if seen.len() >= MAX_ENTRIES {
            return;
        }
        // Through links: an image linked in changes where its target does.
        let Ok(meta) = fs::metadata(&path).or_else(|_| fs::symlink_metadata(&path)) else {
            continue;
        };
        seen.push((path.clone(), meta.len(), meta.ino(), meta.is_dir()));
        if meta.is_dir() && depth > 1 {
            look(&path, depth - 1, seen);
        }
    }
}

/// Wait until `now()` has not changed for `quiet`, at most `max`; whether it settled.
pub fn wait_quiet(now: impl Fn() -> Stamp, quiet: Duration, max: Duration) -> bool {
    let start = Instant::now();
    let mut last = now();
    let mut since = Instant::now();
    loop {
        if since.elapsed() >= quiet {
            return true;
        }
        if start.elapsed() >= max {
            return false;
        }
        thread::sleep(POLL);
        let current = now();
        if current != last {
            last = current;
            since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_sees_new_entries_growing_files_and_inside_image_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let s0 = stamp([d]);
        fs::write(d.join("a.raw"), b"x").unwrap();
        let s1 = stamp([d]);
        assert_ne!(s0, s1);
        fs::write(d.join("a.raw"), b"xy").unwrap();
        let s2 = stamp([d]);
        assert_ne!(s1, s2);
        fs::create_dir(d.join("img")).unwrap();
        let s3 = stamp([d]);
        fs::write(d.join("img/file"), b"1").unwrap();
        assert_ne!(s3, stamp([d]));
        assert_eq!(stamp([d]), stamp([d]));
        assert_eq!(stamp([d.join("missing").as_path()]), Stamp(Vec::new()));
    }

    #[test]
    fn waiting_ends_when_quiet_or_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let quiet = Duration::from_millis(300);
        let t = Instant::now();
        assert!(wait_quiet(
            || stamp([d.as_path()]),
            quiet,
            Duration::from_secs(5)
        ));
        assert!(t.elapsed() >= quiet);
        // Always changing: gives up at the limit.
        let n = std::cell::Cell::new(0u64);
        let busy = || {
            n.set(n.get() + 1);
            Stamp(vec![(PathBuf::from("x"), n.get(), 1, false)])
        };
        let t = Instant::now();
        assert!(!wait_quiet(busy, quiet, Duration::from_millis(900)));
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
