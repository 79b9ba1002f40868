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
