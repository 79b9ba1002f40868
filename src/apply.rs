//! `portables-generator apply`: not part of this build.

use crate::cli::ApplyArgs;
use crate::generate::EXIT_FAILED;

/// Says that `apply` is not available, and fails.
pub fn run(_args: &ApplyArgs) -> u8 {
    eprintln!("portables-generator: apply is not available in this build");
    EXIT_FAILED
}
