//! The architectures this build runs, by the names systemd gives them: which root and
//! `/usr` partitions are read, which versioned entries are picked, which extensions fit.

/// The Discoverable Partitions Specification name of this build's architecture
/// (`x86-64`, `arm64`, ...), whose root and `/usr` partition types are preferred.
pub fn native_arch() -> Option<&'static str> {
    if cfg!(target_arch = "x86_64") {
        Some("x86-64")
    } else if cfg!(target_arch = "aarch64") && cfg!(target_endian = "little") {
        Some("arm64")
    } else if cfg!(target_arch = "x86") {
        Some("x86")
    } else if cfg!(target_arch = "arm") && cfg!(target_endian = "little") {
        Some("arm")
    } else if cfg!(target_arch = "riscv64") {
        Some("riscv64")
    } else if cfg!(target_arch = "loongarch64") {
        Some("loongarch64")
    } else if cfg!(target_arch = "s390x") {
        Some("s390x")
    } else if cfg!(target_arch = "powerpc64") && cfg!(target_endian = "little") {
        Some("ppc64-le")
    } else if cfg!(target_arch = "powerpc64") {
        Some("ppc64")
    } else {
        None
    }
}

/// The architecture whose binaries this one also runs, tried when no native partition
/// exists (systemd's `ARCHITECTURE_SECONDARY`).
pub fn secondary_arch() -> Option<&'static str> {
    match native_arch() {
        Some("x86-64") => Some("x86"),
        Some("arm64") => Some("arm"),
        _ => None,
    }
}

/// The local architectures in systemd's order of preference: native, then secondary.
pub fn local_architectures() -> Vec<&'static str> {
    native_arch().into_iter().chain(secondary_arch()).collect()
}
