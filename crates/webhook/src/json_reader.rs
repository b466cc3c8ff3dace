//! A JSON reader over a request body that builds only what its caller asks for. The webhook
//! reads big pods this way (see `object_view`): their bulk is thousands of short strings it never
//! reads, and a general decoder spends its time per token, built or not.
//!
//! What the caller reads is checked as `serde_json` checks it, with its messages and positions.
//! A skipped object or array is scanned 64 bytes at a time for its quotes and brackets: its
//! strings are checked (closed, valid escapes, no control characters), its brackets must nest
//! within the depth limit, and the whole body must be UTF-8; the grammar between its tokens
//! (commas, colons, the spelling of numbers and literals) is not checked. The apiserver sends
//! what it serialized itself, and nothing the webhook answers comes from a skipped part.

use std::borrow::Cow;

use serde_json::{Number, Value};
use wide::u8x16;

const CONTROL_IN_STRING: &str = "control character (\\u0000-\\u001F) found while parsing a string";

/// serde_json's limit, so both refuse the same documents.
const MAX_DEPTH: usize = 128;

/// A string stops at its closing quote, at an escape, or at a control character (an error).
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Where the body stops being JSON, with serde_json's wording and position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line} column {column}")]
pub struct JsonError {
    message: String,
    line: usize,
    column: usize,
}

impl JsonError {
    /// The same error, saying which field it is in.
    pub fn in_field(mut self, path: &str) -> Self {
        self.message = format!("{path}: {}", self.message);
        self
    }
}

/// The type of the next value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    fn article(self) -> &'static str {
        match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
        }
    }
}

/// Where a string's text lies in the body.
struct StringSpan {
    start: usize,
    end: usize,
    escaped: bool,
}

pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

type Result<T> = std::result::Result<T, JsonError>;

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Result<Self> {
        match std::str::from_utf8(body) {
            Ok(text) => Ok(Reader { text, pos: 0, depth: 0 }),
            Err(e) => Err(error_at(body, e.valid_up_to(), "invalid UTF-8")),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    pub fn error(&self, message: impl Into<String>) -> JsonError {
        error_at(self.bytes(), self.pos, message)
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes().get(self.pos).copied()
    }

    /// The end of the body: only whitespace may follow the value.
    pub fn finish(mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// The type of the next value, without reading it.
    pub fn kind(&mut self) -> Result<Kind> {
        match self.peek() {
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b'"') => Ok(Kind::String),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            Some(_) => Err(self.error("expected value")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    fn expect_kind(&mut self, expected: Kind) -> Result<()> {
        let found = self.kind()?;
        if found == expected {
            Ok(())
        } else {
            Err(self.error(format!("invalid type: {}, expected {}", found.article(), expected.article())))
        }
    }

    fn eat(&mut self, byte: u8, expected: &str) -> Result<()> {
        match self.peek() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.error(format!("expected {expected}"))),
            None => Err(self.error(format!("EOF while parsing {expected}"))),
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH { Err(self.error("recursion limit exceeded")) } else { Ok(()) }
    }

    /// Reads an object, calling `each` with every key; `each` must read the key's value.
    pub fn object(&mut self, mut each: impl FnMut(&mut Self, Cow<'a, str>) -> Result<()>) -> Result<()> {
        self.expect_kind(Kind::Object)?;
        self.items(b'}', |reader| {
            let span = reader.scan_string()?;
            let key = reader.decode_string(span)?;
            reader.eat(b':', "`:`")?;
            each(reader, key)
        })
    }

    /// Reads an array, calling `each` once per item; `each` must read the item.
    pub fn array(&mut self, each: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.expect_kind(Kind::Array)?;
        self.items(b']', each)
    }

    /// The comma-separated items up to `close`, after the opening bracket.
    fn items(&mut self, close: u8, mut each: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.pos += 1;
        self.enter()?;
        if self.peek() == Some(close) {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        let (separator, container) = if close == b'}' { ("`,` or `}`", "an object") } else { ("`,` or `]`", "a list") };
        loop {
            match self.peek() {
                None => return Err(self.error(format!("EOF while parsing {container}"))),
                Some(b) if close == b'}' && b != b'"' => return Err(self.error("key must be a string")),
                Some(_) => {}
            }
            each(self)?;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    if self.peek() == Some(close) {
                        return Err(self.error("trailing comma"));
                    }
                }
                Some(b) if b == close => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                Some(_) => return Err(self.error(format!("expected {separator}"))),
                None => return Err(self.error(format!("EOF while parsing {container}"))),
            }
        }
    }

    /// The raw text between the quotes, and whether it holds escapes, from the opening quote.
    fn scan_string(&mut self) -> Result<StringSpan> {
        let bytes = self.bytes();
        let start = self.pos + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            let Some(stop) = bytes[at..].iter().position(|&b| STRING_STOP[b as usize]) else {
                self.pos = bytes.len();
                return Err(self.error("EOF while parsing a string"));
            };
            at += stop;
            match bytes[at] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    at += self.escape_len(at)?;
                }
                _ => {
                    self.pos = at;
                    return Err(self.error(CONTROL_IN_STRING));
                }
            }
        }
        self.pos = at + 1;
        Ok(StringSpan { start, end: at, escaped })
    }

    /// The length of the escape at `backslash`, which must be one JSON allows.
    fn escape_len(&mut self, backslash: usize) -> Result<usize> {
        let bytes = self.bytes();
        match bytes.get(backslash + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(2),
            Some(b'u')
                if bytes.get(backslash + 2..backslash + 6).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
            {
                Ok(6)
            }
            _ => {
                self.pos = backslash + 1;
                Err(self.error("invalid escape"))
            }
        }
    }

    pub fn string(&mut self) -> Result<Cow<'a, str>> {
        self.expect_kind(Kind::String)?;
        let span = self.scan_string()?;
        self.decode_string(span)
    }

    fn decode_string(&self, StringSpan { start, end, escaped }: StringSpan) -> Result<Cow<'a, str>> {
        let text = self.text;
        if !escaped {
            return Ok(Cow::Borrowed(&text[start..end]));
        }
        // Escapes are rare in what the webhook reads; serde_json decodes them (surrogate pairs
        // included) exactly as it would have in the whole body.
        serde_json::from_str::<String>(&text[start - 1..=end])
            .map(Cow::Owned)
            .map_err(|e| self.error(strip_position(&e.to_string()).to_owned()))
    }

    fn number_text(&mut self) -> Result<&'a str> {
        let bytes = self.bytes();
        let start = self.pos;
        let digits = |at: usize| bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mut at = start + usize::from(bytes.get(start) == Some(&b'-'));
        match bytes.get(at) {
            Some(b'0') if bytes.get(at + 1).is_some_and(u8::is_ascii_digit) => {
                self.pos = at + 1;
                return Err(self.error("invalid number"));
            }
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => at += digits(at),
            _ => {
                self.pos = at;
                return Err(self.error("invalid number"));
            }
        }
        if bytes.get(at) == Some(&b'.') {
            let fraction = digits(at + 1);
            if fraction == 0 {
                self.pos = at + 1;
                return Err(self.error("invalid number"));
            }
            at += 1 + fraction;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            let exponent = digits(at);
            if exponent == 0 {
                self.pos = at;
                return Err(self.error("invalid number"));
            }
            at += exponent;
        }
        self.pos = at;
        Ok(&self.text[start..at])
    }

    fn number(&mut self) -> Result<Number> {
        let start = self.pos;
        let text = self.number_text()?;
        serde_json::from_str::<Number>(text).map_err(|e| {
            self.pos = start + text.len() - 1;
            self.error(strip_position(&e.to_string()).to_owned())
        })
    }

    fn literal(&mut self, word: &str) -> Result<()> {
        let rest = &self.bytes()[self.pos..];
        let matching = rest.iter().zip(word.as_bytes()).take_while(|(a, b)| a == b).count();
        self.pos += matching;
        if matching == word.len() {
            Ok(())
        } else if matching == rest.len() {
            Err(self.error("EOF while parsing a value"))
        } else {
            Err(self.error("expected ident"))
        }
    }

    pub fn bool(&mut self) -> Result<bool> {
        self.expect_kind(Kind::Bool)?;
        let value = self.bytes()[self.pos] == b't';
        self.literal(if value { "true" } else { "false" })?;
        Ok(value)
    }

    /// Reads `null` if it is next, and says whether it was.
    pub fn null(&mut self) -> Result<bool> {
        if self.kind()? != Kind::Null {
            return Ok(false);
        }
        self.literal("null")?;
        Ok(true)
    }

    /// Reads a string, number, boolean or null.
    pub fn scalar(&mut self) -> Result<Value> {
        Ok(match self.kind()? {
            Kind::String => Value::String(self.string()?.into_owned()),
            Kind::Number => Value::Number(self.number()?),
            Kind::Bool => Value::Bool(self.bool()?),
            Kind::Null => {
                self.literal("null")?;
                Value::Null
            }
            Kind::Object | Kind::Array => return Err(self.error("expected a string, number, boolean or null")),
        })
    }

    /// Checks the next value and returns an empty value of its type: the value itself is never
    /// built.
    pub fn skim(&mut self) -> Result<Value> {
        let kind = self.kind()?;
        self.skip_a(kind)?;
        Ok(match kind {
            Kind::Object => Value::Object(serde_json::Map::new()),
            Kind::Array => Value::Array(Vec::new()),
            Kind::String => Value::String(String::new()),
            Kind::Number => Value::from(0),
            Kind::Bool => Value::Bool(false),
            Kind::Null => Value::Null,
        })
    }

    /// Skips an object or array by its brackets, 64 bytes at a time. Strings are checked (closed,
    /// valid escapes, no control characters) and brackets must nest, within the depth limit;
    /// the grammar between the tokens is not checked. A whole-value parse spends its time per
    /// token, and the parts the webhook skips are thousands of short strings.
    fn skip_container(&mut self) -> Result<()> {
        let bytes = self.bytes();
        let mut brackets = Brackets { depth: self.depth, kinds: 0, in_string: false };
        let outer = self.depth;
        let fail = |reader: &mut Self, at: usize, message: &str| {
            reader.pos = at;
            Err(reader.error(message))
        };
        let mut at = self.pos;
        loop {
            if at >= bytes.len() {
                return fail(self, bytes.len(), "EOF while parsing a value");
            }
            let block = Block::load(&bytes[at..]);
            if block.backslashes | block.controls != 0 {
                // Escapes, and the line breaks of indented JSON, are rare in what the apiserver
                // sends: the block is read byte by byte.
                match self.skip_bytes(&mut brackets, outer, at)? {
                    Some(next) => at = next,
                    None => return Ok(()),
                }
                continue;
            }
            let strings = inside_strings(block.quotes) ^ if brackets.in_string { !0 } else { 0 };
            let mut structural = block.brackets & !strings;
            while structural != 0 {
                let offset = structural.trailing_zeros() as usize;
                structural &= structural - 1;
                // Bit 0x02 is set in opening brackets, bit 0x20 in braces.
                let byte = bytes[at + offset];
                if !matches!(byte, b'{' | b'}' | b'[' | b']') {
                    continue;
                }
                if let Err(message) = brackets.take(byte & 0x02 != 0, byte & 0x20 != 0) {
                    return fail(self, at + offset, message);
                }
                if brackets.depth == outer {
                    self.pos = at + offset + 1;
                    return Ok(());
                }
            }
            brackets.in_string = strings >> 63 == 1;
            at += Block::LEN;
        }
    }

    /// One block of a container skip, byte by byte: the next block's start, or `None` when the
    /// container ended.
    fn skip_bytes(&mut self, brackets: &mut Brackets, outer: usize, start: usize) -> Result<Option<usize>> {
        let bytes = self.bytes();
        let end = (start + Block::LEN).min(bytes.len());
        let mut at = start;
        while at < end {
            let byte = bytes[at];
            if brackets.in_string {
                match byte {
                    b'"' => brackets.in_string = false,
                    b'\\' => {
                        at += self.escape_len(at)? - 1;
                    }
                    0..0x20 => {
                        self.pos = at;
                        return Err(self.error(CONTROL_IN_STRING));
                    }
                    _ => {}
                }
            } else {
                match byte {
                    b'"' => brackets.in_string = true,
                    b'{' | b'[' | b'}' | b']' => {
                        if let Err(message) = brackets.take(matches!(byte, b'{' | b'['), matches!(byte, b'{' | b'}')) {
                            self.pos = at;
                            return Err(self.error(message));
                        }
                        if brackets.depth == outer {
                            self.pos = at + 1;
                            return Ok(None);
                        }
                    }
                    b'\t' | b'\n' | b'\r' => {}
                    0..0x20 => {
                        self.pos = at;
                        return Err(self.error("expected value"));
                    }
                    _ => {}
                }
            }
            at += 1;
        }
        Ok(Some(at))
    }

    /// Checks the next value without building it.
    pub fn skip(&mut self) -> Result<()> {
        let kind = self.kind()?;
        self.skip_a(kind)
    }

    /// Checks the next value, known to be of `kind`, without building it.
    fn skip_a(&mut self, kind: Kind) -> Result<()> {
        match kind {
            Kind::Object | Kind::Array => self.skip_container(),
            Kind::String => self.scan_string().map(drop),
            Kind::Number => self.number_text().map(drop),
            Kind::Bool if self.bytes()[self.pos] == b't' => self.literal("true"),
            Kind::Bool => self.literal("false"),
            Kind::Null => self.literal("null"),
        }
    }
}

fn error_at(bytes: &[u8], pos: usize, message: impl Into<String>) -> JsonError {
    let before = &bytes[..pos.min(bytes.len())];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    JsonError {
        message: message.into(),
        line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
        // Like serde_json, an error at the end points at the last byte.
        column: before.len() - line_start + usize::from(pos < bytes.len()),
    }
}

/// The bytes of one block that the container skip looks at, one bit per byte.
struct Block {
    quotes: u64,
    backslashes: u64,
    /// The brackets `{}[]`, with `Y_y` and DEL: one comparison finds all eight.
    brackets: u64,
    controls: u64,
}

impl Block {
    const LEN: usize = 64;

    /// The block at the start of `bytes`, padded with spaces past their end.
    fn load(bytes: &[u8]) -> Block {
        match bytes.first_chunk::<{ Block::LEN }>() {
            Some(chunk) => Block::of(chunk),
            None => {
                let mut chunk = [b' '; Block::LEN];
                chunk[..bytes.len()].copy_from_slice(bytes);
                Block::of(&chunk)
            }
        }
    }

    fn of(chunk: &[u8; Block::LEN]) -> Block {
        let mut block = Block { quotes: 0, backslashes: 0, brackets: 0, controls: 0 };
        for (lane, part) in chunk.as_chunks::<16>().0.iter().enumerate() {
            let v = u8x16::from(*part);
            let bits = |mask: u8x16| u64::from(mask.to_bitmask()) << (16 * lane);
            let is = |byte: u8| v.simd_eq(u8x16::splat(byte));
            // `{}[]` are 0x7B 0x7D 0x5B 0x5D: equal once bit 0x20 is set and bits 0x06 cleared.
            let folded = (v | u8x16::splat(0x20)) & u8x16::splat(0xF9);
            block.quotes |= bits(is(b'"'));
            block.backslashes |= bits(is(b'\\'));
            block.brackets |= bits(folded.simd_eq(u8x16::splat(0x79)));
            block.controls |= bits(v.simd_lt(u8x16::splat(0x20)));
        }
        block
    }
}

/// Each bit set from a quote up to the next one: the bytes inside strings, opening quotes
/// included, closing quotes not.
fn inside_strings(quotes: u64) -> u64 {
    let mut inside = quotes;
    for shift in [1, 2, 4, 8, 16, 32] {
        inside ^= inside << shift;
    }
    inside
}

/// Where a container skip stands: inside a string or not, and the open brackets.
struct Brackets {
    depth: usize,
    /// One bit per open bracket, innermost lowest: set for `{`.
    kinds: u128,
    in_string: bool,
}

impl Brackets {
    /// Takes an opening or closing bracket, `{}` or `[]`.
    fn take(&mut self, opening: bool, brace: bool) -> std::result::Result<(), &'static str> {
        if opening {
            if self.depth + 1 >= MAX_DEPTH {
                return Err("recursion limit exceeded");
            }
            self.kinds = (self.kinds << 1) | u128::from(brace);
            self.depth += 1;
        } else {
            if (self.kinds & 1 == 1) != brace {
                return Err(if brace { "expected `]`" } else { "expected `}`" });
            }
            self.kinds >>= 1;
            self.depth -= 1;
        }
        Ok(())
    }
}

/// serde_json's message without its own position, which is relative to the slice it was given.
fn strip_position(message: &str) -> &str {
    message.rsplit_once(" at line ").map_or(message, |(text, _)| text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn whole(text: &str) -> Result<Value> {
        let mut reader = Reader::new(text.as_bytes())?;
        // The view's `Whole` level builds everything, through this reader alone.
        let value = crate::object_view::read(&mut reader, crate::object_view::Level::Whole)?;
        reader.finish()?;
        Ok(value)
    }

    fn skipped(text: &str) -> Result<()> {
        let mut reader = Reader::new(text.as_bytes())?;
        reader.skip()?;
        reader.finish()
    }

    const VALID: &[&str] = &[
        "{}",
        " [ ] ",
        r#"{"a": [1, -2, 3.5, -0.0, 1e3, 2E-2, 0, true, false, null, "x"], "b": {"c": {}}}"#,
        r#""esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00""#,
        "\"caf\u{e9} \u{1F600}\"",
        "18446744073709551615",
        "-9223372036854775808",
        "\r\n\t{\"a\"\n:\n1\n}\n",
    ];

    /// Refused by the whole-value reader and by a skip.
    const BROKEN: &[&str] = &[
        "",
        "{",
        "[",
        "}",
        "tru",
        "nul",
        "\"a",
        "\"\\x\"",
        "\"\\u12g4\"",
        "\"a\u{1}\"",
        "1 2",
        "[1]]",
        "{\"a\":1}}",
        "[\"a\"",
        "[\"\\x\"]",
        "[\"a\u{1}\"]",
        "[}",
        "{]",
        "[\"]\"",
        "[[\u{2}]]",
        "{\"a\":[1}",
    ];

    /// Refused by the whole-value reader; a skip checks brackets and strings, not this.
    const UNGRAMMATICAL: &[&str] = &[
        "[1,]",
        "[1 2]",
        "{\"a\" 1}",
        "{\"a\":}",
        "{a:1}",
        "{\"a\":1,}",
        "{1:2}",
        "[01]",
        "[1.]",
        "[.5]",
        "[1e]",
        "[-]",
        "[+1]",
        "[1e999]",
        "[nul]",
        "[True]",
    ];

    #[test]
    fn builds_what_serde_json_builds() {
        for text in VALID {
            assert_eq!(whole(text).unwrap(), serde_json::from_str::<Value>(text).unwrap(), "{text}");
            skipped(text).unwrap();
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for text in BROKEN.iter().chain(UNGRAMMATICAL).chain(&["1e400", "\"\\ud800\""]) {
            assert!(serde_json::from_str::<Value>(text).is_err(), "serde_json accepts {text:?}");
            assert!(whole(text).is_err(), "built {text:?}");
        }
        for text in BROKEN {
            assert!(skipped(text).is_err(), "skipped {text:?}");
        }
        for text in UNGRAMMATICAL {
            assert!(skipped(text).is_ok(), "the skip of {text:?} checks more than it says");
        }
    }

    #[test]
    fn messages_and_positions_are_serde_json_s() {
        let same = BROKEN
            .iter()
            .chain(UNGRAMMATICAL)
            .filter(|t| !["\"\\u12g4\"", "[}", "{]", "{\"a\":[1}", "[[\u{2}]]"].contains(t));
        for text in same {
            let ours = whole(text).unwrap_err().to_string();
            assert_eq!(ours, serde_json::from_str::<Value>(text).unwrap_err().to_string(), "{text:?}");
        }
    }

    /// Values with long strings, escapes and brackets inside strings, so that strings, escapes
    /// and brackets fall on every side of the skip's 64-byte blocks.
    fn any_value() -> impl Strategy<Value = Value> {
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[ -~\\n\\t\"\\\\{}\\[\\]\u{e9}\u{1F600}]{0,90}".prop_map(Value::String),
        ];
        scalar.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z\\]\"]{0,70}", inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn a_skip_ends_where_the_value_ends_and_refuses_any_cut(value in any_value(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
            let padded = format!("{text} ,");
            let mut reader = Reader::new(padded.as_bytes()).unwrap();
            reader.skip().unwrap();
            prop_assert_eq!(reader.pos, text.len());
            if value.is_object() || value.is_array() {
                for cut in (0..text.len()).filter(|&cut| text.is_char_boundary(cut)) {
                    prop_assert!(skipped(&text[..cut]).is_err(), "{}", &text[..cut]);
                }
            }
        }
    }

    #[test]
    fn positions_and_messages_name_the_place() {
        assert_eq!(whole("{\n  \"a\": [1,]\n}").unwrap_err().to_string(), "trailing comma at line 2 column 11");
        assert_eq!(
            whole("[\"a\u{1}\"]").unwrap_err().to_string(),
            "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 4"
        );
        assert_eq!(Reader::new(b"[\"\xff\"]").err().unwrap().to_string(), "invalid UTF-8 at line 1 column 3");
        let mut reader = Reader::new(b"{\"uid\": 7}").unwrap();
        let error = reader.object(|reader, _| reader.string().map(drop)).unwrap_err();
        assert_eq!(
            error.in_field("request.uid").to_string(),
            "request.uid: invalid type: a number, expected a string at line 1 column 9"
        );
    }

    #[test]
    fn nesting_is_limited_like_serde_json() {
        for depth in [127, 128, 100_000] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(whole(&text).is_ok(), serde_json::from_str::<Value>(&text).is_ok(), "{depth}");
            assert_eq!(skipped(&text).is_ok(), depth < 128, "{depth}");
        }
    }

    #[test]
    fn skim_keeps_the_type_only() {
        for (text, empty) in [
            (r#"{"a":[1,{"b":"c"}]}"#, serde_json::json!({})),
            ("[1,2]", serde_json::json!([])),
            (r#""abc""#, serde_json::json!("")),
            ("12.5", serde_json::json!(0)),
            ("true", serde_json::json!(false)),
            ("null", Value::Null),
        ] {
            let mut reader = Reader::new(text.as_bytes()).unwrap();
            assert_eq!(reader.skim().unwrap(), empty, "{text}");
            reader.finish().unwrap();
        }
    }
}
