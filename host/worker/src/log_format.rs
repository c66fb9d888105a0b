//! The worker's log output (text or JSON lines on stderr), with no raw control characters.
//!
//! JSON lines escape control characters already (serde_json). The text format sanitizes
//! only the message (tracing-subscriber escapes ESC, BEL and a few others there), not other
//! fields and not a newline or a carriage return, so a field with a newline (a plugin's error
//! message, a model's name) could forge a log line. [`EscapeControls`] wraps the writer: the
//! formatter hands it one whole line per event, and every control character in it (C0, DEL,
//! C1) is written as `\xNN` (text) or `\u00NN` (JSON, where serde_json leaves DEL and C1 raw;
//! a raw control character can only sit inside a JSON string, where `\u00NN` is valid), except
//! the line's final newline. Text logs are therefore written
//! without colours (`with_ansi(false)`): a colour sequence from the formatter could not be told
//! apart from one inside a value.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Set up the global subscriber: `RUST_LOG` (default `info`), text or JSON lines on stderr.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(EscapeControls {
            inner: io::stderr,
            json,
        });
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// A [`MakeWriter`] whose writers escape control characters (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct EscapeControls<M> {
    pub inner: M,
    /// The lines are JSON (escape as `\u00NN`).
    pub json: bool,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for EscapeControls<M> {
    type Writer = Escaping<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaping {
            inner: self.inner.make_writer(),
            json: self.json,
        }
    }
}

/// One writer of [`EscapeControls`].
#[derive(Debug)]
pub struct Escaping<W> {
    inner: W,
    json: bool,
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&escape_line(buf, self.json))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `line` with its control characters escaped (see the module docs).
pub fn escape_line(line: &[u8], json: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 8);
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        let final_newline = b == b'\n' && i + 1 == line.len();
        // C1 controls U+0080..=U+009F are 0xC2 0x80..=0x9F in UTF-8.
        let c1 = (b == 0xc2).then(|| line.get(i + 1).copied()).flatten();
        let (code, len) = match c1 {
            Some(next @ 0x80..=0x9f) => (Some(next), 2),
            _ if (b < 0x20 || b == 0x7f) && !final_newline => (Some(b), 1),
            _ => (None, 1),
        };
        match code {
            Some(c) if json => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            Some(c) => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
            None => out.push(b),
        }
        i += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    const HOSTILE: &str = "id\n2026-01-01T00:00:00Z  INFO forged\r\x1b[2Jx\x07\x00\t\u{7f}\u{85}é";

    fn log_with(json: bool) -> String {
        let buf = Buf::default();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(EscapeControls {
                inner: buf.clone(),
                json,
            });
        let emit = || tracing::info!(event = "cancel", job_id = %HOSTILE, "message {HOSTILE}");
        if json {
            tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn no_log_format_writes_a_raw_control_character_from_a_value() {
        for json in [false, true] {
            let out = log_with(json);
            assert_eq!(out.matches('\n').count(), 1, "{out:?}");
            assert!(out.ends_with('\n'), "{out:?}");
            let body = &out[..out.len() - 1];
            assert!(
                !body.chars().any(|c| c.is_control()),
                "json={json}: {out:?}"
            );
            if json {
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(v["job_id"], HOSTILE);
            } else {
                assert!(out.contains("job_id=id\\x0a2026"), "{out:?}");
            }
        }
    }

    #[test]
    fn escape_line_keeps_only_the_final_newline() {
        assert_eq!(escape_line(b"a\nb\x1b[2J\n", false), b"a\\x0ab\\x1b[2J\n");
        assert_eq!(escape_line(b"\t\x7f", false), b"\\x09\\x7f");
        assert_eq!(
            escape_line("\u{85}é\n".as_bytes(), true),
            "\\u0085é\n".as_bytes()
        );
    }
}
