//! A squashfs file system read directly (no partition table), then what the generator reads
//! from it: os-release, every unit (symlinks followed), extension-release.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portables_generator::image::chase::Tree;
use portables_generator::image::source::Source;
use portables_generator::image::squashfs;
use portables_generator_fuzz::{drive_tree, panic_policy, verbose};

fuzz_target!(init: panic_policy(), |data: &[u8]| {
    match squashfs::open(Source::from_bytes(data.to_vec())) {
        Ok(fs) => drive_tree(&Tree::new(fs)),
        Err(e) if verbose() => eprintln!("open: {e}"),
        Err(_) => {}
    }
});
