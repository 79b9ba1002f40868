//! Versioned directories (`NAME.raw.v/`, `NAME.v/`), chosen as systemd's vpick chooses.
//!
//! This follows `make_choice()` and `parse_tries()` in systemd's src/shared/vpick.c (v256 and
//! later, flags `PICK_ARCHITECTURE|PICK_TRIES` as `image_find()` and `image_discover()` in
//! src/shared/discover-image.c pass them) and man/systemd.v.xml. systemd 252 predates `.v/`
//! directories altogether (they are v256); the generator accepts them the way newer systemd does.
//!
//! The name of an entry is taken apart from the right, exactly as vpick does it, which has two
//! consequences worth knowing when naming files:
//!
//! * after `NAME_` and before the suffix, a trailing `+LEFT` or `+LEFT-DONE` is the tries counter;
//! * then everything after the *last* `_` is cut off as the architecture field, whether or not it
//!   names an architecture: `foo_1_2.raw` has version `1`, not `1_2`. An architecture name
//!   other than the local ones drops the entry; anything else counts as "no architecture".

use std::cmp::Ordering;

/// What callers hand [`pick`] as the local architectures.
use crate::names::image_name_is_valid;
use crate::verscmp::strverscmp_improved;

/// Every architecture name systemd knows (`architecture_table` in src/basic/architecture.c):
/// `_x86-64` is an architecture field even on arm64, where it drops the entry, while `_foo`
/// only means the entry names no architecture.
const ARCHITECTURES: [&str; 34] = [
    "arm64",
    "arm64-be",
    "arm",
    "arm-be",
    "alpha",
    "arc",
    "arc-be",
    "cris",
    "x86-64",
    "x86",
    "x32",
    "ia64",
    "loongarch64",
    "m68k",
    "mips64-le",
    "mips64",
    "mips-le",
    "mips",
    "nios2",
    "parisc64",
    "parisc",
    "ppc64-le",
    "ppc64",
    "ppc",
    "ppc-le",
    "riscv32",
    "riscv64",
    "s390x",
    "s390",
    "sh64",
    "sh",
    "sparc64",
    "sparc",
    "tilegx",
];

/// Longest file name part (`NAME_MAX`), as `filename_part_is_valid()` allows.
const NAME_MAX: usize = 255;

/// Most rejected entries named in an error; a directory can hold thousands.
const MAX_REASONS: usize = 8;

/// The entry vpick chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its name in the directory, e.g. `foo_1.2+3-1.raw`.
    pub file_name: String,
    /// The version the name carries, compared with `strverscmp_improved()`.
    pub version: String,
    /// The architecture the name carries, when it names one (it is then a local one).
    pub arch: Option<String>,
    /// Boot-counting tries left (`+LEFT` or `+LEFT-DONE`), when the name carries them.
    pub tries_left: Option<u64>,
    /// `Some(0)` for a bare `+LEFT`, as systemd's `parse_tries()` sets it.
    pub tries_done: Option<u64>,
}

/// What a versioned directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suffix {
    /// `NAME.raw.v/`: `NAME_….raw` regular files or block devices.
    Raw,
    /// `NAME.v/`: `NAME_…` directories.
    Directory,
}

impl Suffix {
    fn text(self) -> &'static str {
        match self {
            Suffix::Raw => ".raw",
            Suffix::Directory => "",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Suffix::Raw => "a regular file or block device",
            Suffix::Directory => "a directory",
        }
    }
}

/// Split `foo.raw.v` into `("foo", Suffix::Raw)` and `foo.v` into `("foo", Suffix::Directory)`,
/// as `image_discover()` derives the name and the filter from the directory's name; `None`
/// for anything else.
///
/// `foo.mstack.v` (systemd 258's stacked images) is `None` too: those directories hold
/// `.mstack` layouts this generator does not read, and must not be taken for `NAME.v` of an
/// image called `foo.mstack`.
pub fn versioned_dir(name: &str) -> Option<(String, Suffix)> {
    let stem = name.strip_suffix(".v")?;
    if stem.ends_with(".mstack") {
        return None;
    }
    let (base, suffix) = match stem.strip_suffix(".raw") {
        Some(base) => (base, Suffix::Raw),
        None => (stem, Suffix::Directory),
    };
    image_name_is_valid(base).then(|| (base.to_string(), suffix))
}

/// One entry that passed every filter, with what the comparison looks at.
struct Parsed<'a> {
    name: &'a str,
    version: &'a str,
    /// Position in `native`; `native.len()` for "no architecture".
    arch_index: usize,
    arch: Option<&'a str>,
    tries: Option<(u32, u32)>,
}

impl Parsed<'_> {
    /// systemd keeps `UINT_MAX` in both counters when a name carries none.
    fn left(&self) -> u32 {
        self.tries.map_or(u32::MAX, |t| t.0)
    }
    fn done(&self) -> u32 {
        self.tries.map_or(u32::MAX, |t| t.1)
    }
}

/// Greater is better; the order of the tests in `make_choice()`.
fn compare(a: &Parsed, b: &Parsed) -> Ordering {
    (a.left() != 0)
        .cmp(&(b.left() != 0))
        .then_with(|| strverscmp_improved(a.version.as_bytes(), b.version.as_bytes()))
        .then_with(|| b.arch_index.cmp(&a.arch_index))
        .then_with(|| a.left().cmp(&b.left()))
        .then_with(|| b.done().cmp(&a.done()))
        .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
}

/// Why no entry of a versioned directory was chosen. Callers branch on it: a directory with
/// no usable entry is told differently when some entries led nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickError {
    /// The directory is named `.v` or `.raw.v`, with no image name.
    NoName,
    /// It holds no entry at all; `pattern` is what it should hold (`foo_VERSION.raw`).
    Empty {
        /// The names it should hold.
        pattern: String,
    },
    /// It holds `count` entries, none named for this image.
    Unrelated {
        /// How many entries it holds.
        count: usize,
        /// The names it should hold.
        pattern: String,
    },
    /// Entries named for this image, none of them usable: why, for the first few.
    NoneQualifies {
        /// The names it should hold.
        pattern: String,
        /// Why each of the first few was not usable.
        reasons: Vec<String>,
        /// How many more were not usable, not named.
        more: usize,
    },
}

impl std::fmt::Display for PickError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PickError::NoName => write!(f, "the versioned directory has no image name before .v"),
            PickError::Empty { pattern } => {
                write!(
                    f,
                    "the directory is empty, it should hold {pattern} entries"
                )
            }
            PickError::Unrelated { count, pattern } => {
                write!(f, "none of its {count} entries is named {pattern}")
            }
            PickError::NoneQualifies {
                pattern,
                reasons,
                more,
            } => {
                write!(f, "no {pattern} entry qualifies: {}", reasons.join("; "))?;
                if *more > 0 {
                    write!(f, "; and {more} more")?;
                }
                Ok(())
            }
        }
    }
}

/// Choose among the entries of a `NAME.raw.v/` or `NAME.v/` directory.
///
/// `entries` holds each entry's file name, whether it is (after following symlinks) a regular
/// file or block device, and whether it is a directory. `native` lists the local architecture
/// names, most preferred first ([`crate::arch::local_architectures`]). The error names what was found and
/// why none of it qualifies.
pub fn pick(
    basename: &str,
    suffix: Suffix,
    entries: &[(String, bool, bool)],
    native: &[&str],
) -> Result<Candidate, PickError> {
    // vpick would match every entry against an empty name; no image is called "".
    if basename.is_empty() {
        return Err(PickError::NoName);
    }
    let mut best: Option<Parsed> = None;
    let mut rejected = Vec::new();
    let mut unrelated = 0usize;

    // Sorted so that the result cannot depend on the listing order, even were the version
    // comparison not a total order on odd strings.
    let mut sorted: Vec<&(String, bool, bool)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));

    for (name, is_file, is_dir) in sorted {
        let parsed = match parse_entry(basename, suffix, name, native) {
            Ok(Some(p)) => p,
            Ok(None) => {
                unrelated += 1;
                continue;
            }
            Err(why) => {
                rejected.push(format!("{name} {why}"));
                continue;
            }
        };
        // systemd main skips entries of the wrong type while enumerating (its test-vpick.c,
        // `pick_filter_image_any`); earlier vpick.c checked only the winner, in pin_choice(),
        // and then failed the whole directory.
        let fits = match suffix {
            Suffix::Raw => *is_file,
            Suffix::Directory => *is_dir,
        };
        if !fits {
            rejected.push(format!("{name} is not {}", suffix.kind()));
            continue;
        }
        if best.as_ref().is_none_or(|b| compare(&parsed, b).is_ge()) {
            best = Some(parsed);
        }
    }

    if let Some(b) = best {
        return Ok(Candidate {
            file_name: b.name.to_string(),
            version: b.version.to_string(),
            arch: b.arch.map(str::to_string),
            tries_left: b.tries.map(|t| u64::from(t.0)),
            tries_done: b.tries.map(|t| u64::from(t.1)),
        });
    }

    let pattern = format!("{basename}_VERSION{}", suffix.text());
    if rejected.is_empty() {
        return Err(if unrelated == 0 {
            PickError::Empty { pattern }
        } else {
            PickError::Unrelated {
                count: unrelated,
                pattern,
            }
        });
    }
    let more = rejected.len().saturating_sub(MAX_REASONS);
    rejected.truncate(MAX_REASONS);
    Err(PickError::NoneQualifies {
        pattern,
        reasons: rejected,
        more,
    })
}

/// Take `NAME_VERSION[_ARCH][+LEFT[-DONE]]SUFFIX` apart. `Ok(None)` for names of other
/// images, `Err` for names of this one that vpick would skip.
fn parse_entry<'a>(
    basename: &str,
    suffix: Suffix,
    name: &'a str,
    native: &[&str],
) -> Result<Option<Parsed<'a>>, String> {
    let Some(rest) = name
        .strip_prefix(basename)
        .and_then(|r| r.strip_prefix('_'))
    else {
        return Ok(None);
    };
    let Some(mut e) = rest.strip_suffix(suffix.text()) else {
        return Err(format!("does not end in {}", suffix.text()));
    };

    let mut tries = None;
    if let Some(plus) = e.rfind('+')
        && let Some(t) = parse_tries(&e[plus..])
    {
        tries = Some(t);
        e = &e[..plus];
    }

    let mut arch_index = native.len();
    let mut arch = None;
    if let Some(underscore) = e.rfind('_') {
        let field = &e[underscore + 1..];
        if ARCHITECTURES.contains(&field) {
            match native.iter().position(|n| *n == field) {
                Some(i) => {
                    arch_index = i;
                    arch = Some(field);
                }
                None => {
                    return Err(format!(
                        "is for architecture {field}, this machine runs {}",
                        if native.is_empty() {
                            "none systemd names".to_string()
                        } else {
                            native.join(" or ")
                        }
                    ));
                }
            }
        }
        // vpick cuts the field even when it names no architecture.
        e = &e[..underscore];
    }

    if !version_is_valid(e) {
        return Err(format!(
            "has no valid version (\"{e}\"; letters, digits and .,_-+ only)"
        ));
    }
    Ok(Some(Parsed {
        name,
        version: e,
        arch_index,
        arch,
        tries,
    }))
}

/// systemd's `version_is_valid()` (src/basic/string-util.c).
fn version_is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_MAX
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".,_-+".contains(&c))
}

/// `parse_tries()`: `+LEFT` (done is then 0) or `+LEFT-DONE`; `None` leaves the text in the
/// version, as in systemd.
fn parse_tries(s: &str) -> Option<(u32, u32)> {
    let s = s.strip_prefix('+')?;
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    let (left, rest) = s.split_at(n);
    let left = safe_atou(left)?;
    if rest.is_empty() {
        return Some((left, 0));
    }
    let done = rest.strip_prefix('-')?;
    if !done.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((left, safe_atou(done)?))
}

/// `safe_atou()` on a string of digits: base 0, so a leading `0` means octal (`+010` is eight
/// tries, `+08` no counter at all), and the value must fit an `unsigned`.
fn safe_atou(digits: &str) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    let radix = if digits.len() > 1 && digits.starts_with('0') {
        8
    } else {
        10
    };
    u64::from_str_radix(digits, radix)
        .ok()
        .and_then(|v| u32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::local_architectures;

    const X86_64: &[&str] = &["x86-64", "x86"];

    fn files(names: &[&str]) -> Vec<(String, bool, bool)> {
        names.iter().map(|n| (n.to_string(), true, false)).collect()
    }

    fn dirs(names: &[&str]) -> Vec<(String, bool, bool)> {
        names.iter().map(|n| (n.to_string(), false, true)).collect()
    }

    fn chosen(basename: &str, entries: &[(String, bool, bool)], native: &[&str]) -> String {
        pick(basename, Suffix::Raw, entries, native)
            .unwrap()
            .file_name
    }

    #[test]
    fn versioned_dir_names() {
        assert_eq!(
            versioned_dir("foo.raw.v"),
            Some(("foo".into(), Suffix::Raw))
        );
        assert_eq!(
            versioned_dir("foo.v"),
            Some(("foo".into(), Suffix::Directory))
        );
        assert_eq!(
            versioned_dir("foo_1.2.v"),
            Some(("foo_1.2".into(), Suffix::Directory))
        );
        assert_eq!(
            versioned_dir("a.b.raw.v"),
            Some(("a.b".into(), Suffix::Raw))
        );
        for bad in [
            "foo.raw",
            "foo",
            "foo.vv",
            ".v",
            ".raw.v",
            "foo.mstack.v",
            ".#foo.v",
            "foo.v/",
        ] {
            assert_eq!(versioned_dir(bad), None, "{bad}");
        }
    }

    /// systemd's test-vpick.c `path_pick`, on x86-64 (native x86-64, secondary x86).
    #[test]
    fn systemd_test_vpick_cases() {
        let mut e = files(&[
            "foo_5.5.raw",
            "foo_55.raw",
            "foo_5.raw",
            "foo_5_ia64.raw",
            "foo_7.raw",
            "foo_7_x86-64.raw",
            "foo_55_x86-64.raw",
            "foo_55_x86.raw",
            "foo_99_x86.raw",
            "foo_100_sparc.raw",
            "quux_1_s390.raw",
            "quux_2_s390+4-6.raw",
            "quux_3_s390+0-10.raw",
        ]);
        let c = pick("foo", Suffix::Raw, &e, X86_64).unwrap();
        assert_eq!(c.file_name, "foo_99_x86.raw");
        assert_eq!(c.version, "99");
        assert_eq!(c.arch.as_deref(), Some("x86"));

        // An explicit architecture filter is vpick's single-element list.
        let c = pick("foo", Suffix::Raw, &e, &["x86-64"]).unwrap();
        assert_eq!(
            (c.file_name.as_str(), c.version.as_str()),
            ("foo_55_x86-64.raw", "55")
        );
        // vpick's explicit single-architecture filter also drops entries without an
        // architecture field; discovery never uses one, so on an ia64 machine (no secondary)
        // the newest entry without a field wins over the older ia64 build.
        let c = pick("foo", Suffix::Raw, &e, &["ia64"]).unwrap();
        assert_eq!(c.file_name, "foo_55.raw");

        let c = pick("quux", Suffix::Raw, &e, &["s390"]).unwrap();
        assert_eq!(c.file_name, "quux_2_s390+4-6.raw");
        assert_eq!((c.tries_left, c.tries_done), (Some(4), Some(6)));
        assert_eq!(c.arch.as_deref(), Some("s390"));

        e.retain(|x| x.0 != "foo_99_x86.raw");
        let c = pick("foo", Suffix::Raw, &e, X86_64).unwrap();
        // Same version 55 for x86-64, x86 and none: native first.
        assert_eq!(c.file_name, "foo_55_x86-64.raw");
        assert_eq!(c.arch.as_deref(), Some("x86-64"));
        let c = pick("foo", Suffix::Raw, &e, &["x86"]).unwrap();
        assert_eq!(c.file_name, "foo_55_x86.raw");
    }

    /// The example of man/systemd.v.xml.
    #[test]
    fn systemd_v_man_page_example() {
        let e = files(&[
            "mymachine_7.5.13.raw",
            "mymachine_7.5.14_x86-64.raw",
            "mymachine_7.6.0_arm64.raw",
            "mymachine_7.7.0_x86-64+0-5.raw",
        ]);
        assert_eq!(
            chosen("mymachine", &e, X86_64),
            "mymachine_7.5.14_x86-64.raw"
        );
        // On arm64 the arm64 build is newest among the rest.
        assert_eq!(
            chosen("mymachine", &e, &["arm64", "arm"]),
            "mymachine_7.6.0_arm64.raw"
        );
        let e = files(&[
            "mymachine_7.5.13.raw",
            "mymachine_7.5.14.raw",
            "mymachine_7.6.0.raw",
        ]);
        assert_eq!(chosen("mymachine", &e, X86_64), "mymachine_7.6.0.raw");
    }

    #[test]
    fn versions_sort_as_uapi_10() {
        let e = files(&[
            "foo_1.9.raw",
            "foo_1.10.raw",
            "foo_1.2.raw",
            "foo_1.10a.raw",
        ]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1.10a.raw");
        let e = files(&["foo_2.0-1.raw", "foo_2.0.raw", "foo_002.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_2.0-1.raw");
        // '~' and '^' are UAPI.10 syntax but not valid in vpick versions.
        let e = files(&["foo_2~rc1.raw", "foo_2^1.raw", "foo_1.99.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1.99.raw");
    }

    #[test]
    fn exhausted_tries_lose_to_anything() {
        let e = files(&["foo_9+0.raw", "foo_1.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1.raw");
        let e = files(&["foo_9+0-3.raw", "foo_1+1-7.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1+1-7.raw");
        // Alone, an exhausted entry is still used.
        let c = pick("foo", Suffix::Raw, &files(&["foo_9+0-3.raw"]), X86_64).unwrap();
        assert_eq!((c.tries_left, c.tries_done), (Some(0), Some(3)));
    }

    #[test]
    fn ties_broken_as_make_choice() {
        // Same version: more tries left, then no counter (UINT_MAX) over any counter.
        let e = files(&["foo_1+2.raw", "foo_1+5.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1+5.raw");
        let e = files(&["foo_1+5.raw", "foo_1.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1.raw");
        // Same tries left: fewer done.
        let e = files(&["foo_1+3-4.raw", "foo_1+3-1.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1+3-1.raw");
        // A bare +LEFT has done=0 and beats LEFT-1.
        let c = pick(
            "foo",
            Suffix::Raw,
            &files(&["foo_1+3-1.raw", "foo_1+3.raw"]),
            X86_64,
        )
        .unwrap();
        assert_eq!(
            (c.file_name.as_str(), c.tries_done),
            ("foo_1+3.raw", Some(0))
        );
        // Architecture ranks before tries: native with fewer tries beats secondary with more.
        let e = files(&["foo_1_x86+9.raw", "foo_1_x86-64+1.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1_x86-64+1.raw");
        // Everything equal: the greater file name.
        let e = files(&["foo_1_a.raw", "foo_1_b.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1_b.raw");
        // Listing order does not matter.
        let mut e = files(&["foo_1_b.raw", "foo_1_a.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_1_b.raw");
        e.reverse();
        assert_eq!(chosen("foo", &e, X86_64), "foo_1_b.raw");
    }

    #[test]
    fn last_underscore_field_is_always_cut() {
        let c = pick("foo", Suffix::Raw, &files(&["foo_1_2.raw"]), X86_64).unwrap();
        assert_eq!((c.version.as_str(), c.arch), ("1", None));
        let c = pick("foo", Suffix::Raw, &files(&["foo_1.2_3_x86.raw"]), X86_64).unwrap();
        assert_eq!(
            (c.version.as_str(), c.arch.as_deref()),
            ("1.2_3", Some("x86"))
        );
        // `foo_bar_1` belongs to foo with version "bar", which is older than any number.
        let e = files(&["foo_bar_1.raw", "foo_0.1.raw"]);
        assert_eq!(chosen("foo", &e, X86_64), "foo_0.1.raw");
        // Unknown architecture build: only entries without an architecture field qualify.
        let e = files(&["foo_2_x86-64.raw", "foo_1.raw"]);
        assert_eq!(chosen("foo", &e, &[]), "foo_1.raw");
        let err = pick("foo", Suffix::Raw, &files(&["foo_2_x86-64.raw"]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("none systemd names"), "{err}");
    }

    #[test]
    fn tries_parsing_follows_safe_atou() {
        assert_eq!(parse_tries("+3"), Some((3, 0)));
        assert_eq!(parse_tries("+3-4"), Some((3, 4)));
        assert_eq!(parse_tries("+010"), Some((8, 0)));
        assert_eq!(parse_tries("+1-010"), Some((1, 8)));
        assert_eq!(parse_tries("+0"), Some((0, 0)));
        assert_eq!(parse_tries("+00"), Some((0, 0)));
        for bad in [
            "+",
            "+-1",
            "+08",
            "+1-",
            "+1-x",
            "+1x",
            "3",
            "+1-2-3",
            "+4294967296",
            "+1--2",
        ] {
            assert_eq!(parse_tries(bad), None, "{bad}");
        }
        assert_eq!(parse_tries("+4294967295"), Some((u32::MAX, 0)));
        // A counter that does not parse stays in the version, which allows '+'.
        let c = pick("foo", Suffix::Raw, &files(&["foo_1.0+abc.raw"]), X86_64).unwrap();
        assert_eq!((c.version.as_str(), c.tries_left), ("1.0+abc", None));
        let c = pick("foo", Suffix::Raw, &files(&["foo_1+08.raw"]), X86_64).unwrap();
        assert_eq!(c.version, "1+08");
        // The counter is taken off before the architecture.
        let c = pick("foo", Suffix::Raw, &files(&["foo_2_x86+1-2.raw"]), X86_64).unwrap();
        assert_eq!(
            (c.version.as_str(), c.arch.as_deref(), c.tries_left),
            ("2", Some("x86"), Some(1))
        );
    }

    #[test]
    fn invalid_versions_and_other_names() {
        let e = files(&[
            "foo_.raw",
            "foo__x86.raw",
            "foo_+3.raw",
            "foo_1 2.raw",
            "foo_1~rc.raw",
            "foo_1^2.raw",
            "foo_1:2.raw",
            "foo_ä.raw",
            "foo.raw",
            "foobar_9.raw",
            "bar_9.raw",
            "foo_9.raw.xz",
            ".",
            "..",
        ]);
        let err = pick("foo", Suffix::Raw, &e, X86_64)
            .unwrap_err()
            .to_string();
        for name in [
            "foo_.raw",
            "foo__x86.raw",
            "foo_+3.raw",
            "foo_1 2.raw",
            "foo_1~rc.raw",
            "foo_1^2.raw",
            "foo_1:2.raw",
            "foo_9.raw.xz",
        ] {
            assert!(err.contains(name), "{name} in {err}");
        }
        assert!(err.contains("and 1 more"), "{err}");
        assert!(!err.contains("foobar"), "{err}");
        assert!(
            err.starts_with("no foo_VERSION.raw entry qualifies: "),
            "{err}"
        );
    }

    #[test]
    fn type_must_fit_the_suffix() {
        let mut e = files(&["foo_1.raw"]);
        e.push(("foo_2.raw".into(), false, true));
        e.push(("foo_3.raw".into(), false, false));
        assert_eq!(chosen("foo", &e, X86_64), "foo_1.raw");

        let mut e = dirs(&["app_1", "app_3"]);
        e.push(("app_4".into(), true, false));
        e.push(("app_5.raw".into(), true, false));
        let c = pick("app", Suffix::Directory, &e, X86_64).unwrap();
        assert_eq!((c.file_name.as_str(), c.version.as_str()), ("app_3", "3"));

        let err = pick("app", Suffix::Directory, &files(&["app_1"]), X86_64)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no app_VERSION entry qualifies: app_1 is not a directory"
        );
    }

    #[test]
    fn directory_versions_keep_dots() {
        // Without a suffix, `.raw` is part of the version text.
        let c = pick("app", Suffix::Directory, &dirs(&["app_1.raw"]), X86_64).unwrap();
        assert_eq!(c.version, "1.raw");
        let c = pick(
            "app",
            Suffix::Directory,
            &dirs(&["app_2.0_arm64", "app_1.0"]),
            X86_64,
        )
        .unwrap();
        assert_eq!(c.file_name, "app_1.0");
    }

    #[test]
    fn empty_and_unrelated() {
        assert_eq!(
            pick("foo", Suffix::Raw, &[], X86_64)
                .unwrap_err()
                .to_string(),
            "the directory is empty, it should hold foo_VERSION.raw entries"
        );
        assert_eq!(
            pick("foo", Suffix::Raw, &files(&["bar_1.raw", "README"]), X86_64)
                .unwrap_err()
                .to_string(),
            "none of its 2 entries is named foo_VERSION.raw"
        );
        let err = pick("foo", Suffix::Raw, &files(&["foo_1_arm64.raw"]), X86_64)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no foo_VERSION.raw entry qualifies: foo_1_arm64.raw is for architecture arm64, \
             this machine runs x86-64 or x86"
        );
    }

    #[test]
    fn never_panics_on_odd_names() {
        let odd = [
            "",
            "_",
            "+",
            "foo_",
            "foo_+",
            "foo_+-",
            "foo_1+-",
            "foo__",
            "foo_é_ü+1-2.raw",
            "foo_\u{0}.raw",
            "foo_1_.raw",
            "foo_.raw.raw",
            "foo_1+99999999999999999999.raw",
        ];
        for suffix in [Suffix::Raw, Suffix::Directory] {
            for basename in ["foo", "", "é", "_"] {
                let e: Vec<_> = odd.iter().map(|n| (n.to_string(), true, true)).collect();
                let _ = pick(basename, suffix, &e, X86_64);
            }
        }
        let long = format!("foo_{}.raw", "1".repeat(300));
        assert!(pick("foo", Suffix::Raw, &files(&[&long]), X86_64).is_err());
    }

    #[test]
    fn architecture_table_has_systemd_names() {
        assert!(ARCHITECTURES.contains(&"x86-64"));
        for a in local_architectures() {
            assert!(ARCHITECTURES.contains(&a), "{a}");
        }
    }
}
