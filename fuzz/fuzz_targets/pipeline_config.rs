//! Pipeline TOML → config → validated graph. Any panic is a finding; refusing the input
//! with errors is the expected outcome for most inputs. Calls only the two public entry
//! points, so it follows them when their insides change.
#![no_main]

use std::path::Path;

use ctrflow::config::PipelineConfig;
use ctrflow::graph::Graph;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Short variable names resolve, so `${…}` interpolation is exercised on both branches.
    let env = |name: &str| (name.len() < 4).then(|| "x".to_string());
    if let Ok(config) = PipelineConfig::parse(text, Path::new("."), &env) {
        let _ = Graph::from_config(config);
    }
});
