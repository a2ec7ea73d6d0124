//! `ctrflow plugin new`: for each world, the generated Rust project passes its own native
//! tests, builds for wasm32-wasip2 with no edit, runs in its example pipeline (the real
//! host), and its pipeline tests hold.
//!
//! The projects share one build directory (a `target` symlink, kept between runs beside
//! the test binary), so only the first run compiles the SDK's dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;

use ctrflow_tests::{ctrflow, read_jsonl, repo_root, temp_dir};

/// The build directory the generated projects share.
fn shared_target() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(|d| d.parent()).expect("<target>/<profile>").join("scaffold-target")
}

fn cargo(project: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project).args(args);
    // The project's own build: not this test's target directory or flags.
    for var in ["CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTUP_TOOLCHAIN"] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn generate(dir: &Path, name: &str, world: &str) -> PathBuf {
    let checkout = repo_root();
    let out = ctrflow(
        dir,
        &["plugin", "new", name, "--world", world, "--lang", "rust", "--ctrflow", checkout.to_str().unwrap()],
    );
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("cargo build --release --target wasm32-wasip2"), "{}", out.stdout);
    let project = dir.join(name);
    let target = shared_target();
    std::fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&target, project.join("target")).unwrap();
    project
}

#[test]
fn a_generated_plugin_of_each_world_builds_and_runs_in_its_pipeline_with_no_edit() {
    let dir = temp_dir("scaffold");
    for (name, world) in [("tag-channel", "transform"), ("agent-join", "enrich"), ("ctr-line", "sink")] {
        let project = generate(&dir, name, world);
        for file in
            ["Cargo.toml", "src/lib.rs", "README.md", "pipeline.toml", "pipeline.tests.toml", "tests/sample-ctr.json"]
        {
            assert!(project.join(file).is_file(), "{world}: no {file}");
        }
        cargo(&project, &["test", "--quiet"]);
        cargo(&project, &["build", "--release", "--target", "wasm32-wasip2"]);
        let wasm = project.join(format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")));
        assert!(wasm.is_file(), "{world}: no {}", wasm.display());

        let run = ctrflow(&project, &["run", "pipeline.toml", "--quiet"]);
        assert!(run.success, "{world}: ctrflow run failed:\n{}", run.stderr);
        let written = read_jsonl(&project.join("out/records.jsonl"));
        assert_eq!(written.len(), 1, "{world}: {written:?}");
        let record = &written[0];
        assert_eq!(record["ContactId"], "6fe40d2a-1a89-4d73-bfcf-5d9c33894f47");
        match world {
            "transform" => assert_eq!(record["Attributes"]["channel_tag"], "voice", "{record}"),
            "enrich" => assert_eq!(record["AgentInfo"]["team"], "TCC", "{record}"),
            _ => assert_eq!(record["Agent"]["Username"], "Steve.Lusk", "the sink plugin's payload is the record"),
        }

        let test = ctrflow(&project, &["test", "pipeline.toml"]);
        assert!(test.success, "{world}: ctrflow test failed:\n{}\n{}", test.stdout, test.stderr);
    }
}

#[test]
fn bad_names_are_refused() {
    let dir = temp_dir("scaffold-refusals");
    let checkout = repo_root();
    let out = ctrflow(&dir, &["plugin", "new", "Bad_Name", "--world", "sink", "--ctrflow", checkout.to_str().unwrap()]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("is not a plugin name"), "{}", out.stderr);
    // Outside a checkout, without --ctrflow, it says where the SDK comes from.
    let out = ctrflow(&dir, &["plugin", "new", "lost", "--world", "sink"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("not inside a ctrflow checkout"), "{}", out.stderr);
}
