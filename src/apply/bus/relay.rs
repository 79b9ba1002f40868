//! PID 1's private socket, made readable by zbus. On that socket systemd sends every message
//! with the sender `org.freedesktop.systemd1` (`sd_bus_set_sender()` in its `dbus.c`), a
//! well-known name where the D-Bus specification has a unique name; zbus 5 and 6 refuse such
//! messages (its reader thread panics on them). zbus gets one end of a socket pair instead, and
//! two threads copy bytes between it and PID 1, replacing that sender field with one of the
//! same length that names a valid unique name. The field is matched whole (code, signature,
//! length, name), so nothing else in a message is touched, and the length does not change, so
//! no message is re-framed.

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

/// The sender header field as systemd writes it, little- and big-endian: code 7 (sender),
/// signature `s`, the length 24, the name and its NUL.
const FIELDS: [&[u8]; 2] = [
    b"\x07\x01s\x00\x18\x00\x00\x00org.freedesktop.systemd1\x00",
    b"\x07\x01s\x00\x00\x00\x00\x18org.freedesktop.systemd1\x00",
];

/// The same field naming `:org.freedesktop.systemd`, a valid unique name of the same length.
const REPLACEMENTS: [&[u8]; 2] = [
    b"\x07\x01s\x00\x18\x00\x00\x00:org.freedesktop.systemd\x00",
    b"\x07\x01s\x00\x00\x00\x00\x18:org.freedesktop.systemd\x00",
];

/// How long a partial match at the end of what was read is held back for the rest of it: the
/// rest of one message comes at once, so only a message that really ends with a prefix of the
/// field waits this long.
const HOLD: Duration = Duration::from_millis(5);

/// Connect to `socket` and return the stream zbus is to use in its place.
pub fn connect(socket: &str) -> io::Result<UnixStream> {
    let pid1 = UnixStream::connect(socket)?;
    let (ours, theirs) = UnixStream::pair()?;
    let (mut to_pid1, mut from_zbus) = (pid1.try_clone()?, theirs.try_clone()?);
    thread::spawn(move || {
        let _ = io::copy(&mut from_zbus, &mut to_pid1);
        let _ = to_pid1.shutdown(std::net::Shutdown::Write);
    });
    pid1.set_read_timeout(Some(HOLD))?;
    thread::spawn(move || {
        let _ = copy_rewriting(pid1, theirs);
    });
    Ok(ours)
}

/// Copy from `from` to `to`, replacing each sender field; until either end closes.
fn copy_rewriting(mut from: UnixStream, mut to: UnixStream) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                to.write_all(&pending)?;
                return Ok(());
            }
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // Nothing more came: what was held back is the end of a message.
                to.write_all(&pending)?;
                pending.clear();
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        rewrite(&mut pending);
        let keep = partial_tail(&pending);
        let ready = pending.len() - keep;
        to.write_all(&pending[..ready])?;
        pending.drain(..ready);
    }
}

/// Replace every whole sender field in `bytes`, in place.
fn rewrite(bytes: &mut [u8]) {
    for (field, replacement) in FIELDS.iter().zip(REPLACEMENTS) {
        let mut i = 0;
        while i + field.len() <= bytes.len() {
            if &bytes[i..i + field.len()] == *field {
                bytes[i..i + field.len()].copy_from_slice(replacement);
                i += field.len();
            } else {
                i += 1;
            }
        }
    }
}

/// How many bytes at the end of `bytes` could be the start of a sender field.
fn partial_tail(bytes: &[u8]) -> usize {
    let longest = FIELDS[0].len() - 1;
    (1..=longest.min(bytes.len()))
        .rev()
        .find(|&n| {
            let tail = &bytes[bytes.len() - n..];
            FIELDS.iter().any(|f| f.starts_with(tail))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_field_is_replaced_whole_and_nothing_else() {
        let mut msg = b"l\x02\x01\x01....".to_vec();
        msg.extend_from_slice(FIELDS[0]);
        msg.extend_from_slice(b"body: org.freedesktop.systemd1\x00");
        let mut expected = b"l\x02\x01\x01....".to_vec();
        expected.extend_from_slice(REPLACEMENTS[0]);
        expected.extend_from_slice(b"body: org.freedesktop.systemd1\x00");
        rewrite(&mut msg);
        assert_eq!(msg, expected);
        assert_eq!(FIELDS[0].len(), REPLACEMENTS[0].len());
    }

    #[test]
    fn a_field_split_between_reads_is_held_back_until_whole() {
        let mut first = b"abc".to_vec();
        first.extend_from_slice(&FIELDS[0][..10]);
        assert_eq!(partial_tail(&first), 10);
        assert_eq!(partial_tail(b"abc"), 0);
        assert_eq!(partial_tail(b"abc\x07"), 1);
    }

    #[test]
    fn the_relay_carries_both_ways_and_rewrites_what_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = [0u8; 5];
            s.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hello");
            // The field split over two writes, and a message ending in a prefix of it.
            s.write_all(&FIELDS[0][..7]).unwrap();
            s.write_all(&FIELDS[0][7..]).unwrap();
            s.write_all(b"\x07").unwrap();
            thread::sleep(Duration::from_millis(200));
        });
        let mut c = connect(path.to_str().unwrap()).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = vec![0u8; FIELDS[0].len() + 1];
        c.read_exact(&mut back).unwrap();
        let mut expected = REPLACEMENTS[0].to_vec();
        expected.push(7);
        assert_eq!(back, expected);
        server.join().unwrap();
    }
}
