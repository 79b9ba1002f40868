//! portables.d files: the input is read both as an image's `NAME.conf` and as a global
//! `_*.conf`; split at the first NUL byte it is also two `_*.conf` files, the later winning.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use portables_generator::config::{parse_defaults, parse_image_config};
use portables_generator_fuzz::panic_policy;

fuzz_target!(init: panic_policy(), |data: &[u8]| {
    let _ = parse_image_config("app", Path::new("/etc/portables.d/app.conf"), data);
    let mut files = vec![(PathBuf::from("/usr/lib/portables.d/_vendor.conf"), data.to_vec())];
    if let Some(nul) = data.iter().position(|&b| b == 0) {
        files = vec![
            (
                PathBuf::from("/usr/lib/portables.d/_a.conf"),
                data[..nul].to_vec(),
            ),
            (
                PathBuf::from("/etc/portables.d/_b.conf"),
                data[nul + 1..].to_vec(),
            ),
        ];
    }
    let _ = parse_defaults(&files);
});
