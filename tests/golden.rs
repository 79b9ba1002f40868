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
//! `expected-status` from what the binary does instead of comparing (review with `git diff`).

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

    let args: Vec<String> = read_optional(&case.join("args"))?
        .map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let env = if case.join("env").exists() {
        read_env_file(&case.join("env"))?
    } else {
        Vec::new()
    };

    let before = list_paths(&root)?;
    let first = run_once(&root, &base.join("out"), &args, &env)?;
    let second = run_once(&root, &base.join("out2"), &args, &env)?;
    let after = list_paths(&root)?;

    let mut problems: Vec<String> = Vec::new();

    let changes = snapshot_changes(&before, &after);
    if !changes.is_empty() {
        problems.push(format!("the root was modified:\n{}", changes.join("\n")));
    }

    // Determinism: the second run must do exactly what the first did.
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

    if update_mode() {
        record(case, &first)?;
    } else {
        problems.extend(compare_expectations(case, &first)?);
    }

    if problems.is_empty() {
        return Ok(());
    }
    let mut report = String::new();
    for problem in &problems {
        report.push_str("==> ");
        report.push_str(problem.trim_end());
        report.push_str("\n\n");
    }
    report.push_str(&format!(
        "==> actual result: {}, stderr:\n{}",
        describe_status(first.out.status),
        first.log
    ));
    Err(report)
}

/// Compares a run with the case's `expected-status`, `expected-log` and `expected/`.
fn compare_expectations(case: &Path, run: &Run) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();

    let status_file = case.join("expected-status");
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

    match read_optional(&case.join("expected-log"))? {
        Some(expected) if expected == run.log => {}
        Some(expected) => problems.push(format!(
            "stderr differs from expected-log:\n{}",
            unified_diff(&expected, &run.log, "expected-log", "actual stderr")
        )),
        None => problems.push(
            "expected-log is not recorded yet: check the actual stderr below, then record it with \
             UPDATE_GOLDEN=1"
                .to_owned(),
        ),
    }

    let expected_dir = case.join("expected");
    if expected_dir.is_dir() {
        let expected = read_tree(&expected_dir, Some(EMPTY_MARKER))?;
        let diffs = compare_trees(&expected, &run.tree, "expected", "actual", false);
        if !diffs.is_empty() {
            problems.push(format!(
                "the output differs from expected/:\n{}",
                diffs.join("\n")
            ));
        }
    } else {
        problems.push(format!(
            "{} is missing (use .empty for an empty output)",
            expected_dir.display()
        ));
    }
    Ok(problems)
}

/// UPDATE_GOLDEN=1: writes the run's result as the case's expectations.
fn record(case: &Path, run: &Run) -> Result<(), String> {
    let Some(code) = run.out.status.code() else {
        return Err(format!(
            "not recording a run that was {}",
            describe_status(run.out.status)
        ));
    };
    let expected_dir = case.join("expected");
    if expected_dir.exists() {
        fs::remove_dir_all(&expected_dir)
            .map_err(|e| format!("removing {}: {e}", expected_dir.display()))?;
    }
    write_tree(&run.tree, &expected_dir)?;
    let log_file = case.join("expected-log");
    fs::write(&log_file, &run.log).map_err(|e| format!("writing {}: {e}", log_file.display()))?;
    let status_file = case.join("expected-status");
    if code == 0 {
        if status_file.exists() {
            fs::remove_file(&status_file)
                .map_err(|e| format!("removing {}: {e}", status_file.display()))?;
        }
    } else {
        fs::write(&status_file, format!("{code}\n"))
            .map_err(|e| format!("writing {}: {e}", status_file.display()))?;
    }
    Ok(())
}
