//! Checks one `[[tests.expect]]` against what a walk saw, and words a failure as a diff a
//! person reads once: `-` what the test expected, `+` what the pipeline did, with the
//! record's `ContactId` and, when records went elsewhere, where they went.

use ctrflow_plugin_sdk::path::FieldPath;
use serde_json::Value;

use super::spec::{Expectation, json};
use super::walk::{Seen, Sighting};
use crate::graph::{Graph, Section, suggest};

/// The places that are not nodes.
pub const DEAD_LETTERS: &str = "dead_letters";
/// Records a node dropped on purpose (`filter`, `on_error = "drop"`, an output nobody reads).
pub const DROPPED: &str = "dropped";

/// `Ok` when the expectation holds; otherwise the lines that say why (indented by the caller).
pub fn check(
    exp: &Expectation,
    seen: &Seen,
    graph: &Graph,
    outputs: &dyn Fn(&str) -> Vec<String>,
) -> Result<(), Vec<String>> {
    place_exists(&exp.at, graph, outputs).map_err(|e| vec![e])?;
    let all: &[Sighting] = seen.places.get(&exp.at).map(Vec::as_slice).unwrap_or(&[]);
    let mut selected = Vec::new();
    for s in all {
        if matches_where(exp, &s.doc).map_err(|e| vec![e])? {
            selected.push(s);
        }
    }
    let mut lines = Vec::new();
    if let Some(count) = exp.count
        && count != selected.len()
    {
        lines.push(format!("- count: {count}"));
        lines.push(format!("+ count: {}", selected.len()));
        lines.extend(context(exp, seen));
    }
    let has_conditions =
        !exp.equals.is_empty() || !exp.absent.is_empty() || !exp.present.is_empty() || !exp.encoded.is_empty();
    if has_conditions && selected.is_empty() && exp.count.is_none_or(|c| c > 0) {
        if lines.is_empty() {
            lines.push(format!("no record at {:?}{} to check", exp.at, where_text(exp)));
            lines.extend(context(exp, seen));
        }
        return Err(lines);
    }
    for (i, s) in selected.iter().enumerate() {
        let diff = record_diff(exp, s).map_err(|e| vec![e])?;
        if !diff.is_empty() {
            lines.push(format!("record {} of {}{}:", i + 1, selected.len(), contact(&s.doc)));
            lines.extend(diff.into_iter().map(|l| format!("  {l}")));
        }
    }
    if lines.is_empty() { Ok(()) } else { Err(lines) }
}

/// A missing record's context: how many records were seen where, then the first few dead
/// letters' nodes, kinds and reasons (unless the dead letters are the place checked): why a
/// record did not arrive is the first thing a reader of the failure wants.
fn context(exp: &Expectation, seen: &Seen) -> Vec<String> {
    const SHOWN: usize = 3;
    let mut lines = vec![format!("  (records seen: {})", seen.summary())];
    if exp.at != DEAD_LETTERS {
        let letters = seen.places.get(DEAD_LETTERS).map(Vec::as_slice).unwrap_or(&[]);
        lines.extend(letters.iter().take(SHOWN).map(|s| {
            let field = |k: &str| s.doc.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
            format!("  dead letter from {}{}: {}: {}", field("node"), contact(&s.doc), field("kind"), field("reason"))
        }));
    }
    lines
}

/// `at`'s place, said the way a reader of the failure wants it.
pub fn describe(exp: &Expectation) -> String {
    format!("at = {:?}{}", exp.at, where_text(exp))
}

fn where_text(exp: &Expectation) -> String {
    if exp.filter.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = exp.filter.iter().map(|(k, v)| format!("{k} = {}", json(v))).collect();
    format!(", where {}", parts.join(", "))
}

fn contact(doc: &Value) -> String {
    let id = doc.get("ContactId").or_else(|| doc.get("contact_id")).and_then(Value::as_str);
    id.map(|id| format!(" (ContactId {id:?})")).unwrap_or_default()
}

/// A misspelt `at` is the test's mistake, said as such (with a suggestion).
fn place_exists(at: &str, graph: &Graph, outputs: &dyn Fn(&str) -> Vec<String>) -> Result<(), String> {
    if at == DEAD_LETTERS || at == DROPPED || graph.node(at).is_some() {
        return Ok(());
    }
    if let Some((node, output)) = at.split_once('.')
        && let Some(n) = graph.node(node)
    {
        let declared = outputs(node);
        if n.section == Section::Transform && declared.iter().any(|o| o == output) {
            return Ok(());
        }
        return Err(format!("at: {node:?} has no output {output:?} (its outputs: {})", declared.join(", ")));
    }
    let places = graph.nodes.iter().map(|n| n.id.as_str()).chain([DEAD_LETTERS, DROPPED]);
    let hint = suggest(at, places).map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default();
    Err(format!("at: {at:?} is not a node, a node's output, {DEAD_LETTERS:?} or {DROPPED:?}{hint}"))
}

fn path(text: &str) -> Result<FieldPath, String> {
    FieldPath::parse(text).map_err(|e| format!("field path {text:?}: {e}"))
}

fn matches_where(exp: &Expectation, doc: &Value) -> Result<bool, String> {
    for (field, want) in &exp.filter {
        if !path(field)?.get(doc).is_some_and(|got| same(got, &json(want))) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Numbers compare by value (TOML `30` equals JSON `30.0`); everything else exactly.
fn same(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == want,
    }
}

fn shown(v: Option<&Value>) -> String {
    v.map_or("(absent)".into(), Value::to_string)
}

fn record_diff(exp: &Expectation, s: &Sighting) -> Result<Vec<String>, String> {
    let mut diff = Vec::new();
    for (field, want) in &exp.equals {
        let got = path(field)?.get(&s.doc);
        let want = json(want);
        if !got.is_some_and(|g| same(g, &want)) {
            diff.push(format!("- {field}: {want}"));
            diff.push(format!("+ {field}: {}", shown(got)));
        }
    }
    for field in &exp.absent {
        if let Some(got) = path(field)?.get(&s.doc) {
            diff.push(format!("- {field}: (absent)"));
            diff.push(format!("+ {field}: {got}"));
        }
    }
    for field in &exp.present {
        if path(field)?.get(&s.doc).is_none() {
            diff.push(format!("- {field}: (present)"));
            diff.push(format!("+ {field}: (absent)"));
        }
    }
    if !exp.encoded.is_empty() {
        let Some(enc) = &s.encoded else {
            return Err(format!("encoded: nothing is encoded at {:?} (only a sink with a plugin encodes)", exp.at));
        };
        for (field, want) in &exp.encoded {
            // A column's name is taken whole: column names may hold dots.
            let got = match field.strip_prefix("columns.") {
                Some(column) => enc.get("columns").and_then(|c| c.get(column)),
                None => enc.get(field.as_str()).filter(|v| !v.is_null()),
            };
            let want = json(want);
            if !got.is_some_and(|g| same(g, &want)) {
                diff.push(format!("- encoded.{field}: {want}"));
                diff.push(format!("+ encoded.{field}: {}", shown(got)));
            }
        }
    }
    Ok(diff)
}
