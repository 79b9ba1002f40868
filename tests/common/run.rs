//! Running the generator binary (or any command) with a clean environment and a time limit,
//! describing how it ended, and putting placeholders for paths into what it printed.

use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::error::io_context;
use super::paths::generator_bin;

/// Reads a `KEY=VALUE` file (blank lines and `#` comments ignored).
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| io_context(format!("reading {}", path.display()), &e))?;
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{}:{}: expected KEY=VALUE", path.display(), n + 1));
        };
        vars.push((key.to_owned(), value.to_owned()));
    }
    Ok(vars)
}

/// What a finished generator run left behind.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// `0`, `1`, ... or `killed by signal N`.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("{status}"),
    }
}

/// Runs the generator as `portables-generator --root ROOT ARGS... OUT` with a clean systemd
/// environment: every `SYSTEMD_*` variable of the test process removed,
/// `SYSTEMD_LOG_TARGET=console` and `SYSTEMD_LOG_LEVEL=info` set, then `env` applied. Killed
/// after `timeout`.
pub fn run_generator(
    root: &Path,
    args: &[String],
    out: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<RunOutput, String> {
    let mut cmd = Command::new(generator_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SYSTEMD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("SYSTEMD_LOG_TARGET", "console")
        .env("SYSTEMD_LOG_LEVEL", "info");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.arg("--root").arg(root).args(args).arg(out);
    run_with_timeout(cmd, timeout)
}

/// Runs `cmd` with stdin from /dev/null, collecting stdout and stderr, killing it after
/// `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<RunOutput, String> {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io_context(format!("starting {what}"), &e))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| io_context(format!("waiting for {what}"), &e))?
        {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} did not finish within {timeout:?}; killed"));
        }
        thread::sleep(Duration::from_millis(5));
    };
    Ok(RunOutput {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Replaces every occurrence of each path (as text) by its placeholder.
pub fn normalize_paths(text: &str, replacements: &[(&Path, &str)]) -> String {
    let mut text = text.to_owned();
    for (path, placeholder) in replacements {
        text = text.replace(&*path.to_string_lossy(), placeholder);
    }
    text
}
