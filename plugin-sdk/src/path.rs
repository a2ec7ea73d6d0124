//! Field paths: `Agent.Username`, `Attributes.customerName`, `Recordings.0.Location`.
//!
//! One implementation of path semantics serves both sides of the plugin boundary: the host
//! (`ctrflow::host`) walks records with it, and the SDK's native test mode uses it, so a
//! plugin's unit tests see exactly what the runtime would do.
//!
//! A path is split on `.`; a segment made only of digits indexes an array when the value at
//! that point is an array, and is an object key otherwise (CTR attribute keys may be
//! numeric). A key holding a literal dot is not addressable; no CTR field has one.

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The object key (also used when the segment is numeric but the value is an object).
    pub key: String,
    /// The array index, when the segment is all digits.
    pub index: Option<usize>,
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    segments: Vec<Segment>,
    text: String,
}

/// What [`FieldPath::set_tracked`] replaced: enough to undo the set.
#[derive(Debug, Clone, PartialEq)]
pub struct Replaced {
    /// How many segments deep the first changed slot is.
    pub depth: usize,
    /// What it held before; `None` when it did not exist.
    pub old: Option<Value>,
}

/// Why a path could not be parsed or applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path text is empty or has an empty segment (`a..b`, `.a`).
    Empty(String),
    /// A segment crosses a value that is neither an object nor an array.
    NotAContainer { path: String, at: String },
    /// An array index past the end.
    IndexOutOfRange { path: String, index: usize, len: usize },
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::Empty(p) => write!(f, "path {p:?} has an empty segment"),
            PathError::NotAContainer { path, at } => {
                write!(f, "path {path:?}: {at:?} is not an object or array")
            }
            PathError::IndexOutOfRange { path, index, len } => {
                write!(f, "path {path:?}: index {index} is past the end of an array of {len}")
            }
        }
    }
}

impl std::error::Error for PathError {}

impl FieldPath {
    /// Parses dotted path text.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let mut segments = Vec::new();
        for part in text.split('.') {
            if part.is_empty() {
                return Err(PathError::Empty(text.to_string()));
            }
            let index = if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().ok() } else { None };
            segments.push(Segment { key: part.to_string(), index });
        }
        Ok(FieldPath { segments, text: text.to_string() })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments, first to last.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The value at this path, if every segment exists.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut cur = root;
        for seg in &self.segments {
            cur = step(cur, seg)?;
        }
        Some(cur)
    }

    /// Sets the value at this path, creating missing objects (and replacing `null`s) on
    /// the way. Fails when a segment crosses a scalar or indexes past an array's end.
    pub fn set(&self, root: &mut Value, value: Value) -> Result<(), PathError> {
        let slot = self.slot(root)?;
        *slot = value;
        Ok(())
    }

    /// Like [`FieldPath::set`], but hands back the value it replaced (`None` when the
    /// field did not exist), which the host keeps to undo a trapped call.
    pub fn replace(&self, root: &mut Value, value: Value) -> Result<Option<Value>, PathError> {
        let (last, parents) = self.segments.split_last().expect("a parsed path has a segment");
        let parent = walk_mut(root, parents, &self.text)?;
        match parent {
            Value::Array(items) if last.index.is_some() => {
                let i = last.index.unwrap_or_default();
                let len = items.len();
                let slot =
                    items.get_mut(i).ok_or(PathError::IndexOutOfRange { path: self.text.clone(), index: i, len })?;
                Ok(Some(std::mem::replace(slot, value)))
            }
            Value::Object(map) => Ok(map.insert(last.key.clone(), value)),
            _ => Err(PathError::NotAContainer { path: self.text.clone(), at: last.key.clone() }),
        }
    }

    /// Sets the value like [`FieldPath::set`] in one walk, and says how to undo it: the
    /// first slot the walk created or replaced (`depth` segments deep — the whole path when
    /// only the leaf changed) and the value that slot held before (`None`: it was absent).
    pub fn set_tracked(&self, root: &mut Value, value: Value) -> Result<Replaced, PathError> {
        let mut first: Option<Replaced> = None;
        let mut cur = root;
        let (last, parents) = self.segments.split_last().expect("a parsed path has a segment");
        for (depth, seg) in parents.iter().enumerate() {
            if cur.is_null() {
                // A null turned into an object is a change to undo. One under an object key
                // was noted a step earlier; one in an array (or the root) only shows here.
                first.get_or_insert(Replaced { depth, old: Some(Value::Null) });
                *cur = Value::Object(Map::new());
            }
            cur = match cur {
                Value::Object(map) => {
                    match map.get(&seg.key) {
                        None => {
                            first.get_or_insert(Replaced { depth: depth + 1, old: None });
                            map.insert(seg.key.clone(), Value::Null);
                        }
                        Some(Value::Null) => {
                            first.get_or_insert(Replaced { depth: depth + 1, old: Some(Value::Null) });
                        }
                        Some(_) => {}
                    }
                    map.get_mut(&seg.key).expect("present: inserted above")
                }
                Value::Array(items) => {
                    let len = items.len();
                    let i = seg
                        .index
                        .ok_or_else(|| PathError::NotAContainer { path: self.text.clone(), at: seg.key.clone() })?;
                    items.get_mut(i).ok_or(PathError::IndexOutOfRange { path: self.text.clone(), index: i, len })?
                }
                _ => return Err(PathError::NotAContainer { path: self.text.clone(), at: seg.key.clone() }),
            };
        }
        if cur.is_null() {
            first.get_or_insert(Replaced { depth: parents.len(), old: Some(Value::Null) });
            *cur = Value::Object(Map::new());
        }
        let old = match cur {
            Value::Array(items) if last.index.is_some() => {
                let i = last.index.unwrap_or_default();
                let len = items.len();
                let slot =
                    items.get_mut(i).ok_or(PathError::IndexOutOfRange { path: self.text.clone(), index: i, len })?;
                Some(std::mem::replace(slot, value))
            }
            Value::Object(map) => {
                if let Some(slot) = map.get_mut(&last.key) {
                    Some(std::mem::replace(slot, value))
                } else {
                    map.insert(last.key.clone(), value);
                    None
                }
            }
            _ => return Err(PathError::NotAContainer { path: self.text.clone(), at: last.key.clone() }),
        };
        Ok(first.unwrap_or(Replaced { depth: self.segments.len(), old }))
    }

    /// The first `depth` segments of this path, as a path.
    pub fn prefix(&self, depth: usize) -> FieldPath {
        let segments: Vec<Segment> = self.segments[..depth.min(self.segments.len())].to_vec();
        let text = segments.iter().map(|s| s.key.as_str()).collect::<Vec<_>>().join(".");
        FieldPath { segments, text }
    }

    /// Whether the value this path names sits in an array (removing it shifts its
    /// neighbours).
    pub fn in_array(&self, root: &Value) -> bool {
        let parents = &self.segments[..self.segments.len() - 1];
        let mut cur = root;
        for seg in parents {
            match step(cur, seg) {
                Some(v) => cur = v,
                None => return false,
            }
        }
        cur.is_array()
    }

    /// Removes the value at this path and returns it. Removing from an array shifts the
    /// later elements, as `Vec::remove` does.
    pub fn remove(&self, root: &mut Value) -> Option<Value> {
        let (last, parents) = self.segments.split_last()?;
        let mut cur = root;
        for seg in parents {
            cur = step_mut(cur, seg)?;
        }
        match cur {
            Value::Object(map) => map.remove(&last.key),
            Value::Array(items) => {
                let i = last.index?;
                (i < items.len()).then(|| items.remove(i))
            }
            _ => None,
        }
    }

    fn slot<'v>(&self, root: &'v mut Value) -> Result<&'v mut Value, PathError> {
        walk_mut(root, &self.segments, &self.text)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn step<'v>(cur: &'v Value, seg: &Segment) -> Option<&'v Value> {
    match cur {
        Value::Object(map) => map.get(&seg.key),
        Value::Array(items) => items.get(seg.index?),
        _ => None,
    }
}

fn step_mut<'v>(cur: &'v mut Value, seg: &Segment) -> Option<&'v mut Value> {
    match cur {
        Value::Object(map) => map.get_mut(&seg.key),
        Value::Array(items) => items.get_mut(seg.index?),
        _ => None,
    }
}

/// Walks to the slot named by `segments`, creating objects where keys are missing.
fn walk_mut<'v>(root: &'v mut Value, segments: &[Segment], text: &str) -> Result<&'v mut Value, PathError> {
    let mut cur = root;
    for seg in segments {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        cur = match cur {
            Value::Object(map) => {
                // Look up before inserting: `entry` would allocate the key every time.
                if !map.contains_key(&seg.key) {
                    map.insert(seg.key.clone(), Value::Null);
                }
                map.get_mut(&seg.key).expect("present: inserted above")
            }
            Value::Array(items) => {
                let len = items.len();
                let i = seg
                    .index
                    .ok_or_else(|| PathError::NotAContainer { path: text.to_string(), at: seg.key.clone() })?;
                items.get_mut(i).ok_or(PathError::IndexOutOfRange { path: text.to_string(), index: i, len })?
            }
            _ => {
                return Err(PathError::NotAContainer { path: text.to_string(), at: seg.key.clone() });
            }
        };
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    #[test]
    fn gets_nested_fields_and_array_items() {
        let v = json!({"Agent": {"Username": "a1"}, "Recordings": [{"Location": "s3/x"}]});
        assert_eq!(p("Agent.Username").get(&v), Some(&json!("a1")));
        assert_eq!(p("Recordings.0.Location").get(&v), Some(&json!("s3/x")));
        assert_eq!(p("Recordings.1.Location").get(&v), None);
        assert_eq!(p("Agent.Missing").get(&v), None);
    }

    #[test]
    fn numeric_segment_is_a_key_on_objects() {
        let v = json!({"Attributes": {"123": "x"}});
        assert_eq!(p("Attributes.123").get(&v), Some(&json!("x")));
    }

    #[test]
    fn set_creates_objects_and_replaces_null_parents() {
        let mut v = json!({"Agent": null});
        p("Agent.Team.Name").set(&mut v, json!("blue")).unwrap();
        assert_eq!(v, json!({"Agent": {"Team": {"Name": "blue"}}}));
    }

    #[test]
    fn set_through_a_scalar_is_an_error() {
        let mut v = json!({"Channel": "VOICE"});
        let err = p("Channel.Kind").set(&mut v, json!(1)).unwrap_err();
        assert!(matches!(err, PathError::NotAContainer { .. }));
    }

    #[test]
    fn replace_returns_the_old_value_for_undo() {
        let mut v = json!({"a": 1});
        assert_eq!(p("a").replace(&mut v, json!(2)).unwrap(), Some(json!(1)));
        assert_eq!(p("b").replace(&mut v, json!(3)).unwrap(), None);
        assert_eq!(v, json!({"a": 2, "b": 3}));
    }

    #[test]
    fn set_tracked_reports_the_first_slot_it_created() {
        let mut v = json!({"Agent": null, "A": {"b": 1}});
        let r = p("Agent.Team.Name").set_tracked(&mut v, json!("x")).unwrap();
        assert_eq!(r, Replaced { depth: 1, old: Some(Value::Null) });
        let r = p("A.c.d").set_tracked(&mut v, json!(2)).unwrap();
        assert_eq!(r, Replaced { depth: 2, old: None });
        let r = p("A.b").set_tracked(&mut v, json!(3)).unwrap();
        assert_eq!(r, Replaced { depth: 2, old: Some(json!(1)) });
        assert_eq!(v, json!({"Agent": {"Team": {"Name": "x"}}, "A": {"b": 3, "c": {"d": 2}}}));
        assert_eq!(p("A.c.d").prefix(2).as_str(), "A.c");
    }

    /// Found by the `field_path` fuzz target: a null array element turned into an object on
    /// the way to the leaf was not reported, so the host's undo after a trap left `{}` where
    /// the record had `null`.
    #[test]
    fn set_tracked_undo_restores_a_null_array_element() {
        for (path, doc) in [("a.0.b", json!({"a": [null]})), ("a.0.b.c", json!({"a": [null]}))] {
            let mut v = doc.clone();
            let r = p(path).set_tracked(&mut v, json!(1)).unwrap();
            assert_eq!(r, Replaced { depth: 2, old: Some(Value::Null) }, "{path}");
            p(path).prefix(r.depth).set(&mut v, r.old.unwrap()).unwrap();
            assert_eq!(v, doc, "{path}: undone");
        }
    }

    #[test]
    fn remove_returns_the_value() {
        let mut v = json!({"Attributes": {"ssn": "1", "keep": "2"}});
        assert_eq!(p("Attributes.ssn").remove(&mut v), Some(json!("1")));
        assert_eq!(v, json!({"Attributes": {"keep": "2"}}));
        assert_eq!(p("Attributes.ssn").remove(&mut v), None);
    }

    #[test]
    fn empty_segments_are_rejected() {
        assert!(matches!(FieldPath::parse("a..b"), Err(PathError::Empty(_))));
        assert!(matches!(FieldPath::parse(""), Err(PathError::Empty(_))));
    }
}
