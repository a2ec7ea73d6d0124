//! Flattening a record into columns: nested objects become `Parent<separator>Child` fields,
//! the shape a warehouse table wants.
//!
//! One implementation for both sides of the boundary: the host runs it for `batch.flatten`
//! (so a plugin flattens a record without a single field crossing into the sandbox), and a
//! plugin's native `cargo test` runs it for [`crate::Record::flatten`], so the two cannot
//! disagree.
//!
//! The rules (what the bundled `ctr-flatten` documents):
//! - a non-empty object's fields become `<key><separator><field>` columns, recursively;
//! - an empty object, and `null`, stay `null` at their own column;
//! - an array becomes its JSON text ([`Arrays::Json`]), or its first element flattened in its
//!   place, `null` when it is empty ([`Arrays::First`]);
//! - columns come out sorted by name; two fields that flatten to one column (a top-level
//!   `Queue_Name` beside `Queue.Name`) are an error naming that column, never a silent loss.

use serde_json::{Map, Value as Json};

/// What becomes of arrays.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Arrays {
    /// The array's JSON text, as one string column.
    #[default]
    Json,
    /// The first element, flattened under the array's key (`null` for an empty array).
    First,
}

/// One flat column's value, borrowed from the record it was flattened from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// `null`: an empty object, an empty array under [`Arrays::First`], or a `null`.
    Null,
    /// A scalar, as it is in the record.
    Scalar(&'a Json),
    /// An array kept as its JSON text ([`Arrays::Json`]): the column holds that text as a
    /// string.
    ArrayText(&'a Json),
}

impl Cell<'_> {
    /// The column's value, owned.
    pub fn to_value(self) -> Json {
        match self {
            Cell::Null => Json::Null,
            Cell::Scalar(value) => value.clone(),
            Cell::ArrayText(array) => Json::String(serde_json::to_string(array).unwrap_or_default()),
        }
    }
}

/// The flat columns of a record, sorted by name, borrowing its values: what
/// [`columns`] returns. Names live in one buffer, so flattening allocates per record, not
/// per column.
#[derive(Debug)]
pub struct Columns<'a> {
    names: String,
    /// Each column's name as a range of `names`, and its value.
    cells: Vec<(u32, u32, Cell<'a>)>,
}

impl<'a> Columns<'a> {
    /// How many columns.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether there are none (the record was an empty object).
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The columns in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Cell<'a>)> + '_ {
        self.cells.iter().map(|&(start, end, cell)| (&self.names[start as usize..end as usize], cell))
    }
}

/// The flat columns of `object`, sorted by name, borrowing its values. On a collision, the
/// error names the column.
///
/// The host writes these straight to JSON text (`batch.flatten`, through [`walk_sorted`]
/// first); [`flatten_columns`] makes them owned.
pub fn columns<'a>(object: &'a Map<String, Json>, separator: &str, arrays: Arrays) -> Result<Columns<'a>, String> {
    // Sized for a CTR (about 150 columns, 4 KB of names), so neither grows on the way.
    let mut out = Columns { names: String::with_capacity(4096), cells: Vec::with_capacity(256) };
    if walk_sorted(object, separator, arrays, &mut out) {
        // Walked in column order: sorted, and no two columns can share a name (see `Walk`).
        return Ok(out);
    }
    let names = &out.names;
    let name = |&(start, end, _): &(u32, u32, Cell)| &names[start as usize..end as usize];
    // Nearly sorted runs; the stable sort merges runs where the unstable one partitions
    // everything.
    out.cells.sort_by(|a, b| name(a).cmp(name(b)));
    // Sorted, two fields that flatten to one column sit side by side.
    if let Some(pair) = out.cells.windows(2).find(|pair| name(&pair[0]) == name(&pair[1])) {
        return Err(format!("two fields flatten to the same column {:?}", name(&pair[0])));
    }
    Ok(out)
}

/// Where [`walk_sorted`] puts each column it finds, in the order it finds them.
pub trait ColumnSink<'a> {
    /// One column: its name and its value.
    fn column(&mut self, name: &str, cell: Cell<'a>);
}

impl<'a> ColumnSink<'a> for Columns<'a> {
    fn column(&mut self, name: &str, cell: Cell<'a>) {
        self.push(name, cell);
    }
}

/// Gives `object`'s columns to `out` as the walk meets them, and returns whether they came
/// in name order. They do for every record whose keys do not nest around the separator
/// (every contact record): then `out` has had each column once, sorted, and no two share a
/// name. When it returns `false`, what `out` has had is out of order and may hold a
/// collision: start over with [`columns`], which sorts and checks.
///
/// For a caller that turns each column into something else at once (the host writes the
/// flat record's JSON text) this skips gathering the columns first: on the throughput
/// benchmark's records, gathering was about 40% of the host's flattening (callgrind).
pub fn walk_sorted<'a>(
    object: &'a Map<String, Json>,
    separator: &str,
    arrays: Arrays,
    out: &mut impl ColumnSink<'a>,
) -> bool {
    let mut column = String::with_capacity(64);
    let mut walk = Walk { separator, arrays, sorted: true };
    walk.object(out, &mut column, object, false);
    walk.sorted
}

/// The flat columns of `object`, sorted by name, owned: [`columns`] with its values cloned.
pub fn flatten_columns(
    object: &Map<String, Json>,
    separator: &str,
    arrays: Arrays,
) -> Result<Vec<(String, Json)>, String> {
    Ok(columns(object, separator, arrays)?.iter().map(|(name, cell)| (name.to_string(), cell.to_value())).collect())
}

/// [`flatten_columns`] as an object. (Built from the sorted columns in one bulk step.)
pub fn flatten(object: &Map<String, Json>, separator: &str, arrays: Arrays) -> Result<Map<String, Json>, String> {
    Ok(flatten_columns(object, separator, arrays)?.into_iter().collect())
}

impl<'a> Columns<'a> {
    fn push(&mut self, name: &str, cell: Cell<'a>) {
        // One record's names: far below the 4 GiB a `u32` offset reaches.
        let start = self.names.len() as u32;
        self.names.push_str(name);
        self.cells.push((start, self.names.len() as u32, cell));
    }
}

/// The depth-first walk that pushes a record's columns, each object's fields in the order
/// their columns sort, so that the columns come out sorted without sorting them (sorting
/// 150 names that share long prefixes was about a third of the host's flattening).
///
/// An object's fields are in key order (serde_json's map), and a field's columns all begin
/// with its *stem*: its key, followed by the separator when its value is a non-empty object
/// (or, with [`Arrays::First`], an array that flattens to one). Siblings whose stems are
/// not prefixes of one another have all their columns in the order of their stems, so
/// walking the fields in stem order gives sorted columns. Key order is stem order except
/// where an object's key is a prefix of the next key (`Agent` beside
/// `AgentConnectionAttempts`, whose `C` sorts before `_`): only those objects' fields are
/// put in stem order. Where one stem is a prefix of another's and the shorter one's field is
/// an object (`a` and `a_b` with `_`), or two stems are equal, their columns may interleave
/// or collide: the walk then clears `sorted`, and [`columns`] sorts and checks for
/// collisions as before. Without that, no two columns can share a name: siblings' stems
/// differ before either ends, or one is a leaf's whole name and shorter than every column
/// of the other.
struct Walk<'s> {
    separator: &'s str,
    arrays: Arrays,
    /// Whether the columns pushed so far are in order (see above).
    sorted: bool,
}

impl Walk<'_> {
    /// Pushes the columns of `map`'s fields, named `column` (+ the separator, when
    /// `nested`) + the key; leaves `column` as it found it.
    fn object<'a>(
        &mut self,
        out: &mut impl ColumnSink<'a>,
        column: &mut String,
        map: &'a Map<String, Json>,
        nested: bool,
    ) {
        let len = column.len();
        let mut field = |walk: &mut Self, column: &mut String, key: &str, value: &'a Json| {
            column.truncate(len);
            if nested {
                column.push_str(walk.separator);
            }
            column.push_str(key);
            walk.value(out, column, value);
        };
        match self.stem_order(map) {
            None => {
                for (key, value) in map {
                    field(self, column, key, value);
                }
            }
            Some(order) => {
                for Field { key, value, .. } in order {
                    field(self, column, key, value);
                }
            }
        }
        column.truncate(len);
    }

    /// Pushes the column(s) of `value`, whose column name is `column`; leaves `column` as
    /// it found it.
    fn value<'a>(&mut self, out: &mut impl ColumnSink<'a>, column: &mut String, value: &'a Json) {
        match value {
            Json::Object(map) if !map.is_empty() => self.object(out, column, map, true),
            Json::Object(_) => out.column(column, Cell::Null),
            Json::Array(items) => match self.arrays {
                Arrays::Json => out.column(column, Cell::ArrayText(value)),
                Arrays::First => match items.first() {
                    Some(first) => self.value(out, column, first),
                    None => out.column(column, Cell::Null),
                },
            },
            scalar => out.column(column, Cell::Scalar(scalar)),
        }
    }

    /// Whether `value`'s columns are `<key><separator>…` rather than `<key>` itself.
    fn branches(&self, value: &Json) -> bool {
        match value {
            Json::Object(map) => !map.is_empty(),
            Json::Array(items) if self.arrays == Arrays::First => items.first().is_some_and(|v| self.branches(v)),
            _ => false,
        }
    }

    /// `map`'s fields in stem order, or `None` when that is key order (nearly always: a
    /// scan of the objects' keys against the next key). Clears `sorted` where stems nest.
    fn stem_order<'a>(&mut self, map: &'a Map<String, Json>) -> Option<Vec<Field<'a>>> {
        let mut previous: Option<&String> = None;
        let in_key_order = map.iter().all(|(key, value)| {
            let fine = previous.is_none_or(|p| !key.starts_with(p.as_str()));
            previous = self.branches(value).then_some(key);
            fine
        });
        if in_key_order {
            return None;
        }
        // A stem is its key and, for a field that branches, the separator after it.
        let separator = self.separator.as_bytes();
        let mut order: Vec<Field<'a>> = Vec::with_capacity(map.len());
        for (key, value) in map {
            // The field before this one moves if it branches and its key begins this one.
            if let Some(last) = order.last_mut() {
                last.moves = last.branches && key.starts_with(last.key.as_str());
            }
            order.push(Field { branches: self.branches(value), moves: false, key, value });
        }
        // Only the fields that move can be out of place. Keys that begin with a key `k`
        // follow it in key order, so `k` + separator sorts before every later key that does
        // not begin with `k`: a field that branches and is no prefix of the next key, or
        // does not branch, already sorts before every later stem, and stays. A field that
        // moves (`Agent` before `AgentConnectionAttempts`) is carried forward past the stems
        // below its own; from the last to the first, each is carried into fields already in
        // order, so the whole ends in order. A contact record's top level has one such
        // field, carried past two keys: a handful of comparisons instead of two for each of
        // its ~40 fields (docs/performance.md, nineteenth round). A field is carried only
        // past stems strictly below its own, so equal stems keep key order, as a stable sort
        // keeps it. Steps are capped at four a field, so keys chosen to be far from their
        // stems' order cost the library's stable sort (which then finishes the job) and four
        // comparisons a field more.
        let mut steps = 4 * order.len();
        'carry: for i in (0..order.len()).rev() {
            if !order[i].moves {
                continue;
            }
            let mut j = i;
            while j + 1 < order.len() && compare_joined(order[j].stem(separator), order[j + 1].stem(separator)).is_gt()
            {
                if steps == 0 {
                    order.sort_by(|a, b| compare_joined(a.stem(separator), b.stem(separator)));
                    break 'carry;
                }
                steps -= 1;
                order.swap(j, j + 1);
                j += 1;
            }
        }
        // Columns can interleave or collide only after a field that branches: one whose
        // stem begins the next one's, or equals it.
        for pair in order.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.branches
                && (joined_starts_with(b.stem(separator), a.stem(separator))
                    || compare_joined(a.stem(separator), b.stem(separator)).is_eq())
            {
                self.sorted = false;
            }
        }
        Some(order)
    }
}

/// One field of an object being put in stem order.
struct Field<'a> {
    /// Whether its value branches (its stem ends with the separator).
    branches: bool,
    /// Whether it branches and its key begins the next key: the only fields out of place.
    moves: bool,
    key: &'a String,
    value: &'a Json,
}

impl Field<'_> {
    /// Its stem: its key and, when it branches, the separator.
    fn stem<'k>(&'k self, separator: &'k [u8]) -> Stem<'k> {
        [self.key.as_bytes(), if self.branches { separator } else { b"" }]
    }
}

/// A field's stem as two pieces: its key, and the separator or nothing.
type Stem<'k> = [&'k [u8]; 2];

/// `a[0] + a[1]` against `b[0] + b[1]`, byte by byte (as `str`'s order is), without joining
/// either.
fn compare_joined(a: Stem, b: Stem) -> std::cmp::Ordering {
    let (mut x, mut y) = (a[0], b[0]);
    let (mut next_x, mut next_y) = (Some(a[1]), Some(b[1]));
    loop {
        while x.is_empty()
            && let Some(rest) = next_x.take()
        {
            x = rest;
        }
        while y.is_empty()
            && let Some(rest) = next_y.take()
        {
            y = rest;
        }
        if x.is_empty() || y.is_empty() {
            // A prefix of the other sorts first.
            return (!x.is_empty()).cmp(&!y.is_empty());
        }
        let n = x.len().min(y.len());
        match x[..n].cmp(&y[..n]) {
            std::cmp::Ordering::Equal => (x, y) = (&x[n..], &y[n..]),
            other => return other,
        }
    }
}

/// Whether `joined[0] + joined[1]` starts with `prefix[0] + prefix[1]` (bytes: a stem's
/// first bytes may end inside a character).
fn joined_starts_with(joined: Stem, prefix: Stem) -> bool {
    let whole = prefix[0].len() + prefix[1].len();
    if joined[0].len() + joined[1].len() < whole {
        return false;
    }
    let head = joined[0].len().min(whole);
    compare_joined([&joined[0][..head], &joined[1][..whole - head]], prefix).is_eq()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn flat(record: Json, arrays: Arrays) -> Result<Json, String> {
        flatten(record.as_object().unwrap(), "_", arrays).map(Json::Object)
    }

    #[test]
    fn nested_objects_become_parent_child_columns_sorted() {
        let record = json!({"b": {"y": 1, "x": {"deep": "d"}}, "a": null, "e": {}, "c": [1, {"k": 2}]});
        let out = flat(record, Arrays::Json).unwrap();
        assert_eq!(out, json!({"a": null, "b_x_deep": "d", "b_y": 1, "c": "[1,{\"k\":2}]", "e": null}));
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b_x_deep", "b_y", "c", "e"]);
    }

    #[test]
    fn arrays_first_flattens_the_first_element_and_an_empty_one_is_null() {
        let record = json!({"r": [{"loc": "s3://x", "f": {"g": true}}, {"loc": "s3://y"}], "n": [], "s": [[7, 8]]});
        assert_eq!(flat(record, Arrays::First).unwrap(), json!({"n": null, "r_f_g": true, "r_loc": "s3://x", "s": 7}));
    }

    #[test]
    fn a_collision_names_the_column() {
        let record = json!({"Queue": {"Name": "a"}, "Queue_Name": "b"});
        assert_eq!(flat(record, Arrays::Json).unwrap_err(), "two fields flatten to the same column \"Queue_Name\"");
    }

    /// The columns as sorting every name gives them: the walk in key order, one stable sort,
    /// a collision check. What [`columns`] must equal, whatever the keys.
    fn sorted_reference(
        object: &Map<String, Json>,
        separator: &str,
        arrays: Arrays,
    ) -> Result<Vec<(String, Json)>, String> {
        fn walk(out: &mut Vec<(String, Json)>, column: &str, value: &Json, separator: &str, arrays: Arrays) {
            match value {
                Json::Object(map) if !map.is_empty() => {
                    for (key, inner) in map {
                        walk(out, &format!("{column}{separator}{key}"), inner, separator, arrays);
                    }
                }
                Json::Object(_) => out.push((column.to_string(), Json::Null)),
                Json::Array(items) => match (arrays, items.first()) {
                    (Arrays::Json, _) => out.push((column.to_string(), Json::String(value.to_string()))),
                    (Arrays::First, Some(first)) => walk(out, column, first, separator, arrays),
                    (Arrays::First, None) => out.push((column.to_string(), Json::Null)),
                },
                scalar => out.push((column.to_string(), scalar.clone())),
            }
        }
        let mut out = Vec::new();
        for (key, value) in object {
            walk(&mut out, key, value, separator, arrays);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        match out.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            Some(pair) => Err(format!("two fields flatten to the same column {:?}", pair[0].0)),
            None => Ok(out),
        }
    }

    // The walk puts fields in column order instead of sorting the columns: on keys built to
    // nest, collide and sort on either side of the separator (`a`, `a_`, `a!b`, `a~`, the
    // empty key, characters of several bytes), at every depth, with objects inside arrays,
    // it must give what sorting gives, collisions included.
    #[test]
    fn walking_in_column_order_gives_what_sorting_every_column_gives() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        fn key(next: &mut impl FnMut(u64) -> u64) -> String {
            // `é` and `ê` share their first byte: stems compared and cut byte by byte must
            // not cut a character in two.
            const PIECES: [&str; 10] = ["a", "b", "_", "__", "!", "~", "A", "ab", "é", "ê"];
            (0..next(3)).map(|_| PIECES[next(PIECES.len() as u64) as usize]).collect()
        }
        fn value(next: &mut impl FnMut(u64) -> u64, depth: u32) -> Json {
            match next(if depth == 0 { 3 } else { 7 }) {
                0 => Json::Null,
                1 => Json::from(next(100)),
                2 => Json::String("s".into()),
                3 => Json::Object(Map::new()),
                4 => Json::Array((0..next(3)).map(|_| value(next, depth - 1)).collect()),
                _ => Json::Object((0..1 + next(5)).map(|_| (key(next), value(next, depth - 1))).collect()),
            }
        }
        let (mut same, mut collisions) = (0, 0);
        for _ in 0..60_000 {
            let Json::Object(record) = value(&mut next, 3) else { continue };
            for separator in ["_", "__", ""] {
                for arrays in [Arrays::Json, Arrays::First] {
                    let expected = sorted_reference(&record, separator, arrays);
                    let got = flatten_columns(&record, separator, arrays);
                    assert_eq!(got, expected, "{record:?} with {separator:?}, {arrays:?}");
                    if expected.is_err() {
                        collisions += 1;
                    }
                    same += 1;
                }
            }
        }
        // The generator reaches both outcomes often.
        assert!(collisions > 1_000 && same - collisions > 10_000, "{collisions} of {same}");
    }

    // Each key a prefix of the next, each value an object: with `~`, which sorts after the
    // letters, each stem sorts before all the ones before it, and putting them in order one
    // step at a time would take 20,000 steps; the walk's steps run out and the sort finishes.
    #[test]
    fn stems_far_from_key_order_come_out_sorted_all_the_same() {
        let record: Map<String, Json> = (1..200).map(|n| ("a".repeat(n), json!({ "x": n }))).collect();
        for separator in ["~", "_"] {
            let got = flatten_columns(&record, separator, Arrays::Json).unwrap();
            assert_eq!(got, sorted_reference(&record, separator, Arrays::Json).unwrap(), "{separator:?}");
            assert_eq!(got.len(), 199);
        }
    }

    #[test]
    fn the_separator_joins_every_level() {
        let record = json!({"a": {"b": {"c": 1}}});
        assert_eq!(
            Json::Object(flatten(record.as_object().unwrap(), "__", Arrays::Json).unwrap()),
            json!({"a__b__c": 1})
        );
    }
}
