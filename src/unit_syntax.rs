//! systemd unit-file syntax, as `config_parse()` reads it.
//!
//! This follows systemd 252's `config_parse()` and `parse_line()` (src/shared/conf-parser.c),
//! `read_line()` (src/basic/fileio.c) and `extract_first_word()` (src/basic/extract-word.c),
//! including the places where systemd's behaviour is surprising: an invalid section header or
//! a line that is not valid UTF-8 makes systemd refuse the whole file, so they are errors here
//! too rather than warnings.
//!
//! The parser knows no list of valid sections: every well-formed `[Name]` header opens (or
//! reopens) a section, and it is up to the caller to look only at the sections it knows.

use std::collections::HashMap;
use std::fmt;

/// systemd's `LONG_LINE_MAX`: the longest physical line `read_line()` accepts, and the longest
/// logical line a continuation may build.
pub const LONG_LINE_MAX: usize = 1024 * 1024;

/// systemd's `WHITESPACE`, which is what `strstrip()` and `extract_first_word()` use; Rust's
/// `trim()` would also strip Unicode spaces that systemd keeps.
const WHITESPACE: &[u8] = b" \t\n\r";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// One `Key=Value` assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, whitespace around it removed.
    pub key: String,
    /// The value, whitespace around it removed; continuation lines joined.
    pub value: String,
    /// 1-based number of the first physical line of the logical line.
    pub line: usize,
}

/// All assignments of one section name, from every `[Name]` header with that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name between the brackets.
    pub name: String,
    /// Its assignments in file order.
    pub entries: Vec<Entry>,
}

/// A parsed unit file: one `Section` per distinct name, in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFile {
    /// The sections, in the order their names first appear.
    pub sections: Vec<Section>,
}

/// Something systemd logs and then ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line number.
    pub line: usize,
    /// What systemd would log.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Something that makes systemd refuse the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// Why the file is refused.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

impl UnitFile {
    /// The section `name`, if the file has one.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Every value of `key` in `section`, in order (empty values included).
    pub fn values<'a>(&'a self, section: &str, key: &str) -> Vec<&'a str> {
        self.entries(section, key)
            .map(|e| e.value.as_str())
            .collect()
    }

    /// The last value of `key` in `section`, as a single-valued setting is read.
    pub fn last(&self, section: &str, key: &str) -> Option<&str> {
        self.entries(section, key).last().map(|e| e.value.as_str())
    }

    /// A list setting as systemd's `config_parse_strv()` reads it: each assignment's value split
    /// into words by `split_words`; an empty assignment resets the list to empty.
    ///
    /// Stricter than systemd: an assignment with unbalanced quotes is an error here, where
    /// systemd logs it, keeps the words before the bad one and carries on (see
    /// [`UnitFile::list_lenient`] for that behaviour).
    pub fn list(&self, section: &str, key: &str) -> Result<Vec<String>, String> {
        let mut list = Vec::new();
        for entry in self.entries(section, key) {
            if entry.value.is_empty() {
                list.clear();
                continue;
            }
            let words = split_words(&entry.value)
                .map_err(|e| format!("line {}: {}={}: {}", entry.line, key, entry.value, e))?;
            list.extend(words);
        }
        Ok(list)
    }

    /// A list setting exactly as systemd 252's `config_parse_strv()` builds it: on unbalanced
    /// quotes the words extracted before the bad one are kept, a warning is logged, and later
    /// assignments still apply.
    pub fn list_lenient(&self, section: &str, key: &str) -> (Vec<String>, Vec<Warning>) {
        let mut list = Vec::new();
        let mut warnings = Vec::new();
        for entry in self.entries(section, key) {
            if entry.value.is_empty() {
                list.clear();
                continue;
            }
            let (words, error) = split_words_partial(&entry.value);
            list.extend(words);
            if let Some(error) = error {
                warnings.push(Warning {
                    line: entry.line,
                    message: format!("Invalid syntax, ignoring: {} ({})", entry.value, error),
                });
            }
        }
        (list, warnings)
    }

    fn entries<'a, 'k>(
        &'a self,
        section: &str,
        key: &'k str,
    ) -> impl Iterator<Item = &'a Entry> + use<'a, 'k> {
        self.section(section)
            .into_iter()
            .flat_map(|s| s.entries.iter())
            .filter(move |e| e.key == key)
    }
}

/// Split a value into words as `extract_first_word(…, EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE)`
/// does (whitespace separators, "double" and 'single' quotes removed, backslash escapes kept as
/// written outside quotes per `RETAIN_ESCAPE`). Unbalanced quotes are an error (message says
/// so).
///
/// With `EXTRACT_RETAIN_ESCAPE` a backslash is an ordinary character everywhere, inside quotes
/// too, so it cannot escape a quote: `"a\"b"` is `a\` followed by an unterminated quote.
/// Quotes may start or end mid-word (`a"b c"d` is the single word `ab cd`), and `""` is an
/// empty word.
pub fn split_words(value: &str) -> Result<Vec<String>, String> {
    match split_words_partial(value) {
        (words, None) => Ok(words),
        (_, Some(error)) => Err(error),
    }
}

/// The words `extract_first_word()` returns before it fails, and why it failed, because
/// `config_parse_strv()` keeps the words it already has when a later one is malformed.
pub fn split_words_partial(value: &str) -> (Vec<String>, Option<String>) {
    let is_separator = |c: char| c.is_ascii() && WHITESPACE.contains(&(c as u8));
    let mut words = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|&c| is_separator(c)).is_some() {}
        if chars.peek().is_none() {
            return (words, None);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        loop {
            let Some(c) = chars.next() else {
                if quote.is_some() {
                    return (words, Some(format!("unbalanced quotes in \"{value}\"")));
                }
                break;
            };
            match quote {
                Some(q) if c == q => quote = None,
                None if c == '"' || c == '\'' => quote = Some(c),
                None if is_separator(c) => break,
                // Quoted, or an ordinary character.
                Some(_) | None => word.push(c),
            }
        }
        words.push(word);
    }
}

/// Parse a unit file.
///
/// Returns the sections and the warnings systemd would log for lines it ignores. Errors are
/// the conditions under which systemd refuses to load the file at all: a physical line of
/// [`LONG_LINE_MAX`] bytes or more, a continued line longer than that, a line that is not
/// valid UTF-8, and a malformed section header.
pub fn parse(bytes: &[u8]) -> Result<(UnitFile, Vec<Warning>), ParseError> {
    let mut parser = Parser::default();
    let mut reader = LineReader { input: bytes };
    let mut line = 0usize;
    let mut bom_seen = false;
    // The joined text so far and the physical line it started on.
    let mut continuation: Option<(Vec<u8>, usize)> = None;

    loop {
        let buf = match reader.next_line() {
            Ok(Some(buf)) => buf,
            Ok(None) => break,
            Err(TooLong) => {
                return Err(ParseError {
                    line: line + 1,
                    message: "Line too long".to_string(),
                });
            }
        };
        line += 1;

        // Checked on the raw line, before the BOM is removed and even in the middle of a
        // continuation, exactly as config_parse() does.
        if matches!(skip_leading_whitespace(buf).first(), Some(b'#' | b';')) {
            continue;
        }

        let mut l = buf;
        // systemd keeps looking for a BOM until it has found one, so it strips one from the
        // first line that has it, not only from the first line of the file.
        if !bom_seen && let Some(rest) = buf.strip_prefix(UTF8_BOM) {
            l = rest;
            bom_seen = true;
        }

        // config_parse() rescans the whole joined text; scanning only the new part is the
        // same, because the backslash that continued the previous part became a space, which
        // leaves the scan unescaped at the join.
        let continued = ends_in_unescaped_backslash(l);
        match continuation.take() {
            Some((mut joined, first_line)) => {
                if joined.len().saturating_add(l.len()) > LONG_LINE_MAX {
                    return Err(ParseError {
                        line,
                        message: "Continuation line too long".to_string(),
                    });
                }
                joined.extend_from_slice(l);
                if continued {
                    continue_with(&mut joined);
                    continuation = Some((joined, first_line));
                } else {
                    parser.parse_line(&joined, first_line)?;
                }
            }
            // Most lines are whole: parsed where they lie, without a copy.
            None if continued => {
                let mut joined = l.to_vec();
                continue_with(&mut joined);
                continuation = Some((joined, line));
            }
            None => parser.parse_line(l, line)?,
        }
    }

    if let Some((text, first_line)) = continuation {
        parser.parse_line(&text, first_line)?;
    }

    Ok((parser.unit, parser.warnings))
}

/// Whether the line ends in a backslash that no backslash before it escapes: an odd run of
/// them at the end (what comes before the run cannot escape into it).
fn ends_in_unescaped_backslash(bytes: &[u8]) -> bool {
    bytes.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// The continuing backslash becomes a space.
fn continue_with(joined: &mut [u8]) {
    if let Some(last) = joined.last_mut() {
        *last = b' ';
    }
}

fn skip_leading_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !WHITESPACE.contains(b))
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

fn strip_whitespace(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && WHITESPACE.contains(&(c as u8)))
}

struct TooLong;

/// systemd's `read_line()`: a line ends at `\n`, `\r` or NUL, and one line ending may combine
/// at most one each of `\n` and `\r` (in either order) plus a final NUL, so `\r\n` and `\n\r`
/// are single line endings while `\n\n` is an empty line.
struct LineReader<'a> {
    input: &'a [u8],
}

impl<'a> LineReader<'a> {
    fn next_line(&mut self) -> Result<Option<&'a [u8]>, TooLong> {
        const EOL_NUL: u8 = 1;
        const EOL_LF: u8 = 2;
        const EOL_CR: u8 = 4;

        // read_line() checks the length before every byte, so a line of exactly
        // LONG_LINE_MAX bytes is already refused, whatever follows it.
        let window = self.input.get(..=LONG_LINE_MAX).unwrap_or(self.input);
        let content = window
            .iter()
            .position(|&c| matches!(c, b'\n' | b'\r' | 0))
            .unwrap_or(window.len());
        if content >= LONG_LINE_MAX {
            return Err(TooLong);
        }
        let mut consumed = content;
        let mut previous_eol = 0u8;
        while let Some(&c) = self.input.get(consumed) {
            let eol = match c {
                b'\n' => EOL_LF,
                b'\r' => EOL_CR,
                0 => EOL_NUL,
                _ => break,
            };
            if previous_eol & EOL_NUL != 0 || previous_eol & eol != 0 {
                break;
            }
            consumed += 1;
            previous_eol |= eol;
        }

        if consumed == 0 {
            return Ok(None);
        }
        let line = self.input.get(..content).unwrap_or_default();
        self.input = self.input.get(consumed..).unwrap_or_default();
        Ok(Some(line))
    }
}

#[derive(Default)]
struct Parser {
    unit: UnitFile,
    warnings: Vec<Warning>,
    /// Index into `unit.sections` of the section assignments go to.
    current: Option<usize>,
    /// Where each section name is in `unit.sections`, once there are more than a few: a
    /// header must find its section without searching them all, or 100 000 headers take
    /// 10^10 comparisons.
    index: HashMap<String, usize>,
}

impl Parser {
    /// systemd's `parse_line()` for one logical line.
    fn parse_line(&mut self, text: &[u8], line: usize) -> Result<(), ParseError> {
        let stripped = strip_whitespace_bytes(text);
        if stripped.is_empty() {
            return Ok(());
        }
        let Some(l) = systemd_utf8(stripped) else {
            return Err(ParseError {
                line,
                message: format!(
                    "String is not UTF-8 clean: {}",
                    String::from_utf8_lossy(stripped)
                ),
            });
        };

        if let Some(rest) = l.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(ParseError {
                    line,
                    message: format!("Invalid section header '{l}'"),
                });
            };
            if !string_is_safe(name) {
                return Err(ParseError {
                    line,
                    message: format!("Bad characters in section header '{l}'"),
                });
            }
            self.open_section(name);
            return Ok(());
        }

        let Some(index) = self.current else {
            self.warn(line, "Assignment outside of section. Ignoring.");
            return Ok(());
        };

        let Some((key, value)) = l.split_once('=') else {
            self.warn(line, "Missing '=', ignoring line.");
            return Ok(());
        };
        if key.is_empty() {
            self.warn(line, "Missing key name before '=', ignoring line.");
            return Ok(());
        }

        if let Some(section) = self.unit.sections.get_mut(index) {
            section.entries.push(Entry {
                key: strip_whitespace(key).to_string(),
                value: strip_whitespace(value).to_string(),
                line,
            });
        }
        Ok(())
    }

    fn open_section(&mut self, name: &str) {
        // A unit has a handful of sections, found fastest by a scan; the map takes over
        // when a file has many.
        const SCANNED: usize = 8;
        let sections = &mut self.unit.sections;
        if sections.len() > SCANNED && self.index.is_empty() {
            self.index = (sections.iter().enumerate())
                .map(|(i, s)| (s.name.clone(), i))
                .collect();
        }
        let found = if self.index.is_empty() {
            sections.iter().position(|s| s.name == name)
        } else {
            self.index.get(name).copied()
        };
        let index = found.unwrap_or_else(|| {
            sections.push(Section {
                name: name.to_string(),
                entries: Vec::new(),
            });
            let index = sections.len() - 1;
            if !self.index.is_empty() {
                self.index.insert(name.to_string(), index);
            }
            index
        });
        self.current = Some(index);
    }

    fn warn(&mut self, line: usize, message: &str) {
        self.warnings.push(Warning {
            line,
            message: message.to_string(),
        });
    }
}

fn strip_whitespace_bytes(bytes: &[u8]) -> &[u8] {
    let bytes = skip_leading_whitespace(bytes);
    let end = bytes
        .iter()
        .rposition(|b| !WHITESPACE.contains(b))
        .map_or(0, |i| i + 1);
    bytes.get(..end).unwrap_or_default()
}

/// systemd's `utf8_is_valid()`: standard UTF-8, except that it also refuses the Unicode
/// noncharacters (U+FDD0..U+FDEF and U+xFFFE/U+xFFFF in every plane).
pub(crate) fn systemd_utf8(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    // Every noncharacter is above U+FDCF: ASCII text has none.
    if s.is_ascii() {
        return Some(s);
    }
    let noncharacter = |c: char| {
        let c = u32::from(c);
        (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
    };
    if s.chars().any(noncharacter) {
        None
    } else {
        Some(s)
    }
}

/// systemd's `string_is_safe()`: no control characters, quotes, backslashes or DEL.
fn string_is_safe(s: &str) -> bool {
    !s.chars()
        .any(|c| c < ' ' || c == '"' || c == '\'' || c == '\\' || c == '\x7f')
}

/// systemd's `parse_boolean()`.
pub fn parse_boolean(value: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["1", "yes", "y", "true", "t", "on"];
    const FALSE: [&str; 6] = ["0", "no", "n", "false", "f", "off"];
    if TRUE.iter().any(|t| value.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| value.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{XorShift, assert_linear, index_below, low_byte, repeated};

    fn ok(input: &str) -> (UnitFile, Vec<Warning>) {
        parse(input.as_bytes()).expect("parses")
    }

    fn entry_lines(unit: &UnitFile, section: &str) -> Vec<(String, String, usize)> {
        unit.section(section)
            .map(|s| {
                s.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone(), e.line))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn basic_sections_and_entries() {
        let (unit, warnings) =
            ok("[Unit]\nDescription=Foo bar\n\n[Service]\n  ExecStart = /bin/true  \n");
        assert!(warnings.is_empty());
        assert_eq!(unit.last("Unit", "Description"), Some("Foo bar"));
        assert_eq!(unit.last("Service", "ExecStart"), Some("/bin/true"));
        assert_eq!(unit.last("Service", "Description"), None);
        assert_eq!(unit.last("Install", "WantedBy"), None);
        assert_eq!(unit.sections.len(), 2);
    }

    #[test]
    fn keys_are_case_sensitive() {
        let (unit, _) = ok("[Unit]\nDescription=a\n");
        assert_eq!(unit.last("Unit", "description"), None);
        assert!(unit.section("unit").is_none());
    }

    #[test]
    fn continuation_keeps_exact_whitespace() {
        // The backslash becomes a space and the next line is appended with its indentation.
        let (unit, _) = ok("[Service]\nExecStart=/bin/echo \\\n  hello\n");
        assert_eq!(
            unit.last("Service", "ExecStart"),
            Some("/bin/echo    hello")
        );

        let (unit, _) = ok("[Service]\nFoo=a\\\nb\\\n\tc\n");
        assert_eq!(unit.last("Service", "Foo"), Some("a b \tc"));
    }

    #[test]
    fn continuation_entry_line_is_first_line() {
        let (unit, _) = ok("[Service]\nA=1\nB=x \\\n y \\\n z\nC=3\n");
        assert_eq!(
            entry_lines(&unit, "Service"),
            vec![
                ("A".into(), "1".into(), 2),
                ("B".into(), "x   y   z".into(), 3),
                ("C".into(), "3".into(), 6),
            ]
        );
    }

    #[test]
    fn escaped_backslash_does_not_continue() {
        let (unit, _) = ok("[Service]\nA=foo\\\\\nB=bar\n");
        assert_eq!(unit.last("Service", "A"), Some("foo\\\\"));
        assert_eq!(unit.last("Service", "B"), Some("bar"));
    }

    #[test]
    fn comment_inside_continuation_is_skipped() {
        let (unit, _) =
            ok("[Service]\nExecStart=/bin/foo \\\n# a comment \\\n  ; another\n  --bar\n");
        assert_eq!(unit.last("Service", "ExecStart"), Some("/bin/foo    --bar"));
    }

    #[test]
    fn continuation_at_end_of_file() {
        let (unit, _) = ok("[Service]\nA=foo \\");
        assert_eq!(unit.last("Service", "A"), Some("foo"));
        let (unit, _) = ok("[Service]\nA=foo \\\n");
        assert_eq!(unit.last("Service", "A"), Some("foo"));
    }

    #[test]
    fn comments() {
        let (unit, warnings) =
            ok("# top\n; also\n[Unit]\n  # indented\n\t;tabbed\nA=1 # not a comment\nB=2;x\n");
        assert!(warnings.is_empty());
        assert_eq!(unit.last("Unit", "A"), Some("1 # not a comment"));
        assert_eq!(unit.last("Unit", "B"), Some("2;x"));
        assert_eq!(unit.section("Unit").map(|s| s.entries.len()), Some(2));
    }

    #[test]
    fn crlf_and_other_line_endings() {
        let (unit, warnings) = ok("[Unit]\r\nA=1\r\nB=2 \\\r\n  3\r\n");
        assert!(warnings.is_empty());
        assert_eq!(unit.last("Unit", "A"), Some("1"));
        assert_eq!(unit.last("Unit", "B"), Some("2    3"));
        assert_eq!(entry_lines(&unit, "Unit")[1].2, 3);

        // A lone CR ends a line too, and LF LF is an empty line in between.
        let (unit, _) = ok("[Unit]\rA=1\n\nB=2\n\rC=3");
        assert_eq!(
            entry_lines(&unit, "Unit"),
            vec![
                ("A".into(), "1".into(), 2),
                ("B".into(), "2".into(), 4),
                ("C".into(), "3".into(), 5),
            ]
        );
    }

    #[test]
    fn nul_ends_a_line() {
        let (unit, warnings) = parse(b"[Unit]\0A=1\n\0B=2").expect("parses");
        assert!(warnings.is_empty());
        assert_eq!(unit.last("Unit", "A"), Some("1"));
        assert_eq!(unit.last("Unit", "B"), Some("2"));
    }

    #[test]
    fn bom_is_stripped() {
        let (unit, warnings) = parse(b"\xEF\xBB\xBF[Unit]\nA=1\n").expect("parses");
        assert!(warnings.is_empty());
        assert_eq!(unit.last("Unit", "A"), Some("1"));

        // Only one BOM is stripped; a second one stays in the text.
        let (unit, _) = parse(b"\xEF\xBB\xBF[Unit]\n\xEF\xBB\xBFA=1\n").expect("parses");
        assert_eq!(unit.last("Unit", "\u{feff}A"), Some("1"));
    }

    #[test]
    fn missing_equals_warns_and_next_line_survives() {
        let (unit, warnings) = ok("[Unit]\nJustAWord\nA=1\n=novalue\n");
        assert_eq!(unit.last("Unit", "A"), Some("1"));
        assert_eq!(
            warnings,
            vec![
                Warning {
                    line: 2,
                    message: "Missing '=', ignoring line.".into()
                },
                Warning {
                    line: 4,
                    message: "Missing key name before '=', ignoring line.".into()
                },
            ]
        );
    }

    #[test]
    fn assignment_outside_section() {
        let (unit, warnings) = ok("A=1\n[Unit]\nB=2\n");
        assert_eq!(unit.sections.len(), 1);
        assert_eq!(unit.last("Unit", "A"), None);
        assert_eq!(unit.last("Unit", "B"), Some("2"));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 1);
        assert!(warnings[0].message.contains("outside of section"));
    }

    #[test]
    fn repeated_sections_merge_and_keys_keep_order() {
        let (unit, _) = ok("[Unit]\nA=1\n[Service]\nX=y\n[Unit]\nA=2\nB=3\nA=\n");
        assert_eq!(unit.sections.len(), 2);
        assert_eq!(unit.sections[0].name, "Unit");
        assert_eq!(unit.sections[1].name, "Service");
        assert_eq!(unit.values("Unit", "A"), vec!["1", "2", ""]);
        assert_eq!(unit.last("Unit", "A"), Some(""));
        assert_eq!(unit.last("Unit", "B"), Some("3"));
    }

    #[test]
    fn empty_assignment_resets_list() {
        let (unit, _) = ok("[Install]\nWantedBy=a.target b.target\nWantedBy=\nWantedBy=c.target\n");
        assert_eq!(
            unit.list("Install", "WantedBy"),
            Ok(vec!["c.target".into()])
        );

        let (unit, _) = ok("[Install]\nWantedBy=a.target\nWantedBy=  b.target   c.target \n");
        assert_eq!(
            unit.list("Install", "WantedBy"),
            Ok(vec![
                "a.target".into(),
                "b.target".into(),
                "c.target".into()
            ])
        );
        assert_eq!(unit.list("Install", "Also"), Ok(vec![]));
    }

    #[test]
    fn list_with_bad_quoting() {
        let (unit, _) = ok("[Install]\nWantedBy=a.target \"b.target\nWantedBy=c.target\n");
        let err = unit.list("Install", "WantedBy").expect_err("unbalanced");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("unbalanced"), "{err}");

        let (words, warnings) = unit.list_lenient("Install", "WantedBy");
        assert_eq!(words, vec!["a.target".to_string(), "c.target".to_string()]);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 2);
    }

    #[test]
    fn split_words_quoting() {
        let w = |s: &str| split_words(s).expect("balanced");
        assert_eq!(w(""), Vec::<String>::new());
        assert_eq!(w("   \t "), Vec::<String>::new());
        assert_eq!(w("a b\tc"), vec!["a", "b", "c"]);
        assert_eq!(w("\"a b\" 'c d'"), vec!["a b", "c d"]);
        assert_eq!(w("a\"b c\"d"), vec!["ab cd"]);
        assert_eq!(w("'a \"b\" c'"), vec!["a \"b\" c"]);
        assert_eq!(w("\"it's\""), vec!["it's"]);
        assert_eq!(w("\"\" x ''"), vec!["", "x", ""]);
        // Backslashes are kept as written, inside and outside quotes.
        assert_eq!(w("a\\ b"), vec!["a\\", "b"]);
        assert_eq!(w("\"a\\nb\""), vec!["a\\nb"]);
        assert_eq!(w("c:\\\\x"), vec!["c:\\\\x"]);
        // ...so a backslash cannot escape a quote.
        assert!(split_words("\"a\\\"b\"").is_err());
        assert_eq!(w("\"a\\\"b"), vec!["a\\b"]);

        let err = split_words("a \"b").expect_err("unbalanced");
        assert!(err.contains("unbalanced"), "{err}");
        assert!(split_words("'").is_err());
    }

    #[test]
    fn malformed_section_header_is_fatal() {
        let err = parse(b"[Unit]\nA=1\n[Service\nB=2\n").expect_err("refused");
        assert_eq!(err.line, 3);
        assert_eq!(err.to_string(), "line 3: Invalid section header '[Service'");

        let err = parse(b"[\n").expect_err("refused");
        assert_eq!(err.line, 1);

        let err = parse(b"[Ser\"vice]\n").expect_err("refused");
        assert!(err.message.contains("Bad characters"));

        // A trailing `]` after whitespace is still a header: the line is stripped first.
        let (unit, _) = ok("  [Unit]  \nA=1\n");
        assert_eq!(unit.last("Unit", "A"), Some("1"));
    }

    #[test]
    fn invalid_utf8_is_fatal() {
        let err = parse(b"[Unit]\nA=1\nB=\xff\xfe\nC=3\n").expect_err("refused");
        assert_eq!(err.line, 3);
        assert!(err.message.contains("UTF-8"));

        // systemd also refuses Unicode noncharacters.
        let err = parse("[Unit]\nA=\u{FFFE}\n".as_bytes()).expect_err("refused");
        assert_eq!(err.line, 2);

        // Comment lines are skipped before the check.
        let (unit, _) = parse(b"# \xff\n[Unit]\nA=\xc3\xa9\n").expect("parses");
        assert_eq!(unit.last("Unit", "A"), Some("\u{e9}"));
    }

    #[test]
    fn value_containing_equals() {
        let (unit, _) = ok("[Service]\nEnvironment=FOO=bar=baz\nA = = x\n");
        assert_eq!(unit.last("Service", "Environment"), Some("FOO=bar=baz"));
        assert_eq!(unit.last("Service", "A"), Some("= x"));
    }

    #[test]
    fn too_long_lines() {
        let mut long = b"[Unit]\nA=".to_vec();
        long.extend(std::iter::repeat_n(b'x', LONG_LINE_MAX));
        long.push(b'\n');
        let err = parse(&long).expect_err("too long");
        assert_eq!(err.line, 2);

        // Just under the limit is fine.
        let mut fits = b"[Unit]\n".to_vec();
        fits.extend(b"A=");
        fits.extend(std::iter::repeat_n(b'x', LONG_LINE_MAX - 3));
        let (unit, _) = parse(&fits).expect("fits");
        assert_eq!(
            unit.last("Unit", "A").map(str::len),
            Some(LONG_LINE_MAX - 3)
        );

        // Continued lines that are short on their own but too long together.
        let mut joined = b"[Unit]\nA=".to_vec();
        let half = vec![b'y'; LONG_LINE_MAX / 2];
        joined.extend(&half);
        joined.extend(b"\\\n");
        joined.extend(&half);
        joined.extend(b"\\\n");
        joined.extend(b"tail\n");
        let err = parse(&joined).expect_err("too long");
        assert_eq!(err.line, 3);
        assert!(err.message.contains("Continuation"));
    }

    /// Bytes biased towards the characters the parser treats specially, so that the random
    /// inputs reach its interesting states.
    fn random_input(rng: &mut XorShift, alphabet: &[u8]) -> Vec<u8> {
        let len = (rng.next() % 200) as usize;
        (0..len)
            .map(|_| {
                let r = rng.next();
                if r.is_multiple_of(4) {
                    low_byte(r >> 8)
                } else {
                    let i = index_below(r >> 8, alphabet.len());
                    alphabet.get(i).copied().unwrap_or(b'x')
                }
            })
            .collect()
    }

    #[test]
    fn never_panics_on_random_input() {
        let alphabet = b"[]=#;\\\n\r\0 \t\"'aZ\xEF\xBB\xBF\xff";
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5000 {
            let input = random_input(&mut rng, alphabet);
            if let Ok((unit, _)) = parse(&input) {
                for section in &unit.sections {
                    for entry in &section.entries {
                        let _ = split_words(&entry.value);
                        let _ = unit.list(&section.name, &entry.key);
                        let _ = unit.list_lenient(&section.name, &entry.key);
                    }
                }
            }
        }
    }

    #[test]
    fn linear_in_sections() {
        // 115 000 distinct sections in 1 MiB: each header must find its section without
        // a search through all the others.
        assert_linear(
            "unit file with distinct sections",
            |n| {
                repeated(n, "[Service]\nExecStart=/bin/true\n", |i| {
                    format!("[{i:06}]\n")
                })
            },
            |b| assert!(parse(b).is_ok()),
        );
        // Reopened sections still merge, in first-seen order.
        let text = repeated(64 * 1024, "", |i| format!("[S{}]\nK={i}\n", i % 100));
        let (unit, _) = parse(&text).unwrap();
        assert_eq!(unit.sections.len(), 100);
        assert_eq!(unit.sections[7].name, "S7");
        assert_eq!(unit.sections[7].entries[1].value, "107");
    }
}
