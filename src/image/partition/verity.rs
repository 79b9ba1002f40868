//! The dm-verity partitions systemd pairs with the root or `/usr` partition it mounts.

use std::cmp::Ordering;

use super::gpt::{Gpt, GptEntry};
use super::types::{PART_TYPES, Role, guid_text};
use super::{Dissected, Part, Selection, gpt_part};
use crate::arch::{native_arch, secondary_arch};
use crate::verscmp::strverscmp_improved;

/// The file system a root hash known before dissection belongs to: a `.roothash` file
/// gives one for the root partition, a `.usrhash` file one for `/usr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFor {
    /// The root partition (`.roothash`).
    Root,
    /// The `/usr` partition (`.usrhash`).
    Usr,
}

/// The dm-verity partitions systemd pairs with the partition it mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParts {
    /// The root or `/usr` partition the hash tree covers: the one [`super::dissect`] chose.
    pub data: Part,
    /// Its `…-verity` partition, holding the hash tree.
    pub verity: Part,
    /// Its `…-verity-sig` partition (JSON with the root hash and its PKCS#7 signature),
    /// when the table has one. systemd 252 reads it for `/usr` only when a `.usrhash`
    /// gave the hash: deciding that is the caller's business, as it knows the hash.
    pub sig: Option<Part>,
}

/// The verity partitions that pair with the root or `/usr` partition of the dissected
/// `image`, as systemd 252's `dissect_image()` pairs them when PID 1 starts a `RootImage=`
/// service. `hash` is the root hash from a sidecar file, if any. `Ok(None)`: no GPT, or
/// no verity partition for the chosen root or `/usr`.
///
/// Pairing is by architecture: the verity partition of the data partition's architecture,
/// the newest by label when there are several. A known hash narrows every choice first:
/// only the data partition whose UUID is the hash's first 128 bits, and the verity
/// partition whose UUID is its last 128 bits, are candidates. Errors are the layouts
/// systemd refuses, so that a service with such an image could not start: a verity or
/// signature partition without its data or verity partition, verity for both root and
/// `/usr` or for root next to a separate `/usr`, a hash naming no partition. One more is
/// this reader's own: a hash that picks another partition than the one
/// [`super::dissect`] chose to read (an older A/B version), since the units attached
/// would not be those the service runs.
pub fn verity_parts(
    image: &Dissected,
    hash: Option<(&[u8], HashFor)>,
) -> Result<Option<VerityParts>, String> {
    match &image.gpt {
        Some(gpt) => pair_table(gpt, &image.selection, hash),
        None => Ok(None),
    }
}

/// [`verity_parts`] in the GPT `gpt`, from which `read` was chosen.
fn pair_table(
    gpt: &Gpt,
    read: &Selection,
    hash: Option<(&[u8], HashFor)>,
) -> Result<Option<VerityParts>, String> {
    let uuids = match hash {
        None => None,
        Some((h, target)) => {
            let (Some(first), Some(last)) = (h.first_chunk::<16>(), h.last_chunk::<16>()) else {
                return Err(format!(
                    "the root hash has {} bytes, fewer than the 16 that name a partition",
                    h.len()
                ));
            };
            Some((
                target,
                u128::from_be_bytes(*first),
                u128::from_be_bytes(*last),
            ))
        }
    };
    let narrowing = |role: HashFor| match uuids {
        Some((target, data, verity)) if target == role => Some((data, verity)),
        _ => None,
    };
    // systemd skips the verity partitions of the file system a known hash is not for.
    let root_verity = uuids.is_none_or(|(t, _, _)| t == HashFor::Root);
    let usr_verity = uuids.is_none_or(|(t, _, _)| t == HashFor::Usr);

    let archs: Vec<&'static str> = [native_arch(), secondary_arch()]
        .into_iter()
        .flatten()
        .collect();
    let (root_arch, root) = pair(
        gpt,
        Role::Root,
        &archs,
        narrowing(HashFor::Root),
        root_verity,
    )?;
    // Once root is found, /usr of another architecture is dropped, as systemd does.
    let usr_archs = match root_arch {
        Some(arch) => vec![arch],
        None => archs,
    };
    let (_, usr) = pair(
        gpt,
        Role::Usr,
        &usr_archs,
        narrowing(HashFor::Usr),
        usr_verity,
    )?;

    for (f, what) in [(&root, "root"), (&usr, "/usr")] {
        if let (Some(sig), None) = (f.sig, f.verity) {
            return Err(format!(
                "{} has no {what} verity partition to go with it",
                describe_entry(sig)
            ));
        }
    }
    if let (Some(rv), Some(uv)) = (root.verity, usr.verity) {
        return Err(format!(
            "verity partitions for both root ({}) and /usr ({}), and systemd supports only one",
            describe_entry(rv),
            describe_entry(uv)
        ));
    }
    if let (Some(rv), Some(u)) = (root.verity, usr.data) {
        return Err(format!(
            "{} next to a separate /usr ({}), which systemd refuses",
            describe_entry(rv),
            describe_entry(u)
        ));
    }
    if let Some((target, data_uuid, verity_uuid)) = uuids {
        let (f, what) = match target {
            HashFor::Root => (&root, "root"),
            HashFor::Usr => (&usr, "/usr"),
        };
        if f.data.is_none() {
            return Err(format!(
                "the {what} hash names partition UUID {}, but no {what} partition has it",
                guid_text(data_uuid)
            ));
        }
        if f.verity.is_none() {
            return Err(format!(
                "the {what} hash names verity partition UUID {}, but no {what} verity partition has it",
                guid_text(verity_uuid)
            ));
        }
    }

    // The hash may pick an older version than the newest one that is read.
    if let Selection::Parts {
        root: read_root,
        usr: read_usr,
    } = read
    {
        for (read, used, what) in [
            (read_root.as_ref(), root.data, "root"),
            (read_usr.as_ref(), usr.data, "/usr"),
        ] {
            if let (Some(read), Some(used)) = (read, used)
                && read.number != used.number
            {
                return Err(format!(
                    "the {what} hash selects partition {} {:?}, but partition {} {:?} is the one read",
                    used.number, used.label, read.number, read.label
                ));
            }
        }
    }

    let (f, data) = match (root.verity, usr.verity) {
        (Some(_), _) => (&root, root.data),
        (None, Some(_)) => (&usr, usr.data),
        (None, None) => return Ok(None),
    };
    let (Some(data), Some(verity)) = (data, f.verity) else {
        return Ok(None);
    };
    Ok(Some(VerityParts {
        data: gpt_part(gpt, data, entry_type_name(data))?,
        verity: gpt_part(gpt, verity, entry_type_name(verity))?,
        sig: f
            .sig
            .map(|s| gpt_part(gpt, s, entry_type_name(s)))
            .transpose()?,
    }))
}

/// A data partition type and the verity partitions of the same architecture.
#[derive(Default, Clone, Copy)]
struct Family<'a> {
    data: Option<&'a GptEntry>,
    verity: Option<&'a GptEntry>,
    sig: Option<&'a GptEntry>,
}

/// Root or `/usr` of the first architecture in `archs` that has one, with its verity
/// partitions. A verity or signature partition of an architecture that has no data
/// partition is an error, as in systemd, rather than a reason to look further.
fn pair<'a>(
    gpt: &'a Gpt,
    role: Role,
    archs: &[&'static str],
    narrowing: Option<(u128, u128)>,
    with_verity: bool,
) -> Result<(Option<&'static str>, Family<'a>), String> {
    for &arch in archs {
        let Some(data_type) = PART_TYPES
            .iter()
            .find(|t| t.role == role && t.arch == Some(arch))
        else {
            continue;
        };
        let verity_name = format!("{}-verity", data_type.name);
        let sig_name = format!("{}-verity-sig", data_type.name);
        let named = |e: &GptEntry, name: &str| e.part_type().is_some_and(|t| t.name == name);
        let data = newest(gpt, |e| {
            e.type_guid == data_type.guid && narrowing.is_none_or(|(d, _)| e.uuid == d)
        });
        let (verity, sig) = if with_verity {
            (
                newest(gpt, |e| {
                    named(e, &verity_name) && narrowing.is_none_or(|(_, v)| e.uuid == v)
                }),
                newest(gpt, |e| named(e, &sig_name)),
            )
        } else {
            (None, None)
        };
        if data.is_some() {
            return Ok((Some(arch), Family { data, verity, sig }));
        }
        if let Some(orphan) = verity.or(sig) {
            let what = if role == Role::Root { "root" } else { "/usr" };
            return Err(format!(
                "{} has no {what} partition to go with it",
                describe_entry(orphan)
            ));
        }
    }
    Ok((None, Family::default()))
}

/// The candidate with the newest label; on equal labels the first in the table, as
/// systemd keeps the one it saw first.
fn newest(gpt: &Gpt, wanted: impl Fn(&GptEntry) -> bool) -> Option<&GptEntry> {
    let mut best: Option<&GptEntry> = None;
    for e in gpt.entries.iter().filter(|e| !e.no_auto() && wanted(e)) {
        if best.is_none_or(|b| {
            strverscmp_improved(e.label.as_bytes(), b.label.as_bytes()) == Ordering::Greater
        }) {
            best = Some(e);
        }
    }
    best
}

fn entry_type_name(e: &GptEntry) -> &'static str {
    e.part_type().map_or("unknown", |t| t.name)
}

fn describe_entry(e: &GptEntry) -> String {
    format!("partition {} ({})", e.number, e.type_text())
}

/// The tests of [`verity_parts`], on tables built in memory.
#[cfg(test)]
mod tests {
    use super::super::choose_gpt;
    use super::super::fixture::*;
    use super::super::gpt::GPT_FLAG_NO_AUTO;
    use super::super::gpt::read_gpt;
    use super::super::types::{PART_TYPES, Role, guid_text};
    use super::*;

    /// The unique GUID [`Layout::build`] gives the partition at `index`.
    fn uuid(index: u128) -> u128 {
        0x1234_5678_9abc_4def_8000_0000_0000_0000 + index
    }

    /// A root hash whose halves name the partitions at `data` and `verity`.
    fn hash(data: u128, verity: u128) -> Vec<u8> {
        let mut h = uuid(data).to_be_bytes().to_vec();
        h.extend_from_slice(&uuid(verity).to_be_bytes());
        h
    }

    fn named(name: &str) -> u128 {
        PART_TYPES.iter().find(|t| t.name == name).unwrap().guid
    }

    fn verity(role: Role, arch: &str) -> u128 {
        let data = PART_TYPES
            .iter()
            .find(|t| t.guid == ty(role, arch))
            .unwrap();
        named(&format!("{}-verity", data.name))
    }

    fn sig(role: Role, arch: &str) -> u128 {
        let data = PART_TYPES
            .iter()
            .find(|t| t.guid == ty(role, arch))
            .unwrap();
        named(&format!("{}-verity-sig", data.name))
    }

    /// Partitions of 16 sectors each, in order, from LBA 34.
    fn table(parts: &[(u128, &'static str)]) -> Vec<u8> {
        let parts = parts
            .iter()
            .enumerate()
            .map(|(i, &(t, label))| {
                let first = 34 + 16 * i as u64;
                part(t, first, first + 15, label)
            })
            .collect();
        Layout::new(512, parts).build()
    }

    /// What pairing says for the table in `img`. Tables from which no partition would be
    /// chosen (dissecting such an image fails) are paired too, so that every refusal of
    /// [`pair_table`] is tested: its errors first, then the choice's.
    fn parts(img: &[u8], hash: Option<(&[u8], HashFor)>) -> Result<Option<VerityParts>, String> {
        let Some(gpt) = read_gpt(&source(img))? else {
            return Ok(None);
        };
        match choose_gpt(&gpt) {
            Ok(read) => pair_table(&gpt, &read, hash),
            Err(e) => pair_table(&gpt, &Selection::Whole, hash).and(Err(e)),
        }
    }

    fn numbers(
        r: Result<Option<VerityParts>, String>,
    ) -> Result<Option<(u32, u32, Option<u32>)>, String> {
        r.map(|v| v.map(|v| (v.data.number, v.verity.number, v.sig.map(|s| s.number))))
    }

    fn run(
        img: &[u8],
        hash: Option<(&[u8], HashFor)>,
    ) -> Result<Option<(u32, u32, Option<u32>)>, String> {
        numbers(parts(img, hash))
    }

    #[test]
    fn pairs_by_architecture() {
        let n = native();
        let img = table(&[(ty(Role::Root, n), ""), (verity(Role::Root, n), "")]);
        assert_eq!(run(&img, None), Ok(Some((1, 2, None))));
        let got = parts(&img, None).unwrap().unwrap();
        assert_eq!(got.data.type_name, format!("root-{n}"));
        assert_eq!(got.verity.type_name, format!("root-{n}-verity"));

        let img = table(&[
            (sig(Role::Root, n), ""),
            (verity(Role::Root, n), ""),
            (ty(Role::Root, n), ""),
        ]);
        assert_eq!(run(&img, None), Ok(Some((3, 2, Some(1)))));

        // A foreign architecture's verity partition pairs with nothing.
        let img = table(&[(ty(Role::Root, n), ""), (verity(Role::Root, foreign()), "")]);
        assert_eq!(run(&img, None), Ok(None));
        let img = table(&[(ty(Role::Root, n), "")]);
        assert_eq!(run(&img, None), Ok(None));

        // "Do not mount automatically" applies to verity partitions too.
        let mut parts = vec![
            part(ty(Role::Root, n), 34, 49, ""),
            part(verity(Role::Root, n), 50, 65, ""),
        ];
        parts[1].attrs = GPT_FLAG_NO_AUTO;
        let img = Layout::new(512, parts).build();
        assert_eq!(run(&img, None), Ok(None));

        // No GPT at all.
        assert_eq!(run(&vec![0u8; 64 * 1024], None), Ok(None));
    }

    #[test]
    fn secondary_architecture_pairs_with_its_own() {
        let (Some(n), Some(s)) = (native_arch(), secondary_arch()) else {
            return;
        };
        let img = table(&[(ty(Role::Root, s), ""), (verity(Role::Root, s), "")]);
        assert_eq!(run(&img, None), Ok(Some((1, 2, None))));
        // Native root: the secondary verity partition is dropped with the rest.
        let img = table(&[(ty(Role::Root, n), ""), (verity(Role::Root, s), "")]);
        assert_eq!(run(&img, None), Ok(None));
        // Native verity without a native root is refused, even with a secondary root.
        let img = table(&[(ty(Role::Root, s), ""), (verity(Role::Root, n), "")]);
        let err = run(&img, None).unwrap_err();
        assert!(err.contains("has no root partition"), "{err}");
    }

    #[test]
    fn newest_label_and_first_on_ties() {
        let n = native();
        let img = table(&[
            (ty(Role::Root, n), "1"),
            (ty(Role::Root, n), "2"),
            (verity(Role::Root, n), "1"),
            (verity(Role::Root, n), "2"),
            (verity(Role::Root, n), "2"),
        ]);
        assert_eq!(run(&img, None), Ok(Some((2, 4, None))));
        // A hash names the pair by UUID, whatever the labels...
        assert_eq!(
            run(&img, Some((&hash(1, 4), HashFor::Root))),
            Ok(Some((2, 5, None)))
        );
        // ...and picking an older root than the one read is an error.
        let err = run(&img, Some((&hash(0, 2), HashFor::Root))).unwrap_err();
        assert!(err.contains("selects partition 1 \"1\""), "{err}");
    }

    #[test]
    fn root_hash_names_partitions() {
        let n = native();
        let img = table(&[(ty(Role::Root, n), ""), (verity(Role::Root, n), "")]);
        let root = |h: &[u8]| run(&img, Some((h, HashFor::Root)));
        assert_eq!(root(&hash(0, 1)), Ok(Some((1, 2, None))));
        assert!(
            root(&hash(1, 0))
                .unwrap_err()
                .contains("no root partition has it")
        );
        // The verity partition named, but not the root: systemd finds verity without root.
        assert!(
            root(&hash(1, 1))
                .unwrap_err()
                .contains("has no root partition to go with it")
        );
        assert!(
            root(&hash(0, 0))
                .unwrap_err()
                .contains("no root verity partition")
        );
        assert!(root(&[1; 15]).unwrap_err().contains("15 bytes"));
        // Any length from 16 bytes on: the halves may overlap.
        assert_eq!(
            root(&uuid(0).to_be_bytes()),
            Err(format!(
                "the root hash names verity partition UUID {}, but no root verity partition has it",
                guid_text(uuid(0))
            ))
        );
        // A /usr hash ignores root's verity partition and needs a /usr partition.
        let err = run(&img, Some((&hash(0, 1), HashFor::Usr))).unwrap_err();
        assert!(err.contains("no /usr partition has it"), "{err}");
    }

    #[test]
    fn usr_verity() {
        let n = native();
        let img = table(&[
            (ty(Role::Usr, n), ""),
            (verity(Role::Usr, n), ""),
            (sig(Role::Usr, n), ""),
        ]);
        assert_eq!(run(&img, None), Ok(Some((1, 2, Some(3)))));
        assert_eq!(
            run(&img, Some((&hash(0, 1), HashFor::Usr))),
            Ok(Some((1, 2, Some(3))))
        );
        // A verity-less root beside a verity /usr is fine.
        let img = table(&[
            (ty(Role::Root, n), ""),
            (ty(Role::Usr, n), ""),
            (verity(Role::Usr, n), ""),
        ]);
        assert_eq!(run(&img, None), Ok(Some((2, 3, None))));
        assert_eq!(
            run(&img, Some((&hash(1, 2), HashFor::Usr))),
            Ok(Some((2, 3, None)))
        );
    }

    /// Types and UUIDs in the entries are what changes the pairing; scrambling them
    /// (CRCs fixed up) reaches every branch without a panic or a multi-line error.
    #[test]
    fn scrambled_entries_never_panic() {
        let n = native();
        let kinds = [
            ty(Role::Root, n),
            ty(Role::Usr, n),
            verity(Role::Root, n),
            verity(Role::Usr, n),
            sig(Role::Root, n),
            sig(Role::Usr, n),
            GENERIC,
            0,
        ];
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut outcomes = [0usize; 3];
        for _ in 0..2000 {
            let mut img = table(&[(GENERIC, ""); 6]);
            for i in 0..6 {
                let off = 1024 + 128 * i;
                let kind = kinds[rng.index(kinds.len())];
                put_guid(&mut img, off, kind);
                put_guid(&mut img, off + 16, uuid(u128::from(rng.below(3))));
                if rng.below(4) == 0 {
                    img[off + 56] = b'0' + u8::try_from(rng.below(3)).unwrap();
                }
            }
            resign(&mut img, 512);
            let h = hash(u128::from(rng.below(3)), u128::from(rng.below(3)));
            let hash = match rng.below(3) {
                0 => None,
                1 => Some((h.as_slice(), HashFor::Root)),
                _ => Some((h.as_slice(), HashFor::Usr)),
            };
            match parts(&img, hash) {
                Ok(None) => outcomes[0] += 1,
                Ok(Some(_)) => outcomes[1] += 1,
                Err(e) => {
                    assert!(!e.contains('\n'), "{e}");
                    outcomes[2] += 1;
                }
            }
        }
        // Every outcome must really have been reached.
        assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
    }

    #[test]
    fn layouts_systemd_refuses() {
        let n = native();
        let refused = |parts: &[(u128, &'static str)], why: &str| {
            let err = run(&table(parts), None).unwrap_err();
            assert!(err.contains(why), "{err}");
            assert!(!err.contains('\n'));
        };
        refused(
            &[(ty(Role::Root, n), ""), (sig(Role::Root, n), "")],
            "partition 2 (root-",
        );
        refused(
            &[(ty(Role::Usr, n), ""), (verity(Role::Root, n), "")],
            "has no root partition",
        );
        refused(&[(verity(Role::Usr, n), "")], "has no /usr partition");
        refused(
            &[
                (ty(Role::Root, n), ""),
                (verity(Role::Root, n), ""),
                (ty(Role::Usr, n), ""),
            ],
            "next to a separate /usr",
        );
        refused(
            &[
                (ty(Role::Root, n), ""),
                (verity(Role::Root, n), ""),
                (ty(Role::Usr, n), ""),
                (verity(Role::Usr, n), ""),
            ],
            "both root",
        );
    }
}
