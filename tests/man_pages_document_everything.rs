//! The man pages (`man/*.scd`) document everything a user can type: every command the built
//! binary's `--help` lists and every `--long-option` of `--help` and of each `COMMAND --help`
//! in `portables-generator(8)`, with the kernel command-line switch and the log settings; and
//! in `portables.d(5)` every key of the key table (`config::keys`) under its section, and no
//! key the parser does not accept.
//!
//! A command is documented by a line starting `*NAME*` in the section COMMANDS, an option by a
//! line starting with `*--NAME*` (or `*-x*, *--NAME*`) in OPTIONS, a key by a line starting
//! `*Key=*` in the section `[SECTION] SECTION`: the scdoc form of a definition list entry.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use portables_generator::config::{CMDLINE_SWITCH, Section};

fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The lines of the section `# TITLE` of an scdoc page, up to the next section.
fn section<'a>(page: &'a str, title: &str) -> Vec<&'a str> {
    let heading = format!("# {title}");
    let mut lines = page.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "the page has no section {title}");
    lines.take_while(|l| !l.starts_with("# ")).collect()
}

/// The terms of the definition list entries of a section: `*term*` at the start of a line,
/// each of a line's terms (`*-h*, *--help*`).
fn terms(lines: &[&str]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l.starts_with('*'))
        .flat_map(|l| l.split(", "))
        .filter_map(|t| t.strip_prefix('*')?.split('*').next())
        .map(str::to_string)
        .collect()
}

/// The commands a help text lists: the first word of each indented line after `Commands:`.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every `--long-option` a help text offers: in its usage lines, and the options an entry of
/// its option list starts with (`  -h, --help   show this text`). Prose that mentions another
/// program's option (`portablectl attach --enable`) is not an offer.
fn long_options(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in help.lines() {
        let body = line.trim_start();
        let words: Vec<&str> =
            if body.starts_with("Usage:") || body.starts_with("portables-generator") {
                body.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .collect()
            } else if body.starts_with('-') {
                // The entry's options, up to the first word that is not one (its argument or its
                // description).
                body.split_whitespace()
                    .map(|w| w.trim_end_matches(','))
                    .take_while(|w| w.starts_with('-') || w.chars().all(|c| c.is_ascii_uppercase()))
                    .collect()
            } else {
                Vec::new()
            };
        out.extend(
            words
                .into_iter()
                .filter(|w| w.len() > 2 && w.starts_with("--"))
                .map(str::to_string),
        );
    }
    out
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_portables-generator"))
        .args(args)
        .output()
        .expect("running portables-generator");
    assert!(
        out.status.success(),
        "portables-generator {}: {:?}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help text is UTF-8")
}

/// What `help_texts` name that the page does not document, as one message per omission.
fn undocumented(help_texts: &[(String, String)], page: &str) -> Vec<String> {
    let documented_commands = terms(&section(page, "COMMANDS"));
    let documented_options = terms(&section(page, "OPTIONS"));
    let mut missing = Vec::new();
    for (invocation, text) in help_texts {
        for command in commands(text) {
            if !documented_commands.contains(&command) {
                missing.push(format!("command {command} (from {invocation})"));
            }
        }
        for option in long_options(text) {
            if !documented_options.contains(&option) {
                missing.push(format!("option {option} (from {invocation})"));
            }
        }
    }
    missing
}

#[test]
fn the_generator_page_documents_every_command_and_option() {
    let page = page("portables-generator.8.scd");
    let top = help(&["--help"]);
    let mut texts = vec![("--help".to_string(), top.clone())];
    for command in commands(&top) {
        let text = help(&[&command, "--help"]);
        texts.push((format!("{command} --help"), text));
    }
    let missing = undocumented(&texts, &page);
    assert!(
        missing.is_empty(),
        "man/portables-generator.8.scd does not document: {missing:?}"
    );
}

#[test]
fn the_generator_page_documents_the_kernel_switch_and_logging() {
    let page = page("portables-generator.8.scd");
    let kernel = terms(&section(&page, "KERNEL COMMAND LINE"));
    for term in [
        format!("{CMDLINE_SWITCH}="),
        "systemd.log_level=".to_string(),
    ] {
        assert!(kernel.contains(&term), "KERNEL COMMAND LINE lacks {term}");
    }
    let environment = terms(&section(&page, "ENVIRONMENT"));
    assert!(
        environment.contains("$SYSTEMD_LOG_LEVEL"),
        "{environment:?}"
    );
    for title in ["EXIT STATUS", "FILES", "UNITS", "EXAMPLES", "SEE ALSO"] {
        section(&page, title);
    }
    assert!(page.contains(&format!("*{CMDLINE_SWITCH}=0*")));
}

#[test]
fn the_configuration_page_documents_every_key_under_its_section() {
    let page = page("portables.d.5.scd");
    for s in Section::ALL {
        let title = format!("[{}] SECTION", s.name().to_uppercase());
        let documented: BTreeSet<String> = terms(&section(&page, &title))
            .into_iter()
            .filter_map(|t| t.strip_suffix('=').map(str::to_string))
            .collect();
        let accepted: BTreeSet<String> = s.keys().map(str::to_string).collect();
        assert_eq!(
            documented,
            accepted,
            "man/portables.d.5.scd, section {title}: documented keys differ from those [{}] accepts",
            s.name()
        );
    }
    for title in [
        "DIRECTORIES AND PRECEDENCE",
        "MASKING",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        section(&page, title);
    }
    assert!(page.contains(&format!("*{CMDLINE_SWITCH}=0*")));
}

/// The checks above, on a help text of the shape the command line is specified to have: a
/// command or option missing from a page is found.
#[test]
fn an_undocumented_command_or_option_is_found() {
    let spec = "Usage: portables-generator [--root DIR] NORMAL_DIR\n\
                \n\
                Commands:\n  list         show images\n  inspect      show one\n\
                \n\
                Options:\n  --root DIR   read below DIR, as `portablectl --root` would\n  -V, --version\n";
    assert_eq!(commands(spec), ["list", "inspect"]);
    assert_eq!(
        long_options(spec),
        BTreeSet::from(["--root".to_string(), "--version".to_string()])
    );
    let page = "# COMMANDS\n\n*list*\n\tShows.\n\n# OPTIONS\n\n*--root* _DIR_\n\tBelow.\n\n\
                *-V*, *--version*\n\tVersion.\n\n# EXIT STATUS\n";
    let texts = [("--help".to_string(), spec.to_string())];
    assert_eq!(
        undocumented(&texts, page),
        ["command inspect (from --help)"]
    );
    let list_help = "Usage: portables-generator list [--json] [--bogus]\n";
    let texts = [("list --help".to_string(), list_help.to_string())];
    assert_eq!(
        undocumented(&texts, page),
        [
            "option --bogus (from list --help)",
            "option --json (from list --help)"
        ]
    );
}
