//! Reading one image into an [`Attachment`]: open it, check its os-release, collect the
//! units that match. Every failure is a reason naming what is wrong.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::discover::Image;
use crate::facts::{UnitSkip, read_os_release, read_units};
use crate::image::open::open_image;
use crate::image::panic_message;
use crate::names::{default_prefix, unit_matches};
use crate::plan::Attachment;
use crate::root::Root;

/// An image that was read, and the units in it that were left out on the way.
pub struct Read {
    pub attachment: Attachment,
    pub skipped: Vec<UnitSkip>,
}

/// The profile used when configuration names none.
pub const DEFAULT_PROFILE: &str = "default";

/// Read `image`. A panic in a reader (third-party code included) is an error for this
/// image only.
pub fn read_image(root: &Root, image: &Image) -> Result<Read, String> {
    match catch_unwind(AssertUnwindSafe(|| read_image_inner(root, image))) {
        Ok(r) => r,
        Err(payload) => Err(format!(
            "internal error while reading the image: {}",
            panic_message(&*payload)
        )),
    }
}

fn read_image_inner(root: &Root, image: &Image) -> Result<Read, String> {
    let prefixes = vec![default_prefix(&image.entry)?];
    let tree = open_image(&root.join(&image.path), image.kind)?;
    let os_release = read_os_release(&tree)?;

    if let Some(allowed) = os_release.get("PORTABLE_PREFIXES") {
        let allowed: Vec<&str> = allowed.split_whitespace().collect();
        if let Some(bad) = prefixes.iter().find(|p| !allowed.contains(&p.as_str())) {
            return Err(format!(
                "unit prefix '{bad}' is not allowed by the image's PORTABLE_PREFIXES= (acceptable: {})",
                allowed.join(" ")
            ));
        }
    }

    let units = read_units(&tree, |name| unit_matches(name, &prefixes))
        .map_err(|e| format!("cannot read unit files: {e}"))?;
    if units.found.is_empty() {
        let also = if units.skipped.is_empty() {
            String::new()
        } else {
            let names: Vec<_> = units.skipped.iter().map(|s| s.name.as_str()).collect();
            format!("; left out: {}", names.join(", "))
        };
        return Err(format!(
            "no matching unit files (prefix {}){also}",
            prefixes.join(", ")
        ));
    }
    Ok(Read {
        attachment: Attachment {
            image: image.clone(),
            units: units.found,
            profile: DEFAULT_PROFILE.to_string(),
            enable: true,
            extensions: Vec::new(),
        },
        skipped: units.skipped,
    })
}
