//! Search paths on file systems that are mounted after generators run (a separate `/var`):
//! their images are attached by one more `daemon-reload` once `local-fs.target` is reached.

use std::path::Path;

use log::Level;

use crate::diagnostic::{Diagnostic, Diagnostics};

use crate::host_file;
use crate::root::Root;

/// The unit the generator emits to arrange that reload.
pub const REATTACH_UNIT: &str = "portables-reattach.service";

/// Decode the octal escapes (`\040` for a space) fstab and mountinfo use in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && oct.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Mount points from fstab that are mounted at boot (not `noauto`, not swap).
pub fn fstab_mount_points(fstab: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in fstab.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(file), Some(vfstype)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let options = fields.get(3).copied().unwrap_or("defaults");
        if *vfstype == "swap" || options.split(',').any(|o| o == "noauto") {
            continue;
        }
        let file = unescape(file);
        if file.starts_with('/') {
            out.push(normalize(&file));
        }
    }
    out
}

/// Mount points in a `/proc/self/mountinfo`.
pub fn mounted(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| normalize(&unescape(m)))
        .collect()
}

/// The mount points that hold part of a search path but are not mounted yet: mount points
/// from fstab that are a prefix of (or equal to) one of `search_paths`.
pub fn pending(fstab: &str, mountinfo: &str, search_paths: &[&str]) -> Vec<String> {
    let now = mounted(mountinfo);
    let mut out: Vec<String> = fstab_mount_points(fstab)
        .into_iter()
        .filter(|m| m != "/" && !now.contains(m))
        .filter(|m| {
            search_paths
                .iter()
                .any(|p| Path::new(p).starts_with(Path::new(m.as_str())))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Longest `/etc/fstab` read: a real one is a few KiB.
const FSTAB_MAX_BYTES: u64 = 1024 * 1024;
/// Longest mount table read: some 50 000 mounts; a host with more is not waiting for `/var`.
const MOUNTINFO_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Read fstab and mountinfo below `root` and decide. Missing files count as empty: no fstab
/// entry means nothing to wait for; no mountinfo means nothing is known to be mounted. Files
/// that cannot be read (a FIFO, a giant) are said so in one line each and count as empty too.
pub fn pending_below(root: &Root, search_paths: &[&str], diags: &mut Diagnostics) -> Vec<String> {
    let mut read =
        |p: &str, cap: u64, meaning: &str| match host_file::read_capped_in(root, Path::new(p), cap)
        {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.is_not_found() => String::new(),
            Err(e) => {
                diags.push(Diagnostic::run(
                    Level::Warn,
                    format!("Cannot read {p}: {e}; {meaning}."),
                ));
                String::new()
            }
        };
    pending(
        &read(
            "/etc/fstab",
            FSTAB_MAX_BYTES,
            "not waiting for file systems mounted later",
        ),
        &read(
            "/proc/self/mountinfo",
            MOUNTINFO_MAX_BYTES,
            "taking no file system to be mounted yet",
        ),
        search_paths,
    )
}

/// The reattach unit as packaged (`generator/portables-reattach.service`, installed into
/// `systemdsystemunitdir`): after local file systems are mounted, it reloads PID 1 (which
/// runs this generator again, now seeing the images) and starts the default target again,
/// which starts what the new units' `[Install]` links added to it. Embedded so that a bare
/// binary install, without the unit, still writes it (ARCHITECTURE.md, "Stages").
pub const PACKAGED_UNIT: &str = include_str!("../generator/portables-reattach.service");

/// Where the conditions of this boot go, relative to the output directory.
pub const REATTACH_DROPIN: &str = "portables-reattach.service.d/50-mount-points.conf";

/// The whole unit, written into the output directory when the host has no
/// `portables-reattach.service` of its own (the binary installed without its units).
pub fn reattach_unit() -> String {
    format!(
        "# Automatically generated by portables-generator: the packaged unit is not installed.\n\n{PACKAGED_UNIT}"
    )
}

/// The drop-in that holds what depends on this boot: the mount points the reload waits
/// for. The unit runs only when every one of them is mounted by then.
pub fn reattach_dropin(mount_points: &[String]) -> String {
    let mut text = String::from("# Automatically generated by portables-generator\n\n[Unit]\n");
    for m in mount_points {
        text.push_str(&format!(
            "ConditionPathIsMountPoint={}\n",
            crate::boundary::escape_specifiers(m)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEARCH: [&str; 2] = ["/var/lib/portables", "/usr/lib/portables"];

    #[test]
    fn separate_var_not_yet_mounted() {
        let fstab = "# comment\nUUID=1 / ext4 defaults 0 1\n/dev/sdb1 /var ext4 defaults 0 2\n";
        let mountinfo = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n";
        assert_eq!(pending(fstab, mountinfo, &SEARCH), ["/var"]);
        let mounted = format!("{mountinfo}23 22 8:17 / /var rw - ext4 /dev/sdb1 rw\n");
        assert!(pending(fstab, &mounted, &SEARCH).is_empty());
    }

    #[test]
    fn unrelated_noauto_and_swap_entries_need_nothing() {
        let fstab = "/dev/sdc /home ext4 defaults 0 2\n/dev/sdd /var ext4 noauto 0 2\n/dev/sde none swap sw 0 0\n";
        assert!(pending(fstab, "", &SEARCH).is_empty());
        assert!(pending("", "", &SEARCH).is_empty());
    }

    #[test]
    fn escapes_and_deeper_mounts() {
        let fstab = "/dev/x /var/lib/portables/ xfs defaults 0 0\n/dev/y /srv/with\\040space ext4 defaults 0 0\n";
        assert_eq!(pending(fstab, "", &SEARCH), ["/var/lib/portables"]);
        assert_eq!(fstab_mount_points(fstab)[1], "/srv/with space");
    }

    #[test]
    fn unit_text() {
        let unit = reattach_unit();
        assert!(unit.ends_with(PACKAGED_UNIT));
        assert!(unit.contains("\nAfter=local-fs.target\n"));
        assert!(unit.contains(
            "\nExecStart=sh -c 'systemctl daemon-reload && exec systemctl start --no-block default.target'\n"
        ));
        assert!(
            !unit.contains("Condition"),
            "the conditions are the drop-in's"
        );
        let dropin = reattach_dropin(&["/var".to_string(), "/srv/100%".to_string()]);
        assert!(dropin.ends_with(
            "[Unit]\nConditionPathIsMountPoint=/var\nConditionPathIsMountPoint=/srv/100%%\n"
        ));
    }
}
