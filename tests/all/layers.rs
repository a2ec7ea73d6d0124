//! The runtime's modules depend one way: the model, then the contract, then the outside
//! world and the sandbox, then the runtime's nodes, then the command. An import pointing
//! back up, or a cycle between modules, fails here (docs/architecture.md, "Layers").

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ctrflow_tests::repo_root;

/// The layers, lowest first. Inside one layer modules may use each other, without cycles.
const LAYERS: &[&[&str]] = &[
    &["units", "config", "graph", "record", "doc", "json", "ack", "timing", "alloc"],
    &["flow", "tap", "dead_letter", "contract"],
    &["connectors", "host"],
    &["pipeline", "topology", "transform", "sink", "monitor", "admin", "pipeline_tests", "schema", "lambda"],
    &["cli", "logs", "scaffold", "scaffold_lang"],
];

fn layer(module: &str) -> usize {
    LAYERS.iter().position(|l| l.contains(&module)).unwrap_or_else(|| {
        panic!("runtime module {module:?} is in no layer: add it to LAYERS here and to docs/architecture.md")
    })
}

/// `crate::<module>` paths in code (comments and doc links left out), per top-level module.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = repo_root().join("runtime/src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read runtime/src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let module = top_module(&src, &path);
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let used = edges.entry(module.clone()).or_default();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for part in code.split("crate::").skip(1) {
                    let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && name != module {
                        used.insert(name);
                    }
                }
            }
        }
    }
    edges
}

fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under runtime/src");
    let first = rel.components().next().expect("a file").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn runtime_modules_import_only_the_layers_below_them() {
    let mut wrong = Vec::new();
    for (module, used) in imports() {
        // Every module has a layer, the ones that import nothing too.
        layer(&module);
        for u in used {
            if layer(&u) > layer(&module) {
                wrong.push(format!("{module} -> {u}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports pointing up a layer: {wrong:?}");
}

#[test]
fn runtime_modules_have_no_import_cycle() {
    let edges = imports();
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut done, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
