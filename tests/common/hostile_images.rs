//! The `build` files of hostile-input cases: mkimage's kinds and the damage verbs, plus
//! verbs that make special files, edit images in place and run the mkfs and debug tools
//! directly, with a scratch directory for trees that must not appear in the root.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::io_context;
use super::gpt::gpt_set;
use super::images::{damage, mkimage, parse_number};
use super::patch::{erofs_set_size, sqfs_file_size, to_usize, write_at};
use super::paths::is_confined;
use super::run::describe_status;

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

/// Like [`build_images`](super::build_images), with more verbs and a scratch directory. DEST
/// (and SRC/TREE arguments) starting with `+` name a path in `scratch` instead of the root:
/// trees for raw images can be put together there from the verbs below, then packed, without
/// appearing in the root. DEST and TEXT words take the escapes of [`unescape`].
///
/// Verbs besides mkimage's kinds and `truncate`/`flip`/`junk`:
/// - `DEST fifo`, `DEST socket` (bound, then closed: the socket file stays),
///   `DEST chardev [MAJOR MINOR]` (default 1 3, /dev/null's), `DEST mkdir`,
///   `DEST remove` (a file, or a directory with its contents), `DEST symlink TARGET`,
///   `DEST write TEXT...` (words joined by one space, no newline
///   added), `DEST big BYTES [TEXT...]` (TEXT, then a hole up to BYTES), `DEST chmod MODE`
///   (octal), `DEST append-seq N PATTERN` (appends PATTERN N times, `{}` in it replaced by
///   the count 000000, 000001, ...), `DEST chain N TARGET`
///   (DEST -> DEST~1 -> ... -> DEST~(N-1) -> TARGET: N links, beside DEST), `DEST copy SRC`;
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
/// - `DEST erofs-set PATH size VALUE`: sets the `i_size` of the inode of PATH in an erofs
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
        .map_err(|e| io_context(format!("reading {}", build_file.display()), &e))?;
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
                .map_err(|e| io_context(format!("creating {}", parent.display()), &e))?;
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
    let io = |e: io::Error| io_context(format!("{verb} {}", out.display()), &e);
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
        // std cannot make a FIFO; mkfifo(3) is this mknodat.
        ("fifo", []) => rustix::fs::mknodat(
            rustix::fs::CWD,
            out,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .map_err(|e| io(e.into())),
        ("socket", []) => {
            let listener = std::os::unix::net::UnixListener::bind(out).map_err(io)?;
            drop(listener);
            Ok(())
        }
        ("chardev", [] | [_, _]) => {
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
            let count = to_usize(parse_number(count)?)?;
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
            write_at(out, offset, &value.to_le_bytes()[..to_usize(width)?])
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
