//! Unit file parsing: every key of every section read as a list (strict and as systemd
//! does), and the `[Install]` links computed for a few kinds of unit names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portables_generator::install;
use portables_generator::unit_syntax;
use portables_generator_fuzz::panic_policy;

const NAMES: [&str; 4] = [
    "app.service",
    "app@.service",
    "app@inst.socket",
    "app-web.timer",
];

fuzz_target!(init: panic_policy(), |data: &[u8]| {
    let Ok((file, _warnings)) = unit_syntax::parse(data) else {
        return;
    };
    for section in &file.sections {
        let _ = file.section(&section.name);
        for entry in &section.entries {
            let _ = file.values(&section.name, &entry.key);
            let _ = file.last(&section.name, &entry.key);
            let _ = file.list(&section.name, &entry.key);
            let _ = file.list_lenient(&section.name, &entry.key);
            let _ = unit_syntax::split_words(&entry.value);
        }
    }
    for name in NAMES {
        for version in [252, 257] {
            let _ = install::enablement(name, &file, version, &portables_generator_fuzz::fuzz_host);
        }
    }
});
