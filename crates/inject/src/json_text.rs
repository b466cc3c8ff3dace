//! JSON text written straight into a buffer, byte for byte as `serde_json` writes it compactly,
//! for what every admission renders: the proxy container and the patch around it.
//!
//! `serde_json` escapes a string by looking up each byte in a table. Almost every string here (env
//! names, addresses, paths) needs no escape, so a check over whole 16-byte blocks, which the
//! compiler turns into vector comparisons, lets them be copied at once; only a string that holds
//! an escape is walked byte by byte.

use serde_json::Value;

/// `text` as a JSON string, quoted and escaped.
pub fn string(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    if needs_escape(text.as_bytes()) {
        escaped(out, text.as_bytes());
    } else {
        out.extend_from_slice(text.as_bytes());
    }
    out.push(b'"');
}

/// A JSON value, compact.
pub fn value(out: &mut Vec<u8>, value: &Value) {
    serde_json::to_writer(out, value).expect("writing a JSON value into memory cannot fail");
}

/// A JSON array of `items`, each written by `write`.
pub fn list<T>(out: &mut Vec<u8>, items: impl IntoIterator<Item = T>, mut write: impl FnMut(&mut Vec<u8>, T)) {
    out.push(b'[');
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// `"key":`, for keys that need no escape (the engine's own field names).
pub fn key(out: &mut Vec<u8>, key: &str) {
    debug_assert!(!needs_escape(key.as_bytes()), "{key:?} needs escaping");
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// A JSON object written field by field, in the order the fields are given.
pub struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    pub fn start(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self::key(self.out, key);
        self.out
    }

    pub fn string(&mut self, key: &str, text: &str) {
        string(self.key(key), text);
    }

    pub fn value(&mut self, key: &str, value: &Value) {
        self::value(self.key(key), value);
    }

    /// A number or a boolean, written as Rust displays it (which is its JSON text).
    pub fn literal(&mut self, key: &str, literal: impl std::fmt::Display) {
        use std::io::Write;
        write!(self.key(key), "{literal}").expect("writing into memory cannot fail");
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

fn needs_escape(bytes: &[u8]) -> bool {
    let special = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut blocks = bytes.chunks_exact(16);
    // Every byte of a block is compared, without stopping early, so the comparisons vectorize.
    let in_blocks = blocks.by_ref().any(|block| block.iter().fold(false, |found, &b| found | special(b)));
    in_blocks || blocks.remainder().iter().any(|&b| special(b))
}

/// The escapes `serde_json` writes: the short ones JSON has, `\u00XX` (lowercase hex) for the
/// other control characters; everything else, UTF-8 included, as it is.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut copied = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[copied..at]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
        }
        copied = at + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn written(text: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let long_clean = "linkerd-identity-headless.linkerd.svc.cluster.local.:8080";
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\"x\\y\n-----END CERTIFICATE-----\n";
        for text in ["", "a", long_clean, pem, "\u{1}\u{8}\u{c}\t\r\u{1f}\u{7f}", "é ✓ 𝄞", "{\"ns\":\"$(_pod_ns)\"}\n"]
        {
            assert_eq!(written(text), serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(text in "(\\PC|[\\x00-\\x1f\"\\\\]){0,80}") {
            prop_assert_eq!(written(&text), serde_json::to_string(&text).unwrap());
        }
    }
}
