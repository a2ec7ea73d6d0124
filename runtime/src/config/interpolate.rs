//! `${VAR}` and `${VAR:-default}` in a pipeline file, replaced from the environment as
//! *values*: a variable can never add a key, a table or a line, whatever it holds.
//!
//! The text is parsed as TOML first; only then are references replaced, inside the string
//! values of the parsed tree, so a value holding `"`, `]`, a newline or a backslash arrives
//! as those characters and needs no escaping. A reference written outside quotes
//! (`count = ${N:-100}`) is a whole value, and what it is replaced by must be a number or a
//! boolean. `$$` inside a string is a literal `$`; references in comments and in keys are
//! not replaced.
//!
//! Which variables a pipeline may read: only those it names. A plugin's `config` table is
//! handed to code the pipeline's author may not have written, so a reference inside
//! `transforms.<id>.config` or `sinks.<id>.config` is refused unless the node lists the
//! variable in its `config_env` key (`config_env = ["API_HOST"]`): credentials in the
//! environment (`AWS_SECRET_ACCESS_KEY`, …) never reach a plugin by accident.

use std::collections::{BTreeMap, BTreeSet};

use super::ConfigError;

/// Parses `text` as TOML and replaces `${VAR}` / `${VAR:-default}` from `env`.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<toml::Table, Vec<ConfigError>> {
    let lexed = lex(text);
    let mut table: toml::Table = toml::from_str(&lexed.text).map_err(|e| vec![ConfigError::Toml(e.to_string())])?;
    let allowed = allow_lists(&table);
    let mut walk = Walk { env, lexed: &lexed, allowed: &allowed, errors: Vec::new(), missing: BTreeSet::new() };
    let mut path = Vec::new();
    for (key, value) in table.iter_mut() {
        path.push(key.clone());
        walk.value(value, &mut path);
        path.pop();
    }
    let Walk { mut errors, .. } = walk;
    errors.extend(walk.missing.into_iter().map(|(line, var)| ConfigError::MissingVar { var, line }));
    if errors.is_empty() { Ok(table) } else { Err(errors) }
}

/// What the lexer found: the text with every reference outside quotes replaced by a
/// placeholder string, the references it replaced, and the line of every reference.
struct Lexed {
    text: String,
    /// The expressions of the references outside quotes, by placeholder number, with
    /// their line.
    bare: Vec<(String, usize)>,
    /// The first line each variable is referenced on.
    lines: BTreeMap<String, usize>,
}

/// A placeholder for bare reference `i`: a string no pipeline writes (it starts with NUL).
fn placeholder(i: usize) -> String {
    format!("\u{0}ctrflow-bare-{i}")
}

/// Splits a reference's expression into the variable and its default.
fn split(expr: &str) -> (&str, Option<&str>) {
    match expr.split_once(":-") {
        Some((v, d)) => (v, Some(d)),
        None => (expr, None),
    }
}

/// Walks the TOML text, tracking strings and comments as TOML does, to find references.
fn lex(text: &str) -> Lexed {
    let mut out = Lexed { text: String::with_capacity(text.len()), bare: Vec::new(), lines: BTreeMap::new() };
    let bytes = text.as_bytes();
    let mut line = 1;
    let mut i = 0;
    fn note(expr: &str, line: usize, lines: &mut BTreeMap<String, usize>) {
        lines.entry(split(expr).0.to_string()).or_insert(line);
    }
    while i < bytes.len() {
        let rest = &text[i..];
        let c = bytes[i];
        // A string: copy it whole, noting the references in it.
        let delim = ["\"\"\"", "'''", "\"", "'"].into_iter().find(|d| rest.starts_with(*d));
        if let Some(d) = delim {
            let basic = d.starts_with('"');
            let mut j = d.len();
            while j < rest.len() && !rest.as_bytes()[j..].starts_with(d.as_bytes()) {
                if basic && rest.as_bytes()[j] == b'\\' {
                    j += 1;
                    if j == rest.len() {
                        break; // a backslash that ends the file: the TOML parser says so
                    }
                }
                if d.len() == 1 && rest.as_bytes()[j] == b'\n' {
                    break; // an unterminated one-line string: let the TOML parser say so
                }
                j += 1;
            }
            let end = (j + d.len()).min(rest.len());
            let string = &rest[..end];
            let mut from = 0;
            while let Some(k) = string[from..].find("${") {
                let start = from + k + 2;
                let Some(close) = string[start..].find('}') else { break };
                let at = line + string[..start].matches('\n').count();
                note(&string[start..start + close], at, &mut out.lines);
                from = start + close + 1;
            }
            line += string.matches('\n').count();
            out.text.push_str(string);
            i += end;
            continue;
        }
        if c == b'#' {
            let end = rest.find('\n').unwrap_or(rest.len());
            out.text.push_str(&rest[..end]);
            i += end;
            continue;
        }
        if rest.starts_with("${")
            && let Some(close) = rest.find('}')
            && !rest[..close].contains('\n')
        {
            let expr = &rest[2..close];
            note(expr, line, &mut out.lines);
            // As a TOML basic string (`\u0000`: TOML has no `\0` escape).
            out.text.push_str(&format!("\"\\u0000{}\"", &placeholder(out.bare.len())[1..]));
            out.bare.push((expr.to_string(), line));
            i += close + 1;
            continue;
        }
        if c == b'\n' {
            line += 1;
        }
        let ch = rest.chars().next().expect("not at the end");
        out.text.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Each node's `config_env`, by `(section, id)`.
fn allow_lists(table: &toml::Table) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut lists = BTreeMap::new();
    for section in ["transforms", "sinks"] {
        let Some(nodes) = table.get(section).and_then(toml::Value::as_table) else { continue };
        for (id, node) in nodes {
            let names = node
                .get("config_env")
                .and_then(toml::Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            lists.insert((section.to_string(), id.clone()), names);
        }
    }
    lists
}

struct Walk<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    lexed: &'a Lexed,
    allowed: &'a BTreeMap<(String, String), BTreeSet<String>>,
    errors: Vec<ConfigError>,
    /// Unset variables without a default, by (line, name).
    missing: BTreeSet<(usize, String)>,
}

impl Walk<'_> {
    fn value(&mut self, value: &mut toml::Value, path: &mut Vec<String>) {
        match value {
            toml::Value::String(s) => {
                if let Some(new) = self.string(s, path) {
                    *value = new;
                }
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(i.to_string());
                    self.value(item, path);
                    path.pop();
                }
            }
            toml::Value::Table(t) => {
                for (k, v) in t.iter_mut() {
                    path.push(k.clone());
                    self.value(v, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// The value of `${expr}`, or `None` (with the problem noted).
    fn lookup(&mut self, expr: &str, path: &[String], line: Option<usize>) -> Option<String> {
        let (var, default) = split(expr);
        // A plugin's config: only the variables its node allows.
        if let [section, id, config, ..] = path
            && (section == "transforms" || section == "sinks")
            && config == "config"
        {
            let allowed = self.allowed.get(&(section.clone(), id.clone()));
            if !allowed.is_some_and(|a| a.contains(var)) {
                self.errors.push(ConfigError::Key {
                    key: path.join("."),
                    detail: format!(
                        "${{{var}}}: a plugin's config may read only the environment variables its node lists in \
                         `config_env` (add \"{var}\" to {section}.{id}.config_env to allow it)"
                    ),
                });
                return None;
            }
        }
        let found = (self.env)(var).filter(|v| !v.is_empty() || default.is_none()).or(default.map(str::to_string));
        if found.is_none() {
            let line = line.or_else(|| self.lexed.lines.get(var).copied()).unwrap_or(0);
            self.missing.insert((line, var.to_string()));
        }
        found
    }

    /// The replacement for a string value, if it has references.
    fn string(&mut self, s: &str, path: &[String]) -> Option<toml::Value> {
        if let Some(n) = s.strip_prefix("\u{0}ctrflow-bare-").and_then(|n| n.parse::<usize>().ok())
            && let Some((expr, line)) = self.lexed.bare.get(n)
        {
            let text = self.lookup(expr, path, Some(*line))?;
            return match scalar(&text) {
                Some(v) => Some(v),
                None => {
                    self.errors.push(ConfigError::Key {
                        key: path.join("."),
                        detail: format!(
                            "${{{expr}}} outside quotes is a whole value, so it must be a number or a boolean, \
                             not {text:?} (quote it for a string)"
                        ),
                    });
                    None
                }
            };
        }
        if !s.contains('$') {
            return None;
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{')
                && let Some(end) = body.find('}')
            {
                if let Some(v) = self.lookup(&body[..end], path, None) {
                    out.push_str(&v);
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Some(toml::Value::String(out))
    }
}

/// `text` as a TOML number or boolean, if it is exactly one.
fn scalar(text: &str) -> Option<toml::Value> {
    if text.contains(['\n', '\r', '#']) {
        return None;
    }
    let parsed: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    match parsed.get("v") {
        Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) if parsed.len() == 1 => {
            Some(v.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// Found by `cargo xtask fuzz pipeline_config`: a basic string whose last byte is a
    /// backslash read past the end of the text.
    #[test]
    fn a_backslash_ending_the_text_inside_a_string_is_left_to_the_toml_parser() {
        for text in ["x = \"abc\\", "x = \"${A}\\", "[aws]\nendpoint_url = \"${AWS_E\0\0\"\"\u{1}'\\"] {
            let _ = interpolate(text, &env(&[("A", "1")]));
        }
    }

    #[test]
    fn values_come_from_the_environment_and_defaults() {
        let t = interpolate(
            "x = \"${A}\"\ny = \"${B:-2}\"\nz = \"$$ and $x\"\nn = ${N:-7}\nb = ${T}\n",
            &env(&[("A", "1"), ("T", "true")]),
        )
        .unwrap();
        assert_eq!(t["x"].as_str(), Some("1"));
        assert_eq!(t["y"].as_str(), Some("2"));
        assert_eq!(t["z"].as_str(), Some("$ and $x"));
        assert_eq!(t["n"].as_integer(), Some(7));
        assert_eq!(t["b"].as_bool(), Some(true));
    }

    #[test]
    fn a_value_with_quotes_newlines_and_brackets_arrives_intact() {
        let hostile = "a\"b\nc]\\d'''\"\"\"\n[sinks.evil]\ntype = \"stdout\"";
        for text in ["v = \"${H}\"\n", "v = '${H}'\n", "v = \"\"\"${H}\"\"\"\n", "[t]\nv = \"pre-${H}-post\"\n"] {
            let t = interpolate(text, &env(&[("H", hostile)])).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            let v = t.get("v").or_else(|| t["t"].get("v")).and_then(toml::Value::as_str).unwrap();
            assert!(v.contains(hostile), "{text}: {v:?}");
            assert!(t.get("sinks").is_none(), "{text}: the value added a table");
        }
    }

    #[test]
    fn a_bare_value_must_be_a_number_or_a_boolean() {
        for bad in ["1\nextra = 2", "\"s\"", "[1]", "{a = 1}", "", "1 # x"] {
            let errs = interpolate("n = ${N}\n", &env(&[("N", bad)])).unwrap_err();
            assert!(matches!(&errs[0], ConfigError::Key { key, .. } if key == "n"), "{bad:?}: {errs:?}");
        }
    }

    #[test]
    fn a_missing_variable_names_it_and_its_line() {
        let errs = interpolate("a = 1\nb = \"${NOPE}\"\n", &|_| None).unwrap_err();
        assert_eq!(errs, vec![ConfigError::MissingVar { var: "NOPE".into(), line: 2 }]);
        assert!(errs[0].to_string().contains("${NOPE:-default}"));
        let errs = interpolate("a = 1\n\nb = ${NOPE}\n", &|_| None).unwrap_err();
        assert_eq!(errs, vec![ConfigError::MissingVar { var: "NOPE".into(), line: 3 }]);
    }

    #[test]
    fn comments_and_keys_are_not_replaced() {
        let t = interpolate("# ${UNSET}\na = 1 # ${UNSET}\n\"${K}\" = 2\n", &|_| None).unwrap();
        assert_eq!(t["${K}"].as_integer(), Some(2));
    }

    #[test]
    fn a_plugin_config_reads_only_allowed_variables() {
        let secret = env(&[("AWS_SECRET_ACCESS_KEY", "s3cr3t"), ("API_HOST", "h")]);
        let text = "[transforms.t]\nconfig = { key = \"${AWS_SECRET_ACCESS_KEY}\", n = ${AWS_SECRET_ACCESS_KEY:-1} }\n";
        let errs = interpolate(text, &secret).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        for e in &errs {
            let msg = e.to_string();
            assert!(msg.starts_with("transforms.t.config."), "{msg}");
            assert!(msg.contains("config_env") && !msg.contains("s3cr3t"), "{msg}");
        }

        let text = "[sinks.s]\nconfig_env = [\"API_HOST\"]\n[sinks.s.config]\nhost = \"${API_HOST}\"\n";
        let t = interpolate(text, &secret).unwrap();
        assert_eq!(t["sinks"]["s"]["config"]["host"].as_str(), Some("h"));

        // Elsewhere in the pipeline, any variable it names may be read.
        let t = interpolate("[aws]\nregion = \"${API_HOST}\"\n", &secret).unwrap();
        assert_eq!(t["aws"]["region"].as_str(), Some("h"));
    }
}
