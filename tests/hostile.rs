//! Hostile inputs: one trial per directory `tests/hostile/NN-what/`, each one threat, so the
//! test list reads as a list of threats. `tests/hostile/README.md` describes a case's files,
//! `tests/hostile/BUGS.md` the bugs the cases found.
//!
//! For each case the runner builds a root holding the hostile input beside two good images
//! (`/var/lib/portables/good1.raw`, squashfs, and `/usr/lib/portables/good2`, a directory)
//! and a marker `/etc/shadow`, runs the real binary as `portables-generator --root ROOT OUT`
//! (`SYSTEMD_LOG_TARGET=console`, `SYSTEMD_LOG_LEVEL=info`) and checks, each check named as
//! `known-failures` lists it:
//! 1. `output`: the good images are attached exactly as in a run without the hostile input
//!    (the output tree equals the baseline's, byte for byte, symlinks by target; nodes of the
//!    hostile image itself only with `allow-extra-output`), and their log lines are there;
//!    `output-size`: at most 10 000 nodes beyond the baseline's; `dropin`: every unit file
//!    emitted has its `NAME.d/20-portable.conf` (without it, it would run on the host);
//!    `marker`: no output file holds the host's `/etc/shadow` (a symlink escaped);
//! 2. `status`: the exit status is 1 (or the case's `expected-status`);
//! 3. `line`: stderr holds the case's `expected-line` (`<root>`, `<out>` for those paths);
//!    `subject`: that line names the hostile input (the `subject` file, else the first DEST
//!    of `build`); `extra-lines`: stderr holds no other line beyond the baseline's (except
//!    those in `extra-lines`); `log-flood`: at most 20 such lines; `log-length`: every line
//!    fits in one `/dev/kmsg` record; `log-control`: no control characters in any line;
//!    a case's `env` file (`KEY=VALUE` lines, e.g. `SYSTEMD_FIRST_BOOT=1`) adds to the
//!    generator's environment;
//! 4. `root`: nothing changed outside the output directory: every path of ROOT and of the
//!    output directory's parent, with type, size, mode and mtime, is the same afterwards;
//! 5. `time`: the run takes at most 2 s; it is killed after 10 s (so a FIFO that blocks
//!    shows as a failure, not a hang);
//! 6. `rss`: its peak resident set stays under 64 MiB.
//!
//! Memory: the child is started with a `pre_exec` hook (`setrlimit(RLIMIT_AS, 4 GiB)` as a
//! guard for the machine, and `PTRACE_TRACEME`), so std forks instead of using vfork. It is
//! reaped with `wait4`, whose `ru_maxrss` is an upper bound: it includes the anonymous pages
//! the harness had when it forked (printed beside it). Being traced with
//! `PTRACE_O_TRACEEXIT`, the child also stops at exit with its memory still mapped, and its
//! `VmHWM` then is its own peak since exec: that is the figure checked (`ru_maxrss` where ptrace
//! is not permitted). Runs are serialised, so times are not those of a neighbour's mkfs, and
//! the output directory is on /dev/shm (tmpfs, as /run is) when there is one.
//!
//! `UPDATE_HOSTILE=1 cargo test --test hostile [NAME]` records `expected-line` from a run that
//! printed exactly one line more than the baseline (review with `git diff`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Node, PROFILE_INSTALL_DIR, Tree, build_images_ext, check_output_modes, compare_trees,
    copy_tree, describe_status, generator_bin, mkimage, normalize_paths, read_tree, repo_dir,
    snapshot_meta,
};
use libtest_mimic::{Arguments, Failed, Trial};

const TIME_LIMIT: Duration = Duration::from_secs(2);
const KILL_AFTER: Duration = Duration::from_secs(10);
const RSS_LIMIT_KIB: i64 = 64 * 1024;
/// `RLIMIT_AS` of the generator in these runs: a guard for the machine, not a check.
const ADDRESS_SPACE_LIMIT: libc::rlim_t = 4 << 30;
/// The longest log line that fits in one /dev/kmsg record: the kernel refuses (EINVAL)
/// writes over 1024 bytes (`LOG_LINE_MAX` is 1024 - 32 on older kernels), and this leaves
/// room for the `<N>portables-generator[PID]: ` prefix and the newline.
const MAX_LOG_LINE: usize = 960;
/// More new log lines than this for one hostile input is a flood.
const MAX_NEW_LINES: usize = 20;
/// More output nodes than this for one hostile input is a resource exhaustion.
const MAX_EXTRA_NODES: usize = 10_000;
/// What the host's `/etc/shadow` holds: an os-release and a unit body at once, so that an
/// escape that reads it would attach something and show up in the output.
const MARKER: &str = "HOSTILE-MARKER-SHADOW";
const SHADOW: &str =
    "ID=hostile-marker-shadow\n# HOSTILE-MARKER-SHADOW\n[Service]\nExecStart=/bin/true\n";

fn main() {
    // Big buffers (images read by the `flip` verb, ...) are mmapped and unmapped when freed,
    // and few arenas are kept: a forked generator starts with the harness's resident pages.
    // Set before any thread exists.
    portables_test_sys::tune_allocator();
    let args = Arguments::from_args();
    let dir = repo_dir().join("tests/hostile");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("reading tests/hostile").path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.as_bytes().first().is_some_and(u8::is_ascii_digit))
        })
        .collect();
    cases.sort();
    let trials = cases
        .into_iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Trial::test(name, move || run_case(&dir).map_err(Failed::from))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    print_summary();
    conclusion.exit();
}

fn update_mode() -> bool {
    std::env::var_os("UPDATE_HOSTILE").is_some_and(|v| v == "1")
}

// --- What every case shares ---------------------------------------------------------------

/// The template root (host files, profiles, the two good images) and the baseline run.
struct Base {
    template: PathBuf,
    tree: Tree,
    lines: Vec<String>,
}

fn base() -> Result<&'static Base, String> {
    static BASE: OnceLock<Result<Base, String>> = OnceLock::new();
    BASE.get_or_init(make_base).as_ref().map_err(Clone::clone)
}

fn make_base() -> Result<Base, String> {
    let tmp = tempfile::Builder::new()
        .prefix("hostile-base-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    // Kept until the process ends: every case copies from it.
    let dir = fs::canonicalize(tmp.keep()).map_err(|e| e.to_string())?;
    let template = dir.join("template");
    let trees = repo_dir().join("tests/hostile/trees");
    let write = |rel: &str, text: &str| -> Result<(), String> {
        let p = template.join(rel);
        fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
        fs::write(&p, text).map_err(|e| format!("writing {}: {e}", p.display()))
    };
    write(
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
    )?;
    write("etc/shadow", SHADOW)?;
    copy_tree(
        &repo_dir().join("profiles"),
        &template.join(PROFILE_INSTALL_DIR),
    )?;
    for d in ["var/lib/portables", "usr/lib/portables"] {
        fs::create_dir_all(template.join(d)).map_err(|e| e.to_string())?;
    }
    mkimage(
        "squashfs",
        &template.join("var/lib/portables/good1.raw"),
        &[trees.join("good1").into_os_string()],
    )?;
    mkimage(
        "dir",
        &template.join("usr/lib/portables/good2"),
        &[trees.join("good2").into_os_string()],
    )?;

    let root = dir.join("baseline/root");
    copy_tree(&template, &root)?;
    let work = dir.join("baseline/work");
    let out = work.join("out");
    fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let work = dir.join("baseline");
    let (stdout, stderr) = (work.join("stdout"), work.join("stderr"));
    let run = run_measured(&root, &out, (&stdout, &stderr), None, &[])?;
    let log = normalize_paths(
        &String::from_utf8_lossy(&fs::read(&stderr).map_err(|e| e.to_string())?),
        &[(&root, "<root>"), (&out, "<out>")],
    );
    if run.status.code() != Some(0) {
        return Err(format!(
            "the baseline run (good images only) ended with {}:\n{log}",
            describe_status(run.status)
        ));
    }
    let tree = read_tree(&out, None)?;
    for want in ["good1.service", "good2.service"] {
        if !tree.contains_key(Path::new(want)) {
            return Err(format!("the baseline run did not emit {want}:\n{log}"));
        }
    }
    println!(
        "baseline: {:.3} s, {}",
        run.elapsed.as_secs_f64(),
        run.describe_memory()
    );
    Ok(Base {
        template,
        tree,
        lines: log.lines().map(str::to_owned).collect(),
    })
}

// --- Running the generator ----------------------------------------------------------------

/// Runs are serialised, so that the time measured is the generator's and not that of a
/// neighbour's mkfs.
static RUN_LOCK: Mutex<()> = Mutex::new(());

struct Measured {
    status: ExitStatus,
    elapsed: Duration,
    /// `ru_maxrss` from wait4: an upper bound (see the top of this file).
    maxrss_kib: i64,
    /// `VmHWM` read when the traced child stopped at exit: its own peak; None where ptrace
    /// is not permitted.
    hwm_kib: Option<i64>,
    harness_anon_kib: i64,
    killed: bool,
}

fn mib(kib: i64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The harness's own anonymous resident memory, which a forked child starts with.
fn harness_anon_kib() -> i64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1)
}

/// Runs `portables-generator --root ROOT OUT` as the golden tests do (only
/// `SYSTEMD_LOG_TARGET=console` and `SYSTEMD_LOG_LEVEL=info` of the `SYSTEMD_*` variables,
/// and those of the case's `env`), reaping it with `wait4` for its peak RSS. Its stdout and stderr go to the files `logs`
/// names (not into the harness's memory: some cases log tens of megabytes). `mutate` runs
/// beside it until it ends.
fn run_measured(
    root: &Path,
    out: &Path,
    logs: (&Path, &Path),
    mutate: Option<&Mutation>,
    env: &[(String, String)],
) -> Result<Measured, String> {
    let file = |p: &Path| fs::File::create(p).map_err(|e| format!("creating {}: {e}", p.display()));
    let (stdout, stderr) = (file(logs.0)?, file(logs.1)?);
    let mut cmd = Command::new(generator_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SYSTEMD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("SYSTEMD_LOG_TARGET", "console")
        .env("SYSTEMD_LOG_LEVEL", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--root")
        .arg(root)
        .arg(out)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // A pre_exec hook: std forks instead of using vfork, so that ru_maxrss does not count the
    // harness's peak. The address-space limit keeps a runaway allocation from taking the test
    // machine down; it is far above RSS_LIMIT_KIB. Traced, the child stops at exit with its
    // memory still there, for VmHWM; where ptrace is not allowed, only ru_maxrss is measured.
    portables_test_sys::limit_and_trace(&mut cmd, ADDRESS_SPACE_LIMIT);

    let _serial = RUN_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let stop = Arc::new(AtomicBool::new(false));
    let mutator = mutate.map(|m| {
        let (m, stop) = (m.clone(), stop.clone());
        thread::spawn(move || m.run(&stop))
    });
    // Give freed heap pages back first: a forked child starts with the harness's pages.
    portables_test_sys::trim_heap();
    let harness_anon_kib = harness_anon_kib();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", generator_bin().display()))?;
    let mut killed = false;
    let mut traced = false;
    let mut hwm_kib = None;
    let (waited, elapsed) = loop {
        match portables_test_sys::try_wait4(&child) {
            Ok(Some(w)) => {
                // A ptrace stop: after exec (the first SIGTRAP), at exit, or a signal.
                let Some(sig) = w.status.stopped_signal() else {
                    break (w, start.elapsed());
                };
                let event = w.status.into_raw() >> 16;
                let mut deliver = 0;
                if sig == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXIT {
                    hwm_kib = vm_hwm_kib(child.id());
                } else if sig == libc::SIGTRAP && !traced {
                    traced = true;
                    let _ = portables_test_sys::ptrace_set_exit_options(&child);
                } else {
                    deliver = sig;
                }
                // Errors are left to wait4: they mean the child is gone (killed).
                let _ = portables_test_sys::ptrace_cont(&child, deliver);
                continue;
            }
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("wait4: {e}")),
        }
        if start.elapsed() > KILL_AFTER && !killed {
            // SIGKILL: std sends it, as it has not reaped the child.
            let _ = child.kill();
            killed = true;
        }
        thread::sleep(Duration::from_millis(1));
    };
    // Reaped by wait4: std's handle must not wait again.
    drop(child);
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = mutator {
        t.join().map_err(|_| "the mutator thread panicked")??;
    }
    Ok(Measured {
        status: waited.status,
        elapsed,
        maxrss_kib: waited.maxrss_kib,
        hwm_kib,
        harness_anon_kib,
        killed,
    })
}

impl Measured {
    /// The generator's own peak if it could be read at its exit, else the upper bound.
    fn peak_kib(&self) -> i64 {
        self.hwm_kib.unwrap_or(self.maxrss_kib)
    }

    fn describe_memory(&self) -> String {
        match self.hwm_kib {
            Some(hwm) => format!(
                "peak RSS {} (VmHWM at exit; ru_maxrss {}, harness {} at fork)",
                mib(hwm),
                mib(self.maxrss_kib),
                mib(self.harness_anon_kib)
            ),
            None => format!(
                "peak RSS {} (ru_maxrss, an upper bound: harness {} at fork)",
                mib(self.maxrss_kib),
                mib(self.harness_anon_kib)
            ),
        }
    }
}

/// The peak resident set of the process `pid`'s current memory (since its exec).
fn vm_hwm_kib(pid: u32) -> Option<i64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

// --- Images changed while being read -------------------------------------------------------

/// A case's `mutate` file: `cut DEST` rewrites DEST over and over, cut at ever other lengths
/// in between; `swap DEST ALT` exchanges DEST and ALT (e.g. a file and a FIFO) by renames.
#[derive(Clone)]
enum Mutation {
    Cut { path: PathBuf, bytes: Arc<Vec<u8>> },
    Swap { a: PathBuf, b: PathBuf },
}

impl Mutation {
    fn parse(text: &str, root: &Path) -> Result<Mutation, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["cut", dest] => {
                let path = root.join(dest);
                let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(Mutation::Cut {
                    path,
                    bytes: Arc::new(bytes),
                })
            }
            ["swap", a, b] => Ok(Mutation::Swap {
                a: root.join(a),
                b: root.join(b),
            }),
            _ => Err(format!(
                "mutate: expected `cut DEST` or `swap DEST ALT`: {text}"
            )),
        }
    }

    /// Paths the mutation itself changes (and their directories' mtimes).
    fn touched(&self) -> Vec<PathBuf> {
        match self {
            Mutation::Cut { path, .. } => vec![path.clone()],
            Mutation::Swap { a, b } => {
                let mut v = vec![a.clone(), b.clone()];
                v.extend(a.parent().map(Path::to_path_buf));
                v.extend(b.parent().map(Path::to_path_buf));
                v
            }
        }
    }

    fn run(&self, stop: &AtomicBool) -> Result<(), String> {
        let mut round = 0u64;
        match self {
            Mutation::Cut { path, bytes } => {
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let len = bytes.len() as u64;
                while !stop.load(Ordering::Relaxed) {
                    // Cut points walk through the whole file, 509 bytes apart (a prime, so
                    // they fall on every alignment), then the whole image comes back.
                    let cut = (round * 509) % len.max(1);
                    f.set_len(cut).map_err(|e| e.to_string())?;
                    thread::yield_now();
                    f.write_all_at(bytes, 0).map_err(|e| e.to_string())?;
                    round += 1;
                }
                // Leave it whole.
                f.set_len(len).map_err(|e| e.to_string())?;
                f.write_all_at(bytes, 0).map_err(|e| e.to_string())?;
            }
            Mutation::Swap { a, b } => {
                let tmp = a.with_extension("swap-tmp");
                let swap = || -> std::io::Result<()> {
                    fs::rename(a, &tmp)?;
                    fs::rename(b, a)?;
                    fs::rename(&tmp, b)
                };
                while !stop.load(Ordering::Relaxed) {
                    swap().map_err(|e| e.to_string())?;
                    round += 1;
                }
                if round % 2 == 1 {
                    swap().map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }
}

// --- One case ------------------------------------------------------------------------------

struct Outcome {
    name: String,
    line: String,
    elapsed: Duration,
    peak_kib: i64,
    maxrss_kib: i64,
    status: String,
    bug: Option<String>,
    known: Vec<String>,
    passed: bool,
}

static OUTCOMES: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());

fn read_optional(path: &Path) -> Result<Option<String>, String> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// The case's `env` file: `KEY=VALUE` lines (`#` comments) added to the generator's
/// environment, for inputs only some boots read (`SYSTEMD_FIRST_BOOT=1`: preset files).
fn case_env(case: &Path) -> Result<Vec<(String, String)>, String> {
    let Some(text) = read_optional(&case.join("env"))? else {
        return Ok(Vec::new());
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("env: expected `KEY=VALUE`: {l}"))
        })
        .collect()
}

/// The path the expected line must name: the case's `subject` file, else the first DEST of
/// its `build` file that is in the root, as the booted system would see it.
fn subject(case: &Path) -> Result<String, String> {
    if let Some(s) = read_optional(&case.join("subject"))? {
        return Ok(s.trim().to_owned());
    }
    let build = read_optional(&case.join("build"))?.unwrap_or_default();
    build
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .find(|d| !d.starts_with('+'))
        .map(|d| {
            let bytes = common::unescape(d).unwrap_or_default();
            format!("/{}", String::from_utf8_lossy(&bytes))
        })
        .ok_or_else(|| "no `subject` file and no DEST in `build`".to_owned())
}

/// Whether `line` matches `pattern`, where `*` stands for any text (possibly empty).
fn glob(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || line.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &line[first.len()..];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// `expected-line` (one line; the exit status is `expected-status`, default 1), then
/// `allowed-lines` for nondeterministic cases: lines `STATUS LINE`, any one of which, with
/// that exit status, is accepted instead. Lines of `allowed-lines` may hold `*` globs.
fn allowed_outcomes(case: &Path) -> Result<Vec<(i32, String)>, String> {
    let status: i32 = match read_optional(&case.join("expected-status"))? {
        Some(t) => t
            .trim()
            .parse()
            .map_err(|e| format!("expected-status: {e}"))?,
        None => 1,
    };
    let mut v = Vec::new();
    if let Some(line) = read_optional(&case.join("expected-line"))? {
        let line = line.strip_suffix('\n').unwrap_or(&line);
        if line.contains('\n') {
            return Err("expected-line holds more than one line".into());
        }
        v.push((status, line.to_owned()));
    }
    if let Some(text) = read_optional(&case.join("allowed-lines"))? {
        for l in text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let (s, line) = l
                .split_once(' ')
                .ok_or_else(|| format!("allowed-lines: expected `STATUS LINE`: {l}"))?;
            v.push((
                s.parse().map_err(|e| format!("allowed-lines: {e}"))?,
                line.to_owned(),
            ));
        }
    }
    Ok(v)
}

/// The names of the checks, as `known-failures` lists them.
const CHECKS: [&str; 14] = [
    "output",      // 1: the good images exactly as in the baseline
    "output-size", // 1: at most MAX_EXTRA_NODES more nodes than the baseline
    "dropin",      // 1: every emitted unit has its 20-portable.conf
    "marker",      // 1: no output holds the host's /etc/shadow
    "status",      // 2
    "line",        // 3: the expected line is there
    "subject",     // 3: it names the hostile input
    "extra-lines", // 3: no other new line
    "log-flood",   // 3: at most MAX_NEW_LINES new lines
    "log-length",  // 3: every line fits in a /dev/kmsg record
    "log-control", // 3: no control characters in log lines
    "root",        // 4: nothing changed outside the output directory
    "time",        // 5 and 7
    "rss",         // 6
];

fn run_case(case: &Path) -> Result<(), String> {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let base = base()?;
    let case_start = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("hostile-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let dir = fs::canonicalize(tmp.path()).map_err(|e| e.to_string())?;
    let root = dir.join("root");
    let scratch = dir.join("scratch");
    // The output directory lives on a tmpfs when there is one, as /run/systemd/generator
    // does: some cases make tens of thousands of entries, slow to remove from a disk.
    let work_tmp = match tempfile::Builder::new()
        .prefix("hostile-out-")
        .tempdir_in("/dev/shm")
    {
        Ok(t) => t,
        Err(_) => tempfile::Builder::new()
            .prefix("hostile-out-")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?,
    };
    let work = fs::canonicalize(work_tmp.path()).map_err(|e| e.to_string())?;
    let out = work.join("out");
    for d in [&scratch, &out] {
        fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    // What another generator wrote into the output directory before this one ran.
    let preexisting: Vec<PathBuf> = if case.join("out").is_dir() {
        copy_tree(&case.join("out"), &out)?;
        read_tree(&out, None)?.keys().cloned().collect()
    } else {
        Vec::new()
    };

    copy_tree(&base.template, &root)?;
    if case.join("root").is_dir() {
        copy_tree(&case.join("root"), &root)?;
    }
    if case.join("build").exists() {
        build_images_ext(case, &case.join("build"), &root, &scratch)?;
    }
    // The scratch trees are not needed any more; a big one would only slow the snapshots.
    let _ = fs::remove_dir_all(&scratch);
    let mutation = read_optional(&case.join("mutate"))?
        .map(|t| Mutation::parse(&t, &root))
        .transpose()?;
    let subject = subject(case)?;
    let allowed = allowed_outcomes(case)?;
    let bug = read_optional(&case.join("bug"))?.map(|b| b.trim().to_owned());
    let known: Vec<String> = read_optional(&case.join("known-failures"))?
        .map(|t| t.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(k) = known.iter().find(|k| !CHECKS.contains(&k.as_str())) {
        return Err(format!("known-failures: no check named {k}"));
    }
    if !known.is_empty() && bug.is_none() {
        return Err("known-failures without a `bug` file saying what is wrong".into());
    }
    let extra_ok: Vec<String> = read_optional(&case.join("extra-lines"))?
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    let allow_extra_output = case.join("allow-extra-output").exists();

    let build_time = case_start.elapsed();
    let (stdout_file, stderr_file) = (dir.join("stdout"), dir.join("stderr"));
    let root_before = snapshot_meta(&root)?;
    let work_before = snapshot_meta(&work)?;
    let env = case_env(case)?;
    let run = run_measured(
        &root,
        &out,
        (&stdout_file, &stderr_file),
        mutation.as_ref(),
        &env,
    );
    let root_after = snapshot_meta(&root)?;
    let work_after = snapshot_meta(&work)?;
    let run = run?;

    // (check, what is wrong)
    let mut problems: Vec<(&str, String)> = Vec::new();
    let log = scan_log(&stderr_file, &root, &out, &base.lines, &allowed, &extra_ok)?;

    // 1. The good images, exactly as in the baseline; nothing else unless allowed. What was
    // there before is not this generator's (but anything added inside it is).
    let mut tree = read_tree(&out, None)?;
    tree.retain(|p, _| !preexisting.contains(p));
    let extra_nodes: Vec<PathBuf> = tree
        .keys()
        .filter(|p| !base.tree.contains_key(*p))
        .cloned()
        .collect();
    if extra_nodes.len() > MAX_EXTRA_NODES {
        problems.push((
            "output-size",
            format!(
                "{} output nodes beyond the baseline's (more than {MAX_EXTRA_NODES})",
                extra_nodes.len()
            ),
        ));
    }
    for (path, node) in &tree {
        if let Node::File { data, .. } = node
            && String::from_utf8_lossy(data).contains(MARKER)
        {
            problems.push((
                "marker",
                format!(
                    "{} holds the host's /etc/shadow marker: a symlink escaped the image",
                    path.display()
                ),
            ));
        }
        // A unit without its drop-in would run on the host, outside the image.
        let is_unit = path.parent() == Some(Path::new(""))
            && matches!(node, Node::File { .. })
            && path.extension().is_some()
            && path != Path::new("portables-reattach.service");
        if is_unit {
            let mut dropin = path.as_os_str().to_owned();
            dropin.push(".d/20-portable.conf");
            if !tree.contains_key(Path::new(&dropin)) {
                problems.push((
                    "dropin",
                    format!(
                        "{} is emitted without {}: it would run on the host, unconfined",
                        path.display(),
                        Path::new(&dropin).display()
                    ),
                ));
            }
        }
    }
    for p in check_output_modes(&tree) {
        problems.push(("output", format!("output mode: {p}")));
    }
    if allow_extra_output {
        for p in &extra_nodes {
            tree.remove(p);
        }
    }
    let mut diffs = compare_trees(&base.tree, &tree, "baseline", "actual", false);
    if diffs.len() > 20 {
        let n = diffs.len();
        diffs.truncate(20);
        diffs.push(format!("... and {} more differences", n - 20));
    }
    if !diffs.is_empty() {
        problems.push((
            "output",
            format!(
                "the output differs from the baseline (good images only):\n{}",
                diffs.join("\n")
            ),
        ));
    }

    // 2 and 3. Exit status and the one line.
    let code = run.status.code();
    let got = log.got.clone();
    let mut recorded = false;
    match &got {
        Some((status, line)) => {
            if code != Some(*status) {
                problems.push((
                    "status",
                    format!(
                        "expected exit status {status}, got {}",
                        describe_status(run.status)
                    ),
                ));
            }
            if !line.contains(&subject) {
                problems.push((
                    "subject",
                    format!("the expected line does not name {subject}"),
                ));
            }
        }
        None if update_mode() && log.new_count == 1 => {
            fs::write(
                case.join("expected-line"),
                format!("{}\n", log.new_lines[0]),
            )
            .map_err(|e| e.to_string())?;
            println!("{name}: recorded expected-line: {}", log.new_lines[0]);
            recorded = true;
        }
        None => problems.push((
            "line",
            match allowed.first() {
                Some((_, l)) => format!("stderr lacks the expected line:\n  {l}"),
                None => "expected-line is not recorded yet (UPDATE_HOSTILE=1 records it)".into(),
            },
        )),
    }
    if log.unexpected_count > 0 && !recorded {
        let mut shown: Vec<String> = log.unexpected.iter().map(|l| shorten(l)).collect();
        if log.unexpected_count > shown.len() {
            shown.push(format!("... {} more", log.unexpected_count - shown.len()));
        }
        problems.push((
            "extra-lines",
            format!(
                "lines beyond the baseline's and the expected one:\n  {}",
                shown.join("\n  ")
            ),
        ));
    }
    if log.new_count > MAX_NEW_LINES {
        problems.push((
            "log-flood",
            format!(
                "{} new log lines for one hostile input (more than {MAX_NEW_LINES}), {} bytes",
                log.new_count, log.new_bytes
            ),
        ));
    }
    if let Some((len, l)) = &log.long_line {
        problems.push((
            "log-length",
            format!(
                "a log line of {len} bytes: /dev/kmsg refuses it whole (EINVAL), it is lost:\n  {l}"
            ),
        ));
    }
    if let Some(l) = &log.control_line {
        problems.push((
            "log-control",
            format!(
                "a log line holds control characters (terminal escapes reach the console):\n  {l}"
            ),
        ));
    }
    let missing: Vec<&str> = base
        .lines
        .iter()
        .zip(&log.base_seen)
        .filter(|(_, seen)| !**seen)
        .map(|(l, _)| l.as_str())
        .collect();
    if !missing.is_empty() {
        problems.push((
            "output",
            format!("baseline lines missing:\n  {}", missing.join("\n  ")),
        ));
    }
    let stdout_len = fs::metadata(&stdout_file).map_or(0, |m| m.len());
    if stdout_len > 0 {
        problems.push(("extra-lines", format!("{stdout_len} bytes on stdout")));
    }

    // 4. Nothing but the output directory changed.
    let touched: Vec<PathBuf> = mutation
        .as_ref()
        .map(|m| {
            m.touched()
                .into_iter()
                .filter_map(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
                .collect()
        })
        .unwrap_or_default();
    let mut changes = diff_snapshots(&root_before, &root_after, "ROOT", |p| {
        touched.iter().any(|t| t == p)
    });
    changes.extend(diff_snapshots(&work_before, &work_after, "OUT/..", |p| {
        p.starts_with("out")
    }));
    if !changes.is_empty() {
        problems.push((
            "root",
            format!(
                "paths outside the output directory changed:\n  {}",
                changes.join("\n  ")
            ),
        ));
    }

    // 5 and 6. Time and memory.
    if run.killed {
        problems.push((
            "time",
            format!("still running after {KILL_AFTER:?}: killed (it blocks or loops)"),
        ));
    } else if run.elapsed > TIME_LIMIT {
        problems.push((
            "time",
            format!(
                "took {:.3} s, more than {TIME_LIMIT:?}",
                run.elapsed.as_secs_f64()
            ),
        ));
    }
    if run.peak_kib() >= RSS_LIMIT_KIB {
        problems.push((
            "rss",
            format!(
                "{}: not under {}",
                run.describe_memory(),
                mib(RSS_LIMIT_KIB)
            ),
        ));
    }

    let (expected_fail, failures): (Vec<_>, Vec<_>) = problems
        .into_iter()
        .partition(|(c, _)| known.iter().any(|k| k == c));
    let status = describe_status(run.status);
    let mut seen_known: Vec<String> = expected_fail.iter().map(|(c, _)| c.to_string()).collect();
    seen_known.dedup();
    println!(
        "hostile {name}: {:.3} s, {}, {status}{} [build {:.1} s, case {:.1} s]",
        run.elapsed.as_secs_f64(),
        run.describe_memory(),
        if seen_known.is_empty() {
            String::new()
        } else {
            format!(", KNOWN BUG: {}", seen_known.join(", "))
        },
        build_time.as_secs_f64(),
        case_start.elapsed().as_secs_f64()
    );
    for (check, what) in &expected_fail {
        println!("  known failure [{check}]: {}", first_lines(what, 3));
    }
    // Time depends on the machine's load: a case may stay under the limit now and then.
    for k in known
        .iter()
        .filter(|k| !seen_known.contains(k) && k.as_str() != "time")
    {
        println!("  note: known failure [{k}] did not happen: fixed? update {name}/known-failures");
    }
    OUTCOMES.lock().unwrap().push(Outcome {
        name: name.clone(),
        line: got
            .map(|(_, l)| l)
            .or_else(|| log.new_lines.first().cloned())
            .unwrap_or_default(),
        elapsed: run.elapsed,
        peak_kib: run.peak_kib(),
        maxrss_kib: run.maxrss_kib,
        status: status.clone(),
        bug,
        known: seen_known,
        passed: failures.is_empty(),
    });

    let cleanup = Instant::now();
    drop(tmp);
    drop(work_tmp);
    if cleanup.elapsed() > Duration::from_secs(1) {
        println!(
            "  {name}: removing the case's directory took {:.1} s",
            cleanup.elapsed().as_secs_f64()
        );
    }
    if failures.is_empty() {
        return Ok(());
    }
    let mut report = String::new();
    for (check, p) in &failures {
        report.push_str(&format!("==> [{check}] "));
        report.push_str(p.trim_end());
        report.push_str("\n\n");
    }
    let shown: Vec<String> = log.head.iter().map(|l| shorten(l)).collect();
    report.push_str(&format!(
        "==> actual result: {status} in {:.3} s, {}, stderr ({} lines{}):\n{}",
        run.elapsed.as_secs_f64(),
        run.describe_memory(),
        log.total,
        if log.total > shown.len() {
            ", the first shown"
        } else {
            ""
        },
        shown.join("\n")
    ));
    Err(report)
}

/// What the checks need from a generator's stderr, read line by line: it can be tens of
/// megabytes, which the harness must not hold (its memory counts in the child's RSS).
struct LogScan {
    /// Lines (with `<root>` and `<out>`) that the baseline's log does not have: how many,
    /// their bytes, and the first ones.
    new_count: usize,
    new_bytes: usize,
    new_lines: Vec<String>,
    /// For each baseline line, whether it appeared.
    base_seen: Vec<bool>,
    /// The first allowed outcome whose line appeared.
    got: Option<(i32, String)>,
    /// New lines that are neither allowed nor listed in `extra-lines`.
    unexpected_count: usize,
    unexpected: Vec<String>,
    /// The first line too long for /dev/kmsg (its length, shortened), and the first with
    /// control characters (escaped).
    long_line: Option<(usize, String)>,
    control_line: Option<String>,
    total: usize,
    head: Vec<String>,
}

fn scan_log(
    path: &Path,
    root: &Path,
    out: &Path,
    base_lines: &[String],
    allowed: &[(i32, String)],
    extra_ok: &[String],
) -> Result<LogScan, String> {
    use std::io::BufRead;
    const KEEP: usize = 20;
    let file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut scan = LogScan {
        new_count: 0,
        new_bytes: 0,
        new_lines: Vec::new(),
        base_seen: vec![false; base_lines.len()],
        got: None,
        unexpected_count: 0,
        unexpected: Vec::new(),
        long_line: None,
        control_line: None,
        total: 0,
        head: Vec::new(),
    };
    for raw in std::io::BufReader::new(file).split(b'\n') {
        let raw = raw.map_err(|e| format!("{}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&raw);
        scan.total += 1;
        if scan.long_line.is_none() && raw.len() > MAX_LOG_LINE {
            scan.long_line = Some((raw.len(), shorten(&text)));
        }
        if scan.control_line.is_none() && text.chars().any(|c| c.is_control() && c != '\t') {
            scan.control_line = Some(shorten(&text.escape_debug().to_string()));
        }
        let line = normalize_paths(&text, &[(root, "<root>"), (out, "<out>")]);
        if scan.head.len() < 40 {
            scan.head.push(shorten(&line));
        }
        if let Some(i) = base_lines.iter().position(|b| *b == line) {
            scan.base_seen[i] = true;
            continue;
        }
        scan.new_count += 1;
        scan.new_bytes += raw.len() + 1;
        let is_allowed = allowed.iter().find(|(_, a)| glob(a, &line));
        if scan.got.is_none() {
            scan.got = is_allowed.cloned();
        }
        if is_allowed.is_none() && !extra_ok.iter().any(|e| glob(e, &line)) {
            scan.unexpected_count += 1;
            if scan.unexpected.len() < 10 {
                scan.unexpected.push(line.clone());
            }
        }
        if scan.new_lines.len() < KEEP {
            scan.new_lines.push(line);
        }
    }
    Ok(scan)
}

/// A log line cut to a readable length.
fn shorten(line: &str) -> String {
    const MAX: usize = 300;
    if line.len() <= MAX {
        return line.to_owned();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &line[..end], line.len())
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines()
        .take(n)
        .map(shorten)
        .collect::<Vec<_>>()
        .join(" / ")
}

fn diff_snapshots(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
    label: &str,
    ignore: impl Fn(&Path) -> bool,
) -> Vec<String> {
    let mut v = Vec::new();
    for (p, d) in after {
        if ignore(p) {
            continue;
        }
        match before.get(p) {
            None => v.push(format!("created {label}/{}: {d}", p.display())),
            Some(b) if b != d => v.push(format!("changed {label}/{}: {b} -> {d}", p.display())),
            _ => {}
        }
    }
    for (p, d) in before {
        if !ignore(p) && !after.contains_key(p) {
            v.push(format!("removed {label}/{}: {d}", p.display()));
        }
    }
    v
}

fn print_summary() {
    let mut outcomes = OUTCOMES.lock().unwrap();
    if outcomes.is_empty() {
        return;
    }
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    println!(
        "\n{:<44} {:>8} {:>10} {:>10}  status / line",
        "case", "time", "peak RSS", "ru_maxrss"
    );
    for o in outcomes.iter() {
        println!(
            "{:<44} {:>6.3} s {:>10} {:>10}  {}{}: {}",
            o.name,
            o.elapsed.as_secs_f64(),
            mib(o.peak_kib),
            mib(o.maxrss_kib),
            if o.passed { "" } else { "FAILED, " },
            o.status,
            shorten(&o.line)
        );
    }
    let bugs: Vec<&Outcome> = outcomes.iter().filter(|o| o.bug.is_some()).collect();
    if !bugs.is_empty() {
        println!("\nKnown bugs recorded by these cases (each case's `bug` file):");
        for o in bugs {
            println!(
                "- {} [{}]: {}",
                o.name,
                o.known.join(", "),
                o.bug.as_deref().unwrap_or_default()
            );
        }
    }
}
