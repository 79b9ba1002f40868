//! Helpers shared by the integration tests: building test roots and images, running the
//! generator binary, reading and comparing trees, and a small line diff.
//!
//! Every test binary that says `mod common;` compiles all of this and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The repository's top directory.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The generator binary cargo built for these tests.
pub fn generator_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portables-generator"))
}

/// Where this project's profiles are installed, relative to the root.
pub const PROFILE_INSTALL_DIR: &str = "usr/lib/portables-generator/profile";

/// Name of the placeholder files that git needs to hold an empty directory in a test tree.
pub const KEEP_FILE: &str = ".keep";

/// Name of the file that marks an expected-empty directory in an `expected/` tree.
pub const EMPTY_MARKER: &str = ".empty";

fn io_context(what: impl std::fmt::Display, e: io::Error) -> String {
    format!("{what}: {e}")
}

/// Copies the tree `src` to `dst` (created, with its parents), keeping symlinks as symlinks
/// and dropping `.keep` files.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), String> {
    fs::create_dir_all(dst).map_err(|e| io_context(format!("creating {}", dst.display()), e))?;
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(|e| io_context(format!("reading {}", src.display()), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io_context(format!("reading {}", src.display()), e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name == KEEP_FILE {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        let meta = fs::symlink_metadata(&from).map_err(|e| io_context(from.display(), e))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(|e| io_context(from.display(), e))?;
            symlink(&target, &to)
                .map_err(|e| io_context(format!("creating {}", to.display()), e))?;
        } else if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)
                .map_err(|e| io_context(format!("copying {}", from.display()), e))?;
        } else {
            return Err(format!(
                "{}: neither file, directory nor symlink",
                from.display()
            ));
        }
    }
    Ok(())
}

/// Runs `tests/mkimage KIND OUT ARGS...`; on failure the error holds the tool's output.
pub fn mkimage(kind: &str, out: &Path, args: &[OsString]) -> Result<(), String> {
    let script = repo_dir().join("tests/mkimage");
    let output = Command::new(&script)
        .arg(kind)
        .arg(out)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_context(format!("running {}", script.display()), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "tests/mkimage {kind} {} {} failed ({}):\n{}{}",
        out.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        describe_status(output.status),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    ))
}

/// Whether `path` is relative and stays below the directory it is joined to.
pub fn is_confined(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Builds the images a case's `build` file asks for. Each line is `DEST KIND ARGS...`: run
/// `tests/mkimage KIND ROOT/DEST ARGS...`, with the tree paths in ARGS taken relative to
/// `case_dir` (for `gpt`, the TREE field of each `TYPE:FSKIND:TREE[:LABEL]`). `#` comments and
/// blank lines are ignored; parent directories of DEST are created.
///
/// Three more KINDs damage or make files for hostile-input cases, without mkimage:
/// `DEST truncate BYTES` cuts DEST to BYTES, `DEST flip OFFSET...` inverts the bytes at the
/// given offsets (decimal, or hex with `0x`), `DEST junk BYTES` writes BYTES of a fixed
/// pseudo-random pattern.
pub fn build_images(case_dir: &Path, build_file: &Path, root: &Path) -> Result<(), String> {
    let text = fs::read_to_string(build_file)
        .map_err(|e| io_context(format!("reading {}", build_file.display()), e))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", build_file.display(), n + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        let [dest, kind, rest @ ..] = words.as_slice() else {
            return Err(format!("{}: expected `DEST KIND ARGS...`", at()));
        };
        if !is_confined(Path::new(dest)) {
            return Err(format!(
                "{}: DEST must be a relative path inside the root: {dest}",
                at()
            ));
        }
        if matches!(*kind, "truncate" | "flip" | "junk") {
            damage(&root.join(dest), kind, rest).map_err(|e| format!("{}: {e}", at()))?;
            continue;
        }
        let resolve = |tree: &str| -> OsString { case_dir.join(tree).into_os_string() };
        let mut args = Vec::new();
        if *kind == "gpt" {
            let mut words = rest.iter();
            while let Some(word) = words.next() {
                if *word == "--sector-size" {
                    args.push(OsString::from(word));
                    args.extend(words.next().map(OsString::from));
                    continue;
                }
                let fields: Vec<&str> = word.splitn(4, ':').collect();
                if fields.len() < 3 {
                    return Err(format!(
                        "{}: partition spec is not TYPE:FSKIND:TREE[:LABEL]: {word}",
                        at()
                    ));
                }
                let mut part = OsString::from(format!("{}:{}:", fields[0], fields[1]));
                part.push(resolve(fields[2]));
                if let Some(label) = fields.get(3) {
                    part.push(format!(":{label}"));
                }
                args.push(part);
            }
        } else {
            args.extend(rest.iter().map(|tree| resolve(tree)));
        }
        let out = root.join(dest);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| io_context(format!("creating {}", parent.display()), e))?;
        }
        mkimage(kind, &out, &args).map_err(|e| format!("{}: {e}", at()))?;
    }
    Ok(())
}

fn parse_number(word: &str) -> Result<u64, String> {
    let parsed = match word.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => word.parse(),
    };
    parsed.map_err(|_| format!("not a number: {word}"))
}

/// The `truncate`, `flip` and `junk` verbs of a `build` file.
fn damage(path: &Path, verb: &str, args: &[&str]) -> Result<(), String> {
    let numbers = args
        .iter()
        .map(|w| parse_number(w))
        .collect::<Result<Vec<_>, _>>()?;
    let io = |e: std::io::Error| io_context(format!("{verb} {}", path.display()), e);
    match (verb, numbers.as_slice()) {
        ("truncate", [len]) => fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(*len))
            .map_err(io),
        ("flip", offsets) if !offsets.is_empty() => {
            let mut bytes = fs::read(path).map_err(io)?;
            for &off in offsets {
                let byte = bytes
                    .get_mut(off as usize)
                    .ok_or_else(|| format!("offset {off} is past the end of {}", path.display()))?;
                *byte ^= 0xff;
            }
            fs::write(path, bytes).map_err(io)
        }
        ("junk", [len]) => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io)?;
            }
            let mut x: u32 = 0x9e37_79b9;
            let bytes: Vec<u8> = (0..*len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            fs::write(path, bytes).map_err(io)
        }
        _ => Err(format!(
            "usage: DEST {verb} {}",
            if verb == "flip" { "OFFSET..." } else { "BYTES" }
        )),
    }
}

/// Reads a `KEY=VALUE` file (blank lines and `#` comments ignored).
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| io_context(format!("reading {}", path.display()), e))?;
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{}:{}: expected KEY=VALUE", path.display(), n + 1));
        };
        vars.push((key.to_owned(), value.to_owned()));
    }
    Ok(vars)
}

/// What a finished generator run left behind.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// `0`, `1`, ... or `killed by signal N`.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("{status}"),
    }
}

/// Runs the generator as `portables-generator --root ROOT ARGS... OUT` with a clean systemd
/// environment: every `SYSTEMD_*` variable of the test process removed,
/// `SYSTEMD_LOG_TARGET=console` and `SYSTEMD_LOG_LEVEL=info` set, then `env` applied. Killed
/// after `timeout`.
pub fn run_generator(
    root: &Path,
    args: &[String],
    out: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<RunOutput, String> {
    let mut cmd = Command::new(generator_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SYSTEMD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("SYSTEMD_LOG_TARGET", "console")
        .env("SYSTEMD_LOG_LEVEL", "info");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.arg("--root").arg(root).args(args).arg(out);
    run_with_timeout(cmd, timeout)
}

/// Runs `cmd` with stdin from /dev/null, collecting stdout and stderr, killing it after
/// `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<RunOutput, String> {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io_context(format!("starting {what}"), e))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| io_context(format!("waiting for {what}"), e))?
        {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} did not finish within {timeout:?}; killed"));
        }
        thread::sleep(Duration::from_millis(5));
    };
    Ok(RunOutput {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Replaces every occurrence of each path (as text) by its placeholder.
pub fn normalize_paths(text: &str, replacements: &[(&Path, &str)]) -> String {
    let mut text = text.to_owned();
    for (path, placeholder) in replacements {
        text = text.replace(&*path.to_string_lossy(), placeholder);
    }
    text
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

fn file_kind(ft: &fs::FileType) -> String {
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
        fs::read_dir(&dir).map_err(|e| io_context(format!("reading {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_context(format!("reading {}", dir.display()), e))?;
        if skip.is_some_and(|s| entry.file_name() == s) {
            continue;
        }
        let rel = rel.join(entry.file_name());
        let path = base.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(|e| io_context(path.display(), e))?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        let node = if ft.is_symlink() {
            Node::Symlink {
                target: fs::read_link(&path).map_err(|e| io_context(path.display(), e))?,
            }
        } else if ft.is_dir() {
            read_tree_into(base, &rel, skip, tree)?;
            Node::Dir { mode }
        } else if ft.is_file() {
            Node::File {
                data: fs::read(&path).map_err(|e| io_context(path.display(), e))?,
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

/// Lists the tree below `dir` (without reading file contents): a snapshot to tell whether
/// anything was created, removed or changed in it.
pub fn list_paths(dir: &Path) -> Result<BTreeMap<PathBuf, String>, String> {
    fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) -> Result<(), String> {
        let dir = base.join(rel);
        for entry in
            fs::read_dir(&dir).map_err(|e| io_context(format!("reading {}", dir.display()), e))?
        {
            let entry = entry.map_err(|e| io_context(format!("reading {}", dir.display()), e))?;
            let rel = rel.join(entry.file_name());
            let path = base.join(&rel);
            let meta = fs::symlink_metadata(&path).map_err(|e| io_context(path.display(), e))?;
            let ft = meta.file_type();
            let desc = if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| io_context(path.display(), e))?;
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
                changes.push(format!("changed: {} ({old} -> {desc})", path.display()))
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

/// Writes `tree` below `dir` (which must not exist yet), putting an `.empty` marker into every
/// directory that would otherwise be empty, including `dir` itself.
pub fn write_tree(tree: &Tree, dir: &Path) -> Result<(), String> {
    let create = |path: &Path| {
        fs::create_dir_all(path).map_err(|e| io_context(format!("creating {}", path.display()), e))
    };
    create(dir)?;
    for (rel, node) in tree {
        let path = dir.join(rel);
        match node {
            Node::Dir { .. } => create(&path)?,
            Node::File { data, .. } => fs::write(&path, data)
                .map_err(|e| io_context(format!("writing {}", path.display()), e))?,
            Node::Symlink { target } => symlink(target, &path)
                .map_err(|e| io_context(format!("creating {}", path.display()), e))?,
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
                .map_err(|e| io_context(format!("writing {}", marker.display()), e))?;
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

/// DESIGN §6: files 0644, directories 0755; nothing but files, directories and symlinks.
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
                problems.push(format!("{}: a {kind} in the output", path.display()))
            }
            _ => {}
        }
    }
    problems
}

/// A unified line diff of two byte strings, or a one-line summary if either is not UTF-8.
pub fn content_diff(old: &[u8], new: &[u8], old_label: &str, new_label: &str) -> String {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(a), Ok(b)) => unified_diff(a, b, old_label, new_label),
        _ => format!(
            "binary contents differ ({} vs {} bytes)\n",
            old.len(),
            new.len()
        ),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Delete,
    Insert,
}

/// The edit script between two line lists: a longest common subsequence after trimming the
/// common head and tail (quadratic, so very long inputs fall back to delete-all, insert-all).
fn diff_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(Op, &'a str)> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut ops: Vec<(Op, &str)> = a[..head].iter().map(|l| (Op::Same, *l)).collect();
    if am.len().saturating_mul(bm.len()) <= 4_000_000 {
        let w = bm.len() + 1;
        let mut lcs = vec![0u32; (am.len() + 1) * w];
        for i in (0..am.len()).rev() {
            for j in (0..bm.len()).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < am.len() && j < bm.len() {
            if am[i] == bm[j] {
                ops.push((Op::Same, am[i]));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                ops.push((Op::Delete, am[i]));
                i += 1;
            } else {
                ops.push((Op::Insert, bm[j]));
                j += 1;
            }
        }
        ops.extend(am[i..].iter().map(|l| (Op::Delete, *l)));
        ops.extend(bm[j..].iter().map(|l| (Op::Insert, *l)));
    } else {
        ops.extend(am.iter().map(|l| (Op::Delete, *l)));
        ops.extend(bm.iter().map(|l| (Op::Insert, *l)));
    }
    ops.extend(a[a.len() - tail..].iter().map(|l| (Op::Same, *l)));
    ops
}

/// A unified diff (3 lines of context) of two texts; empty if they are equal. A last line
/// without a newline is flagged as in `diff -u`.
pub fn unified_diff(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    const CONTEXT: usize = 3;
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = diff_ops(&a, &b);
    let changes: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != Op::Same).collect();

    // Group the changes into hunks: ranges of ops, merged when their context would overlap.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changes {
        let lo = k.saturating_sub(CONTEXT);
        let hi = (k + 1 + CONTEXT).min(ops.len());
        match hunks.last_mut() {
            Some(last) if lo <= last.1 => last.1 = hi,
            _ => hunks.push((lo, hi)),
        }
    }

    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    for (lo, hi) in hunks {
        let old_before = ops[..lo].iter().filter(|(op, _)| *op != Op::Insert).count();
        let new_before = ops[..lo].iter().filter(|(op, _)| *op != Op::Delete).count();
        let old_len = ops[lo..hi]
            .iter()
            .filter(|(op, _)| *op != Op::Insert)
            .count();
        let new_len = ops[lo..hi]
            .iter()
            .filter(|(op, _)| *op != Op::Delete)
            .count();
        let start = |before: usize, len: usize| if len == 0 { before } else { before + 1 };
        let _ = writeln!(
            out,
            "@@ -{},{old_len} +{},{new_len} @@",
            start(old_before, old_len),
            start(new_before, new_len)
        );
        for (op, line) in &ops[lo..hi] {
            out.push(match op {
                Op::Same => ' ',
                Op::Delete => '-',
                Op::Insert => '+',
            });
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
    out
}

// --- Hostile-input cases (tests/hostile.rs) -----------------------------------------------
//
// Everything below is used by the hostile-input harness; nothing above depends on it.

/// Decodes the escapes `\\`, `\n`, `\t`, `\s` (a space) and `\xNN` in a `build` word, so a
/// file name or text can hold any byte (except NUL and, in a name, `/`).
pub fn unescape(word: &str) -> Result<Vec<u8>, String> {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b's') => out.push(b' '),
            Some(b'x') => {
                let hex = word
                    .get(i + 2..i + 4)
                    .ok_or_else(|| format!("short \\x escape in {word:?}"))?;
                out.push(
                    u8::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad \\x escape in {word:?}"))?,
                );
                i += 2;
            }
            _ => return Err(format!("unknown escape in {word:?}")),
        }
        i += 2;
    }
    Ok(out)
}

fn os_path(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(OsString::from_vec(bytes))
}

/// The CRC-32 of IEEE 802.3 (zlib's), as GPT uses it.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (n, slot) in t.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Like [`build_images`], with more verbs and a scratch directory. DEST (and SRC/TREE
/// arguments) starting with `+` name a path in `scratch` instead of the root: trees for raw
/// images can be put together there from the verbs below, then packed, without appearing in
/// the root. DEST and TEXT words take the escapes of [`unescape`].
///
/// Verbs besides mkimage's kinds and `truncate`/`flip`/`junk`:
/// - `DEST fifo`, `DEST socket` (bound, then closed: the socket file stays),
///   `DEST chardev [MAJOR MINOR]` (default 1 3, /dev/null's), `DEST mkdir`,
///   `DEST remove` (a file, or a directory with its contents), `DEST symlink TARGET`,
///   `DEST write TEXT...` (words joined by one space, no newline
///   added), `DEST big BYTES [TEXT...]` (TEXT, then a hole up to BYTES), `DEST chmod MODE`
///   (octal), `DEST append-seq N PATTERN` (appends PATTERN N times, `{}` in it replaced by
///   the count 000000, 000001, ...), `DEST chain N TARGET` (DEST -> DEST~1 -> ... -> DEST~(N-1) -> TARGET: N links,
///   beside DEST), `DEST copy SRC`;
/// - `DEST debugfs CMD...`: `debugfs -w -R "CMD..." DEST`, failing on any error it prints;
/// - `DEST gpt-set FIELD VALUE...`: sets GPT header fields (`revision`, `header_size`,
///   `my_lba`, `alternate_lba`, `first_usable`, `last_usable`, `entries_lba`,
///   `entry_count`, `entry_size`) and entry fields (`partN.first_lba`, `partN.last_lba`,
///   `partN.attrs`, N from 1), then re-signs the entry array CRC (when the array the header
///   now describes lies inside the file) and the header CRC (when its size is sane);
/// - `DEST replace OLD NEW`: replaces the one occurrence of the bytes OLD by NEW (same
///   length), e.g. a file name in an uncompressed directory;
/// - `DEST put OFFSET WIDTH VALUE`: writes VALUE little-endian in WIDTH (1, 2, 4, 8) bytes;
///   `DEST poke OFFSET HEX`: writes the bytes HEX;
/// - `DEST erofs-set PATH size VALUE`: sets the i_size of the inode of PATH in an erofs
///   image (found with `dump.erofs --path`);
/// - `DEST mksquashfs TREE ARGS...`: mksquashfs with extra ARGS (e.g. `-noI` to keep the
///   inode table uncompressed), every file owned by root; `DEST mkfs.erofs TREE ARGS...`
///   likewise (e.g. `-Enoinline_data`); an ARG starting with `+` names a scratch file;
/// - `DEST pseudo-nodes N`: writes a mksquashfs pseudo-definition file (`-pf DEST`) adding
///   N character devices below `many/` in 256 directories, made without touching the disk;
/// - `DEST debugfs-f SCRIPT`: `debugfs -w -f SCRIPT DEST` (SCRIPT in the case directory);
/// - `DEST sqfs-file-size OLD NEW`: in a squashfs built with uncompressed inodes, sets the
///   size of the one basic file inode whose size is OLD.
pub fn build_images_ext(
    case_dir: &Path,
    build_file: &Path,
    root: &Path,
    scratch: &Path,
) -> Result<(), String> {
    let text = fs::read_to_string(build_file)
        .map_err(|e| io_context(format!("reading {}", build_file.display()), e))?;
    let place = |word: &str| -> Result<PathBuf, String> {
        let (base, rel) = match word.strip_prefix('+') {
            Some(rest) => (scratch, rest),
            None => (root, word),
        };
        let rel = os_path(unescape(rel)?);
        if !is_confined(&rel) {
            return Err(format!("not a relative path inside the root: {word}"));
        }
        Ok(base.join(rel))
    };
    let tree = |word: &str| -> OsString {
        match word.strip_prefix('+') {
            Some(rest) => scratch.join(rest).into_os_string(),
            None => case_dir.join(word).into_os_string(),
        }
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", build_file.display(), n + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        let [dest, kind, rest @ ..] = words.as_slice() else {
            return Err(format!("{}: expected `DEST KIND ARGS...`", at()));
        };
        let out = place(dest).map_err(|e| format!("{}: {e}", at()))?;
        if !matches!(
            *kind,
            "truncate" | "flip" | "chmod" | "debugfs" | "gpt-set" | "put" | "poke"
        ) && !matches!(*kind, "erofs-set" | "sqfs-file-size" | "remove")
            && let Some(parent) = out.parent()
        {
            fs::create_dir_all(parent)
                .map_err(|e| io_context(format!("creating {}", parent.display()), e))?;
        }
        let result = match *kind {
            "truncate" | "flip" | "junk" => damage(&out, kind, rest),
            "gpt" => {
                let mut args = Vec::new();
                let mut words = rest.iter();
                while let Some(word) = words.next() {
                    if *word == "--sector-size" {
                        args.push(OsString::from(word));
                        args.extend(words.next().map(OsString::from));
                        continue;
                    }
                    let fields: Vec<&str> = word.splitn(4, ':').collect();
                    if fields.len() < 3 {
                        return Err(format!("{}: bad partition spec: {word}", at()));
                    }
                    let mut part = OsString::from(format!("{}:{}:", fields[0], fields[1]));
                    part.push(tree(fields[2]));
                    if let Some(label) = fields.get(3) {
                        part.push(format!(":{label}"));
                    }
                    args.push(part);
                }
                mkimage(kind, &out, &args)
            }
            "dir" | "ext4" | "squashfs" | "squashfs-zstd" | "erofs" | "erofs-lz4" | "btrfs"
            | "xfs" | "vfat" => {
                let args: Vec<OsString> = rest.iter().map(|t| tree(t)).collect();
                mkimage(kind, &out, &args)
            }
            _ => hostile_verb(&out, kind, rest, &place, &tree),
        };
        result.map_err(|e| format!("{}: {e}", at()))?;
    }
    Ok(())
}

fn hostile_verb(
    out: &Path,
    verb: &str,
    args: &[&str],
    place: &dyn Fn(&str) -> Result<PathBuf, String>,
    tree: &dyn Fn(&str) -> OsString,
) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let io = |e: io::Error| io_context(format!("{verb} {}", out.display()), e);
    let text = || -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        for (i, w) in args.iter().enumerate() {
            if i > 0 {
                bytes.push(b' ');
            }
            bytes.extend(unescape(w)?);
        }
        Ok(bytes)
    };
    match (verb, args) {
        ("fifo", []) => {
            let c =
                std::ffi::CString::new(out.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
            // SAFETY: a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o644) } != 0 {
                return Err(io(io::Error::last_os_error()));
            }
            Ok(())
        }
        ("socket", []) => {
            let listener = std::os::unix::net::UnixListener::bind(out).map_err(io)?;
            drop(listener);
            Ok(())
        }
        ("chardev", []) | ("chardev", [_, _]) => {
            let (major, minor) = match args {
                [a, b] => (*a, *b),
                _ => ("1", "3"),
            };
            run_tool(Command::new("mknod").arg(out).args(["c", major, minor]))
        }
        ("mkdir", []) => fs::create_dir_all(out).map_err(io),
        ("remove", []) => match fs::symlink_metadata(out) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(out).map_err(io),
            Ok(_) => fs::remove_file(out).map_err(io),
            Err(e) => Err(io(e)),
        },
        ("symlink", [target]) => symlink(os_path(unescape(target)?), out).map_err(io),
        ("write", _) => fs::write(out, text()?).map_err(io),
        ("big", [len, ..]) => {
            let len = parse_number(len)?;
            let body = match args.len() {
                1 => Vec::new(),
                _ => {
                    let mut b = Vec::new();
                    for (i, w) in args[1..].iter().enumerate() {
                        if i > 0 {
                            b.push(b' ');
                        }
                        b.extend(unescape(w)?);
                    }
                    b
                }
            };
            fs::write(out, &body).map_err(io)?;
            fs::OpenOptions::new()
                .write(true)
                .open(out)
                .and_then(|f| f.set_len(len))
                .map_err(io)
        }
        ("append-seq", [count, pattern]) => {
            use std::io::Write as _;
            let count = parse_number(count)?;
            let pattern = unescape(pattern)?;
            let mut f = fs::OpenOptions::new().append(true).open(out).map_err(io)?;
            let mut buf = Vec::new();
            for i in 0..count {
                let n = format!("{i:06}");
                let mut k = 0;
                while k < pattern.len() {
                    if pattern[k..].starts_with(b"{}") {
                        buf.extend_from_slice(n.as_bytes());
                        k += 2;
                    } else {
                        buf.push(pattern[k]);
                        k += 1;
                    }
                }
            }
            f.write_all(&buf).map_err(io)
        }
        ("chmod", [mode]) => {
            let mode = u32::from_str_radix(mode, 8).map_err(|_| format!("bad mode {mode}"))?;
            fs::set_permissions(out, fs::Permissions::from_mode(mode)).map_err(io)
        }
        ("chain", [count, target]) => {
            let count = parse_number(count)? as usize;
            let name = out
                .file_name()
                .ok_or("chain needs a file name")?
                .to_os_string();
            let link = |k: usize| -> PathBuf {
                let mut n = name.clone();
                if k > 0 {
                    n.push(format!("~{k}"));
                }
                out.with_file_name(n)
            };
            for k in 0..count {
                let to = if k + 1 == count {
                    os_path(unescape(target)?)
                } else {
                    PathBuf::from(link(k + 1).file_name().unwrap())
                };
                symlink(&to, link(k)).map_err(io)?;
            }
            Ok(())
        }
        ("copy", [src]) => fs::copy(place(src)?, out).map(|_| ()).map_err(io),
        ("debugfs", [_, ..]) => {
            let cmd = args.join(" ");
            let output = Command::new("debugfs")
                .args(["-w", "-R", &cmd])
                .arg(out)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running debugfs: {e}"))?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            // The first line is debugfs' banner; anything else is an error message.
            let complaints: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
                .collect();
            if !output.status.success() || !complaints.is_empty() {
                return Err(format!("debugfs -R {cmd:?} failed:\n{stderr}"));
            }
            Ok(())
        }
        ("gpt-set", [_, _, ..]) if args.len().is_multiple_of(2) => gpt_set(out, args),
        ("put", [offset, width, value]) => {
            let (offset, width, value) = (
                parse_number(offset)?,
                parse_number(width)?,
                parse_number(value)?,
            );
            if ![1, 2, 4, 8].contains(&width) {
                return Err(format!("width {width} is not 1, 2, 4 or 8"));
            }
            if width < 8 && value >> (8 * width) != 0 {
                return Err(format!("{value} does not fit in {width} bytes"));
            }
            write_at(out, offset, &value.to_le_bytes()[..width as usize])
        }
        ("poke", [offset, hex]) => {
            let offset = parse_number(offset)?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| format!("bad hex: {hex}"))
                })
                .collect::<Result<Vec<u8>, _>>()?;
            write_at(out, offset, &bytes)
        }
        ("replace", [old, new]) => {
            let (old, new) = (unescape(old)?, unescape(new)?);
            if old.len() != new.len() || old.is_empty() {
                return Err("replace: OLD and NEW must have the same, non-zero length".into());
            }
            // Images here are small; this reads the whole file.
            let bytes = fs::read(out).map_err(io)?;
            let hits: Vec<usize> = bytes
                .windows(old.len())
                .enumerate()
                .filter(|(_, w)| *w == old.as_slice())
                .map(|(i, _)| i)
                .collect();
            let [at] = hits.as_slice() else {
                return Err(format!("replace: {} occurrences, expected one", hits.len()));
            };
            write_at(out, *at as u64, &new)
        }
        ("erofs-set", [path, "size", value]) => erofs_set_size(out, path, parse_number(value)?),
        ("mksquashfs", [src, extra @ ..]) => {
            let _ = fs::remove_file(out);
            run_tool(
                Command::new("mksquashfs")
                    .arg(tree(src))
                    .arg(out)
                    .args(["-all-root", "-noappend", "-quiet", "-no-progress"])
                    .args(extra.iter().map(|a| scratch_arg(a, tree))),
            )
        }
        ("mkfs.erofs", [src, extra @ ..]) => {
            let _ = fs::remove_file(out);
            run_tool(
                Command::new("mkfs.erofs")
                    .args(["--quiet", "--all-root"])
                    .args(extra.iter().map(|a| scratch_arg(a, tree)))
                    .arg(out)
                    .arg(tree(src)),
            )
        }
        ("debugfs-f", [script]) => {
            let script = tree(script);
            let output = Command::new("debugfs")
                .arg("-w")
                .arg("-f")
                .arg(&script)
                .arg(out)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running debugfs: {e}"))?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            let complaints: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
                .collect();
            if !output.status.success() || !complaints.is_empty() {
                return Err(format!("debugfs -f {script:?} failed:\n{stderr}"));
            }
            Ok(())
        }
        ("pseudo-nodes", [count]) => {
            let count = parse_number(count)?;
            let mut text = String::from("many d 755 0 0\n");
            for d in 0..256 {
                text.push_str(&format!("many/d{d:03} d 755 0 0\n"));
            }
            for i in 0..count {
                text.push_str(&format!("many/d{:03}/n{i:07} c 644 0 0 1 3\n", i % 256));
            }
            fs::write(out, text).map_err(io)
        }
        ("sqfs-file-size", [old, new]) => {
            sqfs_file_size(out, parse_number(old)?, parse_number(new)?)
        }
        _ => Err(format!(
            "unknown verb or wrong arguments: {verb} {}",
            args.join(" ")
        )),
    }
}

/// An extra tool argument: `+PATH` names a file in the scratch directory.
fn scratch_arg(arg: &str, tree: &dyn Fn(&str) -> OsString) -> OsString {
    if arg.starts_with('+') {
        tree(arg)
    } else {
        OsString::from(arg)
    }
}

fn run_tool(cmd: &mut Command) -> Result<(), String> {
    let what = format!("{cmd:?}");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {what}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        describe_status(output.status),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Reads `len` bytes at `offset` (in place: images are never loaded whole).
pub fn read_at(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).map_err(|e| io_context(path.display(), e))?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).map_err(|e| {
        io_context(
            format!("reading {len} bytes at {offset} of {}", path.display()),
            e,
        )
    })?;
    Ok(buf)
}

/// Writes `bytes` at `offset` in place; the offset must lie inside the file.
pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_context(path.display(), e))?;
    let len = f
        .metadata()
        .map_err(|e| io_context(path.display(), e))?
        .len();
    if offset + bytes.len() as u64 > len {
        return Err(format!(
            "writing {} bytes at {offset} runs past the end of {} ({len} bytes)",
            bytes.len(),
            path.display()
        ));
    }
    f.write_all_at(bytes, offset)
        .map_err(|e| io_context(format!("writing {}", path.display()), e))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The `gpt-set` verb: edit, then re-sign what can be re-signed.
fn gpt_set(path: &Path, args: &[&str]) -> Result<(), String> {
    let ss: u64 = if read_at(path, 512, 8)? == b"EFI PART" {
        512
    } else if read_at(path, 4096, 8).is_ok_and(|s| s == b"EFI PART") {
        4096
    } else {
        return Err(format!("no GPT header in {}", path.display()));
    };
    let mut hdr = read_at(path, ss, ss as usize)?;
    // Entries are edited where the original header puts them.
    let (orig_lba, orig_size) = (le_u64(&hdr, 72), u64::from(le_u32(&hdr, 84)));
    for pair in args.chunks(2) {
        let (field, value) = (pair[0], parse_number(pair[1])?);
        let header_field = match field {
            "revision" => Some((8, 4)),
            "header_size" => Some((12, 4)),
            "my_lba" => Some((24, 8)),
            "alternate_lba" => Some((32, 8)),
            "first_usable" => Some((40, 8)),
            "last_usable" => Some((48, 8)),
            "entries_lba" => Some((72, 8)),
            "entry_count" => Some((80, 4)),
            "entry_size" => Some((84, 4)),
            _ => None,
        };
        if let Some((at, width)) = header_field {
            if width == 4 && value > u64::from(u32::MAX) {
                return Err(format!("{field}: {value} does not fit in 32 bits"));
            }
            hdr[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            continue;
        }
        let (part, entry_field) = field
            .strip_prefix("part")
            .and_then(|f| f.split_once('.'))
            .ok_or_else(|| format!("unknown GPT field {field}"))?;
        let number: u64 = part
            .parse()
            .map_err(|_| format!("bad partition number in {field}"))?;
        let at = match entry_field {
            "first_lba" => 32,
            "last_lba" => 40,
            "attrs" => 48,
            _ => return Err(format!("unknown GPT entry field {field}")),
        };
        if number == 0 {
            return Err("partitions are numbered from 1".into());
        }
        let offset = orig_lba * ss + (number - 1) * orig_size + at;
        write_at(path, offset, &value.to_le_bytes())?;
    }
    // The entry array as the header now describes it.
    let (lba, count, size) = (
        le_u64(&hdr, 72),
        u64::from(le_u32(&hdr, 80)),
        u64::from(le_u32(&hdr, 84)),
    );
    let file_len = fs::metadata(path)
        .map_err(|e| io_context(path.display(), e))?
        .len();
    let array_len = count.saturating_mul(size);
    let array_start = lba.saturating_mul(ss);
    if array_len <= 64 << 20 && array_start.saturating_add(array_len) <= file_len {
        let array = read_at(path, array_start, array_len as usize)?;
        hdr[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
    }
    let header_size = u64::from(le_u32(&hdr, 12));
    if (92..=ss).contains(&header_size) {
        hdr[16..20].fill(0);
        let crc = crc32(&hdr[..header_size as usize]);
        hdr[16..20].copy_from_slice(&crc.to_le_bytes());
    }
    write_at(path, ss, &hdr)
}

/// The `erofs-set PATH size VALUE` verb.
fn erofs_set_size(image: &Path, path: &str, value: u64) -> Result<(), String> {
    let output = Command::new("dump.erofs")
        .arg(format!("--path={path}"))
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running dump.erofs: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let nid: u64 = text
        .split_whitespace()
        .skip_while(|w| *w != "NID:")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("dump.erofs --path={path} gave no NID:\n{text}"))?;
    let sb = read_at(image, 1024, 128)?;
    let blkszbits = u32::from(sb[12]);
    let meta_blkaddr = u64::from(le_u32(&sb, 40));
    let inode = (meta_blkaddr << blkszbits) + nid * 32;
    let format = read_at(image, inode, 2)?;
    if format[0] & 1 == 0 {
        // Compact inode: 32-bit size.
        let value = u32::try_from(value).map_err(|_| "a compact inode's size has 32 bits")?;
        write_at(image, inode + 8, &value.to_le_bytes())
    } else {
        write_at(image, inode + 8, &value.to_le_bytes())
    }
}

/// The `sqfs-file-size OLD NEW` verb: finds, in an uncompressed inode table, the basic file
/// inode (type 2) whose size is OLD.
fn sqfs_file_size(image: &Path, old: u64, new: u64) -> Result<(), String> {
    let sb = read_at(image, 0, 96)?;
    let flags = u16::from_le_bytes([sb[24], sb[25]]);
    if flags & 0x1 == 0 {
        return Err("the inode table is compressed (build with mksquashfs -noI)".into());
    }
    let (start, end) = (le_u64(&sb, 64), le_u64(&sb, 72));
    let table = read_at(image, start, (end - start) as usize)?;
    // Metadata blocks: a 2-byte header, then up to 8 KiB.
    let mut inodes = Vec::new();
    let mut map = Vec::new();
    let mut at = 0usize;
    while at + 2 <= table.len() {
        let header = u16::from_le_bytes([table[at], table[at + 1]]);
        let len = usize::from(header & 0x7fff);
        for i in 0..len.min(table.len() - at - 2) {
            inodes.push(table[at + 2 + i]);
            map.push(start + (at + 2 + i) as u64);
        }
        at += 2 + len;
    }
    let old32 = u32::try_from(old).map_err(|_| "OLD must fit in 32 bits")?;
    let new32 = u32::try_from(new).map_err(|_| "NEW must fit in 32 bits (basic inode)")?;
    // Basic file inode: type u16, then 14 bytes of common header, blocks_start, fragment,
    // offset, file_size (at 28).
    let hits: Vec<usize> = (0..inodes.len().saturating_sub(32))
        .filter(|&i| u16::from_le_bytes([inodes[i], inodes[i + 1]]) == 2)
        .filter(|&i| le_u32(&inodes, i + 28) == old32)
        .collect();
    let [hit] = hits.as_slice() else {
        return Err(format!(
            "{} basic file inodes of {old} bytes, expected exactly one",
            hits.len()
        ));
    };
    for (k, b) in new32.to_le_bytes().iter().enumerate() {
        write_at(image, map[hit + 28 + k], &[*b])?;
    }
    Ok(())
}

/// A snapshot of every path below `dir`: type, size, mode, mtime (and link target), without
/// opening anything (FIFOs, sockets and devices are only stat'ed).
pub fn snapshot_meta(dir: &Path) -> Result<BTreeMap<PathBuf, String>, String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) -> Result<(), String> {
        let dir = base.join(rel);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| io_context(format!("reading {}", dir.display()), e))?
            .collect::<Result<_, _>>()
            .map_err(|e| io_context(format!("reading {}", dir.display()), e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel = rel.join(entry.file_name());
            let path = base.join(&rel);
            let m = fs::symlink_metadata(&path).map_err(|e| io_context(path.display(), e))?;
            let ft = m.file_type();
            let kind = if ft.is_symlink() {
                let t = fs::read_link(&path).map_err(|e| io_context(path.display(), e))?;
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
