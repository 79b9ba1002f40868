//! Partition tables: GPT (512- and 4096-byte sectors) and MBR, and the choice of the
//! root and `/usr` partitions by the Discoverable Partitions Specification.
//!
//! The choice follows systemd's `dissect_image()` (src/shared/dissect-image.c) with the
//! flags portable attach passes (`GENERIC_ROOT`, `REQUIRE_ROOT`, `USR_NO_ROOT`), except
//! where noted at [`dissect`]. Everything read from the image is untrusted: sizes and
//! offsets are checked before use and nothing is allocated from an unchecked size field.
//!
//! The tables are read in `gpt` and `mbr`; [`types`] knows the partition types, and
//! [`verity`] pairs dm-verity partitions with the partition chosen here.

mod field;
#[cfg(test)]
mod fixture;
mod gpt;
mod mbr;
pub mod types;
pub mod verity;

use std::cmp::Ordering;

use gpt::{Gpt, GptEntry, read_gpt};
use mbr::read_mbr;
use types::{PartType, Role};

use super::probe::{self, FsType};
use super::source::Source;
use crate::arch::{native_arch, secondary_arch};
use crate::verscmp::strverscmp_improved;

/// A partition chosen to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based partition number, as `/dev/loopNpX` would name it.
    pub number: u32,
    /// Byte offset inside the image.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// GPT partition label (empty for MBR).
    pub label: String,
    /// Human name of the partition type, e.g. `root-x86-64`, `usr-arm64`, `linux-generic`.
    pub type_name: &'static str,
}

/// What the partition table says to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// No partition table: the whole image is one file system.
    Whole,
    /// Partitions chosen by the Discoverable Partitions Specification; at least one is set.
    Parts {
        /// The root partition chosen, if any.
        root: Option<Part>,
        /// The `/usr` partition chosen, if any.
        usr: Option<Part>,
    },
}

/// What the partition table of an image says, read once: which partitions to read, and
/// the GPT they were chosen from, in which [`verity::verity_parts`] finds the verity
/// partitions that go with them.
#[derive(Debug)]
pub struct Dissected {
    /// What to read.
    pub selection: Selection,
    /// `None` for an MBR or an image without a partition table.
    gpt: Option<Gpt>,
}

/// Read the partition table of the image in `src` and decide how to read the image. The
/// error is a one-line reason.
///
/// Order: a GPT (header at byte 512 or 4096), else a file system at offset 0
/// ([`Selection::Whole`]), else an MBR with one bootable Linux partition.
///
/// Deliberate differences from systemd:
/// - root or `/usr` partitions of an architecture that is neither the native nor the
///   secondary one are refused; systemd would fall back to them as a last resort;
/// - two candidates whose labels compare as the same version are refused; systemd
///   silently takes the first one in table order;
/// - a native-architecture root next to a secondary-architecture `/usr` is refused, as
///   systemd 253 and later do; systemd 252 silently ignored that `/usr`;
/// - a GPT whose primary header is damaged is refused; libblkid would try the backup
///   header at the end of the disk;
/// - logical partitions inside an extended MBR partition are not read, and an MBR
///   with an extended partition is refused.
pub fn dissect(src: &Source) -> Result<Dissected, String> {
    if let Some(gpt) = read_gpt(src)? {
        return Ok(Dissected {
            selection: choose_gpt(&gpt)?,
            gpt: Some(gpt),
        });
    }
    let selection = select_without_gpt(src)?;
    Ok(Dissected {
        selection,
        gpt: None,
    })
}

/// An image without a GPT: a file system at offset 0, else an MBR.
fn select_without_gpt(src: &Source) -> Result<Selection, String> {
    match probe::sniff(src) {
        Ok(FsType::Unknown) => {}
        Ok(_) => return Ok(Selection::Whole),
        Err(e) => return Err(format!("reading the image: {e}")),
    }
    if let Some(linux) = read_mbr(src)? {
        let root = Part {
            number: linux.number,
            offset: linux.offset,
            size: linux.end.saturating_sub(linux.offset),
            label: String::new(),
            type_name: "linux-generic",
        };
        return Ok(Selection::Parts {
            root: Some(root),
            usr: None,
        });
    }
    Err("no partition table or known file system found".to_string())
}

/// The GPT entry `e` as a partition to read, its extent in bytes.
fn gpt_part(gpt: &Gpt, e: &GptEntry, type_name: &'static str) -> Result<Part, String> {
    let range = || -> Option<(u64, u64)> {
        let offset = e.first_lba.checked_mul(gpt.sector_size)?;
        let sectors = e.last_lba.checked_sub(e.first_lba)?.checked_add(1)?;
        Some((offset, sectors.checked_mul(gpt.sector_size)?))
    };
    let (offset, size) =
        range().ok_or_else(|| format!("partition {} is out of range", e.number))?;
    Ok(Part {
        number: e.number,
        offset,
        size,
        label: e.label.clone(),
        type_name,
    })
}

/// Root or /usr: the native architecture's partitions, else the secondary one's; among
/// those the newest label wins, which is how DPS images do A/B updates.
fn pick<'a>(
    gpt: &'a Gpt,
    role: Role,
    what: &str,
) -> Result<Option<(&'a GptEntry, &'static PartType)>, String> {
    for arch in [native_arch(), secondary_arch()].into_iter().flatten() {
        let mut best: Option<(&GptEntry, &'static PartType)> = None;
        let mut tie: Option<&GptEntry> = None;
        for e in gpt.entries.iter().filter(|e| !e.no_auto()) {
            let Some(pt) = e
                .part_type()
                .filter(|t| t.role == role && t.arch == Some(arch))
            else {
                continue;
            };
            match best {
                None => best = Some((e, pt)),
                Some((b, _)) => match strverscmp_improved(e.label.as_bytes(), b.label.as_bytes()) {
                    Ordering::Greater => {
                        best = Some((e, pt));
                        tie = None;
                    }
                    Ordering::Equal => tie = Some(e),
                    Ordering::Less => {}
                },
            }
        }
        if let (Some((b, _)), Some(t)) = (best, tie) {
            return Err(format!(
                "multiple suitable {what} partitions: {} {:?} and {} {:?} have the same version",
                b.number, b.label, t.number, t.label
            ));
        }
        if best.is_some() {
            return Ok(best);
        }
    }
    Ok(None)
}

/// At most this many partitions are named in an error message, to keep it one line.
const MAX_LISTED: usize = 16;

fn found_list(gpt: &Gpt) -> String {
    if gpt.entries.is_empty() {
        return "the partition table is empty".to_string();
    }
    let mut names: Vec<String> = gpt
        .entries
        .iter()
        .take(MAX_LISTED)
        .map(|e| {
            let relevant = e.part_type().is_some_and(|t| t.role != Role::Other);
            if relevant && e.no_auto() {
                format!("{} (no-auto)", e.type_text())
            } else {
                e.type_text()
            }
        })
        .collect();
    if gpt.entries.len() > MAX_LISTED {
        names.push(format!("and {} more", gpt.entries.len() - MAX_LISTED));
    }
    format!("partitions found: {}", names.join(", "))
}

fn choose_gpt(gpt: &Gpt) -> Result<Selection, String> {
    let root = pick(gpt, Role::Root, "root")?;
    let usr = pick(gpt, Role::Usr, "/usr")?;
    if let (Some((r, rt)), Some((u, ut))) = (root, usr)
        && rt.arch != ut.arch
    {
        return Err(format!(
            "root partition {} ({}) and /usr partition {} ({}) are for different architectures",
            r.number, rt.name, u.number, ut.name
        ));
    }
    if root.is_some() || usr.is_some() {
        let root = root.map(|(e, t)| gpt_part(gpt, e, t.name)).transpose()?;
        let usr = usr.map(|(e, t)| gpt_part(gpt, e, t.name)).transpose()?;
        return Ok(Selection::Parts { root, usr });
    }

    let arch = native_arch().unwrap_or(std::env::consts::ARCH);
    // A typed root or /usr of a foreign architecture means the image is for another
    // machine, so a generic partition next to it is not its root.
    let foreign = gpt.entries.iter().any(|e| {
        !e.no_auto()
            && e.part_type()
                .is_some_and(|t| matches!(t.role, Role::Root | Role::Usr))
    });
    let generic: Vec<&GptEntry> = gpt
        .entries
        .iter()
        .filter(|e| !e.no_auto() && e.part_type().is_some_and(|t| t.role == Role::LinuxGeneric))
        .collect();
    match generic.as_slice() {
        [only] if !foreign => {
            let root = gpt_part(gpt, only, "linux-generic")?;
            Ok(Selection::Parts {
                root: Some(root),
                usr: None,
            })
        }
        [_, _, ..] if !foreign => {
            let numbers: Vec<String> = generic
                .iter()
                .take(MAX_LISTED)
                .map(|e| e.number.to_string())
                .collect();
            Err(format!(
                "multiple generic Linux partitions ({}) and no root or /usr partition for {arch}",
                numbers.join(", ")
            ))
        }
        _ => Err(format!(
            "no root or /usr partition for {arch} ({})",
            found_list(gpt)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::gpt::GPT_FLAG_NO_AUTO;
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::process::{Command, Stdio};

    fn select_bytes(img: &[u8]) -> Result<Selection, String> {
        dissect(&source(img)).map(|d| d.selection)
    }

    fn parts_of(sel: Result<Selection, String>) -> (Option<Part>, Option<Part>) {
        match sel {
            Ok(Selection::Parts { root, usr }) => (root, usr),
            other => panic!("expected partitions, got {other:?}"),
        }
    }

    fn err_of(sel: Result<Selection, String>) -> String {
        match sel {
            Err(e) => e,
            Ok(s) => panic!("expected an error, got {s:?}"),
        }
    }

    #[test]
    fn gpt_512_root() {
        let root = ty(Role::Root, native());
        let img = Layout::new(
            512,
            vec![part(ESP, 34, 63, "esp"), part(root, 64, 127, "r")],
        )
        .build();
        let (root, usr) = parts_of(select_bytes(&img));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.offset, root.size),
            (2, 64 * 512, 64 * 512)
        );
        assert_eq!(root.label, "r");
        assert_eq!(root.type_name, format!("root-{}", native()));
        assert_eq!(usr, None);
    }

    #[test]
    fn gpt_4096_root() {
        let root = ty(Role::Root, native());
        let l = Layout::new(4096, vec![part(root, 8, 40, "")]);
        assert_eq!(l.first_usable(), 6);
        let (root, _) = parts_of(select_bytes(&l.build()));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.offset, root.size),
            (1, 8 * 4096, 33 * 4096)
        );
    }

    #[test]
    fn typed_root_beats_generic() {
        let root = ty(Role::Root, native());
        let img = Layout::new(
            512,
            vec![part(GENERIC, 34, 63, ""), part(root, 64, 127, "")],
        )
        .build();
        let (root, _) = parts_of(select_bytes(&img));
        assert_eq!(root.unwrap().number, 2);
    }

    #[test]
    fn foreign_root_is_refused() {
        let root = ty(Role::Root, foreign());
        let img = Layout::new(512, vec![part(ESP, 34, 63, ""), part(root, 64, 127, "")]).build();
        assert_eq!(
            err_of(select_bytes(&img)),
            format!(
                "no root or /usr partition for {} (partitions found: esp, root-{})",
                native(),
                foreign()
            )
        );
        // Not even a generic partition stands in for the root of another machine.
        let img = Layout::new(
            512,
            vec![part(GENERIC, 34, 63, ""), part(root, 64, 127, "")],
        )
        .build();
        assert!(err_of(select_bytes(&img)).starts_with("no root or /usr partition for"));
    }

    #[test]
    fn unknown_types_are_named_by_uuid() {
        let odd = 0x21686148_6449_6e6f_744e_656564454649;
        let img = Layout::new(512, vec![part(odd, 34, 63, "")]).build();
        assert!(
            err_of(select_bytes(&img))
                .ends_with("(partitions found: 21686148-6449-6e6f-744e-656564454649)")
        );
        let img = Layout::new(512, vec![]).build();
        assert!(err_of(select_bytes(&img)).ends_with("(the partition table is empty)"));
    }

    #[test]
    fn usr_only() {
        let usr = ty(Role::Usr, native());
        let img = Layout::new(512, vec![part(usr, 34, 127, "usr_7")]).build();
        let (root, usr) = parts_of(select_bytes(&img));
        assert_eq!(root, None);
        let usr = usr.unwrap();
        assert_eq!((usr.offset, usr.label.as_str()), (34 * 512, "usr_7"));
        assert_eq!(usr.type_name, format!("usr-{}", native()));
    }

    #[test]
    fn root_and_usr() {
        let img = Layout::new(
            512,
            vec![
                part(ty(Role::Usr, native()), 34, 99, ""),
                part(ty(Role::Root, native()), 100, 127, ""),
            ],
        )
        .build();
        let (root, usr) = parts_of(select_bytes(&img));
        assert_eq!(root.unwrap().number, 2);
        assert_eq!(usr.unwrap().number, 1);
    }

    #[test]
    fn secondary_architecture() {
        let (Some(native), Some(second)) = (native_arch(), secondary_arch()) else {
            return;
        };
        let root2 = ty(Role::Root, second);
        let img = Layout::new(512, vec![part(root2, 34, 127, "")]).build();
        let (root, _) = parts_of(select_bytes(&img));
        assert_eq!(root.unwrap().type_name, format!("root-{second}"));

        // Native wins even with an older label.
        let img = Layout::new(
            512,
            vec![
                part(root2, 34, 63, "v9"),
                part(ty(Role::Root, native), 64, 127, "v1"),
            ],
        )
        .build();
        let (root, _) = parts_of(select_bytes(&img));
        assert_eq!(root.unwrap().number, 2);

        // A native root with a secondary /usr is a mixed image.
        let img = Layout::new(
            512,
            vec![
                part(ty(Role::Root, native), 34, 63, ""),
                part(ty(Role::Usr, second), 64, 127, ""),
            ],
        )
        .build();
        assert_eq!(
            err_of(select_bytes(&img)),
            format!(
                "root partition 1 (root-{native}) and /usr partition 2 (usr-{second}) are for different architectures"
            )
        );
    }

    #[test]
    fn newest_label_wins() {
        let root = ty(Role::Root, native());
        for (a, b, want) in [("root_1.2", "root_1.10", 2), ("root_1.10", "root_1.2", 1)] {
            let img = Layout::new(512, vec![part(root, 34, 63, a), part(root, 64, 127, b)]).build();
            let (r, _) = parts_of(select_bytes(&img));
            let r = r.unwrap();
            assert_eq!(r.number, want);
            assert_eq!(r.label, "root_1.10");
        }
        // Three-way, with the newest in the middle and a tie below it.
        let img = Layout::new(
            512,
            vec![
                part(root, 34, 63, "1"),
                part(root, 64, 95, "3"),
                part(root, 96, 127, "1"),
            ],
        )
        .build();
        assert_eq!(parts_of(select_bytes(&img)).0.unwrap().number, 2);
    }

    #[test]
    fn equal_labels_are_refused() {
        let root = ty(Role::Root, native());
        let img = Layout::new(
            512,
            vec![
                part(root, 34, 63, "root_1.2"),
                part(root, 64, 127, "root_1.2"),
            ],
        )
        .build();
        let e = err_of(select_bytes(&img));
        assert!(e.starts_with("multiple suitable root partitions"), "{e}");
        // Also when they only compare equal.
        let usr = ty(Role::Usr, native());
        let img = Layout::new(
            512,
            vec![part(usr, 34, 63, "1.02"), part(usr, 64, 127, "1.2")],
        )
        .build();
        assert!(err_of(select_bytes(&img)).starts_with("multiple suitable /usr partitions"));
    }

    #[test]
    fn no_auto_is_ignored() {
        let root = ty(Role::Root, native());
        let mut newer = part(root, 64, 127, "root_2");
        newer.attrs = GPT_FLAG_NO_AUTO;
        let img = Layout::new(512, vec![part(root, 34, 63, "root_1"), newer]).build();
        assert_eq!(parts_of(select_bytes(&img)).0.unwrap().label, "root_1");

        // A no-auto root leaves the generic fallback in place.
        let mut hidden = part(root, 64, 127, "");
        hidden.attrs = GPT_FLAG_NO_AUTO | 1 << 60;
        let img = Layout::new(512, vec![part(GENERIC, 34, 63, ""), hidden]).build();
        let root = parts_of(select_bytes(&img)).0.unwrap();
        assert_eq!((root.number, root.type_name), (1, "linux-generic"));

        // Only hidden partitions: the message says so.
        let mut hidden = part(ty(Role::Root, native()), 34, 63, "");
        hidden.attrs = GPT_FLAG_NO_AUTO;
        let img = Layout::new(512, vec![hidden]).build();
        assert!(err_of(select_bytes(&img)).ends_with(&format!("root-{} (no-auto))", native())));
    }

    #[test]
    fn generic_partitions() {
        let img = Layout::new(
            512,
            vec![part(ESP, 34, 63, ""), part(GENERIC, 64, 127, "data")],
        )
        .build();
        let (root, usr) = parts_of(select_bytes(&img));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.type_name, root.offset),
            (2, "linux-generic", 64 * 512)
        );
        assert_eq!(usr, None);

        let img = Layout::new(
            512,
            vec![part(GENERIC, 34, 63, ""), part(GENERIC, 64, 127, "")],
        )
        .build();
        let e = err_of(select_bytes(&img));
        assert!(
            e.starts_with("multiple generic Linux partitions (1, 2)"),
            "{e}"
        );
    }

    #[test]
    fn gpt_signature_cut_off() {
        let img = Layout::new(512, vec![part(GENERIC, 34, 127, "")]).build();
        // Only the signature's first bytes: not a GPT at all, and the protective MBR says so.
        let e = err_of(select_bytes(&img[..515]));
        assert!(e.starts_with("protective MBR found"), "{e}");
    }

    #[test]
    fn whole_file_system_and_nothing() {
        let mut img = vec![0u8; 8192];
        img[..4].copy_from_slice(b"hsqs");
        assert_eq!(select_bytes(&img), Ok(Selection::Whole));
        assert_eq!(
            select_bytes(&[0u8; 8192]),
            Err("no partition table or known file system found".to_string())
        );
        assert_eq!(
            select_bytes(&[]),
            Err("no partition table or known file system found".to_string())
        );
        assert_eq!(
            select_bytes(&[0u8; 100]),
            Err("no partition table or known file system found".to_string())
        );
    }

    #[test]
    fn mbr_linux_partition() {
        let img = mbr(&[(0x00, 0x0c, 1, 63), (0x80, 0x83, 64, 64)], 128 * 512);
        let (root, usr) = parts_of(select_bytes(&img));
        assert_eq!(
            root,
            Some(Part {
                number: 2,
                offset: 64 * 512,
                size: 64 * 512,
                label: String::new(),
                type_name: "linux-generic"
            })
        );
        assert_eq!(usr, None);
    }

    #[test]
    fn fat_boot_sector_is_not_an_mbr() {
        let mut img = mbr(&[(0x80, 0x83, 1, 63)], 128 * 512);
        img[82..90].copy_from_slice(b"FAT32   ");
        assert_eq!(select_bytes(&img), Ok(Selection::Whole));
    }

    #[test]
    fn random_mutations_never_panic() {
        let root = ty(Role::Root, native());
        let usr = ty(Role::Usr, native());
        let base512 = Layout::new(
            512,
            vec![
                part(root, 34, 63, "root_1.2"),
                part(root, 64, 79, "root_1.10"),
                part(usr, 80, 127, "u"),
            ],
        )
        .build();
        let base4k = Layout::new(
            4096,
            vec![part(root, 6, 20, "a"), part(GENERIC, 21, 40, "")],
        )
        .build();
        let interesting: [u64; 10] = [
            0,
            1,
            2,
            33,
            34,
            127,
            128,
            4096,
            u64::from(u32::MAX),
            u64::MAX,
        ];

        let file = tempfile::tempfile().unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut outcomes = [0usize; 2];
        for round in 0..4000 {
            let (mut img, ss) = if round % 4 == 3 {
                (base4k.clone(), 4096usize)
            } else {
                (base512.clone(), 512usize)
            };
            for _ in 0..1 + rng.below(4) {
                let region = match rng.below(4) {
                    0 => ss..ss + 92,
                    1 | 2 => 2 * ss..2 * ss + 4 * 128,
                    _ => 0..512,
                };
                let at = region.start + rng.index(region.end - region.start);
                match rng.below(3) {
                    0 => img[at] = rng.byte(),
                    1 => img[at] ^= 1 << rng.below(8),
                    _ => {
                        let v = interesting[rng.index(interesting.len())];
                        let width = [2usize, 4, 8][rng.index(3)];
                        let end = (at + width).min(img.len());
                        img[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                    }
                }
            }
            if rng.below(8) != 0 {
                resign(&mut img, ss as u64);
            }
            let cut = if rng.below(10) == 0 {
                rng.index(img.len())
            } else {
                img.len()
            };
            file.set_len(0).unwrap();
            file.write_all_at(&img[..cut], 0).unwrap();
            let len = cut as u64;
            let src = Source::new(file.try_clone().unwrap(), len);
            match dissect(&src).map(|d| d.selection) {
                Ok(Selection::Parts { root, usr }) => {
                    outcomes[0] += 1;
                    for p in root.iter().chain(usr.iter()) {
                        assert!(p.offset.checked_add(p.size).is_some_and(|end| end <= len));
                    }
                }
                Ok(Selection::Whole) => outcomes[0] += 1,
                Err(e) => {
                    assert!(!e.contains('\n'), "{e}");
                    outcomes[1] += 1;
                }
            }
        }
        // Both paths must really have been exercised.
        assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
    }

    /// Runs a partitioning tool with `script` on stdin; `None` when it is not installed.
    fn run_tool(tool: &str, args: &[&str], script: &str) -> Option<()> {
        let mut child = match Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                eprintln!("skipping: cannot run {tool}: {e}");
                return None;
            }
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(())
    }

    fn image_file(len: u64) -> (tempfile::TempPath, String) {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(len).unwrap();
        let path = file.into_temp_path();
        let name = path.to_str().unwrap().to_string();
        (path, name)
    }

    fn select_path(path: &str) -> Result<Selection, String> {
        let file = std::fs::File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        dissect(&Source::new(file, len)).map(|d| d.selection)
    }

    #[test]
    fn sfdisk_gpt_512() {
        let (_keep, path) = image_file(4 << 20);
        let script = "label: gpt\nstart=2048, size=4096, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=\"root_1\"\n";
        if run_tool("sfdisk", &["-q", &path], script).is_none() {
            return;
        }
        let (root, usr) = parts_of(select_path(&path));
        let root = root.unwrap();
        assert_eq!(usr, None);
        assert_eq!(
            (root.number, root.offset, root.size),
            (1, 1_048_576, 4096 * 512)
        );
        assert_eq!(
            (root.label.as_str(), root.type_name),
            ("root_1", "root-x86-64")
        );
    }

    /// util-linux 2.38's sfdisk can not write 4096-byte-sector tables to a file (its
    /// `sector-size:` header is recalculated to the file's 512), but `fdisk -b 4096` can.
    #[test]
    fn fdisk_gpt_4096() {
        let (_keep, path) = image_file(16 << 20);
        let script = "g\nn\n1\n256\n+4M\nt\n4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\nw\n";
        if run_tool("fdisk", &["-b", "4096", &path], script).is_none() {
            return;
        }
        let (root, _) = parts_of(select_path(&path));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.offset, root.size),
            (1, 1_048_576, 4 << 20)
        );
        assert_eq!(root.type_name, "root-x86-64");
    }

    #[test]
    fn sfdisk_mbr() {
        let (_keep, path) = image_file(4 << 20);
        if run_tool(
            "sfdisk",
            &["-q", &path],
            "label: dos\nstart=2048, size=4096, type=83, bootable\n",
        )
        .is_none()
        {
            return;
        }
        let (root, _) = parts_of(select_path(&path));
        let root = root.unwrap();
        assert_eq!(
            (root.number, root.offset, root.size),
            (1, 1_048_576, 4096 * 512)
        );
    }
}
