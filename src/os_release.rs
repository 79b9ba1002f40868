//! os-release and extension-release files (environment-file syntax).
//!
//! This follows systemd 252's `parse_env_file_internal()` (src/basic/env-file.c) with the
//! `load_env_file_pairs()` push function, which is how systemd reads these files: one
//! `KEY=VALUE` per line, `#`/`;` comment lines, values unquoted, in 'single' or in "double"
//! quotes, and the last assignment of a key winning while keeping the key's first position.
//!
//! Two rules are stricter than that function: assignments whose key is not a valid
//! environment variable name are dropped (systemd keeps them, but no os-release field has
//! such a name, so only the listing in [`OsRelease::fields`] differs), and a NUL byte is an
//! error (systemd's `read_full_stream()` refuses it too, so the result is the same).

use std::collections::HashMap;
use std::fmt;

use crate::unit_syntax::systemd_utf8;

/// systemd's `NEWLINE`; a lone `\r` ends a line here as well.
const NEWLINE: &[u8] = b"\n\r";
/// systemd's `WHITESPACE`.
const WHITESPACE: &[u8] = b" \t\n\r";
/// systemd's `COMMENTS`.
const COMMENTS: &[u8] = b"#;";
/// systemd's `SHELL_NEED_ESCAPE`: the characters a backslash escapes inside double quotes.
const SHELL_NEED_ESCAPE: &[u8] = b"\"\\`$";

/// An os-release or extension-release file, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// In file order, deduplicated with last value winning.
    pub fields: Vec<(String, String)>,
}

/// Why a file is not a valid os-release: the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsReleaseError(pub String);

impl fmt::Display for OsReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OsReleaseError {}

impl OsRelease {
    /// The value of `key`, if the file sets it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value if present and non-empty.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    SingleQuoteValue,
    DoubleQuoteValue,
    DoubleQuoteValueEscape,
    Comment,
    CommentEscape,
}

/// Parse an os-release or extension-release file.
///
/// Invalid UTF-8 in a key or value is an error, as in systemd's `check_utf8ness_and_warn()`
/// (whose message says "ignoring" but whose caller gives up on the file); invalid UTF-8 in a
/// comment or in a line without `=` is never looked at, as in systemd.
///
/// This reads as the newest systemd does; [`parse_for`] reads as a given version.
pub fn parse(bytes: &[u8]) -> Result<OsRelease, OsReleaseError> {
    parse_for(bytes, crate::systemd_version::NEWEST)
}

/// Parse as systemd `systemd` does: before 254 a backslash at the end of a comment line
/// swallows the next line into the comment (`parse_env_file_internal()`, v254's
/// `COMMENT_ESCAPE`), so `# note \` followed by `ID=x` sets no `ID=`.
pub fn parse_for(bytes: &[u8], systemd: u32) -> Result<OsRelease, OsReleaseError> {
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(OsReleaseError(format!("NUL byte at offset {pos}")));
    }

    let mut p = EnvParser::default();
    let mut state = State::PreKey;
    let mut line = 1usize;

    for &c in bytes {
        state = match state {
            State::PreKey => {
                if COMMENTS.contains(&c) {
                    State::Comment
                } else if !WHITESPACE.contains(&c) {
                    p.last_key_whitespace = None;
                    p.key_line = line;
                    p.key.push(c);
                    State::Key
                } else {
                    State::PreKey
                }
            }
            State::Key => {
                if NEWLINE.contains(&c) {
                    // A key without `=` is dropped silently.
                    p.key.clear();
                    State::PreKey
                } else if c == b'=' {
                    p.last_value_whitespace = None;
                    State::PreValue
                } else {
                    if !WHITESPACE.contains(&c) {
                        p.last_key_whitespace = None;
                    } else if p.last_key_whitespace.is_none() {
                        p.last_key_whitespace = Some(p.key.len());
                    }
                    p.key.push(c);
                    State::Key
                }
            }
            State::PreValue => {
                if NEWLINE.contains(&c) {
                    p.push(false)?;
                    State::PreKey
                } else if c == b'\'' {
                    State::SingleQuoteValue
                } else if c == b'"' {
                    State::DoubleQuoteValue
                } else if c == b'\\' {
                    State::ValueEscape
                } else if !WHITESPACE.contains(&c) {
                    p.value.push(c);
                    State::Value
                } else {
                    State::PreValue
                }
            }
            State::Value => {
                if NEWLINE.contains(&c) {
                    p.push(true)?;
                    State::PreKey
                } else if c == b'\\' {
                    p.last_value_whitespace = None;
                    State::ValueEscape
                } else {
                    if !WHITESPACE.contains(&c) {
                        p.last_value_whitespace = None;
                    } else if p.last_value_whitespace.is_none() {
                        p.last_value_whitespace = Some(p.value.len());
                    }
                    p.value.push(c);
                    State::Value
                }
            }
            State::ValueEscape => {
                // An escaped newline joins the lines with nothing in between.
                if !NEWLINE.contains(&c) {
                    p.value.push(c);
                }
                State::Value
            }
            State::SingleQuoteValue => {
                if c == b'\'' {
                    State::PreValue
                } else {
                    p.value.push(c);
                    State::SingleQuoteValue
                }
            }
            State::DoubleQuoteValue => {
                if c == b'"' {
                    State::PreValue
                } else if c == b'\\' {
                    State::DoubleQuoteValueEscape
                } else {
                    p.value.push(c);
                    State::DoubleQuoteValue
                }
            }
            State::DoubleQuoteValueEscape => {
                // Like the shell: only the characters that need escaping lose their
                // backslash, and backslash-LF (but not backslash-CR) is a continuation.
                if SHELL_NEED_ESCAPE.contains(&c) {
                    p.value.push(c);
                } else if c != b'\n' {
                    p.value.push(b'\\');
                    p.value.push(c);
                }
                State::DoubleQuoteValue
            }
            State::Comment => {
                if c == b'\\' {
                    State::CommentEscape
                } else if NEWLINE.contains(&c) {
                    State::PreKey
                } else {
                    State::Comment
                }
            }
            State::CommentEscape if systemd >= 254 && NEWLINE.contains(&c) => State::PreKey,
            State::CommentEscape => State::Comment,
        };
        if c == b'\n' {
            line += 1;
        }
    }

    match state {
        State::PreValue
        | State::ValueEscape
        | State::SingleQuoteValue
        | State::DoubleQuoteValue
        | State::DoubleQuoteValueEscape => p.push(false)?,
        State::Value => p.push(true)?,
        State::PreKey | State::Key | State::Comment | State::CommentEscape => {}
    }

    Ok(OsRelease { fields: p.fields })
}

#[derive(Default)]
struct EnvParser {
    key: Vec<u8>,
    value: Vec<u8>,
    /// Where the trailing run of whitespace in `key` starts, if it ends in whitespace.
    last_key_whitespace: Option<usize>,
    /// Where the trailing run of unescaped whitespace in `value` starts.
    last_value_whitespace: Option<usize>,
    key_line: usize,
    fields: Vec<(String, String)>,
    /// Where each key is in `fields`: a repeated key must find its place without searching
    /// every field, or 100 000 keys take 10^10 comparisons.
    index: HashMap<String, usize>,
}

impl EnvParser {
    fn push(&mut self, chomp_value: bool) -> Result<(), OsReleaseError> {
        let mut key = std::mem::take(&mut self.key);
        let mut value = std::mem::take(&mut self.value);
        if let Some(end) = self.last_key_whitespace {
            key.truncate(end);
        }
        if chomp_value && let Some(end) = self.last_value_whitespace {
            value.truncate(end);
        }

        let Some(key) = systemd_utf8(&key) else {
            return Err(OsReleaseError(format!(
                "line {}: invalid UTF-8 in key '{}'",
                self.key_line,
                String::from_utf8_lossy(&key)
            )));
        };
        let Some(value) = systemd_utf8(&value) else {
            return Err(OsReleaseError(format!(
                "line {}: invalid UTF-8 in value for key {}: '{}'",
                self.key_line,
                key,
                String::from_utf8_lossy(&value)
            )));
        };

        if !env_name_is_valid(key) {
            return Ok(());
        }
        match self.index.get(key).and_then(|&i| self.fields.get_mut(i)) {
            Some((_, v)) => *v = value.to_string(),
            None => {
                self.index.insert(key.to_string(), self.fields.len());
                self.fields.push((key.to_string(), value.to_string()));
            }
        }
        Ok(())
    }
}

/// systemd's `env_name_is_valid()`, without its `ARG_MAX` length bound.
fn env_name_is_valid(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphabetic() || first == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{XorShift, assert_linear, index_below, low_byte, repeated};

    fn fields(input: &str) -> Vec<(String, String)> {
        parse(input.as_bytes()).expect("parses").fields
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn typical_os_release() {
        let os = parse(
            b"NAME=\"Fedora Linux\"\nVERSION_ID=38\nID=fedora\nPRETTY_NAME='Fedora Linux 38'\nSYSEXT_LEVEL=1.0\n",
        )
        .expect("parses");
        assert_eq!(os.get("NAME"), Some("Fedora Linux"));
        assert_eq!(os.get("VERSION_ID"), Some("38"));
        assert_eq!(os.get("ID"), Some("fedora"));
        assert_eq!(os.get("PRETTY_NAME"), Some("Fedora Linux 38"));
        assert_eq!(os.non_empty("SYSEXT_LEVEL"), Some("1.0"));
        assert_eq!(os.get("MISSING"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(
            fields("A=\"x\"y\nB=\"a\" \"b\"\nC=ab \"c\"\nD='a\\\"b'\nE=  'x y'  \n"),
            pairs(&[
                ("A", "xy"),
                ("B", "ab"),
                ("C", "ab \"c\""),
                ("D", "a\\\"b"),
                ("E", "x y"),
            ])
        );
        // An unterminated quote runs to the end of the file.
        assert_eq!(fields("A=\"foo\nB=1"), pairs(&[("A", "foo\nB=1")]));
        assert_eq!(fields("A='foo"), pairs(&[("A", "foo")]));
    }

    #[test]
    fn escapes() {
        assert_eq!(
            fields("A=\"a\\\"b\\\\c\\$d\\`e\\xf\"\n"),
            pairs(&[("A", "a\"b\\c$d`e\\xf")])
        );
        assert_eq!(
            fields("A=a\\ b\\\\c\nB=\\\"x\\\"\nC=foo\\ \nD=foo\\  \n"),
            pairs(&[
                ("A", "a b\\c"),
                ("B", "\"x\""),
                ("C", "foo "),
                ("D", "foo ")
            ])
        );
    }

    #[test]
    fn comments() {
        assert_eq!(
            fields("# comment\n  ; also\nA=1 # not a comment\n#B=2\n"),
            pairs(&[("A", "1 # not a comment")])
        );
        // Before 254 a comment ending in a backslash also swallows the next line.
        let swallowed = |v| parse_for(b"# c \\\nA=1\nB=2\n", v).unwrap().fields;
        assert_eq!(swallowed(252), pairs(&[("B", "2")]));
        assert_eq!(swallowed(253), pairs(&[("B", "2")]));
        assert_eq!(swallowed(254), pairs(&[("A", "1"), ("B", "2")]));
        assert_eq!(fields("# c \\\nA=1\n"), pairs(&[("A", "1")]));
        // A backslash inside the comment escapes nothing but the next character.
        assert_eq!(swallowed(257), pairs(&[("A", "1"), ("B", "2")]));
    }

    #[test]
    fn continuations() {
        assert_eq!(
            fields("A=foo\\\nbar\nB=\"foo\\\nbar\"\nC=\"a\nb\"\nD='a\\\nb'\n"),
            pairs(&[
                ("A", "foobar"),
                ("B", "foobar"),
                ("C", "a\nb"),
                ("D", "a\\\nb"),
            ])
        );
    }

    #[test]
    fn whitespace_and_line_endings() {
        assert_eq!(
            fields("  A  =  foo bar \t\r\nB=2\r\n\n\tC=\"x\"\r\n"),
            pairs(&[("A", "foo bar"), ("B", "2"), ("C", "x")])
        );
        assert_eq!(fields("A=1\rB=2"), pairs(&[("A", "1"), ("B", "2")]));
    }

    #[test]
    fn empty_values() {
        let os = parse(b"A=\nB=\"\"\nC=''\nD=   \nE").expect("parses");
        assert_eq!(
            os.fields,
            pairs(&[("A", ""), ("B", ""), ("C", ""), ("D", "")])
        );
        assert_eq!(os.get("A"), Some(""));
        assert_eq!(os.non_empty("A"), None);
        assert_eq!(os.non_empty("E"), None);
        assert_eq!(parse(b"").expect("parses"), OsRelease::default());
    }

    #[test]
    fn last_assignment_wins_in_first_position() {
        assert_eq!(
            fields("ID=a\nX=1\nID=b\nID=\n"),
            pairs(&[("ID", ""), ("X", "1")])
        );
        assert_eq!(fields("ID=a\nID=c"), pairs(&[("ID", "c")]));
    }

    #[test]
    fn invalid_keys_are_ignored() {
        assert_eq!(
            fields("1ABC=x\nA B=x\nA-B=x\n==x\nexport C=1\nJUSTKEY\n=x\n_OK9=y\n\u{e9}=z\n"),
            pairs(&[("_OK9", "y")])
        );
    }

    #[test]
    fn invalid_utf8_and_nul() {
        let err = parse(b"A=1\nB=\xff\n").expect_err("invalid UTF-8");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse(b"\xff=1\n").is_err());
        assert!(parse(b"A=1\0\n").is_err());
        // Never looked at by systemd, so not an error.
        assert_eq!(fields("# \u{fffd}\n"), vec![]);
        assert_eq!(
            parse(b"# \xff\nNOEQUALS\xff\nA=1\n")
                .expect("parses")
                .fields,
            pairs(&[("A", "1")])
        );
    }

    #[test]
    fn never_panics_on_random_input() {
        let alphabet = b"=#;\\\n\r \t\"'$`AZ_9\xff\xc3";
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for _ in 0..5000 {
            let len = (rng.next() % 200) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if r.is_multiple_of(4) {
                        low_byte(r >> 8)
                    } else {
                        let i = index_below(r >> 8, alphabet.len());
                        alphabet.get(i).copied().unwrap_or(b'x')
                    }
                })
                .collect();
            if let Ok(os) = parse(&input) {
                for (k, _) in &os.fields {
                    assert!(env_name_is_valid(k));
                    let _ = os.non_empty(k);
                }
            }
        }
    }

    #[test]
    fn linear_in_distinct_and_repeated_keys() {
        // 116 000 distinct keys in 1 MiB: each must find whether it was seen without a search.
        assert_linear(
            "os-release with distinct keys",
            |n| repeated(n, "ID=x\n", |i| format!("K{i:06}=\n")),
            |b| assert!(parse(b).is_ok()),
        );
        // Every key twice, the second time late: last value, first position.
        let text = repeated(64 * 1024, "", |i| format!("K{i:06}=a\n"));
        let again = repeated(64 * 1024, "", |i| format!("K{i:06}=b\n"));
        let all = parse(&[text.as_slice(), &again].concat()).unwrap();
        let first = parse(&text).unwrap();
        assert_eq!(all.fields.len(), first.fields.len());
        for ((k1, _), (k2, v2)) in first.fields.iter().zip(&all.fields) {
            assert_eq!((k1, v2.as_str()), (k2, "b"));
        }
    }
}
