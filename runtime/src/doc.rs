//! [`Doc`]: a record's document — a JSON tree, or the JSON text of a flat object that the
//! host wrote itself and turns into a tree only when something reads into it.
//!
//! Why text: `batch.flatten` turns a CTR into about 150 columns. As a tree, that is 150 key
//! strings and 150 copied values, built on a transform's thread, handed on, serialized by
//! the sink and freed on another thread: in the profile of the throughput graph, building,
//! writing and freeing the flat trees took about a third of the CPU (docs/performance.md).
//! Written straight to text it is one buffer, and a sink that writes JSON (the file lake,
//! Kinesis, Firehose, HTTP) copies it as it is.
//!
//! Nothing else changes for the code that reads a record: `Doc` dereferences to
//! `serde_json::Value`, parsing the text on first use (once; the tree is then kept beside the
//! text for the record's life). Editing goes through [`Doc::make_mut`], copy-on-write like
//! `Arc::make_mut`. The text is what [`crate::json::write_value`] writes for the flat tree, so
//! a record serializes the same either way. Read back, the tree is that tree, except that a
//! float may come back one unit in the last place away in rare cases (serde_json parses
//! floats fast, not exactly, without its `float_roundtrip` feature; CTRs carry few floats).
//! One field is read without building the tree at all: [`Doc::field`].

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use ctrflow_plugin_sdk::flatten::{self, Arrays, Cell, ColumnSink};
use ctrflow_plugin_sdk::path::FieldPath;
use serde_json::{Map, Value};

use crate::json;

/// A record's document, shared by fan-out copies (cloning it clones an `Arc`).
#[derive(Clone)]
pub struct Doc(Arc<Inner>);

#[derive(Clone)]
enum Inner {
    Tree(Value),
    /// A flat object's JSON text: every value a scalar or a string, keys sorted, as
    /// [`json::write_value`] writes it. `keys` holds where each key's opening quote is, so
    /// [`Doc::field`] finds a field without walking the text; `tree` is filled on first read.
    Flat {
        text: Box<[u8]>,
        keys: Box<[u32]>,
        tree: OnceLock<Value>,
    },
}

impl Doc {
    /// A document holding `value`.
    pub fn new(value: Value) -> Doc {
        Doc(Arc::new(Inner::Tree(value)))
    }

    /// `object` flattened into columns (the SDK's [`flatten::columns`] rules), held as the
    /// flat object's JSON text: what `batch.flatten` makes of a record. The values are
    /// written from `object` where they are; nothing is copied into a tree. Each column is
    /// written as the walk finds it ([`flatten::walk_sorted`]); only a record whose keys nest
    /// around the separator, for which the walk's order is not the columns' order, has its
    /// columns gathered and sorted first.
    pub fn flatten(object: &Map<String, Value>, separator: &str, arrays: Arrays) -> Result<Doc, String> {
        let mut flat = FlatText::new();
        if !flatten::walk_sorted(object, separator, arrays, &mut flat) {
            flat = FlatText::new();
            for (name, cell) in flatten::columns(object, separator, arrays)?.iter() {
                flat.column(name, cell);
            }
        }
        flat.text.push(b'}');
        Ok(Doc::flat_indexed(flat.text, flat.keys))
    }

    /// What stands in for a record's document once its sink has staged it and sent the tree
    /// home ([`crate::record::Returns::release`]): `{"ContactId": …}` (or `null` without
    /// one), held as its few bytes of text, parsed only if a dead letter reads it.
    pub fn stand_in(contact_id: Option<&str>) -> Doc {
        match contact_id {
            Some(id) => {
                let mut text = Vec::with_capacity(id.len() + 16);
                text.extend_from_slice(b"{\"ContactId\":");
                json::write_str(&mut text, id);
                text.push(b'}');
                Doc::flat_indexed(text, vec![1])
            }
            None => Doc::new(Value::Null),
        }
    }

    /// A flat object held as its text, with where each of its keys starts (the offset of
    /// the key's opening quote, in the text's order). `text` must be what
    /// [`json::write_value`] writes for an object whose values are all scalars or strings;
    /// [`Doc::field`] relies on there being no nesting.
    fn flat_indexed(text: Vec<u8>, keys: Vec<u32>) -> Doc {
        Doc(Arc::new(Inner::Flat {
            text: text.into_boxed_slice(),
            keys: keys.into_boxed_slice(),
            tree: OnceLock::new(),
        }))
    }

    /// The document's JSON text, when it is held as text.
    pub fn text(&self) -> Option<&[u8]> {
        match &*self.0 {
            Inner::Flat { text, .. } => Some(text),
            Inner::Tree(_) => None,
        }
    }

    /// Appends the document's JSON to `out`: the text as it is, or the tree written.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match &*self.0 {
            Inner::Flat { text, .. } => out.extend_from_slice(text),
            Inner::Tree(value) => json::write_value(out, value),
        }
    }

    /// The value at `path`. A one-segment path into a flat text that nobody has parsed yet
    /// is found in the text, and only that value is parsed: a sink that reads one field
    /// (the file lake's date) does not build the whole tree for it.
    pub fn field(&self, path: &FieldPath) -> Option<Cow<'_, Value>> {
        if let Inner::Flat { text, keys, tree } = &*self.0
            && tree.get().is_none()
            && let [segment] = path.segments()
        {
            return flat_field(text, keys, &segment.key).map(Cow::Owned);
        }
        path.get(self).map(Cow::Borrowed)
    }

    /// The tree, to edit; copied first when another record shares it (like `Arc::make_mut`),
    /// and parsed first when it is held as text.
    pub fn make_mut(&mut self) -> &mut Value {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            if let Inner::Flat { text, tree, .. } = inner {
                let value = tree.take().unwrap_or_else(|| parse(text));
                *inner = Inner::Tree(value);
            }
        } else if let Inner::Flat { text, tree, .. } = &*self.0 {
            let value = tree.get().cloned().unwrap_or_else(|| parse(text));
            self.0 = Arc::new(Inner::Tree(value));
        }
        match Arc::make_mut(&mut self.0) {
            Inner::Tree(value) => value,
            Inner::Flat { .. } => unreachable!("made a tree above"),
        }
    }

    /// How many records share this document (for tests of copy-on-write).
    pub fn share_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl Deref for Doc {
    type Target = Value;

    fn deref(&self) -> &Value {
        match &*self.0 {
            Inner::Tree(value) => value,
            Inner::Flat { text, tree, .. } => tree.get_or_init(|| parse(text)),
        }
    }
}

impl From<Value> for Doc {
    fn from(value: Value) -> Doc {
        Doc::new(value)
    }
}

impl PartialEq for Doc {
    fn eq(&self, other: &Doc) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl serde::Serialize for Doc {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

fn parse(text: &[u8]) -> Value {
    // Written by `json::write_value` from a tree: always JSON.
    json::parse(text).expect("a flat document's text is JSON the host wrote")
}

/// The value of top-level `key` in a flat object's text, parsed alone.
///
/// `keys` says where every key opens, so each is compared where it is: the text at a key's
/// opening quote starts with `"key":` exactly when that key is `key` (compared as written,
/// escaped the way [`json::write_str`] escapes it, so no unescaping is needed). The value
/// then runs to its closing quote (a string, stepping over every `\` escape) or to the next
/// `,` or `}` (a scalar holds neither). A text that is not a flat object gives `None`.
///
/// Why an index (4 bytes a column) rather than walking the text pair by pair: the file sink
/// reads its date field from every record the flattening wrote, and the walk, two `memchr`
/// calls a column up to the one wanted, was 2% of the throughput graph's CPU
/// (docs/performance.md, twelfth round).
fn flat_field(text: &[u8], keys: &[u32], key: &str) -> Option<Value> {
    let mut wanted = Vec::with_capacity(key.len() + 3);
    json::write_str(&mut wanted, key);
    wanted.push(b':');
    // The `":` that closes a key of the same written length is checked first: a byte
    // compare that rules out most keys before a whole comparison.
    let closes = wanted.len() - 2;
    let at = keys
        .iter()
        .map(|&k| k as usize)
        .find(|&k| text.get(k + closes..k + wanted.len()) == Some(b"\":") && text[k..].starts_with(&wanted))?;
    let value_start = at + wanted.len();
    json::parse(&text[value_start..value_end(text, value_start)?]).ok()
}

/// The end of the flat value that opens at `start`: one past a string's closing quote, or
/// the `,` or `}` after a scalar (which holds neither).
fn value_end(text: &[u8], start: usize) -> Option<usize> {
    match text.get(start)? {
        b'"' => string_end(text, start),
        _ => memchr::memchr2(b',', b'}', &text[start..]).map(|n| start + n),
    }
}

/// Where each key of a flat object's text opens, found by walking it pair by pair: a key
/// is a string; its value is a string or a scalar, which holds no `,` or `}`. For a flat
/// text written from a tree rather than by [`Doc::flatten`], which records them as it writes.
#[cfg(test)]
fn key_offsets(text: &[u8]) -> Vec<u32> {
    let mut keys = Vec::new();
    let mut at = 1; // past `{`
    while text.get(at) == Some(&b'"') {
        keys.push(offset(at));
        let Some(key_end) = string_end(text, at) else { break };
        let value_start = key_end + 1; // past `:`
        let Some(value_end) = value_end(text, value_start) else { break };
        at = value_end + 1; // past `,` (or `}`, where the loop ends)
    }
    keys
}

/// A flat object's JSON text being written, column by column: what [`Doc::flatten`] writes
/// (the closing brace is the caller's).
struct FlatText {
    text: Vec<u8>,
    /// Where each key's opening quote is (see [`Inner::Flat`]).
    keys: Vec<u32>,
    /// An array's JSON text, before it is written as a string.
    array: Vec<u8>,
}

impl FlatText {
    /// Sized for a contact record (about 150 columns, 3–6 KB of text).
    fn new() -> FlatText {
        let mut text = Vec::with_capacity(4096);
        text.push(b'{');
        FlatText { text, keys: Vec::with_capacity(160), array: Vec::new() }
    }
}

impl<'a> ColumnSink<'a> for FlatText {
    fn column(&mut self, name: &str, cell: Cell<'a>) {
        let text = &mut self.text;
        if !self.keys.is_empty() {
            text.push(b',');
        }
        self.keys.push(offset(text.len()));
        json::write_str(text, name);
        text.push(b':');
        match cell {
            Cell::Null => text.extend_from_slice(b"null"),
            Cell::Scalar(value) => json::write_value(text, value),
            Cell::ArrayText(value) => {
                self.array.clear();
                json::write_value(&mut self.array, value);
                json::write_str(text, std::str::from_utf8(&self.array).expect("JSON text written from str is UTF-8"));
            }
        }
    }
}

/// A position in a record's flat text as a `u32`: one record's text is far below the
/// 4 GiB it reaches (a source refuses records over `max_record_size`).
fn offset(at: usize) -> u32 {
    u32::try_from(at).expect("a flat record's text is under 4 GiB")
}

/// The end (one past the closing quote) of the JSON string that opens at `start`.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        at += memchr::memchr2(b'"', b'\\', &text[at..])?;
        if text[at] == b'"' {
            return Some(at + 1);
        }
        at += 2; // an escape: `\` and the byte it escapes
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn flat(value: &Value) -> Doc {
        let mut text = Vec::new();
        json::write_value(&mut text, value);
        let keys = key_offsets(&text);
        Doc::flat_indexed(text, keys)
    }

    #[test]
    fn a_flat_text_reads_as_the_tree_it_was_written_from() {
        let value = json!({"a": 1, "b": "x", "c": null, "d": 1.5, "e": true, "f": "[1,{\"g\":2}]"});
        let doc = flat(&value);
        assert_eq!(*doc, value);
        let mut out = Vec::new();
        doc.write_json(&mut out);
        assert_eq!(out, serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn a_field_is_found_in_the_text_and_never_inside_a_string() {
        // Strings holding what looks like the key, escaped quotes, a key that ends in a
        // backslash, keys that contain the one looked for.
        let value = json!({
            "A": "{\"Date\":\"wrong\"}",
            "B": ",\"Date\":\"wrong\"",
            "C\\": "\\",
            "XDate": "wrong",
            "Date": "2026-11-30T10:00:00Z",
            "Datex": "wrong",
            "Z\"Date": "wrong",
            // Keys and values ending in `,` or `{`, and keys opening with `:` or `,`.
            "0,": ":5",
            "0{": ",5",
            ":": "colon",
            ",": "comma",
            "v": "x,",
        });
        let doc = flat(&value);
        let path = |p: &str| FieldPath::parse(p).unwrap();
        assert_eq!(doc.field(&path("Date")).as_deref(), Some(&json!("2026-11-30T10:00:00Z")));
        assert_eq!(doc.field(&path("XDate")).as_deref(), Some(&json!("wrong")));
        assert_eq!(doc.field(&path("C\\")).as_deref(), Some(&json!("\\")));
        assert_eq!(doc.field(&path(":")).as_deref(), Some(&json!("colon")));
        assert_eq!(doc.field(&path(",")).as_deref(), Some(&json!("comma")));
        assert_eq!(doc.field(&path("Missing")), None);
        // Found without parsing the whole text.
        assert!(matches!(&*doc.0, Inner::Flat { tree, .. } if tree.get().is_none()));
        // The first key, and every key, agree with the tree.
        for key in value.as_object().unwrap().keys().filter(|k| !k.contains('.')) {
            assert_eq!(doc.field(&path(key)).as_deref(), value.get(key), "{key}");
        }
    }

    #[test]
    fn flattening_writes_the_text_of_the_flat_tree_for_every_real_sample() {
        // And one whose keys nest around the separator (`a` holds `b`, beside `a_a`): the
        // walk's order is not the columns' order, so they are gathered and sorted first.
        let nested = json!({"a": {"b": 1, "c": [2]}, "a_a": 3, "Agent": {"x": "y"}, "AgentId": 4});
        let samples = json::real_samples().into_iter().chain([("nested keys".into(), nested)]);
        for (path, sample) in samples {
            let Value::Object(object) = sample else { continue };
            for arrays in [Arrays::Json, Arrays::First] {
                let tree = Value::Object(flatten::flatten(&object, "_", arrays).unwrap());
                let doc = Doc::flatten(&object, "_", arrays).unwrap();
                assert_eq!(doc.text().unwrap(), json::to_string(&tree).as_bytes(), "{}", path.display());
                let Inner::Flat { text, keys, .. } = &*doc.0 else { panic!("a flat text") };
                assert_eq!(keys[..], key_offsets(text)[..], "{}: where each key opens", path.display());
                assert_eq!(*doc, tree);
            }
        }
        let collide = json!({"Queue": {"Name": "a"}, "Queue_Name": "b"});
        let err = Doc::flatten(collide.as_object().unwrap(), "_", Arrays::Json).unwrap_err();
        assert_eq!(err, "two fields flatten to the same column \"Queue_Name\"");
    }

    #[test]
    fn a_stand_in_reads_as_the_contact_id_alone() {
        assert_eq!(*Doc::stand_in(Some("a\"b")), json!({"ContactId": "a\"b"}));
        assert_eq!(
            Doc::stand_in(Some("c1")).field(&FieldPath::parse("ContactId").unwrap()).as_deref(),
            Some(&json!("c1"))
        );
        assert_eq!(*Doc::stand_in(None), Value::Null);
    }

    #[test]
    fn editing_a_shared_flat_text_copies_it_and_leaves_the_other_as_it_was() {
        let value = json!({"a": 1, "b": "x"});
        let shared = flat(&value);
        let mut edited = shared.clone();
        edited.make_mut().as_object_mut().unwrap().insert("c".into(), json!(2));
        assert_eq!(*edited, json!({"a": 1, "b": "x", "c": 2}));
        assert_eq!(*shared, value);
        assert_eq!(shared.text().map(<[u8]>::len), Some(serde_json::to_vec(&value).unwrap().len()));
        assert!(edited.text().is_none(), "an edited document is a tree");
        // Alone and already read, its tree is taken, not copied.
        let mut alone = flat(&value);
        assert_eq!(alone["a"], 1);
        alone.make_mut()["a"] = json!(3);
        assert_eq!(*alone, json!({"a": 3, "b": "x"}));
    }
}
