//! Builds the plugins workspace (`plugins/`) for `wasm32-wasip2` and embeds the bundled
//! plugins in the binary, so they are built by the build — never by hand — and found by
//! name wherever the binary goes.
//!
//! The nested build uses its own target directory beside this one (`<target>/plugins-wasm`)
//! so it neither deadlocks on the outer build's lock nor dirties `plugins/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The plugins embedded in the binary, by crate name.
const BUNDLED: &[&str] =
    &["redact-pii", "enrich-lookup", "route-by-field", "ctr-flatten", "ctr-item", "notify-template", "filter"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("runtime/ sits in the workspace root");
    let plugins = root.join("plugins");
    for watched in ["plugins", "plugin-sdk/src", "plugin-sdk/Cargo.toml", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CTRFLOW_PLUGINS_TARGET_DIR");

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = std::env::var_os("CTRFLOW_PLUGINS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| outer_target_dir(&out).join("plugins-wasm"));

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .args(["build", "--release", "--workspace", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target_dir);
    // The outer build's flags are for the host, not for wasm.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_PROFILE_RELEASE_DEBUG"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("could not run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins in {} for wasm32-wasip2 failed (see above). \
             If the target is missing: `rustup target add wasm32-wasip2`.",
            plugins.display()
        );
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut src =
        String::from("/// Bundled plugins: (name, component bytes).\npub static BUNDLED: &[(&str, &[u8])] = &[\n");
    for name in BUNDLED {
        let file = wasm_dir.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(file.exists(), "the plugins build did not produce {}", file.display());
        src.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", file.display().to_string()));
    }
    src.push_str("];\n\n");
    src.push_str(&format!(
        "/// Where the plugins build leaves every component, the test plugins included.\n\
         #[doc(hidden)]\npub const TEST_PLUGIN_DIR: &str = {:?};\n",
        wasm_dir.display().to_string()
    ));
    std::fs::write(out.join("bundled.rs"), src).expect("write bundled.rs");
}

/// `<target>` from `<target>/<profile>/build/<crate>-<hash>/out`.
fn outer_target_dir(out: &Path) -> PathBuf {
    out.ancestors().nth(4).map(Path::to_path_buf).unwrap_or_else(|| out.join("target"))
}
