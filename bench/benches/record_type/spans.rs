//! A prototype record type for `record_type`'s `spans` row: what the next record type could
//! save, measured before anyone changes the runtime's.
//!
//! The document owns its text (one copy of the line, as a source keeps for its dead letters
//! anyway) and a tree of [`Node`]s that points into it: a string without escapes is the
//! span of its bytes between the quotes, a number the span of its digits, so parsing
//! allocates the copy of the text, one vector per object and per array, and nothing per key
//! or string (a string with escapes is decoded into a string of its own). An object
//! is its fields sorted by key (binary search to read, insertion to add). An edit makes an
//! owned string. Writing a span copies its bytes as they are: JSON forbids unescaped control
//! characters inside a string, so a string read without a backslash needs no escape when it
//! is written back. A number is written as it was read (`1.50` stays `1.50`; serde_json
//! would write `1.5`): the same value, not always the same text.
//!
//! Enough of a parser for well-formed records (the generated ones); it panics on anything
//! else. Not a product type: no errors, no limits, no deep-nesting guard; it steps over
//! `true`, `false` and `null` by their length and checks neither numbers nor control
//! characters, so its parse time is a lower bound for a product parser's.

use std::sync::Arc;

/// A string: where it is in the document's text, or its own bytes.
pub enum Str {
    Span(u32, u32),
    Owned(Box<str>),
}

/// A JSON value whose strings and numbers may be spans of the document's text.
pub enum Node {
    Null,
    Bool(bool),
    /// The number's text, as a span.
    Number(u32, u32),
    Str(Str),
    Array(Vec<Node>),
    /// Fields sorted by key.
    Object(Vec<(Str, Node)>),
}

/// A document: its text and its tree.
pub struct Doc {
    text: Arc<str>,
    pub root: Node,
}

impl Str {
    pub fn bytes<'a>(&'a self, text: &'a [u8]) -> &'a [u8] {
        match self {
            Str::Span(start, end) => &text[*start as usize..*end as usize],
            Str::Owned(s) => s.as_bytes(),
        }
    }
}

impl Doc {
    /// Parses `line`, copying it once into the document, its text checked as UTF-8 once (as
    /// the runtime's parser does).
    pub fn parse(line: &[u8]) -> Doc {
        let text: Arc<str> = Arc::from(std::str::from_utf8(line).expect("a record is UTF-8"));
        let root = Parser { text: text.as_bytes(), at: 0 }.value();
        Doc { text, root }
    }

    /// Parses `row` into a tree of owned strings (a looked-up table row, whose text is not
    /// the document's).
    pub fn owned(row: &[u8]) -> Node {
        let doc = Doc::parse(row);
        doc.own(&doc.root)
    }

    fn own(&self, node: &Node) -> Node {
        match node {
            Node::Null => Node::Null,
            Node::Bool(b) => Node::Bool(*b),
            // A table row holds strings (the agents CSV's cells); a number would need an
            // owned form the prototype does not have.
            Node::Number(..) => panic!("a table row holds strings"),
            Node::Str(s) => Node::Str(Str::Owned(self.str(s).into())),
            Node::Array(items) => Node::Array(items.iter().map(|i| self.own(i)).collect()),
            Node::Object(fields) => {
                Node::Object(fields.iter().map(|(k, v)| (Str::Owned(self.str(k).into()), self.own(v))).collect())
            }
        }
    }

    /// The string's text. (A span starts after and ends at a quote byte, so slicing the
    /// text there cannot cut a character; the slice checks it anyway.)
    pub fn str<'a>(&'a self, s: &'a Str) -> &'a str {
        match s {
            Str::Span(start, end) => &self.text[*start as usize..*end as usize],
            Str::Owned(s) => s,
        }
    }

    /// The value at `path` (object keys), when there is one.
    pub fn get(&self, path: &[&str]) -> Option<&Node> {
        let mut node = &self.root;
        for key in path {
            let Node::Object(fields) = node else { return None };
            let i = fields.binary_search_by(|(k, _)| k.bytes(self.text.as_bytes()).cmp(key.as_bytes())).ok()?;
            node = &fields[i].1;
        }
        Some(node)
    }

    /// The value at `path`, to replace.
    pub fn get_mut(&mut self, path: &[&str]) -> Option<&mut Node> {
        let text = self.text.as_bytes();
        let mut node = &mut self.root;
        for key in path {
            let Node::Object(fields) = node else { return None };
            let i = fields.binary_search_by(|(k, _)| k.bytes(text).cmp(key.as_bytes())).ok()?;
            node = &mut fields[i].1;
        }
        Some(node)
    }

    /// Sets top-level `key` to `value`, keeping the fields sorted.
    pub fn insert(&mut self, key: &str, value: Node) {
        let Node::Object(fields) = &mut self.root else { panic!("a record is an object") };
        let text = self.text.as_bytes();
        match fields.binary_search_by(|(k, _)| k.bytes(text).cmp(key.as_bytes())) {
            Ok(i) => fields[i].1 = value,
            Err(i) => fields.insert(i, (Str::Owned(key.into()), value)),
        }
    }

    /// Appends `node`'s compact JSON text.
    pub fn write(&self, out: &mut Vec<u8>, node: &Node) {
        match node {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(true) => out.extend_from_slice(b"true"),
            Node::Bool(false) => out.extend_from_slice(b"false"),
            Node::Number(start, end) => out.extend_from_slice(&self.text.as_bytes()[*start as usize..*end as usize]),
            Node::Str(s) => self.write_str(out, s),
            Node::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write(out, item);
                }
                out.push(b']');
            }
            Node::Object(fields) => {
                out.push(b'{');
                for (i, (key, item)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write_str(out, key);
                    out.push(b':');
                    self.write(out, item);
                }
                out.push(b'}');
            }
        }
    }

    pub fn write_str(&self, out: &mut Vec<u8>, s: &Str) {
        match s {
            Str::Span(start, end) => {
                out.push(b'"');
                out.extend_from_slice(&self.text.as_bytes()[*start as usize..*end as usize]);
                out.push(b'"');
            }
            Str::Owned(s) => super::runtime::json::write_str(out, s),
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn white(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) {
        self.white();
        assert_eq!(self.text[self.at], byte, "at {}", self.at);
        self.at += 1;
    }

    /// Steps past the opening bracket or the comma before the next element of an object or
    /// array closed by `close`: true when an element follows, false past the closing byte.
    fn next_in(&mut self, close: u8) -> bool {
        self.white();
        let byte = self.text[self.at];
        self.at += 1;
        if byte == close {
            return false;
        }
        // After the opening bracket, the container may be empty.
        self.white();
        if self.text[self.at] == close {
            self.at += 1;
            return false;
        }
        true
    }

    fn value(&mut self) -> Node {
        self.white();
        match self.text[self.at] {
            b'{' => {
                let mut fields = Vec::new();
                while self.next_in(b'}') {
                    self.white();
                    let key = self.string();
                    self.eat(b':');
                    fields.push((key, self.value()));
                }
                let text = self.text;
                fields.sort_by(|(a, _), (b, _)| a.bytes(text).cmp(b.bytes(text)));
                Node::Object(fields)
            }
            b'[' => {
                let mut items = Vec::new();
                while self.next_in(b']') {
                    items.push(self.value());
                }
                Node::Array(items)
            }
            b'"' => Node::Str(self.string()),
            b't' => {
                self.at += 4;
                Node::Bool(true)
            }
            b'f' => {
                self.at += 5;
                Node::Bool(false)
            }
            b'n' => {
                self.at += 4;
                Node::Null
            }
            _ => {
                let start = self.at;
                while matches!(self.text.get(self.at), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
                    self.at += 1;
                }
                Node::Number(start as u32, self.at as u32)
            }
        }
    }

    fn string(&mut self) -> Str {
        assert_eq!(self.text[self.at], b'"');
        let start = self.at + 1;
        let mut escaped = false;
        let mut i = start;
        loop {
            match self.text[i] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                _ => i += 1,
            }
        }
        self.at = i + 1;
        if escaped {
            let s: String = serde_json::from_slice(&self.text[start - 1..=i]).unwrap();
            Str::Owned(s.into())
        } else {
            Str::Span(start as u32, i as u32)
        }
    }
}
