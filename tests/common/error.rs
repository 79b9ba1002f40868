//! The shape of the helpers' I/O errors: what was being done, then the error.

use std::io;

/// `WHAT: ERROR`, for an I/O error met while doing WHAT.
pub(super) fn io_context(what: impl std::fmt::Display, e: &io::Error) -> String {
    format!("{what}: {e}")
}
