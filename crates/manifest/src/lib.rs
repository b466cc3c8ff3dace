//! Streams of Kubernetes manifests: YAML multi-document streams (with `---`), JSON documents
//! (one or several concatenated), read into `serde_json::Value` keeping key order, and written
//! back as YAML or JSON. Each document keeps its original text, so documents that are not
//! changed can be written back byte for byte, comments included.

#![forbid(unsafe_code)]

pub mod edit;

use std::ops::Range;

use serde_json::Value;

/// One document of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<'a> {
    /// Position in the stream, from 1, counting only non-empty documents.
    pub index: usize,
    /// First line of the document in the stream, from 1.
    pub line: usize,
    /// The document's original text, a slice of the stream's.
    pub text: &'a str,
    pub value: Value,
    pub syntax: Syntax,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Yaml,
    Json,
}

impl Document<'_> {
    /// Where the document's text lies in `stream`, the text it was read from.
    pub fn range_in(&self, stream: &str) -> Range<usize> {
        let start = (self.text.as_ptr() as usize).saturating_sub(stream.as_ptr() as usize).min(stream.len());
        start..(start + self.text.len()).min(stream.len())
    }
}

/// A document that is not valid YAML or JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("document {index} (line {line}): {message}")]
pub struct ParseError {
    pub index: usize,
    pub line: usize,
    pub message: String,
}

/// Splits and parses a whole stream. Documents that hold nothing (only comments or blank lines)
/// are dropped.
pub fn parse_stream(text: &str) -> Result<Vec<Document<'_>>, ParseError> {
    documents(text).collect()
}

/// The documents of a stream, each parsed only when it is reached, so a large stream never has
/// to be held parsed in memory at once.
pub fn documents(text: &str) -> Box<dyn Iterator<Item = Result<Document<'_>, ParseError>> + '_> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(documents) = parse_json_stream(text) {
        return Box::new(documents.into_iter().map(Ok));
    }
    let mut index = 0;
    Box::new(split_yaml(text).filter_map(move |(line, chunk)| match read_yaml(chunk) {
        Err(e) => Some(Err(ParseError { index: index + 1, line, message: relocate(&e.to_string(), line) })),
        Ok(value) => {
            let value = value?;
            index += 1;
            Some(Ok(Document { index, line, text: chunk, value, syntax: Syntax::Yaml }))
        }
    }))
}

/// One YAML document as Kubernetes reads it (`None` if it holds nothing).
fn read_yaml(text: &str) -> Result<Option<Value>, serde_saphyr::Error> {
    let options = serde_saphyr::options! { legacy_octal_numbers: true };
    let values: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)?;
    Ok(values.into_iter().find(|v| !v.is_null()))
}

/// JSON input (one value or several concatenated). `None` when the text is not JSON, so the YAML
/// reader (which also reads JSON, and reports errors with lines) takes over.
fn parse_json_stream(text: &str) -> Option<Vec<Document<'_>>> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with(['{', '[']) {
        return None;
    }
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut start = 0;
    while let Some(next) = stream.next() {
        let value = next.ok()?;
        let end = stream.byte_offset();
        let chunk = text[start..end].trim();
        let first_char = start + (text[start..end].len() - text[start..end].trim_start().len());
        let line = text[..first_char].matches('\n').count() + 1;
        documents.push(Document { index: documents.len() + 1, line, text: chunk, value, syntax: Syntax::Json });
        start = end;
    }
    Some(documents)
}

/// Splits a YAML stream at document markers, yielding each non-blank chunk with its first line.
fn split_yaml(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text;
    let mut line = 1;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (start_line, chunk, after, after_line) = next_chunk(rest, line);
            rest = after;
            line = after_line;
            if !chunk.trim().is_empty() {
                return Some((start_line, chunk));
            }
        }
        None
    })
}

/// The text up to the next document marker, the text after it, and their first lines. Content on
/// a start marker's line (`--- {a: 1}`) belongs to the new document.
fn next_chunk(text: &str, first_line: usize) -> (usize, &str, &str, usize) {
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "..." || bare.starts_with("... ");
        if is_start || is_end {
            let marker_line = first_line + number;
            let chunk = &text[..offset];
            if is_start && bare.len() > 3 {
                return (first_line, chunk, &text[offset + 4..], marker_line);
            }
            return (first_line, chunk, &text[offset + line.len()..], marker_line + 1);
        }
        offset += line.len();
    }
    (first_line, text, "", first_line)
}

/// Rewrites `line N` in a parser message to the stream's line numbering.
fn relocate(message: &str, first_line: usize) -> String {
    let first = message.lines().next().unwrap_or(message);
    let Some(rest) = first.strip_prefix("error: line ") else { return first.to_string() };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<usize>() {
        Ok(n) => format!("line {}{}", n + first_line - 1, &rest[digits.len()..]),
        Err(_) => first.to_string(),
    }
}

/// A value that cannot be written as YAML.
#[derive(Debug, thiserror::Error)]
#[error("cannot write YAML: {0}")]
pub struct EmitError(String);

/// One document as YAML: keys in their order, list items not indented under their key,
/// strings quoted wherever a YAML 1.1 reader would take them for something else.
pub fn to_yaml(value: &Value) -> Result<String, EmitError> {
    let mut text = serde_saphyr::to_string(value).map_err(|e| EmitError(e.to_string()))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// One document as compact JSON.
pub fn to_json(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value always serializes")
}

/// Output formats of `inject` and `uninject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// Writes one document followed by its separator (`---` for YAML, a newline for JSON).
    pub fn write_document(self, value: &Value, out: &mut String) -> Result<(), EmitError> {
        match self {
            Format::Yaml => {
                out.push_str(&to_yaml(value)?);
                out.push_str("---\n");
            }
            Format::Json => {
                out.push_str(&to_json(value));
                out.push('\n');
            }
        }
        Ok(())
    }

    /// Writes a document that was not changed: its original text for YAML.
    pub fn write_unchanged(self, document: &Document<'_>, out: &mut String) -> Result<(), EmitError> {
        match self {
            Format::Yaml => {
                out.push_str(document.text);
                if !document.text.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str("---\n");
                Ok(())
            }
            Format::Json => self.write_document(&document.value, out),
        }
    }
}

/// A stream written back with some documents changed: each changed document is edited in place
/// ([`edit`]), or rewritten whole (in `format`, the stream's own) where that is not possible;
/// everything else, including the text between documents, stays as it was.
pub struct InPlace<'s> {
    stream: &'s str,
    format: Format,
    out: String,
    copied_to: usize,
}

impl<'s> InPlace<'s> {
    pub fn new(stream: &'s str, format: Format) -> InPlace<'s> {
        InPlace { stream, format, out: String::with_capacity(stream.len()), copied_to: 0 }
    }

    /// Replaces `document` (read from this stream) by `value`. Returns why it had to be
    /// rewritten whole, if it had to.
    pub fn change(&mut self, document: &Document<'_>, value: &Value) -> Result<Option<edit::EditError>, EmitError> {
        let range = document.range_in(self.stream);
        let read = |text: &str| read_yaml(text).ok().flatten();
        let (text, rewritten) = match edit::edit_document(document.text, &document.value, value, read) {
            Ok(text) => (text, None),
            Err(why) if self.format == Format::Json => (to_json(value), Some(why)),
            Err(why) => {
                let mut text = to_yaml(value)?;
                // After `--- ` on the marker's line, a block document starts on its own line.
                if range.start > 0 && !self.stream[..range.start].ends_with('\n') {
                    text.insert(0, '\n');
                }
                (text, Some(why))
            }
        };
        self.out.push_str(&self.stream[self.copied_to..range.start]);
        self.out.push_str(&text);
        self.copied_to = range.end;
        Ok(rewritten)
    }

    pub fn finish(mut self) -> String {
        self.out.push_str(&self.stream[self.copied_to..]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_yaml_streams_and_numbers_documents() {
        let text =
            "# leading comment\n---\nkind: A\n---\n# only a comment\n---\nkind: B\nlist:\n- 1\n...\n--- {kind: C}\n";
        let docs = parse_stream(text).unwrap();
        let kinds: Vec<&Value> = docs.iter().map(|d| &d.value["kind"]).collect();
        assert_eq!(kinds, [&json!("A"), &json!("B"), &json!("C")]);
        assert_eq!(docs.iter().map(|d| d.index).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(docs[0].line, 3);
        assert_eq!(docs[1].line, 7);
        assert_eq!(docs[2].line, 11);
    }

    #[test]
    fn reads_kubernetes_yaml_scalars_like_kubernetes() {
        let docs = parse_stream("a: 0644\nb: on\nc: '0644'\nd: \"1.0\"\n").unwrap();
        assert_eq!(docs[0].value, json!({"a": 420, "b": true, "c": "0644", "d": "1.0"}));
    }

    #[test]
    fn reports_the_line_in_the_stream() {
        let err = parse_stream("kind: A\n---\nkind: B\nmetadata:\n  name: x\n   bad: indent\n").unwrap_err();
        assert_eq!(err.index, 2);
        assert!(err.to_string().starts_with("document 2 (line 3): line 6"), "{err}");
    }

    #[test]
    fn reads_json_documents() {
        let docs = parse_stream("{\"kind\": \"A\"}\n{\"kind\": \"B\"}\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["kind"], "B");
        assert_eq!(docs[1].line, 2);
        let single = parse_stream("  {\"kind\": \"Pod\", \"metadata\": {\"name\": \"p\"}}").unwrap();
        assert_eq!(single[0].value["metadata"]["name"], "p");
    }

    #[test]
    fn writes_yaml_that_reads_back_the_same() {
        let value =
            json!({"z": "true", "a": "0644", "n": 1, "s": "line\nnext\n", "e": {}, "l": [{"k": "on"}], "y": "y"});
        let text = to_yaml(&value).unwrap();
        assert!(text.starts_with("z:"), "key order kept: {text}");
        assert_eq!(parse_stream(&text).unwrap()[0].value, value);
    }

    #[test]
    fn unchanged_documents_keep_their_text() {
        let docs = parse_stream("# keep me\nkind: ConfigMap\n").unwrap();
        let mut out = String::new();
        Format::Yaml.write_unchanged(&docs[0], &mut out).unwrap();
        assert_eq!(out, "# keep me\nkind: ConfigMap\n---\n");
    }
}
