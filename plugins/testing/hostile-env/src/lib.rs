//! Test plugin: on every record, reads the environment and the arguments and writes what
//! it saw to `Attributes.env_vars` (a count), `Attributes.env_home` and
//! `Attributes.args`. The sandbox grants none of them.
use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform};

pub struct Env {
    vars: Path,
    home: Path,
    args: Path,
}

impl Transform for Env {
    fn init(init: &mut Init) -> Result<Self, Error> {
        Ok(Env {
            vars: init.path("Attributes.env_vars")?,
            home: init.path("Attributes.env_home")?,
            args: init.path("Attributes.args")?,
        })
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        let vars = std::env::vars().count() as i64;
        let home = std::env::var("HOME").unwrap_or_else(|e| format!("unset: {e}"));
        let args = std::env::args().count() as i64;
        let result = record
            .set(&self.vars, vars)
            .and_then(|()| record.set(&self.home, home))
            .and_then(|()| record.set(&self.args, args));
        match result {
            Ok(()) => Outcome::Keep,
            Err(e) => Outcome::Fail(e),
        }
    }
}

ctrflow_plugin_sdk::export_transform!(Env);
