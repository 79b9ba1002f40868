//! The host's specifiers in `[Install]` sections: what `systemctl enable` expands `%a %A %b
//! %B %H %l %q %m %M %o %v %w %W %g %G %u %U` to (`COMMON_SYSTEM_SPECIFIERS` and
//! `COMMON_CREDS_SPECIFIERS` in systemd's `src/shared/specifier.h`), read from the root the
//! generator reads, each once per run.
//!
//! At boot the root is `/`, and every value is the booted system's, as systemctl would
//! expand it there. With `--root`, the machine ID, os-release, host name and pretty host
//! name are the root's; the kernel, architecture and boot ID can only be the running
//! machine's (as `systemctl --root` does for all of them but the machine ID and os-release).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use crate::host_file::read_capped_in;
use crate::root::Root;

/// Largest file read for a specifier: os-release, machine-info, hostname, machine-id.
const MAX_BYTES: u64 = 64 * 1024;

/// The host's specifiers of one run, each looked up when first asked for.
pub struct HostSpecifiers<'r> {
    root: &'r Root,
    systemd: u32,
    known: RefCell<HashMap<char, Result<String, String>>>,
}

impl<'r> HostSpecifiers<'r> {
    /// The specifiers of `root`, whose os-release is read as systemd `systemd` reads it.
    pub fn new(root: &'r Root, systemd: u32) -> HostSpecifiers<'r> {
        HostSpecifiers {
            root,
            systemd,
            known: RefCell::default(),
        }
    }

    /// The value of `%c`: `None` when `c` is not a host specifier, else its value (empty
    /// where the host has none, as systemd expands a missing os-release field) or why it
    /// cannot be had.
    pub fn get(&self, c: char) -> Option<Result<String, String>> {
        if !"aAbBHlqmMovwWgGuU".contains(c) {
            return None;
        }
        if let Some(known) = self.known.borrow().get(&c) {
            return Some(known.clone());
        }
        let value = self.look_up(c);
        self.known.borrow_mut().insert(c, value.clone());
        Some(value)
    }

    fn look_up(&self, c: char) -> Result<String, String> {
        let field = |key: &str| self.os_release(key);
        match c {
            'a' => Ok(architecture(
                &rustix::system::uname().machine().to_string_lossy(),
            )),
            'v' => Ok(rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned()),
            'b' => boot_id(),
            'H' => Ok(self.hostname()),
            'l' => Ok(short(&self.hostname()).to_string()),
            'q' => Ok(self
                .env_file("/etc/machine-info", "PRETTY_HOSTNAME")
                .ok()
                .flatten()
                .unwrap_or_else(|| short(&self.hostname()).to_string())),
            'm' => self.machine_id(),
            'o' => field("ID"),
            'w' => field("VERSION_ID"),
            'B' => field("BUILD_ID"),
            'W' => field("VARIANT_ID"),
            'M' => field("IMAGE_ID"),
            'A' => field("IMAGE_VERSION"),
            // The system's service manager: root.
            'u' | 'g' => Ok("root".into()),
            _ => Ok("0".into()),
        }
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        read_capped_in(self.root, Path::new(path), MAX_BYTES).ok()
    }

    /// `KEY` of the environment file at `path` below the root: `Err` when there is no such
    /// file, `Ok(None)` when it lacks the key.
    fn env_file(&self, path: &str, key: &str) -> Result<Option<String>, String> {
        let bytes = self
            .read(path)
            .ok_or_else(|| format!("{path} cannot be read"))?;
        let env = crate::os_release::parse_for(&bytes, self.systemd)
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(env.get(key).map(str::to_string))
    }

    /// A field of the root's os-release (`/etc/os-release`, else `/usr/lib/os-release`);
    /// empty when it lacks it.
    fn os_release(&self, key: &str) -> Result<String, String> {
        let path = crate::host::host_os_release(self.root);
        self.env_file(path, key)
            .map(Option::unwrap_or_default)
            .map_err(|_| "the host has no os-release".to_string())
    }

    /// The host name: at boot the one the service manager set; for another root, its
    /// `/etc/hostname` where it has one.
    fn hostname(&self) -> String {
        let running = || {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        };
        if self.root.is_host() {
            return running();
        }
        self.read("/etc/hostname")
            .and_then(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
            })
            .unwrap_or_else(running)
    }

    fn machine_id(&self) -> Result<String, String> {
        let bytes = self
            .read("/etc/machine-id")
            .ok_or("the host has no /etc/machine-id")?;
        let id = String::from_utf8_lossy(&bytes).trim().to_string();
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(id.to_ascii_lowercase())
        } else {
            Err("the host's /etc/machine-id holds no machine ID".into())
        }
    }
}

/// The running kernel's boot ID, as 32 hexadecimal digits.
fn boot_id() -> Result<String, String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map_err(|e| format!("no boot ID: {e}"))?;
    let id: String = text.trim().chars().filter(|&c| c != '-').collect();
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err("no boot ID".into())
    }
}

/// A host name up to its first dot.
fn short(hostname: &str) -> &str {
    hostname.split('.').next().unwrap_or(hostname)
}

/// systemd's name for the machine `uname` reports (`architecture_to_string()`).
fn architecture(machine: &str) -> String {
    let name = match machine {
        "x86_64" => "x86-64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "aarch64" => "arm64",
        "aarch64_be" => "arm64-be",
        "ppc64le" => "ppc64-le",
        "ppc64" => "ppc64",
        "ppcle" => "ppc-le",
        "ppc" => "ppc",
        "s390x" => "s390x",
        "s390" => "s390",
        "riscv64" => "riscv64",
        "riscv32" => "riscv32",
        "loongarch64" => "loongarch64",
        "sparc64" => "sparc64",
        "alpha" => "alpha",
        "parisc64" => "parisc64",
        "ia64" => "ia64",
        "m68k" => "m68k",
        "mips64" => "mips64",
        "mips" => "mips",
        "sh" => "sh",
        m if m.starts_with("armv") && m.ends_with('b') => "arm-be",
        m if m.starts_with("arm") => "arm",
        other => other,
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn values_come_from_the_root() {
        let dir = root_with(&[
            ("/etc/os-release", "ID=demo\nVERSION_ID=\"1.2\"\n"),
            ("/etc/machine-id", "0123456789ABCDEF0123456789abcdef\n"),
            ("/etc/hostname", "# comment\nbox.example.org\n"),
            ("/etc/machine-info", "PRETTY_HOSTNAME=\"The Box\"\n"),
        ]);
        let root = Root::new(dir.path());
        let s = HostSpecifiers::new(&root, 257);
        let get = |c| s.get(c).unwrap().unwrap();
        assert_eq!(get('o'), "demo");
        assert_eq!(get('w'), "1.2");
        assert_eq!(get('B'), "");
        assert_eq!(get('m'), "0123456789abcdef0123456789abcdef");
        assert_eq!(get('H'), "box.example.org");
        assert_eq!(get('l'), "box");
        assert_eq!(get('q'), "The Box");
        assert_eq!(
            (get('u'), get('U'), get('g'), get('G')),
            ("root".into(), "0".into(), "root".into(), "0".into())
        );
        assert!(!get('a').is_empty() && !get('v').is_empty());
        assert!(s.get('i').is_none() && s.get('x').is_none());
    }

    #[test]
    fn missing_files_are_errors_or_fall_back() {
        let dir = root_with(&[]);
        let root = Root::new(dir.path());
        let s = HostSpecifiers::new(&root, 252);
        assert!(s.get('m').unwrap().is_err());
        assert!(s.get('o').unwrap().is_err());
        let running = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        assert_eq!(s.get('H').unwrap().unwrap(), running);
    }

    #[test]
    fn architectures_as_systemd_names_them() {
        assert_eq!(architecture("x86_64"), "x86-64");
        assert_eq!(architecture("aarch64"), "arm64");
        assert_eq!(architecture("armv7l"), "arm");
        assert_eq!(architecture("ppc64le"), "ppc64-le");
    }
}
