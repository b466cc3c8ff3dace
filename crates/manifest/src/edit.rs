//! Format-preserving edits of one YAML document: given the value it was read as and the value it
//! must become, change only the text of what differs. Comments, blank lines, quoting, flow style,
//! key order, anchors and aliases of everything else stay byte for byte; added keys and list items
//! follow the document's own indentation and line endings.
//!
//! The edits come from a span tree built from the parser's events, walked beside the two values.
//! Where a difference cannot be edited locally (a key that does not start its line, a merge key,
//! an unusual layout) the smallest enclosing node is rewritten instead. Aliases are never edited
//! through: an alias whose value changes is replaced by an expanded copy, and when an anchored
//! node changes, the aliases that point to it are expanded to the value they had, so nothing
//! another user of the anchor sees changes. The result is read back (as a skeleton, see
//! [`edit_document`]) and compared with the wanted value, so an edit that would change anything
//! else is refused rather than written.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use granit_parser::{Event, Parser, ScalarStyle, Span, StructureStyle};
use serde_json::{Map, Value};

/// Why a document could not be edited in place (the caller rewrites it whole instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot edit in place: {0}")]
pub struct EditError(String);

fn unsupported<T>(why: impl Into<String>) -> Result<T, EditError> {
    Err(EditError(why.into()))
}

#[derive(Debug)]
struct Node {
    /// Where the node's text starts and where its content ends (trailing blank lines and the
    /// next line's indentation that the parser counts into block scalars are left out).
    range: Range<usize>,
    anchor: usize,
    shape: Shape,
}

impl Entry {
    /// Where the entry's text ends: an empty value (`key:`) has an empty span that may sit on a
    /// later line, so the key ends it.
    fn end(&self) -> usize {
        if self.value.range.is_empty() { self.key_range.end } else { self.value.range.end }
    }

    fn colon(&self, text: &str) -> Result<usize, EditError> {
        let after = self.key_range.end;
        text[after..].find(':').map(|c| after + c).map_or_else(|| unsupported("a key without a colon"), Ok)
    }
}

#[derive(Debug)]
enum Shape {
    Map { flow: bool, entries: Vec<Entry> },
    Seq { flow: bool, items: Vec<Node> },
    Scalar,
    Alias(usize),
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_range: Range<usize>,
    /// The key's column, as the parser reports it for block mappings.
    column: Option<usize>,
    value: Node,
}

fn byte_range(span: &Span) -> Result<Range<usize>, EditError> {
    span.byte_range().map_or_else(|| unsupported("the parser gave no byte offsets"), Ok)
}

/// Builds the span tree of the single document in `text`.
fn tree(text: &str) -> Result<Node, EditError> {
    let mut events = Parser::new_from_str(text).filter(|e| !matches!(e, Ok((Event::Comment(..), _))));
    let mut next = || -> Result<(Event<'_>, Span), EditError> {
        match events.next() {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => unsupported(e.to_string()),
            None => unsupported("the document ended early"),
        }
    };
    let mut root = None;
    loop {
        let (event, span) = next()?;
        match event {
            Event::StreamStart | Event::DocumentStart(..) => {}
            Event::DocumentEnd if root.is_some() => break,
            Event::StreamEnd | Event::DocumentEnd => return unsupported("no document"),
            _ if root.is_some() => return unsupported("more than one document"),
            event => root = Some(node(text, event, span, &mut next)?),
        }
    }
    root.map_or_else(|| unsupported("no document"), Ok)
}

fn node<'t>(
    text: &'t str,
    event: Event<'t>,
    span: Span,
    next: &mut impl FnMut() -> Result<(Event<'t>, Span), EditError>,
) -> Result<Node, EditError> {
    let start = byte_range(&span)?;
    let node = match event {
        Event::Scalar(_, style, anchor, _) => {
            let mut end = start.end;
            if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                end = start.start + text[start.clone()].trim_end().len();
            }
            Node { range: start.start..end, anchor, shape: Shape::Scalar }
        }
        Event::Alias(id) => Node { range: start, anchor: 0, shape: Shape::Alias(id) },
        Event::SequenceStart(style, anchor, _) => {
            let mut items = Vec::new();
            let end = loop {
                let (event, span) = next()?;
                if let Event::SequenceEnd = event {
                    break byte_range(&span)?.end;
                }
                items.push(node(text, event, span, next)?);
            };
            let flow = style == StructureStyle::Flow;
            let end = if flow { end } else { items.last().map_or(start.end, |i| i.range.end) };
            Node { range: start.start..end, anchor, shape: Shape::Seq { flow, items } }
        }
        Event::MappingStart(style, anchor, _) => {
            let mut entries = Vec::new();
            let end = loop {
                let (event, span) = next()?;
                if let Event::MappingEnd = event {
                    break byte_range(&span)?.end;
                }
                let column = span.indent;
                let Event::Scalar(key, ..) = &event else { return unsupported("a key that is not a scalar") };
                let key = key.to_string();
                let key_range = byte_range(&span)?;
                let (event, span) = next()?;
                let value = node(text, event, span, next)?;
                entries.push(Entry { key, key_range, column, value });
            };
            let flow = style == StructureStyle::Flow;
            let end = if flow { end } else { entries.last().map_or(start.end, Entry::end) };
            Node { range: start.start..end, anchor, shape: Shape::Map { flow, entries } }
        }
        other => return unsupported(format!("unexpected {other:?}")),
    };
    Ok(node)
}

/// How the document lays out what we add: indentation, list indentation, line endings.
struct Style {
    step: usize,
    /// Columns between a key and the dashes of its block list (0: `key:\n- a`, 2: `key:\n  - a`).
    list_offset: usize,
    newline: &'static str,
}

impl Style {
    fn of(text: &str, root: &Node) -> Style {
        let (mut step, mut list_offset) = (None, None);
        observe_style(text, root, &mut step, &mut list_offset);
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        Style { step: step.unwrap_or(2), list_offset: list_offset.unwrap_or(0), newline }
    }
}

fn observe_style(text: &str, node: &Node, step: &mut Option<usize>, list_offset: &mut Option<usize>) {
    match &node.shape {
        Shape::Map { entries, .. } => {
            for entry in entries {
                let parent = entry.column.unwrap_or_else(|| column(text, entry.key_range.start));
                match &entry.value.shape {
                    Shape::Map { entries: children, .. } if step.is_none() => {
                        let on_its_own_line =
                            |child: &Entry| text[entry.key_range.end..child.key_range.start].contains('\n');
                        if let Some(child) = children.first().filter(|c| on_its_own_line(c)) {
                            let child = child.column.unwrap_or_else(|| column(text, child.key_range.start));
                            *step = child.checked_sub(parent).filter(|s| *s > 0);
                        }
                    }
                    Shape::Seq { flow: false, items } if list_offset.is_none() => {
                        if let Some(dash) = items.first().and_then(|i| dash(text, i.range.start)) {
                            *list_offset = column(text, dash).checked_sub(parent);
                        }
                    }
                    _ => {}
                }
                observe_style(text, &entry.value, step, list_offset);
            }
        }
        Shape::Seq { items, .. } => items.iter().for_each(|i| observe_style(text, i, step, list_offset)),
        _ => {}
    }
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |n| n + 1)
}

/// The position after the line break ending the line that holds `at - 1` (the end of the text
/// if that line has none).
fn line_end(text: &str, at: usize) -> usize {
    // Bytes, not chars: `at - 1` may fall inside a multi-byte character.
    let from = at.saturating_sub(1);
    text.as_bytes()[from..].iter().position(|b| *b == b'\n').map_or(text.len(), |n| from + n + 1)
}

fn column(text: &str, at: usize) -> usize {
    text[line_start(text, at)..at].chars().count()
}

/// The `-` introducing the block list item that starts at `item`, if only blanks precede it on
/// its line (else the item cannot be removed or placed by lines).
fn dash(text: &str, item: usize) -> Option<usize> {
    let before = text[..item].trim_end_matches([' ', '\t', '\r', '\n']);
    let dash = before.len().checked_sub(1).filter(|d| before.as_bytes()[*d] == b'-')?;
    text[line_start(text, dash)..dash].chars().all(|c| c == ' ').then_some(dash)
}

/// Where a node sits, which decides how a replacement is written.
#[derive(Clone, Copy)]
enum Place {
    Root,
    /// The value of a block mapping key at `column`, after the colon at `colon`.
    Value {
        column: usize,
        colon: usize,
    },
    /// A block list item whose dash is at `column`.
    Item {
        column: usize,
    },
    /// Inside a flow collection (or JSON); `column` if the element starts its own line, so a
    /// collection written there is spread over lines as its neighbours are.
    Flow {
        column: Option<usize>,
    },
}

struct Edit {
    range: Range<usize>,
    text: String,
    /// The text in the document's skeleton, where it differs: nested values the block writer
    /// wrote are holes there.
    skeleton: Option<String>,
}

/// The key of the one-entry mapping that stands, in a document's skeleton, for a nested value
/// the writer inserted; its value numbers the hole. A control character, which manifests do not
/// hold in keys.
const HOLE: &str = "\u{1}hole";

/// The values behind the holes of a skeleton, by number. `None` while the real text is written.
type Holes<'h, 'v> = Option<&'h mut Vec<&'v Value>>;

fn is_collection(value: &Value) -> bool {
    matches!(value, Value::Object(m) if !m.is_empty()) || matches!(value, Value::Array(a) if !a.is_empty())
}

fn hole<'v>(value: &'v Value, holes: &mut Vec<&'v Value>, out: &mut String) {
    holes.push(value);
    out.push_str(&json(HOLE));
    out.push_str(": ");
    out.push_str(&(holes.len() - 1).to_string());
}

fn pad(out: &mut String, columns: usize) {
    const SPACES: &str = "                                ";
    let mut left = columns;
    while left > 0 {
        let run = left.min(SPACES.len());
        out.push_str(&SPACES[..run]);
        left -= run;
    }
}

impl Style {
    /// `value` (a mapping or list) as block YAML: its first line starts at `first` columns, the
    /// others at `indent`, each ends with the document's line break. With holes, the collections
    /// nested in it are written as holes.
    fn block<'v>(&self, value: &'v Value, indent: usize, first: usize, out: &mut String, mut holes: Holes<'_, 'v>) {
        match value {
            Value::Object(map) => {
                for (n, (key, value)) in map.iter().enumerate() {
                    self.entry(key, value, indent, if n == 0 { first } else { indent }, out, holes.as_deref_mut());
                }
            }
            Value::Array(items) => {
                for (n, item) in items.iter().enumerate() {
                    self.item(item, indent, if n == 0 { first } else { indent }, out, holes.as_deref_mut());
                }
            }
            scalar_value => {
                pad(out, first);
                scalar(scalar_value, out);
                out.push_str(self.newline);
            }
        }
    }

    fn entry<'v>(
        &self,
        key: &str,
        value: &'v Value,
        indent: usize,
        first: usize,
        out: &mut String,
        holes: Holes<'_, 'v>,
    ) {
        pad(out, first);
        string_scalar(key, out);
        out.push(':');
        if !is_collection(value) {
            out.push(' ');
            inline(value, out, None);
            out.push_str(self.newline);
            return;
        }
        out.push_str(self.newline);
        match holes {
            Some(holes) => {
                pad(out, indent + self.step);
                hole(value, holes, out);
                out.push_str(self.newline);
            }
            None => {
                let nested = indent + if value.is_array() { self.list_offset } else { self.step };
                self.block(value, nested, nested, out, None);
            }
        }
    }

    fn item<'v>(&self, item: &'v Value, indent: usize, first: usize, out: &mut String, holes: Holes<'_, 'v>) {
        pad(out, first);
        out.push_str("- ");
        match holes {
            Some(holes) if is_collection(item) => {
                hole(item, holes, out);
                out.push_str(self.newline);
            }
            None if is_collection(item) => self.block(item, indent + 2, 0, out, None),
            _ => {
                inline(item, out, None);
                out.push_str(self.newline);
            }
        }
    }

    /// A value inside a flow collection, as JSON: spread over lines at `column` when its
    /// neighbours are, else on one line.
    fn flow_value<'v>(&self, value: &'v Value, column: Option<usize>, out: &mut String, holes: Holes<'_, 'v>) {
        if !is_collection(value) {
            return out.push_str(&json(value));
        }
        let Some(column) = column.filter(|_| holes.is_none()) else { return inline(value, out, holes) };
        let indent = " ".repeat(self.step);
        let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
        let mut bytes = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        if serde::Serialize::serialize(value, &mut serializer).is_err() {
            return out.push_str(&json(value));
        }
        let pretty = String::from_utf8(bytes).unwrap_or_else(|_| json(value));
        let line_break = format!("{}{}", self.newline, " ".repeat(column));
        out.push_str(&pretty.replace('\n', &line_break));
    }
}

struct Editor<'t, 'v> {
    text: &'t str,
    style: Style,
    edits: Vec<Edit>,
    holes: Vec<&'v Value>,
    /// Anchors of the nodes being walked, outermost first.
    path_anchors: Vec<usize>,
    /// Anchors whose node (or something inside it) was edited, in the order found (repeats
    /// allowed), so abandoning a local change is a truncation.
    changed_anchors: Vec<usize>,
}

impl<'v> Editor<'_, 'v> {
    fn note_change(&mut self) {
        self.changed_anchors.extend(self.path_anchors.iter().copied().filter(|a| *a != 0));
    }

    fn push(&mut self, range: Range<usize>, text: String) {
        self.note_change();
        self.edits.push(Edit { range, text, skeleton: None });
    }

    /// Puts what `write` writes at `range`, and its skeleton (written with holes) in the
    /// document's skeleton.
    fn insert(&mut self, range: Range<usize>, write: impl Fn(&Style, &mut String, Holes<'_, 'v>)) {
        let mut text = String::new();
        write(&self.style, &mut text, None);
        let mut skeleton = String::new();
        write(&self.style, &mut skeleton, Some(&mut self.holes));
        self.note_change();
        self.edits.push(Edit { range, text, skeleton: Some(skeleton) });
    }

    /// Edits `node` (read as `old`) so that it reads as `new`, or rewrites it where a local edit
    /// is not possible.
    fn change(&mut self, node: &Node, place: Place, old: &Value, new: &'v Value) -> Result<(), EditError> {
        if old == new {
            return Ok(());
        }
        self.path_anchors.push(node.anchor);
        let mark = self.edits.len();
        let changed = self.changed_anchors.len();
        let local = self.change_inside(node, old, new);
        if local.is_err() {
            self.edits.truncate(mark);
            self.changed_anchors.truncate(changed);
            self.replace(node, place, new)?;
        }
        self.path_anchors.pop();
        Ok(())
    }

    fn change_inside(&mut self, node: &Node, old: &Value, new: &'v Value) -> Result<(), EditError> {
        match (&node.shape, old, new) {
            (Shape::Map { flow: false, entries }, Value::Object(old), Value::Object(new)) if !new.is_empty() => {
                self.change_map(entries, old, new)
            }
            (Shape::Seq { flow: false, items }, Value::Array(old), Value::Array(new)) if !new.is_empty() => {
                self.change_list(items, old, new)
            }
            (Shape::Map { flow: true, entries }, Value::Object(old), Value::Object(new)) if !entries.is_empty() => {
                self.change_flow_map(node, entries, old, new)
            }
            (Shape::Seq { flow: true, items }, Value::Array(old), Value::Array(new)) if !items.is_empty() => {
                self.change_flow_list(node, items, old, new)
            }
            _ => unsupported("rewritten whole"),
        }
    }

    fn change_map(
        &mut self,
        entries: &[Entry],
        old: &Map<String, Value>,
        new: &'v Map<String, Value>,
    ) -> Result<(), EditError> {
        let text = self.text;
        for (entry, old_value) in entries.iter().zip(old_values(entries, old)?) {
            let key_start = entry.key_range.start;
            let colon = entry.colon(text)?;
            let column = column(text, key_start);
            match new.get(&entry.key) {
                Some(new_value) => self.change(&entry.value, Place::Value { column, colon }, old_value, new_value)?,
                None => {
                    if !text[line_start(text, key_start)..key_start].chars().all(|c| c == ' ') {
                        return unsupported("a removed key that does not start its line");
                    }
                    let end = line_end(text, entry.end());
                    self.push(line_start(text, key_start)..end, String::new());
                }
            }
        }
        let added: Vec<(&String, &Value)> = new.iter().filter(|(k, _)| !old.contains_key(*k)).collect();
        if let (Some(last), false) = (entries.last(), added.is_empty()) {
            let column = column(text, entries[0].key_range.start);
            let at = line_end(text, last.end());
            let newline_first = !text[..at].ends_with('\n');
            self.insert(at..at, |style, out, mut holes| {
                if newline_first {
                    out.push_str(style.newline);
                }
                for (key, value) in &added {
                    style.entry(key, value, column, column, out, holes.as_deref_mut());
                }
            });
        }
        Ok(())
    }

    fn change_list(&mut self, items: &[Node], old: &[Value], new: &'v [Value]) -> Result<(), EditError> {
        let text = self.text;
        let dashes: Vec<usize> = items
            .iter()
            .map(|i| dash(text, i.range.start))
            .collect::<Option<_>>()
            .map_or_else(|| unsupported("a list item that does not start its line"), Ok)?;
        let column = column(text, dashes[0]);
        let mut next_old = 0;
        let mut pending: Vec<&Value> = Vec::new();
        for wanted in new {
            let found = (next_old..old.len()).find(|k| same_item(&old[*k], wanted));
            let Some(found) = found else {
                pending.push(wanted);
                continue;
            };
            for removed in next_old..found {
                self.push(line_start(text, dashes[removed])..line_end(text, items[removed].range.end), String::new());
            }
            if !pending.is_empty() {
                let at = line_start(text, dashes[found]);
                self.insert_items(at, &std::mem::take(&mut pending), column, false);
            }
            self.change(&items[found], Place::Item { column }, &old[found], wanted)?;
            next_old = found + 1;
        }
        for removed in next_old..old.len() {
            self.push(line_start(text, dashes[removed])..line_end(text, items[removed].range.end), String::new());
        }
        if !pending.is_empty() {
            let at = line_end(text, items.last().map_or(0, |i| i.range.end));
            self.insert_items(at, &pending, column, !text[..at].ends_with('\n'));
        }
        Ok(())
    }

    fn insert_items(&mut self, at: usize, values: &[&'v Value], column: usize, newline_first: bool) {
        self.insert(at..at, |style, out, mut holes| {
            if newline_first {
                out.push_str(style.newline);
            }
            for value in values {
                style.item(value, column, column, out, holes.as_deref_mut());
            }
        });
    }

    fn change_flow_map(
        &mut self,
        node: &Node,
        entries: &[Entry],
        old: &Map<String, Value>,
        new: &'v Map<String, Value>,
    ) -> Result<(), EditError> {
        let text = self.text;
        let spans: Vec<Range<usize>> = entries.iter().map(|e| e.key_range.start..e.end()).collect();
        let mut removed = Vec::with_capacity(entries.len());
        for (entry, old_value) in entries.iter().zip(old_values(entries, old)?) {
            removed.push(!new.contains_key(&entry.key));
            if let Some(new_value) = new.get(&entry.key) {
                let place = Place::Flow { column: own_line_column(text, entry.key_range.start) };
                self.change(&entry.value, place, old_value, new_value)?;
            }
        }
        self.remove_flow(&spans, &removed)?;
        let added: Vec<(&String, &Value)> = new.iter().filter(|(k, _)| !old.contains_key(*k)).collect();
        if let Some(last) = entries.last().filter(|_| !added.is_empty()) {
            let separator = self.flow_separator(node, &spans);
            let column = own_line_column(text, last.key_range.start);
            let colon = last.colon(text)?;
            let between = text.get(colon..last.value.range.start).filter(|b| !b.is_empty()).unwrap_or(": ");
            self.insert(last.end()..last.end(), |style, out, mut holes| {
                for (key, value) in &added {
                    out.push(',');
                    out.push_str(&separator);
                    out.push_str(&json(*key));
                    out.push_str(between);
                    style.flow_value(value, column, out, holes.as_deref_mut());
                }
            });
        }
        Ok(())
    }

    fn change_flow_list(
        &mut self,
        node: &Node,
        items: &[Node],
        old: &[Value],
        new: &'v [Value],
    ) -> Result<(), EditError> {
        let text = self.text;
        let spans: Vec<Range<usize>> = items.iter().map(|i| i.range.clone()).collect();
        let separator = self.flow_separator(node, &spans);
        let column = own_line_column(text, spans[0].start);
        let mut removed = vec![false; items.len()];
        let mut next_old = 0;
        let mut pending: Vec<&Value> = Vec::new();
        for wanted in new {
            let Some(found) = (next_old..old.len()).find(|k| same_item(&old[*k], wanted)) else {
                pending.push(wanted);
                continue;
            };
            removed[next_old..found].iter_mut().for_each(|r| *r = true);
            if !pending.is_empty() {
                let values = std::mem::take(&mut pending);
                let at = spans[found].start;
                self.insert(at..at, |style, out, mut holes| {
                    for value in &values {
                        style.flow_value(value, column, out, holes.as_deref_mut());
                        out.push(',');
                        out.push_str(&separator);
                    }
                });
            }
            self.change(&items[found], Place::Flow { column }, &old[found], wanted)?;
            next_old = found + 1;
        }
        removed[next_old..].iter_mut().for_each(|r| *r = true);
        if removed.iter().all(|r| *r) {
            return unsupported("every item removed");
        }
        self.remove_flow(&spans, &removed)?;
        if !pending.is_empty() {
            let end = spans[spans.len() - 1].end;
            self.insert(end..end, |style, out, mut holes| {
                for value in &pending {
                    out.push(',');
                    out.push_str(&separator);
                    style.flow_value(value, column, out, holes.as_deref_mut());
                }
            });
        }
        Ok(())
    }

    /// Removes runs of elements of a flow collection with their commas: after a kept element,
    /// from its end; at the start, up to the next kept element.
    fn remove_flow(&mut self, spans: &[Range<usize>], removed: &[bool]) -> Result<(), EditError> {
        let mut index = 0;
        while index < spans.len() {
            if !removed[index] {
                index += 1;
                continue;
            }
            let run_end = (index..spans.len()).find(|i| !removed[*i]).unwrap_or(spans.len());
            match (index.checked_sub(1), spans.get(run_end)) {
                (Some(kept), _) => self.push(spans[kept].end..spans[run_end - 1].end, String::new()),
                (None, Some(next)) => self.push(spans[0].start..next.start, String::new()),
                (None, None) => return unsupported("every element removed"),
            }
            index = run_end;
        }
        Ok(())
    }

    /// What follows a comma between elements of this flow collection: its neighbours' spacing.
    fn flow_separator(&self, node: &Node, spans: &[Range<usize>]) -> String {
        let text = self.text;
        let between = match spans {
            [.., before, last] => text.get(before.end..last.start),
            [first] => text.get(node.range.start + 1..first.start),
            [] => None,
        };
        let between = between.unwrap_or_default();
        let after_comma = between.rsplit_once(',').map_or(between, |(_, after)| after);
        if after_comma.is_empty() && !between.contains(',') { " ".into() } else { after_comma.into() }
    }

    /// Rewrites `node` as `new`, in the notation its place calls for.
    fn replace(&mut self, node: &Node, place: Place, new: &'v Value) -> Result<(), EditError> {
        let flow = matches!(node.shape, Shape::Map { flow: true, .. } | Shape::Seq { flow: true, .. });
        let on_one_line = flow || !is_collection(new);
        // A block ends with a line break that the node's own text does not include.
        let trimmed = |out: &mut String| out.truncate(out.trim_end_matches(['\n', '\r']).len());
        match place {
            Place::Flow { column } => {
                self.insert(node.range.clone(), |style, out, holes| style.flow_value(new, column, out, holes));
            }
            Place::Value { column, colon } => {
                // An empty value (`key:`) has an empty span that may sit on a later line.
                let end = if node.range.is_empty() { colon + 1 } else { node.range.end };
                self.insert(colon + 1..end, |style, out, holes| {
                    if on_one_line {
                        out.push(' ');
                        inline(new, out, holes);
                    } else {
                        let indent = column + if new.is_array() { style.list_offset } else { style.step };
                        out.push_str(style.newline);
                        style.block(new, indent, indent, out, holes);
                        trimmed(out);
                    }
                });
            }
            Place::Item { .. } | Place::Root => {
                // After a list item's `- `, or at the document's start.
                let indent = if let Place::Item { column } = place { column + 2 } else { 0 };
                self.insert(node.range.clone(), |style, out, holes| {
                    if on_one_line {
                        inline(new, out, holes);
                    } else {
                        style.block(new, indent, 0, out, holes);
                        trimmed(out);
                    }
                });
            }
        }
        Ok(())
    }
}

/// What each entry of a mapping was read as. Merge keys and repeated keys make entries and values
/// disagree, so such mappings are not edited entry by entry.
fn old_values<'v>(entries: &[Entry], old: &'v Map<String, Value>) -> Result<Vec<&'v Value>, EditError> {
    let mut seen = BTreeSet::new();
    entries
        .iter()
        .map(|entry| {
            if entry.key == "<<" || !seen.insert(entry.key.as_str()) {
                return unsupported("a merge key or a repeated key");
            }
            old.get(&entry.key).map_or_else(|| unsupported("a key the reader did not keep"), Ok)
        })
        .collect()
}

/// Items are the same list entry when they are equal or name the same thing (containers,
/// volumes, env vars), so a changed container is edited rather than replaced.
fn same_item(old: &Value, new: &Value) -> bool {
    match (old.get("name"), new.get("name")) {
        (Some(a), Some(b)) => a == b,
        _ => old == new,
    }
}

fn json(value: &(impl serde::Serialize + ?Sized)) -> String {
    serde_json::to_string(value).expect("JSON values and strings always serialize")
}

/// The element's column, if it is the first thing on its line.
fn own_line_column(text: &str, at: usize) -> Option<usize> {
    text[line_start(text, at)..at].chars().all(|c| c == ' ' || c == '\t').then(|| column(text, at))
}

/// A value on one line: scalars as YAML, collections in flow notation (JSON, which YAML reads),
/// or as a hole.
fn inline<'v>(value: &'v Value, out: &mut String, holes: Holes<'_, 'v>) {
    match (value, holes) {
        (Value::Object(_) | Value::Array(_), Some(holes)) if is_collection(value) => {
            out.push('{');
            hole(value, holes, out);
            out.push('}');
        }
        (Value::Object(_) | Value::Array(_), _) => out.push_str(&json(value)),
        (scalar_value, _) => scalar(scalar_value, out),
    }
}

/// Words a YAML reader may take for something other than a string (YAML 1.1's booleans, null,
/// the names of infinity and not-a-number), compared ignoring case.
const NOT_PLAIN_WORDS: [&str; 13] =
    ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "inf", "infinity", "nan", "nil"];

/// Whether `text` can be written as a plain scalar in block context and read back as that same
/// string: it starts with a letter, `_`, `$` or `/` (so no indicator, number or date), holds no
/// space, `#` or quote, has no `:` at its end, and is not a word some reader resolves.
fn plain_safe(text: &str) -> bool {
    text.as_bytes().first().is_some_and(|b| b.is_ascii_alphabetic() || b"_$/".contains(b))
        && text.bytes().all(|b| PLAIN_SAFE_BYTES[usize::from(b)])
        && !text.ends_with(':')
        && (text.len() > 8 || !NOT_PLAIN_WORDS.iter().any(|word| text.eq_ignore_ascii_case(word)))
}

/// The bytes [`plain_safe`] allows anywhere: ASCII letters and digits, and `-._/:,=@+$()`. A table,
/// since every string the block writer inserts is checked byte by byte.
const PLAIN_SAFE_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'/' | b':' | b',' | b'=' | b'@' | b'+' | b'$' | b'(' | b')');
        b += 1;
    }
    table
};

/// A scalar as YAML on one line. Most strings in manifests are plain-safe and written as they
/// are; others are quoted by our YAML writer (JSON's double quotes where it would need more than
/// one line).
fn scalar(value: &Value, out: &mut String) {
    match value {
        Value::String(text) => string_scalar(text, out),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Null => out.push_str("null"),
        Value::Number(n) if n.is_i64() || n.is_u64() => out.push_str(&n.to_string()),
        number => written_scalar(number, out),
    }
}

/// A string (a value or a key) as a scalar.
fn string_scalar(text: &str, out: &mut String) {
    if plain_safe(text) {
        out.push_str(text);
    } else if text.contains('\n') {
        out.push_str(&json(text));
    } else {
        written_scalar(&Value::String(text.into()), out);
    }
}

/// A scalar as our YAML writer quotes it.
fn written_scalar(value: &Value, out: &mut String) {
    if let Value::String(text) = value {
        return WRITTEN_STRINGS.with_borrow_mut(|written| {
            if written.len() >= WRITTEN_STRINGS_HELD {
                written.clear();
            }
            match written.get(text.as_str()) {
                Some(quoted) => out.push_str(quoted),
                None => {
                    let quoted = quoted_scalar(value);
                    out.push_str(&quoted);
                    written.insert(text.clone(), quoted);
                }
            }
        });
    }
    out.push_str(&quoted_scalar(value));
}

fn quoted_scalar(value: &Value) -> String {
    let written = crate::to_yaml(value).unwrap_or_default();
    let written = written.strip_suffix('\n').unwrap_or(&written);
    if written.is_empty() || written.contains('\n') { json(value) } else { written.to_string() }
}

/// How many quoted strings [`WRITTEN_STRINGS`] keeps before it starts again.
const WRITTEN_STRINGS_HELD: usize = 4096;

thread_local! {
    /// Strings as the YAML writer quotes them. Injection inserts the same proxy container, with
    /// the same few dozen strings that need quotes, into every workload of a stream, and the
    /// writer costs a serializer per scalar.
    static WRITTEN_STRINGS: std::cell::RefCell<std::collections::HashMap<String, String>> =
        std::cell::RefCell::default();
}

/// Every alias with the value it reads as, by the anchor it points to.
fn aliases<'n, 'v>(
    node: &'n Node,
    value: &'v Value,
    place: Place,
    text: &str,
    found: &mut BTreeMap<usize, Vec<(&'n Node, Place, &'v Value)>>,
) {
    match (&node.shape, value) {
        (Shape::Alias(id), _) => found.entry(*id).or_default().push((node, place, value)),
        (Shape::Map { flow, entries }, Value::Object(map)) => {
            for entry in entries {
                let Some(value) = map.get(&entry.key) else { continue };
                let place = match entry.colon(text) {
                    Ok(colon) if !flow => Place::Value { column: column(text, entry.key_range.start), colon },
                    _ => Place::Flow { column: own_line_column(text, entry.key_range.start) },
                };
                aliases(&entry.value, value, place, text, found);
            }
        }
        (Shape::Seq { flow, items }, Value::Array(values)) => {
            for (item, value) in items.iter().zip(values) {
                let place = match dash(text, item.range.start) {
                    Some(dash) if !flow => Place::Item { column: column(text, dash) },
                    _ => Place::Flow { column: own_line_column(text, item.range.start) },
                };
                aliases(item, value, place, text, found);
            }
        }
        _ => {}
    }
}

/// Whether a skeleton, read as `read`, stands for `wanted`: equal, with each hole where its value
/// is.
fn reads_as(read: &Value, wanted: &Value, holes: &[&Value]) -> bool {
    match (read, wanted) {
        (Value::Object(read), _) if read.len() == 1 && read.contains_key(HOLE) => {
            let hole = read[HOLE].as_u64().and_then(|n| holes.get(usize::try_from(n).ok()?));
            hole.is_some_and(|hole| std::ptr::eq(*hole, wanted) || *hole == wanted)
        }
        (Value::Object(read), Value::Object(wanted)) => {
            read.len() == wanted.len()
                && read.iter().all(|(key, value)| wanted.get(key).is_some_and(|w| reads_as(value, w, holes)))
        }
        (Value::Array(read), Value::Array(wanted)) => {
            read.len() == wanted.len() && read.iter().zip(wanted).all(|(r, w)| reads_as(r, w, holes))
        }
        _ => read == wanted,
    }
}

/// `text` (one YAML document, read as `old`) edited so that it reads as `new`. `read` is the
/// reader the stream uses, to check the result.
///
/// The check reads the document's skeleton: the edited text with the values the block writer
/// inserted as numbered holes, so it costs what reading the original document costs however much
/// was inserted. How the writer lays out what it inserts is property-tested instead.
pub fn edit_document(
    text: &str,
    old: &Value,
    new: &Value,
    read: impl Fn(&str) -> Option<Value>,
) -> Result<String, EditError> {
    let root = tree(text)?;
    let mut editor = Editor {
        text,
        style: Style::of(text, &root),
        edits: Vec::new(),
        holes: Vec::new(),
        path_anchors: Vec::new(),
        changed_anchors: Vec::new(),
    };
    editor.change(&root, Place::Root, old, new)?;
    if !editor.changed_anchors.is_empty() {
        let mut found = BTreeMap::new();
        aliases(&root, old, Place::Root, text, &mut found);
        let changed: BTreeSet<usize> = editor.changed_anchors.iter().copied().collect();
        for anchor in changed {
            for (alias, place, value) in found.remove(&anchor).unwrap_or_default() {
                editor.replace(alias, place, value)?;
            }
        }
    }
    let Editor { mut edits, holes, .. } = editor;
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = String::with_capacity(text.len() + edits.iter().map(|e| e.text.len()).sum::<usize>());
    let mut skeleton = String::with_capacity(text.len());
    let mut at = 0;
    for edit in &edits {
        if edit.range.start < at || edit.range.start > edit.range.end || text.get(edit.range.clone()).is_none() {
            return unsupported("overlapping or malformed edits");
        }
        let unchanged = &text[at..edit.range.start];
        out.push_str(unchanged);
        out.push_str(&edit.text);
        skeleton.push_str(unchanged);
        skeleton.push_str(edit.skeleton.as_ref().unwrap_or(&edit.text));
        at = edit.range.end;
    }
    out.push_str(&text[at..]);
    skeleton.push_str(&text[at..]);
    match read(&skeleton) {
        Some(value) if reads_as(&value, new, &holes) => Ok(out),
        _ => unsupported("the edited text does not read back as the wanted value"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn read(text: &str) -> Option<Value> {
        crate::read_yaml(text).ok().flatten()
    }

    /// `text` edited to read as `change` applied to what it reads as.
    fn edited(text: &str, change: impl FnOnce(&mut Value)) -> String {
        let old = read(text).unwrap();
        let mut new = old.clone();
        change(&mut new);
        edit_document(text, &old, &new, read).unwrap()
    }

    #[test]
    fn an_added_key_changes_one_line_and_keeps_comments_anchors_and_quoting() {
        let text = "# a web server\nmetadata:\n  name: 'web'   # the name\n  labels: &labels\n    app: web\nspec:\n  replicas: 3   # scaled by HPA\n  template:\n    metadata:\n      labels: *labels\n\n    spec: {}\n";
        let out = edited(text, |v| {
            v["spec"]["template"]["metadata"]["annotations"] = json!({"linkerd.io/inject": "enabled"})
        });
        assert_eq!(
            out,
            text.replace(
                "      labels: *labels\n",
                "      labels: *labels\n      annotations:\n        linkerd.io/inject: enabled\n"
            )
        );
    }

    #[test]
    fn strings_that_need_quotes_are_quoted_as_the_yaml_writer_quotes_them_however_often_written() {
        let needs_quotes = ["10000ms", "0.0.0.0:4191", "on", "a b", "x: y", "-1", "'single'", ""];
        let fillers: Vec<String> = (0..WRITTEN_STRINGS_HELD + 10).map(|n| format!("{n} filler")).collect();
        for text in needs_quotes.iter().copied().chain(fillers.iter().map(String::as_str)).chain(needs_quotes) {
            let mut out = String::new();
            string_scalar(text, &mut out);
            assert!(!plain_safe(text), "{text:?} is written plain");
            assert_eq!(out, quoted_scalar(&json!(text)), "{text:?}");
            assert_eq!(read(&format!("k: {out}\n")).unwrap()["k"], json!(text), "{out} reads back");
        }
    }

    #[test]
    fn list_items_follow_the_lists_indentation() {
        let text = "containers:\n  - name: app   # the app\n    image: nginx\nvolumes:\n  - name: data\n";
        let out = edited(text, |v| {
            v["containers"].as_array_mut().unwrap().insert(0, json!({"name": "proxy", "ports": [1, 2]}));
            v["volumes"].as_array_mut().unwrap().push(json!({"name": "id", "emptyDir": {}}));
        });
        assert_eq!(
            out,
            "containers:\n  - name: proxy\n    ports:\n      - 1\n      - 2\n  - name: app   # the app\n    image: nginx\nvolumes:\n  - name: data\n  - name: id\n    emptyDir: {}\n"
        );
    }

    #[test]
    fn removed_keys_and_items_take_their_lines_only() {
        let text = "a:\n  keep: 1   # kept\n  drop: 2\nl:\n- name: x\n  v: 1\n- name: y   # stays\n";
        let out = edited(text, |v| {
            v["a"].as_object_mut().unwrap().remove("drop");
            v["l"].as_array_mut().unwrap().remove(0);
        });
        assert_eq!(out, "a:\n  keep: 1   # kept\nl:\n- name: y   # stays\n");
    }

    #[test]
    fn an_alias_whose_value_changes_becomes_a_copy_and_the_anchor_stays() {
        let text = "a: &x\n  k: v\nb: *x\n";
        let out = edited(text, |v| v["b"]["size"] = json!(1));
        assert_eq!(out, "a: &x\n  k: v\nb:\n  k: v\n  size: 1\n");
    }

    #[test]
    fn when_an_anchored_node_changes_its_aliases_keep_the_old_value() {
        let text = "a: &x\n  k: v\nb: *x\nc: [*x]\n";
        let out = edited(text, |v| v["a"]["size"] = json!(1));
        assert_eq!(out, "a: &x\n  k: v\n  size: 1\nb:\n  k: v\nc: [{\"k\":\"v\"}]\n");
    }

    #[test]
    fn flow_collections_stay_flow_and_scalars_keep_yaml_quoting() {
        let text = "m: {a: b}   # flow\nn: x\n";
        let out = edited(text, |v| {
            v["m"]["c"] = json!("on");
            v["n"] = json!("true");
        });
        assert_eq!(out, "m: {a: b, \"c\": \"on\"}   # flow\nn: \"true\"\n");
        assert_eq!(read(&out).unwrap()["n"], "true");
    }

    #[test]
    fn crlf_documents_get_crlf_lines() {
        let text = "a:\r\n  b: 1\r\n";
        let out = edited(text, |v| v["a"]["c"] = json!({"d": 2}));
        assert_eq!(out, "a:\r\n  b: 1\r\n  c:\r\n    d: 2\r\n");
    }

    #[test]
    fn a_key_after_a_block_scalar_keeps_the_scalar() {
        let text = "a:\n  script: |\n    echo hi\n\n  # trailing\nb: 1\n";
        let out = edited(text, |v| v["a"]["x"] = json!("y"));
        assert_eq!(read(&out).unwrap()["a"], json!({"script": "echo hi\n", "x": "y"}));
        assert!(out.starts_with("a:\n  script: |\n    echo hi\n"), "{out}");
        assert!(out.ends_with("b: 1\n"), "{out}");
    }

    #[test]
    fn an_empty_value_becomes_a_block() {
        let text = "metadata:\n  annotations:\n  name: x\n";
        let out = edited(text, |v| v["metadata"]["annotations"] = json!({"a": "b"}));
        assert_eq!(out, "metadata:\n  annotations:\n    a: b\n  name: x\n");
    }

    #[test]
    fn a_change_it_cannot_make_locally_rewrites_only_the_enclosing_node() {
        let text = "l:\n- name: a   # first\n  x: 1\nother: 1   # untouched\n";
        let out = edited(text, |v| {
            v["l"][0].as_object_mut().unwrap().remove("name");
        });
        assert_eq!(out, "l:\n- x: 1\nother: 1   # untouched\n");
    }

    #[test]
    fn json_keeps_its_layout_where_keys_and_items_are_added_or_removed() {
        let text = "{\n  \"metadata\": {\"name\": \"web\", \"labels\": {\"a\": \"1\"}},\n  \"list\": [\n    1,\n    2\n  ],\n  \"spec\": {\n    \"x\": 1\n  }\n}";
        let out = edited(text, |v| {
            v["metadata"].as_object_mut().unwrap().remove("name");
            v["list"].as_array_mut().unwrap().push(json!({"name": "c"}));
            v["spec"]["y"] = json!({"z": [true]});
        });
        assert_eq!(
            out,
            "{\n  \"metadata\": {\"labels\": {\"a\": \"1\"}},\n  \"list\": [\n    1,\n    2,\n    {\n      \"name\": \"c\"\n    }\n  ],\n  \"spec\": {\n    \"x\": 1,\n    \"y\": {\n      \"z\": [\n        true\n      ]\n    }\n  }\n}"
        );
        let out = edited(text, |v| {
            v["list"].as_array_mut().unwrap().remove(1);
            v["list"].as_array_mut().unwrap().insert(0, json!(0));
            v["spec"].as_object_mut().unwrap().remove("x");
        });
        assert_eq!(
            out,
            "{\n  \"metadata\": {\"name\": \"web\", \"labels\": {\"a\": \"1\"}},\n  \"list\": [\n    0,\n    1\n  ],\n  \"spec\": {}\n}"
        );
    }

    #[test]
    fn text_ending_in_a_multi_byte_character_is_edited_on_character_boundaries() {
        let text = "a:\n  b: café\n  c: [né]";
        let out = edited(text, |v| {
            v["a"]["d"] = json!("ü");
            v["a"]["c"].as_array_mut().unwrap().push(json!("ß"));
        });
        assert_eq!(out, "a:\n  b: café\n  c: [né, \"ß\"]\n  d: ü\n");
    }

    /// Strings that are hard to write: words and numbers a reader resolves, indicators, quotes,
    /// spaces at the ends, line breaks, non-ASCII, tabs.
    const AWKWARD: [&str; 30] = [
        "true",
        "On",
        "y",
        "N",
        "null",
        "~",
        "inf",
        "NaN",
        ".inf",
        "0644",
        "0x1F",
        "1e3",
        "1_000",
        "2026-12-03",
        "a: b",
        "a:",
        "#x",
        "a #x",
        "- x",
        "",
        " lead",
        "trail ",
        "line\nnext\n",
        "café",
        "x:y",
        "a,b=c",
        "'q'",
        "\"dq\"",
        "{x}",
        "a\tb",
    ];

    fn a_string() -> impl Strategy<Value = String> {
        prop_oneof![prop::sample::select(&AWKWARD[..]).prop_map(String::from), "[a-z_$/][a-z0-9:./,=@+_$()-]{0,8}"]
    }

    fn a_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            prop::sample::select(&[0.5, -2.25, 1e-3][..]).prop_map(Value::from),
            a_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((a_string(), inner), 0..4).prop_map(|e| Value::Object(e.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// What the edit check trusts: a block the writer inserts under a key or as a list item,
        /// in any of the layouts documents use, reads back as its value between its neighbours,
        /// and its skeleton reads as that value with the holes filled in.
        #[test]
        fn written_blocks_and_their_skeletons_read_back_as_their_values(
            value in a_value().prop_filter("a collection", is_collection),
            step in prop::sample::select(&[2usize, 4][..]),
            list_offset in prop::sample::select(&[0usize, 2][..]),
            newline in prop::sample::select(&["\n", "\r\n"][..]),
        ) {
            let style = Style { step, list_offset, newline };
            let under_key = if value.is_array() { list_offset } else { step };
            let mut holes = Vec::new();
            for skeleton in [false, true] {
                let mut under_root = String::new();
                style.block(&value, under_key, under_key, &mut under_root, skeleton.then_some(&mut holes));
                let mut item = String::new();
                style.block(&value, 2, 0, &mut item, skeleton.then_some(&mut holes));
                let document = format!("before: 1{newline}root:{newline}{under_root}items:{newline}- {item}after: 2{newline}");
                let read = read(&document);
                let wanted = json!({"before": 1, "root": value.clone(), "items": [value.clone()], "after": 2});
                proptest::prop_assert!(
                    read.as_ref().is_some_and(|read| reads_as(read, &wanted, &holes)),
                    "{document:?} read as {read:?}"
                );
            }
        }
    }
}
