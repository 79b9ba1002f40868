//! os-release / extension-release parsing, and the checks an extension's release data goes
//! through against a base image's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portables_generator::extension;
use portables_generator::os_release;
use portables_generator_fuzz::panic_policy;

fuzz_target!(init: panic_policy(), |data: &[u8]| {
    // Both ways a comment ending in a backslash is read (before and from 254).
    let _ = os_release::parse_for(data, 252);
    let Ok(release) = os_release::parse(data) else {
        return;
    };
    let _ = release.get("ID");
    let _ = release.non_empty("VERSION_ID");
    // The same data as both sides of the extension check, and as an extension of a fixed base.
    for systemd in [252, 257] {
        let _ = extension::validate("app", &release, &release, systemd);
    }
    let _ = extension::portable_prefixes(&release);
    if let Ok(base) = os_release::parse(b"ID=debian\nVERSION_ID=12\n") {
        let _ = extension::validate("app", &release, &base, 257);
    }
});
