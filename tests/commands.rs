//! The command line as a person uses it: usage errors, `--help` of each command, `list`,
//! `inspect`, a dry run's wording, an output directory that cannot be written, and the
//! debug lines that tell every decision. Each test builds a small root of directory images
//! from `tests/trees/` and runs the binary on it.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{PROFILE_INSTALL_DIR, copy_tree, generator_bin, repo_dir};

/// A root with:
/// - `/var/lib/portables/foo` (Enable=no in `portables.d/foo.conf`), holding also a
///   `.mount` unit and a unit of another prefix;
/// - `/var/lib/portables/bar` (Attach=no in `portables.d/bar.conf`);
/// - `/var/lib/portables/baz`, attached, and `/usr/lib/portables/baz`, shadowed by it;
/// - `/var/lib/portables/broken`, without os-release;
/// - `/var/lib/portables/gone.raw`, a dangling link;
/// - `/etc/portables`, empty.
fn sample_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let trees = repo_dir().join("tests/trees");
    for name in ["foo", "bar", "baz"] {
        copy_tree(
            &trees.join(name),
            &root.join("var/lib/portables").join(name),
        )
        .unwrap();
    }
    copy_tree(&trees.join("baz"), &root.join("usr/lib/portables/baz")).unwrap();
    copy_tree(&trees.join("foo"), &root.join("var/lib/portables/broken")).unwrap();
    fs::remove_file(root.join("var/lib/portables/broken/usr/lib/os-release")).unwrap();
    let units = root.join("var/lib/portables/foo/etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::write(units.join("foo.mount"), "[Mount]\nWhat=x\n").unwrap();
    fs::write(units.join("other.service"), "[Service]\nExecStart=/x\n").unwrap();
    symlink("/nowhere", root.join("var/lib/portables/gone.raw")).unwrap();
    fs::create_dir_all(root.join("etc/portables")).unwrap();
    fs::create_dir_all(root.join("etc/portables.d")).unwrap();
    fs::write(
        root.join("etc/portables.d/foo.conf"),
        "[Portable]\nEnable=no\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/portables.d/bar.conf"),
        "[Portable]\nAttach=no\n",
    )
    .unwrap();
    fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
    copy_tree(
        &repo_dir().join("profiles"),
        &root.join(PROFILE_INSTALL_DIR),
    )
    .unwrap();
    dir
}

/// Run the binary with `args` and a clean systemd environment (`env` added).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(generator_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SYSTEMD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("SYSTEMD_LOG_TARGET", "console").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn status(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn usage_errors_are_one_line_and_a_hint() {
    for (args, hint) in [
        (&["--bogus", "/x"][..], "portables-generator --help"),
        (&["/a", "/b"], "portables-generator --help"),
        (&["list", "stray"], "portables-generator list --help"),
        (&["list", "--cat"], "portables-generator list --help"),
        (&["inspect"], "portables-generator inspect --help"),
        (
            &["apply", "--root", "/"],
            "portables-generator apply --help",
        ),
        (&["help", "nope"], "portables-generator help --help"),
    ] {
        let out = run(args, &[]);
        assert_eq!(status(&out), 2, "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 2, "{args:?}: {err}");
        assert!(err.starts_with("portables-generator: "), "{err}");
        assert!(
            err.ends_with(&format!("Try '{hint}' for more information.\n")),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn every_command_has_its_help() {
    for (args, first) in [
        (&["--help"][..], "Usage: portables-generator [--root DIR]"),
        (&["-h"], "Usage: portables-generator [--root DIR]"),
        (&["help"], "Usage: portables-generator [--root DIR]"),
        (&["list", "--help"], "Usage: portables-generator list "),
        (&["help", "list"], "Usage: portables-generator list "),
        (&["inspect", "-h"], "Usage: portables-generator inspect "),
        (&["apply", "--help"], "Usage: portables-generator apply "),
        (&["help", "help"], "Usage: portables-generator help "),
    ] {
        let out = run(args, &[]);
        assert_eq!(status(&out), 0, "{args:?}");
        assert!(text(&out.stdout).starts_with(first), "{args:?}");
    }
    // Every option a command takes is in its help.
    for (args, options) in [
        (
            &["--help"][..],
            &["--root", "--dry-run", "--systemd-version", "--version"][..],
        ),
        (
            &["list", "--help"],
            &["--root", "--systemd-version", "--json"],
        ),
        (
            &["inspect", "--help"],
            &["--root", "--systemd-version", "--cat", "--json"],
        ),
        (&["apply", "--help"], &["--dry-run", "--clean", "--settle"]),
    ] {
        let help = text(&run(args, &[]).stdout);
        for option in options {
            assert!(help.contains(option), "{args:?} lacks {option}");
        }
    }
    for args in [&["-V"][..], &["--version"], &["list", "-V"]] {
        let out = run(args, &[]);
        assert_eq!(status(&out), 0);
        assert_eq!(
            text(&out.stdout),
            format!("portables-generator {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn a_root_that_is_not_a_directory_is_one_line() {
    for args in [
        &["--root", "/nonexistent/root", "--dry-run"][..],
        &["list", "--root", "/nonexistent/root"],
        &["inspect", "--root", "/nonexistent/root", "foo"],
    ] {
        let out = run(args, &[]);
        assert_eq!(status(&out), 1, "{args:?}");
        assert_eq!(
            text(&out.stderr),
            "portables-generator: --root /nonexistent/root: No such file or directory (os error 2)\n"
        );
    }
}

#[test]
fn an_output_directory_that_is_no_directory_is_one_line() {
    let root = sample_root();
    let out_file = root.path().join("out");
    fs::write(&out_file, "").unwrap();
    let r = root.path().to_str().unwrap();
    let out = run(&["--root", r, out_file.to_str().unwrap()], &[]);
    assert_eq!(status(&out), 1);
    let err = text(&out.stderr);
    let line = format!("Cannot write into {}: not a directory.", out_file.display());
    assert_eq!(
        err.lines().filter(|l| l.contains("Cannot write")).count(),
        1,
        "{err}"
    );
    assert!(err.contains(&line), "{err}");
}

/// Whether this test runs as root, which can drop to another user to meet permissions.
fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn an_output_directory_without_write_permission_is_one_line() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to run as another user");
        return;
    }
    let root = sample_root();
    make_world_readable(root.path());
    let out_dir = root.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&[
        "--root",
        root.path().to_str().unwrap(),
        out_dir.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(status(&out), 1, "{err}");
    let cannot: Vec<&str> = err.lines().filter(|l| l.contains("Cannot write")).collect();
    assert_eq!(
        cannot,
        [format!(
            "Cannot write into {}: Permission denied (os error 13).",
            out_dir.display()
        )],
        "{err}"
    );
}

/// Let every user read `dir` and the directories above it, as a packaged system would.
fn make_world_readable(dir: &Path) {
    let mut p = dir.to_path_buf();
    loop {
        let mode = fs::metadata(&p).unwrap().permissions().mode();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode | 0o755)).unwrap();
        if !p.pop() || p == Path::new("/") {
            break;
        }
    }
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(dir).status();
}

/// The binary run as `nobody`; the binary's directories must be reachable for it.
fn as_nobody(args: &[&str]) -> Output {
    let bin = generator_bin();
    let copy =
        PathBuf::from("/tmp").join(format!("portables-generator-test-{}", std::process::id()));
    fs::copy(&bin, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(args)
        .env_remove("SYSTEMD_LOG_LEVEL")
        .env("SYSTEMD_LOG_TARGET", "console")
        .output()
        .unwrap();
    let _ = fs::remove_file(&copy);
    out
}

#[test]
fn a_dry_run_says_would_attach() {
    let root = sample_root();
    let r = root.path().to_str().unwrap();
    let out = run(&["--root", r, "--dry-run", "--systemd-version", "257"], &[]);
    let err = text(&out.stderr);
    assert!(
        err.contains("Would attach image /var/lib/portables/baz: baz.service.\n"),
        "{err}"
    );
    assert!(!err.contains("Attached image"), "{err}");
    // The run that writes says what it did.
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "--root",
            r,
            "--systemd-version",
            "257",
            out_dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(text(&out.stderr).contains("Attached image /var/lib/portables/baz: baz.service.\n"));
}

#[test]
fn debug_lines_tell_every_decision() {
    let root = sample_root();
    let r = root.path().to_str().unwrap();
    let out = run(
        &["--root", r, "--dry-run"],
        &[("SYSTEMD_LOG_LEVEL", "debug")],
    );
    let err = text(&out.stderr);
    for line in [
        // The systemd version and how it was found.
        "writing for systemd 260 (the newest known format: no systemd binary at /usr/lib/systemd/systemd or /lib/systemd/systemd).",
        // Each search directory: missing, empty, listed.
        "Search directory /run/portables does not exist.",
        "Search directory /etc/portables is empty.",
        "Search directory /var/lib/portables has 5 entries.",
        // Each image found, and its kind; the shadowed one.
        "Image /var/lib/portables/foo found, a directory image.",
        "Image /usr/lib/portables/baz is shadowed by an image of the same name earlier in the search path.",
        // Selected or not, and why.
        "Image /var/lib/portables/baz selected as baz (unit prefix baz) with the default settings.",
        "Image /var/lib/portables/foo selected as foo (unit prefix foo) with the settings of /etc/portables.d/foo.conf.",
        "Image /var/lib/portables/bar not attached: Attach=no in /etc/portables.d/bar.conf.",
        "Image /var/lib/portables/gone.raw not attached: dangling symbolic link.",
        // Each unit matched or passed over, and why.
        "Unit foo.service of image /var/lib/portables/foo: /usr/lib/systemd/system/foo.service matches.",
        "Unit file /etc/systemd/system/foo.mount of image /var/lib/portables/foo passed over: a .mount unit: only service, socket, target, timer and path units are attached.",
        "Unit file /etc/systemd/system/other.service of image /var/lib/portables/foo passed over: its name does not start with the image's unit prefix.",
        // The profile chosen and where it was found.
        "Unit baz.service of image /var/lib/portables/baz: profile default from /usr/lib/portables-generator/profile/258/default/service.conf.",
        // Each link made.
        "Unit baz.service of image /var/lib/portables/baz: link multi-user.target.wants/baz.service -> ../baz.service.",
    ] {
        assert!(err.contains(line), "missing: {line}\n--- stderr:\n{err}");
    }
    // At the default level none of them is said.
    let quiet = text(&run(&["--root", r, "--dry-run"], &[]).stderr);
    assert!(!quiet.contains("selected as"), "{quiet}");
    assert!(!quiet.contains("passed over"), "{quiet}");
}

fn list_json(root: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["list", "--root", root.to_str().unwrap(), "--json"];
    args.extend(extra);
    let out = run(&args, &[]);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    (status(&out), doc)
}

#[test]
fn list_shows_every_image_with_its_state_and_units() {
    let root = sample_root();
    let (code, doc) = list_json(root.path(), &["--systemd-version", "257"]);
    assert_eq!(
        code, 1,
        "broken and gone.raw fail, as they fail the generator"
    );
    assert_eq!(doc["systemd_version"], 257);
    let images = doc["images"].as_array().unwrap();
    let states: Vec<(&str, &str)> = images
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("bar", "masked"),
            ("baz", "attached"),
            ("broken", "failed"),
            ("foo", "not-enabled"),
            ("gone.raw", "failed"),
            ("baz", "left-out"),
        ]
    );
    let baz = &images[1];
    assert_eq!(baz["kind"], "directory");
    assert_eq!(baz["path"], "/var/lib/portables/baz");
    assert_eq!(baz["version"], "1");
    assert_eq!(baz["profile"], "default");
    let unit = &baz["units"][0];
    assert_eq!(unit["name"], "baz.service");
    assert_eq!(unit["state"], "attached");
    assert_eq!(unit["wanted_by"][0], "multi-user.target");
    assert_eq!(
        unit["profile"],
        "/usr/lib/portables-generator/profile/257/default/service.conf"
    );
    assert_eq!(
        images[0]["reason"],
        "Attach=no in /etc/portables.d/bar.conf"
    );
    assert_eq!(
        images[2]["reason"],
        "image lacks os-release data (/etc/os-release or /usr/lib/os-release)"
    );
    assert_eq!(images[3]["units"][0]["state"], "not-enabled");
    assert_eq!(
        images[3]["units"][0]["wanted_by"].as_array().unwrap().len(),
        0
    );
    assert_eq!(
        images[5]["reason"],
        "shadowed by an image of the same name earlier in the search path"
    );

    // The text form says the same.
    let r = root.path().to_str().unwrap();
    let out = run(&["list", "--root", r, "--systemd-version", "257"], &[]);
    assert_eq!(status(&out), 1);
    let listing = text(&out.stdout);
    for line in [
        "For systemd 257 (--systemd-version).",
        "bar: masked: Attach=no in /etc/portables.d/bar.conf",
        "baz: attached",
        "  baz.service: attached, wanted by multi-user.target, profile /usr/lib/portables-generator/profile/257/default/service.conf",
        "foo: not enabled: Enable=no (set in /etc/portables.d/foo.conf)",
        "gone.raw: failed: dangling symbolic link",
    ] {
        assert!(listing.contains(line), "missing: {line}\n{listing}");
    }
}

#[test]
fn list_says_what_a_unit_left_out_is_and_exits_0_when_all_is_attached() {
    let root = sample_root();
    for image in ["broken", "gone.raw"] {
        let p = root.path().join("var/lib/portables").join(image);
        if p.is_dir() {
            fs::remove_dir_all(p).unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
    }
    // A host unit of the same name as an image's: the image's is left out, failing.
    let host = root.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&host).unwrap();
    let (code, _) = list_json(root.path(), &[]);
    assert_eq!(code, 0, "masked and not enabled are no failures");
    fs::write(host.join("baz.service"), "[Service]\nExecStart=/x\n").unwrap();
    let (code, doc) = list_json(root.path(), &[]);
    assert_eq!(code, 1);
    let baz = &doc["images"][1];
    assert_eq!(baz["state"], "failed");
    assert_eq!(baz["units"][0]["name"], "baz.service");
    assert_eq!(baz["units"][0]["state"], "failed");
    assert_eq!(
        baz["units"][0]["reason"],
        "the host has /usr/lib/systemd/system/baz.service already"
    );
}

#[test]
fn list_runs_as_a_normal_user() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to run as another user");
        return;
    }
    let root = sample_root();
    make_world_readable(root.path());
    let out = as_nobody(&["list", "--root", root.path().to_str().unwrap()]);
    let listing = text(&out.stdout);
    assert!(listing.contains("baz: attached"), "{listing}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    // On this machine's own root, PID 1's binary cannot be read by nobody: the installed
    // systemd is read instead, or the newest format is said to be a guess.
    let out = as_nobody(&["list", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let how = doc["systemd"].as_str().unwrap();
    assert!(
        how.contains("read from /usr/lib/systemd/systemd")
            || how.contains("read from /lib/systemd/systemd")
            || how.contains("the newest known format"),
        "{how}"
    );
    assert!(!how.contains("/proc/1/exe"), "{how}");
}

#[test]
fn inspect_tells_every_unit_file_and_its_fate() {
    let root = sample_root();
    let r = root.path().to_str().unwrap();
    let out = run(
        &[
            "inspect",
            "--root",
            r,
            "--systemd-version",
            "257",
            "--json",
            "foo",
        ],
        &[],
    );
    assert_eq!(status(&out), 0, "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["name"], "foo");
    assert_eq!(doc["state"], "not-enabled");
    assert_eq!(doc["configured_in"], "/etc/portables.d/foo.conf");
    assert_eq!(doc["os_release"]["fields"]["IMAGE_ID"], "foo");
    assert_eq!(doc["verity"]["found"], "no verity data");
    assert_eq!(doc["profile"]["name"], "default");
    let units: Vec<(&str, &str)> = doc["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["path"].as_str().unwrap(), u["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        units,
        [
            ("/etc/systemd/system/foo.mount", "not-matched"),
            ("/etc/systemd/system/other.service", "not-matched"),
            ("/usr/lib/systemd/system/foo.service", "not-enabled"),
        ]
    );
    assert_eq!(
        doc["units"][1]["reason"],
        "its name does not start with the unit prefix foo"
    );

    // By path, and a masked image: not attached, exit status 1.
    let out = run(&["inspect", "--root", r, "/var/lib/portables/bar"], &[]);
    assert_eq!(status(&out), 1);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("State: masked: Attach=no in /etc/portables.d/bar.conf"),
        "{shown}"
    );

    // --cat: os-release and each unit file after a '# PATH' line.
    let out = run(&["inspect", "--root", r, "--cat", "baz"], &[]);
    let cat = text(&out.stdout);
    assert!(
        cat.starts_with("# /usr/lib/os-release\nID=portable-test\n"),
        "{cat}"
    );
    assert!(
        cat.contains("\n# /usr/lib/systemd/system/baz.service\n[Unit]\n"),
        "{cat}"
    );

    // Nothing of that name: one line, exit status 1.
    let out = run(&["inspect", "--root", r, "nothing"], &[]);
    assert_eq!(status(&out), 1);
    assert_eq!(text(&out.stderr).lines().count(), 1);
}
