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
/// The host writes these straight to JSON text (`batch.flatten`); [`flatten_columns`] makes
/// them owned.
pub fn columns<'a>(object: &'a Map<String, Json>, separator: &str, arrays: Arrays) -> Result<Columns<'a>, String> {
    // Sized for a CTR (about 150 columns, 4 KB of names), so neither grows on the way.
    let mut out = Columns { names: String::with_capacity(4096), cells: Vec::with_capacity(256) };
    let mut column = String::with_capacity(64);
    for (key, value) in object {
        column.clear();
        column.push_str(key);
        push_value(&mut out, &mut column, value, separator, arrays);
    }
    let names = &out.names;
    let name = |&(start, end, _): &(u32, u32, Cell)| &names[start as usize..end as usize];
    // The depth-first order is sorted runs (an object's columns sort after a sibling that
    // shares their prefix: `Agent_…` after `AgentConnectionAttempts`); the stable sort
    // merges runs where the unstable one partitions everything.
    out.cells.sort_by(|a, b| name(a).cmp(name(b)));
    // Sorted, two fields that flatten to one column sit side by side.
    if let Some(pair) = out.cells.windows(2).find(|pair| name(&pair[0]) == name(&pair[1])) {
        return Err(format!("two fields flatten to the same column {:?}", name(&pair[0])));
    }
    Ok(out)
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

/// Pushes the column(s) of `value`, whose column name is `column`; leaves `column` as it
/// found it.
fn push_value<'a>(out: &mut Columns<'a>, column: &mut String, value: &'a Json, separator: &str, arrays: Arrays) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            let len = column.len();
            for (child, inner) in map {
                column.truncate(len);
                column.push_str(separator);
                column.push_str(child);
                push_value(out, column, inner, separator, arrays);
            }
            column.truncate(len);
        }
        Json::Object(_) => out.push(column, Cell::Null),
        Json::Array(items) => match arrays {
            Arrays::Json => out.push(column, Cell::ArrayText(value)),
            Arrays::First => match items.first() {
                Some(first) => push_value(out, column, first, separator, arrays),
                None => out.push(column, Cell::Null),
            },
        },
        scalar => out.push(column, Cell::Scalar(scalar)),
    }
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

    #[test]
    fn the_separator_joins_every_level() {
        let record = json!({"a": {"b": {"c": 1}}});
        assert_eq!(
            Json::Object(flatten(record.as_object().unwrap(), "__", Arrays::Json).unwrap()),
            json!({"a__b__c": 1})
        );
    }
}
