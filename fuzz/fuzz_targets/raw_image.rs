//! Any bytes as a raw image (`*.raw` or a block device): partition table or bare file
//! system, then what the generator reads from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portables_generator::image::open::open_source;
use portables_generator::image::probe;
use portables_generator::image::source::Source;
use portables_generator_fuzz::{drive_tree, panic_policy, verbose};

fuzz_target!(init: panic_policy(), |data: &[u8]| {
    let src = Source::from_bytes(data.to_vec());
    let _ = probe::sniff(&src);
    match open_source(src).and_then(|opened| opened.tree()) {
        Ok(tree) => drive_tree(&tree),
        Err(e) if verbose() => eprintln!("open_source: {e}"),
        Err(_) => {}
    }
});
