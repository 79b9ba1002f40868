//! `portables-generator inspect`.

use crate::cli::InspectArgs;
use crate::root::Root;
use crate::systemd_version::Version;

/// `inspect`.
pub fn run(
    _root: &Root,
    _systemd: Option<Version>,
    _args: &InspectArgs,
    _env: impl Fn(&str) -> Option<String>,
) -> u8 {
    1
}
