//! Helpers shared by the fuzz targets: the panic policy, GPT re-signing, and driving an
//! opened image the way the generator does.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, PanicHookInfo};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crc::{CRC_32_ISO_HDLC, Crc};
use portables_generator::extension;
use portables_generator::facts::{ImageRef, read_os_release, read_units};
use portables_generator::image::chase::Tree;
use portables_generator::install;
use portables_generator::unit_syntax;

/// Where a panic comes from decides whether it is a finding.
///
/// The generator runs every third-party reader (ext4-view, backhand, erofs-rs) under
/// `image::guarded`, which turns a panic into that image's error: such a panic is handled by
/// design, so it is reported once per place on stderr (`third-party panic caught: ...`, which
/// tests/fuzz lists) and left to unwind. A panic anywhere else (this project's code, or the
/// standard library on its behalf) is a bug: libFuzzer's hook prints it and aborts, and the
/// input is saved as a crash. `FUZZ_ABORT_ON_ANY_PANIC=1` makes every panic a crash, to
/// collect inputs that make a third-party reader panic.
pub fn panic_policy() {
    if std::env::var_os("FUZZ_ABORT_ON_ANY_PANIC").is_some_and(|v| v == "1") {
        return;
    }
    // libfuzzer-sys installed a hook that prints and aborts; it stays for our own panics.
    let abort_hook = panic::take_hook();
    let seen: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        let Some(loc) = info.location().filter(|l| is_third_party(l.file())) else {
            abort_hook(info);
            return;
        };
        let at = format!("{}:{}", loc.file(), loc.line());
        if seen
            .lock()
            .map(|mut s| s.insert(at.clone()))
            .unwrap_or(false)
        {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            let msg: String = msg.chars().take(200).collect();
            eprintln!("third-party panic caught: {at}: {}", msg.replace('\n', " "));
        }
    }));
}

/// A crate from the registry (or a git dependency), not this project and not std.
fn is_third_party(file: &str) -> bool {
    file.contains("/registry/src/") || file.contains("/git/checkouts/")
}

/// The CRC-32 of IEEE 802.3, as GPT uses it.
static GPT_CRC: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Re-sign a GPT in `img` for both sector sizes, so that mutations of the header fields and
/// entries get past the CRC32 checks: for a header at byte 512 or 4096 (signature `EFI PART`),
/// the partition entry array CRC (over num_entries * entry_size bytes at entries_lba) is
/// recomputed when the array lies inside the image, then the header CRC (over header_size
/// bytes, with its own field zeroed).
pub fn resign_gpt(img: &mut [u8]) {
    for sector in [512usize, 4096] {
        let Some(hdr) = img.get(sector..sector + 92) else {
            continue;
        };
        if &hdr[..8] != b"EFI PART" {
            continue;
        }
        let le32 = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let le64 = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let header_size = le32(hdr, 12) as usize;
        let entries_lba = le64(hdr, 72);
        let count = u64::from(le32(hdr, 80));
        let size = u64::from(le32(hdr, 84));
        let array = entries_lba
            .checked_mul(sector as u64)
            .and_then(|start| Some((start, count.checked_mul(size)?)))
            .and_then(|(start, len)| {
                let start = usize::try_from(start).ok()?;
                let end = start.checked_add(usize::try_from(len).ok()?)?;
                img.get(start..end)
            });
        if let Some(array) = array {
            let crc = GPT_CRC.checksum(array);
            img[sector + 88..sector + 92].copy_from_slice(&crc.to_le_bytes());
        }
        if let Some(covered) = img.get(sector..sector.saturating_add(header_size)) {
            let mut covered = covered.to_vec();
            if let Some(field) = covered.get_mut(16..20) {
                field.fill(0);
            }
            let crc = GPT_CRC.checksum(&covered);
            img[sector + 16..sector + 20].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// What the generator does with an opened image: its os-release, every unit of its unit
/// directories (the generator reads only those matching the image's prefix; here every
/// name is wanted), each unit parsed with its `[Install]` links computed, an
/// extension-release lookup as for an extension image, and the extended attribute systemd
/// looks for on each extension-release file.
///
/// With `FUZZ_VERBOSE=1` what was read is printed, to check that seeds get through (run a
/// target binary with file names as arguments to execute just those inputs).
/// A host whose `%H` and `%m` have values and whose `%o` cannot be had.
pub fn fuzz_host(c: char) -> Option<Result<String, String>> {
    match c {
        'H' => Some(Ok("fuzz.example".into())),
        'm' => Some(Ok("0123456789abcdef0123456789abcdef".into())),
        'o' => Some(Err("no os-release".into())),
        _ => None,
    }
}

pub fn drive_tree(tree: &Tree) {
    let newest = portables_generator::systemd_version::NEWEST;
    let os_release = read_os_release(tree, newest);
    let from = ImageRef {
        at: Path::new("/var/lib/portables/fuzz"),
        label: "fuzz",
    };
    let units = read_units(tree, |_| true, from);
    if let Ok(units) = &units {
        for unit in &units.found {
            if let Ok((file, _)) = unit_syntax::parse(&unit.bytes) {
                let _ = install::enablement(&unit.name, &file, newest, &fuzz_host);
            }
        }
    }
    let ext = extension::read_extension_release(tree, "app_1", newest);
    // Extended attributes, as systemd reads them on extension-release files.
    let dir = Path::new("/usr/lib/extension-release.d");
    if let Ok((dir, entries)) = tree.read_dir(dir) {
        for e in entries.iter().take(64) {
            let path = dir.join(OsStr::from_bytes(&e.name));
            let _ = tree.xattr(&path, "user.extension-release.strict");
        }
    }
    if verbose() {
        eprintln!(
            "os-release: {:?}",
            os_release.map(|r| r.get("ID").map(String::from))
        );
        match &units {
            Ok(u) => {
                let found: Vec<_> = u.found.iter().map(|u| (&u.name, &u.alias_of)).collect();
                let skipped: Vec<_> = u.skipped.iter().map(|s| (s.unit(), &s.reason)).collect();
                eprintln!("units: {found:?}\nskipped: {skipped:?}");
            }
            Err(e) => eprintln!("units: {e}"),
        }
        eprintln!("extension-release: {:?}", ext.map(|(p, _)| p));
    }
}

/// `FUZZ_VERBOSE=1`: print what each input gave.
pub fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("FUZZ_VERBOSE").is_some_and(|v| v == "1"))
}
