//! Test plugin: a transform that keeps every record, generated from a copy of
//! `wit/ctrflow.wit` whose package version is `0.2.0` — a plugin built for a contract this
//! ctrflow (0.1.0) does not implement. The host must refuse it, naming both versions.
//! (`tests/all/host.rs` checks the copy differs from the real WIT only in that version.)

wit_bindgen::generate!({ path: "wit", world: "transform" });

use ctrflow::plugin::types::{Info, Outcome, PluginError};

struct Keep;

impl exports::ctrflow::plugin::transformer::Guest for Keep {
    fn init(_config: String) -> Result<Info, PluginError> {
        Ok(Info { outputs: Vec::new() })
    }

    fn process() -> Vec<Outcome> {
        (0..ctrflow::plugin::batch::len()).map(|_| Outcome::Keep).collect()
    }
}

export!(Keep);
