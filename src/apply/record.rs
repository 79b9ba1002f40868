//! The record `apply` leaves in `/run/portables-generator/`: the units it left attached, their
//! images, fingerprints and links. After an administrator's own `daemon-reload`, the
//! generator's output already shows the new state; this record still shows the old one, so
//! that units whose image went away are still known and stopped.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::snapshot::{Snapshot, Unit};

/// Where the record is kept: in `/run`, so it is gone at the next boot, as is the state it
/// describes.
pub const RECORD: &str = "/run/portables-generator/applied";

/// Most bytes of a record read back: a plan's worth of units, each with a few images.
const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

const HEADER: &str = "# Units left attached by portables-generator apply; rewritten by each run.\n";

/// The record's text for `units`.
pub fn render(units: &Snapshot) -> String {
    let mut out = String::from(HEADER);
    for (name, unit) in units {
        out.push_str(&format!(
            "unit {} {:016x}\n",
            escape(name.as_bytes()),
            unit.fingerprint
        ));
        if let Some(stamp) = unit.stamp {
            out.push_str(&format!("stamp {stamp:016x}\n"));
        }
        for image in &unit.images {
            out.push_str(&format!("image {}\n", escape(image.as_os_str().as_bytes())));
        }
        for by in &unit.wanted_by {
            out.push_str(&format!("wanted-by {}\n", escape(by.as_bytes())));
        }
    }
    out
}

/// The units of a record's `text`; `None` if it is not one (then it is not used at all).
pub fn parse(text: &str) -> Option<Snapshot> {
    let mut units = Snapshot::new();
    let mut current: Option<(String, Unit)> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, rest) = line.split_once(' ')?;
        match key {
            "unit" => {
                let (name, fp) = rest.split_once(' ')?;
                let name = String::from_utf8(unescape(name)?).ok()?;
                let fingerprint = u64::from_str_radix(fp, 16).ok()?;
                if let Some((n, u)) = current.replace((
                    name,
                    Unit {
                        fingerprint,
                        ..Unit::default()
                    },
                )) {
                    units.insert(n, u);
                }
            }
            "stamp" => current.as_mut()?.1.stamp = Some(u64::from_str_radix(rest, 16).ok()?),
            "image" => current
                .as_mut()?
                .1
                .images
                .push(PathBuf::from(OsString::from_vec(unescape(rest)?))),
            "wanted-by" => {
                let by = String::from_utf8(unescape(rest)?).ok()?;
                current.as_mut()?.1.wanted_by.insert(by);
            }
            _ => return None,
        }
    }
    if let Some((n, u)) = current {
        units.insert(n, u);
    }
    Some(units)
}

/// Bytes as one word: `\` and every byte that is not printable ASCII as `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn unescape(word: &str) -> Option<Vec<u8>> {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = word
                .get(i + 2..i + 4)
                .filter(|_| bytes.get(i + 1) == Some(&b'x'))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The record at `path`, if there is a readable one.
pub fn read(path: &Path) -> Option<Snapshot> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_RECORD_BYTES {
        return None;
    }
    parse(&fs::read_to_string(path).ok()?)
}

/// Replace the record at `path` with `units`, atomically (a new file renamed over it).
pub fn write(path: &Path, units: &Snapshot) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(".applied.new");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(render(units).as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let mut units = Snapshot::new();
        units.insert(
            "app.service".into(),
            Unit {
                images: vec![
                    "/var/lib/portables/app.raw".into(),
                    PathBuf::from(OsString::from_vec(b"/x/odd name\n\\\xff.raw".to_vec())),
                ],
                fingerprint: 0xdead_beef_0123_4567,
                wanted_by: ["multi-user.target".to_string()].into(),
                stamp: Some(0x0123_4567_89ab_cdef),
            },
        );
        units.insert("idle.socket".into(), Unit::default());
        let text = render(&units);
        assert!(
            text.contains("image /x/odd\\x20name\\x0a\\x5c\\xff.raw\n"),
            "{text}"
        );
        assert_eq!(parse(&text), Some(units.clone()));

        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("sub/applied");
        write(&at, &units).unwrap();
        assert_eq!(read(&at), Some(units));
    }

    #[test]
    fn anything_else_is_no_record() {
        assert_eq!(parse("image /before/any/unit\n"), None);
        assert_eq!(parse("unit a.service nothex\n"), None);
        assert_eq!(parse("unit a.service 1\nimage bad\\x4\n"), None);
        assert_eq!(parse("what is this\n"), None);
        assert_eq!(parse(""), Some(Snapshot::new()));
        assert_eq!(read(Path::new("/nonexistent/record")), None);
    }
}
