//! The kernel command line, read as systemd 252 to 257 read it (`proc_cmdline_parse()` and
//! `proc_cmdline_key_streq()`, src/basic/proc-cmdline.c): split into words as
//! `extract_first_word(EXTRACT_UNQUOTE|EXTRACT_RELAX|EXTRACT_RETAIN_ESCAPE)` splits them, each
//! word a key up to its first `=` and a value after it, `-` and `_` the same in keys, so
//! `systemd.log-level=` is `systemd.log_level=`.
//!
//! systemd skips words starting with `rd.` outside the initrd, and some of its readers strip
//! the prefix inside it. The generator does nothing in the initrd, so here an `rd.` word is
//! just a key of its own, never equal to the key without the prefix.

use crate::unit_syntax::parse_boolean;

/// One word of the command line, split at its first `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The part before the first `=`, as written: compare it with [`key_eq`].
    pub key: String,
    /// `None` for a bare key (no `=`).
    pub value: Option<String>,
}

/// The words of `cmdline`: `"` or `'` quotes group and are removed (also inside a word:
/// `a="b c"` is the word `a=b c`), an unterminated quote runs to the end instead of being an
/// error (RELAX), a backslash is an ordinary character (`RETAIN_ESCAPE`), and words are
/// separated by spaces, tabs, newlines and carriage returns.
pub fn words(cmdline: &str) -> Vec<String> {
    let is_separator = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    let mut words = Vec::new();
    // `Some` once a word has begun: `""` is a word, empty.
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in cmdline.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            None if is_separator(c) => words.extend(word.take()),
            // Quoted, or an ordinary character.
            Some(_) | None => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Every parameter of `cmdline`, in order. A reader that applies each in turn, as systemd's
/// `proc_cmdline_parse()` callbacks do, gets "the last valid one wins".
pub fn params(cmdline: &str) -> impl Iterator<Item = Param> {
    words(cmdline)
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) => Param {
                key: key.to_string(),
                value: Some(value.to_string()),
            },
            None => Param {
                key: word,
                value: None,
            },
        })
}

/// Whether `a` and `b` are the same key, `-` and `_` being equal (`proc_cmdline_key_streq()`).
pub fn key_eq(a: &str, b: &str) -> bool {
    let norm = |c: u8| if c == b'-' { b'_' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

/// The last occurrence of `key`: `None` if it is not there, `Some(None)` if it is bare.
///
/// A bare key after `key=value` is the last occurrence here; systemd's
/// `proc_cmdline_get_key()` would keep the value. The `portables_generator` switch has
/// always read it this way, so it stays.
pub fn value_of(cmdline: &str, key: &str) -> Option<Option<String>> {
    params(cmdline)
        .filter(|p| key_eq(&p.key, key))
        .last()
        .map(|p| p.value)
}

/// The last occurrence of `key` as a boolean (systemd's `parse_boolean()`), a bare key being
/// true as in `proc_cmdline_get_bool()`: `None` if it is not there or its value is not a
/// boolean, so the caller keeps its default.
pub fn bool_of(cmdline: &str, key: &str) -> Option<bool> {
    match value_of(cmdline, key)? {
        None => Some(true),
        Some(value) => parse_boolean(&value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_as_extract_first_word() {
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words(" \t\r\n "), Vec::<String>::new());
        assert_eq!(
            words(" quiet\tro\nroot=/dev/sda1\r"),
            ["quiet", "ro", "root=/dev/sda1"]
        );
        // Quotes group and go, wherever they are in a word.
        assert_eq!(words("a=\"b c\" 'd e'f"), ["a=b c", "d ef"]);
        assert_eq!(
            words("a=\"it's\" b='say \"hi\"'"),
            ["a=it's", "b=say \"hi\""]
        );
        // An empty quoted word is a word.
        assert_eq!(words("a \"\" b"), ["a", "", "b"]);
        // An unterminated quote runs to the end.
        assert_eq!(words("a \"b c"), ["a", "b c"]);
        // Backslashes escape nothing.
        assert_eq!(words("a\\ b c\\\"d\""), ["a\\", "b", "c\\d"]);
    }

    #[test]
    fn params_split_at_the_first_equals_sign() {
        let p: Vec<Param> = params("a=b=c bare e= \"f=g h\"").collect();
        let pairs: Vec<(&str, Option<&str>)> = p
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", Some("b=c")),
                ("bare", None),
                ("e", Some("")),
                ("f", Some("g h"))
            ]
        );
    }

    #[test]
    fn dash_and_underscore_are_one_in_keys() {
        assert!(key_eq("systemd.log-level", "systemd.log_level"));
        assert!(!key_eq("systemd.log_level", "systemd-log-level"));
        assert!(key_eq("a-b_c", "a_b-c"));
        assert!(!key_eq("a-b", "a.b"));
        assert!(!key_eq("ab", "abc"));
        assert!(!key_eq("rd.ab", "ab"));
        assert_eq!(
            value_of("systemd.log-level=debug", "systemd.log_level"),
            Some(Some("debug".into()))
        );
        // Only keys: the value is as written.
        assert_eq!(value_of("a=x-y", "a"), Some(Some("x-y".into())));
    }

    #[test]
    fn the_last_occurrence_counts() {
        assert_eq!(value_of("quiet", "a"), None);
        assert_eq!(value_of("a", "a"), Some(None));
        assert_eq!(value_of("a=1 b=2 a=3", "a"), Some(Some("3".into())));
        assert_eq!(value_of("a=1 a", "a"), Some(None));
        assert_eq!(value_of("a b=\"x a=2\"", "a"), Some(None));
    }

    #[test]
    fn booleans() {
        assert_eq!(bool_of("", "a"), None);
        assert_eq!(bool_of("a", "a"), Some(true));
        assert_eq!(bool_of("a=no", "a"), Some(false));
        assert_eq!(bool_of("a=\"OFF\"", "a"), Some(false));
        assert_eq!(bool_of("a=0 a=yes", "a"), Some(true));
        assert_eq!(bool_of("a=0 a=maybe", "a"), None);
        assert_eq!(bool_of("a=", "a"), None);
    }
}
