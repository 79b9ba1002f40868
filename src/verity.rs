//! Whether an image carries dm-verity data that systemd 252's PID 1 will use when it
//! starts a `RootImage=` service, so that `RequireVerity=yes` can refuse images without.
//!
//! PID 1 does, in `setup_namespace()` (src/core/namespace.c): `verity_settings_load()`
//! for the sidecar files, `dissect_image()` for the partitions, then
//! `dissected_image_load_verity_sig_partition()` and `dissected_image_decrypt()`
//! (src/shared/dissect-image.c). What follows is read from the v252 sources (Debian's
//! 252.39): verity is set up only when the root hash is known, from a sidecar file or a
//! signature partition, and the hash tree is found, in a `.verity` file for an image
//! without a partition table or in a verity partition otherwise. A verity partition alone
//! is mounted without verity. A hash that cannot be used where systemd insists on using it
//! (a partitioned image without the matching verity partition, a `.verity` file next to a
//! partition table) makes the service fail to start: [`detect`] reports those as errors.
//!
//! Not looked at:
//! - the `user.verity.roothash` and `user.verity.usrhash` extended attributes, which
//!   systemd reads before the sidecar files: reading an xattr needs `getxattr(2)`, which
//!   the standard library does not wrap and this crate may not call (`forbid(unsafe_code)`).
//!   An image whose hash is only in an xattr is reported without it, which for
//!   `RequireVerity=` errs on the side of refusing;
//! - `RootHash=`, `RootHashSignature=` and `RootVerity=` in the unit: the generator writes
//!   none;
//! - `$SYSTEMD_DISSECT_VERITY_SIDECAR`, `…_EMBEDDED` and `…_SIGNATURE` in PID 1's
//!   environment, which switch parts of this off;
//! - the JSON inside a signature partition, and whether a signature would validate: a bad
//!   one stops the service from starting, it never lets it run unverified.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::image::FsError;
use crate::image::chase::Tree;
use crate::image::dir::DirFs;
use crate::image::open::Opened;
use crate::image::partition::Selection;
use crate::image::partition::verity::{HashFor, verity_parts};

/// Longest `.roothash`/`.usrhash` file read; a SHA-512 hash takes 128 hex digits.
pub const MAX_HASH_FILE: u64 = 4096;
/// Longest `.p7s` signature file accepted; real ones are about 2 KiB.
pub const MAX_SIGNATURE_FILE: u64 = 64 * 1024;
/// systemd refuses signature partitions larger than this (`EFBIG`).
const MAX_SIG_PARTITION: u64 = 4 * 1024 * 1024;
/// systemd takes the partition UUIDs from the hash's first and last 16 bytes.
const UUID_BYTES: usize = 16;

/// The verity data PID 1 will use for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verity {
    /// A root (or `/usr`) verity partition matching the chosen data partition.
    Partition {
        /// Type name of the data partition, e.g. `root-x86-64`; the verity partition is
        /// that name with `-verity` appended.
        data: &'static str,
        /// A `…-verity-sig` partition gives the root hash and its signature.
        signed: bool,
        /// The `.roothash` or `.usrhash` file the root hash is read from (host path).
        hash_file: Option<PathBuf>,
        /// The `.roothash.p7s` or `.usrhash.p7s` signature file (host path).
        signature: Option<PathBuf>,
    },
    /// Sidecar files beside an image without a partition table: those systemd loads
    /// (host paths, without `--root`).
    Sidecars {
        /// The `.roothash` file: a root hash for the root file system.
        roothash: Option<PathBuf>,
        /// The `.usrhash` file, where there is no `.roothash`: a root hash for `/usr`.
        usrhash: Option<PathBuf>,
        /// The `.verity` file: the hash tree.
        verity: Option<PathBuf>,
        /// The `.p7s` signature of the root hash.
        signature: Option<PathBuf>,
    },
    /// No verity data at all.
    None,
}

/// The verity data systemd will use for the image at `image_path` (the host path
/// `RootImage=` names, e.g. `/var/lib/portables/foo_1.2.raw`), opened as `image`;
/// `real_path` is the same below `--root`, where its sidecar files are looked up.
/// Directories have none. The error is one line without the image name: a sidecar file
/// systemd would fail on, or a layout with which the service could not start.
pub fn detect(image_path: &Path, real_path: &Path, image: &Opened) -> Result<Verity, String> {
    let Some(partitions) = image.partitions() else {
        return Ok(Verity::None);
    };
    let side = load_sidecars(image_path, real_path)?;
    let hash = side.hash.as_ref().map(|h| (h.bytes.as_slice(), h.target));

    match partitions.selection {
        Selection::Whole => Ok(single_file_system(side)),
        Selection::Parts { .. } => {
            if let Some(v) = &side.verity {
                return Err(format!(
                    "{} is used only for images without a partition table, and systemd refuses to start a service from this one with it",
                    name(v)
                ));
            }
            let Some(parts) = verity_parts(partitions, hash)? else {
                return match &side.hash {
                    Some(h) => Err(format!(
                        "{} gives a root hash, but the image has no {} verity partition, so systemd cannot start a service from it",
                        name(&h.host),
                        what(h.target)
                    )),
                    None => Ok(Verity::None),
                };
            };
            let for_usr = parts.data.type_name.starts_with("usr-");
            // Without a hash from a file, systemd 252 reads only the root's signature partition.
            let signed = parts.sig.is_some() && (hash.is_some() || !for_usr);
            if signed
                && side.signature.is_none()
                && let Some(sig) = &parts.sig
                && sig.size > MAX_SIG_PARTITION
            {
                return Err(format!(
                    "signature partition {} has {} bytes, more than the {MAX_SIG_PARTITION} systemd reads",
                    sig.number, sig.size
                ));
            }
            Ok(Verity::Partition {
                data: parts.data.type_name,
                signed,
                hash_file: side.hash.map(|h| h.host),
                signature: side.signature,
            })
        }
    }
}

/// One line for messages, e.g. "verity partition root-x86-64-verity (signed)",
/// "foo.roothash + foo.verity", "no verity data"; says what is missing when systemd
/// would not verify the image.
pub fn describe(v: &Verity) -> String {
    match v {
        Verity::None => "no verity data".to_string(),
        Verity::Partition {
            data,
            signed,
            hash_file,
            signature,
        } => {
            let mut s = format!("verity partition {data}-verity");
            for f in [hash_file, signature].into_iter().flatten() {
                s.push_str(" + ");
                s.push_str(&name(f));
            }
            if *signed {
                s.push_str(" (signed)");
            } else if hash_file.is_none() {
                let file = if data.starts_with("usr-") {
                    ".usrhash"
                } else {
                    ".roothash"
                };
                s.push_str(&format!(
                    " without a root hash (no signature partition or {file} file)"
                ));
            }
            s
        }
        Verity::Sidecars {
            roothash,
            usrhash,
            verity,
            signature,
        } => {
            let names: Vec<String> = [roothash, usrhash, signature, verity]
                .into_iter()
                .flatten()
                .map(|p| name(p))
                .collect();
            let mut s = names.join(" + ");
            if usrhash.is_some() {
                s.push_str(" (a /usr hash is only used with a /usr partition)");
            } else if roothash.is_none() {
                s.push_str(" without a root hash (no .roothash file)");
            } else if verity.is_none() {
                s.push_str(" without a hash tree (no .verity file)");
            }
            s
        }
    }
}

/// Whether systemd will verify the image with this: the root hash is known (a sidecar
/// file, or a signature partition) and the hash tree is found (a verity partition, or
/// for an image without a partition table a `.verity` file). systemd 252 does not set up
/// verity from a verity partition alone, and uses a `.usrhash` only with a `/usr`
/// partition.
pub fn is_enforced(v: &Verity) -> bool {
    match v {
        Verity::None => false,
        Verity::Partition {
            signed, hash_file, ..
        } => *signed || hash_file.is_some(),
        Verity::Sidecars {
            roothash, verity, ..
        } => roothash.is_some() && verity.is_some(),
    }
}

fn what(target: HashFor) -> &'static str {
    match target {
        HashFor::Root => "root",
        HashFor::Usr => "/usr",
    }
}

/// The file name of a sidecar, as messages show it.
fn name(p: &Path) -> String {
    p.file_name()
        .unwrap_or(p.as_os_str())
        .to_string_lossy()
        .into_owned()
}

fn single_file_system(side: Loaded) -> Verity {
    let (roothash, usrhash) = match side.hash {
        Some(Hash {
            target: HashFor::Root,
            host,
            ..
        }) => (Some(host), None),
        Some(Hash {
            target: HashFor::Usr,
            host,
            ..
        }) => (None, Some(host)),
        None => (None, None),
    };
    if roothash.is_none() && usrhash.is_none() && side.verity.is_none() {
        return Verity::None;
    }
    Verity::Sidecars {
        roothash,
        usrhash,
        verity: side.verity,
        signature: side.signature,
    }
}

// --- sidecar files -------------------------------------------------------------------

struct Hash {
    bytes: Vec<u8>,
    target: HashFor,
    /// The file it came from, as a host path.
    host: PathBuf,
}

/// What `verity_settings_load()` finds beside the image.
#[derive(Default)]
struct Loaded {
    hash: Option<Hash>,
    signature: Option<PathBuf>,
    verity: Option<PathBuf>,
}

/// Where sidecars are looked up: a tree over the `--root` directory, so that symlinks
/// resolve as on the booted system, and the image's path in it.
struct Lookup {
    tree: Tree,
    image: PathBuf,
}

impl Lookup {
    fn new(image_path: &Path, real_path: &Path) -> Lookup {
        if let Ok(rel) = image_path.strip_prefix("/")
            && real_path.ends_with(rel)
            && let Some(root) = real_path.ancestors().nth(rel.components().count())
        {
            return Lookup {
                tree: Tree::new(Box::new(DirFs::new(root))),
                image: image_path.to_path_buf(),
            };
        }
        // Not a --root layout: read beside the real path, outside any root.
        Lookup {
            tree: Tree::new(Box::new(DirFs::new(Path::new("/")))),
            image: real_path.to_path_buf(),
        }
    }
}

/// systemd's `build_auxiliary_path()`: the `.raw` suffix replaced by `suffix`. In v252 a
/// path not ending in `.raw` yields an empty path (it joins a NULL pointer), so such
/// images, block devices among them, have no sidecars at all.
fn auxiliary(path: &Path, suffix: &str) -> Option<PathBuf> {
    let stem = path.as_os_str().as_bytes().strip_suffix(b".raw")?;
    let mut p = stem.to_vec();
    p.extend_from_slice(suffix.as_bytes());
    Some(PathBuf::from(std::ffi::OsString::from_vec(p)))
}

/// systemd's `is_device_path()`: sidecars are not looked for beside `/dev/…` or `/sys/…`.
fn is_device_path(path: &Path) -> bool {
    ["/dev", "/sys"].iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_ok_and(|rest| !rest.as_os_str().is_empty())
    })
}

/// The sidecar files `verity_settings_load()` would load, in its order: the root hash
/// (`.roothash`, else `.usrhash`); only with a hash, its signature; always `.verity`.
fn load_sidecars(image_path: &Path, real_path: &Path) -> Result<Loaded, String> {
    let mut loaded = Loaded::default();
    if is_device_path(image_path) || auxiliary(image_path, "").is_none() {
        return Ok(loaded);
    }
    let look = Lookup::new(image_path, real_path);
    let paths = |suffix: &str| -> Option<(PathBuf, PathBuf)> {
        Some((
            auxiliary(&look.image, suffix)?,
            auxiliary(image_path, suffix)?,
        ))
    };

    for (suffix, target) in [(".roothash", HashFor::Root), (".usrhash", HashFor::Usr)] {
        let Some((at, host)) = paths(suffix) else {
            continue;
        };
        if let Some(bytes) = read_hash(&look.tree, &at, &host)? {
            loaded.hash = Some(Hash {
                bytes,
                target,
                host,
            });
            break;
        }
    }

    if let Some(hash) = &loaded.hash {
        let suffix = match hash.target {
            HashFor::Root => ".roothash.p7s",
            HashFor::Usr => ".usrhash.p7s",
        };
        if let Some((at, host)) = paths(suffix) {
            match look.tree.read_file(&at, MAX_SIGNATURE_FILE) {
                Err(FsError::NotFound) => {}
                Err(e) => return Err(format!("cannot read {}: {e}", name(&host))),
                Ok(data) if data.is_empty() => {
                    return Err(format!(
                        "{} is empty, and systemd refuses empty signatures",
                        name(&host)
                    ));
                }
                Ok(_) => loaded.signature = Some(host),
            }
        }
    }

    if let Some((at, host)) = paths(".verity") {
        // systemd only checks that it exists (access(F_OK)), whatever it is.
        match look.tree.resolve(&at, true) {
            Ok(_) => loaded.verity = Some(host),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(format!("cannot access {}: {e}", name(&host))),
        }
    }
    Ok(loaded)
}

fn read_hash(tree: &Tree, at: &Path, host: &Path) -> Result<Option<Vec<u8>>, String> {
    match tree.read_file(at, MAX_HASH_FILE) {
        Err(FsError::NotFound) => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", name(host))),
        Ok(data) => parse_hash(&data)
            .map(Some)
            .map_err(|why| format!("{} {why}", name(host))),
    }
}

/// The root hash in a `.roothash`/`.usrhash` file as systemd reads it: the first line
/// (`read_one_line_file()`: ended by `\n`, `\r` or NUL), hex digits in either case with
/// any whitespace between them ignored (`unhexmem()`), at least 16 bytes, and first and
/// last 16 bytes not all zero, since they name partition UUIDs (`dissect_image()`).
fn parse_hash(data: &[u8]) -> Result<Vec<u8>, String> {
    let line = data
        .split(|&b| matches!(b, b'\n' | b'\r' | 0))
        .next()
        .unwrap_or_default();
    let mut digits = Vec::with_capacity(line.len());
    for (i, &b) in line.iter().enumerate() {
        if matches!(b, b' ' | b'\t') {
            continue;
        }
        // to_digit(16) is at most 15, so always a u8.
        let Some(d) = char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
        else {
            let shown = if b.is_ascii_graphic() {
                format!("{:?}", char::from(b))
            } else {
                format!("byte 0x{b:02x}")
            };
            return Err(format!(
                "is not a hexadecimal root hash ({shown} at offset {i})"
            ));
        };
        digits.push(d);
    }
    if digits.is_empty() {
        return Err("is empty, and systemd refuses an empty root hash".into());
    }
    if digits.len() % 2 != 0 {
        return Err(format!(
            "has an odd number of hexadecimal digits ({}), and systemd refuses it",
            digits.len()
        ));
    }
    let bytes: Vec<u8> = digits.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect();
    if bytes.len() < UUID_BYTES {
        return Err(format!(
            "holds a root hash of {} bytes, fewer than the {UUID_BYTES} systemd requires",
            bytes.len()
        ));
    }
    let zero = |half: Option<&[u8; UUID_BYTES]>| half.is_some_and(|h| h.iter().all(|&b| b == 0));
    if zero(bytes.first_chunk()) || zero(bytes.last_chunk()) {
        return Err(
            "holds a root hash whose first or last 16 bytes are zero, which systemd refuses".into(),
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::fixture::tool;
    use crate::image::open::{ImageKind, open_image};
    use std::fs::{self, File};
    use std::os::unix::fs::{FileExt, symlink};
    use std::process::Command;

    const ROOT_X86_64: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
    const ROOT_X86_64_VERITY: &str = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5";
    const ROOT_X86_64_VERITY_SIG: &str = "41092b05-9fc8-4523-994f-2def0408b176";
    const HASH: &str = "9dc96763ea7f63f0643a34adcabc72881dd8c6560492d1861dd9de0531b63fd6";

    fn hex(s: &str) -> Vec<u8> {
        parse_hash(s.as_bytes()).unwrap()
    }

    #[test]
    fn hash_files_as_systemd_reads_them() {
        let want = hex(HASH);
        assert_eq!(want.len(), 32);
        for text in [
            format!("{HASH}\n"),
            format!("{HASH}\r\n"),
            format!("{}\n", HASH.to_uppercase()),
            format!("  {} {}\t\n", &HASH[..20], &HASH[20..]),
            format!("{HASH}\ngarbage that is never read"),
            format!("{HASH}\0junk"),
        ] {
            assert_eq!(parse_hash(text.as_bytes()).as_ref(), Ok(&want), "{text:?}");
        }
        let err = |s: &str| parse_hash(s.as_bytes()).unwrap_err();
        assert!(err("").contains("empty"));
        assert!(err("\nabc").contains("empty"));
        assert!(err("xyz\n").contains("'x' at offset 0"));
        assert!(err(&format!("{HASH}g")).contains("'g' at offset 64"));
        assert!(err(&format!("{HASH}0")).contains("odd number"));
        assert!(err("00112233445566778899aabbccddee").contains("15 bytes"));
        assert!(err(&format!("{}{}", "0".repeat(32), &HASH[32..])).contains("zero"));
        assert!(err(&format!("{}{}", &HASH[..32], "0".repeat(32))).contains("zero"));
        assert!(
            parse_hash("é".as_bytes())
                .unwrap_err()
                .contains("byte 0xc3")
        );
    }

    #[test]
    fn sidecar_names_replace_raw() {
        let aux = |p: &str, s: &str| auxiliary(Path::new(p), s);
        assert_eq!(
            aux("/var/lib/portables/foo_1.2.raw", ".roothash.p7s"),
            Some(PathBuf::from("/var/lib/portables/foo_1.2.roothash.p7s"))
        );
        assert_eq!(aux("/var/lib/portables/foo.img", ".roothash"), None);
        assert_eq!(aux("/var/lib/portables/foo.RAW", ".roothash"), None);
        assert!(is_device_path(Path::new("/dev/sdb")));
        assert!(is_device_path(Path::new("/sys/block/x.raw")));
        assert!(!is_device_path(Path::new("/dev")));
        assert!(!is_device_path(Path::new("/devices/foo.raw")));
    }

    #[test]
    fn describe_and_enforcement() {
        let p = |s: &str| Some(PathBuf::from(format!("/var/lib/portables/{s}")));
        let cases = [
            (Verity::None, false, "no verity data"),
            (
                Verity::Partition {
                    data: "root-x86-64",
                    signed: true,
                    hash_file: None,
                    signature: None,
                },
                true,
                "verity partition root-x86-64-verity (signed)",
            ),
            (
                Verity::Partition {
                    data: "root-x86-64",
                    signed: false,
                    hash_file: p("foo.roothash"),
                    signature: p("foo.roothash.p7s"),
                },
                true,
                "verity partition root-x86-64-verity + foo.roothash + foo.roothash.p7s",
            ),
            (
                Verity::Partition {
                    data: "usr-x86-64",
                    signed: false,
                    hash_file: None,
                    signature: None,
                },
                false,
                "verity partition usr-x86-64-verity without a root hash (no signature partition or .usrhash file)",
            ),
            (
                Verity::Sidecars {
                    roothash: p("foo.roothash"),
                    usrhash: None,
                    verity: p("foo.verity"),
                    signature: None,
                },
                true,
                "foo.roothash + foo.verity",
            ),
            (
                Verity::Sidecars {
                    roothash: p("foo.roothash"),
                    usrhash: None,
                    verity: None,
                    signature: None,
                },
                false,
                "foo.roothash without a hash tree (no .verity file)",
            ),
            (
                Verity::Sidecars {
                    roothash: None,
                    usrhash: None,
                    verity: p("foo.verity"),
                    signature: None,
                },
                false,
                "foo.verity without a root hash (no .roothash file)",
            ),
            (
                Verity::Sidecars {
                    roothash: None,
                    usrhash: p("foo.usrhash"),
                    verity: p("foo.verity"),
                    signature: p("foo.usrhash.p7s"),
                },
                false,
                "foo.usrhash + foo.usrhash.p7s + foo.verity (a /usr hash is only used with a /usr partition)",
            ),
        ];
        for (v, enforced, text) in cases {
            assert_eq!(is_enforced(&v), enforced, "{v:?}");
            assert_eq!(describe(&v), text);
        }
    }

    /// A `--root` directory with the portables directory in it.
    struct Layout {
        root: tempfile::TempDir,
    }

    impl Layout {
        fn new() -> Layout {
            let root = tempfile::tempdir().unwrap();
            fs::create_dir_all(root.path().join("var/lib/portables")).unwrap();
            Layout { root }
        }

        fn real(&self, name: &str) -> PathBuf {
            self.root.path().join("var/lib/portables").join(name)
        }

        fn write(&self, name: &str, data: impl AsRef<[u8]>) {
            fs::write(self.real(name), data).unwrap();
        }

        fn remove(&self, name: &str) {
            fs::remove_file(self.real(name)).unwrap();
        }

        fn detect(&self, image: &str) -> Result<Verity, String> {
            let host = PathBuf::from("/var/lib/portables").join(image);
            open_and_detect(&host, &self.real(image))
        }
    }

    /// [`detect`] for the image at `real`, opened as the generator opens it.
    fn open_and_detect(host: &Path, real: &Path) -> Result<Verity, String> {
        let kind = if real.is_dir() {
            ImageKind::Directory
        } else {
            ImageKind::Raw
        };
        detect(host, real, &open_image(real, kind, true)?)
    }

    fn host(name: &str) -> Option<PathBuf> {
        Some(PathBuf::from("/var/lib/portables").join(name))
    }

    /// A tiny squashfs, padded to whole 4 KiB blocks as veritysetup wants its data.
    fn squashfs(dir: &Path, out: &Path) -> Option<()> {
        let Some(mksquashfs) = tool("mksquashfs") else {
            eprintln!("mksquashfs is not installed; skipping");
            return None;
        };
        let tree = dir.join("tree");
        fs::create_dir_all(tree.join("usr/lib/systemd/system")).unwrap();
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("usr/lib/os-release"), "ID=test\n").unwrap();
        fs::write(
            tree.join("usr/lib/systemd/system/foo.service"),
            "[Service]\nExecStart=/bin/true\n",
        )
        .unwrap();
        // Enough data for the hash tree to have a level below the root.
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
            .collect();
        fs::write(tree.join("noise"), noise).unwrap();
        let run = Command::new(mksquashfs)
            .arg(&tree)
            .arg(out)
            .args(["-all-root", "-noappend", "-quiet"])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "mksquashfs failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let len = fs::metadata(out).unwrap().len();
        File::options()
            .write(true)
            .open(out)
            .unwrap()
            .set_len(len.div_ceil(4096) * 4096)
            .unwrap();
        Some(())
    }

    /// `veritysetup format DATA HASHES`; the root hash in hex.
    fn veritysetup(data: &Path, hashes: &Path) -> Option<String> {
        let Some(veritysetup) = tool("veritysetup") else {
            eprintln!("veritysetup is not installed (apt-get install cryptsetup-bin); skipping");
            return None;
        };
        let out = Command::new(veritysetup)
            .arg("format")
            .arg(data)
            .arg(hashes)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "veritysetup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let hash = text
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .map(|h| h.trim().to_string());
        Some(hash.expect("veritysetup printed no root hash"))
    }

    #[test]
    fn directory_images_have_none() {
        let l = Layout::new();
        fs::create_dir(l.real("foo")).unwrap();
        // Even with sidecars beside it: RootDirectory= knows no verity.
        l.write("foo.roothash", HASH);
        assert_eq!(l.detect("foo"), Ok(Verity::None));
    }

    #[test]
    fn squashfs_with_sidecars() {
        let l = Layout::new();
        let img = l.real("foo_1.2.raw");
        if squashfs(l.root.path(), &img).is_none() {
            return;
        }
        assert_eq!(l.detect("foo_1.2.raw"), Ok(Verity::None));
        let Some(hash) = veritysetup(&img, &l.real("foo_1.2.verity")) else {
            return;
        };

        // The hash tree alone is not used.
        let v = l.detect("foo_1.2.raw").unwrap();
        assert_eq!(
            v,
            Verity::Sidecars {
                roothash: None,
                usrhash: None,
                verity: host("foo_1.2.verity"),
                signature: None
            }
        );
        assert!(!is_enforced(&v));

        l.write("foo_1.2.roothash", format!("{hash}\n"));
        let v = l.detect("foo_1.2.raw").unwrap();
        assert_eq!(
            v,
            Verity::Sidecars {
                roothash: host("foo_1.2.roothash"),
                usrhash: None,
                verity: host("foo_1.2.verity"),
                signature: None
            }
        );
        assert!(is_enforced(&v));
        assert_eq!(describe(&v), "foo_1.2.roothash + foo_1.2.verity");

        // A signature is loaded only with a hash, and an empty one is refused.
        l.write("foo_1.2.roothash.p7s", b"");
        let err = l.detect("foo_1.2.raw").unwrap_err();
        assert!(err.contains("foo_1.2.roothash.p7s is empty"), "{err}");
        l.write("foo_1.2.roothash.p7s", b"\x30\x82");
        let v = l.detect("foo_1.2.raw").unwrap();
        assert!(is_enforced(&v));
        assert_eq!(
            describe(&v),
            "foo_1.2.roothash + foo_1.2.roothash.p7s + foo_1.2.verity"
        );
        l.remove("foo_1.2.roothash.p7s");

        // A .usrhash is ignored when a .roothash exists, and not enough on its own.
        l.write("foo_1.2.usrhash", HASH);
        assert!(is_enforced(&l.detect("foo_1.2.raw").unwrap()));
        l.remove("foo_1.2.roothash");
        let v = l.detect("foo_1.2.raw").unwrap();
        assert_eq!(
            v,
            Verity::Sidecars {
                roothash: None,
                usrhash: host("foo_1.2.usrhash"),
                verity: host("foo_1.2.verity"),
                signature: None
            }
        );
        assert!(!is_enforced(&v));
        l.remove("foo_1.2.usrhash");

        // Without the hash tree the hash is loaded but unused.
        l.write("foo_1.2.roothash", &hash);
        l.remove("foo_1.2.verity");
        let v = l.detect("foo_1.2.raw").unwrap();
        assert!(!is_enforced(&v));
        assert_eq!(
            describe(&v),
            "foo_1.2.roothash without a hash tree (no .verity file)"
        );

        // Only the existence of .verity is checked; a dangling link is absent, as for access().
        symlink("nowhere", l.real("foo_1.2.verity")).unwrap();
        assert!(!is_enforced(&l.detect("foo_1.2.raw").unwrap()));
        l.remove("foo_1.2.verity");
        fs::create_dir(l.real("foo_1.2.verity")).unwrap();
        assert!(is_enforced(&l.detect("foo_1.2.raw").unwrap()));
        fs::remove_dir(l.real("foo_1.2.verity")).unwrap();

        // Symlinked sidecars resolve inside --root.
        fs::create_dir_all(l.root.path().join("srv")).unwrap();
        fs::write(l.root.path().join("srv/hash"), &hash).unwrap();
        l.remove("foo_1.2.roothash");
        symlink("/srv/hash", l.real("foo_1.2.roothash")).unwrap();
        veritysetup(&img, &l.real("foo_1.2.verity"));
        assert!(is_enforced(&l.detect("foo_1.2.raw").unwrap()));

        // A hash file that is not hex is an error, not "no verity".
        l.remove("foo_1.2.roothash");
        l.write("foo_1.2.roothash", "Root hash: 9dc9\n");
        let err = l.detect("foo_1.2.raw").unwrap_err();
        assert!(
            err.starts_with("foo_1.2.roothash is not a hexadecimal root hash"),
            "{err}"
        );
        l.write("foo_1.2.roothash", vec![b'a'; 5000]);
        let err = l.detect("foo_1.2.raw").unwrap_err();
        assert!(
            err.contains("foo_1.2.roothash") && err.contains("too large"),
            "{err}"
        );
    }

    #[test]
    fn sidecars_only_beside_raw_files_outside_dev() {
        let l = Layout::new();
        let img = l.real("foo.raw");
        if squashfs(l.root.path(), &img).is_none() {
            return;
        }
        l.write("foo.roothash", HASH);
        l.write("foo.verity", b"");
        assert!(is_enforced(&l.detect("foo.raw").unwrap()));
        // As for a block device named by its /dev path: systemd looks for no sidecars.
        assert_eq!(
            open_and_detect(Path::new("/dev/disk/by-label/foo.raw"), &img),
            Ok(Verity::None)
        );
        // Not a --root layout: sidecars beside the real path.
        assert!(is_enforced(
            &open_and_detect(Path::new("/elsewhere/foo.raw"), &img).unwrap()
        ));
        fs::rename(&img, l.real("foo.img")).unwrap();
        assert_eq!(l.detect("foo.img"), Ok(Verity::None));
    }

    /// Partition `n` (1-based) of a GPT image written by sfdisk: start and size in bytes.
    fn sfdisk_gpt(img: &Path, parts: &[(&str, &str, u64)]) -> Option<Vec<(u64, u64)>> {
        let Some(sfdisk) = tool("sfdisk") else {
            eprintln!("sfdisk is not installed; skipping");
            return None;
        };
        // 1 MiB per partition, so every piece fits whatever the mkfs tools produce.
        let mut script = String::from("label: gpt\n");
        let mut extents = Vec::new();
        for (i, (ty, uuid, size)) in parts.iter().enumerate() {
            let start = 2048 + 4096 * i as u64;
            let sectors = size.div_ceil(512).max(1);
            script.push_str(&format!(
                "start={start}, size={sectors}, type={ty}, uuid={uuid}\n"
            ));
            extents.push((start * 512, sectors * 512));
        }
        let len = (2048 + 4096 * parts.len() as u64 + 2048) * 512;
        File::create(img).unwrap().set_len(len).unwrap();
        let mut child = Command::new(sfdisk)
            .arg("-q")
            .arg(img)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "sfdisk failed");
        Some(extents)
    }

    fn uuid_text(hex: &str) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    fn put(img: &Path, at: u64, data: &[u8]) {
        File::options()
            .write(true)
            .open(img)
            .unwrap()
            .write_all_at(data, at)
            .unwrap();
    }

    #[test]
    fn gpt_with_verity_partitions() {
        if crate::arch::native_arch() != Some("x86-64") {
            eprintln!("the partition types here are x86-64's; skipping");
            return;
        }
        let l = Layout::new();
        let work = l.root.path().join("work");
        fs::create_dir(&work).unwrap();
        let data = work.join("root.squashfs");
        if squashfs(&work, &data).is_none() {
            return;
        }
        let hashes = work.join("root.verity");
        let Some(hash) = veritysetup(&data, &hashes) else {
            return;
        };
        let data = fs::read(&data).unwrap();
        let hashes = fs::read(&hashes).unwrap();
        let (root_uuid, verity_uuid) =
            (uuid_text(&hash[..32]), uuid_text(&hash[hash.len() - 32..]));
        let sig = format!("{{\"rootHash\":\"{hash}\",\"signature\":\"MIIB\"}}");

        let img = l.real("foo_1.2.raw");
        let build = |with_verity: bool, with_sig: bool, root_uuid: &str| -> Option<()> {
            let mut parts = vec![(ROOT_X86_64, root_uuid, data.len() as u64)];
            if with_verity {
                parts.push((
                    ROOT_X86_64_VERITY,
                    verity_uuid.as_str(),
                    hashes.len() as u64,
                ));
            }
            if with_sig {
                parts.push((
                    ROOT_X86_64_VERITY_SIG,
                    "11111111-2222-4333-8444-555555555555",
                    4096,
                ));
            }
            let extents = sfdisk_gpt(&img, &parts)?;
            put(&img, extents[0].0, &data);
            if with_verity {
                put(&img, extents[1].0, &hashes);
            }
            if with_sig {
                put(&img, extents[extents.len() - 1].0, sig.as_bytes());
            }
            Some(())
        };

        // Root alone: nothing; a .roothash for it cannot be used, and systemd fails.
        if build(false, false, &root_uuid).is_none() {
            return;
        }
        assert_eq!(l.detect("foo_1.2.raw"), Ok(Verity::None));
        l.write("foo_1.2.roothash", &hash);
        let err = l.detect("foo_1.2.raw").unwrap_err();
        assert!(err.contains("no root verity partition has it"), "{err}");
        l.remove("foo_1.2.roothash");

        // A verity partition without any root hash is not used.
        build(true, false, &root_uuid);
        let v = l.detect("foo_1.2.raw").unwrap();
        assert_eq!(
            v,
            Verity::Partition {
                data: "root-x86-64",
                signed: false,
                hash_file: None,
                signature: None
            }
        );
        assert!(!is_enforced(&v));

        // With the hash in a sidecar it is.
        l.write("foo_1.2.roothash", format!("{hash}\n"));
        let v = l.detect("foo_1.2.raw").unwrap();
        assert_eq!(
            v,
            Verity::Partition {
                data: "root-x86-64",
                signed: false,
                hash_file: host("foo_1.2.roothash"),
                signature: None
            }
        );
        assert!(is_enforced(&v));
        assert_eq!(
            describe(&v),
            "verity partition root-x86-64-verity + foo_1.2.roothash"
        );

        // A .verity file next to a partition table makes systemd fail (EBADR).
        l.write("foo_1.2.verity", &hashes);
        let err = l.detect("foo_1.2.raw").unwrap_err();
        assert!(err.contains("without a partition table"), "{err}");
        l.remove("foo_1.2.verity");

        // The hash must name the partitions by UUID.
        l.write("foo_1.2.roothash", HASH);
        let err = l.detect("foo_1.2.raw").unwrap_err();
        assert!(err.contains("no root partition has it"), "{err}");
        l.remove("foo_1.2.roothash");
        build(true, false, "11111111-2222-4333-8444-666666666666");
        l.write("foo_1.2.roothash", &hash);
        assert!(l.detect("foo_1.2.raw").is_err());
        l.remove("foo_1.2.roothash");

        // A signature partition gives the hash.
        build(true, true, &root_uuid);
        let v = l.detect("foo_1.2.raw").unwrap();
        assert_eq!(
            v,
            Verity::Partition {
                data: "root-x86-64",
                signed: true,
                hash_file: None,
                signature: None
            }
        );
        assert!(is_enforced(&v));
        assert_eq!(describe(&v), "verity partition root-x86-64-verity (signed)");

        // ...and is refused without the verity partition it signs.
        build(false, true, &root_uuid);
        let err = l.detect("foo_1.2.raw").unwrap_err();
        assert!(err.contains("has no root verity partition"), "{err}");
    }
}
