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
    let mut status = 0;
    // SAFETY: rusage is plain data filled by the kernel; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    usage.ru_maxrss
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
    let baseline_rss = peak_rss_kib(&empty);

    println!("Reading one image: open, os-release, matching units ({ROUNDS} rounds, median)");
    println!(
        "{:<18} {:>10} {:>8} {:>14} {:>10}",
        "image", "median", "ratio", "peak RSS", "units"
    );
    let mut base = None;
    for (i, (label, args, file)) in kinds(&trees).into_iter().enumerate() {
        let root = work.path().join(format!("root{i}"));
        let dest = root.join("var/lib/portables").join(file);
        build(&repo, &args, &dest);
        let root = Root::new(&root);
        let found = discover(&root);
        let image = found.images.first().expect("image discovered");
        let mut times = Vec::with_capacity(ROUNDS);
        let mut units = 0;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let read = read_image(&root, image).unwrap_or_else(|e| panic!("{label}: {e}"));
            times.push(start.elapsed());
            units = read.attachment.units.len();
        }
        let m = median(times);
        let base = *base.get_or_insert(m);
        let rss = peak_rss_kib(root.dir());
        println!(
            "{:<18} {:>8.1}µs {:>7.1}x {:>8} KiB (+{:>4}) {:>5}",
            label,
            m.as_secs_f64() * 1e6,
            m.as_secs_f64() / base.as_secs_f64(),
            rss,
            rss - baseline_rss,
            units
        );
    }
    println!(
        "(peak RSS of a dry run of the release binary over a root holding that image alone; +N is over an empty root, {baseline_rss} KiB)"
    );
}
