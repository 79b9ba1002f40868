//! Snapshots of what lies below a directory, without reading file contents, to tell whether
//! a run created, removed or changed anything there.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::io_context;
use super::tree::file_kind;

/// Lists the tree below `dir` (without reading file contents): a snapshot to tell whether
/// anything was created, removed or changed in it.
pub fn list_paths(dir: &Path) -> Result<BTreeMap<PathBuf, String>, String> {
    fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) -> Result<(), String> {
        let dir = base.join(rel);
        for entry in
            fs::read_dir(&dir).map_err(|e| io_context(format!("reading {}", dir.display()), &e))?
        {
            let entry = entry.map_err(|e| io_context(format!("reading {}", dir.display()), &e))?;
            let rel = rel.join(entry.file_name());
            let path = base.join(&rel);
            let meta = fs::symlink_metadata(&path).map_err(|e| io_context(path.display(), &e))?;
            let ft = meta.file_type();
            let desc = if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| io_context(path.display(), &e))?;
                format!("symlink -> {}", target.display())
            } else if ft.is_dir() {
                walk(base, &rel, out)?;
                "directory".to_owned()
            } else if ft.is_file() {
                format!("file of {} bytes", meta.len())
            } else {
                file_kind(&ft)
            };
            out.insert(rel, desc);
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out)?;
    Ok(out)
}

/// What changed between two `list_paths` snapshots, one line per path.
pub fn snapshot_changes(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    let mut changes = Vec::new();
    for (path, desc) in after {
        match before.get(path) {
            None => changes.push(format!("created: {} ({desc})", path.display())),
            Some(old) if old != desc => {
                changes.push(format!("changed: {} ({old} -> {desc})", path.display()));
            }
            Some(_) => {}
        }
    }
    for (path, desc) in before {
        if !after.contains_key(path) {
            changes.push(format!("removed: {} ({desc})", path.display()));
        }
    }
    changes
}

/// A snapshot of every path below `dir`: type, size, mode, mtime (and link target), without
/// opening anything (FIFOs, sockets and devices are only stat'ed).
pub fn snapshot_meta(dir: &Path) -> Result<BTreeMap<PathBuf, String>, String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) -> Result<(), String> {
        let dir = base.join(rel);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| io_context(format!("reading {}", dir.display()), &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| io_context(format!("reading {}", dir.display()), &e))?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let rel = rel.join(entry.file_name());
            let path = base.join(&rel);
            let m = fs::symlink_metadata(&path).map_err(|e| io_context(path.display(), &e))?;
            let ft = m.file_type();
            let kind = if ft.is_symlink() {
                let t = fs::read_link(&path).map_err(|e| io_context(path.display(), &e))?;
                format!("symlink -> {}", t.display())
            } else if ft.is_dir() {
                "directory".to_owned()
            } else if ft.is_file() {
                "file".to_owned()
            } else {
                file_kind(&ft)
            };
            let desc = format!(
                "{kind}, {} bytes, mode {:04o}, mtime {}.{:09}",
                m.len(),
                m.mode() & 0o7777,
                m.mtime(),
                m.mtime_nsec()
            );
            if ft.is_dir() {
                walk(base, &rel, out)?;
            }
            out.insert(rel, desc);
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out)?;
    Ok(out)
}
