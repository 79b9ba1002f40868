//! Trees on disk as values: copying a test tree into a root, reading a tree, writing one
//! back (with `.empty` markers), comparing two, and checking the modes of an output tree.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::diff::content_diff;
use super::error::io_context;
use super::paths::{EMPTY_MARKER, KEEP_FILE};

/// Copies the tree `src` to `dst` (created, with its parents), keeping symlinks as symlinks
/// and dropping `.keep` files.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), String> {
    fs::create_dir_all(dst).map_err(|e| io_context(format!("creating {}", dst.display()), &e))?;
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(|e| io_context(format!("reading {}", src.display()), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io_context(format!("reading {}", src.display()), &e))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        if name == KEEP_FILE {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        let meta = fs::symlink_metadata(&from).map_err(|e| io_context(from.display(), &e))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(|e| io_context(from.display(), &e))?;
            symlink(&target, &to)
                .map_err(|e| io_context(format!("creating {}", to.display()), &e))?;
        } else if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)
                .map_err(|e| io_context(format!("copying {}", from.display()), &e))?;
        } else {
            return Err(format!(
                "{}: neither file, directory nor symlink",
                from.display()
            ));
        }
    }
    Ok(())
}

/// One entry of a tree read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: PathBuf },
    Other { kind: String },
}

impl Node {
    fn kind(&self) -> &str {
        match self {
            Node::Dir { .. } => "directory",
            Node::File { .. } => "file",
            Node::Symlink { .. } => "symlink",
            Node::Other { kind } => kind,
        }
    }

    fn describe(&self) -> String {
        match self {
            Node::Symlink { target } => format!("symlink -> {}", target.display()),
            other => other.kind().to_owned(),
        }
    }
}

/// A tree: every entry below a directory (not the directory itself), by relative path.
pub type Tree = BTreeMap<PathBuf, Node>;

pub(super) fn file_kind(ft: &fs::FileType) -> String {
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    };
    kind.to_owned()
}

/// Reads the tree below `dir` without following symlinks. Entries named `skip` (e.g.
/// `.empty`) are left out.
pub fn read_tree(dir: &Path, skip: Option<&str>) -> Result<Tree, String> {
    let mut tree = Tree::new();
    read_tree_into(dir, Path::new(""), skip, &mut tree)?;
    Ok(tree)
}

fn read_tree_into(
    base: &Path,
    rel: &Path,
    skip: Option<&str>,
    tree: &mut Tree,
) -> Result<(), String> {
    let dir = base.join(rel);
    let entries =
        fs::read_dir(&dir).map_err(|e| io_context(format!("reading {}", dir.display()), &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_context(format!("reading {}", dir.display()), &e))?;
        if skip.is_some_and(|s| entry.file_name() == s) {
            continue;
        }
        let rel = rel.join(entry.file_name());
        let path = base.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(|e| io_context(path.display(), &e))?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        let node = if ft.is_symlink() {
            Node::Symlink {
                target: fs::read_link(&path).map_err(|e| io_context(path.display(), &e))?,
            }
        } else if ft.is_dir() {
            read_tree_into(base, &rel, skip, tree)?;
            Node::Dir { mode }
        } else if ft.is_file() {
            Node::File {
                data: fs::read(&path).map_err(|e| io_context(path.display(), &e))?,
                mode,
            }
        } else {
            Node::Other {
                kind: file_kind(&ft),
            }
        };
        tree.insert(rel, node);
    }
    Ok(())
}

/// Writes `tree` below `dir` (which must not exist yet), putting an `.empty` marker into every
/// directory that would otherwise be empty, including `dir` itself.
pub fn write_tree(tree: &Tree, dir: &Path) -> Result<(), String> {
    let create = |path: &Path| {
        fs::create_dir_all(path).map_err(|e| io_context(format!("creating {}", path.display()), &e))
    };
    create(dir)?;
    for (rel, node) in tree {
        let path = dir.join(rel);
        match node {
            Node::Dir { .. } => create(&path)?,
            Node::File { data, .. } => fs::write(&path, data)
                .map_err(|e| io_context(format!("writing {}", path.display()), &e))?,
            Node::Symlink { target } => symlink(target, &path)
                .map_err(|e| io_context(format!("creating {}", path.display()), &e))?,
            Node::Other { kind } => {
                return Err(format!("cannot record a {kind}: {}", rel.display()));
            }
        }
    }
    let mut empty_dirs = vec![PathBuf::new()];
    empty_dirs.extend(
        tree.iter()
            .filter(|(_, n)| matches!(n, Node::Dir { .. }))
            .map(|(p, _)| p.clone()),
    );
    for rel in empty_dirs {
        let has_children = tree.keys().any(|p| p.parent() == Some(rel.as_path()));
        if !has_children {
            let marker = dir.join(&rel).join(EMPTY_MARKER);
            fs::write(&marker, b"")
                .map_err(|e| io_context(format!("writing {}", marker.display()), &e))?;
        }
    }
    Ok(())
}

/// Compares two trees and describes every difference, with a line diff for files whose
/// contents differ. Modes are compared only if `with_modes`.
pub fn compare_trees(
    old: &Tree,
    new: &Tree,
    old_label: &str,
    new_label: &str,
    with_modes: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let paths: std::collections::BTreeSet<&PathBuf> = old.keys().chain(new.keys()).collect();
    for path in paths {
        let p = path.display();
        let old_path = format!("{old_label}/{p}");
        let new_path = format!("{new_label}/{p}");
        match (old.get(path), new.get(path)) {
            (Some(a), None) => {
                let mut msg = format!(
                    "{p}: {} in {old_label}, missing in {new_label}",
                    a.describe()
                );
                if let Node::File { data, .. } = a {
                    msg.push('\n');
                    msg.push_str(&content_diff(data, b"", &old_path, "/dev/null"));
                }
                problems.push(msg);
            }
            (None, Some(b)) => {
                let mut msg = format!("{p}: {} in {new_label}, not in {old_label}", b.describe());
                if let Node::File { data, .. } = b {
                    msg.push('\n');
                    msg.push_str(&content_diff(b"", data, "/dev/null", &new_path));
                }
                problems.push(msg);
            }
            (Some(a), Some(b)) => match (a, b) {
                (Node::File { data: da, mode: ma }, Node::File { data: db, mode: mb }) => {
                    if da != db {
                        problems.push(format!(
                            "{p}: contents differ\n{}",
                            content_diff(da, db, &old_path, &new_path)
                        ));
                    }
                    if with_modes && ma != mb {
                        problems.push(format!(
                            "{p}: mode {ma:04o} in {old_label}, {mb:04o} in {new_label}"
                        ));
                    }
                }
                (Node::Dir { mode: ma }, Node::Dir { mode: mb }) => {
                    if with_modes && ma != mb {
                        problems.push(format!(
                            "{p}/: mode {ma:04o} in {old_label}, {mb:04o} in {new_label}"
                        ));
                    }
                }
                (Node::Symlink { target: ta }, Node::Symlink { target: tb }) => {
                    if ta != tb {
                        problems.push(format!(
                            "{p}: symlink target differs\n-{}\n+{}",
                            ta.display(),
                            tb.display()
                        ));
                    }
                }
                (a, b) if a == b => {}
                (a, b) => problems.push(format!(
                    "{p}: {} in {old_label}, {} in {new_label}",
                    a.describe(),
                    b.describe()
                )),
            },
            (None, None) => unreachable!(),
        }
    }
    problems
}

/// Checks the output's modes: the generator writes files 0644 and directories 0755 whatever
/// the umask, and nothing but files, directories and symlinks.
pub fn check_output_modes(tree: &Tree) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, node) in tree {
        match node {
            Node::File { mode, .. } if *mode != 0o644 => problems.push(format!(
                "{}: file mode {mode:04o}, expected 0644",
                path.display()
            )),
            Node::Dir { mode } if *mode != 0o755 => problems.push(format!(
                "{}/: directory mode {mode:04o}, expected 0755",
                path.display()
            )),
            Node::Other { kind } => {
                problems.push(format!("{}: a {kind} in the output", path.display()));
            }
            _ => {}
        }
    }
    problems
}
