//! Benchmark plugin: reads `Channel` and `Agent.Username`, writes
//! `Attributes.route_key = "<channel>:<username>"` — two reads and a write through the
//! record resource, paths resolved once at init.
use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform};

pub struct Edit {
    channel: Path,
    user: Path,
    out: Path,
}

impl Transform for Edit {
    fn init(init: &mut Init) -> Result<Self, Error> {
        Ok(Edit {
            channel: init.path("Channel")?,
            user: init.path("Agent.Username")?,
            out: init.path("Attributes.route_key")?,
        })
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        let channel = record.get_str(&self.channel).unwrap_or_default();
        let user = record.get_str(&self.user).unwrap_or_default();
        match record.set(&self.out, format!("{channel}:{user}")) {
            Ok(()) => Outcome::Keep,
            Err(e) => Outcome::Fail(e),
        }
    }
}

ctrflow_plugin_sdk::export_transform!(Edit);
