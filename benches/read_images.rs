//! What each image kind costs to read: the demo images are built with the real tools,
//! then each is read in process (open, os-release, matching units) many times, and the
//! release binary is run once per image to measure its peak memory. Figures are printed
//! side by side, as ratios to the directory image.
//!
//! Run: `cargo bench --bench read_images` (needs the tools `tests/run` installs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use portables_generator::attach::read_image;
use portables_generator::discover::discover;
use portables_generator::root::Root;

const ROUNDS: usize = 200;

/// (label, mkimage arguments, file name in /var/lib/portables)
fn kinds(trees: &Path) -> Vec<(&'static str, Vec<String>, &'static str)> {
    let t = |n: &str| trees.join(n).display().to_string();
    vec![
        ("directory", vec!["dir".into(), t("demo-dir")], "demo-dir"),
        ("ext4", vec!["ext4".into(), t("demo-ext4")], "demo-ext4.raw"),
        (
            "squashfs (gzip)",
            vec!["squashfs".into(), t("demo-squash")],
            "demo-squash.raw",
        ),
        (
            "squashfs (zstd)",
            vec!["squashfs-zstd".into(), t("demo-squash")],
            "demo-squash.raw",
        ),
        (
            "erofs",
            vec!["erofs".into(), t("demo-erofs")],
            "demo-erofs.raw",
        ),
        (
            "erofs (lz4hc)",
            vec!["erofs-lz4".into(), t("demo-erofs")],
            "demo-erofs.raw",
        ),
        (
            "GPT + squashfs",
            vec![
                "gpt".into(),
                format!("root-x86-64:squashfs:{}", t("demo-gpt")),
            ],
            "demo-gpt.raw",
        ),
        (
            "GPT 4K + ext4",
            vec![
                "gpt".into(),
                "--sector-size".into(),
                "4096".into(),
                format!("root-x86-64:ext4:{}", t("demo-gpt")),
            ],
            "demo-gpt.raw",
        ),
    ]
}

fn build(repo: &Path, args: &[String], out: &Path) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    // mkimage takes KIND OUT TREE / gpt OUT PARTS...
    let mut cmd = Command::new(repo.join("tests/mkimage"));
    cmd.arg(&args[0]).arg(out).args(&args[1..]);
    let status = cmd.status().expect("run tests/mkimage");
    assert!(status.success(), "tests/mkimage {args:?} failed");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Peak resident set of one dry run of the release binary over `root`, in KiB.
// The child is reaped by wait4(), which std's Child does not know about.
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(root: &Path) -> i64 {
    let child = Command::new(env!("CARGO_BIN_EXE_portables-generator"))
        .args(["--dry-run", "--root"])
        .arg(root)
        .env("SYSTEMD_LOG_LEVEL", "err")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn generator");
    let waited = portables_test_sys::wait4_blocking(&child).expect("wait4");
    waited.maxrss_kib
}

/// This process's own resident set, in KiB.
fn own_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let trees = repo.join("demo/trees");
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty-root");
    std::fs::create_dir_all(&empty).unwrap();

    let mut roots = Vec::new();
    for (i, (label, args, file)) in kinds(&trees).into_iter().enumerate() {
        let root = work.path().join(format!("root{i}"));
        build(&repo, &args, &root.join("var/lib/portables").join(file));
        roots.push((label, root));
    }

    // A child's peak RSS includes the pages of this process at the time of the spawn
    // (exec records the old address space's high-water mark), so memory is measured
    // first, while this process is small, and its own size is printed beside.
    let own = own_rss_kib();
    let baseline_rss = peak_rss_kib(&empty);
    let rss: Vec<i64> = roots.iter().map(|(_, root)| peak_rss_kib(root)).collect();

    println!("Reading one image: open, os-release, matching units ({ROUNDS} rounds, median)");
    println!(
        "{:<18} {:>10} {:>8} {:>22} {:>6}",
        "image", "median", "ratio", "peak RSS (dry run)", "units"
    );
    let mut base = None;
    for ((label, root), rss) in roots.iter().zip(rss) {
        let root = Root::new(root);
        let found = discover(&root, false, &mut Default::default());
        let image = found.first().expect("image discovered");
        let mut times = Vec::with_capacity(ROUNDS);
        let mut units = 0;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let read = read_image(&root, image, portables_generator::systemd_version::NEWEST)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            times.push(start.elapsed());
            units = read.attachment.units.len();
        }
        let m = median(times);
        let base = *base.get_or_insert(m);
        println!(
            "{:<18} {:>8.1}µs {:>7.1}x {:>10} KiB (+{:>4}) {:>6}",
            label,
            m.as_secs_f64() * 1e6,
            m.as_secs_f64() / base.as_secs_f64(),
            rss,
            rss - baseline_rss,
            units
        );
    }
    // The whole job as systemd would run it, over all the images in one root.
    let all = work.path().join("all");
    for (i, (_, args, file)) in kinds(&trees).into_iter().enumerate() {
        // Versions keep the names apart and the prefix the same; units that two images
        // share are read for both, then skipped for the second, as at boot.
        let name = match file.strip_suffix(".raw") {
            Some(stem) => format!("{stem}_{i}.raw"),
            None => format!("{file}_{i}"),
        };
        build(&repo, &args, &all.join("var/lib/portables").join(name));
    }
    let out = work.path().join("out");
    let mut runs = Vec::new();
    for _ in 0..20 {
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir(&out).unwrap();
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_portables-generator"))
            .arg("--root")
            .arg(&all)
            .arg(&out)
            .env("SYSTEMD_LOG_TARGET", "console")
            .env("SYSTEMD_LOG_LEVEL", "err")
            .status()
            .unwrap();
        runs.push(start.elapsed());
        assert!(status.success() || status.code() == Some(1));
    }
    let n = kinds(&trees).len();
    let whole = median(runs);
    println!(
        "whole generator run over {n} images (one of each kind above): {:.2} ms median of 20, {:.0} µs per image",
        whole.as_secs_f64() * 1e3,
        whole.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "peak RSS: one --dry-run of the release binary over a root holding that image alone; \
         +N over an empty root ({baseline_rss} KiB; this benchmark was {own} KiB when spawning)"
    );
}
