//! The values `portables.d` keys take: booleans, paths, unit name prefixes, profile names,
//! lists of them, and how a value is shown in a message.

use std::path::PathBuf;

use crate::names::filename_is_valid;
use crate::unit_syntax::{parse_boolean, split_words};

/// Longest path accepted, as systemd's `path_is_valid()` (`PATH_MAX`, less the NUL).
const PATH_MAX: usize = 4095;
/// Longest path component accepted (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// Values longer than this are cut in messages: a 1 MiB value must not become a 1 MiB log line.
const SHOWN_VALUE_MAX: usize = 200;

/// A value type: how one value (each word, in a list) is parsed, and how a value is named in
/// a message.
pub(super) struct Value<T> {
    /// The value, or why the text is not one.
    pub parse: fn(&str) -> Result<T, String>,
    pub show: fn(&T) -> String,
}

/// systemd's booleans, shown as yes or no.
pub(super) const BOOLEAN: Value<bool> = Value {
    parse: boolean,
    show: |b| if *b { "yes" } else { "no" }.to_string(),
};

pub(super) const PATH: Value<PathBuf> = Value {
    parse: normalized_path,
    show: |p| format!("'{}'", p.display()),
};

pub(super) const UNIT_PREFIX: Value<String> = Value {
    parse: unit_prefix,
    show: |s| format!("'{s}'"),
};

pub(super) const PROFILE: Value<String> = Value {
    parse: profile_name,
    show: |s| format!("'{s}'"),
};

/// `value` as it appears in a message, cut if very long.
pub(super) fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_VALUE_MAX) {
        Some((cut, _)) => format!("{}…", value.get(..cut).unwrap_or_default()),
        None => value.to_string(),
    }
}

/// A list value: every word must be valid, or the whole assignment is.
pub(super) fn words<T>(
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    split_words(value)?
        .iter()
        .map(|w| parse(w).map_err(|why| format!("'{}': {why}", shown(w))))
        .collect()
}

fn boolean(value: &str) -> Result<bool, String> {
    parse_boolean(value).ok_or_else(|| "not a boolean".to_string())
}

/// An absolute path as systemd's `path_simplify_and_warn(PATH_CHECK_ABSOLUTE)` accepts it:
/// `//` and `/./` are simplified away, `..` is refused (it cannot be simplified without
/// looking at the file system). Stricter than systemd: `/` itself (the host's root is no
/// image) and control characters (they would end up in generated unit files) are refused.
pub fn normalized_path(value: &str) -> Result<PathBuf, String> {
    if !value.starts_with('/') {
        return Err("not an absolute path".into());
    }
    if value.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    let mut parts = Vec::new();
    for part in value.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("not normalized (contains \"..\")".into()),
            p if p.len() > NAME_MAX => {
                return Err(format!("a path component is longer than {NAME_MAX} bytes"));
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("names the root directory".into());
    }
    let path = format!("/{}", parts.join("/"));
    if path.len() > PATH_MAX {
        return Err(format!("longer than {PATH_MAX} bytes"));
    }
    Ok(PathBuf::from(path))
}

/// A `Match=` word: a unit name prefix that can only ever match unit names.
fn unit_prefix(word: &str) -> Result<String, String> {
    let chars_ok = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | ':' | '_' | '-'));
    if chars_ok && filename_is_valid(word) {
        Ok(word.to_string())
    } else {
        Err("not a unit name prefix (it must consist of [A-Za-z0-9.@:_-])".into())
    }
}

/// A profile name, as `portablectl --profile=` takes it: a file name, never a path.
fn profile_name(value: &str) -> Result<String, String> {
    if filename_is_valid(value) && !value.chars().any(char::is_control) {
        Ok(value.to_string())
    } else {
        Err("not a valid profile name (a file name, without '/')".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for (text, value) in [
            ("1", true),
            ("yes", true),
            ("Y", true),
            ("TRUE", true),
            ("t", true),
            ("On", true),
            ("0", false),
            ("no", false),
            ("N", false),
            ("False", false),
            ("f", false),
            ("OFF", false),
        ] {
            assert_eq!(parse_boolean(text), Some(value), "{text}");
        }
        for bad in ["", "2", "yess", "enable", " yes", "oui"] {
            assert_eq!(parse_boolean(bad), None, "{bad}");
        }
    }
}
