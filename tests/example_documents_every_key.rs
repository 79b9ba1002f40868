//! `portables.d.example` documents every key the parser accepts, under the section it belongs
//! to, documents no key the parser does not accept, and its examples parse cleanly.
//!
//! An example line is a section header or a `Key=value` assignment, commented out or not; the
//! comment sign must be followed directly by the header or key, which is what tells an example
//! from prose (`# Key= means ...`).

use std::path::{Path, PathBuf};

use portables_generator::config::{self, Section};

struct Assignment {
    line: usize,
    section: Option<String>,
    key: String,
    value: String,
}

/// One section header and the assignments after it, up to the next header.
struct Block {
    line: usize,
    section: String,
    assignments: Vec<(String, String)>,
}

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("portables.d.example");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn header(body: &str) -> Option<&str> {
    body.strip_prefix('[')?.strip_suffix(']')
}

fn assignment(body: &str) -> Option<(&str, &str)> {
    let (key, value) = body.split_once('=')?;
    let is_key = key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    is_key.then_some((key, value))
}

fn read_example() -> (Vec<Assignment>, Vec<Block>) {
    let text = example();
    let mut assignments = Vec::new();
    let mut blocks: Vec<Block> = Vec::new();
    let mut section: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let body = line.strip_prefix('#').unwrap_or(line).trim_end();
        if let Some(name) = header(body) {
            section = Some(name.to_string());
            blocks.push(Block {
                line: i + 1,
                section: name.to_string(),
                assignments: Vec::new(),
            });
        } else if let Some((key, value)) = assignment(body) {
            assignments.push(Assignment {
                line: i + 1,
                section: section.clone(),
                key: key.to_string(),
                value: value.to_string(),
            });
            if let Some(block) = blocks.last_mut() {
                block.assignments.push((key.to_string(), value.to_string()));
            }
        }
    }
    (assignments, blocks)
}

fn accepted(section: &str) -> Option<Vec<&'static str>> {
    Section::named(section).map(|s| s.keys().collect())
}

#[test]
fn every_key_is_documented() {
    let (assignments, _) = read_example();
    let mut missing = Vec::new();
    for section in Section::ALL {
        let name = section.name();
        for key in section.keys() {
            let documented = assignments
                .iter()
                .any(|a| a.key == key && a.section.as_deref() == Some(name));
            if !documented {
                missing.push(format!("{key}= in [{name}]"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "portables.d.example does not document, as a #KEY= line under its section header: {}",
        missing.join(", ")
    );
}

#[test]
fn every_documented_key_exists() {
    let (assignments, _) = read_example();
    let mut wrong = Vec::new();
    for a in &assignments {
        match a.section.as_deref() {
            None => wrong.push(format!(
                "line {}: {}= is outside any section",
                a.line, a.key
            )),
            Some(section) => match accepted(section) {
                None => wrong.push(format!(
                    "line {}: {}= is in [{section}], a section the parser does not know",
                    a.line, a.key
                )),
                Some(keys) if !keys.contains(&a.key.as_str()) => wrong.push(format!(
                    "line {}: {}= is not a key of [{section}] (value {})",
                    a.line, a.key, a.value
                )),
                Some(_) => {}
            },
        }
    }
    assert!(
        wrong.is_empty(),
        "portables.d.example documents keys the parser does not accept:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_example_parses_cleanly() {
    let (_, blocks) = read_example();
    assert!(!blocks.is_empty(), "no section header found");
    let file = PathBuf::from("/etc/portables.d/example.conf");
    for block in &blocks {
        let mut text = format!("[{}]\n", block.section);
        for (key, value) in &block.assignments {
            text.push_str(&format!("{key}={value}\n"));
        }
        let section = Section::named(&block.section);
        let messages = if section == Some(Section::Portable) {
            let (result, messages) = config::parse_image_config("example", &file, text.as_bytes());
            if let Err(reason) = result {
                panic!("the example at line {} is invalid: {reason}", block.line);
            }
            messages
        } else if section == Some(Section::Defaults) {
            config::parse_defaults(&[(file.clone(), text.into_bytes())]).1
        } else {
            panic!("line {}: unknown section [{}]", block.line, block.section);
        };
        let texts: Vec<_> = messages.iter().map(|d| d.message.as_str()).collect();
        assert!(
            texts.is_empty(),
            "the example at line {} is not clean: {texts:?}",
            block.line
        );
    }
}
