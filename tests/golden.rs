//! Golden-tree tests: one test per directory `tests/cases/NN-what/`, named after it, so the
//! test list reads as a feature list.
//!
//! A case directory holds:
//! - `root/` (optional): copied into a fresh temporary root (symlinks stay symlinks, `.keep`
//!   files are dropped).
//! - `build` (optional): lines `DEST KIND ARGS...`, each running
//!   `tests/mkimage KIND ROOT/DEST ARGS...` with tree paths in ARGS relative to the case
//!   directory (for `gpt`, the TREE field of each `TYPE:FSKIND:TREE[:LABEL]`). Image trees
//!   live in the case's `trees/NAME/`, or in `tests/trees/NAME/` when several cases share
//!   them. `#` comments and blank lines are ignored.
//! - `args` (optional): one line of extra arguments, placed before the output directory.
//! - `env` (optional): `KEY=VALUE` lines added to the environment.
//! - `expected/`: the expected output tree. Files are compared byte for byte, symlinks by their
//!   target text, directories by their listing; an `.empty` file marks a directory expected to
//!   be empty and is itself ignored.
//! - `expected-log`: the exact expected stderr, with the temporary root's path written as
//!   `<root>` and the output directory's as `<out>`. Missing means "not recorded yet": the case
//!   fails, showing the actual stderr, until it is recorded.
//! - `expected-status` (optional, default `0`): the expected exit status.
//! - `systemd-versions` (optional, default `252 257`): the systemd versions the case runs
//!   for, each with `--systemd-version N`. Where a version's result differs, the
//!   expectation that differs has a copy of its own: `expected@N/`, `expected-log@N` or
//!   `expected-status@N` applies to version N and later, up to the next such copy.
//!
//! The runner copies `root/`, builds the images, installs the repository's `profiles/` as
//! `ROOT/usr/lib/portables-generator/profile/`, then runs
//! `portables-generator --root ROOT [ARGS] OUT` with `SYSTEMD_LOG_TARGET=console`,
//! `SYSTEMD_LOG_LEVEL=info`, no other `SYSTEMD_*` variable (so no `SYSTEMD_SCOPE` or
//! `SYSTEMD_IN_INITRD`) unless the case's `env` sets it. It checks the exit status, stderr and
//! the output tree against the expectations, that output files are 0644 and directories
//! 0755, that a second run into a second output directory gives the same result, and that
//! nothing in ROOT was created, removed or changed.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden [NAME]` rewrites `expected/`, `expected-log` and
//! `expected-status` from what the binary does for the first version, and a copy `…@N` of
//! each of them where a later version's differs from the version before (review with
//! `git diff`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    EMPTY_MARKER, PROFILE_INSTALL_DIR, RunOutput, build_images, check_output_modes, compare_trees,
    copy_tree, describe_status, list_paths, normalize_paths, read_env_file, read_tree, repo_dir,
    run_generator, snapshot_changes, unified_diff, write_tree,
};
use libtest_mimic::{Arguments, Failed, Trial};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The versions a case runs for unless it says otherwise: the two that the boot suite boots.
const DEFAULT_VERSIONS: [u32; 2] = [252, 257];

fn main() {
    let args = Arguments::from_args();
    let cases_dir = repo_dir().join("tests/cases");
    let mut cases: Vec<PathBuf> = fs::read_dir(&cases_dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", cases_dir.display()))
        .map(|entry| entry.expect("reading tests/cases").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    let trials = cases
        .into_iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Trial::test(name, move || run_case(&dir).map_err(Failed::from))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn update_mode() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// An optional file of the case: `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// One generator run, with its stderr made comparable.
struct Run {
    out: RunOutput,
    log: String,
    tree: common::Tree,
}

fn run_once(
    root: &Path,
    out_dir: &Path,
    args: &[String],
    env: &[(String, String)],
) -> Result<Run, String> {
    fs::create_dir(out_dir).map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    let out = run_generator(root, args, out_dir, env, RUN_TIMEOUT)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = normalize_paths(&stderr, &[(root, "<root>"), (out_dir, "<out>")]);
    let tree = read_tree(out_dir, None)?;
    Ok(Run { out, log, tree })
}

fn run_case(case: &Path) -> Result<(), String> {
    let tmp = tempfile::Builder::new()
        .prefix("golden-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let base =
        fs::canonicalize(tmp.path()).map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    let root = base.join("root");

    // The test root: the case's tree, its images, and this project's profiles.
    if case.join("root").is_dir() {
        copy_tree(&case.join("root"), &root)?;
    } else {
        fs::create_dir(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    }
    if case.join("build").exists() {
        build_images(case, &case.join("build"), &root)?;
    }
    copy_tree(
        &repo_dir().join("profiles"),
        &root.join(PROFILE_INSTALL_DIR),
    )?;

    let mut args: Vec<String> = read_optional(&case.join("args"))?
        .map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let env = if case.join("env").exists() {
        read_env_file(&case.join("env"))?
    } else {
        Vec::new()
    };
    let versions = case_versions(case)?;
    if update_mode() {
        remove_version_sets(case)?;
    }

    let mut problems: Vec<String> = Vec::new();
    let mut recorded: Option<Run> = None;
    let before = list_paths(&root)?;
    let n_args = args.len();
    for &version in &versions {
        args.truncate(n_args);
        args.extend(["--systemd-version".to_owned(), version.to_string()]);
        let outs = (
            base.join(format!("out-{version}")),
            base.join(format!("out2-{version}")),
        );
        let first = run_once(&root, &outs.0, &args, &env)?;
        let second = run_once(&root, &outs.1, &args, &env)?;
        let mut found = check_run(&first, &second);
        if update_mode() {
            record(case, version, recorded.as_ref(), &first)?;
            recorded = Some(first);
        } else {
            found.extend(compare_expectations(case, version, &first)?);
        }
        if !found.is_empty() {
            let mut report = format!("==> systemd {version}:\n");
            for problem in &found {
                report.push_str("==> ");
                report.push_str(problem.trim_end());
                report.push_str("\n\n");
            }
            problems.push(report);
        }
    }
    let after = list_paths(&root)?;
    let changes = snapshot_changes(&before, &after);
    if !changes.is_empty() {
        problems.push(format!(
            "==> the root was modified:\n{}",
            changes.join("\n")
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(problems.join("\n"))
}

/// The versions a case runs for.
fn case_versions(case: &Path) -> Result<Vec<u32>, String> {
    let file = case.join("systemd-versions");
    let Some(text) = read_optional(&file)? else {
        return Ok(DEFAULT_VERSIONS.to_vec());
    };
    let mut versions = text
        .split_whitespace()
        .map(|w| {
            w.parse()
                .map_err(|e| format!("{}: '{w}': {e}", file.display()))
        })
        .collect::<Result<Vec<u32>, String>>()?;
    versions.sort_unstable();
    versions.dedup();
    if versions.is_empty() {
        return Err(format!("{} names no version", file.display()));
    }
    Ok(versions)
}

/// The file of the case holding expectation `what` (`expected`, `expected-log`,
/// `expected-status`) for `version`: `what@N` of the latest N not after it, else `what`.
fn expectation(case: &Path, what: &str, version: u32) -> Result<PathBuf, String> {
    let mut best: Option<u32> = None;
    for entry in fs::read_dir(case).map_err(|e| format!("{}: {e}", case.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", case.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix(what)
            .and_then(|rest| rest.strip_prefix('@'))
        else {
            continue;
        };
        let n: u32 = n
            .parse()
            .map_err(|e| format!("{}: not a version: {e}", entry.path().display()))?;
        if n <= version && best.is_none_or(|b| n > b) {
            best = Some(n);
        }
    }
    Ok(match best {
        Some(n) => case.join(format!("{what}@{n}")),
        None => case.join(what),
    })
}

/// `UPDATE_GOLDEN=1` records every set anew.
fn remove_version_sets(case: &Path) -> Result<(), String> {
    for entry in fs::read_dir(case).map_err(|e| format!("{}: {e}", case.display()))? {
        let path = entry
            .map_err(|e| format!("{}: {e}", case.display()))?
            .path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !name.starts_with("expected") || !name.contains('@') {
            continue;
        }
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| format!("removing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// What holds for every run, whatever is expected: determinism, modes, no stdout.
fn check_run(first: &Run, second: &Run) -> Vec<String> {
    let mut problems = Vec::new();
    let mut repeat = compare_trees(&first.tree, &second.tree, "run1", "run2", true);
    if first.out.status != second.out.status {
        repeat.push(format!(
            "{} on the first run, {} on the second",
            describe_status(first.out.status),
            describe_status(second.out.status)
        ));
    }
    if first.log != second.log {
        repeat.push(unified_diff(
            &first.log,
            &second.log,
            "run1 stderr",
            "run2 stderr",
        ));
    }
    if !repeat.is_empty() {
        problems.push(format!(
            "a second run gave a different result:\n{}",
            repeat.join("\n")
        ));
    }
    let modes = check_output_modes(&first.tree);
    if !modes.is_empty() {
        problems.push(format!("wrong modes in the output:\n{}", modes.join("\n")));
    }
    if !first.out.stdout.is_empty() {
        problems.push(format!(
            "unexpected stdout:\n{}",
            String::from_utf8_lossy(&first.out.stdout)
        ));
    }
    if !problems.is_empty() {
        problems.push(format!(
            "actual result: {}, stderr:\n{}",
            describe_status(first.out.status),
            first.log
        ));
    }
    problems
}

/// Compares a run with the case's `expected-status`, `expected-log` and `expected/`.
fn compare_expectations(case: &Path, version: u32, run: &Run) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();

    let status_file = expectation(case, "expected-status", version)?;
    let expected_status: i32 = match read_optional(&status_file)? {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|e| format!("{}: not a number: {e}", status_file.display()))?,
        None => 0,
    };
    if run.out.status.code() != Some(expected_status) {
        problems.push(format!(
            "expected exit status {expected_status}, got {}",
            describe_status(run.out.status)
        ));
    }

    let log_file = expectation(case, "expected-log", version)?;
    let log_name = log_file.file_name().unwrap_or_default().to_string_lossy();
    match read_optional(&log_file)? {
        Some(expected) if expected == run.log => {}
        Some(expected) => problems.push(format!(
            "stderr differs from {log_name}:\n{}",
            unified_diff(&expected, &run.log, "expected-log", "actual stderr")
        )),
        None => problems.push(
            "expected-log is not recorded yet: check the actual stderr below, then record it with \
             UPDATE_GOLDEN=1"
                .to_owned(),
        ),
    }

    let expected_dir = expectation(case, "expected", version)?;
    if expected_dir.is_dir() {
        let expected = read_tree(&expected_dir, Some(EMPTY_MARKER))?;
        let diffs = compare_trees(&expected, &run.tree, "expected", "actual", false);
        if !diffs.is_empty() {
            problems.push(format!(
                "the output differs from {}/:\n{}",
                expected_dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy(),
                diffs.join("\n")
            ));
        }
    } else {
        problems.push(format!(
            "{} is missing (use .empty for an empty output)",
            expected_dir.display()
        ));
    }
    if !problems.is_empty() {
        problems.push(format!(
            "actual result: {}, stderr:\n{}",
            describe_status(run.out.status),
            run.log
        ));
    }
    Ok(problems)
}

/// `UPDATE_GOLDEN=1`: writes the run's result for `version` as the case's expectations: the
/// plain files for the first version, `…@VERSION` copies of what differs from `before` (the
/// result of the version before) for the others.
fn record(case: &Path, version: u32, before: Option<&Run>, run: &Run) -> Result<(), String> {
    let Some(code) = run.out.status.code() else {
        return Err(format!(
            "not recording a run that was {}",
            describe_status(run.out.status)
        ));
    };
    let suffix = match before {
        None => String::new(),
        Some(_) => format!("@{version}"),
    };
    let tree_differs =
        before.is_none_or(|b| !compare_trees(&b.tree, &run.tree, "a", "b", true).is_empty());
    if tree_differs {
        let expected_dir = case.join(format!("expected{suffix}"));
        if expected_dir.exists() {
            fs::remove_dir_all(&expected_dir)
                .map_err(|e| format!("removing {}: {e}", expected_dir.display()))?;
        }
        write_tree(&run.tree, &expected_dir)?;
    }
    if before.is_none_or(|b| b.log != run.log) {
        let log_file = case.join(format!("expected-log{suffix}"));
        fs::write(&log_file, &run.log)
            .map_err(|e| format!("writing {}: {e}", log_file.display()))?;
    }
    let status_file = case.join(format!("expected-status{suffix}"));
    match before {
        None if code == 0 => {
            if status_file.exists() {
                fs::remove_file(&status_file)
                    .map_err(|e| format!("removing {}: {e}", status_file.display()))?;
            }
        }
        Some(b) if b.out.status.code() == Some(code) => {}
        // A later version's status is written even when 0, to override the one before.
        _ => fs::write(&status_file, format!("{code}\n"))
            .map_err(|e| format!("writing {}: {e}", status_file.display()))?,
    }
    Ok(())
}
