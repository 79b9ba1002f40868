//! Structure-aware GPT target: the input is an image whose GPT headers (at 512 and 4096)
//! are re-signed before parsing, so mutations reach the checks behind the CRCs. Drives the
//! partition choice, the verity pairing, and then the whole raw-image path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portables_generator::image::open::open_source;
use portables_generator::image::partition::verity::{HashFor, verity_parts};
use portables_generator::image::source::Source;
use portables_generator_fuzz::{drive_tree, panic_policy, resign_gpt, verbose};

fuzz_target!(init: panic_policy(), |data: &[u8]| {
    let mut img = data.to_vec();
    resign_gpt(&mut img);
    // A root hash from the MBR boot code area (unused by the parser), so that the fuzzer
    // can make it name partition UUIDs.
    let hash: Vec<u8> = img.iter().take(32).copied().collect();
    let target = if img.get(32).is_some_and(|b| b & 1 == 1) {
        HashFor::Usr
    } else {
        HashFor::Root
    };
    let opened = match open_source(Source::from_bytes(img)) {
        Ok(opened) => opened,
        Err(e) => {
            if verbose() {
                eprintln!("open_source: {e}");
            }
            return;
        }
    };
    if let Some(partitions) = opened.partitions() {
        if verbose() {
            eprintln!("select: {:?}", partitions.selection);
            eprintln!("verity: {:?}", verity_parts(partitions, None));
        }
        let _ = verity_parts(partitions, None);
        let _ = verity_parts(partitions, Some((&hash, target)));
    }
    match opened.tree() {
        Ok(tree) => drive_tree(&tree),
        Err(e) if verbose() => eprintln!("tree: {e}"),
        Err(_) => {}
    }
});
