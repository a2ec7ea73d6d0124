//! Plugins written in Python (componentize-py) and JavaScript (componentize-js): the example
//! plugins `plugins/redact-pii-py` and `plugins/route-by-field-js` are built by
//! `plugin-sdk/tools/build-plugin.sh` (which installs the pinned tools into the cache on first
//! use) and run through the real binary beside their Rust originals, fed by the same source:
//! the two chains must deliver the same records to the same outputs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ctrflow_tests::{cache_dir, ctrflow, read_jsonl, repo_root, temp_dir};
use serde_json::Value as Json;

/// The two example components, built once per test run (each build takes tens of seconds).
struct Built {
    redact_py: PathBuf,
    route_js: PathBuf,
}

fn build(lang: &str, world: &str, plugin: &str, out: &Path) -> PathBuf {
    let script = repo_root().join("plugin-sdk/tools/build-plugin.sh");
    let status = Command::new("bash")
        .arg(&script)
        .args([lang, world])
        .arg(repo_root().join("plugins").join(plugin))
        .arg(out)
        .status()
        .expect("run build-plugin.sh");
    assert!(status.success(), "building plugins/{plugin} failed ({status}); see above");
    assert!(out.exists(), "{} was not written", out.display());
    out.to_path_buf()
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = cache_dir().parent().expect("the cache sits in the build directory").join("lang-plugins");
        std::fs::create_dir_all(&dir).unwrap();
        let py = dir.join("redact_pii_py.wasm");
        let js = dir.join("route_by_field_js.wasm");
        std::thread::scope(|s| {
            let py = s.spawn(|| build("python", "transform", "redact-pii-py", &py));
            let js = s.spawn(|| build("js", "transform", "route-by-field-js", &js));
            Built { redact_py: py.join().expect("python build"), route_js: js.join().expect("js build") }
        })
    })
}

const REDACT: &str = r#"{ fields = ["CustomerEndpoint.Address", "SystemEndpoint.Address"], keep_last = 4, attributes = ["customerName", "accountNumber"] }"#;
const ROUTE: &str = r#"{ field = "Channel", routes = ["VOICE", "CHAT", "TASK"], default = "other" }"#;
const OUTPUTS: [&str; 4] = ["VOICE", "CHAT", "TASK", "other"];

/// One source feeding two chains: Rust (`redact-pii` → `route-by-field`) and Python → JS
/// (`redact-pii-py` → `route-by-field-js`), each output to its own file.
fn side_by_side(py: &Path, js: &Path) -> String {
    let mut toml = format!(
        r#"
[runtime]
state_dir = "state"

[dead_letter]
path = "dead-letters.jsonl"

[sources.contacts]
type = "generator"
count = 300
seed = 11

[transforms.redact_rs]
plugin = "redact-pii"
inputs = ["contacts"]
config = {REDACT}

[transforms.route_rs]
plugin = "route-by-field"
inputs = ["redact_rs"]
config = {ROUTE}

[transforms.redact_py]
plugin = {py:?}
inputs = ["contacts"]
config = {REDACT}

[transforms.route_js]
plugin = {js:?}
inputs = ["redact_py"]
config = {ROUTE}
"#,
        py = py.display().to_string(),
        js = js.display().to_string(),
    );
    for chain in ["rs", "js"] {
        for output in OUTPUTS {
            toml.push_str(&format!(
                "\n[sinks.{chain}_{output}]\ntype = \"file\"\ninputs = [\"route_{chain}.{output}\"]\npath = \"{chain}-{output}.jsonl\"\n"
            ));
        }
    }
    toml
}

fn by_contact(mut records: Vec<Json>) -> Vec<Json> {
    records.sort_by(|a, b| a["ContactId"].as_str().cmp(&b["ContactId"].as_str()));
    records
}

#[test]
fn python_and_js_plugins_deliver_what_their_rust_originals_deliver() {
    let built = built();
    let dir = temp_dir("languages");
    std::fs::write(dir.join("p.toml"), side_by_side(&built.redact_py, &built.route_js)).unwrap();
    let report = dir.join("report.json");
    let out = ctrflow(&dir, &["run", "p.toml", "--report", report.to_str().unwrap()]);
    assert!(out.success, "{}", out.stderr);
    assert!(!dir.join("dead-letters.jsonl").exists(), "nothing is dead-lettered: {}", out.stderr);

    let mut total = 0;
    for output in OUTPUTS {
        let read = |chain: &str| {
            let file = dir.join(format!("{chain}-{output}.jsonl"));
            if file.exists() { by_contact(read_jsonl(&file)) } else { Vec::new() }
        };
        let (rust, other) = (read("rs"), read("js"));
        assert_eq!(
            rust.len(),
            other.len(),
            "output {output}: {} records from Rust, {} from Python → JS",
            rust.len(),
            other.len()
        );
        assert!(rust == other, "output {output}: the Python → JS chain changed records differently from the Rust one");
        for record in &other {
            let channel = record["Channel"].as_str().unwrap_or_default();
            let expected = if ["VOICE", "CHAT", "TASK"].contains(&channel) { channel } else { "other" };
            assert_eq!(expected, output, "{record}");
            if let Some(address) = record["CustomerEndpoint"]["Address"].as_str() {
                let visible = address.chars().filter(|c| *c != '*').count();
                assert!(visible <= 4, "the customer's number is masked: {address}");
            }
        }
        total += other.len();
    }
    assert_eq!(total, 300, "every record reached one output");
    assert!(dir.join("js-VOICE.jsonl").exists() && dir.join("js-CHAT.jsonl").exists());

    // The Python plugin's counter is reported like the Rust one's.
    let report: Json = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let masked = |id: &str| {
        let node = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).expect("the node is reported");
        node["plugin_counters"]["masked"].as_i64()
    };
    assert!(masked("redact_rs").unwrap_or(0) > 0);
    assert_eq!(masked("redact_py"), masked("redact_rs"), "Python counts what Rust counts");
}

/// A refused config stops the pipeline with the plugin's message, naming the node — from a
/// Python `raise Error.invalid_config(…)` and a JavaScript `throw PluginError.invalidConfig(…)`.
#[test]
fn python_and_js_config_errors_name_the_node_and_the_problem() {
    let built = built();
    let cases = [
        (&built.redact_py, "{ fields = [], attributes = [] }", "nothing to redact"),
        (&built.redact_py, "{ keep_lats = 4 }", "keep_lats"),
        (&built.route_js, "{ routes = [] }", "`routes` is empty"),
        (&built.route_js, r#"{ routes = ["VOICE"], default = "VOICE" }"#, "same output as `default`"),
    ];
    for (plugin, config, message) in cases {
        let dir = temp_dir("languages-config");
        let toml = format!(
            "[sources.s]\ntype = \"generator\"\ncount = 1\n\n[transforms.t]\nplugin = {:?}\ninputs = [\"s\"]\nconfig = {config}\n\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"t\"]\n",
            plugin.display().to_string()
        );
        std::fs::write(dir.join("p.toml"), toml).unwrap();
        let out = ctrflow(&dir, &["validate", "p.toml"]);
        assert_eq!(out.code, Some(1), "{config}: expected exit 1\n{}", out.stderr);
        assert!(out.stderr.contains("transforms.t") && out.stderr.contains(message), "{config}:\n{}", out.stderr);
    }
}

/// Writes the project `ctrflow::scaffold_lang` makes, builds it with its own `build.sh`, runs
/// its own `pipeline.toml`, and returns the directory.
fn new_project(lang: ctrflow::scaffold_lang::Lang, world: ctrflow::scaffold_lang::World) -> PathBuf {
    let name = format!("my-{}-{}", lang.name(), world.name());
    let dir = temp_dir(&name);
    for (path, text) in ctrflow::scaffold_lang::files(lang, &name, world) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let status = Command::new("bash").arg(dir.join("build.sh")).status().expect("run build.sh");
    assert!(status.success(), "{name}: build.sh failed ({status})");
    assert!(dir.join(format!("{name}.wasm")).exists(), "{name}: build.sh wrote no component");
    let out = ctrflow(&dir, &["run", "pipeline.toml"]);
    assert!(out.success, "{name}: the project's pipeline failed:\n{}", out.stderr);
    assert!(!dir.join("out/dead-letters.jsonl").exists(), "{name}: dead letters:\n{}", out.stderr);
    let tests = ctrflow(&dir, &["test", "pipeline.toml"]);
    assert!(tests.success, "{name}: the project's pipeline tests failed:\n{}\n{}", tests.stdout, tests.stderr);
    dir
}

/// A new project of each world builds and runs with no edits, and its plugin does what its
/// README says, on the real CTR sample it ships.
#[test]
fn new_python_and_js_projects_build_and_run_with_no_edits() {
    use ctrflow::scaffold_lang::{Lang, World};
    let cases = [(Lang::Python, World::Transform), (Lang::Js, World::Enrich), (Lang::Python, World::Sink)];
    let dirs: Vec<(Lang, World, PathBuf)> = std::thread::scope(|s| {
        let handles: Vec<_> =
            cases.iter().map(|&(lang, world)| s.spawn(move || (lang, world, new_project(lang, world)))).collect();
        handles.into_iter().map(|h| h.join().expect("a project")).collect()
    });
    for (lang, world, dir) in dirs {
        let what = format!("{} {}", lang.name(), world.name());
        match world {
            World::Transform => {
                let records = read_jsonl(&dir.join("out/records.jsonl"));
                assert_eq!(records.len(), 1, "{what}");
                assert_eq!(records[0]["Attributes"]["channel_lower"], "voice", "{what}");
            }
            World::Enrich => {
                let records = read_jsonl(&dir.join("out/records.jsonl"));
                assert_eq!(records.len(), 1, "{what}");
                assert_eq!(records[0]["AgentInfo"]["full_name"], "Steve Lusk", "{what}: {}", records[0]);
            }
            World::Sink => {
                let lines = read_jsonl(&dir.join("out/encoded.jsonl"));
                assert_eq!(lines.len(), 1, "{what}");
                assert_eq!(lines[0]["Channel"], "VOICE", "{what}");
                assert!(lines[0]["ContactId"].as_str().is_some_and(|id| !id.is_empty()), "{what}: {}", lines[0]);
            }
        }
    }
}
