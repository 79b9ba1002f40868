//! Building a case's images from its `build` file with `tests/mkimage` (the real mkfs tools),
//! and the `truncate`, `flip` and `junk` verbs that damage or make files without it.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::io_context;
use super::paths::{is_confined, repo_dir};
use super::run::describe_status;

/// Runs `tests/mkimage KIND OUT ARGS...`; on failure the error holds the tool's output.
pub fn mkimage(kind: &str, out: &Path, args: &[OsString]) -> Result<(), String> {
    let script = repo_dir().join("tests/mkimage");
    let output = Command::new(&script)
        .arg(kind)
        .arg(out)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_context(format!("running {}", script.display()), &e))?;
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
        .map_err(|e| io_context(format!("reading {}", build_file.display()), &e))?;
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
                .map_err(|e| io_context(format!("creating {}", parent.display()), &e))?;
        }
        mkimage(kind, &out, &args).map_err(|e| format!("{}: {e}", at()))?;
    }
    Ok(())
}

pub(super) fn parse_number(word: &str) -> Result<u64, String> {
    let parsed = match word.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => word.parse(),
    };
    parsed.map_err(|_| format!("not a number: {word}"))
}

/// The `truncate`, `flip` and `junk` verbs of a `build` file.
pub(super) fn damage(path: &Path, verb: &str, args: &[&str]) -> Result<(), String> {
    let numbers = args
        .iter()
        .map(|w| parse_number(w))
        .collect::<Result<Vec<_>, _>>()?;
    let io = |e: std::io::Error| io_context(format!("{verb} {}", path.display()), &e);
    match (verb, numbers.as_slice()) {
        ("truncate", [len]) => fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(*len))
            .map_err(io),
        ("flip", offsets) if !offsets.is_empty() => {
            let mut bytes = fs::read(path).map_err(io)?;
            for &off in offsets {
                let byte = usize::try_from(off)
                    .ok()
                    .and_then(|off| bytes.get_mut(off))
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
                    x.to_le_bytes()[0]
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
