//! `ctrflow validate`: every problem at once, each message naming what to fix — one test
//! per user-facing message.

use ctrflow_tests::{ctrflow, temp_dir};

const BASE: &str = r#"
[sources.source]
type = "generator"
count = 10

[transforms.redact]
plugin = "redact-pii"
inputs = ["source"]

[transforms.route]
plugin = "route-by-field"
inputs = ["redact"]
config = { routes = ["VOICE", "CHAT"] }

[sinks.voice]
type = "stdout"
inputs = ["route.VOICE"]

[sinks.rest]
type = "stdout"
inputs = ["route.CHAT", "route.other"]
"#;

/// Validates `text` (with `from` replaced by `to`) and returns stderr; asserts exit 1.
fn invalid(from: &str, to: &str) -> String {
    assert!(BASE.contains(from) || from.is_empty(), "the base pipeline has no {from:?}");
    let dir = temp_dir("validate");
    let text = if from.is_empty() { format!("{BASE}\n{to}") } else { BASE.replace(from, to) };
    std::fs::write(dir.join("p.toml"), text).unwrap();
    let out = ctrflow(&dir, &["validate", "p.toml"]);
    assert_eq!(out.code, Some(1), "expected exit 1, got {:?}\n{}", out.code, out.stderr);
    out.stderr
}

#[test]
fn the_base_pipeline_is_valid() {
    let dir = temp_dir("validate-ok");
    std::fs::write(dir.join("p.toml"), BASE).unwrap();
    let out = ctrflow(&dir, &["validate", "p.toml"]);
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("is valid"), "{}", out.stdout);
}

#[test]
fn unknown_input_names_the_node_and_suggests() {
    let err = invalid(r#"inputs = ["source"]"#, r#"inputs = ["sorce"]"#);
    assert!(err.contains(r#"transforms.redact: input "sorce" is not a node (did you mean "source"?)"#), "{err}");
}

#[test]
fn unknown_output_lists_the_outputs_the_plugin_declared() {
    let err = invalid(r#"inputs = ["route.VOICE"]"#, r#"inputs = ["route.VOCE"]"#);
    assert!(
        err.contains("sinks.voice") && err.contains("no output \"VOCE\"") && err.contains("VOICE, CHAT, other"),
        "{err}"
    );
}

#[test]
fn cycle_names_its_path() {
    let err = invalid(r#"inputs = ["source"]"#, r#"inputs = ["source", "route"]"#);
    assert!(err.contains("cycle") && err.contains("redact") && err.contains("route"), "{err}");
}

#[test]
fn unused_node_is_named() {
    let err = invalid("", "[transforms.orphan]\nplugin = \"ctr-flatten\"\ninputs = [\"source\"]\n");
    assert!(err.contains("transforms.orphan: nothing reads this node"), "{err}");
}

#[test]
fn unknown_plugin_names_the_node_and_the_bundled_plugins() {
    let err = invalid(r#"plugin = "redact-pii""#, r#"plugin = "redact-pi""#);
    assert!(err.contains("transforms.redact") && err.contains("redact-pi") && err.contains("redact-pii, "), "{err}");
}

#[test]
fn plugin_config_typo_names_the_key() {
    let err = invalid(
        r#"config = { routes = ["VOICE", "CHAT"] }"#,
        r#"config = { routes = ["VOICE", "CHAT"], defualt = "x" }"#,
    );
    assert!(err.contains("transforms.route") && err.contains("defualt"), "{err}");
}

#[test]
fn wrong_type_names_the_key() {
    let err = invalid("count = 10", "count = \"ten\"");
    assert!(err.contains("sources.source") && err.contains("ten"), "{err}");
}

#[test]
fn misspelt_key_is_named() {
    let err = invalid("[sinks.voice]\ntype = \"stdout\"", "[sinks.voice]\ntype = \"stdout\"\ncolour = true");
    assert!(err.contains("sinks.voice") && err.contains("colour"), "{err}");
}

#[test]
fn sink_plugin_used_as_a_transform_says_so() {
    let err = invalid(r#"plugin = "redact-pii""#, r#"plugin = "ctr-item""#);
    assert!(err.contains("transforms.redact") && err.contains("sink plugin"), "{err}");
}

#[test]
fn missing_environment_variable_names_it() {
    let err = invalid("count = 10", "count = ${CTRFLOW_TEST_UNSET_VAR}");
    assert!(err.contains("CTRFLOW_TEST_UNSET_VAR") && err.contains(":-default"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text_from = r#"inputs = ["source"]"#;
    let err = invalid(text_from, "inputs = [\"sorce\"]\ntables = [\"nope\"]");
    assert!(err.contains("sorce") && err.contains("\"nope\" is not defined under [tables]"), "{err}");
    assert!(err.contains("problems:"), "{err}");
}

// Issue: a misspelt key once stopped validation before the graph and the plugins were
// checked, so fixing one problem revealed the next.
#[test]
fn key_graph_and_plugin_config_problems_are_reported_in_one_validate() {
    let text = BASE
        .replace(r#"inputs = ["source"]"#, r#"inputs = ["sorce"]"#)
        .replace("[sinks.voice]\ntype = \"stdout\"", "[sinks.voice]\ntype = \"stdout\"\ncolour = true")
        .replace(
            r#"config = { routes = ["VOICE", "CHAT"] }"#,
            r#"config = { routes = ["VOICE", "CHAT"], defualt = "x" }"#,
        );
    let dir = temp_dir("validate-all");
    std::fs::write(dir.join("p.toml"), text).unwrap();
    let out = ctrflow(&dir, &["validate", "p.toml"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let err = out.stderr;
    assert!(err.contains(r#"transforms.redact: input "sorce" is not a node"#), "{err}");
    assert!(err.contains("sinks.voice: ") && err.contains("colour"), "{err}");
    assert!(err.contains("transforms.route") && err.contains("defualt"), "{err}");
}

// Issue: `validate` accepted `mode = "put"` on a SQLite sink (exit 0) and `run` then failed.
#[test]
fn sqlite_put_mode_is_refused_by_validate_naming_the_key() {
    let err = invalid(
        "[sinks.voice]\ntype = \"stdout\"",
        "[sinks.voice]\ntype = \"sqlite\"\npath = \"x.db\"\ntable = \"t\"\nmode = \"put\"",
    );
    assert!(err.contains(r#"sinks.voice: mode: unknown variant "put""#), "{err}");
}

#[test]
fn unknown_connector_type_is_named_with_a_suggestion() {
    let err = invalid("[sinks.voice]\ntype = \"stdout\"", "[sinks.voice]\ntype = \"stdot\"");
    assert!(err.contains(r#"sinks.voice: type: unknown sink type "stdot" (did you mean "stdout"?)"#), "{err}");
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let dir = temp_dir("graph");
    std::fs::write(dir.join("p.toml"), BASE).unwrap();
    let dot = ctrflow(&dir, &["graph", "p.toml"]);
    assert!(dot.success && dot.stdout.contains(r#""route" -> "voice" [label="VOICE"]"#), "{}", dot.stdout);
    let mm = ctrflow(&dir, &["graph", "p.toml", "--format", "mermaid"]);
    assert!(
        mm.success && mm.stdout.starts_with("flowchart LR") && mm.stdout.contains("route -->|VOICE| voice"),
        "{}",
        mm.stdout
    );
}
