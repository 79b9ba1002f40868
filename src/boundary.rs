//! The boundary between what the generator decided and what PID 1 reads: every drop-in is
//! read back, as systemd reads unit files, before it is written, and must give back exactly
//! the values that were checked. A value that cannot be written so that it reads back as
//! itself is refused, never written approximately: systemd strips whitespace around values,
//! joins a line ending in `\` with the next, splits lists at whitespace and extension paths
//! at `:`, drops a whole file with a line of 1 MiB, and reads an empty path as a reset.

use crate::unit_syntax;

/// Longest line written. systemd refuses a whole unit file with a line of `LONG_LINE_MAX`
/// (1 MiB), and nothing a drop-in says needs more than a few paths.
pub const MAX_LINE_BYTES: usize = 32 * 1024;

/// How systemd reads a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One absolute path, the whole rest of the line (`RootImage=`, `RootDirectory=`:
    /// `config_parse_unit_path_printf()`): specifiers expanded, then the path simplified.
    Path,
    /// One word of a word list with C escapes and quotes (`Environment=`,
    /// `LogExtraFields=`: `extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE)`).
    Word,
    /// One path of a list of images or directories (`ExtensionImages=`,
    /// `ExtensionDirectories=`), where whitespace separates entries, `:` starts mount
    /// options and a leading `-` makes an entry optional.
    ListPath,
}

/// One setting of a drop-in, with the value systemd must read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The setting's name, without `=`.
    pub key: &'static str,
    /// The value as decided, before any quoting or escaping.
    pub value: String,
    /// How systemd reads the value, and so how it must be written.
    pub kind: Kind,
}

impl Assignment {
    /// `key=value`, to be written as systemd reads a value of `kind`.
    pub fn new(key: &'static str, kind: Kind, value: impl Into<String>) -> Assignment {
        Assignment {
            key,
            value: value.into(),
            kind,
        }
    }
}

/// The text of `value` in a unit file, or why it cannot be written faithfully.
pub fn encode(a: &Assignment) -> Result<String, String> {
    let v = &a.value;
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{}= would hold the control character {:?}",
            a.key,
            c.escape_debug().to_string()
        ));
    }
    match a.kind {
        Kind::Path | Kind::ListPath => {
            check_path(v).map_err(|why| format!("{}={}: {why}", a.key, printable(v)))?;
            if a.kind == Kind::ListPath
                && let Some(c) = v
                    .chars()
                    .find(|&c| c.is_whitespace() || matches!(c, ':' | '"' | '\'' | '\\'))
            {
                return Err(format!(
                    "{}={}: a path with {:?} cannot be listed there",
                    a.key,
                    printable(v),
                    c
                ));
            }
            Ok(escape_specifiers(v))
        }
        Kind::Word => Ok(quote_word(v)),
    }
}

/// systemd's rules for a path in a unit file, as `path_simplify_and_warn()` applies them:
/// absolute, already simple (it would otherwise be changed), and nothing that the line
/// parser changes (trailing whitespace or backslash).
fn check_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("not an absolute path");
    }
    if p.len() > 4095 {
        return Err("longer than PATH_MAX");
    }
    if p.ends_with(char::is_whitespace) {
        return Err("systemd would strip the whitespace it ends with");
    }
    if p.ends_with('\\') {
        return Err("systemd would read the backslash it ends with as a line continuation");
    }
    if p.len() > 1 && p.ends_with('/') || p.contains("//") {
        return Err("not a simplified path");
    }
    if p.split('/').any(|c| c == "." || c == "..") {
        return Err("a path with . or .. components");
    }
    Ok(())
}

/// One word for a setting that splits its value into words and unquotes them: plain words
/// are written as they are (as portablectl does), anything the word splitter would change is
/// double-quoted with C escapes; `%` is doubled for the specifier expansion that follows.
pub fn quote_word(s: &str) -> String {
    let s = escape_specifiers(s);
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    if plain {
        return s;
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Check that `text`, read as systemd reads a unit file, holds exactly `expected` in
/// `section` (nothing more, in that order), that its first line is the comment `marker`,
/// and that no line is too long.
pub fn verify(
    text: &str,
    marker: &str,
    section: &str,
    expected: &[Assignment],
) -> Result<(), String> {
    if let Some(line) = text.lines().find(|l| l.len() >= MAX_LINE_BYTES) {
        return Err(format!(
            "a line of {} bytes (at most {} are written)",
            line.len(),
            MAX_LINE_BYTES - 1
        ));
    }
    if text.lines().next() != Some(marker.trim_end_matches('\n'))
        || !marker.starts_with('#')
        || marker.trim_end_matches('\n').contains(['\n', '\r'])
    {
        return Err("the marker line would not read back as one comment".into());
    }
    let (file, _warnings) = unit_syntax::parse(text.as_bytes())
        .map_err(|e| format!("systemd would refuse the drop-in: {e}"))?;
    let sections: Vec<&str> = file.sections.iter().map(|s| s.name.as_str()).collect();
    let want_sections: &[&str] = if expected.is_empty() { &[] } else { &[section] };
    if sections != want_sections {
        return Err(format!(
            "the drop-in would read back with sections {sections:?}"
        ));
    }
    let entries: Vec<(&str, &str)> = file
        .sections
        .iter()
        .flat_map(|s| s.entries.iter())
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    if entries.len() != expected.len() {
        return Err(format!(
            "the drop-in would read back as {} settings, not {}",
            entries.len(),
            expected.len()
        ));
    }
    for ((key, raw), want) in entries.iter().zip(expected) {
        let got = read_value(want.kind, raw)?;
        if *key != want.key || got != want.value {
            return Err(format!(
                "{}={} would read back as {key}={}",
                want.key,
                printable(&want.value),
                printable(&got)
            ));
        }
    }
    Ok(())
}

/// The value systemd takes from a setting's raw text.
fn read_value(kind: Kind, raw: &str) -> Result<String, String> {
    let value = match kind {
        Kind::Path => raw.to_string(),
        Kind::ListPath => match unit_syntax::split_words(raw)?.as_slice() {
            [one] => one.clone(),
            words => return Err(format!("{raw} would read back as {} entries", words.len())),
        },
        Kind::Word => match unquote_cunescape(raw)?.as_slice() {
            [one] => one.clone(),
            words => return Err(format!("{raw} would read back as {} words", words.len())),
        },
    };
    unescape_specifiers(&value)
}

/// `%` → `%%`: what specifier expansion turns back into the value.
pub fn escape_specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

/// `%%` → `%`; any other specifier would expand to something else.
fn unescape_specifiers(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => out.push('%'),
                other => {
                    return Err(format!(
                        "{} would expand the specifier %{}",
                        printable(s),
                        other.map(String::from).unwrap_or_default()
                    ));
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Words as `extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE)` splits them, for the
/// escapes [`quote_word`] writes (`\"`, `\\`, `\'`); any other escape is refused, since the
/// generator never writes one.
fn unquote_cunescape(raw: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars
            .next_if(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
            .is_some()
        {}
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (_, '\\') => match chars.next() {
                    Some(e @ ('"' | '\\' | '\'')) => word.push(e),
                    other => {
                        return Err(format!("{raw}: an escape \\{other:?} is not written here"));
                    }
                },
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'') => quote = Some(c),
                (None, ' ' | '\t' | '\n' | '\r') => break,
                (_, c) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err(format!("{raw}: unbalanced quotes"));
        }
        words.push(word);
    }
}

/// A value made safe for a one-line message.
fn printable(s: &str) -> String {
    crate::kmsg::shorten(&s.escape_debug().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(marker: &str, items: &[Assignment]) -> String {
        let mut t = marker.to_string();
        t.push_str("\n[Service]\n");
        for a in items {
            t.push_str(&format!("{}={}\n", a.key, encode(a).unwrap()));
        }
        t
    }

    const MARKER: &str = "# Drop-in created for image '/x', do not edit.\n";

    #[test]
    fn values_read_back() {
        let items = vec![
            Assignment::new("RootImage", Kind::Path, "/var/lib/portables/a b%c.raw"),
            Assignment::new("Environment", Kind::Word, "PORTABLE=a b\"c\\d'e%.raw"),
            Assignment::new("LogExtraFields", Kind::Word, "PORTABLE=plain.raw"),
            Assignment::new("ExtensionImages", Kind::ListPath, "/srv/ext_1.raw"),
        ];
        let t = text(MARKER, &items);
        verify(&t, MARKER, "Service", &items).unwrap();
        assert!(t.contains("LogExtraFields=PORTABLE=plain.raw\n"), "{t}");
    }

    #[test]
    fn values_that_cannot_be_written() {
        for (kind, value) in [
            (Kind::Path, "/a/b\\"),
            (Kind::Path, "/a/b "),
            (Kind::Path, "/a/b\t"),
            (Kind::Path, "/a\nExecStartPre=/bin/sh"),
            (Kind::Path, ""),
            (Kind::Path, "relative"),
            (Kind::Path, "/a//b"),
            (Kind::Path, "/a/../b"),
            (Kind::Path, "/a/"),
            (Kind::ListPath, "/a b"),
            (Kind::ListPath, "/a:ro"),
            (Kind::ListPath, "/a\"b"),
            (Kind::Word, "A=\u{1b}[31m"),
        ] {
            let a = Assignment::new("RootImage", kind, value);
            assert!(encode(&a).is_err(), "{kind:?} {value:?}");
        }
        let long = format!("/{}", "a".repeat(5000));
        assert!(encode(&Assignment::new("RootImage", Kind::Path, long)).is_err());
    }

    #[test]
    fn what_reads_back_differently_is_caught() {
        let want = [Assignment::new("RootDirectory", Kind::Path, "/x")];
        for bad in [
            format!("{MARKER}\n[Service]\nRootDirectory=/y\n"),
            format!("{MARKER}\n[Service]\nRootDirectory=/x\nExecStartPre=/bin/sh\n"),
            format!("{MARKER}\n[Service]\nRootDirectory=/x\\\nExecStartPre=/bin/sh\n"),
            format!("{MARKER}\n[Service]\nRootDirectory=/%x\n"),
            format!("{MARKER}\n[Unit]\nRootDirectory=/x\n"),
            format!("{MARKER}\n[Service]\n[Socket]\nRootDirectory=/x\n"),
            "# other\n[Service]\nRootDirectory=/x\n".to_string(),
        ] {
            assert!(verify(&bad, MARKER, "Service", &want).is_err(), "{bad}");
        }
        let long = format!(
            "{MARKER}\n[Service]\nRootDirectory=/x\n# {}\n",
            "y".repeat(MAX_LINE_BYTES)
        );
        assert!(verify(&long, MARKER, "Service", &want).is_err());
        // A marker-only drop-in holds nothing.
        verify(MARKER, MARKER, "Service", &[]).unwrap();
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            unquote_cunescape("a \"b c\" d\\\"e").unwrap(),
            ["a", "b c", "d\"e"]
        );
        assert!(unquote_cunescape("\"a").is_err());
        assert!(unquote_cunescape("a\\n").is_err());
    }
}
